/*
 * plugins/otlp/traces.c — the body of POST /v1/traces, written directly.
 *
 * Spans are the exporter's volume (one per invocation), so their JSON is
 * written straight into one growing buffer instead of being built as jansson
 * values first: a batch of 512 spans costs one buffer and no per-field
 * allocation. The shape is OTLP's JSON encoding (encode.c says which rules);
 * the resource, encoded once per batch, is the only jansson value involved.
 * Strings are escaped, and bytes that are not UTF-8 become U+FFFD (a
 * collector refuses a whole request over one bad string).
 *
 * Pure; any thread (the sender thread in practice).
 */
#include "otlp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wbuf {
    char *p;
    size_t len, cap;
    bool oom;
} wbuf_t;

static void w_raw(wbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void w_lit(wbuf_t *b, const char *s)
{
    w_raw(b, s, strlen(s));
}

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

/* A JSON string: quotes, escapes, U+FFFD for bytes that are not UTF-8. */
static void w_str(wbuf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    w_raw(b, "\"", 1);
    while (*p) {
        size_t n = utf8_len(p);
        if (n == 1 && *p >= 0x20 && *p != '"' && *p != '\\') {
            p++;
            continue;
        }
        if (n > 1) {
            p += n;
            continue;
        }
        w_raw(b, (const char *)run, (size_t)(p - run));
        char esc[8];
        if (n == 0)
            w_lit(b, "\\ufffd");
        else if (*p == '"' || *p == '\\')
            w_raw(b, (const char[]){'\\', (char)*p}, 2);
        else {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            w_lit(b, esc);
        }
        run = ++p;
    }
    w_raw(b, (const char *)run, (size_t)(p - run));
    w_raw(b, "\"", 1);
}

static void w_u64str(wbuf_t *b, uint64_t v)
{
    char t[24];
    w_raw(b, t, (size_t)snprintf(t, sizeof(t), "\"%" PRIu64 "\"", v));
}

static void w_span(wbuf_t *b, const otlp_span_t *s)
{
    char t[160];
    int n =
        snprintf(t, sizeof(t), "{\"traceId\":\"%s\",\"spanId\":\"%s\"", s->trace_id, s->span_id);
    w_raw(b, t, (size_t)n);
    if (s->parent_span_id[0]) {
        n = snprintf(t, sizeof(t), ",\"parentSpanId\":\"%s\"", s->parent_span_id);
        w_raw(b, t, (size_t)n);
    }
    w_lit(b, ",\"name\":");
    w_str(b, s->name);
    n = snprintf(t, sizeof(t), ",\"kind\":%d,\"startTimeUnixNano\":", s->kind);
    w_raw(b, t, (size_t)n);
    w_u64str(b, s->start_ns);
    w_lit(b, ",\"endTimeUnixNano\":");
    w_u64str(b, s->end_ns);
    w_lit(b, ",\"attributes\":[");
    for (size_t i = 0; s->attrs[i]; i += 2) {
        w_lit(b, i ? ",{\"key\":" : "{\"key\":");
        w_str(b, s->attrs[i]);
        w_lit(b, ",\"value\":{\"stringValue\":");
        w_str(b, s->attrs[i + 1]);
        w_lit(b, "}}");
    }
    n = snprintf(t, sizeof(t), "],\"status\":{\"code\":%d", s->status);
    w_raw(b, t, (size_t)n);
    if (s->error) {
        w_lit(b, ",\"message\":");
        w_str(b, s->error);
    }
    w_lit(b, "}}");
}

char *otlp_encode_traces(const json_t *resource, otlp_span_t *const *spans, size_t n,
                         const char *scope_version, size_t *len)
{
    wbuf_t b = {0};
    char *res = json_dumps(resource, JSON_COMPACT);
    if (!res)
        return NULL;
    w_lit(&b, "{\"resourceSpans\":[{\"resource\":");
    w_lit(&b, res);
    free(res);
    w_lit(&b, ",\"scopeSpans\":[{\"scope\":{\"name\":\"par\",\"version\":");
    w_str(&b, scope_version ? scope_version : "");
    w_lit(&b, "},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            w_raw(&b, ",", 1);
        w_span(&b, spans[i]);
    }
    w_lit(&b, "]}]}]}");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
