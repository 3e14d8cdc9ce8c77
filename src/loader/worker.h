/*
 * loader/worker.h — the supervisor's internal types: a worker process, a
 * package version's pool of them, the supervisor, and the record each call
 * carries while a pool holds it. Internal to the supervisor's files:
 * supervisor.c (I/O thread, worker start and death, maintenance), frames.c
 * (what workers send), calls.c (the par_pool_* API, dispatch).
 *
 * Locking: each pool has one mutex that guards its workers list, their
 * pending tables, write sides (wire), the admission state (core) and the
 * sandbox. Calls are completed (finish hook, then `done`) only with no pool
 * lock held, because a completion may start another call (a sibling's
 * CALL_RESULT, a nested call). The read side of a worker (its input buffer,
 * output lines, tail) belongs to the thread running the supervisor's I/O.
 */
#ifndef PAR_LOADER_WORKER_H
#define PAR_LOADER_WORKER_H

#include <stdatomic.h>
#include <stddef.h>

#include "core/proto.h"
#include "loader/pending.h"
#include "loader/pool.h"
#include "loader/scratch.h"
#include "loader/supervisor.h"
#include "loader/wire.h"

#define PAR_TAIL_MAX_BYTES 3072 /* fits the "package refused" log line with escapes */
#define PAR_TAIL_MAX_LINES 20
#define PAR_START_TIMEOUT_MS 10000

enum { W_STARTING, W_READY, W_RETIRING, W_DEAD };
enum { TAG_WAKE, TAG_SOCK, TAG_OUT };

typedef struct par_tag {
    int kind;
    void *ptr;
} par_tag_t;

typedef struct par_worker par_worker_t;

/* A call's record while a pool holds it, embedded in the call (_exec). */
typedef struct par_slot {
    par_pending_ent_t pend; /* in its worker's pending table; id = the frame id */
    par_pool_ent_t q;       /* the pool's admission entry; the completion list */
    par_worker_t *worker;   /* the worker running it, or NULL */
    /* a CALL sent by a worker: who gets the CALL_RESULT (and its CALL_EVENTs) */
    par_pool_t *parent_pool;
    uint64_t parent_worker_id, parent_call_id;
    /* the call's sink (core/call.h) is being called with no pool lock held:
     * a thread that completes the call meanwhile only sets `deferred`, and
     * the thread in the sink finishes it when the sink returns (events.c) */
    struct par_slot *start_next; /* the pool's to_start list */
    uint8_t busy, deferred;
} par_slot_t;

_Static_assert(sizeof(par_slot_t) <= sizeof(((par_call_t *)0)->_exec),
               "par_slot_t must fit the call's executor slot (PAR_CALL_EXEC_WORDS)");

static inline par_slot_t *par__slot(par_call_t *c)
{
    return (par_slot_t *)(void *)c->_exec;
}

static inline par_call_t *par__slot_call(par_slot_t *s)
{
    return (par_call_t *)(void *)((char *)s - offsetof(par_call_t, _exec));
}

static inline par_call_t *par__pend_call(par_pending_ent_t *e)
{
    return par__slot_call((par_slot_t *)(void *)((char *)e - offsetof(par_slot_t, pend)));
}

static inline par_call_t *par__q_call(par_pool_ent_t *e)
{
    return par__slot_call((par_slot_t *)(void *)((char *)e - offsetof(par_slot_t, q)));
}

struct par_worker {
    par_worker_t *next;
    par_pool_t *pool;
    uint64_t wid;
    pid_t pid;
    int fd;
    int out_fd;
    int state;
    par_pending_t pending; /* its calls in flight; pending.count is its load */
    par_buf_t in;
    size_t in_start;
    par_wire_t wire;
    int64_t started_ms;
    const char *kill_reason;
    char line[2048];
    size_t line_len;
    int64_t lines_window_ms;
    unsigned lines_in_window;
    uint64_t lines_dropped;
    par_tag_t sock_tag, out_tag;
    char *scratch;   /* its private writable directory, removed when it is gone */
    json_t *sandbox; /* what par-worker reported it applied (SANDBOX frame), or NULL */
    /* while starting: its last output lines (fds 1/2 and LOG frames), shown
     * in the start error when it dies before HELLO; I/O side only */
    char tail[PAR_TAIL_MAX_BYTES];
    size_t tail_len;
    /* events (events.c): credit granted while reading a batch of frames,
     * sent as one EVENT_ACK per request at the end of the batch (I/O side);
     * the cancels it was given a grace for (pool lock) */
    uint64_t ack_id;
    unsigned ack_n;
    struct par_grace *graces;
};

struct par_pool {
    par_pool_t *next;
    par_super_t *s;
    atomic_int refs; /* the package version's + each child call waiting to answer; the
                      * supervisor frees a stopped pool only once it reaches 0 */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *name, *version;
    char **argv;
    char **envp;
    par_worker_t *workers;
    par_pool_core_t core; /* admission, slots, spawning, backoff (loader/pool.h) */
    unsigned memory_mb;   /* the workers' address-space limit, 0 = none */
    unsigned cpu_seconds; /* the workers' CPU time limit, 0 = none */
    unsigned scratch_mb;
    long uid, gid; /* the workers' (their scratch directories' owner); -1 when not root */
    size_t max_output;
    size_t max_input; /* the largest frame its workers accept */
    uint64_t next_id;
    int started;      /* a worker said HELLO once */
    int start_failed; /* the first worker died before HELLO: no respawn */
    int start_status; /* PAR_E_INCOMPATIBLE, or what the worker's start ERROR named */
    int stopping, stop_now;
    char *start_error;
    json_t *sandbox;    /* the sandbox of the newest ready worker */
    int sandbox_warned; /* degraded layers are logged once per package version */
    /* events (events.c) */
    size_t max_event;     /* the largest event's JSON (runs.max_event_kb) */
    par_slot_t *to_start; /* dispatched calls whose sink's `started` is due (lock) */
    uint64_t events, events_dropped, events_stray, events_invalid; /* counters (lock) */
    unsigned cancel_kills; /* workers killed for ignoring a cancel (lock) */
};

typedef struct par_trash {
    struct par_trash *next;
    char *path;
} par_trash_t;

struct par_super {
    par_super_hooks_t hooks;
    int ep;
    int wake_fd;
    par_tag_t wake_tag;
    pthread_t thread;
    _Atomic int stop;
    pthread_mutex_t lock; /* pools list */
    par_pool_t *pools;
    uint64_t next_wid;
    int64_t next_maint_ms;
    char *scratch_base; /* <state_dir>/scratch: one directory per live worker */
    /* Who runs the I/O (io_iterate): the I/O thread, or an attached event
     * loop (par_super_attach). io_lock is held by whichever does; the I/O
     * thread parks on io_cond while a loop is attached and, parked, removes
     * the scratch directories of dead workers (trash) so the loop never walks
     * a tree a worker filled. */
    pthread_mutex_t io_lock;
    pthread_cond_t io_cond;
    _Atomic int attached;
    par_trash_t *trash;   /* guarded by lock */
    par_scratch_t *quota; /* limits.scratch_mb accounting (loader/scratch.h) */
};

/* Calls completed under a pool lock, finished after it is released. */
typedef struct par_done_list {
    par_pool_ent_t *head;
} par_done_list_t;

/* Lock held (a call's `busy` flag is read under it). A call whose sink is
 * being called on another thread (or up the stack) is finished by that
 * thread when the sink returns. */
static inline void par__done_push(par_done_list_t *d, par_call_t *c)
{
    par_slot_t *s = par__slot(c);
    if (s->busy) {
        s->deferred = 1;
        return;
    }
    s->q.next = d->head;
    d->head = &s->q;
}

/* supervisor.c */
void par__super_wake(par_super_t *s);
/* Runs the completions with no pool lock held. */
void par__done_run(par_super_t *s, par_done_list_t *d);
/* Fails every call the pool's queue holds; the one way queued calls are dropped. Lock held. */
void par__pool_fail_queued(par_pool_t *p, int status, const char *msg, par_done_list_t *done);

/* calls.c */
/* Frees a pool with no workers, queue or slots left. */
void par__pool_free(par_pool_t *p);
/* Sends queued calls while a worker is ready and a slot is free. Lock held. */
void par__pool_drain_queue(par_pool_t *p);
par_worker_t *par__pool_pick_worker(par_pool_t *p);
int par__pool_any_ready(par_pool_t *p);
/* A frame to a worker (a full write buffer marks it for replacement). Lock held. */
void par__worker_send(par_worker_t *w, uint8_t type, uint64_t id, const char *hdr, size_t hlen,
                      const char *body, size_t blen);
/* Takes a call out of its worker's pending table and gives its slot back. Lock held. */
par_call_t *par__worker_take(par_worker_t *w, uint64_t id);

/* events.c */
/* Handles an EVENT frame: validates it, gives it to its call's sink with no
 * pool lock held, grants credit. I/O thread. */
void par__worker_event(par_worker_t *w, const par_frame_t *f, par_done_list_t *done);
/* Sends the EVENT_ACK collected while reading a batch of frames. Lock held. */
void par__worker_ack_flush(par_worker_t *w);
/* Marks a call just sent to a worker whose sink wants `started`. Lock held. */
void par__slot_dispatched(par_pool_t *p, par_call_t *c);
/* Unlocks the pool, then calls `started` of the calls dispatched while it
 * was held, and finishes those completed meanwhile. Every function that may
 * dispatch a call unlocks with this. */
void par__pool_unlock(par_pool_t *p);
/* Remembers that `w` was sent CANCEL for `id` and must answer it by `kill_at_ms`. Lock held. */
int par__worker_grace_add(par_worker_t *w, uint64_t id, int64_t kill_at_ms);
/* The worker answered `id`: its grace is over. Lock held. */
void par__worker_grace_answered(par_worker_t *w, uint64_t id);
/* 1 when the worker still runs a call it was told to cancel past its grace
 * at `now`: *ignored_ms is how long since the CANCEL, *id the request. Lock held. */
int par__worker_grace_overdue(const par_worker_t *w, int64_t now, int64_t *ignored_ms,
                              uint64_t *id);
void par__worker_grace_free(par_worker_t *w);
/* The sink of a call a worker asked for with "stream":true: each event goes
 * to that worker as CALL_EVENT. */
extern const par_call_sink_t par__stream_sink;

/* frames.c */
/* Reads and dispatches what the worker sent; 0 while it lives, -1 when it
 * must be treated as dead. I/O thread. */
int par__worker_read(par_worker_t *w);
/* Logs what the worker wrote to stdout/stderr. I/O thread. */
void par__worker_drain_output(par_worker_t *w);
/* The start error of a worker that died before HELLO: how it ended, what it
 * said (its start ERROR frame, or NULL) and its last output lines. NULL when
 * out of memory. */
char *par__worker_start_error(const par_worker_t *w, const char *how, const char *said);

#endif
