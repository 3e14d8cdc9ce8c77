/*
 * pkg/archive.h — reading APKG (ZIP) archives safely, and writing them.
 *
 * Owns: loading an archive's bytes with their SHA-256, reading one member,
 * extracting into a directory with every safety rule of DESIGN.md section 2
 * (no absolute paths, no `..`, no links leaving the tree, no special files,
 * caps on entry count, total size, per-entry size and compression ratio), and
 * `par pack`'s deterministic writer. Called at deploy time from a deploy
 * thread and by the CLI; never on an event-loop thread. Any thread.
 * Must never write outside the destination directory it is given.
 */
#ifndef PAR_PKG_ARCHIVE_H
#define PAR_PKG_ARCHIVE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct par_archive_limits {
    uint64_t max_archive_bytes; /* size of the .apkg itself, default 512 MiB */
    uint64_t max_entries;       /* default 10000 */
    uint64_t max_total_bytes;   /* uncompressed, default 1 GiB */
    uint64_t max_entry_bytes;   /* uncompressed, default 512 MiB */
    int with_blake2b;           /* par_archive_load also computes BLAKE2b-512 (a minisign
                                   prehash) in the same pass; default 0 */
    uint32_t max_ratio;         /* total uncompressed / archive bytes, default 200; checked
                                   once more than 1 MiB is out; 0 = no ratio check */
    int bytes_verified;         /* the archive's bytes matched an expected SHA-256 or a
                                   trusted signature: extraction skips the entries' CRC-32
                                   checks, which can then find nothing; default 0 */
    uint32_t max_depth;         /* directory levels of an entry name ("a/b/c" is 3), default
                                   PAR_ARCHIVE_MAX_DEPTH; deeper is PAR_E_BAD_ARCHIVE */
} par_archive_limits_t;

/* Levels an entry name may have by default: far more than any package needs,
 * far fewer than would make a tree costly to walk. */
#define PAR_ARCHIVE_MAX_DEPTH 64

void par_archive_limits_default(par_archive_limits_t *lim);

/* An archive's bytes in memory. */
typedef struct par_archive_bytes {
    unsigned char *data;
    size_t len;
    char sha256[65];           /* lowercase hex, NUL-terminated */
    unsigned char blake2b[64]; /* when loaded with lim->with_blake2b */
    int has_blake2b;
    size_t _mapped; /* data is an anonymous mapping of this size (else malloc'd) */
    int _leased;    /* data maps the file itself, under a read lease held on _fd */
    int _fd;
} par_archive_bytes_t;

/* Reads a file into memory (refusing more than lim->max_archive_bytes with
 * PAR_E_TOO_LARGE) and computes its SHA-256 in the same pass. Errors append one
 * line to `err` (may be NULL). When PAR can take a read lease on the file
 * (it owns the file or has CAP_LEASE, and no one has it open for writing) the
 * file is mapped instead of copied, and writers wait until
 * par_archive_bytes_free(); par_archive_extract() refuses to finish if a
 * writer came meanwhile. */
int par_archive_load(const char *path, const par_archive_limits_t *lim, par_archive_bytes_t *out,
                     par_buf_t *err);
void par_archive_bytes_free(par_archive_bytes_t *b);

/* Lists the entries as the extractor sees them (libarchive through the same
 * checks): *out (owned by the caller) is a JSON array of {"name", "type"
 * ("file"|"dir"|"symlink"), "size", "sha256" (files)}. Errors as for
 * par_archive_extract. Lets `par inspect` show what a deploy would write. */
int par_archive_list(const par_archive_bytes_t *a, const par_archive_limits_t *lim, json_t **out,
                     par_buf_t *err);

/* Computes the SHA-256 of a byte range as lowercase hex. */
void par_sha256_hex(const void *data, size_t len, char out[65]);

/* Reads member `name` (e.g. "agent.yaml"; a leading "./" is ignored) into
 * `out`, at most `cap` bytes (0: no cap). `out` is initialised here and must be
 * freed by the caller whatever the result. PAR_E_NOT_FOUND when absent,
 * PAR_E_TOO_LARGE over the cap, PAR_E_INVALID_PACKAGE when the archive is not
 * a readable ZIP, names the member twice or it is not a regular file. */
int par_archive_read_member(const par_archive_bytes_t *a, const char *name, size_t cap,
                            par_buf_t *out, par_buf_t *err);

/* Extracts every entry into `dest_dir`, which must exist and be empty.
 * Returns PAR_OK, PAR_E_UNSAFE_ARCHIVE (path/link/type/bomb rules; `err` names
 * the entry and the rule) or PAR_E_INVALID_PACKAGE (corrupt/truncated);
 * PAR_E_INVALID_ARGUMENT when dest_dir is not empty, PAR_E_IO when it cannot
 * be opened or written. On failure the caller removes dest_dir. */
int par_archive_extract(const par_archive_bytes_t *a, const char *dest_dir,
                        const par_archive_limits_t *lim, par_buf_t *err);

/* Writes a deterministic ZIP of directory `dir` to `out_path`: entries sorted by
 * path, fixed timestamps, normalised modes (0644, or 0755 when executable),
 * no owner names. Same input, same bytes. Requires `dir`/agent.yaml. Skips
 * `.git/`. Refuses symlinks that leave `dir`. */
int par_archive_pack(const char *dir, const char *out_path, par_buf_t *err);

#endif
