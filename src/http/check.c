/*
 * http/check.c — see check.h.
 */
#include "http/check.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/routes.h"
#include "runtime/call.h"
#include "core/id.h"
#include "util/json.h"

/* h2o 2.2.5 keeps only the first Content-Length and lets a later
 * Transfer-Encoding override it, and it does not put either in req->headers.
 * Its HTTP/1 parser is zero-copy, though: the request head stays at the start
 * of the connection's input buffer until the response is done (the header
 * values point into it). So the head is read again here, from there, after
 * checking that it is this request's (it starts with the method). */
static int raw_head(h2o_req_t *req, const char **p, size_t *n)
{
    h2o_socket_t *sock =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock == NULL || sock->input == NULL)
        return -1;
    const char *b = sock->input->bytes;
    size_t len = sock->input->size;
    /* the target is not compared: an absolute-form one ("POST http://host/x")
     * reaches the handler with only its path */
    if (len < req->method.len + 1 || memcmp(b, req->method.base, req->method.len) != 0 ||
        b[req->method.len] != ' ')
        return -1;
    *p = b;
    *n = len;
    return 0;
}

static int name_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && line[k] == ':' && strncasecmp(line, name, k) == 0;
}

int par__http_check_framing(h2o_req_t *req, char *msg, size_t cap)
{
    const char *p;
    size_t n;
    if (req->version >= 0x200 || raw_head(req, &p, &n) != 0)
        return 0; /* HTTP/2 frames its own messages */
    return par__http_check_head(p, n, msg, cap);
}

int par__http_check_head(const char *p, size_t n, char *msg, size_t cap)
{
    const char *cl = NULL;
    size_t cl_len = 0;
    int te = 0;
    const char *end = p + n, *line = memchr(p, '\n', n);
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            break;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (len == 0)
            break; /* the end of the head */
        if (name_is(line, len, "transfer-encoding")) {
            te = 1;
        } else if (name_is(line, len, "content-length")) {
            const char *v = line + 15;
            size_t vl = len - 15;
            while (vl && (*v == ' ' || *v == '\t'))
                v++, vl--;
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (cl && !h2o_memis(cl, cl_len, v, vl)) {
                snprintf(msg, cap,
                         "the request has Content-Length headers with different "
                         "values; send one");
                return -1;
            }
            cl = v, cl_len = vl;
        }
        line = eol;
    }
    if (cl && te) {
        snprintf(msg, cap,
                 "the request has both Content-Length and Transfer-Encoding; send "
                 "one of them");
        return -1;
    }
    return 0;
}

int par__http_check_headers(h2o_req_t *req, char *msg, size_t cap)
{
    static const char *const names[] = {"x-request-id", "traceparent", "x-par-timeout-ms"};
    for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
        ssize_t i = -1;
        while ((i = h2o_find_header_by_str(&req->headers, names[k], strlen(names[k]), i)) >= 0) {
            h2o_iovec_t v = req->headers.entries[i].value;
            size_t bad = par_utf8_check(v.base, v.len);
            for (size_t j = 0; bad == v.len && j < v.len; j++)
                if ((unsigned char)v.base[j] < 0x20 || v.base[j] == 0x7f)
                    bad = j;
            if (bad < v.len) {
                snprintf(msg, cap, "the %s header is not well-formed UTF-8 text (byte %zu)",
                         names[k], bad);
                return -1;
            }
        }
    }
    return 0;
}

int par__http_check_route_id(const par_http_match_t *m, char *msg, size_t cap)
{
    if (m->route == NULL || m->route->id_what == NULL)
        return 0; /* the route carries no id */
    char why[96];
    if (par_id_path_check(m->var, m->var_len, PAR_ID_MAX, why, sizeof(why)) == 0)
        return 0;
    snprintf(msg, cap, "the %s in the path %s", m->route->id_what, why);
    return -1;
}

int par__http_check_path_ids(h2o_iovec_t path, char *msg, size_t cap)
{
    par_http_match_t m;
    par__http_route_match(PAR_HTTP_POST, path.base, path.len, &m);
    return par__http_check_route_id(&m, msg, cap);
}
