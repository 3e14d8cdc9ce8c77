/*
 * runtime/converge.h — makes the active packages follow a desired set.
 *
 * Two sources name a desired set: the registry index (an https:// or s3://
 * JSON document polled every registry.index_poll_ms, converge_index.c) and
 * the packages folder (its .apkg files, watched with inotify, converge.c).
 * Both reduce to one pure decision, par__converge_diff(): desired entries +
 * the active set (+ the entries refused for good earlier) → which entries to
 * deploy, which refusals still stand, which active versions to remove. The
 * callers then run the plan through par__deploy() and par__runtime_remove().
 *
 * The index (`registry.index_url`) is a JSON document
 *   {"packages": [{"name", "version", "url", "sha256"?, "signature_url"?}]}
 * Every poll_ms the poller fetches it (ETag / If-None-Match) and converges:
 * deploys entries whose name is not active at that version and digest, and
 * removes packages it deployed earlier whose name left the index. A broken or
 * unreachable index changes nothing; it is logged, counted
 * (par_registry_poll_total{result}) and shown in /runtime/info "registry". A
 * bad entry is reported and skipped; the others converge. An entry refused
 * for a reason that retrying cannot fix (digest, signature, invalid package)
 * is not retried until the entry changes; fetch failures are retried at the
 * next poll.
 *
 * Threads: the index poller and the folder watcher each own one thread,
 * which is the only one that deploys from that source; par__deploy
 * serialises them. Neither runs on an event loop. Started by
 * par_runtime_new (index) and `par serve` (folder).
 */
#ifndef PAR_RUNTIME_CONVERGE_H
#define PAR_RUNTIME_CONVERGE_H

#include <stddef.h>

#include <jansson.h>

#include <par/par.h>

#include "util/buf.h"

/* ---- the decision (pure: no I/O, no runtime) ------------------------------------- */

/* One desired entry. */
typedef struct par_converge_want {
    const char *name;    /* package name; NULL when unknown before reading (a folder file) */
    const char *version; /* NULL: deploy whatever is active (a folder file that changed) */
    const char *sha256;  /* NULL: any digest is current */
    const char *key;     /* identity of the entry (failure memory, duplicates); required */
} par_converge_want_t;

/* One package version the runtime holds. */
typedef struct par_converge_have {
    const char *name, *version, *sha256;
    const char *source; /* path or URL it came from */
    const char *origin; /* "index", "dir", "api", ... */
    int active;         /* state ACTIVE (failed records and draining versions are not) */
} par_converge_have_t;

typedef struct par_converge_input {
    const par_converge_want_t *want;
    size_t nwant;
    const char *const *listed; /* names the source still names (index: every entry, valid or not) */
    size_t nlisted;
    const par_converge_have_t *have;
    size_t nhave;
    const char *const *refused; /* keys of entries refused for good at an earlier pass */
    size_t nrefused;
    /* removals by name: active versions deployed by this origin whose name is not
     * listed (NULL: none) */
    const char *origin;
    /* removals by source: active versions deployed from these (vanished) sources */
    const char *const *gone;
    size_t ngone;
} par_converge_input_t;

typedef struct par_converge_plan {
    size_t *deploy; /* indexes into want, in order */
    size_t ndeploy;
    size_t *kept_want,
        *kept_refused; /* want[kept_want[i]] stays refused as refused[kept_refused[i]] */
    size_t nkept;
    size_t *remove; /* indexes into have */
    size_t nremove;
} par_converge_plan_t;

/* Decides. An entry is current when an active version has its name, version
 * and (when given) digest; one whose key was refused for good is kept refused;
 * the others are deployed. When several entries name one package the last one
 * wins (entries without a name: the last with that key). PAR_OK or
 * PAR_E_NO_MEMORY (nothing allocated then). */
int par__converge_diff(const par_converge_input_t *in, par_converge_plan_t *out);
void par__converge_plan_free(par_converge_plan_t *p);

/* A refusal that retrying cannot fix (digest, signature, invalid package), as
 * opposed to a fetch failure or a lack of memory. */
int par__converge_permanent(int status);

/* ---- the packages folder ---------------------------------------------------------- */

typedef struct par_folder_watch par_folder_watch_t;

/* Deploys every .apkg of `dir` in name order (failures are logged and listed). */
void par__folder_deploy_all(par_runtime_t *rt, const char *dir);

/* Watches `dir`: a package written, renamed in or given a new signature or
 * digest file is (re)deployed; one removed is unloaded. NULL when the folder
 * cannot be watched (logged). */
par_folder_watch_t *par__folder_watch_start(par_runtime_t *rt, const char *dir);

/* Stops between two deploys, never inside one. NULL is a no-op. */
void par__folder_watch_stop(par_folder_watch_t *w);

/* ---- the registry index ---------------------------------------------------------- */

typedef struct par_index par_index_t;

int par__index_start(par_runtime_t *rt, const char *url, unsigned poll_ms, par_index_t **out);
void par__index_stop(par_index_t *ix);

/* 1 once the first poll finished (whatever its result). */
int par__index_settled(par_index_t *ix);

/* /runtime/info "registry": the index and its last poll, or JSON null when no
 * index is configured (new reference; NULL only when out of memory). */
json_t *par__runtime_registry_status(par_runtime_t *rt);

/* /metrics: par_index_generation_info{generation} and
 * par_index_applied_timestamp_seconds once a generation is applied; nothing
 * without an index. Any thread. */
void par__index_render_metrics(par_runtime_t *rt, par_buf_t *b);

#endif
