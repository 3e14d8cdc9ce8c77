/*
 * Unit tests for util/fs.c: trees far deeper than PATH_MAX and than the
 * descriptors a walk may hold, directories their owner locked, symbolic links
 * (never followed), early stops and the usage sum.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/fs.h"

static char top[PATH_MAX];

static int setup(void **state)
{
    (void)state;
    snprintf(top, sizeof(top), "/tmp/par-test-fs-XXXXXX");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return par_fs_remove(top, NULL);
}

/* dir/d/d/…/d (levels deep) with a file of `bytes` bytes at the bottom, built
 * with descriptors. Returns the bottom's depth-long chain length in bytes. */
static void make_chain(const char *dir, int levels, size_t bytes)
{
    assert_int_equal(mkdir(dir, 0755), 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    for (int i = 0; i < levels; i++) {
        assert_int_equal(mkdirat(fd, "d", 0755), 0);
        int nfd = openat(fd, "d", O_RDONLY | O_DIRECTORY);
        assert_true(nfd >= 0);
        close(fd);
        fd = nfd;
    }
    int f = openat(fd, "f", O_WRONLY | O_CREAT, 0644);
    assert_true(f >= 0);
    assert_int_equal(ftruncate(f, 0), 0);
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    for (size_t n = 0; n < bytes; n += sizeof(buf))
        assert_true(write(f, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
    close(f);
    close(fd);
}

static void path_of(char *out, size_t n, const char *name)
{
    assert_true((size_t)snprintf(out, n, "%s/%s", top, name) < n);
}

/* 3,000 levels: a path of 6 KB, past PATH_MAX; the walk holds at most
 * PAR_FS_OPEN_DIRS descriptors, checked by lowering RLIMIT_NOFILE. */
static void test_deep_chain(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    path_of(dir, sizeof(dir), "deep");
    make_chain(dir, 3000, 1 << 20);
    struct rlimit old, low = {64, 64};
    getrlimit(RLIMIT_NOFILE, &old);
    low.rlim_max = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    uint64_t bytes = 0;
    par_fs_result_t res;
    assert_int_equal(par_fs_usage(dir, 0, &bytes, &res), 0);
    assert_int_equal(res.entries, 3002); /* top + 3,000 directories + the file */
    assert_int_equal(res.max_depth, 3000);
    assert_true(bytes >= (1u << 20));
    assert_int_equal(par_fs_remove(dir, &res), 0);
    assert_int_equal(res.failures, 0);
    setrlimit(RLIMIT_NOFILE, &old);
    struct stat st;
    assert_int_equal(lstat(dir, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* A wide directory beside deep ones: every entry is seen once even when the
 * walk closes and reopens levels on its way. */
static void test_wide_and_deep(void **state)
{
    (void)state;
    char dir[PATH_MAX], sub[PATH_MAX + 32];
    path_of(dir, sizeof(dir), "wide");
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(sub, sizeof(sub), "%s/c%03d", dir, i);
        if (i % 50 == 0) {
            make_chain(sub, 40, 0); /* deeper than PAR_FS_OPEN_DIRS */
        } else {
            int f = open(sub, O_WRONLY | O_CREAT, 0644);
            assert_true(f >= 0);
            close(f);
        }
    }
    par_fs_result_t res;
    uint64_t bytes;
    assert_int_equal(par_fs_usage(dir, 0, &bytes, &res), 0);
    /* top + 300 children + 6 chains of 40 directories and a file each */
    assert_int_equal(res.entries, 1 + 300 + 6 * 41);
    assert_int_equal(par_fs_remove(dir, NULL), 0);
    assert_int_equal(access(dir, F_OK), -1);
}

static void lock_and_remove(const char *dir)
{
    char sub[PATH_MAX + 32];
    make_chain(dir, 5, 4096);
    snprintf(sub, sizeof(sub), "%s/d/d/d", dir);
    assert_int_equal(chmod(sub, 0600), 0); /* listable, not searchable */
    snprintf(sub, sizeof(sub), "%s/d/d", dir);
    assert_int_equal(chmod(sub, 0500), 0);
    snprintf(sub, sizeof(sub), "%s/d", dir);
    assert_int_equal(chmod(sub, 0), 0);
    uint64_t bytes;
    assert_int_equal(par_fs_usage(dir, 0, &bytes, NULL), 0); /* every level counted */
    assert_true(bytes >= 4096 + 6 * 512);
    assert_int_equal(par_fs_remove(dir, NULL), 0);
    assert_int_equal(access(dir, F_OK), -1);
}

/* Modes 0000, 0500 and 0600 (a worker may lock its own scratch) stop neither the
 * usage sum nor removal. Root ignores modes: then the same runs as nobody. */
static void test_locked_directories(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    if (geteuid() != 0) {
        path_of(dir, sizeof(dir), "locked");
        lock_and_remove(dir);
        return;
    }
    path_of(dir, sizeof(dir), "nobody");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chown(dir, 65534, 65534), 0);
    assert_int_equal(chmod(top, 0711), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        char sub[PATH_MAX + 16];
        snprintf(sub, sizeof(sub), "%s/locked", dir);
        lock_and_remove(sub); /* a failed assertion ends the child with a failure */
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Symbolic links are removed, never followed; a link as the top is removed
 * itself. */
static void test_symlinks_not_followed(void **state)
{
    (void)state;
    char dir[PATH_MAX], outside[PATH_MAX], link[PATH_MAX + 32], file[PATH_MAX + 32];
    path_of(dir, sizeof(dir), "links");
    path_of(outside, sizeof(outside), "outside");
    make_chain(outside, 2, 4096);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(link, sizeof(link), "%s/to-outside", dir);
    assert_int_equal(symlink(outside, link), 0);
    uint64_t bytes;
    par_fs_result_t res;
    assert_int_equal(par_fs_usage(dir, 0, &bytes, &res), 0);
    assert_int_equal(res.entries, 2);
    assert_int_equal(par_fs_remove(dir, NULL), 0);
    snprintf(file, sizeof(file), "%s/d/d/f", outside);
    assert_int_equal(access(file, F_OK), 0);
    snprintf(link, sizeof(link), "%s/top-link", top);
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(par_fs_remove(link, NULL), 0);
    assert_int_equal(access(file, F_OK), 0);
    assert_int_equal(par_fs_remove(outside, NULL), 0);
}

/* A stop limit ends the usage walk early; a missing path is an empty walk. */
static void test_usage_stop_and_missing(void **state)
{
    (void)state;
    char dir[PATH_MAX], missing[PATH_MAX];
    path_of(dir, sizeof(dir), "big");
    make_chain(dir, 3, 4u << 20);
    uint64_t bytes = 0;
    assert_int_equal(par_fs_usage(dir, 1u << 20, &bytes, NULL), 0);
    assert_true(bytes > (1u << 20));
    path_of(missing, sizeof(missing), "missing");
    assert_int_equal(par_fs_usage(missing, 0, &bytes, NULL), 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(par_fs_remove(missing, NULL), 0);
    assert_int_equal(par_fs_remove(dir, NULL), 0);
}

/* A file hard-linked many times inside the tree counts once. */
static void test_hard_links_count_once(void **state)
{
    (void)state;
    char dir[PATH_MAX], f[PATH_MAX + 32], l[PATH_MAX + 32];
    path_of(dir, sizeof(dir), "linked");
    make_chain(dir, 1, 1u << 20);
    snprintf(f, sizeof(f), "%s/d/f", dir);
    for (int i = 0; i < 200; i++) {
        snprintf(l, sizeof(l), "%s/l%d", dir, i);
        assert_int_equal(link(f, l), 0);
    }
    uint64_t bytes = 0;
    par_fs_result_t res;
    assert_int_equal(par_fs_usage(dir, 0, &bytes, &res), 0);
    assert_int_equal(res.entries, 3 + 200);
    assert_true(bytes >= (1u << 20) && bytes < (2u << 20));
    assert_int_equal(par_fs_remove(dir, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deep_chain),
        cmocka_unit_test(test_wide_and_deep),
        cmocka_unit_test(test_locked_directories),
        cmocka_unit_test(test_symlinks_not_followed),
        cmocka_unit_test(test_usage_stop_and_missing),
        cmocka_unit_test(test_hard_links_count_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
