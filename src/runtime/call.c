/*
 * runtime/call.c — see call.h.
 */
#include "runtime/call.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/runtime.h"

int64_t par__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t par__now_ms(void)
{
    return par__now_ns() / 1000000;
}

par_call_t *par__call_new(void)
{
    par_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    par_buf_init(&c->output, 0);
    return c;
}

void par__call_free(par_call_t *c)
{
    if (c == NULL)
        return;
    par_buf_free(&c->output);
    free(c->units_json);
    free(c->subject);
    free(c->tenant);
    free(c->_input_copy);
    free(c->_context_copy);
    if (c->pv)
        par__pkgver_unref(c->pv);
    if (c->caller_pv)
        par__pkgver_unref(c->caller_pv);
    free(c);
}

int par__call_own_input(par_call_t *c)
{
    if (c->input && c->input != c->_input_copy) {
        c->_input_copy = malloc(c->input_len + 1);
        if (c->_input_copy == NULL)
            return PAR_E_NO_MEMORY;
        memcpy(c->_input_copy, c->input, c->input_len);
        c->input = c->_input_copy;
    }
    if (c->context && c->context != c->_context_copy) {
        c->_context_copy = malloc(c->context_len + 1);
        if (c->_context_copy == NULL)
            return PAR_E_NO_MEMORY;
        memcpy(c->_context_copy, c->context, c->context_len);
        c->context = c->_context_copy;
    }
    return PAR_OK;
}

void par__call_finish(par_call_t *c)
{
    c->finished_ns = par__now_ns();
    par_runtime_t *rt = c->_counted && c->pv ? c->pv->rt : NULL;
    if (rt && c->pv->metrics) {
        par_export_metrics_t *m = &c->pv->metrics[c->_export_idx];
        par_metrics_observe(m, c->status, c->finished_ns - c->started_ns);
        par__rollback_observe(c->pv, c->status);
        atomic_fetch_sub(&m->in_flight, 1);
    }
    c->done(c); /* may free c */
    if (rt)
        atomic_fetch_sub(&rt->inflight, 1);
}

void par__call_fail(par_call_t *c, int status, const char *fmt, ...)
{
    c->status = status;
    par_buf_reset(&c->output);
    va_list ap;
    va_start(ap, fmt);
    par_buf_vappendf(&c->output, fmt, ap);
    va_end(ap);
    par__call_finish(c);
}
