/*
 * pkg/archive_extract.c — extracting an archive safely into a directory.
 *
 * Owns: par_archive_extract and what it writes: names checked and made
 * canonical, duplicates refused, files created below a directory descriptor
 * one component at a time with O_NOFOLLOW and O_EXCL, modes normalised, sizes
 * and the compression ratio counted on the bytes actually decompressed, links
 * checked lexically and then against the finished tree (see archive.c's
 * comment for the full rules). Called by runtime/deploy.c on a deploy thread
 * and by the CLI; any thread, every handle lives for one call. It must never
 * write outside the destination directory, follow a symlink while writing, or
 * trust a size that a header claims.
 */
#include "pkg/archive_internal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/par.h>

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
    /* open addressing terminates: the table is never more than half full */
    assert(set->cap > 0 && (set->cap & (set->cap - 1)) == 0 && 2 * (set->n + 1) <= set->cap);
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
    assert(l->n < l->cap);
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
            par__archive_err_entry(x->err, raw, rl, "%s (truncated or corrupt archive)",
                                   par__archive_ar_msg(x->ar));
            return PAR_E_INVALID_PACKAGE;
        }
        if (offset < 0 || (uint64_t)offset != size) {
            /* ZIP entries are contiguous; a hole would be a sparse entry */
            par__archive_err_entry(x->err, raw, rl, "data block at offset %lld, expected %llu",
                                   (long long)offset, (unsigned long long)size);
            return PAR_E_INVALID_PACKAGE;
        }
        size += (uint64_t)n;
        x->total += (uint64_t)n;
        if (size > lim->max_entry_bytes) {
            par__archive_err_entry(x->err, raw, rl,
                                   "more than %llu bytes uncompressed (cap per entry)",
                                   (unsigned long long)lim->max_entry_bytes);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (x->total > lim->max_total_bytes) {
            par__archive_err_entry(x->err, raw, rl,
                                   "the archive holds more than %llu bytes uncompressed in total",
                                   (unsigned long long)lim->max_total_bytes);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (over_ratio(x->total, x->alen, lim->max_ratio)) {
            par__archive_err_entry(
                x->err, raw, rl,
                "compression ratio over %u:1 (%llu bytes out of a %zu-byte archive; zip "
                "bomb)",
                lim->max_ratio, (unsigned long long)x->total, x->alen);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (n && write_all(fd, block, n) != 0) {
            par__archive_err_entry(x->err, raw, rl, "cannot write: %s", strerror(errno));
            return PAR_E_IO;
        }
        if (!par__archive_lease_intact(x->a)) /* stop before the writer may get in */
            return par__archive_lease_lost(x->err);
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

/* The rules one entry must pass before anything is written: a safe name
 * (canonical form into `name`), the depth cap, no hard link or special file,
 * a symlink target inside the tree, no duplicate. *skip is set for the root
 * directory entry ("./"), which exists already. */
static int entry_rules(extract_ctx_t *x, struct archive_entry *e, const char *raw, char *name,
                       size_t namesz, int *skip)
{
    size_t rl = strlen(raw);
    const char *rule = par__archive_canon_name(raw, name, namesz);
    if (rule != NULL) {
        par__archive_err_entry(x->err, raw, rl, "%s", rule);
        return PAR_E_UNSAFE_ARCHIVE;
    }
    size_t depth = par__archive_name_depth(name);
    if (x->lim->max_depth && depth > x->lim->max_depth) {
        par__archive_err_entry(x->err, raw, rl,
                               "%zu directory levels deep, more than the limit of %u", depth,
                               x->lim->max_depth);
        return PAR_E_BAD_ARCHIVE;
    }
    mode_t type = archive_entry_filetype(e);
    if (name[0] == '\0') {
        if (type == AE_IFDIR) {
            *skip = 1; /* "./": the root, which exists */
            return PAR_OK;
        }
        par__archive_err_entry(x->err, raw, rl, "names the package root");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    if (archive_entry_hardlink(e) != NULL) {
        par__archive_err_entry(x->err, raw, rl, "hard links are not allowed");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
        par__archive_err_entry(x->err, raw, rl, "special files (%s) are not allowed",
                               special_kind(type));
        return PAR_E_UNSAFE_ARCHIVE;
    }
    if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (target == NULL || target[0] == '\0') {
            par__archive_err_entry(x->err, raw, rl, "symlink without a target");
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (strlen(target) >= PATH_MAX || !par__archive_link_lexically_inside(name, target)) {
            par__archive_err_entry(x->err, raw, rl, "symlink to \"%s\" leaves the package", target);
            return PAR_E_UNSAFE_ARCHIVE;
        }
    }
    switch (set_add(&x->seen, name)) {
    case -1:
        par_buf_errf(x->err, "out of memory\n");
        return PAR_E_NO_MEMORY;
    case 0:
        par__archive_err_entry(x->err, raw, rl,
                               "duplicate entry (an earlier entry has the same path)");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    return PAR_OK;
}

static int make_dir(extract_ctx_t *x, int dfd, const char *leaf, const char *raw)
{
    size_t rl = strlen(raw);
    /* the directory may already exist as the parent of an earlier entry */
    if (mkdirat(dfd, leaf, 0700) != 0 && errno != EEXIST) {
        par__archive_err_entry(x->err, raw, rl, "cannot create: %s", strerror(errno));
        return PAR_E_IO;
    }
    int fd = openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        par__archive_err_entry(x->err, raw, rl,
                               "conflicts with an earlier entry (not a directory)");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    int rc = PAR_OK;
    if (fchmod(fd, 0755) != 0) {
        par__archive_err_entry(x->err, raw, rl, "cannot set its mode: %s", strerror(errno));
        rc = PAR_E_IO;
    }
    close(fd);
    return rc;
}

static int make_link(extract_ctx_t *x, int dfd, const char *leaf, const char *target,
                     const char *name, const char *raw)
{
    if (symlinkat(target, dfd, leaf) != 0) {
        int exists = errno == EEXIST;
        par__archive_err_entry(x->err, raw, strlen(raw), "cannot create the symlink: %s",
                               exists ? "conflicts with an earlier entry" : strerror(errno));
        return exists ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
    }
    /* checked against the finished tree once every entry is out */
    if (list_add(&x->links, name) != 0) {
        par_buf_errf(x->err, "out of memory\n");
        return PAR_E_NO_MEMORY;
    }
    return PAR_OK;
}

static int make_file(extract_ctx_t *x, struct archive_entry *e, int dfd, const char *leaf,
                     const char *raw)
{
    size_t rl = strlen(raw);
    int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int exists = errno == EEXIST;
        par__archive_err_entry(x->err, raw, rl, "cannot create: %s",
                               exists ? "conflicts with an earlier entry" : strerror(errno));
        return exists ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
    }
    int rc = write_data(x, raw, fd);
    mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
    if (rc == PAR_OK && fchmod(fd, mode) != 0) {
        par__archive_err_entry(x->err, raw, rl, "cannot set its mode: %s", strerror(errno));
        rc = PAR_E_IO;
    }
    if (close(fd) != 0 && rc == PAR_OK) {
        par__archive_err_entry(x->err, raw, rl, "cannot write: %s", strerror(errno));
        rc = PAR_E_IO;
    }
    return rc;
}

static int extract_entry(extract_ctx_t *x, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    if (raw == NULL) {
        par_buf_errf(x->err, "an entry has no name libarchive can read\n");
        return PAR_E_UNSAFE_ARCHIVE;
    }
    char name[PATH_MAX];
    int skip = 0;
    int rc = entry_rules(x, e, raw, name, sizeof(name), &skip);
    if (rc != PAR_OK || skip)
        return rc;

    const char *leaf;
    int dfd = open_parent(x->root, name, &leaf);
    if (dfd < 0) {
        int unsafe = errno == ELOOP || errno == ENOTDIR || errno == EEXIST;
        par__archive_err_entry(x->err, raw, strlen(raw), "cannot create its directory: %s",
                               unsafe ? "a parent is a symlink or a file" : strerror(errno));
        return unsafe ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
    }
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFDIR)
        rc = make_dir(x, dfd, leaf, raw);
    else if (type == AE_IFLNK)
        rc = make_link(x, dfd, leaf, archive_entry_symlink(e), name, raw);
    else
        rc = make_file(x, e, dfd, leaf, raw);
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
        par_buf_errf(err, "%s: cannot open: %s\n", dest_dir, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    int empty = dir_is_empty(x.root);
    if (empty != 1) {
        par_buf_errf(err, "%s: %s\n", dest_dir,
                     empty < 0 ? strerror(errno)
                               : "not empty (extraction needs an empty directory)");
        rc = empty < 0 ? PAR_E_IO : PAR_E_INVALID_ARGUMENT;
        goto out;
    }
    if ((rc = par__archive_open_reader(a, lim->max_entries, lim->bytes_verified, &x.ar, err)) !=
        PAR_OK)
        goto out;
    uint64_t entries = 0;
    struct archive_entry *e;
    while ((r = archive_read_next_header(x.ar, &e)) != ARCHIVE_EOF) {
        if (!par__archive_lease_intact(a)) {
            rc = par__archive_lease_lost(err);
            goto out;
        }
        /* ARCHIVE_WARN included: a package is either clean or refused */
        if (r != ARCHIVE_OK) {
            par_buf_errf(err, "corrupt or truncated archive: %s\n", par__archive_ar_msg(x.ar));
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        if (++entries > lim->max_entries) {
            par_buf_errf(err, "more than %llu entries (zip bomb by count)\n",
                         (unsigned long long)lim->max_entries);
            rc = PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
        if ((rc = extract_entry(&x, e)) != PAR_OK)
            goto out;
    }
    /* the tree is complete: now links can be followed through each other */
    for (size_t i = 0; i < x.links.n; i++) {
        const char *why = par__archive_link_physically_inside(x.root, x.links.items[i]);
        if (why != NULL) {
            par__archive_err_entry(err, x.links.items[i], strlen(x.links.items[i]),
                                   "symlink refused: %s", why);
            rc = PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
    }
    if (!par__archive_lease_intact(a)) {
        rc = par__archive_lease_lost(err);
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
