/* Unit tests for obs/log.c: lines formatted without printf must match what
 * printf would write, escaping, and per-thread batching. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "obs/log.h"

/* Runs `fn` with stderr sent to a temporary file; returns what it wrote. */
static char *capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(tmp) >= 0 ? lseek(fileno(tmp), 0, SEEK_END) : 0;
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(pread(fileno(tmp), out, (size_t)n, 0), n);
    fclose(tmp);
    return out;
}

static void numbers(void)
{
    par_logline_t l;
    assert_true(par_log_begin(&l, PAR_LOG_ERROR, "n"));
    par_log_int(&l, "zero", 0);
    par_log_int(&l, "neg", -42);
    par_log_int(&l, "min", INT64_MIN);
    par_log_int(&l, "max", INT64_MAX);
    par_log_double(&l, "d1", 1.2346);
    par_log_double(&l, "d2", -0.0006);
    par_log_double(&l, "d3", 999.9996);
    par_log_double(&l, "d4", 0.5);
    par_log_double(&l, "big", 1e20);
    par_log_end(&l);
}

static void test_numbers_match_printf(void **state)
{
    (void)state;
    char *out = capture(numbers);
    char want[512];
    snprintf(want, sizeof(want),
             ",\"zero\":0,\"neg\":-42,\"min\":%lld,\"max\":%lld,\"d1\":%.3f,\"d2\":%.3f,"
             "\"d3\":%.3f,\"d4\":%.3f,\"big\":%.3f}\n",
             (long long)INT64_MIN, (long long)INT64_MAX, 1.2346, -0.0006, 999.9996, 0.5, 1e20);
    assert_non_null(strstr(out, want));
    free(out);
}

static void stamp_and_escapes(void)
{
    par_logline_t l;
    assert_true(par_log_begin(&l, PAR_LOG_WARN, "say \"hi\"\\ \n\x01 end"));
    par_log_str(&l, "k", "plain text, then \x7f");
    par_log_end(&l);
}

static void test_timestamp_and_escaping(void **state)
{
    (void)state;
    char *out = capture(stamp_and_escapes);
    /* {"ts":"2026-12-05T09:30:00.123Z","level":"warn",... */
    assert_memory_equal(out, "{\"ts\":\"", 7);
    const char *t = out + 7;
    for (int i = 0; i < 24; i++) {
        const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
        if (shape[i] == 'd')
            assert_true(t[i] >= '0' && t[i] <= '9');
        else
            assert_int_equal(t[i], shape[i]);
    }
    assert_non_null(
        strstr(out, "\"level\":\"warn\",\"msg\":\"say \\\"hi\\\"\\\\ \\n\\u0001 end\""));
    assert_non_null(strstr(out, ",\"k\":\"plain text, then \\u007f\"}\n"));
    free(out);
}

static void batched(void)
{
    par_log_thread_batch(1);
    par_logline_t l;
    assert_true(par_log_begin(&l, PAR_LOG_ERROR, "first"));
    par_log_end(&l);
    assert_true(par_log_begin(&l, PAR_LOG_ERROR, "second"));
    par_log_end(&l);
    /* nothing written until the turn ends */
    assert_int_equal(lseek(STDERR_FILENO, 0, SEEK_CUR), 0);
    par_log_flush();
    par_log_thread_batch(0);
}

static void test_a_batching_thread_writes_at_flush(void **state)
{
    (void)state;
    char *out = capture(batched);
    char *a = strstr(out, "\"msg\":\"first\"}\n");
    char *b = strstr(out, "\"msg\":\"second\"}\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    free(out);
}

static void long_line(void)
{
    static char msg[9000];
    memset(msg, 'x', sizeof(msg) - 1);
    par_logline_t l;
    assert_true(par_log_begin(&l, PAR_LOG_ERROR, msg));
    par_log_end(&l);
}

static void test_a_long_field_is_cut_not_dropped(void **state)
{
    (void)state;
    char *out = capture(long_line);
    char *m = strstr(out, "\"msg\":\"xxxx");
    assert_non_null(m); /* as much as fits, then the marker */
    assert_non_null(strstr(out, "\",\"truncated\":true}\n"));
    assert_true(strlen(out) <= PAR_LOGLINE_MAX);
    assert_true(strlen(out) > PAR_LOGLINE_MAX - 64);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_match_printf),
        cmocka_unit_test(test_timestamp_and_escaping),
        cmocka_unit_test(test_a_batching_thread_writes_at_flush),
        cmocka_unit_test(test_a_long_field_is_cut_not_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
