/*
 * obs/trace.h — W3C trace context (https://www.w3.org/TR/trace-context/) and
 * the random ids PAR hands out: trace ids, span ids, usage record ids.
 *
 * Every invocation is one span: an HTTP request starts (or continues, when it
 * carries a `traceparent`) a trace, and each sub-agent call is a new span
 * whose parent is the caller's span. Ids come from a per-thread xorshift
 * generator seeded by getrandom(): unique, not secret. Any thread.
 */
#ifndef PAR_OBS_TRACE_H
#define PAR_OBS_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define PAR_TRACE_ID_LEN 32 /* hex characters */
#define PAR_SPAN_ID_LEN 16

/* A fresh non-zero 64-bit random number. */
uint64_t par_trace_rand64(void);

/* Writes `n` (even, ≤ 64) random lowercase hex characters and a NUL into out[n + 1]. */
void par_trace_random_hex(char *out, size_t n);

/* Parses a `traceparent` header value ("00-<32 hex>-<16 hex>-<2 hex>"). On
 * success writes the trace id into trace_id[33] and the caller's span id into
 * parent_span[17] and returns 0; returns -1 for a malformed value, an
 * all-zero id or version ff (the header must then be ignored). */
int par_trace_parse(const char *v, size_t len, char *trace_id, char *parent_span);

/* Formats "00-<trace_id>-<span_id>-01" into out[56]; trace ids that are not
 * 32 hex characters (a body `trace_id` of another shape) give -1. */
int par_trace_format(const char *trace_id, const char *span_id, char *out);

#endif
