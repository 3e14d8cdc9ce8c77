/*
 * plugin/plugin.h — the plugin host: extension plugins (include/par/plugin.h,
 * docs/extensions.md) loaded from the configuration's `plugins` list.
 *
 * Owns every loaded plugin: its shared object, its host table, its state,
 * and what it registered — a loader in the runtime's loader registry
 * (plugin/loader.c), an auth provider in the auth registry (plugin/auth.c),
 * an exporter in the telemetry-exporter registry, with its thread and
 * bounded queue (plugin/export.c).
 *
 * Called by `par serve` (cli/serve.c) on the main thread: load after the
 * runtime is made and before anything is deployed or served; attach; stop
 * after the runtime is destroyed; then destroy. Must never run plugin code
 * on an event loop except an auth provider's `authenticate`, which the ABI
 * requires not to block.
 */
#ifndef PAR_PLUGIN_PLUGIN_H
#define PAR_PLUGIN_PLUGIN_H

#include <jansson.h>

#include "auth/auth.h"
#include "pkg/manifest.h"
#include "runtime/runtime.h"
#include "util/buf.h"

typedef struct par_plugins par_plugins_t;

/* Loads every entry of `list` ([{path, config}], the configuration's
 * `plugins`): dlopen, the entry symbol, the ABI checks, then init with a
 * state directory under `state_dir`/plugins. On failure nothing stays
 * loaded and `err` names the plugin and why (a newer ABI, a missing symbol,
 * init's message). An empty or NULL list gives an empty set. */
int par_plugins_load(const json_t *list, const char *state_dir, par_plugins_t **out,
                     par_buf_t *err);

/* Registers the plugins' loaders with the runtime's loader registry and
 * starts their exporters (a thread each), added to its telemetry-exporter
 * registry (runtime/exporters.h) as "plugin:<name>". Before the first deploy. */
int par_plugins_attach(par_plugins_t *ps, par_runtime_t *rt, par_buf_t *err);

/* Adds the plugins' auth providers to `reg` as "plugin:<name>". */
int par_plugins_register_auth(par_plugins_t *ps, par_auth_registry_t *reg, par_buf_t *err);

/* For `par pack` (no runtime): the loader of the first plugin of `ps` that
 * serves m->runtime checks the package directory `root` (its validate; it
 * prepares nothing, writes nothing). Returns the number of problems, one
 * line each in `err`, or -1 when no plugin of `ps` serves that runtime. */
int par_plugins_check_package(par_plugins_t *ps, const char *root, const par_manifest_t *m,
                              par_buf_t *err);

/* Stops the exporters (each delivers what it has queued, then flushes).
 * After the runtime is destroyed: no call finishes any more. */
void par_plugins_stop(par_plugins_t *ps);

/* Calls every plugin's fini, in reverse load order, and unloads. NULL is fine. */
void par_plugins_destroy(par_plugins_t *ps);

#endif
