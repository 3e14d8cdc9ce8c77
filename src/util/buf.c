/*
 * util/buf.c — see buf.h.
 */
#include "util/buf.h"

#include <par/par.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void par_buf_init(par_buf_t *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit ? limit : SIZE_MAX;
    b->borrowed = 0;
}

void par_buf_init_on(par_buf_t *b, char *storage, size_t cap, size_t limit)
{
    par_buf_init(b, limit);
    b->data = storage;
    b->cap = cap;
    b->borrowed = 1;
}

void par_buf_free(par_buf_t *b)
{
    if (!b->borrowed)
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->borrowed = 0;
}

void par_buf_reset(par_buf_t *b)
{
    b->len = 0;
}

int par_buf_reserve(par_buf_t *b, size_t extra)
{
    if (extra > b->limit - b->len)
        return PAR_E_TOO_LARGE;
    size_t need = b->len + extra + 1; /* room for a terminator */
    if (need <= b->cap)
        return PAR_OK;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    char *n = b->borrowed ? malloc(ncap) : realloc(b->data, ncap);
    if (n == NULL)
        return PAR_E_NO_MEMORY;
    if (b->borrowed && b->len)
        memcpy(n, b->data, b->len);
    b->borrowed = 0;
    b->data = n;
    b->cap = ncap;
    return PAR_OK;
}

int par_buf_append(par_buf_t *b, const void *data, size_t len)
{
    int rc = par_buf_reserve(b, len);
    if (rc != PAR_OK)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return PAR_OK;
}

int par_buf_appends(par_buf_t *b, const char *s)
{
    return par_buf_append(b, s, strlen(s));
}

int par_buf_vappendf(par_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return PAR_E_INTERNAL;
    if ((size_t)n < sizeof(small))
        return par_buf_append(b, small, (size_t)n);
    int rc = par_buf_reserve(b, (size_t)n);
    if (rc != PAR_OK)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return PAR_OK;
}

int par_buf_appendf(par_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = par_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void par_buf_errf(par_buf_t *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)par_buf_vappendf(err, fmt, ap);
    va_end(ap);
}

int par_buf_append_json_str(par_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = par_buf_reserve(b, len + 2);
    if (rc != PAR_OK)
        return rc;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n = 0;
        switch (c) {
        case '"':
            esc[0] = '\\', esc[1] = '"', n = 2;
            break;
        case '\\':
            esc[0] = '\\', esc[1] = '\\', n = 2;
            break;
        case '\n':
            esc[0] = '\\', esc[1] = 'n', n = 2;
            break;
        case '\r':
            esc[0] = '\\', esc[1] = 'r', n = 2;
            break;
        case '\t':
            esc[0] = '\\', esc[1] = 't', n = 2;
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                n = 6;
            }
        }
        if (n == 0) {
            if ((rc = par_buf_append(b, &s[i], 1)) != PAR_OK)
                return rc;
        } else if ((rc = par_buf_append(b, esc, n)) != PAR_OK) {
            return rc;
        }
    }
    return par_buf_append(b, "\"", 1);
}

int par_buf_terminate(par_buf_t *b)
{
    if (b->len + 1 > b->cap) {
        size_t limit = b->limit;
        b->limit = SIZE_MAX;
        int rc = par_buf_reserve(b, 0);
        b->limit = limit;
        if (rc != PAR_OK)
            return rc;
    }
    b->data[b->len] = '\0';
    return PAR_OK;
}

char *par_buf_steal(par_buf_t *b, size_t *len)
{
    if (par_buf_terminate(b) != PAR_OK)
        return NULL;
    char *d = b->data;
    if (b->borrowed && (d = malloc(b->len + 1)) != NULL)
        memcpy(d, b->data, b->len + 1);
    if (d == NULL)
        return NULL;
    b->borrowed = 0;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void par_hex_encode(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int par_hex_decode(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d == 16)
            return -1;
        out[i / 2] = (unsigned char)(i % 2 ? out[i / 2] << 4 | d : d);
    }
    return 0;
}

char *par_dec_u64(char *o, uint64_t v)
{
    char tmp[20];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        *o++ = tmp[--k];
    return o;
}

int par_buf_append_i64(par_buf_t *b, int64_t v)
{
    char tmp[21], *o = tmp;
    if (v < 0)
        *o++ = '-';
    o = par_dec_u64(o, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    return par_buf_append(b, tmp, (size_t)(o - tmp));
}
