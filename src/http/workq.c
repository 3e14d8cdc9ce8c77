/*
 * http/workq.c — see workq.h. A ring of `cap` slots under one mutex; the
 * threads sleep on a condition variable while it is empty.
 */
#include "http/workq.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

#include <par/par.h>

typedef struct job {
    par_workq_fn *fn;
    void *arg;
} job_t;

struct par_workq {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    job_t *ring;
    size_t cap, head, count; /* jobs waiting: ring[head], ring[head + 1], ... (mod cap) */
    int stopping;
    unsigned nthreads;
    pthread_t *threads;
};

static void *serve(void *arg)
{
    par_workq_t *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->count == 0 && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        if (q->stopping)
            break;
        assert(q->count > 0 && q->count <= q->cap);
        job_t j = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_mutex_unlock(&q->lock);
        j.fn(j.arg);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int par__workq_new(unsigned threads, size_t cap, par_workq_t **out)
{
    assert(threads >= 1 && cap >= 1);
    *out = NULL;
    par_workq_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return PAR_E_NO_MEMORY;
    q->ring = calloc(cap, sizeof(*q->ring));
    q->threads = calloc(threads, sizeof(*q->threads));
    if (q->ring == NULL || q->threads == NULL) {
        free(q->ring);
        free(q->threads);
        free(q);
        return PAR_E_NO_MEMORY;
    }
    q->cap = cap;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, serve, q) != 0) {
            par__workq_free(q, NULL); /* joins the ones started */
            return PAR_E_IO;
        }
        q->nthreads++;
    }
    *out = q;
    return PAR_OK;
}

int par__workq_push(par_workq_t *q, par_workq_fn *fn, void *arg)
{
    assert(fn != NULL);
    pthread_mutex_lock(&q->lock);
    if (q->stopping || q->count == q->cap) {
        pthread_mutex_unlock(&q->lock);
        return PAR_E_SERVER_BUSY;
    }
    q->ring[(q->head + q->count) % q->cap] = (job_t){fn, arg};
    q->count++;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    return PAR_OK;
}

size_t par__workq_waiting(par_workq_t *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void par__workq_free(par_workq_t *q, par_workq_fn *drop)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    /* no thread is left: what still waits is only ours */
    for (; q->count; q->count--, q->head = (q->head + 1) % q->cap)
        if (drop)
            drop(q->ring[q->head].arg);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    free(q->threads);
    free(q);
}
