/*
 * util/sdnotify.h — the service manager's notification protocol (systemd's
 * sd_notify(3)), written out: one datagram of newline-separated KEY=VALUE
 * lines sent to the AF_UNIX datagram socket named by $NOTIFY_SOCKET (a name
 * starting with '@' is in the abstract namespace). No libsystemd.
 *
 * Called by `par serve` (cli/serve.c) from its main thread: READY=1 when the
 * listeners are up and the packages mounted, RELOADING=1 around SIGHUP,
 * STOPPING=1 at the start of a shutdown, WATCHDOG=1 from the loop that checks
 * that the event loops still turn. Any thread may call it (no shared state);
 * it never blocks (the socket is non-blocking) and never fails the caller:
 * outside systemd every call is a no-op.
 */
#ifndef PAR_UTIL_SDNOTIFY_H
#define PAR_UTIL_SDNOTIFY_H

#include <stdint.h>

/* Sends `state` ("READY=1\nSTATUS=…") to $NOTIFY_SOCKET. Returns 1 when it
 * was sent, 0 when no socket is named (not started by a service manager),
 * -errno when the name is unusable or the send failed. */
int par_sd_notify(const char *state);

/* printf-style par_sd_notify; a message longer than 4 KiB is -EMSGSIZE. */
int par_sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog timeout the manager set for this process, in microseconds:
 * $WATCHDOG_USEC when it is a positive number and $WATCHDOG_PID is unset or
 * names this process; else 0 (no watchdog). */
uint64_t par_sd_watchdog_usec(void);

/* CLOCK_MONOTONIC in microseconds, the clock of MONOTONIC_USEC=. */
uint64_t par_sd_monotonic_usec(void);

#endif
