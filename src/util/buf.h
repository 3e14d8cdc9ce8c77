/*
 * util/buf.h — growable byte buffer with a hard cap (curl's dynbuf idea).
 *
 * Owns its memory. Every append checks the cap and fails with PAR_E_TOO_LARGE
 * instead of growing past it. Not thread-safe: one owner at a time.
 */
#ifndef PAR_UTIL_BUF_H
#define PAR_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct par_buf {
    char *data;
    size_t len;
    size_t cap;   /* allocated */
    size_t limit; /* hard cap on len, 0 = SIZE_MAX */
    int borrowed; /* data is the caller's storage (par_buf_init_on), not malloc'd */
} par_buf_t;

void par_buf_init(par_buf_t *b, size_t limit);
/* Starts with the caller's `storage` of `cap` bytes (a stack array): the
 * buffer moves to the heap when it outgrows it. par_buf_free() and
 * par_buf_steal() work as for any buffer. */
void par_buf_init_on(par_buf_t *b, char *storage, size_t cap, size_t limit);
void par_buf_free(par_buf_t *b);
void par_buf_reset(par_buf_t *b);
/* Ensures room for `extra` more bytes. */
int par_buf_reserve(par_buf_t *b, size_t extra);
int par_buf_append(par_buf_t *b, const void *data, size_t len);
int par_buf_appends(par_buf_t *b, const char *s);
int par_buf_appendf(par_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int par_buf_vappendf(par_buf_t *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Appends a formatted message to an optional error sink: does nothing when
 * `err` is NULL (callers that do not want the text pass NULL). A failed
 * append (cap or memory) is ignored: the message is best effort, the caller's
 * status code is what reports the error. */
void par_buf_errf(par_buf_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a JSON string literal, quotes included. */
int par_buf_append_json_str(par_buf_t *b, const char *s, size_t len);
/* Appends a decimal integer (no printf: for hot paths). */
int par_buf_append_i64(par_buf_t *b, int64_t v);
/* Writes `n` bytes as 2n lowercase hex digits and a NUL into `out`. */
void par_hex_encode(const unsigned char *d, size_t n, char *out);
/* Reads exactly 2n hex digits (either case) from `s` into n bytes; -1 at the
 * first character that is not one (the caller checks the length). */
int par_hex_decode(const char *s, unsigned char *out, size_t n);
/* Writes `v` in decimal at `o` (no NUL) and returns the end (at most 20
 * bytes). No printf: for hot paths. */
char *par_dec_u64(char *o, uint64_t v);
/* Appends a NUL without counting it, so data can be used as a C string. */
int par_buf_terminate(par_buf_t *b);
/* Hands the memory to the caller and resets the buffer. */
char *par_buf_steal(par_buf_t *b, size_t *len);

#endif
