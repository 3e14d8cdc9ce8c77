/*
 * auth/cache.h — tokens already verified, so a client reusing its token costs
 * one SHA-256 and a table probe instead of a signature verification.
 *
 * Keyed by the SHA-256 of the whole token (a hit proves the bytes are the
 * ones verified before); an entry holds the identity built from the token,
 * the instant after which it must not be used (its `exp` plus the leeway) and
 * the generation of the key set that verified it: when the issuer's keys
 * change, older entries stop matching and their tokens are verified again, so
 * a key removed from the JWKS stops being honoured at once.
 *
 * Bounded: a fixed number of entries in 16 independently locked shards of
 * 4-way sets; a full set evicts its entry closest to expiry. Any thread.
 */
#ifndef PAR_AUTH_CACHE_H
#define PAR_AUTH_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "auth/identity.h"

typedef struct par_token_cache par_token_cache_t;

/* A cache of about `entries` tokens (at least 64). NULL when out of memory. */
par_token_cache_t *par_token_cache_new(size_t entries);
void par_token_cache_free(par_token_cache_t *c);

/* The identity cached for this token hash (referenced: unref it), or NULL when
 * absent, verified by another key generation, or expired at wall-clock `now`. */
par_identity_t *par_token_cache_get(par_token_cache_t *c, const unsigned char key[32], uint64_t gen,
                                    int64_t now);

/* Caches `id` (takes a reference of its own) until wall-clock `expires_at`. */
void par_token_cache_put(par_token_cache_t *c, const unsigned char key[32], uint64_t gen,
                         int64_t expires_at, par_identity_t *id);

/* Number of live entries (tests, /runtime/info). */
size_t par_token_cache_count(par_token_cache_t *c);

#endif
