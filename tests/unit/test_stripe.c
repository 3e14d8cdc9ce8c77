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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_bill_one_per_invocation),
        cmocka_unit_test(test_failures_are_not_billed_by_default),
        cmocka_unit_test(test_mappings),
        cmocka_unit_test(test_config_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
