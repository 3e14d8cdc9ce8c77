/*
 * pkg/minisign.h — minisign keys and signatures (Ed25519, BLAKE2b, scrypt).
 *
 * Owns: the three minisign text formats (public key, secret key, signature
 * file), key generation, signing and verification, byte-compatible with the
 * `minisign` tool (0.11): files written here are read by `minisign`, and the
 * other way round. docs/internals/minisign.md describes the formats.
 *
 * Called by the deploy path (verifying a package against the operator's
 * trusted keys, on a deploy thread) and by the CLI (`par keygen`, `par sign`,
 * `par verify`). Any thread: no global state besides a one-time
 * sodium_init(). Every cryptographic primitive comes from libsodium; this file
 * only lays bytes out. It must never leave secret material (secret keys,
 * passwords, key streams) in memory it frees: such bytes are wiped with
 * sodium_memzero, and a secret key held by a caller is wiped with
 * par_ms_seckey_wipe().
 *
 * Errors append one line ending in "\n" to `err` (which may be NULL), saying
 * what is wrong, where (which line, which field) and what to do.
 */
#ifndef PAR_PKG_MINISIGN_H
#define PAR_PKG_MINISIGN_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "util/buf.h"

#define PAR_MS_KEYNUM_BYTES 8
#define PAR_MS_ID_CHARS 16 /* key id: 16 uppercase hex digits */
/* Longest trusted comment `minisign -V` reads back whole (it reads lines of
 * at most 8191 bytes, "trusted comment: " and the newline included). */
#define PAR_MS_TRUSTED_COMMENT_MAX 8173
/* Longest untrusted comment `minisign` reads back whole (1023-byte lines). */
#define PAR_MS_UNTRUSTED_COMMENT_MAX 1003
/* Longest password `minisign` reads (1023-byte lines, newline included). */
#define PAR_MS_PASSWORD_MAX 1022

/** A public key: "Ed" || keynum || pk. `id` is the key id: the 8 keynum
 *  bytes read as a little-endian integer, as 16 uppercase hex digits
 *  (minisign 0.11 prints the same number without its leading zeros). */
typedef struct par_ms_pubkey {
    uint8_t keynum[PAR_MS_KEYNUM_BYTES];
    uint8_t pk[32];
    char id[PAR_MS_ID_CHARS + 1];
} par_ms_pubkey_t;

/** Parses a public key given either as its base64 string alone ("RWQ...",
 *  as configuration files give it; surrounding white space is ignored) or
 *  as the text of a .pub file (an "untrusted comment:" line, then the base64
 *  line). PAR_E_INVALID_ARGUMENT on anything else. */
int par_ms_pubkey_parse(const char *text, size_t len, par_ms_pubkey_t *out, par_buf_t *err);

/** Writes the 56-character base64 form of a public key (NUL-terminated). */
void par_ms_pubkey_base64(const par_ms_pubkey_t *pk, char out[57]);

/** A parsed signature file. `trusted_comment` is owned (free with
 *  par_ms_sig_free): the bytes after "trusted comment: " up to the line end,
 *  trailing CRs removed (as minisign does); it holds no NUL or LF byte. */
typedef struct par_ms_sig {
    int prehashed; /* 1: "ED", signs BLAKE2b-512(message); 0: legacy "Ed", signs the message */
    uint8_t keynum[PAR_MS_KEYNUM_BYTES];
    uint8_t sig[64];
    char id[PAR_MS_ID_CHARS + 1];
    char *trusted_comment;
    uint8_t global_sig[64]; /* Ed25519 over sig || trusted_comment */
} par_ms_sig_t;

/** Parses the text of a .minisig file: "untrusted comment: ..." line, the
 *  signature in base64, "trusted comment: ..." line, the global signature in
 *  base64. CR LF line ends are accepted. PAR_E_INVALID_ARGUMENT on anything
 *  else (the message names the line), PAR_E_NO_MEMORY. Nothing to free on
 *  failure. */
int par_ms_sig_parse(const char *text, size_t len, par_ms_sig_t *out, par_buf_t *err);
void par_ms_sig_free(par_ms_sig_t *sig);

/** Streaming BLAKE2b-512, the prehash of "ED" signatures: a download can hash
 *  while it streams and hand the digest to par_ms_verify. */
typedef struct par_ms_hash {
    crypto_generichash_state st;
} par_ms_hash_t;
void par_ms_hash_init(par_ms_hash_t *h);
void par_ms_hash_update(par_ms_hash_t *h, const void *data, size_t len);
void par_ms_hash_final(par_ms_hash_t *h, uint8_t out[64]);

/** Verifies `sig` over a message with public key `pk`.
 *  `msg`/`len` is the whole message; `prehash` (may be NULL) is its
 *  BLAKE2b-512, used for "ED" signatures instead of hashing `msg` again (then
 *  `msg` may be NULL). A legacy "Ed" signature needs `msg`.
 *  Returns PAR_OK; PAR_E_UNTRUSTED_SIGNER when the signature names another key
 *  id (the message names both); PAR_E_SIGNATURE_INVALID when the signature of
 *  the message, or the global signature over the trusted comment, does not
 *  verify (the message says which); PAR_E_INVALID_ARGUMENT when a legacy
 *  signature comes without the message. */
int par_ms_verify(const par_ms_pubkey_t *pk, const par_ms_sig_t *sig, const void *msg, size_t len,
                  const uint8_t *prehash, par_buf_t *err);

/** A decrypted secret key: keynum || Ed25519 secret key (seed || public key).
 *  Secret: wipe it with par_ms_seckey_wipe() when done. */
typedef struct par_ms_seckey {
    uint8_t keynum[PAR_MS_KEYNUM_BYTES];
    uint8_t sk[64];
    char id[PAR_MS_ID_CHARS + 1];
} par_ms_seckey_t;

void par_ms_seckey_wipe(par_ms_seckey_t *sk);

/** The public key that goes with a secret key. */
void par_ms_seckey_pubkey(const par_ms_seckey_t *sk, par_ms_pubkey_t *out);

/** 1 when the secret key text (a .key file) is encrypted with a password, 0
 *  when not, -PAR_E_INVALID_ARGUMENT when it is not a minisign secret key. */
int par_ms_seckey_is_encrypted(const char *text, size_t len);

/** Loads a secret key from the text of a .key file. `password` (NUL-
 *  terminated, as minisign reads it) is needed when the key is encrypted and
 *  ignored otherwise. Returns PAR_OK; PAR_E_INVALID_ARGUMENT for a malformed
 *  key, an encrypted key without a password, or a wrong password ("wrong
 *  password or corrupt secret key"); PAR_E_NO_MEMORY when the key derivation
 *  cannot get its memory. `out` is wiped on failure. */
int par_ms_seckey_load(const char *text, size_t len, const char *password, par_ms_seckey_t *out,
                       par_buf_t *err);

typedef struct par_ms_keygen_opts {
    const char *password;        /* NULL: unencrypted secret key */
    unsigned long long opslimit; /* scrypt; 0: minisign's OPSLIMIT_SENSITIVE */
    size_t memlimit;             /* scrypt; 0: minisign's MEMLIMIT_SENSITIVE (1 GiB) */
    const char *comment; /* public key's untrusted comment; NULL: "minisign public key ID" */
} par_ms_keygen_opts_t;

/** Generates a key pair. Appends the text of the .pub file to `pub_text` and
 *  of the .key file to `sec_text` (which then holds secret material when
 *  unencrypted: wipe it before freeing), and fills `pk` (may be NULL).
 *  Returns PAR_OK, PAR_E_INVALID_ARGUMENT (comment with a line break, too
 *  long password), PAR_E_NO_MEMORY. */
int par_ms_keygen(const par_ms_keygen_opts_t *opts, par_buf_t *pub_text, par_buf_t *sec_text,
                  par_ms_pubkey_t *pk, par_buf_t *err);

typedef struct par_ms_sign_opts {
    int legacy;                    /* 1: legacy "Ed" over the message; 0: prehashed "ED" */
    const char *trusted_comment;   /* NULL or "": "timestamp:<unix>\tfile:<basename>[\thashed]" */
    const char *file_name;         /* its basename goes into the default trusted comment */
    const char *untrusted_comment; /* NULL: "signature from minisign secret key" */
} par_ms_sign_opts_t;

/** Signs a message and appends the text of its .minisig file to `out`.
 *  `msg`/`len` is the message; for a prehashed signature `prehash` (may be
 *  NULL) is its BLAKE2b-512 and then `msg` may be NULL. `opts` may be NULL
 *  (prehashed, default comments). Returns PAR_OK or PAR_E_INVALID_ARGUMENT
 *  (a comment with a line break or over its cap, legacy without the
 *  message). */
int par_ms_sign(const par_ms_seckey_t *sk, const void *msg, size_t len, const uint8_t *prehash,
                const par_ms_sign_opts_t *opts, par_buf_t *out, par_buf_t *err);

#endif
