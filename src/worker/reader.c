/*
 * worker/reader.c — par-worker's threads: the reader role and the job queue.
 *
 * One thread at a time holds the reader role and reads frames. It runs what
 * it read itself, one job after the other (no hand-off to another thread for
 * the common case: one request, answered at once). While it runs a job the
 * role is free; the job queue's watchdog (util/jobq.h) hands the role to a
 * pool thread when the job takes longer than INLINE_MAX_NS, and gives the
 * rest of the queue threads of its own; a job that calls a sibling
 * (par_ctx_call) asks for a reader at once. So slow agents and sibling calls
 * can neither stall reading nor deadlock the worker. The pool grows on
 * demand up to MAX_THREADS (past it for a reader: without one nothing can
 * finish).
 * It must never read from two threads at once, and it exits when the
 * runtime closes the socket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/proto.h"
#include "util/json.h"
#include "worker/worker.h"

#define MAX_THREADS 256
#define INLINE_MAX_NS 1000000LL      /* an inline job longer than this gives reading away */
#define WATCHDOG_IDLE_NS 100000000LL /* no inline job for this long: the watchdog sleeps */

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_event_cond = PTHREAD_COND_INITIALIZER;
wcall_t *g_calls;
uint64_t g_next_call_id = 1;
int g_shutdown;
par_jobq_t *g_jobs;

/* the reader role: changed under g_lock, read without it by its holder */
static atomic_int g_role_free; /* its holder is running an inline job: nobody reads */
static int g_role_wanted;      /* a thread has been asked to take the role (g_lock) */
/* the input buffer and the last read's INVOKEs belong to the role's holder */
static par_buf_t g_in;
static size_t g_in_start;
static job_t *g_batch_head, *g_batch_tail;

static void reader_run(void);

/* A pool thread's urgent task: take the role if it is still free and wanted. */
static void take_role(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lock);
    int take = g_role_wanted && atomic_load(&g_role_free);
    if (take) {
        g_role_wanted = 0;
        atomic_store(&g_role_free, 0);
    }
    pthread_mutex_unlock(&g_lock);
    if (take)
        reader_run();
}

void worker_want_reader_locked(void)
{
    if (!atomic_load(&g_role_free) || g_role_wanted)
        return;
    g_role_wanted = 1;
    if (par_jobq_urgent(g_jobs, take_role, NULL) != 0)
        g_role_wanted = 0; /* the inline job's thread reads again when it ends */
}

/* A queued job, on a pool thread. */
static void run_queued(par_job_t *l, void *ctx)
{
    (void)ctx;
    job_t *j = (job_t *)l;
    worker_run_job(j);
    worker_job_free(j);
}

/* The watchdog: the inline job runs long. Reading goes to another thread,
 * and the answers collected before the long job go out. */
static void inline_overrun(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&g_lock);
    worker_want_reader_locked();
    pthread_mutex_unlock(&g_lock);
    worker_flush_frames();
}

/* ---- the jobs index ---------------------------------------------------------- */

#define INDEX_BUCKETS 64
static job_t *g_by_id[INDEX_BUCKETS]; /* g_lock */

void worker_index_add(job_t *j)
{
    job_t **b = &g_by_id[j->id % INDEX_BUCKETS];
    j->by_id_next = *b;
    *b = j;
}

void worker_index_remove(job_t *j)
{
    for (job_t **pp = &g_by_id[j->id % INDEX_BUCKETS]; *pp; pp = &(*pp)->by_id_next) {
        if (*pp == j) {
            *pp = j->by_id_next;
            return;
        }
    }
}

static job_t *index_find(uint64_t id)
{
    for (job_t *j = g_by_id[id % INDEX_BUCKETS]; j; j = j->by_id_next)
        if (j->id == id)
            return j;
    return NULL;
}

/* CANCEL: the job, queued or running, sees par_ctx_cancelled(); an emit
 * blocked on its window returns PAR_E_CANCELLED. Native code cannot be
 * interrupted: the agent polls. */
static void on_cancel(uint64_t id)
{
    pthread_mutex_lock(&g_lock);
    job_t *j = index_find(id);
    if (j) {
        atomic_store(&j->cancelled, 1);
        pthread_cond_broadcast(&g_event_cond);
    }
    pthread_mutex_unlock(&g_lock);
}

/* EVENT_ACK {"n":k}: k more events of the job may be sent. */
static void on_event_ack(const par_frame_t *f)
{
    par_json_field_t fl[1] = {{"n", NULL, 0}};
    char num[24];
    if (f->header_len == 0 || par_json_scan(f->header, f->header_len, fl, 1, NULL) != 0 ||
        fl[0].ptr == NULL || fl[0].len >= sizeof(num))
        return;
    memcpy(num, fl[0].ptr, fl[0].len);
    num[fl[0].len] = '\0';
    char *end;
    unsigned long long n = strtoull(num, &end, 10);
    if (*end || n == 0)
        return;
    pthread_mutex_lock(&g_lock);
    job_t *j = index_find(f->id);
    if (j) {
        j->events_unacked = n >= j->events_unacked ? 0 : j->events_unacked - (unsigned)n;
        pthread_cond_broadcast(&g_event_cond);
    }
    pthread_mutex_unlock(&g_lock);
}

static void on_frame(const par_frame_t *f)
{
    switch (f->type) {
    case PAR_FRAME_INVOKE: {
        /* one allocation: the job, its header strings, its input */
        size_t hroom = (size_t)f->header_len + 16;
        job_t *j = calloc(1, sizeof(*j) + hroom + f->body_len);
        if (j == NULL)
            worker_die("out of memory");
        j->id = f->id;
        if (worker_parse_invoke(j, f->header, f->header_len) != 0) {
            worker_send_error(f->id, "worker_protocol_error", "INVOKE header is not a JSON object");
            worker_job_free(j);
            return;
        }
        if (f->body_len) {
            j->input = j->mem + hroom;
            memcpy(j->input, f->body, f->body_len);
            j->input_len = f->body_len;
        }
        par_buf_init(&j->outbuf, g_max_output);
        pthread_mutex_lock(&g_lock);
        worker_index_add(j);
        pthread_mutex_unlock(&g_lock);
        j->link.next = NULL;
        if (g_batch_tail)
            g_batch_tail->link.next = &j->link;
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
                    worker_die("out of memory");
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
        on_cancel(f->id);
        break;
    case PAR_FRAME_EVENT_ACK:
        on_event_ack(f);
        break;
    default:
        /* unknown or unexpected frames are ignored for forward compatibility */
        break;
    }
}

/* The runtime closed the socket: finish quickly. */
static void __attribute__((noreturn)) reader_eof(void)
{
    pthread_mutex_lock(&g_lock);
    g_shutdown = 1;
    for (wcall_t *c = g_calls; c; c = c->next)
        pthread_cond_signal(&c->cond);
    pthread_cond_broadcast(&g_event_cond);
    pthread_mutex_unlock(&g_lock);
    _exit(0);
}

/* Reads what is there into g_in and dispatches every whole frame. */
static void read_frames(void)
{
    for (;;) {
        if (par_buf_reserve(&g_in, 64 * 1024) != PAR_OK)
            worker_die("out of memory");
        ssize_t r = read(g_fd, g_in.data + g_in.len, g_in.cap - g_in.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            reader_eof();
        g_in.len += (size_t)r;
        break;
    }
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
}

/* Queues what was read and runs it here, one job after the other, with the
 * role free: the watchdog gives reading and the rest of the queue to other
 * threads if a job takes long. 1 when the role is still this thread's. */
static int run_batch(void)
{
    par_jobq_push(g_jobs, &g_batch_head->link, &g_batch_tail->link, PAR_JOBQ_NO_WAKE);
    g_batch_head = g_batch_tail = NULL;
    atomic_store(&g_role_free, 1); /* only the holder sets it: no lock needed */
    for (;;) {
        int more;
        par_job_t *l = par_jobq_inline_begin(g_jobs, &more);
        if (l == NULL)
            break;
        worker_batching(more); /* answers go out with the last one */
        worker_run_job((job_t *)l);
        worker_job_free((job_t *)l);
        worker_batching(0);
        par_jobq_inline_end(g_jobs);
        if (!atomic_load(&g_role_free))
            break; /* another thread reads now; this one joins the handlers */
    }
    worker_flush_frames(); /* the queue was emptied by others, or the role went away */
    pthread_mutex_lock(&g_lock);
    int mine_again = atomic_load(&g_role_free);
    if (mine_again) { /* a thread asked to take it finds it taken */
        atomic_store(&g_role_free, 0);
        g_role_wanted = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return mine_again;
}

/* Reads and dispatches frames while this thread holds the reader role; runs
 * the INVOKEs of each read itself. Returns when the role went to another
 * thread during such a job. */
static void reader_run(void)
{
    for (;;) {
        read_frames();
        if (g_batch_head != NULL && !run_batch())
            return;
    }
}

void worker_serve(void)
{
    par_buf_init(&g_in, 0);
    worker_frames_init();
    par_jobq_opts_t o = {.threads = 0,
                         .max_threads = MAX_THREADS,
                         .stack_size = 1u << 20,
                         .overrun_ns = INLINE_MAX_NS,
                         .idle_ns = WATCHDOG_IDLE_NS,
                         /* threads a burst started leave after it: every worker of
                          * every package shares the sandbox user's RLIMIT_NPROC */
                         .idle_exit_ns = 5LL * 1000000000,
                         .run = run_queued,
                         .overrun = inline_overrun};
    if (par_jobq_new(&o, &g_jobs) != PAR_OK)
        worker_die("cannot start the job queue's watchdog thread");
    reader_run();
    /* the role went to another thread: this one serves jobs from now on */
    par_jobq_serve(g_jobs);
    _exit(0);
}
