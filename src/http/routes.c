/*
 * http/routes.c — see routes.h. The table below is the URL space of the
 * HTTP API; docs/api.md describes the same routes for clients.
 *
 * Order matters: the first route whose pattern matches decides, so a
 * pattern that another one's also matches comes first (/agents/{id}/invoke
 * before /agents/{id}), and /runtime ends with catch-alls that answer 404 but
 * make every path under it need runtime:admin. Routes with `pass` share their
 * path with the routes after them and differ in methods.
 *
 * The invoke route is the first row and the matcher skips rows by the path's
 * second byte, so an invocation costs one length test and two short memcmp.
 */
#include "http/routes.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define GET_ (PAR_HTTP_GET | PAR_HTTP_HEAD)
#define LIT(p)                                                                                     \
    .prefix = p, .prefix_len = sizeof(p) - 1, .var = PAR_HTTP_VAR_NONE, .suffix = "",              \
    .suffix_len = 0, .var_name = ""
#define PAT(p, name, kind, s)                                                                      \
    .prefix = p, .prefix_len = sizeof(p) - 1, .var = PAR_HTTP_VAR_##kind, .suffix = s,             \
    .suffix_len = sizeof(s) - 1, .var_name = name
#define ADMIN .need = PAR_HTTP_NEED_ADMIN
#define INVOKE .need = PAR_HTTP_NEED_INVOKE
#define CORS .cors = 1

static const char use_get[] = "use GET";
static const char use_post_runs[] = "use POST to start a run";
static const char use_get_run[] = "use GET to read a run, DELETE to remove it";
static const char use_get_runs[] = "use GET to list runs (POST /agents/{id}/runs starts one)";
static const char use_mcp[] = "use POST (GET resumes a stream, DELETE ends a session)";
static const char use_post_a2a[] =
    "use POST (JSON-RPC, message:send, message:stream, tasks/{task_id}:cancel) or GET "
    "(tasks, tasks/{task_id})";
static const char use_get_rt[] = "use GET (POST and DELETE are for /runtime/packages)";

static const par_http_route_t routes[] = {
    /* agents */
    {PAR_HTTP_POST, PAT("/agents/", "{id}", ID, "/invoke"), INVOKE, .label = "invoke",
     .wrong = "use POST to invoke", .id_what = "agent id", CORS, .handler = par__http_on_invoke},
    /* runs of an agent: before /agents/{id}, and passing GET on, since
     * "pkg/runs" may be a sub-agent's id */
    {PAR_HTTP_POST, PAT("/agents/", "{id}", ID, "/runs/stream"), .pass = 1, INVOKE,
     .label = "runs_stream", .wrong = use_post_runs, .id_what = "agent id", CORS,
     .handler = par__http_on_run_start_stream},
    {PAR_HTTP_POST, PAT("/agents/", "{id}", ID, "/runs/wait"), .pass = 1, INVOKE,
     .label = "runs_wait", .wrong = use_post_runs, .id_what = "agent id", CORS,
     .handler = par__http_on_run_start_wait},
    {PAR_HTTP_POST, PAT("/agents/", "{id}", ID, "/runs"), .pass = 1, INVOKE, .label = "runs",
     .wrong = use_post_runs, .id_what = "agent id", CORS, .handler = par__http_on_run_start},
    /* MCP (http/mcp.c): one package's agents as tools */
    {PAR_HTTP_POST | PAR_HTTP_GET | PAR_HTTP_DELETE, PAT("/agents/", "{id}", ID, "/mcp"), INVOKE,
     .label = "mcp", .wrong = use_mcp, .id_what = "package name", CORS,
     .handler = par__http_on_mcp},
    /* A2A (http/a2a.c): an agent's card, before /agents/{id} */
    {GET_, PAT("/agents/", "{id}", ID, "/.well-known/agent-card.json"), INVOKE, .label = "a2a_card",
     .wrong = use_get, .id_what = "agent id", CORS, .handler = par__http_on_a2a_card},
    {GET_, PAT("/agents/", "{id}", ID, ""), INVOKE, .label = "agent", .wrong = use_get,
     .id_what = "agent id", .handler = par__http_on_agent},
    {GET_, LIT("/agents"), .label = "agents", .wrong = use_get, .handler = par__http_on_agents},
    {GET_, LIT("/agents/"), .label = "agents", .wrong = use_get, .handler = par__http_on_agents},
    /* runs: a valid credential; the handlers check the run's owner and agent */
    {GET_, LIT("/runs"), .label = "runs", .wrong = use_get_runs, CORS,
     .handler = par__http_on_runs_list},
    {PAR_HTTP_POST, PAT("/runs/", "{run_id}", NAME, "/cancel"), .label = "run_cancel",
     .wrong = "use POST to cancel a run", .id_what = "run id", CORS,
     .handler = par__http_on_run_cancel},
    {GET_, PAT("/runs/", "{run_id}", NAME, "/wait"), .label = "run_wait",
     .wrong = "use GET to wait for a run's end", .id_what = "run id", CORS,
     .handler = par__http_on_run_wait},
    {GET_, PAT("/runs/", "{run_id}", NAME, "/stream"), .label = "run_stream",
     .wrong = "use GET to stream a run's events", .id_what = "run id", CORS,
     .handler = par__http_on_run_stream},
    {GET_ | PAR_HTTP_DELETE, PAT("/runs/", "{run_id}", NAME, ""), .label = "run",
     .wrong = use_get_run, .id_what = "run id", CORS, .handler = par__http_on_run},
    /* MCP (http/mcp.c): every agent the caller may invoke, as tools */
    {PAR_HTTP_POST | PAR_HTTP_GET | PAR_HTTP_DELETE, LIT("/mcp"), .label = "mcp", .wrong = use_mcp,
     CORS, .handler = par__http_on_mcp},
    /* A2A (http/a2a.c, http/a2a_rpc.c): the task routes check agents:invoke
     * themselves, their path holding the task id after the agent id */
    {GET_, LIT("/.well-known/agent-card.json"), .label = "a2a_card", .wrong = use_get, CORS,
     .handler = par__http_on_a2a_catalog},
    {PAR_HTTP_POST, PAT("/a2a/", "{id}", ID, "/message:send"), INVOKE, .label = "a2a",
     .wrong = use_post_a2a, .id_what = "agent id", CORS, .handler = par__http_on_a2a_rest_send},
    {PAR_HTTP_POST, PAT("/a2a/", "{id}", ID, "/message:stream"), INVOKE, .label = "a2a",
     .wrong = use_post_a2a, .id_what = "agent id", CORS, .handler = par__http_on_a2a_rest_send},
    {PAR_HTTP_POST, PAT("/a2a/", "{id}", ID, ":cancel"), .label = "a2a", .wrong = use_post_a2a,
     CORS, .handler = par__http_on_a2a_rest_cancel},
    {PAR_HTTP_POST, PAT("/a2a/", "{id}", ID, ":subscribe"), .label = "a2a", .wrong = use_post_a2a,
     CORS, .handler = par__http_on_a2a_rest_subscribe},
    /* push-notification configs: not supported (the card says so) */
    {PAR_HTTP_POST, PAT("/a2a/", "{id}", ID, "/pushNotificationConfigs"), .pass = 1, .label = "a2a",
     .wrong = use_post_a2a, CORS, .handler = par__http_on_a2a_rest_push},
    {PAR_HTTP_DELETE, PAT("/a2a/", "{id}", ID, ""), .pass = 1, .label = "a2a",
     .wrong = use_post_a2a, CORS, .handler = par__http_on_a2a_rest_push},
    {PAR_HTTP_POST, PAT("/a2a/", "{id}", ID, ""), .pass = 1, INVOKE, .label = "a2a",
     .wrong = use_post_a2a, .id_what = "agent id", CORS, .handler = par__http_on_a2a_rpc},
    {GET_, PAT("/a2a/", "{id}", ID, "/extendedAgentCard"), INVOKE, .label = "a2a", .wrong = use_get,
     .id_what = "agent id", CORS, .handler = par__http_on_a2a_card},
    {GET_, PAT("/a2a/", "{id}", ID, ""), .label = "a2a", .wrong = use_post_a2a, CORS,
     .handler = par__http_on_a2a_rest_get},
    /* metrics */
    {GET_, LIT("/metrics"), ADMIN, .label = "metrics", .wrong = use_get,
     .handler = par__http_on_metrics},
    /* runtime */
    {GET_, LIT("/runtime/health"), ADMIN, .label = "health", .wrong = use_get_rt,
     .handler = par__http_on_health},
    {GET_, LIT("/runtime/ready"), ADMIN, .label = "ready", .wrong = use_get_rt,
     .handler = par__http_on_ready},
    {GET_, LIT("/runtime/info"), ADMIN, .label = "info", .wrong = use_get_rt,
     .handler = par__http_on_info},
    {GET_, LIT("/runtime/usage"), ADMIN, .label = "usage", .wrong = use_get_rt,
     .handler = par__http_on_usage},
    {GET_, LIT("/runtime/packages"), .pass = 1, ADMIN, .label = "packages", .wrong = use_get_rt,
     .handler = par__http_on_packages},
    {PAR_HTTP_POST, LIT("/runtime/packages"), ADMIN, .label = "packages", .wrong = use_get_rt,
     .handler = par__http_on_deploy},
    {PAR_HTTP_POST, PAT("/runtime/packages/", "{name}", NAME, "/reload"), .pass = 1, ADMIN,
     .label = "package", .wrong = use_get_rt, .id_what = "package name",
     .handler = par__http_on_reload},
    /* a package's name, where '/' can only fail to be found */
    {GET_, PAT("/runtime/packages/", "{name}", ID, ""), .pass = 1, ADMIN, .label = "package",
     .wrong = use_get_rt, .id_what = "package name", .handler = par__http_on_package},
    {PAR_HTTP_DELETE, PAT("/runtime/packages/", "{name}", ID, ""), .pass = 1, ADMIN,
     .label = "package", .wrong = use_get_rt, .id_what = "package name",
     .handler = par__http_on_remove},
    /* POST there is only .../reload */
    {PAR_HTTP_POST, PAT("/runtime/packages/", "{name}", ID, ""), ADMIN, .label = "package",
     .wrong = use_get_rt, .id_what = "package name", .handler = par__http_on_no_route},
    /* catch-alls: the rest of /runtime needs runtime:admin and is not found */
    {GET_, PAT("/runtime/", "*", TAIL, ""), ADMIN, .label = "other", .wrong = use_get_rt,
     .handler = par__http_on_no_route},
    {PAR_HTTP_ANY, PAT("/runtime", "*", TAIL, ""), ADMIN, .label = "other", .wrong = use_get_rt,
     .handler = par__http_on_no_route},
};

#define NROUTES (sizeof(routes) / sizeof(*routes))

unsigned par__http_method(const char *m, size_t len)
{
    switch (len) {
    case 3:
        return memcmp(m, "GET", 3) == 0 ? PAR_HTTP_GET : PAR_HTTP_OTHER;
    case 4:
        return memcmp(m, "POST", 4) == 0   ? PAR_HTTP_POST
               : memcmp(m, "HEAD", 4) == 0 ? PAR_HTTP_HEAD
                                           : PAR_HTTP_OTHER;
    case 6:
        return memcmp(m, "DELETE", 6) == 0 ? PAR_HTTP_DELETE : PAR_HTTP_OTHER;
    default:
        return PAR_HTTP_OTHER;
    }
}

/* Whether `r`'s pattern matches p[0..n); sets its variable part. */
static int pattern_matches(const par_http_route_t *r, const char *p, size_t n, size_t *mid)
{
    if (n < (size_t)r->prefix_len + r->suffix_len || memcmp(p, r->prefix, r->prefix_len) != 0)
        return 0;
    *mid = n - r->prefix_len - r->suffix_len;
    if (r->suffix_len && memcmp(p + n - r->suffix_len, r->suffix, r->suffix_len) != 0)
        return 0;
    switch (r->var) {
    case PAR_HTTP_VAR_NONE:
        return *mid == 0;
    case PAR_HTTP_VAR_ID:
        return *mid > 0;
    case PAR_HTTP_VAR_NAME:
        return *mid > 0 && memchr(p + r->prefix_len, '/', *mid) == NULL;
    default:
        return 1;
    }
}

void par__http_route_match(unsigned method, const char *path, size_t len, par_http_match_t *out)
{
    assert(method != 0 && (method & ~(unsigned)PAR_HTTP_ANY) == 0);
    *out = (par_http_match_t){NULL, 0, NULL, 0};
    if (len < 2 || path[0] != '/')
        return;
    for (size_t i = 0; i < NROUTES; i++) {
        const par_http_route_t *r = &routes[i];
        size_t mid;
        if (r->prefix[1] != path[1] || !pattern_matches(r, path, len, &mid))
            continue;
        if ((r->methods & method) || out->route == NULL) {
            out->route = r;
            out->wrong_method = (r->methods & method) == 0;
            out->var = path + r->prefix_len;
            out->var_len = mid;
        }
        if (!out->wrong_method || !r->pass)
            return;
    }
}

const char *par__http_route_label(const par_http_match_t *m)
{
    return m->route ? m->route->label : "other";
}

par_http_need_t par__http_route_need(const par_http_match_t *m)
{
    return m->route ? (par_http_need_t)m->route->need : PAR_HTTP_NEED_NOTHING;
}

const par_http_route_t *par__http_routes(size_t *count)
{
    *count = NROUTES;
    return routes;
}

void par__http_route_pattern(const par_http_route_t *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s", r->prefix, r->var_name, r->suffix);
}
