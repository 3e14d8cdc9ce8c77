/*
 * plugins/otlp/exporter.c — the bounded queue and the sender thread.
 *
 * Spans wait in a ring of cfg.queue_size entries; a span arriving at a full
 * ring is dropped and counted (par_otlp_spans_total{result="dropped"}), so a
 * collector that is down or slow costs memory bounded by the ring and never
 * blocks the caller: otlp_exporter_span() takes a mutex held only for
 * pointer moves. Metrics snapshots are cumulative, so only the newest unsent
 * one is kept; a snapshot replaced before it left is counted as dropped.
 *
 * The sender thread sends a batch when batch_size spans wait, when the
 * oldest waiting span is flush_ms old, or when a snapshot waits. A request
 * that fails with a retryable answer (http.c) is retried up to max_retries
 * times after Retry-After or an exponential backoff with jitter from
 * backoff_min_ms to backoff_max_ms; meanwhile new spans queue (and drop when
 * the ring is full). At stop, what is queued is sent once more within
 * shutdown_ms, without retries; a transfer still running then is aborted.
 *
 * Threads: any thread may queue; the sender thread alone does I/O.
 */
#include "otlp.h"

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
    otlp_buf_t body;     /* the sender thread's, reused from batch to batch */
    char *version;
    otlp_log_fn log;
    void *log_ud;
    otlp_http_t *http; /* the sender thread's */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* something queued, or stop */
    pthread_cond_t done; /* the sender thread ended */
    /* under lock */
    otlp_span_t **ring;
    otlp_span_t **batch; /* the sender thread's, batch_size entries */
    size_t head, len;
    int64_t oldest_ms; /* when the oldest waiting span came */
    json_t *snapshot;  /* the newest unsent snapshot, or NULL */
    uint64_t start_ns; /* start of the cumulative self counters */
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

void otlp_exporter_spans(otlp_exporter_t *x, otlp_span_t **spans, size_t n)
{
    size_t dropped = 0;
    bool first_drop = false;
    pthread_mutex_lock(&x->lock);
    for (size_t i = 0; i < n; i++) {
        otlp_span_t *s = spans[i];
        if (!s || x->len >= x->cfg.queue_size || x->stopping) {
            dropped++;
            continue; /* freed below, outside the lock */
        }
        spans[i] = NULL;
        if (x->len == 0)
            x->oldest_ms = mono_ms();
        x->ring[(x->head + x->len++) % x->cfg.queue_size] = s;
        x->n.spans_queued++;
        /* the sender sleeps without a deadline while the ring is empty: one
         * signal per batch handed in, and one when a full batch waits */
        if (x->len == 1 || x->len == x->cfg.batch_size)
            pthread_cond_signal(&x->wake);
    }
    if (dropped) {
        x->n.spans_dropped += dropped;
        first_drop = !x->dropping;
        x->dropping = true;
    }
    pthread_mutex_unlock(&x->lock);
    for (size_t i = 0; dropped && i < n; i++)
        free(spans[i]);
    if (first_drop)
        say(x, "warn",
            "otlp: span queue full (%u): dropping spans until the collector at %s "
            "catches up (par_otlp_spans_total{result=\"dropped\"})",
            x->cfg.queue_size, x->cfg.endpoint);
}

void otlp_exporter_span(otlp_exporter_t *x, otlp_span_t *s)
{
    otlp_exporter_spans(x, &s, 1);
}

bool otlp_exporter_full(otlp_exporter_t *x)
{
    pthread_mutex_lock(&x->lock);
    bool full = x->len >= x->cfg.queue_size || x->stopping;
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
    out->queue_len = x->len;
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

static void send_spans(otlp_exporter_t *x, otlp_span_t **batch, size_t n)
{
    char what[64];
    snprintf(what, sizeof(what), "a batch of %zu span%s", n, n == 1 ? "" : "s");
    otlp_buf_t *b = &x->body;
    bool enc = otlp_encode_traces_into(b, x->resource_json, batch, n, x->version) == 0;
    bool ok = enc && send_body(x, x->cfg.traces_url, b->p, b->len, what);
    if (!enc)
        say(x, "warn", "otlp: out of memory encoding %s", what);
    if (b->cap > BODY_KEEP_MAX) { /* an unusual batch: its memory is not kept */
        free(b->p);
        memset(b, 0, sizeof(*b));
    }
    pthread_mutex_lock(&x->lock);
    if (ok)
        x->n.spans_sent += n;
    else
        x->n.spans_dropped += n;
    if (ok && x->dropping && x->len < x->cfg.queue_size / 2)
        x->dropping = false;
    pthread_mutex_unlock(&x->lock);
    for (size_t i = 0; i < n; i++)
        free(batch[i]);
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

/* Takes up to batch_size spans and the snapshot out of the queue. Lock held. */
static size_t take(otlp_exporter_t *x, otlp_span_t **batch, json_t **snapshot)
{
    size_t n = 0;
    while (x->len > 0 && n < x->cfg.batch_size) {
        batch[n++] = x->ring[x->head];
        x->head = (x->head + 1) % x->cfg.queue_size;
        x->len--;
    }
    if (x->len > 0)
        x->oldest_ms = mono_ms();
    *snapshot = x->snapshot;
    x->snapshot = NULL;
    return n;
}

static bool due(otlp_exporter_t *x)
{
    return x->snapshot || x->len >= x->cfg.batch_size ||
           (x->len > 0 && mono_ms() >= x->oldest_ms + x->cfg.flush_ms);
}

static void *sender_main(void *arg)
{
    otlp_exporter_t *x = arg;
    otlp_span_t **batch = x->batch;
    pthread_mutex_lock(&x->lock);
    for (;;) {
        while (!x->stopping && !due(x))
            wait_until(x, x->len ? x->oldest_ms + x->cfg.flush_ms : mono_ms() + 3600000);
        if (x->stopping && x->len == 0 && !x->snapshot)
            break;
        /* at stop: what is left, once, until the deadline (then abort_io ends it) */
        json_t *snap;
        size_t n = take(x, batch, &snap);
        pthread_mutex_unlock(&x->lock);
        if (snap)
            send_snapshot(x, snap);
        if (n)
            send_spans(x, batch, n);
        pthread_mutex_lock(&x->lock);
        if (x->abort_io) {
            while (x->len > 0) { /* past the shutdown deadline: count the rest */
                free(x->ring[x->head]);
                x->head = (x->head + 1) % x->cfg.queue_size;
                x->len--;
                x->n.spans_dropped++;
            }
        }
    }
    x->finished = true;
    pthread_cond_broadcast(&x->done);
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

/* ---- life ----------------------------------------------------------------------------------- */

static void destroy(otlp_exporter_t *x)
{
    while (x->len > 0) {
        free(x->ring[x->head]);
        x->head = (x->head + 1) % x->cfg.queue_size;
        x->len--;
    }
    free(x->ring);
    free(x->batch);
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
    x->ring = calloc(x->cfg.queue_size, sizeof(*x->ring));
    x->batch = calloc(x->cfg.batch_size, sizeof(*x->batch));
    x->resource_json = x->resource ? json_dumps(x->resource, JSON_COMPACT) : NULL;
    if (!x->version || !x->ring || !x->batch || !x->resource_json) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
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
