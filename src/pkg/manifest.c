/*
 * pkg/manifest.c — agent.yaml parsing and validation (see manifest.h).
 *
 * Owns: turning agent.yaml bytes into a par_manifest_t, or into a list of
 * every problem found. Called by runtime/deploy.c and the CLI (pack,
 * inspect). It parses bytes only: it never opens files, never runs package
 * code and never prints (libfyaml's diagnostics are collected, not written to
 * stderr). Any thread: no global state.
 *
 * How it works:
 *  1. load: the bytes must be UTF-8 made of YAML's printable characters
 *     (checked here first: libfyaml 0.7.12 hangs on some invalid UTF-8 and
 *     stops at a NUL). libfyaml then builds exactly one document (a second
 *     `---` document is an error, as with PyYAML's safe_load that pixell-kit
 *     uses). Aliases and merge keys are resolved like PyYAML does, after
 *     checking that they do not expand into a huge tree ("billion laughs").
 *     Syntax errors become `agent.yaml: line L, column C: <libfyaml's message>`.
 *  2. check: the tree is walked with a `check_t` that collects problems as
 *     `agent.yaml: <field path>: <what is wrong>`; a problem never stops the
 *     walk, so one run reports all of them (the first MAX_SHOWN are written,
 *     the rest are counted).
 *
 * Schema decisions (DESIGN.md section 2 leaves these open):
 *  - A YAML null (`key:`, `key: ~`, `key: null`) counts as absent, so a
 *    required field set to null is "required field missing".
 *  - Scalars are text: `description: 5` is the string "5". Booleans are
 *    true/false (any case pattern YAML allows); integers are plain decimal.
 *  - Unknown keys: top level → warning (forward compatibility); under
 *    `metadata` → ignored (the ecosystem keeps extras there); under
 *    `metadata.par` and in `metadata.par.exports[]` → warning (PAR's own
 *    block: a typo should be visible); in `metadata.par.limits` → error.
 *
 * Known defects of Debian's libfyaml 0.7.12 that no input check here stops:
 *  - "? p ] x:\t|" (invalid YAML) crashes inside fy_parser_destroy (found by
 *    fuzzing this parser);
 *  - a scalar with many '' escapes leaks ~1 KiB when read (upstream issue
 *    #233, fixed after 0.7.12).
 * Parsing in a helper process, or a newer libfyaml, removes both.
 */
#include "pkg/manifest.h"

#include <ctype.h>
#include <libfyaml.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

/* Problems written to `errors`; later ones are only counted. */
#define MAX_SHOWN 100
/* Nodes that aliases may add when resolved, and how deep they may nest. */
#define ALIAS_BUDGET 10000
#define ALIAS_MAX_DEPTH 256
/* pixell-kit's default when `runtime` is omitted (its AgentManifest model). */
#define DEFAULT_RUNTIME "python3.11"
#define NAME_RE "^[a-z][a-z0-9-]*$"
#define NAME_MAX_LEN 64

typedef struct check {
    par_buf_t *errors;
    unsigned nerrors;
    bool oom;
    par_manifest_t *m;
} check_t;

/* ---- reporting --------------------------------------------------------------------------- */

static void report(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(check_t *c, const char *fmt, ...)
{
    if (c->nerrors++ >= MAX_SHOWN || c->errors == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    par_buf_appends(c->errors, "agent.yaml: ");
    par_buf_vappendf(c->errors, fmt, ap);
    par_buf_appends(c->errors, "\n");
    va_end(ap);
}

/* One problem at a field path: "agent.yaml: <path>: <message>". */
static void problem(check_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(check_t *c, const char *path, const char *fmt, ...)
{
    if (c->nerrors++ >= MAX_SHOWN || c->errors == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    par_buf_appendf(c->errors, "agent.yaml: %s: ", path);
    par_buf_vappendf(c->errors, fmt, ap);
    par_buf_appends(c->errors, "\n");
    va_end(ap);
}

/* A user-supplied key made safe for a message or a path: at most 64 bytes,
 * control characters shown as '?', so that a key cannot forge log lines. */
static const char *shown(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    if (s == NULL)
        s = "(not a string)";
    for (; *s && n + 4 < size && n < 64; s++)
        buf[n++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    if (*s) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- value rules ------------------------------------------------------------------------- */

int par_manifest_valid_name(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > NAME_MAX_LEN || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* A semver numeric identifier: digits, no leading zero unless it is "0". */
static int numeric_ident(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return !(n > 1 && s[0] == '0');
}

/* Dot-separated non-empty [0-9A-Za-z-] identifiers; pre-release identifiers
 * that are all digits must not have leading zeros, build identifiers may. */
static int ident_list(const char *s, size_t n, int no_leading_zero)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (i == start)
                return 0;
            int all_digits = 1;
            for (size_t k = start; k < i; k++)
                all_digits &= isdigit((unsigned char)s[k]) != 0;
            if (no_leading_zero && all_digits && !numeric_ident(s + start, i - start))
                return 0;
            start = i + 1;
        } else if (!isalnum((unsigned char)s[i]) && s[i] != '-') {
            return 0;
        }
    }
    return 1;
}

int par_manifest_valid_semver(const char *s, size_t len)
{
    if (s == NULL)
        return 0;
    size_t i = 0;
    for (int part = 0; part < 3; part++) {
        size_t b = i;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        if (!numeric_ident(s + b, i - b))
            return 0;
        if (part < 2) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
    }
    const char *plus = memchr(s + i, '+', len - i);
    size_t pre_end = plus ? (size_t)(plus - s) : len;
    if (i < pre_end && (s[i] != '-' || !ident_list(s + i + 1, pre_end - i - 1, 1)))
        return 0;
    if (plus && !ident_list(plus + 1, len - pre_end - 1, 0))
        return 0;
    return 1;
}

/* A C (and ASCII Python) identifier. */
static int is_ident(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* Checks an entrypoint against the runtime's form:
 *   python: "pkg.module:function" (dotted identifiers, an identifier)
 *   native: "dir/lib.so:symbol"   (relative, no ".." component, ends in .so; a C identifier)
 *   other:  "<non-empty>:<non-empty>" (no loader knows more; deploy refuses it anyway) */
static void check_entrypoint(check_t *c, const char *path, const char *e, par_runtime_kind_t kind)
{
    const char *colon = strchr(e, ':');
    if (colon == NULL || strchr(colon + 1, ':') || colon == e || colon[1] == '\0') {
        problem(c, path, "must be %s (exactly one ':' between two non-empty parts)",
                kind == PAR_RUNTIME_NATIVE ? "path/lib.so:symbol" : "module:function");
        return;
    }
    size_t llen = (size_t)(colon - e);
    const char *fn = colon + 1;
    char b[80];
    if (kind == PAR_RUNTIME_NATIVE) {
        if (e[0] == '/')
            problem(c, path, "library path must be relative to the package root");
        for (const char *p = e; p < colon; p++) {
            if (p[0] == '.' && p[1] == '.' && (p == e || p[-1] == '/') &&
                (p + 2 == colon || p[2] == '/')) {
                problem(c, path, "library path must not contain '..'");
                break;
            }
        }
        const char *slash = memrchr(e, '/', llen);
        size_t base = slash ? (size_t)(colon - slash - 1) : llen;
        if (base <= 3 || memcmp(colon - 3, ".so", 3) != 0)
            problem(c, path, "library path must end in .so (e.g. lib/libagent.so:symbol)");
        if (!is_ident(fn, strlen(fn)))
            problem(c, path, "'%s' is not a valid C symbol name", shown(fn, b, sizeof(b)));
    } else if (kind == PAR_RUNTIME_PYTHON) {
        size_t start = 0;
        for (size_t i = 0; i <= llen; i++) {
            if (i == llen || e[i] == '.') {
                if (!is_ident(e + start, i - start)) {
                    problem(c, path, "'%.*s' is not a dotted Python module name", (int)llen, e);
                    break;
                }
                start = i + 1;
            }
        }
        if (!is_ident(fn, strlen(fn)))
            problem(c, path, "'%s' is not a valid Python function name", shown(fn, b, sizeof(b)));
    }
}

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

static void strlist_add(check_t *c, par_strlist_t *l, const char *s)
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
        strlist_add(c, dst, src->items[i]);
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
    strlist_free(&e->capabilities);
}

/* ---- reading nodes ----------------------------------------------------------------------- */

/* YAML 1.2 core schema nulls: an empty plain scalar, ~, null, Null, NULL. */
static bool is_null(struct fy_node *n)
{
    if (n == NULL)
        return true;
    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    size_t len = 0;
    const char *s = fy_node_get_scalar(n, &len);
    if (s == NULL)
        return true;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(*nulls); i++)
        if (len == strlen(nulls[i]) && memcmp(s, nulls[i], len) == 0)
            return true;
    return false;
}

/* The value of `key` in `map`; NULL when absent or null. */
static struct fy_node *field(struct fy_node *map, const char *key)
{
    if (map == NULL || fy_node_get_type(map) != FYNT_MAPPING)
        return NULL;
    struct fy_node *n = fy_node_mapping_lookup_by_string(map, key, FY_NT);
    return is_null(n) ? NULL : n;
}

static bool is_type(struct fy_node *n, enum fy_node_type t)
{
    return n != NULL && fy_node_get_type(n) == t;
}

/* A scalar's text, NUL-terminated; NULL with a problem when `n` is not a
 * scalar or holds a NUL byte (which C strings would silently cut). */
static const char *text(check_t *c, struct fy_node *n, const char *path, const char *expected)
{
    if (!is_type(n, FYNT_SCALAR)) {
        problem(c, path, "must be %s", expected);
        return NULL;
    }
    size_t len = 0;
    const char *s = fy_node_get_scalar0(n);
    if (s == NULL) {
        c->oom = true;
        return NULL;
    }
    fy_node_get_scalar(n, &len);
    if (strlen(s) != len) {
        problem(c, path, "must not contain NUL characters");
        return NULL;
    }
    return s;
}

/* Copy of the string at `key`; NULL when absent, null or wrong (a problem). */
static char *get_str(check_t *c, struct fy_node *map, const char *key, const char *path)
{
    struct fy_node *n = field(map, key);
    if (n == NULL)
        return NULL;
    return xstrdup(c, text(c, n, path, "a string"));
}

/* Like get_str, with "required field missing" when absent or null. */
static char *get_required_str(check_t *c, struct fy_node *map, const char *key, const char *path)
{
    if (field(map, key) == NULL) {
        problem(c, path, "required field missing");
        return NULL;
    }
    return get_str(c, map, key, path);
}

static char *get_str_or_empty(check_t *c, struct fy_node *map, const char *key, const char *path)
{
    char *s = get_str(c, map, key, path);
    return s ? s : xstrdup(c, "");
}

static int get_bool(check_t *c, struct fy_node *map, const char *key, const char *path, int dflt)
{
    struct fy_node *n = field(map, key);
    if (n == NULL)
        return dflt;
    const char *s = is_type(n, FYNT_SCALAR) ? fy_node_get_scalar0(n) : NULL;
    if (s && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")))
        return 1;
    if (s && (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")))
        return 0;
    problem(c, path, "must be true or false");
    return dflt;
}

/* A plain decimal integer in [min, max]. Returns false (and reports `what`)
 * for anything else: signs, fractions, hex, overflow. */
static bool get_uint(check_t *c, struct fy_node *n, const char *path, uint64_t min, uint64_t max,
                     const char *what, uint64_t *out)
{
    const char *s = is_type(n, FYNT_SCALAR) ? fy_node_get_scalar0(n) : NULL;
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
        problem(c, path, "must be %s", what);
        return false;
    }
    *out = v;
    return true;
}

/* A list of strings at `key` (absent or null = empty list). */
static void get_strlist(check_t *c, struct fy_node *map, const char *key, const char *path,
                        par_strlist_t *out)
{
    struct fy_node *n = field(map, key);
    if (n == NULL)
        return;
    if (!is_type(n, FYNT_SEQUENCE)) {
        problem(c, path, "must be a list of strings");
        return;
    }
    void *it = NULL;
    struct fy_node *e;
    for (size_t i = 0; (e = fy_node_sequence_iterate(n, &it)) != NULL; i++) {
        char p[200];
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        const char *s = is_null(e) ? NULL : text(c, e, p, "a string");
        if (is_null(e))
            problem(c, p, "must be a string, not null");
        if (s)
            strlist_add(c, out, s);
    }
}

/* Warns about keys of `map` not in `known` (NULL-terminated). */
static void warn_unknown_keys(check_t *c, struct fy_node *map, const char *path,
                              const char *const *known, const char *what)
{
    void *it = NULL;
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(map, &it)) != NULL) {
        struct fy_node *kn = fy_node_pair_key(pr);
        const char *k = is_type(kn, FYNT_SCALAR) ? fy_node_get_scalar0(kn) : NULL;
        bool found = false;
        for (size_t i = 0; k && known[i] && !found; i++)
            found = strcmp(k, known[i]) == 0;
        if (found)
            continue;
        char b[80], w[400];
        snprintf(w, sizeof(w), "agent.yaml: %s%s%s: %s, ignored", path, *path ? "." : "",
                 shown(k, b, sizeof(b)), what);
        strlist_add(c, &c->m->warnings, w);
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
static char *export_name(check_t *c, struct fy_node *n, const char *p, bool is_sub_agent)
{
    char path[240];
    snprintf(path, sizeof(path), "%s.name", p);
    char *name = get_required_str(c, n, "name", path);
    if (name == NULL)
        return NULL;
    size_t len = strlen(name);
    const char *why = NULL;
    if (len > NAME_MAX_LEN)
        why = "must be at most 64 characters";
    else if (!par_manifest_valid_name(name, len))
        why = "must match " NAME_RE;
    if (why) {
        problem(c, path, "%s", why);
    } else if (export_exists(c->m, name)) {
        if (is_sub_agent)
            problem(c, path, "duplicate sub-agent '%s'", name);
        else
            problem(c, path, "'%s' is already the name of a sub-agent or export", name);
        why = "duplicate";
    }
    if (why) {
        free(name);
        return NULL;
    }
    return name;
}

static void parse_sub_agents(check_t *c, struct fy_node *seq)
{
    par_manifest_t *m = c->m;
    if (!is_type(seq, FYNT_SEQUENCE)) {
        problem(c, "metadata.sub_agents", "must be a list of {name, description, public, ...}");
        return;
    }
    void *it = NULL;
    struct fy_node *n;
    for (size_t i = 0; (n = fy_node_sequence_iterate(seq, &it)) != NULL; i++) {
        char p[64], path[240];
        snprintf(p, sizeof(p), "metadata.sub_agents[%zu]", i);
        if (!is_type(n, FYNT_MAPPING)) {
            problem(c, p, "must be a mapping with at least a name");
            continue;
        }
        /* Every field is read even when the name is bad, so that all problems show. */
        par_export_t tmp = {0};
        tmp.name = export_name(c, n, p, true);
        snprintf(path, sizeof(path), "%s.description", p);
        tmp.description = get_str_or_empty(c, n, "description", path);
        snprintf(path, sizeof(path), "%s.public", p);
        tmp.is_public = get_bool(c, n, "public", path, 1);
        snprintf(path, sizeof(path), "%s.capabilities", p);
        get_strlist(c, n, "capabilities", path, &tmp.capabilities);
        snprintf(path, sizeof(path), "%s.entrypoint", p);
        tmp.entrypoint = get_str(c, n, "entrypoint", path);
        if (tmp.entrypoint) {
            check_entrypoint(c, path, tmp.entrypoint, m->runtime_kind);
        } else if (m->entrypoint) {
            /* the handler learns which sub-agent was asked from context.sub_agent */
            tmp.entrypoint = xstrdup(c, m->entrypoint);
        } else if (field(n, "entrypoint") == NULL) {
            problem(c, path, "required: the package has no top-level entrypoint to inherit");
        }
        par_export_t *e = tmp.name && tmp.entrypoint ? add_export(c) : NULL;
        if (e)
            *e = tmp;
        else
            export_free(&tmp);
    }
}

static void parse_par_exports(check_t *c, struct fy_node *seq)
{
    static const char *const known[] = {"name",   "entrypoint",   "description",
                                        "public", "capabilities", NULL};
    if (!is_type(seq, FYNT_SEQUENCE)) {
        problem(c, "metadata.par.exports", "must be a list of {name, entrypoint, ...}");
        return;
    }
    void *it = NULL;
    struct fy_node *n;
    for (size_t i = 0; (n = fy_node_sequence_iterate(seq, &it)) != NULL; i++) {
        char p[64], path[240];
        snprintf(p, sizeof(p), "metadata.par.exports[%zu]", i);
        if (!is_type(n, FYNT_MAPPING)) {
            problem(c, p, "must be a mapping with name and entrypoint");
            continue;
        }
        warn_unknown_keys(c, n, p, known, "unknown key");
        par_export_t tmp = {0};
        tmp.name = export_name(c, n, p, false);
        snprintf(path, sizeof(path), "%s.entrypoint", p);
        tmp.entrypoint = get_required_str(c, n, "entrypoint", path);
        if (tmp.entrypoint)
            check_entrypoint(c, path, tmp.entrypoint, c->m->runtime_kind);
        snprintf(path, sizeof(path), "%s.public", p);
        tmp.is_public = get_bool(c, n, "public", path, 1);
        snprintf(path, sizeof(path), "%s.description", p);
        tmp.description = get_str_or_empty(c, n, "description", path);
        snprintf(path, sizeof(path), "%s.capabilities", p);
        get_strlist(c, n, "capabilities", path, &tmp.capabilities);
        par_export_t *e = tmp.name && tmp.entrypoint ? add_export(c) : NULL;
        if (e)
            *e = tmp;
        else
            export_free(&tmp);
    }
}

/* ---- metadata.par ------------------------------------------------------------------------ */

static void parse_limits(check_t *c, struct fy_node *lim)
{
    static const char *const names[] = {"timeout_ms", "memory_mb", "concurrency", "max_input_kb"};
    par_limits_t *l = &c->m->limits;
    uint32_t *slots[] = {&l->timeout_ms, &l->memory_mb, &l->concurrency, &l->max_input_kb};
    if (!is_type(lim, FYNT_MAPPING)) {
        problem(c, "metadata.par.limits", "must be a mapping such as {timeout_ms: 30000}");
        return;
    }
    void *it = NULL;
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(lim, &it)) != NULL) {
        struct fy_node *kn = fy_node_pair_key(pr);
        const char *k = is_type(kn, FYNT_SCALAR) ? fy_node_get_scalar0(kn) : NULL;
        char b[80], path[160];
        snprintf(path, sizeof(path), "metadata.par.limits.%s", shown(k, b, sizeof(b)));
        size_t i = 0;
        while (i < 4 && (k == NULL || strcmp(k, names[i]) != 0))
            i++;
        if (i == 4) {
            problem(c, path,
                    "unknown limit (known: timeout_ms, memory_mb, concurrency, "
                    "max_input_kb)");
            continue;
        }
        uint64_t v;
        if (get_uint(c, fy_node_pair_value(pr), path, 0, UINT32_MAX,
                     "a non-negative integer (0 = the operator's default)", &v))
            *slots[i] = (uint32_t)v;
    }
}

static void parse_par(check_t *c, struct fy_node *par)
{
    static const char *const known[] = {"requires", "abi", "limits", "exports", "calls", NULL};
    par_manifest_t *m = c->m;
    if (!is_type(par, FYNT_MAPPING)) {
        problem(c, "metadata.par", "must be a mapping {requires, abi, limits, exports}");
        return;
    }
    warn_unknown_keys(c, par, "metadata.par", known, "unknown key");
    /* Only stored: the range is matched against the runtime's version at deploy. */
    m->par_requires = get_str(c, par, "requires", "metadata.par.requires");
    if (m->par_requires && m->par_requires[strspn(m->par_requires, " \t")] == '\0')
        problem(c, "metadata.par.requires", "must be a non-empty semver range such as \">=1.0.0\"");
    struct fy_node *abi = field(par, "abi");
    uint64_t v;
    if (abi && get_uint(c, abi, "metadata.par.abi", 1, INT_MAX, "a positive integer", &v))
        m->par_abi = (int)v;
    struct fy_node *lim = field(par, "limits");
    if (lim)
        parse_limits(c, lim);
    struct fy_node *ex = field(par, "exports");
    if (ex)
        parse_par_exports(c, ex);
    par_strlist_t calls = {NULL, 0};
    get_strlist(c, par, "calls", "metadata.par.calls", &calls);
    if (field(par, "calls") &&
        (m->calls = realloc(calls.items, (calls.count + 1) * sizeof(char *))) != NULL)
        m->calls[calls.count] = NULL; /* declared, even when empty: calls nothing */
    else
        strlist_free(&calls);
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

static void parse_runtime(check_t *c, struct fy_node *root)
{
    par_manifest_t *m = c->m;
    m->runtime = get_str(c, root, "runtime", "runtime");
    if (m->runtime != NULL && m->runtime[0] == '\0')
        problem(c, "runtime", "must not be empty (python3.11, native, ...)");
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
        m->runtime_kind = PAR_RUNTIME_OTHER; /* refused at deploy: "no loader for runtime X" */
}

static void parse_environment(check_t *c, struct fy_node *env)
{
    par_manifest_t *m = c->m;
    if (!is_type(env, FYNT_MAPPING)) {
        problem(c, "environment", "must be a mapping of NAME: value");
        return;
    }
    void *it = NULL;
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(env, &it)) != NULL) {
        struct fy_node *kn = fy_node_pair_key(pr), *vn = fy_node_pair_value(pr);
        const char *k = is_type(kn, FYNT_SCALAR) ? fy_node_get_scalar0(kn) : NULL;
        char b[80], path[160];
        snprintf(path, sizeof(path), "environment.%s", shown(k, b, sizeof(b)));
        if (k == NULL || !is_ident(k, strlen(k))) {
            problem(c, path, "must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
            continue;
        }
        if (is_null(vn)) {
            problem(c, path, "must have a value (write \"\" for an empty one)");
            continue;
        }
        const char *v = text(c, vn, path, "a string, number or boolean");
        if (v == NULL)
            continue;
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
}

static void parse_metadata(check_t *c, struct fy_node *root)
{
    par_manifest_t *m = c->m;
    struct fy_node *md = field(root, "metadata");
    if (md == NULL) {
        problem(c, "metadata.version", "required field missing");
        return;
    }
    if (!is_type(md, FYNT_MAPPING)) {
        problem(c, "metadata", "must be a mapping with at least version");
        return;
    }
    m->package_version = get_required_str(c, md, "version", "metadata.version");
    if (m->package_version &&
        !par_manifest_valid_semver(m->package_version, strlen(m->package_version)))
        problem(c, "metadata.version",
                "must be a semantic version MAJOR.MINOR.PATCH[-pre][+build] such as 1.2.0");
    struct fy_node *subs = field(md, "sub_agents");
    if (subs)
        parse_sub_agents(c, subs);
    struct fy_node *par = field(md, "par");
    if (par)
        parse_par(c, par);
}

static void parse_root(check_t *c, struct fy_node *root)
{
    par_manifest_t *m = c->m;
    warn_unknown_keys(c, root, "", top_keys, "unknown top-level key");

    m->name = get_required_str(c, root, "name", "name");
    if (m->name && strlen(m->name) > NAME_MAX_LEN)
        problem(c, "name", "must be at most 64 characters");
    else if (m->name && !par_manifest_valid_name(m->name, strlen(m->name)))
        problem(c, "name", "must match " NAME_RE);
    m->format_version = get_str(c, root, "version", "version");
    if (m->format_version == NULL)
        m->format_version = xstrdup(c, "1.0");
    m->display_name = get_str_or_empty(c, root, "display_name", "display_name");
    m->description = get_str_or_empty(c, root, "description", "description");
    m->author = get_str_or_empty(c, root, "author", "author");
    m->license = get_str_or_empty(c, root, "license", "license");
    parse_runtime(c, root);
    m->entrypoint = get_str(c, root, "entrypoint", "entrypoint");
    if (m->entrypoint)
        check_entrypoint(c, "entrypoint", m->entrypoint, m->runtime_kind);
    get_strlist(c, root, "capabilities", "capabilities", &m->capabilities);
    get_strlist(c, root, "dependencies", "dependencies", &m->dependencies);
    struct fy_node *env = field(root, "environment");
    if (env)
        parse_environment(c, env);
    m->has_rest = field(root, "rest") != NULL;
    m->has_a2a = field(root, "a2a") != NULL;
    m->has_ui = field(root, "ui") != NULL;

    /* Export order: main, sub_agents (file order), metadata.par.exports (file order). */
    if (m->entrypoint) {
        par_export_t *e = add_export(c);
        if (e) {
            e->name = xstrdup(c, "");
            e->description = xstrdup(c, m->description);
            e->entrypoint = xstrdup(c, m->entrypoint);
            e->is_public = 1;
            strlist_copy(c, &e->capabilities, &m->capabilities);
        }
    }
    parse_metadata(c, root);
}

/* ---- loading YAML ------------------------------------------------------------------------ */

/* Decodes one strict UTF-8 sequence (no overlongs, surrogates or values past
 * U+10FFFF) at s[0..n). Returns its length, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t v, min;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        len = 2, v = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, v = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, v = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* YAML 1.2 c-printable, as PyYAML (pixell-kit) enforces it too. */
static bool yaml_printable(uint32_t c)
{
    return c == 0x09 || c == 0x0a || c == 0x0d || (c >= 0x20 && c <= 0x7e) || c == 0x85 ||
           (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) ||
           (c >= 0x10000 && c <= 0x10ffff);
}

/* Refuses bytes that are not UTF-8 or not printable before libfyaml sees them:
 * libfyaml 0.7.12 loops forever on some invalid UTF-8 (upstream issue #101)
 * and silently stops reading at a NUL byte. Reports the first offender only. */
static bool chars_ok(check_t *c, const char *yaml, size_t len)
{
    const unsigned char *s = (const unsigned char *)yaml;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0) {
            report(c,
                   "line %d, column %d: byte 0x%02X is not valid UTF-8 (agent.yaml must be "
                   "UTF-8 text)",
                   line, col, s[i]);
            return false;
        }
        if (!yaml_printable(cp)) {
            report(c, "line %d, column %d: character U+%04X is not allowed in YAML", line, col,
                   (unsigned)cp);
            return false;
        }
        i += n;
        if (cp == '\n')
            line++, col = 1;
        else
            col++;
    }
    return true;
}

/* libfyaml's collected errors, already 1-based, as "line L, column C: msg". */
static unsigned report_diag(check_t *c, struct fy_diag *diag)
{
    unsigned n = 0;
    void *it = NULL;
    struct fy_diag_error *de;
    while ((de = fy_diag_errors_iterate(diag, &it)) != NULL) {
        if (de->type < FYET_ERROR)
            continue;
        report(c, "line %d, column %d: %s", de->line, de->column, de->msg ? de->msg : "error");
        n++;
    }
    return n;
}

/* Walks the tree counting the nodes that resolving aliases would add. False
 * (with a problem) when that exceeds ALIAS_BUDGET or nests past
 * ALIAS_MAX_DEPTH: a few bytes of anchors can otherwise expand into gigabytes,
 * and an alias inside its own anchor never ends. */
static bool aliases_bounded(check_t *c, struct fy_node *n, bool expanding, int depth,
                            size_t *budget)
{
    if (n == NULL)
        return true;
    if (depth > ALIAS_MAX_DEPTH || (expanding && (*budget)-- == 0)) {
        report(c,
               "YAML aliases expand to more than %d nodes or %d levels (or refer to "
               "themselves); agent.yaml must stay small",
               ALIAS_BUDGET, ALIAS_MAX_DEPTH);
        return false;
    }
    void *it = NULL;
    switch (fy_node_get_type(n)) {
    case FYNT_SCALAR:
        /* an undefined alias resolves to NULL; fy_document_resolve reports it */
        if (fy_node_is_alias(n))
            return aliases_bounded(c, fy_node_resolve_alias(n), true, depth + 1, budget);
        return true;
    case FYNT_SEQUENCE: {
        struct fy_node *e;
        while ((e = fy_node_sequence_iterate(n, &it)) != NULL)
            if (!aliases_bounded(c, e, expanding, depth + 1, budget))
                return false;
        return true;
    }
    case FYNT_MAPPING: {
        struct fy_node_pair *pr;
        while ((pr = fy_node_mapping_iterate(n, &it)) != NULL)
            if (!aliases_bounded(c, fy_node_pair_key(pr), expanding, depth + 1, budget) ||
                !aliases_bounded(c, fy_node_pair_value(pr), expanding, depth + 1, budget))
                return false;
        return true;
    }
    }
    return true;
}

static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    /* errors are collected through fy_diag_errors_iterate; nothing is printed */
    (void)diag, (void)user, (void)buf, (void)len;
}

/* The libfyaml objects behind one parse; released by yaml_close in reverse order. */
typedef struct yaml_in {
    struct fy_diag *diag;
    struct fy_parser *parser;
    struct fy_document *doc;
} yaml_in_t;

static void yaml_close(yaml_in_t *y)
{
    if (y->doc)
        fy_parse_document_destroy(y->parser, y->doc);
    if (y->parser)
        fy_parser_destroy(y->parser);
    if (y->diag)
        fy_diag_destroy(y->diag);
}

/* Parses exactly one YAML document into y->doc with aliases resolved and a
 * mapping at its root. Otherwise reports the problems and returns the status. */
static int yaml_load(check_t *c, yaml_in_t *y, const char *yaml, size_t len)
{
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG};
    struct fy_document *second = NULL;
    struct fy_node *root;
    size_t budget = ALIAS_BUDGET;
    int rc = PAR_E_INVALID_PACKAGE;

    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_discard;
    dcfg.colorize = false;
    if ((y->diag = fy_diag_create(&dcfg)) == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    fy_diag_set_collect_errors(y->diag, true);
    pcfg.diag = y->diag;
    if ((y->parser = fy_parser_create(&pcfg)) == NULL ||
        fy_parser_set_string(y->parser, yaml, len) != 0) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    y->doc = fy_parse_load_document(y->parser);
    /* PyYAML's safe_load (pixell-kit) refuses a stream of several documents too */
    if (y->doc != NULL && (second = fy_parse_load_document(y->parser)) != NULL) {
        report(c, "holds more than one YAML document ('---'); it must hold exactly one");
        goto out;
    }
    if (report_diag(c, y->diag) > 0 || fy_diag_got_error(y->diag)) {
        if (c->nerrors == 0)
            report(c, "not valid YAML");
        goto out;
    }
    root = y->doc ? fy_document_root(y->doc) : NULL;
    if (root == NULL || is_null(root)) {
        report(c, "the document is empty; it must be a mapping with at least name and "
                  "metadata.version");
        goto out;
    }
    if (!is_type(root, FYNT_MAPPING)) {
        report(c, "the document must be a mapping of fields (name, metadata, ...), not a %s",
               is_type(root, FYNT_SEQUENCE) ? "list" : "scalar");
        goto out;
    }
    if (!aliases_bounded(c, root, false, 0, &budget))
        goto out;
    if (fy_document_resolve(y->doc) != 0) {
        if (report_diag(c, y->diag) == 0)
            report(c, "cannot resolve YAML aliases");
        goto out;
    }
    rc = PAR_OK;
out:
    if (second)
        fy_parse_document_destroy(y->parser, second);
    return rc;
}

/* ---- public ------------------------------------------------------------------------------ */

int par_manifest_parse(const char *yaml, size_t len, par_manifest_t **out, par_buf_t *errors)
{
    check_t c = {errors, 0, false, NULL};
    yaml_in_t y = {0};
    int rc;

    *out = NULL;
    if (len > PAR_MANIFEST_MAX_BYTES) {
        report(&c, "%zu bytes, larger than the %d-byte limit for a manifest", len,
               PAR_MANIFEST_MAX_BYTES);
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    if (yaml == NULL)
        yaml = "", len = 0;
    if (!chars_ok(&c, yaml, len)) {
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    if ((rc = yaml_load(&c, &y, yaml, len)) != PAR_OK)
        goto out;
    if ((c.m = calloc(1, sizeof(*c.m))) == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    c.m->par_abi = -1;
    parse_root(&c, fy_document_root(y.doc));
    rc = c.oom ? PAR_E_NO_MEMORY : c.nerrors > 0 ? PAR_E_INVALID_PACKAGE : PAR_OK;
out:
    if (c.nerrors > MAX_SHOWN && errors)
        par_buf_appendf(errors, "agent.yaml: %u more problems not shown\n", c.nerrors - MAX_SHOWN);
    if (rc == PAR_E_NO_MEMORY && errors)
        par_buf_appends(errors, "agent.yaml: out of memory while reading the manifest\n");
    yaml_close(&y);
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
    for (size_t i = 0; m->calls && m->calls[i]; i++)
        free(m->calls[i]);
    free(m->calls);
    for (size_t i = 0; i < m->environment_count; i++) {
        free(m->environment[i].key);
        free(m->environment[i].value);
    }
    free(m->environment);
    free(m->par_requires);
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
