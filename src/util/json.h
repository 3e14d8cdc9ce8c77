/*
 * util/json.h — a non-allocating JSON validator and top-level field locator.
 *
 * Used on the hot path to check request bodies and agent outputs without
 * building a tree: the invoke handler only needs to know that the body is
 * valid JSON and where the top-level "input", "context" and "trace_id" values
 * are. Strict RFC 8259 (no comments, no trailing commas), strings must be
 * well-formed UTF-8 (RFC 3629) and \u escapes may not be lone surrogates
 * (RFC 7493, as jansson), depth capped. Any thread; no state.
 */
#ifndef PAR_UTIL_JSON_H
#define PAR_UTIL_JSON_H

#include <stddef.h>

#define PAR_JSON_MAX_DEPTH 128

typedef struct par_json_field {
    const char *name; /* in: top-level key to find */
    const char *ptr;  /* out: the value's bytes, NULL when absent */
    size_t len;
} par_json_field_t;

/* Validates `p[0..n)` as one JSON value with optional surrounding whitespace.
 * When the root is an object, fills the spans of the named top-level fields
 * (the last occurrence wins). Returns 0 when valid, else -1 and *err_off (if
 * not NULL) is the byte offset of the first error. */
int par_json_scan(const char *p, size_t n, par_json_field_t *fields, size_t nfields,
                  size_t *err_off);

/* Returns the root value's type character: '{', '[', '"', 'n', 't', 'f' or '0'
 * for a number, after leading whitespace. Assumes a validated document. */
char par_json_root_type(const char *p, size_t n);

/* Decodes a JSON string value `p[0..n)` (quotes included, as a field span
 * gives it, already validated) into `out`, which needs n bytes: the decoded
 * string is never longer than its encoding. Writes a terminating NUL and
 * returns the decoded length, or -1 when the span is not a string, an escape
 * is malformed, or it decodes to a NUL byte (which a C string cannot hold;
 * jansson refuses it too). \uXXXX becomes UTF-8; a surrogate pair becomes
 * one 4-byte sequence, a lone surrogate U+FFFD. */
long par_json_unescape(const char *p, size_t n, char *out);

/* Returns the offset of the first byte of `p[0..n)` that does not begin a
 * well-formed UTF-8 sequence (overlongs, surrogates and code points past
 * U+10FFFF are ill-formed), or n when all of it is well-formed. */
size_t par_utf8_check(const char *p, size_t n);

/* Trims JSON whitespace from both ends of a span. */
void par_json_trim(const char **p, size_t *n);

#endif
