/*
 * config/config.h — the configuration of `par serve`: one descriptor table.
 *
 * Owns every configuration key: its YAML path, environment variable, flag,
 * type (with range or choices), default, whether SIGHUP may change it and a
 * one-line help. The YAML file, PAR_* variables, flags, `par serve --help`,
 * `par config show|check|docs`, the SIGHUP comparison and docs/configuration.md
 * all come from PAR_CONF_KEYS below, so a key cannot exist in one and not in
 * another. Precedence: default < file < environment < flag.
 *
 * Every mistake is refused with where it is (file:line, variable or flag),
 * the key's path, what was expected, and the nearest known key. Every path is
 * made absolute when it is read: against the file's directory for the file,
 * against the current directory for flags, variables and defaults
 * (util/path.h), so nothing depends on the current directory afterwards.
 *
 * Threads: a par_conf_t belongs to one thread (the main thread of `par
 * serve`, at start and on SIGHUP). Never starts anything: config/apply.c
 * turns a loaded configuration into the structs of the runtime, HTTP, auth
 * and metering modules.
 */
#ifndef PAR_CONFIG_CONFIG_H
#define PAR_CONFIG_CONFIG_H

#include <stdio.h>

#include <jansson.h>

#include "util/buf.h"

typedef enum par_conf_type {
    PAR_CT_BOOL,
    PAR_CT_INT,     /* whole number in [min, max] */
    PAR_CT_MS,      /* duration, milliseconds (also 500ms, 30s, 5m, 1h) */
    PAR_CT_SEC,     /* duration, seconds (also 5m, 1h) */
    PAR_CT_KB,      /* size, KiB (also 64MiB, 1GiB) */
    PAR_CT_MB,      /* size, MiB (also 2GiB) */
    PAR_CT_ENUM,    /* one of `choices` ("a|b|c"; "p:*" is p: and a name) */
    PAR_CT_STR,     /* text */
    PAR_CT_PATH,    /* file or directory, made absolute */
    PAR_CT_CMD,     /* a program: made absolute when it holds a '/', else looked up in PATH */
    PAR_CT_LIST,    /* list of strings (comma- or space-separated in a variable or flag) */
    PAR_CT_MAP,     /* mapping of names to strings */
    PAR_CT_KEYS,    /* trust.keys: minisign keys or {key|file, packages} */
    PAR_CT_APIKEYS, /* auth.api_keys: {sha256, subject, tenant, permissions} */
    PAR_CT_GRANTS,  /* auth.permissions.grants: claim value → permissions */
    PAR_CT_PLUGINS, /* plugins: [{path, config}] */
} par_conf_type_t;

enum {
    PAR_CF_RELOAD = 1,   /* SIGHUP may change it */
    PAR_CF_SECRET = 2,   /* never printed */
    PAR_CF_REQUIRED = 4, /* may not be empty or null */
    PAR_CF_APPEND = 8, /* a variable or flag adds to the file's entries instead of replacing them */
};

/* X(ID, "yaml.path", "ENV" | NULL, "--flag" | NULL, type, min, max, "choices" | NULL,
 *   "default" | NULL, flags, "help") */
#define PAR_CONF_KEYS(X)                                                                           \
    X(LISTEN, "listen", "PAR_LISTEN", "--listen", PAR_CT_STR, 0, 0, NULL, "127.0.0.1:8080",        \
      PAR_CF_REQUIRED,                                                                             \
      "IP:PORT to listen on (\"[::1]:8080\", \":8080\"; no host names; port 0 = any free)")        \
    X(PACKAGES, "packages", "PAR_PACKAGES", "--packages", PAR_CT_PATH, 0, 0, NULL, "./packages",   \
      PAR_CF_REQUIRED, "folder of .apkg files deployed at start and watched")                      \
    X(STATE_DIR, "state_dir", "PAR_STATE_DIR", "--state-dir", PAR_CT_PATH, 0, 0, NULL, "./var",    \
      PAR_CF_REQUIRED, "cache, scratch directories, deployed.json, usage.db")                      \
    X(PLUGINS, "plugins", NULL, NULL, PAR_CT_PLUGINS, 0, 0, NULL, NULL, 0,                         \
      "extension plugins loaded at start: {path (a shared object), config} (docs/extensions.md)")  \
    X(ISOLATION, "isolation", "PAR_ISOLATION", NULL, PAR_CT_ENUM, 0, 0, "worker|in-process",       \
      "worker", 0, "where every package runs; in-process is for trusted code only")                \
    X(TRUSTED, "trusted", "PAR_TRUSTED", "--trusted", PAR_CT_LIST, 0, 0, NULL, NULL, 0,            \
      "package names run in the runtime process ('*' = all)")                                      \
    X(HTTP_THREADS, "http.threads", "PAR_HTTP_THREADS", "--http-threads", PAR_CT_INT, 1, 64, NULL, \
      "1", 0, "event-loop threads")                                                                \
    X(HTTP_HTTP2, "http.http2", "PAR_HTTP_HTTP2", NULL, PAR_CT_BOOL, 0, 0, NULL, "false", 0,       \
      "accept HTTP/2 (h2c, and h2 by ALPN with TLS)")                                              \
    X(HTTP_CORS_ORIGINS, "http.cors.origins", "PAR_HTTP_CORS_ORIGINS", NULL, PAR_CT_LIST, 0, 0,    \
      NULL, NULL, 0,                                                                               \
      "origins (https://app.example.com) whose pages may call the invoke and runs routes; "        \
      "unset = none")                                                                              \
    X(HTTP_CORS_CREDENTIALS, "http.cors.credentials", "PAR_HTTP_CORS_CREDENTIALS", NULL,           \
      PAR_CT_BOOL, 0, 0, NULL, "false", 0,                                                         \
      "let those pages send cookies and Authorization (Access-Control-Allow-Credentials)")         \
    X(HTTP_REUSE_PORT, "http.reuse_port", "PAR_HTTP_REUSE_PORT", NULL, PAR_CT_BOOL, 0, 0, NULL,    \
      "false", 0,                                                                                  \
      "SO_REUSEPORT: a second server on the same address shares its connections instead of "       \
      "failing")                                                                                   \
    X(TLS_CERT, "tls.cert", "PAR_TLS_CERT", "--tls-cert", PAR_CT_PATH, 0, 0, NULL, NULL, 0,        \
      "PEM certificate chain; unset = plain HTTP. SIGHUP re-reads the file")                       \
    X(TLS_KEY, "tls.key", "PAR_TLS_KEY", "--tls-key", PAR_CT_PATH, 0, 0, NULL, NULL, 0,            \
      "PEM private key of tls.cert. SIGHUP re-reads the file")                                     \
    X(TLS_CLIENT_CA, "tls.client_ca", "PAR_TLS_CLIENT_CA", NULL, PAR_CT_PATH, 0, 0, NULL, NULL, 0, \
      "require client certificates signed by these CAs (PEM). SIGHUP re-reads the file")           \
    X(LOG_LEVEL, "log.level", "PAR_LOG_LEVEL", "--log-level", PAR_CT_ENUM, 0, 0,                   \
      "debug|info|warn|error", "info", PAR_CF_RELOAD, "least severe level written")                \
    X(LOG_FORMAT, "log.format", "PAR_LOG_FORMAT", "--log-format", PAR_CT_ENUM, 0, 0, "json|text",  \
      "json", PAR_CF_RELOAD, "one JSON object per line, or text")                                  \
    X(LOG_ACCESS, "log.access", "PAR_LOG_ACCESS", NULL, PAR_CT_BOOL, 0, 0, NULL, "true",           \
      PAR_CF_RELOAD, "one log line per request")                                                   \
    X(WORKERS_MIN, "workers.min", "PAR_WORKERS_MIN", NULL, PAR_CT_INT, 1, 1024, NULL, "1", 0,      \
      "worker processes per package version, at least")                                            \
    X(WORKERS_MAX, "workers.max", "PAR_WORKERS_MAX", NULL, PAR_CT_INT, 0, 1024, NULL, "0", 0,      \
      "worker processes per package version, at most (0 = the number of cores)")                   \
    X(LIMITS_TIMEOUT, "limits.timeout_ms", "PAR_TIMEOUT_MS", NULL, PAR_CT_MS, 1, 300000, NULL,     \
      "30000", PAR_CF_RELOAD, "default deadline of one invocation")                                \
    X(LIMITS_MAX_INPUT, "limits.max_input_kb", "PAR_MAX_INPUT_KB", NULL, PAR_CT_KB, 1, 1048576,    \
      NULL, "1024", PAR_CF_RELOAD, "default cap on an invocation's input")                         \
    X(LIMITS_CONCURRENCY, "limits.concurrency", "PAR_DEFAULT_CONCURRENCY", NULL, PAR_CT_INT, 0,    \
      1000000, NULL, "0", PAR_CF_RELOAD,                                                           \
      "calls a package version runs at once when it sets none (0 = no limit)")                     \
    X(LIMITS_QUEUE, "limits.queue", "PAR_MAX_QUEUE", NULL, PAR_CT_INT, 1, 1000000, NULL, "100",    \
      PAR_CF_RELOAD, "calls waiting for a slot per package version; beyond: 429")                  \
    X(LIMITS_MEMORY, "limits.memory_mb", "PAR_MEMORY_MB", NULL, PAR_CT_MB, 0, 1048576, NULL, "0",  \
      PAR_CF_RELOAD, "worker address-space limit when a package sets none (0 = none)")             \
    X(LIMITS_CPU, "limits.worker_cpu_seconds", "PAR_WORKER_CPU_SECONDS", NULL, PAR_CT_SEC, 0,      \
      604800, NULL, "0", PAR_CF_RELOAD, "CPU time a worker may use in its life (0 = none)")        \
    X(LIMITS_MAX_IN_FLIGHT, "limits.max_in_flight", "PAR_MAX_IN_FLIGHT", NULL, PAR_CT_INT, 1,      \
      10000000, NULL, "1024", 0,                                                                   \
      "invocations accepted and not yet answered, runtime-wide; beyond: 503 over_capacity")        \
    X(LIMITS_SCRATCH, "limits.scratch_mb", "PAR_SCRATCH_MB", NULL, PAR_CT_MB, 1, 1048576, NULL,    \
      "1024", 0, "quota of a worker's scratch directory")                                          \
    X(LIMITS_CALL_DEPTH, "limits.max_call_depth", "PAR_MAX_CALL_DEPTH", NULL, PAR_CT_INT, 1, 256,  \
      NULL, "16", 0, "longest chain of sub-agent calls; beyond: 508 call_depth_exceeded")          \
    X(LIMITS_RUN_TIMEOUT, "limits.run_timeout_ms", "PAR_RUN_TIMEOUT_MS", NULL, PAR_CT_MS, 0,       \
      2592000000, NULL, "3600000", PAR_CF_RELOAD, "deadline of one run (0 = none)")                \
    X(RUNS_PER_SUBJECT, "limits.runs_per_subject", "PAR_RUNS_PER_SUBJECT", NULL, PAR_CT_INT, 0,    \
      1000000, NULL, "100", PAR_CF_RELOAD,                                                         \
      "runs in flight per caller (0 = no limit); beyond: 429 too_many_runs")                       \
    X(RUNS_MEMORY_EVENTS, "runs.memory_events", "PAR_RUNS_MEMORY_EVENTS", NULL, PAR_CT_INT, 16,    \
      1000000, NULL, "1000", 0,                                                                    \
      "a run's newest events kept in memory; older ones are read from disk")                       \
    X(RUNS_RETENTION, "runs.retention", "PAR_RUNS_RETENTION", NULL, PAR_CT_SEC, 1, 31536000, NULL, \
      "86400", 0, "how long an ended run and its events are kept (resumable)")                     \
    X(RUNS_HEARTBEAT, "runs.heartbeat_ms", "PAR_RUNS_HEARTBEAT_MS", NULL, PAR_CT_MS, 100, 3600000, \
      NULL, "15000", PAR_CF_RELOAD, "a \": keep-alive\" line on a silent event stream this often") \
    X(RUNS_CANCEL_GRACE, "runs.cancel_grace_ms", "PAR_RUNS_CANCEL_GRACE_MS", NULL, PAR_CT_MS, 100, \
      3600000, NULL, "5000", PAR_CF_RELOAD,                                                        \
      "a worker still running a cancelled run after this is killed and replaced")                  \
    X(RUNS_MAX_EVENT, "runs.max_event_kb", "PAR_RUNS_MAX_EVENT_KB", NULL, PAR_CT_KB, 1, 16384,     \
      NULL, "1024", 0, "cap on one event an agent emits; beyond: invalid_agent_event")             \
    X(SHUTDOWN_GRACE, "shutdown.grace_ms", "PAR_SHUTDOWN_GRACE_MS", "--shutdown-grace-ms",         \
      PAR_CT_MS, 0, 3600000, NULL, "0", 0,                                                         \
      "after SIGTERM, keep serving this long with readiness failing")                              \
    X(SHUTDOWN_DRAIN, "shutdown.drain_ms", "PAR_SHUTDOWN_DRAIN_MS", "--shutdown-drain-ms",         \
      PAR_CT_MS, 0, 3600000, NULL, "30000", 0, "then wait this long for requests in flight")       \
    X(RELOAD_DRAIN, "reload.drain_ms", "PAR_RELOAD_DRAIN_MS", NULL, PAR_CT_MS, 1, 3600000, NULL,   \
      "30000", PAR_CF_RELOAD, "how long a replaced version may finish its calls")                  \
    X(RELOAD_RUN_DRAIN, "reload.run_drain_ms", "PAR_RELOAD_RUN_DRAIN_MS", NULL, PAR_CT_MS, 0,      \
      2592000000, NULL, "3600000", PAR_CF_RELOAD,                                                  \
      "how long a replaced version keeps running its runs; then they end interrupted")             \
    X(ROLLBACK_REQUESTS, "reload.rollback.requests", "PAR_ROLLBACK_REQUESTS", NULL, PAR_CT_INT, 0, \
      1000000, NULL, "0", 0, "judge a new version on its first N calls (0 = no rollback)")         \
    X(ROLLBACK_PCT, "reload.rollback.error_rate_percent", "PAR_ROLLBACK_ERROR_RATE_PERCENT", NULL, \
      PAR_CT_INT, 1, 100, NULL, "50", 0, "roll back when this share of them failed with 5xx")      \
    X(TRUST_REQUIRE, "trust.require_signatures", "PAR_REQUIRE_SIGNATURES", "--require-signatures", \
      PAR_CT_BOOL, 0, 0, NULL, NULL, 0,                                                            \
      "refuse unsigned packages (unset: true with --config, false without)")                       \
    X(TRUST_KEYS, "trust.keys", "PAR_TRUSTED_KEYS", "--trusted-key", PAR_CT_KEYS, 0, 0, NULL,      \
      NULL, PAR_CF_APPEND,                                                                         \
      "minisign public keys (or .pub files) trusted to sign; {file|key, packages} pins names")     \
    X(REGISTRY_DIR, "registry.dir", "PAR_REGISTRY_DIR", NULL, PAR_CT_PATH, 0, 0, NULL, NULL, 0,    \
      "the packages folder (overrides packages)")                                                  \
    X(REGISTRY_INDEX, "registry.index_url", "PAR_REGISTRY_INDEX_URL", "--index-url", PAR_CT_STR,   \
      0, 0, NULL, NULL, 0, "registry index polled and converged to (https:// or s3://)")           \
    X(REGISTRY_POLL, "registry.poll_interval_ms", "PAR_REGISTRY_POLL_INTERVAL_MS", NULL,           \
      PAR_CT_MS, 100, 86400000, NULL, "30000", 0, "index poll interval")                           \
    X(REGISTRY_CA, "registry.ca_file", "PAR_REGISTRY_CA_FILE", "--ca-file", PAR_CT_PATH, 0, 0,     \
      NULL, NULL, 0, "trust anchors for https registries (PEM); unset = the system's")             \
    X(REGISTRY_CONNECT, "registry.connect_timeout_ms", "PAR_REGISTRY_CONNECT_TIMEOUT_MS", NULL,    \
      PAR_CT_MS, 1, 600000, NULL, "5000", 0, "connecting to a registry")                           \
    X(REGISTRY_TIMEOUT, "registry.timeout_ms", "PAR_REGISTRY_TIMEOUT_MS", NULL, PAR_CT_MS, 1,      \
      86400000, NULL, "120000", 0, "one whole download")                                           \
    X(REGISTRY_RETRIES, "registry.retries", "PAR_REGISTRY_RETRIES", NULL, PAR_CT_INT, 0, 100,      \
      NULL, "3", 0, "retries on 5xx, timeouts and resets")                                         \
    X(REGISTRY_MAX_DL, "registry.max_download_mb", "PAR_REGISTRY_MAX_DOWNLOAD_MB", NULL,           \
      PAR_CT_MB, 1, 1048576, NULL, "512", 0, "size cap of one download")                           \
    X(REGISTRY_ALLOW_HTTP, "registry.allow_http", "PAR_REGISTRY_ALLOW_HTTP", NULL, PAR_CT_BOOL, 0, \
      0, NULL, "false", 0, "accept plain http:// package URLs")                                    \
    X(S3_REGION, "registry.s3.region", "PAR_S3_REGION", NULL, PAR_CT_STR, 0, 0, NULL, "us-east-1", \
      0, "S3 region")                                                                              \
    X(S3_ENDPOINT, "registry.s3.endpoint", "PAR_S3_ENDPOINT", NULL, PAR_CT_STR, 0, 0, NULL, NULL,  \
      0, "S3-compatible endpoint URL; unset = AWS")                                                \
    X(S3_PATH_STYLE, "registry.s3.path_style", "PAR_S3_PATH_STYLE", NULL, PAR_CT_BOOL, 0, 0, NULL, \
      "false", 0, "bucket in the path, not the host name")                                         \
    X(CACHE_MAX, "cache.max_mb", "PAR_CACHE_MAX_MB", NULL, PAR_CT_MB, 0, 1073741824LL, NULL, "0",  \
      0, "extracted-package cache cap, LRU of unloaded packages (0 = none)")                       \
    X(SANDBOX_USER, "sandbox.user", "PAR_SANDBOX_USER", "--sandbox-user", PAR_CT_STR, 0, 0, NULL,  \
      NULL, 0, "workers' user when par runs as root (name or number; unset = nobody)")             \
    X(SANDBOX_GROUP, "sandbox.group", "PAR_SANDBOX_GROUP", "--sandbox-group", PAR_CT_STR, 0, 0,    \
      NULL, NULL, 0, "workers' group (unset = the user's group)")                                  \
    X(SANDBOX_FILES, "sandbox.max_files", "PAR_SANDBOX_MAX_FILES", NULL, PAR_CT_INT, 16, 1048576,  \
      NULL, "1024", 0, "RLIMIT_NOFILE of a worker")                                                \
    X(SANDBOX_PROCS, "sandbox.max_processes", "PAR_SANDBOX_MAX_PROCESSES", NULL, PAR_CT_INT, 1,    \
      4194304, NULL, "1024", 0, "RLIMIT_NPROC of the workers' user")                               \
    X(PYTHON, "python.interpreter", "PAR_PYTHON", NULL, PAR_CT_CMD, 0, 0, NULL,                    \
      "/usr/bin/python3", 0, "Python interpreter of Python agents")                                \
    X(WHEELHOUSE, "python.wheelhouse", "PAR_WHEELHOUSE", NULL, PAR_CT_PATH, 0, 0, NULL, NULL, 0,   \
      "directory of wheels requirements install from (unset = none)")                              \
    X(PIP_TIMEOUT, "python.pip_timeout_ms", "PAR_PIP_TIMEOUT_MS", NULL, PAR_CT_MS, 1000, 86400000, \
      NULL, "300000", 0, "installing one package's requirements")                                  \
    X(ENV_ALLOW, "env.allow", "PAR_ENV_ALLOW", NULL, PAR_CT_LIST, 0, 0, NULL, NULL, 0,             \
      "names a package's ${NAME} may expand from the runtime's environment")                       \
    X(METERING, "metering.enabled", "PAR_METERING_ENABLED", NULL, PAR_CT_BOOL, 0, 0, NULL,         \
      "false", 0, "write one usage record per invocation")                                         \
    X(METERING_PATH, "metering.path", "PAR_METERING_PATH", NULL, PAR_CT_PATH, 0, 0, NULL, NULL, 0, \
      "usage database (unset = <state_dir>/usage.db)")                                             \
    X(METERING_SYNC, "metering.sync", "PAR_METERING_SYNC", NULL, PAR_CT_ENUM, 0, 0, "normal|full", \
      "normal", 0, "full: survive power loss too (an fsync per batch)")                            \
    X(METERING_DURABILITY, "metering.durability", "PAR_METERING_DURABILITY", NULL, PAR_CT_ENUM, 0, \
      0, "answered|async", "answered", 0,                                                          \
      "answered: an answer leaves after its record is in the WAL; async: at once (kill -9 loses "  \
      "what is queued)")                                                                           \
    X(METERING_QUEUE, "metering.queue", "PAR_METERING_QUEUE", NULL, PAR_CT_INT, 1, 16777216, NULL, \
      "65536", 0, "records waiting for the writer")                                                \
    X(METERING_NODE_ID, "metering.node_id", "PAR_METERING_NODE_ID", NULL, PAR_CT_STR, 0, 0, NULL,  \
      NULL, 0,                                                                                     \
      "this node in window identifiers (unset = <hostname>-<8 hex of state_dir's SHA-256>)")       \
    X(METERING_SINK, "metering.sink", "PAR_METERING_SINK", NULL, PAR_CT_ENUM, 0, 0,                \
      "sqlite|postgres", "sqlite", 0,                                                              \
      "postgres: the local database is an outbox shipped to fleet.postgres (docs/fleet.md); "     \
      "needs metering.enabled: true")                                                              \
    X(METERING_SHIP_BATCH, "metering.ship_batch", "PAR_METERING_SHIP_BATCH", NULL, PAR_CT_INT, 1,  \
      3000, NULL, "1000", 0,                                                                       \
      "records per transaction shipped to PostgreSQL (metering.sink: postgres)")                   \
    X(METERING_RETENTION, "metering.retention", "PAR_METERING_RETENTION", NULL, PAR_CT_SEC, 1,     \
      1000000000, NULL, "2592000", 0, "exported records are deleted after (30 days)")              \
    X(METERING_ROLLUP_RETENTION, "metering.rollup_retention", "PAR_METERING_ROLLUP_RETENTION",     \
      NULL, PAR_CT_SEC, 1, 1000000000, NULL, "34560000", 0, "hourly rollups are kept (400 days)")  \
    X(STRIPE_API_KEY, "metering.stripe.api_key", NULL, NULL, PAR_CT_STR, 0, 0, NULL, NULL,         \
      PAR_CF_SECRET, "Stripe secret key (prefer api_key_file or api_key_env); enables the export") \
    X(STRIPE_API_KEY_FILE, "metering.stripe.api_key_file", NULL, NULL, PAR_CT_PATH, 0, 0, NULL,    \
      NULL, 0, "file whose first line is the Stripe key")                                          \
    X(STRIPE_API_KEY_ENV, "metering.stripe.api_key_env", NULL, NULL, PAR_CT_STR, 0, 0, NULL, NULL, \
      0, "environment variable holding the Stripe key")                                            \
    X(STRIPE_ENDPOINT, "metering.stripe.endpoint", NULL, NULL, PAR_CT_STR, 0, 0, NULL, NULL, 0,    \
      "Stripe API base URL (unset = https://api.stripe.com)")                                      \
    X(STRIPE_EVENT, "metering.stripe.event_name", NULL, NULL, PAR_CT_STR, 0, 0, NULL, NULL, 0,     \
      "meter event name (unset = par_invocation)")                                                 \
    X(STRIPE_EVENTS, "metering.stripe.event_names", NULL, NULL, PAR_CT_MAP, 0, 0, NULL, NULL, 0,   \
      "agent id → meter event name")                                                               \
    X(STRIPE_CUSTOMER_FIELD, "metering.stripe.customer_field", NULL, NULL, PAR_CT_ENUM, 0, 0,      \
      "tenant|subject", "tenant", 0, "record field naming the customer")                           \
    X(STRIPE_CUSTOMERS, "metering.stripe.customers", NULL, NULL, PAR_CT_MAP, 0, 0, NULL, NULL, 0,  \
      "customer field value → Stripe customer id (unset: the value itself)")                       \
    X(STRIPE_VALUE, "metering.stripe.value", NULL, NULL, PAR_CT_STR, 0, 0, NULL, "1", 0,           \
      "1, units.<name>, duration_ms, cpu_ms, bytes_in or bytes_out")                               \
    X(STRIPE_BILL_FAILED, "metering.stripe.bill_failed", NULL, NULL, PAR_CT_BOOL, 0, 0, NULL,      \
      "false", 0, "also export invocations that failed")                                           \
    X(STRIPE_CA, "metering.stripe.ca_file", NULL, NULL, PAR_CT_PATH, 0, 0, NULL, NULL, 0,          \
      "trust anchors for the Stripe endpoint (PEM)")                                               \
    X(STRIPE_ALLOW_HTTP, "metering.stripe.allow_http", NULL, NULL, PAR_CT_BOOL, 0, 0, NULL,        \
      "false", 0, "accept a plain http:// endpoint (local tests)")                                 \
    X(STRIPE_TIMEOUT, "metering.stripe.timeout_ms", NULL, NULL, PAR_CT_MS, 100, 600000, NULL,      \
      "10000", 0, "one request to Stripe")                                                         \
    X(STRIPE_BACKOFF_MIN, "metering.stripe.backoff_min_ms", NULL, NULL, PAR_CT_MS, 1, 3600000,     \
      NULL, "200", 0, "first retry delay")                                                         \
    X(STRIPE_BACKOFF_MAX, "metering.stripe.backoff_max_ms", NULL, NULL, PAR_CT_MS, 1, 3600000,     \
      NULL, "30000", 0, "longest retry delay")                                                     \
    X(STRIPE_CONCURRENCY, "metering.stripe.concurrency", NULL, NULL, PAR_CT_INT, 1, 64, NULL, "8", \
      0, "meter event requests in flight")                                                         \
    X(STRIPE_AGGREGATE, "metering.stripe.aggregate.enabled", NULL, NULL, PAR_CT_BOOL, 0, 0, NULL,  \
      "true", 0, "one event per (customer, event, window); `aggregate: off` = one per record")     \
    X(STRIPE_WINDOW, "metering.stripe.aggregate.window", NULL, NULL, PAR_CT_MS, 1000, 86400000,    \
      NULL, "60000", 0, "aggregation window")                                                      \
    X(STRIPE_GRACE, "metering.stripe.aggregate.grace", NULL, NULL, PAR_CT_MS, 0, 86400000, NULL,   \
      "30000", 0, "a window is sent this long after it ends")                                      \
    X(FLEET_POSTGRES, "fleet.postgres", "PAR_FLEET_POSTGRES", NULL, PAR_CT_STR, 0, 0, NULL, NULL,  \
      PAR_CF_SECRET,                                                                               \
      "PostgreSQL the fleet shares (libpq conninfo or postgresql:// URL; unset = one node)")       \
    X(FLEET_ADVERTISE, "fleet.advertise_url", "PAR_FLEET_ADVERTISE_URL", NULL, PAR_CT_STR, 0, 0,   \
      NULL, NULL, 0, "http://HOST:PORT other nodes reach this one at (unset = http://<listen>)")   \
    X(FLEET_HEARTBEAT, "fleet.heartbeat_ms", "PAR_FLEET_HEARTBEAT_MS", NULL, PAR_CT_MS, 100,       \
      60000, NULL, "2000", 0, "how often a node writes its heartbeat to fleet.postgres")           \
    X(FLEET_DEAD_AFTER, "fleet.dead_after_ms", "PAR_FLEET_DEAD_AFTER_MS", NULL, PAR_CT_MS, 500,    \
      3600000, NULL, "10000", 0,                                                                   \
      "a node whose heartbeat is older is dead: its runs read interrupted (at least 2 "            \
      "heartbeats)")                                                                               \
    X(AUTH_MODE, "auth.mode", "PAR_AUTH_MODE", "--auth-mode", PAR_CT_ENUM, 0, 0,                   \
      "off|oidc|api_key|plugin:*", NULL, 0,                                                        \
      "off, oidc, api_key or plugin:<name> (a plugin's provider); required with a configuration "  \
      "file (off without one)")                                                                    \
    X(AUTH_OPEN_PATHS, "auth.open_paths", "PAR_AUTH_OPEN_PATHS", NULL, PAR_CT_LIST, 0, 0, NULL,    \
      "/runtime/health,/runtime/ready", 0,                                                         \
      "routes served without credentials (/runtime/health, /runtime/ready, /runtime/info, "        \
      "/metrics)")                                                                                 \
    X(AUTH_SUBJECT_CLAIM, "auth.subject_claim", "PAR_AUTH_SUBJECT_CLAIM", NULL, PAR_CT_STR, 0, 0,  \
      NULL, "sub", 0, "claim naming the caller")                                                   \
    X(AUTH_TENANT_CLAIM, "auth.tenant_claim", "PAR_AUTH_TENANT_CLAIM", NULL, PAR_CT_STR, 0, 0,     \
      NULL, NULL, 0, "claim naming the caller's tenant (unset = none)")                            \
    X(AUTH_TOKEN_CACHE, "auth.token_cache_entries", "PAR_AUTH_TOKEN_CACHE_ENTRIES", NULL,          \
      PAR_CT_INT, 64, 4194304, NULL, "4096", 0, "verified tokens remembered")                      \
    X(AUTH_PERM_CLAIMS, "auth.permissions.claims", "PAR_AUTH_PERMISSIONS_CLAIMS", NULL,            \
      PAR_CT_LIST, 0, 0, NULL, NULL, 0, "claims holding permissions (docs/auth.md)")               \
    X(AUTH_PERM_GRANTS, "auth.permissions.grants", NULL, NULL, PAR_CT_GRANTS, 0, 0, NULL, NULL, 0, \
      "claim value → list of permissions")                                                         \
    X(AUTH_API_KEYS, "auth.api_keys", NULL, NULL, PAR_CT_APIKEYS, 0, 0, NULL, NULL, 0,             \
      "static keys: {sha256, subject, tenant, permissions}")                                       \
    X(OIDC_ISSUER, "auth.oidc.issuer", "PAR_AUTH_OIDC_ISSUER", NULL, PAR_CT_STR, 0, 0, NULL, NULL, \
      0, "exact iss; discovery at {issuer}/.well-known/openid-configuration")                      \
    X(OIDC_AUDIENCE, "auth.oidc.audience", "PAR_AUTH_OIDC_AUDIENCE", NULL, PAR_CT_STR, 0, 0, NULL, \
      NULL, 0, "aud must contain it")                                                              \
    X(OIDC_JWKS_URI, "auth.oidc.jwks_uri", "PAR_AUTH_OIDC_JWKS_URI", NULL, PAR_CT_STR, 0, 0, NULL, \
      NULL, 0, "skips discovery when set")                                                         \
    X(OIDC_CA, "auth.oidc.ca_file", "PAR_AUTH_OIDC_CA_FILE", NULL, PAR_CT_PATH, 0, 0, NULL, NULL,  \
      0, "CA bundle for the issuer's TLS (unset = the system's)")                                  \
    X(OIDC_ALGS, "auth.oidc.algorithms", "PAR_AUTH_OIDC_ALGORITHMS", NULL, PAR_CT_LIST, 0, 0,      \
      NULL, NULL, 0, "accepted signature algorithms (unset = RS256, PS256, ES256, EdDSA…)")        \
    X(OIDC_LEEWAY, "auth.oidc.leeway_s", "PAR_AUTH_OIDC_LEEWAY_S", NULL, PAR_CT_SEC, 0, 600, NULL, \
      "60", 0, "clock skew allowed on exp and nbf")                                                \
    X(OIDC_MAX_TOKEN, "auth.oidc.max_token_bytes", "PAR_AUTH_OIDC_MAX_TOKEN_BYTES", NULL,          \
      PAR_CT_INT, 1024, 65536, NULL, "16384", 0, "longest token accepted")                         \
    X(OIDC_FETCH_TIMEOUT, "auth.oidc.fetch_timeout_ms", "PAR_AUTH_OIDC_FETCH_TIMEOUT_MS", NULL,    \
      PAR_CT_MS, 100, 60000, NULL, "5000", 0, "fetching discovery and JWKS")                       \
    X(OIDC_CACHE_MIN, "auth.oidc.jwks_cache_min_s", "PAR_AUTH_OIDC_JWKS_CACHE_MIN_S", NULL,        \
      PAR_CT_SEC, 1, 86400, NULL, "60", 0, "floor on the JWKS Cache-Control max-age")              \
    X(OIDC_CACHE_MAX, "auth.oidc.jwks_cache_max_s", "PAR_AUTH_OIDC_JWKS_CACHE_MAX_S", NULL,        \
      PAR_CT_SEC, 1, 604800, NULL, "86400", 0, "ceiling on it")                                    \
    X(OIDC_CACHE_DEFAULT, "auth.oidc.jwks_cache_default_s", "PAR_AUTH_OIDC_JWKS_CACHE_DEFAULT_S",  \
      NULL, PAR_CT_SEC, 1, 604800, NULL, "3600", 0, "when the JWKS response says nothing")         \
    X(OIDC_KID_REFRESH, "auth.oidc.unknown_kid_refresh_s", "PAR_AUTH_OIDC_UNKNOWN_KID_REFRESH_S",  \
      NULL, PAR_CT_SEC, 1, 86400, NULL, "10", 0, "at most one unknown-kid refresh per this")       \
    X(OIDC_RETRY_MAX, "auth.oidc.retry_max_s", "PAR_AUTH_OIDC_RETRY_MAX_S", NULL, PAR_CT_SEC, 1,   \
      3600, NULL, "30", 0, "backoff ceiling after a failed fetch")                                 \
    X(OIDC_ALLOW_HTTP, "auth.oidc.allow_http", "PAR_AUTH_OIDC_ALLOW_HTTP", NULL, PAR_CT_BOOL, 0,   \
      0, NULL, "false", 0, "plain-HTTP issuer (loopback tests only)")

typedef enum par_conf_id {
#define PAR_CONF_ID(id, ...) PAR_K_##id,
    PAR_CONF_KEYS(PAR_CONF_ID)
#undef PAR_CONF_ID
        PAR_K_COUNT
} par_conf_id_t;

typedef struct par_conf_key {
    const char *path, *env, *flag;
    par_conf_type_t type;
    long long min, max;
    const char *choices, *def;
    unsigned flags;
    const char *help;
} par_conf_key_t;

/** The table, PAR_K_COUNT entries in PAR_CONF_KEYS order. */
extern const par_conf_key_t par_conf_keys[PAR_K_COUNT];

typedef enum par_conf_source {
    PAR_CS_DEFAULT,
    PAR_CS_FILE,
    PAR_CS_ENV,
    PAR_CS_FLAG
} par_conf_source_t;

typedef struct par_conf_value {
    json_t *v; /* NULL: unset; integers in the key's unit, paths absolute */
    par_conf_source_t src;
    char origin[160]; /* "par.yaml:12", "PAR_LISTEN", "--listen" */
} par_conf_value_t;

typedef struct par_conf {
    par_conf_value_t v[PAR_K_COUNT];
    char *file; /* absolute path of the configuration file, or NULL */
} par_conf_t;

/** Defaults only. */
void par_conf_init(par_conf_t *c);
void par_conf_free(par_conf_t *c);

/** Reads one YAML file over what `c` holds. Appends every mistake (one line
 *  each: "FILE:LINE: key: what is wrong") to `err` and returns
 *  PAR_E_INVALID_ARGUMENT when there is any. */
int par_conf_load_file(par_conf_t *c, const char *file, par_buf_t *err);

/** The same for a file's contents already in memory; `file` names it (and its
 *  directory is the base of relative paths). */
int par_conf_load_text(par_conf_t *c, const char *file, const char *data, size_t len,
                       par_buf_t *err);

/** Applies the PAR_* variables of the table. */
int par_conf_load_env(par_conf_t *c, par_buf_t *err);

/** Applies flags (argv[0] is the subcommand; `--config FILE` is skipped). */
int par_conf_load_flags(par_conf_t *c, int argc, char **argv, par_buf_t *err);

/** The whole thing for `par serve`: defaults, `--config FILE`, variables, flags. */
int par_conf_build(par_conf_t *c, int argc, char **argv, par_buf_t *err);

/** Sets one key from text, as a variable or flag would (`origin` names where). */
int par_conf_set(par_conf_t *c, par_conf_id_t id, const char *text, par_conf_source_t src,
                 const char *origin, par_buf_t *err);

/** The key whose YAML path is `path`, or -1. */
int par_conf_find(const char *path);

/** Accessors; NULL / 0 when unset. */
const char *par_conf_str(const par_conf_t *c, par_conf_id_t id);
long long par_conf_int(const par_conf_t *c, par_conf_id_t id);
int par_conf_bool(const par_conf_t *c, par_conf_id_t id, int unset);

/** Whether the two configurations hold the same value for `id`. */
int par_conf_same(const par_conf_t *a, const par_conf_t *b, par_conf_id_t id);

/** The value as text for show and logs ("(unset)", "(secret)" for secrets). Malloc'd. */
char *par_conf_text(const par_conf_t *c, par_conf_id_t id);

/** `par config show`: every key, its value and where it came from. */
void par_conf_show(const par_conf_t *c, FILE *f);
/** `par serve --help`: the flags and variables. */
void par_conf_usage(FILE *f);
/** `par config docs`: docs/configuration.md. */
void par_conf_docs(FILE *f);

/** Nearest of `known` to `word` (within two edits, or `word` a prefix of it), or NULL.
 *  A local stand-in for the shared suggester. */
const char *par__conf_suggest(const char *word, const char *const *known, size_t n);

#endif
