/* Unit tests for metering/stripe.c: the meter event a record maps to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "metering/stripe.h"

static json_t *record(void)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:{s:i}}", "id", "0123abcd", "agent", "echo/shout",
                     "tenant", "acme", "subject", "alice", "ts_ms", (json_int_t)1700000000123,
                     "duration_ms", 12.5, "units", "tokens", 42);
}

static void test_defaults_bill_one_per_invocation(void **state)
{
    (void)state;
    par_stripe_config_t c = {0};
    json_t *r = record();
    par_buf_t b, err;
    par_buf_init(&b, 0);
    par_buf_init(&err, 0);
    int skip;
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_OK);
    assert_int_equal(skip, 0);
    par_buf_append(&b, "", 1);
    assert_string_equal(b.data, "event_name=par_invocation&payload[stripe_customer_id]=acme&"
                                "payload[value]=1&identifier=0123abcd&timestamp=1700000000");
    par_buf_free(&b);
    par_buf_free(&err);
    json_decref(r);
}

static void test_failures_are_not_billed_by_default(void **state)
{
    (void)state;
    par_stripe_config_t c = {0};
    json_t *r = record();
    json_object_set_new(r, "status", json_string("agent_timeout"));
    par_buf_t b, err;
    par_buf_init(&b, 0);
    par_buf_init(&err, 0);
    int skip;
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_OK);
    assert_int_equal(skip, 1);
    assert_int_equal(b.len, 0);
    c.bill_failed = 1;
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_OK);
    assert_int_equal(skip, 0);
    assert_true(b.len > 0);
    json_object_set_new(r, "status", json_string("ok"));
    c.bill_failed = 0;
    par_buf_reset(&b);
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_OK);
    assert_int_equal(skip, 0);
    par_buf_free(&b);
    par_buf_free(&err);
    json_decref(r);
}

static void test_mappings(void **state)
{
    (void)state;
    par_stripe_config_t c = {0};
    c.value = (char *)"units.tokens";
    c.customer_field = (char *)"subject";
    c.customers = json_pack("{s:s}", "alice", "cus_A&B");
    c.event_names = json_pack("{s:s}", "echo/shout", "shouts");
    json_t *r = record();
    par_buf_t b, err;
    par_buf_init(&b, 0);
    par_buf_init(&err, 0);
    int skip;
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_OK);
    par_buf_append(&b, "", 1);
    assert_string_equal(b.data, "event_name=shouts&payload[stripe_customer_id]=cus_A%26B&"
                                "payload[value]=42&identifier=0123abcd&timestamp=1700000000");
    /* no units of that name: nothing to bill */
    par_buf_reset(&b);
    c.value = (char *)"units.images";
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_OK);
    assert_int_equal(skip, 1);
    /* a customer the table does not know: refused, with the reason */
    json_object_set_new(r, "subject", json_string("mallory"));
    c.value = (char *)"duration_ms";
    assert_int_equal(par_stripe_event_body(&c, r, &b, &skip, &err), PAR_E_NOT_FOUND);
    par_buf_append(&err, "", 1);
    assert_non_null(strstr(err.data, "subject 'mallory'"));
    par_buf_free(&b);
    par_buf_free(&err);
    json_decref(c.customers);
    json_decref(c.event_names);
    json_decref(r);
}

static void test_config_check(void **state)
{
    (void)state;
    par_stripe_config_t c = {0};
    par_buf_t err;
    par_buf_init(&err, 0);
    c.endpoint = (char *)"http://127.0.0.1:9";
    c.value = (char *)"units";
    assert_int_equal(par_stripe_config_check(&c, &err), PAR_E_INVALID_ARGUMENT);
    par_buf_append(&err, "", 1);
    assert_non_null(strstr(err.data, "no API key"));
    assert_non_null(strstr(err.data, "allow_http"));
    assert_non_null(strstr(err.data, "metering.stripe.value"));
    par_buf_reset(&err);
    c.api_key = (char *)"sk_test";
    c.allow_http = 1;
    c.value = (char *)"units.tokens";
    assert_int_equal(par_stripe_config_check(&c, &err), PAR_OK);
    par_buf_free(&err);
}

static void test_window_start_is_a_floor(void **state)
{
    (void)state;
    assert_int_equal(par_stripe_window_start(0, 60000), 0);
    assert_int_equal(par_stripe_window_start(59999, 60000), 0);
    assert_int_equal(par_stripe_window_start(60000, 60000), 60000);
    assert_int_equal(par_stripe_window_start(1700000000123, 60000), 1699999980000);
    assert_int_equal(par_stripe_window_start(-1, 60000), -60000); /* before 1970 */
    assert_int_equal(par_stripe_window_start(-60000, 60000), -60000);
}

static void test_window_identifier(void **state)
{
    (void)state;
    char a[PAR_WINDOW_ID_MAX], b[PAR_WINDOW_ID_MAX];
    par_stripe_window_id("node-1", "cus_a", "ev", 1700000040000, 0, a);
    par_stripe_window_id("node-1", "cus_a", "ev", 1700000040000, 0, b);
    assert_string_equal(a, b); /* deterministic: a re-send is deduplicated */
    assert_int_equal(strncmp(a, "w1700000040-0-", 14), 0);
    assert_int_equal(strlen(a), 14 + 32);
    assert_true(strlen(a) < 100); /* Stripe's limit */
    const char *other[][3] = {
        {"node-2", "cus_a", "ev"}, {"node-1", "cus_b", "ev"}, {"node-1", "cus_a", "ev2"}};
    for (size_t i = 0; i < 3; i++) {
        par_stripe_window_id(other[i][0], other[i][1], other[i][2], 1700000040000, 0, b);
        assert_string_not_equal(a + 14, b + 14);
    }
    par_stripe_window_id("node-1", "cus_a", "ev", 1700000100000, 0, b);
    assert_string_not_equal(a + 14, b + 14);
    par_stripe_window_id("node-1", "cus_a", "ev", 1700000040000, 1, b); /* a late part */
    assert_int_equal(strncmp(b, "w1700000040-1-", 14), 0);
    assert_string_not_equal(a + 14, b + 14);
    /* fields are separated: moving a character from one to the next changes it */
    par_stripe_window_id("node-1c", "us_a", "ev", 1700000040000, 0, b);
    assert_string_not_equal(a + 14, b + 14);
}

static void test_window_body(void **state)
{
    (void)state;
    json_t *row =
        json_pack("{s:s,s:s,s:I,s:f,s:s}", "customer", "cus_a b", "event", "ev", "window_start",
                  (json_int_t)1700000040000, "value", 1234.0, "identifier", "w1700000040-0-abc");
    par_buf_t b;
    par_buf_init(&b, 0);
    par_stripe_window_body(row, &b);
    par_buf_append(&b, "", 1);
    assert_string_equal(b.data, "event_name=ev&payload[stripe_customer_id]=cus_a%20b&"
                                "payload[value]=1234&identifier=w1700000040-0-abc&"
                                "timestamp=1700000040");
    par_buf_free(&b);
    json_decref(row);
}

static void test_record_value(void **state)
{
    (void)state;
    par_stripe_config_t c = {0};
    c.value = (char *)"units.tokens";
    json_t *r = record();
    const char *cust, *ev;
    double v;
    int skip;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_stripe_record_value(&c, r, &cust, &ev, &v, &skip, &err), PAR_OK);
    assert_string_equal(cust, "acme");
    assert_string_equal(ev, "par_invocation");
    assert_true(v == 42 && skip == 0);
    c.aggregate = 1;
    c.window_ms = 500; /* under a second: refused */
    c.api_key = (char *)"sk";
    assert_int_not_equal(par_stripe_config_check(&c, &err), PAR_OK);
    assert_non_null(strstr(err.data, "aggregate"));
    c.window_ms = 60000;
    c.node_id = (char *)"n1";
    par_buf_reset(&err);
    assert_int_equal(par_stripe_config_check(&c, &err), PAR_OK);
    par_buf_free(&err);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_bill_one_per_invocation),
        cmocka_unit_test(test_failures_are_not_billed_by_default),
        cmocka_unit_test(test_mappings),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_window_start_is_a_floor),
        cmocka_unit_test(test_window_identifier),
        cmocka_unit_test(test_window_body),
        cmocka_unit_test(test_record_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
