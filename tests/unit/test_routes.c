/* Unit tests for http/routes.c: the route table and its matcher — every
 * route, wrong methods (405 and its message), unknown paths, trailing
 * slashes, percent-encoded ids, ids with sub-agent parts, and the id checks
 * of http/check.c that read the match (over-long ids, control bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/check.h"
#include "http/routes.h"

enum { G = PAR_HTTP_GET, H = PAR_HTTP_HEAD, P = PAR_HTTP_POST, D = PAR_HTTP_DELETE };
#define O PAR_HTTP_OTHER

static par_http_match_t match(unsigned method, const char *path)
{
    par_http_match_t m;
    par__http_route_match(method, path, strlen(path), &m);
    return m;
}

/* `path` reaches `handler` with variable part `var` (NULL: none), under
 * `label`, needing `need`. */
static void expect(unsigned method, const char *path, par_http_handler_fn *handler, const char *var,
                   const char *label, par_http_need_t need)
{
    par_http_match_t m = match(method, path);
    if (m.route == NULL || m.wrong_method || m.route->handler != handler)
        fail_msg("%s: route %p wrong_method %d", path, (void *)m.route, m.wrong_method);
    if (var) {
        assert_int_equal(m.var_len, strlen(var));
        assert_memory_equal(m.var, var, m.var_len);
    }
    assert_string_equal(par__http_route_label(&m), label);
    assert_int_equal(par__http_route_need(&m), need);
}

/* `path` is a known route's, `method` is not one of its: 405 with `msg`. */
static void expect_405(unsigned method, const char *path, const char *msg, const char *label,
                       par_http_need_t need)
{
    par_http_match_t m = match(method, path);
    assert_non_null(m.route);
    if (!m.wrong_method)
        fail_msg("%s: not a 405", path);
    assert_string_equal(m.route->wrong, msg);
    assert_string_equal(par__http_route_label(&m), label);
    assert_int_equal(par__http_route_need(&m), need);
}

static void expect_404(unsigned method, const char *path)
{
    par_http_match_t m = match(method, path);
    if (m.route != NULL)
        fail_msg("%s: matched %s", path, m.route->label);
    assert_string_equal(par__http_route_label(&m), "other");
    assert_int_equal(par__http_route_need(&m), PAR_HTTP_NEED_NOTHING);
}

static const char use_get[] = "use GET";
static const char use_get_rt[] = "use GET (POST and DELETE are for /runtime/packages)";
static const char use_post_a2a[] =
    "use POST (JSON-RPC, message:send, message:stream, tasks/{task_id}:cancel) or GET "
    "(tasks, tasks/{task_id})";

static void test_methods(void **state)
{
    (void)state;
    assert_int_equal(par__http_method("GET", 3), PAR_HTTP_GET);
    assert_int_equal(par__http_method("HEAD", 4), PAR_HTTP_HEAD);
    assert_int_equal(par__http_method("POST", 4), PAR_HTTP_POST);
    assert_int_equal(par__http_method("DELETE", 6), PAR_HTTP_DELETE);
    assert_int_equal(par__http_method("PUT", 3), PAR_HTTP_OTHER);
    assert_int_equal(par__http_method("get", 3), PAR_HTTP_OTHER); /* methods are case-sensitive */
    assert_int_equal(par__http_method("OPTIONS", 7), PAR_HTTP_OTHER);
    assert_int_equal(par__http_method("POS", 3), PAR_HTTP_OTHER);
    assert_int_equal(par__http_method("", 0), PAR_HTTP_OTHER);
}

static void test_every_route(void **state)
{
    (void)state;
    const par_http_need_t A = PAR_HTTP_NEED_ADMIN, I = PAR_HTTP_NEED_INVOKE,
                          N = PAR_HTTP_NEED_NOTHING;
    expect(P, "/agents/echo/invoke", par__http_on_invoke, "echo", "invoke", I);
    expect(G, "/agents/echo", par__http_on_agent, "echo", "agent", I);
    expect(H, "/agents/echo", par__http_on_agent, "echo", "agent", I);
    expect(G, "/agents", par__http_on_agents, NULL, "agents", N);
    expect(G, "/agents/", par__http_on_agents, NULL, "agents", N);
    expect(G, "/metrics", par__http_on_metrics, NULL, "metrics", A);
    expect(G, "/runtime/health", par__http_on_health, NULL, "health", A);
    expect(H, "/runtime/health", par__http_on_health, NULL, "health", A);
    expect(G, "/runtime/ready", par__http_on_ready, NULL, "ready", A);
    expect(G, "/runtime/info", par__http_on_info, NULL, "info", A);
    expect(G, "/runtime/usage", par__http_on_usage, NULL, "usage", A);
    expect(G, "/runtime/packages", par__http_on_packages, NULL, "packages", A);
    expect(P, "/runtime/packages", par__http_on_deploy, NULL, "packages", A);
    expect(G, "/runtime/packages/echo", par__http_on_package, "echo", "package", A);
    expect(D, "/runtime/packages/echo", par__http_on_remove, "echo", "package", A);
    expect(D, "/runtime/packages/echo@1.0.0", par__http_on_remove, "echo@1.0.0", "package", A);
    expect(P, "/runtime/packages/echo/reload", par__http_on_reload, "echo", "package", A);
    /* POST under /runtime/packages/ is only .../reload */
    expect(P, "/runtime/packages/echo", par__http_on_no_route, "echo", "package", A);
    expect(P, "/runtime/packages/a/b/reload", par__http_on_no_route, "a/b/reload", "package", A);
    /* A2A: cards before /agents/{id}; the task routes carry agent and task in one variable */
    expect(G, "/agents/echo/shout/.well-known/agent-card.json", par__http_on_a2a_card, "echo/shout",
           "a2a_card", I);
    expect(G, "/.well-known/agent-card.json", par__http_on_a2a_catalog, NULL, "a2a_card", N);
    expect(P, "/a2a/echo", par__http_on_a2a_rpc, "echo", "a2a", I);
    expect(P, "/a2a/echo/shout", par__http_on_a2a_rpc, "echo/shout", "a2a", I);
    expect(G, "/a2a/echo/shout/extendedAgentCard", par__http_on_a2a_card, "echo/shout", "a2a", I);
    expect(P, "/a2a/echo/message:send", par__http_on_a2a_rest_send, "echo", "a2a", I);
    expect(P, "/a2a/echo/message:stream", par__http_on_a2a_rest_send, "echo", "a2a", I);
    expect(P, "/a2a/echo/shout/tasks/run_1:cancel", par__http_on_a2a_rest_cancel,
           "echo/shout/tasks/run_1", "a2a", N);
    expect(P, "/a2a/echo/tasks/run_1:subscribe", par__http_on_a2a_rest_subscribe,
           "echo/tasks/run_1", "a2a", N);
    expect(G, "/a2a/echo/tasks/run_1", par__http_on_a2a_rest_get, "echo/tasks/run_1", "a2a", N);
    expect(G, "/a2a/echo/tasks", par__http_on_a2a_rest_get, "echo/tasks", "a2a", N);
    /* push-notification configs (answered "not supported"); DELETE is theirs only:
     * the handler answers 405 for any other path */
    expect(P, "/a2a/echo/tasks/run_1/pushNotificationConfigs", par__http_on_a2a_rest_push,
           "echo/tasks/run_1", "a2a", N);
    expect(G, "/a2a/echo/tasks/run_1/pushNotificationConfigs", par__http_on_a2a_rest_get,
           "echo/tasks/run_1/pushNotificationConfigs", "a2a", N);
    expect(D, "/a2a/echo/tasks/run_1/pushNotificationConfigs/c1", par__http_on_a2a_rest_push,
           "echo/tasks/run_1/pushNotificationConfigs/c1", "a2a", N);
    expect(D, "/a2a/echo", par__http_on_a2a_rest_push, "echo", "a2a", N);
    expect_405(G, "/a2a/echo/message:send", use_post_a2a, "a2a", I);
}

/* Every row of the table decides for a path built from its own pattern. */
static void test_every_row_reachable(void **state)
{
    (void)state;
    size_t n;
    const par_http_route_t *t = par__http_routes(&n);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s%s%s", t[i].prefix,
                 t[i].var == PAR_HTTP_VAR_NONE ? "" : "x", t[i].suffix);
        assert_int_equal(strlen(t[i].prefix), t[i].prefix_len);
        assert_int_equal(strlen(t[i].suffix), t[i].suffix_len);
        unsigned method = t[i].methods & -t[i].methods; /* its first method */
        par_http_match_t m = match(method, path);
        if (m.route != &t[i] || m.wrong_method)
            fail_msg("row %zu (%s) is shadowed for %s", i, t[i].label, path);
        assert_non_null(t[i].handler);
        assert_non_null(t[i].wrong);
        assert_non_null(t[i].label);
    }
}

static void test_patterns(void **state)
{
    (void)state;
    char buf[64];
    par_http_match_t m = match(P, "/agents/x/invoke");
    par__http_route_pattern(m.route, buf, sizeof(buf));
    assert_string_equal(buf, "/agents/{id}/invoke");
    m = match(P, "/runtime/packages/x/reload");
    par__http_route_pattern(m.route, buf, sizeof(buf));
    assert_string_equal(buf, "/runtime/packages/{name}/reload");
    m = match(G, "/runtime/info");
    par__http_route_pattern(m.route, buf, sizeof(buf));
    assert_string_equal(buf, "/runtime/info");
}

static void test_wrong_method(void **state)
{
    (void)state;
    const par_http_need_t A = PAR_HTTP_NEED_ADMIN, I = PAR_HTTP_NEED_INVOKE,
                          N = PAR_HTTP_NEED_NOTHING;
    /* an invoke path is the invoke route's for every method */
    expect_405(G, "/agents/echo/invoke", "use POST to invoke", "invoke", I);
    expect_405(D, "/agents/echo/invoke", "use POST to invoke", "invoke", I);
    par_http_match_t m = match(G, "/agents/echo/invoke");
    assert_int_equal(m.var_len, 4); /* the permission is checked for the agent */
    expect_405(P, "/agents/echo", use_get, "agent", I);
    expect_405(D, "/agents", use_get, "agents", N);
    expect_405(P, "/agents/", use_get, "agents", N);
    expect_405(P, "/metrics", use_get, "metrics", A);
    expect_405(O, "/metrics", use_get, "metrics", A);
    expect_405(P, "/runtime/health", use_get_rt, "health", A);
    expect_405(D, "/runtime/info", use_get_rt, "info", A);
    expect_405(P, "/runtime/usage", use_get_rt, "usage", A);
    expect_405(D, "/runtime/packages", use_get_rt, "packages", A);
    expect_405(O, "/runtime/packages", use_get_rt, "packages", A);
    expect_405(O, "/runtime/packages/echo", use_get_rt, "package", A);
    expect_405(O, "/runtime/packages/echo/reload", use_get_rt, "package", A);
    /* anything else under /runtime/ takes GET only (and then is not found) */
    expect_405(P, "/runtime/nothing", use_get_rt, "other", A);
    expect_405(D, "/runtime/", use_get_rt, "other", A);
    expect(G, "/runtime/nothing", par__http_on_no_route, "nothing", "other", A);
}

static void test_unknown_paths(void **state)
{
    (void)state;
    expect_404(G, "/");
    expect_404(P, "/");
    expect_404(G, "*");
    expect_404(G, "/agentsx");
    expect_404(G, "/agent/echo");
    expect_404(P, "/invoke");
    expect_404(G, "/metricsx");
    expect_404(G, "/health");
    expect_404(G, "/Agents/echo");
    /* /runtime without a slash is under /runtime: admin, and not found */
    expect(G, "/runtime", par__http_on_no_route, NULL, "other", PAR_HTTP_NEED_ADMIN);
    expect(P, "/runtime", par__http_on_no_route, NULL, "other", PAR_HTTP_NEED_ADMIN);
    expect(D, "/runtimex", par__http_on_no_route, NULL, "other", PAR_HTTP_NEED_ADMIN);
}

static void test_trailing_slash(void **state)
{
    (void)state;
    expect_404(G, "/metrics/");
    expect(G, "/agents/", par__http_on_agents, NULL, "agents", PAR_HTTP_NEED_NOTHING);
    /* a slash after a literal route is another path: not found */
    expect(G, "/runtime/health/", par__http_on_no_route, "health/", "other", PAR_HTTP_NEED_ADMIN);
    expect(G, "/runtime/packages/", par__http_on_no_route, "packages/", "other",
           PAR_HTTP_NEED_ADMIN);
    expect_405(P, "/runtime/packages/", use_get_rt, "other", PAR_HTTP_NEED_ADMIN);
    /* after an id, the slash is part of the id (and names no agent) */
    expect(G, "/agents/echo/", par__http_on_agent, "echo/", "agent", PAR_HTTP_NEED_INVOKE);
    expect_405(P, "/agents/echo/invoke/", use_get, "agent", PAR_HTTP_NEED_INVOKE);
}

static void test_ids_with_parts(void **state)
{
    (void)state;
    const par_http_need_t I = PAR_HTTP_NEED_INVOKE;
    expect(P, "/agents/pkg/sub/invoke", par__http_on_invoke, "pkg/sub", "invoke", I);
    expect(P, "/agents/pkg@1.2.0/sub/invoke", par__http_on_invoke, "pkg@1.2.0/sub", "invoke", I);
    expect(G, "/agents/pkg/sub", par__http_on_agent, "pkg/sub", "agent", I);
    /* an agent called "invoke", and an id that is only the suffix's slash */
    expect(G, "/agents/invoke", par__http_on_agent, "invoke", "agent", I);
    expect(P, "/agents/invoke/invoke", par__http_on_invoke, "invoke", "invoke", I);
    expect_405(P, "/agents/invoke", use_get, "agent", I);
    expect(G, "/agents//invoke", par__http_on_agent, "/invoke", "agent", I);
    /* a package name holds no '/' in a reload; GET takes the rest whole */
    expect(G, "/runtime/packages/x/reload", par__http_on_package, "x/reload", "package",
           PAR_HTTP_NEED_ADMIN);
    expect(D, "/runtime/packages/x/reload", par__http_on_remove, "x/reload", "package",
           PAR_HTTP_NEED_ADMIN);
}

static void test_mcp_routes(void **state)
{
    (void)state;
    const par_http_need_t I = PAR_HTTP_NEED_INVOKE, N = PAR_HTTP_NEED_NOTHING;
    expect(P, "/mcp", par__http_on_mcp, NULL, "mcp", N);
    expect(G, "/mcp", par__http_on_mcp, NULL, "mcp", N);
    expect(D, "/mcp", par__http_on_mcp, NULL, "mcp", N);
    /* one package's agents: the need is agents:invoke for the package */
    expect(P, "/agents/shop/mcp", par__http_on_mcp, "shop", "mcp", I);
    expect(D, "/agents/shop/mcp", par__http_on_mcp, "shop", "mcp", I);
    expect(P, "/agents/shop/mcp/invoke", par__http_on_invoke, "shop/mcp", "invoke", I);
    expect_404(P, "/mcp/x");
    expect_404(P, "/mcpx");
    /* browsers of http.cors.origins may call both (docs/protocols.md) */
    assert_true(match(P, "/mcp").route->cors);
    assert_true(match(P, "/agents/shop/mcp").route->cors);
}

static void test_runs_routes(void **state)
{
    (void)state;
    const par_http_need_t I = PAR_HTTP_NEED_INVOKE, N = PAR_HTTP_NEED_NOTHING;
    expect(P, "/agents/echo/runs", par__http_on_run_start, "echo", "runs", I);
    expect(P, "/agents/pkg/sub/runs", par__http_on_run_start, "pkg/sub", "runs", I);
    expect(P, "/agents/pkg/sub/runs/stream", par__http_on_run_start_stream, "pkg/sub",
           "runs_stream", I);
    expect(P, "/agents/echo/runs/wait", par__http_on_run_start_wait, "echo", "runs_wait", I);
    /* a sub-agent called "runs": GET is the agent's, the invoke its own */
    expect(G, "/agents/pkg/runs", par__http_on_agent, "pkg/runs", "agent", I);
    expect(P, "/agents/pkg/runs/invoke", par__http_on_invoke, "pkg/runs", "invoke", I);
    expect(P, "/agents/pkg/runs/runs/stream", par__http_on_run_start_stream, "pkg/runs",
           "runs_stream", I);
    expect(G, "/runs", par__http_on_runs_list, NULL, "runs", N);
    expect(G, "/runs/r1", par__http_on_run, "r1", "run", N);
    expect(D, "/runs/r1", par__http_on_run, "r1", "run", N);
    expect(G, "/runs/r1/stream", par__http_on_run_stream, "r1", "run_stream", N);
    expect(P, "/runs/r1/cancel", par__http_on_run_cancel, "r1", "run_cancel", N);
    expect_405(P, "/runs", "use GET to list runs (POST /agents/{id}/runs starts one)", "runs", N);
    expect_405(P, "/runs/r1", "use GET to read a run, DELETE to remove it", "run", N);
    expect_405(G, "/runs/r1/cancel", "use POST to cancel a run", "run_cancel", N);
    expect_405(P, "/runs/r1/stream", "use GET to stream a run's events", "run_stream", N);
    /* run ids hold no '/'; /runs is not /runtime */
    expect_404(G, "/runs/a/b");
    expect_404(G, "/runs/");
    expect_404(G, "/runsx");
    /* the routes browsers may call are marked for CORS, the others not */
    assert_true(match(P, "/agents/e/invoke").route->cors);
    assert_true(match(P, "/agents/e/runs/stream").route->cors);
    assert_true(match(G, "/runs/r1/stream").route->cors);
    assert_true(match(G, "/runs").route->cors);
    assert_false(match(G, "/agents/e").route->cors);
    assert_false(match(G, "/runtime/info").route->cors);
}

/* h2o percent-decodes the path the matcher sees (req->path_normalized). */
static void test_encoded_ids(void **state)
{
    (void)state;
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    static const char raw[] = "/agents/pkg%40v1%2Fsub%20x/invoke?x=1";
    size_t q = SIZE_MAX, *idx = NULL;
    h2o_iovec_t norm = h2o_url_normalize_path(&pool, raw, strlen(raw), &q, &idx);
    par_http_match_t m;
    par__http_route_match(PAR_HTTP_POST, norm.base, norm.len, &m);
    assert_non_null(m.route);
    assert_ptr_equal(m.route->handler, par__http_on_invoke);
    assert_int_equal(m.var_len, strlen("pkg@v1/sub x"));
    assert_memory_equal(m.var, "pkg@v1/sub x", m.var_len);
    /* an encoded "/invoke" is the suffix too, once decoded */
    static const char raw2[] = "/agents/echo%2Finvoke";
    q = SIZE_MAX;
    norm = h2o_url_normalize_path(&pool, raw2, strlen(raw2), &q, &idx);
    par__http_route_match(PAR_HTTP_POST, norm.base, norm.len, &m);
    assert_non_null(m.route);
    assert_ptr_equal(m.route->handler, par__http_on_invoke);
    assert_int_equal(m.var_len, 4);
    /* a control byte decoded into the id is refused by the check */
    static const char raw3[] = "/agents/ec%0Aho/invoke";
    q = SIZE_MAX;
    norm = h2o_url_normalize_path(&pool, raw3, strlen(raw3), &q, &idx);
    par__http_route_match(PAR_HTTP_POST, norm.base, norm.len, &m);
    char msg[200];
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "the agent id in the path holds the control byte 0x0a at byte 2");
    h2o_mem_clear_pool(&pool);
}

static void test_id_limits(void **state)
{
    (void)state;
    char path[400], msg[200];
    char id[260];
    memset(id, 'a', sizeof(id));
    /* 200 bytes pass, 201 do not: for agent ids and package names */
    snprintf(path, sizeof(path), "/agents/%.200s/invoke", id);
    par_http_match_t m = match(P, path);
    assert_int_equal(m.var_len, 200);
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), 0);
    snprintf(path, sizeof(path), "/agents/%.201s/invoke", id);
    m = match(P, path);
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "the agent id in the path is 201 bytes long; the limit is 200");
    snprintf(path, sizeof(path), "/agents/%.250s", id);
    m = match(G, path);
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), -1);
    snprintf(path, sizeof(path), "/runtime/packages/%.201s/reload", id);
    m = match(P, path);
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "the package name in the path is 201 bytes long; the limit is 200");
    snprintf(path, sizeof(path), "/runtime/packages/%.200s", id);
    m = match(D, path);
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), 0);
    /* routes without an id are never refused, however long */
    snprintf(path, sizeof(path), "/runtime/%.250s", id);
    m = match(G, path);
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), 0);
    m = match(G, "/nowhere");
    assert_int_equal(par__http_check_route_id(&m, msg, sizeof(msg)), 0);
    /* the fuzz harness's entry: the path matched as a POST */
    assert_int_equal(par__http_check_path_ids(h2o_iovec_init(H2O_STRLIT("/agents/a\x01/invoke")),
                                              msg, sizeof(msg)),
                     -1);
    assert_int_equal(
        par__http_check_path_ids(h2o_iovec_init(H2O_STRLIT("/agents/ab/invoke")), msg, sizeof(msg)),
        0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_every_route),
        cmocka_unit_test(test_every_row_reachable),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_wrong_method),
        cmocka_unit_test(test_unknown_paths),
        cmocka_unit_test(test_trailing_slash),
        cmocka_unit_test(test_ids_with_parts),
        cmocka_unit_test(test_runs_routes),
        cmocka_unit_test(test_mcp_routes),
        cmocka_unit_test(test_encoded_ids),
        cmocka_unit_test(test_id_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
