/*
 * tests/unit/runs_harness.h — what the run tests over a real runtime share
 * (test_runs_events.c, test_runs_runtime.c): a watcher that follows a run to
 * its end as a client would, starting a run of an agent, the build's
 * directory, and deploying a fixture package into `rt`, the runtime under test.
 */
#ifndef PAR_TESTS_RUNS_HARNESS_H
#define PAR_TESTS_RUNS_HARNESS_H

static char dir[64], build[PATH_MAX], worker[PATH_MAX + 32];
static par_runtime_t *rt;

/* build/ and build/par-worker, from this test's own path (build/tests/x). */
static int find_build(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    snprintf(build, sizeof(build), "%s", dirname(dirname(exe)));
    snprintf(worker, sizeof(worker), "%s/par-worker", build);
    return 0;
}

static void deploy(const char *file)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/test-packages/%s", build, file);
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par__deploy_path(rt, p, &err, NULL);
    if (rc != PAR_OK)
        fail_msg("deploy %s: %.*s", p, (int)err.len, err.data ? err.data : "");
    par_buf_free(&err);
}

/* ---- a watcher that waits ---------------------------------------------------------- */

typedef struct {
    par_run_watch_t w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int news;
} waiter_t;

static void on_notify(par_run_watch_t *w)
{
    waiter_t *k = w->data;
    pthread_mutex_lock(&k->mu);
    k->news = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* Follows `r` to its end as a client would; returns every event's text. */
static char *follow(par_run_t *r, int64_t timeout_ms)
{
    waiter_t k = {.w = {.notify = on_notify}};
    k.w.data = &k;
    pthread_mutex_init(&k.mu, NULL);
    pthread_cond_init(&k.cv, NULL);
    par_buf_t all;
    par_buf_init(&all, 0);
    uint64_t at = 0;
    int ended = 0;
    int64_t until = par__now_ms() + timeout_ms;
    assert_int_equal(par_run_watch(r, &k.w, 0), PAR_OK);
    while (!ended && par__now_ms() < until) {
        pthread_mutex_lock(&k.mu);
        while (!k.news && par__now_ms() < until) {
            pthread_mutex_unlock(&k.mu);
            usleep(2000);
            pthread_mutex_lock(&k.mu);
        }
        k.news = 0;
        pthread_mutex_unlock(&k.mu);
        uint64_t last = at;
        assert_int_equal(par_run_read(r, at, 1 << 20, &all, &last, &ended), PAR_OK);
        at = last;
        par_run_delivered(r, &k.w, at);
    }
    par_run_unwatch(r, &k.w, 0);
    assert_true(ended);
    par_buf_terminate(&all);
    return all.data;
}

static par_call_t *call_of(const char *agent, const char *input)
{
    par_call_t *c = par__call_new();
    assert_non_null(c);
    snprintf(c->agent_id, sizeof(c->agent_id), "%s", agent);
    c->input = input;
    c->input_len = strlen(input);
    c->subject = strdup("alice");
    return c;
}

static par_run_t *run(const char *agent, const char *input)
{
    par_call_t *c = call_of(agent, input);
    par_run_t *r = NULL;
    unsigned retry = 0;
    int rc = par_run_start(rt, c, NULL, &r, &retry);
    if (rc != PAR_OK)
        fail_msg("start %s: %s %.*s", agent, par_status_name(rc), (int)c->output.len,
                 c->output.data ? c->output.data : "");
    return r;
}

#endif
