/*
 * auth/identity.h — who is calling, once a credential has been accepted.
 *
 * An identity is immutable after it is built and refcounted: the verified-
 * token cache holds one reference, every request using it another, so a
 * cached identity may be evicted while requests still read it. The subject
 * and tenant are copied into each call (runtime/call.h), which is how they
 * reach the agent and its sub-agent calls. Any thread.
 */
#ifndef PAR_AUTH_IDENTITY_H
#define PAR_AUTH_IDENTITY_H

#include <stdatomic.h>

#include "auth/permissions.h"

/* Caps on what an identity may carry; longer claims are refused. */
#define PAR_SUBJECT_MAX 255
#define PAR_TENANT_MAX 255

typedef struct par_identity {
    atomic_int refs;
    char *subject; /* never NULL or empty */
    char *tenant;  /* NULL when no tenant claim is configured or present */
    par_perms_t perms;
} par_identity_t;

/* A new identity with one reference and no permissions; NULL when out of memory. */
par_identity_t *par_identity_new(const char *subject, const char *tenant);
void par_identity_ref(par_identity_t *id);
/* Drops a reference; NULL is fine. */
void par_identity_unref(par_identity_t *id);

#endif
