/*
 * worker/main.c — par-worker, the native worker host.
 *
 * Spawned by the runtime's supervisor (loader/supervisor.c), one process per
 * worker of a native package version. It loads the package's shared objects,
 * resolves every export, says HELLO, then serves INVOKE frames on a socket
 * (docs/worker-protocol.md) until the socket closes.
 *
 *   par-worker --fd N --root DIR [--max-input BYTES] [--max-output BYTES]
 *              [sandbox options] --export NAME=path/lib.so:symbol [--export …]
 *   par-worker --fd N --root DIR [sandbox options] --exec PROG [ARGS…]
 *
 * Before it loads any agent code it puts itself in the sandbox
 * (sandbox/sandbox.h); with --exec it then execs PROG, which inherits the
 * sandbox and descriptors 0-3 and speaks the protocol itself.
 *
 * Threads: one thread at a time holds the reader role and reads frames. It
 * runs the first INVOKE of what it read itself (no hand-off to another
 * thread for the common case: one request, answered at once) and queues the
 * rest to a pool of handler threads that grows when every thread is busy.
 * While it runs that job the role is free; a watchdog hands the role to
 * another thread when the job takes longer than INLINE_MAX_NS, and a job
 * that calls a sibling (par_ctx_call) asks for a reader at once, so slow
 * agents and sibling calls can neither stall reading nor deadlock the
 * worker. Every frame written goes out whole under one write lock.
 *
 * It must never trust the runtime's input beyond the protocol's caps, and it
 * exits when the runtime goes away (PR_SET_PDEATHSIG and EOF).
 */
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <par/agent.h>
#include <par/par.h>

#include "core/proto.h"
#include "sandbox/sandbox.h"
#include "util/buf.h"
#include "util/json.h"

#define MAX_EXPORTS 256
#define MAX_THREADS 256
#define INLINE_MAX_NS 1000000LL      /* an inline job longer than this gives reading away */
#define WATCHDOG_IDLE_NS 100000000LL /* no inline job for this long: the watchdog sleeps */

typedef struct wexport {
    char *name;
    char *lib;
    char *symbol;
    par_agent_fn fn;
} wexport_t;

typedef struct arena_item {
    struct arena_item *next;
    char data[];
} arena_item_t;

typedef struct job {
    struct job *next;
    uint64_t id;
    /* the INVOKE header's fields; strings point into mem, "" when absent */
    int64_t x, deadline_ms;
    const char *agent, *request_id, *trace_id, *span_id, *subject, *tenant;
    const char *context; /* the raw JSON value, NULL when absent */
    char *input;         /* into mem, NULL when the body is empty */
    size_t input_len;
    par_agent_ctx_t ctx;
    par_out_t out;
    par_buf_t outbuf;
    char *fail_msg;
    json_t *units;
    arena_item_t *arena;
    atomic_int cancelled;
    int out_too_large;
    char mem[]; /* header strings, then the input */
} job_t;

typedef struct wcall {
    struct wcall *next;
    uint64_t id;
    int done;
    int status;
    json_t *units;
    char *data;
    size_t len;
    pthread_cond_t cond;
} wcall_t;

static int g_fd = -1;
static size_t g_max_input = 64u << 20;
static size_t g_max_output = 16u << 20;
static wexport_t g_exports[MAX_EXPORTS];
static size_t g_nexports;

static pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* jobs, threads, calls */
static pthread_cond_t g_job_cond = PTHREAD_COND_INITIALIZER;
static job_t *g_jobs_head, *g_jobs_tail;
static unsigned g_threads, g_idle;
static wcall_t *g_calls;
static uint64_t g_next_call_id = 1;
static int g_shutdown;
/* the reader role, guarded by g_lock */
static int g_role_free;          /* its holder is running an inline job: nobody reads */
static int g_role_wanted;        /* a thread has been asked to take the role */
static int64_t g_inline_ns;      /* when the inline job running now started, 0 = none */
static int64_t g_inline_last_ns; /* when the last one started */
static int64_t g_kicked_ns;      /* the inline job the watchdog already acted on */
static int g_wd_sleeping;
static pthread_cond_t g_wd_cond = PTHREAD_COND_INITIALIZER;
/* the input buffer belongs to the thread that holds the role */
static par_buf_t g_in;
static size_t g_in_start;
static job_t *g_batch_head, *g_batch_tail; /* INVOKEs of the last read */

static void want_reader_locked(void);

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static int write_all(const struct iovec *iov_in, int n)
{
    struct iovec iov[4];
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)n);
    int i = 0;
    while (i < n) {
        ssize_t w = writev(g_fd, iov + i, n - i);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (i < n && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Frames of jobs the reading thread runs one after the other are collected
 * here while more of its queued jobs follow, and written with the last one:
 * one write for a batch of answers. Guarded by g_write_lock. Any other frame
 * written (another thread's, a CALL) takes what is collected with it, and the
 * watchdog writes it out when a job runs long, so nothing waits behind a slow
 * job for more than the watchdog's interval. */
#define WBUF_MAX_FRAME (64u * 1024) /* larger frames are never copied */
static par_buf_t g_wbuf;
static __thread int tl_batching; /* this thread runs a job that more queued jobs follow */

static void send_frame(uint8_t type, uint64_t id, const char *hdr, size_t hlen, const char *body,
                       size_t blen)
{
    uint8_t fh[PAR_PROTO_HEADER_SIZE];
    par_proto_encode(fh, type, id, (uint32_t)hlen, (uint32_t)blen);
    pthread_mutex_lock(&g_write_lock);
    if (tl_batching && type != PAR_FRAME_CALL && hlen + blen <= WBUF_MAX_FRAME) {
        size_t mark = g_wbuf.len;
        if (par_buf_append(&g_wbuf, (const char *)fh, sizeof(fh)) == PAR_OK &&
            par_buf_append(&g_wbuf, hdr, hlen) == PAR_OK &&
            par_buf_append(&g_wbuf, body, blen) == PAR_OK) {
            pthread_mutex_unlock(&g_write_lock);
            return;
        }
        g_wbuf.len = mark; /* whole frames only: this one goes out directly */
    }
    struct iovec iov[4] = {
        {g_wbuf.data, g_wbuf.len}, {fh, sizeof(fh)}, {(void *)hdr, hlen}, {(void *)body, blen}};
    int rc = g_wbuf.len ? write_all(iov, 4) : write_all(iov + 1, 3);
    par_buf_reset(&g_wbuf);
    pthread_mutex_unlock(&g_write_lock);
    if (rc != 0)
        _exit(0); /* the runtime is gone */
}

/* Writes what send_frame collected. */
static void flush_frames(void)
{
    pthread_mutex_lock(&g_write_lock);
    int rc = 0;
    if (g_wbuf.len) {
        struct iovec iov = {g_wbuf.data, g_wbuf.len};
        rc = write_all(&iov, 1);
        par_buf_reset(&g_wbuf);
    }
    pthread_mutex_unlock(&g_write_lock);
    if (rc != 0)
        _exit(0);
}

static void send_json_frame(uint8_t type, uint64_t id, json_t *hdr, const char *body, size_t blen)
{
    char *h = hdr ? json_dumps(hdr, JSON_COMPACT) : NULL;
    send_frame(type, id, h, h ? strlen(h) : 0, body, blen);
    free(h);
}

static void die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g_fd >= 0) {
        json_t *h = json_pack("{s:s, s:s}", "error", "load_failed", "message", msg);
        send_json_frame(PAR_FRAME_ERROR, 0, h, NULL, 0);
        json_decref(h);
    }
    fprintf(stderr, "par-worker: %s\n", msg);
    exit(3);
}

/* ---- the agent API ---------------------------------------------------- */

static job_t *job_of(par_agent_ctx_t *ctx)
{
    return (job_t *)ctx->_impl;
}

static int api_out_write(par_out_t *out, const void *data, size_t len)
{
    job_t *j = (job_t *)out->_impl;
    if (j->out_too_large)
        return PAR_E_OUTPUT_TOO_LARGE;
    int rc = par_buf_append(&j->outbuf, data, len);
    if (rc == PAR_E_TOO_LARGE) {
        j->out_too_large = 1;
        return PAR_E_OUTPUT_TOO_LARGE;
    }
    return rc;
}

static void api_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount);

static int api_call(par_agent_ctx_t *ctx, const char *agent_id, par_slice_t input,
                    par_slice_t *output)
{
    job_t *j = job_of(ctx);
    wcall_t c = {0};
    pthread_cond_init(&c.cond, NULL);
    pthread_mutex_lock(&g_lock);
    c.id = g_next_call_id++;
    c.next = g_calls;
    g_calls = &c;
    pthread_mutex_unlock(&g_lock);

    json_t *h = json_pack("{s:s, s:I}", "agent", agent_id, "parent", (json_int_t)j->id);
    send_json_frame(PAR_FRAME_CALL, c.id, h, input.ptr, input.len);
    json_decref(h);

    pthread_mutex_lock(&g_lock);
    want_reader_locked(); /* the answer must be read by someone while this thread waits */
    while (!c.done && !g_shutdown)
        pthread_cond_wait(&c.cond, &g_lock);
    for (wcall_t **pp = &g_calls; *pp; pp = &(*pp)->next) {
        if (*pp == &c) {
            *pp = c.next;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    pthread_cond_destroy(&c.cond);
    if (!c.done) {
        static const char gone[] = "{\"error\":\"draining\",\"message\":\"worker shutting down\"}";
        output->ptr = gone;
        output->len = sizeof(gone) - 1;
        return PAR_E_DRAINING;
    }
    if (c.units) {
        const char *unit;
        json_t *v;
        json_object_foreach(c.units, unit, v) api_usage(ctx, unit, (int64_t)json_integer_value(v));
        json_decref(c.units);
    }
    /* keep the result alive until the invocation ends */
    arena_item_t *it = malloc(sizeof(*it) + c.len + 1);
    if (it == NULL) {
        free(c.data);
        output->ptr = "null";
        output->len = 4;
        return PAR_E_NO_MEMORY;
    }
    memcpy(it->data, c.data, c.len);
    it->data[c.len] = '\0';
    free(c.data);
    it->next = j->arena;
    j->arena = it;
    output->ptr = it->data;
    output->len = c.len;
    return c.status;
}

static void api_usage(par_agent_ctx_t *ctx, const char *unit, int64_t amount)
{
    job_t *j = job_of(ctx);
    if (unit == NULL || *unit == '\0')
        return;
    if (j->units == NULL)
        j->units = json_object();
    json_t *cur = json_object_get(j->units, unit);
    json_int_t v = (cur ? json_integer_value(cur) : 0) + amount;
    json_object_set_new(j->units, unit, json_integer(v));
}

static void api_log(par_agent_ctx_t *ctx, int level, const char *msg)
{
    static const char *const lv[] = {"debug", "info", "warn", "error"};
    job_t *j = job_of(ctx);
    /* the frame id names the invocation: the runtime adds its agent and request */
    json_t *h = json_pack("{s:s, s:s}", "level", lv[level < 0 || level > 3 ? 1 : level], "msg",
                          msg ? msg : "");
    send_json_frame(PAR_FRAME_LOG, j->id, h, NULL, 0);
    json_decref(h);
}

static void api_fail(par_agent_ctx_t *ctx, const char *msg)
{
    job_t *j = job_of(ctx);
    free(j->fail_msg);
    j->fail_msg = strdup(msg ? msg : "");
}

static int api_cancelled(par_agent_ctx_t *ctx)
{
    return atomic_load(&job_of(ctx)->cancelled);
}

static const char *api_tenant(par_agent_ctx_t *ctx)
{
    return job_of(ctx)->tenant;
}

static const char *api_span_id(par_agent_ctx_t *ctx)
{
    return job_of(ctx)->span_id;
}

static const par_agent_api_t g_api = {
    .abi = PAR_AGENT_ABI,
    .size = sizeof(par_agent_api_t),
    .out_write = api_out_write,
    .call = api_call,
    .usage = api_usage,
    .log = api_log,
    .set_error = api_fail,
    .cancelled = api_cancelled,
    .tenant = api_tenant,
    .span_id = api_span_id,
};

/* ---- jobs --------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An integer field's value, or `dflt` when absent or not an integer. */
static int64_t hdr_int(const par_json_field_t *f, int64_t dflt)
{
    char num[24];
    if (f->ptr == NULL || f->len == 0 || f->len >= sizeof(num))
        return dflt;
    memcpy(num, f->ptr, f->len);
    num[f->len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(num, &end, 10);
    return errno || *end ? dflt : (int64_t)v;
}

/* Fills the job's header fields from an INVOKE header (see
 * docs/worker-protocol.md), copying what it keeps into j->mem, which holds at
 * least n + 16 bytes: each string decodes to no more than its encoding, and the
 * nine fields add at most nine NULs. A scan instead of a jansson tree: no
 * allocation per field. -1 when the header is not a JSON object or a string
 * field is not a string without NULs. */
static int parse_invoke_header(job_t *j, const char *h, size_t n)
{
    enum { F_X, F_AGENT, F_REQ, F_TRACE, F_SPAN, F_SUBJECT, F_TENANT, F_DEADLINE, F_CONTEXT, F_N };
    par_json_field_t f[F_N] = {
        {"x", NULL, 0},        {"agent", NULL, 0},       {"request_id", NULL, 0},
        {"trace_id", NULL, 0}, {"span_id", NULL, 0},     {"subject", NULL, 0},
        {"tenant", NULL, 0},   {"deadline_ms", NULL, 0}, {"context", NULL, 0}};
    const char **str[F_N] = {NULL,        &j->agent,  &j->request_id, &j->trace_id, &j->span_id,
                             &j->subject, &j->tenant, NULL,           NULL};
    char *o = j->mem;
    for (int i = 0; i < F_N; i++)
        if (str[i])
            *str[i] = "";
    j->context = NULL;
    j->x = 0;
    if (n == 0)
        return 0; /* no header: export 0, no deadline, nothing known */
    if (par_json_scan(h, n, f, F_N, NULL) != 0 || par_json_root_type(h, n) != '{')
        return -1;
    for (int i = 0; i < F_N; i++) {
        if (str[i] == NULL || f[i].ptr == NULL)
            continue;
        long k = par_json_unescape(f[i].ptr, f[i].len, o);
        if (k < 0)
            return -1;
        *str[i] = o;
        o += k + 1;
    }
    if (f[F_CONTEXT].ptr) {
        memcpy(o, f[F_CONTEXT].ptr, f[F_CONTEXT].len);
        o[f[F_CONTEXT].len] = '\0';
        j->context = o;
        o += f[F_CONTEXT].len + 1;
    }
    j->x = f[F_X].ptr ? hdr_int(&f[F_X], -1) : 0;
    j->deadline_ms = hdr_int(&f[F_DEADLINE], 0);
    return 0;
}

static void job_free(job_t *j)
{
    while (j->arena) {
        arena_item_t *n = j->arena->next;
        free(j->arena);
        j->arena = n;
    }
    json_decref(j->units);
    free(j->fail_msg);
    par_buf_free(&j->outbuf);
    free(j);
}

static void send_error(uint64_t id, const char *name, const char *msg)
{
    json_t *h = json_pack("{s:s, s:s}", "error", name, "message", msg);
    send_json_frame(PAR_FRAME_ERROR, id, h, NULL, 0);
    json_decref(h);
}

static void run_job(job_t *j)
{
    int64_t x = j->x;
    if (x < 0 || (uint64_t)x >= g_nexports) {
        send_error(j->id, "agent_not_found", "no such export in this worker");
        return;
    }
    wexport_t *e = &g_exports[x];
    int64_t remaining = j->deadline_ms;

    j->ctx.api = &g_api;
    j->ctx.agent_id = j->agent;
    j->ctx.sub_agent = e->name;
    j->ctx.request_id = j->request_id;
    j->ctx.trace_id = j->trace_id;
    j->ctx.subject = j->subject;
    j->ctx.context.ptr = j->context ? j->context : "{}";
    j->ctx.context.len = strlen(j->ctx.context.ptr);
    j->ctx.deadline_ms = remaining > 0 ? now_ms() + remaining : 0;
    j->ctx._impl = j;
    j->out.api = &g_api;
    j->out._impl = j;

    par_slice_t in = {j->input ? j->input : "null", j->input ? j->input_len : 4};
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    int rc = e->fn(&j->ctx, in, &j->out);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    double cpu_ms = (double)(cpu1.tv_sec - cpu0.tv_sec) * 1e3 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1e6;

    if (j->out_too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "agent output exceeds the cap of %zu bytes", g_max_output);
        send_error(j->id, "output_too_large", msg);
    } else if (rc != 0) {
        char msg[160];
        if (j->fail_msg == NULL)
            snprintf(msg, sizeof(msg), "agent '%s' returned %d", j->ctx.agent_id, rc);
        send_error(j->id, "agent_error", j->fail_msg ? j->fail_msg : msg);
    } else if (j->units == NULL) {
        char h[64];
        int n = snprintf(h, sizeof(h), "{\"cpu_ms\":%.4f}", cpu_ms);
        send_frame(PAR_FRAME_RESULT, j->id, h, (size_t)n, j->outbuf.data, j->outbuf.len);
    } else {
        json_t *h = json_pack("{s:f, s:O}", "cpu_ms", cpu_ms, "units", j->units);
        send_json_frame(PAR_FRAME_RESULT, j->id, h, j->outbuf.data, j->outbuf.len);
        json_decref(h);
    }
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *handler_thread(void *arg);

/* A new handler thread, counted idle. g_lock held. */
static int spawn_handler_locked(void)
{
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1u << 20);
    int rc = pthread_create(&t, &attr, handler_thread, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -1;
    g_threads++;
    g_idle++;
    return 0;
}

/* Asks an idle thread (or a new one) to take the free reader role. Past
 * MAX_THREADS too: without a reader nothing can finish. g_lock held. */
static void want_reader_locked(void)
{
    if (!g_role_free || g_role_wanted)
        return;
    g_role_wanted = 1;
    if (g_idle > 0)
        pthread_cond_broadcast(&g_job_cond);
    else if (spawn_handler_locked() != 0)
        g_role_wanted = 0; /* the inline job's thread reads again when it ends */
}

static void reader_run(void);

static void *handler_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lock);
    for (;;) {
        if (g_role_wanted && g_role_free) {
            g_role_wanted = 0;
            g_role_free = 0;
            g_idle--;
            pthread_mutex_unlock(&g_lock);
            reader_run();
            pthread_mutex_lock(&g_lock);
            g_idle++;
            continue;
        }
        if (g_jobs_head) {
            job_t *j = g_jobs_head;
            g_jobs_head = j->next;
            if (g_jobs_head == NULL)
                g_jobs_tail = NULL;
            g_idle--;
            pthread_mutex_unlock(&g_lock);
            run_job(j);
            job_free(j);
            pthread_mutex_lock(&g_lock);
            g_idle++;
            continue;
        }
        if (g_shutdown)
            break;
        pthread_cond_wait(&g_job_cond, &g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* Wakes (or starts) enough handler threads for the queued jobs. g_lock held. */
static void kick_handlers_locked(void)
{
    size_t queued = 0;
    for (job_t *q = g_jobs_head; q && queued <= g_idle; q = q->next)
        queued++;
    if (queued == 0)
        return;
    while (queued > g_idle && g_threads < MAX_THREADS && spawn_handler_locked() == 0)
        ;
    pthread_cond_broadcast(&g_job_cond);
}

/* Hands reading and the queued jobs to other threads when an inline job runs
 * long. It polls every millisecond while jobs run inline and sleeps when none
 * has for a while, so a busy worker pays no wake-up per request for it. */
static void *watchdog_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lock);
    while (!g_shutdown) {
        int64_t now = now_ns();
        if (g_inline_ns && now - g_inline_ns >= INLINE_MAX_NS && g_kicked_ns != g_inline_ns) {
            g_kicked_ns = g_inline_ns;
            want_reader_locked();
            kick_handlers_locked();
            pthread_mutex_unlock(&g_lock);
            flush_frames(); /* answers collected before the long job */
            pthread_mutex_lock(&g_lock);
        }
        if (g_inline_ns == 0 && now - g_inline_last_ns >= WATCHDOG_IDLE_NS) {
            g_wd_sleeping = 1;
            pthread_cond_wait(&g_wd_cond, &g_lock);
            g_wd_sleeping = 0;
            continue;
        }
        pthread_mutex_unlock(&g_lock);
        struct timespec ts = {0, INLINE_MAX_NS};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static void on_frame(const par_frame_t *f);

/* The runtime closed the socket: finish quickly. */
static void __attribute__((noreturn)) reader_eof(void)
{
    pthread_mutex_lock(&g_lock);
    g_shutdown = 1;
    pthread_cond_broadcast(&g_job_cond);
    for (wcall_t *c = g_calls; c; c = c->next)
        pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&g_lock);
    _exit(0);
}

/* Reads and dispatches frames while this thread holds the reader role; runs
 * the first INVOKE of each read itself. Returns when the role went to another
 * thread during such a job. */
static void reader_run(void)
{
    for (;;) {
        if (par_buf_reserve(&g_in, 64 * 1024) != PAR_OK)
            die("out of memory");
        ssize_t r = read(g_fd, g_in.data + g_in.len, g_in.cap - g_in.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            reader_eof();
        g_in.len += (size_t)r;
        for (;;) {
            par_frame_t f;
            size_t used;
            const char *err;
            int d = par_proto_decode((uint8_t *)g_in.data + g_in_start, g_in.len - g_in_start,
                                     g_max_input, &f, &used, &err);
            if (d < 0) {
                fprintf(stderr, "par-worker: protocol error from runtime: %s\n", err);
                _exit(4);
            }
            if (d == 0)
                break;
            on_frame(&f);
            g_in_start += used;
        }
        if (g_in_start == g_in.len) {
            g_in.len = g_in_start = 0;
        } else if (g_in_start > 0 && g_in_start > g_in.len / 2) {
            memmove(g_in.data, g_in.data + g_in_start, g_in.len - g_in_start);
            g_in.len -= g_in_start;
            g_in_start = 0;
        }
        if (g_batch_head == NULL)
            continue;
        /* Queue what was read and run it here, one job after the other, with
         * the role free: the watchdog gives reading and the rest of the queue
         * to other threads if a job takes long. */
        pthread_mutex_lock(&g_lock);
        if (g_jobs_tail)
            g_jobs_tail->next = g_batch_head;
        else
            g_jobs_head = g_batch_head;
        g_jobs_tail = g_batch_tail;
        g_batch_head = g_batch_tail = NULL;
        g_role_free = 1;
        for (;;) {
            job_t *j = g_jobs_head;
            if (j == NULL)
                break;
            g_jobs_head = j->next;
            if (g_jobs_head == NULL)
                g_jobs_tail = NULL;
            g_inline_ns = g_inline_last_ns = now_ns();
            if (g_wd_sleeping)
                pthread_cond_signal(&g_wd_cond);
            tl_batching = g_jobs_head != NULL; /* answers go out with the last one */
            pthread_mutex_unlock(&g_lock);
            run_job(j);
            job_free(j);
            tl_batching = 0;
            pthread_mutex_lock(&g_lock);
            g_inline_ns = 0;
            if (!g_role_free)
                break; /* another thread reads now; this one joins the handlers */
        }
        pthread_mutex_unlock(&g_lock);
        flush_frames(); /* the queue was emptied by others, or the role went away */
        pthread_mutex_lock(&g_lock);
        int mine_again = g_role_free;
        if (mine_again)
            g_role_free = g_role_wanted = 0; /* a thread asked to take it finds it taken */
        pthread_mutex_unlock(&g_lock);
        if (!mine_again)
            return;
    }
}

static void on_frame(const par_frame_t *f)
{
    switch (f->type) {
    case PAR_FRAME_INVOKE: {
        /* one allocation: the job, its header strings, its input */
        size_t hroom = (size_t)f->header_len + 16;
        job_t *j = calloc(1, sizeof(*j) + hroom + f->body_len);
        if (j == NULL)
            die("out of memory");
        j->id = f->id;
        if (parse_invoke_header(j, f->header, f->header_len) != 0) {
            send_error(f->id, "worker_protocol_error", "INVOKE header is not a JSON object");
            job_free(j);
            return;
        }
        if (f->body_len) {
            j->input = j->mem + hroom;
            memcpy(j->input, f->body, f->body_len);
            j->input_len = f->body_len;
        }
        par_buf_init(&j->outbuf, g_max_output);
        if (g_batch_tail)
            g_batch_tail->next = j;
        else
            g_batch_head = j;
        g_batch_tail = j;
        break;
    }
    case PAR_FRAME_CALL_RESULT: {
        int status = PAR_OK;
        json_t *units = NULL;
        if (f->header_len) {
            json_t *h = json_loadb(f->header, f->header_len, 0, NULL);
            json_int_t s = json_integer_value(json_object_get(h, "status"));
            if (s > 0 && s < PAR_STATUS_COUNT)
                status = (int)s;
            units = json_object_get(h, "units");
            if (json_is_object(units))
                json_incref(units);
            else
                units = NULL;
            json_decref(h);
        }
        pthread_mutex_lock(&g_lock);
        for (wcall_t *c = g_calls; c; c = c->next) {
            if (c->id == f->id && !c->done) {
                c->data = malloc(f->body_len + 1);
                if (c->data == NULL)
                    die("out of memory");
                memcpy(c->data, f->body, f->body_len);
                c->len = f->body_len;
                c->status = status;
                c->units = units;
                units = NULL;
                c->done = 1;
                pthread_cond_signal(&c->cond);
                break;
            }
        }
        pthread_mutex_unlock(&g_lock);
        json_decref(units);
        break;
    }
    case PAR_FRAME_CANCEL:
        /* Native code cannot be interrupted; the agent can poll par_ctx_cancelled().
         * Running jobs are not indexed, so a cancel only reaches queued ones. */
        pthread_mutex_lock(&g_lock);
        for (job_t *q = g_jobs_head; q; q = q->next)
            if (q->id == f->id)
                atomic_store(&q->cancelled, 1);
        pthread_mutex_unlock(&g_lock);
        break;
    default:
        /* unknown or unexpected frames are ignored for forward compatibility */
        break;
    }
}

/* ---- start-up ------------------------------------------------------------- */

static void load_exports(const char *root)
{
    for (size_t i = 0; i < g_nexports; i++) {
        wexport_t *e = &g_exports[i];
        char path[PATH_MAX];
        if (e->lib[0] == '/' || strstr(e->lib, ".."))
            die("export '%s': library path '%s' must be relative to the package", e->name, e->lib);
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, e->lib) >= sizeof(path))
            die("export '%s': library path too long", e->name);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL)
            die("%s: cannot load: %s", e->lib, dlerror());
        const unsigned *abi = dlsym(h, "par_agent_abi");
        if (abi && *abi != PAR_AGENT_ABI)
            die("%s: built for agent ABI %u, this runtime speaks %d", e->lib, *abi, PAR_AGENT_ABI);
        void *sym = dlsym(h, e->symbol);
        if (sym == NULL)
            die("%s: symbol '%s' not found (export '%s')", e->lib, e->symbol,
                e->name[0] ? e->name : "main");
        *(void **)&e->fn = sym;
        /* init once per library: the first export that names it */
        int first = 1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(g_exports[k].lib, e->lib) == 0)
                first = 0;
        if (first) {
            int (*init)(void);
            *(void **)&init = dlsym(h, "par_agent_init");
            if (init && init() != 0)
                die("%s: par_agent_init failed", e->lib);
        }
    }
}

static void parse_export(const char *arg)
{
    if (g_nexports == MAX_EXPORTS)
        die("too many exports");
    const char *eq = strchr(arg, '=');
    const char *colon = eq ? strrchr(eq, ':') : NULL;
    if (eq == NULL || colon == NULL || colon == eq + 1 || colon[1] == '\0')
        die("bad --export '%s' (want NAME=lib.so:symbol)", arg);
    wexport_t *e = &g_exports[g_nexports++];
    e->name = strndup(arg, (size_t)(eq - arg));
    e->lib = strndup(eq + 1, (size_t)(colon - eq - 1));
    e->symbol = strdup(colon + 1);
}

static unsigned long parse_ulong(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || *v == '\0' || *v == '-')
        die("%s: '%s' is not a number", opt, v);
    return n;
}

#define MAX_RO 64

int main(int argc, char **argv)
{
    const char *root = NULL;
    char **exec_argv = NULL;
    const char *ro[MAX_RO];
    par_sandbox_opts_t sb = {.uid = -1, .gid = -1, .ro = ro};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--fd") == 0 && v) {
            g_fd = atoi(v), i++;
        } else if (strcmp(a, "--root") == 0 && v) {
            root = v, i++;
        } else if (strcmp(a, "--max-input") == 0 && v) {
            g_max_input = strtoull(v, NULL, 10), i++;
        } else if (strcmp(a, "--cpu-seconds") == 0 && v) {
            sb.cpu_seconds = parse_ulong(a, v), i++;
        } else if (strcmp(a, "--file-size-mb") == 0 && v) {
            sb.file_mb = parse_ulong(a, v), i++;
        } else if (strcmp(a, "--memory-mb") == 0 && v) {
            sb.memory_mb = parse_ulong(a, v), i++;
        } else if (strcmp(a, "--max-files") == 0 && v) {
            sb.max_files = parse_ulong(a, v), i++;
        } else if (strcmp(a, "--max-processes") == 0 && v) {
            sb.max_procs = parse_ulong(a, v), i++;
        } else if (strcmp(a, "--uid") == 0 && v) {
            sb.uid = (long)parse_ulong(a, v), i++;
        } else if (strcmp(a, "--gid") == 0 && v) {
            sb.gid = (long)parse_ulong(a, v), i++;
        } else if (strcmp(a, "--scratch") == 0 && v) {
            sb.scratch = v, i++;
        } else if (strcmp(a, "--ro") == 0 && v) {
            if (sb.ro_count == MAX_RO)
                die("too many --ro paths (at most %d)", MAX_RO);
            ro[sb.ro_count++] = v, i++;
        } else if (strcmp(a, "--network") == 0) {
            sb.network = 1;
        } else if (strcmp(a, "--subprocess") == 0) {
            sb.subprocess = 1;
        } else if (strcmp(a, "--max-output") == 0 && v) {
            g_max_output = strtoull(v, NULL, 10), i++;
        } else if (strcmp(a, "--export") == 0 && v) {
            parse_export(v), i++;
        } else if (strcmp(a, "--exec") == 0 && v) {
            exec_argv = argv + i + 1; /* the rest is the program and its arguments */
            break;
        } else {
            fprintf(stderr,
                    "par-worker: unknown argument '%s'\n"
                    "par-worker is started by the par runtime, not by hand.\n",
                    a);
            return 2;
        }
    }
    if (g_fd < 0 || root == NULL)
        die("--fd and --root are required");
    if (exec_argv && g_nexports)
        die("--exec and --export exclude each other");
    /* nothing of the runtime's may leak into package code: keep 0-2 and the
     * protocol socket, close every other inherited descriptor */
    if (g_fd != 3) {
        if (dup2(g_fd, 3) < 0)
            die("cannot move the protocol socket to fd 3: %s", strerror(errno));
        g_fd = 3;
    }
    if (close_range(4, ~0U, 0) != 0)
        for (int fd = 4; fd < 1024; fd++)
            close(fd);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 0;
    signal(SIGPIPE, SIG_IGN);

    char root_abs[PATH_MAX], scratch_abs[PATH_MAX], exec_abs[PATH_MAX];
    if (realpath(root, root_abs) == NULL)
        die("package directory %s: %s", root, strerror(errno));
    sb.root = root_abs;
    if (sb.scratch) {
        if (realpath(sb.scratch, scratch_abs) == NULL)
            die("scratch directory %s: %s", sb.scratch, strerror(errno));
        sb.scratch = scratch_abs;
        /* temporary files and a home for libraries that want one */
        setenv("TMPDIR", scratch_abs, 1);
        setenv("HOME", scratch_abs, 1);
    }
    if (exec_argv) {
        if (exec_argv[0] == NULL || exec_argv[0][0] != '/')
            die("--exec needs an absolute program path");
        if (realpath(exec_argv[0], exec_abs) == NULL)
            die("--exec %s: %s", exec_argv[0], strerror(errno));
        sb.exec_path = exec_abs;
    }

    /* the sandbox, before any package code is loaded */
    json_t *report = NULL;
    par_buf_t sberr;
    par_buf_init(&sberr, 4096);
    if (par_sandbox_apply(&sb, &report, &sberr) != PAR_OK) {
        par_buf_terminate(&sberr);
        die("sandbox: %s", sberr.data ? sberr.data : "failed");
    }
    par_buf_free(&sberr);
    /* a change of credentials clears the parent-death signal: set it again */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 0;
    if (chdir(root_abs) != 0)
        die("package directory %s: %s", root_abs, strerror(errno));

    /* what was applied goes to the runtime first, from this process: a program
     * exec'd below could claim anything in its own HELLO */
    json_t *sbhdr = json_pack("{s:O}", "sandbox", report);
    send_json_frame(PAR_FRAME_SANDBOX, 0, sbhdr, NULL, 0);
    json_decref(sbhdr);

    if (exec_argv) {
        char *js = json_dumps(report, JSON_COMPACT);
        if (js == NULL || setenv("PAR_SANDBOX", js, 1) != 0)
            die("out of memory");
        free(js);
        json_decref(report);
        /* by the name given, not the resolved one: a virtual environment's
         * python finds its pyvenv.cfg next to the link it was started as */
        execv(exec_argv[0], exec_argv);
        die("cannot exec %s: %s", exec_argv[0], strerror(errno));
    }

    load_exports(root_abs);

    json_t *names = json_array();
    for (size_t i = 0; i < g_nexports; i++)
        json_array_append_new(names, json_string(g_exports[i].name));
    json_t *hello = json_pack("{s:i, s:s, s:i, s:o, s:o}", "protocol", PAR_PROTO_VERSION, "runtime",
                              "native", "pid", (int)getpid(), "exports", names, "sandbox", report);
    send_json_frame(PAR_FRAME_HELLO, 0, hello, NULL, 0);
    json_decref(hello);

    par_buf_init(&g_in, 0);
    par_buf_init(&g_wbuf, 0);
    pthread_t wd;
    pthread_attr_t wattr;
    pthread_attr_init(&wattr);
    pthread_attr_setdetachstate(&wattr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&wattr, 64u << 10);
    if (pthread_create(&wd, &wattr, watchdog_thread, NULL) != 0)
        die("cannot start the watchdog thread");
    pthread_attr_destroy(&wattr);
    reader_run();
    /* the role went to another thread: this one serves jobs from now on */
    pthread_mutex_lock(&g_lock);
    g_threads++;
    g_idle++;
    pthread_mutex_unlock(&g_lock);
    handler_thread(NULL);
    return 0;
}
