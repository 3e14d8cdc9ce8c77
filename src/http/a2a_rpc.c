/*
 * http/a2a_rpc.c — A2A's operations over runs, for both bindings: the
 * JSON-RPC 2.0 endpoint POST /a2a/{id} (v1.0 method names and v0.3's) and
 * the HTTP+JSON routes (docs/protocols.md "A2A" has the table).
 *
 * Send starts a run of the agent with the message's input (blocking: the
 * answer waits for the run's end through http/sse.c's wait; streaming: the
 * run's events through its stream, framed by a2a_map.c); get, list, cancel
 * and subscribe find the caller's run by task id. Loop thread only; keeps
 * nothing between requests; must never answer a protocol mistake with
 * anything but the protocol's own error codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/a2a.h"
#include "runtime/runs.h"

/* Sends `doc` (consumed) with `http` and logs it; returns 0. */
static int reply(par_http_exchange_t *x, int http, json_t *doc, const char *err)
{
    par__http_send_json(x->req, doc ? http : 500, doc, x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, doc ? http : 500, x->rid, NULL,
                         x->t0, err);
    return 0;
}

static const char *reason_of(int code)
{
    switch (code) {
    case A2A_TASK_NOT_FOUND:
        return "TASK_NOT_FOUND";
    case A2A_TASK_NOT_CANCELABLE:
        return "TASK_NOT_CANCELABLE";
    case A2A_PUSH_NOT_SUPPORTED:
        return "PUSH_NOTIFICATION_NOT_SUPPORTED";
    case A2A_UNSUPPORTED:
        return "UNSUPPORTED_OPERATION";
    case A2A_CONTENT_TYPE:
        return "CONTENT_TYPE_NOT_SUPPORTED";
    case A2A_INVALID_PARAMS:
        return "INVALID_PARAMS";
    case A2A_PARSE_ERROR:
        return "PARSE_ERROR";
    case A2A_INVALID_REQUEST:
        return "INVALID_REQUEST";
    case A2A_METHOD_NOT_FOUND:
        return "METHOD_NOT_FOUND";
    default:
        return "INTERNAL";
    }
}

/* An A2A error in the dialect: JSON-RPC (HTTP 200, "data" consumed) or
 * HTTP+JSON (a google.rpc.Status with an ErrorInfo). */
static int fail_data(par_http_exchange_t *x, int dialect, json_t *id, int code, const char *msg,
                     json_t *data)
{
    if (dialect != A2A_REST)
        return reply(x, 200, par__a2a_error(id, code, msg, data), reason_of(code));
    json_decref(data);
    int http = code == A2A_TASK_NOT_FOUND        ? 404
               : code == A2A_TASK_NOT_CANCELABLE ? 409
               : code == A2A_INTERNAL            ? 500
               : code == A2A_CONTENT_TYPE        ? 415
                                                 : 400;
    /* the operation is refused in this state, not malformed: 400 FAILED_PRECONDITION */
    int precondition = code == A2A_PUSH_NOT_SUPPORTED || code == A2A_UNSUPPORTED;
    const char *st = http == 404                   ? "NOT_FOUND"
                     : http == 409 || precondition ? "FAILED_PRECONDITION"
                     : http == 500                 ? "INTERNAL"
                                                   : "INVALID_ARGUMENT";
    json_t *doc =
        json_pack("{s:{s:i,s:s,s:s,s:[{s:s,s:s,s:s}]}}", "error", "code", http, "status", st,
                  "message", msg, "details", "@type", "type.googleapis.com/google.rpc.ErrorInfo",
                  "reason", reason_of(code), "domain", "a2a-protocol.org");
    return reply(x, http, doc, reason_of(code));
}

static int fail(par_http_exchange_t *x, int dialect, json_t *id, int code, const char *msg)
{
    return fail_data(x, dialect, id, code, msg, NULL);
}

/* The agent and task a request names: the route's variable, or for the
 * task routes its parts around the last "/tasks" (task ids hold no '/'). */
typedef struct target {
    char agent[PAR_ID_MAX + 1];
    char task[PAR_ID_MAX + 1]; /* "" when none */
} target_t;

/* ---- send ----------------------------------------------------------------------- */

/* The caller's run `task` of agent `agent` (referenced), or NULL. */
static par_run_t *find_task(par_http_exchange_t *x, const char *agent, const char *task)
{
    par_identity_t *who = x->loop->who;
    par_run_t *r = par_run_get(x->loop->http->rt, task, who ? who->subject : NULL,
                               who ? who->tenant : NULL, par__http_is_admin(x));
    if (r == NULL)
        return NULL;
    json_t *j = par_run_json(r);
    const char *a = j ? json_string_value(json_object_get(j, "agent_id")) : NULL;
    int same = a && strcmp(a, agent) == 0;
    json_decref(j);
    if (!same) {
        par_run_unref(r);
        return NULL;
    }
    return r;
}

static int not_started(par_http_exchange_t *x, int dialect, json_t *id, par_call_t *c, int rc)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "%.*s", (int)(c->output.len ? c->output.len : 0),
             c->output.len ? c->output.data : "");
    if (msg[0] == '\0')
        snprintf(msg, sizeof(msg), "%s", par_strerror(rc));
    par__call_free(c);
    int code = rc == PAR_E_TOO_LARGE || rc == PAR_E_BAD_REQUEST ? A2A_INVALID_PARAMS : A2A_INTERNAL;
    return fail_data(
        x, dialect, id, code, msg,
        json_pack("{s:s,s:i}", "error", par_status_name(rc), "status", par_status_http(rc)));
}

/* A message naming a task (taskId): PAR's agents take no input once a run
 * started, so it is answered here: an unknown task or another caller's (or
 * agent's) is TaskNotFound, an ended one UnsupportedOperation (A2A: a task
 * in a terminal state takes no more messages), a running one too. 1 when
 * answered, 0 when the message names no task. */
static int continues_task(par_http_exchange_t *x, int dialect, json_t *id, json_t *msg)
{
    json_t *t = json_object_get(msg, "taskId");
    if (t == NULL || json_is_null(t) || (json_is_string(t) && json_string_length(t) == 0))
        return 0;
    const char *task = json_string_value(t);
    char agent[PAR_ID_MAX + 1];
    snprintf(agent, sizeof(agent), "%.*s", (int)x->m.var_len, x->m.var);
    par_run_t *r = task && json_string_length(t) <= PAR_ID_MAX ? find_task(x, agent, task) : NULL;
    if (r == NULL) {
        fail(x, dialect, id, A2A_TASK_NOT_FOUND, "message.taskId: no such task");
        return 1;
    }
    int st = par_run_status(r);
    par_run_unref(r);
    fail(x, dialect, id, A2A_UNSUPPORTED,
         st == PAR_RUN_QUEUED || st == PAR_RUN_RUNNING
             ? "the task is still working and takes no more input: send a message without "
               "taskId to start a new task"
             : "the task is in a terminal state and takes no more messages: send a message "
               "without taskId to start a new task");
    return 1;
}

/* SendMessage / SendStreamingMessage / message/send / message/stream and
 * the HTTP+JSON message:send / message:stream. */
static int send_message(par_http_exchange_t *x, int dialect, json_t *id, json_t *params, int stream)
{
    json_t *msg = json_object_get(params, "message");
    if (!json_is_object(params) || !json_is_object(msg))
        return fail(x, dialect, id, A2A_INVALID_PARAMS, "params.message must be a Message object");
    if (continues_task(x, dialect, id, msg))
        return 0;
    const char *why = NULL;
    char *input = NULL;
    char key[128];
    par__a2a_text_key(x, key, sizeof(key));
    int code = par__a2a_input(msg, key, &input, &why);
    if (code != 0)
        return fail(x, dialect, id, code, why);
    char ctx[80];
    const char *given = json_string_value(json_object_get(msg, "contextId"));
    if (given && given[0] && strlen(given) < sizeof(ctx) &&
        par__http_safe_id(given, strlen(given), 79))
        snprintf(ctx, sizeof(ctx), "%s", given);
    else {
        char hex[33];
        par__http_new_id(x->loop, hex);
        snprintf(ctx, sizeof(ctx), "ctx-%s", hex);
    }
    /* the run keeps the context and the message (the task's history) */
    json_t *md =
        json_pack("{s:{s:s,s:o?}}", "a2a", "contextId", ctx, "message", par__a2a_request(msg));
    char *meta = md ? json_dumps(md, JSON_COMPACT) : NULL;
    json_decref(md);
    par_call_t *c = meta ? par__call_new() : NULL;
    if (c == NULL) {
        free(input);
        free(meta);
        return fail(x, dialect, id, A2A_INTERNAL, "out of memory");
    }
    size_t mlen = strlen(meta);
    char *mp = h2o_mem_alloc_pool(&x->req->pool, mlen + 1);
    memcpy(mp, meta, mlen + 1);
    free(meta);
    size_t ilen = strlen(input);
    char *in = h2o_mem_alloc_pool(&x->req->pool, ilen + 1);
    memcpy(in, input, ilen + 1);
    free(input);
    par_json_field_t none[3] = {{"input", NULL, 0}, {"context", NULL, 0}, {"trace_id", NULL, 0}};
    if (par__http_fill_call(x, in, ilen, none, c) != 0)
        return 0;
    json_t *cfg = json_object_get(params, "configuration");
    /* a client that drops a stream comes back with SubscribeToTask: the run goes on */
    par_run_opts_t o = {.metadata = mp, .metadata_len = mlen};
    par_run_t *r = NULL;
    unsigned retry = 0;
    int rc = par_run_start(x->loop->http->rt, c, &o, &r, &retry);
    if (rc != PAR_OK)
        return not_started(x, dialect, id, c, rc);
    a2a_frame_t *f = par__a2a_frame_new(dialect, id, par_run_id(r), ctx);
    if (f == NULL) {
        par_run_unref(r);
        return fail(x, dialect, id, A2A_INTERNAL, "out of memory");
    }
    if (stream)
        return par__http_sse_start_framed(x, r, 0, &f->base);
    /* v1.0 "returnImmediately", v0.3 "blocking": false */
    if (json_is_true(json_object_get(cfg, "returnImmediately")) ||
        json_is_false(json_object_get(cfg, "blocking"))) {
        json_t *run = par_run_json(r);
        json_t *task = run ? par__a2a_task(dialect, run) : NULL;
        json_decref(run);
        par_run_unref(r);
        par__a2a_framer.free(&f->base);
        json_t *res = dialect == A2A_V03 || task == NULL ? task : json_pack("{s:o}", "task", task);
        return reply(x, 200, dialect == A2A_REST ? res : par__a2a_result(id, res), NULL);
    }
    return par__http_wait_start_framed(x, r, &f->base);
}

/* ---- tasks ---------------------------------------------------------------------- */

static const char *task_id_of(json_t *params)
{
    const char *t = json_string_value(json_object_get(params, "id"));
    return t && t[0] && strlen(t) <= PAR_ID_MAX ? t : NULL;
}

enum { OP_GET, OP_CANCEL, OP_SUBSCRIBE };

/* GetTask's answer: the task with its history, the last `hist` messages
 * (all when hist < 0). */
static json_t *task_with_history(int dialect, json_t *run, long long hist)
{
    json_t *task = par__a2a_task(dialect, run);
    json_t *h = task && hist != 0 ? par__a2a_history(dialect, run, hist) : NULL;
    if (task && hist != 0 && (h == NULL || json_object_set_new(task, "history", h) != 0)) {
        json_decref(task);
        return NULL;
    }
    return task;
}

static int task_op(par_http_exchange_t *x, int dialect, json_t *id, const target_t *tg, int op,
                   long long hist)
{
    par_run_t *r = find_task(x, tg->agent, tg->task);
    if (r == NULL)
        return fail(x, dialect, id, A2A_TASK_NOT_FOUND, "no such task");
    int st = par_run_status(r);
    if (op == OP_SUBSCRIBE && dialect != A2A_V03 && st != PAR_RUN_QUEUED && st != PAR_RUN_RUNNING) {
        /* A2A v1.0: SubscribeToTask on a task in a terminal state is
         * UnsupportedOperation (GetTask reads it); v0.3's tasks/resubscribe
         * names no such error, so it still replays the ended task. */
        par_run_unref(r);
        return fail(x, dialect, id, A2A_UNSUPPORTED,
                    "the task is in a terminal state: there is nothing to subscribe to; read it "
                    "with GetTask");
    }
    if (op == OP_SUBSCRIBE) {
        json_t *j = par_run_json(r);
        a2a_frame_t *f =
            j ? par__a2a_frame_new(dialect, id, tg->task, par__a2a_context_of(j)) : NULL;
        json_decref(j);
        if (f == NULL) {
            par_run_unref(r);
            return fail(x, dialect, id, A2A_INTERNAL, "out of memory");
        }
        par_runs_count_resume(x->loop->http->rt->runs);
        return par__http_sse_start_framed(x, r, 0, &f->base);
    }
    if (op == OP_CANCEL &&
        par_run_cancel(r, "cancelled by its A2A client (CancelTask)") == PAR_E_RUN_ENDED) {
        par_run_unref(r);
        return fail(x, dialect, id, A2A_TASK_NOT_CANCELABLE,
                    "the task has already ended; there is nothing to cancel");
    }
    json_t *run = par_run_json(r);
    par_run_unref(r);
    json_t *task = run == NULL    ? NULL
                   : op == OP_GET ? task_with_history(dialect, run, hist)
                                  : par__a2a_task(dialect, run);
    json_decref(run);
    return reply(x, 200, dialect == A2A_REST ? task : par__a2a_result(id, task), NULL);
}

static int list_tasks(par_http_exchange_t *x, int dialect, json_t *id, const target_t *tg,
                      json_t *params)
{
    par_identity_t *who = x->loop->who;
    json_t *ps = json_object_get(params, "pageSize");
    json_int_t size = json_is_integer(ps) ? json_integer_value(ps) : 50;
    if (size < 1 || size > 100)
        return fail(x, dialect, id, A2A_INVALID_PARAMS, "pageSize must be 1 to 100");
    const char *tok = json_string_value(json_object_get(params, "pageToken"));
    par_runs_query_t q = {who ? who->subject : NULL,
                          who ? who->tenant : NULL,
                          par__http_is_admin(x),
                          tg->agent,
                          -1,
                          (unsigned)size,
                          tok && tok[0] ? tok : NULL};
    json_t *page = NULL;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_runs_list(x->loop->http->rt, &q, &page, &err);
    par_buf_free(&err);
    if (rc != PAR_OK)
        return fail(x, dialect, id, rc == PAR_E_BAD_REQUEST ? A2A_INVALID_PARAMS : A2A_INTERNAL,
                    rc == PAR_E_BAD_REQUEST ? "pageToken is not one this server gave"
                                            : "out of memory");
    json_t *tasks = json_array(), *run;
    size_t i;
    json_array_foreach(json_object_get(page, "runs"), i, run)
    {
        if (tasks && json_array_append_new(tasks, par__a2a_task(dialect, run)) != 0) {
            json_decref(tasks);
            tasks = NULL;
        }
    }
    const char *next = json_string_value(json_object_get(page, "next_cursor"));
    json_t *res =
        tasks ? json_pack("{s:o,s:s,s:i,s:i}", "tasks", tasks, "nextPageToken", next ? next : "",
                          "pageSize", (int)size, "totalSize", (int)json_array_size(tasks))
              : NULL;
    json_decref(page);
    return reply(x, 200, dialect == A2A_REST ? res : par__a2a_result(id, res), NULL);
}

/* ---- JSON-RPC --------------------------------------------------------------------- */

typedef struct method {
    const char *name;
    int dialect;
    int op; /* below */
} method_t;

enum { M_SEND, M_STREAM, M_GET, M_LIST, M_CANCEL, M_SUBSCRIBE, M_CARD, M_PUSH };

static const method_t methods[] = {
    {"SendMessage", A2A_V1, M_SEND},
    {"SendStreamingMessage", A2A_V1, M_STREAM},
    {"GetTask", A2A_V1, M_GET},
    {"ListTasks", A2A_V1, M_LIST},
    {"CancelTask", A2A_V1, M_CANCEL},
    {"SubscribeToTask", A2A_V1, M_SUBSCRIBE},
    {"GetExtendedAgentCard", A2A_V1, M_CARD},
    {"CreateTaskPushNotificationConfig", A2A_V1, M_PUSH},
    {"GetTaskPushNotificationConfig", A2A_V1, M_PUSH},
    {"ListTaskPushNotificationConfigs", A2A_V1, M_PUSH},
    {"DeleteTaskPushNotificationConfig", A2A_V1, M_PUSH},
    {"message/send", A2A_V03, M_SEND},
    {"message/stream", A2A_V03, M_STREAM},
    {"tasks/get", A2A_V03, M_GET},
    {"tasks/cancel", A2A_V03, M_CANCEL},
    {"tasks/resubscribe", A2A_V03, M_SUBSCRIBE},
    {"agent/getAuthenticatedExtendedCard", A2A_V03, M_CARD},
    {"tasks/pushNotificationConfig/set", A2A_V03, M_PUSH},
    {"tasks/pushNotificationConfig/get", A2A_V03, M_PUSH},
    {"tasks/pushNotificationConfig/list", A2A_V03, M_PUSH},
    {"tasks/pushNotificationConfig/delete", A2A_V03, M_PUSH},
};

static int dispatch(par_http_exchange_t *x, const method_t *m, json_t *id, json_t *params,
                    target_t *tg)
{
    if (params && !json_is_object(params))
        return fail(x, m->dialect, id, A2A_INVALID_PARAMS, "params must be an object");
    switch (m->op) {
    case M_SEND:
    case M_STREAM:
        return send_message(x, m->dialect, id, params, m->op == M_STREAM);
    case M_LIST:
        return list_tasks(x, m->dialect, id, tg, params);
    case M_CARD: /* the caller passed auth and agents:invoke: the card is its card */
        return reply(x, 200, par__a2a_result(id, par__a2a_card(x)), NULL);
    case M_PUSH:
        return fail(x, m->dialect, id, A2A_PUSH_NOT_SUPPORTED,
                    "push notifications are not supported (capabilities.pushNotifications is "
                    "false): stream the task or poll it");
    default:
        break;
    }
    const char *t = task_id_of(params);
    if (t == NULL)
        return fail(x, m->dialect, id, A2A_INVALID_PARAMS, "params.id must be a task id");
    snprintf(tg->task, sizeof(tg->task), "%s", t);
    json_t *hl = json_object_get(params, "historyLength");
    if (m->op == M_GET && hl && !json_is_null(hl) &&
        !(json_is_integer(hl) && json_integer_value(hl) >= 0))
        return fail(x, m->dialect, id, A2A_INVALID_PARAMS,
                    "params.historyLength must be a non-negative integer");
    return task_op(x, m->dialect, id, tg,
                   m->op == M_GET      ? OP_GET
                   : m->op == M_CANCEL ? OP_CANCEL
                                       : OP_SUBSCRIBE,
                   json_is_integer(hl) ? (long long)json_integer_value(hl) : -1);
}

int par__http_on_a2a_rpc(par_http_exchange_t *x)
{
    h2o_req_t *req = x->req;
    target_t tg = {"", ""};
    memcpy(tg.agent, x->m.var, x->m.var_len);
    tg.agent[x->m.var_len] = '\0';
    if (!par__a2a_known(x, x->m.var, x->m.var_len))
        return 0;
    const char *body = req->entity.base ? req->entity.base : "";
    size_t blen = req->entity.base ? req->entity.len : 0;
    json_error_t je;
    json_t *doc = json_loadb(body, blen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL)
        return fail(x, A2A_V1, NULL, A2A_PARSE_ERROR, "the request body is not valid JSON");
    if (json_is_array(doc)) {
        json_decref(doc);
        return fail(x, A2A_V1, NULL, A2A_INVALID_REQUEST,
                    "batch requests are not supported: send one request per HTTP request");
    }
    json_t *id = json_object_get(doc, "id");
    const char *ver = json_string_value(json_object_get(doc, "jsonrpc"));
    const char *name = json_string_value(json_object_get(doc, "method"));
    int id_ok = json_is_string(id) || json_is_integer(id);
    if (!json_is_object(doc) || ver == NULL || strcmp(ver, "2.0") != 0 || name == NULL || !id_ok) {
        int rc = fail(x, A2A_V1, id_ok ? id : NULL, A2A_INVALID_REQUEST,
                      "not a JSON-RPC 2.0 request: it needs \"jsonrpc\": \"2.0\", a string "
                      "\"method\" and an \"id\" (string or integer)");
        json_decref(doc);
        return rc;
    }
    size_t i = 0, n = sizeof(methods) / sizeof(*methods);
    while (i < n && strcmp(methods[i].name, name) != 0)
        i++;
    int rc = i == n ? fail(x, A2A_V1, id, A2A_METHOD_NOT_FOUND, "no such method")
                    : dispatch(x, &methods[i], id, json_object_get(doc, "params"), &tg);
    json_decref(doc);
    return rc;
}

/* ---- HTTP+JSON ------------------------------------------------------------------- */

int par__http_on_a2a_rest_send(par_http_exchange_t *x)
{
    h2o_req_t *req = x->req;
    int stream = x->m.route->suffix[sizeof("/message:") - 1] == 's' &&
                 x->m.route->suffix[sizeof("/message:s") - 1] == 't';
    if (!par__a2a_known(x, x->m.var, x->m.var_len))
        return 0;
    json_error_t je;
    json_t *doc = json_loadb(req->entity.base ? req->entity.base : "",
                             req->entity.base ? req->entity.len : 0, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL)
        return fail(x, A2A_REST, NULL, A2A_PARSE_ERROR, "the request body is not a JSON object");
    int rc = send_message(x, A2A_REST, NULL, doc, stream);
    json_decref(doc);
    return rc;
}

/* Splits "{agent}/tasks[/{task}][:verb]" of the task routes (v[0..n)); 0,
 * or -1. */
static int split(const char *v, size_t n, target_t *tg)
{
    /* a verb (":cancel") is the route's suffix, not here */
    const char *t = NULL;
    for (size_t i = n; i-- > 0;)
        if (i + 6 <= n && memcmp(v + i, "/tasks", 6) == 0 && (i + 6 == n || v[i + 6] == '/')) {
            t = v + i;
            break;
        }
    if (t == NULL || (size_t)(t - v) == 0 || (size_t)(t - v) > PAR_ID_MAX)
        return -1;
    size_t alen = (size_t)(t - v), tlen = n - alen - 6;
    if (tlen > 0 && (tlen == 1 || tlen - 1 > PAR_ID_MAX || memchr(t + 7, '/', tlen - 1)))
        return -1;
    memcpy(tg->agent, v, alen);
    tg->agent[alen] = '\0';
    if (tlen > 0) {
        memcpy(tg->task, t + 7, tlen - 1);
        tg->task[tlen - 1] = '\0';
    }
    return 0;
}

/* The caller needs agents:invoke for the task's agent, as for the
 * JSON-RPC route (the table could not check it: the path holds more). */
static int allowed(par_http_exchange_t *x, const target_t *tg)
{
    char msg[400];
    int rc = par_auth_require_invoke(x->loop->http->opts.auth, x->loop->who, tg->agent,
                                     strlen(tg->agent), x->rid, msg, sizeof(msg));
    if (rc == PAR_OK)
        return 1;
    par__http_send_error(x->req, rc, msg, strlen(msg), x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, par_status_http(rc), x->rid,
                         NULL, x->t0, par_status_name(rc));
    return 0;
}

/* GET's ?historyLength=N: N, -1 when absent, -2 when malformed. */
static long long history_length(h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return -1;
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    static const char key[] = "historyLength=";
    long long v = -1;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > sizeof(key) - 1 && memcmp(p, key, sizeof(key) - 1) == 0) {
            const char *d = p + sizeof(key) - 1;
            if (v != -1 || e - d > 9)
                return -2; /* repeated, or beyond any history */
            for (v = 0; d < e; d++) {
                if (*d < '0' || *d > '9')
                    return -2;
                v = v * 10 + (*d - '0');
            }
        } else if (e > p && (size_t)(e - p) >= sizeof(key) - 2 &&
                   memcmp(p, key, sizeof(key) - 2) == 0)
            return -2; /* historyLength or historyLength= with no value */
        p = e + 1;
    }
    return v;
}

/* The push-notification-config routes (POST and GET
 * /a2a/{id}/tasks/{task_id}/pushNotificationConfigs, GET and DELETE
 * .../pushNotificationConfigs/{config_id}): the card says
 * capabilities.pushNotifications false, so each answers
 * PushNotificationNotSupported, as the JSON-RPC methods do. 1 when `v`
 * is such a path (answered), else 0. */
static int push_route(par_http_exchange_t *x, const char *v, size_t n)
{
    static const char seg[] = "/pushNotificationConfigs";
    const char *at = NULL;
    for (size_t i = 0; i + sizeof(seg) - 1 <= n; i++)
        if (memcmp(v + i, seg, sizeof(seg) - 1) == 0 &&
            (i + sizeof(seg) - 1 == n || v[i + sizeof(seg) - 1] == '/'))
            at = v + i;
    target_t tg = {"", ""};
    if (at == NULL)
        return 0;
    if (split(v, (size_t)(at - v), &tg) != 0 || tg.task[0] == '\0') {
        fail(x, A2A_REST, NULL, A2A_TASK_NOT_FOUND, "no such task");
        return 1;
    }
    if (allowed(x, &tg) && par__a2a_known(x, tg.agent, strlen(tg.agent)))
        fail(x, A2A_REST, NULL, A2A_PUSH_NOT_SUPPORTED,
             "push notifications are not supported (capabilities.pushNotifications is false): "
             "stream the task or poll it");
    return 1;
}

int par__http_on_a2a_rest_push(par_http_exchange_t *x)
{
    /* the POST route's suffix is the segment: the variable is followed by it in the path */
    if (push_route(x, x->m.var, x->m.var_len + x->m.route->suffix_len))
        return 0;
    /* DELETE is for push-notification configs only */
    par__http_send_error(x->req, PAR_E_METHOD_NOT_ALLOWED, x->m.route->wrong,
                         strlen(x->m.route->wrong), x->rid);
    return 1;
}

static int rest_task(par_http_exchange_t *x, int op)
{
    target_t tg = {"", ""};
    if (op == OP_GET && push_route(x, x->m.var, x->m.var_len))
        return 0;
    if (split(x->m.var, x->m.var_len, &tg) != 0 || (op != OP_GET && tg.task[0] == '\0'))
        return fail(x, A2A_REST, NULL, A2A_TASK_NOT_FOUND, "no such task");
    long long hist = op == OP_GET ? history_length(x->req) : -1;
    if (hist == -2)
        return fail(x, A2A_REST, NULL, A2A_INVALID_PARAMS,
                    "historyLength must be a non-negative integer");
    if (!allowed(x, &tg) || !par__a2a_known(x, tg.agent, strlen(tg.agent)))
        return 0;
    if (tg.task[0] == '\0') {
        json_t *p = json_object();
        int rc = list_tasks(x, A2A_REST, NULL, &tg, p);
        json_decref(p);
        return rc;
    }
    return task_op(x, A2A_REST, NULL, &tg, op, hist);
}

int par__http_on_a2a_rest_get(par_http_exchange_t *x)
{
    return rest_task(x, OP_GET);
}

int par__http_on_a2a_rest_cancel(par_http_exchange_t *x)
{
    return rest_task(x, OP_CANCEL);
}

int par__http_on_a2a_rest_subscribe(par_http_exchange_t *x)
{
    return rest_task(x, OP_SUBSCRIBE);
}
