/*
 * runtime/runs.h — runs: long-lived invocations whose events are kept,
 * streamed, resumed and cancelled, and which outlive their HTTP client
 * (docs/runs.md).
 *
 * A run is one call (core/call.h) with a sink: every event its agent emits
 * gets the run's next sequence number (1, 2, 3 …, shared with the runtime's
 * own events run.started, run.completed, run.failed, run.cancelled,
 * run.interrupted) and is kept: the newest runs.memory_events in memory,
 * all of them in the run's event file under <state_dir>/runs/, so a client
 * resumes from any point for runs.retention after the run ended, and a
 * restart (even after kill -9) finds the run `interrupted` with its events.
 *
 * Owns the runs table, the run records and event files, the runs' deadlines,
 * retention and per-subject limits, and the flow control between an agent
 * and the clients streaming its run. Callers: http/ (loop threads), the
 * embedding API, the runtime (reload, shutdown, health, metrics). Every
 * function is thread-safe; none blocks on agent code. Watchers are notified
 * from whatever thread appended the event; the notify callback must only
 * hand the news to its own thread.
 */
#ifndef PAR_RUNTIME_RUNS_H
#define PAR_RUNTIME_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/call.h"
#include "util/buf.h"

typedef struct par_runtime par_runtime_t;
typedef struct par_run par_run_t;

typedef enum par_run_status {
    PAR_RUN_QUEUED = 0,
    PAR_RUN_RUNNING,
    PAR_RUN_SUCCEEDED,
    PAR_RUN_FAILED,
    PAR_RUN_CANCELLED,
    PAR_RUN_INTERRUPTED,
} par_run_status_t;

/* "queued", "running", "succeeded", …; NULL for a value out of range. */
const char *par_run_status_name(int status);
/* The status of a name, or -1. */
int par_run_status_parse(const char *name);

/* ---- the runs of a runtime (runtime.c calls these) ---- */

typedef struct par_runs par_runs_t;

/* Opens <state_dir>/runs: runs an earlier process left running become
 * `interrupted` (event run.interrupted appended), expired ones are removed.
 * Starts the runs' thread (deadline-free housekeeping: retention, event-file
 * writes). */
int par_runs_open(par_runtime_t *rt, par_runs_t **out, par_buf_t *err);
/* SIGTERM path: runs still in flight after the caller's grace end
 * `interrupted` at once (their clients get run.interrupted, their calls are
 * taken back); par_runs_close (at the runtime's destroy) writes the rest. */
void par_runs_interrupt_all(par_runs_t *rs, const char *why);
void par_runs_close(par_runs_t *rs);
/* For /runtime/health and metrics. */
unsigned par_runs_in_flight(par_runs_t *rs);
/* Runs still in flight on a package version (reload waits for them up to
 * reload.run_drain_ms, then interrupts them with par_runs_interrupt_version). */
unsigned par_runs_on_version(par_runs_t *rs, const void *pv);
void par_runs_interrupt_version(par_runs_t *rs, const void *pv, const char *why);
/* Counts a client resuming a run's events (par_run_resumes_total). NULL is
 * a no-op. */
void par_runs_count_resume(par_runs_t *rs);
/* The runs' families for /metrics (runtime/metrics.c). */
void par_runs_render_metrics(par_runs_t *rs, par_buf_t *b);

/* par__call_start, for a call started by par_run_start (c->sink ==
 * &par__run_sink), once its agent resolved and before it reaches an
 * executor: the run learns its package version and appends run.started
 * (sequence 1). PAR_E_NO_MEMORY (message in c->output). */
extern const par_call_sink_t par__run_sink;
int par__run_resolved(par_call_t *c);
/* par__call_finish, for the usage record of a run's call (before its done):
 * the run's events, its final one included, in *events, and the status to
 * record: the call's, or cancelled/interrupted when the run was ended so. */
int par__run_usage(const par_call_t *c, int64_t *events);

/* ---- run ids ---- */

/* A run id is "run_" + 12 hex digits of its creation time in ms + 20
 * random hex digits (36 characters); a run started by a fleet node
 * (fleet.postgres set, runtime/fleet.h) adds "_" and the node's tag, 6
 * characters of [a-z2-7] (43 characters), so that any node knows its owner.
 * Whether id[0..len) is a run id of either form: 1 or 0. */
#define PAR_RUN_TAG_LEN 6
int par_run_id_valid(const char *id, size_t len);
/* The owner's tag in a valid fleet run id (PAR_RUN_TAG_LEN characters, not
 * terminated), or NULL for a single-node id or an invalid one. */
const char *par_run_id_tag(const char *id, size_t len);

/* ---- one run (http/ calls these) ---- */

typedef struct par_run_opts {
    int cancel_on_disconnect; /* "on_disconnect":"cancel" */
    const char *metadata;     /* a JSON object or NULL; copied */
    size_t metadata_len;
    int allow_private; /* the embedder's runs (trusted as par_call) reach private sub-agents */
} par_run_opts_t;

/* Starts a run of `c`, filled as for par__call_start (agent id, input,
 * context, identity, trace, request id; done, data and sink unset: the run
 * owns the call from here). On PAR_OK *out is the run, referenced for the
 * caller. On an error the caller keeps `c` (its output holds the message)
 * and the run does not exist: PAR_E_AGENT_NOT_FOUND (unknown or private
 * agent), PAR_E_TOO_MANY_RUNS (limits.runs_per_subject; *retry_after_s is
 * set), and whatever par__call_start refuses. */
int par_run_start(par_runtime_t *rt, par_call_t *c, const par_run_opts_t *o, par_run_t **out,
                  unsigned *retry_after_s);

/* The run `id` if the caller may see it — its subject and tenant, or
 * `admin` — referenced; else NULL, the same for unknown and not-yours. */
par_run_t *par_run_get(par_runtime_t *rt, const char *id, const char *subject, const char *tenant,
                       int admin);
void par_run_ref(par_run_t *r);
void par_run_unref(par_run_t *r);

const char *par_run_id(const par_run_t *r);
int par_run_status(const par_run_t *r);
/* The run's last sequence number so far. */
uint64_t par_run_last_seq(const par_run_t *r);

/* GET /runs/{id}: {"run_id","agent_id","version","status","created_at",
 * "started_at","ended_at","events","metadata","output"|"error","usage"} (times
 * RFC 3339 UTC, null until known; "usage" is {"duration_ms","units"}). A run
 * past runs.retention is a tombstone for one more retention period: no
 * output or error, "expired": true, and its reads and answer are
 * PAR_E_RUN_EXPIRED (docs/internals/runs.md). New reference, or NULL (no
 * memory). */
json_t *par_run_json(par_run_t *r);
/* The answer of /runs/wait and of run.completed: the invoke-shaped body
 * plus "run_id" (an ended run only). On a failed, cancelled or interrupted
 * run, the error body {"error","message","request_id"} and its PAR status in
 * *status. PAR_E_RUN_ACTIVE while it runs, PAR_E_RUN_EXPIRED past retention. */
int par_run_answer(par_run_t *r, par_buf_t *out, int *status);

/* POST /runs/{id}/cancel: PAR_OK (the run ends `cancelled`; its worker is
 * sent CANCEL and killed after runs.cancel_grace_ms if it ignores it), or
 * PAR_E_RUN_ENDED. */
int par_run_cancel(par_run_t *r, const char *why);
/* DELETE /runs/{id}: removes an ended run and its events. PAR_E_RUN_ACTIVE
 * while it runs. */
int par_run_delete(par_run_t *r);

/* GET /runs: the caller's runs (all runs for admin), newest first. */
typedef struct par_runs_query {
    const char *subject, *tenant; /* the caller */
    int admin;
    const char *agent;  /* or NULL */
    int status;         /* or -1 */
    unsigned limit;     /* 1..1000; 0 = 50 */
    const char *cursor; /* from an earlier page's "next_cursor", or NULL */
} par_runs_query_t;
/* {"runs":[<par_run_json>…],"next_cursor":"…"|null}. PAR_E_BAD_REQUEST for a
 * cursor it did not make (message in *err). */
int par_runs_list(par_runtime_t *rt, const par_runs_query_t *q, json_t **out, par_buf_t *err);

/* ---- events ---- */

/*
 * Reads the run's events after sequence `after`, as SSE text ("id: N\n"
 * "event: T\ndata: D\n\n" each), appending to `out` whole events until it
 * holds at least `max_bytes` (at least one event when any). Sets *last to
 * the last sequence appended (= after when none) and *ended to 1 when the
 * run has ended and nothing follows *last. PAR_E_BAD_EVENT_ID when `after`
 * is past the last event; PAR_E_RUN_EXPIRED when the events after `after`
 * are no longer kept. Reads from memory, or the event file for old events.
 */
int par_run_read(par_run_t *r, uint64_t after, size_t max_bytes, par_buf_t *out, uint64_t *last,
                 int *ended);

/* A live client of a run's events. The watcher owns the struct; the run
 * links it until par_run_unwatch. */
typedef struct par_run_watch par_run_watch_t;
struct par_run_watch {
    /* Called when events after the watcher's delivered position exist or
     * the run ended: from any thread, with no lock held; must only wake the
     * watcher's own thread, which then calls par_run_read. At most once
     * between two par_run_delivered calls. */
    void (*notify)(par_run_watch_t *w);
    void *data;
    /* the run's */
    par_run_watch_t *_next, *_prev;
    uint64_t _delivered;
    int _notified;
};

/* Starts watching with everything up to `delivered` already sent; notifies
 * at once when more exists. PAR_OK. */
int par_run_watch(par_run_t *r, par_run_watch_t *w, uint64_t delivered);
/* The watcher has sent everything up to `seq` to its client (flow control:
 * the agent waits for the slowest watcher). Re-arms notify. */
void par_run_delivered(par_run_t *r, par_run_watch_t *w, uint64_t seq);
/* The watcher's client is gone. A run started with cancel_on_disconnect is
 * cancelled when its last watcher leaves before it ended. */
void par_run_unwatch(par_run_t *r, par_run_watch_t *w, int client_gone);

#endif
