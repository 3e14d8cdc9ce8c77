/*
 * config/load.c — reading the table's keys from a YAML file, PAR_* variables
 * and flags (see config.h). Every mistake of a file is reported, not only the
 * first, each on its own line with file:line and the key's path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <par/par.h>

#include "config/internal.h"
#include "util/path.h"
#include "util/suggest.h"
#include "util/yaml.h"

typedef struct reader {
    par_conf_t *c;
    par_yaml_t *y;
    const char *file; /* as the user named it, for messages */
    char *base;       /* its directory, absolute */
    par_buf_t *err;
    int bad;
} reader_t;

static void where(const reader_t *r, const yaml_node_t *n, char *out, size_t cap)
{
    snprintf(out, cap, "%s:%lu", r->file, par_yaml_line(n));
}

static void wrong(reader_t *r, const yaml_node_t *n, const par_conf_key_t *k, const char *why)
{
    char at[200];
    where(r, n, at, sizeof(at));
    par__conf_say(r->err, at, k, "", why);
    r->bad = 1;
}

/* "expected …, not a mapping" for a node of the wrong kind. */
static void wrong_kind(reader_t *r, const yaml_node_t *n, const par_conf_key_t *k)
{
    char exp[200], why[300];
    par__conf_expected(k, exp, sizeof(exp));
    snprintf(why, sizeof(why), "expected %s, not %s", exp, par_yaml_kind(n));
    wrong(r, n, k, why);
}

/* A sequence of scalars (or one scalar, split like a variable) as a JSON array. */
static json_t *string_list(reader_t *r, yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE) {
        json_t *a = json_array();
        char *dup = strdup(par_yaml_scalar(n, NULL)), *save = NULL;
        for (char *t = strtok_r(dup, ", \t\n", &save); t; t = strtok_r(NULL, ", \t\n", &save))
            json_array_append_new(a, json_string(t));
        free(dup);
        return a;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return NULL;
    json_t *a = json_array();
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const char *s = par_yaml_scalar(par_yaml_node(r->y, *it), NULL);
        if (s == NULL) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, json_string(s));
    }
    return a;
}

/* Checks the fields of one mapping entry against `known`; reports the others. */
static int fields_ok(reader_t *r, yaml_node_t *m, const par_conf_key_t *k, const char *entry,
                     const char *const *known, size_t nknown)
{
    int ok = 1;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = par_yaml_node(r->y, p->key);
        const char *name = par_yaml_scalar(kn, NULL);
        size_t i;
        for (i = 0; i < nknown; i++)
            if (strcmp(name, known[i]) == 0)
                break;
        if (i < nknown)
            continue;
        const char *s = par__conf_suggest(name, known, nknown);
        char at[200];
        where(r, kn, at, sizeof(at));
        par_buf_appendf(r->err, "%s: unknown key `%s%s.%s`%s%s%s%s%s%s\n", at, k->path, entry, name,
                        s ? " (did you mean `" : "", s ? k->path : "", s ? entry : "", s ? "." : "",
                        s ? s : "", s ? "`?)" : "");
        r->bad = 1;
        ok = 0;
    }
    return ok;
}

typedef json_t *(*entry_fn)(reader_t *r, yaml_node_t *e, const par_conf_key_t *k,
                            const char *entry);

/* A list of entries: each read by `fn` (NULL: reported by fn, left out). */
static json_t *each_entry(reader_t *r, yaml_node_t *n, const par_conf_key_t *k, entry_fn fn)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return wrong_kind(r, n, k), NULL;
    json_t *a = json_array();
    size_t idx = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         a != NULL && it < n->data.sequence.items.top; it++, idx++) {
        char entry[32];
        snprintf(entry, sizeof(entry), "[%zu]", idx);
        json_t *o = fn(r, par_yaml_node(r->y, *it), k, entry);
        if (o != NULL)
            json_array_append_new(a, o);
    }
    return a;
}

/* trust.keys: each entry a key or .pub file, or {key|file, packages}. */
static json_t *trust_key(reader_t *r, yaml_node_t *e, const par_conf_key_t *k, const char *entry)
{
    static const char *const known[] = {"key", "file", "packages"};
    if (e->type == YAML_SCALAR_NODE)
        return par__conf_trust_key_entry(par_yaml_scalar(e, NULL), r->base);
    if (e->type != YAML_MAPPING_NODE) {
        char at[200];
        where(r, e, at, sizeof(at));
        par_buf_appendf(r->err, "%s: `%s%s`: expected a key, a .pub file or a mapping, not %s\n",
                        at, k->path, entry, par_yaml_kind(e));
        r->bad = 1;
        return NULL;
    }
    if (!fields_ok(r, e, k, entry, known, 3))
        return NULL;
    const char *key = par_yaml_scalar(par_yaml_get(r->y, e, "key"), NULL);
    const char *file = par_yaml_scalar(par_yaml_get(r->y, e, "file"), NULL);
    yaml_node_t *pk = par_yaml_get(r->y, e, "packages");
    json_t *pins = pk ? string_list(r, pk) : NULL;
    if ((key == NULL) == (file == NULL) || (pk && pins == NULL)) {
        char at[200];
        where(r, e, at, sizeof(at));
        par_buf_appendf(r->err, "%s: `%s%s`: %s\n", at, k->path, entry,
                        pk && pins == NULL ? "packages: expected a list of name patterns"
                                           : "needs exactly one of `key` (a minisign public key) "
                                             "or `file` (a .pub file)");
        r->bad = 1;
        json_decref(pins);
        return NULL;
    }
    char *abs = file ? par_path_absolute(r->base, file) : NULL;
    /* a `key` naming a .pub file is relative to this file too, as a bare entry is */
    json_t *o = file ? json_pack("{s:s}", "file", abs) : par__conf_trust_key_entry(key, r->base);
    free(abs);
    if (pins && o)
        json_object_set_new(o, "packages", pins);
    else
        json_decref(pins);
    return o;
}

static json_t *trust_keys(reader_t *r, yaml_node_t *n, const par_conf_key_t *k)
{
    return each_entry(r, n, k, trust_key);
}

/* auth.api_keys: the shape here; permissions and duplicates in auth/config.c. */
static json_t *api_key(reader_t *r, yaml_node_t *e, const par_conf_key_t *k, const char *entry)
{
    static const char *const known[] = {"sha256", "subject", "tenant", "permissions"};
    char at[200];
    where(r, e, at, sizeof(at));
    if (e->type != YAML_MAPPING_NODE) {
        par_buf_appendf(r->err, "%s: `%s%s`: expected a mapping, not %s\n", at, k->path, entry,
                        par_yaml_kind(e));
        r->bad = 1;
        return NULL;
    }
    if (!fields_ok(r, e, k, entry, known, 4))
        return NULL;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    for (size_t f = 0; f < 3; f++) {
        yaml_node_t *v = par_yaml_get(r->y, e, known[f]);
        const char *s = par_yaml_scalar(v, NULL);
        if (v && s == NULL) {
            par_buf_appendf(r->err, "%s: `%s%s.%s`: expected a string, not %s\n", at, k->path,
                            entry, known[f], par_yaml_kind(v));
            r->bad = 1;
        } else if (s && *s)
            json_object_set_new(o, known[f], json_string(s));
    }
    yaml_node_t *pv = par_yaml_get(r->y, e, "permissions");
    json_t *perms = pv ? string_list(r, pv) : json_array();
    if (perms == NULL) {
        par_buf_appendf(r->err, "%s: `%s%s.permissions`: expected a list of permissions\n", at,
                        k->path, entry);
        r->bad = 1;
    } else
        json_object_set_new(o, "permissions", perms);
    if (!json_object_get(o, "sha256") || !json_object_get(o, "subject")) {
        par_buf_appendf(r->err, "%s: `%s%s`: needs sha256 and subject\n", at, k->path, entry);
        r->bad = 1;
    }
    return o;
}

static json_t *api_keys(reader_t *r, yaml_node_t *n, const par_conf_key_t *k)
{
    return each_entry(r, n, k, api_key);
}

/* plugins: each entry {path, config}; the path made absolute against the
 * file's directory, the config block kept as JSON for the plugin. */
static json_t *plugin(reader_t *r, yaml_node_t *e, const par_conf_key_t *k, const char *entry)
{
    static const char *const known[] = {"path", "config"};
    char at[200];
    where(r, e, at, sizeof(at));
    if (e->type != YAML_MAPPING_NODE) {
        par_buf_appendf(r->err, "%s: `%s%s`: expected a mapping {path, config}, not %s\n", at,
                        k->path, entry, par_yaml_kind(e));
        r->bad = 1;
        return NULL;
    }
    if (!fields_ok(r, e, k, entry, known, 2))
        return NULL;
    const char *path = par_yaml_scalar(par_yaml_get(r->y, e, "path"), NULL);
    yaml_node_t *cn = par_yaml_get(r->y, e, "config");
    if (path == NULL || *path == '\0' ||
        (cn && !par_yaml_is_null(cn) && cn->type != YAML_MAPPING_NODE)) {
        par_buf_appendf(r->err, "%s: `%s%s`: %s\n", at, k->path, entry,
                        path == NULL || *path == '\0'
                            ? "needs `path`, the plugin's shared object"
                            : "`config` must be a mapping (the plugin's own settings)");
        r->bad = 1;
        return NULL;
    }
    char *abs = par_path_absolute(r->base, path);
    json_t *conf = cn && !par_yaml_is_null(cn) ? par_yaml_to_json(r->y, cn) : json_object();
    json_t *o = abs && conf ? json_pack("{s:s,s:O}", "path", abs, "config", conf) : NULL;
    free(abs);
    json_decref(conf);
    if (o == NULL) {
        par_buf_appendf(r->err, "%s: `%s%s`: out of memory\n", at, k->path, entry);
        r->bad = 1;
    }
    return o;
}

/* A mapping of names to strings (MAP) or to lists of strings (GRANTS). */
static json_t *name_map(reader_t *r, yaml_node_t *n, const par_conf_key_t *k)
{
    if (n->type != YAML_MAPPING_NODE)
        return wrong_kind(r, n, k), NULL;
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *name = par_yaml_scalar(par_yaml_node(r->y, p->key), NULL);
        yaml_node_t *v = par_yaml_node(r->y, p->value);
        json_t *val = k->type == PAR_CT_GRANTS   ? string_list(r, v)
                      : par_yaml_scalar(v, NULL) ? json_string(par_yaml_scalar(v, NULL))
                                                 : NULL;
        if (val == NULL) {
            char at[200];
            where(r, v, at, sizeof(at));
            par_buf_appendf(r->err, "%s: `%s.%s`: expected %s, not %s\n", at, k->path, name,
                            k->type == PAR_CT_GRANTS ? "a list of permissions" : "a string",
                            par_yaml_kind(v));
            r->bad = 1;
            continue;
        }
        json_object_set_new(o, name, val);
    }
    return o;
}

/* One key's node → its value. */
static void read_key(reader_t *r, int id, yaml_node_t *n)
{
    const par_conf_key_t *k = &par_conf_keys[id];
    json_t *val = NULL;
    char at[200], why[200];
    where(r, n, at, sizeof(at));
    if (par_yaml_is_null(n) && n->type == YAML_SCALAR_NODE) {
        if (k->flags & PAR_CF_REQUIRED) {
            par__conf_say(r->err, at, k, "", "a value is required");
            r->bad = 1;
        }
        return; /* null: keep the default */
    }
    switch (k->type) {
    case PAR_CT_KEYS:
        val = trust_keys(r, n, k);
        break;
    case PAR_CT_APIKEYS:
        val = api_keys(r, n, k);
        break;
    case PAR_CT_PLUGINS:
        val = each_entry(r, n, k, plugin);
        break;
    case PAR_CT_MAP:
    case PAR_CT_GRANTS:
        val = name_map(r, n, k);
        break;
    case PAR_CT_LIST:
        if ((val = string_list(r, n)) == NULL)
            wrong_kind(r, n, k);
        break;
    default:
        if (n->type != YAML_SCALAR_NODE) {
            wrong_kind(r, n, k);
            break;
        }
        val = par__conf_parse_text(k, par_yaml_scalar(n, NULL), r->base, why, sizeof(why));
        if (val == NULL) {
            par__conf_say(r->err, at, k, par_yaml_scalar(n, NULL), why);
            r->bad = 1;
        }
    }
    if (val)
        par__conf_store(r->c, id, val, PAR_CS_FILE, at, 0);
}

/* One mapping level; `prefix` is "" at the top. */
static void read_level(reader_t *r, yaml_node_t *m, const char *prefix)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = par_yaml_node(r->y, p->key), *vn = par_yaml_node(r->y, p->value);
        char full[256], at[200], sugg[256];
        snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix ? "." : "",
                 par_yaml_scalar(kn, NULL));
        int id = par_conf_find(full);
        if (id >= 0) {
            read_key(r, id, vn);
            continue;
        }
        where(r, kn, at, sizeof(at));
        char en[280];
        snprintf(en, sizeof(en), "%s.enabled", full);
        if (vn->type == YAML_SCALAR_NODE && !par_yaml_is_null(vn) && par_conf_find(en) >= 0) {
            read_key(r, par_conf_find(en), vn); /* `section: off` is `section: {enabled: off}` */
            continue;
        }
        if (par__conf_is_section(full)) {
            if (vn->type == YAML_MAPPING_NODE)
                read_level(r, vn, full);
            else if (!par_yaml_is_null(vn)) {
                par_buf_appendf(r->err,
                                "%s: `%s`: expected a mapping (a section of keys), not %s\n", at,
                                full, par_yaml_kind(vn));
                r->bad = 1;
            }
            continue;
        }
        par__conf_suggest_path(prefix, par_yaml_scalar(kn, NULL), sugg, sizeof(sugg));
        par_buf_appendf(r->err, "%s: unknown key `%s`%s%s%s\n", at, full,
                        *sugg ? " (did you mean `" : "", sugg, *sugg ? "`?)" : "");
        r->bad = 1;
    }
}

static char *read_all(const char *file, size_t *len, par_buf_t *err)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        par_buf_appendf(err, "%s: cannot open the configuration file: %s\n", file, strerror(errno));
        return NULL;
    }
    char *data = malloc(PAR_CONF_MAX_FILE + 1);
    *len = data ? fread(data, 1, PAR_CONF_MAX_FILE + 1, f) : 0;
    int bad = data == NULL || ferror(f) || *len > PAR_CONF_MAX_FILE;
    fclose(f);
    if (bad) {
        par_buf_appendf(err, "%s: cannot read the configuration file (or it exceeds %u bytes)\n",
                        file, PAR_CONF_MAX_FILE);
        free(data);
        return NULL;
    }
    data[*len] = '\0';
    return data;
}

int par_conf_load_text(par_conf_t *c, const char *file, const char *data, size_t len,
                       par_buf_t *err)
{
    par_yaml_t y;
    par_buf_t yerr;
    par_buf_init(&yerr, 0);
    if (par_yaml_load(&y, data, len, &yerr) != PAR_OK) {
        par_buf_appendf(err, "%s: %.*s", file, (int)yerr.len, yerr.data ? yerr.data : "\n");
        par_buf_free(&yerr);
        return PAR_E_INVALID_ARGUMENT;
    }
    par_buf_free(&yerr);
    free(c->file);
    c->file = par_path_absolute(NULL, file);
    reader_t r = {c, &y, file, c->file ? par_path_dirname(c->file) : NULL, err, 0};
    yaml_node_t *root = par_yaml_root(&y);
    if (root && !par_yaml_is_null(root)) {
        if (root->type == YAML_MAPPING_NODE)
            read_level(&r, root, "");
        else {
            par_buf_appendf(err, "%s:%lu: the configuration must be a mapping of keys, not %s\n",
                            file, par_yaml_line(root), par_yaml_kind(root));
            r.bad = 1;
        }
    }
    free(r.base);
    par_yaml_free(&y);
    return r.bad ? PAR_E_INVALID_ARGUMENT : PAR_OK;
}

int par_conf_load_file(par_conf_t *c, const char *file, par_buf_t *err)
{
    size_t len;
    char *data = read_all(file, &len, err);
    if (data == NULL)
        return PAR_E_INVALID_ARGUMENT;
    int rc = par_conf_load_text(c, file, data, len, err);
    free(data);
    return rc;
}

extern char **environ;

/* A PAR_* variable within two edits of one of the table's is a typo that
 * would fall back to a default silently (PAR_LSTEN): refused, named with the
 * variable it is close to. Others (PAR_TOKEN of the client, …) are not ours. */
static int env_typos(par_buf_t *err)
{
    const char *known[PAR_K_COUNT + 1];
    size_t n = 0;
    for (int i = 0; i < PAR_K_COUNT; i++)
        if (par_conf_keys[i].env)
            known[n++] = par_conf_keys[i].env;
    known[n] = NULL;
    int rc = PAR_OK;
    for (char **e = environ; e && *e; e++) {
        char name[128];
        size_t len = strcspn(*e, "=");
        if (strncmp(*e, "PAR_", 4) != 0 || len >= sizeof(name))
            continue;
        memcpy(name, *e, len);
        name[len] = '\0';
        const char *near = par_suggest(name, known);
        if (near) {
            par_buf_appendf(err, "%s: unknown variable (did you mean %s?)\n", name, near);
            rc = PAR_E_INVALID_ARGUMENT;
        }
    }
    return rc;
}

int par_conf_load_env(par_conf_t *c, par_buf_t *err)
{
    int rc = env_typos(err);
    for (int i = 0; i < PAR_K_COUNT; i++) {
        const char *e = par_conf_keys[i].env, *v = e ? getenv(e) : NULL;
        if (v != NULL && par_conf_set(c, (par_conf_id_t)i, v, PAR_CS_ENV, e, err) != PAR_OK)
            rc = PAR_E_INVALID_ARGUMENT;
    }
    return rc;
}

/* The key a flag names (`--auth KEY=VALUE` names auth.KEY), with its value in *v. */
static int flag_key(const char *a, const char **v, char *origin, size_t cap, par_buf_t *err)
{
    if (strcmp(a, "--auth") == 0) {
        const char *eq = *v ? strchr(*v, '=') : NULL;
        char path[128];
        snprintf(path, sizeof(path), "auth.%.*s", eq ? (int)(eq - *v) : 0, eq ? *v : "");
        int id = eq ? par_conf_find(path) : -1;
        if (id < 0) {
            par_buf_appendf(err, "--auth %s: want KEY=VALUE with an auth key (`%s` is none)\n",
                            *v ? *v : "", path);
            return -1;
        }
        snprintf(origin, cap, "--auth %.*s", (int)(eq - *v), *v);
        *v = eq + 1;
        return id;
    }
    const char *flags[PAR_K_COUNT];
    size_t n = 0;
    for (int i = 0; i < PAR_K_COUNT; i++) {
        if (par_conf_keys[i].flag == NULL)
            continue;
        if (strcmp(par_conf_keys[i].flag, a) == 0) {
            snprintf(origin, cap, "%s", a);
            return i;
        }
        flags[n++] = par_conf_keys[i].flag;
    }
    const char *s = par__conf_suggest(a, flags, n);
    par_buf_appendf(err, "unknown option `%s`%s%s%s (see par serve --help)\n", a,
                    s ? " (did you mean `" : "", s ? s : "", s ? "`?)" : "");
    return -1;
}

int par_conf_load_flags(par_conf_t *c, int argc, char **argv, par_buf_t *err)
{
    int seen[PAR_K_COUNT] = {0}, rc = PAR_OK;
    for (int i = 1; i < argc; i++) {
        char name[128], origin[160];
        const char *a = argv[i], *v, *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) == 0 && eq) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a); /* --flag=value */
            a = name;
            v = eq + 1;
        } else
            v = ++i < argc ? argv[i] : NULL;
        if (v == NULL) {
            par_buf_appendf(err, "%s needs a value (see par serve --help)\n", a);
            return PAR_E_INVALID_ARGUMENT;
        }
        if (strcmp(a, "--config") == 0)
            continue;
        int id = flag_key(a, &v, origin, sizeof(origin), err);
        if (id < 0) {
            rc = PAR_E_INVALID_ARGUMENT;
            continue;
        }
        const par_conf_key_t *k = &par_conf_keys[id];
        char why[200];
        json_t *val = par__conf_parse_text(k, v, NULL, why, sizeof(why));
        if (val == NULL) {
            par__conf_say(err, origin, k, v, why);
            rc = PAR_E_INVALID_ARGUMENT;
            continue;
        }
        /* a repeated list flag adds; the first one replaces the file's list */
        par__conf_store(c, id, val, PAR_CS_FLAG, origin, seen[id] || (k->flags & PAR_CF_APPEND));
        seen[id] = 1;
    }
    return rc;
}

int par_conf_build(par_conf_t *c, int argc, char **argv, par_buf_t *err)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    par_conf_init(c);
    int rc = file ? par_conf_load_file(c, file, err) : PAR_OK;
    if (par_conf_load_env(c, err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    if (par_conf_load_flags(c, argc, argv, err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    return rc;
}
