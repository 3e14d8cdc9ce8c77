/*
 * pkg/archive_load.c — reading a whole .apkg into memory with its digests.
 *
 * Owns: par_archive_load (the bytes, their SHA-256 and optionally BLAKE2b-512,
 * computed in one pass with BLAKE2b on a helper thread), the buffer those bytes
 * live in (malloc, a huge-page mapping, or a mapping of the file itself under
 * a read lease), par_archive_bytes_free, and the lease checks extraction uses.
 * Called by runtime/deploy.c on a deploy thread and by the CLI; any thread
 * (the only thread it starts is joined before it returns). It must never hand
 * out bytes other than the ones it hashed: a file that changes size while it
 * is read is refused, and a mapped file is used only under a read lease.
 */
#include "pkg/archive_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <par/par.h>

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
 * par__archive_lease_intact() tells whether it still does. Copying instead costs a fresh
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
int par__archive_lease_intact(const par_archive_bytes_t *b)
{
    return !b->_leased || fcntl(b->_fd, F_GETLEASE) == F_RDLCK;
}

int par__archive_lease_lost(par_buf_t *err)
{
    par_buf_errf(err, "the package file was opened for writing while it was extracted; the bytes "
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
        par_buf_errf(err, "%s: cannot open: %s\n", path, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        par_buf_errf(err, "%s: cannot stat: %s\n", path, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        par_buf_errf(err, "%s: not a regular file (an .apkg is a ZIP file)\n", path);
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    if ((uint64_t)st.st_size > lim->max_archive_bytes) {
        par_buf_errf(err, "%s: %lld bytes, over the cap of %llu bytes for an archive\n", path,
                     (long long)st.st_size, (unsigned long long)lim->max_archive_bytes);
        rc = PAR_E_TOO_LARGE;
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (size > 0 && (data = map_leased(fd, &size)) != NULL) {
        leased = 1;
        if ((uint64_t)size > lim->max_archive_bytes) {
            par_buf_errf(err, "%s: %zu bytes, over the cap of %llu bytes for an archive\n", path,
                         size, (unsigned long long)lim->max_archive_bytes);
            rc = PAR_E_TOO_LARGE;
            goto out;
        }
    } else {
        /* one spare byte: reading into it means the file grew after fstat */
        data = archive_buffer(size + 1, &mapped);
    }
    md = EVP_MD_CTX_new();
    if (data == NULL || md == NULL) {
        par_buf_errf(err, "%s: out of memory for %zu bytes\n", path, size);
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        par_buf_errf(err, "%s: SHA-256 is unavailable\n", path);
        rc = PAR_E_INTERNAL;
        goto out;
    }
    size_t len = 0;
    if (lim->with_blake2b) {
        if (sodium_init() < 0 || crypto_generichash_init(&b2.st, NULL, 0, 64) != 0) {
            par_buf_errf(err, "%s: BLAKE2b is unavailable\n", path);
            rc = PAR_E_INTERNAL;
            goto out;
        }
        b2.data = data;
        pthread_mutex_init(&b2.lock, NULL);
        pthread_cond_init(&b2.cond, NULL);
        if (pthread_create(&b2_tid, NULL, b2_thread, &b2) != 0) {
            par_buf_errf(err, "%s: cannot start a hashing thread\n", path);
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
            par_buf_errf(err, "%s: cannot read: %s\n", path, strerror(errno));
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
        par_buf_errf(err,
                     "%s: the file %s while it was read (%zu bytes when opened); retry once it is "
                     "complete\n",
                     path, len > size ? "grew" : "shrank", size);
        rc = PAR_E_IO;
        goto out;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 32) {
        par_buf_errf(err, "%s: SHA-256 failed\n", path);
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
