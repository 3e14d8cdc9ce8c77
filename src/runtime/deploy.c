/*
 * runtime/deploy.c — from a path to an active package version.
 *
 * Phases (each timed): read (load the .apkg and its SHA-256 in one pass),
 * extract (into the content-addressed cache, skipped when that digest is
 * already there and complete), load (manifest, compatibility, workers or
 * in-process dlopen). Then publish: the routing table switches atomically.
 * Blocking; called from the CLI, the embedding API or a management thread,
 * never from an event loop. Serialised by rt->deploy_lock.
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

#include "loader/native.h"
#include "loader/supervisor.h"
#include "obs/log.h"
#include "pkg/archive.h"
#include "pkg/manifest.h"
#include "runtime/runtime.h"

static double ms_since(int64_t t0)
{
    return (double)(par__now_ns() - t0) / 1e6;
}

static int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        rm_rf(sub);
    }
    closedir(d);
    return rmdir(path);
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

/* Extracts into cache/<digest> unless a complete copy is there. */
static int cache_extract(par_runtime_t *rt, const par_archive_bytes_t *a, char **root,
                         par_buf_t *err)
{
    char dir[PATH_MAX], marker[PATH_MAX + 16], tmp[PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/%s", rt->cache_dir, a->sha256);
    snprintf(marker, sizeof(marker), "%s.complete", dir);
    if (access(marker, F_OK) == 0) {
        *root = strdup(dir);
        return PAR_OK;
    }
    rm_rf(dir); /* a half-written entry from an interrupted extraction */
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-XXXXXX", rt->cache_dir, a->sha256);
    if (mkdtemp(tmp) == NULL) {
        par_buf_appendf(err, "%s: cannot create: %s\n", tmp, strerror(errno));
        return PAR_E_IO;
    }
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    int rc = par_archive_extract(a, tmp, &lim, err);
    if (rc != PAR_OK) {
        rm_rf(tmp);
        return rc;
    }
    if (rename(tmp, dir) != 0) {
        par_buf_appendf(err, "%s: cannot move into the cache: %s\n", dir, strerror(errno));
        rm_rf(tmp);
        return PAR_E_IO;
    }
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    *root = strdup(dir);
    return PAR_OK;
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

static int deploy(par_runtime_t *rt, const char *path, par_buf_t *err, par_pkgver_t **out_pv,
                  const char *source, const char *sha256);

int par__deploy_path(par_runtime_t *rt, const char *path, par_buf_t *err, par_pkgver_t **out_pv)
{
    return deploy(rt, path, err, out_pv, NULL, NULL);
}

int par__deploy_restored(par_runtime_t *rt, const char *path, const char *source,
                         const char *sha256, par_buf_t *err)
{
    return deploy(rt, path, err, NULL, source, sha256);
}

static int deploy(par_runtime_t *rt, const char *path, par_buf_t *err, par_pkgver_t **out_pv,
                  const char *source, const char *sha256)
{
    int64_t t0 = par__now_ns();
    par_pkgver_t *pv = calloc(1, sizeof(*pv));
    if (pv == NULL)
        return PAR_E_NO_MEMORY;
    atomic_init(&pv->refs, 1);
    atomic_init(&pv->state, PAR_PKG_LOADING);
    pv->rt = rt;
    pv->source = strdup(source ? source : path);
    if (sha256 && strlen(sha256) == 64)
        memcpy(pv->sha256, sha256, 65);
    par_buf_t yaml;
    par_buf_init(&yaml, 0);
    par_archive_bytes_t a = {0};
    int rc;

    pthread_mutex_lock(&rt->deploy_lock);
    struct stat st;
    if (stat(path, &st) != 0) {
        par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
        rc = PAR_E_NOT_FOUND;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
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
        if ((rc = par_archive_load(path, &lim, &a, err)) != PAR_OK) {
            if (rc != PAR_E_IO)
                rc = PAR_E_INVALID_PACKAGE;
            goto out;
        }
        memcpy(pv->sha256, a.sha256, sizeof(pv->sha256));
        pv->t_read_ms = ms_since(t0);
        rc = par_archive_read_member(&a, "agent.yaml", PAR_MANIFEST_MAX_BYTES, &yaml, err);
        if (rc == PAR_E_NOT_FOUND)
            par_buf_appendf(err, "%s: no agent.yaml at the archive root\n", path);
        if (rc != PAR_OK) {
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

    if (pv->root == NULL) {
        int64_t t1 = par__now_ns();
        if ((rc = cache_extract(rt, &a, &pv->root, err)) != PAR_OK)
            goto out;
        pv->t_extract_ms = ms_since(t1);
    }
    par_archive_bytes_free(&a);

    /* compatibility: every reason, not just the first */
    int64_t t2 = par__now_ns();
    int problems = 0;
    if (m->runtime_kind != PAR_RUNTIME_NATIVE) {
        par_buf_appendf(err, "no loader for runtime %s (this build runs native agents)\n",
                        m->runtime);
        problems++;
    }
    if (m->par_abi >= 0 && m->par_abi != PAR_AGENT_ABI) {
        par_buf_appendf(err, "metadata.par.abi is %d, this runtime speaks native ABI %d\n",
                        m->par_abi, PAR_AGENT_ABI);
        problems++;
    }
    if (m->export_count == 0) {
        par_buf_appendf(err, "the package exports no agent (no entrypoint, sub_agents or "
                             "metadata.par.exports)\n");
        problems++;
    }
    if (m->runtime_kind == PAR_RUNTIME_NATIVE)
        problems += par__native_check(pv, err);
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
    if (pv->isolation == PAR_ISOLATION_IN_PROCESS)
        rc = par__native_load(pv, err);
    else
        rc = par_pool_start(rt->super, pv, err);
    if (rc != PAR_OK)
        goto out;
    pv->t_load_ms = ms_since(t2);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pv->loaded_at_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    atomic_store(&pv->state, PAR_PKG_ACTIVE);
    par_metrics_load(pv->t_read_ms / 1e3, pv->t_extract_ms / 1e3, pv->t_load_ms / 1e3);
    par__runtime_publish(rt, pv);

    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "package active")) {
        par_log_str(&l, "package", pv->name);
        par_log_str(&l, "version", pv->version);
        par_log_str(&l, "sha256", pv->sha256);
        par_log_str(&l, "isolation",
                    pv->isolation == PAR_ISOLATION_IN_PROCESS ? "in-process" : "worker");
        par_log_int(&l, "exports", (int64_t)m->export_count);
        par_log_double(&l, "read_ms", pv->t_read_ms);
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
    par_buf_free(&yaml);
    return rc;
}
