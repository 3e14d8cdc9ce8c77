/*
 * runtime/deploy_acquire.c — the acquire phase of a deploy (see deploy.h).
 *
 * From a request to bytes and what vouches for them: a restored cache
 * directory, a URL (its .sha256 and .minisig fetched first, so that a digest
 * already in the cache is not downloaded again: only its signature is
 * fetched and checked against the BLAKE2b-512 the marker recorded), an
 * unpacked directory, or an .apkg file with sibling .sha256 / .minisig files
 * (hashed for the signature in the same read pass). Nothing is trusted yet:
 * the verify phase decides. Called by par__deploy under rt->deploy_lock.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "obs/log.h"
#include "pkg/manifest.h"
#include "runtime/deploy.h"

static double ms_since(int64_t t0)
{
    return (double)(par__now_ns() - t0) / 1e6;
}

int par__deploy_read_file(const char *path, size_t cap, par_buf_t *out, par_buf_t *err)
{
    par_buf_init(out, cap);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
        return errno == ENOENT ? PAR_E_INVALID_PACKAGE : PAR_E_IO;
    }
    char buf[8192];
    ssize_t r;
    int rc = PAR_OK;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        if ((rc = par_buf_append(out, buf, (size_t)r)) != PAR_OK)
            break;
    if (r < 0 && rc == PAR_OK) {
        par_buf_appendf(err, "%s: %s\n", path, strerror(errno));
        rc = PAR_E_IO;
    }
    close(fd);
    if (rc == PAR_E_TOO_LARGE) {
        par_buf_appendf(err, "%s: larger than %zu bytes\n", path, cap);
        return PAR_E_INVALID_PACKAGE;
    }
    return rc;
}

void par__fetch_opts(par_runtime_t *rt, par_fetch_opts_t *o)
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

static int is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* First 64 hex digits of a `.sha256` file (plain, or `sha256sum` output). */
static int parse_digest_file(const char *text, size_t len, char out[65])
{
    size_t i = 0;
    while (i < len && is_space(text[i]))
        i++;
    if (len - i < 64)
        return -1;
    for (size_t j = 0; j < 64; j++) {
        char ch = text[i + j];
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return -1;
        out[j] = ch;
    }
    out[64] = '\0';
    if (len - i > 64 && !is_space(text[i + 64]))
        return -1;
    return 0;
}

static int valid_digest(const char *s)
{
    return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Fetches a small side file (digest, signature). PAR_OK with `out` filled,
 * PAR_E_NOT_FOUND when absent, else the fetch error. */
static int fetch_small(par_runtime_t *rt, const char *url, par_buf_t *out, par_buf_t *err)
{
    par_fetch_opts_t o;
    par__fetch_opts(rt, &o);
    o.max_bytes = 64 * 1024;
    par_fetch_result_t r;
    int rc = par_fetch(url, &o, &r, err);
    if (rc == PAR_OK)
        rc = par_buf_append(out, r.body.data ? r.body.data : "", r.body.len);
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
    int rc = par__deploy_read_file(p, 64 * 1024, &tmp, err);
    if (rc == PAR_OK)
        rc = par_buf_append(out, tmp.data ? tmp.data : "", tmp.len);
    par_buf_free(&tmp);
    return rc;
}

/* Reads agent.yaml from directory `dir`. */
static int read_yaml(par_deploy_ctx_t *c, const char *dir)
{
    char ypath[PATH_MAX + 96];
    par_buf_free(&c->yaml);
    if ((size_t)snprintf(ypath, sizeof(ypath), "%s/agent.yaml", dir) >= sizeof(ypath)) {
        par_buf_appendf(c->err, "%s: path too long\n", dir);
        return PAR_E_INVALID_ARGUMENT;
    }
    return par__deploy_read_file(ypath, PAR_MANIFEST_MAX_BYTES, &c->yaml, c->err);
}

static int acquire_restored(par_deploy_ctx_t *c)
{
    par_pkgver_t *pv = c->pv;
    if ((pv->root = strdup(c->req->restored_dir)) == NULL)
        return PAR_E_NO_MEMORY;
    memcpy(pv->sha256, c->expected, sizeof(pv->sha256));
    int rc = read_yaml(c, c->req->restored_dir);
    if (rc != PAR_OK)
        return rc;
    if (par_cache_lookup(c->rt->cache_dir, c->expected, &c->ci) && pv->signer[0] == '\0')
        memcpy(pv->signer, c->ci.signer, sizeof(pv->signer));
    return PAR_OK;
}

/* The URL's digest file (unless a digest was given) and its signature. */
static int url_side_files(par_deploy_ctx_t *c)
{
    const char *url = c->req->url;
    par_buf_t u;
    par_buf_init(&u, 0);
    int rc = PAR_OK;
    if (c->expected[0] == '\0') {
        par_buf_appendf(&u, "%s.sha256", url);
        if ((rc = par_buf_terminate(&u)) == PAR_OK)
            rc = fetch_small(c->rt, u.data, &c->side, c->err);
        if (rc == PAR_OK && parse_digest_file(c->side.data, c->side.len, c->expected) != 0) {
            par_buf_appendf(c->err, "%s.sha256: does not start with a SHA-256 in hex\n", url);
            rc = PAR_E_INVALID_PACKAGE;
        }
        if (rc == PAR_E_NOT_FOUND) {
            par_buf_reset(c->err);
            rc = PAR_OK;
        }
        if (rc != PAR_OK)
            goto out;
    }
    par_buf_reset(&u);
    if (c->req->signature_url)
        par_buf_appends(&u, c->req->signature_url);
    else
        par_buf_appendf(&u, "%s.minisig", url);
    if ((rc = par_buf_terminate(&u)) == PAR_OK)
        rc = fetch_small(c->rt, u.data, &c->sig, c->err);
    if (rc == PAR_E_NOT_FOUND && c->req->signature_url == NULL) {
        par_buf_reset(c->err);
        rc = PAR_OK;
    } else if (rc == PAR_E_NOT_FOUND) {
        rc = PAR_E_SIGNATURE_MISSING; /* asked for by name and not there */
    } else if (rc == PAR_OK) {
        c->have_sig = 1;
    }
out:
    par_buf_free(&u);
    return rc;
}

/* The digest is in the cache: only agent.yaml is read from there. */
static int url_from_cache(par_deploy_ctx_t *c)
{
    par_pkgver_t *pv = c->pv;
    c->cached = 1;
    memcpy(pv->sha256, c->expected, sizeof(pv->sha256));
    memcpy(c->b2, c->ci.blake2b, 64);
    c->have_b2 = c->ci.has_blake2b;
    char root[PATH_MAX + 80];
    snprintf(root, sizeof(root), "%s/%s", c->rt->cache_dir, c->expected);
    if ((pv->root = strdup(root)) == NULL)
        return PAR_E_NO_MEMORY;
    int rc = read_yaml(c, root);
    if (rc == PAR_OK) {
        par_logline_t l;
        if (par_log_begin(&l, PAR_LOG_INFO, "package already cached: not downloaded")) {
            par_log_str(&l, "source", c->req->url);
            par_log_str(&l, "detail", c->expected);
            par_log_end(&l);
        }
    }
    return rc;
}

static int acquire_url(par_deploy_ctx_t *c)
{
    const char *url = c->req->url;
    par_fetch_opts_t fo;
    par__fetch_opts(c->rt, &fo);
    if (!(strncmp(url, "https://", 8) == 0 || strncmp(url, "s3://", 5) == 0 ||
          (fo.allow_http && strncmp(url, "http://", 7) == 0))) {
        par_buf_appendf(c->err,
                        "%s: unsupported URL; packages come from https:// or s3://bucket/key%s\n",
                        url, fo.allow_http ? " or http://" : "");
        return PAR_E_INVALID_ARGUMENT;
    }
    int rc = url_side_files(c);
    if (rc != PAR_OK)
        return rc;
    /* the same digest is never downloaded twice: a prehashed signature is
     * checked against the BLAKE2b-512 the cache recorded */
    if (c->expected[0] && par_cache_lookup(c->rt->cache_dir, c->expected, &c->ci) &&
        (!c->have_sig || (c->ci.has_blake2b && par__deploy_sig_prehashed(&c->sig))))
        return url_from_cache(c);
    rc = par_fetch(url, &fo, &c->fr, c->err);
    if (rc == PAR_E_NOT_FOUND || rc == PAR_E_INVALID_ARGUMENT)
        rc = PAR_E_FETCH_FAILED;
    if (rc != PAR_OK)
        return rc;
    c->a.data = (unsigned char *)par_buf_steal(&c->fr.body, &c->a.len);
    memcpy(c->a.sha256, c->fr.sha256, sizeof(c->a.sha256));
    memcpy(c->pv->sha256, c->a.sha256, sizeof(c->pv->sha256));
    memcpy(c->b2, c->fr.blake2b, 64);
    c->have_b2 = 1;
    return PAR_OK;
}

static int acquire_dir(par_deploy_ctx_t *c)
{
    char real[PATH_MAX];
    if (realpath(c->path, real) == NULL) {
        par_buf_appendf(c->err, "%s: %s\n", c->path, strerror(errno));
        return PAR_E_IO;
    }
    if ((c->pv->root = strdup(real)) == NULL)
        return PAR_E_NO_MEMORY;
    return read_yaml(c, real);
}

static int acquire_file(par_deploy_ctx_t *c)
{
    const char *path = c->path;
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    char sigpath[PATH_MAX];
    /* a signature beside the file: hash for it in the same read pass */
    lim.with_blake2b =
        (size_t)snprintf(sigpath, sizeof(sigpath), "%s.minisig", path) < sizeof(sigpath) &&
        access(sigpath, F_OK) == 0;
    int rc = par_archive_load(path, &lim, &c->a, c->err);
    if (rc != PAR_OK)
        return rc == PAR_E_IO || rc == PAR_E_NO_MEMORY ? rc : PAR_E_INVALID_PACKAGE;
    memcpy(c->pv->sha256, c->a.sha256, sizeof(c->pv->sha256));
    if (c->expected[0] == '\0') {
        rc = read_sibling(path, ".sha256", &c->side, c->err);
        if (rc == PAR_OK && parse_digest_file(c->side.data, c->side.len, c->expected) != 0) {
            par_buf_appendf(c->err, "%s.sha256: does not start with a SHA-256 in hex\n", path);
            return PAR_E_INVALID_PACKAGE;
        }
        if (rc != PAR_OK && rc != PAR_E_NOT_FOUND)
            return rc;
    }
    rc = read_sibling(path, ".minisig", &c->sig, c->err);
    if (rc == PAR_OK)
        c->have_sig = 1;
    if (c->a.has_blake2b) {
        memcpy(c->b2, c->a.blake2b, 64);
        c->have_b2 = 1;
    } else if (rc != PAR_E_NOT_FOUND && rc != PAR_OK) {
        return rc;
    }
    return PAR_OK;
}

int par__deploy_acquire(par_deploy_ctx_t *c)
{
    assert(c && c->pv && c->req);
    const par_deploy_req_t *req = c->req;
    if (req->sha256 && *req->sha256) {
        if (!valid_digest(req->sha256)) {
            par_buf_appendf(c->err, "sha256 must be 64 lowercase hex digits, not '%.80s'\n",
                            req->sha256);
            return PAR_E_INVALID_ARGUMENT;
        }
        memcpy(c->expected, req->sha256, 65);
    }
    int rc;
    struct stat st;
    if (req->restored_dir) {
        rc = acquire_restored(c);
    } else if (req->url) {
        rc = acquire_url(c);
    } else if (stat(c->path, &st) != 0) {
        par_buf_appendf(c->err, "%s: %s\n", c->path, strerror(errno));
        return PAR_E_NOT_FOUND;
    } else {
        rc = S_ISDIR(st.st_mode) ? acquire_dir(c) : acquire_file(c);
    }
    c->pv->t_read_ms = ms_since(c->t0);
    return rc;
}
