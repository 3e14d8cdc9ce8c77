/*
 * util/pq.h — libpq (the PostgreSQL client), opened with dlopen on first use.
 *
 * Only a fleet (fleet.postgres set) talks to PostgreSQL: the shared usage
 * store (metering.sink: postgres), the Stripe exporter's leader lock and the
 * run-owner registry. A single node never maps libpq and its libraries
 * (Kerberos, LDAP, TLS), the same reason util/curl.h loads libcurl lazily.
 * Files that speak to PostgreSQL include this header instead of
 * <libpq-fe.h>; the PQ* names they call resolve to a table filled by
 * par_pq_load().
 *
 * Rule: call par_pq_load() (any thread, idempotent) and check it before the
 * first PQ* call; until it succeeds the table's entries are NULL.
 */
#ifndef PAR_UTIL_PQ_H
#define PAR_UTIL_PQ_H

#include <libpq-fe.h>

typedef struct par_pq_api {
    PGconn *(*connectdb)(const char *conninfo);
    PGconn *(*connectdb_params)(const char *const *keys, const char *const *values,
                                int expand_dbname);
    ConnStatusType (*status)(const PGconn *c);
    char *(*error_message)(const PGconn *c);
    void (*finish)(PGconn *c);
    void (*reset)(PGconn *c);
    int (*socket)(const PGconn *c);
    PGresult *(*exec)(PGconn *c, const char *sql);
    PGresult *(*exec_params)(PGconn *c, const char *sql, int n, const Oid *types,
                             const char *const *values, const int *lengths, const int *formats,
                             int result_format);
    ExecStatusType (*result_status)(const PGresult *r);
    char *(*result_error_message)(const PGresult *r);
    char *(*result_error_field)(const PGresult *r, int field);
    void (*clear)(PGresult *r);
    int (*ntuples)(const PGresult *r);
    int (*nfields)(const PGresult *r);
    char *(*getvalue)(const PGresult *r, int row, int col);
    int (*getisnull)(const PGresult *r, int row, int col);
    int (*getlength)(const PGresult *r, int row, int col);
    char *(*cmd_tuples)(PGresult *r);
    char *(*escape_literal)(PGconn *c, const char *s, size_t len);
    void (*freemem)(void *p);
    int (*consume_input)(PGconn *c);
    PGnotify *(*notifies)(PGconn *c);
    char *(*fname)(const PGresult *r, int col);
    Oid (*ftype)(const PGresult *r, int col);
} par_pq_api_t;

extern par_pq_api_t par__pq;

/* Loads libpq once. 0, or -1 with par_pq_error() saying why. Any thread. */
int par_pq_load(void);

/* Why libpq could not be loaded, or NULL. */
const char *par_pq_error(void);

#define PQconnectdb(ci) par__pq.connectdb(ci)
#define PQconnectdbParams(k, v, e) par__pq.connectdb_params(k, v, e)
#define PQstatus(c) par__pq.status(c)
#define PQerrorMessage(c) par__pq.error_message(c)
#define PQfinish(c) par__pq.finish(c)
#define PQreset(c) par__pq.reset(c)
#define PQsocket(c) par__pq.socket(c)
#define PQexec(c, s) par__pq.exec(c, s)
#define PQexecParams(...) par__pq.exec_params(__VA_ARGS__)
#define PQresultStatus(r) par__pq.result_status(r)
#define PQresultErrorMessage(r) par__pq.result_error_message(r)
#define PQresultErrorField(r, f) par__pq.result_error_field(r, f)
#define PQclear(r) par__pq.clear(r)
#define PQntuples(r) par__pq.ntuples(r)
#define PQnfields(r) par__pq.nfields(r)
#define PQgetvalue(r, i, j) par__pq.getvalue(r, i, j)
#define PQgetisnull(r, i, j) par__pq.getisnull(r, i, j)
#define PQgetlength(r, i, j) par__pq.getlength(r, i, j)
#define PQcmdTuples(r) par__pq.cmd_tuples(r)
#define PQescapeLiteral(c, s, n) par__pq.escape_literal(c, s, n)
#define PQfreemem(p) par__pq.freemem(p)
#define PQconsumeInput(c) par__pq.consume_input(c)
#define PQnotifies(c) par__pq.notifies(c)
#define PQfname(r, i) par__pq.fname(r, i)
#define PQftype(r, i) par__pq.ftype(r, i)

#endif
