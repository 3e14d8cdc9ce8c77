/* Unit tests for http/workq.c, the admin queue: jobs run in the order
 * pushed, a full queue refuses with PAR_E_SERVER_BUSY (and runs nothing it
 * refused), the threads serve jobs side by side, and freeing the queue
 * finishes the running jobs and hands the waiting ones to `drop`. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <par/par.h>

#include "http/workq.h"

/* A gate jobs wait at until the test opens it. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int gate_open, waiting_at_gate;
static int order[64], norder, dropped[64], ndropped;

static void reset(void)
{
    gate_open = waiting_at_gate = norder = ndropped = 0;
}

static void gated(void *arg)
{
    pthread_mutex_lock(&mu);
    waiting_at_gate++;
    pthread_cond_broadcast(&cv);
    while (!gate_open)
        pthread_cond_wait(&cv, &mu);
    order[norder++] = (int)(intptr_t)arg;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void record(void *arg)
{
    pthread_mutex_lock(&mu);
    order[norder++] = (int)(intptr_t)arg;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void drop(void *arg)
{
    dropped[ndropped++] = (int)(intptr_t)arg;
}

static void wait_at_gate(int n)
{
    pthread_mutex_lock(&mu);
    while (waiting_at_gate < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void open_gate(void)
{
    pthread_mutex_lock(&mu);
    gate_open = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void wait_done(int n)
{
    pthread_mutex_lock(&mu);
    while (norder < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void test_fifo_and_full(void **state)
{
    (void)state;
    reset();
    par_workq_t *q;
    assert_int_equal(par__workq_new(1, 3, &q), PAR_OK);
    /* the one thread is held by job 0; three more wait; a fifth is refused */
    assert_int_equal(par__workq_push(q, gated, (void *)0), PAR_OK);
    wait_at_gate(1);
    for (intptr_t i = 1; i <= 3; i++)
        assert_int_equal(par__workq_push(q, record, (void *)i), PAR_OK);
    assert_int_equal(par__workq_waiting(q), 3);
    assert_int_equal(par__workq_push(q, record, (void *)99), PAR_E_SERVER_BUSY);
    assert_int_equal(par__workq_waiting(q), 3);
    open_gate();
    wait_done(4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(order[i], i);
    /* room again once they ran */
    assert_int_equal(par__workq_push(q, record, (void *)4), PAR_OK);
    wait_done(5);
    assert_int_equal(order[4], 4);
    par__workq_free(q, drop);
    assert_int_equal(ndropped, 0);
    assert_int_equal(norder, 5); /* 99 never ran */
}

static void test_threads_side_by_side(void **state)
{
    (void)state;
    reset();
    par_workq_t *q;
    assert_int_equal(par__workq_new(2, 4, &q), PAR_OK);
    /* two gated jobs run at once: both reach the gate before it opens */
    assert_int_equal(par__workq_push(q, gated, (void *)1), PAR_OK);
    assert_int_equal(par__workq_push(q, gated, (void *)2), PAR_OK);
    wait_at_gate(2);
    assert_int_equal(par__workq_waiting(q), 0);
    open_gate();
    wait_done(2);
    par__workq_free(q, NULL);
}

static void *free_later(void *arg)
{
    par__workq_free(arg, drop);
    return NULL;
}

static void test_free_drops_waiting(void **state)
{
    (void)state;
    reset();
    par_workq_t *q;
    assert_int_equal(par__workq_new(1, 8, &q), PAR_OK);
    assert_int_equal(par__workq_push(q, gated, (void *)0), PAR_OK);
    wait_at_gate(1);
    assert_int_equal(par__workq_push(q, record, (void *)5), PAR_OK);
    assert_int_equal(par__workq_push(q, record, (void *)6), PAR_OK);
    /* free waits for the running job, then drops the two that wait */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_later, q), 0);
    usleep(100000);
    pthread_mutex_lock(&mu);
    assert_int_equal(norder, 0); /* still running: free is waiting for it */
    pthread_mutex_unlock(&mu);
    open_gate();
    pthread_join(t, NULL);
    /* job 0 ran (free waited for it); 5 and 6 were dropped, unless the
     * machine was so slow that free had not begun when the gate opened:
     * either way each job ran or was dropped, once, in order */
    assert_int_equal(order[0], 0);
    assert_int_equal(norder + ndropped, 3);
    int seen[2] = {0, 0};
    for (int i = 1; i < norder; i++)
        seen[order[i] - 5]++;
    for (int i = 0; i < ndropped; i++)
        seen[dropped[i] - 5]++;
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    if (ndropped == 2) {
        assert_int_equal(dropped[0], 5);
        assert_int_equal(dropped[1], 6);
    }
    par__workq_free(NULL, drop); /* a no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_full),
        cmocka_unit_test(test_threads_side_by_side),
        cmocka_unit_test(test_free_drops_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
