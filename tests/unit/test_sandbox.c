/* Unit tests for sandbox/sandbox.c: the Landlock masks per ABI, uid/gid
 * resolution, and the whole sandbox applied to a forked child. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <grp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <par/par.h>

#include "sandbox/sandbox.h"

static void test_masks(void **state)
{
    (void)state;
    uint64_t fs, net, sc;
    par_sandbox_landlock_masks(0, &fs, &net, &sc);
    assert_true(fs == 0 && net == 0 && sc == 0);
    par_sandbox_landlock_masks(1, &fs, &net, &sc);
    assert_true(fs == 0x1fff && net == 0 && sc == 0); /* execute … make_sym */
    par_sandbox_landlock_masks(2, &fs, &net, &sc);
    assert_true(fs == 0x3fff); /* + refer */
    par_sandbox_landlock_masks(3, &fs, &net, &sc);
    assert_true(fs == 0x7fff && net == 0); /* + truncate */
    par_sandbox_landlock_masks(4, &fs, &net, &sc);
    assert_true(fs == 0x7fff && net == 0x3 && sc == 0); /* + TCP bind/connect */
    par_sandbox_landlock_masks(5, &fs, &net, &sc);
    assert_true(fs == 0xffff); /* + ioctl on devices */
    par_sandbox_landlock_masks(6, &fs, &net, &sc);
    assert_true(fs == 0xffff && net == 0x3 && sc == 0x3); /* + abstract unix, signal scopes */
    par_sandbox_landlock_masks(7, &fs, &net, &sc);
    assert_true(fs == 0xffff && net == 0x3 && sc == 0x3);
}

static void test_resolve_ids(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    uid_t uid;
    gid_t gid;
    struct passwd *nobody = getpwnam("nobody");
    if (nobody) {
        uid_t want_uid = nobody->pw_uid;
        gid_t want_gid = nobody->pw_gid;
        assert_int_equal(par_sandbox_resolve_ids("nobody", NULL, &uid, &gid, &err), PAR_OK);
        assert_true(uid == want_uid && gid == want_gid);
    }
    assert_int_equal(par_sandbox_resolve_ids("12345", "54321", &uid, &gid, &err), PAR_OK);
    assert_true(uid == 12345 && gid == 54321);
    struct group *root = getgrgid(0);
    assert_non_null(root);
    assert_int_equal(par_sandbox_resolve_ids("0", root->gr_name, &uid, &gid, &err), PAR_OK);
    assert_true(uid == 0 && gid == 0);
    /* a number without a passwd entry needs an explicit group */
    assert_int_equal(par_sandbox_resolve_ids("4000000000", NULL, &uid, &gid, &err),
                     PAR_E_NOT_FOUND);
    par_buf_reset(&err);
    assert_int_equal(par_sandbox_resolve_ids("no-such-user-par", NULL, &uid, &gid, &err),
                     PAR_E_NOT_FOUND);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "sandbox.user: no user 'no-such-user-par'"));
    par_buf_reset(&err);
    assert_int_equal(par_sandbox_resolve_ids("0", "no-such-group-par", &uid, &gid, &err),
                     PAR_E_NOT_FOUND);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "sandbox.group"));
    par_buf_free(&err);
}

/* In the child: one failed check = one bit of the exit code. */
#define CHECK(bit, cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check %d failed: %s (errno %s)\n", bit, #cond, strerror(errno));      \
            fails |= 1 << (bit);                                                                   \
        }                                                                                          \
    } while (0)

static int child(const char *root, const char *scratch, const char *outside)
{
    int fails = 0;
    par_sandbox_opts_t o = {
        .root = root, .scratch = scratch, .max_files = 64, .uid = -1, .gid = -1, .max_procs = 64};
    if (geteuid() == 0)
        o.uid = o.gid = 65534;
    json_t *report = NULL;
    par_buf_t err;
    par_buf_init(&err, 0);
    if (par_sandbox_apply(&o, &report, &err) != PAR_OK) {
        par_buf_terminate(&err);
        fprintf(stderr, "apply: %s\n", err.data);
        return 0x7f;
    }
    int abi = par_sandbox_landlock_abi();
    json_t *ll = json_object_get(report, "landlock");
    CHECK(0, abi ? json_integer_value(ll) == abi : json_is_false(ll));
    CHECK(1, json_is_true(json_object_get(report, "no_new_privs")));
    int seccomp = json_is_true(json_object_get(report, "seccomp"));
    CHECK(2,
          json_integer_value(json_object_get(json_object_get(report, "rlimits"), "nofile")) == 64);
    if (abi) {
        errno = 0;
        CHECK(3, open(outside, O_RDONLY) < 0 && errno == EACCES);
        char path[512];
        snprintf(path, sizeof(path), "%s/x", root);
        errno = 0;
        CHECK(4, open(path, O_WRONLY | O_CREAT, 0644) < 0 && errno == EACCES);
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/ok", scratch);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    CHECK(5, fd >= 0);
    if (fd >= 0)
        close(fd);
    if (seccomp) {
        errno = 0;
        CHECK(6, socket(AF_INET, SOCK_STREAM, 0) < 0 && errno == EPERM);
        errno = 0;
        CHECK(7, fork() < 0 && errno == EPERM);
        errno = 0;
        CHECK(8, unshare(CLONE_NEWNS) != 0 && errno == EPERM);
        errno = 0;
        CHECK(9, kill(getppid(), 0) != 0 && errno == EPERM);
        CHECK(10, kill(getpid(), 0) == 0); /* itself: yes */
        int sv[2];
        CHECK(11, socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    }
    if (geteuid() == 0 || getuid() == 65534)
        CHECK(12, getuid() == 65534 && json_integer_value(json_object_get(report, "uid")) == 65534);
    json_decref(report);
    par_buf_free(&err);
    return fails ? 1 : 0;
}

static void test_apply_in_child(void **state)
{
    (void)state;
    char root[] = "/tmp/par-sb-root-XXXXXX", scratch[] = "/tmp/par-sb-scratch-XXXXXX";
    char outside[] = "/tmp/par-sb-outside-XXXXXX";
    assert_non_null(mkdtemp(root));
    assert_non_null(mkdtemp(scratch));
    int fd = mkstemp(outside);
    assert_true(fd >= 0);
    close(fd);
    /* the DAC would allow all of it: only the sandbox may say no */
    chmod(root, 0755);
    chmod(outside, 0644);
    if (geteuid() == 0)
        assert_int_equal(chown(scratch, 65534, 65534), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child(root, scratch, outside));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char ok[600];
    snprintf(ok, sizeof(ok), "%s/ok", scratch);
    unlink(ok);
    rmdir(scratch);
    rmdir(root);
    unlink(outside);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_resolve_ids),
        cmocka_unit_test(test_apply_in_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
