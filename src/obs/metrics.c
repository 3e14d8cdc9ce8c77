/*
 * obs/metrics.c — see metrics.h. Names and units follow Prometheus
 * conventions (seconds, _total for counters); docs/observability.md lists them.
 * The families of other modules are theirs to render (their collectors); the
 * ones here are the server's own: HTTP responses, package loads, registry
 * polls, cold start, dropped log lines, the build and the process.
 */
#include "obs/metrics.h"

#include <assert.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <par/agent.h>

#include "obs/log.h"

const double par_metrics_latency_le[PAR_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};

void par_metrics_observe(par_export_metrics_t *m, int status, int64_t duration_ns)
{
    if (status < 0 || status >= PAR_STATUS_COUNT)
        status = PAR_E_INTERNAL;
    atomic_fetch_add_explicit(&m->by_status[status], 1, memory_order_relaxed);
    double s = (double)duration_ns / 1e9;
    for (int i = 0; i < PAR_LATENCY_BUCKETS; i++) {
        if (s <= par_metrics_latency_le[i]) {
            atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&m->sum_ns, (unsigned long)(duration_ns > 0 ? duration_ns : 0),
                              memory_order_relaxed);
}

/* ---- HTTP requests by route and code ----------------------------------------------- */

static const char *const routes[] = {
    "invoke",     "agents",     "agent",    "health", "ready",       "info",      "packages",
    "package",    "metrics",    "usage",    "runs",   "runs_stream", "runs_wait", "run",
    "run_stream", "run_cancel", "run_wait", "mcp",    "a2a",         "a2a_card",  "other"};
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

/* ---- the registry ----------------------------------------------------------------------- */

typedef struct collector {
    par_metrics_collector_fn fn;
    void *ctx;
} collector_t;

struct par_metrics_registry {
    pthread_mutex_t lock; /* the list; held while rendering, so scrapes take turns */
    collector_t *list;
    size_t count, cap;
};

int par_metrics_registry_new(par_metrics_registry_t **out)
{
    par_metrics_registry_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return PAR_E_NO_MEMORY;
    pthread_mutex_init(&r->lock, NULL);
    *out = r;
    return PAR_OK;
}

void par_metrics_registry_free(par_metrics_registry_t *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->list);
    free(r);
}

int par_metrics_register(par_metrics_registry_t *r, par_metrics_collector_fn fn, void *ctx)
{
    assert(r != NULL && fn != NULL);
    pthread_mutex_lock(&r->lock);
    int rc = PAR_OK;
    if (r->count == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        collector_t *n = realloc(r->list, ncap * sizeof(*n));
        if (n == NULL)
            rc = PAR_E_NO_MEMORY;
        else
            r->list = n, r->cap = ncap;
    }
    if (rc == PAR_OK)
        r->list[r->count++] = (collector_t){fn, ctx};
    assert(r->count <= r->cap);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int par_metrics_render(par_metrics_registry_t *r, par_buf_t *out)
{
    int first_error = PAR_OK;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        size_t mark = out->len;
        int rc = r->list[i].fn(out, r->list[i].ctx);
        if (rc == PAR_OK)
            continue;
        out->len = mark; /* whole families only: what it wrote goes */
        if (first_error == PAR_OK)
            first_error = rc;
        par_log_msg(PAR_LOG_WARN, "metrics: collector %zu failed: %s; the others were rendered", i,
                    par_strerror(rc));
    }
    pthread_mutex_unlock(&r->lock);
    return first_error;
}

/* ---- the server's own families ----------------------------------------------------------- */

void par_metrics_family(par_buf_t *b, const char *name, const char *type, const char *text)
{
    par_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

#define help par_metrics_family

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

int par_metrics_collect_server(par_buf_t *b, void *ctx)
{
    (void)ctx;
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
    return PAR_OK;
}

int par_metrics_collect_process(par_buf_t *b, void *ctx)
{
    (void)ctx;
    help(b, "par_log_lines_dropped_total", "counter",
         "Log lines dropped because the log buffer was full.");
    par_buf_appendf(b, "par_log_lines_dropped_total %llu\n", (unsigned long long)par_log_dropped());
    help(b, "par_build_info", "gauge", "Build information.");
    par_buf_appendf(b, "par_build_info{version=\"%s\",agent_abi=\"%d\"} 1\n", PAR_VERSION_STRING,
                    PAR_AGENT_ABI);
    process_metrics(b);
    return PAR_OK;
}
