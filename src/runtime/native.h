/*
 * runtime/native.h — native agents: the in-process loader for
 * operator-trusted packages.
 *
 * The ELF checks every native package passes first are pkg/compat.c's.
 * par__native_load()/run() dlopen package code into the runtime and
 * are only used for packages the operator marked `isolation: in-process`.
 * Any thread. It lives in runtime/, not loader/: it runs package code in
 * the runtime's address space and calls back into it (an agent's
 * par_ctx_call is par__call_sync), while the loader never includes the
 * runtime.
 */
#ifndef PAR_RUNTIME_NATIVE_H
#define PAR_RUNTIME_NATIVE_H

#include "runtime/runtime.h"

/* dlopens the package and resolves every export (in-process mode). */
int par__native_load(par_pkgver_t *pv, par_buf_t *err);
void par__native_unload(par_pkgver_t *pv);

/* Runs an in-process call on the current thread and sets its status/output. */
void par__native_run(par_call_t *c);

#endif
