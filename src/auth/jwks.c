/*
 * auth/jwks.c — see jwks.h.
 *
 * rhonabwy (JWK import) is loaded with dlopen the first time a key set is
 * needed: it brings GnuTLS, a second libcurl and a dozen more libraries,
 * which every `par` process would otherwise map and relocate at start (most
 * of a cold start's dynamic-loading time, and ~1.5 MB of idle RSS), while
 * only OIDC deployments use it.
 */
#include "auth/jwks.h"

#include <assert.h>
#include <dlfcn.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <rhonabwy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "auth/jwt.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* the rhonabwy functions this file uses, resolved at run time */
static struct {
    int ok;
    char error[256];
    __typeof__(&r_global_init) global_init;
    __typeof__(&r_jwk_init) jwk_init;
    __typeof__(&r_jwk_import_from_json_t) jwk_import_from_json_t;
    __typeof__(&r_jwk_key_type) jwk_key_type;
    __typeof__(&r_jwk_export_to_pem_der) jwk_export_to_pem_der;
    __typeof__(&r_jwk_free) jwk_free;
} g_rhn;

static void global_init(void)
{
    void *h = dlopen(PAR_RHONABWY_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(g_rhn.error, sizeof(g_rhn.error), "cannot load %s (JWK support): %s",
                 PAR_RHONABWY_SONAME, dlerror());
        return;
    }
    /* POSIX: a function pointer travels through dlsym's void * */
    *(void **)&g_rhn.global_init = dlsym(h, "r_global_init");
    *(void **)&g_rhn.jwk_init = dlsym(h, "r_jwk_init");
    *(void **)&g_rhn.jwk_import_from_json_t = dlsym(h, "r_jwk_import_from_json_t");
    *(void **)&g_rhn.jwk_key_type = dlsym(h, "r_jwk_key_type");
    *(void **)&g_rhn.jwk_export_to_pem_der = dlsym(h, "r_jwk_export_to_pem_der");
    *(void **)&g_rhn.jwk_free = dlsym(h, "r_jwk_free");
    if (!g_rhn.global_init || !g_rhn.jwk_init || !g_rhn.jwk_import_from_json_t ||
        !g_rhn.jwk_key_type || !g_rhn.jwk_export_to_pem_der || !g_rhn.jwk_free) {
        snprintf(g_rhn.error, sizeof(g_rhn.error), "%s lacks a JWK function: %s",
                 PAR_RHONABWY_SONAME, dlerror());
        return; /* kept loaded: unloading a library mid-initialisation helps nobody */
    }
    g_rhn.global_init();
    g_rhn.ok = 1;
}

void par_jwks_global_init(void)
{
    pthread_once(&g_once, global_init);
}

void par_jwks_ref(par_jwks_t *s)
{
    int prev = atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    assert(prev > 0); /* a reference is taken only through a live one */
    (void)prev;
}

void par_jwks_unref(par_jwks_t *s)
{
    if (s == NULL)
        return;
    int prev = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel);
    if (prev <= 0) {
        fprintf(stderr, "%s:%d: key set refcount underflow\n", __FILE__, __LINE__);
        abort();
    }
    if (prev > 1)
        return;
    for (size_t i = 0; i < s->count; i++) {
        free(s->keys[i].kid);
        EVP_PKEY_free(s->keys[i].pkey);
    }
    free(s->keys);
    free(s);
}

/* Copies only the members that describe a public key: private parts are
 * never needed, and dropping x5u/x5c/jku keeps rhonabwy from ever looking
 * anywhere but the parameters themselves. */
static json_t *public_members(json_t *k)
{
    static const char *const keep[] = {"kty", "kid", "alg", "use", "key_ops",
                                       "n",   "e",   "crv", "x",   "y"};
    json_t *o = json_object();
    for (size_t i = 0; o && i < sizeof(keep) / sizeof(*keep); i++) {
        json_t *v = json_object_get(k, keep[i]);
        if (v)
            json_object_set(o, keep[i], v);
    }
    return o;
}

static int class_of(EVP_PKEY *pk, char *why, size_t cap)
{
    if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < 2048) {
            snprintf(why, cap, "RSA key of %d bits (at least 2048 are required)", bits);
            return -1;
        }
        return PAR_KEY_RSA;
    }
    if (EVP_PKEY_is_a(pk, "ED25519") || EVP_PKEY_is_a(pk, "ED448"))
        return PAR_KEY_ED;
    if (EVP_PKEY_is_a(pk, "EC")) {
        /* a point off the curve is not a key, whatever a decoder let through */
        EVP_PKEY_CTX *cx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        int valid = cx && EVP_PKEY_public_check(cx) == 1;
        EVP_PKEY_CTX_free(cx);
        if (!valid) {
            snprintf(why, cap, "EC public key is not a point of its curve");
            return -1;
        }
        char g[64];
        size_t gl = 0;
        if (EVP_PKEY_get_group_name(pk, g, sizeof(g), &gl) == 1) {
            if (strcmp(g, "prime256v1") == 0)
                return PAR_KEY_P256;
            if (strcmp(g, "secp384r1") == 0)
                return PAR_KEY_P384;
            if (strcmp(g, "secp521r1") == 0)
                return PAR_KEY_P521;
        }
        snprintf(why, cap, "EC key on an unsupported curve");
        return -1;
    }
    snprintf(why, cap, "unsupported key type");
    return -1;
}

static int use_ok(json_t *k)
{
    json_t *use = json_object_get(k, "use");
    if (use && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0))
        return 0;
    json_t *ops = json_object_get(k, "key_ops");
    if (ops) {
        size_t i;
        json_t *e;
        int verify = 0;
        json_array_foreach(ops, i, e)
        {
            if (json_is_string(e) && strcmp(json_string_value(e), "verify") == 0)
                verify = 1;
        }
        return verify;
    }
    return 1;
}

/* Turns one JWK into a key; returns 0, or -1 with `why` set. */
static int load_key(json_t *k, par_jwk_t *out, char *why, size_t cap)
{
    const char *kty = json_string_value(json_object_get(k, "kty"));
    if (kty == NULL) {
        snprintf(why, cap, "no \"kty\"");
        return -1;
    }
    if (strcmp(kty, "oct") == 0) {
        snprintf(why, cap, "symmetric key (never used)");
        return -1;
    }
    if (!use_ok(k)) {
        snprintf(why, cap, "not a signature key (use/key_ops)");
        return -1;
    }
    json_t *kid = json_object_get(k, "kid");
    if (kid && (!json_is_string(kid) || json_string_length(kid) > 256)) {
        snprintf(why, cap, "\"kid\" is not a string of at most 256 bytes");
        return -1;
    }
    int alg = -1;
    json_t *a = json_object_get(k, "alg");
    if (a) {
        alg = json_is_string(a) ? par_jwt_alg_parse(json_string_value(a)) : -1;
        if (alg < 0) {
            snprintf(why, cap, "\"alg\" %.20s is not a supported signature algorithm",
                     json_is_string(a) ? json_string_value(a) : "(not a string)");
            return -1;
        }
    }
    json_t *pub = public_members(k);
    jwk_t *jwk = NULL;
    unsigned char der[8192];
    size_t der_len = sizeof(der);
    int rc = -1;
    if (pub == NULL) {
        snprintf(why, cap, "out of memory");
        goto out;
    }
    if (!g_rhn.ok) {
        snprintf(why, cap, "%.150s", g_rhn.error[0] ? g_rhn.error : "JWK support not initialised");
        goto out;
    }
    if (g_rhn.jwk_init(&jwk) != RHN_OK) {
        snprintf(why, cap, "out of memory");
        goto out;
    }
    unsigned int bits = 0;
    if (g_rhn.jwk_import_from_json_t(jwk, pub) != RHN_OK ||
        !(g_rhn.jwk_key_type(jwk, &bits, R_FLAG_IGNORE_REMOTE) & R_KEY_TYPE_PUBLIC)) {
        snprintf(why, cap, "not a valid %s public key", kty);
        goto out;
    }
    if (g_rhn.jwk_export_to_pem_der(jwk, R_FORMAT_DER, der, &der_len, R_FLAG_IGNORE_REMOTE) !=
        RHN_OK) {
        snprintf(why, cap, "the %s key cannot be exported", kty);
        goto out;
    }
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)der_len);
    if (pk == NULL) {
        snprintf(why, cap, "the %s key does not load", kty);
        goto out;
    }
    int cls = class_of(pk, why, cap);
    if (cls < 0 || (alg >= 0 && !par_jwt_alg_fits(alg, cls))) {
        if (cls >= 0)
            snprintf(why, cap, "\"alg\" %s does not fit the key", par_jwt_alg_name(alg));
        EVP_PKEY_free(pk);
        goto out;
    }
    unsigned int fl = 0;
    EVP_Digest(der, der_len, out->fingerprint, &fl, EVP_sha256(), NULL);
    out->kid = kid ? strdup(json_string_value(kid)) : NULL;
    out->key_class = cls;
    out->alg = alg;
    out->pkey = pk;
    rc = 0;
out:
    if (jwk)
        g_rhn.jwk_free(jwk);
    json_decref(pub);
    return rc;
}

int par_jwks_parse(const char *text, size_t len, par_jwks_t **out, par_buf_t *notes)
{
    *out = NULL;
    if (len > PAR_JWKS_MAX_BYTES) {
        if (notes)
            par_buf_appendf(notes, "the JWKS is larger than %d bytes", PAR_JWKS_MAX_BYTES);
        return PAR_E_INVALID_ARGUMENT;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        if (notes)
            par_buf_appendf(notes, "not a JWKS (%s)", doc ? "no \"keys\" array" : "not valid JSON");
        json_decref(doc);
        return PAR_E_INVALID_ARGUMENT;
    }
    size_t n = json_array_size(keys);
    if (n > PAR_JWKS_MAX_KEYS)
        n = PAR_JWKS_MAX_KEYS;
    par_jwks_t *s = calloc(1, sizeof(*s));
    par_jwk_t *arr = calloc(n ? n : 1, sizeof(par_jwk_t));
    if (s == NULL || arr == NULL) {
        free(arr);
        free(s);
        json_decref(doc);
        return PAR_E_NO_MEMORY;
    }
    s->keys = arr;
    atomic_init(&s->refs, 1);
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(keys, i);
        char why[160];
        if (!json_is_object(k)) {
            if (notes)
                par_buf_appendf(notes, "keys[%zu]: not an object\n", i);
            continue;
        }
        if (load_key(k, &s->keys[s->count], why, sizeof(why)) != 0) {
            const char *kid = json_string_value(json_object_get(k, "kid"));
            if (notes)
                par_buf_appendf(notes, "keys[%zu] (kid \"%.64s\"): skipped: %s\n", i,
                                kid ? kid : "", why);
            continue;
        }
        s->count++;
    }
    if (json_array_size(keys) > PAR_JWKS_MAX_KEYS && notes)
        par_buf_appendf(notes, "only the first %d keys are used\n", PAR_JWKS_MAX_KEYS);
    json_decref(doc);
    if (s->count == 0) {
        if (notes)
            par_buf_appends(notes, "the JWKS holds no usable signature key\n");
        par_jwks_unref(s);
        return PAR_E_INVALID_ARGUMENT;
    }
    *out = s;
    return PAR_OK;
}

static int str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

int par_jwks_same(const par_jwks_t *a, const par_jwks_t *b)
{
    if (a == NULL || b == NULL || a->count != b->count)
        return 0;
    for (size_t i = 0; i < a->count; i++) {
        const par_jwk_t *x = &a->keys[i], *y = &b->keys[i];
        if (!str_eq(x->kid, y->kid) || x->alg != y->alg ||
            memcmp(x->fingerprint, y->fingerprint, sizeof(x->fingerprint)) != 0)
            return 0;
    }
    return 1;
}

int par_jwks_has_kid(const par_jwks_t *s, const char *kid)
{
    for (size_t i = 0; s && kid && i < s->count; i++)
        if (s->keys[i].kid && strcmp(s->keys[i].kid, kid) == 0)
            return 1;
    return 0;
}

const par_jwk_t *par_jwks_next(const par_jwks_t *s, const char *kid, int alg, size_t *pos)
{
    for (; s && *pos < s->count; (*pos)++) {
        const par_jwk_t *k = &s->keys[*pos];
        if (kid && !(k->kid && strcmp(k->kid, kid) == 0))
            continue;
        if (!par_jwt_alg_fits(alg, k->key_class) || (k->alg >= 0 && k->alg != alg))
            continue;
        (*pos)++;
        return k;
    }
    return NULL;
}
