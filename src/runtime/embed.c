/*
 * runtime/embed.c — the embedding API of par/par.h that is not the runtime
 * object itself nor a call (embed_call.c): configuration defaults, deploys
 * by path or URL, removals, the agent and package listings, metrics.
 *
 * Callers: host programs (any thread; deploys block their caller, so never an
 * event loop) and the CLI. It owns no state: everything it touches belongs
 * to the runtime (runtime.c) or to the caller.
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
