/*
 * config/apply.c — see apply.h.
 */
#include "config/apply.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "metering/stripe.h"

/* A JSON array of strings as a NULL-terminated array of borrowed strings. */
static const char **string_array(const json_t *a)
{
    size_t n = json_array_size(a);
    const char **out = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; out && i < n; i++)
        out[i] = json_string_value(json_array_get(a, i));
    return out;
}

int par_conf_require_signatures(const par_conf_t *c)
{
    return par_conf_bool(c, PAR_K_TRUST_REQUIRE, c->file != NULL);
}

static int trust_keys(const par_conf_t *c, par_conf_runtime_t *r)
{
    const json_t *keys = c->v[PAR_K_TRUST_KEYS].v;
    size_t n = json_array_size(keys);
    r->keys = calloc(n ? n : 1, sizeof(*r->keys));
    r->pins = calloc(n ? n : 1, sizeof(*r->pins));
    if (r->keys == NULL || r->pins == NULL)
        return PAR_E_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(keys, i), *pk = json_object_get(e, "packages");
        const json_t *k = json_object_get(e, "key");
        r->keys[i].key = json_string_value(k ? k : json_object_get(e, "file"));
        if (pk)
            r->keys[i].packages = r->pins[i] = string_array(pk);
    }
    r->cfg.trusted_keys = r->keys;
    r->cfg.trusted_key_count = n;
    return PAR_OK;
}

int par_conf_to_runtime(const par_conf_t *c, par_conf_runtime_t *r)
{
    memset(r, 0, sizeof(*r));
    par_config_t *cfg = &r->cfg;
    par_config_init(cfg);
    cfg->state_dir = par_conf_str(c, PAR_K_STATE_DIR);
    r->trusted = string_array(c->v[PAR_K_TRUSTED].v);
    cfg->trusted = r->trusted;
    const char *iso = par_conf_str(c, PAR_K_ISOLATION);
    cfg->isolation =
        iso && strcmp(iso, "in-process") == 0 ? PAR_ISOLATION_IN_PROCESS : PAR_ISOLATION_WORKER;
    cfg->min_workers = (unsigned)par_conf_int(c, PAR_K_WORKERS_MIN);
    cfg->max_workers = (unsigned)par_conf_int(c, PAR_K_WORKERS_MAX); /* 0: the core count */
    cfg->default_timeout_ms = (uint32_t)par_conf_int(c, PAR_K_LIMITS_TIMEOUT);
    cfg->max_input_bytes = (size_t)par_conf_int(c, PAR_K_LIMITS_MAX_INPUT) * 1024;
    cfg->default_concurrency = (unsigned)par_conf_int(c, PAR_K_LIMITS_CONCURRENCY);
    cfg->max_queue = (unsigned)par_conf_int(c, PAR_K_LIMITS_QUEUE);
    cfg->default_memory_mb = (unsigned)par_conf_int(c, PAR_K_LIMITS_MEMORY);
    cfg->worker_cpu_seconds = (unsigned)par_conf_int(c, PAR_K_LIMITS_CPU);
    cfg->scratch_mb = (unsigned)par_conf_int(c, PAR_K_LIMITS_SCRATCH);
    cfg->max_call_depth = (unsigned)par_conf_int(c, PAR_K_LIMITS_CALL_DEPTH);
    cfg->drain_ms = (uint32_t)par_conf_int(c, PAR_K_RELOAD_DRAIN);
    long rto = par_conf_int(c, PAR_K_LIMITS_RUN_TIMEOUT),
         rps = par_conf_int(c, PAR_K_RUNS_PER_SUBJECT);
    cfg->run_timeout_ms = rto == 0 ? UINT32_MAX : (uint32_t)rto;
    cfg->runs_per_subject = rps == 0 ? UINT_MAX : (unsigned)rps;
    cfg->run_memory_events = (unsigned)par_conf_int(c, PAR_K_RUNS_MEMORY_EVENTS);
    cfg->run_retention_s = (uint32_t)par_conf_int(c, PAR_K_RUNS_RETENTION);
    cfg->run_cancel_grace_ms = (uint32_t)par_conf_int(c, PAR_K_RUNS_CANCEL_GRACE);
    cfg->max_event_bytes = (size_t)par_conf_int(c, PAR_K_RUNS_MAX_EVENT) * 1024;
    cfg->run_drain_ms = (uint32_t)par_conf_int(c, PAR_K_RELOAD_RUN_DRAIN);
    cfg->rollback_after = (unsigned)par_conf_int(c, PAR_K_ROLLBACK_REQUESTS);
    cfg->rollback_error_pct = (unsigned)par_conf_int(c, PAR_K_ROLLBACK_PCT);
    cfg->allow_unsigned = !par_conf_require_signatures(c);
    cfg->ca_file = par_conf_str(c, PAR_K_REGISTRY_CA);
    cfg->s3_region = par_conf_str(c, PAR_K_S3_REGION);
    cfg->s3_endpoint = par_conf_str(c, PAR_K_S3_ENDPOINT);
    cfg->s3_path_style = par_conf_bool(c, PAR_K_S3_PATH_STYLE, 0);
    cfg->allow_http = par_conf_bool(c, PAR_K_REGISTRY_ALLOW_HTTP, 0);
    cfg->index_url = par_conf_str(c, PAR_K_REGISTRY_INDEX);
    cfg->index_poll_ms = (uint32_t)par_conf_int(c, PAR_K_REGISTRY_POLL);
    cfg->fetch_timeout_ms = (uint32_t)par_conf_int(c, PAR_K_REGISTRY_TIMEOUT);
    cfg->fetch_connect_timeout_ms = (uint32_t)par_conf_int(c, PAR_K_REGISTRY_CONNECT);
    cfg->fetch_retries = (unsigned)par_conf_int(c, PAR_K_REGISTRY_RETRIES);
    cfg->max_download_bytes = (uint64_t)par_conf_int(c, PAR_K_REGISTRY_MAX_DL) << 20;
    cfg->cache_max_bytes = (uint64_t)par_conf_int(c, PAR_K_CACHE_MAX) << 20;
    cfg->sandbox_user = par_conf_str(c, PAR_K_SANDBOX_USER);
    cfg->sandbox_group = par_conf_str(c, PAR_K_SANDBOX_GROUP);
    cfg->sandbox_max_files = (unsigned)par_conf_int(c, PAR_K_SANDBOX_FILES);
    cfg->sandbox_max_processes = (unsigned)par_conf_int(c, PAR_K_SANDBOX_PROCS);
    cfg->python = par_conf_str(c, PAR_K_PYTHON);
    cfg->wheelhouse = par_conf_str(c, PAR_K_WHEELHOUSE);
    cfg->pip_timeout_ms = (uint32_t)par_conf_int(c, PAR_K_PIP_TIMEOUT);
    r->env_allow = string_array(c->v[PAR_K_ENV_ALLOW].v);
    cfg->env_allow = r->env_allow;
    if (r->trusted == NULL || r->env_allow == NULL)
        return PAR_E_NO_MEMORY;
    return trust_keys(c, r);
}

void par_conf_runtime_free(par_conf_runtime_t *r)
{
    for (size_t i = 0; r->pins && i < r->cfg.trusted_key_count; i++)
        free(r->pins[i]);
    free(r->pins);
    free(r->keys);
    free(r->trusted);
    free(r->env_allow);
    memset(r, 0, sizeof(*r));
}

void par_conf_to_http(const par_conf_t *c, par_http_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = par_conf_str(c, PAR_K_LISTEN);
    o->threads = (unsigned)par_conf_int(c, PAR_K_HTTP_THREADS);
    o->access_log = par_conf_bool(c, PAR_K_LOG_ACCESS, 1);
    o->http2 = par_conf_bool(c, PAR_K_HTTP_HTTP2, 0);
    o->reuse_port = par_conf_bool(c, PAR_K_HTTP_REUSE_PORT, 0);
    o->max_in_flight = (unsigned)par_conf_int(c, PAR_K_LIMITS_MAX_IN_FLIGHT);
    o->tls_cert = par_conf_str(c, PAR_K_TLS_CERT);
    o->tls_key = par_conf_str(c, PAR_K_TLS_KEY);
    o->tls_client_ca = par_conf_str(c, PAR_K_TLS_CLIENT_CA);
    o->heartbeat_ms = (unsigned)par_conf_int(c, PAR_K_RUNS_HEARTBEAT);
    const json_t *origins = c->v[PAR_K_HTTP_CORS_ORIGINS].v;
    size_t n = json_array_size(origins);
    for (size_t i = 0; i < n && i < PAR_HTTP_CORS_MAX; i++)
        o->cors_origins[i] = json_string_value(json_array_get(origins, i));
    o->cors_norigins = (unsigned)n; /* beyond PAR_HTTP_CORS_MAX: refused by the check */
    o->cors_credentials = par_conf_bool(c, PAR_K_HTTP_CORS_CREDENTIALS, 0);
}

/* Every auth.* scalar and list key, as text for par_auth_config_set(). */
static int auth_scalars(const par_conf_t *c, par_auth_config_t *a, par_buf_t *err)
{
    for (int i = 0; i < PAR_K_COUNT; i++) {
        const par_conf_key_t *k = &par_conf_keys[i];
        const json_t *v = c->v[i].v;
        if (strncmp(k->path, "auth.", 5) != 0 || v == NULL || i == PAR_K_AUTH_PERM_GRANTS ||
            i == PAR_K_AUTH_API_KEYS || c->v[i].src == PAR_CS_DEFAULT)
            continue;
        par_buf_t text;
        par_buf_init(&text, 0);
        if (json_is_array(v)) {
            for (size_t j = 0; j < json_array_size(v); j++)
                par_buf_appendf(&text, "%s%s", j ? "," : "",
                                json_string_value(json_array_get(v, j)));
        } else if (json_is_string(v))
            par_buf_appends(&text, json_string_value(v));
        else if (json_is_integer(v))
            par_buf_appendf(&text, "%lld", (long long)json_integer_value(v));
        else
            par_buf_appends(&text, json_is_true(v) ? "true" : "false");
        char *t = strndup(text.data ? text.data : "", text.len); /* the buffer holds no NUL */
        int rc = t ? par_auth_config_set(a, k->path + 5, t, err) : PAR_E_NO_MEMORY;
        free(t);
        par_buf_free(&text);
        if (rc != PAR_OK)
            return rc;
    }
    return PAR_OK;
}

int par_conf_to_auth(const par_conf_t *c, par_auth_config_t *a, par_buf_t *err)
{
    int rc = par_auth_config_init(a);
    if (rc == PAR_OK)
        rc = auth_scalars(c, a, err);
    if (rc == PAR_OK && c->v[PAR_K_AUTH_PERM_GRANTS].v)
        rc = par_auth_config_set_grants(a, c->v[PAR_K_AUTH_PERM_GRANTS].v, err);
    if (rc == PAR_OK && c->v[PAR_K_AUTH_API_KEYS].v)
        rc = par_auth_config_set_api_keys(a, c->v[PAR_K_AUTH_API_KEYS].v, err);
    /* auth is off only when configured so, or in the embedded local default */
    if (rc == PAR_OK)
        rc = par_auth_config_finish(a, c->file == NULL, err);
    return rc;
}

/* Reads a secret from a file (first line, without the newline), or NULL. */
static char *read_secret_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char buf[1024];
    char *r = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (r == NULL)
        return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? strdup(buf) : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* metering.stripe.api_key, or the key in api_key_file, or in $api_key_env. */
static int stripe_key(const par_conf_t *c, par_stripe_config_t *st, par_buf_t *err)
{
    const char *file = par_conf_str(c, PAR_K_STRIPE_API_KEY_FILE);
    const char *env = par_conf_str(c, PAR_K_STRIPE_API_KEY_ENV);
    if (par_conf_str(c, PAR_K_STRIPE_API_KEY)) {
        st->api_key = strdup(par_conf_str(c, PAR_K_STRIPE_API_KEY));
    } else if (file) {
        if ((st->api_key = read_secret_file(file)) == NULL) {
            par_buf_appendf(err, "%s: `metering.stripe.api_key_file`: cannot read a key from %s\n",
                            c->v[PAR_K_STRIPE_API_KEY_FILE].origin, file);
            return PAR_E_INVALID_ARGUMENT;
        }
    } else if (env) {
        const char *e = getenv(env);
        if (e == NULL || *e == '\0') {
            par_buf_appendf(err, "%s: `metering.stripe.api_key_env`: $%s is not set\n",
                            c->v[PAR_K_STRIPE_API_KEY_ENV].origin, env);
            return PAR_E_INVALID_ARGUMENT;
        }
        st->api_key = strdup(e);
    }
    return PAR_OK;
}

/* metering.node_id, or "<hostname>-<8 hex of SHA-256(state_dir)>": stable for
 * a node across restarts, distinct for two nodes (or two state dirs on one). */
char *par_conf_node_id(const par_conf_t *c)
{
    const char *set = par_conf_str(c, PAR_K_METERING_NODE_ID);
    if (set && *set)
        return strdup(set);
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "node");
    const char *dir = par_conf_str(c, PAR_K_STATE_DIR);
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(dir ? dir : ""), dir ? strlen(dir) : 0, d);
    char *out = NULL;
    if (asprintf(&out, "%s-%02x%02x%02x%02x", host, d[0], d[1], d[2], d[3]) < 0)
        return NULL;
    return out;
}

int par_conf_meter_off_check(const par_conf_t *c, par_buf_t *err)
{
    if (par_conf_bool(c, PAR_K_METERING, 0))
        return PAR_OK;
    const char *sink = par_conf_str(c, PAR_K_METERING_SINK);
    if (sink == NULL || strcmp(sink, "postgres") != 0)
        return PAR_OK;
    par_buf_appendf(err, "metering.sink: postgres is set but metering.enabled is false: nothing "
                         "would be recorded or shipped; set metering.enabled: true, or drop "
                         "metering.sink\n");
    return PAR_E_INVALID_ARGUMENT;
}

int par_conf_to_meter(const par_conf_t *c, par_meter_config_t *m, par_buf_t *err)
{
    memset(m, 0, sizeof(*m));
    const char *path = par_conf_str(c, PAR_K_METERING_PATH);
    if (path)
        m->path = strdup(path);
    else if (asprintf(&m->path, "%s/usage.db", par_conf_str(c, PAR_K_STATE_DIR)) < 0)
        m->path = NULL;
    const char *sync = par_conf_str(c, PAR_K_METERING_SYNC);
    m->sync_full = sync && strcmp(sync, "full") == 0;
    const char *dur = par_conf_str(c, PAR_K_METERING_DURABILITY);
    m->async = dur && strcmp(dur, "async") == 0;
    m->queue_max = (size_t)par_conf_int(c, PAR_K_METERING_QUEUE);
    m->node_id = par_conf_node_id(c);
    const char *sink = par_conf_str(c, PAR_K_METERING_SINK);
    if (sink && strcmp(sink, "postgres") == 0) {
        const char *pg = par_conf_str(c, PAR_K_FLEET_POSTGRES);
        if (pg == NULL || *pg == '\0') {
            par_buf_appendf(err, "metering.sink: postgres needs fleet.postgres (the PostgreSQL "
                                 "the fleet shares: a libpq conninfo or postgresql:// URL); "
                                 "without it, use metering.sink: sqlite\n");
            return PAR_E_INVALID_ARGUMENT;
        }
        m->postgres = strdup(pg);
        m->ship_batch = (size_t)par_conf_int(c, PAR_K_METERING_SHIP_BATCH);
    }
    par_stripe_config_t *st = &m->stripe;
    int any = 0;
    m->retention_ms = (int64_t)par_conf_int(c, PAR_K_METERING_RETENTION) * 1000;
    m->rollup_retention_ms = (int64_t)par_conf_int(c, PAR_K_METERING_ROLLUP_RETENTION) * 1000;
    for (int i = PAR_K_STRIPE_API_KEY; i <= PAR_K_STRIPE_GRACE; i++)
        any |= c->v[i].src != PAR_CS_DEFAULT;
    if (!any)
        return PAR_OK; /* no export */
    int rc = stripe_key(c, st, err);
    if (rc != PAR_OK)
        return rc;
    st->endpoint = dup_or_null(par_conf_str(c, PAR_K_STRIPE_ENDPOINT));
    st->event_name = dup_or_null(par_conf_str(c, PAR_K_STRIPE_EVENT));
    st->customer_field = dup_or_null(par_conf_str(c, PAR_K_STRIPE_CUSTOMER_FIELD));
    st->value = dup_or_null(par_conf_str(c, PAR_K_STRIPE_VALUE));
    st->bill_failed = par_conf_bool(c, PAR_K_STRIPE_BILL_FAILED, 0);
    st->ca_file = dup_or_null(par_conf_str(c, PAR_K_STRIPE_CA));
    st->allow_http = par_conf_bool(c, PAR_K_STRIPE_ALLOW_HTTP, 0);
    st->event_names = json_incref(c->v[PAR_K_STRIPE_EVENTS].v);
    st->customers = json_incref(c->v[PAR_K_STRIPE_CUSTOMERS].v);
    st->timeout_ms = (uint32_t)par_conf_int(c, PAR_K_STRIPE_TIMEOUT);
    st->backoff_min_ms = (uint32_t)par_conf_int(c, PAR_K_STRIPE_BACKOFF_MIN);
    st->backoff_max_ms = (uint32_t)par_conf_int(c, PAR_K_STRIPE_BACKOFF_MAX);
    st->concurrency = (uint32_t)par_conf_int(c, PAR_K_STRIPE_CONCURRENCY);
    st->aggregate = par_conf_bool(c, PAR_K_STRIPE_AGGREGATE, 1);
    st->window_ms = (uint32_t)par_conf_int(c, PAR_K_STRIPE_WINDOW);
    st->grace_ms = (uint32_t)par_conf_int(c, PAR_K_STRIPE_GRACE);
    st->node_id = par_conf_node_id(c);
    par_buf_t why;
    par_buf_init(&why, 0);
    if (par_stripe_config_check(st, &why) != PAR_OK) {
        /* the caller names the file */
        par_buf_appendf(err, "%.*s\n", (int)why.len, why.data ? why.data : "");
        par_buf_free(&why);
        return PAR_E_INVALID_ARGUMENT;
    }
    par_buf_free(&why);
    return PAR_OK;
}

/* http(s)://HOST[:PORT] with an optional trailing "/": what the forwarding
 * of runs appends a path to. */
static int advertise_ok(const char *u)
{
    size_t skip = strncmp(u, "http://", 7) == 0 ? 7 : strncmp(u, "https://", 8) == 0 ? 8 : 0;
    if (skip == 0)
        return 0;
    const char *h = u + skip, *end = h + strlen(h);
    if (end > h && end[-1] == '/')
        end--;
    if (end == h || end - h > 255)
        return 0;
    for (const char *p = h; p < end; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".-:[]_", *p)))
            return 0;
    return 1;
}

int par_conf_to_fleet(const par_conf_t *c, par_fleet_config_t *f, int *on, par_buf_t *err)
{
    memset(f, 0, sizeof(*f));
    const char *pg = par_conf_str(c, PAR_K_FLEET_POSTGRES);
    *on = pg && *pg;
    if (!*on)
        return PAR_OK;
    int rc = PAR_OK;
    const char *adv = par_conf_str(c, PAR_K_FLEET_ADVERTISE);
    if (adv && !advertise_ok(adv)) {
        par_buf_appendf(err,
                        "fleet.advertise_url: '%s' is not http://HOST:PORT (or https://), the "
                        "address other nodes reach this one at, without a path\n",
                        adv);
        rc = PAR_E_INVALID_ARGUMENT;
    }
    f->postgres = pg;
    f->heartbeat_ms = (uint32_t)par_conf_int(c, PAR_K_FLEET_HEARTBEAT);
    f->dead_after_ms = (uint32_t)par_conf_int(c, PAR_K_FLEET_DEAD_AFTER);
    if (f->dead_after_ms < 2 * f->heartbeat_ms) {
        par_buf_appendf(err,
                        "fleet.dead_after_ms (%u) must be at least two fleet.heartbeat_ms (%u): "
                        "one late heartbeat must not make a node dead\n",
                        f->dead_after_ms, f->heartbeat_ms);
        rc = PAR_E_INVALID_ARGUMENT;
    }
    if (rc == PAR_OK && (f->node_id = par_conf_node_id(c)) == NULL)
        rc = PAR_E_NO_MEMORY;
    return rc;
}
