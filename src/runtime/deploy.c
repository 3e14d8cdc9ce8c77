/*
 * runtime/deploy.c — from a request to an active package version.
 *
 * par__deploy runs the phases of deploy.h over one par_deploy_ctx_t, each
 * timed: acquire (deploy_acquire.c: read the .apkg, or download it, with its
 * SHA-256 and BLAKE2b-512 computed in the same pass), verify (the expected
 * digest and the minisign signature against the trusted keys), manifest
 * (agent.yaml; the key's package-name pin), extract (into the
 * content-addressed cache, skipped when that digest is already there and
 * complete), compat and activate (workers or in-process dlopen). Then
 * publish: the routing table switches atomically. Nothing is extracted
 * before it is verified, and the cache marker is written only after both.
 * A refused deploy is logged and listed (a failure record) unless a version
 * of that name is active, which then carries the error.
 * Blocking; called from the CLI, the embedding API, a management thread, the
 * folder watcher or the index poller (runtime/converge*.c), never from an
 * event loop. Serialised by rt->deploy_lock.
 */
#include "runtime/deploy.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader/python.h"
#include "loader/supervisor.h"
#include "obs/log.h"
#include "pkg/compat.h"
#include "pkg/manifest.h"
#include "runtime/loaders.h"
#include "runtime/native.h"

static double ms_since(int64_t t0)
{
    return (double)(par__now_ns() - t0) / 1e6;
}

static int is_trusted(par_runtime_t *rt, const char *name)
{
    for (size_t i = 0; rt->trusted && rt->trusted[i]; i++)
        if (strcmp(rt->trusted[i], name) == 0 || strcmp(rt->trusted[i], "*") == 0)
            return 1;
    return 0;
}

int par__deploy_sig_prehashed(const par_buf_t *sig)
{
    par_ms_sig_t s;
    par_buf_t e;
    par_buf_init(&e, 0);
    int pre = par_ms_sig_parse(sig->data ? sig->data : "", sig->len, &s, &e) == PAR_OK;
    if (pre) {
        pre = s.prehashed;
        par_ms_sig_free(&s);
    }
    par_buf_free(&e);
    return pre;
}

/* ---- the context ------------------------------------------------------------------- */

int par__deploy_ctx_init(par_deploy_ctx_t *c, par_runtime_t *rt, const par_deploy_req_t *req,
                         par_buf_t *err)
{
    memset(c, 0, sizeof(*c));
    c->rt = rt, c->req = req, c->err = err, c->t0 = par__now_ns();
    c->path = req->restored_dir ? req->restored_dir : req->url ? req->url : req->path;
    if (c->path == NULL)
        c->path = "";
    par_buf_init(&c->yaml, 0);
    par_buf_init(&c->sig, 64 * 1024);
    par_buf_init(&c->side, 64 * 1024);
    par_buf_init(&c->fr.body, 0);
    par_pkgver_t *pv = calloc(1, sizeof(*pv));
    if (pv == NULL)
        return PAR_E_NO_MEMORY;
    atomic_init(&pv->refs, 1);
    atomic_init(&pv->state, PAR_PKG_LOADING);
    pv->rt = rt;
    pv->source = strdup(req->restored_source ? req->restored_source : c->path);
    pv->origin = strdup(req->origin ? req->origin : "api");
    if (req->signature_url)
        pv->signature_url = strdup(req->signature_url);
    if (req->restored_signer)
        snprintf(pv->signer, sizeof(pv->signer), "%s", req->restored_signer);
    if (!pv->source || !pv->origin || (req->signature_url && !pv->signature_url)) {
        par__pkgver_unref(pv);
        return PAR_E_NO_MEMORY;
    }
    c->pv = pv;
    return PAR_OK;
}

void par__deploy_ctx_free(par_deploy_ctx_t *c)
{
    if (c->pv)
        par__pkgver_unref(c->pv);
    c->pv = NULL;
    par_archive_bytes_free(&c->a);
    par_fetch_result_free(&c->fr);
    par_buf_free(&c->yaml);
    par_buf_free(&c->sig);
    par_buf_free(&c->side);
}

/* ---- verify ------------------------------------------------------------------------ */

/* No signature: refused unless the configuration allows unsigned packages. */
static int verify_unsigned(par_deploy_ctx_t *c)
{
    par_runtime_t *rt = c->rt;
    if (rt->cfg.allow_unsigned) {
        if (c->pv->sha256[0])
            par_log_msg(PAR_LOG_WARN,
                        "%s: deploying an UNSIGNED package (signatures are not "
                        "required by this configuration)",
                        c->path);
        return PAR_OK;
    }
    if (c->pv->sha256[0] == '\0')
        par_buf_appendf(c->err,
                        "%s: an unpacked directory carries no signature; deploy its signed "
                        ".apkg (or allow unsigned packages)\n",
                        c->path);
    else
        par_buf_appendf(c->err,
                        "%s: no signature (%s.minisig) and unsigned packages are refused; "
                        "sign it with `par sign` or `minisign -S`\n",
                        c->path, c->req->signature_url ? c->req->signature_url : c->path);
    return PAR_E_SIGNATURE_MISSING;
}

int par__deploy_verify(par_deploy_ctx_t *c)
{
    assert(c && c->pv);
    par_pkgver_t *pv = c->pv;
    int64_t tv = par__now_ns();
    int rc = PAR_OK;
    if (c->req->restored_dir) /* verified when it was first deployed */
        goto out;
    if (c->expected[0] && pv->sha256[0] && strcmp(c->expected, pv->sha256) != 0) {
        par_buf_appendf(c->err, "%s: SHA-256 mismatch: expected %s, got %s\n", c->path, c->expected,
                        pv->sha256);
        return PAR_E_DIGEST_MISMATCH;
    }
    c->bytes_verified = c->expected[0] && pv->sha256[0];
    if (!c->have_sig) {
        rc = verify_unsigned(c);
        goto out;
    }
    if (!c->have_b2 && c->a.data && par__deploy_sig_prehashed(&c->sig)) {
        par_ms_hash_t h;
        par_ms_hash_init(&h);
        par_ms_hash_update(&h, c->a.data, c->a.len);
        par_ms_hash_final(&h, c->b2);
        c->have_b2 = 1;
    }
    rc = par_trust_verify(&c->rt->trust, c->sig.data, c->sig.len, c->a.data, c->a.len,
                          c->have_b2 ? c->b2 : NULL, pv->signer, c->err);
    if (rc != PAR_OK) {
        par_buf_appendf(c->err, "%s: the signature does not vouch for these bytes\n", c->path);
        return rc;
    }
    c->bytes_verified = 1;
out:
    pv->t_verify_ms = ms_since(tv);
    return rc;
}

/* ---- manifest ---------------------------------------------------------------------- */

int par__deploy_manifest(par_deploy_ctx_t *c)
{
    assert(c && c->pv && c->pv->manifest == NULL);
    par_pkgver_t *pv = c->pv;
    int rc;
    if (c->yaml.len == 0 && c->a.data) {
        rc = par_archive_read_member(&c->a, "agent.yaml", PAR_MANIFEST_MAX_BYTES, &c->yaml, c->err);
        if (rc == PAR_E_NOT_FOUND)
            par_buf_appendf(c->err, "%s: no agent.yaml at the archive root\n", c->path);
        if (rc != PAR_OK) /* a structural refusal keeps its name */
            return rc == PAR_E_BAD_ARCHIVE || rc == PAR_E_NO_MEMORY ? rc : PAR_E_INVALID_PACKAGE;
    }
    par_buf_t merr;
    par_buf_init(&merr, 0);
    rc = par_manifest_parse(c->yaml.data ? c->yaml.data : "", c->yaml.len, &pv->manifest, &merr);
    if (merr.len)
        par_buf_append(c->err, merr.data, merr.len);
    par_buf_free(&merr);
    if (rc != PAR_OK)
        return rc == PAR_E_NO_MEMORY ? rc : PAR_E_INVALID_PACKAGE;
    par_manifest_t *m = pv->manifest;
    pv->name = strdup(m->name);
    pv->version = strdup(m->package_version);
    if (pv->name == NULL || pv->version == NULL)
        return PAR_E_NO_MEMORY;
    for (size_t i = 0; i < m->warnings.count; i++)
        par_log_msg(PAR_LOG_WARN, "%s", m->warnings.items[i]);
    if (c->req->restored_dir)
        return PAR_OK;
    return par_trust_check_name(&c->rt->trust, pv->signer, pv->name, c->err);
}

/* ---- extract ----------------------------------------------------------------------- */

int par__deploy_extract(par_deploy_ctx_t *c)
{
    par_pkgver_t *pv = c->pv;
    if (pv->root == NULL) {
        assert(c->a.data != NULL);
        int64_t t1 = par__now_ns();
        par_archive_limits_t lim;
        par_archive_limits_default(&lim);
        lim.bytes_verified = c->bytes_verified;
        par_cache_info_t info;
        memset(&info, 0, sizeof(info));
        memcpy(info.blake2b, c->b2, 64);
        info.has_blake2b = c->have_b2;
        memcpy(info.signer, pv->signer, sizeof(info.signer));
        int rc = par_cache_insert(c->rt->cache_dir, &c->a, &lim, &info, &pv->root, c->err);
        if (rc != PAR_OK)
            return rc;
        pv->t_extract_ms = ms_since(t1);
    } else if (c->cached && pv->signer[0] && strcmp(c->ci.signer, pv->signer) != 0) {
        /* record the signer of this deploy in the marker */
        par_cache_info_t info = c->ci;
        memcpy(info.signer, pv->signer, sizeof(info.signer));
        char *root = NULL;
        par_archive_bytes_t none = {0};
        memcpy(none.sha256, pv->sha256, sizeof(none.sha256));
        if (par_cache_insert(c->rt->cache_dir, &none, NULL, &info, &root, c->err) == PAR_OK)
            free(root);
    }
    par_archive_bytes_free(&c->a);
    return PAR_OK;
}

/* ---- compat ------------------------------------------------------------------------ */

/* Every reason, not just the first (pkg/compat.c, shared with `par pack` and
 * `par inspect`); then the limits this version runs with. */
int par__deploy_compat(par_deploy_ctx_t *c)
{
    par_runtime_t *rt = c->rt;
    par_pkgver_t *pv = c->pv;
    par_manifest_t *m = pv->manifest;
    assert(m != NULL && pv->root != NULL);
    c->t_compat = par__now_ns();
    int problems = par_pkg_compat_common(pv->root, m, c->err);
    const par_loader_impl_t *l = pv->loader = par__loaders_find(rt, m->runtime);
    if (l == NULL) {
        par__loaders_refuse(rt, m->runtime, c->err);
        problems++;
    } else if (l->check) {
        problems += l->check(l, rt, pv, c->err);
    }
    if (l && problems == 0) {
        /* last: it may build a virtual environment or install dependencies,
         * worth it only for an otherwise deployable package */
        int rc = l->prepare ? l->prepare(l, rt, pv, c->err) : PAR_OK;
        if (rc == PAR_OK && l->command)
            rc = l->command(l, rt, pv, c->err);
        if (rc != PAR_OK)
            return rc;
    }
    if (problems)
        return PAR_E_INCOMPATIBLE;
    pv->timeout_ms = m->limits.timeout_ms ? m->limits.timeout_ms : rt->cfg.default_timeout_ms;
    if (pv->timeout_ms > rt->cfg.max_timeout_ms)
        pv->timeout_ms = rt->cfg.max_timeout_ms;
    pv->max_input =
        m->limits.max_input_kb ? (size_t)m->limits.max_input_kb * 1024 : rt->cfg.max_input_bytes;
    pv->metrics = calloc(m->export_count ? m->export_count : 1, sizeof(*pv->metrics));
    if (pv->metrics == NULL)
        return PAR_E_NO_MEMORY;
    pv->isolation = is_trusted(rt, pv->name) ? PAR_ISOLATION_IN_PROCESS : rt->cfg.isolation;
    if (!l->in_process_ok && pv->isolation == PAR_ISOLATION_IN_PROCESS) {
        /* no interpreter lives in the runtime's process */
        par_log_msg(PAR_LOG_WARN,
                    "package %s is a %s package: it runs in worker processes (in-process "
                    "isolation applies to native packages only)",
                    pv->name, l->runtimes);
        pv->isolation = PAR_ISOLATION_WORKER;
    }
    return PAR_OK;
}

/* ---- activate ---------------------------------------------------------------------- */

static int in_use(void *ud, const char *sha256)
{
    par_runtime_t *rt = ud;
    int used = 0;
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->npkgs && !used; i++)
        used = strcmp(rt->pkgs[i]->sha256, sha256) == 0 &&
               atomic_load(&rt->pkgs[i]->state) != PAR_PKG_FAILED;
    pthread_mutex_unlock(&rt->lock);
    return used;
}

static void log_active(const par_pkgver_t *pv)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "package active")) {
        par_log_str(&l, "package", pv->name);
        par_log_str(&l, "version", pv->version);
        par_log_str(&l, "sha256", pv->sha256);
        par_log_str(&l, "signer", pv->signer[0] ? pv->signer : "unsigned");
        par_log_str(&l, "origin", pv->origin);
        par_log_str(&l, "isolation",
                    pv->isolation == PAR_ISOLATION_IN_PROCESS ? "in-process" : "worker");
        par_log_int(&l, "exports", (int64_t)pv->manifest->export_count);
        par_log_double(&l, "fetch_ms", pv->t_read_ms);
        par_log_double(&l, "verify_ms", pv->t_verify_ms);
        par_log_double(&l, "extract_ms", pv->t_extract_ms);
        par_log_double(&l, "load_ms", pv->t_load_ms);
        par_log_end(&l);
    }
}

/* Loads and publishes; on success the routing table holds the version and
 * ctx->pv is one more reference (handed to par__deploy's caller or dropped). */
int par__deploy_activate(par_deploy_ctx_t *c)
{
    par_runtime_t *rt = c->rt;
    par_pkgver_t *pv = c->pv;
    assert(pv && pv->manifest && atomic_load(&pv->state) == PAR_PKG_LOADING);
    int rc = pv->isolation == PAR_ISOLATION_IN_PROCESS ? par__native_load(pv, c->err)
                                                       : par__workers_start(rt, pv, c->err);
    if (rc != PAR_OK)
        return rc;
    pv->t_load_ms = ms_since(c->t_compat);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pv->loaded_at_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    atomic_store(&pv->state, PAR_PKG_ACTIVE);
    par_metrics_load(pv->t_read_ms / 1e3, pv->t_verify_ms / 1e3, pv->t_extract_ms / 1e3,
                     pv->t_load_ms / 1e3);
    par__pkgver_ref(pv); /* the context keeps one for the caller; publish takes the other */
    par__runtime_publish(rt, pv);
    if (rt->cfg.cache_max_bytes)
        par_cache_evict(rt->cache_dir, rt->cfg.cache_max_bytes, in_use, rt);
    log_active(pv);
    return PAR_OK;
}

/* ---- failure ----------------------------------------------------------------------- */

static void record_failure(par_deploy_ctx_t *c, int status)
{
    par_runtime_t *rt = c->rt;
    par_pkgver_t *pv = c->pv;
    c->pv = NULL; /* published or dropped below */
    pv->last_status = status;
    if (pv->name == NULL) {
        /* nothing to name it by: derive from the file name */
        const char *base = strrchr(c->path, '/');
        free(pv->version);
        pv->name = strdup(base ? base + 1 : c->path);
        pv->version = strdup("");
    }
    par_buf_t *err = c->err;
    pv->last_error = strndup(err->data ? err->data : "", err->len);
    if (pv->name == NULL || pv->version == NULL || pv->last_error == NULL) {
        par__pkgver_unref(pv); /* out of memory: logged, not listed */
        return;
    }
    atomic_store(&pv->state, PAR_PKG_FAILED);
    /* keep a failure record only when no version of that name is active */
    par_pkgver_t **pk;
    size_t n;
    int active = 0;
    if (par__packages_snapshot(rt, &pk, &n) == PAR_OK) {
        for (size_t i = 0; i < n; i++) {
            char *copy;
            if (strcmp(pk[i]->name, pv->name) == 0 &&
                atomic_load(&pk[i]->state) == PAR_PKG_ACTIVE &&
                (copy = strdup(pv->last_error)) != NULL) {
                free(pk[i]->last_error);
                pk[i]->last_error = copy;
                pk[i]->last_status = status;
                active = 1;
            }
            par__pkgver_unref(pk[i]);
        }
        free(pk);
    }
    if (active)
        par__pkgver_unref(pv);
    else
        par__runtime_publish(rt, pv);
}

static void log_refused(par_deploy_ctx_t *c, int rc)
{
    par_logline_t fl;
    if (par_log_begin(&fl, PAR_LOG_ERROR, "package refused")) {
        par_log_str(&fl, "source", c->path);
        par_log_str(&fl, "error", par_status_name(rc));
        par_log_strn(&fl, "reason", c->err->data ? c->err->data : "", c->err->len);
        par_log_end(&fl);
    }
}

/* ---- deploy ------------------------------------------------------------------------ */

int par__deploy_path(par_runtime_t *rt, const char *path, par_buf_t *err, par_pkgver_t **out_pv)
{
    par_deploy_req_t req = {.path = path, .origin = "api"};
    return par__deploy(rt, &req, err, out_pv);
}

int par__deploy_restored(par_runtime_t *rt, const char *path, const char *source,
                         const char *sha256, par_buf_t *err)
{
    par_deploy_req_t req = {
        .restored_dir = path, .restored_source = source, .sha256 = sha256, .origin = "restored"};
    return par__deploy(rt, &req, err, NULL);
}

int par__deploy(par_runtime_t *rt, const par_deploy_req_t *req, par_buf_t *err,
                par_pkgver_t **out_pv)
{
    static int (*const phases[])(par_deploy_ctx_t *) = {
        par__deploy_acquire, par__deploy_verify, par__deploy_manifest,
        par__deploy_extract, par__deploy_compat, par__deploy_activate,
    };
    par_deploy_ctx_t c;
    int rc = par__deploy_ctx_init(&c, rt, req, err);
    if (rc != PAR_OK) {
        par__deploy_ctx_free(&c);
        return rc;
    }
    pthread_mutex_lock(&rt->deploy_lock);
    for (size_t i = 0; rc == PAR_OK && i < sizeof(phases) / sizeof(phases[0]); i++)
        rc = phases[i](&c);
    if (rc != PAR_OK) {
        log_refused(&c, rc);
        record_failure(&c, rc);
    } else if (out_pv) {
        *out_pv = c.pv; /* activate's extra reference */
        c.pv = NULL;
    }
    pthread_mutex_unlock(&rt->deploy_lock);
    par__deploy_ctx_free(&c);
    return rc;
}
