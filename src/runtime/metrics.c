/*
 * runtime/metrics.c — see metrics.h. The agents' families read the package
 * versions of a snapshot (par__packages_snapshot) and their pools
 * (par_pool_stats); nothing here blocks on agent code.
 */
#include "runtime/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/metrics.h"
#include "loader/supervisor.h"
#include "metering/meter.h"
#include "obs/metrics.h"
#include "runtime/converge.h"
#include "runtime/exporters.h"
#include "runtime/fleet.h"
#include "runtime/runs.h"

#define help par_metrics_family

typedef void (*export_fn)(par_buf_t *b, const par_pkgver_t *pv, const par_export_metrics_t *m,
                          const char *agent);

/* Calls `fn` for every export of every listed version that has metrics,
 * with its agent label ("name" or "name/sub"). */
static void each_export(par_buf_t *b, par_pkgver_t **pk, size_t n, export_fn fn)
{
    for (size_t i = 0; i < n; i++) {
        const par_pkgver_t *pv = pk[i];
        if (pv->metrics == NULL || pv->manifest == NULL)
            continue;
        for (size_t e = 0; e < pv->manifest->export_count; e++) {
            const char *sub = pv->manifest->exports[e].name;
            char agent[200];
            snprintf(agent, sizeof(agent), "%s%s%s", pv->name, sub[0] ? "/" : "", sub);
            fn(b, pv, &pv->metrics[e], agent);
        }
    }
}

static void invocations(par_buf_t *b, const par_pkgver_t *pv, const par_export_metrics_t *m,
                        const char *agent)
{
    for (int s = 0; s < PAR_STATUS_COUNT; s++) {
        unsigned long v = atomic_load(&m->by_status[s]);
        if (v)
            par_buf_appendf(b,
                            "par_invocations_total{agent=\"%s\",version=\"%s\",status=\"%s\"} "
                            "%lu\n",
                            agent, pv->version, par_status_name(s), v);
    }
}

static void latency(par_buf_t *b, const par_pkgver_t *pv, const par_export_metrics_t *m,
                    const char *agent)
{
    unsigned long cum = 0;
    for (int k = 0; k < PAR_LATENCY_BUCKETS; k++) {
        cum += atomic_load(&m->buckets[k]);
        par_buf_appendf(b, "par_invocation_duration_seconds_bucket{agent=\"%s\",le=\"%g\"} %lu\n",
                        agent, par_metrics_latency_le[k], cum);
    }
    unsigned long total = 0;
    for (int s = 0; s < PAR_STATUS_COUNT; s++)
        total += atomic_load(&m->by_status[s]);
    if (total < cum)
        total = cum;
    par_buf_appendf(b,
                    "par_invocation_duration_seconds_bucket{agent=\"%s\",le=\"+Inf\"} %lu\n"
                    "par_invocation_duration_seconds_sum{agent=\"%s\"} %.9f\n"
                    "par_invocation_duration_seconds_count{agent=\"%s\"} %lu\n",
                    agent, total, agent, (double)atomic_load(&m->sum_ns) / 1e9, agent, total);
}

static void in_flight(par_buf_t *b, const par_pkgver_t *pv, const par_export_metrics_t *m,
                      const char *agent)
{
    long v = atomic_load(&m->in_flight);
    par_buf_appendf(b, "par_invocations_in_flight{agent=\"%s\"} %ld\n", agent, v < 0 ? 0 : v);
}

static void per_export(par_buf_t *b, par_pkgver_t **pk, size_t n)
{
    help(b, "par_invocations_total", "counter", "Agent invocations by agent, version and status.");
    each_export(b, pk, n, invocations);
    help(b, "par_invocation_duration_seconds", "histogram",
         "Time agents took to answer, as measured by the runtime.");
    each_export(b, pk, n, latency);
    help(b, "par_invocations_in_flight", "gauge", "Invocations started and not yet answered.");
    each_export(b, pk, n, in_flight);
}

static int workers(par_buf_t *b, par_pkgver_t **pk, size_t n)
{
    help(b, "par_worker_restarts_total", "counter",
         "Workers replaced, by package and reason (crash, timeout, cancel_ignored).");
    par_buf_t w; /* par_workers samples, emitted after their own HELP below */
    par_buf_init(&w, 0);
    int rc = PAR_OK;
    for (size_t i = 0; i < n && rc == PAR_OK; i++) {
        par_pkgver_t *pv = pk[i];
        if (pv->pool == NULL)
            continue;
        par_pool_stats_t st;
        par_pool_stats(pv->pool, &st);
        par_buf_appendf(b,
                        "par_worker_restarts_total{package=\"%s\",reason=\"crash\"} %u\n"
                        "par_worker_restarts_total{package=\"%s\",reason=\"timeout\"} %u\n"
                        "par_worker_restarts_total{package=\"%s\",reason=\"cancel_ignored\"} %u\n",
                        pv->name, st.crashes, pv->name, st.timeouts, pv->name, st.cancel_kills);
        rc = par_buf_appendf(&w,
                             "par_workers{package=\"%s\",state=\"starting\"} %u\n"
                             "par_workers{package=\"%s\",state=\"ready\"} %u\n"
                             "par_workers{package=\"%s\",state=\"retiring\"} %u\n",
                             pv->name, st.starting, pv->name, st.ready, pv->name, st.retiring);
    }
    help(b, "par_workers", "gauge", "Worker processes by package and state.");
    if (w.len)
        par_buf_append(b, w.data, w.len);
    par_buf_free(&w);
    return rc;
}

static void packages(par_buf_t *b, par_pkgver_t **pk, size_t n)
{
    help(b, "par_packages", "gauge", "Package versions by state.");
    unsigned states[4] = {0};
    for (size_t i = 0; i < n; i++) {
        int s = atomic_load(&pk[i]->state);
        if (s >= 0 && s < 4)
            states[s]++;
    }
    for (int s = 0; s < 4; s++)
        par_buf_appendf(b, "par_packages{state=\"%s\"} %u\n", par_pkg_state_name(s), states[s]);
}

/* Invocations, latency, in flight, worker restarts, workers, packages. */
static int collect_agents(par_buf_t *b, void *ctx)
{
    par_runtime_t *rt = ctx;
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(rt, &pk, &n) != PAR_OK)
        return PAR_E_NO_MEMORY;
    per_export(b, pk, n);
    int rc = workers(b, pk, n);
    packages(b, pk, n);
    for (size_t i = 0; i < n; i++)
        par__pkgver_unref(pk[i]);
    free(pk);
    return rc;
}

/* Calls a host program made in its own process (par/par.h: par_call,
 * par_call_ex, par_call_start; the Python module), by status. They are not
 * HTTP requests; their agents count them in par_invocations_total as usual. */
static int collect_inprocess(par_buf_t *b, void *ctx)
{
    par_runtime_t *rt = ctx;
    help(b, "par_inprocess_calls_total", "counter",
         "Calls made through the embedding API (no HTTP), by status.");
    for (int s = 0; s < PAR_STATUS_COUNT; s++) {
        unsigned long v = 0;
        int first = 1; /* two statuses share "over_capacity": one series */
        for (int o = 0; o < PAR_STATUS_COUNT; o++)
            if (strcmp(par_status_name(o), par_status_name(s)) == 0) {
                first &= o >= s;
                v += atomic_load(&rt->inprocess_calls[o]);
            }
        if (v && first)
            par_buf_appendf(b, "par_inprocess_calls_total{status=\"%s\"} %lu\n", par_status_name(s),
                            v);
    }
    return PAR_OK;
}

/* Metering's families, whether metering is configured or not (rt->meter is
 * set after the runtime is made). */
static int collect_metering(par_buf_t *b, void *ctx)
{
    par_runtime_t *rt = ctx;
    par_meter_render_metrics(rt->meter, b);
    return PAR_OK;
}

/* The runs' families (runtime/runs.h), zero before the runs are open. */
static int collect_runs(par_buf_t *b, void *ctx)
{
    par_runtime_t *rt = ctx;
    par_runs_render_metrics(rt->runs, b);
    /* the fleet's families only on a fleet node (fleet.postgres) */
    if (rt->fleet)
        par_fleet_render_metrics(rt->fleet, b);
    return PAR_OK;
}

/* The registry index generation this node applied (converge_index.c). */
static int collect_index(par_buf_t *b, void *ctx)
{
    par__index_render_metrics(ctx, b);
    return PAR_OK;
}

static int collect_start_time(par_buf_t *b, void *ctx)
{
    par_runtime_t *rt = ctx;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    help(b, "process_start_time_seconds", "gauge", "Start time of the process since the epoch.");
    par_buf_appendf(b, "process_start_time_seconds %.3f\n",
                    (double)now.tv_sec + now.tv_nsec / 1e9 -
                        (double)(par__now_ms() - rt->started_ms) / 1e3);
    return PAR_OK;
}

int par__runtime_metrics_init(par_runtime_t *rt)
{
    const struct {
        par_metrics_collector_fn fn;
        void *ctx;
    } order[] = {
        {collect_agents, rt},
        {collect_inprocess, rt},
        {collect_runs, rt},
        {collect_index, rt},
        {par_metrics_collect_server, NULL},
        {par_auth_collect_metrics, NULL},
        {collect_metering, rt},
        {par_metrics_collect_process, NULL},
        {collect_start_time, rt},
    };
    int rc = par_metrics_registry_new(&rt->metrics);
    for (size_t i = 0; rc == PAR_OK && i < sizeof(order) / sizeof(*order); i++)
        rc = par_metrics_register(rt->metrics, order[i].fn, order[i].ctx);
    return rc;
}

void par__runtime_metrics_free(par_runtime_t *rt)
{
    par_metrics_registry_free(rt->metrics);
    rt->metrics = NULL;
}

int par__runtime_render_metrics(par_runtime_t *rt, par_buf_t *out)
{
    const par_exporter_impl_t *e = par__exporters_scrape(rt);
    return e->scrape(e, rt, out);
}
