/*
 * loader/calls.c — dispatching calls to a pool's workers: the par_pool_* API
 * of supervisor.h (start, submit, cancel, stop, release, and what a pool
 * reports) and the INVOKE frame. Any thread; pool lock as worker.h says.
 * Never blocks on a worker: writes go through the wire (loader/wire.h).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader/worker.h"
#include "obs/log.h"
#include "util/argv.h"

static const char *const wstate_names[] = {"starting", "ready", "retiring", "dead"};

void par__worker_send(par_worker_t *w, uint8_t type, uint64_t id, const char *hdr, size_t hlen,
                      const char *body, size_t blen)
{
    par_wire_frame(&w->wire, type, id, hdr, hlen, body, blen);
    if (w->wire.overflow) {
        w->wire.overflow = 0;
        w->kill_reason = "write buffer overflow";
    }
}

par_call_t *par__worker_take(par_worker_t *w, uint64_t id)
{
    par_pending_ent_t *e = par_pending_remove(&w->pending, id);
    if (e == NULL)
        return NULL;
    par_call_t *c = par__pend_call(e);
    par_slot_t *s = par__slot(c);
    assert(s->worker == w);
    s->worker = NULL;
    par_pool_core_release_slot(&w->pool->core, &s->q);
    return c;
}

par_worker_t *par__pool_pick_worker(par_pool_t *p)
{
    par_worker_t *best = NULL;
    for (par_worker_t *w = p->workers; w; w = w->next)
        if (w->state == W_READY && (best == NULL || w->pending.count < best->pending.count))
            best = w;
    return best;
}

int par__pool_any_ready(par_pool_t *p)
{
    for (par_worker_t *w = p->workers; w; w = w->next)
        if (w->state == W_READY)
            return 1;
    return 0;
}

/* The INVOKE header: what the worker needs besides the input. */
static void invoke_header(par_buf_t *h, const par_call_t *c)
{
    int64_t remaining = c->deadline_ms ? c->deadline_ms - par__now_ms() : 0;
    if (remaining < 1 && c->deadline_ms)
        remaining = 1;
    par_buf_appends(h, "{\"x\":");
    par_buf_append_i64(h, (int64_t)c->_export_idx);
    par_buf_appends(h, ",\"agent\":");
    par_buf_append_json_str(h, c->agent_id, strlen(c->agent_id));
    par_buf_appends(h, ",\"request_id\":");
    par_buf_append_json_str(h, c->request_id, strlen(c->request_id));
    par_buf_appends(h, ",\"trace_id\":");
    par_buf_append_json_str(h, c->trace_id, strlen(c->trace_id));
    par_buf_appends(h, ",\"span_id\":");
    par_buf_append_json_str(h, c->span_id, strlen(c->span_id));
    if (c->subject) {
        par_buf_appends(h, ",\"subject\":");
        par_buf_append_json_str(h, c->subject, strlen(c->subject));
    }
    if (c->tenant) {
        par_buf_appends(h, ",\"tenant\":");
        par_buf_append_json_str(h, c->tenant, strlen(c->tenant));
    }
    par_buf_appends(h, ",\"deadline_ms\":");
    par_buf_append_i64(h, remaining);
    if (c->context) {
        par_buf_appends(h, ",\"context\":");
        par_buf_append(h, c->context, c->context_len);
    }
    par_buf_append(h, "}", 1);
}

/* Pool lock held. */
static void send_invoke(par_worker_t *w, par_call_t *c)
{
    par_slot_t *s = par__slot(c);
    s->pend.id = ++w->pool->next_id;
    s->worker = w;
    par_pending_add(&w->pending, &s->pend);
    char stackbuf[1024];
    par_buf_t h;
    par_buf_init_on(&h, stackbuf, sizeof(stackbuf), 0);
    invoke_header(&h, c);
    par__worker_send(w, PAR_FRAME_INVOKE, s->pend.id, h.data, h.len, c->input, c->input_len);
    par_buf_free(&h);                 /* frees only what outgrew stackbuf */
    par__slot_dispatched(w->pool, c); /* its sink's `started` once the lock is released */
}

void par__pool_drain_queue(par_pool_t *p)
{
    for (;;) {
        par_worker_t *w = par__pool_pick_worker(p);
        par_pool_ent_t *e = w ? par_pool_core_next(&p->core) : NULL;
        if (e == NULL)
            return;
        send_invoke(w, par__q_call(e));
    }
}

/* ---- start ------------------------------------------------------------------- */

static void pool_settings(par_pool_t *p, const par_pool_spec_t *spec)
{
    p->core.min_workers = spec->min_workers;
    p->core.max_workers = spec->max_workers;
    p->core.concurrency = spec->concurrency;
    p->core.limit = spec->limit;
    p->core.queue_max = spec->queue_max;
    par_pool_core_init(&p->core);
    p->cpu_seconds = spec->cpu_seconds;
    p->scratch_mb = spec->scratch_mb;
    p->uid = spec->uid;
    p->gid = spec->gid;
    p->max_output = spec->max_output;
    p->max_input = spec->max_input;
    p->max_event = spec->max_event ? spec->max_event : 1u << 20;
}

static par_pool_t *pool_new(par_super_t *s, const par_pool_spec_t *spec)
{
    par_pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->s = s;
    atomic_init(&p->refs, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pool_settings(p, spec);
    p->name = strdup(spec->name);
    p->version = strdup(spec->version);
    if (p->name == NULL || p->version == NULL ||
        par_spawn_argv(spec, &p->memory_mb, &p->argv) != PAR_OK ||
        par_spawn_envp(spec, &p->envp) != PAR_OK) {
        par__pool_free(p);
        return NULL;
    }
    return p;
}

void par__pool_free(par_pool_t *p)
{
    assert(p->workers == NULL);
    par_strvec_free_array(p->argv);
    par_strvec_free_array(p->envp);
    free(p->name);
    free(p->version);
    free(p->start_error);
    json_decref(p->sandbox);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* Waits for the first worker's HELLO or its failure. Pool lock held. */
static void wait_started(par_pool_t *p)
{
    int64_t until = par__now_ms() + PAR_START_TIMEOUT_MS + 1000;
    while (!p->started && !p->start_failed && par__now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
}

int par_pool_start(par_super_t *s, const par_pool_spec_t *spec, par_pool_t **out, par_buf_t *err)
{
    par_pool_t *p = pool_new(s, spec);
    if (p == NULL) {
        par_buf_appendf(err, "%s@%s: out of memory starting its workers\n", spec->name,
                        spec->version);
        return PAR_E_NO_MEMORY;
    }
    /* Workers are spawned by the I/O thread only: PR_SET_PDEATHSIG in the
     * worker fires when the *thread* that forked it exits, so a short-lived
     * deploy thread must never be a worker's parent. */
    pthread_mutex_lock(&s->lock);
    p->next = s->pools;
    s->pools = p;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&p->lock);
    p->core.want_spawn = 1;
    pthread_mutex_unlock(&p->lock);
    par__super_wake(s);
    int rc = PAR_OK;
    pthread_mutex_lock(&p->lock);
    wait_started(p);
    if (!p->started) {
        par_buf_appendf(err, "%s@%s: %s\n", p->name, p->version,
                        p->start_error ? p->start_error : "worker failed to start");
        rc = p->start_status ? p->start_status : PAR_E_INCOMPATIBLE;
        p->stopping = p->stop_now = 1;
    }
    free(p->start_error);
    p->start_error = NULL;
    pthread_mutex_unlock(&p->lock);
    par__super_wake(s);
    if (rc == PAR_OK) {
        atomic_fetch_add(&p->refs, 1); /* the package version's, dropped by par_pool_release */
        *out = p;
    }
    return rc;
}

/* ---- calls ------------------------------------------------------------------- */

/* Says why a call was refused. Lock held. */
static int refuse(par_pool_t *p, par_call_t *c, int admit)
{
    if (admit == PAR_ADMIT_FULL) {
        par_buf_appendf(&c->output,
                        "'%s' is at its concurrency limit (%u running, %zu waiting); retry later",
                        c->agent_id, p->core.limit, p->core.q_len);
        return par_pool_core_refusal(admit);
    }
    int64_t wait = p->core.respawn_at_ms - par__now_ms();
    par_buf_appendf(&c->output,
                    "'%s' is in a crash loop (%u crashes in a row); the next restart is in %lld ms",
                    c->agent_id, p->core.crashes_in_row, (long long)(wait > 0 ? wait : 0));
    return par_pool_core_refusal(admit);
}

int par_pool_submit(par_pool_t *p, par_call_t *c)
{
    par_slot_t *s = par__slot(c);
    s->pend = (par_pending_ent_t){NULL, 0};
    s->q = (par_pool_ent_t){.deadline_ms = c->deadline_ms, .wants_slot = !c->_same_package};
    s->worker = NULL;
    s->start_next = NULL;
    s->busy = s->deferred = 0;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        par_buf_appends(&c->output, "the package is being unloaded");
        return PAR_E_DRAINING;
    }
    par_worker_t *w = par__pool_pick_worker(p);
    int admit = par_pool_core_admit(&p->core, s->q.wants_slot, w != NULL,
                                    w != NULL || par__pool_any_ready(p));
    int rc = PAR_OK, need_wake = 0;
    if (admit == PAR_ADMIT_FULL || admit == PAR_ADMIT_CRASH_LOOP) {
        rc = refuse(p, c, admit);
    } else if (admit == PAR_ADMIT_QUEUE) {
        rc = par__call_own_input(c);
        if (rc == PAR_OK) {
            par_pool_core_enqueue(&p->core, &s->q);
            need_wake = p->core.live == 0;
        }
    } else {
        par_pool_core_take_slot(&p->core, &s->q);
        need_wake = par_pool_core_grow(&p->core, (unsigned)w->pending.count);
        send_invoke(w, c);
    }
    par__pool_unlock(p); /* `started`, when the call has a sink that wants it */
    if (need_wake)
        par__super_wake(p->s);
    return rc;
}

/* par_pool_cancel; with `grace_ms`, its worker must answer the CANCEL by
 * then or be killed (supervisor.c, check_workers). */
static int cancel_call(par_pool_t *p, par_call_t *c, const char *why, uint32_t grace_ms)
{
    par_slot_t *s = par__slot(c);
    int found = 0, finish_now = 1;
    pthread_mutex_lock(&p->lock);
    par_worker_t *w = s->worker;
    if (w && par__worker_take(w, s->pend.id) == c) {
        par__worker_send(w, PAR_FRAME_CANCEL, s->pend.id, NULL, 0, NULL, 0);
        if (grace_ms && par__worker_grace_add(w, s->pend.id, par__now_ms() + grace_ms) != PAR_OK)
            par_log_msg(PAR_LOG_WARN,
                        "out of memory: a worker of %s that ignores a cancel will not be killed",
                        p->name);
        found = 1;
    } else {
        found = par_pool_core_unqueue(&p->core, &s->q);
    }
    if (found) {
        par__pool_drain_queue(p); /* the freed slot goes to the next waiting call */
        par__call_set_error(c, PAR_E_CANCELLED, why);
        if (s->busy) { /* its sink is being called: that thread finishes it (events.c) */
            s->deferred = 1;
            finish_now = 0;
        }
    }
    par__pool_unlock(p);
    if (!found)
        return PAR_E_NOT_FOUND; /* finishing already, or never reached the pool */
    if (finish_now)
        p->s->hooks.call_finish(c);
    return PAR_OK;
}

int par_pool_cancel(par_pool_t *p, par_call_t *c, const char *why)
{
    return cancel_call(p, c, why, 0);
}

int par_pool_cancel_grace(par_pool_t *p, par_call_t *c, const char *why, uint32_t grace_ms)
{
    return cancel_call(p, c, why, grace_ms);
}

void par_pool_events_ack(par_pool_t *p, par_call_t *c, unsigned n)
{
    if (n == 0)
        return;
    char h[32];
    int len = snprintf(h, sizeof(h), "{\"n\":%u}", n);
    par_slot_t *s = par__slot(c);
    pthread_mutex_lock(&p->lock);
    if (s->worker) /* else finished, cancelled or still queued: nothing to grant */
        par__worker_send(s->worker, PAR_FRAME_EVENT_ACK, s->pend.id, h, (size_t)len, NULL, 0);
    pthread_mutex_unlock(&p->lock);
}

void par_pool_release(par_pool_t *p)
{
    par_super_t *s = p->s;
    int was = atomic_fetch_sub(&p->refs, 1);
    assert(was > 0);
    (void)was;
    par__super_wake(s);
}

void par_pool_stop(par_pool_t *p, int now)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    p->stop_now |= now;
    pthread_mutex_unlock(&p->lock);
    par__super_wake(p->s);
}

/* ---- what a pool reports ----------------------------------------------------- */

json_t *par_pool_sandbox(par_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    json_t *sb = p->sandbox ? json_deep_copy(p->sandbox) : NULL;
    pthread_mutex_unlock(&p->lock);
    return sb ? sb : json_pack("{s:b, s:s}", "enabled", 0, "reason", "no worker has started yet");
}

json_t *par_pool_describe(par_pool_t *p)
{
    json_t *a = json_array();
    if (a == NULL)
        return NULL;
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next)
        json_array_append_new(a,
                              json_pack("{s:i, s:s, s:i, s:I}", "pid", (int)w->pid, "state",
                                        wstate_names[w->state], "in_flight", (int)w->pending.count,
                                        "uptime_ms", (json_int_t)(par__now_ms() - w->started_ms)));
    pthread_mutex_unlock(&p->lock);
    return a;
}

int par_pool_live(par_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    int live = par__pool_any_ready(p);
    pthread_mutex_unlock(&p->lock);
    return live;
}

void par_pool_stats(par_pool_t *p, par_pool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next) {
        out->starting += w->state == W_STARTING;
        out->ready += w->state == W_READY;
        out->retiring += w->state == W_RETIRING;
    }
    out->crashes = p->core.restarts;
    out->timeouts = p->core.timeout_kills;
    out->crash_loop = par_pool_core_crash_loop(&p->core, out->ready > 0);
    out->crashes_in_row = p->core.crashes_in_row;
    out->events = p->events;
    out->events_dropped = p->events_dropped;
    out->events_stray = p->events_stray;
    out->events_invalid = p->events_invalid;
    out->cancel_kills = p->cancel_kills;
    pthread_mutex_unlock(&p->lock);
}

unsigned par_pool_restarts(par_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned r = p->core.restarts;
    pthread_mutex_unlock(&p->lock);
    return r;
}
