/*
 * Unit tests for the run engine (runtime/runs*.c): a runtime holding only
 * what the engine reads (its configuration and state directory), runs
 * adopted around calls whose executor the test plays (c->sink, c->done),
 * and a real state directory: sequence numbers, reads from memory and from
 * the event file, watchers and flow control, cancel, retention, the
 * per-subject limit, ownership, listing, and recovery after a kill -9.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <par/par.h>

#include "core/proto.h"
#include "runtime/fleet.h"
#include "runtime/runs_internal.h"
#include "runtime/runtime.h"
#include "util/fs.h"

static char dir[64];
static char pv_name[] = "echo", pv_version[] = "1.0.0";
static par_runtime_t rt;
static par_pkgver_t pv;

static void pv_noop(par_pkgver_t *p)
{
    (void)p;
}
static const par_call_pv_ops_t noop_ops = {pv_noop, pv_noop};

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/par-test-runs-XXXXXX");
    assert_non_null(mkdtemp(dir));
    memset(&rt, 0, sizeof(rt));
    rt.state_dir = dir;
    rt.cfg.run_memory_events = 4;
    rt.cfg.run_retention_s = 86400;
    rt.cfg.runs_per_subject = 100;
    rt.cfg.run_cancel_grace_ms = 5000;
    pv.name = pv_name;
    pv.version = pv_version;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_runs_open(&rt, &rt.runs, &err), PAR_OK);
    par_buf_free(&err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    par_runs_close(rt.runs);
    rt.runs = NULL;
    par_fs_remove(dir, NULL);
    return 0;
}

static par_call_t *new_call(const char *subject, const char *tenant)
{
    par_call_t *c = par__call_new();
    assert_non_null(c);
    snprintf(c->agent_id, sizeof(c->agent_id), "echo");
    c->subject = subject ? strdup(subject) : NULL;
    c->tenant = tenant ? strdup(tenant) : NULL;
    snprintf(c->trace_id, sizeof(c->trace_id), "0123456789abcdef0123456789abcdef");
    c->pv = &pv;
    c->_pv_ops = &noop_ops;
    c->started_ns = par__now_ns();
    return c;
}

static par_run_t *start(par_call_t *c, const par_run_opts_t *o)
{
    par_run_t *r = NULL;
    unsigned retry = 0;
    assert_int_equal(par__run_adopt(rt.runs, c, o, &r, &retry), PAR_OK);
    return r;
}

static int emit(par_call_t *c, const char *type, const char *data)
{
    return c->sink->event(c, type, strlen(type), data, strlen(data));
}

static void finish(par_call_t *c, int status, const char *output)
{
    c->status = status;
    par_buf_reset(&c->output);
    par_buf_appends(&c->output, output);
    c->finished_ns = par__now_ns();
    c->done(c); /* frees c */
}

static char *read_all(par_run_t *r, uint64_t after, size_t max, uint64_t *last, int *ended, int *rc)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    *rc = par_run_read(r, after, max, &b, last, ended);
    par_buf_terminate(&b);
    return b.data ? b.data : strdup("");
}

/* Waits until the runs' thread wrote every event of `r`. */
static void wait_flushed(par_run_t *r)
{
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&r->mu);
        int done = r->flushed_seq == r->last_seq && !r->in_dirty;
        pthread_mutex_unlock(&r->mu);
        if (done)
            return;
        usleep(5000);
    }
    fail_msg("events not flushed");
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_sequence_and_answer(void **state)
{
    (void)state;
    par_call_t *c = new_call(NULL, NULL);
    par_run_t *r = start(c, NULL);
    assert_int_equal(par_run_status(r), PAR_RUN_QUEUED);
    assert_int_equal(par_run_last_seq(r), 1);
    c->sink->started(c);
    assert_int_equal(par_run_status(r), PAR_RUN_RUNNING);
    assert_int_equal(emit(c, "data", "{\"n\":1}"), 0);
    assert_int_equal(emit(c, "token", "{\n \"n\": 2\n}"), 0);
    int st = 0;
    par_buf_t a;
    par_buf_init(&a, 0);
    assert_int_equal(par_run_answer(r, &a, &st), PAR_E_RUN_ACTIVE);
    /* the usage record: the events with the final one to come, the call's status */
    int64_t events = 0;
    c->status = PAR_OK;
    assert_int_equal(par__run_usage(c, &events), PAR_OK);
    assert_int_equal(events, 4);
    finish(c, PAR_OK, "{\"x\":1}");
    assert_int_equal(par_run_status(r), PAR_RUN_SUCCEEDED);
    assert_int_equal(par_run_last_seq(r), 4);

    uint64_t last;
    int ended, rc;
    char *t = read_all(r, 0, 1 << 20, &last, &ended, &rc);
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(last, 4);
    assert_int_equal(ended, 1);
    char want[200];
    snprintf(want, sizeof(want),
             "id: 1\nevent: run.started\ndata: {\"run_id\":\"%s\",\"agent_id\":\"echo\","
             "\"version\":\"1.0.0\"}\n\nid: 2\nevent: data\ndata: {\"n\":1}\n\n"
             "id: 3\nevent: token\ndata: {  \"n\": 2 }\n\nid: 4\nevent: run.completed\n",
             par_run_id(r));
    assert_memory_equal(t, want, strlen(want));
    free(t);

    assert_int_equal(par_run_answer(r, &a, &st), PAR_OK);
    assert_int_equal(st, PAR_OK);
    par_buf_terminate(&a);
    json_t *j = json_loads(a.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "run_id")), par_run_id(r));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "output"), "x")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "agent_id")), "echo");
    json_decref(j);
    par_buf_free(&a);

    j = par_run_json(r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "version")), "1.0.0");
    assert_int_equal(json_integer_value(json_object_get(j, "events")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "output"), "x")), 1);
    assert_true(json_is_string(json_object_get(j, "ended_at")));
    assert_null(json_object_get(j, "error"));
    json_decref(j);
    /* nothing after the end; past the end is a bad id */
    t = read_all(r, 4, 100, &last, &ended, &rc);
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(ended, 1);
    assert_string_equal(t, "");
    free(t);
    t = read_all(r, 5, 100, &last, &ended, &rc);
    assert_int_equal(rc, PAR_E_BAD_EVENT_ID);
    free(t);
    par_run_unref(r);
}

static void test_read_from_disk(void **state)
{
    (void)state;
    par_call_t *c = new_call(NULL, NULL);
    par_run_t *r = start(c, NULL);
    char d[32];
    for (int i = 0; i < 30; i++) {
        snprintf(d, sizeof(d), "%d", i + 2);
        assert_int_equal(emit(c, "data", d), 0);
    }
    wait_flushed(r);
    pthread_mutex_lock(&r->mu);
    assert_true(r->nmem <= 4); /* runs.memory_events */
    assert_int_equal(r->mem_first, 28);
    pthread_mutex_unlock(&r->mu);
    uint64_t last;
    int ended, rc;
    /* all of them, in order, across the file and memory */
    char *t = read_all(r, 0, 1 << 20, &last, &ended, &rc);
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(last, 31);
    assert_int_equal(ended, 0);
    const char *p = t;
    for (int s = 1; s <= 31; s++) {
        char id[32];
        snprintf(id, sizeof(id), "id: %d\n", s);
        assert_memory_equal(p, id, strlen(id));
        if (s > 1) {
            snprintf(d, sizeof(d), "data: %d\n\n", s);
            p = strstr(p, "\n\n");
            assert_memory_equal(p - strlen(d) + 2, d, strlen(d));
            p += 2;
        } else {
            p = strstr(p, "\n\n") + 2;
        }
    }
    assert_int_equal(*p, '\0');
    free(t);
    /* one small read: one whole event from the file */
    t = read_all(r, 10, 1, &last, &ended, &rc);
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(last, 11);
    assert_string_equal(t, "id: 11\nevent: data\ndata: 11\n\n");
    free(t);
    finish(c, PAR_OK, "null");
    wait_flushed(r);
    pthread_mutex_lock(&r->mu);
    assert_int_equal(r->nmem, 0); /* an ended run is read from its file, */
    assert_int_equal(r->fd, -1);  /* which it does not hold open */
    pthread_mutex_unlock(&r->mu);
    t = read_all(r, 30, 1 << 20, &last, &ended, &rc);
    assert_int_equal(last, 32);
    assert_int_equal(ended, 1);
    assert_non_null(strstr(t, "event: run.completed"));
    free(t);
    par_run_unref(r);
}

typedef struct {
    par_run_watch_t w;
    int notified;
} counter_t;

static void on_notify(par_run_watch_t *w)
{
    ((counter_t *)w->data)->notified++;
}

static void test_watch_and_flow_control(void **state)
{
    (void)state;
    par_call_t *c = new_call(NULL, NULL);
    par_run_opts_t o = {.cancel_on_disconnect = 1};
    par_run_t *r = start(c, &o);
    counter_t k = {.w = {.notify = on_notify}};
    k.w.data = &k;
    assert_int_equal(par_run_watch(r, &k.w, 1), PAR_OK);
    assert_int_equal(k.notified, 0); /* nothing after 1 yet */
    assert_int_equal(emit(c, "data", "1"), 0);
    assert_int_equal(emit(c, "data", "2"), 0);
    assert_int_equal(k.notified, 1); /* once until delivered */
    par_run_delivered(r, &k.w, 3);
    assert_int_equal(k.notified, 1);
    /* the watcher stays at 3: from 64 events behind, credit is held */
    int held = 0;
    for (int i = 0; i < 100; i++)
        held += emit(c, "data", "0") == 1;
    assert_int_equal(k.notified, 2);
    assert_int_equal(held, 100 - (PAR_PROTO_EVENT_WINDOW - 1));
    pthread_mutex_lock(&r->mu);
    assert_int_equal(r->held, (unsigned)held);
    pthread_mutex_unlock(&r->mu);
    /* half way: still held; caught up: given back, and notified again on news */
    par_run_delivered(r, &k.w, 60);
    pthread_mutex_lock(&r->mu);
    assert_int_equal(r->held, (unsigned)held);
    pthread_mutex_unlock(&r->mu);
    assert_int_equal(k.notified, 3); /* re-armed with more after 60 */
    par_run_delivered(r, &k.w, par_run_last_seq(r));
    pthread_mutex_lock(&r->mu);
    assert_int_equal(r->held, 0);
    pthread_mutex_unlock(&r->mu);
    /* the last watcher leaves a cancel-on-disconnect run: it is cancelled */
    par_run_unwatch(r, &k.w, 1);
    assert_int_equal(par_run_status(r), PAR_RUN_CANCELLED);
    /* the agent's later events are refused, and its end changes nothing */
    assert_int_equal(emit(c, "data", "1"), PAR_E_CANCELLED);
    finish(c, PAR_OK, "1");
    assert_int_equal(par_run_status(r), PAR_RUN_CANCELLED);
    par_buf_t a;
    par_buf_init(&a, 0);
    int st = 0;
    assert_int_equal(par_run_answer(r, &a, &st), PAR_OK);
    assert_int_equal(st, PAR_E_CANCELLED);
    par_buf_terminate(&a);
    assert_non_null(strstr(a.data, "\"error\":\"cancelled\""));
    par_buf_free(&a);
    par_run_unref(r);
}

static void test_cancel_and_delete(void **state)
{
    (void)state;
    par_call_t *c = new_call(NULL, NULL);
    par_run_t *r = start(c, NULL);
    char id[64];
    snprintf(id, sizeof(id), "%s", par_run_id(r));
    assert_int_equal(par_run_delete(r), PAR_E_RUN_ACTIVE);
    assert_int_equal(par_run_cancel(r, "stop"), PAR_OK);
    assert_int_equal(atomic_load(&c->_cancel_requested), 1);
    assert_int_equal(par_run_cancel(r, "stop"), PAR_E_RUN_ENDED);
    int64_t events = 0;
    c->status = PAR_OK; /* an agent that finished anyway: the record says cancelled */
    assert_int_equal(par__run_usage(c, &events), PAR_E_CANCELLED);
    assert_int_equal(events, 2);
    uint64_t last;
    int ended, rc;
    char *t = read_all(r, 1, 1 << 20, &last, &ended, &rc);
    assert_non_null(strstr(t, "id: 2\nevent: run.cancelled\ndata: {\"error\":\"cancelled\","
                              "\"message\":\"stop\""));
    assert_int_equal(ended, 1);
    free(t);
    finish(c, PAR_E_CANCELLED, "taken back");
    assert_int_equal(par_run_delete(r), PAR_OK);
    assert_null(par_run_get(&rt, id, NULL, NULL, 1));
    par_run_unref(r);
    /* its files go with it */
    char p[256];
    snprintf(p, sizeof(p), "%s/runs/%s.json", dir, id);
    for (int i = 0; i < 100 && access(p, F_OK) == 0; i++)
        usleep(5000);
    assert_int_not_equal(access(p, F_OK), 0);
}

static void test_failed(void **state)
{
    (void)state;
    par_call_t *c = new_call(NULL, NULL);
    par_run_t *r = start(c, NULL);
    finish(c, PAR_E_TIMEOUT, "too slow");
    assert_int_equal(par_run_status(r), PAR_RUN_FAILED);
    json_t *j = par_run_json(r);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "error")), "agent_timeout");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "too slow");
    assert_null(json_object_get(j, "output"));
    json_decref(j);
    par_run_unref(r);
}

static void test_ownership_and_limit(void **state)
{
    (void)state;
    rt.cfg.runs_per_subject = 2;
    par_call_t *c1 = new_call("alice", "t1"), *c2 = new_call("alice", "t1");
    par_call_t *c3 = new_call("alice", "t1"), *c4 = new_call("bob", "t1");
    par_run_t *r1 = start(c1, NULL), *r2 = start(c2, NULL), *r3 = NULL, *r4 = start(c4, NULL);
    unsigned retry = 0;
    assert_int_equal(par__run_adopt(rt.runs, c3, NULL, &r3, &retry), PAR_E_TOO_MANY_RUNS);
    assert_true(retry > 0);
    assert_null(r3);
    par__call_free(c3);
    assert_int_equal(par_runs_in_flight(rt.runs), 3);

    const char *id = par_run_id(r1);
    par_run_t *g = par_run_get(&rt, id, "alice", "t1", 0);
    assert_ptr_equal(g, r1);
    par_run_unref(g);
    assert_null(par_run_get(&rt, id, "bob", "t1", 0));
    assert_null(par_run_get(&rt, id, "alice", "t2", 0));
    assert_null(par_run_get(&rt, id, NULL, NULL, 0));
    assert_null(par_run_get(&rt, "run_nope", "alice", "t1", 1));
    g = par_run_get(&rt, id, "root", NULL, 1);
    assert_ptr_equal(g, r1);
    par_run_unref(g);

    /* a run that ended frees its place */
    finish(c1, PAR_OK, "1");
    par_call_t *c5 = new_call("alice", "t1");
    par_run_t *r5 = start(c5, NULL);
    finish(c2, PAR_OK, "1"), finish(c4, PAR_OK, "1"), finish(c5, PAR_OK, "1");
    assert_int_equal(par_runs_in_flight(rt.runs), 0);
    par_run_unref(r1), par_run_unref(r2), par_run_unref(r4), par_run_unref(r5);
}

static void test_list_paging(void **state)
{
    (void)state;
    par_run_t *r[5];
    for (int i = 0; i < 5; i++) {
        par_call_t *c = new_call(i == 4 ? "bob" : "alice", NULL);
        r[i] = start(c, NULL);
        finish(c, i == 2 ? PAR_E_TIMEOUT : PAR_OK, "1");
    }
    par_runs_query_t q = {.subject = "alice", .status = -1, .limit = 2};
    char seen[5][RUN_ID_LEN + 1], cursor[RUN_ID_LEN + 1] = "";
    int n = 0;
    for (int page = 0; page < 3; page++) {
        json_t *out = NULL;
        q.cursor = cursor[0] ? cursor : NULL;
        assert_int_equal(par_runs_list(&rt, &q, &out, NULL), PAR_OK);
        json_t *runs = json_object_get(out, "runs");
        assert_int_equal(json_array_size(runs), page < 2 ? (page == 1 ? 2 : 2) : 0);
        for (size_t i = 0; i < json_array_size(runs); i++) {
            const char *id = json_string_value(json_object_get(json_array_get(runs, i), "run_id"));
            if (n)
                assert_true(strcmp(id, seen[n - 1]) < 0); /* newest first */
            snprintf(seen[n++], RUN_ID_LEN + 1, "%s", id);
        }
        json_t *next = json_object_get(out, "next_cursor");
        if (page == 0)
            assert_true(json_is_string(next));
        if (json_is_string(next))
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        else
            cursor[0] = '\0';
        json_decref(out);
        if (!cursor[0])
            break;
    }
    assert_int_equal(n, 4); /* alice's four; bob's is not hers */
    /* a status filter, admin sees all, and a cursor it did not make */
    json_t *out = NULL;
    par_runs_query_t f = {.subject = "alice", .status = PAR_RUN_FAILED};
    assert_int_equal(par_runs_list(&rt, &f, &out, NULL), PAR_OK);
    assert_int_equal(json_array_size(json_object_get(out, "runs")), 1);
    assert_true(json_is_null(json_object_get(out, "next_cursor")));
    json_decref(out);
    par_runs_query_t ad = {.admin = 1, .status = -1};
    assert_int_equal(par_runs_list(&rt, &ad, &out, NULL), PAR_OK);
    assert_int_equal(json_array_size(json_object_get(out, "runs")), 5);
    json_decref(out);
    par_buf_t err;
    par_buf_init(&err, 0);
    ad.cursor = "not-a-cursor";
    assert_int_equal(par_runs_list(&rt, &ad, &out, &err), PAR_E_BAD_REQUEST);
    assert_null(out);
    assert_true(err.len > 0);
    par_buf_free(&err);
    for (int i = 0; i < 5; i++)
        par_run_unref(r[i]);
}

static void test_retention(void **state)
{
    (void)state;
    /* runs.retention 0: expires at once, a tombstone, then gone */
    par_runs_close(rt.runs);
    rt.cfg.run_retention_s = 0;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_runs_open(&rt, &rt.runs, &err), PAR_OK);
    par_buf_free(&err);
    par_call_t *going = new_call(NULL, NULL); /* a run in flight never expires */
    par_run_t *alive = start(going, NULL);
    par_call_t *c = new_call(NULL, NULL);
    par_run_t *r = start(c, NULL);
    emit(c, "data", "1");
    finish(c, PAR_OK, "1");
    char id[64];
    snprintf(id, sizeof(id), "%s", par_run_id(r));
    int rc = PAR_OK;
    for (int i = 0; i < 300 && rc == PAR_OK; i++) {
        usleep(10000);
        uint64_t last;
        int ended;
        char *t = read_all(r, 1, 100, &last, &ended, &rc);
        free(t);
    }
    assert_int_equal(rc, PAR_E_RUN_EXPIRED);
    json_t *j = par_run_json(r);
    assert_true(json_is_true(json_object_get(j, "expired")));
    json_decref(j);
    par_buf_t a;
    par_buf_init(&a, 0);
    int st;
    assert_int_equal(par_run_answer(r, &a, &st), PAR_E_RUN_EXPIRED);
    par_buf_free(&a);
    par_run_t *g = NULL;
    for (int i = 0; i < 300; i++) {
        g = par_run_get(&rt, id, NULL, NULL, 0);
        if (g == NULL)
            break;
        par_run_unref(g);
        usleep(10000);
    }
    assert_null(g);
    par_run_unref(r);
    g = par_run_get(&rt, par_run_id(alive), NULL, NULL, 0);
    assert_ptr_equal(g, alive);
    par_run_unref(g);
    uint64_t last;
    int ended;
    free(read_all(alive, 0, 100, &last, &ended, &rc));
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(last, 1);
    finish(going, PAR_OK, "1");
    par_run_unref(alive);
}

/* ---- many watchers, one busy agent --------------------------------------------------- */

#define NEV 3000
#define NWATCH 6

typedef struct {
    par_run_watch_t w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int news;
    par_run_t *run;
    unsigned seed;
    int ok;
} client_t;

static void client_notify(par_run_watch_t *w)
{
    client_t *k = w->data;
    pthread_mutex_lock(&k->mu);
    k->news = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* Checks that `b` holds events after..; returns the last id, or 0 on a gap. */
static uint64_t check_ids(const par_buf_t *b, uint64_t after)
{
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        char *e;
        if (strncmp(p, "id: ", 4) != 0 || strtoull(p + 4, &e, 10) != after + 1)
            return 0;
        after++;
        const char *nx = strstr(p, "\n\n");
        if (nx == NULL)
            return 0;
        p = nx + 2;
    }
    return after;
}

/* A client that follows the run, drops now and then and resumes after the
 * last id it got, as an EventSource does. */
static void *client_thread(void *arg)
{
    client_t *k = arg;
    uint64_t at = 0;
    int ended = 0, watching = 0;
    while (!ended) {
        if (!watching) {
            k->w = (par_run_watch_t){.notify = client_notify, .data = k};
            par_run_watch(k->run, &k->w, at);
            watching = 1;
        }
        pthread_mutex_lock(&k->mu);
        while (!k->news) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 5;
            if (pthread_cond_timedwait(&k->cv, &k->mu, &ts) != 0)
                break; /* a lost notification fails the test below */
        }
        int had = k->news;
        k->news = 0;
        pthread_mutex_unlock(&k->mu);
        if (!had)
            break;
        par_buf_t b;
        par_buf_init(&b, 0);
        uint64_t last = at;
        size_t max = 1 + rand_r(&k->seed) % 600;
        if (par_run_read(k->run, at, max, &b, &last, &ended) != PAR_OK ||
            (b.len && check_ids(&b, at) != last)) {
            par_buf_free(&b);
            break;
        }
        par_buf_free(&b);
        at = last;
        par_run_delivered(k->run, &k->w, at);
        if (!ended && rand_r(&k->seed) % 50 == 0) { /* the connection drops */
            par_run_unwatch(k->run, &k->w, 1);
            watching = 0;
        }
    }
    if (watching)
        par_run_unwatch(k->run, &k->w, 0);
    k->ok = ended && at == NEV + 2;
    return NULL;
}

static void *agent_thread(void *arg)
{
    par_call_t *c = arg;
    char d[32];
    for (int i = 0; i < NEV; i++) {
        snprintf(d, sizeof(d), "{\"i\":%d}", i);
        emit(c, "data", d);
        if (i % 500 == 0)
            usleep(2000);
    }
    finish(c, PAR_OK, "true");
    return NULL;
}

static void test_many_clients_resume_exactly_once(void **state)
{
    (void)state;
    par_call_t *c = new_call(NULL, NULL);
    par_run_t *r = start(c, NULL);
    client_t k[NWATCH];
    pthread_t th[NWATCH], agent;
    for (int i = 0; i < NWATCH; i++) {
        memset(&k[i], 0, sizeof(k[i]));
        pthread_mutex_init(&k[i].mu, NULL);
        pthread_cond_init(&k[i].cv, NULL);
        k[i].run = r;
        k[i].seed = (unsigned)i * 7919u + 1;
        assert_int_equal(pthread_create(&th[i], NULL, client_thread, &k[i]), 0);
    }
    assert_int_equal(pthread_create(&agent, NULL, agent_thread, c), 0);
    pthread_join(agent, NULL);
    for (int i = 0; i < NWATCH; i++) {
        pthread_join(th[i], NULL);
        assert_true(k[i].ok);
        pthread_mutex_destroy(&k[i].mu);
        pthread_cond_destroy(&k[i].cv);
    }
    assert_int_equal(par_run_last_seq(r), NEV + 2);
    assert_int_equal(atomic_load(&rt.runs->stream_clients), 0);
    par_run_unref(r);
}

/* A tombstone read back at open keeps its count and answers expired. */
static void test_tombstone_survives_restart(void **state)
{
    (void)state;
    static const char id[] = "run_0123456789ab0123456789abcdef0123";
    char p[256];
    snprintf(p, sizeof(p), "%s/runs/%.36s.json", dir, id);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"run_id\":\"%.36s\",\"agent_id\":\"echo\",\"version\":\"1.0.0\","
            "\"status\":\"succeeded\",\"ended_ms\":%lld,\"expired\":true,\"events\":7}",
            id, (long long)par__wall_ms());
    fclose(f);
    par_runs_close(rt.runs);
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_runs_open(&rt, &rt.runs, &err), PAR_OK);
    par_buf_free(&err);
    char rid[RUN_ID_LEN + 1];
    snprintf(rid, sizeof(rid), "%.36s", id);
    par_run_t *r = par_run_get(&rt, rid, NULL, NULL, 0);
    assert_non_null(r);
    assert_int_equal(par_run_last_seq(r), 7);
    json_t *j = par_run_json(r);
    assert_true(json_is_true(json_object_get(j, "expired")));
    assert_int_equal(json_integer_value(json_object_get(j, "events")), 7);
    json_decref(j);
    uint64_t last;
    int ended, rc;
    free(read_all(r, 0, 100, &last, &ended, &rc));
    assert_int_equal(rc, PAR_E_RUN_EXPIRED);
    free(read_all(r, 7, 100, &last, &ended, &rc));
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(ended, 1);
    par_run_unref(r);
}

/* A child process starts a run, emits, and is killed with SIGKILL; the
 * state directory it leaves is opened again. */
static void test_recovery_after_kill(void **state)
{
    (void)state;
    char id[RUN_ID_LEN + 1];
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    /* no runs' thread of ours across the fork: a lock it held would stay
     * locked in the child */
    par_runs_close(rt.runs);
    rt.runs = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the parent's runs' thread is not in this process: open our own */
        par_buf_t e;
        par_buf_init(&e, 0);
        if (par_runs_open(&rt, &rt.runs, &e) != PAR_OK)
            _exit(1);
        par_call_t *c = new_call("alice", NULL);
        par_run_opts_t o = {.metadata = "{\"k\":\"v\"}", .metadata_len = 9};
        par_run_t *r = start(c, &o);
        c->sink->started(c);
        emit(c, "data", "{\"n\":1}");
        emit(c, "data", "{\"n\":2}");
        if (write(pfd[1], par_run_id(r), RUN_ID_LEN) != RUN_ID_LEN)
            _exit(1);
        /* until the runs' thread wrote both events and the record (a busy
         * machine may take longer than a few RUNS_FLUSH_MS) */
        char rec[4200];
        snprintf(rec, sizeof(rec), "%s/%s.json", rt.runs->dir, par_run_id(r));
        for (int i = 0; i < 1000; i++) {
            pthread_mutex_lock(&r->mu);
            int written = r->flushed_seq >= 3 && !r->record_dirty && !r->in_dirty;
            pthread_mutex_unlock(&r->mu);
            if (written && access(rec, F_OK) == 0)
                break;
            usleep(10000);
        }
        usleep(50000); /* the record's rename may trail its flag */
        raise(SIGKILL);
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], id, RUN_ID_LEN), RUN_ID_LEN);
    id[RUN_ID_LEN] = '\0';
    close(pfd[0]);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFSIGNALED(ws));

    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_runs_open(&rt, &rt.runs, &err), PAR_OK);
    par_buf_free(&err);
    par_run_t *r = par_run_get(&rt, id, "alice", NULL, 0);
    assert_non_null(r);
    assert_int_equal(par_run_status(r), PAR_RUN_INTERRUPTED);
    assert_int_equal(par_run_last_seq(r), 4);
    uint64_t last;
    int ended, rc;
    char *t = read_all(r, 1, 1 << 20, &last, &ended, &rc);
    assert_int_equal(rc, PAR_OK);
    assert_int_equal(ended, 1);
    assert_non_null(strstr(t, "id: 2\nevent: data\ndata: {\"n\":1}\n\nid: 3\nevent: data\n"));
    assert_non_null(strstr(t, "id: 4\nevent: run.interrupted\ndata: {\"error\":\"interrupted\""));
    free(t);
    json_t *j = par_run_json(r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "interrupted");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "k")),
                        "v");
    assert_true(json_is_string(json_object_get(j, "started_at")));
    json_decref(j);
    /* and it stays so across one more restart, without a second interrupt event */
    par_run_unref(r);
    r = par_run_get(&rt, id, NULL, NULL, 1);
    wait_flushed(r);
    par_run_unref(r);
    par_runs_close(rt.runs);
    par_buf_init(&err, 0);
    assert_int_equal(par_runs_open(&rt, &rt.runs, &err), PAR_OK);
    par_buf_free(&err);
    r = par_run_get(&rt, id, "alice", NULL, 0);
    assert_non_null(r);
    assert_int_equal(par_run_last_seq(r), 4);
    par_run_unref(r);
}

/* Both id forms are valid, nothing else is; a fleet id's tag is its last 6. */
static void test_run_ids(void **state)
{
    (void)state;
    const char *single = "run_0123456789abcdef0123456789abcdef";
    const char *fleet = "run_0123456789abcdef0123456789abcdef_k3xq7a";
    assert_true(par_run_id_valid(single, strlen(single)));
    assert_true(par_run_id_valid(fleet, strlen(fleet)));
    assert_null(par_run_id_tag(single, strlen(single)));
    assert_ptr_equal(par_run_id_tag(fleet, strlen(fleet)), fleet + 37);
    const char *bad[] = {"",
                         "run_",
                         "run_0123456789abcdef0123456789abcde",
                         "run_0123456789abcdef0123456789abcdeF",
                         "RUN_0123456789abcdef0123456789abcdef",
                         "run_0123456789abcdef0123456789abcdef_",
                         "run_0123456789abcdef0123456789abcdef-k3xq7a",
                         "run_0123456789abcdef0123456789abcdef_k3xq71",
                         "run_0123456789abcdef0123456789abcdef_K3XQ7A",
                         "run_0123456789abcdef0123456789abcdef_k3xq7ab",
                         "run_0123456789abcdef0123456789abcdefk3xq7a0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_false(par_run_id_valid(bad[i], strlen(bad[i])));
        assert_null(par_run_id_tag(bad[i], strlen(bad[i])));
    }
    /* a node's tag: stable, of the alphabet, distinct for distinct ids */
    char t1[7], t2[7], t3[7];
    par_fleet_tag_of("node-a", t1);
    par_fleet_tag_of("node-a", t2);
    par_fleet_tag_of("node-b", t3);
    assert_string_equal(t1, t2);
    assert_string_not_equal(t1, t3);
    assert_int_equal(strspn(t1, "abcdefghijklmnopqrstuvwxyz234567"), 6);
    char id[64];
    snprintf(id, sizeof(id), "%.36s_%s", single, t1);
    assert_true(par_run_id_valid(id, strlen(id)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_ids),
        cmocka_unit_test_setup_teardown(test_sequence_and_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_from_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_and_flow_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ownership_and_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_after_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tombstone_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_clients_resume_exactly_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
