/*
 * par/par.h — the embedding API.
 *
 * A host program creates a runtime, deploys packages and calls agents with no
 * HTTP in between:
 *
 *     par_config_t cfg;
 *     par_config_init(&cfg);
 *     par_runtime_t *rt;
 *     if (par_runtime_new(&cfg, &rt) != PAR_OK) ...
 *     par_runtime_deploy_path(rt, "packages/echo-1.0.0.apkg", NULL);
 *     par_result_t out;
 *     par_call(rt, "echo", "{\"text\":\"hi\"}", 13, &out);
 *     ... out.data / out.len ...
 *     par_result_free(&out);
 *     par_runtime_destroy(rt);
 *
 * Threads: every function may be called from any thread; par_call and
 * par_call_ex block the calling thread until the agent answers or its
 * deadline passes; par_call_start returns at once and answers through a
 * callback on a runtime thread (an event loop's host uses that one). The
 * Python module `par` (python/, docs/python-embedding.md) is built on these.
 */
#ifndef PAR_PAR_H
#define PAR_PAR_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PAR_API __attribute__((visibility("default")))
#else
#define PAR_API
#endif

/*
 * Status codes. X(NAME, http_status, "stable_name", "description")
 * The stable name is what HTTP error bodies and logs carry in "error".
 */
/* New statuses are appended: the numbers travel in the worker protocol. */
#define PAR_STATUS_MAP(X)                                                                          \
    X(OK, 200, "ok", "success")                                                                    \
    X(E_BAD_REQUEST, 400, "bad_request", "the request is malformed")                               \
    X(E_INVALID_JSON, 400, "invalid_json", "the body is not valid JSON")                           \
    X(E_INVALID_ARGUMENT, 400, "invalid_argument", "an argument is not valid")                     \
    X(E_UNAUTHORIZED, 401, "unauthorized", "authentication is required")                           \
    X(E_FORBIDDEN, 403, "forbidden", "the caller lacks a permission")                              \
    X(E_NOT_FOUND, 404, "not_found", "no such resource")                                           \
    X(E_AGENT_NOT_FOUND, 404, "agent_not_found", "no such agent")                                  \
    X(E_METHOD_NOT_ALLOWED, 405, "method_not_allowed", "the method is not allowed on this route")  \
    X(E_CONFLICT, 409, "conflict", "the resource already exists")                                  \
    X(E_TOO_LARGE, 413, "payload_too_large", "the request body is too large")                      \
    X(E_INVALID_PACKAGE, 422, "invalid_package", "the package is not valid")                       \
    X(E_UNSAFE_ARCHIVE, 422, "unsafe_archive", "the archive is unsafe to extract")                 \
    X(E_INCOMPATIBLE, 422, "incompatible_package", "the package cannot run on this runtime")       \
    X(E_OVER_CAPACITY, 429, "over_capacity", "the agent is at its concurrency limit")              \
    X(E_AGENT_ERROR, 500, "agent_error", "the agent reported an error")                            \
    X(E_INTERNAL, 500, "internal_error", "internal error")                                         \
    X(E_NO_MEMORY, 500, "out_of_memory", "out of memory")                                          \
    X(E_IO, 500, "io_error", "input/output error")                                                 \
    X(E_AGENT_CRASHED, 502, "agent_crashed", "the agent's worker died during the request")         \
    X(E_BAD_OUTPUT, 502, "invalid_agent_output", "the agent's output is not valid JSON")           \
    X(E_OUTPUT_TOO_LARGE, 502, "output_too_large", "the agent's output exceeds the cap")           \
    X(E_PROTOCOL, 502, "worker_protocol_error", "the worker broke the worker protocol")            \
    X(E_UNAVAILABLE, 503, "agent_unavailable", "the agent has no live worker")                     \
    X(E_DRAINING, 503, "draining", "the runtime or package is draining")                           \
    X(E_NOT_READY, 503, "not_ready", "the runtime is not ready")                                   \
    X(E_TIMEOUT, 504, "agent_timeout", "the agent did not answer before its deadline")             \
    X(E_DIGEST_MISMATCH, 422, "digest_mismatch",                                                   \
      "the package bytes do not have the expected "                                                \
      "SHA-256")                                                                                   \
    X(E_SIGNATURE_MISSING, 422, "signature_missing", "the package is not signed")                  \
    X(E_SIGNATURE_INVALID, 422, "signature_invalid", "the package signature does not verify")      \
    X(E_UNTRUSTED_SIGNER, 422, "untrusted_signer",                                                 \
      "the package is signed by a key that is not trusted for it")                                 \
    X(E_FETCH_FAILED, 502, "fetch_failed", "the package source could not be fetched")              \
    X(E_INVALID_TOKEN, 401, "invalid_token", "the bearer token is not valid")                      \
    X(E_AUTH_UNAVAILABLE, 503, "auth_unavailable", "the token issuer's keys are not available")    \
    X(E_DEPS_UNAVAILABLE, 422, "dependencies_unavailable",                                         \
      "the package's Python requirements cannot be installed")                                     \
    X(E_BAD_ARCHIVE, 422, "bad_archive", "the archive is malformed or exceeds a structural limit") \
    X(E_AGENT_LOAD_FAILED, 422, "agent_load_failed",                                               \
      "the agent's code could not be loaded (syntax or import error, missing function)")           \
    X(E_SERVER_BUSY, 503, "over_capacity", "the runtime is at its in-flight request limit")        \
    X(E_CALL_DEPTH, 508, "call_depth_exceeded", "the sub-agent call chain is too deep")            \
    X(E_CANCELLED, 499, "cancelled", "the call was cancelled or its caller went away")             \
    X(E_SCRATCH_QUOTA, 507, "scratch_quota_exceeded",                                              \
      "the agent's package used more scratch space than limits.scratch_mb allows")                 \
    X(E_RUN_NOT_FOUND, 404, "run_not_found", "no such run")                                        \
    X(E_TOO_MANY_RUNS, 429, "too_many_runs", "the caller has as many runs in flight as allowed")   \
    X(E_RUN_ENDED, 409, "run_ended", "the run has already ended")                                  \
    X(E_RUN_ACTIVE, 409, "run_active", "the run has not ended yet")                                \
    X(E_RUN_EXPIRED, 410, "run_expired", "the run's events are past their retention")              \
    X(E_BAD_EVENT_ID, 400, "invalid_last_event_id", "the event id to resume after is not valid")   \
    X(E_INVALID_EVENT, 502, "invalid_agent_event",                                                 \
      "the agent emitted an event that is not one JSON value of an allowed size and type")         \
    X(E_INTERRUPTED, 503, "interrupted",                                                           \
      "the run was in flight when the runtime stopped, restarted or unloaded its version")        \
    X(E_FORWARD_LOOP, 508, "forwarding_loop",                                                      \
      "a request forwarded by another fleet node names a run this node does not own")

typedef enum par_status {
#define PAR__STATUS_ENUM(name, http, str, desc) PAR_##name,
    PAR_STATUS_MAP(PAR__STATUS_ENUM)
#undef PAR__STATUS_ENUM
        PAR_STATUS_COUNT
} par_status_t;

/** Human description of a status ("the agent did not answer before its deadline"). */
PAR_API const char *par_strerror(int status);
/** Stable machine-readable name ("agent_timeout"). */
PAR_API const char *par_status_name(int status);
/** HTTP status code that goes with a status (504). */
PAR_API int par_status_http(int status);

/** Isolation of a package's code. */
typedef enum par_isolation {
    PAR_ISOLATION_WORKER = 0,     /**< sandboxed worker processes (default) */
    PAR_ISOLATION_IN_PROCESS = 1, /**< operator-trusted: runs in the runtime's address space */
} par_isolation_t;

/** A key trusted to sign packages. */
typedef struct par_trusted_key {
    const char *key; /**< minisign public key: the base64 line ("RWQ..."), or a .pub file path */
    const char *const *packages; /**< NULL-terminated package name patterns (fnmatch) pinned
                                      to this key, e.g. "acme-*": only keys pinned to a pattern
                                      sign the names it matches, and this key signs nothing
                                      else; NULL = any name no pin covers */
} par_trusted_key_t;

/** Runtime configuration. Initialise with par_config_init(), then set fields.
 *  Strings are borrowed for the duration of par_runtime_new() only. */
typedef struct par_config {
    const char *state_dir;      /**< cache and state, default "./var" */
    const char *worker_path;    /**< par-worker executable, default: found automatically */
    par_isolation_t isolation;  /**< default isolation for every package */
    const char *const *trusted; /**< NULL-terminated package names run in-process */
    unsigned min_workers;       /**< per package version, default 1 */
    unsigned max_workers;       /**< per package version, default: number of cores */
    unsigned
        worker_concurrency; /**< in-flight requests per worker before the pool grows, default 8 */
    uint32_t default_timeout_ms;  /**< per invocation, default 30000 */
    uint32_t max_timeout_ms;      /**< cap on any deadline, default 300000 */
    size_t max_input_bytes;       /**< default per-agent input cap, default 1 MiB */
    size_t max_output_bytes;      /**< agent output cap, default 16 MiB */
    unsigned default_concurrency; /**< per package version when it sets none; 0 = no limit */
    unsigned max_queue;           /**< calls waiting for a slot, per package version; default 100 */
    unsigned
        worker_cpu_seconds;  /**< CPU time a worker may use in its life (RLIMIT_CPU); 0 = none */
    unsigned rollback_after; /**< judge a new version on its first N calls; 0 = no rollback */
    unsigned rollback_error_pct; /**< roll back when this share (percent) of them failed with 5xx */
    uint32_t drain_ms; /**< how long a replaced version may finish its calls, default 30000 */
    unsigned
        default_memory_mb; /**< worker address-space limit when a package sets none; 0 = none */
    /* package trust */
    const par_trusted_key_t *trusted_keys; /**< keys whose signatures are accepted */
    size_t trusted_key_count;
    int allow_unsigned; /**< deploy packages without a signature (with a warning); default 0:
                             unsigned packages are refused. Signatures that are present are
                             always checked. */
    /* registries */
    const char *ca_file; /**< trust anchors for https registries (PEM); NULL = system */
    uint32_t fetch_connect_timeout_ms; /**< default 5000 */
    uint32_t fetch_timeout_ms;         /**< one whole download, default 120000 */
    unsigned fetch_retries;            /**< on 5xx, timeouts, resets; default 3 */
    uint64_t max_download_bytes;       /**< size cap of one download, default 512 MiB */
    int allow_http;                    /**< accept plain http:// package URLs; default 0 */
    const char *s3_region;             /**< default "us-east-1" */
    const char *s3_endpoint;           /**< S3-compatible endpoint URL; NULL = AWS */
    int s3_path_style;                 /**< bucket in the path, not the host name */
    uint64_t cache_max_bytes; /**< extracted-package cache cap, LRU of unloaded ones; 0 = none */
    const char *index_url;    /**< registry index (https:// or s3://) polled and converged to */
    uint32_t index_poll_ms;   /**< poll interval, default 30000 */
    /* worker sandbox (docs/sandbox.md) */
    const char *sandbox_user;       /**< uid workers run as when the runtime is root (name or
                                         number), default "nobody" */
    const char *sandbox_group;      /**< their gid (name or number), default: the user's group */
    unsigned sandbox_max_files;     /**< RLIMIT_NOFILE of a worker, default 1024 */
    unsigned sandbox_max_processes; /**< RLIMIT_NPROC of the workers' uid, default 1024 */
    /* Python agents */
    const char *python;           /**< interpreter, default "/usr/bin/python3" */
    const char *python_shim;      /**< the Python worker script; default: found automatically */
    const char *wheelhouse;       /**< directory of wheels requirements install from; NULL = none */
    uint32_t pip_timeout_ms;      /**< installing one package's requirements, default 300000 */
    const char *const *env_allow; /**< NULL-terminated names `${NAME}` in a package's
                                       environment may expand from the runtime's environment */
    unsigned scratch_mb;          /**< limits.scratch_mb: scratch quota per package version (MB) */
    unsigned max_call_depth; /**< limits.max_call_depth: sub-agent call chain cap, default 16 */
    /* runs (docs/runs.md); 0 = the default */
    uint32_t run_timeout_ms;    /**< deadline of one run, default 3600000; UINT32_MAX = none */
    unsigned runs_per_subject;  /**< runs in flight per caller, default 100; UINT_MAX = no limit */
    unsigned run_memory_events; /**< events of a run kept in memory, default 1000 */
    uint32_t run_retention_s;   /**< how long an ended run is kept, default 86400 */
    uint32_t run_cancel_grace_ms; /**< a worker ignoring a cancel is killed after, default 5000 */
    size_t max_event_bytes;       /**< cap on one event's JSON, default 1 MiB */
    uint32_t run_drain_ms; /**< how long a replaced version keeps its runs, default 3600000 */
    void *data;            /**< embedder's slot */
} par_config_t;

typedef struct par_runtime par_runtime_t;

/** An agent's answer. `data` is JSON: the output on PAR_OK, the error body
 *  otherwise ({"error","message","request_id"}, and "traceback", the agent's
 *  own text, when a Python handler raised). */
typedef struct par_result {
    int status; /**< PAR_OK or an error status */
    char *data; /**< owned; free with par_result_free() */
    size_t len;
} par_result_t;

/** One agent as listed by par_runtime_agents(). */
typedef struct par_agent_info {
    const char *id; /**< "echo", "echo/upper" */
    const char *package;
    const char *version;
    const char *description;
    int is_public;
} par_agent_info_t;

PAR_API void par_config_init(par_config_t *cfg);

/** Creates a runtime. On success `*out` is owned by the caller. */
PAR_API int par_runtime_new(const par_config_t *cfg, par_runtime_t **out);

/** Deploys a package from an `.apkg` file or an unpacked package directory and
 *  makes it active. Blocks until its workers are ready or the load failed. On
 *  failure, when `err` is not NULL, it receives a malloc'ed message naming
 *  every reason (free() it). */
PAR_API int par_runtime_deploy_path(par_runtime_t *rt, const char *path, char **err);

/** Deploys a package from a URL (https://, s3://bucket/key). `sha256` (hex) and
 *  `signature_url` may be NULL: then `{url}.sha256` and `{url}.minisig` are
 *  tried. Blocks; `err` as for par_runtime_deploy_path(). */
PAR_API int par_runtime_deploy_url(par_runtime_t *rt, const char *url, const char *sha256,
                                   const char *signature_url, char **err);

/** Calls an agent by id (`name`, `name/sub`, `name@ver`, `name@ver/sub`) with
 *  `input` as JSON bytes. Private sub-agents are reachable: the embedder is
 *  trusted. Returns the same status as `out->status`. */
PAR_API int par_call(par_runtime_t *rt, const char *agent_id, const char *input, size_t len,
                     par_result_t *out);

PAR_API void par_result_free(par_result_t *r);

/** Lists agents. `*list` is an array of `*count` entries valid until
 *  par_agents_free(). Includes private sub-agents when `include_private`. */
PAR_API int par_runtime_agents(par_runtime_t *rt, int include_private, par_agent_info_t **list,
                               size_t *count);
PAR_API void par_agents_free(par_agent_info_t *list, size_t count);

/** Stops workers and frees the runtime. In-flight calls fail with `draining`. */
PAR_API void par_runtime_destroy(par_runtime_t *rt);

/** Version string of the library, e.g. "0.1.0". */
PAR_API const char *par_version(void);

/* ---- calls with options, asynchronous calls, package management --------------------------- */

/** What one call carries besides its agent and input: what an HTTP caller
 *  sends as the body's "context" and "trace_id", the X-Request-ID,
 *  X-Par-Timeout-Ms and traceparent headers, and the identity its credential
 *  proves. Zero it (or use PAR_CALL_OPTS_INIT), then set fields. Strings are
 *  borrowed until par_call_ex() or par_call_start() returns. */
typedef struct par_call_opts {
    const char *agent_id; /**< "name", "name/sub", "name@ver", "name@ver/sub" (required) */
    const char *input;    /**< the input as JSON bytes (required) */
    size_t input_len;
    const char *context; /**< a JSON object handed to the agent as its context, or NULL */
    size_t context_len;
    const char *subject;    /**< the caller's identity (metering, the agent's context), or NULL */
    const char *tenant;     /**< the caller's tenant, or NULL */
    uint32_t timeout_ms;    /**< 0 = the package's deadline; otherwise it can only be lowered */
    const char *trace_id;   /**< a W3C traceparent (the call becomes a child of its span) or a
                                 trace id of 1..63 characters [A-Za-z0-9._-]; NULL = a new one */
    const char *request_id; /**< 1..128 characters [A-Za-z0-9._-]; NULL = a new one */
    void *data;             /**< embedder's slot */
} par_call_opts_t;

#define PAR_CALL_OPTS_INIT                                                                         \
    {                                                                                              \
        0                                                                                          \
    }

/** Calls an agent as par_call() does, with the options above; blocks the
 *  calling thread. An in-process (trusted) agent runs on the calling thread.
 *  Errors in the options are answered like call errors (invalid_argument,
 *  invalid_json, agent_not_found) in `out`. Returns `out->status`. */
PAR_API int par_call_ex(par_runtime_t *rt, const par_call_opts_t *opts, par_result_t *out);

typedef struct par_call_handle par_call_handle_t;

/** The completion of par_call_start(): `result` is the caller's to read and to
 *  free with par_result_free(). Runs exactly once, on a runtime thread (a
 *  worker's I/O, the in-process executor, the metering writer) or on the
 *  thread of par_call_start() / par_call_cancel() itself; it must not block
 *  and must not call par_runtime_destroy(). */
typedef void (*par_call_cb)(void *arg, par_result_t *result);

/** Starts a call and returns at once; `cb(arg, result)` answers it. Returns
 *  PAR_OK when `cb` will run (or already ran: a refusal such as
 *  agent_not_found is answered through `cb` too), or PAR_E_INVALID_ARGUMENT /
 *  PAR_E_NO_MEMORY when nothing started (then `cb` never runs). When `h` is
 *  not NULL it receives a handle for par_call_cancel(), valid (even after the
 *  answer) until par_call_handle_free(). Any thread. */
PAR_API int par_call_start(par_runtime_t *rt, const par_call_opts_t *opts, par_call_cb cb,
                           void *arg, par_call_handle_t **h);

/** Takes a started call back: its worker is sent CANCEL, its slot is freed and
 *  `cb` answers PAR_E_CANCELLED (possibly before this returns). Returns PAR_OK
 *  then, or PAR_E_NOT_FOUND when the answer is already on its way or the
 *  agent runs in-process (it sees par_ctx_cancelled() and its answer comes as
 *  usual). Any thread. */
PAR_API int par_call_cancel(par_call_handle_t *h);

/** Releases a handle. NULL is a no-op. */
PAR_API void par_call_handle_free(par_call_handle_t *h);

/** Deploys from a path (an .apkg or a package directory) or a URL (https://,
 *  s3://; http:// when allowed), as par_runtime_deploy_path() and
 *  par_runtime_deploy_url() do. On success, when `record` is not NULL, it
 *  receives the package version as JSON (the object GET /runtime/packages
 *  lists); on failure `err` as for par_runtime_deploy_path(). Free both with
 *  free(). Blocks. */
PAR_API int par_runtime_deploy(par_runtime_t *rt, const char *path_or_url, const char *sha256,
                               char **record, char **err);

/** Removes every version of package `name`, or only `version` when not NULL;
 *  calls in flight finish on the versions they hold. PAR_E_NOT_FOUND when
 *  nothing matched. */
PAR_API int par_runtime_remove(par_runtime_t *rt, const char *name, const char *version);

/** The package versions the runtime holds, failed deploys included, as the
 *  JSON array GET /runtime/packages lists under "packages". `*json` is
 *  malloc'ed (free() it). */
PAR_API int par_runtime_packages(par_runtime_t *rt, char **json, size_t *len);

/** The runtime's metrics in the Prometheus text format, as GET /metrics
 *  renders them (calls made through this API are counted in
 *  par_inprocess_calls_total). `*text` is malloc'ed (free() it). */
PAR_API int par_runtime_metrics(par_runtime_t *rt, char **text, size_t *len);

/** Creates a runtime from the configuration of `par serve`: the YAML file
 *  `file`, or, when `text` is not NULL, that YAML (or JSON) text named `file`
 *  in messages (relative paths in it are then relative to the current
 *  directory). The same loader validates it: an unknown key, a wrong type or
 *  a value out of range refuses it, PAR_E_INVALID_ARGUMENT with every mistake
 *  in `*err` (free() it). Keys of the HTTP server (listen, tls, auth, http)
 *  are checked and ignored; metering.enabled starts usage metering; a
 *  packages folder set in it (`packages`, `registry.dir`) is deployed, not
 *  watched. PAR_* variables are not read. */
PAR_API int par_runtime_new_from_config(const char *file, const char *text, size_t len,
                                        par_runtime_t **out, char **err);

/** Deploys every .apkg of `dir` in name order, as `par serve` does at start:
 *  a package that fails is logged and listed by par_runtime_packages() with
 *  state "failed". Returns PAR_E_NOT_FOUND when `dir` cannot be read. Blocks. */
PAR_API int par_runtime_deploy_dir(par_runtime_t *rt, const char *dir);

/* ---- runs streamed to the host ------------------------------------------------------------ */

/** One callback of a stream: an event of the run, or (end = 1, the last
 *  callback) its end. Valid during the callback only. */
typedef struct par_stream_event {
    uint64_t seq;     /**< the event's sequence number (1 = run.started); 0 at the end */
    const char *type; /**< "run.started", an agent's type ("data" by default), "run.completed",
                           "run.failed", "run.cancelled", "run.interrupted"; NULL at the end */
    const char *data; /**< one JSON value (NUL-terminated); at the end: the invoke-shaped answer
                           plus "run_id" when `status` is PAR_OK, else the error body
                           {"error","message","request_id"} */
    size_t len;
    int end;    /**< 1 on the last callback */
    int status; /**< at the end: PAR_OK (completed) or the run's error status (a failed run's,
                     PAR_E_CANCELLED, PAR_E_INTERRUPTED); 0 before */
} par_stream_event_t;

/** Return value of a par_stream_cb: go on, or hold the stream until par_stream_resume(). */
#define PAR_STREAM_CONTINUE 0
#define PAR_STREAM_PAUSE 1

/** Receives a stream's events in order, one callback at a time, on the
 *  stream's own runtime thread (never concurrently, never on the thread of
 *  par_stream_start()). It must not block for long and must not call
 *  par_runtime_destroy(). Returning PAR_STREAM_PAUSE holds the stream after
 *  the events already read (at most 64 KiB of them) until par_stream_resume():
 *  an event is "delivered" once its callback returned, and the run's flow
 *  control holds the agent back while the host does not take more (a slow
 *  consumer slows the agent, it does not grow memory). The end callback
 *  comes whatever the pause. */
typedef int (*par_stream_cb)(void *arg, const par_stream_event_t *ev);

typedef struct par_stream par_stream_t;

/** Starts a run (docs/runs.md) of `opts` as par_call_start() starts a call
 *  (the same options, the same trust: private sub-agents are reachable) and
 *  streams its events to `cb`. The run is kept, listed and resumable as any
 *  run (GET /runs, under `opts->subject`). On PAR_OK `*out` is the stream and
 *  `cb` will run until its end callback. A refusal (agent_not_found,
 *  too_many_runs, draining, bad options …) returns its status with, when
 *  `err` is not NULL, its error body as JSON in `*err` (free() it); then `cb`
 *  never runs. Any thread. */
PAR_API int par_stream_start(par_runtime_t *rt, const par_call_opts_t *opts, par_stream_cb cb,
                             void *arg, par_stream_t **out, char **err);

/** Lets a paused stream go on. Any thread. Called while a callback runs, it
 *  voids that callback's PAR_STREAM_PAUSE (so a consumer on another thread
 *  cannot lose a resume); otherwise a no-op when not paused. */
PAR_API void par_stream_resume(par_stream_t *s);

/** Cancels the run: it ends `cancelled` (its worker is sent CANCEL), the
 *  callback gets run.cancelled and the end (PAR_E_CANCELLED). PAR_OK, or
 *  PAR_E_RUN_ENDED when it had already ended. Any thread. */
PAR_API int par_stream_cancel(par_stream_t *s);

/** Ends the stream: a run not yet ended is cancelled, and no callback runs
 *  after this returns (it waits for one in progress; called from the
 *  callback itself, it returns at once and the callback is the last). Free
 *  every stream before par_runtime_destroy(). NULL is a no-op. */
PAR_API void par_stream_free(par_stream_t *s);

#ifdef __cplusplus
}
#endif
#endif
