/*
 * plugins/otlp/encode.c — OTLP's JSON encoding (opentelemetry-proto,
 * docs/specification.md "JSON Protobuf Encoding"): field names in lowerCamelCase,
 * trace and span ids as lowercase hex (not base64), 64-bit integers (times in
 * Unix nanoseconds, counts) as decimal strings, enums (span kind, status code,
 * aggregation temporality) as integers, attributes as
 * {"key": k, "value": {"stringValue": v}}.
 *
 * Pure functions over jansson values; any thread. Also builds the span copies
 * the exporter queues (otlp_span_new).
 */
#include "otlp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define SCOPE_NAME "par"
#define AGGREGATION_CUMULATIVE 2

/* ---- spans -------------------------------------------------------------------------------- */

/* A hex digit in lowercase, 0 for any other byte: one load per character. */
static const char lower_hex[256] = {
    ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4', ['5'] = '5',
    ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['a'] = 'a', ['b'] = 'b',
    ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['A'] = 'a', ['B'] = 'b',
    ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f',
};

/* True when the 8 bytes at s are all in [0-9a-f] (per byte, without a
 * carry between bytes: each is below 0x80 before the additions). */
static inline bool lower_hex8(const char *s)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t v;
    memcpy(&v, s, 8);
    if (v & high)
        return false;
    uint64_t digit = (v + (0x80 - '0') * ones) & ~(v + (0x80 - '9' - 1) * ones);
    uint64_t letter = (v + (0x80 - 'a') * ones) & ~(v + (0x80 - 'f' - 1) * ones);
    return ((digit | letter) & high) == high;
}

/* Copies an id of exactly n hex digits into dst[n + 1], in lowercase, in
 * the same pass that checks it. False (dst undefined) when src is not one,
 * or is all zeros (OTLP: an all-zero id is invalid). */
static bool hex_id(char *dst, const char *src, size_t n)
{
    if (!src)
        return false;
    /* the usual case, the runtime's own lowercase ids: 8 bytes a step
     * (strnlen first, so no step reads past a short id's NUL) */
    if (n % 8 == 0 && strnlen(src, n + 1) == n) {
        bool ok = true, nonzero = false;
        for (size_t i = 0; ok && i < n; i += 8) {
            ok = lower_hex8(src + i);
            nonzero |= memcmp(src + i, "00000000", 8) != 0;
        }
        if (ok) {
            memcpy(dst, src, n + 1);
            return nonzero;
        }
    }
    unsigned char nonzero = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = lower_hex[(unsigned char)src[i]];
        if (c == 0)
            return false; /* the NUL of a short id too */
        dst[i] = c;
        nonzero |= (unsigned char)(c != '0');
    }
    dst[n] = '\0';
    return src[n] == '\0' && nonzero;
}

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h ? h : 1;
}

/* A trace id PAR did not make (a body `trace_id` of another shape) is hashed
 * into 16 bytes, so every span of that trace still shares one OTLP id; the
 * original is kept as the attribute par.trace_id by the glue. */
static bool trace_id_of(const char *in, char out[33])
{
    if (hex_id(out, in, 32))
        return true;
    const char *s = in ? in : "";
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, fnv1a(s, 0xcbf29ce484222325ULL),
             fnv1a(s, 0x84222325cbf29ce4ULL));
    return false;
}

static void random_span_id(char out[17])
{
    uint64_t v = 0;
    while (v == 0 && getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        ;
    if (v == 0)
        v = 1;
    snprintf(out, 17, "%016" PRIx64, v);
}

#define LEN_CACHE 32 /* attribute strings whose lengths are measured once */

/* Copies n bytes of `src` and a NUL at p; returns where the next copy goes. */
static char *put(char *p, const char *src, size_t n)
{
    memcpy(p, src, n);
    p[n] = '\0';
    return p + n + 1;
}

otlp_span_t *otlp_span_new(const otlp_span_in_t *in)
{
    char trace_id[33];
    /* a trace id that had to be hashed is kept as par.trace_id when asked */
    bool keep = !trace_id_of(in->trace_id, trace_id) && in->keep_trace_id && in->trace_id;
    const char *name = in->name ? in->name : "";
    size_t name_len = strlen(name), error_len = in->error ? strlen(in->error) : 0;
    size_t nattrs = keep, bytes = name_len + 1 + (in->error ? error_len + 1 : 0);
    bytes += keep ? sizeof("par.trace_id") + strlen(in->trace_id) + 1 : 0;
    size_t len[LEN_CACHE], n = 0;
    for (const char *const *a = in->attrs; a && a[0]; a += 2, n++) {
        size_t k = strlen(a[0]), v = a[1] ? strlen(a[1]) : 0;
        if (n + 1 < LEN_CACHE)
            len[n] = k, len[n + 1] = v;
        n++;
        if (a[1])
            nattrs++, bytes += k + v + 2;
    }
    size_t head = sizeof(otlp_span_t) + (2 * nattrs + 1) * sizeof(char *);
    otlp_span_t *s = malloc(head + bytes);
    if (!s)
        return NULL;
    char *p = (char *)s + head;
    memcpy(s->trace_id, trace_id, sizeof(trace_id));
    if (!hex_id(s->span_id, in->span_id, 16))
        random_span_id(s->span_id);
    if (!hex_id(s->parent_span_id, in->parent_id, 16))
        s->parent_span_id[0] = '\0';
    s->kind = in->sub_call ? OTLP_SPAN_KIND_INTERNAL : OTLP_SPAN_KIND_SERVER;
    s->status = in->error ? OTLP_STATUS_ERROR : OTLP_STATUS_OK;
    s->start_ns = in->start_ns;
    s->end_ns = in->end_ns >= in->start_ns ? in->end_ns : in->start_ns;
    s->name = p;
    p = put(p, name, name_len);
    s->error = in->error ? p : NULL;
    if (in->error)
        p = put(p, in->error, error_len);
    size_t k = 0, i = 0;
    for (const char *const *a = in->attrs; a && a[0]; a += 2, i += 2) {
        if (!a[1])
            continue;
        s->attrs[k++] = p;
        p = put(p, a[0], i + 1 < LEN_CACHE ? len[i] : strlen(a[0]));
        s->attrs[k++] = p;
        p = put(p, a[1], i + 1 < LEN_CACHE ? len[i + 1] : strlen(a[1]));
    }
    if (keep) {
        s->attrs[k++] = p;
        p = put(p, "par.trace_id", sizeof("par.trace_id") - 1);
        s->attrs[k++] = p;
        p = put(p, in->trace_id, strlen(in->trace_id));
    }
    s->attrs[k] = NULL;
    return s;
}

const otlp_span_t *otlp_span_view(const otlp_span_in_t *in, otlp_span_view_t *v)
{
    otlp_span_t *s = &v->s;
    size_t max = (sizeof(*v) - sizeof(otlp_span_t)) / sizeof(char *);
    bool keep = !trace_id_of(in->trace_id, s->trace_id) && in->keep_trace_id && in->trace_id;
    if (!hex_id(s->span_id, in->span_id, 16))
        random_span_id(s->span_id);
    if (!hex_id(s->parent_span_id, in->parent_id, 16))
        s->parent_span_id[0] = '\0';
    s->kind = in->sub_call ? OTLP_SPAN_KIND_INTERNAL : OTLP_SPAN_KIND_SERVER;
    s->status = in->error ? OTLP_STATUS_ERROR : OTLP_STATUS_OK;
    s->start_ns = in->start_ns;
    s->end_ns = in->end_ns >= in->start_ns ? in->end_ns : in->start_ns;
    s->name = in->name ? in->name : "";
    s->error = in->error;
    size_t k = 0;
    for (const char *const *a = in->attrs; a && a[0]; a += 2) {
        if (!a[1])
            continue;
        if (k + 5 > max) /* room for this pair, par.trace_id and the NULL */
            return NULL;
        s->attrs[k++] = a[0];
        s->attrs[k++] = a[1];
    }
    if (keep) {
        s->attrs[k++] = "par.trace_id";
        s->attrs[k++] = in->trace_id;
    }
    s->attrs[k] = NULL;
    return s;
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

int otlp_attr_add(json_t *attrs, const char *key, const char *value)
{
    json_t *a = json_pack("{s:s, s:{s:s}}", "key", key, "value", "stringValue", value);
    return a ? json_array_append_new(attrs, a) : -1;
}

static json_t *attrs_of(const char *const *kv)
{
    json_t *a = json_array();
    for (const char *const *p = kv; a && p && p[0]; p += 2) {
        if (p[1] && otlp_attr_add(a, p[0], p[1]) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* A 64-bit integer as OTLP JSON writes it: a decimal string. */
static json_t *u64_string(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%" PRIu64, v);
    return json_string(b);
}

static json_t *scope_of(const char *version)
{
    return json_pack("{s:s, s:s}", "name", SCOPE_NAME, "version", version ? version : "");
}

json_t *otlp_resource_new(const otlp_config_t *c, const char *service_version,
                          const char *instance_id)
{
    json_t *attrs = json_array();
    if (!attrs || otlp_attr_add(attrs, "service.name", c->service_name) != 0)
        goto fail;
    if (service_version && otlp_attr_add(attrs, "service.version", service_version) != 0)
        goto fail;
    if (instance_id && otlp_attr_add(attrs, "service.instance.id", instance_id) != 0)
        goto fail;
    if (otlp_attr_add(attrs, "telemetry.sdk.name", "par-otlp") != 0 ||
        otlp_attr_add(attrs, "telemetry.sdk.language", "c") != 0)
        goto fail;
    const char *k;
    json_t *v;
    json_object_foreach(c->resource, k, v)
    {
        if (otlp_attr_add(attrs, k, json_string_value(v)) != 0)
            goto fail;
    }
    return json_pack("{s:o}", "attributes", attrs); /* "o" steals attrs, also on failure */
fail:
    json_decref(attrs);
    return NULL;
}

/* {"resource{Spans,Metrics}": [{"resource": R, "scope{Spans,Metrics}": [{"scope": S, key:
 * items}]}]} */
static char *wrap(const json_t *resource, const char *outer, const char *inner, const char *key,
                  json_t *items, const char *scope_version, size_t *len)
{
    json_t *doc = json_pack("{s:[{s:O, s:[{s:o, s:o}]}]}", outer, "resource", resource, inner,
                            "scope", scope_of(scope_version), key, items);
    if (!doc)
        return NULL;
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body)
        *len = strlen(body);
    return body;
}

char *otlp_encode_metrics(const json_t *resource, const json_t *metrics, const char *scope_version,
                          size_t *len)
{
    json_t *copy = json_incref((json_t *)metrics);
    return wrap(resource, "resourceMetrics", "scopeMetrics", "metrics", copy, scope_version, len);
}

/* ---- metrics ------------------------------------------------------------------------------ */

json_t *otlp_metric_new(const char *name, const char *description, const char *unit,
                        const char *kind, bool monotonic)
{
    json_t *data;
    if (strcmp(kind, "sum") == 0)
        data = json_pack("{s:[], s:i, s:b}", "dataPoints", "aggregationTemporality",
                         AGGREGATION_CUMULATIVE, "isMonotonic", monotonic);
    else if (strcmp(kind, "histogram") == 0)
        data = json_pack("{s:[], s:i}", "dataPoints", "aggregationTemporality",
                         AGGREGATION_CUMULATIVE);
    else
        data = json_pack("{s:[]}", "dataPoints");
    if (!data)
        return NULL;
    return json_pack("{s:s, s:s, s:s, s:o}", "name", name, "description",
                     description ? description : "", "unit", unit ? unit : "", kind, data);
}

json_t *otlp_metric_points(json_t *metric)
{
    const char *kinds[] = {"sum", "gauge", "histogram"};
    for (size_t i = 0; i < 3; i++) {
        json_t *d = json_object_get(metric, kinds[i]);
        if (d)
            return json_object_get(d, "dataPoints");
    }
    return NULL;
}

int otlp_point_number(json_t *points, const char *const *attrs, uint64_t start_ns, uint64_t time_ns,
                      bool is_int, int64_t ivalue, double dvalue)
{
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, ivalue);
    json_t *p = json_pack("{s:o, s:o, s:o}", "attributes", attrs_of(attrs), "startTimeUnixNano",
                          u64_string(start_ns), "timeUnixNano", u64_string(time_ns));
    if (!p)
        return -1;
    if (json_object_set_new(p, is_int ? "asInt" : "asDouble",
                            is_int ? json_string(b) : json_real(dvalue)) != 0) {
        json_decref(p);
        return -1;
    }
    return json_array_append_new(points, p); /* steals p, also on failure */
}

int otlp_point_histogram(json_t *points, const char *const *attrs, uint64_t start_ns,
                         uint64_t time_ns, const double *bounds, const uint64_t *cumulative,
                         size_t nbounds, uint64_t count, double sum)
{
    json_t *b = json_array(), *c = json_array();
    uint64_t below = 0;
    for (size_t i = 0; b && c && i <= nbounds; i++) {
        uint64_t upto = i < nbounds ? cumulative[i] : count;
        uint64_t in_bucket = upto >= below ? upto - below : 0;
        below = upto > below ? upto : below;
        if ((i < nbounds && json_array_append_new(b, json_real(bounds[i])) != 0) ||
            json_array_append_new(c, u64_string(in_bucket)) != 0)
            goto fail;
    }
    if (!b || !c)
        goto fail;
    json_t *p =
        json_pack("{s:o, s:o, s:o, s:o, s:f, s:o, s:o}", "attributes", attrs_of(attrs),
                  "startTimeUnixNano", u64_string(start_ns), "timeUnixNano", u64_string(time_ns),
                  "count", u64_string(count), "sum", sum, "bucketCounts", c, "explicitBounds", b);
    if (!p || json_array_append_new(points, p) != 0)
        return -1;
    return 0;
fail:
    json_decref(b);
    json_decref(c);
    return -1;
}
