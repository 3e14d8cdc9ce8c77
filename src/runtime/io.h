/*
 * runtime/io.h — what the HTTP layer asks of the runtime's internals without
 * knowing them: lending an event loop to the supervisor's I/O, the registry
 * index's status, a package's workers.
 *
 * Callers: http/ only (the layer map forbids it loader/ and registry/).
 * Each function forwards to the module that owns the state; none blocks on
 * agent code. Threads: as each says.
 */
#ifndef PAR_RUNTIME_IO_H
#define PAR_RUNTIME_IO_H

#include <jansson.h>

#include "runtime/runtime.h"

/* Hands the supervisor's I/O to the calling event-loop thread (see
 * par_super_attach in loader/supervisor.h): returns the descriptor to watch
 * (owned by the supervisor: dup it), or -1 when the runtime has no supervisor
 * (then nothing is attached). One loop at a time; detach before it ends. */
int par__runtime_io_attach(par_runtime_t *rt);
/* On the attached loop: runs the supervisor's I/O once (the descriptor is
 * readable, or par__runtime_io_due() said so). */
void par__runtime_io_poll(par_runtime_t *rt);
/* On the attached loop: 1 when the supervisor's timers want a poll. */
int par__runtime_io_due(par_runtime_t *rt);
/* On the attached loop: gives the I/O back to the supervisor's thread. */
void par__runtime_io_detach(par_runtime_t *rt);

/* Adds the package version's workers to `o` ("workers", "restarts",
 * "health", "crashes_in_row", "sandbox") when it runs in workers; returns 1
 * then, 0 when it has no pool. Any thread. */
int par__runtime_pool_json(par_pkgver_t *pv, json_t *o);

/* A package version as GET /runtime/packages and par_runtime_packages show it
 * (runtime/embed_admin.c); NULL when out of memory. */
json_t *par__package_json(par_pkgver_t *pv);

#endif
