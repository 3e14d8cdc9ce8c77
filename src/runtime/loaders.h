/*
 * runtime/loaders.h — the runtime's side of the loaders: the hooks it gives
 * the worker supervisor (loader/supervisor.h), the spec of a package
 * version's pool filled from the version and the runtime's limits, and the
 * Python settings a Python package is prepared with (loader/python.h).
 *
 * The loaders never see a package version or the runtime: everything they
 * need passes through here. Deploy threads (par__workers_start,
 * par__python_prepare); the runtime's constructor (par__workers_new).
 */
#ifndef PAR_RUNTIME_LOADERS_H
#define PAR_RUNTIME_LOADERS_H

#include "loader/spawn.h"
#include "runtime/runtime.h"

/*
 * The loader registry. A loader turns packages of some manifest `runtime`
 * values into running code. The built-in native and Python loaders are its
 * first entries (static, always there); a plugin's loader (plugin/) is added
 * after them. Deploy looks the loader up once per version (par__deploy_compat
 * sets pv->loader) and never again: calls never touch the registry.
 * Registration before the first deploy; lookups on deploy threads.
 */
typedef struct par_loader_impl par_loader_impl_t;
struct par_loader_impl {
    const char *name;          /* "native", "python", "plugin:node" */
    const char *runtimes;      /* for messages: "python3.N" */
    const char *const *values; /* runtime values it serves, for "did you mean" (NULL-terminated) */
    /* 1 when it runs packages of this manifest `runtime` */
    int (*serves)(const par_loader_impl_t *l, const char *runtime);
    /* Checks what is particular to its runtime: one line per problem in
     * `err`, returns their number. May be NULL. */
    int (*check)(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);
    /* After a clean check: prepares the version (dependencies). PAR_OK or a
     * status with `err`. May be NULL. */
    int (*prepare)(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);
    /* Worker packages: sets the program par-worker execs in `spec` (exec_*),
     * owned by pv->loader_cmd. NULL for the built-in ones (spawn.c knows
     * them). PAR_OK or a status with `err`. */
    int (*command)(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);
    /* The version is freed (any thread; must not block). May be NULL. */
    void (*release)(const par_loader_impl_t *l, par_pkgver_t *pv);
    int in_process_ok; /* trusted packages of it may run in the runtime's process */
    void *data;
};

/* What a loader's `command` gives: par-worker's --exec program. */
typedef struct par_loader_cmd_out {
    char **argv, **env, **ro; /* NULL-terminated, owned */
    int own_memory_limit;
} par_loader_cmd_out_t;

/* Adds a loader after those registered (not owned). PAR_E_CONFLICT with
 * `err` naming the runtime value when one it serves is served already. */
int par__loaders_add(par_runtime_t *rt, const par_loader_impl_t *l, const char *const *runtimes,
                     par_buf_t *err);
/* The loader of a manifest `runtime`, or NULL. */
const par_loader_impl_t *par__loaders_find(par_runtime_t *rt, const char *runtime);
/* "native, python3.N, node18" for messages. */
void par__loaders_names(par_runtime_t *rt, par_buf_t *out);
/* "runtime: no loader for runtime X (did you mean Y?) (this runtime serves …)\n" */
void par__loaders_refuse(par_runtime_t *rt, const char *runtime, par_buf_t *err);
void par__loaders_free(par_runtime_t *rt);
void par__loader_cmd_free(par_loader_cmd_out_t *c);

/* Starts rt->super. */
int par__workers_new(par_runtime_t *rt);

/* Starts the worker pool of `pv` (sets pv->pool): see par_pool_start. Deploy
 * lock held. */
int par__workers_start(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);

/* Checks a Python package version and builds the virtual environment of its
 * requirements (pv->python_site): see par_python_prepare. Deploy thread. */
int par__python_prepare(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);

#endif
