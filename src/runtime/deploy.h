/*
 * runtime/deploy.h — the phases of a deploy, over one context.
 *
 * par__deploy (runtime.h) runs them in order under rt->deploy_lock:
 *   acquire   the bytes and what vouches for them: a restored cache directory,
 *             a URL (with its .sha256 and .minisig, or the cache when that
 *             digest is already there), an unpacked directory, or an .apkg file
 *             (with sibling .sha256 / .minisig files)       deploy_acquire.c
 *   verify    the expected digest and the minisign signature
 *   manifest  agent.yaml parsed; the signer's package-name pin checked
 *   extract   into the content-addressed cache (skipped when already there)
 *   compat    compatibility (every reason), Python environment, limits
 *   activate  workers or in-process load, publish, cache eviction
 * Each phase returns a PAR status and appends what went wrong to ctx->err; on
 * failure par__deploy records the failure. The phases are separate functions
 * so that tests can run them one by one (tests/unit/test_deploy.c).
 * Blocking; never on an event-loop thread.
 */
#ifndef PAR_RUNTIME_DEPLOY_H
#define PAR_RUNTIME_DEPLOY_H

#include <stdint.h>

#include "pkg/archive.h"
#include "registry/cache.h"
#include "registry/fetch.h"
#include "runtime/runtime.h"

typedef struct par_deploy_ctx {
    par_runtime_t *rt;
    const par_deploy_req_t *req;
    par_buf_t *err;
    const char *path;      /* what messages name: the directory, URL or file */
    par_pkgver_t *pv;      /* the version being built (owned until published) */
    par_buf_t yaml;        /* agent.yaml, once read */
    par_buf_t sig;         /* the minisign signature, when have_sig */
    par_buf_t side;        /* a .sha256 file's text */
    par_archive_bytes_t a; /* the archive's bytes (NULL data for a directory or cache hit) */
    par_fetch_result_t fr; /* the download */
    char expected[65];     /* the digest asked for or published beside it, or "" */
    uint8_t b2[64];        /* BLAKE2b-512 of the bytes, when have_b2 */
    int have_b2, have_sig, cached, bytes_verified;
    par_cache_info_t ci; /* the cache's marker, when cached or restored */
    int64_t t0,
        t_compat; /* monotonic ns: start of the deploy, of compat (load time counts from it) */
} par_deploy_ctx_t;

/* Starts a context: a LOADING version with source and origin. PAR_OK or
 * PAR_E_NO_MEMORY (nothing to free then). */
int par__deploy_ctx_init(par_deploy_ctx_t *c, par_runtime_t *rt, const par_deploy_req_t *req,
                         par_buf_t *err);
/* Frees the buffers, and the version when it was not handed on. */
void par__deploy_ctx_free(par_deploy_ctx_t *c);

int par__deploy_acquire(par_deploy_ctx_t *c);
int par__deploy_verify(par_deploy_ctx_t *c);
int par__deploy_manifest(par_deploy_ctx_t *c);
int par__deploy_extract(par_deploy_ctx_t *c);
int par__deploy_compat(par_deploy_ctx_t *c);
int par__deploy_activate(par_deploy_ctx_t *c);

/* Fetch options from the runtime's configuration (CA file, timeouts, size
 * cap, retries, http:// permission, S3 settings): deploy and the index poller. */
void par__fetch_opts(par_runtime_t *rt, par_fetch_opts_t *o);

/* Reads a whole file up to `cap` bytes into `out` (initialised here). */
int par__deploy_read_file(const char *path, size_t cap, par_buf_t *out, par_buf_t *err);

/* 1 when `sig` parses as a prehashed (BLAKE2b-512) minisign signature. */
int par__deploy_sig_prehashed(const par_buf_t *sig);

#endif
