/*
 * Unit tests for runs in a real runtime (runtime/runs.c with runtime.c and a
 * worker pool): the test packages built by CMake (faulty, whoami) deployed
 * unsigned into a runtime of its own, runs started with par_run_start and
 * followed with a watcher. What they prove: a run's deadline is
 * limits.run_timeout_ms, not its package's timeout; a private sub-agent
 * cannot be started as a run (the same error as an unknown agent, no run
 * left behind); a cancel ends the run at once and frees its call; shutdown
 * interrupts the runs in flight; the answer is the invoke answer plus
 * "run_id".
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


static int setup(void **state)
{
    (void)state;
    if (find_build() != 0)
        return -1;
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
    deploy("faulty-0.1.0.apkg");
    deploy("whoami-0.1.0.apkg");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    par_runtime_destroy(rt);
    par_fs_remove(dir, NULL);
    return 0;
}


/* ---- tests ------------------------------------------------------------------------------ */

/* faulty/slow sleeps past its package's 2 s timeout: as a run it has
 * limits.run_timeout_ms (10 s here) and succeeds. */
static void test_run_outlives_the_unary_deadline(void **state)
{
    (void)state;
    par_run_t *r = run("faulty/slow", "2300");
    char *t = follow(r, 8000);
    assert_int_equal(par_run_status(r), PAR_RUN_SUCCEEDED);
    char want[120];
    snprintf(want, sizeof(want),
             "id: 1\nevent: run.started\ndata: {\"run_id\":\"%s\",\"agent_id\":\"faulty/slow\","
             "\"version\":\"0.1.0\"}\n\n",
             par_run_id(r));
    assert_memory_equal(t, want, strlen(want));
    assert_non_null(strstr(t, "id: 2\nevent: run.completed\ndata: {\"run_id\":\""));
    free(t);
    par_buf_t a;
    par_buf_init(&a, 0);
    int st = -1;
    assert_int_equal(par_run_answer(r, &a, &st), PAR_OK);
    assert_int_equal(st, PAR_OK);
    json_t *j = json_loadb(a.data, a.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "agent_id")), "faulty/slow");
    assert_true(json_real_value(json_object_get(j, "duration_ms")) > 2000);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "metadata"), "version")), "0.1.0");
    json_decref(j);
    par_buf_free(&a);
    j = par_run_json(r);
    assert_true(json_is_string(json_object_get(j, "started_at")));
    json_decref(j);
    assert_int_equal(par_runs_in_flight(rt->runs), 0);
    par_run_unref(r);
}

/* The same agent as a unary call still has its package's deadline. */
static void test_unary_call_keeps_its_deadline(void **state)
{
    (void)state;
    par_call_t *c = call_of("faulty/slow", "2300");
    assert_int_equal(par__call_sync(rt, c), PAR_E_TIMEOUT);
    par__call_free(c);
}

static void test_private_and_unknown_agents(void **state)
{
    (void)state;
    json_t *out = NULL;
    par_runs_query_t q = {.admin = 1, .status = -1};
    assert_int_equal(par_runs_list(rt, &q, &out, NULL), PAR_OK);
    size_t before = json_array_size(json_object_get(out, "runs"));
    json_decref(out);
    const char *ids[] = {"whoami/inner", "nope"};
    for (int i = 0; i < 2; i++) {
        par_call_t *c = call_of(ids[i], "null");
        c->allow_private = 1; /* even a caller that could call it directly */
        par_run_t *r = NULL;
        unsigned retry = 0;
        assert_int_equal(par_run_start(rt, c, NULL, &r, &retry), PAR_E_AGENT_NOT_FOUND);
        assert_null(r);
        par_buf_terminate(&c->output);
        char want[64];
        snprintf(want, sizeof(want), "no agent '%s'", ids[i]);
        assert_string_equal(c->output.data, want);
        par__call_free(c);
    }
    assert_int_equal(par_runs_list(rt, &q, &out, NULL), PAR_OK);
    assert_int_equal(json_array_size(json_object_get(out, "runs")), before); /* none left */
    json_decref(out);
    assert_int_equal(par_runs_in_flight(rt->runs), 0);
    /* the public sub-agent is fine */
    par_run_t *r = run("whoami/via", "null");
    free(follow(r, 5000));
    assert_int_equal(par_run_status(r), PAR_RUN_SUCCEEDED);
    par_run_unref(r);
}

static void wait_in_flight(unsigned n)
{
    for (int i = 0; i < 500 && par_runs_in_flight(rt->runs) != n; i++)
        usleep(2000);
    assert_int_equal(par_runs_in_flight(rt->runs), n);
}

static void test_cancel_and_interrupt(void **state)
{
    (void)state;
    par_run_t *r = run("faulty/slow", "3000");
    usleep(100000);
    int64_t t0 = par__now_ms();
    assert_int_equal(par_run_cancel(r, "changed my mind"), PAR_OK);
    char *t = follow(r, 2000);
    assert_true(par__now_ms() - t0 < 1000); /* at once, not when the agent is done */
    assert_non_null(strstr(t, "event: run.cancelled\ndata: {\"error\":\"cancelled\","
                              "\"message\":\"changed my mind\""));
    free(t);
    assert_int_equal(par_run_status(r), PAR_RUN_CANCELLED);
    assert_int_equal(par_run_cancel(r, "again"), PAR_E_RUN_ENDED);
    wait_in_flight(0);
    par_run_unref(r);

    /* shutdown: the runs in flight end interrupted */
    par_run_t *a = run("faulty/slow", "3000"), *b = run("faulty/slow", "3000");
    wait_in_flight(2);
    par_runs_interrupt_all(rt->runs, "the runtime is shutting down");
    assert_int_equal(par_run_status(a), PAR_RUN_INTERRUPTED);
    assert_int_equal(par_run_status(b), PAR_RUN_INTERRUPTED);
    t = follow(b, 2000);
    assert_non_null(strstr(t, "event: run.interrupted\ndata: {\"error\":\"interrupted\""));
    free(t);
    wait_in_flight(0);
    par_run_unref(a), par_run_unref(b);
}

/* faulty 0.2.0: a copy of 0.1.0's extracted directory with another version. */
static void deploy_v2(void)
{
    par_pkgver_t *pv = par__runtime_find(rt, "faulty");
    assert_non_null(pv);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof(cmd),
             "rm -rf %s/faulty2 && cp -r '%s' %s/faulty2 && sed -i 's/version: 0.1.0/version: "
             "0.2.0/' %s/faulty2/agent.yaml",
             dir, pv->root, dir, dir);
    par__pkgver_unref(pv);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/faulty2", dir);
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par__deploy_path(rt, cmd, &err, NULL);
    if (rc != PAR_OK)
        fail_msg("deploy 0.2.0: %.*s", (int)err.len, err.data ? err.data : "");
    par_buf_free(&err);
}

/* A reload: a run stays on its version, past reload.drain_ms, until it ends
 * or reload.run_drain_ms passes; then it ends interrupted. */
static void test_reload_keeps_runs_on_their_version(void **state)
{
    (void)state;
    par_run_t *quick = run("faulty/slow", "600"), *long_ = run("faulty/slow", "5000");
    wait_in_flight(2);
    int64_t t0 = par__now_ms();
    deploy_v2();
    char *t = follow(quick, 5000);
    assert_int_equal(par_run_status(quick), PAR_RUN_SUCCEEDED); /* after drain_ms: still there */
    assert_non_null(strstr(t, "\"version\":\"0.1.0\""));
    free(t);
    json_t *j = par_run_json(long_);
    assert_string_equal(json_string_value(json_object_get(j, "version")), "0.1.0");
    json_decref(j);
    t = follow(long_, 5000);
    int64_t took = par__now_ms() - t0;
    assert_int_equal(par_run_status(long_), PAR_RUN_INTERRUPTED);
    assert_true(took >= 1400 && took < 4500); /* at reload.run_drain_ms */
    assert_non_null(strstr(t, "event: run.interrupted"));
    free(t);
    /* new runs go to the new version */
    par_run_t *r = run("faulty", "null");
    free(follow(r, 5000));
    j = par_run_json(r);
    assert_string_equal(json_string_value(json_object_get(j, "version")), "0.2.0");
    json_decref(j);
    par_run_unref(r), par_run_unref(quick), par_run_unref(long_);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_outlives_the_unary_deadline),
        cmocka_unit_test(test_unary_call_keeps_its_deadline),
        cmocka_unit_test(test_private_and_unknown_agents),
        cmocka_unit_test(test_cancel_and_interrupt),
        cmocka_unit_test(test_reload_keeps_runs_on_their_version),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
