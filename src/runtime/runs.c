/*
 * runtime/runs.c — the run engine's table and lifecycle (runs.h; the file
 * map and the locks are in runs_internal.h).
 *
 * A run is created around a call: par_run_start gives the call the run's
 * sink and done and starts it; the runtime calls par__run_resolved once it
 * knows the package version (run.started, seq 1, before the call can reach
 * an executor); the sink appends the agent's events; done, a cancel or an
 * interrupt ends the run once (the first wins: a run cancelled while its
 * call still finishes stays `cancelled`). The run owns its call until the
 * call's done and then frees it; what outlives the call (status, times,
 * units, the answer as the data of its last event) is copied into the run.
 *
 * Threads: any. Must never call the loader (cancel, credit) or a watcher's
 * notify with a lock held.
 */
#include "runtime/runs.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/proto.h"
#include "obs/log.h"
#include "obs/trace.h"
#include "runtime/answer.h"
#include "runtime/fleet.h"
#include "runtime/runs_internal.h"
#include "runtime/runtime.h"

static const char *const status_names[] = {"queued", "running",   "succeeded",
                                           "failed", "cancelled", "interrupted"};

const char *par_run_status_name(int status)
{
    if (status < 0 || status > PAR_RUN_INTERRUPTED)
        return NULL;
    return status_names[status];
}

int par_run_status_parse(const char *name)
{
    for (int i = 0; name && i <= PAR_RUN_INTERRUPTED; i++)
        if (strcmp(name, status_names[i]) == 0)
            return i;
    return -1;
}

int64_t par__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int terminal(int status)
{
    return status >= PAR_RUN_SUCCEEDED;
}

/* ---- runs and references ---------------------------------------------------------- */

par_run_t *par__run_new(par_runs_t *rs)
{
    par_run_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    atomic_init(&r->refs, 1);
    r->rs = rs;
    r->fd = -1;
    r->fd_close_later = -1;
    r->duration_ms = -1;
    r->end_status = PAR_OK;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    return r;
}

void par_run_ref(par_run_t *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void par_run_unref(par_run_t *r)
{
    if (r == NULL)
        return;
    int old = atomic_fetch_sub(&r->refs, 1);
    if (old <= 0) {
        fprintf(stderr, "%s:%d: run refcount underflow\n", __FILE__, __LINE__);
        abort();
    }
    if (old != 1)
        return;
    assert(r->call == NULL && r->watchers == NULL && r->fd_readers == 0);
    if (r->fd >= 0)
        close(r->fd);
    par__run_events_free(r);
    free(r->package), free(r->version), free(r->subject), free(r->tenant);
    free(r->metadata), free(r->units);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

const char *par_run_id(const par_run_t *r)
{
    return r->id;
}

int par_run_status(const par_run_t *r)
{
    par_run_t *m = (par_run_t *)r;
    pthread_mutex_lock(&m->mu);
    int s = m->status;
    pthread_mutex_unlock(&m->mu);
    return s;
}

uint64_t par_run_last_seq(const par_run_t *r)
{
    par_run_t *m = (par_run_t *)r;
    pthread_mutex_lock(&m->mu);
    uint64_t s = m->last_seq;
    pthread_mutex_unlock(&m->mu);
    return s;
}

/* ---- the table (rs->lock held) ------------------------------------------------------ */

static size_t hash_id(const char *id)
{
    size_t h = 1469598103934665603u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211u;
    return h;
}

int par__runs_grow_locked(par_runs_t *rs)
{
    size_t n = rs->nhash ? rs->nhash * 2 : 256;
    par_run_t **h = calloc(n, sizeof(*h));
    if (h == NULL)
        return PAR_E_NO_MEMORY;
    for (size_t i = 0; i < rs->nhash; i++)
        for (par_run_t *r = rs->hash[i], *nx; r; r = nx) {
            nx = r->hnext;
            size_t b = hash_id(r->id) & (n - 1);
            r->hnext = h[b];
            h[b] = r;
        }
    free(rs->hash);
    rs->hash = h;
    rs->nhash = n;
    return PAR_OK;
}

par_run_t *par__runs_find_locked(par_runs_t *rs, const char *id)
{
    if (rs->nhash == 0)
        return NULL;
    for (par_run_t *r = rs->hash[hash_id(id) & (rs->nhash - 1)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

/* Takes the table's reference. Keeps the list sorted by id, newest first:
 * new runs go to the head at once; recovered ones find their place. */
void par__runs_insert_locked(par_runs_t *rs, par_run_t *r)
{
    size_t b = hash_id(r->id) & (rs->nhash - 1);
    r->hnext = rs->hash[b];
    rs->hash[b] = r;
    rs->count++;
    par_run_t *after = NULL; /* the newer neighbour */
    for (par_run_t *x = rs->newest; x && strcmp(x->id, r->id) > 0; x = x->next)
        after = x;
    r->prev = after;
    r->next = after ? after->next : rs->newest;
    if (r->next)
        r->next->prev = r;
    else
        rs->oldest = r;
    if (after)
        after->next = r;
    else
        rs->newest = r;
}

void par__runs_xremove_locked(par_runs_t *rs, par_run_t *r)
{
    int l = r->xlist;
    if (l == 0)
        return;
    if (r->xprev)
        r->xprev->xnext = r->xnext;
    else
        rs->xhead[l] = r->xnext;
    if (r->xnext)
        r->xnext->xprev = r->xprev;
    else
        rs->xtail[l] = r->xprev;
    r->xprev = r->xnext = NULL;
    r->xlist = 0;
}

void par__runs_xpush_locked(par_runs_t *rs, par_run_t *r, int list)
{
    par__runs_xremove_locked(rs, r);
    r->xlist = list;
    r->xprev = rs->xtail[list];
    r->xnext = NULL;
    if (rs->xtail[list])
        rs->xtail[list]->xnext = r;
    else
        rs->xhead[list] = r;
    rs->xtail[list] = r;
}

/* Drops the table's reference into the caller's hands (it unrefs). */
void par__runs_remove_locked(par_runs_t *rs, par_run_t *r)
{
    par__runs_xremove_locked(rs, r);
    par_run_t **p = &rs->hash[hash_id(r->id) & (rs->nhash - 1)];
    while (*p && *p != r)
        p = &(*p)->hnext;
    assert(*p == r);
    *p = r->hnext;
    rs->count--;
    if (r->prev)
        r->prev->next = r->next;
    else
        rs->newest = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        rs->oldest = r->prev;
    r->prev = r->next = r->hnext = NULL;
}

static void flight_add_locked(par_runs_t *rs, par_run_t *r)
{
    r->fprev = NULL;
    r->fnext = rs->flight;
    if (rs->flight)
        rs->flight->fprev = r;
    rs->flight = r;
    r->in_flight = 1;
    rs->nflight++;
}

static void flight_remove_locked(par_runs_t *rs, par_run_t *r)
{
    if (!r->in_flight)
        return;
    if (r->fprev)
        r->fprev->fnext = r->fnext;
    else
        rs->flight = r->fnext;
    if (r->fnext)
        r->fnext->fprev = r->fprev;
    r->fprev = r->fnext = NULL;
    r->in_flight = 0;
    rs->nflight--;
}

static int same(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static int may_see(const par_run_t *r, const char *subject, const char *tenant, int admin)
{
    return admin || (same(r->subject, subject) && same(r->tenant, tenant));
}

/* ---- ending a run ------------------------------------------------------------------ */

static const char *const end_events[] = {
    NULL, NULL, "run.completed", "run.failed", "run.cancelled", "run.interrupted"};

/* The error body of a run that did not succeed. */
static int error_body(par_buf_t *b, int status, const char *msg, const char *rid)
{
    par_buf_appends(b, "{\"error\":");
    par_buf_append_json_str(b, par_status_name(status), strlen(par_status_name(status)));
    par_buf_appends(b, ",\"message\":");
    par_buf_append_json_str(b, msg, strlen(msg));
    par_buf_appends(b, ",\"request_id\":");
    return par_buf_append_json_str(b, rid, strlen(rid)) == PAR_OK && par_buf_appends(b, "}") == 0
               ? PAR_OK
               : PAR_E_NO_MEMORY;
}

/* Ends `r` (mu held; not ended yet) with its final event, whose data is
 * `data` (the answer) or else the error body of `pst` and `msg`. */
static void end_locked(par_run_t *r, int status, int pst, const char *msg, const char *data,
                       size_t dlen)
{
    assert(!terminal(r->status));
    r->status = status;
    r->end_status = pst;
    r->ended_ms = par__wall_ms();
    r->expire_at_ms = par__now_ms() + (int64_t)r->rs->retention_s * 1000;
    r->pv = NULL;
    atomic_fetch_add(&r->rs->by_status[status], 1);
    const char *type = end_events[status];
    par_buf_t b;
    par_buf_init(&b, 0);
    if (data == NULL && error_body(&b, pst, msg ? msg : "", r->request_id) == PAR_OK) {
        data = b.data;
        dlen = b.len;
    }
    if (data == NULL || par__run_append_locked(r, type, strlen(type), data, dlen) != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "run %s: out of memory for its %s event", r->id, type);
    par_buf_free(&b);
    par__run_notify_locked(r);
}

/* After end_locked, without mu: out of the in-flight list, record queued. */
static void ended(par_run_t *r)
{
    par_runs_t *rs = r->rs;
    pthread_mutex_lock(&rs->lock);
    flight_remove_locked(rs, r);
    if (!r->deleted) /* deleted between its end and here: out of every list */
        par__runs_xpush_locked(rs, r, RUNS_ENDED); /* runs end once, in time order */
    pthread_mutex_unlock(&rs->lock);
    par__run_dirty(r, 1);
}

par_call_t *par__run_pin_call_locked(par_run_t *r)
{
    if (r->call && !r->call_free_later)
        r->call_pins++;
    else
        return NULL;
    return r->call;
}

void par__run_unpin_call(par_run_t *r, par_call_t *c)
{
    pthread_mutex_lock(&r->mu);
    assert(r->call_pins > 0);
    int last = --r->call_pins == 0 && r->call_free_later;
    if (last) {
        r->call = NULL;
        r->call_free_later = 0;
    }
    pthread_mutex_unlock(&r->mu);
    if (last) {
        par__call_free(c);
        par_run_unref(r); /* the call's */
    }
}

/* ---- the call's sink and done --------------------------------------------------------- */

static void sink_started(par_call_t *c)
{
    par_run_t *r = c->sink_data;
    pthread_mutex_lock(&r->mu);
    if (r->status == PAR_RUN_QUEUED) {
        r->status = PAR_RUN_RUNNING;
        r->started_ms = par__wall_ms();
    }
    pthread_mutex_unlock(&r->mu);
    par__run_dirty(r, 1);
}

static int sink_event(par_call_t *c, const char *type, size_t tlen, const char *data, size_t len)
{
    par_run_t *r = c->sink_data;
    pthread_mutex_lock(&r->mu);
    if (terminal(r->status)) {
        int st = r->end_status;
        pthread_mutex_unlock(&r->mu);
        return st != PAR_OK ? st : PAR_E_RUN_ENDED;
    }
    if (r->status == PAR_RUN_QUEUED) { /* an executor that does not report `started` */
        r->status = PAR_RUN_RUNNING;
        r->started_ms = par__wall_ms();
        r->record_dirty = 1;
    }
    int rc = par__run_append_locked(r, type, tlen, data, len);
    if (rc != PAR_OK) {
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    atomic_fetch_add(&r->rs->events_total, 1);
    /* the slowest live watcher lags a window behind: hold this event's credit */
    int hold = 0;
    if (r->watchers) {
        uint64_t slowest = UINT64_MAX;
        for (par_run_watch_t *w = r->watchers; w; w = w->_next)
            if (w->_delivered < slowest)
                slowest = w->_delivered;
        if (r->last_seq - slowest >= PAR_PROTO_EVENT_WINDOW) {
            r->held++;
            hold = 1;
        }
    }
    par__run_notify_locked(r);
    pthread_mutex_unlock(&r->mu);
    par__run_dirty(r, 0);
    return hold;
}

const par_call_sink_t par__run_sink = {sink_started, sink_event};

/* The answer of a call that succeeded, with the run's id first. */
static char *answer_of(const par_run_t *r, const par_call_t *c, size_t *len)
{
    size_t cap = par__call_answer_cap(c) + RUN_ID_MAX + 16;
    char *a = malloc(cap);
    if (a == NULL)
        return NULL;
    int n = snprintf(a, cap, "{\"run_id\":\"%s\",", r->id);
    size_t body = par__call_answer_write(c, a + n - 1);
    a[n - 1] = ','; /* the answer's own '{' */
    *len = (size_t)n - 1 + body;
    return a;
}

static void run_done(par_call_t *c)
{
    par_run_t *r = c->data;
    size_t alen = 0;
    char *answer = c->status == PAR_OK ? answer_of(r, c, &alen) : NULL;
    char *units = c->units_json ? strdup(c->units_json) : NULL;
    const char *msg = ""; /* the error message: the output, made a C string */
    if (c->status != PAR_OK && c->output.len && par_buf_terminate(&c->output) == PAR_OK)
        msg = c->output.data;
    pthread_mutex_lock(&r->mu);
    int was_running = !terminal(r->status);
    r->duration_ms = (double)(c->finished_ns - c->started_ns) / 1e6;
    if (r->started_ms == 0 && c->status == PAR_OK) /* an executor that did not report it */
        r->started_ms = c->wall_ms;
    free(r->units);
    r->units = units;
    if (was_running && c->status == PAR_OK && answer)
        end_locked(r, PAR_RUN_SUCCEEDED, PAR_OK, NULL, answer, alen);
    else if (was_running && c->status == PAR_OK)
        end_locked(r, PAR_RUN_FAILED, PAR_E_NO_MEMORY, "out of memory for the run's answer", NULL,
                   0);
    else if (was_running)
        end_locked(r, c->status == PAR_E_CANCELLED ? PAR_RUN_CANCELLED : PAR_RUN_FAILED, c->status,
                   msg, NULL, 0);
    r->pv = NULL;
    int pinned = r->call_pins > 0;
    if (pinned)
        r->call_free_later = 1;
    else
        r->call = NULL;
    pthread_mutex_unlock(&r->mu);
    free(answer);
    ended(r);
    if (!pinned) {
        par__call_free(c);
        par_run_unref(r); /* the call's */
    }
}

int par__run_resolved(par_call_t *c)
{
    par_run_t *r = c->sink_data;
    char *pkg = strdup(c->pv->name), *ver = strdup(c->pv->version);
    par_buf_t d;
    par_buf_init(&d, 0);
    par_buf_appendf(&d, "{\"run_id\":\"%s\",\"agent_id\":", r->id);
    par_buf_append_json_str(&d, c->agent_id, strlen(c->agent_id));
    par_buf_appends(&d, ",\"version\":");
    int rc = pkg && ver ? par_buf_append_json_str(&d, ver, strlen(ver)) : PAR_E_NO_MEMORY;
    if (rc == PAR_OK && par_buf_appends(&d, "}") != 0)
        rc = PAR_E_NO_MEMORY;
    pthread_mutex_lock(&r->mu);
    if (rc == PAR_OK) {
        r->package = pkg, r->version = ver;
        pkg = ver = NULL;
        r->pv = c->pv;
        memcpy(r->request_id, c->request_id, sizeof(r->request_id));
        memcpy(r->trace_id, c->trace_id, sizeof(r->trace_id));
        rc = par__run_append_locked(r, "run.started", 11, d.data, d.len);
    }
    pthread_mutex_unlock(&r->mu);
    free(pkg), free(ver);
    par_buf_free(&d);
    if (rc != PAR_OK)
        par_buf_appends(&c->output, "out of memory starting the run");
    return rc;
}

int par__run_usage(const par_call_t *c, int64_t *events)
{
    par_run_t *r = c->sink_data;
    pthread_mutex_lock(&r->mu);
    int ended = terminal(r->status);
    /* a run still going gets its final event at the call's done */
    *events = (int64_t)r->last_seq + !ended;
    int st = ended ? r->end_status : c->status;
    pthread_mutex_unlock(&r->mu);
    return st;
}

/* ---- starting --------------------------------------------------------------------- */

/* "run_" + 12 hex digits of the creation time in ms + 20 random ones, and
 * in a fleet "_" + this node's tag. */
static void make_id(char id[RUN_ID_MAX + 1], int64_t wall_ms, const char *tag)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(id, "run_", 4);
    uint64_t ms = (uint64_t)wall_ms;
    for (int i = 15; i >= 4; i--, ms >>= 4)
        id[i] = hex[ms & 15];
    par_trace_random_hex(id + 16, 20);
    id[RUN_ID_LEN] = '\0';
    if (tag) {
        id[RUN_ID_LEN] = '_';
        memcpy(id + RUN_ID_LEN + 1, tag, PAR_RUN_TAG_LEN);
        id[RUN_ID_MAX] = '\0';
    }
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int par_run_id_valid(const char *id, size_t len)
{
    if ((len != RUN_ID_LEN && len != RUN_ID_MAX) || memcmp(id, "run_", 4) != 0)
        return 0;
    for (size_t i = 4; i < RUN_ID_LEN; i++)
        if (!is_hex(id[i]))
            return 0;
    if (len == RUN_ID_LEN)
        return 1;
    if (id[RUN_ID_LEN] != '_')
        return 0;
    for (size_t i = RUN_ID_LEN + 1; i < RUN_ID_MAX; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '2' && id[i] <= '7')))
            return 0;
    return 1;
}

const char *par_run_id_tag(const char *id, size_t len)
{
    return len == RUN_ID_MAX && par_run_id_valid(id, len) ? id + RUN_ID_LEN + 1 : NULL;
}

static unsigned subject_runs_locked(par_runs_t *rs, const par_call_t *c)
{
    unsigned n = 0;
    for (par_run_t *x = rs->flight; x; x = x->fnext)
        n += same(x->subject, c->subject) && same(x->tenant, c->tenant);
    return n;
}

/* A new hidden run for `c`, counted against its caller's limit and in the
 * table. */
static int admit(par_runs_t *rs, par_call_t *c, const par_run_opts_t *o, par_run_t **out,
                 unsigned *retry_after_s)
{
    par_run_t *r = par__run_new(rs);
    if (r == NULL)
        return PAR_E_NO_MEMORY;
    r->created_ms = par__wall_ms();
    make_id(r->id, r->created_ms, rs->rt->fleet ? par_fleet_tag(rs->rt->fleet) : NULL);
    memcpy(r->agent_id, c->agent_id, sizeof(r->agent_id));
    r->cancel_on_disconnect = o && o->cancel_on_disconnect;
    int nomem = (c->subject && (r->subject = strdup(c->subject)) == NULL) ||
                (c->tenant && (r->tenant = strdup(c->tenant)) == NULL);
    if (!nomem && o && o->metadata && (r->metadata = strndup(o->metadata, o->metadata_len)) == NULL)
        nomem = 1;
    if (nomem) {
        par_run_unref(r);
        return PAR_E_NO_MEMORY;
    }
    unsigned limit = rs->rt->cfg.runs_per_subject;
    pthread_mutex_lock(&rs->lock);
    int rc = PAR_OK;
    if (limit != UINT_MAX && subject_runs_locked(rs, c) >= limit)
        rc = PAR_E_TOO_MANY_RUNS;
    else if (rs->count >= rs->nhash && par__runs_grow_locked(rs) != PAR_OK)
        rc = PAR_E_NO_MEMORY;
    if (rc == PAR_OK) {
        r->hidden = 1;
        par__runs_insert_locked(rs, r);
        flight_add_locked(rs, r);
    }
    pthread_mutex_unlock(&rs->lock);
    if (rc == PAR_E_TOO_MANY_RUNS) {
        *retry_after_s = 5;
        par_buf_appendf(&c->output,
                        "the caller has %u runs in flight, as many as limits.runs_per_subject "
                        "allows; retry when one has ended",
                        limit);
    }
    if (rc != PAR_OK)
        par_run_unref(r);
    else
        *out = r;
    return rc;
}

/* The run owns the call from here: its sink, its done. */
static void attach(par_run_t *r, par_call_t *c)
{
    par_run_ref(r); /* the call's, dropped at its done */
    r->call = c;
    c->sink = &par__run_sink;
    c->sink_data = r;
    c->done = run_done;
    c->data = r;
}

static void publish(par_runs_t *rs, par_run_t *r, par_run_t **out)
{
    pthread_mutex_lock(&rs->lock);
    r->hidden = 0;
    pthread_mutex_unlock(&rs->lock);
    par__run_dirty(r, 1);
    par_run_ref(r);
    *out = r;
}

int par__run_adopt(par_runs_t *rs, par_call_t *c, const par_run_opts_t *o, par_run_t **out,
                   unsigned *retry_after_s)
{
    par_run_t *r = NULL;
    int rc = admit(rs, c, o, &r, retry_after_s);
    if (rc != PAR_OK)
        return rc;
    attach(r, c);
    if (c->request_id[0] == '\0')
        par_trace_random_hex(c->request_id, 32);
    rc = par__run_resolved(c);
    assert(rc == PAR_OK);
    publish(rs, r, out);
    return PAR_OK;
}

int par_run_start(par_runtime_t *rt, par_call_t *c, const par_run_opts_t *o, par_run_t **out,
                  unsigned *retry_after_s)
{
    par_runs_t *rs = rt->runs;
    *out = NULL;
    if (rs == NULL || atomic_load(&rt->draining)) {
        par_buf_appends(&c->output, "the runtime is shutting down");
        return PAR_E_DRAINING;
    }
    /* a private sub-agent is as unknown to runs as to HTTP; the embedder is trusted */
    c->allow_private = o && o->allow_private;
    par_run_t *r = NULL;
    int rc = admit(rs, c, o, &r, retry_after_s);
    if (rc == PAR_E_NO_MEMORY)
        par_buf_appends(&c->output, "out of memory starting the run");
    if (rc != PAR_OK)
        return rc;
    attach(r, c);
    rc = par__call_start(rt, c);
    if (rc != PAR_OK) {
        c->sink = NULL, c->sink_data = NULL, c->done = NULL, c->data = NULL;
        pthread_mutex_lock(&rs->lock);
        flight_remove_locked(rs, r);
        par__runs_remove_locked(rs, r);
        pthread_mutex_unlock(&rs->lock);
        r->call = NULL;
        par_run_unref(r); /* the call's */
        par_run_unref(r); /* the table's */
        return rc;
    }
    publish(rs, r, out);
    return PAR_OK;
}

/* ---- finding, cancelling, deleting ----------------------------------------------------- */

par_run_t *par_run_get(par_runtime_t *rt, const char *id, const char *subject, const char *tenant,
                       int admin)
{
    par_runs_t *rs = rt->runs;
    if (rs == NULL || id == NULL)
        return NULL;
    pthread_mutex_lock(&rs->lock);
    par_run_t *r = par__runs_find_locked(rs, id);
    if (r && (r->hidden || !may_see(r, subject, tenant, admin)))
        r = NULL;
    if (r)
        par_run_ref(r);
    pthread_mutex_unlock(&rs->lock);
    return r;
}

/* Ends a run in flight as `status` and takes its call back (cancel: with
 * the grace; interrupt: at once). */
static int stop_run(par_run_t *r, int status, int pst, const char *why, int cancel)
{
    pthread_mutex_lock(&r->mu);
    if (terminal(r->status)) {
        pthread_mutex_unlock(&r->mu);
        return PAR_E_RUN_ENDED;
    }
    end_locked(r, status, pst, why, NULL, 0);
    par_call_t *c = par__run_pin_call_locked(r);
    pthread_mutex_unlock(&r->mu);
    ended(r);
    if (c) {
        if (cancel)
            par__call_cancel_grace(c, why, r->rs->rt->cfg.run_cancel_grace_ms);
        else
            par__call_cancel(c, why);
        par__run_unpin_call(r, c);
    }
    return PAR_OK;
}

int par_run_cancel(par_run_t *r, const char *why)
{
    par_runs_t *rs = r->rs;
    int rc =
        stop_run(r, PAR_RUN_CANCELLED, PAR_E_CANCELLED, why ? why : "the run was cancelled", 1);
    if (rc == PAR_OK)
        atomic_fetch_add(&rs->cancels_total, 1);
    return rc;
}

int par_run_delete(par_run_t *r)
{
    par_runs_t *rs = r->rs;
    pthread_mutex_lock(&rs->lock);
    pthread_mutex_lock(&r->mu);
    int rc = !terminal(r->status) ? PAR_E_RUN_ACTIVE : r->deleted ? PAR_E_RUN_NOT_FOUND : PAR_OK;
    if (rc == PAR_OK)
        r->deleted = 1;
    pthread_mutex_unlock(&r->mu);
    if (rc == PAR_OK)
        par__runs_remove_locked(rs, r);
    pthread_mutex_unlock(&rs->lock);
    if (rc == PAR_OK) {
        par__run_dirty(r, 1); /* the runs' thread removes its files */
        par_run_unref(r);     /* the table's */
    }
    return rc;
}

/* Interrupts the in-flight runs `pv` names (every one when NULL). */
static void interrupt_matching(par_runs_t *rs, const void *pv, const char *why)
{
    for (;;) {
        par_run_t *batch[64];
        size_t n = 0;
        pthread_mutex_lock(&rs->lock);
        for (par_run_t *x = rs->flight; x && n < 64; x = x->fnext) {
            pthread_mutex_lock(&x->mu);
            int match = !terminal(x->status) && (pv == NULL || x->pv == pv);
            pthread_mutex_unlock(&x->mu);
            if (match) {
                par_run_ref(x);
                batch[n++] = x;
            }
        }
        pthread_mutex_unlock(&rs->lock);
        for (size_t i = 0; i < n; i++) {
            stop_run(batch[i], PAR_RUN_INTERRUPTED, PAR_E_INTERRUPTED, why, 0);
            par_run_unref(batch[i]);
        }
        if (n < 64)
            return;
    }
}

void par_runs_interrupt_all(par_runs_t *rs, const char *why)
{
    if (rs)
        interrupt_matching(rs, NULL, why ? why : "the runtime is shutting down");
}

void par_runs_interrupt_version(par_runs_t *rs, const void *pv, const char *why)
{
    if (rs && pv)
        interrupt_matching(rs, pv, why ? why : "the version the run started on was unloaded");
}

unsigned par_runs_in_flight(par_runs_t *rs)
{
    if (rs == NULL)
        return 0;
    pthread_mutex_lock(&rs->lock);
    unsigned n = rs->nflight;
    pthread_mutex_unlock(&rs->lock);
    return n;
}

unsigned par_runs_on_version(par_runs_t *rs, const void *pv)
{
    unsigned n = 0;
    if (rs == NULL)
        return 0;
    pthread_mutex_lock(&rs->lock);
    for (par_run_t *x = rs->flight; x; x = x->fnext) {
        pthread_mutex_lock(&x->mu);
        n += x->pv == pv;
        pthread_mutex_unlock(&x->mu);
    }
    pthread_mutex_unlock(&rs->lock);
    return n;
}
