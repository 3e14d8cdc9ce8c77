/*
 * config/apply.h — a loaded configuration (config.h) turned into the structs
 * the modules take: par_config_t (runtime), par_http_opts_t, par_auth_config_t
 * and par_meter_config_t. Called by `par serve` and `par config check` on the
 * main thread; starts nothing. Strings in the results are borrowed from the
 * par_conf_t unless said otherwise, so it must outlive them.
 */
#ifndef PAR_CONFIG_APPLY_H
#define PAR_CONFIG_APPLY_H

#include <par/par.h>

#include "auth/config.h"
#include "config/config.h"
#include "http/server.h"
#include "metering/meter.h"
#include "runtime/fleet.h"

/* par_config_t and the arrays it points into. */
typedef struct par_conf_runtime {
    par_config_t cfg;
    const char **trusted, **env_allow; /* NULL-terminated */
    par_trusted_key_t *keys;
    const char ***pins; /* per key: NULL-terminated patterns or NULL */
} par_conf_runtime_t;

/** The runtime's configuration (signatures are required by default with a file). */
int par_conf_to_runtime(const par_conf_t *c, par_conf_runtime_t *out);
void par_conf_runtime_free(par_conf_runtime_t *r);

/** Listener options (auth left NULL). */
void par_conf_to_http(const par_conf_t *c, par_http_opts_t *out);

/** The auth block, checked (par_auth_config_finish); `out` is initialised here
 *  and must be freed with par_auth_config_free() even on failure. */
int par_conf_to_auth(const par_conf_t *c, par_auth_config_t *out, par_buf_t *err);

/** Metering; strings owned by `out` (par_meter_new takes them). Reads the
 *  Stripe key from its file or variable and checks the export's settings. */
int par_conf_to_meter(const par_conf_t *c, par_meter_config_t *out, par_buf_t *err);

/** With metering.enabled false: refuses metering settings that only take
 *  effect with metering on and that an operator cannot mean to go unused
 *  (metering.sink: postgres: the fleet would silently lose this node's
 *  usage). PAR_OK, or PAR_E_INVALID_ARGUMENT with a line in `err`. */
int par_conf_meter_off_check(const par_conf_t *c, par_buf_t *err);

/** This node's id: metering.node_id, or "<hostname>-<8 hex of SHA-256 of
 *  state_dir>" (stable across restarts, distinct per state directory).
 *  Allocated; NULL when out of memory. */
char *par_conf_node_id(const par_conf_t *c);

/** The fleet's settings when fleet.postgres is set (else *on = 0 and
 *  nothing is checked): fleet.advertise_url must be http(s)://HOST[:PORT]
 *  and fleet.dead_after_ms at least two fleet.heartbeat_ms. `out->node_id`
 *  is allocated (the caller frees it), the rest borrowed. */
int par_conf_to_fleet(const par_conf_t *c, par_fleet_config_t *out, int *on, par_buf_t *err);

/** Whether unsigned packages are refused: trust.require_signatures, else
 *  true with a configuration file. */
int par_conf_require_signatures(const par_conf_t *c);

#endif
