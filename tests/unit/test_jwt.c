/* Unit tests for auth/jwt.c and auth/jwks.c: token structure, header policy,
 * signatures (RFC 7515 and RFC 8037 vectors, and tokens signed by rhonabwy),
 * claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <rhonabwy.h>

#include <par/par.h>

#include "auth/jwks.h"
#include "auth/jwt.h"

#define ALL_ALGS ((1u << PAR_JWT_ALG_COUNT) - 1)

static const char RFC7515_PAYLOAD[] = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9l"
                                      "eGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

/* RFC 7515 A.2: RS256 */
static const char RFC7515_RSA_JWKS[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9"
    "wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZ"
    "lxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4"
    "FRWyuXpoQ\",\"e\":\"AQAB\"}]}";
static const char RFC7515_RS256_SIG[] =
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5"
    "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1"
    "L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYE"
    "UipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/* RFC 7515 A.3: ES256 */
static const char RFC7515_EC_JWKS[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
                                      "\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                                      "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
static const char RFC7515_ES256_SIG[] =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/* RFC 8037 A.4: Ed25519 */
static const char RFC8037_JWKS[] = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                                   "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";
static const char RFC8037_JWS[] =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3"
    "AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

static par_jwt_policy_t policy(void)
{
    par_jwt_policy_t p = {"https://issuer.example", "par", ALL_ALGS, 60, 0};
    return p;
}

static par_jwks_t *jwks(const char *json)
{
    par_jwks_t *s = NULL;
    par_buf_t notes;
    par_buf_init(&notes, 0);
    int rc = par_jwks_parse(json, strlen(json), &s, &notes);
    if (rc != PAR_OK)
        fail_msg("jwks refused: %.*s", (int)notes.len, notes.data);
    par_buf_free(&notes);
    return s;
}

/* Parses and verifies `tok` against every candidate of `s`; returns the
 * failure reason or PAR_AUTH_R_NONE. */
static int verify_with(const char *tok, par_jwks_t *s, unsigned mask)
{
    par_jwt_policy_t pol = policy();
    pol.alg_mask = mask;
    par_jwt_t j;
    par_auth_fail_t f = {0, ""};
    if (par_jwt_parse(tok, strlen(tok), &pol, &j, &f) != 0)
        return f.reason;
    size_t pos = 0;
    const par_jwk_t *k;
    int reason = PAR_AUTH_R_KEY_MISMATCH;
    while ((k = par_jwks_next(s, j.kid, j.alg, &pos)) != NULL) {
        if (par_jwt_verify(&j, k->pkey, k->key_class, &f) == 0) {
            reason = PAR_AUTH_R_NONE;
            break;
        }
        reason = f.reason;
    }
    par_jwt_free(&j);
    return reason;
}

static void test_b64url(void **state)
{
    (void)state;
    unsigned char out[64];
    assert_int_equal(par_b64url_decode("", 0, out), 0);
    assert_int_equal(par_b64url_decode("TWFu", 4, out), 3);
    assert_memory_equal(out, "Man", 3);
    assert_int_equal(par_b64url_decode("TWE", 3, out), 2);
    assert_int_equal(par_b64url_decode("TQ", 2, out), 1);
    assert_int_equal(par_b64url_decode("_-8", 3, out), 2);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xef);
    assert_int_equal(par_b64url_decode("TQ==", 4, out), -1);  /* padding */
    assert_int_equal(par_b64url_decode("T+8/", 4, out), -1);  /* standard alphabet */
    assert_int_equal(par_b64url_decode("TWFuT", 5, out), -1); /* impossible length */
    assert_int_equal(par_b64url_decode("TR", 2, out), -1);    /* non-zero trailing bits */
    assert_int_equal(par_b64url_decode("TW Fu", 5, out), -1);
}

static void test_alg_names(void **state)
{
    (void)state;
    assert_int_equal(par_jwt_alg_parse("RS256"), PAR_JWT_RS256);
    assert_int_equal(par_jwt_alg_parse("EdDSA"), PAR_JWT_EDDSA);
    assert_int_equal(par_jwt_alg_parse("ES512"), PAR_JWT_ES512);
    assert_int_equal(par_jwt_alg_parse("none"), -2);
    assert_int_equal(par_jwt_alg_parse("None"), -2);
    assert_int_equal(par_jwt_alg_parse("HS256"), -2);
    assert_int_equal(par_jwt_alg_parse("HS512"), -2);
    assert_int_equal(par_jwt_alg_parse("rs256"), -1);
    assert_int_equal(par_jwt_alg_parse("RS1"), -1);
    assert_int_equal(par_jwt_alg_parse(NULL), -1);
    assert_true(par_jwt_alg_fits(PAR_JWT_PS256, PAR_KEY_RSA));
    assert_false(par_jwt_alg_fits(PAR_JWT_ES256, PAR_KEY_RSA));
    assert_false(par_jwt_alg_fits(PAR_JWT_ES256, PAR_KEY_P384));
    assert_true(par_jwt_alg_fits(PAR_JWT_EDDSA, PAR_KEY_ED));
}

static void test_rfc_vectors(void **state)
{
    (void)state;
    par_jwks_t *rsa = jwks(RFC7515_RSA_JWKS), *ec = jwks(RFC7515_EC_JWKS), *ed = jwks(RFC8037_JWKS);
    char tok[1024];
    snprintf(tok, sizeof(tok), "eyJhbGciOiJSUzI1NiJ9.%s.%s", RFC7515_PAYLOAD, RFC7515_RS256_SIG);
    assert_int_equal(verify_with(tok, rsa, ALL_ALGS), PAR_AUTH_R_NONE);
    /* the same signature under another key type is an alg/key mismatch */
    assert_int_equal(verify_with(tok, ec, ALL_ALGS), PAR_AUTH_R_KEY_MISMATCH);
    /* a changed payload byte breaks the signature */
    char bad[1024];
    snprintf(bad, sizeof(bad), "eyJhbGciOiJSUzI1NiJ9.%s.%s", "eyJpc3MiOiJldmUifQ",
             RFC7515_RS256_SIG); /* {"iss":"eve"} */
    assert_int_equal(verify_with(bad, rsa, ALL_ALGS), PAR_AUTH_R_SIGNATURE);
    /* RS256 not on the allow-list */
    assert_int_equal(verify_with(tok, rsa, PAR_JWT_ALG_BIT(PAR_JWT_ES256)), PAR_AUTH_R_ALG);

    snprintf(tok, sizeof(tok), "eyJhbGciOiJFUzI1NiJ9.%s.%s", RFC7515_PAYLOAD, RFC7515_ES256_SIG);
    assert_int_equal(verify_with(tok, ec, ALL_ALGS), PAR_AUTH_R_NONE);
    assert_int_equal(verify_with(tok, rsa, ALL_ALGS), PAR_AUTH_R_KEY_MISMATCH);
    /* an ECDSA signature of the wrong width */
    snprintf(bad, sizeof(bad), "eyJhbGciOiJFUzI1NiJ9.%s.%.80s", RFC7515_PAYLOAD, RFC7515_ES256_SIG);
    assert_int_equal(verify_with(bad, ec, ALL_ALGS), PAR_AUTH_R_SIGNATURE);

    /* RFC 8037 signs a text payload, not claims: check the signature alone */
    const char *dot = strrchr(RFC8037_JWS, '.');
    unsigned char sig[64];
    par_jwt_t j = {.alg = PAR_JWT_EDDSA,
                   .signing_input = RFC8037_JWS,
                   .signing_input_len = (size_t)(dot - RFC8037_JWS),
                   .sig = sig};
    assert_int_equal(par_b64url_decode(dot + 1, strlen(dot + 1), sig), 64);
    j.sig_len = 64;
    par_auth_fail_t f = {0, ""};
    assert_int_equal(par_jwt_verify(&j, ed->keys[0].pkey, ed->keys[0].key_class, &f), 0);
    sig[5] ^= 1;
    assert_int_equal(par_jwt_verify(&j, ed->keys[0].pkey, ed->keys[0].key_class, &f), -1);
    assert_int_equal(f.reason, PAR_AUTH_R_SIGNATURE);
    sig[5] ^= 1;
    j.signing_input_len--;
    assert_int_equal(par_jwt_verify(&j, ed->keys[0].pkey, ed->keys[0].key_class, &f), -1);
    assert_int_equal(par_jwt_verify(&j, ec->keys[0].pkey, ec->keys[0].key_class, &f), -1);
    assert_int_equal(f.reason, PAR_AUTH_R_KEY_MISMATCH);
    par_jwks_unref(rsa);
    par_jwks_unref(ec);
    par_jwks_unref(ed);
}

/* Signs `claims` with a fresh rhonabwy key pair; returns the token and the
 * public key as a JWKS document (both malloc'ed). */
static void rhonabwy_token(int type, unsigned bits, jwa_alg alg, const char *kid,
                           const char *claims, char **tok, char **jwks_json)
{
    jwk_t *priv, *pub;
    r_jwk_init(&priv);
    r_jwk_init(&pub);
    assert_int_equal(r_jwk_generate_key_pair(priv, pub, type, bits, kid), RHN_OK);
    jws_t *jws;
    r_jws_init(&jws);
    r_jws_set_alg(jws, alg);
    r_jws_set_payload(jws, (const unsigned char *)claims, strlen(claims));
    char *t = r_jws_serialize(jws, priv, 0);
    assert_non_null(t);
    *tok = strdup(t);
    char *pj = r_jwk_export_to_json_str(pub, 0);
    assert_int_equal(asprintf(jwks_json, "{\"keys\":[%s]}", pj) > 0, 1);
    r_free(pj);
    r_free(t);
    r_jws_free(jws);
    r_jwk_free(priv);
    r_jwk_free(pub);
}

static void test_rhonabwy_signed(void **state)
{
    (void)state;
    par_jwks_global_init();
    static const struct {
        int type;
        unsigned bits;
        jwa_alg alg;
    } cases[] = {{R_KEY_TYPE_RSA, 2048, R_JWA_ALG_RS256}, {R_KEY_TYPE_RSA, 2048, R_JWA_ALG_PS256},
                 {R_KEY_TYPE_RSA, 3072, R_JWA_ALG_RS512}, {R_KEY_TYPE_EC, 256, R_JWA_ALG_ES256},
                 {R_KEY_TYPE_EC, 384, R_JWA_ALG_ES384},   {R_KEY_TYPE_EDDSA, 256, R_JWA_ALG_EDDSA}};
    char *other_tok = NULL, *other_jwks = NULL;
    rhonabwy_token(R_KEY_TYPE_RSA, 2048, R_JWA_ALG_RS256, "k1", "{\"a\":1}", &other_tok,
                   &other_jwks);
    par_jwks_t *other = jwks(other_jwks);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *tok, *js;
        rhonabwy_token(cases[i].type, cases[i].bits, cases[i].alg, "k1", "{\"sub\":\"x\"}", &tok,
                       &js);
        par_jwks_t *s = jwks(js);
        if (verify_with(tok, s, ALL_ALGS) != PAR_AUTH_R_NONE)
            fail_msg("case %zu: a valid token was refused", i);
        /* the same kid, another key: the signature must not verify */
        int r = verify_with(tok, other, ALL_ALGS);
        assert_true(r == PAR_AUTH_R_SIGNATURE || r == PAR_AUTH_R_KEY_MISMATCH);
        par_jwks_unref(s);
        free(tok);
        free(js);
    }
    par_jwks_unref(other);
    free(other_tok);
    free(other_jwks);
}

/* A token with any header and claims and a dummy signature. */
static char *make_token(const char *header, const char *claims)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *parts[2] = {header, claims};
    char *out = malloc(8192);
    size_t o = 0;
    for (int p = 0; p < 2; p++) {
        const unsigned char *s = (const unsigned char *)parts[p];
        size_t n = strlen(parts[p]);
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)s[i] << 16;
            if (i + 1 < n)
                v |= (uint32_t)s[i + 1] << 8;
            if (i + 2 < n)
                v |= s[i + 2];
            out[o++] = tbl[(v >> 18) & 63];
            out[o++] = tbl[(v >> 12) & 63];
            if (i + 1 < n)
                out[o++] = tbl[(v >> 6) & 63];
            if (i + 2 < n)
                out[o++] = tbl[v & 63];
        }
        out[o++] = '.';
    }
    memcpy(out + o, "c2ln", 5);
    return out;
}

static int parse_reason(const char *header, const char *claims, unsigned mask)
{
    char *t = make_token(header, claims);
    par_jwt_policy_t pol = policy();
    pol.alg_mask = mask;
    par_jwt_t j;
    par_auth_fail_t f = {0, ""};
    int r = par_jwt_parse(t, strlen(t), &pol, &j, &f) == 0 ? PAR_AUTH_R_NONE : f.reason;
    if (r == PAR_AUTH_R_NONE)
        par_jwt_free(&j);
    free(t);
    return r;
}

static void test_header_policy(void **state)
{
    (void)state;
    const char *c = "{\"sub\":\"x\"}";
    assert_int_equal(parse_reason("{\"alg\":\"RS256\",\"kid\":\"a\"}", c, ALL_ALGS),
                     PAR_AUTH_R_NONE);
    assert_int_equal(parse_reason("{\"alg\":\"none\"}", c, ALL_ALGS), PAR_AUTH_R_ALG);
    assert_int_equal(parse_reason("{\"alg\":\"NONE\"}", c, ALL_ALGS), PAR_AUTH_R_ALG);
    assert_int_equal(parse_reason("{\"alg\":\"HS256\"}", c, ALL_ALGS), PAR_AUTH_R_ALG);
    assert_int_equal(parse_reason("{\"alg\":\"HS384\"}", c, ALL_ALGS), PAR_AUTH_R_ALG);
    assert_int_equal(parse_reason("{\"alg\":\"RS1\"}", c, ALL_ALGS), PAR_AUTH_R_ALG);
    assert_int_equal(parse_reason("{\"alg\":\"ES256\"}", c, PAR_JWT_ALG_BIT(PAR_JWT_RS256)),
                     PAR_AUTH_R_ALG);
    assert_int_equal(parse_reason("{\"typ\":\"JWT\"}", c, ALL_ALGS), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":256}", c, ALL_ALGS), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}", c, ALL_ALGS),
                     PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\",\"kid\":7}", c, ALL_ALGS),
                     PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\",\"kid\":\"\"}", c, ALL_ALGS),
                     PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("[\"alg\",\"RS256\"]", c, ALL_ALGS), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("not json", c, ALL_ALGS), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\",\"alg\":\"none\"}", c, ALL_ALGS),
                     PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\"}", "[1]", ALL_ALGS), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\"}", "{\"a\":1,\"a\":2}", ALL_ALGS),
                     PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_reason("{\"alg\":\"RS256\"}", "{\"a\":\"\\u0000\"}", ALL_ALGS),
                     PAR_AUTH_R_MALFORMED);
}

static int parse_text(const char *tok, size_t max)
{
    par_jwt_policy_t pol = policy();
    pol.max_bytes = max;
    par_jwt_t j;
    par_auth_fail_t f = {0, ""};
    int r = par_jwt_parse(tok, strlen(tok), &pol, &j, &f) == 0 ? PAR_AUTH_R_NONE : f.reason;
    if (r == PAR_AUTH_R_NONE)
        par_jwt_free(&j);
    return r;
}

static void test_structure(void **state)
{
    (void)state;
    char *t = make_token("{\"alg\":\"RS256\"}", "{}");
    assert_int_equal(parse_text(t, 0), PAR_AUTH_R_NONE);
    char buf[512];
    const char *dot = strrchr(t, '.');
    snprintf(buf, sizeof(buf), "%.*s", (int)(dot - t), t); /* two segments */
    assert_int_equal(parse_text(buf, 0), PAR_AUTH_R_MALFORMED);
    snprintf(buf, sizeof(buf), "%.*s.", (int)(dot - t), t); /* empty signature */
    assert_int_equal(parse_text(buf, 0), PAR_AUTH_R_MALFORMED);
    snprintf(buf, sizeof(buf), "%s.x.y", t); /* five segments: a JWE */
    assert_int_equal(parse_text(buf, 0), PAR_AUTH_R_MALFORMED);
    snprintf(buf, sizeof(buf), "%s=", t); /* padding */
    assert_int_equal(parse_text(buf, 0), PAR_AUTH_R_MALFORMED);
    snprintf(buf, sizeof(buf), "%s", t);
    buf[3] = '+';
    assert_int_equal(parse_text(buf, 0), PAR_AUTH_R_MALFORMED);
    snprintf(buf, sizeof(buf), ".%s", strchr(t, '.') + 1); /* empty header */
    assert_int_equal(parse_text(buf, 0), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_text("", 0), PAR_AUTH_R_MALFORMED);
    assert_int_equal(parse_text(t, strlen(t) - 1), PAR_AUTH_R_TOO_LARGE);
    /* the default cap is 16 KiB */
    char *big = malloc(20000);
    memset(big, 'A', 19999);
    big[19999] = '\0';
    assert_int_equal(parse_text(big, 0), PAR_AUTH_R_TOO_LARGE);
    free(big);
    free(t);
}

static int claims_reason(const char *claims, int64_t now)
{
    char *t = make_token("{\"alg\":\"RS256\"}", claims);
    par_jwt_policy_t pol = policy();
    par_jwt_t j;
    par_auth_fail_t f = {0, ""};
    assert_int_equal(par_jwt_parse(t, strlen(t), &pol, &j, &f), 0);
    int r = par_jwt_check_claims(&j, &pol, now, &f) == 0 ? PAR_AUTH_R_NONE : f.reason;
    par_jwt_free(&j);
    free(t);
    return r;
}

static void test_claims(void **state)
{
    (void)state;
    const int64_t now = 1700000000;
    char c[512];
#define ISS "\"iss\":\"https://issuer.example\""
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld}", (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_NONE);
    /* audience in an array */
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":[\"x\",\"par\"],\"exp\":%lld}", (long long)now + 1);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_NONE);
    /* issuer must match exactly: a trailing slash or another case is another issuer */
    snprintf(c, sizeof(c), "{\"iss\":\"https://issuer.example/\",\"aud\":\"par\",\"exp\":%lld}",
             (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_ISSUER);
    snprintf(c, sizeof(c), "{\"iss\":\"https://ISSUER.example\",\"aud\":\"par\",\"exp\":%lld}",
             (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_ISSUER);
    snprintf(c, sizeof(c), "{\"aud\":\"par\",\"exp\":%lld}", (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_ISSUER);
    /* audience */
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"parx\",\"exp\":%lld}", (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_AUDIENCE);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":[\"pa\",\"r\"],\"exp\":%lld}", (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_AUDIENCE);
    snprintf(c, sizeof(c), "{" ISS ",\"exp\":%lld}", (long long)now + 300);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_AUDIENCE);
    /* exp: required, a number, honoured with the leeway (60 s) */
    assert_int_equal(claims_reason("{" ISS ",\"aud\":\"par\"}", now), PAR_AUTH_R_CLAIMS);
    assert_int_equal(claims_reason("{" ISS ",\"aud\":\"par\",\"exp\":\"soon\"}", now),
                     PAR_AUTH_R_CLAIMS);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld}", (long long)now - 30);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_NONE);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld}", (long long)now - 60);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_EXPIRED);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld.5}", (long long)now - 3600);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_EXPIRED);
    /* nbf */
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld,\"nbf\":%lld}",
             (long long)now + 600, (long long)now + 30);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_NONE);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld,\"nbf\":%lld}",
             (long long)now + 600, (long long)now + 120);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_NOT_YET_VALID);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld,\"nbf\":null}",
             (long long)now + 600);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_CLAIMS);
    /* iat */
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld,\"iat\":%lld}",
             (long long)now + 600, (long long)now + 3600);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_ISSUED_IN_FUTURE);
    snprintf(c, sizeof(c), "{" ISS ",\"aud\":\"par\",\"exp\":%lld,\"iat\":%lld}",
             (long long)now + 600, (long long)now - 10);
    assert_int_equal(claims_reason(c, now), PAR_AUTH_R_NONE);
#undef ISS
}

static int jwks_count(const char *json, char **notes_out)
{
    par_jwks_t *s = NULL;
    par_buf_t notes;
    par_buf_init(&notes, 0);
    int rc = par_jwks_parse(json, strlen(json), &s, &notes);
    int n = rc == PAR_OK ? (int)s->count : -1;
    par_jwks_unref(s);
    if (notes_out)
        *notes_out = notes.data ? strndup(notes.data, notes.len) : strdup("");
    par_buf_free(&notes);
    return n;
}

static void test_jwks(void **state)
{
    (void)state;
    char *notes;
    /* not a JWKS */
    assert_int_equal(jwks_count("{}", NULL), -1);
    assert_int_equal(jwks_count("[]", NULL), -1);
    assert_int_equal(jwks_count("{\"keys\":[]}", NULL), -1);
    /* a symmetric key is never used, even next to a good one */
    assert_int_equal(jwks_count("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}", &notes), -1);
    assert_non_null(strstr(notes, "symmetric"));
    free(notes);
    char doc[4096];
    const char *ec = strstr(RFC7515_EC_JWKS, "{\"kty\"");
    size_t eclen = strlen(ec) - 2; /* without "]}" */
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},%.*s]}", (int)eclen,
             ec);
    assert_int_equal(jwks_count(doc, NULL), 1);
    /* an encryption key is skipped */
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"use\":\"enc\",%.*s]}", (int)eclen - 1, ec + 1);
    assert_int_equal(jwks_count(doc, &notes), -1);
    assert_non_null(strstr(notes, "signature key"));
    free(notes);
    /* the JWK's own alg must fit its key */
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"alg\":\"RS256\",%.*s]}", (int)eclen - 1, ec + 1);
    assert_int_equal(jwks_count(doc, &notes), -1);
    free(notes);
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"alg\":\"ES256\",\"kid\":\"e1\",%.*s]}",
             (int)eclen - 1, ec + 1);
    assert_int_equal(jwks_count(doc, NULL), 1);
    /* a remote certificate URL is never fetched: the key is its parameters */
    snprintf(
        doc, sizeof(doc),
        "{\"keys\":[{\"x5u\":\"https://127.0.0.1:1/never\",\"x5c\":[\"bm90IGEgY2VydA\"],%.*s]}",
        (int)eclen - 1, ec + 1);
    assert_int_equal(jwks_count(doc, NULL), 1);
    /* a point that is not on the curve */
    assert_int_equal(jwks_count("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
                                "\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":"
                                "\"y_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}",
                                NULL),
                     -1);
    /* RSA keys under 2048 bits are refused */
    jwk_t *priv, *pub;
    r_jwk_init(&priv);
    r_jwk_init(&pub);
    assert_int_equal(r_jwk_generate_key_pair(priv, pub, R_KEY_TYPE_RSA, 1024, "small"), RHN_OK);
    char *pj = r_jwk_export_to_json_str(pub, 0);
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", pj);
    assert_int_equal(jwks_count(doc, &notes), -1);
    assert_non_null(strstr(notes, "2048"));
    free(notes);
    r_free(pj);
    r_jwk_free(priv);
    r_jwk_free(pub);

    /* lookups: by kid, and only keys that fit the token's alg */
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kid\":\"e1\",%.*s,{\"kid\":\"e2\",%.*s]}",
             (int)eclen - 1, ec + 1, (int)eclen - 1, ec + 1);
    par_jwks_t *s = jwks(doc), *s2 = jwks(doc), *s3 = jwks(RFC7515_EC_JWKS);
    size_t pos = 0;
    const par_jwk_t *k = par_jwks_next(s, "e2", PAR_JWT_ES256, &pos);
    assert_non_null(k);
    assert_string_equal(k->kid, "e2");
    assert_null(par_jwks_next(s, "e2", PAR_JWT_ES256, &pos));
    pos = 0;
    assert_null(par_jwks_next(s, "e1", PAR_JWT_RS256, &pos));
    pos = 0;
    assert_null(par_jwks_next(s, "e3", PAR_JWT_ES256, &pos));
    pos = 0;
    assert_non_null(par_jwks_next(s, NULL, PAR_JWT_ES256, &pos));
    assert_non_null(par_jwks_next(s, NULL, PAR_JWT_ES256, &pos));
    assert_null(par_jwks_next(s, NULL, PAR_JWT_ES256, &pos));
    assert_true(par_jwks_has_kid(s, "e1"));
    assert_false(par_jwks_has_kid(s, "e3"));
    assert_true(par_jwks_same(s, s2));
    assert_false(par_jwks_same(s, s3));
    par_jwks_unref(s);
    par_jwks_unref(s2);
    par_jwks_unref(s3);
}

int main(void)
{
    par_jwks_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_rfc_vectors),   cmocka_unit_test(test_rhonabwy_signed),
        cmocka_unit_test(test_header_policy), cmocka_unit_test(test_structure),
        cmocka_unit_test(test_claims),        cmocka_unit_test(test_jwks),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    r_global_close();
    return rc;
}
