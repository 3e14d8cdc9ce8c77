/*
 * loader/frames.c — what workers send: frames read from a worker's socket
 * (SANDBOX, HELLO, RESULT, ERROR, CALL, LOG; EVENT goes to events.c) and the lines it writes to its
 * stdout/stderr, logged under a rate limit; a sibling call's CALL_RESULT.
 *
 * Runs on the thread running the supervisor's I/O (the I/O thread or the
 * attached loop); a CALL_RESULT may be sent from any thread that finishes the
 * child call. Takes the pool lock to touch shared state; finishes calls with
 * it released. Must never trust what a worker wrote: every header is parsed
 * defensively and a LOG frame's call is looked up, never believed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader/worker.h"
#include "obs/log.h"
#include "util/json.h"

#define OUTPUT_LINES_PER_SEC 200

/* ---- output lines ------------------------------------------------------------ */

/* Keeps the last PAR_TAIL_MAX_LINES lines, at most PAR_TAIL_MAX_BYTES, of what
 * a starting worker wrote: the oldest whole lines go first. */
static void tail_add(par_worker_t *w, const char *s, size_t n)
{
    if (n > PAR_TAIL_MAX_BYTES / 4)
        s += n - PAR_TAIL_MAX_BYTES / 4, n = PAR_TAIL_MAX_BYTES / 4; /* a line's end says most */
    if (w->tail_len + n + 1 > sizeof(w->tail)) {
        size_t drop = w->tail_len + n + 1 - sizeof(w->tail);
        char *nl = memchr(w->tail + drop, '\n', w->tail_len - drop);
        drop = nl ? (size_t)(nl + 1 - w->tail) : w->tail_len;
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
    memcpy(w->tail + w->tail_len, s, n);
    w->tail_len += n;
    w->tail[w->tail_len++] = '\n';
    size_t lines = 0;
    for (size_t i = 0; i < w->tail_len; i++)
        lines += w->tail[i] == '\n';
    while (lines-- > PAR_TAIL_MAX_LINES) {
        char *nl = memchr(w->tail, '\n', w->tail_len);
        size_t drop = (size_t)(nl + 1 - w->tail);
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
}

char *par__worker_start_error(const par_worker_t *w, const char *how, const char *said)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    if (said)
        par_buf_appends(&b, said);
    else
        par_buf_appendf(&b, "worker %s before it was ready", how);
    if (w->tail_len) {
        par_buf_appendf(&b, "\nlast output of the worker (pid %d, %s):\n", (int)w->pid, how);
        par_buf_append(&b, w->tail, w->tail_len - 1);
    }
    size_t n;
    char *s = par_buf_steal(&b, &n);
    return s ? s : strdup("worker failed to start");
}

/* Rate limit shared by output lines and LOG frames of one worker. */
static int output_allowed(par_worker_t *w)
{
    int64_t now = par__now_ms();
    if (now - w->lines_window_ms >= 1000) {
        if (w->lines_dropped)
            par_log_msg(PAR_LOG_WARN, "worker %d of %s: %llu output lines dropped (rate limit)",
                        (int)w->pid, w->pool->name, (unsigned long long)w->lines_dropped);
        w->lines_window_ms = now;
        w->lines_in_window = 0;
        w->lines_dropped = 0;
    }
    if (++w->lines_in_window > OUTPUT_LINES_PER_SEC) {
        w->lines_dropped++;
        return 0;
    }
    return 1;
}

static void emit_line(par_worker_t *w)
{
    if (w->state == W_STARTING)
        tail_add(w, w->line, w->line_len);
    if (!output_allowed(w)) {
        w->line_len = 0;
        return;
    }
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "agent output")) {
        par_log_str(&l, "source", "agent");
        par_log_str(&l, "package", w->pool->name);
        par_log_str(&l, "version", w->pool->version);
        par_log_int(&l, "pid", w->pid);
        par_log_strn(&l, "line", w->line, w->line_len);
        par_log_end(&l);
    }
    w->line_len = 0;
}

void par__worker_drain_output(par_worker_t *w)
{
    char buf[8192];
    for (int rounds = 0; rounds < 64; rounds++) {
        ssize_t r = read(w->out_fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n' || w->line_len == sizeof(w->line)) {
                emit_line(w);
                if (buf[i] == '\n')
                    continue;
            }
            w->line[w->line_len++] = buf[i];
        }
    }
}

/* ---- sibling calls ------------------------------------------------------------- */

/* The CALL_RESULT header and body for a finished child call. */
static void call_result(par_call_t *c, size_t max_input, par_buf_t *hdr, par_buf_t *body)
{
    if (c->status == PAR_OK && max_input && c->output.len > max_input) {
        /* the caller's worker refuses frames over its input cap: answer it
         * with an error it can read instead of a frame that would end it */
        char msg[PAR_ID_MAX + 200];
        snprintf(msg, sizeof(msg),
                 "the output of '%s' (%zu bytes) exceeds what its caller accepts (%zu bytes, "
                 "limits.max_input_kb)",
                 c->agent_id, c->output.len, max_input);
        par__call_set_error(c, PAR_E_OUTPUT_TOO_LARGE, msg);
    }
    /* the callee's usage units roll up into the caller's invocation */
    par_buf_appends(hdr, "{\"status\":");
    par_buf_append_i64(hdr, c->status == PAR_OK ? 0 : c->status);
    if (c->status == PAR_OK && c->units_json) {
        par_buf_appends(hdr, ",\"units\":");
        par_buf_appends(hdr, c->units_json);
    }
    par_buf_appends(hdr, "}");
    if (c->status == PAR_OK) {
        par_buf_append(body, c->output.data, c->output.len);
    } else {
        par_buf_appends(body, "{\"error\":\"");
        par_buf_appends(body, par_status_name(c->status));
        par_buf_appends(body, "\",\"message\":");
        par_buf_append_json_str(body, c->output.data ? c->output.data : "", c->output.len);
        par_buf_appends(body, "}");
    }
}

/* The `done` of a call a worker asked for: answers it, any thread. */
static void child_done(par_call_t *c)
{
    par_slot_t *s = par__slot(c);
    par_pool_t *p = s->parent_pool;
    char stackbuf[1024];
    par_buf_t hdr, body;
    par_buf_init_on(&hdr, stackbuf, sizeof(stackbuf), 0);
    par_buf_init(&body, 0);
    call_result(c, p->max_input, &hdr, &body);
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next) {
        if (w->wid == s->parent_worker_id) {
            par__worker_send(w, PAR_FRAME_CALL_RESULT, s->parent_call_id, hdr.data, hdr.len,
                             body.data, body.len);
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    par_buf_free(&hdr);
    par_buf_free(&body);
    atomic_fetch_sub(&p->refs, 1);
    par__call_free(c);
}

/* Links the child to the in-flight call `parent_id` of the worker. Lock taken. */
static int link_parent(par_worker_t *w, par_call_t *c, uint64_t parent_id)
{
    par_pool_t *p = w->pool;
    pthread_mutex_lock(&p->lock);
    par_pending_ent_t *e = par_pending_find(&w->pending, parent_id);
    int rc = e ? par__call_link(c, par__pend_call(e)) : PAR_E_BAD_REQUEST;
    pthread_mutex_unlock(&p->lock);
    if (e == NULL)
        par_buf_appends(&c->output, "CALL names no in-flight parent invocation");
    return rc;
}

static void handle_call_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    par_call_t *c = par__call_new();
    if (c == NULL) { /* the worker's call waits for its deadline */
        par_log_msg(PAR_LOG_ERROR, "out of memory for a sub-agent call of %s", p->name);
        return;
    }
    json_t *h = json_loadb(f->header, f->header_len, 0, NULL);
    const char *agent = json_string_value(json_object_get(h, "agent"));
    uint64_t parent_id = (uint64_t)json_integer_value(json_object_get(h, "parent"));
    int rc = PAR_OK;
    if (agent == NULL || strlen(agent) > PAR_ID_MAX) {
        rc = PAR_E_BAD_REQUEST;
        par_buf_appends(&c->output, "CALL needs an \"agent\" id");
    } else {
        strcpy(c->agent_id, agent);
        rc = link_parent(w, c, parent_id);
    }
    if (json_is_true(json_object_get(h, "stream")))
        c->sink = &par__stream_sink; /* its events go to the caller as CALL_EVENT */
    json_decref(h);
    c->input = f->body_len ? f->body : "null";
    c->input_len = f->body_len ? f->body_len : 4;
    c->done = child_done;
    par_slot_t *s = par__slot(c);
    s->parent_pool = p;
    s->parent_worker_id = w->wid;
    s->parent_call_id = f->id;
    atomic_fetch_add(&p->refs, 1);
    if (rc == PAR_OK && (rc = par__call_own_input(c)) == PAR_OK)
        rc = p->s->hooks.call_start(p->s->hooks.owner, c);
    if (rc != PAR_OK) {
        c->status = rc;
        child_done(c);
    }
}

/* ---- frames -------------------------------------------------------------------- */

/* A LOG frame names the call it belongs to by its frame id; the agent,
 * request and trace are that call's, never what the header claims. A frame
 * for no call in flight (id 0: start-up, a background thread; or an id the
 * worker made up) is logged as the package's worker. Only `level` and `msg`
 * are read from the header. */
static void handle_log_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    json_t *h = json_loadb(f->header, f->header_len, 0, NULL);
    const char *lv = json_string_value(json_object_get(h, "level"));
    const char *m = json_string_value(json_object_get(h, "msg"));
    if (w->state == W_STARTING && m)
        tail_add(w, m, strlen(m));
    if (!output_allowed(w)) {
        json_decref(h);
        return;
    }
    char agent[PAR_ID_MAX + 1] = "", rid[PAR_REQUEST_ID_MAX + 1] = "", trace[64] = "";
    pthread_mutex_lock(&p->lock);
    par_pending_ent_t *e = f->id ? par_pending_find(&w->pending, f->id) : NULL;
    if (e) {
        const par_call_t *c = par__pend_call(e);
        memcpy(agent, c->agent_id, sizeof(agent));
        memcpy(rid, c->request_id, sizeof(rid));
        memcpy(trace, c->trace_id, sizeof(trace));
    }
    pthread_mutex_unlock(&p->lock);
    int level = lv ? par_log_parse_level(lv) : PAR_LOG_INFO;
    par_logline_t l;
    if (par_log_begin(&l, level < 0 ? PAR_LOG_INFO : level, m ? m : "")) {
        par_log_str(&l, "source", "agent");
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", w->pid);
        if (e) {
            par_log_str(&l, "agent", agent);
            par_log_str(&l, "request_id", rid);
            par_log_str(&l, "trace_id", trace);
        }
        par_log_end(&l);
    }
    json_decref(h);
}

/* par-worker's own report, sent before it loads or execs package code; only
 * the first one counts and only before HELLO. */
static void handle_sandbox_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    json_t *h = f->header_len ? json_loadb(f->header, f->header_len, 0, NULL) : NULL;
    json_t *sb = json_object_get(h, "sandbox");
    pthread_mutex_lock(&p->lock);
    if (w->state == W_STARTING && w->sandbox == NULL && json_is_object(sb))
        w->sandbox = json_incref(sb);
    pthread_mutex_unlock(&p->lock);
    json_decref(h);
}

static void log_degraded(par_pool_t *p, const char *list)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_WARN, "worker sandbox degraded")) {
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_str(&l, "degraded", list);
        par_log_end(&l);
    }
}

/* The worker is ready: it takes queued calls. Lock held. */
static void worker_ready(par_worker_t *w, json_t *h)
{
    par_pool_t *p = w->pool;
    if (w->sandbox == NULL) {
        /* no report from par-worker: a worker started some other way */
        json_t *sb = json_object_get(h, "sandbox");
        w->sandbox = json_is_object(sb) ? json_incref(sb)
                                        : json_pack("{s:b, s:s}", "enabled", 0, "reason",
                                                    "the worker reported no sandbox");
    }
    json_decref(p->sandbox);
    p->sandbox = w->sandbox ? json_incref(w->sandbox) : NULL;
    w->state = W_READY;
    p->started = 1;
    par__pool_drain_queue(p);
}

static void handle_hello_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    json_t *h = f->header_len ? json_loadb(f->header, f->header_len, 0, NULL) : NULL;
    json_t *hpid = json_object_get(h, "pid");
    if (hpid && json_integer_value(hpid) != w->pid) {
        par_log_msg(PAR_LOG_ERROR,
                    "worker %d of %s said HELLO for pid %lld: not the worker it started",
                    (int)w->pid, p->name, (long long)json_integer_value(hpid));
        w->kill_reason = "protocol error";
        json_decref(h);
        par_spawn_kill(w->pid);
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (w->state == W_STARTING)
        worker_ready(w, h);
    json_t *degraded = json_object_get(p->sandbox, "degraded");
    int warn = !p->sandbox_warned && json_array_size(degraded) > 0;
    p->sandbox_warned |= warn;
    char *list = warn ? json_dumps(degraded, JSON_COMPACT) : NULL;
    pthread_cond_broadcast(&p->cond);
    par__pool_unlock(p); /* worker_ready dispatched the queue */
    if (list)
        log_degraded(p, list);
    free(list);
    json_decref(h);
}

/* The RESULT header: {"cpu_ms": number, "units": {...}}, both optional. */
static void result_header(par_call_t *c, const char *h, size_t n)
{
    par_json_field_t fl[2] = {{"cpu_ms", NULL, 0}, {"units", NULL, 0}};
    if (n == 0 || par_json_scan(h, n, fl, 2, NULL) != 0 || par_json_root_type(h, n) != '{')
        return;
    if (fl[0].ptr && par_json_root_type(fl[0].ptr, fl[0].len) == '0') {
        char num[64];
        size_t k = fl[0].len < sizeof(num) - 1 ? fl[0].len : sizeof(num) - 1;
        memcpy(num, fl[0].ptr, k);
        num[k] = '\0';
        c->cpu_ns = (int64_t)(strtod(num, NULL) * 1e6);
    }
    if (fl[1].ptr && par_json_root_type(fl[1].ptr, fl[1].len) == '{' &&
        (c->units_json = malloc(fl[1].len + 1)) != NULL) {
        memcpy(c->units_json, fl[1].ptr, fl[1].len);
        c->units_json[fl[1].len] = '\0';
    }
}

static void set_result(par_call_t *c, const par_frame_t *f)
{
    size_t off;
    if (f->body_len == 0 || par_json_scan(f->body, f->body_len, NULL, 0, &off) != 0) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "agent '%s' returned output that is not valid JSON (byte %zu of %u)", c->agent_id,
                 f->body_len ? off : 0, f->body_len);
        par__call_set_error(c, PAR_E_BAD_OUTPUT, msg);
        return;
    }
    c->status = PAR_OK;
    par_buf_reset(&c->output);
    if (par_buf_append(&c->output, f->body, f->body_len) != PAR_OK)
        par__call_set_error(c, PAR_E_OUTPUT_TOO_LARGE, "agent output exceeds the cap");
    result_header(c, f->header, f->header_len);
}

static int status_from_name(const char *name)
{
    for (int i = 1; i < PAR_STATUS_COUNT; i++)
        if (strcmp(par_status_name(i), name) == 0)
            return i;
    return PAR_E_AGENT_ERROR;
}

static void set_error(par_call_t *c, json_t *h)
{
    const char *name = json_string_value(json_object_get(h, "error"));
    const char *m = json_string_value(json_object_get(h, "message"));
    par__call_set_error(c, status_from_name(name ? name : "agent_error"), m ? m : "agent error");
    const char *tb = json_string_value(json_object_get(h, "traceback"));
    if (tb && c->status == PAR_E_AGENT_ERROR) /* for the embedder (par_call), not HTTP */
        c->traceback = strdup(tb);
}

/* ERROR with id 0: the worker could not start (it dies next). */
static void start_error_frame(par_pool_t *p, json_t *h)
{
    const char *m = json_string_value(json_object_get(h, "message"));
    const char *name = json_string_value(json_object_get(h, "error"));
    pthread_mutex_lock(&p->lock);
    free(p->start_error);
    p->start_error = strdup(m ? m : "worker failed to start");
    if (name && strcmp(name, "agent_load_failed") == 0)
        p->start_status = PAR_E_AGENT_LOAD_FAILED;
    pthread_mutex_unlock(&p->lock);
}

/* RESULT, the hot path, is read with the non-allocating scanner. */
static void handle_answer(par_worker_t *w, const par_frame_t *f, par_done_list_t *done)
{
    par_pool_t *p = w->pool;
    json_t *h = f->header_len && f->type == PAR_FRAME_ERROR
                    ? json_loadb(f->header, f->header_len, 0, NULL)
                    : NULL;
    if (f->id == 0 && f->type == PAR_FRAME_ERROR) {
        start_error_frame(p, h);
        json_decref(h);
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (w->graces) /* a cancelled call answered in its grace */
        par__worker_grace_answered(w, f->id);
    par_call_t *c = par__worker_take(w, f->id);
    if (c)
        par__pool_drain_queue(p);
    int kill_now = w->state == W_RETIRING && w->pending.count == 0;
    par__pool_unlock(p);
    if (kill_now)
        par_spawn_kill(w->pid);
    if (c) { /* else answered after its deadline or a cancel: already completed */
        if (f->type == PAR_FRAME_RESULT)
            set_result(c, f);
        else
            set_error(c, h);
        if (c->sink) { /* another thread may be in its sink (`started`): see events.c */
            pthread_mutex_lock(&p->lock);
            par__done_push(done, c);
            pthread_mutex_unlock(&p->lock);
        } else {
            par__done_push(done, c);
        }
    }
    json_decref(h);
}

static void handle_frame(par_worker_t *w, const par_frame_t *f)
{
    par_done_list_t done = {NULL};
    switch (f->type) {
    case PAR_FRAME_SANDBOX:
        handle_sandbox_frame(w, f);
        break;
    case PAR_FRAME_HELLO:
        handle_hello_frame(w, f);
        break;
    case PAR_FRAME_RESULT:
    case PAR_FRAME_ERROR:
        handle_answer(w, f, &done);
        break;
    case PAR_FRAME_CALL:
        handle_call_frame(w, f);
        break;
    case PAR_FRAME_LOG:
        handle_log_frame(w, f);
        break;
    case PAR_FRAME_EVENT:
        par__worker_event(w, f, &done);
        break;
    default:
        break; /* USAGE, CHUNK: accepted and ignored in this protocol version */
    }
    par__done_run(w->pool->s, &done);
}

/* Decodes and handles every whole frame in the input buffer. */
static int decode_frames(par_worker_t *w)
{
    for (;;) {
        par_frame_t f;
        size_t used;
        const char *err;
        int d = par_proto_decode((uint8_t *)w->in.data + w->in_start, w->in.len - w->in_start,
                                 w->pool->max_output, &f, &used, &err);
        if (d < 0) {
            par_log_msg(PAR_LOG_ERROR, "worker %d of %s broke the protocol: %s", (int)w->pid,
                        w->pool->name, err);
            w->kill_reason = "protocol error";
            return -1;
        }
        if (d == 0) {
            if (w->ack_n) { /* the credit of this batch's events, one EVENT_ACK per request */
                pthread_mutex_lock(&w->pool->lock);
                par__worker_ack_flush(w);
                pthread_mutex_unlock(&w->pool->lock);
            }
            return 0;
        }
        handle_frame(w, &f);
        w->in_start += used;
        if (w->state == W_DEAD)
            return -1;
    }
}

int par__worker_read(par_worker_t *w)
{
    for (;;) {
        if (par_buf_reserve(&w->in, 64 * 1024) != PAR_OK)
            return -1;
        ssize_t r = read(w->fd, w->in.data + w->in.len, w->in.cap - w->in.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return 0;
        if (r <= 0) {
            par_log_msg(PAR_LOG_DEBUG, "worker %d: %s", (int)w->pid,
                        r == 0 ? "end of stream" : strerror(errno));
            return -1;
        }
        w->in.len += (size_t)r;
        if (decode_frames(w) != 0)
            return -1;
        if (w->in_start == w->in.len) {
            w->in.len = w->in_start = 0;
        } else if (w->in_start > 0) {
            memmove(w->in.data, w->in.data + w->in_start, w->in.len - w->in_start);
            w->in.len -= w->in_start;
            w->in_start = 0;
        }
        if ((size_t)r < 64 * 1024)
            return 0;
    }
}
