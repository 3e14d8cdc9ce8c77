/*
 * worker/frames.c — par-worker's writing side of the worker protocol
 * (docs/worker-protocol.md).
 *
 * Every frame goes out whole under one write lock, from whichever thread
 * produced it. Frames of jobs the reading thread runs one after the other
 * are collected while more of its queued jobs follow, and written with the
 * last one: one write for a batch of answers. Any other frame written
 * (another thread's, a CALL) takes what is collected with it, and the
 * watchdog writes it out when a job runs long (reader.c), so nothing waits
 * behind a slow job for more than the watchdog's interval.
 * It must never write part of a frame, and it exits the process when the
 * runtime has gone (a failed write).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/proto.h"
#include "worker/worker.h"

#define WBUF_MAX_FRAME (64u * 1024) /* larger frames are never copied */

static pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;
static par_buf_t g_wbuf;         /* guarded by g_write_lock */
static __thread int tl_batching; /* this thread runs a job that more queued jobs follow */

int worker_frames_init(void)
{
    par_buf_init(&g_wbuf, 0);
    return 0;
}

void worker_batching(int on)
{
    tl_batching = on;
}

static int write_all(const struct iovec *iov_in, int n)
{
    struct iovec iov[4];
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)n);
    int i = 0;
    while (i < n) {
        ssize_t w = writev(g_fd, iov + i, n - i);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (i < n && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    return 0;
}

void worker_send_frame(uint8_t type, uint64_t id, const char *hdr, size_t hlen, const char *body,
                       size_t blen)
{
    uint8_t fh[PAR_PROTO_HEADER_SIZE];
    par_proto_encode(fh, type, id, (uint32_t)hlen, (uint32_t)blen);
    pthread_mutex_lock(&g_write_lock);
    /* a CALL and an EVENT go out at once: someone waits for them */
    if (tl_batching && type != PAR_FRAME_CALL && type != PAR_FRAME_EVENT &&
        hlen + blen <= WBUF_MAX_FRAME) {
        size_t mark = g_wbuf.len;
        if (par_buf_append(&g_wbuf, (const char *)fh, sizeof(fh)) == PAR_OK &&
            par_buf_append(&g_wbuf, hdr, hlen) == PAR_OK &&
            par_buf_append(&g_wbuf, body, blen) == PAR_OK) {
            pthread_mutex_unlock(&g_write_lock);
            return;
        }
        g_wbuf.len = mark; /* whole frames only: this one goes out directly */
    }
    struct iovec iov[4] = {
        {g_wbuf.data, g_wbuf.len}, {fh, sizeof(fh)}, {(void *)hdr, hlen}, {(void *)body, blen}};
    int rc = g_wbuf.len ? write_all(iov, 4) : write_all(iov + 1, 3);
    par_buf_reset(&g_wbuf);
    pthread_mutex_unlock(&g_write_lock);
    if (rc != 0)
        _exit(0); /* the runtime is gone */
}

void worker_flush_frames(void)
{
    pthread_mutex_lock(&g_write_lock);
    int rc = 0;
    if (g_wbuf.len) {
        struct iovec iov = {g_wbuf.data, g_wbuf.len};
        rc = write_all(&iov, 1);
        par_buf_reset(&g_wbuf);
    }
    pthread_mutex_unlock(&g_write_lock);
    if (rc != 0)
        _exit(0);
}

void worker_send_json(uint8_t type, uint64_t id, json_t *hdr, const char *body, size_t blen)
{
    char *h = hdr ? json_dumps(hdr, JSON_COMPACT) : NULL;
    worker_send_frame(type, id, h, h ? strlen(h) : 0, body, blen);
    free(h);
}

void worker_send_error(uint64_t id, const char *name, const char *msg)
{
    json_t *h = json_pack("{s:s, s:s}", "error", name, "message", msg);
    worker_send_json(PAR_FRAME_ERROR, id, h, NULL, 0);
    json_decref(h);
}

void worker_die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g_fd >= 0) {
        json_t *h = json_pack("{s:s, s:s}", "error", "load_failed", "message", msg);
        worker_send_json(PAR_FRAME_ERROR, 0, h, NULL, 0);
        json_decref(h);
    }
    fprintf(stderr, "par-worker: %s\n", msg);
    exit(3);
}
