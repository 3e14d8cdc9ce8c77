/*
 * metering/export_db.h — where the Stripe exporter keeps its bookkeeping.
 *
 * The exporter (stripe.c) reads records after a cursor, folds them into
 * windows and records each event's outcome through this table of operations,
 * so the same exactly-once logic runs on a node's own SQLite database
 * (store.h, the default) and, for a fleet with metering.sink: postgres, on
 * the shared PostgreSQL database (pg_export.c), where only the node holding
 * the leader lock exports. Every operation has the meaning of its
 * par_store_* namesake in store.h. Used by the exporter thread only.
 */
#ifndef PAR_METERING_EXPORT_DB_H
#define PAR_METERING_EXPORT_DB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "metering/store.h"
#include "util/buf.h"

typedef struct par_export_db_ops {
    const char *name; /* "sqlite" or "postgres" */
    /* Opens the database named by `where` (a path or a conninfo) for the
     * node `node_id`. */
    int (*open)(const char *where, const char *node_id, void **db, par_buf_t *err);
    void (*close)(void *db);
    /* 1: this node may export now; 0: another node leads; -1: the connection
     * is lost (the caller closes and reopens). */
    int (*lead)(void *db, par_buf_t *err);
    int (*next)(void *db, const char *exporter, size_t max, json_t **rows, par_buf_t *err);
    int (*begin)(void *db, par_buf_t *err);
    int (*commit)(void *db, par_buf_t *err);
    void (*rollback)(void *db);
    int (*dead_record)(void *db, const char *exporter, int64_t seq, int http_status,
                       const char *body, par_buf_t *err);
    int (*move_cursor)(void *db, const char *exporter, int64_t seq, int64_t exported, int64_t dead,
                       par_buf_t *err);
    int (*window_add)(void *db, const par_window_t *w, double value, int64_t seq,
                      const char *node_id, par_buf_t *err);
    int (*windows_seal)(void *db, int64_t now, int64_t grace_ms, par_buf_t *err);
    int (*windows_due)(void *db, size_t max, json_t **rows, par_buf_t *err);
    int (*window_done)(void *db, const char *exporter, int64_t wid, int http_status,
                       const char *body, par_buf_t *err);
    int (*export_state)(void *db, const char *exporter, json_t **out, par_buf_t *err);
} par_export_db_ops_t;

/* The node's own SQLite database (store.h). */
extern const par_export_db_ops_t par__export_sqlite;
/* The fleet's PostgreSQL database, behind the leader lock (pg_export.c). */
extern const par_export_db_ops_t par__export_postgres;

/* In one transaction: dead letters for the refused, and the exporter's cursor
 * moved to the largest seq with its counters. The caller passes only a
 * contiguous prefix of what follows the cursor. */
int par__export_ack(const par_export_db_ops_t *ops, void *db, const char *exporter,
                    const par_store_ack_t *acks, size_t n, par_buf_t *err);

/* Inside begin/commit: moves the cursor past the record `seq`, which was
 * folded into a window (http_status 0) or is a dead letter (e.g. 422: no
 * customer). */
int par__export_fold(const par_export_db_ops_t *ops, void *db, const char *exporter, int64_t seq,
                     int http_status, const char *body, par_buf_t *err);

#endif
