/*
 * pkg/archive.c — see archive.h.
 *
 * Extraction writes every file itself with openat(O_NOFOLLOW | O_EXCL) below
 * a directory descriptor of the destination, after checking the entry's path
 * lexically, so no symlink planted by an earlier entry can redirect a write.
 * Sizes are counted on the bytes actually decompressed, never on headers, so a
 * bomb is stopped at the cap rather than after filling the disk.
 */
#include "pkg/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/par.h>

void par_archive_limits_default(par_archive_limits_t *lim)
{
    lim->max_archive_bytes = 512ull << 20;
    lim->max_entries = 10000;
    lim->max_total_bytes = 1ull << 30;
    lim->max_entry_bytes = 512ull << 20;
    lim->max_ratio = 200;
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void par_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, 32, out);
}

int par_archive_load(const char *path, const par_archive_limits_t *lim, par_archive_bytes_t *out,
                     par_buf_t *err)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err)
            par_buf_appendf(err, "%s: cannot open: %s\n", path, strerror(errno));
        return PAR_E_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err)
            par_buf_appendf(err, "%s: not a regular file\n", path);
        close(fd);
        return PAR_E_INVALID_PACKAGE;
    }
    if ((uint64_t)st.st_size > lim->max_archive_bytes) {
        if (err)
            par_buf_appendf(err, "%s: %lld bytes, over the cap of %llu bytes\n", path,
                            (long long)st.st_size, (unsigned long long)lim->max_archive_bytes);
        close(fd);
        return PAR_E_TOO_LARGE;
    }
    size_t cap = (size_t)st.st_size;
    unsigned char *data = malloc(cap + 1);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (data == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        free(data);
        EVP_MD_CTX_free(md);
        close(fd);
        return PAR_E_NO_MEMORY;
    }
    size_t len = 0;
    int rc = PAR_OK;
    for (;;) {
        /* read one byte past the size seen, to notice a file that grew */
        ssize_t r = read(fd, data + len, cap + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            if (err)
                par_buf_appendf(err, "%s: read error: %s\n", path, strerror(errno));
            rc = PAR_E_IO;
            break;
        }
        if (r == 0)
            break;
        EVP_DigestUpdate(md, data + len, (size_t)r);
        len += (size_t)r;
        if (len > cap) {
            if (err)
                par_buf_appendf(err, "%s: the file changed while it was read\n", path);
            rc = PAR_E_IO;
            break;
        }
    }
    close(fd);
    unsigned char digest[32];
    unsigned int dlen = 0;
    EVP_DigestFinal_ex(md, digest, &dlen);
    EVP_MD_CTX_free(md);
    if (rc != PAR_OK) {
        free(data);
        return rc;
    }
    out->data = data;
    out->len = len;
    to_hex(digest, 32, out->sha256);
    return PAR_OK;
}

void par_archive_bytes_free(par_archive_bytes_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static struct archive *open_reader(const par_archive_bytes_t *a)
{
    struct archive *ar = archive_read_new();
    if (ar == NULL)
        return NULL;
    /* the central directory is authoritative: the seekable reader honours it */
    archive_read_support_format_zip_seekable(ar);
    archive_read_support_filter_none(ar);
    if (archive_read_open_memory(ar, a->data, a->len) != ARCHIVE_OK) {
        archive_read_free(ar);
        return NULL;
    }
    return ar;
}

static const char *strip_dot(const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    return p;
}

int par_archive_read_member(const par_archive_bytes_t *a, const char *name, size_t cap,
                            par_buf_t *out, par_buf_t *err)
{
    par_buf_init(out, cap);
    struct archive *ar = open_reader(a);
    if (ar == NULL) {
        if (err)
            par_buf_appendf(err, "not a readable ZIP archive\n");
        return PAR_E_INVALID_PACKAGE;
    }
    struct archive_entry *e;
    int rc = PAR_E_NOT_FOUND, r;
    while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
        const char *p = archive_entry_pathname(e);
        if (p == NULL || strcmp(strip_dot(p), name) != 0)
            continue;
        char buf[16384];
        ssize_t n;
        rc = PAR_OK;
        while ((n = archive_read_data(ar, buf, sizeof(buf))) > 0) {
            if (par_buf_append(out, buf, (size_t)n) != PAR_OK) {
                if (err)
                    par_buf_appendf(err, "%s: larger than %zu bytes\n", name, cap);
                rc = PAR_E_TOO_LARGE;
                break;
            }
        }
        if (n < 0) {
            if (err)
                par_buf_appendf(err, "%s: %s\n", name, archive_error_string(ar));
            rc = PAR_E_INVALID_PACKAGE;
        }
        break;
    }
    if (r != ARCHIVE_OK && r != ARCHIVE_EOF && rc == PAR_E_NOT_FOUND) {
        if (err)
            par_buf_appendf(err, "not a readable ZIP archive: %s\n", archive_error_string(ar));
        rc = PAR_E_INVALID_PACKAGE;
    }
    archive_read_free(ar);
    return rc;
}

/* Lexical path check. Returns NULL when the path is safe, else the rule broken. */
static const char *path_rule(const char *p)
{
    if (p[0] == '\0')
        return "empty name";
    if (p[0] == '/')
        return "absolute path";
    if (strchr(p, '\\'))
        return "backslash in the name";
    const char *s = p;
    while (*s) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return "path escapes the package (..)";
        if (!slash)
            break;
        s = slash + 1;
    }
    return NULL;
}

/* Does a symlink at `path` with target `target` stay inside the tree? */
static int link_stays_inside(const char *path, const char *target)
{
    if (target[0] == '/' || target[0] == '\0')
        return 0;
    int depth = 0;
    for (const char *s = path; *s; s++)
        if (*s == '/')
            depth++;
    const char *s = target;
    while (*s) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (--depth < 0)
                return 0;
        } else if (n > 0 && !(n == 1 && s[0] == '.')) {
            depth++;
        }
        if (!slash)
            break;
        s = slash + 1;
    }
    return 1;
}

/* Creates the parent directories of `rel` below dirfd, refusing symlinks. */
static int make_parents(int dirfd, const char *rel)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", rel);
    for (char *p = tmp; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdirat(dirfd, tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        struct stat st;
        if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        *p = '/';
    }
    return 0;
}

/* Opens `rel` below dirfd for writing without following any symlink on the way. */
static int open_beneath(int dirfd, const char *rel, mode_t mode)
{
    int cur = dup(dirfd);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", rel);
    char *s = tmp;
    for (char *slash; (slash = strchr(s, '/')) != NULL; s = slash + 1) {
        *slash = '\0';
        int next = openat(cur, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(cur);
        if (next < 0)
            return -1;
        cur = next;
    }
    int fd = openat(cur, s, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    close(cur);
    return fd;
}

int par_archive_extract(const par_archive_bytes_t *a, const char *dest_dir,
                        const par_archive_limits_t *lim, par_buf_t *err)
{
    struct archive *ar = open_reader(a);
    if (ar == NULL) {
        if (err)
            par_buf_appendf(err, "not a readable ZIP archive\n");
        return PAR_E_INVALID_PACKAGE;
    }
    int dirfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        if (err)
            par_buf_appendf(err, "%s: %s\n", dest_dir, strerror(errno));
        archive_read_free(ar);
        return PAR_E_IO;
    }
    uint64_t entries = 0, total = 0;
    int rc = PAR_OK, r;
    struct archive_entry *e;
    char *buf = malloc(65536);
    while (rc == PAR_OK && (r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
        const char *raw = archive_entry_pathname(e);
        if (raw == NULL) {
            if (err)
                par_buf_appendf(err, "an entry has no readable name\n");
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        const char *p = strip_dot(raw);
        char name[PATH_MAX];
        snprintf(name, sizeof(name), "%s", p);
        size_t nl = strlen(name);
        while (nl > 0 && name[nl - 1] == '/')
            name[--nl] = '\0';
        if (++entries > lim->max_entries) {
            if (err)
                par_buf_appendf(err, "more than %llu entries (zip bomb by count)\n",
                                (unsigned long long)lim->max_entries);
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        const char *rule = path_rule(p);
        if (rule == NULL && nl == 0)
            continue; /* "./" */
        if (rule) {
            if (err)
                par_buf_appendf(err, "entry \"%s\": %s\n", raw, rule);
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        if (archive_entry_hardlink(e)) {
            if (err)
                par_buf_appendf(err, "entry \"%s\": hard links are not allowed\n", raw);
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        mode_t type = archive_entry_filetype(e);
        if (make_parents(dirfd, name) != 0) {
            if (err)
                par_buf_appendf(err, "entry \"%s\": cannot create its directory (%s)\n", raw,
                                strerror(errno));
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        if (type == AE_IFDIR) {
            if (mkdirat(dirfd, name, 0755) != 0 && errno != EEXIST) {
                if (err)
                    par_buf_appendf(err, "entry \"%s\": %s\n", raw, strerror(errno));
                rc = PAR_E_IO;
            }
            continue;
        }
        if (type == AE_IFLNK) {
            const char *target = archive_entry_symlink(e);
            if (target == NULL || !link_stays_inside(name, target)) {
                if (err)
                    par_buf_appendf(err, "entry \"%s\": symlink to \"%s\" leaves the package\n",
                                    raw, target ? target : "");
                rc = PAR_E_UNSAFE_ARCHIVE;
                break;
            }
            if (symlinkat(target, dirfd, name) != 0) {
                if (err)
                    par_buf_appendf(err, "entry \"%s\": %s\n", raw,
                                    errno == EEXIST ? "duplicate entry" : strerror(errno));
                rc = errno == EEXIST ? PAR_E_UNSAFE_ARCHIVE : PAR_E_IO;
            }
            continue;
        }
        if (type != AE_IFREG) {
            if (err)
                par_buf_appendf(err, "entry \"%s\": special files are not allowed\n", raw);
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
        int fd = open_beneath(dirfd, name, mode);
        if (fd < 0) {
            if (err)
                par_buf_appendf(err, "entry \"%s\": %s\n", raw,
                                errno == EEXIST ? "duplicate entry" : strerror(errno));
            rc = PAR_E_UNSAFE_ARCHIVE;
            break;
        }
        uint64_t this_entry = 0;
        ssize_t n;
        while ((n = archive_read_data(ar, buf, 65536)) > 0) {
            this_entry += (uint64_t)n;
            total += (uint64_t)n;
            if (this_entry > lim->max_entry_bytes) {
                if (err)
                    par_buf_appendf(err, "entry \"%s\": more than %llu bytes uncompressed\n", raw,
                                    (unsigned long long)lim->max_entry_bytes);
                rc = PAR_E_UNSAFE_ARCHIVE;
                break;
            }
            if (total > lim->max_total_bytes) {
                if (err)
                    par_buf_appendf(err, "more than %llu bytes uncompressed in total\n",
                                    (unsigned long long)lim->max_total_bytes);
                rc = PAR_E_UNSAFE_ARCHIVE;
                break;
            }
            /* the ratio applies past 1 MiB so small compressible text is fine */
            if (total > (1u << 20) && total / (a->len ? a->len : 1) > lim->max_ratio) {
                if (err)
                    par_buf_appendf(err, "compression ratio over %u:1 (zip bomb)\n",
                                    lim->max_ratio);
                rc = PAR_E_UNSAFE_ARCHIVE;
                break;
            }
            if (write(fd, buf, (size_t)n) != n) {
                if (err)
                    par_buf_appendf(err, "entry \"%s\": write: %s\n", raw, strerror(errno));
                rc = PAR_E_IO;
                break;
            }
        }
        close(fd);
        if (rc == PAR_OK && n < 0) {
            if (err)
                par_buf_appendf(err, "entry \"%s\": %s (truncated or corrupt archive)\n", raw,
                                archive_error_string(ar));
            rc = PAR_E_INVALID_PACKAGE;
        }
    }
    if (rc == PAR_OK && r != ARCHIVE_EOF) {
        if (err)
            par_buf_appendf(err, "corrupt or truncated archive: %s\n", archive_error_string(ar));
        rc = PAR_E_INVALID_PACKAGE;
    }
    free(buf);
    close(dirfd);
    archive_read_free(ar);
    return rc;
}

/* ---- pack ------------------------------------------------------------------------- */

typedef struct plist {
    char **items;
    size_t n, cap;
} plist_t;

static int collect(const char *root, const char *rel, plist_t *l, par_buf_t *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL) {
        par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
        return PAR_E_IO;
    }
    struct dirent *de;
    int rc = PAR_OK;
    while (rc == PAR_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (rel[0] == '\0' && strcmp(de->d_name, ".git") == 0)
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        char full[PATH_MAX * 2];
        snprintf(full, sizeof(full), "%s/%s", root, sub);
        struct stat st;
        if (lstat(full, &st) != 0)
            continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 64;
            l->items = realloc(l->items, l->cap * sizeof(char *));
        }
        l->items[l->n++] = strdup(sub);
        if (S_ISDIR(st.st_mode))
            rc = collect(root, sub, l, err);
    }
    closedir(d);
    return rc;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int par_archive_pack(const char *dir, const char *out_path, par_buf_t *err)
{
    char ypath[PATH_MAX];
    snprintf(ypath, sizeof(ypath), "%s/agent.yaml", dir);
    if (access(ypath, R_OK) != 0) {
        par_buf_appendf(err, "%s: no agent.yaml\n", dir);
        return PAR_E_INVALID_PACKAGE;
    }
    plist_t l = {0};
    int rc = collect(dir, "", &l, err);
    if (rc == PAR_OK && l.n)
        qsort(l.items, l.n, sizeof(char *), cmp_path);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", out_path);
    struct archive *aw = archive_write_new();
    archive_write_set_format_zip(aw);
    archive_write_set_options(aw, "zip:compression=deflate");
    if (rc == PAR_OK && archive_write_open_filename(aw, tmp) != ARCHIVE_OK) {
        par_buf_appendf(err, "%s: %s\n", tmp, archive_error_string(aw));
        rc = PAR_E_IO;
    }
    char *buf = malloc(65536);
    for (size_t i = 0; rc == PAR_OK && i < l.n; i++) {
        char full[PATH_MAX * 2];
        snprintf(full, sizeof(full), "%s/%s", dir, l.items[i]);
        struct stat st;
        if (lstat(full, &st) != 0)
            continue;
        struct archive_entry *e = archive_entry_new();
        /* fixed metadata: the bytes depend on names and contents only */
        archive_entry_set_mtime(e, 315532800 + 43200,
                                0); /* 1980-01-01T12:00Z: valid DOS time in any zone */
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        if (S_ISDIR(st.st_mode)) {
            char dname[PATH_MAX + 2];
            snprintf(dname, sizeof(dname), "%s/", l.items[i]);
            archive_entry_set_pathname(e, dname);
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            archive_entry_set_size(e, 0);
            if (archive_write_header(aw, e) != ARCHIVE_OK) {
                par_buf_appendf(err, "%s: %s\n", l.items[i], archive_error_string(aw));
                rc = PAR_E_IO;
            }
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(full, target, sizeof(target) - 1);
            if (n < 0 || (target[n] = '\0', !link_stays_inside(l.items[i], target))) {
                par_buf_appendf(err, "%s: symlink leaves the package directory\n", l.items[i]);
                rc = PAR_E_UNSAFE_ARCHIVE;
            } else {
                archive_entry_set_pathname(e, l.items[i]);
                archive_entry_set_filetype(e, AE_IFLNK);
                archive_entry_set_perm(e, 0777);
                archive_entry_set_symlink(e, target);
                if (archive_write_header(aw, e) != ARCHIVE_OK)
                    rc = PAR_E_IO;
            }
        } else if (S_ISREG(st.st_mode)) {
            archive_entry_set_pathname(e, l.items[i]);
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, (st.st_mode & 0111) ? 0755 : 0644);
            archive_entry_set_size(e, st.st_size);
            int fd = open(full, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || archive_write_header(aw, e) != ARCHIVE_OK) {
                par_buf_appendf(err, "%s: %s\n", l.items[i],
                                fd < 0 ? strerror(errno) : archive_error_string(aw));
                rc = PAR_E_IO;
            }
            ssize_t n;
            while (rc == PAR_OK && (n = read(fd, buf, 65536)) > 0)
                if (archive_write_data(aw, buf, (size_t)n) != n) {
                    par_buf_appendf(err, "%s: %s\n", l.items[i], archive_error_string(aw));
                    rc = PAR_E_IO;
                }
            if (fd >= 0)
                close(fd);
        } else {
            par_buf_appendf(err, "%s: special files cannot be packed\n", l.items[i]);
            rc = PAR_E_UNSAFE_ARCHIVE;
        }
        archive_entry_free(e);
    }
    free(buf);
    if (archive_write_close(aw) != ARCHIVE_OK && rc == PAR_OK) {
        par_buf_appendf(err, "%s: %s\n", tmp, archive_error_string(aw));
        rc = PAR_E_IO;
    }
    archive_write_free(aw);
    for (size_t i = 0; i < l.n; i++)
        free(l.items[i]);
    free(l.items);
    if (rc == PAR_OK && rename(tmp, out_path) != 0) {
        par_buf_appendf(err, "%s: %s\n", out_path, strerror(errno));
        rc = PAR_E_IO;
    }
    if (rc != PAR_OK)
        unlink(tmp);
    return rc;
}
