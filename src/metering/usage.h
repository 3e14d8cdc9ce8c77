/*
 * metering/usage.h — one usage record: what one invocation cost.
 *
 * Built by the runtime when an invocation finishes (runtime/call.c), queued to
 * the metering writer (meter.h), stored by store.h. Owned by whoever holds it;
 * par_usage_free() releases it. Any thread.
 */
#ifndef PAR_METERING_USAGE_H
#define PAR_METERING_USAGE_H

#include <stdint.h>

typedef struct par_usage par_usage_t;

/* Called by the metering writer once the record is committed (or could not be). */
typedef void (*par_usage_committed_cb)(void *arg);

struct par_usage {
    char id[33];        /* unique: the Stripe `identifier` */
    char parent_id[33]; /* "" for a root invocation (an HTTP request, par_call) */
    char root_id[33];   /* the root invocation's id (its own id for a root) */
    char request_id[129];
    char trace_id[64];
    char span_id[17];
    int64_t ts_ms; /* start, Unix ms */
    char *subject; /* owned, NULL when unknown */
    char *tenant;  /* owned, NULL when unknown */
    char agent[201];
    char *package, *version; /* owned */
    char status[40];         /* "ok" or the stable error name */
    double duration_ms;
    double cpu_ms; /* < 0: unknown */
    int64_t bytes_in, bytes_out;
    char *units;    /* owned JSON object text, NULL when the agent reported none */
    int64_t events; /* a run's events (runtime/runs.h), 0 for an invocation that is not one */

    par_usage_committed_cb committed; /* NULL: nobody waits */
    void *arg;
    par_usage_t *_next;
    int _packed; /* par_usage_new: the strings live in the record's own block */
};

/* A record and copies of its strings in one allocation (NULL strings stay
 * NULL); the other fields are zero. NULL when out of memory. */
par_usage_t *par_usage_new(const char *subject, const char *tenant, const char *package,
                           const char *version, const char *units);

/* Frees a record from par_usage_new, or one whose strings were each malloc'd. */
void par_usage_free(par_usage_t *u);

#endif
