/*
 * metering/store_retention.c — keeping the usage database bounded: hourly
 * rollups of records, pruning records and rollups past their retention, and
 * the space figures (with the WAL bound after a prune).
 *
 * Owns: par_store_rollup, par_store_prune, par_store_prune_rollups and
 * par_store_space. Called by the metering writer thread (meter.c) on its own
 * connection, one thread at a time per connection. It must never delete a
 * record an exporter has not handled yet or the shipper has not shipped to
 * PostgreSQL (prune_bound) nor one not rolled up yet, so summaries answer the
 * same before and after a prune.
 */
#include "metering/store.h"
#include "metering/store_internal.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <par/par.h>

/* ---- retention: rollups, pruning, space --------------------------------------------- */

static int exec_i64(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t *changes)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (changes)
        *changes = sqlite3_changes64(db);
    return r == SQLITE_DONE ? 0 : -1;
}

static const char rollup_sql[] = "INSERT INTO usage_hourly SELECT " HOUR_OF(
    "ts_ms") ", agent, coalesce(subject, ''),"
             " coalesce(tenant, ''), package, status, count(*), sum(status != 'ok'), sum(parent_id "
             "= ''),"
             " sum(duration_ms), total(cpu_ms), sum(bytes_in), sum(bytes_out) FROM usage WHERE seq "
             "> ?1"
             " AND seq <= ?2 GROUP BY 1, 2, 3, 4, 5, 6 ON CONFLICT DO UPDATE SET"
             " count = count + excluded.count, errors = errors + excluded.errors,"
             " roots = roots + excluded.roots, duration_ms = duration_ms + excluded.duration_ms,"
             " cpu_ms = cpu_ms + excluded.cpu_ms, bytes_in = bytes_in + excluded.bytes_in,"
             " bytes_out = bytes_out + excluded.bytes_out";

static const char rollup_units_sql[] = "INSERT INTO usage_hourly_units SELECT " HOUR_OF(
    "ts_ms") ", agent, coalesce(subject, ''),"
             " coalesce(tenant, ''), package, status, j.key, sum(j.value) FROM usage,"
             " json_each(usage.units) j WHERE seq > ?1 AND seq <= ?2 AND parent_id = '' AND units "
             "IS NOT"
             " NULL GROUP BY 1, 2, 3, 4, 5, 6, 7 ON CONFLICT DO UPDATE SET value = value + "
             "excluded.value";

int par_store_rollup(par_store_t *s, size_t max, int64_t *rolled, par_buf_t *err)
{
    *rolled = 0;
    int rc = par_store_begin(s, err);
    if (rc != PAR_OK)
        return rc;
    int64_t from = par__store_cursor_of(s, "rollup"), to = from;
    sqlite3_stmt *st;
    int ok = from >= 0 && sqlite3_prepare_v2(s->db,
                                             "SELECT max(seq), count(*) FROM (SELECT seq FROM usage"
                                             " WHERE seq > ? ORDER BY seq LIMIT ?)",
                                             -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, from);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
        ok = sqlite3_step(st) == SQLITE_ROW;
        if (ok && sqlite3_column_type(st, 0) != SQLITE_NULL)
            to = sqlite3_column_int64(st, 0), *rolled = sqlite3_column_int64(st, 1);
        sqlite3_finalize(st);
    }
    if (ok && to > from)
        ok = exec_i64(s->db, rollup_sql, from, to, NULL) == 0 &&
             exec_i64(s->db, rollup_units_sql, from, to, NULL) == 0 &&
             par__store_move_cursor(s->db, "rollup", to, *rolled, 0) == 0;
    return par__store_end(s, ok, "rolling up", err);
}

/* The largest seq pruning may delete: rolled up and, per `keep`, past the
 * export cursor and in no window still to send, and shipped. */
static int64_t prune_bound(par_store_t *s, int keep)
{
    int64_t bound = par__store_cursor_of(s, "rollup");
    if (bound >= 0 && (keep & PAR_STORE_KEEP_UNSHIPPED)) {
        int64_t shipped = par__store_cursor_of(s, "postgres");
        bound = shipped < bound ? shipped : bound;
    }
    if (!(keep & PAR_STORE_KEEP_UNEXPORTED) || bound < 0)
        return bound;
    int64_t ex = par__store_cursor_of(s, "stripe");
    if (ex < 0)
        return -1;
    if (ex < bound)
        bound = ex;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT min(first_seq) FROM export_windows WHERE state IN (0, 1)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
        sqlite3_column_int64(st, 0) - 1 < bound)
        bound = sqlite3_column_int64(st, 0) - 1;
    sqlite3_finalize(st);
    return bound;
}

int par_store_prune(par_store_t *s, int64_t before_ms, int keep, size_t max, int64_t *deleted,
                    par_buf_t *err)
{
    *deleted = 0;
    int rc = par_store_begin(s, err);
    if (rc != PAR_OK)
        return rc;
    int64_t bound = prune_bound(s, keep);
    int ok = bound >= 0;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "DELETE FROM usage WHERE seq IN (SELECT seq FROM usage WHERE ts_ms < ?1 AND seq <= ?2"
             " LIMIT %zu)",
             max);
    if (ok)
        ok = exec_i64(s->db, sql, before_ms, bound, deleted) == 0;
    /* from now on, summaries of the hours before `before_ms` come from rollups */
    if (ok && *deleted)
        ok =
            exec_i64(s->db,
                     "INSERT INTO usage_meta (key, value) VALUES ('pruned_before_ms', ?1) ON "
                     "CONFLICT(key) DO UPDATE SET value = max(value, excluded.value) WHERE ?2 = ?2",
                     before_ms, 0, NULL) == 0;
    return par__store_end(s, ok, "pruning", err);
}

int par_store_prune_rollups(par_store_t *s, int64_t before_ms, int64_t windows_before_ms,
                            par_buf_t *err)
{
    int rc = par_store_begin(s, err);
    if (rc != PAR_OK)
        return rc;
    int ok = exec_i64(s->db, "DELETE FROM usage_hourly WHERE hour < ?1 AND ?2 = ?2", before_ms, 0,
                      NULL) == 0 &&
             exec_i64(s->db, "DELETE FROM usage_hourly_units WHERE hour < ?1 AND ?2 = ?2",
                      before_ms, 0, NULL) == 0 &&
             exec_i64(s->db,
                      "DELETE FROM export_windows WHERE state IN (2, 3) AND window_start < ?1 AND"
                      " ?2 = ?2",
                      windows_before_ms, 0, NULL) == 0;
    return par__store_end(s, ok, "pruning rollups", err);
}

static int64_t pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The WAL only starts over when a checkpoint finished and no reader is in it;
 * with the writer, the exporter and pruning all busy that can take long and
 * the file grows. Past WAL_LIMIT, a TRUNCATE checkpoint waits (at most 250 ms)
 * for the readers and empties it; the writer waits for that copy. */
#define WAL_LIMIT (16 << 20)
static void wal_bound(par_store_t *s)
{
    char wal[4200];
    struct stat st;
    snprintf(wal, sizeof(wal), "%s-wal", sqlite3_db_filename(s->db, "main"));
    if (stat(wal, &st) != 0 || st.st_size <= WAL_LIMIT)
        return;
    sqlite3_busy_timeout(s->db, 250);
    sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_busy_timeout(s->db, 10000);
}

int par_store_space(par_store_t *s, par_store_space_t *out, par_buf_t *err)
{
    memset(out, 0, sizeof(*out));
    int64_t pages = pragma_int(s->db, "PRAGMA page_count");
    int64_t size = pragma_int(s->db, "PRAGMA page_size");
    int64_t free_pages = pragma_int(s->db, "PRAGMA freelist_count");
    if (pages < 0 || size < 0 || free_pages < 0)
        return par__store_fail(s->db, err, "reading the page counts");
    out->file_bytes = pages * size;
    out->free_bytes = free_pages * size;
    /* space comes back to the file system only when a quarter is free: at steady
     * state, what pruning frees is reused by new records instead */
    if (pragma_int(s->db, "PRAGMA auto_vacuum") == 2 && free_pages > pages / 4) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%lld)",
                 (long long)(free_pages - pages / 8));
        sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        out->vacuumed = 1;
    }
    wal_bound(s);
    sqlite3_stmt *st;
    int64_t rc = par__store_cursor_of(s, "rollup");
    if (rc >= 0 &&
        sqlite3_prepare_v2(s->db, "SELECT ts_ms FROM usage WHERE seq > ? ORDER BY seq LIMIT 1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, rc);
        out->oldest_unrolled_ms = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
    }
    return PAR_OK;
}
