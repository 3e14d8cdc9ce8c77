/*
 * runtime/embed_call.c — calls through the embedding API (par/par.h):
 * par_call(), par_call_ex() (blocking, with options) and par_call_start() /
 * par_call_cancel() (asynchronous), and par__call_sync() for sibling calls of
 * in-process agents.
 *
 * A host's call is filled like an HTTP caller's (http/invoke.c): agent id,
 * input, context, the caller's subject and tenant, the requested timeout
 * (which can only lower the package's), the trace (a traceparent continues
 * its trace as a child span, a bare id names the trace) and the request id.
 * Bad options are answered like call errors, never asserted. Every answered
 * call is counted in rt->inprocess_calls (par_inprocess_calls_total).
 *
 * Threads: any. par_call_ex blocks its caller (an in-process agent runs on
 * it); par_call_start never blocks on agent code and its callback runs
 * wherever the call finishes. A handle is refcounted between the caller and
 * the call's answer, and the call itself between its answer and the cancels
 * in progress, so a cancel racing the answer touches live memory and a
 * handle freed after the runtime touches no call.
 * Must never run host code while holding a runtime lock.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "obs/trace.h"
#include "runtime/runtime.h"
#include "util/json.h"

/* 1 when s[0..n) is 1..max characters of [A-Za-z0-9._:-] (what HTTP accepts
 * in X-Request-ID and a body trace_id). */
static int safe_token(const char *s, size_t n, size_t max)
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

/* The trace of a call: a traceparent makes it a child of the caller's span,
 * a bare id names its trace; NULL leaves both to par__call_start. */
static int fill_trace(par_call_t *c, const char *t)
{
    if (t == NULL)
        return PAR_OK;
    size_t n = strlen(t);
    if (n == 55 && par_trace_parse(t, n, c->trace_id, c->parent_span_id) == 0)
        return PAR_OK;
    if (!safe_token(t, n, sizeof(c->trace_id) - 1)) {
        par_buf_appendf(&c->output,
                        "trace_id must be a W3C traceparent or 1 to %zu characters of "
                        "[A-Za-z0-9._:-]",
                        sizeof(c->trace_id) - 1);
        return PAR_E_INVALID_ARGUMENT;
    }
    memcpy(c->trace_id, t, n + 1);
    return PAR_OK;
}

/* Fills `c` from the options; PAR_OK, or the error with its message in c->output. */
int par__embed_fill_call(par_call_t *c, const par_call_opts_t *o)
{
    size_t off = 0;
    if (o->agent_id == NULL || strlen(o->agent_id) > PAR_ID_MAX) {
        par_buf_appendf(&c->output,
                        o->agent_id ? "no agent (id longer than %d bytes)"
                                    : "no agent id (opts.agent_id is NULL)",
                        PAR_ID_MAX);
        return PAR_E_AGENT_NOT_FOUND;
    }
    strcpy(c->agent_id, o->agent_id);
    if (o->input == NULL || par_json_scan(o->input, o->input_len, NULL, 0, &off) != 0) {
        par_buf_appendf(&c->output, "input is not valid JSON (error at byte %zu)",
                        o->input ? off : 0);
        return PAR_E_INVALID_JSON;
    }
    c->input = o->input;
    c->input_len = o->input_len;
    if (o->context && (par_json_scan(o->context, o->context_len, NULL, 0, &off) != 0 ||
                       par_json_root_type(o->context, o->context_len) != '{')) {
        par_buf_appends(&c->output, "context must be a JSON object");
        return PAR_E_INVALID_ARGUMENT;
    }
    c->context = o->context;
    c->context_len = o->context ? o->context_len : 0;
    if (o->request_id) {
        size_t n = strlen(o->request_id);
        if (!safe_token(o->request_id, n, PAR_REQUEST_ID_MAX)) {
            par_buf_appendf(&c->output, "request_id must be 1 to %d characters of [A-Za-z0-9._:-]",
                            PAR_REQUEST_ID_MAX);
            return PAR_E_INVALID_ARGUMENT;
        }
        memcpy(c->request_id, o->request_id, n + 1);
    } else {
        par_trace_random_hex(c->request_id, 32); /* refusals before the start carry one too */
    }
    int rc = fill_trace(c, o->trace_id);
    if (rc != PAR_OK)
        return rc;
    /* the caller's identity travels with the call, into sub-agent calls too */
    if ((o->subject && (c->subject = strdup(o->subject)) == NULL) ||
        (o->tenant && (c->tenant = strdup(o->tenant)) == NULL)) {
        par_buf_appends(&c->output, "out of memory");
        return PAR_E_NO_MEMORY;
    }
    c->timeout_ms = o->timeout_ms;
    c->allow_private = 1; /* the embedder is trusted */
    return PAR_OK;
}

void par__embed_count(par_runtime_t *rt, int status)
{
    if (status >= 0 && status < PAR_STATUS_COUNT)
        atomic_fetch_add(&rt->inprocess_calls[status], 1);
}

/* The call's output, or its error as {"error","message","request_id"[,"traceback"]}.
 * Out of memory: no data and status PAR_E_NO_MEMORY. */
void par__embed_result(par_call_t *c, par_result_t *out)
{
    memset(out, 0, sizeof(*out));
    out->status = c->status;
    if (c->status == PAR_OK) {
        out->data = par_buf_steal(&c->output, &out->len);
        if (out->data == NULL) /* an empty output cannot be: the agent answered JSON */
            out->status = PAR_E_NO_MEMORY;
        return;
    }
    par_buf_t b;
    par_buf_init(&b, 0);
    int rc = par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":", par_status_name(c->status));
    if (rc == PAR_OK)
        rc = par_buf_append_json_str(&b, c->output.data ? c->output.data : "", c->output.len);
    if (rc == PAR_OK)
        rc = par_buf_appends(&b, ",\"request_id\":");
    if (rc == PAR_OK)
        rc = par_buf_append_json_str(&b, c->request_id, strlen(c->request_id));
    if (rc == PAR_OK && c->traceback) { /* an agent's own traceback: the embedder's to show */
        rc = par_buf_appends(&b, ",\"traceback\":");
        if (rc == PAR_OK)
            rc = par_buf_append_json_str(&b, c->traceback, strlen(c->traceback));
    }
    if (rc == PAR_OK)
        rc = par_buf_appends(&b, "}");
    if (rc != PAR_OK) {
        par_buf_free(&b);
        out->status = PAR_E_NO_MEMORY;
        return;
    }
    out->data = par_buf_steal(&b, &out->len);
}

/* ---- blocking calls ------------------------------------------------------------------ */

typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
} sync_wait_t;

static void sync_done(par_call_t *c)
{
    sync_wait_t *w = c->data;
    pthread_mutex_lock(&w->lock);
    assert(!w->done); /* a call is finished once */
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int par__call_sync(par_runtime_t *rt, par_call_t *c)
{
    sync_wait_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    c->done = sync_done;
    c->data = &w;
    c->_inline = 1;
    int rc = par__call_start(rt, c);
    if (rc != PAR_OK) {
        c->status = rc;
        return rc;
    }
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    return c->status;
}

int par_call_ex(par_runtime_t *rt, const par_call_opts_t *opts, par_result_t *out)
{
    memset(out, 0, sizeof(*out));
    par_call_t *c = par__call_new();
    if (c == NULL) {
        par__embed_count(rt, PAR_E_NO_MEMORY);
        return out->status = PAR_E_NO_MEMORY;
    }
    c->status = par__embed_fill_call(c, opts);
    if (c->status == PAR_OK)
        par__call_sync(rt, c);
    par__embed_result(c, out);
    int st = out->status; /* the call's, or PAR_E_NO_MEMORY when its error could not be built */
    par__call_free(c);
    par__embed_count(rt, st);
    return st;
}

int par_call(par_runtime_t *rt, const char *agent_id, const char *input, size_t len,
             par_result_t *out)
{
    par_call_opts_t o = {.agent_id = agent_id, .input = input, .input_len = len};
    return par_call_ex(rt, &o, out);
}

void par_result_free(par_result_t *r)
{
    if (r == NULL)
        return;
    free(r->data);
    r->data = NULL;
    r->len = 0;
}

/* ---- asynchronous calls ------------------------------------------------------------ */

struct par_call_handle {
    atomic_int refs;   /* of this struct: the caller's handle (when asked for) and the answer */
    atomic_int c_refs; /* of the call: its answer, and each cancel in progress */
    par_runtime_t *rt;
    par_call_t *c;
    par_call_cb cb;
    void *arg;
};

static void handle_unref(par_call_handle_t *h)
{
    if (atomic_fetch_sub(&h->refs, 1) == 1)
        free(h);
}

/* The call is freed as soon as nobody can still cancel it: at its answer,
 * not at par_call_handle_free(), which may come after the runtime is gone
 * (the call references a package version, whose last reference stops its
 * workers). */
static void call_unref(par_call_handle_t *h)
{
    if (atomic_fetch_sub(&h->c_refs, 1) == 1)
        par__call_free(h->c);
}

/* Answers the host, then drops the answer's references. */
static void answer(par_call_handle_t *h)
{
    par_result_t r;
    par__embed_result(h->c, &r);
    par__embed_count(h->rt, r.status);
    call_unref(h);
    h->cb(h->arg, &r);
    handle_unref(h);
}

static void async_done(par_call_t *c)
{
    answer(c->data);
}

int par_call_start(par_runtime_t *rt, const par_call_opts_t *opts, par_call_cb cb, void *arg,
                   par_call_handle_t **hout)
{
    if (hout)
        *hout = NULL;
    if (rt == NULL || opts == NULL || cb == NULL)
        return PAR_E_INVALID_ARGUMENT;
    par_call_handle_t *h = calloc(1, sizeof(*h));
    par_call_t *c = h ? par__call_new() : NULL;
    if (c == NULL) {
        free(h);
        return PAR_E_NO_MEMORY;
    }
    atomic_init(&h->refs, hout ? 2 : 1);
    atomic_init(&h->c_refs, 1);
    h->rt = rt;
    h->c = c;
    h->cb = cb;
    h->arg = arg;
    c->done = async_done;
    c->data = h;
    int rc = par__embed_fill_call(c, opts);
    /* the caller's buffers go away when this returns: a queued call keeps copies */
    if (rc == PAR_OK)
        rc = par__call_own_input(c);
    if (hout)
        *hout = h; /* before the start: the answer may come (and drop its reference) at once */
    if (rc == PAR_OK)
        rc = par__call_start(rt, c);
    if (rc != PAR_OK) { /* refused before it ran: answered here, on the caller's thread */
        c->status = rc;
        answer(h);
    }
    return PAR_OK;
}

int par_call_cancel(par_call_handle_t *h)
{
    if (h == NULL)
        return PAR_E_NOT_FOUND;
    int n = atomic_load(&h->c_refs);
    do { /* a reference on the call, unless it is answered (and freed) already */
        if (n == 0)
            return PAR_E_NOT_FOUND;
    } while (!atomic_compare_exchange_weak(&h->c_refs, &n, n + 1));
    atomic_store(&h->c->_cancel_requested, 1); /* what an in-process agent can poll */
    int rc = par__call_cancel(h->c, "the host cancelled the call");
    call_unref(h);
    return rc;
}

void par_call_handle_free(par_call_handle_t *h)
{
    if (h)
        handle_unref(h);
}
