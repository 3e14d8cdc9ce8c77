/*
 * util/jobq.h — a FIFO job queue served by a pool of threads, with a watchdog.
 *
 * Owns: the queue, its threads and its watchdog thread. Jobs are intrusive
 * (a par_job_t inside the caller's object): pushing never allocates, and
 * the queue never touches a job after handing it to `run`, which disposes
 * of it.
 *
 * Two users share it: the runtime's in-process executor (runtime/exec.c: a
 * fixed pool, calls pushed one at a time or a loop turn's worth at once) and
 * par-worker (worker/reader.c: a pool that grows on demand, and a reader
 * thread that runs what it read itself, "inline", while no other thread
 * reads). Cheap hand-offs wake no thread when one is already running; the
 * watchdog makes up for it: every `tick` while work is about, it
 *   - gives the queue one more thread (waking an idle one, or starting one
 *     up to max_threads) when the oldest queued job has waited `wait_max_ns`,
 *     and
 *   - when the job running inline has run `overrun_ns`, calls `overrun`
 *     (once per job) and gives every queued job a thread,
 * and it sleeps when nothing was pushed or run inline for `idle_ns`, so an
 * idle queue costs no wake-ups.
 *
 * Threads: every function may be called from any thread, except
 * par_jobq_free (once, from a thread that is not one of the queue's and
 * runs nothing inline). Callbacks run without the queue's lock held, so they
 * may push. Several threads may run jobs inline (one each); the watchdog
 * watches the job started last.
 * It must never block a pusher on a job, nor lose a pushed job: free runs
 * what is still queued before it returns.
 */
#ifndef PAR_UTIL_JOBQ_H
#define PAR_UTIL_JOBQ_H

#include <stddef.h>
#include <stdint.h>

/** The link a queued object embeds. The queue owns it while the job is queued. */
typedef struct par_job {
    struct par_job *next;
    int64_t queued_ns; /* CLOCK_MONOTONIC when pushed */
} par_job_t;

typedef struct par_jobq par_jobq_t;

typedef struct par_jobq_opts {
    size_t threads;       /* started by par_jobq_new */
    size_t max_threads;   /* the watchdog grows the pool up to this (at least `threads`) */
    size_t stack_size;    /* of the pool's threads; 0 = the system's default */
    int64_t wait_max_ns;  /* a job queued this long gets a thread; 0 = only on an overrun */
    int64_t overrun_ns;   /* an inline job running this long is an overrun; 0 = never */
    int64_t idle_ns;      /* the watchdog sleeps after this long without work */
    int64_t idle_exit_ns; /* a pool thread beyond `threads` idle this long exits; 0 = never */
    /* Runs one job and disposes of it. A pool thread, or the thread that took it inline. */
    void (*run)(par_job_t *job, void *ctx);
    /* Optional: the job running inline has run overrun_ns. The watchdog thread. */
    void (*overrun)(void *ctx);
    void *ctx;
} par_jobq_opts_t;

/** How a push wakes the pool. */
enum {
    PAR_JOBQ_WAKE_IDLE = 0, /* wake an idle thread only when no thread is running a job */
    PAR_JOBQ_WAKE = 1,      /* wake an idle thread */
    PAR_JOBQ_NO_WAKE = 2,   /* wake nobody: the pusher runs them inline, the watchdog helps */
};

/** What the queue counts (par_jobq_stats). */
typedef struct par_jobq_stats {
    size_t threads; /* the pool's, plus callers inside par_jobq_serve */
    size_t idle;
    size_t running; /* jobs running on pool threads */
    size_t queued;
    uint64_t done;     /* jobs run, pool and inline */
    uint64_t overruns; /* inline jobs the watchdog found running overrun_ns */
    uint64_t waits;    /* times it found the oldest job queued wait_max_ns and added a thread */
} par_jobq_stats_t;

/** Starts the pool and the watchdog. PAR_E_NO_MEMORY or PAR_E_INTERNAL (no
 * thread could start: none of `threads`, or the watchdog); nothing leaks. */
int par_jobq_new(const par_jobq_opts_t *opts, par_jobq_t **out);

/** Appends the list head..tail (linked by next; tail->next is ignored) in order. */
void par_jobq_push(par_jobq_t *q, par_job_t *head, par_job_t *tail, int wake);

/** Has a pool thread run fn(arg) before any queued job: an idle thread, or a
 * new one even past max_threads. One such task at a time: -1 when another is
 * pending or no thread could be started (then it will not run). Asking again
 * for the pending one is 0 and wakes a thread again. Inline runners never
 * take it. */
int par_jobq_urgent(par_jobq_t *q, void (*fn)(void *), void *arg);

/** Takes the oldest job to run on the calling thread; NULL when none. *more
 * says whether others remain queued behind it. Call par_jobq_inline_end when
 * it is done (before taking the next). */
par_job_t *par_jobq_inline_begin(par_jobq_t *q, int *more);
void par_jobq_inline_end(par_jobq_t *q);

/** The calling thread serves the pool (as one of its threads) until
 * par_jobq_free. */
void par_jobq_serve(par_jobq_t *q);

/** Calls fn on each queued job, oldest first, under the queue's lock: fn must
 * not call into the queue. */
void par_jobq_foreach(par_jobq_t *q, void (*fn)(par_job_t *job, void *arg), void *arg);

void par_jobq_stats(par_jobq_t *q, par_jobq_stats_t *out);

/** Runs what is still queued (on the pool, or on the caller if the pool has
 * no thread), joins every thread and frees the queue. NULL is a no-op. */
void par_jobq_free(par_jobq_t *q);

#endif
