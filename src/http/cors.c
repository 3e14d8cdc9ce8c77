/*
 * http/cors.c — cross-origin requests from browsers (http.cors.origins,
 * http.cors.credentials; docs/runs.md "Browsers and CORS").
 *
 * Owns the check of the configured origins (at start and by `par config
 * check`), the headers an allowed Origin gets on the routes marked `cors` in
 * the route table (invoke, runs, event streams), and the answer to their
 * OPTIONS preflight, which needs no credentials. Nothing is allowed unless
 * configured: without http.cors.origins no response carries CORS headers and
 * every preflight is refused 403. The MCP endpoints are such routes too:
 * their preflight allows Mcp-Session-Id, Mcp-Protocol-Version and
 * Last-Event-ID, and responses expose Mcp-Session-Id.
 *
 * Called by http/server.c on the loop thread that owns the request, and by
 * the configuration check (any thread). Pure apart from the request it
 * answers; it must never allocate outside the request's pool.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/internal.h"

/* "scheme://host[:port]": a scheme of letters, digits, '+', '-', '.'; a host
 * name or [IPv6]; a port 1..65535; nothing after (no path, no '/'). */
static int origin_ok(const char *o)
{
    const char *p = o;
    if (!isalpha((unsigned char)*p))
        return 0;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0)
        return 0;
    p += 3;
    const char *host = p;
    if (*p == '[') {
        p = strchr(p, ']');
        if (p == NULL || p == host + 1)
            return 0;
        p++;
    } else {
        while (isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_')
            p++;
        if (p == host)
            return 0;
    }
    if (*p == ':') {
        unsigned long port = 0;
        const char *d = ++p;
        while (isdigit((unsigned char)*p) && p - d < 6)
            port = port * 10 + (unsigned long)(*p++ - '0');
        if (p == d || port == 0 || port > 65535)
            return 0;
    }
    return *p == '\0';
}

int par_http_cors_check(const par_http_opts_t *o, char *err, size_t cap)
{
    if (o->cors_norigins > PAR_HTTP_CORS_MAX) {
        snprintf(err, cap, "http.cors.origins: %u origins; at most %d may be listed",
                 o->cors_norigins, PAR_HTTP_CORS_MAX);
        return -1;
    }
    for (unsigned i = 0; i < o->cors_norigins; i++) {
        const char *s = o->cors_origins[i];
        if (s && strcmp(s, "*") == 0) {
            if (o->cors_credentials) {
                snprintf(err, cap,
                         "http.cors.origins[%u]: \"*\" cannot be used with http.cors.credentials: "
                         "list the origins that may send credentials",
                         i);
                return -1;
            }
            continue;
        }
        if (s == NULL || !origin_ok(s)) {
            snprintf(err, cap,
                     "http.cors.origins[%u]: '%.100s' is not an origin: write scheme://host[:port] "
                     "(https://app.example.com), with no path or trailing '/'",
                     i, s ? s : "");
            return -1;
        }
    }
    return 0;
}

/* Whether `origin` may call: it is listed (case-insensitive, as schemes and
 * host names are), or "*" is. */
static int allowed(const par_http_t *h, h2o_iovec_t origin)
{
    for (unsigned i = 0; i < h->opts.cors_norigins; i++) {
        const char *s = h->opts.cors_origins[i];
        size_t n = strlen(s);
        if ((n == 1 && s[0] == '*') ||
            (n == origin.len && strncasecmp(s, origin.base, origin.len) == 0))
            return 1;
    }
    return 0;
}

static void add(h2o_req_t *req, const char *name, size_t nlen, const char *v, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 0, NULL, v, vlen);
}

/* The headers of an allowed origin, on a response or a preflight. */
static void allow(par_http_t *h, h2o_req_t *req, h2o_iovec_t origin)
{
    add(req, H2O_STRLIT("access-control-allow-origin"), origin.base, origin.len);
    add(req, H2O_STRLIT("vary"), H2O_STRLIT("Origin"));
    if (h->opts.cors_credentials)
        add(req, H2O_STRLIT("access-control-allow-credentials"), H2O_STRLIT("true"));
}

void par__http_cors_headers(par_http_t *h, h2o_req_t *req)
{
    h2o_iovec_t origin = par__http_header(req, H2O_STRLIT("origin"));
    if (origin.base == NULL || !allowed(h, origin))
        return;
    allow(h, req, origin);
    add(req, H2O_STRLIT("access-control-expose-headers"),
        H2O_STRLIT("X-Request-ID, Location, traceparent, Retry-After, Mcp-Session-Id"));
}

int par__http_cors_preflight(par_http_t *h, h2o_req_t *req, const par_http_route_t *r,
                             const char *rid)
{
    h2o_iovec_t origin = par__http_header(req, H2O_STRLIT("origin"));
    if (origin.base == NULL || !allowed(h, origin)) {
        const char *msg =
            h->opts.cors_norigins == 0
                ? "cross-origin requests are not allowed: no origin is configured "
                  "(http.cors.origins)"
                : "cross-origin requests from this origin are not allowed (http.cors.origins)";
        par__http_send_error(req, PAR_E_FORBIDDEN, msg, strlen(msg), rid);
        return 403;
    }
    allow(h, req, origin);
    unsigned m = r->methods;
    char methods[64];
    snprintf(methods, sizeof(methods), "%s%s%sOPTIONS", (m & PAR_HTTP_GET) ? "GET, HEAD, " : "",
             (m & PAR_HTTP_POST) ? "POST, " : "", (m & PAR_HTTP_DELETE) ? "DELETE, " : "");
    char *mv = h2o_mem_alloc_pool(&req->pool, strlen(methods) + 1);
    memcpy(mv, methods, strlen(methods) + 1);
    add(req, H2O_STRLIT("access-control-allow-methods"), mv, strlen(mv));
    /* MCP's Streamable HTTP sends Mcp-Session-Id and MCP-Protocol-Version
     * on every request after initialize, and Last-Event-ID to resume */
    add(req, H2O_STRLIT("access-control-allow-headers"),
        H2O_STRLIT("Authorization, Content-Type, Last-Event-ID, X-Request-ID, traceparent, "
                   "X-Par-Timeout-Ms, X-API-Key, Mcp-Session-Id, Mcp-Protocol-Version"));
    add(req, H2O_STRLIT("access-control-max-age"), H2O_STRLIT("600"));
    req->res.status = 204;
    req->res.reason = "No Content";
    req->res.content_length = 0;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid,
                          strlen(rid));
    static h2o_generator_t gen = {NULL, NULL};
    h2o_start_response(req, &gen);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    return 204;
}
