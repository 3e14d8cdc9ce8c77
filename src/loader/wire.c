/*
 * loader/wire.c — see wire.h.
 */
#include "loader/wire.h"

#include <assert.h>
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <par/par.h>

#include "core/proto.h"

/* Frames written by the attached loop thread during one turn of its loop are
 * held in each worker's write buffer and written at the end of the turn, one
 * write per worker for every request the turn read (par_wire_uncork). */
static __thread int tl_cork;
static __thread par_wire_t *tl_corked;

void par_wire_init(par_wire_t *w, int fd, int ep, void *tag, size_t cap, pthread_mutex_t *lock)
{
    *w = (par_wire_t){.fd = fd, .ep = ep, .tag = tag, .lock = lock};
    par_buf_init(&w->out, cap);
}

void par_wire_free(par_wire_t *w)
{
    assert(!w->corked);
    par_buf_free(&w->out);
}

static void arm_out(par_wire_t *w, int on)
{
    if (w->out_armed == on || w->closed)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
                             .data.ptr = w->tag};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, w->fd, &ev);
    w->out_armed = on;
}

static void buffer(par_wire_t *w, struct iovec *iov, int i, int n)
{
    for (; i < n; i++)
        if (par_buf_append(&w->out, iov[i].iov_base, iov[i].iov_len) != PAR_OK)
            w->overflow = 1;
}

static void send_iov(par_wire_t *w, struct iovec *iov, int n)
{
    if (w->closed)
        return;
    if (tl_cork && !w->out_armed) {
        buffer(w, iov, 0, n);
        if (!w->corked) {
            w->corked = 1;
            w->cork_next = tl_corked;
            tl_corked = w;
        }
        return;
    }
    int i = 0;
    if (w->out.len == w->out_start) {
        ssize_t r;
        do {
            r = writev(w->fd, iov, n);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            r = 0; /* EAGAIN, or EPIPE: the read side notices the death */
        while (i < n && (size_t)r >= iov[i].iov_len) {
            r -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + r;
            iov[i].iov_len -= (size_t)r;
        }
    }
    if (i == n)
        return;
    buffer(w, iov, i, n);
    arm_out(w, 1);
}

void par_wire_frame(par_wire_t *w, uint8_t type, uint64_t id, const char *hdr, size_t hlen,
                    const char *body, size_t blen)
{
    uint8_t fh[PAR_PROTO_HEADER_SIZE];
    par_proto_encode(fh, type, id, (uint32_t)hlen, (uint32_t)blen);
    struct iovec iov[3] = {{fh, sizeof(fh)}, {(void *)hdr, hlen}, {(void *)body, blen}};
    send_iov(w, iov, 3);
}

void par_wire_flush(par_wire_t *w)
{
    while (w->out_start < w->out.len) {
        ssize_t r = write(w->fd, w->out.data + w->out_start, w->out.len - w->out_start);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN: wait for EPOLLOUT; errors: read side handles */
        }
        w->out_start += (size_t)r;
    }
    w->out.len = w->out_start = 0;
    arm_out(w, 0);
}

void par_wire_close(par_wire_t *w)
{
    if (w->corked) { /* runs on the corking thread: the list is this thread's */
        for (par_wire_t **pp = &tl_corked; *pp; pp = &(*pp)->cork_next) {
            if (*pp == w) {
                *pp = w->cork_next;
                break;
            }
        }
        w->corked = 0;
        w->cork_next = NULL;
    }
    w->closed = 1;
}

void par_wire_cork(int on)
{
    tl_cork = on;
}

int par_wire_corked(void)
{
    return tl_cork;
}

void par_wire_uncork(void)
{
    while (tl_corked) {
        par_wire_t *w = tl_corked;
        tl_corked = w->cork_next;
        pthread_mutex_lock(w->lock);
        w->corked = 0;
        w->cork_next = NULL;
        if (!w->closed) {
            par_wire_flush(w);
            if (w->out_start < w->out.len)
                arm_out(w, 1); /* the socket is full: the rest goes on EPOLLOUT */
        }
        pthread_mutex_unlock(w->lock);
    }
}
