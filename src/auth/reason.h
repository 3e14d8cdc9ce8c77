/*
 * auth/reason.h — why a credential or a request was refused.
 *
 * Every refusal carries one of these reasons. The stable name goes to the log
 * line (with a human detail) and labels par_auth_failures_total; the HTTP body
 * only ever says `unauthorized`, `invalid_token`, `forbidden` or
 * `auth_unavailable`, so a caller learns nothing it could use as an oracle.
 * Pure data, any thread.
 */
#ifndef PAR_AUTH_REASON_H
#define PAR_AUTH_REASON_H

#include <stddef.h>

/* X(NAME, "stable_name"). New reasons are appended. */
#define PAR_AUTH_REASON_MAP(X)                                                                     \
    X(NONE, "none")                                                                                \
    X(MISSING, "missing_credentials")                                                              \
    X(MALFORMED, "malformed_token")                                                                \
    X(TOO_LARGE, "token_too_large")                                                                \
    X(ALG, "alg_not_allowed")                                                                      \
    X(UNKNOWN_KID, "unknown_kid")                                                                  \
    X(KEY_MISMATCH, "key_mismatch")                                                                \
    X(SIGNATURE, "bad_signature")                                                                  \
    X(ISSUER, "wrong_issuer")                                                                      \
    X(AUDIENCE, "wrong_audience")                                                                  \
    X(EXPIRED, "expired")                                                                          \
    X(NOT_YET_VALID, "not_yet_valid")                                                              \
    X(ISSUED_IN_FUTURE, "issued_in_future")                                                        \
    X(CLAIMS, "invalid_claims")                                                                    \
    X(UNKNOWN_KEY, "unknown_api_key")                                                              \
    X(UNAVAILABLE, "keys_unavailable")                                                             \
    X(FORBIDDEN, "forbidden")                                                                      \
    X(PLUGIN, "refused_by_plugin")

typedef enum par_auth_reason {
#define PAR__AUTH_REASON_ENUM(name, str) PAR_AUTH_R_##name,
    PAR_AUTH_REASON_MAP(PAR__AUTH_REASON_ENUM)
#undef PAR__AUTH_REASON_ENUM
        PAR_AUTH_REASON_COUNT
} par_auth_reason_t;

/* A refusal: the reason and, for the log only, what exactly was wrong. */
typedef struct par_auth_fail {
    int reason;
    char detail[256];
} par_auth_fail_t;

/* "expired", "bad_signature", … ("none" for out-of-range values). */
const char *par_auth_reason_name(int reason);

/* Sets reason and a printf-style detail; returns `status` for tail calls. */
int par__auth_fail(par_auth_fail_t *f, int status, int reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
