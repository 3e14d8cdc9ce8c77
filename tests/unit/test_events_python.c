/*
 * Unit tests for the events of Python agents below HTTP: the Python worker
 * (worker/python/par_worker.py) running tests/fixtures/py-events in a real
 * pool started through the supervisor API, with a sink that records what
 * reaches it (events_harness.h): generators, context.emit and aemit, the
 * window, invalid events, cancels (CancelledError, context.cancelled, closed
 * generators, a handler ignoring it killed after the grace) and
 * context.stream / astream of a sibling (CALL "stream":true, CALL_EVENT).
 */
#include "events_harness.h"

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
    const char *names[] = {"coro-cancel", "sync-poll", "slow-gen", "slow-agen"};
    for (int k = 0; k < 4; k++) {
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
        cmocka_unit_test(python_generators_and_emit),
        cmocka_unit_test(python_emit_flow_control_and_refusals),
        cmocka_unit_test(python_cancel_reaches_handlers),
        cmocka_unit_test(python_stream_of_a_sibling),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
