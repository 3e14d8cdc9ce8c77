/*
 * runtime/deploy.c — from a path to an active package version.
 *
 * Phases (each timed): fetch (read the .apkg, or download it, with its
 * SHA-256 and BLAKE2b-512 computed in the same pass), verify (the expected
 * digest and the minisign signature against the trusted keys; the key's
 * package-name pins once agent.yaml names the package), extract (into the
 * content-addressed cache, skipped when that digest is already there and
 * complete), load (compatibility, workers or in-process dlopen). Then
 * publish: the routing table switches atomically. Nothing is extracted
 * before it is verified, and the cache marker is written only after both.
 * A URL whose digest is known and already cached is not downloaded again:
 * only its signature is fetched and checked against the BLAKE2b-512 the
 * marker recorded.
 * Blocking; called from the CLI, the embedding API, a management thread or
 * the index poller, never from an event loop. Serialised by rt->deploy_lock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/python.h"
#include "loader/supervisor.h"
#include "obs/log.h"
#include "pkg/archive.h"
#include "pkg/compat.h"
#include "pkg/manifest.h"
#include "registry/cache.h"
#include "registry/fetch.h"
#include "runtime/loaders.h"
#include "runtime/native.h"
#include "runtime/runtime.h"

static double ms_since(int64_t t0)
{
    return (double)(par__now_ns() - t0) / 1e6;
}

static int read_file(const char *path, size_t cap, par_buf_t *out, par_buf_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
        return errno == ENOENT ? PAR_E_INVALID_PACKAGE : PAR_E_IO;
    }
    par_buf_init(out, cap);
    char buf[8192];
    ssize_t r;
    int rc = PAR_OK;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        if ((rc = par_buf_append(out, buf, (size_t)r)) != PAR_OK)
            break;
    close(fd);
    if (rc == PAR_E_TOO_LARGE) {
        par_buf_appendf(err, "%s: larger than %zu bytes\n", path, cap);
        return PAR_E_INVALID_PACKAGE;
    }
    return rc;
}

static int is_trusted(par_runtime_t *rt, const char *name)
{
    for (size_t i = 0; rt->trusted && rt->trusted[i]; i++)
        if (strcmp(rt->trusted[i], name) == 0 || strcmp(rt->trusted[i], "*") == 0)
            return 1;
    return 0;
}

static void record_failure(par_runtime_t *rt, par_pkgver_t *pv, const char *path, par_buf_t *err,
                           int status)
{
    pv->last_status = status;
    if (pv->name == NULL) {
        /* nothing to name it by: derive from the file name */
        const char *base = strrchr(path, '/');
        pv->name = strdup(base ? base + 1 : path);
        pv->version = strdup("");
    }
    pv->last_error = strndup(err->data ? err->data : "", err->len);
    atomic_store(&pv->state, PAR_PKG_FAILED);
    /* keep a failure record only when no version of that name is active */
    par_pkgver_t **pk;
    size_t n;
    int active = 0;
    if (par__packages_snapshot(rt, &pk, &n) == PAR_OK) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(pk[i]->name, pv->name) == 0 &&
                atomic_load(&pk[i]->state) == PAR_PKG_ACTIVE) {
                free(pk[i]->last_error);
                pk[i]->last_error = strdup(pv->last_error);
                pk[i]->last_status = status;
                active = 1;
            }
            par__pkgver_unref(pk[i]);
        }
        free(pk);
    }
    if (active) {
        par__pkgver_unref(pv);
    } else {
        par__runtime_publish(rt, pv);
    }
}

/* ---- sources: sibling files and URLs -------------------------------------------- */

/* First 64 hex digits of a `.sha256` file (plain, or `sha256sum` output). */
static int parse_digest_file(const char *text, size_t len, char out[65])
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r'))
        i++;
    if (len - i < 64)
        return -1;
    for (size_t j = 0; j < 64; j++) {
        char c = text[i + j];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        out[j] = c;
    }
    out[64] = '\0';
    if (len - i > 64 && !(text[i + 64] == ' ' || text[i + 64] == '\n' || text[i + 64] == '\t' ||
                          text[i + 64] == '\r'))
        return -1;
    return 0;
}

static int valid_digest(const char *s)
{
    return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static void fetch_opts(par_runtime_t *rt, par_fetch_opts_t *o)
{
    par_fetch_opts_init(o);
    o->ca_file = rt->ca_file;
    if (rt->cfg.fetch_connect_timeout_ms)
        o->connect_timeout_ms = rt->cfg.fetch_connect_timeout_ms;
    if (rt->cfg.fetch_timeout_ms)
        o->timeout_ms = rt->cfg.fetch_timeout_ms;
    if (rt->cfg.max_download_bytes)
        o->max_bytes = rt->cfg.max_download_bytes;
    o->retries = rt->cfg.fetch_retries;
    o->allow_http = rt->cfg.allow_http;
    o->s3_region = rt->s3_region;
    o->s3_endpoint = rt->s3_endpoint;
    o->s3_path_style = rt->cfg.s3_path_style;
}

/* Fetches a small side file (digest, signature). PAR_OK with `out` filled,
 * PAR_E_NOT_FOUND when absent, else the fetch error. */
static int fetch_small(par_runtime_t *rt, const char *url, par_buf_t *out, par_buf_t *err)
{
    par_fetch_opts_t o;
    fetch_opts(rt, &o);
    o.max_bytes = 64 * 1024;
    par_fetch_result_t r;
    int rc = par_fetch(url, &o, &r, err);
    if (rc == PAR_OK)
        par_buf_append(out, r.body.data ? r.body.data : "", r.body.len);
    par_fetch_result_free(&r);
    return rc;
}

/* Reads a small sibling file; PAR_E_NOT_FOUND when absent. */
static int read_sibling(const char *path, const char *suffix, par_buf_t *out, par_buf_t *err)
{
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffix) >= sizeof(p))
        return PAR_E_NOT_FOUND;
    if (access(p, F_OK) != 0)
        return PAR_E_NOT_FOUND;
    par_buf_t tmp;
    int rc = read_file(p, 64 * 1024, &tmp, err);
    if (rc == PAR_OK)
        par_buf_append(out, tmp.data ? tmp.data : "", tmp.len);
    par_buf_free(&tmp);
    return rc;
}

static int sig_prehashed(const par_buf_t *sig)
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

static void log_phase(const char *what, const char *source, const char *detail)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, what)) {
        par_log_str(&l, "source", source);
        if (detail)
            par_log_str(&l, "detail", detail);
        par_log_end(&l);
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
    int64_t t0 = par__now_ns();
    const char *path = req->restored_dir ? req->restored_dir : req->url ? req->url : req->path;
    if (path == NULL)
        path = "";
    par_pkgver_t *pv = calloc(1, sizeof(*pv));
    if (pv == NULL)
        return PAR_E_NO_MEMORY;
    atomic_init(&pv->refs, 1);
    atomic_init(&pv->state, PAR_PKG_LOADING);
    pv->rt = rt;
    pv->source = strdup(req->restored_source ? req->restored_source : path);
    pv->origin = strdup(req->origin ? req->origin : "api");
    if (req->signature_url)
        pv->signature_url = strdup(req->signature_url);
    if (req->restored_signer)
        snprintf(pv->signer, sizeof(pv->signer), "%s", req->restored_signer);
    par_buf_t yaml, sig, side;
    par_buf_init(&yaml, 0);
    par_buf_init(&sig, 64 * 1024);
    par_buf_init(&side, 64 * 1024);
    par_archive_bytes_t a = {0};
    par_fetch_result_t fr;
    memset(&fr, 0, sizeof(fr));
    char expected[65] = "";
    uint8_t b2[64];
    int have_b2 = 0, have_sig = 0, cached = 0;
    par_cache_info_t ci;
    memset(&ci, 0, sizeof(ci));
    int rc;

    pthread_mutex_lock(&rt->deploy_lock);
    if (req->sha256 && *req->sha256) {
        if (!valid_digest(req->sha256)) {
            par_buf_appendf(err, "sha256 must be 64 lowercase hex digits, not '%.80s'\n",
                            req->sha256);
            rc = PAR_E_INVALID_ARGUMENT;
            goto out;
        }
        memcpy(expected, req->sha256, 65);
    }

    /* ---- fetch --------------------------------------------------------------------- */
    struct stat st;
    if (req->restored_dir) {
        char ypath[PATH_MAX + 16];
        pv->root = strdup(req->restored_dir);
        memcpy(pv->sha256, expected, sizeof(pv->sha256));
        snprintf(ypath, sizeof(ypath), "%s/agent.yaml", req->restored_dir);
        if ((rc = read_file(ypath, PAR_MANIFEST_MAX_BYTES, &yaml, err)) != PAR_OK)
            goto out;
        if (par_cache_lookup(rt->cache_dir, expected, &ci) && pv->signer[0] == '\0')
            memcpy(pv->signer, ci.signer, sizeof(pv->signer));
        pv->t_read_ms = ms_since(t0);
    } else if (req->url) {
        par_fetch_opts_t fo;
        fetch_opts(rt, &fo);
        if (!(strncmp(req->url, "https://", 8) == 0 || strncmp(req->url, "s3://", 5) == 0 ||
              (fo.allow_http && strncmp(req->url, "http://", 7) == 0))) {
            par_buf_appendf(err,
                            "%s: unsupported URL; packages come from https:// or "
                            "s3://bucket/key%s\n",
                            req->url, fo.allow_http ? " or http://" : "");
            rc = PAR_E_INVALID_ARGUMENT;
            goto out;
        }
        if (expected[0] == '\0') {
            par_buf_t u;
            par_buf_init(&u, 0);
            par_buf_appendf(&u, "%s.sha256", req->url);
            par_buf_terminate(&u);
            rc = fetch_small(rt, u.data, &side, err);
            par_buf_free(&u);
            if (rc == PAR_OK && parse_digest_file(side.data, side.len, expected) != 0) {
                par_buf_appendf(err, "%s.sha256: does not start with a SHA-256 in hex\n", req->url);
                rc = PAR_E_INVALID_PACKAGE;
            }
            if (rc == PAR_E_NOT_FOUND) {
                par_buf_reset(err);
                rc = PAR_OK;
            }
            if (rc != PAR_OK)
                goto out;
        }
        par_buf_t su;
        par_buf_init(&su, 0);
        if (req->signature_url)
            par_buf_appends(&su, req->signature_url);
        else
            par_buf_appendf(&su, "%s.minisig", req->url);
        par_buf_terminate(&su);
        rc = fetch_small(rt, su.data, &sig, err);
        if (rc == PAR_E_NOT_FOUND && req->signature_url == NULL) {
            par_buf_reset(err);
            rc = PAR_OK;
        } else if (rc == PAR_E_NOT_FOUND) {
            rc = PAR_E_SIGNATURE_MISSING; /* asked for by name and not there */
        } else if (rc == PAR_OK) {
            have_sig = 1;
        }
        par_buf_free(&su);
        if (rc != PAR_OK)
            goto out;
        /* the same digest is never downloaded twice: a prehashed signature is
         * checked against the BLAKE2b-512 the cache recorded */
        if (expected[0] && par_cache_lookup(rt->cache_dir, expected, &ci) &&
            (!have_sig || (ci.has_blake2b && sig_prehashed(&sig)))) {
            cached = 1;
            memcpy(pv->sha256, expected, sizeof(pv->sha256));
            memcpy(b2, ci.blake2b, 64);
            have_b2 = ci.has_blake2b;
            char ypath[PATH_MAX + 80];
            snprintf(ypath, sizeof(ypath), "%s/%s", rt->cache_dir, expected);
            pv->root = strdup(ypath);
            snprintf(ypath, sizeof(ypath), "%s/%s/agent.yaml", rt->cache_dir, expected);
            if ((rc = read_file(ypath, PAR_MANIFEST_MAX_BYTES, &yaml, err)) != PAR_OK)
                goto out;
            log_phase("package already cached: not downloaded", req->url, expected);
        } else {
            rc = par_fetch(req->url, &fo, &fr, err);
            if (rc == PAR_E_NOT_FOUND || rc == PAR_E_INVALID_ARGUMENT)
                rc = PAR_E_FETCH_FAILED;
            if (rc != PAR_OK)
                goto out;
            a.data = (unsigned char *)par_buf_steal(&fr.body, &a.len);
            memcpy(a.sha256, fr.sha256, sizeof(a.sha256));
            memcpy(pv->sha256, a.sha256, sizeof(pv->sha256));
            memcpy(b2, fr.blake2b, 64);
            have_b2 = 1;
        }
        pv->t_read_ms = ms_since(t0);
    } else if (stat(path, &st) != 0) {
        par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
        rc = PAR_E_NOT_FOUND;
        goto out;
    } else if (S_ISDIR(st.st_mode)) {
        char real[PATH_MAX], ypath[PATH_MAX + 16];
        if (realpath(path, real) == NULL) {
            par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
            rc = PAR_E_IO;
            goto out;
        }
        pv->root = strdup(real);
        snprintf(ypath, sizeof(ypath), "%s/agent.yaml", real);
        pv->t_read_ms = ms_since(t0);
        if ((rc = read_file(ypath, PAR_MANIFEST_MAX_BYTES, &yaml, err)) != PAR_OK)
            goto out;
    } else {
        par_archive_limits_t lim;
        par_archive_limits_default(&lim);
        char sigpath[PATH_MAX];
        /* a signature beside the file: hash for it in the same read pass */
        lim.with_blake2b =
            (size_t)snprintf(sigpath, sizeof(sigpath), "%s.minisig", path) < sizeof(sigpath) &&
            access(sigpath, F_OK) == 0;
        if ((rc = par_archive_load(path, &lim, &a, err)) != PAR_OK) {
            if (rc != PAR_E_IO)
                rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        memcpy(pv->sha256, a.sha256, sizeof(pv->sha256));
        if (expected[0] == '\0') {
            rc = read_sibling(path, ".sha256", &side, err);
            if (rc == PAR_OK && parse_digest_file(side.data, side.len, expected) != 0) {
                par_buf_appendf(err, "%s.sha256: does not start with a SHA-256 in hex\n", path);
                rc = PAR_E_INVALID_PACKAGE;
                goto out;
            }
            if (rc != PAR_OK && rc != PAR_E_NOT_FOUND)
                goto out;
        }
        rc = read_sibling(path, ".minisig", &sig, err);
        if (rc == PAR_OK)
            have_sig = 1;
        if (a.has_blake2b) {
            memcpy(b2, a.blake2b, 64);
            have_b2 = 1;
        } else if (rc != PAR_E_NOT_FOUND)
            goto out;
        pv->t_read_ms = ms_since(t0);
    }

    /* ---- verify -------------------------------------------------------------------- */
    int64_t tv = par__now_ns();
    int bytes_verified = 0; /* matched an expected digest or a trusted signature */
    if (!req->restored_dir) {
        if (expected[0] && pv->sha256[0] && strcmp(expected, pv->sha256) != 0) {
            par_buf_appendf(err, "%s: SHA-256 mismatch: expected %s, got %s\n", path, expected,
                            pv->sha256);
            rc = PAR_E_DIGEST_MISMATCH;
            goto out;
        }
        bytes_verified = expected[0] && pv->sha256[0];
        if (have_sig) {
            if (!have_b2 && a.data && sig_prehashed(&sig)) {
                par_ms_hash_t h;
                par_ms_hash_init(&h);
                par_ms_hash_update(&h, a.data, a.len);
                par_ms_hash_final(&h, b2);
                have_b2 = 1;
            }
            rc = par_trust_verify(&rt->trust, sig.data, sig.len, a.data, a.len, have_b2 ? b2 : NULL,
                                  pv->signer, err);
            if (rc != PAR_OK) {
                par_buf_appendf(err, "%s: the signature does not vouch for these bytes\n", path);
                goto out;
            }
            bytes_verified = 1;
        } else if (pv->sha256[0] == '\0' && !rt->cfg.allow_unsigned) {
            par_buf_appendf(err,
                            "%s: an unpacked directory carries no signature; deploy its signed "
                            ".apkg (or allow unsigned packages)\n",
                            path);
            rc = PAR_E_SIGNATURE_MISSING;
            goto out;
        } else if (!rt->cfg.allow_unsigned) {
            par_buf_appendf(err,
                            "%s: no signature (%s.minisig) and unsigned packages are refused; "
                            "sign it with `par sign` or `minisign -S`\n",
                            path, req->signature_url ? req->signature_url : path);
            rc = PAR_E_SIGNATURE_MISSING;
            goto out;
        } else if (pv->sha256[0]) {
            par_log_msg(PAR_LOG_WARN,
                        "%s: deploying an UNSIGNED package (signatures are not "
                        "required by this configuration)",
                        path);
        }
    }
    pv->t_verify_ms = ms_since(tv);

    if (yaml.len == 0 && a.data) {
        rc = par_archive_read_member(&a, "agent.yaml", PAR_MANIFEST_MAX_BYTES, &yaml, err);
        if (rc == PAR_E_NOT_FOUND)
            par_buf_appendf(err, "%s: no agent.yaml at the archive root\n", path);
        if (rc != PAR_OK) {
            if (rc != PAR_E_BAD_ARCHIVE) /* a structural refusal keeps its name */
                rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
    }

    par_buf_t merr;
    par_buf_init(&merr, 0);
    rc = par_manifest_parse(yaml.data ? yaml.data : "", yaml.len, &pv->manifest, &merr);
    if (merr.len)
        par_buf_append(err, merr.data, merr.len);
    par_buf_free(&merr);
    if (rc != PAR_OK) {
        rc = PAR_E_INVALID_PACKAGE;
        goto out;
    }
    par_manifest_t *m = pv->manifest;
    pv->name = strdup(m->name);
    pv->version = strdup(m->package_version);
    for (size_t i = 0; i < m->warnings.count; i++)
        par_log_msg(PAR_LOG_WARN, "%s", m->warnings.items[i]);
    if (!req->restored_dir &&
        (rc = par_trust_check_name(&rt->trust, pv->signer, pv->name, err)) != PAR_OK)
        goto out;

    if (pv->root == NULL) {
        int64_t t1 = par__now_ns();
        par_archive_limits_t lim;
        par_archive_limits_default(&lim);
        lim.bytes_verified = bytes_verified;
        par_cache_info_t info;
        memset(&info, 0, sizeof(info));
        memcpy(info.blake2b, b2, 64);
        info.has_blake2b = have_b2;
        memcpy(info.signer, pv->signer, sizeof(info.signer));
        if ((rc = par_cache_insert(rt->cache_dir, &a, &lim, &info, &pv->root, err)) != PAR_OK)
            goto out;
        pv->t_extract_ms = ms_since(t1);
    } else if (cached && pv->signer[0] && strcmp(ci.signer, pv->signer) != 0) {
        /* record the signer of this deploy in the marker */
        par_cache_info_t info = ci;
        memcpy(info.signer, pv->signer, sizeof(info.signer));
        char *root = NULL;
        par_archive_bytes_t none = {0};
        memcpy(none.sha256, pv->sha256, sizeof(none.sha256));
        if (par_cache_insert(rt->cache_dir, &none, NULL, &info, &root, err) == PAR_OK)
            free(root);
    }
    par_archive_bytes_free(&a);

    /* compatibility: every reason, not just the first (pkg/compat.c, shared with
     * `par pack` and `par inspect`) */
    int64_t t2 = par__now_ns();
    int problems = par_pkg_compat_check(pv->root, m, err);
    if (m->runtime_kind == PAR_RUNTIME_PYTHON && problems == 0) {
        /* last: it may build a virtual environment, worth it only for an
         * otherwise deployable package */
        rc = par__python_prepare(rt, pv, err);
        if (rc != PAR_OK)
            goto out;
    }
    if (problems) {
        rc = PAR_E_INCOMPATIBLE;
        goto out;
    }
    pv->timeout_ms = m->limits.timeout_ms ? m->limits.timeout_ms : rt->cfg.default_timeout_ms;
    if (pv->timeout_ms > rt->cfg.max_timeout_ms)
        pv->timeout_ms = rt->cfg.max_timeout_ms;
    pv->max_input =
        m->limits.max_input_kb ? (size_t)m->limits.max_input_kb * 1024 : rt->cfg.max_input_bytes;
    pv->metrics = calloc(m->export_count ? m->export_count : 1, sizeof(*pv->metrics));
    if (pv->metrics == NULL) {
        rc = PAR_E_NO_MEMORY;
        goto out;
    }
    pv->isolation = is_trusted(rt, pv->name) ? PAR_ISOLATION_IN_PROCESS : rt->cfg.isolation;
    if (m->runtime_kind == PAR_RUNTIME_PYTHON && pv->isolation == PAR_ISOLATION_IN_PROCESS) {
        /* no interpreter lives in the runtime's process */
        par_log_msg(PAR_LOG_WARN,
                    "package %s is a Python package: it runs in worker processes (in-process "
                    "isolation applies to native packages only)",
                    pv->name);
        pv->isolation = PAR_ISOLATION_WORKER;
    }
    if (pv->isolation == PAR_ISOLATION_IN_PROCESS)
        rc = par__native_load(pv, err);
    else
        rc = par__workers_start(rt, pv, err);
    if (rc != PAR_OK)
        goto out;
    pv->t_load_ms = ms_since(t2);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pv->loaded_at_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    atomic_store(&pv->state, PAR_PKG_ACTIVE);
    par_metrics_load(pv->t_read_ms / 1e3, pv->t_verify_ms / 1e3, pv->t_extract_ms / 1e3,
                     pv->t_load_ms / 1e3);
    par__runtime_publish(rt, pv);
    if (rt->cfg.cache_max_bytes)
        par_cache_evict(rt->cache_dir, rt->cfg.cache_max_bytes, in_use, rt);

    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "package active")) {
        par_log_str(&l, "package", pv->name);
        par_log_str(&l, "version", pv->version);
        par_log_str(&l, "sha256", pv->sha256);
        par_log_str(&l, "signer", pv->signer[0] ? pv->signer : "unsigned");
        par_log_str(&l, "origin", pv->origin);
        par_log_str(&l, "isolation",
                    pv->isolation == PAR_ISOLATION_IN_PROCESS ? "in-process" : "worker");
        par_log_int(&l, "exports", (int64_t)m->export_count);
        par_log_double(&l, "fetch_ms", pv->t_read_ms);
        par_log_double(&l, "verify_ms", pv->t_verify_ms);
        par_log_double(&l, "extract_ms", pv->t_extract_ms);
        par_log_double(&l, "load_ms", pv->t_load_ms);
        par_log_end(&l);
    }
    if (out_pv) {
        par__pkgver_ref(pv);
        *out_pv = pv;
    }
    pv = NULL;
out:
    if (pv) {
        par_logline_t fl;
        if (par_log_begin(&fl, PAR_LOG_ERROR, "package refused")) {
            par_log_str(&fl, "source", path);
            par_log_str(&fl, "error", par_status_name(rc));
            par_log_strn(&fl, "reason", err->data ? err->data : "", err->len);
            par_log_end(&fl);
        }
        record_failure(rt, pv, path, err, rc);
    }
    pthread_mutex_unlock(&rt->deploy_lock);
    par_archive_bytes_free(&a);
    par_fetch_result_free(&fr);
    par_buf_free(&yaml);
    par_buf_free(&sig);
    par_buf_free(&side);
    return rc;
}
