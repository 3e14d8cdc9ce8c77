/*
 * obs/metrics.h — Prometheus metrics: counters and histograms kept in atomics
 * where the work happens, rendered in the text exposition format on scrape.
 *
 * Per-agent series live in the package version (one slot per export), so
 * their number is bounded by the loaded exports and they go away with the
 * version. Recording is lock-free and allocation-free; rendering allocates one
 * growing buffer per scrape. Any thread.
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

struct par_runtime;
struct par_http;

/* Records one finished invocation. */
void par_metrics_observe(par_export_metrics_t *m, int status, int64_t duration_ns);

/* Records one HTTP response: `route` is a fixed route name. */
void par_metrics_http(const char *route, int code);

/* Records package load phases in seconds. */
void par_metrics_load(double read_s, double verify_s, double extract_s, double load_s);

/* Records the time from process start to the first readiness. */
void par_metrics_cold_start(double seconds);
void par_metrics_registry_poll(const char *result);

/* Records one refused credential or request (auth/reason.h reason). */
void par_metrics_auth_failure(int reason);

/* Records one lookup in the verified-token cache. */
void par_metrics_auth_cache(int hit);

/* Records one fetch of the issuer's keys (discovery and JWKS). */
void par_metrics_auth_jwks_fetch(int ok);

/* Renders every metric of the runtime into `out`. */
int par_metrics_render(struct par_runtime *rt, par_buf_t *out);

#endif
