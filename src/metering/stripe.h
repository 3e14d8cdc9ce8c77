/*
 * metering/stripe.h — exports usage records to Stripe meter events.
 *
 * One thread with its own database connection reads root records after the
 * persisted cursor "stripe" and sends meter events as `POST
 * {endpoint}/v1/billing/meter_events` (form-encoded; `identifier` and the
 * `Idempotency-Key` header carry the same value), up to `concurrency` at a
 * time (sender.h).
 *
 * Aggregated (the default): records are folded, in one transaction with the
 * cursor, into windows of (customer, event name, window start); a window is
 * sealed once it ended `grace` ago and sent as one event with the summed
 * value and an identifier fixed from the node id, customer, event, window
 * start and part when the window was opened. A record folded after its window
 * was sealed opens a late part (its own event, part 1, 2...). A window's state
 * moves to sent only after the endpoint's 2xx; a crash in between re-sends the
 * same identifier, which Stripe deduplicates.
 *
 * Per record (`aggregate: off`): each record is an event whose identifier is
 * the record id; the cursor moves only over a contiguous prefix of records
 * accepted (2xx) or refused for good (4xx other than 429: a dead letter).
 *
 * 429 (Retry-After), 5xx and transport failures are retried, nothing is
 * skipped. Never touches invocations: it only reads what the metering writer
 * committed.
 */
#ifndef PAR_METERING_STRIPE_H
#define PAR_METERING_STRIPE_H

#include <stdint.h>

#include <jansson.h>

#include "util/buf.h"

typedef struct par_stripe_config {
    char *api_key;        /* required: enables the export */
    char *endpoint;       /* default https://api.stripe.com */
    char *event_name;     /* default "par_invocation" */
    json_t *event_names;  /* object: agent id → event name, or NULL */
    char *customer_field; /* record field naming the customer: "tenant" (default) | "subject" */
    json_t *customers;    /* object: field value → Stripe customer id; NULL: the value itself */
    char *
        value; /* "1" (default), "units.<name>", "duration_ms", "cpu_ms", "bytes_in", "bytes_out" */
    int bill_failed;     /* also export invocations that failed; default 0: only status ok */
    int allow_http;      /* accept a plain http:// endpoint (a local test server) */
    char *ca_file;       /* trust anchors for the endpoint, NULL: the system's */
    uint32_t timeout_ms; /* one request, default 10000 */
    uint32_t backoff_min_ms, backoff_max_ms; /* default 200, 30000 */
    uint32_t concurrency;                    /* requests in flight, default 8 */
    int aggregate;                           /* one event per window (default in config) */
    uint32_t window_ms, grace_ms;            /* default 60000, 30000 */
    char *node_id;                           /* this node's part of window identifiers */
} par_stripe_config_t;

/* The start of the window holding ts_ms (floor, also before 1970). Pure. */
int64_t par_stripe_window_start(int64_t ts_ms, int64_t window_ms);

/* A window part's identifier: "w<start s>-<part>-<32 hex of SHA-256 over node
 * id, customer, event, window start and part>", under 100 characters as
 * Stripe requires; the same inputs always give the same identifier, two nodes
 * never share one. Pure. */
#define PAR_WINDOW_ID_MAX 80
void par_stripe_window_id(const char *node_id, const char *customer, const char *event,
                          int64_t window_start, int part, char out[PAR_WINDOW_ID_MAX]);

/* What a record bills: its customer, event name and value, or the reason it
 * bills nothing (as par_stripe_event_body). Pure. */
int par_stripe_record_value(const par_stripe_config_t *c, const json_t *rec, const char **customer,
                            const char **event, double *value, int *skip, par_buf_t *err);

/* The form body of a window part's event (a row of par_store_windows_due). Pure. */
void par_stripe_window_body(const json_t *row, par_buf_t *body);

/* Checks a configuration; appends what is wrong to `err`. */
int par_stripe_config_check(const par_stripe_config_t *c, par_buf_t *err);
void par_stripe_config_free(par_stripe_config_t *c);

/* The form body of one record's meter event, or the reason it has none:
 * returns PAR_OK and the body; PAR_E_NOT_FOUND with `err` when the record
 * maps to no customer (it becomes a dead letter); *skip = 1 when its value is
 * 0 or it failed and failures are not billed (nothing to bill). Pure; exposed
 * for the unit tests. */
int par_stripe_event_body(const par_stripe_config_t *c, const json_t *rec, par_buf_t *body,
                          int *skip, par_buf_t *err);

typedef struct par_stripe par_stripe_t;

/* Starts the exporter on the database at `path`; takes ownership of cfg's
 * contents (also on failure). */
int par_stripe_start(par_stripe_config_t *cfg, const char *path, par_stripe_t **out,
                     par_buf_t *err);
struct par_export_db_ops;
/* The same on another bookkeeping database (export_db.h): `where` is its path
 * or conninfo. With PostgreSQL, the exporter exports only while it holds the
 * fleet's leader lock. */
int par_stripe_start_on(par_stripe_config_t *cfg, const struct par_export_db_ops *ops,
                        const char *where, par_stripe_t **out, par_buf_t *err);
/* 1 while this node exports (always once started on SQLite; on PostgreSQL,
 * while it holds the leader lock). Any thread; x may be NULL. */
int par_stripe_leads(par_stripe_t *x);
/* "sqlite" or "postgres": where the export's bookkeeping lives. */
const char *par_stripe_store(par_stripe_t *x);
/* Tells the exporter that new records were committed. Any thread. */
void par_stripe_wake(par_stripe_t *x);
/* Stops the exporter (an in-flight request is abandoned: it is re-sent at the
 * next start, and deduplicated by Stripe). */
void par_stripe_stop(par_stripe_t *x);
/* Root records not yet exported, as of the exporter's last pass. */
int64_t par_stripe_pending(par_stripe_t *x);
/* Non-zero when records are aggregated into windows. */
int par_stripe_aggregated(par_stripe_t *x);
/* Records covered by accepted events per second, over the last minute. */
double par_stripe_rate(par_stripe_t *x);
/* Last error (transport or HTTP) as text, "" when the last attempt succeeded;
 * copied into out[cap]. */
void par_stripe_last_error(par_stripe_t *x, char *out, size_t cap);

enum { PAR_EXPORT_OK, PAR_EXPORT_RETRY, PAR_EXPORT_DEAD, PAR_EXPORT_SKIPPED, PAR_EXPORT_NRESULTS };
/* Process-wide export attempts by result (par_metering_export_total). */
uint64_t par_stripe_count(int result);
const char *par_stripe_result_name(int result);

#endif
