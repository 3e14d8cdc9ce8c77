/*
 * loader/supervisor.h — worker processes: spawn, speak the worker protocol,
 * dispatch calls, notice crashes and hangs, restart with backoff.
 *
 * Owns one I/O thread (epoll) that reads every worker socket and output pipe,
 * completes calls, enforces deadlines and respawns workers (or lends that
 * work to an attached event loop, par_super_attach), and one pool per
 * package version. par_pool_submit() may be called from any thread and never
 * blocks on a worker: it writes what the socket takes and leaves the rest to
 * the I/O thread. Must never run package code in the runtime's address space.
 *
 * Knows nothing of the runtime: what a pool runs comes in a spec
 * (loader/spawn.h) when it starts, and what the supervisor needs back (start a
 * worker's sub-agent call, finish a call, the periodic tick) through the hooks
 * given to par_super_new. Its parts: supervisor.c (the I/O thread, worker
 * start and death, maintenance), frames.c (what workers send), calls.c
 * (dispatch, this API), events.c (EVENT frames, sinks, cancel graces,
 * streamed sibling calls), wire.c (writes, corking), pending.c (a worker's
 * calls by id), pool.c (admission, backoff and crash-loop decisions),
 * spawn.c (command line, environment, scratch, posix_spawn).
 */
#ifndef PAR_LOADER_SUPERVISOR_H
#define PAR_LOADER_SUPERVISOR_H

#include <jansson.h>

#include "core/call.h"
#include "loader/spawn.h"
#include "util/buf.h"

typedef struct par_pool par_pool_t;
typedef struct par_super par_super_t;

/* What the supervisor asks of its owner (the runtime). Called with no pool
 * lock held, on the thread running the supervisor's I/O. */
typedef struct par_super_hooks {
    void *owner;
    /* Starts a call a worker asked for (its CALL frame), as par__call_start. */
    int (*call_start)(void *owner, par_call_t *c);
    /* Finishes a call the supervisor completed (metering, then `done`). */
    void (*call_finish)(par_call_t *c);
    /* Every maintenance turn (about every 10 ms). */
    void (*tick)(void *owner, int64_t now_ms);
} par_super_hooks_t;

/* Starts the supervisor and its I/O thread; worker scratch directories go
 * under <state_dir>/scratch (what an earlier runtime left there is removed). */
int par_super_new(const par_super_hooks_t *hooks, const char *state_dir, par_super_t **out);
void par_super_free(par_super_t *s);

/* Hands the supervisor's I/O to the calling event-loop thread, which then
 * watches the returned descriptor (an epoll set: readable when a worker
 * socket or pipe is) and calls par_super_poll() when it is readable and
 * whenever par_super_maintenance_due() says so (every 10 ms). Calls finish on
 * that thread, so an HTTP loop answers a worker's RESULT without another
 * thread in between. Spawning (posix_spawn, vfork-based) and reaping a
 * killed worker then run on the loop; removing dead workers' scratch trees
 * stays on the parked I/O thread. One loop at a time; the loop calls
 * par_super_detach() before it ends, and the I/O thread takes over again. */
int par_super_attach(par_super_t *s);
void par_super_poll(par_super_t *s);
int par_super_maintenance_due(par_super_t *s);
void par_super_detach(par_super_t *s);

/* Creates the pool of a package version from `spec` and starts its first
 * worker; waits until it says HELLO (PAR_OK, *out is the pool, holding one
 * reference dropped by par_pool_release) or fails (PAR_E_INCOMPATIBLE, or
 * what the worker's start error named, with its reason in `err`).
 * Blocking; never from an event-loop thread. */
int par_pool_start(par_super_t *s, const par_pool_spec_t *spec, par_pool_t **out, par_buf_t *err);

/* Dispatches a call to a worker of the pool (or queues it while workers start).
 * A call with a sink (core/call.h) is told `started` when it is handed to a
 * worker, with no pool lock held, by the thread that handed it over: this
 * one before par_pool_submit returns, or later the supervisor's I/O thread
 * (a slot freed by an answer, a worker ready) or a thread whose cancel freed
 * a slot. Its events (EVENT frames) reach the sink on the I/O thread, after
 * `started` returned, never two callbacks at once. */
int par_pool_submit(par_pool_t *p, par_call_t *c);
/* Cancels a call the pool holds, in a worker (which is sent CANCEL; its
 * concurrency slot is given back at once) or queued: it finishes with
 * PAR_E_CANCELLED and `why` before this returns (its `done` may free it).
 * PAR_E_NOT_FOUND when the pool no longer holds it (it is finishing). Any thread. */
int par_pool_cancel(par_pool_t *p, par_call_t *c, const char *why);

/* par_pool_cancel for a run: the worker running `c` (if any) is given
 * `grace_ms` to answer the CANCEL (RESULT or ERROR for its id); a worker
 * still running it then is killed by maintenance ("worker ignored a cancel
 * for N ms; killed") and replaced, its other calls failing as in a crash
 * (agent_crashed). 0 = no kill.
 * For a call with a sink, one difference from par_pool_cancel: when another
 * thread is in the call's sink at that moment (the I/O thread delivering an
 * event, a dispatcher in `started`), or this thread is (a sink that cancels
 * its own call), the call finishes on that thread as soon as the sink
 * returns, so `done` may come just after this returns. */
int par_pool_cancel_grace(par_pool_t *p, par_call_t *c, const char *why, uint32_t grace_ms);
/* Grants the worker running `c` credit for `n` more EVENT frames (an
 * EVENT_ACK), after its sink held them back. Any thread (also from inside the
 * sink); a no-op when the pool no longer holds `c` in a worker. Never after
 * `c`'s done. */
void par_pool_events_ack(par_pool_t *p, par_call_t *c, unsigned n);

/* Stops the pool: no new calls; workers are closed once their in-flight calls
 * are done (or killed at once when `now`). Pending calls fail with `draining`
 * when `now`. The pool is freed by the supervisor when its last worker is gone. */
void par_pool_stop(par_pool_t *p, int now);

/* Drops the package version's reference; the supervisor frees the pool once
 * it is stopped, its workers are gone and no reference is left. */
void par_pool_release(par_pool_t *p);

/* The sandbox its newest ready worker reported (par-worker's SANDBOX frame):
 * a new JSON object, docs/sandbox.md. */
json_t *par_pool_sandbox(par_pool_t *p);

/* Describes the pool's workers as a JSON array (pid, state, in_flight, restarts). */
json_t *par_pool_describe(par_pool_t *p);

/* 1 when at least one worker is ready. */
int par_pool_live(par_pool_t *p);

/* Workers restarted after a crash so far. */
unsigned par_pool_restarts(par_pool_t *p);

typedef struct par_pool_stats {
    unsigned starting, ready, retiring;
    unsigned crashes;  /* workers that died on their own */
    unsigned timeouts; /* workers killed because a request passed its deadline */
    unsigned crashes_in_row;
    int crash_loop; /* crashing repeatedly and no worker ready: calls get 503 at once */
    /* EVENT frames read for calls in flight; of them, dropped (a unary call,
     * no sink) and invalid (the call failed with invalid_agent_event); EVENT
     * frames naming no call in flight (stray, ignored) */
    uint64_t events, events_dropped, events_invalid, events_stray;
    unsigned cancel_kills; /* workers killed for ignoring a cancel past its grace */
} par_pool_stats_t;

void par_pool_stats(par_pool_t *p, par_pool_stats_t *out);

#endif
