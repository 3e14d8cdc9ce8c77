/*
 * auth/jwt.c — see jwt.h.
 *
 * The order of the checks matters for what an attacker can learn and for
 * cost: size first (before any allocation), then structure and header (cheap,
 * and `alg` must be judged before any key is chosen), then the signature
 * (the expensive part), and the claims only once the signature holds, so an
 * unsigned token never gets a precise answer about its claims even in the log.
 */
#include "auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const alg_names[] = {
#define PAR__JWT_ALG_NAME(name, str) str,
    PAR_JWT_ALG_MAP(PAR__JWT_ALG_NAME)
#undef PAR__JWT_ALG_NAME
};

int par_jwt_alg_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < PAR_JWT_ALG_COUNT; i++)
        if (strcmp(alg_names[i], name) == 0)
            return i;
    if (strcasecmp(name, "none") == 0 || (name[0] == 'H' && name[1] == 'S'))
        return -2;
    return -1;
}

const char *par_jwt_alg_name(int alg)
{
    return alg >= 0 && alg < PAR_JWT_ALG_COUNT ? alg_names[alg] : "?";
}

int par_jwt_alg_fits(int alg, int key_class)
{
    switch (alg) {
    case PAR_JWT_RS256:
    case PAR_JWT_RS384:
    case PAR_JWT_RS512:
    case PAR_JWT_PS256:
    case PAR_JWT_PS384:
    case PAR_JWT_PS512:
        return key_class == PAR_KEY_RSA;
    case PAR_JWT_ES256:
        return key_class == PAR_KEY_P256;
    case PAR_JWT_ES384:
        return key_class == PAR_KEY_P384;
    case PAR_JWT_ES512:
        return key_class == PAR_KEY_P521;
    case PAR_JWT_EDDSA:
        return key_class == PAR_KEY_ED;
    default:
        return 0;
    }
}

/* ---- base64url ------------------------------------------------------------------ */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long par_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* the leftover bits must be zero: one encoding per byte string */
    if (acc != 0)
        return -1;
    return (long)o;
}

/* ---- parsing -------------------------------------------------------------------- */

int par__auth_fail(par_auth_fail_t *f, int status, int reason, const char *fmt, ...)
{
    if (f) {
        f->reason = reason;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
        va_end(ap);
    }
    return status;
}

static json_t *decode_json_object(const char *p, size_t n)
{
    unsigned char *buf = malloc(n * 3 / 4 + 1);
    if (buf == NULL)
        return NULL;
    long len = par_b64url_decode(p, n, buf);
    json_t *j = NULL;
    if (len > 0)
        j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

int par_jwt_parse(const char *tok, size_t len, const par_jwt_policy_t *pol, par_jwt_t *out,
                  par_auth_fail_t *f)
{
    memset(out, 0, sizeof(*out));
    size_t max = pol->max_bytes ? pol->max_bytes : PAR_JWT_DEFAULT_MAX_BYTES;
    if (len > max)
        return par__auth_fail(f, -1, PAR_AUTH_R_TOO_LARGE,
                              "token of %zu bytes exceeds the cap of %zu", len, max);
    if (len == 0)
        return par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED, "empty token");
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED,
                              "not a compact JWS (want three dot-separated segments)");
    size_t hlen = (size_t)(d1 - tok), plen = (size_t)(d2 - d1 - 1),
           slen = len - (size_t)(d2 + 1 - tok);
    if (hlen == 0 || plen == 0)
        return par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED, "empty header or payload segment");

    json_t *hdr = decode_json_object(tok, hlen);
    if (hdr == NULL)
        return par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED,
                              "the header is not base64url-encoded JSON object");
    json_t *a = json_object_get(hdr, "alg");
    int alg = json_is_string(a) ? par_jwt_alg_parse(json_string_value(a)) : -1;
    if (!json_is_string(a)) {
        par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED, "the header has no \"alg\" string");
        goto fail;
    }
    if (alg == -2) {
        par__auth_fail(f, -1, PAR_AUTH_R_ALG, "alg \"%.20s\" is never accepted",
                       json_string_value(a));
        goto fail;
    }
    if (alg < 0 || !(pol->alg_mask & PAR_JWT_ALG_BIT(alg))) {
        par__auth_fail(f, -1, PAR_AUTH_R_ALG, "alg \"%.20s\" is not on the allow-list",
                       json_string_value(a));
        goto fail;
    }
    if (json_object_get(hdr, "crit")) {
        /* RFC 7515 4.1.11: extensions we do not understand make the token invalid */
        par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED, "the header has a \"crit\" member");
        goto fail;
    }
    json_t *k = json_object_get(hdr, "kid");
    if (k && (!json_is_string(k) || json_string_length(k) == 0 || json_string_length(k) > 256)) {
        par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED, "\"kid\" is not a string of 1-256 bytes");
        goto fail;
    }
    json_t *claims = decode_json_object(d1 + 1, plen);
    if (claims == NULL) {
        par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED,
                       "the payload is not a base64url-encoded JSON object");
        goto fail;
    }
    unsigned char *sig = malloc(slen * 3 / 4 + 1);
    long sl = sig ? par_b64url_decode(d2 + 1, slen, sig) : -1;
    if (sl <= 0) {
        free(sig);
        json_decref(claims);
        par__auth_fail(f, -1, PAR_AUTH_R_MALFORMED, "the signature is missing or not base64url");
        goto fail;
    }
    out->alg = alg;
    out->kid = k ? json_string_value(k) : NULL;
    out->header = hdr;
    out->claims = claims;
    out->signing_input = tok;
    out->signing_input_len = (size_t)(d2 - tok);
    out->sig = sig;
    out->sig_len = (size_t)sl;
    return 0;
fail:
    json_decref(hdr);
    return -1;
}

void par_jwt_free(par_jwt_t *j)
{
    json_decref(j->header);
    json_decref(j->claims);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}

/* ---- signature ------------------------------------------------------------------- */

static const EVP_MD *md_for(int alg)
{
    switch (alg) {
    case PAR_JWT_RS256:
    case PAR_JWT_PS256:
    case PAR_JWT_ES256:
        return EVP_sha256();
    case PAR_JWT_RS384:
    case PAR_JWT_PS384:
    case PAR_JWT_ES384:
        return EVP_sha384();
    case PAR_JWT_RS512:
    case PAR_JWT_PS512:
    case PAR_JWT_ES512:
        return EVP_sha512();
    default:
        return NULL; /* EdDSA signs the message itself */
    }
}

/* JWS carries ECDSA signatures as fixed-width R || S (RFC 7518 3.4); OpenSSL
 * wants DER. Returns the DER length or -1. */
static int ecdsa_raw_to_der(const unsigned char *raw, size_t len, size_t half, unsigned char **der)
{
    if (len != 2 * half)
        return -1;
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL), *sv = BN_bin2bn(raw + half, (int)half, NULL);
    if (s == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(s, r, sv) != 1) {
        BN_free(r);
        BN_free(sv);
        ECDSA_SIG_free(s);
        return -1;
    }
    *der = NULL;
    int n = i2d_ECDSA_SIG(s, der);
    ECDSA_SIG_free(s);
    return n > 0 ? n : -1;
}

int par_jwt_verify(const par_jwt_t *j, EVP_PKEY *pkey, int key_class, par_auth_fail_t *f)
{
    if (!par_jwt_alg_fits(j->alg, key_class))
        return par__auth_fail(f, -1, PAR_AUTH_R_KEY_MISMATCH, "key \"%.64s\" cannot verify alg %s",
                              j->kid ? j->kid : "", par_jwt_alg_name(j->alg));
    const unsigned char *sig = j->sig;
    size_t sig_len = j->sig_len;
    unsigned char *der = NULL;
    if (key_class == PAR_KEY_P256 || key_class == PAR_KEY_P384 || key_class == PAR_KEY_P521) {
        size_t half = key_class == PAR_KEY_P256 ? 32 : key_class == PAR_KEY_P384 ? 48 : 66;
        int n = ecdsa_raw_to_der(j->sig, j->sig_len, half, &der);
        if (n < 0)
            return par__auth_fail(f, -1, PAR_AUTH_R_SIGNATURE,
                                  "ECDSA signature of %zu bytes (want %zu)", j->sig_len, 2 * half);
        sig = der;
        sig_len = (size_t)n;
    }
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (ctx && EVP_DigestVerifyInit(ctx, &pctx, md_for(j->alg), NULL, pkey) == 1) {
        int pss = j->alg == PAR_JWT_PS256 || j->alg == PAR_JWT_PS384 || j->alg == PAR_JWT_PS512;
        int setup = 1;
        if (pss)
            /* RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash */
            setup = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
        else if (key_class == PAR_KEY_RSA)
            setup = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
        ok = setup && EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)j->signing_input,
                                       j->signing_input_len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    if (!ok)
        return par__auth_fail(f, -1, PAR_AUTH_R_SIGNATURE,
                              "the %s signature does not verify with key \"%.64s\"",
                              par_jwt_alg_name(j->alg), j->kid ? j->kid : "");
    return 0;
}

/* ---- claims ---------------------------------------------------------------------- */

static int num_claim(json_t *claims, const char *name, int required, double *out,
                     par_auth_fail_t *f)
{
    json_t *v = json_object_get(claims, name);
    if (v == NULL) {
        if (required)
            return par__auth_fail(f, -1, PAR_AUTH_R_CLAIMS, "no \"%s\" claim", name);
        return 1;
    }
    if (!json_is_number(v))
        return par__auth_fail(f, -1, PAR_AUTH_R_CLAIMS, "\"%s\" is not a number", name);
    *out = json_number_value(v);
    return 0;
}

int par_jwt_check_claims(const par_jwt_t *j, const par_jwt_policy_t *pol, int64_t now,
                         par_auth_fail_t *f)
{
    json_t *c = j->claims;
    json_t *iss = json_object_get(c, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), pol->issuer) != 0)
        return par__auth_fail(f, -1, PAR_AUTH_R_ISSUER, "iss \"%.100s\" is not \"%.100s\"",
                              json_is_string(iss) ? json_string_value(iss) : "(none)", pol->issuer);
    json_t *aud = json_object_get(c, "aud");
    int aud_ok = 0;
    if (json_is_string(aud)) {
        aud_ok = strcmp(json_string_value(aud), pol->audience) == 0;
    } else if (json_is_array(aud)) {
        size_t i;
        json_t *e;
        json_array_foreach(aud, i, e)
        {
            if (json_is_string(e) && strcmp(json_string_value(e), pol->audience) == 0)
                aud_ok = 1;
        }
    }
    if (!aud_ok)
        return par__auth_fail(f, -1, PAR_AUTH_R_AUDIENCE, "aud does not contain \"%.100s\"",
                              pol->audience);
    double exp = 0, nbf = 0, iat = 0;
    double t = (double)now, lw = (double)pol->leeway_s;
    if (num_claim(c, "exp", 1, &exp, f) < 0)
        return -1;
    if (t >= exp + lw)
        return par__auth_fail(f, -1, PAR_AUTH_R_EXPIRED,
                              "expired %.0f s ago (exp %.0f, leeway %lld s)", t - exp, exp,
                              (long long)pol->leeway_s);
    int r = num_claim(c, "nbf", 0, &nbf, f);
    if (r < 0)
        return -1;
    if (r == 0 && t + lw < nbf)
        return par__auth_fail(f, -1, PAR_AUTH_R_NOT_YET_VALID,
                              "not valid for another %.0f s (nbf %.0f, leeway %lld s)", nbf - t,
                              nbf, (long long)pol->leeway_s);
    r = num_claim(c, "iat", 0, &iat, f);
    if (r < 0)
        return -1;
    if (r == 0 && iat > t + lw)
        return par__auth_fail(f, -1, PAR_AUTH_R_ISSUED_IN_FUTURE,
                              "issued %.0f s in the future (iat %.0f, leeway %lld s)", iat - t, iat,
                              (long long)pol->leeway_s);
    return 0;
}

int64_t par_jwt_exp(const par_jwt_t *j)
{
    double e = json_number_value(json_object_get(j->claims, "exp"));
    if (e > 9e15)
        return INT64_C(9000000000000000);
    return (int64_t)e;
}
