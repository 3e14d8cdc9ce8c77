/*
 * pkg/manifest.c — agent.yaml parsing and validation (see manifest.h).
 *
 * libfyaml builds the document; this file walks it with a small "checker"
 * that knows the current field path, so that every problem is reported as
 * `agent.yaml: <path>: <what is wrong>` and every problem is reported, not
 * just the first. Parsing never runs package code and never touches files.
 */
#include "pkg/manifest.h"

#include <ctype.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

typedef struct check {
    par_buf_t *errors;
    int nerrors;
    par_manifest_t *m;
} check_t;

static void problem(check_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(check_t *c, const char *path, const char *fmt, ...)
{
    c->nerrors++;
    if (c->errors == NULL)
        return;
    par_buf_appendf(c->errors, "agent.yaml: %s: ", path);
    va_list ap;
    va_start(ap, fmt);
    par_buf_vappendf(c->errors, fmt, ap);
    va_end(ap);
    par_buf_append(c->errors, "\n", 1);
}

/* ---- value helpers ------------------------------------------------------------ */

int par_manifest_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 64 || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int numeric_ident(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return !(n > 1 && s[0] == '0');
}

static int ident_list(const char *s, size_t n, int no_leading_zero)
{
    /* dot-separated non-empty [0-9A-Za-z-] identifiers */
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
    if (i < pre_end) {
        if (s[i] != '-' || !ident_list(s + i + 1, pre_end - i - 1, 1))
            return 0;
    }
    if (plus && !ident_list(plus + 1, len - pre_end - 1, 0))
        return 0;
    return 1;
}

static int is_ident(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* "module.sub:function" (python) or "path/lib.so:symbol" (native). */
static void check_entrypoint(check_t *c, const char *path, const char *e, par_runtime_kind_t kind)
{
    const char *colon = strchr(e, ':');
    if (colon == NULL || strchr(colon + 1, ':') || colon == e || colon[1] == '\0') {
        problem(c, path, "must be %s",
                kind == PAR_RUNTIME_NATIVE ? "path/lib.so:symbol" : "module:function");
        return;
    }
    size_t llen = (size_t)(colon - e);
    const char *fn = colon + 1;
    if (!is_ident(fn, strlen(fn)))
        problem(c, path, "'%s' is not a valid function or symbol name", fn);
    if (kind == PAR_RUNTIME_NATIVE) {
        if (e[0] == '/')
            problem(c, path, "library path must be relative to the package");
        for (const char *p = e; p < colon; p++)
            if (p[0] == '.' && p[1] == '.' && (p == e || p[-1] == '/') &&
                (p + 2 == colon || p[2] == '/'))
                problem(c, path, "library path must not contain '..'");
        if (llen < 4 || memcmp(colon - 3, ".so", 3) != 0)
            problem(c, path, "library path must end in .so");
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
    }
}

/* ---- node helpers ---------------------------------------------------------------- */

static const char *scalar(struct fy_node *n)
{
    if (n == NULL || fy_node_get_type(n) != FYNT_SCALAR)
        return NULL;
    return fy_node_get_scalar0(n);
}

static struct fy_node *lookup(struct fy_node *map, const char *key)
{
    if (map == NULL || fy_node_get_type(map) != FYNT_MAPPING)
        return NULL;
    return fy_node_mapping_lookup_by_string(map, key, FY_NT);
}

/* A string field: NULL when absent; a problem when not a scalar. */
static char *get_str(check_t *c, struct fy_node *map, const char *key, const char *path)
{
    struct fy_node *n = lookup(map, key);
    if (n == NULL)
        return NULL;
    const char *s = scalar(n);
    if (s == NULL) {
        problem(c, path, "must be a string");
        return NULL;
    }
    if (fy_node_get_style(n) == FYNS_PLAIN && strcmp(s, "~") == 0)
        return NULL;
    return strdup(s);
}

static char *str_or_empty(char *s)
{
    return s ? s : strdup("");
}

static int get_bool(check_t *c, struct fy_node *map, const char *key, const char *path, int dflt)
{
    struct fy_node *n = lookup(map, key);
    if (n == NULL)
        return dflt;
    const char *s = scalar(n);
    if (s && (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0))
        return 1;
    if (s && (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0))
        return 0;
    problem(c, path, "must be true or false");
    return dflt;
}

static uint32_t get_uint(check_t *c, struct fy_node *n, const char *path)
{
    const char *s = scalar(n);
    char *end = NULL;
    long long v = s && *s ? strtoll(s, &end, 10) : -1;
    if (s == NULL || end == NULL || *end != '\0' || v < 0 || v > UINT32_MAX) {
        problem(c, path, "must be a non-negative integer");
        return 0;
    }
    return (uint32_t)v;
}

static void strlist_add(par_strlist_t *l, const char *s)
{
    char **n = realloc(l->items, (l->count + 1) * sizeof(char *));
    if (n == NULL)
        return;
    l->items = n;
    l->items[l->count++] = strdup(s);
}

static void strlist_free(par_strlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void get_strlist(check_t *c, struct fy_node *map, const char *key, const char *path,
                        par_strlist_t *out)
{
    struct fy_node *n = lookup(map, key);
    if (n == NULL)
        return;
    if (fy_node_get_type(n) != FYNT_SEQUENCE) {
        problem(c, path, "must be a list of strings");
        return;
    }
    void *it = NULL;
    struct fy_node *e;
    size_t i = 0;
    while ((e = fy_node_sequence_iterate(n, &it)) != NULL) {
        const char *s = scalar(e);
        if (s == NULL) {
            char p[128];
            snprintf(p, sizeof(p), "%s[%zu]", path, i);
            problem(c, p, "must be a string");
        } else {
            strlist_add(out, s);
        }
        i++;
    }
}

static par_export_t *add_export(par_manifest_t *m)
{
    par_export_t *n = realloc(m->exports, (m->export_count + 1) * sizeof(*n));
    if (n == NULL)
        return NULL;
    m->exports = n;
    par_export_t *e = &m->exports[m->export_count++];
    memset(e, 0, sizeof(*e));
    return e;
}

static int export_exists(const par_manifest_t *m, const char *name)
{
    for (size_t i = 0; i < m->export_count; i++)
        if (strcmp(m->exports[i].name, name) == 0)
            return 1;
    return 0;
}

/* Reads and checks the `name` of a sub-agent or export at `p` (its field path):
 * required, a valid name, not used by another export. NULL after a problem. */
static char *export_name(check_t *c, struct fy_node *n, const char *p, int is_sub_agent)
{
    char path[200];
    snprintf(path, sizeof(path), "%s.name", p);
    char *name = get_str(c, n, "name", path);
    if (name == NULL) {
        if (lookup(n, "name") == NULL)
            problem(c, path, "required field missing");
        return NULL;
    }
    if (!par_manifest_valid_name(name, strlen(name))) {
        problem(c, path, "must match ^[a-z][a-z0-9-]*$");
        free(name);
        return NULL;
    }
    if (export_exists(c->m, name)) {
        if (is_sub_agent)
            problem(c, path, "duplicate sub-agent '%s'", name);
        else
            problem(c, path, "'%s' is already a sub-agent or export", name);
        free(name);
        return NULL;
    }
    return name;
}

/* ---- sections ------------------------------------------------------------------------ */

static const char *const top_keys[] = {"version",      "name",        "display_name", "description",
                                       "author",       "license",     "entrypoint",   "runtime",
                                       "capabilities", "environment", "dependencies", "metadata",
                                       "rest",         "a2a",         "ui",           NULL};

static void parse_sub_agents(check_t *c, struct fy_node *seq)
{
    par_manifest_t *m = c->m;
    if (fy_node_get_type(seq) != FYNT_SEQUENCE) {
        problem(c, "metadata.sub_agents", "must be a list");
        return;
    }
    void *it = NULL;
    struct fy_node *n;
    size_t i = 0;
    while ((n = fy_node_sequence_iterate(seq, &it)) != NULL) {
        char p[160];
        size_t idx = i++;
        snprintf(p, sizeof(p), "metadata.sub_agents[%zu]", idx);
        if (fy_node_get_type(n) != FYNT_MAPPING) {
            problem(c, p, "must be a mapping with at least a name");
            continue;
        }
        char path[200];
        char *name = export_name(c, n, p, 1);
        if (name == NULL)
            continue;
        par_export_t *e = add_export(m);
        if (e == NULL) {
            free(name);
            return;
        }
        e->name = name;
        snprintf(path, sizeof(path), "%s.description", p);
        e->description = str_or_empty(get_str(c, n, "description", path));
        snprintf(path, sizeof(path), "%s.public", p);
        e->is_public = get_bool(c, n, "public", path, 1);
        snprintf(path, sizeof(path), "%s.capabilities", p);
        get_strlist(c, n, "capabilities", path, &e->capabilities);
        snprintf(path, sizeof(path), "%s.entrypoint", p);
        e->entrypoint = get_str(c, n, "entrypoint", path);
        if (e->entrypoint)
            check_entrypoint(c, path, e->entrypoint, m->runtime_kind);
        else if (m->entrypoint)
            e->entrypoint = strdup(m->entrypoint);
        else {
            problem(c, path, "required: the package has no entrypoint to inherit");
            e->entrypoint = strdup("");
        }
    }
}

static void parse_par(check_t *c, struct fy_node *par)
{
    par_manifest_t *m = c->m;
    if (fy_node_get_type(par) != FYNT_MAPPING) {
        problem(c, "metadata.par", "must be a mapping");
        return;
    }
    m->par_requires = get_str(c, par, "requires", "metadata.par.requires");
    if (m->par_requires && m->par_requires[0] == '\0')
        problem(c, "metadata.par.requires", "must be a non-empty semver range");
    struct fy_node *abi = lookup(par, "abi");
    if (abi) {
        m->par_abi = (int)get_uint(c, abi, "metadata.par.abi");
        if (m->par_abi == 0) {
            problem(c, "metadata.par.abi", "must be a positive integer");
            m->par_abi = -1;
        }
    }
    struct fy_node *lim = lookup(par, "limits");
    if (lim) {
        if (fy_node_get_type(lim) != FYNT_MAPPING) {
            problem(c, "metadata.par.limits", "must be a mapping");
        } else {
            void *it = NULL;
            struct fy_node_pair *pr;
            while ((pr = fy_node_mapping_iterate(lim, &it)) != NULL) {
                const char *k = scalar(fy_node_pair_key(pr));
                struct fy_node *v = fy_node_pair_value(pr);
                char path[128];
                snprintf(path, sizeof(path), "metadata.par.limits.%s", k ? k : "?");
                if (k && strcmp(k, "timeout_ms") == 0)
                    m->limits.timeout_ms = get_uint(c, v, path);
                else if (k && strcmp(k, "memory_mb") == 0)
                    m->limits.memory_mb = get_uint(c, v, path);
                else if (k && strcmp(k, "concurrency") == 0)
                    m->limits.concurrency = get_uint(c, v, path);
                else if (k && strcmp(k, "max_input_kb") == 0)
                    m->limits.max_input_kb = get_uint(c, v, path);
                else
                    problem(c, path,
                            "unknown limit (known: timeout_ms, memory_mb, "
                            "concurrency, max_input_kb)");
            }
        }
    }
    struct fy_node *ex = lookup(par, "exports");
    if (ex == NULL)
        return;
    if (fy_node_get_type(ex) != FYNT_SEQUENCE) {
        problem(c, "metadata.par.exports", "must be a list");
        return;
    }
    void *it = NULL;
    struct fy_node *n;
    size_t i = 0;
    while ((n = fy_node_sequence_iterate(ex, &it)) != NULL) {
        char p[160], path[200];
        snprintf(p, sizeof(p), "metadata.par.exports[%zu]", i++);
        if (fy_node_get_type(n) != FYNT_MAPPING) {
            problem(c, p, "must be a mapping with name and entrypoint");
            continue;
        }
        char *name = export_name(c, n, p, 0);
        if (name == NULL)
            continue;
        snprintf(path, sizeof(path), "%s.entrypoint", p);
        char *entry = get_str(c, n, "entrypoint", path);
        if (entry == NULL) {
            problem(c, path, "required field missing");
            free(name);
            continue;
        }
        check_entrypoint(c, path, entry, m->runtime_kind);
        par_export_t *e = add_export(m);
        if (e == NULL) {
            free(name);
            free(entry);
            return;
        }
        e->name = name;
        e->entrypoint = entry;
        snprintf(path, sizeof(path), "%s.public", p);
        e->is_public = get_bool(c, n, "public", path, 1);
        snprintf(path, sizeof(path), "%s.description", p);
        e->description = str_or_empty(get_str(c, n, "description", path));
    }
}

/* Collects libfyaml's diagnostics text instead of letting it print to stderr. */
static void diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    par_buf_append(user, buf, len);
}

int par_manifest_parse(const char *yaml, size_t len, par_manifest_t **out, par_buf_t *errors)
{
    check_t c = {errors, 0, NULL};
    *out = NULL;
    if (len > PAR_MANIFEST_MAX_BYTES) {
        problem(&c, "(file)", "larger than %d bytes", PAR_MANIFEST_MAX_BYTES);
        return PAR_E_INVALID_PACKAGE;
    }
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    par_buf_t diagtext;
    par_buf_init(&diagtext, 4096);
    dcfg.output_fn = diag_output;
    dcfg.user = &diagtext;
    dcfg.colorize = false;
    dcfg.show_source = false;
    dcfg.show_type = false;
    dcfg.show_module = false;
    dcfg.show_position = true;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG, .diag = diag};
    struct fy_document *d = fy_document_build_from_string(&pcfg, yaml, len);
    if (d == NULL || fy_document_root(d) == NULL ||
        fy_node_get_type(fy_document_root(d)) != FYNT_MAPPING) {
        void *it = NULL;
        struct fy_diag_error *de;
        int reported = 0;
        while (diag && (de = fy_diag_errors_iterate(diag, &it)) != NULL) {
            c.nerrors++;
            reported++;
            if (errors)
                par_buf_appendf(errors, "agent.yaml: line %d, column %d: %s\n", de->line + 1,
                                de->column + 1, de->msg);
        }
        if (!reported && diagtext.len) {
            /* libfyaml writes "<source>:<line>:<column>: error: <message>" */
            par_buf_terminate(&diagtext);
            char *save = NULL;
            for (char *line = strtok_r(diagtext.data, "\n", &save); line;
                 line = strtok_r(NULL, "\n", &save)) {
                const char *gt = strrchr(line, '>');
                const char *pos = gt && gt[1] == ':' ? gt + 2 : line;
                int ln = 0, col = 0, off = 0;
                if (sscanf(pos, "%d:%d:%n", &ln, &col, &off) != 2 || off == 0)
                    continue;
                const char *msg = pos + off;
                while (*msg == ' ')
                    msg++;
                if (strncmp(msg, "error: ", 7) == 0)
                    msg += 7;
                c.nerrors++;
                reported++;
                if (errors)
                    par_buf_appendf(errors, "agent.yaml: line %d, column %d: %s\n", ln, col, msg);
            }
        }
        par_buf_free(&diagtext);
        if (!reported)
            problem(&c, "(document)",
                    d == NULL ? "not valid YAML"
                              : "must be a mapping of fields (name, "
                                "metadata, ...)");
        if (d)
            fy_document_destroy(d);
        if (diag)
            fy_diag_destroy(diag);
        return PAR_E_INVALID_PACKAGE;
    }
    struct fy_node *root = fy_document_root(d);
    par_manifest_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        fy_document_destroy(d);
        fy_diag_destroy(diag);
        par_buf_free(&diagtext);
        return PAR_E_NO_MEMORY;
    }
    c.m = m;
    m->par_abi = -1;

    /* unknown top-level keys: a warning, for forward compatibility */
    void *it = NULL;
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(root, &it)) != NULL) {
        const char *k = scalar(fy_node_pair_key(pr));
        int known = 0;
        for (size_t i = 0; k && top_keys[i]; i++)
            known |= strcmp(k, top_keys[i]) == 0;
        if (!known) {
            char w[200];
            snprintf(w, sizeof(w), "agent.yaml: %.100s: unknown top-level key, ignored",
                     k ? k : "(non-scalar key)");
            strlist_add(&m->warnings, w);
        }
    }

    m->name = get_str(&c, root, "name", "name");
    if (m->name == NULL && lookup(root, "name") == NULL)
        problem(&c, "name", "required field missing");
    else if (m->name && !par_manifest_valid_name(m->name, strlen(m->name)))
        problem(&c, "name", "must match ^[a-z][a-z0-9-]*$ (at most 64 characters)");
    m->format_version = get_str(&c, root, "version", "version");
    if (m->format_version == NULL)
        m->format_version = strdup("1.0");
    m->display_name = str_or_empty(get_str(&c, root, "display_name", "display_name"));
    m->description = str_or_empty(get_str(&c, root, "description", "description"));
    m->author = str_or_empty(get_str(&c, root, "author", "author"));
    m->license = str_or_empty(get_str(&c, root, "license", "license"));
    /* pixell-kit packages default to Python 3.11 when runtime is omitted */
    m->runtime = get_str(&c, root, "runtime", "runtime");
    if (m->runtime == NULL)
        m->runtime = strdup("python3.11");
    if (strcmp(m->runtime, "native") == 0) {
        m->runtime_kind = PAR_RUNTIME_NATIVE;
    } else if (strncmp(m->runtime, "python3.", 8) == 0 && m->runtime[8] &&
               strspn(m->runtime + 8, "0123456789") == strlen(m->runtime + 8)) {
        m->runtime_kind = PAR_RUNTIME_PYTHON;
    } else {
        m->runtime_kind = PAR_RUNTIME_OTHER;
    }
    m->entrypoint = get_str(&c, root, "entrypoint", "entrypoint");
    if (m->entrypoint)
        check_entrypoint(&c, "entrypoint", m->entrypoint, m->runtime_kind);
    get_strlist(&c, root, "capabilities", "capabilities", &m->capabilities);
    get_strlist(&c, root, "dependencies", "dependencies", &m->dependencies);
    struct fy_node *env = lookup(root, "environment");
    if (env && fy_node_get_type(env) != FYNT_MAPPING) {
        problem(&c, "environment", "must be a mapping of NAME: value");
    } else if (env) {
        void *eit = NULL;
        while ((pr = fy_node_mapping_iterate(env, &eit)) != NULL) {
            const char *k = scalar(fy_node_pair_key(pr));
            const char *v = scalar(fy_node_pair_value(pr));
            char path[160];
            snprintf(path, sizeof(path), "environment.%.100s", k ? k : "?");
            if (k == NULL || !is_ident(k, strlen(k))) {
                problem(&c, path, "must be a valid environment variable name");
                continue;
            }
            if (v == NULL) {
                problem(&c, path, "must be a scalar value");
                continue;
            }
            par_kv_t *n = realloc(m->environment, (m->environment_count + 1) * sizeof(*n));
            if (n == NULL)
                break;
            m->environment = n;
            m->environment[m->environment_count].key = strdup(k);
            m->environment[m->environment_count].value = strdup(v);
            m->environment_count++;
        }
    }
    m->has_rest = lookup(root, "rest") != NULL;
    m->has_a2a = lookup(root, "a2a") != NULL;
    m->has_ui = lookup(root, "ui") != NULL;

    if (m->entrypoint) {
        par_export_t *e = add_export(m);
        if (e) {
            e->name = strdup("");
            e->description = strdup(m->description);
            e->entrypoint = strdup(m->entrypoint);
            e->is_public = 1;
        }
    }
    struct fy_node *md = lookup(root, "metadata");
    if (md == NULL) {
        problem(&c, "metadata.version", "required field missing");
    } else if (fy_node_get_type(md) != FYNT_MAPPING) {
        problem(&c, "metadata", "must be a mapping");
    } else {
        m->package_version = get_str(&c, md, "version", "metadata.version");
        if (m->package_version == NULL && lookup(md, "version") == NULL)
            problem(&c, "metadata.version", "required field missing");
        else if (m->package_version &&
                 !par_manifest_valid_semver(m->package_version, strlen(m->package_version)))
            problem(&c, "metadata.version", "must be a semantic version such as 1.2.0");
        struct fy_node *subs = lookup(md, "sub_agents");
        if (subs)
            parse_sub_agents(&c, subs);
        struct fy_node *par = lookup(md, "par");
        if (par)
            parse_par(&c, par);
    }
    fy_document_destroy(d);
    fy_diag_destroy(diag);
    par_buf_free(&diagtext);
    if (c.nerrors) {
        par_manifest_free(m);
        return PAR_E_INVALID_PACKAGE;
    }
    *out = m;
    return PAR_OK;
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
    for (size_t i = 0; i < m->export_count; i++) {
        free(m->exports[i].name);
        free(m->exports[i].description);
        free(m->exports[i].entrypoint);
        strlist_free(&m->exports[i].capabilities);
    }
    free(m->exports);
    free(m);
}

const par_export_t *par_manifest_export(const par_manifest_t *m, const char *name)
{
    for (size_t i = 0; i < m->export_count; i++)
        if (strcmp(m->exports[i].name, name) == 0)
            return &m->exports[i];
    return NULL;
}
