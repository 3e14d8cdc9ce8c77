/*
 * runtime/runs_events.c — a run's events: appending them as SSE text,
 * keeping the newest runs.memory_events in memory (older ones are dropped
 * only once the runs' thread wrote them to the event file), reading them
 * back from memory or the file, the watchers that follow a run live, and
 * the flow control between the agent and the slowest watcher.
 *
 * Threads: any (see runs.h). Watchers' notify callbacks run with no lock
 * held; par_run_unwatch waits until none is running, so a watcher may free
 * itself as soon as it returns.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/proto.h"
#include "runtime/runs_internal.h"
#include "runtime/runtime.h"

static int terminal(int status)
{
    return status >= PAR_RUN_SUCCEEDED;
}

/* ---- appending ------------------------------------------------------------------- */

int par__run_append_locked(par_run_t *r, const char *type, size_t tlen, const char *data,
                           size_t dlen)
{
    if (r->nmem == r->capmem) {
        size_t n = r->capmem ? r->capmem * 2 : 16;
        run_ev_t **m = realloc(r->mem, n * sizeof(*m));
        if (m == NULL)
            return PAR_E_NO_MEMORY;
        r->mem = m;
        r->capmem = n;
    }
    uint64_t seq = r->last_seq + 1;
    size_t cap = 4 + 20 + 8 + tlen + 7 + dlen + 3;
    run_ev_t *e = malloc(sizeof(*e) + cap);
    if (e == NULL)
        return PAR_E_NO_MEMORY;
    char *o = e->text;
    memcpy(o, "id: ", 4), o += 4;
    o = par_dec_u64(o, seq);
    memcpy(o, "\nevent: ", 8), o += 8;
    memcpy(o, type, tlen), o += tlen;
    memcpy(o, "\ndata: ", 7), o += 7;
    for (size_t i = 0; i < dlen; i++)
        *o++ = data[i] == '\n' || data[i] == '\r' ? ' ' : data[i];
    memcpy(o, "\n\n", 2), o += 2;
    e->seq = seq;
    e->len = (size_t)(o - e->text);
    assert(e->len <= cap);
    if (r->nmem == 0)
        r->mem_first = seq;
    r->mem[r->nmem++] = e;
    r->mem_bytes += e->len;
    r->last_seq = seq;
    return PAR_OK;
}

void par__run_trim_locked(par_run_t *r)
{
    /* an ended run is read from its file: thousands of them are kept for
     * runs.retention, and their events would otherwise stay in memory */
    unsigned keep = terminal(r->status) ? 0 : r->rs->memory_events;
    size_t k = 0;
    while (r->nmem - k > keep && r->mem[k]->seq <= r->flushed_seq) {
        r->mem_bytes -= r->mem[k]->len;
        free(r->mem[k]);
        k++;
    }
    if (k == 0)
        return;
    memmove(r->mem, r->mem + k, (r->nmem - k) * sizeof(*r->mem));
    r->nmem -= k;
    r->mem_first = r->nmem ? r->mem[0]->seq : r->last_seq + 1;
}

void par__run_events_free(par_run_t *r)
{
    for (size_t i = 0; i < r->nmem; i++)
        free(r->mem[i]);
    free(r->mem);
    r->mem = NULL;
    r->nmem = r->capmem = 0;
    free(r->off);
    r->off = NULL;
}

/* ---- reading --------------------------------------------------------------------- */

static int in_memory(const par_run_t *r, uint64_t seq)
{
    return r->nmem && seq >= r->mem_first && seq <= r->last_seq;
}

int par_run_read(par_run_t *r, uint64_t after, size_t max_bytes, par_buf_t *out, uint64_t *last,
                 int *ended)
{
    pthread_mutex_lock(&r->mu);
    int rc = PAR_OK;
    *last = after;
    *ended = 0;
    if (after > r->last_seq) {
        rc = PAR_E_BAD_EVENT_ID;
        goto out;
    }
    if (r->expired && after < r->last_seq) {
        rc = PAR_E_RUN_EXPIRED;
        goto out;
    }
    size_t start = out->len;
    uint64_t seq = after + 1;
    while (seq <= r->last_seq && (out->len == start || out->len - start < max_bytes)) {
        if (in_memory(r, seq)) {
            const run_ev_t *e = r->mem[seq - r->mem_first];
            if (par_buf_append(out, e->text, e->len) != PAR_OK) {
                rc = PAR_E_NO_MEMORY;
                break;
            }
            seq++;
            continue;
        }
        /* older than memory: flushed to the event file */
        uint64_t to = r->nmem ? r->mem_first - 1 : r->last_seq, got = 0;
        if (to > r->flushed_seq)
            to = r->flushed_seq;
        size_t room = out->len - start < max_bytes ? max_bytes - (out->len - start) : 1;
        rc = seq > to ? PAR_E_RUN_EXPIRED : par__run_file_read_locked(r, seq, to, room, out, &got);
        if (rc != PAR_OK)
            break;
        seq = got + 1;
    }
    *last = seq - 1;
    *ended = terminal(r->status) && *last == r->last_seq;
    if (out->len > start && rc != PAR_OK && rc != PAR_E_NO_MEMORY)
        rc = PAR_OK; /* what could be read; the next read reports the rest */
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int par__run_event_data_locked(par_run_t *r, uint64_t seq, par_buf_t *out)
{
    par_buf_t t;
    par_buf_init(&t, 0);
    int rc = PAR_OK;
    uint64_t got = 0;
    const char *text;
    size_t len;
    if (in_memory(r, seq)) {
        text = r->mem[seq - r->mem_first]->text;
        len = r->mem[seq - r->mem_first]->len;
    } else if (seq >= 1 && seq <= r->flushed_seq &&
               (rc = par__run_file_read_locked(r, seq, seq, 1, &t, &got)) == PAR_OK) {
        text = t.data;
        len = t.len;
    } else {
        par_buf_free(&t);
        return rc != PAR_OK ? rc : PAR_E_RUN_EXPIRED;
    }
    const char *d = len ? memmem(text, len, "\ndata: ", 7) : NULL;
    if (d == NULL || len < 2) {
        par_buf_free(&t);
        return PAR_E_RUN_EXPIRED;
    }
    d += 7;
    rc = par_buf_append(out, d, (size_t)(text + len - 2 - d));
    par_buf_free(&t);
    return rc;
}

/* ---- watchers ------------------------------------------------------------------------- */

static int has_news(const par_run_t *r, const par_run_watch_t *w)
{
    return w->_delivered < r->last_seq || terminal(r->status);
}

void par__run_notify_locked(par_run_t *r)
{
    for (;;) {
        par_run_watch_t *wake[32];
        size_t n = 0;
        for (par_run_watch_t *w = r->watchers; w && n < 32; w = w->_next)
            if (!w->_notified && has_news(r, w)) {
                w->_notified = 1;
                wake[n++] = w;
            }
        if (n == 0)
            return;
        r->notifying++;
        pthread_mutex_unlock(&r->mu);
        for (size_t i = 0; i < n; i++)
            wake[i]->notify(wake[i]);
        pthread_mutex_lock(&r->mu);
        if (--r->notifying == 0)
            pthread_cond_broadcast(&r->cv);
    }
}

void par__run_release_credit_locked(par_run_t *r, int all)
{
    if (r->held == 0)
        return;
    uint64_t slowest = r->last_seq;
    for (par_run_watch_t *w = r->watchers; w; w = w->_next)
        if (w->_delivered < slowest)
            slowest = w->_delivered;
    /* half a window of slack, so that credit goes back in batches */
    if (!all && r->last_seq - slowest >= PAR_PROTO_EVENT_WINDOW / 2)
        return;
    unsigned n = r->held;
    r->held = 0;
    par_call_t *c = par__run_pin_call_locked(r);
    if (c == NULL)
        return;
    pthread_mutex_unlock(&r->mu);
    par__call_events_ack(c, n);
    par__run_unpin_call(r, c);
    pthread_mutex_lock(&r->mu);
}

int par_run_watch(par_run_t *r, par_run_watch_t *w, uint64_t delivered)
{
    pthread_mutex_lock(&r->mu);
    w->_delivered = delivered;
    w->_notified = 0;
    w->_prev = NULL;
    w->_next = r->watchers;
    if (r->watchers)
        r->watchers->_prev = w;
    r->watchers = w;
    r->nwatchers++;
    atomic_fetch_add(&r->rs->stream_clients, 1);
    par__run_notify_locked(r);
    pthread_mutex_unlock(&r->mu);
    return PAR_OK;
}

void par_run_delivered(par_run_t *r, par_run_watch_t *w, uint64_t seq)
{
    pthread_mutex_lock(&r->mu);
    if (seq > w->_delivered)
        w->_delivered = seq;
    w->_notified = 0;
    par__run_release_credit_locked(r, 0);
    par__run_notify_locked(r);
    pthread_mutex_unlock(&r->mu);
}

void par_run_unwatch(par_run_t *r, par_run_watch_t *w, int client_gone)
{
    pthread_mutex_lock(&r->mu);
    if (w->_prev)
        w->_prev->_next = w->_next;
    else
        r->watchers = w->_next;
    if (w->_next)
        w->_next->_prev = w->_prev;
    w->_next = w->_prev = NULL;
    r->nwatchers--;
    atomic_fetch_sub(&r->rs->stream_clients, 1);
    while (r->notifying > 0) /* a notify may be on its way to `w` */
        pthread_cond_wait(&r->cv, &r->mu);
    int cancel =
        client_gone && r->cancel_on_disconnect && r->nwatchers == 0 && !terminal(r->status);
    par__run_release_credit_locked(r, 0);
    pthread_mutex_unlock(&r->mu);
    if (cancel)
        par_run_cancel(r, "the run's client went away (on_disconnect: cancel)");
}

void par_runs_count_resume(par_runs_t *rs)
{
    if (rs)
        atomic_fetch_add(&rs->resumes_total, 1);
}
