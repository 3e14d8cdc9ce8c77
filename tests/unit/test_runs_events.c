/*
 * Unit tests for runs with real agent events: the `events` test package
 * (tests/fixtures/events, a native agent that emits, polls a cancel or
 * ignores it) deployed in a runtime of its own, runs followed with a
 * watcher. They prove that every event reaches the run in order after
 * run.started and before run.completed, that a watcher that does not keep
 * up throttles its agent (flow control: about two event windows ahead,
 * never the whole run), and that a cancel reaches a polling agent. The
 * fixture comes with the worker's event support; where it is not built, the
 * tests are skipped.
 */
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <par/par.h>

#include "runtime/runs_internal.h"
#include "runtime/runtime.h"
#include "util/fs.h"

#include "runs_harness.h"

static int have_events; /* the fixture package is built */

static int setup(void **state)
{
    (void)state;
    if (find_build() != 0)
        return -1;
    char pkg[PATH_MAX + 64];
    snprintf(pkg, sizeof(pkg), "%s/test-packages/events-0.1.0.apkg", build);
    if ((have_events = access(pkg, R_OK) == 0) == 0)
        return 0;
    snprintf(dir, sizeof(dir), "/tmp/par-test-runrt-XXXXXX");
    if (mkdtemp(dir) == NULL || chmod(dir, 0711) != 0) /* workers may run as another user */
        return -1;
    par_config_t cfg;
    par_config_init(&cfg);
    cfg.state_dir = dir;
    cfg.allow_unsigned = 1;
    cfg.worker_path = worker;
    cfg.run_timeout_ms = 10000;
    cfg.runs_per_subject = 100;
    cfg.drain_ms = 100;      /* a replaced version's unary calls */
    cfg.run_drain_ms = 1500; /* and its runs */
    if (par_runtime_new(&cfg, &rt) != PAR_OK)
        return -1;
    deploy("events-0.1.0.apkg");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!have_events)
        return 0;
    par_runtime_destroy(rt);
    par_fs_remove(dir, NULL);
    return 0;
}


static void test_events_flow_through(void **state)
{
    (void)state;
    if (!have_events)
        skip();
    par_run_t *r = run("events", "500");
    char *t = follow(r, 10000);
    assert_int_equal(par_run_status(r), PAR_RUN_SUCCEEDED);
    assert_int_equal(par_run_last_seq(r), 502);
    const char *p = t;
    for (int s = 1; s <= 502; s++) {
        char id[32];
        snprintf(id, sizeof(id), "id: %d\nevent: ", s);
        assert_memory_equal(p, id, strlen(id));
        if (s > 1 && s < 502)
            assert_memory_equal(p + strlen(id), "tick\n", 5);
        p = strstr(p, "\n\n") + 2;
    }
    assert_non_null(strstr(t, "\"output\":{\"emitted\":500}"));
    free(t);
    json_t *j = par_run_json(r);
    assert_true(json_is_string(json_object_get(j, "started_at")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "output"), "emitted")),
                     500);
    json_decref(j);
    par_run_unref(r);
}

static void nop_notify(par_run_watch_t *w)
{
    (void)w;
}

static void test_slow_watcher_throttles_the_agent(void **state)
{
    (void)state;
    if (!have_events)
        skip();
    par_run_t *r = run("events", "3000");
    par_run_watch_t w = {.notify = nop_notify};
    par_run_watch(r, &w, 0);
    usleep(700000);
    uint64_t at = par_run_last_seq(r);
    assert_true(at < 400); /* about two windows, not 3000 */
    assert_int_equal(par_run_status(r), PAR_RUN_RUNNING);
    /* the watcher catches up in steps: the agent goes on */
    while (par_run_status(r) == PAR_RUN_RUNNING) {
        par_run_delivered(r, &w, par_run_last_seq(r));
        usleep(1000);
    }
    par_run_unwatch(r, &w, 0);
    assert_int_equal(par_run_status(r), PAR_RUN_SUCCEEDED);
    assert_int_equal(par_run_last_seq(r), 3002);
    par_run_unref(r);
}

static void test_cancel_reaches_the_agent(void **state)
{
    (void)state;
    if (!have_events)
        skip();
    par_run_t *r = run("events/poll-cancel", "10000");
    usleep(200000);
    assert_int_equal(par_run_cancel(r, "stop"), PAR_OK);
    char *t = follow(r, 3000);
    assert_non_null(strstr(t, "event: run.cancelled"));
    free(t);
    for (int i = 0; i < 500 && par_runs_in_flight(rt->runs); i++)
        usleep(2000);
    assert_int_equal(par_runs_in_flight(rt->runs), 0);
    par_run_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_flow_through),
        cmocka_unit_test(test_slow_watcher_throttles_the_agent),
        cmocka_unit_test(test_cancel_reaches_the_agent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
