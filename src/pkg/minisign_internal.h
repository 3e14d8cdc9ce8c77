/*
 * pkg/minisign_internal.h — what minisign.c (text formats, public keys,
 * signatures, verification) and minisign_seckey.c (secret keys, key
 * generation, signing) share. Not part of minisign.h's interface; include it
 * only from pkg/minisign*.c. Everything here is thread-safe (no state but
 * libsodium's one-time initialisation).
 */
#ifndef PAR_PKG_MINISIGN_INTERNAL_H
#define PAR_PKG_MINISIGN_INTERNAL_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/minisign.h"
#include "util/buf.h"

#define PK_BYTES 42
#define SIG_BYTES 74
#define SK_BYTES 158
/* offsets in the secret key */
#define SK_KDF 2
#define SK_CHKALG 4
#define SK_SALT 6
#define SK_OPS 38
#define SK_MEM 46
#define SK_KEYNUM 54 /* start of the encrypted part */
#define SK_SK 62
#define SK_CHK 126
#define SK_SECRET_BYTES (SK_BYTES - SK_KEYNUM) /* 104 */

#define OPSLIMIT_DEFAULT crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_SENSITIVE
#define MEMLIMIT_DEFAULT crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_SENSITIVE

/* No key or signature file is anywhere near this; it bounds every scan. */
#define TEXT_MAX (64 * 1024)
/* Longest base64 line decoded (the secret key's is 212 characters). */
#define B64_LINE_MAX 340

#define UNTRUSTED_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "

typedef struct span {
    const char *p;
    size_t n;
} span_t;

static inline void store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* sodium_init() once per process; PAR_OK, or an error with a message. */
int par__ms_ensure_sodium(par_buf_t *err);
/* The key id: keynum read as a little-endian integer, 16 hex digits. */
void par__ms_key_id(const uint8_t keynum[PAR_MS_KEYNUM_BYTES], char out[PAR_MS_ID_CHARS + 1]);
/* An algorithm tag for a message: "Ed" when printable, else its hex bytes. */
const char *par__ms_alg_str(const uint8_t a[2], char out[16]);
/* Decodes one base64 line `s` into exactly `want` bytes; messages name the
 * line (`where`) and what it should hold (`what`). */
int par__ms_b64_line(span_t s, uint8_t *out, size_t want, const char *where, const char *what,
                     par_buf_t *err);
/* Finds the base64 line of a key file (`kind`: "public key" or "secret key"). */
int par__ms_key_line(const char *text, size_t len, const char *kind, span_t *b64, char where[64],
                     par_buf_t *err);
/* sig || trusted comment, the global signature's message (malloc'd; NULL
 * when out of memory). */
uint8_t *par__ms_global_message(const uint8_t sig[64], const char *tc, size_t *len);

#endif
