/*
 * plugins/otlp/metrics.c — PAR's metrics snapshot (the parsed Prometheus
 * exposition of include/par/plugin.h) as OTLP Metric objects.
 *
 * One family at a time (its samples are adjacent, as the exposition format
 * requires): a counter becomes a cumulative monotonic sum, a gauge or an
 * untyped family a gauge, a histogram one cumulative histogram point per label
 * set (its `le` buckets, `_sum` and `_count` gathered). A family whose every
 * value is an integer is sent with asInt, otherwise asDouble. Units follow
 * the name's suffix (`_seconds` s, `_bytes` By). NaN and infinite values,
 * which JSON cannot carry, are left out.
 *
 * Runs on the host's exporter thread, with the snapshot borrowed; builds new
 * jansson values only.
 */
#include "otlp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <par/plugin.h>

typedef struct series {
    const par_metric_point_t *first; /* its labels (le excepted) */
    double *bounds;
    uint64_t *cumulative;
    size_t nbounds;
    uint64_t count;
    double sum;
} series_t;

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static const char *unit_of(const char *family)
{
    if (ends_with(family, "_seconds") || ends_with(family, "_seconds_total"))
        return "s";
    if (ends_with(family, "_bytes") || ends_with(family, "_bytes_total"))
        return "By";
    return "1";
}

/* key, value, ..., NULL of a point's labels without `le`; free() it. */
static const char **attrs_of(const par_metric_point_t *p)
{
    const char **a = malloc((2 * p->label_count + 1) * sizeof(*a));
    size_t k = 0;
    for (size_t i = 0; a && i < p->label_count; i++) {
        if (strcmp(p->labels[i].key, "le") == 0)
            continue;
        a[k++] = p->labels[i].key;
        a[k++] = p->labels[i].value;
    }
    if (a)
        a[k] = NULL;
    return a;
}

/* Same labels, `le` aside? */
static bool same_series(const par_metric_point_t *a, const par_metric_point_t *b)
{
    size_t ia = 0, ib = 0;
    for (;;) {
        while (ia < a->label_count && strcmp(a->labels[ia].key, "le") == 0)
            ia++;
        while (ib < b->label_count && strcmp(b->labels[ib].key, "le") == 0)
            ib++;
        if (ia == a->label_count || ib == b->label_count)
            return ia == a->label_count && ib == b->label_count;
        if (strcmp(a->labels[ia].key, b->labels[ib].key) != 0 ||
            strcmp(a->labels[ia].value, b->labels[ib].value) != 0)
            return false;
        ia++;
        ib++;
    }
}

static const char *label(const par_metric_point_t *p, const char *key)
{
    for (size_t i = 0; i < p->label_count; i++)
        if (strcmp(p->labels[i].key, key) == 0)
            return p->labels[i].value;
    return NULL;
}

static int number_family(json_t *out, const par_metric_point_t *pts, size_t n, uint64_t start,
                         uint64_t now)
{
    int type = pts[0].type;
    bool integral = true;
    for (size_t i = 0; i < n; i++)
        integral &= !isfinite(pts[i].value) || (pts[i].value == floor(pts[i].value) &&
                                                fabs(pts[i].value) < 9007199254740992.0);
    json_t *m = otlp_metric_new(pts[0].family, pts[0].help, unit_of(pts[0].family),
                                type == PAR_METRIC_COUNTER ? "sum" : "gauge", true);
    json_t *points = m ? otlp_metric_points(m) : NULL;
    for (size_t i = 0; points && i < n; i++) {
        if (!isfinite(pts[i].value))
            continue; /* NaN and ±Inf have no JSON form: the point is left out */
        const char **a = attrs_of(&pts[i]);
        if (!a || otlp_point_number(points, a, start, now, integral, (int64_t)pts[i].value,
                                    pts[i].value) != 0)
            points = NULL;
        free(a);
    }
    if (!points) {
        json_decref(m);
        return -1;
    }
    return json_array_append_new(out, m);
}

static series_t *series_for(series_t **all, size_t *ns, const par_metric_point_t *p)
{
    for (size_t i = 0; i < *ns; i++)
        if (same_series((*all)[i].first, p))
            return &(*all)[i];
    series_t *grown = realloc(*all, (*ns + 1) * sizeof(**all));
    if (!grown)
        return NULL;
    *all = grown;
    series_t *s = &grown[(*ns)++];
    memset(s, 0, sizeof(*s));
    s->first = p;
    return s;
}

static int add_bucket(series_t *s, const par_metric_point_t *p)
{
    const char *le = label(p, "le");
    double bound = le ? strtod(le, NULL) : INFINITY;
    uint64_t v = p->value > 0 ? (uint64_t)p->value : 0;
    if (isinf(bound)) {
        s->count = v > s->count ? v : s->count;
        return 0;
    }
    double *b = realloc(s->bounds, (s->nbounds + 1) * sizeof(*b));
    if (b)
        s->bounds = b;
    uint64_t *c = realloc(s->cumulative, (s->nbounds + 1) * sizeof(*c));
    if (c)
        s->cumulative = c;
    if (!b || !c)
        return -1;
    s->bounds[s->nbounds] = bound;
    s->cumulative[s->nbounds++] = v;
    return 0;
}

static int histogram_family(json_t *out, const par_metric_point_t *pts, size_t n, uint64_t start,
                            uint64_t now)
{
    series_t *all = NULL;
    size_t ns = 0;
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        const par_metric_point_t *p = &pts[i];
        series_t *s = series_for(&all, &ns, p);
        if (!s)
            goto out;
        if (ends_with(p->name, "_bucket") && add_bucket(s, p) != 0)
            goto out;
        if (ends_with(p->name, "_sum") && isfinite(p->value))
            s->sum = p->value;
        if (ends_with(p->name, "_count") && p->value > 0)
            s->count = (uint64_t)p->value;
    }
    json_t *m =
        otlp_metric_new(pts[0].family, pts[0].help, unit_of(pts[0].family), "histogram", false);
    json_t *points = m ? otlp_metric_points(m) : NULL;
    for (size_t i = 0; points && i < ns; i++) {
        const char **a = attrs_of(all[i].first);
        if (!a || otlp_point_histogram(points, a, start, now, all[i].bounds, all[i].cumulative,
                                       all[i].nbounds, all[i].count, all[i].sum) != 0)
            points = NULL;
        free(a);
    }
    if (!points)
        json_decref(m);
    else
        rc = json_array_append_new(out, m);
out:
    for (size_t i = 0; i < ns; i++) {
        free(all[i].bounds);
        free(all[i].cumulative);
    }
    free(all);
    return rc;
}

json_t *otlp_metrics_from_points(const struct par_metric_point *points, size_t n, uint64_t start_ns,
                                 uint64_t time_ns)
{
    json_t *out = json_array();
    for (size_t i = 0; out && i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(points[j].family, points[i].family) == 0)
            j++;
        int rc = points[i].type == PAR_METRIC_HISTOGRAM
                     ? histogram_family(out, &points[i], j - i, start_ns, time_ns)
                     : number_family(out, &points[i], j - i, start_ns, time_ns);
        if (rc != 0) {
            json_decref(out);
            return NULL;
        }
        i = j;
    }
    return out;
}
