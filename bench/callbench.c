/*
 * par-callbench: latency of par_call() through the embedding API, no HTTP.
 *
 *   par-callbench PACKAGE.apkg STATE_DIR in-process|worker ITERATIONS
 *
 * Prints one JSON object: p50/p99/p99.9/max in microseconds and calls/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

static int cmp_i64(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s PACKAGE.apkg STATE_DIR in-process|worker ITERATIONS\n",
                argv[0]);
        return 2;
    }
    par_config_t cfg;
    par_config_init(&cfg);
    cfg.state_dir = argv[2];
    cfg.allow_unsigned = 1; /* the benchmark's own freshly built package */
    cfg.isolation =
        strcmp(argv[3], "in-process") == 0 ? PAR_ISOLATION_IN_PROCESS : PAR_ISOLATION_WORKER;
    long n = atol(argv[4]);
    if (n < 100)
        n = 100;
    par_runtime_t *rt;
    char *err = NULL;
    if (par_runtime_new(&cfg, &rt) != PAR_OK ||
        par_runtime_deploy_path(rt, argv[1], &err) != PAR_OK) {
        fprintf(stderr, "cannot deploy %s: %s\n", argv[1], err ? err : "");
        return 1;
    }
    static const char input[] = "{\"text\":\"hello\"}";
    long long *lat = malloc(sizeof(long long) * (size_t)n);
    /* warm-up */
    for (int i = 0; i < 1000; i++) {
        par_result_t out;
        par_call(rt, "echo", input, sizeof(input) - 1, &out);
        par_result_free(&out);
    }
    long long t0 = now_ns();
    for (long i = 0; i < n; i++) {
        par_result_t out;
        long long a = now_ns();
        int rc = par_call(rt, "echo", input, sizeof(input) - 1, &out);
        lat[i] = now_ns() - a;
        par_result_free(&out);
        if (rc != PAR_OK) {
            fprintf(stderr, "call %ld failed: %s\n", i, par_status_name(rc));
            return 1;
        }
    }
    long long total = now_ns() - t0;
    qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
    printf("{\"mode\":\"%s\",\"iterations\":%ld,\"p50_us\":%.2f,\"p99_us\":%.2f,"
           "\"p999_us\":%.2f,\"max_us\":%.2f,\"calls_per_s\":%.0f}\n",
           argv[3], n, lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3, lat[n * 999 / 1000] / 1e3,
           lat[n - 1] / 1e3, n / (total / 1e9));
    free(lat);
    par_runtime_destroy(rt);
    return 0;
}
