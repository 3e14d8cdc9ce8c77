/*
 * runtime/persist.c — the deployed set across restarts: state_dir/deployed.json.
 *
 * Owns the file's format ({"format": 1, "packages": [{name, version, sha256,
 * source, origin, signer}]}): par__runtime_persist writes the active versions
 * that came from an archive (write, fsync, rename) after every change of the
 * set; par__runtime_recover redeploys them from the verified cache at start,
 * without fetching. Called by the runtime (any thread that changed the set)
 * and by `par serve` before it serves; never from an event loop (recover
 * deploys, which blocks).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obs/log.h"
#include "runtime/runtime.h"

void par__runtime_persist(par_runtime_t *rt)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->npkgs; i++) {
        par_pkgver_t *pv = rt->pkgs[i];
        if (atomic_load(&pv->state) != PAR_PKG_ACTIVE || pv->sha256[0] == '\0')
            continue; /* directories are not in the cache: nothing to restore from */
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", pv->name,
                                        "version", pv->version, "sha256", pv->sha256, "source",
                                        pv->source ? pv->source : "", "origin",
                                        pv->origin ? pv->origin : "api", "signer", pv->signer));
    }
    pthread_mutex_unlock(&rt->lock);
    json_t *doc = arr ? json_pack("{s:i, s:o}", "format", 1, "packages", arr) : NULL;
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/deployed.json", rt->state_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    char *text = json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    FILE *f = text ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f)
        ok &= fclose(f) == 0;
    free(text);
    if (!ok || rename(tmp, path) != 0)
        par_log_msg(PAR_LOG_ERROR, "cannot write %s: %s", path, strerror(errno));
}

int par__runtime_recover(par_runtime_t *rt)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/deployed.json", rt->state_dir);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (doc == NULL) {
        if (access(path, F_OK) == 0) /* else: first start, or nothing deployed */
            par_log_msg(PAR_LOG_ERROR,
                        "cannot read %s (line %d: %s): no package is restored "
                        "from the cache; the packages folder and the registry index still deploy",
                        path, jerr.line, jerr.text);
        return 0;
    }
    size_t i;
    json_t *e;
    int restored = 0;
    json_array_foreach(json_object_get(doc, "packages"), i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        const char *source = json_string_value(json_object_get(e, "source"));
        const char *origin = json_string_value(json_object_get(e, "origin"));
        const char *signer = json_string_value(json_object_get(e, "signer"));
        if (name == NULL || sha == NULL || strlen(sha) != 64 ||
            strspn(sha, "0123456789abcdef") != 64)
            continue;
        char dir[PATH_MAX + 80], marker[PATH_MAX + 96];
        snprintf(dir, sizeof(dir), "%s/%s", rt->cache_dir, sha);
        snprintf(marker, sizeof(marker), "%s.complete", dir);
        par_buf_t err;
        par_buf_init(&err, 0);
        int rc;
        if (access(marker, F_OK) == 0) {
            par_deploy_req_t req = {.restored_dir = dir,
                                    .restored_source = source,
                                    .restored_signer = signer,
                                    .sha256 = sha,
                                    .origin = origin ? origin : "restored"};
            rc = par__deploy(rt, &req, &err, NULL);
        } else {
            par_buf_appendf(&err, "%s: not in the cache", sha);
            rc = PAR_E_NOT_FOUND;
        }
        if (rc == PAR_OK)
            restored++;
        else
            par_log_msg(PAR_LOG_ERROR, "cannot restore %s (%s): %.*s", name, sha, (int)err.len,
                        err.data ? err.data : "");
        par_buf_free(&err);
    }
    json_decref(doc);
    return restored;
}
