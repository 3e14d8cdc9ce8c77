/*
 * metering/store_internal.h — what the files of the usage database share
 * (store.c, store_retention.c). Not part of store.h's interface; include it
 * only from metering/store*.c and its unit test. A connection is used by one
 * thread at a time.
 */
#ifndef PAR_METERING_STORE_INTERNAL_H
#define PAR_METERING_STORE_INTERNAL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "metering/store.h"
#include "util/buf.h"

struct par_store {
    sqlite3 *db;
    sqlite3_stmt *ins;
};

/* The hour holding ts (ts >= 0), in SQL. */
#define HOUR_OF(col) "(" col " - " col " % 3600000)"

/* Appends "usage database: <what>: <SQLite's message>" to err (when not
 * NULL); returns PAR_E_IO. */
int par__store_fail(sqlite3 *db, par_buf_t *err, const char *what);
/* Ends the transaction par_store_begin() opened: commits when `ok`, else
 * reports `what` with par__store_fail() and rolls back. */
int par__store_end(par_store_t *s, int ok, const char *what, par_buf_t *err);
/* The exporter's cursor (0 when it has none), -1 when it cannot be read. */
int64_t par__store_cursor_of(par_store_t *s, const char *exporter);
/* Moves the cursor to `seq` and adds to its counters. Inside a transaction.
 * 0, or -1 on a database error. */
int par__store_move_cursor(sqlite3 *db, const char *exporter, int64_t seq, int64_t exported,
                           int64_t dead);
/* Steps `st` to its end, one JSON object per row (column name → value;
 * integers, reals, text, null, and a `units` column parsed as JSON), NULL
 * columns left out when `skip_null`, and finalizes `st`. A text value jansson
 * refuses (not UTF-8) is left out. PAR_E_IO with par__store_fail(`what`) on a
 * database error, PAR_E_NO_MEMORY when out of memory. */
int par__store_rows_json(sqlite3 *db, sqlite3_stmt *st, int skip_null, const char *what,
                         json_t **rows, par_buf_t *err);

#endif
