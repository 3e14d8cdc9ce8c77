/*
 * metering/pg_export.c — the Stripe exporter's bookkeeping in the fleet's
 * PostgreSQL (export_db.h), for metering.sink: postgres.
 *
 * The same cursor, windows and dead letters as the SQLite database
 * (store.c), over par_usage, the records every node shipped. Only the node
 * holding the session advisory lock PAR_PG_LOCK_EXPORT exports; it takes the
 * lock on the exporter's own connection, the one every bookkeeping
 * transaction runs on, so a node whose session ended (it died, or lost
 * PostgreSQL) can commit nothing more: the lock and its writes end together.
 * Another node's pg_try_advisory_lock then succeeds within its poll interval
 * and it continues from the committed cursor and windows; events in flight
 * when the leader died are sent again with the same identifiers, which Stripe
 * deduplicates.
 *
 * Used by the exporter thread only (stripe.c); a connection is that
 * thread's alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

#include "metering/export_db.h"
#include "metering/pg_keys.h"
#include "metering/pg_usage.h"
#include "metering/stripe.h"
#include "util/clock.h"

typedef struct pgx {
    PGconn *c;
    int held; /* this session holds the export lock */
    char node_id[256];
} pgx_t;

/* Runs a statement whose rows are not needed; 0 or -1 (err says why). */
static int run(pgx_t *x, const char *sql, int n, const char *const *p, const char *what,
               par_buf_t *err)
{
    PGresult *r = par__pg_run(x->c, sql, n, p, what, err);
    PQclear(r);
    return r ? 0 : -1;
}

#define I64(buf, v) (snprintf(buf, sizeof(buf), "%lld", (long long)(v)), buf)

static int x_open(const char *where, const char *node_id, void **db, par_buf_t *err)
{
    *db = NULL;
    pgx_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return PAR_E_NO_MEMORY;
    snprintf(x->node_id, sizeof(x->node_id), "%s", node_id ? node_id : "");
    int rc = par_pg_connect(where, &x->c, err);
    if (rc != PAR_OK) {
        free(x);
        return rc;
    }
    *db = x;
    return PAR_OK;
}

static void x_close(void *db)
{
    pgx_t *x = db;
    if (x == NULL)
        return;
    PQfinish(x->c); /* the session ends: so does its lock */
    free(x);
}

static int x_lead(void *db, par_buf_t *err)
{
    pgx_t *x = db;
    if (!par_pg_alive(x->c)) {
        par_buf_errf(err, "PostgreSQL: the exporter's connection is lost: %s",
                     PQerrorMessage(x->c));
        return -1;
    }
    if (x->held)
        return 1;
    PGresult *r = par__pg_run(x->c, "SELECT pg_try_advisory_lock(" PAR_PG_LOCK_EXPORT ")", 0, NULL,
                              "asking for the export lock", err);
    if (r == NULL)
        return par_pg_alive(x->c) ? 0 : -1;
    x->held = PQntuples(r) == 1 && *PQgetvalue(r, 0, 0) == 't';
    PQclear(r);
    if (x->held) { /* who leads, for /runtime/usage and the takeover's measure */
        char since[32];
        const char *const p[] = {x->node_id, I64(since, par_wall_ms())};
        run(x,
            "INSERT INTO par_fleet_leader (role, node_id, since_ms) VALUES ('stripe', $1,"
            " $2::bigint) ON CONFLICT (role) DO UPDATE SET node_id = excluded.node_id,"
            " since_ms = excluded.since_ms",
            2, p, "recording the leader", err);
    }
    return x->held;
}

static int x_next(void *db, const char *exporter, size_t max, json_t **rows, par_buf_t *err)
{
    pgx_t *x = db;
    char lim[32];
    const char *const p[] = {exporter, I64(lim, max)};
    PGresult *r = par__pg_run(x->c,
                              "SELECT * FROM par_usage WHERE seq > (SELECT coalesce(max(seq), 0)"
                              " FROM par_export_cursor WHERE exporter = $1) AND parent_id = ''"
                              " ORDER BY seq LIMIT $2::bigint",
                              2, p, "reading records", err);
    if (r == NULL)
        return PAR_E_IO;
    *rows = par__pg_rows_json(r, 0);
    PQclear(r);
    if (*rows == NULL) {
        par_buf_errf(err, "PostgreSQL: reading records: out of memory");
        return PAR_E_NO_MEMORY;
    }
    return PAR_OK;
}

static int x_begin(void *db, par_buf_t *err)
{
    return run(db, "BEGIN", 0, NULL, "BEGIN", err) == 0 ? PAR_OK : PAR_E_IO;
}

static void x_rollback(void *db)
{
    pgx_t *x = db;
    PQclear(PQexec(x->c, "ROLLBACK"));
}

static int x_commit(void *db, par_buf_t *err)
{
    if (run(db, "COMMIT", 0, NULL, "COMMIT", err) == 0)
        return PAR_OK;
    x_rollback(db);
    return PAR_E_IO;
}

/* Ends a transaction: commits when ok, else rolls back. */
static int end(void *db, int ok, par_buf_t *err)
{
    if (ok)
        return x_commit(db, err);
    x_rollback(db);
    return PAR_E_IO;
}

static int move_cursor(pgx_t *x, const char *exporter, int64_t seq, int64_t exported, int64_t dead,
                       par_buf_t *err)
{
    char a[32], b[32], c[32];
    const char *const p[] = {exporter, I64(a, seq), I64(b, exported), I64(c, dead)};
    return run(x,
               "INSERT INTO par_export_cursor (exporter, seq, exported, dead) VALUES ($1,"
               " $2::bigint, $3::bigint, $4::bigint) ON CONFLICT (exporter) DO UPDATE SET"
               " seq = greatest(par_export_cursor.seq, excluded.seq),"
               " exported = par_export_cursor.exported + excluded.exported,"
               " dead = par_export_cursor.dead + excluded.dead",
               4, p, "moving the export cursor", err);
}

static int dead_record(pgx_t *x, const char *exporter, int64_t seq, int http_status,
                       const char *body, par_buf_t *err)
{
    char a[32], b[32], c[32];
    const char *const p[] = {exporter, I64(a, par_wall_ms()), I64(b, http_status), body ? body : "",
                             I64(c, seq)};
    return run(x,
               "INSERT INTO par_dead_letters (seq, id, exporter, failed_at_ms, http_status, body)"
               " SELECT seq, id, $1, $2::bigint, $3::int, $4 FROM par_usage WHERE seq = $5::bigint"
               " ON CONFLICT (seq) DO UPDATE SET exporter = excluded.exporter, failed_at_ms ="
               " excluded.failed_at_ms, http_status = excluded.http_status, body = excluded.body",
               5, p, "writing a dead letter", err);
}

static int x_dead(void *db, const char *exporter, int64_t seq, int http_status, const char *body,
                  par_buf_t *err)
{
    return dead_record(db, exporter, seq, http_status, body, err) == 0 ? PAR_OK : PAR_E_IO;
}

static int x_move(void *db, const char *exporter, int64_t seq, int64_t exported, int64_t dead,
                  par_buf_t *err)
{
    return move_cursor(db, exporter, seq, exported, dead, err) == 0 ? PAR_OK : PAR_E_IO;
}

static int x_window_add(void *db, const par_window_t *w, double value, int64_t seq,
                        const char *node_id, par_buf_t *err)
{
    pgx_t *x = db;
    char ws[32], wm[32], v[40], sq[32], pt[32], now[32];
    const char *const key[] = {w->customer, w->event, I64(ws, w->window_start)};
    PGresult *r = par__pg_run(x->c,
                              "SELECT wid, part, state FROM par_export_windows WHERE customer = $1"
                              " AND event = $2 AND window_start = $3::bigint ORDER BY part DESC"
                              " LIMIT 1",
                              3, key, "reading a window", err);
    if (r == NULL)
        return PAR_E_IO;
    int part = -1, state = 0;
    char wid[32] = "0";
    if (PQntuples(r) == 1) {
        snprintf(wid, sizeof(wid), "%s", PQgetvalue(r, 0, 0));
        part = atoi(PQgetvalue(r, 0, 1));
        state = atoi(PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    snprintf(v, sizeof(v), "%.17g", value);
    if (part >= 0 && state == 0) { /* still open: the record folds in */
        const char *const p[] = {v, I64(sq, seq), wid};
        return run(x,
                   "UPDATE par_export_windows SET value = value + $1::float8, records = records +"
                   " 1, last_seq = $2::bigint WHERE wid = $3::bigint",
                   3, p, "adding to a window", err) == 0
                   ? PAR_OK
                   : PAR_E_IO;
    }
    char id[PAR_WINDOW_ID_MAX]; /* new, or late for a sealed window: a part of its own */
    par_stripe_window_id(node_id, w->customer, w->event, w->window_start, part + 1, id);
    const char *const p[] = {
        w->customer, w->event, ws,           I64(wm, w->window_ms),  I64(pt, part + 1),
        id,          v,        I64(sq, seq), I64(now, par_wall_ms())};
    return run(x,
               "INSERT INTO par_export_windows (customer, event, window_start, window_ms, part,"
               " identifier, value, records, first_seq, last_seq, created_ms) VALUES ($1, $2,"
               " $3::bigint, $4::bigint, $5::int, $6, $7::float8, 1, $8::bigint, $8::bigint,"
               " $9::bigint)",
               9, p, "opening a window", err) == 0
               ? PAR_OK
               : PAR_E_IO;
}

static int x_seal(void *db, int64_t now, int64_t grace_ms, par_buf_t *err)
{
    char g[32], n[32];
    const char *const p[] = {I64(g, grace_ms), I64(n, now)};
    return run(db,
               "UPDATE par_export_windows SET state = 1 WHERE state = 0 AND window_start +"
               " window_ms + $1::bigint <= $2::bigint",
               2, p, "sealing windows", err) == 0
               ? PAR_OK
               : PAR_E_IO;
}

static int x_due(void *db, size_t max, json_t **rows, par_buf_t *err)
{
    pgx_t *x = db;
    char lim[32];
    const char *const p[] = {I64(lim, max)};
    PGresult *r = par__pg_run(x->c,
                              "SELECT wid, customer, event, window_start, window_ms, part,"
                              " identifier, value, records FROM par_export_windows WHERE state ="
                              " 1 ORDER BY window_start, wid LIMIT $1::bigint",
                              1, p, "reading windows", err);
    if (r == NULL)
        return PAR_E_IO;
    *rows = par__pg_rows_json(r, 0);
    PQclear(r);
    if (*rows == NULL) {
        par_buf_errf(err, "PostgreSQL: reading windows: out of memory");
        return PAR_E_NO_MEMORY;
    }
    return PAR_OK;
}

static int x_done(void *db, const char *exporter, int64_t wid, int http_status, const char *body,
                  par_buf_t *err)
{
    pgx_t *x = db;
    if (x_begin(db, err) != PAR_OK)
        return PAR_E_IO;
    char st[32], at[32], w[32], hs[32];
    const char *const p[] = {I64(st, http_status ? 3 : 2), I64(at, par_wall_ms()), I64(w, wid)};
    PGresult *r = par__pg_run(x->c,
                              "UPDATE par_export_windows SET state = $1::int, sent_ms = $2::bigint"
                              " WHERE wid = $3::bigint AND state = 1 RETURNING records",
                              3, p, "recording a window's outcome", err);
    int ok = r != NULL;
    int64_t records = ok && PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    if (ok && http_status) {
        const char *const q[] = {exporter, at, I64(hs, http_status), body ? body : "", w};
        ok = run(x,
                 "INSERT INTO par_dead_letters (seq, id, exporter, failed_at_ms, http_status, body,"
                 " window_start, window_ms, customer, event, value, records) SELECT -wid,"
                 " identifier, $1, $2::bigint, $3::int, $4, window_start, window_ms, customer,"
                 " event, value, records FROM par_export_windows WHERE wid = $5::bigint ON CONFLICT"
                 " (seq) DO UPDATE SET failed_at_ms = excluded.failed_at_ms, http_status ="
                 " excluded.http_status, body = excluded.body",
                 5, q, "writing a dead letter", err) == 0;
    }
    ok = ok && move_cursor(x, exporter, 0, http_status ? 0 : records, http_status ? records : 0,
                           err) == 0;
    return end(db, ok, err);
}

static int x_state(void *db, const char *exporter, json_t **out, par_buf_t *err)
{
    pgx_t *x = db;
    return par_pg_export_state(x->c, exporter, out, err);
}

const par_export_db_ops_t par__export_postgres = {
    .name = "postgres",
    .open = x_open,
    .close = x_close,
    .lead = x_lead,
    .next = x_next,
    .begin = x_begin,
    .commit = x_commit,
    .rollback = x_rollback,
    .dead_record = x_dead,
    .move_cursor = x_move,
    .window_add = x_window_add,
    .windows_seal = x_seal,
    .windows_due = x_due,
    .window_done = x_done,
    .export_state = x_state,
};
