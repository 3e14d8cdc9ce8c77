/*
 * loader/scratch.h — the scratch quota (limits.scratch_mb, docs/sandbox.md).
 *
 * Owns the accounting of the disk the workers of each package version use in
 * their private scratch directories, and stopping a worker when its package
 * is over the quota. One accountant thread per supervisor measures every
 * registered directory (util/fs: descriptors, any depth, no symlink
 * followed), sums per package version, and when a sum passes the quota kills
 * the process group of the worker with the largest directory (SIGKILL).
 * A worker whose tree keeps moving under the walk (a partial measure) for
 * SCRATCH_MAX_EVASIONS passes in a row counts as over the quota.
 * Passes run every SCRATCH_MIN_INTERVAL_MS, spaced out further when a pass
 * itself takes long (a tree of many small files), so accounting costs at most
 * a fraction of one core. The supervisor learns of the kill from
 * par_scratch_forget() when the worker's death reaches it, and answers the
 * in-flight calls with scratch_quota_exceeded; the directory is then removed
 * as every dead worker's is.
 *
 * Threads: par_scratch_watch/forget from any supervisor thread (pool lock may
 * be held: they only take the accountant's own mutex, never a pool's);
 * never called from the accountant thread. The accountant never touches a
 * worker struct, and kills only pids still registered: a worker is forgotten
 * before it is reaped, so a pid it signals cannot have been reused.
 */
#ifndef PAR_LOADER_SCRATCH_H
#define PAR_LOADER_SCRATCH_H

#include <stdint.h>
#include <sys/types.h>

typedef struct par_scratch par_scratch_t;

/* Starts the accountant. NULL when out of memory or threads. */
par_scratch_t *par_scratch_new(void);

/* Stops the accountant and forgets every directory. NULL is fine. */
void par_scratch_free(par_scratch_t *q);

/* Watches worker `wid` (process group `pid`) whose scratch is `dir`, counted
 * against package version `key` ("name@version") with a quota of `limit`
 * bytes (0: measured, never enforced). Strings are copied. */
void par_scratch_watch(par_scratch_t *q, uint64_t wid, pid_t pid, const char *dir, const char *key,
                       uint64_t limit);

/* Stops watching worker `wid`; call before reaping it. Returns 1 when the
 * accountant killed it for its package's quota (then *used is what the
 * package was found using, and *limit the quota), else 0. */
int par_scratch_forget(par_scratch_t *q, uint64_t wid, uint64_t *used, uint64_t *limit);

#endif
