/*
 * metering/meter.c — see meter.h.
 */
#include "metering/meter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <par/par.h>

#include "metering/export_db.h"
#include "metering/pg_usage.h"
#include "metering/ship.h"
#include "metering/store.h"
#include "obs/log.h"
#include "util/clock.h"

struct par_meter {
    par_meter_config_t cfg;
    par_store_t *store; /* the writer thread's connection */
    pthread_t writer;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    par_usage_t *head, *tail; /* queue, under lock */
    size_t queued;
    int stop;
    int writer_waits;     /* the writer sleeps on `cond`: a record must wake it */
    par_stripe_t *stripe; /* NULL: no export */
    par_ship_t *ship;     /* metering.sink: postgres, else NULL */
    pthread_t janitor;
    pthread_cond_t janitor_cond; /* its own: a record's signal must wake the writer */
    int janitor_started;
};

static atomic_ulong records_stored, records_dropped, records_failed, batches;
/* measured by the maintenance thread */
static atomic_llong db_bytes, oldest_unexported_ms, oldest_unrolled_ms, records_pruned;

#define ROLLUP_BATCH 5000
#define PRUNE_BATCH 1000

par_usage_t *par_usage_new(const char *subject, const char *tenant, const char *package,
                           const char *version, const char *units)
{
    const char *src[5] = {subject, tenant, package, version, units};
    size_t len[5], total = 0;
    for (int i = 0; i < 5; i++)
        total += len[i] = src[i] ? strlen(src[i]) + 1 : 0;
    par_usage_t *u = calloc(1, sizeof(*u) + total);
    if (u == NULL)
        return NULL;
    u->_packed = 1;
    char *tail = (char *)(u + 1), *dst[5];
    for (int i = 0; i < 5; i++) {
        dst[i] = src[i] ? memcpy(tail, src[i], len[i]) : NULL;
        tail += len[i];
    }
    u->subject = dst[0], u->tenant = dst[1], u->package = dst[2], u->version = dst[3];
    u->units = dst[4];
    return u;
}

void par_usage_free(par_usage_t *u)
{
    if (u == NULL)
        return;
    if (!u->_packed) {
        free(u->subject);
        free(u->tenant);
        free(u->package);
        free(u->version);
        free(u->units);
    }
    free(u);
}

static void *writer_main(void *arg)
{
    par_meter_t *m = arg;
    size_t cap = m->cfg.batch_max;
    par_usage_t *one[1];
    par_usage_t **batch = malloc(cap * sizeof(*batch));
    if (batch == NULL) {
        /* no memory for a batch: one record per transaction, slower, but
         * every record is still stored and every waiter released */
        batch = one;
        cap = 1;
    }
    par_buf_t err;
    par_buf_init(&err, 4096);
    int64_t last_error_log = 0;
    pthread_mutex_lock(&m->lock);
    for (;;) {
        while (m->head == NULL && !m->stop) {
            m->writer_waits = 1;
            pthread_cond_wait(&m->cond, &m->lock);
        }
        m->writer_waits = 0;
        if (m->head == NULL)
            break;
        /* everything that arrived while the previous batch committed goes in
         * this one: under load, batches grow and the cost per record falls */
        size_t n = 0;
        while (m->head && n < cap) {
            batch[n++] = m->head;
            m->head = m->head->_next;
        }
        if (m->head == NULL)
            m->tail = NULL;
        m->queued -= n;
        pthread_mutex_unlock(&m->lock);

        par_buf_reset(&err);
        int rc = par_store_insert(m->store, batch, n, &err);
        atomic_fetch_add(&batches, 1);
        if (rc == PAR_OK) {
            atomic_fetch_add(&records_stored, n);
        } else {
            /* answers are still released: a database that cannot be written
             * must not stop the service. The records are lost and counted. */
            atomic_fetch_add(&records_failed, n);
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - last_error_log >= 10) {
                last_error_log = now.tv_sec;
                par_log_msg(PAR_LOG_ERROR, "metering: %zu usage records lost: %.*s", n,
                            (int)err.len, err.data ? err.data : "");
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (batch[i]->committed)
                batch[i]->committed(batch[i]->arg);
            par_usage_free(batch[i]);
        }
        if (m->stripe && rc == PAR_OK && m->ship == NULL)
            par_stripe_wake(m->stripe);
        if (m->ship && rc == PAR_OK)
            par_ship_wake(m->ship);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    par_buf_free(&err);
    if (batch != one)
        free(batch);
    return NULL;
}

/* Sleeps up to ms; non-zero when the meter is stopping. */
static int janitor_nap(par_meter_t *m, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000)
        ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_mutex_lock(&m->lock);
    while (!m->stop)
        if (pthread_cond_timedwait(&m->janitor_cond, &m->lock, &ts) != 0)
            break;
    int stop = m->stop;
    pthread_mutex_unlock(&m->lock);
    return stop;
}

/* Rolls up, prunes in small batches, measures. Non-zero when stopping. */
static int maintain(par_meter_t *m, par_store_t *s, par_buf_t *err)
{
    int64_t n = ROLLUP_BATCH;
    for (int i = 0; i < 20 && n == ROLLUP_BATCH; i++) {
        if (par_store_rollup(s, ROLLUP_BATCH, &n, err) != PAR_OK)
            return 0;
        if (n == ROLLUP_BATCH && janitor_nap(m, 5)) /* let the writer in between batches */
            return 1;
    }
    n = PRUNE_BATCH;
    int64_t now = par_wall_ms();
    for (int i = 0; i < 200 && n == PRUNE_BATCH; i++) {
        int keep = (m->stripe && !m->ship ? PAR_STORE_KEEP_UNEXPORTED : 0) |
                   (m->ship ? PAR_STORE_KEEP_UNSHIPPED : 0);
        if (par_store_prune(s, now - m->cfg.retention_ms, keep, PRUNE_BATCH, &n, err) != PAR_OK)
            return 0;
        atomic_fetch_add(&records_pruned, n);
        if (n == PRUNE_BATCH && janitor_nap(m, 5)) /* let the writer in */
            return 1;
    }
    if (par_store_prune_rollups(s, now - m->cfg.rollup_retention_ms, now - m->cfg.retention_ms,
                                err) != PAR_OK)
        return 0;
    par_store_space_t sp;
    if (par_store_space(s, &sp, err) != PAR_OK)
        return 0;
    struct stat wal;
    char walp[4096];
    snprintf(walp, sizeof(walp), "%s-wal", m->cfg.path);
    atomic_store(&db_bytes, sp.file_bytes + (stat(walp, &wal) == 0 ? (int64_t)wal.st_size : 0));
    atomic_store(&oldest_unrolled_ms, sp.oldest_unrolled_ms);
    json_t *st = NULL;
    if (m->stripe && !m->ship && par_store_export_state(s, "stripe", &st, err) == PAR_OK)
        atomic_store(&oldest_unexported_ms,
                     json_integer_value(json_object_get(st, "oldest_unexported_ms")));
    json_decref(st);
    return 0;
}

static void *janitor_main(void *arg)
{
    par_meter_t *m = arg;
    par_buf_t err;
    par_buf_init(&err, 1024);
    par_store_t *s = NULL;
    int64_t every = m->cfg.retention_ms / 4;
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    for (;;) {
        par_buf_reset(&err);
        if (s == NULL && par_store_open(m->cfg.path, m->cfg.sync_full, &s, &err) != PAR_OK)
            par_log_msg(PAR_LOG_ERROR, "metering retention: %.*s", (int)err.len, err.data);
        else if (maintain(m, s, &err))
            break;
        else if (err.len)
            par_log_msg(PAR_LOG_ERROR, "metering retention: %.*s", (int)err.len, err.data);
        if (janitor_nap(m, every))
            break;
    }
    par_store_close(s);
    par_buf_free(&err);
    return NULL;
}

void par_meter_config_free(par_meter_config_t *c)
{
    free(c->path), free(c->postgres), free(c->node_id);
    c->path = c->postgres = c->node_id = NULL;
    par_stripe_config_free(&c->stripe);
}

int par_meter_new(par_meter_config_t *cfg, par_meter_t **out, par_buf_t *err)
{
    *out = NULL;
    par_meter_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        par_meter_config_free(cfg);
        return PAR_E_NO_MEMORY;
    }
    m->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    if (m->cfg.queue_max == 0)
        m->cfg.queue_max = 65536;
    if (m->cfg.batch_max == 0)
        m->cfg.batch_max = 4096;
    if (m->cfg.retention_ms <= 0)
        m->cfg.retention_ms = 30LL * 86400000;
    if (m->cfg.rollup_retention_ms <= 0)
        m->cfg.rollup_retention_ms = 400LL * 86400000;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    pthread_cond_init(&m->janitor_cond, NULL);
    int rc = par_store_open(m->cfg.path, m->cfg.sync_full, &m->store, err);
    if (rc != PAR_OK)
        goto fail;
    if (m->cfg.postgres) {
        rc = par_ship_start(m->cfg.path, m->cfg.postgres, m->cfg.node_id ? m->cfg.node_id : "",
                            m->cfg.ship_batch ? m->cfg.ship_batch : 1000, &m->ship, err);
        if (rc != PAR_OK)
            goto fail;
    }
    if (m->cfg.stripe.api_key) { /* a fleet's: on PostgreSQL, by the node holding the lock */
        rc = m->cfg.postgres ? par_stripe_start_on(&m->cfg.stripe, &par__export_postgres,
                                                   m->cfg.postgres, &m->stripe, err)
                             : par_stripe_start(&m->cfg.stripe, m->cfg.path, &m->stripe, err);
        if (rc != PAR_OK)
            goto fail;
    }
    if (pthread_create(&m->writer, NULL, writer_main, m) != 0) {
        par_buf_appends(err, "metering: cannot start the writer thread");
        rc = PAR_E_INTERNAL;
        goto fail;
    }
    m->janitor_started = pthread_create(&m->janitor, NULL, janitor_main, m) == 0;
    if (!m->janitor_started)
        par_log_msg(PAR_LOG_ERROR, "metering: cannot start the retention thread");
    *out = m;
    return PAR_OK;
fail:
    par_stripe_stop(m->stripe);
    par_ship_stop(m->ship);
    par_store_close(m->store);
    par_meter_config_free(&m->cfg);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    pthread_cond_destroy(&m->janitor_cond);
    free(m);
    return rc;
}

void par_meter_destroy(par_meter_t *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->stop = 1;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_cond_broadcast(&m->janitor_cond);
    pthread_join(m->writer, NULL); /* commits what is queued first */
    if (m->janitor_started)
        pthread_join(m->janitor, NULL);
    par_stripe_stop(m->stripe);
    par_ship_stop(m->ship);
    par_store_close(m->store);
    par_meter_config_free(&m->cfg);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    pthread_cond_destroy(&m->janitor_cond);
    free(m);
}

int par_meter_submit(par_meter_t *m, par_usage_t *u)
{
    pthread_mutex_lock(&m->lock);
    if (m->stop || m->queued >= m->cfg.queue_max) {
        pthread_mutex_unlock(&m->lock);
        atomic_fetch_add(&records_dropped, 1);
        par_usage_free(u);
        return PAR_E_OVER_CAPACITY;
    }
    u->_next = NULL;
    if (m->cfg.async)
        u->committed = NULL; /* the caller answers without waiting */
    if (m->tail)
        m->tail->_next = u;
    else
        m->head = u;
    m->tail = u;
    m->queued++;
    /* a writer that is committing takes this record with its next batch:
     * no wake-up (a system call per record) while it is busy */
    if (m->writer_waits)
        pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return PAR_OK;
}

int par_meter_answers_wait(const par_meter_t *m)
{
    return m != NULL && !m->cfg.async;
}

/* The summary, export state and dead letters from the node's SQLite. */
static int report_local(par_meter_t *m, int64_t from_ms, int64_t to_ms, const char *group_by,
                        json_t **groups, json_t **state, json_t **dead, par_buf_t *err)
{
    par_store_t *s;
    int rc = par_store_open(m->cfg.path, m->cfg.sync_full, &s, err);
    if (rc != PAR_OK)
        return rc;
    if ((rc = par_store_summary(s, from_ms, to_ms, group_by, groups, err)) == PAR_OK &&
        (rc = par_store_export_state(s, "stripe", state, err)) == PAR_OK)
        rc = par_store_dead_letters(s, 100, dead, err);
    par_store_close(s);
    return rc;
}

/* The same over the whole fleet, from PostgreSQL. */
static int report_fleet(par_meter_t *m, int64_t from_ms, int64_t to_ms, const char *group_by,
                        json_t **groups, json_t **state, json_t **dead, par_buf_t *err)
{
    PGconn *c = NULL;
    par_buf_t why;
    par_buf_init(&why, 4096);
    int rc = par_pg_connect(m->cfg.postgres, &c, &why);
    if (rc == PAR_OK &&
        (rc = par_pg_summary(c, from_ms, to_ms, group_by, groups, &why)) == PAR_OK &&
        (rc = par_pg_export_state(c, "stripe", state, &why)) == PAR_OK)
        rc = par_pg_dead_letters(c, 100, dead, &why);
    if (c)
        PQfinish(c);
    if (rc != PAR_OK && rc != PAR_E_BAD_REQUEST) { /* the fleet's answer is not available */
        par_buf_errf(err,
                     "metering.sink is postgres and the fleet's usage cannot be read (%.*s); this "
                     "node's records wait in its outbox",
                     (int)why.len, why.data ? why.data : "");
        rc = PAR_E_NOT_READY;
    } else if (rc != PAR_OK)
        par_buf_errf(err, "%.*s", (int)why.len, why.data ? why.data : "");
    par_buf_free(&why);
    return rc;
}

static json_t *totals(const json_t *groups)
{
    json_int_t sum[3] = {0, 0, 0};
    const char *k[] = {"count", "errors", "roots"};
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) for (int f = 0; f < 3; f++) sum[f] +=
        json_integer_value(json_object_get(g, k[f]));
    return json_pack("{s:I,s:I,s:I}", k[0], sum[0], k[1], sum[1], k[2], sum[2]);
}

int par_meter_report(par_meter_t *m, int64_t from_ms, int64_t to_ms, const char *group_by,
                     json_t **out, par_buf_t *err)
{
    *out = NULL;
    json_t *groups = NULL, *state = NULL, *dead = NULL;
    int rc = (m->ship ? report_fleet : report_local)(m, from_ms, to_ms, group_by, &groups, &state,
                                                     &dead, err);
    if (rc != PAR_OK)
        goto out;
    json_t *total = totals(groups);
    json_object_set_new(state, "enabled", json_boolean(m->stripe != NULL));
    if (m->stripe) {
        char e[512];
        par_stripe_last_error(m->stripe, e, sizeof(e));
        json_object_set_new(state, "last_error", json_string(e));
        json_object_set_new(state, "rate_per_s", json_real(par_stripe_rate(m->stripe)));
        json_object_set_new(state, "aggregate", json_boolean(par_stripe_aggregated(m->stripe)));
        json_object_set_new(state, "leader", json_boolean(par_stripe_leads(m->stripe)));
    }
    pthread_mutex_lock(&m->lock);
    size_t queued = m->queued;
    pthread_mutex_unlock(&m->lock);
    *out =
        json_pack("{s:I,s:I,s:s,s:o,s:o,s:I,s:o,s:o,s:s,s:s*}", "from", (json_int_t)from_ms, "to",
                  (json_int_t)to_ms, "group_by", group_by ? group_by : "", "groups", groups,
                  "total", total, "queued", (json_int_t)queued, "export", state, "dead_letters",
                  dead, "source", m->ship ? "postgres" : "sqlite", "node_id", m->cfg.node_id);
    groups = state = dead = NULL; /* json_pack's "o" took them, even on failure */
    if (*out == NULL)
        rc = PAR_E_NO_MEMORY;
    else if (m->ship)
        json_object_set_new(*out, "shipping", par_ship_describe(m->ship));
out:
    json_decref(groups);
    json_decref(state);
    json_decref(dead);
    return rc;
}

json_t *par_meter_describe(par_meter_t *m)
{
    if (m == NULL)
        return NULL;
    json_t *o = json_pack("{s:s,s:s*,s:b,s:b}", "sink", m->ship ? "postgres" : "sqlite", "node_id",
                          m->cfg.node_id, "export", m->stripe != NULL, "export_leader",
                          par_stripe_leads(m->stripe));
    if (o && m->ship)
        json_object_set_new(o, "shipping", par_ship_describe(m->ship));
    return o;
}

/* Age in seconds of a Unix ms time, 0 for none. */
static double age_s(int64_t ts_ms)
{
    int64_t d = ts_ms > 0 ? par_wall_ms() - ts_ms : 0;
    return d > 0 ? (double)d / 1000.0 : 0;
}

static void render_retention_metrics(par_meter_t *m, par_buf_t *b)
{
    par_buf_appends(b, "# HELP par_metering_db_bytes Size of the usage database and its WAL.\n"
                       "# TYPE par_metering_db_bytes gauge\n");
    par_buf_appendf(b, "par_metering_db_bytes %lld\n", m ? (long long)atomic_load(&db_bytes) : 0);
    par_buf_appends(b, "# HELP par_metering_oldest_unexported_seconds Age of the oldest usage "
                       "record not yet accepted by the meter endpoint (0: none).\n"
                       "# TYPE par_metering_oldest_unexported_seconds gauge\n");
    par_buf_appendf(b, "par_metering_oldest_unexported_seconds %.3f\n",
                    m && m->stripe ? age_s(atomic_load(&oldest_unexported_ms)) : 0);
    par_buf_appends(b, "# HELP par_metering_rollup_lag_seconds Age of the oldest usage record "
                       "not yet in the hourly rollups (0: none).\n"
                       "# TYPE par_metering_rollup_lag_seconds gauge\n");
    par_buf_appendf(b, "par_metering_rollup_lag_seconds %.3f\n",
                    m ? age_s(atomic_load(&oldest_unrolled_ms)) : 0);
    par_buf_appends(b, "# HELP par_metering_pruned_records_total Usage records deleted by "
                       "retention (rolled up and exported first).\n"
                       "# TYPE par_metering_pruned_records_total counter\n");
    par_buf_appendf(b, "par_metering_pruned_records_total %lld\n",
                    (long long)atomic_load(&records_pruned));
}

void par_meter_render_metrics(par_meter_t *m, par_buf_t *b)
{
    size_t queued = 0;
    int64_t pending = 0;
    if (m) {
        pthread_mutex_lock(&m->lock);
        queued = m->queued;
        pthread_mutex_unlock(&m->lock);
        if (m->stripe)
            pending = par_stripe_pending(m->stripe);
    }
    par_buf_appends(b, "# HELP par_metering_records_total Usage records by outcome: stored "
                       "(committed), dropped (queue full), failed (database error).\n"
                       "# TYPE par_metering_records_total counter\n");
    par_buf_appendf(b,
                    "par_metering_records_total{result=\"stored\"} %lu\n"
                    "par_metering_records_total{result=\"dropped\"} %lu\n"
                    "par_metering_records_total{result=\"failed\"} %lu\n",
                    atomic_load(&records_stored), atomic_load(&records_dropped),
                    atomic_load(&records_failed));
    par_buf_appends(b, "# HELP par_metering_batches_total Transactions of the metering writer.\n"
                       "# TYPE par_metering_batches_total counter\n");
    par_buf_appendf(b, "par_metering_batches_total %lu\n", atomic_load(&batches));
    par_buf_appends(b, "# HELP par_metering_backlog_records Usage records waiting: queued for the "
                       "database plus committed and not yet exported.\n"
                       "# TYPE par_metering_backlog_records gauge\n");
    par_buf_appendf(b, "par_metering_backlog_records %lld\n",
                    (long long)queued + (long long)pending);
    par_buf_appends(b, "# HELP par_metering_export_total Meter event export attempts by result "
                       "(ok, retry, dead, skipped).\n"
                       "# TYPE par_metering_export_total counter\n");
    for (int r = 0; r < PAR_EXPORT_NRESULTS; r++)
        par_buf_appendf(b, "par_metering_export_total{result=\"%s\"} %llu\n",
                        par_stripe_result_name(r), (unsigned long long)par_stripe_count(r));
    render_retention_metrics(m, b);
    if (m && m->stripe) {
        par_buf_appends(b, "# HELP par_usage_export_leader 1 while this node runs the Stripe "
                           "export (on a fleet: holds the PostgreSQL leader lock).\n"
                           "# TYPE par_usage_export_leader gauge\n");
        par_buf_appendf(b, "par_usage_export_leader %d\n", par_stripe_leads(m->stripe));
    }
    par_ship_render_metrics(m ? m->ship : NULL, b);
}
