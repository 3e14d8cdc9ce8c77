/*
 * runtime/loaders.c — see workers.h.
 */
#include "runtime/loaders.h"

#include <stdlib.h>

#include "loader/python.h"
#include "loader/supervisor.h"

static int hook_call_start(void *owner, par_call_t *c)
{
    return par__call_start(owner, c);
}

static void hook_tick(void *owner, int64_t now_ms)
{
    par__runtime_tick(owner, now_ms);
}

int par__workers_new(par_runtime_t *rt)
{
    par_super_hooks_t hooks = {
        .owner = rt,
        .call_start = hook_call_start,
        .call_finish = par__call_finish,
        .tick = hook_tick,
    };
    return par_super_new(&hooks, rt->state_dir, &rt->super);
}

int par__workers_start(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    const par_manifest_t *m = pv->manifest;
    const par_config_t *cfg = &rt->cfg;
    par_pool_spec_t spec = {
        .name = pv->name,
        .version = pv->version,
        .root = pv->root,
        .manifest = m,
        .python_site = pv->python_site,
        .worker_path = rt->worker_path,
        .python = cfg->python,
        .python_shim = rt->python_shim,
        .env_allow = cfg->env_allow,
        .uid = rt->worker_uid,
        .gid = rt->worker_gid,
        .min_workers = cfg->min_workers,
        .max_workers = cfg->max_workers,
        .concurrency = cfg->worker_concurrency,
        .limit = m->limits.concurrency ? m->limits.concurrency : cfg->default_concurrency,
        .queue_max = cfg->max_queue,
        .memory_mb = m->limits.memory_mb ? m->limits.memory_mb : cfg->default_memory_mb,
        .cpu_seconds = cfg->worker_cpu_seconds,
        .scratch_mb = cfg->scratch_mb,
        .max_files = cfg->sandbox_max_files,
        .max_processes = cfg->sandbox_max_processes,
        .max_input = pv->max_input,
        .max_output = cfg->max_output_bytes,
        .max_event = cfg->max_event_bytes,
    };
    return par_pool_start(rt->super, &spec, &pv->pool, err);
}

int par__python_prepare(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    par_python_t py = {
        .python = rt->cfg.python,
        .shim = rt->python_shim,
        .wheelhouse = rt->cfg.wheelhouse,
        .state_dir = rt->state_dir,
        .pip_timeout_ms = rt->cfg.pip_timeout_ms,
        .major = rt->py_major,
        .minor = rt->py_minor,
    };
    par_python_pkg_t pkg = {pv->name, pv->version, pv->root, pv->manifest};
    char *site = NULL;
    int rc = par_python_prepare(&py, &pkg, &site, err);
    rt->py_major = py.major; /* probed once per runtime */
    rt->py_minor = py.minor;
    free(pv->python_site);
    pv->python_site = site;
    return rc;
}
