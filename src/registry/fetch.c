/*
 * registry/fetch.c — see fetch.h.
 *
 * One easy handle per attempt. The write callback routes the body: while the
 * response status is 2xx the bytes go to the caller's buffer (capped) and to
 * both digests; any other status keeps at most 2 KiB of the body for the error
 * message. A retry starts the body and the digests afresh.
 */
#include "registry/fetch.h"

#include "util/curl.h"
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <par/par.h>

#include "obs/log.h"

#define ERR_BODY_MAX 2048

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    par_curl_load(); /* a failure shows as curl_easy_init() == NULL, with par_curl_error() */
    if (sodium_init() < 0)
        abort(); /* libsodium cannot run here at all: a broken installation */
}

void par_fetch_global_init(void)
{
    pthread_once(&g_once, global_init);
}

void par_fetch_opts_init(par_fetch_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = 5000;
    o->timeout_ms = 120000;
    o->max_bytes = 512ull << 20;
    o->retries = 3;
    o->backoff_ms = 200;
}

void par_fetch_result_free(par_fetch_result_t *r)
{
    par_buf_free(&r->body);
    free(r->etag);
    r->etag = NULL;
}

/* ---- s3:// ------------------------------------------------------------------------ */

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static void append_encoded_key(par_buf_t *out, const char *key)
{
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (unreserved(*p) || *p == '/')
            par_buf_append(out, p, 1);
        else
            par_buf_appendf(out, "%%%02X", *p);
    }
}

int par_fetch_s3_url(const char *s3url, const par_fetch_opts_t *o, par_buf_t *out, par_buf_t *err)
{
    const char *b = s3url + 5; /* after "s3://" */
    const char *slash = strchr(b, '/');
    if (strncmp(s3url, "s3://", 5) != 0 || slash == NULL || slash == b || slash[1] == '\0') {
        par_buf_appendf(err, "%s: an S3 URL has the form s3://bucket/key\n", s3url);
        return PAR_E_INVALID_ARGUMENT;
    }
    size_t blen = (size_t)(slash - b);
    for (size_t i = 0; i < blen; i++) {
        unsigned char c = (unsigned char)b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
            par_buf_appendf(err, "%s: '%.*s' is not a valid bucket name\n", s3url, (int)blen, b);
            return PAR_E_INVALID_ARGUMENT;
        }
    }
    const char *region = o->s3_region && *o->s3_region ? o->s3_region : "us-east-1";
    if (o->s3_endpoint && *o->s3_endpoint) {
        const char *ep = o->s3_endpoint;
        size_t eplen = strlen(ep);
        while (eplen && ep[eplen - 1] == '/')
            eplen--;
        const char *host = strstr(ep, "://");
        if (host == NULL) {
            par_buf_appendf(err, "registry.s3.endpoint '%s' must start with https:// or http://\n",
                            ep);
            return PAR_E_INVALID_ARGUMENT;
        }
        if (o->s3_path_style) {
            par_buf_appendf(out, "%.*s/%.*s/", (int)eplen, ep, (int)blen, b);
        } else {
            host += 3;
            par_buf_appendf(out, "%.*s%.*s.%.*s/", (int)(host - ep), ep, (int)blen, b,
                            (int)(eplen - (size_t)(host - ep)), host);
        }
    } else if (o->s3_path_style) {
        par_buf_appendf(out, "https://s3.%s.amazonaws.com/%.*s/", region, (int)blen, b);
    } else {
        par_buf_appendf(out, "https://%.*s.s3.%s.amazonaws.com/", (int)blen, b, region);
    }
    append_encoded_key(out, slash + 1);
    return par_buf_terminate(out);
}

/* ---- one transfer ------------------------------------------------------------------ */

typedef struct xfer {
    CURL *h;
    const par_fetch_opts_t *o;
    par_fetch_result_t *r;
    par_buf_t errbody;
    EVP_MD_CTX *sha;
    crypto_generichash_state b2;
    int too_large;
    int hash_failed;
} xfer_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    xfer_t *x = ud;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 0 && (code < 200 || code > 299)) {
        if (x->errbody.len < ERR_BODY_MAX)
            par_buf_append(&x->errbody, p,
                           len < ERR_BODY_MAX - x->errbody.len ? len
                                                               : ERR_BODY_MAX - x->errbody.len);
        return len;
    }
    if (x->r->body.len + len > x->o->max_bytes) {
        x->too_large = 1;
        return 0;
    }
    if (par_buf_append(&x->r->body, p, len) != PAR_OK) {
        x->too_large = 1;
        return 0;
    }
    if (EVP_DigestUpdate(x->sha, p, len) != 1)
        x->hash_failed = 1;
    crypto_generichash_update(&x->b2, (const unsigned char *)p, len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    xfer_t *x = ud;
    size_t len = size * n;
    if (len > 5 && strncasecmp(p, "etag:", 5) == 0) {
        const char *v = p + 5;
        const char *e = p + len;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
        free(x->r->etag);
        x->r->etag = strndup(v, (size_t)(e - v));
    }
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    xfer_t *x = ud;
    if (x->o->progress)
        x->o->progress(x->o->progress_ud, (uint64_t)dlnow, (uint64_t)dltotal);
    return x->o->cancel && atomic_load(x->o->cancel) ? 1 : 0; /* 1: CURLE_ABORTED_BY_CALLBACK */
}

static int retryable_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static void backoff_sleep(uint32_t base_ms, unsigned attempt)
{
    uint64_t d = (uint64_t)base_ms << (attempt < 10 ? attempt : 10);
    if (d > 10000)
        d = 10000;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)time(NULL);
    uint64_t ms = d / 2 + (d / 2 ? rnd % (d / 2 + 1) : 0); /* equal jitter */
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Quotes at most 200 bytes of a server's error body, one line. */
static void quote_body(par_buf_t *err, const par_buf_t *b)
{
    if (b->len == 0)
        return;
    par_buf_appends(err, ": ");
    size_t n = b->len < 200 ? b->len : 200;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b->data[i];
        char ch = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        par_buf_append(err, &ch, 1);
    }
    if (b->len > n)
        par_buf_appends(err, "...");
}

/* Where and how a URL is fetched: the real URL (s3:// resolved), the
 * protocols allowed (redirects included), headers and S3 credentials. */
typedef struct target {
    par_buf_t real;
    const char *protocols;
    struct curl_slist *hdrs;
    char userpwd[512], sigv4[128];
    int is_s3;
} target_t;

/* Appends the header `name` `value` (name includes ": "). */
static int add_header(target_t *t, const char *name, const char *value)
{
    par_buf_t h;
    par_buf_init(&h, 0);
    par_buf_appendf(&h, "%s%s", name, value);
    int rc = par_buf_terminate(&h);
    struct curl_slist *l = rc == PAR_OK ? curl_slist_append(t->hdrs, h.data) : NULL;
    par_buf_free(&h);
    if (l == NULL)
        return PAR_E_NO_MEMORY;
    t->hdrs = l;
    return PAR_OK;
}

/* s3://: the endpoint URL and, when credentials are set, SigV4 signing. */
static int s3_target(const char *url, const par_fetch_opts_t *o, target_t *t, par_buf_t *err)
{
    int rc = par_fetch_s3_url(url, o, &t->real, err);
    if (rc != PAR_OK)
        return rc;
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    const char *tok = getenv("AWS_SESSION_TOKEN");
    if (ak && *ak && sk && *sk) {
        if (strchr(ak, ':') || (size_t)snprintf(t->userpwd, sizeof(t->userpwd), "%s:%s", ak, sk) >=
                                   sizeof(t->userpwd)) {
            par_buf_appendf(err, "%s: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are malformed\n",
                            url);
            return PAR_E_INVALID_ARGUMENT;
        }
        snprintf(t->sigv4, sizeof(t->sigv4), "aws:amz:%s:s3",
                 o->s3_region && *o->s3_region ? o->s3_region : "us-east-1");
        /* S3 requires the payload hash header; libcurl signs it as given */
        if ((rc = add_header(t, "x-amz-content-sha256: ", "UNSIGNED-PAYLOAD")) != PAR_OK)
            return rc;
        if (tok && *tok && (rc = add_header(t, "x-amz-security-token: ", tok)) != PAR_OK)
            return rc;
    }
    /* the operator chose the endpoint, scheme included */
    if (strncmp(t->real.data, "http://", 7) == 0)
        t->protocols = "http";
    return PAR_OK;
}

static int make_target(const char *url, const par_fetch_opts_t *o, target_t *t, par_buf_t *err)
{
    memset(t, 0, sizeof(*t));
    par_buf_init(&t->real, 0);
    t->protocols = "https";
    t->is_s3 = strncmp(url, "s3://", 5) == 0;
    int rc = PAR_OK;
    if (t->is_s3) {
        rc = s3_target(url, o, t, err);
    } else if (strncmp(url, "https://", 8) == 0) {
        rc = par_buf_appends(&t->real, url);
    } else if (strncmp(url, "http://", 7) == 0 && o->allow_http) {
        rc = par_buf_appends(&t->real, url);
        t->protocols = "http,https";
    } else if (strncmp(url, "file://", 7) == 0 && o->allow_file) {
        rc = par_buf_appends(&t->real, url);
        t->protocols = "file";
    } else {
        par_buf_appendf(err,
                        "%s: unsupported URL; packages come from https:// or s3://bucket/key%s\n",
                        url, o->allow_http ? " or http://" : "");
        return PAR_E_INVALID_ARGUMENT;
    }
    if (rc == PAR_OK)
        rc = par_buf_terminate(&t->real);
    if (rc == PAR_OK && o->if_none_match && *o->if_none_match)
        rc = add_header(t, "If-None-Match: ", o->if_none_match);
    return rc;
}

static void target_free(target_t *t)
{
    curl_slist_free_all(t->hdrs);
    par_buf_free(&t->real);
}

/* The easy handle of one attempt. */
static CURL *attempt_handle(xfer_t *x, const target_t *t, char cerr[CURL_ERROR_SIZE])
{
    const par_fetch_opts_t *o = x->o;
    par_curl_opts_t co = {.url = t->real.data,
                          .protocols = t->protocols,
                          .max_redirs = 5,
                          .connect_timeout_ms = o->connect_timeout_ms,
                          .timeout_ms = o->timeout_ms,
                          .max_bytes = o->max_bytes,
                          .ca_file = o->ca_file,
                          .on_body = on_body,
                          .body_ud = x,
                          .on_header = on_header,
                          .header_ud = x,
                          .errbuf = cerr,
                          .headers = t->hdrs};
    CURL *h = par_curl_new(&co);
    if (h == NULL)
        return NULL;
    if (*t->sigv4) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, t->sigv4);
        curl_easy_setopt(h, CURLOPT_USERPWD, t->userpwd);
    }
    if (o->progress || o->cancel) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    return h;
}

/* What a finished transfer means: PAR_OK, or the error (message in `am`),
 * with *retry set when trying again may help. */
static int classify(const char *url, const target_t *t, xfer_t *x, CURLcode cc, const char *cerr,
                    par_buf_t *am, int *retry)
{
    const par_fetch_opts_t *o = x->o;
    par_fetch_result_t *r = x->r;
    long code = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    r->http_status = code;
    *retry = 0;
    par_buf_terminate(&x->errbody);
    if (x->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
        par_buf_appendf(am, "%s: larger than the cap of %llu bytes (registry.max_download_mb)\n",
                        url, (unsigned long long)o->max_bytes);
        return PAR_E_TOO_LARGE;
    }
    if (cc != CURLE_OK) {
        curl_off_t got = 0, want = -1;
        curl_easy_getinfo(x->h, CURLINFO_SIZE_DOWNLOAD_T, &got);
        curl_easy_getinfo(x->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &want);
        if (cc == CURLE_PARTIAL_FILE && want >= 0)
            par_buf_appendf(am, "%s: the transfer ended after %lld of %lld bytes", url,
                            (long long)got, (long long)want);
        else
            par_buf_appendf(am, "%s: %s", url, *cerr ? cerr : curl_easy_strerror(cc));
        *retry = retryable_curl(cc);
        return PAR_E_FETCH_FAILED;
    }
    if (code == 304 && o->if_none_match) {
        r->not_modified = 1;
        return PAR_OK;
    }
    if (code == 404 ||
        (t->is_s3 && code == 403 && strstr(x->errbody.data ? x->errbody.data : "", "NoSuchKey"))) {
        par_buf_appendf(am, "%s: not found (HTTP %ld)\n", url, code);
        return PAR_E_NOT_FOUND;
    }
    if (code != 0 && (code < 200 || code > 299)) {
        par_buf_appendf(am, "%s: HTTP %ld", url, code);
        quote_body(am, &x->errbody);
        *retry = code >= 500;
        return PAR_E_FETCH_FAILED;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (x->hash_failed || EVP_DigestFinal_ex(x->sha, md, &mdlen) != 1 || mdlen != 32) {
        par_buf_appendf(am, "%s: SHA-256 failed\n", url);
        return PAR_E_INTERNAL;
    }
    par_hex_encode(md, 32, r->sha256);
    crypto_generichash_final(&x->b2, r->blake2b, 64);
    return PAR_OK;
}

/* One attempt; its message (if any) in `am`. */
static int attempt(const char *url, const par_fetch_opts_t *o, const target_t *t,
                   par_fetch_result_t *r, par_buf_t *am, int *retry)
{
    xfer_t x = {.o = o, .r = r};
    par_buf_init(&x.errbody, 0);
    par_buf_reset(&r->body);
    free(r->etag);
    r->etag = NULL;
    *retry = 0;
    char cerr[CURL_ERROR_SIZE] = "";
    x.sha = EVP_MD_CTX_new();
    int rc = PAR_E_NO_MEMORY;
    if (x.sha == NULL || EVP_DigestInit_ex(x.sha, EVP_sha256(), NULL) != 1 ||
        (x.h = attempt_handle(&x, t, cerr)) == NULL)
        goto out;
    crypto_generichash_init(&x.b2, NULL, 0, 64);
    CURLcode cc = curl_easy_perform(x.h);
    rc = classify(url, t, &x, cc, cerr, am, retry);
out:
    EVP_MD_CTX_free(x.sha);
    if (x.h)
        curl_easy_cleanup(x.h);
    par_buf_free(&x.errbody);
    return rc;
}

int par_fetch(const char *url, const par_fetch_opts_t *o, par_fetch_result_t *r, par_buf_t *err)
{
    par_fetch_global_init();
    memset(r, 0, sizeof(*r));
    par_buf_init(&r->body, 0);
    double t0 = now_ms();
    target_t t;
    int rc = make_target(url, o, &t, err);
    for (unsigned n = 0; rc == PAR_OK; n++) {
        par_buf_t am; /* this attempt's message */
        par_buf_init(&am, 4096);
        int retry;
        r->attempts = n + 1;
        rc = attempt(url, o, &t, r, &am, &retry);
        if (o->cancel && atomic_load(o->cancel))
            retry = 0;
        if (rc == PAR_E_FETCH_FAILED && retry && n < o->retries) {
            par_log_msg(PAR_LOG_WARN, "%.*s (attempt %u of %u, retrying)", (int)am.len,
                        am.data ? am.data : "", n + 1, o->retries + 1);
            par_buf_free(&am);
            backoff_sleep(o->backoff_ms ? o->backoff_ms : 200, n);
            rc = PAR_OK;
            continue;
        }
        if (rc == PAR_E_FETCH_FAILED)
            par_buf_appendf(&am, " (attempt %u of %u%s)\n", n + 1, o->retries + 1,
                            retry ? "" : ", not retried");
        if (rc != PAR_OK && am.len)
            par_buf_append(err, am.data, am.len);
        par_buf_free(&am);
        break;
    }
    target_free(&t);
    r->ms = now_ms() - t0;
    if (rc != PAR_OK)
        par_buf_free(&r->body);
    return rc;
}
