/*
 * loader/wire.h — the write side of a worker's socket: framed writes that
 * never block, a bounded buffer for what the socket does not take, and
 * corking.
 *
 * Corking lives here and only here. The attached HTTP loop thread turns it on
 * for one turn of its loop (par__runtime_cork, runtime.h) and off at the end
 * (par__runtime_uncork): while on, frames for workers are buffered, and the
 * in-process executor holds its calls (it asks par_wire_corked()); uncorking
 * writes each corked worker's frames with one write. The cork state and the
 * list of corked wires are the calling thread's (thread-local).
 *
 * A wire is guarded by the lock given to par_wire_init (its pool's): every
 * function but cork/corked takes it held, except par_wire_uncork, which takes
 * each wire's lock itself. Must never block or read from the socket.
 */
#ifndef PAR_LOADER_WIRE_H
#define PAR_LOADER_WIRE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/buf.h"

typedef struct par_wire {
    int fd;
    int ep;    /* the epoll set that watches fd (EPOLLOUT armed while buffered) */
    void *tag; /* the epoll data pointer of fd */
    par_buf_t out;
    size_t out_start;
    int out_armed;
    int closed;   /* the worker is gone: writes are dropped */
    int overflow; /* a write did not fit the buffer's cap (cleared by the reader) */
    int corked;
    struct par_wire *cork_next;
    pthread_mutex_t *lock;
} par_wire_t;

void par_wire_init(par_wire_t *w, int fd, int ep, void *tag, size_t cap, pthread_mutex_t *lock);
void par_wire_free(par_wire_t *w);

/* Writes one frame now, buffering what the socket does not take (or all of
 * it while corked). */
void par_wire_frame(par_wire_t *w, uint8_t type, uint64_t id, const char *hdr, size_t hlen,
                    const char *body, size_t blen);
/* Writes what is buffered (EPOLLOUT); disarms EPOLLOUT once empty. */
void par_wire_flush(par_wire_t *w);
/* The worker is gone: drops it from this thread's cork list (it was corked on
 * this thread, the one running its I/O) and refuses further writes. Lock held. */
void par_wire_close(par_wire_t *w);

/* On the attached loop thread: corking on or off for this thread. */
void par_wire_cork(int on);
int par_wire_corked(void);
/* Writes every wire corked by this thread. */
void par_wire_uncork(void);

#endif
