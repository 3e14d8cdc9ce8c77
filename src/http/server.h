/*
 * http/server.h — the HTTP front door (libh2o-evloop).
 *
 * Owns the listening sockets and one event-loop thread per configured
 * thread; each loop parses, routes and answers, and never blocks on agent
 * code: invocations are handed to the runtime and their completions come
 * back through a per-loop h2o_multithread queue. Every request is
 * authenticated and authorized (auth/auth.h) before it is routed; a request
 * whose token needs the issuer's keys refreshed is parked and resumed from the
 * same queue. Start and stop from the main thread. HTTP/1.1 always, HTTPS
 * with tls_cert/tls_key, HTTP/2 only with http2; at most max_in_flight
 * invocations at once; a call whose client leaves is cancelled.
 */
#ifndef PAR_HTTP_SERVER_H
#define PAR_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <par/par.h>

#include "auth/auth.h"
#include "util/buf.h"

typedef struct par_http par_http_t;

/* limits.max_in_flight when not configured: invocations accepted and not yet
 * answered, all agents together. At ~4 KiB of runtime memory per call this
 * bounds what one client (or one HTTP/2 connection) can make the runtime hold
 * to a few MiB, far above what the default per-package limits can run at once. */
#define PAR_HTTP_MAX_IN_FLIGHT_DEFAULT 1024

/* Origins http.cors.origins may list. */
#define PAR_HTTP_CORS_MAX 32

typedef struct par_http_opts {
    const char *listen;        /* "127.0.0.1:8080", "[::1]:8080", ":8080" */
    unsigned threads;          /* event loops, default 1 */
    size_t max_body;           /* hard cap on any request body, default 16 MiB */
    int access_log;            /* one log line per request, default on */
    par_auth_t *auth;          /* borrowed; NULL or mode off = no authentication */
    int http2;                 /* http.http2: accept HTTP/2 (h2c and ALPN h2), default 0 */
    int reuse_port;            /* http.reuse_port: SO_REUSEPORT on the listener, default 0 */
    unsigned max_in_flight;    /* limits.max_in_flight: invocations accepted and not yet
                                  answered, runtime-wide; beyond it 503 over_capacity */
    const char *tls_cert;      /* tls.cert: PEM certificate chain; NULL = plain HTTP */
    const char *tls_key;       /* tls.key: PEM private key */
    const char *tls_client_ca; /* tls.client_ca: require client certificates signed by it */
    unsigned heartbeat_ms;     /* runs.heartbeat_ms: ": keep-alive" on a silent event stream,
                                  default 15000 */
    /* http.cors.origins (borrowed until par_http_start returns; more than
     * PAR_HTTP_CORS_MAX is refused) and http.cors.credentials (http/cors.c) */
    const char *cors_origins[PAR_HTTP_CORS_MAX];
    unsigned cors_norigins;
    int cors_credentials;
} par_http_opts_t;

/* 0 when the CORS options are usable, else -1 with `err` naming the bad value
 * (an origin that is not scheme://host[:port], "*" with credentials, too many
 * origins). par_http_start refuses the same. Any thread. */
int par_http_cors_check(const par_http_opts_t *o, char *err, size_t cap);

/* Binds and starts serving. On failure logs why and returns an error. */
int par_http_start(par_runtime_t *rt, const par_http_opts_t *opts, par_http_t **out);
/* The address actually bound ("127.0.0.1:8080"). */
const char *par_http_address(const par_http_t *h);
/* Whether the listener speaks TLS (tls.cert and tls.key were given). */
int par_http_is_tls(const par_http_t *h);
/* Reads tls.cert, tls.key and tls.client_ca again from the same files: new
 * connections get the new certificate, open ones keep theirs. On error the
 * old certificate stays and `err` says why. PAR_OK when TLS is off. Any thread. */
int par_http_reload_tls(par_http_t *h, par_buf_t *err);
/* Closes the listening sockets (new connections are refused); requests on
 * open connections are still served. */
void par_http_stop_accepting(par_http_t *h);
/* Sets runs.heartbeat_ms for the event streams (SIGHUP; any thread): each
 * loop takes it over within one turn. */
void par_http_set_heartbeat(par_http_t *h, unsigned ms);
/* Turns the per-request access log line on or off (any thread). */
void par_http_set_access_log(par_http_t *h, int on);
/* How long ago the slowest event loop last went round, in ms (any thread).
 * An idle loop turns at least every 50 ms; a loop stuck in a callback (or a
 * supervisor poll, on the loop that runs the workers' I/O) ages: `par serve`
 * stops feeding the service manager's watchdog while it is past half the
 * watchdog's timeout. */
int64_t par_http_stalled_ms(par_http_t *h);
/* Invocations accepted and not yet answered. */
long par_http_pending(par_http_t *h);
/* Stops accepting, closes connections and joins the loop threads. */
void par_http_stop(par_http_t *h);

#endif
