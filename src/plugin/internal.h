/*
 * plugin/internal.h — what the files of src/plugin/ share: one loaded plugin.
 */
#ifndef PAR_PLUGIN_INTERNAL_H
#define PAR_PLUGIN_INTERNAL_H

#include <pthread.h>

#include <par/plugin.h>

#include "plugin/plugin.h"
#include "runtime/loaders.h"

typedef struct par_exporter par_exporter_t;

/* One loaded plugin. `host` comes first: the host functions find the
 * plugin from the table they are given. */
typedef struct par_plug {
    par_plugin_host_t host;
    void *dl;
    par_plugin_t tab;        /* the plugin's table, zero-extended to this header's size */
    par_loader_ops_t loader; /* zero-extended copies; `size` 0 when absent */
    par_auth_ops_t auth;
    par_exporter_ops_t exporter;
    void *state;
    int inited;
    char *name, *version, *path, *config_json, *state_dir;
    par_loader_impl_t loader_impl; /* registered with the runtime */
    par_exporter_t *exp;           /* running exporter, or NULL */
    struct par_plugins *set;
    /* auth: answers not yet delivered (plugin/auth.c) */
    pthread_mutex_t lock;
    struct par_auth_done *pending;
} par_plug_t;

struct par_plugins {
    par_plug_t **items;
    size_t count;
    par_runtime_t *rt;
};

/* plugin/loader.c */
int par__plug_loader_attach(par_plug_t *p, par_runtime_t *rt, par_buf_t *err);
/* host functions of par_plugin_host_t for loaders */
int par__plug_cmd_arg(par_loader_cmd_t *c, const char *arg);
int par__plug_cmd_env(par_loader_cmd_t *c, const char *kv);
int par__plug_cmd_ro(par_loader_cmd_t *c, const char *dir);
int par__plug_cmd_flag(par_loader_cmd_t *c, unsigned flag);

/* plugin/auth.c */
int par__plug_auth_register(par_plug_t *p, par_auth_registry_t *reg, par_buf_t *err);
int par__plug_auth_header(const par_auth_request_t *r, const char *name, par_slice_t *value);
void par__plug_auth_complete(par_auth_done_t *d, const par_auth_result_t *res);
void par__plug_auth_free_pending(par_plug_t *p);

/* plugin/export.c */
int par__plug_exporter_start(par_plug_t *p, par_runtime_t *rt, par_buf_t *err);
void par__plug_exporter_stop(par_plug_t *p);
void par__plug_exporter_free(par_plug_t *p); /* after stop, queued items dropped */

#endif
