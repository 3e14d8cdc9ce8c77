/*
 * pkg/archive.c — APKG (ZIP) archives: load and digest, read one member, extract
 * safely, pack deterministically (see archive.h).
 *
 * Owns: every byte PAR reads from or writes to a ZIP. Called by
 * runtime/deploy.c on a deploy thread and by the CLI (`par pack`, `par
 * inspect`); never on an event-loop thread. Any thread: no global state, and
 * every libarchive handle lives for one call. It must never write outside the
 * directory it is given, follow a symlink while writing, or trust a size that
 * a header claims.
 *
 * Reading. libarchive parses the ZIP: ZIP only, with the seekable reader, so
 * the entries are the central directory's (the index every other ZIP tool
 * lists), not whatever local headers a scan of the bytes would find. Before
 * libarchive sees the bytes, cd_precheck() walks the central directory once,
 * bounded by the buffer, and refuses what libarchive would silently paper
 * over: a name holding a NUL byte (libarchive cuts it there; other tools do
 * not), an entry whose local header names a different file than the central
 * directory (PAR would extract one name while `unzip -l` or Python's zipfile
 * show another; zipfile refuses such archives too), an empty name, and more
 * entries than the cap (before libarchive allocates a record per entry). The
 * walk only ever refuses: when it cannot make sense of the structure it
 * leaves the verdict, and the error message, to libarchive.
 * The seekable reader keeps one record per central-directory entry in memory
 * (measured: about 90 bytes per entry, less than the entry's own size in the
 * archive), so its memory is bounded by max_archive_bytes.
 *
 * Extraction. Each entry's name is checked lexically (canon_name: no absolute
 * path, no `..` component, no backslash or control character, no empty name)
 * and reduced to a canonical form ("./a//b/" → "a/b"); a set of canonical
 * names refuses duplicates. Files are then written by this file itself:
 * open_parent() walks from a descriptor of dest_dir one component at a time
 * with O_NOFOLLOW (creating missing directories), and the leaf is created with
 * O_CREAT|O_EXCL|O_NOFOLLOW, so no symlink, planted by an earlier entry or by
 * anyone else, can redirect a write. (libarchive's archive_write_disk is not
 * used: its SECURE_* flags check a path with lstat() and then open it by name,
 * and it restores metadata — ACLs, xattrs, file flags — a package never needs.)
 * Modes are normalised with fchmod, whatever the umask: 0644 files, 0755 when
 * any execute bit was set, 0755 directories; no owner, setuid, setgid or sticky
 * bit survives. Sizes are counted on the bytes actually decompressed, chunk by
 * chunk, and checked before each chunk is written, so a bomb stops at the cap
 * instead of after filling the disk (headers may lie; libarchive inflates past
 * a declared size before it complains).
 * Symlinks: each target must be relative and, resolved lexically from the
 * link's directory, stay inside the tree. Because a target may pass through
 * another link ("x" → "d/up/.." with "d/up" → ".."), a last pass resolves every
 * link against the finished tree the way the kernel would, following links on
 * the way, and refuses any that leaves it (or loops).
 * Hard links, devices, FIFOs and sockets are refused. (libarchive's ZIP reader
 * never reports hard links, and reports a FIFO mode as a regular file, which
 * is then written as one; both rules stay for defence in depth.)
 *
 * Packing. The tree is walked with descriptors (O_NOFOLLOW), `.git` is skipped
 * at any depth, entry names are sorted bytewise (directories end with '/'),
 * files are deflated, symlinks and directories stored. Metadata is fixed so the
 * bytes depend on names, contents and the execute bit only: uid/gid 0, no
 * owner names, mtime 0 (the Unix epoch). libarchive writes the DOS date field
 * in local time and clamps dates before 1980 to 1980-01-01 00:00:00; the epoch
 * is before 1980 in every time zone, so the DOS field is the same whatever TZ
 * says, and the UTC "UT" extra field holds 0. (Python's zipfile reports
 * 1980-01-01 00:00:00.) Bytes are identical for the same libarchive and zlib.
 */
#include "pkg/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <par/par.h>

#define CHUNK (64u * 1024)
/* The ratio cap applies only once this many bytes are out: a small package of
 * text (a 600 KiB file of repeated lines deflates ~1000:1) is not a bomb, and
 * a bomb is still stopped at max(RATIO_FLOOR, max_ratio × archive size). */
#define RATIO_FLOOR (1ull << 20)
/* Symlinks followed while resolving one link, as the kernel's MAXSYMLINKS. */
#define MAX_LINK_HOPS 40

/* ---- errors ---------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static void errf(par_buf_t *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    par_buf_vappendf(err, fmt, ap);
    va_end(ap);
}

/* One line `entry "NAME": <what>`. The name is escaped as a JSON string, so a
 * hostile name (quotes, newlines, terminal escapes) cannot forge lines. */
__attribute__((format(printf, 4, 5))) static void err_entry(par_buf_t *err, const char *name,
                                                            size_t len, const char *fmt, ...)
{
    if (err == NULL)
        return;
    par_buf_appends(err, "entry ");
    par_buf_append_json_str(err, name, len);
    par_buf_appends(err, ": ");
    va_list ap;
    va_start(ap, fmt);
    par_buf_vappendf(err, fmt, ap);
    va_end(ap);
    par_buf_appends(err, "\n");
}

static const char *ar_msg(struct archive *ar)
{
    const char *m = archive_error_string(ar);
    return m ? m : "unknown libarchive error";
}

/* ---- limits and digests ---------------------------------------------------------- */

void par_archive_limits_default(par_archive_limits_t *lim)
{
    memset(lim, 0, sizeof(*lim));
    lim->max_archive_bytes = 512ull << 20;
    lim->max_entries = 10000;
    lim->max_total_bytes = 1ull << 30;
    lim->max_entry_bytes = 512ull << 20;
    /* checked only past RATIO_FLOOR (1 MiB) of output; 0 turns the check off */
    lim->max_ratio = 200;
    lim->max_depth = PAR_ARCHIVE_MAX_DEPTH;
}

/* Levels of a canonical name: "a" is 1, "a/b/c" is 3. */
static size_t name_depth(const char *canon)
{
    size_t n = canon[0] != '\0';
    for (const char *c = canon; *c; c++)
        n += *c == '/';
    return n;
}

void par_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        out[0] = '\0'; /* OpenSSL out of memory: an empty digest matches nothing */
        return;
    }
    par_hex_encode(md, n, out);
}

#define HASH_CHUNK (1u << 20)

/* BLAKE2b-512 of a file being read, on its own thread: it follows the reader
 * through the buffer, so the two digests cost max(SHA-256, BLAKE2b), not
 * their sum. The buffer is allocated once and never moves. */
typedef struct b2_follow {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const unsigned char *data;
    size_t avail; /* bytes the reader has finished */
    int done;     /* no more bytes will come */
    crypto_generichash_state st;
} b2_follow_t;

static void *b2_thread(void *arg)
{
    b2_follow_t *f = arg;
    size_t pos = 0;
    for (;;) {
        pthread_mutex_lock(&f->lock);
        while (f->avail == pos && !f->done)
            pthread_cond_wait(&f->cond, &f->lock);
        size_t avail = f->avail;
        int done = f->done;
        pthread_mutex_unlock(&f->lock);
        if (avail > pos)
            crypto_generichash_update(&f->st, f->data + pos, avail - pos);
        pos = avail;
        if (done && pos == avail)
            return NULL;
    }
}

static void b2_publish(b2_follow_t *f, size_t avail, int done)
{
    pthread_mutex_lock(&f->lock);
    f->avail = avail;
    f->done |= done;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/* A buffer for a whole archive. Large ones are an anonymous mapping aligned
 * to 2 MiB and offered transparent huge pages: reading 30 MB into malloc'd
 * memory costs thousands of page faults, which are most of the time it takes
 * to load a big package. *mapped is the mapping's size, 0 when malloc'd. */
#define HUGE_ALIGN ((size_t)2 << 20)
static unsigned char *archive_buffer(size_t n, size_t *mapped)
{
    *mapped = 0;
    if (n >= HUGE_ALIGN) {
        size_t len = (n + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
        /* over-allocate by one alignment unit, then trim both ends to it */
        unsigned char *p = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            uintptr_t a = ((uintptr_t)p + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1);
            size_t head = a - (uintptr_t)p;
            if (head)
                munmap(p, head);
            if (HUGE_ALIGN - head)
                munmap((unsigned char *)a + len, HUGE_ALIGN - head);
            madvise((void *)a, len, MADV_HUGEPAGE); /* advice: fine if refused */
            *mapped = len;
            return (unsigned char *)a;
        }
    }
    return malloc(n);
}

static void archive_buffer_free(unsigned char *p, size_t mapped)
{
    if (p && mapped)
        munmap(p, mapped);
    else
        free(p);
}

/* A file whose bytes cannot change while PAR reads them: mapped, not copied.
 * A read lease (F_SETLEASE F_RDLCK) is granted only while no one has the file
 * open for writing, and from then on anyone who opens it for writing or
 * truncates it waits until the lease is released (in par_archive_bytes_free)
 * or, after /proc/sys/fs/lease-break-time seconds, takes it away. So the
 * mapping holds the bytes that were hashed for as long as the lease does, and
 * lease_intact() tells whether it still does. Copying instead costs a fresh
 * page per 4 KiB, which is most of the time a big package takes to load.
 * The kernel signals a lease break to the holder: SIGURG (ignored unless
 * someone handles it) instead of the default SIGIO (which terminates), and the
 * owner is then cleared so not even that is sent. Returns the mapping, or
 * NULL when a lease or a mapping is not to be had (file open for writing, not
 * ours and no CAP_LEASE, a filesystem without leases): the caller copies.
 *
 * Two more conditions, because a lease protects the mapping only against
 * writers this kernel sees, and only for lease-break-time seconds (after
 * which a truncating writer would turn the next read of the mapping into
 * SIGBUS): the file must be on a local filesystem (network and FUSE
 * filesystems, 9p, virtiofs and overlay's layers can change underneath), and
 * /proc/sys/fs/lease-break-time must leave a margin (>= 10 s; extraction also
 * checks the lease between blocks and stops as soon as a writer waits). */
static int lease_break_margin_ok(void)
{
    FILE *f = fopen("/proc/sys/fs/lease-break-time", "re");
    int secs = 0;
    if (f) {
        if (fscanf(f, "%d", &secs) != 1)
            secs = 0;
        fclose(f);
    }
    return secs >= 10;
}

static int local_filesystem(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case 0xEF53:     /* ext2/3/4 */
    case 0x58465342: /* xfs */
    case 0x9123683E: /* btrfs */
    case 0x01021994: /* tmpfs */
    case 0xF2F52010: /* f2fs */
        return 1;
    default:
        return 0;
    }
}

static unsigned char *map_leased(int fd, size_t *size)
{
    if (!local_filesystem(fd) || !lease_break_margin_ok())
        return NULL;
    if (fcntl(fd, F_SETSIG, SIGURG) != 0 || fcntl(fd, F_SETLEASE, F_RDLCK) != 0)
        return NULL;
    fcntl(fd, F_SETOWN, 0);
    struct stat st; /* the size now that it cannot change */
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && (uint64_t)st.st_size <= SIZE_MAX)
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
        fcntl(fd, F_SETLEASE, F_UNLCK);
        return NULL;
    }
    *size = (size_t)st.st_size;
    return p;
}

/* 1 while the lease taken by map_leased() stands: no writer has come since.
 * A writer waiting for it already makes F_GETLEASE report F_UNLCK. */
static int lease_intact(const par_archive_bytes_t *b)
{
    return !b->_leased || fcntl(b->_fd, F_GETLEASE) == F_RDLCK;
}

static int lease_lost(par_buf_t *err)
{
    errf(err, "the package file was opened for writing while it was extracted; the bytes "
              "extracted may not be the bytes verified, so the extraction is discarded "
              "(deploy again once the file is complete)\n");
    return PAR_E_IO;
}

int par_archive_load(const char *path, const par_archive_limits_t *lim, par_archive_bytes_t *out,
                     par_buf_t *err)
{
    size_t mapped = 0;
    int rc = PAR_OK;
    unsigned char *data = NULL;
    EVP_MD_CTX *md = NULL;
    b2_follow_t b2;
    pthread_t b2_tid;
    int b2_running = 0, leased = 0;
    memset(&b2, 0, sizeof(b2));
    memset(out, 0, sizeof(*out));

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        errf(err, "%s: cannot open: %s\n", path, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        errf(err, "%s: cannot stat: %s\n", path, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        errf(err, "%s: not a regular file (an .apkg is a ZIP file)\n", path);
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    if ((uint64_t)st.st_size > lim->max_archive_bytes) {
        errf(err, "%s: %lld bytes, over the cap of %llu bytes for an archive\n", path,
             (long long)st.st_size, (unsigned long long)lim->max_archive_bytes);
        rc = PAR_E_TOO_LARGE;
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (size > 0 && (data = map_leased(fd, &size)) != NULL) {
        leased = 1;
        if ((uint64_t)size > lim->max_archive_bytes) {
            errf(err, "%s: %zu bytes, over the cap of %llu bytes for an archive\n", path, size,
                 (unsigned long long)lim->max_archive_bytes);
            rc = PAR_E_TOO_LARGE;
            goto out;
        }
    } else {
        /* one spare byte: reading into it means the file grew after fstat */
        data = archive_buffer(size + 1, &mapped);
    }
    md = EVP_MD_CTX_new();
    if (data == NULL || md == NULL) {
        errf(err, "%s: out of memory for %zu bytes\n", path, size);
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        errf(err, "%s: SHA-256 is unavailable\n", path);
        rc = PAR_E_INTERNAL;
        goto out;
    }
    size_t len = 0;
    if (lim->with_blake2b) {
        if (sodium_init() < 0 || crypto_generichash_init(&b2.st, NULL, 0, 64) != 0) {
            errf(err, "%s: BLAKE2b is unavailable\n", path);
            rc = PAR_E_INTERNAL;
            goto out;
        }
        b2.data = data;
        pthread_mutex_init(&b2.lock, NULL);
        pthread_cond_init(&b2.cond, NULL);
        if (pthread_create(&b2_tid, NULL, b2_thread, &b2) != 0) {
            errf(err, "%s: cannot start a hashing thread\n", path);
            rc = PAR_E_INTERNAL;
            goto out;
        }
        b2_running = 1;
    }
    if (leased) {
        /* all there: BLAKE2b on its thread while SHA-256 runs here */
        len = size;
        if (b2_running)
            b2_publish(&b2, len, 0);
        if (EVP_DigestUpdate(md, data, len) != 1) {
            rc = PAR_E_INTERNAL;
            goto out;
        }
    }
    while (!leased) {
        /* chunks, so the BLAKE2b thread works while the rest is read */
        size_t want = size + 1 - len;
        if (want > HASH_CHUNK && len + HASH_CHUNK <= size)
            want = HASH_CHUNK;
        ssize_t r = read(fd, data + len, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            errf(err, "%s: cannot read: %s\n", path, strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > size)
            break;
        if (b2_running)
            b2_publish(&b2, len, 0);
        if (EVP_DigestUpdate(md, data + len - (size_t)r, (size_t)r) != 1) {
            rc = PAR_E_INTERNAL;
            goto out;
        }
    }
    if (len != size) {
        errf(err,
             "%s: the file %s while it was read (%zu bytes when opened); retry once it is "
             "complete\n",
             path, len > size ? "grew" : "shrank", size);
        rc = PAR_E_IO;
        goto out;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 32) {
        errf(err, "%s: SHA-256 failed\n", path);
        rc = PAR_E_INTERNAL;
        goto out;
    }
    out->data = data;
    out->len = len;
    out->_mapped = mapped;
    if (leased) {
        out->_leased = 1;
        out->_fd = fd; /* holds the lease until par_archive_bytes_free() */
        fd = -1;
        leased = 0;
    }
    par_hex_encode(digest, dlen, out->sha256);
    if (b2_running) {
        b2_publish(&b2, len, 1);
        pthread_join(b2_tid, NULL);
        b2_running = 0;
        crypto_generichash_final(&b2.st, out->blake2b, 64);
        out->has_blake2b = 1;
    }
    data = NULL;
out:
    if (b2_running) {
        b2_publish(&b2, b2.avail, 1);
        pthread_join(b2_tid, NULL);
    }
    if (lim->with_blake2b && b2.data) {
        pthread_mutex_destroy(&b2.lock);
        pthread_cond_destroy(&b2.cond);
    }
    if (leased && data) {
        munmap(data, size);
        data = NULL;
        fcntl(fd, F_SETLEASE, F_UNLCK);
    }
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(md);
    archive_buffer_free(data, mapped);
    return rc;
}

void par_archive_bytes_free(par_archive_bytes_t *b)
{
    if (b->_leased) {
        if (b->data)
            munmap(b->data, b->len);
        fcntl(b->_fd, F_SETLEASE, F_UNLCK);
        close(b->_fd);
        b->_leased = 0;
    } else {
        archive_buffer_free(b->data, b->_mapped);
    }
    b->data = NULL;
    b->_mapped = 0;
    b->len = 0;
    b->sha256[0] = '\0';
}

/* ---- central directory pre-check ------------------------------------------------- */

static uint32_t rd16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const unsigned char *p)
{
    return rd16(p) | rd16(p + 2) << 16;
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Where a central-directory record says its local header is: the 32-bit field,
 * or the ZIP64 extra field (tag 1) when that holds 0xffffffff. UINT64_MAX when
 * it cannot be told. */
static uint64_t cd_local_offset(const unsigned char *rec)
{
    uint64_t lho = rd32(rec + 42);
    if (lho != 0xffffffff)
        return lho;
    const unsigned char *x = rec + 46 + rd16(rec + 28), *end = x + rd16(rec + 30);
    while (end - x >= 4) {
        size_t tag = rd16(x), sz = rd16(x + 2);
        if ((size_t)(end - x - 4) < sz)
            break;
        if (tag == 1) {
            /* present in this order, each only when its 32-bit field is full */
            size_t at =
                4 + (rd32(rec + 24) == 0xffffffff ? 8 : 0) + (rd32(rec + 20) == 0xffffffff ? 8 : 0);
            return at + 8 <= 4 + sz ? rd64(x + at) : UINT64_MAX;
        }
        x += 4 + sz;
    }
    return UINT64_MAX;
}

/* A ZIP64 locator sits right before the end record at `eocd`. libarchive 3.6's
 * seekable reader honours it only when it says "directory on disk 0, 1 disk in
 * all" and the ZIP64 end record at the offset it gives is 56..16384 bytes, on
 * disk 0 and not split; otherwise it silently falls back to the classic end
 * record. Python's zipfile honours it when the total of disks is 0 or 1, reads
 * the ZIP64 end record right before the locator whatever offset the locator
 * gives, and expects the directory right before that record. So an archive can
 * hold two directories, one for each reader. Only the form every reader takes
 * alike passes: disk 0 of 1, a 56-byte ZIP64 end record right before the
 * locator, one disk, and the directory ending where that record starts. The
 * directory's offset and size are then the ZIP64 record's. */
static int zip64_locator(const unsigned char *d, size_t eocd, uint64_t *cd_off, uint64_t *cd_size,
                         par_buf_t *err)
{
    const unsigned char *loc = d + eocd - 20;
    uint64_t z = rd64(loc + 8);
    const char *why = NULL;
    if (rd32(loc + 4) != 0 || rd32(loc + 16) != 1)
        why = "its ZIP64 locator does not say \"disk 0 of 1\"";
    else if (eocd < 20 + 56 || z != eocd - 20 - 56)
        why = "its ZIP64 end record is not right before the ZIP64 locator";
    else if (memcmp(d + z, "PK\6\6", 4) != 0 || rd64(d + z + 4) != 44)
        why = "its ZIP64 end record is malformed or carries extensible data";
    else if (rd32(d + z + 16) != 0 || rd32(d + z + 20) != 0 || rd64(d + z + 24) != rd64(d + z + 32))
        why = "its ZIP64 end record spans several disks";
    else if (rd64(d + z + 48) > z || rd64(d + z + 40) != z - rd64(d + z + 48))
        why = "its ZIP64 central directory does not end where the ZIP64 end record starts";
    if (why != NULL) {
        errf(err, "%s (ZIP readers would disagree on the entries)\n", why);
        return PAR_E_BAD_ARCHIVE;
    }
    *cd_off = rd64(d + z + 48);
    *cd_size = rd64(d + z + 40);
    return PAR_OK;
}

/* See the top of the file. Record layouts: APPNOTE.TXT 4.3.7 (local header,
 * 30 bytes + name), 4.3.12 (central directory header, 46 bytes + name + extra +
 * comment), 4.3.14-16 (ZIP64 end record, locator, end record). The directory
 * is found the way libarchive 3.6's seekable reader finds it, so both look at
 * the same records: the last end record; the ZIP64 one when a locator sits
 * right before (zip64_locator() refuses every locator the readers would not
 * take alike); otherwise the directory ends where the end record starts and
 * every offset is corrected by the distance between where the directory says
 * it starts and where it is (so an archive with bytes prepended, a
 * self-extractor, still checks). Records are read up to the first signature
 * that is not a directory header, as libarchive does. */
static int cd_precheck(const unsigned char *d, size_t len, uint64_t max_entries, par_buf_t *err)
{
    if (len < 22)
        return PAR_OK;
    size_t eocd = SIZE_MAX, lowest = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > lowest;) {
        if (memcmp(d + p, "PK\5\6", 4) == 0) {
            eocd = p;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return PAR_OK;
    uint64_t cd_size = rd32(d + eocd + 12), cd_off = rd32(d + eocd + 16), cd;
    int zip64 = eocd >= 20 && memcmp(d + eocd - 20, "PK\6\7", 4) == 0;
    if (zip64) {
        int rc = zip64_locator(d, eocd, &cd_off, &cd_size, err);
        if (rc != PAR_OK)
            return rc;
    }
    if (zip64) {
        cd = cd_off;
    } else {
        if (cd_size > eocd)
            return PAR_OK;
        cd = eocd - cd_size;
    }
    uint64_t n = 0, p = cd;
    while (p <= len && len - p >= 4 && memcmp(d + p, "PK\1\2", 4) == 0) {
        if (len - p < 46)
            return PAR_OK;
        const unsigned char *rec = d + p;
        size_t nlen = rd16(rec + 28), rest = nlen + rd16(rec + 30) + rd16(rec + 32);
        if (len - p - 46 < rest)
            return PAR_OK;
        const char *name = (const char *)rec + 46;
        if (++n > max_entries) {
            errf(err, "more than %llu entries (zip bomb by count)\n",
                 (unsigned long long)max_entries);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (nlen == 0) {
            err_entry(err, "", 0, "empty name");
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (memchr(name, '\0', nlen) != NULL) {
            err_entry(err, name, nlen, "NUL byte in the name");
            return PAR_E_UNSAFE_ARCHIVE;
        }
        /* unsigned wrap-around does the (signed) correction; a wild value fails the bound */
        uint64_t lho = cd_local_offset(rec), lh = lho + cd - cd_off;
        if (lho != UINT64_MAX && len >= 30 && lh <= len - 30 && memcmp(d + lh, "PK\3\4", 4) == 0) {
            size_t lnlen = rd16(d + lh + 26);
            if (lnlen <= len - lh - 30 && (lnlen != nlen || memcmp(d + lh + 30, name, nlen) != 0)) {
                par_buf_t local;
                par_buf_init(&local, 0);
                par_buf_append_json_str(&local, (const char *)d + lh + 30, lnlen);
                par_buf_terminate(&local);
                err_entry(err, name, nlen,
                          "its local header names it %s: the central directory and the data "
                          "disagree",
                          local.data ? local.data : "?");
                par_buf_free(&local);
                return PAR_E_UNSAFE_ARCHIVE;
            }
        }
        p += 46 + rest;
    }
    if (p - cd != cd_size) {
        /* libarchive reads records up to the next signature, Python's zipfile
         * reads the size the end record gives: they would list different entries */
        errf(err,
             "the central directory holds %llu bytes of records where its end record says %llu "
             "(ZIP readers would disagree on the entries)\n",
             (unsigned long long)(p - cd), (unsigned long long)cd_size);
        return PAR_E_BAD_ARCHIVE;
    }
    return PAR_OK;
}

static int open_reader(const par_archive_bytes_t *a, uint64_t max_entries, int ignore_crc,
                       struct archive **out, par_buf_t *err)
{
    *out = NULL;
    int rc = cd_precheck(a->data, a->len, max_entries, err);
    if (rc != PAR_OK)
        return rc;
    struct archive *ar = archive_read_new();
    if (ar == NULL) {
        errf(err, "out of memory\n");
        return PAR_E_NO_MEMORY;
    }
    /* ZIP only, and the seekable reader: the central directory is authoritative */
    if (archive_read_support_format_zip_seekable(ar) != ARCHIVE_OK ||
        (ignore_crc &&
         archive_read_set_format_option(ar, "zip", "ignorecrc32", "1") != ARCHIVE_OK) ||
        archive_read_open_memory(ar, a->data, a->len) != ARCHIVE_OK) {
        errf(err, "not a readable ZIP archive: %s\n", ar_msg(ar));
        archive_read_free(ar);
        return PAR_E_INVALID_PACKAGE;
    }
    *out = ar;
    return PAR_OK;
}

/* ---- names ----------------------------------------------------------------------- */

/* Checks an entry name against the path rules and writes its canonical form
 * to `out` (no "./" or "." components, no empty components, no trailing '/';
 * "" for the package root). Returns NULL when the name is safe, else the rule
 * it breaks. */
static const char *canon_name(const char *raw, char *out, size_t outsz)
{
    if (raw[0] == '\0')
        return "empty name";
    if (raw[0] == '/')
        return "absolute path";
    for (const unsigned char *c = (const unsigned char *)raw; *c; c++) {
        if (*c == '\\')
            return "backslash in the name";
        if (*c < 0x20 || *c == 0x7f)
            return "control character in the name";
    }
    size_t o = 0;
    for (const char *s = raw; *s;) {
        const char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return "path escapes the package (..)";
        if (n > NAME_MAX)
            return "a path component is longer than 255 bytes";
        if (n > 0 && !(n == 1 && s[0] == '.')) {
            if (o + 1 + n >= outsz || o + 1 + n >= PATH_MAX)
                return "name too long";
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s = *e ? e + 1 : e;
    }
    out[o] = '\0';
    return NULL;
}

/* Does `target`, read from the directory holding `name` (canonical), stay
 * inside the tree when resolved lexically? */
static int link_lexically_inside(const char *name, const char *target)
{
    if (target[0] == '/' || target[0] == '\0')
        return 0;
    long depth = 0;
    for (const char *s = name; *s; s++)
        depth += *s == '/';
    for (const char *s = target; *s;) {
        const char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (--depth < 0)
                return 0;
        } else if (n > 0 && !(n == 1 && s[0] == '.')) {
            depth++;
        }
        s = *e ? e + 1 : e;
    }
    return 1;
}

/* Resolves the symlink `name` (canonical, below `root`) the way the kernel
 * would, following every link met on the way. Returns NULL when the
 * resolution never leaves root, else why it is refused. Components that do not
 * exist are resolved lexically (nothing below them can be a link). */
static const char *link_physically_inside(int root, const char *name)
{
    const char *why = NULL;
    char cur[PATH_MAX], target[PATH_MAX];
    char *rest = NULL;
    int hops = 0;

    /* cur: the resolved directory so far, canonical ("" = root) */
    snprintf(cur, sizeof(cur), "%s", name);
    char *slash = strrchr(cur, '/');
    size_t clen = slash ? (size_t)(slash - cur) : 0;
    cur[clen] = '\0';
    ssize_t tn = readlinkat(root, name, target, sizeof(target) - 1);
    if (tn < 0)
        return "cannot read the link back";
    target[tn] = '\0';
    if ((rest = strdup(target)) == NULL)
        return "out of memory";

    for (char *s = rest; *s;) {
        char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        char *next = *e ? e + 1 : e;
        if (n == 0 || (n == 1 && s[0] == '.')) {
            s = next;
            continue;
        }
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (clen == 0) {
                why = "its target leaves the package (through other links)";
                goto out;
            }
            char *up = memrchr(cur, '/', clen);
            clen = up ? (size_t)(up - cur) : 0;
            cur[clen] = '\0';
            s = next;
            continue;
        }
        size_t before = clen;
        if (clen + 1 + n >= sizeof(cur)) {
            why = "its target is too long";
            goto out;
        }
        if (clen > 0)
            cur[clen++] = '/';
        memcpy(cur + clen, s, n);
        clen += n;
        cur[clen] = '\0';
        struct stat st;
        if (fstatat(root, cur, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(st.st_mode)) {
            s = next;
            continue;
        }
        if (++hops > MAX_LINK_HOPS) {
            why = "symlink loop";
            goto out;
        }
        tn = readlinkat(root, cur, target, sizeof(target) - 1);
        if (tn < 0) {
            why = "cannot read a link on its path";
            goto out;
        }
        target[tn] = '\0';
        if (target[0] == '/') {
            why = "its target leaves the package (through an absolute link)";
            goto out;
        }
        clen = before;
        cur[clen] = '\0';
        /* continue with the link's target, then what followed the link */
        size_t tl = (size_t)tn, nl = strlen(next);
        char *joined = malloc(tl + 1 + nl + 1);
        if (joined == NULL) {
            why = "out of memory";
            goto out;
        }
        memcpy(joined, target, tl);
        joined[tl] = '/';
        memcpy(joined + tl + 1, next, nl + 1);
        free(rest);
        rest = joined;
        s = rest;
    }
out:
    free(rest);
    return why;
}

/* ---- small containers ------------------------------------------------------------ */

/* A set of strings (open addressing) for duplicate names. */
typedef struct name_set {
    char **slots;
    size_t cap, n;
} name_set_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 1 added, 0 already there, -1 out of memory. */
static int set_add(name_set_t *set, const char *name)
{
    if (2 * (set->n + 1) > set->cap) {
        size_t ncap = set->cap ? set->cap * 2 : 64;
        char **ns = calloc(ncap, sizeof(char *));
        if (ns == NULL)
            return -1;
        for (size_t i = 0; i < set->cap; i++) {
            if (set->slots[i] == NULL)
                continue;
            size_t j = hash_str(set->slots[i]) & (ncap - 1);
            while (ns[j])
                j = (j + 1) & (ncap - 1);
            ns[j] = set->slots[i];
        }
        free(set->slots);
        set->slots = ns;
        set->cap = ncap;
    }
    size_t j = hash_str(name) & (set->cap - 1);
    for (; set->slots[j]; j = (j + 1) & (set->cap - 1))
        if (strcmp(set->slots[j], name) == 0)
            return 0;
    if ((set->slots[j] = strdup(name)) == NULL)
        return -1;
    set->n++;
    return 1;
}

static void set_free(name_set_t *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
}

typedef struct str_list {
    char **items;
    size_t n, cap;
} str_list_t;

static int list_add(str_list_t *l, const char *s)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 32;
        char **ni = realloc(l->items, ncap * sizeof(char *));
        if (ni == NULL)
            return -1;
        l->items = ni;
        l->cap = ncap;
    }
    if ((l->items[l->n] = strdup(s)) == NULL)
        return -1;
    l->n++;
    return 0;
}

static void list_free(str_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
}

/* ---- read one member ------------------------------------------------------------- */

int par_archive_read_member(const par_archive_bytes_t *a, const char *name, size_t cap,
                            par_buf_t *out, par_buf_t *err)
{
    /* cap 0 means no cap, as for par_buf_t */
    par_buf_init(out, cap);
    char want[PATH_MAX], have[PATH_MAX];
    if (canon_name(name, want, sizeof(want)) != NULL || want[0] == '\0') {
        errf(err, "%s: not a valid member name\n", name);
        return PAR_E_NOT_FOUND;
    }
    struct archive *ar = NULL;
    int rc = open_reader(a, UINT64_MAX, 0, &ar, err);
    if (rc != PAR_OK)
        return rc;
    char *buf = malloc(CHUNK);
    if (buf == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    int found = 0, r;
    struct archive_entry *e;
    /* every header is read, not just up to the member: a second entry of the
     * same name is refused rather than silently shadowed */
    while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
        const char *p = archive_entry_pathname(e);
        if (p == NULL || canon_name(p, have, sizeof(have)) != NULL || strcmp(have, want) != 0)
            continue;
        if (found) {
            err_entry(err, p, strlen(p), "appears twice in the archive");
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        found = 1;
        if (archive_entry_filetype(e) != AE_IFREG) {
            err_entry(err, p, strlen(p), "not a regular file");
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        ssize_t n;
        while ((n = archive_read_data(ar, buf, CHUNK)) > 0) {
            if (par_buf_append(out, buf, (size_t)n) != PAR_OK) {
                err_entry(err, p, strlen(p), "larger than %zu bytes", cap);
                rc = PAR_E_TOO_LARGE;
                goto out;
            }
        }
        if (n < 0) {
            err_entry(err, p, strlen(p), "%s (truncated or corrupt archive)", ar_msg(ar));
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
    }
    if (r != ARCHIVE_EOF) {
        errf(err, "corrupt or truncated archive: %s\n", ar_msg(ar));
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    rc = found ? PAR_OK : PAR_E_NOT_FOUND;
out:
    if (rc != PAR_OK)
        par_buf_reset(out);
    free(buf);
    archive_read_free(ar);
    return rc;
}

/* ---- listing --------------------------------------------------------------------- */

static json_t *list_entry(struct archive *ar, struct archive_entry *e, const char *name, char *buf,
                          par_buf_t *err)
{
    mode_t type = archive_entry_filetype(e);
    const char *kind = type == AE_IFDIR ? "dir" : type == AE_IFLNK ? "symlink" : "file";
    json_t *o = json_pack("{s:s, s:s}", "name", name, "type", kind);
    if (o == NULL || type != AE_IFREG)
        return o;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    uint64_t size = 0;
    ssize_t n;
    while (ok && (n = archive_read_data(ar, buf, CHUNK)) > 0) {
        size += (uint64_t)n;
        ok = EVP_DigestUpdate(md, buf, (size_t)n) == 1;
    }
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    char hex[65];
    ok = ok && n == 0 && EVP_DigestFinal_ex(md, dg, &dn) == 1 && dn == 32;
    EVP_MD_CTX_free(md);
    if (!ok) {
        err_entry(err, name, strlen(name), "%s (truncated or corrupt archive)", ar_msg(ar));
        json_decref(o);
        return NULL;
    }
    par_hex_encode(dg, 32, hex);
    json_object_set_new(o, "size", json_integer((json_int_t)size));
    json_object_set_new(o, "sha256", json_string(hex));
    return o;
}

int par_archive_list(const par_archive_bytes_t *a, const par_archive_limits_t *lim, json_t **out,
                     par_buf_t *err)
{
    *out = NULL;
    struct archive *ar = NULL;
    int rc = open_reader(a, lim->max_entries, 0, &ar, err), r;
    if (rc != PAR_OK)
        return rc;
    char *buf = malloc(CHUNK);
    json_t *list = json_array();
    char name[PATH_MAX];
    struct archive_entry *e;
    while (buf && list && (r = archive_read_next_header(ar, &e)) != ARCHIVE_EOF) {
        const char *raw = archive_entry_pathname(e);
        const char *rule = r != ARCHIVE_OK ? "corrupt or truncated archive"
                           : raw == NULL   ? "no name libarchive can read"
                                           : canon_name(raw, name, sizeof(name));
        if (rule != NULL) {
            err_entry(err, raw ? raw : "", raw ? strlen(raw) : 0, "%s", rule);
            rc = r != ARCHIVE_OK ? PAR_E_INVALID_PACKAGE : PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
        if (lim->max_depth && name_depth(name) > lim->max_depth) {
            err_entry(err, raw, strlen(raw), "%zu directory levels deep, more than the limit of %u",
                      name_depth(name), lim->max_depth);
            rc = PAR_E_BAD_ARCHIVE;
            goto out;
        }
        json_t *o = name[0] ? list_entry(ar, e, name, buf, err) : NULL;
        if (name[0] && o == NULL) {
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        if (o)
            json_array_append_new(list, o);
    }
    if (buf == NULL || list == NULL)
        rc = PAR_E_NO_MEMORY;
out:
    free(buf);
    archive_read_free(ar);
    if (rc == PAR_OK)
        *out = list;
    else
        json_decref(list);
    return rc;
}

/* ---- extraction ------------------------------------------------------------------ */

typedef struct extract_ctx {
    struct archive *ar;
    int root;    /* dest_dir */
    size_t alen; /* archive bytes, for the ratio */
    const par_archive_limits_t *lim;
    uint64_t total; /* uncompressed bytes written so far */
    const par_archive_bytes_t *a;
    name_set_t seen;
    str_list_t links;
    par_buf_t *err;
} extract_ctx_t;

/* Opens the directory that will hold `name` (canonical, below `root`),
 * creating missing directories (0755) and following no symlink. Sets *leaf to
 * the last component. Returns a descriptor, or -1 with errno set. */
static int open_parent(int root, char *name, const char **leaf)
{
    int cur = fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return -1;
    char *s = name, *slash;
    while ((slash = strchr(s, '/')) != NULL) {
        *slash = '\0';
        int created = mkdirat(cur, s, 0700) == 0;
        int next = -1;
        if (created || errno == EEXIST)
            next = openat(cur, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        *slash = '/';
        if (next >= 0 && created && fchmod(next, 0755) != 0) {
            close(next);
            next = -1;
        }
        int saved = errno;
        close(cur);
        if (next < 0) {
            errno = saved;
            return -1;
        }
        cur = next;
        s = slash + 1;
    }
    *leaf = s;
    return cur;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int over_ratio(uint64_t total, size_t alen, uint32_t max_ratio)
{
    if (max_ratio == 0 || total <= RATIO_FLOOR)
        return 0;
    return total > (uint64_t)max_ratio * (alen ? alen : 1);
}

/* Streams the current entry's data into `fd`, enforcing every size cap on the
 * bytes actually decompressed. Blocks come straight from libarchive (for a
 * stored entry, a pointer into the archive in memory): no copy on the way. */
static int write_data(extract_ctx_t *x, const char *raw, int fd)
{
    const par_archive_limits_t *lim = x->lim;
    size_t rl = strlen(raw);
    uint64_t size = 0;
    for (;;) {
        const void *block;
        size_t n;
        la_int64_t offset;
        int r = archive_read_data_block(x->ar, &block, &n, &offset);
        if (r == ARCHIVE_EOF)
            return PAR_OK;
        if (r != ARCHIVE_OK) {
            err_entry(x->err, raw, rl, "%s (truncated or corrupt archive)", ar_msg(x->ar));
            return PAR_E_INVALID_PACKAGE;
        }
        if (offset < 0 || (uint64_t)offset != size) {
            /* ZIP entries are contiguous; a hole would be a sparse entry */
            err_entry(x->err, raw, rl, "data block at offset %lld, expected %llu",
                      (long long)offset, (unsigned long long)size);
            return PAR_E_INVALID_PACKAGE;
        }
        size += (uint64_t)n;
        x->total += (uint64_t)n;
        if (size > lim->max_entry_bytes) {
            err_entry(x->err, raw, rl, "more than %llu bytes uncompressed (cap per entry)",
                      (unsigned long long)lim->max_entry_bytes);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (x->total > lim->max_total_bytes) {
            err_entry(x->err, raw, rl,
                      "the archive holds more than %llu bytes uncompressed in total",
                      (unsigned long long)lim->max_total_bytes);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (over_ratio(x->total, x->alen, lim->max_ratio)) {
            err_entry(x->err, raw, rl,
                      "compression ratio over %u:1 (%llu bytes out of a %zu-byte archive; zip "
                      "bomb)",
                      lim->max_ratio, (unsigned long long)x->total, x->alen);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (n && write_all(fd, block, n) != 0) {
            err_entry(x->err, raw, rl, "cannot write: %s", strerror(errno));
            return PAR_E_IO;
        }
        if (!lease_intact(x->a)) /* stop before the writer may get in */
            return lease_lost(x->err);
    }
}

static const char *special_kind(mode_t type)
{
    switch (type) {
    case AE_IFCHR:
        return "character device";
    case AE_IFBLK:
        return "block device";
    case AE_IFIFO:
        return "FIFO";
    case AE_IFSOCK:
        return "socket";
    default:
        return "file of unknown type";
    }
}

static int extract_entry(extract_ctx_t *x, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    if (raw == NULL) {
        errf(x->err, "an entry has no name libarchive can read\n");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    size_t rl = strlen(raw);
    char name[PATH_MAX];
    const char *rule = canon_name(raw, name, sizeof(name));
    if (rule != NULL) {
        err_entry(x->err, raw, rl, "%s", rule);
        return PAR_E_UNSAFE_ARCHIVE;
    }
    size_t depth = name_depth(name);
    if (x->lim->max_depth && depth > x->lim->max_depth) {
        err_entry(x->err, raw, rl, "%zu directory levels deep, more than the limit of %u", depth,
                  x->lim->max_depth);
        return PAR_E_BAD_ARCHIVE;
    }
    mode_t type = archive_entry_filetype(e);
    if (name[0] == '\0') {
        if (type == AE_IFDIR)
            return PAR_OK; /* "./": the root, which exists */
        err_entry(x->err, raw, rl, "names the package root");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    if (archive_entry_hardlink(e) != NULL) {
        err_entry(x->err, raw, rl, "hard links are not allowed");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
        err_entry(x->err, raw, rl, "special files (%s) are not allowed", special_kind(type));
        return PAR_E_UNSAFE_ARCHIVE;
    }
    const char *target = NULL;
    if (type == AE_IFLNK) {
        target = archive_entry_symlink(e);
        if (target == NULL || target[0] == '\0') {
            err_entry(x->err, raw, rl, "symlink without a target");
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (strlen(target) >= PATH_MAX || !link_lexically_inside(name, target)) {
            err_entry(x->err, raw, rl, "symlink to \"%s\" leaves the package", target);
            return PAR_E_UNSAFE_ARCHIVE;
        }
    }
    switch (set_add(&x->seen, name)) {
    case -1:
        errf(x->err, "out of memory\n");
        return PAR_E_NO_MEMORY;
    case 0:
        err_entry(x->err, raw, rl, "duplicate entry (an earlier entry has the same path)");
        return PAR_E_UNSAFE_ARCHIVE;
    }

    const char *leaf;
    int dfd = open_parent(x->root, name, &leaf);
    if (dfd < 0) {
        int unsafe = errno == ELOOP || errno == ENOTDIR || errno == EEXIST;
        err_entry(x->err, raw, rl, "cannot create its directory: %s",
                  unsafe ? "a parent is a symlink or a file" : strerror(errno));
        return unsafe ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
    }
    int rc = PAR_OK;
    if (type == AE_IFDIR) {
        /* the directory may already exist as the parent of an earlier entry */
        if (mkdirat(dfd, leaf, 0700) != 0 && errno != EEXIST) {
            err_entry(x->err, raw, rl, "cannot create: %s", strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        int fd = openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            err_entry(x->err, raw, rl, "conflicts with an earlier entry (not a directory)");
            rc = PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
        if (fchmod(fd, 0755) != 0) {
            err_entry(x->err, raw, rl, "cannot set its mode: %s", strerror(errno));
            rc = PAR_E_IO;
        }
        close(fd);
    } else if (type == AE_IFLNK) {
        if (symlinkat(target, dfd, leaf) != 0) {
            int exists = errno == EEXIST;
            err_entry(x->err, raw, rl, "cannot create the symlink: %s",
                      exists ? "conflicts with an earlier entry" : strerror(errno));
            rc = exists ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
            goto out;
        }
        if (list_add(&x->links, name) != 0) {
            errf(x->err, "out of memory\n");
            rc = PAR_E_NO_MEMORY;
        }
    } else {
        int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            int exists = errno == EEXIST;
            err_entry(x->err, raw, rl, "cannot create: %s",
                      exists ? "conflicts with an earlier entry" : strerror(errno));
            rc = exists ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
            goto out;
        }
        rc = write_data(x, raw, fd);
        mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
        if (rc == PAR_OK && fchmod(fd, mode) != 0) {
            err_entry(x->err, raw, rl, "cannot set its mode: %s", strerror(errno));
            rc = PAR_E_IO;
        }
        if (close(fd) != 0 && rc == PAR_OK) {
            err_entry(x->err, raw, rl, "cannot write: %s", strerror(errno));
            rc = PAR_E_IO;
        }
    }
out:
    close(dfd);
    return rc;
}

static int dir_is_empty(int fd)
{
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return -1;
    DIR *d = fdopendir(dup_fd);
    if (d == NULL) {
        close(dup_fd);
        return -1;
    }
    int empty = 1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

int par_archive_extract(const par_archive_bytes_t *a, const char *dest_dir,
                        const par_archive_limits_t *lim, par_buf_t *err)
{
    extract_ctx_t x = {.root = -1, .alen = a->len, .lim = lim, .a = a, .err = err};
    int rc = PAR_OK, r;

    x.root = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x.root < 0) {
        errf(err, "%s: cannot open: %s\n", dest_dir, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    int empty = dir_is_empty(x.root);
    if (empty != 1) {
        errf(err, "%s: %s\n", dest_dir,
             empty < 0 ? strerror(errno) : "not empty (extraction needs an empty directory)");
        rc = empty < 0 ? PAR_E_IO : PAR_E_INVALID_ARGUMENT;
        goto out;
    }
    if ((rc = open_reader(a, lim->max_entries, lim->bytes_verified, &x.ar, err)) != PAR_OK)
        goto out;
    uint64_t entries = 0;
    struct archive_entry *e;
    while ((r = archive_read_next_header(x.ar, &e)) != ARCHIVE_EOF) {
        if (!lease_intact(a)) {
            rc = lease_lost(err);
            goto out;
        }
        /* ARCHIVE_WARN included: a package is either clean or refused */
        if (r != ARCHIVE_OK) {
            errf(err, "corrupt or truncated archive: %s\n", ar_msg(x.ar));
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        if (++entries > lim->max_entries) {
            errf(err, "more than %llu entries (zip bomb by count)\n",
                 (unsigned long long)lim->max_entries);
            rc = PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
        if ((rc = extract_entry(&x, e)) != PAR_OK)
            goto out;
    }
    /* the tree is complete: now links can be followed through each other */
    for (size_t i = 0; i < x.links.n; i++) {
        const char *why = link_physically_inside(x.root, x.links.items[i]);
        if (why != NULL) {
            err_entry(err, x.links.items[i], strlen(x.links.items[i]), "symlink refused: %s", why);
            rc = PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
    }
    if (!lease_intact(a)) {
        rc = lease_lost(err);
        goto out;
    }
out:
    set_free(&x.seen);
    list_free(&x.links);
    archive_read_free(x.ar);
    if (x.root >= 0)
        close(x.root);
    return rc;
}

/* ---- pack ------------------------------------------------------------------------ */

typedef struct pack_item {
    char *name; /* name in the archive; directories end with '/' */
    mode_t type;
} pack_item_t;

typedef struct pack_ctx {
    int root;
    const char *dir;
    pack_item_t *items;
    size_t n, cap;
    struct stat skip[2]; /* the output file and its .tmp, when they are inside dir */
    int nskip;
    par_buf_t *err;
} pack_ctx_t;

static int add_item(pack_ctx_t *p, const char *name, mode_t type)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        pack_item_t *ni = realloc(p->items, ncap * sizeof(*ni));
        if (ni == NULL)
            return PAR_E_NO_MEMORY;
        p->items = ni;
        p->cap = ncap;
    }
    if ((p->items[p->n].name = strdup(name)) == NULL)
        return PAR_E_NO_MEMORY;
    p->items[p->n++].type = type;
    return PAR_OK;
}

/* Collects the entries below `rel` ("" for the root). */
static int collect(pack_ctx_t *p, const char *rel)
{
    int fd = rel[0] ? openat(p->root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    : fcntl(p->root, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        errf(p->err, "%s/%s: cannot open: %s\n", p->dir, rel, strerror(errno));
        if (fd >= 0)
            close(fd);
        return PAR_E_IO;
    }
    int rc = PAR_OK;
    struct dirent *de;
    char sub[PATH_MAX], canon[PATH_MAX];
    while (rc == PAR_OK && (errno = 0, de = readdir(d)) != NULL) {
        /* like pixell build: no VCS metadata, no Python bytecode caches */
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, ".git") == 0 || strcmp(de->d_name, "__pycache__") == 0)
            continue;
        if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
            sizeof(sub) - 1) {
            errf(p->err, "%s/%s/%s: path too long\n", p->dir, rel, de->d_name);
            rc = PAR_E_INVALID_PACKAGE;
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            errf(p->err, "%s/%s: %s\n", p->dir, sub, strerror(errno));
            rc = PAR_E_IO;
            break;
        }
        int skip = 0;
        for (int i = 0; i < p->nskip; i++)
            skip |= st.st_dev == p->skip[i].st_dev && st.st_ino == p->skip[i].st_ino;
        if (skip)
            continue;
        /* what extraction would refuse is refused here, with the reason */
        const char *rule = canon_name(sub, canon, sizeof(canon));
        if (rule != NULL) {
            errf(p->err, "%s: ", p->dir);
            err_entry(p->err, sub, strlen(sub), "%s (PAR refuses such names when extracting)",
                      rule);
            rc = PAR_E_INVALID_PACKAGE;
            break;
        }
        if (name_depth(canon) > PAR_ARCHIVE_MAX_DEPTH) {
            /* extraction would refuse it; this also bounds collect()'s recursion */
            errf(p->err, "%s: ", p->dir);
            err_entry(p->err, sub, strlen(sub),
                      "more than %u directory levels deep (PAR refuses such archives)",
                      PAR_ARCHIVE_MAX_DEPTH);
            rc = PAR_E_BAD_ARCHIVE;
        } else if (S_ISDIR(st.st_mode)) {
            char dname[PATH_MAX + 1];
            snprintf(dname, sizeof(dname), "%s/", sub);
            if ((rc = add_item(p, dname, AE_IFDIR)) == PAR_OK)
                rc = collect(p, sub);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_item(p, sub, AE_IFREG);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t tn = readlinkat(p->root, sub, target, sizeof(target) - 1);
            if (tn < 0) {
                errf(p->err, "%s/%s: cannot read the link: %s\n", p->dir, sub, strerror(errno));
                rc = PAR_E_IO;
                break;
            }
            target[tn] = '\0';
            const char *why = link_lexically_inside(sub, target)
                                  ? link_physically_inside(p->root, sub)
                                  : "its target leaves the package directory";
            if (why != NULL) {
                errf(p->err, "%s/%s: symlink to \"%s\" refused: %s\n", p->dir, sub, target, why);
                rc = PAR_E_UNSAFE_ARCHIVE;
                break;
            }
            rc = add_item(p, sub, AE_IFLNK);
        } else {
            errf(p->err, "%s/%s: special files (devices, FIFOs, sockets) cannot be packed\n",
                 p->dir, sub);
            rc = PAR_E_UNSAFE_ARCHIVE;
        }
    }
    if (rc == PAR_OK && errno != 0) {
        errf(p->err, "%s/%s: cannot list: %s\n", p->dir, rel, strerror(errno));
        rc = PAR_E_IO;
    }
    closedir(d);
    return rc;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const pack_item_t *)a)->name, ((const pack_item_t *)b)->name);
}

static int pack_file(pack_ctx_t *p, struct archive *aw, struct archive_entry *e, const char *name,
                     char *buf)
{
    int rc = PAR_OK;
    int fd = openat(p->root, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        errf(p->err, "%s/%s: cannot open: %s\n", p->dir, name, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        errf(p->err, "%s/%s: changed while it was packed\n", p->dir, name);
        rc = PAR_E_IO;
        goto out;
    }
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, (st.st_mode & 0111) ? 0755 : 0644);
    archive_entry_set_size(e, st.st_size);
    if (archive_write_header(aw, e) != ARCHIVE_OK) {
        errf(p->err, "%s: %s\n", name, ar_msg(aw));
        rc = PAR_E_IO;
        goto out;
    }
    uint64_t done = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            errf(p->err, "%s/%s: cannot read: %s\n", p->dir, name, strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        if (n == 0)
            break;
        if (done + (uint64_t)n > (uint64_t)st.st_size)
            break;
        if (archive_write_data(aw, buf, (size_t)n) != n) {
            errf(p->err, "%s: %s\n", name, ar_msg(aw));
            rc = PAR_E_IO;
            goto out;
        }
        done += (uint64_t)n;
    }
    /* the header already holds the size: a file that changed would be corrupt */
    if (done != (uint64_t)st.st_size) {
        errf(p->err, "%s/%s: changed while it was packed; retry\n", p->dir, name);
        rc = PAR_E_IO;
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int pack_item(pack_ctx_t *p, struct archive *aw, const pack_item_t *it, char *buf)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return PAR_E_NO_MEMORY;
    int rc = PAR_OK;
    archive_entry_set_pathname(e, it->name);
    /* fixed metadata (see the top of the file): mtime 0, owner 0, no names */
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    if (it->type == AE_IFDIR) {
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        archive_entry_set_size(e, 0);
        if (archive_write_header(aw, e) != ARCHIVE_OK) {
            errf(p->err, "%s: %s\n", it->name, ar_msg(aw));
            rc = PAR_E_IO;
        }
    } else if (it->type == AE_IFLNK) {
        char target[PATH_MAX];
        ssize_t tn = readlinkat(p->root, it->name, target, sizeof(target) - 1);
        if (tn < 0) {
            errf(p->err, "%s/%s: %s\n", p->dir, it->name, strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        target[tn] = '\0';
        if (!link_lexically_inside(it->name, target)) {
            errf(p->err, "%s/%s: changed while it was packed; retry\n", p->dir, it->name);
            rc = PAR_E_IO;
            goto out;
        }
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, target);
        if (archive_write_header(aw, e) != ARCHIVE_OK) {
            errf(p->err, "%s: %s\n", it->name, ar_msg(aw));
            rc = PAR_E_IO;
        }
    } else {
        rc = pack_file(p, aw, e, it->name, buf);
    }
out:
    archive_entry_free(e);
    return rc;
}

int par_archive_pack(const char *dir, const char *out_path, par_buf_t *err)
{
    pack_ctx_t p = {.root = -1, .dir = dir, .err = err};
    struct archive *aw = NULL;
    char *buf = NULL, *tmp = NULL;
    int fd = -1, rc = PAR_OK, created = 0;

    if (asprintf(&tmp, "%s.tmp", out_path) < 0) {
        tmp = NULL;
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    p.root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p.root < 0) {
        errf(err, "%s: cannot open: %s\n", dir, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    struct stat st;
    if (fstatat(p.root, "agent.yaml", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        errf(err,
             "%s: no agent.yaml (a package directory has a regular file agent.yaml at its "
             "root)\n",
             dir);
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    /* an earlier output (or a stale .tmp) inside dir must not pack itself */
    if (stat(out_path, &p.skip[p.nskip]) == 0)
        p.nskip++;
    if (stat(tmp, &p.skip[p.nskip]) == 0)
        p.nskip++;
    if ((rc = collect(&p, "")) != PAR_OK)
        goto out;
    if (p.n > 0)
        qsort(p.items, p.n, sizeof(*p.items), cmp_item);

    buf = malloc(CHUNK);
    aw = archive_write_new();
    if (buf == NULL || aw == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        errf(err, "%s: cannot create: %s\n", tmp, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    created = 1;
    /* no padding after the end record: the file ends where the ZIP does */
    if (archive_write_set_format_zip(aw) != ARCHIVE_OK ||
        archive_write_set_options(aw, "zip:compression=deflate") != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(aw, 1) != ARCHIVE_OK ||
        archive_write_open_fd(aw, fd) != ARCHIVE_OK) {
        errf(err, "%s: %s\n", tmp, ar_msg(aw));
        rc = PAR_E_IO;
        goto out;
    }
    for (size_t i = 0; i < p.n && rc == PAR_OK; i++)
        rc = pack_item(&p, aw, &p.items[i], buf);
    if (rc != PAR_OK)
        goto out;
    if (archive_write_close(aw) != ARCHIVE_OK) {
        errf(err, "%s: %s\n", tmp, ar_msg(aw));
        rc = PAR_E_IO;
        goto out;
    }
    int fail = fsync(fd) != 0;
    fail |= close(fd) != 0;
    fd = -1;
    if (fail || rename(tmp, out_path) != 0) {
        errf(err, "%s: cannot write: %s\n", out_path, strerror(errno));
        rc = PAR_E_IO;
    }
out:
    if (aw != NULL)
        archive_write_free(aw);
    if (fd >= 0)
        close(fd);
    if (rc != PAR_OK && created)
        unlink(tmp);
    if (p.root >= 0)
        close(p.root);
    for (size_t i = 0; i < p.n; i++)
        free(p.items[i].name);
    free(p.items);
    free(buf);
    free(tmp);
    return rc;
}
