/*
 * util/sdnotify.c — see sdnotify.h. The protocol is systemd's interface
 * stability promise (sd_notify(3), NOTES): a single datagram per message;
 * the manager reads the sender's credentials from the socket itself
 * (SO_PASSCRED), so nothing but the text is sent.
 */
#include "util/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Fills `sa` from $NOTIFY_SOCKET: 0 with its length in `len`, 1 when unset,
 * -EINVAL for a name that is not an absolute path or an abstract name, or
 * does not fit sun_path. */
static int notify_address(struct sockaddr_un *sa, socklen_t *len)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL || *name == '\0')
        return 1;
    size_t n = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || n < 2 || n >= sizeof(sa->sun_path))
        return -EINVAL;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@')
        sa->sun_path[0] = '\0'; /* abstract: the length counts, no terminating NUL */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    return 0;
}

int par_sd_notify(const char *state)
{
    struct sockaddr_un sa;
    socklen_t len;
    int rc = notify_address(&sa, &len);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    size_t n = strlen(state);
    ssize_t sent;
    do
        sent = sendto(fd, state, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    while (sent < 0 && errno == EINTR);
    rc = sent < 0 ? -errno : (size_t)sent == n ? 1 : -EMSGSIZE;
    close(fd);
    return rc;
}

int par_sd_notifyf(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return -EMSGSIZE;
    return par_sd_notify(msg);
}

/* A decimal number that fills the whole string, > 0; else 0. */
static unsigned long long parse_positive(const char *s)
{
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return (errno != 0 || *end != '\0') ? 0 : v;
}

uint64_t par_sd_watchdog_usec(void)
{
    const char *pid = getenv("WATCHDOG_PID");
    if (pid != NULL && *pid && parse_positive(pid) != (unsigned long long)getpid())
        return 0; /* meant for another process (we were started by one) */
    return parse_positive(getenv("WATCHDOG_USEC"));
}

uint64_t par_sd_monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
