/*
 * obs/log.h — structured logs: one JSON object per line on stderr.
 *
 * Lines are formatted on the caller's stack and copied into a bounded buffer
 * that a writer thread drains, so no caller (an event loop in particular)
 * ever blocks on a slow stderr; when the buffer is full the line is dropped
 * and counted (par_log_dropped()). Any thread.
 *
 *   par_logline_t l;
 *   if (par_log_begin(&l, PAR_LOG_INFO, "package loaded")) {
 *       par_log_str(&l, "package", name);
 *       par_log_int(&l, "workers", 2);
 *       par_log_end(&l);
 *   }
 */
#ifndef PAR_OBS_LOG_H
#define PAR_OBS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <par/agent.h> /* PAR_LOG_* levels */

#define PAR_LOGLINE_MAX 4096

typedef struct par_logline {
    size_t len;
    int truncated;
    char buf[PAR_LOGLINE_MAX];
} par_logline_t;

/* Starts the writer thread. level: PAR_LOG_*; json=0 gives "text" lines for
 * local development. Safe to call once; lines logged before go out directly. */
void par_log_init(int level, int json);
/* Flushes what is buffered and stops the writer thread. */
void par_log_shutdown(void);
int par_log_level(void);
/* "debug" | "info" | "warn" | "error" → level, -1 when unknown. */
int par_log_parse_level(const char *s);
uint64_t par_log_dropped(void);

/* Returns 0 (and does nothing) when `level` is filtered out. */
int par_log_begin(par_logline_t *l, int level, const char *msg);
void par_log_str(par_logline_t *l, const char *key, const char *val);
void par_log_strn(par_logline_t *l, const char *key, const char *val, size_t len);
void par_log_int(par_logline_t *l, const char *key, int64_t val);
void par_log_double(par_logline_t *l, const char *key, double val);
void par_log_end(par_logline_t *l);

/* A thread that runs turns (an HTTP loop) may batch: its lines collect in a
 * buffer of its own, without a lock, and reach the writer when it calls
 * par_log_flush() (at the end of every turn) or the buffer fills. Turning it
 * off flushes. Lines of other threads are unaffected. */
void par_log_thread_batch(int on);
void par_log_flush(void);

/* One-liners. */
void par_log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
