/*
 * runtime/workers.h — the runtime's side of the worker supervisor
 * (loader/supervisor.h): the hooks it gives the supervisor and the spec of a
 * package version's pool, filled from the version and the runtime's limits.
 *
 * The supervisor never sees a package version or the runtime: everything it
 * needs passes through here. Deploy threads (par__workers_start); the
 * runtime's constructor (par__workers_new).
 */
#ifndef PAR_RUNTIME_WORKERS_H
#define PAR_RUNTIME_WORKERS_H

#include "runtime/runtime.h"

/* Starts rt->super. */
int par__workers_new(par_runtime_t *rt);

/* Starts the worker pool of `pv` (sets pv->pool): see par_pool_start. Deploy
 * lock held. */
int par__workers_start(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);

#endif
