/*
 * util/curl.h — libcurl, opened with dlopen the first time it is needed.
 *
 * libcurl brings some twenty libraries (TLS, LDAP, Kerberos, SSH, HTTP/2,
 * IDN...) that every `par` process would otherwise map and relocate at start:
 * most of a cold start's dynamic-loading time and a few MB of idle RSS, for
 * registries, the Stripe export and OIDC, which many deployments never use.
 * Files that speak HTTP include this header instead of <curl/curl.h>; the
 * curl_* names they call resolve to a table whose entries load the library
 * on first use (thread-safe) and then point at the real functions.
 *
 * If the library cannot be loaded, curl_easy_init() returns NULL (callers
 * already treat that as an error) and par_curl_error() says why.
 */
#ifndef PAR_UTIL_CURL_H
#define PAR_UTIL_CURL_H

#include <stdint.h>

#include <curl/curl.h>

typedef struct par_curl_api {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *h);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    const char *(*easy_strerror)(CURLcode code);
    char *(*easy_escape)(CURL *h, const char *s, int len);
    void (*free)(void *p);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd *fds, unsigned n, int ms, int *numfds);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_cleanup)(CURLM *m);
} par_curl_api_t;

extern par_curl_api_t par__curl;

/* Loads libcurl and runs curl_global_init once. 0, or -1 (par_curl_error()). */
int par_curl_load(void);

/* Why libcurl could not be loaded, or NULL. */
const char *par_curl_error(void);

/* The options every PAR client sets the same way (registry fetch, OIDC
 * discovery and JWKS, the Stripe export). */
typedef struct par_curl_opts {
    const char *url;
    const char *protocols;       /* CURLOPT_PROTOCOLS_STR, also for redirects ("https") */
    long max_redirs;             /* 0: redirects are not followed */
    uint32_t connect_timeout_ms; /* 0: libcurl's default */
    uint32_t timeout_ms;         /* whole transfer; 0: none */
    uint64_t max_bytes;          /* CURLOPT_MAXFILESIZE_LARGE; 0: no cap */
    const char *ca_file;         /* extra trust anchors (PEM), NULL/"" = system store */
    curl_write_callback on_body; /* with body_ud; NULL: libcurl's default */
    void *body_ud;
    curl_write_callback on_header; /* with header_ud, or NULL */
    void *header_ud;
    char *errbuf;               /* CURL_ERROR_SIZE bytes, or NULL */
    struct curl_slist *headers; /* request headers (the caller frees them), or NULL */
} par_curl_opts_t;

/* Sets `o` on easy handle `h`, with what never varies: TLS peer and host
 * verification on, no signals, the user agent par/VERSION. Any thread. */
void par_curl_setup(CURL *h, const par_curl_opts_t *o);

/* curl_easy_init() + par_curl_setup(); NULL when libcurl cannot be loaded or
 * is out of memory (par_curl_error() says which when it is the former). */
CURL *par_curl_new(const par_curl_opts_t *o);

#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init(f) par__curl.global_init(f)
#define curl_global_cleanup() par__curl.global_cleanup()
#define curl_easy_init() par__curl.easy_init()
#define curl_easy_setopt(...) par__curl.easy_setopt(__VA_ARGS__)
#define curl_easy_perform(h) par__curl.easy_perform(h)
#define curl_easy_getinfo(...) par__curl.easy_getinfo(__VA_ARGS__)
#define curl_easy_cleanup(h) par__curl.easy_cleanup(h)
#define curl_easy_strerror(c) par__curl.easy_strerror(c)
#define curl_easy_escape(h, s, n) par__curl.easy_escape(h, s, n)
#define curl_free(p) par__curl.free(p)
#define curl_slist_append(l, s) par__curl.slist_append(l, s)
#define curl_slist_free_all(l) par__curl.slist_free_all(l)
#define curl_multi_init() par__curl.multi_init()
#define curl_multi_add_handle(m, h) par__curl.multi_add_handle(m, h)
#define curl_multi_remove_handle(m, h) par__curl.multi_remove_handle(m, h)
#define curl_multi_perform(m, r) par__curl.multi_perform(m, r)
#define curl_multi_poll(m, f, n, ms, nf) par__curl.multi_poll(m, f, n, ms, nf)
#define curl_multi_info_read(m, l) par__curl.multi_info_read(m, l)
#define curl_multi_cleanup(m) par__curl.multi_cleanup(m)

#endif
