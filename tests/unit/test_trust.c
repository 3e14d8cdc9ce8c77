/*
 * Unit tests for pkg/trust.c: name pins (which keys may sign which package
 * names). Keys are generated with par_ms_keygen; pins are checked by
 * par_trust_check_name exactly as a deploy does after reading agent.yaml.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "pkg/trust.h"

/* Three keys: A pinned to acme-*, B pinned to acme-* and tools, C unpinned. */
static char b64[3][57];
static par_trust_t trust;

static const char *const pins_a[] = {"acme-*", NULL};
static const char *const pins_b[] = {"acme-*", "tools", NULL};

static int setup(void **state)
{
    par_trusted_key_t keys[3];
    for (int i = 0; i < 3; i++) {
        par_ms_keygen_opts_t o = {0};
        par_buf_t pub, sec, err;
        par_buf_init(&pub, 0), par_buf_init(&sec, 0), par_buf_init(&err, 0);
        par_ms_pubkey_t pk;
        if (par_ms_keygen(&o, &pub, &sec, &pk, &err) != PAR_OK)
            return -1;
        par_ms_pubkey_base64(&pk, b64[i]);
        par_buf_free(&pub), par_buf_free(&sec), par_buf_free(&err);
        keys[i].key = b64[i];
    }
    keys[0].packages = pins_a;
    keys[1].packages = pins_b;
    keys[2].packages = NULL;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_trust_init(&trust, keys, 3, 1, &err);
    par_buf_free(&err);
    return rc == PAR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    par_trust_free(&trust);
    return 0;
}

static const char *id(int i)
{
    return trust.keys[i].pk.id;
}

/* Checks one (signer, name) pair; on refusal the message must hold each of
 * the NULL-terminated `words`. */
static void expect(const char *signer, const char *name, int want, ...)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_trust_check_name(&trust, signer, name, &err);
    if (rc != want)
        fail_msg("%s signing %s: got %s, want %s (%.*s)", signer ? signer : "nobody", name,
                 par_status_name(rc), par_status_name(want), (int)err.len, err.data);
    va_list ap;
    va_start(ap, want);
    for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
        if (err.data == NULL || strstr(err.data, w) == NULL)
            fail_msg("message lacks '%s': %.*s", w, (int)err.len, err.data);
    va_end(ap);
    if (want == PAR_OK)
        assert_int_equal(err.len, 0);
    par_buf_free(&err);
}

static void pinned_name_needs_a_pinned_key(void **state)
{
    expect(id(0), "acme-tools", PAR_OK, NULL);
    expect(id(1), "acme-tools", PAR_OK, NULL); /* pinned to the same pattern */
    /* the unpinned key C may not sign a name A and B protect */
    expect(id(2), "acme-tools", PAR_E_UNTRUSTED_SIGNER, "acme-*", id(2), id(0), id(1), "acme-tools",
           NULL);
}

static void pattern_pinned_to_one_key_only(void **state)
{
    expect(id(1), "tools", PAR_OK, NULL);
    expect(id(0), "tools", PAR_E_UNTRUSTED_SIGNER, "'tools'", id(0), NULL);
    expect(id(2), "tools", PAR_E_UNTRUSTED_SIGNER, "tools", id(1), id(2), NULL);
}

static void unpinned_name_takes_unpinned_keys_only(void **state)
{
    expect(id(2), "echo", PAR_OK, NULL);
    /* a pinned key was trusted for its patterns, not for every other name */
    expect(id(0), "echo", PAR_E_UNTRUSTED_SIGNER, id(0), "acme-*", "'echo'", NULL);
    expect(id(1), "echo", PAR_E_UNTRUSTED_SIGNER, "acme-*, tools", NULL);
}

static void unsigned_packages(void **state)
{
    /* whether unsigned packages deploy at all is require_signatures' rule ... */
    expect("", "echo", PAR_OK, NULL);
    expect(NULL, "echo", PAR_OK, NULL);
    /* ... but a pinned name is never unsigned */
    expect("", "acme-x", PAR_E_SIGNATURE_MISSING, "acme-*", id(0), "not signed", NULL);
}

static void unknown_signer(void **state)
{
    expect("0123456789ABCDEF", "echo", PAR_E_UNTRUSTED_SIGNER, "0123456789ABCDEF", NULL);
}

static void no_pins_no_restriction(void **state)
{
    par_trust_t t;
    par_trusted_key_t k = {.key = b64[2], .packages = NULL};
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_trust_init(&t, &k, 1, 0, &err), PAR_OK);
    assert_int_equal(par_trust_check_name(&t, t.keys[0].pk.id, "acme-x", &err), PAR_OK);
    assert_int_equal(par_trust_check_name(&t, "", "acme-x", &err), PAR_OK);
    assert_int_equal(err.len, 0);
    par_trust_free(&t);
    par_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pinned_name_needs_a_pinned_key),
        cmocka_unit_test(pattern_pinned_to_one_key_only),
        cmocka_unit_test(unpinned_name_takes_unpinned_keys_only),
        cmocka_unit_test(unsigned_packages),
        cmocka_unit_test(unknown_signer),
        cmocka_unit_test(no_pins_no_restriction),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
