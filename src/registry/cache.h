/*
 * registry/cache.h — the content-addressed package cache.
 *
 * Layout under the cache directory (state_dir/cache/sha256):
 *   <digest>/            the extracted package, read-only to workers
 *   <digest>.complete    the verified marker: JSON {sha256, blake2b512, bytes,
 *                        signer, verified_at}; written (fsync, rename) only
 *                        after the archive's digest and signature were
 *                        verified and the tree fully extracted
 *   .tmp-<digest>-XXXXXX an extraction in progress
 * An entry without its marker is a half-written one: par_cache_sweep()
 * removes it at start, and an insert redoes it. Trees are walked and removed
 * with util/fs (descriptors, no recursion), so no depth of tree can crash a
 * walk; an entry that cannot be removed is renamed .quarantine-<name>-<time>,
 * logged, never looked up, and retried at the next start. The marker's mtime is the
 * entry's last use (touched on every lookup), which LRU eviction orders by.
 * Callers: deploy threads (serialised by the runtime's deploy lock) and the
 * runtime at start. Never an event-loop thread.
 */
#ifndef PAR_REGISTRY_CACHE_H
#define PAR_REGISTRY_CACHE_H

#include <stdint.h>

#include "pkg/archive.h"
#include "util/buf.h"

typedef struct par_cache_info {
    char sha256[65];
    uint8_t blake2b[64]; /* minisign prehash of the archive */
    int has_blake2b;
    char signer[17]; /* minisign key id that signed it, "" when unsigned */
    uint64_t bytes;  /* extracted size on disk */
} par_cache_info_t;

/* Removes extractions in progress and entries without a marker. Returns how
 * many it removed. */
int par_cache_sweep(const char *cache_dir);

/* 1 when <digest> is complete (fills `info` and touches the marker), else 0. */
int par_cache_lookup(const char *cache_dir, const char *sha256, par_cache_info_t *info);

/* Extracts the archive into <digest>/ (unless complete already) and writes the
 * marker from `info`. `*root` receives the entry's directory (malloc'ed). */
int par_cache_insert(const char *cache_dir, const par_archive_bytes_t *a,
                     const par_archive_limits_t *lim, par_cache_info_t *info, char **root,
                     par_buf_t *err);

/* Evicts least recently used entries for which in_use() says 0 until the
 * cache holds at most max_bytes. Returns the number evicted. */
int par_cache_evict(const char *cache_dir, uint64_t max_bytes,
                    int (*in_use)(void *ud, const char *sha256), void *ud);

#endif
