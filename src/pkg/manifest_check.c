/*
 * pkg/manifest_check.c — the checking half of agent.yaml parsing: reporting
 * problems, the rules for values (names, versions, entrypoints), unknown keys
 * with "did you mean", and loading the bytes as YAML (characters first, so
 * the message names line and column as PyYAML would).
 *
 * Owns: every message a bad agent.yaml gets, and the value rules
 * par_manifest_valid_name / par_manifest_valid_semver. Called by the reader in
 * manifest.c (one check_t per parse) and, for the value rules, by the CLI and
 * the registry code. Any thread: no global state. It never opens files,
 * never prints, and never stops at the first problem (each is counted; the
 * first MAX_SHOWN are written).
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
#include "util/suggest.h"
#include "util/yaml.h"
#include <jansson.h>

/* ---- reporting --------------------------------------------------------------------------- */

void par__manifest_report(check_t *c, const char *fmt, ...)
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
void par__manifest_problem(check_t *c, const char *path, const char *fmt, ...)
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
const char *par__manifest_shown(const char *s, char *buf, size_t size)
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
    return par_id_valid_name(s, len); /* the same rule as an id's name part */
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
int par__manifest_is_ident(const char *s, size_t n)
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
void par__manifest_check_entrypoint(check_t *c, const char *path, const char *e,
                                    par_runtime_kind_t kind)
{
    const char *colon = strchr(e, ':');
    if (colon == NULL || strchr(colon + 1, ':') || colon == e || colon[1] == '\0') {
        par__manifest_problem(c, path, "must be %s (exactly one ':' between two non-empty parts)",
                              kind == PAR_RUNTIME_NATIVE ? "path/lib.so:symbol"
                                                         : "module:function");
        return;
    }
    size_t llen = (size_t)(colon - e);
    const char *fn = colon + 1;
    char b[80];
    if (kind == PAR_RUNTIME_NATIVE) {
        if (e[0] == '/')
            par__manifest_problem(c, path, "library path must be relative to the package root");
        for (const char *p = e; p < colon; p++) {
            if (p[0] == '.' && p[1] == '.' && (p == e || p[-1] == '/') &&
                (p + 2 == colon || p[2] == '/')) {
                par__manifest_problem(c, path, "library path must not contain '..'");
                break;
            }
        }
        const char *slash = memrchr(e, '/', llen);
        size_t base = slash ? (size_t)(colon - slash - 1) : llen;
        if (base <= 3 || memcmp(colon - 3, ".so", 3) != 0)
            par__manifest_problem(c, path,
                                  "library path must end in .so (e.g. lib/libagent.so:symbol)");
        if (!par__manifest_is_ident(fn, strlen(fn)))
            par__manifest_problem(c, path, "'%s' is not a valid C symbol name",
                                  par__manifest_shown(fn, b, sizeof(b)));
    } else if (kind == PAR_RUNTIME_PYTHON) {
        size_t start = 0;
        for (size_t i = 0; i <= llen; i++) {
            if (i == llen || e[i] == '.') {
                if (!par__manifest_is_ident(e + start, i - start)) {
                    par__manifest_problem(c, path, "'%.*s' is not a dotted Python module name",
                                          (int)llen, e);
                    break;
                }
                start = i + 1;
            }
        }
        if (!par__manifest_is_ident(fn, strlen(fn)))
            par__manifest_problem(c, path, "'%s' is not a valid Python function name",
                                  par__manifest_shown(fn, b, sizeof(b)));
    }
}

/* ---- unknown keys ------------------------------------------------------------------------ */

const char *const par__manifest_limit_keys[] = {"timeout_ms", "memory_mb", "concurrency",
                                                "max_input_kb", NULL};

typedef struct keyrule {
    const char *path; /* "" for the top level */
    const char *const *known;
    unknown_rule_t rule;
    const char *noun; /* "key", "limit" */
} keyrule_t;

static void list_known(par_buf_t *b, const char *const *known)
{
    for (size_t i = 0; known[i]; i++)
        par_buf_appendf(b, "%s%s", i ? ", " : "", known[i]);
}

static void unknown_key(check_t *c, const char *key, yaml_node_t *value, void *ud)
{
    (void)value;
    const keyrule_t *r = ud;
    for (size_t i = 0; r->known[i]; i++)
        if (strcmp(key, r->known[i]) == 0)
            return;
    char b[80], path[400];
    snprintf(path, sizeof(path), "%s%s%s", r->path, *r->path ? "." : "",
             par__manifest_shown(key, b, sizeof(b)));
    const char *near = par_suggest(key, r->known);
    if (near) {
        par__manifest_problem(c, path, "unknown %s `%s` (did you mean `%s`?)", r->noun,
                              par__manifest_shown(key, b, sizeof(b)), near);
    } else if (r->rule == UNKNOWN_ERROR) {
        par_buf_t k;
        par_buf_init(&k, 0);
        list_known(&k, r->known);
        par_buf_terminate(&k);
        par__manifest_problem(c, path, "unknown %s `%s` (known: %s)", r->noun,
                              par__manifest_shown(key, b, sizeof(b)), k.data ? k.data : "");
        par_buf_free(&k);
    } else if (r->rule == UNKNOWN_WARN_FAR) {
        char w[600];
        snprintf(w, sizeof(w), "agent.yaml: %s: unknown top-level key, ignored", path);
        par__manifest_strlist_add(c, &c->m->warnings, w);
    }
}

void par__manifest_check_keys(check_t *c, yaml_node_t *map, const char *path,
                              const char *const *known, unknown_rule_t rule)
{
    keyrule_t r = {path, known, rule, known == par__manifest_limit_keys ? "limit" : "key"};
    par__manifest_each_pair(c, map, unknown_key, &r);
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

/* Refuses bytes that are not UTF-8 or not printable, with PyYAML's rule and
 * a line and column, before the YAML parser sees them. Reports the first
 * offender only. */
bool par__manifest_chars_ok(check_t *c, const char *yaml, size_t len)
{
    const unsigned char *s = (const unsigned char *)yaml;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0) {
            par__manifest_report(
                c,
                "line %d, column %d: byte 0x%02X is not valid UTF-8 (agent.yaml must be "
                "UTF-8 text)",
                line, col, s[i]);
            return false;
        }
        if (!yaml_printable(cp)) {
            par__manifest_report(c, "line %d, column %d: character U+%04X is not allowed in YAML",
                                 line, col, (unsigned)cp);
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

/* Loads the one document with util/yaml and checks that its root is a
 * mapping. Otherwise reports the problems and returns the status. */
int par__manifest_yaml_load(check_t *c, const char *yaml, size_t len)
{
    par_buf_t yerr;
    par_buf_init(&yerr, 64 * 1024);
    int rc = par_yaml_load(c->y, yaml, len, &yerr);
    if (rc != PAR_OK) {
        /* one "line L, column C: problem" per line */
        for (size_t i = 0; i < yerr.len;) {
            const char *l = yerr.data + i, *nl = memchr(l, '\n', yerr.len - i);
            size_t n = nl ? (size_t)(nl - l) : yerr.len - i;
            par__manifest_report(c, "%.*s", (int)n, l);
            i += n + 1;
        }
        if (c->nerrors == 0 && rc != PAR_E_NO_MEMORY)
            par__manifest_report(c, "not valid YAML");
        par_buf_free(&yerr);
        return rc == PAR_E_NO_MEMORY ? rc : PAR_E_INVALID_PACKAGE;
    }
    par_buf_free(&yerr);
    yaml_node_t *root = par_yaml_root(c->y);
    if (root == NULL || par_yaml_is_null(root)) {
        par__manifest_report(c,
                             "the document is empty; it must be a mapping with at least name and "
                             "metadata.version");
        return PAR_E_INVALID_PACKAGE;
    }
    if (!is_type(root, YAML_MAPPING_NODE)) {
        par__manifest_report(
            c, "the document must be a mapping of fields (name, metadata, ...), not a %s",
            is_type(root, YAML_SEQUENCE_NODE) ? "list" : "scalar");
        return PAR_E_INVALID_PACKAGE;
    }
    return PAR_OK;
}

/* ---- skills, input_schema (metadata.par, a sub-agent, an export) -------------------------- */

/* Whether `v` is absent or a list of strings; else a problem at path. */
static void strings_or_absent(check_t *c, json_t *v, const char *path)
{
    size_t i;
    json_t *e;
    if (v == NULL)
        return;
    bool ok = json_is_array(v);
    json_array_foreach(v, i, e) ok = ok && json_is_string(e);
    if (!ok)
        par__manifest_problem(c, path, "must be a list of strings");
}

static void check_skill(check_t *c, const char *where, json_t *s, size_t i)
{
    static const char *const known[] = {"id", "name", "description", "tags", "examples", NULL};
    char path[128];
    snprintf(path, sizeof(path), "%s.skills[%zu]", where, i);
    if (!json_is_object(s)) {
        par__manifest_problem(c, path, "must be a mapping {id, name, description, tags, examples}");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
    {
        size_t j = 0;
        while (known[j] && strcmp(known[j], k) != 0)
            j++;
        if (known[j] == NULL)
            par__manifest_problem(c, path,
                                  "unknown key %s (known: id, name, description, tags, "
                                  "examples)",
                                  k);
    }
    for (size_t j = 0; j < 3; j++) {
        const char *str = json_string_value(json_object_get(s, known[j]));
        if (str == NULL || str[0] == '\0')
            par__manifest_problem(c, path, "%s is required (a non-empty string)", known[j]);
    }
    char sub[160];
    snprintf(sub, sizeof(sub), "%s.tags", path);
    strings_or_absent(c, json_object_get(s, "tags"), sub);
    snprintf(sub, sizeof(sub), "%s.examples", path);
    strings_or_absent(c, json_object_get(s, "examples"), sub);
}

/* JSON text of `v` into *out (NULL on OOM, noted). */
static void keep(check_t *c, json_t *v, char **out)
{
    *out = json_dumps(v, JSON_COMPACT);
    if (*out == NULL)
        c->oom = true;
}

void par__manifest_described(check_t *c, const char *where, yaml_node_t *skills,
                             yaml_node_t *schema, char **skills_out, char **schema_out)
{
    char path[128];
    if (skills) {
        json_t *j = par_yaml_to_json(c->y, skills);
        snprintf(path, sizeof(path), "%s.skills", where);
        if (j == NULL)
            c->oom = true;
        else if (!json_is_array(j) || json_array_size(j) == 0)
            par__manifest_problem(c, path,
                                  "must be a non-empty list of {id, name, description, tags, "
                                  "examples}, not %s",
                                  par_yaml_kind(skills));
        else {
            for (size_t i = 0; i < json_array_size(j); i++)
                check_skill(c, where, json_array_get(j, i), i);
            keep(c, j, skills_out);
        }
        json_decref(j);
    }
    if (schema) {
        json_t *j = par_yaml_to_json(c->y, schema);
        json_t *t = json_object_get(j, "type");
        snprintf(path, sizeof(path), "%s.input_schema", where);
        if (j == NULL)
            c->oom = true;
        else if (!json_is_object(j))
            par__manifest_problem(c, path,
                                  "must be a JSON Schema object (a mapping such as {type: object, "
                                  "properties: {...}}), not %s",
                                  par_yaml_kind(schema));
        else if (t && !(json_is_string(t) && strcmp(json_string_value(t), "object") == 0)) {
            snprintf(path, sizeof(path), "%s.input_schema.type", where);
            par__manifest_problem(c, path, "must be object: an agent's input is a JSON object");
        } else
            keep(c, j, schema_out);
        json_decref(j);
    }
}
