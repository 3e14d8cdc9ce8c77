/*
 * obs/metrics.h — Prometheus metrics: counters and histograms kept in atomics
 * where the work happens, rendered in the text exposition format on scrape.
 *
 * A registry of collectors renders a scrape (like h2o's status handlers):
 * each module that owns metrics registers a function that appends its
 * families, and the registry calls them in the order they were registered.
 * The runtime builds its registry (runtime/metrics.c); the families of the
 * server itself (HTTP, package loads, registry polls, the process) are the
 * two collectors below. obs is a leaf: it knows no module above util/.
 *
 * Per-agent series live in the package version (one slot per export), so
 * their number is bounded by the loaded exports and they go away with the
 * version. Recording is lock-free and allocation-free; rendering allocates one
 * growing buffer per scrape. Any thread; registration before the first render.
 */
#ifndef PAR_OBS_METRICS_H
#define PAR_OBS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include <par/par.h>

#include "util/buf.h"

#define PAR_LATENCY_BUCKETS 17

typedef struct par_export_metrics {
    atomic_ulong by_status[PAR_STATUS_COUNT];
    atomic_ulong buckets[PAR_LATENCY_BUCKETS]; /* cumulative on render, raw here */
    atomic_ulong sum_ns;
    atomic_long in_flight;
} par_export_metrics_t;

/* The upper bounds (le) of the invocation latency buckets, in seconds. */
extern const double par_metrics_latency_le[PAR_LATENCY_BUCKETS];

/* Records one finished invocation. */
void par_metrics_observe(par_export_metrics_t *m, int status, int64_t duration_ns);

/* Records one HTTP response: `route` is a fixed route name. */
void par_metrics_http(const char *route, int code);

/* Records package load phases in seconds. */
void par_metrics_load(double read_s, double verify_s, double extract_s, double load_s);

/* Records the time from process start to the first readiness. */
void par_metrics_cold_start(double seconds);
void par_metrics_registry_poll(const char *result);

/* A collector: appends whole families (HELP, TYPE, samples) to `out`.
 * PAR_OK, or an error: then what it appended is dropped and the other
 * collectors' families are still rendered. */
typedef int (*par_metrics_collector_fn)(par_buf_t *out, void *ctx);

typedef struct par_metrics_registry par_metrics_registry_t;

int par_metrics_registry_new(par_metrics_registry_t **out);
void par_metrics_registry_free(par_metrics_registry_t *r);

/* Adds a collector after those registered before. PAR_E_NO_MEMORY. */
int par_metrics_register(par_metrics_registry_t *r, par_metrics_collector_fn fn, void *ctx);

/* Renders every collector's families into `out`, in registration order.
 * PAR_OK, or the first collector's error (the others are rendered). */
int par_metrics_render(par_metrics_registry_t *r, par_buf_t *out);

/* Appends a family's "# HELP" and "# TYPE" lines. */
void par_metrics_family(par_buf_t *b, const char *name, const char *type, const char *help);

/* The server's families: HTTP responses, package load phases, registry
 * polls, cold start. */
int par_metrics_collect_server(par_buf_t *out, void *ctx);

/* Dropped log lines, the build, and the process (memory, CPU, descriptors). */
int par_metrics_collect_process(par_buf_t *out, void *ctx);

#endif
