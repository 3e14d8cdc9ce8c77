/*
 * http/a2a_map.c — A2A's objects from PAR's runs, in both protocol
 * versions (see a2a.h): a run is a task, its output the task's "output"
 * artifact, its status the task's state, its agent events working status
 * updates; a message's parts become the agent's input.
 *
 * v1.0 uses the ProtoJSON shapes of the A2A specification (states
 * "TASK_STATE_COMPLETED", roles "ROLE_AGENT", parts {"text"} / {"data"},
 * stream responses {"task"|"statusUpdate"|"artifactUpdate": …}); v0.3 its
 * JSON Schema shapes ("kind" discriminators, states "completed", parts
 * {"kind":"text"}). Called by a2a.c on a loop thread and by sse.c (the
 * framer) on the loop thread of a stream. Pure: builds JSON, never blocks,
 * keeps no state; every allocation is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/a2a.h"
#include "runtime/runs.h"

static const char *state_of(int dialect, const char *run_status)
{
    static const char *const v1[] = {"TASK_STATE_SUBMITTED", "TASK_STATE_WORKING",
                                     "TASK_STATE_COMPLETED", "TASK_STATE_FAILED",
                                     "TASK_STATE_CANCELED",  "TASK_STATE_FAILED"};
    static const char *const v03[] = {"submitted", "working",  "completed",
                                      "failed",    "canceled", "failed"};
    int s = run_status ? par_run_status_parse(run_status) : 0;
    if (s < 0)
        s = 0;
    return dialect == A2A_V03 ? v03[s] : v1[s];
}

static void now_iso(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* A part holding `v` (consumed): text for a string, else data. */
static json_t *part(int dialect, json_t *v)
{
    if (v == NULL)
        return NULL;
    if (json_is_string(v)) {
        json_t *p = json_pack("{s:o}", "text", v);
        if (p && dialect == A2A_V03 && json_object_set_new(p, "kind", json_string("text")) != 0) {
            json_decref(p);
            return NULL;
        }
        return p;
    }
    if (dialect != A2A_V03)
        return json_pack("{s:o}", "data", v);
    /* v0.3's DataPart holds an object */
    if (!json_is_object(v))
        v = json_pack("{s:o}", "value", v);
    return v ? json_pack("{s:s,s:o}", "kind", "data", "data", v) : NULL;
}

/* An agent message with one part holding `v` (consumed). */
static json_t *agent_message(const a2a_frame_t *f, const char *mid, json_t *v)
{
    json_t *p = part(f->dialect, v);
    if (p == NULL)
        return NULL;
    if (f->dialect == A2A_V03)
        return json_pack("{s:s,s:s,s:s,s:s,s:s,s:[o]}", "kind", "message", "messageId", mid, "role",
                         "agent", "taskId", f->task_id, "contextId", f->context_id, "parts", p);
    return json_pack("{s:s,s:s,s:s,s:s,s:[o]}", "messageId", mid, "role", "ROLE_AGENT", "taskId",
                     f->task_id, "contextId", f->context_id, "parts", p);
}

static json_t *status(const a2a_frame_t *f, const char *run_status, json_t *msg)
{
    char ts[32];
    now_iso(ts);
    json_t *s = json_pack("{s:s,s:s}", "state", state_of(f->dialect, run_status), "timestamp", ts);
    if (s && msg && json_object_set_new(s, "message", msg) != 0) {
        json_decref(s);
        return NULL;
    }
    if (s == NULL)
        json_decref(msg);
    return s;
}

static json_t *output_artifact(int dialect, json_t *output)
{
    json_t *p = part(dialect, json_incref(output ? output : json_null()));
    return p ? json_pack("{s:s,s:s,s:[o]}", "artifactId", "output", "name", "output", "parts", p)
             : NULL;
}

const char *par__a2a_context_of(json_t *run)
{
    json_t *a2a = json_object_get(json_object_get(run, "metadata"), "a2a");
    const char *c = json_string_value(json_object_get(a2a, "contextId"));
    return c ? c : json_string_value(json_object_get(run, "run_id"));
}

json_t *par__a2a_task(int dialect, json_t *run)
{
    const char *id = json_string_value(json_object_get(run, "run_id"));
    const char *st = json_string_value(json_object_get(run, "status"));
    a2a_frame_t f = {{NULL}, dialect, NULL, "", ""};
    snprintf(f.task_id, sizeof(f.task_id), "%s", id ? id : "");
    snprintf(f.context_id, sizeof(f.context_id), "%s", par__a2a_context_of(run));
    json_t *err = json_object_get(run, "error");
    json_t *msg = NULL;
    if (json_is_object(err)) {
        msg = agent_message(&f, "error", json_incref(json_object_get(err, "message")));
        if (msg == NULL)
            return NULL;
    }
    json_t *t =
        json_pack("{s:s,s:s,s:o,s:{s:O?,s:O?}}", "id", f.task_id, "contextId", f.context_id,
                  "status", status(&f, st, msg), "metadata", "agent_id",
                  json_object_get(run, "agent_id"), "par_status", json_object_get(run, "status"));
    if (t == NULL)
        return NULL;
    const char *when = json_string_value(json_object_get(run, "ended_at"));
    if (when == NULL)
        when = json_string_value(json_object_get(run, "created_at"));
    int rc = when
                 ? json_object_set_new(json_object_get(t, "status"), "timestamp", json_string(when))
                 : 0;
    if (st && strcmp(st, "succeeded") == 0)
        rc |= json_object_set_new(
            t, "artifacts",
            json_pack("[o]", output_artifact(dialect, json_object_get(run, "output"))));
    if (dialect == A2A_V03)
        rc |= json_object_set_new(t, "kind", json_string("task"));
    if (rc != 0) {
        json_decref(t);
        return NULL;
    }
    return t;
}

int par__a2a_input(json_t *message, const char *text_key, char **out, const char **why)
{
    json_t *parts = json_object_get(message, "parts");
    if (!json_is_object(message) || !json_is_array(parts) || json_array_size(parts) == 0) {
        *why = "params.message must be an object with a non-empty \"parts\" array";
        return A2A_INVALID_PARAMS;
    }
    par_buf_t text;
    par_buf_init(&text, 0);
    json_t *data = NULL, *p;
    size_t i;
    int rc = 0;
    json_array_foreach(parts, i, p)
    {
        json_t *t = json_object_get(p, "text");
        if (json_is_string(t)) {
            if (text.len)
                rc |= par_buf_appends(&text, "\n");
            rc |= par_buf_append(&text, json_string_value(t), json_string_length(t));
        } else if (json_object_get(p, "data")) {
            if (data == NULL)
                data = json_object_get(p, "data");
        } else {
            par_buf_free(&text);
            *why = json_is_object(p) ? "only text and data parts are accepted (no files)"
                                     : "a part must be an object";
            return json_is_object(p) ? A2A_CONTENT_TYPE : A2A_INVALID_PARAMS;
        }
    }
    json_t *in = data      ? json_incref(data)
                 : rc == 0 ? json_pack("{s:s%}", text_key, text.data ? text.data : "", text.len)
                           : NULL;
    par_buf_free(&text);
    *out = in ? json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(in);
    if (*out == NULL) {
        *why = "out of memory";
        return A2A_INTERNAL;
    }
    return 0;
}

json_t *par__a2a_request(json_t *message)
{
    json_t *parts = json_array(), *p;
    size_t i;
    json_array_foreach(json_object_get(message, "parts"), i, p)
    {
        json_t *t = json_object_get(p, "text");
        json_t *q = json_is_string(t) ? json_pack("{s:O}", "text", t)
                                      : json_pack("{s:O*}", "data", json_object_get(p, "data"));
        if (parts && (q == NULL || json_array_append_new(parts, q) != 0)) {
            json_decref(parts);
            parts = NULL;
        }
    }
    const char *mid = json_string_value(json_object_get(message, "messageId"));
    return parts ? json_pack("{s:s,s:o}", "messageId", mid && mid[0] ? mid : "user", "parts", parts)
                 : NULL;
}

/* A part of a stored request ({"text"} or {"data"}) in the dialect. */
static json_t *stored_part(int dialect, json_t *p)
{
    json_t *t = json_object_get(p, "text");
    if (json_is_string(t))
        return part(dialect, json_incref(t));
    json_t *d = json_object_get(p, "data");
    if (dialect != A2A_V03)
        return json_pack("{s:O}", "data", d ? d : json_null());
    if (!json_is_object(d))
        return json_pack("{s:s,s:{s:O}}", "kind", "data", "data", "value", d ? d : json_null());
    return json_pack("{s:s,s:O}", "kind", "data", "data", d);
}

/* The user's message of a task, from what send stored in the run's
 * metadata (a2a.message); NULL when there is none (a run not started
 * over A2A) or out of memory. */
static json_t *user_message(const a2a_frame_t *f, json_t *run)
{
    json_t *req =
        json_object_get(json_object_get(json_object_get(run, "metadata"), "a2a"), "message");
    const char *mid = json_string_value(json_object_get(req, "messageId"));
    json_t *parts = json_array(), *p;
    size_t i;
    json_array_foreach(json_object_get(req, "parts"), i, p)
    {
        if (parts && json_array_append_new(parts, stored_part(f->dialect, p)) != 0) {
            json_decref(parts);
            parts = NULL;
        }
    }
    if (mid == NULL || parts == NULL || json_array_size(parts) == 0) {
        json_decref(parts);
        return NULL;
    }
    if (f->dialect == A2A_V03)
        return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "kind", "message", "messageId", mid, "role",
                         "user", "taskId", f->task_id, "contextId", f->context_id, "parts", parts);
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "messageId", mid, "role", "ROLE_USER", "taskId",
                     f->task_id, "contextId", f->context_id, "parts", parts);
}

json_t *par__a2a_history(int dialect, json_t *run, long long limit)
{
    a2a_frame_t f = {{NULL}, dialect, NULL, "", ""};
    const char *id = json_string_value(json_object_get(run, "run_id"));
    snprintf(f.task_id, sizeof(f.task_id), "%s", id ? id : "");
    snprintf(f.context_id, sizeof(f.context_id), "%s", par__a2a_context_of(run));
    json_t *h = json_array();
    if (h == NULL)
        return NULL;
    json_t *user = user_message(&f, run);
    const char *st = json_string_value(json_object_get(run, "status"));
    json_t *err = json_object_get(run, "error");
    char mid[96];
    json_t *agent = NULL;
    if (st && strcmp(st, "succeeded") == 0) {
        snprintf(mid, sizeof(mid), "%s-output", f.task_id);
        json_t *out = json_object_get(run, "output");
        agent = agent_message(&f, mid, json_incref(out ? out : json_null()));
    } else if (json_is_object(err)) {
        snprintf(mid, sizeof(mid), "%s-error", f.task_id);
        agent = agent_message(&f, mid, json_incref(json_object_get(err, "message")));
    }
    int rc = user ? json_array_append_new(h, user) : 0;
    rc |= agent ? json_array_append_new(h, agent) : 0;
    while (rc == 0 && limit >= 0 && json_array_size(h) > (size_t)limit)
        rc = json_array_remove(h, 0);
    if (rc != 0) {
        json_decref(h);
        return NULL;
    }
    return h;
}

json_t *par__a2a_result(json_t *id, json_t *result)
{
    if (result == NULL)
        return NULL;
    return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result",
                     result);
}

json_t *par__a2a_error(json_t *id, int code, const char *msg, json_t *data)
{
    json_t *e = json_pack("{s:i,s:s}", "code", code, "message", msg);
    if (e && data && json_object_set_new(e, "data", data) != 0) {
        json_decref(e);
        return NULL;
    }
    if (e == NULL)
        json_decref(data);
    return e ? json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", e)
             : NULL;
}

a2a_frame_t *par__a2a_frame_new(int dialect, json_t *rpc_id, const char *task_id,
                                const char *context_id)
{
    a2a_frame_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->base.ops = &par__a2a_framer;
    f->dialect = dialect;
    f->rpc_id = json_incref(rpc_id);
    snprintf(f->task_id, sizeof(f->task_id), "%s", task_id);
    snprintf(f->context_id, sizeof(f->context_id), "%s", context_id);
    return f;
}

/* ---- the framer ------------------------------------------------------------ */

/* Wraps a stream object (consumed) of `kind` (task, statusUpdate,
 * artifactUpdate) for the dialect and appends it to `out` as one SSE event
 * with the run's sequence number. */
static int emit(const a2a_frame_t *f, const char *seq, size_t seqlen, const char *kind, json_t *obj,
                par_buf_t *out)
{
    static const char *const v03_kind[] = {"task", "status-update", "artifact-update"};
    json_t *doc = NULL;
    if (obj == NULL)
        return PAR_E_NO_MEMORY;
    if (f->dialect == A2A_V03) {
        int k = kind[0] == 't' ? 0 : kind[0] == 's' ? 1 : 2;
        if (json_object_set_new(obj, "kind", json_string(v03_kind[k])) == 0)
            doc = par__a2a_result(f->rpc_id, json_incref(obj));
    } else {
        json_t *sr = json_pack("{s:O}", kind, obj);
        doc =
            f->dialect == A2A_REST ? json_incref(sr) : par__a2a_result(f->rpc_id, json_incref(sr));
        json_decref(sr);
    }
    json_decref(obj);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    int rc = par_buf_appends(out, "id: ");
    rc |= par_buf_append(out, seq, seqlen);
    rc |= par_buf_appendf(out, "\ndata: %s\n\n", s);
    free(s);
    return rc == 0 ? PAR_OK : PAR_E_NO_MEMORY;
}

static json_t *status_update(const a2a_frame_t *f, const char *run_status, json_t *msg, int final)
{
    json_t *u = json_pack("{s:s,s:s,s:o}", "taskId", f->task_id, "contextId", f->context_id,
                          "status", status(f, run_status, msg));
    if (u && f->dialect == A2A_V03 && json_object_set_new(u, "final", json_boolean(final)) != 0) {
        json_decref(u);
        return NULL;
    }
    return u;
}

/* One run event (its type and data) as stream responses. */
static int frame_one(const a2a_frame_t *f, const char *seq, size_t seqlen, const char *type,
                     size_t tlen, const char *data, size_t dlen, par_buf_t *out)
{
#define IS(lit) (tlen == sizeof(lit) - 1 && memcmp(type, lit, tlen) == 0)
    json_t *d = json_loadb(data, dlen, JSON_DECODE_ANY, NULL);
    if (d == NULL)
        return PAR_E_NO_MEMORY; /* the engine stored valid JSON: only memory can fail */
    int rc;
    if (IS("run.started")) {
        rc = emit(f, seq, seqlen, "task",
                  json_pack("{s:s,s:s,s:o}", "id", f->task_id, "contextId", f->context_id, "status",
                            status(f, "queued", NULL)),
                  out);
    } else if (IS("run.completed")) {
        json_t *a = json_pack("{s:s,s:s,s:o,s:b}", "taskId", f->task_id, "contextId", f->context_id,
                              "artifact", output_artifact(f->dialect, json_object_get(d, "output")),
                              "lastChunk", 1);
        rc = emit(f, seq, seqlen, "artifactUpdate", a, out);
        if (rc == PAR_OK)
            rc = emit(f, seq, seqlen, "statusUpdate", status_update(f, "succeeded", NULL, 1), out);
    } else if (IS("run.failed") || IS("run.interrupted") || IS("run.cancelled")) {
        json_t *m = agent_message(f, "error", json_incref(json_object_get(d, "message")));
        rc = m ? emit(f, seq, seqlen, "statusUpdate",
                      status_update(f, IS("run.cancelled") ? "cancelled" : "failed", m, 1), out)
               : PAR_E_NO_MEMORY;
    } else {
        /* an agent event: a working status update carrying it, its type in metadata */
        char mid[96];
        snprintf(mid, sizeof(mid), "%s-%.*s", f->task_id, (int)seqlen, seq);
        json_t *m = agent_message(f, mid, json_incref(d));
        if (m &&
            json_object_set_new(m, "metadata", json_pack("{s:s%}", "event", type, tlen)) != 0) {
            json_decref(m);
            m = NULL;
        }
        rc = m ? emit(f, seq, seqlen, "statusUpdate", status_update(f, "running", m, 0), out)
               : PAR_E_NO_MEMORY;
    }
    json_decref(d);
    return rc;
#undef IS
}

/* Splits PAR's SSE text ("id: N\nevent: T\ndata: D\n\n" each) into events. */
static int frame_events(par_http_framed_t *data, par_run_t *r, const char *sse, size_t len,
                        par_buf_t *out)
{
    (void)r;
    const a2a_frame_t *f = (const a2a_frame_t *)data;
    const char *p = sse, *end = sse + len;
    while (p < end) {
        const char *e = memmem(p, (size_t)(end - p), "\n\n", 2);
        if (e == NULL)
            break;
        const char *seq = NULL, *type = "data", *d = NULL;
        size_t seqlen = 0, tlen = 4, dlen = 0;
        for (const char *l = p; l < e;) {
            const char *nl = memchr(l, '\n', (size_t)(e - l));
            const char *le = nl ? nl : e;
            if (le - l > 4 && memcmp(l, "id: ", 4) == 0)
                seq = l + 4, seqlen = (size_t)(le - l - 4);
            else if (le - l > 7 && memcmp(l, "event: ", 7) == 0)
                type = l + 7, tlen = (size_t)(le - l - 7);
            else if (le - l > 6 && memcmp(l, "data: ", 6) == 0)
                d = l + 6, dlen = (size_t)(le - l - 6);
            l = le + 1;
        }
        if (seq && d) {
            int rc = frame_one(f, seq, seqlen, type, tlen, d, dlen, out);
            if (rc != PAR_OK)
                return rc;
        }
        p = e + 2;
    }
    return PAR_OK;
}

/* A blocking send's answer: the task of the ended run. */
static int frame_answer(par_http_framed_t *data, par_run_t *r, par_buf_t *out, int *http)
{
    const a2a_frame_t *f = (const a2a_frame_t *)data;
    json_t *run = par_run_json(r);
    json_t *task = run ? par__a2a_task(f->dialect, run) : NULL;
    json_decref(run);
    json_t *doc = NULL;
    if (task && f->dialect == A2A_V03)
        doc = par__a2a_result(f->rpc_id, task);
    else if (task) {
        json_t *res = json_pack("{s:o}", "task", task);
        doc = f->dialect == A2A_REST ? res : par__a2a_result(f->rpc_id, res);
    }
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    int rc = par_buf_appends(out, s);
    free(s);
    *http = 200;
    return rc == 0 ? PAR_OK : PAR_E_NO_MEMORY;
}

static void frame_free(par_http_framed_t *data)
{
    a2a_frame_t *f = (a2a_frame_t *)data;
    json_decref(f->rpc_id);
    free(f);
}

const par_http_framer_t par__a2a_framer = {frame_events, frame_answer, frame_free};
