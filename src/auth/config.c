/*
 * auth/config.c — see config.h.
 *
 * Where a key comes from (file, environment, flag) and the refusal of unknown
 * keys belong to the configuration table (src/config/); this file turns the
 * values into the typed struct: one table of the scalar and list keys with
 * their fields and bounds (par_auth_config_set), the structured keys from
 * their JSON form, and the checks across keys (par_auth_config_finish).
 */
#include "auth/config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "auth/jwt.h"

typedef enum ktype { T_STR, T_UINT, T_BOOL, T_LIST, T_MODE, T_ALGS } ktype_t;

typedef struct key {
    const char *name;
    ktype_t type;
    size_t off;
    size_t count_off; /* T_LIST: where the count lives */
    unsigned min, max;
} confkey_t;

#define OFF(m) offsetof(par_auth_config_t, m)
static const confkey_t keys[] = {
    {"mode", T_MODE, OFF(mode), 0, 0, 0},
    {"open_paths", T_LIST, OFF(open_paths), OFF(nopen), 0, 0},
    {"subject_claim", T_STR, OFF(subject_claim), 0, 0, 0},
    {"tenant_claim", T_STR, OFF(tenant_claim), 0, 0, 0},
    {"token_cache_entries", T_UINT, OFF(token_cache_entries), 0, 64, 1u << 22},
    {"permissions.claims", T_LIST, OFF(perms.claims), OFF(perms.nclaims), 0, 0},
    {"oidc.issuer", T_STR, OFF(oidc.issuer), 0, 0, 0},
    {"oidc.audience", T_STR, OFF(oidc.audience), 0, 0, 0},
    {"oidc.jwks_uri", T_STR, OFF(oidc.jwks_uri), 0, 0, 0},
    {"oidc.ca_file", T_STR, OFF(oidc.ca_file), 0, 0, 0},
    {"oidc.algorithms", T_ALGS, OFF(oidc.alg_mask), 0, 0, 0},
    {"oidc.leeway_s", T_UINT, OFF(oidc.leeway_s), 0, 0, 600},
    {"oidc.max_token_bytes", T_UINT, OFF(oidc.max_token_bytes), 0, 1024, 65536},
    {"oidc.fetch_timeout_ms", T_UINT, OFF(oidc.fetch_timeout_ms), 0, 100, 60000},
    {"oidc.jwks_cache_min_s", T_UINT, OFF(oidc.jwks_cache_min_s), 0, 1, 86400},
    {"oidc.jwks_cache_max_s", T_UINT, OFF(oidc.jwks_cache_max_s), 0, 1, 7 * 86400},
    {"oidc.jwks_cache_default_s", T_UINT, OFF(oidc.jwks_cache_default_s), 0, 1, 7 * 86400},
    {"oidc.unknown_kid_refresh_s", T_UINT, OFF(oidc.unknown_kid_refresh_s), 0, 1, 86400},
    {"oidc.retry_max_s", T_UINT, OFF(oidc.retry_max_s), 0, 1, 3600},
    {"oidc.allow_http", T_BOOL, OFF(oidc.allow_http), 0, 0, 0},
};
#undef OFF
#define NKEYS (sizeof(keys) / sizeof(*keys))

/* Routes that may be served without credentials. */
static const char *const openable[] = {"/runtime/health", "/runtime/ready", "/runtime/info",
                                       "/metrics"};

const char *par_auth_mode_name(int mode)
{
    switch (mode) {
    case PAR_AUTH_OFF:
        return "off";
    case PAR_AUTH_OIDC:
        return "oidc";
    case PAR_AUTH_API_KEY:
        return "api_key";
    case PAR_AUTH_PLUGIN:
        return "plugin";
    default:
        return "unset";
    }
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

int par_auth_config_init(par_auth_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = PAR_AUTH_UNSET;
    c->token_cache_entries = 4096;
    c->oidc.leeway_s = 60;
    c->oidc.max_token_bytes = PAR_JWT_DEFAULT_MAX_BYTES;
    c->oidc.fetch_timeout_ms = 5000;
    c->oidc.jwks_cache_min_s = 60;
    c->oidc.jwks_cache_max_s = 86400;
    c->oidc.jwks_cache_default_s = 3600;
    c->oidc.unknown_kid_refresh_s = 10;
    c->oidc.retry_max_s = 30;
    c->subject_claim = strdup("sub");
    c->open_paths = calloc(2, sizeof(char *));
    if (c->subject_claim == NULL || c->open_paths == NULL || par_perm_map_default(&c->perms) != 0)
        return PAR_E_NO_MEMORY;
    c->open_paths[0] = strdup("/runtime/health");
    c->open_paths[1] = strdup("/runtime/ready");
    c->nopen = 2;
    return c->open_paths[0] && c->open_paths[1] ? PAR_OK : PAR_E_NO_MEMORY;
}

void par_auth_config_free(par_auth_config_t *c)
{
    free_list(c->open_paths, c->nopen);
    free(c->plugin);
    free(c->subject_claim);
    free(c->tenant_claim);
    par_perm_map_free(&c->perms);
    free(c->oidc.issuer);
    free(c->oidc.audience);
    free(c->oidc.jwks_uri);
    free(c->oidc.ca_file);
    for (size_t i = 0; i < c->napi_keys; i++) {
        free(c->api_keys[i].subject);
        free(c->api_keys[i].tenant);
        par_perms_free(&c->api_keys[i].perms);
    }
    free(c->api_keys);
    memset(c, 0, sizeof(*c));
}

static const confkey_t *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* Sets a list key from items. */
static int set_list(par_auth_config_t *c, const confkey_t *k, const char *where, char **items,
                    size_t n, par_buf_t *err)
{
    if (k->type == T_ALGS) {
        unsigned mask = 0;
        for (size_t i = 0; i < n; i++) {
            int a = par_jwt_alg_parse(items[i]);
            if (a == -2) {
                par_buf_appendf(err,
                                "%sauth.%s: '%s' is never accepted (unsigned and HMAC tokens "
                                "could be forged with the issuer's public key)\n",
                                where, k->name, items[i]);
                return PAR_E_INVALID_ARGUMENT;
            }
            if (a < 0) {
                par_buf_appendf(err,
                                "%sauth.%s: unknown algorithm '%s' (RS256 RS384 RS512 PS256 "
                                "PS384 PS512 ES256 ES384 ES512 EdDSA)\n",
                                where, k->name, items[i]);
                return PAR_E_INVALID_ARGUMENT;
            }
            mask |= PAR_JWT_ALG_BIT(a);
        }
        if (mask == 0) {
            par_buf_appendf(err, "%sauth.%s: name at least one algorithm\n", where, k->name);
            return PAR_E_INVALID_ARGUMENT;
        }
        *(unsigned *)((char *)c + k->off) = mask;
        return PAR_OK;
    }
    char ***lp = (char ***)((char *)c + k->off);
    size_t *np = (size_t *)((char *)c + k->count_off);
    char **l = calloc(n ? n : 1, sizeof(char *));
    if (l == NULL)
        return PAR_E_NO_MEMORY;
    for (size_t i = 0; i < n; i++)
        if ((l[i] = strdup(items[i])) == NULL) {
            free_list(l, i);
            return PAR_E_NO_MEMORY;
        }
    free_list(*lp, *np);
    *lp = l;
    *np = n;
    return PAR_OK;
}

static int set_key(par_auth_config_t *c, const confkey_t *k, const char *where, const char *v,
                   par_buf_t *err)
{
    char *p = (char *)c + k->off;
    switch (k->type) {
    case T_STR: {
        char **s = (char **)p;
        free(*s);
        *s = *v ? strdup(v) : NULL;
        return *v && *s == NULL ? PAR_E_NO_MEMORY : PAR_OK;
    }
    case T_UINT: {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*v == '\0' || *end != '\0' || v[0] == '-' || n < k->min || n > k->max) {
            par_buf_appendf(err, "%sauth.%s: '%s' is not a whole number from %u to %u\n", where,
                            k->name, v, k->min, k->max);
            return PAR_E_INVALID_ARGUMENT;
        }
        *(unsigned *)p = (unsigned)n;
        return PAR_OK;
    }
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
            *(int *)p = 1;
        } else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") ||
                   !strcmp(v, "0")) {
            *(int *)p = 0;
        } else {
            par_buf_appendf(err, "%sauth.%s: '%s' is not true or false\n", where, k->name, v);
            return PAR_E_INVALID_ARGUMENT;
        }
        return PAR_OK;
    case T_MODE:
        if (!strcmp(v, "off"))
            c->mode = PAR_AUTH_OFF;
        else if (!strcmp(v, "oidc"))
            c->mode = PAR_AUTH_OIDC;
        else if (!strcmp(v, "api_key"))
            c->mode = PAR_AUTH_API_KEY;
        else if (!strncmp(v, "plugin:", 7) && v[7]) {
            char *name = strdup(v + 7);
            if (name == NULL)
                return PAR_E_NO_MEMORY;
            free(c->plugin);
            c->plugin = name;
            c->mode = PAR_AUTH_PLUGIN;
        } else {
            par_buf_appendf(err,
                            "%sauth.mode: '%s' is not one of off, oidc, api_key, plugin:<name>\n",
                            where, v);
            return PAR_E_INVALID_ARGUMENT;
        }
        return PAR_OK;
    case T_LIST:
    case T_ALGS: {
        /* text form: comma- or space-separated */
        char *dup = strdup(v);
        char *items[64];
        size_t n = 0;
        char *save = NULL;
        if (dup == NULL)
            return PAR_E_NO_MEMORY;
        for (char *t = strtok_r(dup, ", \t", &save); t && n < 64; t = strtok_r(NULL, ", \t", &save))
            items[n++] = t;
        int rc = set_list(c, k, where, items, n, err);
        free(dup);
        return rc;
    }
    }
    return PAR_E_INTERNAL;
}

int par_auth_config_set(par_auth_config_t *c, const char *key, const char *value, par_buf_t *err)
{
    const confkey_t *k = find_key(key);
    if (k == NULL) {
        par_buf_appendf(err, "auth.%s: unknown key (see docs/auth.md)\n", key);
        return PAR_E_INVALID_ARGUMENT;
    }
    return set_key(c, k, "", value, err);
}

/* ---- structured keys (from the configuration table, config/apply.c) ------------------- */

/* Items of a JSON array of strings as borrowed C strings (at most `cap`). */
static int strings_of(const json_t *a, const char **items, size_t cap, size_t *count)
{
    *count = 0;
    if (json_is_string(a)) {
        items[(*count)++] = json_string_value(a);
        return 0;
    }
    if (!json_is_array(a) || json_array_size(a) > cap)
        return -1;
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (!json_is_string(json_array_get(a, i)))
            return -1;
        items[(*count)++] = json_string_value(json_array_get(a, i));
    }
    return 0;
}

int par_auth_config_set_grants(par_auth_config_t *c, const json_t *grants, par_buf_t *err)
{
    const char *val;
    json_t *list;
    if (!json_is_object(grants)) {
        par_buf_appends(err, "auth.permissions.grants: must map claim values to lists of "
                             "permissions\n");
        return PAR_E_INVALID_ARGUMENT;
    }
    json_object_foreach((json_t *)grants, val, list)
    {
        const char *items[64];
        size_t cnt;
        if (*val == '\0' || strings_of(list, items, 64, &cnt) != 0) {
            par_buf_appendf(err,
                            "auth.permissions.grants.%s: must be a list of at most 64 "
                            "permissions\n",
                            val);
            return PAR_E_INVALID_ARGUMENT;
        }
        par_grant_t *g = realloc(c->perms.grants, (c->perms.ngrants + 1) * sizeof(*g));
        if (g == NULL)
            return PAR_E_NO_MEMORY;
        c->perms.grants = g;
        g = &c->perms.grants[c->perms.ngrants++];
        memset(g, 0, sizeof(*g));
        if ((g->value = strdup(val)) == NULL)
            return PAR_E_NO_MEMORY;
        for (size_t i = 0; i < cnt; i++) {
            char why[200];
            if (par_perms_add(&g->perms, items[i], why, sizeof(why)) != 0) {
                par_buf_appendf(err, "auth.permissions.grants.%s[%zu]: %s\n", val, i, why);
                return PAR_E_INVALID_ARGUMENT;
            }
        }
    }
    return PAR_OK;
}

static int hex_to_bytes(const char *s, unsigned char *out, size_t n)
{
    return strlen(s) == 2 * n ? par_hex_decode(s, out, n) : -1;
}

/* One entry of auth.api_keys into `k`. */
static int api_key_of(par_api_key_t *k, const json_t *e, size_t idx, par_buf_t *err)
{
    const char *sha = json_string_value(json_object_get(e, "sha256"));
    const char *subject = json_string_value(json_object_get(e, "subject"));
    const char *tenant = json_string_value(json_object_get(e, "tenant"));
    if (sha == NULL || subject == NULL || *subject == '\0') {
        par_buf_appendf(err, "auth.api_keys[%zu]: needs sha256 and subject\n", idx);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (hex_to_bytes(sha, k->sha256, 32) != 0) {
        par_buf_appendf(err,
                        "auth.api_keys[%zu].sha256: want the 64 hex digits of the key's SHA-256 "
                        "(printf %%s KEY | sha256sum)\n",
                        idx);
        return PAR_E_INVALID_ARGUMENT;
    }
    k->subject = strdup(subject);
    k->tenant = tenant && *tenant ? strdup(tenant) : NULL;
    if (k->subject == NULL || (tenant && *tenant && k->tenant == NULL))
        return PAR_E_NO_MEMORY;
    const char *items[64];
    size_t cnt = 0;
    json_t *perms = json_object_get(e, "permissions");
    if (perms && strings_of(perms, items, 64, &cnt) != 0) {
        par_buf_appendf(err, "auth.api_keys[%zu].permissions: must be a list of permissions\n",
                        idx);
        return PAR_E_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < cnt; i++) {
        char why[200];
        if (par_perms_add(&k->perms, items[i], why, sizeof(why)) != 0) {
            par_buf_appendf(err, "auth.api_keys[%zu].permissions[%zu]: %s\n", idx, i, why);
            return PAR_E_INVALID_ARGUMENT;
        }
    }
    return PAR_OK;
}

int par_auth_config_set_api_keys(par_auth_config_t *c, const json_t *list, par_buf_t *err)
{
    if (!json_is_array(list)) {
        par_buf_appends(err, "auth.api_keys: must be a list of {sha256, subject, permissions}\n");
        return PAR_E_INVALID_ARGUMENT;
    }
    for (size_t idx = 0; idx < json_array_size(list); idx++) {
        par_api_key_t *k = realloc(c->api_keys, (c->napi_keys + 1) * sizeof(*k));
        if (k == NULL)
            return PAR_E_NO_MEMORY;
        c->api_keys = k;
        k = &c->api_keys[c->napi_keys++];
        memset(k, 0, sizeof(*k));
        int rc = api_key_of(k, json_array_get(list, idx), idx, err);
        if (rc != PAR_OK)
            return rc;
        for (size_t j = 0; j + 1 < c->napi_keys; j++)
            if (memcmp(c->api_keys[j].sha256, k->sha256, 32) == 0) {
                par_buf_appendf(err, "auth.api_keys[%zu]: the same key as api_keys[%zu]\n", idx, j);
                return PAR_E_INVALID_ARGUMENT;
            }
    }
    return PAR_OK;
}

/* ---- validation ---------------------------------------------------------------------- */

static int url_ok(const char *u, int allow_http)
{
    return strncmp(u, "https://", 8) == 0 || (allow_http && strncmp(u, "http://", 7) == 0);
}

int par_auth_config_finish(par_auth_config_t *c, int embedded, par_buf_t *err)
{
    if (c->mode == PAR_AUTH_UNSET) {
        if (!embedded) {
            par_buf_appends(err, "auth.mode is not set: set it to oidc, api_key or off "
                                 "(see docs/auth.md)\n");
            return PAR_E_INVALID_ARGUMENT;
        }
        c->mode = PAR_AUTH_OFF;
    }
    for (size_t i = 0; i < c->nopen; i++) {
        size_t k;
        for (k = 0; k < sizeof(openable) / sizeof(*openable); k++)
            if (strcmp(c->open_paths[i], openable[k]) == 0)
                break;
        if (k == sizeof(openable) / sizeof(*openable)) {
            par_buf_appendf(err,
                            "auth.open_paths[%zu]: '%s' cannot be opened (only /runtime/health, "
                            "/runtime/ready, /runtime/info and /metrics)\n",
                            i, c->open_paths[i]);
            return PAR_E_INVALID_ARGUMENT;
        }
    }
    if (c->subject_claim == NULL) {
        par_buf_appends(err, "auth.subject_claim: must name a claim\n");
        return PAR_E_INVALID_ARGUMENT;
    }
    if (c->mode == PAR_AUTH_OIDC) {
        par_oidc_config_t *o = &c->oidc;
        if (o->issuer == NULL || o->audience == NULL) {
            par_buf_appends(err, "auth.mode is oidc: auth.oidc.issuer and auth.oidc.audience "
                                 "are required\n");
            return PAR_E_INVALID_ARGUMENT;
        }
        if (!url_ok(o->issuer, o->allow_http) ||
            (o->jwks_uri && !url_ok(o->jwks_uri, o->allow_http))) {
            par_buf_appendf(err, "auth.oidc: the issuer and jwks_uri must be https:// URLs "
                                 "(allow_http is for loopback tests only)\n");
            return PAR_E_INVALID_ARGUMENT;
        }
        if (o->alg_mask == 0)
            o->alg_mask = PAR_JWT_DEFAULT_ALGS;
        if (o->jwks_cache_min_s > o->jwks_cache_max_s) {
            par_buf_appendf(err, "auth.oidc.jwks_cache_min_s (%u) exceeds jwks_cache_max_s (%u)\n",
                            o->jwks_cache_min_s, o->jwks_cache_max_s);
            return PAR_E_INVALID_ARGUMENT;
        }
        if (o->jwks_cache_default_s < o->jwks_cache_min_s)
            o->jwks_cache_default_s = o->jwks_cache_min_s;
        if (o->jwks_cache_default_s > o->jwks_cache_max_s)
            o->jwks_cache_default_s = o->jwks_cache_max_s;
    }
    if (c->mode == PAR_AUTH_API_KEY && c->napi_keys == 0) {
        par_buf_appends(err, "auth.mode is api_key: list at least one key under auth.api_keys\n");
        return PAR_E_INVALID_ARGUMENT;
    }
    return PAR_OK;
}
