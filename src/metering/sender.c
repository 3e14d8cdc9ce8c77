/*
 * metering/sender.c — see sender.h. The exporter thread only.
 */
#include "metering/sender.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <par/par.h>

#include "obs/trace.h"
#include "util/curl.h"
#include "util/clock.h"

#define BODY_CAP 4096 /* of a refusal kept in a dead letter */
#define SLOTS_MAX 64

typedef struct slot {
    CURL *h;
    struct curl_slist *hdrs;
    par_buf_t resp;
    size_t index; /* the item in flight, or SIZE_MAX */
    char cerr[CURL_ERROR_SIZE];
} slot_t;

struct par_sender {
    const par_stripe_config_t *cfg;
    const char *url;
    CURLM *multi;
    slot_t slots[SLOTS_MAX];
    int nslots;
    int64_t backoff_ms; /* current backoff, 0 after a success */
    int64_t gate_ms;    /* no request starts before (monotonic ms) */
    pthread_mutex_t lock;
    char last_error[512]; /* under lock */
};

static atomic_ullong g_retries;

uint64_t par_sender_retries(void)
{
    return atomic_load(&g_retries);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    par_buf_t *b = ud;
    size_t len = size * n;
    if (b->len < BODY_CAP)
        par_buf_append(b, p, b->len + len > BODY_CAP ? BODY_CAP - b->len : len);
    return len;
}

static void set_error(par_sender_t *s, const char *what, long code)
{
    pthread_mutex_lock(&s->lock);
    if (what)
        snprintf(s->last_error, sizeof(s->last_error), "%s (%ld)", what, code);
    else
        s->last_error[0] = '\0';
    pthread_mutex_unlock(&s->lock);
}

void par_sender_last_error(par_sender_t *s, char *out, size_t cap)
{
    pthread_mutex_lock(&s->lock);
    snprintf(out, cap, "%s", s->last_error);
    pthread_mutex_unlock(&s->lock);
}

par_sender_t *par_sender_new(const par_stripe_config_t *cfg, const char *url)
{
    par_sender_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cfg = cfg;
    s->url = url;
    s->nslots = cfg->concurrency < 1           ? 1
                : cfg->concurrency > SLOTS_MAX ? SLOTS_MAX
                                               : (int)cfg->concurrency;
    pthread_mutex_init(&s->lock, NULL);
    s->multi = curl_multi_init();
    for (int i = 0; i < s->nslots && s->multi; i++) {
        s->slots[i].index = SIZE_MAX;
        par_buf_init(&s->slots[i].resp, BODY_CAP + 1);
        if ((s->slots[i].h = curl_easy_init()) == NULL) {
            s->nslots = i;
            break;
        }
    }
    if (s->multi == NULL || s->nslots == 0) {
        par_sender_free(s);
        return NULL;
    }
    return s;
}

void par_sender_free(par_sender_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < SLOTS_MAX; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->h && sl->index != SIZE_MAX)
            curl_multi_remove_handle(s->multi, sl->h);
        if (sl->h)
            curl_easy_cleanup(sl->h);
        if (sl->hdrs)
            curl_slist_free_all(sl->hdrs);
        par_buf_free(&sl->resp);
    }
    if (s->multi)
        curl_multi_cleanup(s->multi);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void retry_later(par_sender_t *s, int64_t retry_after_s);

/* Starts item `index` on slot `sl`; -1 (nothing started, retried later) when
 * its headers cannot be built. */
static int start(par_sender_t *s, slot_t *sl, const par_send_item_t *it, size_t index)
{
    const par_stripe_config_t *c = s->cfg;
    char auth[1200], idem[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->api_key);
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", it->id);
    if (sl->hdrs)
        curl_slist_free_all(sl->hdrs);
    struct curl_slist *first = curl_slist_append(NULL, auth);
    sl->hdrs = first ? curl_slist_append(first, idem) : NULL;
    if (sl->hdrs == NULL) {
        curl_slist_free_all(first);
        set_error(s, "out of memory", 0);
        retry_later(s, 0);
        return -1;
    }
    par_buf_reset(&sl->resp);
    sl->cerr[0] = '\0';
    CURL *h = sl->h;
    par_curl_opts_t co = {.url = s->url,
                          .protocols = c->allow_http ? "https,http" : "https",
                          .connect_timeout_ms = c->timeout_ms,
                          .timeout_ms = c->timeout_ms,
                          .ca_file = c->ca_file,
                          .on_body = on_body,
                          .body_ud = &sl->resp,
                          .errbuf = sl->cerr,
                          .headers = sl->hdrs};
    par_curl_setup(h, &co);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, it->form);
    curl_easy_setopt(h, CURLOPT_PRIVATE, sl);
    sl->index = index;
    curl_multi_add_handle(s->multi, h);
    return 0;
}

/* A retryable failure: moves the gate by Retry-After (429) or the backoff. */
static void retry_later(par_sender_t *s, int64_t retry_after_s)
{
    atomic_fetch_add(&g_retries, 1);
    const par_stripe_config_t *c = s->cfg;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : c->backoff_min_ms;
    if (s->backoff_ms > c->backoff_max_ms)
        s->backoff_ms = c->backoff_max_ms;
    int64_t wait =
        s->backoff_ms / 2 + (int64_t)(par_trace_rand64() % (uint64_t)(s->backoff_ms / 2 + 1));
    if (retry_after_s > 0 && retry_after_s * 1000 > wait)
        wait = retry_after_s * 1000 > 3600000 ? 3600000 : retry_after_s * 1000;
    int64_t gate = par_mono_ms() + wait;
    if (gate > s->gate_ms)
        s->gate_ms = gate;
}

/* One finished transfer: its outcome, or 0 to retry. */
static int finish(par_sender_t *s, slot_t *sl, CURLcode cc, long *code)
{
    *code = 0;
    if (cc != CURLE_OK) {
        set_error(s, *sl->cerr ? sl->cerr : curl_easy_strerror(cc), (long)cc);
        retry_later(s, 0);
        return 0;
    }
    curl_easy_getinfo(sl->h, CURLINFO_RESPONSE_CODE, code);
    if (*code >= 200 && *code < 300) {
        set_error(s, NULL, 0);
        s->backoff_ms = 0;
        return PAR_SEND_SENT;
    }
    set_error(s, "HTTP status", *code);
    if (*code == 429 || *code >= 500 || *code < 200) {
        curl_off_t ra = 0;
        if (*code == 429 && curl_easy_getinfo(sl->h, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK)
            ra = 0;
        retry_later(s, (int64_t)ra);
        return 0;
    }
    return PAR_SEND_REFUSED;
}

typedef struct run {
    const par_send_item_t *items;
    size_t n, next, finals;
    size_t *retry; /* indexes to send again, before `next` */
    size_t nretry;
    int stopping;
    unsigned char *final; /* per item: made final */
    size_t low;           /* every item before it is final */
} run_t;

/* Items are started at most this far past the lowest one not yet final: a
 * caller that persists only a contiguous prefix of final items (the per-record
 * cursor) then sends at most this many again after a crash, however long one
 * item keeps being retried. */
#define WINDOW_PER_SLOT 2

/* Collects finished transfers; calls `done` for final ones. */
static void reap(par_sender_t *s, run_t *r, par_send_done_fn done, void *ud)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        slot_t *sl = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
        CURLcode cc = msg->data.result;
        curl_multi_remove_handle(s->multi, sl->h);
        size_t index = sl->index;
        sl->index = SIZE_MAX;
        long code;
        int outcome = finish(s, sl, cc, &code);
        if (outcome == 0) {
            r->retry[r->nretry++] = index;
            continue;
        }
        par_buf_append(&sl->resp, "", 1);
        r->finals++;
        r->final[index] = 1;
        while (r->low < r->n && r->final[r->low])
            r->low++;
        if (!r->stopping && done(ud, index, outcome, code, sl->resp.data))
            r->stopping = 1;
    }
}

size_t par_sender_run(par_sender_t *s, const par_send_item_t *items, size_t n,
                      par_send_done_fn done, void *ud, atomic_int *stop)
{
    run_t r = {.items = items, .n = n};
    r.retry = malloc((n + 1) * sizeof(size_t));
    r.final = calloc(n + 1, 1);
    if (r.retry == NULL || r.final == NULL) {
        free(r.retry), free(r.final);
        return 0;
    }
    size_t window = (size_t)s->nslots * WINDOW_PER_SLOT;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < s->nslots; i++)
            busy += s->slots[i].index != SIZE_MAX;
        int can_start = !r.stopping && !atomic_load(stop) && par_mono_ms() >= s->gate_ms;
        for (int i = 0; i < s->nslots && can_start; i++) {
            slot_t *sl = &s->slots[i];
            if (sl->index != SIZE_MAX)
                continue;
            size_t index;
            if (r.nretry)
                index = r.retry[--r.nretry];
            else if (r.next < n && r.next < r.low + window)
                index = r.next++;
            else
                break;
            if (start(s, sl, &items[index], index) != 0) {
                r.retry[r.nretry++] = index;
                break;
            }
            busy++;
        }
        if (r.stopping || atomic_load(stop) || (busy == 0 && r.nretry == 0 && r.next >= n))
            break;
        int running = 0, nfds = 0;
        curl_multi_perform(s->multi, &running);
        reap(s, &r, done, ud);
        if (running)
            curl_multi_poll(s->multi, NULL, 0, 50, &nfds);
        else if (busy == 0) {
            struct timespec ts = {0, 20 * 1000000}; /* waiting for the gate */
            nanosleep(&ts, NULL);
        }
    }
    /* stopping: what is in flight is abandoned; it is sent again later with the
     * same identifier, which the endpoint deduplicates */
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].index != SIZE_MAX) {
            curl_multi_remove_handle(s->multi, s->slots[i].h);
            s->slots[i].index = SIZE_MAX;
        }
    free(r.retry);
    free(r.final);
    return r.finals;
}
