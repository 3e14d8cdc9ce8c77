/*
 * auth/apikey.c — see apikey.h.
 */
#include "auth/apikey.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#define KEY_MAX_BYTES 1024

typedef struct apikey_entry {
    unsigned char sha256[32];
    par_identity_t *id;
} apikey_entry_t;

typedef struct apikeys {
    par_auth_provider_t prov;
    apikey_entry_t *keys;
    size_t count;
} apikeys_t;

static int ak_check(par_auth_provider_t *p, par_slice_t cred, par_auth_waiter_t *w,
                    par_identity_t **out, par_auth_fail_t *f)
{
    apikeys_t *a = p->data;
    (void)w;
    if (cred.len == 0 || cred.len > KEY_MAX_BYTES)
        return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_MALFORMED,
                              "API key of %zu bytes (1-%d accepted)", cred.len, KEY_MAX_BYTES);
    unsigned char h[32];
    unsigned int hl = 0;
    if (EVP_Digest(cred.ptr, cred.len, h, &hl, EVP_sha256(), NULL) != 1)
        return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_MALFORMED, "cannot hash the key");
    /* look at every entry whatever matches, so timing says nothing */
    apikey_entry_t *hit = NULL;
    for (size_t i = 0; i < a->count; i++) {
        int eq = CRYPTO_memcmp(h, a->keys[i].sha256, sizeof(h)) == 0;
        hit = eq ? &a->keys[i] : hit;
    }
    if (hit == NULL)
        return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_UNKNOWN_KEY,
                              "no configured key has this SHA-256 (prefix %02x%02x%02x%02x)", h[0],
                              h[1], h[2], h[3]);
    par_identity_ref(hit->id);
    *out = hit->id;
    return PAR_OK;
}

static int ak_ready(par_auth_provider_t *p, par_buf_t *why)
{
    (void)p;
    (void)why;
    return 1;
}

static void ak_describe(par_auth_provider_t *p, json_t *into)
{
    apikeys_t *a = p->data;
    json_t *subs = json_array();
    for (size_t i = 0; i < a->count; i++)
        json_array_append_new(subs, json_string(a->keys[i].id->subject));
    json_object_set_new(into, "api_keys", json_integer((json_int_t)a->count));
    json_object_set_new(into, "subjects", subs);
}

static void ak_destroy(par_auth_provider_t *p)
{
    apikeys_t *a = p->data;
    for (size_t i = 0; i < a->count; i++)
        par_identity_unref(a->keys[i].id);
    free(a->keys);
    free(a);
}

static const par_auth_provider_ops_t apikey_ops = {
    .name = "api_key",
    .check = ak_check,
    .ready = ak_ready,
    .describe = ak_describe,
    .destroy = ak_destroy,
};

int par_apikey_provider_new(const par_auth_config_t *cfg, par_auth_provider_t **out, par_buf_t *err)
{
    apikeys_t *a = calloc(1, sizeof(*a));
    if (a == NULL ||
        (a->keys = calloc(cfg->napi_keys ? cfg->napi_keys : 1, sizeof(apikey_entry_t))) == NULL) {
        free(a);
        par_buf_appends(err, "out of memory");
        return PAR_E_NO_MEMORY;
    }
    a->prov.ops = &apikey_ops;
    a->prov.data = a;
    for (size_t i = 0; i < cfg->napi_keys; i++) {
        const par_api_key_t *k = &cfg->api_keys[i];
        par_identity_t *id = par_identity_new(k->subject, k->tenant);
        if (id == NULL || par_perms_merge(&id->perms, &k->perms) != 0) {
            par_identity_unref(id);
            ak_destroy(&a->prov);
            par_buf_appends(err, "out of memory");
            return PAR_E_NO_MEMORY;
        }
        memcpy(a->keys[i].sha256, k->sha256, 32);
        a->keys[i].id = id;
        a->count++;
    }
    *out = &a->prov;
    return PAR_OK;
}
