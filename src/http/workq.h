/*
 * http/workq.h — a bounded FIFO of jobs served by a fixed set of threads.
 *
 * The HTTP layer's admin queue (http/admin.c) runs what must not run on an
 * event loop — deploys, reloads, usage reports — here instead of starting a
 * thread per request. A push never blocks: when the queue is full it fails
 * with PAR_E_SERVER_BUSY and the request is answered 503 over_capacity.
 *
 * Threads: push from any thread (the loops); jobs run on the queue's
 * threads, one at a time each, in the order pushed; new and free from one
 * thread (the main thread, at server start and stop). A job must not free
 * the queue. Nothing here knows about HTTP (it could move to util/).
 */
#ifndef PAR_HTTP_WORKQ_H
#define PAR_HTTP_WORKQ_H

#include <stddef.h>

typedef struct par_workq par_workq_t;
typedef void par_workq_fn(void *arg);

/* Starts `threads` (>= 1) threads serving a queue of at most `cap` (>= 1)
 * jobs waiting. PAR_OK, PAR_E_NO_MEMORY or PAR_E_IO (no thread). */
int par__workq_new(unsigned threads, size_t cap, par_workq_t **out);

/* Queues fn(arg). PAR_OK, or PAR_E_SERVER_BUSY when `cap` jobs are waiting
 * already or the queue is stopping (fn is then never called). */
int par__workq_push(par_workq_t *q, par_workq_fn *fn, void *arg);

/* Jobs waiting (not yet started). */
size_t par__workq_waiting(par_workq_t *q);

/* Stops: jobs running finish, jobs still waiting are handed to drop(arg)
 * instead (when drop is not NULL), the threads are joined and the queue
 * freed. NULL is a no-op. */
void par__workq_free(par_workq_t *q, par_workq_fn *drop);

#endif
