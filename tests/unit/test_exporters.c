/*
 * Unit tests for the telemetry-exporter registry (runtime/exporters.c): the
 * built-in Prometheus scrape entry comes first and renders what /metrics and
 * par_runtime_metrics serve; entries added after it are found by name, a
 * taken name is refused with its message, and push entries receive finished
 * calls. A real runtime with no package.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <par/par.h>

#include "runtime/exporters.h"

static char dir[64];
static par_runtime_t *rt;
static int finished_calls;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/par-test-exporters-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char text[256];
    snprintf(text, sizeof(text), "state_dir: %s/var\ntrust:\n  require_signatures: false\n", dir);
    char *err = NULL;
    assert_int_equal(par_runtime_new_from_config(NULL, text, strlen(text), &rt, &err), PAR_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    par_runtime_destroy(rt);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void the_prometheus_entry_is_first_and_renders_the_scrape(void **state)
{
    (void)state;
    assert_int_equal(par__exporters_count(rt), 1);
    const par_exporter_impl_t *e = par__exporters_at(rt, 0);
    assert_string_equal(e->name, "prometheus");
    assert_ptr_equal(par__exporters_scrape(rt), e);
    assert_ptr_equal(par__exporters_find(rt, "prometheus"), e);
    assert_null(e->finished);
    assert_string_equal(e->content_type, "text/plain; version=0.0.4; charset=utf-8");
    par_buf_t b;
    par_buf_init(&b, 0);
    assert_int_equal(e->scrape(e, rt, &b), PAR_OK);
    par_buf_append(&b, "", 1);
    assert_non_null(strstr(b.data, "# TYPE par_invocations_total counter"));
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(par_runtime_metrics(rt, &text, &len), PAR_OK); /* through the entry */
    assert_non_null(strstr(text, "# TYPE par_invocations_total counter"));
    free(text);
    par_buf_free(&b);
}

static void count_finished(const par_exporter_impl_t *e, const par_call_t *c)
{
    (void)e, (void)c;
    finished_calls++;
}

static void entries_follow_by_name_and_push_entries_get_calls(void **state)
{
    (void)state;
    static const par_exporter_impl_t push = {.name = "plugin:x", .finished = count_finished};
    static const par_exporter_impl_t metrics_only = {.name = "plugin:y"};
    par_buf_t err, names;
    par_buf_init(&err, 0);
    par_buf_init(&names, 0);
    assert_int_equal(rt->npush, 0);
    assert_int_equal(par__exporters_add(rt, &push, &err), PAR_OK);
    assert_int_equal(par__exporters_add(rt, &metrics_only, &err), PAR_OK);
    assert_int_equal(rt->npush, 1);
    assert_int_equal(par__exporters_add(rt, &push, &err), PAR_E_CONFLICT);
    par_buf_append(&err, "", 1);
    assert_string_equal(err.data, "a telemetry exporter named 'plugin:x' is registered already");
    par__exporters_names(rt, &names);
    par_buf_append(&names, "", 1);
    assert_string_equal(names.data, "prometheus, plugin:x, plugin:y");
    assert_ptr_equal(par__exporters_find(rt, "plugin:y"), &metrics_only);
    assert_null(par__exporters_find(rt, "plugin:z"));
    assert_string_equal(par__exporters_scrape(rt)->name, "prometheus"); /* still the scrape */
    par_call_t call;
    memset(&call, 0, sizeof(call));
    par__exporters_finished(rt, &call);
    assert_int_equal(finished_calls, 1);
    par_buf_free(&err);
    par_buf_free(&names);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_prometheus_entry_is_first_and_renders_the_scrape),
        cmocka_unit_test(entries_follow_by_name_and_push_entries_get_calls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
