/*
 * loader/scratch.c — see scratch.h.
 *
 * A pass copies the registered entries under the mutex, measures them with
 * the mutex released (a walk is slow I/O), then, per package version over its
 * quota, takes the mutex again and kills the largest of that version's
 * workers that is still registered. Measuring stops early once a single
 * directory passes the quota: the verdict is known.
 */
#include "loader/scratch.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/log.h"
#include "core/call.h"
#include "util/fs.h"

#define SCRATCH_MIN_INTERVAL_MS 500
#define SCRATCH_MAX_INTERVAL_MS 10000
#define SCRATCH_MAX_EVASIONS 3

typedef struct entry {
    struct entry *next;
    uint64_t wid;
    pid_t pid;
    char *dir, *key;
    uint64_t limit;
    int killed;        /* stopped for its package's quota */
    uint64_t used;     /* what its package used then */
    uint64_t measured; /* this pass (a snapshot's copy) */
    int moved;         /* this pass: the tree was moved under the walk (a snapshot's copy) */
    unsigned evasions; /* passes in a row whose walk the worker defeated by moving directories */
} entry_t;

struct par_scratch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int stop;
    entry_t *entries;
};

static void entry_free(entry_t *e)
{
    free(e->dir);
    free(e->key);
    free(e);
}

/* Copies of the live entries, to measure without the lock. */
static entry_t *snapshot(par_scratch_t *q, size_t *n)
{
    pthread_mutex_lock(&q->lock);
    size_t cnt = 0;
    for (entry_t *e = q->entries; e; e = e->next)
        cnt += !e->killed;
    entry_t *v = cnt ? calloc(cnt, sizeof(*v)) : NULL;
    size_t i = 0;
    for (entry_t *e = q->entries; v && e; e = e->next) {
        if (e->killed)
            continue;
        v[i] = *e;
        v[i].dir = strdup(e->dir);
        v[i].key = strdup(e->key);
        i++;
    }
    pthread_mutex_unlock(&q->lock);
    *n = i;
    return v;
}

/* Kills the registered worker `wid` for its package's quota. */
static void kill_for_quota(par_scratch_t *q, const entry_t *big, uint64_t sum)
{
    pthread_mutex_lock(&q->lock);
    for (entry_t *e = q->entries; e; e = e->next) {
        if (e->wid != big->wid || e->killed)
            continue;
        e->killed = 1;
        e->used = sum;
        kill(-e->pid, SIGKILL);
        kill(e->pid, SIGKILL);
        par_logline_t l;
        if (par_log_begin(&l, PAR_LOG_WARN, "worker stopped: scratch quota exceeded")) {
            par_log_str(&l, "package", e->key);
            par_log_int(&l, "pid", e->pid);
            par_log_int(&l, "scratch_bytes", (int64_t)sum);
            par_log_int(&l, "scratch_mb_limit", (int64_t)(e->limit >> 20));
            par_log_end(&l);
        }
    }
    pthread_mutex_unlock(&q->lock);
}

/* A worker can cut a walk short by moving its directories while the walk is
 * below them (util/fs stops rather than wander): the measure is then partial.
 * A package does not do that by accident pass after pass, so a few such
 * passes in a row count as over the quota. */
static int evading(par_scratch_t *q, const entry_t *m)
{
    int over = 0;
    pthread_mutex_lock(&q->lock);
    for (entry_t *e = q->entries; e; e = e->next) {
        if (e->wid == m->wid) {
            e->evasions = m->moved ? e->evasions + 1 : 0;
            over = e->limit && e->evasions >= SCRATCH_MAX_EVASIONS;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return over;
}

static void pass(par_scratch_t *q)
{
    size_t n = 0;
    entry_t *v = snapshot(q, &n);
    for (size_t i = 0; i < n; i++) {
        par_fs_result_t res;
        if (v[i].dir == NULL)
            continue;
        par_fs_usage(v[i].dir, v[i].limit, &v[i].measured, &res);
        v[i].moved = res.first_errno == ESTALE;
        if (evading(q, &v[i]))
            v[i].measured = v[i].limit + 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].key == NULL || v[i].limit == 0)
            continue;
        /* the first entry of each key sums its key and picks the largest */
        int first = 1;
        for (size_t k = 0; k < i && first; k++)
            first = v[k].key == NULL || strcmp(v[k].key, v[i].key) != 0;
        if (!first)
            continue;
        uint64_t sum = 0;
        size_t big = i;
        for (size_t k = i; k < n; k++) {
            if (v[k].key && strcmp(v[k].key, v[i].key) == 0) {
                sum += v[k].measured;
                if (v[k].measured > v[big].measured)
                    big = k;
            }
        }
        if (sum > v[i].limit)
            kill_for_quota(q, &v[big], sum);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].dir), free(v[i].key);
    free(v);
}

static void *accountant(void *arg)
{
    par_scratch_t *q = arg;
    int64_t interval = SCRATCH_MIN_INTERVAL_MS;
    pthread_mutex_lock(&q->lock);
    while (!q->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval / 1000;
        until.tv_nsec += (interval % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000)
            until.tv_sec++, until.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&q->cond, &q->lock, &until);
        if (q->stop)
            break;
        pthread_mutex_unlock(&q->lock);
        int64_t t0 = par__now_ms();
        pass(q);
        /* a slow pass (many files) spaces the next one: at most ~1/5 of a core */
        interval = 4 * (par__now_ms() - t0);
        if (interval < SCRATCH_MIN_INTERVAL_MS)
            interval = SCRATCH_MIN_INTERVAL_MS;
        if (interval > SCRATCH_MAX_INTERVAL_MS)
            interval = SCRATCH_MAX_INTERVAL_MS;
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

par_scratch_t *par_scratch_new(void)
{
    par_scratch_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    if (pthread_create(&q->thread, NULL, accountant, q) != 0) {
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
        free(q);
        return NULL;
    }
    return q;
}

void par_scratch_free(par_scratch_t *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stop = 1;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    while (q->entries) {
        entry_t *e = q->entries;
        q->entries = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

void par_scratch_watch(par_scratch_t *q, uint64_t wid, pid_t pid, const char *dir, const char *key,
                       uint64_t limit)
{
    entry_t *e = q ? calloc(1, sizeof(*e)) : NULL;
    if (e == NULL)
        return;
    e->wid = wid;
    e->pid = pid;
    e->dir = strdup(dir);
    e->key = strdup(key);
    e->limit = limit;
    if (e->dir == NULL || e->key == NULL) {
        entry_free(e);
        return;
    }
    pthread_mutex_lock(&q->lock);
    e->next = q->entries;
    q->entries = e;
    pthread_mutex_unlock(&q->lock);
}

int par_scratch_forget(par_scratch_t *q, uint64_t wid, uint64_t *used, uint64_t *limit)
{
    int killed = 0;
    if (q == NULL)
        return 0;
    pthread_mutex_lock(&q->lock);
    for (entry_t **pp = &q->entries; *pp; pp = &(*pp)->next) {
        entry_t *e = *pp;
        if (e->wid != wid)
            continue;
        *pp = e->next;
        killed = e->killed;
        if (used)
            *used = e->used;
        if (limit)
            *limit = e->limit;
        entry_free(e);
        break;
    }
    pthread_mutex_unlock(&q->lock);
    return killed;
}
