/*
 * runtime/runs_internal.h — what the files of the run engine share: the run
 * and runs structs and the functions one file offers the others.
 *
 *   runs.c        the table, starting a run, its call's sink and done,
 *                 ending (cancel, interrupt), ownership, JSON, listing;
 *   runs_events.c a run's events in memory, reading them back, watchers
 *                 and flow control;
 *   runs_store.c  the run records and event files under <state_dir>/runs,
 *                 the runs' thread (write-behind every RUNS_FLUSH_MS,
 *                 retention), recovery at open.
 *
 * Locks: rs->lock guards the table (hash, list, in-flight list, the dirty
 * queue); r->mu guards one run's state, events and watchers. The order is
 * rs->lock before r->mu; nothing calls into agent code, the loader or a
 * watcher's notify with either held (those may take their own locks).
 * Not for callers outside the run engine (runs.h is the API).
 */
#ifndef PAR_RUNTIME_RUNS_INTERNAL_H
#define PAR_RUNTIME_RUNS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "runtime/runs.h"

/* The runs' thread writes pending events and records this often. */
#define RUNS_FLUSH_MS 20
/* The expiry lists: ended runs (by expire_at_ms) and tombstones (by
 * expire_at_ms + retention). Runs end in time order and the retention is
 * fixed at open, so appending keeps each sorted. */
#define RUNS_ENDED 1
#define RUNS_TOMBS 2

/* A run id: "run_" and 32 hex digits, the first 12 its creation time in ms
 * (ids sort by creation: the listing's order and cursor). In a fleet, "_"
 * and the owner node's tag follow (runs.h, par_run_id_tag). */
#define RUN_ID_LEN 36
#define RUN_ID_MAX (RUN_ID_LEN + 1 + PAR_RUN_TAG_LEN)

/* One event as SSE text: "id: N\nevent: T\ndata: D\n\n". */
typedef struct run_ev {
    uint64_t seq;
    size_t len;
    char text[];
} run_ev_t;

struct par_run {
    atomic_int refs;
    par_runs_t *rs;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* notifications finished (unwatch waits for them) */
    char id[RUN_ID_MAX + 1];
    char agent_id[PAR_ID_MAX + 1];
    char request_id[PAR_REQUEST_ID_MAX + 1];
    char trace_id[64];
    char *package, *version; /* NULL until the call resolved its agent */
    char *subject, *tenant;  /* the owner, NULL when anonymous */
    char *metadata;          /* a JSON object, or NULL */
    char *units;             /* the agent's usage units object at the end, or NULL */
    int status;              /* par_run_status_t */
    int end_status;          /* the PAR status of a failed/cancelled/interrupted run */
    int cancel_on_disconnect;
    int hidden;                               /* being started: not visible to get/list */
    int expired;                              /* its events are past retention: a tombstone */
    int deleted;                              /* set under rs->lock and mu: readable under either */
    int64_t created_ms, started_ms, ended_ms; /* wall clock; 0 = not yet */
    double duration_ms;                       /* the call's, at its end; -1 unknown */
    int64_t expire_at_ms;                     /* monotonic: ended + retention */

    /* the call while it runs (owned: the run frees it at its done) */
    par_call_t *call;
    unsigned call_pins;  /* threads using `call` outside r->mu */
    int call_free_later; /* done ran while pinned: the last unpin frees it */
    const void *pv;      /* the package version it runs on, until it ends */

    /* events: seq 1 .. last_seq; in memory mem_first .. last_seq */
    uint64_t last_seq;
    run_ev_t **mem;
    size_t nmem, capmem;
    uint64_t mem_first;
    size_t mem_bytes;

    /* watchers and flow control */
    par_run_watch_t *watchers;
    unsigned nwatchers;
    unsigned notifying; /* notify callbacks running outside mu */
    unsigned held;      /* event credits held back (sink returned 1) */

    /* the event file (runs_store.c; the runs' thread writes, anyone preads) */
    int fd;
    unsigned fd_readers; /* preads in progress without mu */
    int fd_close_later;  /* the fd to close when the last of them is done, or -1 */
    uint64_t flushed_seq;
    uint64_t *off; /* off[i]: offset of seq i+1; off[flushed_seq] = file length */
    size_t capoff;
    int record_dirty;
    int in_dirty;
    par_run_t *dirty_next;

    /* the table: hash chain, creation-ordered list, in-flight list */
    par_run_t *hnext;
    par_run_t *prev, *next;
    par_run_t *fprev, *fnext;
    int in_flight;
    /* the expiry lists (runs_store.c): ended runs, then tombstones, each in
     * the order they expire */
    par_run_t *xprev, *xnext;
    int xlist; /* RUNS_ENDED, RUNS_TOMBS, or 0 */
};

struct par_runs {
    par_runtime_t *rt;
    char *dir; /* <state_dir>/runs */
    unsigned memory_events;
    uint32_t retention_s;
    pthread_mutex_t lock;
    par_run_t **hash;
    size_t nhash, count;
    par_run_t *newest, *oldest; /* by creation */
    par_run_t *flight;          /* runs in flight */
    unsigned nflight;
    par_run_t *dirty;               /* runs with events or a record to write */
    par_run_t *xhead[3], *xtail[3]; /* the expiry lists, by xlist */
    /* the runs' thread */
    pthread_t thread;
    int thread_started;
    pthread_cond_t wake;
    int stop;
    /* metrics */
    atomic_ulong by_status[PAR_RUN_INTERRUPTED + 1];
    atomic_ulong events_total, resumes_total, cancels_total, spill_bytes;
    atomic_uint stream_clients;
};

/* ---- runs.c ---- */
/* par_run_start without par__call_start, for the unit tests: `c` has its
 * package version (c->pv) already; the test plays the executor through
 * c->sink and c->done. */
int par__run_adopt(par_runs_t *rs, par_call_t *c, const par_run_opts_t *o, par_run_t **out,
                   unsigned *retry_after_s);
par_run_t *par__run_new(par_runs_t *rs);
/* The table (rs->lock held; the hash has room: par__runs_grow_locked).
 * Insert takes the caller's reference; remove hands the table's back (the
 * caller unrefs) and takes the run off the expiry lists too. */
void par__runs_insert_locked(par_runs_t *rs, par_run_t *r);
void par__runs_remove_locked(par_runs_t *rs, par_run_t *r);
par_run_t *par__runs_find_locked(par_runs_t *rs, const char *id);
/* Doubles the hash (rs->lock held). PAR_E_NO_MEMORY. */
int par__runs_grow_locked(par_runs_t *rs);
/* Appends `r` to an expiry list, leaving the one it was on (rs->lock held). */
void par__runs_xpush_locked(par_runs_t *rs, par_run_t *r, int list);
void par__runs_xremove_locked(par_runs_t *rs, par_run_t *r);
/* Pins the run's call (mu held) so that it outlives a use without the
 * lock; NULL when the run has none. Unpin (mu not held) may free it. */
par_call_t *par__run_pin_call_locked(par_run_t *r);
void par__run_unpin_call(par_run_t *r, par_call_t *c);

/* ---- runs_events.c ---- */
/* Appends one event (r->mu held): the next sequence number, SSE text in
 * memory. `data` is one JSON value (newlines, which JSON allows only as
 * white space, become spaces). PAR_E_NO_MEMORY. */
int par__run_append_locked(par_run_t *r, const char *type, size_t tlen, const char *data,
                           size_t dlen);
/* Notifies the watchers that have news (r->mu held on entry and on return;
 * dropped while the callbacks run). */
void par__run_notify_locked(par_run_t *r);
/* Drops the flushed events beyond the newest memory_events, all of them
 * once the run ended (r->mu held). */
void par__run_trim_locked(par_run_t *r);
/* The data of event `seq` (its "data: " line) into `out`. r->mu held. */
int par__run_event_data_locked(par_run_t *r, uint64_t seq, par_buf_t *out);
/* Returns the credits held back once the slowest watcher is within half a
 * window (or always, `all`): r->mu held on entry and on return (dropped
 * around the loader call). */
void par__run_release_credit_locked(par_run_t *r, int all);
void par__run_events_free(par_run_t *r);

/* ---- runs_store.c ---- */
/* Makes <state_dir>/runs, reads the runs there back, starts the thread. */
int par__runs_store_open(par_runs_t *rs, par_buf_t *err);
/* Queues `r` for the runs' thread (events or its record changed). */
void par__run_dirty(par_run_t *r, int record);
/* Reads whole events from seq a on (up to b, all flushed; at least one,
 * then while under max_bytes) from the event file into `out`; *last is the
 * last one read. r->mu held on entry and on return, dropped for the pread
 * (a disk read never holds up the agent's events). PAR_E_RUN_EXPIRED when
 * the file is gone. */
int par__run_file_read_locked(par_run_t *r, uint64_t a, uint64_t b, size_t max_bytes,
                              par_buf_t *out, uint64_t *last);
/* Stops the thread after a last flush. */
void par__runs_store_stop(par_runs_t *rs);

/* ---- wall clock ---- */
int64_t par__wall_ms(void);

#endif
