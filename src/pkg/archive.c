/*
 * pkg/archive.c — APKG (ZIP) archives: entry names and link rules, reading one
 * member, listing (see archive.h). This comment describes the archive code as
 * a whole; it is split by concern (archive_internal.h lists the files):
 * loading and digests in archive_load.c, the central-directory pre-check in
 * archive_zip.c, extraction in archive_extract.c, packing in archive_pack.c.
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
 * libarchive sees the bytes, cd_precheck() (archive_zip.c) walks the central directory once,
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
 * Extraction. Each entry's name is checked lexically (par__archive_canon_name: no absolute
 * path, no `..` component, no backslash or control character, no empty name)
 * and reduced to a canonical form ("./a//b/" → "a/b"); a set of canonical
 * names refuses duplicates. Files are then written by this file itself:
 * open_parent() (archive_extract.c) walks from a descriptor of dest_dir one component at a time
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
#include "pkg/archive_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/evp.h>

#include <par/par.h>

/* Symlinks followed while resolving one link, as the kernel's MAXSYMLINKS. */
#define MAX_LINK_HOPS 40

/* ---- errors ---------------------------------------------------------------------- */

/* One line `entry "NAME": <what>`. The name is escaped as a JSON string, so a
 * hostile name (quotes, newlines, terminal escapes) cannot forge lines. */
__attribute__((format(printf, 4, 5))) void par__archive_err_entry(par_buf_t *err, const char *name,
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

const char *par__archive_ar_msg(struct archive *ar)
{
    const char *m = archive_error_string(ar);
    return m ? m : "unknown libarchive error";
}

/* ---- names ----------------------------------------------------------------------- */

/* Checks an entry name against the path rules and writes its canonical form
 * to `out` (no "./" or "." components, no empty components, no trailing '/';
 * "" for the package root). Returns NULL when the name is safe, else the rule
 * it breaks. */
const char *par__archive_canon_name(const char *raw, char *out, size_t outsz)
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
int par__archive_link_lexically_inside(const char *name, const char *target)
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
const char *par__archive_link_physically_inside(int root, const char *name)
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

/* Levels of a canonical name: "a" is 1, "a/b/c" is 3. */
size_t par__archive_name_depth(const char *canon)
{
    size_t n = canon[0] != '\0';
    for (const char *c = canon; *c; c++)
        n += *c == '/';
    return n;
}

/* ---- read one member ------------------------------------------------------------- */

int par_archive_read_member(const par_archive_bytes_t *a, const char *name, size_t cap,
                            par_buf_t *out, par_buf_t *err)
{
    /* cap 0 means no cap, as for par_buf_t */
    par_buf_init(out, cap);
    char want[PATH_MAX], have[PATH_MAX];
    if (par__archive_canon_name(name, want, sizeof(want)) != NULL || want[0] == '\0') {
        par_buf_errf(err, "%s: not a valid member name\n", name);
        return PAR_E_NOT_FOUND;
    }
    struct archive *ar = NULL;
    int rc = par__archive_open_reader(a, UINT64_MAX, 0, &ar, err);
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
        if (p == NULL || par__archive_canon_name(p, have, sizeof(have)) != NULL ||
            strcmp(have, want) != 0)
            continue;
        if (found) {
            par__archive_err_entry(err, p, strlen(p), "appears twice in the archive");
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        found = 1;
        if (archive_entry_filetype(e) != AE_IFREG) {
            par__archive_err_entry(err, p, strlen(p), "not a regular file");
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        ssize_t n;
        while ((n = archive_read_data(ar, buf, CHUNK)) > 0) {
            if (par_buf_append(out, buf, (size_t)n) != PAR_OK) {
                par__archive_err_entry(err, p, strlen(p), "larger than %zu bytes", cap);
                rc = PAR_E_TOO_LARGE;
                goto out;
            }
        }
        if (n < 0) {
            par__archive_err_entry(err, p, strlen(p), "%s (truncated or corrupt archive)",
                                   par__archive_ar_msg(ar));
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
    }
    if (r != ARCHIVE_EOF) {
        par_buf_errf(err, "corrupt or truncated archive: %s\n", par__archive_ar_msg(ar));
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
        par__archive_err_entry(err, name, strlen(name), "%s (truncated or corrupt archive)",
                               par__archive_ar_msg(ar));
        json_decref(o);
        return NULL;
    }
    par_hex_encode(dg, 32, hex);
    if (json_object_set_new(o, "size", json_integer((json_int_t)size)) != 0 ||
        json_object_set_new(o, "sha256", json_string(hex)) != 0) {
        par_buf_errf(err, "out of memory\n");
        json_decref(o);
        return NULL;
    }
    return o;
}

int par_archive_list(const par_archive_bytes_t *a, const par_archive_limits_t *lim, json_t **out,
                     par_buf_t *err)
{
    *out = NULL;
    struct archive *ar = NULL;
    int rc = par__archive_open_reader(a, lim->max_entries, 0, &ar, err), r;
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
                                           : par__archive_canon_name(raw, name, sizeof(name));
        if (rule != NULL) {
            par__archive_err_entry(err, raw ? raw : "", raw ? strlen(raw) : 0, "%s", rule);
            rc = r != ARCHIVE_OK ? PAR_E_INVALID_PACKAGE : PAR_E_UNSAFE_ARCHIVE;
            goto out;
        }
        if (lim->max_depth && par__archive_name_depth(name) > lim->max_depth) {
            par__archive_err_entry(err, raw, strlen(raw),
                                   "%zu directory levels deep, more than the limit of %u",
                                   par__archive_name_depth(name), lim->max_depth);
            rc = PAR_E_BAD_ARCHIVE;
            goto out;
        }
        json_t *o = name[0] ? list_entry(ar, e, name, buf, err) : NULL;
        if (name[0] && o == NULL) {
            rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        if (o && json_array_append_new(list, o) != 0) {
            rc = PAR_E_NO_MEMORY;
            goto out;
        }
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
