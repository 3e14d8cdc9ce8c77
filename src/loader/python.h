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

#include <stdint.h>

#include "pkg/manifest.h"
#include "util/buf.h"

/* The runtime's Python settings, and what it learnt of its interpreter. */
typedef struct par_python {
    const char *python;     /* the interpreter (python.interpreter) */
    const char *shim;       /* worker/python/par_worker.py */
    const char *wheelhouse; /* where requirements come from, or NULL */
    const char *state_dir;  /* venvs are kept under <state_dir>/venvs */
    uint32_t pip_timeout_ms;
    int major, minor; /* the interpreter's version: 0 until probed, then kept */
} par_python_t;

/* The package version being prepared. */
typedef struct par_python_pkg {
    const char *name, *version, *root;
    const par_manifest_t *manifest;
} par_python_pkg_t;

/*
 * Checks a Python package version and prepares what it needs: *site is its
 * virtual environment's site-packages when it has requirements (owned, NULL
 * otherwise). Probes the interpreter's version into `py` once. Deploy thread
 * only (deploys are serialised). Returns PAR_OK; PAR_E_INCOMPATIBLE with one
 * line per reason in `err`; PAR_E_DEPS_UNAVAILABLE naming the requirement
 * that could not be satisfied; or PAR_E_NO_MEMORY.
 */
int par_python_prepare(par_python_t *py, const par_python_pkg_t *pkg, char **site, par_buf_t *err);

/* The worker script: configured, $PAR_PYTHON_SHIM, beside the executable, or
 * the source tree's. Returns a malloc'ed path. */
char *par__python_find_shim(const char *configured);

#endif
