/* Unit tests for core/proto.c: worker frame encoding and decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/proto.h"

static size_t build(uint8_t *buf, uint8_t type, uint64_t id, const char *h, const char *b)
{
    size_t hl = strlen(h), bl = strlen(b);
    par_proto_encode(buf, type, id, (uint32_t)hl, (uint32_t)bl);
    memcpy(buf + PAR_PROTO_HEADER_SIZE, h, hl);
    memcpy(buf + PAR_PROTO_HEADER_SIZE + hl, b, bl);
    return PAR_PROTO_HEADER_SIZE + hl + bl;
}

static void test_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = build(buf, PAR_FRAME_INVOKE, 0x123456789abcdefULL, "{\"x\":0}", "[1,2]");
    par_frame_t f;
    size_t used = 0;
    const char *err = NULL;
    assert_int_equal(par_proto_decode(buf, n, 1024, &f, &used, &err), 1);
    assert_int_equal(used, n);
    assert_int_equal(f.type, PAR_FRAME_INVOKE);
    assert_true(f.id == 0x123456789abcdefULL);
    assert_int_equal(f.header_len, 7);
    assert_memory_equal(f.header, "{\"x\":0}", 7);
    assert_int_equal(f.body_len, 5);
    assert_memory_equal(f.body, "[1,2]", 5);
    /* little-endian layout on the wire */
    assert_int_equal(buf[0], PAR_FRAME_INVOKE);
    assert_int_equal(buf[1], PAR_PROTO_VERSION);
    assert_int_equal(buf[4], 7);
    assert_int_equal(buf[8], 5);
    assert_int_equal(buf[16], 0xef);
}

static void test_partial_and_pipelined(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t a = build(buf, PAR_FRAME_RESULT, 1, "", "\"one\"");
    size_t b = build(buf + a, PAR_FRAME_RESULT, 2, "{}", "\"two\"");
    par_frame_t f;
    size_t used;
    const char *err;
    for (size_t cut = 0; cut < a; cut++)
        assert_int_equal(par_proto_decode(buf, cut, 1024, &f, &used, &err), 0);
    assert_int_equal(par_proto_decode(buf, a + b, 1024, &f, &used, &err), 1);
    assert_int_equal(f.id, 1);
    assert_int_equal(par_proto_decode(buf + used, a + b - used, 1024, &f, &used, &err), 1);
    assert_int_equal(f.id, 2);
    assert_memory_equal(f.body, "\"two\"", 5);
}

static void test_rejects(void **state)
{
    (void)state;
    uint8_t buf[256];
    par_frame_t f;
    size_t used;
    const char *err = NULL;
    size_t n = build(buf, PAR_FRAME_RESULT, 1, "", "12345");
    assert_int_equal(par_proto_decode(buf, n, 4, &f, &used, &err), -1);
    assert_string_equal(err, "frame body too large");
    buf[1] = 9;
    assert_int_equal(par_proto_decode(buf, n, 1024, &f, &used, &err), -1);
    assert_string_equal(err, "unsupported protocol version");
    build(buf, PAR_FRAME_RESULT, 1, "", "");
    buf[0] = 0;
    assert_int_equal(par_proto_decode(buf, PAR_PROTO_HEADER_SIZE, 1024, &f, &used, &err), -1);
    buf[0] = 77;
    assert_int_equal(par_proto_decode(buf, PAR_PROTO_HEADER_SIZE, 1024, &f, &used, &err), -1);
    assert_string_equal(err, "unknown frame type");
    par_proto_encode(buf, PAR_FRAME_LOG, 1, PAR_PROTO_MAX_JSON_HEADER + 1, 0);
    assert_int_equal(par_proto_decode(buf, PAR_PROTO_HEADER_SIZE, 1024, &f, &used, &err), -1);
    assert_string_equal(err, "frame JSON header too large");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(par_proto_type_name(PAR_FRAME_HELLO), "HELLO");
    assert_string_equal(par_proto_type_name(PAR_FRAME_CANCEL), "CANCEL");
    assert_string_equal(par_proto_type_name(PAR_FRAME_SANDBOX), "SANDBOX");
    assert_string_equal(par_proto_type_name(PAR_FRAME_TYPE_MAX + 1), "?");
    assert_string_equal(par_proto_type_name(0), "?");
}

static int event_ok(const char *type, const char *data, size_t max, const char *why_has)
{
    char why[256] = "";
    int rc = par_proto_event_check(type, type ? strlen(type) : 0, data, data ? strlen(data) : 0,
                                   max, why, sizeof(why));
    if (why_has)
        assert_non_null(strstr(why, why_has));
    return rc == 0;
}

static void test_event_rules(void **state)
{
    (void)state;
    char t64[65], t65[66];
    memset(t64, 'a', 64), t64[64] = '\0';
    memset(t65, 'a', 65), t65[65] = '\0';
    assert_true(event_ok("data", "1", 10, NULL));
    assert_true(event_ok("run.step:x_1-Z", " {\"a\": [1, null]} ", 100, NULL));
    assert_true(event_ok(t64, "\"s\"", 10, NULL));
    assert_true(event_ok("t", "1234567890", 10, NULL)); /* exactly the cap */
    assert_false(event_ok(t65, "1", 10, "65 characters"));
    assert_false(event_ok("", "1", 10, "0 characters"));
    assert_false(event_ok(NULL, "1", 10, "0 characters"));
    assert_false(event_ok("a b", "1", 10, "at offset 1"));
    assert_false(event_ok("a/b", "1", 10, "outside"));
    assert_false(event_ok("t", "12345678901", 10, "over the cap of 10 bytes"));
    assert_false(event_ok("t", "", 10, "not one JSON value"));
    assert_false(event_ok("t", "1 2", 10, "not one JSON value"));
    assert_false(event_ok("t", "{\"a\":", 10, "byte 5"));
    assert_false(event_ok("t", NULL, 10, "not one JSON value"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip),
                                       cmocka_unit_test(test_partial_and_pipelined),
                                       cmocka_unit_test(test_rejects), cmocka_unit_test(test_names),
                                       cmocka_unit_test(test_event_rules)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
