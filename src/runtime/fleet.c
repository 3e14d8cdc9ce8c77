/*
 * runtime/fleet.c — see fleet.h. One thread (the heartbeat) owns the libpq
 * connection; everyone else reads the snapshot under `mu`.
 *
 * Each beat: connect when not connected (connect_timeout 5 s), create the
 * table once per connection, upsert this node's row (heartbeat_at = now()),
 * delete the rows of nodes silent for a day (forget_sql),
 * read the whole table (tag, node id, URL, heartbeat age in ms by the
 * server's clock) into the snapshot. A failure closes the connection and the
 * next beat reconnects; the snapshot stays, its ages grow with the local
 * monotonic clock, so a node that cannot reach PostgreSQL soon sees every
 * other node dead rather than trusting a stale view.
 */
#include "runtime/fleet.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>
#include <par/par.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "util/pq.h"
#include "util/clock.h"

typedef struct node {
    char tag[8];
    char *node_id, *url;
    int64_t age_ms; /* at the snapshot */
} node_t;

struct par_fleet {
    char *conninfo, *node_id, *url;
    char tag[8];
    uint32_t heartbeat_ms, dead_after_ms;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* the thread: stop, or a refresh asked for */
    pthread_cond_t fresh;   /* waiters of par_fleet_owner: a snapshot was taken */
    int stop, want_refresh; /* under mu */
    uint64_t snapshots;     /* under mu: snapshots taken */
    node_t *nodes;          /* under mu */
    size_t nnodes;
    int64_t snap_mono_ms; /* under mu: when the snapshot was taken */
    PGconn *pg;           /* the thread's */
    int schema_ok, registered, warned;
    atomic_ulong beats_failed;
    atomic_ulong forwards[PAR_FLEET_FWD_COUNT];
};

void par_fleet_tag_of(const char *node_id, char out[7])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)node_id, strlen(node_id), d);
    uint32_t v = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
    for (int i = 0; i < 6; i++, v >>= 5)
        out[i] = b32[v & 31];
    out[6] = '\0';
}

int par_fleet_new(const par_fleet_config_t *cfg, par_fleet_t **out, par_buf_t *err)
{
    *out = NULL;
    if (par_pq_load() != 0) {
        par_buf_errf(err, "fleet.postgres: %s", par_pq_error());
        return PAR_E_IO;
    }
    par_fleet_t *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->conninfo = strdup(cfg->postgres)) == NULL ||
        (f->node_id = strdup(cfg->node_id)) == NULL) {
        if (f)
            free(f->conninfo), free(f);
        return PAR_E_NO_MEMORY;
    }
    f->heartbeat_ms = cfg->heartbeat_ms;
    f->dead_after_ms = cfg->dead_after_ms;
    par_fleet_tag_of(f->node_id, f->tag);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->wake, NULL);
    pthread_cond_init(&f->fresh, NULL);
    *out = f;
    return PAR_OK;
}

const char *par_fleet_tag(const par_fleet_t *f)
{
    return f->tag;
}

const char *par_fleet_node_id(const par_fleet_t *f)
{
    return f->node_id;
}

uint32_t par_fleet_dead_after_ms(const par_fleet_t *f)
{
    return f->dead_after_ms;
}

/* ---- the heartbeat thread ----------------------------------------------------------- */

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS par_nodes ("
                                 " node_id text PRIMARY KEY,"
                                 " tag text NOT NULL UNIQUE,"
                                 " advertise_url text NOT NULL,"
                                 " started_at timestamptz NOT NULL,"
                                 " heartbeat_at timestamptz NOT NULL)";

static const char beat_sql[] =
    "INSERT INTO par_nodes (node_id, tag, advertise_url, started_at, heartbeat_at)"
    " VALUES ($1, $2, $3, now(), now())"
    " ON CONFLICT (node_id) DO UPDATE SET tag = EXCLUDED.tag,"
    " advertise_url = EXCLUDED.advertise_url, heartbeat_at = now(),"
    " started_at = CASE WHEN $4 = '1' THEN now() ELSE par_nodes.started_at END";

/* Nodes silent for a day (24 x the longest fleet.dead_after_ms) are gone
 * for good: their rows go, so the registry does not grow with every node a
 * fleet ever had (autoscaled pods get fresh ids). A run id naming such a node
 * then reads 404 run_not_found (docs/fleet.md, "Forgotten nodes"); a node
 * coming back registers again. Every node runs it: idempotent, and the table
 * is small. Never this node's own row. */
static const char forget_sql[] = "DELETE FROM par_nodes WHERE node_id <> $1"
                                 " AND heartbeat_at < now() - interval '24 hours'";

static const char read_sql[] =
    "SELECT tag, node_id, advertise_url,"
    " (extract(epoch FROM (now() - heartbeat_at)) * 1000)::bigint FROM par_nodes";

/* One statement; 0, or -1 with the reason logged (once per outage). */
static int run(par_fleet_t *f, const char *sql, int n, const char *const *args, PGresult **keep)
{
    PGresult *r = n ? PQexecParams(f->pg, sql, n, NULL, args, NULL, NULL, 0) : PQexec(f->pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (keep)
            *keep = r;
        else
            PQclear(r);
        return 0;
    }
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (f->warned)
        ; /* said once per outage */
    else if (code && strcmp(code, "23505") == 0 && sql == beat_sql)
        par_log_msg(PAR_LOG_ERROR,
                    "fleet: the node tag '%s' of node '%s' is taken by another node id in "
                    "par_nodes: set metering.node_id to another name",
                    f->tag, f->node_id);
    else
        par_log_msg(PAR_LOG_WARN, "fleet: PostgreSQL: %s",
                    r ? PQresultErrorMessage(r) : PQerrorMessage(f->pg));
    f->warned = 1;
    PQclear(r);
    return -1;
}

static void connect_pg(par_fleet_t *f)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {f->conninfo, "5", "par-fleet", NULL};
    f->pg = PQconnectdbParams(keys, vals, 1);
    f->schema_ok = 0;
    if (f->pg && PQstatus(f->pg) == CONNECTION_OK)
        return;
    if (!f->warned)
        par_log_msg(PAR_LOG_WARN, "fleet: cannot connect to PostgreSQL (fleet.postgres): %s",
                    f->pg ? PQerrorMessage(f->pg) : "out of memory");
    f->warned = 1;
    PQfinish(f->pg);
    f->pg = NULL;
}

/* The table read back into the snapshot; 0 or -1. */
static int snapshot(par_fleet_t *f, PGresult *r)
{
    int n = PQntuples(r);
    node_t *nodes = calloc(n ? (size_t)n : 1, sizeof(*nodes));
    if (nodes == NULL)
        return -1;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        node_t *d = &nodes[k];
        snprintf(d->tag, sizeof(d->tag), "%s", PQgetvalue(r, i, 0));
        d->node_id = strdup(PQgetvalue(r, i, 1));
        d->url = strdup(PQgetvalue(r, i, 2));
        d->age_ms = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        k++;
        if (d->node_id == NULL || d->url == NULL) {
            for (size_t j = 0; j < k; j++)
                free(nodes[j].node_id), free(nodes[j].url);
            free(nodes);
            return -1;
        }
    }
    pthread_mutex_lock(&f->mu);
    node_t *old = f->nodes;
    size_t nold = f->nnodes;
    f->nodes = nodes;
    f->nnodes = k;
    f->snap_mono_ms = par_mono_ms();
    f->snapshots++;
    pthread_cond_broadcast(&f->fresh);
    pthread_mutex_unlock(&f->mu);
    for (size_t j = 0; j < nold; j++)
        free(old[j].node_id), free(old[j].url);
    free(old);
    return 0;
}

/* One heartbeat and refresh; 0, or -1 (the connection is dropped). */
static int beat(par_fleet_t *f)
{
    if (f->pg == NULL)
        connect_pg(f);
    if (f->pg == NULL)
        return -1;
    if (!f->schema_ok && run(f, schema_sql, 0, NULL, NULL) != 0)
        goto fail;
    f->schema_ok = 1;
    const char *args[] = {f->node_id, f->tag, f->url, f->registered ? "0" : "1"};
    PGresult *r = NULL;
    if (run(f, beat_sql, 4, args, NULL) != 0 || run(f, forget_sql, 1, args, NULL) != 0 ||
        run(f, read_sql, 0, NULL, &r) != 0)
        goto fail;
    int rc = snapshot(f, r);
    PQclear(r);
    if (rc != 0)
        return -1;
    if (!f->registered || f->warned)
        par_log_msg(PAR_LOG_INFO, "fleet: node '%s' (tag %s) registered at %s", f->node_id, f->tag,
                    f->url);
    f->registered = 1;
    f->warned = 0;
    return 0;
fail:
    PQfinish(f->pg);
    f->pg = NULL;
    return -1;
}

static void *heartbeat_main(void *arg)
{
    par_fleet_t *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        f->want_refresh = 0;
        pthread_mutex_unlock(&f->mu);
        if (beat(f) != 0)
            atomic_fetch_add(&f->beats_failed, 1);
        pthread_mutex_lock(&f->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)f->heartbeat_ms * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        while (!f->stop && !f->want_refresh &&
               pthread_cond_timedwait(&f->wake, &f->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&f->mu);
    if (f->pg && f->registered) {
        /* a node that stops on purpose is dead at once: its runs read interrupted */
        const char *args[] = {f->node_id};
        run(f, "UPDATE par_nodes SET heartbeat_at = 'epoch' WHERE node_id = $1", 1, args, NULL);
    }
    PQfinish(f->pg);
    f->pg = NULL;
    return NULL;
}

int par_fleet_start(par_fleet_t *f, const char *url)
{
    assert(!f->started);
    if ((f->url = strdup(url)) == NULL)
        return PAR_E_NO_MEMORY;
    if (pthread_create(&f->thread, NULL, heartbeat_main, f) != 0)
        return PAR_E_IO;
    f->started = 1;
    return PAR_OK;
}

void par_fleet_free(par_fleet_t *f)
{
    if (f == NULL)
        return;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->wake);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    for (size_t j = 0; j < f->nnodes; j++)
        free(f->nodes[j].node_id), free(f->nodes[j].url);
    free(f->nodes);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->wake);
    pthread_cond_destroy(&f->fresh);
    free(f->conninfo), free(f->node_id), free(f->url);
    free(f);
}

/* ---- lookups ------------------------------------------------------------------------- */

static const node_t *find_locked(par_fleet_t *f, const char *tag)
{
    for (size_t i = 0; i < f->nnodes; i++)
        if (memcmp(f->nodes[i].tag, tag, 6) == 0)
            return &f->nodes[i];
    return NULL;
}

int64_t par_fleet_age_ms(par_fleet_t *f, const char *tag)
{
    pthread_mutex_lock(&f->mu);
    const node_t *n = find_locked(f, tag);
    int64_t age = n ? n->age_ms + (par_mono_ms() - f->snap_mono_ms) : -1;
    pthread_mutex_unlock(&f->mu);
    return age;
}

int par_fleet_owner(par_fleet_t *f, const char *tag, char *url, size_t cap, char *node, size_t ncap,
                    int64_t *age_ms)
{
    pthread_mutex_lock(&f->mu);
    const node_t *n = find_locked(f, tag);
    if (n == NULL && f->started) {
        /* a node that registered since the last snapshot: one refresh, at most ~5 s */
        uint64_t seen = f->snapshots;
        f->want_refresh = 1;
        pthread_cond_broadcast(&f->wake);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 6;
        while (f->snapshots == seen && !f->stop &&
               pthread_cond_timedwait(&f->fresh, &f->mu, &until) == 0)
            ;
        n = find_locked(f, tag);
    }
    int rc = PAR_E_RUN_NOT_FOUND;
    if (n) {
        *age_ms = n->age_ms + (par_mono_ms() - f->snap_mono_ms);
        snprintf(url, cap, "%s", n->url);
        snprintf(node, ncap, "%s", n->node_id);
        rc = *age_ms > (int64_t)f->dead_after_ms ? PAR_E_INTERRUPTED : PAR_OK;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* ---- metrics -------------------------------------------------------------------------- */

void par_fleet_count_forward(par_fleet_t *f, int outcome)
{
    assert(outcome >= 0 && outcome < PAR_FLEET_FWD_COUNT);
    atomic_fetch_add(&f->forwards[outcome], 1);
}

void par_fleet_render_metrics(par_fleet_t *f, par_buf_t *b)
{
    static const char *const outcomes[PAR_FLEET_FWD_COUNT] = {
        "ok", "owner_dead", "owner_unreachable", "cut", "unknown_node", "loop", "busy"};
    unsigned alive = 0, dead = 0;
    if (f) {
        pthread_mutex_lock(&f->mu);
        int64_t since = par_mono_ms() - f->snap_mono_ms;
        for (size_t i = 0; i < f->nnodes; i++)
            f->nodes[i].age_ms + since > (int64_t)f->dead_after_ms ? dead++ : alive++;
        pthread_mutex_unlock(&f->mu);
    }
    par_metrics_family(b, "par_fleet_nodes", "gauge",
                       "Nodes in the fleet's registry, by state (fleet.dead_after_ms).");
    par_buf_appendf(b, "par_fleet_nodes{state=\"alive\"} %u\n", alive);
    par_buf_appendf(b, "par_fleet_nodes{state=\"dead\"} %u\n", dead);
    par_metrics_family(b, "par_fleet_heartbeat_failures_total", "counter",
                       "Heartbeats this node could not write to PostgreSQL.");
    par_buf_appendf(b, "par_fleet_heartbeat_failures_total %lu\n",
                    f ? atomic_load(&f->beats_failed) : 0);
    par_metrics_family(b, "par_fleet_forwards_total", "counter",
                       "Requests about runs of other nodes, forwarded or answered, by outcome.");
    for (int i = 0; i < PAR_FLEET_FWD_COUNT; i++)
        par_buf_appendf(b, "par_fleet_forwards_total{outcome=\"%s\"} %lu\n", outcomes[i],
                        f ? atomic_load(&f->forwards[i]) : 0);
}
