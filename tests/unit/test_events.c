/*
 * Unit tests for the events of runs below HTTP: loader/events.c and the
 * event and cancel paths of loader/calls.c, frames.c and supervisor.c, with
 * real pools of real worker processes started through the supervisor API —
 * par-worker running tests/fixtures/events (a native agent that emits, polls
 * or ignores cancels), tests/unit/data/fake_worker.py (a worker that breaks
 * the rules of events on purpose) — and a sink that records what reaches it
 * (events_harness.h). Also: in-process native agents (runtime/native.c), an
 * agent built against the agent ABI header before events under this host,
 * and par_ctx_emit against a host that predates events. The Python worker's
 * events are test_events_python.c's.
 */
#include "events_harness.h"

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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
