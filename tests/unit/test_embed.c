/*
 * Unit tests for the embedding API's calls and configuration
 * (runtime/embed_call.c, runtime/embed_admin.c, config/embed.c): every bad
 * option of par_call_ex / par_call_start is answered with its named error
 * and leaves the runtime serving; an asynchronous refusal comes through the
 * callback; a handle outlives its answer; a configuration typo is refused
 * with its line and the nearest key. A real runtime with no package: no
 * worker is started (agents are the end-to-end tests' business).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <par/par.h>

static char dir[64];
static par_runtime_t *rt;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/par-test-embed-XXXXXX");
    assert_non_null(mkdtemp(dir));
    chmod(dir, 0755); /* as root, workers run as nobody and reach their scratch through it */
    char text[256];
    snprintf(text, sizeof(text),
             "state_dir: %s/var\ntrusted: [echo]\ntrust:\n  require_signatures: false\n", dir);
    char *err = NULL;
    assert_int_equal(par_runtime_new_from_config(NULL, text, strlen(text), &rt, &err), PAR_OK);
    assert_null(err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    par_runtime_destroy(rt);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* The error body of a refused call: its name and that the message holds `what`. */
static void expect_error(const par_call_opts_t *o, int status, const char *what)
{
    par_result_t out;
    assert_int_equal(par_call_ex(rt, o, &out), status);
    assert_int_equal(out.status, status);
    assert_non_null(out.data);
    char name[64];
    snprintf(name, sizeof(name), "{\"error\":\"%s\"", par_status_name(status));
    assert_non_null(strstr(out.data, name));
    assert_non_null(strstr(out.data, what));
    assert_non_null(strstr(out.data, "\"request_id\":\"")); /* every answer names its request */
    par_result_free(&out);
}

static void test_bad_options_are_named_errors(void **state)
{
    (void)state;
    par_call_opts_t o = {.agent_id = "echo", .input = "{}", .input_len = 2};
    par_call_opts_t bad = o;
    bad.input = "{nope";
    bad.input_len = 5;
    expect_error(&bad, PAR_E_INVALID_JSON, "input is not valid JSON (error at byte 1)");
    bad = o;
    bad.input = NULL;
    expect_error(&bad, PAR_E_INVALID_JSON, "not valid JSON");
    bad = o;
    bad.context = "[1]";
    bad.context_len = 3;
    expect_error(&bad, PAR_E_INVALID_ARGUMENT, "context must be a JSON object");
    bad = o;
    bad.trace_id = "has space";
    expect_error(&bad, PAR_E_INVALID_ARGUMENT, "trace_id must be a W3C traceparent");
    bad = o;
    bad.request_id = "";
    expect_error(&bad, PAR_E_INVALID_ARGUMENT, "request_id must be 1 to 128 characters");
    bad = o;
    bad.agent_id = NULL;
    expect_error(&bad, PAR_E_AGENT_NOT_FOUND, "opts.agent_id is NULL");
    char longid[300];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    bad = o;
    bad.agent_id = longid;
    expect_error(&bad, PAR_E_AGENT_NOT_FOUND, "longer than 200 bytes");
    /* good options, no such agent: the request id given comes back */
    bad = o;
    bad.request_id = "req-1";
    bad.trace_id = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    bad.subject = "alice";
    expect_error(&bad, PAR_E_AGENT_NOT_FOUND, "\"request_id\":\"req-1\"");
    /* par_call is par_call_ex without options */
    par_result_t out;
    assert_int_equal(par_call(rt, "echo", "{}", 2, &out), PAR_E_AGENT_NOT_FOUND);
    par_result_free(&out);
}

typedef struct seen {
    int calls, status;
    char body[512];
} seen_t;

static void on_answer(void *arg, par_result_t *r)
{
    seen_t *s = arg;
    s->calls++;
    s->status = r->status;
    snprintf(s->body, sizeof(s->body), "%.*s", (int)r->len, r->data ? r->data : "");
    par_result_free(r);
}

static void test_async_refusals_come_through_the_callback(void **state)
{
    (void)state;
    par_call_opts_t o = {.agent_id = "nope", .input = "{}", .input_len = 2};
    seen_t s = {0};
    par_call_handle_t *h = NULL;
    assert_int_equal(par_call_start(rt, &o, on_answer, &s, &h), PAR_OK);
    assert_non_null(h);
    assert_int_equal(s.calls, 1); /* refused before it started: answered on this thread */
    assert_int_equal(s.status, PAR_E_AGENT_NOT_FOUND);
    assert_non_null(strstr(s.body, "no agent 'nope'"));
    assert_int_equal(par_call_cancel(h), PAR_E_NOT_FOUND); /* answered: nothing to take back */
    par_call_handle_free(h);
    o.context = "1";
    o.context_len = 1;
    assert_int_equal(par_call_start(rt, &o, on_answer, &s, NULL), PAR_OK);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.status, PAR_E_INVALID_ARGUMENT);
    /* nothing to call back: refused, the callback never runs */
    assert_int_equal(par_call_start(rt, &o, NULL, &s, &h), PAR_E_INVALID_ARGUMENT);
    assert_null(h);
    assert_int_equal(par_call_start(rt, NULL, on_answer, &s, NULL), PAR_E_INVALID_ARGUMENT);
    assert_int_equal(s.calls, 2);
    assert_int_equal(par_call_cancel(NULL), PAR_E_NOT_FOUND);
    par_call_handle_free(NULL);
}

static void test_listings_and_metrics(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(par_runtime_packages(rt, &text, &len), PAR_OK);
    assert_string_equal(text, "[]");
    assert_int_equal(len, 2);
    free(text);
    assert_int_equal(par_runtime_remove(rt, "nothing", NULL), PAR_E_NOT_FOUND);
    assert_int_equal(par_runtime_remove(rt, NULL, NULL), PAR_E_INVALID_ARGUMENT);
    assert_int_equal(par_runtime_deploy_dir(rt, "/nonexistent/dir"), PAR_E_NOT_FOUND);
    char *rec = (char *)1, *err = NULL;
    assert_int_not_equal(par_runtime_deploy(rt, "/nonexistent/x.apkg", NULL, &rec, &err), PAR_OK);
    assert_null(rec);
    assert_non_null(strstr(err, "/nonexistent/x.apkg"));
    free(err);
    assert_int_equal(par_runtime_metrics(rt, &text, &len), PAR_OK);
    /* the earlier tests' refusals, counted by status */
    assert_non_null(strstr(text, "par_inprocess_calls_total{status=\"agent_not_found\"}"));
    assert_non_null(strstr(text, "par_inprocess_calls_total{status=\"invalid_json\"} 2\n"));
    free(text);
}

/* Waits up to 10 s for `n` answers in `s`. */
static void wait_calls(volatile seen_t *s, int n)
{
    for (int i = 0; i < 10000 && s->calls < n; i++)
        usleep(1000);
    assert_int_equal(s->calls, n);
}

/* With agents (the packages the build made, found from the test's directory
 * build/tests): an in-process answer, a worker's call cancelled, a handle
 * freed before its answer. Under the sanitizers this is the leak check of
 * the handle and call lifetimes. */
static void test_async_calls_and_cancel(void **state)
{
    (void)state;
    char *err = NULL;
    if (par_runtime_deploy(rt, "../packages/echo-1.0.0.apkg", NULL, NULL, &err) != PAR_OK ||
        par_runtime_deploy(rt, "../test-packages/faulty-0.1.0.apkg", NULL, NULL, &err) != PAR_OK)
        fail_msg("deploy: %s", err ? err : "?");
    seen_t s = {0};
    par_call_opts_t o = {.agent_id = "echo", .input = "{\"a\":1}", .input_len = 7};
    assert_int_equal(par_call_start(rt, &o, on_answer, &s, NULL), PAR_OK);
    wait_calls(&s, 1);
    assert_int_equal(s.status, PAR_OK);
    assert_string_equal(s.body, "{\"a\":1}");
    par_call_handle_t *h = NULL;
    par_call_opts_t slow = {.agent_id = "faulty/slow", .input = "1500", .input_len = 4};
    assert_int_equal(par_call_start(rt, &slow, on_answer, &s, &h), PAR_OK);
    usleep(200 * 1000);
    assert_int_equal(par_call_cancel(h), PAR_OK);
    wait_calls(&s, 2);
    assert_int_equal(s.status, PAR_E_CANCELLED);
    assert_int_equal(par_call_cancel(h), PAR_E_NOT_FOUND);
    par_call_handle_free(h);
    slow.input = "100";
    slow.input_len = 3;
    assert_int_equal(par_call_start(rt, &slow, on_answer, &s, &h), PAR_OK);
    par_call_handle_free(h); /* before the answer: the call goes on */
    wait_calls(&s, 3);
    assert_int_equal(s.status, PAR_OK);
    assert_string_equal(s.body, "100");
    /* and blocking, with every option */
    par_result_t out;
    par_call_opts_t full = {.agent_id = "echo",
                            .input = "[1]",
                            .input_len = 3,
                            .context = "{\"k\":1}",
                            .context_len = 7,
                            .subject = "alice",
                            .tenant = "acme",
                            .timeout_ms = 1000,
                            .trace_id = "t-1",
                            .request_id = "r-1"};
    assert_int_equal(par_call_ex(rt, &full, &out), PAR_OK);
    assert_string_equal(out.data, "[1]");
    par_result_free(&out);
}

static void test_configuration_mistakes(void **state)
{
    (void)state;
    par_runtime_t *r = NULL;
    char *err = NULL;
    static const char typo[] = "state_dir: /tmp/x\nisolaton: worker\nlimits:\n  timeout_ms: soon\n";
    assert_int_equal(par_runtime_new_from_config("my.yaml", typo, strlen(typo), &r, &err),
                     PAR_E_INVALID_ARGUMENT);
    assert_null(r);
    assert_non_null(strstr(err, "my.yaml:2: unknown key `isolaton` (did you mean `isolation`?)"));
    assert_non_null(strstr(err, "my.yaml:4: `limits.timeout_ms`"));
    free(err);
    err = NULL;
    assert_int_equal(par_runtime_new_from_config("/nonexistent/par.yaml", NULL, 0, &r, &err),
                     PAR_E_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "cannot open the configuration file"));
    free(err);
    err = NULL;
    static const char idx[] = "registry:\n  index_url: ftp://x/index.json\n";
    assert_int_equal(par_runtime_new_from_config(NULL, idx, strlen(idx), &r, &err),
                     PAR_E_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "registry.index_url"));
    free(err);
}

/* ---- par_stream_start ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char types[32][24];
    uint64_t seqs[32];
    int n, ended, status, pause;
    char end[256];
} events_t;

static int on_event(void *arg, const par_stream_event_t *ev)
{
    events_t *e = arg;
    pthread_mutex_lock(&e->mu);
    if (ev->end) {
        e->ended = 1;
        e->status = ev->status;
        snprintf(e->end, sizeof(e->end), "%s", ev->data);
    } else if (e->n < 32) {
        e->seqs[e->n] = ev->seq;
        snprintf(e->types[e->n++], 24, "%s", ev->type);
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return e->pause ? PAR_STREAM_PAUSE : PAR_STREAM_CONTINUE;
}

/* Waits until `n` events arrived (or the end, when n < 0). */
static void wait_events(events_t *e, int n)
{
    pthread_mutex_lock(&e->mu);
    while (n < 0 ? !e->ended : e->n < n)
        pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
}

static void test_stream_events_pause_and_cancel(void **state)
{
    (void)state;
    char *err = NULL;
    if (par_runtime_deploy(rt, "../test-packages/events-0.1.0.apkg", NULL, NULL, &err) != PAR_OK)
        fail_msg("deploy: %s", err ? err : "?");
    events_t e = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    e.pause = 1; /* every callback pauses: the stream goes on only when resumed */
    par_call_opts_t o = {.agent_id = "events", .input = "3", .input_len = 1};
    par_stream_t *st = NULL;
    assert_int_equal(par_stream_start(rt, &o, on_event, &e, &st, NULL), PAR_OK);
    /* a pause holds the stream after the events of one read: nothing more
     * comes until the resume */
    for (int k = 0; k < 10; k++) {
        wait_events(&e, 1);
        usleep(20000); /* the rest of the read's batch */
        pthread_mutex_lock(&e.mu);
        int n = e.n, ended = e.ended;
        pthread_mutex_unlock(&e.mu);
        if (ended)
            break;
        usleep(20000);
        pthread_mutex_lock(&e.mu);
        assert_int_equal(e.n, n);
        assert_int_equal(e.ended, 0);
        pthread_mutex_unlock(&e.mu);
        par_stream_resume(st);
        usleep(20000);
    }
    wait_events(&e, -1);
    assert_int_equal(e.status, PAR_OK);
    assert_string_equal(e.types[0], "run.started");
    assert_string_equal(e.types[1], "tick");
    assert_string_equal(e.types[3], "tick");
    assert_string_equal(e.types[4], "run.completed");
    for (int k = 0; k < 5; k++)
        assert_int_equal(e.seqs[k], (uint64_t)k + 1);
    assert_non_null(strstr(e.end, "\"output\":{\"emitted\":3}"));
    assert_non_null(strstr(e.end, "\"run_id\":"));
    assert_int_equal(par_stream_cancel(st), PAR_E_RUN_ENDED);
    par_stream_free(st);

    /* refused: the error body, no stream */
    par_call_opts_t bad = {.agent_id = "nope", .input = "1", .input_len = 1};
    assert_int_equal(par_stream_start(rt, &bad, on_event, &e, &st, &err), PAR_E_AGENT_NOT_FOUND);
    assert_null(st);
    assert_non_null(err);
    assert_non_null(strstr(err, "\"error\":\"agent_not_found\""));
    free(err);

    /* cancelled: run.cancelled, then the end with PAR_E_CANCELLED */
    events_t c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    par_call_opts_t poll = {.agent_id = "events/poll-cancel", .input = "1", .input_len = 1};
    assert_int_equal(par_stream_start(rt, &poll, on_event, &c, &st, NULL), PAR_OK);
    wait_events(&c, 2); /* run.started, running */
    assert_int_equal(par_stream_cancel(st), PAR_OK);
    wait_events(&c, -1);
    assert_int_equal(c.status, PAR_E_CANCELLED);
    assert_string_equal(c.types[c.n - 1], "run.cancelled");
    par_stream_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options_are_named_errors),
        cmocka_unit_test(test_async_refusals_come_through_the_callback),
        cmocka_unit_test(test_listings_and_metrics),
        cmocka_unit_test(test_async_calls_and_cancel),
        cmocka_unit_test(test_configuration_mistakes),
        cmocka_unit_test(test_stream_events_pause_and_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
