/*
 * loader/python.h — Python agents (`runtime: python3.N`).
 *
 * Python packages always run in worker processes of PAR's Python worker
 * (worker/python/par_worker.py), which speaks the worker protocol. At deploy
 * this module checks what the package needs (interpreter version, entrypoint
 * modules) and, when it declares third-party requirements, builds a virtual
 * environment for them from the operator's wheelhouse — never from an index.
 */
#ifndef PAR_LOADER_PYTHON_H
#define PAR_LOADER_PYTHON_H

#include "runtime/runtime.h"
#include "util/buf.h"

/*
 * Checks a Python package version and prepares what it needs: sets
 * pv->python_site to its virtual environment's site-packages when it has
 * requirements (NULL otherwise). Deploy
 * thread only (deploys are serialised). Returns PAR_OK; PAR_E_INCOMPATIBLE
 * with one line per reason in `err`; or PAR_E_DEPS_UNAVAILABLE naming the
 * requirement that could not be satisfied.
 */
int par__python_prepare(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err);

/* The worker script: configured, $PAR_PYTHON_SHIM, beside the executable, or
 * the source tree's. Returns a malloc'ed path. */
char *par__python_find_shim(const char *configured);

#endif
