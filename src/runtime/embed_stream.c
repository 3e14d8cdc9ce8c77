/*
 * runtime/embed_stream.c — runs streamed to the host through the embedding
 * API (par/par.h): par_stream_start() / par_stream_resume() /
 * par_stream_cancel() / par_stream_free().
 *
 * A stream is a run (runtime/runs.h) started from par_call_opts_t exactly as
 * par_call_start() fills a call (embed_call.c), with allow_private (the
 * embedder is trusted), plus one watcher of that run and one thread of its
 * own, the pump, which alone calls the host's callback: the watcher's notify
 * (any thread, no lock) only sets `news` and signals the pump, which then
 * reads the run's events (par_run_read, 64 KiB at most), parses the SSE text
 * back into events, calls the host for each in order, and marks them
 * delivered (par_run_delivered) — so the run's flow control holds the agent
 * back while the host pauses. At the end the pump gives the host the run's
 * answer (par_run_answer) and leaves.
 *
 * Threads: the start and the control functions from any thread; the callback
 * on the pump only. par_stream_free joins the pump (unless called from the
 * callback), so nothing touches the run or the host after it returns.
 * Must never call the host while holding the stream's lock.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/runs.h"
#include "runtime/runtime.h"

#define READ_MAX (64u << 10)

struct par_stream {
    par_run_watch_t w;
    par_runtime_t *rt;
    par_run_t *run; /* referenced */
    par_stream_cb cb;
    void *arg;
    pthread_t pump;
    pthread_mutex_t lock; /* news, paused, closed, in_cb */
    pthread_cond_t cond;
    int news, paused, closed, in_cb, ended, self_freed;
    uint64_t sent;
    unsigned resumes; /* par_stream_resume calls: one during a callback voids its pause */
};

static void on_notify(par_run_watch_t *w)
{
    par_stream_t *s = w->data;
    pthread_mutex_lock(&s->lock);
    s->news = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Calls the host; PAR_STREAM_PAUSE holds the pump. Returns 0, or -1 once closed. */
static int deliver(par_stream_t *s, const par_stream_event_t *ev)
{
    pthread_mutex_lock(&s->lock);
    if (s->closed) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    s->in_cb = 1;
    unsigned resumes = s->resumes;
    pthread_mutex_unlock(&s->lock);
    int r = s->cb(s->arg, ev);
    pthread_mutex_lock(&s->lock);
    s->in_cb = 0;
    if (r == PAR_STREAM_PAUSE && s->resumes == resumes)
        s->paused = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Parses "id: N\nevent: T\ndata: D\n\n" records of `b` into callbacks.
 * Returns -1 once the host closed. */
static int deliver_text(par_stream_t *s, char *p, char *end)
{
    while (p < end) {
        char *rec_end = strstr(p, "\n\n");
        if (rec_end == NULL)
            break;
        *rec_end = '\0';
        par_stream_event_t ev = {0};
        for (char *line = p; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (strncmp(line, "id: ", 4) == 0)
                ev.seq = strtoull(line + 4, NULL, 10);
            else if (strncmp(line, "event: ", 7) == 0)
                ev.type = line + 7;
            else if (strncmp(line, "data: ", 6) == 0)
                ev.data = line + 6, ev.len = strlen(line + 6);
            line = nl ? nl + 1 : NULL;
        }
        p = rec_end + 2;
        if (ev.type == NULL || ev.data == NULL)
            continue; /* a comment (keep-alive) */
        if (deliver(s, &ev) != 0)
            return -1;
    }
    return 0;
}

/* The last callback: the run's answer, or the error that stopped the reading. */
static void deliver_end(par_stream_t *s, int rc)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    int status = PAR_OK;
    if (rc == PAR_OK)
        rc = par_run_answer(s->run, &b, &status);
    if (rc != PAR_OK) {
        par_buf_reset(&b);
        status = rc;
        par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":\"%s\",\"request_id\":null}",
                        par_status_name(rc), par_strerror(rc));
    }
    if (par_buf_terminate(&b) != PAR_OK) {
        status = PAR_E_NO_MEMORY;
        par_buf_free(&b);
    }
    par_stream_event_t ev = {.end = 1, .status = status};
    ev.data = b.data ? b.data : "{\"error\":\"out_of_memory\",\"message\":\"out of memory\"}";
    ev.len = strlen(ev.data);
    par__embed_count(s->rt, status);
    deliver(s, &ev);
    par_buf_free(&b);
}

/* Waits for news (or the host); 1 to read, 0 once closed. The timed wait is
 * a safety net only: a notify is never needed for progress twice. */
static int wait_news(par_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->closed && (s->paused || !s->news)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) != 0 && !s->paused)
            s->news = 1;
    }
    int go = !s->closed;
    s->news = 0;
    pthread_mutex_unlock(&s->lock);
    return go;
}

static void release(par_stream_t *s)
{
    par_run_unwatch(s->run, &s->w, 1);
    par_run_unref(s->run);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

static void *pump(void *arg)
{
    par_stream_t *s = arg;
    par_buf_t b;
    par_buf_init(&b, 0);
    while (wait_news(s)) {
        uint64_t last = s->sent;
        int ended = 0;
        par_buf_reset(&b);
        int rc = par_run_read(s->run, s->sent, READ_MAX, &b, &last, &ended);
        if (rc == PAR_OK && par_buf_terminate(&b) != PAR_OK)
            rc = PAR_E_NO_MEMORY;
        if (rc != PAR_OK) {
            deliver_end(s, rc);
            break;
        }
        if (b.len && deliver_text(s, b.data, b.data + b.len) != 0)
            break;
        s->sent = last;
        par_run_delivered(s->run, &s->w, last); /* re-arms the notify */
        if (ended) {
            deliver_end(s, PAR_OK);
            break;
        }
    }
    par_buf_free(&b);
    pthread_mutex_lock(&s->lock);
    s->ended = 1;
    int self_freed = s->self_freed;
    pthread_mutex_unlock(&s->lock);
    if (self_freed) /* par_stream_free came from the callback */
        release(s);
    return NULL;
}

int par_stream_start(par_runtime_t *rt, const par_call_opts_t *opts, par_stream_cb cb, void *arg,
                     par_stream_t **out, char **err)
{
    if (err)
        *err = NULL;
    if (out)
        *out = NULL;
    if (rt == NULL || opts == NULL || cb == NULL || out == NULL)
        return PAR_E_INVALID_ARGUMENT;
    par_stream_t *s = calloc(1, sizeof(*s));
    par_call_t *c = s ? par__call_new() : NULL;
    if (c == NULL) {
        free(s);
        return PAR_E_NO_MEMORY;
    }
    int rc = par__embed_fill_call(c, opts);
    if (rc == PAR_OK)
        rc = par__call_own_input(c) == 0 ? PAR_OK : PAR_E_NO_MEMORY;
    par_run_opts_t ro = {.allow_private = 1};
    unsigned retry = 0;
    if (rc == PAR_OK)
        rc = par_run_start(rt, c, &ro, &s->run, &retry);
    if (rc != PAR_OK) { /* the run does not exist; the call is ours */
        c->status = rc;
        if (err) {
            par_result_t r;
            par__embed_result(c, &r);
            *err = r.data;
        }
        par__call_free(c);
        par__embed_count(rt, rc);
        free(s);
        return rc;
    }
    s->rt = rt;
    s->cb = cb;
    s->arg = arg;
    s->w.notify = on_notify;
    s->w.data = s;
    s->news = 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    par_run_watch(s->run, &s->w, 0);
    if (pthread_create(&s->pump, NULL, pump, s) != 0) {
        par_run_unwatch(s->run, &s->w, 1);
        par_run_cancel(s->run, "out of memory starting the stream");
        par_run_unref(s->run);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
        return PAR_E_NO_MEMORY;
    }
    *out = s;
    return PAR_OK;
}

void par_stream_resume(par_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->resumes++; /* also voids the pause of a callback in progress */
    if (s->paused) {
        s->paused = 0;
        s->news = 1;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

int par_stream_cancel(par_stream_t *s)
{
    return par_run_cancel(s->run, "the host cancelled the run");
}

void par_stream_free(par_stream_t *s)
{
    if (s == NULL)
        return;
    int self = pthread_equal(pthread_self(), s->pump);
    pthread_mutex_lock(&s->lock);
    int ended = s->ended;
    s->closed = 1;
    s->self_freed = self;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (!ended && par_run_status(s->run) < PAR_RUN_SUCCEEDED)
        par_run_cancel(s->run, "the host closed the stream");
    if (self) { /* from the callback: the pump releases the stream as it leaves */
        pthread_detach(s->pump);
        return;
    }
    pthread_join(s->pump, NULL);
    release(s);
}
