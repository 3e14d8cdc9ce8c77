/*
 * plugins/otlp/config.c — the plugin's `config:` block in par.yaml:
 *
 *   plugins:
 *     - path: /usr/lib/par/plugins/otlp.so
 *       config: {endpoint: "http://collector:4318", service_name: par-eu1}
 *
 * Every key is checked at start: an unknown key (with a "did you mean"), a
 * value of the wrong type or out of range, or an endpoint that is not an
 * http(s) URL with a host is an error naming the key, and PAR refuses to
 * start. Called once, on the host's start-up thread.
 */
#include "otlp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util/suggest.h"

static const char *const KEYS[] = {
    "endpoint",    "service_name", "resource",       "headers",
    "ca_file",     "timeout_ms",   "flush_ms",       "batch_size",
    "queue_size",  "max_retries",  "backoff_min_ms", "backoff_max_ms",
    "shutdown_ms", "spans",        "metrics",        "metrics_interval_ms",
    "headers_env", NULL,
};

typedef struct {
    const char *key;
    size_t offset;
    uint32_t def, min, max;
} uint_key_t;

#define U(k, d, lo, hi)                                                                            \
    {                                                                                              \
#k, offsetof(otlp_config_t, k), d, lo, hi                                                  \
    }
static const uint_key_t UINTS[] = {
    U(timeout_ms, 10000, 1, 600000),
    U(flush_ms, 1000, 1, 600000),
    U(batch_size, 512, 1, 65536),
    U(queue_size, 2048, 1, 1048576),
    U(max_retries, 5, 0, 100),
    U(backoff_min_ms, 500, 1, 600000),
    U(backoff_max_ms, 30000, 1, 3600000),
    U(shutdown_ms, 2000, 0, 600000),
    U(metrics_interval_ms, 10000, 100, 3600000),
};
#undef U

static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int check_keys(const json_t *conf, char *err, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)conf, k, v)
    {
        bool known = false;
        for (size_t i = 0; KEYS[i]; i++)
            known |= strcmp(k, KEYS[i]) == 0;
        if (known)
            continue;
        const char *near = par_suggest(k, KEYS);
        if (near)
            return fail(err, n, "config.%s: unknown key (did you mean %s?)", k, near);
        char known_keys[400] = "";
        for (size_t i = 0; KEYS[i]; i++)
            snprintf(known_keys + strlen(known_keys), sizeof(known_keys) - strlen(known_keys),
                     "%s%s", i ? ", " : "", KEYS[i]);
        return fail(err, n, "config.%s: unknown key; known keys: %s", k, known_keys);
    }
    return 0;
}

static int read_uints(const json_t *conf, otlp_config_t *c, char *err, size_t n)
{
    for (size_t i = 0; i < sizeof(UINTS) / sizeof(UINTS[0]); i++) {
        const uint_key_t *u = &UINTS[i];
        uint32_t *dst = (uint32_t *)((char *)c + u->offset);
        *dst = u->def;
        json_t *v = json_object_get(conf, u->key);
        if (!v)
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < u->min || json_integer_value(v) > u->max)
            return fail(err, n, "config.%s: must be an integer from %u to %u", u->key, u->min,
                        u->max);
        *dst = (uint32_t)json_integer_value(v);
    }
    if (c->backoff_min_ms > c->backoff_max_ms)
        return fail(err, n, "config.backoff_min_ms: must not exceed backoff_max_ms (%u)",
                    c->backoff_max_ms);
    return 0;
}

static int read_bool(const json_t *conf, const char *key, bool def, bool *out, char *err, size_t n)
{
    json_t *v = json_object_get(conf, key);
    *out = def;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return fail(err, n, "config.%s: must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* An object of strings (resource attributes, headers). */
static int check_map(const json_t *v, const char *key, char *err, size_t n)
{
    if (!json_is_object(v))
        return fail(err, n, "config.%s: must be a map of strings", key);
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        if (!json_is_string(x))
            return fail(err, n, "config.%s.%s: must be a string", key, k);
        if (!*k || strpbrk(k, ":\r\n") || strpbrk(json_string_value(x), "\r\n"))
            return fail(err, n, "config.%s.%s: empty name, or a colon or line break", key, k);
    }
    return 0;
}

/* http(s)://host[:port][/path], nothing else. */
static int check_endpoint(const char *url, char *err, size_t n)
{
    int rc = -1;
    char *scheme = NULL, *host = NULL, *query = NULL, *frag = NULL;
    CURLU *u = curl_url();
    if (!u)
        return fail(err, n, "config.endpoint: out of memory");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        fail(err, n, "config.endpoint: \"%s\" is not a URL (%s); example: http://127.0.0.1:4318",
             url, curl_url_strerror(uc));
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
    if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        fail(err, n, "config.endpoint: \"%s\": the scheme must be http or https", url);
    else if (!host || !*host)
        fail(err, n, "config.endpoint: \"%s\": no host", url);
    else if (query || frag)
        fail(err, n,
             "config.endpoint: \"%s\": no query or fragment; give the collector's base "
             "URL (PAR appends /v1/traces and /v1/metrics)",
             url);
    else
        rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(query);
    curl_free(frag);
    curl_url_cleanup(u);
    return rc;
}

static char *joined(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

static int add_header(otlp_config_t *c, size_t i, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 3;
    if (!(c->headers[i] = malloc(len)))
        return -1;
    snprintf(c->headers[i], len, "%s: %s", name, value);
    return 0;
}

/* `headers` (values as written) and `headers_env` (values from the
 * environment, so that a key need not sit in par.yaml) as "Name: value". */
static int read_headers(const json_t *hdr, const json_t *henv, otlp_config_t *c, char *err,
                        size_t n)
{
    size_t i = 0;
    c->headers = calloc(json_object_size(hdr) + json_object_size(henv) + 1, sizeof(char *));
    if (!c->headers)
        return fail(err, n, "out of memory");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)hdr, k, x)
    {
        if (add_header(c, i++, k, json_string_value(x)) != 0)
            return fail(err, n, "out of memory");
    }
    json_object_foreach((json_t *)henv, k, x)
    {
        const char *v = getenv(json_string_value(x));
        if (!v || !*v)
            return fail(err, n, "config.headers_env.%s: the environment variable %s is not set", k,
                        json_string_value(x));
        if (strpbrk(v, "\r\n"))
            return fail(err, n, "config.headers_env.%s: %s holds a line break", k,
                        json_string_value(x));
        if (add_header(c, i++, k, v) != 0)
            return fail(err, n, "out of memory");
    }
    return 0;
}

static int read_strings(const json_t *conf, otlp_config_t *c, char *err, size_t n)
{
    json_t *ep = json_object_get(conf, "endpoint");
    if (!ep)
        return fail(err, n,
                    "config.endpoint: required (the collector's OTLP/HTTP base URL, "
                    "e.g. http://127.0.0.1:4318)");
    if (!json_is_string(ep))
        return fail(err, n, "config.endpoint: must be a string");
    const char *url = json_string_value(ep);
    if (check_endpoint(url, err, n) != 0)
        return -1;
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (!(c->endpoint = strndup(url, len)))
        return fail(err, n, "out of memory");
    json_t *sn = json_object_get(conf, "service_name");
    if (sn && (!json_is_string(sn) || !*json_string_value(sn)))
        return fail(err, n, "config.service_name: must be a non-empty string");
    json_t *ca = json_object_get(conf, "ca_file");
    if (ca && (!json_is_string(ca) || !*json_string_value(ca)))
        return fail(err, n, "config.ca_file: must be the path of a PEM file");
    json_t *res = json_object_get(conf, "resource"), *hdr = json_object_get(conf, "headers");
    json_t *henv = json_object_get(conf, "headers_env");
    if ((res && check_map(res, "resource", err, n) != 0) ||
        (hdr && check_map(hdr, "headers", err, n) != 0) ||
        (henv && check_map(henv, "headers_env", err, n) != 0))
        return -1;
    c->service_name = strdup(sn ? json_string_value(sn) : "par");
    c->ca_file = ca ? strdup(json_string_value(ca)) : NULL;
    c->resource = res ? json_deep_copy(res) : json_object();
    c->traces_url = joined(c->endpoint, "/v1/traces");
    c->metrics_url = joined(c->endpoint, "/v1/metrics");
    if (!c->service_name || (ca && !c->ca_file) || !c->resource || !c->traces_url ||
        !c->metrics_url)
        return fail(err, n, "out of memory");
    return read_headers(hdr, henv, c, err, n);
}

int otlp_config_parse(const json_t *conf, otlp_config_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *empty = NULL;
    if (!conf)
        conf = empty = json_object();
    int rc = -1;
    if (!conf)
        fail(err, errlen, "out of memory");
    else if (!json_is_object(conf))
        fail(err, errlen, "config: must be a map (endpoint: ..., ...)");
    else if (check_keys(conf, err, errlen) == 0 && read_uints(conf, out, err, errlen) == 0 &&
             read_bool(conf, "spans", true, &out->spans, err, errlen) == 0 &&
             read_bool(conf, "metrics", true, &out->metrics, err, errlen) == 0 &&
             read_strings(conf, out, err, errlen) == 0)
        rc = 0;
    json_decref(empty);
    if (rc != 0)
        otlp_config_free(out);
    return rc;
}

void otlp_config_free(otlp_config_t *c)
{
    free(c->endpoint);
    free(c->traces_url);
    free(c->metrics_url);
    free(c->service_name);
    free(c->ca_file);
    json_decref(c->resource);
    for (size_t i = 0; c->headers && c->headers[i]; i++)
        free(c->headers[i]);
    free(c->headers);
    memset(c, 0, sizeof(*c));
}
