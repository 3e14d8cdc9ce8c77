/*
 * metering/store.h — the usage database: SQLite in WAL mode.
 *
 * Tables: `usage` (one row per record, `seq` is the insertion order),
 * `export_cursor` (per exporter: the last `seq` handled and counts),
 * `export_windows` (the aggregated export's windows and their state) and
 * `dead_letters` (records or windows an exporter's peer refused for good). The writer
 * thread (meter.c), the exporter thread (stripe.c) and /runtime/usage each
 * use their own connection; a connection is used by one thread at a time.
 * Every function returns a PAR status and, on failure, appends the SQLite
 * message to `err` when it is not NULL.
 */
#ifndef PAR_METERING_STORE_H
#define PAR_METERING_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "metering/usage.h"
#include "util/buf.h"

typedef struct par_store par_store_t;

/* Opens (creating when needed) the database at `path`. sync_full: fsync at
 * every commit (synchronous=FULL) rather than at checkpoints (NORMAL). */
int par_store_open(const char *path, int sync_full, par_store_t **out, par_buf_t *err);
void par_store_close(par_store_t *s);

/* Inserts the records in one transaction. A record whose id already exists is
 * kept as it was (the insert is idempotent). */
int par_store_insert(par_store_t *s, par_usage_t *const *recs, size_t n, par_buf_t *err);

/* Up to `max` root records (parent_id = "") after the exporter's cursor, in
 * `seq` order, as a JSON array of objects (every column; `units` parsed). */
int par_store_next(par_store_t *s, const char *exporter, size_t max, json_t **rows, par_buf_t *err);

/* Transactions spanning several calls below (the exporter's fold). */
int par_store_begin(par_store_t *s, par_buf_t *err);
int par_store_commit(par_store_t *s, par_buf_t *err); /* rolls back when it fails */
void par_store_rollback(par_store_t *s);

/* One record's outcome: exported (http_status 0) or refused for good. */
typedef struct par_store_ack {
    int64_t seq;
    int http_status;
    const char *body;
} par_store_ack_t;

/* Inside par_store_begin/commit: a dead letter for the record `seq` (the
 * answer's status and body). The acknowledgement loops over these two are the
 * exporter's (export_db.h par__export_ack / par__export_fold), one for every
 * database. */
int par_store_dead_record(par_store_t *s, const char *exporter, int64_t seq, int http_status,
                          const char *body, par_buf_t *err);

/* Inside par_store_begin/commit: moves the exporter's cursor to `seq` (never
 * back) and adds to its exported and dead counters. */
int par_store_move_cursor(par_store_t *s, const char *exporter, int64_t seq, int64_t exported,
                          int64_t dead, par_buf_t *err);

/* A window of the aggregated export. */
typedef struct par_window {
    const char *customer, *event;
    int64_t window_start, window_ms;
} par_window_t;

/* Inside par_store_begin/commit: adds `value` of record `seq` to the open part
 * of the window, or opens a new part (the window itself, or a late event for
 * it when every part is sealed) whose identifier par_stripe_window_id() fixes
 * from node_id now. */
int par_store_window_add(par_store_t *s, const par_window_t *w, double value, int64_t seq,
                         const char *node_id, par_buf_t *err);

/* Seals every open part whose window ended grace_ms before `now` (Unix ms). */
int par_store_windows_seal(par_store_t *s, int64_t now, int64_t grace_ms, par_buf_t *err);

/* Up to `max` sealed parts, oldest window first: [{wid, customer, event,
 * window_start, window_ms, part, identifier, value, records}]. */
int par_store_windows_due(par_store_t *s, size_t max, json_t **rows, par_buf_t *err);

/* In one transaction: the part `wid` is sent (http_status 0) or dead (a dead
 * letter with its window), and the exporter's counters grow by its records. */
int par_store_window_done(par_store_t *s, const char *exporter, int64_t wid, int http_status,
                          const char *body, par_buf_t *err);

/* The exporter's cursor and counters: {"cursor", "exported", "dead",
 * "pending", "windows_pending", "oldest_unexported_ms", "last_window_sent",
 * "last_window_sent_at_ms"} where pending counts root records after the cursor
 * and those in windows not yet sent. */
int par_store_export_state(par_store_t *s, const char *exporter, json_t **out, par_buf_t *err);

/* The column a summary groups by: `group_by` itself when it is agent,
 * subject, tenant or package, "''" (one group) when NULL or empty, else NULL
 * with the error in `err`. PostgreSQL's summary (pg_usage.c) uses it too. */
const char *par_store_group_column(const char *group_by, par_buf_t *err);

/* Sums records with from_ms <= ts_ms < to_ms grouped by `group_by` (agent,
 * subject, tenant, package, or NULL for one group): count, errors, roots,
 * duration, CPU, bytes and, over root records, units. Hours whose records
 * retention may have deleted are answered from the hourly rollups, whole: a
 * `from` inside such an hour counts from the hour's start. */
int par_store_summary(par_store_t *s, int64_t from_ms, int64_t to_ms, const char *group_by,
                      json_t **out, par_buf_t *err);

/* Retention (meter.c's maintenance thread). Each call is one short
 * transaction, so the writer waits at most for one batch. */

/* Adds up to `max` records after the "rollup" cursor to the hourly rollups and
 * moves the cursor; *rolled: how many. */
int par_store_rollup(par_store_t *s, size_t max, int64_t *rolled, par_buf_t *err);

/* What pruning must keep besides records not rolled up (par_store_prune's
 * `keep`): records not yet exported by the local exporter, records not yet
 * shipped to PostgreSQL (the outbox's cursor "postgres"). */
#define PAR_STORE_KEEP_UNEXPORTED 1
#define PAR_STORE_KEEP_UNSHIPPED 2

/* Deletes up to `max` records older than before_ms that are rolled up and,
 * per `keep`, exported (past the export cursor and in no window still to
 * send) and shipped: an unexported or unshipped record is never deleted. */
int par_store_prune(par_store_t *s, int64_t before_ms, int keep, size_t max, int64_t *deleted,
                    par_buf_t *err);

/* The outbox of metering.sink: postgres (ship.c). */

/* Up to `max` records (roots and sub-calls) after the cursor "postgres", in
 * `seq` order, as par_store_next's rows. */
int par_store_outbox(par_store_t *s, size_t max, json_t **rows, par_buf_t *err);

/* Moves the cursor "postgres" to `seq` (shipped: `n` records more). Called
 * only after PostgreSQL committed them. */
int par_store_shipped(par_store_t *s, int64_t seq, int64_t n, par_buf_t *err);

/* Records not shipped yet and the ts_ms of the oldest (0: none). */
int par_store_outbox_state(par_store_t *s, int64_t *pending, int64_t *oldest_ms, par_buf_t *err);

/* Deletes hourly rollups before before_ms and windows sent or dead that started
 * before windows_before_ms. */
int par_store_prune_rollups(par_store_t *s, int64_t before_ms, int64_t windows_before_ms,
                            par_buf_t *err);

typedef struct par_store_space {
    int64_t file_bytes, free_bytes; /* the main file (not the WAL) and its free pages */
    int64_t oldest_unrolled_ms;     /* ts of the first record not rolled up, 0: none */
    int vacuumed;
} par_store_space_t;

/* Measures the file and returns free pages to the file system when more than a
 * quarter of it is free (auto_vacuum=incremental files). */
int par_store_space(par_store_t *s, par_store_space_t *out, par_buf_t *err);

/* The newest `max` dead letters, newest first. */
int par_store_dead_letters(par_store_t *s, size_t max, json_t **out, par_buf_t *err);

#endif
