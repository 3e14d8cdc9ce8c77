/*
 * runtime/converge_index.c — the registry index poller (see converge.h).
 *
 * Owns one thread that fetches the index document (registry/fetch.c, with the
 * ETag of the last valid document), checks its entries, asks
 * par__converge_diff what to do, deploys and removes, and remembers the
 * entries refused for good so that an unchanged one is not retried. Its
 * status (under ix->lock) is read by /runtime/info through
 * par__runtime_registry_status from any thread. Started and stopped by
 * par_runtime_new / par_runtime_destroy; it never runs on an event loop.
 *
 * The index generation names one document: its ETag, or "sha256:<hex>" of
 * its bytes when the store sends none. A generation is "applied" once a pass
 * over its document left nothing to retry (refused entries count as done);
 * /runtime/info and the par_index_generation_info metric show the applied
 * one, so a fleet's nodes can be compared with one scrape each.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "pkg/archive.h"
#include "registry/fetch.h"
#include "runtime/converge.h"
#include "runtime/deploy.h"
#include "runtime/runtime.h"
#include "util/clock.h"

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
    atomic_int cancel; /* set by par__index_stop: a fetch in progress gives up */
    int settled;
    /* status, under lock */
    char *etag;
    json_t *last_doc;     /* last valid index */
    char *doc_generation; /* last_doc's generation (ETag or sha256:<hex>) */
    char *doc_sha256;     /* last_doc's bytes, "sha256:<hex>" */
    char *applied;        /* the generation whose pass left nothing to retry */
    char *applied_sha256;
    int64_t applied_ms;
    unsigned long polls;
    int64_t last_poll_ms;
    const char *last_result;
    char *last_error;
    size_t entries, bad_entries;
    failed_t *failed;
    size_t nfailed;
};

/* One pass over a document: its entries as the decision sees them. */
typedef struct pass {
    json_t *pkgs;
    par_converge_want_t *want; /* valid entries; keys owned */
    const char **urls, **sigs; /* per want */
    size_t nwant;
    const char **listed;
    size_t nlisted;
    failed_t *now; /* this pass's failures (moved into ix->failed at the end) */
    size_t nnow, bad, pending;
} pass_t;

static int valid_name(const char *s)
{
    if (s == NULL || !(*s >= 'a' && *s <= 'z'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return strlen(s) <= 128;
}

static void failed_free(failed_t *f)
{
    free(f->key), free(f->name), free(f->version), free(f->error), free(f->message);
    memset(f, 0, sizeof(*f));
}

static void failed_clear(failed_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        failed_free(&f[i]);
    free(f);
}

/* Records a failure; the strings are copied (`key` is taken). 0, or -1 when out of memory. */
static int failed_add(pass_t *p, char *key, const char *name, const char *version,
                      const char *error, const char *message, size_t mlen, int permanent)
{
    failed_t *f = &p->now[p->nnow];
    f->key = key;
    f->name = strdup(name);
    f->version = strdup(version);
    f->error = strdup(error);
    f->message = strndup(message, mlen);
    f->permanent = permanent;
    if (!f->key || !f->name || !f->version || !f->error || !f->message) {
        failed_free(f);
        return -1;
    }
    p->nnow++;
    return 0;
}

static void set_result(par_index_t *ix, const char *result, const char *error, size_t len)
{
    pthread_mutex_lock(&ix->lock);
    ix->polls++;
    ix->last_poll_ms = par_wall_ms();
    ix->last_result = result;
    free(ix->last_error);
    ix->last_error = error ? strndup(error, len) : NULL;
    pthread_mutex_unlock(&ix->lock);
    par_metrics_registry_poll(result);
}

/* What is wrong with entry `i`, or "" when nothing is. */
static void entry_problem(json_t *e, size_t i, char problem[256])
{
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *version = json_string_value(json_object_get(e, "version"));
    const char *url = json_string_value(json_object_get(e, "url"));
    problem[0] = '\0';
    if (!json_is_object(e))
        snprintf(problem, 256, "packages[%zu]: must be an object", i);
    else if (!valid_name(name))
        snprintf(problem, 256, "packages[%zu].name: must be a package name (^[a-z][a-z0-9-]*$)", i);
    else if (version == NULL || *version == '\0')
        snprintf(problem, 256, "packages[%zu].version: required (a string)", i);
    else if (url == NULL || *url == '\0')
        snprintf(problem, 256, "packages[%zu].url: required (a string)", i);
    else if ((json_object_get(e, "sha256") && !json_is_string(json_object_get(e, "sha256"))) ||
             (json_object_get(e, "signature_url") &&
              !json_is_string(json_object_get(e, "signature_url"))))
        snprintf(problem, 256, "packages[%zu]: sha256 and signature_url must be strings", i);
}

static void pass_free(pass_t *p)
{
    for (size_t i = 0; p->want && i < p->nwant; i++)
        free((char *)p->want[i].key);
    free(p->want), free(p->urls), free(p->sigs), free(p->listed);
    failed_clear(p->now, p->nnow);
}

/* Reads the entries: valid ones become `want`, bad ones failures. */
static int pass_read(par_index_t *ix, json_t *doc, pass_t *p)
{
    memset(p, 0, sizeof(*p));
    p->pkgs = json_object_get(doc, "packages");
    size_t n = json_array_size(p->pkgs) + 1, i;
    p->want = calloc(n, sizeof(*p->want));
    p->urls = calloc(n, sizeof(char *)), p->sigs = calloc(n, sizeof(char *));
    p->listed = calloc(n, sizeof(char *));
    p->now = calloc(n, sizeof(*p->now));
    if (!p->want || !p->urls || !p->sigs || !p->listed || !p->now)
        return PAR_E_NO_MEMORY;
    json_t *e;
    json_array_foreach(p->pkgs, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *version = json_string_value(json_object_get(e, "version"));
        const char *url = json_string_value(json_object_get(e, "url"));
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        const char *sig = json_string_value(json_object_get(e, "signature_url"));
        if (name)
            p->listed[p->nlisted++] = name;
        char problem[256];
        entry_problem(e, i, problem);
        if (problem[0]) {
            p->bad++;
            par_log_msg(PAR_LOG_WARN, "registry index %s: %s (entry skipped)", ix->url, problem);
            if (failed_add(p, strdup(problem), valid_name(name) ? name : "", version ? version : "",
                           "invalid_index_entry", problem, strlen(problem), 1) != 0)
                return PAR_E_NO_MEMORY;
            continue;
        }
        char *key = NULL;
        if (asprintf(&key, "%s\t%s\t%s\t%s\t%s", name, version, sha ? sha : "", url,
                     sig ? sig : "") < 0)
            return PAR_E_NO_MEMORY;
        p->want[p->nwant] = (par_converge_want_t){name, version, sha, key};
        p->urls[p->nwant] = url;
        p->sigs[p->nwant++] = sig;
    }
    return PAR_OK;
}

/* Deploys want[i]; a failure is remembered (permanent or retried next poll). */
static int pass_deploy(par_index_t *ix, pass_t *p, size_t i)
{
    const par_converge_want_t *w = &p->want[i];
    par_buf_t err;
    par_buf_init(&err, 64 * 1024);
    par_deploy_req_t req = {
        .url = p->urls[i], .sha256 = w->sha256, .signature_url = p->sigs[i], .origin = "index"};
    par_log_msg(PAR_LOG_INFO, "registry index: deploying %s@%s from %s", w->name, w->version,
                p->urls[i]);
    int rc = par__deploy(ix->rt, &req, &err, NULL), ret = 0;
    if (rc != PAR_OK) {
        size_t len = err.len;
        while (len && err.data[len - 1] == '\n')
            len--;
        int permanent = par__converge_permanent(rc);
        char *key = strdup(w->key);
        ret = failed_add(p, key, w->name, w->version, par_status_name(rc), err.data ? err.data : "",
                         len, permanent);
        if (!permanent)
            p->pending++;
    }
    par_buf_free(&err);
    return ret;
}

/* Runs the plan; returns how many entries still need a retry. */
static size_t converge(par_index_t *ix, json_t *doc)
{
    par_runtime_t *rt = ix->rt;
    pass_t p;
    memset(&p, 0, sizeof(p));
    par_pkgver_t **pk = NULL;
    size_t npk = 0;
    par_converge_have_t *have = NULL;
    par_converge_plan_t plan = {0};
    pthread_mutex_lock(&ix->lock);
    failed_t *old = ix->failed; /* only this thread replaces it */
    size_t nold = ix->nfailed;
    pthread_mutex_unlock(&ix->lock);
    const char **refused = calloc(nold + 1, sizeof(char *));
    if (refused == NULL || pass_read(ix, doc, &p) != PAR_OK)
        goto oom;
    for (size_t k = 0; k < nold; k++)
        refused[k] = old[k].permanent ? old[k].key : "";
    if (par__packages_snapshot(rt, &pk, &npk) != PAR_OK ||
        (have = calloc(npk + 1, sizeof(*have))) == NULL)
        goto oom;
    for (size_t j = 0; j < npk; j++)
        have[j] = (par_converge_have_t){
            pk[j]->name,   pk[j]->version, pk[j]->sha256,
            pk[j]->source, pk[j]->origin,  atomic_load(&pk[j]->state) == PAR_PKG_ACTIVE};
    par_converge_input_t in = {p.want,  p.nwant, p.listed, p.nlisted, have, npk,
                               refused, nold,    "index",  NULL,      0};
    if (par__converge_diff(&in, &plan) != PAR_OK)
        goto oom;
    for (size_t i = 0; i < plan.ndeploy; i++)
        if (pass_deploy(ix, &p, plan.deploy[i]) != 0)
            goto oom;
    for (size_t i = 0; i < plan.nremove; i++) {
        const par_converge_have_t *h = &have[plan.remove[i]];
        par_log_msg(PAR_LOG_INFO, "registry index: %s left the index; removing %s@%s", h->name,
                    h->name, h->version);
        par__runtime_remove(rt, h->name, NULL);
    }
    pthread_mutex_lock(&ix->lock);            /* /runtime/info reads the records under it */
    for (size_t i = 0; i < plan.nkept; i++) { /* the verdict moves to this pass */
        p.now[p.nnow++] = old[plan.kept_refused[i]];
        memset(&old[plan.kept_refused[i]], 0, sizeof(*old));
    }
    assert(p.nnow <= json_array_size(p.pkgs));
    ix->failed = p.now;
    ix->nfailed = p.nnow;
    ix->entries = json_array_size(p.pkgs);
    ix->bad_entries = p.bad;
    pthread_mutex_unlock(&ix->lock);
    failed_clear(old, nold);
    p.now = NULL, p.nnow = 0;
    goto out;
oom:
    par_log_msg(PAR_LOG_ERROR, "registry index %s: out of memory; retried at the next poll",
                ix->url);
    p.pending++;
out:;
    size_t pending = p.pending;
    pass_free(&p);
    par__converge_plan_free(&plan);
    for (size_t j = 0; j < npk; j++)
        par__pkgver_unref(pk[j]);
    free(pk);
    free(have);
    free(refused);
    return pending;
}

/* A new valid document (or NULL with the reason in `msg`). */
static json_t *parse_doc(const par_fetch_result_t *r, char msg[300])
{
    json_error_t jerr;
    json_t *doc = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &jerr);
    msg[0] = '\0';
    if (doc == NULL)
        snprintf(msg, 300, "not valid JSON: line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
    else if (!json_is_array(json_object_get(doc, "packages")))
        snprintf(msg, 300, "must be an object with a \"packages\" array");
    if (msg[0]) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* Names last_doc (under ix->lock): the ETag when the store sent one, else
 * the digest. Out of memory leaves them NULL: nothing is ever marked applied
 * under a wrong name. */
static void set_generation(par_index_t *ix, const par_fetch_result_t *r)
{
    char hex[65], *digest = NULL;
    par_sha256_hex(r->body.data ? r->body.data : "", r->body.len, hex);
    if (asprintf(&digest, "sha256:%s", hex) < 0)
        digest = NULL;
    free(ix->doc_generation);
    free(ix->doc_sha256);
    ix->doc_sha256 = digest;
    ix->doc_generation = r->etag && *r->etag ? strdup(r->etag) : (digest ? strdup(digest) : NULL);
}

/* A pass over last_doc left nothing to retry: its generation is applied. */
static void mark_applied(par_index_t *ix)
{
    pthread_mutex_lock(&ix->lock);
    if (ix->doc_generation && ix->doc_sha256 &&
        (ix->applied == NULL || strcmp(ix->applied, ix->doc_generation) != 0)) {
        char *g = strdup(ix->doc_generation), *d = strdup(ix->doc_sha256);
        if (g && d) {
            free(ix->applied), free(ix->applied_sha256);
            ix->applied = g, ix->applied_sha256 = d;
            ix->applied_ms = par_wall_ms();
            par_log_msg(PAR_LOG_INFO, "registry index: generation %s applied", g);
        } else {
            free(g), free(d);
        }
    }
    pthread_mutex_unlock(&ix->lock);
}

/* Fetches the index; returns the document to converge on, or NULL. */
static json_t *fetch_doc(par_index_t *ix, size_t pending)
{
    par_fetch_opts_t o;
    par__fetch_opts(ix->rt, &o);
    o.max_bytes = INDEX_MAX_BYTES;
    pthread_mutex_lock(&ix->lock);
    char *etag = ix->etag && ix->last_doc ? strdup(ix->etag) : NULL;
    pthread_mutex_unlock(&ix->lock);
    o.if_none_match = etag; /* without memory for it: a full fetch */
    o.cancel = &ix->cancel;
    par_fetch_result_t r;
    par_buf_t err;
    par_buf_init(&err, 64 * 1024);
    int rc = par_fetch(ix->url, &o, &r, &err);
    free(etag);
    json_t *doc = NULL;
    char msg[300];
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
    } else if ((doc = parse_doc(&r, msg)) == NULL) {
        par_log_msg(PAR_LOG_WARN, "registry index %s: %s; nothing changed", ix->url, msg);
        set_result(ix, "error", msg, strlen(msg));
    } else {
        pthread_mutex_lock(&ix->lock);
        free(ix->etag);
        ix->etag = r.etag ? strdup(r.etag) : NULL; /* NULL: the next fetch is a full one */
        json_decref(ix->last_doc);
        ix->last_doc = json_incref(doc);
        set_generation(ix, &r);
        pthread_mutex_unlock(&ix->lock);
        set_result(ix, "ok", NULL, 0);
    }
    par_fetch_result_free(&r);
    par_buf_free(&err);
    return doc;
}

static void *index_main(void *arg)
{
    par_index_t *ix = arg;
    size_t pending = 0;
    for (;;) {
        json_t *doc = fetch_doc(ix, pending);
        if (doc) {
            pending = converge(ix, doc);
            json_decref(doc);
            if (pending == 0)
                mark_applied(ix);
        }
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

int par__index_start(par_runtime_t *rt, const char *url, unsigned poll_ms, par_index_t **out)
{
    par_index_t *ix = calloc(1, sizeof(*ix));
    if (ix == NULL || (ix->url = strdup(url)) == NULL) {
        free(ix);
        return PAR_E_NO_MEMORY;
    }
    ix->rt = rt;
    ix->poll_ms = poll_ms ? poll_ms : 30000;
    ix->last_result = "pending";
    pthread_mutex_init(&ix->lock, NULL);
    pthread_cond_init(&ix->cond, NULL);
    if (pthread_create(&ix->thread, NULL, index_main, ix) != 0) {
        pthread_mutex_destroy(&ix->lock);
        pthread_cond_destroy(&ix->cond);
        free(ix->url);
        free(ix);
        return PAR_E_INTERNAL;
    }
    *out = ix;
    return PAR_OK;
}

void par__index_stop(par_index_t *ix)
{
    if (ix == NULL)
        return;
    atomic_store(&ix->cancel, 1); /* a hung index fetch must not hold up the exit */
    pthread_mutex_lock(&ix->lock);
    ix->stop = 1;
    pthread_cond_broadcast(&ix->cond);
    pthread_mutex_unlock(&ix->lock);
    pthread_join(ix->thread, NULL);
    failed_clear(ix->failed, ix->nfailed);
    json_decref(ix->last_doc);
    free(ix->etag);
    free(ix->doc_generation), free(ix->doc_sha256);
    free(ix->applied), free(ix->applied_sha256);
    free(ix->last_error);
    free(ix->url);
    pthread_mutex_destroy(&ix->lock);
    pthread_cond_destroy(&ix->cond);
    free(ix);
}

int par__index_settled(par_index_t *ix)
{
    pthread_mutex_lock(&ix->lock);
    int s = ix->settled;
    pthread_mutex_unlock(&ix->lock);
    return s;
}

static json_t *index_status(par_index_t *ix)
{
    pthread_mutex_lock(&ix->lock);
    json_t *failed = json_array();
    for (size_t i = 0; failed && i < ix->nfailed; i++)
        json_array_append_new(failed,
                              json_pack("{s:s, s:s, s:s, s:s}", "name", ix->failed[i].name,
                                        "version", ix->failed[i].version, "error",
                                        ix->failed[i].error, "message", ix->failed[i].message));
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:o*}", "index_url", ix->url, "poll_interval_ms",
                  (json_int_t)ix->poll_ms, "polls", (json_int_t)ix->polls, "last_result",
                  ix->last_result, "entries", (json_int_t)ix->entries, "bad_entries",
                  (json_int_t)ix->bad_entries, "failed_entries", failed);
    if (o) {
        json_object_set_new(o, "last_poll_ms",
                            ix->last_poll_ms ? json_integer(ix->last_poll_ms) : json_null());
        json_object_set_new(o, "last_error",
                            ix->last_error ? json_string(ix->last_error) : json_null());
        json_object_set_new(o, "etag", ix->etag ? json_string(ix->etag) : json_null());
        json_object_set_new(o, "generation", ix->applied ? json_string(ix->applied) : json_null());
        json_object_set_new(o, "index_sha256",
                            ix->applied_sha256 ? json_string(ix->applied_sha256) : json_null());
        json_object_set_new(o, "applied_ms",
                            ix->applied ? json_integer(ix->applied_ms) : json_null());
        json_object_set_new(o, "latest_generation",
                            ix->doc_generation ? json_string(ix->doc_generation) : json_null());
    }
    pthread_mutex_unlock(&ix->lock);
    return o;
}

json_t *par__runtime_registry_status(par_runtime_t *rt)
{
    return rt->index ? index_status(rt->index) : json_null();
}

/* Prometheus label value: backslash, double quote and newline escaped. */
static void label_value(par_buf_t *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            par_buf_appendf(b, "\\%c", *s);
        else if (*s == '\n')
            par_buf_appends(b, "\\n");
        else
            par_buf_appendf(b, "%c", *s);
    }
}

void par__index_render_metrics(par_runtime_t *rt, par_buf_t *b)
{
    par_index_t *ix = rt->index;
    if (ix == NULL)
        return;
    pthread_mutex_lock(&ix->lock);
    if (ix->applied) {
        par_metrics_family(b, "par_index_generation_info", "gauge",
                           "The registry index generation this node applied (ETag, or "
                           "sha256:<hex> of the document when the store sends no ETag).");
        par_buf_appends(b, "par_index_generation_info{generation=\"");
        label_value(b, ix->applied);
        par_buf_appends(b, "\"} 1\n");
        par_metrics_family(b, "par_index_applied_timestamp_seconds", "gauge",
                           "When this node finished applying that generation.");
        par_buf_appendf(b, "par_index_applied_timestamp_seconds %.3f\n", ix->applied_ms / 1e3);
    }
    pthread_mutex_unlock(&ix->lock);
}
