/*
 * fuzz/fuzz_check.h — the invariant check the harnesses share.
 *
 * FUZZ_CHECK(cond, fmt, ...) prints what broke and aborts, which libFuzzer
 * and the replay driver (replay_main.c) both report as a failure with the
 * input that caused it. Header only; no state.
 */
#ifndef PAR_FUZZ_CHECK_H
#define PAR_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
