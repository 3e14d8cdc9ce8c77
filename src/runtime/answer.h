/*
 * runtime/answer.h — the invoke-shaped answer of a finished call:
 * {"agent_id","output","duration_ms","trace_id","metadata":{"request_id",
 * "package","version"[,"units"]}}.
 *
 * Owns nothing: it writes into the caller's memory, so that the invoke fast
 * path (http/invoke.c) builds the body in its request pool and runs
 * (runtime/runs.c) in their own buffers. Any thread; no allocation, no
 * printf (this runs once per request on a loop thread).
 */
#ifndef PAR_RUNTIME_ANSWER_H
#define PAR_RUNTIME_ANSWER_H

#include <stddef.h>

#include "core/call.h"

/* Room par__call_answer_write needs for `c` (a call that finished with
 * PAR_OK and has its package version). */
size_t par__call_answer_cap(const par_call_t *c);
/* Writes the answer of `c` at `out` (at least par__call_answer_cap bytes)
 * and returns its length (no NUL). */
size_t par__call_answer_write(const par_call_t *c, char *out);

#endif
