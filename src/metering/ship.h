/*
 * metering/ship.h — ships usage records from the node's SQLite database (the
 * outbox) to the fleet's PostgreSQL (metering.sink: postgres).
 *
 * One thread with its own SQLite connection and its own PostgreSQL
 * connection reads up to `batch` records after the outbox cursor, inserts
 * them in one PostgreSQL transaction (ON CONFLICT (id) DO NOTHING) and moves
 * the cursor only after COMMIT answered: a crash in between ships the same
 * records again, and PostgreSQL keeps each id once. When PostgreSQL cannot
 * be reached (also at start) it logs why and retries with a capped
 * exponential backoff; records wait in SQLite meanwhile, and retention never
 * deletes one not shipped (store.h PAR_STORE_KEEP_UNSHIPPED). Never touches
 * invocations: it only reads what the metering writer committed.
 */
#ifndef PAR_METERING_SHIP_H
#define PAR_METERING_SHIP_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"

typedef struct par_ship par_ship_t;

/* Starts the shipper of the database at `path` to `conninfo` as node
 * `node_id`, `batch` records a transaction (1..PAR_PG_SHIP_MAX). Copies its
 * strings. Fails only when libpq cannot be loaded or a thread cannot start:
 * an unreachable PostgreSQL is retried. */
int par_ship_start(const char *path, const char *conninfo, const char *node_id, size_t batch,
                   par_ship_t **out, par_buf_t *err);
/* Tells the shipper that records were committed. Any thread. */
void par_ship_wake(par_ship_t *s);
/* Stops the shipper (a batch in flight is abandoned: shipped again at the
 * next start, stored once). */
void par_ship_stop(par_ship_t *s);
/* {"connected", "pending", "lag_s", "shipped", "failures", "last_error",
 * "batch"}: the outbox as of the last pass. Any thread. */
json_t *par_ship_describe(par_ship_t *s);
/* Appends the par_usage_ship_* metrics (s NULL: shipping off). */
void par_ship_render_metrics(par_ship_t *s, par_buf_t *b);

#endif
