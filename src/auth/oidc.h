/*
 * auth/oidc.h — the OpenID Connect provider (auth.mode: oidc).
 *
 * Owns the issuer's signing keys and their life: discovery
 * ({issuer}/.well-known/openid-configuration, whose `issuer` must equal the
 * configured one) gives `jwks_uri`; the JWKS is fetched over verified TLS
 * (libcurl; `ca_file` or the system store; https only unless allow_http),
 * kept for its Cache-Control max-age clamped to [jwks_cache_min_s,
 * jwks_cache_max_s], and refreshed by a background thread. A failed fetch
 * keeps the keys already held (an issuer outage does not lock callers out)
 * and is retried with exponential backoff up to retry_max_s.
 *
 * A token whose `kid` is not in the set may mean the issuer rotated its keys:
 * the request is parked (PAR_AUTH_PENDING, never blocking the event loop) and
 * a refresh is started, at most one per unknown_kid_refresh_s so that a
 * stream of made-up kids cannot turn PAR into a JWKS flooder; when the
 * refresh ends, parked requests are called back and checked again. Inside
 * the rate limit an unknown kid is refused at once. Before the first keys
 * arrive, tokens are answered with auth_unavailable (503), never accepted.
 *
 * Verified tokens are cached by hash (auth/cache.h) until they expire.
 *
 * Threads: check/ready/describe from any thread; the refresh thread is the
 * only one that does network I/O or calls rhonabwy.
 */
#ifndef PAR_AUTH_OIDC_H
#define PAR_AUTH_OIDC_H

#include "auth/auth.h"

/* Builds the provider and starts its refresh thread (the first fetch starts at
 * once, in the background). `cfg` must outlive the provider. */
int par_oidc_provider_new(const par_auth_config_t *cfg, par_auth_provider_t **out, par_buf_t *err);

#endif
