/*
 * http/internal.h — what the files of the HTTP layer share: the server, its
 * event loops, the exchange a handler answers, and the helpers that answer.
 *
 *   server.c   loops, listeners, start/stop, checks and authentication
 *   routes.c   the route table and the matcher (routes.h)
 *   respond.c  errors, JSON and plain answers, the access log, request ids
 *   invoke.c   POST /agents/{id}/invoke and the calls it waits for
 *   runs.c     the runs routes: start, wait, read, list, cancel, delete
 *   sse.c      event streams of runs (text/event-stream), heartbeats
 *   forward.c  requests about another fleet node's runs, sent to their owner
 *   mcp*.c     MCP over Streamable HTTP (http/mcp.h)
 *   a2a*.c     A2A: agent cards, JSON-RPC and HTTP+JSON bindings over runs
 *   cors.c     cross-origin headers and preflights
 *   admin.c    listings, /runtime/..., deploys and reports on the admin queue
 *   workq.c    the admin queue: a bounded FIFO and its worker threads
 *
 * Everything here runs on the loop thread that owns the request, except
 * where a comment says otherwise. Nothing outside src/http/ includes this.
 */
#ifndef PAR_HTTP_INTERNAL_H
#define PAR_HTTP_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#define H2O_USE_EPOLL 1
#include <h2o.h>

#include "http/routes.h"
#include "http/server.h"
#include "http/tls.h"
#include "http/workq.h"
#include "runtime/runtime.h"
#include "util/json.h"

typedef struct loop {
    struct par_http *http;
    pthread_t thread;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;
    h2o_multithread_receiver_t admin_receiver;
    h2o_multithread_receiver_t auth_receiver;
    h2o_multithread_receiver_t run_receiver; /* news of watched runs (sse.c) */
    h2o_multithread_receiver_t fwd_receiver; /* answers of other nodes (forward.c) */
    h2o_linklist_t streams;                  /* run streams and waits of this loop (sse.c) */
    h2o_linklist_t forwards;      /* forwards not answered yet (forward.c), for the gone check */
    h2o_timeout_t heartbeat;      /* runs.heartbeat_ms: streams, oldest last send first */
    struct auth_wait *spare_wait; /* preallocated waiter for the next parked request */
    par_identity_t *who;          /* caller of the request being handled, NULL if anonymous */
    _Atomic int listen_fd;
    h2o_socket_t *listener;
    h2o_socket_t *super_sock; /* the supervisor's epoll set, when this loop runs its I/O */
    sem_t *set_up; /* posted by the loop's thread once its h2o objects exist (server.c) */
    int64_t accept_paused_until; /* ms; the listener rests after shedding at EMFILE */
    h2o_linklist_t calls;        /* hcall_t waiting for their agent, for gone_check() */
    SSL_CTX *ssl_ctx;            /* referenced: the TLS context new connections get */
    uint64_t ssl_gen;
    int64_t next_gone_check;   /* ms */
    int64_t next_stream_check; /* ms (sse.c) */
    uint64_t rng;
    _Atomic int64_t turned_ms; /* ms; end of this loop's last turn (par_http_stalled_ms) */
} loop_t;

struct par_http {
    par_runtime_t *rt;
    par_http_opts_t opts;
    h2o_globalconf_t config;
    loop_t *loops;
    unsigned nloops;
    _Atomic int stop;
    _Atomic int stop_accepting;
    _Atomic int access_log;
    _Atomic unsigned heartbeat_ms; /* runs.heartbeat_ms, as SIGHUP last set it */
    atomic_long pending;
    atomic_ulong cancelled; /* calls taken back because their client went away */
    atomic_int forwards;    /* forward.c's threads running */
    par_http_tls_t *tls;    /* NULL: plain HTTP */
    char *cors_block;       /* the strings opts.cors_origins point to */
    par_workq_t *admin;     /* deploys and reports, off the loops (admin.c) */
    char address[128];
};

/* One request on its way through the table: what a handler answers. */
typedef struct par_http_exchange {
    loop_t *loop;
    h2o_req_t *req;
    const char *rid; /* the request id */
    int64_t t0;      /* ns, when the request arrived */
    par_http_match_t m;
} par_http_exchange_t;

/* The loop running on this thread (NULL off the loops). */
extern __thread loop_t *par__http_tl_loop;

/* ---- respond.c ---- */

uint64_t par__http_rng(loop_t *l);
void par__http_hex64(uint64_t v, char *out);
/* A fresh 32-hex-digit id into out[33]. */
void par__http_new_id(loop_t *l, char *out);
int par__http_safe_id(const char *s, size_t n, size_t max);
h2o_iovec_t par__http_header(h2o_req_t *req, const char *name, size_t len);
/* X-Request-ID when it is sane, else a fresh one. */
void par__http_request_id(h2o_req_t *req, loop_t *l, char *out, size_t cap);
void par__http_send_body(h2o_req_t *req, int status, const char *ctype, const char *rid, char *body,
                         size_t len);
/* {"error","message","request_id"} with the status's HTTP code. */
void par__http_send_error(h2o_req_t *req, int status, const char *msg, size_t msglen,
                          const char *rid);
/* Sends `doc` (consumed) as JSON. */
void par__http_send_json(h2o_req_t *req, int http, json_t *doc, const char *rid);
/* Counts the response under `label` and writes the access log line. */
void par__http_access_log(par_http_t *h, h2o_req_t *req, const char *label, int http,
                          const char *rid, const par_call_t *c, int64_t t0_ns,
                          const char *err_name);

/* ---- invoke.c ---- */

/* Cancels the calls whose HTTP/1 client left (every 100 ms). */
void par__http_gone_check(loop_t *l);
/* The loop's receiver of call completions. */
void par__http_on_completions(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

/* The client's socket of an HTTP/1 request, or -1 (HTTP/2, or none). */
int par__http_client_fd(h2o_req_t *req);

/* The body fields invoke and runs read, in this order. */
enum { PAR_HTTP_F_INPUT, PAR_HTTP_F_CONTEXT, PAR_HTTP_F_TRACE, PAR_HTTP_F_INVOKE_COUNT };
/* Scans the body into f[0..n) (invoke's fields first); 0, or -1 answered. */
int par__http_scan_body(par_http_exchange_t *x, const char *body, size_t blen, par_json_field_t *f,
                        size_t n);
/* Fills `c` from the request (agent id from the path, caller, input and
 * context, trace, X-Par-Timeout-Ms); 0, or -1 answered (c freed). */
int par__http_fill_call(par_http_exchange_t *x, const char *body, size_t blen,
                        const par_json_field_t *f, par_call_t *c);

/* ---- runs.c ---- */

/* POST /agents/{id}/invoke with Accept: text/event-stream. */
int par__http_on_invoke_stream(par_http_exchange_t *x);
/* Whether an Accept header asks for text/event-stream. */
int par__http_wants_sse(h2o_req_t *req);
/* The caller of the exchange's request may see every run (runtime:admin,
 * or authentication off). */
int par__http_is_admin(par_http_exchange_t *x);

/* ---- sse.c ---- */

struct par_run;
/* Streams the run's events after `after` as text/event-stream, answering
 * (and logging) the request; takes over the caller's reference to `r`.
 * Errors before the first byte (after past the end, expired) are answered
 * with their status. Returns 0 (the handler's answer). */
int par__http_sse_start(par_http_exchange_t *x, struct par_run *r, uint64_t after);
/* Answers when the run ends, with par_run_answer (/runs/wait); takes over
 * the reference. Returns 0. */
int par__http_wait_start(par_http_exchange_t *x, struct par_run *r);
/* Another protocol's framing of a run's events and answer (http/a2a*.c,
 * http/mcp.c): a
 * framed stream's state starts with its operations. `events` rewrites whole
 * events (PAR's SSE text, runtime/runs.h) into what its client gets,
 * `answer` is a wait's answer once the run ended (body and HTTP status;
 * 0 = 200),
 * `free` releases the state when the stream goes. The first two answer
 * PAR_OK or PAR_E_NO_MEMORY. */
typedef struct par_http_framed par_http_framed_t;
typedef struct par_http_framer {
    int (*events)(par_http_framed_t *f, struct par_run *r, const char *sse, size_t len,
                  par_buf_t *out);
    int (*answer)(par_http_framed_t *f, struct par_run *r, par_buf_t *out, int *http);
    void (*free)(par_http_framed_t *f);
} par_http_framer_t;
struct par_http_framed {
    const par_http_framer_t *ops;
};
/* par__http_sse_start and par__http_wait_start through a framer; take over
 * `f` (freed on every path). */
int par__http_sse_start_framed(par_http_exchange_t *x, struct par_run *r, uint64_t after,
                               par_http_framed_t *f);
int par__http_wait_start_framed(par_http_exchange_t *x, struct par_run *r, par_http_framed_t *f);
/* Sets up and tears down a loop's streams (loop thread). */
void par__http_sse_init(loop_t *l);
/* Once per loop turn: takes over a new runs.heartbeat_ms. */
void par__http_sse_tick(loop_t *l);
/* Ends the streams whose HTTP/1 client left (called with the gone check). */
void par__http_sse_gone_check(loop_t *l);
/* The loop's receiver of run news. */
void par__http_on_run_news(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

/* ---- forward.c ---- */

/* A run route naming another fleet node's run: forwards it to its owner (or
 * answers it: owner dead, forwarding loop) and returns 1; 0 when the run is
 * this node's (or there is no fleet) and the handler goes on. `stream` and
 * `after` describe GET /runs/{id}/stream. */
int par__http_forward_run(par_http_exchange_t *x, int stream, uint64_t after);
/* Answers the forwards whose HTTP/1 client left before the owner answered
 * (called with the gone check). */
void par__http_forward_gone_check(loop_t *l);
/* The loop's receiver of forwarded answers. */
void par__http_on_forward_news(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

/* ---- cors.c ---- */

/* Adds the CORS headers when the request's Origin is allowed. */
void par__http_cors_headers(par_http_t *h, h2o_req_t *req);
/* Answers an OPTIONS preflight of route `r`: 204, or 403 forbidden for an
 * origin not allowed. Returns the HTTP status sent. */
int par__http_cors_preflight(par_http_t *h, h2o_req_t *req, const par_http_route_t *r,
                             const char *rid);

/* ---- admin.c ---- */

/* Starts and stops the admin queue (main thread). */
int par__http_admin_start(par_http_t *h);
void par__http_admin_stop(par_http_t *h);
/* The loop's receiver of finished admin jobs. */
void par__http_on_admin_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

#endif
