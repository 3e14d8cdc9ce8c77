/*
 * Unit tests of the OTLP exporter plugin's parts (plugins/otlp/): the JSON
 * encoding against OTLP's shapes, the configuration's loud errors, Retry-After.
 * The sender and its queue are tested end to end (tests/e2e/test_otlp.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/plugin.h>

#include "otlp.h"

static json_t *conf_of(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    return j;
}

static otlp_config_t parse_ok(const char *text)
{
    otlp_config_t c;
    char err[256] = "";
    json_t *j = conf_of(text);
    int rc = otlp_config_parse(j, &c, err, sizeof(err));
    json_decref(j);
    if (rc != 0)
        fail_msg("%s", err);
    return c;
}

static void parse_fails(const char *text, const char *expect)
{
    otlp_config_t c;
    char err[256] = "";
    json_t *j = text ? conf_of(text) : NULL;
    assert_int_equal(otlp_config_parse(j, &c, err, sizeof(err)), -1);
    json_decref(j);
    if (!strstr(err, expect))
        fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

static void config_defaults_and_urls(void **state)
{
    setenv("PAR_TEST_OTLP_AUTH", "Bearer t0k", 1);
    otlp_config_t c = parse_ok("{\"endpoint\": \"http://127.0.0.1:4318/\"}");
    assert_string_equal(c.endpoint, "http://127.0.0.1:4318");
    assert_string_equal(c.traces_url, "http://127.0.0.1:4318/v1/traces");
    assert_string_equal(c.metrics_url, "http://127.0.0.1:4318/v1/metrics");
    assert_string_equal(c.service_name, "par");
    assert_int_equal(c.timeout_ms, 10000);
    assert_int_equal(c.batch_size, 512);
    assert_int_equal(c.queue_size, 2048);
    assert_true(c.spans && c.metrics);
    assert_null(c.headers[0]);
    otlp_config_free(&c);

    c = parse_ok("{\"endpoint\": \"https://otel.example/base\", \"queue_size\": 4, "
                 "\"headers\": {\"x-api-key\": \"k1\"}, \"resource\": {\"region\": \"eu\"}, "
                 "\"spans\": false, \"headers_env\": {\"authorization\": \"PAR_TEST_OTLP_AUTH\"}}");
    assert_string_equal(c.traces_url, "https://otel.example/base/v1/traces");
    assert_string_equal(c.headers[1], "authorization: Bearer t0k");
    assert_int_equal(c.queue_size, 4);
    assert_string_equal(c.headers[0], "x-api-key: k1");
    assert_string_equal(json_string_value(json_object_get(c.resource, "region")), "eu");
    assert_false(c.spans);
    otlp_config_free(&c);
}

static void config_mistakes_are_named(void **state)
{
    parse_fails(NULL, "config.endpoint: required");
    parse_fails("[]", "must be a map");
    parse_fails("{\"endpoint\": \"http://a:1\", \"endpiont\": 1}",
                "config.endpiont: unknown key (did you mean endpoint?)");
    parse_fails("{\"endpoint\": \"http://a:1\", \"zzz\": 1}", "config.zzz: unknown key; known");
    parse_fails("{\"endpoint\": \"ftp://a/\"}", "scheme must be http or https");
    parse_fails("{\"endpoint\": \"not a url\"}", "config.endpoint: \"not a url\"");
    parse_fails("{\"endpoint\": \"http://a:1/?x=1\"}", "no query");
    parse_fails("{\"endpoint\": 5}", "config.endpoint: must be a string");
    parse_fails("{\"endpoint\": \"http://a:1\", \"queue_size\": 0}",
                "config.queue_size: must be an integer from 1");
    parse_fails("{\"endpoint\": \"http://a:1\", \"timeout_ms\": \"5\"}", "config.timeout_ms");
    parse_fails("{\"endpoint\": \"http://a:1\", \"spans\": \"yes\"}", "config.spans");
    parse_fails("{\"endpoint\": \"http://a:1\", \"headers\": {\"a\": 1}}",
                "config.headers.a: must be a string");
    parse_fails("{\"endpoint\": \"http://a:1\", \"headers\": {\"a\": \"x\\r\\nEvil: 1\"}}",
                "config.headers.a");
    parse_fails(
        "{\"endpoint\": \"http://a:1\", \"headers_env\": {\"x-key\": \"PAR_TEST_UNSET_VAR\"}}",
        "config.headers_env.x-key: the environment variable PAR_TEST_UNSET_VAR is not set");
    parse_fails("{\"endpoint\": \"http://a:1\", \"backoff_min_ms\": 9, \"backoff_max_ms\": 5}",
                "must not exceed backoff_max_ms");
}

static json_t *first(json_t *doc, const char *outer, const char *inner, const char *key)
{
    json_t *r = json_array_get(json_object_get(doc, outer), 0);
    assert_non_null(r);
    json_t *s = json_array_get(json_object_get(r, inner), 0);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "scope"), "name")),
                        "par");
    return json_object_get(s, key);
}

static const char *attr(json_t *attrs, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_string_value(json_object_get(json_object_get(a, "value"), "stringValue"));
    }
    return NULL;
}

static void spans_encode_as_otlp_json(void **state)
{
    otlp_config_t c = parse_ok("{\"endpoint\": \"http://a:1\", \"service_name\": \"edge\", "
                               "\"resource\": {\"deployment.environment\": \"test\"}}");
    json_t *res = otlp_resource_new(&c, "1.2.3", "host-1");
    const char *attrs[] = {"par.request_id", "r-1", "par.package", NULL, NULL};
    otlp_span_in_t root = {.trace_id = "4BF92F3577B34DA6A3CE929D0E0E4736",
                           .span_id = "00f067aa0ba902b7",
                           .parent_id = "1111111111111111", /* from a traceparent */
                           .name = "whoami/via",
                           .start_ns = 1000,
                           .end_ns = 5000,
                           .attrs = attrs};
    otlp_span_in_t child = {.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                            .parent_id = "00f067aa0ba902b7",
                            .name = "whoami",
                            .error = "agent_error",
                            .sub_call = true,
                            .start_ns = 2000,
                            .end_ns = 1000};
    otlp_span_t *s[2] = {otlp_span_new(&root), otlp_span_new(&child)};
    size_t len = 0;
    char *body = otlp_encode_traces(res, s, 2, "0.1.0", &len);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    json_t *doc = conf_of(body);
    json_t *rattrs = json_object_get(
        json_object_get(json_array_get(json_object_get(doc, "resourceSpans"), 0), "resource"),
        "attributes");
    assert_string_equal(attr(rattrs, "service.name"), "edge");
    assert_string_equal(attr(rattrs, "service.version"), "1.2.3");
    assert_string_equal(attr(rattrs, "deployment.environment"), "test");
    json_t *spans = first(doc, "resourceSpans", "scopeSpans", "spans");
    assert_int_equal(json_array_size(spans), 2);
    json_t *a = json_array_get(spans, 0), *b = json_array_get(spans, 1);
    /* ids: lowercase hex; times: decimal strings; a root from a traceparent is SERVER */
    assert_string_equal(json_string_value(json_object_get(a, "traceId")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(json_string_value(json_object_get(a, "spanId")), "00f067aa0ba902b7");
    assert_string_equal(json_string_value(json_object_get(a, "parentSpanId")), "1111111111111111");
    assert_int_equal(json_integer_value(json_object_get(a, "kind")), OTLP_SPAN_KIND_SERVER);
    assert_string_equal(json_string_value(json_object_get(a, "startTimeUnixNano")), "1000");
    assert_string_equal(json_string_value(json_object_get(a, "endTimeUnixNano")), "5000");
    assert_string_equal(json_string_value(json_object_get(a, "name")), "whoami/via");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "status"), "code")),
                     OTLP_STATUS_OK);
    assert_string_equal(attr(json_object_get(a, "attributes"), "par.request_id"), "r-1");
    assert_null(attr(json_object_get(a, "attributes"), "par.package")); /* NULL value: left out */
    assert_string_equal(json_string_value(json_object_get(b, "parentSpanId")), "00f067aa0ba902b7");
    assert_int_equal(strlen(json_string_value(json_object_get(b, "spanId"))), 16);
    assert_int_equal(json_integer_value(json_object_get(b, "kind")), OTLP_SPAN_KIND_INTERNAL);
    /* an end before the start is clamped to the start */
    assert_string_equal(json_string_value(json_object_get(b, "endTimeUnixNano")), "2000");
    json_t *st = json_object_get(b, "status");
    assert_int_equal(json_integer_value(json_object_get(st, "code")), OTLP_STATUS_ERROR);
    assert_string_equal(json_string_value(json_object_get(st, "message")), "agent_error");
    json_decref(doc);
    free(body);
    free(s[0]);
    free(s[1]);
    json_decref(res);
    otlp_config_free(&c);
}

static void foreign_trace_ids_are_hashed_consistently(void **state)
{
    otlp_span_in_t in = {.trace_id = "my-trace", .name = "x"};
    otlp_span_t *a = otlp_span_new(&in), *b = otlp_span_new(&in);
    in.trace_id = "other";
    otlp_span_t *c = otlp_span_new(&in);
    in.trace_id = "00000000000000000000000000000000"; /* invalid in OTLP: hashed too */
    otlp_span_t *d = otlp_span_new(&in);
    assert_int_equal(strlen(a->trace_id), 32);
    assert_string_equal(a->trace_id, b->trace_id);
    assert_string_not_equal(a->trace_id, c->trace_id);
    assert_string_not_equal(d->trace_id, "00000000000000000000000000000000");
    assert_string_not_equal(a->span_id, b->span_id); /* fresh span ids */
    free(a);
    free(b);
    free(c);
    free(d);
}

/* Ids are taken as they are only when they are exactly 32 or 16 hex
 * digits, not all zeros; uppercase is lowered; one byte outside [0-9a-fA-F]
 * anywhere (the bounds of each range, each 8-byte step) refuses the id. */
static void ids_are_checked_at_every_byte(void **state)
{
    (void)state;
    const char *good = "0af7651916cd43dd8448eb211c80319c";
    otlp_span_in_t in = {.trace_id = good, .span_id = "b7ad6b7169203331", .name = "x"};
    otlp_span_t *s = otlp_span_new(&in);
    assert_string_equal(s->trace_id, good);
    assert_string_equal(s->span_id, "b7ad6b7169203331");
    free(s);
    in.trace_id = "0AF7651916CD43DD8448EB211C80319C";
    in.span_id = "B7AD6B716920333F";
    s = otlp_span_new(&in);
    assert_string_equal(s->trace_id, good);
    assert_string_equal(s->span_id, "b7ad6b716920333f");
    free(s);
    static const char bad[] = {'/', ':', '@', 'G', '`', 'g', ' ', '\x80', '\xff'};
    for (size_t at = 0; at < 16; at++) {
        for (size_t k = 0; k < sizeof(bad); k++) {
            char id[17] = "b7ad6b7169203331";
            id[at] = bad[k];
            in.trace_id = good;
            in.span_id = id;
            s = otlp_span_new(&in);
            assert_string_not_equal(s->span_id, id); /* a fresh one instead */
            assert_int_equal(strlen(s->span_id), 16);
            free(s);
        }
    }
    const char *odd[] = {"b7ad6b716920333", "b7ad6b71692033310", "", "0000000000000000"};
    for (size_t k = 0; k < sizeof(odd) / sizeof(*odd); k++) {
        in.span_id = in.parent_id = odd[k];
        s = otlp_span_new(&in);
        assert_string_not_equal(s->span_id, odd[k]);
        assert_string_equal(s->parent_span_id, ""); /* no parent */
        free(s);
    }
}

/* The value of attribute `key` of a span, or NULL. */
static const char *attr_of(const otlp_span_t *s, const char *key)
{
    for (size_t i = 0; s->attrs[i]; i += 2)
        if (strcmp(s->attrs[i], key) == 0)
            return s->attrs[i + 1];
    return NULL;
}

static void a_hashed_trace_id_is_kept_as_an_attribute_when_asked(void **state)
{
    const char *attrs[] = {"par.agent", "echo", "par.tenant", NULL, "par.package", "echo", NULL};
    otlp_span_in_t in = {
        .trace_id = "my-trace", .name = "echo", .attrs = attrs, .keep_trace_id = true};
    otlp_span_t *a = otlp_span_new(&in);
    assert_string_equal(attr_of(a, "par.trace_id"), "my-trace");
    assert_string_equal(attr_of(a, "par.agent"), "echo");
    assert_string_equal(attr_of(a, "par.package"), "echo");
    assert_null(attr_of(a, "par.tenant"));            /* a NULL value is skipped */
    in.trace_id = "4BF92F3577B34DA6A3CE929D0E0E4736"; /* OTLP's shape: lowercased, not kept */
    otlp_span_t *b = otlp_span_new(&in);
    assert_string_equal(b->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_null(attr_of(b, "par.trace_id"));
    in.trace_id = "my-trace";
    in.keep_trace_id = false;
    otlp_span_t *c = otlp_span_new(&in);
    assert_null(attr_of(c, "par.trace_id"));
    assert_string_equal(a->trace_id, c->trace_id);
    free(a);
    free(b);
    free(c);
}

static void span_strings_are_escaped_and_made_utf8(void **state)
{
    otlp_config_t c = parse_ok("{\"endpoint\": \"http://a:1\"}");
    json_t *res = otlp_resource_new(&c, "1", NULL);
    const char *attrs[] = {"enduser.id", "caf\xc3\xa9 \xff\xc0\xaf|\xed\xa0\x80|\t", NULL};
    otlp_span_in_t in = {.trace_id = "t", .name = "a\"b\\c\nd", .error = "x\x01", .attrs = attrs};
    otlp_span_t *s = otlp_span_new(&in);
    size_t len;
    char *body = otlp_encode_traces(res, &s, 1, "v\"1", &len);
    json_t *doc = conf_of(body); /* jansson refuses bad JSON and bad UTF-8 */
    json_t *sp = json_array_get(first(doc, "resourceSpans", "scopeSpans", "spans"), 0);
    assert_string_equal(json_string_value(json_object_get(sp, "name")), "a\"b\\c\nd");
    assert_string_equal(attr(json_object_get(sp, "attributes"), "enduser.id"),
                        "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\t");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(sp, "status"), "message")), "x\x01");
    json_decref(doc);
    free(body);
    free(s);
    json_decref(res);
    otlp_config_free(&c);
}

/* Long strings go 8 bytes a step while they are plain: a byte to escape at
 * any place (in the first, a middle or the last, partial 8-byte step) is
 * still escaped, and nothing is lost or repeated around it. */
static void every_byte_of_a_long_string_is_escaped(void **state)
{
    otlp_config_t c = parse_ok("{\"endpoint\": \"http://a:1\"}");
    json_t *res = otlp_resource_new(&c, "1", NULL);
    static const char *const odd[] = {"\"", "\\", "\n", "\x01", "\x1f", "\xc3\xa9", "\x7f"};
    for (size_t k = 0; k < sizeof(odd) / sizeof(*odd); k++) {
        for (size_t at = 0; at < 21; at++) {
            char name[64];
            memset(name, 'a' + (char)(at % 26), sizeof(name));
            size_t n = strlen(odd[k]);
            memcpy(name + at, odd[k], n);
            name[at + n + (21 - at)] = '\0'; /* 21 + n bytes: a partial last step */
            otlp_span_in_t in = {.trace_id = "t", .name = name};
            otlp_span_t *s = otlp_span_new(&in);
            size_t len;
            char *body = otlp_encode_traces(res, &s, 1, "1", &len);
            json_t *doc = conf_of(body);
            json_t *sp = json_array_get(first(doc, "resourceSpans", "scopeSpans", "spans"), 0);
            assert_string_equal(json_string_value(json_object_get(sp, "name")), name);
            json_decref(doc);
            free(body);
            free(s);
        }
    }
    json_decref(res);
    otlp_config_free(&c);
}

static void metrics_encode_as_otlp_json(void **state)
{
    otlp_config_t c = parse_ok("{\"endpoint\": \"http://a:1\"}");
    json_t *res = otlp_resource_new(&c, "1", NULL), *ms = json_array();
    json_t *sum = otlp_metric_new("par_invocations_total", "calls", "1", "sum", true);
    const char *lab[] = {"agent", "echo", "status", "ok", NULL};
    assert_int_equal(otlp_point_number(otlp_metric_points(sum), lab, 10, 20, true, 7, 0), 0);
    json_t *gauge = otlp_metric_new("par_workers", "", "", "gauge", false);
    assert_int_equal(otlp_point_number(otlp_metric_points(gauge), NULL, 10, 20, false, 0, 2.5), 0);
    json_t *h = otlp_metric_new("par_invocation_duration_seconds", "d", "s", "histogram", false);
    const double bounds[] = {0.1, 1.0};
    const uint64_t cumulative[] = {2, 5};
    assert_int_equal(
        otlp_point_histogram(otlp_metric_points(h), lab, 10, 20, bounds, cumulative, 2, 6, 3.25),
        0);
    json_array_append_new(ms, sum);
    json_array_append_new(ms, gauge);
    json_array_append_new(ms, h);
    size_t len;
    char *body = otlp_encode_metrics(res, ms, "0.1.0", &len);
    json_t *doc = conf_of(body);
    json_t *got = first(doc, "resourceMetrics", "scopeMetrics", "metrics");
    assert_int_equal(json_array_size(got), 3);
    json_t *s = json_object_get(json_array_get(got, 0), "sum");
    assert_true(json_is_true(json_object_get(s, "isMonotonic")));
    assert_int_equal(json_integer_value(json_object_get(s, "aggregationTemporality")), 2);
    json_t *p = json_array_get(json_object_get(s, "dataPoints"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "asInt")), "7");
    assert_string_equal(json_string_value(json_object_get(p, "timeUnixNano")), "20");
    assert_string_equal(attr(json_object_get(p, "attributes"), "agent"), "echo");
    json_t *g = json_object_get(json_array_get(got, 1), "gauge");
    p = json_array_get(json_object_get(g, "dataPoints"), 0);
    assert_true(json_real_value(json_object_get(p, "asDouble")) == 2.5);
    json_t *hist = json_object_get(json_array_get(got, 2), "histogram");
    assert_int_equal(json_integer_value(json_object_get(hist, "aggregationTemporality")), 2);
    p = json_array_get(json_object_get(hist, "dataPoints"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "count")), "6");
    /* cumulative 2, 5, total 6 → per bucket 2, 3, 1 */
    json_t *bc = json_object_get(p, "bucketCounts");
    assert_int_equal(json_array_size(bc), 3);
    assert_string_equal(json_string_value(json_array_get(bc, 0)), "2");
    assert_string_equal(json_string_value(json_array_get(bc, 1)), "3");
    assert_string_equal(json_string_value(json_array_get(bc, 2)), "1");
    assert_int_equal(json_array_size(json_object_get(p, "explicitBounds")), 2);
    assert_true(json_real_value(json_object_get(p, "sum")) == 3.25);
    json_decref(doc);
    free(body);
    json_decref(ms);
    json_decref(res);
    otlp_config_free(&c);
}

static json_t *metric_named(json_t *ms, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0)
            return m;
    }
    fail_msg("no metric %s", name);
    return NULL;
}

static void snapshot_points_become_otlp_metrics(void **state)
{
    const par_metric_label_t ok[] = {{"agent", "echo"}, {"status", "ok"}};
    const par_metric_label_t b1[] = {{"agent", "echo"}, {"le", "0.1"}};
    const par_metric_label_t b2[] = {{"agent", "echo"}, {"le", "1"}};
    const par_metric_label_t binf[] = {{"agent", "echo"}, {"le", "+Inf"}};
    const par_metric_label_t echo[] = {{"agent", "echo"}};
    const par_metric_label_t other[] = {{"agent", "other"}, {"le", "+Inf"}};
    const char *c = "par_invocations_total", *h = "par_invocation_duration_seconds";
    const par_metric_point_t pts[] = {
        {c, c, "calls", PAR_METRIC_COUNTER, ok, 2, 7},
        {"process_cpu_seconds_total", "process_cpu_seconds_total", "cpu", PAR_METRIC_COUNTER, NULL,
         0, 0.25},
        {"par_cold_start_seconds", "par_cold_start_seconds", "", PAR_METRIC_GAUGE, NULL, 0, 3},
        {h, "par_invocation_duration_seconds_bucket", "d", PAR_METRIC_HISTOGRAM, b1, 2, 2},
        {h, "par_invocation_duration_seconds_bucket", "d", PAR_METRIC_HISTOGRAM, b2, 2, 5},
        {h, "par_invocation_duration_seconds_bucket", "d", PAR_METRIC_HISTOGRAM, binf, 2, 6},
        {h, "par_invocation_duration_seconds_sum", "d", PAR_METRIC_HISTOGRAM, echo, 1, 1.5},
        {h, "par_invocation_duration_seconds_count", "d", PAR_METRIC_HISTOGRAM, echo, 1, 6},
        {h, "par_invocation_duration_seconds_bucket", "d", PAR_METRIC_HISTOGRAM, other, 2, 0},
    };
    json_t *ms = otlp_metrics_from_points(pts, sizeof(pts) / sizeof(pts[0]), 5, 9);
    assert_int_equal(json_array_size(ms), 4);
    json_t *sum = json_object_get(metric_named(ms, c), "sum");
    assert_true(json_is_true(json_object_get(sum, "isMonotonic")));
    json_t *p = json_array_get(json_object_get(sum, "dataPoints"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "asInt")), "7");
    assert_string_equal(json_string_value(json_object_get(p, "startTimeUnixNano")), "5");
    assert_string_equal(attr(json_object_get(p, "attributes"), "status"), "ok");
    json_t *cpu = metric_named(ms, "process_cpu_seconds_total");
    assert_string_equal(json_string_value(json_object_get(cpu, "unit")), "s");
    p = json_array_get(json_object_get(json_object_get(cpu, "sum"), "dataPoints"), 0);
    assert_true(json_real_value(json_object_get(p, "asDouble")) == 0.25);
    assert_non_null(json_object_get(metric_named(ms, "par_cold_start_seconds"), "gauge"));
    json_t *hist = json_object_get(metric_named(ms, h), "histogram");
    json_t *hp = json_object_get(hist, "dataPoints");
    assert_int_equal(json_array_size(hp), 2); /* one per agent */
    p = json_array_get(hp, 0);
    assert_null(attr(json_object_get(p, "attributes"), "le"));
    assert_string_equal(attr(json_object_get(p, "attributes"), "agent"), "echo");
    assert_string_equal(json_string_value(json_object_get(p, "count")), "6");
    assert_true(json_real_value(json_object_get(p, "sum")) == 1.5);
    json_t *bc = json_object_get(p, "bucketCounts");
    assert_int_equal(json_array_size(bc), 3);
    assert_string_equal(json_string_value(json_array_get(bc, 1)), "3");
    assert_string_equal(json_string_value(json_array_get(bc, 2)), "1");
    json_decref(ms);
}

static void retry_after_forms(void **state)
{
    assert_int_equal(otlp_parse_retry_after(" 3\r\n", 0), 3000);
    assert_int_equal(otlp_parse_retry_after("0", 0), 0);
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
    assert_int_equal(otlp_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), 7000);
    assert_int_equal(otlp_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111999), 0);
    assert_int_equal(otlp_parse_retry_after("soon", 0), -1);
    assert_int_equal(otlp_parse_retry_after("-4", 0), -1);
}

/* A span encoded from a view (the exporter's path: strings borrowed, no
 * allocation) is byte for byte the span encoded from its own copy, for a
 * hashed trace id kept as an attribute and for escaped strings too. */
static void a_span_view_encodes_as_its_copy(void **state)
{
    (void)state;
    const char *attrs[] = {"par.request_id", "r-\"1", "par.package", NULL,
                           "enduser.id",     "\xff",  NULL};
    otlp_span_in_t in = {.trace_id = "run-42",
                         .span_id = "00F067AA0BA902B7",
                         .parent_id = "bad",
                         .name = "whoami/via",
                         .error = "agent_error",
                         .keep_trace_id = true,
                         .start_ns = 7,
                         .end_ns = 9,
                         .attrs = attrs};
    otlp_span_t *own = otlp_span_new(&in);
    otlp_span_view_t v;
    const otlp_span_t *view = otlp_span_view(&in, &v);
    assert_non_null(own);
    assert_non_null(view);
    otlp_buf_t a = {0}, b = {0};
    assert_int_equal(otlp_encode_span(&a, own), 0);
    assert_int_equal(otlp_encode_span(&b, view), 0);
    assert_string_equal(a.p, b.p);
    assert_non_null(strstr(b.p, "\"par.trace_id\""));
    free(a.p);
    free(b.p);
    free(own);
    /* more attributes than a view holds: NULL (the exporter copies then) */
    const char *many[80];
    for (size_t i = 0; i < 78; i++)
        many[i] = "x";
    many[78] = NULL;
    in.attrs = many;
    assert_null(otlp_span_view(&in, &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_defaults_and_urls),
        cmocka_unit_test(config_mistakes_are_named),
        cmocka_unit_test(spans_encode_as_otlp_json),
        cmocka_unit_test(foreign_trace_ids_are_hashed_consistently),
        cmocka_unit_test(ids_are_checked_at_every_byte),
        cmocka_unit_test(a_hashed_trace_id_is_kept_as_an_attribute_when_asked),
        cmocka_unit_test(span_strings_are_escaped_and_made_utf8),
        cmocka_unit_test(every_byte_of_a_long_string_is_escaped),
        cmocka_unit_test(a_span_view_encodes_as_its_copy),
        cmocka_unit_test(metrics_encode_as_otlp_json),
        cmocka_unit_test(snapshot_points_become_otlp_metrics),
        cmocka_unit_test(retry_after_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
