/*
 * cli/serve.c — `par serve`: starts the runtime, the listener and the
 * packages folder watch from the configuration (src/config/: one table for
 * the file, PAR_* variables, flags and --help), handles signals (SIGHUP
 * reload of the keys the table marks reloadable, graceful shutdown), tells
 * a service manager what it is doing (READY=1, RELOADING=1, STOPPING=1 and
 * the watchdog's WATCHDOG=1 over util/sdnotify.h; docs/deployment.md), and
 * `par config check|show|docs`.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/par.h>

#include "auth/auth.h"
#include "cli/cli.h"
#include "config/apply.h"
#include "config/config.h"
#include "http/listener.h"
#include "http/server.h"
#include "http/tls.h"
#include "obs/log.h"
#include "metering/meter.h"
#include "metering/stripe.h"
#include "obs/metrics.h"
#include "pkg/archive.h"
#include "pkg/manifest.h"
#include "pkg/trust.h"
#include "plugin/plugin.h"
#include "runtime/converge.h"
#include "runtime/fleet.h"
#include "runtime/runtime.h"
#include "runtime/runs.h"
#include "util/sdnotify.h"
#include "util/suggest.h"

/* The server lives as long as the process: kept here so that it stays
 * reachable (and so is not reported by leak checkers) after main returns. */
static par_http_t *g_http;
static par_auth_t *g_auth;
static par_plugins_t *g_plugins;

/* ---- the service manager (systemd Type=notify) ------------------------------------ */

/* The watchdog: WATCHDOG=1 every half of $WATCHDOG_USEC, sent by the main
 * thread only while every HTTP event loop has turned within that half (an idle
 * loop turns every 50 ms; the loop that runs the workers' I/O every 10 ms). A
 * loop stuck in a callback therefore stops the pings and the manager restarts
 * the service; a separate pinging thread would keep a hung runtime alive. */
static struct {
    int64_t every_ms; /* 0: no watchdog */
    int64_t next_ms;
    int stalled; /* the stall was logged */
    int warned;  /* a failed notification was logged */
} g_sd;

/* Sends one notification; the first failure is logged, none stops serving. */
static void tell_manager(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tell_manager(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int rc = par_sd_notify(msg);
    if (rc < 0 && !g_sd.warned) {
        g_sd.warned = 1;
        par_log_msg(PAR_LOG_WARN, "cannot notify the service manager at NOTIFY_SOCKET=%s: %s",
                    getenv("NOTIFY_SOCKET"), strerror(-rc));
    }
}

static void watchdog_init(void)
{
    uint64_t usec = par_sd_watchdog_usec();
    g_sd.every_ms = (int64_t)(usec / 2000);
    if (usec && g_sd.every_ms < 1)
        g_sd.every_ms = 1;
    g_sd.next_ms = par__now_ms();
    if (usec)
        par_log_msg(PAR_LOG_INFO, "service manager watchdog: %llu ms, pinged every %lld ms",
                    (unsigned long long)(usec / 1000), (long long)g_sd.every_ms);
}

/* Milliseconds until the watchdog is due, at most `cap`; `cap` without one. */
static long watchdog_wait_ms(long cap)
{
    if (g_sd.every_ms == 0)
        return cap;
    int64_t left = g_sd.next_ms - par__now_ms();
    left = left < 0 ? 0 : left;
    return cap >= 0 && cap < left ? cap : (long)left;
}

/* WATCHDOG=1 when due and the event loops are alive; a stall is logged once
 * and checked again every 100 ms. */
static void watchdog_tick(void)
{
    int64_t now = par__now_ms();
    if (g_sd.every_ms == 0 || g_http == NULL || now < g_sd.next_ms)
        return;
    int64_t stalled = par_http_stalled_ms(g_http);
    if (stalled > g_sd.every_ms) {
        if (!g_sd.stalled)
            par_log_msg(PAR_LOG_ERROR,
                        "an HTTP event loop has not turned for %lld ms: the service manager's "
                        "watchdog is no longer fed",
                        (long long)stalled);
        g_sd.stalled = 1;
        g_sd.next_ms = now + 100;
        return;
    }
    if (g_sd.stalled)
        par_log_msg(PAR_LOG_WARN, "the HTTP event loops turn again: watchdog fed");
    g_sd.stalled = 0;
    tell_manager("WATCHDOG=1");
    g_sd.next_ms = now + g_sd.every_ms;
}

/* Loads the configuration from defaults, `--config FILE`, PAR_* variables
 * and flags (config/config.h); on a mistake prints every one and returns 2. */
static int load_conf(int argc, char **argv, par_conf_t *c, const char *who)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_conf_build(c, argc, argv, &err);
    if (rc != PAR_OK)
        fprintf(stderr, "%.*s", (int)err.len, err.data ? err.data : "");
    if (rc != PAR_OK)
        fprintf(stderr, "%s: the configuration has errors; nothing was started\n", who);
    par_buf_free(&err);
    return rc == PAR_OK ? 0 : 2;
}

/* Waits up to `ms` for a second signal; a second SIGTERM or SIGINT ends the
 * process at once. */
static void wait_or_die(const sigset_t *set, long ms)
{
    ms = watchdog_wait_ms(ms);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    watchdog_tick();
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
    tell_manager("STOPPING=1\nSTATUS=shutting down on signal %d (grace %u ms, drain %u ms)", sig,
                 grace_ms, drain_ms);
    par_log_msg(PAR_LOG_INFO,
                "signal %d: shutting down (readiness now fails; grace %u ms, "
                "drain deadline %u ms)",
                sig, grace_ms, drain_ms);
    int64_t until = par__now_ms() + grace_ms;
    while (par__now_ms() < until)
        wait_or_die(set, until - par__now_ms());
    /* runs had the grace: the ones still in flight end `interrupted`, and
     * their live clients get run.interrupted while the server still serves */
    unsigned runs = par_runs_in_flight(rt->runs);
    if (runs)
        par_log_msg(PAR_LOG_WARN, "shutting down: %u run(s) still in flight end interrupted", runs);
    par_runs_interrupt_all(rt->runs, "the runtime is shutting down");
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

/* SIGHUP for one key that changed: a reloadable key is taken over into
 * `cur`; any other is named in `restart` and keeps its running value. */
static void reload_key(par_conf_t *cur, par_conf_t *n, int id, par_buf_t *restart, par_buf_t *warns)
{
    const par_conf_key_t *k = &par_conf_keys[id];
    if (k->flags & PAR_CF_RELOAD) {
        json_decref(cur->v[id].v);
        cur->v[id] = n->v[id];
        n->v[id].v = NULL;
        return;
    }
    char *was = par_conf_text(cur, (par_conf_id_t)id), *now = par_conf_text(n, (par_conf_id_t)id);
    par_buf_appendf(restart, "%s'%s'", restart->len ? ", " : "", k->path);
    par_buf_appendf(warns,
                    "SIGHUP: `%s` changed (%s -> %s) but needs a restart; keeping %s until then\n",
                    k->path, was ? was : "?", now ? now : "?", was ? was : "?");
    free(was);
    free(now);
}

/* SIGHUP: the listener reads its certificate, key and client CA files again
 * (the paths themselves need a restart); open connections keep theirs. */
static void reload_tls(par_http_t *http)
{
    par_buf_t terr;
    par_buf_init(&terr, 0);
    if (par_http_reload_tls(http, &terr) != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "SIGHUP: the TLS certificate was not reloaded: %.*s",
                    (int)terr.len, terr.data ? terr.data : "");
    else if (par_http_is_tls(http))
        par_log_msg(PAR_LOG_INFO, "SIGHUP: TLS certificate and key reloaded");
    par_buf_free(&terr);
}

/* SIGHUP: reads the configuration again, applies what may change while
 * serving (the table's SIGHUP column) and names what needs a restart. */
static void reload_config(int argc, char **argv, par_conf_t *cur, par_runtime_t *rt,
                          par_http_t *http)
{
    par_conf_t n;
    par_buf_t err, restart, warns;
    par_buf_init(&err, 0);
    par_buf_init(&restart, 0);
    par_buf_init(&warns, 0);
    if (par_conf_build(&n, argc, argv, &err) != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "SIGHUP: the configuration has errors; nothing changed: %.*s",
                    (int)err.len, err.data ? err.data : "");
        goto out;
    }
    for (int i = 0; i < PAR_K_COUNT; i++)
        if (!par_conf_same(cur, &n, (par_conf_id_t)i))
            reload_key(cur, &n, i, &restart, &warns);
    par_log_init(par_log_parse_level(par_conf_str(cur, PAR_K_LOG_LEVEL)),
                 strcmp(par_conf_str(cur, PAR_K_LOG_FORMAT), "text") != 0);
    par_http_set_access_log(http, par_conf_bool(cur, PAR_K_LOG_ACCESS, 1));
    par_http_set_heartbeat(http, (unsigned)par_conf_int(cur, PAR_K_RUNS_HEARTBEAT));
    reload_tls(http);
    par_conf_runtime_t r;
    if (par_conf_to_runtime(cur, &r) == PAR_OK)
        par__runtime_reload_limits(rt, &r.cfg);
    par_conf_runtime_free(&r);
    par_log_msg(PAR_LOG_INFO,
                "SIGHUP: configuration reloaded (log level %s, access log %s; limits apply to "
                "later deploys)%s%.*s%s",
                par_conf_str(cur, PAR_K_LOG_LEVEL),
                par_conf_bool(cur, PAR_K_LOG_ACCESS, 1) ? "on" : "off", restart.len ? "; " : "",
                (int)restart.len, restart.data ? restart.data : "",
                restart.len ? " changes need a restart" : "");
    for (size_t at = 0; at < warns.len;) { /* after the summary: one line per key */
        size_t end = at;
        while (end < warns.len && warns.data[end] != '\n')
            end++;
        par_log_msg(PAR_LOG_WARN, "%.*s", (int)(end - at), warns.data + at);
        at = end + 1;
    }
out:
    par_conf_free(&n);
    par_buf_free(&err);
    par_buf_free(&restart);
    par_buf_free(&warns);
}

/* The runtime, and usage metering when `m` is not NULL (its strings are
 * taken). Returns NULL after logging why. */
static par_runtime_t *start_runtime(const par_conf_t *c, par_meter_config_t *m)
{
    par_conf_runtime_t r;
    par_runtime_t *rt = NULL;
    int rc = par_conf_to_runtime(c, &r);
    if (rc == PAR_OK)
        rc = par_runtime_new(&r.cfg, &rt);
    par_conf_runtime_free(&r);
    if (rc != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "cannot start the runtime: %s", par_strerror(rc));
        if (m)
            par_meter_config_free(m);
        return NULL;
    }
    if (m == NULL)
        return rt;
    par_buf_t err;
    par_buf_init(&err, 0);
    char *mpath = m->path ? strdup(m->path) : NULL;
    if (par_meter_new(m, &rt->meter, &err) != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "cannot start usage metering: %.*s", (int)err.len,
                    err.data ? err.data : "");
        par_runtime_destroy(rt);
        rt = NULL;
    } else {
        par_logline_t ml;
        if (par_log_begin(&ml, PAR_LOG_INFO, "usage metering on")) {
            par_log_str(&ml, "path", mpath);
            par_log_str(&ml, "sync", par_conf_str(c, PAR_K_METERING_SYNC));
            par_log_end(&ml);
        }
    }
    free(mpath);
    par_buf_free(&err);
    return rt;
}

/* The values the table cannot judge alone: the listen address parses, the
 * trusted keys and the TLS files load. Each problem is appended to `err`. */
static int check_loadable(const par_conf_t *c, par_buf_t *err)
{
    int rc = PAR_OK;
    const char *listen = par_conf_str(c, PAR_K_LISTEN);
    struct sockaddr_storage ss;
    socklen_t sl;
    if (listen && par__http_listen_parse(listen, &ss, &sl) != 0) {
        par_buf_appendf(err,
                        "`listen`: '%s' is not IP:PORT (a numeric address such as "
                        "127.0.0.1:8080, [::1]:8080 or :8080, port 0 to 65535)\n",
                        listen);
        rc = PAR_E_INVALID_ARGUMENT;
    }
    const char *idx = par_conf_str(c, PAR_K_REGISTRY_INDEX);
    int http_ok = par_conf_bool(c, PAR_K_REGISTRY_ALLOW_HTTP, 0);
    if (idx && strncmp(idx, "https://", 8) != 0 && strncmp(idx, "s3://", 5) != 0 &&
        !(http_ok && strncmp(idx, "http://", 7) == 0)) { /* else only a warning per poll */
        par_buf_appendf(err, "registry.index_url: '%s' is not an https:// or s3:// URL%s\n", idx,
                        http_ok ? " (nor http://)" : "");
        rc = PAR_E_INVALID_ARGUMENT;
    }
    par_conf_runtime_t r;
    par_trust_t t;
    if (par_conf_to_runtime(c, &r) == PAR_OK &&
        par_trust_init(&t, r.cfg.trusted_keys, r.cfg.trusted_key_count, 0, err) == PAR_OK)
        par_trust_free(&t);
    else
        rc = PAR_E_INVALID_ARGUMENT;
    par_conf_runtime_free(&r);
    par_http_opts_t ho;
    par_conf_to_http(c, &ho);
    par_http_tls_t *tls = NULL;
    char why[300];
    if (par_http_cors_check(&ho, why, sizeof(why)) != 0) {
        par_buf_appendf(err, "%s\n", why);
        rc = PAR_E_INVALID_ARGUMENT;
    }
    if (ho.tls_client_ca && !ho.tls_cert) { /* else plain HTTP, and no client is checked */
        par_buf_appendf(err, "tls.client_ca needs tls.cert and tls.key: client certificates are "
                             "asked for only over TLS\n");
        rc = PAR_E_INVALID_ARGUMENT;
    }
    if ((ho.tls_cert || ho.tls_key) && par__http_tls_new(ho.tls_cert, ho.tls_key, ho.tls_client_ca,
                                                         ho.http2, &tls, err) != PAR_OK) {
        par_buf_appendf(err, "\n");
        rc = PAR_E_INVALID_ARGUMENT;
    }
    if (tls)
        par__http_tls_free(tls);
    return rc;
}

/* What `par serve` and `par config check` refuse before starting anything:
 * the checks across keys of auth and metering, and what must load. Prints
 * every problem. */
static int prepare(const par_conf_t *c, par_auth_config_t *ac, par_meter_config_t *m, int *metering)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = check_loadable(c, &err);
    if (par_conf_to_auth(c, ac, &err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    par_fleet_config_t fc;
    int fleet = 0;
    if (par_conf_to_fleet(c, &fc, &fleet, &err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    free((char *)fc.node_id);
    *metering = par_conf_bool(c, PAR_K_METERING, 0);
    memset(m, 0, sizeof(*m));
    if (rc == PAR_OK && *metering)
        rc = par_conf_to_meter(c, m, &err);
    if (par_conf_meter_off_check(c, &err) != PAR_OK)
        rc = PAR_E_INVALID_ARGUMENT;
    for (size_t at = 0; rc != PAR_OK && at < err.len;) { /* each problem on its own line */
        size_t end = at;
        while (end < err.len && err.data[end] != '\n')
            end++;
        if (end > at)
            fprintf(stderr, "%s%s%.*s\n", c->file ? c->file : "", c->file ? ": " : "",
                    (int)(end - at), err.data + at);
        at = end + 1;
    }
    par_buf_free(&err);
    return rc;
}

/* The configuration's plugins (g_plugins): loaded, their loaders and
 * exporters attached to the runtime. Returns PAR_OK or logs why. */
static int start_plugins(const par_conf_t *c, par_runtime_t *rt)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_plugins_load(c->v[PAR_K_PLUGINS].v, rt->state_dir, &g_plugins, &err);
    if (rc == PAR_OK)
        rc = par_plugins_attach(g_plugins, rt, &err);
    if (rc != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "cannot start: %.*s", (int)err.len, err.data ? err.data : "");
    par_buf_free(&err);
    return rc;
}

/* Authentication and the listener (g_auth, g_http). Returns PAR_OK or logs why. */
static int start_http(const par_conf_t *c, par_runtime_t *rt, par_auth_config_t *ac)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    par_auth_registry_t *reg = NULL;
    int rc = par_auth_registry_new(&reg);
    if (rc == PAR_OK)
        rc = par_plugins_register_auth(g_plugins, reg, &err);
    if (rc == PAR_OK)
        rc = par_auth_new_from(reg, ac, &g_auth, &err);
    par_auth_registry_free(reg);
    if (rc != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "cannot start authentication: %.*s", (int)err.len,
                    err.data ? err.data : "");
        par_buf_free(&err);
        return rc;
    }
    par_buf_free(&err);
    par_http_opts_t ho;
    par_conf_to_http(c, &ho);
    ho.auth = g_auth;
    if ((rc = par_http_start(rt, &ho, &g_http)) != PAR_OK) {
        par_auth_destroy(g_auth);
        g_auth = NULL;
    }
    return rc;
}

/* The lines an operator must see at start: where, and what is unsafe. */
static void log_started(const par_conf_t *c)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "listening")) {
        char url[160];
        snprintf(url, sizeof(url), "%s://%s", par_http_is_tls(g_http) ? "https" : "http",
                 par_http_address(g_http));
        par_log_str(&l, "url", url);
        par_log_str(&l, "version", par_version());
        par_log_int(&l, "pid", getpid());
        if (c->file)
            par_log_str(&l, "config", c->file);
        par_log_end(&l);
    }
    if (c->file == NULL)
        par_log_msg(PAR_LOG_WARN, "running the embedded local default (no --config): "
                                  "authentication is off");
    const char *mode = par_conf_str(c, PAR_K_AUTH_MODE);
    if (mode && strcmp(mode, "off") == 0 &&
        (c->file || c->v[PAR_K_AUTH_MODE].src != PAR_CS_DEFAULT))
        par_log_msg(PAR_LOG_WARN, "authentication is off (auth.mode: off): every caller may "
                                  "invoke every agent and use the management API");
    if (mode && strcmp(mode, "off") != 0) {
        json_t *d = par_auth_describe(g_auth);
        char *s = json_dumps(d, JSON_COMPACT);
        par_log_msg(PAR_LOG_INFO, "authentication: %s", s ? s : "");
        free(s);
        json_decref(d);
    }
}

/* Logs the agents mounted; returns how many. */
static size_t log_mounted(par_runtime_t *rt)
{
    par_agent_info_t *agents;
    size_t na;
    if (par_runtime_agents(rt, 0, &agents, &na) != PAR_OK)
        return 0;
    for (size_t i = 0; i < na; i++) {
        par_logline_t l;
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
    return na;
}

/* Serves until SIGTERM or SIGINT (returned): SIGHUP reloads, bracketed by
 * RELOADING=1 and READY=1; the watchdog is fed between signals. */
static int serve_until_stopped(int argc, char **argv, par_conf_t *c, par_runtime_t *rt,
                               const sigset_t *set)
{
    for (;;) {
        long ms = watchdog_wait_ms(-1);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        int sig = -1;
        if (ms < 0 && sigwait(set, &sig) != 0)
            sig = -1;
        else if (ms >= 0)
            sig = sigtimedwait(set, NULL, &ts);
        watchdog_tick();
        if (sig < 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        tell_manager("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
                     (unsigned long long)par_sd_monotonic_usec());
        reload_config(argc, argv, c, rt, g_http);
        tell_manager("READY=1\nSTATUS=ready: configuration reloaded, listening on %s",
                     par_http_address(g_http));
    }
}

/* This node in the fleet when fleet.postgres is set (rt->fleet): its tag
 * before any run can start. PAR_OK or logged. */
static int fleet_new(const par_conf_t *c, par_runtime_t *rt)
{
    par_fleet_config_t fc;
    int on = 0;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_conf_to_fleet(c, &fc, &on, &err);
    if (rc == PAR_OK && on)
        rc = par_fleet_new(&fc, &rt->fleet, &err);
    if (rc != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "cannot join the fleet: %.*s", (int)err.len,
                    err.data ? err.data : par_strerror(rc));
    free((char *)fc.node_id);
    par_buf_free(&err);
    return rc;
}

/* The heartbeat, advertising fleet.advertise_url or the listener's address. */
static int fleet_start(const par_conf_t *c, par_runtime_t *rt)
{
    if (rt->fleet == NULL)
        return PAR_OK;
    const char *adv = par_conf_str(c, PAR_K_FLEET_ADVERTISE);
    char url[200];
    if (adv == NULL) {
        const char *a = par_http_address(g_http);
        snprintf(url, sizeof(url), "%s://%s", par_http_is_tls(g_http) ? "https" : "http", a);
        if (strncmp(a, "0.0.0.0:", 8) == 0 || strncmp(a, "[::]:", 5) == 0)
            par_log_msg(PAR_LOG_WARN,
                        "fleet: advertising %s, which other nodes cannot reach: set "
                        "fleet.advertise_url",
                        url);
    } else {
        size_t n = strlen(adv);
        snprintf(url, sizeof(url), "%.*s", (int)(n && adv[n - 1] == '/' ? n - 1 : n), adv);
    }
    int rc = par_fleet_start(rt->fleet, url);
    if (rc != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "cannot start the fleet heartbeat: %s", par_strerror(rc));
    return rc;
}

/* A node with a registry index is ready once the index's first pass is over
 * (what /runtime/ready waits for too): the "ready" line and the cold start
 * wait for it, so neither claims a node that has not applied its desired
 * state. SIGHUP meanwhile reloads; SIGTERM or SIGINT is returned. */
static int wait_first_index(par_runtime_t *rt, const sigset_t *set, int argc, char **argv,
                            par_conf_t *c)
{
    while (rt->index && !par__index_settled(rt->index)) {
        struct timespec ts = {0, 20 * 1000000L};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGHUP)
            reload_config(argc, argv, c, rt, g_http);
        else if (sig > 0)
            return sig;
    }
    return 0;
}

int par_cli_serve(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        par_conf_usage(stdout);
        return 0;
    }
    par_conf_t c;
    par_auth_config_t ac;
    par_meter_config_t m;
    int metering;
    if (load_conf(argc, argv, &c, "par serve") != 0) {
        par_conf_free(&c);
        return 2;
    }
    if (prepare(&c, &ac, &m, &metering) != PAR_OK) {
        par_auth_config_free(&ac);
        par_meter_config_free(&m);
        par_conf_free(&c);
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
    par_log_init(par_log_parse_level(par_conf_str(&c, PAR_K_LOG_LEVEL)),
                 strcmp(par_conf_str(&c, PAR_K_LOG_FORMAT), "text") != 0);
    par_runtime_t *rt = start_runtime(&c, metering ? &m : NULL);
    if (rt == NULL || fleet_new(&c, rt) != PAR_OK || start_plugins(&c, rt) != PAR_OK ||
        (atomic_store(&rt->booting, 1), start_http(&c, rt, &ac)) != PAR_OK ||
        fleet_start(&c, rt) != PAR_OK) {
        par_plugins_stop(g_plugins);
        if (g_http)
            par_http_stop(g_http), par_auth_destroy(g_auth);
        g_http = NULL;
        g_auth = NULL;
        if (rt)
            par_fleet_free(rt->fleet), rt->fleet = NULL;
        if (rt)
            par_runtime_destroy(rt);
        par_plugins_destroy(g_plugins);
        g_plugins = NULL;
        par_auth_config_free(&ac);
        par_log_shutdown();
        par_conf_free(&c);
        return 1;
    }
    par_auth_config_free(&ac);
    log_started(&c);
    const char *pkgdir = par_conf_str(&c, PAR_K_REGISTRY_DIR) ? par_conf_str(&c, PAR_K_REGISTRY_DIR)
                                                              : par_conf_str(&c, PAR_K_PACKAGES);
    par_folder_watch_t *watch = par__folder_watch_start(rt, pkgdir);
    int restored = par__runtime_recover(rt);
    if (restored)
        par_log_msg(PAR_LOG_INFO, "restored %d package(s) from the cache", restored);
    par__folder_deploy_all(rt, pkgdir);
    atomic_store(&rt->booting, 0);
    int sig = wait_first_index(rt, &set, argc, argv, &c);
    if (sig == 0) {
        par_metrics_cold_start((double)(par__now_ms() - rt->started_ms) / 1e3);
        size_t agents = log_mounted(rt);
        watchdog_init();
        tell_manager("READY=1\nSTATUS=ready: %zu agent(s) mounted, listening on %s\nMAINPID=%ld",
                     agents, par_http_address(g_http), (long)getpid());
        sig = serve_until_stopped(argc, argv, &c, rt, &set);
    }
    graceful_shutdown(rt, g_http, &set, sig, (unsigned)par_conf_int(&c, PAR_K_SHUTDOWN_GRACE),
                      (unsigned)par_conf_int(&c, PAR_K_SHUTDOWN_DRAIN));
    par__folder_watch_stop(watch);
    par_http_stop(g_http);
    par_fleet_free(rt->fleet); /* no forward runs any more: the heartbeat stops */
    rt->fleet = NULL;
    par_auth_destroy(g_auth);
    g_auth = NULL;
    par_plugins_stop(g_plugins); /* exporters deliver what they queued */
    par_runtime_destroy(rt);
    par_plugins_destroy(g_plugins); /* fini, after the last version is gone */
    g_plugins = NULL;
    par_log_msg(PAR_LOG_INFO, "stopped");
    par_log_shutdown();
    par_conf_free(&c);
    return 0;
}

/* ---- par config ---------------------------------------------------------------- */

static void usage_config(FILE *f)
{
    fprintf(f, "usage: par config check [FILE]   validate a configuration without starting\n"
               "       par config show [--config FILE] [flags of par serve]\n"
               "                                 every key's effective value and its source\n"
               "       par config docs           the reference page (docs/configuration.md)\n");
}

/* Everything `par serve` would refuse before listening: the table's checks,
 * then those across keys (auth, the Stripe export). */
static int config_check(int argc, char **argv)
{
    char opt[] = "--config";
    char *args[4] = {argv[0], opt, argc > 1 ? argv[1] : NULL, NULL};
    par_conf_t c;
    if (load_conf(argc > 1 ? 3 : 1, args, &c, "par config check") != 0) {
        par_conf_free(&c);
        return 2;
    }
    par_auth_config_t ac;
    par_meter_config_t m;
    int metering;
    int rc = prepare(&c, &ac, &m, &metering);
    par_auth_config_free(&ac);
    par_meter_config_free(&m);
    if (rc == PAR_OK)
        printf("%s: ok\n", c.file ? c.file : "the embedded local default");
    par_conf_free(&c);
    return rc == PAR_OK ? 0 : 2;
}

int par_cli_config(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_config(stdout);
            return 0;
        }
    if (strcmp(sub, "docs") == 0) {
        par_conf_docs(stdout);
        return 0;
    }
    if (strcmp(sub, "check") == 0 && argc <= 3)
        return config_check(argc - 1, argv + 1);
    if (strcmp(sub, "show") == 0) {
        par_conf_t c;
        int rc = load_conf(argc - 1, argv + 1, &c, "par config show");
        if (rc == 0)
            par_conf_show(&c, stdout);
        par_conf_free(&c);
        return rc;
    }
    int help = strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0;
    if (!help && *sub) {
        static const char *const subs[] = {"check", "show", "docs", NULL};
        const char *near = par_suggest(sub, subs);
        fprintf(stderr, "par config: unknown subcommand '%s'%s%s%s\n", sub,
                near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    }
    usage_config(help ? stdout : stderr);
    return help ? 0 : 2;
}
