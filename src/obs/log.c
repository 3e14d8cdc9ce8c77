/*
 * obs/log.c — see log.h. The buffer is a byte ring guarded by one mutex; the
 * writer thread swaps it out and writes with the lock released. A thread that
 * asked for batching (an HTTP loop: par_log_thread_batch) collects its lines
 * in a buffer of its own and hands them to the ring once per turn
 * (par_log_flush), so a line costs no lock; lines are formatted without
 * printf (the timestamp's seconds are formatted once per second per thread).
 * The writer wakes only when the ring goes from empty to not, and while lines
 * keep coming it writes at most every WRITE_GATHER_NS, in batches.
 */
#include "obs/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING_BYTES (4u << 20)
#define THREAD_BYTES (64u << 10)        /* a batching thread's own buffer */
#define WRITE_GATHER_NS (5LL * 1000000) /* under load, one write per this at most */

static int g_level = PAR_LOG_INFO;
static int g_json = 1;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_flushed = PTHREAD_COND_INITIALIZER;
static char *g_ring;
static size_t g_used;
static int g_running, g_stop, g_writing, g_sleeping;
static pthread_t g_thread;
static atomic_uint_fast64_t g_dropped;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static __thread char *tl_buf; /* a batching thread's lines, not yet in the ring */
static __thread size_t tl_len;
static __thread time_t tl_sec = -1; /* the second tl_stamp holds */
static __thread char tl_stamp[64];  /* "YYYY-MM-DDTHH:MM:SS." */

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void write_fd(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Under steady load, waits until WRITE_GATHER_NS after the last write so the
 * next write takes a batch; an idle runtime's line goes out at once. */
static void gather(int64_t last_write_ns)
{
    int64_t wait = last_write_ns + WRITE_GATHER_NS - mono_ns();
    if (wait <= 0 || g_stop)
        return;
    pthread_mutex_unlock(&g_lock);
    struct timespec ts = {0, (long)wait};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&g_lock);
}

static void *writer(void *arg)
{
    (void)arg;
    char *spare = malloc(RING_BYTES);
    int64_t last_write = 0;
    pthread_mutex_lock(&g_lock);
    for (;;) {
        while (g_used == 0 && !g_stop) {
            pthread_cond_broadcast(&g_flushed);
            g_sleeping = 1;
            pthread_cond_wait(&g_cond, &g_lock);
            g_sleeping = 0;
        }
        if (g_used == 0 && g_stop)
            break;
        if (spare != NULL)
            gather(last_write);
        char *out = g_ring;
        size_t n = g_used;
        if (spare != NULL) { /* else: write from the ring, holding the lock */
            g_ring = spare;
            g_used = 0;
            g_writing = 1;
            pthread_mutex_unlock(&g_lock);
        }
        write_fd(out, n);
        last_write = mono_ns();
        if (spare == NULL) {
            g_used = 0;
            continue;
        }
        spare = out;
        pthread_mutex_lock(&g_lock);
        g_writing = 0;
    }
    pthread_cond_broadcast(&g_flushed);
    pthread_mutex_unlock(&g_lock);
    free(spare);
    return NULL;
}

/* Appends whole lines to the ring (or writes them when there is no writer). */
static void ring_put(const char *p, size_t n)
{
    pthread_mutex_lock(&g_lock);
    if (!g_running) {
        pthread_mutex_unlock(&g_lock);
        write_fd(p, n);
        return;
    }
    if (g_used + n > RING_BYTES) {
        pthread_mutex_unlock(&g_lock);
        uint64_t lines = 0;
        for (const char *q = p; (q = memchr(q, '\n', (size_t)(p + n - q))) != NULL; q++)
            lines++;
        atomic_fetch_add(&g_dropped, lines);
        return;
    }
    memcpy(g_ring + g_used, p, n);
    g_used += n;
    if (g_sleeping)
        pthread_cond_signal(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

void par_log_flush(void)
{
    if (tl_len) {
        ring_put(tl_buf, tl_len);
        tl_len = 0;
    }
}

void par_log_thread_batch(int on)
{
    if (on && tl_buf == NULL) {
        tl_buf = malloc(THREAD_BYTES); /* NULL: this thread's lines go to the ring one by one */
        tl_len = 0;
    } else if (!on && tl_buf != NULL) {
        par_log_flush();
        free(tl_buf);
        tl_buf = NULL;
    }
}

void par_log_init(int level, int json)
{
    g_level = level;
    g_json = json;
    pthread_mutex_lock(&g_lock);
    if (!g_running) {
        g_ring = malloc(RING_BYTES);
        g_stop = 0;
        if (g_ring && pthread_create(&g_thread, NULL, writer, NULL) == 0)
            g_running = 1;
    }
    pthread_mutex_unlock(&g_lock);
}

void par_log_shutdown(void)
{
    pthread_mutex_lock(&g_lock);
    if (!g_running) {
        pthread_mutex_unlock(&g_lock);
        return;
    }
    g_stop = 1;
    pthread_cond_signal(&g_cond);
    pthread_mutex_unlock(&g_lock);
    pthread_join(g_thread, NULL);
    pthread_mutex_lock(&g_lock);
    g_running = 0;
    free(g_ring);
    g_ring = NULL;
    pthread_mutex_unlock(&g_lock);
}

int par_log_level(void)
{
    return g_level;
}

int par_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return PAR_LOG_WARN;
    return -1;
}

uint64_t par_log_dropped(void)
{
    return atomic_load(&g_dropped);
}

/* Room kept at the end of a line for what always follows: a closing quote,
 * `,"truncated":true` and `}\n`. */
#define LINE_RESERVE 32

/* Appends unless the line is full; a full line takes nothing more (so every
 * field is either whole or absent). */
static void put(par_logline_t *l, const char *s, size_t n)
{
    if (l->truncated || l->len + n > PAR_LOGLINE_MAX - LINE_RESERVE) {
        l->truncated = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Appends into the reserve: only for the closers counted in LINE_RESERVE. */
static void put_closer(par_logline_t *l, const char *s, size_t n)
{
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* A string's bytes, escaped; stops (truncated) where the line is full, so the
 * caller's closing quote always fits. */
static void put_escaped(par_logline_t *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n && !l->truncated) {
        size_t run = i;
        while (run < n && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\' &&
               s[run] != 0x7f)
            run++;
        if (run > i) {
            size_t room = PAR_LOGLINE_MAX - LINE_RESERVE - l->len; /* put keeps len below */
            if (run - i > room) { /* cut the field where the line is full, as a byte at a
                                     time would */
                put(l, s + i, room);
                l->truncated = 1;
                return;
            }
            put(l, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        char e[6];
        if (c == '"' || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            put(l, e, 2);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else {
            e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15];
            put(l, e, 6);
        }
    }
}

/* Decimal digits of v into the end of b[24]; returns where they start. */
static char *u64_digits(char b[24], uint64_t v)
{
    char *p = b + 24;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return p;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" into t[32]; the date is formatted once a second. */
static size_t timestamp(char t[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != tl_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(tl_stamp, sizeof(tl_stamp), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        tl_sec = ts.tv_sec;
    }
    memcpy(t, tl_stamp, 20);
    long ms = ts.tv_nsec / 1000000;
    t[20] = (char)('0' + ms / 100), t[21] = (char)('0' + ms / 10 % 10),
    t[22] = (char)('0' + ms % 10);
    t[23] = 'Z';
    return 24;
}

/* Starts a field; returns 0 (and writes nothing) when the key and `extra`
 * more bytes no longer fit. */
static int put_key(par_logline_t *l, const char *key, size_t extra)
{
    size_t k = strlen(key);
    if (l->truncated || l->len + k + 4 + extra > PAR_LOGLINE_MAX - LINE_RESERVE) {
        l->truncated = 1;
        return 0;
    }
    if (g_json) {
        put(l, ",\"", 2);
        put(l, key, k);
        put(l, "\":", 2);
    } else {
        put(l, " ", 1);
        put(l, key, k);
        put(l, "=", 1);
    }
    return 1;
}

int par_log_begin(par_logline_t *l, int level, const char *msg)
{
    if (level < g_level)
        return 0;
    l->len = 0;
    l->truncated = 0;
    char t[32];
    size_t n = timestamp(t);
    if (g_json) {
        put(l, "{\"ts\":\"", 7);
        put(l, t, n);
        put(l, "\",\"level\":\"", 11);
        put(l, level_names[level], strlen(level_names[level]));
        put(l, "\",\"msg\":\"", 9);
        put_escaped(l, msg, strlen(msg));
        put_closer(l, "\"", 1);
    } else {
        put(l, t, n);
        put(l, " ", 1);
        put(l, level_names[level], strlen(level_names[level]));
        put(l, " ", 1);
        put_escaped(l, msg, strlen(msg));
    }
    return 1;
}

void par_log_strn(par_logline_t *l, const char *key, const char *val, size_t len)
{
    if (!put_key(l, key, 2))
        return;
    if (g_json)
        put(l, "\"", 1);
    put_escaped(l, val, len);
    if (g_json)
        put_closer(l, "\"", 1);
}

void par_log_str(par_logline_t *l, const char *key, const char *val)
{
    if (val)
        par_log_strn(l, key, val, strlen(val));
}

void par_log_int(par_logline_t *l, const char *key, int64_t val)
{
    char b[24];
    char *p = u64_digits(b, val < 0 ? 0 - (uint64_t)val : (uint64_t)val);
    if (val < 0)
        *--p = '-';
    size_t n = (size_t)(b + 24 - p);
    if (put_key(l, key, n))
        put(l, p, n);
}

void par_log_double(par_logline_t *l, const char *key, double val)
{
    char b[48];
    size_t n;
    if (val > -1e15 && val < 1e15) { /* "%.3f" by hand: the milli-units, rounded */
        double r = val * 1000.0;
        int64_t m = (int64_t)(r < 0 ? r - 0.5 : r + 0.5);
        uint64_t a = m < 0 ? 0 - (uint64_t)m : (uint64_t)m;
        char d[24];
        char *p = u64_digits(d, a / 1000);
        n = 0;
        if (m < 0)
            b[n++] = '-';
        memcpy(b + n, p, (size_t)(d + 24 - p));
        n += (size_t)(d + 24 - p);
        b[n++] = '.';
        b[n++] = (char)('0' + a % 1000 / 100), b[n++] = (char)('0' + a % 100 / 10);
        b[n++] = (char)('0' + a % 10);
    } else {
        int k = snprintf(b, sizeof(b), "%.3f", val);
        n = k > 0 && (size_t)k < sizeof(b) ? (size_t)k : 0;
    }
    if (put_key(l, key, n))
        put(l, b, n);
}

void par_log_end(par_logline_t *l)
{
    if (l->truncated && g_json)
        put_closer(l, ",\"truncated\":true", 17);
    l->truncated = 0;
    if (g_json)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    if (tl_buf != NULL) { /* a batching thread: its buffer, no lock */
        if (tl_len + l->len > THREAD_BYTES)
            par_log_flush();
        memcpy(tl_buf + tl_len, l->buf, l->len);
        tl_len += l->len;
        return;
    }
    ring_put(l->buf, l->len);
}

void par_log_msg(int level, const char *fmt, ...)
{
    par_logline_t l;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (par_log_begin(&l, level, msg))
        par_log_end(&l);
}
