/*
 * Unit tests for util/jobq.c: FIFO order, batch pushes, every thread of the
 * pool used, the watchdog (a job waiting behind a slow one, an inline job
 * that overruns), urgent tasks, and freeing with jobs still queued.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <par/par.h>

#include "util/jobq.h"

#define NJOBS 200

typedef struct tjob {
    par_job_t link;
    int id;
    int block; /* waits for `release` */
} tjob_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_order[NJOBS * 2];
static int g_ran;
static int g_running;     /* jobs inside run() now */
static int g_max_running; /* the most at once */
static int g_release;
static int g_overrun_calls;
static pthread_t g_threads[NJOBS];

static void reset(void)
{
    pthread_mutex_lock(&g_mu);
    g_ran = g_running = g_max_running = g_release = g_overrun_calls = 0;
    memset(g_order, -1, sizeof(g_order));
    pthread_mutex_unlock(&g_mu);
}

static void run(par_job_t *j, void *ctx)
{
    (void)ctx;
    tjob_t *t = (tjob_t *)j;
    pthread_mutex_lock(&g_mu);
    g_running++;
    if (g_running > g_max_running)
        g_max_running = g_running;
    pthread_cond_broadcast(&g_cv);
    while (t->block && !g_release)
        pthread_cond_wait(&g_cv, &g_mu);
    g_threads[g_ran] = pthread_self();
    g_order[g_ran++] = t->id;
    g_running--;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void overrun(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&g_mu);
    g_overrun_calls++;
    pthread_mutex_unlock(&g_mu);
}

static void release(void)
{
    pthread_mutex_lock(&g_mu);
    g_release = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void *release_later(void *arg)
{
    (void)arg;
    usleep(50000);
    release();
    return NULL;
}

/* Waits (at most 5 s) until *v >= want; returns *v. */
static int wait_for(int *v, int want)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&g_mu);
    while (*v < want && pthread_cond_timedwait(&g_cv, &g_mu, &dl) == 0)
        ;
    int got = *v;
    pthread_mutex_unlock(&g_mu);
    return got;
}

static par_jobq_t *make(size_t threads, size_t max, int64_t wait_max_ns, int64_t overrun_ns)
{
    par_jobq_opts_t o = {.threads = threads,
                         .max_threads = max,
                         .wait_max_ns = wait_max_ns,
                         .overrun_ns = overrun_ns,
                         .idle_ns = 100000000LL,
                         .run = run,
                         .overrun = overrun};
    par_jobq_t *q = NULL;
    assert_int_equal(par_jobq_new(&o, &q), PAR_OK);
    assert_non_null(q);
    return q;
}

static void test_fifo_order(void **state)
{
    (void)state;
    reset();
    static tjob_t jobs[NJOBS];
    par_jobq_t *q = make(1, 1, 0, 0);
    for (int i = 0; i < NJOBS; i++) {
        jobs[i] = (tjob_t){.id = i};
        par_jobq_push(q, &jobs[i].link, &jobs[i].link, PAR_JOBQ_WAKE);
    }
    par_jobq_free(q);
    assert_int_equal(g_ran, NJOBS);
    for (int i = 0; i < NJOBS; i++)
        assert_int_equal(g_order[i], i);
}

static void test_batch_push(void **state)
{
    (void)state;
    reset();
    static tjob_t jobs[51];
    par_jobq_t *q = make(1, 1, 0, 0);
    jobs[0] = (tjob_t){.id = 0, .block = 1};
    par_jobq_push(q, &jobs[0].link, &jobs[0].link, PAR_JOBQ_WAKE);
    assert_int_equal(wait_for(&g_running, 1), 1);
    for (int i = 1; i <= 50; i++) {
        jobs[i] = (tjob_t){.id = i};
        if (i > 1)
            jobs[i - 1].link.next = &jobs[i].link;
    }
    jobs[50].link.next = (par_job_t *)0x1; /* the tail's link is the queue's to set */
    par_jobq_push(q, &jobs[1].link, &jobs[50].link, PAR_JOBQ_WAKE_IDLE);
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_int_equal(st.queued, 50);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.threads, 1);
    release();
    par_jobq_free(q);
    assert_int_equal(g_ran, 51);
    for (int i = 0; i <= 50; i++)
        assert_int_equal(g_order[i], i);
}

static void test_every_thread_used(void **state)
{
    (void)state;
    reset();
    enum { N = 4 };
    static tjob_t jobs[N];
    par_jobq_t *q = make(N, N, 0, 0);
    for (int i = 0; i < N; i++) {
        jobs[i] = (tjob_t){.id = i, .block = 1};
        par_jobq_push(q, &jobs[i].link, &jobs[i].link, PAR_JOBQ_WAKE);
    }
    /* each blocks until released: all N run at once only on N threads */
    assert_int_equal(wait_for(&g_running, N), N);
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_int_equal(st.running, N);
    assert_int_equal(st.idle, 0);
    release();
    par_jobq_free(q);
    assert_int_equal(g_max_running, N);
    for (int i = 0; i < N; i++)
        for (int k = i + 1; k < N; k++)
            assert_false(pthread_equal(g_threads[i], g_threads[k]));
}

static void test_watchdog_wakes_for_a_waiting_job(void **state)
{
    (void)state;
    reset();
    static tjob_t slow, next;
    /* one thread, room for two: only the watchdog can start the second */
    par_jobq_t *q = make(1, 2, 1000000LL, 0);
    slow = (tjob_t){.id = 1, .block = 1};
    par_jobq_push(q, &slow.link, &slow.link, PAR_JOBQ_WAKE);
    assert_int_equal(wait_for(&g_running, 1), 1);
    /* a thread runs: this push wakes nobody, and the job waits behind the
     * slow one until the watchdog notices */
    next = (tjob_t){.id = 2};
    par_jobq_push(q, &next.link, &next.link, PAR_JOBQ_WAKE_IDLE);
    assert_int_equal(wait_for(&g_ran, 1), 1);
    assert_int_equal(g_order[0], 2);
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_true(st.waits >= 1);
    assert_int_equal(st.threads, 2);
    release();
    par_jobq_free(q);
    assert_int_equal(g_ran, 2);
}

static void test_a_bursts_threads_leave_when_idle(void **state)
{
    (void)state;
    reset();
    static tjob_t jobs[8];
    par_jobq_opts_t o = {.threads = 1,
                         .max_threads = 8,
                         .wait_max_ns = 1000000LL,
                         .idle_ns = 100000000LL,
                         .idle_exit_ns = 50000000LL,
                         .run = run};
    par_jobq_t *q = NULL;
    assert_int_equal(par_jobq_new(&o, &q), PAR_OK);
    for (int i = 0; i < 8; i++) {
        jobs[i] = (tjob_t){.id = i, .block = 1};
        par_jobq_push(q, &jobs[i].link, &jobs[i].link, PAR_JOBQ_WAKE);
    }
    /* the watchdog grows the pool for the blocked jobs */
    assert_true(wait_for(&g_running, 4) >= 4);
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_true(st.threads >= 4);
    release();
    assert_int_equal(wait_for(&g_ran, 8), 8);
    /* 50 ms idle later, back to the one it started with */
    for (int i = 0; i < 100; i++) {
        par_jobq_stats(q, &st);
        if (st.threads == 1)
            break;
        usleep(10000);
    }
    assert_int_equal(st.threads, 1);
    /* and it still serves */
    static tjob_t again;
    again = (tjob_t){.id = 99};
    par_jobq_push(q, &again.link, &again.link, PAR_JOBQ_WAKE);
    assert_int_equal(wait_for(&g_ran, 9), 9);
    par_jobq_free(q);
}

static void test_inline_overrun(void **state)
{
    (void)state;
    reset();
    static tjob_t a, b, c;
    par_jobq_t *q = make(0, 4, 0, 1000000LL);
    a = (tjob_t){.id = 1};
    b = (tjob_t){.id = 2};
    a.link.next = &b.link;
    par_jobq_push(q, &a.link, &b.link, PAR_JOBQ_NO_WAKE);
    int more = 0;
    par_job_t *j = par_jobq_inline_begin(q, &more);
    assert_ptr_equal(j, &a.link);
    assert_true(more);
    /* the inline job runs long: the watchdog calls overrun once and gives
     * the queued job a thread of its own while this one still runs */
    assert_int_equal(wait_for(&g_ran, 1), 1);
    assert_int_equal(g_order[0], 2);
    usleep(5000);
    par_jobq_inline_end(q);
    assert_int_equal(wait_for(&g_overrun_calls, 1), 1);
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_int_equal(st.overruns, 1);
    assert_int_equal(st.threads, 1);
    /* a short inline job is no overrun */
    c = (tjob_t){.id = 3};
    par_jobq_push(q, &c.link, &c.link, PAR_JOBQ_NO_WAKE);
    j = par_jobq_inline_begin(q, &more);
    assert_ptr_equal(j, &c.link);
    assert_false(more);
    par_jobq_inline_end(q);
    assert_null(par_jobq_inline_begin(q, &more));
    usleep(5000);
    par_jobq_stats(q, &st);
    assert_int_equal(st.overruns, 1);
    assert_int_equal(g_overrun_calls, 1);
    par_jobq_free(q);
}

static int g_urgent_ran;
static void urgent(void *arg)
{
    pthread_mutex_lock(&g_mu);
    g_urgent_ran += *(int *)arg;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void test_urgent_gets_a_thread(void **state)
{
    (void)state;
    reset();
    static tjob_t slow;
    int one = 1;
    /* one thread, busy: an urgent task starts another past max_threads */
    par_jobq_t *q = make(1, 1, 0, 0);
    slow = (tjob_t){.id = 1, .block = 1};
    par_jobq_push(q, &slow.link, &slow.link, PAR_JOBQ_WAKE);
    assert_int_equal(wait_for(&g_running, 1), 1);
    assert_int_equal(par_jobq_urgent(q, urgent, &one), 0);
    assert_int_equal(wait_for(&g_urgent_ran, 1), 1);
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_int_equal(st.threads, 2);
    release();
    par_jobq_free(q);
    assert_int_equal(g_urgent_ran, 1);
}

static void test_free_runs_what_is_queued(void **state)
{
    (void)state;
    reset();
    static tjob_t jobs[20];
    /* a pool with a thread that is busy when free is called */
    par_jobq_t *q = make(1, 1, 0, 0);
    jobs[0] = (tjob_t){.id = 0, .block = 1};
    par_jobq_push(q, &jobs[0].link, &jobs[0].link, PAR_JOBQ_WAKE);
    assert_int_equal(wait_for(&g_running, 1), 1);
    for (int i = 1; i < 10; i++) {
        jobs[i] = (tjob_t){.id = i};
        par_jobq_push(q, &jobs[i].link, &jobs[i].link, PAR_JOBQ_WAKE_IDLE);
    }
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_later, NULL), 0);
    par_jobq_free(q); /* joins after the slow job and the nine behind it */
    pthread_join(t, NULL);
    assert_int_equal(g_ran, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(g_order[i], i);
    /* a pool without threads: free runs them on the caller, in order */
    reset();
    q = make(0, 0, 0, 0);
    for (int i = 10; i < 20; i++) {
        jobs[i] = (tjob_t){.id = i};
        par_jobq_push(q, &jobs[i].link, &jobs[i].link, PAR_JOBQ_NO_WAKE);
    }
    par_jobq_stats_t st;
    par_jobq_stats(q, &st);
    assert_int_equal(st.queued, 10);
    assert_int_equal(g_ran, 0);
    par_jobq_free(q);
    assert_int_equal(g_ran, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(g_order[i], 10 + i);
        assert_true(pthread_equal(g_threads[i], pthread_self()));
    }
}

static void count_ids(par_job_t *j, void *arg)
{
    int *sum = arg;
    *sum = *sum * 10 + ((tjob_t *)j)->id;
}

static void test_foreach_sees_the_queue_in_order(void **state)
{
    (void)state;
    reset();
    static tjob_t jobs[3];
    par_jobq_t *q = make(0, 0, 0, 0);
    for (int i = 0; i < 3; i++) {
        jobs[i] = (tjob_t){.id = i + 1};
        par_jobq_push(q, &jobs[i].link, &jobs[i].link, PAR_JOBQ_NO_WAKE);
    }
    int seen = 0;
    par_jobq_foreach(q, count_ids, &seen);
    assert_int_equal(seen, 123);
    par_jobq_free(q);
    assert_int_equal(g_ran, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_batch_push),
        cmocka_unit_test(test_every_thread_used),
        cmocka_unit_test(test_watchdog_wakes_for_a_waiting_job),
        cmocka_unit_test(test_a_bursts_threads_leave_when_idle),
        cmocka_unit_test(test_inline_overrun),
        cmocka_unit_test(test_urgent_gets_a_thread),
        cmocka_unit_test(test_free_runs_what_is_queued),
        cmocka_unit_test(test_foreach_sees_the_queue_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
