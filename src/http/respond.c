/*
 * http/respond.c — answering: the error body every failure shares, JSON and
 * plain bodies, the access log line with its metrics count, and request ids.
 *
 * Called by the other files of http/ on the loop thread that owns the
 * request. Bodies are allocated in the request's pool, so nothing here is
 * freed by the caller; it must never block or take a runtime lock.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "http/internal.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "util/json.h"

__thread loop_t *par__http_tl_loop;

uint64_t par__http_rng(loop_t *l)
{
    /* xorshift64*: request and trace ids need uniqueness, not secrecy */
    l->rng ^= l->rng >> 12;
    l->rng ^= l->rng << 25;
    l->rng ^= l->rng >> 27;
    return l->rng * 0x2545F4914F6CDD1DULL;
}

void par__http_hex64(uint64_t v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

void par__http_new_id(loop_t *l, char *out)
{
    par__http_hex64(par__http_rng(l), out);
    par__http_hex64(par__http_rng(l), out + 16);
    out[32] = '\0';
}

int par__http_safe_id(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

h2o_iovec_t par__http_header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    if (i < 0)
        return h2o_iovec_init(NULL, 0);
    return req->headers.entries[i].value;
}

void par__http_request_id(h2o_req_t *req, loop_t *l, char *out, size_t cap)
{
    assert(cap > 32);
    h2o_iovec_t v = par__http_header(req, H2O_STRLIT("x-request-id"));
    if (v.base && par__http_safe_id(v.base, v.len, cap - 1)) {
        memcpy(out, v.base, v.len);
        out[v.len] = '\0';
        return;
    }
    par__http_new_id(l, out);
}

static const char *reason_of(int http)
{
    switch (http) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 499:
        return "Client Closed Request";
    case 507:
        return "Insufficient Storage";
    case 508:
        return "Loop Detected";
    default:
        return "";
    }
}

void par__http_send_body(h2o_req_t *req, int status, const char *ctype, const char *rid, char *body,
                         size_t len)
{
    req->res.status = status;
    req->res.reason = reason_of(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                   strlen(ctype));
    if (rid)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                              rid, strlen(rid));
    static h2o_generator_t gen = {NULL, NULL};
    h2o_start_response(req, &gen);
    h2o_iovec_t buf = h2o_iovec_init(body, len);
    h2o_send(req, &buf, 1, 1);
}

void par__http_access_log(par_http_t *h, h2o_req_t *req, const char *label, int http,
                          const char *rid, const par_call_t *c, int64_t t0_ns, const char *err_name)
{
    par_metrics_http(label, http);
    if (!atomic_load(&h->access_log))
        return;
    par_logline_t l;
    if (!par_log_begin(&l, http >= 500 ? PAR_LOG_WARN : PAR_LOG_INFO, "request"))
        return;
    loop_t *tl = par__http_tl_loop;
    par_log_strn(&l, "method", req->method.base, req->method.len);
    par_log_strn(&l, "path", req->path.base, req->path.len > 512 ? 512 : req->path.len);
    par_log_int(&l, "status", http);
    par_log_double(&l, "duration_ms", (double)(par__now_ns() - t0_ns) / 1e6);
    par_log_str(&l, "request_id", rid);
    const char *subject = c ? c->subject : tl && tl->who ? tl->who->subject : NULL;
    const char *tenant = c ? c->tenant : tl && tl->who ? tl->who->tenant : NULL;
    if (subject)
        par_log_str(&l, "subject", subject);
    if (tenant)
        par_log_str(&l, "tenant", tenant);
    if (c) {
        par_log_str(&l, "trace_id", c->trace_id);
        if (c->span_id[0])
            par_log_str(&l, "span_id", c->span_id);
        if (c->parent_span_id[0])
            par_log_str(&l, "parent_span_id", c->parent_span_id);
        par_log_str(&l, "agent", c->agent_id);
        if (c->pv) {
            par_log_str(&l, "package", c->pv->name);
            par_log_str(&l, "version", c->pv->version);
        }
    }
    if (err_name)
        par_log_str(&l, "error", err_name);
    par_log_end(&l);
}

void par__http_send_error(h2o_req_t *req, int status, const char *msg, size_t msglen,
                          const char *rid)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    int rc = par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":", par_status_name(status));
    rc |= par_buf_append_json_str(&b, msg, msglen);
    rc |= par_buf_appends(&b, ",\"request_id\":");
    rc |= par_buf_append_json_str(&b, rid, strlen(rid));
    rc |= par_buf_appends(&b, "}");
    char *body;
    size_t len;
    if (rc == PAR_OK) {
        body = h2o_mem_alloc_pool(&req->pool, b.len); /* h2o's pools abort rather than fail */
        memcpy(body, b.data, b.len);
        len = b.len;
    } else {
        /* out of memory: the error without its message (request ids need no escaping) */
        body = h2o_mem_alloc_pool(&req->pool, 256);
        int n = snprintf(body, 256, "{\"error\":\"%s\",\"message\":\"\",\"request_id\":\"%.128s\"}",
                         par_status_name(status), rid);
        len = n > 0 && n < 256 ? (size_t)n : 0;
    }
    par_buf_free(&b);
    int http = par_status_http(status);
    if (status == PAR_E_OVER_CAPACITY || status == PAR_E_SERVER_BUSY ||
        (status == PAR_E_TOO_MANY_RUNS &&
         h2o_find_header(&req->res.headers, H2O_TOKEN_RETRY_AFTER, -1) < 0))
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    par__http_send_body(req, http, "application/json", rid, body, len);
}

void par__http_send_json(h2o_req_t *req, int http, json_t *doc, const char *rid)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (s == NULL) {
        /* json_pack or json_dumps ran out of memory */
        par__http_send_error(req, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), rid);
        return;
    }
    size_t len = strlen(s);
    char *body = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(body, s, len);
    free(s);
    par__http_send_body(req, http, "application/json", rid, body, len);
}
