/*
 * metering/pg_usage.c — see pg_usage.h: the schema, connecting, shipping a
 * batch of records and the fleet-wide /runtime/usage answers.
 *
 * Called by the shipper thread (ship.c), the exporter thread (pg_export.c)
 * and the admin queue (par_meter_report), each with its own connection. It
 * must never hold a transaction open when it returns, and never acknowledge a
 * batch before PostgreSQL's COMMIT answered.
 */
#include "metering/pg_usage.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "metering/pg_keys.h"
#include "metering/store.h"

static const char schema[] =
    "BEGIN; SELECT pg_advisory_xact_lock(" PAR_PG_LOCK_SCHEMA ");"
    "CREATE TABLE IF NOT EXISTS par_usage ("
    " seq bigserial NOT NULL UNIQUE, id text PRIMARY KEY, node_id text NOT NULL,"
    " ts_ms bigint NOT NULL, request_id text NOT NULL, trace_id text NOT NULL,"
    " span_id text NOT NULL, parent_id text NOT NULL, root_id text NOT NULL, subject text,"
    " tenant text, agent text NOT NULL, package text NOT NULL, version text NOT NULL,"
    " status text NOT NULL, duration_ms double precision NOT NULL, cpu_ms double precision,"
    " bytes_in bigint NOT NULL, bytes_out bigint NOT NULL, units jsonb, events bigint,"
    " shipped_ms bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint);"
    "CREATE INDEX IF NOT EXISTS par_usage_ts ON par_usage (ts_ms);"
    "CREATE TABLE IF NOT EXISTS par_export_cursor (exporter text PRIMARY KEY,"
    " seq bigint NOT NULL DEFAULT 0, exported bigint NOT NULL DEFAULT 0,"
    " dead bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS par_dead_letters (seq bigint PRIMARY KEY, id text NOT NULL,"
    " exporter text NOT NULL, failed_at_ms bigint NOT NULL, http_status int NOT NULL,"
    " body text NOT NULL, window_start bigint, window_ms bigint, customer text, event text,"
    " value double precision, records bigint);"
    "CREATE TABLE IF NOT EXISTS par_export_windows (wid bigserial PRIMARY KEY,"
    " customer text NOT NULL, event text NOT NULL, window_start bigint NOT NULL,"
    " window_ms bigint NOT NULL, part int NOT NULL, identifier text NOT NULL UNIQUE,"
    " value double precision NOT NULL DEFAULT 0, records bigint NOT NULL DEFAULT 0,"
    " first_seq bigint NOT NULL, last_seq bigint NOT NULL, state int NOT NULL DEFAULT 0,"
    " created_ms bigint NOT NULL, sent_ms bigint, UNIQUE (customer, event, window_start, part));"
    "CREATE INDEX IF NOT EXISTS par_export_windows_state ON par_export_windows (state,"
    " window_start);"
    "CREATE TABLE IF NOT EXISTS par_fleet_leader (role text PRIMARY KEY, node_id text NOT NULL,"
    " since_ms bigint NOT NULL);"
    "COMMIT;";

int par__pg_fail(PGconn *c, const PGresult *r, const char *what, par_buf_t *err)
{
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (m == NULL || *m == '\0')
        m = c ? PQerrorMessage(c) : "no connection";
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    par_buf_errf(err, "PostgreSQL: %s: %.*s", what, (int)n, m);
    return PAR_E_IO;
}

PGresult *par__pg_run(PGconn *c, const char *sql, int n, const char *const *params,
                      const char *what, par_buf_t *err)
{
    PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    par__pg_fail(c, r, what, err);
    PQclear(r);
    return NULL;
}

int par_pg_alive(PGconn *c)
{
    return c != NULL && PQstatus(c) == CONNECTION_OK;
}

int par_pg_connect(const char *conninfo, PGconn **out, par_buf_t *err)
{
    *out = NULL;
    if (par_pq_load() != 0) {
        par_buf_errf(err, "fleet.postgres: %s", par_pq_error());
        return PAR_E_INTERNAL;
    }
    /* ours first: what the conninfo says (expanded from dbname) wins */
    const char *const keys[] = {
        "connect_timeout",     "application_name", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "dbname",     NULL};
    const char *const vals[] = {"5", "par", "1", "10", "5", "3", conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        par_buf_errf(err, "PostgreSQL: connecting: out of memory");
        return PAR_E_NO_MEMORY;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        int rc = par__pg_fail(c, NULL, "connecting to fleet.postgres", err);
        PQfinish(c);
        return rc;
    }
    PGresult *r = par__pg_run(c, schema, 0, NULL, "creating the usage tables", err);
    if (r == NULL) {
        PQfinish(c);
        return PAR_E_IO;
    }
    PQclear(r);
    *out = c;
    return PAR_OK;
}

/* ---- results as JSON -------------------------------------------------------------------- */

enum { OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_JSON = 114 };
enum { OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700, OID_JSONB = 3802 };

static json_t *value_json(const PGresult *r, int row, int col)
{
    const char *v = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return json_integer(strtoll(v, NULL, 10));
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        return json_real(strtod(v, NULL));
    case OID_BOOL:
        return json_boolean(*v == 't');
    case OID_JSON:
    case OID_JSONB: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    }
    default:
        if (strcmp(PQfname(r, col), "units") == 0) {
            json_t *j = json_loads(v, 0, NULL);
            if (j)
                return j;
        }
        return json_string(v);
    }
}

json_t *par__pg_rows_json(const PGresult *r, int skip_null)
{
    json_t *a = json_array();
    for (int i = 0; a && i < PQntuples(r); i++) {
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
        for (int k = 0; k < PQnfields(r); k++) {
            json_t *v =
                PQgetisnull(r, i, k) ? (skip_null ? NULL : json_null()) : value_json(r, i, k);
            if (v && json_object_set_new(o, PQfname(r, k), v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
    }
    return a;
}

/* ---- shipping --------------------------------------------------------------------------- */

#define COLS 20
static const char *const ship_cols[COLS] = {
    "id",          "node_id", "ts_ms",    "request_id", "trace_id", "span_id", "parent_id",
    "root_id",     "subject", "tenant",   "agent",      "package",  "version", "status",
    "duration_ms", "cpu_ms",  "bytes_in", "bytes_out",  "units",    "events"};

/* One array parameter per column, unnested into rows: PostgreSQL parses a
 * short statement and 20 arrays instead of a VALUES list of n * 20
 * parameters (about three times faster at 1000 rows). */
static const char ship_sql[] =
    "INSERT INTO par_usage (id, node_id, ts_ms, request_id, trace_id, span_id, parent_id,"
    " root_id, subject, tenant, agent, package, version, status, duration_ms, cpu_ms, bytes_in,"
    " bytes_out, units, events) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[],"
    " $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
    " $11::text[], $12::text[], $13::text[], $14::text[], $15::float8[], $16::float8[],"
    " $17::bigint[], $18::bigint[], $19::jsonb[], $20::bigint[]) ON CONFLICT (id) DO NOTHING";

#define ARRAY_MAX (256 << 20) /* one column of a batch, as an array literal */

/* Appends one element of an array literal: NULL, or the value quoted with
 * its backslashes and quotes escaped. Non-zero when out of memory. */
static int array_add(par_buf_t *a, const json_t *v, int first)
{
    int bad = first ? 0 : par_buf_append(a, ",", 1);
    char num[40];
    const char *t = NULL;
    char *dumped = NULL;
    if (json_is_string(v))
        t = json_string_value(v);
    else if (json_is_integer(v))
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)), t = num;
    else if (json_is_real(v))
        snprintf(num, sizeof(num), "%.17g", json_real_value(v)), t = num;
    else if (json_is_object(v) || json_is_array(v)) {
        if ((t = dumped = json_dumps(v, JSON_COMPACT)) == NULL)
            return 1;
    }
    if (t == NULL)
        return bad | par_buf_appends(a, "NULL");
    bad |= par_buf_append(a, "\"", 1);
    for (const char *q = t; *q && !bad; q++) {
        if (*q == '"' || *q == '\\')
            bad |= par_buf_append(a, "\\", 1);
        bad |= par_buf_append(a, q, 1);
    }
    free(dumped);
    return bad | par_buf_append(a, "\"", 1);
}

int par_pg_ship(PGconn *c, const char *node_id, const json_t *rows, int64_t *inserted,
                par_buf_t *err)
{
    size_t n = json_array_size(rows);
    *inserted = 0;
    if (n == 0)
        return PAR_OK;
    assert(n <= PAR_PG_SHIP_MAX);
    par_buf_t arr[COLS];
    const char *params[COLS];
    json_t *node = json_string(node_id);
    int bad = node == NULL;
    for (int k = 0; k < COLS; k++) {
        par_buf_init(&arr[k], ARRAY_MAX);
        bad |= par_buf_append(&arr[k], "{", 1);
    }
    for (size_t i = 0; i < n && !bad; i++) {
        const json_t *row = json_array_get(rows, i);
        for (int k = 0; k < COLS; k++)
            bad |= array_add(&arr[k], k == 1 ? node : json_object_get(row, ship_cols[k]), i == 0);
    }
    for (int k = 0; k < COLS; k++) {
        bad |= par_buf_append(&arr[k], "}", 1) | par_buf_terminate(&arr[k]);
        params[k] = arr[k].data;
    }
    json_decref(node);
    int rc = PAR_E_IO;
    if (bad) {
        par_buf_errf(err,
                     "PostgreSQL: shipping: out of memory (or a column of the batch over"
                     " %d MiB: lower metering.ship_batch)",
                     ARRAY_MAX >> 20);
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    PGresult *r = par__pg_run(c, "BEGIN; SELECT pg_advisory_xact_lock(" PAR_PG_LOCK_SHIP ")", 0,
                              NULL, "shipping (BEGIN)", err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = par__pg_run(c, ship_sql, COLS, params, "shipping (INSERT)", err);
    if (r == NULL) {
        PQclear(PQexec(c, "ROLLBACK"));
        goto out;
    }
    *inserted = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    r = par__pg_run(c, "COMMIT", 0, NULL, "shipping (COMMIT)", err);
    if (r == NULL)
        goto out;
    PQclear(r);
    rc = PAR_OK;
out:
    for (int k = 0; k < COLS; k++)
        par_buf_free(&arr[k]);
    return rc;
}

/* ---- /runtime/usage ------------------------------------------------------------------- */

static void add_group(const PGresult *r, int i, json_t *groups, json_t *list)
{
    const char *key = PQgetvalue(r, i, 0);
    json_t *g = json_pack("{s:s,s:I,s:I,s:I,s:f,s:f,s:I,s:I,s:{}}", "key", key, "count",
                          (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "errors",
                          (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10), "roots",
                          (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10), "duration_ms_sum",
                          strtod(PQgetvalue(r, i, 4), NULL), "cpu_ms_sum",
                          strtod(PQgetvalue(r, i, 5), NULL), "bytes_in",
                          (json_int_t)strtoll(PQgetvalue(r, i, 6), NULL, 10), "bytes_out",
                          (json_int_t)strtoll(PQgetvalue(r, i, 7), NULL, 10), "units");
    json_object_set(groups, key, g);
    json_array_append_new(list, g);
}

int par_pg_summary(PGconn *c, int64_t from_ms, int64_t to_ms, const char *group_by, json_t **out,
                   par_buf_t *err)
{
    *out = NULL;
    const char *col = par_store_group_column(group_by, err);
    if (col == NULL)
        return PAR_E_BAD_REQUEST;
    char from[32], to[32], sql[1200];
    snprintf(from, sizeof(from), "%lld", (long long)from_ms);
    snprintf(to, sizeof(to), "%lld", (long long)to_ms);
    const char *const p[] = {from, to};
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(nullif(%s, ''), '') COLLATE \"C\", count(*),"
             " count(*) FILTER (WHERE status <> 'ok'), count(*) FILTER (WHERE parent_id = ''),"
             " coalesce(sum(duration_ms), 0), coalesce(sum(cpu_ms), 0),"
             " coalesce(sum(bytes_in), 0), coalesce(sum(bytes_out), 0) FROM par_usage"
             " WHERE ts_ms >= $1::bigint AND ts_ms < $2::bigint GROUP BY 1 ORDER BY 1",
             col);
    PGresult *r = par__pg_run(c, sql, 2, p, "summarising", err);
    if (r == NULL)
        return PAR_E_IO;
    json_t *groups = json_object(), *list = json_array();
    for (int i = 0; groups && list && i < PQntuples(r); i++)
        add_group(r, i, groups, list);
    PQclear(r);
    /* units over root records only, as in the SQLite summary */
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(nullif(%s, ''), '') COLLATE \"C\", j.key,"
             " sum((j.value #>> '{}')::numeric)::bigint FROM par_usage, jsonb_each(CASE WHEN"
             " jsonb_typeof(units) = 'object' THEN units ELSE '{}'::jsonb END) j"
             " WHERE parent_id = '' AND units IS NOT NULL AND jsonb_typeof(j.value) = 'number'"
             " AND ts_ms >= $1::bigint AND ts_ms < $2::bigint GROUP BY 1, 2",
             col);
    r = par__pg_run(c, sql, 2, p, "summarising units", err);
    for (int i = 0; r && groups && i < PQntuples(r); i++) {
        json_t *g = json_object_get(groups, PQgetvalue(r, i, 0));
        if (g)
            json_object_set_new(json_object_get(g, "units"), PQgetvalue(r, i, 1),
                                json_integer(strtoll(PQgetvalue(r, i, 2), NULL, 10)));
    }
    int rc = r == NULL ? PAR_E_IO : groups == NULL || list == NULL ? PAR_E_NO_MEMORY : PAR_OK;
    PQclear(r);
    json_decref(groups);
    if (rc == PAR_E_NO_MEMORY)
        par_buf_errf(err, "PostgreSQL: summarising: out of memory");
    if (rc != PAR_OK)
        json_decref(list);
    else
        *out = list;
    return rc;
}

int par_pg_export_state(PGconn *c, const char *exporter, json_t **out, par_buf_t *err)
{
    *out = NULL;
    const char *const p[] = {exporter};
    PGresult *r = par__pg_run(
        c,
        "WITH c AS (SELECT coalesce(max(seq), 0) AS seq, coalesce(max(exported), 0) AS exported,"
        " coalesce(max(dead), 0) AS dead FROM par_export_cursor WHERE exporter = $1),"
        " r AS (SELECT count(*) AS n, min(ts_ms) AS oldest FROM par_usage, c WHERE"
        " par_usage.seq > c.seq AND parent_id = ''),"
        " w AS (SELECT coalesce(sum(records), 0) AS n, count(*) AS windows, min(window_start)"
        " AS oldest FROM par_export_windows WHERE state IN (0, 1)),"
        " l AS (SELECT max(ws) AS ws, max(at) AS at FROM (SELECT window_start AS ws, sent_ms AS"
        " at FROM par_export_windows WHERE state = 2 ORDER BY window_start DESC LIMIT 1) x),"
        " f AS (SELECT max(node_id) AS node, max(since_ms) AS since FROM par_fleet_leader"
        " WHERE role = $1)"
        " SELECT c.seq AS cursor, c.exported, c.dead, (r.n + w.n)::bigint AS pending,"
        " w.windows AS windows_pending, least(r.oldest, w.oldest) AS oldest_unexported_ms,"
        " l.ws AS last_window_sent, l.at AS last_window_sent_at_ms, f.node AS leader_node,"
        " f.since AS leader_since_ms FROM c, r, w, l, f",
        1, p, "reading the export state", err);
    if (r == NULL)
        return PAR_E_IO;
    json_t *rows = par__pg_rows_json(r, 0);
    PQclear(r);
    *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    if (*out == NULL) {
        par_buf_errf(err, "PostgreSQL: reading the export state: out of memory");
        return PAR_E_NO_MEMORY;
    }
    return PAR_OK;
}

int par_pg_dead_letters(PGconn *c, size_t max, json_t **out, par_buf_t *err)
{
    char lim[32];
    snprintf(lim, sizeof(lim), "%zu", max);
    const char *const p[] = {lim};
    PGresult *r = par__pg_run(c,
                              "SELECT * FROM par_dead_letters ORDER BY failed_at_ms DESC, seq DESC"
                              " LIMIT $1::bigint",
                              1, p, "reading dead letters", err);
    if (r == NULL)
        return PAR_E_IO;
    *out = par__pg_rows_json(r, 1);
    PQclear(r);
    if (*out == NULL) {
        par_buf_errf(err, "PostgreSQL: reading dead letters: out of memory");
        return PAR_E_NO_MEMORY;
    }
    return PAR_OK;
}
