/*
 * par/agent.h — the native agent ABI.
 *
 * A native agent package ships a shared object built against this header. Each
 * export is one function of type par_agent_fn:
 *
 *     int my_agent(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out);
 *
 * `input` is the request's `input` as JSON bytes (not NUL-terminated). The agent
 * appends JSON to `out` with par_out_write() and returns 0, or returns non-zero
 * after par_ctx_fail() to report an error (HTTP 500 `agent_error`).
 *
 * Everything the agent may ask of the runtime goes through the function table in
 * the context, so a package links against nothing of PAR's and the same object
 * runs in a sandboxed worker process or in-process in a trusted runtime.
 *
 * Threads: an export may be called from several threads at once (one per
 * concurrent request). A context and its output are only valid during the call.
 *
 * Optional per-package hooks, looked up in each shared object:
 *     int  par_agent_init(void);   non-zero refuses the package at load
 *     void par_agent_fini(void);
 *     extern const unsigned par_agent_abi;   (if present, must equal PAR_AGENT_ABI)
 */
#ifndef PAR_AGENT_H
#define PAR_AGENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version. A package records the value it was built against in
 *  `metadata.par.abi` (and optionally the `par_agent_abi` symbol); the runtime
 *  refuses a mismatch. */
#define PAR_AGENT_ABI 1

/** A borrowed byte range. */
typedef struct par_slice {
    const char *ptr;
    size_t len;
} par_slice_t;

typedef struct par_agent_ctx par_agent_ctx_t;
typedef struct par_agent_api par_agent_api_t;

/** The output an agent appends to. */
typedef struct par_out {
    const par_agent_api_t *api;
    void *_impl; /**< runtime-private */
} par_out_t;

/** Log levels for par_ctx_log(). */
enum { PAR_LOG_DEBUG = 0, PAR_LOG_INFO = 1, PAR_LOG_WARN = 2, PAR_LOG_ERROR = 3 };

/** Function table given to agents. Fields are only ever appended. */
struct par_agent_api {
    uint32_t abi;  /**< PAR_AGENT_ABI of the host */
    uint32_t size; /**< sizeof(par_agent_api_t) of the host */
    int (*out_write)(par_out_t *out, const void *data, size_t len);
    int (*call)(par_agent_ctx_t *ctx, const char *agent_id, par_slice_t input, par_slice_t *output);
    void (*usage)(par_agent_ctx_t *ctx, const char *unit, int64_t amount);
    void (*log)(par_agent_ctx_t *ctx, int level, const char *msg);
    void (*set_error)(par_agent_ctx_t *ctx, const char *msg);
    int (*cancelled)(par_agent_ctx_t *ctx);
    /* appended in 0.1: read it through par_ctx_tenant(), which checks `size` */
    const char *(*tenant)(par_agent_ctx_t *ctx);
    /* appended in 0.1: read it through par_ctx_span_id() */
    const char *(*span_id)(par_agent_ctx_t *ctx);
    /* appended in 0.2: use par_ctx_emit(), which checks `size` */
    int (*emit)(par_agent_ctx_t *ctx, const char *type, const char *json, size_t len);
};

/** What an agent learns about the invocation. Read-only for the agent. */
struct par_agent_ctx {
    const par_agent_api_t *api;
    const char *agent_id;   /**< the id that was invoked, e.g. "echo/upper" */
    const char *sub_agent;  /**< sub-agent or export name, "" for the main export */
    const char *request_id; /**< never NULL */
    const char *trace_id;   /**< never NULL, may be "" */
    const char *subject;    /**< caller identity (the token's `sub`, or the API key's
                                 subject), "" when authentication is off */
    par_slice_t context;    /**< the request's `context` object as JSON ("{}" if none) */
    int64_t deadline_ms;    /**< absolute CLOCK_MONOTONIC deadline in ms, 0 = none */
    void *_impl;            /**< runtime-private */
};

/** Type of every export. */
typedef int (*par_agent_fn)(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out);

/** Appends bytes to the output. Returns 0, or non-zero when the output cap
 *  is exceeded (the invocation then fails with `output_too_large`). */
static inline int par_out_write(par_out_t *out, const void *data, size_t len)
{
    return out->api->out_write(out, data, len);
}

/** Calls another agent of the same package (private sub-agents included) or a
 *  public agent, through the runtime. On success returns 0 and `*output` holds
 *  the callee's output JSON, owned by the runtime until this invocation ends.
 *  On failure returns a PAR status code (see par.h) and `*output` holds the
 *  error body JSON. Keeps the caller identity, trace and remaining deadline. */
static inline int par_ctx_call(par_agent_ctx_t *ctx, const char *agent_id, par_slice_t input,
                               par_slice_t *output)
{
    return ctx->api->call(ctx, agent_id, input, output);
}

/** Reports usage (`tokens`, `requests`, …) for metering. Units accumulate. */
static inline void par_ctx_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount)
{
    ctx->api->usage(ctx, unit, amount);
}

/** Writes a log line tagged with the agent and request. */
static inline void par_ctx_log(par_agent_ctx_t *ctx, int level, const char *msg)
{
    ctx->api->log(ctx, level, msg);
}

/** Sets the error message returned to the caller when the export returns non-zero. */
static inline void par_ctx_fail(par_agent_ctx_t *ctx, const char *msg)
{
    ctx->api->set_error(ctx, msg);
}

/** The caller's tenant: the configured tenant claim of its token, or its API
 *  key's tenant; "" when there is none (or the host predates tenants). Like
 *  `subject`, it is the original caller's in sub-agent calls too. */
static inline const char *par_ctx_tenant(par_agent_ctx_t *ctx)
{
    const par_agent_api_t *api = ctx->api;
    if (api->size < offsetof(par_agent_api_t, tenant) + sizeof(api->tenant) || !api->tenant)
        return "";
    const char *t = api->tenant(ctx);
    return t ? t : "";
}

/** This invocation's span id (16 hex characters, W3C trace context): every
 *  invocation, sub-agent calls included, is a new span of the request's trace
 *  (`ctx->trace_id`). "" when the host predates spans. */
static inline const char *par_ctx_span_id(par_agent_ctx_t *ctx)
{
    const par_agent_api_t *api = ctx->api;
    if (api->size < offsetof(par_agent_api_t, span_id) + sizeof(api->span_id) || !api->span_id)
        return "";
    const char *s = api->span_id(ctx);
    return s ? s : "";
}

/** Non-zero once the runtime has given up on this invocation (deadline, client gone). */
static inline int par_ctx_cancelled(par_agent_ctx_t *ctx)
{
    return ctx->api->cancelled(ctx);
}

/** Emits an event of a run (docs/runs.md): `type` (NULL or "" means "data";
 *  1..64 characters of [A-Za-z0-9._:-]) and `json`, one JSON value of `len`
 *  bytes. Clients streaming the run receive it at once, as an SSE event with
 *  the next sequence number. May block while the slowest streaming client
 *  catches up (flow control). Returns 0; PAR_E_INVALID_EVENT (see par.h)
 *  when the type or JSON is not valid or the event is over
 *  runs.max_event_kb; PAR_E_CANCELLED once the invocation is cancelled;
 *  PAR_E_INVALID_ARGUMENT from a host that predates events. In a unary
 *  invocation (no run), events are accepted and dropped. */
static inline int par_ctx_emit(par_agent_ctx_t *ctx, const char *type, const char *json, size_t len)
{
    const par_agent_api_t *api = ctx->api;
    if (api->size < offsetof(par_agent_api_t, emit) + sizeof(api->emit) || !api->emit)
        return 3; /* PAR_E_INVALID_ARGUMENT */
    return api->emit(ctx, type, json, len);
}

#ifdef __cplusplus
}
#endif
#endif
