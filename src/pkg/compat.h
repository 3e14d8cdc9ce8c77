/*
 * pkg/compat.h — can this runtime run this package? Every check that needs
 * no package code: the one list deploy, `par pack` and `par inspect` share.
 *
 * Owns: the runtime has a loader for `runtime`; metadata.par.requires and
 * metadata.par.abi match this build; the package exports something; each
 * native entrypoint names an ELF shared object for this machine inside the
 * package; each Python entrypoint's module file exists; requirement lines
 * are plain specifiers; the environment names no variable the sandbox
 * refuses. Called by runtime/deploy.c (on the
 * extracted package, before workers start), cli/pack.c (on the directory
 * being packed, or on a temporary extraction for inspect). Reads files under
 * `root` only; never loads, imports or runs anything. Any thread.
 *
 * What stays with the loaders, because it depends on the host: the Python
 * interpreter's version, the wheelhouse and virtual environment
 * (loader/python.c), dlopen and symbol lookup (runtime/native.c, workers).
 */
#ifndef PAR_PKG_COMPAT_H
#define PAR_PKG_COMPAT_H

#include "pkg/manifest.h"
#include "util/buf.h"

/** Copies the library path of a native entrypoint ("lib/x.so:symbol" →
 *  "lib/x.so") into `lib`; -1 without a colon or when it does not fit. */
int par_pkg_entry_lib(const char *entry, char *lib, size_t n);

/** Checks the package unpacked at `root` against manifest `m`. Appends one
 *  line per problem to `err`, each starting with the field path it is about
 *  ("metadata.sub_agents[0].entrypoint: lib/x.so: not found in the
 *  package"), and returns the number of problems (0: compatible). */
int par_pkg_compat_check(const char *root, const par_manifest_t *m, par_buf_t *err);

/** The parts of par_pkg_compat_check, for the runtime's loader registry
 *  (runtime/loaders.h), where the loader of `runtime` is looked up instead:
 *  what every package needs (metadata.par, exports, environment), and what
 *  the native and Python loaders check. Same conventions. */
int par_pkg_compat_common(const char *root, const par_manifest_t *m, par_buf_t *err);
int par_pkg_compat_native(const char *root, const par_manifest_t *m, par_buf_t *err);
int par_pkg_compat_python(const char *root, const par_manifest_t *m, par_buf_t *err);

/** requirements.txt and agent.yaml `dependencies` of the package at `root`,
 *  one plain specifier per line appended to `reqs` (NUL-terminated) and
 *  counted in *count. Options, URLs, paths and direct references are refused
 *  (they would let pip reach beyond the operator's wheelhouse): one line per
 *  problem in `err`; returns the number of problems. Used by the Python
 *  loader to build the virtual environment. */
int par_pkg_requirements(const char *root, const par_manifest_t *m, par_buf_t *reqs, size_t *count,
                         par_buf_t *err);

#endif
