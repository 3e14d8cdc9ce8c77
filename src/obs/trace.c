/*
 * obs/trace.c — see trace.h.
 */
#include "obs/trace.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static _Thread_local uint64_t tl_state;

uint64_t par_trace_rand64(void)
{
    if (tl_state == 0) {
        if (getrandom(&tl_state, sizeof(tl_state), 0) != sizeof(tl_state) || tl_state == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            tl_state = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
                       (uint64_t)(uintptr_t)&tl_state ^ 0x9E3779B97F4A7C15ULL;
        }
    }
    uint64_t r;
    do {
        /* xorshift64* */
        tl_state ^= tl_state >> 12;
        tl_state ^= tl_state << 25;
        tl_state ^= tl_state >> 27;
        r = tl_state * 0x2545F4914F6CDD1DULL;
    } while (r == 0);
    return r;
}

void par_trace_random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i += 16) {
        uint64_t v = par_trace_rand64();
        for (size_t k = 0; k < 16 && i + k < n; k++, v >>= 4)
            out[i + k] = hex[v & 15];
    }
    out[n] = '\0';
}

static int hex_run(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        nonzero |= c != '0';
    }
    return nonzero;
}

int par_trace_parse(const char *v, size_t len, char *trace_id, char *parent_span)
{
    /* version "00" is exactly 55 bytes; later versions may append fields after a '-' */
    if (v == NULL || len < 55 || (len > 55 && v[55] != '-'))
        return -1;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return -1;
    if (hex_run(v, 2) < 0 || (v[0] == 'f' && v[1] == 'f') ||
        (len > 55 && v[0] == '0' && v[1] == '0'))
        return -1;
    if (hex_run(v + 3, 32) != 1 || hex_run(v + 36, 16) != 1 || hex_run(v + 53, 2) < 0)
        return -1;
    memcpy(trace_id, v + 3, 32);
    trace_id[32] = '\0';
    memcpy(parent_span, v + 36, 16);
    parent_span[16] = '\0';
    return 0;
}

int par_trace_format(const char *trace_id, const char *span_id, char *out)
{
    if (strlen(trace_id) != 32 || hex_run(trace_id, 32) != 1 || strlen(span_id) != 16)
        return -1;
    memcpy(out, "00-", 3);
    memcpy(out + 3, trace_id, 32);
    out[35] = '-';
    memcpy(out + 36, span_id, 16);
    memcpy(out + 52, "-01", 4); /* with the NUL: 55 characters */
    return 0;
}
