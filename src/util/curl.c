/*
 * util/curl.c — see curl.h. Any thread.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "util/curl.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_loaded;
static char g_error[300];

/* Until the library is loaded, each entry loads it and then forwards; the
 * ones that need a handle or a list cannot be reached before that. */
static CURLcode tr_global_init(long flags)
{
    (void)flags;
    return par_curl_load() == 0 ? CURLE_OK : CURLE_FAILED_INIT;
}

static void tr_global_cleanup(void)
{
}

static CURL *tr_easy_init(void)
{
    return par_curl_load() == 0 ? par__curl.easy_init() : NULL;
}

static CURLcode tr_easy_setopt(CURL *h, CURLoption opt, ...)
{
    (void)h, (void)opt;
    return CURLE_FAILED_INIT;
}

static CURLcode tr_easy_perform(CURL *h)
{
    (void)h;
    return CURLE_FAILED_INIT;
}

static CURLcode tr_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    (void)h, (void)info;
    return CURLE_FAILED_INIT;
}

static void tr_easy_cleanup(CURL *h)
{
    (void)h;
}

static const char *tr_easy_strerror(CURLcode code)
{
    return par_curl_load() == 0 ? par__curl.easy_strerror(code) : g_error;
}

static char *tr_easy_escape(CURL *h, const char *s, int len)
{
    return par_curl_load() == 0 ? par__curl.easy_escape(h, s, len) : NULL;
}

static void tr_free(void *p)
{
    (void)p; /* nothing libcurl allocated can exist yet */
}

static struct curl_slist *tr_slist_append(struct curl_slist *l, const char *s)
{
    return par_curl_load() == 0 ? par__curl.slist_append(l, s) : NULL;
}

static void tr_slist_free_all(struct curl_slist *l)
{
    (void)l;
}

/* A multi handle needs the library: the first one loads it; the rest take a
 * handle that cannot exist before that. */
static CURLM *tr_multi_init(void)
{
    return par_curl_load() == 0 ? par__curl.multi_init() : NULL;
}

static CURLMcode tr_multi_handle(CURLM *m, CURL *h)
{
    (void)m, (void)h;
    return CURLM_BAD_HANDLE;
}

static CURLMcode tr_multi_perform(CURLM *m, int *running)
{
    (void)m, (void)running;
    return CURLM_BAD_HANDLE;
}

static CURLMcode tr_multi_poll(CURLM *m, struct curl_waitfd *fds, unsigned n, int ms, int *nfds)
{
    (void)m, (void)fds, (void)n, (void)ms, (void)nfds;
    return CURLM_BAD_HANDLE;
}

static CURLMsg *tr_multi_info_read(CURLM *m, int *left)
{
    (void)m, (void)left;
    return NULL;
}

static CURLMcode tr_multi_cleanup(CURLM *m)
{
    (void)m;
    return CURLM_BAD_HANDLE;
}

par_curl_api_t par__curl = {
    .global_init = tr_global_init,
    .global_cleanup = tr_global_cleanup,
    .easy_init = tr_easy_init,
    .easy_setopt = tr_easy_setopt,
    .easy_perform = tr_easy_perform,
    .easy_getinfo = tr_easy_getinfo,
    .easy_cleanup = tr_easy_cleanup,
    .easy_strerror = tr_easy_strerror,
    .easy_escape = tr_easy_escape,
    .free = tr_free,
    .slist_append = tr_slist_append,
    .slist_free_all = tr_slist_free_all,
    .multi_init = tr_multi_init,
    .multi_add_handle = tr_multi_handle,
    .multi_remove_handle = tr_multi_handle,
    .multi_perform = tr_multi_perform,
    .multi_poll = tr_multi_poll,
    .multi_info_read = tr_multi_info_read,
    .multi_cleanup = tr_multi_cleanup,
};

static void load(void)
{
    void *h = dlopen(PAR_CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(g_error, sizeof(g_error), "cannot load %s (HTTP client): %s", PAR_CURL_SONAME,
                 dlerror());
        return;
    }
    par_curl_api_t a;
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"curl_global_init", (void **)&a.global_init},
        {"curl_global_cleanup", (void **)&a.global_cleanup},
        {"curl_easy_init", (void **)&a.easy_init},
        {"curl_easy_setopt", (void **)&a.easy_setopt},
        {"curl_easy_perform", (void **)&a.easy_perform},
        {"curl_easy_getinfo", (void **)&a.easy_getinfo},
        {"curl_easy_cleanup", (void **)&a.easy_cleanup},
        {"curl_easy_strerror", (void **)&a.easy_strerror},
        {"curl_easy_escape", (void **)&a.easy_escape},
        {"curl_free", (void **)&a.free},
        {"curl_slist_append", (void **)&a.slist_append},
        {"curl_slist_free_all", (void **)&a.slist_free_all},
        {"curl_multi_init", (void **)&a.multi_init},
        {"curl_multi_add_handle", (void **)&a.multi_add_handle},
        {"curl_multi_remove_handle", (void **)&a.multi_remove_handle},
        {"curl_multi_perform", (void **)&a.multi_perform},
        {"curl_multi_poll", (void **)&a.multi_poll},
        {"curl_multi_info_read", (void **)&a.multi_info_read},
        {"curl_multi_cleanup", (void **)&a.multi_cleanup},
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        /* POSIX: a function pointer travels through dlsym's void * */
        *syms[i].slot = dlsym(h, syms[i].name);
        if (*syms[i].slot == NULL) {
            snprintf(g_error, sizeof(g_error), "%s has no %s", PAR_CURL_SONAME, syms[i].name);
            return; /* left loaded: nothing of it ran */
        }
    }
    if (a.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(g_error, sizeof(g_error), "%s: curl_global_init failed", PAR_CURL_SONAME);
        return;
    }
    par__curl = a;
    g_loaded = 1;
}

int par_curl_load(void)
{
    pthread_once(&g_once, load);
    return g_loaded ? 0 : -1;
}

const char *par_curl_error(void)
{
    pthread_once(&g_once, load);
    return g_loaded ? NULL : g_error;
}

/* ---- the handle builder -------------------------------------------------------- */

void par_curl_setup(CURL *h, const par_curl_opts_t *o)
{
    curl_easy_setopt(h, CURLOPT_URL, o->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, o->protocols ? o->protocols : "https");
    if (o->max_redirs > 0) {
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, o->protocols ? o->protocols : "https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, o->max_redirs);
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (o->connect_timeout_ms)
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    if (o->timeout_ms)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    if (o->max_bytes)
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file && *o->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "par/" PAR_VERSION_STRING);
    if (o->on_body) {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, o->on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, o->body_ud);
    }
    if (o->on_header) {
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, o->on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, o->header_ud);
    }
    if (o->errbuf) {
        o->errbuf[0] = '\0';
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, o->errbuf);
    }
    if (o->headers)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, o->headers);
}

CURL *par_curl_new(const par_curl_opts_t *o)
{
    CURL *h = curl_easy_init();
    if (h)
        par_curl_setup(h, o);
    return h;
}
