/*
 * pkg/archive_zip.c — the ZIP structure checks made before libarchive reads
 * an archive, and opening the reader.
 *
 * Owns: cd_precheck() (one bounded walk of the central directory: the ZIP64
 * end-of-central-directory locator and record, names holding NUL bytes, empty
 * names, a local header naming a different file than its central-directory
 * entry, the entry count cap) and par__archive_open_reader(). Called by the
 * reading, listing and extraction code of the archive (archive.c,
 * archive_extract.c); any thread, no state. It must never read outside the
 * buffer it is given or trust an offset or size a header claims, and it only
 * ever refuses: when it cannot make sense of the structure it leaves the
 * verdict, and the message, to libarchive.
 */
#include "pkg/archive_internal.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <par/par.h>

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
        par_buf_errf(err, "%s (ZIP readers would disagree on the entries)\n", why);
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
            par_buf_errf(err, "more than %llu entries (zip bomb by count)\n",
                         (unsigned long long)max_entries);
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (nlen == 0) {
            par__archive_err_entry(err, "", 0, "empty name");
            return PAR_E_UNSAFE_ARCHIVE;
        }
        if (memchr(name, '\0', nlen) != NULL) {
            par__archive_err_entry(err, name, nlen, "NUL byte in the name");
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
                par__archive_err_entry(
                    err, name, nlen,
                    "its local header names it %s: the central directory and the data "
                    "disagree",
                    local.data ? local.data : "?");
                par_buf_free(&local);
                return PAR_E_UNSAFE_ARCHIVE;
            }
        }
        assert(46 + rest <= len - p); /* the record was bounded above */
        p += 46 + rest;
    }
    if (p - cd != cd_size) {
        /* libarchive reads records up to the next signature, Python's zipfile
         * reads the size the end record gives: they would list different entries */
        par_buf_errf(
            err,
            "the central directory holds %llu bytes of records where its end record says %llu "
            "(ZIP readers would disagree on the entries)\n",
            (unsigned long long)(p - cd), (unsigned long long)cd_size);
        return PAR_E_BAD_ARCHIVE;
    }
    return PAR_OK;
}

int par__archive_open_reader(const par_archive_bytes_t *a, uint64_t max_entries, int ignore_crc,
                             struct archive **out, par_buf_t *err)
{
    *out = NULL;
    int rc = cd_precheck(a->data, a->len, max_entries, err);
    if (rc != PAR_OK)
        return rc;
    struct archive *ar = archive_read_new();
    if (ar == NULL) {
        par_buf_errf(err, "out of memory\n");
        return PAR_E_NO_MEMORY;
    }
    /* ZIP only, and the seekable reader: the central directory is authoritative */
    if (archive_read_support_format_zip_seekable(ar) != ARCHIVE_OK ||
        (ignore_crc &&
         archive_read_set_format_option(ar, "zip", "ignorecrc32", "1") != ARCHIVE_OK) ||
        archive_read_open_memory(ar, a->data, a->len) != ARCHIVE_OK) {
        par_buf_errf(err, "not a readable ZIP archive: %s\n", par__archive_ar_msg(ar));
        archive_read_free(ar);
        return PAR_E_INVALID_PACKAGE;
    }
    *out = ar;
    return PAR_OK;
}
