/*
 * core/call.c — see call.h.
 */
#include "core/call.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    free(c->traceback);
    free(c->subject);
    free(c->tenant);
    free(c->_input_copy);
    free(c->_context_copy);
    assert((c->pv == NULL && c->caller_pv == NULL) || c->_pv_ops != NULL);
    if (c->pv)
        c->_pv_ops->unref(c->pv);
    if (c->caller_pv)
        c->_pv_ops->unref(c->caller_pv);
    free(c);
}

static int copy_in(char **copy, const char **p, size_t len)
{
    if (*p == NULL || *p == *copy)
        return PAR_OK;
    *copy = malloc(len + 1);
    if (*copy == NULL)
        return PAR_E_NO_MEMORY;
    memcpy(*copy, *p, len);
    (*copy)[len] = '\0';
    *p = *copy;
    return PAR_OK;
}

int par__call_own_input(par_call_t *c)
{
    int rc = copy_in(&c->_input_copy, &c->input, c->input_len);
    return rc == PAR_OK ? copy_in(&c->_context_copy, &c->context, c->context_len) : rc;
}

int par__call_link(par_call_t *c, const par_call_t *parent)
{
    memcpy(c->request_id, parent->request_id, sizeof(c->request_id));
    memcpy(c->trace_id, parent->trace_id, sizeof(c->trace_id));
    memcpy(c->parent_span_id, parent->span_id, sizeof(c->parent_span_id));
    memcpy(c->parent_id, parent->id, sizeof(c->parent_id));
    memcpy(c->root_id, parent->root_id[0] ? parent->root_id : parent->id, sizeof(c->root_id));
    c->deadline_ms = parent->deadline_ms;
    c->depth = parent->depth + 1;
    c->_hop = 1;
    if (parent->pv) {
        assert(parent->_pv_ops != NULL);
        c->_pv_ops = parent->_pv_ops;
        c->caller_pv = parent->pv;
        c->_pv_ops->ref(parent->pv);
    }
    c->subject = parent->subject ? strdup(parent->subject) : NULL;
    c->tenant = parent->tenant ? strdup(parent->tenant) : NULL;
    if ((parent->subject && c->subject == NULL) || (parent->tenant && c->tenant == NULL))
        return PAR_E_NO_MEMORY;
    return PAR_OK;
}

void par__call_set_error(par_call_t *c, int status, const char *msg)
{
    c->status = status;
    par_buf_reset(&c->output);
    par_buf_appends(&c->output, msg);
}
