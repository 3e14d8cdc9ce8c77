/*
 * loader/spawn.h — starting a worker process: what a pool's workers are
 * started with (the spec the runtime fills), par-worker's command line and
 * scrubbed environment, the per-worker scratch directory, and posix_spawn.
 *
 * Called by the supervisor (loader/supervisor.c): the command line and
 * environment once per pool (par_pool_start, a deploy thread), the rest per
 * worker on whichever thread runs the supervisor's I/O. Must never run
 * package code in the runtime's address space or block on a worker.
 */
#ifndef PAR_LOADER_SPAWN_H
#define PAR_LOADER_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

#include "pkg/manifest.h"
#include "util/argv.h"
#include "util/buf.h"

/* What the runtime tells the supervisor about a package version when its pool
 * starts. Borrowed for the duration of par_pool_start only. */
typedef struct par_pool_spec {
    const char *name, *version;
    const char *root; /* the directory the package runs from */
    const par_manifest_t *manifest;
    const char *python_site;      /* a Python package's venv site-packages, or NULL */
    const char *worker_path;      /* par-worker */
    const char *python;           /* the interpreter (python.interpreter) */
    const char *python_shim;      /* worker/python/par_worker.py */
    const char *const *env_allow; /* `${NAME}` the operator allows in `environment` */
    long uid, gid;                /* workers switch to these; -1 when not root */
    unsigned min_workers, max_workers;
    unsigned concurrency;              /* calls per worker before another starts */
    unsigned limit;                    /* concurrent calls of the package, 0 = none */
    unsigned queue_max;                /* calls waiting for a slot before over_capacity */
    unsigned memory_mb;                /* the workers' address-space limit, 0 = none */
    unsigned cpu_seconds;              /* the workers' CPU time limit, 0 = none */
    unsigned scratch_mb;               /* limits.scratch_mb, 0 = none */
    unsigned max_files, max_processes; /* sandbox limits, 0 = par-worker's default */
    size_t max_input;                  /* the largest frame its workers accept */
    size_t max_output;                 /* the largest frame they may send */
    size_t max_event;                  /* the largest event's JSON (runs.max_event_kb) */
    /* A plugin loader's worker program (include/par/plugin.h), or NULL: par-worker
     * execs it (--exec) with the standard worker arguments appended; `exec_env`
     * is added to the environment, `exec_ro` made readable in the sandbox.
     * exec_own_memory: the program limits its memory itself (no RLIMIT_AS). */
    const char *const *exec_argv, *const *exec_env, *const *exec_ro;
    int exec_own_memory;
} par_pool_spec_t;

/* par-worker's command line for the pool (without --scratch, added per
 * worker). `memory_mb` is set to the limit its workers really get (none for
 * native workers in sanitizer builds). PAR_E_NO_MEMORY on failure. */
int par_spawn_argv(const par_pool_spec_t *spec, unsigned *memory_mb, char ***out);
/* The workers' environment: a fixed base, then the package's own (.env, then
 * agent.yaml `environment`); warnings logged. PAR_E_NO_MEMORY on failure. */
int par_spawn_envp(const par_pool_spec_t *spec, char ***out);

/* Creates the private scratch directory <base>/<name>@<version>.<wid> of a new
 * worker, owned by `uid` (when >= 0), mode 0700. Returns its path (owned) or NULL. */
char *par_spawn_scratch(const char *base, const char *name, const char *version, uint64_t wid,
                        long uid, long gid);
/* Removes a tree a worker wrote, without following links (one warning when
 * it cannot be removed completely). */
void par_spawn_remove_tree(const char *path);

/* Starts argv[0] with --scratch `scratch` after the program name, its own
 * process group, stdin /dev/null, stdout/stderr into `*out_fd` and the
 * protocol socket (`*sock`) on fd 3; both returned non-blocking. Returns 0,
 * the errno of a failed spawn, or -1 when the channel could not be made (logged). */
int par_spawn_process(char *const *argv, char *const *envp, const char *scratch, pid_t *pid,
                      int *sock, int *out_fd);
/* Kills a worker and every process it started (its process group). */
void par_spawn_kill(pid_t pid);

#endif
