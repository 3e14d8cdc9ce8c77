/*
 * cli/serve.c — `par serve`: configuration (built-in defaults, then a YAML
 * file, PAR_* environment variables and flags, in increasing precedence),
 * the packages folder watch, signals, SIGHUP reload and graceful shutdown.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <libfyaml.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/par.h>

#include "auth/auth.h"
#include "cli/cli.h"
#include "http/server.h"
#include "obs/log.h"
#include "metering/meter.h"
#include "obs/metrics.h"
#include "pkg/archive.h"
#include "pkg/manifest.h"
#include "runtime/runtime.h"

/* The server lives as long as the process: kept here so that it stays
 * reachable (and so is not reported by leak checkers) after main returns. */
static par_http_t *g_http;
static par_auth_t *g_auth;

typedef struct serve_opts {
    char *listen;
    char *packages;
    char *state_dir;
    char *log_level;
    char *log_format;
    char *isolation;
    char **trusted;
    size_t ntrusted;
    unsigned http_threads;
    unsigned min_workers, max_workers;
    unsigned timeout_ms;
    unsigned long max_input_kb;
    int access_log;
    unsigned grace_ms;
    unsigned drain_ms;
    unsigned concurrency;
    unsigned max_queue;
    unsigned memory_mb;
    unsigned reload_drain_ms;
    unsigned cpu_seconds;
    unsigned rollback_after, rollback_pct;
    /* trust and registries */
    int require_signatures; /* -1: not said (on with a configuration file, off without) */
    par_trusted_key_t *keys;
    size_t nkeys;
    char ***key_pins; /* per key, NULL-terminated patterns or NULL; owned */
    char **key_strs;  /* per key, owned */
    char *ca_file, *s3_region, *s3_endpoint, *index_url;
    int s3_path_style, allow_http;
    unsigned poll_ms, fetch_timeout_ms, connect_timeout_ms, fetch_retries;
    int fetch_retries_set;
    unsigned long max_download_mb, cache_max_mb;
    /* worker sandbox */
    char *sandbox_user, *sandbox_group;
    unsigned sandbox_max_files, sandbox_max_processes;
    par_auth_config_t auth;
    /* Python agents and package environments */
    char *python, *wheelhouse;
    unsigned pip_timeout_ms;
    char **env_allow; /* NULL-terminated */
    size_t nenv_allow;
    int metering;             /* metering.enabled */
    par_meter_config_t meter; /* strings owned until handed to par_meter_new() */
} serve_opts_t;

static void add_env_allow(serve_opts_t *o, const char *name)
{
    o->env_allow = realloc(o->env_allow, (o->nenv_allow + 2) * sizeof(char *));
    o->env_allow[o->nenv_allow++] = strdup(name);
    o->env_allow[o->nenv_allow] = NULL;
}

static void add_key(serve_opts_t *o, const char *key, char **pins)
{
    o->keys = realloc(o->keys, (o->nkeys + 1) * sizeof(*o->keys));
    o->key_strs = realloc(o->key_strs, (o->nkeys + 1) * sizeof(char *));
    o->key_pins = realloc(o->key_pins, (o->nkeys + 1) * sizeof(char **));
    o->key_strs[o->nkeys] = strdup(key);
    o->key_pins[o->nkeys] = pins;
    o->nkeys++;
    for (size_t i = 0; i < o->nkeys; i++) {
        o->keys[i].key = o->key_strs[i];
        o->keys[i].packages = (const char *const *)o->key_pins[i];
    }
}

static int parse_bool(const char *v)
{
    return v && (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 ||
                 strcmp(v, "1") == 0);
}

static void usage_serve(FILE *f)
{
    fprintf(f, "usage: par serve [--config par.yaml] [--listen ADDR] [--packages DIR]\n"
               "                 [--state-dir DIR] [--log-level LEVEL] [--http-threads N]\n\n"
               "Serves every .apkg in the packages directory on POST /agents/{id}/invoke.\n"
               "With no configuration: listen 127.0.0.1:8080, packages ./packages, state ./var.\n\n"
               "  --config FILE      YAML configuration (see docs/operations.md)\n"
               "  --listen ADDR      HOST:PORT to listen on (PAR_LISTEN)\n"
               "  --packages DIR     folder of .apkg files to serve (PAR_PACKAGES)\n"
               "  --state-dir DIR    cache and state (PAR_STATE_DIR)\n"
               "  --log-level LEVEL  debug|info|warn|error (PAR_LOG_LEVEL)\n"
               "  --log-format FMT   json|text (PAR_LOG_FORMAT)\n"
               "  --http-threads N   event-loop threads (PAR_HTTP_THREADS)\n"
               "  --trusted NAME     run package NAME in-process (repeatable; '*' = all)\n"
               "  --trusted-key KEY  minisign public key (or .pub file) trusted to sign\n"
               "                     packages (repeatable; PAR_TRUSTED_KEYS)\n"
               "  --require-signatures true|false  refuse unsigned packages (default: true\n"
               "                     with --config, false without; PAR_REQUIRE_SIGNATURES)\n"
               "  --index-url URL    registry index to poll (PAR_REGISTRY_INDEX_URL)\n"
               "  --ca-file FILE     trust anchors for https registries (PAR_REGISTRY_CA_FILE)\n"
               "  --shutdown-grace-ms N  after SIGTERM, keep serving N ms with readiness\n"
               "                         failing (PAR_SHUTDOWN_GRACE_MS, default 0)\n"
               "  --shutdown-drain-ms N  then wait up to N ms for in-flight requests\n"
               "                         (PAR_SHUTDOWN_DRAIN_MS, default 30000)\n"
               "  --auth-mode MODE   off|oidc|api_key (PAR_AUTH_MODE; docs/auth.md)\n"
               "  --auth KEY=VALUE   any scalar auth key, e.g. --auth oidc.issuer=https://idp\n"
               "                     (PAR_AUTH_OIDC_ISSUER; repeatable)\n");
}

/* ---- configuration ---------------------------------------------------------- */

static void set_str(char **dst, const char *v)
{
    if (v == NULL)
        return;
    free(*dst);
    *dst = strdup(v);
}

static const char *yaml_str(struct fy_document *d, const char *path)
{
    struct fy_node *n = fy_node_by_path(fy_document_root(d), path, FY_NT, FYNWF_DONT_FOLLOW);
    if (n == NULL || !fy_node_is_scalar(n))
        return NULL;
    return fy_node_get_scalar0(n);
}

/* A YAML mapping of scalars as a JSON object of strings, or NULL. */
static json_t *yaml_map(struct fy_document *d, const char *path)
{
    struct fy_node *n = fy_node_by_path(fy_document_root(d), path, FY_NT, 0);
    if (n == NULL || !fy_node_is_mapping(n))
        return NULL;
    json_t *o = json_object();
    void *it = NULL;
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(n, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(pr), *v = fy_node_pair_value(pr);
        if (k && v && fy_node_is_scalar(k) && fy_node_is_scalar(v))
            json_object_set_new(o, fy_node_get_scalar0(k), json_string(fy_node_get_scalar0(v)));
    }
    return o;
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

/* The `metering:` section (docs/observability.md). Returns -1 after saying
 * what is wrong. */
static int load_metering(struct fy_document *d, const char *file, serve_opts_t *o)
{
    const char *v;
    par_meter_config_t *m = &o->meter;
    if ((v = yaml_str(d, "/metering/enabled")))
        o->metering = parse_bool(v);
    set_str(&m->path, yaml_str(d, "/metering/path"));
    if ((v = yaml_str(d, "/metering/sync"))) {
        if (strcmp(v, "full") != 0 && strcmp(v, "normal") != 0) {
            fprintf(stderr, "par: %s: metering.sync must be normal or full, not '%s'\n", file, v);
            return -1;
        }
        m->sync_full = strcmp(v, "full") == 0;
    }
    if ((v = yaml_str(d, "/metering/queue")))
        m->queue_max = strtoul(v, NULL, 10);
    par_stripe_config_t *st = &m->stripe;
    struct fy_node *sn = fy_node_by_path(fy_document_root(d), "/metering/stripe", FY_NT, 0);
    if (sn == NULL)
        return 0;
    if ((v = yaml_str(d, "/metering/stripe/api_key")))
        set_str(&st->api_key, v);
    else if ((v = yaml_str(d, "/metering/stripe/api_key_file"))) {
        if ((st->api_key = read_secret_file(v)) == NULL) {
            fprintf(stderr, "par: %s: metering.stripe.api_key_file: cannot read a key from %s\n",
                    file, v);
            return -1;
        }
    } else if ((v = yaml_str(d, "/metering/stripe/api_key_env"))) {
        const char *e = getenv(v);
        if (e == NULL || *e == '\0') {
            fprintf(stderr, "par: %s: metering.stripe.api_key_env: $%s is not set\n", file, v);
            return -1;
        }
        set_str(&st->api_key, e);
    }
    set_str(&st->endpoint, yaml_str(d, "/metering/stripe/endpoint"));
    set_str(&st->event_name, yaml_str(d, "/metering/stripe/event_name"));
    set_str(&st->customer_field, yaml_str(d, "/metering/stripe/customer_field"));
    set_str(&st->value, yaml_str(d, "/metering/stripe/value"));
    if ((v = yaml_str(d, "/metering/stripe/bill_failed")))
        st->bill_failed = parse_bool(v);
    set_str(&st->ca_file, yaml_str(d, "/metering/stripe/ca_file"));
    st->event_names = yaml_map(d, "/metering/stripe/event_names");
    st->customers = yaml_map(d, "/metering/stripe/customers");
    if ((v = yaml_str(d, "/metering/stripe/allow_http")))
        st->allow_http = parse_bool(v);
    if ((v = yaml_str(d, "/metering/stripe/timeout_ms")))
        st->timeout_ms = (uint32_t)strtoul(v, NULL, 10);
    if ((v = yaml_str(d, "/metering/stripe/backoff_min_ms")))
        st->backoff_min_ms = (uint32_t)strtoul(v, NULL, 10);
    if ((v = yaml_str(d, "/metering/stripe/backoff_max_ms")))
        st->backoff_max_ms = (uint32_t)strtoul(v, NULL, 10);
    par_buf_t err;
    par_buf_init(&err, 0);
    if (par_stripe_config_check(st, &err) != PAR_OK) {
        fprintf(stderr, "par: %s: %.*s", file, (int)err.len, err.data ? err.data : "");
        par_buf_free(&err);
        return -1;
    }
    par_buf_free(&err);
    return 0;
}

static int load_config_file(const char *path, serve_opts_t *o)
{
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET};
    struct fy_document *d = fy_document_build_from_file(&pcfg, path);
    if (d == NULL) {
        fprintf(stderr, "par: %s: cannot read or parse the configuration file\n", path);
        return -1;
    }
    const char *v;
    set_str(&o->listen, yaml_str(d, "/listen"));
    set_str(&o->packages, yaml_str(d, "/packages"));
    set_str(&o->packages, yaml_str(d, "/registry/dir"));
    set_str(&o->state_dir, yaml_str(d, "/state_dir"));
    set_str(&o->log_level, yaml_str(d, "/log/level"));
    set_str(&o->log_format, yaml_str(d, "/log/format"));
    set_str(&o->isolation, yaml_str(d, "/isolation"));
    if ((v = yaml_str(d, "/http/threads")))
        o->http_threads = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/log/access")))
        o->access_log = strcmp(v, "false") != 0 && strcmp(v, "off") != 0;
    if ((v = yaml_str(d, "/workers/min")))
        o->min_workers = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/workers/max")))
        o->max_workers = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/limits/timeout_ms")))
        o->timeout_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/limits/max_input_kb")))
        o->max_input_kb = strtoul(v, NULL, 10);
    if ((v = yaml_str(d, "/limits/concurrency")))
        o->concurrency = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/limits/queue")))
        o->max_queue = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/limits/worker_cpu_seconds")))
        o->cpu_seconds = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/reload/rollback/requests")))
        o->rollback_after = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/reload/rollback/error_rate_percent")))
        o->rollback_pct = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/reload/drain_ms")))
        o->reload_drain_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/limits/memory_mb")))
        o->memory_mb = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/shutdown/grace_ms")))
        o->grace_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/shutdown/drain_ms")))
        o->drain_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/trust/require_signatures")))
        o->require_signatures = parse_bool(v);
    struct fy_node *keys = fy_node_by_path(fy_document_root(d), "/trust/keys", FY_NT, 0);
    if (keys && fy_node_is_sequence(keys)) {
        void *it = NULL;
        struct fy_node *n;
        int idx = 0;
        while ((n = fy_node_sequence_iterate(keys, &it)) != NULL) {
            if (fy_node_is_scalar(n)) {
                add_key(o, fy_node_get_scalar0(n), NULL);
            } else if (fy_node_is_mapping(n)) {
                struct fy_node *k = fy_node_mapping_lookup_by_string(n, "key", FY_NT);
                if (k == NULL)
                    k = fy_node_mapping_lookup_by_string(n, "file", FY_NT);
                if (k == NULL || !fy_node_is_scalar(k)) {
                    fprintf(stderr,
                            "par: %s: trust.keys[%d]: needs \"key\" (a minisign "
                            "public key) or \"file\" (a .pub file)\n",
                            path, idx);
                    fy_document_destroy(d);
                    return -1;
                }
                char **pins = NULL;
                size_t np = 0;
                struct fy_node *pk = fy_node_mapping_lookup_by_string(n, "packages", FY_NT);
                if (pk && fy_node_is_sequence(pk)) {
                    void *it2 = NULL;
                    struct fy_node *pn;
                    while ((pn = fy_node_sequence_iterate(pk, &it2)) != NULL) {
                        if (!fy_node_is_scalar(pn))
                            continue;
                        pins = realloc(pins, (np + 2) * sizeof(char *));
                        pins[np++] = strdup(fy_node_get_scalar0(pn));
                        pins[np] = NULL;
                    }
                } else if (pk && fy_node_is_scalar(pk)) {
                    pins = calloc(2, sizeof(char *));
                    pins[0] = strdup(fy_node_get_scalar0(pk));
                }
                add_key(o, fy_node_get_scalar0(k), pins);
            }
            idx++;
        }
    }
    set_str(&o->index_url, yaml_str(d, "/registry/index_url"));
    set_str(&o->ca_file, yaml_str(d, "/registry/ca_file"));
    set_str(&o->s3_region, yaml_str(d, "/registry/s3/region"));
    set_str(&o->s3_endpoint, yaml_str(d, "/registry/s3/endpoint"));
    if ((v = yaml_str(d, "/registry/s3/path_style")))
        o->s3_path_style = parse_bool(v);
    if ((v = yaml_str(d, "/registry/allow_http")))
        o->allow_http = parse_bool(v);
    if ((v = yaml_str(d, "/registry/poll_interval_ms")))
        o->poll_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/registry/timeout_ms")))
        o->fetch_timeout_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/registry/connect_timeout_ms")))
        o->connect_timeout_ms = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/registry/retries"))) {
        o->fetch_retries = (unsigned)atoi(v);
        o->fetch_retries_set = 1;
    }
    set_str(&o->sandbox_user, yaml_str(d, "/sandbox/user"));
    set_str(&o->sandbox_group, yaml_str(d, "/sandbox/group"));
    if ((v = yaml_str(d, "/sandbox/max_files")))
        o->sandbox_max_files = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/sandbox/max_processes")))
        o->sandbox_max_processes = (unsigned)atoi(v);
    if ((v = yaml_str(d, "/registry/max_download_mb")))
        o->max_download_mb = strtoul(v, NULL, 10);
    if ((v = yaml_str(d, "/cache/max_mb")))
        o->cache_max_mb = strtoul(v, NULL, 10);
    set_str(&o->python, yaml_str(d, "/python/interpreter"));
    set_str(&o->wheelhouse, yaml_str(d, "/python/wheelhouse"));
    if ((v = yaml_str(d, "/python/pip_timeout_ms")))
        o->pip_timeout_ms = (unsigned)atoi(v);
    struct fy_node *ea = fy_node_by_path(fy_document_root(d), "/env/allow", FY_NT, 0);
    if (ea && fy_node_is_sequence(ea)) {
        void *it = NULL;
        struct fy_node *n;
        while ((n = fy_node_sequence_iterate(ea, &it)) != NULL)
            if (fy_node_is_scalar(n))
                add_env_allow(o, fy_node_get_scalar0(n));
    }
    if (load_metering(d, path, o) != 0) {
        fy_document_destroy(d);
        return -1;
    }
    par_buf_t aerr;
    par_buf_init(&aerr, 0);
    if (par_auth_config_load_yaml(&o->auth, d, path, &aerr) != PAR_OK) {
        fprintf(stderr, "par: %.*s", (int)aerr.len, aerr.data ? aerr.data : "");
        par_buf_free(&aerr);
        fy_document_destroy(d);
        return -1;
    }
    par_buf_free(&aerr);
    struct fy_node *tr = fy_node_by_path(fy_document_root(d), "/trusted", FY_NT, 0);
    if (tr && fy_node_is_sequence(tr)) {
        void *it = NULL;
        struct fy_node *n;
        while ((n = fy_node_sequence_iterate(tr, &it)) != NULL) {
            if (!fy_node_is_scalar(n))
                continue;
            o->trusted = realloc(o->trusted, (o->ntrusted + 2) * sizeof(char *));
            o->trusted[o->ntrusted++] = strdup(fy_node_get_scalar0(n));
            o->trusted[o->ntrusted] = NULL;
        }
    }
    fy_document_destroy(d);
    return 0;
}

static void load_env(serve_opts_t *o)
{
    set_str(&o->listen, getenv("PAR_LISTEN"));
    set_str(&o->packages, getenv("PAR_PACKAGES"));
    set_str(&o->state_dir, getenv("PAR_STATE_DIR"));
    set_str(&o->log_level, getenv("PAR_LOG_LEVEL"));
    set_str(&o->log_format, getenv("PAR_LOG_FORMAT"));
    const char *v = getenv("PAR_HTTP_THREADS");
    if (v)
        o->http_threads = (unsigned)atoi(v);
    if ((v = getenv("PAR_RELOAD_DRAIN_MS")))
        o->reload_drain_ms = (unsigned)atoi(v);
    if ((v = getenv("PAR_MAX_QUEUE")))
        o->max_queue = (unsigned)atoi(v);
    if ((v = getenv("PAR_DEFAULT_CONCURRENCY")))
        o->concurrency = (unsigned)atoi(v);
    if ((v = getenv("PAR_SHUTDOWN_GRACE_MS")))
        o->grace_ms = (unsigned)atoi(v);
    if ((v = getenv("PAR_SHUTDOWN_DRAIN_MS")))
        o->drain_ms = (unsigned)atoi(v);
    if ((v = getenv("PAR_REQUIRE_SIGNATURES")))
        o->require_signatures = parse_bool(v);
    if ((v = getenv("PAR_TRUSTED_KEYS"))) { /* whitespace- or comma-separated keys or files */
        char *copy = strdup(v), *save = NULL;
        for (char *t = strtok_r(copy, " ,\t\n", &save); t; t = strtok_r(NULL, " ,\t\n", &save))
            add_key(o, t, NULL);
        free(copy);
    }
    set_str(&o->index_url, getenv("PAR_REGISTRY_INDEX_URL"));
    set_str(&o->ca_file, getenv("PAR_REGISTRY_CA_FILE"));
    set_str(&o->s3_region, getenv("PAR_S3_REGION"));
    set_str(&o->s3_endpoint, getenv("PAR_S3_ENDPOINT"));
    set_str(&o->sandbox_user, getenv("PAR_SANDBOX_USER"));
    set_str(&o->sandbox_group, getenv("PAR_SANDBOX_GROUP"));
    set_str(&o->python, getenv("PAR_PYTHON"));
    set_str(&o->wheelhouse, getenv("PAR_WHEELHOUSE"));
    if ((v = getenv("PAR_ENV_ALLOW"))) { /* whitespace- or comma-separated names */
        char *copy = strdup(v), *save = NULL;
        for (char *t = strtok_r(copy, " ,\t\n", &save); t; t = strtok_r(NULL, " ,\t\n", &save))
            add_env_allow(o, t);
        free(copy);
    }
}

/* ---- watching the packages folder -------------------------------------------------- */

typedef struct watch {
    par_runtime_t *rt;
    char *dir;
    int fd;
    int stop_fd; /* eventfd: the watcher leaves between two deploys, never inside one */
    pthread_t thread;
} watch_t;

static int is_apkg(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".apkg") == 0 && name[0] != '.';
}

/* "x.apkg.minisig" or "x.apkg.sha256" → "x.apkg" in `apkg`. */
static int is_side_file(const char *name, char apkg[NAME_MAX + 1])
{
    static const char *const sfx[] = {".minisig", ".sha256"};
    size_t n = strlen(name);
    for (size_t i = 0; i < 2; i++) {
        size_t l = strlen(sfx[i]);
        if (n > l && strcmp(name + n - l, sfx[i]) == 0) {
            snprintf(apkg, NAME_MAX + 1, "%.*s", (int)(n - l), name);
            return is_apkg(apkg);
        }
    }
    return 0;
}

/* Converges on one file of the folder: deploy it when it is there, remove what
 * was deployed from it when it is gone. */
static void converge(par_runtime_t *rt, const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, F_OK) == 0) {
        par_buf_t err;
        par_buf_init(&err, 0);
        par_deploy_req_t req = {.path = path, .origin = "dir"};
        par__deploy(rt, &req, &err, NULL); /* logged and listed either way */
        par_buf_free(&err);
        return;
    }
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(rt, &pk, &n) != PAR_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        if (pk[i]->source && strcmp(pk[i]->source, path) == 0 &&
            atomic_load(&pk[i]->state) == PAR_PKG_ACTIVE) {
            par_log_msg(PAR_LOG_INFO, "%s was removed from the packages folder: unloading %s@%s",
                        path, pk[i]->name, pk[i]->version);
            par__runtime_remove(rt, pk[i]->name, pk[i]->version);
        }
        par__pkgver_unref(pk[i]);
    }
    free(pk);
}

static void *watch_main(void *arg)
{
    watch_t *w = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        struct pollfd pfd[2] = {{w->fd, POLLIN, 0}, {w->stop_fd, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        ssize_t r = read(w->fd, buf, sizeof(buf));
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        /* collect the names first: a publisher often writes then renames */
        char names[64][NAME_MAX + 1];
        size_t count = 0;
        for (char *p = buf; p < buf + r;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            /* a signature or digest file arriving after its package redeploys it */
            char name[NAME_MAX + 1] = "";
            if (ev->len && is_apkg(ev->name))
                snprintf(name, sizeof(name), "%s", ev->name);
            else if (ev->len && is_side_file(ev->name, name) &&
                     !(ev->mask & (IN_DELETE | IN_MOVED_FROM)))
                ;
            else
                name[0] = '\0';
            if (name[0]) {
                size_t k;
                for (k = 0; k < count; k++)
                    if (strcmp(names[k], name) == 0)
                        break;
                if (k == count && count < 64)
                    snprintf(names[count++], sizeof(names[0]), "%s", name);
            }
            p += sizeof(*ev) + ev->len;
        }
        if (count)
            usleep(50000); /* let a burst of writes settle */
        for (size_t k = 0; k < count; k++)
            converge(w->rt, w->dir, names[k]);
    }
    return NULL;
}

static watch_t *watch_start(par_runtime_t *rt, const char *dir)
{
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 ||
        inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0) {
        par_log_msg(PAR_LOG_WARN, "cannot watch %s for changes: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    watch_t *w = calloc(1, sizeof(*w));
    w->rt = rt;
    w->dir = strdup(dir);
    w->fd = fd;
    w->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (w->stop_fd < 0 || pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        close(fd);
        if (w->stop_fd >= 0)
            close(w->stop_fd);
        free(w->dir);
        free(w);
        return NULL;
    }
    return w;
}

static void watch_stop(watch_t *w)
{
    if (w == NULL)
        return;
    uint64_t one = 1;
    if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
        par_log_msg(PAR_LOG_WARN, "cannot stop the folder watcher: %s", strerror(errno));
    pthread_join(w->thread, NULL);
    close(w->stop_fd);
    close(w->fd);
    free(w->dir);
    free(w);
}

/* ---- serve ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void deploy_dir(par_runtime_t *rt, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        par_log_msg(PAR_LOG_WARN, "packages directory %s: %s; serving no packages", dir,
                    strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".apkg") == 0) {
            names = realloc(names, (n + 1) * sizeof(char *));
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        par_buf_t err;
        par_buf_init(&err, 0);
        par_deploy_req_t req = {.path = path, .origin = "dir"};
        par__deploy(rt, &req, &err, NULL); /* failures are logged and listed */
        par_buf_free(&err);
        free(names[i]);
    }
    free(names);
}

/* Waits up to `ms` for a second signal; a second SIGTERM or SIGINT ends the
 * process at once. */
static void wait_or_die(const sigset_t *set, long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
        par_log_msg(PAR_LOG_WARN, "second signal %d: exiting without draining", sig);
        par_log_shutdown();
        _exit(1);
    }
}

/* SIGTERM: readiness fails at once; after the grace period (for load
 * balancers to notice) the listeners close; in-flight requests finish up to
 * the drain deadline; then workers stop and logs flush. */
static void graceful_shutdown(par_runtime_t *rt, par_http_t *http, const sigset_t *set, int sig,
                              unsigned grace_ms, unsigned drain_ms)
{
    atomic_store(&rt->shutting_down, 1);
    par_log_msg(PAR_LOG_INFO,
                "signal %d: shutting down (readiness now fails; grace %u ms, "
                "drain deadline %u ms)",
                sig, grace_ms, drain_ms);
    int64_t until = par__now_ms() + grace_ms;
    while (par__now_ms() < until)
        wait_or_die(set, until - par__now_ms());
    par_http_stop_accepting(http);
    until = par__now_ms() + drain_ms;
    while ((atomic_load(&rt->inflight) > 0 || par_http_pending(http) > 0) && par__now_ms() < until)
        wait_or_die(set, 10);
    long left = atomic_load(&rt->inflight);
    if (left > 0)
        par_log_msg(PAR_LOG_WARN, "drain deadline passed with %ld request(s) in flight", left);
    else
        par_log_msg(PAR_LOG_INFO, "drained: no request in flight");
    atomic_store(&rt->draining, 1);
    usleep(20000); /* let the loops write the last responses */
}

/* Builds the options from defaults, the configuration file, PAR_* variables
 * and flags, in that order of precedence. Also used again on SIGHUP. */
static int parse_serve(int argc, char **argv, serve_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    if (par_auth_config_init(&o->auth) != PAR_OK)
        return 2;
    o->access_log = 1;
    o->drain_ms = 30000;
    set_str(&o->listen, "127.0.0.1:8080");
    set_str(&o->packages, "./packages");
    set_str(&o->state_dir, "./var");
    set_str(&o->log_level, "info");
    set_str(&o->log_format, "json");
    o->require_signatures = -1;
    const char *config = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[i + 1];
    if (config && load_config_file(config, o) != 0)
        return 2;
    load_env(o);
    par_buf_t aerr;
    par_buf_init(&aerr, 0);
    if (par_auth_config_load_env(&o->auth, &aerr) != PAR_OK) {
        fprintf(stderr, "par serve: %.*s", (int)aerr.len, aerr.data ? aerr.data : "");
        par_buf_free(&aerr);
        return 2;
    }
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "par serve: %s needs a value (see par serve --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--config") == 0)
            ;
        else if (strcmp(a, "--listen") == 0)
            set_str(&o->listen, v);
        else if (strcmp(a, "--packages") == 0)
            set_str(&o->packages, v);
        else if (strcmp(a, "--state-dir") == 0)
            set_str(&o->state_dir, v);
        else if (strcmp(a, "--log-level") == 0)
            set_str(&o->log_level, v);
        else if (strcmp(a, "--log-format") == 0)
            set_str(&o->log_format, v);
        else if (strcmp(a, "--http-threads") == 0)
            o->http_threads = (unsigned)atoi(v);
        else if (strcmp(a, "--shutdown-grace-ms") == 0)
            o->grace_ms = (unsigned)atoi(v);
        else if (strcmp(a, "--shutdown-drain-ms") == 0)
            o->drain_ms = (unsigned)atoi(v);
        else if (strcmp(a, "--require-signatures") == 0)
            o->require_signatures = parse_bool(v);
        else if (strcmp(a, "--trusted-key") == 0)
            add_key(o, v, NULL);
        else if (strcmp(a, "--index-url") == 0)
            set_str(&o->index_url, v);
        else if (strcmp(a, "--ca-file") == 0)
            set_str(&o->ca_file, v);
        else if (strcmp(a, "--sandbox-user") == 0)
            set_str(&o->sandbox_user, v);
        else if (strcmp(a, "--sandbox-group") == 0)
            set_str(&o->sandbox_group, v);
        else if (strcmp(a, "--auth-mode") == 0 || strcmp(a, "--auth") == 0) {
            const char *eq = strcmp(a, "--auth") == 0 ? strchr(v, '=') : NULL;
            char key[64];
            snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - v) : 4, eq ? v : "mode");
            if ((strcmp(a, "--auth") == 0 && eq == NULL) ||
                par_auth_config_set(&o->auth, key, eq ? eq + 1 : v, &aerr) != PAR_OK) {
                fprintf(stderr, "par serve: %s %s: %.*s\n", a, v, (int)aerr.len,
                        aerr.data ? aerr.data : "want KEY=VALUE");
                par_buf_free(&aerr);
                return 2;
            }
        } else if (strcmp(a, "--trusted") == 0) {
            o->trusted = realloc(o->trusted, (o->ntrusted + 2) * sizeof(char *));
            o->trusted[o->ntrusted++] = strdup(v);
            o->trusted[o->ntrusted] = NULL;
        } else {
            fprintf(stderr, "par serve: unknown option '%s' (see par serve --help)\n", a);
            return 2;
        }
    }
    /* auth is off only when configured so, or in the embedded local default */
    if (par_auth_config_finish(&o->auth, config == NULL, &aerr) != PAR_OK) {
        fprintf(stderr, "par serve: %s%s%.*s", config ? config : "", config ? ": " : "",
                (int)aerr.len, aerr.data ? aerr.data : "");
        par_buf_free(&aerr);
        return 2;
    }
    par_buf_free(&aerr);
    int level = par_log_parse_level(o->log_level);
    if (level < 0) {
        fprintf(stderr, "par serve: unknown log level '%s' (debug|info|warn|error)\n",
                o->log_level);
        return 2;
    }
    return 0;
}

static void free_serve(serve_opts_t *o)
{
    free(o->meter.path);
    par_stripe_config_free(&o->meter.stripe);
    free(o->listen), free(o->packages), free(o->state_dir), free(o->log_level);
    free(o->log_format), free(o->isolation);
    for (size_t i = 0; i < o->ntrusted; i++)
        free(o->trusted[i]);
    free(o->trusted);
    for (size_t i = 0; i < o->nkeys; i++) {
        free(o->key_strs[i]);
        for (size_t j = 0; o->key_pins[i] && o->key_pins[i][j]; j++)
            free(o->key_pins[i][j]);
        free(o->key_pins[i]);
    }
    free(o->keys), free(o->key_strs), free(o->key_pins);
    free(o->ca_file), free(o->s3_region), free(o->s3_endpoint), free(o->index_url);
    free(o->sandbox_user), free(o->sandbox_group);
    free(o->python), free(o->wheelhouse);
    for (size_t i = 0; i < o->nenv_allow; i++)
        free(o->env_allow[i]);
    free(o->env_allow);
    par_auth_config_free(&o->auth);
}

static int differs(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") != 0;
}

/* SIGHUP: reads the configuration again and applies what can change live
 * (logging, access log, defaults for later deploys); names what needs a restart. */
static void reload_config(int argc, char **argv, const serve_opts_t *cur, par_runtime_t *rt,
                          par_http_t *http)
{
    serve_opts_t n;
    if (parse_serve(argc, argv, &n) != 0) {
        free_serve(&n);
        par_log_msg(PAR_LOG_ERROR, "SIGHUP: the configuration has errors; nothing changed");
        return;
    }
    par_log_init(par_log_parse_level(n.log_level), strcmp(n.log_format, "text") != 0);
    par_http_set_access_log(http, n.access_log);
    pthread_mutex_lock(&rt->deploy_lock);
    if (n.timeout_ms)
        rt->cfg.default_timeout_ms = n.timeout_ms;
    if (n.max_input_kb)
        rt->cfg.max_input_bytes = n.max_input_kb * 1024;
    rt->cfg.default_concurrency = n.concurrency;
    if (n.max_queue)
        rt->cfg.max_queue = n.max_queue;
    rt->cfg.default_memory_mb = n.memory_mb;
    rt->cfg.worker_cpu_seconds = n.cpu_seconds;
    if (n.reload_drain_ms)
        rt->cfg.drain_ms = n.reload_drain_ms;
    pthread_mutex_unlock(&rt->deploy_lock);
    const char *restart = differs(n.listen, cur->listen)         ? "listen"
                          : differs(n.packages, cur->packages)   ? "packages"
                          : differs(n.state_dir, cur->state_dir) ? "state_dir"
                          : n.http_threads != cur->http_threads  ? "http.threads"
                                                                 : NULL;
    par_log_msg(PAR_LOG_INFO,
                "SIGHUP: configuration reloaded (log level %s, access log %s; limits apply to "
                "later deploys)%s%s%s",
                n.log_level, n.access_log ? "on" : "off", restart ? "; '" : "",
                restart ? restart : "", restart ? "' changes need a restart" : "");
    free_serve(&n);
}

int par_cli_serve(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_serve(stdout);
        return 0;
    }
    serve_opts_t o;
    int prc = parse_serve(argc, argv, &o);
    if (prc != 0) {
        free_serve(&o);
        return prc;
    }
    int level = par_log_parse_level(o.log_level);
    if (level < 0) {
        fprintf(stderr, "par serve: unknown log level '%s' (debug|info|warn|error)\n", o.log_level);
        return 2;
    }
    /* signals are taken synchronously by this thread only */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    par_log_init(level, strcmp(o.log_format, "text") != 0);

    par_config_t cfg;
    par_config_init(&cfg);
    cfg.state_dir = o.state_dir;
    cfg.trusted = (const char *const *)o.trusted;
    if (o.isolation && strcmp(o.isolation, "in-process") == 0)
        cfg.isolation = PAR_ISOLATION_IN_PROCESS;
    if (o.min_workers)
        cfg.min_workers = o.min_workers;
    if (o.max_workers)
        cfg.max_workers = o.max_workers;
    if (o.timeout_ms)
        cfg.default_timeout_ms = o.timeout_ms;
    if (o.max_input_kb)
        cfg.max_input_bytes = o.max_input_kb * 1024;
    cfg.default_concurrency = o.concurrency;
    cfg.default_memory_mb = o.memory_mb;
    cfg.drain_ms = o.reload_drain_ms;
    cfg.worker_cpu_seconds = o.cpu_seconds;
    cfg.rollback_after = o.rollback_after;
    cfg.rollback_error_pct = o.rollback_pct ? o.rollback_pct : 50;
    if (o.max_queue)
        cfg.max_queue = o.max_queue;
    int has_config = 0;
    for (int i = 1; i < argc; i++)
        has_config |= strcmp(argv[i], "--config") == 0;
    /* signatures: required with a configuration file, optional in the embedded local default */
    int require = o.require_signatures >= 0 ? o.require_signatures : has_config;
    cfg.allow_unsigned = !require;
    cfg.trusted_keys = o.keys;
    cfg.trusted_key_count = o.nkeys;
    cfg.ca_file = o.ca_file;
    cfg.s3_region = o.s3_region;
    cfg.s3_endpoint = o.s3_endpoint;
    cfg.s3_path_style = o.s3_path_style;
    cfg.allow_http = o.allow_http;
    cfg.index_url = o.index_url;
    cfg.index_poll_ms = o.poll_ms;
    cfg.fetch_timeout_ms = o.fetch_timeout_ms;
    cfg.fetch_connect_timeout_ms = o.connect_timeout_ms;
    cfg.fetch_retries = o.fetch_retries_set ? o.fetch_retries : 3;
    cfg.max_download_bytes = (uint64_t)o.max_download_mb << 20;
    cfg.sandbox_user = o.sandbox_user;
    cfg.sandbox_group = o.sandbox_group;
    cfg.sandbox_max_files = o.sandbox_max_files;
    cfg.sandbox_max_processes = o.sandbox_max_processes;
    cfg.cache_max_bytes = (uint64_t)o.cache_max_mb << 20;
    cfg.python = o.python;
    cfg.wheelhouse = o.wheelhouse;
    cfg.pip_timeout_ms = o.pip_timeout_ms;
    cfg.env_allow = (const char *const *)o.env_allow;
    par_runtime_t *rt;
    int rc = par_runtime_new(&cfg, &rt);
    if (rc != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "cannot start the runtime: %s", par_strerror(rc));
        par_log_shutdown();
        return 1;
    }
    if (o.metering) {
        if (o.meter.path == NULL) {
            char *p = malloc(strlen(o.state_dir) + 16);
            sprintf(p, "%s/usage.db", o.state_dir);
            o.meter.path = p;
        }
        char *mpath = strdup(o.meter.path);
        int sync_full = o.meter.sync_full;
        par_buf_t merr;
        par_buf_init(&merr, 0);
        if (par_meter_new(&o.meter, &rt->meter, &merr) != PAR_OK) {
            par_log_msg(PAR_LOG_ERROR, "cannot start usage metering: %.*s", (int)merr.len,
                        merr.data ? merr.data : "");
            par_buf_free(&merr);
            free(mpath);
            par_runtime_destroy(rt);
            par_log_shutdown();
            return 1;
        }
        par_buf_free(&merr);
        par_logline_t ml;
        if (par_log_begin(&ml, PAR_LOG_INFO, "usage metering on")) {
            par_log_str(&ml, "path", mpath);
            par_log_str(&ml, "sync", sync_full ? "full" : "normal");
            par_log_end(&ml);
        }
        free(mpath);
    }
    atomic_store(&rt->booting, 1);
    int auth_mode = o.auth.mode;
    par_buf_t aerr;
    par_buf_init(&aerr, 0);
    if (par_auth_new(&o.auth, &g_auth, &aerr) != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "cannot start authentication: %.*s", (int)aerr.len,
                    aerr.data ? aerr.data : "");
        par_buf_free(&aerr);
        par_runtime_destroy(rt);
        par_log_shutdown();
        return 1;
    }
    par_buf_free(&aerr);
    par_http_opts_t ho = {
        .listen = o.listen, .threads = o.http_threads, .access_log = o.access_log, .auth = g_auth};
    par_http_t *http;
    if (par_http_start(rt, &ho, &g_http) != PAR_OK) {
        par_auth_destroy(g_auth);
        par_runtime_destroy(rt);
        par_log_shutdown();
        return 1;
    }
    http = g_http;
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "listening")) {
        char url[160];
        snprintf(url, sizeof(url), "http://%s", par_http_address(http));
        par_log_str(&l, "url", url);
        par_log_str(&l, "version", par_version());
        par_log_int(&l, "pid", getpid());
        par_log_end(&l);
    }
    if (!has_config)
        par_log_msg(PAR_LOG_WARN, "running the embedded local default (no --config): "
                                  "authentication is off");
    if (!require)
        par_log_msg(PAR_LOG_WARN, "UNSIGNED PACKAGES ARE ACCEPTED: signatures are checked when "
                                  "present, but a package without one deploys with a warning "
                                  "(set trust.require_signatures: true)");
    if (auth_mode == PAR_AUTH_OFF && (has_config || getenv("PAR_AUTH_MODE")))
        par_log_msg(PAR_LOG_WARN, "authentication is off (auth.mode: off): every caller may "
                                  "invoke every agent and use the management API");
    if (auth_mode != PAR_AUTH_OFF) {
        json_t *d = par_auth_describe(g_auth);
        char *s = json_dumps(d, JSON_COMPACT);
        par_log_msg(PAR_LOG_INFO, "authentication: %s", s ? s : "");
        free(s);
        json_decref(d);
    }
    watch_t *watch = watch_start(rt, o.packages);
    int restored = par__runtime_recover(rt);
    if (restored)
        par_log_msg(PAR_LOG_INFO, "restored %d package(s) from the cache", restored);
    deploy_dir(rt, o.packages);
    atomic_store(&rt->booting, 0);
    par_metrics_cold_start((double)(par__now_ms() - rt->started_ms) / 1e3);
    par_agent_info_t *agents;
    size_t na;
    if (par_runtime_agents(rt, 0, &agents, &na) == PAR_OK) {
        for (size_t i = 0; i < na; i++) {
            if (par_log_begin(&l, PAR_LOG_INFO, "agent mounted")) {
                char route[300];
                snprintf(route, sizeof(route), "POST /agents/%s/invoke", agents[i].id);
                par_log_str(&l, "agent", agents[i].id);
                par_log_str(&l, "package", agents[i].package);
                par_log_str(&l, "version", agents[i].version);
                par_log_str(&l, "route", route);
                par_log_end(&l);
            }
        }
        par_log_msg(PAR_LOG_INFO, "ready: %zu agent(s) mounted", na);
        par_agents_free(agents, na);
    }

    int sig = 0;
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload_config(argc, argv, &o, rt, http);
            continue;
        }
        break;
    }
    graceful_shutdown(rt, http, &set, sig, o.grace_ms, o.drain_ms);
    watch_stop(watch);
    par_http_stop(http);
    par_auth_destroy(g_auth);
    g_auth = NULL;
    par_runtime_destroy(rt);
    par_log_msg(PAR_LOG_INFO, "stopped");
    par_log_shutdown();
    free_serve(&o);
    return 0;
}
