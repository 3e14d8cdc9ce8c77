/*
 * metering/export_sqlite.c — the exporter's bookkeeping on the node's own
 * SQLite database (export_db.h): each operation is its store.h namesake.
 * Used by the exporter thread (stripe.c) on its own connection; a single
 * node always leads its own export.
 */
#include "metering/export_db.h"

#include <par/par.h>

static int x_open(const char *where, const char *node_id, void **db, par_buf_t *err)
{
    (void)node_id;
    par_store_t *s = NULL;
    int rc = par_store_open(where, 0, &s, err);
    *db = s;
    return rc;
}

static void x_close(void *db)
{
    par_store_close(db);
}

static int x_lead(void *db, par_buf_t *err)
{
    (void)db, (void)err;
    return 1;
}

static int x_next(void *db, const char *exporter, size_t max, json_t **rows, par_buf_t *err)
{
    return par_store_next(db, exporter, max, rows, err);
}

static int x_begin(void *db, par_buf_t *err)
{
    return par_store_begin(db, err);
}

static int x_commit(void *db, par_buf_t *err)
{
    return par_store_commit(db, err);
}

static void x_rollback(void *db)
{
    par_store_rollback(db);
}

static int x_dead(void *db, const char *exporter, int64_t seq, int http_status, const char *body,
                  par_buf_t *err)
{
    return par_store_dead_record(db, exporter, seq, http_status, body, err);
}

static int x_move(void *db, const char *exporter, int64_t seq, int64_t exported, int64_t dead,
                  par_buf_t *err)
{
    return par_store_move_cursor(db, exporter, seq, exported, dead, err);
}

static int x_window_add(void *db, const par_window_t *w, double value, int64_t seq,
                        const char *node_id, par_buf_t *err)
{
    return par_store_window_add(db, w, value, seq, node_id, err);
}

static int x_seal(void *db, int64_t now, int64_t grace_ms, par_buf_t *err)
{
    return par_store_windows_seal(db, now, grace_ms, err);
}

static int x_due(void *db, size_t max, json_t **rows, par_buf_t *err)
{
    return par_store_windows_due(db, max, rows, err);
}

static int x_done(void *db, const char *exporter, int64_t wid, int http_status, const char *body,
                  par_buf_t *err)
{
    return par_store_window_done(db, exporter, wid, http_status, body, err);
}

static int x_state(void *db, const char *exporter, json_t **out, par_buf_t *err)
{
    return par_store_export_state(db, exporter, out, err);
}

const par_export_db_ops_t par__export_sqlite = {
    .name = "sqlite",
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
