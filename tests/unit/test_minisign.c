/*
 * Unit tests for pkg/minisign.c.
 *
 * Vectors come from the real `minisign` tool, run at test time in a
 * temporary directory (keys, signatures, both signature forms), and PAR's
 * own output is checked by the same tool: the formats are whatever minisign
 * reads and writes, not what this file believes they are. When minisign is
 * not installed the tests that need it fail and say so (scripts/install-deps.sh
 * installs it); they are never skipped silently.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include <par/par.h>

#include "pkg/minisign.h"

extern char **environ;

static char top[PATH_MAX];

/* snprintf into an array, failing the test on truncation */
#define FMT(buf, ...) assert_true(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

/* Small scrypt parameters for tests (libsodium's minimums). */
#define TEST_OPS crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN
#define TEST_MEM crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN

/* ---- helpers --------------------------------------------------------------------- */

static void path_of(char *out, size_t cap, const char *name)
{
    assert_true(snprintf(out, cap, "%s/%s", top, name) < (int)cap);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char p[PATH_MAX];
    path_of(p, sizeof(p), name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_str(const char *name, const char *s)
{
    write_file(name, s, strlen(s));
}

/* Whole file, NUL-terminated; *len gets its size. */
static char *read_file(const char *name, size_t *len)
{
    char p[PATH_MAX];
    path_of(p, sizeof(p), name);
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s", p, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Runs a program (PATH search) with `input` on its standard input and its
 * output appended to tool.log in the test directory; returns its exit status
 * (-1 when it could not run or was killed). */
static int run_tool(const char *input, const char *const *argv)
{
    char in_path[PATH_MAX], log_path[PATH_MAX];
    path_of(in_path, sizeof(in_path), "stdin.txt");
    path_of(log_path, sizeof(log_path), "tool.log");
    write_str("stdin.txt", input ? input : "");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in_path, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void need_minisign(void)
{
    const char *argv[] = {"minisign", "-v", NULL};
    if (run_tool(NULL, argv) != 0)
        fail_msg("the minisign tool is not installed (or not on PATH): these tests check PAR "
                 "against it; install it with scripts/install-deps.sh (Debian/Ubuntu package "
                 "'minisign')");
}

/* runs minisign with arguments in the test directory (absolute paths) */
#define MINISIGN(input, ...) run_tool(input, (const char *const[]){"minisign", __VA_ARGS__, NULL})

static const char *p_(const char *name, char buf[PATH_MAX])
{
    path_of(buf, PATH_MAX, name);
    return buf;
}

/* A fresh unencrypted minisign key pair NAME.pub / NAME.key. */
static void minisign_keypair(const char *name)
{
    char pub[64], key[64], a[PATH_MAX], b[PATH_MAX];
    FMT(pub, "%s.pub", name);
    FMT(key, "%s.key", name);
    assert_int_equal(MINISIGN(NULL, "-G", "-f", "-W", "-p", p_(pub, a), "-s", p_(key, b)), 0);
}

static par_ms_pubkey_t load_pub(const char *name)
{
    size_t n;
    char *t = read_file(name, &n);
    par_ms_pubkey_t pk;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_ms_pubkey_parse(t, n, &pk, &err);
    if (rc != PAR_OK)
        fail_msg("%s: %.*s", name, (int)err.len, err.data);
    par_buf_free(&err);
    free(t);
    return pk;
}

static par_ms_sig_t load_sig(const char *name)
{
    size_t n;
    char *t = read_file(name, &n);
    par_ms_sig_t sig;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_ms_sig_parse(t, n, &sig, &err);
    if (rc != PAR_OK)
        fail_msg("%s: %.*s", name, (int)err.len, err.data);
    par_buf_free(&err);
    free(t);
    return sig;
}

static par_ms_seckey_t load_sec(const char *name, const char *password)
{
    size_t n;
    char *t = read_file(name, &n);
    par_ms_seckey_t sk;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_ms_seckey_load(t, n, password, &sk, &err);
    if (rc != PAR_OK)
        fail_msg("%s: %.*s", name, (int)err.len, err.data);
    par_buf_free(&err);
    free(t);
    return sk;
}

/* The test message: binary, with NUL bytes and line ends. */
static void make_message(const char *name, unsigned char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)(i * 131 + 7);
    out[0] = 0;
    out[len / 2] = '\n';
    write_file(name, out, len);
}

/* Checks that `rc` is `want` and that the error text holds each of the
 * NULL-terminated substrings; resets err. */
static void expect_err(int rc, int want, par_buf_t *err, ...)
{
    par_buf_terminate(err);
    const char *text = err->data ? err->data : "";
    if (rc != want)
        fail_msg("status %s, expected %s; error: %s", par_status_name(rc), par_status_name(want),
                 text);
    assert_true(err->len > 0 && text[err->len - 1] == '\n');
    va_list ap;
    va_start(ap, err);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        if (strstr(text, s) == NULL)
            fail_msg("error \"%s\" does not mention \"%s\"", text, s);
    va_end(ap);
    par_buf_reset(err);
}

static char *b64(const void *bin, size_t len)
{
    size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(n);
    assert_non_null(s);
    sodium_bin2base64(s, n, bin, len, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* The second line of a text (a key's or signature's base64), copied. */
static char *line_of(const char *text, int lineno)
{
    const char *p = text;
    for (int i = 1; i < lineno; i++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    size_t n = strcspn(p, "\n");
    char *s = strndup(p, n);
    assert_non_null(s);
    return s;
}

/* ---- minisign -> PAR ------------------------------------------------------------- */

static void test_verify_prehashed_from_minisign(void **state)
{
    (void)state;
    need_minisign();
    minisign_keypair("a");
    unsigned char msg[10000];
    make_message("m1.bin", msg, sizeof(msg));
    char a[PATH_MAX], b[PATH_MAX];
    assert_int_equal(MINISIGN(NULL, "-S", "-s", p_("a.key", a), "-m", p_("m1.bin", b), "-t",
                              "name:echo\tversion:1.0.0  "),
                     0);

    /* the key id is the number minisign prints in the public key's comment:
       keynum read as a little-endian integer, in uppercase hex. minisign 0.11
       prints it without leading zeros (one key in 16 has a shorter id there);
       PAR always writes 16 digits, as later minisign versions do. */
    par_ms_pubkey_t pk = load_pub("a.pub");
    char *pubtext = read_file("a.pub", NULL);
    static const char prefix[] = "untrusted comment: minisign public key ";
    assert_true(strncmp(pubtext, prefix, strlen(prefix)) == 0);
    const char *shown = pubtext + strlen(prefix);
    char *endp;
    unsigned long long shown_id = strtoull(shown, &endp, 16);
    assert_true(*endp == '\n');
    for (const char *q = shown; q < endp; q++)
        assert_true((*q >= '0' && *q <= '9') || (*q >= 'A' && *q <= 'F'));
    uint64_t le = 0;
    for (int i = 7; i >= 0; i--)
        le = (le << 8) | pk.keynum[i];
    assert_true(shown_id == le);
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llX", (unsigned long long)le);
    assert_string_equal(pk.id, hex);

    /* the bare base64 form, as configuration gives it, is the same key */
    char *line = line_of(pubtext, 2);
    char padded[128];
    FMT(padded, "  %s \n", line);
    par_ms_pubkey_t pk2;
    assert_int_equal(par_ms_pubkey_parse(padded, strlen(padded), &pk2, NULL), PAR_OK);
    assert_memory_equal(&pk, &pk2, sizeof(pk));
    char back[57];
    par_ms_pubkey_base64(&pk, back);
    assert_string_equal(back, line);
    free(line);
    free(pubtext);

    par_ms_sig_t sig = load_sig("m1.bin.minisig");
    assert_int_equal(sig.prehashed, 1);
    assert_string_equal(sig.id, pk.id);
    /* trailing spaces of the trusted comment are kept: they are signed */
    assert_string_equal(sig.trusted_comment, "name:echo\tversion:1.0.0  ");

    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_OK);
    assert_int_equal(err.len, 0);
    uint8_t h[64];
    crypto_generichash(h, sizeof(h), msg, sizeof(msg), NULL, 0);
    assert_int_equal(par_ms_verify(&pk, &sig, NULL, 0, h, &err), PAR_OK);
    assert_int_equal(par_ms_verify(&pk, &sig, msg, sizeof(msg), h, &err), PAR_OK);

    /* one changed byte anywhere in the message */
    size_t spots[] = {0, 1, sizeof(msg) / 2, sizeof(msg) - 1};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        msg[spots[i]] ^= 0x01;
        expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
                   &err, "does not match the contents", pk.id, NULL);
        msg[spots[i]] ^= 0x01;
    }
    /* a shorter message, and a wrong prehash */
    expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg) - 1, NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "does not match", NULL);
    h[63] ^= 0x80;
    expect_err(par_ms_verify(&pk, &sig, NULL, 0, h, &err), PAR_E_SIGNATURE_INVALID, &err,
               "does not match", NULL);

    /* an altered trusted comment: the message still verifies, the global sig not */
    char *orig = sig.trusted_comment;
    sig.trusted_comment = strdup("name:echo\tversion:9.9.9  ");
    expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "trusted comment", "global signature", NULL);
    free(sig.trusted_comment);
    sig.trusted_comment = strdup("name:echo\tversion:1.0.0"); /* trailing spaces dropped */
    expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "trusted comment", NULL);
    free(sig.trusted_comment);
    sig.trusted_comment = orig;
    sig.global_sig[5] ^= 1;
    expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "trusted comment", NULL);
    sig.global_sig[5] ^= 1;
    assert_int_equal(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_OK);

    /* the same tampering done to the file itself */
    size_t n;
    char *text = read_file("m1.bin.minisig", &n);
    char *tc = strstr(text, "version:1.0.0");
    assert_non_null(tc);
    tc[8] = '2';
    par_ms_sig_t bad;
    assert_int_equal(par_ms_sig_parse(text, n, &bad, &err), PAR_OK);
    expect_err(par_ms_verify(&pk, &bad, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "trusted comment", NULL);
    par_ms_sig_free(&bad);
    free(text);

    par_ms_sig_free(&sig);
    assert_null(sig.trusted_comment);
    par_buf_free(&err);
}

static void test_verify_legacy_from_minisign(void **state)
{
    (void)state;
    need_minisign();
    minisign_keypair("l");
    unsigned char msg[3000];
    make_message("m2.bin", msg, sizeof(msg));
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    assert_int_equal(MINISIGN(NULL, "-S", "-l", "-s", p_("l.key", a), "-m", p_("m2.bin", b), "-x",
                              p_("m2.legacy", c)),
                     0);
    assert_int_equal(MINISIGN(NULL, "-S", "-s", p_("l.key", a), "-m", p_("m2.bin", b)), 0);
    par_ms_pubkey_t pk = load_pub("l.pub");
    par_ms_sig_t sig = load_sig("m2.legacy");
    par_ms_sig_t hashed = load_sig("m2.bin.minisig");
    assert_int_equal(sig.prehashed, 0);
    assert_int_equal(hashed.prehashed, 1);
    /* minisign's default trusted comments: "\thashed" marks the prehashed form */
    assert_true(strncmp(sig.trusted_comment, "timestamp:", 10) == 0);
    const char *end = sig.trusted_comment + strlen(sig.trusted_comment);
    assert_string_equal(end - strlen("\tfile:m2.bin"), "\tfile:m2.bin");
    end = hashed.trusted_comment + strlen(hashed.trusted_comment);
    assert_string_equal(end - strlen("\tfile:m2.bin\thashed"), "\tfile:m2.bin\thashed");

    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_OK);
    /* a legacy signature cannot be checked from the hash alone */
    uint8_t h[64];
    crypto_generichash(h, sizeof(h), msg, sizeof(msg), NULL, 0);
    expect_err(par_ms_verify(&pk, &sig, NULL, sizeof(msg), h, &err), PAR_E_INVALID_ARGUMENT, &err,
               "legacy", NULL);
    /* ... and the message, when given, is what counts (the prehash is ignored) */
    assert_int_equal(par_ms_verify(&pk, &sig, msg, sizeof(msg), h, &err), PAR_OK);
    msg[100] ^= 0x20;
    expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "does not match", NULL);
    expect_err(par_ms_verify(&pk, &hashed, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, "does not match", NULL);
    msg[100] ^= 0x20;
    assert_int_equal(par_ms_verify(&pk, &hashed, msg, sizeof(msg), NULL, &err), PAR_OK);

    /* the legacy and prehashed signatures are not interchangeable */
    memcpy(sig.sig, hashed.sig, 64);
    expect_err(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, NULL);
    par_ms_sig_free(&sig);
    par_ms_sig_free(&hashed);
    par_buf_free(&err);
}

static void test_other_key_is_untrusted(void **state)
{
    (void)state;
    need_minisign();
    minisign_keypair("o1");
    minisign_keypair("o2");
    unsigned char msg[100];
    make_message("m3.bin", msg, sizeof(msg));
    char a[PATH_MAX], b[PATH_MAX];
    assert_int_equal(MINISIGN(NULL, "-S", "-s", p_("o1.key", a), "-m", p_("m3.bin", b)), 0);
    par_ms_pubkey_t pk1 = load_pub("o1.pub"), pk2 = load_pub("o2.pub");
    assert_string_not_equal(pk1.id, pk2.id);
    par_ms_sig_t sig = load_sig("m3.bin.minisig");
    par_buf_t err;
    par_buf_init(&err, 0);
    expect_err(par_ms_verify(&pk2, &sig, msg, sizeof(msg), NULL, &err), PAR_E_UNTRUSTED_SIGNER,
               &err, pk1.id, pk2.id, NULL);
    /* same key id but another key: the signature itself fails */
    memcpy(pk2.keynum, pk1.keynum, 8);
    expect_err(par_ms_verify(&pk2, &sig, msg, sizeof(msg), NULL, &err), PAR_E_SIGNATURE_INVALID,
               &err, NULL);
    assert_int_equal(par_ms_verify(&pk1, &sig, msg, sizeof(msg), NULL, &err), PAR_OK);
    par_ms_sig_free(&sig);
    par_buf_free(&err);
}

/* ---- malformed input ------------------------------------------------------------- */

static void pub_err(const char *text, const char *want1, const char *want2)
{
    par_ms_pubkey_t pk;
    par_buf_t err;
    par_buf_init(&err, 0);
    memset(&pk, 0xaa, sizeof(pk));
    int rc = par_ms_pubkey_parse(text, strlen(text), &pk, &err);
    expect_err(rc, PAR_E_INVALID_ARGUMENT, &err, want1, want2, NULL);
    /* nothing half-filled on failure */
    par_ms_pubkey_t zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&pk, &zero, sizeof(pk));
    par_buf_free(&err);
}

static void test_malformed_public_keys(void **state)
{
    (void)state;
    uint8_t bin[64];
    memset(bin, 0x11, sizeof(bin));
    memcpy(bin, "Ed", 2);
    char *good = b64(bin, 42);
    par_ms_pubkey_t pk;
    assert_int_equal(par_ms_pubkey_parse(good, strlen(good), &pk, NULL), PAR_OK);
    assert_string_equal(pk.id, "1111111111111111");
    /* ids keep their leading zeros: 16 digits always */
    bin[2 + 7] = 0x00;
    bin[2 + 6] = 0x0a;
    char *zeros = b64(bin, 42);
    assert_int_equal(par_ms_pubkey_parse(zeros, strlen(zeros), &pk, NULL), PAR_OK);
    assert_string_equal(pk.id, "000A111111111111");
    free(zeros);
    memset(bin, 0x11, sizeof(bin));
    memcpy(bin, "Ed", 2);

    pub_err("", "empty", NULL);
    pub_err(" \n\t\n", "empty", NULL);
    pub_err("untrusted comment: x\n", "nothing after", NULL);
    char *short_ = b64(bin, 30);
    pub_err(short_, "decodes to 30 bytes", "42");
    char *long_ = b64(bin, 43);
    pub_err(long_, "decodes to 43 bytes", NULL);
    memcpy(bin, "Xy", 2);
    char *alg = b64(bin, 42);
    pub_err(alg, "\"Xy\" is not supported", "\"Ed\"");
    memcpy(bin, "\x01\x02", 2);
    char *alg2 = b64(bin, 42);
    pub_err(alg2, "0x0102 is not supported", NULL);

    char buf[512];
    snprintf(buf, sizeof(buf), "%s", good);
    buf[10] = '!';
    pub_err(buf, "character 11 is '!'", "base64");
    snprintf(buf, sizeof(buf), "%s", good);
    buf[20] = '\x01';
    pub_err(buf, "byte 0x01", NULL);
    snprintf(buf, sizeof(buf), "%.*s", (int)strlen(good) - 1, good); /* one character short */
    pub_err(buf, "not valid base64", NULL);
    snprintf(buf, sizeof(buf), "RW%s", good); /* 58 characters */
    pub_err(buf, "not valid base64", NULL);
    snprintf(buf, sizeof(buf), "untrusted comment: k\n%s\nmore\n", good);
    pub_err(buf, "line 3", "unexpected text after the key");
    snprintf(buf, sizeof(buf), "comment without prefix\n%s\n", good);
    pub_err(buf, "line 1", "untrusted comment");
    /* a file with CR LF line ends and blank lines is fine */
    snprintf(buf, sizeof(buf), "\r\nuntrusted comment: k\r\n%s\r\n\r\n", good);
    assert_int_equal(par_ms_pubkey_parse(buf, strlen(buf), &pk, NULL), PAR_OK);
    /* a NUL inside the text is not skipped */
    char nul[128];
    size_t gl = strlen(good);
    memcpy(nul, good, gl);
    nul[gl] = '\0';
    memcpy(nul + gl + 1, "AAAA", 4);
    par_buf_t err;
    par_buf_init(&err, 0);
    expect_err(par_ms_pubkey_parse(nul, gl + 5, &pk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "byte 0x00", NULL);
    par_buf_free(&err);
    free(good);
    free(short_);
    free(long_);
    free(alg);
    free(alg2);
}

static void sig_err(const char *text, size_t len, const char *want1, const char *want2)
{
    par_ms_sig_t sig;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_ms_sig_parse(text, len, &sig, &err);
    expect_err(rc, PAR_E_INVALID_ARGUMENT, &err, want1, want2, NULL);
    assert_null(sig.trusted_comment);
    par_buf_free(&err);
}

static void test_malformed_signatures(void **state)
{
    (void)state;
    uint8_t sb[80], gb[70];
    memset(sb, 0x22, sizeof(sb));
    memset(gb, 0x33, sizeof(gb));
    memcpy(sb, "ED", 2);
    char *s74 = b64(sb, 74), *g64 = b64(gb, 64), *g63 = b64(gb, 63), *s75 = b64(sb, 75);
    memcpy(sb, "Ee", 2);
    char *salg = b64(sb, 74);
    memcpy(sb, "Ed", 2);
    char *slegacy = b64(sb, 74);
    char t[2048];
#define SIG(...) (snprintf(t, sizeof(t), __VA_ARGS__), t)

    par_ms_sig_t sig;
    SIG("untrusted comment: x\n%s\ntrusted comment: hello\n%s\n", s74, g64);
    assert_int_equal(par_ms_sig_parse(t, strlen(t), &sig, NULL), PAR_OK);
    assert_int_equal(sig.prehashed, 1);
    assert_string_equal(sig.trusted_comment, "hello");
    assert_string_equal(sig.id, "2222222222222222");
    par_ms_sig_free(&sig);
    /* CR LF, no final newline, legacy algorithm, empty trusted comment */
    SIG("untrusted comment: x\r\n%s\r\ntrusted comment: \r\n%s", slegacy, g64);
    assert_int_equal(par_ms_sig_parse(t, strlen(t), &sig, NULL), PAR_OK);
    assert_int_equal(sig.prehashed, 0);
    assert_string_equal(sig.trusted_comment, "");
    par_ms_sig_free(&sig);

    sig_err("", 0, "empty", "4 lines");
    SIG("untrusted comment: x\n%s\n", s74);
    sig_err(t, strlen(t), "ends after line 2", NULL);
    SIG("comment: x\n%s\ntrusted comment: a\n%s\n", s74, g64);
    sig_err(t, strlen(t), "line 1", "untrusted comment: ");
    SIG("untrusted comment: x\n%s\ntrusted comment: a\n%s\n", s75, g64);
    sig_err(t, strlen(t), "line 2", "decodes to 75 bytes");
    SIG("untrusted comment: x\n%s\ntrusted comment: a\n%s\n", salg, g64);
    sig_err(t, strlen(t), "line 2", "\"Ee\" is not supported");
    SIG("untrusted comment: x\n%s*\ntrusted comment: a\n%s\n", s74, g64);
    sig_err(t, strlen(t), "line 2", "'*'");
    SIG("untrusted comment: x\n\ntrusted comment: a\n%s\n", g64);
    sig_err(t, strlen(t), "line 2", "empty");
    SIG("untrusted comment: x\n%s\ntrusted: a\n%s\n", s74, g64);
    sig_err(t, strlen(t), "line 3", "trusted comment: ");
    SIG("untrusted comment: x\n%s\ntrusted comment: a\n%s\n", s74, g63);
    sig_err(t, strlen(t), "line 4", "decodes to 63 bytes");
    SIG("untrusted comment: x\n%s\ntrusted comment: a\n%s\n\nextra\n", s74, g64);
    sig_err(t, strlen(t), "line 6", "unexpected text");
    /* a NUL in the trusted comment: minisign would verify less than PAR reads */
    int n = snprintf(t, sizeof(t), "untrusted comment: x\n%s\ntrusted comment: ab", s74);
    t[n] = '\0';
    int m = snprintf(t + n + 1, sizeof(t) - (size_t)n - 1, "cd\n%s\n", g64);
    sig_err(t, (size_t)(n + 1 + m), "NUL byte", "line 3");
    /* a trusted comment longer than minisign reads */
    char *big = malloc(PAR_MS_TRUSTED_COMMENT_MAX + 400);
    n = snprintf(big, 300, "untrusted comment: x\n%s\ntrusted comment: ", s74);
    memset(big + n, 'c', PAR_MS_TRUSTED_COMMENT_MAX + 1);
    n += PAR_MS_TRUSTED_COMMENT_MAX + 1;
    n += snprintf(big + n, 100, "\n%s\n", g64);
    sig_err(big, (size_t)n, "8174 bytes", "8173");
    free(big);
    free(s74);
    free(g64);
    free(g63);
    free(s75);
    free(salg);
    free(slegacy);
#undef SIG
}

/* ---- PAR -> minisign ------------------------------------------------------------- */

static void test_par_keys_and_signatures_verify_with_minisign(void **state)
{
    (void)state;
    need_minisign();
    par_buf_t pub, sec, out, err;
    par_buf_init(&pub, 0);
    par_buf_init(&sec, 0);
    par_buf_init(&out, 0);
    par_buf_init(&err, 0);
    par_ms_pubkey_t pk;
    assert_int_equal(par_ms_keygen(NULL, &pub, &sec, &pk, &err), PAR_OK);
    assert_int_equal(par_ms_seckey_is_encrypted(sec.data, sec.len), 0);
    write_file("p.pub", pub.data, pub.len);
    write_file("p.key", sec.data, sec.len);
    par_ms_pubkey_t pk2 = load_pub("p.pub");
    assert_memory_equal(&pk, &pk2, sizeof(pk));
    par_ms_seckey_t sk = load_sec("p.key", NULL);
    par_ms_seckey_pubkey(&sk, &pk2);
    assert_memory_equal(&pk, &pk2, sizeof(pk));

    unsigned char msg[5000];
    make_message("m4.bin", msg, sizeof(msg));
    par_ms_sign_opts_t o = {.file_name = "/some/dir/m4.bin"};
    assert_int_equal(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_OK);
    write_file("m4.bin.minisig", out.data, out.len);
    par_ms_sig_t sig = load_sig("m4.bin.minisig");
    assert_int_equal(sig.prehashed, 1);
    const char *tc = sig.trusted_comment;
    assert_true(strncmp(tc, "timestamp:", 10) == 0);
    assert_string_equal(tc + strlen(tc) - strlen("\tfile:m4.bin\thashed"), "\tfile:m4.bin\thashed");
    par_ms_sig_free(&sig);

    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    assert_int_equal(MINISIGN(NULL, "-V", "-p", p_("p.pub", a), "-m", p_("m4.bin", b)), 0);
    /* -H: minisign insists on the prehashed form */
    assert_int_equal(MINISIGN(NULL, "-V", "-H", "-p", p_("p.pub", a), "-m", p_("m4.bin", b)), 0);
    /* -P with the bare key */
    char b64key[57];
    par_ms_pubkey_base64(&pk, b64key);
    assert_int_equal(MINISIGN(NULL, "-V", "-P", b64key, "-m", p_("m4.bin", b)), 0);

    /* prehash given instead of the message: same bytes as signing the message */
    uint8_t h[64];
    crypto_generichash(h, sizeof(h), msg, sizeof(msg), NULL, 0);
    par_buf_reset(&out);
    o.trusted_comment = "explicit comment";
    assert_int_equal(par_ms_sign(&sk, NULL, 0, h, &o, &out, &err), PAR_OK);
    write_file("m4.pre.minisig", out.data, out.len);
    assert_int_equal(MINISIGN(NULL, "-V", "-p", p_("p.pub", a), "-m", p_("m4.bin", b), "-x",
                              p_("m4.pre.minisig", c)),
                     0);

    /* legacy */
    par_buf_reset(&out);
    o.legacy = 1;
    o.trusted_comment = NULL;
    assert_int_equal(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_OK);
    write_file("m4.legacy", out.data, out.len);
    sig = load_sig("m4.legacy");
    assert_int_equal(sig.prehashed, 0);
    tc = sig.trusted_comment;
    assert_string_equal(tc + strlen(tc) - strlen("\tfile:m4.bin"), "\tfile:m4.bin");
    par_ms_sig_free(&sig);
    assert_int_equal(
        MINISIGN(NULL, "-V", "-p", p_("p.pub", a), "-m", p_("m4.bin", b), "-x", p_("m4.legacy", c)),
        0);
    /* the check has teeth: -H refuses a legacy signature, a changed file fails */
    assert_int_equal(MINISIGN(NULL, "-V", "-H", "-p", p_("p.pub", a), "-m", p_("m4.bin", b), "-x",
                              p_("m4.legacy", c)),
                     1);
    msg[7] ^= 1;
    write_file("m4.bin", msg, sizeof(msg));
    assert_int_equal(MINISIGN(NULL, "-V", "-p", p_("p.pub", a), "-m", p_("m4.bin", b)), 1);
    assert_int_equal(
        MINISIGN(NULL, "-V", "-p", p_("p.pub", a), "-m", p_("m4.bin", b), "-x", p_("m4.legacy", c)),
        1);
    msg[7] ^= 1;
    write_file("m4.bin", msg, sizeof(msg));

    /* minisign signs with PAR's secret key; PAR verifies */
    assert_int_equal(MINISIGN(NULL, "-S", "-s", p_("p.key", a), "-m", p_("m4.bin", b), "-x",
                              p_("m4.ms", c), "-t", "from minisign"),
                     0);
    sig = load_sig("m4.ms");
    assert_string_equal(sig.trusted_comment, "from minisign");
    assert_int_equal(par_ms_verify(&pk, &sig, msg, sizeof(msg), NULL, &err), PAR_OK);
    par_ms_sig_free(&sig);

    /* the longest trusted comment PAR writes is one minisign reads back */
    char *longc = malloc(PAR_MS_TRUSTED_COMMENT_MAX + 2);
    memset(longc, 'z', PAR_MS_TRUSTED_COMMENT_MAX + 1);
    longc[PAR_MS_TRUSTED_COMMENT_MAX + 1] = '\0';
    o.legacy = 0;
    o.trusted_comment = longc;
    par_buf_reset(&out);
    expect_err(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_E_INVALID_ARGUMENT,
               &err, "trusted comment", "8174 bytes", NULL);
    assert_int_equal(out.len, 0);
    longc[PAR_MS_TRUSTED_COMMENT_MAX] = '\0';
    assert_int_equal(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_OK);
    write_file("m4.long", out.data, out.len);
    assert_int_equal(
        MINISIGN(NULL, "-V", "-p", p_("p.pub", a), "-m", p_("m4.bin", b), "-x", p_("m4.long", c)),
        0);
    sig = load_sig("m4.long");
    assert_string_equal(sig.trusted_comment, longc);
    par_ms_sig_free(&sig);
    free(longc);

    /* comments that would break the format */
    o.trusted_comment = "two\nlines";
    expect_err(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_E_INVALID_ARGUMENT,
               &err, "line break", NULL);
    o.trusted_comment = NULL;
    o.untrusted_comment = "cr\rhere";
    expect_err(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_E_INVALID_ARGUMENT,
               &err, "untrusted comment", "line break", NULL);
    o.untrusted_comment = NULL;
    o.file_name = "evil\nname";
    expect_err(par_ms_sign(&sk, msg, sizeof(msg), NULL, &o, &out, &err), PAR_E_INVALID_ARGUMENT,
               &err, "file name", NULL);
    o.legacy = 1;
    o.file_name = NULL;
    expect_err(par_ms_sign(&sk, NULL, 10, h, &o, &out, &err), PAR_E_INVALID_ARGUMENT, &err,
               "legacy", NULL);

    par_ms_seckey_wipe(&sk);
    uint8_t zero[sizeof(sk)];
    memset(zero, 0, sizeof(zero));
    assert_memory_equal(&sk, zero, sizeof(sk));
    sodium_memzero(sec.data, sec.len);
    par_buf_free(&pub);
    par_buf_free(&sec);
    par_buf_free(&out);
    par_buf_free(&err);
}

/* ---- secret keys ----------------------------------------------------------------- */

static void test_encrypted_keys(void **state)
{
    (void)state;
    need_minisign();
    par_buf_t pub, sec, out, err;
    par_buf_init(&pub, 0);
    par_buf_init(&sec, 0);
    par_buf_init(&out, 0);
    par_buf_init(&err, 0);
    par_ms_keygen_opts_t o = {.password = "correct horse battery staple",
                              .opslimit = TEST_OPS,
                              .memlimit = TEST_MEM,
                              .comment = "test key"};
    par_ms_pubkey_t pk;
    assert_int_equal(par_ms_keygen(&o, &pub, &sec, &pk, &err), PAR_OK);
    par_buf_terminate(&pub);
    par_buf_terminate(&sec);
    assert_true(strncmp(pub.data, "untrusted comment: test key\n", 28) == 0);
    assert_int_equal(par_ms_seckey_is_encrypted(sec.data, sec.len), 1);
    assert_int_equal(par_ms_seckey_is_encrypted("junk", 4), -PAR_E_INVALID_ARGUMENT);
    /* the secret key does not appear in clear: the layout has "Sc" and the params */
    char *line = line_of(sec.data, 2);
    uint8_t bin[158];
    size_t got;
    assert_int_equal(sodium_base642bin(bin, sizeof(bin), line, strlen(line), NULL, &got, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(got, 158);
    assert_memory_equal(bin, "EdScB2", 6);
    uint64_t ops = 0, mem = 0;
    for (int i = 7; i >= 0; i--) {
        ops = (ops << 8) | bin[38 + i];
        mem = (mem << 8) | bin[46 + i];
    }
    assert_int_equal(ops, TEST_OPS);
    assert_int_equal(mem, TEST_MEM);
    free(line);

    par_ms_seckey_t sk;
    assert_int_equal(par_ms_seckey_load(sec.data, sec.len, o.password, &sk, &err), PAR_OK);
    par_ms_pubkey_t derived;
    par_ms_seckey_pubkey(&sk, &derived);
    assert_memory_equal(&derived, &pk, sizeof(pk));
    assert_memory_not_equal(bin + 54, sk.keynum, 8); /* stored encrypted */
    assert_int_equal(par_ms_sign(&sk, "abc", 3, NULL, NULL, &out, &err), PAR_OK);
    par_ms_sig_t sig;
    assert_int_equal(par_ms_sig_parse(out.data, out.len, &sig, &err), PAR_OK);
    assert_int_equal(par_ms_verify(&pk, &sig, "abc", 3, NULL, &err), PAR_OK);
    par_ms_sig_free(&sig);
    par_ms_seckey_wipe(&sk);

    /* wrong, empty and missing passwords */
    memset(&sk, 0x55, sizeof(sk));
    expect_err(par_ms_seckey_load(sec.data, sec.len, "correct horse battery stapler", &sk, &err),
               PAR_E_INVALID_ARGUMENT, &err, "wrong password or corrupt secret key", NULL);
    uint8_t zero[sizeof(sk)];
    memset(zero, 0, sizeof(zero));
    assert_memory_equal(&sk, zero, sizeof(sk));
    expect_err(par_ms_seckey_load(sec.data, sec.len, "", &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "wrong password", NULL);
    expect_err(par_ms_seckey_load(sec.data, sec.len, NULL, &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "encrypted", "no password", NULL);

    /* minisign decrypts PAR's key with the same password (read from stdin) */
    write_file("enc.key", sec.data, sec.len);
    write_file("enc.pub", pub.data, pub.len);
    write_str("m5.bin", "a message\n");
    char a[PATH_MAX], b[PATH_MAX];
    assert_int_equal(MINISIGN("correct horse battery staple\n", "-S", "-s", p_("enc.key", a), "-m",
                              p_("m5.bin", b)),
                     0);
    /* (minisign exits with 2 on a wrong password) */
    assert_int_not_equal(MINISIGN("nope\n", "-S", "-s", p_("enc.key", a), "-m", p_("m5.bin", b)),
                         0);
    sig = load_sig("m5.bin.minisig");
    assert_int_equal(par_ms_verify(&pk, &sig, "a message\n", 10, NULL, &err), PAR_OK);
    par_ms_sig_free(&sig);

    /* a password minisign could not read back */
    par_buf_t p2, s2;
    par_buf_init(&p2, 0);
    par_buf_init(&s2, 0);
    o.password = "line\nbreak";
    expect_err(par_ms_keygen(&o, &p2, &s2, NULL, &err), PAR_E_INVALID_ARGUMENT, &err, "line break",
               NULL);
    o.password = "ok";
    o.comment = "two\nlines";
    expect_err(par_ms_keygen(&o, &p2, &s2, NULL, &err), PAR_E_INVALID_ARGUMENT, &err, "comment",
               NULL);
    assert_int_equal(p2.len + s2.len, 0);

    /* KDF parameters beyond minisign's are refused before any work */
    uint64_t huge = (uint64_t)crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_SENSITIVE * 4;
    for (int i = 0; i < 8; i++)
        bin[46 + i] = (uint8_t)(huge >> (8 * i));
    char *enc = b64(bin, sizeof(bin));
    expect_err(par_ms_seckey_load(enc, strlen(enc), "x", &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "memlimit", "more than minisign ever uses", NULL);
    free(enc);
    /* unknown KDF and checksum algorithms */
    memcpy(bin + 2, "Ar", 2);
    enc = b64(bin, sizeof(bin));
    expect_err(par_ms_seckey_load(enc, strlen(enc), "x", &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "key derivation \"Ar\"", NULL);
    free(enc);
    memcpy(bin + 2, "Sc", 2);
    memcpy(bin + 4, "S2", 2);
    enc = b64(bin, sizeof(bin));
    expect_err(par_ms_seckey_load(enc, strlen(enc), "x", &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "checksum algorithm \"S2\"", NULL);
    free(enc);
    enc = b64(bin, 150);
    expect_err(par_ms_seckey_load(enc, strlen(enc), "x", &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "decodes to 150 bytes", "158", NULL);
    free(enc);

    sodium_memzero(sec.data, sec.len);
    par_buf_free(&pub);
    par_buf_free(&sec);
    par_buf_free(&out);
    par_buf_free(&err);
    par_buf_free(&p2);
    par_buf_free(&s2);
}

static void test_unencrypted_key_checksums(void **state)
{
    (void)state;
    need_minisign();
    /* minisign -G -W writes an all-zero checksum; PAR accepts it */
    minisign_keypair("u");
    size_t n;
    char *text = read_file("u.key", &n);
    char *line = line_of(text, 2);
    uint8_t bin[158];
    size_t got;
    assert_int_equal(sodium_base642bin(bin, sizeof(bin), line, strlen(line), NULL, &got, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(got, 158);
    assert_true(bin[2] == 0 && bin[3] == 0);
    par_ms_seckey_t sk = load_sec("u.key", "ignored for an unencrypted key");
    par_ms_pubkey_t pk = load_pub("u.pub"), derived;
    par_ms_seckey_pubkey(&sk, &derived);
    assert_memory_equal(&pk, &derived, sizeof(pk));

    /* PAR signs with minisign's key, minisign verifies */
    par_buf_t out, err;
    par_buf_init(&out, 0);
    par_buf_init(&err, 0);
    write_str("m6.bin", "payload");
    assert_int_equal(par_ms_sign(&sk, "payload", 7, NULL, NULL, &out, &err), PAR_OK);
    write_file("m6.bin.minisig", out.data, out.len);
    char a[PATH_MAX], b[PATH_MAX];
    assert_int_equal(MINISIGN(NULL, "-V", "-p", p_("u.pub", a), "-m", p_("m6.bin", b)), 0);
    par_ms_seckey_wipe(&sk);

    /* a corrupt seed is caught even without a checksum */
    bin[70] ^= 1;
    char *enc = b64(bin, sizeof(bin));
    expect_err(par_ms_seckey_load(enc, strlen(enc), NULL, &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "corrupt secret key", NULL);
    free(enc);
    /* PAR's unencrypted keys carry the real checksum, and it is checked */
    par_buf_t pub, sec;
    par_buf_init(&pub, 0);
    par_buf_init(&sec, 0);
    assert_int_equal(par_ms_keygen(NULL, &pub, &sec, NULL, &err), PAR_OK);
    par_buf_terminate(&sec);
    free(line);
    line = line_of(sec.data, 2);
    assert_int_equal(sodium_base642bin(bin, sizeof(bin), line, strlen(line), NULL, &got, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_false(sodium_is_zero(bin + 126, 32));
    bin[150] ^= 1;
    enc = b64(bin, sizeof(bin));
    expect_err(par_ms_seckey_load(enc, strlen(enc), NULL, &sk, &err), PAR_E_INVALID_ARGUMENT, &err,
               "checksum", NULL);
    free(enc);

    sodium_memzero(sec.data, sec.len);
    par_buf_free(&pub);
    par_buf_free(&sec);
    par_buf_free(&out);
    par_buf_free(&err);
    free(line);
    free(text);
}

/* ---- hashing --------------------------------------------------------------------- */

static void test_streaming_hash(void **state)
{
    (void)state;
    /* BLAKE2b-512("abc"), RFC 7693 appendix A */
    static const uint8_t abc[64] = {
        0xBA, 0x80, 0xA5, 0x3F, 0x98, 0x1C, 0x4D, 0x0D, 0x6A, 0x27, 0x97, 0xB6, 0x9F,
        0x12, 0xF6, 0xE9, 0x4C, 0x21, 0x2F, 0x14, 0x68, 0x5A, 0xC4, 0xB7, 0x4B, 0x12,
        0xBB, 0x6F, 0xDB, 0xFF, 0xA2, 0xD1, 0x7D, 0x87, 0xC5, 0x39, 0x2A, 0xAB, 0x79,
        0x2D, 0xC2, 0x52, 0xD5, 0xDE, 0x45, 0x33, 0xCC, 0x95, 0x18, 0xD3, 0x8A, 0xA8,
        0xDB, 0xF1, 0x92, 0x5A, 0xB9, 0x23, 0x86, 0xED, 0xD4, 0x00, 0x99, 0x23};
    par_ms_hash_t h;
    uint8_t out[64];
    par_ms_hash_init(&h);
    par_ms_hash_update(&h, "a", 1);
    par_ms_hash_update(&h, "", 0);
    par_ms_hash_update(&h, "bc", 2);
    par_ms_hash_final(&h, out);
    assert_memory_equal(out, abc, 64);

    size_t len = (1u << 20) + 3;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    randombytes_buf(data, len);
    uint8_t one[64];
    crypto_generichash(one, sizeof(one), data, len, NULL, 0);
    size_t chunks[] = {1, 7, 127, 128, 129, 4096, 65536};
    par_ms_hash_init(&h);
    size_t off = 0;
    for (size_t i = 0; off < len; i++) {
        size_t c = chunks[i % (sizeof(chunks) / sizeof(chunks[0]))];
        if (c > len - off)
            c = len - off;
        par_ms_hash_update(&h, data + off, c);
        off += c;
    }
    par_ms_hash_final(&h, out);
    assert_memory_equal(out, one, 64);
    /* and it is what a prehashed signature signs */
    par_buf_t pub, sec, sigtext;
    par_buf_init(&pub, 0);
    par_buf_init(&sec, 0);
    par_buf_init(&sigtext, 0);
    par_ms_pubkey_t pk;
    assert_int_equal(par_ms_keygen(NULL, &pub, &sec, &pk, NULL), PAR_OK);
    par_ms_seckey_t sk;
    assert_int_equal(par_ms_seckey_load(sec.data, sec.len, NULL, &sk, NULL), PAR_OK);
    assert_int_equal(par_ms_sign(&sk, data, len, NULL, NULL, &sigtext, NULL), PAR_OK);
    par_ms_sig_t sig;
    assert_int_equal(par_ms_sig_parse(sigtext.data, sigtext.len, &sig, NULL), PAR_OK);
    assert_int_equal(crypto_sign_verify_detached(sig.sig, out, 64, pk.pk), 0);
    assert_int_equal(par_ms_verify(&pk, &sig, NULL, 0, out, NULL), PAR_OK);
    out[0] ^= 1;
    assert_int_equal(par_ms_verify(&pk, &sig, NULL, 0, out, NULL), PAR_E_SIGNATURE_INVALID);
    par_ms_sig_free(&sig);
    par_ms_seckey_wipe(&sk);
    sodium_memzero(sec.data, sec.len);
    par_buf_free(&pub);
    par_buf_free(&sec);
    par_buf_free(&sigtext);
    free(data);
}

/* ---- setup ----------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    FMT(top, "%s/par-minisign-test-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_prehashed_from_minisign),
        cmocka_unit_test(test_verify_legacy_from_minisign),
        cmocka_unit_test(test_other_key_is_untrusted),
        cmocka_unit_test(test_malformed_public_keys),
        cmocka_unit_test(test_malformed_signatures),
        cmocka_unit_test(test_par_keys_and_signatures_verify_with_minisign),
        cmocka_unit_test(test_encrypted_keys),
        cmocka_unit_test(test_unencrypted_key_checksums),
        cmocka_unit_test(test_streaming_hash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
