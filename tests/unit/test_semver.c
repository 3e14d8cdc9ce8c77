/*
 * Unit tests for pkg/semver.c.
 *
 * The match table follows node-semver (npm's `semver.satisfies` with default
 * options): every row gives the answer node-semver 7 gives, malformed rows
 * included (its Range constructor throws), except where PAR is stricter on
 * purpose: an empty range or `||` alternative (node-semver: any version) and
 * a version string with a leading "v" are errors. Malformed rows name a
 * substring the one-line error message must hold (usually the quoted token).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "pkg/semver.h"

#define BAD (-1)

typedef struct row {
    const char *range;
    const char *version;
    int want;        /* 1 match, 0 no match, BAD malformed */
    const char *say; /* BAD: a substring of the error message */
} row_t;

static const row_t rows[] = {
    /* exact versions; build metadata is ignored on both sides */
    {"1.2.3", "1.2.3", 1, NULL},
    {"1.2.3", "1.2.4", 0, NULL},
    {"1.2.3", "1.2.2", 0, NULL},
    {"=1.2.3", "1.2.3", 1, NULL},
    {"v1.2.3", "1.2.3", 1, NULL},
    {"=v1.2.3", "1.2.3", 1, NULL},
    {"1.2.3+build.7", "1.2.3", 1, NULL},
    {"1.2.3", "1.2.3+other", 1, NULL},
    {"  1.2.3  ", "1.2.3", 1, NULL},

    /* primitive comparators */
    {">=1.0.0", "1.0.0", 1, NULL},
    {">=1.0.0", "0.9.9", 0, NULL},
    {">1.0.0", "1.0.0", 0, NULL},
    {">1.0.0", "1.0.1", 1, NULL},
    {"<2.0.0", "1.9.9", 1, NULL},
    {"<2.0.0", "2.0.0", 0, NULL},
    {"<=2.0.0", "2.0.0", 1, NULL},
    {"<=2.0.0", "2.0.1", 0, NULL},
    {">=1.0.0 <2.0.0", "1.5.0", 1, NULL},
    {">=1.0.0 <2.0.0", "2.0.0", 0, NULL},
    {">=1.0.0 <2.0.0", "0.1.0", 0, NULL},
    {">= 1.0.0", "1.0.0", 1, NULL},
    {">=  1.0.0   <  2", "1.9.0", 1, NULL},
    {">=  1.0.0   <  2", "2.0.0", 0, NULL},
    {">=1.0.0\t<2.0.0", "1.0.1", 1, NULL},
    {">1.0.0 <1.0.0", "1.0.0", 0, NULL},

    /* partial versions in comparators (filled with 0, node-semver's way) */
    {">1.2", "1.2.9", 0, NULL},
    {">1.2", "1.3.0", 1, NULL},
    {">1", "1.9.9", 0, NULL},
    {">1", "2.0.0", 1, NULL},
    {"<1.2", "1.1.9", 1, NULL},
    {"<1.2", "1.2.0", 0, NULL},
    {"<=1.2", "1.2.9", 1, NULL},
    {"<=1.2", "1.3.0", 0, NULL},
    {">=1.2", "1.2.0", 1, NULL},
    {">=1.2", "1.1.9", 0, NULL},
    {"<=1", "1.9.9", 1, NULL},
    {"<=1", "2.0.0", 0, NULL},
    {"<1.x", "0.9.0", 1, NULL},
    {"<1.x", "1.0.0", 0, NULL},
    {">=1.x", "1.0.0", 1, NULL},

    /* x-ranges */
    {"*", "1.2.3", 1, NULL},
    {"*", "0.0.0", 1, NULL},
    {"x", "0.0.0", 1, NULL},
    {"X", "7.0.0", 1, NULL},
    {"1.x", "1.0.0", 1, NULL},
    {"1.x", "1.99.0", 1, NULL},
    {"1.x", "2.0.0", 0, NULL},
    {"1.x", "0.9.0", 0, NULL},
    {"1.x.x", "1.4.4", 1, NULL},
    {"1.2.*", "1.2.0", 1, NULL},
    {"1.2.*", "1.3.0", 0, NULL},
    {"1.2.X", "1.2.5", 1, NULL},
    {"1", "1.5.0", 1, NULL},
    {"1", "2.0.0", 0, NULL},
    {"1.2", "1.2.9", 1, NULL},
    {"1.2", "1.3.0", 0, NULL},
    {"=1.2", "1.2.3", 1, NULL},
    {">*", "1.0.0", 0, NULL},
    {"<*", "1.0.0", 0, NULL},
    {">=*", "1.0.0", 1, NULL},
    {"<=x", "1.0.0", 1, NULL},

    /* tilde: patch-level changes */
    {"~1.2.3", "1.2.3", 1, NULL},
    {"~1.2.3", "1.2.9", 1, NULL},
    {"~1.2.3", "1.3.0", 0, NULL},
    {"~1.2.3", "1.2.2", 0, NULL},
    {"~1.2", "1.2.0", 1, NULL},
    {"~1.2", "1.3.0", 0, NULL},
    {"~1", "1.9.9", 1, NULL},
    {"~1", "2.0.0", 0, NULL},
    {"~0.2.3", "0.2.5", 1, NULL},
    {"~0.2.3", "0.3.0", 0, NULL},
    {"~>1.2.3", "1.2.5", 1, NULL},
    {"~ 1.2.3", "1.2.5", 1, NULL},
    {"~*", "4.0.0", 1, NULL},

    /* caret: changes that keep the left-most non-zero part */
    {"^1.2.3", "1.2.3", 1, NULL},
    {"^1.2.3", "1.9.0", 1, NULL},
    {"^1.2.3", "2.0.0", 0, NULL},
    {"^1.2.3", "1.2.2", 0, NULL},
    {"^0.2.3", "0.2.9", 1, NULL},
    {"^0.2.3", "0.3.0", 0, NULL},
    {"^0.0.3", "0.0.3", 1, NULL},
    {"^0.0.3", "0.0.4", 0, NULL},
    {"^0.0", "0.0.9", 1, NULL},
    {"^0.0", "0.1.0", 0, NULL},
    {"^0.x", "0.9.0", 1, NULL},
    {"^0.x", "1.0.0", 0, NULL},
    {"^1.x", "1.5.0", 1, NULL},
    {"^1.2.x", "1.9.0", 1, NULL},
    {"^1.2.x", "1.1.0", 0, NULL},
    {"^0.0.x", "0.0.9", 1, NULL},
    {"^0.0.x", "0.1.0", 0, NULL},
    {"^0.1", "0.1.7", 1, NULL},
    {"^0.1", "0.2.0", 0, NULL},
    {"^1", "1.9.9", 1, NULL},
    {"^*", "3.0.0", 1, NULL},
    {"^ 1.2.3", "1.4.0", 1, NULL},

    /* hyphen ranges: inclusive; a partial upper bound covers its whole step */
    {"1.2.3 - 2.3.4", "1.2.3", 1, NULL},
    {"1.2.3 - 2.3.4", "2.3.4", 1, NULL},
    {"1.2.3 - 2.3.4", "2.3.5", 0, NULL},
    {"1.2.3 - 2.3.4", "1.2.2", 0, NULL},
    {"1.2 - 2.3.4", "1.2.0", 1, NULL},
    {"1.2 - 2.3.4", "1.1.9", 0, NULL},
    {"1.2.3 - 2.3", "2.3.9", 1, NULL},
    {"1.2.3 - 2.3", "2.4.0", 0, NULL},
    {"1.2.3 - 2", "2.9.9", 1, NULL},
    {"1.2.3 - 2", "3.0.0", 0, NULL},
    {"* - 2", "0.0.1", 1, NULL},
    {"1.0.0 - *", "9.0.0", 1, NULL},
    {"1.0.0 - *", "0.9.0", 0, NULL},

    /* alternatives */
    {"1.x || >=2.5.0", "2.0.0", 0, NULL},
    {"1.x || >=2.5.0", "2.5.0", 1, NULL},
    {"1.x || >=2.5.0", "1.2.0", 1, NULL},
    {"<1 || >2", "1.5.0", 0, NULL},
    {"<1||>2", "3.0.0", 1, NULL},
    {"1.2.3 - 1.2.5 || 2.x", "1.2.4", 1, NULL},
    {"1.2.3 - 1.2.5 || 2.x", "2.1.0", 1, NULL},
    {"1.2.3 - 1.2.5 || 2.x", "1.2.6", 0, NULL},
    {">=1.0.0 <2.0.0", "0.1.0", 0, NULL}, /* DESIGN.md's example against PAR 0.1.0 */

    /* pre-releases: only through a comparator with a pre-release of the same
       major.minor.patch in the same alternative */
    {">=1.2.3-beta", "1.2.3-rc.1", 1, NULL},
    {">=1.2.3-beta", "1.2.3-alpha", 0, NULL},
    {">=1.2.3-beta", "1.3.0-alpha", 0, NULL},
    {">=1.2.3-beta", "1.3.0", 1, NULL},
    {">1.2.3-alpha.3", "1.2.3-alpha.7", 1, NULL},
    {">1.2.3-alpha.3", "3.4.5-alpha.9", 0, NULL},
    {">1.2.3-alpha.3", "3.4.5", 1, NULL},
    {"^1.2.3", "1.5.0-beta", 0, NULL},
    {"^1.2.3-beta.2", "1.2.3-beta.4", 1, NULL},
    {"^1.2.3-beta.2", "1.2.3-beta.10", 1, NULL},
    {"^1.2.3-beta.2", "1.2.4-beta.2", 0, NULL},
    {"^1.2.3-beta.2", "1.2.4", 1, NULL},
    {"^0.0.1-alpha", "0.0.1-beta", 1, NULL},
    {"^0.0.1-alpha", "0.0.2", 0, NULL},
    {"*", "1.0.0-beta", 0, NULL},
    {">=0.0.0", "1.0.0-rc.1", 0, NULL},
    {"<2.0.0", "2.0.0-rc.1", 0, NULL},
    {"<2.0.0", "1.9.0-rc.1", 0, NULL},
    {"1.x", "1.5.0-rc.1", 0, NULL},
    {"1.2.3-alpha", "1.2.3-alpha", 1, NULL},
    {"1.2.3-alpha", "1.2.3-alpha+b5", 1, NULL},
    {"1.2.3-alpha", "1.2.3-beta", 0, NULL},
    {"1.2.3-alpha", "1.2.3", 0, NULL},
    {"~1.2.3-beta.2", "1.2.3-beta.10", 1, NULL},
    {"~1.2.3-beta.2", "1.2.3-beta.1", 0, NULL},
    {"~1.2.3-beta.2", "1.2.4-beta.1", 0, NULL},
    {"1.2.3-alpha.1 - 1.2.3-beta", "1.2.3-alpha.5", 1, NULL},
    {"1.2.3-alpha.1 - 1.2.3-beta", "1.2.3-beta.1", 0, NULL},
    {"<1.2.3-rc.1", "1.2.3-beta", 1, NULL},
    {">=1.0.0-0 <2.0.0", "1.0.0-rc.1", 1, NULL},
    {">=1.0.0-0 <2.0.0", "1.1.0-rc.1", 0, NULL},
    {"1.0.0-rc.1 || >=2.0.0-0", "2.0.0-alpha", 1, NULL},
    {"1.0.0-rc.1 || >=2.0.0-0", "1.0.0-rc.2", 0, NULL},

    /* malformed ranges: the message quotes the offending token */
    {"", "1.0.0", BAD, "empty range"},
    {"   ", "1.0.0", BAD, "empty range"},
    {"1.0.0 ||", "1.0.0", BAD, "empty alternative"},
    {"|| 1.0.0", "1.0.0", BAD, "empty alternative"},
    {"1.0.0 || || 2.0.0", "1.0.0", BAD, "empty alternative"},
    {">=1.0.0 foo", "1.0.0", BAD, "\"foo\""},
    {"1.x || foo", "1.0.0", BAD, "\"foo\""}, /* even after a matching alternative */
    {">=", "1.0.0", BAD, "operator without a version"},
    {"1.0.0 <", "1.0.0", BAD, "\"<\""},
    {"^", "1.0.0", BAD, "\"^\""},
    {"1.2.3.4", "1.2.3", BAD, "\"1.2.3.4\""},
    {"01.2.3", "1.2.3", BAD, "leading zero"},
    {"1.02", "1.2.0", BAD, "leading zero"},
    {"1.x.3", "1.0.3", BAD, "wildcard"},
    {"1.2-beta", "1.2.0", BAD, "MAJOR.MINOR.PATCH"},
    {"1.x-beta", "1.2.0", BAD, "\"1.x-beta\""},
    {"1.2.3-", "1.2.3", BAD, "empty pre-release"},
    {"1.2.3-01", "1.2.3", BAD, "leading zero"},
    {"1.2.3-a..b", "1.2.3", BAD, "empty pre-release identifier"},
    {"1.2.3+", "1.2.3", BAD, "empty build"},
    {"1.2.3-a_b", "1.2.3", BAD, "[0-9A-Za-z-]"},
    {"1.2.", "1.2.0", BAD, "ends with '.'"},
    {"99999999999999999.0.0", "1.0.0", BAD, "larger than"},
    {"1.2.3 -", "1.2.3", BAD, "hyphen range"},
    {"- 1.2.3", "1.2.3", BAD, "hyphen range"},
    {"1.2.3 - 2.0.0 - 3.0.0", "1.2.3", BAD, "hyphen range"},
    {">=1.2.3 - 2", "1.2.3", BAD, "\">=1.2.3\""},
    {"1.2.3 - <2", "1.2.3", BAD, "without operators"},
    {"1 | 2", "1.0.0", BAD, "\"|\""},
    {">=1.0.0 ||| 3", "1.0.0", BAD, "\"|\""},
    {"=>1.0.0", "1.0.0", BAD, "\"=>1.0.0\""},
    {">=1.0.0<2.0.0", "1.0.0", BAD, "\">=1.0.0<2.0.0\""},
    {"latest", "1.0.0", BAD, "\"latest\""},
    {"~>", "1.0.0", BAD, "operator without a version"},

    /* malformed versions */
    {"*", "1.0", BAD, "version \"1.0\""},
    {"*", "v1.0.0", BAD, "not a semver version"},
    {"*", "01.0.0", BAD, "not a semver version"},
    {"*", "1.0.0-", BAD, "not a semver version"},
    {"*", "1.x.0", BAD, "not a semver version"},
    {"*", "", BAD, "not a semver version"},
};

static void test_range_table(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    int failures = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row_t *r = &rows[i];
        par_buf_reset(&err);
        int got = par_semver_range_match(r->range, r->version, &err);
        par_buf_terminate(&err);
        const char *msg = err.data ? err.data : "";
        if (r->want == BAD) {
            if (got != -PAR_E_INVALID_ARGUMENT) {
                print_error("range \"%s\" with \"%s\": got %d, expected a malformed-range "
                            "error\n",
                            r->range, r->version, got);
                failures++;
            } else if (strstr(msg, r->say) == NULL || msg[strlen(msg) - 1] != '\n' ||
                       strchr(msg, '\n') != msg + strlen(msg) - 1) {
                print_error("range \"%s\": message \"%s\" should be one line mentioning %s\n",
                            r->range, msg, r->say);
                failures++;
            }
        } else if (got != r->want) {
            print_error("range \"%s\" with version \"%s\": got %d, expected %d (%s)\n", r->range,
                        r->version, got, r->want, msg);
            failures++;
        } else if (err.len != 0) {
            print_error("range \"%s\": unexpected message \"%s\"\n", r->range, msg);
            failures++;
        }
    }
    par_buf_free(&err);
    assert_int_equal(failures, 0);
    /* err may be NULL */
    assert_int_equal(par_semver_range_match("foo", "1.0.0", NULL), -PAR_E_INVALID_ARGUMENT);
    assert_int_equal(par_semver_range_match("^1", "1.0.0", NULL), 1);
}

static void test_range_messages(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_semver_range_match(">=1.0.0 <2.0.0 fo\"o", "1.0.0", &err),
                     -PAR_E_INVALID_ARGUMENT);
    par_buf_terminate(&err);
    /* the whole range and the token, quoted as JSON strings, and a hint */
    assert_non_null(strstr(err.data, "range \">=1.0.0 <2.0.0 fo\\\"o\": \"fo\\\"o\": "));
    assert_non_null(strstr(err.data, "expected a version"));
    par_buf_reset(&err);
    /* control characters cannot forge lines */
    assert_int_equal(par_semver_range_match("1.0.0\x1b[2J", "1.0.0", &err),
                     -PAR_E_INVALID_ARGUMENT);
    par_buf_terminate(&err);
    assert_null(strchr(err.data, '\x1b'));
    par_buf_reset(&err);
    /* caps */
    char *big = malloc(PAR_SEMVER_RANGE_MAX + 2);
    memset(big, ' ', PAR_SEMVER_RANGE_MAX + 1);
    memcpy(big, "*", 1);
    big[PAR_SEMVER_RANGE_MAX + 1] = '\0';
    assert_int_equal(par_semver_range_match(big, "1.0.0", &err), -PAR_E_INVALID_ARGUMENT);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "1025 characters"));
    big[PAR_SEMVER_RANGE_MAX] = '\0';
    assert_int_equal(par_semver_range_match(big, "1.0.0", NULL), 1);
    /* 70 comparators in one alternative: too many; in alternatives: fine */
    size_t off = 0;
    for (int i = 0; i < 70; i++)
        off += (size_t)snprintf(big + off, 16, ">=1.0.%d ", i);
    par_buf_reset(&err);
    assert_int_equal(par_semver_range_match(big, "1.0.70", &err), -PAR_E_INVALID_ARGUMENT);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "more than 64 comparators"));
    off = 0;
    for (int i = 0; i < 70; i++)
        off += (size_t)snprintf(big + off, 16, "1.0.%d || ", i);
    memcpy(big + off - 4, "\0", 1);
    assert_int_equal(par_semver_range_match(big, "1.0.69", NULL), 1);
    assert_int_equal(par_semver_range_match(big, "1.0.70", NULL), 0);
    free(big);
    par_buf_free(&err);
}

static void test_parse(void **state)
{
    (void)state;
    par_semver_t v;
    assert_int_equal(par_semver_parse("1.2.3-rc.1+build.5", &v), PAR_OK);
    assert_true(v.major == 1 && v.minor == 2 && v.patch == 3);
    assert_string_equal(v.pre, "rc.1");
    assert_string_equal(v.build, "build.5");
    assert_int_equal(par_semver_parse("0.0.0", &v), PAR_OK);
    assert_int_equal(par_semver_parse("9007199254740991.0.0", &v), PAR_OK);
    assert_true(v.major == 9007199254740991ull);
    assert_int_equal(par_semver_parse("1.0.0+001", &v), PAR_OK); /* build may have zeros */
    assert_int_equal(par_semver_parse("1.0.0-x-y-z.--", &v), PAR_OK);
    assert_string_equal(v.pre, "x-y-z.--");
    static const char *const bad[] = {"",
                                      "1",
                                      "1.2",
                                      "1.2.3.4",
                                      "v1.2.3",
                                      "=1.2.3",
                                      " 1.2.3",
                                      "1.2.3 ",
                                      "01.2.3",
                                      "1.02.3",
                                      "1.2.03",
                                      "1.2.3-",
                                      "1.2.3+",
                                      "1.2.3-01",
                                      "1.2.3-a..b",
                                      "1.2.3-a.",
                                      "1.2.3+a+b",
                                      "1.2.3-ä",
                                      "1.x.3",
                                      "*",
                                      "9007199254740992.0.0",
                                      "18446744073709551616.0.0",
                                      "-1.2.3",
                                      "1.2.3\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&v, 0x5a, sizeof(v));
        if (par_semver_parse(bad[i], &v) != PAR_E_INVALID_ARGUMENT)
            fail_msg("\"%s\" parsed as a version", bad[i]);
        assert_true(v.major == 0 && v.pre[0] == '\0');
    }
    assert_int_equal(par_semver_parse(NULL, &v), PAR_E_INVALID_ARGUMENT);
    /* pre-release and build parts are capped */
    char s[300];
    snprintf(s, sizeof(s), "1.0.0-%0127d", 1);
    s[6] = 'a';
    assert_int_equal(par_semver_parse(s, &v), PAR_OK);
    snprintf(s, sizeof(s), "1.0.0-a%0127d", 1);
    assert_int_equal(par_semver_parse(s, &v), PAR_E_INVALID_ARGUMENT);
}

static void test_compare(void **state)
{
    (void)state;
    /* ascending, semver 2.0.0 section 11 and more */
    static const char *const order[] = {"0.0.0-0",
                                        "0.0.0",
                                        "0.0.1",
                                        "0.1.0",
                                        "1.0.0-0",
                                        "1.0.0-1",
                                        "1.0.0-2",
                                        "1.0.0-10",
                                        "1.0.0-alpha",
                                        "1.0.0-alpha.1",
                                        "1.0.0-alpha.beta",
                                        "1.0.0-beta",
                                        "1.0.0-beta.2",
                                        "1.0.0-beta.11",
                                        "1.0.0-rc.1",
                                        "1.0.0",
                                        "1.0.1",
                                        "1.1.0",
                                        "1.10.0",
                                        "2.0.0",
                                        "10.0.0",
                                        "9007199254740991.0.0"};
    size_t n = sizeof(order) / sizeof(order[0]);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            par_semver_t a, b;
            assert_int_equal(par_semver_parse(order[i], &a), PAR_OK);
            assert_int_equal(par_semver_parse(order[j], &b), PAR_OK);
            int c = par_semver_cmp(&a, &b);
            int want = i < j ? -1 : i > j;
            if ((c > 0) - (c < 0) != want)
                fail_msg("cmp(%s, %s) = %d, expected %d", order[i], order[j], c, want);
        }
    }
    par_semver_t a, b;
    assert_int_equal(par_semver_parse("1.0.0+a", &a), PAR_OK);
    assert_int_equal(par_semver_parse("1.0.0+b", &b), PAR_OK);
    assert_int_equal(par_semver_cmp(&a, &b), 0);
    assert_int_equal(par_semver_parse("1.0.0-A", &a), PAR_OK); /* ASCII: upper before lower */
    assert_int_equal(par_semver_parse("1.0.0-a", &b), PAR_OK);
    assert_true(par_semver_cmp(&a, &b) < 0);
    assert_int_equal(par_semver_parse("1.0.0-alpha-1", &a), PAR_OK);
    assert_int_equal(par_semver_parse("1.0.0-alpha.1", &b), PAR_OK);
    assert_true(par_semver_cmp(&a, &b) > 0); /* "alpha-1" is one identifier, after "alpha" */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_table),
        cmocka_unit_test(test_range_messages),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
