/*
 * runtime/exporters.c — see exporters.h: the telemetry-exporter registry
 * with the built-in Prometheus exposition as its first entry.
 */
#include "runtime/exporters.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"

/* The Prometheus text exposition of the runtime's metrics registry
 * (runtime/metrics.c builds it): one growing buffer per scrape, no more. */
static int prometheus_scrape(const par_exporter_impl_t *e, par_runtime_t *rt, par_buf_t *out)
{
    (void)e;
    return par_metrics_render(rt->metrics, out);
}

static const par_exporter_impl_t prometheus = {
    .name = "prometheus",
    .scrape = prometheus_scrape,
    .content_type = "text/plain; version=0.0.4; charset=utf-8",
};

/* The registry: the built-in entries, then those added (rt->exporters). */
static const par_exporter_impl_t *const builtin[] = {&prometheus};
#define NBUILTIN (sizeof(builtin) / sizeof(*builtin))

size_t par__exporters_count(par_runtime_t *rt)
{
    return NBUILTIN + rt->nexporters;
}

const par_exporter_impl_t *par__exporters_at(par_runtime_t *rt, size_t i)
{
    assert(i < par__exporters_count(rt));
    return i < NBUILTIN ? builtin[i] : rt->exporters[i - NBUILTIN];
}

const par_exporter_impl_t *par__exporters_find(par_runtime_t *rt, const char *name)
{
    for (size_t i = 0; i < par__exporters_count(rt); i++)
        if (strcmp(par__exporters_at(rt, i)->name, name) == 0)
            return par__exporters_at(rt, i);
    return NULL;
}

const par_exporter_impl_t *par__exporters_scrape(par_runtime_t *rt)
{
    for (size_t i = 0; i < par__exporters_count(rt); i++)
        if (par__exporters_at(rt, i)->scrape)
            return par__exporters_at(rt, i);
    abort(); /* the built-in entry is always there */
}

int par__exporters_add(par_runtime_t *rt, const par_exporter_impl_t *e, par_buf_t *err)
{
    assert(e->scrape == NULL || e->finished == NULL); /* a metrics-only plugin: neither */
    if (par__exporters_find(rt, e->name)) {
        par_buf_appendf(err, "a telemetry exporter named '%s' is registered already", e->name);
        return PAR_E_CONFLICT;
    }
    const par_exporter_impl_t **v = realloc(rt->exporters, (rt->nexporters + 1) * sizeof(*v));
    if (v == NULL)
        return PAR_E_NO_MEMORY;
    v[rt->nexporters++] = e;
    rt->exporters = v;
    if (e->finished)
        rt->npush++;
    return PAR_OK;
}

void par__exporters_finished(par_runtime_t *rt, const par_call_t *c)
{
    for (size_t i = 0; i < rt->nexporters; i++) /* the built-in entries are scrape entries */
        if (rt->exporters[i]->finished)
            rt->exporters[i]->finished(rt->exporters[i], c);
}

void par__exporters_names(par_runtime_t *rt, par_buf_t *out)
{
    for (size_t i = 0; i < par__exporters_count(rt); i++)
        par_buf_appendf(out, "%s%s", i ? ", " : "", par__exporters_at(rt, i)->name);
}

void par__exporters_free(par_runtime_t *rt)
{
    free(rt->exporters);
    rt->exporters = NULL;
    rt->nexporters = rt->npush = 0;
}
