/*
 * worker/worker.h — what the files of par-worker share.
 *
 *   main.c    arguments, the sandbox, loading the exports, HELLO
 *   frames.c  writing frames: one write lock, answers of a batch written together
 *   invoke.c  one INVOKE: its header, the agent API (par/agent.h), running it,
 *             its events (emit and the flow-control window)
 *   reader.c  the reader role, the job queue (util/jobq.h), dispatching frames
 *
 * The process is par-worker alone: these globals are set by main() before
 * any thread starts and read-only after, except where a comment names the
 * lock that guards them.
 */
#ifndef PAR_WORKER_WORKER_H
#define PAR_WORKER_WORKER_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <par/agent.h>
#include <par/par.h>

#include "util/buf.h"
#include "util/jobq.h"

#define MAX_EXPORTS 256

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
    par_job_t link; /* the reader's batch, then the job queue */
    uint64_t id;
    struct job *by_id_next;  /* the jobs index (reader.c), g_lock */
    unsigned events_unacked; /* EVENTs sent and not yet granted back (EVENT_ACK), g_lock */
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

_Static_assert(offsetof(job_t, link) == 0, "a job is its queue link");

/* A CALL this worker sent and waits for; on the waiting thread's stack. */
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

extern int g_fd; /* the protocol socket */
extern size_t g_max_input, g_max_output;
extern size_t g_max_event; /* --max-event: the largest event's JSON */
extern wexport_t g_exports[MAX_EXPORTS];
extern size_t g_nexports;

/* g_lock guards the calls waiting for an answer, the reader role, g_shutdown,
 * the jobs index and each job's event window; g_event_cond is signalled when
 * a job gets credit back or is cancelled */
extern pthread_mutex_t g_lock;
extern pthread_cond_t g_event_cond;
extern wcall_t *g_calls;
extern uint64_t g_next_call_id;
extern int g_shutdown;
extern par_jobq_t *g_jobs;

/* frames.c */
void worker_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void worker_send_frame(uint8_t type, uint64_t id, const char *hdr, size_t hlen, const char *body,
                       size_t blen);
void worker_send_json(uint8_t type, uint64_t id, json_t *hdr, const char *body, size_t blen);
void worker_send_error(uint64_t id, const char *name, const char *msg);
/* Writes what worker_send_frame collected while this thread was batching. */
void worker_flush_frames(void);
/* Set while this thread runs a job that more queued jobs follow: its frames
 * are collected and go out with the last one's. */
void worker_batching(int on);
int worker_frames_init(void);

/* invoke.c */
/* Fills the job's header fields from an INVOKE header; -1 when malformed. */
int worker_parse_invoke(job_t *j, const char *h, size_t n);
void worker_run_job(job_t *j);
void worker_job_free(job_t *j);

/* reader.c */
/* The jobs index by request id: a job is in it from its INVOKE until it is
 * freed, so CANCEL and EVENT_ACK reach it queued or running. g_lock held. */
void worker_index_add(job_t *j);
void worker_index_remove(job_t *j);
/* Asks a thread to take the reader role when it is free. g_lock held. */
void worker_want_reader_locked(void);
/* Serves the protocol socket on the calling thread until the runtime goes away. */
void worker_serve(void) __attribute__((noreturn));

#endif
