/*
 * runtime/call.h — one invocation of an agent, from whatever front door it
 * came (HTTP, par_call, a sibling's par_ctx_call).
 *
 * The starter fills the inputs and calls par__call_start(). When that returns
 * PAR_OK the runtime owns the call until it invokes `done` exactly once, from
 * any thread (usually the supervisor's I/O thread); the starter then reads the
 * outputs and frees the call with par__call_free(). When par__call_start()
 * returns an error, `done` is never called and `output` holds the message.
 */
#ifndef PAR_RUNTIME_CALL_H
#define PAR_RUNTIME_CALL_H

#include <stdint.h>

#include <par/par.h>

#include "util/buf.h"

typedef struct par_call par_call_t;
typedef struct par_pkgver par_pkgver_t;
typedef struct par_worker par_worker_t;
typedef void (*par_call_done_cb)(par_call_t *call);

#define PAR_ID_MAX 200
#define PAR_REQUEST_ID_MAX 128

struct par_call {
    /* inputs */
    char agent_id[PAR_ID_MAX + 1];
    const char *input; /* JSON; borrowed until start returns, unless input_owned */
    size_t input_len;
    const char *context; /* JSON object or NULL; same lifetime as input */
    size_t context_len;
    char request_id[PAR_REQUEST_ID_MAX + 1];
    char trace_id[64];
    char *subject;           /* owned, may be NULL: the authenticated caller */
    char *tenant;            /* owned, may be NULL */
    int allow_private;       /* embedder or same-package sibling */
    par_pkgver_t *caller_pv; /* referenced: the calling agent's package version, or NULL */
    int64_t deadline_ms;     /* absolute CLOCK_MONOTONIC ms, 0 = package default */
    uint32_t timeout_ms;     /* requested (X-Par-Timeout-Ms): can only lower the package's */
    par_call_done_cb done;
    void *data; /* starter's slot */

    /* outputs */
    int status;
    par_buf_t output; /* output JSON on PAR_OK, else the error message text */
    char *units_json; /* agent-reported usage units object, or NULL */
    int64_t started_ns, finished_ns;
    par_pkgver_t *pv; /* referenced while the call lives: name, version */
    const char *export_name;

    /* runtime-private */
    int _inline;  /* in-process agents may run on the starter's thread */
    int _counted; /* counted in rt->inflight until finished */
    int _limited; /* holds one of its pool's concurrency slots */
    char *_input_copy;
    char *_context_copy;
    uint64_t _wid;
    par_worker_t *_worker;
    par_call_t *_hnext; /* worker pending-table chain */
    par_call_t *_qnext; /* pool wait queue */
    size_t _export_idx;
    uint64_t _parent_worker_id; /* CALL from a worker: who gets the CALL_RESULT */
    uint64_t _parent_call_id;
    void *_parent_pool;
};

par_call_t *par__call_new(void);
void par__call_free(par_call_t *c);
/* Copies input/context into the call so the starter's buffers may go away. */
int par__call_own_input(par_call_t *c);
/* Sets status and output message, then runs `done`. */
void par__call_fail(par_call_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void par__call_finish(par_call_t *c);
int64_t par__now_ns(void);
int64_t par__now_ms(void);

#endif
