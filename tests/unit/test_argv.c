/* Unit tests for util/argv.c: the growable string vector of argument and
 * environment vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/argv.h"

static void test_push_and_steal(void **state)
{
    (void)state;
    par_strvec_t v = PAR_STRVEC_INIT;
    char arg[] = "--root";
    par_strvec_push(&v, "par-worker");
    par_strvec_push(&v, arg);
    arg[0] = 'X'; /* pushed as a copy */
    par_strvec_pushf(&v, "%s=%u", "--memory-mb", 512u);
    for (int i = 0; i < 100; i++) /* grows past its first allocation */
        par_strvec_pushf(&v, "x%d", i);
    assert_true(par_strvec_ok(&v));
    assert_int_equal(v.len, 103);
    par_strvec_set_owned(&v, 0, strdup("/usr/bin/par-worker"));
    char **a = par_strvec_steal(&v);
    assert_non_null(a);
    assert_null(v.v);
    assert_int_equal(v.len, 0);
    assert_string_equal(a[0], "/usr/bin/par-worker");
    assert_string_equal(a[1], "--root");
    assert_string_equal(a[2], "--memory-mb=512");
    assert_string_equal(a[102], "x99");
    assert_null(a[103]); /* NULL-terminated */
    par_strvec_free_array(a);
}

static void test_failure_is_sticky(void **state)
{
    (void)state;
    par_strvec_t v = PAR_STRVEC_INIT;
    par_strvec_push(&v, "a");
    par_strvec_push_owned(&v, NULL); /* a failed allocation */
    assert_false(par_strvec_ok(&v));
    par_strvec_push(&v, "b");
    assert_int_equal(v.len, 1); /* nothing more is pushed */
    assert_null(par_strvec_steal(&v));
    assert_null(v.v);

    par_strvec_t w = PAR_STRVEC_INIT;
    par_strvec_push(&w, "a");
    par_strvec_set_owned(&w, 5, strdup("out of range"));
    assert_false(par_strvec_ok(&w));
    par_strvec_free(&w);
    assert_null(w.v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_and_steal),
        cmocka_unit_test(test_failure_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
