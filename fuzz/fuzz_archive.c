/*
 * fuzz/fuzz_archive.c — libFuzzer harness for pkg/archive.c: the archive
 * reader (central-directory precheck, member reads) and the extractor. A
 * package's bytes come from whoever can deploy or publish to a registry.
 *
 * Each input is loaded as an .apkg (par_archive_load, through a memfd so no
 * disk is touched), agent.yaml is read as the deploy path reads it, and the
 * whole archive is extracted into a fresh directory under a private temporary
 * directory, removed afterwards. Checks: every status is one the header
 * documents and every refusal says why; after a successful extraction the tree
 * holds only directories, regular files and links that stay inside it, within
 * the entry and size limits, the extracted agent.yaml is byte for byte what
 * par_archive_read_member returned (reader and extractor see the same
 * package), and nothing appeared beside the destination.
 * Single-threaded (libFuzzer's one worker per process).
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "par/par.h"
#include "pkg/archive.h"
#include "registry/cache.h"
#include "util/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_base[PATH_MAX], g_dest[PATH_MAX + 8], g_real[PATH_MAX];
static par_archive_limits_t g_lim;
static uint64_t g_entries, g_bytes;

static void cleanup(void)
{
    par_fs_remove(g_dest, NULL);
    rmdir(g_base);
}

static void init(void)
{
    if (g_base[0])
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_base, sizeof(g_base), "%s/par-fuzz-archive-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(g_base) != NULL, "mkdtemp %s", g_base);
    snprintf(g_dest, sizeof(g_dest), "%s/x", g_base);
    atexit(cleanup);
    par_archive_limits_default(&g_lim);
    g_lim.max_archive_bytes = 1 << 20;
    g_lim.max_entries = 64;
    g_lim.max_total_bytes = 4 << 20;
    g_lim.max_entry_bytes = 1 << 20;
}

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    if (ftw->level == 0)
        return 0;
    if (!S_ISDIR(st->st_mode)) /* parents come without entries of their own */
        g_entries++;
    if (S_ISREG(st->st_mode)) {
        g_bytes += (uint64_t)st->st_size;
    } else if (S_ISLNK(st->st_mode)) {
        char real[PATH_MAX];
        if (realpath(path, real) != NULL) {
            size_t n = strlen(g_real);
            FUZZ_CHECK(strncmp(real, g_real, n) == 0 && (real[n] == '/' || real[n] == '\0'),
                       "%s leads to %s", path, real);
        }
    } else {
        FUZZ_CHECK(S_ISDIR(st->st_mode), "%s: mode %o", path, (unsigned)st->st_mode);
    }
    return 0;
}

static void check_tree(const par_buf_t *yaml, int yaml_rc)
{
    FUZZ_CHECK(realpath(g_dest, g_real) != NULL, "destination vanished");
    g_entries = g_bytes = 0;
    nftw(g_dest, visit, 16, FTW_PHYS);
    FUZZ_CHECK(g_entries <= g_lim.max_entries, "%llu files and links",
               (unsigned long long)g_entries);
    FUZZ_CHECK(g_bytes <= g_lim.max_total_bytes, "%llu bytes", (unsigned long long)g_bytes);
    if (yaml_rc == PAR_OK) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/agent.yaml", g_dest);
        int fd = open(p, O_RDONLY | O_NOFOLLOW);
        FUZZ_CHECK(fd >= 0, "agent.yaml was read but not extracted");
        char *buf = malloc(yaml->len + 1);
        ssize_t n = buf ? read(fd, buf, yaml->len + 1) : -1;
        close(fd);
        FUZZ_CHECK(n == (ssize_t)yaml->len && (n == 0 || memcmp(buf, yaml->data, yaml->len) == 0),
                   "extracted agent.yaml differs from the member read");
        free(buf);
    }
}

static void check_nothing_beside(void)
{
    DIR *d = opendir(g_base);
    FUZZ_CHECK(d != NULL, "base directory vanished");
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        FUZZ_CHECK(strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
                       strcmp(e->d_name, "x") == 0,
                   "extraction wrote %s beside the destination", e->d_name);
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    int fd = memfd_create("apkg", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    par_archive_bytes_t a;
    par_buf_t err, yaml;
    par_buf_init(&err, 0);
    int rc = par_archive_load(path, &g_lim, &a, &err);
    close(fd);
    if (rc != PAR_OK) {
        par_buf_free(&err);
        return 0;
    }
    int yrc = par_archive_read_member(&a, "agent.yaml", 256 * 1024, &yaml, &err);
    FUZZ_CHECK(yrc == PAR_OK || yrc == PAR_E_NOT_FOUND || yrc == PAR_E_TOO_LARGE ||
                   yrc == PAR_E_INVALID_PACKAGE || yrc == PAR_E_UNSAFE_ARCHIVE ||
                   yrc == PAR_E_BAD_ARCHIVE,
               "read_member: %d", yrc);
    FUZZ_CHECK(mkdir(g_dest, 0700) == 0, "mkdir %s", g_dest);
    par_buf_reset(&err);
    rc = par_archive_extract(&a, g_dest, &g_lim, &err);
    FUZZ_CHECK(rc == PAR_OK || rc == PAR_E_UNSAFE_ARCHIVE || rc == PAR_E_INVALID_PACKAGE ||
                   rc == PAR_E_TOO_LARGE || rc == PAR_E_BAD_ARCHIVE,
               "extract: %d (%.*s)", rc, (int)err.len, err.data ? err.data : "");
    if (rc == PAR_OK)
        check_tree(&yaml, yrc);
    else
        FUZZ_CHECK(err.len > 0, "extraction refused without a reason");
    check_nothing_beside();
    FUZZ_CHECK(par_fs_remove(g_dest, NULL) == 0, "cannot remove %s", g_dest);
    par_buf_free(&yaml);
    par_buf_free(&err);
    par_archive_bytes_free(&a);
    return 0;
}
