/*
 * registry/cache.c — see cache.h.
 */
#include "registry/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <par/par.h>

#include "obs/log.h"
#include "util/fs.h"

static int is_digest(const char *s, size_t len)
{
    return len == 64 && strspn(s, "0123456789abcdef") >= 64;
}

/* Bytes a tree takes on disk, without following symlinks. */
static uint64_t tree_bytes(const char *path)
{
    uint64_t n = 0;
    par_fs_usage(path, 0, &n, NULL);
    return n;
}

/* Removes a cache entry; one that cannot be removed is moved aside under
 * .quarantine-<name> (never looked up, retried at every start) and logged, so
 * no content of the cache can stop the runtime from starting. */
static void remove_entry(const char *cache_dir, const char *name)
{
    char p[PATH_MAX], q[PATH_MAX];
    if ((size_t)snprintf(p, sizeof(p), "%s/%s", cache_dir, name) >= sizeof(p))
        return;
    par_fs_result_t res;
    if (par_fs_remove(p, &res) == 0)
        return;
    int e = errno;
    if (strncmp(name, ".quarantine-", 12) == 0) {
        par_log_msg(PAR_LOG_WARN,
                    "cache: the quarantined entry %s still cannot be removed (%llu failures, "
                    "first: %s); remove it by hand",
                    p, (unsigned long long)res.failures, strerror(e));
        return;
    }
    snprintf(q, sizeof(q), "%s/.quarantine-%.200s-%lld", cache_dir, name, (long long)time(NULL));
    int moved = rename(p, q) == 0;
    par_log_msg(PAR_LOG_WARN,
                "cache: cannot remove %s (%llu failures, first: %s); %s, the runtime goes on", p,
                (unsigned long long)res.failures, strerror(e),
                moved ? "quarantined as .quarantine-*" : "left in place and ignored");
}

int par_cache_sweep(const char *cache_dir)
{
    DIR *d = opendir(cache_dir);
    if (d == NULL)
        return 0;
    /* names first: removing while reading would make readdir skip or repeat */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        int half = is_digest(nm, len);
        if (half) {
            char marker[80]; /* a digest: 64 characters */
            snprintf(marker, sizeof(marker), "%.64s.complete", nm);
            half = faccessat(dirfd(d), marker, F_OK, AT_SYMLINK_NOFOLLOW) != 0;
        }
        if (!half && strncmp(nm, ".tmp-", 5) != 0 && strncmp(nm, ".quarantine-", 12) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(names, cap * sizeof(*nv));
            if (nv == NULL)
                break;
            names = nv;
        }
        if ((names[n] = strdup(nm)) != NULL)
            n++;
    }
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        if (is_digest(names[i], strlen(names[i])))
            par_log_msg(PAR_LOG_WARN, "cache: discarding the half-written entry %s", names[i]);
        remove_entry(cache_dir, names[i]);
        free(names[i]);
    }
    free(names);
    return (int)n;
}

/* A marker's JSON, or NULL. Read without following a link or blocking (a
 * FIFO planted in the cache must not hang the start), and only when it is a
 * regular file of a sane size. */
static json_t *load_marker(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return NULL;
    json_t *doc = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < 65536) {
        json_error_t jerr;
        doc = json_loadfd(fd, 0, &jerr);
    }
    close(fd);
    return doc;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
    return s != NULL && strlen(s) == 2 * n ? par_hex_decode(s, out, n) : -1;
}

int par_cache_lookup(const char *cache_dir, const char *sha256, par_cache_info_t *info)
{
    memset(info, 0, sizeof(*info));
    if (!is_digest(sha256, strlen(sha256)))
        return 0;
    char dir[PATH_MAX], marker[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/%s", cache_dir, sha256);
    snprintf(marker, sizeof(marker), "%s.complete", dir);
    struct stat st;
    if (stat(marker, &st) != 0 || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    memcpy(info->sha256, sha256, 65);
    json_t *doc = load_marker(marker);
    if (doc) {
        if (unhex(json_string_value(json_object_get(doc, "blake2b512")), info->blake2b, 64) == 0)
            info->has_blake2b = 1;
        const char *s = json_string_value(json_object_get(doc, "signer"));
        if (s && strlen(s) < sizeof(info->signer))
            strcpy(info->signer, s);
        info->bytes = (uint64_t)json_integer_value(json_object_get(doc, "bytes"));
        json_decref(doc);
    }
    utimensat(AT_FDCWD, marker, NULL, 0); /* last use, for LRU */
    return 1;
}

static int write_marker(const char *marker, const par_cache_info_t *info)
{
    char b2[129] = "";
    if (info->has_blake2b)
        par_hex_encode(info->blake2b, 64, b2);
    json_t *doc = json_pack("{s:s, s:s, s:I, s:s, s:I}", "sha256", info->sha256, "blake2b512", b2,
                            "bytes", (json_int_t)info->bytes, "signer", info->signer, "verified_at",
                            (json_int_t)time(NULL));
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", marker);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    size_t len = text ? strlen(text) : 0;
    int ok = fd >= 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    if (fd >= 0)
        ok &= close(fd) == 0;
    free(text);
    if (!ok || rename(tmp, marker) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int par_cache_insert(const char *cache_dir, const par_archive_bytes_t *a,
                     const par_archive_limits_t *lim, par_cache_info_t *info, char **root,
                     par_buf_t *err)
{
    char dir[PATH_MAX], marker[PATH_MAX + 16], tmp[PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/%s", cache_dir, a->sha256);
    snprintf(marker, sizeof(marker), "%s.complete", dir);
    memcpy(info->sha256, a->sha256, 65);
    struct stat st;
    if (stat(marker, &st) == 0 && stat(dir, &st) == 0) {
        /* already extracted: refresh what we know about it (a signer may be new) */
        par_cache_info_t old;
        par_cache_lookup(cache_dir, a->sha256, &old);
        info->bytes = old.bytes;
        write_marker(marker, info);
        *root = strdup(dir);
        return *root ? PAR_OK : PAR_E_NO_MEMORY;
    }
    unlink(marker);
    par_fs_remove(dir, NULL); /* a half-written entry from an interrupted extraction */
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-XXXXXX", cache_dir, a->sha256);
    if (mkdtemp(tmp) == NULL) {
        par_buf_appendf(err, "%s: cannot create: %s\n", tmp, strerror(errno));
        return PAR_E_IO;
    }
    int rc = par_archive_extract(a, tmp, lim, err);
    if (rc != PAR_OK) {
        par_fs_remove(tmp, NULL);
        return rc;
    }
    chmod(tmp, 0755);
    if (rename(tmp, dir) != 0) {
        par_buf_appendf(err, "%s: cannot move into the cache: %s\n", dir, strerror(errno));
        par_fs_remove(tmp, NULL);
        return PAR_E_IO;
    }
    info->bytes = tree_bytes(dir);
    if (write_marker(marker, info) != 0) {
        par_buf_appendf(err, "%s: cannot write the marker: %s\n", marker, strerror(errno));
        par_fs_remove(dir, NULL);
        return PAR_E_IO;
    }
    *root = strdup(dir);
    return *root ? PAR_OK : PAR_E_NO_MEMORY;
}

typedef struct entry {
    char sha[65];
    uint64_t bytes;
    struct timespec used;
} entry_t;

static int by_use(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec)
        return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    if (x->used.tv_nsec != y->used.tv_nsec)
        return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
    return strcmp(x->sha, y->sha);
}

int par_cache_evict(const char *cache_dir, uint64_t max_bytes,
                    int (*in_use)(void *ud, const char *sha256), void *ud)
{
    if (max_bytes == 0)
        return 0;
    DIR *d = opendir(cache_dir);
    if (d == NULL)
        return 0;
    entry_t *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != 64 + 9 || strcmp(e->d_name + 64, ".complete") != 0 || !is_digest(e->d_name, 64))
            continue;
        char sha[65];
        memcpy(sha, e->d_name, 64);
        sha[64] = '\0';
        char marker[PATH_MAX];
        snprintf(marker, sizeof(marker), "%s/%s", cache_dir, e->d_name);
        struct stat st;
        if (stat(marker, &st) != 0)
            continue;
        par_cache_info_t info;
        memset(&info, 0, sizeof(info));
        json_t *doc = load_marker(marker);
        info.bytes = doc ? (uint64_t)json_integer_value(json_object_get(doc, "bytes")) : 0;
        json_decref(doc);
        if (info.bytes == 0) {
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s/%s", cache_dir, sha);
            info.bytes = tree_bytes(dir);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            entry_t *nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL)
                break;
            v = nv;
        }
        memcpy(v[n].sha, sha, 65);
        v[n].bytes = info.bytes;
        v[n].used = st.st_mtim;
        total += info.bytes;
        n++;
    }
    closedir(d);
    int evicted = 0;
    if (total > max_bytes && n) {
        qsort(v, n, sizeof(*v), by_use);
        for (size_t i = 0; i < n && total > max_bytes; i++) {
            if (in_use && in_use(ud, v[i].sha))
                continue;
            char dir[PATH_MAX], marker[PATH_MAX + 16];
            snprintf(dir, sizeof(dir), "%s/%s", cache_dir, v[i].sha);
            snprintf(marker, sizeof(marker), "%s.complete", dir);
            unlink(marker); /* first: a crash in between leaves a half entry, swept at start */
            remove_entry(cache_dir, v[i].sha);
            total -= v[i].bytes;
            evicted++;
            par_log_msg(PAR_LOG_INFO, "cache: evicted %s (%llu bytes, least recently used)",
                        v[i].sha, (unsigned long long)v[i].bytes);
        }
    }
    free(v);
    return evicted;
}
