/*
 * fuzz/fuzz_json.c — libFuzzer harness for the JSON scanner (util/json.c),
 * differential against jansson: every request body and agent output goes
 * through the scanner, and whatever reads the bytes later (an agent, a
 * caller) parses them with a full parser, so the two must agree.
 *
 * Checks, for any input:
 *  - validity: jansson accepts => the scanner accepts (unless the nesting is
 *    deeper than PAR_JSON_MAX_DEPTH); jansson refuses => the scanner refuses,
 *    except for what the scanner leaves to others: numbers jansson cannot
 *    hold, and a \u0000 escape (valid JSON, which jansson refuses by default;
 *    par_json_unescape reports it as undecodable). Invalid UTF-8, lone
 *    surrogates and escaped keys are held to jansson's reading;
 *  - values: for a valid object, each located top-level field ("input",
 *    "context", "trace_id", "k") is exactly jansson's value for that key
 *    (last duplicate wins), absent when jansson has none; a string value
 *    decodes (par_json_unescape) to jansson's string;
 *  - a raw NUL byte is never valid (jansson would stop reading at one);
 *  - an error offset lies inside the input; par_json_root_type names the
 *    root jansson saw.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "util/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t depth_of(const json_t *v)
{
    size_t d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            size_t dx = depth_of(x);
            d = dx > d ? dx : d;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t dx = depth_of(json_array_get(v, i));
            d = dx > d ? dx : d;
        }
        return d + 1;
    }
    return 0;
}

/* May the scanner accept what jansson refused with this error? */
static int refusal_tolerated(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_numeric_overflow:
        return 1;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return 1; /* a \u0000 escape (raw NUL bytes are handled before) */
    default:
        return 0;
    }
}

static void check_string(const char *span, size_t len, const json_t *want)
{
    char *out = malloc(len + 1);
    if (out == NULL)
        return;
    long n = par_json_unescape(span, len, out);
    if (n >= 0) /* -1: a \u0000 inside, which jansson keeps and a C string cannot */
        FUZZ_CHECK((size_t)n == json_string_length(want) &&
                       memcmp(out, json_string_value(want), (size_t)n) == 0,
                   "'%.*s' decodes differently", (int)len, span);
    else
        FUZZ_CHECK(strlen(json_string_value(want)) != json_string_length(want),
                   "'%.*s' does not decode", (int)len, span);
    free(out);
}

static void check_fields(const json_t *root, const par_json_field_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *want = json_object_get(root, f[i].name);
        FUZZ_CHECK((want == NULL) == (f[i].ptr == NULL), "field %s: jansson %s, scanner %s",
                   f[i].name, want ? "has it" : "has none", f[i].ptr ? "has it" : "has none");
        if (want == NULL)
            continue;
        json_error_t e;
        json_t *got = json_loadb(f[i].ptr, f[i].len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        int same = got != NULL && json_equal(got, want);
        json_decref(got);
        FUZZ_CHECK(same, "field %s: span '%.*s' differs", f[i].name, (int)f[i].len, f[i].ptr);
        if (json_is_string(want))
            check_string(f[i].ptr, f[i].len, want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    par_json_field_t f[] = {
        {"input", NULL, 0}, {"context", NULL, 0}, {"trace_id", NULL, 0}, {"k", NULL, 0}};
    size_t nf = sizeof(f) / sizeof(f[0]), off = (size_t)-1;
    int ok = par_json_scan(p, size, f, nf, &off) == 0;
    if (!ok)
        FUZZ_CHECK(off <= size, "error offset %zu past %zu bytes", off, size);
    if (memchr(p, '\0', size) != NULL) {
        /* never JSON (a control character in a string, else not a token);
         * jansson stops at a NUL after a value and would accept "0\0" */
        FUZZ_CHECK(!ok, "scanner accepts a NUL byte");
        return 0;
    }
    json_error_t e;
    json_t *root = json_loadb(p, size, JSON_DECODE_ANY, &e);
    if (root == NULL) {
        FUZZ_CHECK(!ok || refusal_tolerated(&e), "scanner accepts what jansson refuses: %s (%d)",
                   e.text, json_error_code(&e));
        return 0;
    }
    if (!ok) {
        FUZZ_CHECK(depth_of(root) > PAR_JSON_MAX_DEPTH, "scanner refuses at %zu what jansson reads",
                   off);
    } else {
        char t = par_json_root_type(p, size);
        char want = json_is_object(root)   ? '{'
                    : json_is_array(root)  ? '['
                    : json_is_string(root) ? '"'
                    : json_is_null(root)   ? 'n'
                    : json_is_true(root)   ? 't'
                    : json_is_false(root)  ? 'f'
                                           : '0';
        FUZZ_CHECK(t == want, "root type %c, jansson %c", t, want);
        if (json_is_object(root))
            check_fields(root, f, nf);
    }
    json_decref(root);
    return 0;
}
