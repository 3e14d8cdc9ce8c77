/*
 * plugins/otlp/traces.c — the body of POST /v1/traces, written directly.
 *
 * Spans are the exporter's volume (one per invocation), so their JSON is
 * written straight into one buffer instead of being built as jansson values
 * first, and the exporter reuses that buffer from batch to batch
 * (otlp_encode_traces_into) with the resource encoded once at start: a batch
 * costs no allocation once the buffer has grown, and a span's strings are
 * scanned with one table load per byte, copied in runs. The shape is OTLP's JSON encoding (encode.c
 * says which rules); the resource, encoded once per batch, is the only jansson value involved.
 * Strings are escaped, and bytes that are not UTF-8 become U+FFFD (a
 * collector refuses a whole request over one bad string).
 *
 * Pure; any thread (the sender thread in practice).
 */
#include "otlp.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grows `b` to hold n more bytes and a NUL; false (and b->oom) when it cannot. */
static bool w_grow(otlp_buf_t *b, size_t n)
{
    if (b->oom)
        return false;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static inline void w_raw(otlp_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap && !w_grow(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#define w_lit(b, s) w_raw((b), (s), sizeof(s) - 1)

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || /* overlong, surrogates */
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

/* Bytes a JSON string carries as they are: printable ASCII but '"' and '\\'
 * (a span's strings are almost only these: one table load per byte). */
static const unsigned char plain[256] = {
    [0x20 ... 0x21] = 1,
    [0x23 ... 0x5b] = 1,
    [0x5d ... 0x7e] = 1,
    [0x7f] = 1,
};

/* A JSON string: quotes, escapes, U+FFFD for bytes that are not UTF-8. */
static void w_str(otlp_buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    w_lit(b, "\"");
    for (;;) {
        while (plain[*p])
            p++;
        if (*p == '\0')
            break;
        size_t n = utf8_len(p);
        if (n > 1) {
            p += n;
            continue;
        }
        w_raw(b, (const char *)run, (size_t)(p - run));
        if (n == 0) {
            w_lit(b, "\\ufffd");
        } else if (*p == '"' || *p == '\\') {
            w_raw(b, (const char[]){'\\', (char)*p}, 2);
        } else {
            static const char hex[] = "0123456789abcdef";
            w_raw(b, (const char[]){'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]}, 6);
        }
        run = ++p;
    }
    w_raw(b, (const char *)run, (size_t)(p - run));
    w_lit(b, "\"");
}

/* The writers below write into room reserved beforehand (w_span): no
 * bounds check per byte, and constant-size copies the compiler inlines. */
#define PUT(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)

/* A JSON string as w_str writes it, in room for 6 * strlen(s) + 2 bytes (an
 * escape or U+FFFD is at most 6 bytes per input byte). */
static char *put_str(char *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    *o++ = '"';
    for (;;) {
        unsigned char c = *p;
        if (plain[c]) {
            *o++ = (char)c, p++;
            continue;
        }
        if (c == '\0')
            break;
        size_t n = utf8_len(p);
        if (n > 1) {
            memcpy(o, p, n), o += n, p += n;
            continue;
        }
        if (n == 0)
            o = PUT(o, "\\ufffd");
        else if (c == '"' || c == '\\')
            *o++ = '\\', *o++ = (char)c;
        else
            o = PUT(o, "\\u00"), *o++ = hex[c >> 4], *o++ = hex[c & 15];
        p++;
    }
    *o++ = '"';
    return o;
}

/* A 64-bit integer as OTLP's JSON wants it: a quoted decimal (at most 22 bytes). */
static char *put_u64str(char *o, uint64_t v)
{
    char t[20], *e = t + sizeof(t), *p = e;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    *o++ = '"';
    memcpy(o, p, (size_t)(e - p));
    o += e - p;
    *o++ = '"';
    return o;
}

/* Room one span can take: the fixed text, and each string at its worst. */
static size_t span_room(const otlp_span_t *s)
{
    size_t n = 320 + 6 * strlen(s->name) + (s->error ? 6 * strlen(s->error) : 0);
    for (size_t i = 0; s->attrs[i]; i++)
        n += 20 + 6 * strlen(s->attrs[i]);
    return n;
}

static void w_span(otlp_buf_t *b, const otlp_span_t *s)
{
    size_t room = span_room(s);
    if (b->len + room + 1 > b->cap && !w_grow(b, room))
        return;
    char *o = b->p + b->len;
    /* ids are lowercase hex (otlp_span_new), kind and status one digit */
    o = PUT(o, "{\"traceId\":\"");
    memcpy(o, s->trace_id, 32), o += 32;
    o = PUT(o, "\",\"spanId\":\"");
    memcpy(o, s->span_id, 16), o += 16;
    if (s->parent_span_id[0]) {
        o = PUT(o, "\",\"parentSpanId\":\"");
        memcpy(o, s->parent_span_id, 16), o += 16;
    }
    o = PUT(o, "\",\"name\":");
    o = put_str(o, s->name);
    o = PUT(o, ",\"kind\":");
    *o++ = (char)('0' + s->kind % 10);
    o = PUT(o, ",\"startTimeUnixNano\":");
    o = put_u64str(o, s->start_ns);
    o = PUT(o, ",\"endTimeUnixNano\":");
    o = put_u64str(o, s->end_ns);
    o = PUT(o, ",\"attributes\":[");
    for (size_t i = 0; s->attrs[i]; i += 2) {
        if (i)
            *o++ = ',';
        o = PUT(o, "{\"key\":");
        o = put_str(o, s->attrs[i]);
        o = PUT(o, ",\"value\":{\"stringValue\":");
        o = put_str(o, s->attrs[i + 1]);
        o = PUT(o, "}}");
    }
    o = PUT(o, "],\"status\":{\"code\":");
    *o++ = (char)('0' + s->status % 10);
    if (s->error) {
        o = PUT(o, ",\"message\":");
        o = put_str(o, s->error);
    }
    o = PUT(o, "}}");
    assert((size_t)(o - (b->p + b->len)) <= room);
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

int otlp_buf_add(otlp_buf_t *b, const char *s, size_t n)
{
    w_raw(b, s, n);
    return b->oom ? -1 : 0;
}

int otlp_encode_traces_head(otlp_buf_t *b, const char *resource_json, const char *scope_version)
{
    w_lit(b, "{\"resourceSpans\":[{\"resource\":");
    w_raw(b, resource_json, strlen(resource_json));
    w_lit(b, ",\"scopeSpans\":[{\"scope\":{\"name\":\"par\",\"version\":");
    w_str(b, scope_version ? scope_version : "");
    w_lit(b, "},\"spans\":[");
    return b->oom ? -1 : 0;
}

int otlp_encode_span(otlp_buf_t *b, const otlp_span_t *s)
{
    w_span(b, s);
    return b->oom ? -1 : 0;
}

int otlp_encode_traces_tail(otlp_buf_t *b)
{
    w_lit(b, "]}]}]}");
    return b->oom ? -1 : 0;
}

int otlp_encode_traces_into(otlp_buf_t *b, const char *resource_json, otlp_span_t *const *spans,
                            size_t n, const char *scope_version)
{
    b->len = 0;
    b->oom = false;
    otlp_encode_traces_head(b, resource_json, scope_version);
    for (size_t i = 0; i < n; i++) {
        if (i)
            w_lit(b, ",");
        w_span(b, spans[i]);
    }
    return otlp_encode_traces_tail(b);
}

char *otlp_encode_traces(const json_t *resource, otlp_span_t *const *spans, size_t n,
                         const char *scope_version, size_t *len)
{
    otlp_buf_t b = {0};
    char *res = json_dumps(resource, JSON_COMPACT);
    int rc = res ? otlp_encode_traces_into(&b, res, spans, n, scope_version) : -1;
    free(res);
    if (rc != 0) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
