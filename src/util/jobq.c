/*
 * util/jobq.c — see jobq.h.
 *
 * One mutex guards everything but the inline job's start time, which the
 * inline runner clears with an atomic store so that ending a job costs no
 * lock. Counts: `idle` counts the pool's threads that run nothing (a thread
 * just started counts as idle, so the watchdog never starts two for one job);
 * `queued` is the length of the list.
 */
#include "util/jobq.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <par/par.h>

#define WATCHDOG_STACK (64u * 1024)

/* when this thread's inline job started (the watchdog's stamp), 0 = none */
static __thread int64_t tl_inline_ns;

struct par_jobq {
    par_jobq_opts_t o;
    int64_t tick_ns;
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* pool threads wait here */
    pthread_cond_t wd_cond; /* the sleeping watchdog */
    pthread_cond_t gone;    /* par_jobq_serve callers leaving */
    par_job_t *head, *tail;
    size_t queued;
    pthread_t *tids; /* the pool's threads, joined by free */
    size_t ntids, captids;
    size_t nthreads, idle, running, serving;
    void (*urgent_fn)(void *);
    void *urgent_arg;
    _Atomic int64_t inline_ns; /* when the last inline job started, 0 = it ended */
    int64_t last_ns;           /* the last push or inline start */
    int64_t kicked_ns;         /* the inline job the watchdog already acted on */
    _Atomic uint64_t done;     /* pool threads count it under the lock, inline ends without */
    uint64_t overruns, waits;
    pthread_t watchdog;
    int wd_sleeping;
    int stop;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The oldest job, unlinked. Lock held. */
static par_job_t *take_locked(par_jobq_t *q)
{
    par_job_t *j = q->head;
    if (j == NULL)
        return NULL;
    q->head = j->next;
    if (q->head == NULL)
        q->tail = NULL;
    assert(q->queued > 0);
    q->queued--;
    assert((q->queued == 0) == (q->head == NULL));
    return j;
}

static void *pool_thread(void *arg);

/* A new pool thread, counted idle. Lock held. */
static int spawn_locked(par_jobq_t *q)
{
    if (q->ntids == q->captids) {
        size_t ncap = q->captids ? q->captids * 2 : 8;
        pthread_t *n = realloc(q->tids, ncap * sizeof(*n));
        if (n == NULL)
            return -1;
        q->tids = n;
        q->captids = ncap;
    }
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    if (q->o.stack_size)
        pthread_attr_setstacksize(&attr, q->o.stack_size);
    int rc = pthread_create(&q->tids[q->ntids], &attr, pool_thread, q);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -1;
    q->ntids++;
    q->nthreads++;
    q->idle++;
    return 0;
}

/* Gives the queued jobs threads: with `all`, enough for every queued job
 * (waking idle ones, starting new ones up to max_threads), else one. 1 when
 * it did anything. Lock held. */
static int kick_locked(par_jobq_t *q, int all)
{
    if (q->queued == 0)
        return 0;
    size_t want = all ? q->queued : 1;
    /* an idle thread takes a pending urgent task first (par-worker's reader
     * role, which it keeps): it is not one for the queued jobs */
    want += q->urgent_fn != NULL;
    int acted = 0;
    while (want > q->idle && q->nthreads < q->o.max_threads && spawn_locked(q) == 0)
        acted = 1;
    if (q->idle > 0) {
        /* as many as wanted: the rest sleep on */
        if (want >= q->idle)
            pthread_cond_broadcast(&q->cond);
        else
            for (size_t i = 0; i < want; i++)
                pthread_cond_signal(&q->cond);
        acted = 1;
    }
    return acted;
}

/* The loop of a pool thread (may_exit) or a par_jobq_serve caller, counted
 * idle on entry. Urgent tasks first, then jobs oldest first; queued jobs are run
 * even after stop. Lock held on entry and on return. */
/* A pool thread that leaves before the queue is freed: out of the list that
 * par_jobq_free joins, and detached. 1 when it may go. Lock held. */
static int forget_self_locked(par_jobq_t *q)
{
    pthread_t me = pthread_self();
    for (size_t i = 0; i < q->ntids; i++)
        if (pthread_equal(q->tids[i], me)) {
            if (pthread_detach(me) != 0)
                return 0;
            q->tids[i] = q->tids[--q->ntids];
            return 1;
        }
    return 0;
}

static void serve_locked(par_jobq_t *q, int may_exit)
{
    for (;;) {
        if (q->urgent_fn) {
            void (*fn)(void *) = q->urgent_fn;
            void *arg = q->urgent_arg;
            q->urgent_fn = NULL;
            q->urgent_arg = NULL;
            assert(q->idle > 0);
            q->idle--;
            pthread_mutex_unlock(&q->lock);
            fn(arg);
            pthread_mutex_lock(&q->lock);
            q->idle++;
            continue;
        }
        par_job_t *j = take_locked(q);
        if (j) {
            assert(q->idle > 0);
            q->idle--;
            q->running++;
            pthread_mutex_unlock(&q->lock);
            q->o.run(j, q->o.ctx);
            pthread_mutex_lock(&q->lock);
            assert(q->running > 0);
            q->running--;
            q->idle++;
            atomic_fetch_add_explicit(&q->done, 1, memory_order_relaxed);
            continue;
        }
        if (q->stop)
            break;
        if (!may_exit || q->o.idle_exit_ns == 0) {
            pthread_cond_wait(&q->cond, &q->lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + q->o.idle_exit_ns % 1000000000LL;
        until.tv_sec += (time_t)(q->o.idle_exit_ns / 1000000000LL + ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        if (pthread_cond_timedwait(&q->cond, &q->lock, &until) == ETIMEDOUT && q->head == NULL &&
            q->urgent_fn == NULL && q->nthreads - q->serving > q->o.threads &&
            forget_self_locked(q))
            break; /* a burst is over: its extra threads go */
    }
    assert(q->idle > 0 && q->nthreads > 0);
    q->idle--;
    q->nthreads--;
}

static void *pool_thread(void *arg)
{
    par_jobq_t *q = arg;
    pthread_mutex_lock(&q->lock);
    serve_locked(q, 1);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

void par_jobq_serve(par_jobq_t *q)
{
    pthread_mutex_lock(&q->lock);
    q->nthreads++;
    q->idle++;
    q->serving++;
    serve_locked(q, 0);
    q->serving--;
    pthread_cond_broadcast(&q->gone);
    pthread_mutex_unlock(&q->lock);
}

static void *watchdog_thread(void *arg)
{
    par_jobq_t *q = arg;
    const par_jobq_opts_t *o = &q->o;
    pthread_mutex_lock(&q->lock);
    while (!q->stop) {
        int64_t now = now_ns();
        int64_t inl = atomic_load(&q->inline_ns);
        if (inl && o->overrun_ns && now - inl >= o->overrun_ns && q->kicked_ns != inl) {
            q->kicked_ns = inl;
            q->overruns++;
            if (o->overrun) {
                pthread_mutex_unlock(&q->lock);
                o->overrun(o->ctx);
                pthread_mutex_lock(&q->lock);
            }
            kick_locked(q, 1);
        } else if (o->wait_max_ns && q->head && now - q->head->queued_ns >= o->wait_max_ns) {
            if (kick_locked(q, 0)) /* one per tick: the job may just be next */
                q->waits++;
        }
        int waiting = q->head != NULL && o->wait_max_ns;
        if (inl == 0 && !waiting && now - q->last_ns >= o->idle_ns) {
            q->wd_sleeping = 1;
            pthread_cond_wait(&q->wd_cond, &q->lock);
            q->wd_sleeping = 0;
            continue;
        }
        pthread_mutex_unlock(&q->lock);
        struct timespec ts = {q->tick_ns / 1000000000LL, q->tick_ns % 1000000000LL};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

void par_jobq_push(par_jobq_t *q, par_job_t *head, par_job_t *tail, int wake)
{
    assert(head && tail);
    int64_t now = now_ns();
    size_t n = 0;
    for (par_job_t *j = head;; j = j->next) {
        j->queued_ns = now;
        n++;
        if (j == tail)
            break;
    }
    tail->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = head;
    else
        q->head = head;
    q->tail = tail;
    q->queued += n;
    q->last_ns = now;
    if (q->idle > 0 && (wake == PAR_JOBQ_WAKE || (wake == PAR_JOBQ_WAKE_IDLE && q->running == 0)))
        pthread_cond_signal(&q->cond);
    if (q->wd_sleeping)
        pthread_cond_signal(&q->wd_cond);
    pthread_mutex_unlock(&q->lock);
}

int par_jobq_urgent(par_jobq_t *q, void (*fn)(void *), void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    if (q->urgent_fn && (q->urgent_fn != fn || q->urgent_arg != arg)) {
        rc = -1;
    } else {
        int was_pending = q->urgent_fn != NULL;
        q->urgent_fn = fn;
        q->urgent_arg = arg;
        if (q->idle > 0) {
            pthread_cond_broadcast(&q->cond);
        } else if (spawn_locked(q) != 0) {
            if (!was_pending)
                q->urgent_fn = NULL, q->urgent_arg = NULL;
            rc = -1;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

par_job_t *par_jobq_inline_begin(par_jobq_t *q, int *more)
{
    assert(tl_inline_ns == 0); /* one inline job at a time per thread */
    pthread_mutex_lock(&q->lock);
    par_job_t *j = take_locked(q);
    if (j) {
        int64_t now = now_ns();
        tl_inline_ns = now;
        q->last_ns = now;
        atomic_store(&q->inline_ns, now);
        if (q->wd_sleeping)
            pthread_cond_signal(&q->wd_cond);
    }
    *more = q->head != NULL;
    pthread_mutex_unlock(&q->lock);
    return j;
}

void par_jobq_inline_end(par_jobq_t *q)
{
    /* no lock: the watchdog reads the stamp atomically. Another thread may
     * have started an inline job since (the one that reads now): its stamp
     * stays. */
    assert(tl_inline_ns != 0);
    int64_t mine = tl_inline_ns;
    atomic_compare_exchange_strong(&q->inline_ns, &mine, 0);
    tl_inline_ns = 0;
    atomic_fetch_add_explicit(&q->done, 1, memory_order_relaxed);
}

void par_jobq_foreach(par_jobq_t *q, void (*fn)(par_job_t *job, void *arg), void *arg)
{
    pthread_mutex_lock(&q->lock);
    for (par_job_t *j = q->head; j; j = j->next)
        fn(j, arg);
    pthread_mutex_unlock(&q->lock);
}

void par_jobq_stats(par_jobq_t *q, par_jobq_stats_t *out)
{
    pthread_mutex_lock(&q->lock);
    out->threads = q->nthreads;
    out->idle = q->idle;
    out->running = q->running;
    out->queued = q->queued;
    out->done = atomic_load(&q->done);
    out->overruns = q->overruns;
    out->waits = q->waits;
    pthread_mutex_unlock(&q->lock);
}

static void destroy(par_jobq_t *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    pthread_cond_destroy(&q->wd_cond);
    pthread_cond_destroy(&q->gone);
    free(q->tids);
    free(q);
}

int par_jobq_new(const par_jobq_opts_t *opts, par_jobq_t **out)
{
    assert(opts->run != NULL);
    par_jobq_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return PAR_E_NO_MEMORY;
    q->o = *opts;
    if (q->o.max_threads < q->o.threads)
        q->o.max_threads = q->o.threads;
    int64_t tick = q->o.wait_max_ns;
    if (q->o.overrun_ns && (tick == 0 || q->o.overrun_ns < tick))
        tick = q->o.overrun_ns;
    q->tick_ns = tick > 0 ? tick : 1000000LL;
    atomic_init(&q->inline_ns, 0);
    atomic_init(&q->done, 0);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    pthread_cond_init(&q->wd_cond, NULL);
    pthread_cond_init(&q->gone, NULL);
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < q->o.threads; i++)
        if (spawn_locked(q) != 0)
            break;
    pthread_mutex_unlock(&q->lock);
    pthread_attr_t attr;
    int wd = pthread_attr_init(&attr) == 0;
    if (wd) {
        size_t stack =
            WATCHDOG_STACK < (size_t)PTHREAD_STACK_MIN ? (size_t)PTHREAD_STACK_MIN : WATCHDOG_STACK;
        pthread_attr_setstacksize(&attr, stack);
        wd = pthread_create(&q->watchdog, &attr, watchdog_thread, q) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!wd || (q->o.threads > 0 && q->ntids == 0)) {
        pthread_mutex_lock(&q->lock);
        q->stop = 1;
        pthread_cond_broadcast(&q->cond);
        pthread_cond_signal(&q->wd_cond);
        pthread_mutex_unlock(&q->lock);
        if (wd)
            pthread_join(q->watchdog, NULL);
        for (size_t i = 0; i < q->ntids; i++)
            pthread_join(q->tids[i], NULL);
        destroy(q);
        return PAR_E_INTERNAL;
    }
    *out = q;
    return PAR_OK;
}

void par_jobq_free(par_jobq_t *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    assert(atomic_load(&q->inline_ns) == 0);
    q->stop = 1;
    pthread_cond_broadcast(&q->cond);
    pthread_cond_signal(&q->wd_cond);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->watchdog, NULL);
    for (size_t i = 0; i < q->ntids; i++)
        pthread_join(q->tids[i], NULL);
    pthread_mutex_lock(&q->lock);
    while (q->serving > 0)
        pthread_cond_wait(&q->gone, &q->lock);
    /* a pool without threads: what is left runs here */
    for (par_job_t *j; (j = take_locked(q)) != NULL;) {
        pthread_mutex_unlock(&q->lock);
        q->o.run(j, q->o.ctx);
        pthread_mutex_lock(&q->lock);
        atomic_fetch_add_explicit(&q->done, 1, memory_order_relaxed);
    }
    if (q->urgent_fn) {
        void (*fn)(void *) = q->urgent_fn;
        q->urgent_fn = NULL;
        pthread_mutex_unlock(&q->lock);
        fn(q->urgent_arg);
        pthread_mutex_lock(&q->lock);
    }
    assert(q->nthreads == 0 && q->idle == 0 && q->running == 0 && q->queued == 0);
    pthread_mutex_unlock(&q->lock);
    destroy(q);
}
