/*
 * http/invoke.c — POST /agents/{id}/invoke: the fast path.
 *
 * Parses and validates the body with the non-allocating JSON scanner, hands
 * a par_call_t to the runtime and returns to the loop. The completion comes
 * back on this loop's multithread queue (or at once, when this loop runs the
 * supervisor's I/O); a guard allocated in the request's pool tells it whether
 * the client is still there. Calls whose client leaves are cancelled:
 * HTTP/2 resets dispose the request pool, whose guard cancels the call;
 * HTTP/1 connections of running calls are polled every 100 ms
 * (par__http_gone_check), since h2o 2.2 does not read them then.
 *
 * A request that accepts text/event-stream is a run's event stream instead
 * (http/runs.c): one header lookup by token decides it.
 *
 * Loop thread only, apart from invoke_done() (any thread that finishes a
 * call). Per request: one call, one hcall_t, the body in the request pool;
 * nothing here may allocate more or compare strings the route table already
 * told apart.
 */
#include <assert.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "obs/log.h"
#include "obs/trace.h"
#include "runtime/answer.h"
#include "util/json.h"

typedef struct hcall {
    par_call_t *call;
    loop_t *loop;
    h2o_req_t *req; /* NULL once the client is gone */
    struct hcall **guard;
    h2o_multithread_message_t msg;
    h2o_linklist_t link; /* in loop_t.calls while the call runs */
    int64_t t0_ns;
    const char *label; /* the route's metrics label */
    int gone;          /* its client hung up (par__http_gone_check) */
} hcall_t;

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
    if (par__http_tl_loop == hc->loop)
        complete_call(hc); /* a worker's answer read by this loop itself */
    else
        h2o_multithread_send_message(&hc->loop->receiver, &hc->msg);
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
        par__http_send_error(req, c->status, c->output.data ? c->output.data : "", c->output.len,
                             c->request_id);
        par__http_access_log(h, req, hc->label, par_status_http(c->status), c->request_id, c,
                             hc->t0_ns, par_status_name(c->status));
        return;
    }
    /* the answer is built in the request's pool: nothing else is allocated */
    char *body = h2o_mem_alloc_pool(&req->pool, par__call_answer_cap(c));
    size_t blen = par__call_answer_write(c, body);
    par__http_send_body(req, 200, "application/json", c->request_id, body, blen);
    par__http_access_log(h, req, hc->label, 200, c->request_id, c, hc->t0_ns, NULL);
}

void par__http_on_completions(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
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
    long was = atomic_fetch_sub(&hc->loop->http->pending, 1);
    assert(was > 0);
    (void)was;
    free(hc);
}

/* Trace id: W3C traceparent (whose span becomes this invocation's parent),
 * else the body's trace_id, else a new one. */
static void trace_for(h2o_req_t *req, loop_t *l, const par_json_field_t *body_trace, par_call_t *c)
{
    h2o_iovec_t tp = par__http_header(req, H2O_STRLIT("traceparent"));
    if (tp.base && par_trace_parse(tp.base, tp.len, c->trace_id, c->parent_span_id) == 0)
        return;
    if (body_trace->ptr && body_trace->len >= 3 && body_trace->ptr[0] == '"' &&
        par__http_safe_id(body_trace->ptr + 1, body_trace->len - 2, 63)) {
        memcpy(c->trace_id, body_trace->ptr + 1, body_trace->len - 2);
        c->trace_id[body_trace->len - 2] = '\0';
        return;
    }
    par__http_new_id(l, c->trace_id);
}

/* Answers a refusal made before the call started, and frees what it had.
 * The access log line names the call only once the runtime has seen it. */
static int refuse_call(par_http_exchange_t *x, int status, const char *msg, size_t len,
                       par_call_t *c, hcall_t *hc, const char *err_name, int log_call)
{
    par__http_send_error(x->req, status, msg, len, x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, par_status_http(status), x->rid,
                         log_call ? c : NULL, x->t0, err_name);
    par__call_free(c);
    free(hc);
    return 0;
}

static int refuse(par_http_exchange_t *x, int status, const char *msg, size_t len, par_call_t *c,
                  hcall_t *hc, const char *err_name)
{
    return refuse_call(x, status, msg, len, c, hc, err_name, 0);
}

int par__http_scan_body(par_http_exchange_t *x, const char *body, size_t blen, par_json_field_t *f,
                        size_t nf)
{
    size_t off = 0;
    if (blen != 0 && par_json_scan(body, blen, f, nf, &off) == 0)
        return 0;
    char msg[128];
    const char *what = off < blen && (unsigned char)body[off] >= 0x80 ? ": invalid UTF-8"
                       : off + 1 < blen && body[off] == '\\' && body[off + 1] == 'u'
                           ? ": a lone UTF-16 surrogate escape"
                           : "";
    int n = blen == 0
                ? snprintf(msg, sizeof(msg),
                           "the request body is empty; send JSON such as {\"input\": ...}")
                : snprintf(msg, sizeof(msg),
                           "the request body is not valid JSON (error at byte %zu%s)", off, what);
    refuse(x, PAR_E_INVALID_JSON, msg, (size_t)n, NULL, NULL, "invalid_json");
    return -1;
}

int par__http_fill_call(par_http_exchange_t *x, const char *body, size_t blen,
                        const par_json_field_t *f, par_call_t *c)
{
    hcall_t *hc = NULL;
    loop_t *l = x->loop;
    memcpy(c->agent_id, x->m.var, x->m.var_len);
    c->agent_id[x->m.var_len] = '\0';
    snprintf(c->request_id, sizeof(c->request_id), "%s", x->rid);
    if (l->who) {
        /* the caller's identity travels with the call, into sub-agent calls too */
        c->subject = strdup(l->who->subject);
        c->tenant = l->who->tenant ? strdup(l->who->tenant) : NULL;
        if (c->subject == NULL || (l->who->tenant && c->tenant == NULL)) {
            refuse(x, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), c, hc, NULL);
            return -1;
        }
    }
    int envelope = par_json_root_type(body, blen) == '{' && f[0].ptr != NULL;
    if (envelope) {
        c->input = f[0].ptr;
        c->input_len = f[0].len;
        if (f[1].ptr && par_json_root_type(f[1].ptr, f[1].len) == '{') {
            c->context = f[1].ptr;
            c->context_len = f[1].len;
        } else if (f[1].ptr && !(f[1].len == 4 && memcmp(f[1].ptr, "null", 4) == 0)) {
            refuse(x, PAR_E_BAD_REQUEST, H2O_STRLIT("\"context\" must be a JSON object"), c, hc,
                   "bad_request");
            return -1;
        }
    } else {
        c->input = body;
        c->input_len = blen;
        par_json_trim(&c->input, &c->input_len);
    }
    trace_for(x->req, l, envelope ? &f[2] : &(par_json_field_t){NULL, NULL, 0}, c);
    h2o_iovec_t tmo = par__http_header(x->req, H2O_STRLIT("x-par-timeout-ms"));
    if (tmo.base && tmo.len > 0 && tmo.len < 10) {
        char tb[16];
        memcpy(tb, tmo.base, tmo.len);
        tb[tmo.len] = '\0';
        char *end;
        unsigned long v = strtoul(tb, &end, 10);
        if (*end == '\0' && v > 0)
            c->timeout_ms = (uint32_t)v;
    }
    return 0;
}

int par__http_on_invoke(par_http_exchange_t *x)
{
    par_http_t *h = x->loop->http;
    h2o_req_t *req = x->req;
    const char *body = req->entity.base ? req->entity.base : "";
    size_t blen = req->entity.base ? req->entity.len : 0;
    if (x->m.var_len > PAR_ID_MAX) /* http/check.c refused it already: kept as a backstop */
        return refuse(x, PAR_E_AGENT_NOT_FOUND, H2O_STRLIT("no such agent (id too long)"), NULL,
                      NULL, "agent_not_found");
    if (par__http_wants_sse(req))
        return par__http_on_invoke_stream(x); /* the same events as a run's stream */
    par_json_field_t f[3] = {{"input", NULL, 0}, {"context", NULL, 0}, {"trace_id", NULL, 0}};
    if (par__http_scan_body(x, body, blen, f, 3) != 0)
        return 0;
    par_call_t *c = par__call_new();
    hcall_t *hc = calloc(1, sizeof(*hc));
    if (c == NULL || hc == NULL)
        return refuse(x, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), c, hc, NULL);
    if (par__http_fill_call(x, body, blen, f, c) != 0) {
        free(hc);
        return 0;
    }
    c->done = invoke_done;
    c->data = hc;
    hc->call = c;
    hc->loop = x->loop;
    hc->req = req;
    hc->t0_ns = x->t0;
    hc->label = x->m.route->label;
    long now_pending = atomic_fetch_add(&h->pending, 1) + 1;
    if (now_pending > (long)h->opts.max_in_flight) {
        atomic_fetch_sub(&h->pending, 1);
        char msg[160];
        int n = snprintf(msg, sizeof(msg),
                         "the runtime is at its limit of %u calls in flight "
                         "(limits.max_in_flight); retry shortly",
                         h->opts.max_in_flight);
        return refuse(x, PAR_E_SERVER_BUSY, msg, (size_t)n, c, hc,
                      par_status_name(PAR_E_SERVER_BUSY));
    }
    int rc = par__call_start(h->rt, c);
    if (rc != PAR_OK) {
        atomic_fetch_sub(&h->pending, 1);
        return refuse_call(x, rc, c->output.data ? c->output.data : "", c->output.len, c, hc,
                           par_status_name(rc), 1);
    }
    /* from here the call completes on this loop's queue; guard the request */
    h2o_linklist_insert(&x->loop->calls, &hc->link);
    hcall_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), guard_dispose);
    *slot = hc;
    hc->guard = slot;
    return 0;
}

/* h2o 2.2 stops reading an HTTP/1 connection while its request is handled,
 * so it learns that the client left only when the answer is written. Every
 * 100 ms the connections of calls still running are asked directly: a peer
 * that shut down its side (POLLRDHUP, even with bytes unread) or reset it
 * has gone, and its call is cancelled. (HTTP/2 streams end through the
 * request pool's guard when the stream is reset.) Loop thread. */
int par__http_client_fd(h2o_req_t *req)
{
    if (req == NULL || req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return -1;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    return sock ? h2o_socket_get_fd(sock) : -1;
}

/* Marks the calls whose client hung up: one poll(2) per GONE_BATCH calls. */
#define GONE_BATCH 256
static size_t mark_gone(loop_t *l)
{
    struct pollfd pfd[GONE_BATCH];
    hcall_t *who[GONE_BATCH];
    size_t gone = 0;
    h2o_linklist_t *n = l->calls.next;
    while (n != &l->calls) {
        nfds_t k = 0;
        for (; n != &l->calls && k < GONE_BATCH; n = n->next) {
            hcall_t *hc = H2O_STRUCT_FROM_MEMBER(hcall_t, link, n);
            int fd = par__http_client_fd(hc->req);
            if (fd >= 0) {
                pfd[k] = (struct pollfd){.fd = fd, .events = POLLRDHUP};
                who[k++] = hc;
            }
        }
        if (k == 0 || poll(pfd, k, 0) <= 0)
            continue;
        for (nfds_t i = 0; i < k; i++)
            if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                who[i]->gone = 1;
                gone++;
            }
    }
    return gone;
}

void par__http_gone_check(loop_t *l)
{
    int64_t now = par__now_ms();
    if (now < l->next_gone_check)
        return;
    l->next_gone_check = now + 100;
    par__http_sse_gone_check(l);
    par__http_forward_gone_check(l);
    if (mark_gone(l) == 0)
        return;
    h2o_linklist_t *n = l->calls.next;
    while (n != &l->calls) {
        hcall_t *hc = H2O_STRUCT_FROM_MEMBER(hcall_t, link, n);
        n = n->next;
        if (!hc->gone)
            continue;
        h2o_linklist_unlink(&hc->link);
        cancel_call(hc);   /* answered 499 into the closed connection, which h2o then closes */
        n = l->calls.next; /* completing may unlink others' neighbours: start over */
    }
}
