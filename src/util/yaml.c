/*
 * util/yaml.c — one YAML document with libyaml; see util/yaml.h.
 */
#include "util/yaml.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

static void problem(par_buf_t *err, const yaml_mark_t *m, const char *what, const char *detail)
{
    par_buf_appendf(err, "line %lu, column %lu: %s%s%s\n", (unsigned long)m->line + 1,
                    (unsigned long)m->column + 1, what, detail ? ": " : "", detail ? detail : "");
}

yaml_node_t *par_yaml_node(par_yaml_t *y, int index)
{
    return y->loaded ? yaml_document_get_node(&y->doc, index) : NULL;
}

yaml_node_t *par_yaml_root(par_yaml_t *y)
{
    return y->loaded ? yaml_document_get_root_node(&y->doc) : NULL;
}

const char *par_yaml_scalar(const yaml_node_t *n, size_t *len)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    if (len)
        *len = n->data.scalar.length;
    return (const char *)n->data.scalar.value;
}

static int scalar_is(const yaml_node_t *n, const char *s)
{
    return n->data.scalar.length == strlen(s) && memcmp(n->data.scalar.value, s, strlen(s)) == 0;
}

static int plain_one_of(const yaml_node_t *n, const char *const *words)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    for (; *words; words++)
        if (scalar_is(n, *words))
            return 1;
    return 0;
}

int par_yaml_is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    return n == NULL || plain_one_of(n, nulls);
}

int par_yaml_bool(const yaml_node_t *n, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON",  NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no",  "No",
                                     "NO",    "off",   "Off",   "OFF", NULL};
    if (n == NULL)
        return -1;
    if (plain_one_of(n, yes))
        *out = 1;
    else if (plain_one_of(n, no))
        *out = 0;
    else
        return -1;
    return 0;
}

const char *par_yaml_kind(const yaml_node_t *n)
{
    if (n == NULL)
        return "nothing";
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return par_yaml_is_null(n) ? "null" : "a scalar";
    default:
        return "nothing";
    }
}

yaml_node_t *par_yaml_get(par_yaml_t *y, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = par_yaml_node(y, p->key);
        if (k && k->type == YAML_SCALAR_NODE && scalar_is(k, key))
            return par_yaml_node(y, p->value);
    }
    return NULL;
}

/* ---- structural checks ------------------------------------------------------ */

static int cmp_keys(const void *a, const void *b)
{
    const yaml_node_t *x = *(const yaml_node_t *const *)a, *y = *(const yaml_node_t *const *)b;
    size_t n = x->data.scalar.length < y->data.scalar.length ? x->data.scalar.length
                                                             : y->data.scalar.length;
    int c = memcmp(x->data.scalar.value, y->data.scalar.value, n);
    if (c != 0)
        return c;
    return x->data.scalar.length < y->data.scalar.length   ? -1
           : x->data.scalar.length > y->data.scalar.length ? 1
                                                           : 0;
}

/* Keys of one mapping are scalars and appear once. */
static int check_keys(par_yaml_t *y, yaml_node_t *map, par_buf_t *err)
{
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (n == 0)
        return PAR_OK;
    const yaml_node_t **keys = malloc(n * sizeof(*keys));
    if (keys == NULL)
        return PAR_E_NO_MEMORY;
    int rc = PAR_OK;
    for (size_t i = 0; i < n && rc == PAR_OK; i++) {
        keys[i] = par_yaml_node(y, map->data.mapping.pairs.start[i].key);
        if (keys[i] == NULL || keys[i]->type != YAML_SCALAR_NODE) {
            problem(err, keys[i] ? &keys[i]->start_mark : &map->start_mark,
                    "a mapping key must be a plain name", NULL);
            rc = PAR_E_INVALID_ARGUMENT;
        }
    }
    if (rc == PAR_OK) {
        qsort(keys, n, sizeof(*keys), cmp_keys);
        for (size_t i = 1; i < n; i++) {
            if (cmp_keys(&keys[i - 1], &keys[i]) == 0) {
                const yaml_node_t *k = keys[i]->start_mark.index > keys[i - 1]->start_mark.index
                                           ? keys[i]
                                           : keys[i - 1];
                problem(err, &k->start_mark, "duplicate key",
                        (const char *)keys[i]->data.scalar.value);
                rc = PAR_E_INVALID_ARGUMENT;
                break;
            }
        }
    }
    free(keys);
    return rc;
}

typedef struct visit {
    int node;
    int depth;
} visit_t;

/* Walks the document as readers will (aliases expanded) with an explicit
 * stack: bounded work and no C recursion, whatever the input. */
static int check_tree(par_yaml_t *y, par_buf_t *err)
{
    yaml_node_t *root = par_yaml_root(y);
    if (root == NULL)
        return PAR_OK;
    visit_t *stack = malloc(PAR_YAML_MAX_NODES * sizeof(*stack));
    if (stack == NULL)
        return PAR_E_NO_MEMORY;
    size_t top = 0, seen = 0;
    int rc = PAR_OK;
    stack[top++] = (visit_t){1, 1};
    while (top > 0 && rc == PAR_OK) {
        visit_t v = stack[--top];
        yaml_node_t *n = par_yaml_node(y, v.node);
        if (n == NULL)
            continue;
        if (++seen > PAR_YAML_MAX_NODES || v.depth > PAR_YAML_MAX_DEPTH) {
            problem(err, &n->start_mark,
                    seen > PAR_YAML_MAX_NODES ? "the document (with its aliases expanded) has too "
                                                "many nodes"
                                              : "the document nests too deeply",
                    NULL);
            rc = PAR_E_INVALID_ARGUMENT;
        } else if (n->type == YAML_MAPPING_NODE) {
            rc = check_keys(y, n, err);
            for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
                 rc == PAR_OK && p < n->data.mapping.pairs.top && top < PAR_YAML_MAX_NODES; p++)
                stack[top++] = (visit_t){p->value, v.depth + 1};
        } else if (n->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *i = n->data.sequence.items.start;
                 i < n->data.sequence.items.top && top < PAR_YAML_MAX_NODES; i++)
                stack[top++] = (visit_t){*i, v.depth + 1};
        }
    }
    free(stack);
    return rc;
}

/* ---- loading ------------------------------------------------------------------ */

/* libyaml's scanner costs time quadratic in flow nesting ([[[[...), about a
 * second for 20 000 levels. Flow brackets outside quotes and comments are
 * counted first, generously: the tree check refuses anything deeper than
 * PAR_YAML_MAX_DEPTH anyway, this only keeps hostile input cheap. */
#define FLOW_DEPTH_PRESCAN 1000

static int flow_too_deep(const char *s, size_t len, size_t *at)
{
    size_t depth = 0;
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (quote) {
            if (quote == '"' && c == '\\')
                i++;
            else if (c == quote)
                quote = 0;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '#' &&
                   (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t' || s[i - 1] == '\n')) {
            while (i < len && s[i] != '\n')
                i++;
        } else if (c == '[' || c == '{') {
            if (++depth > FLOW_DEPTH_PRESCAN) {
                *at = i;
                return 1;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

static int parser_problem(yaml_parser_t *p, par_buf_t *err)
{
    if (p->error == YAML_MEMORY_ERROR)
        return PAR_E_NO_MEMORY;
    const char *what = p->problem ? p->problem : "not valid YAML";
    if (p->context) {
        char detail[256];
        snprintf(detail, sizeof(detail), "%s at line %lu", p->context,
                 (unsigned long)p->context_mark.line + 1);
        problem(err, &p->problem_mark, what, detail);
    } else {
        problem(err, &p->problem_mark, what, NULL);
    }
    return PAR_E_INVALID_ARGUMENT;
}

int par_yaml_load(par_yaml_t *y, const char *data, size_t len, par_buf_t *err)
{
    yaml_parser_t p;
    yaml_document_t extra;
    int rc = PAR_OK;

    memset(y, 0, sizeof(*y));
    size_t at;
    if (flow_too_deep(data, len, &at)) {
        par_buf_appendf(err, "byte %zu: the document nests too deeply\n", at);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (!yaml_parser_initialize(&p))
        return PAR_E_NO_MEMORY;
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    if (!yaml_parser_load(&p, &y->doc)) {
        rc = parser_problem(&p, err);
        goto out;
    }
    y->loaded = 1;
    if (par_yaml_root(y) != NULL) {
        if (!yaml_parser_load(&p, &extra)) {
            rc = parser_problem(&p, err);
            goto out;
        }
        int more = yaml_document_get_root_node(&extra) != NULL;
        if (more)
            problem(err, &extra.start_mark, "only one YAML document is allowed", NULL);
        yaml_document_delete(&extra);
        if (more) {
            rc = PAR_E_INVALID_ARGUMENT;
            goto out;
        }
    }
    rc = check_tree(y, err);
out:
    yaml_parser_delete(&p);
    if (rc != PAR_OK)
        par_yaml_free(y);
    return rc;
}

void par_yaml_free(par_yaml_t *y)
{
    if (y->loaded)
        yaml_document_delete(&y->doc);
    y->loaded = 0;
}

/* ---- to JSON ------------------------------------------------------------------ */

static json_t *scalar_json(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    int b;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (par_yaml_is_null(n))
            return json_null();
        if (par_yaml_bool(n, &b) == 0)
            return json_boolean(b);
        char *end;
        errno = 0;
        long long i = strtoll(s, &end, 10);
        if (*s && *end == '\0' && errno == 0)
            return json_integer(i);
        double d = strtod(s, &end);
        if (*s && *end == '\0' && errno == 0 && strspn(s, "0123456789+-.eE") == strlen(s))
            return json_real(d);
    }
    return json_stringn(s, n->data.scalar.length);
}

static json_t *to_json(par_yaml_t *y, yaml_node_t *n, int depth)
{
    if (n == NULL || depth > PAR_YAML_MAX_DEPTH)
        return NULL;
    if (n->type == YAML_SCALAR_NODE)
        return scalar_json(n);
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             a && it < n->data.sequence.items.top; it++) {
            json_t *v = to_json(y, par_yaml_node(y, *it), depth + 1);
            if (v == NULL || json_array_append_new(a, v) != 0)
                json_decref(a), a = NULL;
        }
        return a;
    }
    if (n->type != YAML_MAPPING_NODE)
        return NULL;
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top;
         p++) {
        const char *k = par_yaml_scalar(par_yaml_node(y, p->key), NULL);
        json_t *v = k ? to_json(y, par_yaml_node(y, p->value), depth + 1) : NULL;
        if (v == NULL || json_object_set_new(o, k, v) != 0)
            json_decref(o), o = NULL;
    }
    return o;
}

json_t *par_yaml_to_json(par_yaml_t *y, yaml_node_t *n)
{
    return to_json(y, n, 0);
}
