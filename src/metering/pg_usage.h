/*
 * metering/pg_usage.h — the fleet's usage records in PostgreSQL
 * (metering.sink: postgres, docs/fleet.md).
 *
 * Tables (created when missing, under an advisory lock so that nodes starting
 * together do not race): par_usage (one row per record; `id`, the record id,
 * is the primary key, so shipping a record twice stores it once; `seq` orders
 * the rows in commit order for the exporter's cursor), par_export_cursor,
 * par_export_windows, par_dead_letters (the Stripe export's bookkeeping, as
 * in the SQLite database) and par_fleet_leader (who exports).
 *
 * Callers: the shipper thread (ship.c), the exporter thread through
 * pg_export.c, and /runtime/usage (par_meter_report, on the admin queue),
 * each on its own connection; a connection is used by one thread at a time.
 * Everything here blocks on the network: never call it on an event loop.
 * Every function returns a PAR status and appends PostgreSQL's message to
 * `err` on failure.
 */
#ifndef PAR_METERING_PG_USAGE_H
#define PAR_METERING_PG_USAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/pq.h"

/* Records per shipping transaction at most (metering.ship_batch's bound: a
 * batch and its 20 column arrays are held in memory at once). */
#define PAR_PG_SHIP_MAX 3000

/* Loads libpq, connects (connect_timeout 5 s and TCP keepalives unless the
 * conninfo says otherwise) and creates the tables. */
int par_pg_connect(const char *conninfo, PGconn **out, par_buf_t *err);

/* 1 while the connection is usable. */
int par_pg_alive(PGconn *c);

/* Inserts `rows` (objects with the SQLite usage columns, as
 * par_store_outbox returns them) from node `node_id` in one transaction, each
 * at most once (ON CONFLICT (id) DO NOTHING). Transactions of all nodes are
 * serialised by an advisory lock so that `seq` grows in commit order.
 * *inserted: rows new to PostgreSQL. */
int par_pg_ship(PGconn *c, const char *node_id, const json_t *rows, int64_t *inserted,
                par_buf_t *err);

/* /runtime/usage over the whole fleet: the groups of [from_ms, to_ms) by
 * `group_by` (as par_store_summary), the export state of `exporter` (as
 * par_store_export_state, with "leader_node" and "leader_since_ms") and the
 * newest 100 dead letters. */
int par_pg_summary(PGconn *c, int64_t from_ms, int64_t to_ms, const char *group_by, json_t **out,
                   par_buf_t *err);
int par_pg_export_state(PGconn *c, const char *exporter, json_t **out, par_buf_t *err);
int par_pg_dead_letters(PGconn *c, size_t max, json_t **out, par_buf_t *err);

/* Shared with pg_export.c. */

/* Appends "PostgreSQL: <what>: <message>" to err; returns PAR_E_IO. */
int par__pg_fail(PGconn *c, const PGresult *r, const char *what, par_buf_t *err);
/* Runs `sql` with text parameters (NULL entries are SQL NULL). Returns the
 * result when its status is COMMAND_OK or TUPLES_OK, else clears it, fails
 * with `what` and returns NULL. */
PGresult *par__pg_run(PGconn *c, const char *sql, int n, const char *const *params,
                      const char *what, par_buf_t *err);
/* The rows of `r` as a JSON array of objects: integers, reals, booleans,
 * JSON (and a `units` column) parsed, text as strings, NULL columns left out
 * when skip_null. NULL when out of memory. */
json_t *par__pg_rows_json(const PGresult *r, int skip_null);

#endif
