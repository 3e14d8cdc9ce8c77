/*
 * plugin/points.c — the Prometheus text exposition (what obs/metrics.h
 * renders) parsed into par_metric_point_t for exporters: one point per
 * sample, with its family's name, type and help, and its labels. Parses in
 * place: every string of the result points into `text`, which it edits (NUL
 * terminators, unescaped label values). Exporter threads; pure.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>
#include <par/plugin.h>

int par__plug_metrics_parse(char *text, par_metric_point_t **points, size_t *count,
                            par_metric_label_t **labels);

typedef struct family {
    const char *name, *help;
    int type;
} family_t;

static int type_of(const char *t)
{
    return strcmp(t, "counter") == 0     ? PAR_METRIC_COUNTER
           : strcmp(t, "gauge") == 0     ? PAR_METRIC_GAUGE
           : strcmp(t, "histogram") == 0 ? PAR_METRIC_HISTOGRAM
                                         : PAR_METRIC_UNTYPED;
}

/* "# HELP name text" / "# TYPE name type": updates the current family. */
static void comment(char *line, family_t *f)
{
    int help = strncmp(line, "# HELP ", 7) == 0, type = strncmp(line, "# TYPE ", 7) == 0;
    if (!help && !type)
        return;
    char *name = line + 7, *sp = strchr(name, ' ');
    if (sp == NULL)
        return;
    *sp = '\0';
    if (f->name == NULL || strcmp(f->name, name) != 0) {
        f->name = name;
        f->help = "";
        f->type = PAR_METRIC_UNTYPED;
    }
    if (help)
        f->help = sp + 1;
    else
        f->type = type_of(sp + 1);
}

/* `{k="v",…}` at *p: labels appended to lab[*nl]; returns 0 or -1. */
static int parse_labels(char **p, par_metric_label_t *lab, size_t *nl, size_t cap)
{
    char *s = *p + 1;
    while (*s && *s != '}') {
        char *eq = strchr(s, '=');
        if (eq == NULL || eq[1] != '"' || *nl >= cap)
            return -1;
        *eq = '\0';
        char *v = eq + 2, *w = v;
        while (*v && *v != '"') {
            if (*v == '\\' && v[1])
                v++, *w++ = *v == 'n' ? '\n' : *v, v++;
            else
                *w++ = *v++;
        }
        if (*v != '"')
            return -1;
        *w = '\0';
        lab[(*nl)++] = (par_metric_label_t){s, eq + 2};
        s = v + 1;
        if (*s == ',')
            s++;
    }
    if (*s != '}')
        return -1;
    *p = s + 1;
    return 0;
}

static double value_of(const char *s)
{
    if (strcmp(s, "+Inf") == 0)
        return INFINITY;
    if (strcmp(s, "-Inf") == 0)
        return -INFINITY;
    return strtod(s, NULL);
}

int par__plug_metrics_parse(char *text, par_metric_point_t **points, size_t *count,
                            par_metric_label_t **labels)
{
    size_t lines = 1, braces = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n', braces += *c == '=';
    par_metric_point_t *pts = calloc(lines, sizeof(*pts));
    par_metric_label_t *lab = calloc(braces + 1, sizeof(*lab));
    if (pts == NULL || lab == NULL) {
        free(pts), free(lab);
        return PAR_E_NO_MEMORY;
    }
    size_t n = 0, nl = 0;
    family_t f = {NULL, "", PAR_METRIC_UNTYPED};
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        if (*line == '#') {
            comment(line, &f);
        } else if (*line) {
            char *p = line + strcspn(line, "{ ");
            par_metric_point_t *pt = &pts[n];
            pt->labels = lab + nl;
            size_t first = nl;
            int ok = 1;
            if (*p == '{') {
                char *name_end = p;
                ok = parse_labels(&p, lab, &nl, braces) == 0;
                *name_end = '\0';
            } else if (*p == ' ') {
                *p++ = '\0';
            }
            while (ok && *p == ' ')
                p++;
            if (ok && *p) {
                pt->name = line;
                pt->label_count = nl - first;
                pt->family = f.name && strncmp(line, f.name, strlen(f.name)) == 0 ? f.name : line;
                pt->help = pt->family == f.name ? f.help : "";
                pt->type = pt->family == f.name ? f.type : PAR_METRIC_UNTYPED;
                char *sp = strchr(p, ' '); /* a timestamp may follow */
                if (sp)
                    *sp = '\0';
                pt->value = value_of(p);
                n++;
            } else {
                nl = first;
            }
        }
        line = end ? end + 1 : NULL;
    }
    *points = pts;
    *count = n;
    *labels = lab;
    return PAR_OK;
}
