/*
 * plugins/otlp/plugin.c — the OTLP exporter as a PAR plugin (include/par/plugin.h).
 *
 * init reads and checks the `config:` block (otlp_config_parse: a mistake
 * refuses PAR's start) and starts the exporter. The host's exporter thread
 * calls `spans` and `metrics`: spans are encoded from the borrowed records
 * straight into the exporter's waiting batch (no copy of their own), a
 * snapshot becomes OTLP Metric objects and is queued — a mutex, never
 * network I/O, so the host's queue never
 * backs up behind a slow collector. `flush` (at shutdown) sends what is
 * queued within shutdown_ms; `fini` frees.
 *
 * Threads: init/fini on the host's main thread; spans, metrics and flush on
 * the host's exporter thread, one at a time; the sender thread (exporter.c).
 */
#include "otlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include <par/agent.h>
#include <par/plugin.h>

#define PLUGIN_VERSION "1.0.0"

typedef struct otlp_plugin {
    const par_plugin_host_t *host;
    otlp_exporter_t *x;
    bool spans, metrics;
} otlp_plugin_t;

static void host_log(void *ud, const char *level, const char *msg)
{
    const par_plugin_host_t *h = ud;
    int l = strcmp(level, "error") == 0  ? PAR_LOG_ERROR
            : strcmp(level, "warn") == 0 ? PAR_LOG_WARN
                                         : PAR_LOG_INFO;
    h->log(h, l, msg);
}

static const char *or_null(const char *s)
{
    return s && *s ? s : NULL;
}

/* A span as the exporter takes it, its strings borrowed from `s`; `attrs`
 * (15 entries) holds the attributes. */
static void span_in(const par_span_t *s, const char **attrs, otlp_span_in_t *in)
{
    const char *a[] = {
        "par.agent",         or_null(s->agent_id),   "par.package",
        or_null(s->package), "par.version",          or_null(s->version),
        "par.request_id",    or_null(s->request_id), "enduser.id",
        or_null(s->subject), "par.tenant",           or_null(s->tenant),
        "par.error",         or_null(s->error),      NULL,
    };
    memcpy(attrs, a, sizeof(a));
    *in = (otlp_span_in_t){
        .trace_id = s->trace_id,
        .span_id = s->span_id,
        .parent_id = s->parent_span_id,
        .name = s->agent_id,
        .error = s->status != 0 ? (or_null(s->error) ? s->error : "error") : NULL,
        .sub_call = s->sub_call != 0,
        .keep_trace_id = true, /* one of another shape is hashed: par.trace_id keeps it */
        .start_ns = s->start_unix_ns > 0 ? (uint64_t)s->start_unix_ns : 0,
        .end_ns = s->end_unix_ns > 0 ? (uint64_t)s->end_unix_ns : 0,
        .attrs = attrs,
    };
}

/* The host's spans, encoded by the exporter straight into its waiting batch:
 * the host's copy is the only one. */
static void on_spans(void *state, const par_span_t *spans, size_t n)
{
    otlp_plugin_t *p = state;
    if (!p->spans || !p->x)
        return;
    enum { CHUNK = 64 };
    otlp_span_in_t in[CHUNK];
    const char *attrs[CHUNK][15];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < CHUNK && i < n; k++, i++)
            span_in(&spans[i], attrs[k], &in[k]);
        otlp_exporter_spans_in(p->x, in, k); /* one lock for the chunk */
    }
}

static void on_metrics(void *state, const par_metrics_snapshot_t *snap)
{
    otlp_plugin_t *p = state;
    if (!p->metrics || !p->x)
        return;
    json_t *m =
        otlp_metrics_from_points(snap->points, snap->point_count, (uint64_t)snap->start_unix_ns,
                                 (uint64_t)snap->time_unix_ns);
    if (m)
        otlp_exporter_metrics(p->x, m);
}

static void on_flush(void *state)
{
    otlp_plugin_t *p = state;
    otlp_exporter_stop(p->x); /* sends what is queued, within shutdown_ms */
    p->x = NULL;
}

static par_exporter_ops_t exporter_ops = {
    .size = sizeof(par_exporter_ops_t),
    .spans = on_spans,
    .metrics = on_metrics,
    .metrics_interval_ms = 10000,
    .flush = on_flush,
};

static int start(const par_plugin_host_t *host, void **state, char *err, size_t cap)
{
    otlp_config_t cfg;
    json_error_t je;
    const char *text = host->config(host, NULL);
    json_t *conf = json_loads(text ? text : "{}", JSON_REJECT_DUPLICATES, &je);
    if (!conf) {
        snprintf(err, cap, "config: not JSON: %s", je.text);
        return -1;
    }
    int rc = otlp_config_parse(conf, &cfg, err, cap);
    json_decref(conf);
    if (rc != 0)
        return -1;
    otlp_plugin_t *p = calloc(1, sizeof(*p));
    char instance[300];
    char hostname[256] = "";
    gethostname(hostname, sizeof(hostname) - 1);
    snprintf(instance, sizeof(instance), "%s:%ld", hostname, (long)getpid());
    json_t *resource = otlp_resource_new(&cfg, host->runtime_version, instance);
    if (!p || !resource) {
        free(p);
        json_decref(resource);
        otlp_config_free(&cfg);
        snprintf(err, cap, "out of memory");
        return -1;
    }
    p->host = host;
    p->spans = cfg.spans;
    p->metrics = cfg.metrics;
    /* read by the host after init, when it starts this exporter's thread */
    exporter_ops.metrics_interval_ms = cfg.metrics_interval_ms;
    exporter_ops.spans = cfg.spans ? on_spans : NULL;
    exporter_ops.metrics = cfg.metrics ? on_metrics : NULL;
    p->x = otlp_exporter_start(&cfg, resource, host->runtime_version, host_log, (void *)host, err,
                               cap);
    if (!p->x) {
        free(p);
        return -1;
    }
    *state = p;
    return 0;
}

static int plugin_init(const par_plugin_host_t *host, void **state, char *err, size_t cap)
{
    /* reference-counted (and thread-safe in libcurl >= 7.84); undone in fini */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, cap, "libcurl failed to initialise");
        return -1;
    }
    int rc = start(host, state, err, cap);
    if (rc != 0)
        curl_global_cleanup();
    return rc;
}

static void plugin_fini(void *state)
{
    otlp_plugin_t *p = state;
    if (!p)
        return;
    otlp_exporter_stop(p->x);
    free(p);
    curl_global_cleanup();
}

static const par_plugin_t plugin = {
    .abi = PAR_PLUGIN_ABI,
    .size = sizeof(par_plugin_t),
    .name = "otlp",
    .version = PLUGIN_VERSION,
    .init = plugin_init,
    .fini = plugin_fini,
    .exporter = &exporter_ops,
};

__attribute__((visibility("default"))) const par_plugin_t *par_plugin_entry(void);
const par_plugin_t *par_plugin_entry(void)
{
    return &plugin;
}
