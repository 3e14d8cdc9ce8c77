/*
 * loader/native.h — native agents: ELF compatibility checks (no code is run),
 * and the in-process loader for operator-trusted packages.
 *
 * par__native_check() is what deploy uses for every native package, isolated
 * or not. par__native_load()/run() dlopen package code into the runtime and
 * are only used for packages the operator marked `isolation: in-process`.
 * Any thread.
 */
#ifndef PAR_LOADER_NATIVE_H
#define PAR_LOADER_NATIVE_H

#include "runtime/runtime.h"

/* Checks that every native entrypoint names an ELF shared object for this
 * machine inside the package. Appends one line per problem to `err`; returns
 * the number of problems. */
int par__native_check(const par_pkgver_t *pv, par_buf_t *err);

/* dlopens the package and resolves every export (in-process mode). */
int par__native_load(par_pkgver_t *pv, par_buf_t *err);
void par__native_unload(par_pkgver_t *pv);

/* Runs an in-process call on the current thread and sets its status/output. */
void par__native_run(par_call_t *c);

#endif
