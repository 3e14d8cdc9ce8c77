/*
 * pkg/semver.h — semantic versions (semver 2.0.0) and version ranges.
 *
 * Owns: parsing and ordering versions, and matching a version against a
 * range such as `metadata.par.requires: ">=1.0.0 <2.0.0"`. Ranges follow
 * node-semver (npm), the syntax package authors already know:
 *   - alternatives separated by `||`, each a space-separated AND of
 *     comparators;
 *   - comparators `<`, `<=`, `>`, `>=`, `=` or none, followed by a version
 *     that may be partial (`1`, `1.2`) or hold wildcards (`1.x`, `1.2.*`, `*`);
 *   - `~1.2.3` (same minor), `^1.2.3` (same left-most non-zero part), and
 *     hyphen ranges `1.2.3 - 2.3.4`;
 *   - a pre-release version matches only when a comparator of the same
 *     alternative names a pre-release of the same major.minor.patch
 *     (`>=1.2.3-beta` admits 1.2.3-rc.1 but not 1.3.0-alpha).
 * Unlike node-semver, an empty range or an empty `||` alternative is an error
 * rather than "any version": write `*` for that. docs/internals/semver.md
 * lists the desugaring of every form.
 *
 * Called by the deploy path (compatibility check) and tests. Any thread; no
 * state.
 */
#ifndef PAR_PKG_SEMVER_H
#define PAR_PKG_SEMVER_H

#include <stdint.h>

#include "util/buf.h"

/* Longest pre-release (and build) part kept, without its '-' ('+'). */
#define PAR_SEMVER_PRE_MAX 127
/* Longest range accepted by par_semver_range_match. */
#define PAR_SEMVER_RANGE_MAX 1024
/* Numeric parts are capped like node-semver's (2^53 - 1). */
#define PAR_SEMVER_NUM_MAX 9007199254740991ull

typedef struct par_semver {
    uint64_t major, minor, patch;
    char pre[PAR_SEMVER_PRE_MAX + 1];   /* "" when none */
    char build[PAR_SEMVER_PRE_MAX + 1]; /* "" when none; ignored by comparisons */
} par_semver_t;

/** Parses a full semver 2.0.0 version ("1.2.3", "1.2.3-rc.1+build.5"): no
 *  leading 'v', no leading zeros, no partial versions. Returns PAR_OK or
 *  PAR_E_INVALID_ARGUMENT. */
int par_semver_parse(const char *s, par_semver_t *out);

/** Orders two versions by semver precedence: <0, 0 or >0. Build metadata is
 *  ignored, so 1.0.0+a and 1.0.0+b compare equal. */
int par_semver_cmp(const par_semver_t *a, const par_semver_t *b);

/** Whether `version` (a full semver version) satisfies `range`.
 *  Returns 1 when it does, 0 when not, or -PAR_E_INVALID_ARGUMENT when the
 *  range or the version is malformed, with one line in `err` (may be NULL)
 *  naming the offending token and what was expected. */
int par_semver_range_match(const char *range, const char *version, par_buf_t *err);

#endif
