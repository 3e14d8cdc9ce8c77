/*
 * obs/metrics.c — see metrics.h. Names and units follow Prometheus
 * conventions (seconds, _total for counters); docs/observability.md lists them.
 */
#include "obs/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "auth/reason.h"
#include "loader/supervisor.h"
#include "metering/meter.h"
#include "obs/log.h"
#include "runtime/runtime.h"

static const double bucket_le[PAR_LATENCY_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                      1,      2.5,     5,      10,    30};

void par_metrics_observe(par_export_metrics_t *m, int status, int64_t duration_ns)
{
    if (status < 0 || status >= PAR_STATUS_COUNT)
        status = PAR_E_INTERNAL;
    atomic_fetch_add_explicit(&m->by_status[status], 1, memory_order_relaxed);
    double s = (double)duration_ns / 1e9;
    for (int i = 0; i < PAR_LATENCY_BUCKETS; i++) {
        if (s <= bucket_le[i]) {
            atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&m->sum_ns, (unsigned long)(duration_ns > 0 ? duration_ns : 0),
                              memory_order_relaxed);
}

/* ---- HTTP requests by route and code ----------------------------------------------- */

static const char *const routes[] = {"invoke",   "agents",  "agent",   "health", "ready", "info",
                                     "packages", "package", "metrics", "usage",  "other"};
#define NROUTES (sizeof(routes) / sizeof(*routes))
/* every status code 100..599 has its own column (201 and 202 too), the last
 * column counts anything else; only codes seen are exported */
#define CODE_MIN 100
#define NCODES 500
static atomic_ulong http_counts[NROUTES][NCODES + 1];

void par_metrics_http(const char *route, int code)
{
    size_t r = NROUTES - 1;
    for (size_t i = 0; i < NROUTES; i++)
        if (strcmp(routes[i], route) == 0)
            r = i;
    size_t c = code >= CODE_MIN && code < CODE_MIN + NCODES ? (size_t)(code - CODE_MIN) : NCODES;
    atomic_fetch_add_explicit(&http_counts[r][c], 1, memory_order_relaxed);
}

/* ---- package loads ------------------------------------------------------------------- */

static const double load_le[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30};
#define NLOAD (sizeof(load_le) / sizeof(*load_le))
static const char *const phases[] = {"fetch", "verify", "extract", "load"};
#define NPHASES 4
static atomic_ulong load_buckets[NPHASES][NLOAD];
static atomic_ulong load_count[NPHASES];
static atomic_ulong load_sum_us[NPHASES];
static _Atomic double cold_start_s = -1;

void par_metrics_load(double read_s, double verify_s, double extract_s, double load_s)
{
    double v[NPHASES] = {read_s, verify_s, extract_s, load_s};
    for (int p = 0; p < NPHASES; p++) {
        for (size_t i = 0; i < NLOAD; i++) {
            if (v[p] <= load_le[i]) {
                atomic_fetch_add(&load_buckets[p][i], 1);
                break;
            }
        }
        atomic_fetch_add(&load_count[p], 1);
        atomic_fetch_add(&load_sum_us[p], (unsigned long)(v[p] * 1e6));
    }
}

static const char *const poll_results[] = {"ok", "not_modified", "error"};
static atomic_ulong registry_polls[3];

void par_metrics_registry_poll(const char *result)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(result, poll_results[i]) == 0)
            atomic_fetch_add(&registry_polls[i], 1);
}

void par_metrics_cold_start(double seconds)
{
    atomic_store(&cold_start_s, seconds);
}

/* ---- authentication ------------------------------------------------------------------ */

static atomic_ulong auth_failures[PAR_AUTH_REASON_COUNT];
static atomic_ulong auth_cache[2];   /* miss, hit */
static atomic_ulong auth_fetches[2]; /* failed, ok */

void par_metrics_auth_failure(int reason)
{
    if (reason < 0 || reason >= PAR_AUTH_REASON_COUNT)
        reason = PAR_AUTH_R_NONE;
    atomic_fetch_add_explicit(&auth_failures[reason], 1, memory_order_relaxed);
}

void par_metrics_auth_cache(int hit)
{
    atomic_fetch_add_explicit(&auth_cache[hit != 0], 1, memory_order_relaxed);
}

void par_metrics_auth_jwks_fetch(int ok)
{
    atomic_fetch_add_explicit(&auth_fetches[ok != 0], 1, memory_order_relaxed);
}

/* ---- rendering ------------------------------------------------------------------------- */

static void help(par_buf_t *b, const char *name, const char *type, const char *text)
{
    par_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void process_metrics(par_buf_t *b)
{
    long rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size;
        if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
            rss_pages = 0;
        fclose(f);
    }
    help(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    par_buf_appendf(b, "process_resident_memory_bytes %ld\n", rss_pages * sysconf(_SC_PAGESIZE));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    help(b, "process_cpu_seconds_total", "counter", "User and system CPU time in seconds.");
    par_buf_appendf(b, "process_cpu_seconds_total %.6f\n",
                    (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory stream itself */
    }
    help(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    par_buf_appendf(b, "process_open_fds %ld\n", fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        help(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        par_buf_appendf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
}

static void auth_metrics(par_buf_t *b)
{
    help(b, "par_auth_failures_total", "counter",
         "Requests refused by authentication or authorization, by reason.");
    for (int r = 1; r < PAR_AUTH_REASON_COUNT; r++)
        par_buf_appendf(b, "par_auth_failures_total{reason=\"%s\"} %lu\n", par_auth_reason_name(r),
                        atomic_load(&auth_failures[r]));
    help(b, "par_auth_token_cache_total", "counter",
         "Bearer tokens looked up in the verified-token cache, by result.");
    par_buf_appendf(b,
                    "par_auth_token_cache_total{result=\"hit\"} %lu\n"
                    "par_auth_token_cache_total{result=\"miss\"} %lu\n",
                    atomic_load(&auth_cache[1]), atomic_load(&auth_cache[0]));
    help(b, "par_auth_key_fetches_total", "counter",
         "Fetches of the token issuer's signing keys, by result.");
    par_buf_appendf(b,
                    "par_auth_key_fetches_total{result=\"ok\"} %lu\n"
                    "par_auth_key_fetches_total{result=\"error\"} %lu\n",
                    atomic_load(&auth_fetches[1]), atomic_load(&auth_fetches[0]));
}

int par_metrics_render(par_runtime_t *rt, par_buf_t *b)
{
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(rt, &pk, &n) != PAR_OK)
        return PAR_E_NO_MEMORY;

    help(b, "par_invocations_total", "counter", "Agent invocations by agent, version and status.");
    for (size_t i = 0; i < n; i++) {
        par_pkgver_t *pv = pk[i];
        if (pv->metrics == NULL || pv->manifest == NULL)
            continue;
        for (size_t e = 0; e < pv->manifest->export_count; e++) {
            const char *sub = pv->manifest->exports[e].name;
            for (int s = 0; s < PAR_STATUS_COUNT; s++) {
                unsigned long v = atomic_load(&pv->metrics[e].by_status[s]);
                if (v)
                    par_buf_appendf(b,
                                    "par_invocations_total{agent=\"%s%s%s\",version=\"%s\","
                                    "status=\"%s\"} %lu\n",
                                    pv->name, sub[0] ? "/" : "", sub, pv->version,
                                    par_status_name(s), v);
            }
        }
    }
    help(b, "par_invocation_duration_seconds", "histogram",
         "Time agents took to answer, as measured by the runtime.");
    for (size_t i = 0; i < n; i++) {
        par_pkgver_t *pv = pk[i];
        if (pv->metrics == NULL || pv->manifest == NULL)
            continue;
        for (size_t e = 0; e < pv->manifest->export_count; e++) {
            const char *sub = pv->manifest->exports[e].name;
            char agent[200];
            snprintf(agent, sizeof(agent), "%s%s%s", pv->name, sub[0] ? "/" : "", sub);
            unsigned long cum = 0;
            for (int k = 0; k < PAR_LATENCY_BUCKETS; k++) {
                cum += atomic_load(&pv->metrics[e].buckets[k]);
                par_buf_appendf(b,
                                "par_invocation_duration_seconds_bucket{agent=\"%s\",le=\"%g\"} "
                                "%lu\n",
                                agent, bucket_le[k], cum);
            }
            unsigned long total = 0;
            for (int s = 0; s < PAR_STATUS_COUNT; s++)
                total += atomic_load(&pv->metrics[e].by_status[s]);
            if (total < cum)
                total = cum;
            par_buf_appendf(b,
                            "par_invocation_duration_seconds_bucket{agent=\"%s\",le=\"+Inf\"} "
                            "%lu\n"
                            "par_invocation_duration_seconds_sum{agent=\"%s\"} %.9f\n"
                            "par_invocation_duration_seconds_count{agent=\"%s\"} %lu\n",
                            agent, total, agent, (double)atomic_load(&pv->metrics[e].sum_ns) / 1e9,
                            agent, total);
        }
    }
    help(b, "par_invocations_in_flight", "gauge", "Invocations started and not yet answered.");
    for (size_t i = 0; i < n; i++) {
        par_pkgver_t *pv = pk[i];
        if (pv->metrics == NULL || pv->manifest == NULL)
            continue;
        for (size_t e = 0; e < pv->manifest->export_count; e++) {
            const char *sub = pv->manifest->exports[e].name;
            long v = atomic_load(&pv->metrics[e].in_flight);
            par_buf_appendf(b, "par_invocations_in_flight{agent=\"%s%s%s\"} %ld\n", pv->name,
                            sub[0] ? "/" : "", sub, v < 0 ? 0 : v);
        }
    }
    help(b, "par_worker_restarts_total", "counter",
         "Workers replaced, by package and reason (crash, timeout).");
    par_buf_t w; /* par_workers samples, emitted after their own HELP below */
    par_buf_init(&w, 0);
    for (size_t i = 0; i < n; i++) {
        par_pkgver_t *pv = pk[i];
        if (pv->pool == NULL)
            continue;
        par_pool_stats_t st;
        par_pool_stats(pv->pool, &st);
        par_buf_appendf(b,
                        "par_worker_restarts_total{package=\"%s\",reason=\"crash\"} %u\n"
                        "par_worker_restarts_total{package=\"%s\",reason=\"timeout\"} %u\n",
                        pv->name, st.crashes, pv->name, st.timeouts);
        par_buf_appendf(&w,
                        "par_workers{package=\"%s\",state=\"starting\"} %u\n"
                        "par_workers{package=\"%s\",state=\"ready\"} %u\n"
                        "par_workers{package=\"%s\",state=\"retiring\"} %u\n",
                        pv->name, st.starting, pv->name, st.ready, pv->name, st.retiring);
    }
    help(b, "par_workers", "gauge", "Worker processes by package and state.");
    if (w.len)
        par_buf_append(b, w.data, w.len);
    par_buf_free(&w);
    help(b, "par_packages", "gauge", "Package versions by state.");
    unsigned states[4] = {0};
    for (size_t i = 0; i < n; i++) {
        int s = atomic_load(&pk[i]->state);
        if (s >= 0 && s < 4)
            states[s]++;
    }
    for (int s = 0; s < 4; s++)
        par_buf_appendf(b, "par_packages{state=\"%s\"} %u\n", par_pkg_state_name(s), states[s]);
    for (size_t i = 0; i < n; i++)
        par__pkgver_unref(pk[i]);
    free(pk);

    help(b, "par_http_requests_total", "counter", "HTTP responses by route and status code.");
    for (size_t r = 0; r < NROUTES; r++) {
        for (size_t c = 0; c <= NCODES; c++) {
            unsigned long v = atomic_load(&http_counts[r][c]);
            if (!v)
                continue;
            if (c < NCODES)
                par_buf_appendf(b, "par_http_requests_total{route=\"%s\",code=\"%d\"} %lu\n",
                                routes[r], (int)c + CODE_MIN, v);
            else
                par_buf_appendf(b, "par_http_requests_total{route=\"%s\",code=\"other\"} %lu\n",
                                routes[r], v);
        }
    }
    help(b, "par_package_load_seconds", "histogram",
         "Package load phases: fetch (read or download, and hash), verify (digest and "
         "signature), extract, load (checks and workers).");
    for (int p = 0; p < NPHASES; p++) {
        unsigned long cum = 0;
        for (size_t i = 0; i < NLOAD; i++) {
            cum += atomic_load(&load_buckets[p][i]);
            par_buf_appendf(b, "par_package_load_seconds_bucket{phase=\"%s\",le=\"%g\"} %lu\n",
                            phases[p], load_le[i], cum);
        }
        unsigned long count = atomic_load(&load_count[p]);
        par_buf_appendf(b,
                        "par_package_load_seconds_bucket{phase=\"%s\",le=\"+Inf\"} %lu\n"
                        "par_package_load_seconds_sum{phase=\"%s\"} %.6f\n"
                        "par_package_load_seconds_count{phase=\"%s\"} %lu\n",
                        phases[p], count, phases[p], atomic_load(&load_sum_us[p]) / 1e6, phases[p],
                        count);
    }
    help(b, "par_registry_poll_total", "counter",
         "Registry index polls by result (ok, not_modified, error).");
    for (int i = 0; i < 3; i++)
        par_buf_appendf(b, "par_registry_poll_total{result=\"%s\"} %lu\n", poll_results[i],
                        atomic_load(&registry_polls[i]));
    double cs = atomic_load(&cold_start_s);
    if (cs >= 0) {
        help(b, "par_cold_start_seconds", "gauge",
             "Time from process start to the first readiness.");
        par_buf_appendf(b, "par_cold_start_seconds %.6f\n", cs);
    }
    auth_metrics(b);
    par_meter_render_metrics(rt->meter, b);
    help(b, "par_log_lines_dropped_total", "counter",
         "Log lines dropped because the log buffer was full.");
    par_buf_appendf(b, "par_log_lines_dropped_total %llu\n", (unsigned long long)par_log_dropped());
    help(b, "par_build_info", "gauge", "Build information.");
    par_buf_appendf(b, "par_build_info{version=\"%s\",agent_abi=\"%d\"} 1\n", par_version(),
                    PAR_AGENT_ABI);
    process_metrics(b);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    help(b, "process_start_time_seconds", "gauge", "Start time of the process since the epoch.");
    par_buf_appendf(b, "process_start_time_seconds %.3f\n",
                    (double)now.tv_sec + now.tv_nsec / 1e9 -
                        (double)(par__now_ms() - rt->started_ms) / 1e3);
    return PAR_OK;
}
