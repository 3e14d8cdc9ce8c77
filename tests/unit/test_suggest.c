/*
 * Unit tests for util/suggest.c: the edit distance and the "did you mean" choice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/suggest.h"

static void test_distance(void **state)
{
    assert_int_equal(par_edit_distance("", ""), 0);
    assert_int_equal(par_edit_distance("abc", ""), 3);
    assert_int_equal(par_edit_distance("", "abc"), 3);
    assert_int_equal(par_edit_distance("public", "public"), 0);
    assert_int_equal(par_edit_distance("pubic", "public"), 1);   /* deletion */
    assert_int_equal(par_edit_distance("publicc", "public"), 1); /* insertion */
    assert_int_equal(par_edit_distance("pubkic", "public"), 1);  /* substitution */
    assert_int_equal(par_edit_distance("pubilc", "public"), 1);  /* swap of neighbours */
    assert_int_equal(par_edit_distance("Public", "public"), 0);  /* case */
    assert_int_equal(par_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(par_edit_distance("ca", "abc"), 3); /* OSA, not Damerau */
    char longw[PAR_SUGGEST_MAX_LEN + 2];
    memset(longw, 'a', sizeof(longw) - 1);
    longw[sizeof(longw) - 1] = '\0';
    assert_int_equal(par_edit_distance(longw, "a"), (size_t)-1);
    longw[PAR_SUGGEST_MAX_LEN] = '\0';
    assert_int_equal(par_edit_distance(longw, "a"), PAR_SUGGEST_MAX_LEN - 1);
}

static void test_suggest(void **state)
{
    static const char *const keys[] = {"listen", "limits", "workers", "entrypoint",
                                       "ui",     "mcp",    "public",  NULL};
    assert_string_equal(par_suggest("listn", keys), "listen");
    assert_string_equal(par_suggest("entrypont", keys), "entrypoint");
    assert_string_equal(par_suggest("entry_point", keys), "entrypoint");
    assert_string_equal(par_suggest("pubic", keys), "public");
    assert_string_equal(par_suggest("PUBLIC", keys), "public");
    assert_string_equal(par_suggest("mpc", keys), "mcp");
    assert_string_equal(par_suggest("uj", keys), "ui");
    assert_null(par_suggest("listen", keys)); /* known: nothing to suggest */
    assert_null(par_suggest("ab", keys));     /* two edits from "ui": too far for a short key */
    assert_null(par_suggest("homepage", keys));
    assert_null(par_suggest("", keys));
    assert_null(par_suggest(NULL, keys));
    /* the nearest wins; on a tie, the first */
    static const char *const near[] = {"abcd", "abce", "abcdx", NULL};
    assert_string_equal(par_suggest("abcdy", near), "abcd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_suggest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
