/*
 * Unit tests of what the plugin host hands plugins: a `config:` block as
 * JSON (util/yaml.c par_yaml_to_json) and a metrics snapshot parsed into
 * points (plugin/points.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <par/par.h>
#include <par/plugin.h>

#include "util/yaml.h"

int par__plug_metrics_parse(char *text, par_metric_point_t **points, size_t *count,
                            par_metric_label_t **labels);

static char *to_json(const char *yaml)
{
    par_yaml_t y;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_yaml_load(&y, yaml, strlen(yaml), &err), PAR_OK);
    json_t *j = par_yaml_to_json(&y, par_yaml_root(&y));
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    par_yaml_free(&y);
    par_buf_free(&err);
    return s;
}

static void test_yaml_to_json(void **state)
{
    (void)state;
    char *s = to_json("a: 1\nb: -2.5\nc: true\nd: off\ne: ~\nf: '12'\ng: \"yes\"\n"
                      "h: [x, 10.0.0.0/8, {k: v}]\ni: 1e3\nj: 0x10\nk: ''\n");
    assert_string_equal(s, "{\"a\":1,\"b\":-2.5,\"c\":true,\"d\":false,\"e\":null,\"f\":\"12\","
                           "\"g\":\"yes\",\"h\":[\"x\",\"10.0.0.0/8\",{\"k\":\"v\"}],"
                           "\"i\":1000.0,\"j\":\"0x10\",\"k\":\"\"}");
    free(s);
}

static void test_metrics_points(void **state)
{
    (void)state;
    char text[] = "# HELP par_requests_total Requests.\n"
                  "# TYPE par_requests_total counter\n"
                  "par_requests_total{route=\"invoke\",code=\"200\"} 7\n"
                  "par_requests_total{route=\"a\\\"b\\\\c\"} 1\n"
                  "# HELP par_lat_seconds Latency.\n"
                  "# TYPE par_lat_seconds histogram\n"
                  "par_lat_seconds_bucket{le=\"+Inf\"} 3\n"
                  "par_lat_seconds_sum 0.25\n"
                  "par_up 1\n"
                  "broken{x=\"unterminated} 2\n";
    par_metric_point_t *p;
    par_metric_label_t *l;
    size_t n;
    assert_int_equal(par__plug_metrics_parse(text, &p, &n, &l), PAR_OK);
    assert_int_equal(n, 5); /* the broken line is skipped */
    assert_string_equal(p[0].family, "par_requests_total");
    assert_int_equal(p[0].type, PAR_METRIC_COUNTER);
    assert_string_equal(p[0].help, "Requests.");
    assert_int_equal(p[0].label_count, 2);
    assert_string_equal(p[0].labels[1].key, "code");
    assert_string_equal(p[0].labels[1].value, "200");
    assert_true(p[0].value == 7.0);
    assert_string_equal(p[1].labels[0].value, "a\"b\\c");
    assert_string_equal(p[2].name, "par_lat_seconds_bucket");
    assert_string_equal(p[2].family, "par_lat_seconds");
    assert_int_equal(p[2].type, PAR_METRIC_HISTOGRAM);
    assert_string_equal(p[2].labels[0].value, "+Inf");
    assert_true(p[3].value == 0.25 && p[3].label_count == 0);
    assert_string_equal(p[4].family, "par_up"); /* no TYPE: untyped, its own family */
    assert_int_equal(p[4].type, PAR_METRIC_UNTYPED);
    free(p);
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_to_json),
        cmocka_unit_test(test_metrics_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
