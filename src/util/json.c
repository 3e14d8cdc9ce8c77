/*
 * util/json.c — see json.h. A recursive-descent scanner over bytes; recursion
 * depth is capped by PAR_JSON_MAX_DEPTH so hostile nesting cannot exhaust the
 * stack.
 */
#include "util/json.h"

#include "util/buf.h"

#include <string.h>

typedef struct scan {
    const char *p, *end, *start;
    int depth;
} scan_t;

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
    if (n == 0 || p[0] > 0xf4 || p[0] == 0xc0 || p[0] == 0xc1 || (size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

size_t par_utf8_check(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p, *end = u + n;
    for (const unsigned char *q = u; q < end;) {
        size_t k = *q < 0x80 ? 1 : utf8_seq(q, end);
        if (k == 0)
            return (size_t)(q - u);
        q += k;
    }
    return n;
}

/* The code unit of the \uXXXX escape at p (p[0] == '\\'), or -1. */
static long u_escape(const char *p, const char *end)
{
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !is_hex(p[2]) || !is_hex(p[3]) ||
        !is_hex(p[4]) || !is_hex(p[5]))
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++)
        v = v << 4 | (p[i] <= '9' ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
    return v;
}

/* A \u escape at s->p - 1; a high surrogate must be followed by a low one and a
 * low one never stands alone (RFC 8259 8.2, I-JSON; jansson agrees). On error
 * s->p is left at the backslash. */
static int scan_u_escape(scan_t *s)
{
    long v = u_escape(s->p - 1, s->end);
    if (v < 0 || (v >= 0xdc00 && v < 0xe000)) {
        s->p--;
        return -1;
    }
    if (v >= 0xd800 && v < 0xdc00) {
        long lo = u_escape(s->p + 5, s->end);
        if (lo < 0xdc00 || lo >= 0xe000) {
            s->p--;
            return -1;
        }
        s->p += 6;
    }
    s->p += 5;
    return 0;
}

static int scan_string(scan_t *s)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            s->p++;
            if (s->p >= s->end)
                return -1;
            switch (*s->p) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                s->p++;
                break;
            case 'u':
                if (scan_u_escape(s) != 0)
                    return -1;
                break;
            default:
                return -1;
            }
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)s->p, (const unsigned char *)s->end);
            if (k == 0)
                return -1; /* s->p stays on the first byte of the bad sequence */
            s->p += k;
            continue;
        }
        s->p++;
    }
    return -1;
}

static int scan_digits(scan_t *s)
{
    const char *b = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > b ? 0 : -1;
}

static int scan_number(scan_t *s)
{
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return -1;
    if (*s->p == '0') {
        s->p++;
    } else if (scan_digits(s) != 0) {
        return -1;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (scan_digits(s) != 0)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (scan_digits(s) != 0)
            return -1;
    }
    return 0;
}

static int scan_literal(scan_t *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int scan_value(scan_t *s, par_json_field_t *fields, size_t nfields);

/* Records the value of a field the caller asked for. A key written with
 * escapes ("in\\u0070ut") is compared decoded, as every full parser reads
 * it, so a body cannot show PAR one `input` and an agent or proxy another. */
static void match_field(const char *key, size_t keylen, const char *v, size_t vlen,
                        par_json_field_t *fields, size_t nfields)
{
    char dec[256];
    const char *k = key + 1;
    if (memchr(k, '\\', keylen) != NULL) {
        if (keylen + 2 > sizeof(dec)) /* six bytes per escape: no field name is that long */
            return;
        long n = par_json_unescape(key, keylen + 2, dec);
        if (n < 0)
            return;
        k = dec;
        keylen = (size_t)n;
    }
    for (size_t i = 0; i < nfields; i++) {
        if (strlen(fields[i].name) == keylen && memcmp(fields[i].name, k, keylen) == 0) {
            fields[i].ptr = v;
            fields[i].len = vlen;
        }
    }
}

/* After a member of an object or array: 1 when a ',' announces another, 0
 * after the closing bracket `close`, -1 on anything else. */
static inline int after_member(scan_t *s, char close)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    char c = *s->p++;
    return c == ',' ? 1 : c == close ? 0 : -1;
}

static int scan_object(scan_t *s, par_json_field_t *fields, size_t nfields)
{
    s->p++; /* '{' */
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        const char *key = s->p;
        if (scan_string(s) != 0)
            return -1;
        size_t keylen = (size_t)(s->p - key) - 2;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        skip_ws(s);
        const char *vstart = s->p;
        if (scan_value(s, NULL, 0) != 0)
            return -1;
        match_field(key, keylen, vstart, (size_t)(s->p - vstart), fields, nfields);
        int next = after_member(s, '}');
        if (next <= 0)
            return next;
    }
}

static int scan_array(scan_t *s)
{
    s->p++; /* '[' */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (scan_value(s, NULL, 0) != 0)
            return -1;
        int next = after_member(s, ']');
        if (next <= 0)
            return next;
    }
}

static int scan_value(scan_t *s, par_json_field_t *fields, size_t nfields)
{
    if (s->p >= s->end)
        return -1;
    int rc;
    switch (*s->p) {
    case '{':
        if (++s->depth > PAR_JSON_MAX_DEPTH)
            return -1;
        rc = scan_object(s, fields, nfields);
        s->depth--;
        return rc;
    case '[':
        if (++s->depth > PAR_JSON_MAX_DEPTH)
            return -1;
        rc = scan_array(s);
        s->depth--;
        return rc;
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        return scan_literal(s, "null", 4);
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s);
        return -1;
    }
}

int par_json_scan(const char *p, size_t n, par_json_field_t *fields, size_t nfields,
                  size_t *err_off)
{
    scan_t s = {p, p + n, p, 0};
    for (size_t i = 0; i < nfields; i++) {
        fields[i].ptr = NULL;
        fields[i].len = 0;
    }
    skip_ws(&s);
    if (scan_value(&s, fields, nfields) == 0) {
        skip_ws(&s);
        if (s.p == s.end)
            return 0;
    }
    if (err_off)
        *err_off = (size_t)(s.p - s.start);
    for (size_t i = 0; i < nfields; i++)
        fields[i].ptr = NULL;
    return -1;
}

char par_json_root_type(const char *p, size_t n)
{
    scan_t s = {p, p + n, p, 0};
    skip_ws(&s);
    if (s.p >= s.end)
        return 0;
    char c = *s.p;
    if (c == '-' || (c >= '0' && c <= '9'))
        return '0';
    return c;
}

void par_json_trim(const char **p, size_t *n)
{
    while (*n && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
        (*p)++, (*n)--;
    while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t' || (*p)[*n - 1] == '\n' ||
                  (*p)[*n - 1] == '\r'))
        (*n)--;
}

static int hex4(const char *p, const char *end, unsigned *v)
{
    unsigned char b[2];
    if (end - p < 4 || par_hex_decode(p, b, 2) != 0)
        return -1;
    *v = (unsigned)b[0] << 8 | b[1];
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3f));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

long par_json_unescape(const char *p, size_t n, char *out)
{
    if (n < 2 || p[0] != '"' || p[n - 1] != '"')
        return -1;
    const char *s = p + 1, *end = p + n - 1;
    char *o = out;
    while (s < end) {
        char c = *s++;
        if (c != '\\') {
            *o++ = c;
            continue;
        }
        if (s >= end)
            return -1;
        c = *s++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            *o++ = c;
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(s, end, &cp) != 0)
                return -1;
            s += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && end - s >= 6 && s[0] == '\\' && s[1] == 'u' &&
                hex4(s + 2, end, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                s += 6;
            } else if (cp >= 0xd800 && cp < 0xe000) {
                cp = 0xfffd;
            }
            if (cp == 0)
                return -1;
            o = put_utf8(o, cp);
            break;
        }
        default:
            return -1;
        }
    }
    *o = '\0';
    return (long)(o - out);
}
