/*
 * loader/events.c — the events of runs between workers and the runtime
 * (docs/worker-protocol.md "Events"): EVENT frames (validated, handed to the
 * call's sink, credit granted back with EVENT_ACK), the `started` news of a
 * call handed to a worker, the grace a cancelled call's worker gets before
 * maintenance kills it (supervisor.c), and the sink of a sibling call asked
 * for with "stream":true, which forwards each event to the calling worker as
 * CALL_EVENT.
 *
 * Threads: EVENT frames on the thread running the supervisor's I/O;
 * par__pool_unlock on whichever thread dispatched calls (a starter in
 * par_pool_submit, the I/O thread, a canceller whose freed slot went to a
 * queued call); the stream sink on the thread that read the child's event.
 * A sink is called with no pool lock held and never by two threads at once
 * for one call: the slot's `busy` flag (worker.h) says a thread is in it; the
 * other waits on the pool's condition, and a thread that completes the call
 * meanwhile leaves it to the one in the sink to finish (`deferred`).
 * Must never trust an EVENT: its id is looked up, its header and body checked
 * against the rules of core/proto.h before a sink sees them.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/worker.h"
#include "obs/log.h"
#include "util/json.h"

typedef struct par_grace {
    struct par_grace *next;
    uint64_t id;
    int64_t cancelled_ms, kill_at_ms;
} par_grace_t;

/* The longest "event" string of a header that can decode to a valid type:
 * every character escaped as \uXXXX, and the quotes. */
#define TYPE_SPAN_MAX (6 * PAR_PROTO_EVENT_TYPE_MAX + 2)

/* The type an EVENT header names, into out[TYPE_SPAN_MAX + 1]: "data" when
 * there is no header, no "event" field, or "". -1 with `why` when the header
 * is not an object or "event" is not a string that can be a type. */
static int event_type(const par_frame_t *f, char *out, size_t *n, char *why, size_t cap)
{
    par_json_field_t fl[1] = {{"event", NULL, 0}};
    if (f->header_len && (par_json_scan(f->header, f->header_len, fl, 1, NULL) != 0 ||
                          par_json_root_type(f->header, f->header_len) != '{')) {
        snprintf(why, cap, "the EVENT header is not a JSON object");
        return -1;
    }
    long k = 0;
    if (fl[0].ptr) {
        if (par_json_root_type(fl[0].ptr, fl[0].len) != '"') {
            snprintf(why, cap, "the EVENT header's \"event\" is not a string");
            return -1;
        }
        if (fl[0].len > TYPE_SPAN_MAX) {
            snprintf(why, cap, "the event type is longer than %d characters",
                     PAR_PROTO_EVENT_TYPE_MAX);
            return -1;
        }
        if ((k = par_json_unescape(fl[0].ptr, fl[0].len, out)) < 0) {
            snprintf(why, cap, "the event type is not a string without NUL characters");
            return -1;
        }
    }
    if (k == 0)
        k = (long)strlen(strcpy(out, PAR_PROTO_EVENT_TYPE_DEFAULT));
    *n = (size_t)k;
    return 0;
}

/* The worker's call `id`, once no other thread is in its sink; NULL when the
 * worker does not run it (any more). Lock held; released while waiting. */
static par_call_t *event_call(par_worker_t *w, uint64_t id)
{
    for (;;) {
        par_pending_ent_t *e = par_pending_find(&w->pending, id);
        if (e == NULL)
            return NULL;
        par_call_t *c = par__pend_call(e);
        if (!par__slot(c)->busy)
            return c;
        pthread_cond_wait(&w->pool->cond, &w->pool->lock);
    }
}

static void ack_add(par_worker_t *w, uint64_t id)
{
    if (w->ack_n && w->ack_id != id)
        par__worker_ack_flush(w);
    w->ack_id = id;
    w->ack_n++;
}

void par__worker_ack_flush(par_worker_t *w)
{
    if (w->ack_n == 0)
        return;
    char h[32];
    int n = snprintf(h, sizeof(h), "{\"n\":%u}", w->ack_n);
    par__worker_send(w, PAR_FRAME_EVENT_ACK, w->ack_id, h, (size_t)n, NULL, 0);
    w->ack_n = 0;
}

static void log_event_failure(const par_worker_t *w, const par_call_t *c, const char *msg)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_WARN, "agent event refused")) {
        par_log_str(&l, "package", w->pool->name);
        par_log_str(&l, "version", w->pool->version);
        par_log_int(&l, "pid", w->pid);
        par_log_str(&l, "agent", c->agent_id);
        par_log_str(&l, "request_id", c->request_id);
        par_log_str(&l, "reason", msg);
        par_log_end(&l);
    }
}

/* Fails the worker's call `c` with `status`: the worker is told to stop it
 * (CANCEL); its other calls go on. Lock held. */
static void fail_call(par_worker_t *w, par_call_t *c, int status, const char *msg,
                      par_done_list_t *done)
{
    uint64_t id = par__slot(c)->pend.id;
    log_event_failure(w, c, msg);
    par__worker_take(w, id);
    par__worker_send(w, PAR_FRAME_CANCEL, id, NULL, 0, NULL, 0);
    par__call_set_error(c, status, msg);
    par__done_push(done, c);
    par__pool_drain_queue(w->pool); /* the freed slot goes to the next waiting call */
}

/* After the sink of `c` returned `r`: credit, or the call fails. Lock held. */
static void event_delivered(par_worker_t *w, par_call_t *c, uint64_t id, int r,
                            par_done_list_t *done)
{
    par_slot_t *s = par__slot(c);
    s->busy = 0;
    pthread_cond_broadcast(&w->pool->cond);
    if (s->deferred) { /* completed while its sink ran (a cancel): finish it now */
        s->deferred = 0;
        par__done_push(done, c);
    } else if (r == 0) {
        ack_add(w, id);
    } else if (r != 1) {
        if (r <= 0 || r >= PAR_STATUS_COUNT)
            r = PAR_E_INTERNAL;
        char msg[PAR_ID_MAX + 200];
        snprintf(msg, sizeof(msg), "an event of agent '%s' was refused: %s", c->agent_id,
                 par_strerror(r));
        fail_call(w, c, r, msg, done);
    }
}

void par__worker_event(par_worker_t *w, const par_frame_t *f, par_done_list_t *done)
{
    par_pool_t *p = w->pool;
    char type[TYPE_SPAN_MAX + 1], why[256];
    size_t tlen = 0;
    int bad = event_type(f, type, &tlen, why, sizeof(why)) != 0 ||
              par_proto_event_check(type, tlen, f->body, f->body_len, p->max_event, why,
                                    sizeof(why)) != 0;
    pthread_mutex_lock(&p->lock);
    par_call_t *c = event_call(w, f->id);
    if (c == NULL) { /* a call already answered, cancelled, or an id made up: like a stray LOG */
        p->events_stray++;
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->events++;
    if (bad) {
        p->events_invalid++;
        char msg[PAR_ID_MAX + 320];
        snprintf(msg, sizeof(msg), "agent '%s' emitted an invalid event: %s", c->agent_id, why);
        fail_call(w, c, PAR_E_INVALID_EVENT, msg, done);
        par__pool_unlock(p);
        return;
    }
    if (c->sink == NULL || c->sink->event == NULL) { /* a unary call: accepted and dropped */
        p->events_dropped++;
        ack_add(w, f->id);
        pthread_mutex_unlock(&p->lock);
        return;
    }
    par__slot(c)->busy = 1;
    pthread_mutex_unlock(&p->lock);
    int r = c->sink->event(c, type, tlen, f->body, f->body_len);
    pthread_mutex_lock(&p->lock);
    event_delivered(w, c, f->id, r, done);
    par__pool_unlock(p);
}

/* ---- started ------------------------------------------------------------------ */

void par__slot_dispatched(par_pool_t *p, par_call_t *c)
{
    if (c->sink == NULL || c->sink->started == NULL)
        return;
    par_slot_t *s = par__slot(c);
    assert(!s->busy);
    s->busy = 1; /* its events wait until `started` returned */
    s->start_next = p->to_start;
    p->to_start = s;
}

void par__pool_unlock(par_pool_t *p)
{
    par_slot_t *list = p->to_start;
    p->to_start = NULL;
    pthread_mutex_unlock(&p->lock);
    if (list == NULL)
        return;
    for (par_slot_t *s = list; s; s = s->start_next) {
        par_call_t *c = par__slot_call(s);
        c->sink->started(c);
    }
    par_done_list_t done = {NULL};
    pthread_mutex_lock(&p->lock);
    for (par_slot_t *s = list, *next; s; s = next) {
        next = s->start_next;
        s->start_next = NULL;
        s->busy = 0;
        if (s->deferred) { /* completed while `started` ran */
            s->deferred = 0;
            par__done_push(&done, par__slot_call(s));
        }
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    par__done_run(p->s, &done);
}

/* ---- cancel grace ---------------------------------------------------------------- */

int par__worker_grace_add(par_worker_t *w, uint64_t id, int64_t kill_at_ms)
{
    par_grace_t *g = malloc(sizeof(*g));
    if (g == NULL)
        return PAR_E_NO_MEMORY;
    g->id = id;
    g->cancelled_ms = par__now_ms();
    g->kill_at_ms = kill_at_ms;
    g->next = w->graces;
    w->graces = g;
    return PAR_OK;
}

void par__worker_grace_answered(par_worker_t *w, uint64_t id)
{
    for (par_grace_t **pp = &w->graces; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            par_grace_t *g = *pp;
            *pp = g->next;
            free(g);
            return;
        }
    }
}

int par__worker_grace_overdue(const par_worker_t *w, int64_t now, int64_t *ignored_ms, uint64_t *id)
{
    for (const par_grace_t *g = w->graces; g; g = g->next) {
        if (now >= g->kill_at_ms) {
            *ignored_ms = now - g->cancelled_ms;
            *id = g->id;
            return 1;
        }
    }
    return 0;
}

void par__worker_grace_free(par_worker_t *w)
{
    while (w->graces) {
        par_grace_t *g = w->graces;
        w->graces = g->next;
        free(g);
    }
}

/* ---- streamed sibling calls ---------------------------------------------------- */

/* An event of a call a worker asked for with "stream":true: to that worker
 * as CALL_EVENT (id = its call id), credit granted at once. */
static int stream_event(par_call_t *c, const char *type, size_t type_len, const char *data,
                        size_t len)
{
    par_slot_t *s = par__slot(c);
    par_pool_t *p = s->parent_pool;
    char stackbuf[160];
    par_buf_t h;
    par_buf_init_on(&h, stackbuf, sizeof(stackbuf), 0);
    int rc = par_buf_appends(&h, "{\"event\":");
    rc |= par_buf_append_json_str(&h, type, type_len);
    rc |= par_buf_appends(&h, "}");
    if (rc != PAR_OK) {
        par_buf_free(&h);
        return PAR_E_NO_MEMORY;
    }
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next) {
        if (w->wid == s->parent_worker_id) {
            par__worker_send(w, PAR_FRAME_CALL_EVENT, s->parent_call_id, h.data, h.len, data, len);
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    par_buf_free(&h);
    return 0;
}

const par_call_sink_t par__stream_sink = {NULL, stream_event};
