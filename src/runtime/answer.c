/*
 * runtime/answer.c — see answer.h. Copies, not snprintf: the ids, names and
 * versions are validated tokens that need no JSON escaping.
 */
#include "runtime/answer.h"

#include <assert.h>
#include <string.h>

#include "runtime/runtime.h"

static char *put_str(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

#define put_lit(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)

/* A duration in nanoseconds as milliseconds with three decimals, rounded to
 * the nearest microsecond: what "%.3f" of ns / 1e6 writes. */
static char *put_ms3(char *o, int64_t ns)
{
    uint64_t us = ((uint64_t)(ns > 0 ? ns : 0) + 500) / 1000;
    unsigned fr = (unsigned)(us % 1000);
    o = par_dec_u64(o, us / 1000);
    *o++ = '.';
    *o++ = (char)('0' + fr / 100);
    *o++ = (char)('0' + fr / 10 % 10);
    *o++ = (char)('0' + fr % 10);
    return o;
}

size_t par__call_answer_cap(const par_call_t *c)
{
    return c->output.len + strlen(c->agent_id) + strlen(c->trace_id) + strlen(c->request_id) +
           strlen(c->pv->name) + strlen(c->pv->version) +
           (c->units_json ? strlen(c->units_json) : 0) + 192;
}

size_t par__call_answer_write(const par_call_t *c, char *out)
{
    char *o = out;
    o = put_lit(o, "{\"agent_id\":\"");
    o = put_str(o, c->agent_id);
    o = put_lit(o, "\",\"output\":");
    if (c->output.len)
        memcpy(o, c->output.data, c->output.len);
    o += c->output.len;
    o = put_lit(o, ",\"duration_ms\":");
    o = put_ms3(o, c->finished_ns - c->started_ns);
    o = put_lit(o, ",\"trace_id\":\"");
    o = put_str(o, c->trace_id);
    o = put_lit(o, "\",\"metadata\":{\"request_id\":\"");
    o = put_str(o, c->request_id);
    o = put_lit(o, "\",\"package\":\"");
    o = put_str(o, c->pv->name);
    o = put_lit(o, "\",\"version\":\"");
    o = put_str(o, c->pv->version);
    o = put_lit(o, "\"");
    if (c->units_json) {
        o = put_lit(o, ",\"units\":");
        o = put_str(o, c->units_json);
    }
    o = put_lit(o, "}}");
    assert((size_t)(o - out) <= par__call_answer_cap(c));
    return (size_t)(o - out);
}
