/*
 * auth/metrics.c — see metrics.h.
 */
#include "auth/metrics.h"

#include <stdatomic.h>

#include <par/par.h>

#include "auth/reason.h"
#include "obs/metrics.h"

static atomic_ulong auth_failures[PAR_AUTH_REASON_COUNT];
static atomic_ulong auth_cache[2];   /* miss, hit */
static atomic_ulong auth_fetches[2]; /* failed, ok */

void par_auth_count_failure(int reason)
{
    if (reason < 0 || reason >= PAR_AUTH_REASON_COUNT)
        reason = PAR_AUTH_R_NONE;
    atomic_fetch_add_explicit(&auth_failures[reason], 1, memory_order_relaxed);
}

void par_auth_count_token_cache(int hit)
{
    atomic_fetch_add_explicit(&auth_cache[hit != 0], 1, memory_order_relaxed);
}

void par_auth_count_key_fetch(int ok)
{
    atomic_fetch_add_explicit(&auth_fetches[ok != 0], 1, memory_order_relaxed);
}

int par_auth_collect_metrics(par_buf_t *b, void *ctx)
{
    (void)ctx;
    par_metrics_family(b, "par_auth_failures_total", "counter",
                       "Requests refused by authentication or authorization, by reason.");
    for (int r = 1; r < PAR_AUTH_REASON_COUNT; r++)
        par_buf_appendf(b, "par_auth_failures_total{reason=\"%s\"} %lu\n", par_auth_reason_name(r),
                        atomic_load(&auth_failures[r]));
    par_metrics_family(b, "par_auth_token_cache_total", "counter",
                       "Bearer tokens looked up in the verified-token cache, by result.");
    par_buf_appendf(b,
                    "par_auth_token_cache_total{result=\"hit\"} %lu\n"
                    "par_auth_token_cache_total{result=\"miss\"} %lu\n",
                    atomic_load(&auth_cache[1]), atomic_load(&auth_cache[0]));
    par_metrics_family(b, "par_auth_key_fetches_total", "counter",
                       "Fetches of the token issuer's signing keys, by result.");
    par_buf_appendf(b,
                    "par_auth_key_fetches_total{result=\"ok\"} %lu\n"
                    "par_auth_key_fetches_total{result=\"error\"} %lu\n",
                    atomic_load(&auth_fetches[1]), atomic_load(&auth_fetches[0]));
    return PAR_OK;
}
