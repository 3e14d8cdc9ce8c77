/*
 * auth/apikey.h — the static API-key provider (auth.mode: api_key).
 *
 * For simple deployments: the configuration lists the SHA-256 of each key
 * (never the key itself) with the subject, tenant and permissions it stands
 * for. A presented key is hashed and compared with every configured hash in
 * constant time, so neither the key nor which entry matched leaks through
 * timing. Any thread; no state changes after construction.
 */
#ifndef PAR_AUTH_APIKEY_H
#define PAR_AUTH_APIKEY_H

#include "auth/auth.h"

/* Builds the provider from cfg->api_keys. Returns PAR_OK or an error in `err`. */
int par_apikey_provider_new(const par_auth_config_t *cfg, par_auth_provider_t **out,
                            par_buf_t *err);

#endif
