/*
 * metering/store.c — the usage database (see store.h): the schema and
 * opening, inserting records, the export cursor, export windows and dead
 * letters, the export state and usage summaries. Retention (rollups,
 * pruning, space) is in store_retention.c; what the two share is in
 * store_internal.h.
 *
 * Called by the metering writer thread (meter.c), the exporter thread
 * (stripe.c) and /runtime/usage, each on its own connection; a connection is
 * used by one thread at a time. It must never hold a transaction open across
 * calls other than par_store_begin/commit/rollback, and never lose a record
 * it acknowledged (every write is inside a transaction).
 */
#include "metering/store.h"
#include "metering/store_internal.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <par/par.h>

#include "metering/stripe.h"
#include "util/clock.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS usage ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, ts_ms INTEGER NOT NULL,"
    " request_id TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,"
    " parent_id TEXT NOT NULL, root_id TEXT NOT NULL, subject TEXT, tenant TEXT,"
    " agent TEXT NOT NULL, package TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,"
    " duration_ms REAL NOT NULL, cpu_ms REAL, bytes_in INTEGER NOT NULL,"
    " bytes_out INTEGER NOT NULL, units TEXT, events INTEGER);"
    "CREATE INDEX IF NOT EXISTS usage_ts ON usage(ts_ms);"
    /* nothing looks records up by request id: its index cost ~70 bytes a record */
    "DROP INDEX IF EXISTS usage_request;"
    "CREATE TABLE IF NOT EXISTS export_cursor ("
    " exporter TEXT PRIMARY KEY, seq INTEGER NOT NULL DEFAULT 0,"
    " exported INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL, exporter TEXT NOT NULL,"
    " failed_at_ms INTEGER NOT NULL, http_status INTEGER NOT NULL, body TEXT NOT NULL);"
    /* aggregated export: one row per (customer, event, window start, part);
     * part 0 is the window itself, part n > 0 the n-th late event for it.
     * state: 0 open (records still fold in), 1 sealed (value frozen, to send),
     * 2 sent, 3 dead. The identifier is fixed when the row is created, so a
     * crash between the endpoint's answer and state 2 re-sends the same one. */
    "CREATE TABLE IF NOT EXISTS export_windows ("
    " wid INTEGER PRIMARY KEY, customer TEXT NOT NULL, event TEXT NOT NULL,"
    " window_start INTEGER NOT NULL, window_ms INTEGER NOT NULL, part INTEGER NOT NULL,"
    " identifier TEXT NOT NULL UNIQUE, value REAL NOT NULL DEFAULT 0,"
    " records INTEGER NOT NULL DEFAULT 0, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, sent_ms INTEGER,"
    " UNIQUE (customer, event, window_start, part));"
    "CREATE INDEX IF NOT EXISTS export_windows_state ON export_windows(state, window_start);"
    /* hourly rollups (retention.h): what /runtime/usage answers from once the
     * records of an hour may have been deleted; units summed over root records */
    "CREATE TABLE IF NOT EXISTS usage_hourly ("
    " hour INTEGER NOT NULL, agent TEXT NOT NULL, subject TEXT NOT NULL, tenant TEXT NOT NULL,"
    " package TEXT NOT NULL, status TEXT NOT NULL, count INTEGER NOT NULL, errors INTEGER NOT NULL,"
    " roots INTEGER NOT NULL, duration_ms REAL NOT NULL, cpu_ms REAL NOT NULL,"
    " bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL,"
    " PRIMARY KEY (hour, agent, subject, tenant, package, status)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS usage_hourly_units ("
    " hour INTEGER NOT NULL, agent TEXT NOT NULL, subject TEXT NOT NULL, tenant TEXT NOT NULL,"
    " package TEXT NOT NULL, status TEXT NOT NULL, unit TEXT NOT NULL, value INTEGER NOT NULL,"
    " PRIMARY KEY (hour, agent, subject, tenant, package, status, unit)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

/* Columns added to dead_letters for windows (an older database lacks them). */
static const char *const dead_window_columns[] = {"window_start INTEGER", "window_ms INTEGER",
                                                  "customer TEXT",        "event TEXT",
                                                  "value REAL",           "records INTEGER"};

int par__store_fail(sqlite3 *db, par_buf_t *err, const char *what)
{
    par_buf_errf(err, "usage database: %s: %s", what, db ? sqlite3_errmsg(db) : "?");
    return PAR_E_IO;
}

int par_store_open(const char *path, int sync_full, par_store_t **out, par_buf_t *err)
{
    *out = NULL;
    par_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    int rc = PAR_OK;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = par__store_fail(s->db, err, path);
        goto out;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL: the writer never blocks readers (/runtime/usage, the exporter), and a
     * committed transaction is in the WAL file before COMMIT returns, so it
     * survives the death of the process even without an fsync. */
    /* auto_vacuum only takes effect before the first table: a new file gets
     * incremental vacuum (retention.c returns free pages); an older one reuses
     * the pages pruning frees, so it stops growing as well */
    char pragmas[240];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
             " PRAGMA journal_size_limit=16777216;",
             sync_full ? "FULL" : "NORMAL");
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        rc = par__store_fail(s->db, err, "setting WAL mode");
        goto out;
    }
    if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        rc = par__store_fail(s->db, err, "creating the schema");
        goto out;
    }
    sqlite3_stmt *probe = NULL;
    int has_columns = sqlite3_prepare_v2(s->db, "SELECT window_start FROM dead_letters LIMIT 0", -1,
                                         &probe, NULL) == SQLITE_OK;
    sqlite3_finalize(probe);
    for (size_t i = 0;
         !has_columns && i < sizeof(dead_window_columns) / sizeof(*dead_window_columns); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "ALTER TABLE dead_letters ADD COLUMN %s",
                 dead_window_columns[i]);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL); /* "duplicate column": already there */
    }
    /* a database from before runs: their events count (NULL for other records) */
    has_columns = sqlite3_prepare_v2(s->db, "SELECT events FROM usage LIMIT 0", -1, &probe, NULL) ==
                  SQLITE_OK;
    sqlite3_finalize(probe);
    if (!has_columns)
        sqlite3_exec(s->db, "ALTER TABLE usage ADD COLUMN events INTEGER", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR IGNORE INTO usage (id, ts_ms, request_id, trace_id, span_id,"
                           " parent_id, root_id, subject, tenant, agent, package, version, status,"
                           " duration_ms, cpu_ms, bytes_in, bytes_out, units, events) VALUES"
                           " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &s->ins, NULL) != SQLITE_OK) {
        rc = par__store_fail(s->db, err, "preparing the insert");
        goto out;
    }
out:
    if (rc != PAR_OK) {
        par_store_close(s);
        return rc;
    }
    *out = s;
    return PAR_OK;
}

void par_store_close(par_store_t *s)
{
    if (s == NULL)
        return;
    sqlite3_finalize(s->ins);
    sqlite3_close(s->db);
    free(s);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int par_store_insert(par_store_t *s, par_usage_t *const *recs, size_t n, par_buf_t *err)
{
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "BEGIN");
    for (size_t i = 0; i < n; i++) {
        const par_usage_t *u = recs[i];
        sqlite3_stmt *st = s->ins;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        bind_text(st, 1, u->id);
        sqlite3_bind_int64(st, 2, u->ts_ms);
        bind_text(st, 3, u->request_id);
        bind_text(st, 4, u->trace_id);
        bind_text(st, 5, u->span_id);
        bind_text(st, 6, u->parent_id);
        bind_text(st, 7, u->root_id);
        bind_text(st, 8, u->subject);
        bind_text(st, 9, u->tenant);
        bind_text(st, 10, u->agent);
        bind_text(st, 11, u->package ? u->package : "");
        bind_text(st, 12, u->version ? u->version : "");
        bind_text(st, 13, u->status);
        sqlite3_bind_double(st, 14, u->duration_ms);
        if (u->cpu_ms >= 0)
            sqlite3_bind_double(st, 15, u->cpu_ms);
        else
            sqlite3_bind_null(st, 15);
        sqlite3_bind_int64(st, 16, u->bytes_in);
        sqlite3_bind_int64(st, 17, u->bytes_out);
        bind_text(st, 18, u->units);
        if (u->events > 0)
            sqlite3_bind_int64(st, 19, u->events);
        else
            sqlite3_bind_null(st, 19);
        if (sqlite3_step(st) != SQLITE_DONE) {
            int rc = par__store_fail(s->db, err, "inserting a record");
            sqlite3_reset(st);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    sqlite3_reset(s->ins);
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = par__store_fail(s->db, err, "COMMIT");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return PAR_OK;
}

/* One result column as JSON: integers, reals, text (units parsed), null. */
static json_t *column_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT: {
        const char *t = (const char *)sqlite3_column_text(st, i);
        if (strcmp(sqlite3_column_name(st, i), "units") == 0) {
            json_t *j = json_loads(t, 0, NULL);
            if (j)
                return j;
        }
        return json_string(t);
    }
    default:
        return json_null();
    }
}

/* See store_internal.h. A value column_json() cannot make (text jansson
 * refuses as not UTF-8, or no memory for it) is left out of its row, as it
 * always was; a row or the array that cannot be made fails the call. */
int par__store_rows_json(sqlite3 *db, sqlite3_stmt *st, int skip_null, const char *what,
                         json_t **rows, par_buf_t *err)
{
    assert(db != NULL && st != NULL && rows != NULL);
    json_t *a = json_array();
    int oom = a == NULL;
    int r = SQLITE_DONE;
    while (!oom && (r = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(a, o) != 0) {
            oom = 1;
            break;
        }
        for (int i = 0; i < sqlite3_column_count(st); i++)
            if (!skip_null || sqlite3_column_type(st, i) != SQLITE_NULL)
                json_object_set_new(o, sqlite3_column_name(st, i), column_json(st, i));
    }
    sqlite3_finalize(st);
    if (oom) {
        json_decref(a);
        par_buf_errf(err, "usage database: %s: out of memory", what);
        return PAR_E_NO_MEMORY;
    }
    if (r != SQLITE_DONE) {
        json_decref(a);
        return par__store_fail(db, err, what);
    }
    *rows = a;
    return PAR_OK;
}

int64_t par__store_cursor_of(par_store_t *s, const char *exporter)
{
    sqlite3_stmt *st;
    int64_t seq = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT seq FROM export_cursor WHERE exporter = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, exporter, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        seq = sqlite3_column_int64(st, 0);
    else if (r != SQLITE_DONE)
        seq = -1;
    sqlite3_finalize(st);
    return seq;
}

int par_store_next(par_store_t *s, const char *exporter, size_t max, json_t **rows, par_buf_t *err)
{
    *rows = NULL;
    int64_t cur = par__store_cursor_of(s, exporter);
    if (cur < 0)
        return par__store_fail(s->db, err, "reading the export cursor");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT * FROM usage WHERE seq > ? AND parent_id = '' ORDER BY seq "
                           "LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "reading records");
    sqlite3_bind_int64(st, 1, cur);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    return par__store_rows_json(s->db, st, 0, "reading records", rows, err);
}

int par_store_outbox(par_store_t *s, size_t max, json_t **rows, par_buf_t *err)
{
    *rows = NULL;
    int64_t cur = par__store_cursor_of(s, "postgres");
    if (cur < 0)
        return par__store_fail(s->db, err, "reading the outbox cursor");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT * FROM usage WHERE seq > ? ORDER BY seq LIMIT ?", -1, &st,
                           NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "reading the outbox");
    sqlite3_bind_int64(st, 1, cur);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    return par__store_rows_json(s->db, st, 0, "reading the outbox", rows, err);
}

int par_store_shipped(par_store_t *s, int64_t seq, int64_t n, par_buf_t *err)
{
    int rc = par_store_begin(s, err);
    if (rc != PAR_OK)
        return rc;
    int ok = par__store_move_cursor(s->db, "postgres", seq, n, 0) == 0;
    return par__store_end(s, ok, "marking records shipped", err);
}

int par_store_outbox_state(par_store_t *s, int64_t *pending, int64_t *oldest_ms, par_buf_t *err)
{
    *pending = *oldest_ms = 0;
    int64_t cur = par__store_cursor_of(s, "postgres");
    sqlite3_stmt *st;
    if (cur < 0 || sqlite3_prepare_v2(s->db,
                                      "SELECT count(*), coalesce(min(ts_ms), 0) FROM usage WHERE"
                                      " seq > ?",
                                      -1, &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "reading the outbox state");
    sqlite3_bind_int64(st, 1, cur);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        *pending = sqlite3_column_int64(st, 0), *oldest_ms = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? PAR_OK : par__store_fail(s->db, err, "reading the outbox state");
}

/* Moves the cursor to `seq` and adds to its counters. Inside a transaction. */
int par__store_move_cursor(sqlite3 *db, const char *exporter, int64_t seq, int64_t exported,
                           int64_t dead)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO export_cursor (exporter, seq, exported, dead) VALUES (?, ?, "
            "?, ?) ON CONFLICT(exporter) DO UPDATE SET seq = max(seq, excluded.seq),"
            " exported = exported + excluded.exported, dead = dead + excluded.dead",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, exporter, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, exported);
    sqlite3_bind_int64(st, 4, dead);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? 0 : -1;
}

/* A dead letter for the record `seq`. Inside a transaction. */
static int dead_record(sqlite3 *db, const char *exporter, int64_t seq, int http_status,
                       const char *body)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO dead_letters (seq, id, exporter, failed_at_ms, "
                           "http_status, body) SELECT seq, id, ?, ?, ?, ? FROM usage WHERE seq = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, exporter, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, par_wall_ms());
    sqlite3_bind_int(st, 3, http_status);
    sqlite3_bind_text(st, 4, body ? body : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, seq);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? 0 : -1;
}

int par_store_begin(par_store_t *s, par_buf_t *err)
{
    return sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
               ? PAR_OK
               : par__store_fail(s->db, err, "BEGIN");
}

int par_store_commit(par_store_t *s, par_buf_t *err)
{
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return PAR_OK;
    int rc = par__store_fail(s->db, err, "COMMIT");
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int par__store_end(par_store_t *s, int ok, const char *what, par_buf_t *err)
{
    assert(s != NULL && s->db != NULL && what != NULL);
    if (ok)
        return par_store_commit(s, err);
    int rc = par__store_fail(s->db, err, what); /* before the rollback replaces the message */
    par_store_rollback(s);
    return rc;
}

void par_store_rollback(par_store_t *s)
{
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int par_store_dead_record(par_store_t *s, const char *exporter, int64_t seq, int http_status,
                          const char *body, par_buf_t *err)
{
    if (dead_record(s->db, exporter, seq, http_status, body) != 0)
        return par__store_fail(s->db, err, "writing a dead letter");
    return PAR_OK;
}

int par_store_move_cursor(par_store_t *s, const char *exporter, int64_t seq, int64_t exported,
                          int64_t dead, par_buf_t *err)
{
    if (par__store_move_cursor(s->db, exporter, seq, exported, dead) != 0)
        return par__store_fail(s->db, err, "moving the export cursor");
    return PAR_OK;
}

/* The latest part of (customer, event, window_start): its wid and state, or
 * part -1 when there is none. */
static int latest_part(sqlite3 *db, const par_window_t *w, int64_t *wid, int *part, int *state)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT wid, part, state FROM export_windows WHERE customer = ? AND "
                           "event = ? AND window_start = ? ORDER BY part DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, w->customer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, w->window_start);
    int r = sqlite3_step(st);
    *part = -1;
    if (r == SQLITE_ROW) {
        *wid = sqlite3_column_int64(st, 0);
        *part = sqlite3_column_int(st, 1);
        *state = sqlite3_column_int(st, 2);
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : -1;
}

int par_store_window_add(par_store_t *s, const par_window_t *w, double value, int64_t seq,
                         const char *node_id, par_buf_t *err)
{
    int64_t wid = 0;
    int part, state = 0;
    if (latest_part(s->db, w, &wid, &part, &state) != 0)
        return par__store_fail(s->db, err, "reading a window");
    sqlite3_stmt *st;
    int r;
    if (part >= 0 && state == 0) { /* still open: the record folds in */
        if (sqlite3_prepare_v2(s->db,
                               "UPDATE export_windows SET value = value + ?, records = records + 1,"
                               " last_seq = ? WHERE wid = ?",
                               -1, &st, NULL) != SQLITE_OK)
            return par__store_fail(s->db, err, "adding to a window");
        sqlite3_bind_double(st, 1, value);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int64(st, 3, wid);
    } else { /* new, or late for a sealed window: a part of its own */
        char id[PAR_WINDOW_ID_MAX];
        par_stripe_window_id(node_id, w->customer, w->event, w->window_start, part + 1, id);
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO export_windows (customer, event, window_start, "
                               "window_ms, part, identifier, value, records, first_seq, last_seq,"
                               " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                               -1, &st, NULL) != SQLITE_OK)
            return par__store_fail(s->db, err, "opening a window");
        sqlite3_bind_text(st, 1, w->customer, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, w->event, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, w->window_start);
        sqlite3_bind_int64(st, 4, w->window_ms);
        sqlite3_bind_int(st, 5, part + 1);
        sqlite3_bind_text(st, 6, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 7, value);
        sqlite3_bind_int64(st, 8, seq);
        sqlite3_bind_int64(st, 9, seq);
        sqlite3_bind_int64(st, 10, par_wall_ms());
    }
    r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? PAR_OK : par__store_fail(s->db, err, "writing a window");
}

int par_store_windows_seal(par_store_t *s, int64_t now, int64_t grace_ms, par_buf_t *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE export_windows SET state = 1 WHERE state = 0 AND window_start +"
                           " window_ms + ? <= ?",
                           -1, &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "sealing windows");
    sqlite3_bind_int64(st, 1, grace_ms);
    sqlite3_bind_int64(st, 2, now);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? PAR_OK : par__store_fail(s->db, err, "sealing windows");
}

int par_store_windows_due(par_store_t *s, size_t max, json_t **rows, par_buf_t *err)
{
    *rows = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT wid, customer, event, window_start, window_ms, part, identifier,"
                           " value, records FROM export_windows WHERE state = 1 ORDER BY "
                           "window_start, wid LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "reading windows");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    return par__store_rows_json(s->db, st, 0, "reading windows", rows, err);
}

int par_store_window_done(par_store_t *s, const char *exporter, int64_t wid, int http_status,
                          const char *body, par_buf_t *err)
{
    int rc = par_store_begin(s, err);
    if (rc != PAR_OK)
        return rc;
    sqlite3_stmt *st;
    int ok = sqlite3_prepare_v2(s->db,
                                "UPDATE export_windows SET state = ?, sent_ms = ? WHERE wid = ? "
                                "AND state = 1 RETURNING records",
                                -1, &st, NULL) == SQLITE_OK;
    int64_t records = 0;
    if (ok) {
        sqlite3_bind_int(st, 1, http_status ? 3 : 2);
        sqlite3_bind_int64(st, 2, par_wall_ms());
        sqlite3_bind_int64(st, 3, wid);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            records = sqlite3_column_int64(st, 0), r = sqlite3_step(st);
        ok = r == SQLITE_DONE;
        sqlite3_finalize(st);
    }
    if (ok && http_status)
        ok = sqlite3_prepare_v2(s->db,
                                "INSERT OR REPLACE INTO dead_letters (seq, id, exporter, "
                                "failed_at_ms, http_status, body, window_start, window_ms, "
                                "customer, event, value, records) SELECT -wid, identifier, ?, ?, "
                                "?, ?, window_start, window_ms, customer, event, value, records "
                                "FROM export_windows WHERE wid = ?",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok && http_status) {
        sqlite3_bind_text(st, 1, exporter, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, par_wall_ms());
        sqlite3_bind_int(st, 3, http_status);
        sqlite3_bind_text(st, 4, body ? body : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, wid);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_finalize(st);
    }
    ok = ok && par__store_move_cursor(s->db, exporter, 0, http_status ? 0 : records,
                                      http_status ? records : 0) == 0;
    return par__store_end(s, ok, "recording a window's outcome", err);
}

int par_store_export_state(par_store_t *s, const char *exporter, json_t **out, par_buf_t *err)
{
    *out = NULL;
    sqlite3_stmt *st;
    /* pending: root records after the cursor plus those folded into windows
     * not yet sent; oldest: the oldest of either */
    if (sqlite3_prepare_v2(
            s->db,
            "WITH c AS (SELECT coalesce(max(seq), 0) AS seq, coalesce(max(exported), 0) AS "
            "exported, coalesce(max(dead), 0) AS dead FROM export_cursor WHERE exporter = ?1),"
            " r AS (SELECT count(*) AS n, min(ts_ms) AS oldest FROM usage, c WHERE usage.seq > "
            "c.seq AND parent_id = ''),"
            " w AS (SELECT coalesce(sum(records), 0) AS n, count(*) AS windows, min(window_start)"
            " AS oldest FROM export_windows WHERE state IN (0, 1)),"
            " l AS (SELECT max(ws) AS ws, max(at) AS at FROM (SELECT window_start AS ws, sent_ms AS"
            " at FROM export_windows WHERE state = 2 ORDER BY window_start DESC LIMIT 1))"
            " SELECT c.seq, c.exported, c.dead, r.n + w.n, w.windows, min(coalesce(r.oldest, "
            "w.oldest), coalesce(w.oldest, r.oldest)), l.ws, l.at FROM c, r, w, l",
            -1, &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "reading the export state");
    sqlite3_bind_text(st, 1, exporter, -1, SQLITE_STATIC);
    int rc = PAR_OK;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o}", "cursor", (json_int_t)sqlite3_column_int64(st, 0),
            "exported", (json_int_t)sqlite3_column_int64(st, 1), "dead",
            (json_int_t)sqlite3_column_int64(st, 2), "pending",
            (json_int_t)sqlite3_column_int64(st, 3), "windows_pending",
            (json_int_t)sqlite3_column_int64(st, 4), "oldest_unexported_ms", column_json(st, 5),
            "last_window_sent", column_json(st, 6), "last_window_sent_at_ms", column_json(st, 7));
        if (*out == NULL)
            rc = PAR_E_NO_MEMORY;
    } else
        rc = par__store_fail(s->db, err, "reading the export state");
    sqlite3_finalize(st);
    return rc;
}

const char *par_store_group_column(const char *group_by, par_buf_t *err)
{
    static const char *const allowed[] = {"agent", "subject", "tenant", "package"};
    if (group_by == NULL || *group_by == '\0')
        return "''";
    for (size_t i = 0; i < sizeof(allowed) / sizeof(*allowed); i++)
        if (strcmp(group_by, allowed[i]) == 0)
            return allowed[i];
    par_buf_errf(err, "group_by must be agent, subject, tenant or package, not '%s'", group_by);
    return NULL;
}

/* The rows a summary reads: hourly rollups for the hours before H (records of
 * those hours may be deleted), plus the records of those hours not rolled up
 * yet, plus the records from H on. ?1 from, ?2 to, ?3 from's hour, ?4 H,
 * ?5 the rollup cursor. */
#define SUMMARY_SOURCES(rollup_cols, rollup_table, record_cols, record_from, record_where)         \
    "SELECT agent, subject, tenant, package, " rollup_cols " FROM " rollup_table                   \
    " WHERE hour >= ?3 AND hour < min(?2, ?4) UNION ALL SELECT agent, subject, tenant, "           \
    "package, " record_cols " FROM " record_from " WHERE " record_where                            \
    " ((ts_ms >= max(?1, ?4) AND ts_ms < ?2)"                                                      \
    " OR (seq > ?5 AND ts_ms >= ?3 AND ts_ms < min(?2, ?4)))"

static int64_t meta_get(sqlite3 *db, const char *key, int64_t dflt)
{
    sqlite3_stmt *st;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, "SELECT value FROM usage_meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return dflt;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int summary_bind(par_store_t *s, sqlite3_stmt *st, int64_t from_ms, int64_t to_ms)
{
    int64_t pruned = meta_get(s->db, "pruned_before_ms", 0);
    int64_t h = pruned <= 0 ? INT64_MIN : ((pruned + 3599999) / 3600000) * 3600000;
    int64_t rc = par__store_cursor_of(s, "rollup");
    if (rc < 0)
        return -1;
    sqlite3_bind_int64(st, 1, from_ms);
    sqlite3_bind_int64(st, 2, to_ms);
    sqlite3_bind_int64(st, 3, from_ms > 0 ? from_ms - from_ms % 3600000 : from_ms);
    sqlite3_bind_int64(st, 4, h);
    sqlite3_bind_int64(st, 5, rc);
    return 0;
}

static void summary_group(sqlite3_stmt *st, json_t *groups, json_t *list)
{
    const char *key = (const char *)sqlite3_column_text(st, 0);
    json_t *g = json_pack("{s:s,s:I,s:I,s:I,s:f,s:f,s:I,s:I,s:{}}", "key", key ? key : "", "count",
                          (json_int_t)sqlite3_column_int64(st, 1), "errors",
                          (json_int_t)sqlite3_column_int64(st, 2), "roots",
                          (json_int_t)sqlite3_column_int64(st, 3), "duration_ms_sum",
                          sqlite3_column_double(st, 4), "cpu_ms_sum", sqlite3_column_double(st, 5),
                          "bytes_in", (json_int_t)sqlite3_column_int64(st, 6), "bytes_out",
                          (json_int_t)sqlite3_column_int64(st, 7), "units");
    json_object_set(groups, key ? key : "", g);
    json_array_append_new(list, g);
}

int par_store_summary(par_store_t *s, int64_t from_ms, int64_t to_ms, const char *group_by,
                      json_t **out, par_buf_t *err)
{
    *out = NULL;
    const char *col = par_store_group_column(group_by, err);
    if (col == NULL)
        return PAR_E_BAD_REQUEST;
    char sql[1400];
    snprintf(sql, sizeof(sql),
             "WITH src AS (" SUMMARY_SOURCES(
                 "count AS n, errors AS e, roots AS r, duration_ms AS d, cpu_ms AS c, bytes_in AS "
                 "bi, bytes_out AS bo",
                 "usage_hourly",
                 "1, status != 'ok', parent_id = '', duration_ms, coalesce(cpu_ms, 0), bytes_in, "
                 "bytes_out",
                 "usage", "") ") SELECT coalesce(nullif(%s, ''), ''), sum(n), sum(e), sum(r),"
                              " sum(d), total(c), sum(bi), sum(bo) FROM src GROUP BY 1 ORDER BY 1",
             col);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "summarising");
    json_t *groups = json_object(); /* key → group, kept in order in `list` */
    json_t *list = json_array();
    if (groups == NULL || list == NULL) {
        sqlite3_finalize(st);
        json_decref(groups);
        json_decref(list);
        par_buf_errf(err, "usage database: summarising: out of memory");
        return PAR_E_NO_MEMORY;
    }
    int r = summary_bind(s, st, from_ms, to_ms) == 0 ? SQLITE_OK : SQLITE_ERROR;
    while (r != SQLITE_ERROR && (r = sqlite3_step(st)) == SQLITE_ROW)
        summary_group(st, groups, list);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        goto bad;
    /* units over root records only: a caller's units already include what its
     * sub-agent calls reported (docs/observability.md) */
    snprintf(
        sql, sizeof(sql),
        "WITH src AS (" SUMMARY_SOURCES(
            "unit AS k, value AS v", "usage_hourly_units", "j.key, j.value",
            "usage, json_each(usage.units) j",
            "parent_id = '' AND units IS NOT NULL AND") ") SELECT coalesce(nullif(%s, ''), ''),"
                                                        " k, sum(v) FROM src GROUP BY 1, 2",
        col);
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        goto bad;
    r = summary_bind(s, st, from_ms, to_ms) == 0 ? SQLITE_OK : SQLITE_ERROR;
    while (r != SQLITE_ERROR && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        json_t *g = json_object_get(groups, key ? key : "");
        if (g)
            json_object_set_new(json_object_get(g, "units"),
                                (const char *)sqlite3_column_text(st, 1),
                                json_integer(sqlite3_column_int64(st, 2)));
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        goto bad;
    json_decref(groups);
    *out = list;
    return PAR_OK;
bad:
    json_decref(groups);
    json_decref(list);
    return par__store_fail(s->db, err, "summarising");
}

int par_store_dead_letters(par_store_t *s, size_t max, json_t **out, par_buf_t *err)
{
    *out = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            s->db, "SELECT * FROM dead_letters ORDER BY failed_at_ms DESC, seq DESC LIMIT ?", -1,
            &st, NULL) != SQLITE_OK)
        return par__store_fail(s->db, err, "reading dead letters");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    return par__store_rows_json(s->db, st, 1 /* a record's has no window */, "reading dead letters",
                                out, err);
}
