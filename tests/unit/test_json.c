/* Unit tests for util/json.c (the hot-path validator, field locator and string
 * decoder) and par_buf_append_i64. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "util/buf.h"
#include "util/json.h"

static int valid(const char *s)
{
    return par_json_scan(s, strlen(s), NULL, 0, NULL) == 0;
}

static void test_valid_documents(void **state)
{
    (void)state;
    const char *ok[] = {"0",
                        "-0",
                        "1.5e10",
                        "-12.34E-5",
                        "\"\"",
                        "\"a\\u00e9\\n\\\"\"",
                        "true",
                        "false",
                        "null",
                        "[]",
                        "{}",
                        " [1, {\"a\": [null]}] ",
                        "{\"a\":1,\"a\":2}",
                        "\"caf\xc3\xa9\""};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        assert_true(valid(ok[i]));
}

static void test_invalid_documents(void **state)
{
    (void)state;
    const char *bad[] = {
        "",        " ",     "01",      "1.",        ".5",   "-",          "1e",
        "+1",      "\"abc", "\"\\x\"", "\"\\u12\"", "[1,]", "{\"a\":1,}", "{a:1}",
        "{'a':1}", "[1 2]", "tru",     "nul",       "1 2",  "{\"a\"}",    "\"tab\there\"",
        "[",       "]",     "{\"a\":}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_false(valid(bad[i]));
}

static void test_depth_cap(void **state)
{
    (void)state;
    char deep[2 * (PAR_JSON_MAX_DEPTH + 1) + 1];
    memset(deep, '[', PAR_JSON_MAX_DEPTH + 1);
    memset(deep + PAR_JSON_MAX_DEPTH + 1, ']', PAR_JSON_MAX_DEPTH + 1);
    deep[sizeof(deep) - 1] = '\0';
    assert_false(valid(deep));
    deep[PAR_JSON_MAX_DEPTH] = ' ';
    deep[PAR_JSON_MAX_DEPTH + 1] = ' ';
    assert_true(valid(deep));
}

static void test_error_offset(void **state)
{
    (void)state;
    size_t off = 99;
    assert_int_equal(par_json_scan("{\"a\": x}", 8, NULL, 0, &off), -1);
    assert_int_equal(off, 6);
}

static void test_fields(void **state)
{
    (void)state;
    const char *doc = "{\"context\":{\"k\":[1]},\"input\": {\"input\":2} ,\"trace_id\":\"t\"}";
    par_json_field_t f[3] = {{"input", NULL, 0}, {"context", NULL, 0}, {"missing", NULL, 0}};
    assert_int_equal(par_json_scan(doc, strlen(doc), f, 3, NULL), 0);
    assert_int_equal(f[0].len, 11);
    assert_memory_equal(f[0].ptr, "{\"input\":2}", 11);
    assert_memory_equal(f[1].ptr, "{\"k\":[1]}", 9);
    assert_null(f[2].ptr);
    /* nested keys are not top-level fields */
    const char *nested = "{\"a\":{\"input\":1}}";
    assert_int_equal(par_json_scan(nested, strlen(nested), f, 1, NULL), 0);
    assert_null(f[0].ptr);
    /* an invalid document reports no fields */
    assert_int_equal(par_json_scan("{\"input\":1,", 11, f, 1, NULL), -1);
    assert_null(f[0].ptr);
}

/* A key written with escapes is the same key to jansson, to agents and to
 * proxies: the last `input` wins whichever way it was spelt. */
static void test_escaped_keys(void **state)
{
    (void)state;
    const char *doc = "{\"input\":1,\"in\\u0070ut\":2}";
    par_json_field_t f[1] = {{"input", NULL, 0}};
    assert_int_equal(par_json_scan(doc, strlen(doc), f, 1, NULL), 0);
    assert_int_equal(f[0].len, 1);
    assert_memory_equal(f[0].ptr, "2", 1);
    const char *other = "{\"in\\u0070ut\":3,\"inpu\\t\":4}";
    f[0].ptr = NULL;
    assert_int_equal(par_json_scan(other, strlen(other), f, 1, NULL), 0);
    assert_memory_equal(f[0].ptr, "3", 1);
}

static void test_root_type_and_trim(void **state)
{
    (void)state;
    assert_int_equal(par_json_root_type(" {}", 3), '{');
    assert_int_equal(par_json_root_type("-1", 2), '0');
    assert_int_equal(par_json_root_type("\"x\"", 3), '"');
    const char *p = " \n[1]\t ";
    size_t n = strlen(p);
    par_json_trim(&p, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "[1]", 3);
}

static void test_unescape(void **state)
{
    (void)state;
    char out[64];
    const char *plain = "\"user-1\"";
    assert_int_equal(par_json_unescape(plain, strlen(plain), out), 6);
    assert_string_equal(out, "user-1");
    const char *esc = "\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\u20ac\\ud83d\\ude00\"";
    assert_int_equal(par_json_unescape(esc, strlen(esc), out), 18);
    assert_string_equal(out, "a\"b\\c/d\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    /* the decoded string never outgrows its encoding, even for a lone surrogate */
    const char *lone = "\"\\ud800x\"";
    assert_int_equal(par_json_unescape(lone, strlen(lone), out), 4);
    assert_string_equal(out, "\xef\xbf\xbdx");
    assert_int_equal(par_json_unescape("\"\"", 2, out), 0);
    assert_string_equal(out, "");
    /* refused: not a string, a NUL, a bad escape, a cut-off escape */
    assert_int_equal(par_json_unescape("12", 2, out), -1);
    assert_int_equal(par_json_unescape("\"a\\u0000b\"", 10, out), -1);
    assert_int_equal(par_json_unescape("\"\\x\"", 4, out), -1);
    assert_int_equal(par_json_unescape("\"\\u12\"", 6, out), -1);
    assert_int_equal(par_json_unescape("\"\\\"", 3, out), -1);
}

static void test_append_i64(void **state)
{
    (void)state;
    par_buf_t b;
    par_buf_init(&b, 0);
    int64_t v[] = {0, 7, -1, 29998, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "%" PRId64, v[i]);
        par_buf_reset(&b);
        assert_int_equal(par_buf_append_i64(&b, v[i]), PAR_OK);
        par_buf_terminate(&b);
        assert_string_equal(b.data, want);
    }
    par_buf_free(&b);
}

/* A buffer started on caller storage moves to the heap when it outgrows it
 * and never frees or reallocates the caller's storage. */
static void test_buf_on_storage(void **state)
{
    (void)state;
    char storage[16];
    par_buf_t b;
    par_buf_init_on(&b, storage, sizeof(storage), 0);
    assert_int_equal(par_buf_appends(&b, "0123456789"), PAR_OK);
    assert_ptr_equal(b.data, storage);
    char big[3000];
    memset(big, 'x', sizeof(big));
    assert_int_equal(par_buf_append(&b, big, sizeof(big)), PAR_OK);
    assert_ptr_not_equal(b.data, storage);
    assert_int_equal(b.len, 10 + sizeof(big));
    assert_memory_equal(b.data, "0123456789xxx", 13);
    par_buf_free(&b); /* the heap copy */

    par_buf_init_on(&b, storage, sizeof(storage), 0);
    assert_int_equal(par_buf_appends(&b, "short"), PAR_OK);
    size_t n = 0;
    char *d = par_buf_steal(&b, &n); /* a heap copy the caller frees */
    assert_non_null(d);
    assert_ptr_not_equal(d, storage);
    assert_int_equal(n, 5);
    assert_string_equal(d, "short");
    free(d);
    par_buf_free(&b);
}

static void test_hex_and_decimal(void **state)
{
    (void)state;
    unsigned char b[3];
    assert_int_equal(par_hex_decode("00aF7e", b, 3), 0);
    assert_memory_equal(b, "\x00\xaf\x7e", 3);
    assert_int_equal(par_hex_decode("0g", b, 1), -1);
    assert_int_equal(par_hex_decode("x0", b, 1), -1);
    char out[24], *e = par_dec_u64(out, 0);
    assert_int_equal(e - out, 1);
    assert_memory_equal(out, "0", 1);
    e = par_dec_u64(out, UINT64_MAX);
    assert_int_equal(e - out, 20);
    assert_memory_equal(out, "18446744073709551615", 20);
    /* \u escapes read either case */
    char dec[8];
    assert_int_equal(par_json_unescape("\"\\u00E9\"", 8, dec), 2);
    assert_string_equal(dec, "\xc3\xa9");
}

/* Strings are well-formed UTF-8 and \\u escapes are never lone surrogates:
 * what jansson accepts, so the two never disagree on these inputs. */
static void test_utf8_and_surrogates(void **state)
{
    (void)state;
    const char *ok[] = {"\"\xc3\xa9\"",         "\"\xe2\x82\xac\"",  "\"\xf0\x9f\x98\x80\"",
                        "\"\xf4\x8f\xbf\xbf\"", "\"\xef\xbf\xbf\"",  "\"\\ud83d\\ude00\"",
                        "\"\\udbff\\udfff\"",   "\"\\ud7ff\\ue000\""};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        if (!valid(ok[i]))
            fail_msg("refused valid string #%zu", i);
    struct {
        const char *doc;
        size_t off;
    } bad[] = {{"\"\xff\"", 1},
               {"\"a\xc3\"", 2},
               {"\"\xc0\xaf\"", 1},
               {"\"\xc1\xbf\"", 1},
               {"\"\xe0\x80\xaf\"", 1},
               {"\"\xed\xa0\x80\"", 1},
               {"\"\xf0\x80\x80\xaf\"", 1},
               {"\"\xf4\x90\x80\x80\"", 1},
               {"\"\xf5\x80\x80\x80\"", 1},
               {"\"\x80\"", 1},
               {"\"\xe2\x82\"", 1},
               {"\"\\ud800\"", 1},
               {"\"x\\udc00\"", 2},
               {"\"\\ud800\\u0041\"", 1},
               {"\"\\ud800\\ud800\"", 1},
               {"[\"\\udfff\"]", 2},
               {"\"\\ud800x\"", 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        size_t off = 999;
        if (par_json_scan(bad[i].doc, strlen(bad[i].doc), NULL, 0, &off) == 0)
            fail_msg("accepted invalid string #%zu", i);
        if (off != bad[i].off)
            fail_msg("string #%zu: error at %zu, expected %zu", i, off, bad[i].off);
    }
    assert_int_equal(par_utf8_check("abc", 3), 3);
    assert_int_equal(par_utf8_check("a\xc3\xa9"
                                    "b",
                                    4),
                     4);
    assert_int_equal(par_utf8_check("ab\xff", 3), 2);
    assert_int_equal(par_utf8_check("\xed\xbf\xbf", 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_error_offset),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_escaped_keys),
        cmocka_unit_test(test_root_type_and_trim),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_append_i64),
        cmocka_unit_test(test_buf_on_storage),
        cmocka_unit_test(test_hex_and_decimal),
        cmocka_unit_test(test_utf8_and_surrogates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
