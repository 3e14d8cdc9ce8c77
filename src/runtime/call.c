/*
 * runtime/call.c — see call.h.
 */
#include "runtime/call.h"

#include <assert.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/supervisor.h"
#include "metering/meter.h"
#include "obs/log.h"
#include "obs/trace.h"
#include "runtime/exporters.h"
#include "runtime/runtime.h"
#include "util/json.h"

static void pv_ref(par_pkgver_t *pv)
{
    par__pkgver_ref(pv);
}

static void pv_unref(par_pkgver_t *pv)
{
    par__pkgver_unref(pv);
}

const par_call_pv_ops_t par__pkgver_ops = {pv_ref, pv_unref};

/* 1 when `id` names an agent of the caller's own package: a bare sibling
 * export, or the package's name (any version). */
static int own_package(const par_manifest_t *m, const char *caller, const par_agent_id_t *id)
{
    if (strlen(caller) == id->name_len && memcmp(caller, id->name, id->name_len) == 0)
        return 1;
    if (id->version || id->sub)
        return 0;
    for (size_t i = 0; i < m->export_count; i++)
        if (strlen(m->exports[i].name) == id->name_len &&
            memcmp(m->exports[i].name, id->name, id->name_len) == 0)
            return 1;
    return 0;
}

/* metadata.par.calls: the callee's id without its version, `name` or
 * `name/sub`, must match one of the patterns (fnmatch, `*` crosses `/`); a
 * call that names a version also matches a pattern with one
 * (`echo@1.0.0/upper`), so such a pattern allows that version only. */
static int declared_callee(char *const *calls, const par_agent_id_t *id)
{
    char bare[PAR_ID_MAX + 1], full[PAR_ID_MAX + 1];
    snprintf(bare, sizeof(bare), "%.*s%s%.*s", (int)id->name_len, id->name, id->sub ? "/" : "",
             (int)id->sub_len, id->sub ? id->sub : "");
    snprintf(full, sizeof(full), "%.*s@%.*s%s%.*s", (int)id->name_len, id->name,
             (int)id->version_len, id->version ? id->version : "", id->sub ? "/" : "",
             (int)id->sub_len, id->sub ? id->sub : "");
    for (size_t i = 0; calls[i]; i++)
        if (fnmatch(calls[i], bare, 0) == 0 || (id->version && fnmatch(calls[i], full, 0) == 0))
            return 1;
    return 0;
}

static void log_depth_refused(const par_call_t *c, unsigned max)
{
    par_logline_t l;
    if (!par_log_begin(&l, PAR_LOG_WARN, "sub-agent call refused: call depth"))
        return;
    par_log_str(&l, "request_id", c->request_id);
    par_log_str(&l, "trace_id", c->trace_id);
    par_log_str(&l, "agent", c->agent_id);
    par_log_str(&l, "caller", c->caller_pv ? c->caller_pv->name : "");
    par_log_int(&l, "depth", c->depth);
    par_log_int(&l, "max_call_depth", max);
    par_log_end(&l);
}

int par__call_admit(par_runtime_t *rt, par_call_t *c, const par_agent_id_t *id)
{
    if (!c->_hop)
        return PAR_OK;
    unsigned max = rt->cfg.max_call_depth;
    if (c->depth > max) {
        log_depth_refused(c, max);
        par_buf_appendf(&c->output,
                        "calling '%s' would be call %u of one chain of sub-agent calls "
                        "(limits.max_call_depth = %u): an agent that calls itself, or agents "
                        "that call each other in a cycle",
                        c->agent_id, c->depth, max);
        return PAR_E_CALL_DEPTH;
    }
    size_t off = 0;
    if (c->input == NULL || par_json_scan(c->input, c->input_len, NULL, 0, &off) != 0) {
        par_buf_appendf(&c->output, "the input of the call to '%s' is not valid JSON (byte %zu)",
                        c->agent_id, off);
        return PAR_E_INVALID_JSON;
    }
    const par_pkgver_t *cp = c->caller_pv;
    char *const *calls = cp && cp->manifest ? cp->manifest->calls : NULL;
    if (calls == NULL || own_package(cp->manifest, cp->name, id) || declared_callee(calls, id))
        return PAR_OK;
    par_buf_appendf(&c->output,
                    "package '%s' may not call '%s': it declares the agents it calls "
                    "(metadata.par.calls:",
                    cp->name, c->agent_id);
    for (size_t i = 0; calls[i]; i++)
        par_buf_appendf(&c->output, "%s %s", i ? "," : "", calls[i]);
    par_buf_appends(&c->output, calls[0] ? ")" : " none)");
    return PAR_E_FORBIDDEN;
}

static par_usage_t *usage_of(const par_call_t *c)
{
    /* one allocation a record: its strings live in its own block */
    par_usage_t *u = par_usage_new(c->subject, c->tenant, c->pv->name, c->pv->version,
                                   c->status == PAR_OK ? c->units_json : NULL);
    if (u == NULL)
        return NULL;
    memcpy(u->id, c->id, sizeof(u->id));
    memcpy(u->parent_id, c->parent_id, sizeof(u->parent_id));
    memcpy(u->root_id, c->root_id[0] ? c->root_id : c->id, sizeof(u->root_id));
    snprintf(u->request_id, sizeof(u->request_id), "%s", c->request_id);
    snprintf(u->trace_id, sizeof(u->trace_id), "%s", c->trace_id);
    memcpy(u->span_id, c->span_id, sizeof(u->span_id));
    u->ts_ms = c->wall_ms;
    /* the resolved id, whatever the caller named (a bare sibling, name@version) */
    if (c->export_name && c->export_name[0])
        snprintf(u->agent, sizeof(u->agent), "%s/%s", c->pv->name, c->export_name);
    else
        snprintf(u->agent, sizeof(u->agent), "%s", c->pv->name);
    snprintf(u->status, sizeof(u->status), "%s",
             c->status == PAR_OK ? "ok" : par_status_name(c->status));
    u->duration_ms = (double)(c->finished_ns - c->started_ns) / 1e6;
    u->cpu_ms = c->cpu_ns >= 0 ? (double)c->cpu_ns / 1e6 : -1;
    u->bytes_in = (int64_t)c->input_len;
    u->bytes_out = c->status == PAR_OK ? (int64_t)c->output.len : 0;
    return u;
}

/* The rest of par__call_finish: hand the result over, then stop counting it. */
static void call_release(void *arg)
{
    par_call_t *c = arg;
    par_runtime_t *rt = c->_counted && c->pv ? c->pv->rt : NULL;
    c->done(c); /* may free c */
    if (rt)
        atomic_fetch_sub(&rt->inflight, 1);
}

static void log_hop(const par_call_t *c)
{
    par_logline_t l;
    if (!par_log_begin(&l, PAR_LOG_INFO, "sub-agent call"))
        return;
    par_log_str(&l, "request_id", c->request_id);
    par_log_str(&l, "trace_id", c->trace_id);
    par_log_str(&l, "span_id", c->span_id);
    par_log_str(&l, "parent_span_id", c->parent_span_id);
    par_log_str(&l, "agent", c->agent_id);
    par_log_str(&l, "package", c->pv->name);
    par_log_str(&l, "version", c->pv->version);
    if (c->subject)
        par_log_str(&l, "subject", c->subject);
    par_log_str(&l, "status", c->status == PAR_OK ? "ok" : par_status_name(c->status));
    par_log_double(&l, "duration_ms", (double)(c->finished_ns - c->started_ns) / 1e6);
    par_log_end(&l);
}

void par__call_finish(par_call_t *c)
{
    assert(!c->_finished); /* `done` runs exactly once */
    c->_finished = 1;
    c->finished_ns = par__now_ns();
    par_runtime_t *rt = c->_counted && c->pv ? c->pv->rt : NULL;
    if (rt && c->pv->metrics) {
        par_export_metrics_t *m = &c->pv->metrics[c->_export_idx];
        par_metrics_observe(m, c->status, c->finished_ns - c->started_ns);
        par__rollback_observe(c->pv, c->status);
        atomic_fetch_sub(&m->in_flight, 1);
    }
    if (rt && c->_hop)
        log_hop(c);
    if (rt && rt->npush) /* only when an exporter takes finished calls */
        par__exporters_finished(rt, c);
    par_usage_t *u = rt && rt->meter ? usage_of(c) : NULL;
    if (u) {
        /* A root's answer waits for its record's commit (group commit, see
         * metering/meter.h). A sub-agent call's record is queued before its
         * root's, and the writer commits in queue order, so the root's
         * commit covers it: hops do not wait. */
        int waits = !c->_hop && par_meter_answers_wait(rt->meter); /* read now: once
                                                                      submitted, c may be gone */
        if (waits) {
            u->committed = call_release;
            u->arg = c;
        }
        if (par_meter_submit(rt->meter, u) == PAR_OK && waits)
            return; /* call_release runs on the writer thread */
    }
    call_release(c);
}

void par__call_fail(par_call_t *c, int status, const char *fmt, ...)
{
    c->status = status;
    par_buf_reset(&c->output);
    va_list ap;
    va_start(ap, fmt);
    par_buf_vappendf(&c->output, fmt, ap);
    va_end(ap);
    par__call_finish(c);
}

int par__call_cancel(par_call_t *c, const char *why)
{
    atomic_store(&c->_cancel_requested, 1); /* what par_ctx_cancelled() reads in-process */
    /* Only calls a worker pool holds can be taken back: an in-process
     * (trusted) agent runs on a thread that cannot be interrupted. */
    par_pool_t *pool = c->pv ? c->pv->pool : NULL;
    if (pool == NULL)
        return PAR_E_NOT_FOUND;
    return par_pool_cancel(pool, c, why);
}

int par__call_cancel_grace(par_call_t *c, const char *why, uint32_t grace_ms)
{
    atomic_store(&c->_cancel_requested, 1);
    par_pool_t *pool = c->pv ? c->pv->pool : NULL;
    if (pool == NULL)
        return PAR_E_NOT_FOUND; /* in-process: the agent sees the request, finishes as usual */
    return par_pool_cancel_grace(pool, c, why, grace_ms);
}

void par__call_events_ack(par_call_t *c, unsigned n)
{
    par_pool_t *pool = c->pv ? c->pv->pool : NULL;
    if (pool) /* in-process agents are never held back (runtime/native.c) */
        par_pool_events_ack(pool, c, n);
}
