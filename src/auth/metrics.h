/*
 * auth/metrics.h — authentication's counters and their collector.
 *
 * Owns: refusals by reason (auth/reason.h), verified-token cache lookups and
 * fetches of the issuer's keys, kept in atomics. The runtime registers
 * par_auth_collect_metrics in its metrics registry (obs/metrics.h).
 * Recording is lock-free and allocation-free. Any thread.
 */
#ifndef PAR_AUTH_METRICS_H
#define PAR_AUTH_METRICS_H

#include "util/buf.h"

/* Records one refused credential or request (auth/reason.h reason). */
void par_auth_count_failure(int reason);

/* Records one lookup in the verified-token cache. */
void par_auth_count_token_cache(int hit);

/* Records one fetch of the issuer's keys (discovery and JWKS). */
void par_auth_count_key_fetch(int ok);

/* Collector (obs/metrics.h): par_auth_failures_total,
 * par_auth_token_cache_total, par_auth_key_fetches_total. */
int par_auth_collect_metrics(par_buf_t *out, void *ctx);

#endif
