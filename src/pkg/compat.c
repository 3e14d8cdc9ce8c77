/*
 * pkg/compat.c — see pkg/compat.h.
 */
#include "pkg/compat.h"

#include <elf.h>
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
static int entry_lib(const char *entry, char *lib, size_t n)
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
        if (entry_lib(m->exports[i].entrypoint, lib, sizeof(lib)) != 0) {
            par_buf_appendf(err, "%s: '%s' is not path/lib.so:symbol\n", m->exports[i].field,
                            m->exports[i].entrypoint);
            problems++;
            continue;
        }
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) {
            char other[PATH_MAX];
            seen = entry_lib(m->exports[k].entrypoint, other, sizeof(other)) == 0 &&
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

/* 1 when the package installs requirements (`dependencies`, or a
 * requirements.txt line that is not blank or a comment). */
static int has_requirements(const char *root, const par_manifest_t *m)
{
    if (m->dependencies.count > 0)
        return 1;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/requirements.txt", root);
    par_buf_t t;
    par_buf_init(&t, 0);
    int any = 0;
    if (par_file_read(path, 1024 * 1024, &t) == 0) {
        for (size_t i = 0, bol = 1; i < t.len && !any; i++) {
            char ch = t.data[i];
            if (ch == '\n')
                bol = 1;
            else if (bol && ch == '#')
                while (i + 1 < t.len && t.data[i + 1] != '\n')
                    i++;
            else if (ch != ' ' && ch != '\t' && ch != '\r')
                any = 1;
        }
    }
    par_buf_free(&t);
    return any;
}

/* A module that is not in the package may come from a requirement, unless
 * its top-level package is in the package (then it is a missing file). */
static int check_python(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    int problems = 0, reqs = has_requirements(root, m);
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

int par_pkg_compat_check(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    int problems = check_runtime(m, err) + check_par_block(m, err);
    if (m->export_count == 0) {
        par_buf_appendf(err, "entrypoint: the package exports no agent (no entrypoint, "
                             "sub_agents or metadata.par.exports)\n");
        problems++;
    }
    if (m->runtime_kind == PAR_RUNTIME_NATIVE)
        problems += check_native(root, m, err);
    else if (m->runtime_kind == PAR_RUNTIME_PYTHON)
        problems += check_python(root, m, err);
    problems += par_package_env_check(root, m, err);
    return problems;
}
