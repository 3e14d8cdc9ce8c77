/*
 * metering/sender.h — sends meter events to the endpoint, several at a time.
 *
 * Owned and used by the exporter thread only (stripe.c). One libcurl multi
 * handle keeps up to `concurrency` requests in flight over reused
 * connections. An item whose answer is 2xx is SENT, a 4xx other than 429 is
 * REFUSED (both final: `done` is called once, in completion order, which is
 * not the order of the items); 429, 5xx, timeouts and transport failures are
 * retried: no new request starts before the gate, which a 429 moves by its
 * Retry-After and any other failure by an exponential backoff with jitter.
 * Never touches the database: the caller records outcomes in `done`.
 */
#ifndef PAR_METERING_SENDER_H
#define PAR_METERING_SENDER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metering/stripe.h"
#include "util/buf.h"

enum { PAR_SEND_SENT = 1, PAR_SEND_REFUSED = 2 };

typedef struct par_send_item {
    char *form;   /* the form body, owned by the caller */
    char id[128]; /* the identifier, also the Idempotency-Key */
    int64_t key;  /* the caller's: a record's seq or a window's id */
} par_send_item_t;

/* Called once per item when its outcome is final. `body` is the refusal (may
 * be cut) for REFUSED. Returns non-zero to stop the run (e.g. the database
 * failed: what is not done is sent again later, with the same identifier). */
typedef int (*par_send_done_fn)(void *ud, size_t index, int outcome, long http_status,
                                const char *body);

typedef struct par_sender par_sender_t;

/* cfg and url must outlive the sender. NULL when libcurl cannot be loaded. */
par_sender_t *par_sender_new(const par_stripe_config_t *cfg, const char *url);
void par_sender_free(par_sender_t *s);

/* Sends items[0..n) until each is final, `stop` is set or `done` asks to stop.
 * Returns the number of items made final. */
size_t par_sender_run(par_sender_t *s, const par_send_item_t *items, size_t n,
                      par_send_done_fn done, void *ud, atomic_int *stop);

/* The last failure as text ("" after a success); copied into out[cap]. Any thread. */
void par_sender_last_error(par_sender_t *s, char *out, size_t cap);

/* Process-wide: retries (429, 5xx, transport) and 429s seen. */
uint64_t par_sender_retries(void);

#endif
