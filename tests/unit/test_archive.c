/* Unit tests for pkg/archive.c: hostile archives built by hand, digests, pack. */
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

#include "pkg/archive.h"

typedef struct entry {
    const char *name;
    int type;         /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFIFO, or -1 for a hard link */
    const char *data; /* file content, symlink or hard link target */
    size_t zeros;     /* when data is NULL: this many zero bytes */
} entry_t;

static char base[256];

/* Writes a ZIP holding `entries` into memory. */
static par_archive_bytes_t make_zip(const entry_t *entries, size_t n)
{
    size_t cap = 64u << 20, used = 0;
    unsigned char *buf = malloc(cap);
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    archive_write_set_options(a, "zip:compression=deflate");
    assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
    char *zeros = calloc(1, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, entries[i].name);
        archive_entry_set_perm(e, 0644);
        if (entries[i].type == -1) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, entries[i].data);
            archive_write_header(a, e);
        } else if (entries[i].type == AE_IFLNK) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, entries[i].data);
            archive_write_header(a, e);
        } else if (entries[i].type == AE_IFREG) {
            size_t len = entries[i].data ? strlen(entries[i].data) : entries[i].zeros;
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)len);
            assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
            if (entries[i].data) {
                archive_write_data(a, entries[i].data, len);
            } else {
                for (size_t left = len; left;) {
                    size_t k = left < (1u << 20) ? left : (1u << 20);
                    archive_write_data(a, zeros, k);
                    left -= k;
                }
            }
        } else {
            archive_entry_set_filetype(e, (unsigned)entries[i].type);
            archive_entry_set_size(e, 0);
            archive_write_header(a, e);
        }
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    free(zeros);
    par_archive_bytes_t out = {buf, used, ""};
    par_sha256_hex(buf, used, out.sha256);
    return out;
}

static char *fresh_dir(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", base, name);
    mkdir(path, 0755);
    return path;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int extract(const entry_t *e, size_t n, const char *dir, const par_archive_limits_t *lim,
                   par_buf_t *err)
{
    par_archive_bytes_t a = make_zip(e, n);
    par_archive_limits_t def;
    par_archive_limits_default(&def);
    par_buf_reset(err);
    int rc = par_archive_extract(&a, dir, lim ? lim : &def, err);
    par_buf_terminate(err);
    par_archive_bytes_free(&a);
    return rc;
}

static void test_good_archive(void **state)
{
    (void)state;
    entry_t e[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0},
                   {"src/", AE_IFDIR, NULL, 0},
                   {"src/main.py", AE_IFREG, "print(1)\n", 0},
                   {"./lib/x.txt", AE_IFREG, "x", 0},
                   {"lib/link", AE_IFLNK, "x.txt", 0}};
    char *dir = fresh_dir("good");
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(extract(e, 5, dir, NULL, &err), PAR_OK);
    char p[600];
    snprintf(p, sizeof(p), "%s/src/main.py", dir);
    assert_true(exists(p));
    snprintf(p, sizeof(p), "%s/lib/link", dir);
    assert_true(exists(p));
    /* read_member */
    par_archive_bytes_t a = make_zip(e, 5);
    par_buf_t out;
    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 1024, &out, &err), PAR_OK);
    assert_int_equal(out.len, 8);
    assert_memory_equal(out.data, "name: a\n", 8);
    par_buf_free(&out);
    assert_int_equal(par_archive_read_member(&a, "missing", 1024, &out, &err), PAR_E_NOT_FOUND);
    par_buf_free(&out);
    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 4, &out, &err), PAR_E_TOO_LARGE);
    par_buf_free(&out);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

typedef struct hostile {
    const char *label;
    entry_t entries[3];
    size_t n;
    const char *needle;
    const char *must_not_exist; /* relative to base */
} hostile_t;

static void test_hostile_archives(void **state)
{
    (void)state;
    hostile_t cases[] = {
        {"slip", {{"../evil-slip", AE_IFREG, "owned", 0}}, 1, "..", "evil-slip"},
        {"nested", {{"a/../../evil-nested", AE_IFREG, "owned", 0}}, 1, "..", "evil-nested"},
        {"abs", {{"/tmp/par-test-evil-abs", AE_IFREG, "owned", 0}}, 1, "absolute", NULL},
        {"symlink-abs",
         {{"link", AE_IFLNK, "/etc", 0}, {"link/passwd-copy", AE_IFREG, "x", 0}},
         2,
         "leaves the package",
         NULL},
        {"symlink-up",
         {{"link", AE_IFLNK, "../..", 0}, {"link/evil-up", AE_IFREG, "x", 0}},
         2,
         "leaves the package",
         "evil-up"},
        {"dup", {{"a.txt", AE_IFREG, "1", 0}, {"a.txt", AE_IFREG, "2", 0}}, 2, "duplicate", NULL},
    };
    par_buf_t err;
    par_buf_init(&err, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *dir = fresh_dir(cases[i].label);
        int rc = extract(cases[i].entries, cases[i].n, dir, NULL, &err);
        if (rc != PAR_E_UNSAFE_ARCHIVE)
            fail_msg("%s: got %s", cases[i].label, par_status_name(rc));
        if (strstr(err.data, cases[i].needle) == NULL)
            fail_msg("%s: error lacks '%s': %s", cases[i].label, cases[i].needle, err.data);
        if (cases[i].must_not_exist) {
            char p[600];
            snprintf(p, sizeof(p), "%s/%s", base, cases[i].must_not_exist);
            assert_false(exists(p));
            snprintf(p, sizeof(p), "%s/../%s", base, cases[i].must_not_exist);
            assert_false(exists(p));
        }
    }
    assert_false(exists("/tmp/par-test-evil-abs"));
    par_buf_free(&err);
}

/* libarchive's ZIP writer will not store FIFOs or devices, so the test stores a
 * regular file and rewrites the Unix mode kept in the central directory's
 * external attributes: exactly what a hostile archive would carry. */
static void test_special_files(void **state)
{
    (void)state;
    const unsigned modes[] = {0010644 /* FIFO */, 0020644 /* char device */,
                              0060644 /* block device */, 0140644 /* socket */};
    par_buf_t err;
    par_buf_init(&err, 0);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    for (size_t m = 0; m < sizeof(modes) / sizeof(*modes); m++) {
        entry_t e[] = {{"special", AE_IFREG, "", 0}};
        par_archive_bytes_t a = make_zip(e, 1);
        int patched = 0;
        for (size_t i = 0; i + 46 <= a.len; i++) {
            if (memcmp(a.data + i, "PK\x01\x02", 4) == 0) {
                a.data[i + 5] = 3; /* made by: Unix */
                uint32_t attr = (uint32_t)modes[m] << 16;
                memcpy(a.data + i + 38, &attr, 4);
                patched++;
            }
        }
        assert_int_equal(patched, 1);
        char label[32];
        snprintf(label, sizeof(label), "special-%zu", m);
        par_buf_reset(&err);
        char *dir = fresh_dir(label);
        int rc = par_archive_extract(&a, dir, &lim, &err);
        par_buf_terminate(&err);
        if (m == 0) {
            /* libarchive reports a FIFO mode as a regular file: extracting it
             * must then produce a plain file, never a FIFO */
            char p[600];
            struct stat st;
            snprintf(p, sizeof(p), "%s/special", dir);
            assert_true(rc == PAR_E_UNSAFE_ARCHIVE ||
                        (rc == PAR_OK && lstat(p, &st) == 0 && S_ISREG(st.st_mode)));
        } else {
            assert_int_equal(rc, PAR_E_UNSAFE_ARCHIVE);
            assert_non_null(strstr(err.data, "special files"));
        }
        par_archive_bytes_free(&a);
    }
    par_buf_free(&err);
}

static void test_bombs(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    /* by ratio: 8 MiB of zeros compresses to a few KiB */
    lim.max_ratio = 50;
    entry_t zero[] = {{"zeros.bin", AE_IFREG, NULL, 8u << 20}};
    assert_int_equal(extract(zero, 1, fresh_dir("bomb-ratio"), &lim, &err), PAR_E_UNSAFE_ARCHIVE);
    assert_non_null(strstr(err.data, "compression ratio"));
    /* by total size and entry size */
    par_archive_limits_default(&lim);
    lim.max_total_bytes = 1u << 20;
    assert_int_equal(extract(zero, 1, fresh_dir("bomb-total"), &lim, &err), PAR_E_UNSAFE_ARCHIVE);
    assert_non_null(strstr(err.data, "in total"));
    par_archive_limits_default(&lim);
    lim.max_entry_bytes = 1u << 20;
    assert_int_equal(extract(zero, 1, fresh_dir("bomb-entry"), &lim, &err), PAR_E_UNSAFE_ARCHIVE);
    assert_non_null(strstr(err.data, "uncompressed"));
    /* by count */
    enum { N = 40 };
    entry_t many[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "f%d", i);
        many[i] = (entry_t){names[i], AE_IFREG, "x", 0};
    }
    par_archive_limits_default(&lim);
    lim.max_entries = 30;
    assert_int_equal(extract(many, N, fresh_dir("bomb-count"), &lim, &err), PAR_E_UNSAFE_ARCHIVE);
    assert_non_null(strstr(err.data, "entries"));
    par_buf_free(&err);
}

static void test_corrupt(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    entry_t e[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0}, {"big.bin", AE_IFREG, NULL, 300000}};
    par_archive_bytes_t a = make_zip(e, 2);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    /* truncated: cut in half */
    par_archive_bytes_t half = {a.data, a.len / 2, ""};
    int rc = par_archive_extract(&half, fresh_dir("truncated"), &lim, &err);
    assert_int_equal(rc, PAR_E_INVALID_PACKAGE);
    /* not a zip at all */
    par_archive_bytes_t junk = {(unsigned char *)"definitely not a zip archive", 28, ""};
    assert_int_equal(par_archive_extract(&junk, fresh_dir("junk"), &lim, &err),
                     PAR_E_INVALID_PACKAGE);
    par_buf_t out;
    assert_int_equal(par_archive_read_member(&junk, "agent.yaml", 100, &out, &err),
                     PAR_E_INVALID_PACKAGE);
    par_buf_free(&out);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void test_load_and_digest(void **state)
{
    (void)state;
    char h[65];
    par_sha256_hex("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char path[600];
    snprintf(path, sizeof(path), "%s/file.bin", base);
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_OK);
    assert_string_equal(a.sha256, h);
    assert_int_equal(a.len, 3);
    par_archive_bytes_free(&a);
    lim.max_archive_bytes = 2;
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_E_TOO_LARGE);
    assert_int_equal(par_archive_load("/nonexistent/x.apkg", &lim, &a, &err), PAR_E_IO);
    par_buf_free(&err);
}

static void write_file(const char *dir, const char *rel, const char *data)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    FILE *f = fopen(p, "wb");
    fputs(data, f);
    fclose(f);
}

static void test_pack_deterministic(void **state)
{
    (void)state;
    char *d = fresh_dir("pack-src");
    char src[600], lib[700], out1[600], out2[600];
    snprintf(src, sizeof(src), "%s", d);
    write_file(src, "agent.yaml", "name: a\nmetadata: {version: 1.0.0}\n");
    snprintf(lib, sizeof(lib), "%s/lib", src);
    mkdir(lib, 0755);
    write_file(src, "lib/z.txt", "zzz");
    write_file(src, "lib/a.txt", "aaa");
    snprintf(out1, sizeof(out1), "%s/one.apkg", base);
    snprintf(out2, sizeof(out2), "%s/two.apkg", base);
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_archive_pack(src, out1, &err), PAR_OK);
    sleep(1);
    write_file(src, "lib/a.txt", "aaa"); /* new mtime, same content */
    assert_int_equal(par_archive_pack(src, out2, &err), PAR_OK);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a, b;
    assert_int_equal(par_archive_load(out1, &lim, &a, &err), PAR_OK);
    assert_int_equal(par_archive_load(out2, &lim, &b, &err), PAR_OK);
    assert_string_equal(a.sha256, b.sha256);
    /* round trip */
    char *dst = fresh_dir("pack-dst");
    assert_int_equal(par_archive_extract(&a, dst, &lim, &err), PAR_OK);
    char p[700];
    snprintf(p, sizeof(p), "%s/lib/z.txt", dst);
    assert_true(exists(p));
    par_archive_bytes_free(&a);
    par_archive_bytes_free(&b);
    /* no agent.yaml: refused */
    assert_int_equal(par_archive_pack(lib, out1, &err), PAR_E_INVALID_PACKAGE);
    par_buf_free(&err);
}

static int setup(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/par-archive-test-XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_archive),
        cmocka_unit_test(test_hostile_archives),
        cmocka_unit_test(test_special_files),
        cmocka_unit_test(test_bombs),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_load_and_digest),
        cmocka_unit_test(test_pack_deterministic),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
