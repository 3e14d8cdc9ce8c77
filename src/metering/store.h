/*
 * metering/store.h — the usage database: SQLite in WAL mode.
 *
 * Tables: `usage` (one row per record, `seq` is the insertion order),
 * `export_cursor` (per exporter: the last `seq` handled and counts) and
 * `dead_letters` (records an exporter's peer refused for good). The writer
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

/* Moves the exporter's cursor to `seq` in one transaction with its outcome:
 * exported (http_status 0), or a dead letter holding the peer's status and body. */
int par_store_ack(par_store_t *s, const char *exporter, int64_t seq, int http_status,
                  const char *body, par_buf_t *err);

/* The exporter's cursor and counters: {"cursor","exported","dead","pending"}
 * where pending counts root records after the cursor. */
int par_store_export_state(par_store_t *s, const char *exporter, json_t **out, par_buf_t *err);

/* Sums records with from_ms <= ts_ms < to_ms grouped by `group_by` (agent,
 * subject, tenant, package, or NULL for one group): count, errors, roots,
 * duration, CPU, bytes and, over root records, units. */
int par_store_summary(par_store_t *s, int64_t from_ms, int64_t to_ms, const char *group_by,
                      json_t **out, par_buf_t *err);

/* The newest `max` dead letters, newest first. */
int par_store_dead_letters(par_store_t *s, size_t max, json_t **out, par_buf_t *err);

#endif
