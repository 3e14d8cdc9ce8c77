/*
 * util/fs.h — walking, measuring and removing directory trees with file
 * descriptors.
 *
 * Owns the one tree walker of the runtime. Every tree PAR removes or measures
 * (cache entries, worker scratch directories, virtual environments, the
 * temporary state of `par call`) may have been built by someone hostile: an
 * archive, a worker. So the walker
 *   - never follows a symbolic link and never leaves the file system of the
 *     top (a mount point below it is visited as a leaf, not entered);
 *   - works relative to directory descriptors (openat/fstatat/unlinkat): no
 *     path is ever longer than one name, so depth is not limited by PATH_MAX;
 *   - keeps its stack on the heap, one small frame per level, and holds at most
 *     PAR_FS_OPEN_DIRS directories open: going back up past a closed level
 *     reopens it through ".." and checks it is the same directory (device and
 *     inode), so depth costs neither C stack nor descriptors;
 *   - carries on past an entry it cannot handle, counting the failure.
 *
 * Callers: deploy threads (cache), the supervisor's I/O thread and the scratch
 * accountant (scratch directories), the CLI. Any thread; no global state.
 * Never on an event-loop thread: a walk is unbounded I/O.
 */
#ifndef PAR_UTIL_FS_H
#define PAR_UTIL_FS_H

#include <stdint.h>
#include <sys/stat.h>

#define PAR_FS_OPEN_DIRS 16

/* Called for every entry below the top and for the top last, in post order
 * (a directory after everything in it). `dirfd` is the directory holding
 * `name`; for the top itself it is AT_FDCWD and `name` the path given.
 * Returns 0 to go on, -1 (errno set) to count a failure and go on, 1 to stop
 * the walk at once. */
typedef int (*par_fs_visit_fn)(void *ud, int dirfd, const char *name, const struct stat *st);

typedef struct par_fs_result {
    uint64_t entries;  /* entries visited (the top included) */
    uint64_t failures; /* entries that could not be opened or that the visitor failed */
    int first_errno;   /* errno of the first failure, 0 when none */
    uint64_t max_depth;
} par_fs_result_t;

/* Walks `path` (not followed when it is a symbolic link). A path that does
 * not exist is an empty walk. Returns 0 when every entry was visited without
 * a failure, 1 when the visitor stopped the walk, -1 otherwise (errno holds
 * the first failure). `res` may be NULL. */
int par_fs_walk(const char *path, par_fs_visit_fn visit, void *ud, par_fs_result_t *res);

/* Removes `path` and everything below it (no symbolic link is followed; a
 * directory whose mode locks its owner out is opened up first). Returns 0
 * when the path is gone (or never was), else -1 with errno of the first
 * failure; what could be removed is removed. */
int par_fs_remove(const char *path, par_fs_result_t *res);

/* Bytes `path` takes on disk (allocated blocks; every entry counts at least
 * one 512-byte block so that empty files and directories are not free; a
 * file with several links inside the tree counts once).
 * Stops as soon as the sum passes `stop_above` (0 = never): *bytes is then
 * more than stop_above but not the whole size. Returns 0, or -1 when part of
 * the tree could not be read (*bytes then counts what could). */
int par_fs_usage(const char *path, uint64_t stop_above, uint64_t *bytes, par_fs_result_t *res);

#endif
