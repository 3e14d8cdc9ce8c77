/*
 * config/config.c — see config.h: the table, reading it from YAML, the
 * environment and flags, and showing it.
 *
 * Values are held as JSON (integers in the key's unit, strings, arrays,
 * objects), which keeps one representation for comparison on SIGHUP, for
 * `par config show` and for the structured keys. Strings of a loaded
 * configuration stay valid until par_conf_free().
 */
#include "config/config.h"
#include "util/suggest.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/par.h>

#include "config/internal.h"
#include "util/path.h"
#include "util/yaml.h"

const par_conf_key_t par_conf_keys[PAR_K_COUNT] = {
#define PAR_CONF_ROW(id, p, e, fl, t, mn, mx, ch, d, f, h) {p, e, fl, t, mn, mx, ch, d, f, h},
    PAR_CONF_KEYS(PAR_CONF_ROW)
#undef PAR_CONF_ROW
};

/* ---- suggestions ------------------------------------------------------------------ */

/* The nearest known word (util/suggest), or else a known word that `word`
 * begins up to an underscore: `timeout` for `timeout_ms`. */
const char *par__conf_suggest(const char *word, const char *const *known, size_t n)
{
    const char **list = calloc(n + 1, sizeof(*list));
    if (list == NULL)
        return NULL;
    memcpy(list, known, n * sizeof(*list));
    const char *best = par_suggest(word, list);
    free(list);
    size_t wl = strlen(word);
    for (size_t i = 0; best == NULL && i < n; i++)
        if (wl >= 3 && strncmp(known[i], word, wl) == 0 && known[i][wl] == '_')
            best = known[i];
    return best;
}

/* ---- the table -------------------------------------------------------------------- */

int par_conf_find(const char *path)
{
    for (int i = 0; i < PAR_K_COUNT; i++)
        if (strcmp(par_conf_keys[i].path, path) == 0)
            return i;
    return -1;
}

/* Whether `prefix` is a section: some key's path continues it with '.'. */
int par__conf_is_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < PAR_K_COUNT; i++)
        if (strncmp(par_conf_keys[i].path, prefix, n) == 0 && par_conf_keys[i].path[n] == '.')
            return 1;
    return 0;
}

/* The names one level below `prefix` ("" = the top), each once, in `out`. */
static size_t par__conf_children(const char *prefix, char out[][48], size_t cap)
{
    size_t n = strlen(prefix), count = 0;
    for (int i = 0; i < PAR_K_COUNT; i++) {
        const char *p = par_conf_keys[i].path;
        if (n && (strncmp(p, prefix, n) != 0 || p[n] != '.'))
            continue;
        const char *s = n ? p + n + 1 : p;
        size_t l = strcspn(s, ".");
        char name[48];
        snprintf(name, sizeof(name), "%.*s", (int)l, s);
        size_t k;
        for (k = 0; k < count; k++)
            if (strcmp(out[k], name) == 0)
                break;
        if (k == count && count < cap)
            snprintf(out[count++], sizeof(out[0]), "%s", name);
    }
    return count;
}

/* The nearest known key to `prefix`.`name`, as a full path, in `out` ("" = none). */
void par__conf_suggest_path(const char *prefix, const char *name, char *out, size_t cap)
{
    char kids[64][48];
    const char *known[64];
    size_t n = par__conf_children(prefix, kids, 64);
    for (size_t i = 0; i < n; i++)
        known[i] = kids[i];
    const char *s = par__conf_suggest(name, known, n);
    out[0] = '\0';
    if (s) {
        snprintf(out, cap, "%s%s%s", prefix, *prefix ? "." : "", s);
        return;
    }
    for (int i = 0; i < PAR_K_COUNT; i++) { /* a key written at the wrong level */
        const char *p = par_conf_keys[i].path, *last = strrchr(p, '.');
        if (strcmp(last ? last + 1 : p, name) == 0) {
            snprintf(out, cap, "%s", p);
            return;
        }
    }
}

/* ---- values ------------------------------------------------------------------------ */

const char *par__conf_type_name(const par_conf_key_t *k)
{
    switch (k->type) {
    case PAR_CT_BOOL:
        return "bool";
    case PAR_CT_INT:
        return "int";
    case PAR_CT_MS:
        return "duration (ms)";
    case PAR_CT_SEC:
        return "duration (s)";
    case PAR_CT_KB:
        return "size (KiB)";
    case PAR_CT_MB:
        return "size (MiB)";
    case PAR_CT_ENUM:
        return "enum";
    case PAR_CT_STR:
        return "string";
    case PAR_CT_PATH:
        return "path";
    case PAR_CT_CMD:
        return "program";
    case PAR_CT_LIST:
        return "list";
    case PAR_CT_MAP:
        return "map";
    case PAR_CT_KEYS:
        return "list of keys";
    case PAR_CT_APIKEYS:
        return "list of API keys";
    case PAR_CT_GRANTS:
        return "map of grants";
    case PAR_CT_PLUGINS:
        return "list of plugins";
    }
    return "?";
}

/* What a key expects, for messages ("a whole number from 1 to 64"). */
void par__conf_expected(const par_conf_key_t *k, char *out, size_t cap)
{
    static const char *const unit[] = {
        [PAR_CT_MS] = "ms", [PAR_CT_SEC] = "s", [PAR_CT_KB] = "KiB", [PAR_CT_MB] = "MiB"};
    switch (k->type) {
    case PAR_CT_BOOL:
        snprintf(out, cap, "true or false");
        break;
    case PAR_CT_INT:
        snprintf(out, cap, "a whole number from %lld to %lld", k->min, k->max);
        break;
    case PAR_CT_MS:
    case PAR_CT_SEC:
        snprintf(out, cap,
                 "a duration from %lld to %lld %s (a number of %s, or 500ms, 30s, 5m, 1h)", k->min,
                 k->max, unit[k->type], unit[k->type]);
        break;
    case PAR_CT_KB:
    case PAR_CT_MB:
        snprintf(out, cap, "a size from %lld to %lld %s (a number of %s, or 512KiB, 64MiB, 2GiB)",
                 k->min, k->max, unit[k->type], unit[k->type]);
        break;
    case PAR_CT_ENUM: {
        size_t l = (size_t)snprintf(out, cap, "one of ");
        for (const char *c = k->choices; *c && l + 3 < cap; c++) {
            if (*c == '|') {
                out[l++] = ',';
                out[l++] = ' ';
            } else
                out[l++] = *c;
        }
        out[l] = '\0';
        break;
    }
    case PAR_CT_STR:
    case PAR_CT_PATH:
    case PAR_CT_CMD:
        snprintf(out, cap, "a string");
        break;
    case PAR_CT_LIST:
        snprintf(out, cap, "a list of strings");
        break;
    case PAR_CT_MAP:
        snprintf(out, cap, "a mapping of names to strings");
        break;
    case PAR_CT_KEYS:
        snprintf(out, cap, "a list of minisign keys, .pub files or {file|key, packages}");
        break;
    case PAR_CT_APIKEYS:
        snprintf(out, cap, "a list of {sha256, subject, tenant, permissions}");
        break;
    case PAR_CT_GRANTS:
        snprintf(out, cap, "a mapping of claim values to lists of permissions");
        break;
    case PAR_CT_PLUGINS:
        snprintf(out, cap, "a list of {path, config}");
        break;
    }
}

/* A number with an optional unit, scaled to the key's unit. Returns 0 or -1. */
static int parse_number(const par_conf_key_t *k, const char *s, long long *out)
{
    static const struct {
        const char *u;
        par_conf_type_t base;
        long long mul, div;
    } units[] = {
        {"ms", PAR_CT_MS, 1, 1},        {"s", PAR_CT_MS, 1000, 1},
        {"m", PAR_CT_MS, 60000, 1},     {"h", PAR_CT_MS, 3600000, 1},
        {"ms", PAR_CT_SEC, 1, 1000},    {"s", PAR_CT_SEC, 1, 1},
        {"m", PAR_CT_SEC, 60, 1},       {"h", PAR_CT_SEC, 3600, 1},
        {"KiB", PAR_CT_KB, 1, 1},       {"MiB", PAR_CT_KB, 1024, 1},
        {"GiB", PAR_CT_KB, 1048576, 1}, {"KiB", PAR_CT_MB, 1, 1024},
        {"MiB", PAR_CT_MB, 1, 1},       {"GiB", PAR_CT_MB, 1024, 1},
        {"TiB", PAR_CT_MB, 1048576, 1},
    };
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (errno != 0)
        return -1;
    while (*end == ' ')
        end++;
    if (*end) {
        size_t i;
        for (i = 0; i < sizeof(units) / sizeof(*units); i++)
            if (units[i].base == k->type && strcmp(units[i].u, end) == 0)
                break;
        if (i == sizeof(units) / sizeof(*units) || n > (1LL << 40) ||
            n * units[i].mul % units[i].div != 0)
            return -1;
        n = n * units[i].mul / units[i].div;
    }
    if (n < k->min || n > k->max)
        return -1;
    *out = n;
    return 0;
}

static int parse_bool_text(const char *v, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on", "1"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "off", "0"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *c = choices; *c;) {
        size_t l = strcspn(c, "|");
        if (l == n && strncmp(c, v, n) == 0)
            return 1;
        if (l > 1 && c[l - 1] == '*' && n > l - 1 && strncmp(c, v, l - 1) == 0)
            return 1; /* "plugin:*": the prefix and at least one character */
        c += l + (c[l] == '|');
    }
    return 0;
}

/* A trust key given as text: a key, or a file made absolute against `base`. */
json_t *par__conf_trust_key_entry(const char *text, const char *base)
{
    size_t l = strlen(text);
    int pub = l > 4 && strcmp(text + l - 4, ".pub") == 0;
    char *abs = NULL;
    if (pub || (strchr(text, '/') && text[0] != '/')) {
        abs = par_path_absolute(base, text);
        if (abs && !pub && access(abs, R_OK) != 0) { /* base64 with a '/', not a file */
            free(abs);
            abs = NULL;
        }
    }
    json_t *o = json_pack("{s:s}", "key", abs ? abs : text);
    free(abs);
    return o;
}

/* Text (a variable, a flag, a YAML scalar) → a value. `base` makes paths absolute.
 * Returns NULL and leaves `why` empty for "expected …", or sets `why`. */
json_t *par__conf_parse_text(const par_conf_key_t *k, const char *v, const char *base, char *why,
                             size_t cap)
{
    long long n;
    int b;
    why[0] = '\0';
    switch (k->type) {
    case PAR_CT_BOOL:
        return parse_bool_text(v, &b) == 0 ? json_boolean(b) : NULL;
    case PAR_CT_INT:
    case PAR_CT_MS:
    case PAR_CT_SEC:
    case PAR_CT_KB:
    case PAR_CT_MB:
        return parse_number(k, v, &n) == 0 ? json_integer(n) : NULL;
    case PAR_CT_ENUM:
        return enum_has(k->choices, v) ? json_string(v) : NULL;
    case PAR_CT_STR:
        if (*v == '\0' && (k->flags & PAR_CF_REQUIRED))
            return snprintf(why, cap, "a value is required"), NULL;
        return json_string(v);
    case PAR_CT_PATH:
    case PAR_CT_CMD: {
        if (*v == '\0')
            return snprintf(why, cap, "a path is required"), NULL;
        if (k->type == PAR_CT_CMD && strchr(v, '/') == NULL)
            return json_string(v);
        char *abs = par_path_absolute(base, v);
        json_t *j = abs ? json_string(abs) : NULL;
        if (abs == NULL)
            snprintf(why, cap, "cannot make '%s' absolute: %s", v, strerror(errno));
        free(abs);
        return j;
    }
    case PAR_CT_LIST:
    case PAR_CT_KEYS: {
        json_t *a = json_array();
        char *dup = strdup(v), *save = NULL;
        for (char *t = strtok_r(dup, ", \t\n", &save); t; t = strtok_r(NULL, ", \t\n", &save))
            json_array_append_new(a, k->type == PAR_CT_KEYS ? par__conf_trust_key_entry(t, base)
                                                            : json_string(t));
        free(dup);
        return a;
    }
    case PAR_CT_MAP:
    case PAR_CT_APIKEYS:
    case PAR_CT_GRANTS:
    case PAR_CT_PLUGINS:
        snprintf(why, cap, "can only be set in the configuration file");
        return NULL;
    }
    return NULL;
}

/* Stores `val` (taken) for `id`; appends to an array when asked. */
void par__conf_store(par_conf_t *c, int id, json_t *val, par_conf_source_t src, const char *origin,
                     int append)
{
    par_conf_value_t *s = &c->v[id];
    if (append && s->v && json_is_array(s->v) && json_is_array(val)) {
        json_array_extend(s->v, val);
        json_decref(val);
    } else {
        json_decref(s->v);
        s->v = val;
    }
    s->src = src;
    snprintf(s->origin, sizeof(s->origin), "%s", origin);
}

void par__conf_say(par_buf_t *err, const char *origin, const par_conf_key_t *k, const char *v,
                   const char *why)
{
    char exp[200];
    if (why && *why) {
        par_buf_appendf(err, "%s: `%s`: %s\n", origin, k->path, why);
        return;
    }
    par__conf_expected(k, exp, sizeof(exp));
    par_buf_appendf(err, "%s: `%s`: expected %s, not `%s`\n", origin, k->path, exp, v);
}

int par_conf_set(par_conf_t *c, par_conf_id_t id, const char *text, par_conf_source_t src,
                 const char *origin, par_buf_t *err)
{
    const par_conf_key_t *k = &par_conf_keys[id];
    char why[200];
    json_t *val = par__conf_parse_text(k, text, NULL, why, sizeof(why));
    if (val == NULL) {
        par__conf_say(err, origin, k, text, why);
        return PAR_E_INVALID_ARGUMENT;
    }
    par__conf_store(c, id, val, src, origin, (k->flags & PAR_CF_APPEND) != 0);
    return PAR_OK;
}

void par_conf_init(par_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < PAR_K_COUNT; i++) {
        const par_conf_key_t *k = &par_conf_keys[i];
        char why[200];
        if (k->def == NULL)
            continue;
        c->v[i].v = par__conf_parse_text(k, k->def, NULL, why, sizeof(why));
        if (c->v[i].v == NULL) { /* a broken table is a bug, not an input */
            fprintf(stderr, "%s:%d: bad default for %s\n", __FILE__, __LINE__, k->path);
            abort();
        }
        snprintf(c->v[i].origin, sizeof(c->v[i].origin), "default");
    }
}

void par_conf_free(par_conf_t *c)
{
    for (int i = 0; i < PAR_K_COUNT; i++)
        json_decref(c->v[i].v);
    free(c->file);
    memset(c, 0, sizeof(*c));
}

/* ---- accessors --------------------------------------------------------------------- */

const char *par_conf_str(const par_conf_t *c, par_conf_id_t id)
{
    return json_is_string(c->v[id].v) ? json_string_value(c->v[id].v) : NULL;
}

long long par_conf_int(const par_conf_t *c, par_conf_id_t id)
{
    return json_is_integer(c->v[id].v) ? json_integer_value(c->v[id].v) : 0;
}

int par_conf_bool(const par_conf_t *c, par_conf_id_t id, int unset)
{
    return c->v[id].v ? json_is_true(c->v[id].v) : unset;
}

int par_conf_same(const par_conf_t *a, const par_conf_t *b, par_conf_id_t id)
{
    if (a->v[id].v == NULL || b->v[id].v == NULL)
        return a->v[id].v == b->v[id].v;
    return json_equal(a->v[id].v, b->v[id].v);
}

char *par_conf_text(const par_conf_t *c, par_conf_id_t id)
{
    json_t *v = c->v[id].v;
    if (v == NULL)
        return strdup("(unset)");
    if (par_conf_keys[id].flags & PAR_CF_SECRET)
        return strdup("(secret)");
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}
