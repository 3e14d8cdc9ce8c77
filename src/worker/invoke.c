/*
 * worker/invoke.c — one INVOKE in par-worker: its header, the agent API of
 * par/agent.h that the agent calls back into, and running the export.
 *
 * Called by whichever thread runs the job (the reader inline, or a handler
 * of the job queue, reader.c); a job belongs to that thread alone, except
 * `cancelled` and its event window, which the reader updates (CANCEL,
 * EVENT_ACK). A sibling call (par_ctx_call) blocks
 * its thread until the runtime answers, so it asks for a reader first: the
 * answer must be read by someone while this thread waits.
 * It must never trust the INVOKE beyond the protocol's caps, nor let an
 * agent's output grow past --max-output.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/proto.h"
#include "util/json.h"
#include "worker/worker.h"
#include "util/clock.h"

static job_t *job_of(par_agent_ctx_t *ctx)
{
    return (job_t *)ctx->_impl;
}

static int api_out_write(par_out_t *out, const void *data, size_t len)
{
    job_t *j = (job_t *)out->_impl;
    if (j->out_too_large)
        return PAR_E_OUTPUT_TOO_LARGE;
    int rc = par_buf_append(&j->outbuf, data, len);
    if (rc == PAR_E_TOO_LARGE) {
        j->out_too_large = 1;
        return PAR_E_OUTPUT_TOO_LARGE;
    }
    return rc;
}

static void api_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount);

static int api_call(par_agent_ctx_t *ctx, const char *agent_id, par_slice_t input,
                    par_slice_t *output)
{
    job_t *j = job_of(ctx);
    wcall_t c = {0};
    pthread_cond_init(&c.cond, NULL);
    pthread_mutex_lock(&g_lock);
    c.id = g_next_call_id++;
    c.next = g_calls;
    g_calls = &c;
    pthread_mutex_unlock(&g_lock);

    json_t *h = json_pack("{s:s, s:I}", "agent", agent_id, "parent", (json_int_t)j->id);
    worker_send_json(PAR_FRAME_CALL, c.id, h, input.ptr, input.len);
    json_decref(h);

    pthread_mutex_lock(&g_lock);
    worker_want_reader_locked(); /* the answer must be read by someone while this thread waits */
    while (!c.done && !g_shutdown)
        pthread_cond_wait(&c.cond, &g_lock);
    for (wcall_t **pp = &g_calls; *pp; pp = &(*pp)->next) {
        if (*pp == &c) {
            *pp = c.next;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    pthread_cond_destroy(&c.cond);
    if (!c.done) {
        static const char gone[] = "{\"error\":\"draining\",\"message\":\"worker shutting down\"}";
        output->ptr = gone;
        output->len = sizeof(gone) - 1;
        return PAR_E_DRAINING;
    }
    if (c.units) {
        const char *unit;
        json_t *v;
        json_object_foreach(c.units, unit, v) api_usage(ctx, unit, (int64_t)json_integer_value(v));
        json_decref(c.units);
    }
    /* keep the result alive until the invocation ends */
    arena_item_t *it = malloc(sizeof(*it) + c.len + 1);
    if (it == NULL) {
        free(c.data);
        output->ptr = "null";
        output->len = 4;
        return PAR_E_NO_MEMORY;
    }
    memcpy(it->data, c.data, c.len);
    it->data[c.len] = '\0';
    free(c.data);
    it->next = j->arena;
    j->arena = it;
    output->ptr = it->data;
    output->len = c.len;
    return c.status;
}

static void api_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount)
{
    job_t *j = job_of(ctx);
    if (unit == NULL || *unit == '\0')
        return;
    if (j->units == NULL && (j->units = json_object()) == NULL)
        return; /* out of memory: the units are lost, the answer is not */
    json_t *cur = json_object_get(j->units, unit);
    json_int_t v = (cur ? json_integer_value(cur) : 0) + amount;
    json_object_set_new(j->units, unit, json_integer(v));
}

static void api_log(par_agent_ctx_t *ctx, int level, const char *msg)
{
    static const char *const lv[] = {"debug", "info", "warn", "error"};
    job_t *j = job_of(ctx);
    /* the frame id names the invocation: the runtime adds its agent and request */
    json_t *h = json_pack("{s:s, s:s}", "level", lv[level < 0 || level > 3 ? 1 : level], "msg",
                          msg ? msg : "");
    worker_send_json(PAR_FRAME_LOG, j->id, h, NULL, 0);
    json_decref(h);
}

static void api_fail(par_agent_ctx_t *ctx, const char *msg)
{
    job_t *j = job_of(ctx);
    free(j->fail_msg);
    j->fail_msg = strdup(msg ? msg : "");
}

static int api_cancelled(par_agent_ctx_t *ctx)
{
    return atomic_load(&job_of(ctx)->cancelled);
}

/* EVENT: checked here first (an invalid event is the agent's mistake, told
 * to the agent; the runtime would fail the whole invocation for it), then
 * sent once the job's window has room: at most PAR_PROTO_EVENT_WINDOW
 * events unacknowledged. While it waits for EVENT_ACK someone must read:
 * this thread may be the reader's, running the job inline. */
static int api_emit(par_agent_ctx_t *ctx, const char *type, const char *json, size_t len)
{
    job_t *j = job_of(ctx);
    size_t tlen = type ? strlen(type) : 0;
    if (tlen == 0)
        type = PAR_PROTO_EVENT_TYPE_DEFAULT, tlen = strlen(type);
    char why[256];
    if (par_proto_event_check(type, tlen, json, len, g_max_event, why, sizeof(why)) != 0)
        return PAR_E_INVALID_EVENT;
    pthread_mutex_lock(&g_lock);
    if (j->events_unacked >= PAR_PROTO_EVENT_WINDOW && !atomic_load(&j->cancelled))
        worker_want_reader_locked();
    while (j->events_unacked >= PAR_PROTO_EVENT_WINDOW && !atomic_load(&j->cancelled) &&
           !g_shutdown)
        pthread_cond_wait(&g_event_cond, &g_lock);
    int rc = atomic_load(&j->cancelled) ? PAR_E_CANCELLED : g_shutdown ? PAR_E_DRAINING : PAR_OK;
    if (rc == PAR_OK)
        j->events_unacked++;
    pthread_mutex_unlock(&g_lock);
    if (rc != PAR_OK)
        return rc;
    char h[PAR_PROTO_EVENT_TYPE_MAX + 16]; /* the type is a plain token: no escaping */
    int n = snprintf(h, sizeof(h), "{\"event\":\"%.*s\"}", (int)tlen, type);
    worker_send_frame(PAR_FRAME_EVENT, j->id, h, (size_t)n, json, len);
    return PAR_OK;
}

static const char *api_tenant(par_agent_ctx_t *ctx)
{
    return job_of(ctx)->tenant;
}

static const char *api_span_id(par_agent_ctx_t *ctx)
{
    return job_of(ctx)->span_id;
}

static const par_agent_api_t g_api = {
    .abi = PAR_AGENT_ABI,
    .size = sizeof(par_agent_api_t),
    .out_write = api_out_write,
    .call = api_call,
    .usage = api_usage,
    .log = api_log,
    .set_error = api_fail,
    .cancelled = api_cancelled,
    .tenant = api_tenant,
    .span_id = api_span_id,
    .emit = api_emit,
};

/* ---- jobs --------------------------------------------------------------- */

/* An integer field's value, or `dflt` when absent or not an integer. */
static int64_t hdr_int(const par_json_field_t *f, int64_t dflt)
{
    char num[24];
    if (f->ptr == NULL || f->len == 0 || f->len >= sizeof(num))
        return dflt;
    memcpy(num, f->ptr, f->len);
    num[f->len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(num, &end, 10);
    return errno || *end ? dflt : (int64_t)v;
}

/* Fills the job's header fields from an INVOKE header (see
 * docs/worker-protocol.md), copying what it keeps into j->mem, which holds at
 * least n + 16 bytes: each string decodes to no more than its encoding, and the
 * nine fields add at most nine NULs. A scan instead of a jansson tree: no
 * allocation per field. -1 when the header is not a JSON object or a string
 * field is not a string without NULs. */
int worker_parse_invoke(job_t *j, const char *h, size_t n)
{
    enum { F_X, F_AGENT, F_REQ, F_TRACE, F_SPAN, F_SUBJECT, F_TENANT, F_DEADLINE, F_CONTEXT, F_N };
    par_json_field_t f[F_N] = {
        {"x", NULL, 0},        {"agent", NULL, 0},       {"request_id", NULL, 0},
        {"trace_id", NULL, 0}, {"span_id", NULL, 0},     {"subject", NULL, 0},
        {"tenant", NULL, 0},   {"deadline_ms", NULL, 0}, {"context", NULL, 0}};
    const char **str[F_N] = {NULL,        &j->agent,  &j->request_id, &j->trace_id, &j->span_id,
                             &j->subject, &j->tenant, NULL,           NULL};
    char *o = j->mem;
    for (int i = 0; i < F_N; i++)
        if (str[i])
            *str[i] = "";
    j->context = NULL;
    j->x = 0;
    if (n == 0)
        return 0; /* no header: export 0, no deadline, nothing known */
    if (par_json_scan(h, n, f, F_N, NULL) != 0 || par_json_root_type(h, n) != '{')
        return -1;
    for (int i = 0; i < F_N; i++) {
        if (str[i] == NULL || f[i].ptr == NULL)
            continue;
        long k = par_json_unescape(f[i].ptr, f[i].len, o);
        if (k < 0)
            return -1;
        *str[i] = o;
        o += k + 1;
    }
    if (f[F_CONTEXT].ptr) {
        memcpy(o, f[F_CONTEXT].ptr, f[F_CONTEXT].len);
        o[f[F_CONTEXT].len] = '\0';
        j->context = o;
        o += f[F_CONTEXT].len + 1;
    }
    j->x = f[F_X].ptr ? hdr_int(&f[F_X], -1) : 0;
    j->deadline_ms = hdr_int(&f[F_DEADLINE], 0);
    return 0;
}

void worker_job_free(job_t *j)
{
    pthread_mutex_lock(&g_lock);
    worker_index_remove(j);
    pthread_mutex_unlock(&g_lock);
    while (j->arena) {
        arena_item_t *n = j->arena->next;
        free(j->arena);
        j->arena = n;
    }
    json_decref(j->units);
    free(j->fail_msg);
    par_buf_free(&j->outbuf);
    free(j);
}

void worker_run_job(job_t *j)
{
    int64_t x = j->x;
    if (x < 0 || (uint64_t)x >= g_nexports) {
        worker_send_error(j->id, "agent_not_found", "no such export in this worker");
        return;
    }
    if (atomic_load(&j->cancelled)) { /* cancelled while it waited for a thread */
        worker_send_error(j->id, "cancelled", "the invocation was cancelled before it started");
        return;
    }
    wexport_t *e = &g_exports[x];
    int64_t remaining = j->deadline_ms;

    j->ctx.api = &g_api;
    j->ctx.agent_id = j->agent;
    j->ctx.sub_agent = e->name;
    j->ctx.request_id = j->request_id;
    j->ctx.trace_id = j->trace_id;
    j->ctx.subject = j->subject;
    j->ctx.context.ptr = j->context ? j->context : "{}";
    j->ctx.context.len = strlen(j->ctx.context.ptr);
    j->ctx.deadline_ms = remaining > 0 ? par_mono_ms() + remaining : 0;
    j->ctx._impl = j;
    j->out.api = &g_api;
    j->out._impl = j;

    par_slice_t in = {j->input ? j->input : "null", j->input ? j->input_len : 4};
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    int rc = e->fn(&j->ctx, in, &j->out);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    double cpu_ms = (double)(cpu1.tv_sec - cpu0.tv_sec) * 1e3 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1e6;

    if (j->out_too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "agent output exceeds the cap of %zu bytes", g_max_output);
        worker_send_error(j->id, "output_too_large", msg);
    } else if (rc != 0) {
        char msg[160];
        if (j->fail_msg == NULL)
            snprintf(msg, sizeof(msg), "agent '%s' returned %d", j->ctx.agent_id, rc);
        worker_send_error(j->id, "agent_error", j->fail_msg ? j->fail_msg : msg);
    } else if (j->units == NULL) {
        char h[64];
        int n = snprintf(h, sizeof(h), "{\"cpu_ms\":%.4f}", cpu_ms);
        worker_send_frame(PAR_FRAME_RESULT, j->id, h, (size_t)n, j->outbuf.data, j->outbuf.len);
    } else {
        json_t *h = json_pack("{s:f, s:O}", "cpu_ms", cpu_ms, "units", j->units);
        if (h == NULL)
            worker_send_error(j->id, "out_of_memory", "out of memory building the answer");
        else
            worker_send_json(PAR_FRAME_RESULT, j->id, h, j->outbuf.data, j->outbuf.len);
        json_decref(h);
    }
}
