/*
 * loader/pending.h — a worker's pending table: the calls it was sent and has
 * not answered, by frame id.
 *
 * Owns nothing but the links: entries are embedded in the supervisor's
 * per-call record (intrusive, so adding or finding allocates nothing). Used by
 * the supervisor (loader/supervisor.c) under its pool's lock; no locking of
 * its own, no I/O, no knowledge of calls: pure logic, unit-tested on its own
 * (tests/unit/test_pending.c). An id is in the table at most once.
 */
#ifndef PAR_LOADER_PENDING_H
#define PAR_LOADER_PENDING_H

#include <stddef.h>
#include <stdint.h>

#define PAR_PENDING_BUCKETS 64

typedef struct par_pending_ent {
    struct par_pending_ent *next; /* bucket chain; the taken list of take_* */
    uint64_t id;
} par_pending_ent_t;

typedef struct par_pending {
    par_pending_ent_t *b[PAR_PENDING_BUCKETS];
    size_t count; /* entries in the table: the worker's calls in flight */
} par_pending_t;

/* Adds `e` (its id set, not in the table). */
void par_pending_add(par_pending_t *t, par_pending_ent_t *e);
/* The entry with `id`, or NULL. */
par_pending_ent_t *par_pending_find(const par_pending_t *t, uint64_t id);
/* Removes and returns the entry with `id`, or NULL. */
par_pending_ent_t *par_pending_remove(par_pending_t *t, uint64_t id);
/* Removes every entry for which `pred` says 1 (every entry when `pred` is
 * NULL); returns them chained through `next`. */
par_pending_ent_t *par_pending_take_if(par_pending_t *t, int (*pred)(par_pending_ent_t *, void *),
                                       void *arg);

#endif
