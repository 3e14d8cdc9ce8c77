/*
 * http/sse.c — the clients of runs that stay connected: event streams
 * (text/event-stream: POST /agents/{id}/runs/stream, GET /runs/{id}/stream,
 * invoke with Accept: text/event-stream) and waits (POST .../runs/wait).
 *
 * A stream is an h2o generator with at most one h2o_send outstanding. It
 * watches its run (runtime/runs.h): the watcher's notify, called on any
 * thread, posts one message to the loop's queue; on that message and on
 * proceed the loop reads the next events (par_run_read, up to 64 KiB) and
 * sends them, and when h2o has written them tells the run they were
 * delivered (the run's flow control: an agent waits for its slowest live
 * client). The response ends when the run ended and everything was sent.
 *
 * Heartbeats: one h2o timeout per loop (runs.heartbeat_ms) holds the idle
 * streams in the order of their last send, so a tick touches only the
 * streams that are due; each gets ": keep-alive\n\n".
 *
 * Clients leaving: HTTP/2 resets call the generator's stop; HTTP/1
 * connections are polled with the invocations' (par__http_gone_check),
 * since h2o 2.2 does not read a connection while its response runs. Either
 * way (HTTP/1 within 500 ms) the watcher is released with client_gone=1
 * (a run started with on_disconnect cancel is cancelled by the engine).
 *
 * Memory while idle: the stream struct only (no buffer is kept between
 * sends). Loop thread only, except stream_notify() (any thread).
 */
#include <assert.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "runtime/runs.h"

#define READ_MAX (64u << 10)

typedef struct stream {
    par_run_watch_t w;
    par_run_t *run; /* referenced */
    loop_t *loop;
    h2o_req_t *req; /* NULL once the request is gone */
    struct stream **guard;
    h2o_generator_t gen;
    h2o_multithread_message_t msg;
    atomic_int news;        /* a message is on its way to the loop */
    h2o_linklist_t link;    /* in loop_t.streams */
    h2o_timeout_entry_t hb; /* in loop_t.heartbeat while idle */
    par_buf_t out;          /* what h2o is sending (empty while idle) */
    uint64_t sent, acked;   /* events handed to h2o; events it wrote */
    int64_t t0;
    const char *label, *rid; /* rid in the request's pool */
    par_http_framed_t *fr;   /* another protocol's framing (http/a2a.c), or NULL */
    unsigned wait : 1;       /* /runs/wait: answers once, at the end */
    unsigned sending : 1, started : 1, done : 1, watching : 1, logged : 1, dead : 1;
    unsigned final : 1; /* h2o has the last send (FINAL or ERROR), or stopped */
} stream_t;

/* what an idle stream costs the runtime beside h2o's own request state */
/* (264: 256 and the framing pointer of A2A and MCP streams) */
_Static_assert(sizeof(stream_t) <= 264, "an idle stream must stay small");

static const char keepalive[] = ": keep-alive\n\n";

static void stream_free(stream_t *s)
{
    if (s->fr)
        s->fr->ops->free(s->fr);
    par_buf_free(&s->out);
    par_run_unref(s->run);
    free(s);
}

static void log_once(stream_t *s, int http, const char *err)
{
    if (s->logged || s->req == NULL)
        return;
    s->logged = 1;
    par__http_access_log(s->loop->http, s->req, s->label, http, s->rid, NULL, s->t0, err);
}

/* Stops watching: the client got everything (gone = 0) or left. */
static void unwatch(stream_t *s, int gone)
{
    if (!s->watching)
        return;
    s->watching = 0;
    par_run_unwatch(s->run, &s->w, gone);
}

static void hb_unlink(stream_t *s)
{
    if (h2o_timeout_is_linked(&s->hb))
        h2o_timeout_unlink(&s->hb);
}

/* Any thread: the run has news for this watcher. */
static void stream_notify(par_run_watch_t *w)
{
    stream_t *s = w->data;
    if (atomic_exchange(&s->news, 1) == 0)
        h2o_multithread_send_message(&s->loop->run_receiver, &s->msg);
}

/* The request's pool is going: no more sends; the stream goes when no
 * message can reach it any more. */
static void guard_dispose(void *p)
{
    stream_t **slot = p;
    stream_t *s = *slot;
    if (s == NULL)
        return;
    s->req = NULL;
    s->guard = NULL;
    hb_unlink(s);
    if (h2o_linklist_is_linked(&s->link))
        h2o_linklist_unlink(&s->link);
    unwatch(s, !s->done);
    if (atomic_load(&s->news))
        s->dead = 1; /* par__http_on_run_news frees it */
    else
        stream_free(s);
}

/* Ends the response abruptly (the client left, or the run's events cannot
 * be read any more). Nothing may touch s->req afterwards. */
static void stream_abort(stream_t *s, const char *err)
{
    h2o_req_t *req = s->req;
    log_once(s, 200, err);
    unwatch(s, 1);
    s->done = 1;
    s->final = 1;
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* /runs/wait: the answer once the run ended; until then every event is
 * acknowledged at once, so the waiting client never slows the agent. */
static void wait_news(stream_t *s)
{
    if (par_run_status(s->run) < PAR_RUN_SUCCEEDED) {
        /* always: it also re-arms the watcher's notify */
        uint64_t last = par_run_last_seq(s->run);
        if (last > s->acked)
            s->acked = last;
        par_run_delivered(s->run, &s->w, s->acked);
        return;
    }
    h2o_req_t *req = s->req;
    par_buf_t b;
    par_buf_init(&b, 0);
    int status = PAR_OK, http = 0;
    int rc =
        s->fr ? s->fr->ops->answer(s->fr, s->run, &b, &http) : par_run_answer(s->run, &b, &status);
    unwatch(s, 0);
    s->done = 1;
    /* logged first: nothing may touch `s` once the response is handed over */
    const char *rid = s->rid;
    if (rc != PAR_OK) {
        log_once(s, par_status_http(rc), par_status_name(rc));
        par__http_send_error(req, rc, H2O_STRLIT("the run's answer cannot be read"), rid);
    } else {
        size_t len = b.len;
        char *body = h2o_mem_alloc_pool(&req->pool, len ? len : 1);
        memcpy(body, b.data, len);
        par_buf_free(&b);
        if (http == 0)
            http = status == PAR_OK ? 200 : par_status_http(status);
        log_once(s, http, status == PAR_OK ? NULL : par_status_name(status));
        par__http_send_body(req, http, "application/json", rid, body, len);
        return;
    }
    par_buf_free(&b);
}

/* par_run_read, through the stream's framer when it has one. */
static int read_framed(par_http_framed_t *fr, par_run_t *r, uint64_t after, par_buf_t *out,
                       uint64_t *last, int *ended)
{
    if (fr == NULL)
        return par_run_read(r, after, READ_MAX, out, last, ended);
    par_buf_t raw;
    par_buf_init(&raw, 0);
    int rc = par_run_read(r, after, READ_MAX, &raw, last, ended);
    if (rc == PAR_OK && raw.len)
        rc = fr->ops->events(fr, r, raw.data, raw.len, out);
    par_buf_free(&raw);
    return rc;
}

/* Sends what the run has after s->sent, if anything and nothing is in
 * flight. */
static void pump(stream_t *s)
{
    if (s->req == NULL || s->sending || s->done)
        return;
    if (s->wait) {
        wait_news(s);
        return;
    }
    uint64_t last;
    int ended;
    for (;;) {
        last = s->sent;
        ended = 0;
        par_buf_reset(&s->out);
        int rc = read_framed(s->fr, s->run, s->sent, &s->out, &last, &ended);
        if (rc != PAR_OK) {
            stream_abort(s, par_status_name(rc));
            return;
        }
        if (s->out.len || ended)
            break;
        if (last == s->sent) {
            /* a notify raced a read that already had its events: re-arm it */
            if (s->watching)
                par_run_delivered(s->run, &s->w, s->acked);
            return;
        }
        /* events a framer turned into nothing (tasks/result skips the
         * progress): nothing to send, so they count as delivered at once;
         * read on */
        s->sent = s->acked = last;
    }
    h2o_req_t *req = s->req;
    h2o_iovec_t buf = h2o_iovec_init(s->out.data, s->out.len);
    s->sent = last;
    hb_unlink(s);
    if (ended) {
        /* the last bytes: the stream is complete once h2o has them */
        log_once(s, 200, NULL);
        unwatch(s, 0);
        s->done = 1;
        s->final = 1;
        h2o_send(req, &buf, buf.len ? 1 : 0, H2O_SEND_STATE_FINAL);
        return;
    }
    s->sending = 1;
    h2o_send(req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

/* h2o wrote the last send: acknowledge, rest, read on. */
static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen);
    s->sending = 0;
    par_buf_free(&s->out); /* an idle stream holds no buffer */
    if (s->done) {
        /* the client left while this was being written */
        if (!s->final && s->req) {
            s->final = 1;
            h2o_send(s->req, NULL, 0, H2O_SEND_STATE_ERROR);
        }
        return;
    }
    if (s->acked < s->sent && s->watching) {
        s->acked = s->sent;
        par_run_delivered(s->run, &s->w, s->sent);
    }
    hb_unlink(s);
    h2o_timeout_link(s->loop->ctx.loop, &s->loop->heartbeat, &s->hb);
    pump(s);
}

/* The connection is going (HTTP/2 reset, write error): no more sends. */
static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen);
    log_once(s, 200, "client_gone");
    unwatch(s, !s->done);
    s->done = 1;
    s->final = 1;
}

static void on_heartbeat(h2o_timeout_entry_t *e)
{
    stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, hb, e);
    if (s->req == NULL || s->sending || s->done)
        return;
    h2o_iovec_t buf = h2o_iovec_init(keepalive, sizeof(keepalive) - 1);
    s->sending = 1;
    h2o_send(s->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

void par__http_on_run_news(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, msg, m);
        atomic_store(&s->news, 0);
        if (s->dead)
            stream_free(s);
        else
            pump(s);
    }
}

/* A stream for the exchange's request, guarded by its pool; NULL when out
 * of memory (answered). Takes the reference to `r` either way. */
static stream_t *stream_new(par_http_exchange_t *x, par_run_t *r, int wait, par_http_framed_t *fr)
{
    stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        if (fr)
            fr->ops->free(fr);
        par_run_unref(r);
        par__http_send_error(x->req, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), x->rid);
        par__http_access_log(x->loop->http, x->req, x->m.route->label, 500, x->rid, NULL, x->t0,
                             "no_memory");
        return NULL;
    }
    s->run = r;
    s->fr = fr;
    s->loop = x->loop;
    s->req = x->req;
    s->wait = wait != 0;
    s->t0 = x->t0;
    s->label = x->m.route->label;
    s->rid = h2o_strdup(&x->req->pool, x->rid, SIZE_MAX).base;
    s->w.notify = stream_notify;
    s->w.data = s;
    s->gen.proceed = on_proceed;
    s->gen.stop = on_stop;
    s->hb.cb = on_heartbeat;
    par_buf_init(&s->out, 0);
    atomic_init(&s->news, 0);
    h2o_linklist_insert(&x->loop->streams, &s->link);
    stream_t **slot = h2o_mem_alloc_shared(&x->req->pool, sizeof(*slot), guard_dispose);
    *slot = s;
    s->guard = slot;
    return s;
}

int par__http_sse_start(par_http_exchange_t *x, par_run_t *r, uint64_t after)
{
    return par__http_sse_start_framed(x, r, after, NULL);
}

int par__http_sse_start_framed(par_http_exchange_t *x, par_run_t *r, uint64_t after,
                               par_http_framed_t *fr)
{
    h2o_req_t *req = x->req;
    par_buf_t first;
    par_buf_init(&first, 0);
    uint64_t last = after;
    int ended = 0;
    int rc = read_framed(fr, r, after, &first, &last, &ended);
    if (rc != PAR_OK) {
        if (fr)
            fr->ops->free(fr);
        const char *msg =
            rc == PAR_E_BAD_EVENT_ID  ? "the event id to resume after is past the run's last event"
            : rc == PAR_E_RUN_EXPIRED ? "the run's events after this id are past their retention "
                                        "(runs.retention)"
                                      : "the run's events cannot be read";
        par_buf_free(&first);
        par_run_unref(r);
        par__http_send_error(req, rc, msg, strlen(msg), x->rid);
        par__http_access_log(x->loop->http, req, x->m.route->label, par_status_http(rc), x->rid,
                             NULL, x->t0, par_status_name(rc));
        return 0;
    }
    stream_t *s = stream_new(x, r, 0, fr);
    if (s == NULL) {
        par_buf_free(&first);
        return 0;
    }
    s->out = first;
    s->sent = s->acked = after;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL,
                          H2O_STRLIT("no"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          s->rid, strlen(s->rid));
    h2o_start_response(req, &s->gen);
    s->started = 1;
    if (!ended) {
        s->watching = 1;
        par_run_watch(r, &s->w, after);
    }
    /* the first events (or, with none yet, the headers alone) go now */
    h2o_iovec_t buf = h2o_iovec_init(s->out.data, s->out.len);
    s->sent = last;
    if (ended) {
        log_once(s, 200, NULL);
        s->done = 1;
        s->final = 1;
        h2o_send(req, &buf, buf.len ? 1 : 0, H2O_SEND_STATE_FINAL);
        return 0;
    }
    s->sending = 1;
    h2o_send(req, &buf, buf.len ? 1 : 0, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

int par__http_wait_start(par_http_exchange_t *x, par_run_t *r)
{
    return par__http_wait_start_framed(x, r, NULL);
}

int par__http_wait_start_framed(par_http_exchange_t *x, par_run_t *r, par_http_framed_t *fr)
{
    stream_t *s = stream_new(x, r, 1, fr);
    if (s == NULL)
        return 0;
    s->watching = 1;
    par_run_watch(r, &s->w, par_run_last_seq(r));
    pump(s); /* it may have ended already */
    return 0;
}

void par__http_sse_init(loop_t *l)
{
    h2o_linklist_init_anchor(&l->streams);
    h2o_timeout_init(l->ctx.loop, &l->heartbeat, atomic_load(&l->http->heartbeat_ms));
}

void par__http_sse_tick(loop_t *l)
{
    /* h2o 2.2 reads a timeout's period each time it runs or computes its
     * next wake-up, so streams waiting take over the new period at once */
    unsigned ms = atomic_load_explicit(&l->http->heartbeat_ms, memory_order_relaxed);
    if (l->heartbeat.timeout != ms)
        l->heartbeat.timeout = ms;
}

/* Marks, then ends, the streams whose HTTP/1 client hung up: one poll(2)
 * per GONE_BATCH streams. */
#define GONE_BATCH 256
static void client_left(stream_t *s)
{
    if (s->done)
        return;
    if (!s->started) {
        /* a wait: answered 499 into the closed connection, which h2o closes */
        h2o_req_t *req = s->req;
        unwatch(s, 1);
        s->done = 1;
        log_once(s, 499, "cancelled");
        par__http_send_error(req, PAR_E_CANCELLED,
                             H2O_STRLIT("the client went away before the run ended"), s->rid);
        return;
    }
    if (s->sending) {
        unwatch(s, 1); /* the write in flight fails, or its proceed ends the response */
        log_once(s, 200, "client_gone");
        s->done = 1;
        return;
    }
    stream_abort(s, "client_gone");
}

/* Streams are polled less often than invocations: thousands may be open,
 * and a client that left a stream costs nothing while it is found out. */
#define STREAM_CHECK_MS 500

void par__http_sse_gone_check(loop_t *l)
{
    int64_t now = par__now_ms();
    if (now < l->next_stream_check || h2o_linklist_is_empty(&l->streams))
        return;
    l->next_stream_check = now + STREAM_CHECK_MS;
    struct pollfd pfd[GONE_BATCH];
    stream_t *who[GONE_BATCH];
    h2o_linklist_t *n = l->streams.next;
    while (n != &l->streams) {
        nfds_t k = 0;
        for (; n != &l->streams && k < GONE_BATCH; n = n->next) {
            stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, link, n);
            int fd = s->done ? -1 : par__http_client_fd(s->req);
            if (fd >= 0) {
                pfd[k] = (struct pollfd){.fd = fd, .events = POLLRDHUP};
                who[k++] = s;
            }
        }
        if (k == 0 || poll(pfd, k, 0) <= 0)
            continue;
        /* `n` is past this batch: ending these streams cannot unlink it */
        for (nfds_t i = 0; i < k; i++)
            if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
                client_left(who[i]);
    }
}
