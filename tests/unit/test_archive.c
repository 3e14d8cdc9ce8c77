/*
 * Unit tests for pkg/archive.c.
 *
 * Hostile archives are built in the test itself: with libarchive's writer (it
 * accepts any name: "../evil", "/tmp/x", links anywhere) or, for what no
 * writer produces (NUL bytes in names, device entries, a local header that
 * disagrees with the central directory), with raw_zip(), a minimal writer of
 * stored entries. Every refused extraction runs in a "jail": dest_dir is
 * jail/x/y/dest, so an escape of up to three levels would land inside the
 * jail, and assert_only_dest() then checks that nothing but dest's own tree
 * exists there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <zlib.h>

#include <par/par.h>

#include "pkg/archive.h"
#include "pkg/archive_internal.h"

#define HARDLINK (-1) /* entry_t.type: a hard link to `data` */

typedef struct entry {
    const char *name;
    int type;         /* AE_IFREG, AE_IFDIR, AE_IFLNK or HARDLINK */
    const char *data; /* file content, or link target */
    size_t zeros;     /* when a file's data is NULL: this many zero bytes */
    unsigned perm;    /* 0: 0644 */
} entry_t;

static char top[PATH_MAX];

/* snprintf into an array, failing the test on truncation */
#define FMT(buf, ...) assert_true(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

/* ---- helpers --------------------------------------------------------------------- */

/* A ZIP of `entries`, written by libarchive into memory. */
static par_archive_bytes_t make_zip(const entry_t *entries, size_t n)
{
    size_t cap = 32u << 20, used = 0;
    unsigned char *buf = malloc(cap);
    char *zeros = calloc(1, 1u << 20);
    assert_non_null(buf);
    assert_non_null(zeros);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_options(a, "zip:compression=deflate"), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        const entry_t *en = &entries[i];
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, en->name);
        archive_entry_set_perm(e, en->perm ? en->perm : 0644);
        archive_entry_set_mtime(e, 1700000000, 0);
        if (en->type == HARDLINK) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, en->data);
            archive_write_header(a, e);
        } else if (en->type == AE_IFLNK) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, en->data);
            assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        } else if (en->type == AE_IFDIR) {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_size(e, 0);
            assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        } else {
            size_t len = en->data ? strlen(en->data) : en->zeros;
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)len);
            assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
            if (en->data) {
                assert_int_equal(archive_write_data(a, en->data, len), (la_ssize_t)len);
            } else {
                for (size_t left = len; left > 0;) {
                    size_t k = left < (1u << 20) ? left : (1u << 20);
                    assert_int_equal(archive_write_data(a, zeros, k), (la_ssize_t)k);
                    left -= k;
                }
            }
        }
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    free(zeros);
    par_archive_bytes_t out = {.data = buf, .len = used};
    par_sha256_hex(buf, used, out.sha256);
    return out;
}

/* One stored entry of raw_zip(). */
typedef struct raw_entry {
    const char *name; /* bytes, may hold NUL */
    size_t nlen;
    const char *local_name; /* NULL: same as name */
    size_t lnlen;
    const char *data;
    unsigned mode; /* full st_mode kept in the external attributes */
} raw_entry_t;

static void put16(unsigned char **p, unsigned v)
{
    (*p)[0] = (unsigned char)v;
    (*p)[1] = (unsigned char)(v >> 8);
    *p += 2;
}

static void put32(unsigned char **p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p, v >> 16);
}

static void putbytes(unsigned char **p, const void *s, size_t n)
{
    memcpy(*p, s, n);
    *p += n;
}

/* A ZIP of stored entries written byte by byte (APPNOTE 4.3), for what no
 * real writer produces. */
static par_archive_bytes_t raw_zip(const raw_entry_t *e, size_t n)
{
    unsigned char *buf = calloc(1, 1u << 16), *p = buf;
    uint32_t offsets[16];
    assert_non_null(buf);
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        const char *ln = e[i].local_name ? e[i].local_name : e[i].name;
        size_t lnl = e[i].local_name ? e[i].lnlen : e[i].nlen, dl = strlen(e[i].data);
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)e[i].data, (uInt)dl);
        offsets[i] = (uint32_t)(p - buf);
        putbytes(&p, "PK\3\4", 4);
        put16(&p, 20), put16(&p, 0), put16(&p, 0), put16(&p, 0), put16(&p, 0x21);
        put32(&p, crc), put32(&p, (uint32_t)dl), put32(&p, (uint32_t)dl);
        put16(&p, (unsigned)lnl), put16(&p, 0);
        putbytes(&p, ln, lnl);
        putbytes(&p, e[i].data, dl);
    }
    uint32_t cd = (uint32_t)(p - buf);
    for (size_t i = 0; i < n; i++) {
        size_t dl = strlen(e[i].data);
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)e[i].data, (uInt)dl);
        putbytes(&p, "PK\1\2", 4);
        put16(&p, 0x031e), put16(&p, 20), put16(&p, 0), put16(&p, 0), put16(&p, 0);
        put16(&p, 0x21);
        put32(&p, crc), put32(&p, (uint32_t)dl), put32(&p, (uint32_t)dl);
        put16(&p, (unsigned)e[i].nlen), put16(&p, 0), put16(&p, 0), put16(&p, 0), put16(&p, 0);
        put32(&p, (uint32_t)e[i].mode << 16), put32(&p, offsets[i]);
        putbytes(&p, e[i].name, e[i].nlen);
    }
    uint32_t cd_size = (uint32_t)(p - buf) - cd;
    putbytes(&p, "PK\5\6", 4);
    put16(&p, 0), put16(&p, 0), put16(&p, (unsigned)n), put16(&p, (unsigned)n);
    put32(&p, cd_size), put32(&p, cd), put16(&p, 0);
    par_archive_bytes_t out = {.data = buf, .len = (size_t)(p - buf)};
    return out;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(data, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1024, n = 0;
    char *s = malloc(cap + 1);
    assert_non_null(s);
    size_t r;
    while ((r = fread(s + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *bigger = realloc(s, (cap *= 2) + 1);
            assert_non_null(bigger);
            s = bigger;
        }
    }
    fclose(f);
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static void assert_file(const char *dir, const char *rel, const char *content, unsigned mode)
{
    char p[PATH_MAX];
    FMT(p, "%s/%s", dir, rel);
    struct stat st;
    if (lstat(p, &st) != 0)
        fail_msg("%s: %s", p, strerror(errno));
    assert_true(S_ISREG(st.st_mode));
    if ((st.st_mode & 07777) != mode)
        fail_msg("%s: mode %o, expected %o", p, st.st_mode & 07777, mode);
    char *got = read_file(p, NULL);
    assert_non_null(got);
    assert_string_equal(got, content);
    free(got);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the jail --------------------------------------------------------------------- */

typedef struct jail {
    char root[PATH_MAX];
    char dest[PATH_MAX];
} jail_t;

static void make_jail(const char *label, jail_t *j)
{
    char p[PATH_MAX];
    FMT(j->root, "%s/%s", top, label);
    assert_int_equal(mkdir(j->root, 0755), 0);
    FMT(p, "%s/x", j->root);
    assert_int_equal(mkdir(p, 0755), 0);
    FMT(p, "%s/x/y", j->root);
    assert_int_equal(mkdir(p, 0755), 0);
    FMT(j->dest, "%s/x/y/dest", j->root);
    assert_int_equal(mkdir(j->dest, 0755), 0);
}

static const jail_t *g_jail;
static char g_stray[PATH_MAX];

static int stray_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    char x[PATH_MAX], y[PATH_MAX];
    FMT(x, "%s/x", g_jail->root);
    FMT(y, "%s/x/y", g_jail->root);
    size_t dl = strlen(g_jail->dest);
    if (strcmp(path, g_jail->root) == 0 || strcmp(path, x) == 0 || strcmp(path, y) == 0)
        return 0;
    if (strncmp(path, g_jail->dest, dl) == 0 && (path[dl] == '\0' || path[dl] == '/'))
        return 0;
    FMT(g_stray, "%s", path);
    return 1;
}

/* Nothing exists in the jail outside dest's own tree. */
static void assert_only_dest(const jail_t *j)
{
    g_jail = j;
    g_stray[0] = '\0';
    if (nftw(j->root, stray_cb, 16, FTW_PHYS) != 0)
        fail_msg("written outside dest_dir: %s", g_stray);
}

static int dir_entries(const char *path)
{
    int n = 0;
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Extracts `a` into a fresh jail and returns the status; `err` holds the
 * message, NUL-terminated. */
static int extract_in(const par_archive_bytes_t *a, const char *label,
                      const par_archive_limits_t *lim, jail_t *j, par_buf_t *err)
{
    par_archive_limits_t def;
    par_archive_limits_default(&def);
    make_jail(label, j);
    par_buf_reset(err);
    int rc = par_archive_extract(a, j->dest, lim ? lim : &def, err);
    par_buf_terminate(err);
    return rc;
}

static int extract_entries(const entry_t *e, size_t n, const char *label,
                           const par_archive_limits_t *lim, jail_t *j, par_buf_t *err)
{
    par_archive_bytes_t a = make_zip(e, n);
    int rc = extract_in(&a, label, lim, j, err);
    par_archive_bytes_free(&a);
    return rc;
}

static void expect_refused(int rc, int want, const par_buf_t *err, const char *needle,
                           const char *label)
{
    if (rc != want)
        fail_msg("%s: got %s, expected %s (%s)", label, par_status_name(rc), par_status_name(want),
                 err->data);
    if (needle && strstr(err->data, needle) == NULL)
        fail_msg("%s: the error lacks \"%s\": %s", label, needle, err->data);
}

/* ---- limits, digests, load ------------------------------------------------------- */

static void test_limits_default(void **state)
{
    (void)state;
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    assert_int_equal(lim.max_archive_bytes, 512ull << 20);
    assert_int_equal(lim.max_entries, 10000);
    assert_int_equal(lim.max_total_bytes, 1ull << 30);
    assert_int_equal(lim.max_entry_bytes, 512ull << 20);
    assert_int_equal(lim.max_ratio, 200);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char h[65];
    par_sha256_hex("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    par_sha256_hex("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    par_sha256_hex(two, strlen(two), h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_load(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX], empty[PATH_MAX];
    FMT(dir, "%s/load", top);
    assert_int_equal(mkdir(dir, 0755), 0);
    FMT(path, "%s/abc.apkg", dir);
    write_file(path, "abc");
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a;
    par_buf_t err;
    par_buf_init(&err, 0);

    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_OK);
    assert_int_equal(a.len, 3);
    assert_memory_equal(a.data, "abc", 3);
    assert_string_equal(a.sha256,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    par_archive_bytes_free(&a);
    assert_null(a.data);

    /* exactly at the cap is fine, one byte over is not */
    lim.max_archive_bytes = 3;
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_OK);
    par_archive_bytes_free(&a);
    lim.max_archive_bytes = 2;
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_E_TOO_LARGE);
    assert_null(a.data);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "abc.apkg"));
    assert_non_null(strstr(err.data, "cap"));

    par_archive_limits_default(&lim);
    par_buf_reset(&err);
    assert_int_equal(par_archive_load("/nonexistent/x.apkg", &lim, &a, &err), PAR_E_IO);
    par_buf_terminate(&err);
    assert_string_equal(err.data, "/nonexistent/x.apkg: cannot open: No such file or directory\n");

    /* a directory is not an archive; err may be NULL */
    assert_int_equal(par_archive_load(dir, &lim, &a, NULL), PAR_E_INVALID_PACKAGE);

    /* an empty file loads (it is refused later as not a ZIP) */
    FMT(empty, "%s/empty.apkg", dir);
    write_file(empty, "");
    assert_int_equal(par_archive_load(empty, &lim, &a, &err), PAR_OK);
    assert_int_equal(a.len, 0);
    assert_string_equal(a.sha256,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    par_buf_reset(&err);
    jail_t j;
    assert_int_equal(extract_in(&a, "load-empty", NULL, &j, &err), PAR_E_INVALID_PACKAGE);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

/* A file PAR may take a read lease on is mapped, not copied; a writer that
 * comes while it is loaded waits, and the extraction that was reading it is
 * refused; a file already open for writing is copied as before. */
static void test_load_leased(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX];
    FMT(dir, "%s/lease", top);
    assert_int_equal(mkdir(dir, 0755), 0);
    FMT(path, "%s/pkg.apkg", dir);
    entry_t e[] = {{"agent.yaml", AE_IFREG, "name: leased\n", 0, 0},
                   {"payload.bin", AE_IFREG, NULL, 512u << 10, 0}};
    par_archive_bytes_t z = make_zip(e, 2);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(z.data, 1, z.len, f), z.len);
    assert_int_equal(fclose(f), 0);
    char want[65];
    par_sha256_hex(z.data, z.len, want);

    /* the mapping is used on local filesystems with a lease-break margin */
    int probe = open(path, O_RDONLY);
    assert_true(probe >= 0);
    struct statfs sf;
    assert_int_equal(fstatfs(probe, &sf), 0);
    unsigned long t = (unsigned long)sf.f_type;
    int local =
        t == 0xEF53 || t == 0x58465342 || t == 0x9123683E || t == 0x01021994 || t == 0xF2F52010;
    int leases = fcntl(probe, F_SETLEASE, F_RDLCK) == 0;
    close(probe);
    int secs = 0;
    FILE *lb = fopen("/proc/sys/fs/lease-break-time", "r");
    if (lb) {
        if (fscanf(lb, "%d", &secs) != 1)
            secs = 0;
        fclose(lb);
    }
    if (!local || !leases || secs < 10) {
        par_archive_bytes_free(&z);
        skip(); /* not here: leases off or unsupported, or a filesystem PAR copies from */
    }

    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_buf_t err;
    par_buf_init(&err, 0);
    par_archive_bytes_t a;
    jail_t j;

    /* leased and mapped: the same bytes and digest as a copy */
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_OK);
    assert_int_equal(a._leased, 1);
    assert_int_equal(a.len, z.len);
    assert_memory_equal(a.data, z.data, z.len);
    assert_string_equal(a.sha256, want);
    assert_int_equal(extract_in(&a, "leased", NULL, &j, &err), PAR_OK);
    assert_file(j.dest, "agent.yaml", "name: leased\n", 0644);
    par_archive_bytes_free(&a);
    assert_null(a.data);

    /* a writer arrives while the bytes are loaded: it waits for the lease,
     * and the extraction reading them is refused */
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_OK);
    assert_int_equal(a._leased, 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int w = open(path, O_WRONLY);
        _exit(w >= 0 && pwrite(w, "X", 1, 0) == 1 ? 0 : 1);
    }
    int pending = 0;
    for (int i = 0; i < 5000 && !pending; i++) {
        pending = fcntl(a._fd, F_GETLEASE) == F_UNLCK;
        if (!pending)
            usleep(1000);
    }
    assert_true(pending);
    assert_int_not_equal(waitpid(pid, NULL, WNOHANG), pid); /* still waiting */
    par_buf_reset(&err);
    int rc = extract_in(&a, "lease-broken", NULL, &j, &err);
    expect_refused(rc, PAR_E_IO, &err, "opened for writing while it was extracted", "lease-broken");
    assert_memory_equal(a.data, z.data, 64); /* unchanged while the lease stood */
    par_archive_bytes_free(&a);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* already open for writing: no lease, so the bytes are copied */
    int w = open(path, O_WRONLY);
    assert_true(w >= 0);
    assert_int_equal(pwrite(w, "P", 1, 0), 1); /* restore the ZIP signature */
    par_buf_reset(&err);
    assert_int_equal(par_archive_load(path, &lim, &a, &err), PAR_OK);
    assert_int_equal(a._leased, 0);
    assert_string_equal(a.sha256, want);
    assert_int_equal(extract_in(&a, "copied", NULL, &j, &err), PAR_OK);
    assert_file(j.dest, "agent.yaml", "name: leased\n", 0644);
    par_archive_bytes_free(&a);
    close(w);

    par_archive_bytes_free(&z);
    par_buf_free(&err);
}

/* ---- read_member ----------------------------------------------------------------- */

static void test_read_member(void **state)
{
    (void)state;
    entry_t e[] = {{"./agent.yaml", AE_IFREG, "name: a\n", 0, 0},
                   {"src/", AE_IFDIR, NULL, 0, 0},
                   {"src/main.py", AE_IFREG, "print(1)\n", 0, 0},
                   {"link", AE_IFLNK, "src/main.py", 0, 0}};
    par_archive_bytes_t a = make_zip(e, 4);
    par_buf_t out, err;
    par_buf_init(&err, 0);

    /* a leading "./" is normalised on both sides */
    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 1024, &out, &err), PAR_OK);
    assert_int_equal(out.len, 8);
    assert_memory_equal(out.data, "name: a\n", 8);
    par_buf_free(&out);
    assert_int_equal(par_archive_read_member(&a, "./src/main.py", 1024, &out, NULL), PAR_OK);
    assert_int_equal(out.len, 9);
    par_buf_free(&out);

    assert_int_equal(par_archive_read_member(&a, "missing.yaml", 1024, &out, &err),
                     PAR_E_NOT_FOUND);
    assert_int_equal(out.len, 0);
    par_buf_free(&out);
    /* exactly the cap fits; one byte less does not */
    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 8, &out, &err), PAR_OK);
    par_buf_free(&out);
    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 7, &out, &err), PAR_E_TOO_LARGE);
    assert_int_equal(out.len, 0);
    par_buf_free(&out);
    /* only regular files are members */
    assert_int_equal(par_archive_read_member(&a, "src", 1024, &out, &err), PAR_E_INVALID_PACKAGE);
    par_buf_free(&out);
    assert_int_equal(par_archive_read_member(&a, "link", 1024, &out, &err), PAR_E_INVALID_PACKAGE);
    par_buf_free(&out);
    assert_int_equal(par_archive_read_member(&a, "../agent.yaml", 1024, &out, &err),
                     PAR_E_NOT_FOUND);
    par_buf_free(&out);
    par_archive_bytes_free(&a);

    /* two entries of the same name: refused, not shadowed */
    entry_t dup[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0, 0},
                     {"./agent.yaml", AE_IFREG, "name: b\n", 0, 0}};
    a = make_zip(dup, 2);
    par_buf_reset(&err);
    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 1024, &out, &err),
                     PAR_E_INVALID_PACKAGE);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "twice"));
    par_buf_free(&out);
    par_archive_bytes_free(&a);

    /* not a ZIP */
    par_archive_bytes_t junk = {.data = (unsigned char *)"definitely not a zip archive", .len = 28};
    assert_int_equal(par_archive_read_member(&junk, "agent.yaml", 100, &out, &err),
                     PAR_E_INVALID_PACKAGE);
    par_buf_free(&out);
    par_buf_free(&err);
}

/* ---- extraction: the good case --------------------------------------------------- */

static void test_extract_good(void **state)
{
    (void)state;
    entry_t e[] = {
        {"./", AE_IFDIR, NULL, 0, 0755},
        {"agent.yaml", AE_IFREG, "name: a\n", 0, 0600},
        {"src/", AE_IFDIR, NULL, 0, 0700},
        {"src/main.py", AE_IFREG, "print(1)\n", 0, 0644},
        {"bin/run.sh", AE_IFREG, "#!/bin/sh\n", 0, 04750}, /* parent implied, setuid */
        {"./lib//x.txt", AE_IFREG, "x", 0, 0},
        {"lib/link", AE_IFLNK, "x.txt", 0, 0},
        {"top", AE_IFLNK, "lib/link", 0, 0}, /* a chain that stays inside */
        {"lib/up", AE_IFLNK, "..", 0, 0},    /* the package root itself */
        {"lib/self", AE_IFLNK, "./../lib/.", 0, 0},
        {"d\xc3\xa9j\xc3\xa0.txt", AE_IFREG, "utf-8", 0, 0},
        {"empty/", AE_IFDIR, NULL, 0, 0},
        {"small.txt", AE_IFREG, NULL, 900u << 10, 0}, /* ratio > 200, but under 1 MiB */
    };
    size_t n = sizeof(e) / sizeof(*e);
    par_buf_t err;
    par_buf_init(&err, 0);
    jail_t j;
    /* modes must not depend on the umask */
    mode_t old = umask(077);
    int rc = extract_entries(e, n, "good", NULL, &j, &err);
    umask(old);
    expect_refused(rc, PAR_OK, &err, NULL, "good");
    assert_int_equal(err.len, 0);

    assert_file(j.dest, "agent.yaml", "name: a\n", 0644);
    assert_file(j.dest, "src/main.py", "print(1)\n", 0644);
    assert_file(j.dest, "bin/run.sh", "#!/bin/sh\n", 0755);
    assert_file(j.dest, "lib/x.txt", "x", 0644);
    assert_file(j.dest, "d\xc3\xa9j\xc3\xa0.txt", "utf-8", 0644);
    const char *dirs[] = {"src", "bin", "lib", "empty"};
    for (size_t i = 0; i < 4; i++) {
        char p[PATH_MAX];
        struct stat st;
        FMT(p, "%s/%s", j.dest, dirs[i]);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        if ((st.st_mode & 07777) != 0755)
            fail_msg("%s: mode %o", p, st.st_mode & 07777);
    }
    const char *links[][2] = {
        {"lib/link", "x.txt"}, {"top", "lib/link"}, {"lib/up", ".."}, {"lib/self", "./../lib/."}};
    for (size_t i = 0; i < 4; i++) {
        char p[PATH_MAX], t[PATH_MAX];
        FMT(p, "%s/%s", j.dest, links[i][0]);
        ssize_t tn = readlink(p, t, sizeof(t) - 1);
        assert_true(tn > 0);
        t[tn] = '\0';
        assert_string_equal(t, links[i][1]);
    }
    char p[PATH_MAX];
    FMT(p, "%s/top", j.dest);
    char *via = read_file(p, NULL);
    assert_string_equal(via, "x");
    free(via);
    FMT(p, "%s/small.txt", j.dest);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 900u << 10);
    assert_only_dest(&j);

    /* err may be NULL */
    par_archive_bytes_t a = make_zip(e, n);
    make_jail("good-null-err", &j);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    assert_int_equal(par_archive_extract(&a, j.dest, &lim, NULL), PAR_OK);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void test_extract_dest_checks(void **state)
{
    (void)state;
    entry_t e[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0, 0}};
    par_archive_bytes_t a = make_zip(e, 1);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_buf_t err;
    par_buf_init(&err, 0);
    jail_t j;
    make_jail("dest-checks", &j);
    char p[PATH_MAX];
    FMT(p, "%s/already-here", j.dest);
    write_file(p, "x");
    assert_int_equal(par_archive_extract(&a, j.dest, &lim, &err), PAR_E_INVALID_ARGUMENT);
    par_buf_terminate(&err);
    assert_non_null(strstr(err.data, "not empty"));
    FMT(p, "%s/missing", j.root);
    assert_int_equal(par_archive_extract(&a, p, &lim, &err), PAR_E_IO);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

/* ---- extraction: refusals -------------------------------------------------------- */

typedef struct hostile {
    const char *label;
    entry_t e[3];
    size_t n;
    int want;
    const char *needle;
} hostile_t;

static void run_hostile(const hostile_t *cases, size_t count)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    for (size_t i = 0; i < count; i++) {
        jail_t j;
        int rc = extract_entries(cases[i].e, cases[i].n, cases[i].label, NULL, &j, &err);
        expect_refused(rc, cases[i].want, &err, cases[i].needle, cases[i].label);
        /* one line per refusal, naming the entry */
        assert_non_null(strstr(err.data, "entry \""));
        assert_only_dest(&j);
    }
    par_buf_free(&err);
}

static void test_extract_path_rules(void **state)
{
    (void)state;
    char abs_name[64], long_name[400];
    FMT(abs_name, "/tmp/par-test-evil-abs-%d", (int)getpid());
    memset(long_name, 'a', 300);
    long_name[300] = '\0';
    hostile_t cases[] = {
        {"slip",
         {{"../evil", AE_IFREG, "owned", 0, 0}},
         1,
         PAR_E_UNSAFE_ARCHIVE,
         "entry \"../evil\": path escapes the package (..)"},
        {"slip-late",
         {{"agent.yaml", AE_IFREG, "name: a\n", 0, 0}, {"./../evil", AE_IFREG, "owned", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "path escapes the package"},
        {"nested", {{"a/../../evil", AE_IFREG, "owned", 0, 0}}, 1, PAR_E_UNSAFE_ARCHIVE, ".."},
        {"deep",
         {{"a/b/../../../../evil", AE_IFREG, "owned", 0, 0}},
         1,
         PAR_E_UNSAFE_ARCHIVE,
         ".."},
        {"dir-slip", {{"../evil-dir/", AE_IFDIR, NULL, 0, 0}}, 1, PAR_E_UNSAFE_ARCHIVE, ".."},
        /* libarchive turns backslashes into '/', and then ".." is caught */
        {"backslash", {{"..\\..\\evil", AE_IFREG, "owned", 0, 0}}, 1, PAR_E_UNSAFE_ARCHIVE, ".."},
        {"abs", {{abs_name, AE_IFREG, "owned", 0, 0}}, 1, PAR_E_UNSAFE_ARCHIVE, "absolute path"},
        {"abs-root", {{"/", AE_IFDIR, NULL, 0, 0}}, 1, PAR_E_UNSAFE_ARCHIVE, "absolute path"},
        {"control",
         {{"a\nentry \"x\": fine", AE_IFREG, "x", 0, 0}},
         1,
         PAR_E_UNSAFE_ARCHIVE,
         "entry \"a\\nentry \\\"x\\\": fine\": control character"},
        {"root-file", {{"./.", AE_IFREG, "x", 0, 0}}, 1, PAR_E_UNSAFE_ARCHIVE, "package root"},
        {"long-component",
         {{long_name, AE_IFREG, "x", 0, 0}},
         1,
         PAR_E_UNSAFE_ARCHIVE,
         "longer than 255"},
    };
    run_hostile(cases, sizeof(cases) / sizeof(*cases));
    assert_false(exists(abs_name));
}

/* A chain of directories as deep as the name-length check lets through used
 * to be extracted, and every later walk of it recursed once per level. */
static void test_extract_depth(void **state)
{
    (void)state;
    static char deep[4096], at_cap[200], over_cap[200];
    for (int i = 0; i < 2040; i++)
        memcpy(deep + 2 * i, "d/", 2);
    strcpy(deep + 2 * 2040, "f");
    for (int i = 0; i < PAR_ARCHIVE_MAX_DEPTH; i++)
        memcpy(at_cap + 2 * i, "d/", 2), memcpy(over_cap + 2 * i, "d/", 2);
    at_cap[2 * PAR_ARCHIVE_MAX_DEPTH - 1] = '\0';      /* d/…/d: 64 levels */
    strcpy(over_cap + 2 * PAR_ARCHIVE_MAX_DEPTH, "f"); /* d/…/d/f: 65 levels */
    hostile_t cases[] = {
        {"depth-2041",
         {{deep, AE_IFREG, "x", 0, 0}},
         1,
         PAR_E_BAD_ARCHIVE,
         "2041 directory levels deep, more than the limit of 64"},
        {"depth-65",
         {{over_cap, AE_IFREG, "x", 0, 0}},
         1,
         PAR_E_BAD_ARCHIVE,
         "65 directory levels deep"},
    };
    run_hostile(cases, sizeof(cases) / sizeof(*cases));
    entry_t ok[] = {{at_cap, AE_IFREG, "x", 0, 0}};
    par_buf_t err;
    par_buf_init(&err, 0);
    jail_t j;
    assert_int_equal(extract_entries(ok, 1, "depth-64", NULL, &j, &err), PAR_OK);
    par_buf_free(&err);
}

static void test_extract_symlinks(void **state)
{
    (void)state;
    hostile_t cases[] = {
        {"ln-abs",
         {{"link", AE_IFLNK, "/etc", 0, 0}, {"link/passwd", AE_IFREG, "x", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "entry \"link\": symlink to \"/etc\" leaves the package"},
        {"ln-up",
         {{"link", AE_IFLNK, "../..", 0, 0}, {"link/evil", AE_IFREG, "x", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "leaves the package"},
        {"ln-up-nested",
         {{"a/b/link", AE_IFLNK, "../../../x", 0, 0}},
         1,
         PAR_E_UNSAFE_ARCHIVE,
         "leaves the package"},
        {"ln-sneaky",
         {{"a/link", AE_IFLNK, "b/../../../x", 0, 0}},
         1,
         PAR_E_UNSAFE_ARCHIVE,
         "leaves the package"},
        /* each link stays inside on its own; together they leave */
        {"ln-chain",
         {{"d/up", AE_IFLNK, "..", 0, 0}, {"x", AE_IFLNK, "d/up/..", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "through other links"},
        {"ln-loop",
         {{"a", AE_IFLNK, "b", 0, 0}, {"b", AE_IFLNK, "a", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "loop"},
        /* a link inside, then a write through it: never follow a link to write */
        {"ln-parent",
         {{"real/", AE_IFDIR, NULL, 0, 0},
          {"sub", AE_IFLNK, "real", 0, 0},
          {"sub/f", AE_IFREG, "x", 0, 0}},
         3,
         PAR_E_UNSAFE_ARCHIVE,
         "a parent is a symlink"},
    };
    run_hostile(cases, sizeof(cases) / sizeof(*cases));
}

/* libarchive's ZIP reader never reports a hard link (the ZIP writer stores the
 * entry as an empty regular file): whatever comes out must not be a link to
 * the target. */
static void test_extract_hard_link(void **state)
{
    (void)state;
    entry_t e[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0, 0},
                   {"hl", HARDLINK, "/etc/passwd", 0, 0},
                   {"hl2", HARDLINK, "agent.yaml", 0, 0}};
    par_buf_t err;
    par_buf_init(&err, 0);
    jail_t j;
    int rc = extract_entries(e, 3, "hardlink", NULL, &j, &err);
    assert_true(rc == PAR_OK || rc == PAR_E_UNSAFE_ARCHIVE);
    if (rc == PAR_E_UNSAFE_ARCHIVE)
        assert_non_null(strstr(err.data, "hard link"));
    const char *names[] = {"hl", "hl2"};
    for (size_t i = 0; i < 2 && rc == PAR_OK; i++) {
        char p[PATH_MAX];
        struct stat st, passwd;
        FMT(p, "%s/%s", j.dest, names[i]);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_nlink, 1);
        if (stat("/etc/passwd", &passwd) == 0)
            assert_false(st.st_ino == passwd.st_ino && st.st_dev == passwd.st_dev);
    }
    assert_only_dest(&j);
    par_buf_free(&err);
}

/* Devices, FIFOs, sockets and links carried in the central directory's Unix
 * mode, as a hostile archive would. */
static void test_extract_special_files(void **state)
{
    (void)state;
    struct {
        unsigned mode;
        const char *needle;
    } cases[] = {
        {0020644, "character device"},
        {0060644, "block device"},
        {0140644, "socket"},
        {0120777, "leaves the package"}, /* a symlink whose data is "/etc/passwd" */
    };
    par_buf_t err;
    par_buf_init(&err, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        raw_entry_t r[] = {{"agent.yaml", 10, NULL, 0, "name: a\n", 0100644},
                           {"special", 7, NULL, 0, "/etc/passwd", cases[i].mode}};
        par_archive_bytes_t a = raw_zip(r, 2);
        char label[32];
        FMT(label, "special-%zu", i);
        jail_t j;
        int rc = extract_in(&a, label, NULL, &j, &err);
        expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, cases[i].needle, label);
        assert_non_null(strstr(err.data, "entry \"special\""));
        assert_only_dest(&j);
        par_archive_bytes_free(&a);
    }
    /* a FIFO mode is reported by libarchive as a regular file: it must come out
     * as one, never as a FIFO */
    raw_entry_t fifo[] = {{"fifo", 4, NULL, 0, "data", 0010644}};
    par_archive_bytes_t a = raw_zip(fifo, 1);
    jail_t j;
    int rc = extract_in(&a, "special-fifo", NULL, &j, &err);
    if (rc == PAR_OK) {
        assert_file(j.dest, "fifo", "data", 0644);
    } else {
        expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "FIFO", "fifo");
    }
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void test_extract_duplicates(void **state)
{
    (void)state;
    hostile_t cases[] = {
        {"dup-file",
         {{"a.txt", AE_IFREG, "1", 0, 0}, {"a.txt", AE_IFREG, "2", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "duplicate entry"},
        {"dup-dotslash",
         {{"a.txt", AE_IFREG, "1", 0, 0}, {"./a.txt", AE_IFREG, "2", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "duplicate entry"},
        {"dup-file-dir",
         {{"a", AE_IFREG, "1", 0, 0}, {"a/", AE_IFDIR, NULL, 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "duplicate entry"},
        {"dup-link-file",
         {{"a", AE_IFLNK, "b", 0, 0}, {"a", AE_IFREG, "2", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "duplicate entry"},
        {"file-as-parent",
         {{"a", AE_IFREG, "1", 0, 0}, {"a/b", AE_IFREG, "2", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "a parent is a symlink or a file"},
        {"dir-then-file",
         {{"a/b", AE_IFREG, "1", 0, 0}, {"a", AE_IFREG, "2", 0, 0}},
         2,
         PAR_E_UNSAFE_ARCHIVE,
         "conflicts with an earlier entry"},
    };
    run_hostile(cases, sizeof(cases) / sizeof(*cases));
    /* the first copy was written and kept its content */
    char p[PATH_MAX];
    FMT(p, "%s/dup-file/x/y/dest/a.txt", top);
    char *s = read_file(p, NULL);
    assert_non_null(s);
    assert_string_equal(s, "1");
    free(s);
}

/* ---- bombs ----------------------------------------------------------------------- */

static off_t size_of(const char *dir, const char *rel)
{
    char p[PATH_MAX];
    struct stat st;
    FMT(p, "%s/%s", dir, rel);
    return lstat(p, &st) == 0 ? st.st_size : -1;
}

static void test_bomb_ratio(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    lim.max_ratio = 50;
    /* 8 MiB of zeros deflates to about 8 KiB: ~1000:1 */
    entry_t zero[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0, 0},
                      {"zeros.bin", AE_IFREG, NULL, 8u << 20, 0}};
    par_archive_bytes_t a = make_zip(zero, 2);
    assert_true(a.len < (64u << 10));
    jail_t j;
    int rc = extract_in(&a, "bomb-ratio", &lim, &j, &err);
    expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "compression ratio over 50:1", "ratio");
    assert_non_null(strstr(err.data, "entry \"zeros.bin\""));
    /* stopped at max(1 MiB, 50 x archive), not after writing 8 MiB */
    off_t written = size_of(j.dest, "zeros.bin");
    assert_true(written >= 0 && written <= (off_t)(1u << 20));
    assert_only_dest(&j);

    /* the default ratio (200) refuses it too */
    rc = extract_in(&a, "bomb-ratio-default", NULL, &j, &err);
    expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "compression ratio over 200:1", "ratio");
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void test_bomb_sizes(void **state)
{
    (void)state;
    par_buf_t err;
    par_buf_init(&err, 0);
    par_archive_limits_t lim;
    entry_t two[] = {{"a.bin", AE_IFREG, NULL, 700u << 10, 0},
                     {"b.bin", AE_IFREG, NULL, 700u << 10, 0}};
    jail_t j;

    /* total: each entry is under the cap, the sum is not */
    par_archive_limits_default(&lim);
    lim.max_ratio = 0;
    lim.max_total_bytes = 1u << 20;
    int rc = extract_entries(two, 2, "bomb-total", &lim, &j, &err);
    expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "in total", "total");
    assert_true(size_of(j.dest, "a.bin") + size_of(j.dest, "b.bin") <= (off_t)(1u << 20));

    /* one entry */
    entry_t big[] = {{"zeros.bin", AE_IFREG, NULL, 8u << 20, 0}};
    par_archive_limits_default(&lim);
    lim.max_ratio = 0;
    lim.max_entry_bytes = 1u << 20;
    rc = extract_entries(big, 1, "bomb-entry", &lim, &j, &err);
    expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "cap per entry", "entry");
    assert_true(size_of(j.dest, "zeros.bin") <= (off_t)(1u << 20));

    /* headers that lie: both say 1000 bytes; the bytes inflated are what count */
    par_archive_bytes_t a = make_zip(big, 1);
    int patched = 0;
    for (size_t i = 0; i + 46 <= a.len; i++) {
        uint32_t small = 1000;
        if (memcmp(a.data + i, "PK\3\4", 4) == 0)
            memcpy(a.data + i + 22, &small, 4), patched++;
        if (memcmp(a.data + i, "PK\1\2", 4) == 0)
            memcpy(a.data + i + 24, &small, 4), patched++;
    }
    assert_int_equal(patched, 2);
    rc = extract_in(&a, "bomb-lying", &lim, &j, &err);
    assert_true(rc == PAR_E_UNSAFE_ARCHIVE || rc == PAR_E_INVALID_PACKAGE);
    assert_true(size_of(j.dest, "zeros.bin") <= (off_t)(1u << 20));
    assert_only_dest(&j);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void test_bomb_count(void **state)
{
    (void)state;
    enum { N = 40 };
    entry_t many[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        FMT(names[i], "f%02d", i);
        many[i] = (entry_t){names[i], AE_IFREG, "x", 0, 0};
    }
    par_buf_t err;
    par_buf_init(&err, 0);
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    lim.max_entries = 30;
    jail_t j;
    int rc = extract_entries(many, N, "bomb-count", &lim, &j, &err);
    expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "more than 30 entries", "count");
    /* refused from the central directory, before anything was written */
    assert_int_equal(dir_entries(j.dest), 0);
    lim.max_entries = N;
    rc = extract_entries(many, N, "count-exact", &lim, &j, &err);
    expect_refused(rc, PAR_OK, &err, NULL, "count-exact");
    assert_int_equal(dir_entries(j.dest), N);
    par_buf_free(&err);
}

/* Past 65535 entries a ZIP needs its ZIP64 end records: the count is still
 * refused from the central directory, before libarchive or anything else. */
static void test_bomb_count_zip64(void **state)
{
    (void)state;
    enum { N = 70000 };
    size_t cap = 16u << 20, used = 0;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    struct archive *w = archive_write_new();
    archive_write_set_format_zip(w);
    assert_int_equal(archive_write_open_memory(w, buf, cap, &used), ARCHIVE_OK);
    for (int i = 0; i < N; i++) {
        char name[16];
        FMT(name, "f%05d", i);
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, 0);
        assert_int_equal(archive_write_header(w, e), ARCHIVE_OK);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(w), ARCHIVE_OK);
    archive_write_free(w);
    par_archive_bytes_t a = {.data = buf, .len = used};
    assert_non_null(memmem(a.data, a.len, "PK\6\7", 4)); /* the ZIP64 locator */
    par_buf_t err;
    par_buf_init(&err, 0);
    jail_t j;
    int rc = extract_in(&a, "bomb-count-zip64", NULL, &j, &err);
    expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, "more than 10000 entries", "zip64 count");
    assert_int_equal(dir_entries(j.dest), 0);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

/* ---- corrupt archives and the central directory ---------------------------------- */

static void test_corrupt(void **state)
{
    (void)state;
    par_buf_t err, out;
    par_buf_init(&err, 0);
    /* incompressible content, so the archive is mostly file data */
    char *noise = malloc(200001);
    srand(7);
    for (int i = 0; i < 200000; i++)
        noise[i] = (char)('a' + rand() % 26);
    noise[200000] = '\0';
    entry_t e[] = {{"agent.yaml", AE_IFREG, "name: a\n", 0, 0},
                   {"noise.txt", AE_IFREG, noise, 0, 0}};
    par_archive_bytes_t a = make_zip(e, 2);
    jail_t j;

    par_archive_bytes_t half = {.data = a.data, .len = a.len / 2};
    int rc = extract_in(&half, "truncated", NULL, &j, &err);
    expect_refused(rc, PAR_E_INVALID_PACKAGE, &err, "ZIP", "truncated");
    assert_int_equal(par_archive_read_member(&half, "agent.yaml", 100, &out, NULL),
                     PAR_E_INVALID_PACKAGE);
    par_buf_free(&out);

    par_archive_bytes_t junk = {.data = (unsigned char *)"definitely not a zip archive", .len = 28};
    rc = extract_in(&junk, "junk", NULL, &j, &err);
    expect_refused(rc, PAR_E_INVALID_PACKAGE, &err, "not a readable ZIP archive", "junk");
    par_archive_bytes_t empty = {.data = (unsigned char *)"", .len = 0};
    rc = extract_in(&empty, "empty", NULL, &j, &err);
    expect_refused(rc, PAR_E_INVALID_PACKAGE, &err, NULL, "empty");

    /* damage inside the compressed data: inflate or the CRC notices */
    a.data[a.len / 2] ^= 0x55;
    a.data[a.len / 2 + 1] ^= 0xaa;
    rc = extract_in(&a, "corrupt-data", NULL, &j, &err);
    expect_refused(rc, PAR_E_INVALID_PACKAGE, &err, "entry \"noise.txt\"", "corrupt");
    assert_only_dest(&j);
    par_archive_bytes_free(&a);
    free(noise);

    /* a stored entry whose CRC does not match */
    raw_entry_t r[] = {{"agent.yaml", 10, NULL, 0, "name: a\n", 0100644}};
    a = raw_zip(r, 1);
    a.data[30 + 10] = 'N'; /* first data byte */
    rc = extract_in(&a, "bad-crc", NULL, &j, &err);
    expect_refused(rc, PAR_E_INVALID_PACKAGE, &err, "entry \"agent.yaml\"", "crc");
    /* bytes that matched an expected digest or a signature skip the CRC-32
     * checks: they are exactly the bytes the publisher vouched for */
    par_archive_limits_t verified;
    par_archive_limits_default(&verified);
    verified.bytes_verified = 1;
    rc = extract_in(&a, "bad-crc-verified", &verified, &j, &err);
    assert_int_equal(rc, PAR_OK);
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void put64(unsigned char **p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p, (uint32_t)(v >> 32));
}

/* `a` (a raw_zip) with a ZIP64 end record (plus `ext` bytes of extensible
 * data), a locator saying `disks` disks and pointing `delta` bytes off the
 * record, and a classic end record whose fields say "see ZIP64". */
static par_archive_bytes_t with_zip64(const par_archive_bytes_t *a, uint32_t disks, int delta,
                                      size_t ext)
{
    size_t eocd = a->len - 22;
    const unsigned char *e = a->data + eocd;
    uint64_t n = e[10] | e[11] << 8;
    uint64_t cd_size = e[12] | e[13] << 8 | (uint64_t)e[14] << 16 | (uint64_t)e[15] << 24;
    uint64_t cd_off = e[16] | e[17] << 8 | (uint64_t)e[18] << 16 | (uint64_t)e[19] << 24;
    unsigned char *buf = calloc(1, a->len + 128), *p = buf;
    assert_non_null(buf);
    putbytes(&p, a->data, eocd);
    putbytes(&p, "PK\6\6", 4);
    put64(&p, 44 + ext), put16(&p, 45), put16(&p, 45), put32(&p, 0), put32(&p, 0);
    put64(&p, n), put64(&p, n), put64(&p, cd_size), put64(&p, cd_off);
    p += ext;
    putbytes(&p, "PK\6\7", 4);
    put32(&p, 0), put64(&p, (uint64_t)((int64_t)eocd + delta)), put32(&p, disks);
    putbytes(&p, "PK\5\6", 4);
    put16(&p, 0), put16(&p, 0), put16(&p, 0xffff), put16(&p, 0xffff);
    put32(&p, 0xffffffff), put32(&p, 0xffffffff), put16(&p, 0);
    par_archive_bytes_t out = {.data = buf, .len = (size_t)(p - buf)};
    return out;
}

/* Only the ZIP64 end that libarchive and Python's zipfile read alike passes:
 * libarchive ignores a locator that does not say "disk 0 of 1" and seeks to
 * the locator's offset; zipfile takes total disks 0 too and reads the record
 * right before the locator. */
static void test_zip64_locator(void **state)
{
    (void)state;
    raw_entry_t r[] = {{"a.txt", 5, NULL, 0, "hello", 0100644}};
    par_archive_bytes_t plain = raw_zip(r, 1);
    struct {
        uint32_t disks;
        int delta;
        size_t ext;
        int want;
        const char *needle;
    } cases[] = {
        {1, 0, 0, PAR_OK, NULL},
        {0, 0, 0, PAR_E_BAD_ARCHIVE, "does not say \"disk 0 of 1\""},
        {2, 0, 0, PAR_E_BAD_ARCHIVE, "disk 0 of 1"},
        {1, -30, 0, PAR_E_BAD_ARCHIVE, "not right before the ZIP64 locator"},
        {1, 0, 8, PAR_E_BAD_ARCHIVE, "not right before the ZIP64 locator"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        par_archive_bytes_t a = with_zip64(&plain, cases[i].disks, cases[i].delta, cases[i].ext);
        par_buf_t out, err;
        par_buf_init(&err, 0);
        int rc = par_archive_read_member(&a, "a.txt", 0, &out, &err);
        par_buf_terminate(&err);
        if (rc != cases[i].want)
            fail_msg("case %zu: got %s (%s)", i, par_status_name(rc), err.data ? err.data : "");
        if (cases[i].needle && strstr(err.data, cases[i].needle) == NULL)
            fail_msg("case %zu: %s", i, err.data);
        if (rc == PAR_OK)
            assert_memory_equal(out.data, "hello", 5);
        par_buf_free(&out);
        par_buf_free(&err);
        free(a.data);
    }
    par_archive_bytes_free(&plain);
}

static void test_central_directory(void **state)
{
    (void)state;
    par_buf_t err, out;
    par_buf_init(&err, 0);
    jail_t j;

    /* the raw writer itself is sound */
    raw_entry_t good[] = {{"agent.yaml", 10, NULL, 0, "name: a\n", 0100644},
                          {"run.sh", 6, NULL, 0, "#!/bin/sh\n", 0100755}};
    par_archive_bytes_t a = raw_zip(good, 2);
    int rc = extract_in(&a, "raw-good", NULL, &j, &err);
    expect_refused(rc, PAR_OK, &err, NULL, "raw-good");
    assert_file(j.dest, "run.sh", "#!/bin/sh\n", 0755);

    /* bytes prepended (a self-extractor): the offsets are corrected */
    unsigned char *pre = malloc(a.len + 1000);
    memset(pre, 'J', 1000);
    memcpy(pre + 1000, a.data, a.len);
    par_archive_bytes_t pa = {.data = pre, .len = a.len + 1000};
    rc = extract_in(&pa, "prepended", NULL, &j, &err);
    expect_refused(rc, PAR_OK, &err, NULL, "prepended");
    assert_file(j.dest, "agent.yaml", "name: a\n", 0644);
    par_archive_bytes_free(&pa);
    par_archive_bytes_free(&a);

    struct {
        const char *label;
        raw_entry_t e;
        const char *needle;
    } cases[] = {
        /* libarchive would cut the name at the NUL and write "evil" */
        {"nul", {"evil\0/../../x", 13, NULL, 0, "x", 0100644}, "entry \"evil\\u0000/../../x\""},
        {"empty-name", {"", 0, NULL, 0, "x", 0100644}, "entry \"\": empty name"},
        /* unzip and zipfile list agent.yaml, the data says evil.yaml */
        {"mismatch",
         {"agent.yaml", 10, "evil.yaml", 9, "x", 0100644},
         "its local header names it \"evil.yaml\""},
        {"mismatch-slip",
         {"agent.yaml", 10, "../e.yaml", 9, "x", 0100644},
         "the central directory and the data disagree"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        a = raw_zip(&cases[i].e, 1);
        rc = extract_in(&a, cases[i].label, NULL, &j, &err);
        expect_refused(rc, PAR_E_UNSAFE_ARCHIVE, &err, cases[i].needle, cases[i].label);
        assert_int_equal(dir_entries(j.dest), 0);
        assert_only_dest(&j);
        /* the same archive cannot be read member by member either */
        assert_int_not_equal(par_archive_read_member(&a, "agent.yaml", 100, &out, NULL), PAR_OK);
        par_buf_free(&out);
        par_archive_bytes_free(&a);
    }
    par_buf_free(&err);
}

/* ---- pack ------------------------------------------------------------------------ */

static void mkdirp(const char *base, const char *rel, mode_t mode)
{
    char p[PATH_MAX];
    FMT(p, "%s/%s", base, rel);
    assert_int_equal(mkdir(p, mode), 0);
}

static void put(const char *base, const char *rel, const char *data, mode_t mode)
{
    char p[PATH_MAX];
    FMT(p, "%s/%s", base, rel);
    write_file(p, data);
    assert_int_equal(chmod(p, mode), 0);
}

static void symlink_in(const char *base, const char *rel, const char *target)
{
    char p[PATH_MAX];
    FMT(p, "%s/%s", base, rel);
    assert_int_equal(symlink(target, p), 0);
}

/* A package tree; `reverse` creates the same tree in another order. */
static void make_pkg(const char *dir, int reverse, mode_t dir_mode)
{
    assert_int_equal(mkdir(dir, 0755), 0);
    if (!reverse) {
        put(dir, "agent.yaml", "name: a\nmetadata: {version: 1.0.0}\n", 0644);
        mkdirp(dir, "lib", dir_mode);
        put(dir, "lib/a.txt", "aaa", 0600);
        put(dir, "lib/z.txt", "zzz", 0644);
        put(dir, "lib/run.sh", "#!/bin/sh\n", 0700);
        symlink_in(dir, "lib/link", "a.txt");
        mkdirp(dir, "empty", dir_mode);
        mkdirp(dir, "lib-x", dir_mode);
        put(dir, "lib-x/b", "b", 0664);
    } else {
        mkdirp(dir, "lib-x", dir_mode);
        put(dir, "lib-x/b", "b", 0644);
        mkdirp(dir, "empty", dir_mode);
        mkdirp(dir, "lib", dir_mode);
        symlink_in(dir, "lib/link", "a.txt");
        put(dir, "lib/run.sh", "#!/bin/sh\n", 0755);
        put(dir, "lib/z.txt", "zzz", 0644);
        put(dir, "lib/a.txt", "aaa", 0644);
        put(dir, "agent.yaml", "name: a\nmetadata: {version: 1.0.0}\n", 0644);
    }
}

/* The archive's entries as "name mode mtime uid\n" lines. */
static char *listing(const char *path)
{
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a;
    assert_int_equal(par_archive_load(path, &lim, &a, NULL), PAR_OK);
    struct archive *ar = archive_read_new();
    archive_read_support_format_zip_seekable(ar);
    assert_int_equal(archive_read_open_memory(ar, a.data, a.len), ARCHIVE_OK);
    par_buf_t out;
    par_buf_init(&out, 0);
    struct archive_entry *e;
    while (archive_read_next_header(ar, &e) == ARCHIVE_OK)
        par_buf_appendf(&out, "%s %o %lld %lld\n", archive_entry_pathname(e),
                        (unsigned)archive_entry_mode(e), (long long)archive_entry_mtime(e),
                        (long long)archive_entry_uid(e));
    archive_read_free(ar);
    par_archive_bytes_free(&a);
    par_buf_terminate(&out);
    return par_buf_steal(&out, NULL);
}

static void set_tz(const char *tz)
{
    if (tz)
        setenv("TZ", tz, 1);
    else
        unsetenv("TZ");
    tzset();
}

static void test_pack_deterministic(void **state)
{
    (void)state;
    char src[PATH_MAX], src2[PATH_MAX], o1[PATH_MAX], o2[PATH_MAX], o3[PATH_MAX];
    FMT(src, "%s/pack-src", top);
    FMT(src2, "%s/pack-src2", top);
    FMT(o1, "%s/one.apkg", top);
    FMT(o2, "%s/two.apkg", top);
    FMT(o3, "%s/three.apkg", top);
    make_pkg(src, 0, 0755);
    par_buf_t err;
    par_buf_init(&err, 0);
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;

    set_tz("UTC");
    assert_int_equal(par_archive_pack(src, o1, &err), PAR_OK);
    assert_int_equal(err.len, 0);

    /* other mtimes, another time zone, another umask: the same bytes */
    char p[PATH_MAX];
    struct timespec ts[2] = {{1234567890, 0}, {1234567890, 0}};
    FMT(p, "%s/lib/a.txt", src);
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    FMT(p, "%s/lib", src);
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    set_tz("Asia/Tokyo");
    mode_t old = umask(077);
    assert_int_equal(par_archive_pack(src, o2, &err), PAR_OK);
    umask(old);

    /* the same tree created in another order, with other permissions */
    set_tz("America/New_York");
    make_pkg(src2, 1, 0700);
    assert_int_equal(par_archive_pack(src2, o3, &err), PAR_OK);
    set_tz(old_tz);
    free(old_tz);

    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a, b, c;
    assert_int_equal(par_archive_load(o1, &lim, &a, NULL), PAR_OK);
    assert_int_equal(par_archive_load(o2, &lim, &b, NULL), PAR_OK);
    assert_int_equal(par_archive_load(o3, &lim, &c, NULL), PAR_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(a.len, c.len);
    assert_memory_equal(a.data, c.data, a.len);

    /* sorted bytewise by archive name, fixed metadata, normalised modes */
    char *l = listing(o1);
    assert_string_equal(l, "agent.yaml 100644 0 0\n"
                           "empty/ 40755 0 0\n"
                           "lib-x/ 40755 0 0\n"
                           "lib-x/b 100644 0 0\n"
                           "lib/ 40755 0 0\n"
                           "lib/a.txt 100644 0 0\n"
                           "lib/link 120777 0 0\n"
                           "lib/run.sh 100755 0 0\n"
                           "lib/z.txt 100644 0 0\n");
    free(l);
    par_archive_bytes_free(&a);
    par_archive_bytes_free(&b);
    par_archive_bytes_free(&c);
    par_buf_free(&err);
}

static void test_pack_roundtrip(void **state)
{
    (void)state;
    char src[PATH_MAX], out[PATH_MAX];
    FMT(src, "%s/rt-src", top);
    FMT(out, "%s/rt.apkg", top);
    make_pkg(src, 0, 0755);
    /* skipped: .git at the top and below, and the output when it is inside */
    mkdirp(src, ".git", 0755);
    put(src, ".git/HEAD", "ref: refs/heads/main\n", 0644);
    mkdirp(src, "lib/vendored", 0755);
    put(src, "lib/vendored/.git", "gitdir: ../../.git/modules/v\n", 0644);
    par_buf_t err, y;
    par_buf_init(&err, 0);
    assert_int_equal(par_archive_pack(src, out, &err), PAR_OK);
    char inside[PATH_MAX];
    FMT(inside, "%s/self.apkg", src);
    assert_int_equal(par_archive_pack(src, inside, &err), PAR_OK);
    assert_int_equal(par_archive_pack(src, inside, &err), PAR_OK); /* self.apkg exists now */

    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a, s;
    assert_int_equal(par_archive_load(out, &lim, &a, &err), PAR_OK);
    assert_int_equal(par_archive_load(inside, &lim, &s, &err), PAR_OK);
    assert_int_equal(a.len, s.len);
    assert_memory_equal(a.data, s.data, a.len);
    par_archive_bytes_free(&s);

    assert_int_equal(par_archive_read_member(&a, "agent.yaml", 1024, &y, &err), PAR_OK);
    assert_int_equal(y.len, strlen("name: a\nmetadata: {version: 1.0.0}\n"));
    par_buf_free(&y);
    assert_int_equal(par_archive_read_member(&a, ".git/HEAD", 1024, &y, &err), PAR_E_NOT_FOUND);
    par_buf_free(&y);
    assert_int_equal(par_archive_read_member(&a, "lib/vendored/.git", 1024, &y, &err),
                     PAR_E_NOT_FOUND);
    par_buf_free(&y);

    jail_t j;
    int rc = extract_in(&a, "rt", NULL, &j, &err);
    expect_refused(rc, PAR_OK, &err, NULL, "round trip");
    assert_file(j.dest, "agent.yaml", "name: a\nmetadata: {version: 1.0.0}\n", 0644);
    assert_file(j.dest, "lib/a.txt", "aaa", 0644);
    assert_file(j.dest, "lib/z.txt", "zzz", 0644);
    assert_file(j.dest, "lib/run.sh", "#!/bin/sh\n", 0755);
    assert_file(j.dest, "lib-x/b", "b", 0644);
    char p[PATH_MAX], t[64];
    FMT(p, "%s/lib/link", j.dest);
    ssize_t tn = readlink(p, t, sizeof(t) - 1);
    assert_int_equal(tn, 5);
    t[tn] = '\0';
    assert_string_equal(t, "a.txt");
    FMT(p, "%s/empty", j.dest);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    FMT(p, "%s/.git", j.dest);
    assert_false(exists(p));
    FMT(p, "%s/self.apkg", j.dest);
    assert_false(exists(p));
    par_archive_bytes_free(&a);
    par_buf_free(&err);
}

static void test_pack_refusals(void **state)
{
    (void)state;
    char out[PATH_MAX], tmp[PATH_MAX], d[PATH_MAX];
    FMT(out, "%s/refused.apkg", top);
    FMT(tmp, "%s.tmp", out);
    par_buf_t err;
    par_buf_init(&err, 0);
    /* a previous good output must survive a refused pack */
    write_file(out, "previous");

    struct {
        const char *label;
        const char *link, *target; /* a symlink to add, or NULL */
        const char *file;          /* a file to add, or NULL */
        int agent_yaml;            /* 0 none, 1 regular, 2 a symlink */
        int fifo;
        int want;
        const char *needle;
    } cases[] = {
        {"no-yaml", NULL, NULL, "README.md", 0, 0, PAR_E_INVALID_PACKAGE, "no agent.yaml"},
        {"yaml-link", NULL, NULL, "real.yaml", 2, 0, PAR_E_INVALID_PACKAGE, "no agent.yaml"},
        {"ln-abs", "link", "/etc", NULL, 1, 0, PAR_E_UNSAFE_ARCHIVE, "leaves the package"},
        {"ln-up", "link", "../..", NULL, 1, 0, PAR_E_UNSAFE_ARCHIVE, "leaves the package"},
        {"ln-sibling", "link", "../pack-src", NULL, 1, 0, PAR_E_UNSAFE_ARCHIVE, "leaves"},
        {"ln-chain", "x", "d/up/..", NULL, 1, 0, PAR_E_UNSAFE_ARCHIVE, "through other links"},
        {"fifo", NULL, NULL, NULL, 1, 1, PAR_E_UNSAFE_ARCHIVE, "special files"},
        {"backslash", NULL, NULL, "a\\b", 1, 0, PAR_E_INVALID_PACKAGE, "backslash"},
        {"newline", NULL, NULL, "a\nb", 1, 0, PAR_E_INVALID_PACKAGE, "control character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        FMT(d, "%s/pr-%s", top, cases[i].label);
        assert_int_equal(mkdir(d, 0755), 0);
        if (cases[i].agent_yaml == 1)
            put(d, "agent.yaml", "name: a\n", 0644);
        if (cases[i].file)
            put(d, cases[i].file, "x", 0644);
        if (cases[i].agent_yaml == 2)
            symlink_in(d, "agent.yaml", cases[i].file);
        if (strcmp(cases[i].label, "ln-chain") == 0) {
            mkdirp(d, "d", 0755);
            symlink_in(d, "d/up", "..");
        }
        if (cases[i].link)
            symlink_in(d, cases[i].link, cases[i].target);
        if (cases[i].fifo) {
            char p[PATH_MAX];
            FMT(p, "%s/pipe", d);
            assert_int_equal(mkfifo(p, 0644), 0);
        }
        par_buf_reset(&err);
        int rc = par_archive_pack(d, out, &err);
        par_buf_terminate(&err);
        expect_refused(rc, cases[i].want, &err, cases[i].needle, cases[i].label);
        assert_false(exists(tmp));
        char *s = read_file(out, NULL);
        assert_string_equal(s, "previous");
        free(s);
    }
    /* err may be NULL */
    FMT(d, "%s/pr-no-yaml", top);
    assert_int_equal(par_archive_pack(d, out, NULL), PAR_E_INVALID_PACKAGE);
    FMT(d, "%s/pr-missing-dir", top);
    assert_int_equal(par_archive_pack(d, out, NULL), PAR_E_IO);
    par_buf_free(&err);
}

/* ---- main ------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    FMT(top, "%s/par-archive-test-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(top);
    return exists(top) ? -1 : 0;
}

/* The name rules archive.c shares with extraction and packing, directly. */
static void test_canon_name_rules(void **state)
{
    (void)state;
    char out[PATH_MAX];
    assert_null(par__archive_canon_name("./a//b/./c/", out, sizeof(out)));
    assert_string_equal(out, "a/b/c");
    assert_null(par__archive_canon_name("./", out, sizeof(out)));
    assert_string_equal(out, "");
    assert_string_equal(par__archive_canon_name("", out, sizeof(out)), "empty name");
    assert_string_equal(par__archive_canon_name("/etc/passwd", out, sizeof(out)), "absolute path");
    assert_string_equal(par__archive_canon_name("a/../../b", out, sizeof(out)),
                        "path escapes the package (..)");
    assert_string_equal(par__archive_canon_name("a\\b", out, sizeof(out)), "backslash in the name");
    assert_string_equal(par__archive_canon_name("a\x1b[0m", out, sizeof(out)),
                        "control character in the name");
    char longc[300];
    memset(longc, 'x', 256);
    longc[256] = '\0';
    assert_string_equal(par__archive_canon_name(longc, out, sizeof(out)),
                        "a path component is longer than 255 bytes");
    /* a canonical form that does not fit the caller's buffer */
    assert_string_equal(par__archive_canon_name("abcdef/ghi", out, 8), "name too long");
}

static void test_name_depth(void **state)
{
    (void)state;
    assert_int_equal(par__archive_name_depth(""), 0);
    assert_int_equal(par__archive_name_depth("a"), 1);
    assert_int_equal(par__archive_name_depth("a/b/c"), 3);
}

static void test_link_lexically_inside(void **state)
{
    (void)state;
    assert_int_equal(par__archive_link_lexically_inside("a/link", "b"), 1);
    assert_int_equal(par__archive_link_lexically_inside("a/link", "../b"), 1);
    assert_int_equal(par__archive_link_lexically_inside("a/link", "../../b"), 0);
    assert_int_equal(par__archive_link_lexically_inside("link", ".."), 0);
    assert_int_equal(par__archive_link_lexically_inside("a/b/link", "./../c/../d"), 1);
    assert_int_equal(par__archive_link_lexically_inside("link", "/etc"), 0);
    assert_int_equal(par__archive_link_lexically_inside("link", ""), 0);
}

static void test_err_entry_escapes_the_name(void **state)
{
    (void)state;
    par_buf_t b;
    par_buf_init(&b, 0);
    par__archive_err_entry(&b, "x\"\ny", 4, "refused (%d)", 7);
    par_buf_terminate(&b);
    assert_string_equal(b.data, "entry \"x\\\"\\ny\": refused (7)\n");
    par__archive_err_entry(NULL, "x", 1, "nothing"); /* no sink: no crash */
    par_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_canon_name_rules),
        cmocka_unit_test(test_name_depth),
        cmocka_unit_test(test_link_lexically_inside),
        cmocka_unit_test(test_err_entry_escapes_the_name),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_leased),
        cmocka_unit_test(test_read_member),
        cmocka_unit_test(test_extract_good),
        cmocka_unit_test(test_extract_dest_checks),
        cmocka_unit_test(test_extract_path_rules),
        cmocka_unit_test(test_extract_depth),
        cmocka_unit_test(test_extract_symlinks),
        cmocka_unit_test(test_extract_hard_link),
        cmocka_unit_test(test_extract_special_files),
        cmocka_unit_test(test_extract_duplicates),
        cmocka_unit_test(test_bomb_ratio),
        cmocka_unit_test(test_bomb_sizes),
        cmocka_unit_test(test_bomb_count),
        cmocka_unit_test(test_bomb_count_zip64),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_zip64_locator),
        cmocka_unit_test(test_central_directory),
        cmocka_unit_test(test_pack_deterministic),
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_pack_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
