/*
 * Unit tests for util/buf.c: the error sink helper par_buf_errf (NULL sink,
 * formatting, appending after earlier text, the buffer's cap) and the capped
 * appends it relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "util/buf.h"

static void errf_null_sink_is_a_no_op(void **state)
{
    (void)state;
    par_buf_errf(NULL, "%s: %d\n", "ignored", 42); /* must not crash */
}

static void errf_formats_and_appends(void **state)
{
    (void)state;
    par_buf_t b;
    par_buf_init(&b, 0);
    par_buf_errf(&b, "%s: cannot open: %s\n", "a.apkg", "No such file or directory");
    par_buf_errf(&b, "%zu entries\n", (size_t)3);
    assert_int_equal(par_buf_terminate(&b), PAR_OK);
    assert_string_equal(b.data, "a.apkg: cannot open: No such file or directory\n3 entries\n");
    par_buf_free(&b);
}

static void errf_long_message(void **state)
{
    (void)state;
    /* Longer than the 256-byte fast path of par_buf_vappendf. */
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    par_buf_t b;
    par_buf_init(&b, 0);
    par_buf_errf(&b, "<%s>", big);
    assert_int_equal(b.len, sizeof(big) - 1 + 2);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[b.len - 1], '>');
    par_buf_free(&b);
}

static void errf_respects_the_cap(void **state)
{
    (void)state;
    par_buf_t b;
    par_buf_init(&b, 8);
    par_buf_errf(&b, "abc");
    par_buf_errf(&b, "0123456789"); /* over the cap: dropped, no growth */
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "abc", 3);
    assert_int_equal(par_buf_appends(&b, "0123456789"), PAR_E_TOO_LARGE);
    par_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errf_null_sink_is_a_no_op),
        cmocka_unit_test(errf_formats_and_appends),
        cmocka_unit_test(errf_long_message),
        cmocka_unit_test(errf_respects_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
