/*
 * http/server.c — see server.h. The event loops, the listeners, start and
 * stop, and the way every request takes through the layer:
 *
 *   on_req()   the route is matched once (http/routes.h); the checks of
 *              http/check.c (framing, header encoding, ids in the path)
 *   serve()    authentication: open paths skip it; otherwise the credential
 *              becomes an identity and the route's permission is checked
 *              (runtime:admin, or agents:invoke for the agent id); a request
 *              whose token needs the issuer's keys refreshed is parked
 *   dispatch() 405 for a method the route lacks, else its handler
 *              (http/invoke.c, http/admin.c), with the identity on the loop
 *              (loop_t.who) for the handlers and the access log
 *
 * Beside it: http/respond.c (answers, access log), http/listener.c
 * (binding, descriptor budget), http/tls.c (certificates, reload, client
 * identities). With one loop, that loop also runs the supervisor's I/O
 * (runtime/io.h), so a worker's answer reaches the response without another
 * thread. Loop threads run everything here but start and stop (main thread)
 * and auth_wait_ready() (the token provider's refresh thread).
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/check.h"
#include "http/internal.h"
#include "http/listener.h"
#include "obs/log.h"
#include "runtime/io.h"

/* ---- dispatch ------------------------------------------------------------------- */

/* Answers a request that passed authentication. */
static int dispatch(par_http_exchange_t *x)
{
    par_http_t *h = x->loop->http;
    const par_http_route_t *r = x->m.route;
    int answered;
    if (r == NULL) {
        par__http_send_error(x->req, PAR_E_NOT_FOUND, H2O_STRLIT("no such route"), x->rid);
        answered = 1;
    } else if (x->m.wrong_method) {
        par__http_send_error(x->req, PAR_E_METHOD_NOT_ALLOWED, r->wrong, strlen(r->wrong), x->rid);
        answered = 1;
    } else {
        answered = r->handler(x);
    }
    if (answered)
        par__http_access_log(h, x->req, par__http_route_label(&x->m), x->req->res.status, x->rid,
                             NULL, x->t0, NULL);
    return 0;
}

/* ---- authentication ------------------------------------------------------------- */

/* A request parked while the issuer's keys are refreshed (auth/oidc.h). */
typedef struct auth_wait {
    par_auth_waiter_t waiter;
    loop_t *loop;
    h2o_req_t *req; /* NULL once the client is gone */
    struct auth_wait **guard;
    h2o_multithread_message_t msg;
    int64_t t0;
    char rid[PAR_REQUEST_ID_MAX + 1];
} auth_wait_t;

/* 401/403/503 with the challenge RFC 6750 asks for. The message never says
 * why a token was refused: that goes to the log only. */
static void send_auth_error(par_http_t *h, h2o_req_t *req, int status, const char *msg,
                            const char *rid)
{
    const char *challenge = NULL;
    if (status == PAR_E_UNAUTHORIZED) {
        challenge = "Bearer realm=\"par\"";
        int mode = par_auth_mode(h->opts.auth);
        msg = mode == PAR_AUTH_API_KEY
                  ? "this route needs credentials: send Authorization: Bearer <key> or "
                    "X-API-Key: <key>"
              : mode == PAR_AUTH_PLUGIN
                  ? "this route needs credentials"
                  : "this route needs credentials: send Authorization: Bearer <token>";
    } else if (status == PAR_E_INVALID_TOKEN) {
        challenge = "Bearer realm=\"par\", error=\"invalid_token\"";
        msg = par_auth_mode(h->opts.auth) == PAR_AUTH_PLUGIN ? "the credentials are not valid"
                                                             : "the bearer credential is not valid";
    } else if (status == PAR_E_FORBIDDEN) {
        challenge = "Bearer realm=\"par\", error=\"insufficient_scope\"";
    } else if (status == PAR_E_AUTH_UNAVAILABLE) {
        msg = par_auth_mode(h->opts.auth) == PAR_AUTH_PLUGIN
                  ? "the authentication provider cannot decide now; try again shortly"
                  : "the token issuer's signing keys have not been obtained yet; try again shortly";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
    } else {
        msg = par_strerror(status);
    }
    if (challenge)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge,
                       strlen(challenge));
    par__http_send_error(req, status, msg, strlen(msg), rid);
}

static void auth_wait_dispose(void *p)
{
    auth_wait_t **slot = p;
    if (*slot) {
        (*slot)->req = NULL;
        (*slot)->guard = NULL;
    }
}

/* Called by the provider's refresh thread: hand the request back to its loop. */
static void auth_wait_ready(par_auth_waiter_t *pw)
{
    auth_wait_t *w = H2O_STRUCT_FROM_MEMBER(auth_wait_t, waiter, pw);
    h2o_multithread_send_message(&w->loop->auth_receiver, &w->msg);
}

static int serve(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0, const par_http_match_t *m,
                 auth_wait_t *resumed);

static void on_auth_ready(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *msg =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&msg->link);
        auth_wait_t *w = H2O_STRUCT_FROM_MEMBER(auth_wait_t, msg, msg);
        atomic_fetch_sub(&w->loop->http->pending, 1);
        if (w->req) {
            if (w->guard)
                *w->guard = NULL;
            /* matched again from the request (its path lives in its pool);
             * checked again, never parked twice */
            h2o_req_t *req = w->req;
            par_http_match_t m;
            par__http_route_match(par__http_method(req->method.base, req->method.len),
                                  req->path_normalized.base, req->path_normalized.len, &m);
            serve(w->loop, req, w->rid, w->t0, &m, w);
        }
        par_auth_waiter_done(&w->waiter);
        free(w);
    }
}

/* With tls.client_ca and authentication off, the verified client
 * certificate's subject is the caller (with authentication on, the bearer
 * credential decides, and the certificate only admits the connection). */
static par_identity_t *client_identity(par_http_t *h, h2o_req_t *req)
{
    char subject[PAR_SUBJECT_MAX + 1];
    h2o_socket_t *sock =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (par__http_tls_subject(h->tls, sock, subject, sizeof(subject)) != 0)
        return NULL;
    return par_identity_new(subject, NULL);
}

/* Parks the request until the issuer's keys are there: returns the waiter
 * to hand to par_auth_authenticate(), or NULL (out of memory: not parked). */
static auth_wait_t *park_prepare(loop_t *l, const char *rid, int64_t t0)
{
    if (l->spare_wait == NULL)
        l->spare_wait = calloc(1, sizeof(auth_wait_t));
    auth_wait_t *w = l->spare_wait;
    if (w) {
        /* ready() may run on another thread before authenticate returns */
        w->waiter.ready = auth_wait_ready;
        w->loop = l;
        w->t0 = t0;
        snprintf(w->rid, sizeof(w->rid), "%s", rid);
    }
    return w;
}

/* A header of the request for a request provider (auth.h): names are
 * matched case-insensitively (h2o keeps them in lower case). */
static int creds_header(void *ctx, const char *name, par_slice_t *v)
{
    char low[128];
    size_t n = strlen(name);
    if (n >= sizeof(low))
        return 0;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    h2o_iovec_t hv = par__http_header(ctx, low, n);
    if (hv.base == NULL)
        return 0;
    v->ptr = hv.base;
    v->len = hv.len;
    return 1;
}

/* The connection's peer as text; an IPv4-mapped IPv6 address as IPv4. */
static void peer_text(h2o_req_t *req, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    out[0] = '\0';
    socklen_t sl = req->conn->callbacks->get_peername
                       ? req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss)
                       : 0;
    if (sl == 0)
        return;
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    } else if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            inet_ntop(AF_INET, a6->s6_addr + 12, out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a6, out, (socklen_t)cap);
    }
}

/* Authenticates and authorizes: PAR_OK with *who (NULL: anonymous), or a
 * status already answered, or PAR_AUTH_PENDING (parked). `resumed`: the
 * waiter of the round that parked the request (it may be parked once). */
static int authenticate(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0,
                        const par_http_match_t *m, auth_wait_t *resumed, par_identity_t **who)
{
    par_http_t *h = l->http;
    par_auth_t *auth = h->opts.auth;
    h2o_iovec_t az = par__http_header(req, H2O_STRLIT("authorization"));
    h2o_iovec_t key = par__http_header(req, H2O_STRLIT("x-api-key"));
    par_auth_creds_t cr = {.authorization = {az.base, az.len}, .api_key = {key.base, key.len}};
    char peer[INET6_ADDRSTRLEN], method[16], path[1024];
    if (par_auth_mode(auth) == PAR_AUTH_PLUGIN) { /* only a request provider reads these */
        peer_text(req, peer, sizeof(peer));
        snprintf(method, sizeof(method), "%.*s", (int)req->method.len, req->method.base);
        size_t plen = req->path_normalized.len < sizeof(path) - 1 ? req->path_normalized.len
                                                                  : sizeof(path) - 1;
        memcpy(path, req->path_normalized.base, plen);
        path[plen] = '\0';
        cr.peer_addr = peer;
        cr.method = method;
        cr.path = path;
        cr.header = creds_header;
        cr.header_ctx = req;
        cr.resumed = resumed ? &resumed->waiter : NULL;
    }
    auth_wait_t *w = resumed == NULL ? park_prepare(l, rid, t0) : NULL;
    int rc = par_auth_authenticate(auth, &cr, w ? &w->waiter : NULL, rid, who);
    const char *label = par__http_route_label(m);
    if (rc == PAR_AUTH_PENDING) {
        /* the loop answers on_auth_ready only after we return: safe to finish here */
        assert(w != NULL);
        l->spare_wait = NULL;
        w->req = req;
        auth_wait_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), auth_wait_dispose);
        *slot = w;
        w->guard = slot;
        atomic_fetch_add(&h->pending, 1);
        return rc;
    }
    if (rc != PAR_OK) {
        send_auth_error(h, req, rc, NULL, rid);
        par__http_access_log(h, req, label, par_status_http(rc), rid, NULL, t0,
                             par_status_name(rc));
        return rc;
    }
    par_http_need_t need = par__http_route_need(m);
    char msg[400];
    rc = need == PAR_HTTP_NEED_ADMIN ? par_auth_require_admin(auth, *who, rid, msg, sizeof(msg))
         : need == PAR_HTTP_NEED_INVOKE
             ? par_auth_require_invoke(auth, *who, m->var, m->var_len, rid, msg, sizeof(msg))
             : PAR_OK;
    if (rc != PAR_OK) {
        l->who = *who;
        send_auth_error(h, req, rc, msg, rid);
        par__http_access_log(h, req, label, par_status_http(rc), rid, NULL, t0,
                             par_status_name(rc));
        l->who = NULL;
        par_identity_unref(*who);
        *who = NULL;
    }
    return rc;
}

/* Authenticates and authorizes, then dispatches. A request may be parked
 * once while the issuer's keys are refreshed (or a plugin provider answers):
 * `resumed` is then that round's waiter. */
static int serve(loop_t *l, h2o_req_t *req, const char *rid, int64_t t0, const par_http_match_t *m,
                 auth_wait_t *resumed)
{
    par_http_t *h = l->http;
    h2o_iovec_t p = req->path_normalized;
    par_identity_t *who = NULL;
    if (par_auth_enabled(h->opts.auth) && !par_auth_is_open(h->opts.auth, p.base, p.len) &&
        authenticate(l, req, rid, t0, m, resumed, &who) != PAR_OK)
        return 0;
    if (who == NULL && par__http_tls_wants_clients(h->tls))
        who = client_identity(h, req);
    l->who = who;
    par_http_exchange_t x = {l, req, rid, t0, *m};
    int r = dispatch(&x);
    l->who = NULL;
    par_identity_unref(who);
    return r;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    loop_t *l = par__http_tl_loop;
    int64_t t0 = par__now_ns();
    char rid[PAR_REQUEST_ID_MAX + 1];
    char msg[200];
    par_http_match_t m;
    unsigned method = par__http_method(req->method.base, req->method.len);
    par__http_route_match(method, req->path_normalized.base, req->path_normalized.len, &m);
    if (m.route && m.route->cors) {
        if (method == PAR_HTTP_OTHER &&
            h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"))) {
            /* a preflight carries no credentials: answered before authentication */
            par__http_request_id(req, l, rid, sizeof(rid));
            int code = par__http_cors_preflight(l->http, req, m.route, rid);
            par__http_access_log(l->http, req, m.route->label, code, rid, NULL, t0,
                                 code == 204 ? NULL : "forbidden");
            return 0;
        }
        if (l->http->opts.cors_norigins) /* on errors too, so that pages can read them */
            par__http_cors_headers(l->http, req);
    }
    if (par__http_check_framing(req, msg, sizeof(msg)) != 0) {
        /* the message's end is unknown, so is the next one's start: close */
        req->http1_is_persistent = 0;
    } else if (par__http_check_headers(req, msg, sizeof(msg)) == 0 &&
               par__http_check_route_id(&m, msg, sizeof(msg)) == 0) {
        par__http_request_id(req, l, rid, sizeof(rid));
        return serve(l, req, rid, t0, &m, NULL);
    }
    par__http_new_id(l, rid);
    par__http_send_error(req, PAR_E_BAD_REQUEST, msg, strlen(msg), rid);
    par__http_access_log(l->http, req, par__http_route_label(&m), 400, rid, NULL, t0,
                         "bad_request");
    return 0;
}

/* ---- loops ------------------------------------------------------------------------ */

static void on_accept(h2o_socket_t *listener, const char *err)
{
    loop_t *l = listener->data;
    if (err != NULL)
        return;
    h2o_socket_t *sock;
    if (l->http->tls) {
        /* a reload publishes a new context; connections already open keep theirs */
        par__http_tls_current(l->http->tls, &l->ssl_ctx, &l->ssl_gen);
        l->accept_ctx.ssl_ctx = l->ssl_ctx;
    }
    while ((sock = h2o_evloop_socket_accept(listener)) != NULL) {
        int one = 1;
        setsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        h2o_accept(&l->accept_ctx, sock);
    }
    if (par__http_shed(l->listen_fd, errno, 64)) {
        /* out of descriptors: rest the listener, or this callback spins */
        h2o_socket_read_stop(listener);
        l->accept_paused_until = par__now_ms() + 100;
    }
}

static void on_super_ready(h2o_socket_t *sock, const char *err)
{
    (void)err;
    loop_t *l = sock->data;
    par__runtime_io_poll(l->http->rt);
}

/* With one loop, that loop runs the supervisor's I/O too, so a worker's
 * answer reaches the response without crossing threads (runtime/io.h). */
static void lend_supervisor_io(loop_t *l)
{
    par_runtime_t *rt = l->http->rt;
    int sfd = par__runtime_io_attach(rt);
    if (sfd < 0)
        return; /* no supervisor */
    int fd = dup(sfd);
    if (fd < 0) {
        par__runtime_io_detach(rt);
        return;
    }
    l->super_sock = h2o_evloop_socket_create(l->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    l->super_sock->data = l;
    h2o_socket_read_start(l->super_sock, on_super_ready);
}

/* Makes the loop's h2o objects: on the loop's own thread, because h2o 2.2
 * ties a socket's buffers to the thread-local allocator of the thread that
 * created it, and that allocator is not safe to share. Made on the starting
 * thread, every loop's message queue took its buffers from that thread's
 * allocator at once, which corrupted it (a read into freed memory under
 * load with http.threads above 1). */
static void loop_set_up(loop_t *l)
{
    par_http_t *h = l->http;
    h2o_context_init(&l->ctx, h2o_evloop_create(), &h->config);
    l->accept_ctx.ctx = &l->ctx;
    l->accept_ctx.hosts = h->config.hosts;
    h2o_linklist_init_anchor(&l->calls);
    l->queue = h2o_multithread_create_queue(l->ctx.loop);
    h2o_multithread_register_receiver(l->queue, &l->receiver, par__http_on_completions);
    h2o_multithread_register_receiver(l->queue, &l->admin_receiver, par__http_on_admin_done);
    h2o_multithread_register_receiver(l->queue, &l->auth_receiver, on_auth_ready);
    h2o_multithread_register_receiver(l->queue, &l->run_receiver, par__http_on_run_news);
    h2o_multithread_register_receiver(l->queue, &l->fwd_receiver, par__http_on_forward_news);
    par__http_sse_init(l);
    h2o_linklist_init_anchor(&l->forwards);
    l->listener = h2o_evloop_socket_create(l->ctx.loop, l->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    l->listener->data = l;
    h2o_socket_read_start(l->listener, on_accept);
    if (h->opts.threads == 1)
        lend_supervisor_io(l);
}

static void *loop_main(void *arg)
{
    loop_t *l = arg;
    par__http_tl_loop = l;
    loop_set_up(l);
    sem_post(l->set_up); /* start_loop's `l->set_up` is gone after this */
    par_runtime_t *rt = l->http->rt;
    int io = l->super_sock != NULL; /* this loop runs the supervisor's I/O */
    if (io)
        par__runtime_cork(1);
    par_log_thread_batch(1); /* access lines reach the log writer once per turn */
    while (!atomic_load(&l->http->stop)) {
        atomic_store(&l->turned_ms, par__now_ms());
        /* returns -1 on EINTR: just go round */
        h2o_evloop_run(l->ctx.loop, io ? 10 : 50);
        par__http_gone_check(l);
        par__http_sse_tick(l);
        if (io) {
            if (par__runtime_io_due(rt))
                par__runtime_io_poll(rt);
            par__runtime_uncork(rt);
        }
        par_log_flush();
        if (l->accept_paused_until && par__now_ms() >= l->accept_paused_until && l->listener) {
            l->accept_paused_until = 0;
            h2o_socket_read_start(l->listener, on_accept);
        }
        if (atomic_load(&l->http->stop_accepting) && l->listener) {
            h2o_socket_read_stop(l->listener);
            h2o_socket_close(l->listener); /* closes the listening descriptor */
            l->listener = NULL;
            l->listen_fd = -1;
        }
    }
    if (l->listener)
        h2o_socket_read_stop(l->listener); /* par_http_stop closes its descriptor */
    if (io) {
        par__runtime_uncork(rt);
        par__runtime_cork(0);
        h2o_socket_read_stop(l->super_sock);
        h2o_socket_close(l->super_sock); /* closes our duplicate of the epoll descriptor */
        l->super_sock = NULL;
        par__runtime_io_detach(rt);
    }
    par_log_thread_batch(0);
    return NULL;
}

/* Frees what par_http_start() set up before its loops ran. */
static void start_undo(par_http_t *h, unsigned listeners)
{
    for (unsigned k = 0; k < listeners; k++)
        close(h->loops[k].listen_fd);
    free(h->loops);
    par__http_admin_stop(h);
    par__http_tls_free(h->tls);
    h2o_config_dispose(&h->config);
    free(h->cors_block);
    free(h);
}

/* Binds one listening socket per loop (or shares the first) and records the
 * address bound; PAR_OK, or PAR_E_IO logged (h freed). */
static int open_listeners(par_http_t *h, const char *name, struct sockaddr_storage *ss,
                          socklen_t sl)
{
    for (unsigned i = 0; i < h->opts.threads; i++) {
        loop_t *l = &h->loops[i];
        l->http = h;
        char why[300];
        /* one listening socket shared by every loop, unless the operator asked
         * for SO_REUSEPORT (one per loop, and other processes may join) */
        int fd;
        if (i == 0 || h->opts.reuse_port)
            fd = par__http_listen_open(ss, sl, h->opts.reuse_port, name, why, sizeof(why));
        else if ((fd = fcntl(h->loops[0].listen_fd, F_DUPFD_CLOEXEC, 0)) < 0)
            snprintf(why, sizeof(why), "cannot share the listener: %s", strerror(errno));
        l->listen_fd = fd;
        if (fd < 0) {
            par_log_msg(PAR_LOG_ERROR, "%s", why);
            start_undo(h, i);
            return PAR_E_IO;
        }
        if (i == 0) {
            /* port 0 means "pick one": every loop must share the one picked */
            getsockname(fd, (struct sockaddr *)ss, &sl);
        }
        if (getrandom(&l->rng, sizeof(l->rng), 0) != sizeof(l->rng) || l->rng == 0)
            l->rng = (uint64_t)par__now_ns() | 1;
    }
    char hostbuf[64];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, hostbuf, sizeof(hostbuf));
        snprintf(h->address, sizeof(h->address), "[%s]:%d", hostbuf, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, hostbuf, sizeof(hostbuf));
        snprintf(h->address, sizeof(h->address), "%s:%d", hostbuf, ntohs(a->sin_port));
    }
    return PAR_OK;
}

/* Starts loop i's thread and waits until it has set itself up; PAR_OK or
 * PAR_E_IO. */
static int start_loop(par_http_t *h, unsigned i)
{
    loop_t *l = &h->loops[i];
    atomic_init(&l->turned_ms, par__now_ms());
    sem_t set_up;
    sem_init(&set_up, 0, 0);
    l->set_up = &set_up;
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
        sem_destroy(&set_up);
        par_log_msg(PAR_LOG_ERROR, "cannot start an HTTP thread");
        return PAR_E_IO;
    }
    while (sem_wait(&set_up) != 0) /* EINTR */
        ;
    sem_destroy(&set_up);
    l->set_up = NULL;
    h->nloops++;
    return PAR_OK;
}

/* h2o's configuration and TLS; PAR_OK, or an error logged (h freed). */
static int configure(par_http_t *h, const par_http_opts_t *opts)
{
    h2o_config_init(&h->config);
    h->config.max_request_entity_size = h->opts.max_body;
    /* h2o 2.2.5 gates both h2c forms on this flag: the HTTP/1.1 Upgrade and
     * the prior-knowledge preface. Off, both are answered as HTTP/1.1. */
    h->config.http1.upgrade_to_http2 = h->opts.http2 != 0;
    int rc = PAR_OK;
    if (opts->tls_cert || opts->tls_key) {
        par_buf_t err;
        par_buf_init(&err, 0);
        rc = par__http_tls_new(opts->tls_cert, opts->tls_key, opts->tls_client_ca, opts->http2,
                               &h->tls, &err);
        if (rc != PAR_OK)
            par_log_msg(PAR_LOG_ERROR, "cannot start TLS: %.*s", (int)err.len,
                        err.data ? err.data : "");
        par_buf_free(&err);
    } else if (opts->tls_client_ca) {
        par_log_msg(PAR_LOG_ERROR, "tls.client_ca needs tls.cert and tls.key");
        rc = PAR_E_INVALID_ARGUMENT;
    }
    if (rc != PAR_OK) {
        par__http_tls_free(h->tls);
        h2o_config_dispose(&h->config);
        free(h->cors_block);
        free(h);
        return rc;
    }
    h2o_hostconf_t *host =
        h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;
    return PAR_OK;
}

/* Checks the CORS options and copies their origins; PAR_OK, or an error
 * logged. */
static int keep_cors(par_http_t *h)
{
    char why[300];
    if (par_http_cors_check(&h->opts, why, sizeof(why)) != 0) {
        par_log_msg(PAR_LOG_ERROR, "%s", why);
        return PAR_E_INVALID_ARGUMENT;
    }
    size_t total = 0;
    for (unsigned i = 0; i < h->opts.cors_norigins; i++)
        total += strlen(h->opts.cors_origins[i]) + 1;
    if (total == 0)
        return PAR_OK;
    char *p = h->cors_block = malloc(total);
    if (p == NULL) {
        par_log_msg(PAR_LOG_ERROR, "cannot start the HTTP server: out of memory");
        return PAR_E_NO_MEMORY;
    }
    for (unsigned i = 0; i < h->opts.cors_norigins; i++) {
        size_t n = strlen(h->opts.cors_origins[i]) + 1;
        memcpy(p, h->opts.cors_origins[i], n);
        h->opts.cors_origins[i] = p;
        p += n;
    }
    return PAR_OK;
}

int par_http_start(par_runtime_t *rt, const par_http_opts_t *opts, par_http_t **out)
{
    par_http_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return PAR_E_NO_MEMORY;
    h->rt = rt;
    h->opts = *opts;
    atomic_init(&h->access_log, opts->access_log);
    atomic_init(&h->heartbeat_ms, opts->heartbeat_ms ? opts->heartbeat_ms : 15000);
    if (h->opts.threads == 0)
        h->opts.threads = 1;
    if (h->opts.max_body == 0)
        h->opts.max_body = 16u << 20;
    if (h->opts.max_in_flight == 0)
        h->opts.max_in_flight = PAR_HTTP_MAX_IN_FLIGHT_DEFAULT;
    if (h->opts.heartbeat_ms == 0)
        h->opts.heartbeat_ms = 15000;
    int rc = keep_cors(h);
    if (rc != PAR_OK) {
        free(h);
        return rc;
    }
    const char *name = opts->listen ? opts->listen : "127.0.0.1:8080";
    struct sockaddr_storage ss;
    socklen_t sl;
    if (par__http_listen_parse(name, &ss, &sl) != 0) {
        par_log_msg(PAR_LOG_ERROR, "cannot parse listen address '%s' (want HOST:PORT)",
                    opts->listen);
        free(h->cors_block);
        free(h);
        return PAR_E_INVALID_ARGUMENT;
    }
    rc = configure(h, opts);
    if (rc != PAR_OK)
        return rc;
    par__http_nofile_init();
    h->loops = calloc(h->opts.threads, sizeof(loop_t));
    if (h->loops == NULL || (rc = par__http_admin_start(h)) != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "cannot start the HTTP server: %s",
                    par_strerror(h->loops ? rc : PAR_E_NO_MEMORY));
        rc = h->loops ? rc : PAR_E_NO_MEMORY;
        start_undo(h, 0);
        return rc;
    }
    if ((rc = open_listeners(h, name, &ss, sl)) != PAR_OK)
        return rc;
    for (unsigned i = 0; i < h->opts.threads; i++) {
        if (start_loop(h, i) != PAR_OK) {
            /* as before: the loops started are stopped, the rest abandoned */
            atomic_store(&h->stop, 1);
            for (unsigned k = 0; k < h->nloops; k++)
                pthread_join(h->loops[k].thread, NULL);
            return PAR_E_IO;
        }
    }
    *out = h;
    return PAR_OK;
}

const char *par_http_address(const par_http_t *h)
{
    return h->address;
}

int par_http_is_tls(const par_http_t *h)
{
    return h->tls != NULL;
}

int par_http_reload_tls(par_http_t *h, par_buf_t *err)
{
    if (h->tls == NULL)
        return PAR_OK;
    return par__http_tls_reload(h->tls, err);
}

void par_http_stop(par_http_t *h)
{
    if (h == NULL)
        return;
    /* deploys and reports still running finish and are answered first */
    par__http_admin_stop(h);
    atomic_store(&h->stop, 1);
    for (unsigned i = 0; i < h->nloops; i++)
        pthread_join(h->loops[i].thread, NULL);
    /* forwards see `stop` within a second (http/forward.c) */
    for (int i = 0; i < 300 && atomic_load(&h->forwards) > 0; i++)
        usleep(10000);
    /* Connections still open are abandoned with the process: h2o 2.2 has no
     * way to close every connection of a context from outside. Listeners go
     * now so no new connection is accepted. */
    for (unsigned i = 0; i < h->nloops; i++)
        if (h->loops[i].listener)
            close(h->loops[i].listen_fd);
}

void par_http_stop_accepting(par_http_t *h)
{
    atomic_store(&h->stop_accepting, 1);
    /* each loop closes its own listener within one turn (at most 50 ms) */
    for (int i = 0; i < 40; i++) {
        int open = 0;
        for (unsigned k = 0; k < h->nloops; k++)
            open |= h->loops[k].listen_fd >= 0;
        if (!open)
            break;
        usleep(5000);
    }
}

void par_http_set_heartbeat(par_http_t *h, unsigned ms)
{
    if (ms > 0)
        atomic_store(&h->heartbeat_ms, ms);
}

void par_http_set_access_log(par_http_t *h, int on)
{
    atomic_store(&h->access_log, on);
}

int64_t par_http_stalled_ms(par_http_t *h)
{
    int64_t now = par__now_ms(), worst = 0;
    for (unsigned i = 0; i < h->nloops; i++) {
        int64_t age = now - atomic_load(&h->loops[i].turned_ms);
        if (age > worst)
            worst = age;
    }
    return worst;
}

long par_http_pending(par_http_t *h)
{
    return atomic_load(&h->pending);
}
