/*
 * sandbox/sandbox.h — the sandbox a worker process puts itself in before any
 * package code runs (docs/sandbox.md).
 *
 * Owns the policy of each layer, applied in this order: resource limits, a
 * new network namespace (no network capability), the uid/gid drop (when
 * started as root), PR_SET_NO_NEW_PRIVS, Landlock (package read-only, scratch
 * read-write, system libraries read-only, nothing else), and last a seccomp
 * filter. Each layer that the kernel cannot give is reported as degraded; a
 * layer that fails in a way that would leave the worker more privileged than
 * asked (the uid drop, a limit) is an error and the worker must exit.
 *
 * Called by par-worker (src/worker/main.c) on its main thread, once, before
 * it creates any thread or loads agent code; the unit tests call it in forked
 * children. The runtime itself never calls par_sandbox_apply().
 */
#ifndef PAR_SANDBOX_SANDBOX_H
#define PAR_SANDBOX_SANDBOX_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"

/* The read-only allow-list every worker gets, besides its package. Paths that
 * do not exist on the machine are skipped. */
extern const char *const par_sandbox_system_ro[];

typedef struct par_sandbox_opts {
    const char *root;          /* package directory: read + execute (required) */
    const char *scratch;       /* private writable directory, or NULL */
    const char *const *ro;     /* more read + execute paths (--ro), may be NULL */
    size_t ro_count;           /* entries of `ro` */
    const char *exec_path;     /* program the worker execs (--exec), or NULL */
    int network;               /* the package has the `network` capability */
    int subprocess;            /* the package has the `subprocess` capability */
    unsigned long memory_mb;   /* RLIMIT_AS, 0 = none */
    unsigned long cpu_seconds; /* RLIMIT_CPU, 0 = none */
    unsigned long max_files;   /* RLIMIT_NOFILE, 0 = leave as is */
    unsigned long max_procs;   /* RLIMIT_NPROC (per uid: only with the uid drop), 0 = none */
    unsigned long file_mb;     /* RLIMIT_FSIZE: the largest file it may write (the scratch
                                  quota; the quota itself is accounted by the runtime), 0 = none */
    long uid, gid;             /* drop to these when running as root; -1 = keep */
} par_sandbox_opts_t;

/*
 * Applies every layer to the calling process (single-threaded). On PAR_OK,
 * *report (owned by the caller) says what was applied:
 *   {"no_new_privs":true, "landlock":7|false, "seccomp":true, "netns":true|false,
 *    "network":false, "uid":65534, "gid":65534,
 *    "rlimits":{"as_mb":…,"cpu_s":…,"nofile":…,"nproc":…,"core":0},
 *    "degraded":["landlock: …", …]}
 * On failure returns PAR_E_IO with the reason in `err`; the caller must
 * not run package code then.
 */
int par_sandbox_apply(const par_sandbox_opts_t *o, json_t **report, par_buf_t *err);

/* The Landlock ABI version the kernel speaks, 0 when Landlock is unavailable. */
int par_sandbox_landlock_abi(void);

/* The filesystem, network and scope masks a Landlock ABI version handles.
 * Pure: used by par_sandbox_apply() and the unit tests. */
void par_sandbox_landlock_masks(int abi, uint64_t *fs, uint64_t *net, uint64_t *scoped);

/* Resolves a user (name or number) and a group (name, number, or NULL for the
 * user's primary group). PAR_E_NOT_FOUND with the reason in `err` when either
 * is unknown. */
int par_sandbox_resolve_ids(const char *user, const char *group, uid_t *uid, gid_t *gid,
                            par_buf_t *err);

#endif
