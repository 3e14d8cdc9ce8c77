/*
 * Unit tests for util/sdnotify.c: the datagram reaches a socket named by a
 * path and by an abstract name, a missing or bad $NOTIFY_SOCKET is told
 * apart, and $WATCHDOG_USEC counts only for the process $WATCHDOG_PID names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/sdnotify.h"

/* A datagram socket bound to `name` ('@' = abstract), as a manager's. */
static int listen_at(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] != '@'));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char got[256];
    ssize_t n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    got[n] = '\0';
    assert_string_equal(got, want);
}

static void test_path_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/par-sdnotify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = listen_at(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(par_sd_notify("READY=1\nSTATUS=ok"), 1);
    expect_datagram(fd, "READY=1\nSTATUS=ok");
    assert_int_equal(par_sd_notifyf("MAINPID=%d", 42), 1);
    expect_datagram(fd, "MAINPID=42");
    close(fd);
    /* nobody listens any more: an error, not a crash or a hang */
    assert_int_equal(par_sd_notify("WATCHDOG=1"), -ECONNREFUSED);
    unlink(path);
    assert_int_equal(par_sd_notify("WATCHDOG=1"), -ENOENT);
    rmdir(dir);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@par-test-sdnotify-%d", (int)getpid());
    int fd = listen_at(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(par_sd_notify("STOPPING=1"), 1);
    expect_datagram(fd, "STOPPING=1");
    close(fd);
}

static void test_no_or_bad_socket(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(par_sd_notify("READY=1"), 0); /* not under a manager: a no-op */
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(par_sd_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(par_sd_notify("READY=1"), -EINVAL);
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1); /* past sun_path */
    assert_int_equal(par_sd_notify("READY=1"), -EINVAL);
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(par_sd_notifyf("STATUS=%s", big), -EMSGSIZE);
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_env(void **state)
{
    (void)state;
    char pid[32];
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(par_sd_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "3000000", 1);
    assert_int_equal(par_sd_watchdog_usec(), 3000000); /* no WATCHDOG_PID: ours */
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(par_sd_watchdog_usec(), 3000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1); /* meant for the process that started us */
    assert_int_equal(par_sd_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    static const char *const bad[] = {"0", "-5", "12abc", "", " 5", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("WATCHDOG_USEC", bad[i], 1);
        assert_int_equal(par_sd_watchdog_usec(), 0);
    }
    unsetenv("WATCHDOG_USEC");
    uint64_t a = par_sd_monotonic_usec(), b = par_sd_monotonic_usec();
    assert_true(a > 0 && b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_no_or_bad_socket),
        cmocka_unit_test(test_watchdog_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
