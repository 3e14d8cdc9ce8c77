/*
 * runtime/embed_admin.c — package management for host programs (par/par.h):
 * deploy returning the package record, remove, the package listing as JSON,
 * a folder deployed at start, and the metrics text.
 *
 * A package record is the object GET /runtime/packages lists (name, version,
 * state, digest, source, errors, manifest, timings, signer, origin, workers
 * or sandbox), so a host sees what an operator sees over HTTP.
 *
 * Callers: host programs, any thread; deploys block their caller. Owns no
 * state; never runs agent code.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/converge.h"
#include "runtime/io.h"
#include "runtime/metrics.h"
#include "runtime/runtime.h"

/* The manifest's part of a record: exports, warnings, limits. */
static void manifest_json(const par_pkgver_t *pv, json_t *o)
{
    const par_manifest_t *m = pv->manifest;
    json_object_set_new(o, "display_name", json_string(m->display_name));
    json_object_set_new(o, "description", json_string(m->description));
    json_object_set_new(o, "runtime", json_string(m->runtime));
    json_object_set_new(
        o, "isolation",
        json_string(pv->isolation == PAR_ISOLATION_IN_PROCESS ? "in-process" : "worker"));
    json_t *calls = m->calls ? json_array() : NULL; /* metadata.par.calls, when declared */
    for (size_t i = 0; calls && m->calls[i]; i++)
        json_array_append_new(calls, json_string(m->calls[i]));
    if (calls)
        json_object_set_new(o, "calls", calls);
    json_t *ex = json_array();
    for (size_t i = 0; ex && i < m->export_count; i++) {
        const par_export_t *e = &m->exports[i];
        char id[PAR_ID_MAX + 1];
        snprintf(id, sizeof(id), "%s%s%s", pv->name, e->name[0] ? "/" : "", e->name);
        json_array_append_new(ex, json_pack("{s:s, s:s, s:b, s:s}", "id", id, "name", e->name,
                                            "public", e->is_public, "entrypoint", e->entrypoint));
    }
    json_object_set_new(o, "exports", ex);
    json_t *warn = json_array();
    for (size_t i = 0; warn && i < m->warnings.count; i++)
        json_array_append_new(warn, json_string(m->warnings.items[i]));
    json_object_set_new(o, "warnings", warn);
    json_object_set_new(o, "limits",
                        json_pack("{s:i, s:I}", "timeout_ms", (int)pv->timeout_ms,
                                  "max_input_bytes", (json_int_t)pv->max_input));
}

json_t *par__package_json(par_pkgver_t *pv)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "name", json_string(pv->name));
    json_object_set_new(o, "version", json_string(pv->version));
    json_object_set_new(o, "state", json_string(par_pkg_state_name(atomic_load(&pv->state))));
    json_object_set_new(o, "sha256", pv->sha256[0] ? json_string(pv->sha256) : json_null());
    json_object_set_new(o, "source", json_string(pv->source ? pv->source : ""));
    json_object_set_new(o, "last_error",
                        pv->last_error ? json_string(pv->last_error) : json_null());
    json_object_set_new(o, "last_error_name",
                        pv->last_status ? json_string(par_status_name(pv->last_status))
                                        : json_null());
    if (pv->manifest)
        manifest_json(pv, o);
    json_object_set_new(o, "timings_ms",
                        json_pack("{s:f, s:f, s:f, s:f}", "fetch", pv->t_read_ms, "verify",
                                  pv->t_verify_ms, "extract", pv->t_extract_ms, "load",
                                  pv->t_load_ms));
    json_object_set_new(o, "signer", pv->signer[0] ? json_string(pv->signer) : json_null());
    json_object_set_new(o, "origin", json_string(pv->origin ? pv->origin : "api"));
    if (!par__runtime_pool_json(pv, o) && pv->isolation == PAR_ISOLATION_IN_PROCESS && pv->manifest)
        json_object_set_new(o, "sandbox",
                            json_pack("{s:b, s:s}", "enabled", 0, "reason", "trusted in-process"));
    return o;
}

/* Serialises and frees `j` into *out (malloc'ed). */
static int dump(json_t *j, char **out, size_t *len)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    *out = s;
    if (len)
        *len = strlen(s);
    return PAR_OK;
}

static int is_url(const char *s)
{
    return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0 ||
           strncmp(s, "s3://", 5) == 0;
}

int par_runtime_deploy(par_runtime_t *rt, const char *source, const char *sha256, char **record,
                       char **err)
{
    if (record)
        *record = NULL;
    if (err)
        *err = NULL;
    par_buf_t e;
    par_buf_init(&e, 0);
    char abs[PATH_MAX];
    par_deploy_req_t req = {.sha256 = sha256, .origin = "embed"};
    if (source == NULL) {
        par_buf_appends(&e, "nothing to deploy: the path or URL is NULL");
    } else if (is_url(source)) {
        req.url = source;
    } else {
        /* the recorded source must not depend on the host's current directory */
        req.path = source[0] != '/' && realpath(source, abs) ? abs : source;
    }
    par_pkgver_t *pv = NULL;
    int rc = source ? par__deploy(rt, &req, &e, &pv) : PAR_E_INVALID_ARGUMENT;
    if (rc == PAR_OK && record)
        rc = dump(par__package_json(pv), record, NULL);
    if (pv)
        par__pkgver_unref(pv);
    if (rc != PAR_OK && err)
        *err = par_buf_steal(&e, NULL);
    par_buf_free(&e);
    return rc;
}

int par_runtime_remove(par_runtime_t *rt, const char *name, const char *version)
{
    if (name == NULL)
        return PAR_E_INVALID_ARGUMENT;
    return par__runtime_remove(rt, name, version);
}

int par_runtime_packages(par_runtime_t *rt, char **out, size_t *len)
{
    par_pkgver_t **pk;
    size_t n;
    if (par__packages_snapshot(rt, &pk, &n) != PAR_OK)
        return PAR_E_NO_MEMORY;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *one = a ? par__package_json(pk[i]) : NULL;
        if (one == NULL || json_array_append_new(a, one) != 0) {
            json_decref(a);
            a = NULL;
        }
        par__pkgver_unref(pk[i]);
    }
    free(pk);
    return dump(a, out, len);
}

int par_runtime_metrics(par_runtime_t *rt, char **text, size_t *len)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    int rc = par__runtime_render_metrics(rt, &b);
    if (rc == PAR_OK && (*text = par_buf_steal(&b, len)) == NULL)
        rc = PAR_E_NO_MEMORY;
    par_buf_free(&b);
    return rc;
}

int par_runtime_deploy_dir(par_runtime_t *rt, const char *dir)
{
    char abs[PATH_MAX];
    if (dir == NULL || realpath(dir, abs) == NULL)
        return PAR_E_NOT_FOUND;
    par__folder_deploy_all(rt, abs);
    return PAR_OK;
}
