/*
 * runtime/runs_json.c — opening and closing the runs of a runtime, and what
 * the engine says about runs: par_run_json, par_run_answer, par_runs_list
 * and the runs' metrics families.
 *
 * Any thread. Builds its answers from the run's fields under the run's lock;
 * the output or error of an ended run is the data of its last event (the
 * answer run.completed carried, or the error body of run.failed and the
 * others), read from memory or, after a restart, from the event file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/metrics.h"
#include "runtime/runs_internal.h"
#include "runtime/runtime.h"

static int terminal(int status)
{
    return status >= PAR_RUN_SUCCEEDED;
}

/* ---- open, close -------------------------------------------------------------------- */

int par_runs_open(par_runtime_t *rt, par_runs_t **out, par_buf_t *err)
{
    par_runs_t *rs = calloc(1, sizeof(*rs));
    if (rs == NULL)
        return PAR_E_NO_MEMORY;
    rs->rt = rt;
    rs->memory_events = rt->cfg.run_memory_events ? rt->cfg.run_memory_events : 1;
    rs->retention_s = rt->cfg.run_retention_s;
    pthread_mutex_init(&rs->lock, NULL);
    /* the runs' thread waits on CLOCK_MONOTONIC deadlines (runs_store.c):
     * a condition on the default clock takes them for past times and spins */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rs->wake, &ca);
    pthread_condattr_destroy(&ca);
    int rc = asprintf(&rs->dir, "%s/runs", rt->state_dir) < 0 ? PAR_E_NO_MEMORY : PAR_OK;
    if (rc == PAR_OK)
        rc = par__runs_grow_locked(rs); /* not shared yet */
    if (rc == PAR_OK)
        rc = par__runs_store_open(rs, err);
    if (rc != PAR_OK) {
        par_runs_close(rs);
        return rc;
    }
    *out = rs;
    return PAR_OK;
}

void par_runs_close(par_runs_t *rs)
{
    if (rs == NULL)
        return;
    par__runs_store_stop(rs);
    for (par_run_t *r = rs->newest, *nx; r; r = nx) {
        nx = r->next;
        r->prev = r->next = r->hnext = NULL;
        par_run_unref(r); /* the table's */
    }
    free(rs->hash);
    free(rs->dir);
    pthread_mutex_destroy(&rs->lock);
    pthread_cond_destroy(&rs->wake);
    free(rs);
}

/* ---- one run --------------------------------------------------------------------------- */

/* RFC 3339 UTC with milliseconds, or null for 0. */
static json_t *time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char b[80];
    snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(b);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *parse_or_null(const char *s, size_t len)
{
    json_t *j = s ? json_loadb(s, len, 0, NULL) : NULL;
    return j ? j : json_null();
}

/* "output" or "error" of an ended run (mu held). */
static int add_result_locked(par_run_t *r, json_t *j)
{
    par_buf_t d;
    par_buf_init(&d, 0);
    json_t *v = NULL;
    if (par__run_event_data_locked(r, r->last_seq, &d) == PAR_OK)
        v = json_loadb(d.data ? d.data : "", d.len, 0, NULL);
    par_buf_free(&d);
    int rc = 0;
    if (r->status == PAR_RUN_SUCCEEDED) {
        json_t *o = v ? json_object_get(v, "output") : NULL;
        rc = json_object_set(j, "output", o ? o : json_null());
    } else {
        rc = json_object_set(j, "error", v ? v : json_null());
    }
    json_decref(v);
    return rc;
}

json_t *par_run_json(par_run_t *r)
{
    pthread_mutex_lock(&r->mu);
    json_t *usage = json_pack(
        "{s:o,s:o}", "duration_ms", r->duration_ms >= 0 ? json_real(r->duration_ms) : json_null(),
        "units", r->units ? parse_or_null(r->units, strlen(r->units)) : json_null());
    json_t *j = json_pack(
        "{s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:I,s:o,s:o}", "run_id", r->id, "agent_id", r->agent_id,
        "version", str_or_null(r->version), "status", par_run_status_name(r->status), "created_at",
        time_json(r->created_ms), "started_at", time_json(r->started_ms), "ended_at",
        time_json(r->ended_ms), "events", (json_int_t)r->last_seq, "metadata",
        r->metadata ? parse_or_null(r->metadata, strlen(r->metadata)) : json_null(), "usage",
        usage ? usage : json_null());
    if (j && terminal(r->status) && !r->expired && add_result_locked(r, j) != 0) {
        json_decref(j);
        j = NULL;
    }
    if (j && r->expired && json_object_set_new(j, "expired", json_true()) != 0) {
        json_decref(j);
        j = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    return j;
}

int par_run_answer(par_run_t *r, par_buf_t *out, int *status)
{
    pthread_mutex_lock(&r->mu);
    int rc = PAR_OK;
    if (!terminal(r->status))
        rc = PAR_E_RUN_ACTIVE;
    else if (r->expired)
        rc = PAR_E_RUN_EXPIRED;
    else
        rc = par__run_event_data_locked(r, r->last_seq, out);
    if (rc == PAR_OK)
        *status = r->status == PAR_RUN_SUCCEEDED ? PAR_OK : r->end_status;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- listing ----------------------------------------------------------------------------- */

static int same(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* Does `r` belong on the page (rs->lock held)? */
static int listed(par_run_t *r, const par_runs_query_t *q)
{
    if (r->hidden || (!q->admin && !(same(r->subject, q->subject) && same(r->tenant, q->tenant))))
        return 0;
    if (q->cursor && strcmp(r->id, q->cursor) >= 0)
        return 0;
    pthread_mutex_lock(&r->mu);
    int ok = (q->status < 0 || r->status == q->status) &&
             (q->agent == NULL || strcmp(r->agent_id, q->agent) == 0 ||
              (r->package && strcmp(r->package, q->agent) == 0));
    pthread_mutex_unlock(&r->mu);
    return ok;
}

int par_runs_list(par_runtime_t *rt, const par_runs_query_t *q, json_t **out, par_buf_t *err)
{
    par_runs_t *rs = rt->runs;
    *out = NULL;
    if (q->cursor && !par_run_id_valid(q->cursor, strlen(q->cursor))) {
        par_buf_errf(err, "cursor '%.64s' is not one a listing of runs gave", q->cursor);
        return PAR_E_BAD_REQUEST;
    }
    unsigned limit = q->limit == 0 ? 50 : q->limit > 1000 ? 1000 : q->limit;
    par_run_t **page = malloc((limit + 1) * sizeof(*page));
    json_t *runs = json_array();
    if (page == NULL || runs == NULL) {
        free(page);
        json_decref(runs);
        return PAR_E_NO_MEMORY;
    }
    size_t n = 0;
    if (rs) {
        pthread_mutex_lock(&rs->lock);
        for (par_run_t *r = rs->newest; r && n <= limit; r = r->next)
            if (listed(r, q)) {
                par_run_ref(r);
                page[n++] = r;
            }
        pthread_mutex_unlock(&rs->lock);
    }
    int rc = PAR_OK;
    for (size_t i = 0; i < n && i < limit; i++) {
        json_t *j = rc == PAR_OK ? par_run_json(page[i]) : NULL;
        if (rc == PAR_OK && (j == NULL || json_array_append_new(runs, j) != 0))
            rc = PAR_E_NO_MEMORY;
    }
    json_t *next = n > limit ? json_string(page[limit - 1]->id) : json_null();
    for (size_t i = 0; i < n; i++)
        par_run_unref(page[i]);
    free(page);
    if (rc == PAR_OK)
        *out = json_pack("{s:o,s:o}", "runs", runs, "next_cursor", next);
    else
        json_decref(runs), json_decref(next);
    return rc == PAR_OK && *out == NULL ? PAR_E_NO_MEMORY : rc;
}

/* ---- metrics ------------------------------------------------------------------------------ */

void par_runs_render_metrics(par_runs_t *rs, par_buf_t *b)
{
    par_metrics_family(b, "par_runs_in_flight", "gauge", "Runs started and not yet ended.");
    par_buf_appendf(b, "par_runs_in_flight %u\n", par_runs_in_flight(rs));
    par_metrics_family(b, "par_runs_total", "counter", "Runs ended, by final status.");
    for (int s = PAR_RUN_SUCCEEDED; s <= PAR_RUN_INTERRUPTED; s++)
        par_buf_appendf(b, "par_runs_total{status=\"%s\"} %lu\n", par_run_status_name(s),
                        rs ? atomic_load(&rs->by_status[s]) : 0);
    par_metrics_family(b, "par_run_events_total", "counter", "Events agents emitted in runs.");
    par_buf_appendf(b, "par_run_events_total %lu\n", rs ? atomic_load(&rs->events_total) : 0);
    par_metrics_family(b, "par_run_resumes_total", "counter",
                       "Clients that resumed a run's events after an event id.");
    par_buf_appendf(b, "par_run_resumes_total %lu\n", rs ? atomic_load(&rs->resumes_total) : 0);
    par_metrics_family(b, "par_run_cancels_total", "counter", "Runs cancelled.");
    par_buf_appendf(b, "par_run_cancels_total %lu\n", rs ? atomic_load(&rs->cancels_total) : 0);
    par_metrics_family(b, "par_run_stream_clients", "gauge", "Clients following runs live.");
    par_buf_appendf(b, "par_run_stream_clients %u\n", rs ? atomic_load(&rs->stream_clients) : 0);
    par_metrics_family(b, "par_run_spill_bytes", "gauge",
                       "Bytes of run events kept in the state directory's event files.");
    par_buf_appendf(b, "par_run_spill_bytes %lu\n", rs ? atomic_load(&rs->spill_bytes) : 0);
}
