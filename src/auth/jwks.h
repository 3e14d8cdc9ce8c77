/*
 * auth/jwks.h — an issuer's signing keys (RFC 7517 JWK Set).
 *
 * Owns the conversion of a JWKS document into verification keys: each JWK is
 * read and validated by rhonabwy (a maintained JOSE library), exported as a
 * SubjectPublicKeyInfo and loaded into an OpenSSL EVP_PKEY once, so that
 * verifying a token costs one EVP verification and no key parsing. Only
 * public signature keys are kept: `oct` (symmetric) keys, keys whose `use`
 * is not `sig`, RSA keys under 2048 bits and unknown curves are skipped with a
 * note. Remote key material (`x5u`, `jku`) is never fetched and certificate
 * chains (`x5c`) are ignored: a key is its own parameters.
 *
 * A key set is immutable and refcounted; the OIDC provider publishes a new
 * one when the issuer's set changes and readers keep the one they hold.
 * par_jwks_parse runs on the provider's refresh thread (rhonabwy is only ever
 * called there and from tests); lookups run on any thread.
 */
#ifndef PAR_AUTH_JWKS_H
#define PAR_AUTH_JWKS_H

#include <openssl/types.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define PAR_JWKS_MAX_KEYS 64
#define PAR_JWKS_MAX_BYTES (512 * 1024)

typedef struct par_jwk {
    char *kid;                     /* NULL when the JWK has none */
    int key_class;                 /* par_key_class_t */
    int alg;                       /* the JWK's own "alg" (par_jwt_alg_t), -1 when it names none */
    EVP_PKEY *pkey;                /* owned */
    unsigned char fingerprint[32]; /* SHA-256 of the SubjectPublicKeyInfo */
} par_jwk_t;

typedef struct par_jwks {
    atomic_int refs;
    size_t count;
    par_jwk_t *keys;
} par_jwks_t;

/* Parses a JWKS document. On success *out holds one reference and `notes`
 * (if not NULL) lists the keys that were skipped and why, one per line. Fails
 * with PAR_E_INVALID_ARGUMENT when the document is not a JWKS or holds no
 * usable key (`notes` says why). Call par_jwks_global_init() first. */
int par_jwks_parse(const char *json, size_t len, par_jwks_t **out, par_buf_t *notes);

/* Initialises rhonabwy once per process (it is not thread-safe otherwise). */
void par_jwks_global_init(void);

void par_jwks_ref(par_jwks_t *s);
void par_jwks_unref(par_jwks_t *s);

/* Same keys (ids, algorithms and key bytes) in the same order? */
int par_jwks_same(const par_jwks_t *a, const par_jwks_t *b);

/* Does any key carry this kid? */
int par_jwks_has_kid(const par_jwks_t *s, const char *kid);

/* Candidate keys for a token: those with the token's kid (every key when the
 * token names none) whose class and own "alg" fit `alg`. Call with *pos = 0,
 * then again until NULL. */
const par_jwk_t *par_jwks_next(const par_jwks_t *s, const char *kid, int alg, size_t *pos);

#endif
