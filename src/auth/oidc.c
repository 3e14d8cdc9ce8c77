/*
 * auth/oidc.c — see oidc.h.
 */
#include "auth/oidc.h"

#include "util/curl.h"
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <par/par.h>

#include "auth/cache.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "obs/log.h"
#include "auth/metrics.h"
#include "util/clock.h"

#define DISCOVERY_MAX_BYTES (64 * 1024)
#define MAX_PARKED 1024
#define RETRY_MIN_MS 500

typedef struct oidc {
    par_auth_provider_t prov;
    const par_auth_config_t *cfg;
    par_jwt_policy_t pol;
    par_token_cache_t *cache;
    char *discovery_url;

    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    pthread_t thread;
    int started;
    _Atomic int stop;     /* written under the lock; read without it by a transfer in progress */
    par_jwks_t *keys;     /* NULL until the first successful fetch */
    _Atomic uint64_t gen; /* bumped whenever `keys` changes */
    char *jwks_uri;       /* configured or discovered; NULL: discover first */
    int fetching;         /* the refresh thread is fetching */
    int requested;        /* a refresh was asked for ahead of schedule */
    int64_t next_ms;      /* monotonic: next scheduled refresh */
    int64_t last_kid_refresh_ms;
    int64_t last_ok_ms, last_attempt_ms;
    unsigned failures;
    unsigned long fetches_ok, fetches_failed;
    char last_error[512];
    par_auth_waiter_t *parked;
    size_t nparked;
} oidc_t;

/* ---- fetching ---------------------------------------------------------------------- */

typedef struct get {
    par_buf_t body;
    long max_age; /* -1: the response did not say */
} get_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    get_t *g = arg;
    return par_buf_append(&g->body, p, size * n) == PAR_OK ? size * n : 0;
}

/* Reads `max-age` (and no-store / no-cache, which mean "as short as allowed")
 * from a Cache-Control header line. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    get_t *g = arg;
    size_t len = size * n;
    static const char name[] = "cache-control:";
    if (len <= sizeof(name) - 1 || strncasecmp(p, name, sizeof(name) - 1) != 0)
        return len;
    char line[512];
    size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, p, l);
    line[l] = '\0';
    for (char *s = line; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    char *m = strstr(line, "max-age=");
    if (m && (m == line || m[-1] == ' ' || m[-1] == ',' || m[-1] == ':'))
        g->max_age = strtol(m + 8, NULL, 10);
    if (strstr(line, "no-store") || strstr(line, "no-cache"))
        g->max_age = 0;
    return len;
}

/* Ends a transfer in progress when the provider is being destroyed, so that
 * shutting down never waits for an unreachable issuer's timeout. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&((oidc_t *)arg)->stop) ? 1 : 0;
}

static int http_get(oidc_t *o, const char *url, size_t cap, get_t *g, char *err, size_t errcap)
{
    const par_oidc_config_t *oc = &o->cfg->oidc;
    par_buf_init(&g->body, cap);
    g->max_age = -1;
    char cerr[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    par_curl_opts_t co = {.url = url,
                          .protocols = oc->allow_http ? "http,https" : "https",
                          .max_redirs = 3,
                          .connect_timeout_ms = oc->fetch_timeout_ms,
                          .timeout_ms = oc->fetch_timeout_ms,
                          .max_bytes = cap,
                          .ca_file = oc->ca_file,
                          .on_body = on_body,
                          .body_ud = g,
                          .on_header = on_header,
                          .header_ud = g,
                          .errbuf = cerr,
                          .headers = h};
    CURL *c = h ? par_curl_new(&co) : NULL;
    if (c == NULL) {
        curl_slist_free_all(h);
        par_buf_free(&g->body);
        snprintf(err, errcap, "%s: cannot create an HTTP client", url);
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, o);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(err, errcap, "%s: %s", url,
                 rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED ? "response too large"
                 : cerr[0]                                                ? cerr
                                                                          : curl_easy_strerror(rc));
        par_buf_free(&g->body);
        return -1;
    }
    if (code != 200) {
        snprintf(err, errcap, "%s: HTTP status %ld", url, code);
        par_buf_free(&g->body);
        return -1;
    }
    return 0;
}

static int url_allowed(const oidc_t *o, const char *u)
{
    return strncmp(u, "https://", 8) == 0 ||
           (o->cfg->oidc.allow_http && strncmp(u, "http://", 7) == 0);
}

/* Discovery: returns a malloc'ed jwks_uri or NULL with `err` set. */
static char *discover(oidc_t *o, char *err, size_t errcap)
{
    get_t g;
    if (http_get(o, o->discovery_url, DISCOVERY_MAX_BYTES, &g, err, errcap) != 0)
        return NULL;
    json_t *d = json_loadb(g.body.data ? g.body.data : "", g.body.len, 0, NULL);
    par_buf_free(&g.body);
    const char *iss = json_string_value(json_object_get(d, "issuer"));
    const char *uri = json_string_value(json_object_get(d, "jwks_uri"));
    char *out = NULL;
    if (d == NULL)
        snprintf(err, errcap, "%s: not a JSON document", o->discovery_url);
    else if (iss == NULL || strcmp(iss, o->pol.issuer) != 0)
        /* OpenID Connect Discovery 4.3: a mismatch means someone else's document */
        snprintf(err, errcap, "%s: \"issuer\" is \"%.200s\", not the configured \"%.200s\"",
                 o->discovery_url, iss ? iss : "(none)", o->pol.issuer);
    else if (uri == NULL || !url_allowed(o, uri))
        snprintf(err, errcap, "%s: \"jwks_uri\" is missing or not an https:// URL",
                 o->discovery_url);
    else
        out = strdup(uri);
    json_decref(d);
    return out;
}

/* One refresh: discovery when needed, then the JWKS. Runs on the refresh
 * thread without the lock. */
static int fetch_keys(oidc_t *o, char **jwks_uri, par_jwks_t **keys, long *max_age,
                      par_buf_t *notes, char *err, size_t errcap)
{
    if (*jwks_uri == NULL && (*jwks_uri = discover(o, err, errcap)) == NULL)
        return -1;
    get_t g;
    if (http_get(o, *jwks_uri, PAR_JWKS_MAX_BYTES, &g, err, errcap) != 0)
        return -1;
    int rc = par_jwks_parse(g.body.data ? g.body.data : "", g.body.len, keys, notes);
    par_buf_free(&g.body);
    if (rc != PAR_OK) {
        size_t l = notes->len;
        while (l && notes->data[l - 1] == '\n')
            l--;
        snprintf(err, errcap, "%s: %.*s", *jwks_uri, (int)l, notes->data ? notes->data : "");
        return -1;
    }
    *max_age = g.max_age;
    return 0;
}

static void log_keys(const char *msg, const oidc_t *o, const par_jwks_t *k, int64_t ttl_s)
{
    par_logline_t l;
    if (!par_log_begin(&l, PAR_LOG_INFO, msg))
        return;
    char kids[512];
    size_t n = 0;
    kids[0] = '\0';
    for (size_t i = 0; i < k->count && n < sizeof(kids) - 1; i++)
        n += (size_t)snprintf(kids + n, sizeof(kids) - n, "%s%s:%s", i ? "," : "",
                              k->keys[i].kid ? k->keys[i].kid : "-",
                              k->keys[i].alg >= 0 ? par_jwt_alg_name(k->keys[i].alg) : "any");
    par_log_str(&l, "issuer", o->pol.issuer);
    par_log_int(&l, "keys", (int64_t)k->count);
    par_log_str(&l, "kids", kids);
    par_log_int(&l, "refresh_in_s", ttl_s);
    par_log_end(&l);
}

static void wake_all(par_auth_waiter_t *wake)
{
    while (wake) {
        par_auth_waiter_t *next = wake->_next;
        wake->ready(wake);
        wake = next;
    }
}

/* Sleeps until the next refresh is due or requested. Lock held. */
static void wait_due_locked(oidc_t *o, int64_t now)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t wait = o->next_ms - now;
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&o->cond, &o->lock, &ts);
}

/* A refresh succeeded: takes `uri` and (when they differ) `fresh`; returns
 * the seconds until the next one. Lock held. */
static int64_t keys_fetched_locked(oidc_t *o, int64_t now, long max_age, char **uri,
                                   par_jwks_t **fresh, int *first, int *changed)
{
    const par_oidc_config_t *oc = &o->cfg->oidc;
    int64_t ttl_s = max_age < 0 ? oc->jwks_cache_default_s : max_age;
    if (ttl_s < oc->jwks_cache_min_s)
        ttl_s = oc->jwks_cache_min_s;
    if (ttl_s > oc->jwks_cache_max_s)
        ttl_s = oc->jwks_cache_max_s;
    o->next_ms = now + ttl_s * 1000;
    o->failures = 0;
    o->last_ok_ms = now;
    o->fetches_ok++;
    o->last_error[0] = '\0';
    free(o->jwks_uri);
    o->jwks_uri = *uri;
    *uri = NULL;
    if (!par_jwks_same(o->keys, *fresh)) {
        *first = o->keys == NULL;
        *changed = 1;
        par_jwks_t *old = o->keys;
        o->keys = *fresh;
        *fresh = NULL;
        atomic_fetch_add(&o->gen, 1);
        par_jwks_unref(old);
    }
    return ttl_s;
}

/* A refresh failed: backs off exponentially. Lock held. */
static void keys_failed_locked(oidc_t *o, int64_t now, const char *err)
{
    const par_oidc_config_t *oc = &o->cfg->oidc;
    o->failures++;
    o->fetches_failed++;
    snprintf(o->last_error, sizeof(o->last_error), "%s", err);
    int64_t back = RETRY_MIN_MS;
    for (unsigned i = 1; i < o->failures && back < (int64_t)oc->retry_max_s * 1000; i++)
        back *= 2;
    if (back > (int64_t)oc->retry_max_s * 1000)
        back = (int64_t)oc->retry_max_s * 1000;
    o->next_ms = now + back;
    /* a failing jwks_uri may have moved: discover again next time */
    if (oc->jwks_uri == NULL) {
        free(o->jwks_uri);
        o->jwks_uri = NULL;
    }
}

static void *refresh_main(void *arg)
{
    oidc_t *o = arg;
    pthread_mutex_lock(&o->lock);
    while (!atomic_load(&o->stop)) {
        int64_t now = par_mono_ms();
        if (!o->requested && now < o->next_ms) {
            wait_due_locked(o, now);
            continue;
        }
        o->requested = 0;
        o->fetching = 1;
        char *uri = NULL;
        int oom = o->jwks_uri && (uri = strdup(o->jwks_uri)) == NULL;
        pthread_mutex_unlock(&o->lock);

        par_jwks_t *fresh = NULL;
        long max_age = -1;
        char err[512] = "";
        par_buf_t notes;
        par_buf_init(&notes, 16 * 1024);
        int rc = oom ? -1 : fetch_keys(o, &uri, &fresh, &max_age, &notes, err, sizeof(err));
        if (oom)
            snprintf(err, sizeof(err), "out of memory");

        pthread_mutex_lock(&o->lock);
        now = par_mono_ms();
        o->fetching = 0;
        o->last_attempt_ms = now;
        int first = 0, changed = 0;
        int64_t ttl_s = 0;
        size_t held = o->keys ? o->keys->count : 0;
        if (rc == 0)
            ttl_s = keys_fetched_locked(o, now, max_age, &uri, &fresh, &first, &changed);
        else
            keys_failed_locked(o, now, err);
        par_auth_waiter_t *wake = o->parked;
        o->parked = NULL;
        o->nparked = 0;
        unsigned failures = o->failures;
        int64_t retry_ms = o->next_ms - now;
        par_jwks_t *cur = o->keys;
        if (cur)
            par_jwks_ref(cur);
        pthread_mutex_unlock(&o->lock);

        par_auth_count_key_fetch(rc == 0);
        if (rc == 0 && changed)
            log_keys(first ? "auth: issuer keys obtained" : "auth: issuer keys changed", o, cur,
                     ttl_s);
        if (rc == 0 && changed && notes.len)
            par_log_msg(PAR_LOG_WARN, "auth: some keys of %s were skipped: %.*s", o->pol.issuer,
                        (int)(notes.len - 1), notes.data);
        if (rc != 0)
            par_log_msg(PAR_LOG_WARN,
                        "auth: cannot fetch the signing keys of %s (attempt %u): %s; %s; next try "
                        "in %lld ms",
                        o->pol.issuer, failures, err,
                        held ? "keeping the keys already held"
                             : "no keys yet: requests with tokens answer 503 auth_unavailable",
                        (long long)retry_ms);
        par_jwks_unref(cur);
        par_jwks_unref(fresh);
        par_buf_free(&notes);
        free(uri);
        wake_all(wake);
        pthread_mutex_lock(&o->lock);
    }
    par_auth_waiter_t *wake = o->parked;
    o->parked = NULL;
    pthread_mutex_unlock(&o->lock);
    wake_all(wake);
    return NULL;
}

/* Parks `w` for the refresh in progress, or starts one when the rate limit
 * allows. Returns 1 when parked. Lock held. */
static int park_locked(oidc_t *o, par_auth_waiter_t *w, int may_start)
{
    if (w == NULL || o->nparked >= MAX_PARKED || atomic_load(&o->stop))
        return 0;
    if (!o->fetching && !o->requested) {
        int64_t now = par_mono_ms();
        int64_t gap = (int64_t)o->cfg->oidc.unknown_kid_refresh_s * 1000;
        if (!may_start || (o->last_kid_refresh_ms && now - o->last_kid_refresh_ms < gap))
            return 0;
        o->last_kid_refresh_ms = now;
        o->requested = 1;
        pthread_cond_signal(&o->cond);
    }
    w->_next = o->parked;
    o->parked = w;
    o->nparked++;
    return 1;
}

/* ---- checking ------------------------------------------------------------------------ */

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* The identity a verified token stands for. */
static int identity_of(oidc_t *o, const par_jwt_t *j, par_identity_t **out, par_auth_fail_t *f)
{
    const par_auth_config_t *cfg = o->cfg;
    json_t *sub = par_claim_get(j->claims, cfg->subject_claim);
    /* client-credentials tokens of some issuers carry no sub: the client is the caller */
    if (sub == NULL)
        sub = json_object_get(j->claims, "azp");
    if (sub == NULL)
        sub = json_object_get(j->claims, "client_id");
    if (!json_is_string(sub) || json_string_length(sub) == 0 ||
        json_string_length(sub) > PAR_SUBJECT_MAX ||
        !printable(json_string_value(sub), json_string_length(sub)))
        return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_CLAIMS,
                              "no usable subject (claim \"%s\", azp or client_id: a string of 1-%d "
                              "printable bytes)",
                              cfg->subject_claim, PAR_SUBJECT_MAX);
    char tbuf[32];
    const char *tenant = NULL;
    if (cfg->tenant_claim) {
        json_t *t = par_claim_get(j->claims, cfg->tenant_claim);
        if (json_is_null(t))
            t = NULL; /* present but empty: no tenant */
        if (json_is_integer(t)) {
            snprintf(tbuf, sizeof(tbuf), "%" JSON_INTEGER_FORMAT, json_integer_value(t));
            tenant = tbuf;
        } else if (json_is_string(t) && json_string_length(t) > 0 &&
                   json_string_length(t) <= PAR_TENANT_MAX &&
                   printable(json_string_value(t), json_string_length(t))) {
            tenant = json_string_value(t);
        } else if (t != NULL) {
            return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_CLAIMS,
                                  "tenant claim \"%s\" is not a string of 1-%d printable bytes",
                                  cfg->tenant_claim, PAR_TENANT_MAX);
        }
    }
    par_identity_t *id = par_identity_new(json_string_value(sub), tenant);
    if (id == NULL || par_perms_from_claims(&cfg->perms, j->claims, &id->perms) != 0) {
        par_identity_unref(id);
        return par__auth_fail(f, PAR_E_NO_MEMORY, PAR_AUTH_R_NONE, "out of memory");
    }
    *out = id;
    return PAR_OK;
}

static int oidc_check(par_auth_provider_t *p, par_slice_t tok, par_auth_waiter_t *w,
                      par_identity_t **out, par_auth_fail_t *f)
{
    oidc_t *o = p->data;
    if (tok.len > o->pol.max_bytes)
        return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_TOO_LARGE,
                              "token of %zu bytes exceeds the cap of %zu", tok.len,
                              o->pol.max_bytes);
    unsigned char h[32];
    unsigned int hl = 0;
    EVP_Digest(tok.ptr, tok.len, h, &hl, EVP_sha256(), NULL);
    int64_t now = (int64_t)time(NULL);
    par_identity_t *id = par_token_cache_get(o->cache, h, atomic_load(&o->gen), now);
    if (id) {
        par_auth_count_token_cache(1);
        *out = id;
        return PAR_OK;
    }
    par_auth_count_token_cache(0);

    pthread_mutex_lock(&o->lock);
    par_jwks_t *keys = o->keys;
    uint64_t gen = atomic_load(&o->gen);
    if (keys)
        par_jwks_ref(keys);
    else if (park_locked(o, w, 0)) {
        pthread_mutex_unlock(&o->lock);
        return PAR_AUTH_PENDING; /* the first fetch is under way */
    }
    pthread_mutex_unlock(&o->lock);
    if (keys == NULL)
        return par__auth_fail(f, PAR_E_AUTH_UNAVAILABLE, PAR_AUTH_R_UNAVAILABLE,
                              "the signing keys of %s have not been obtained yet", o->pol.issuer);

    par_jwt_t j;
    int rc = PAR_E_INVALID_TOKEN;
    if (par_jwt_parse(tok.ptr, tok.len, &o->pol, &j, f) != 0)
        goto out_keys;
    size_t pos = 0;
    int candidates = 0, verified = 0;
    const par_jwk_t *k;
    while (!verified && candidates < 8 && (k = par_jwks_next(keys, j.kid, j.alg, &pos))) {
        candidates++;
        verified = par_jwt_verify(&j, k->pkey, k->key_class, f) == 0;
    }
    if (!verified) {
        if (candidates == 0 && j.kid && !par_jwks_has_kid(keys, j.kid)) {
            pthread_mutex_lock(&o->lock);
            int changed = atomic_load(&o->gen) != gen;
            int parked = !changed && park_locked(o, w, 1);
            pthread_mutex_unlock(&o->lock);
            if (parked) {
                rc = PAR_AUTH_PENDING;
                goto out_jwt;
            }
            if (changed && w) {
                /* new keys arrived while we looked: check once more against them */
                par_jwt_free(&j);
                par_jwks_unref(keys);
                return oidc_check(p, tok, NULL, out, f);
            }
            par__auth_fail(f, 0, PAR_AUTH_R_UNKNOWN_KID,
                           "kid \"%.64s\" is not in the issuer's key set", j.kid);
        } else if (candidates == 0) {
            par__auth_fail(f, 0, PAR_AUTH_R_KEY_MISMATCH, "no key%s%.64s%s can verify alg %s",
                           j.kid ? " \"" : "", j.kid ? j.kid : "", j.kid ? "\"" : "",
                           par_jwt_alg_name(j.alg));
        }
        goto out_jwt;
    }
    if (par_jwt_check_claims(&j, &o->pol, now, f) != 0)
        goto out_jwt;
    rc = identity_of(o, &j, &id, f);
    if (rc != PAR_OK)
        goto out_jwt;
    int64_t until = par_jwt_exp(&j) + o->pol.leeway_s;
    par_token_cache_put(o->cache, h, gen, until, id);
    *out = id;
out_jwt:
    par_jwt_free(&j);
out_keys:
    par_jwks_unref(keys);
    return rc;
}

static int oidc_ready(par_auth_provider_t *p, par_buf_t *why)
{
    oidc_t *o = p->data;
    pthread_mutex_lock(&o->lock);
    int ok = o->keys != NULL;
    if (!ok)
        par_buf_appendf(why, "auth: the signing keys of %s have not been obtained yet%s%s%s",
                        o->pol.issuer, o->last_error[0] ? " (" : "", o->last_error,
                        o->last_error[0] ? ")" : "");
    pthread_mutex_unlock(&o->lock);
    return ok;
}

static void oidc_describe(par_auth_provider_t *p, json_t *into)
{
    oidc_t *o = p->data;
    int64_t now = par_mono_ms();
    pthread_mutex_lock(&o->lock);
    json_object_set_new(into, "issuer", json_string(o->pol.issuer));
    json_object_set_new(into, "audience", json_string(o->pol.audience));
    json_object_set_new(into, "jwks_uri", o->jwks_uri ? json_string(o->jwks_uri) : json_null());
    json_t *algs = json_array();
    for (int a = 0; a < PAR_JWT_ALG_COUNT; a++)
        if (o->pol.alg_mask & PAR_JWT_ALG_BIT(a))
            json_array_append_new(algs, json_string(par_jwt_alg_name(a)));
    json_object_set_new(into, "algorithms", algs);
    json_t *keys = json_array();
    for (size_t i = 0; o->keys && i < o->keys->count; i++) {
        const par_jwk_t *k = &o->keys->keys[i];
        static const char *const cls[] = {"RSA", "EC P-256", "EC P-384", "EC P-521", "OKP"};
        json_array_append_new(keys, json_pack("{s:s?, s:s, s:s}", "kid", k->kid, "type",
                                              cls[k->key_class], "alg",
                                              k->alg >= 0 ? par_jwt_alg_name(k->alg) : "any"));
    }
    json_object_set_new(into, "keys", keys);
    const char *state = o->keys == NULL ? "unavailable" : o->failures ? "stale" : "ok";
    json_object_set_new(into, "state", json_string(state));
    json_object_set_new(into, "last_refresh_s_ago",
                        o->last_ok_ms ? json_real((double)(now - o->last_ok_ms) / 1e3)
                                      : json_null());
    json_object_set_new(into, "next_refresh_in_s",
                        json_real(o->next_ms > now ? (double)(o->next_ms - now) / 1e3 : 0));
    json_object_set_new(into, "consecutive_failures", json_integer(o->failures));
    json_object_set_new(into, "last_error",
                        o->last_error[0] ? json_string(o->last_error) : json_null());
    json_object_set_new(into, "fetches",
                        json_pack("{s:I, s:I}", "ok", (json_int_t)o->fetches_ok, "failed",
                                  (json_int_t)o->fetches_failed));
    pthread_mutex_unlock(&o->lock);
    json_object_set_new(into, "cached_tokens",
                        json_integer((json_int_t)par_token_cache_count(o->cache)));
}

static void oidc_destroy(par_auth_provider_t *p)
{
    oidc_t *o = p->data;
    if (o->started) {
        pthread_mutex_lock(&o->lock);
        atomic_store(&o->stop, 1);
        pthread_cond_signal(&o->cond);
        pthread_mutex_unlock(&o->lock);
        pthread_join(o->thread, NULL);
    }
    par_jwks_unref(o->keys);
    par_token_cache_free(o->cache);
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->cond);
    free(o->jwks_uri);
    free(o->discovery_url);
    free(o);
}

static const par_auth_provider_ops_t oidc_ops = {
    .name = "oidc",
    .check = oidc_check,
    .ready = oidc_ready,
    .describe = oidc_describe,
    .destroy = oidc_destroy,
};

int par_oidc_provider_new(const par_auth_config_t *cfg, par_auth_provider_t **out, par_buf_t *err)
{
    const par_oidc_config_t *oc = &cfg->oidc;
    if (par_curl_load() != 0) { /* initialised once for the process (util/curl.h) */
        par_buf_appends(err, par_curl_error());
        return PAR_E_INTERNAL;
    }
    par_jwks_global_init();
    oidc_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        par_buf_appends(err, "out of memory");
        return PAR_E_NO_MEMORY;
    }
    o->prov.ops = &oidc_ops;
    o->prov.data = o;
    o->cfg = cfg;
    o->pol.issuer = oc->issuer;
    o->pol.audience = oc->audience;
    o->pol.alg_mask = oc->alg_mask ? oc->alg_mask : PAR_JWT_DEFAULT_ALGS;
    o->pol.leeway_s = oc->leeway_s;
    o->pol.max_bytes = oc->max_token_bytes ? oc->max_token_bytes : PAR_JWT_DEFAULT_MAX_BYTES;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    size_t il = strlen(oc->issuer);
    while (il && oc->issuer[il - 1] == '/')
        il--;
    if (asprintf(&o->discovery_url, "%.*s/.well-known/openid-configuration", (int)il, oc->issuer) <
        0)
        o->discovery_url = NULL;
    o->jwks_uri = oc->jwks_uri ? strdup(oc->jwks_uri) : NULL;
    o->cache = par_token_cache_new(cfg->token_cache_entries ? cfg->token_cache_entries : 4096);
    if (o->discovery_url == NULL || o->cache == NULL || (oc->jwks_uri && o->jwks_uri == NULL)) {
        oidc_destroy(&o->prov);
        par_buf_appends(err, "out of memory");
        return PAR_E_NO_MEMORY;
    }
    if (pthread_create(&o->thread, NULL, refresh_main, o) != 0) {
        oidc_destroy(&o->prov);
        par_buf_appendf(err, "cannot start the key refresh thread: %s", strerror(errno));
        return PAR_E_INTERNAL;
    }
    o->started = 1;
    *out = &o->prov;
    return PAR_OK;
}
