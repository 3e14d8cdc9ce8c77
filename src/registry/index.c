/*
 * registry/index.c — see index.h.
 */
#include "registry/index.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "registry/fetch.h"
#include "runtime/runtime.h"

#define INDEX_MAX_BYTES (4u << 20)

typedef struct failed {
    char *key; /* name \t version \t sha256 \t url \t signature_url */
    char *name, *version, *error, *message;
    int permanent;
} failed_t;

struct par_index {
    par_runtime_t *rt;
    char *url;
    unsigned poll_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    int settled;
    /* status, under lock */
    char *etag;
    json_t *last_doc; /* last valid index */
    unsigned long polls;
    int64_t last_poll_ms;
    const char *last_result;
    char *last_error;
    size_t entries, bad_entries;
    failed_t *failed;
    size_t nfailed;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int valid_name(const char *s)
{
    if (s == NULL || !(*s >= 'a' && *s <= 'z'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return strlen(s) <= 128;
}

static void failed_clear(par_index_t *ix)
{
    for (size_t i = 0; i < ix->nfailed; i++) {
        free(ix->failed[i].key), free(ix->failed[i].name), free(ix->failed[i].version);
        free(ix->failed[i].error), free(ix->failed[i].message);
    }
    free(ix->failed);
    ix->failed = NULL;
    ix->nfailed = 0;
}

static int permanent_status(int rc)
{
    return rc != PAR_E_FETCH_FAILED && rc != PAR_E_IO && rc != PAR_E_NO_MEMORY &&
           rc != PAR_E_INTERNAL && rc != PAR_E_TIMEOUT;
}

static void set_result(par_index_t *ix, const char *result, const char *error, size_t len)
{
    pthread_mutex_lock(&ix->lock);
    ix->polls++;
    ix->last_poll_ms = wall_ms();
    ix->last_result = result;
    free(ix->last_error);
    ix->last_error = error ? strndup(error, len) : NULL;
    pthread_mutex_unlock(&ix->lock);
    par_metrics_registry_poll(result);
}

/* Converges on a valid index document. Returns how many entries still need a retry. */
static size_t converge(par_index_t *ix, json_t *doc)
{
    par_runtime_t *rt = ix->rt;
    json_t *pkgs = json_object_get(doc, "packages");
    size_t i, pending = 0, bad = 0;
    json_t *e;
    /* carry over the permanent failures whose entry did not change */
    failed_t *old = ix->failed;
    size_t nold = ix->nfailed;
    failed_t *now = calloc(json_array_size(pkgs) + 1, sizeof(*now));
    size_t nnow = 0;
    char **names = calloc(json_array_size(pkgs) + 1, sizeof(char *));
    size_t nnames = 0;

    json_array_foreach(pkgs, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *version = json_string_value(json_object_get(e, "version"));
        const char *url = json_string_value(json_object_get(e, "url"));
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        const char *sig = json_string_value(json_object_get(e, "signature_url"));
        if (name && names)
            names[nnames++] = (char *)name;
        char problem[256] = "";
        if (!json_is_object(e))
            snprintf(problem, sizeof(problem), "packages[%zu]: must be an object", i);
        else if (!valid_name(name))
            snprintf(problem, sizeof(problem),
                     "packages[%zu].name: must be a package name (^[a-z][a-z0-9-]*$)", i);
        else if (version == NULL || *version == '\0')
            snprintf(problem, sizeof(problem), "packages[%zu].version: required (a string)", i);
        else if (url == NULL || *url == '\0')
            snprintf(problem, sizeof(problem), "packages[%zu].url: required (a string)", i);
        else if ((json_object_get(e, "sha256") && sha == NULL) ||
                 (json_object_get(e, "signature_url") && sig == NULL))
            snprintf(problem, sizeof(problem),
                     "packages[%zu]: sha256 and signature_url must be strings", i);
        if (problem[0]) {
            bad++;
            par_log_msg(PAR_LOG_WARN, "registry index %s: %s (entry skipped)", ix->url, problem);
            now[nnow].key = strdup(problem);
            now[nnow].name = strdup(name && valid_name(name) ? name : "");
            now[nnow].version = strdup(version ? version : "");
            now[nnow].error = strdup("invalid_index_entry");
            now[nnow].message = strdup(problem);
            now[nnow].permanent = 1;
            nnow++;
            continue;
        }
        char *key = NULL;
        if (asprintf(&key, "%s\t%s\t%s\t%s\t%s", name, version, sha ? sha : "", url,
                     sig ? sig : "") < 0)
            continue;
        par_pkgver_t *pv = par__runtime_find(rt, name);
        int current = pv && atomic_load(&pv->state) == PAR_PKG_ACTIVE &&
                      strcmp(pv->version, version) == 0 &&
                      (sha == NULL || strcmp(pv->sha256, sha) == 0);
        if (pv)
            par__pkgver_unref(pv);
        if (current) {
            free(key);
            continue;
        }
        size_t k;
        for (k = 0; k < nold; k++)
            if (old[k].permanent && strcmp(old[k].key, key) == 0)
                break;
        if (k < nold) { /* refused before, unchanged since: keep the verdict */
            now[nnow] = old[k];
            old[k].key = NULL, old[k].name = NULL, old[k].version = NULL;
            old[k].error = NULL, old[k].message = NULL;
            nnow++;
            free(key);
            continue;
        }
        par_buf_t err;
        par_buf_init(&err, 64 * 1024);
        par_deploy_req_t req = {
            .url = url, .sha256 = sha, .signature_url = sig, .origin = "index"};
        par_log_msg(PAR_LOG_INFO, "registry index: deploying %s@%s from %s", name, version, url);
        int rc = par__deploy(rt, &req, &err, NULL);
        if (rc == PAR_OK) {
            free(key);
        } else {
            size_t len = err.len;
            while (len && err.data[len - 1] == '\n')
                len--;
            now[nnow].key = key;
            now[nnow].name = strdup(name);
            now[nnow].version = strdup(version);
            now[nnow].error = strdup(par_status_name(rc));
            now[nnow].message = strndup(err.data ? err.data : "", len);
            now[nnow].permanent = permanent_status(rc);
            if (!now[nnow].permanent)
                pending++;
            nnow++;
        }
        par_buf_free(&err);
    }

    /* remove what the index deployed and no longer names */
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(rt, &pk, &n) == PAR_OK) {
        for (size_t j = 0; j < n; j++) {
            int listed = 0;
            for (size_t k = 0; k < nnames && !listed; k++)
                listed = strcmp(names[k], pk[j]->name) == 0;
            if (!listed && pk[j]->origin && strcmp(pk[j]->origin, "index") == 0 &&
                atomic_load(&pk[j]->state) == PAR_PKG_ACTIVE) {
                par_log_msg(PAR_LOG_INFO, "registry index: %s left the index; removing %s@%s",
                            pk[j]->name, pk[j]->name, pk[j]->version);
                par__runtime_remove(rt, pk[j]->name, NULL);
            }
            par__pkgver_unref(pk[j]);
        }
        free(pk);
    }
    free(names);

    pthread_mutex_lock(&ix->lock);
    failed_clear(ix); /* frees `old` */
    ix->failed = now;
    ix->nfailed = nnow;
    ix->entries = json_array_size(pkgs);
    ix->bad_entries = bad;
    pthread_mutex_unlock(&ix->lock);
    return pending;
}

static size_t poll_once(par_index_t *ix, size_t pending)
{
    par_fetch_opts_t o;
    par_fetch_opts_init(&o);
    par_runtime_t *rt = ix->rt;
    o.ca_file = rt->ca_file;
    if (rt->cfg.fetch_connect_timeout_ms)
        o.connect_timeout_ms = rt->cfg.fetch_connect_timeout_ms;
    if (rt->cfg.fetch_timeout_ms)
        o.timeout_ms = rt->cfg.fetch_timeout_ms;
    o.retries = rt->cfg.fetch_retries;
    o.allow_http = rt->cfg.allow_http;
    o.s3_region = rt->s3_region;
    o.s3_endpoint = rt->s3_endpoint;
    o.s3_path_style = rt->cfg.s3_path_style;
    o.max_bytes = INDEX_MAX_BYTES;
    pthread_mutex_lock(&ix->lock);
    char *etag = ix->etag && ix->last_doc ? strdup(ix->etag) : NULL;
    pthread_mutex_unlock(&ix->lock);
    o.if_none_match = etag;
    par_fetch_result_t r;
    par_buf_t err;
    par_buf_init(&err, 64 * 1024);
    int rc = par_fetch(ix->url, &o, &r, &err);
    free(etag);
    json_t *doc = NULL;
    if (rc != PAR_OK) {
        size_t len = err.len;
        while (len && err.data[len - 1] == '\n')
            len--;
        par_log_msg(PAR_LOG_WARN, "registry index %s: %s: %.*s; nothing changed", ix->url,
                    par_status_name(rc), (int)len, err.data ? err.data : "");
        set_result(ix, "error", err.data ? err.data : "", len);
    } else if (r.not_modified) {
        set_result(ix, "not_modified", NULL, 0);
        if (pending) {
            pthread_mutex_lock(&ix->lock);
            doc = json_incref(ix->last_doc);
            pthread_mutex_unlock(&ix->lock);
        }
    } else {
        json_error_t jerr;
        doc = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, &jerr);
        char msg[300] = "";
        if (doc == NULL)
            snprintf(msg, sizeof(msg), "not valid JSON: line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        else if (!json_is_array(json_object_get(doc, "packages")))
            snprintf(msg, sizeof(msg), "must be an object with a \"packages\" array");
        if (msg[0]) {
            par_log_msg(PAR_LOG_WARN, "registry index %s: %s; nothing changed", ix->url, msg);
            set_result(ix, "error", msg, strlen(msg));
            json_decref(doc);
            doc = NULL;
        } else {
            pthread_mutex_lock(&ix->lock);
            free(ix->etag);
            ix->etag = r.etag ? strdup(r.etag) : NULL;
            json_decref(ix->last_doc);
            ix->last_doc = json_incref(doc);
            pthread_mutex_unlock(&ix->lock);
            set_result(ix, "ok", NULL, 0);
        }
    }
    par_fetch_result_free(&r);
    par_buf_free(&err);
    size_t left = pending;
    if (doc) {
        left = converge(ix, doc);
        json_decref(doc);
    }
    return left;
}

static void *index_main(void *arg)
{
    par_index_t *ix = arg;
    size_t pending = 0;
    for (;;) {
        pending = poll_once(ix, pending);
        pthread_mutex_lock(&ix->lock);
        ix->settled = 1;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ix->poll_ms * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        while (!ix->stop && pthread_cond_timedwait(&ix->cond, &ix->lock, &ts) != ETIMEDOUT)
            ;
        int stop = ix->stop;
        pthread_mutex_unlock(&ix->lock);
        if (stop)
            break;
    }
    return NULL;
}

int par_index_start(par_runtime_t *rt, const char *url, unsigned poll_ms, par_index_t **out)
{
    par_index_t *ix = calloc(1, sizeof(*ix));
    if (ix == NULL)
        return PAR_E_NO_MEMORY;
    ix->rt = rt;
    ix->url = strdup(url);
    ix->poll_ms = poll_ms ? poll_ms : 30000;
    ix->last_result = "pending";
    pthread_mutex_init(&ix->lock, NULL);
    pthread_cond_init(&ix->cond, NULL);
    if (pthread_create(&ix->thread, NULL, index_main, ix) != 0) {
        free(ix->url);
        free(ix);
        return PAR_E_INTERNAL;
    }
    *out = ix;
    return PAR_OK;
}

void par_index_stop(par_index_t *ix)
{
    if (ix == NULL)
        return;
    pthread_mutex_lock(&ix->lock);
    ix->stop = 1;
    pthread_cond_broadcast(&ix->cond);
    pthread_mutex_unlock(&ix->lock);
    pthread_join(ix->thread, NULL);
    failed_clear(ix);
    json_decref(ix->last_doc);
    free(ix->etag);
    free(ix->last_error);
    free(ix->url);
    pthread_mutex_destroy(&ix->lock);
    pthread_cond_destroy(&ix->cond);
    free(ix);
}

int par_index_settled(par_index_t *ix)
{
    pthread_mutex_lock(&ix->lock);
    int s = ix->settled;
    pthread_mutex_unlock(&ix->lock);
    return s;
}

json_t *par_index_status(par_index_t *ix)
{
    pthread_mutex_lock(&ix->lock);
    json_t *failed = json_array();
    for (size_t i = 0; i < ix->nfailed; i++)
        json_array_append_new(failed, json_pack("{s:s, s:s, s:s, s:s}", "name", ix->failed[i].name,
                                                "version", ix->failed[i].version, "error",
                                                ix->failed[i].error, "message",
                                                ix->failed[i].message));
    json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:o}", "index_url", ix->url,
                          "poll_interval_ms", (json_int_t)ix->poll_ms, "polls",
                          (json_int_t)ix->polls, "last_result", ix->last_result, "entries",
                          (json_int_t)ix->entries, "bad_entries", (json_int_t)ix->bad_entries,
                          "failed_entries", failed);
    json_object_set_new(o, "last_poll_ms", ix->last_poll_ms ? json_integer(ix->last_poll_ms)
                                                            : json_null());
    json_object_set_new(o, "last_error", ix->last_error ? json_string(ix->last_error)
                                                        : json_null());
    json_object_set_new(o, "etag", ix->etag ? json_string(ix->etag) : json_null());
    pthread_mutex_unlock(&ix->lock);
    return o;
}
