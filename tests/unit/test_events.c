/*
 * Unit tests for the events of runs below HTTP: loader/events.c and the
 * event and cancel paths of loader/calls.c, frames.c and supervisor.c, with
 * real pools of real worker processes started through the supervisor API —
 * par-worker running tests/fixtures/events (a native agent that emits, polls
 * or ignores cancels), tests/unit/data/fake_worker.py (a worker that breaks
 * the rules of events on purpose) and the Python worker running
 * tests/fixtures/py-events — and a sink that records what reaches it.
 * Also: an agent built against the agent ABI header before events runs
 * under this host, and par_ctx_emit against a host that predates events.
 */
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

static void rec_init(rec_t *r, int answer)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->answer = answer;
}

static void rec_started(par_call_t *c)
{
    rec_t *r = c->sink_data;
    pthread_mutex_lock(&r->lock);
    r->started++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static int rec_event(par_call_t *c, const char *type, size_t tlen, const char *data, size_t len)
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

static void rec_done(par_call_t *c)
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
static void *child_run(void *arg)
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

static int hook_call_start(void *owner, par_call_t *c)
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

static void hook_call_finish(par_call_t *c)
{
    c->done(c);
}

static void hook_tick(void *owner, int64_t now_ms)
{
    (void)owner, (void)now_ms;
}

typedef struct pool {
    par_pool_t *p;
    par_manifest_t *m;
} pool_t;

static par_manifest_t *manifest_of(const char *yaml)
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

static par_manifest_t *manifest_file(const char *path)
{
    static char text[1 << 16];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return manifest_of(text);
}

static size_t export_idx(const par_manifest_t *m, const char *name)
{
    for (size_t i = 0; i < m->export_count; i++)
        if (strcmp(m->exports[i].name, name) == 0)
            return i;
    fail_msg("no export %s", name);
    return 0;
}

static void pool_start(pool_t *pl, par_manifest_t *m, const char *root, const char *worker,
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

static void pool_stop(pool_t *pl)
{
    par_pool_stop(pl->p, 1);
    par_pool_release(pl->p);
    par_manifest_free(pl->m);
}

static pool_t native_pool(unsigned workers, unsigned concurrency)
{
    pool_t pl;
    pool_start(&pl, manifest_file(PAR_TEST_SOURCE_DIR "/tests/fixtures/events/agent.yaml"),
               PAR_TEST_BUILD_DIR "/stage/events", PAR_TEST_BUILD_DIR "/par-worker", workers,
               concurrency);
    return pl;
}

static pool_t fake_pool(void)
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
static par_call_t *submit(pool_t *pl, rec_t *r, const char *export_name, const char *input,
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

static int group_setup(void **state)
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

static int group_teardown(void **state)
{
    (void)state;
    par_super_free(sup);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- native agents in par-worker ------------------------------------------------------ */

static void events_arrive_in_order_after_started(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    rec_t r;
    rec_init(&r, 0);
    submit(&pl, &r, "", "300", 1);
    assert_true(WAIT_FOR(&r, r.done, 20000));
    assert_int_equal(r.status, PAR_OK);
    assert_string_equal(r.output, "{\"emitted\":300}");
    assert_int_equal(r.started, 1);
    assert_false(r.started_before_event_violation);
    assert_int_equal(r.n, 300);
    for (int i = 0; i < 300; i++) {
        char want[32];
        snprintf(want, sizeof(want), "{\"i\":%d}", i);
        assert_string_equal(r.type[i], "tick");
        assert_string_equal(r.data[i], want);
    }
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.events, 300);
    assert_int_equal(st.events_invalid, 0);
    pool_stop(&pl);
}

static void a_held_window_blocks_the_agent_until_acked(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    rec_t r;
    rec_init(&r, 1); /* hold every event's credit */
    par_call_t *c = submit(&pl, &r, "", "100", 1);
    assert_true(WAIT_FOR(&r, r.n >= PAR_PROTO_EVENT_WINDOW, 10000));
    usleep(300 * 1000);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n, PAR_PROTO_EVENT_WINDOW); /* the agent waits for credit */
    assert_false(r.done);
    pthread_mutex_unlock(&r.lock);
    par_pool_events_ack(pl.p, c, 10); /* exactly 10 more */
    assert_true(WAIT_FOR(&r, r.n >= PAR_PROTO_EVENT_WINDOW + 10, 10000));
    usleep(300 * 1000);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n, PAR_PROTO_EVENT_WINDOW + 10);
    assert_false(r.done);
    r.answer = 0; /* from now on credit goes back at once */
    pthread_mutex_unlock(&r.lock);
    par_pool_events_ack(pl.p, c, PAR_PROTO_EVENT_WINDOW);
    assert_true(WAIT_FOR(&r, r.done, 10000));
    assert_int_equal(r.status, PAR_OK);
    assert_int_equal(r.n, 100);
    pool_stop(&pl);
}

static void invalid_events_are_refused_to_the_agent(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    rec_t r;
    rec_init(&r, 0);
    submit(&pl, &r, "bad", "0", 1);
    assert_true(WAIT_FOR(&r, r.done, 10000));
    assert_int_equal(r.status, PAR_OK);
    char want[128];
    snprintf(want, sizeof(want), "{\"json\":%d,\"type\":%d,\"size\":%d,\"ok\":0}",
             PAR_E_INVALID_EVENT, PAR_E_INVALID_EVENT, PAR_E_INVALID_EVENT);
    assert_string_equal(r.output, want);
    assert_int_equal(r.n, 1); /* only the valid one was sent */
    assert_string_equal(r.type[0], "data");
    assert_string_equal(r.data[0], "{\"fine\":1}");
    pool_stop(&pl);
}

static void a_unary_call_s_events_are_dropped(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    rec_t r;
    rec_init(&r, 0);
    submit(&pl, &r, "", "500", 0); /* no sink: more than the window, all acked */
    assert_true(WAIT_FOR(&r, r.done, 20000));
    assert_int_equal(r.status, PAR_OK);
    assert_string_equal(r.output, "{\"emitted\":500}");
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.events_dropped, 500);
    pool_stop(&pl);
}

static int worker_pids(par_pool_t *p, int *pids, int max)
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

static void a_cancel_reaches_a_running_native_agent(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    int pid0[1];
    assert_int_equal(worker_pids(pl.p, pid0, 1), 1);
    rec_t r;
    rec_init(&r, 0);
    par_call_t *c = submit(&pl, &r, "poll-cancel", "0", 1);
    assert_true(WAIT_FOR(&r, r.n == 1, 10000)); /* "running" */
    assert_string_equal(r.type[0], "running");
    assert_int_equal(par_pool_cancel_grace(pl.p, c, "cancelled by the test", 1000), PAR_OK);
    assert_true(WAIT_FOR(&r, r.done, 1000));
    assert_int_equal(r.status, PAR_E_CANCELLED);
    assert_string_equal(r.output, "cancelled by the test");
    usleep(1500 * 1000); /* past the grace: the agent answered it, nothing was killed */
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.cancel_kills, 0);
    int pid1[1];
    assert_int_equal(worker_pids(pl.p, pid1, 1), 1);
    assert_int_equal(pid0[0], pid1[0]);
    pool_stop(&pl);
}

static void a_cancel_wakes_an_emit_blocked_on_its_window(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    rec_t r;
    rec_init(&r, 1); /* never any credit: the agent blocks after the window */
    par_call_t *c = submit(&pl, &r, "", "1000", 1);
    assert_true(WAIT_FOR(&r, r.n == PAR_PROTO_EVENT_WINDOW, 10000));
    assert_int_equal(par_pool_cancel_grace(pl.p, c, "stop", 1000), PAR_OK);
    assert_true(WAIT_FOR(&r, r.done, 1000));
    usleep(1500 * 1000);
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.cancel_kills, 0); /* its emit returned PAR_E_CANCELLED: it answered */
    pool_stop(&pl);
}

static void an_agent_ignoring_a_cancel_is_killed_after_the_grace(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);    /* one worker: the ignoring call and a victim */
    pool_t other = native_pool(1, 4); /* another worker: unharmed */
    int pid0[1];
    assert_int_equal(worker_pids(pl.p, pid0, 1), 1);
    rec_t a, victim, sibling;
    rec_init(&a, 0), rec_init(&victim, 0), rec_init(&sibling, 0);
    par_call_t *ca = submit(&pl, &a, "ignore-cancel", "30000", 1);
    submit(&pl, &victim, "ignore-cancel", "30000", 1);
    submit(&other, &sibling, "ignore-cancel", "1500", 1);
    assert_true(WAIT_FOR(&a, a.n == 1, 10000));
    if (!WAIT_FOR(&victim, victim.n == 1, 10000)) {
        par_pool_stats_t st0;
        par_pool_stats(pl.p, &st0);
        json_t *d = par_pool_describe(pl.p);
        char *ds = json_dumps(d, 0);
        fail_msg("victim: started %d events %llu done %d: %s", victim.started,
                 (unsigned long long)st0.events, victim.done, ds);
    }
    int64_t t0 = par__now_ms();
    assert_int_equal(par_pool_cancel_grace(pl.p, ca, "cancelled", 300), PAR_OK);
    assert_true(WAIT_FOR(&a, a.done, 1000));
    assert_int_equal(a.status, PAR_E_CANCELLED);
    /* the other call of the killed worker fails as in a crash */
    assert_true(WAIT_FOR(&victim, victim.done, 5000));
    assert_true(par__now_ms() - t0 >= 300);
    assert_int_equal(victim.status, PAR_E_AGENT_CRASHED);
    assert_non_null(strstr(victim.output, "cancel"));
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.cancel_kills, 1);
    assert_int_equal(st.crashes, 0); /* a kill, not a crash: no backoff, no crash loop */
    /* the sibling on another worker finishes as if nothing happened */
    assert_true(WAIT_FOR(&sibling, sibling.done, 10000));
    assert_int_equal(sibling.status, PAR_OK);
    assert_string_equal(sibling.output, "{\"ignored\":true}");
    /* and the pool has a new worker that serves */
    rec_t after;
    rec_init(&after, 0);
    submit(&pl, &after, "echo", "[1,2]", 0);
    assert_true(WAIT_FOR(&after, after.done, 15000));
    assert_int_equal(after.status, PAR_OK);
    assert_string_equal(after.output, "[1,2]");
    int pid1[1];
    assert_int_equal(worker_pids(pl.p, pid1, 1), 1);
    assert_int_not_equal(pid0[0], pid1[0]);
    pool_stop(&other);
    pool_stop(&pl);
}

static void a_cancel_while_the_sink_runs_finishes_the_call_once(void **state)
{
    (void)state;
    pool_t pl = native_pool(1, 4);
    /* from another thread, while events flow through a slow sink */
    rec_t r;
    rec_init(&r, 0);
    r.sleep_us = 300;
    par_call_t *c = submit(&pl, &r, "", "100000", 1);
    assert_true(WAIT_FOR(&r, r.n >= 50, 10000));
    assert_int_equal(par_pool_cancel_grace(pl.p, c, "mid-stream", 2000), PAR_OK);
    assert_true(WAIT_FOR(&r, r.done, 1000));
    assert_int_equal(r.status, PAR_E_CANCELLED);
    usleep(200 * 1000);
    assert_int_equal(r.after_done, 0);
    /* from inside the sink itself */
    rec_t s2;
    rec_init(&s2, 0);
    s2.cancel_pool = pl.p;
    s2.cancel_at = 10;
    submit(&pl, &s2, "", "100000", 1);
    assert_true(WAIT_FOR(&s2, s2.done, 10000));
    assert_int_equal(s2.status, PAR_E_CANCELLED);
    assert_string_equal(s2.output, "from the sink");
    assert_int_equal(s2.done_in_sink, 0); /* deferred until the sink returned */
    usleep(200 * 1000);
    assert_int_equal(s2.after_done, 0);
    assert_int_equal(s2.n, 10);
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.cancel_kills, 0);
    pool_stop(&pl);
}

/* ---- a worker that breaks the rules --------------------------------------------------- */

static void raw_event(pool_t *pl, const char *header_json, const char *body, int expect_status,
                      const char *expect_msg)
{
    rec_t hold, bad, rel;
    rec_init(&hold, 0), rec_init(&bad, 0), rec_init(&rel, 0);
    submit(pl, &hold, "", "{\"do\":\"hold\"}", 1);
    json_t *cmd = json_pack("{s:s, s:o, s:s}", "do", "raw", "header",
                            header_json ? json_string(header_json) : json_null(), "body", body);
    char *in = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    submit(pl, &bad, "", in, 1);
    assert_true(WAIT_FOR(&bad, bad.done, 10000));
    free(in);
    assert_int_equal(bad.status, expect_status);
    if (expect_msg && strstr(bad.output, expect_msg) == NULL)
        fail_msg("'%s' does not say '%s'", bad.output, expect_msg);
    /* the worker's other call is unharmed */
    submit(pl, &rel, "", "{\"do\":\"release\"}", 0);
    assert_true(WAIT_FOR(&hold, hold.done, 10000));
    assert_int_equal(hold.status, PAR_OK);
    assert_string_equal(hold.output, "{\"released\": true}");
    assert_true(WAIT_FOR(&rel, rel.done, 10000));
}

static void invalid_events_from_a_worker_fail_only_their_call(void **state)
{
    (void)state;
    pool_t pl = fake_pool();
    raw_event(&pl, "{\"event\":\"t\"}", "{\"a\":", PAR_E_INVALID_EVENT, "not one JSON value");
    raw_event(&pl, "{\"event\":\"a b\"}", "1", PAR_E_INVALID_EVENT, "outside [A-Za-z0-9._:-]");
    raw_event(&pl, "{\"event\":7}", "1", PAR_E_INVALID_EVENT, "not a string");
    raw_event(&pl, "[1]", "1", PAR_E_INVALID_EVENT, "not a JSON object");
    raw_event(&pl, "{\"event\":\"x\"}", "", PAR_E_INVALID_EVENT, "not one JSON value");
    char long_type[80];
    memset(long_type, 'x', 65);
    long_type[65] = '\0';
    char hdr[120];
    snprintf(hdr, sizeof(hdr), "{\"event\":\"%s\"}", long_type);
    raw_event(&pl, hdr, "1", PAR_E_INVALID_EVENT, "65 characters");
    /* over max_event (64 KB here) */
    size_t big = (64u << 10) + 3;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    body[0] = '1';
    body[big] = '\0';
    raw_event(&pl, NULL, body, PAR_E_INVALID_EVENT, "over the cap");
    free(body);
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.events_invalid, 7);
    assert_int_equal(st.crashes, 0);
    pool_stop(&pl);
}

static void valid_event_shapes_from_a_worker(void **state)
{
    (void)state;
    pool_t pl = fake_pool();
    /* no header, an empty type: "data"; an escaped type decodes */
    const char *headers[] = {NULL, "{\"event\":\"\"}", "{}",
                             "{\"event\":\"run.step:x_1-\\u0041\"}"};
    const char *types[] = {"data", "data", "data", "run.step:x_1-A"};
    for (int i = 0; i < 4; i++) {
        rec_t r, rel;
        rec_init(&r, 0), rec_init(&rel, 0);
        json_t *cmd = json_pack("{s:s, s:o, s:s}", "do", "raw", "header",
                                headers[i] ? json_string(headers[i]) : json_null(), "body",
                                " [1, {\"x\": null}] ");
        char *in = json_dumps(cmd, JSON_COMPACT);
        json_decref(cmd);
        par_call_t *c = submit(&pl, &r, "", in, 1);
        free(in);
        assert_true(WAIT_FOR(&r, r.n == 1, 10000));
        assert_string_equal(r.type[0], types[i]);
        assert_string_equal(r.data[0], " [1, {\"x\": null}] ");
        assert_int_equal(par_pool_cancel(pl.p, c, "done"), PAR_OK);
        assert_true(WAIT_FOR(&r, r.done, 1000));
    }
    pool_stop(&pl);
}

static void a_stray_event_is_ignored_and_counted(void **state)
{
    (void)state;
    pool_t pl = fake_pool();
    rec_t r;
    rec_init(&r, 0);
    submit(&pl, &r, "", "{\"do\":\"stray\"}", 1);
    assert_true(WAIT_FOR(&r, r.done, 10000));
    assert_int_equal(r.status, PAR_OK);
    assert_int_equal(r.n, 0);
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.events_stray, 1);
    pool_stop(&pl);
}

static void a_streamed_call_forwards_events_as_call_event(void **state)
{
    (void)state;
    pool_t pl = fake_pool();
    rec_t r;
    rec_init(&r, 0);
    submit(&pl, &r, "", "{\"do\":\"stream\",\"agent\":\"child\"}", 0);
    assert_true(WAIT_FOR(&r, r.done, 10000));
    assert_int_equal(r.status, PAR_OK);
    json_t *out = json_loads(r.output, 0, NULL);
    assert_non_null(out);
    json_t *want = json_loads("{\"events\":[[\"part\",{\"k\":0}],[\"part\",{\"k\":1}],"
                              "[\"part\",{\"k\":2}]],\"status\":0,\"result\":{\"child\":\"done\"}}",
                              0, NULL);
    assert_true(json_equal(out, want));
    json_decref(out);
    json_decref(want);
    pool_stop(&pl);
}

/* ---- the agent ABI ------------------------------------------------------------------- */

static void an_agent_built_against_the_old_header_works(void **state)
{
    (void)state;
    pool_t pl;
    pool_start(&pl,
               manifest_of("name: abi-old\nruntime: native\nentrypoint: lib/libabiold.so:hello\n"
                           "metadata:\n  version: 0.1.0\n  par: {abi: 1}\n"),
               PAR_TEST_BUILD_DIR "/stage/abi-old", PAR_TEST_BUILD_DIR "/par-worker", 1, 4);
    rec_t r;
    rec_init(&r, 0);
    submit(&pl, &r, "", "{\"x\":1}", 1);
    assert_true(WAIT_FOR(&r, r.done, 10000));
    assert_int_equal(r.status, PAR_OK);
    assert_string_equal(r.output, "{\"old\":true,\"cancelled\":0,\"span\":0,\"input\":{\"x\":1}}");
    assert_int_equal(r.started, 1);
    pool_stop(&pl);
}

static int fake_emit(par_agent_ctx_t *ctx, const char *t, const char *j, size_t n)
{
    (void)ctx, (void)t, (void)j, (void)n;
    return 0;
}

static void emit_on_a_host_that_predates_events(void **state)
{
    (void)state;
    par_agent_api_t api = {.abi = PAR_AGENT_ABI, .emit = fake_emit};
    par_agent_ctx_t ctx = {.api = &api};
    api.size = (uint32_t)offsetof(par_agent_api_t, emit); /* the 0.1 table */
    assert_int_equal(par_ctx_emit(&ctx, "data", "1", 1), PAR_E_INVALID_ARGUMENT);
    api.size = (uint32_t)sizeof(api);
    assert_int_equal(par_ctx_emit(&ctx, "data", "1", 1), 0);
}

/* ---- in-process native agents (runtime/native.c) ---------------------------------------- */

static par_runtime_t inproc_rt;
static par_pkgver_t inproc_pv;

/* Runs `sym` of the events fixture in-process on this thread, as the
 * in-process executor does; `cancel` sets the call's cancel request first. */
static void inproc_run(rec_t *r, const char *sym, const char *input, int cancel)
{
    void *h = dlopen(PAR_TEST_BUILD_DIR "/stage/events/lib/libevents.so", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    par_agent_fn fns[1];
    *(void **)&fns[0] = dlsym(h, sym);
    assert_non_null(fns[0]);
    inproc_rt.cfg.max_output_bytes = 1u << 20;
    inproc_rt.cfg.max_event_bytes = 64u << 10;
    inproc_pv.rt = &inproc_rt;
    inproc_pv.name = (char *)"events";
    inproc_pv.version = (char *)"0.1.0";
    inproc_pv.fns = fns;
    par_call_t *c = par__call_new();
    assert_non_null(c);
    strcpy(c->agent_id, "events");
    c->input = input;
    c->input_len = strlen(input);
    c->pv = &inproc_pv;
    c->sink = &rec_sink;
    c->sink_data = r;
    if (cancel)
        atomic_store(&c->_cancel_requested, 1);
    par__native_run(c);
    r->status = c->status;
    snprintf(r->output, sizeof(r->output), "%.*s", (int)c->output.len,
             c->output.data ? c->output.data : "");
    c->pv = NULL;
    par__call_free(c);
    dlclose(h);
}

static int refusing_event(par_call_t *c, const char *t, size_t tl, const char *d, size_t n)
{
    (void)c, (void)t, (void)tl, (void)d, (void)n;
    return PAR_E_RUN_ENDED;
}

static void in_process_agents_emit_to_the_sink(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r, 1); /* held credit does not block an in-process agent */
    inproc_run(&r, "burst", "100", 0);
    assert_int_equal(r.status, PAR_OK);
    assert_string_equal(r.output, "{\"emitted\":100}");
    assert_int_equal(r.started, 1);
    assert_int_equal(r.n, 100);
    assert_string_equal(r.type[99], "tick");
    assert_string_equal(r.data[99], "{\"i\":99}");
    rec_t b;
    rec_init(&b, 0);
    inproc_run(&b, "bad", "0", 0);
    char want[128];
    snprintf(want, sizeof(want), "{\"json\":%d,\"type\":%d,\"size\":%d,\"ok\":0}",
             PAR_E_INVALID_EVENT, PAR_E_INVALID_EVENT, PAR_E_INVALID_EVENT);
    assert_string_equal(b.output, want);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.type[0], "data");
}

static void in_process_agents_see_the_cancel(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r, 0);
    inproc_run(&r, "poll_cancel", "0", 1);
    assert_int_equal(r.status, PAR_OK);
    assert_string_equal(r.output, "{\"cancelled\":true}");
    assert_int_equal(r.n, 0); /* its emit returned PAR_E_CANCELLED */
    rec_t e;
    rec_init(&e, 0);
    inproc_run(&e, "burst", "5", 1);
    char want[64];
    snprintf(want, sizeof(want), "{\"emitted\":0,\"rc\":%d}", PAR_E_CANCELLED);
    assert_string_equal(e.output, want);
}

static void an_event_the_sink_refuses_fails_the_in_process_call(void **state)
{
    (void)state;
    static const par_call_sink_t refusing = {NULL, refusing_event};
    void *h = dlopen(PAR_TEST_BUILD_DIR "/stage/events/lib/libevents.so", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    par_agent_fn fns[1];
    *(void **)&fns[0] = dlsym(h, "burst");
    inproc_pv.fns = fns;
    inproc_pv.rt = &inproc_rt;
    par_call_t *c = par__call_new();
    strcpy(c->agent_id, "events");
    c->input = "3";
    c->input_len = 1;
    c->pv = &inproc_pv;
    c->sink = &refusing;
    par__native_run(c);
    assert_int_equal(c->status, PAR_E_RUN_ENDED);
    par_buf_terminate(&c->output);
    assert_non_null(strstr(c->output.data, "was refused"));
    c->pv = NULL;
    par__call_free(c);
    dlclose(h);
}

/* ---- the Python worker ---------------------------------------------------------------- */

static pool_t python_pool(void)
{
    pool_t pl;
    pool_start(&pl, manifest_file(PAR_TEST_SOURCE_DIR "/tests/fixtures/py-events/agent.yaml"),
               PAR_TEST_SOURCE_DIR "/tests/fixtures/py-events", PAR_TEST_BUILD_DIR "/par-worker", 1,
               8);
    return pl;
}

static void python_run(pool_t *pl, const char *export_name, const char *input, int answer, rec_t *r)
{
    rec_init(r, answer);
    submit(pl, r, export_name, input, 1);
    assert_true(WAIT_FOR(r, r->done, 20000));
}

static void python_generators_and_emit(void **state)
{
    (void)state;
    pool_t pl = python_pool();
    const char *names[] = {"gen", "agen", "emit", "aemit"};
    for (int k = 0; k < 4; k++) {
        rec_t r;
        python_run(&pl, names[k], "100", 0, &r);
        if (r.status != PAR_OK)
            fail_msg("%s: %s", names[k], r.output);
        assert_int_equal(r.n, 100);
        for (int i = 0; i < 100; i++) {
            char want[32];
            snprintf(want, sizeof(want), "{\"i\":%d}", i);
            assert_string_equal(r.data[i], want);
            assert_string_equal(r.type[i], k >= 2 ? "tick" : "data");
        }
        assert_string_equal(r.output, "{\"count\":100}");
    }
    pool_stop(&pl);
}

static void python_emit_flow_control_and_refusals(void **state)
{
    (void)state;
    pool_t pl = python_pool();
    rec_t r;
    rec_init(&r, 1);
    par_call_t *c = submit(&pl, &r, "emit", "80", 1);
    assert_true(WAIT_FOR(&r, r.n >= PAR_PROTO_EVENT_WINDOW, 10000));
    usleep(300 * 1000);
    assert_int_equal(r.n, PAR_PROTO_EVENT_WINDOW);
    par_pool_events_ack(pl.p, c, 100);
    assert_true(WAIT_FOR(&r, r.done, 10000));
    assert_int_equal(r.n, 80);
    rec_t bad;
    python_run(&pl, "bad", "0", 0, &bad);
    assert_int_equal(bad.status, PAR_OK);
    assert_string_equal(bad.output, "{\"type\":\"ValueError\",\"json\":\"TypeError\","
                                    "\"size\":\"ValueError\"}");
    assert_int_equal(bad.n, 0);
    pool_stop(&pl);
}

static void python_cancel_reaches_handlers(void **state)
{
    (void)state;
    pool_t pl = python_pool();
    const char *names[] = {"coro-cancel", "sync-poll"};
    for (int k = 0; k < 2; k++) {
        rec_t r;
        rec_init(&r, 0);
        par_call_t *c = submit(&pl, &r, names[k], "0", 1);
        assert_true(WAIT_FOR(&r, r.n == 1, 10000));
        assert_int_equal(par_pool_cancel_grace(pl.p, c, "stop", 1500), PAR_OK);
        assert_true(WAIT_FOR(&r, r.done, 1000));
    }
    usleep(2000 * 1000);
    par_pool_stats_t st;
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.cancel_kills, 0);
    rec_t ig;
    rec_init(&ig, 0);
    par_call_t *c = submit(&pl, &ig, "ignore-cancel", "30", 1);
    assert_true(WAIT_FOR(&ig, ig.n == 1, 10000));
    assert_int_equal(par_pool_cancel_grace(pl.p, c, "stop", 300), PAR_OK);
    usleep(1500 * 1000);
    par_pool_stats(pl.p, &st);
    assert_int_equal(st.cancel_kills, 1);
    pool_stop(&pl);
}

static void python_stream_of_a_sibling(void **state)
{
    (void)state;
    pool_t pl = python_pool();
    const char *names[] = {"stream-child", "astream-child"};
    for (int k = 0; k < 2; k++) {
        rec_t r;
        python_run(&pl, names[k], "0", 0, &r);
        if (r.status != PAR_OK)
            fail_msg("%s: %s", names[k], r.output);
        json_t *out = json_loads(r.output, 0, NULL);
        json_t *want = json_loads("{\"events\":[[\"part\",{\"k\":0}],[\"part\",{\"k\":1}],"
                                  "[\"part\",{\"k\":2}]],\"output\":{\"child\":\"done\"}}",
                                  0, NULL);
        if (!json_equal(out, want))
            fail_msg("%s: %s", names[k], r.output);
        json_decref(out);
        json_decref(want);
    }
    pool_stop(&pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_arrive_in_order_after_started),
        cmocka_unit_test(a_held_window_blocks_the_agent_until_acked),
        cmocka_unit_test(invalid_events_are_refused_to_the_agent),
        cmocka_unit_test(a_unary_call_s_events_are_dropped),
        cmocka_unit_test(a_cancel_reaches_a_running_native_agent),
        cmocka_unit_test(a_cancel_wakes_an_emit_blocked_on_its_window),
        cmocka_unit_test(an_agent_ignoring_a_cancel_is_killed_after_the_grace),
        cmocka_unit_test(a_cancel_while_the_sink_runs_finishes_the_call_once),
        cmocka_unit_test(invalid_events_from_a_worker_fail_only_their_call),
        cmocka_unit_test(valid_event_shapes_from_a_worker),
        cmocka_unit_test(a_stray_event_is_ignored_and_counted),
        cmocka_unit_test(a_streamed_call_forwards_events_as_call_event),
        cmocka_unit_test(an_agent_built_against_the_old_header_works),
        cmocka_unit_test(emit_on_a_host_that_predates_events),
        cmocka_unit_test(in_process_agents_emit_to_the_sink),
        cmocka_unit_test(in_process_agents_see_the_cancel),
        cmocka_unit_test(an_event_the_sink_refuses_fails_the_in_process_call),
        cmocka_unit_test(python_generators_and_emit),
        cmocka_unit_test(python_emit_flow_control_and_refusals),
        cmocka_unit_test(python_cancel_reaches_handlers),
        cmocka_unit_test(python_stream_of_a_sibling),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
