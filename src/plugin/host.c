/*
 * plugin/host.c — loading plugins (see plugin.h): dlopen, the entry symbol,
 * the ABI and size checks, the host table and its services (log, config,
 * state directory), init and fini.
 *
 * Versioning (include/par/plugin.h): the plugin's tables are copied into
 * zero-filled tables of this header's size, reading no more than each
 * table's `size` says, so a field an older plugin does not have reads as
 * NULL/0; a plugin whose `abi` is newer than PAR_PLUGIN_ABI is refused.
 * Main thread only, at start and at exit; the host services it hands out
 * may be called from any thread.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <par/par.h>

#include "obs/log.h"
#include "plugin/internal.h"

#define NAME_MAX_LEN 64

/* ---- host services --------------------------------------------------------------- */

static void host_log(const par_plugin_host_t *h, int level, const char *msg)
{
    const par_plug_t *p = (const par_plug_t *)h;
    if (level < PAR_LOG_DEBUG || level > PAR_LOG_ERROR)
        level = PAR_LOG_INFO;
    par_logline_t l;
    if (par_log_begin(&l, level, msg ? msg : "")) {
        par_log_str(&l, "plugin", p->name);
        par_log_end(&l);
    }
}

static const char *host_config(const par_plugin_host_t *h, size_t *len)
{
    const par_plug_t *p = (const par_plug_t *)h;
    if (len)
        *len = strlen(p->config_json);
    return p->config_json;
}

static const char *host_state_dir(const par_plugin_host_t *h)
{
    return ((const par_plug_t *)h)->state_dir;
}

static const char *host_plugin_path(const par_plugin_host_t *h)
{
    return ((const par_plug_t *)h)->path;
}

static void host_table(par_plug_t *p)
{
    par_plugin_host_t *h = &p->host;
    h->abi = PAR_PLUGIN_ABI;
    h->size = sizeof(*h);
    h->runtime_version = par_version();
    h->log = host_log;
    h->config = host_config;
    h->state_dir = host_state_dir;
    h->plugin_path = host_plugin_path;
    h->cmd_arg = par__plug_cmd_arg;
    h->cmd_env = par__plug_cmd_env;
    h->cmd_ro = par__plug_cmd_ro;
    h->cmd_flag = par__plug_cmd_flag;
    h->auth_header = par__plug_auth_header;
    h->auth_complete = par__plug_auth_complete;
}

/* ---- tables ------------------------------------------------------------------------ */

/* Copies a table of the plugin's (its first field is its size) into `dst`
 * of `cap` bytes, zero-extended. 0, or -1 when its size cannot even hold
 * the size field. */
static int copy_table(void *dst, size_t cap, const void *src)
{
    memset(dst, 0, cap);
    if (src == NULL)
        return 0;
    uint32_t size;
    memcpy(&size, src, sizeof(size));
    if (size < sizeof(uint32_t))
        return -1;
    memcpy(dst, src, size < cap ? size : cap);
    ((uint32_t *)dst)[0] = size;
    return 0;
}

static int name_ok(const char *n)
{
    size_t l = n ? strlen(n) : 0;
    return l >= 1 && l <= NAME_MAX_LEN && strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789_-") == l;
}

/* The plugin table: ABI, size, name, kinds. */
static int check_table(par_plug_t *p, const par_plugin_t *t, par_buf_t *err)
{
    if (t->abi > PAR_PLUGIN_ABI) {
        par_buf_appendf(err,
                        "it was built for plugin ABI %u and this runtime (PAR %s) supports plugin "
                        "ABI %d at most: upgrade PAR, or rebuild the plugin against this "
                        "runtime's include/par/plugin.h",
                        t->abi, par_version(), PAR_PLUGIN_ABI);
        return PAR_E_INCOMPATIBLE;
    }
    if (t->abi == 0 || t->size < offsetof(par_plugin_t, fini)) {
        par_buf_appendf(err,
                        "its plugin table is not valid (abi %u, size %u): it must start "
                        "with abi, size, name, version and init (include/par/plugin.h)",
                        t->abi, t->size);
        return PAR_E_INCOMPATIBLE;
    }
    memset(&p->tab, 0, sizeof(p->tab));
    memcpy(&p->tab, t, t->size < sizeof(p->tab) ? t->size : sizeof(p->tab));
    if (!name_ok(p->tab.name) || p->tab.init == NULL) {
        par_buf_appendf(err, "%s",
                        p->tab.init ? "its name must be 1 to 64 of [a-z0-9_-]"
                                    : "its table has no init function");
        return PAR_E_INCOMPATIBLE;
    }
    if (copy_table(&p->loader, sizeof(p->loader), p->tab.loader) ||
        copy_table(&p->auth, sizeof(p->auth), p->tab.auth) ||
        copy_table(&p->exporter, sizeof(p->exporter), p->tab.exporter)) {
        par_buf_appends(err, "one of its loader, auth or exporter tables has no valid size");
        return PAR_E_INCOMPATIBLE;
    }
    if (p->tab.loader && (p->loader.runtimes == NULL || p->loader.runtimes[0] == NULL ||
                          p->loader.command == NULL)) {
        par_buf_appends(err, "its loader serves no runtime or has no command function");
        return PAR_E_INCOMPATIBLE;
    }
    if (p->tab.auth && p->auth.authenticate == NULL) {
        par_buf_appends(err, "its auth provider has no authenticate function");
        return PAR_E_INCOMPATIBLE;
    }
    return PAR_OK;
}

/* <state_dir>/plugins/<name>, mode 0700. */
static int make_state_dir(par_plug_t *p, const char *state_dir, par_buf_t *err)
{
    char *top = NULL;
    if (asprintf(&top, "%s/plugins", state_dir) < 0 ||
        asprintf(&p->state_dir, "%s/%s", top, p->name) < 0) {
        free(top);
        p->state_dir = NULL;
        return PAR_E_NO_MEMORY;
    }
    int ok = (mkdir(state_dir, 0700) == 0 || errno == EEXIST) &&
             (mkdir(top, 0700) == 0 || errno == EEXIST) &&
             (mkdir(p->state_dir, 0700) == 0 || errno == EEXIST);
    if (!ok)
        par_buf_appendf(err, "cannot create its state directory %s: %s", p->state_dir,
                        strerror(errno));
    free(top);
    return ok ? PAR_OK : PAR_E_IO;
}

/* ---- one plugin ---------------------------------------------------------------------- */

static void plug_free(par_plug_t *p)
{
    if (p == NULL)
        return;
    par__plug_exporter_stop(p);
    if (p->inited && p->tab.fini)
        p->tab.fini(p->state);
    par__plug_exporter_free(p);
    par__plug_auth_free_pending(p);
    if (p->dl)
        dlclose(p->dl);
    pthread_mutex_destroy(&p->lock);
    free(p->name);
    free(p->version);
    free(p->path);
    free(p->config_json);
    free(p->state_dir);
    free((char *)p->loader_impl.name);
    free((char *)p->loader_impl.runtimes);
    free(p);
}

/* dlopen, entry, table, state directory, init. */
static int plug_open(par_plug_t *p, const char *state_dir, par_buf_t *err)
{
    dlerror();
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        const char *e = dlerror();
        par_buf_appendf(err, "cannot load it: %s", e ? e : "dlopen failed");
        return PAR_E_INCOMPATIBLE;
    }
    par_plugin_entry_fn entry;
    *(void **)&entry = dlsym(p->dl, PAR_PLUGIN_ENTRY);
    if (entry == NULL) {
        par_buf_appends(err, "it exports no " PAR_PLUGIN_ENTRY
                             " function: not a PAR plugin (docs/extensions.md)");
        return PAR_E_INCOMPATIBLE;
    }
    const par_plugin_t *t = entry();
    if (t == NULL) {
        par_buf_appends(err, PAR_PLUGIN_ENTRY " returned no table");
        return PAR_E_INCOMPATIBLE;
    }
    int rc = check_table(p, t, err);
    if (rc != PAR_OK)
        return rc;
    if ((p->name = strdup(p->tab.name)) == NULL ||
        (p->version = strdup(p->tab.version ? p->tab.version : "")) == NULL)
        return PAR_E_NO_MEMORY;
    if ((rc = make_state_dir(p, state_dir, err)) != PAR_OK)
        return rc;
    char msg[1024] = "";
    if (p->tab.init(&p->host, &p->state, msg, sizeof(msg)) != 0) {
        msg[sizeof(msg) - 1] = '\0';
        par_buf_appendf(err, "its init failed: %s", *msg ? msg : "(it gave no reason)");
        return PAR_E_INVALID_ARGUMENT;
    }
    p->inited = 1;
    /* read again: the exporter's settings (queue_max) are read after init */
    copy_table(&p->exporter, sizeof(p->exporter), p->tab.exporter);
    return PAR_OK;
}

static int plug_load(const json_t *entry, size_t idx, const char *state_dir, par_plugins_t *set,
                     par_buf_t *err)
{
    const char *path = json_string_value(json_object_get(entry, "path"));
    json_t *conf = json_object_get(entry, "config");
    par_plug_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PAR_E_NO_MEMORY;
    pthread_mutex_init(&p->lock, NULL);
    p->set = set;
    host_table(p);
    p->path = strdup(path ? path : "");
    p->config_json = conf ? json_dumps(conf, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
    par_buf_t why;
    par_buf_init(&why, 0);
    int rc = p->path && p->config_json ? plug_open(p, state_dir, &why) : PAR_E_NO_MEMORY;
    for (size_t i = 0; rc == PAR_OK && i < set->count; i++)
        if (strcmp(set->items[i]->name, p->name) == 0) {
            par_buf_appendf(&why, "another plugin (plugins[%zu]) is named '%s' already", i,
                            p->name);
            rc = PAR_E_CONFLICT;
        }
    par_plug_t **v = rc == PAR_OK ? realloc(set->items, (set->count + 1) * sizeof(*v)) : NULL;
    if (rc == PAR_OK && v == NULL)
        rc = PAR_E_NO_MEMORY;
    if (rc != PAR_OK) {
        par_buf_appendf(err, "plugins[%zu] (%s): %.*s", idx, path ? path : "?", (int)why.len,
                        why.data ? why.data : par_strerror(rc));
        par_buf_free(&why);
        plug_free(p);
        return rc;
    }
    par_buf_free(&why);
    set->items = v;
    set->items[set->count++] = p;
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "plugin loaded")) {
        par_log_str(&l, "plugin", p->name);
        par_log_str(&l, "version", p->version);
        par_log_str(&l, "path", p->path);
        par_log_int(&l, "abi", p->tab.abi);
        par_log_end(&l);
    }
    return PAR_OK;
}

/* ---- the set ------------------------------------------------------------------------- */

int par_plugins_load(const json_t *list, const char *state_dir, par_plugins_t **out, par_buf_t *err)
{
    par_plugins_t *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return PAR_E_NO_MEMORY;
    size_t i;
    json_t *e;
    int rc = PAR_OK;
    json_array_foreach(list, i, e)
    {
        if ((rc = plug_load(e, i, state_dir, set, err)) != PAR_OK)
            break;
    }
    if (rc != PAR_OK) {
        par_plugins_destroy(set);
        return rc;
    }
    *out = set;
    return PAR_OK;
}

int par_plugins_attach(par_plugins_t *ps, par_runtime_t *rt, par_buf_t *err)
{
    ps->rt = rt;
    for (size_t i = 0; i < ps->count; i++) {
        par_plug_t *p = ps->items[i];
        int rc = p->tab.loader ? par__plug_loader_attach(p, rt, err) : PAR_OK;
        if (rc == PAR_OK && p->tab.exporter)
            rc = par__plug_exporter_start(p, rt, err); /* joins the exporter registry */
        if (rc != PAR_OK)
            return rc;
    }
    return PAR_OK;
}

int par_plugins_register_auth(par_plugins_t *ps, par_auth_registry_t *reg, par_buf_t *err)
{
    for (size_t i = 0; ps && i < ps->count; i++)
        if (ps->items[i]->tab.auth) {
            int rc = par__plug_auth_register(ps->items[i], reg, err);
            if (rc != PAR_OK)
                return rc;
        }
    return PAR_OK;
}

void par_plugins_stop(par_plugins_t *ps)
{
    for (size_t i = 0; ps && i < ps->count; i++)
        par__plug_exporter_stop(ps->items[i]);
}

void par_plugins_destroy(par_plugins_t *ps)
{
    if (ps == NULL)
        return;
    par_plugins_stop(ps);
    for (size_t i = ps->count; i-- > 0;)
        plug_free(ps->items[i]);
    free(ps->items);
    free(ps);
}
