/*
 * pkg/minisign_seckey.c — minisign secret keys: loading (and decrypting)
 * them, generating key pairs, and signing.
 *
 * Owns: par_ms_seckey_*, par_ms_keygen and par_ms_sign (layouts and
 * compatibility rules in minisign.c's comment). Called by the CLI (`par
 * keygen`, `par sign`) and tests; any thread, no state but libsodium's
 * one-time initialisation. It must never leave secret material behind:
 * every buffer that held a seed, a decrypted key or a password-derived
 * stream is wiped with sodium_memzero before it is released, and a key file
 * from elsewhere cannot make it allocate without bound (KDF limits).
 */
#include "pkg/minisign.h"
#include "pkg/minisign_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

/* ---- secret keys ----------------------------------------------------------------- */

void par_ms_seckey_wipe(par_ms_seckey_t *sk)
{
    sodium_memzero(sk, sizeof(*sk));
}

void par_ms_seckey_pubkey(const par_ms_seckey_t *sk, par_ms_pubkey_t *out)
{
    memcpy(out->keynum, sk->keynum, PAR_MS_KEYNUM_BYTES);
    memcpy(out->pk, sk->sk + 32, 32); /* libsodium's secret key is seed || public key */
    par__ms_key_id(out->keynum, out->id);
}

/* BLAKE2b-256("Ed" || keynum || sk): the secret key's checksum. */
static void seckey_checksum(const uint8_t *bin, uint8_t out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, bin, 2);
    crypto_generichash_update(&st, bin + SK_KEYNUM, PAR_MS_KEYNUM_BYTES);
    crypto_generichash_update(&st, bin + SK_SK, 64);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof(st));
}

/* Decodes a secret key file into bin[SK_BYTES] and checks its algorithm tags.
 * *encrypted tells the KDF. Wipes bin on failure. */
static int seckey_decode(const char *text, size_t len, uint8_t bin[SK_BYTES], int *encrypted,
                         char where[64], par_buf_t *err)
{
    span_t b64;
    int rc = par__ms_key_line(text, len, "secret key", &b64, where, err);
    if (rc == PAR_OK)
        rc = par__ms_b64_line(b64, bin, SK_BYTES, where, "a minisign secret key", err);
    if (rc != PAR_OK)
        return rc;
    char a[16];
    if (memcmp(bin, "Ed", 2) != 0) {
        par_buf_errf(err,
                     "%s: signature algorithm %s is not supported; a minisign secret key starts "
                     "with \"Ed\" (Ed25519)\n",
                     where, par__ms_alg_str(bin, a));
        rc = PAR_E_INVALID_ARGUMENT;
    } else if (memcmp(bin + SK_CHKALG, "B2", 2) != 0) {
        par_buf_errf(err,
                     "%s: checksum algorithm %s is not supported; minisign secret keys use \"B2\" "
                     "(BLAKE2b)\n",
                     where, par__ms_alg_str(bin + SK_CHKALG, a));
        rc = PAR_E_INVALID_ARGUMENT;
    } else if (memcmp(bin + SK_KDF, "Sc", 2) == 0) {
        *encrypted = 1;
    } else if (bin[SK_KDF] == 0 && bin[SK_KDF + 1] == 0) {
        *encrypted = 0;
    } else {
        par_buf_errf(err,
                     "%s: key derivation %s is not supported; minisign secret keys use \"Sc\" "
                     "(scrypt) or none (two zero bytes)\n",
                     where, par__ms_alg_str(bin + SK_KDF, a));
        rc = PAR_E_INVALID_ARGUMENT;
    }
    if (rc != PAR_OK)
        sodium_memzero(bin, SK_BYTES);
    return rc;
}

int par_ms_seckey_is_encrypted(const char *text, size_t len)
{
    if (par__ms_ensure_sodium(NULL) != PAR_OK)
        return -PAR_E_INTERNAL;
    uint8_t bin[SK_BYTES];
    char where[64];
    int enc = 0;
    int rc = seckey_decode(text, len, bin, &enc, where, NULL);
    sodium_memzero(bin, sizeof(bin));
    return rc == PAR_OK ? enc : -rc;
}

int par_ms_seckey_load(const char *text, size_t len, const char *password, par_ms_seckey_t *out,
                       par_buf_t *err)
{
    sodium_memzero(out, sizeof(*out));
    int rc = par__ms_ensure_sodium(err);
    if (rc != PAR_OK)
        return rc;
    uint8_t bin[SK_BYTES], stream[SK_SECRET_BYTES], chk[32];
    uint8_t seed_pk[32], seed_sk[64];
    char where[64];
    int enc = 0;
    rc = seckey_decode(text, len, bin, &enc, where, err);
    if (rc != PAR_OK)
        return rc;
    if (enc) {
        uint64_t ops = load_le64(bin + SK_OPS), mem = load_le64(bin + SK_MEM);
        if (password == NULL) {
            par_buf_errf(err, "%s: the key is encrypted and no password was given\n", where);
            rc = PAR_E_INVALID_ARGUMENT;
            goto out;
        }
        if (ops > OPSLIMIT_DEFAULT || mem > MEMLIMIT_DEFAULT) {
            par_buf_errf(err,
                         "%s: the key derivation asks for opslimit %" PRIu64
                         " and memlimit %" PRIu64
                         " bytes, more than minisign ever uses (%u, %u): refusing a key file that "
                         "could exhaust the machine\n",
                         where, ops, mem, OPSLIMIT_DEFAULT, MEMLIMIT_DEFAULT);
            rc = PAR_E_INVALID_ARGUMENT;
            goto out;
        }
        if (crypto_pwhash_scryptsalsa208sha256(stream, sizeof(stream), password, strlen(password),
                                               bin + SK_SALT, ops, (size_t)mem) != 0) {
            par_buf_errf(err,
                         "%s: the key derivation (scrypt, %" PRIu64 " bytes of memory) failed: not "
                         "enough memory\n",
                         where, mem);
            rc = PAR_E_NO_MEMORY;
            goto out;
        }
        for (size_t i = 0; i < sizeof(stream); i++)
            bin[SK_KEYNUM + i] ^= stream[i];
    }
    seckey_checksum(bin, chk);
    if (enc && sodium_memcmp(chk, bin + SK_CHK, 32) != 0) {
        par_buf_errf(err,
                     "%s: wrong password or corrupt secret key (the checksum does not match after "
                     "decryption)\n",
                     where);
        rc = PAR_E_INVALID_ARGUMENT;
        goto out;
    }
    /* minisign writes an all-zero checksum for unencrypted keys and never checks it */
    if (!enc && !sodium_is_zero(bin + SK_CHK, 32) && sodium_memcmp(chk, bin + SK_CHK, 32) != 0) {
        par_buf_errf(err, "%s: corrupt secret key (its checksum does not match)\n", where);
        rc = PAR_E_INVALID_ARGUMENT;
        goto out;
    }
    crypto_sign_seed_keypair(seed_pk, seed_sk, bin + SK_SK);
    if (sodium_memcmp(seed_pk, bin + SK_SK + 32, 32) != 0) {
        par_buf_errf(err, "%s: corrupt secret key (its public half does not match its seed)\n",
                     where);
        rc = PAR_E_INVALID_ARGUMENT;
        goto out;
    }
    memcpy(out->keynum, bin + SK_KEYNUM, PAR_MS_KEYNUM_BYTES);
    memcpy(out->sk, bin + SK_SK, 64);
    par__ms_key_id(out->keynum, out->id);
out:
    sodium_memzero(bin, sizeof(bin));
    sodium_memzero(stream, sizeof(stream));
    sodium_memzero(chk, sizeof(chk));
    sodium_memzero(seed_sk, sizeof(seed_sk));
    if (rc != PAR_OK)
        sodium_memzero(out, sizeof(*out));
    return rc;
}

/* ---- key generation -------------------------------------------------------------- */

/* Refuses a comment that would break the line structure or that minisign
 * would not read back whole. */
static int check_comment(const char *c, size_t max, const char *what, par_buf_t *err)
{
    size_t n = strcspn(c, "\r\n");
    if (c[n] != '\0') {
        par_buf_errf(err, "the %s holds a line break (at byte %zu); it must be one line\n", what,
                     n + 1);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (n > max) {
        par_buf_errf(err, "the %s is %zu bytes; minisign reads at most %zu\n", what, n, max);
        return PAR_E_INVALID_ARGUMENT;
    }
    return PAR_OK;
}

/* The comment and password of a new key pair: what minisign can read back. */
static int keygen_check_opts(const par_ms_keygen_opts_t *opts, par_buf_t *err)
{
    int rc;
    if (opts->comment &&
        (rc = check_comment(opts->comment, PAR_MS_UNTRUSTED_COMMENT_MAX, "comment", err)) != PAR_OK)
        return rc;
    if (opts->password) {
        size_t n = strlen(opts->password);
        if (strcspn(opts->password, "\r\n") != n) {
            par_buf_errf(err,
                         "the password holds a line break; minisign reads passwords one line at a "
                         "time and could never use it\n");
            return PAR_E_INVALID_ARGUMENT;
        }
        if (n > PAR_MS_PASSWORD_MAX) {
            par_buf_errf(err, "the password is %zu bytes; minisign reads at most %d\n", n,
                         PAR_MS_PASSWORD_MAX);
            return PAR_E_INVALID_ARGUMENT;
        }
    }
    return PAR_OK;
}

int par_ms_keygen(const par_ms_keygen_opts_t *opts, par_buf_t *pub_text, par_buf_t *sec_text,
                  par_ms_pubkey_t *pk, par_buf_t *err)
{
    static const par_ms_keygen_opts_t defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    int rc = par__ms_ensure_sodium(err);
    if (rc != PAR_OK)
        return rc;
    if ((rc = keygen_check_opts(opts, err)) != PAR_OK)
        return rc;
    unsigned long long ops = opts->opslimit ? opts->opslimit : OPSLIMIT_DEFAULT;
    size_t mem = opts->memlimit ? opts->memlimit : MEMLIMIT_DEFAULT;

    uint8_t bin[SK_BYTES], stream[SK_SECRET_BYTES], pkbin[32];
    char sec_b64[sodium_base64_ENCODED_LEN(SK_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    par_ms_pubkey_t key;
    memset(bin, 0, sizeof(bin));
    memcpy(bin, "Ed", 2);
    memcpy(bin + SK_CHKALG, "B2", 2);
    randombytes_buf(bin + SK_KEYNUM, PAR_MS_KEYNUM_BYTES);
    crypto_sign_keypair(pkbin, bin + SK_SK);
    seckey_checksum(bin, bin + SK_CHK);
    memcpy(key.keynum, bin + SK_KEYNUM, PAR_MS_KEYNUM_BYTES);
    memcpy(key.pk, pkbin, 32);
    par__ms_key_id(key.keynum, key.id);
    if (opts->password) {
        memcpy(bin + SK_KDF, "Sc", 2);
        randombytes_buf(bin + SK_SALT, 32);
        store_le64(bin + SK_OPS, ops);
        store_le64(bin + SK_MEM, mem);
        if (crypto_pwhash_scryptsalsa208sha256(stream, sizeof(stream), opts->password,
                                               strlen(opts->password), bin + SK_SALT, ops,
                                               mem) != 0) {
            par_buf_errf(err,
                         "the key derivation (scrypt, %zu bytes of memory) failed: not enough "
                         "memory\n",
                         mem);
            rc = PAR_E_NO_MEMORY;
            goto out;
        }
        for (size_t i = 0; i < sizeof(stream); i++)
            bin[SK_KEYNUM + i] ^= stream[i];
    }
    sodium_bin2base64(sec_b64, sizeof(sec_b64), bin, sizeof(bin), sodium_base64_VARIANT_ORIGINAL);

    /* Reserve first so that no append reallocates (and leaves a copy of the
     * secret key behind in freed memory). */
    static const char sec_comment_enc[] = UNTRUSTED_PREFIX "minisign encrypted secret key\n";
    static const char sec_comment_plain[] = UNTRUSTED_PREFIX "minisign unencrypted secret key\n";
    const char *sc = opts->password ? sec_comment_enc : sec_comment_plain;
    if ((rc = par_buf_reserve(sec_text, strlen(sc) + sizeof(sec_b64) + 1)) != PAR_OK) {
        par_buf_errf(err, "out of memory for the secret key text\n");
        goto out;
    }
    par_buf_appends(sec_text, sc);
    par_buf_appends(sec_text, sec_b64);
    par_buf_appends(sec_text, "\n");

    char pub_b64[57];
    par_ms_pubkey_base64(&key, pub_b64);
    if (opts->comment)
        rc = par_buf_appendf(pub_text, UNTRUSTED_PREFIX "%s\n%s\n", opts->comment, pub_b64);
    else
        rc = par_buf_appendf(pub_text, UNTRUSTED_PREFIX "minisign public key %s\n%s\n", key.id,
                             pub_b64);
    if (rc != PAR_OK) {
        par_buf_errf(err, "out of memory for the public key text\n");
        goto out;
    }
    if (pk)
        *pk = key;
out:
    sodium_memzero(bin, sizeof(bin));
    sodium_memzero(stream, sizeof(stream));
    sodium_memzero(sec_b64, sizeof(sec_b64));
    return rc;
}

/* ---- signing --------------------------------------------------------------------- */

/* The trusted comment a signature will carry, NUL-terminated in *tc (which
 * the caller frees on success): the one given, or minisign's default. */
static int trusted_comment(const par_ms_sign_opts_t *opts, int legacy, par_buf_t *tc,
                           par_buf_t *err)
{
    int rc;
    par_buf_init(tc, 0);
    if (opts->trusted_comment && opts->trusted_comment[0]) {
        rc = par_buf_appends(tc, opts->trusted_comment);
    } else {
        /* minisign's default */
        const char *base = NULL;
        if (opts->file_name) {
            base = strrchr(opts->file_name, '/');
            base = base ? base + 1 : opts->file_name;
        }
        rc = par_buf_appendf(tc, "timestamp:%lu%s%s%s", (unsigned long)time(NULL),
                             base ? "\tfile:" : "", base ? base : "", legacy ? "" : "\thashed");
    }
    if (rc == PAR_OK)
        rc = par_buf_terminate(tc);
    if (rc != PAR_OK) {
        par_buf_errf(err, "out of memory for the trusted comment\n");
        par_buf_free(tc);
        return PAR_E_NO_MEMORY;
    }
    rc = check_comment(tc->data, PAR_MS_TRUSTED_COMMENT_MAX,
                       opts->trusted_comment && opts->trusted_comment[0]
                           ? "trusted comment"
                           : "trusted comment (made from the file name; pass one explicitly)",
                       err);
    if (rc != PAR_OK)
        par_buf_free(tc);
    return rc;
}

int par_ms_sign(const par_ms_seckey_t *sk, const void *msg, size_t len, const uint8_t *prehash,
                const par_ms_sign_opts_t *opts, par_buf_t *out, par_buf_t *err)
{
    static const par_ms_sign_opts_t defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    int rc = par__ms_ensure_sodium(err);
    if (rc != PAR_OK)
        return rc;
    const int legacy = opts->legacy != 0;
    if (msg == NULL && len > 0 && (legacy || prehash == NULL)) {
        par_buf_errf(
            err, legacy ? "a legacy (\"Ed\") signature signs the whole message, which was not "
                          "given\n"
                        : "nothing to sign: neither the message nor its BLAKE2b-512 was given\n");
        return PAR_E_INVALID_ARGUMENT;
    }
    const char *uc =
        opts->untrusted_comment ? opts->untrusted_comment : "signature from minisign secret key";
    if ((rc = check_comment(uc, PAR_MS_UNTRUSTED_COMMENT_MAX, "untrusted comment", err)) != PAR_OK)
        return rc;

    par_buf_t tc;
    if ((rc = trusted_comment(opts, legacy, &tc, err)) != PAR_OK)
        return rc;

    uint8_t sigbin[SIG_BYTES], global[64], h[64];
    memcpy(sigbin, legacy ? "Ed" : "ED", 2);
    memcpy(sigbin + 2, sk->keynum, PAR_MS_KEYNUM_BYTES);
    uint8_t *sig = sigbin + 2 + PAR_MS_KEYNUM_BYTES;
    if (legacy) {
        crypto_sign_detached(sig, NULL, msg ? msg : (const void *)"", len, sk->sk);
    } else {
        if (prehash == NULL) {
            crypto_generichash(h, sizeof(h), msg ? msg : (const void *)"", len, NULL, 0);
            prehash = h;
        }
        crypto_sign_detached(sig, NULL, prehash, 64, sk->sk);
    }
    size_t glen;
    uint8_t *g = par__ms_global_message(sig, tc.data, &glen);
    if (g == NULL) {
        par_buf_errf(err, "out of memory for the trusted comment\n");
        par_buf_free(&tc);
        return PAR_E_NO_MEMORY;
    }
    crypto_sign_detached(global, NULL, g, glen, sk->sk);
    /* as minisign does: never hand out a signature that would not verify */
    int bad = crypto_sign_verify_detached(global, g, glen, sk->sk + 32) != 0;
    free(g);
    if (bad) {
        par_buf_errf(
            err,
            "secret key %s: the signature made with it does not verify with its own public "
            "half: the key is corrupt\n",
            sk->id);
        par_buf_free(&tc);
        return PAR_E_INVALID_ARGUMENT;
    }
    char sig_b64[sodium_base64_ENCODED_LEN(SIG_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    char global_b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(sig_b64, sizeof(sig_b64), sigbin, sizeof(sigbin),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(global_b64, sizeof(global_b64), global, sizeof(global),
                      sodium_base64_VARIANT_ORIGINAL);
    rc = par_buf_appendf(out, UNTRUSTED_PREFIX "%s\n%s\n" TRUSTED_PREFIX "%s\n%s\n", uc, sig_b64,
                         tc.data, global_b64);
    par_buf_free(&tc);
    if (rc != PAR_OK) {
        par_buf_errf(err, "out of memory for the signature text\n");
        return rc;
    }
    return PAR_OK;
}
