/*
 * runtime/metrics.h — the runtime's /metrics: its metrics registry
 * (obs/metrics.h) and the collectors of its own families.
 *
 * par__runtime_metrics_init registers, in the order a scrape shows them:
 * the agents' families (invocations, latency, in flight, worker restarts,
 * workers, packages by state), the server's (obs), authentication's
 * (auth/metrics.h), metering's (metering/meter.h), the process's (obs), and
 * the process start time. Callers: par_runtime_new/destroy; the render from
 * any thread (an HTTP loop's /metrics).
 */
#ifndef PAR_RUNTIME_METRICS_H
#define PAR_RUNTIME_METRICS_H

#include "runtime/runtime.h"

/* Builds rt->metrics. PAR_E_NO_MEMORY. */
int par__runtime_metrics_init(par_runtime_t *rt);
void par__runtime_metrics_free(par_runtime_t *rt);

/* Every family of the runtime, in the Prometheus text format. */
int par__runtime_render_metrics(par_runtime_t *rt, par_buf_t *out);

#endif
