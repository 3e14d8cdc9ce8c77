/*
 * pkg/trust.h — which keys may sign which packages, and the check of a
 * detached minisign signature against them.
 *
 * Owns: the operator's trusted keys (parsed once, from the configuration's
 * key strings or .pub files) with their optional package-name pins (fnmatch
 * patterns). A pin protects a name: a key listed with `packages: ["acme-*"]`
 * pins acme-* to itself (and to any other key pinned to the same pattern), so
 * a package named acme-… deploys only when one of those keys signed it. Keys
 * without `packages:` sign any name no pin covers; a pinned key signs only its
 * own patterns. Immutable after par_trust_init, so any thread may verify
 * concurrently. Must never consult the current directory after init.
 * Callers: runtime/deploy.c (deploy threads), the CLI (`par verify`).
 */
#ifndef PAR_PKG_TRUST_H
#define PAR_PKG_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include <par/par.h>

#include "pkg/minisign.h"
#include "util/buf.h"

typedef struct par_trust_key {
    par_ms_pubkey_t pk;
    char **patterns; /* NULL-terminated; NULL = any package */
} par_trust_key_t;

typedef struct par_trust {
    par_trust_key_t *keys;
    size_t nkeys;
    int require; /* refuse unsigned packages */
} par_trust_t;

/* Parses every key; each problem is named in `err` (key index, file). */
int par_trust_init(par_trust_t *t, const par_trusted_key_t *keys, size_t n, int require,
                   par_buf_t *err);
void par_trust_free(par_trust_t *t);

/* Verifies a minisign signature file's text over the archive bytes (msg) or
 * its BLAKE2b-512 (prehash, may be NULL when msg is given). On success
 * `signer` holds the key id. PAR_E_SIGNATURE_INVALID for a malformed or
 * failing signature, PAR_E_UNTRUSTED_SIGNER when no trusted key has its id. */
int par_trust_verify(const par_trust_t *t, const char *sig, size_t siglen, const void *msg,
                     size_t len, const uint8_t *prehash, char signer[17], par_buf_t *err);

/* Whether package `name`, signed by key `signer` ("" or NULL: not signed),
 * may deploy under the pins. A name matched by pinned patterns needs a
 * signer pinned to every one of them (overlapping pins intersect); any other
 * name accepts a key without pins, and no signature (whether unsigned
 * packages are accepted at all is the caller's rule). PAR_OK;
 * PAR_E_UNTRUSTED_SIGNER naming the pattern, its keys and the signer;
 * PAR_E_SIGNATURE_MISSING when a pinned name is not signed. */
int par_trust_check_name(const par_trust_t *t, const char *signer, const char *name,
                         par_buf_t *err);

#endif
