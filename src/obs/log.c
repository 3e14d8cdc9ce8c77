/*
 * obs/log.c — see log.h. The buffer is a byte ring guarded by one mutex; the
 * writer thread swaps it out and writes with the lock released.
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

static int g_level = PAR_LOG_INFO;
static int g_json = 1;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_flushed = PTHREAD_COND_INITIALIZER;
static char *g_ring;
static size_t g_used;
static int g_running, g_stop, g_writing;
static pthread_t g_thread;
static atomic_uint_fast64_t g_dropped;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

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

static void *writer(void *arg)
{
    (void)arg;
    char *spare = malloc(RING_BYTES);
    pthread_mutex_lock(&g_lock);
    for (;;) {
        while (g_used == 0 && !g_stop) {
            pthread_cond_broadcast(&g_flushed);
            pthread_cond_wait(&g_cond, &g_lock);
        }
        if (g_used == 0 && g_stop)
            break;
        char *out = g_ring;
        size_t n = g_used;
        g_ring = spare;
        g_used = 0;
        g_writing = 1;
        pthread_mutex_unlock(&g_lock);
        write_fd(out, n);
        spare = out;
        pthread_mutex_lock(&g_lock);
        g_writing = 0;
    }
    pthread_cond_broadcast(&g_flushed);
    pthread_mutex_unlock(&g_lock);
    free(spare);
    return NULL;
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
    for (size_t i = 0; i < n && !l->truncated; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6];
        if (c == '"' || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            put(l, e, 2);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) {
            e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15];
            put(l, e, 6);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[40];
    int n =
        snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (g_json) {
        put(l, "{\"ts\":\"", 7);
        put(l, t, (size_t)n);
        put(l, "\",\"level\":\"", 11);
        put(l, level_names[level], strlen(level_names[level]));
        put(l, "\",\"msg\":\"", 9);
        put_escaped(l, msg, strlen(msg));
        put_closer(l, "\"", 1);
    } else {
        put(l, t, (size_t)n);
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
    char b[32];
    int n = snprintf(b, sizeof(b), "%lld", (long long)val);
    if (put_key(l, key, (size_t)n))
        put(l, b, (size_t)n);
}

void par_log_double(par_logline_t *l, const char *key, double val)
{
    char b[48];
    int n = snprintf(b, sizeof(b), "%.3f", val);
    if (put_key(l, key, (size_t)n))
        put(l, b, (size_t)n);
}

void par_log_end(par_logline_t *l)
{
    if (l->truncated && g_json)
        put_closer(l, ",\"truncated\":true", 17);
    l->truncated = 0;
    if (g_json)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    pthread_mutex_lock(&g_lock);
    if (!g_running) {
        pthread_mutex_unlock(&g_lock);
        write_fd(l->buf, l->len);
        return;
    }
    if (g_used + l->len > RING_BYTES) {
        pthread_mutex_unlock(&g_lock);
        atomic_fetch_add(&g_dropped, 1);
        return;
    }
    memcpy(g_ring + g_used, l->buf, l->len);
    int wake = g_used == 0;
    g_used += l->len;
    if (wake)
        pthread_cond_signal(&g_cond);
    pthread_mutex_unlock(&g_lock);
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
