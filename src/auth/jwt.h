/*
 * auth/jwt.h — JSON Web Tokens in compact JWS form (RFC 7515, 7519).
 *
 * Owns the parsing and checking of one bearer token: size cap, three
 * base64url segments decoded strictly, a header whose `alg` is on the
 * allow-list (`none` and the HMAC algorithms are refused whatever the
 * configuration says: with a public key as the "secret" they would let anyone
 * mint tokens), a `crit` header refused, the signature verified with OpenSSL
 * EVP against a key from the issuer's JWKS (auth/jwks.h), then the registered
 * claims: `iss` exact, `aud` contains the audience, `exp` required, `nbf` and
 * `iat` honoured, all with a leeway.
 *
 * Never fetches anything and never trusts key material named by the token
 * itself (`jwk`, `jku`, `x5u`, `x5c` headers are ignored). Pure functions;
 * any thread. Called by auth/oidc.c and the unit tests.
 */
#ifndef PAR_AUTH_JWT_H
#define PAR_AUTH_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "auth/reason.h"

#define PAR_JWT_DEFAULT_MAX_BYTES (16 * 1024)

/* Signature algorithms PAR can verify (RFC 7518 section 3, RFC 8037). */
#define PAR_JWT_ALG_MAP(X)                                                                         \
    X(RS256, "RS256")                                                                              \
    X(RS384, "RS384")                                                                              \
    X(RS512, "RS512")                                                                              \
    X(PS256, "PS256")                                                                              \
    X(PS384, "PS384")                                                                              \
    X(PS512, "PS512")                                                                              \
    X(ES256, "ES256")                                                                              \
    X(ES384, "ES384")                                                                              \
    X(ES512, "ES512")                                                                              \
    X(EDDSA, "EdDSA")

typedef enum par_jwt_alg {
#define PAR__JWT_ALG_ENUM(name, str) PAR_JWT_##name,
    PAR_JWT_ALG_MAP(PAR__JWT_ALG_ENUM)
#undef PAR__JWT_ALG_ENUM
        PAR_JWT_ALG_COUNT
} par_jwt_alg_t;

#define PAR_JWT_ALG_BIT(a) (1u << (a))
/* The allow-list when the configuration names none: RS256, ES256, EdDSA, PS256. */
#define PAR_JWT_DEFAULT_ALGS                                                                       \
    (PAR_JWT_ALG_BIT(PAR_JWT_RS256) | PAR_JWT_ALG_BIT(PAR_JWT_ES256) |                             \
     PAR_JWT_ALG_BIT(PAR_JWT_EDDSA) | PAR_JWT_ALG_BIT(PAR_JWT_PS256))

/* Returns the algorithm, -1 for an unknown name, -2 for `none` or HS* (which
 * are never accepted). */
int par_jwt_alg_parse(const char *name);
const char *par_jwt_alg_name(int alg);

/* Key families a JWK can hold; which algorithms each one verifies. */
typedef enum par_key_class {
    PAR_KEY_RSA = 0, /* RS*, PS*; at least 2048 bits */
    PAR_KEY_P256,    /* ES256 */
    PAR_KEY_P384,    /* ES384 */
    PAR_KEY_P521,    /* ES512 */
    PAR_KEY_ED,      /* EdDSA: Ed25519 or Ed448 */
} par_key_class_t;

int par_jwt_alg_fits(int alg, int key_class);

typedef struct par_jwt_policy {
    const char *issuer;   /* exact match with `iss` */
    const char *audience; /* must be `aud` or one of its elements */
    unsigned alg_mask;    /* PAR_JWT_ALG_BIT()s */
    int64_t leeway_s;     /* clock skew allowed on exp, nbf, iat */
    size_t max_bytes;     /* token size cap, 0 = PAR_JWT_DEFAULT_MAX_BYTES */
} par_jwt_policy_t;

/* A parsed token. The signing input is borrowed from the token text. */
typedef struct par_jwt {
    int alg;
    const char *kid; /* inside `header`, NULL when absent */
    json_t *header;  /* owned */
    json_t *claims;  /* owned */
    const char *signing_input;
    size_t signing_input_len;
    unsigned char *sig; /* owned */
    size_t sig_len;
} par_jwt_t;

/* Splits, decodes and checks the structure and header of `tok`. On success
 * `out` must be released with par_jwt_free(); on failure it holds nothing and
 * `f` says why (MALFORMED, TOO_LARGE or ALG). Returns 0 or -1. */
int par_jwt_parse(const char *tok, size_t len, const par_jwt_policy_t *pol, par_jwt_t *out,
                  par_auth_fail_t *f);
void par_jwt_free(par_jwt_t *j);

/* Verifies the signature with `pkey` (an EVP_PKEY of class `key_class`).
 * Returns 0, or -1 with f->reason KEY_MISMATCH or SIGNATURE. */
int par_jwt_verify(const par_jwt_t *j, EVP_PKEY *pkey, int key_class, par_auth_fail_t *f);

/* Checks iss, aud, exp, nbf, iat against the policy at wall-clock time `now`
 * (seconds since the epoch). Returns 0 or -1 with `f` set. */
int par_jwt_check_claims(const par_jwt_t *j, const par_jwt_policy_t *pol, int64_t now,
                         par_auth_fail_t *f);

/* The `exp` claim (seconds), after a successful check. */
int64_t par_jwt_exp(const par_jwt_t *j);

/* Strict base64url (RFC 4648 section 5, no padding, canonical trailing bits).
 * `out` needs room for len*3/4 bytes. Returns the decoded length or -1. */
long par_b64url_decode(const char *in, size_t len, unsigned char *out);

#endif
