/*
 * metering/stripe.c — see stripe.h.
 */
#include "metering/stripe.h"

#include "util/curl.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

#include "metering/store.h"
#include "obs/log.h"
#include "obs/trace.h"
#include "registry/fetch.h"

#define BATCH 256
#define BODY_CAP 4096 /* of a refusal kept in a dead letter */

struct par_stripe {
    par_stripe_config_t cfg;
    char *path;
    char *url;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_int stop;
    int kicked;
    atomic_llong pending;
    char last_error[512]; /* under lock */
};

static atomic_ullong counts[PAR_EXPORT_NRESULTS];

uint64_t par_stripe_count(int result)
{
    return result >= 0 && result < PAR_EXPORT_NRESULTS ? atomic_load(&counts[result]) : 0;
}

const char *par_stripe_result_name(int result)
{
    static const char *const names[] = {"ok", "retry", "dead", "skipped"};
    return result >= 0 && result < PAR_EXPORT_NRESULTS ? names[result] : "?";
}

void par_stripe_config_free(par_stripe_config_t *c)
{
    free(c->api_key), free(c->endpoint), free(c->event_name), free(c->customer_field);
    free(c->value), free(c->ca_file);
    json_decref(c->event_names);
    json_decref(c->customers);
    memset(c, 0, sizeof(*c));
}

int par_stripe_config_check(const par_stripe_config_t *c, par_buf_t *err)
{
    int bad = 0;
    if (c->api_key == NULL || *c->api_key == '\0') {
        par_buf_appends(err,
                        "metering.stripe: no API key (api_key, api_key_file or api_key_env)\n");
        bad++;
    }
    const char *ep = c->endpoint ? c->endpoint : "https://api.stripe.com";
    if (strncmp(ep, "https://", 8) != 0 && !(c->allow_http && strncmp(ep, "http://", 7) == 0)) {
        par_buf_appendf(err,
                        "metering.stripe.endpoint: '%s' is not https:// (set allow_http: true "
                        "for a local test server)\n",
                        ep);
        bad++;
    }
    const char *cf = c->customer_field ? c->customer_field : "tenant";
    if (strcmp(cf, "tenant") != 0 && strcmp(cf, "subject") != 0) {
        par_buf_appendf(err, "metering.stripe.customer_field: '%s' is not tenant or subject\n", cf);
        bad++;
    }
    const char *v = c->value ? c->value : "1";
    if (strcmp(v, "1") != 0 && strncmp(v, "units.", 6) != 0 && strcmp(v, "duration_ms") != 0 &&
        strcmp(v, "cpu_ms") != 0 && strcmp(v, "bytes_in") != 0 && strcmp(v, "bytes_out") != 0) {
        par_buf_appendf(err,
                        "metering.stripe.value: '%s' is not 1, units.<name>, duration_ms, "
                        "cpu_ms, bytes_in or bytes_out\n",
                        v);
        bad++;
    }
    return bad ? PAR_E_INVALID_ARGUMENT : PAR_OK;
}

static void form_add(par_buf_t *b, const char *key, const char *val)
{
    char *e = curl_easy_escape(NULL, val, 0);
    par_buf_appendf(b, "%s%s=%s", b->len ? "&" : "", key, e ? e : "");
    curl_free(e);
}

int par_stripe_event_body(const par_stripe_config_t *c, const json_t *rec, par_buf_t *body,
                          int *skip, par_buf_t *err)
{
    *skip = 0;
    const char *status = json_string_value(json_object_get(rec, "status"));
    if (!c->bill_failed && status && strcmp(status, "ok") != 0) {
        *skip = 1; /* the caller got an error: nothing to bill */
        return PAR_OK;
    }
    const char *agent = json_string_value(json_object_get(rec, "agent"));
    const char *event = c->event_name ? c->event_name : "par_invocation";
    const char *mapped = json_string_value(json_object_get(c->event_names, agent ? agent : ""));
    if (mapped)
        event = mapped;
    const char *field = c->customer_field ? c->customer_field : "tenant";
    const char *who = json_string_value(json_object_get(rec, field));
    const char *customer = who && *who ? who : NULL;
    if (c->customers)
        customer = json_string_value(json_object_get(c->customers, who ? who : ""));
    if (customer == NULL || *customer == '\0') {
        par_buf_appendf(err, "no Stripe customer for %s '%s' (metering.stripe.customers)", field,
                        who ? who : "");
        return PAR_E_NOT_FOUND;
    }
    const char *vf = c->value ? c->value : "1";
    double value = 1;
    if (strncmp(vf, "units.", 6) == 0)
        value = json_number_value(json_object_get(json_object_get(rec, "units"), vf + 6));
    else if (strcmp(vf, "1") != 0)
        value = json_number_value(json_object_get(rec, vf));
    if (value == 0) {
        *skip = 1;
        return PAR_OK;
    }
    char num[64];
    if (value == floor(value) && fabs(value) < 1e15)
        snprintf(num, sizeof(num), "%.0f", value);
    else
        snprintf(num, sizeof(num), "%.6f", value);
    char ts[32];
    snprintf(ts, sizeof(ts), "%lld",
             (long long)(json_integer_value(json_object_get(rec, "ts_ms")) / 1000));
    form_add(body, "event_name", event);
    form_add(body, "payload[stripe_customer_id]", customer);
    form_add(body, "payload[value]", num);
    form_add(body, "identifier", json_string_value(json_object_get(rec, "id")));
    form_add(body, "timestamp", ts);
    return PAR_OK;
}

/* ---- the exporter thread ------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    par_buf_t *b = ud;
    size_t len = size * n;
    if (b->len < BODY_CAP)
        par_buf_append(b, p, b->len + len > BODY_CAP ? BODY_CAP - b->len : len);
    return len;
}

/* "what (code N)": a transport error, or the endpoint's HTTP status. */
static void set_error(par_stripe_t *x, const char *what, long code)
{
    pthread_mutex_lock(&x->lock);
    snprintf(x->last_error, sizeof(x->last_error), "%s (%ld)", what, code);
    pthread_mutex_unlock(&x->lock);
}

/* Waits up to `ms` or until stopped; returns non-zero when stopping. */
static int nap(par_stripe_t *x, int64_t ms, int wake_on_kick)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&x->lock);
    while (!x->stop && !(wake_on_kick && x->kicked))
        if (pthread_cond_timedwait(&x->cond, &x->lock, &ts) != 0)
            break;
    if (wake_on_kick)
        x->kicked = 0;
    int stop = x->stop;
    pthread_mutex_unlock(&x->lock);
    return stop;
}

typedef enum { SENT, REFUSED, RETRY } outcome_t;

static outcome_t send_one(par_stripe_t *x, CURL *h, const char *form, const char *id, long *code,
                          par_buf_t *resp)
{
    char auth[1200], idem[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", x->cfg.api_key);
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", id);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, idem);
    char cerr[CURL_ERROR_SIZE] = "";
    par_buf_reset(resp);
    curl_easy_setopt(h, CURLOPT_URL, x->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, x->cfg.allow_http ? "https,http" : "https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)x->cfg.timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)x->cfg.timeout_ms);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (x->cfg.ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, x->cfg.ca_file);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "par/" PAR_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    *code = 0;
    if (cc != CURLE_OK) {
        set_error(x, *cerr ? cerr : curl_easy_strerror(cc), (long)cc);
        return RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    if (*code >= 200 && *code < 300) {
        pthread_mutex_lock(&x->lock);
        x->last_error[0] = '\0';
        pthread_mutex_unlock(&x->lock);
        return SENT;
    }
    set_error(x, "HTTP status", *code);
    if (*code == 429 || *code >= 500 || *code < 200)
        return RETRY;
    return REFUSED;
}

static void *exporter_main(void *arg)
{
    par_stripe_t *x = arg;
    par_buf_t err, form, resp;
    par_buf_init(&err, 4096);
    par_buf_init(&form, 64 * 1024);
    par_buf_init(&resp, BODY_CAP + 1);
    par_store_t *s = NULL;
    CURL *h = curl_easy_init();
    int64_t backoff = 0;
    while (!x->stop) {
        par_buf_reset(&err);
        if (s == NULL && par_store_open(x->path, 0, &s, &err) != PAR_OK) {
            par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err.len, err.data);
            if (nap(x, 5000, 0))
                break;
            continue;
        }
        json_t *rows = NULL, *st = NULL;
        if (par_store_export_state(s, "stripe", &st, &err) == PAR_OK)
            atomic_store(&x->pending, json_integer_value(json_object_get(st, "pending")));
        json_decref(st);
        if (par_store_next(s, "stripe", BATCH, &rows, &err) != PAR_OK) {
            par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err.len, err.data);
            json_decref(rows);
            if (nap(x, 1000, 0))
                break;
            continue;
        }
        if (json_array_size(rows) == 0) {
            json_decref(rows);
            nap(x, 1000, 1);
            continue;
        }
        size_t i;
        json_t *rec;
        json_array_foreach(rows, i, rec)
        {
            if (x->stop)
                break;
            int64_t seq = json_integer_value(json_object_get(rec, "seq"));
            const char *id = json_string_value(json_object_get(rec, "id"));
            int skip = 0;
            par_buf_reset(&form);
            par_buf_reset(&err);
            int rc = par_stripe_event_body(&x->cfg, rec, &form, &skip, &err);
            int dead_status = 0;
            const char *dead_body = NULL;
            if (rc != PAR_OK) {
                dead_status = 422; /* not sent: a mapping problem, kept with its reason */
                par_buf_append(&err, "", 1);
                dead_body = err.data;
            } else if (!skip) {
                par_buf_append(&form, "", 1);
                long code;
                outcome_t o;
                while ((o = send_one(x, h, form.data, id, &code, &resp)) == RETRY) {
                    atomic_fetch_add(&counts[PAR_EXPORT_RETRY], 1);
                    /* exponential backoff with full jitter */
                    backoff = backoff ? backoff * 2 : x->cfg.backoff_min_ms;
                    if (backoff > x->cfg.backoff_max_ms)
                        backoff = x->cfg.backoff_max_ms;
                    int64_t wait =
                        backoff / 2 + (int64_t)(par_trace_rand64() % (uint64_t)(backoff / 2 + 1));
                    if (nap(x, wait, 0))
                        break;
                }
                if (o == RETRY) /* stopping */
                    break;
                backoff = 0;
                if (o == REFUSED) {
                    dead_status = (int)code;
                    par_buf_append(&resp, "", 1);
                    dead_body = resp.data;
                }
            }
            par_buf_t aerr;
            par_buf_init(&aerr, 4096);
            if (par_store_ack(s, "stripe", seq, dead_status, dead_body, &aerr) != PAR_OK) {
                par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)aerr.len, aerr.data);
                par_buf_free(&aerr);
                break; /* re-read from the cursor: the record is sent again (same identifier) */
            }
            par_buf_free(&aerr);
            atomic_fetch_add(&counts[dead_status ? PAR_EXPORT_DEAD
                                     : skip      ? PAR_EXPORT_SKIPPED
                                                 : PAR_EXPORT_OK],
                             1);
            if (dead_status) {
                par_logline_t l;
                if (par_log_begin(&l, PAR_LOG_WARN, "usage record refused by the meter endpoint")) {
                    par_log_str(&l, "record_id", id);
                    par_log_int(&l, "http_status", dead_status);
                    par_log_str(&l, "detail", dead_body ? dead_body : "");
                    par_log_end(&l);
                }
            }
        }
        json_decref(rows);
    }
    curl_easy_cleanup(h);
    par_store_close(s);
    par_buf_free(&err);
    par_buf_free(&form);
    par_buf_free(&resp);
    return NULL;
}

int par_stripe_start(par_stripe_config_t *cfg, const char *path, par_stripe_t **out, par_buf_t *err)
{
    *out = NULL;
    int rc = par_stripe_config_check(cfg, err);
    if (rc != PAR_OK) {
        par_stripe_config_free(cfg);
        return rc;
    }
    par_stripe_t *x = calloc(1, sizeof(*x));
    x->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    if (x->cfg.timeout_ms == 0)
        x->cfg.timeout_ms = 10000;
    if (x->cfg.backoff_min_ms == 0)
        x->cfg.backoff_min_ms = 200;
    if (x->cfg.backoff_max_ms < x->cfg.backoff_min_ms)
        x->cfg.backoff_max_ms = x->cfg.backoff_min_ms > 30000 ? x->cfg.backoff_min_ms : 30000;
    const char *ep = x->cfg.endpoint ? x->cfg.endpoint : "https://api.stripe.com";
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/')
        n--;
    x->url = malloc(n + 32);
    snprintf(x->url, n + 32, "%.*s/v1/billing/meter_events", (int)n, ep);
    x->path = strdup(path);
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->cond, NULL);
    par_fetch_global_init();
    if (pthread_create(&x->thread, NULL, exporter_main, x) != 0) {
        par_buf_appends(err, "metering: cannot start the export thread");
        x->stop = 1;
        par_stripe_stop(x);
        return PAR_E_INTERNAL;
    }
    *out = x;
    return PAR_OK;
}

void par_stripe_wake(par_stripe_t *x)
{
    pthread_mutex_lock(&x->lock);
    x->kicked = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

void par_stripe_stop(par_stripe_t *x)
{
    if (x == NULL)
        return;
    pthread_mutex_lock(&x->lock);
    int started = !x->stop;
    x->stop = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
    if (started)
        pthread_join(x->thread, NULL);
    par_stripe_config_free(&x->cfg);
    free(x->url);
    free(x->path);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->cond);
    free(x);
}

int64_t par_stripe_pending(par_stripe_t *x)
{
    return atomic_load(&x->pending);
}

void par_stripe_last_error(par_stripe_t *x, char *out, size_t cap)
{
    pthread_mutex_lock(&x->lock);
    snprintf(out, cap, "%s", x->last_error);
    pthread_mutex_unlock(&x->lock);
}
