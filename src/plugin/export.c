/*
 * plugin/export.c — telemetry exporters: one thread and one bounded queue
 * per exporter plugin.
 *
 * Each exporter plugin is an entry of the runtime's telemetry-exporter
 * registry (runtime/exporters.h), "plugin:<name>", after the built-in
 * Prometheus entry. Finished calls reach its `finished` (exporter_finished)
 * on whichever thread finishes them; it copies the span and the usage record
 * into one allocation each and queues them — a full queue drops the item and
 * counts it (par_plugin_exporter_dropped_total{plugin}); it never blocks,
 * never calls the plugin. A call wakes the exporter's thread only when the
 * queue goes from empty to non-empty while the thread sleeps without a
 * deadline, or when WAKE_AT items wait: the thread then lets a batch gather
 * for at most GATHER_MS, so under load a wakeup carries hundreds of items,
 * not one. The exporter's thread takes batches off its queue and hands them
 * to the plugin (spans, usage), and every metrics_interval_ms renders the
 * runtime's metrics through the registry's scrape entry — what /metrics
 * serves — into a snapshot, as text and parsed points. Stopping delivers
 * what is queued, then calls flush.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "plugin/internal.h"
#include "runtime/exporters.h"
#include "runtime/metrics.h"
#include "util/clock.h"

#define QUEUE_DEFAULT 8192 /* items waiting per exporter; beyond: dropped and counted */
#define BATCH_MAX 512      /* items handed over per call */
#define METRICS_DEFAULT_MS 10000
#define WAKE_AT 256   /* items that wake the thread at once (at most half the queue) */
#define GATHER_MS 100 /* how long a first item waits for more */

enum { ITEM_SPAN, ITEM_USAGE };

typedef struct item {
    int kind;
    par_span_t span;
    par_usage_record_t usage;
    char strs[]; /* the strings both point into */
} item_t;

struct par_exporter {
    par_exporter_impl_t impl; /* the registry's entry, "plugin:<name>" */
    char *impl_name;
    par_plug_t *p;
    par_runtime_t *rt;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    item_t **queue; /* a ring of `cap` */
    size_t head, count, cap;
    int stopping;
    int gathering;  /* the thread sleeps until gather_until: no signal for a first item */
    size_t wake_at; /* WAKE_AT, or half a smaller queue */
    atomic_ulong dropped, delivered;
    int64_t next_metrics_ms;
};

static int64_t unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- items ------------------------------------------------------------------------- */

/* Measures `n` strings (their lengths with the NUL into len[]) and returns the total. */
static size_t total(const char *const *in, size_t *len, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += len[i] = strlen(in[i]) + 1;
    return t;
}

/* Copies `n` measured strings into `dst` one after the other; each out[i]
 * points at its copy. */
static void pack(char *dst, const char *const *in, const size_t *len, const char **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memcpy(dst, in[i], len[i]);
        out[i] = dst;
        dst += len[i];
    }
}

static item_t *span_item(const par_call_t *c)
{
    const char *s[] = {c->trace_id,
                       c->span_id,
                       c->parent_span_id,
                       c->agent_id,
                       c->pv->name,
                       c->pv->version,
                       c->request_id,
                       c->subject ? c->subject : "",
                       c->tenant ? c->tenant : "",
                       c->status == PAR_OK ? "" : par_status_name(c->status)};
    size_t n = sizeof(s) / sizeof(*s), len[sizeof(s) / sizeof(*s)];
    item_t *it = malloc(sizeof(*it) + total(s, len, n));
    if (it == NULL)
        return NULL;
    memset(it, 0, sizeof(*it));
    it->kind = ITEM_SPAN;
    const char *o[10];
    pack(it->strs, s, len, o, n);
    par_span_t *sp = &it->span;
    sp->trace_id = o[0], sp->span_id = o[1], sp->parent_span_id = o[2], sp->agent_id = o[3];
    sp->package = o[4], sp->version = o[5], sp->request_id = o[6], sp->subject = o[7];
    sp->tenant = o[8], sp->error = o[9];
    sp->status = c->status;
    sp->sub_call = c->_hop;
    /* the call has just finished: its end is now, on the wall clock, and its
     * start that much earlier (wall_ms has only millisecond precision) */
    sp->end_unix_ns = unix_ns();
    sp->start_unix_ns = sp->end_unix_ns - (c->finished_ns - c->started_ns);
    return it;
}

static item_t *usage_item(const par_call_t *c)
{
    char agent[PAR_ID_MAX + 1];
    if (c->export_name && c->export_name[0])
        snprintf(agent, sizeof(agent), "%s/%s", c->pv->name, c->export_name);
    else
        snprintf(agent, sizeof(agent), "%s", c->pv->name);
    const char *s[] = {c->id,
                       c->parent_id,
                       c->request_id,
                       c->trace_id,
                       c->span_id,
                       agent,
                       c->pv->name,
                       c->pv->version,
                       c->subject ? c->subject : "",
                       c->tenant ? c->tenant : "",
                       c->status == PAR_OK ? "ok" : par_status_name(c->status),
                       c->status == PAR_OK && c->units_json ? c->units_json : "{}"};
    size_t n = sizeof(s) / sizeof(*s), len[sizeof(s) / sizeof(*s)];
    item_t *it = malloc(sizeof(*it) + total(s, len, n));
    if (it == NULL)
        return NULL;
    memset(it, 0, sizeof(*it));
    it->kind = ITEM_USAGE;
    const char *o[12];
    pack(it->strs, s, len, o, n);
    par_usage_record_t *u = &it->usage;
    u->id = o[0], u->parent_id = o[1], u->request_id = o[2], u->trace_id = o[3];
    u->span_id = o[4], u->agent_id = o[5], u->package = o[6], u->version = o[7];
    u->subject = o[8], u->tenant = o[9], u->status = o[10], u->units = o[11];
    u->ts_unix_ms = c->wall_ms;
    u->duration_ms = (double)(c->finished_ns - c->started_ns) / 1e6;
    u->cpu_ms = c->cpu_ns >= 0 ? (double)c->cpu_ns / 1e6 : -1;
    u->bytes_in = (int64_t)c->input_len;
    u->bytes_out = c->status == PAR_OK ? (int64_t)c->output.len : 0;
    return it;
}

/* Queues `it` (taken), or drops and counts it. Never blocks on the plugin. */
static void submit(par_exporter_t *e, item_t *it)
{
    if (it == NULL) {
        atomic_fetch_add(&e->dropped, 1);
        return;
    }
    pthread_mutex_lock(&e->lock);
    int ok = !e->stopping && e->count < e->cap;
    if (ok) {
        e->queue[(e->head + e->count) % e->cap] = it;
        e->count++;
        if ((e->count == 1 && !e->gathering) || e->count == e->wake_at)
            pthread_cond_signal(&e->cond);
    }
    pthread_mutex_unlock(&e->lock);
    if (!ok) {
        free(it);
        atomic_fetch_add(&e->dropped, 1);
    }
}

/* The registry entry's `finished`: on the thread that finished the call. */
static void exporter_finished(const par_exporter_impl_t *impl, const par_call_t *c)
{
    par_exporter_t *e = impl->data;
    if (e->p->exporter.spans)
        submit(e, span_item(c));
    if (e->p->exporter.usage)
        submit(e, usage_item(c));
}

/* ---- metrics snapshots ----------------------------------------------------------------- */

int par__plug_metrics_parse(char *text, par_metric_point_t **points, size_t *count,
                            par_metric_label_t **labels);

static void send_metrics(par_exporter_t *e)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    par__runtime_render_metrics(e->rt, &b); /* the registry's scrape entry */
    par_buf_append(&b, "", 1);              /* NUL */
    char *copy = b.data ? strdup(b.data) : NULL;
    par_metric_point_t *pts = NULL;
    par_metric_label_t *labels = NULL;
    size_t n = 0;
    if (copy && par__plug_metrics_parse(copy, &pts, &n, &labels) == PAR_OK) {
        par_metrics_snapshot_t s = {
            .size = sizeof(s),
            .time_unix_ns = unix_ns(),
            .start_unix_ns = unix_ns() - (par_mono_ms() - e->rt->started_ms) * 1000000,
            .text = b.data,
            .text_len = b.len - 1,
            .points = pts,
            .point_count = n,
        };
        e->p->exporter.metrics(e->p->state, &s);
    }
    free(pts);
    free(labels);
    free(copy);
    par_buf_free(&b);
}

/* ---- the thread ------------------------------------------------------------------------ */

/* Hands a batch to the plugin: spans, then usage records, in queue order. */
static void deliver(par_exporter_t *e, item_t **batch, size_t n)
{
    par_span_t spans[BATCH_MAX];
    par_usage_record_t usage[BATCH_MAX];
    size_t ns = 0, nu = 0;
    for (size_t i = 0; i < n; i++) {
        if (batch[i]->kind == ITEM_SPAN)
            spans[ns++] = batch[i]->span;
        else
            usage[nu++] = batch[i]->usage;
    }
    if (ns)
        e->p->exporter.spans(e->p->state, spans, ns);
    if (nu)
        e->p->exporter.usage(e->p->state, usage, nu);
    atomic_fetch_add(&e->delivered, n);
    for (size_t i = 0; i < n; i++)
        free(batch[i]);
}

static uint32_t interval_ms(const par_exporter_t *e)
{
    uint32_t ms = e->p->exporter.metrics_interval_ms;
    return ms ? ms : METRICS_DEFAULT_MS;
}

/* Sleeps on the queue's condition until `due` (par_mono_ms's clock) or a signal. Lock held. */
static void sleep_until(par_exporter_t *e, int64_t due)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wait = due - par_mono_ms();
    if (wait <= 0)
        return;
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000)
        ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&e->cond, &e->lock, &ts);
}

/* Waits until there is work: WAKE_AT items, items GATHER_MS after the first
 * was seen, a metrics snapshot due, or stop. Lock held. */
static void wait_work(par_exporter_t *e)
{
    int64_t gather_until = 0;
    for (;;) {
        int64_t now = par_mono_ms();
        if (e->stopping || e->count >= e->wake_at ||
            (e->p->exporter.metrics && now >= e->next_metrics_ms))
            break;
        if (e->count && gather_until == 0)
            gather_until = now + GATHER_MS;
        if (e->count && now >= gather_until)
            break;
        int64_t due = e->p->exporter.metrics ? e->next_metrics_ms : now + 60000;
        if (e->count && gather_until < due)
            due = gather_until;
        e->gathering = e->count > 0; /* a submit signals only at wake_at now */
        sleep_until(e, due);
    }
    e->gathering = 0;
}

static void *run(void *arg)
{
    par_exporter_t *e = arg;
    item_t *batch[BATCH_MAX];
    e->next_metrics_ms = par_mono_ms() + interval_ms(e);
    pthread_mutex_lock(&e->lock);
    for (;;) {
        wait_work(e);
        size_t n = 0;
        while (e->count && n < BATCH_MAX) {
            batch[n++] = e->queue[e->head];
            e->head = (e->head + 1) % e->cap;
            e->count--;
        }
        int stop = e->stopping && e->count == 0;
        pthread_mutex_unlock(&e->lock);
        if (n)
            deliver(e, batch, n);
        if (e->p->exporter.metrics && (par_mono_ms() >= e->next_metrics_ms || stop)) {
            send_metrics(e); /* a last snapshot at stop */
            e->next_metrics_ms = par_mono_ms() + interval_ms(e);
        }
        if (stop)
            break;
        pthread_mutex_lock(&e->lock);
    }
    if (e->p->exporter.flush)
        e->p->exporter.flush(e->p->state);
    return NULL;
}

/* ---- metrics of the exporters ------------------------------------------------------------ */

static int collect(par_buf_t *out, void *ctx)
{
    par_plugins_t *ps = ctx;
    par_metrics_family(out, "par_plugin_exporter_dropped_total", "counter",
                       "telemetry items an exporter's full queue dropped");
    for (size_t i = 0; i < ps->count; i++)
        if (ps->items[i]->exp)
            par_buf_appendf(out, "par_plugin_exporter_dropped_total{plugin=\"%s\"} %lu\n",
                            ps->items[i]->name, atomic_load(&ps->items[i]->exp->dropped));
    par_metrics_family(out, "par_plugin_exporter_delivered_total", "counter",
                       "telemetry items handed to an exporter");
    for (size_t i = 0; i < ps->count; i++)
        if (ps->items[i]->exp)
            par_buf_appendf(out, "par_plugin_exporter_delivered_total{plugin=\"%s\"} %lu\n",
                            ps->items[i]->name, atomic_load(&ps->items[i]->exp->delivered));
    return PAR_OK;
}

static void exporter_free(par_exporter_t *e)
{
    while (e->count) {
        free(e->queue[e->head]);
        e->head = (e->head + 1) % e->cap;
        e->count--;
    }
    free(e->queue);
    free(e->impl_name);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e);
}

int par__plug_exporter_start(par_plug_t *p, par_runtime_t *rt, par_buf_t *err)
{
    par_exporter_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return PAR_E_NO_MEMORY;
    e->p = p;
    e->rt = rt;
    e->cap = PAR_PLUGIN_HAS(&p->exporter, par_exporter_ops_t, queue_max) && p->exporter.queue_max
                 ? p->exporter.queue_max
                 : QUEUE_DEFAULT;
    e->wake_at = e->cap / 2 < WAKE_AT ? (e->cap / 2 ? e->cap / 2 : 1) : WAKE_AT;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->queue = calloc(e->cap, sizeof(*e->queue));
    size_t len = strlen(p->name) + sizeof("plugin:");
    if (e->queue == NULL || (e->impl_name = malloc(len)) == NULL) {
        exporter_free(e);
        return PAR_E_NO_MEMORY;
    }
    snprintf(e->impl_name, len, "plugin:%s", p->name);
    e->impl.name = e->impl_name;
    e->impl.finished = p->exporter.spans || p->exporter.usage ? exporter_finished : NULL;
    e->impl.data = e;
    int first = 1;
    for (size_t i = 0; i < p->set->count; i++)
        first = first && p->set->items[i]->exp == NULL;
    if (first && par_metrics_register(rt->metrics, collect, p->set) != PAR_OK) {
        exporter_free(e);
        return PAR_E_NO_MEMORY;
    }
    if (pthread_create(&e->thread, NULL, run, e) != 0) {
        par_buf_appendf(err, "plugin %s: cannot start its exporter thread", p->name);
        exporter_free(e);
        return PAR_E_INTERNAL;
    }
    e->started = 1;
    p->exp = e;
    /* a metrics-only exporter is listed too; it takes no finished calls */
    int rc = par__exporters_add(rt, &e->impl, err);
    if (rc != PAR_OK) {
        par__plug_exporter_stop(p);
        par__plug_exporter_free(p);
    }
    return rc;
}

void par__plug_exporter_stop(par_plug_t *p)
{
    par_exporter_t *e = p->exp;
    if (e == NULL || !e->started)
        return;
    pthread_mutex_lock(&e->lock);
    e->stopping = 1;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    e->started = 0;
}

void par__plug_exporter_free(par_plug_t *p)
{
    if (p->exp == NULL)
        return;
    assert(!p->exp->started);
    exporter_free(p->exp);
    p->exp = NULL;
}
