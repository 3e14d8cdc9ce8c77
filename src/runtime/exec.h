/*
 * runtime/exec.h — the in-process executor: where trusted packages' calls run.
 *
 * Owns a job queue (util/jobq.h) of calls for packages with
 * `isolation: in-process`, so that agent code never runs on an event loop.
 * Callers: par_runtime_new/destroy (runtime.c), par__call_start (any thread),
 * par__runtime_cork/uncork (an HTTP loop thread, once per turn).
 */
#ifndef PAR_RUNTIME_EXEC_H
#define PAR_RUNTIME_EXEC_H

#include <stddef.h>

#include "runtime/call.h"

typedef struct par_executor par_executor_t;

/* Starts `threads` threads and the watchdog; PAR_E_NO_MEMORY/PAR_E_INTERNAL. */
int par__exec_new(size_t threads, par_executor_t **out);

/* Runs what is queued, joins the threads, frees. NULL is a no-op. */
void par__exec_free(par_executor_t *x);

/* Queues a started call: par__native_run then par__call_finish on an
 * executor thread. While this thread is corked (par_wire_corked) the call
 * waits for uncork. */
void par__exec_submit(par_executor_t *x, par_call_t *c);

/* Queues what this thread collected while corked, at once: one lock and at
 * most one wake-up (none when a thread is running: it takes them next). */
void par__exec_uncork(par_executor_t *x);

#endif
