/*
 * pkg/minisign.c — minisign keys and signatures (see minisign.h and
 * docs/internals/minisign.md): the text formats, public keys, parsing and
 * verifying signatures. Secret keys, key generation and signing are in
 * minisign_seckey.c; what the two share is in minisign_internal.h.
 *
 * Layouts (all binary fields are base64, original alphabet, padded):
 *   public key  "Ed" keynum(8) pk(32)                                    42 bytes
 *   secret key  "Ed" kdf(2: "Sc" or 00 00) "B2" salt(32) opslimit(8 LE)
 *               memlimit(8 LE) [keynum(8) sk(64) checksum(32)]          158 bytes
 *               the bracketed 104 bytes are XORed with scrypt(password)
 *               when kdf is "Sc"; checksum = BLAKE2b-256("Ed" keynum sk)
 *   signature   "Ed" (over the message) or "ED" (over its BLAKE2b-512)
 *               keynum(8) sig(64)                                        74 bytes
 *   global sig  Ed25519 over sig(64) || trusted comment bytes            64 bytes
 *
 * What minisign 0.11 does that is easy to get wrong, and what PAR does:
 * - An unencrypted secret key written by `minisign -G -W` carries an
 *   all-zero checksum, and minisign never checks the checksum of an
 *   unencrypted key. PAR writes the real checksum (minisign ignores it),
 *   accepts an all-zero one, and checks any other; in every case it also
 *   re-derives the public half from the seed, which catches a corrupt key.
 * - minisign 0.11 prints key ids without leading zeros ("%llX"); PAR always
 *   prints 16 digits, as later minisign versions do.
 * - Only CR and LF are trimmed from the end of a line: trailing spaces of a
 *   trusted comment are signed, so they are kept.
 * - minisign measures the trusted comment with strlen(): a NUL byte in it
 *   would make minisign and PAR verify different bytes, so it is refused.
 * - The KDF parameters of a secret key come from the file; PAR refuses more
 *   than minisign ever writes (OPSLIMIT/MEMLIMIT_SENSITIVE), so a hostile key
 *   file cannot make it allocate without bound.
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

/* ---- helpers --------------------------------------------------------------------- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc;

static void sodium_init_once(void)
{
    sodium_rc = sodium_init();
}

int par__ms_ensure_sodium(par_buf_t *err)
{
    pthread_once(&sodium_once, sodium_init_once);
    if (sodium_rc < 0) {
        par_buf_errf(err, "libsodium could not be initialised (sodium_init failed): check that the "
                          "system has a working random source (/dev/urandom or getrandom)\n");
        return PAR_E_INTERNAL;
    }
    return PAR_OK;
}

/* The key id: keynum read as a little-endian integer, 16 hex digits. */
void par__ms_key_id(const uint8_t keynum[PAR_MS_KEYNUM_BYTES], char out[PAR_MS_ID_CHARS + 1])
{
    snprintf(out, PAR_MS_ID_CHARS + 1, "%016" PRIX64, load_le64(keynum));
}

/* An algorithm tag for a message: "Ed" when printable, else its hex bytes. */
const char *par__ms_alg_str(const uint8_t a[2], char out[16])
{
    if (a[0] > 0x20 && a[0] < 0x7f && a[1] > 0x20 && a[1] < 0x7f && a[0] != '"' && a[1] != '"')
        snprintf(out, 16, "\"%c%c\"", a[0], a[1]);
    else
        snprintf(out, 16, "0x%02x%02x", a[0], a[1]);
    return out;
}

/* The next line of text[*pos..len), without its LF and trailing CRs (minisign
 * trims both). Returns 0 at the end of the text. */
static int next_line(const char *text, size_t len, size_t *pos, span_t *line)
{
    if (*pos >= len)
        return 0;
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - s) : len - *pos;
    *pos += n + (nl != NULL);
    while (n > 0 && s[n - 1] == '\r')
        n--;
    line->p = s;
    line->n = n;
    return 1;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static span_t trim(span_t s)
{
    while (s.n > 0 && is_blank(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_blank(s.p[s.n - 1]))
        s.n--;
    return s;
}

static int starts_with(span_t s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.n >= n && memcmp(s.p, prefix, n) == 0;
}

static int is_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

/* Decodes one base64 line that must hold exactly `want` bytes. `where` names
 * the line in messages ("signature file, line 2"), `what` the object ("a
 * signature"). The scratch buffer is wiped: it may hold a secret key. */
int par__ms_b64_line(span_t s, uint8_t *out, size_t want, const char *where, const char *what,
                     par_buf_t *err)
{
    s = trim(s);
    size_t want_chars = sodium_base64_ENCODED_LEN(want, sodium_base64_VARIANT_ORIGINAL) - 1;
    if (s.n == 0) {
        par_buf_errf(err, "%s: empty where %s in base64 (%zu characters) was expected\n", where,
                     what, want_chars);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (s.n > B64_LINE_MAX) {
        par_buf_errf(err, "%s: %zu characters where %s in base64 (%zu characters) was expected\n",
                     where, s.n, what, want_chars);
        return PAR_E_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < s.n; i++) {
        if (!is_b64_char(s.p[i])) {
            unsigned char c = (unsigned char)s.p[i];
            if (c > 0x20 && c < 0x7f)
                par_buf_errf(err,
                             "%s: not valid base64: character %zu is '%c'; %s is %zu base64 "
                             "characters (A-Z a-z 0-9 + / =)\n",
                             where, i + 1, c, what, want_chars);
            else
                par_buf_errf(err,
                             "%s: not valid base64: character %zu is byte 0x%02x; %s is %zu base64 "
                             "characters (A-Z a-z 0-9 + / =)\n",
                             where, i + 1, c, what, want_chars);
            return PAR_E_INVALID_ARGUMENT;
        }
    }
    uint8_t tmp[B64_LINE_MAX];
    assert(want <= sizeof(tmp)); /* callers ask for a key or signature, far below the cap */
    size_t got = 0;
    int rc = sodium_base642bin(tmp, sizeof(tmp), s.p, s.n, NULL, &got, NULL,
                               sodium_base64_VARIANT_ORIGINAL);
    if (rc != 0) {
        par_buf_errf(err,
                     "%s: not valid base64 (bad padding or length, %zu characters): the line is "
                     "truncated or altered; %s is %zu base64 characters\n",
                     where, s.n, what, want_chars);
        sodium_memzero(tmp, sizeof(tmp));
        return PAR_E_INVALID_ARGUMENT;
    }
    if (got != want) {
        par_buf_errf(err,
                     "%s: decodes to %zu bytes, but %s has %zu (%zu base64 characters): truncated, "
                     "or not what it should be\n",
                     where, got, what, want, want_chars);
        sodium_memzero(tmp, sizeof(tmp));
        return PAR_E_INVALID_ARGUMENT;
    }
    memcpy(out, tmp, want);
    sodium_memzero(tmp, sizeof(tmp));
    return PAR_OK;
}

/* The base64 line of a key file: either the whole text is the base64 string
 * (surrounded by white space), or an "untrusted comment:" line comes first.
 * Blank lines around are ignored; any other line is an error. `kind` is
 * "public key" or "secret key". On success *b64 is the line and *where names
 * it for later messages. */
int par__ms_key_line(const char *text, size_t len, const char *kind, span_t *b64, char where[64],
                     par_buf_t *err)
{
    if (len > TEXT_MAX) {
        par_buf_errf(err,
                     "%s: %zu bytes, far more than a minisign key file holds: is this the right "
                     "file?\n",
                     kind, len);
        return PAR_E_INVALID_ARGUMENT;
    }
    size_t pos = 0;
    span_t line;
    int lineno = 0, found = 0, comment_line = 0;
    while (next_line(text, len, &pos, &line)) {
        lineno++;
        span_t t = trim(line);
        if (t.n == 0)
            continue;
        if (!found && !comment_line && starts_with(t, "untrusted comment:")) {
            comment_line = lineno;
            continue;
        }
        if (found && !comment_line) {
            par_buf_errf(
                err,
                "%s, line %d: neither an \"untrusted comment:\" line nor the key; expected "
                "the key in base64 alone, or the text of a key file (an \"untrusted "
                "comment:\" line, then the key)\n",
                kind, found);
            return PAR_E_INVALID_ARGUMENT;
        }
        if (found) {
            par_buf_errf(
                err,
                "%s, line %d: unexpected text after the key (line %d); a key file holds an "
                "\"untrusted comment:\" line and the key in base64\n",
                kind, lineno, found);
            return PAR_E_INVALID_ARGUMENT;
        }
        found = lineno;
        *b64 = t;
    }
    if (!found) {
        if (comment_line)
            par_buf_errf(err,
                         "%s: nothing after the \"untrusted comment:\" line; the key in base64 "
                         "should follow it\n",
                         kind);
        else
            par_buf_errf(
                err,
                "%s: empty; expected a minisign %s in base64 (\"RW...\") or the text of its "
                "file\n",
                kind, kind);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (comment_line || found > 1)
        snprintf(where, 64, "%s file, line %d", kind, found);
    else
        snprintf(where, 64, "%s", kind);
    return PAR_OK;
}

/* ---- public keys ----------------------------------------------------------------- */

int par_ms_pubkey_parse(const char *text, size_t len, par_ms_pubkey_t *out, par_buf_t *err)
{
    memset(out, 0, sizeof(*out));
    int rc = par__ms_ensure_sodium(err);
    if (rc != PAR_OK)
        return rc;
    span_t b64;
    char where[64];
    rc = par__ms_key_line(text, len, "public key", &b64, where, err);
    if (rc != PAR_OK)
        return rc;
    uint8_t bin[PK_BYTES];
    rc = par__ms_b64_line(b64, bin, sizeof(bin), where, "a minisign public key", err);
    if (rc != PAR_OK)
        return rc;
    if (memcmp(bin, "Ed", 2) != 0) {
        char a[16];
        par_buf_errf(err,
                     "%s: signature algorithm %s is not supported; a minisign public key starts "
                     "with \"Ed\" (Ed25519; \"RW\" in base64)\n",
                     where, par__ms_alg_str(bin, a));
        return PAR_E_INVALID_ARGUMENT;
    }
    memcpy(out->keynum, bin + 2, PAR_MS_KEYNUM_BYTES);
    memcpy(out->pk, bin + 2 + PAR_MS_KEYNUM_BYTES, 32);
    par__ms_key_id(out->keynum, out->id);
    return PAR_OK;
}

void par_ms_pubkey_base64(const par_ms_pubkey_t *pk, char out[57])
{
    uint8_t bin[PK_BYTES];
    memcpy(bin, "Ed", 2);
    memcpy(bin + 2, pk->keynum, PAR_MS_KEYNUM_BYTES);
    memcpy(bin + 2 + PAR_MS_KEYNUM_BYTES, pk->pk, 32);
    sodium_bin2base64(out, 57, bin, sizeof(bin), sodium_base64_VARIANT_ORIGINAL);
}

/* ---- signatures ------------------------------------------------------------------ */

void par_ms_sig_free(par_ms_sig_t *sig)
{
    if (sig == NULL)
        return;
    free(sig->trusted_comment);
    sig->trusted_comment = NULL;
}

/* The signature's algorithm (line 2): "ED" prehashed or "Ed" legacy. */
static int sig_algorithm(const uint8_t bin[SIG_BYTES], par_ms_sig_t *out, par_buf_t *err)
{
    if (memcmp(bin, "ED", 2) == 0) {
        out->prehashed = 1;
    } else if (memcmp(bin, "Ed", 2) == 0) {
        out->prehashed = 0;
    } else {
        char a[16];
        par_buf_errf(err,
                     "signature file, line 2: signature algorithm %s is not supported; expected "
                     "\"ED\" (prehashed, minisign's default) or \"Ed\" (legacy)\n",
                     par__ms_alg_str(bin, a));
        return PAR_E_INVALID_ARGUMENT;
    }
    return PAR_OK;
}

/* The trusted comment of line 3 into *tc: after its prefix, no NUL byte, at
 * most PAR_MS_TRUSTED_COMMENT_MAX bytes. */
static int sig_trusted_comment(span_t line, const char *layout, span_t *tc, par_buf_t *err)
{
    if (!starts_with(line, TRUSTED_PREFIX)) {
        par_buf_errf(err,
                     "signature file, line 3: does not start with \"" TRUSTED_PREFIX "\"; %s\n",
                     layout);
        return PAR_E_INVALID_ARGUMENT;
    }
    tc->p = line.p + strlen(TRUSTED_PREFIX);
    tc->n = line.n - strlen(TRUSTED_PREFIX);
    if (memchr(tc->p, '\0', tc->n) != NULL) {
        par_buf_errf(err,
                     "signature file, line 3: the trusted comment holds a NUL byte (at byte %zu of "
                     "the comment); minisign would verify only the part before it, so the "
                     "signature is refused\n",
                     (size_t)((const char *)memchr(tc->p, '\0', tc->n) - tc->p) + 1);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (tc->n > PAR_MS_TRUSTED_COMMENT_MAX) {
        par_buf_errf(err,
                     "signature file, line 3: the trusted comment is %zu bytes; minisign reads at "
                     "most %d\n",
                     tc->n, PAR_MS_TRUSTED_COMMENT_MAX);
        return PAR_E_INVALID_ARGUMENT;
    }
    return PAR_OK;
}

int par_ms_sig_parse(const char *text, size_t len, par_ms_sig_t *out, par_buf_t *err)
{
    static const char *const layout =
        "a minisign signature file has 4 lines: \"untrusted comment: ...\", the signature in "
        "base64, \"trusted comment: ...\", the global signature in base64";
    memset(out, 0, sizeof(*out));
    int rc = par__ms_ensure_sodium(err);
    if (rc != PAR_OK)
        return rc;
    if (len > TEXT_MAX) {
        par_buf_errf(err, "signature file: %zu bytes, far more than a signature file holds (%s)\n",
                     len, layout);
        return PAR_E_INVALID_ARGUMENT;
    }
    span_t lines[4];
    size_t pos = 0;
    int n = 0;
    while (n < 4 && next_line(text, len, &pos, &lines[n]))
        n++;
    if (n < 4) {
        if (n == 0)
            par_buf_errf(err, "signature file: empty; %s\n", layout);
        else
            par_buf_errf(err, "signature file: ends after line %d; %s\n", n, layout);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (!starts_with(lines[0], UNTRUSTED_PREFIX)) {
        par_buf_errf(err,
                     "signature file, line 1: does not start with \"" UNTRUSTED_PREFIX
                     "\": is this "
                     "a minisign signature (.minisig) file? %s\n",
                     layout);
        return PAR_E_INVALID_ARGUMENT;
    }
    uint8_t bin[SIG_BYTES];
    rc = par__ms_b64_line(lines[1], bin, sizeof(bin), "signature file, line 2",
                          "a minisign signature", err);
    if (rc != PAR_OK)
        return rc;
    if ((rc = sig_algorithm(bin, out, err)) != PAR_OK)
        return rc;
    span_t tc;
    if ((rc = sig_trusted_comment(lines[2], layout, &tc, err)) != PAR_OK)
        return rc;
    rc = par__ms_b64_line(lines[3], out->global_sig, sizeof(out->global_sig),
                          "signature file, line 4", "a global signature (of the trusted comment)",
                          err);
    if (rc != PAR_OK)
        return rc;
    span_t extra;
    int lineno = 4;
    while (next_line(text, len, &pos, &extra)) {
        lineno++;
        if (trim(extra).n != 0) {
            par_buf_errf(
                err, "signature file, line %d: unexpected text after the global signature; %s\n",
                lineno, layout);
            return PAR_E_INVALID_ARGUMENT;
        }
    }
    out->trusted_comment = malloc(tc.n + 1);
    if (out->trusted_comment == NULL) {
        par_buf_errf(err, "signature file: out of memory for the trusted comment (%zu bytes)\n",
                     tc.n);
        return PAR_E_NO_MEMORY;
    }
    memcpy(out->trusted_comment, tc.p, tc.n);
    out->trusted_comment[tc.n] = '\0';
    memcpy(out->keynum, bin + 2, PAR_MS_KEYNUM_BYTES);
    memcpy(out->sig, bin + 2 + PAR_MS_KEYNUM_BYTES, 64);
    par__ms_key_id(out->keynum, out->id);
    return PAR_OK;
}

/* ---- hashing --------------------------------------------------------------------- */

void par_ms_hash_init(par_ms_hash_t *h)
{
    par__ms_ensure_sodium(NULL);
    crypto_generichash_init(&h->st, NULL, 0, crypto_generichash_BYTES_MAX);
}

void par_ms_hash_update(par_ms_hash_t *h, const void *data, size_t len)
{
    crypto_generichash_update(&h->st, data, len);
}

void par_ms_hash_final(par_ms_hash_t *h, uint8_t out[64])
{
    crypto_generichash_final(&h->st, out, crypto_generichash_BYTES_MAX);
}

/* ---- verification ---------------------------------------------------------------- */

/* Ed25519 over sig || trusted comment: the global signature's message. */
uint8_t *par__ms_global_message(const uint8_t sig[64], const char *tc, size_t *len)
{
    size_t tlen = strlen(tc);
    uint8_t *m = malloc(64 + tlen);
    if (m == NULL)
        return NULL;
    memcpy(m, sig, 64);
    memcpy(m + 64, tc, tlen);
    *len = 64 + tlen;
    return m;
}

int par_ms_verify(const par_ms_pubkey_t *pk, const par_ms_sig_t *sig, const void *msg, size_t len,
                  const uint8_t *prehash, par_buf_t *err)
{
    int rc = par__ms_ensure_sodium(err);
    if (rc != PAR_OK)
        return rc;
    if (sig->trusted_comment == NULL) {
        par_buf_errf(
            err, "signature: not parsed (no trusted comment); parse it with par_ms_sig_parse\n");
        return PAR_E_INVALID_ARGUMENT;
    }
    if (sodium_memcmp(sig->keynum, pk->keynum, PAR_MS_KEYNUM_BYTES) != 0) {
        par_buf_errf(err,
                     "signed with key id %s, but the trusted public key has key id %s: verify with "
                     "the signer's public key, or trust key %s if you trust its owner\n",
                     sig->id, pk->id, sig->id);
        return PAR_E_UNTRUSTED_SIGNER;
    }
    int bad;
    if (sig->prehashed) {
        uint8_t h[64];
        if (prehash == NULL) {
            if (msg == NULL && len > 0) {
                par_buf_errf(
                    err, "signature: nothing to verify: neither the message nor its BLAKE2b-512 "
                         "was given\n");
                return PAR_E_INVALID_ARGUMENT;
            }
            crypto_generichash(h, sizeof(h), msg, len, NULL, 0);
            prehash = h;
        }
        bad = crypto_sign_verify_detached(sig->sig, prehash, 64, pk->pk) != 0;
    } else {
        if (msg == NULL && len > 0) {
            par_buf_errf(
                err, "signature: a legacy (\"Ed\") signature signs the whole message, which was "
                     "not given (only its hash): verify with the message, or re-sign with a "
                     "prehashed signature (minisign's default)\n");
            return PAR_E_INVALID_ARGUMENT;
        }
        bad = crypto_sign_verify_detached(sig->sig, msg ? msg : (const void *)"", len, pk->pk) != 0;
    }
    if (bad) {
        par_buf_errf(err,
                     "the signature (key id %s) does not match the contents: the file was modified "
                     "after it was signed, or the signature belongs to another file\n",
                     sig->id);
        return PAR_E_SIGNATURE_INVALID;
    }
    size_t glen;
    uint8_t *g = par__ms_global_message(sig->sig, sig->trusted_comment, &glen);
    if (g == NULL) {
        par_buf_errf(err, "signature: out of memory for the trusted comment\n");
        return PAR_E_NO_MEMORY;
    }
    bad = crypto_sign_verify_detached(sig->global_sig, g, glen, pk->pk) != 0;
    free(g);
    if (bad) {
        par_buf_errf(err,
                     "the signature of the trusted comment (global signature, key id %s) does not "
                     "verify: the trusted comment was modified after signing\n",
                     sig->id);
        return PAR_E_SIGNATURE_INVALID;
    }
    return PAR_OK;
}
