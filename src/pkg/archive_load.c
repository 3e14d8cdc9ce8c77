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
    assert(avail >= f->avail); /* the reader only ever moves forward */
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

/* One par_archive_load() call: the file, its buffer and the digests on the way. */
typedef struct loader {
    const char *path;
    const par_archive_limits_t *lim;
    par_buf_t *err;
    int fd;
    int leased;          /* data maps the file under a read lease */
    unsigned char *data; /* NULL once handed to the caller */
    size_t size;         /* the file's size when opened (or leased) */
    size_t len;          /* bytes read and hashed */
    size_t mapped;       /* archive_buffer()'s mapping size, 0 when malloc'd */
    EVP_MD_CTX *md;
    b2_follow_t b2;
    pthread_t b2_tid;
    int b2_running;
} loader_t;

/* Opens and checks the file, then maps it under a lease or allocates the
 * buffer it will be read into (l->data, NULL when out of memory). */
static int load_open(loader_t *l)
{
    const char *path = l->path;
    l->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (l->fd < 0) {
        par_buf_errf(l->err, "%s: cannot open: %s\n", path, strerror(errno));
        return PAR_E_IO;
    }
    struct stat st;
    if (fstat(l->fd, &st) != 0) {
        par_buf_errf(l->err, "%s: cannot stat: %s\n", path, strerror(errno));
        return PAR_E_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        par_buf_errf(l->err, "%s: not a regular file (an .apkg is a ZIP file)\n", path);
        return PAR_E_INVALID_PACKAGE;
    }
    if ((uint64_t)st.st_size > l->lim->max_archive_bytes) {
        par_buf_errf(l->err, "%s: %lld bytes, over the cap of %llu bytes for an archive\n", path,
                     (long long)st.st_size, (unsigned long long)l->lim->max_archive_bytes);
        return PAR_E_TOO_LARGE;
    }
    l->size = (size_t)st.st_size;
    if (l->size > 0 && (l->data = map_leased(l->fd, &l->size)) != NULL) {
        l->leased = 1;
        if ((uint64_t)l->size > l->lim->max_archive_bytes) {
            par_buf_errf(l->err, "%s: %zu bytes, over the cap of %llu bytes for an archive\n", path,
                         l->size, (unsigned long long)l->lim->max_archive_bytes);
            return PAR_E_TOO_LARGE;
        }
    } else {
        /* one spare byte: reading into it means the file grew after fstat */
        l->data = archive_buffer(l->size + 1, &l->mapped);
    }
    return PAR_OK;
}

/* Starts SHA-256 and, when asked for, the BLAKE2b thread. */
static int load_start_digests(loader_t *l)
{
    l->md = EVP_MD_CTX_new();
    if (l->data == NULL || l->md == NULL) {
        par_buf_errf(l->err, "%s: out of memory for %zu bytes\n", l->path, l->size);
        return PAR_E_NO_MEMORY;
    }
    if (EVP_DigestInit_ex(l->md, EVP_sha256(), NULL) != 1) {
        par_buf_errf(l->err, "%s: SHA-256 is unavailable\n", l->path);
        return PAR_E_INTERNAL;
    }
    if (!l->lim->with_blake2b)
        return PAR_OK;
    if (sodium_init() < 0 || crypto_generichash_init(&l->b2.st, NULL, 0, 64) != 0) {
        par_buf_errf(l->err, "%s: BLAKE2b is unavailable\n", l->path);
        return PAR_E_INTERNAL;
    }
    l->b2.data = l->data;
    pthread_mutex_init(&l->b2.lock, NULL);
    pthread_cond_init(&l->b2.cond, NULL);
    if (pthread_create(&l->b2_tid, NULL, b2_thread, &l->b2) != 0) {
        par_buf_errf(l->err, "%s: cannot start a hashing thread\n", l->path);
        return PAR_E_INTERNAL;
    }
    l->b2_running = 1;
    return PAR_OK;
}

/* Hashes the bytes, reading them first unless the file is mapped. */
static int load_read(loader_t *l)
{
    if (l->leased) {
        /* all there: BLAKE2b on its thread while SHA-256 runs here */
        l->len = l->size;
        if (l->b2_running)
            b2_publish(&l->b2, l->len, 0);
        if (EVP_DigestUpdate(l->md, l->data, l->len) != 1)
            return PAR_E_INTERNAL;
    }
    while (!l->leased) {
        /* chunks, so the BLAKE2b thread works while the rest is read */
        size_t want = l->size + 1 - l->len;
        if (want > HASH_CHUNK && l->len + HASH_CHUNK <= l->size)
            want = HASH_CHUNK;
        ssize_t r = read(l->fd, l->data + l->len, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            par_buf_errf(l->err, "%s: cannot read: %s\n", l->path, strerror(errno));
            return PAR_E_IO;
        }
        if (r == 0)
            break;
        l->len += (size_t)r;
        if (l->len > l->size)
            break;
        if (l->b2_running)
            b2_publish(&l->b2, l->len, 0);
        if (EVP_DigestUpdate(l->md, l->data + l->len - (size_t)r, (size_t)r) != 1)
            return PAR_E_INTERNAL;
    }
    if (l->len != l->size) {
        par_buf_errf(l->err,
                     "%s: the file %s while it was read (%zu bytes when opened); retry once it "
                     "is complete\n",
                     l->path, l->len > l->size ? "grew" : "shrank", l->size);
        return PAR_E_IO;
    }
    return PAR_OK;
}

/* Hands the bytes, their digests and the lease (if any) to `out`. */
static int load_finish(loader_t *l, par_archive_bytes_t *out)
{
    assert(l->len == l->size && l->data != NULL);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(l->md, digest, &dlen) != 1 || dlen != 32) {
        par_buf_errf(l->err, "%s: SHA-256 failed\n", l->path);
        return PAR_E_INTERNAL;
    }
    out->data = l->data;
    out->len = l->len;
    out->_mapped = l->mapped;
    if (l->leased) {
        out->_leased = 1;
        out->_fd = l->fd; /* holds the lease until par_archive_bytes_free() */
        l->fd = -1;
        l->leased = 0;
    }
    par_hex_encode(digest, dlen, out->sha256);
    if (l->b2_running) {
        b2_publish(&l->b2, l->len, 1);
        pthread_join(l->b2_tid, NULL);
        l->b2_running = 0;
        crypto_generichash_final(&l->b2.st, out->blake2b, 64);
        out->has_blake2b = 1;
    }
    l->data = NULL;
    return PAR_OK;
}

static void load_cleanup(loader_t *l)
{
    if (l->b2_running) {
        b2_publish(&l->b2, l->b2.avail, 1);
        pthread_join(l->b2_tid, NULL);
    }
    if (l->lim->with_blake2b && l->b2.data) {
        pthread_mutex_destroy(&l->b2.lock);
        pthread_cond_destroy(&l->b2.cond);
    }
    if (l->leased && l->data) {
        munmap(l->data, l->size);
        l->data = NULL;
        fcntl(l->fd, F_SETLEASE, F_UNLCK);
    }
    if (l->fd >= 0)
        close(l->fd);
    EVP_MD_CTX_free(l->md);
    archive_buffer_free(l->data, l->mapped);
}

int par_archive_load(const char *path, const par_archive_limits_t *lim, par_archive_bytes_t *out,
                     par_buf_t *err)
{
    loader_t l;
    memset(&l, 0, sizeof(l));
    l.path = path;
    l.lim = lim;
    l.err = err;
    l.fd = -1;
    memset(out, 0, sizeof(*out));

    int rc = load_open(&l);
    if (rc == PAR_OK)
        rc = load_start_digests(&l);
    if (rc == PAR_OK)
        rc = load_read(&l);
    if (rc == PAR_OK)
        rc = load_finish(&l, out);
    load_cleanup(&l);
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
