/*
 * runtime/loaders.c — see loaders.h: the loader registry with the built-in
 * native and Python loaders as its first entries, the pool spec of a
 * version, and the Python settings.
 */
#include "runtime/loaders.h"

#include <stdlib.h>
#include <string.h>

#include "loader/python.h"
#include "loader/supervisor.h"
#include "pkg/compat.h"
#include "util/suggest.h"

/* ---- the registry ------------------------------------------------------------------ */

static int native_serves(const par_loader_impl_t *l, const char *runtime)
{
    (void)l;
    return strcmp(runtime, "native") == 0;
}

static int python_serves(const par_loader_impl_t *l, const char *runtime)
{
    (void)l;
    return strncmp(runtime, "python3.", 8) == 0 && runtime[8] >= '0' && runtime[8] <= '9' &&
           strspn(runtime + 8, "0123456789") == strlen(runtime + 8);
}

static int native_check(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv,
                        par_buf_t *err)
{
    (void)l, (void)rt;
    return par_pkg_compat_native(pv->root, pv->manifest, err);
}

static int python_check(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv,
                        par_buf_t *err)
{
    (void)l, (void)rt;
    return par_pkg_compat_python(pv->root, pv->manifest, err);
}

static int python_prepare(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv,
                          par_buf_t *err)
{
    (void)l;
    return par__python_prepare(rt, pv, err);
}

static const char *const native_values[] = {"native", NULL};
static const char *const python_values[] = {"python3.9",  "python3.10", "python3.11", "python3.12",
                                            "python3.13", "python3.14", NULL};
static const par_loader_impl_t native_loader = {.name = "native",
                                                .runtimes = "native",
                                                .values = native_values,
                                                .serves = native_serves,
                                                .check = native_check,
                                                .in_process_ok = 1};
static const par_loader_impl_t python_loader = {.name = "python",
                                                .runtimes = "python3.N",
                                                .values = python_values,
                                                .serves = python_serves,
                                                .check = python_check,
                                                .prepare = python_prepare};

/* The registry: the built-in loaders, then those added (rt->loaders). */
static const par_loader_impl_t *const builtin[] = {&native_loader, &python_loader};
#define NBUILTIN (sizeof(builtin) / sizeof(*builtin))

static size_t count(const par_runtime_t *rt)
{
    return NBUILTIN + rt->nloaders;
}

static const par_loader_impl_t *at(const par_runtime_t *rt, size_t i)
{
    return i < NBUILTIN ? builtin[i] : rt->loaders[i - NBUILTIN];
}

const par_loader_impl_t *par__loaders_find(par_runtime_t *rt, const char *runtime)
{
    for (size_t i = 0; i < count(rt); i++)
        if (at(rt, i)->serves(at(rt, i), runtime))
            return at(rt, i);
    return NULL;
}

int par__loaders_add(par_runtime_t *rt, const par_loader_impl_t *l, const char *const *runtimes,
                     par_buf_t *err)
{
    for (size_t i = 0; runtimes && runtimes[i]; i++) {
        const par_loader_impl_t *o = par__loaders_find(rt, runtimes[i]);
        if (o) {
            par_buf_appendf(err, "runtime %s is served by the loader '%s' already", runtimes[i],
                            o->name);
            return PAR_E_CONFLICT;
        }
    }
    const par_loader_impl_t **v = realloc(rt->loaders, (rt->nloaders + 1) * sizeof(*v));
    if (v == NULL)
        return PAR_E_NO_MEMORY;
    v[rt->nloaders++] = l;
    rt->loaders = v;
    return PAR_OK;
}

void par__loaders_names(par_runtime_t *rt, par_buf_t *out)
{
    for (size_t i = 0; i < count(rt); i++)
        par_buf_appendf(out, "%s%s", i ? ", " : "", at(rt, i)->runtimes);
}

void par__loaders_refuse(par_runtime_t *rt, const char *runtime, par_buf_t *err)
{
    const char *all[64];
    size_t n = 0;
    for (size_t i = 0; i < count(rt); i++)
        for (size_t k = 0; at(rt, i)->values && at(rt, i)->values[k] && n < 63; k++)
            all[n++] = at(rt, i)->values[k];
    all[n] = NULL;
    const char *near = par_suggest(runtime, all);
    par_buf_appendf(err, "runtime: no loader for runtime %s%s%s%s (this runtime serves ", runtime,
                    near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
    par__loaders_names(rt, err);
    par_buf_appends(err, ")\n");
}

void par__loaders_free(par_runtime_t *rt)
{
    free(rt->loaders);
    rt->loaders = NULL;
    rt->nloaders = 0;
}

void par__loader_cmd_free(par_loader_cmd_out_t *c)
{
    if (c == NULL)
        return;
    par_strvec_free_array(c->argv);
    par_strvec_free_array(c->env);
    par_strvec_free_array(c->ro);
    free(c);
}

/* ---- pools ------------------------------------------------------------------------- */

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
    if (pv->loader_cmd) { /* a plugin loader's program */
        spec.exec_argv = (const char *const *)pv->loader_cmd->argv;
        spec.exec_env = (const char *const *)pv->loader_cmd->env;
        spec.exec_ro = (const char *const *)pv->loader_cmd->ro;
        spec.exec_own_memory = pv->loader_cmd->own_memory_limit;
    }
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
