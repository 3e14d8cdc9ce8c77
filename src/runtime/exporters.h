/*
 * runtime/exporters.h — the telemetry-exporter registry: where the runtime's
 * metrics and finished calls leave the process.
 *
 * Two kinds of entry. A scrape entry is pulled: it renders the runtime's
 * metrics registry when asked; the built-in "prometheus" entry is the
 * registry's first entry (static, always there) and GET /metrics, the
 * embedding API's par_runtime_metrics and the metrics snapshots handed to
 * exporter plugins all reach the renderer through it. A push entry receives
 * every finished call (`finished`); a plugin's exporter (plugin/export.c) is
 * added as "plugin:<name>" after the built-in entries.
 *
 * Registration before the first deploy and the first request (par serve's
 * main thread); lookups from any thread, without a lock: the registry never
 * changes while the runtime serves. `finished` runs on the thread that
 * finishes a call and must only copy and queue, never block or allocate
 * unboundedly; calls without a push entry pay one branch.
 */
#ifndef PAR_RUNTIME_EXPORTERS_H
#define PAR_RUNTIME_EXPORTERS_H

#include "runtime/runtime.h"
#include "util/buf.h"

typedef struct par_exporter_impl par_exporter_impl_t;
struct par_exporter_impl {
    const char *name; /* "prometheus", "plugin:otlp" */
    /* scrape entries: renders the runtime's metrics into `out` (in
     * `content_type`); PAR_OK or the first collector's error. NULL for push. */
    int (*scrape)(const par_exporter_impl_t *e, par_runtime_t *rt, par_buf_t *out);
    const char *content_type;
    /* push entries: a finished call (see above). NULL for scrape entries. */
    void (*finished)(const par_exporter_impl_t *e, const par_call_t *c);
    void *data;
};

/* Adds an entry after those registered (not owned). PAR_E_CONFLICT with
 * `err` when the name is taken; PAR_E_NO_MEMORY. */
int par__exporters_add(par_runtime_t *rt, const par_exporter_impl_t *e, par_buf_t *err);
/* The entry named `name`, or NULL. */
const par_exporter_impl_t *par__exporters_find(par_runtime_t *rt, const char *name);
/* The first scrape entry ("prometheus"): what /metrics answers with. */
const par_exporter_impl_t *par__exporters_scrape(par_runtime_t *rt);
/* Hands a finished call to every push entry (rt->npush > 0). */
void par__exporters_finished(par_runtime_t *rt, const par_call_t *c);
/* Appends every entry's name, comma-separated ("prometheus, plugin:otlp"). */
void par__exporters_names(par_runtime_t *rt, par_buf_t *out);
size_t par__exporters_count(par_runtime_t *rt);
const par_exporter_impl_t *par__exporters_at(par_runtime_t *rt, size_t i);
void par__exporters_free(par_runtime_t *rt);

#endif
