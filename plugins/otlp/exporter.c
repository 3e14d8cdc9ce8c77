/*
 * plugins/otlp/exporter.c — the bounded queue and the sender thread.
 *
 * Spans wait already encoded: each is written as OTLP JSON straight into
 * the waiting batch body (`pending`, which starts with the request's head:
 * resource and scope), so a span is never copied into a structure of its own
 * and a batch is sent as it stands: as the batch_size-th span is written,
 * the waiting buffer and the sender's (`body`, when free) trade places, so
 * a full batch goes out in place and later spans start the next one (only a
 * backlog that grew while the sender was busy is split by moving the spans
 * beyond its first batch, take()). At most cfg.queue_size spans wait; a span
 * arriving then is dropped and counted (par_otlp_spans_total{result=
 * "dropped"}), so a collector that is down or slow costs memory bounded by
 * the queue and never blocks the caller: otlp_exporter_spans_in() holds the
 * mutex while it encodes its spans, against the sender only. Metrics snapshots are cumulative, so
 * only the newest unsent one is kept; a snapshot replaced before it left is counted as dropped.
 *
 * The sender thread sends a batch when batch_size spans wait, when the
 * oldest waiting span is flush_ms old, or when a snapshot waits. A request
 * that fails with a retryable answer (http.c) is retried up to max_retries
 * times after Retry-After or an exponential backoff with jitter from
 * backoff_min_ms to backoff_max_ms; meanwhile new spans queue (and drop when
 * the queue is full). At stop, what is queued is sent once more within
 * shutdown_ms, without retries; a transfer still running then is aborted.
 *
 * Threads: any thread may queue; the sender thread alone does I/O.
 */
#include "otlp.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define BODY_KEEP_MAX (4u << 20) /* a body buffer larger than this is freed after use */

struct otlp_exporter {
    otlp_config_t cfg;
    json_t *resource;
    char *resource_json; /* encoded once: every batch starts with it */
    otlp_buf_t body;     /* the sender thread's batch: the head, then spans */
    size_t head_len;     /* bytes of the head both buffers start with */
    char *version;
    otlp_log_fn log;
    void *log_ud;
    otlp_http_t *http; /* the sender thread's */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* something queued, or stop */
    pthread_cond_t done; /* the sender thread ended */
    /* under lock */
    otlp_buf_t pending; /* the head, then the waiting spans, each followed by ',' */
    size_t *ends;       /* ends[i]: offset in pending after span i's ',' */
    size_t len;         /* spans waiting in pending */
    size_t ready;       /* spans of a full batch cut into body, not yet taken */
    bool body_busy;     /* body holds a batch (ready or being sent) */
    int64_t oldest_ms;  /* when the oldest waiting span came */
    json_t *snapshot;   /* the newest unsent snapshot, or NULL */
    uint64_t start_ns;  /* start of the cumulative self counters */
    bool stopping, finished, dropping;
    otlp_counters_t n;
    /* set once the shutdown deadline passed: running transfers end */
    volatile int abort_io;
};

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

uint64_t otlp_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void say(otlp_exporter_t *x, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(otlp_exporter_t *x, const char *level, const char *fmt, ...)
{
    if (!x->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    x->log(x->log_ud, level, msg);
}

/* Waits on `wake` until `deadline_ms` (monotonic) or a signal. Lock held. */
static void wait_until(otlp_exporter_t *x, int64_t deadline_ms)
{
    struct timespec now, ts;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left = deadline_ms - mono_ms();
    if (left <= 0)
        return;
    ts.tv_sec = now.tv_sec + left / 1000;
    ts.tv_nsec = now.tv_nsec + (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&x->wake, &x->lock, &ts);
}

/* ---- queueing (any thread) ---------------------------------------------------------------- */

/* Encodes `s` at the end of the waiting batch; false when it is dropped. Lock held. */
static bool put_locked(otlp_exporter_t *x, const otlp_span_t *s)
{
    if (!s || x->len + x->ready >= x->cfg.queue_size || x->stopping)
        return false;
    otlp_buf_t *b = &x->pending;
    size_t at = b->len;
    if (otlp_encode_span(b, s) != 0 || otlp_buf_add(b, ",", 1) != 0) {
        b->len = at; /* out of memory: the batch stays as it was */
        b->oom = false;
        if (b->p)
            b->p[at] = '\0';
        return false;
    }
    if (x->len == 0)
        x->oldest_ms = mono_ms();
    x->ends[x->len++] = b->len;
    x->n.spans_queued++;
    if (x->len == x->cfg.batch_size && !x->body_busy) {
        /* a full batch: the buffers trade places, so the sender sends it as
         * it stands and spans that follow start a new one (no backlog to
         * move when many spans come at once) */
        otlp_buf_t t = x->body;
        x->body = x->pending;
        x->pending = t;
        x->ready = x->len;
        x->len = 0;
        x->body_busy = true;
        pthread_cond_signal(&x->wake);
        return true;
    }
    /* the sender sleeps without a deadline while nothing waits: one signal
     * per batch handed in, and one when a full batch waits */
    if (x->len == 1 || x->len == x->cfg.batch_size)
        pthread_cond_signal(&x->wake);
    return true;
}

/* Counts `dropped` spans; says so the first time in a while. Lock held. */
static bool count_drops(otlp_exporter_t *x, size_t dropped)
{
    if (!dropped)
        return false;
    x->n.spans_dropped += dropped;
    bool first = !x->dropping;
    x->dropping = true;
    return first;
}

static void warn_drops(otlp_exporter_t *x)
{
    say(x, "warn",
        "otlp: span queue full (%u): dropping spans until the collector at %s "
        "catches up (par_otlp_spans_total{result=\"dropped\"})",
        x->cfg.queue_size, x->cfg.endpoint);
}

void otlp_exporter_spans(otlp_exporter_t *x, otlp_span_t **spans, size_t n)
{
    size_t dropped = 0;
    pthread_mutex_lock(&x->lock);
    for (size_t i = 0; i < n; i++)
        dropped += !put_locked(x, spans[i]);
    bool first_drop = count_drops(x, dropped);
    pthread_mutex_unlock(&x->lock);
    for (size_t i = 0; i < n; i++)
        free(spans[i]);
    if (first_drop)
        warn_drops(x);
}

void otlp_exporter_spans_in(otlp_exporter_t *x, const otlp_span_in_t *in, size_t n)
{
    size_t dropped = 0;
    pthread_mutex_lock(&x->lock);
    for (size_t i = 0; i < n; i++) {
        if (x->len + x->ready >= x->cfg.queue_size || x->stopping) {
            dropped++; /* no need to look at it */
            continue;
        }
        otlp_span_view_t v;
        const otlp_span_t *s = otlp_span_view(&in[i], &v);
        otlp_span_t *own = s ? NULL : otlp_span_new(&in[i]); /* too many attributes */
        dropped += !put_locked(x, s ? s : own);
        free(own);
    }
    bool first_drop = count_drops(x, dropped);
    pthread_mutex_unlock(&x->lock);
    if (first_drop)
        warn_drops(x);
}

void otlp_exporter_span(otlp_exporter_t *x, otlp_span_t *s)
{
    otlp_exporter_spans(x, &s, 1);
}

bool otlp_exporter_full(otlp_exporter_t *x)
{
    pthread_mutex_lock(&x->lock);
    bool full = x->len + x->ready >= x->cfg.queue_size || x->stopping;
    pthread_mutex_unlock(&x->lock);
    return full;
}

void otlp_exporter_metrics(otlp_exporter_t *x, json_t *metrics)
{
    json_t *drop;
    pthread_mutex_lock(&x->lock);
    if (x->stopping) {
        drop = metrics;
    } else {
        drop = x->snapshot;
        x->snapshot = metrics;
        pthread_cond_signal(&x->wake);
    }
    if (drop)
        x->n.snapshots_dropped++;
    pthread_mutex_unlock(&x->lock);
    json_decref(drop);
}

/* One sum or gauge with a point per (attribute value, value) pair. */
static int self_metric(json_t *out, const char *name, const char *desc, const char *kind,
                       const char *attr, const char *const *values, const uint64_t *v, size_t n,
                       uint64_t start_ns, uint64_t now_ns)
{
    json_t *m = otlp_metric_new(name, desc, "1", kind, true);
    json_t *points = m ? otlp_metric_points(m) : NULL;
    for (size_t i = 0; points && i < n; i++) {
        const char *attrs[] = {attr, values ? values[i] : NULL, NULL};
        if (otlp_point_number(points, attr ? attrs : NULL, start_ns, now_ns, true, (int64_t)v[i],
                              0) != 0)
            points = NULL;
    }
    if (!points) {
        json_decref(m);
        return -1;
    }
    return json_array_append_new(out, m);
}

int otlp_exporter_self_metrics(otlp_exporter_t *x, json_t *metrics, uint64_t start_ns,
                               uint64_t now_ns)
{
    otlp_counters_t c;
    otlp_exporter_counters(x, &c);
    static const char *const results[] = {"sent", "dropped"};
    uint64_t spans[] = {c.spans_sent, c.spans_dropped};
    uint64_t snaps[] = {c.snapshots_sent, c.snapshots_dropped};
    uint64_t reqs[] = {c.requests}, retries[] = {c.retries}, queue[] = {c.queue_len};
    uint64_t start = x->start_ns ? x->start_ns : start_ns;
    if (self_metric(metrics, "par_otlp_spans_total", "spans the OTLP exporter sent or dropped",
                    "sum", "result", results, spans, 2, start, now_ns) != 0 ||
        self_metric(metrics, "par_otlp_snapshots_total",
                    "metrics snapshots the OTLP exporter sent or dropped", "sum", "result", results,
                    snaps, 2, start, now_ns) != 0 ||
        self_metric(metrics, "par_otlp_requests_total", "OTLP/HTTP requests made", "sum", NULL,
                    NULL, reqs, 1, start, now_ns) != 0 ||
        self_metric(metrics, "par_otlp_retries_total", "OTLP/HTTP requests retried", "sum", NULL,
                    NULL, retries, 1, start, now_ns) != 0 ||
        self_metric(metrics, "par_otlp_queue_spans", "spans waiting to be sent", "gauge", NULL,
                    NULL, queue, 1, start, now_ns) != 0)
        return -1;
    return 0;
}

void otlp_exporter_counters(otlp_exporter_t *x, otlp_counters_t *out)
{
    pthread_mutex_lock(&x->lock);
    *out = x->n;
    out->queue_len = x->len + x->ready;
    pthread_mutex_unlock(&x->lock);
}

/* ---- sending (the sender thread) ---------------------------------------------------------- */

static int64_t backoff_ms(const otlp_config_t *c, unsigned attempt)
{
    uint64_t d = c->backoff_min_ms;
    for (unsigned i = 0; i < attempt && d < c->backoff_max_ms; i++)
        d *= 2;
    if (d > c->backoff_max_ms)
        d = c->backoff_max_ms;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)mono_ms();
    return (int64_t)(d / 2 + r % (d / 2 + 1)); /* "equal jitter": [d/2, d] */
}

/* POSTs one body, retrying; true when the collector took it. */
static bool send_body(otlp_exporter_t *x, const char *url, const char *body, size_t len,
                      const char *what)
{
    otlp_post_result_t r;
    for (unsigned attempt = 0;; attempt++) {
        otlp_http_post(x->http, url, body, len, &x->abort_io, &r);
        pthread_mutex_lock(&x->lock);
        x->n.requests++;
        bool last = x->stopping || attempt >= x->cfg.max_retries;
        if (r.outcome == OTLP_RETRY && !last)
            x->n.retries++;
        if (r.outcome != OTLP_SENT && (r.outcome == OTLP_REFUSED || last))
            x->n.failures++;
        pthread_mutex_unlock(&x->lock);
        if (r.outcome == OTLP_SENT)
            return true;
        if (r.outcome == OTLP_REFUSED || last) {
            say(x, "warn", "otlp: %s dropped after %u attempt%s to %s: %s", what, attempt + 1,
                attempt ? "s" : "", url, r.detail);
            return false;
        }
        int64_t wait = r.retry_after_ms >= 0 ? r.retry_after_ms : backoff_ms(&x->cfg, attempt);
        if (wait > x->cfg.backoff_max_ms)
            wait = x->cfg.backoff_max_ms;
        if (attempt == 0)
            say(x, "warn", "otlp: %s to %s failed (%s); retrying in %lld ms", what, url, r.detail,
                (long long)wait);
        pthread_mutex_lock(&x->lock);
        int64_t until = mono_ms() + wait;
        while (!x->stopping && mono_ms() < until)
            wait_until(x, until);
        pthread_mutex_unlock(&x->lock);
    }
}

/* Sends the batch in x->body (the head, then n spans each followed by ','). */
static void send_spans(otlp_exporter_t *x, size_t n)
{
    char what[64];
    snprintf(what, sizeof(what), "a batch of %zu span%s", n, n == 1 ? "" : "s");
    otlp_buf_t *b = &x->body;
    b->len--; /* the last span's ',' */
    bool enc = otlp_encode_traces_tail(b) == 0;
    bool ok = enc && send_body(x, x->cfg.traces_url, b->p, b->len, what);
    if (!enc)
        say(x, "warn", "otlp: out of memory encoding %s", what);
    b->len = x->head_len; /* ready for the next batch */
    b->oom = false;
    b->p[b->len] = '\0';
    if (b->cap > BODY_KEEP_MAX) { /* an unusual batch: most of its memory goes */
        char *p = realloc(b->p, BODY_KEEP_MAX / 4);
        if (p)
            b->p = p, b->cap = BODY_KEEP_MAX / 4;
    }
    pthread_mutex_lock(&x->lock);
    x->body_busy = false;
    if (ok)
        x->n.spans_sent += n;
    else
        x->n.spans_dropped += n;
    if (ok && x->dropping && x->len < x->cfg.queue_size / 2)
        x->dropping = false;
    pthread_mutex_unlock(&x->lock);
}

static void send_snapshot(otlp_exporter_t *x, json_t *metrics)
{
    size_t len = 0;
    uint64_t now = otlp_now_ns();
    /* the exporter's own counters ride along with every snapshot */
    if (otlp_exporter_self_metrics(x, metrics, now, now) != 0)
        say(x, "warn", "otlp: out of memory adding the exporter's own counters");
    char *body = otlp_encode_metrics(x->resource, metrics, x->version, &len);
    bool ok = body && send_body(x, x->cfg.metrics_url, body, len, "a metrics snapshot");
    free(body);
    json_decref(metrics);
    pthread_mutex_lock(&x->lock);
    if (ok)
        x->n.snapshots_sent++;
    else
        x->n.snapshots_dropped++;
    pthread_mutex_unlock(&x->lock);
}

/* Takes the snapshot out of the queue and the next batch into x->body: a
 * batch put_locked already cut there, or up to batch_size waiting spans
 * (body then holds the head only); the number of spans. Lock held. */
static size_t take(otlp_exporter_t *x, json_t **snapshot)
{
    *snapshot = x->snapshot;
    x->snapshot = NULL;
    if (x->ready) { /* a full batch already cut into body (put_locked) */
        size_t n = x->ready;
        x->ready = 0;
        return n;
    }
    size_t n = x->len < x->cfg.batch_size ? x->len : x->cfg.batch_size;
    if (n == 0)
        return 0;
    assert(!x->body_busy); /* the sender alone frees body, after sending */
    x->body_busy = true;
    /* the buffers trade places; spans beyond the batch (a backlog, usually
     * a few that came while the sender woke) move back to the waiting one */
    otlp_buf_t t = x->body;
    x->body = x->pending;
    x->pending = t;
    size_t rest = x->len - n, end = x->ends[n - 1];
    x->len = 0;
    if (rest == 0)
        return n;
    otlp_buf_t *b = &x->body;
    if (otlp_buf_add(&x->pending, b->p + end, b->len - end) != 0) {
        x->pending.len = x->head_len; /* out of memory: the rest is lost */
        x->pending.oom = false;
        x->pending.p[x->head_len] = '\0';
        x->n.spans_dropped += rest;
        rest = 0;
    }
    for (size_t i = 0; i < rest; i++)
        x->ends[i] = x->ends[n + i] - (end - x->head_len);
    x->len = rest;
    b->len = end;
    b->p[end] = '\0';
    if (rest)
        x->oldest_ms = mono_ms();
    return n;
}

/* Empties the waiting batch, counting its spans as dropped. Lock held. */
static void drop_waiting(otlp_exporter_t *x)
{
    x->n.spans_dropped += x->len + x->ready;
    x->len = 0;
    x->pending.len = x->head_len;
    x->pending.p[x->head_len] = '\0';
    if (x->ready) { /* a batch cut but not taken */
        x->ready = 0;
        x->body.len = x->head_len;
        x->body.p[x->head_len] = '\0';
        x->body_busy = false;
    }
}

static bool due(otlp_exporter_t *x)
{
    return x->snapshot || x->ready || x->len >= x->cfg.batch_size ||
           (x->len > 0 && mono_ms() >= x->oldest_ms + x->cfg.flush_ms);
}

static void *sender_main(void *arg)
{
    otlp_exporter_t *x = arg;
    pthread_mutex_lock(&x->lock);
    for (;;) {
        while (!x->stopping && !due(x))
            wait_until(x, x->len ? x->oldest_ms + x->cfg.flush_ms : mono_ms() + 3600000);
        if (x->stopping && x->len == 0 && !x->ready && !x->snapshot)
            break;
        /* at stop: what is left, once, until the deadline (then abort_io ends it) */
        json_t *snap;
        size_t n = take(x, &snap);
        pthread_mutex_unlock(&x->lock);
        if (snap)
            send_snapshot(x, snap);
        if (n)
            send_spans(x, n);
        pthread_mutex_lock(&x->lock);
        if (x->abort_io && x->len + x->ready > 0) /* past the shutdown deadline: count the rest */
            drop_waiting(x);
    }
    x->finished = true;
    pthread_cond_broadcast(&x->done);
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

/* ---- life ----------------------------------------------------------------------------------- */

static void destroy(otlp_exporter_t *x)
{
    free(x->pending.p);
    free(x->ends);
    free(x->body.p);
    free(x->resource_json);
    json_decref(x->snapshot);
    json_decref(x->resource);
    otlp_http_free(x->http);
    otlp_config_free(&x->cfg);
    free(x->version);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->wake);
    pthread_cond_destroy(&x->done);
    free(x);
}

otlp_exporter_t *otlp_exporter_start(otlp_config_t *cfg, json_t *resource, const char *version,
                                     otlp_log_fn log, void *log_ud, char *err, size_t errlen)
{
    otlp_exporter_t *x = calloc(1, sizeof(*x));
    if (!x) {
        otlp_config_free(cfg);
        json_decref(resource);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    x->resource = resource;
    x->log = log;
    x->log_ud = log_ud;
    x->start_ns = otlp_now_ns();
    pthread_mutex_init(&x->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x->wake, &ca);
    pthread_cond_init(&x->done, &ca);
    pthread_condattr_destroy(&ca);
    x->version = strdup(version ? version : "");
    x->ends = calloc(x->cfg.queue_size, sizeof(*x->ends));
    x->resource_json = x->resource ? json_dumps(x->resource, JSON_COMPACT) : NULL;
    if (!x->version || !x->ends || !x->resource_json ||
        otlp_encode_traces_head(&x->pending, x->resource_json, x->version) != 0 ||
        otlp_encode_traces_head(&x->body, x->resource_json, x->version) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    x->head_len = x->body.len;
    if (!(x->http = otlp_http_new(&x->cfg))) {
        snprintf(err, errlen, "cannot make an HTTP client (libcurl: out of memory)");
        goto fail;
    }
    int rc = pthread_create(&x->thread, NULL, sender_main, x);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the sender thread: %s", strerror(rc));
        goto fail;
    }
    return x;
fail:
    destroy(x);
    return NULL;
}

void otlp_exporter_stop(otlp_exporter_t *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->lock);
    x->stopping = true;
    pthread_cond_broadcast(&x->wake);
    int64_t until = mono_ms() + x->cfg.shutdown_ms;
    while (!x->finished && mono_ms() < until) {
        struct timespec now, ts;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t left = until - mono_ms();
        ts.tv_sec = now.tv_sec + left / 1000;
        ts.tv_nsec = now.tv_nsec + (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&x->done, &x->lock, &ts);
    }
    x->abort_io = 1;
    pthread_mutex_unlock(&x->lock);
    pthread_join(x->thread, NULL);
    otlp_counters_t c = x->n;
    if (c.spans_dropped || c.snapshots_dropped)
        say(x, "warn",
            "otlp: stopped; %llu span(s) sent, %llu dropped; %llu snapshot(s) "
            "sent, %llu dropped",
            (unsigned long long)c.spans_sent, (unsigned long long)c.spans_dropped,
            (unsigned long long)c.snapshots_sent, (unsigned long long)c.snapshots_dropped);
    destroy(x);
}
