/*
 * auth/registry.c — providers by name (see auth.h): the built-in OIDC and
 * API-key providers are the registry's first entries, and a plugin's
 * provider is added beside them as "plugin:<name>", so auth.mode selects
 * every provider the same way. Built and read on the main thread at start;
 * nothing here runs per request.
 */
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "auth/apikey.h"
#include "auth/auth.h"
#include "auth/oidc.h"

typedef struct entry {
    char *name;
    par_auth_factory_fn fn;
    void *data;
} entry_t;

struct par_auth_registry {
    entry_t *items;
    size_t count;
};

static int oidc_factory(void *data, par_auth_config_t *cfg, par_auth_provider_t **out,
                        par_buf_t *err)
{
    (void)data;
    return par_oidc_provider_new(cfg, out, err);
}

static int apikey_factory(void *data, par_auth_config_t *cfg, par_auth_provider_t **out,
                          par_buf_t *err)
{
    (void)data;
    return par_apikey_provider_new(cfg, out, err);
}

int par_auth_registry_new(par_auth_registry_t **out)
{
    par_auth_registry_t *r = calloc(1, sizeof(*r));
    if (r == NULL || par_auth_registry_add(r, "oidc", oidc_factory, NULL) != PAR_OK ||
        par_auth_registry_add(r, "api_key", apikey_factory, NULL) != PAR_OK) {
        par_auth_registry_free(r);
        return PAR_E_NO_MEMORY;
    }
    *out = r;
    return PAR_OK;
}

void par_auth_registry_free(par_auth_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        free(r->items[i].name);
    free(r->items);
    free(r);
}

static const entry_t *find(const par_auth_registry_t *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->items[i].name, name) == 0)
            return &r->items[i];
    return NULL;
}

int par_auth_registry_add(par_auth_registry_t *r, const char *name, par_auth_factory_fn fn,
                          void *data)
{
    if (find(r, name))
        return PAR_E_CONFLICT;
    entry_t *items = realloc(r->items, (r->count + 1) * sizeof(*items));
    if (items == NULL)
        return PAR_E_NO_MEMORY;
    r->items = items;
    char *copy = strdup(name);
    if (copy == NULL)
        return PAR_E_NO_MEMORY;
    r->items[r->count++] = (entry_t){copy, fn, data};
    return PAR_OK;
}

void par_auth_registry_names(const par_auth_registry_t *r, par_buf_t *out)
{
    for (size_t i = 0; i < r->count; i++)
        par_buf_appendf(out, "%s%s", i ? ", " : "", r->items[i].name);
}

/* The provider auth.mode names, built from `cfg`. */
int par__auth_registry_build(const par_auth_registry_t *r, par_auth_config_t *cfg,
                             par_auth_provider_t **out, par_buf_t *err);
int par__auth_registry_build(const par_auth_registry_t *r, par_auth_config_t *cfg,
                             par_auth_provider_t **out, par_buf_t *err)
{
    char name[300];
    if (cfg->mode == PAR_AUTH_PLUGIN)
        snprintf(name, sizeof(name), "plugin:%s", cfg->plugin ? cfg->plugin : "");
    else
        snprintf(name, sizeof(name), "%s", par_auth_mode_name(cfg->mode));
    const entry_t *e = find(r, name);
    if (e == NULL) {
        par_buf_appendf(err, "auth.mode: no auth provider named '%s' (registered: ", name);
        par_auth_registry_names(r, err);
        par_buf_appends(err, cfg->mode == PAR_AUTH_PLUGIN
                                 ? "; a plugin's provider is listed once its plugin is loaded "
                                   "from `plugins`)"
                                 : ")");
        return PAR_E_INVALID_ARGUMENT;
    }
    return e->fn(e->data, cfg, out, err);
}
