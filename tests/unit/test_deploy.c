/*
 * Unit tests for runtime/deploy.c and deploy_acquire.c: the phases of a
 * deploy run one by one over a context, on packages made here in a temporary
 * directory, against a runtime holding only what the phases read (trusted
 * keys, cache directory, limits). Signatures are real minisign signatures
 * from keys made by pkg/minisign.c. No workers are started: activate is left
 * to the end-to-end tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <par/par.h>

#include "pkg/minisign.h"
#include "pkg/trust.h"
#include "runtime/deploy.h"
#include "util/fs.h"

static char dir[64];
static par_runtime_t rt;
static par_ms_seckey_t key, other; /* `key` is trusted, `other` is not */
static char key_b64[57];
static par_buf_t err;
static par_deploy_ctx_t c;
static par_deploy_req_t req;

#define NATIVE "name: a\nruntime: native\nentrypoint: lib/libok.so:f\nmetadata:\n  version: 1.2.3\n"

/* ---- fixtures ----------------------------------------------------------------------- */

static void make_key(par_ms_seckey_t *sk, char b64[57])
{
    par_ms_keygen_opts_t o = {0}; /* no password: no key derivation */
    par_buf_t pub, sec, e;
    par_buf_init(&pub, 0), par_buf_init(&sec, 0), par_buf_init(&e, 0);
    par_ms_pubkey_t pk;
    assert_int_equal(par_ms_keygen(&o, &pub, &sec, &pk, &e), PAR_OK);
    assert_int_equal(par_ms_seckey_load(sec.data, sec.len, NULL, sk, &e), PAR_OK);
    if (b64)
        par_ms_pubkey_base64(&pk, b64);
    par_buf_free(&pub), par_buf_free(&sec), par_buf_free(&e);
}

static void path_of(char *out, size_t cap, const char *rel)
{
    assert_true((size_t)snprintf(out, cap, "%s/%s", dir, rel) < cap);
}

static void put(const char *rel, const void *data, size_t n)
{
    char p[256];
    path_of(p, sizeof(p), rel);
    for (char *s = p + strlen(dir) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        assert_true(mkdir(p, 0755) == 0 || access(p, F_OK) == 0);
        *s = '/';
    }
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void puts_(const char *rel, const char *text)
{
    put(rel, text, strlen(text));
}

/* An ELF shared object header of this machine's kind. */
static void put_elf(const char *rel)
{
    FILE *self = fopen("/proc/self/exe", "rb");
    unsigned char elf[64];
    assert_non_null(self);
    assert_int_equal(fread(elf, 1, sizeof(elf), self), sizeof(elf));
    fclose(self);
    elf[16] = 3, elf[17] = 0; /* ET_DYN */
    put(rel, elf, sizeof(elf));
}

/* Writes a ZIP holding `names`/`texts` (n entries) to `rel`; its bytes in `out`. */
static void put_apkg(const char *rel, const char *const *names, const char *const *texts, size_t n,
                     par_buf_t *out)
{
    size_t cap = 1 << 20, used = 0;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, (la_int64_t)strlen(texts[i]));
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, texts[i], strlen(texts[i])),
                         (la_ssize_t)strlen(texts[i]));
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    put(rel, buf, used);
    par_buf_init(out, 0);
    assert_int_equal(par_buf_append(out, buf, used), PAR_OK);
    free(buf);
}

static void put_signature(const char *rel, const par_ms_seckey_t *sk, const par_buf_t *msg)
{
    par_buf_t sig, e;
    par_buf_init(&sig, 0), par_buf_init(&e, 0);
    assert_int_equal(par_ms_sign(sk, msg->data, msg->len, NULL, NULL, &sig, &e), PAR_OK);
    put(rel, sig.data, sig.len);
    par_buf_free(&sig), par_buf_free(&e);
}

static int group_setup(void **state)
{
    (void)state;
    make_key(&key, key_b64);
    make_key(&other, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    par_ms_seckey_wipe(&key);
    par_ms_seckey_wipe(&other);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/par-deploy-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    memset(&rt, 0, sizeof(rt));
    memset(&req, 0, sizeof(req));
    char cache[128];
    path_of(cache, sizeof(cache), "cache");
    if (mkdir(cache, 0700) != 0 || (rt.cache_dir = strdup(cache)) == NULL)
        return -1;
    rt.cfg.default_timeout_ms = 30000;
    rt.cfg.max_timeout_ms = 10000;
    rt.cfg.max_input_bytes = 1 << 20;
    rt.cfg.isolation = PAR_ISOLATION_WORKER;
    par_trusted_key_t tk = {.key = key_b64};
    par_buf_init(&err, 0);
    if (par_trust_init(&rt.trust, &tk, 1, 1, &err) != PAR_OK)
        return -1;
    memset(&c, 0, sizeof(c));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    par__deploy_ctx_free(&c);
    par_trust_free(&rt.trust);
    free(rt.cache_dir);
    par_buf_free(&err);
    par_fs_remove(dir, NULL);
    return 0;
}

/* Starts a context for `req` with `path` relative to the temporary directory. */
static void start(const char *rel)
{
    static char p[256];
    path_of(p, sizeof(p), rel);
    req.path = p;
    req.origin = "api";
    assert_int_equal(par__deploy_ctx_init(&c, &rt, &req, &err), PAR_OK);
    assert_non_null(c.pv);
    assert_string_equal(c.pv->source, p);
}

static void err_has(const char *needle)
{
    par_buf_terminate(&err);
    if (strstr(err.data ? err.data : "", needle) == NULL)
        fail_msg("error lacks '%s':\n%s", needle, err.data ? err.data : "");
}

/* ---- acquire ------------------------------------------------------------------------ */

static void acquire_directory(void **state)
{
    (void)state;
    puts_("pkg/agent.yaml", NATIVE);
    start("pkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_non_null(c.pv->root);
    assert_non_null(strstr(c.pv->root, "/pkg"));
    assert_string_equal(c.pv->sha256, ""); /* a directory has no digest */
    assert_int_equal(c.yaml.len, strlen(NATIVE));
    assert_false(c.have_sig);
    /* a directory carries no signature: refused unless unsigned is allowed */
    assert_int_equal(par__deploy_verify(&c), PAR_E_SIGNATURE_MISSING);
    err_has("an unpacked directory carries no signature");
    rt.cfg.allow_unsigned = 1;
    assert_int_equal(par__deploy_verify(&c), PAR_OK);
}

static void acquire_missing_path(void **state)
{
    (void)state;
    start("nothing-here");
    assert_int_equal(par__deploy_acquire(&c), PAR_E_NOT_FOUND);
    err_has("nothing-here");
}

static void acquire_file_with_signature(void **state)
{
    (void)state;
    const char *names[] = {"agent.yaml"}, *texts[] = {NATIVE};
    par_buf_t bytes;
    put_apkg("a.apkg", names, texts, 1, &bytes);
    put_signature("a.apkg.minisig", &key, &bytes);
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    char want[65];
    par_sha256_hex(bytes.data, bytes.len, want);
    assert_string_equal(c.pv->sha256, want);
    assert_true(c.have_sig);
    assert_true(c.have_b2);  /* hashed for the signature in the same pass */
    assert_null(c.pv->root); /* not extracted before it is verified */
    assert_int_equal(par__deploy_verify(&c), PAR_OK);
    assert_true(c.bytes_verified);
    assert_string_equal(c.pv->signer, key.id);
    par_buf_free(&bytes);
}

static void verify_refuses_a_wrong_digest(void **state)
{
    (void)state;
    const char *names[] = {"agent.yaml"}, *texts[] = {NATIVE};
    par_buf_t bytes;
    put_apkg("a.apkg", names, texts, 1, &bytes);
    put_signature("a.apkg.minisig", &key, &bytes);
    puts_("a.apkg.sha256", "0000000000000000000000000000000000000000000000000000000000000000  "
                           "a.apkg\n");
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_string_equal(c.expected,
                        "0000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(par__deploy_verify(&c), PAR_E_DIGEST_MISMATCH);
    err_has("SHA-256 mismatch: expected 0000");
    par_buf_free(&bytes);
}

static void acquire_refuses_malformed_digests(void **state)
{
    (void)state;
    const char *names[] = {"agent.yaml"}, *texts[] = {NATIVE};
    par_buf_t bytes;
    put_apkg("a.apkg", names, texts, 1, &bytes);
    puts_("a.apkg.sha256", "not a digest\n");
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_E_INVALID_PACKAGE);
    err_has("does not start with a SHA-256 in hex");
    par__deploy_ctx_free(&c);
    /* a digest given with the request must be 64 lowercase hex digits */
    req.sha256 = "ABC";
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_E_INVALID_ARGUMENT);
    err_has("sha256 must be 64 lowercase hex digits");
    par_buf_free(&bytes);
}

static void verify_refuses_a_bad_signature(void **state)
{
    (void)state;
    const char *names[] = {"agent.yaml"}, *texts[] = {NATIVE};
    par_buf_t bytes, forged;
    put_apkg("a.apkg", names, texts, 1, &bytes);
    /* an untrusted key */
    put_signature("a.apkg.minisig", &other, &bytes);
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_not_equal(par__deploy_verify(&c), PAR_OK);
    err_has("the signature does not vouch for these bytes");
    assert_false(c.bytes_verified);
    par__deploy_ctx_free(&c);
    par_buf_reset(&err);
    /* the trusted key, over other bytes */
    par_buf_init(&forged, 0);
    par_buf_appends(&forged, "other bytes");
    put_signature("a.apkg.minisig", &key, &forged);
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_verify(&c), PAR_E_SIGNATURE_INVALID);
    err_has("the signature does not vouch for these bytes");
    par_buf_free(&bytes);
    par_buf_free(&forged);
}

static void verify_refuses_unsigned_files(void **state)
{
    (void)state;
    const char *names[] = {"agent.yaml"}, *texts[] = {NATIVE};
    par_buf_t bytes;
    put_apkg("a.apkg", names, texts, 1, &bytes);
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_false(c.have_sig);
    assert_int_equal(par__deploy_verify(&c), PAR_E_SIGNATURE_MISSING);
    err_has("no signature");
    rt.cfg.allow_unsigned = 1;
    assert_int_equal(par__deploy_verify(&c), PAR_OK);
    par_buf_free(&bytes);
}

/* ---- manifest, extract -------------------------------------------------------------- */

static void manifest_from_the_archive(void **state)
{
    (void)state;
    const char *names[] = {"agent.yaml", "lib/libok.so"}, *texts[] = {NATIVE, "x"};
    par_buf_t bytes;
    put_apkg("a.apkg", names, texts, 2, &bytes);
    put_signature("a.apkg.minisig", &key, &bytes);
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_verify(&c), PAR_OK);
    assert_int_equal(par__deploy_manifest(&c), PAR_OK);
    assert_string_equal(c.pv->name, "a");
    assert_string_equal(c.pv->version, "1.2.3");
    /* extracted into the cache under its digest, once verified */
    assert_int_equal(par__deploy_extract(&c), PAR_OK);
    assert_non_null(c.pv->root);
    assert_non_null(strstr(c.pv->root, c.pv->sha256));
    char y[512];
    snprintf(y, sizeof(y), "%s/agent.yaml", c.pv->root);
    assert_int_equal(access(y, R_OK), 0);
    assert_null(c.a.data); /* the bytes are dropped once extracted */
    par_buf_free(&bytes);
}

static void manifest_refuses_a_bad_agent_yaml(void **state)
{
    (void)state;
    puts_("pkg/agent.yaml", "name: Not A Name\nruntime: native\n");
    start("pkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_manifest(&c), PAR_E_INVALID_PACKAGE);
    err_has("name");
    assert_null(c.pv->name);
}

static void manifest_refuses_an_archive_without_agent_yaml(void **state)
{
    (void)state;
    const char *names[] = {"README.md"}, *texts[] = {"hello\n"};
    par_buf_t bytes;
    put_apkg("a.apkg", names, texts, 1, &bytes);
    rt.cfg.allow_unsigned = 1;
    start("a.apkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_verify(&c), PAR_OK);
    assert_int_equal(par__deploy_manifest(&c), PAR_E_INVALID_PACKAGE);
    err_has("no agent.yaml at the archive root");
    par_buf_free(&bytes);
}

/* ---- compat ------------------------------------------------------------------------- */

static void compat_refuses_with_every_reason(void **state)
{
    (void)state;
    puts_("pkg/agent.yaml", "name: a\nruntime: native\nentrypoint: lib/libnone.so:f\n"
                            "metadata:\n  version: 1.0.0\n  par:\n    abi: 99\n");
    start("pkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_manifest(&c), PAR_OK);
    assert_int_equal(par__deploy_compat(&c), PAR_E_INCOMPATIBLE);
    err_has("entrypoint: lib/libnone.so: not found in the package");
    err_has("metadata.par.abi");
}

static void compat_sets_limits_and_isolation(void **state)
{
    (void)state;
    puts_("pkg/agent.yaml", NATIVE);
    put_elf("pkg/lib/libok.so");
    char name[] = "a";
    char *trusted[] = {name, NULL};
    rt.trusted = trusted;
    start("pkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_manifest(&c), PAR_OK);
    assert_int_equal(par__deploy_compat(&c), PAR_OK);
    assert_int_equal(c.pv->timeout_ms, 10000); /* the default, capped by the maximum */
    assert_int_equal(c.pv->max_input, 1 << 20);
    assert_non_null(c.pv->metrics);
    assert_int_equal(c.pv->isolation, PAR_ISOLATION_IN_PROCESS); /* named trusted */
    par__deploy_ctx_free(&c);
    rt.trusted = NULL;
    start("pkg");
    assert_int_equal(par__deploy_acquire(&c), PAR_OK);
    assert_int_equal(par__deploy_manifest(&c), PAR_OK);
    assert_int_equal(par__deploy_compat(&c), PAR_OK);
    assert_int_equal(c.pv->isolation, PAR_ISOLATION_WORKER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(acquire_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(acquire_missing_path, setup, teardown),
        cmocka_unit_test_setup_teardown(acquire_file_with_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_refuses_a_wrong_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(acquire_refuses_malformed_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_refuses_a_bad_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_refuses_unsigned_files, setup, teardown),
        cmocka_unit_test_setup_teardown(manifest_from_the_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(manifest_refuses_a_bad_agent_yaml, setup, teardown),
        cmocka_unit_test_setup_teardown(manifest_refuses_an_archive_without_agent_yaml, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(compat_refuses_with_every_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(compat_sets_limits_and_isolation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
