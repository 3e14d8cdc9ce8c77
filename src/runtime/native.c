/*
 * runtime/native.c — see native.h.
 */
#include "runtime/native.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/proto.h"
#include "obs/log.h"
#include "pkg/compat.h"
#include "util/json.h"

int par__native_load(par_pkgver_t *pv, par_buf_t *err)
{
    const par_manifest_t *m = pv->manifest;
    pv->fns = calloc(m->export_count + 1, sizeof(*pv->fns));
    pv->dl_handles = calloc(m->export_count + 1, sizeof(void *));
    if (pv->fns == NULL || pv->dl_handles == NULL)
        return PAR_E_NO_MEMORY;
    int problems = 0;
    for (size_t i = 0; i < m->export_count; i++) {
        char lib[PATH_MAX];
        if (par_pkg_entry_lib(m->exports[i].entrypoint, lib, sizeof(lib)) != 0)
            continue;
        const char *sym = strrchr(m->exports[i].entrypoint, ':') + 1;
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", pv->root, lib);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            par_buf_appendf(err, "%s: cannot load: %s\n", lib, dlerror());
            problems++;
            continue;
        }
        int first = 1;
        for (size_t k = 0; k < pv->dl_count; k++)
            if (pv->dl_handles[k] == h)
                first = 0;
        if (first) {
            pv->dl_handles[pv->dl_count++] = h;
            const unsigned *abi = dlsym(h, "par_agent_abi");
            if (abi && *abi != PAR_AGENT_ABI) {
                par_buf_appendf(err, "%s: built for agent ABI %u, this runtime speaks %d\n", lib,
                                *abi, PAR_AGENT_ABI);
                problems++;
            }
            int (*init)(void);
            *(void **)&init = dlsym(h, "par_agent_init");
            if (init && init() != 0) {
                par_buf_appendf(err, "%s: par_agent_init failed\n", lib);
                problems++;
            }
        } else {
            dlclose(h); /* drop the extra reference */
        }
        void *fn = dlsym(h, sym);
        if (fn == NULL) {
            par_buf_appendf(err, "%s: symbol '%s' not found (export '%s')\n", lib, sym,
                            m->exports[i].name[0] ? m->exports[i].name : "main");
            problems++;
        }
        *(void **)&pv->fns[i] = fn;
    }
    return problems ? PAR_E_INCOMPATIBLE : PAR_OK;
}

void par__native_unload(par_pkgver_t *pv)
{
    for (size_t i = 0; i < pv->dl_count; i++) {
        void (*fini)(void);
        *(void **)&fini = dlsym(pv->dl_handles[i], "par_agent_fini");
        if (fini)
            fini();
        dlclose(pv->dl_handles[i]);
    }
    free(pv->dl_handles);
    free(pv->fns);
    pv->dl_handles = NULL;
    pv->fns = NULL;
    pv->dl_count = 0;
}

/* ---- the agent API, in-process ------------------------------------------------ */

typedef struct ictx {
    par_agent_ctx_t ctx;
    par_out_t out;
    par_call_t *call;
    char *fail_msg;
    json_t *units;
    int too_large;
    par_call_t **nested; /* kept until the invocation ends: outputs are borrowed */
    size_t nnested;
    /* events: one at a time to the sink, whatever threads the agent emits from */
    pthread_mutex_t emit_lock;
    int event_refused; /* the status the sink refused an event with: the call fails */
} ictx_t;

static int i_out_write(par_out_t *out, const void *data, size_t len)
{
    ictx_t *x = out->_impl;
    if (x->too_large)
        return PAR_E_OUTPUT_TOO_LARGE;
    if (par_buf_append(&x->call->output, data, len) != PAR_OK) {
        x->too_large = 1;
        return PAR_E_OUTPUT_TOO_LARGE;
    }
    return PAR_OK;
}

static void i_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount);

static int i_call(par_agent_ctx_t *ctx, const char *agent_id, par_slice_t input,
                  par_slice_t *output)
{
    ictx_t *x = ctx->_impl;
    par_call_t *parent = x->call;
    par_call_t *c = par__call_new();
    par_call_t **n = realloc(x->nested, (x->nnested + 1) * sizeof(*n));
    if (c == NULL || n == NULL) {
        par__call_free(c);
        output->ptr = "{\"error\":\"out_of_memory\",\"message\":\"out of memory\"}";
        output->len = strlen(output->ptr);
        return PAR_E_NO_MEMORY;
    }
    x->nested = n;
    x->nested[x->nnested++] = c;
    snprintf(c->agent_id, sizeof(c->agent_id), "%s", agent_id);
    c->input = input.ptr;
    c->input_len = input.len;
    int rc = par__call_link(c, parent);
    if (rc == PAR_OK)
        rc = par__call_sync(parent->pv->rt, c);
    else
        par_buf_appends(&c->output, "out of memory");
    if (rc == PAR_OK && c->units_json) {
        /* the callee's usage units roll up into the caller's invocation */
        json_t *u = json_loads(c->units_json, 0, NULL);
        const char *unit;
        json_t *v;
        json_object_foreach(u, unit, v) i_usage(ctx, unit, (int64_t)json_integer_value(v));
        json_decref(u);
    }
    if (rc == PAR_OK) {
        output->ptr = c->output.data ? c->output.data : "null";
        output->len = c->output.data ? c->output.len : 4;
        return PAR_OK;
    }
    par_buf_t b;
    par_buf_init(&b, 0);
    par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":", par_status_name(rc));
    par_buf_append_json_str(&b, c->output.data ? c->output.data : "", c->output.len);
    par_buf_appends(&b, "}");
    par_buf_free(&c->output);
    c->output = b;
    output->ptr = b.data;
    output->len = b.len;
    return rc;
}

static void i_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount)
{
    ictx_t *x = ctx->_impl;
    if (unit == NULL || *unit == '\0')
        return;
    if (x->units == NULL)
        x->units = json_object();
    json_t *cur = json_object_get(x->units, unit);
    json_object_set_new(x->units, unit, json_integer((cur ? json_integer_value(cur) : 0) + amount));
}

static void i_log(par_agent_ctx_t *ctx, int level, const char *msg)
{
    ictx_t *x = ctx->_impl;
    par_logline_t l;
    if (par_log_begin(&l, level < 0 || level > 3 ? PAR_LOG_INFO : level, msg ? msg : "")) {
        par_log_str(&l, "source", "agent");
        par_log_str(&l, "package", x->call->pv->name);
        par_log_str(&l, "version", x->call->pv->version);
        par_log_str(&l, "agent", x->call->agent_id);
        par_log_str(&l, "request_id", ctx->request_id);
        par_log_str(&l, "trace_id", x->call->trace_id);
        par_log_str(&l, "span_id", x->call->span_id);
        par_log_end(&l);
    }
}

static void i_fail(par_agent_ctx_t *ctx, const char *msg)
{
    ictx_t *x = ctx->_impl;
    free(x->fail_msg);
    x->fail_msg = strdup(msg ? msg : "");
}

static int i_cancelled(par_agent_ctx_t *ctx)
{
    ictx_t *x = ctx->_impl;
    return atomic_load(&x->call->_cancel_requested) ||
           (x->call->deadline_ms && par__now_ms() > x->call->deadline_ms);
}

/* An event, straight to the call's sink on the agent's own thread. In-process
 * agents are operator-trusted and share the runtime's memory: the sink's
 * flow control (it returns 1 to hold credit back) does not block them, and
 * par__call_events_ack() has nothing to release. */
static int i_emit(par_agent_ctx_t *ctx, const char *type, const char *json, size_t len)
{
    ictx_t *x = ctx->_impl;
    par_call_t *c = x->call;
    size_t tlen = type ? strlen(type) : 0;
    if (tlen == 0)
        type = PAR_PROTO_EVENT_TYPE_DEFAULT, tlen = strlen(type);
    size_t max = c->pv->rt->cfg.max_event_bytes ? c->pv->rt->cfg.max_event_bytes : 1u << 20;
    char why[256];
    if (par_proto_event_check(type, tlen, json, len, max, why, sizeof(why)) != 0)
        return PAR_E_INVALID_EVENT; /* the agent's mistake, told to the agent */
    if (i_cancelled(ctx))
        return PAR_E_CANCELLED;
    if (c->sink == NULL || c->sink->event == NULL)
        return PAR_OK; /* a unary invocation: accepted and dropped */
    pthread_mutex_lock(&x->emit_lock);
    int r = x->event_refused;
    if (r == 0) {
        r = c->sink->event(c, type, tlen, json, len);
        if (r == 1)
            r = 0; /* held back: not applied in-process */
        else if (r != 0)
            x->event_refused = r;
    }
    pthread_mutex_unlock(&x->emit_lock);
    return r;
}

static const char *i_tenant(par_agent_ctx_t *ctx)
{
    ictx_t *x = ctx->_impl;
    return x->call->tenant ? x->call->tenant : "";
}

static const char *i_span_id(par_agent_ctx_t *ctx)
{
    ictx_t *x = ctx->_impl;
    return x->call->span_id;
}

static const par_agent_api_t inproc_api = {
    .abi = PAR_AGENT_ABI,
    .size = sizeof(par_agent_api_t),
    .out_write = i_out_write,
    .call = i_call,
    .usage = i_usage,
    .log = i_log,
    .set_error = i_fail,
    .cancelled = i_cancelled,
    .tenant = i_tenant,
    .span_id = i_span_id,
    .emit = i_emit,
};

void par__native_run(par_call_t *c)
{
    par_pkgver_t *pv = c->pv;
    ictx_t x = {0};
    x.call = c;
    x.ctx.api = &inproc_api;
    x.ctx.agent_id = c->agent_id;
    x.ctx.sub_agent = c->export_name;
    x.ctx.request_id = c->request_id;
    x.ctx.trace_id = c->trace_id;
    x.ctx.subject = c->subject ? c->subject : "";
    x.ctx.context.ptr = c->context ? c->context : "{}";
    x.ctx.context.len = c->context ? c->context_len : 2;
    x.ctx.deadline_ms = c->deadline_ms;
    x.ctx._impl = &x;
    x.out.api = &inproc_api;
    x.out._impl = &x;
    pthread_mutex_init(&x.emit_lock, NULL);
    if (c->sink && c->sink->started) /* the run is running, on this thread */
        c->sink->started(c);
    size_t limit = c->output.limit;
    par_buf_reset(&c->output);
    c->output.limit = pv->rt->cfg.max_output_bytes;
    par_slice_t in = {c->input ? c->input : "null", c->input ? c->input_len : 4};
    /* The thread's CPU time (it includes in-process sub-agent calls made
     * inline) is for metering only: two system calls, so only when it is on. */
    int measure = pv->rt->meter != NULL;
    struct timespec cpu0, cpu1;
    if (measure)
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    int rc = pv->fns[c->_export_idx](&x.ctx, in, &x.out);
    if (measure) {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
        c->cpu_ns =
            (int64_t)(cpu1.tv_sec - cpu0.tv_sec) * 1000000000 + (cpu1.tv_nsec - cpu0.tv_nsec);
    }
    c->output.limit = limit;
    size_t off;
    if (x.event_refused) {
        c->status = x.event_refused;
        par_buf_reset(&c->output);
        par_buf_appendf(&c->output, "an event of agent '%s' was refused: %s", c->agent_id,
                        par_strerror(x.event_refused));
    } else if (x.too_large) {
        c->status = PAR_E_OUTPUT_TOO_LARGE;
        par_buf_reset(&c->output);
        par_buf_appendf(&c->output, "agent output exceeds the cap of %zu bytes",
                        pv->rt->cfg.max_output_bytes);
    } else if (rc != 0) {
        c->status = PAR_E_AGENT_ERROR;
        par_buf_reset(&c->output);
        if (x.fail_msg)
            par_buf_appends(&c->output, x.fail_msg);
        else
            par_buf_appendf(&c->output, "agent '%s' returned %d", c->agent_id, rc);
    } else if (c->output.len == 0 ||
               par_json_scan(c->output.data, c->output.len, NULL, 0, &off) != 0) {
        size_t len = c->output.len;
        c->status = PAR_E_BAD_OUTPUT;
        par_buf_reset(&c->output);
        par_buf_appendf(&c->output, "agent '%s' returned output that is not valid JSON (%zu bytes)",
                        c->agent_id, len);
    } else {
        c->status = PAR_OK;
        if (x.units)
            c->units_json = json_dumps(x.units, JSON_COMPACT);
    }
    for (size_t i = 0; i < x.nnested; i++)
        par__call_free(x.nested[i]);
    free(x.nested);
    json_decref(x.units);
    free(x.fail_msg);
    pthread_mutex_destroy(&x.emit_lock);
}
