/*
 * http/admin.c — everything but invocations: the agent listings, /metrics
 * and /runtime/... (health, readiness, info, usage, packages, deploy, reload,
 * remove), and the admin queue that runs the slow ones.
 *
 * Listings and status answers are built on the loop thread from the
 * runtime's snapshots. Deploys, reloads and usage reports block (fetching,
 * the metering database), so they become jobs on the admin queue
 * (http/workq.h): ADMIN_THREADS threads serving at most ADMIN_QUEUE waiting
 * jobs, started with the server and joined at its stop. A job's answer comes
 * back to the loop that took the request through its admin receiver; a
 * guard in the request's pool tells whether the client is still there. A
 * full queue is answered at once: 503 over_capacity with Retry-After.
 *
 * Loop threads, apart from the job functions (queue threads), which must
 * not touch the request.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "http/listener.h"
#include "metering/meter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "runtime/converge.h"
#include "runtime/exporters.h"
#include "runtime/io.h"
#include "runtime/metrics.h"
#include "runtime/runs.h"

/* Deploys run one at a time in the runtime anyway (deploy_lock); the
 * second thread keeps a usage report from waiting behind a slow fetch. */
#define ADMIN_THREADS 2
#define ADMIN_QUEUE 64

/* ---- listings ----------------------------------------------------------------- */

static json_t *agent_json(const par_route_t *r)
{
    const par_manifest_t *m = r->pv->manifest;
    const par_export_t *e = &m->exports[r->export_idx];
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "id", r->id, "package", r->pv->name,
                     "version", r->pv->version, "description",
                     e->description[0] ? e->description : m->description, "display_name",
                     e->name[0] ? e->name : m->display_name, "public", e->is_public);
}

int par__http_on_agents(par_http_exchange_t *x)
{
    par_table_t *t = par__table_get(x->loop->http->rt);
    json_t *a = json_array();
    for (size_t i = 0; a && i < t->count; i++) {
        const par_route_t *r = &t->routes[i];
        if (strchr(r->id, '@') || !r->pv->manifest->exports[r->export_idx].is_public)
            continue;
        /* a caller sees the agents it may invoke */
        if (x->loop->who && !par_perms_allow_invoke(&x->loop->who->perms, r->id, strlen(r->id)))
            continue;
        json_array_append_new(a, agent_json(r));
    }
    par__table_unref(t);
    par__http_send_json(x->req, 200, a ? json_pack("{s:o}", "agents", a) : NULL, x->rid);
    return 1;
}

int par__http_on_agent(par_http_exchange_t *x)
{
    const char *id = x->m.var;
    size_t idlen = x->m.var_len;
    par_table_t *t = par__table_get(x->loop->http->rt);
    const par_route_t *r = par__table_find(t, id, idlen);
    if (r && r->pv->manifest->exports[r->export_idx].is_public) {
        json_t *j = agent_json(r);
        par__table_unref(t);
        par__http_send_json(x->req, 200, j, x->rid);
        return 1;
    }
    par__table_unref(t);
    char msg[PAR_ID_MAX + 32];
    int n = snprintf(msg, sizeof(msg), "no agent '%.*s'", (int)(idlen > 200 ? 200 : idlen), id);
    par__http_send_error(x->req, PAR_E_AGENT_NOT_FOUND, msg, (size_t)n, x->rid);
    return 1;
}

/* GET /runtime/packages (name NULL) and GET /runtime/packages/{name}. */
static int answer_packages(par_http_exchange_t *x, const char *name, size_t nlen)
{
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(x->loop->http->rt, &pk, &n) != PAR_OK) {
        par__http_send_error(x->req, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), x->rid);
        return 1;
    }
    json_t *a = json_array();
    json_t *one = NULL;
    for (size_t i = 0; i < n; i++) {
        if (name == NULL) {
            json_array_append_new(a, par__package_json(pk[i]));
        } else if (strlen(pk[i]->name) == nlen && memcmp(pk[i]->name, name, nlen) == 0) {
            json_decref(one);
            one = par__package_json(pk[i]);
        }
        par__pkgver_unref(pk[i]);
    }
    free(pk);
    if (name == NULL) {
        par__http_send_json(x->req, 200, a ? json_pack("{s:o}", "packages", a) : NULL, x->rid);
        return 1;
    }
    json_decref(a);
    if (one) {
        par__http_send_json(x->req, 200, one, x->rid);
        return 1;
    }
    char msg[160];
    int m = snprintf(msg, sizeof(msg), "no package '%.*s'", (int)(nlen > 100 ? 100 : nlen), name);
    par__http_send_error(x->req, PAR_E_NOT_FOUND, msg, (size_t)m, x->rid);
    return 1;
}

int par__http_on_packages(par_http_exchange_t *x)
{
    return answer_packages(x, NULL, 0);
}

int par__http_on_package(par_http_exchange_t *x)
{
    return answer_packages(x, x->m.var, x->m.var_len);
}

/* ---- status ------------------------------------------------------------------ */

int par__http_on_metrics(par_http_exchange_t *x)
{
    par_runtime_t *rt = x->loop->http->rt;
    const par_exporter_impl_t *e = par__exporters_scrape(rt); /* the "prometheus" entry */
    par_buf_t m;
    par_buf_init(&m, 0);
    e->scrape(e, rt, &m);
    char *body = h2o_mem_alloc_pool(&x->req->pool, m.len + 1);
    memcpy(body, m.data ? m.data : "", m.len);
    par__http_send_body(x->req, 200, e->content_type, x->rid, body, m.len);
    par_buf_free(&m);
    return 1;
}

int par__http_on_health(par_http_exchange_t *x)
{
    /* runs in flight: a platform avoids scaling in a busy node */
    unsigned runs = par_runs_in_flight(x->loop->http->rt->runs);
    par__http_send_json(x->req, 200,
                        json_pack("{s:s,s:I,s:b}", "status", "ok", "runs_in_flight",
                                  (json_int_t)runs, "busy", runs > 0),
                        x->rid);
    return 1;
}

int par__http_on_ready(par_http_exchange_t *x)
{
    par_http_t *h = x->loop->http;
    par_buf_t why;
    par_buf_init(&why, 4096);
    int auth_ok = par_auth_ready(h->opts.auth, &why);
    if (!auth_ok)
        par_buf_appends(&why, "; ");
    if (par__runtime_ready(h->rt, &why) && auth_ok)
        par__http_send_json(x->req, 200, json_pack("{s:s}", "status", "ready"), x->rid);
    else
        par__http_send_error(x->req, PAR_E_NOT_READY, why.data ? why.data : "", why.len, x->rid);
    par_buf_free(&why);
    return 1;
}

int par__http_on_info(par_http_exchange_t *x)
{
    par_http_t *h = x->loop->http;
    par_runtime_t *rt = h->rt;
    par_pkgver_t **pk;
    size_t n = 0, active = 0, failed = 0;
    if (par__packages_snapshot(rt, &pk, &n) == PAR_OK) {
        for (size_t i = 0; i < n; i++) {
            int st = atomic_load(&pk[i]->state);
            active += st == PAR_PKG_ACTIVE;
            failed += st == PAR_PKG_FAILED;
            par__pkgver_unref(pk[i]);
        }
        free(pk);
    }
    par_table_t *t = par__table_get(rt);
    size_t agents = 0;
    for (size_t i = 0; i < t->count; i++)
        agents += strchr(t->routes[i].id, '@') == NULL &&
                  t->routes[i].pv->manifest->exports[t->routes[i].export_idx].is_public;
    par__table_unref(t);
    json_t *o = json_pack("{s:s, s:s, s:f, s:{s:i, s:i, s:i}, s:i, s:{s:i, s:s, s:s}, s:s, s:i}",
                          "name", "par", "version", par_version(), "uptime_s",
                          (double)(par__now_ms() - rt->started_ms) / 1000.0, "packages", "total",
                          (int)n, "active", (int)active, "failed", (int)failed, "agents",
                          (int)agents, "build", "agent_abi", PAR_AGENT_ABI, "compiler", __VERSION__,
                          "date", __DATE__, "listen", h->address, "http_threads", (int)h->nloops);
    json_object_set_new(o, "registry", par__runtime_registry_status(rt));
    json_object_set_new(o, "trust",
                        json_pack("{s:b, s:I}", "require_signatures", !rt->cfg.allow_unsigned,
                                  "trusted_keys", (json_int_t)rt->trust.nkeys));
    json_object_set_new(o, "auth", par_auth_describe(h->opts.auth));
    json_t *ex = json_array();
    for (size_t i = 0; ex && i < par__exporters_count(rt); i++)
        json_array_append_new(ex, json_string(par__exporters_at(rt, i)->name));
    json_object_set_new(o, "telemetry_exporters", ex);
    json_t *metering = par_meter_describe(rt->meter); /* NULL: metering off */
    if (metering)
        json_object_set_new(o, "metering", metering);
    json_object_set_new(o, "http",
                        json_pack("{s:b, s:b, s:b, s:I, s:I, s:I, s:I}", "http2", h->opts.http2,
                                  "reuse_port", h->opts.reuse_port, "tls", h->opts.tls_cert != NULL,
                                  "max_in_flight", (json_int_t)h->opts.max_in_flight, "in_flight",
                                  (json_int_t)atomic_load(&h->pending), "cancelled",
                                  (json_int_t)atomic_load(&h->cancelled),
                                  "shed_at_descriptor_limit", (json_int_t)par__http_shed_count()));
    par__http_send_json(x->req, 200, o, x->rid);
    return 1;
}

int par__http_on_no_route(par_http_exchange_t *x)
{
    par__http_send_error(x->req, PAR_E_NOT_FOUND, H2O_STRLIT("no such route"), x->rid);
    return 1;
}

/* ---- the admin queue ---------------------------------------------------------- */

typedef struct admin_job {
    loop_t *loop;
    h2o_req_t *req; /* NULL once the client is gone */
    struct admin_job **guard;
    h2o_multithread_message_t msg;
    const char *label; /* the route's metrics label */
    char *path, *url, *sha256, *signature_url;
    int ok_status; /* 201 for a deploy, 200 for a reload or a report */
    int rc;
    par_buf_t err;
    par_pkgver_t *pv;
    char rid[PAR_REQUEST_ID_MAX + 1];
    int64_t t0;
    par_identity_t *who; /* referenced: who asked, for the access log */
    json_t *doc;         /* a report's answer (GET /runtime/usage), or NULL */
    int64_t from_ms, to_ms;
    char group_by[16];
} admin_job_t;

static void job_free(void *arg)
{
    admin_job_t *j = arg;
    if (j->pv)
        par__pkgver_unref(j->pv);
    json_decref(j->doc);
    par_identity_unref(j->who);
    par_buf_free(&j->err);
    free(j->path), free(j->url), free(j->sha256), free(j->signature_url);
    free(j);
}

/* A job for the exchange (ok_status on success), or NULL out of memory. */
static admin_job_t *job_new(par_http_exchange_t *x, int ok_status)
{
    admin_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->loop = x->loop;
    j->req = x->req;
    j->label = x->m.route->label;
    j->ok_status = ok_status;
    j->t0 = x->t0;
    if ((j->who = x->loop->who) != NULL)
        par_identity_ref(j->who);
    snprintf(j->rid, sizeof(j->rid), "%s", x->rid);
    par_buf_init(&j->err, 64 * 1024);
    return j;
}

static void job_guard_dispose(void *p)
{
    admin_job_t **slot = p;
    if (*slot) {
        (*slot)->req = NULL;
        (*slot)->guard = NULL;
    }
}

/* Queue thread: the job is done, its answer goes back to its loop. */
static void job_finished(admin_job_t *j)
{
    h2o_multithread_send_message(&j->loop->admin_receiver, &j->msg);
}

static void run_deploy(void *arg)
{
    admin_job_t *j = arg;
    par_deploy_req_t dr = {.path = j->path,
                           .url = j->url,
                           .sha256 = j->sha256,
                           .signature_url = j->signature_url,
                           .origin = "api"};
    j->rc = par__deploy(j->loop->http->rt, &dr, &j->err, &j->pv);
    job_finished(j);
}

static void run_usage(void *arg)
{
    admin_job_t *j = arg;
    j->rc = par_meter_report(j->loop->http->rt->meter, j->from_ms, j->to_ms,
                             j->group_by[0] ? j->group_by : NULL, &j->doc, &j->err);
    job_finished(j);
}

/* Queues `j` (consumed); answers at once when the queue is full. Returns
 * what a handler returns: 0, the answer is logged here or when it comes. */
static int submit(par_http_exchange_t *x, admin_job_t *j, par_workq_fn *run)
{
    par_http_t *h = x->loop->http;
    if (j == NULL) {
        par__http_send_error(x->req, PAR_E_NO_MEMORY, H2O_STRLIT("out of memory"), x->rid);
        return 1;
    }
    if (par__workq_push(h->admin, run, j) != PAR_OK) {
        char msg[200];
        int n = snprintf(msg, sizeof(msg),
                         "the runtime has %d deploys, reloads and usage reports waiting already; "
                         "retry shortly",
                         ADMIN_QUEUE);
        par__http_send_error(x->req, PAR_E_SERVER_BUSY, msg, (size_t)n, x->rid);
        par__http_access_log(h, x->req, j->label, 503, x->rid, NULL, x->t0,
                             par_status_name(PAR_E_SERVER_BUSY));
        job_free(j);
        return 0;
    }
    /* the answer is read on this thread, after this handler returns */
    admin_job_t **slot = h2o_mem_alloc_shared(&x->req->pool, sizeof(*slot), job_guard_dispose);
    *slot = j;
    j->guard = slot;
    return 0;
}

void par__http_on_admin_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        admin_job_t *j = H2O_STRUCT_FROM_MEMBER(admin_job_t, msg, m);
        if (j->req) {
            if (j->rc == PAR_OK) {
                par__http_send_json(j->req, j->ok_status,
                                    j->doc ? j->doc : par__package_json(j->pv), j->rid);
                j->doc = NULL;
            } else {
                size_t len = j->err.len;
                while (len && j->err.data[len - 1] == '\n')
                    len--;
                par__http_send_error(j->req, j->rc, j->err.data ? j->err.data : "", len, j->rid);
            }
            j->loop->who = j->who;
            par__http_access_log(j->loop->http, j->req, j->label, j->req->res.status, j->rid, NULL,
                                 j->t0, j->rc == PAR_OK ? NULL : par_status_name(j->rc));
            j->loop->who = NULL;
            if (j->guard)
                *j->guard = NULL;
        }
        job_free(j);
    }
}

int par__http_admin_start(par_http_t *h)
{
    return par__workq_new(ADMIN_THREADS, ADMIN_QUEUE, &h->admin);
}

void par__http_admin_stop(par_http_t *h)
{
    /* before the loops stop: running jobs finish and their answers can still
     * be sent; jobs that did not start are dropped */
    par__workq_free(h->admin, job_free);
    h->admin = NULL;
}

/* ---- management: deploy, reload, remove, usage -------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Deploys `source` (a URL when it has a scheme, else a host path). */
static int start_deploy(par_http_exchange_t *x, const char *source, const char *sha256,
                        const char *signature_url, int ok_status)
{
    admin_job_t *j = job_new(x, ok_status);
    if (j) {
        char **to = strstr(source, "://") ? &j->url : &j->path;
        *to = strdup(source);
        j->sha256 = dup_or_null(sha256);
        j->signature_url = dup_or_null(signature_url);
        if (*to == NULL || (sha256 && !j->sha256) || (signature_url && !j->signature_url)) {
            job_free(j);
            j = NULL;
        }
    }
    return submit(x, j, run_deploy);
}

/* The value of query parameter `name` (not decoded: the values taken here are
 * numbers and names), or a NULL base. */
static h2o_iovec_t query_param(h2o_req_t *req, const char *name)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    const char *p = req->path.base + req->query_at + 1;
    const char *end = req->path.base + req->path.len;
    size_t n = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > n && memcmp(p, name, n) == 0 && p[n] == '=')
            return h2o_iovec_init(p + n + 1, (size_t)(stop - p) - n - 1);
        p = stop + 1;
    }
    return h2o_iovec_init(NULL, 0);
}

/* A query parameter holding Unix milliseconds; -1 when malformed. */
static int64_t query_ms(h2o_req_t *req, const char *name, int64_t dflt)
{
    h2o_iovec_t v = query_param(req, name);
    if (v.base == NULL)
        return dflt;
    char b[24];
    if (v.len == 0 || v.len >= sizeof(b))
        return -1;
    memcpy(b, v.base, v.len);
    b[v.len] = '\0';
    char *e;
    long long n = strtoll(b, &e, 10);
    return *e || n < 0 ? -1 : (int64_t)n;
}

/* GET /runtime/usage?from=<ms>&to=<ms>&group_by=agent|subject|tenant|package */
int par__http_on_usage(par_http_exchange_t *x)
{
    par_http_t *h = x->loop->http;
    h2o_req_t *req = x->req;
    if (h->rt->meter == NULL) {
        par__http_send_error(req, PAR_E_NOT_FOUND,
                             H2O_STRLIT("usage metering is off (set metering.enabled: true)"),
                             x->rid);
        par__http_access_log(h, req, x->m.route->label, 404, x->rid, NULL, x->t0, "not_found");
        return 0;
    }
    int64_t from = query_ms(req, "from", 0), to = query_ms(req, "to", INT64_MAX);
    h2o_iovec_t g = query_param(req, "group_by");
    static const char *const groups[] = {"agent", "subject", "tenant", "package"};
    int gok = g.base == NULL;
    for (size_t i = 0; !gok && i < sizeof(groups) / sizeof(*groups); i++)
        gok = h2o_memis(g.base, g.len, groups[i], strlen(groups[i]));
    if (from < 0 || to < 0 || !gok) {
        const char *msg = !gok ? "group_by must be agent, subject, tenant or package"
                               : "from and to are Unix times in milliseconds";
        par__http_send_error(req, PAR_E_BAD_REQUEST, msg, strlen(msg), x->rid);
        par__http_access_log(h, req, x->m.route->label, 400, x->rid, NULL, x->t0, "bad_request");
        return 0;
    }
    /* the database is read off the event loop, like a deploy */
    admin_job_t *j = job_new(x, 200);
    if (j) {
        j->from_ms = from;
        j->to_ms = to;
        if (g.base)
            snprintf(j->group_by, sizeof(j->group_by), "%.*s", (int)g.len, g.base);
    }
    return submit(x, j, run_usage);
}

/* The deploy request's body: 0 and its strings, or -1 answered. */
static int deploy_body(par_http_exchange_t *x, json_t *doc, const char **source)
{
    h2o_req_t *req = x->req;
    json_t *jpath = json_object_get(doc, "path"), *jurl = json_object_get(doc, "url");
    json_t *jsha = json_object_get(doc, "sha256"), *jsig = json_object_get(doc, "signature_url");
    const char *path = json_string_value(jpath), *url = json_string_value(jurl);
    if (doc == NULL || !json_is_object(doc)) {
        par__http_send_error(req, PAR_E_INVALID_JSON,
                             H2O_STRLIT("the body must be a JSON object such as {\"url\": "
                                        "\"s3://bucket/pkg-1.0.0.apkg\"} or {\"path\": "
                                        "\"/srv/pkg.apkg\"}"),
                             x->rid);
    } else if ((jpath && !path) || (jurl && !url) || (jsha && !json_is_string(jsha)) ||
               (jsig && !json_is_string(jsig))) {
        par__http_send_error(
            req, PAR_E_BAD_REQUEST,
            H2O_STRLIT("\"url\", \"path\", \"sha256\" and \"signature_url\" are strings"), x->rid);
    } else if ((path == NULL || *path == '\0') == (url == NULL || *url == '\0')) {
        par__http_send_error(req, PAR_E_BAD_REQUEST,
                             H2O_STRLIT("exactly one of \"url\" (https:// or s3://) and \"path\" "
                                        "(a file on this host) is required"),
                             x->rid);
    } else if (path && strstr(path, "://")) {
        par__http_send_error(req, PAR_E_BAD_REQUEST,
                             H2O_STRLIT("\"path\" is a path on this host; pass a URL as \"url\""),
                             x->rid);
    } else if (path && path[0] != '/') {
        /* the server's directory is not the client's, and a record whose source
         * depends on it would reload something else after a restart elsewhere */
        par__http_send_error(req, PAR_E_BAD_REQUEST,
                             H2O_STRLIT("\"path\" must be absolute (it names a file on the "
                                        "server's host; `par deploy` sends the absolute path of "
                                        "its argument)"),
                             x->rid);
    } else {
        *source = path ? path : url;
        return 0;
    }
    return -1;
}

/* POST /runtime/packages {"url" | "path", "sha256"?, "signature_url"?} */
int par__http_on_deploy(par_http_exchange_t *x)
{
    h2o_req_t *req = x->req;
    json_error_t jerr;
    json_t *doc = req->entity.base ? json_loadb(req->entity.base, req->entity.len, 0, &jerr) : NULL;
    const char *source;
    int r = 1; /* answered: the caller logs it */
    if (deploy_body(x, doc, &source) == 0)
        r = start_deploy(x, source, json_string_value(json_object_get(doc, "sha256")),
                         json_string_value(json_object_get(doc, "signature_url")), 201);
    json_decref(doc);
    return r;
}

/* The longest "{name}[@version]" or "{name}/reload" taken. */
#define SPEC_MAX 159

/* POST /runtime/packages/{name}/reload */
int par__http_on_reload(par_http_exchange_t *x)
{
    char spec[SPEC_MAX + 1];
    if (x->m.var_len + 7 > SPEC_MAX) {
        par__http_send_error(x->req, PAR_E_NOT_FOUND, H2O_STRLIT("no such package"), x->rid);
        return 1;
    }
    memcpy(spec, x->m.var, x->m.var_len);
    spec[x->m.var_len] = '\0';
    par_pkgver_t *pv = par__runtime_find(x->loop->http->rt, spec);
    if (pv == NULL || pv->source == NULL) {
        if (pv)
            par__pkgver_unref(pv);
        char msg[200];
        int n = snprintf(msg, sizeof(msg), "no package '%.100s'", spec);
        par__http_send_error(x->req, PAR_E_NOT_FOUND, msg, (size_t)n, x->rid);
        return 1;
    }
    int r = start_deploy(x, pv->source, NULL, pv->signature_url, 200);
    par__pkgver_unref(pv);
    return r;
}

/* DELETE /runtime/packages/{name}[@version] */
int par__http_on_remove(par_http_exchange_t *x)
{
    char spec[SPEC_MAX + 1];
    if (x->m.var_len > SPEC_MAX) {
        par__http_send_error(x->req, PAR_E_NOT_FOUND, H2O_STRLIT("no such package"), x->rid);
        return 1;
    }
    memcpy(spec, x->m.var, x->m.var_len);
    spec[x->m.var_len] = '\0';
    char *at = strchr(spec, '@');
    if (at)
        *at++ = '\0';
    if (par__runtime_remove(x->loop->http->rt, spec, at) != PAR_OK) {
        char msg[200];
        int n = snprintf(msg, sizeof(msg), "no package '%.100s%s%.40s'", spec, at ? "@" : "",
                         at ? at : "");
        par__http_send_error(x->req, PAR_E_NOT_FOUND, msg, (size_t)n, x->rid);
        return 1;
    }
    par__http_send_json(x->req, 200,
                        json_pack("{s:s, s:s}", "removed", spec, "version", at ? at : "*"), x->rid);
    return 1;
}
