/*
 * plugin/loader.c — a plugin's loader in the runtime's loader registry
 * (runtime/loaders.h): the version handed to the plugin (par_loader_pkg_t,
 * built once at check and kept in pv->loader_state until the version is
 * freed), its validate/prepare/command calls, and the worker command it
 * builds through the host functions (cmd_arg, cmd_env, cmd_ro, cmd_flag).
 *
 * Deploy threads (serialised by the runtime's deploy lock), except release,
 * which runs where the version's last reference is dropped. The plugin's
 * program never runs here: par-worker execs it inside its sandbox.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <par/par.h>

#include "obs/log.h"
#include "plugin/internal.h"
#include "util/argv.h"
#include "util/yaml.h"

struct par_loader_cmd {
    par_strvec_t argv, env, ro;
    unsigned flags;
};

/* What the plugin sees of one version; owned by pv->loader_state. */
typedef struct vstate {
    par_loader_pkg_t pkg;
    char *manifest_json, *cache_dir;
    par_loader_export_t *exports;
    const char **deps;
} vstate_t;

/* ---- host functions -------------------------------------------------------------- */

int par__plug_cmd_arg(par_loader_cmd_t *c, const char *arg)
{
    if (c == NULL || arg == NULL)
        return PAR_E_INVALID_ARGUMENT;
    par_strvec_push(&c->argv, arg);
    return par_strvec_ok(&c->argv) ? PAR_OK : PAR_E_NO_MEMORY;
}

int par__plug_cmd_env(par_loader_cmd_t *c, const char *kv)
{
    if (c == NULL || kv == NULL || strchr(kv, '=') == NULL || *kv == '=')
        return PAR_E_INVALID_ARGUMENT;
    par_strvec_push(&c->env, kv);
    return par_strvec_ok(&c->env) ? PAR_OK : PAR_E_NO_MEMORY;
}

int par__plug_cmd_ro(par_loader_cmd_t *c, const char *dir)
{
    if (c == NULL || dir == NULL || dir[0] != '/')
        return PAR_E_INVALID_ARGUMENT;
    par_strvec_push(&c->ro, dir);
    return par_strvec_ok(&c->ro) ? PAR_OK : PAR_E_NO_MEMORY;
}

int par__plug_cmd_flag(par_loader_cmd_t *c, unsigned flag)
{
    if (c == NULL || (flag & ~(unsigned)PAR_LOADER_CMD_OWN_MEMORY_LIMIT))
        return PAR_E_INVALID_ARGUMENT;
    c->flags |= flag;
    return PAR_OK;
}

/* ---- the version ------------------------------------------------------------------- */

static void vstate_free(vstate_t *v)
{
    if (v == NULL)
        return;
    free(v->manifest_json);
    free(v->cache_dir);
    free(v->exports);
    free(v->deps);
    free(v);
}

/* agent.yaml as JSON text. */
static char *manifest_json(const char *root)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/agent.yaml", root);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = malloc(PAR_MANIFEST_MAX_BYTES + 1);
    size_t n = data ? fread(data, 1, PAR_MANIFEST_MAX_BYTES, f) : 0;
    fclose(f);
    par_yaml_t y;
    par_buf_t err;
    par_buf_init(&err, 0);
    char *out = NULL;
    if (data && par_yaml_load(&y, data, n, &err) == PAR_OK) {
        json_t *j = par_yaml_to_json(&y, par_yaml_root(&y));
        out = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        par_yaml_free(&y);
    }
    par_buf_free(&err);
    free(data);
    return out;
}

static int mkdirs(const char *a, const char *b, const char *c)
{
    return (mkdir(a, 0700) == 0 || errno == EEXIST) && (mkdir(b, 0700) == 0 || errno == EEXIST) &&
                   (mkdir(c, 0700) == 0 || errno == EEXIST)
               ? 0
               : -1;
}

/* The package at `root` as the plugin sees it (par_loader_pkg_t) with the
 * runtime's limits left 0; its cache directory named, not made. NULL: out of
 * memory. */
static vstate_t *vstate_of(par_plug_t *p, const char *name, const char *version, const char *root,
                           const par_manifest_t *m)
{
    vstate_t *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return NULL;
    v->manifest_json = manifest_json(root);
    if (asprintf(&v->cache_dir, "%s/cache/%s@%s", p->state_dir, name, version) < 0)
        v->cache_dir = NULL;
    v->exports = calloc(m->export_count + 1, sizeof(*v->exports));
    v->deps = calloc(m->dependencies.count + 1, sizeof(char *));
    if (!v->manifest_json || !v->cache_dir || !v->exports || !v->deps) {
        vstate_free(v);
        return NULL;
    }
    for (size_t i = 0; i < m->export_count; i++)
        v->exports[i] = (par_loader_export_t){m->exports[i].name, m->exports[i].entrypoint};
    for (size_t i = 0; i < m->dependencies.count; i++)
        v->deps[i] = m->dependencies.items[i];
    par_loader_pkg_t *k = &v->pkg;
    k->size = sizeof(*k);
    k->name = name;
    k->version = version;
    k->runtime = m->runtime;
    k->root = root;
    k->manifest_json = v->manifest_json;
    k->manifest_len = strlen(v->manifest_json);
    k->exports = v->exports;
    k->export_count = m->export_count;
    k->dependencies = v->deps;
    k->cache_dir = v->cache_dir;
    k->memory_mb = m->limits.memory_mb;
    k->max_input = (size_t)m->limits.max_input_kb * 1024;
    return v;
}

/* The version as the plugin sees it, with its cache directory made. */
static vstate_t *vstate_new(par_plug_t *p, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    const par_manifest_t *m = pv->manifest;
    vstate_t *v = vstate_of(p, pv->name, pv->version, pv->root, m);
    if (v == NULL)
        return NULL;
    char top[4096];
    snprintf(top, sizeof(top), "%s/cache", p->state_dir);
    if (mkdirs(p->state_dir, top, v->cache_dir) != 0)
        par_buf_appendf(err, "runtime: cannot create %s: %s\n", v->cache_dir, strerror(errno));
    par_loader_pkg_t *k = &v->pkg;
    k->memory_mb = m->limits.memory_mb ? m->limits.memory_mb : rt->cfg.default_memory_mb;
    k->cpu_seconds = rt->cfg.worker_cpu_seconds;
    k->max_input =
        m->limits.max_input_kb ? (size_t)m->limits.max_input_kb * 1024 : rt->cfg.max_input_bytes;
    k->max_output = rt->cfg.max_output_bytes;
    return v;
}

/* The plugin's message as lines of `err`; returns how many. */
static int say(par_buf_t *err, const char *msg, const char *fallback)
{
    if (*msg == '\0')
        msg = fallback;
    int lines = 0;
    for (const char *s = msg; *s;) {
        size_t l = strcspn(s, "\n");
        if (l)
            par_buf_appendf(err, "%.*s\n", (int)l, s), lines++;
        s += l + (s[l] == '\n');
    }
    return lines ? lines : 1;
}

/* A status from a plugin: one of par.h's error statuses, else incompatible. */
static int plugin_status(int rc)
{
    return rc > 0 && rc < PAR_STATUS_COUNT ? rc : PAR_E_INCOMPATIBLE;
}

/* ---- the loader -------------------------------------------------------------------- */

static int serves(const par_loader_impl_t *l, const char *runtime)
{
    const par_plug_t *p = l->data;
    for (size_t i = 0; p->loader.runtimes[i]; i++)
        if (strcmp(p->loader.runtimes[i], runtime) == 0)
            return 1;
    return 0;
}

/* The plugin's validate on `v`: the number of problems it wrote into err. */
static int validate(par_plug_t *p, vstate_t *v, par_buf_t *err)
{
    if (p->loader.validate == NULL)
        return 0;
    char msg[4096] = "";
    int rc = p->loader.validate(p->state, &v->pkg, msg, sizeof(msg));
    msg[sizeof(msg) - 1] = '\0';
    return rc == 0 ? 0 : say(err, msg, "the package is refused by its loader");
}

static int check(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    par_plug_t *p = l->data;
    vstate_t *v = vstate_new(p, rt, pv, err);
    if (v == NULL) {
        par_buf_appends(err, "runtime: cannot read agent.yaml for the loader (out of memory?)\n");
        return 1;
    }
    pv->loader_state = v;
    return validate(p, v, err);
}

static int prepare(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    (void)rt;
    par_plug_t *p = l->data;
    vstate_t *v = pv->loader_state;
    if (p->loader.prepare == NULL)
        return PAR_OK;
    char msg[4096] = "";
    int rc = p->loader.prepare(p->state, &v->pkg, msg, sizeof(msg));
    msg[sizeof(msg) - 1] = '\0';
    if (rc == 0)
        return PAR_OK;
    say(err, msg, "the loader could not prepare the package");
    return plugin_status(rc);
}

static int command(const par_loader_impl_t *l, par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    (void)rt;
    par_plug_t *p = l->data;
    vstate_t *v = pv->loader_state;
    par_loader_cmd_t c = {PAR_STRVEC_INIT, PAR_STRVEC_INIT, PAR_STRVEC_INIT, 0};
    char msg[4096] = "";
    int rc = p->loader.command(p->state, &v->pkg, &c, msg, sizeof(msg));
    msg[sizeof(msg) - 1] = '\0';
    if (rc == 0 && (c.argv.len == 0 || c.argv.v[0][0] != '/')) {
        snprintf(msg, sizeof(msg), "loader %s gave no program, or not an absolute path", p->name);
        rc = PAR_E_INTERNAL;
    }
    par_loader_cmd_out_t *o = rc == 0 ? calloc(1, sizeof(*o)) : NULL;
    if (rc == 0 && o == NULL)
        rc = PAR_E_NO_MEMORY;
    if (o) {
        o->own_memory_limit = (c.flags & PAR_LOADER_CMD_OWN_MEMORY_LIMIT) != 0;
        o->argv = par_strvec_steal(&c.argv);
        o->env = c.env.len ? par_strvec_steal(&c.env) : NULL;
        o->ro = c.ro.len ? par_strvec_steal(&c.ro) : NULL;
        if (o->argv == NULL || c.env.failed || c.ro.failed)
            rc = PAR_E_NO_MEMORY;
    }
    par_strvec_free(&c.argv);
    par_strvec_free(&c.env);
    par_strvec_free(&c.ro);
    if (rc != 0) {
        par__loader_cmd_free(o);
        say(err, msg, "the loader gave no worker command");
        return plugin_status(rc);
    }
    pv->loader_cmd = o;
    return PAR_OK;
}

static void release(const par_loader_impl_t *l, par_pkgver_t *pv)
{
    par_plug_t *p = l->data;
    vstate_t *v = pv->loader_state;
    if (v && p->loader.release)
        p->loader.release(p->state, &v->pkg);
    vstate_free(v);
    pv->loader_state = NULL;
}

int par__plug_loader_attach(par_plug_t *p, par_runtime_t *rt, par_buf_t *err)
{
    char *label = NULL;
    par_buf_t names;
    par_buf_init(&names, 0);
    for (size_t i = 0; p->loader.runtimes[i]; i++)
        par_buf_appendf(&names, "%s%s", i ? ", " : "", p->loader.runtimes[i]);
    par_buf_append(&names, "", 1); /* kept as a C string */
    if (names.data == NULL || asprintf(&label, "plugin:%s", p->name) < 0) {
        par_buf_free(&names);
        return PAR_E_NO_MEMORY;
    }
    par_loader_impl_t *l = &p->loader_impl;
    l->name = label;
    l->runtimes = names.data; /* both kept for the plugin's life (freed with it) */
    l->values = p->loader.runtimes;
    l->serves = serves;
    l->check = check;
    l->prepare = prepare;
    l->command = command;
    l->release = release;
    l->data = p;
    par_buf_t why;
    par_buf_init(&why, 0);
    int rc = par__loaders_add(rt, l, p->loader.runtimes, &why);
    if (rc != PAR_OK)
        par_buf_appendf(err, "plugin %s: its loader cannot be registered: %.*s", p->name,
                        (int)why.len, why.data ? why.data : par_strerror(rc));
    par_buf_free(&why);
    return rc;
}

int par_plugins_check_package(par_plugins_t *ps, const char *root, const par_manifest_t *m,
                              par_buf_t *err)
{
    for (size_t i = 0; ps && i < ps->count; i++) {
        par_plug_t *p = ps->items[i];
        if (p->tab.loader == NULL || !serves(&(par_loader_impl_t){.data = p}, m->runtime))
            continue;
        vstate_t *v = vstate_of(p, m->name, m->package_version, root, m);
        if (v == NULL) {
            par_buf_appends(err,
                            "runtime: cannot read agent.yaml for the loader (out of memory?)\n");
            return 1;
        }
        int problems = validate(p, v, err);
        vstate_free(v);
        return problems;
    }
    return -1;
}
