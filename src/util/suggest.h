/*
 * util/suggest.h — "did you mean": the nearest known word to a misspelt one.
 *
 * Owns: one edit distance (optimal string alignment: insertions, deletions,
 * substitutions and swaps of two neighbours each cost 1) and the choice of a
 * suggestion. Called by pkg/manifest.c (agent.yaml keys) and the
 * configuration reader (par.yaml keys). Pure functions, any thread; never
 * allocates.
 */
#ifndef PAR_UTIL_SUGGEST_H
#define PAR_UTIL_SUGGEST_H

#include <stddef.h>

/* Words longer than this are never compared (no suggestion). */
#define PAR_SUGGEST_MAX_LEN 64

/** Edit distance between `a` and `b` (OSA; ASCII letters compare without
 *  case), or (size_t)-1 when either is longer than PAR_SUGGEST_MAX_LEN bytes. */
size_t par_edit_distance(const char *a, const char *b);

/** The entry of `known` (NULL-terminated) nearest to `word` when it is within
 *  two edits (one edit for known words of four bytes or fewer, so that short
 *  unrelated words are not "corrected"), the first such entry on a tie; NULL
 *  when none is close enough or `word` is one of them. */
const char *par_suggest(const char *word, const char *const *known);

#endif
