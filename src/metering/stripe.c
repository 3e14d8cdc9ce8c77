/*
 * metering/stripe.c — see stripe.h.
 */
#include "metering/stripe.h"

#include <math.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

#include "metering/export_db.h"
#include "metering/sender.h"
#include "metering/store.h"
#include "obs/log.h"
#include "util/curl.h"
#include "util/clock.h"

#define BATCH 1024      /* records sent per pass, per record */
#define FOLD_BATCH 8192 /* records folded into windows per transaction */
#define WINDOW_BATCH 256
#define RATE_SECONDS 60
#define LEAD_POLL_MS 1000 /* a follower asks for the leader lock this often */

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
    char last_error[512]; /* under lock: a database failure */
    par_sender_t *sender;
    int started;
    const par_export_db_ops_t *ops; /* where the bookkeeping lives */
    atomic_int leader;              /* 1 while this node exports */
    int64_t rate_sec[RATE_SECONDS]; /* under lock: records covered per second */
    int64_t rate_at[RATE_SECONDS];
};

static atomic_ullong counts[PAR_EXPORT_NRESULTS];

static void count_covered(par_stripe_t *x, int64_t records)
{
    int64_t sec = par_wall_ms() / 1000;
    pthread_mutex_lock(&x->lock);
    int i = (int)(sec % RATE_SECONDS);
    if (x->rate_at[i] != sec)
        x->rate_at[i] = sec, x->rate_sec[i] = 0;
    x->rate_sec[i] += records;
    pthread_mutex_unlock(&x->lock);
}

double par_stripe_rate(par_stripe_t *x)
{
    int64_t sec = par_wall_ms() / 1000, sum = 0;
    pthread_mutex_lock(&x->lock);
    for (int i = 0; i < RATE_SECONDS; i++)
        if (sec - x->rate_at[i] < RATE_SECONDS)
            sum += x->rate_sec[i];
    pthread_mutex_unlock(&x->lock);
    return (double)sum / RATE_SECONDS;
}

uint64_t par_stripe_count(int result)
{
    if (result == PAR_EXPORT_RETRY)
        return par_sender_retries();
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
    free(c->value), free(c->ca_file), free(c->node_id);
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
    if (c->aggregate && (c->window_ms < 1000 || c->node_id == NULL || *c->node_id == '\0')) {
        par_buf_appends(err, "metering.stripe.aggregate: a window of at least 1s and a node id "
                             "(metering.node_id) are required\n");
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

int par_stripe_record_value(const par_stripe_config_t *c, const json_t *rec, const char **customer,
                            const char **event, double *value, int *skip, par_buf_t *err)
{
    *skip = 0;
    const char *status = json_string_value(json_object_get(rec, "status"));
    if (!c->bill_failed && status && strcmp(status, "ok") != 0) {
        *skip = 1; /* the caller got an error: nothing to bill */
        return PAR_OK;
    }
    const char *agent = json_string_value(json_object_get(rec, "agent"));
    *event = c->event_name ? c->event_name : "par_invocation";
    const char *mapped = json_string_value(json_object_get(c->event_names, agent ? agent : ""));
    if (mapped)
        *event = mapped;
    const char *field = c->customer_field ? c->customer_field : "tenant";
    const char *who = json_string_value(json_object_get(rec, field));
    *customer = who && *who ? who : NULL;
    if (c->customers)
        *customer = json_string_value(json_object_get(c->customers, who ? who : ""));
    if (*customer == NULL || **customer == '\0') {
        par_buf_appendf(err, "no Stripe customer for %s '%s' (metering.stripe.customers)", field,
                        who ? who : "");
        return PAR_E_NOT_FOUND;
    }
    const char *vf = c->value ? c->value : "1";
    *value = 1;
    if (strncmp(vf, "units.", 6) == 0)
        *value = json_number_value(json_object_get(json_object_get(rec, "units"), vf + 6));
    else if (strcmp(vf, "1") != 0)
        *value = json_number_value(json_object_get(rec, vf));
    if (*value == 0)
        *skip = 1;
    return PAR_OK;
}

static void format_value(double value, char num[64])
{
    if (value == floor(value) && fabs(value) < 1e15)
        snprintf(num, 64, "%.0f", value);
    else
        snprintf(num, 64, "%.6f", value);
}

static void event_form(par_buf_t *body, const char *event, const char *customer, double value,
                       const char *identifier, int64_t ts_s)
{
    char num[64], ts[32];
    format_value(value, num);
    snprintf(ts, sizeof(ts), "%lld", (long long)ts_s);
    form_add(body, "event_name", event);
    form_add(body, "payload[stripe_customer_id]", customer);
    form_add(body, "payload[value]", num);
    form_add(body, "identifier", identifier);
    form_add(body, "timestamp", ts);
}

int par_stripe_event_body(const par_stripe_config_t *c, const json_t *rec, par_buf_t *body,
                          int *skip, par_buf_t *err)
{
    const char *customer = NULL, *event = NULL;
    double value = 0;
    int rc = par_stripe_record_value(c, rec, &customer, &event, &value, skip, err);
    if (rc != PAR_OK || *skip)
        return rc;
    event_form(body, event, customer, value, json_string_value(json_object_get(rec, "id")),
               json_integer_value(json_object_get(rec, "ts_ms")) / 1000);
    return PAR_OK;
}

int64_t par_stripe_window_start(int64_t ts_ms, int64_t window_ms)
{
    int64_t q = ts_ms / window_ms;
    if (ts_ms % window_ms != 0 && ts_ms < 0)
        q--;
    return q * window_ms;
}

void par_stripe_window_id(const char *node_id, const char *customer, const char *event,
                          int64_t window_start, int part, char out[PAR_WINDOW_ID_MAX])
{
    par_buf_t in;
    par_buf_init(&in, 256);
    const char *parts[] = {"par-window-v1", node_id, customer, event};
    for (size_t i = 0; i < sizeof(parts) / sizeof(*parts); i++)
        par_buf_append(&in, parts[i], strlen(parts[i]) + 1); /* with the NUL: unambiguous */
    par_buf_appendf(&in, "%lld/%d", (long long)window_start, part);
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)in.data, in.len, d);
    par_buf_free(&in);
    int64_t ws_s = par_stripe_window_start(window_start, 1000) / 1000;
    int off = snprintf(out, PAR_WINDOW_ID_MAX, "w%lld-%d-", (long long)ws_s, part);
    for (int i = 0; i < 16 && off + 2 < PAR_WINDOW_ID_MAX; i++)
        off += snprintf(out + off, (size_t)(PAR_WINDOW_ID_MAX - off), "%02x", d[i]);
}

void par_stripe_window_body(const json_t *row, par_buf_t *body)
{
    event_form(
        body, json_string_value(json_object_get(row, "event")),
        json_string_value(json_object_get(row, "customer")),
        json_number_value(json_object_get(row, "value")),
        json_string_value(json_object_get(row, "identifier")),
        par_stripe_window_start(json_integer_value(json_object_get(row, "window_start")), 1000) /
            1000);
}

/* ---- the exporter thread ------------------------------------------------------------ */

static void set_error(par_stripe_t *x, const char *what)
{
    pthread_mutex_lock(&x->lock);
    snprintf(x->last_error, sizeof(x->last_error), "%s", what);
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

static void log_dead(const char *what, const char *id, int status, const char *detail)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_WARN, what)) {
        par_log_str(&l, "identifier", id);
        par_log_int(&l, "http_status", status);
        par_log_str(&l, "detail", detail ? detail : "");
        par_log_end(&l);
    }
}

/* ---- aggregated: fold records into windows, send sealed windows ---------------------- */

/* One record into its window, or past the cursor as skipped or dead. */
static int fold_one(par_stripe_t *x, void *s, const json_t *rec, par_buf_t *err)
{
    int64_t seq = json_integer_value(json_object_get(rec, "seq"));
    const char *customer = NULL, *event = NULL;
    double value = 0;
    int skip = 0;
    par_buf_t why;
    par_buf_init(&why, 256);
    int rc = par_stripe_record_value(&x->cfg, rec, &customer, &event, &value, &skip, &why);
    if (rc != PAR_OK) { /* not sent: a mapping problem, kept with its reason */
        par_buf_append(&why, "", 1);
        rc = par__export_fold(x->ops, s, "stripe", seq, 422, why.data, err);
        atomic_fetch_add(&counts[PAR_EXPORT_DEAD], 1);
        log_dead("usage record has no Stripe customer",
                 json_string_value(json_object_get(rec, "id")), 422, why.data);
    } else if (skip) {
        rc = par__export_fold(x->ops, s, "stripe", seq, 0, NULL, err);
        atomic_fetch_add(&counts[PAR_EXPORT_SKIPPED], 1);
    } else {
        int64_t ts = json_integer_value(json_object_get(rec, "ts_ms"));
        par_window_t w = {customer, event, par_stripe_window_start(ts, x->cfg.window_ms),
                          x->cfg.window_ms};
        rc = x->ops->window_add(s, &w, value, seq, x->cfg.node_id, err);
        if (rc == PAR_OK)
            rc = par__export_fold(x->ops, s, "stripe", seq, 0, NULL, err);
    }
    par_buf_free(&why);
    return rc;
}

/* Folds what follows the cursor and seals closed windows, in one transaction.
 * Returns the number of records folded, or -1. */
static int64_t fold(par_stripe_t *x, void *s, par_buf_t *err)
{
    json_t *rows = NULL, *rec;
    if (x->ops->next(s, "stripe", x->cfg.aggregate ? FOLD_BATCH : 0, &rows, err) != PAR_OK)
        return -1;
    if (x->ops->begin(s, err) != PAR_OK) {
        json_decref(rows);
        return -1;
    }
    size_t i;
    int rc = PAR_OK;
    json_array_foreach(rows, i, rec) if (rc == PAR_OK) rc = fold_one(x, s, rec, err);
    /* per record (aggregate off): what an earlier run left in windows is sent now */
    int64_t now = x->cfg.aggregate ? par_wall_ms() : INT64_MAX / 2;
    if (rc == PAR_OK)
        rc = x->ops->windows_seal(s, now, x->cfg.aggregate ? x->cfg.grace_ms : 0, err);
    int64_t n = (int64_t)json_array_size(rows);
    json_decref(rows);
    if (rc != PAR_OK) {
        x->ops->rollback(s);
        return -1;
    }
    return x->ops->commit(s, err) == PAR_OK ? n : -1;
}

typedef struct window_run {
    par_stripe_t *x;
    void *s;
    json_t *rows;
} window_run_t;

static int window_done(void *ud, size_t index, int outcome, long code, const char *body)
{
    window_run_t *r = ud;
    json_t *row = json_array_get(r->rows, index);
    int64_t wid = json_integer_value(json_object_get(row, "wid"));
    int status = outcome == PAR_SEND_SENT ? 0 : (int)code;
    par_buf_t err;
    par_buf_init(&err, 256);
    int rc = r->x->ops->window_done(r->s, "stripe", wid, status, body, &err);
    if (rc != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err.len, err.data);
        set_error(r->x, "database");
    }
    par_buf_free(&err);
    if (rc != PAR_OK)
        return 1; /* the window stays sealed: sent again, same identifier */
    int64_t records = json_integer_value(json_object_get(row, "records"));
    atomic_fetch_add(&counts[status ? PAR_EXPORT_DEAD : PAR_EXPORT_OK], 1);
    if (status)
        log_dead("usage window refused by the meter endpoint",
                 json_string_value(json_object_get(row, "identifier")), status, body);
    else
        count_covered(r->x, records);
    return 0;
}

/* Sends the sealed windows. Returns how many were due, or -1. */
static int64_t send_windows(par_stripe_t *x, void *s, par_buf_t *err)
{
    window_run_t r = {x, s, NULL};
    if (x->ops->windows_due(s, WINDOW_BATCH, &r.rows, err) != PAR_OK)
        return -1;
    size_t n = json_array_size(r.rows);
    par_send_item_t *items = calloc(n + 1, sizeof(*items));
    par_buf_t *forms = calloc(n + 1, sizeof(*forms));
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(r.rows, i);
        par_buf_init(&forms[i], 512);
        par_stripe_window_body(row, &forms[i]);
        par_buf_append(&forms[i], "", 1);
        items[i].form = forms[i].data;
        snprintf(items[i].id, sizeof(items[i].id), "%s",
                 json_string_value(json_object_get(row, "identifier")));
    }
    if (n)
        par_sender_run(x->sender, items, n, window_done, &r, &x->stop);
    for (size_t i = 0; i < n; i++)
        par_buf_free(&forms[i]);
    free(forms);
    free(items);
    json_decref(r.rows);
    return (int64_t)n;
}

/* ---- per record: pipelined, the cursor over the acknowledged prefix ------------------ */

typedef struct record_run {
    par_stripe_t *x;
    void *s;
    json_t *rows;
    size_t n, prefix;
    par_store_ack_t *acks; /* per row; http_status -1: not final yet */
    char **bodies;
    size_t *row_of; /* item → row */
} record_run_t;

/* Acknowledges the rows made final since the last call, as far as the prefix
 * is contiguous. Non-zero when the database failed. */
static int ack_prefix(record_run_t *r)
{
    size_t from = r->prefix;
    while (r->prefix < r->n && r->acks[r->prefix].http_status >= 0)
        r->prefix++;
    if (r->prefix == from)
        return 0;
    par_buf_t err;
    par_buf_init(&err, 256);
    int rc = par__export_ack(r->x->ops, r->s, "stripe", r->acks + from, r->prefix - from, &err);
    if (rc != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err.len, err.data);
        set_error(r->x, "database");
    }
    par_buf_free(&err);
    return rc != PAR_OK;
}

static int record_done(void *ud, size_t index, int outcome, long code, const char *body)
{
    record_run_t *r = ud;
    size_t row = r->row_of[index];
    r->acks[row].http_status = outcome == PAR_SEND_SENT ? 0 : (int)code;
    if (outcome != PAR_SEND_SENT) {
        r->bodies[row] = strdup(body ? body : "");
        r->acks[row].body = r->bodies[row];
        log_dead("usage record refused by the meter endpoint",
                 json_string_value(json_object_get(json_array_get(r->rows, row), "id")), (int)code,
                 body);
    } else
        count_covered(r->x, 1);
    atomic_fetch_add(&counts[outcome == PAR_SEND_SENT ? PAR_EXPORT_OK : PAR_EXPORT_DEAD], 1);
    return ack_prefix(r);
}

/* Prepares one row: its form in items[*k] when it is to be sent, else final now. */
static void prepare_row(record_run_t *r, size_t row, par_send_item_t *items, par_buf_t *forms,
                        size_t *k)
{
    json_t *rec = json_array_get(r->rows, row);
    r->acks[row].seq = json_integer_value(json_object_get(rec, "seq"));
    r->acks[row].http_status = -1;
    par_buf_t why;
    par_buf_init(&why, 256);
    int skip = 0;
    par_buf_init(&forms[*k], 512);
    if (par_stripe_event_body(&r->x->cfg, rec, &forms[*k], &skip, &why) != PAR_OK) {
        par_buf_append(&why, "", 1);
        r->bodies[row] = strdup(why.data);
        r->acks[row].body = r->bodies[row];
        r->acks[row].http_status = 422; /* not sent: a mapping problem, kept with its reason */
        atomic_fetch_add(&counts[PAR_EXPORT_DEAD], 1);
        log_dead("usage record has no Stripe customer",
                 json_string_value(json_object_get(rec, "id")), 422, why.data);
    } else if (skip) {
        r->acks[row].http_status = 0;
        atomic_fetch_add(&counts[PAR_EXPORT_SKIPPED], 1);
    } else {
        par_buf_append(&forms[*k], "", 1);
        items[*k].form = forms[*k].data;
        snprintf(items[*k].id, sizeof(items[*k].id), "%s",
                 json_string_value(json_object_get(rec, "id")));
        r->row_of[*k] = row;
        (*k)++;
        par_buf_init(&forms[*k], 0);
    }
    par_buf_free(&why);
}

/* Sends the records after the cursor. Returns how many were read, or -1. */
static int64_t send_records(par_stripe_t *x, void *s, par_buf_t *err)
{
    record_run_t r = {.x = x, .s = s};
    if (x->ops->next(s, "stripe", BATCH, &r.rows, err) != PAR_OK)
        return -1;
    r.n = json_array_size(r.rows);
    r.acks = calloc(r.n + 1, sizeof(*r.acks));
    r.bodies = calloc(r.n + 1, sizeof(*r.bodies));
    r.row_of = calloc(r.n + 1, sizeof(*r.row_of));
    par_send_item_t *items = calloc(r.n + 1, sizeof(*items));
    par_buf_t *forms = calloc(r.n + 1, sizeof(*forms));
    size_t k = 0;
    for (size_t i = 0; i < r.n; i++)
        prepare_row(&r, i, items, forms, &k);
    int failed = ack_prefix(&r); /* a leading run of skipped or unmapped records */
    if (!failed && k)
        par_sender_run(x->sender, items, k, record_done, &r, &x->stop);
    for (size_t i = 0; i <= k && i <= r.n; i++)
        par_buf_free(&forms[i]);
    for (size_t i = 0; i < r.n; i++)
        free(r.bodies[i]);
    free(forms), free(items), free(r.acks), free(r.bodies), free(r.row_of);
    json_decref(r.rows);
    return failed ? -1 : (int64_t)r.n;
}

/* One pass; returns the work done (0: idle) or -1 after a database failure. */
static int64_t pass(par_stripe_t *x, void *s, par_buf_t *err)
{
    json_t *st = NULL;
    if (x->ops->export_state(s, "stripe", &st, err) == PAR_OK)
        atomic_store(&x->pending, json_integer_value(json_object_get(st, "pending")));
    json_decref(st);
    int64_t folded = fold(x, s, err);
    if (folded < 0)
        return -1;
    int64_t windows = send_windows(x, s, err);
    if (windows < 0 || x->cfg.aggregate)
        return windows < 0 ? -1 : folded + windows;
    return send_records(x, s, err);
}

/* Closes a connection that failed and gives up leadership with it. */
static void drop_db(par_stripe_t *x, void **db)
{
    x->ops->close(*db);
    *db = NULL;
    atomic_store(&x->leader, 0);
}

/* Opens the database and waits to lead. Returns 1 when this node exports now,
 * 0 to try again after a nap, -1 when stopping. */
static int ready(par_stripe_t *x, void **db, par_buf_t *err)
{
    if (*db == NULL && x->ops->open(x->path, x->cfg.node_id, db, err) != PAR_OK) {
        par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err->len, err->data);
        set_error(x, "database");
        return nap(x, 5000, 0) ? -1 : 0;
    }
    int lead = x->ops->lead(*db, err);
    if (lead < 0) {
        par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err->len, err->data);
        drop_db(x, db);
        return nap(x, 1000, 0) ? -1 : 0;
    }
    /* a single node always leads its own export: only a fleet's change is news */
    if (lead != atomic_exchange(&x->leader, lead) && x->ops != &par__export_sqlite) {
        par_logline_t l;
        if (par_log_begin(&l, PAR_LOG_INFO,
                          lead ? "metering export: this node leads the fleet's export"
                               : "metering export: another node leads the fleet's export")) {
            par_log_str(&l, "node_id", x->cfg.node_id ? x->cfg.node_id : "");
            par_log_end(&l);
        }
    }
    if (!lead)
        return nap(x, LEAD_POLL_MS, 0) ? -1 : 0;
    return 1;
}

static void *exporter_main(void *arg)
{
    par_stripe_t *x = arg;
    par_buf_t err;
    par_buf_init(&err, 4096);
    void *s = NULL;
    while (!x->stop) {
        par_buf_reset(&err);
        int go = ready(x, &s, &err);
        if (go < 0)
            break;
        if (go == 0)
            continue;
        par_buf_reset(&err);
        int64_t done = pass(x, s, &err);
        if (done >= 0)
            set_error(x, "");
        if (done < 0) {
            if (err.len)
                par_log_msg(PAR_LOG_ERROR, "metering export: %.*s", (int)err.len, err.data);
            if (x->ops->lead(s, &err) < 0) /* the connection is gone: reconnect */
                drop_db(x, &s);
            nap(x, 1000, 0);
        } else if (x->cfg.aggregate)
            nap(x, done ? 50 : 250, 0); /* windows close with time, not with records */
        else if (done == 0)
            nap(x, 1000, 1);
    }
    x->ops->close(s);
    atomic_store(&x->leader, 0);
    par_buf_free(&err);
    return NULL;
}

int par_stripe_start(par_stripe_config_t *cfg, const char *path, par_stripe_t **out, par_buf_t *err)
{
    return par_stripe_start_on(cfg, &par__export_sqlite, path, out, err);
}

int par_stripe_start_on(par_stripe_config_t *cfg, const par_export_db_ops_t *ops, const char *where,
                        par_stripe_t **out, par_buf_t *err)
{
    *out = NULL;
    int rc = par_stripe_config_check(cfg, err);
    if (rc != PAR_OK) {
        par_stripe_config_free(cfg);
        return rc;
    }
    par_stripe_t *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        par_stripe_config_free(cfg);
        return PAR_E_NO_MEMORY;
    }
    x->ops = ops;
    x->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    if (x->cfg.timeout_ms == 0)
        x->cfg.timeout_ms = 10000;
    if (x->cfg.backoff_min_ms == 0)
        x->cfg.backoff_min_ms = 200;
    if (x->cfg.backoff_max_ms < x->cfg.backoff_min_ms)
        x->cfg.backoff_max_ms = x->cfg.backoff_min_ms > 30000 ? x->cfg.backoff_min_ms : 30000;
    if (x->cfg.concurrency == 0)
        x->cfg.concurrency = 8;
    const char *ep = x->cfg.endpoint ? x->cfg.endpoint : "https://api.stripe.com";
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/')
        n--;
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->cond, NULL);
    x->url = malloc(n + 32);
    x->path = strdup(where);
    if (x->url == NULL || x->path == NULL) {
        par_stripe_stop(x);
        return PAR_E_NO_MEMORY;
    }
    snprintf(x->url, n + 32, "%.*s/v1/billing/meter_events", (int)n, ep);
    par_curl_load(); /* a failure shows as par_sender_new() == NULL, with par_curl_error() */
    x->sender = par_sender_new(&x->cfg, x->url);
    if (x->sender == NULL) {
        par_buf_appendf(err, "metering: the Stripe export needs libcurl: %s",
                        par_curl_error() ? par_curl_error() : "cannot start a transfer");
        par_stripe_stop(x);
        return PAR_E_INTERNAL;
    }
    x->started = pthread_create(&x->thread, NULL, exporter_main, x) == 0;
    if (!x->started) {
        par_buf_appends(err, "metering: cannot start the export thread");
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
    int started = x->started;
    x->stop = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
    if (started)
        pthread_join(x->thread, NULL);
    par_sender_free(x->sender);
    par_stripe_config_free(&x->cfg);
    free(x->url);
    free(x->path);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->cond);
    free(x);
}

int par_stripe_leads(par_stripe_t *x)
{
    return x != NULL && atomic_load(&x->leader);
}

const char *par_stripe_store(par_stripe_t *x)
{
    return x->ops->name;
}

int par_stripe_aggregated(par_stripe_t *x)
{
    return x->cfg.aggregate;
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
    if (*out == '\0')
        par_sender_last_error(x->sender, out, cap);
}
