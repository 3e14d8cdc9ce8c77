/*
 * http/a2a.h — what the A2A files of the HTTP layer share (docs/protocols.md
 * "A2A"): the dialect a request speaks, the framing of a task's events, and
 * the mapping between A2A's objects and PAR's runs.
 *
 *   a2a.c      agent cards, the runtime catalog, the JSON-RPC endpoint and
 *              the HTTP+JSON routes (loop thread)
 *   a2a_map.c  messages → agent input, runs → tasks, run events → stream
 *              responses (pure: no I/O, no runtime state)
 *
 * A task is a run: its id is the run id, its owner the run's, its events
 * the run's events reframed. Nothing outside src/http/ includes this.
 */
#ifndef PAR_HTTP_A2A_H
#define PAR_HTTP_A2A_H

#include <jansson.h>

#include "http/internal.h"

/* How a request speaks: v1.0 JSON-RPC, v0.3 JSON-RPC, v1.0 HTTP+JSON. */
typedef enum { A2A_V1 = 0, A2A_V03, A2A_REST } a2a_dialect_t;

/* A2A error codes (JSON-RPC). */
enum {
    A2A_PARSE_ERROR = -32700,
    A2A_INVALID_REQUEST = -32600,
    A2A_METHOD_NOT_FOUND = -32601,
    A2A_INVALID_PARAMS = -32602,
    A2A_INTERNAL = -32603,
    A2A_TASK_NOT_FOUND = -32001,
    A2A_TASK_NOT_CANCELABLE = -32002,
    A2A_PUSH_NOT_SUPPORTED = -32003,
    A2A_UNSUPPORTED = -32004,
    A2A_CONTENT_TYPE = -32005,
};

/* One stream or blocking send: who gets the frames. Heap-allocated; the
 * framer frees it. */
typedef struct a2a_frame {
    par_http_framed_t base; /* base.ops = &par__a2a_framer */
    int dialect;            /* a2a_dialect_t */
    json_t *rpc_id;         /* the JSON-RPC request's id (referenced); NULL for REST */
    char task_id[64];       /* the run id */
    char context_id[80];
} a2a_frame_t;

/* Frames PAR's run events as A2A stream responses; answers a blocking send
 * with the task once its run ended. */
extern const par_http_framer_t par__a2a_framer;

/* A new frame (rpc_id referenced), or NULL (no memory). */
a2a_frame_t *par__a2a_frame_new(int dialect, json_t *rpc_id, const char *task_id,
                                const char *context_id);

/* The task of a run (par_run_json's document) in the dialect; new
 * reference or NULL. */
json_t *par__a2a_task(int dialect, json_t *run);

/* The agent input a message carries, as JSON text into *out (malloc'ed):
 * the first data part's value, else {text_key: the text parts joined by
 * "\n"}. 0, or an A2A error code with *why set. */
int par__a2a_input(json_t *message, const char *text_key, char **out, const char **why);

/* The input property text parts fill for the agent x->m.var names (written
 * to key): with a declared metadata.par.input_schema, its only required
 * property when that is a string, else its only string property; else
 * "text" (docs/protocols.md "Messages → input"). */
void par__a2a_text_key(par_http_exchange_t *x, char *key, size_t cap);

/* What a task keeps of the message that started it (the run's
 * metadata.a2a.message): {"messageId", "parts": [{"text"}|{"data"}]}, for
 * the task's history; new reference or NULL (no memory). The message's
 * parts were checked by par__a2a_input. */
json_t *par__a2a_request(json_t *message);

/* A task's history (GetTask's historyLength): the user's message and the
 * agent's answer (its output, or its error's message) once there is one,
 * in the dialect; the last `limit` of them (all when limit < 0). New
 * reference or NULL (no memory). */
json_t *par__a2a_history(int dialect, json_t *run, long long limit);

/* The context id a run was started with (its metadata), else its id. */
const char *par__a2a_context_of(json_t *run);

/* Whether `id` is a public agent; else answers 404 agent_not_found (as
 * invoke does) and returns 0. */
int par__a2a_known(par_http_exchange_t *x, const char *id, size_t len);

/* The card of the public agent x->m.var names, as the card route serves it
 * (GetExtendedAgentCard answers the authenticated caller with it); NULL
 * when there is no such agent or out of memory. */
json_t *par__a2a_card(par_http_exchange_t *x);

/* A JSON-RPC answer body: {"jsonrpc":"2.0","id":id,"result":result}
 * (result consumed). NULL when out of memory. */
json_t *par__a2a_result(json_t *id, json_t *result);
/* {"jsonrpc":"2.0","id":id,"error":{"code","message","data"?}} (data consumed). */
json_t *par__a2a_error(json_t *id, int code, const char *msg, json_t *data);

#endif
