/*
 * tests/unit/events_harness.h — what the tests of events with real workers
 * share (test_events.c, test_events_python.c): a sink that records what
 * reaches it, a supervisor whose hooks serve a streamed sibling "child", and
 * pools of real workers started through the supervisor API. One group per
 * executable (group_setup/group_teardown). Header-only: static functions.
 */
#ifndef PAR_TESTS_EVENTS_HARNESS_H
#define PAR_TESTS_EVENTS_HARNESS_H
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <par/agent.h>
#include <par/par.h>

#include "core/proto.h"
#include "loader/supervisor.h"
#include "pkg/manifest.h"
#include "runtime/native.h"

#define MAX_EVENTS 512

/* ---- a sink that records ------------------------------------------------------------ */

typedef struct rec {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started, started_before_event_violation;
    int n;
    char type[MAX_EVENTS][16];
    char data[MAX_EVENTS][48];
    int answer; /* what event returns: 0 ack, 1 hold */
    int done, status;
    int after_done;          /* events that came after `done`: must stay 0 */
    int sleep_us;            /* a slow sink */
    par_pool_t *cancel_pool; /* the sink cancels its own call at event `cancel_at` */
    int cancel_at, done_in_sink;
    char output[2048];
} rec_t;

static inline void rec_init(rec_t *r, int answer)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->answer = answer;
}

static inline void rec_started(par_call_t *c)
{
    rec_t *r = c->sink_data;
    pthread_mutex_lock(&r->lock);
    r->started++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static inline int rec_event(par_call_t *c, const char *type, size_t tlen, const char *data,
                            size_t len)
{
    rec_t *r = c->sink_data;
    pthread_mutex_lock(&r->lock);
    if (!r->started)
        r->started_before_event_violation = 1;
    if (r->done)
        r->after_done++;
    if (r->n < MAX_EVENTS) {
        snprintf(r->type[r->n], sizeof(r->type[0]), "%.*s", (int)tlen, type);
        snprintf(r->data[r->n], sizeof(r->data[0]), "%.*s", (int)len, data);
    }
    r->n++;
    pthread_cond_broadcast(&r->cond);
    int answer = r->answer;
    int cancel = r->cancel_pool && r->n == r->cancel_at;
    pthread_mutex_unlock(&r->lock);
    if (r->sleep_us)
        usleep((useconds_t)r->sleep_us);
    if (cancel) { /* from inside the sink: `done` waits until it returns */
        assert_int_equal(par_pool_cancel_grace(r->cancel_pool, c, "from the sink", 5000), PAR_OK);
        pthread_mutex_lock(&r->lock);
        r->done_in_sink = r->done;
        pthread_mutex_unlock(&r->lock);
    }
    return answer;
}

static const par_call_sink_t rec_sink = {rec_started, rec_event};

static inline void rec_done(par_call_t *c)
{
    rec_t *r = c->data;
    pthread_mutex_lock(&r->lock);
    assert_int_equal(r->done, 0); /* exactly once */
    r->status = c->status;
    snprintf(r->output, sizeof(r->output), "%.*s", (int)c->output.len,
             c->output.data ? c->output.data : "");
    r->done = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    par__call_free(c);
}

/* Waits up to `ms` for `pred`; returns it. */
#define WAIT_FOR(r, pred, ms)                                                                      \
    ({                                                                                             \
        int64_t until_ = par__now_ms() + (ms);                                                     \
        pthread_mutex_lock(&(r)->lock);                                                            \
        while (!(pred) && par__now_ms() < until_) {                                                \
            pthread_mutex_unlock(&(r)->lock);                                                      \
            usleep(2000);                                                                          \
            pthread_mutex_lock(&(r)->lock);                                                        \
        }                                                                                          \
        int ok_ = (pred);                                                                          \
        pthread_mutex_unlock(&(r)->lock);                                                          \
        ok_;                                                                                       \
    })

/* ---- the supervisor and pools --------------------------------------------------------- */

static par_super_t *sup;
static char state_dir[64];

/* A streamed sibling call a worker asked for: three events, then its output. */
static inline void *child_run(void *arg)
{
    par_call_t *c = arg;
    for (int i = 0; i < 3; i++) {
        char d[32];
        int n = snprintf(d, sizeof(d), "{\"k\":%d}", i);
        assert_int_equal(c->sink->event(c, "part", 4, d, (size_t)n), 0);
    }
    par_buf_appends(&c->output, "{\"child\":\"done\"}");
    c->status = PAR_OK;
    c->done(c);
    return NULL;
}

static inline int hook_call_start(void *owner, par_call_t *c)
{
    (void)owner;
    if (strcmp(c->agent_id, "child") != 0 || c->sink == NULL) {
        par_buf_appends(&c->output, "no such agent");
        return PAR_E_AGENT_NOT_FOUND;
    }
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, child_run, c), 0);
    pthread_detach(t);
    return PAR_OK;
}

static inline void hook_call_finish(par_call_t *c)
{
    c->done(c);
}

static inline void hook_tick(void *owner, int64_t now_ms)
{
    (void)owner, (void)now_ms;
}

typedef struct pool {
    par_pool_t *p;
    par_manifest_t *m;
} pool_t;

static inline par_manifest_t *manifest_of(const char *yaml)
{
    par_manifest_t *m = NULL;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_manifest_parse(yaml, strlen(yaml), &m, &err);
    if (rc != PAR_OK)
        fail_msg("%.*s", (int)err.len, err.data);
    par_buf_free(&err);
    return m;
}

static inline par_manifest_t *manifest_file(const char *path)
{
    static char text[1 << 16];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return manifest_of(text);
}

static inline size_t export_idx(const par_manifest_t *m, const char *name)
{
    for (size_t i = 0; i < m->export_count; i++)
        if (strcmp(m->exports[i].name, name) == 0)
            return i;
    fail_msg("no export %s", name);
    return 0;
}

static inline void pool_start(pool_t *pl, par_manifest_t *m, const char *root, const char *worker,
                              unsigned workers, unsigned concurrency)
{
    pl->m = m;
    par_pool_spec_t spec = {
        .name = m->name,
        .version = m->package_version,
        .root = root,
        .manifest = m,
        .worker_path = worker,
        .python = "/usr/bin/python3",
        .python_shim = PAR_TEST_SOURCE_DIR "/worker/python/par_worker.py",
        .uid = -1,
        .gid = -1,
        .min_workers = workers,
        .max_workers = workers,
        .concurrency = concurrency,
        .queue_max = 64,
        .max_input = 1u << 20,
        .max_output = 1u << 20,
        .max_event = 64u << 10,
    };
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_pool_start(sup, &spec, &pl->p, &err);
    if (rc != PAR_OK)
        fail_msg("pool %s: %.*s", m->name, (int)err.len, err.data);
    par_buf_free(&err);
}

static inline void pool_stop(pool_t *pl)
{
    par_pool_stop(pl->p, 1);
    par_pool_release(pl->p);
    par_manifest_free(pl->m);
}

static inline pool_t native_pool(unsigned workers, unsigned concurrency)
{
    pool_t pl;
    pool_start(&pl, manifest_file(PAR_TEST_SOURCE_DIR "/tests/fixtures/events/agent.yaml"),
               PAR_TEST_BUILD_DIR "/stage/events", PAR_TEST_BUILD_DIR "/par-worker", workers,
               concurrency);
    return pl;
}

static inline pool_t fake_pool(void)
{
    pool_t pl;
    pool_start(&pl,
               manifest_of("name: fake\nruntime: native\nentrypoint: lib/libfake.so:f\n"
                           "metadata:\n  version: 1.0.0\n"),
               PAR_TEST_SOURCE_DIR "/tests/unit/data",
               PAR_TEST_SOURCE_DIR "/tests/unit/data/fake_worker.py", 1, 8);
    return pl;
}

/* Submits a call of export `x` (a sink when `sink`); `r` records its end. */
static inline par_call_t *submit(pool_t *pl, rec_t *r, const char *export_name, const char *input,
                                 int sink)
{
    par_call_t *c = par__call_new();
    assert_non_null(c);
    snprintf(c->agent_id, sizeof(c->agent_id), "%s/%s", pl->m->name, export_name);
    snprintf(c->request_id, sizeof(c->request_id), "req-%p", (void *)c);
    c->input = input;
    c->input_len = strlen(input);
    c->_export_idx = export_idx(pl->m, export_name);
    c->deadline_ms = par__now_ms() + 60000;
    c->done = rec_done;
    c->data = r;
    if (sink) {
        c->sink = &rec_sink;
        c->sink_data = r;
    }
    assert_int_equal(par_pool_submit(pl->p, c), PAR_OK);
    return c;
}

static inline int group_setup(void **state)
{
    (void)state;
    strcpy(state_dir, "/tmp/par-test-events-XXXXXX");
    assert_non_null(mkdtemp(state_dir));
    par_super_hooks_t hooks = {.owner = NULL,
                               .call_start = hook_call_start,
                               .call_finish = hook_call_finish,
                               .tick = hook_tick};
    assert_int_equal(par_super_new(&hooks, state_dir, &sup), PAR_OK);
    return 0;
}

static inline int group_teardown(void **state)
{
    (void)state;
    par_super_free(sup);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static inline int worker_pids(par_pool_t *p, int *pids, int max)
{
    json_t *a = par_pool_describe(p);
    int n = 0;
    size_t i;
    json_t *w;
    json_array_foreach(a, i, w)
    {
        if (n < max && strcmp(json_string_value(json_object_get(w, "state")), "ready") == 0)
            pids[n++] = (int)json_integer_value(json_object_get(w, "pid"));
    }
    json_decref(a);
    return n;
}

#endif
