/*
 * Unit tests for obs/metrics.c: the collector registry (order, concatenated
 * output, a failing collector dropped without breaking the others) and the
 * server's own families.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "obs/metrics.h"

static char g_calls[16];
static size_t g_ncalls;

static int collect_a(par_buf_t *out, void *ctx)
{
    g_calls[g_ncalls++] = 'a';
    par_metrics_family(out, "a_total", "counter", "A things.");
    return par_buf_appendf(out, "a_total %d\n", *(int *)ctx);
}

static int collect_fails(par_buf_t *out, void *ctx)
{
    (void)ctx;
    g_calls[g_ncalls++] = 'f';
    par_buf_appends(out, "# HELP half_written a family cut short\n");
    return PAR_E_NO_MEMORY;
}

static int collect_c(par_buf_t *out, void *ctx)
{
    (void)ctx;
    g_calls[g_ncalls++] = 'c';
    return par_buf_appends(out, "c 1\n");
}

static void test_collectors_in_order(void **state)
{
    (void)state;
    par_metrics_registry_t *r = NULL;
    assert_int_equal(par_metrics_registry_new(&r), PAR_OK);
    int seven = 7;
    /* more than the first allocation holds: the list grows */
    for (int i = 0; i < 10; i++)
        assert_int_equal(par_metrics_register(r, i % 2 ? collect_c : collect_a, &seven), PAR_OK);
    g_ncalls = 0;
    par_buf_t b;
    par_buf_init(&b, 0);
    assert_int_equal(par_metrics_render(r, &b), PAR_OK);
    assert_int_equal(g_ncalls, 10);
    assert_memory_equal(g_calls, "acacacacac", 10);
    const char *one = "# HELP a_total A things.\n# TYPE a_total counter\na_total 7\nc 1\n";
    size_t n = strlen(one);
    assert_int_equal(b.len, 5 * n);
    for (int i = 0; i < 5; i++)
        assert_memory_equal(b.data + (size_t)i * n, one, n);
    par_buf_free(&b);
    par_metrics_registry_free(r);
}

static void test_a_failing_collector_breaks_nothing_else(void **state)
{
    (void)state;
    par_metrics_registry_t *r = NULL;
    assert_int_equal(par_metrics_registry_new(&r), PAR_OK);
    int one = 1;
    assert_int_equal(par_metrics_register(r, collect_a, &one), PAR_OK);
    assert_int_equal(par_metrics_register(r, collect_fails, NULL), PAR_OK);
    assert_int_equal(par_metrics_register(r, collect_c, NULL), PAR_OK);
    g_ncalls = 0;
    par_buf_t b;
    par_buf_init(&b, 0);
    assert_int_equal(par_metrics_render(r, &b), PAR_E_NO_MEMORY);
    assert_int_equal(g_ncalls, 3);
    assert_memory_equal(g_calls, "afc", 3);
    par_buf_terminate(&b);
    assert_string_equal(b.data,
                        "# HELP a_total A things.\n# TYPE a_total counter\na_total 1\nc 1\n");
    par_buf_free(&b);
    par_metrics_registry_free(r);
}

static void test_empty_registry_renders_nothing(void **state)
{
    (void)state;
    par_metrics_registry_t *r = NULL;
    assert_int_equal(par_metrics_registry_new(&r), PAR_OK);
    par_buf_t b;
    par_buf_init(&b, 0);
    assert_int_equal(par_metrics_render(r, &b), PAR_OK);
    assert_int_equal(b.len, 0);
    par_buf_free(&b);
    par_metrics_registry_free(r);
    par_metrics_registry_free(NULL);
}

static void test_server_families(void **state)
{
    (void)state;
    par_metrics_http("invoke", 200);
    par_metrics_http("invoke", 200);
    par_metrics_http("nonsense", 999);
    par_metrics_registry_poll("not_modified");
    par_buf_t b;
    par_buf_init(&b, 0);
    assert_int_equal(par_metrics_collect_server(&b, NULL), PAR_OK);
    par_buf_terminate(&b);
    assert_non_null(strstr(b.data, "# HELP par_http_requests_total HTTP responses by route and "
                                   "status code.\n# TYPE par_http_requests_total counter\n"));
    assert_non_null(strstr(b.data, "par_http_requests_total{route=\"invoke\",code=\"200\"} 2\n"));
    assert_non_null(strstr(b.data, "par_http_requests_total{route=\"other\",code=\"other\"} 1\n"));
    assert_non_null(strstr(b.data, "par_registry_poll_total{result=\"not_modified\"} 1\n"));
    assert_non_null(
        strstr(b.data, "par_package_load_seconds_bucket{phase=\"fetch\",le=\"+Inf\"} 0\n"));
    /* no readiness yet: no cold start sample */
    assert_null(strstr(b.data, "par_cold_start_seconds"));
    /* the families come in a fixed order */
    assert_true(strstr(b.data, "par_http_requests_total") < strstr(b.data, "par_package_load") &&
                strstr(b.data, "par_package_load") < strstr(b.data, "par_registry_poll_total"));
    par_buf_free(&b);
    par_buf_init(&b, 0);
    assert_int_equal(par_metrics_collect_process(&b, NULL), PAR_OK);
    par_buf_terminate(&b);
    assert_non_null(strstr(b.data, "par_build_info{version=\""));
    assert_non_null(strstr(b.data, "# TYPE process_open_fds gauge\n"));
    par_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collectors_in_order),
        cmocka_unit_test(test_a_failing_collector_breaks_nothing_else),
        cmocka_unit_test(test_empty_registry_renders_nothing),
        cmocka_unit_test(test_server_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
