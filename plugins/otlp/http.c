/*
 * plugins/otlp/http.c — one OTLP/HTTP POST and what its answer means.
 *
 * 2xx: sent (a partialSuccess in the body is the collector's business: the
 * request is not retried, as the specification says). 429 and 5xx, a timeout
 * or a transport error (refused connection, DNS, TLS): retry, after the
 * Retry-After the collector gave when it gave one. Other statuses (400 a
 * malformed body, 401/403, 404 a wrong path, 413): refused for good, never
 * retried. OTLP lists only 429, 502, 503 and 504 as retryable; PAR retries
 * every 5xx, because collectors and the proxies in front of them answer 500
 * when overloaded, and the retries are bounded (max_retries).
 *
 * The sender thread only; the handle keeps its connection between requests.
 */
#include "otlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

struct otlp_http {
    CURL *h;
    struct curl_slist *hdrs;
    int64_t retry_after_ms;
    const volatile int *abort_flag;
};

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    otlp_http_t *h = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        char v[64];
        size_t vl = len - (sizeof(name) - 1);
        if (vl >= sizeof(v))
            vl = sizeof(v) - 1;
        memcpy(v, p + sizeof(name) - 1, vl);
        v[vl] = '\0';
        h->retry_after_ms = otlp_parse_retry_after(v, (int64_t)time(NULL));
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    otlp_http_t *h = ud;
    return h->abort_flag && *h->abort_flag ? 1 : 0;
}

int64_t otlp_parse_retry_after(const char *v, int64_t now_s)
{
    while (*v == ' ' || *v == '\t')
        v++;
    char *end;
    long long secs = strtoll(v, &end, 10);
    if (end != v && secs >= 0) {
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (*end == '\0')
            return secs > 86400 ? 86400000 : secs * 1000;
    }
    time_t when = curl_getdate(v, NULL);
    if (when < 0)
        return -1;
    return when <= now_s ? 0 : ((int64_t)when - now_s) * 1000;
}

otlp_http_t *otlp_http_new(const otlp_config_t *c)
{
    otlp_http_t *h = calloc(1, sizeof(*h));
    if (!h || !(h->h = curl_easy_init()))
        goto fail;
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
    h->hdrs = l;
    /* no "Expect: 100-continue" (libcurl asks it for bodies over 1 MiB, a
     * large batch_size): a round trip per batch for nothing */
    if (l)
        h->hdrs = l = curl_slist_append(h->hdrs, "Expect:");
    for (size_t i = 0; l && c->headers && c->headers[i]; i++)
        h->hdrs = l = curl_slist_append(h->hdrs, c->headers[i]);
    if (!l)
        goto fail;
    CURL *e = h->h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdrs);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "par-otlp");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, h);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    return h;
fail:
    otlp_http_free(h);
    return NULL;
}

void otlp_http_free(otlp_http_t *h)
{
    if (!h)
        return;
    if (h->h)
        curl_easy_cleanup(h->h);
    curl_slist_free_all(h->hdrs);
    free(h);
}

static otlp_outcome_t outcome_of(long status)
{
    if (status >= 200 && status < 300)
        return OTLP_SENT;
    if (status == 429 || status >= 500)
        return OTLP_RETRY;
    return OTLP_REFUSED;
}

void otlp_http_post(otlp_http_t *h, const char *url, const char *body, size_t len,
                    const volatile int *abort_flag, otlp_post_result_t *r)
{
    char cerr[CURL_ERROR_SIZE] = "";
    h->retry_after_ms = -1;
    h->abort_flag = abort_flag;
    curl_easy_setopt(h->h, CURLOPT_URL, url);
    curl_easy_setopt(h->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h->h, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(h->h);
    curl_easy_setopt(h->h, CURLOPT_ERRORBUFFER, NULL);
    r->http_status = 0;
    r->retry_after_ms = -1;
    if (rc != CURLE_OK) {
        r->outcome = OTLP_RETRY;
        snprintf(r->detail, sizeof(r->detail), "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        return;
    }
    curl_easy_getinfo(h->h, CURLINFO_RESPONSE_CODE, &r->http_status);
    r->outcome = outcome_of(r->http_status);
    if (r->outcome == OTLP_RETRY)
        r->retry_after_ms = h->retry_after_ms;
    snprintf(r->detail, sizeof(r->detail), "HTTP %ld", r->http_status);
}
