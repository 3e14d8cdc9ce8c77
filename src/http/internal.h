/*
 * http/internal.h — what the files of the HTTP layer share: the server, its
 * event loops, the exchange a handler answers, and the helpers that answer.
 *
 *   server.c   loops, listeners, start/stop, checks and authentication
 *   routes.c   the route table and the matcher (routes.h)
 *   respond.c  errors, JSON and plain answers, the access log, request ids
 *   invoke.c   POST /agents/{id}/invoke and the calls it waits for
 *   admin.c    listings, /runtime/..., deploys and reports on the admin queue
 *   workq.c    the admin queue: a bounded FIFO and its worker threads
 *
 * Everything here runs on the loop thread that owns the request, except
 * where a comment says otherwise. Nothing outside src/http/ includes this.
 */
#ifndef PAR_HTTP_INTERNAL_H
#define PAR_HTTP_INTERNAL_H

#include <pthread.h>
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

typedef struct loop {
    struct par_http *http;
    pthread_t thread;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;
    h2o_multithread_receiver_t admin_receiver;
    h2o_multithread_receiver_t auth_receiver;
    struct auth_wait *spare_wait; /* preallocated waiter for the next parked request */
    par_identity_t *who;          /* caller of the request being handled, NULL if anonymous */
    _Atomic int listen_fd;
    h2o_socket_t *listener;
    h2o_socket_t *super_sock;    /* the supervisor's epoll set, when this loop runs its I/O */
    int64_t accept_paused_until; /* ms; the listener rests after shedding at EMFILE */
    h2o_linklist_t calls;        /* hcall_t waiting for their agent, for gone_check() */
    SSL_CTX *ssl_ctx;            /* referenced: the TLS context new connections get */
    uint64_t ssl_gen;
    int64_t next_gone_check; /* ms */
    uint64_t rng;
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
    atomic_long pending;
    atomic_ulong cancelled; /* calls taken back because their client went away */
    par_http_tls_t *tls;    /* NULL: plain HTTP */
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

/* ---- admin.c ---- */

/* Starts and stops the admin queue (main thread). */
int par__http_admin_start(par_http_t *h);
void par__http_admin_stop(par_http_t *h);
/* The loop's receiver of finished admin jobs. */
void par__http_on_admin_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

#endif
