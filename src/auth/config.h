/*
 * auth/config.h — the `auth:` block of the configuration (docs/auth.md).
 *
 * Owns the parsed, validated form of every auth key. Where a key comes from
 * (the YAML file, PAR_AUTH_* variables, `--auth KEY=VALUE`) is the
 * configuration table's business (src/config/config.h), which hands the
 * values over through par_auth_config_set() and the structured setters.
 * Called on the main thread at start; the result is handed to par_auth_new()
 * and not touched after.
 */
#ifndef PAR_AUTH_CONFIG_H
#define PAR_AUTH_CONFIG_H

#include <stddef.h>

#include <jansson.h>

#include "auth/permissions.h"
#include "util/buf.h"

typedef enum par_auth_mode {
    PAR_AUTH_UNSET = -1,
    PAR_AUTH_OFF = 0,
    PAR_AUTH_OIDC = 1,
    PAR_AUTH_API_KEY = 2,
    PAR_AUTH_PLUGIN = 3, /* `plugin:<name>`: a provider registered by a plugin */
} par_auth_mode_t;

/* One static API key: only its SHA-256 is configured. */
typedef struct par_api_key {
    unsigned char sha256[32];
    char *subject;
    char *tenant; /* may be NULL */
    par_perms_t perms;
} par_api_key_t;

typedef struct par_oidc_config {
    char *issuer;   /* exact `iss`; discovery at {issuer}/.well-known/openid-configuration */
    char *audience; /* `aud` must contain it */
    char *jwks_uri; /* skips discovery when set */
    char *ca_file;  /* CA bundle for the issuer's TLS; NULL = the system store */
    unsigned alg_mask;
    unsigned leeway_s;              /* default 60 */
    unsigned max_token_bytes;       /* default 16384 */
    unsigned fetch_timeout_ms;      /* default 5000 */
    unsigned jwks_cache_min_s;      /* floor on Cache-Control max-age, default 60 */
    unsigned jwks_cache_max_s;      /* ceiling, default 86400 */
    unsigned jwks_cache_default_s;  /* when the JWKS says nothing, default 3600 */
    unsigned unknown_kid_refresh_s; /* at most one unknown-kid refresh per this, default 10 */
    unsigned retry_max_s;           /* backoff ceiling after a failed fetch, default 30 */
    int allow_http;                 /* plain-HTTP issuer: loopback tests only */
} par_oidc_config_t;

typedef struct par_auth_config {
    int mode;          /* par_auth_mode_t */
    char *plugin;      /* PAR_AUTH_PLUGIN: the plugin's name */
    char **open_paths; /* served without credentials */
    size_t nopen;
    char *subject_claim;          /* default "sub" */
    char *tenant_claim;           /* NULL = no tenant */
    unsigned token_cache_entries; /* default 4096 */
    par_perm_map_t perms;
    par_oidc_config_t oidc;
    par_api_key_t *api_keys;
    size_t napi_keys;
} par_auth_config_t;

/* Defaults: mode unset, open paths /runtime/health and /runtime/ready. */
int par_auth_config_init(par_auth_config_t *c);
void par_auth_config_free(par_auth_config_t *c);

/* Sets one key from text: "mode", "oidc.issuer", "open_paths" (comma or
 * space separated), … Returns PAR_OK or PAR_E_INVALID_ARGUMENT. */
int par_auth_config_set(par_auth_config_t *c, const char *key, const char *value, par_buf_t *err);

/* auth.permissions.grants from its JSON form (claim value → list of
 * permissions) and auth.api_keys from theirs ([{sha256, subject, tenant,
 * permissions}]), as the configuration table (src/config/) read them.
 * Return PAR_OK or PAR_E_INVALID_ARGUMENT with the key's path in `err`. */
int par_auth_config_set_grants(par_auth_config_t *c, const json_t *grants, par_buf_t *err);
int par_auth_config_set_api_keys(par_auth_config_t *c, const json_t *list, par_buf_t *err);

/* Resolves the mode (unset + `embedded` = off; unset otherwise is an error)
 * and checks that the keys the mode needs are there and sane. */
int par_auth_config_finish(par_auth_config_t *c, int embedded, par_buf_t *err);

const char *par_auth_mode_name(int mode);

#endif
