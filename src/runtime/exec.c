/*
 * runtime/exec.c — the in-process executor (see exec.h).
 *
 * Trusted packages' calls run on these threads, never on an event loop. The
 * attached HTTP loop hands over every call of one turn at once
 * (par__runtime_uncork): one lock and at most one wake-up per turn, and a
 * thread that is already running takes the next call without sleeping. The
 * queue's watchdog wakes more threads when the oldest queued call has waited
 * longer than EXEC_WAIT_MAX_NS (a slow agent ahead of it), polling every
 * millisecond only while calls arrive and sleeping otherwise.
 * It must never run agent code on the caller's thread (that is par__call_start's
 * `_inline` case) and never drop a queued call: freeing runs them.
 */
#include "runtime/exec.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>

#include "loader/wire.h"
#include "runtime/native.h"
#include "util/jobq.h"

#define EXEC_WAIT_MAX_NS 1000000LL
#define EXEC_IDLE_NS 100000000LL

struct par_executor {
    par_jobq_t *q;
};

static __thread par_call_t *tl_exec_head, *tl_exec_tail;

/* A call's executor slot holds its queue link while it waits here. */
_Static_assert(sizeof(par_job_t) <= sizeof(((par_call_t *)0)->_exec),
               "par_job_t must fit the call's executor slot (PAR_CALL_EXEC_WORDS)");

static par_job_t *job_of(par_call_t *c)
{
    return (par_job_t *)(void *)c->_exec;
}

static par_call_t *call_of(par_job_t *j)
{
    return (par_call_t *)(void *)((char *)j - offsetof(par_call_t, _exec));
}

static void exec_run(par_job_t *j, void *ctx)
{
    (void)ctx;
    par_call_t *c = call_of(j);
    par__native_run(c);
    par__call_finish(c);
}

int par__exec_new(size_t threads, par_executor_t **out)
{
    par_executor_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return PAR_E_NO_MEMORY;
    par_jobq_opts_t o = {.threads = threads,
                         .max_threads = threads,
                         .wait_max_ns = EXEC_WAIT_MAX_NS,
                         .idle_ns = EXEC_IDLE_NS,
                         .run = exec_run};
    int rc = par_jobq_new(&o, &x->q);
    if (rc != PAR_OK) {
        free(x);
        return rc;
    }
    *out = x;
    return PAR_OK;
}

void par__exec_free(par_executor_t *x)
{
    if (x == NULL)
        return;
    par_jobq_free(x->q);
    free(x);
}

void par__exec_submit(par_executor_t *x, par_call_t *c)
{
    job_of(c)->next = NULL;
    if (par_wire_corked()) { /* the loop's turn: handed over together at its end */
        if (tl_exec_tail)
            job_of(tl_exec_tail)->next = job_of(c);
        else
            tl_exec_head = c;
        tl_exec_tail = c;
        return;
    }
    par_jobq_push(x->q, job_of(c), job_of(c), PAR_JOBQ_WAKE);
}

void par__exec_uncork(par_executor_t *x)
{
    if (tl_exec_head == NULL)
        return;
    assert(tl_exec_tail != NULL);
    par_jobq_push(x->q, job_of(tl_exec_head), job_of(tl_exec_tail), PAR_JOBQ_WAKE_IDLE);
    tl_exec_head = tl_exec_tail = NULL;
}
