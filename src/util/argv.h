/*
 * util/argv.h — a growable, NULL-terminated vector of owned strings: the
 * argument and environment vectors of programs PAR starts (the worker
 * supervisor's par-worker command line, util/proc.h's helpers).
 *
 * Allocation failures are sticky: after one, every push is a no-op and
 * par_strvec_ok() says 0, so a caller builds a whole vector and checks once.
 * Not thread-safe; one owner at a time.
 */
#ifndef PAR_UTIL_ARGV_H
#define PAR_UTIL_ARGV_H

#include <stddef.h>

typedef struct par_strvec {
    char **v;   /* NULL-terminated once anything was pushed; NULL when empty */
    size_t len; /* strings, without the terminator */
    size_t cap;
    int failed; /* an allocation failed */
} par_strvec_t;

#define PAR_STRVEC_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* Appends a copy of `s`. */
void par_strvec_push(par_strvec_t *sv, const char *s);
/* Appends `s`, taking ownership (freed now when the vector has failed, or
 * when `s` is NULL the vector fails). */
void par_strvec_push_owned(par_strvec_t *sv, char *s);
/* Appends a formatted string. */
void par_strvec_pushf(par_strvec_t *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces string `i` (which must exist), taking ownership of `s`. */
void par_strvec_set_owned(par_strvec_t *sv, size_t i, char *s);
/* 1 when every push so far succeeded. */
int par_strvec_ok(const par_strvec_t *sv);
/* Hands the NULL-terminated array over (free it with par_strvec_free_array);
 * NULL when the vector failed (it is freed then). The vector is empty after. */
char **par_strvec_steal(par_strvec_t *sv);
void par_strvec_free(par_strvec_t *sv);
void par_strvec_free_array(char **v);

#endif
