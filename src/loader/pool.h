/*
 * loader/pool.h — the decisions of a worker pool, as pure logic over plain
 * structs: admission (concurrency slots, the wait queue and its cap), queue
 * deadlines, how many workers to start, restart backoff and the crash loop.
 *
 * No sockets, no processes, no clock, no locks: the supervisor
 * (loader/supervisor.c) calls these under its pool's lock with the time and
 * the facts about its workers, then acts on the answer. Unit-tested with fake
 * time (tests/unit/test_pool.c). Never does I/O or allocates.
 */
#ifndef PAR_LOADER_POOL_H
#define PAR_LOADER_POOL_H

#include <stddef.h>
#include <stdint.h>

#define PAR_POOL_CRASH_LOOP_CRASHES 5 /* crashes in a row that put a pool in a crash loop */
#define PAR_POOL_MAX_BACKOFF_MS 10000
#define PAR_POOL_RESPAWN_RETRY_MS 1000 /* after a worker could not be started at all */
#define PAR_POOL_STABLE_MS 30000       /* a worker up this long resets the crash streak */

/* A call as the pool sees it: embedded in the supervisor's per-call record. */
typedef struct par_pool_ent {
    struct par_pool_ent *next; /* the wait queue; the taken list of take_* */
    int64_t deadline_ms;       /* monotonic; 0 = none */
    int wants_slot;            /* limited: needs a concurrency slot (not a sibling call) */
    int holds_slot;            /* holds one now */
} par_pool_ent_t;

typedef struct par_pool_core {
    /* settings */
    unsigned limit;     /* concurrent limited calls in workers, 0 = no limit */
    unsigned queue_max; /* calls waiting for a slot before over_capacity */
    unsigned min_workers, max_workers;
    unsigned concurrency; /* calls per worker before another is started */
    /* admission */
    unsigned dispatched; /* slots held */
    par_pool_ent_t *q_head, *q_tail;
    size_t q_len;
    /* workers and health */
    unsigned live; /* starting + ready */
    int want_spawn;
    unsigned restarts, crashes_in_row, timeout_kills;
    int64_t respawn_at_ms;
} par_pool_core_t;

/* What par_pool_core_admit decided for a new call. */
enum {
    PAR_ADMIT_DISPATCH,   /* send it to the ready worker now (take its slot first) */
    PAR_ADMIT_QUEUE,      /* queue it until a worker or a slot frees up */
    PAR_ADMIT_FULL,       /* at the concurrency limit with a full queue: over_capacity */
    PAR_ADMIT_CRASH_LOOP, /* nothing to run on and crashing: unavailable */
};

/* The status a refused call gets: PAR_E_OVER_CAPACITY for PAR_ADMIT_FULL (429),
 * PAR_E_UNAVAILABLE for PAR_ADMIT_CRASH_LOOP (503); PAR_OK for the others. */
int par_pool_core_refusal(int admit);

/* Clamps the settings (max_workers at least min_workers). */
void par_pool_core_init(par_pool_core_t *pc);

/* A new call that wants a slot or not, with a ready worker or not (`any_ready`:
 * some worker is ready, possibly busy). */
int par_pool_core_admit(const par_pool_core_t *pc, int wants_slot, int worker_ready, int any_ready);
/* Crashing repeatedly and no worker ready. */
int par_pool_core_crash_loop(const par_pool_core_t *pc, int any_ready);

void par_pool_core_take_slot(par_pool_core_t *pc, par_pool_ent_t *e);
/* Gives the slot `e` holds back (nothing when it holds none). */
void par_pool_core_release_slot(par_pool_core_t *pc, par_pool_ent_t *e);

void par_pool_core_enqueue(par_pool_core_t *pc, par_pool_ent_t *e);
/* Removes `e` from the queue; 0 when it is not queued. */
int par_pool_core_unqueue(par_pool_core_t *pc, par_pool_ent_t *e);
/* The next queued call to dispatch, given a ready worker: dequeued with its
 * slot taken; NULL when the queue is empty or its head waits for a slot. */
par_pool_ent_t *par_pool_core_next(par_pool_core_t *pc);
/* Dequeues every call whose deadline is passed; chained through `next`. */
par_pool_ent_t *par_pool_core_take_expired(par_pool_core_t *pc, int64_t now_ms);
/* Dequeues every call: chained through `next`, in queue order. */
par_pool_ent_t *par_pool_core_take_queue(par_pool_core_t *pc);

/* A dispatched call found its worker busy (`inflight` calls): 1 when one
 * more worker should be started now (want_spawn is set). */
int par_pool_core_grow(par_pool_core_t *pc, unsigned inflight);
/* Workers to start now (0 before the backoff ends); clears want_spawn. */
unsigned par_pool_core_spawn_count(par_pool_core_t *pc, int64_t now_ms);
void par_pool_core_spawn_failed(par_pool_core_t *pc, int64_t now_ms);
void par_pool_core_worker_up(par_pool_core_t *pc);
void par_pool_core_worker_down(par_pool_core_t *pc);

/* The delay before restarting after the `crashes_in_row`-th crash in a row:
 * 0 for the first, then 50 ms doubling up to PAR_POOL_MAX_BACKOFF_MS, plus up
 * to a quarter of that from `rnd` (jitter). */
int64_t par_pool_core_backoff_ms(unsigned crashes_in_row, unsigned rnd);
/* A worker died on its own: counts it and schedules the restart. */
void par_pool_core_crashed(par_pool_core_t *pc, int64_t now_ms, unsigned rnd);
/* A ready worker has been up `uptime_ms`: a stable one ends the crash streak. */
void par_pool_core_uptime(par_pool_core_t *pc, int64_t uptime_ms);

#endif
