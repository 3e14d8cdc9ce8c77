/*
 * runtime/call.h — what the runtime does with a call (the object itself is
 * core/call.h): admit, fail, finish with metering and rollback accounting,
 * cancel.
 *
 * The starter fills the inputs and calls par__call_start(). When that returns
 * PAR_OK the runtime owns the call until it invokes `done` exactly once, from
 * any thread (usually the supervisor's I/O thread); the starter then reads the
 * outputs and frees the call with par__call_free(). When par__call_start()
 * returns an error, `done` is never called and `output` holds the message.
 */
#ifndef PAR_RUNTIME_CALL_H
#define PAR_RUNTIME_CALL_H

#include "core/call.h"
#include "core/id.h"

/* Admits a sub-agent call before its target is resolved (par__call_start,
 * any thread): the chain's depth against limits.max_call_depth (508
 * call_depth_exceeded), its input as JSON (400 invalid_json: a worker's CALL
 * body is not trusted) and the calling package's declared callees,
 * metadata.par.calls (403 forbidden). PAR_OK for root calls; otherwise the
 * message is in c->output. */
int par__call_admit(par_runtime_t *rt, par_call_t *c, const par_agent_id_t *id);
/* Sets status and output message, then runs `done`. */
void par__call_fail(par_call_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void par__call_finish(par_call_t *c);
/* Takes back a started call whose result nobody will read (its HTTP client
 * went away): the worker is sent CANCEL, its concurrency or queue slot is
 * freed, and the call finishes now with PAR_E_CANCELLED and `why` (so it is
 * counted under status "cancelled"); `done` runs before this returns and may
 * free `c`. PAR_E_NOT_FOUND when it cannot be taken back (finishing already,
 * or an in-process agent); then `done` comes as usual. Any thread. */
int par__call_cancel(par_call_t *c, const char *why);
/* Cancels a run's call (par__call_cancel) and gives its worker `grace_ms`
 * to answer the CANCEL; a worker still running the call after that is killed
 * and replaced (its other calls fail as in a crash). 0 = no kill. In-process
 * agents only see the request (par_ctx_cancelled) and finish as usual
 * (PAR_E_NOT_FOUND). When a callback of the call's sink is running at that
 * moment (on another thread, or this one: a sink that cancels), `done` comes
 * when that callback returns, possibly just after this returns. */
int par__call_cancel_grace(par_call_t *c, const char *why, uint32_t grace_ms);
/* Grants the agent of `c` credit for `n` more events after its sink held
 * them back (par_call_sink_t.event returned 1). Any thread; a no-op once the
 * call has finished or is not in a worker. */
void par__call_events_ack(par_call_t *c, unsigned n);
/* The reference operations of package versions (par__pkgver_ref/unref) a
 * call stores with the first version it references. */
extern const par_call_pv_ops_t par__pkgver_ops;

#endif
