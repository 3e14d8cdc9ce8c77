/*
 * par/plugin.h — the extension plugin ABI (docs/extensions.md).
 *
 * A plugin is a shared object named in the runtime's configuration
 *
 *     plugins:
 *       - path: /usr/lib/par/plugins/trusted-header.so
 *         config: {header: X-Forwarded-User, proxies: [10.0.0.0/8]}
 *
 * and loaded once, at start, into the runtime process: it is code the
 * operator trusts as much as PAR itself. It exports one symbol,
 *
 *     const par_plugin_t *par_plugin_entry(void);      (PAR_PLUGIN_ENTRY)
 *
 * returning its table (static storage). The runtime checks the table's `abi`
 * and `size`, then calls `init` with the host table (its services: log,
 * configuration, state directory, ...). A plugin may register any of three
 * kinds, each an ops table pointed to by the plugin table (NULL: not this kind):
 *
 *   - a loader (par_loader_ops_t) for one or more manifest `runtime` values:
 *     it validates and prepares a package version at deploy and gives the
 *     program par-worker execs (`--exec`) inside its sandbox; that program
 *     speaks docs/worker-protocol.md;
 *   - an auth provider (par_auth_ops_t), selected with `auth.mode:
 *     plugin:<name>`: request credentials in, an identity or a refusal out,
 *     possibly asynchronously;
 *   - a telemetry exporter (par_exporter_ops_t): metrics snapshots, finished
 *     spans and usage records, delivered on a thread of the host that is
 *     never the request path, through a bounded queue (what does not fit is
 *     dropped and counted in par_plugin_exporter_dropped_total).
 *
 * Versioning. Every table starts with its size (and the plugin and host
 * tables with the ABI version). Fields are only ever appended: a runtime reads
 * a field of a plugin's table only when the plugin's `size` covers it (an older
 * plugin works unchanged), and a plugin must read a host field only when the
 * host's `size` covers it (use the PAR_PLUGIN_HAS() macro). A plugin built for
 * a newer ABI than the runtime's (`abi` > PAR_PLUGIN_ABI) is refused at start.
 *
 * Threads (details with each kind): `init` and `fini` on the main thread;
 * loader calls on deploy threads (serialised: one at a time per runtime);
 * auth calls on any thread, event loops included, so they must never block;
 * exporter calls on that exporter's own thread, one at a time. Host services
 * may be called from any thread.
 */
#ifndef PAR_PLUGIN_H
#define PAR_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "par.h" /* par_slice_t, PAR_LOG_*, PAR_E_* statuses */

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version of this header. */
#define PAR_PLUGIN_ABI 1

/** The symbol every plugin exports (type par_plugin_entry_fn). */
#define PAR_PLUGIN_ENTRY "par_plugin_entry"

/** Is field `f` of table `*t` (of type `type`) present? For a table from
 *  the other side, whose `size` may be smaller than this header's. */
#define PAR_PLUGIN_HAS(t, type, f) ((t)->size >= offsetof(type, f) + sizeof(((type *)0)->f))

typedef struct par_plugin_host par_plugin_host_t;
typedef struct par_plugin par_plugin_t;
typedef struct par_loader_ops par_loader_ops_t;
typedef struct par_auth_ops par_auth_ops_t;
typedef struct par_exporter_ops par_exporter_ops_t;
typedef struct par_auth_result par_auth_result_t;

/* ------------------------------------------------------------------------ */
/* Host services                                                             */

/** Opaque handles the host hands out. */
typedef struct par_loader_cmd par_loader_cmd_t;     /**< a worker command being built */
typedef struct par_auth_request par_auth_request_t; /**< one request being authenticated */
typedef struct par_auth_done par_auth_done_t;       /**< where an auth answer goes */

/** What the runtime offers a plugin. One table per loaded plugin, valid from
 *  `init` until `fini` returns. Every function may be called from any thread. */
struct par_plugin_host {
    uint32_t abi;                /**< PAR_PLUGIN_ABI of the runtime */
    uint32_t size;               /**< sizeof(par_plugin_host_t) of the runtime */
    const char *runtime_version; /**< "0.3.0" */
    /** Writes a log line of the runtime's log tagged with the plugin's name. */
    void (*log)(const par_plugin_host_t *h, int level, const char *msg);
    /** The entry's `config:` block as JSON text ("{}" when absent), NUL-
     *  terminated; *len (when not NULL) gets its length. Valid until fini. */
    const char *(*config)(const par_plugin_host_t *h, size_t *len);
    /** A directory private to this plugin (<state_dir>/plugins/<name>),
     *  created mode 0700 before init; kept across restarts. */
    const char *(*state_dir)(const par_plugin_host_t *h);
    /** The absolute path of the plugin's shared object, as configured (to
     *  find files installed beside it: a worker script). */
    const char *(*plugin_path)(const par_plugin_host_t *h);

    /* Loaders: building the worker command (par_loader_ops_t.command). */
    /** Appends one argument to the program's command line (the first is the
     *  program, an absolute path). 0, or PAR_E_NO_MEMORY. */
    int (*cmd_arg)(par_loader_cmd_t *c, const char *arg);
    /** Adds "NAME=value" to the program's environment (after the runtime's
     *  base and the package's own; a later NAME replaces an earlier one). */
    int (*cmd_env)(par_loader_cmd_t *c, const char *name_eq_value);
    /** Makes a directory readable inside the sandbox (par-worker --ro):
     *  the interpreter's installation, a dependency cache. */
    int (*cmd_ro)(par_loader_cmd_t *c, const char *dir);
    /** Sets a flag of the command (PAR_LOADER_CMD_*). */
    int (*cmd_flag)(par_loader_cmd_t *c, unsigned flag);

    /* Auth providers. */
    /** A request header by name (case-insensitive). 1 with *value set (valid
     *  during `authenticate` only), 0 when absent. Only inside `authenticate`. */
    int (*auth_header)(const par_auth_request_t *r, const char *name, par_slice_t *value);
    /** Delivers the answer of an `authenticate` call: exactly once per call,
     *  from any thread, during the call or after it returned. `res` and its
     *  strings are copied before this returns. Allowed until `fini`
     *  returns: a request still waiting at shutdown is answered 503 by the
     *  host, and a later completion of it is ignored. */
    void (*auth_complete)(par_auth_done_t *d, const par_auth_result_t *res);
};

/* ------------------------------------------------------------------------ */
/* The plugin table                                                          */

/** What a plugin returns from par_plugin_entry(). Static storage. */
struct par_plugin {
    uint32_t abi;  /**< PAR_PLUGIN_ABI the plugin was built against */
    uint32_t size; /**< sizeof(par_plugin_t) the plugin was built against */
    /** Unique among the loaded plugins, 1..64 of [a-z0-9_-]: log tag, state
     *  directory, `auth.mode: plugin:<name>`. */
    const char *name;
    const char *version; /**< the plugin's own version, shown in /runtime/info */
    /** Called once at start, before the runtime serves. Reads the
     *  configuration through host->config and keeps `host` for later. Returns
     *  0, or non-zero after writing why into err[cap]: the runtime then
     *  refuses to start with that message. `*state` is passed to every
     *  other call. */
    int (*init)(const par_plugin_host_t *host, void **state, char *err, size_t cap);
    /** Called once at shutdown, after every other call has returned and no
     *  new one can start (exporters flushed, deploys over). May be NULL. */
    void (*fini)(void *state);
    const par_loader_ops_t *loader;     /**< NULL when not a loader */
    const par_auth_ops_t *auth;         /**< NULL when not an auth provider */
    const par_exporter_ops_t *exporter; /**< NULL when not an exporter */
};

typedef const par_plugin_t *(*par_plugin_entry_fn)(void);

/* ------------------------------------------------------------------------ */
/* Loaders                                                                   */

/** One export of a package: `name` "" for the main one. */
typedef struct par_loader_export {
    const char *name;
    const char *entrypoint; /**< as written: "src/main.js:handler" */
} par_loader_export_t;

/** The package version a loader works on. Borrowed for one call. */
typedef struct par_loader_pkg {
    uint32_t size;       /**< sizeof(par_loader_pkg_t) of the host */
    const char *name;    /**< package name */
    const char *version; /**< package version */
    const char *runtime; /**< the manifest's `runtime`, one the loader serves */
    const char *root;    /**< the package's extracted files (read-only) */
    /** agent.yaml as one JSON object: every field, including those PAR does
     *  not interpret (`metadata`, `dependencies`, ...). */
    const char *manifest_json;
    size_t manifest_len;
    const par_loader_export_t *exports; /**< main first, then sub-agents */
    size_t export_count;
    const char *const *dependencies; /**< agent.yaml `dependencies`, NULL-terminated */
    /** A directory for this version's prepared files (installed
     *  dependencies): <plugin state>/cache/<name>@<version>, created before
     *  `prepare` and kept across deploys of the same version (a redeploy
     *  finds what an earlier prepare left). Not readable by the worker
     *  unless the command adds it with cmd_ro. */
    const char *cache_dir;
    /** The limits its workers run with (0: none). par-worker applies them
     *  (RLIMIT_AS, RLIMIT_CPU) unless the command says otherwise. */
    unsigned memory_mb, cpu_seconds;
    size_t max_input, max_output; /**< frame caps of the worker protocol */
} par_loader_pkg_t;

/** Command flags (host->cmd_flag). */
enum {
    /** The program enforces pkg->memory_mb itself (a heap limit): par-worker
     *  sets no address-space limit (runtimes that reserve large virtual
     *  ranges, such as V8, cannot start under RLIMIT_AS). */
    PAR_LOADER_CMD_OWN_MEMORY_LIMIT = 1u << 0,
};

struct par_loader_ops {
    uint32_t size; /**< sizeof(par_loader_ops_t) of the plugin */
    /** The manifest `runtime` values served, NULL-terminated ("node18",
     *  "node20", NULL). A value served by a built-in loader or by an earlier
     *  plugin refuses the start. */
    const char *const *runtimes;
    /** Checks a package at deploy (manifest fields, files, entrypoints).
     *  Returns 0, or a PAR status (PAR_E_INCOMPATIBLE: 422
     *  incompatible_package) after writing one line per reason into err[cap].
     *  Must not write anything. Deploy thread. May be NULL. */
    int (*validate)(void *state, const par_loader_pkg_t *pkg, char *err, size_t cap);
    /** Prepares a validated package: may write into pkg->cache_dir (install
     *  dependencies) and may block (it has the deploy thread). Returns 0, or
     *  a PAR status (PAR_E_DEPS_UNAVAILABLE, PAR_E_INCOMPATIBLE) with err.
     *  Deploy thread. May be NULL. */
    int (*prepare)(void *state, const par_loader_pkg_t *pkg, char *err, size_t cap);
    /** Gives the program par-worker execs (after it has put itself in the
     *  sandbox: docs/sandbox.md) through host->cmd_arg (program first),
     *  cmd_env, cmd_ro, cmd_flag. The package root, the worker's scratch
     *  directory and /usr are already readable; descriptor 3 is the protocol
     *  socket. After the loader's arguments the runtime appends the standard
     *  worker arguments, as the Python worker gets them: `--fd 3 --root DIR
     *  --max-input N --max-output N [--max-event N] --export NAME=ENTRYPOINT
     *  ...` (NAME "" for the main export). Returns 0 or a PAR status with err.
     *  Deploy thread, once per version (every worker of the version runs that
     *  command). */
    int (*command)(void *state, const par_loader_pkg_t *pkg, par_loader_cmd_t *cmd, char *err,
                   size_t cap);
    /** The version was dropped (unloaded, replaced, failed): on the thread
     *  that drops its last reference, possibly a worker-I/O thread, so it
     *  must not block. May be NULL. */
    void (*release)(void *state, const par_loader_pkg_t *pkg);
};

/* ------------------------------------------------------------------------ */
/* Auth providers                                                            */

/** What the host knows of a request, borrowed during `authenticate`. More
 *  headers through host->auth_header. */
typedef struct par_auth_info {
    uint32_t size;          /**< sizeof(par_auth_info_t) of the host */
    const char *request_id; /**< for log lines */
    /** The connection's peer: "10.1.2.3" or "2001:db8::1" (an IPv4-mapped
     *  address is given as IPv4); "" when not an IP connection (an embedding
     *  call, a Unix socket). */
    const char *peer_addr;
    par_slice_t authorization; /**< the Authorization header value, {NULL,0} when absent */
    par_slice_t api_key;       /**< the X-API-Key header value, {NULL,0} when absent */
    const char *method;        /**< "POST" */
    const char *path;          /**< "/agents/echo/invoke" (no query) */
} par_auth_info_t;

/** The answer of an auth provider. */
struct par_auth_result {
    uint32_t size; /**< sizeof(par_auth_result_t) of the plugin */
    /** 0 (PAR_OK): accepted; PAR_E_UNAUTHORIZED (401 unauthorized): no
     *  credential; PAR_E_INVALID_TOKEN (401 invalid_token): refused;
     *  PAR_E_AUTH_UNAVAILABLE (503): cannot decide now. */
    int status;
    const char *subject; /**< accepted: 1..255 bytes */
    const char *tenant;  /**< accepted: NULL or 1..255 bytes */
    /** Accepted: the permissions, NULL-terminated: permission strings
     *  ("agents:invoke", "runtime:admin", "agents:invoke:echo") or values
     *  granted through auth.permissions.grants (docs/authentication.md). */
    const char *const *permissions;
    /** Refused: the precise reason for the log line and
     *  par_auth_failures_total{reason="plugin"} (never sent to the client). */
    const char *reason;
};

struct par_auth_ops {
    uint32_t size; /**< sizeof(par_auth_ops_t) of the plugin */
    /** Authenticates one request: answers through host->auth_complete(done,
     *  …) exactly once, before returning or later from any thread (a
     *  provider that needs the network answers from its own thread). Never
     *  blocks: it may run on an event loop. Any thread, concurrently. */
    void (*authenticate)(void *state, const par_auth_info_t *info, const par_auth_request_t *req,
                         par_auth_done_t *done);
    /** Readiness (/health/ready): 1 when it can decide, else 0 with a reason
     *  in why[cap]. Any thread. May be NULL (always ready). */
    int (*ready)(void *state, char *why, size_t cap);
};

/* ------------------------------------------------------------------------ */
/* Telemetry exporters                                                       */

/** A finished invocation: one span of the request's trace. */
typedef struct par_span {
    const char *trace_id;       /**< 32 hex characters (or the request's own id shape) */
    const char *span_id;        /**< 16 hex characters */
    const char *parent_span_id; /**< the caller's span, "" for a root without traceparent */
    const char *agent_id;       /**< "echo/upper" as invoked */
    const char *package;        /**< "" when it never reached a package */
    const char *version;
    const char *request_id;
    const char *subject; /**< "" when unauthenticated */
    const char *tenant;  /**< "" when none */
    int status;          /**< a PAR status: 0 ok */
    const char *error;   /**< "" when ok, else the stable name ("agent_timeout") */
    int sub_call;        /**< 1 for a sub-agent call (its parent is a span of PAR) */
    int64_t start_unix_ns, end_unix_ns;
} par_span_t;

/** One usage record (what metering stores: docs/metering.md). */
typedef struct par_usage_record {
    const char *id;        /**< unique, 32 hex */
    const char *parent_id; /**< "" for a root invocation */
    const char *request_id;
    const char *trace_id;
    const char *span_id;
    const char *agent_id;
    const char *package;
    const char *version;
    const char *subject; /**< "" when unknown */
    const char *tenant;  /**< "" when unknown */
    const char *status;  /**< "ok" or the stable error name */
    const char *units;   /**< JSON object text ("{}" when none) */
    int64_t ts_unix_ms;
    double duration_ms;
    double cpu_ms; /**< < 0: unknown */
    int64_t bytes_in, bytes_out;
} par_usage_record_t;

/** Metric family types. */
enum {
    PAR_METRIC_UNTYPED = 0,
    PAR_METRIC_COUNTER = 1,
    PAR_METRIC_GAUGE = 2,
    PAR_METRIC_HISTOGRAM = 3
};

typedef struct par_metric_label {
    const char *key, *value;
} par_metric_label_t;

/** One sample of the Prometheus exposition, parsed. */
typedef struct par_metric_point {
    const char *family; /**< "par_invocation_duration_seconds" */
    const char *name;   /**< the sample: the family, or family + "_bucket"/"_sum"/"_count" */
    const char *help;
    int type;                         /**< PAR_METRIC_*, the family's */
    const par_metric_label_t *labels; /**< `le` of a bucket included */
    size_t label_count;
    double value;
} par_metric_point_t;

/** A metrics snapshot: what /metrics would answer now, as text and parsed. */
typedef struct par_metrics_snapshot {
    uint32_t size;         /**< sizeof(par_metrics_snapshot_t) of the host */
    int64_t time_unix_ns;  /**< when it was taken */
    int64_t start_unix_ns; /**< when the runtime started (counters count from it) */
    const char *text;      /**< Prometheus text exposition format 0.0.4 */
    size_t text_len;
    const par_metric_point_t *points;
    size_t point_count;
} par_metrics_snapshot_t;

struct par_exporter_ops {
    uint32_t size; /**< sizeof(par_exporter_ops_t) of the plugin */
    /** Every call below runs on this exporter's own thread of the host, one
     *  at a time, and may block (network I/O, retries): while it does,
     *  records queue up to the bounded queue's size and then are dropped and
     *  counted. Data is borrowed for the call. Each may be NULL (not wanted:
     *  then nothing of that kind is even recorded). */
    void (*spans)(void *state, const par_span_t *spans, size_t n);
    void (*usage)(void *state, const par_usage_record_t *records, size_t n);
    void (*metrics)(void *state, const par_metrics_snapshot_t *snapshot);
    /** Interval between metrics snapshots in ms (0: 10000). */
    uint32_t metrics_interval_ms;
    /** At shutdown, after the last batch: send what is buffered. May be NULL. */
    void (*flush)(void *state);
    /** Items (spans, usage records) the queue holds before it drops; read
     *  once, after init. 0: 8192. */
    uint32_t queue_max;
};

#ifdef __cplusplus
}
#endif
#endif
