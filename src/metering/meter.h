/*
 * metering/meter.h — usage metering: every finished invocation becomes a
 * usage record, committed to SQLite before its answer is released.
 *
 * par_meter_submit() appends a record to a bounded in-memory queue (any
 * thread, never blocks: a full queue refuses the record and counts it). One
 * writer thread takes everything queued, inserts it in a single transaction
 * (group commit) and then runs each record's `committed` callback, which is
 * where the runtime releases the answer of a root invocation. The optional
 * Stripe exporter (stripe.h) runs on its own thread. A maintenance thread
 * with its own connection rolls records up by hour, deletes records older
 * than the retention once rolled up and exported, in small transactions so
 * the writer never waits long, and measures the file for the metrics. The guarantee this gives
 * is in docs/observability.md. With metering.sink: postgres the database is
 * also an outbox: a shipper thread (ship.h) copies it to the fleet's
 * PostgreSQL, the exporter runs on PostgreSQL behind a leader lock
 * (export_db.h) and /runtime/usage answers from PostgreSQL (docs/fleet.md).
 */
#ifndef PAR_METERING_METER_H
#define PAR_METERING_METER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "metering/stripe.h"
#include "metering/usage.h"
#include "util/buf.h"

typedef struct par_meter par_meter_t;

typedef struct par_meter_config {
    char *path;           /* the database file */
    int sync_full;        /* synchronous=FULL: survive power loss too, at an fsync per batch */
    int async;            /* metering.durability: async: answers do not wait for the commit */
    size_t queue_max;     /* records waiting for the writer, default 65536 */
    size_t batch_max;     /* records per transaction, default 4096 */
    int64_t retention_ms; /* exported records older than this are deleted; 0: 30 days */
    int64_t rollup_retention_ms; /* hourly rollups older than this are deleted; 0: 400 days */
    par_stripe_config_t stripe;  /* export on when stripe.api_key is set */
    char *postgres;    /* metering.sink: postgres: fleet.postgres (the outbox ships there, the
                        * export and /runtime/usage read from there); NULL: sqlite */
    char *node_id;     /* this node in shipped records (metering.node_id) */
    size_t ship_batch; /* records per shipping transaction, default 1000 */
} par_meter_config_t;

/* Frees the strings of a configuration par_meter_new() did not take. */
void par_meter_config_free(par_meter_config_t *cfg);

/* Opens the database and starts the threads. Takes ownership of cfg's strings
 * (also on failure). */
int par_meter_new(par_meter_config_t *cfg, par_meter_t **out, par_buf_t *err);

/* Commits what is queued, stops the exporter and the writer. */
void par_meter_destroy(par_meter_t *m);

/* Queues `u` (ownership passes). Returns PAR_OK, or PAR_E_OVER_CAPACITY when
 * the queue is full or the meter is stopping: `u` is then freed, counted as
 * dropped and its callback is not called. */
int par_meter_submit(par_meter_t *m, par_usage_t *u);

/* GET /runtime/usage: the summary of [from_ms, to_ms) grouped by `group_by`,
 * the export state and the newest dead letters. Blocking (opens its own
 * connection): never on an event loop. */
int par_meter_report(par_meter_t *m, int64_t from_ms, int64_t to_ms, const char *group_by,
                     json_t **out, par_buf_t *err);

/* 1 when an answer waits for its record's commit (metering.durability:
 * answered, the default); 0 in async mode, where par_meter_submit ignores
 * `committed` and the caller answers at once. */
int par_meter_answers_wait(const par_meter_t *m);

/* For /runtime/info: {"sink", "node_id", "export", "export_leader",
 * "shipping"} (m may be NULL: metering off, returns NULL). */
json_t *par_meter_describe(par_meter_t *m);

/* Appends the par_metering_* metrics (m may be NULL: metering off). */
void par_meter_render_metrics(par_meter_t *m, par_buf_t *b);

#endif
