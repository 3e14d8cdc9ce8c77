/*
 * auth/identity.c — see identity.h.
 */
#include "auth/identity.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

par_identity_t *par_identity_new(const char *subject, const char *tenant)
{
    par_identity_t *id = calloc(1, sizeof(*id));
    if (id == NULL)
        return NULL;
    atomic_init(&id->refs, 1);
    id->subject = strdup(subject ? subject : "");
    id->tenant = tenant ? strdup(tenant) : NULL;
    if (id->subject == NULL || (tenant && id->tenant == NULL)) {
        free(id->subject);
        free(id->tenant);
        free(id);
        return NULL;
    }
    return id;
}

void par_identity_ref(par_identity_t *id)
{
    int prev = atomic_fetch_add_explicit(&id->refs, 1, memory_order_relaxed);
    assert(prev > 0); /* a reference is taken only through a live one */
    (void)prev;
}

void par_identity_unref(par_identity_t *id)
{
    if (id == NULL)
        return;
    int prev = atomic_fetch_sub_explicit(&id->refs, 1, memory_order_acq_rel);
    if (prev <= 0) {
        fprintf(stderr, "%s:%d: identity refcount underflow\n", __FILE__, __LINE__);
        abort();
    }
    if (prev > 1)
        return;
    free(id->subject);
    free(id->tenant);
    par_perms_free(&id->perms);
    free(id);
}
