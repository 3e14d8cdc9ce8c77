/*
 * registry/fetch.h — downloads a package, a signature, a digest file or a
 * registry index from https://, s3:// (and http:// or file:// when allowed).
 *
 * Owns: every byte PAR receives from a registry. Uses libcurl with TLS
 * verification always on (the operator may add a CA file), connect and total
 * timeouts, a size cap enforced while the body streams in (and up front from
 * Content-Length), retries with exponential backoff and jitter on 5xx,
 * timeouts, resets and truncated transfers only (never on 4xx), and ETag /
 * If-None-Match. s3:// URLs are signed with AWS SigV4 (CURLOPT_AWS_SIGV4)
 * from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
 * SHA-256 and BLAKE2b-512 of the body are computed while it streams, so a
 * 30 MB package is never read twice.
 * Callers: deploy and index threads, the CLI. Blocking; never on an
 * event-loop thread. Thread-safe (one curl easy handle per call).
 */
#ifndef PAR_REGISTRY_FETCH_H
#define PAR_REGISTRY_FETCH_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct par_fetch_opts {
    const char *ca_file;         /* extra trust anchors (PEM), NULL = system store */
    uint32_t connect_timeout_ms; /* default 5000 */
    uint32_t timeout_ms;         /* whole transfer, default 120000 */
    uint64_t max_bytes;          /* size cap, default 512 MiB */
    unsigned retries;            /* extra attempts after the first, default 3 */
    uint32_t backoff_ms;         /* first retry delay (doubles, with jitter), default 200 */
    int allow_http;              /* accept plain http:// (digest and signature still apply) */
    int allow_file;              /* accept file:// (the CLI) */
    const char *s3_region;       /* default "us-east-1" */
    const char *s3_endpoint;     /* e.g. "http://127.0.0.1:4568"; NULL = AWS */
    int s3_path_style;           /* bucket in the path instead of the host name */
    const char *if_none_match;   /* ETag from the last fetch; 304 sets not_modified */
    /* progress, called from the transfer: bytes so far, total (0 = unknown) */
    void (*progress)(void *ud, uint64_t now, uint64_t total);
    void *progress_ud;
    /* set non-zero by another thread: the transfer stops within about a
     * second (curl's idle progress calls) and is not retried; PAR_E_FETCH_FAILED */
    const atomic_int *cancel;
} par_fetch_opts_t;

typedef struct par_fetch_result {
    par_buf_t body;       /* the bytes (owned; par_fetch_result_free) */
    long http_status;     /* last HTTP status (0 for file://) */
    int not_modified;     /* 304 to If-None-Match */
    char *etag;           /* the response's ETag, or NULL */
    char sha256[65];      /* of body, lowercase hex */
    uint8_t blake2b[64];  /* BLAKE2b-512 of body (minisign's prehash) */
    unsigned attempts;    /* 1 + retries used */
    double ms;            /* wall time, retries included */
} par_fetch_result_t;

void par_fetch_opts_init(par_fetch_opts_t *o);

/* Fetches `url`. PAR_OK (also for 304, with not_modified set),
 * PAR_E_NOT_FOUND (404/403 NoSuchKey: the object is not there),
 * PAR_E_TOO_LARGE (over max_bytes), PAR_E_INVALID_ARGUMENT (a URL this
 * fetcher refuses: scheme, credentials), PAR_E_FETCH_FAILED (everything
 * else, after the retries). `err` says what happened, with the URL. */
int par_fetch(const char *url, const par_fetch_opts_t *o, par_fetch_result_t *r, par_buf_t *err);

void par_fetch_result_free(par_fetch_result_t *r);

/* Turns s3://bucket/key into the https (or endpoint) URL it is fetched from.
 * Exposed for tests and for error messages. */
int par_fetch_s3_url(const char *s3url, const par_fetch_opts_t *o, par_buf_t *out, par_buf_t *err);

/* Calls curl_global_init once; every other function calls it too. */
void par_fetch_global_init(void);

#endif
