/*
 * util/argv.c — see argv.h.
 */
#include "util/argv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void par_strvec_push_owned(par_strvec_t *sv, char *s)
{
    if (s == NULL || sv->failed) {
        free(s);
        sv->failed = 1;
        return;
    }
    if (sv->len + 2 > sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 16;
        char **v = realloc(sv->v, cap * sizeof(*v));
        if (v == NULL) {
            free(s);
            sv->failed = 1;
            return;
        }
        sv->v = v;
        sv->cap = cap;
    }
    sv->v[sv->len++] = s;
    sv->v[sv->len] = NULL;
}

void par_strvec_push(par_strvec_t *sv, const char *s)
{
    par_strvec_push_owned(sv, s ? strdup(s) : NULL);
}

void par_strvec_pushf(par_strvec_t *sv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    par_strvec_push_owned(sv, s);
}

void par_strvec_set_owned(par_strvec_t *sv, size_t i, char *s)
{
    if (i >= sv->len || s == NULL) {
        free(s);
        sv->failed = 1;
        return;
    }
    free(sv->v[i]);
    sv->v[i] = s;
}

int par_strvec_ok(const par_strvec_t *sv)
{
    return !sv->failed;
}

void par_strvec_free_array(char **v)
{
    for (char **a = v; a && *a; a++)
        free(*a);
    free(v);
}

char **par_strvec_steal(par_strvec_t *sv)
{
    char **v = sv->failed ? NULL : sv->v;
    if (sv->failed)
        par_strvec_free_array(sv->v);
    *sv = (par_strvec_t)PAR_STRVEC_INIT;
    return v;
}

void par_strvec_free(par_strvec_t *sv)
{
    par_strvec_free_array(sv->v);
    *sv = (par_strvec_t)PAR_STRVEC_INIT;
}
