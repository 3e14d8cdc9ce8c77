/*
 * plugins/otlp/otlp.h — the OpenTelemetry exporter plugin's internal parts.
 *
 * The plugin sends PAR's finished spans and metrics snapshots to an
 * OpenTelemetry collector over OTLP/HTTP with the JSON encoding
 * (POST {endpoint}/v1/traces and {endpoint}/v1/metrics). Its parts:
 *   config.c   the plugin's `config:` block, checked at start (loud errors);
 *   encode.c   OTLP JSON: ExportTraceServiceRequest, ExportMetricsServiceRequest;
 *   http.c     one POST with libcurl, and what its answer means (retry or not);
 *   exporter.c the bounded queue, the sender thread, batching, retries, counters;
 *   plugin.c   the glue to PAR's plugin ABI (include/par/plugin.h).
 *
 * Threads: the host's exporter thread hands spans and snapshots in
 * (otlp_exporter_spans_in encodes spans into the waiting batch under a
 * mutex, otlp_exporter_metrics queues a snapshot; never a wait for the
 * network); the plugin's own sender thread closes batches and sends.
 * Nothing here ever runs on a request path.
 *
 * The plugin links libcurl and jansson itself: PAR's internals are hidden
 * symbols, and the lazy dlopen of util/curl.h buys nothing in a module that
 * is only loaded when an operator configured it.
 */
#ifndef PAR_PLUGIN_OTLP_H
#define PAR_PLUGIN_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- configuration (config.c) ---------------------------------------------------------- */

typedef struct otlp_config {
    char *endpoint;       /* base URL, no trailing slash */
    char *traces_url;     /* endpoint + "/v1/traces" */
    char *metrics_url;    /* endpoint + "/v1/metrics" */
    char *service_name;   /* resource service.name, default "par" */
    json_t *resource;     /* extra resource attributes: object of strings (owned) */
    char **headers;       /* "Name: value" lines, NULL-terminated (owned) */
    char *ca_file;        /* extra trust anchors, or NULL */
    uint32_t timeout_ms;  /* one POST, connect included */
    uint32_t flush_ms;    /* a partial batch waits at most this long */
    uint32_t batch_size;  /* spans per request */
    uint32_t queue_size;  /* spans waiting; more are dropped and counted */
    uint32_t max_retries; /* per request, after the first attempt */
    uint32_t backoff_min_ms;
    uint32_t backoff_max_ms;      /* also caps a Retry-After */
    uint32_t shutdown_ms;         /* the last flush at stop */
    uint32_t metrics_interval_ms; /* between snapshots (the host takes them) */
    bool spans;
    bool metrics;
} otlp_config_t;

/* Reads the plugin's `config:` object (NULL: every default, which fails:
 * `endpoint` is required). 0, or -1 with a message naming the key in err. */
int otlp_config_parse(const json_t *conf, otlp_config_t *out, char *err, size_t errlen);
void otlp_config_free(otlp_config_t *c);

/* ---- what is exported ------------------------------------------------------------------ */

#define OTLP_SPAN_KIND_INTERNAL 1
#define OTLP_SPAN_KIND_SERVER 2
#define OTLP_STATUS_UNSET 0
#define OTLP_STATUS_OK 1
#define OTLP_STATUS_ERROR 2

/* A finished span, one allocation (otlp_span_new): the strings live behind it. */
typedef struct otlp_span {
    char trace_id[33];       /* 32 lowercase hex */
    char span_id[17];        /* 16 lowercase hex */
    char parent_span_id[17]; /* "" for a root */
    int kind;                /* OTLP_SPAN_KIND_* */
    int status;              /* OTLP_STATUS_* */
    uint64_t start_ns, end_ns;
    const char *name;    /* the agent id */
    const char *error;   /* the stable error name, or NULL */
    const char *attrs[]; /* key, value, key, value, ..., NULL */
} otlp_span_t;

/* What the glue knows of a span; strings are copied. */
typedef struct otlp_span_in {
    const char *trace_id;  /* any text: 32 hex is kept, anything else is hashed */
    const char *span_id;   /* 16 hex, or NULL/"" for a fresh one */
    const char *parent_id; /* 16 hex, or NULL/"" for none */
    const char *name;
    const char *error;  /* NULL: ok */
    bool sub_call;      /* a sub-agent call: kind INTERNAL, else SERVER */
    bool keep_trace_id; /* a trace id that is hashed is kept as attribute par.trace_id */
    uint64_t start_ns, end_ns;
    const char *const *attrs; /* key, value, ..., NULL (values NULL are skipped), or NULL */
} otlp_span_in_t;

/* NULL when out of memory. Free with free(). */
otlp_span_t *otlp_span_new(const otlp_span_in_t *in);

/* Room for a span that borrows its strings: the ids are checked and copied
 * into it, the other strings are the caller's, live while the view is used. */
typedef union otlp_span_view {
    otlp_span_t s;
    char room[sizeof(otlp_span_t) + 32 * sizeof(char *)];
} otlp_span_view_t;

/* `in` as a span in `v` without an allocation: what otlp_span_new makes, its
 * strings borrowed. NULL when `in` has more attributes than `v` holds. */
const otlp_span_t *otlp_span_view(const otlp_span_in_t *in, otlp_span_view_t *v);

/* ---- OTLP JSON (encode.c) -------------------------------------------------------------- */

/* The resource of every request: service.name, the configured attributes and
 * what the host says of itself (version, instance). NULL: out of memory. */
json_t *otlp_resource_new(const otlp_config_t *c, const char *service_version,
                          const char *instance_id);

/* {"key": k, "value": {"stringValue": v}} appended to array `attrs`. 0 or -1. */
int otlp_attr_add(json_t *attrs, const char *key, const char *value);

/* A growing output buffer the exporter keeps between batches. */
typedef struct otlp_buf {
    char *p;
    size_t len, cap;
    bool oom;
} otlp_buf_t;

/* The body of POST /v1/traces for spans[0..n) into `b` (emptied first, its
 * memory reused); `resource_json` is the resource, encoded. 0, or -1 out of
 * memory. (traces.c) */
int otlp_encode_traces_into(otlp_buf_t *b, const char *resource_json, otlp_span_t *const *spans,
                            size_t n, const char *scope_version);
/* The pieces of that body, for a buffer spans are encoded into as they come:
 * the head (resource, scope, up to the spans' '['), one span, and the tail
 * after the last span. Each appends; -1 (b->oom) out of memory. */
int otlp_encode_traces_head(otlp_buf_t *b, const char *resource_json, const char *scope_version);
int otlp_encode_span(otlp_buf_t *b, const otlp_span_t *s);
int otlp_encode_traces_tail(otlp_buf_t *b);
/* Appends n bytes and keeps a NUL after them; -1 (b->oom) out of memory. */
int otlp_buf_add(otlp_buf_t *b, const char *s, size_t n);
/* The same in a buffer of its own. NULL: out of memory. */
char *otlp_encode_traces(const json_t *resource, otlp_span_t *const *spans, size_t n,
                         const char *scope_version, size_t *len);

/* The body of POST /v1/metrics for `metrics` (an array of OTLP Metric objects
 * built with the functions below). NULL: out of memory. */
char *otlp_encode_metrics(const json_t *resource, const json_t *metrics, const char *scope_version,
                          size_t *len);

/* A Metric object of kind sum (cumulative), gauge or histogram (cumulative),
 * with an empty dataPoints array. NULL: out of memory. */
json_t *otlp_metric_new(const char *name, const char *description, const char *unit,
                        const char *kind, bool monotonic);
/* The Metric's dataPoints array. */
json_t *otlp_metric_points(json_t *metric);

/* A NumberDataPoint appended to `points`; attrs (key, value, ..., NULL) may be NULL. */
int otlp_point_number(json_t *points, const char *const *attrs, uint64_t start_ns, uint64_t time_ns,
                      bool is_int, int64_t ivalue, double dvalue);
/* A HistogramDataPoint: `cumulative[i]` is the count of observations ≤
 * bounds[i] (Prometheus style; i < nbounds), `count` the total (the +Inf
 * bucket). OTLP wants per-bucket counts: converted here. */
int otlp_point_histogram(json_t *points, const char *const *attrs, uint64_t start_ns,
                         uint64_t time_ns, const double *bounds, const uint64_t *cumulative,
                         size_t nbounds, uint64_t count, double sum);

/* PAR's metrics snapshot (par_metric_point_t of include/par/plugin.h, one
 * family's samples next to each other as in the exposition) as an array of
 * OTLP Metric objects: counters → cumulative monotonic sums, gauges and
 * untyped → gauges, histograms (_bucket/_sum/_count) → cumulative histograms.
 * Names are PAR's Prometheus names. NULL: out of memory. (metrics.c) */
struct par_metric_point;
json_t *otlp_metrics_from_points(const struct par_metric_point *points, size_t n, uint64_t start_ns,
                                 uint64_t time_ns);

/* ---- one POST (http.c) ----------------------------------------------------------------- */

typedef enum { OTLP_SENT, OTLP_RETRY, OTLP_REFUSED } otlp_outcome_t;

typedef struct otlp_post_result {
    otlp_outcome_t outcome;
    long http_status;       /* 0: no answer (transport error) */
    int64_t retry_after_ms; /* from Retry-After, or -1 */
    char detail[256];       /* why, for the log */
} otlp_post_result_t;

typedef struct otlp_http otlp_http_t;

/* A reusable client (keeps its connection). NULL: out of memory or no libcurl. */
otlp_http_t *otlp_http_new(const otlp_config_t *c);
void otlp_http_free(otlp_http_t *h);
/* POSTs body to url; `abort_flag`, when it becomes nonzero, ends a transfer early. */
void otlp_http_post(otlp_http_t *h, const char *url, const char *body, size_t len,
                    const volatile int *abort_flag, otlp_post_result_t *r);
/* Retry-After's value: seconds or an HTTP date, as milliseconds from now; -1 if neither. */
int64_t otlp_parse_retry_after(const char *v, int64_t now_s);

/* ---- the exporter (exporter.c) --------------------------------------------------------- */

typedef struct otlp_exporter otlp_exporter_t;

/* Log callback of the host (level: "info", "warn", "error"), may be NULL. */
typedef void (*otlp_log_fn)(void *ud, const char *level, const char *msg);

typedef struct otlp_counters {
    uint64_t spans_queued, spans_sent, spans_dropped; /* dropped: queue full, or refused */
    uint64_t snapshots_sent, snapshots_dropped;       /* dropped: superseded or refused */
    uint64_t requests, retries, failures;             /* failures: requests given up */
    uint64_t queue_len;
} otlp_counters_t;

/* Takes ownership of `cfg` and `resource`. Starts the sender thread. NULL with err. */
otlp_exporter_t *otlp_exporter_start(otlp_config_t *cfg, json_t *resource, const char *version,
                                     otlp_log_fn log, void *log_ud, char *err, size_t errlen);
/* Queues a span (takes ownership; freed when the queue is full; NULL: a span
 * that could not be copied, counted as dropped). Never blocks on I/O. */
void otlp_exporter_span(otlp_exporter_t *x, otlp_span_t *s);
/* Queues spans[0..n) under one lock, as otlp_exporter_span does one each
 * (NULL entries count as dropped). The array's entries are consumed. */
void otlp_exporter_spans(otlp_exporter_t *x, otlp_span_t **spans, size_t n);
/* Queues in[0..n) as otlp_exporter_spans does, without copying them first:
 * each is encoded straight into the waiting batch. */
void otlp_exporter_spans_in(otlp_exporter_t *x, const otlp_span_in_t *in, size_t n);
/* Is the span queue full (a span queued now would be dropped)? */
bool otlp_exporter_full(otlp_exporter_t *x);
/* Queues a metrics snapshot (array of Metric objects; takes the reference). An
 * unsent older snapshot is replaced: metrics are cumulative. */
void otlp_exporter_metrics(otlp_exporter_t *x, json_t *metrics);
/* Appends the exporter's own counters to a metrics array (par.otlp.*). */
int otlp_exporter_self_metrics(otlp_exporter_t *x, json_t *metrics, uint64_t start_ns,
                               uint64_t now_ns);
void otlp_exporter_counters(otlp_exporter_t *x, otlp_counters_t *out);
/* Flushes what is queued within cfg->shutdown_ms, stops the thread, frees. */
void otlp_exporter_stop(otlp_exporter_t *x);

uint64_t otlp_now_ns(void);

#endif
