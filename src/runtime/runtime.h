/*
 * runtime/runtime.h — the runtime's internal surface: package versions, the
 * routing table snapshot, deploy and call.
 *
 * Owns: every loaded package version (refcounted: the routing table and each
 * in-flight call hold a reference, so a replaced version drains naturally),
 * the immutable routing table (swapped under a mutex; readers take a
 * reference), and the supervisor that runs workers.
 * Callers: http/ (event-loop threads), the embedding API (any thread), the
 * CLI. Deploy blocks and must not be called from an event-loop thread.
 */
#ifndef PAR_RUNTIME_RUNTIME_H
#define PAR_RUNTIME_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>

#include <par/par.h>

#include "obs/metrics.h"
#include "pkg/manifest.h"
#include "pkg/trust.h"
#include "runtime/call.h"
#include "util/buf.h"

typedef struct par_pool par_pool_t;
typedef struct par_super par_super_t;

typedef enum par_pkg_state {
    PAR_PKG_LOADING = 0,
    PAR_PKG_ACTIVE,
    PAR_PKG_DRAINING,
    PAR_PKG_FAILED,
} par_pkg_state_t;

const char *par_pkg_state_name(int state);

struct par_pkgver {
    atomic_int refs;
    par_runtime_t *rt;
    par_manifest_t *manifest; /* NULL only for a failed record without one */
    char *name;
    char *version;
    char *root;          /* directory the package runs from */
    char *source;        /* the path or URL it was deployed from */
    char *signature_url; /* an explicit signature URL given at deploy, or NULL */
    char *origin;        /* who deployed it: "api", "dir", "index", "embed", "restored" */
    char signer[17];     /* minisign key id that signed it, "" when unsigned */
    char sha256[65];     /* "" for a directory */
    par_isolation_t isolation;
    _Atomic int state;
    char *last_error;
    int last_status; /* PAR status of the last failure (HTTP 422 family), 0 if none */
    uint64_t seq;    /* deploy order */
    double t_read_ms, t_verify_ms, t_extract_ms, t_load_ms; /* read = fetch */
    int64_t loaded_at_ms;                                   /* wall clock */
    int64_t drain_until_ms;     /* monotonic: when a replaced version is unloaded at the latest */
    int64_t run_drain_until_ms; /* the same while runs are in flight on it (reload.run_drain_ms) */
    uint32_t timeout_ms;
    size_t max_input;
    char *python_site; /* Python packages with requirements: their venv's site-packages */
    const struct par_loader_impl *loader;  /* set at compat (runtime/loaders.h) */
    struct par_loader_cmd_out *loader_cmd; /* a plugin loader's worker program, or NULL */
    void *loader_state;                    /* the loader's own, per version */
    /* isolation = worker */
    par_pool_t *pool;
    /* isolation = in-process */
    void **dl_handles;
    size_t dl_count;
    par_agent_fn *fns;             /* per export */
    par_export_metrics_t *metrics; /* per export */
    /* automatic rollback: the version this one replaced, and its first calls */
    char *prev_source, *prev_version;
    char prev_sha256[65];
    atomic_uint probe_total, probe_errors;
    atomic_int rolled_back;
};

typedef struct par_route {
    char *id;
    par_pkgver_t *pv;
    size_t export_idx;
} par_route_t;

typedef struct par_table {
    atomic_int refs;
    size_t count;
    par_route_t *routes; /* sorted by id */
} par_table_t;

struct par_runtime {
    par_config_t cfg; /* strings owned */
    char *state_dir;
    char *cache_dir;
    char *worker_path;
    char *sandbox_user, *sandbox_group; /* owned copies of cfg strings */
    long worker_uid, worker_gid;        /* workers switch to these; -1 when not root */
    char **trusted;
    pthread_mutex_t lock; /* pkgs, table pointer, deploy serialisation */
    pthread_mutex_t deploy_lock;
    par_table_t *table;
    par_pkgver_t **pkgs; /* every known version, newest last */
    size_t npkgs;
    uint64_t seq;
    par_super_t *super;
    _Atomic int draining;
    _Atomic int booting;       /* set by the server until the initial package set is loaded */
    _Atomic int shutting_down; /* readiness fails; calls are still served until draining */
    atomic_long inflight;      /* calls started and not yet finished */
    atomic_int ndraining;      /* versions in the draining state */
    int64_t started_ms;
    par_trust_t trust;
    char *ca_file, *s3_region, *s3_endpoint, *index_url; /* owned copies of cfg strings */
    struct par_index *index;                             /* registry index poller, or NULL */
    char *python, *python_shim, *wheelhouse;             /* owned copies of cfg strings */
    char **env_allow;
    int py_major, py_minor; /* the interpreter's version, probed at the first Python deploy */
    /* in-process calls run on this executor so loop threads never block */
    struct par_executor *exec;
    /* usage metering (metering/meter.h), or NULL; set before serving */
    struct par_meter *meter;
    /* runs (runtime/runs.h): opened with the runtime, closed at its destroy */
    struct par_runs *runs;
    /* this node in a fleet (runtime/fleet.h), or NULL; set before serving by
     * `par serve`, freed by it after the server stopped */
    struct par_fleet *fleet;
    /* what /metrics renders (runtime/metrics.c) */
    struct par_metrics_registry *metrics;
    /* the loader registry (runtime/loaders.h): registered before the first deploy */
    const struct par_loader_impl **loaders;
    size_t nloaders;
    /* the telemetry-exporter registry (runtime/exporters.h) after its
     * built-in entries; npush of them take finished calls: one branch per
     * call when none does */
    const struct par_exporter_impl **exporters;
    size_t nexporters, npush;
    /* calls answered through the embedding API, by status (runtime/embed_call.c) */
    atomic_ulong inprocess_calls[PAR_STATUS_COUNT];
    void *data;
};

void par__pkgver_ref(par_pkgver_t *pv);
void par__pkgver_unref(par_pkgver_t *pv);

/* Returns a referenced snapshot of the routing table; release with _unref. */
par_table_t *par__table_get(par_runtime_t *rt);
void par__table_unref(par_table_t *t);
const par_route_t *par__table_find(const par_table_t *t, const char *id, size_t len);

/* Starts a call (see call.h). Any thread; never blocks on agent code. */
int par__call_start(par_runtime_t *rt, par_call_t *c);

/* What to deploy. Exactly one of path, url, restored_dir. */
typedef struct par_deploy_req {
    const char *path;          /* an .apkg file or an unpacked package directory */
    const char *url;           /* https://, s3://bucket/key (http:// when allowed) */
    const char *sha256;        /* expected digest, or NULL: {source}.sha256 when present */
    const char *signature_url; /* or NULL: {source}.minisig when present */
    const char *origin;        /* "api" when NULL */
    const char *restored_dir;  /* a verified cache entry: no fetch, no verification */
    const char *restored_source, *restored_signer;
} par_deploy_req_t;

/* Deploys; `err` receives every reason on failure. Blocking. On success and
 * when `out` is not NULL, *out is the new version (referenced). */
int par__deploy(par_runtime_t *rt, const par_deploy_req_t *req, par_buf_t *err, par_pkgver_t **out);

/* par__deploy of a path with origin "api". */
int par__deploy_path(par_runtime_t *rt, const char *path, par_buf_t *err, par_pkgver_t **out);

/* The same, for a package restored from the cache: `path` is its extracted
 * directory, `source` and `sha256` what it was originally deployed from. */
int par__deploy_restored(par_runtime_t *rt, const char *path, const char *source,
                         const char *sha256, par_buf_t *err);

/* Writes the set of active versions to state_dir/deployed.json (write, fsync,
 * rename), so that a restart brings back the same set from the cache. */
void par__runtime_persist(par_runtime_t *rt);

/* Redeploys what deployed.json lists, from the cache, without fetching.
 * Returns the number of packages restored. */
int par__runtime_recover(par_runtime_t *rt);

/* Starts a call and waits for it on the calling thread; returns its status. */
int par__call_sync(par_runtime_t *rt, par_call_t *c);

/* The embedding API's shared steps (embed_call.c; embed_stream.c uses them):
 * fill a call from par_call_opts_t (PAR_OK, or the error with its message in
 * c->output), count an answered in-process call, and make a call's answer
 * (output, or the error body) a par_result_t. */
int par__embed_fill_call(par_call_t *c, const par_call_opts_t *o);
void par__embed_count(par_runtime_t *rt, int status);
void par__embed_result(par_call_t *c, par_result_t *out);

/* Makes a loaded (or failed) version visible, replacing older ones of its name. */
void par__runtime_publish(par_runtime_t *rt, par_pkgver_t *pv);

/* Removes every version of `name` (or only `version` when not NULL) from the
 * routing table; in-flight calls finish on the versions they hold. Returns
 * PAR_E_NOT_FOUND when nothing matched. */
int par__runtime_remove(par_runtime_t *rt, const char *name, const char *version);

/* Finds the newest version of `name` (referenced; unref it), or NULL. */
par_pkgver_t *par__runtime_find(par_runtime_t *rt, const char *name);

/* Unloads draining versions that are idle or past their drain deadline.
 * Called by the supervisor thread every few milliseconds. */
void par__runtime_tick(par_runtime_t *rt, int64_t now_ms);

/* Counts a finished call towards its version's rollback judgement (call.c). */
void par__rollback_observe(par_pkgver_t *pv, int status);

/* Snapshot of package versions for listings (referenced; release each). */
int par__packages_snapshot(par_runtime_t *rt, par_pkgver_t ***out, size_t *count);

/* Readiness: not draining, every deployed package active or failed. */
int par__runtime_ready(par_runtime_t *rt, par_buf_t *why);

/* Built-in defaults for every config field that was left 0/NULL. */
void par__config_defaults(par_config_t *cfg);

/* SIGHUP: takes the limits that may change while serving from `cfg`
 * (default timeout, input cap, concurrency, queue, memory, CPU, reload drain,
 * and the runs' timeout, per-subject limit, cancel grace and drain),
 * under deploy_lock; later deploys and calls see them. Main thread. */
void par__runtime_reload_limits(par_runtime_t *rt, const par_config_t *cfg);

/* On an HTTP loop thread that runs the supervisor's I/O: while corked, calls
 * for in-process packages and frames for workers are collected and handed
 * over together by par__runtime_uncork() at the end of each turn. The cork
 * state is one thread-local flag, loader/wire.h's. */
void par__runtime_cork(int on);
void par__runtime_uncork(par_runtime_t *rt);

#endif
