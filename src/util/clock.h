/*
 * util/clock.h — milliseconds on the two clocks: monotonic, for intervals and
 * deadlines, and the wall clock (Unix time), for what is recorded or sent.
 * Any thread.
 */
#ifndef PAR_UTIL_CLOCK_H
#define PAR_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t par_clock_ms(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Milliseconds since an arbitrary start; never goes back. */
static inline int64_t par_mono_ms(void)
{
    return par_clock_ms(CLOCK_MONOTONIC);
}

/* Milliseconds since the Unix epoch. */
static inline int64_t par_wall_ms(void)
{
    return par_clock_ms(CLOCK_REALTIME);
}

#endif
