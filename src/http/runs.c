/*
 * http/runs.c — the runs routes (docs/api.md "Runs"):
 *
 *   POST   /agents/{id}/runs         start; 202 {"run_id","agent_id","status","created_at"}
 *   POST   /agents/{id}/runs/stream  start and stream its events (http/sse.c)
 *   POST   /agents/{id}/runs/wait    start and answer like invoke when it ends
 *   POST   /agents/{id}/invoke       with Accept: text/event-stream: a stream,
 *                                    cancelled when its client leaves
 *   GET    /runs                     list (agent=, status=, limit=, cursor=)
 *   GET    /runs/{id}                read;  DELETE: remove an ended run
 *   GET    /runs/{id}/stream         events after Last-Event-ID or ?after=N
 *   GET    /runs/{id}/wait           answers like invoke once the run ended
 *   POST   /runs/{id}/cancel         202
 *
 * Bodies are read like invoke's (http/invoke.c's scanner and filler) plus
 * "on_disconnect" and "metadata". A run belongs to its caller's subject and
 * tenant: anyone else but runtime:admin gets the 404 of an unknown run. The
 * routes under /runs need a valid credential; the run's agent must also be
 * one the caller may invoke.
 *
 * In a fleet, a route naming another node's run is forwarded to it
 * (http/forward.c) before anything else is looked at.
 *
 * Loop thread only; the runs engine (runtime/runs.h) does the work and never
 * blocks the loop. Nothing here keeps state between requests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "runtime/runs.h"

enum { START_RUN, START_STREAM, START_WAIT, START_INVOKE_STREAM };

/* Answers an error with its name in the access log; returns 0. */
static int refuse(par_http_exchange_t *x, int status, const char *msg, size_t len)
{
    par__http_send_error(x->req, status, msg, len, x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, par_status_http(status), x->rid,
                         NULL, x->t0, par_status_name(status));
    return 0;
}

#define REFUSE(x, status, lit) refuse((x), (status), H2O_STRLIT(lit))

int par__http_is_admin(par_http_exchange_t *x)
{
    par_auth_t *a = x->loop->http->opts.auth;
    par_identity_t *who = x->loop->who;
    return !par_auth_enabled(a) || (who && par_perms_allow_admin(&who->perms));
}

int par__http_wants_sse(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    /* media types are case-insensitive; a plain search is enough for a yes */
    for (size_t k = 0; k + 17 <= v.len; k++)
        if (h2o_lcstris(v.base + k, 17, H2O_STRLIT("text/event-stream")))
            return 1;
    return 0;
}

/* ---- starting ------------------------------------------------------------------ */

/* "on_disconnect" and "metadata" of an envelope body into `o`; 0, or -1
 * answered. */
static int run_opts(par_http_exchange_t *x, const par_json_field_t *od, const par_json_field_t *md,
                    par_run_opts_t *o)
{
    if (od->ptr && h2o_memis(od->ptr, od->len, H2O_STRLIT("\"cancel\"")))
        o->cancel_on_disconnect = 1;
    else if (od->ptr && !h2o_memis(od->ptr, od->len, H2O_STRLIT("\"continue\"")) &&
             !h2o_memis(od->ptr, od->len, H2O_STRLIT("null"))) {
        REFUSE(x, PAR_E_BAD_REQUEST, "\"on_disconnect\" must be \"continue\" or \"cancel\"");
        return -1;
    }
    if (md->ptr && par_json_root_type(md->ptr, md->len) == '{') {
        o->metadata = md->ptr;
        o->metadata_len = md->len;
    } else if (md->ptr && !h2o_memis(md->ptr, md->len, H2O_STRLIT("null"))) {
        REFUSE(x, PAR_E_BAD_REQUEST, "\"metadata\" must be a JSON object");
        return -1;
    }
    return 0;
}

/* 202 with the run's summary and its Location. */
static int accepted(par_http_exchange_t *x, par_run_t *r)
{
    json_t *full = par_run_json(r);
    json_t *doc =
        full ? json_pack("{s:O?,s:O?,s:O?,s:O?}", "run_id", json_object_get(full, "run_id"),
                         "agent_id", json_object_get(full, "agent_id"), "status",
                         json_object_get(full, "status"), "created_at",
                         json_object_get(full, "created_at"))
             : NULL;
    json_decref(full);
    const char *id = par_run_id(r);
    size_t n = strlen(id);
    char *loc = h2o_mem_alloc_pool(&x->req->pool, n + 6);
    memcpy(loc, "/runs/", 6);
    memcpy(loc + 6, id, n);
    h2o_add_header(&x->req->pool, &x->req->res.headers, H2O_TOKEN_LOCATION, NULL, loc, n + 6);
    par_run_unref(r);
    par__http_send_json(x->req, doc ? 202 : 500, doc, x->rid);
    return 1;
}

/* Refuses a run the engine did not start; frees the call. */
static int not_started(par_http_exchange_t *x, int rc, par_call_t *c, unsigned retry_after)
{
    if (rc == PAR_E_TOO_MANY_RUNS) {
        char ra[16];
        int n = snprintf(ra, sizeof(ra), "%u", retry_after ? retry_after : 1);
        h2o_add_header(&x->req->pool, &x->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       h2o_strdup(&x->req->pool, ra, (size_t)n).base, (size_t)n);
    }
    if (c->output.len)
        refuse(x, rc, c->output.data, c->output.len);
    else
        refuse(x, rc, par_strerror(rc), strlen(par_strerror(rc)));
    par__call_free(c);
    return 0;
}

static int start(par_http_exchange_t *x, int mode)
{
    h2o_req_t *req = x->req;
    const char *body = req->entity.base ? req->entity.base : "";
    size_t blen = req->entity.base ? req->entity.len : 0;
    par_json_field_t f[5] = {{"input", NULL, 0},
                             {"context", NULL, 0},
                             {"trace_id", NULL, 0},
                             {"on_disconnect", NULL, 0},
                             {"metadata", NULL, 0}};
    size_t nf = mode == START_INVOKE_STREAM ? PAR_HTTP_F_INVOKE_COUNT : 5;
    if (par__http_scan_body(x, body, blen, f, nf) != 0)
        return 0;
    par_run_opts_t o = {0, NULL, 0, 0};
    int envelope = par_json_root_type(body, blen) == '{' && f[0].ptr != NULL;
    if (mode == START_INVOKE_STREAM)
        o.cancel_on_disconnect = 1;
    else if (envelope && run_opts(x, &f[3], &f[4], &o) != 0)
        return 0;
    par_call_t *c = par__call_new();
    if (c == NULL)
        return REFUSE(x, PAR_E_NO_MEMORY, "out of memory");
    if (par__http_fill_call(x, body, blen, f, c) != 0)
        return 0;
    par_run_t *r = NULL;
    unsigned retry_after = 0;
    int rc = par_run_start(x->loop->http->rt, c, &o, &r, &retry_after);
    if (rc != PAR_OK)
        return not_started(x, rc, c, retry_after);
    switch (mode) {
    case START_RUN:
        return accepted(x, r);
    case START_WAIT:
        return par__http_wait_start(x, r);
    default:
        return par__http_sse_start(x, r, 0);
    }
}

int par__http_on_run_start(par_http_exchange_t *x)
{
    return start(x, START_RUN);
}

int par__http_on_run_start_stream(par_http_exchange_t *x)
{
    return start(x, START_STREAM);
}

int par__http_on_run_start_wait(par_http_exchange_t *x)
{
    return start(x, START_WAIT);
}

int par__http_on_invoke_stream(par_http_exchange_t *x)
{
    return start(x, START_INVOKE_STREAM);
}

/* ---- one run -------------------------------------------------------------------- */

/* The run the path names, if the caller may see it (referenced); else
 * answered 404 run_not_found (the same for unknown and not-yours) or 403
 * (the caller may no longer invoke its agent), and NULL. */
static par_run_t *find_run(par_http_exchange_t *x)
{
    char id[PAR_ID_MAX + 1];
    par_identity_t *who = x->loop->who;
    if (x->m.var_len > PAR_ID_MAX || !par_run_id_valid(x->m.var, x->m.var_len)) {
        REFUSE(x, PAR_E_RUN_NOT_FOUND,
               "no such run: a run id is run_ followed by 32 hex digits (and, from a fleet "
               "node, _ and 6 characters of a-z and 2-7)");
        return NULL;
    }
    memcpy(id, x->m.var, x->m.var_len);
    id[x->m.var_len] = '\0';
    int admin = par__http_is_admin(x);
    par_run_t *r = par_run_get(x->loop->http->rt, id, who ? who->subject : NULL,
                               who ? who->tenant : NULL, admin);
    if (r == NULL) {
        REFUSE(x, PAR_E_RUN_NOT_FOUND, "no such run");
        return NULL;
    }
    if (admin)
        return r;
    /* the owner needs agents:invoke for the run's agent, as to start it */
    json_t *j = par_run_json(r);
    const char *agent = j ? json_string_value(json_object_get(j, "agent_id")) : NULL;
    char msg[400];
    int rc = agent ? par_auth_require_invoke(x->loop->http->opts.auth, who, agent, strlen(agent),
                                             x->rid, msg, sizeof(msg))
                   : PAR_E_NO_MEMORY;
    json_decref(j);
    if (rc == PAR_OK)
        return r;
    par_run_unref(r);
    if (rc == PAR_E_NO_MEMORY)
        REFUSE(x, PAR_E_NO_MEMORY, "out of memory");
    else
        refuse(x, rc, msg, strlen(msg));
    return NULL;
}

int par__http_on_run(par_http_exchange_t *x)
{
    if (par__http_forward_run(x, 0, 0))
        return 0;
    par_run_t *r = find_run(x);
    if (r == NULL)
        return 0;
    if (x->req->method.len == 6) { /* DELETE: the table let only it and GET/HEAD through */
        int rc = par_run_delete(r);
        par_run_unref(r);
        if (rc == PAR_E_RUN_ACTIVE)
            return REFUSE(x, rc,
                          "the run has not ended yet: cancel it first "
                          "(POST /runs/{run_id}/cancel), then delete it");
        if (rc != PAR_OK)
            return refuse(x, rc, par_strerror(rc), strlen(par_strerror(rc)));
        par__http_send_body(x->req, 204, "application/json", x->rid, NULL, 0);
        return 1;
    }
    json_t *doc = par_run_json(r);
    par_run_unref(r);
    par__http_send_json(x->req, doc ? 200 : 500, doc, x->rid);
    return 1;
}

int par__http_on_run_cancel(par_http_exchange_t *x)
{
    if (par__http_forward_run(x, 0, 0))
        return 0;
    par_run_t *r = find_run(x);
    if (r == NULL)
        return 0;
    int rc = par_run_cancel(r, "cancelled by its client (POST /runs/{run_id}/cancel)");
    if (rc != PAR_OK) {
        par_run_unref(r);
        if (rc == PAR_E_RUN_ENDED)
            return REFUSE(x, rc, "the run has already ended; there is nothing to cancel");
        return refuse(x, rc, par_strerror(rc), strlen(par_strerror(rc)));
    }
    json_t *doc = par_run_json(r);
    par_run_unref(r);
    par__http_send_json(x->req, doc ? 202 : 500, doc, x->rid);
    return 1;
}

/* GET /runs/{id}/wait: answers like invoke (plus run_id) once the run ended. */
int par__http_on_run_wait(par_http_exchange_t *x)
{
    if (par__http_forward_run(x, 0, 0))
        return 0;
    par_run_t *r = find_run(x);
    if (r == NULL)
        return 0;
    return par__http_wait_start(x, r);
}

/* ---- query strings ---------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes v[0..n) into the request's pool, NUL-terminated; NULL when
 * malformed or holding a NUL. */
static char *decode(h2o_req_t *req, const char *v, size_t n)
{
    char *out = h2o_mem_alloc_pool(&req->pool, n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '%') {
            *o++ = v[i] == '+' ? ' ' : v[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(v[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(v[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi | lo) == 0)
            return NULL;
        *o++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

typedef struct qparam {
    const char *name;
    char *value; /* decoded, or NULL when absent */
} qparam_t;

/* Fills the named parameters of the query string; 0, or -1 answered (a
 * parameter unknown, repeated or badly encoded). */
static int query(par_http_exchange_t *x, qparam_t *q, size_t nq)
{
    h2o_req_t *req = x->req;
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        size_t i = 0;
        while (i < nq && !h2o_memis(p, (size_t)(ke - p), q[i].name, strlen(q[i].name)))
            i++;
        char msg[200];
        if (e > p && i == nq) {
            int n = snprintf(msg, sizeof(msg), "unknown query parameter '%.*s'",
                             (int)((ke - p) > 40 ? 40 : (ke - p)), p);
            refuse(x, PAR_E_BAD_REQUEST, msg, (size_t)n);
            return -1;
        }
        if (e > p) {
            char *v = decode(req, eq ? eq + 1 : e, eq ? (size_t)(e - eq - 1) : 0);
            if (v == NULL || q[i].value) {
                int n = snprintf(msg, sizeof(msg), "query parameter '%s' is %s", q[i].name,
                                 q[i].value ? "repeated" : "badly percent-encoded");
                refuse(x, PAR_E_BAD_REQUEST, msg, (size_t)n);
                return -1;
            }
            q[i].value = v;
        }
        p = e + 1;
    }
    return 0;
}

/* A decimal event sequence number; 0, or -1 when malformed. */
static int parse_seq(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int par__http_on_run_stream(par_http_exchange_t *x)
{
    qparam_t q[1] = {{"after", NULL}};
    if (query(x, q, 1) != 0)
        return 0;
    uint64_t after = 0;
    h2o_iovec_t lei = par__http_header(x->req, H2O_STRLIT("last-event-id"));
    /* a reconnecting EventSource sends the header and keeps its URL: the header wins */
    if (lei.base ? parse_seq(lei.base, lei.len, &after) != 0
                 : q[0].value && parse_seq(q[0].value, strlen(q[0].value), &after) != 0)
        return REFUSE(x, PAR_E_BAD_EVENT_ID,
                      "the event id to resume after (Last-Event-ID or ?after=) must be a "
                      "decimal event sequence number such as 42");
    if (par__http_forward_run(x, 1, after))
        return 0;
    par_run_t *r = find_run(x);
    if (r == NULL)
        return 0;
    if (after > 0)
        par_runs_count_resume(x->loop->http->rt->runs);
    return par__http_sse_start(x, r, after);
}

int par__http_on_runs_list(par_http_exchange_t *x)
{
    qparam_t q[4] = {{"agent", NULL}, {"status", NULL}, {"limit", NULL}, {"cursor", NULL}};
    if (query(x, q, 4) != 0)
        return 0;
    for (size_t i = 0; i < 4; i++)
        if (q[i].value && q[i].value[0] == '\0') {
            char msg[64];
            int n = snprintf(msg, sizeof(msg), "query parameter '%s' is empty", q[i].name);
            return refuse(x, PAR_E_BAD_REQUEST, msg, (size_t)n);
        }
    par_identity_t *who = x->loop->who;
    par_runs_query_t rq = {who ? who->subject : NULL,
                           who ? who->tenant : NULL,
                           par__http_is_admin(x),
                           q[0].value,
                           -1,
                           0,
                           q[3].value};
    if (q[1].value && (rq.status = par_run_status_parse(q[1].value)) < 0)
        return REFUSE(x, PAR_E_BAD_REQUEST,
                      "query parameter 'status' must be one of queued, "
                      "running, succeeded, failed, cancelled, interrupted");
    uint64_t limit = 0;
    if (q[2].value &&
        (parse_seq(q[2].value, strlen(q[2].value), &limit) != 0 || limit < 1 || limit > 1000))
        return REFUSE(x, PAR_E_BAD_REQUEST,
                      "query parameter 'limit' must be an integer from 1 "
                      "to 1000");
    rq.limit = (unsigned)limit;
    json_t *doc = NULL;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_runs_list(x->loop->http->rt, &rq, &doc, &err);
    if (rc != PAR_OK) {
        refuse(x, rc, err.data ? err.data : par_strerror(rc),
               err.data ? err.len : strlen(par_strerror(rc)));
        par_buf_free(&err);
        return 0;
    }
    par_buf_free(&err);
    par__http_send_json(x->req, 200, doc, x->rid);
    return 1;
}
