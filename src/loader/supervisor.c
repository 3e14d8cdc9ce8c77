/*
 * loader/supervisor.c — the supervisor's I/O and the lives of workers: the
 * epoll thread (or the event loop attached in its place), starting workers,
 * noticing their deaths and failing what they held, deadlines, respawns and
 * the end of stopped pools. See supervisor.h; the types and locking rules are
 * loader/worker.h's.
 *
 * Threads: io_iterate runs on whichever thread holds io_lock (the I/O thread,
 * or an attached loop). par_super_new/free on the runtime's owner thread.
 * Must never run a call's completion with a pool lock held.
 */
#include "loader/supervisor.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loader/worker.h"
#include "obs/log.h"

#define MAINT_INTERVAL_MS 10

void par__super_wake(par_super_t *s)
{
    uint64_t one = 1;
    ssize_t r = write(s->wake_fd, &one, sizeof(one));
    (void)r;
}

void par__done_run(par_super_t *s, par_done_list_t *d)
{
    while (d->head) {
        par_pool_ent_t *e = d->head;
        d->head = e->next;
        e->next = NULL;
        s->hooks.call_finish(par__q_call(e));
    }
}

void par__pool_fail_queued(par_pool_t *p, int status, const char *msg, par_done_list_t *done)
{
    for (par_pool_ent_t *e = par_pool_core_take_queue(&p->core), *next; e; e = next) {
        next = e->next;
        par_call_t *c = par__q_call(e);
        assert(!e->holds_slot);
        par__call_set_error(c, status, msg);
        par__done_push(done, c);
    }
}

/* Takes every call out of the worker (those `pred` picks, or all), gives
 * their slots back and hands each to `fail` for its status. Lock held. */
static void fail_pending(par_worker_t *w, int (*pred)(par_pending_ent_t *, void *), void *arg,
                         void (*fail)(par_worker_t *, par_call_t *, void *), par_done_list_t *done)
{
    for (par_pending_ent_t *e = par_pending_take_if(&w->pending, pred, arg), *next; e; e = next) {
        next = e->next;
        par_call_t *c = par__pend_call(e);
        par_slot_t *s = par__slot(c);
        s->worker = NULL;
        par_pool_core_release_slot(&w->pool->core, &s->q);
        fail(w, c, arg);
        par__done_push(done, c);
    }
}

/* ---- starting a worker ---------------------------------------------------------- */

/* The first worker could not even be started: the pool's start fails. */
static void spawn_failed(par_pool_t *p, int rc)
{
    par_log_msg(PAR_LOG_ERROR, "cannot start worker %s: %s", p->argv[0], strerror(rc));
    if (p->started)
        return;
    char msg[PATH_MAX + 64];
    snprintf(msg, sizeof(msg), "cannot start the worker %s: %s", p->argv[0], strerror(rc));
    free(p->start_error);
    p->start_error = strdup(msg);
    p->start_failed = 1;
    pthread_cond_broadcast(&p->cond);
}

static par_worker_t *worker_new(par_pool_t *p, uint64_t wid, pid_t pid, int fd, int out_fd)
{
    par_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->pool = p;
    w->wid = wid;
    w->pid = pid;
    w->fd = fd;
    w->out_fd = out_fd;
    w->state = W_STARTING;
    w->started_ms = par__now_ms();
    par_buf_init(&w->in, 0);
    w->sock_tag = (par_tag_t){TAG_SOCK, w};
    w->out_tag = (par_tag_t){TAG_OUT, w};
    par_wire_init(&w->wire, fd, p->s->ep, &w->sock_tag, 256u << 20, &p->lock);
    return w;
}

static void worker_watch(par_super_t *s, par_worker_t *w)
{
    par_pool_t *p = w->pool;
    char key[512];
    snprintf(key, sizeof(key), "%s@%s", p->name, p->version);
    par_scratch_watch(s->quota, w->wid, w->pid, w->scratch, key, (uint64_t)p->scratch_mb << 20);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &w->sock_tag};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, w->fd, &ev);
    struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &w->out_tag};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, w->out_fd, &ev2);
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_DEBUG, "worker started")) {
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", w->pid);
        par_log_end(&l);
    }
}

/* Pool lock held. */
static int spawn_worker(par_pool_t *p)
{
    par_super_t *s = p->s;
    pthread_mutex_lock(&s->lock);
    uint64_t wid = ++s->next_wid;
    pthread_mutex_unlock(&s->lock);
    char *scratch = par_spawn_scratch(s->scratch_base, p->name, p->version, wid, p->uid, p->gid);
    pid_t pid = -1;
    int fd = -1, out_fd = -1;
    int rc = scratch ? par_spawn_process(p->argv, p->envp, scratch, &pid, &fd, &out_fd) : EIO;
    par_worker_t *w = rc == 0 ? worker_new(p, wid, pid, fd, out_fd) : NULL;
    if (rc == 0 && w == NULL) { /* out of memory: the process goes again */
        par_spawn_kill(pid);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        close(fd), close(out_fd);
        rc = ENOMEM;
    }
    if (rc != 0) {
        if (scratch)
            par_spawn_remove_tree(scratch);
        free(scratch);
        if (rc > 0)
            spawn_failed(p, rc);
        return PAR_E_IO;
    }
    w->scratch = scratch;
    worker_watch(s, w);
    w->next = p->workers;
    p->workers = w;
    par_pool_core_worker_up(&p->core);
    return PAR_OK;
}

/* ---- worker death ---------------------------------------------------------------- */

/* How a worker ended, learnt before its lock is taken. */
typedef struct death {
    int st; /* wait status */
    char how[128];
    uint64_t scratch_used, scratch_limit;
} death_t;

static void describe_exit(int st, char *buf, size_t n)
{
    if (WIFSIGNALED(st))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else if (WIFEXITED(st))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(st));
    else
        snprintf(buf, n, "ended (status %d)", st);
}

static int reason_is(const par_worker_t *w, const char *reason)
{
    return w->kill_reason && strcmp(w->kill_reason, reason) == 0;
}

/* What a call that was in a dead worker says: its status and message. */
static int death_message(const par_worker_t *w, const par_call_t *c, const death_t *d, char *msg,
                         size_t n)
{
    const par_pool_t *p = w->pool;
    int pid = (int)w->pid, st = d->st;
    if (reason_is(w, "cancel ignored")) {
        snprintf(msg, n,
                 "the worker (pid %d) running agent '%s' was killed: it went on running a "
                 "cancelled call past runs.cancel_grace_ms, and its other calls went with it",
                 pid, c->agent_id);
        return PAR_E_AGENT_CRASHED;
    }
    if (reason_is(w, "protocol error")) {
        snprintf(msg, n,
                 "the worker (pid %d) running agent '%s' broke the worker protocol and "
                 "was stopped",
                 pid, c->agent_id);
        return PAR_E_PROTOCOL;
    }
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGXFSZ) {
        snprintf(msg, n,
                 "the worker (pid %d) running agent '%s' wrote a file larger than the "
                 "scratch quota of %u MB (limits.scratch_mb, RLIMIT_FSIZE) and was stopped",
                 pid, c->agent_id, p->scratch_mb);
        return PAR_E_SCRATCH_QUOTA;
    }
    if (reason_is(w, "scratch quota exceeded")) {
        snprintf(msg, n,
                 "the worker (pid %d) running agent '%s' was stopped: its package used at "
                 "least %llu MB of scratch space, over its quota of %llu MB "
                 "(limits.scratch_mb)",
                 pid, c->agent_id, (unsigned long long)(d->scratch_used >> 20),
                 (unsigned long long)(d->scratch_limit >> 20));
        return PAR_E_SCRATCH_QUOTA;
    }
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU)
        snprintf(msg, n,
                 "the worker (pid %d) running agent '%s' used up its CPU time limit of "
                 "%u s (RLIMIT_CPU) and was stopped",
                 pid, c->agent_id, p->cpu_seconds);
    else if (p->memory_mb)
        snprintf(msg, n,
                 "the worker (pid %d) running agent '%s' died: %s (its memory is "
                 "limited to %u MB; an agent that needs more dies this way)",
                 pid, c->agent_id, d->how, p->memory_mb);
    else
        snprintf(msg, n, "the worker (pid %d) running agent '%s' died: %s", pid, c->agent_id,
                 d->how);
    return PAR_E_AGENT_CRASHED;
}

static void fail_died(par_worker_t *w, par_call_t *c, void *arg)
{
    char msg[640];
    int status = death_message(w, c, arg, msg, sizeof(msg));
    par__call_set_error(c, status, msg);
}

/* Stops watching the worker, kills and reaps it. No lock held. */
static void worker_reap(par_super_t *s, par_worker_t *w, death_t *d)
{
    par__worker_drain_output(w);
    epoll_ctl(s->ep, EPOLL_CTL_DEL, w->fd, NULL);
    epoll_ctl(s->ep, EPOLL_CTL_DEL, w->out_fd, NULL);
    /* forgotten before the pid is reaped */
    if (par_scratch_forget(s->quota, w->wid, &d->scratch_used, &d->scratch_limit))
        w->kill_reason = "scratch quota exceeded";
    par_spawn_kill(w->pid);
    d->st = 0;
    while (waitpid(w->pid, &d->st, 0) < 0 && errno == EINTR)
        ;
    describe_exit(d->st, d->how, sizeof(d->how));
}

static void worker_unlink(par_pool_t *p, par_worker_t *w)
{
    for (par_worker_t **pp = &p->workers; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            return;
        }
    }
}

/* Counts the death; returns 1 when it was a crash. Lock held. */
static int worker_gone(par_pool_t *p, par_worker_t *w, int was_state, const death_t *d,
                       par_done_list_t *done)
{
    if (was_state == W_STARTING || was_state == W_READY)
        par_pool_core_worker_down(&p->core);
    worker_unlink(p, w);
    int crashed = !p->stopping && !p->start_failed && w->kill_reason == NULL;
    if (reason_is(w, "deadline exceeded"))
        p->core.timeout_kills++;
    if (was_state == W_STARTING && !p->started) {
        p->start_failed = 1;
        char *e = par__worker_start_error(w, d->how, p->start_error);
        if (e) {
            free(p->start_error);
            p->start_error = e;
        }
    }
    if (crashed)
        par_pool_core_crashed(&p->core, par__now_ms(), (unsigned)rand());
    if (crashed && par_pool_core_crash_loop(&p->core, par__pool_any_ready(p)))
        par__pool_fail_queued(p, PAR_E_UNAVAILABLE, "the agent's package is in a crash loop", done);
    return crashed;
}

static void log_worker_end(const par_worker_t *w, int crashed, int was_state, const death_t *d)
{
    const par_pool_t *p = w->pool;
    par_logline_t l;
    if (par_log_begin(&l, crashed ? PAR_LOG_WARN : PAR_LOG_DEBUG,
                      crashed ? "worker crashed" : "worker stopped")) {
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", w->pid);
        par_log_str(&l, "exit", d->how);
        if (w->kill_reason)
            par_log_str(&l, "reason", w->kill_reason);
        if (was_state == W_STARTING && w->tail_len)
            par_log_strn(&l, "last_output", w->tail, w->tail_len - 1);
        par_log_end(&l);
    }
}

/* The worker is gone: its scratch directory goes with it. */
static void worker_free_sandbox(par_worker_t *w)
{
    par_super_t *s = w->pool->s;
    if (w->scratch && atomic_load(&s->attached)) {
        par_trash_t *t = malloc(sizeof(*t));
        if (t) {
            t->path = w->scratch;
            pthread_mutex_lock(&s->lock);
            t->next = s->trash;
            s->trash = t;
            pthread_mutex_unlock(&s->lock);
            pthread_cond_signal(&s->io_cond);
            w->scratch = NULL;
        }
    }
    if (w->scratch) {
        par_spawn_remove_tree(w->scratch);
        free(w->scratch);
        w->scratch = NULL;
    }
    json_decref(w->sandbox);
    w->sandbox = NULL;
}

static void worker_free(par_worker_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->out_fd >= 0)
        close(w->out_fd);
    par_buf_free(&w->in);
    par_wire_free(&w->wire);
    par__worker_grace_free(w);
    worker_free_sandbox(w);
    free(w);
}

static void worker_dead(par_worker_t *w)
{
    par_pool_t *p = w->pool;
    death_t d;
    worker_reap(p->s, w, &d);
    par_done_list_t done = {NULL};
    pthread_mutex_lock(&p->lock);
    int was_state = w->state;
    w->state = W_DEAD;
    par_wire_close(&w->wire);
    fail_pending(w, NULL, &d, fail_died, &done);
    assert(w->pending.count == 0);
    int crashed = worker_gone(p, w, was_state, &d, &done);
    int looping = crashed && par_pool_core_crash_loop(&p->core, par__pool_any_ready(p));
    unsigned in_row = p->core.crashes_in_row;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (looping)
        par_log_msg(PAR_LOG_WARN, "%s@%s is in a crash loop (%u crashes in a row)", p->name,
                    p->version, in_row);
    log_worker_end(w, crashed, was_state, &d);
    worker_free(w);
    par__done_run(p->s, &done);
}

/* ---- maintenance ----------------------------------------------------------------- */

static int call_expired(par_pending_ent_t *e, void *arg)
{
    const par_call_t *c = par__pend_call(e);
    return c->deadline_ms != 0 && c->deadline_ms <= *(const int64_t *)arg;
}

/* A call past its deadline: the worker is told, and replaced. Lock held. */
static void fail_timed_out(par_worker_t *w, par_call_t *c, void *arg)
{
    (void)arg;
    par__worker_send(w, PAR_FRAME_CANCEL, par__slot(c)->pend.id, NULL, 0, NULL, 0);
    char msg[400];
    snprintf(msg, sizeof(msg),
             "agent '%s' did not answer within its deadline; its worker is replaced", c->agent_id);
    par__call_set_error(c, PAR_E_TIMEOUT, msg);
    if (w->state != W_RETIRING) {
        if (w->state == W_READY || w->state == W_STARTING)
            par_pool_core_worker_down(&w->pool->core);
        w->state = W_RETIRING;
        w->kill_reason = "deadline exceeded";
    }
}

static void fail_unloaded(par_worker_t *w, par_call_t *c, void *arg)
{
    (void)w, (void)arg;
    par__call_set_error(c, PAR_E_DRAINING,
                        "the agent's package version was unloaded before it answered");
}

/* A worker still running a call it was told to cancel, past the call's
 * grace (par_pool_cancel_grace): killed now and replaced; its other calls
 * fail as in a crash (worker_dead). Lock held. */
static void kill_if_ignoring_cancel(par_worker_t *w, int64_t now)
{
    int64_t ignored_ms;
    uint64_t id;
    if (w->graces == NULL || reason_is(w, "cancel ignored") ||
        !par__worker_grace_overdue(w, now, &ignored_ms, &id))
        return;
    par_pool_t *p = w->pool;
    par_logline_t l;
    char msg[96];
    snprintf(msg, sizeof(msg), "worker ignored a cancel for %lld ms; killed",
             (long long)ignored_ms);
    if (par_log_begin(&l, PAR_LOG_WARN, msg)) {
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", w->pid);
        par_log_int(&l, "call", (int64_t)id);
        par_log_int(&l, "other_calls", (int64_t)w->pending.count);
        par_log_end(&l);
    }
    if (w->state == W_READY || w->state == W_STARTING)
        par_pool_core_worker_down(&p->core); /* replaced at once: no new call goes to it */
    w->state = W_RETIRING;
    w->kill_reason = "cancel ignored";
    p->cancel_kills++;
    par_spawn_kill(w->pid);
}

/* Deadlines of calls in workers and of starting workers; cancels ignored. Lock held. */
static void check_workers(par_pool_t *p, int64_t now, par_done_list_t *done)
{
    for (par_worker_t *w = p->workers; w; w = w->next) {
        if (w->state == W_DEAD)
            continue;
        kill_if_ignoring_cancel(w, now);
        fail_pending(w, call_expired, &now, fail_timed_out, done);
        if (w->state == W_RETIRING && w->pending.count == 0)
            par_spawn_kill(w->pid);
        /* a worker that never says HELLO is killed */
        if (w->state == W_STARTING && now - w->started_ms > PAR_START_TIMEOUT_MS) {
            w->kill_reason = "start timeout";
            if (p->start_error == NULL)
                p->start_error = strdup("worker did not become ready within 10 s");
            par_spawn_kill(w->pid);
        }
    }
    for (par_pool_ent_t *e = par_pool_core_take_expired(&p->core, now), *next; e; e = next) {
        next = e->next;
        par_call_t *c = par__q_call(e);
        par__call_set_error(c, PAR_E_TIMEOUT,
                            "the call waited for a worker or a free slot past its deadline");
        par__done_push(done, c);
    }
}

/* A stopping pool: workers close once idle (at once when stop_now). Lock held. */
static void stop_workers(par_pool_t *p, par_done_list_t *done)
{
    for (par_worker_t *w = p->workers; w; w = w->next) {
        if (p->stop_now) /* unloaded before its calls finished: they end with `draining` */
            fail_pending(w, NULL, NULL, fail_unloaded, done);
        if (w->pending.count == 0 || p->stop_now) {
            if (w->kill_reason == NULL)
                w->kill_reason = "stopped";
            par_spawn_kill(w->pid);
        }
    }
    if (p->stop_now)
        par__pool_fail_queued(p, PAR_E_DRAINING, "the package is being unloaded", done);
}

static void pool_maintain(par_pool_t *p, int64_t now)
{
    par_done_list_t done = {NULL};
    pthread_mutex_lock(&p->lock);
    check_workers(p, now, &done);
    /* workers: keep min_workers live, grow on demand, respawn after backoff */
    if (!p->stopping && !p->start_failed) {
        for (unsigned n = par_pool_core_spawn_count(&p->core, now); n > 0; n--) {
            if (spawn_worker(p) != PAR_OK) {
                par_pool_core_spawn_failed(&p->core, now);
                break;
            }
        }
    }
    par__pool_drain_queue(p);
    /* a worker that lived 30 s resets the crash streak */
    for (par_worker_t *w = p->workers; w; w = w->next)
        if (w->state == W_READY)
            par_pool_core_uptime(&p->core, now - w->started_ms);
    if (p->stopping)
        stop_workers(p, &done);
    par__pool_unlock(p); /* `started` of the calls the queue gave workers */
    par__done_run(p->s, &done);
}

static void maintain(par_super_t *s)
{
    int64_t now = par__now_ms();
    s->hooks.tick(s->hooks.owner, now);
    pthread_mutex_lock(&s->lock);
    for (par_pool_t **pp = &s->pools; *pp;) {
        par_pool_t *p = *pp;
        pthread_mutex_unlock(&s->lock);
        pool_maintain(p, now);
        pthread_mutex_lock(&s->lock);
        pthread_mutex_lock(&p->lock);
        int gone = p->stopping && p->workers == NULL && p->core.q_head == NULL &&
                   atomic_load(&p->refs) == 0;
        pthread_mutex_unlock(&p->lock);
        if (gone) {
            *pp = p->next;
            par__pool_free(p);
        } else {
            pp = &p->next;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- the I/O --------------------------------------------------------------------- */

/* Reads and writes one worker socket's events; returns 1 when it died. */
static int socket_event(par_worker_t *w, uint32_t events)
{
    if (events & EPOLLOUT) {
        pthread_mutex_lock(&w->pool->lock);
        par_wire_flush(&w->wire);
        pthread_mutex_unlock(&w->pool->lock);
    }
    int dead = 0;
    if (events & EPOLLIN)
        dead = par__worker_read(w) != 0;
    if (!dead && (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
        par__worker_read(w);
        dead = 1;
    }
    return dead;
}

/* One turn of the supervisor's I/O: ready worker sockets and pipes, then
 * maintenance when due. io_lock held. */
static void io_iterate(par_super_t *s, int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(s->ep, evs, 64, timeout_ms);
    int woken = 0;
    for (int i = 0; i < n; i++) {
        par_tag_t *t = evs[i].data.ptr;
        if (t->kind == TAG_WAKE) {
            uint64_t v;
            ssize_t r = read(s->wake_fd, &v, sizeof(v));
            (void)r;
            woken = 1;
            continue;
        }
        par_worker_t *w = t->ptr;
        if (t->kind == TAG_OUT) {
            par__worker_drain_output(w);
            continue;
        }
        if (socket_event(w, evs[i].events)) {
            /* later events in this batch may name this worker: neutralise them */
            for (int k = i + 1; k < n; k++) {
                par_tag_t *t2 = evs[k].data.ptr;
                if (t2->kind != TAG_WAKE && t2->ptr == w)
                    evs[k].data.ptr = &s->wake_tag, evs[k].events = 0;
            }
            worker_dead(w);
        }
    }
    int64_t now = par__now_ms();
    if (woken || now >= s->next_maint_ms) {
        s->next_maint_ms = now + MAINT_INTERVAL_MS;
        maintain(s);
    }
}

/* Removes the scratch directories queued while a loop was attached.
 * Called by the I/O thread with io_lock released. */
static void take_out_trash(par_super_t *s)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        par_trash_t *t = s->trash;
        if (t)
            s->trash = t->next;
        pthread_mutex_unlock(&s->lock);
        if (t == NULL)
            return;
        par_spawn_remove_tree(t->path);
        free(t->path);
        free(t);
    }
}

static void *io_thread(void *arg)
{
    par_super_t *s = arg;
    pthread_mutex_lock(&s->io_lock);
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->attached)) {
            pthread_mutex_unlock(&s->io_lock);
            take_out_trash(s);
            pthread_mutex_lock(&s->io_lock);
            if (atomic_load(&s->attached) && !atomic_load(&s->stop) && s->trash == NULL)
                pthread_cond_wait(&s->io_cond, &s->io_lock);
            continue;
        }
        io_iterate(s, MAINT_INTERVAL_MS);
    }
    pthread_mutex_unlock(&s->io_lock);
    take_out_trash(s);
    return NULL;
}

int par_super_attach(par_super_t *s)
{
    atomic_store(&s->attached, 1);
    par__super_wake(s); /* out of its epoll_wait, into io_cond */
    pthread_mutex_lock(&s->io_lock);
    pthread_mutex_unlock(&s->io_lock);
    return s->ep;
}

void par_super_poll(par_super_t *s)
{
    pthread_mutex_lock(&s->io_lock);
    io_iterate(s, 0);
    pthread_mutex_unlock(&s->io_lock);
}

int par_super_maintenance_due(par_super_t *s)
{
    return par__now_ms() >= s->next_maint_ms;
}

void par_super_detach(par_super_t *s)
{
    pthread_mutex_lock(&s->io_lock);
    atomic_store(&s->attached, 0);
    pthread_cond_signal(&s->io_cond);
    pthread_mutex_unlock(&s->io_lock);
}

/* ---- the supervisor ---------------------------------------------------------------- */

/* Scratch directories left over from a runtime that died are removed; the
 * base is searchable, each worker's own is private to its uid. */
static char *scratch_base(const char *state_dir)
{
    char *base = NULL, *real = NULL;
    if (asprintf(&base, "%s/scratch", state_dir) < 0)
        return NULL;
    par_spawn_remove_tree(base);
    if (mkdir(base, 0711) == 0 || errno == EEXIST) {
        chmod(base, 0711);
        real = realpath(base, NULL);
    }
    if (real == NULL)
        par_log_msg(PAR_LOG_ERROR, "cannot create %s: %s", base, strerror(errno));
    free(base);
    return real;
}

static void super_free_parts(par_super_t *s)
{
    if (s->ep >= 0)
        close(s->ep);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    par_scratch_free(s->quota);
    free(s->scratch_base);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->io_lock);
    pthread_cond_destroy(&s->io_cond);
    free(s);
}

int par_super_new(const par_super_hooks_t *hooks, const char *state_dir, par_super_t **out)
{
    assert(hooks->call_start && hooks->call_finish && hooks->tick);
    par_super_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    s->hooks = *hooks;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->io_lock, NULL);
    pthread_cond_init(&s->io_cond, NULL);
    s->scratch_base = scratch_base(state_dir);
    s->quota = par_scratch_new();
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->wake_tag = (par_tag_t){TAG_WAKE, NULL};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->wake_tag};
    if (s->quota == NULL || s->ep < 0 || s->wake_fd < 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake_fd, &ev) != 0 ||
        pthread_create(&s->thread, NULL, io_thread, s) != 0) {
        int rc = s->quota == NULL ? PAR_E_NO_MEMORY : PAR_E_IO;
        super_free_parts(s);
        return rc;
    }
    *out = s;
    return PAR_OK;
}

/* Stops every pool now and lets the I/O thread reap the workers (5 s at most). */
static void stop_all(par_super_t *s)
{
    pthread_mutex_lock(&s->lock);
    for (par_pool_t *p = s->pools; p; p = p->next) {
        pthread_mutex_lock(&p->lock);
        p->stopping = p->stop_now = 1;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < 500; i++) {
        par__super_wake(s);
        pthread_mutex_lock(&s->lock);
        int left = 0;
        for (par_pool_t *p = s->pools; p; p = p->next)
            left += p->workers != NULL;
        pthread_mutex_unlock(&s->lock);
        if (!left)
            break;
        usleep(10000);
    }
}

void par_super_free(par_super_t *s)
{
    if (s == NULL)
        return;
    if (atomic_load(&s->attached)) /* the loop that ran its I/O is gone */
        par_super_detach(s);
    stop_all(s);
    atomic_store(&s->stop, 1); /* detached above: the I/O thread is in io_iterate */
    par__super_wake(s);
    pthread_join(s->thread, NULL);
    while (s->pools) {
        par_pool_t *p = s->pools;
        s->pools = p->next;
        while (p->workers) {
            par_worker_t *w = p->workers;
            p->workers = w->next;
            par_spawn_kill(w->pid);
            waitpid(w->pid, NULL, 0);
            worker_free(w);
        }
        par__pool_free(p);
    }
    super_free_parts(s);
}
