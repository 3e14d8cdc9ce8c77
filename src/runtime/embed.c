/*
 * runtime/embed.c — the embedding API of par/par.h that is not the runtime
 * object itself: configuration defaults, deploys by path or URL, par_call()
 * and the agent listing.
 *
 * Callers: host programs (any thread; par_call blocks its caller until the
 * call is answered, so never an event loop), the CLI, and par__call_sync()
 * for sibling calls of in-process agents. It owns no state: everything it
 * touches belongs to the runtime (runtime.c) or to the caller.
 */
#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "util/json.h"

/* ---- config ----------------------------------------------------------------- */

void par_config_init(par_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    par__config_defaults(cfg);
}

void par__config_defaults(par_config_t *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cfg->state_dir == NULL)
        cfg->state_dir = "./var";
    if (cfg->min_workers == 0)
        cfg->min_workers = 1;
    if (cfg->max_workers == 0)
        cfg->max_workers = cores > 0 ? (unsigned)cores : 1;
    if (cfg->worker_concurrency == 0)
        cfg->worker_concurrency = 8;
    if (cfg->default_timeout_ms == 0)
        cfg->default_timeout_ms = 30000;
    if (cfg->max_timeout_ms == 0)
        cfg->max_timeout_ms = 300000;
    if (cfg->max_input_bytes == 0)
        cfg->max_input_bytes = 1u << 20;
    if (cfg->max_output_bytes == 0)
        cfg->max_output_bytes = 16u << 20;
    if (cfg->max_queue == 0)
        cfg->max_queue = 100;
    if (cfg->drain_ms == 0)
        cfg->drain_ms = 30000;
    if (cfg->sandbox_max_files == 0)
        cfg->sandbox_max_files = 1024;
    if (cfg->sandbox_max_processes == 0)
        cfg->sandbox_max_processes = 1024;
    if (cfg->python == NULL || cfg->python[0] == '\0')
        cfg->python = "/usr/bin/python3";
    if (cfg->pip_timeout_ms == 0)
        cfg->pip_timeout_ms = 300000;
    if (cfg->scratch_mb == 0)
        cfg->scratch_mb = 1024;
    if (cfg->max_call_depth == 0)
        cfg->max_call_depth = 16;
    if (cfg->run_timeout_ms == 0)
        cfg->run_timeout_ms = 3600000;
    if (cfg->runs_per_subject == 0)
        cfg->runs_per_subject = 100;
    if (cfg->run_memory_events == 0)
        cfg->run_memory_events = 1000;
    if (cfg->run_retention_s == 0)
        cfg->run_retention_s = 86400;
    if (cfg->run_cancel_grace_ms == 0)
        cfg->run_cancel_grace_ms = 5000;
    if (cfg->max_event_bytes == 0)
        cfg->max_event_bytes = 1u << 20;
    if (cfg->run_drain_ms == 0)
        cfg->run_drain_ms = 3600000;
}

const char *par_pkg_state_name(int state)
{
    static const char *const names[] = {"loading", "active", "draining", "failed"};
    return state >= 0 && state <= PAR_PKG_FAILED ? names[state] : "unknown";
}

const char *par_version(void)
{
    return PAR_VERSION_STRING;
}

/* ---- deploys, calls, listings ------------------------------------------------------- */

int par_runtime_deploy_path(par_runtime_t *rt, const char *path, char **err)
{
    par_buf_t e;
    par_buf_init(&e, 0);
    /* the package's recorded source must not depend on the host's current
     * directory: a reload after a chdir reads the same file */
    char abs[PATH_MAX];
    if (path && path[0] != '/' && realpath(path, abs) != NULL)
        path = abs;
    int rc = par__deploy_path(rt, path, &e, NULL);
    if (err)
        *err = rc == PAR_OK ? NULL : par_buf_steal(&e, NULL);
    par_buf_free(&e);
    return rc;
}

int par_runtime_deploy_url(par_runtime_t *rt, const char *url, const char *sha256,
                           const char *signature_url, char **err)
{
    par_buf_t e;
    par_buf_init(&e, 0);
    par_deploy_req_t req = {
        .url = url, .sha256 = sha256, .signature_url = signature_url, .origin = "embed"};
    int rc = par__deploy(rt, &req, &e, NULL);
    if (err)
        *err = rc == PAR_OK ? NULL : par_buf_steal(&e, NULL);
    par_buf_free(&e);
    return rc;
}

typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
} sync_wait_t;

static void sync_done(par_call_t *c)
{
    sync_wait_t *w = c->data;
    pthread_mutex_lock(&w->lock);
    assert(!w->done); /* a call is finished once */
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int par__call_sync(par_runtime_t *rt, par_call_t *c)
{
    sync_wait_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    c->done = sync_done;
    c->data = &w;
    c->_inline = 1;
    int rc = par__call_start(rt, c);
    if (rc != PAR_OK) {
        c->status = rc;
        return rc;
    }
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    return c->status;
}

/* The call's output, or its error as {"error","message","request_id"[,"traceback"]}.
 * Out of memory: no data and status PAR_E_NO_MEMORY. */
static void result_from_call(par_call_t *c, par_result_t *out)
{
    out->status = c->status;
    if (c->status == PAR_OK) {
        out->data = par_buf_steal(&c->output, &out->len);
        return;
    }
    par_buf_t b;
    par_buf_init(&b, 0);
    int rc = par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":", par_status_name(c->status));
    if (rc == PAR_OK)
        rc = par_buf_append_json_str(&b, c->output.data ? c->output.data : "", c->output.len);
    if (rc == PAR_OK)
        rc = par_buf_appends(&b, ",\"request_id\":");
    if (rc == PAR_OK)
        rc = par_buf_append_json_str(&b, c->request_id, strlen(c->request_id));
    if (rc == PAR_OK && c->traceback) { /* an agent's own traceback: the embedder's to show */
        rc = par_buf_appends(&b, ",\"traceback\":");
        if (rc == PAR_OK)
            rc = par_buf_append_json_str(&b, c->traceback, strlen(c->traceback));
    }
    if (rc == PAR_OK)
        rc = par_buf_appends(&b, "}");
    if (rc != PAR_OK) {
        par_buf_free(&b);
        out->status = PAR_E_NO_MEMORY;
        return;
    }
    out->data = par_buf_steal(&b, &out->len);
}

int par_call(par_runtime_t *rt, const char *agent_id, const char *input, size_t len,
             par_result_t *out)
{
    memset(out, 0, sizeof(*out));
    par_call_t *c = par__call_new();
    if (c == NULL)
        return out->status = PAR_E_NO_MEMORY;
    size_t off;
    if (strlen(agent_id) > PAR_ID_MAX) {
        c->status = PAR_E_AGENT_NOT_FOUND;
        par_buf_appendf(&c->output, "no agent (id longer than %d bytes)", PAR_ID_MAX);
    } else if (input == NULL || par_json_scan(input, len, NULL, 0, &off) != 0) {
        c->status = PAR_E_INVALID_JSON;
        par_buf_appendf(&c->output, "input is not valid JSON (error at byte %zu)", input ? off : 0);
    } else {
        strcpy(c->agent_id, agent_id);
        c->input = input;
        c->input_len = len;
        c->allow_private = 1;
        par__call_sync(rt, c);
    }
    result_from_call(c, out);
    int st = out->status; /* the call's, or PAR_E_NO_MEMORY when its error could not be built */
    par__call_free(c);
    return st;
}

void par_result_free(par_result_t *r)
{
    if (r == NULL)
        return;
    free(r->data);
    r->data = NULL;
    r->len = 0;
}

int par_runtime_agents(par_runtime_t *rt, int include_private, par_agent_info_t **list,
                       size_t *count)
{
    par_table_t *t = par__table_get(rt);
    par_agent_info_t *a = calloc(t->count + 1, sizeof(*a));
    size_t n = 0;
    int rc = a ? PAR_OK : PAR_E_NO_MEMORY;
    for (size_t i = 0; rc == PAR_OK && i < t->count; i++) {
        const par_route_t *r = &t->routes[i];
        const par_export_t *e = &r->pv->manifest->exports[r->export_idx];
        if (strchr(r->id, '@') || (!e->is_public && !include_private))
            continue;
        par_agent_info_t *ai = &a[n++]; /* counted at once: par_agents_free frees what is set */
        ai->id = strdup(r->id);
        ai->package = strdup(r->pv->name);
        ai->version = strdup(r->pv->version);
        ai->description = strdup(e->description ? e->description : "");
        ai->is_public = e->is_public;
        if (!ai->id || !ai->package || !ai->version || !ai->description)
            rc = PAR_E_NO_MEMORY;
    }
    par__table_unref(t);
    if (rc != PAR_OK) {
        par_agents_free(a, n);
        return rc;
    }
    *list = a;
    *count = n;
    return PAR_OK;
}

void par_agents_free(par_agent_info_t *list, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free((char *)list[i].id);
        free((char *)list[i].package);
        free((char *)list[i].version);
        free((char *)list[i].description);
    }
    free(list);
}
