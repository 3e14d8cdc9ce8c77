/*
 * pkg/archive_internal.h — what the files of the archive code share; not
 * part of pkg/archive.h's interface and not to be included outside pkg/archive*.c.
 *
 * The archive code is split by concern:
 *   archive.c          entry names and link rules, error lines, reading one
 *                      member, listing;
 *   archive_load.c     reading a whole .apkg into memory with its digests
 *                      (SHA-256, BLAKE2b), read leases;
 *   archive_zip.c      the central-directory pre-check (ZIP64 rules, name
 *                      agreement, entry count) and opening a libarchive reader;
 *   archive_extract.c  safe extraction into a directory;
 *   archive_pack.c     `par pack`'s deterministic writer.
 * Every function here is thread-agnostic: no global state, every handle lives
 * for one call.
 */
#ifndef PAR_PKG_ARCHIVE_INTERNAL_H
#define PAR_PKG_ARCHIVE_INTERNAL_H

#include <archive.h>
#include <archive_entry.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/archive.h"
#include "util/buf.h"

/* Bytes moved per read or write of an entry's data. */
#define CHUNK (64u * 1024)
/* The ratio cap applies only once this many bytes are out: a small package of
 * text (a 600 KiB file of repeated lines deflates ~1000:1) is not a bomb, and
 * a bomb is still stopped at max(RATIO_FLOOR, max_ratio × archive size). */
#define RATIO_FLOOR (1ull << 20)

/* Appends one line `entry "NAME": <what>` to `err` (NULL: nothing). The name
 * is escaped as a JSON string, so a hostile name cannot forge lines. */
void par__archive_err_entry(par_buf_t *err, const char *name, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* libarchive's message for the last error on `ar`, never NULL. */
const char *par__archive_ar_msg(struct archive *ar);

/* Checks an entry name against the path rules and writes its canonical form
 * to `out`. Returns NULL when the name is safe, else the rule it breaks. */
const char *par__archive_canon_name(const char *raw, char *out, size_t outsz);
/* Levels of a canonical name: "a" is 1, "a/b/c" is 3. */
size_t par__archive_name_depth(const char *canon);
/* 1 when symlink `name` → `target` stays inside the tree, resolved lexically. */
int par__archive_link_lexically_inside(const char *name, const char *target);
/* NULL when link `name` under the directory `root` resolves inside it the way
 * the kernel would (following links on the way), else why not. */
const char *par__archive_link_physically_inside(int root, const char *name);

/* Pre-checks the central directory of `a`, then opens a seekable ZIP reader on
 * its bytes. On success the caller frees *out with archive_read_free(). */
int par__archive_open_reader(const par_archive_bytes_t *a, uint64_t max_entries, int ignore_crc,
                             struct archive **out, par_buf_t *err);

/* 1 while the read lease taken by par_archive_load() stands (or there is none). */
int par__archive_lease_intact(const par_archive_bytes_t *b);
/* Reports that the lease was broken by a writer; returns PAR_E_IO. */
int par__archive_lease_lost(par_buf_t *err);

#endif
