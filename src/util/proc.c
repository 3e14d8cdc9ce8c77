/*
 * util/proc.c — see proc.h.
 */
#include "util/proc.h"
#include "util/clock.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <par/par.h>

int par_proc_run(const char *const argv[], const char *const envp[], uint32_t timeout_ms,
                 par_buf_t *out, par_proc_result_t *res)
{
    memset(res, 0, sizeof(*res));
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) != 0)
        return PAR_E_IO;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 2);
    posix_spawnattr_init(&at);
    /* its own process group, so a deadline kills what it started too */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    pid_t pid;
    /* posix_spawn's prototype predates const; it does not modify them */
    int rc = posix_spawn(&pid, argv[0], &fa, &at, (char *const *)(uintptr_t)argv,
                         (char *const *)(uintptr_t)envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pp[1]);
    if (rc != 0) {
        close(pp[0]);
        errno = rc;
        return PAR_E_IO;
    }
    int64_t until = par_mono_ms() + timeout_ms;
    int open_pipe = 1;
    char chunk[4096];
    while (open_pipe) {
        int64_t left = until - par_mono_ms();
        if (left <= 0) {
            res->timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd pfd = {.fd = pp[0], .events = POLLIN};
        int n = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        ssize_t r = read(pp[0], chunk, sizeof(chunk));
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            open_pipe = 0;
        else if (out) {
            /* keep the tail: a program's verdict comes last */
            size_t got = (size_t)r;
            if (out->limit && out->len + got > out->limit) {
                size_t drop = out->len + got - out->limit;
                if (drop > out->len)
                    drop = out->len;
                memmove(out->data, out->data + drop, out->len - drop);
                out->len -= drop;
            }
            par_buf_append(out, chunk, got);
        }
    }
    close(pp[0]);
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, res->timed_out ? 0 : WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return PAR_E_IO;
        if (w == 0) {
            /* output closed but the program lingers: give it until the deadline */
            if (par_mono_ms() >= until) {
                res->timed_out = 1;
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
            } else {
                struct timespec ts = {0, 5 * 1000000};
                nanosleep(&ts, NULL);
            }
        }
    }
    if (WIFEXITED(st)) {
        res->exited = 1;
        res->code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
        res->code = WTERMSIG(st);
    }
    if (out)
        par_buf_terminate(out);
    return PAR_OK;
}

int par_file_read(const char *path, size_t cap, par_buf_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if ((uint64_t)st.st_size > cap) {
        close(fd);
        errno = EFBIG;
        return -1;
    }
    char chunk[8192];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > cap || par_buf_append(out, chunk, (size_t)r) != PAR_OK) {
            close(fd);
            errno = EFBIG;
            return -1;
        }
    }
    close(fd);
    par_buf_terminate(out);
    return 0;
}

int par_exe_relative(const char *rel, int mode, char *out, size_t n)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0)
        return -1;
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return -1;
    if ((size_t)snprintf(out, n, "%.*s/%s", (int)(slash - self), self, rel) >= n)
        return -1;
    return access(out, mode) == 0 ? 0 : -1;
}

int par_install_relative(const char *rel, int mode, char *out, size_t n)
{
    Dl_info info;
    if (dladdr((void *)par_install_relative, &info) == 0 || info.dli_fname == NULL)
        return -1;
    char self[PATH_MAX];
    if (realpath(info.dli_fname, self) == NULL)
        return -1;
    for (int up = 0; up < 2; up++) { /* <prefix>/lib/libpar.so -> <prefix> */
        char *slash = strrchr(self, '/');
        if (slash == NULL || slash == self)
            return -1;
        *slash = '\0';
    }
    if ((size_t)snprintf(out, n, "%s/%s", self, rel) >= n)
        return -1;
    return access(out, mode) == 0 ? 0 : -1;
}
