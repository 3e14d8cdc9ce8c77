/*
 * http/listener.c — see listener.h.
 *
 * Why a reserve descriptor: at EMFILE, accept() leaves the connection in the
 * backlog and the (level-triggered) listener stays readable, so an event loop
 * wakes, fails and wakes again at full speed. Closing the reserve makes room
 * to take one connection off the backlog and close it; the listener is then
 * paused by the caller, so the cost at the limit is a few syscalls per pause.
 */
#include "http/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "obs/log.h"

static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;
static int reserve_fd = -1;
static atomic_ulong shed_total;
static _Atomic long last_warn_s;

int par__http_listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[256] = "127.0.0.1", port[16] = "8080";
    const char *colon = strrchr(s, ':');
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || (size_t)(rb - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        if (rb[1] == ':')
            snprintf(port, sizeof(port), "%s", rb + 2);
        else if (rb[1] != '\0')
            return -1;
    } else if (colon) {
        if ((size_t)(colon - s) >= sizeof(host))
            return -1;
        if (colon > s) {
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = '\0';
        } else {
            strcpy(host, "0.0.0.0");
        }
        snprintf(port, sizeof(port), "%s", colon + 1);
    } else {
        snprintf(port, sizeof(port), "%s", s);
    }
    /* getaddrinfo takes any number and keeps its low 16 bits: 99999 is 34463 */
    size_t pl = strspn(port, "0123456789");
    if (pl == 0 || port[pl] != '\0' || pl > 5 || atol(port) > 65535)
        return -1;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int par__http_listen_open(const struct sockaddr_storage *ss, socklen_t sl, int reuse_port,
                          const char *name, char *why, size_t cap)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(why, cap, "cannot listen on %s: %s", name, strerror(errno));
        return -1;
    }
    int one = 1;
    /* SO_REUSEADDR only lets a restart bind past TIME_WAIT; it never lets two
     * listeners share the address. SO_REUSEPORT does, so it is opt-in. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, sl) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        if (e == EADDRINUSE)
            snprintf(why, cap, "%s is already in use", name);
        else
            snprintf(why, cap, "cannot listen on %s: %s", name, strerror(e));
        close(fd);
        return -1;
    }
    return fd;
}

void par__http_nofile_init(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t was = rl.rlim_cur;
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                rl.rlim_cur = was;
        }
        par_log_msg(PAR_LOG_INFO,
                    "RLIMIT_NOFILE: %llu open descriptors (was %llu, hard limit %llu)",
                    (unsigned long long)rl.rlim_cur, (unsigned long long)was,
                    (unsigned long long)rl.rlim_max);
    }
    pthread_mutex_lock(&reserve_lock);
    if (reserve_fd < 0)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_unlock(&reserve_lock);
}

static void warn_at_limit(int err)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long last = atomic_load(&last_warn_s);
    if (ts.tv_sec - last < 10 || !atomic_compare_exchange_strong(&last_warn_s, &last, ts.tv_sec))
        return;
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);
    par_log_msg(PAR_LOG_WARN,
                "at the open descriptor limit (%s, RLIMIT_NOFILE %llu): new connections are "
                "closed at once until descriptors free up (%lu so far)",
                err == EMFILE ? "EMFILE" : "ENFILE", (unsigned long long)rl.rlim_cur,
                atomic_load(&shed_total));
}

int par__http_shed(int listen_fd, int err, int max)
{
    if (err != EMFILE && err != ENFILE)
        return 0;
    pthread_mutex_lock(&reserve_lock);
    if (reserve_fd >= 0) {
        close(reserve_fd);
        reserve_fd = -1;
    }
    for (int i = 0; i < max; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
        atomic_fetch_add(&shed_total, 1);
    }
    reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_unlock(&reserve_lock);
    warn_at_limit(err);
    return 1;
}

unsigned long par__http_shed_count(void)
{
    return atomic_load(&shed_total);
}
