/*
 * http/listener.h — the listening socket and the descriptor budget.
 *
 * Owns: parsing the listen address, binding it (refusing an address that is
 * in use unless SO_REUSEPORT was asked for), raising RLIMIT_NOFILE to the hard
 * limit at start, and shedding connections when accept() fails for lack of
 * descriptors (one reserve descriptor, accept-and-close) so the loop never
 * spins on a listener it cannot drain. Called by http/server.c: parse/open/
 * raise from the starting thread, par__http_shed() from any loop thread.
 * Never blocks, never logs more than one line per 10 s while at the limit.
 */
#ifndef PAR_HTTP_LISTENER_H
#define PAR_HTTP_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

/* "127.0.0.1:8080", "[::1]:8080", ":8080" (all IPv4 addresses), "8080". 0 or -1. */
int par__http_listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sl);

/* A bound, listening, non-blocking socket, or -1 with a one-line reason in
 * `why` ("127.0.0.1:8080 is already in use"). `name` is the address as the
 * operator wrote it. */
int par__http_listen_open(const struct sockaddr_storage *ss, socklen_t sl, int reuse_port,
                          const char *name, char *why, size_t cap);

/* Raises the soft RLIMIT_NOFILE to the hard limit and logs both; keeps one
 * reserve descriptor for par__http_shed(). Call once at start. */
void par__http_nofile_init(void);

/* accept() failed with `err`. When it is the descriptor limit (EMFILE or
 * ENFILE), frees the reserve, accepts and closes up to `max` waiting
 * connections on `listen_fd` (so their clients see a close, not a hang),
 * takes the reserve back and returns 1: the caller pauses the listener
 * briefly. Any other error: 0. Any loop thread. */
int par__http_shed(int listen_fd, int err, int max);

/* Connections shed at the descriptor limit since start. */
unsigned long par__http_shed_count(void);

#endif
