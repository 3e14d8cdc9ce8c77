/*
 * metering/stripe.h — exports usage records to Stripe meter events.
 *
 * One thread with its own database connection reads root records after the
 * persisted cursor "stripe", sends each as `POST {endpoint}/v1/billing/meter_events`
 * (form-encoded; `identifier` and the `Idempotency-Key` header are the record
 * id) and moves the cursor past it only once Stripe accepted it (2xx) or
 * refused it for good (4xx other than 429: a dead letter). 429, 5xx and
 * transport failures are retried with exponential backoff and jitter, the
 * cursor staying put, so a record is never skipped; a crash between Stripe's
 * answer and the cursor commit re-sends that one record, which Stripe
 * deduplicates by its identifier. Never touches invocations: it only reads
 * what the metering writer committed.
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
} par_stripe_config_t;

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
/* Tells the exporter that new records were committed. Any thread. */
void par_stripe_wake(par_stripe_t *x);
/* Stops the exporter (an in-flight request is abandoned: it is re-sent at the
 * next start, and deduplicated by Stripe). */
void par_stripe_stop(par_stripe_t *x);
/* Root records not yet exported, as of the exporter's last pass. */
int64_t par_stripe_pending(par_stripe_t *x);
/* Last error (transport or HTTP) as text, "" when the last attempt succeeded;
 * copied into out[cap]. */
void par_stripe_last_error(par_stripe_t *x, char *out, size_t cap);

enum { PAR_EXPORT_OK, PAR_EXPORT_RETRY, PAR_EXPORT_DEAD, PAR_EXPORT_SKIPPED, PAR_EXPORT_NRESULTS };
/* Process-wide export attempts by result (par_metering_export_total). */
uint64_t par_stripe_count(int result);
const char *par_stripe_result_name(int result);

#endif
