/*
 * pkg/archive_pack.c — `par pack`'s deterministic ZIP writer.
 *
 * Owns: par_archive_pack: the walk of a package directory with descriptors
 * (O_NOFOLLOW, `.git` skipped), entry names sorted bytewise, fixed metadata so
 * the bytes depend on names, contents and the execute bit only (see
 * archive.c's comment). Called by the CLI (`par pack`) and tests; any thread,
 * no global state. It must never follow a symlink out of the tree it packs,
 * pack a special file, or write anything but the output file.
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
    assert(p->n < p->cap);
    if ((p->items[p->n].name = strdup(name)) == NULL)
        return PAR_E_NO_MEMORY;
    p->items[p->n++].type = type;
    return PAR_OK;
}

/* Collects the entries below `rel` ("" for the root). */
static int collect(pack_ctx_t *p, const char *rel);

/* A symlink found by collect(): packed only when it stays inside the tree,
 * both lexically and resolved against the tree as it is. */
static int collect_link(pack_ctx_t *p, const char *sub)
{
    char target[PATH_MAX];
    ssize_t tn = readlinkat(p->root, sub, target, sizeof(target) - 1);
    if (tn < 0) {
        par_buf_errf(p->err, "%s/%s: cannot read the link: %s\n", p->dir, sub, strerror(errno));
        return PAR_E_IO;
    }
    target[tn] = '\0';
    const char *why = par__archive_link_lexically_inside(sub, target)
                          ? par__archive_link_physically_inside(p->root, sub)
                          : "its target leaves the package directory";
    if (why != NULL) {
        par_buf_errf(p->err, "%s/%s: symlink to \"%s\" refused: %s\n", p->dir, sub, target, why);
        return PAR_E_UNSAFE_ARCHIVE;
    }
    return add_item(p, sub, AE_IFLNK);
}

/* One directory entry `d_name` of `rel` (open as `dfd`): skipped, refused,
 * added, or (a directory) added and walked. */
static int collect_one(pack_ctx_t *p, int dfd, const char *rel, const char *d_name)
{
    char sub[PATH_MAX], canon[PATH_MAX];
    /* like pixell build: no VCS metadata, no Python bytecode caches */
    if (strcmp(d_name, ".") == 0 || strcmp(d_name, "..") == 0 || strcmp(d_name, ".git") == 0 ||
        strcmp(d_name, "__pycache__") == 0)
        return PAR_OK;
    if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", d_name) >=
        sizeof(sub) - 1) {
        par_buf_errf(p->err, "%s/%s/%s: path too long\n", p->dir, rel, d_name);
        return PAR_E_INVALID_PACKAGE;
    }
    struct stat st;
    if (fstatat(dfd, d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        par_buf_errf(p->err, "%s/%s: %s\n", p->dir, sub, strerror(errno));
        return PAR_E_IO;
    }
    for (int i = 0; i < p->nskip; i++)
        if (st.st_dev == p->skip[i].st_dev && st.st_ino == p->skip[i].st_ino)
            return PAR_OK;
    /* what extraction would refuse is refused here, with the reason */
    const char *rule = par__archive_canon_name(sub, canon, sizeof(canon));
    if (rule != NULL) {
        par_buf_errf(p->err, "%s: ", p->dir);
        par__archive_err_entry(p->err, sub, strlen(sub),
                               "%s (PAR refuses such names when extracting)", rule);
        return PAR_E_INVALID_PACKAGE;
    }
    if (par__archive_name_depth(canon) > PAR_ARCHIVE_MAX_DEPTH) {
        /* extraction would refuse it; this also bounds collect()'s recursion */
        par_buf_errf(p->err, "%s: ", p->dir);
        par__archive_err_entry(p->err, sub, strlen(sub),
                               "more than %u directory levels deep (PAR refuses such archives)",
                               PAR_ARCHIVE_MAX_DEPTH);
        return PAR_E_BAD_ARCHIVE;
    }
    if (S_ISDIR(st.st_mode)) {
        char dname[PATH_MAX + 1];
        snprintf(dname, sizeof(dname), "%s/", sub);
        int rc = add_item(p, dname, AE_IFDIR);
        return rc == PAR_OK ? collect(p, sub) : rc;
    }
    if (S_ISREG(st.st_mode))
        return add_item(p, sub, AE_IFREG);
    if (S_ISLNK(st.st_mode))
        return collect_link(p, sub);
    par_buf_errf(p->err, "%s/%s: special files (devices, FIFOs, sockets) cannot be packed\n",
                 p->dir, sub);
    return PAR_E_UNSAFE_ARCHIVE;
}

static int collect(pack_ctx_t *p, const char *rel)
{
    int fd = rel[0] ? openat(p->root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    : fcntl(p->root, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        par_buf_errf(p->err, "%s/%s: cannot open: %s\n", p->dir, rel, strerror(errno));
        if (fd >= 0)
            close(fd);
        return PAR_E_IO;
    }
    int rc = PAR_OK;
    struct dirent *de;
    while (rc == PAR_OK && (errno = 0, de = readdir(d)) != NULL)
        rc = collect_one(p, dirfd(d), rel, de->d_name);
    if (rc == PAR_OK && errno != 0) {
        par_buf_errf(p->err, "%s/%s: cannot list: %s\n", p->dir, rel, strerror(errno));
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
        par_buf_errf(p->err, "%s/%s: cannot open: %s\n", p->dir, name, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        par_buf_errf(p->err, "%s/%s: changed while it was packed\n", p->dir, name);
        rc = PAR_E_IO;
        goto out;
    }
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, (st.st_mode & 0111) ? 0755 : 0644);
    archive_entry_set_size(e, st.st_size);
    if (archive_write_header(aw, e) != ARCHIVE_OK) {
        par_buf_errf(p->err, "%s: %s\n", name, par__archive_ar_msg(aw));
        rc = PAR_E_IO;
        goto out;
    }
    uint64_t done = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            par_buf_errf(p->err, "%s/%s: cannot read: %s\n", p->dir, name, strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        if (n == 0)
            break;
        if (done + (uint64_t)n > (uint64_t)st.st_size)
            break;
        if (archive_write_data(aw, buf, (size_t)n) != n) {
            par_buf_errf(p->err, "%s: %s\n", name, par__archive_ar_msg(aw));
            rc = PAR_E_IO;
            goto out;
        }
        done += (uint64_t)n;
    }
    /* the header already holds the size: a file that changed would be corrupt */
    if (done != (uint64_t)st.st_size) {
        par_buf_errf(p->err, "%s/%s: changed while it was packed; retry\n", p->dir, name);
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
            par_buf_errf(p->err, "%s: %s\n", it->name, par__archive_ar_msg(aw));
            rc = PAR_E_IO;
        }
    } else if (it->type == AE_IFLNK) {
        char target[PATH_MAX];
        ssize_t tn = readlinkat(p->root, it->name, target, sizeof(target) - 1);
        if (tn < 0) {
            par_buf_errf(p->err, "%s/%s: %s\n", p->dir, it->name, strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        target[tn] = '\0';
        if (!par__archive_link_lexically_inside(it->name, target)) {
            par_buf_errf(p->err, "%s/%s: changed while it was packed; retry\n", p->dir, it->name);
            rc = PAR_E_IO;
            goto out;
        }
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, target);
        if (archive_write_header(aw, e) != ARCHIVE_OK) {
            par_buf_errf(p->err, "%s: %s\n", it->name, par__archive_ar_msg(aw));
            rc = PAR_E_IO;
        }
    } else {
        rc = pack_file(p, aw, e, it->name, buf);
    }
out:
    archive_entry_free(e);
    return rc;
}

/* Writes the collected items, sorted, to `tmp`, then renames it to
 * `out_path`. On failure the partial `tmp` is removed. */
static int pack_write(pack_ctx_t *p, const char *tmp, const char *out_path)
{
    int fd = -1, rc = PAR_OK, created = 0;
    char *buf = malloc(CHUNK);
    struct archive *aw = archive_write_new();
    if (buf == NULL || aw == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        par_buf_errf(p->err, "%s: cannot create: %s\n", tmp, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    created = 1;
    /* no padding after the end record: the file ends where the ZIP does */
    if (archive_write_set_format_zip(aw) != ARCHIVE_OK ||
        archive_write_set_options(aw, "zip:compression=deflate") != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(aw, 1) != ARCHIVE_OK ||
        archive_write_open_fd(aw, fd) != ARCHIVE_OK) {
        par_buf_errf(p->err, "%s: %s\n", tmp, par__archive_ar_msg(aw));
        rc = PAR_E_IO;
        goto out;
    }
    for (size_t i = 0; i < p->n && rc == PAR_OK; i++)
        rc = pack_item(p, aw, &p->items[i], buf);
    if (rc != PAR_OK)
        goto out;
    if (archive_write_close(aw) != ARCHIVE_OK) {
        par_buf_errf(p->err, "%s: %s\n", tmp, par__archive_ar_msg(aw));
        rc = PAR_E_IO;
        goto out;
    }
    int fail = fsync(fd) != 0;
    fail |= close(fd) != 0;
    fd = -1;
    if (fail || rename(tmp, out_path) != 0) {
        par_buf_errf(p->err, "%s: cannot write: %s\n", out_path, strerror(errno));
        rc = PAR_E_IO;
    }
out:
    if (aw != NULL)
        archive_write_free(aw);
    if (fd >= 0)
        close(fd);
    if (rc != PAR_OK && created)
        unlink(tmp);
    free(buf);
    return rc;
}

int par_archive_pack(const char *dir, const char *out_path, par_buf_t *err)
{
    pack_ctx_t p = {.root = -1, .dir = dir, .err = err};
    char *tmp = NULL;
    int rc = PAR_OK;

    if (asprintf(&tmp, "%s.tmp", out_path) < 0) {
        tmp = NULL;
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    p.root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p.root < 0) {
        par_buf_errf(err, "%s: cannot open: %s\n", dir, strerror(errno));
        rc = PAR_E_IO;
        goto out;
    }
    struct stat st;
    if (fstatat(p.root, "agent.yaml", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        par_buf_errf(err,
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
    rc = pack_write(&p, tmp, out_path);
out:
    if (p.root >= 0)
        close(p.root);
    for (size_t i = 0; i < p.n; i++)
        free(p.items[i].name);
    free(p.items);
    free(tmp);
    return rc;
}
