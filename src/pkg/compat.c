/*
 * pkg/compat.c — see pkg/compat.h.
 */
#include "pkg/compat.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/agent.h>
#include <par/par.h>

#include "pkg/dotenv.h"
#include "pkg/semver.h"
#include "util/proc.h"
#include "util/suggest.h"

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#define HOST_MACHINE_NAME "x86_64"
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#define HOST_MACHINE_NAME "aarch64"
#else
#error "unsupported host architecture"
#endif

static const char *machine_name(int m)
{
    switch (m) {
    case EM_X86_64:
        return "x86_64";
    case EM_AARCH64:
        return "aarch64";
    case EM_386:
        return "i386";
    case EM_ARM:
        return "arm";
    case EM_RISCV:
        return "riscv";
    default:
        return "an unknown machine";
    }
}

/* ---- native ------------------------------------------------------------------------ */

/* Splits "lib/x.so:symbol" into a library path; returns 0 on success. */
int par_pkg_entry_lib(const char *entry, char *lib, size_t n)
{
    const char *colon = strrchr(entry, ':');
    if (colon == NULL || (size_t)(colon - entry) >= n)
        return -1;
    memcpy(lib, entry, (size_t)(colon - entry));
    lib[colon - entry] = '\0';
    return 0;
}

/* 0 when `root`/`lib` is an ELF shared object for this machine; else one
 * problem line naming `field`. Symlinks are not followed (the archive
 * extractor refuses links leaving the tree; a link here is simply refused). */
static int check_elf(const char *root, const char *lib, const char *field, par_buf_t *err)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", root, lib);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        par_buf_appendf(err, "%s: %s: not found in the package\n", field, lib);
        return 1;
    }
    Elf64_Ehdr eh;
    ssize_t r = read(fd, &eh, sizeof(eh));
    close(fd);
    if (r != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        par_buf_appendf(err, "%s: %s: not an ELF shared object\n", field, lib);
    } else if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != HOST_MACHINE) {
        par_buf_appendf(err, "%s: %s: built for %s (%s), this runtime runs on %s\n", field, lib,
                        machine_name(eh.e_machine),
                        eh.e_ident[EI_CLASS] == ELFCLASS64 ? "64-bit" : "32-bit",
                        HOST_MACHINE_NAME);
    } else if (eh.e_type != ET_DYN) {
        par_buf_appendf(err, "%s: %s: not a shared object (ELF type %d)\n", field, lib, eh.e_type);
    } else {
        return 0;
    }
    return 1;
}

/* Each distinct library once. */
static int check_native(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    int problems = 0;
    for (size_t i = 0; i < m->export_count; i++) {
        char lib[PATH_MAX];
        if (par_pkg_entry_lib(m->exports[i].entrypoint, lib, sizeof(lib)) != 0) {
            par_buf_appendf(err, "%s: '%s' is not path/lib.so:symbol\n", m->exports[i].field,
                            m->exports[i].entrypoint);
            problems++;
            continue;
        }
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) {
            char other[PATH_MAX];
            seen = par_pkg_entry_lib(m->exports[k].entrypoint, other, sizeof(other)) == 0 &&
                   strcmp(other, lib) == 0;
        }
        if (!seen)
            problems += check_elf(root, lib, m->exports[i].field, err);
    }
    return problems;
}

/* ---- python ------------------------------------------------------------------------ */

/* 1 when the dotted `module` is a file of the package (a/b.py or
 * a/b/__init__.py); *top_present tells whether its top-level package is. */
static int module_in_package(const char *root, const char *module, int *top_present)
{
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s", module);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    char top[PATH_MAX], path[PATH_MAX * 2];
    snprintf(top, sizeof(top), "%s", module);
    char *dot = strchr(top, '.');
    if (dot)
        *dot = '\0';
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", root, top);
    int dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    snprintf(path, sizeof(path), "%s/%s.py", root, top);
    *top_present = dir || stat(path, &st) == 0;
    snprintf(path, sizeof(path), "%s/%s.py", root, rel);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    snprintf(path, sizeof(path), "%s/%s/__init__.py", root, rel);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

#define REQUIREMENTS_MAX_BYTES (64 * 1024)

/* One requirement line (comment removed, trimmed): 0 when it is a plain
 * specifier, else appends why not. pip reads more than specifiers from a
 * requirements file (options such as --find-links, `name @ URL`, paths), and
 * any of those would let a package reach beyond the wheelhouse. */
static int check_requirement(const char *s, size_t n, const char *where, par_buf_t *err)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f) {
            par_buf_appendf(err, "%s: control or non-ASCII characters are not allowed\n", where);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
            par_buf_appendf(err,
                            "%s: pip options are not allowed (\"%.*s\"); only requirement "
                            "specifiers\n",
                            where, (int)(n > 80 ? 80 : n), s);
            return -1;
        }
    }
    if (memchr(s, '@', n) || memchr(s, '/', n) || memchr(s, '\\', n)) {
        par_buf_appendf(err,
                        "%s: direct references, URLs and paths are not allowed (\"%.*s\"): "
                        "requirements install only from the wheelhouse\n",
                        where, (int)(n > 80 ? 80 : n), s);
        return -1;
    }
    return 0;
}

int par_pkg_requirements(const char *root, const par_manifest_t *m, par_buf_t *reqs, size_t *count,
                         par_buf_t *err)
{
    int problems = 0;
    char path[PATH_MAX], where[64];
    snprintf(path, sizeof(path), "%s/requirements.txt", root);
    par_buf_t text;
    par_buf_init(&text, 0);
    if (par_file_read(path, REQUIREMENTS_MAX_BYTES, &text) == 0) {
        const char *p = text.data, *end = text.data + text.len;
        size_t lineno = 0;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *e = nl ? nl : end;
            lineno++;
            if (e > p && e[-1] == '\r')
                e--;
            const char *s = p;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            const char *c = s;
            while (c < e && !(*c == '#' && (c == s || c[-1] == ' ' || c[-1] == '\t')))
                c++;
            while (c > s && (c[-1] == ' ' || c[-1] == '\t'))
                c--;
            snprintf(where, sizeof(where), "requirements.txt:%zu", lineno);
            if (c > s && check_requirement(s, (size_t)(c - s), where, err) != 0) {
                problems++;
            } else if (c > s) {
                par_buf_append(reqs, s, (size_t)(c - s));
                par_buf_append(reqs, "\n", 1);
                (*count)++;
            }
            p = nl ? nl + 1 : end;
        }
    } else if (errno != ENOENT) {
        par_buf_appendf(err, "requirements.txt: cannot read: %s\n", strerror(errno));
        problems++;
    }
    par_buf_free(&text);
    const par_strlist_t *deps = &m->dependencies;
    for (size_t i = 0; i < deps->count; i++) {
        const char *d = deps->items[i];
        size_t n = strlen(d);
        while (n && (*d == ' ' || *d == '\t'))
            d++, n--;
        while (n && (d[n - 1] == ' ' || d[n - 1] == '\t'))
            n--;
        snprintf(where, sizeof(where), "dependencies[%zu]", i);
        if (n == 0)
            continue;
        if (check_requirement(d, n, where, err) != 0) {
            problems++;
            continue;
        }
        par_buf_append(reqs, d, n);
        par_buf_append(reqs, "\n", 1);
        (*count)++;
    }
    par_buf_terminate(reqs); /* read as a C string in messages */
    return problems;
}

/* A module that is not in the package may come from a requirement, unless
 * its top-level package is in the package (then it is a missing file). */
static int check_python(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    par_buf_t list;
    size_t nreqs = 0;
    par_buf_init(&list, 0);
    int problems = par_pkg_requirements(root, m, &list, &nreqs, err);
    par_buf_free(&list);
    int reqs = nreqs > 0;
    for (size_t i = 0; i < m->export_count; i++) {
        const char *entry = m->exports[i].entrypoint;
        const char *colon = strchr(entry, ':');
        char module[512];
        snprintf(module, sizeof(module), "%.*s", (int)(colon ? colon - entry : 0), entry);
        int seen = 0, top = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(m->exports[k].entrypoint, entry) == 0;
        if (!seen && !module_in_package(root, module, &top) && (top || !reqs)) {
            char rel[512];
            snprintf(rel, sizeof(rel), "%s", module);
            for (char *p = rel; *p; p++)
                if (*p == '.')
                    *p = '/';
            par_buf_appendf(err, "%s: the package has no module %s (%s.py or %s/__init__.py)\n",
                            m->exports[i].field, module, rel, rel);
            problems++;
        }
    }
    return problems;
}

/* ---- the package ------------------------------------------------------------------- */

static int check_runtime(const par_manifest_t *m, par_buf_t *err)
{
    static const char *const runtimes[] = {"native",     "python3.9",  "python3.10", "python3.11",
                                           "python3.12", "python3.13", "python3.14", NULL};
    if (m->runtime_kind != PAR_RUNTIME_OTHER)
        return 0;
    const char *near = par_suggest(m->runtime, runtimes);
    par_buf_appendf(err,
                    "runtime: no loader for runtime %s%s%s%s (PAR runs native and python3.N "
                    "agents)\n",
                    m->runtime, near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
    return 1;
}

static int check_par_block(const par_manifest_t *m, par_buf_t *err)
{
    int problems = 0;
    if (m->par_requires) {
        par_buf_t serr;
        par_buf_init(&serr, 0);
        int match = par_semver_range_match(m->par_requires, PAR_VERSION_STRING, &serr);
        if (match < 0) {
            par_buf_appendf(err, "metadata.par.requires: %.*s\n", (int)serr.len,
                            serr.data ? serr.data : "not a semver range");
            problems++;
        } else if (match == 0) {
            par_buf_appendf(err,
                            "metadata.par.requires: \"%s\" does not match this runtime, PAR %s\n",
                            m->par_requires, PAR_VERSION_STRING);
            problems++;
        }
        par_buf_free(&serr);
    }
    if (m->par_abi >= 0 && m->par_abi != PAR_AGENT_ABI) {
        par_buf_appendf(
            err, "metadata.par.abi: the package's abi is %d, this runtime speaks native ABI %d\n",
            m->par_abi, PAR_AGENT_ABI);
        problems++;
    }
    return problems;
}

int par_pkg_compat_common(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    int problems = check_par_block(m, err);
    if (m->export_count == 0) {
        par_buf_appendf(err, "entrypoint: the package exports no agent (no entrypoint, "
                             "sub_agents or metadata.par.exports)\n");
        problems++;
    }
    return problems + par_package_env_check(root, m, err);
}

int par_pkg_compat_native(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    return check_native(root, m, err);
}

int par_pkg_compat_python(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    return check_python(root, m, err);
}

int par_pkg_compat_check(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    int problems = check_runtime(m, err) + par_pkg_compat_common(root, m, err);
    if (m->runtime_kind == PAR_RUNTIME_NATIVE)
        problems += check_native(root, m, err);
    else if (m->runtime_kind == PAR_RUNTIME_PYTHON)
        problems += check_python(root, m, err);
    return problems;
}
