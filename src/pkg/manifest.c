/*
 * pkg/manifest.c — agent.yaml parsing and validation (see manifest.h). This
 * file is the reader (YAML nodes into a par_manifest_t); reporting, value
 * rules, unknown keys and loading the YAML are in manifest_check.c, what the
 * two share in manifest_internal.h.
 *
 * Owns: turning agent.yaml bytes into a par_manifest_t, or into a list of
 * every problem found. Called by runtime/deploy.c and the CLI (pack,
 * inspect). It parses bytes only: it never opens files, never
 * runs package code and never prints. Any thread: no global state.
 *
 * How it works:
 *  1. load: the bytes must be UTF-8 made of YAML's printable characters
 *     (checked here first, so that the message names line and column as
 *     PyYAML would). util/yaml.c then loads exactly one document with
 *     libyaml (one document, scalar and unique keys, aliases bounded in
 *     count and depth). Syntax errors become
 *     `agent.yaml: line L, column C: <libyaml's message>`. Merge keys (`<<`)
 *     are honoured on lookup, as PyYAML's safe_load (pixell-kit) does.
 *  2. check: the tree is walked with a `check_t` that collects problems as
 *     `agent.yaml: <field path>: <what is wrong>`; a problem never stops the
 *     walk, so one run reports all of them (the first MAX_SHOWN are written,
 *     the rest are counted).
 *
 * Schema decisions (docs/agent-yaml.md is the user's reference):
 *  - A YAML null (`key:`, `key: ~`, `key: null`) counts as absent, so a
 *    required field set to null is "required field missing".
 *  - Scalars are text: `description: 5` is the string "5". Booleans are
 *    plain true/false (and yes/no/on/off, as PyYAML reads them); integers
 *    are plain decimal.
 *  - Names and versions are at most PAR_ID_PART_MAX bytes (core/id.h),
 *    so every id a package defines can be called.
 *  - Unknown keys. PAR's own blocks (`metadata.par`, `metadata.par.limits`,
 *    `metadata.par.exports[]`, `metadata.sub_agents[]`) are strict: an
 *    unknown key is an error, with "did you mean" when a known key is close.
 *    Top level: pixell-kit's keys are known; an unknown key close to one is
 *    an error (`entrypont:` must not deploy a package without its main
 *    agent), any other is a warning. Under `metadata` the ecosystem keeps
 *    extras: unknown keys are ignored unless close to version, sub_agents
 *    or par. So no typo can make a private sub-agent public: a misspelt
 *    `public` or `sub_agents` is refused, `public` must be a boolean, and a
 *    sub-agent without `public` is private (pixell-kit's default too), so a
 *    lost or commented-out `public: false` line narrows.
 */
#include "pkg/manifest.h"
#include "pkg/manifest_internal.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "core/id.h"
#include "util/yaml.h"

/* ---- memory ------------------------------------------------------------------------------ */

/* strdup that records an allocation failure; NULL in gives NULL out (the
 * failure that produced it was recorded already). */
static char *xstrdup(check_t *c, const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        c->oom = true;
    return d;
}

void par__manifest_strlist_add(check_t *c, par_strlist_t *l, const char *s)
{
    char *d = xstrdup(c, s);
    if (d == NULL)
        return;
    char **n = realloc(l->items, (l->count + 1) * sizeof(char *));
    if (n == NULL) {
        c->oom = true;
        free(d);
        return;
    }
    l->items = n;
    l->items[l->count++] = d;
}

static void strlist_copy(check_t *c, par_strlist_t *dst, const par_strlist_t *src)
{
    for (size_t i = 0; i < src->count; i++)
        par__manifest_strlist_add(c, dst, src->items[i]);
}

static void strlist_free(par_strlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* Appends a zeroed export; NULL when out of memory. */
static par_export_t *add_export(check_t *c)
{
    par_manifest_t *m = c->m;
    par_export_t *n = realloc(m->exports, (m->export_count + 1) * sizeof(*n));
    if (n == NULL) {
        c->oom = true;
        return NULL;
    }
    m->exports = n;
    par_export_t *e = &m->exports[m->export_count++];
    memset(e, 0, sizeof(*e));
    return e;
}

static void export_free(par_export_t *e)
{
    free(e->name);
    free(e->description);
    free(e->entrypoint);
    free(e->field);
    strlist_free(&e->capabilities);
    free(e->skills_json);
    free(e->input_schema_json);
}

/* ---- reading nodes ----------------------------------------------------------------------- */

/* The value of `key` in `map` as PyYAML reads it: the mapping's own pair
 * first, then the mappings merged in with `<<` (a mapping, or a list of
 * them, earlier ones first). Depth is bounded by util/yaml's tree check. */
static yaml_node_t *lookup(check_t *c, yaml_node_t *map, const char *key)
{
    if (!is_type(map, YAML_MAPPING_NODE))
        return NULL;
    yaml_node_t *merge = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = par_yaml_node(c->y, p->key);
        if (key_is(k, key))
            return par_yaml_node(c->y, p->value);
        if (key_is(k, "<<") && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
            merge = par_yaml_node(c->y, p->value);
    }
    if (is_type(merge, YAML_MAPPING_NODE))
        return lookup(c, merge, key);
    if (is_type(merge, YAML_SEQUENCE_NODE)) {
        for (yaml_node_item_t *i = merge->data.sequence.items.start;
             i < merge->data.sequence.items.top; i++) {
            yaml_node_t *v = lookup(c, par_yaml_node(c->y, *i), key);
            if (v)
                return v;
        }
    }
    return NULL;
}

/* The value of `key` in `map`; NULL when absent or null. */
static yaml_node_t *field(check_t *c, yaml_node_t *map, const char *key)
{
    yaml_node_t *n = lookup(c, map, key);
    return par_yaml_is_null(n) ? NULL : n;
}

/* Calls `fn` for every effective key of `map` (merged ones included, each key
 * once, with the value lookup() gives it), own keys in file order first.
 * Keys are scalars (util/yaml refuses others). */
static void each_pair_in(check_t *c, yaml_node_t *top, yaml_node_t *map, pair_fn fn, void *ud)
{
    yaml_node_t *merge = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = par_yaml_node(c->y, p->key), *v = par_yaml_node(c->y, p->value);
        size_t klen = 0;
        const char *ks = par_yaml_scalar(k, &klen);
        if (ks == NULL)
            continue;
        if (strlen(ks) != klen) {
            char b[80];
            par__manifest_problem(c, par__manifest_shown(ks, b, sizeof(b)),
                                  "a key must not contain NUL characters");
            continue;
        }
        if (key_is(k, "<<") && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            merge = v;
            continue;
        }
        if (map == top || lookup(c, top, ks) == v)
            fn(c, ks, v, ud);
    }
    if (is_type(merge, YAML_MAPPING_NODE)) {
        each_pair_in(c, top, merge, fn, ud);
    } else if (is_type(merge, YAML_SEQUENCE_NODE)) {
        for (yaml_node_item_t *i = merge->data.sequence.items.start;
             i < merge->data.sequence.items.top; i++) {
            yaml_node_t *m = par_yaml_node(c->y, *i);
            if (is_type(m, YAML_MAPPING_NODE))
                each_pair_in(c, top, m, fn, ud);
        }
    }
}

void par__manifest_each_pair(check_t *c, yaml_node_t *map, pair_fn fn, void *ud)
{
    if (is_type(map, YAML_MAPPING_NODE))
        each_pair_in(c, map, map, fn, ud);
}

/* A scalar's text, NUL-terminated; NULL with a problem when `n` is not a
 * scalar or holds a NUL byte (which C strings would silently cut). */
static const char *text(check_t *c, yaml_node_t *n, const char *path, const char *expected)
{
    size_t len = 0;
    const char *s = par_yaml_scalar(n, &len);
    if (s == NULL) {
        par__manifest_problem(c, path, "must be %s", expected);
        return NULL;
    }
    if (strlen(s) != len) {
        par__manifest_problem(c, path, "must not contain NUL characters");
        return NULL;
    }
    return s;
}

/* Copy of the string at `key`; NULL when absent, null or wrong (a problem). */
static char *get_str(check_t *c, yaml_node_t *map, const char *key, const char *path)
{
    yaml_node_t *n = field(c, map, key);
    if (n == NULL)
        return NULL;
    return xstrdup(c, text(c, n, path, "a string"));
}

/* Like get_str, with "required field missing" when absent or null. */
static char *get_required_str(check_t *c, yaml_node_t *map, const char *key, const char *path)
{
    if (field(c, map, key) == NULL) {
        par__manifest_problem(c, path, "required field missing");
        return NULL;
    }
    return get_str(c, map, key, path);
}

static char *get_str_or_empty(check_t *c, yaml_node_t *map, const char *key, const char *path)
{
    char *s = get_str(c, map, key, path);
    return s ? s : xstrdup(c, "");
}

/* Refuses (and frees) a string longer than `max` bytes; NULL then. */
static char *capped(check_t *c, char *s, size_t max, const char *path)
{
    if (s != NULL && strlen(s) > max) {
        par__manifest_problem(c, path, "must be at most %zu characters (it has %zu)", max,
                              strlen(s));
        free(s);
        return NULL;
    }
    return s;
}

static int get_bool(check_t *c, yaml_node_t *map, const char *key, const char *path, int dflt)
{
    yaml_node_t *n = field(c, map, key);
    int v;
    if (n == NULL)
        return dflt;
    if (par_yaml_bool(n, &v) == 0)
        return v;
    par__manifest_problem(c, path, "must be true or false");
    return dflt;
}

/* A plain decimal integer in [min, max]. Returns false (and reports `what`)
 * for anything else: signs, fractions, hex, overflow. */
static bool get_uint(check_t *c, yaml_node_t *n, const char *path, uint64_t min, uint64_t max,
                     const char *what, uint64_t *out)
{
    const char *s = par_yaml_is_null(n) ? NULL : par_yaml_scalar(n, NULL);
    uint64_t v = 0;
    bool ok = s != NULL && *s != '\0';
    for (; ok && *s; s++) {
        if (!isdigit((unsigned char)*s) || v > (UINT64_MAX - 9) / 10) {
            ok = false;
            break;
        }
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (!ok || v < min || v > max) {
        par__manifest_problem(c, path, "must be %s", what);
        return false;
    }
    *out = v;
    return true;
}

/* A list of strings at `key` (absent or null = empty list), each at most
 * `max` bytes (0: unbounded). */
static void get_strlist(check_t *c, yaml_node_t *map, const char *key, const char *path, size_t max,
                        par_strlist_t *out)
{
    yaml_node_t *n = field(c, map, key);
    if (n == NULL)
        return;
    if (!is_type(n, YAML_SEQUENCE_NODE)) {
        par__manifest_problem(c, path, "must be a list of strings");
        return;
    }
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *e = par_yaml_node(c->y, *it);
        char p[200];
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (par_yaml_is_null(e)) {
            par__manifest_problem(c, p, "must be a string, not null");
            continue;
        }
        const char *s = text(c, e, p, "a string");
        if (s && max && strlen(s) > max)
            par__manifest_problem(c, p, "must be at most %zu characters", max);
        else if (s)
            par__manifest_strlist_add(c, out, s);
    }
}

/* ---- exports ----------------------------------------------------------------------------- */

static bool export_exists(const par_manifest_t *m, const char *name)
{
    for (size_t i = 0; i < m->export_count; i++)
        if (m->exports[i].name && strcmp(m->exports[i].name, name) == 0)
            return true;
    return false;
}

/* Reads and checks the `name` of the sub-agent or export at `p` (its path):
 * required, a valid name, not used by an earlier one. NULL after a problem. */
static char *export_name(check_t *c, yaml_node_t *n, const char *p, bool is_sub_agent)
{
    char path[240];
    snprintf(path, sizeof(path), "%s.name", p);
    char *name = get_required_str(c, n, "name", path);
    if (name == NULL)
        return NULL;
    size_t len = strlen(name);
    const char *why = NULL;
    if (len > NAME_MAX_LEN)
        par__manifest_problem(c, path, "must be at most %d characters", NAME_MAX_LEN), why = "long";
    else if (!par_manifest_valid_name(name, len))
        par__manifest_problem(c, path, "must match " NAME_RE), why = "pattern";
    else if (export_exists(c->m, name) && is_sub_agent)
        par__manifest_problem(c, path, "duplicate sub-agent '%s'", name), why = "duplicate";
    else if (export_exists(c->m, name))
        par__manifest_problem(c, path, "'%s' is already the name of a sub-agent or export", name),
            why = "duplicate";
    if (why) {
        free(name);
        return NULL;
    }
    return name;
}

/* Keys of a `metadata.sub_agents[]` and a `metadata.par.exports[]` entry. */
static const char *const export_keys[] = {
    "name", "description", "public", "capabilities", "entrypoint", "skills", "input_schema", NULL};

/* Reads one sub-agent or export entry at path `p`; `inherit` is the package's
 * entrypoint a sub-agent falls back to (NULL for exports: required). */
static void parse_export(check_t *c, yaml_node_t *n, const char *p, bool is_sub_agent)
{
    par_manifest_t *m = c->m;
    char path[240];
    par__manifest_check_keys(c, n, p, export_keys, UNKNOWN_ERROR);
    /* Every field is read even when the name is bad, so that all problems show. */
    par_export_t tmp = {0};
    tmp.name = export_name(c, n, p, is_sub_agent);
    snprintf(path, sizeof(path), "%s.description", p);
    tmp.description = get_str_or_empty(c, n, "description", path);
    snprintf(path, sizeof(path), "%s.public", p);
    /* A sub-agent is private unless it says `public: true` (pixell-kit's
     * default), so a lost or commented-out `public: false` line narrows; an
     * export of metadata.par is public unless `public: false` (DESIGN.md). */
    tmp.is_public = get_bool(c, n, "public", path, is_sub_agent ? 0 : 1);
    snprintf(path, sizeof(path), "%s.capabilities", p);
    get_strlist(c, n, "capabilities", path, NAME_MAX_LEN, &tmp.capabilities);
    snprintf(path, sizeof(path), "%s.entrypoint", p);
    tmp.entrypoint = is_sub_agent ? get_str(c, n, "entrypoint", path)
                                  : get_required_str(c, n, "entrypoint", path);
    tmp.entrypoint = capped(c, tmp.entrypoint, ENTRYPOINT_MAX_LEN, path);
    if (tmp.entrypoint) {
        par__manifest_check_entrypoint(c, path, tmp.entrypoint, m->runtime_kind);
        tmp.field = xstrdup(c, path);
    } else if (is_sub_agent && m->entrypoint) {
        /* the handler learns which sub-agent was asked from context.sub_agent */
        tmp.entrypoint = xstrdup(c, m->entrypoint);
        tmp.field = xstrdup(c, "entrypoint");
    } else if (is_sub_agent && field(c, n, "entrypoint") == NULL) {
        par__manifest_problem(c, path,
                              "required: the package has no top-level entrypoint to inherit");
    }
    par__manifest_described(c, p, field(c, n, "skills"), field(c, n, "input_schema"),
                            &tmp.skills_json, &tmp.input_schema_json);
    par_export_t *e = tmp.name && tmp.entrypoint && tmp.field ? add_export(c) : NULL;
    if (e)
        *e = tmp;
    else
        export_free(&tmp);
}

static void parse_export_list(check_t *c, yaml_node_t *seq, const char *what, bool is_sub_agent)
{
    if (!is_type(seq, YAML_SEQUENCE_NODE)) {
        par__manifest_problem(c, what, "must be a list of {name, %s}",
                              is_sub_agent ? "description, public, ..." : "entrypoint, ...");
        return;
    }
    size_t i = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *n = par_yaml_node(c->y, *it);
        char p[64];
        snprintf(p, sizeof(p), "%s[%zu]", what, i);
        if (!is_type(n, YAML_MAPPING_NODE))
            par__manifest_problem(c, p, "must be a mapping with at least a name%s",
                                  is_sub_agent ? "" : " and an entrypoint");
        else
            parse_export(c, n, p, is_sub_agent);
    }
}

/* ---- metadata.par ------------------------------------------------------------------------ */

static void read_limit(check_t *c, const char *key, yaml_node_t *value, void *ud)
{
    (void)ud;
    par_limits_t *l = &c->m->limits;
    uint32_t *slots[] = {&l->timeout_ms, &l->memory_mb, &l->concurrency, &l->max_input_kb};
    size_t i = 0;
    while (par__manifest_limit_keys[i] && strcmp(key, par__manifest_limit_keys[i]) != 0)
        i++;
    if (par__manifest_limit_keys[i] == NULL)
        return; /* reported by check_keys */
    char path[160];
    uint64_t v;
    snprintf(path, sizeof(path), "metadata.par.limits.%s", key);
    if (get_uint(c, value, path, 0, UINT32_MAX,
                 "a non-negative integer (0 = the operator's default)", &v))
        *slots[i] = (uint32_t)v;
}

static void parse_limits(check_t *c, yaml_node_t *lim)
{
    if (!is_type(lim, YAML_MAPPING_NODE)) {
        par__manifest_problem(c, "metadata.par.limits",
                              "must be a mapping such as {timeout_ms: 30000}");
        return;
    }
    par__manifest_check_keys(c, lim, "metadata.par.limits", par__manifest_limit_keys,
                             UNKNOWN_ERROR);
    par__manifest_each_pair(c, lim, read_limit, NULL);
}

/* A `calls` pattern: what an agent id may hold, plus fnmatch's * ? [ ] !. */
static bool call_pattern_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("-.+@/*?[]!", *s)))
            return false;
    return true;
}

static void parse_calls(check_t *c, yaml_node_t *par)
{
    yaml_node_t *n = lookup(c, par, "calls");
    if (n == NULL)
        return;
    /* unlike other fields, a null `calls:` is not "absent": it declares that
     * the package calls nothing (a restriction fails closed) */
    par_strlist_t l = {0};
    if (par_yaml_is_null(n) || is_type(n, YAML_SEQUENCE_NODE))
        get_strlist(c, par, "calls", "metadata.par.calls", CALL_PATTERN_MAX_LEN, &l);
    else
        par__manifest_problem(c, "metadata.par.calls",
                              "must be a list of agent id patterns such as [\"shop-*\"]");
    for (size_t i = 0; i < l.count; i++) {
        if (!call_pattern_ok(l.items[i])) {
            char p[64], b[80];
            snprintf(p, sizeof(p), "metadata.par.calls[%zu]", i);
            par__manifest_problem(
                c, p,
                "'%s' is not an agent id pattern (letters, digits, - . + @ / and the fnmatch "
                "characters * ? [ ] !)",
                par__manifest_shown(l.items[i], b, sizeof(b)));
        }
    }
    /* NULL-terminated; an empty list (calls nothing) is a lone NULL */
    c->m->calls = calloc(l.count + 1, sizeof(char *));
    if (c->m->calls == NULL)
        c->oom = true;
    for (size_t i = 0; i < l.count; i++) {
        if (c->m->calls)
            c->m->calls[i] = l.items[i];
        else
            free(l.items[i]);
    }
    free(l.items);
}

static void parse_par(check_t *c, yaml_node_t *par)
{
    static const char *const known[] = {"requires", "abi",    "limits",       "exports",
                                        "calls",    "skills", "input_schema", NULL};
    par_manifest_t *m = c->m;
    if (!is_type(par, YAML_MAPPING_NODE)) {
        par__manifest_problem(
            c, "metadata.par",
            "must be a mapping {requires, abi, limits, exports, calls, skills, input_schema}");
        return;
    }
    par__manifest_check_keys(c, par, "metadata.par", known, UNKNOWN_ERROR);
    /* Only stored: the range is matched against the runtime's version by pkg/compat.c. */
    m->par_requires = get_str(c, par, "requires", "metadata.par.requires");
    m->par_requires = capped(c, m->par_requires, 256, "metadata.par.requires");
    if (m->par_requires && m->par_requires[strspn(m->par_requires, " \t")] == '\0')
        par__manifest_problem(c, "metadata.par.requires",
                              "must be a non-empty semver range such as \">=1.0.0\"");
    yaml_node_t *abi = field(c, par, "abi");
    uint64_t v;
    if (abi && get_uint(c, abi, "metadata.par.abi", 1, INT_MAX, "a positive integer", &v))
        m->par_abi = (int)v;
    yaml_node_t *lim = field(c, par, "limits");
    if (lim)
        parse_limits(c, lim);
    yaml_node_t *ex = field(c, par, "exports");
    if (ex)
        parse_export_list(c, ex, "metadata.par.exports", false);
    parse_calls(c, par);
    par__manifest_described(c, "metadata.par", field(c, par, "skills"),
                            field(c, par, "input_schema"), &m->skills_json, &m->input_schema_json);
}

/* ---- top level --------------------------------------------------------------------------- */

/* Keys of pixell-kit's AgentManifest model (pixell/models/agent_manifest.py),
 * all understood or deliberately ignored by PAR. */
// clang-format off
static const char *const top_keys[] = {
    "version", "name", "display_name", "description", "author", "license", "entrypoint",
    "runtime", "capabilities", "environment", "dependencies", "metadata", "rest", "a2a", "ui",
    "mcp", "ui_spec_version", "required_ui_capabilities", NULL};
// clang-format on

static void parse_runtime(check_t *c, yaml_node_t *root)
{
    par_manifest_t *m = c->m;
    m->runtime = capped(c, get_str(c, root, "runtime", "runtime"), NAME_MAX_LEN, "runtime");
    if (m->runtime != NULL && m->runtime[0] == '\0')
        par__manifest_problem(c, "runtime", "must not be empty (python3.11, native, ...)");
    /* pixell-kit defaults an omitted runtime to python3.11; so does PAR, so
     * that packages built by `pixell build` deploy unchanged. */
    if (m->runtime == NULL)
        m->runtime = xstrdup(c, DEFAULT_RUNTIME);
    const char *r = m->runtime ? m->runtime : "";
    if (strcmp(r, "native") == 0)
        m->runtime_kind = PAR_RUNTIME_NATIVE;
    else if (strncmp(r, "python3.", 8) == 0 && r[8] != '\0' &&
             strspn(r + 8, "0123456789") == strlen(r + 8))
        m->runtime_kind = PAR_RUNTIME_PYTHON;
    else
        m->runtime_kind = PAR_RUNTIME_OTHER; /* refused by pkg/compat.c: "no loader for X" */
}

static void read_env(check_t *c, const char *k, yaml_node_t *vn, void *ud)
{
    (void)ud;
    par_manifest_t *m = c->m;
    char b[80], path[160];
    snprintf(path, sizeof(path), "environment.%s", par__manifest_shown(k, b, sizeof(b)));
    if (!par__manifest_is_ident(k, strlen(k))) {
        par__manifest_problem(c, path,
                              "must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
        return;
    }
    if (par_yaml_is_null(vn)) {
        par__manifest_problem(c, path, "must have a value (write \"\" for an empty one)");
        return;
    }
    const char *v = text(c, vn, path, "a string, number or boolean");
    if (v == NULL)
        return;
    par_kv_t *n = realloc(m->environment, (m->environment_count + 1) * sizeof(*n));
    if (n == NULL) {
        c->oom = true;
        return;
    }
    m->environment = n;
    char *kc = xstrdup(c, k), *vc = xstrdup(c, v);
    if (kc == NULL || vc == NULL) {
        free(kc);
        free(vc);
        return;
    }
    m->environment[m->environment_count++] = (par_kv_t){kc, vc};
}

static void parse_environment(check_t *c, yaml_node_t *env)
{
    if (!is_type(env, YAML_MAPPING_NODE)) {
        par__manifest_problem(c, "environment", "must be a mapping of NAME: value");
        return;
    }
    par__manifest_each_pair(c, env, read_env, NULL);
}

static void parse_metadata(check_t *c, yaml_node_t *root)
{
    static const char *const known[] = {"version", "sub_agents", "par", NULL};
    par_manifest_t *m = c->m;
    yaml_node_t *md = field(c, root, "metadata");
    if (md == NULL) {
        par__manifest_problem(c, "metadata.version", "required field missing");
        return;
    }
    if (!is_type(md, YAML_MAPPING_NODE)) {
        par__manifest_problem(c, "metadata", "must be a mapping with at least version");
        return;
    }
    par__manifest_check_keys(c, md, "metadata", known, UNKNOWN_IGNORE_FAR);
    m->package_version = get_required_str(c, md, "version", "metadata.version");
    m->package_version = capped(c, m->package_version, NAME_MAX_LEN, "metadata.version");
    if (m->package_version &&
        !par_manifest_valid_semver(m->package_version, strlen(m->package_version)))
        par__manifest_problem(
            c, "metadata.version",
            "must be a semantic version MAJOR.MINOR.PATCH[-pre][+build] such as 1.2.0");
    yaml_node_t *subs = field(c, md, "sub_agents");
    if (subs)
        parse_export_list(c, subs, "metadata.sub_agents", true);
    yaml_node_t *par = field(c, md, "par");
    if (par)
        parse_par(c, par);
}

/* pixell-kit's `mcp` block: `config_file` names a file of the package
 * (pixell-kit's builder copies it at that path); its other keys are
 * pixell-kit's and left alone, and a non-mapping `mcp` is accepted as
 * before (nothing to read). */
static void parse_mcp(check_t *c, yaml_node_t *mcp)
{
    if (!is_type(mcp, YAML_MAPPING_NODE))
        return;
    char *f = capped(c, get_str(c, mcp, "config_file", "mcp.config_file"), ENTRYPOINT_MAX_LEN,
                     "mcp.config_file");
    if (f == NULL)
        return;
    bool bad = f[0] == '\0' || f[0] == '/' || strcmp(f, "..") == 0 || strncmp(f, "../", 3) == 0 ||
               strstr(f, "/../") != NULL ||
               (strlen(f) >= 3 && strcmp(f + strlen(f) - 3, "/..") == 0);
    if (bad)
        par__manifest_problem(c, "mcp.config_file",
                              "must be a path inside the package (relative, no '..'), such as "
                              "mcp.json");
    if (bad || !get_bool(c, mcp, "enabled", "mcp.enabled", 1))
        free(f);
    else
        c->m->mcp_config_file = f;
}

static void add_main_export(check_t *c)
{
    par_manifest_t *m = c->m;
    par_export_t *e = add_export(c);
    if (e == NULL)
        return;
    e->name = xstrdup(c, "");
    e->description = xstrdup(c, m->description);
    e->entrypoint = xstrdup(c, m->entrypoint);
    e->field = xstrdup(c, "entrypoint");
    e->is_public = 1;
    strlist_copy(c, &e->capabilities, &m->capabilities);
}

static void parse_root(check_t *c, yaml_node_t *root)
{
    par_manifest_t *m = c->m;
    par__manifest_check_keys(c, root, "", top_keys, UNKNOWN_WARN_FAR);

    m->name = get_required_str(c, root, "name", "name");
    if (m->name && strlen(m->name) > NAME_MAX_LEN)
        par__manifest_problem(c, "name", "must be at most %d characters", NAME_MAX_LEN);
    else if (m->name && !par_manifest_valid_name(m->name, strlen(m->name)))
        par__manifest_problem(c, "name", "must match " NAME_RE);
    m->format_version = capped(c, get_str(c, root, "version", "version"), NAME_MAX_LEN, "version");
    if (m->format_version == NULL)
        m->format_version = xstrdup(c, "1.0");
    m->display_name = get_str_or_empty(c, root, "display_name", "display_name");
    m->description = get_str_or_empty(c, root, "description", "description");
    m->author = get_str_or_empty(c, root, "author", "author");
    m->license = get_str_or_empty(c, root, "license", "license");
    parse_runtime(c, root);
    m->entrypoint =
        capped(c, get_str(c, root, "entrypoint", "entrypoint"), ENTRYPOINT_MAX_LEN, "entrypoint");
    if (m->entrypoint)
        par__manifest_check_entrypoint(c, "entrypoint", m->entrypoint, m->runtime_kind);
    get_strlist(c, root, "capabilities", "capabilities", NAME_MAX_LEN, &m->capabilities);
    get_strlist(c, root, "dependencies", "dependencies", 0, &m->dependencies);
    yaml_node_t *env = field(c, root, "environment");
    if (env)
        parse_environment(c, env);
    m->has_rest = field(c, root, "rest") != NULL;
    m->has_a2a = field(c, root, "a2a") != NULL;
    m->has_ui = field(c, root, "ui") != NULL;
    yaml_node_t *mcp = field(c, root, "mcp");
    if (mcp)
        parse_mcp(c, mcp);

    /* Export order: main, sub_agents (file order), metadata.par.exports (file order). */
    if (m->entrypoint)
        add_main_export(c);
    parse_metadata(c, root);
    /* metadata.par's skills and input schema describe the main export */
    if (m->entrypoint && m->export_count > 0 && m->exports[0].name[0] == '\0') {
        if (m->skills_json)
            m->exports[0].skills_json = xstrdup(c, m->skills_json);
        if (m->input_schema_json)
            m->exports[0].input_schema_json = xstrdup(c, m->input_schema_json);
    }
}

/* ---- public ------------------------------------------------------------------------------ */

int par_manifest_parse(const char *yaml, size_t len, par_manifest_t **out, par_buf_t *errors)
{
    par_yaml_t y = {0};
    check_t c = {errors, 0, false, NULL, &y};
    int rc;

    *out = NULL;
    if (len > PAR_MANIFEST_MAX_BYTES) {
        par__manifest_report(&c, "%zu bytes, larger than the %d-byte limit for a manifest", len,
                             PAR_MANIFEST_MAX_BYTES);
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    if (yaml == NULL)
        yaml = "", len = 0;
    if (!par__manifest_chars_ok(&c, yaml, len)) {
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    if ((rc = par__manifest_yaml_load(&c, yaml, len)) != PAR_OK)
        goto out;
    if ((c.m = calloc(1, sizeof(*c.m))) == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    c.m->par_abi = -1;
    parse_root(&c, par_yaml_root(&y));
    rc = c.oom ? PAR_E_NO_MEMORY : c.nerrors > 0 ? PAR_E_INVALID_PACKAGE : PAR_OK;
out:
    if (c.nerrors > MAX_SHOWN && errors)
        par_buf_appendf(errors, "agent.yaml: %u more problems not shown\n", c.nerrors - MAX_SHOWN);
    if (rc == PAR_E_NO_MEMORY && errors)
        par_buf_appends(errors, "agent.yaml: out of memory while reading the manifest\n");
    par_yaml_free(&y);
    /* success means a manifest and no problem reported */
    assert(rc != PAR_OK || (c.m != NULL && c.nerrors == 0 && !c.oom));
    if (rc == PAR_OK)
        *out = c.m;
    else
        par_manifest_free(c.m);
    return rc;
}

void par_manifest_free(par_manifest_t *m)
{
    if (m == NULL)
        return;
    free(m->name);
    free(m->format_version);
    free(m->display_name);
    free(m->description);
    free(m->author);
    free(m->license);
    free(m->entrypoint);
    free(m->runtime);
    free(m->package_version);
    strlist_free(&m->capabilities);
    strlist_free(&m->dependencies);
    strlist_free(&m->warnings);
    for (size_t i = 0; i < m->environment_count; i++) {
        free(m->environment[i].key);
        free(m->environment[i].value);
    }
    free(m->environment);
    free(m->par_requires);
    for (size_t i = 0; m->calls && m->calls[i]; i++)
        free(m->calls[i]);
    free(m->calls);
    free(m->skills_json);
    free(m->input_schema_json);
    free(m->mcp_config_file);
    for (size_t i = 0; i < m->export_count; i++)
        export_free(&m->exports[i]);
    free(m->exports);
    free(m);
}

const par_export_t *par_manifest_export(const par_manifest_t *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < m->export_count; i++)
        if (strcmp(m->exports[i].name, name) == 0)
            return &m->exports[i];
    return NULL;
}

int par_manifest_has_capability(const par_manifest_t *m, const char *cap)
{
    for (size_t i = 0; i < m->capabilities.count; i++)
        if (strcmp(m->capabilities.items[i], cap) == 0)
            return 1;
    return 0;
}
