/*
 * fuzz/fuzz_minisign.c — libFuzzer harness for pkg/minisign.c: signature
 * files arrive with packages (registry downloads, deploy requests) and public
 * keys from configuration; both are parsed before anything is trusted.
 *
 * Input: PUBKEY_TEXT \0 SIGNATURE_TEXT \0 MESSAGE \0 SECKEY_TEXT (missing
 * parts are empty). Checks: a parsed public key prints back to a base64 form
 * that parses to the same key; a parsed trusted comment holds no NUL or LF;
 * verification answers one of its documented statuses, agrees with itself
 * when given the prehash instead of the message, and a signature that
 * verifies stops verifying when the message changes; an unencrypted secret key
 * that loads signs the message into a signature file that parses and verifies
 * with its public key. Encrypted secret keys are only recognised, never
 * decrypted (their scrypt parameters would let an input pick the cost).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "par/par.h"
#include "pkg/minisign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct part {
    const char *p;
    size_t n;
} part_t;

static void split(const uint8_t *data, size_t size, part_t parts[4])
{
    const char *p = (const char *)data, *end = p + size;
    for (int i = 0; i < 4; i++) {
        const char *z = i < 3 ? memchr(p, '\0', (size_t)(end - p)) : NULL;
        parts[i].p = p;
        parts[i].n = (size_t)((z ? z : end) - p);
        p = z ? z + 1 : end;
    }
}

static void check_pubkey(const par_ms_pubkey_t *pk)
{
    char b64[57];
    par_ms_pubkey_t again;
    par_ms_pubkey_base64(pk, b64);
    FUZZ_CHECK(par_ms_pubkey_parse(b64, strlen(b64), &again, NULL) == PAR_OK, "%s", b64);
    FUZZ_CHECK(memcmp(again.pk, pk->pk, 32) == 0 && memcmp(again.keynum, pk->keynum, 8) == 0 &&
                   strcmp(again.id, pk->id) == 0,
               "%s reads back as another key", b64);
}

static void check_verify(const par_ms_pubkey_t *pk, const par_ms_sig_t *sig, const part_t *msg)
{
    int rc = par_ms_verify(pk, sig, msg->p, msg->n, NULL, NULL);
    FUZZ_CHECK(rc == PAR_OK || rc == PAR_E_UNTRUSTED_SIGNER || rc == PAR_E_SIGNATURE_INVALID ||
                   rc == PAR_E_INVALID_ARGUMENT,
               "verify: %d", rc);
    if (sig->prehashed) {
        uint8_t h[64];
        par_ms_hash_t st;
        par_ms_hash_init(&st);
        par_ms_hash_update(&st, msg->p, msg->n);
        par_ms_hash_final(&st, h);
        int rc2 = par_ms_verify(pk, sig, NULL, 0, h, NULL);
        FUZZ_CHECK(rc2 == rc, "verify with the prehash %d, with the message %d", rc2, rc);
    }
    if (rc == PAR_OK) {
        char *other = malloc(msg->n + 1);
        if (other == NULL)
            return;
        memcpy(other, msg->p, msg->n);
        other[msg->n] = 'x';
        FUZZ_CHECK(par_ms_verify(pk, sig, other, msg->n + 1, NULL, NULL) != PAR_OK,
                   "a signature verifies a longer message");
        free(other);
    }
}

static void check_sign(const part_t *sec, const part_t *msg)
{
    if (par_ms_seckey_is_encrypted(sec->p, sec->n) != 0)
        return;
    par_ms_seckey_t sk;
    if (par_ms_seckey_load(sec->p, sec->n, NULL, &sk, NULL) != PAR_OK)
        return;
    par_ms_pubkey_t pk;
    par_ms_seckey_pubkey(&sk, &pk);
    par_buf_t out;
    par_buf_init(&out, 0);
    par_ms_sign_opts_t o = {msg->n & 1, "t", "f", NULL};
    int rc = par_ms_sign(&sk, msg->p, msg->n, NULL, &o, &out, NULL);
    FUZZ_CHECK(rc == PAR_OK, "sign: %d", rc);
    par_ms_sig_t sig;
    FUZZ_CHECK(par_ms_sig_parse(out.data, out.len, &sig, NULL) == PAR_OK, "own signature");
    FUZZ_CHECK(par_ms_verify(&pk, &sig, msg->p, msg->n, NULL, NULL) == PAR_OK,
               "own signature does not verify");
    par_ms_sig_free(&sig);
    par_buf_free(&out);
    par_ms_seckey_wipe(&sk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    part_t parts[4];
    split(data, size, parts);
    par_ms_pubkey_t pk;
    int pk_ok = par_ms_pubkey_parse(parts[0].p, parts[0].n, &pk, NULL) == PAR_OK;
    if (pk_ok)
        check_pubkey(&pk);
    par_buf_t err;
    par_buf_init(&err, 0);
    par_ms_sig_t sig;
    if (par_ms_sig_parse(parts[1].p, parts[1].n, &sig, &err) == PAR_OK) {
        FUZZ_CHECK(sig.trusted_comment && !strchr(sig.trusted_comment, '\n'), "comment");
        if (pk_ok)
            check_verify(&pk, &sig, &parts[2]);
        par_ms_sig_free(&sig);
    } else {
        FUZZ_CHECK(err.len > 0, "a refused signature without a reason");
    }
    par_buf_free(&err);
    check_sign(&parts[3], &parts[2]);
    return 0;
}
