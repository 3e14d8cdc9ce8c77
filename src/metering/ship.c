/*
 * metering/ship.c — see ship.h. The shipper thread, its backoff and its
 * metrics.
 */
#include "metering/ship.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

#include "metering/pg_usage.h"
#include "metering/store.h"
#include "obs/log.h"
#include "util/clock.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define IDLE_MS 1000       /* a pass at least this often: the lag stays measured */
#define STATE_EVERY_MS 250 /* the outbox's count and age, at most this often */

struct par_ship {
    char *path, *conninfo, *node_id;
    size_t batch;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop, kicked;     /* under lock */
    char last_error[512]; /* under lock */
    atomic_int connected;
    atomic_llong pending, oldest_ms; /* the outbox as of the last look */
    atomic_ullong shipped, duplicates, batches, failures;
};

/* Waits up to `ms`, or until woken when `on_kick`; non-zero when stopping. */
static int nap(par_ship_t *s, int64_t ms, int on_kick)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000)
        ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_mutex_lock(&s->lock);
    while (!s->stop && !(on_kick && s->kicked))
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) != 0)
            break;
    if (on_kick)
        s->kicked = 0;
    int stop = s->stop;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

static void set_error(par_ship_t *s, const par_buf_t *err)
{
    pthread_mutex_lock(&s->lock);
    snprintf(s->last_error, sizeof(s->last_error), "%.*s", (int)err->len,
             err->data ? err->data : "");
    pthread_mutex_unlock(&s->lock);
}

/* A failed attempt: counted, logged (each time: the backoff bounds the rate)
 * and waited out. Returns the next backoff. */
static int64_t failed(par_ship_t *s, const par_buf_t *err, int64_t backoff)
{
    atomic_fetch_add(&s->failures, 1);
    set_error(s, err);
    /* jitter: nodes that lost PostgreSQL together do not come back together */
    int64_t wait = backoff / 2 + (int64_t)(rand() % (int)(backoff / 2 + 1));
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_ERROR, "metering: shipping usage records to PostgreSQL failed")) {
        par_log_strn(&l, "error", err->data ? err->data : "", err->len);
        par_log_int(&l, "pending", atomic_load(&s->pending));
        par_log_int(&l, "retry_in_ms", wait);
        par_log_end(&l);
    }
    nap(s, wait, 0);
    return backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
}

/* Measures the outbox for the metrics (a failure leaves the last figures). */
static void look(par_ship_t *s, par_store_t *db)
{
    int64_t pending, oldest;
    if (par_store_outbox_state(db, &pending, &oldest, NULL) == PAR_OK) {
        atomic_store(&s->pending, pending);
        atomic_store(&s->oldest_ms, oldest);
    }
}

/* Ships one batch. Returns the records read (0: the outbox is empty) or -1. */
static int64_t ship_once(par_ship_t *s, par_store_t *db, PGconn *c, par_buf_t *err)
{
    json_t *rows = NULL;
    if (par_store_outbox(db, s->batch, &rows, err) != PAR_OK)
        return -1;
    size_t n = json_array_size(rows);
    int64_t inserted = 0;
    int rc = n ? par_pg_ship(c, s->node_id, rows, &inserted, err) : PAR_OK;
    int64_t last = n ? json_integer_value(json_object_get(json_array_get(rows, n - 1), "seq")) : 0;
    json_decref(rows);
    if (rc != PAR_OK)
        return -1;
    if (n == 0)
        return 0;
    /* committed in PostgreSQL: a failure from here on ships them again, once */
    if (par_store_shipped(db, last, (int64_t)n, err) != PAR_OK)
        return -1;
    atomic_fetch_add(&s->shipped, (uint64_t)n);
    atomic_fetch_add(&s->duplicates, (uint64_t)((int64_t)n - inserted));
    atomic_fetch_add(&s->batches, 1);
    return (int64_t)n;
}

static void *ship_main(void *arg)
{
    par_ship_t *s = arg;
    par_buf_t err;
    par_buf_init(&err, 4096);
    par_store_t *db = NULL;
    PGconn *c = NULL;
    int64_t backoff = BACKOFF_MIN_MS, looked = 0;
    srand((unsigned)(par_wall_ms() ^ (int64_t)(uintptr_t)s));
    while (!nap(s, 0, 0)) {
        par_buf_reset(&err);
        if (db == NULL && par_store_open(s->path, 0, &db, &err) != PAR_OK) {
            backoff = failed(s, &err, backoff);
            continue;
        }
        if (c == NULL && par_pg_connect(s->conninfo, &c, &err) != PAR_OK) {
            look(s, db); /* what waits, while PostgreSQL is away */
            backoff = failed(s, &err, backoff);
            continue;
        }
        if (!atomic_exchange(&s->connected, 1))
            par_log_msg(PAR_LOG_INFO, "metering: shipping usage records to PostgreSQL");
        int64_t n = ship_once(s, db, c, &err);
        if (n < 0 || par_mono_ms() - looked >= STATE_EVERY_MS || (size_t)n < s->batch) {
            look(s, db);
            looked = par_mono_ms();
        }
        if (n < 0) {
            if (!par_pg_alive(c)) { /* reconnect, and say so */
                PQfinish(c);
                c = NULL;
                atomic_store(&s->connected, 0);
            }
            backoff = failed(s, &err, backoff);
            continue;
        }
        if (backoff != BACKOFF_MIN_MS)
            par_log_msg(PAR_LOG_INFO, "metering: shipping to PostgreSQL resumed");
        backoff = BACKOFF_MIN_MS;
        par_buf_reset(&err);
        set_error(s, &err);
        if ((size_t)n < s->batch && nap(s, IDLE_MS, 1))
            break;
    }
    if (c)
        PQfinish(c);
    par_store_close(db);
    par_buf_free(&err);
    return NULL;
}

int par_ship_start(const char *path, const char *conninfo, const char *node_id, size_t batch,
                   par_ship_t **out, par_buf_t *err)
{
    *out = NULL;
    if (par_pq_load() != 0) {
        par_buf_errf(err, "metering.sink: postgres: %s", par_pq_error());
        return PAR_E_INTERNAL;
    }
    par_ship_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->path = strdup(path);
    s->conninfo = strdup(conninfo);
    s->node_id = strdup(node_id);
    s->batch = batch < 1 ? 1 : batch > PAR_PG_SHIP_MAX ? PAR_PG_SHIP_MAX : batch;
    if (s->path == NULL || s->conninfo == NULL || s->node_id == NULL) {
        par_ship_stop(s);
        return PAR_E_NO_MEMORY;
    }
    s->started = pthread_create(&s->thread, NULL, ship_main, s) == 0;
    if (!s->started) {
        par_buf_appends(err, "metering: cannot start the shipping thread");
        par_ship_stop(s);
        return PAR_E_INTERNAL;
    }
    *out = s;
    return PAR_OK;
}

void par_ship_wake(par_ship_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->kicked = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void par_ship_stop(par_ship_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->started)
        pthread_join(s->thread, NULL);
    free(s->path), free(s->conninfo), free(s->node_id);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

static double lag_s(par_ship_t *s)
{
    int64_t oldest = atomic_load(&s->oldest_ms);
    int64_t d = oldest > 0 ? par_wall_ms() - oldest : 0;
    return d > 0 ? (double)d / 1000.0 : 0;
}

json_t *par_ship_describe(par_ship_t *s)
{
    char e[512];
    pthread_mutex_lock(&s->lock);
    snprintf(e, sizeof(e), "%s", s->last_error);
    pthread_mutex_unlock(&s->lock);
    return json_pack("{s:b,s:I,s:f,s:I,s:I,s:s,s:I}", "connected", atomic_load(&s->connected),
                     "pending", (json_int_t)atomic_load(&s->pending), "lag_s", lag_s(s), "shipped",
                     (json_int_t)atomic_load(&s->shipped), "failures",
                     (json_int_t)atomic_load(&s->failures), "last_error", e, "batch",
                     (json_int_t)s->batch);
}

void par_ship_render_metrics(par_ship_t *s, par_buf_t *b)
{
    if (s == NULL)
        return;
    par_buf_appends(b, "# HELP par_usage_ship_records_total Usage records shipped to PostgreSQL"
                       " (duplicate: already there, from a batch shipped again after a crash).\n"
                       "# TYPE par_usage_ship_records_total counter\n");
    uint64_t shipped = atomic_load(&s->shipped), dup = atomic_load(&s->duplicates);
    par_buf_appendf(b,
                    "par_usage_ship_records_total{result=\"new\"} %llu\n"
                    "par_usage_ship_records_total{result=\"duplicate\"} %llu\n",
                    (unsigned long long)(shipped - dup), (unsigned long long)dup);
    par_buf_appends(b, "# HELP par_usage_ship_batches_total Shipping transactions committed.\n"
                       "# TYPE par_usage_ship_batches_total counter\n");
    par_buf_appendf(b, "par_usage_ship_batches_total %llu\n",
                    (unsigned long long)atomic_load(&s->batches));
    par_buf_appends(b, "# HELP par_usage_ship_failures_total Shipping attempts that failed"
                       " (PostgreSQL unreachable or refusing), each retried.\n"
                       "# TYPE par_usage_ship_failures_total counter\n");
    par_buf_appendf(b, "par_usage_ship_failures_total %llu\n",
                    (unsigned long long)atomic_load(&s->failures));
    par_buf_appends(b, "# HELP par_usage_ship_pending_records Usage records in the outbox not"
                       " yet in PostgreSQL.\n# TYPE par_usage_ship_pending_records gauge\n");
    par_buf_appendf(b, "par_usage_ship_pending_records %lld\n",
                    (long long)atomic_load(&s->pending));
    par_buf_appends(b, "# HELP par_usage_ship_lag_seconds Age of the oldest usage record not yet"
                       " in PostgreSQL (0: none).\n# TYPE par_usage_ship_lag_seconds gauge\n");
    par_buf_appendf(b, "par_usage_ship_lag_seconds %.3f\n", lag_s(s));
    par_buf_appends(b, "# HELP par_usage_ship_connected 1 while the shipper is connected to"
                       " PostgreSQL.\n# TYPE par_usage_ship_connected gauge\n");
    par_buf_appendf(b, "par_usage_ship_connected %d\n", atomic_load(&s->connected));
}
