/*
 * http/server.c — see server.h. Routes (docs/api.md):
 *
 *   POST /agents/{id}/invoke      GET /agents      GET /agents/{id}
 *   GET  /runtime/health | ready | info | packages | packages/{name}
 *
 * Invocation path: parse and validate the body with the non-allocating JSON
 * scanner, hand a par_call_t to the runtime, return to the loop. The
 * completion arrives on this loop's multithread queue; a guard allocated in
 * the request's pool tells it whether the client is still there.
 *
 * Authentication comes first (serve()): open paths skip it; otherwise the
 * credential becomes an identity, the route's permission is checked on the
 * path alone (runtime:admin for /runtime/... and /metrics, agents:invoke for
 * the agent id), and only then is the request routed, with the identity on
 * the loop (loop_t.who) for the handlers and the access log. Before that,
 * on_req() runs the checks of http/check.c (framing, header encoding, ids in
 * the path). Beside it: http/listener.c (binding, descriptor budget) and
 * http/tls.c (certificates, reload, client identities).
 *
 * Calls whose client leaves are cancelled: HTTP/2 resets dispose the request
 * pool, whose guard cancels the call; HTTP/1 connections of running calls are
 * polled every 100 ms (gone_check), since h2o 2.2 does not read them then.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define H2O_USE_EPOLL 1
#include <h2o.h>

#include "http/check.h"
#include "http/listener.h"
#include "http/tls.h"
#include "loader/supervisor.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "metering/meter.h"
#include "obs/trace.h"
#include "runtime/converge.h"
#include "runtime/runtime.h"
#include "runtime/metrics.h"
#include "util/json.h"

typedef struct loop {
    struct par_http *http;
    pthread_t thread;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;
    h2o_multithread_receiver_t deploy_receiver;
    h2o_multithread_receiver_t auth_receiver;
    struct auth_wait *spare_wait; /* preallocated waiter for the next parked request */
    par_identity_t *who;          /* caller of the request being handled, NULL if anonymous */
    _Atomic int listen_fd;
    h2o_socket_t *listener;
    h2o_socket_t *super_sock;    /* the supervisor's epoll set, when this loop runs its I/O */
    int64_t accept_paused_until; /* ms; the listener rests after shedding at EMFILE */
    h2o_linklist_t calls;        /* hcall_t waiting for their agent, for gone_check() */
    SSL_CTX *ssl_ctx;            /* referenced: the TLS context new connections get */
    uint64_t ssl_gen;
    int64_t next_gone_check; /* ms */
    uint64_t rng;
} loop_t;

struct par_http {
    par_runtime_t *rt;
    par_http_opts_t opts;
    h2o_globalconf_t config;
    loop_t *loops;
    unsigned nloops;
    _Atomic int stop;
    _Atomic int stop_accepting;
    _Atomic int access_log;
    atomic_long pending;
    atomic_ulong cancelled; /* calls taken back because their client went away */
    par_http_tls_t *tls;    /* NULL: plain HTTP */
    char address[128];
};

typedef struct hcall {
    par_call_t *call;
    loop_t *loop;
    h2o_req_t *req; /* NULL once the client is gone */
    struct hcall **guard;
    h2o_multithread_message_t msg;
    h2o_linklist_t link; /* in loop_t.calls while the call runs */
    int64_t t0_ns;
} hcall_t;

static __thread loop_t *tl_loop;

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t rng_next(loop_t *l)
{
    /* xorshift64*: request and trace ids need uniqueness, not secrecy */
    l->rng ^= l->rng >> 12;
    l->rng ^= l->rng << 25;
    l->rng ^= l->rng >> 27;
    return l->rng * 0x2545F4914F6CDD1DULL;
}

static void hex64(uint64_t v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

static int safe_id(const char *s, size_t n, size_t max)
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

static h2o_iovec_t find_header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    if (i < 0)
        return h2o_iovec_init(NULL, 0);
    return req->headers.entries[i].value;
}

/* Request id: X-Request-ID when it is sane, else a fresh one. */
static void request_id_for(h2o_req_t *req, loop_t *l, char *out, size_t cap)
{
    h2o_iovec_t v = find_header(req, H2O_STRLIT("x-request-id"));
    if (v.base && safe_id(v.base, v.len, cap - 1)) {
        memcpy(out, v.base, v.len);
        out[v.len] = '\0';
        return;
    }
    hex64(rng_next(l), out);
    hex64(rng_next(l), out + 16);
    out[32] = '\0';
}

static const char *reason_of(int http)
{
    switch (http) {
    case 200:
        return "OK";
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

static void send_body(h2o_req_t *req, int status, const char *ctype, const char *rid, char *body,
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

static const char *route_of(h2o_iovec_t p)
{
    static const struct {
        const char *prefix;
        const char *route;
        int exact;
    } table[] = {{"/agents/", "agent", 0},
                 {"/agents", "agents", 1},
                 {"/runtime/health", "health", 1},
                 {"/runtime/ready", "ready", 1},
                 {"/runtime/info", "info", 1},
                 {"/runtime/usage", "usage", 1},
                 {"/runtime/packages/", "package", 0},
                 {"/runtime/packages", "packages", 1},
                 {"/metrics", "metrics", 1}};
    if (p.len > 7 && memcmp(p.base + p.len - 7, "/invoke", 7) == 0 && p.len > 8 &&
        memcmp(p.base, "/agents/", 8) == 0)
        return "invoke";
    for (size_t i = 0; i < sizeof(table) / sizeof(*table); i++) {
        size_t n = strlen(table[i].prefix);
        if (table[i].exact ? (p.len == n && memcmp(p.base, table[i].prefix, n) == 0)
                           : (p.len > n && memcmp(p.base, table[i].prefix, n) == 0))
            return table[i].route;
    }
    return "other";
}

static void access_log(par_http_t *h, h2o_req_t *req, int http, const char *rid,
                       const par_call_t *c, int64_t t0_ns, const char *err_name)
{
    par_metrics_http(route_of(req->path_normalized), http);
    if (!atomic_load(&h->access_log))
        return;
    par_logline_t l;
    if (!par_log_begin(&l, http >= 500 ? PAR_LOG_WARN : PAR_LOG_INFO, "request"))
        return;
    par_log_strn(&l, "method", req->method.base, req->method.len);
    par_log_strn(&l, "path", req->path.base, req->path.len > 512 ? 512 : req->path.len);
    par_log_int(&l, "status", http);
    par_log_double(&l, "duration_ms", (double)(par__now_ns() - t0_ns) / 1e6);
    par_log_str(&l, "request_id", rid);
    const char *subject = c ? c->subject : tl_loop && tl_loop->who ? tl_loop->who->subject : NULL;
    const char *tenant = c ? c->tenant : tl_loop && tl_loop->who ? tl_loop->who->tenant : NULL;
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

/* Sends {"error","message","request_id"} with the status's HTTP code. */
static void send_error(h2o_req_t *req, int status, const char *msg, size_t msglen, const char *rid)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":", par_status_name(status));
    par_buf_append_json_str(&b, msg, msglen);
    par_buf_appends(&b, ",\"request_id\":");
    par_buf_append_json_str(&b, rid, strlen(rid));
    par_buf_appends(&b, "}");
    char *body = h2o_mem_alloc_pool(&req->pool, b.len ? b.len : 1);
    memcpy(body, b.data, b.len);
    size_t len = b.len;
    par_buf_free(&b);
    int http = par_status_http(status);
    if (status == PAR_E_OVER_CAPACITY || status == PAR_E_SERVER_BUSY)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    send_body(req, http, "application/json", rid, body, len);
}

static void send_json(h2o_req_t *req, int http, json_t *doc, const char *rid)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    size_t len = s ? strlen(s) : 0;
    char *body = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(body, s ? s : "", len);
    free(s);
    send_body(req, http, "application/json", rid, body, len);
}

/* ---- invoke ----------------------------------------------------------------- */

static void complete_call(hcall_t *hc);
static void cancel_call(hcall_t *hc);

/* The request's pool is going away before its call answered: the client
 * closed the connection (or reset the stream). Nobody will read the result,
 * so the call is taken back from its worker instead of running to its
 * deadline while holding a concurrency slot. */
static void guard_dispose(void *p)
{
    hcall_t **slot = p;
    hcall_t *hc = *slot;
    if (hc == NULL)
        return;
    hc->req = NULL;
    hc->guard = NULL;
    cancel_call(hc);
}

/* Takes a call back from its worker because its client is gone. */
static void cancel_call(hcall_t *hc)
{
    par_http_t *h = hc->loop->http;
    char rid[PAR_REQUEST_ID_MAX + 1], agent[PAR_ID_MAX + 1];
    memcpy(rid, hc->call->request_id, sizeof(rid));
    memcpy(agent, hc->call->agent_id, sizeof(agent));
    /* may complete (and free) hc and its call before it returns */
    if (par__call_cancel(hc->call, "the client went away before the agent answered") != PAR_OK)
        return;
    atomic_fetch_add(&h->cancelled, 1);
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "call cancelled: the client went away")) {
        par_log_str(&l, "request_id", rid);
        par_log_str(&l, "agent", agent);
        par_log_end(&l);
    }
}

static void invoke_done(par_call_t *c)
{
    hcall_t *hc = c->data;
    if (tl_loop == hc->loop)
        complete_call(hc); /* a worker's answer read by this loop itself */
    else
        h2o_multithread_send_message(&hc->loop->receiver, &hc->msg);
}

static char *put_str(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

#define put_lit(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)

/* A duration in nanoseconds as milliseconds with three decimals, rounded to
 * the nearest microsecond: what "%.3f" of ns / 1e6 writes. */
static char *put_ms3(char *o, int64_t ns)
{
    uint64_t us = ((uint64_t)(ns > 0 ? ns : 0) + 500) / 1000;
    unsigned fr = (unsigned)(us % 1000);
    o = par_dec_u64(o, us / 1000);
    *o++ = '.';
    *o++ = (char)('0' + fr / 100);
    *o++ = (char)('0' + fr / 10 % 10);
    *o++ = (char)('0' + fr % 10);
    return o;
}

static void respond_call(hcall_t *hc)
{
    par_call_t *c = hc->call;
    h2o_req_t *req = hc->req;
    par_http_t *h = hc->loop->http;
    char tp[56];
    if (par_trace_format(c->trace_id, c->span_id, tp) == 0)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("traceparent"), 0, NULL,
                              h2o_strdup(&req->pool, tp, 55).base, 55);
    if (c->status != PAR_OK) {
        send_error(req, c->status, c->output.data ? c->output.data : "", c->output.len,
                   c->request_id);
        access_log(h, req, par_status_http(c->status), c->request_id, c, hc->t0_ns,
                   par_status_name(c->status));
        return;
    }
    /* copies, not snprintf: this runs once per request on the loop. The ids,
     * names and versions are validated tokens that need no JSON escaping. */
    size_t cap = c->output.len + strlen(c->agent_id) + strlen(c->trace_id) + strlen(c->request_id) +
                 strlen(c->pv->name) + strlen(c->pv->version) +
                 (c->units_json ? strlen(c->units_json) : 0) + 192;
    char *body = h2o_mem_alloc_pool(&req->pool, cap), *o = body;
    o = put_lit(o, "{\"agent_id\":\"");
    o = put_str(o, c->agent_id);
    o = put_lit(o, "\",\"output\":");
    memcpy(o, c->output.data, c->output.len);
    o += c->output.len;
    o = put_lit(o, ",\"duration_ms\":");
    o = put_ms3(o, c->finished_ns - c->started_ns);
    o = put_lit(o, ",\"trace_id\":\"");
    o = put_str(o, c->trace_id);
    o = put_lit(o, "\",\"metadata\":{\"request_id\":\"");
    o = put_str(o, c->request_id);
    o = put_lit(o, "\",\"package\":\"");
    o = put_str(o, c->pv->name);
    o = put_lit(o, "\",\"version\":\"");
    o = put_str(o, c->pv->version);
    o = put_lit(o, "\"");
    if (c->units_json) {
        o = put_lit(o, ",\"units\":");
        o = put_str(o, c->units_json);
    }
    o = put_lit(o, "}}");
    send_body(req, 200, "application/json", c->request_id, body, (size_t)(o - body));
    access_log(h, req, 200, c->request_id, c, hc->t0_ns, NULL);
}

static void on_completions(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        complete_call(H2O_STRUCT_FROM_MEMBER(hcall_t, msg, m));
    }
}

static void complete_call(hcall_t *hc)
{
    if (h2o_linklist_is_linked(&hc->link))
        h2o_linklist_unlink(&hc->link);
    if (hc->req) {
        respond_call(hc);
        if (hc->guard)
            *hc->guard = NULL;
    }
    par__call_free(hc->call);
    atomic_fetch_sub(&hc->loop->http->pending, 1);
    free(hc);
}

/* Trace id: W3C traceparent (whose span becomes this invocation's parent),
 * else the body's trace_id, else a new one. */
static void trace_for(h2o_req_t *req, loop_t *l, const par_json_field_t *body_trace, par_call_t *c)
{
    h2o_iovec_t tp = find_header(req, H2O_STRLIT("traceparent"));
    if (tp.base && par_trace_parse(tp.base, tp.len, c->trace_id, c->parent_span_id) == 0)
        return;
    if (body_trace->ptr && body_trace->len >= 3 && body_trace->ptr[0] == '"' &&
        safe_id(body_trace->ptr + 1, body_trace->len - 2, 63)) {
        memcpy(c->trace_id, body_trace->ptr + 1, body_trace->len - 2);
        c->trace_id[body_trace->len - 2] = '\0';
        return;
    }
    hex64(rng_next(l), c->trace_id);
    hex64(rng_next(l), c->trace_id + 16);
    c->trace_id[32] = '\0';
}

static void handle_invoke(par_http_t *h, loop_t *l, h2o_req_t *req, const char *id, size_t idlen,
                          const char *rid, int64_t t0)
{
    const char *body = req->entity.base ? req->entity.base : "";
    size_t blen = req->entity.base ? req->entity.len : 0;
    if (idlen > PAR_ID_MAX) {
        send_error(req, PAR_E_AGENT_NOT_FOUND, H2O_STRLIT("no such agent (id too long)"), rid);
        access_log(h, req, 404, rid, NULL, t0, "agent_not_found");
        return;
    }
    par_json_field_t f[3] = {{"input", NULL, 0}, {"context", NULL, 0}, {"trace_id", NULL, 0}};
    size_t off = 0;
    if (blen == 0 || par_json_scan(body, blen, f, 3, &off) != 0) {
        char msg[128];
        const char *what = off < blen && (unsigned char)body[off] >= 0x80 ? ": invalid UTF-8"
                           : off + 1 < blen && body[off] == '\\' && body[off + 1] == 'u'
                               ? ": a lone UTF-16 surrogate escape"
                               : "";
        int n = blen == 0 ? snprintf(msg, sizeof(msg),
                                     "the request body is empty; send JSON "
                                     "such as {\"input\": ...}")
                          : snprintf(msg, sizeof(msg),
                                     "the request body is not valid JSON (error at byte %zu%s)",
                                     off, what);
        send_error(req, PAR_E_INVALID_JSON, msg, (size_t)n, rid);
        access_log(h, req, 400, rid, NULL, t0, "invalid_json");
        return;
    }
    par_call_t *c = par__call_new();
    hcall_t *hc = calloc(1, sizeof(*hc));
    if (c == NULL || hc == NULL) {
        par__call_free(c);
        free(hc);
        send_error(req, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), rid);
        return;
    }
    memcpy(c->agent_id, id, idlen);
    c->agent_id[idlen] = '\0';
    snprintf(c->request_id, sizeof(c->request_id), "%s", rid);
    if (l->who) {
        /* the caller's identity travels with the call, into sub-agent calls too */
        c->subject = strdup(l->who->subject);
        c->tenant = l->who->tenant ? strdup(l->who->tenant) : NULL;
    }
    int envelope = par_json_root_type(body, blen) == '{' && f[0].ptr != NULL;
    if (envelope) {
        c->input = f[0].ptr;
        c->input_len = f[0].len;
        if (f[1].ptr && par_json_root_type(f[1].ptr, f[1].len) == '{') {
            c->context = f[1].ptr;
            c->context_len = f[1].len;
        } else if (f[1].ptr && !(f[1].len == 4 && memcmp(f[1].ptr, "null", 4) == 0)) {
            send_error(req, PAR_E_BAD_REQUEST, H2O_STRLIT("\"context\" must be a JSON object"),
                       rid);
            access_log(h, req, 400, rid, NULL, t0, "bad_request");
            par__call_free(c);
            free(hc);
            return;
        }
    } else {
        c->input = body;
        c->input_len = blen;
        par_json_trim(&c->input, &c->input_len);
    }
    trace_for(req, l, envelope ? &f[2] : &(par_json_field_t){NULL, NULL, 0}, c);
    h2o_iovec_t tmo = find_header(req, H2O_STRLIT("x-par-timeout-ms"));
    if (tmo.base && tmo.len > 0 && tmo.len < 10) {
        char tb[16];
        memcpy(tb, tmo.base, tmo.len);
        tb[tmo.len] = '\0';
        char *end;
        unsigned long v = strtoul(tb, &end, 10);
        if (*end == '\0' && v > 0)
            c->timeout_ms = (uint32_t)v;
    }
    c->done = invoke_done;
    c->data = hc;
    hc->call = c;
    hc->loop = l;
    hc->req = req;
    hc->t0_ns = t0;
    long now_pending = atomic_fetch_add(&h->pending, 1) + 1;
    if (now_pending > (long)h->opts.max_in_flight) {
        atomic_fetch_sub(&h->pending, 1);
        char msg[160];
        int n =
            snprintf(msg, sizeof(msg),
                     "the runtime is at its limit of %u calls in flight (limits.max_in_flight); "
                     "retry shortly",
                     h->opts.max_in_flight);
        send_error(req, PAR_E_SERVER_BUSY, msg, (size_t)n, rid);
        access_log(h, req, 503, rid, NULL, t0, par_status_name(PAR_E_SERVER_BUSY));
        par__call_free(c);
        free(hc);
        return;
    }
    int rc = par__call_start(h->rt, c);
    if (rc != PAR_OK) {
        atomic_fetch_sub(&h->pending, 1);
        send_error(req, rc, c->output.data ? c->output.data : "", c->output.len, rid);
        access_log(h, req, par_status_http(rc), rid, c, t0, par_status_name(rc));
        par__call_free(c);
        free(hc);
        return;
    }
    /* from here the call completes on this loop's queue; guard the request */
    h2o_linklist_insert(&l->calls, &hc->link);
    hcall_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), guard_dispose);
    *slot = hc;
    hc->guard = slot;
}

/* ---- listings ----------------------------------------------------------------- */

static json_t *agent_json(const par_route_t *r)
{
    const par_manifest_t *m = r->pv->manifest;
    const par_export_t *e = &m->exports[r->export_idx];
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "id", r->id, "package", r->pv->name,
                     "version", r->pv->version, "description",
                     e->description[0] ? e->description : m->description, "display_name",
                     e->name[0] ? e->name : m->display_name, "public", e->is_public);
}

static void handle_agents(par_http_t *h, h2o_req_t *req, const char *rid)
{
    par_table_t *t = par__table_get(h->rt);
    json_t *a = json_array();
    for (size_t i = 0; i < t->count; i++) {
        const par_route_t *r = &t->routes[i];
        if (strchr(r->id, '@') || !r->pv->manifest->exports[r->export_idx].is_public)
            continue;
        /* a caller sees the agents it may invoke */
        if (tl_loop->who && !par_perms_allow_invoke(&tl_loop->who->perms, r->id, strlen(r->id)))
            continue;
        json_array_append_new(a, agent_json(r));
    }
    par__table_unref(t);
    send_json(req, 200, json_pack("{s:o}", "agents", a), rid);
}

static void handle_agent(par_http_t *h, h2o_req_t *req, const char *id, size_t idlen,
                         const char *rid)
{
    par_table_t *t = par__table_get(h->rt);
    const par_route_t *r = par__table_find(t, id, idlen);
    if (r && r->pv->manifest->exports[r->export_idx].is_public) {
        json_t *j = agent_json(r);
        par__table_unref(t);
        send_json(req, 200, j, rid);
        return;
    }
    par__table_unref(t);
    char msg[PAR_ID_MAX + 32];
    int n = snprintf(msg, sizeof(msg), "no agent '%.*s'", (int)(idlen > 200 ? 200 : idlen), id);
    send_error(req, PAR_E_AGENT_NOT_FOUND, msg, (size_t)n, rid);
}

static json_t *package_json(par_pkgver_t *pv)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(pv->name));
    json_object_set_new(o, "version", json_string(pv->version));
    json_object_set_new(o, "state", json_string(par_pkg_state_name(atomic_load(&pv->state))));
    json_object_set_new(o, "sha256", pv->sha256[0] ? json_string(pv->sha256) : json_null());
    json_object_set_new(o, "source", json_string(pv->source ? pv->source : ""));
    json_object_set_new(o, "last_error",
                        pv->last_error ? json_string(pv->last_error) : json_null());
    json_object_set_new(o, "last_error_name",
                        pv->last_status ? json_string(par_status_name(pv->last_status))
                                        : json_null());
    if (pv->manifest) {
        const par_manifest_t *m = pv->manifest;
        json_object_set_new(o, "display_name", json_string(m->display_name));
        json_object_set_new(o, "description", json_string(m->description));
        json_object_set_new(o, "runtime", json_string(m->runtime));
        json_object_set_new(
            o, "isolation",
            json_string(pv->isolation == PAR_ISOLATION_IN_PROCESS ? "in-process" : "worker"));
        json_t *calls = m->calls ? json_array() : NULL; /* metadata.par.calls, when declared */
        for (size_t i = 0; calls && m->calls[i]; i++)
            json_array_append_new(calls, json_string(m->calls[i]));
        if (calls)
            json_object_set_new(o, "calls", calls);
        json_t *ex = json_array();
        for (size_t i = 0; i < m->export_count; i++) {
            const par_export_t *e = &m->exports[i];
            char *id = NULL;
            if (asprintf(&id, "%s%s%s", pv->name, e->name[0] ? "/" : "", e->name) < 0)
                id = NULL;
            json_array_append_new(ex, json_pack("{s:s, s:s, s:b, s:s}", "id", id ? id : "", "name",
                                                e->name, "public", e->is_public, "entrypoint",
                                                e->entrypoint));
            free(id);
        }
        json_object_set_new(o, "exports", ex);
        json_t *warn = json_array(); /* agent.yaml findings that did not refuse it */
        for (size_t i = 0; i < m->warnings.count; i++)
            json_array_append_new(warn, json_string(m->warnings.items[i]));
        json_object_set_new(o, "warnings", warn);
        json_object_set_new(o, "limits",
                            json_pack("{s:i, s:I}", "timeout_ms", (int)pv->timeout_ms,
                                      "max_input_bytes", (json_int_t)pv->max_input));
    }
    json_object_set_new(o, "timings_ms",
                        json_pack("{s:f, s:f, s:f, s:f}", "fetch", pv->t_read_ms, "verify",
                                  pv->t_verify_ms, "extract", pv->t_extract_ms, "load",
                                  pv->t_load_ms));
    json_object_set_new(o, "signer", pv->signer[0] ? json_string(pv->signer) : json_null());
    json_object_set_new(o, "origin", json_string(pv->origin ? pv->origin : "api"));
    if (pv->pool) {
        json_object_set_new(o, "workers", par_pool_describe(pv->pool));
        json_object_set_new(o, "restarts", json_integer(par_pool_restarts(pv->pool)));
        par_pool_stats_t st;
        par_pool_stats(pv->pool, &st);
        json_object_set_new(o, "health", json_string(st.crash_loop ? "crash_loop" : "ok"));
        json_object_set_new(o, "crashes_in_row", json_integer(st.crashes_in_row));
        json_object_set_new(o, "sandbox", par_pool_sandbox(pv->pool));
    } else if (pv->isolation == PAR_ISOLATION_IN_PROCESS && pv->manifest) {
        /* the operator trusted it: its code runs inside the runtime, unconfined */
        json_object_set_new(o, "sandbox",
                            json_pack("{s:b, s:s}", "enabled", 0, "reason", "trusted in-process"));
    }
    return o;
}

static void handle_packages(par_http_t *h, h2o_req_t *req, const char *name, size_t nlen,
                            const char *rid)
{
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(h->rt, &pk, &n) != PAR_OK) {
        send_error(req, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), rid);
        return;
    }
    json_t *a = json_array();
    json_t *one = NULL;
    for (size_t i = 0; i < n; i++) {
        if (name == NULL) {
            json_array_append_new(a, package_json(pk[i]));
        } else if (strlen(pk[i]->name) == nlen && memcmp(pk[i]->name, name, nlen) == 0) {
            json_decref(one);
            one = package_json(pk[i]);
        }
        par__pkgver_unref(pk[i]);
    }
    free(pk);
    if (name == NULL) {
        send_json(req, 200, json_pack("{s:o}", "packages", a), rid);
        return;
    }
    json_decref(a);
    if (one) {
        send_json(req, 200, one, rid);
        return;
    }
    char msg[160];
    int m = snprintf(msg, sizeof(msg), "no package '%.*s'", (int)(nlen > 100 ? 100 : nlen), name);
    send_error(req, PAR_E_NOT_FOUND, msg, (size_t)m, rid);
}

static void handle_info(par_http_t *h, h2o_req_t *req, const char *rid)
{
    par_runtime_t *rt = h->rt;
    par_pkgver_t **pk;
    size_t n = 0, active = 0, failed = 0;
    if (par__packages_snapshot(rt, &pk, &n) == PAR_OK) {
        for (size_t i = 0; i < n; i++) {
            int st = atomic_load(&pk[i]->state);
            active += st == PAR_PKG_ACTIVE;
            failed += st == PAR_PKG_FAILED;
            par__pkgver_unref(pk[i]);
        }
        free(pk);
    }
    par_table_t *t = par__table_get(rt);
    size_t agents = 0;
    for (size_t i = 0; i < t->count; i++)
        agents += strchr(t->routes[i].id, '@') == NULL &&
                  t->routes[i].pv->manifest->exports[t->routes[i].export_idx].is_public;
    par__table_unref(t);
    json_t *o = json_pack("{s:s, s:s, s:f, s:{s:i, s:i, s:i}, s:i, s:{s:i, s:s, s:s}, s:s, s:i}",
                          "name", "par", "version", par_version(), "uptime_s",
                          (double)(par__now_ms() - rt->started_ms) / 1000.0, "packages", "total",
                          (int)n, "active", (int)active, "failed", (int)failed, "agents",
                          (int)agents, "build", "agent_abi", PAR_AGENT_ABI, "compiler", __VERSION__,
                          "date", __DATE__, "listen", h->address, "http_threads", (int)h->nloops);
    json_object_set_new(o, "registry", par__runtime_registry_status(rt));
    json_object_set_new(o, "trust",
                        json_pack("{s:b, s:I}", "require_signatures", !rt->cfg.allow_unsigned,
                                  "trusted_keys", (json_int_t)rt->trust.nkeys));
    json_object_set_new(o, "auth", par_auth_describe(h->opts.auth));
    json_object_set_new(o, "http",
                        json_pack("{s:b, s:b, s:b, s:I, s:I, s:I, s:I}", "http2", h->opts.http2,
                                  "reuse_port", h->opts.reuse_port, "tls", h->opts.tls_cert != NULL,
                                  "max_in_flight", (json_int_t)h->opts.max_in_flight, "in_flight",
                                  (json_int_t)atomic_load(&h->pending), "cancelled",
                                  (json_int_t)atomic_load(&h->cancelled),
                                  "shed_at_descriptor_limit", (json_int_t)par__http_shed_count()));
    send_json(req, 200, o, rid);
}

/* ---- management: deploy, reload, remove ------------------------------------------ */

typedef struct deploy_job {
    loop_t *loop;
    h2o_req_t *req; /* NULL once the client is gone */
    struct deploy_job **guard;
    h2o_multithread_message_t msg;
    char *path, *url, *sha256, *signature_url;
    int ok_status; /* 201 for a deploy, 200 for a reload */
    int rc;
    par_buf_t err;
    par_pkgver_t *pv;
    char rid[PAR_REQUEST_ID_MAX + 1];
    int64_t t0;
    par_identity_t *who; /* referenced: who asked, for the access log */
    json_t *doc;         /* a report's answer (GET /runtime/usage), or NULL */
    int64_t from_ms, to_ms;
    char group_by[16];
} deploy_job_t;

static void deploy_guard_dispose(void *p)
{
    deploy_job_t **slot = p;
    if (*slot) {
        (*slot)->req = NULL;
        (*slot)->guard = NULL;
    }
}

static void *deploy_thread(void *arg)
{
    deploy_job_t *j = arg;
    par_deploy_req_t dr = {.path = j->path,
                           .url = j->url,
                           .sha256 = j->sha256,
                           .signature_url = j->signature_url,
                           .origin = "api"};
    j->rc = par__deploy(j->loop->http->rt, &dr, &j->err, &j->pv);
    h2o_multithread_send_message(&j->loop->deploy_receiver, &j->msg);
    return NULL;
}

static void on_deploy_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        deploy_job_t *j = H2O_STRUCT_FROM_MEMBER(deploy_job_t, msg, m);
        if (j->req) {
            int http;
            if (j->rc == PAR_OK) {
                http = j->ok_status;
                send_json(j->req, http, j->doc ? j->doc : package_json(j->pv), j->rid);
                j->doc = NULL;
            } else {
                http = par_status_http(j->rc);
                size_t len = j->err.len;
                while (len && j->err.data[len - 1] == '\n')
                    len--;
                send_error(j->req, j->rc, j->err.data ? j->err.data : "", len, j->rid);
            }
            j->loop->who = j->who;
            access_log(j->loop->http, j->req, http, j->rid, NULL, j->t0,
                       j->rc == PAR_OK ? NULL : par_status_name(j->rc));
            j->loop->who = NULL;
            if (j->guard)
                *j->guard = NULL;
        }
        if (j->pv)
            par__pkgver_unref(j->pv);
        json_decref(j->doc);
        par_identity_unref(j->who);
        par_buf_free(&j->err);
        free(j->path), free(j->url), free(j->sha256), free(j->signature_url);
        free(j);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Deploys `source` (a URL when it has a scheme, else a host path). */
static void start_deploy(loop_t *l, h2o_req_t *req, const char *source, const char *sha256,
                         const char *signature_url, int ok_status, const char *rid, int64_t t0)
{
    deploy_job_t *j = calloc(1, sizeof(*j));
    j->loop = l;
    j->req = req;
    if (strstr(source, "://"))
        j->url = strdup(source);
    else
        j->path = strdup(source);
    j->sha256 = dup_or_null(sha256);
    j->signature_url = dup_or_null(signature_url);
    j->ok_status = ok_status;
    j->t0 = t0;
    if ((j->who = l->who) != NULL)
        par_identity_ref(j->who);
    snprintf(j->rid, sizeof(j->rid), "%s", rid);
    par_buf_init(&j->err, 64 * 1024);
    deploy_job_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), deploy_guard_dispose);
    *slot = j;
    j->guard = slot;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, deploy_thread, j) != 0) {
        j->rc = PAR_E_INTERNAL;
        par_buf_appends(&j->err, "cannot start a deploy thread");
        h2o_multithread_send_message(&l->deploy_receiver, &j->msg);
    }
    pthread_attr_destroy(&attr);
}

static void *usage_thread(void *arg)
{
    deploy_job_t *j = arg;
    j->rc = par_meter_report(j->loop->http->rt->meter, j->from_ms, j->to_ms,
                             j->group_by[0] ? j->group_by : NULL, &j->doc, &j->err);
    h2o_multithread_send_message(&j->loop->deploy_receiver, &j->msg);
    return NULL;
}

/* The value of query parameter `name` (not decoded: the values taken here are
 * numbers and names), or a NULL base. */
static h2o_iovec_t query_param(h2o_req_t *req, const char *name)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    const char *p = req->path.base + req->query_at + 1;
    const char *end = req->path.base + req->path.len;
    size_t n = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > n && memcmp(p, name, n) == 0 && p[n] == '=')
            return h2o_iovec_init(p + n + 1, (size_t)(stop - p) - n - 1);
        p = stop + 1;
    }
    return h2o_iovec_init(NULL, 0);
}

/* A query parameter holding Unix milliseconds; -1 when malformed. */
static int64_t query_ms(h2o_req_t *req, const char *name, int64_t dflt)
{
    h2o_iovec_t v = query_param(req, name);
    if (v.base == NULL)
        return dflt;
    char b[24];
    if (v.len == 0 || v.len >= sizeof(b))
        return -1;
    memcpy(b, v.base, v.len);
    b[v.len] = '\0';
    char *e;
    long long x = strtoll(b, &e, 10);
    return *e || x < 0 ? -1 : (int64_t)x;
}

/* GET /runtime/usage?from=<ms>&to=<ms>&group_by=agent|subject|tenant|package */
static void handle_usage(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0)
{
    par_http_t *h = l->http;
    if (h->rt->meter == NULL) {
        send_error(req, PAR_E_NOT_FOUND,
                   H2O_STRLIT("usage metering is off (set metering.enabled: true)"), rid);
        access_log(h, req, 404, rid, NULL, t0, "not_found");
        return;
    }
    int64_t from = query_ms(req, "from", 0), to = query_ms(req, "to", INT64_MAX);
    h2o_iovec_t g = query_param(req, "group_by");
    static const char *const groups[] = {"agent", "subject", "tenant", "package"};
    int gok = g.base == NULL;
    for (size_t i = 0; !gok && i < sizeof(groups) / sizeof(*groups); i++)
        gok = h2o_memis(g.base, g.len, groups[i], strlen(groups[i]));
    if (from < 0 || to < 0 || !gok) {
        const char *msg = !gok ? "group_by must be agent, subject, tenant or package"
                               : "from and to are Unix times in milliseconds";
        send_error(req, PAR_E_BAD_REQUEST, msg, strlen(msg), rid);
        access_log(h, req, 400, rid, NULL, t0, "bad_request");
        return;
    }
    deploy_job_t *j = calloc(1, sizeof(*j));
    j->loop = l;
    j->req = req;
    j->ok_status = 200;
    j->t0 = t0;
    j->from_ms = from;
    j->to_ms = to;
    if (g.base)
        snprintf(j->group_by, sizeof(j->group_by), "%.*s", (int)g.len, g.base);
    if ((j->who = l->who) != NULL)
        par_identity_ref(j->who);
    snprintf(j->rid, sizeof(j->rid), "%s", rid);
    par_buf_init(&j->err, 64 * 1024);
    deploy_job_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), deploy_guard_dispose);
    *slot = j;
    j->guard = slot;
    /* the database is read off the event loop, like a deploy */
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, usage_thread, j) != 0) {
        j->rc = PAR_E_INTERNAL;
        par_buf_appends(&j->err, "cannot start a report thread");
        h2o_multithread_send_message(&l->deploy_receiver, &j->msg);
    }
    pthread_attr_destroy(&attr);
}

/* POST /runtime/packages {"url" | "path", "sha256"?, "signature_url"?} */
static void handle_deploy(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0)
{
    json_error_t jerr;
    json_t *doc = req->entity.base ? json_loadb(req->entity.base, req->entity.len, 0, &jerr) : NULL;
    json_t *jpath = json_object_get(doc, "path"), *jurl = json_object_get(doc, "url");
    json_t *jsha = json_object_get(doc, "sha256"), *jsig = json_object_get(doc, "signature_url");
    const char *path = json_string_value(jpath), *url = json_string_value(jurl);
    if (doc == NULL || !json_is_object(doc)) {
        send_error(req, PAR_E_INVALID_JSON,
                   H2O_STRLIT("the body must be a JSON object such as {\"url\": \"s3://bucket/"
                              "pkg-1.0.0.apkg\"} or {\"path\": \"/srv/pkg.apkg\"}"),
                   rid);
    } else if ((jpath && !path) || (jurl && !url) || (jsha && !json_is_string(jsha)) ||
               (jsig && !json_is_string(jsig))) {
        send_error(req, PAR_E_BAD_REQUEST,
                   H2O_STRLIT("\"url\", \"path\", \"sha256\" and \"signature_url\" are strings"),
                   rid);
    } else if ((path == NULL || *path == '\0') == (url == NULL || *url == '\0')) {
        send_error(req, PAR_E_BAD_REQUEST,
                   H2O_STRLIT("exactly one of \"url\" (https:// or s3://) and \"path\" (a file "
                              "on this host) is required"),
                   rid);
    } else if (path && strstr(path, "://")) {
        send_error(req, PAR_E_BAD_REQUEST,
                   H2O_STRLIT("\"path\" is a path on this host; pass a URL as \"url\""), rid);
    } else if (path && path[0] != '/') {
        /* the server's directory is not the client's, and a record whose source
         * depends on it would reload something else after a restart elsewhere */
        send_error(req, PAR_E_BAD_REQUEST,
                   H2O_STRLIT("\"path\" must be absolute (it names a file on the server's "
                              "host; `par deploy` sends the absolute path of its argument)"),
                   rid);
    } else {
        start_deploy(l, req, path ? path : url, json_string_value(jsha), json_string_value(jsig),
                     201, rid, t0);
        json_decref(doc);
        return;
    }
    access_log(l->http, req, req->res.status, rid, NULL, t0, NULL);
    json_decref(doc);
}

/* DELETE /runtime/packages/{name}[@version], POST /runtime/packages/{name}/reload */
static void handle_package_change(loop_t *l, h2o_req_t *req, const char *rest, size_t len,
                                  int is_post, const char *rid, int64_t t0)
{
    par_http_t *h = l->http;
    char spec[160];
    if (len >= sizeof(spec)) {
        send_error(req, PAR_E_NOT_FOUND, H2O_STRLIT("no such package"), rid);
        goto log;
    }
    memcpy(spec, rest, len);
    spec[len] = '\0';
    if (is_post) {
        char *slash = strchr(spec, '/');
        if (slash == NULL || strcmp(slash, "/reload") != 0) {
            send_error(req, PAR_E_NOT_FOUND, H2O_STRLIT("no such route"), rid);
            goto log;
        }
        *slash = '\0';
        par_pkgver_t *pv = par__runtime_find(h->rt, spec);
        if (pv == NULL || pv->source == NULL) {
            if (pv)
                par__pkgver_unref(pv);
            char msg[200];
            int n = snprintf(msg, sizeof(msg), "no package '%.100s'", spec);
            send_error(req, PAR_E_NOT_FOUND, msg, (size_t)n, rid);
            goto log;
        }
        start_deploy(l, req, pv->source, NULL, pv->signature_url, 200, rid, t0);
        par__pkgver_unref(pv);
        return;
    }
    char *at = strchr(spec, '@');
    if (at)
        *at++ = '\0';
    if (par__runtime_remove(h->rt, spec, at) != PAR_OK) {
        char msg[200];
        int n = snprintf(msg, sizeof(msg), "no package '%.100s%s%.40s'", spec, at ? "@" : "",
                         at ? at : "");
        send_error(req, PAR_E_NOT_FOUND, msg, (size_t)n, rid);
        goto log;
    }
    send_json(req, 200, json_pack("{s:s, s:s}", "removed", spec, "version", at ? at : "*"), rid);
log:
    access_log(h, req, req->res.status, rid, NULL, t0, NULL);
}

/* ---- routing ------------------------------------------------------------------- */

static int path_is(h2o_iovec_t p, const char *s)
{
    return h2o_memis(p.base, p.len, s, strlen(s));
}

/* Routes a request that passed authentication (serve()). */
static int route(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0)
{
    par_http_t *h = l->http;
    h2o_iovec_t p = req->path_normalized;
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int status = 200;

    if (p.len > 8 && memcmp(p.base, "/agents/", 8) == 0) {
        const char *rest = p.base + 8;
        size_t rlen = p.len - 8;
        if (rlen > 7 && memcmp(rest + rlen - 7, "/invoke", 7) == 0) {
            if (!is_post) {
                send_error(req, PAR_E_METHOD_NOT_ALLOWED, H2O_STRLIT("use POST to invoke"), rid);
                status = 405;
                goto log;
            }
            handle_invoke(h, l, req, rest, rlen - 7, rid, t0);
            return 0; /* logged when answered */
        }
        if (!is_get) {
            send_error(req, PAR_E_METHOD_NOT_ALLOWED, H2O_STRLIT("use GET"), rid);
            status = 405;
            goto log;
        }
        handle_agent(h, req, rest, rlen, rid);
        status = req->res.status;
        goto log;
    }
    if (path_is(p, "/metrics")) {
        if (!is_get) {
            send_error(req, PAR_E_METHOD_NOT_ALLOWED, H2O_STRLIT("use GET"), rid);
            status = 405;
            goto log;
        }
        par_buf_t m;
        par_buf_init(&m, 0);
        par__runtime_render_metrics(h->rt, &m);
        char *body = h2o_mem_alloc_pool(&req->pool, m.len + 1);
        memcpy(body, m.data ? m.data : "", m.len);
        send_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", rid, body, m.len);
        par_buf_free(&m);
        goto log;
    }
    if (path_is(p, "/agents") || path_is(p, "/agents/")) {
        if (!is_get) {
            send_error(req, PAR_E_METHOD_NOT_ALLOWED, H2O_STRLIT("use GET"), rid);
            status = 405;
            goto log;
        }
        handle_agents(h, req, rid);
        goto log;
    }
    int is_delete = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE"));
    if (is_post && path_is(p, "/runtime/packages")) {
        handle_deploy(l, req, rid, t0);
        return 0;
    }
    if ((is_post || is_delete) && p.len > 18 && memcmp(p.base, "/runtime/packages/", 18) == 0) {
        handle_package_change(l, req, p.base + 18, p.len - 18, is_post, rid, t0);
        return 0;
    }
    if (p.len >= 9 && memcmp(p.base, "/runtime/", 9) == 0) {
        if (!is_get) {
            send_error(req, PAR_E_METHOD_NOT_ALLOWED,
                       H2O_STRLIT("use GET (POST and DELETE are for /runtime/packages)"), rid);
            status = 405;
            goto log;
        }
        if (path_is(p, "/runtime/usage")) {
            handle_usage(l, req, rid, t0);
            return 0;
        }
        if (path_is(p, "/runtime/health")) {
            send_json(req, 200, json_pack("{s:s}", "status", "ok"), rid);
        } else if (path_is(p, "/runtime/ready")) {
            par_buf_t why;
            par_buf_init(&why, 4096);
            int auth_ok = par_auth_ready(h->opts.auth, &why);
            if (!auth_ok)
                par_buf_appends(&why, "; ");
            if (par__runtime_ready(h->rt, &why) && auth_ok) {
                send_json(req, 200, json_pack("{s:s}", "status", "ready"), rid);
            } else {
                send_error(req, PAR_E_NOT_READY, why.data ? why.data : "", why.len, rid);
                status = 503;
            }
            par_buf_free(&why);
        } else if (path_is(p, "/runtime/info")) {
            handle_info(h, req, rid);
        } else if (path_is(p, "/runtime/packages")) {
            handle_packages(h, req, NULL, 0, rid);
        } else if (p.len > 18 && memcmp(p.base, "/runtime/packages/", 18) == 0) {
            handle_packages(h, req, p.base + 18, p.len - 18, rid);
            status = req->res.status;
        } else {
            goto notfound;
        }
        goto log;
    }
notfound:
    send_error(req, PAR_E_NOT_FOUND, H2O_STRLIT("no such route"), rid);
    status = 404;
log:
    access_log(h, req, status, rid, NULL, t0, NULL);
    return 0;
}

/* ---- authentication ------------------------------------------------------------- */

/* A request parked while the issuer's keys are refreshed (auth/oidc.h). */
typedef struct auth_wait {
    par_auth_waiter_t waiter;
    loop_t *loop;
    h2o_req_t *req; /* NULL once the client is gone */
    struct auth_wait **guard;
    h2o_multithread_message_t msg;
    int64_t t0;
    char rid[PAR_REQUEST_ID_MAX + 1];
} auth_wait_t;

enum { NEED_NOTHING, NEED_ADMIN, NEED_INVOKE };

/* The permission a request needs, from its path alone: the agent routes need
 * agents:invoke for their id, everything under /runtime and /metrics needs
 * runtime:admin. /agents (filtered by permission) and unknown paths (404)
 * need a valid credential only. */
static int need_of(h2o_iovec_t p, const char **agent, size_t *alen)
{
    if (p.len > 8 && memcmp(p.base, "/agents/", 8) == 0) {
        *agent = p.base + 8;
        *alen = p.len - 8;
        if (*alen > 7 && memcmp(*agent + *alen - 7, "/invoke", 7) == 0)
            *alen -= 7;
        return NEED_INVOKE;
    }
    if (path_is(p, "/metrics") || (p.len >= 8 && memcmp(p.base, "/runtime", 8) == 0))
        return NEED_ADMIN;
    return NEED_NOTHING;
}

/* 401/403/503 with the challenge RFC 6750 asks for. The message never says
 * why a token was refused: that goes to the log only. */
static void send_auth_error(par_http_t *h, h2o_req_t *req, int status, const char *msg,
                            const char *rid)
{
    const char *challenge = NULL;
    if (status == PAR_E_UNAUTHORIZED) {
        challenge = "Bearer realm=\"par\"";
        msg = par_auth_mode(h->opts.auth) == PAR_AUTH_API_KEY
                  ? "this route needs credentials: send Authorization: Bearer <key> or "
                    "X-API-Key: <key>"
                  : "this route needs credentials: send Authorization: Bearer <token>";
    } else if (status == PAR_E_INVALID_TOKEN) {
        challenge = "Bearer realm=\"par\", error=\"invalid_token\"";
        msg = "the bearer credential is not valid";
    } else if (status == PAR_E_FORBIDDEN) {
        challenge = "Bearer realm=\"par\", error=\"insufficient_scope\"";
    } else if (status == PAR_E_AUTH_UNAVAILABLE) {
        msg = "the token issuer's signing keys have not been obtained yet; try again shortly";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
    } else {
        msg = par_strerror(status);
    }
    if (challenge)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge,
                       strlen(challenge));
    send_error(req, status, msg, strlen(msg), rid);
}

static void auth_wait_dispose(void *p)
{
    auth_wait_t **slot = p;
    if (*slot) {
        (*slot)->req = NULL;
        (*slot)->guard = NULL;
    }
}

/* Called by the provider's refresh thread: hand the request back to its loop. */
static void auth_wait_ready(par_auth_waiter_t *pw)
{
    auth_wait_t *w = H2O_STRUCT_FROM_MEMBER(auth_wait_t, waiter, pw);
    h2o_multithread_send_message(&w->loop->auth_receiver, &w->msg);
}

static int serve(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0, int may_wait);

static void on_auth_ready(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        auth_wait_t *w = H2O_STRUCT_FROM_MEMBER(auth_wait_t, msg, m);
        atomic_fetch_sub(&w->loop->http->pending, 1);
        if (w->req) {
            if (w->guard)
                *w->guard = NULL;
            serve(w->loop, w->req, w->rid, w->t0, 0); /* checked again, never parked twice */
        }
        free(w);
    }
}

/* With tls.client_ca and authentication off, the verified client
 * certificate's subject is the caller (with authentication on, the bearer
 * credential decides, and the certificate only admits the connection). */
static par_identity_t *client_identity(par_http_t *h, h2o_req_t *req)
{
    char subject[PAR_SUBJECT_MAX + 1];
    h2o_socket_t *sock =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (par__http_tls_subject(h->tls, sock, subject, sizeof(subject)) != 0)
        return NULL;
    return par_identity_new(subject, NULL);
}

/* Authenticates and authorizes, then routes. `may_wait`: the request may be
 * parked once while the issuer's keys are refreshed. */
static int serve(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0, int may_wait)
{
    par_http_t *h = l->http;
    par_auth_t *auth = h->opts.auth;
    h2o_iovec_t p = req->path_normalized;
    par_identity_t *who = NULL;
    if (par_auth_enabled(auth) && !par_auth_is_open(auth, p.base, p.len)) {
        h2o_iovec_t az = find_header(req, H2O_STRLIT("authorization"));
        h2o_iovec_t key = find_header(req, H2O_STRLIT("x-api-key"));
        par_auth_creds_t cr = {{az.base, az.len}, {key.base, key.len}};
        auth_wait_t *w = NULL;
        if (may_wait) {
            if (l->spare_wait == NULL)
                l->spare_wait = calloc(1, sizeof(auth_wait_t));
            w = l->spare_wait;
        }
        if (w) {
            /* ready() may run on another thread before authenticate returns */
            w->waiter.ready = auth_wait_ready;
            w->loop = l;
            w->t0 = t0;
            snprintf(w->rid, sizeof(w->rid), "%s", rid);
        }
        int rc = par_auth_authenticate(auth, &cr, w ? &w->waiter : NULL, rid, &who);
        if (rc == PAR_AUTH_PENDING) {
            /* the loop answers on_auth_ready only after we return: safe to finish here */
            l->spare_wait = NULL;
            w->req = req;
            auth_wait_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), auth_wait_dispose);
            *slot = w;
            w->guard = slot;
            atomic_fetch_add(&h->pending, 1);
            return 0;
        }
        if (rc != PAR_OK) {
            send_auth_error(h, req, rc, NULL, rid);
            access_log(h, req, par_status_http(rc), rid, NULL, t0, par_status_name(rc));
            return 0;
        }
        const char *agent = NULL;
        size_t alen = 0;
        int need = need_of(p, &agent, &alen);
        char msg[400];
        rc = need == NEED_ADMIN ? par_auth_require_admin(auth, who, rid, msg, sizeof(msg))
             : need == NEED_INVOKE
                 ? par_auth_require_invoke(auth, who, agent, alen, rid, msg, sizeof(msg))
                 : PAR_OK;
        if (rc != PAR_OK) {
            l->who = who;
            send_auth_error(h, req, rc, msg, rid);
            access_log(h, req, par_status_http(rc), rid, NULL, t0, par_status_name(rc));
            l->who = NULL;
            par_identity_unref(who);
            return 0;
        }
    }
    if (who == NULL && par__http_tls_wants_clients(h->tls))
        who = client_identity(h, req);
    l->who = who;
    int r = route(l, req, rid, t0);
    l->who = NULL;
    par_identity_unref(who);
    return r;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    loop_t *l = tl_loop;
    int64_t t0 = par__now_ns();
    char rid[PAR_REQUEST_ID_MAX + 1];
    char msg[200];
    if (par__http_check_framing(req, msg, sizeof(msg)) != 0) {
        /* the message's end is unknown, so is the next one's start: close */
        req->http1_is_persistent = 0;
    } else if (par__http_check_headers(req, msg, sizeof(msg)) == 0 &&
               par__http_check_path_ids(req->path_normalized, msg, sizeof(msg)) == 0) {
        request_id_for(req, l, rid, sizeof(rid));
        return serve(l, req, rid, t0, 1);
    }
    hex64(rng_next(l), rid);
    hex64(rng_next(l), rid + 16);
    rid[32] = '\0';
    send_error(req, PAR_E_BAD_REQUEST, msg, strlen(msg), rid);
    access_log(l->http, req, 400, rid, NULL, t0, "bad_request");
    return 0;
}

/* ---- loops ------------------------------------------------------------------------ */

static void on_accept(h2o_socket_t *listener, const char *err)
{
    loop_t *l = listener->data;
    if (err != NULL)
        return;
    h2o_socket_t *sock;
    if (l->http->tls) {
        /* a reload publishes a new context; connections already open keep theirs */
        par__http_tls_current(l->http->tls, &l->ssl_ctx, &l->ssl_gen);
        l->accept_ctx.ssl_ctx = l->ssl_ctx;
    }
    while ((sock = h2o_evloop_socket_accept(listener)) != NULL) {
        int one = 1;
        setsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        h2o_accept(&l->accept_ctx, sock);
    }
    if (par__http_shed(l->listen_fd, errno, 64)) {
        /* out of descriptors: rest the listener, or this callback spins */
        h2o_socket_read_stop(listener);
        l->accept_paused_until = par__now_ms() + 100;
    }
}

static void on_super_ready(h2o_socket_t *sock, const char *err)
{
    (void)err;
    loop_t *l = sock->data;
    par_super_poll(l->http->rt->super);
}

/* h2o 2.2 stops reading an HTTP/1 connection while its request is handled,
 * so it learns that the client left only when the answer is written. Every
 * 100 ms the connections of calls still running are asked directly: a peer
 * that shut down its side (POLLRDHUP, even with bytes unread) or reset it
 * has gone, and its call is cancelled. (HTTP/2 streams end through the
 * request pool's guard when the stream is reset.) Loop thread. */
static void gone_check(loop_t *l)
{
    int64_t now = par__now_ms();
    if (now < l->next_gone_check)
        return;
    l->next_gone_check = now + 100;
    h2o_linklist_t *n = l->calls.next;
    while (n != &l->calls) {
        hcall_t *hc = H2O_STRUCT_FROM_MEMBER(hcall_t, link, n);
        n = n->next; /* hc may be freed below */
        h2o_req_t *req = hc->req;
        if (req == NULL || req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
            continue;
        h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
        struct pollfd pfd = {.fd = sock ? h2o_socket_get_fd(sock) : -1, .events = POLLRDHUP};
        if (pfd.fd >= 0 && poll(&pfd, 1, 0) == 1 &&
            (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            h2o_linklist_unlink(&hc->link);
            n = l->calls.next; /* completing may unlink others' neighbours: restart */
            cancel_call(hc);   /* answered 499 into the closed connection, which h2o then closes */
        }
    }
}

static void *loop_main(void *arg)
{
    loop_t *l = arg;
    tl_loop = l;
    par_super_t *super = l->super_sock ? l->http->rt->super : NULL;
    if (super)
        par__runtime_cork(1);
    while (!atomic_load(&l->http->stop)) {
        /* returns -1 on EINTR: just go round */
        h2o_evloop_run(l->ctx.loop, super ? 10 : 50);
        gone_check(l);
        if (super) {
            if (par_super_maintenance_due(super))
                par_super_poll(super);
            par__runtime_uncork(l->http->rt);
        }
        if (l->accept_paused_until && par__now_ms() >= l->accept_paused_until && l->listener) {
            l->accept_paused_until = 0;
            h2o_socket_read_start(l->listener, on_accept);
        }
        if (atomic_load(&l->http->stop_accepting) && l->listener) {
            h2o_socket_read_stop(l->listener);
            h2o_socket_close(l->listener); /* closes the listening descriptor */
            l->listener = NULL;
            l->listen_fd = -1;
        }
    }
    if (super) {
        par__runtime_uncork(l->http->rt);
        par__runtime_cork(0);
        h2o_socket_read_stop(l->super_sock);
        h2o_socket_close(l->super_sock); /* closes our duplicate of the epoll descriptor */
        l->super_sock = NULL;
        par_super_detach(super);
    }
    return NULL;
}

int par_http_start(par_runtime_t *rt, const par_http_opts_t *opts, par_http_t **out)
{
    par_http_t *h = calloc(1, sizeof(*h));
    h->rt = rt;
    h->opts = *opts;
    atomic_init(&h->access_log, opts->access_log);
    if (h->opts.threads == 0)
        h->opts.threads = 1;
    if (h->opts.max_body == 0)
        h->opts.max_body = 16u << 20;
    if (h->opts.max_in_flight == 0)
        h->opts.max_in_flight = PAR_HTTP_MAX_IN_FLIGHT_DEFAULT;
    const char *name = opts->listen ? opts->listen : "127.0.0.1:8080";
    struct sockaddr_storage ss;
    socklen_t sl;
    if (par__http_listen_parse(name, &ss, &sl) != 0) {
        par_log_msg(PAR_LOG_ERROR, "cannot parse listen address '%s' (want HOST:PORT)",
                    opts->listen);
        free(h);
        return PAR_E_INVALID_ARGUMENT;
    }
    h2o_config_init(&h->config);
    h->config.max_request_entity_size = h->opts.max_body;
    /* h2o 2.2.5 gates both h2c forms on this flag: the HTTP/1.1 Upgrade and
     * the prior-knowledge preface. Off, both are answered as HTTP/1.1. */
    h->config.http1.upgrade_to_http2 = h->opts.http2 != 0;
    if (opts->tls_cert || opts->tls_key) {
        par_buf_t err;
        par_buf_init(&err, 0);
        int rc = par__http_tls_new(opts->tls_cert, opts->tls_key, opts->tls_client_ca, opts->http2,
                                   &h->tls, &err);
        if (rc != PAR_OK) {
            par_log_msg(PAR_LOG_ERROR, "cannot start TLS: %.*s", (int)err.len,
                        err.data ? err.data : "");
            par_buf_free(&err);
            h2o_config_dispose(&h->config);
            free(h);
            return rc;
        }
        par_buf_free(&err);
    } else if (opts->tls_client_ca) {
        par_log_msg(PAR_LOG_ERROR, "tls.client_ca needs tls.cert and tls.key");
        h2o_config_dispose(&h->config);
        free(h);
        return PAR_E_INVALID_ARGUMENT;
    }
    par__http_nofile_init();
    h2o_hostconf_t *host =
        h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;

    h->loops = calloc(h->opts.threads, sizeof(loop_t));
    for (unsigned i = 0; i < h->opts.threads; i++) {
        loop_t *l = &h->loops[i];
        l->http = h;
        char why[300];
        /* one listening socket shared by every loop, unless the operator asked
         * for SO_REUSEPORT (one per loop, and other processes may join) */
        int fd;
        if (i == 0 || h->opts.reuse_port)
            fd = par__http_listen_open(&ss, sl, h->opts.reuse_port, name, why, sizeof(why));
        else if ((fd = fcntl(h->loops[0].listen_fd, F_DUPFD_CLOEXEC, 0)) < 0)
            snprintf(why, sizeof(why), "cannot share the listener: %s", strerror(errno));
        l->listen_fd = fd;
        if (l->listen_fd < 0) {
            par_log_msg(PAR_LOG_ERROR, "%s", why);
            for (unsigned k = 0; k < i; k++)
                close(h->loops[k].listen_fd);
            free(h->loops);
            h2o_config_dispose(&h->config);
            free(h);
            return PAR_E_IO;
        }
        if (i == 0) {
            /* port 0 means "pick one": every loop must share the one picked */
            getsockname(l->listen_fd, (struct sockaddr *)&ss, &sl);
        }
        if (getrandom(&l->rng, sizeof(l->rng), 0) != sizeof(l->rng) || l->rng == 0)
            l->rng = (uint64_t)par__now_ns() | 1;
    }
    char hostbuf[64];
    int port;
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, hostbuf, sizeof(hostbuf));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        snprintf(h->address, sizeof(h->address), "[%s]:%d", hostbuf, port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, hostbuf, sizeof(hostbuf));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(h->address, sizeof(h->address), "%s:%d", hostbuf, port);
    }
    for (unsigned i = 0; i < h->opts.threads; i++) {
        loop_t *l = &h->loops[i];
        h2o_context_init(&l->ctx, h2o_evloop_create(), &h->config);
        l->accept_ctx.ctx = &l->ctx;
        l->accept_ctx.hosts = h->config.hosts;
        h2o_linklist_init_anchor(&l->calls);
        l->queue = h2o_multithread_create_queue(l->ctx.loop);
        h2o_multithread_register_receiver(l->queue, &l->receiver, on_completions);
        h2o_multithread_register_receiver(l->queue, &l->deploy_receiver, on_deploy_done);
        h2o_multithread_register_receiver(l->queue, &l->auth_receiver, on_auth_ready);
        l->listener =
            h2o_evloop_socket_create(l->ctx.loop, l->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
        l->listener->data = l;
        h2o_socket_read_start(l->listener, on_accept);
        if (h->opts.threads == 1 && rt->super) {
            /* one loop: it also runs the supervisor's I/O, so a worker's answer
             * reaches the response without crossing threads (loader/supervisor.h) */
            int fd = dup(par_super_attach(rt->super));
            if (fd >= 0) {
                l->super_sock =
                    h2o_evloop_socket_create(l->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
                l->super_sock->data = l;
                h2o_socket_read_start(l->super_sock, on_super_ready);
            } else {
                par_super_detach(rt->super);
            }
        }
        if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            par_log_msg(PAR_LOG_ERROR, "cannot start an HTTP thread");
            atomic_store(&h->stop, 1);
            for (unsigned k = 0; k < i; k++)
                pthread_join(h->loops[k].thread, NULL);
            return PAR_E_IO;
        }
        h->nloops++;
    }
    *out = h;
    return PAR_OK;
}

const char *par_http_address(const par_http_t *h)
{
    return h->address;
}

int par_http_is_tls(const par_http_t *h)
{
    return h->tls != NULL;
}

int par_http_reload_tls(par_http_t *h, par_buf_t *err)
{
    if (h->tls == NULL)
        return PAR_OK;
    return par__http_tls_reload(h->tls, err);
}

void par_http_stop(par_http_t *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stop, 1);
    for (unsigned i = 0; i < h->nloops; i++)
        pthread_join(h->loops[i].thread, NULL);
    /* Connections still open are abandoned with the process: h2o 2.2 has no
     * way to close every connection of a context from outside. Listeners go
     * now so no new connection is accepted. */
    for (unsigned i = 0; i < h->nloops; i++) {
        if (h->loops[i].listener) {
            h2o_socket_read_stop(h->loops[i].listener);
            close(h->loops[i].listen_fd);
        }
    }
}

void par_http_stop_accepting(par_http_t *h)
{
    atomic_store(&h->stop_accepting, 1);
    /* each loop closes its own listener within one turn (at most 50 ms) */
    for (int i = 0; i < 40; i++) {
        int open = 0;
        for (unsigned k = 0; k < h->nloops; k++)
            open |= h->loops[k].listen_fd >= 0;
        if (!open)
            break;
        usleep(5000);
    }
}

void par_http_set_access_log(par_http_t *h, int on)
{
    atomic_store(&h->access_log, on);
}

long par_http_pending(par_http_t *h)
{
    return atomic_load(&h->pending);
}
