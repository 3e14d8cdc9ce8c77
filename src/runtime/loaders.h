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

#include "runtime/runtime.h"

/* Starts rt->super. */
int par__workers_new(par_runtime_t *rt);

/* Starts the worker pool of `pv` (sets pv->pool): see par_pool_start. Deploy
 * lock held. */
int par__workers_start(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);

/* Checks a Python package version and builds the virtual environment of its
 * requirements (pv->python_site): see par_python_prepare. Deploy thread. */
int par__python_prepare(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);

#endif
