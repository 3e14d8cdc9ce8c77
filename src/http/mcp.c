/*
 * http/mcp.c — MCP over Streamable HTTP (revisions 2025-06-18 and
 * 2025-11-25; docs/protocols.md "MCP" maps every method onto PAR's API):
 *
 *   POST   /mcp, /agents/{id}/mcp   one JSON-RPC message: a request is
 *          answered with application/json, or, for tools/call when the
 *          client accepts it, with text/event-stream (progress, then the
 *          result); a notification or a response gets 202
 *   GET    with Last-Event-ID: resumes a tool call's stream; without: 405
 *          (no standalone server-to-client stream: PAR sends no requests,
 *          and a task's status notification goes on its tasks/result
 *          stream; the transport allows 405)
 *   DELETE ends the session named by Mcp-Session-Id
 *
 * /mcp offers every public agent the caller may invoke as a tool;
 * /agents/{id}/mcp those of package {id}. Every tool call is a run
 * (runtime/runs.h), so tools/call, its stream and MCP tasks share one record:
 * a task id is a run id, and a stream's event ids are "<run id>:<sequence>",
 * which a client resumes from with GET and Last-Event-ID. The request's
 * JSON-RPC id and progress token are the run's metadata "mcp", which is how
 * a resumed stream answers under the original id.
 *
 * Authentication happened before (http/server.c; routes as invoke's), so a
 * caller only ever sees and calls agents it may invoke; a session belongs to
 * the caller that opened it. Loop thread only; nothing blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "http/mcp.h"
#include "runtime/runs.h"

#define V_NEW "2025-11-25"
#define V_OLD "2025-06-18"
#define ENVELOPE_MAX (64u << 10) /* a message's room beside the tool's input */

typedef struct mcp_req {
    par_http_exchange_t *x;
    const char *scope; /* "" or the package name, in the request's pool */
    json_t *msg, *id, *params;
    const char *method;
    char session[33];
    char version[16];
} mcp_req_t;

/* The per-stream framing of a tool call's run (request pool). */
typedef struct mcp_frame {
    par_http_framed_t base; /* first: http/sse.c's view */
    char *rpc_id;           /* the JSON-RPC id, as JSON */
    char *token;            /* the progress token, as JSON, or NULL */
    int related_task;       /* tasks/result: _meta names the task */
    uint32_t retention_s;   /* tasks/result: the Task's ttl, for its status notification */
} mcp_frame_t;

/* ---- answers --------------------------------------------------------------------- */

static void session_header(mcp_req_t *q)
{
    h2o_req_t *req = q->x->req;
    if (q->session[0])
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("mcp-session-id"), 0, NULL,
                              h2o_strdup(&req->pool, q->session, 32).base, 32);
}

/* Sends `doc` (consumed) with HTTP status `http`; returns 1 (logged by the
 * caller). */
static int send_doc(mcp_req_t *q, int http, json_t *doc)
{
    session_header(q);
    par__http_send_json(q->x->req, http, doc, q->x->rid);
    return 1;
}

static int rpc_error(mcp_req_t *q, int http, int code, const char *msg, json_t *data)
{
    json_t *e = json_pack("{s:i, s:s}", "code", code, "message", msg);
    if (e && data)
        json_object_set(e, "data", data);
    json_t *doc = e ? json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id",
                                q->id ? q->id : json_null(), "error", e)
                    : NULL;
    return send_doc(q, http, doc);
}

static int rpc_result(mcp_req_t *q, json_t *result)
{
    if (result == NULL)
        return rpc_error(q, 500, MCP_INTERNAL_ERROR, "out of memory", NULL);
    return send_doc(q, 200,
                    json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", q->id, "result", result));
}

/* ---- framing a run as JSON-RPC messages ------------------------------------------ */

/* The tool result (or error) of an ended run as one JSON-RPC response. */
static char *response_text(mcp_frame_t *fr, par_run_t *r)
{
    int rc;
    json_t *res = par__mcp_tool_result(r, &rc);
    if (res && fr->related_task)
        json_object_set_new(res, "_meta",
                            json_pack("{s:{s:s}}", "io.modelcontextprotocol/related-task", "taskId",
                                      par_run_id(r)));
    json_t *id = json_loads(fr->rpc_id, JSON_DECODE_ANY, NULL);
    json_t *doc = res ? json_pack("{s:s, s:o?, s:o}", "jsonrpc", "2.0", "id", id, "result", res)
                      : json_pack("{s:s, s:o?, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error",
                                  "code", MCP_INTERNAL_ERROR, "message", par_status_name(rc));
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

static int put_message(par_buf_t *o, par_run_t *r, const char *seq, size_t seqlen, const char *json)
{
    return par_buf_appendf(o, "id: %s:%.*s\nevent: message\ndata: %s\n\n", par_run_id(r),
                           (int)seqlen, seq, json);
}

/* The end of a task on a tasks/result stream: notifications/tasks/status
 * with the Task in its terminal status (revision 2025-11-25: a receiver may
 * tell the requestor of a status change; the only change a PAR task makes
 * after tasks/get could see it working is its end), then the response.
 * Without event ids: a resumed stream would answer the tools/call's id, so
 * a client whose tasks/result stream broke asks tasks/result again. */
static int task_ended(mcp_frame_t *fr, par_run_t *r, par_buf_t *o)
{
    json_t *t = par__mcp_task(r, fr->retention_s);
    json_t *n = t ? json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method",
                              "notifications/tasks/status", "params", t)
                  : NULL;
    char *ns = n ? json_dumps(n, JSON_COMPACT) : NULL;
    json_decref(n);
    char *s = ns ? response_text(fr, r) : NULL;
    int rc =
        s ? par_buf_appendf(o, "event: message\ndata: %s\n\nevent: message\ndata: %s\n\n", ns, s)
          : PAR_E_NO_MEMORY;
    free(ns);
    free(s);
    return rc;
}

/* One SSE event of the run (id, type, data spans) as MCP: progress while it
 * runs, the response at its end. */
static int frame_one(mcp_frame_t *fr, par_run_t *r, const char *id, size_t idl, const char *ty,
                     size_t tyl, const char *data, size_t dl, par_buf_t *o)
{
    static const char *const ends[] = {"run.completed", "run.failed", "run.cancelled",
                                       "run.interrupted"};
    for (size_t k = 0; k < 4; k++)
        if (h2o_memis(ty, tyl, ends[k], strlen(ends[k]))) {
            if (fr->related_task)
                return task_ended(fr, r, o);
            char *s = response_text(fr, r);
            int rc = s ? put_message(o, r, id, idl, s) : PAR_E_NO_MEMORY;
            free(s);
            return rc;
        }
    if (fr->related_task) /* tasks/result streams the task's end only */
        return PAR_OK;
    if (fr->token == NULL) /* nobody asked for progress: an id to resume from, no message */
        return par_buf_appendf(o, "id: %s:%.*s\ndata: \n\n", par_run_id(r), (int)idl, id);
    par_buf_t m;
    par_buf_init(&m, 0);
    int rc = par_buf_appendf(&m,
                             "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\","
                             "\"params\":{\"progressToken\":%s,\"progress\":%.*s,\"message\":",
                             fr->token, (int)idl, id);
    char *msg = NULL;
    if (rc == PAR_OK &&
        asprintf(&msg, "%.*s %.*s", (int)tyl, ty, (int)(dl > 4000 ? 4000 : dl), data) < 0)
        msg = NULL;
    rc = msg ? par_buf_append_json_str(&m, msg, strlen(msg)) : PAR_E_NO_MEMORY;
    if (rc == PAR_OK)
        rc = par_buf_appends(&m, "}}");
    if (rc == PAR_OK && par_buf_terminate(&m) == PAR_OK)
        rc = put_message(o, r, id, idl, m.data);
    free(msg);
    par_buf_free(&m);
    return rc;
}

/* The span after `key` up to the end of its line, within [p, end). */
static const char *field(const char *p, const char *end, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    const char *at = p;
    while (at < end) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        const char *le = nl ? nl : end;
        if ((size_t)(le - at) >= kl && memcmp(at, key, kl) == 0) {
            *len = (size_t)(le - at - kl);
            return at + kl;
        }
        at = le + 1;
    }
    *len = 0;
    return "";
}

static int frame_events(par_http_framed_t *data, par_run_t *r, const char *sse, size_t len,
                        par_buf_t *out)
{
    mcp_frame_t *fr = (mcp_frame_t *)data;
    const char *p = sse, *end = sse + len;
    int rc = PAR_OK;
    while (rc == PAR_OK && p < end) {
        const char *e = NULL;
        for (const char *k = p; k + 1 < end && e == NULL; k++)
            if (k[0] == '\n' && k[1] == '\n')
                e = k + 2;
        if (e == NULL)
            e = end;
        size_t il, tl, dl;
        const char *id = field(p, e, "id: ", &il), *ty = field(p, e, "event: ", &tl),
                   *d = field(p, e, "data: ", &dl);
        if (il)
            rc = frame_one(fr, r, id, il, ty, tl, d, dl, out);
        p = e;
    }
    return rc;
}

static int frame_answer(par_http_framed_t *data, par_run_t *r, par_buf_t *out, int *http)
{
    *http = 200;
    char *s = response_text((mcp_frame_t *)data, r);
    int rc = s ? par_buf_appends(out, s) : PAR_E_NO_MEMORY;
    free(s);
    return rc;
}

/* The frame lives in the request's pool: nothing to free. */
static void frame_free(par_http_framed_t *data)
{
    (void)data;
}

static const par_http_framer_t mcp_framer = {frame_events, frame_answer, frame_free};

static mcp_frame_t *frame_new(h2o_req_t *req, json_t *id, json_t *token, int related)
{
    mcp_frame_t *fr = h2o_mem_alloc_pool(&req->pool, sizeof(*fr));
    char *ids = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
    char *ts = token ? json_dumps(token, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    if (ids == NULL || (token && ts == NULL)) {
        free(ids);
        free(ts);
        return NULL;
    }
    fr->base.ops = &mcp_framer;
    fr->rpc_id = h2o_strdup(&req->pool, ids, SIZE_MAX).base;
    fr->token = ts ? h2o_strdup(&req->pool, ts, SIZE_MAX).base : NULL;
    fr->related_task = related;
    fr->retention_s = 0;
    free(ids);
    free(ts);
    return fr;
}

/* ---- lifecycle and tools ----------------------------------------------------------- */

static int on_initialize(mcp_req_t *q)
{
    const char *want = json_string_value(json_object_get(q->params, "protocolVersion"));
    if (want == NULL)
        return rpc_error(q, 200, MCP_INVALID_PARAMS, "params.protocolVersion must be a string",
                         NULL);
    if (strcmp(want, V_NEW) != 0 && strcmp(want, V_OLD) != 0) {
        json_t *d = json_pack("{s:[s,s], s:s}", "supported", V_NEW, V_OLD, "requested", want);
        int rc = rpc_error(q, 200, MCP_INVALID_PARAMS, "Unsupported protocol version", d);
        json_decref(d);
        return rc;
    }
    par_identity_t *who = q->x->loop->who;
    char id[33];
    par__http_new_id(q->x->loop, id);
    if (par__mcp_session_new(id, want, who ? who->subject : NULL, who ? who->tenant : NULL,
                             q->scope, par__now_ms()) != PAR_OK)
        return rpc_error(q, 500, MCP_INTERNAL_ERROR, "out of memory", NULL);
    memcpy(q->session, id, sizeof(q->session));
    json_t *caps = json_pack("{s:{s:b}}", "tools", "listChanged", 0);
    if (caps && strcmp(want, V_NEW) == 0)
        json_object_set_new(
            caps, "tasks",
            json_pack("{s:{}, s:{}, s:{s:{s:{}}}}", "list", "cancel", "requests", "tools", "call"));
    return rpc_result(
        q, caps ? json_pack("{s:s, s:o, s:{s:s, s:s, s:s}, s:s}", "protocolVersion", want,
                            "capabilities", caps, "serverInfo", "name", "par", "title",
                            "Pixell Agent Runtime", "version", par_version(), "instructions",
                            "Each tool is an agent of this runtime; a call is a run (PAR's "
                            "/runs), and with task augmentation, a task whose id is the run id.")
                : NULL);
}

/* tools/list pages: MCP_TOOLS_PAGE tools each; the cursor is opaque to
 * clients ("c" and the position of the page's first tool). */
#define MCP_TOOLS_PAGE 50

static int on_tools_list(mcp_req_t *q)
{
    json_t *cur = json_object_get(q->params, "cursor");
    const char *c = json_string_value(cur);
    size_t from = 0, n = c ? strlen(c) : 0;
    int ok = cur == NULL || json_is_null(cur) || (c && n >= 2 && n <= 10 && c[0] == 'c');
    for (size_t i = 1; ok && c && i < n; i++)
        ok = c[i] >= '0' && c[i] <= '9' ? (from = from * 10 + (size_t)(c[i] - '0'), 1) : 0;
    if (!ok)
        return rpc_error(q, 200, MCP_INVALID_PARAMS,
                         "Invalid cursor: pass the nextCursor of an earlier tools/list", NULL);
    int more = 0;
    json_t *r = par__mcp_tools_list(q->x, q->scope, from, MCP_TOOLS_PAGE, &more);
    char next[24];
    snprintf(next, sizeof(next), "c%zu", from + MCP_TOOLS_PAGE);
    if (r && more && json_object_set_new(r, "nextCursor", json_string(next)) != 0) {
        json_decref(r);
        r = NULL;
    }
    if (r && strcmp(q->version, V_NEW) != 0) {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(r, "tools"), i, t) json_object_del(t, "execution");
    }
    return rpc_result(q, r);
}

/* A run of the tool the params name; *out referenced. 0, or answered (1). */
static int start_tool_run(mcp_req_t *q, int task, json_t *token, par_run_t **out)
{
    const char *name = json_string_value(json_object_get(q->params, "name"));
    json_t *args = json_object_get(q->params, "arguments");
    char agent[PAR_ID_MAX + 1];
    if (name == NULL)
        return rpc_error(q, 200, MCP_INVALID_PARAMS, "params.name must be a string", NULL);
    if (args && !json_is_object(args))
        return rpc_error(q, 200, MCP_INVALID_PARAMS, "params.arguments must be an object", NULL);
    if (par__mcp_agent_id(name, agent) != 0 || !par__mcp_tool_visible(q->x, q->scope, agent)) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Unknown tool: %.200s", name);
        return rpc_error(q, 200, MCP_INVALID_PARAMS, msg, NULL);
    }
    par_call_t *c = par__call_new();
    json_t *meta = json_pack("{s:{s:s, s:O, s:O?, s:b}}", "mcp", "session", q->session,
                             "request_id", q->id, "progress_token", token, "task", task);
    char *md = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    char *in = json_dumps(args ? args : json_object(), JSON_COMPACT);
    json_decref(meta);
    par_identity_t *who = q->x->loop->who;
    int rc = c && md && in ? PAR_OK : PAR_E_NO_MEMORY;
    if (rc == PAR_OK) {
        snprintf(c->agent_id, sizeof(c->agent_id), "%s", agent);
        snprintf(c->request_id, sizeof(c->request_id), "%s", q->x->rid);
        c->input = in;
        c->input_len = strlen(in);
        if (who && ((c->subject = strdup(who->subject)) == NULL ||
                    (who->tenant && (c->tenant = strdup(who->tenant)) == NULL)))
            rc = PAR_E_NO_MEMORY;
    }
    unsigned retry = 0;
    par_run_opts_t o = {.metadata = md, .metadata_len = md ? strlen(md) : 0};
    if (rc == PAR_OK)
        rc = par_run_start(q->x->loop->http->rt, c, &o, out, &retry);
    if (rc == PAR_OK) {
        free(md);
        free(in);
        return 0;
    }
    /* refused before it ran: a tool error with PAR's error name */
    char *text = NULL;
    const char *m = c && c->output.len ? c->output.data : par_strerror(rc);
    if (asprintf(&text, "%s: %.*s", par_status_name(rc),
                 (int)(c && c->output.len ? c->output.len : strlen(m)), m) < 0)
        text = NULL;
    json_t *res = text ? json_pack("{s:[{s:s, s:s}], s:b, s:{s:s, s:s, s:s}}", "content", "type",
                                   "text", "text", text, "isError", 1, "structuredContent", "error",
                                   par_status_name(rc), "message", text, "request_id", q->x->rid)
                       : NULL;
    free(text);
    free(md);
    free(in);
    if (c)
        par__call_free(c);
    return rpc_result(q, res);
}

static int on_tools_call(mcp_req_t *q)
{
    json_t *task = json_object_get(q->params, "task");
    json_t *meta = json_object_get(q->params, "_meta");
    json_t *token = json_object_get(meta, "progressToken");
    if (task && (!json_is_object(task) || strcmp(q->version, V_NEW) != 0))
        return rpc_error(q, 200, MCP_INVALID_PARAMS,
                         "params.task must be an object (revision " V_NEW ")", NULL);
    if (token && !json_is_string(token) && !json_is_integer(token))
        return rpc_error(q, 200, MCP_INVALID_PARAMS,
                         "params._meta.progressToken must be a string or an integer", NULL);
    par_run_t *r = NULL;
    int rc = start_tool_run(q, task != NULL, token, &r);
    if (r == NULL)
        return rc;
    if (task) {
        json_t *t = par__mcp_task(r, q->x->loop->http->rt->cfg.run_retention_s);
        par_run_unref(r);
        return rpc_result(q, t ? json_pack("{s:o}", "task", t) : NULL);
    }
    mcp_frame_t *fr = frame_new(q->x->req, q->id, token, 0);
    if (fr == NULL) {
        par_run_unref(r);
        return rpc_error(q, 500, MCP_INTERNAL_ERROR, "out of memory", NULL);
    }
    session_header(q);
    if (par__http_wants_sse(q->x->req))
        return par__http_sse_start_framed(q->x, r, 0, &fr->base);
    return par__http_wait_start_framed(q->x, r, &fr->base);
}

/* ---- tasks: runs ---------------------------------------------------------------------- */

/* The caller's run the params' taskId names (referenced), or NULL answered. */
static par_run_t *task_run(mcp_req_t *q, int *answered)
{
    const char *id = json_string_value(json_object_get(q->params, "taskId"));
    par_identity_t *who = q->x->loop->who;
    par_run_t *r = id ? par_run_get(q->x->loop->http->rt, id, who ? who->subject : NULL,
                                    who ? who->tenant : NULL, par__http_is_admin(q->x))
                      : NULL;
    if (r == NULL)
        *answered = rpc_error(q, 200, MCP_INVALID_PARAMS,
                              id ? "Failed to retrieve task: Task not found"
                                 : "params.taskId must be a string",
                              NULL);
    return r;
}

static int on_tasks(mcp_req_t *q)
{
    uint32_t ret = q->x->loop->http->rt->cfg.run_retention_s;
    int answered = 0;
    if (strcmp(q->method, "tasks/list") == 0) {
        par_identity_t *who = q->x->loop->who;
        json_t *cur = json_object_get(q->params, "cursor");
        if (cur && !json_is_string(cur))
            return rpc_error(q, 200, MCP_INVALID_PARAMS, "params.cursor must be a string", NULL);
        par_runs_query_t rq = {who ? who->subject : NULL,
                               who ? who->tenant : NULL,
                               par__http_is_admin(q->x),
                               NULL,
                               -1,
                               50,
                               json_string_value(cur)};
        json_t *page = NULL;
        par_buf_t err;
        par_buf_init(&err, 0);
        int rc = par_runs_list(q->x->loop->http->rt, &rq, &page, &err);
        par_buf_free(&err);
        if (rc != PAR_OK)
            return rpc_error(q, 200, MCP_INVALID_PARAMS, "Invalid cursor", NULL);
        json_t *tasks = json_array(), *run;
        size_t i;
        json_array_foreach(json_object_get(page, "runs"), i, run)
        {
            if (tasks && json_array_append_new(tasks, par__mcp_task_of(run, ret)) != 0) {
                json_decref(tasks);
                tasks = NULL;
            }
        }
        json_t *res = tasks ? json_pack("{s:o}", "tasks", tasks) : NULL;
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        if (res && next)
            json_object_set_new(res, "nextCursor", json_string(next));
        json_decref(page);
        return rpc_result(q, res);
    }
    par_run_t *r = task_run(q, &answered);
    if (r == NULL)
        return answered;
    if (strcmp(q->method, "tasks/get") == 0) {
        json_t *t = par__mcp_task(r, ret);
        par_run_unref(r);
        return rpc_result(q, t);
    }
    if (strcmp(q->method, "tasks/cancel") == 0) {
        int rc = par_run_cancel(r, "cancelled by its MCP client (tasks/cancel)");
        json_t *t = rc == PAR_OK ? par__mcp_task(r, ret) : NULL;
        par_run_unref(r);
        if (rc == PAR_E_RUN_ENDED)
            return rpc_error(q, 200, MCP_INVALID_PARAMS,
                             "Cannot cancel task: already in a terminal status", NULL);
        return rpc_result(q, t);
    }
    /* tasks/result: waits for the end, then the tool call's own result; a
     * client that accepts a stream gets the task's status notification first */
    mcp_frame_t *fr = frame_new(q->x->req, q->id, NULL, 1);
    if (fr == NULL) {
        par_run_unref(r);
        return rpc_error(q, 500, MCP_INTERNAL_ERROR, "out of memory", NULL);
    }
    fr->retention_s = ret;
    session_header(q);
    if (par__http_wants_sse(q->x->req))
        return par__http_sse_start_framed(q->x, r, 0, &fr->base);
    return par__http_wait_start_framed(q->x, r, &fr->base);
}

/* notifications/cancelled: the caller's newest runs are searched for the
 * tool call of this session with that request id (not a task: those end by
 * tasks/cancel), which is cancelled. Nothing is answered either way. */
static void cancel_request(mcp_req_t *q)
{
    json_t *rid = json_object_get(q->params, "requestId");
    par_identity_t *who = q->x->loop->who;
    par_runs_query_t rq = {
        who ? who->subject : NULL, who ? who->tenant : NULL, 0, NULL, PAR_RUN_RUNNING, 100, NULL};
    json_t *page = NULL, *run;
    par_buf_t err;
    par_buf_init(&err, 0);
    if (rid == NULL || par_runs_list(q->x->loop->http->rt, &rq, &page, &err) != PAR_OK) {
        par_buf_free(&err);
        return;
    }
    par_buf_free(&err);
    size_t i;
    json_array_foreach(json_object_get(page, "runs"), i, run)
    {
        json_t *m = json_object_get(json_object_get(run, "metadata"), "mcp");
        const char *sess = json_string_value(json_object_get(m, "session"));
        if (!sess || strcmp(sess, q->session) != 0 || json_is_true(json_object_get(m, "task")) ||
            !json_equal(json_object_get(m, "request_id"), rid))
            continue;
        par_run_t *r =
            par_run_get(q->x->loop->http->rt, json_string_value(json_object_get(run, "run_id")),
                        who ? who->subject : NULL, who ? who->tenant : NULL, 0);
        if (r) {
            par_run_cancel(r, "cancelled by its MCP client (notifications/cancelled)");
            par_run_unref(r);
        }
        break;
    }
    json_decref(page);
}

/* ---- the transport ------------------------------------------------------------------ */

/* The session the request names, checked (q->session, q->version); 0, or
 * answered (1): 400 without one, 404 for one unknown, ended or not the
 * caller's (the client then starts a new session). */
static int need_session(mcp_req_t *q)
{
    h2o_iovec_t sid = par__http_header(q->x->req, H2O_STRLIT("mcp-session-id"));
    par_identity_t *who = q->x->loop->who;
    if (sid.base == NULL)
        return rpc_error(q, 400, MCP_INVALID_REQUEST,
                         "Bad Request: Mcp-Session-Id header is required (initialize first)", NULL);
    if (par__mcp_session_use(sid.base, sid.len, who ? who->subject : NULL, who ? who->tenant : NULL,
                             q->scope, par__now_ms(), q->version) != PAR_OK)
        return rpc_error(q, 404, MCP_SESSION_NOT_FOUND, "Session not found", NULL);
    memcpy(q->session, sid.base, 32);
    q->session[32] = '\0';
    h2o_iovec_t pv = par__http_header(q->x->req, H2O_STRLIT("mcp-protocol-version"));
    if (pv.base && !h2o_memis(pv.base, pv.len, H2O_STRLIT(V_NEW)) &&
        !h2o_memis(pv.base, pv.len, H2O_STRLIT(V_OLD)))
        return rpc_error(q, 400, MCP_INVALID_REQUEST,
                         "Bad Request: unsupported MCP-Protocol-Version (" V_NEW " or " V_OLD ")",
                         NULL);
    return 0;
}

static int dispatch(mcp_req_t *q)
{
    const char *m = q->method;
    if (strcmp(m, "initialize") == 0)
        return on_initialize(q);
    if (strcmp(m, "ping") == 0)
        return rpc_result(q, json_object());
    if (strcmp(m, "tools/list") == 0)
        return on_tools_list(q);
    if (strcmp(m, "tools/call") == 0)
        return on_tools_call(q);
    if (strncmp(m, "tasks/", 6) == 0 && strcmp(q->version, V_NEW) == 0 &&
        (strcmp(m + 6, "get") == 0 || strcmp(m + 6, "result") == 0 || strcmp(m + 6, "list") == 0 ||
         strcmp(m + 6, "cancel") == 0))
        return on_tasks(q);
    char msg[200];
    snprintf(msg, sizeof(msg), "Method not found: %.100s", m);
    return rpc_error(q, 200, MCP_METHOD_NOT_FOUND, msg, NULL);
}

/* Checks one parsed message and answers it. */
static int on_message(mcp_req_t *q)
{
    json_t *msg = q->msg;
    if (json_is_array(msg))
        return rpc_error(q, 400, MCP_INVALID_REQUEST,
                         "Invalid Request: batches are not supported (one message per POST)", NULL);
    json_t *method = json_object_get(msg, "method");
    json_t *id = json_object_get(msg, "id");
    q->params = json_object_get(msg, "params");
    if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "jsonrpc")) ||
        strcmp(json_string_value(json_object_get(msg, "jsonrpc")), "2.0") != 0 ||
        (id && !json_is_string(id) && !json_is_integer(id)) || (method && !json_is_string(method)))
        return rpc_error(q, 400, MCP_INVALID_REQUEST,
                         "Invalid Request: a JSON-RPC 2.0 object with \"jsonrpc\":\"2.0\", a "
                         "string \"method\" and a string or integer \"id\"",
                         NULL);
    q->id = id;
    if (method == NULL) {
        /* a response to a request of ours: there are none, so just accepted */
        if (id && (json_object_get(msg, "result") || json_object_get(msg, "error"))) {
            if (need_session(q))
                return 1;
            par__http_send_body(q->x->req, 202, "application/json", q->x->rid, NULL, 0);
            return 1;
        }
        return rpc_error(q, 400, MCP_INVALID_REQUEST, "Invalid Request: no \"method\"", NULL);
    }
    q->method = json_string_value(method);
    if (q->params && !json_is_object(q->params))
        return rpc_error(q, 200, MCP_INVALID_PARAMS, "params must be an object", NULL);
    if (strcmp(q->method, "initialize") != 0 && need_session(q))
        return 1;
    if (id == NULL) {
        /* notifications: initialized, cancelled, progress … nothing to answer */
        if (strcmp(q->method, "initialize") == 0)
            return rpc_error(q, 400, MCP_INVALID_REQUEST, "initialize must be a request (id)",
                             NULL);
        if (strcmp(q->method, "notifications/cancelled") == 0)
            cancel_request(q);
        session_header(q);
        par__http_send_body(q->x->req, 202, "application/json", q->x->rid, NULL, 0);
        return 1;
    }
    return dispatch(q);
}

static int on_post(mcp_req_t *q)
{
    h2o_req_t *req = q->x->req;
    size_t max = q->x->loop->http->rt->cfg.max_input_bytes + ENVELOPE_MAX;
    if (req->entity.len > max)
        return rpc_error(q, 413, MCP_INVALID_REQUEST,
                         "Invalid Request: the message is larger than the runtime accepts "
                         "(limits.max_input_kb plus 64 KiB)",
                         NULL);
    json_error_t je;
    q->msg =
        json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, JSON_DECODE_ANY, &je);
    if (q->msg == NULL)
        return rpc_error(q, 400, MCP_PARSE_ERROR, "Parse error: the body is not valid JSON", NULL);
    int rc = on_message(q);
    json_decref(q->msg);
    return rc;
}

/* GET: resumes a tool call's stream after Last-Event-ID "<run id>:<seq>". */
static int on_get(mcp_req_t *q)
{
    h2o_iovec_t lei = par__http_header(q->x->req, H2O_STRLIT("last-event-id"));
    if (lei.base == NULL) {
        h2o_add_header(&q->x->req->pool, &q->x->req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       H2O_STRLIT("POST, DELETE"));
        return rpc_error(q, 405, MCP_INVALID_REQUEST,
                         "Method Not Allowed: this server offers no server-initiated stream; "
                         "GET only resumes a tool call's stream (Last-Event-ID)",
                         NULL);
    }
    if (need_session(q))
        return 1;
    const char *colon = memchr(lei.base, ':', lei.len);
    char rid[PAR_ID_MAX + 1];
    uint64_t after = 0;
    size_t rl = colon ? (size_t)(colon - lei.base) : 0;
    int ok = colon && rl > 0 && rl <= PAR_ID_MAX && lei.base + lei.len - colon - 1 > 0 &&
             lei.base + lei.len - colon - 1 <= 20;
    for (const char *p = colon ? colon + 1 : NULL; ok && p < lei.base + lei.len; p++)
        ok = *p >= '0' && *p <= '9' ? (after = after * 10 + (uint64_t)(*p - '0'), 1) : 0;
    par_identity_t *who = q->x->loop->who;
    par_run_t *r = NULL;
    if (ok) {
        memcpy(rid, lei.base, rl);
        rid[rl] = '\0';
        r = par_run_get(q->x->loop->http->rt, rid, who ? who->subject : NULL,
                        who ? who->tenant : NULL, par__http_is_admin(q->x));
    }
    json_t *j = r ? par_run_json(r) : NULL;
    json_t *mcp = json_object_get(json_object_get(j, "metadata"), "mcp");
    mcp_frame_t *fr = mcp ? frame_new(q->x->req, json_object_get(mcp, "request_id"),
                                      json_object_get(mcp, "progress_token"), 0)
                          : NULL;
    json_decref(j);
    if (fr == NULL) {
        if (r)
            par_run_unref(r);
        return rpc_error(q, 400, MCP_INVALID_REQUEST,
                         "Bad Request: Last-Event-ID names no stream of this session's tool "
                         "calls (\"<run id>:<sequence>\")",
                         NULL);
    }
    par_runs_count_resume(q->x->loop->http->rt->runs);
    session_header(q);
    return par__http_sse_start_framed(q->x, r, after, &fr->base);
}

static int on_delete(mcp_req_t *q)
{
    h2o_iovec_t sid = par__http_header(q->x->req, H2O_STRLIT("mcp-session-id"));
    par_identity_t *who = q->x->loop->who;
    if (sid.base == NULL)
        return rpc_error(q, 400, MCP_INVALID_REQUEST,
                         "Bad Request: Mcp-Session-Id header is required", NULL);
    if (par__mcp_session_end(sid.base, sid.len, who ? who->subject : NULL, who ? who->tenant : NULL,
                             q->scope) != PAR_OK)
        return rpc_error(q, 404, MCP_SESSION_NOT_FOUND, "Session not found", NULL);
    par__http_send_body(q->x->req, 204, "application/json", q->x->rid, NULL, 0);
    return 1;
}

/* /agents/{id}/mcp: the package must exist (as one of its agents). */
static int package_known(par_http_exchange_t *x, const char *name)
{
    par_table_t *t = par__table_get(x->loop->http->rt);
    int found = 0;
    for (size_t i = 0; i < t->count && !found; i++)
        found = strcmp(t->routes[i].pv->name, name) == 0;
    par__table_unref(t);
    return found;
}

int par__http_on_mcp(par_http_exchange_t *x)
{
    mcp_req_t q = {.x = x, .scope = ""};
    if (x->m.route->var != PAR_HTTP_VAR_NONE) {
        q.scope = h2o_strdup(&x->req->pool, x->m.var, x->m.var_len).base;
        if (!package_known(x, q.scope)) {
            char msg[PAR_ID_MAX + 40];
            int n = snprintf(msg, sizeof(msg), "no package '%.200s'", q.scope);
            par__http_send_error(x->req, PAR_E_AGENT_NOT_FOUND, msg, (size_t)n, x->rid);
            return 1;
        }
    }
    switch (x->req->method.len) {
    case 3:
        return on_get(&q);
    case 6:
        return on_delete(&q);
    default:
        return on_post(&q);
    }
}
