/*
 * runtime/runtime.c — runtime object, routing table, call dispatch. The
 * in-process executor is runtime/exec.c, the embedding API runtime/embed.c.
 *
 * Threads: par__call_start() and par_call() from any thread; deploys are
 * serialised by deploy_lock and block their caller. Routing-table readers
 * take a reference under `lock` (a pointer load and an increment), so a
 * swap never waits for readers.
 */
#include "runtime/runtime.h"

#include <dlfcn.h>
#include <jansson.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/id.h"
#include "loader/python.h"
#include "loader/supervisor.h"
#include "loader/wire.h"
#include "metering/meter.h"
#include "obs/log.h"
#include "obs/trace.h"
#include "registry/cache.h"
#include "runtime/converge.h"
#include "runtime/exec.h"
#include "runtime/exporters.h"
#include "runtime/loaders.h"
#include "runtime/metrics.h"
#include "runtime/native.h"
#include "runtime/runs.h"
#include "sandbox/sandbox.h"
#include "util/json.h"
#include "util/path.h"
#include "util/proc.h"

/* ---- package versions --------------------------------------------------------- */

void par__pkgver_ref(par_pkgver_t *pv)
{
    atomic_fetch_add(&pv->refs, 1);
}

void par__pkgver_unref(par_pkgver_t *pv)
{
    int old = atomic_fetch_sub(&pv->refs, 1);
    if (old <= 0) {
        fprintf(stderr, "%s:%d: package version refcount underflow\n", __FILE__, __LINE__);
        abort();
    }
    if (old != 1)
        return;
    if (pv->pool) {
        par_pool_stop(pv->pool, 0);
        par_pool_release(pv->pool);
    }
    par__native_unload(pv);
    if (pv->loader && pv->loader->release)
        pv->loader->release(pv->loader, pv);
    par__loader_cmd_free(pv->loader_cmd);
    if (pv->manifest)
        par_manifest_free(pv->manifest);
    free(pv->name);
    free(pv->version);
    free(pv->root);
    free(pv->python_site);
    free(pv->source);
    free(pv->origin);
    free(pv->signature_url);
    free(pv->last_error);
    free(pv->metrics);
    free(pv->prev_source);
    free(pv->prev_version);
    free(pv);
}

/* ---- routing table ------------------------------------------------------------ */

static void table_free(par_table_t *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->routes[i].id);
        par__pkgver_unref(t->routes[i].pv);
    }
    free(t->routes);
    free(t);
}

par_table_t *par__table_get(par_runtime_t *rt)
{
    pthread_mutex_lock(&rt->lock);
    par_table_t *t = rt->table;
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&rt->lock);
    return t;
}

void par__table_unref(par_table_t *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1)
        table_free(t);
}

static int route_cmp(const void *a, const void *b)
{
    return strcmp(((const par_route_t *)a)->id, ((const par_route_t *)b)->id);
}

const par_route_t *par__table_find(const par_table_t *t, const char *id, size_t len)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *r = t->routes[mid].id;
        int c = strncmp(r, id, len);
        if (c == 0 && r[len] != '\0')
            c = 1;
        if (c == 0)
            return &t->routes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int table_add(par_table_t *t, size_t *cap, par_pkgver_t *pv, size_t idx, char *id)
{
    if (id == NULL)
        return PAR_E_NO_MEMORY;
    if (t->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        par_route_t *n = realloc(t->routes, ncap * sizeof(*n));
        if (n == NULL) {
            free(id);
            return PAR_E_NO_MEMORY;
        }
        t->routes = n;
        *cap = ncap;
    }
    par__pkgver_ref(pv);
    t->routes[t->count++] = (par_route_t){id, pv, idx};
    return PAR_OK;
}

static char *join_id(const char *name, const char *version, const char *sub)
{
    char *s = NULL;
    int rc;
    if (version && sub[0])
        rc = asprintf(&s, "%s@%s/%s", name, version, sub);
    else if (version)
        rc = asprintf(&s, "%s@%s", name, version);
    else if (sub[0])
        rc = asprintf(&s, "%s/%s", name, sub);
    else
        rc = asprintf(&s, "%s", name);
    return rc < 0 ? NULL : s;
}

/* Rebuilds the table from the active versions and publishes it. rt->lock held. */
static int table_rebuild(par_runtime_t *rt)
{
    par_table_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PAR_E_NO_MEMORY;
    atomic_init(&t->refs, 1);
    size_t cap = 0;
    int rc = PAR_OK;
    for (size_t i = 0; i < rt->npkgs && rc == PAR_OK; i++) {
        par_pkgver_t *pv = rt->pkgs[i];
        int st = atomic_load(&pv->state);
        if (st != PAR_PKG_ACTIVE && st != PAR_PKG_DRAINING)
            continue;
        /* a draining version answers only when pinned: name@version */
        for (size_t e = 0; e < pv->manifest->export_count && rc == PAR_OK; e++) {
            const char *sub = pv->manifest->exports[e].name;
            if (st == PAR_PKG_ACTIVE)
                rc = table_add(t, &cap, pv, e, join_id(pv->name, NULL, sub));
            if (rc == PAR_OK)
                rc = table_add(t, &cap, pv, e, join_id(pv->name, pv->version, sub));
        }
    }
    if (rc != PAR_OK) {
        table_free(t);
        return rc;
    }
    if (t->count > 1)
        qsort(t->routes, t->count, sizeof(*t->routes), route_cmp);
    par_table_t *old = rt->table;
    rt->table = t;
    if (old)
        par__table_unref(old);
    return PAR_OK;
}

/* ---- in-process executor (runtime/exec.c) ----------------------------------------- */

void par__runtime_cork(int on)
{
    par_wire_cork(on); /* the one cork state: worker frames and the executor's calls */
}

void par__runtime_uncork(par_runtime_t *rt)
{
    par__exec_uncork(rt->exec);
    par_wire_uncork();
}

/* ---- calls ------------------------------------------------------------------------ */

static const par_export_t *find_export(const par_manifest_t *m, const char *name, size_t len,
                                       size_t *idx)
{
    for (size_t i = 0; i < m->export_count; i++) {
        if (strlen(m->exports[i].name) == len && memcmp(m->exports[i].name, name, len) == 0) {
            *idx = i;
            return &m->exports[i];
        }
    }
    return NULL;
}

/* A usage record id: 12 hex digits of the start time in ms, then 20 random
 * ones. Ids that grow with time keep the usage table's unique index growing
 * at its right edge, so a commit touches a few index pages instead of one
 * per record (random ids did). Unique across nodes and restarts like a
 * random one: 80 random bits per millisecond. */
static void record_id(char id[33], int64_t wall_ms)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t ms = (uint64_t)wall_ms;
    for (int i = 11; i >= 0; i--, ms >>= 4)
        id[i] = hex[ms & 15];
    par_trace_random_hex(id + 12, 20);
}

/* The call's absolute deadline: the caller's, its package's timeout (lowered
 * by the requested one) and the cap; a run (or a streamed call) has
 * limits.run_timeout_ms instead, uncapped, and UINT32_MAX means none (0). */
static void set_deadline(const par_runtime_t *rt, par_call_t *c, const par_pkgver_t *pv)
{
    int64_t now = par__now_ms();
    if (c->sink) { /* a run, or a streamed call (its caller's deadline) */
        if (c->deadline_ms)
            return;
        uint32_t t = rt->cfg.run_timeout_ms;
        if (c->timeout_ms && c->timeout_ms < t)
            t = c->timeout_ms;
        c->deadline_ms = t == UINT32_MAX ? 0 : now + t;
    } else {
        int64_t max_deadline = now + rt->cfg.max_timeout_ms;
        if (c->deadline_ms == 0) {
            uint32_t t = pv->timeout_ms;
            if (c->timeout_ms && c->timeout_ms < t)
                t = c->timeout_ms;
            c->deadline_ms = now + t;
        }
        if (c->deadline_ms > max_deadline)
            c->deadline_ms = max_deadline;
    }
}

int par__call_start(par_runtime_t *rt, par_call_t *c)
{
    size_t idlen = strlen(c->agent_id);
    par_agent_id_t id;
    par_pkgver_t *pv = NULL;
    size_t idx = 0;
    const par_export_t *ex = NULL;

    if (atomic_load(&rt->draining)) {
        par_buf_appends(&c->output, "the runtime is shutting down");
        return PAR_E_DRAINING;
    }
    if (par_agent_id_parse(c->agent_id, idlen, &id) != 0) {
        par_buf_appendf(&c->output, "no agent '%s' (not a valid agent id)", c->agent_id);
        return PAR_E_AGENT_NOT_FOUND;
    }
    int admit = par__call_admit(rt, c, &id); /* sub-agent calls: depth, input, callees */
    if (admit != PAR_OK)
        return admit;
    /* a sibling resolves inside the caller's own package version */
    par_pkgver_t *cp = c->caller_pv;
    if (cp && id.version == NULL) {
        if (id.sub == NULL && (ex = find_export(cp->manifest, id.name, id.name_len, &idx)))
            pv = cp;
        else if (strlen(cp->name) == id.name_len && memcmp(cp->name, id.name, id.name_len) == 0 &&
                 (ex = find_export(cp->manifest, id.sub ? id.sub : "", id.sub ? id.sub_len : 0,
                                   &idx)))
            pv = cp;
        if (pv)
            par__pkgver_ref(pv);
    }
    if (pv == NULL) {
        par_table_t *t = par__table_get(rt);
        const par_route_t *r = par__table_find(t, c->agent_id, idlen);
        if (r) {
            pv = r->pv;
            idx = r->export_idx;
            ex = &pv->manifest->exports[idx];
            par__pkgver_ref(pv);
        }
        par__table_unref(t);
    }
    int same_pkg = pv && cp && strcmp(cp->name, pv->name) == 0;
    if (pv == NULL || (!ex->is_public && !c->allow_private && !same_pkg)) {
        /* private sub-agents look exactly like unknown ones */
        if (pv)
            par__pkgver_unref(pv);
        par_buf_appendf(&c->output, "no agent '%s'", c->agent_id);
        return PAR_E_AGENT_NOT_FOUND;
    }
    c->pv = pv;
    c->_pv_ops = &par__pkgver_ops;
    c->_same_package = same_pkg;
    c->export_name = ex->name;
    c->_export_idx = idx;
    if (c->input_len > pv->max_input) {
        par_buf_appendf(&c->output, "input of %zu bytes exceeds the limit of %zu bytes for '%s'",
                        c->input_len, pv->max_input, c->agent_id);
        return PAR_E_TOO_LARGE;
    }
    set_deadline(rt, c, pv);
    c->started_ns = par__now_ns();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    c->wall_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    c->cpu_ns = -1;
    if (c->request_id[0] == '\0')
        par_trace_random_hex(c->request_id, 32);
    if (c->trace_id[0] == '\0')
        par_trace_random_hex(c->trace_id, PAR_TRACE_ID_LEN);
    if (c->span_id[0] == '\0')
        par_trace_random_hex(c->span_id, PAR_SPAN_ID_LEN);
    record_id(c->id, c->wall_ms);
    if (c->sink == &par__run_sink) {
        int rr = par__run_resolved(c); /* run.started, before any event can come */
        if (rr != PAR_OK)
            return rr;
    }
    c->_counted = 1;
    atomic_fetch_add(&rt->inflight, 1);
    if (pv->metrics)
        atomic_fetch_add(&pv->metrics[idx].in_flight, 1);
    if (pv->isolation == PAR_ISOLATION_IN_PROCESS) {
        if (c->_inline) {
            par__native_run(c);
            par__call_finish(c);
        } else {
            int rc = par__call_own_input(c);
            if (rc != PAR_OK) {
                c->_counted = 0;
                atomic_fetch_sub(&rt->inflight, 1);
                if (pv->metrics)
                    atomic_fetch_sub(&pv->metrics[idx].in_flight, 1);
                return rc;
            }
            par__exec_submit(rt->exec, c);
        }
        return PAR_OK;
    }
    int rc = par_pool_submit(pv->pool, c);
    if (rc != PAR_OK) {
        c->_counted = 0;
        atomic_fetch_sub(&rt->inflight, 1);
        if (pv->metrics)
            atomic_fetch_sub(&pv->metrics[idx].in_flight, 1);
    }
    return rc;
}

/* ---- runtime ------------------------------------------------------------------------ */

static char *find_worker(const char *configured)
{
    if (configured && *configured)
        return strdup(configured);
    const char *env = getenv("PAR_WORKER");
    if (env && *env)
        return strdup(env);
    char cand[PATH_MAX];
    if (par_exe_relative("par-worker", X_OK, cand, sizeof(cand)) == 0 ||
        par_install_relative("bin/par-worker", X_OK, cand, sizeof(cand)) == 0)
        return strdup(cand);
    return strdup(PAR_WORKER_BUILD_PATH);
}

/* A NULL-terminated copy of a NULL-terminated list of strings (NULL when out of memory). */
static char **strv_dup(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **c = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; c && i < n; i++)
        if ((c[i] = strdup(v[i])) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(c[j]);
            free(c);
            return NULL;
        }
    return c;
}

/* The runtime's own copies of every string of the configuration it keeps;
 * paths absolute once (workers change directory, nothing may join a relative
 * path later). PAR_E_NO_MEMORY when a copy fails. */
static int own_config(par_runtime_t *rt, const par_config_t *cfg_in)
{
    rt->cfg = *cfg_in;
    par__config_defaults(&rt->cfg);
    int ok = (rt->cfg.state_dir = rt->state_dir = par_path_absolute(NULL, rt->cfg.state_dir)) &&
             asprintf(&rt->cache_dir, "%s/cache/sha256", rt->state_dir) >= 0;
    if (!ok)
        rt->cache_dir = NULL;
    ok = ok && (rt->cfg.worker_path = rt->worker_path = find_worker(rt->cfg.worker_path));
    ok = ok && (rt->trusted = strv_dup(cfg_in->trusted));
    rt->cfg.trusted = (const char *const *)rt->trusted;
    ok = ok && (rt->env_allow = strv_dup(cfg_in->env_allow));
    rt->cfg.env_allow = (const char *const *)rt->env_allow;
#define PAR__OWN(field)                                                                            \
    do {                                                                                           \
        rt->field = cfg_in->field ? strdup(cfg_in->field) : NULL;                                  \
        ok = ok && (rt->field != NULL) == (cfg_in->field != NULL);                                 \
        rt->cfg.field = rt->field;                                                                 \
    } while (0)
    PAR__OWN(ca_file);
    PAR__OWN(s3_region);
    PAR__OWN(s3_endpoint);
    PAR__OWN(index_url);
    PAR__OWN(sandbox_user);
    PAR__OWN(sandbox_group);
    PAR__OWN(wheelhouse);
#undef PAR__OWN
    ok = ok && (rt->cfg.python = rt->python = strdup(rt->cfg.python)); /* defaulted above */
    ok = ok && (rt->cfg.python_shim = rt->python_shim = par__python_find_shim(cfg_in->python_shim));
    rt->cfg.trusted_keys = NULL; /* parsed into rt->trust; not kept */
    rt->cfg.trusted_key_count = 0;
    return ok ? PAR_OK : PAR_E_NO_MEMORY;
}

/* Workers of a root runtime run as an unprivileged user (docs/sandbox.md). */
static int resolve_worker_ids(par_runtime_t *rt)
{
    rt->worker_uid = rt->worker_gid = -1;
    if (geteuid() != 0)
        return PAR_OK;
    par_buf_t uerr;
    par_buf_init(&uerr, 0);
    uid_t uid;
    gid_t gid;
    const char *user = rt->sandbox_user ? rt->sandbox_user : "nobody";
    int rc = par_sandbox_resolve_ids(user, rt->sandbox_group, &uid, &gid, &uerr);
    if (rc != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "%.*s", (int)uerr.len, uerr.data ? uerr.data : "");
    par_buf_free(&uerr);
    if (rc != PAR_OK)
        return PAR_E_INVALID_ARGUMENT;
    if (uid == 0)
        par_log_msg(PAR_LOG_WARN, "sandbox.user is root: workers keep every privilege of "
                                  "the runtime");
    else
        rt->worker_uid = (long)uid, rt->worker_gid = (long)gid;
    return PAR_OK;
}

static int load_trust(par_runtime_t *rt, const par_config_t *cfg_in)
{
    par_buf_t terr;
    par_buf_init(&terr, 0);
    int rc = par_trust_init(&rt->trust, cfg_in->trusted_keys, cfg_in->trusted_key_count,
                            !cfg_in->allow_unsigned, &terr);
    if (rc != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "cannot load the trusted keys: %.*s", (int)terr.len,
                    terr.data ? terr.data : "");
    par_buf_free(&terr);
    if (rc != PAR_OK)
        return PAR_E_INVALID_ARGUMENT;
    /* said by the library, so that every host that allows it (par serve's
     * embedded default, an embedding program) says it */
    if (rt->cfg.allow_unsigned)
        par_log_msg(PAR_LOG_WARN, "UNSIGNED PACKAGES ARE ACCEPTED: signatures are checked when "
                                  "present, but a package without one deploys with a warning "
                                  "(trust.require_signatures: true, or allow_unsigned = 0 when "
                                  "embedding, refuses them)");
    if (rt->trust.nkeys == 0 && !rt->cfg.allow_unsigned)
        par_log_msg(PAR_LOG_WARN, "no trusted keys are configured and unsigned packages are "
                                  "refused: no package can be deployed");
    return PAR_OK;
}

/* The threads: supervisor, in-process executor, metrics, registry index. */
static int start_services(par_runtime_t *rt)
{
    int rc = par__workers_new(rt);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (rc == PAR_OK)
        rc = par__exec_new(cores > 0 ? (size_t)cores * 2 : 2, &rt->exec);
    if (rc == PAR_OK)
        rc = par__runtime_metrics_init(rt);
    if (rc == PAR_OK && rt->index_url && *rt->index_url)
        rc = par__index_start(rt, rt->index_url, rt->cfg.index_poll_ms, &rt->index);
    return rc;
}

int par_runtime_new(const par_config_t *cfg_in, par_runtime_t **out)
{
    par_runtime_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return PAR_E_NO_MEMORY;
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->deploy_lock, NULL);
    rt->started_ms = par__now_ms();
    rt->data = cfg_in->data;
    int rc = own_config(rt, cfg_in);
    if (rc == PAR_OK && par_mkdir_p(rt->cache_dir, 0755) != 0) {
        par_log_msg(PAR_LOG_ERROR, "cannot create the cache directory %s/cache/sha256: %s",
                    rt->state_dir, strerror(errno));
        rc = PAR_E_IO;
    }
    if (rc == PAR_OK)
        rc = resolve_worker_ids(rt);
    if (rc == PAR_OK)
        rc = load_trust(rt, cfg_in);
    if (rc == PAR_OK) {
        par_cache_sweep(rt->cache_dir);
        rc = table_rebuild(rt);
    }
    if (rc == PAR_OK)
        rc = start_services(rt);
    if (rc == PAR_OK) {
        par_buf_t err;
        par_buf_init(&err, 0);
        rc = par_runs_open(rt, &rt->runs, &err);
        if (rc != PAR_OK)
            par_log_msg(PAR_LOG_ERROR, "cannot open the runs: %.*s", (int)err.len,
                        err.data ? err.data : par_strerror(rc));
        par_buf_free(&err);
    }
    if (rc != PAR_OK) {
        par_runtime_destroy(rt);
        return rc;
    }
    *out = rt;
    return PAR_OK;
}

void par__runtime_reload_limits(par_runtime_t *rt, const par_config_t *cfg)
{
    pthread_mutex_lock(&rt->deploy_lock);
    rt->cfg.default_timeout_ms = cfg->default_timeout_ms;
    rt->cfg.max_input_bytes = cfg->max_input_bytes;
    rt->cfg.default_concurrency = cfg->default_concurrency;
    rt->cfg.max_queue = cfg->max_queue;
    rt->cfg.default_memory_mb = cfg->default_memory_mb;
    rt->cfg.worker_cpu_seconds = cfg->worker_cpu_seconds;
    rt->cfg.drain_ms = cfg->drain_ms;
    rt->cfg.run_timeout_ms = cfg->run_timeout_ms;
    rt->cfg.runs_per_subject = cfg->runs_per_subject;
    rt->cfg.run_cancel_grace_ms = cfg->run_cancel_grace_ms;
    rt->cfg.run_drain_ms = cfg->run_drain_ms;
    par__config_defaults(&rt->cfg);
    pthread_mutex_unlock(&rt->deploy_lock);
}

void par_runtime_destroy(par_runtime_t *rt)
{
    if (rt == NULL)
        return;
    par__index_stop(rt->index); /* no deploy may start after this */
    rt->index = NULL;
    atomic_store(&rt->draining, 1);
    par_runs_interrupt_all(rt->runs, "the runtime is shutting down");
    pthread_mutex_lock(&rt->lock);
    par_table_t *t = rt->table;
    rt->table = NULL;
    par_pkgver_t **pkgs = rt->pkgs;
    size_t n = rt->npkgs;
    rt->pkgs = NULL;
    rt->npkgs = 0;
    pthread_mutex_unlock(&rt->lock);
    if (t)
        par__table_unref(t);
    for (size_t i = 0; i < n; i++)
        par__pkgver_unref(pkgs[i]);
    free(pkgs);
    par__exec_free(rt->exec);
    par__runtime_metrics_free(rt);
    par_super_free(rt->super);
    /* every call has finished: the runs write what is left and close */
    par_runs_close(rt->runs);
    rt->runs = NULL;
    /* after the workers are gone: every call has finished and queued its record */
    par_meter_destroy(rt->meter);
    par__loaders_free(rt);
    par__exporters_free(rt);
    for (size_t i = 0; rt->trusted && rt->trusted[i]; i++)
        free(rt->trusted[i]);
    free(rt->trusted);
    par_trust_free(&rt->trust);
    free(rt->ca_file), free(rt->s3_region), free(rt->s3_endpoint), free(rt->index_url);
    free(rt->sandbox_user), free(rt->sandbox_group);
    free(rt->state_dir);
    free(rt->cache_dir);
    free(rt->worker_path);
    free(rt->python), free(rt->python_shim), free(rt->wheelhouse);
    for (size_t i = 0; rt->env_allow && rt->env_allow[i]; i++)
        free(rt->env_allow[i]);
    free(rt->env_allow);
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->deploy_lock);
    free(rt);
}

/* Adds a version: replaces any version of the same name (which drains through
 * its references) and any failure record of the same name. */
void par__runtime_publish(par_runtime_t *rt, par_pkgver_t *pv)
{
    pthread_mutex_lock(&rt->lock);
    pv->seq = ++rt->seq;
    size_t w = 0;
    par_pkgver_t *drop[64];
    size_t ndrop = 0;
    for (size_t i = 0; i < rt->npkgs; i++) {
        par_pkgver_t *o = rt->pkgs[i];
        int same_name = strcmp(o->name, pv->name) == 0;
        int replace = same_name && (atomic_load(&pv->state) == PAR_PKG_ACTIVE ||
                                    atomic_load(&o->state) == PAR_PKG_FAILED);
        int same_version = strcmp(o->version, pv->version) == 0;
        if (replace && atomic_load(&o->state) == PAR_PKG_ACTIVE && !same_version && o->sha256[0] &&
            pv->prev_source == NULL && !atomic_load(&o->rolled_back)) {
            /* what an automatic rollback would bring back */
            pv->prev_source = strdup(o->source ? o->source : "");
            pv->prev_version = strdup(o->version);
            memcpy(pv->prev_sha256, o->sha256, sizeof(pv->prev_sha256));
        }
        if (replace && atomic_load(&o->state) == PAR_PKG_ACTIVE && !same_version && o->manifest) {
            /* replaced: it keeps answering name@version until it is idle or its
             * drain deadline passes (par__runtime_tick) */
            atomic_store(&o->state, PAR_PKG_DRAINING);
            o->drain_until_ms = par__now_ms() + rt->cfg.drain_ms;
            o->run_drain_until_ms = par__now_ms() + rt->cfg.run_drain_ms;
            atomic_fetch_add(&rt->ndraining, 1);
            rt->pkgs[w++] = o;
        } else if (replace && ndrop < 64) {
            if (atomic_load(&o->state) == PAR_PKG_ACTIVE)
                atomic_store(&o->state, PAR_PKG_DRAINING);
            drop[ndrop++] = o;
        } else if (same_name && atomic_load(&o->state) == PAR_PKG_DRAINING &&
                   atomic_load(&pv->state) == PAR_PKG_ACTIVE && same_version && ndrop < 64) {
            atomic_fetch_sub(&rt->ndraining, 1); /* the same version is back: one copy only */
            drop[ndrop++] = o;
        } else {
            rt->pkgs[w++] = o;
        }
    }
    rt->npkgs = w;
    par_pkgver_t **n = realloc(rt->pkgs, (rt->npkgs + 1) * sizeof(*n));
    if (n) {
        rt->pkgs = n;
        rt->pkgs[rt->npkgs++] = pv;
    } else {
        par__pkgver_unref(pv);
    }
    table_rebuild(rt);
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; i < ndrop; i++)
        par__pkgver_unref(drop[i]);
    if (atomic_load(&pv->state) == PAR_PKG_ACTIVE)
        par__runtime_persist(rt);
}

typedef struct rollback_job {
    par_runtime_t *rt;
    char *dir, *source, *sha256, *name, *from, *to;
} rollback_job_t;

static void *rollback_thread(void *arg)
{
    rollback_job_t *j = arg;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par__deploy_restored(j->rt, j->dir, j->source, j->sha256, &err);
    if (rc == PAR_OK)
        par_log_msg(PAR_LOG_WARN, "rolled back %s from %s to %s", j->name, j->from, j->to);
    else
        par_log_msg(PAR_LOG_ERROR, "rollback of %s to %s failed: %.*s", j->name, j->to,
                    (int)err.len, err.data ? err.data : "");
    par_buf_free(&err);
    free(j->dir), free(j->source), free(j->sha256), free(j->name), free(j->from), free(j->to);
    free(j);
    return NULL;
}

void par__rollback_observe(par_pkgver_t *pv, int status)
{
    par_runtime_t *rt = pv->rt;
    unsigned n = rt->cfg.rollback_after;
    if (n == 0 || pv->prev_source == NULL || atomic_load(&pv->state) != PAR_PKG_ACTIVE)
        return;
    unsigned seen = atomic_fetch_add(&pv->probe_total, 1) + 1;
    if (seen > n)
        return;
    unsigned errors = atomic_load(&pv->probe_errors);
    if (par_status_http(status) >= 500)
        errors = atomic_fetch_add(&pv->probe_errors, 1) + 1;
    if (seen != n || (unsigned long)errors * 100 < (unsigned long)rt->cfg.rollback_error_pct * n)
        return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pv->rolled_back, &expected, 1))
        return;
    par_log_msg(PAR_LOG_WARN, "%s@%s failed %u of its first %u calls: rolling back to %s", pv->name,
                pv->version, errors, n, pv->prev_version);
    rollback_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return;
    j->rt = rt;
    if (asprintf(&j->dir, "%s/%s", rt->cache_dir, pv->prev_sha256) < 0)
        j->dir = NULL;
    j->source = strdup(pv->prev_source);
    j->sha256 = strdup(pv->prev_sha256);
    j->name = strdup(pv->name);
    j->from = strdup(pv->version);
    j->to = strdup(pv->prev_version);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (j->dir == NULL || pthread_create(&t, &attr, rollback_thread, j) != 0) {
        par_log_msg(PAR_LOG_ERROR, "cannot start the rollback of %s", pv->name);
        free(j->dir), free(j->source), free(j->sha256), free(j->name), free(j->from), free(j->to);
        free(j);
    }
    pthread_attr_destroy(&attr);
}

static long version_inflight(const par_pkgver_t *pv)
{
    long n = 0;
    for (size_t e = 0; pv->metrics && e < pv->manifest->export_count; e++)
        n += atomic_load(&pv->metrics[e].in_flight);
    return n;
}

void par__runtime_tick(par_runtime_t *rt, int64_t now)
{
    if (atomic_load(&rt->ndraining) == 0)
        return;
    par_pkgver_t *drop[64], *stop_runs[64];
    int late[64];
    size_t ndrop = 0, nstop = 0, w = 0;
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->npkgs; i++) {
        par_pkgver_t *o = rt->pkgs[i];
        long busy = atomic_load(&o->state) == PAR_PKG_DRAINING ? version_inflight(o) : -1;
        int64_t until = o->drain_until_ms; /* with runs in flight: reload.run_drain_ms */
        int runs = busy > 0 && par_runs_on_version(rt->runs, o);
        if (runs && now >= o->run_drain_until_ms && nstop < 64) {
            /* its runs end now; its unary calls keep reload.drain_ms */
            par__pkgver_ref(o);
            stop_runs[nstop++] = o;
        } else if (runs && o->run_drain_until_ms > until) {
            until = o->run_drain_until_ms;
        }
        if (busy >= 0 && (busy == 0 || now >= until) && ndrop < 64) {
            late[ndrop] = busy > 0;
            drop[ndrop++] = o;
            atomic_fetch_sub(&rt->ndraining, 1);
        } else {
            rt->pkgs[w++] = o;
        }
    }
    rt->npkgs = w;
    if (ndrop)
        table_rebuild(rt);
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; i < nstop; i++) {
        par_runs_interrupt_version(rt->runs, stop_runs[i],
                                   "its version's run drain deadline passed");
        par__pkgver_unref(stop_runs[i]);
    }
    for (size_t i = 0; i < ndrop; i++) {
        par_logline_t l;
        if (par_log_begin(&l, late[i] ? PAR_LOG_WARN : PAR_LOG_INFO,
                          late[i] ? "drain deadline passed: unloading with calls in flight"
                                  : "drained version unloaded")) {
            par_log_str(&l, "package", drop[i]->name);
            par_log_str(&l, "version", drop[i]->version);
            par_log_end(&l);
        }
        if (late[i])
            par_runs_interrupt_version(rt->runs, drop[i], "its version's drain deadline passed");
        if (late[i] && drop[i]->pool)
            par_pool_stop(drop[i]->pool, 1);
        par__pkgver_unref(drop[i]);
    }
}

int par__runtime_remove(par_runtime_t *rt, const char *name, const char *version)
{
    par_pkgver_t *drop[256];
    size_t ndrop = 0, w = 0;
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->npkgs; i++) {
        par_pkgver_t *o = rt->pkgs[i];
        if (strcmp(o->name, name) == 0 && (version == NULL || strcmp(o->version, version) == 0) &&
            ndrop < 256) {
            if (atomic_load(&o->state) == PAR_PKG_DRAINING)
                atomic_fetch_sub(&rt->ndraining, 1);
            if (atomic_load(&o->state) == PAR_PKG_ACTIVE)
                atomic_store(&o->state, PAR_PKG_DRAINING);
            drop[ndrop++] = o;
        } else {
            rt->pkgs[w++] = o;
        }
    }
    rt->npkgs = w;
    if (ndrop)
        table_rebuild(rt);
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; i < ndrop; i++)
        par__pkgver_unref(drop[i]);
    if (ndrop)
        par__runtime_persist(rt);
    return ndrop ? PAR_OK : PAR_E_NOT_FOUND;
}

par_pkgver_t *par__runtime_find(par_runtime_t *rt, const char *name)
{
    par_pkgver_t *found = NULL;
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->npkgs; i++)
        if (strcmp(rt->pkgs[i]->name, name) == 0)
            found = rt->pkgs[i];
    if (found)
        par__pkgver_ref(found);
    pthread_mutex_unlock(&rt->lock);
    return found;
}

int par__packages_snapshot(par_runtime_t *rt, par_pkgver_t ***out, size_t *count)
{
    pthread_mutex_lock(&rt->lock);
    par_pkgver_t **a = calloc(rt->npkgs + 1, sizeof(*a));
    if (a == NULL) {
        pthread_mutex_unlock(&rt->lock);
        return PAR_E_NO_MEMORY;
    }
    for (size_t i = 0; i < rt->npkgs; i++) {
        a[i] = rt->pkgs[i];
        par__pkgver_ref(a[i]);
    }
    *count = rt->npkgs;
    pthread_mutex_unlock(&rt->lock);
    *out = a;
    return PAR_OK;
}

int par__runtime_ready(par_runtime_t *rt, par_buf_t *why)
{
    if (atomic_load(&rt->draining) || atomic_load(&rt->shutting_down)) {
        par_buf_appends(why, "the runtime is shutting down");
        return 0;
    }
    if (atomic_load(&rt->booting)) {
        par_buf_appends(why, "the initial packages are still loading");
        return 0;
    }
    if (rt->index && !par__index_settled(rt->index)) {
        par_buf_appends(why, "the registry index has not been polled yet");
        return 0;
    }
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(rt, &pk, &n) != PAR_OK)
        return 0;
    int ready = 1;
    for (size_t i = 0; i < n; i++) {
        int st = atomic_load(&pk[i]->state);
        if (st == PAR_PKG_LOADING) {
            par_buf_appendf(why, "%s@%s is loading; ", pk[i]->name, pk[i]->version);
            ready = 0;
        } else if (st == PAR_PKG_ACTIVE && pk[i]->pool && !par_pool_live(pk[i]->pool)) {
            par_buf_appendf(why, "%s@%s has no live worker; ", pk[i]->name, pk[i]->version);
            ready = 0;
        }
        par__pkgver_unref(pk[i]);
    }
    free(pk);
    return ready;
}
