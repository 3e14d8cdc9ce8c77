/*
 * Unit tests for loader/scratch.c: the accountant kills the largest worker of
 * a package version over its quota, leaves other versions and workers under
 * it alone, and reports the kill once through par_scratch_forget().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "loader/scratch.h"
#include "util/fs.h"

static char top[PATH_MAX];

static int setup(void **state)
{
    (void)state;
    snprintf(top, sizeof(top), "/tmp/par-test-scratch-XXXXXX");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return par_fs_remove(top, NULL);
}

/* A stand-in worker: its own process group, sleeping until killed. */
static pid_t sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        for (;;)
            pause();
    }
    assert_true(pid > 0);
    setpgid(pid, pid);
    return pid;
}

static void fill(const char *dir, size_t mb)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    char p[PATH_MAX + 16], buf[1 << 16];
    memset(buf, 'x', sizeof(buf));
    snprintf(p, sizeof(p), "%s/data", dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    for (size_t i = 0; i < mb * 16; i++)
        assert_true(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
    fsync(fd);
    close(fd);
}

/* Waits up to 5 s for `pid` to die; 1 when it did. */
static int died(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
        usleep(10000);
    }
    return 0;
}

static void test_quota_per_package_version(void **state)
{
    (void)state;
    char a1[PATH_MAX + 16], a2[PATH_MAX + 16], b1[PATH_MAX + 16];
    snprintf(a1, sizeof(a1), "%s/a.1", top);
    snprintf(a2, sizeof(a2), "%s/a.2", top);
    snprintf(b1, sizeof(b1), "%s/b.1", top);
    fill(a1, 3); /* a@1: 3 + 6 MB over a 8 MB quota: the 6 MB worker goes */
    fill(a2, 6);
    fill(b1, 6); /* b@1: 6 MB under the same quota: untouched */
    pid_t pa1 = sleeper(), pa2 = sleeper(), pb1 = sleeper();
    par_scratch_t *q = par_scratch_new();
    assert_non_null(q);
    par_scratch_watch(q, 1, pa1, a1, "a@1", 8u << 20);
    par_scratch_watch(q, 2, pa2, a2, "a@1", 8u << 20);
    par_scratch_watch(q, 3, pb1, b1, "b@1", 8u << 20);
    assert_true(died(pa2));
    uint64_t used = 0, limit = 0;
    assert_int_equal(par_scratch_forget(q, 2, &used, &limit), 1);
    assert_true(used > (8u << 20));
    assert_int_equal(limit, 8u << 20);
    usleep(1200 * 1000); /* two more passes: a@1 is now under its quota */
    assert_int_equal(kill(pa1, 0), 0);
    assert_int_equal(kill(pb1, 0), 0);
    assert_int_equal(par_scratch_forget(q, 1, NULL, NULL), 0);
    assert_int_equal(par_scratch_forget(q, 3, NULL, NULL), 0);
    assert_int_equal(par_scratch_forget(q, 3, NULL, NULL), 0); /* unknown now */
    par_scratch_free(q);
    kill(pa1, SIGKILL), kill(pb1, SIGKILL);
    waitpid(pa1, NULL, 0), waitpid(pb1, NULL, 0);
}

/* A quota of 0 measures but never kills. */
static void test_no_quota(void **state)
{
    (void)state;
    char d[PATH_MAX + 16];
    snprintf(d, sizeof(d), "%s/free", top);
    fill(d, 2);
    pid_t p = sleeper();
    par_scratch_t *q = par_scratch_new();
    par_scratch_watch(q, 7, p, d, "free@1", 0);
    usleep(1200 * 1000);
    assert_int_equal(kill(p, 0), 0);
    assert_int_equal(par_scratch_forget(q, 7, NULL, NULL), 0);
    par_scratch_free(q);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quota_per_package_version),
        cmocka_unit_test(test_no_quota),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
