/*
 * config/embed.c — par_runtime_new_from_config(): a host program's runtime
 * from the configuration of `par serve`, read and checked by the same table
 * (config.h) so that a typo is refused with its file, line and the nearest
 * key, exactly as `par serve` refuses it.
 *
 * What a host takes from it: every key of the runtime (par_conf_to_runtime),
 * usage metering (metering.*: records carry each call's subject), the trusted
 * keys, the log level and format when set, and the packages folder when set
 * (deployed once, not watched). The keys of the HTTP server (listen, tls,
 * http, auth) are checked by type and have no effect: there is no listener.
 *
 * Caller: host programs, any thread (logging setup is process-wide, like
 * `par serve`'s). Starts the runtime and nothing else.
 */
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "config/apply.h"
#include "config/config.h"
#include "metering/meter.h"
#include "metering/stripe.h"
#include "obs/log.h"
#include "pkg/trust.h"
#include "runtime/converge.h"
#include "runtime/runtime.h"

/* The checks of `par serve` across keys that matter without a listener: the
 * trusted keys load, the metering block and the index URL are usable. (The
 * auth block is checked by type only: auth.mode, required by `par serve`
 * with a file, has nothing to guard here.) Each problem on a line of `err`. */
static int check(const par_conf_t *c, par_meter_config_t *m, par_buf_t *err)
{
    int rc = PAR_OK;
    par_conf_runtime_t r;
    par_trust_t t;
    if (par_conf_to_runtime(c, &r) == PAR_OK &&
        par_trust_init(&t, r.cfg.trusted_keys, r.cfg.trusted_key_count, 0, err) == PAR_OK)
        par_trust_free(&t);
    else
        rc = PAR_E_INVALID_ARGUMENT;
    par_conf_runtime_free(&r);
    const char *idx = par_conf_str(c, PAR_K_REGISTRY_INDEX);
    int http_ok = par_conf_bool(c, PAR_K_REGISTRY_ALLOW_HTTP, 0);
    if (idx && strncmp(idx, "https://", 8) != 0 && strncmp(idx, "s3://", 5) != 0 &&
        !(http_ok && strncmp(idx, "http://", 7) == 0)) {
        par_buf_appendf(err, "registry.index_url: '%s' is not an https:// or s3:// URL\n", idx);
        rc = PAR_E_INVALID_ARGUMENT;
    }
    memset(m, 0, sizeof(*m));
    if (rc == PAR_OK && par_conf_bool(c, PAR_K_METERING, 0) &&
        par_conf_to_meter(c, m, err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    if (par_conf_meter_off_check(c, err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    return rc;
}

/* Starts the runtime and, when configured, its metering (m's strings taken). */
static int start(const par_conf_t *c, par_meter_config_t *m, par_runtime_t **out, par_buf_t *err)
{
    par_conf_runtime_t r;
    par_runtime_t *rt = NULL;
    int rc = par_conf_to_runtime(c, &r);
    if (rc == PAR_OK)
        rc = par_runtime_new(&r.cfg, &rt);
    par_conf_runtime_free(&r);
    if (rc != PAR_OK) {
        par_buf_appendf(err, "cannot start the runtime: %s (see the log)\n", par_strerror(rc));
        par_meter_config_free(m);
        return rc;
    }
    if (par_conf_bool(c, PAR_K_METERING, 0) && (rc = par_meter_new(m, &rt->meter, err)) != PAR_OK) {
        par_runtime_destroy(rt);
        return rc;
    }
    *out = rt;
    return PAR_OK;
}

int par_runtime_new_from_config(const char *file, const char *text, size_t len, par_runtime_t **out,
                                char **errp)
{
    par_conf_t c;
    par_buf_t err;
    par_buf_init(&err, 0);
    par_conf_init(&c);
    *out = NULL;
    if (errp)
        *errp = NULL;
    int rc;
    if (text)
        rc = par_conf_load_text(&c, file ? file : "<configuration>", text, len, &err);
    else if (file)
        rc = par_conf_load_file(&c, file, &err);
    else
        rc = PAR_OK; /* the defaults alone */
    par_meter_config_t m;
    memset(&m, 0, sizeof(m));
    if (rc == PAR_OK)
        rc = check(&c, &m, &err);
    if (rc == PAR_OK) {
        if (c.v[PAR_K_LOG_LEVEL].src != PAR_CS_DEFAULT ||
            c.v[PAR_K_LOG_FORMAT].src != PAR_CS_DEFAULT)
            par_log_init(par_log_parse_level(par_conf_str(&c, PAR_K_LOG_LEVEL)),
                         strcmp(par_conf_str(&c, PAR_K_LOG_FORMAT), "text") != 0);
        rc = start(&c, &m, out, &err);
    } else {
        par_meter_config_free(&m);
    }
    if (rc == PAR_OK) {
        par_conf_id_t dir = c.v[PAR_K_REGISTRY_DIR].v ? PAR_K_REGISTRY_DIR : PAR_K_PACKAGES;
        if (c.v[dir].src != PAR_CS_DEFAULT)
            par__folder_deploy_all(*out, par_conf_str(&c, dir));
    }
    if (rc != PAR_OK && errp)
        *errp = par_buf_steal(&err, NULL);
    if (rc != PAR_OK && errp && *errp == NULL)
        *errp = strdup(par_strerror(rc));
    par_buf_free(&err);
    par_conf_free(&c);
    return rc;
}
