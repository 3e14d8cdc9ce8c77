/*
 * http/forward.c — requests about a run another fleet node owns
 * (docs/fleet.md, "Runs across nodes").
 *
 * A fleet run id ends with its owner's tag (runtime/runs.h). GET /runs/{id},
 * DELETE, /stream, /wait and /cancel naming another node's run are sent to
 * the owner's advertise URL (runtime/fleet.h) with the caller's headers
 * (its credential, Last-Event-ID, the request id; not the hop-by-hop ones),
 * marked X-Par-Forwarded: the owner authenticates the caller and applies its usual
 * ownership checks, so forwarding grants nothing. A forwarded request naming
 * a run the receiving node does not own is refused (508 forwarding_loop): a
 * request crosses at most one hop.
 *
 * Each forward is one thread (libcurl, blocking) that hands the owner's
 * answer to the request's loop through the loop's queue as it comes: at
 * most FWD_WINDOW bytes wait for the loop, then the thread stops reading
 * (TCP pushes back on the owner), so a stream is never held whole. The loop
 * side is an h2o generator with at most one send outstanding, like
 * http/sse.c. When the owner is dead (its heartbeat older than
 * fleet.dead_after_ms) or cannot be reached, the request answers 503
 * interrupted, a stream a run.interrupted event; a stream the owner cuts
 * (or whose owner goes stale while it runs) ends with run.interrupted too.
 *
 * Threads: par__http_forward_run and everything that touches the request on
 * the loop; fwd_main and its callbacks on the forward's thread; `mu` guards
 * what they share. Never blocks a loop.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "runtime/fleet.h"
#include "runtime/runs.h"
#include "util/curl.h"

#define FWD_WINDOW (256u << 10) /* bytes from the owner waiting for the loop */
#define FWD_MAX 1024            /* forwards in flight per process */
#define FWD_CONNECT_MS 2000

typedef struct fwd {
    atomic_int refs; /* the request's guard, the thread, a message in flight */
    loop_t *loop;
    par_fleet_t *fleet;
    /* the loop's */
    h2o_req_t *req; /* NULL once the request is gone */
    h2o_generator_t gen;
    h2o_multithread_message_t msg;
    atomic_int news;
    par_buf_t out;
    int64_t t0;
    const char *label;
    char rid[PAR_REQUEST_ID_MAX + 1];
    unsigned sending : 1, started : 1, done : 1;
    h2o_linklist_t link; /* in loop_t.forwards until answered (the gone check) */
    /* set before the thread starts, read-only after */
    char tag[8];
    char *path; /* with its query */
    char *hdrs; /* the caller's headers, "name: value\0" each */
    size_t nhdrs;
    int method;     /* 'G', 'P' (POST) or 'D' */
    int stream;     /* GET /runs/{id}/stream */
    uint64_t after; /* its resume point */
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t room;
    par_buf_t pending;
    int http;       /* the owner's status once its headers are in, else 0 */
    char ctype[96]; /* the owner's Content-Type */
    long long clen; /* its Content-Length, or -1 */
    int err;        /* a PAR status the forward answers itself, or 0 */
    char errmsg[512];
    int finished, cut; /* the thread is done; the answer broke off (not a stream) */
    int gone;          /* the client left: the thread stops */
    /* the thread's */
    char line[24];
    size_t linelen;
    uint64_t last_id;
    char tail[2];
    int64_t next_check_ms;
    int owner_dead;
} fwd_t;

static void fwd_unref(fwd_t *f)
{
    if (atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    par_buf_free(&f->out);
    par_buf_free(&f->pending);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->room);
    free(f->path), free(f->hdrs);
    free(f);
}

/* Any thread: wake the loop (the message holds a reference). */
static void post(fwd_t *f)
{
    if (atomic_exchange(&f->news, 1) == 0) {
        atomic_fetch_add(&f->refs, 1);
        h2o_multithread_send_message(&f->loop->fwd_receiver, &f->msg);
    }
}

/* ---- the forward's thread ------------------------------------------------------------- */

/* Follows the SSE text passing through: the last "id: N" line, and whether
 * it ended with a blank line. mu held. */
static void track_ids(fwd_t *f, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        f->tail[0] = f->tail[1];
        f->tail[1] = c;
        if (c != '\n') {
            if (f->linelen < sizeof(f->line))
                f->line[f->linelen] = c;
            f->linelen++;
            continue;
        }
        if (f->linelen > 4 && f->linelen < sizeof(f->line) && memcmp(f->line, "id: ", 4) == 0) {
            uint64_t v = 0;
            for (size_t k = 4; k < f->linelen && f->line[k] >= '0' && f->line[k] <= '9'; k++)
                v = v * 10 + (uint64_t)(f->line[k] - '0');
            f->last_id = v;
        }
        f->linelen = 0;
    }
}

/* The run.interrupted event a stream ends with (mu held). */
static void append_interrupted(fwd_t *f, const char *why)
{
    if (f->last_id && !(f->tail[0] == '\n' && f->tail[1] == '\n'))
        par_buf_appends(&f->pending, "\n\n");
    uint64_t id = (f->last_id > f->after ? f->last_id : f->after) + 1;
    json_t *d =
        json_pack("{s:s,s:s,s:s}", "error", "interrupted", "message", why, "request_id", f->rid);
    char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
    par_buf_appendf(&f->pending, "id: %llu\nevent: run.interrupted\ndata: %s\n\n",
                    (unsigned long long)id, s ? s : "{\"error\":\"interrupted\"}");
    free(s);
    json_decref(d);
}

/* The forward answers by itself: `st` with `why`, or for a stream whose
 * owner is gone, 200 and run.interrupted. mu held. */
static void answer_locally(fwd_t *f, int st, const char *why)
{
    if (st == PAR_E_INTERRUPTED && f->stream) {
        f->http = 200;
        snprintf(f->ctype, sizeof(f->ctype), "text/event-stream");
        f->clen = -1;
        append_interrupted(f, why);
        return;
    }
    f->err = st;
    snprintf(f->errmsg, sizeof(f->errmsg), "%s", why);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    fwd_t *f = ud;
    size_t len = size * n;
    pthread_mutex_lock(&f->mu);
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', len);
        f->http = sp ? atoi(sp + 1) : 502; /* the status line starts a (new) response */
        f->ctype[0] = '\0';
        f->clen = -1;
    } else if (len > 13 && strncasecmp(p, "content-type:", 13) == 0) {
        size_t k = 13;
        while (k < len && p[k] == ' ')
            k++;
        size_t e = len;
        while (e > k && (p[e - 1] == '\r' || p[e - 1] == '\n'))
            e--;
        snprintf(f->ctype, sizeof(f->ctype), "%.*s", (int)(e - k), p + k);
    } else if (len > 15 && strncasecmp(p, "content-length:", 15) == 0) {
        f->clen = strtoll(p + 15, NULL, 10);
    }
    pthread_mutex_unlock(&f->mu);
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    fwd_t *f = ud;
    size_t len = size * n;
    pthread_mutex_lock(&f->mu);
    while (f->pending.len >= FWD_WINDOW && !f->gone)
        pthread_cond_wait(&f->room, &f->mu);
    int ok = !f->gone && par_buf_append(&f->pending, p, len) == PAR_OK;
    if (ok && f->stream)
        track_ids(f, p, len);
    pthread_mutex_unlock(&f->mu);
    if (!ok)
        return 0; /* aborts the transfer */
    post(f);
    return len;
}

/* About once a second: the client left, the server stops, or the owner's
 * heartbeat went stale (a host that vanished sends no FIN) — stop. */
static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    fwd_t *f = ud;
    pthread_mutex_lock(&f->mu);
    int gone = f->gone;
    pthread_mutex_unlock(&f->mu);
    if (gone || atomic_load(&f->loop->http->stop))
        return 1;
    int64_t now = par__now_ms();
    if (now >= f->next_check_ms) {
        f->next_check_ms = now + 1000;
        if (par_fleet_age_ms(f->fleet, f->tag) > (int64_t)par_fleet_dead_after_ms(f->fleet)) {
            f->owner_dead = 1;
            return 1;
        }
    }
    return 0;
}

static struct curl_slist *request_headers(fwd_t *f)
{
    char h[PAR_REQUEST_ID_MAX + 300];
    struct curl_slist *l = NULL, *t;
    snprintf(h, sizeof(h), "X-Par-Forwarded: %s", par_fleet_node_id(f->fleet));
    l = curl_slist_append(l, h);
    snprintf(h, sizeof(h), "X-Request-ID: %s", f->rid);
    if (l && (t = curl_slist_append(l, h)) != NULL)
        l = t;
    else
        return curl_slist_free_all(l), NULL;
    const char *p = f->hdrs;
    for (size_t i = 0; i < f->nhdrs; i++, p += strlen(p) + 1) {
        if ((t = curl_slist_append(l, p)) == NULL)
            return curl_slist_free_all(l), NULL;
        l = t;
    }
    /* no "Expect: 100-continue" and no body type of curl's own */
    if ((t = curl_slist_append(l, "Expect:")) == NULL)
        return curl_slist_free_all(l), NULL;
    return t;
}

/* The request to the owner at `base`; the transfer's curl code. */
static CURLcode send_to(fwd_t *f, const char *base, char *errbuf)
{
    char *url = NULL;
    struct curl_slist *hdrs = request_headers(f);
    if (hdrs == NULL || asprintf(&url, "%s%s", base, f->path) < 0) {
        curl_slist_free_all(hdrs);
        return CURLE_OUT_OF_MEMORY;
    }
    par_curl_opts_t o = {.url = url,
                         .protocols = "http,https",
                         .connect_timeout_ms = FWD_CONNECT_MS,
                         .on_body = on_body,
                         .body_ud = f,
                         .on_header = on_header,
                         .header_ud = f,
                         .errbuf = errbuf,
                         .headers = hdrs};
    CURL *h = par_curl_new(&o);
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    if (h) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, f);
        if (f->method == 'P') {
            curl_easy_setopt(h, CURLOPT_POST, 1L);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        } else if (f->method == 'D') {
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
        }
        cc = curl_easy_perform(h);
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(hdrs);
    free(url);
    return cc;
}

/* After the transfer: what the client gets beyond what passed through. */
static int conclude(fwd_t *f, CURLcode cc, const char *node, const char *errbuf)
{
    char why[300];
    pthread_mutex_lock(&f->mu);
    int outcome = PAR_FLEET_FWD_OK;
    if (cc != CURLE_OK && !f->gone) {
        snprintf(why, sizeof(why),
                 f->owner_dead ? "the node '%s' that runs this run stopped its heartbeat: the run "
                                 "is interrupted"
                               : "the node '%s' that runs this run cannot be reached (%s): the "
                                 "run is interrupted",
                 node, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        if (f->http == 0) { /* nothing came: as if it were dead */
            answer_locally(f, PAR_E_INTERRUPTED, why);
            outcome = f->owner_dead ? PAR_FLEET_FWD_DEAD : PAR_FLEET_FWD_UNREACHABLE;
        } else {
            if (f->stream && strncmp(f->ctype, "text/event-stream", 17) == 0)
                append_interrupted(f, why);
            else
                f->cut = 1;
            outcome = PAR_FLEET_FWD_CUT;
        }
    }
    f->finished = 1;
    pthread_mutex_unlock(&f->mu);
    return outcome;
}

static void *fwd_main(void *arg)
{
    fwd_t *f = arg;
    char url[256], node[256], why[400], errbuf[CURL_ERROR_SIZE] = "";
    int64_t age = 0;
    int rc = par_fleet_owner(f->fleet, f->tag, url, sizeof(url), node, sizeof(node), &age);
    int outcome;
    if (rc == PAR_OK) {
        CURLcode cc = send_to(f, url, errbuf);
        outcome = conclude(f, cc, node, errbuf);
    } else {
        if (rc == PAR_E_INTERRUPTED)
            snprintf(why, sizeof(why),
                     "the node '%s' that runs this run has sent no heartbeat for %lld ms "
                     "(fleet.dead_after_ms): the run is interrupted",
                     node, (long long)age);
        else
            snprintf(why, sizeof(why), "no such run");
        pthread_mutex_lock(&f->mu);
        answer_locally(f, rc, why);
        f->finished = 1;
        pthread_mutex_unlock(&f->mu);
        outcome = rc == PAR_E_INTERRUPTED ? PAR_FLEET_FWD_DEAD : PAR_FLEET_FWD_UNKNOWN;
    }
    par_fleet_count_forward(f->fleet, outcome);
    post(f);
    atomic_fetch_sub(&f->loop->http->forwards, 1);
    fwd_unref(f);
    return NULL;
}

/* ---- the loop's side ------------------------------------------------------------------- */

static void unlink_fwd(fwd_t *f)
{
    if (h2o_linklist_is_linked(&f->link))
        h2o_linklist_unlink(&f->link);
}

static void finish_log(fwd_t *f, int http, const char *err)
{
    par__http_access_log(f->loop->http, f->req, f->label, http, f->rid, NULL, f->t0, err);
}

/* Starts the response with the owner's status and type (mu held). */
static void start_response(fwd_t *f)
{
    h2o_req_t *req = f->req;
    req->res.status = f->http;
    req->res.reason = f->http < 300 ? "OK" : "Forwarded";
    const char *ct = f->ctype[0] ? f->ctype : "application/json";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   h2o_strdup(&req->pool, ct, SIZE_MAX).base, strlen(ct));
    if (strncmp(ct, "text/event-stream", 17) == 0) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                       H2O_STRLIT("no-cache"));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0,
                              NULL, H2O_STRLIT("no"));
    } else if (f->clen >= 0) {
        req->res.content_length = (size_t)f->clen;
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          f->rid, strlen(f->rid));
    f->started = 1;
    unlink_fwd(f); /* from here its writes find out when the client left */
    h2o_start_response(req, &f->gen);
}

/* Hands h2o what came from the owner, if nothing is in flight. */
static void pump(fwd_t *f)
{
    if (f->req == NULL || f->sending || f->done)
        return;
    pthread_mutex_lock(&f->mu);
    if (!f->started && f->err) {
        int st = f->err;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", f->errmsg);
        pthread_mutex_unlock(&f->mu);
        f->done = 1;
        unlink_fwd(f);
        finish_log(f, par_status_http(st), par_status_name(st));
        par__http_send_error(f->req, st, msg, strlen(msg), f->rid);
        return;
    }
    /* a body (or the end) must wait for the final status: a 1xx is not it */
    int ready = f->http >= 200 &&
                (f->pending.len || f->finished || strncmp(f->ctype, "text/event-stream", 17) == 0);
    if (!ready) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    int first = !f->started;
    if (first)
        start_response(f);
    par_buf_t t = f->out;
    f->out = f->pending;
    f->pending = t;
    par_buf_reset(&f->pending);
    int finished = f->finished, cut = f->cut, http = f->http;
    pthread_cond_signal(&f->room);
    pthread_mutex_unlock(&f->mu);
    if (f->out.len == 0 && !finished && !first)
        return;
    h2o_iovec_t buf = h2o_iovec_init(f->out.data, f->out.len);
    if (finished) {
        f->done = 1;
        finish_log(f, http, cut ? "forward_cut" : NULL);
        h2o_send(f->req, &buf, buf.len ? 1 : 0, cut ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL);
        return;
    }
    f->sending = 1; /* before: h2o may call proceed from within */
    h2o_send(f->req, &buf, buf.len ? 1 : 0, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, gen, gen);
    f->sending = 0;
    par_buf_reset(&f->out);
    pump(f);
}

static void stop_thread(fwd_t *f)
{
    pthread_mutex_lock(&f->mu);
    f->gone = 1;
    pthread_cond_signal(&f->room);
    pthread_mutex_unlock(&f->mu);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, gen, gen);
    if (!f->done)
        finish_log(f, f->http, "client_gone");
    f->done = 1;
    stop_thread(f);
}

static void guard_dispose(void *p)
{
    fwd_t *f = *(fwd_t **)p;
    unlink_fwd(f);
    f->req = NULL;
    stop_thread(f);
    fwd_unref(f);
}

void par__http_on_forward_news(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, msg, m);
        atomic_store(&f->news, 0);
        pump(f);
        fwd_unref(f); /* the message's */
    }
}

/* A forward waiting for the owner's first byte (a wait, mostly) whose
 * HTTP/1 client hung up: the thread stops, the request is answered 499 into
 * the closed connection (h2o 2.2 does not read a connection while a
 * response is pending, so nothing else would notice). */
void par__http_forward_gone_check(loop_t *l)
{
    h2o_linklist_t *n = l->forwards.next;
    while (n != &l->forwards) {
        fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, link, n);
        n = n->next;
        int fd = f->req && !f->done ? par__http_client_fd(f->req) : -1;
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};
        if (fd < 0 || poll(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            continue;
        unlink_fwd(f);
        stop_thread(f);
        f->done = 1;
        finish_log(f, 499, "cancelled");
        par__http_send_error(f->req, PAR_E_CANCELLED,
                             H2O_STRLIT("the client went away before the owner answered"), f->rid);
        n = l->forwards.next; /* answering may unlink others' neighbours: start over */
    }
}

/* ---- taking a request ---------------------------------------------------------------- */

/* Headers that describe one connection or hop, that the forward sets
 * itself, or that could change the body's encoding (the answer goes back
 * with only its type and length): not passed on. */
static int hop_header(const h2o_iovec_t *n)
{
    static const char *const skip[] = {"host",
                                       "connection",
                                       "content-length",
                                       "transfer-encoding",
                                       "te",
                                       "upgrade",
                                       "keep-alive",
                                       "expect",
                                       "x-par-forwarded",
                                       "x-request-id",
                                       "proxy-authorization",
                                       "proxy-connection",
                                       "http2-settings"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(*skip); i++)
        if (h2o_lcstris(n->base, n->len, skip[i], strlen(skip[i])))
            return 1;
    return 0;
}

/* The caller's end-to-end headers (credentials of any kind included: the
 * owner authenticates the caller itself) as "name: value\0" each. */
static int copy_headers(fwd_t *f, h2o_req_t *req)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *e = &req->headers.entries[i];
        if (hop_header(e->name) || memchr(e->value.base, '\n', e->value.len) ||
            memchr(e->value.base, '\r', e->value.len))
            continue;
        if (par_buf_appendf(&b, "%.*s: %.*s", (int)e->name->len, e->name->base, (int)e->value.len,
                            e->value.base) != PAR_OK ||
            par_buf_append(&b, "", 1) != PAR_OK) {
            par_buf_free(&b);
            return -1;
        }
        f->nhdrs++;
    }
    f->hdrs = b.data; /* NULL when there is none */
    return 0;
}

static int refuse(par_http_exchange_t *x, int st, const char *msg)
{
    par__http_send_error(x->req, st, msg, strlen(msg), x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, par_status_http(st), x->rid,
                         NULL, x->t0, par_status_name(st));
    return 1;
}

/* A forward of the exchange's request, its thread not started yet; NULL
 * when out of memory. */
static fwd_t *fwd_new(par_http_exchange_t *x, const char *tag, int stream, uint64_t after)
{
    h2o_req_t *req = x->req;
    fwd_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->path = strndup(req->path.base, req->path.len);
    if (f->path == NULL || copy_headers(f, req) != 0) {
        free(f->path);
        free(f);
        return NULL;
    }
    atomic_init(&f->refs, 2); /* the guard's and the thread's */
    atomic_init(&f->news, 0);
    f->loop = x->loop;
    f->fleet = x->loop->http->rt->fleet;
    f->req = req;
    f->t0 = x->t0;
    f->label = x->m.route->label;
    snprintf(f->rid, sizeof(f->rid), "%s", x->rid);
    memcpy(f->tag, tag, PAR_RUN_TAG_LEN);
    f->method = req->method.len == 4 && req->method.base[0] == 'P'   ? 'P'
                : req->method.len == 6 && req->method.base[0] == 'D' ? 'D'
                                                                     : 'G';
    f->stream = stream;
    f->after = after;
    f->clen = -1;
    h2o_linklist_insert(&x->loop->forwards, &f->link);
    f->gen.proceed = on_proceed;
    f->gen.stop = on_stop;
    par_buf_init(&f->out, 0);
    par_buf_init(&f->pending, 0);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->room, NULL);
    return f;
}

int par__http_forward_run(par_http_exchange_t *x, int stream, uint64_t after)
{
    par_http_t *h = x->loop->http;
    par_fleet_t *fleet = h->rt->fleet;
    const char *tag = fleet ? par_run_id_tag(x->m.var, x->m.var_len) : NULL;
    if (tag == NULL || memcmp(tag, par_fleet_tag(fleet), PAR_RUN_TAG_LEN) == 0)
        return 0; /* this node's run, or no fleet: answered here */
    if (par__http_header(x->req, H2O_STRLIT("x-par-forwarded")).base) {
        par_fleet_count_forward(fleet, PAR_FLEET_FWD_LOOP);
        return refuse(x, PAR_E_FORWARD_LOOP,
                      "this request was forwarded by another node, but the run belongs to a "
                      "third one: the fleet's node registry disagrees between nodes (a node's "
                      "fleet.advertise_url points at another node?)");
    }
    if (atomic_fetch_add(&h->forwards, 1) >= FWD_MAX) {
        atomic_fetch_sub(&h->forwards, 1);
        par_fleet_count_forward(fleet, PAR_FLEET_FWD_BUSY);
        return refuse(x, PAR_E_SERVER_BUSY,
                      "too many requests are being forwarded to other "
                      "nodes; retry shortly");
    }
    fwd_t *f = fwd_new(x, tag, stream, after);
    fwd_t **slot = f ? h2o_mem_alloc_shared(&x->req->pool, sizeof(*slot), guard_dispose) : NULL;
    pthread_attr_t at;
    pthread_t th;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256u << 10);
    if (f == NULL || pthread_create(&th, &at, fwd_main, f) != 0) {
        pthread_attr_destroy(&at);
        atomic_fetch_sub(&h->forwards, 1);
        if (f) {
            f->req = NULL;
            *slot = f;    /* the guard drops the guard's reference */
            fwd_unref(f); /* the thread's */
        }
        return refuse(x, f ? PAR_E_SERVER_BUSY : PAR_E_NO_MEMORY,
                      f ? "cannot start forwarding the request to the run's node"
                        : "out of memory");
    }
    pthread_attr_destroy(&at);
    *slot = f;
    return 1;
}
