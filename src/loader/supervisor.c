/*
 * loader/supervisor.c — see supervisor.h.
 *
 * Locking: each pool has one mutex that guards its workers list, their
 * pending tables, in-flight counts, write buffers and the wait queue. Calls
 * are completed (their `done` run) only with no pool lock held, because a
 * completion may start another call (a sibling's CALL_RESULT, a nested call).
 * The read side of a worker (its input buffer) belongs to the I/O thread alone.
 */
#include "loader/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/proto.h"
#include "loader/scratch.h"
#include "obs/log.h"
#include "pkg/dotenv.h"
#include "util/fs.h"
#include "util/json.h"

#define PENDING_BUCKETS 64
#define MAINT_INTERVAL_MS 10
#define START_TIMEOUT_MS 10000
#define MAX_BACKOFF_MS 10000
#define OUTPUT_LINES_PER_SEC 200
#define CRASH_LOOP_CRASHES 5 /* crashes in a row that put a pool in crash_loop */
/* a starting worker's last output, kept for its start error; small enough for
 * the "package refused" log line (4 KiB) to hold it with its escapes */
#define TAIL_MAX_BYTES 3072
#define TAIL_MAX_LINES 20

enum { W_STARTING, W_READY, W_RETIRING, W_DEAD };
static const char *const wstate_names[] = {"starting", "ready", "retiring", "dead"};
enum { TAG_WAKE, TAG_SOCK, TAG_OUT };

typedef struct tag {
    int kind;
    void *ptr;
} tag_t;

struct par_worker {
    struct par_worker *next;
    par_pool_t *pool;
    uint64_t wid;
    pid_t pid;
    int fd;
    int out_fd;
    int state;
    unsigned inflight;
    par_call_t *pending[PENDING_BUCKETS];
    par_buf_t in;
    size_t in_start;
    par_buf_t out;
    size_t out_start;
    int out_armed;
    int64_t started_ms;
    const char *kill_reason;
    char line[2048];
    size_t line_len;
    int64_t lines_window_ms;
    unsigned lines_in_window;
    uint64_t lines_dropped;
    tag_t sock_tag, out_tag;
    struct par_worker *cork_next; /* on the attached loop's cork list */
    int corked;
    char *scratch;   /* its private writable directory, removed when it is gone */
    json_t *sandbox; /* what par-worker reported it applied (SANDBOX frame), or NULL */
    /* while starting: its last output lines (fds 1/2 and LOG frames), shown
     * in the start error when it dies before HELLO; I/O side only */
    char tail[TAIL_MAX_BYTES];
    size_t tail_len;
};

struct par_pool {
    struct par_pool *next;
    par_super_t *s;
    atomic_int refs; /* the package version's + each child call waiting to answer; the
                      * supervisor frees a stopped pool only once it reaches 0 */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *name, *version;
    char **argv;
    char **envp;
    par_worker_t *workers;
    unsigned live; /* starting + ready */
    par_call_t *q_head, *q_tail;
    size_t q_len;
    unsigned limit;       /* concurrent calls dispatched to workers, 0 = no limit */
    unsigned memory_mb;   /* the workers' address-space limit, 0 = none */
    unsigned cpu_seconds; /* the workers' CPU time limit, 0 = none */
    unsigned queue_max;   /* calls waiting for a slot before 429 */
    unsigned dispatched;  /* limited calls in workers now */
    uint64_t next_id;
    unsigned restarts, crashes_in_row, timeout_kills;
    int64_t respawn_at_ms;
    int want_spawn;
    int started;      /* a worker said HELLO once */
    int start_failed; /* the first worker died before HELLO: no respawn */
    int start_status; /* PAR_E_INCOMPATIBLE, or what the worker's start ERROR named */
    int stopping, stop_now;
    char *start_error;
    unsigned min_workers, max_workers, concurrency;
    size_t max_output;
    size_t max_input;   /* the largest frame its workers accept */
    json_t *sandbox;    /* the sandbox of the newest ready worker */
    int sandbox_warned; /* degraded layers are logged once per package version */
};

struct par_super {
    par_runtime_t *rt;
    int ep;
    int wake_fd;
    tag_t wake_tag;
    pthread_t thread;
    _Atomic int stop;
    pthread_mutex_t lock; /* pools list */
    par_pool_t *pools;
    uint64_t next_wid;
    int64_t next_maint_ms;
    char *scratch_base; /* <state_dir>/scratch: one directory per live worker */
    /* Who runs the I/O (io_iterate): the I/O thread, or an attached event
     * loop (par_super_attach). io_lock is held by whichever does; the I/O
     * thread parks on io_cond while a loop is attached and, parked, removes
     * the scratch directories of dead workers (trash) so the loop never walks
     * a tree a worker filled. */
    pthread_mutex_t io_lock;
    pthread_cond_t io_cond;
    _Atomic int attached;
    struct trash *trash;  /* guarded by lock */
    par_scratch_t *quota; /* limits.scratch_mb accounting (loader/scratch.h) */
};

typedef struct trash {
    struct trash *next;
    char *path;
} trash_t;

static void pool_free(par_pool_t *p);

/* Frames written by the attached loop thread during one turn of its loop are
 * held in each worker's write buffer and written at the end of the turn, one
 * write per worker for every request the turn read (par_super_uncork). */
static __thread int tl_cork;
static __thread par_worker_t *tl_corked;

/* ---- helpers -------------------------------------------------------------- */

static void wake(par_super_t *s)
{
    uint64_t one = 1;
    ssize_t r = write(s->wake_fd, &one, sizeof(one));
    (void)r;
}

static par_call_t **bucket(par_worker_t *w, uint64_t id)
{
    return &w->pending[id % PENDING_BUCKETS];
}

static void pending_add(par_worker_t *w, par_call_t *c)
{
    par_call_t **b = bucket(w, c->_wid);
    c->_hnext = *b;
    *b = c;
    c->_worker = w;
    w->inflight++;
}

static par_call_t *pending_find(par_worker_t *w, uint64_t id, int remove)
{
    for (par_call_t **pp = bucket(w, id); *pp; pp = &(*pp)->_hnext) {
        if ((*pp)->_wid == id) {
            par_call_t *c = *pp;
            if (remove) {
                *pp = c->_hnext;
                c->_hnext = NULL;
                c->_worker = NULL;
                w->inflight--;
            }
            return c;
        }
    }
    return NULL;
}

static void arm_out(par_worker_t *w, int on)
{
    if (w->out_armed == on || w->state == W_DEAD)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
                             .data.ptr = &w->sock_tag};
    epoll_ctl(w->pool->s->ep, EPOLL_CTL_MOD, w->fd, &ev);
    w->out_armed = on;
}

/* Writes iov to the worker now, buffering what the socket does not take.
 * Pool lock held. */
static void wsend(par_worker_t *w, struct iovec *iov, int n)
{
    if (w->state == W_DEAD)
        return;
    int i = 0;
    if (tl_cork && !w->out_armed) {
        for (; i < n; i++)
            if (par_buf_append(&w->out, iov[i].iov_base, iov[i].iov_len) != PAR_OK)
                w->kill_reason = "write buffer overflow";
        if (!w->corked) {
            w->corked = 1;
            w->cork_next = tl_corked;
            tl_corked = w;
        }
        return;
    }
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
    for (; i < n; i++)
        if (par_buf_append(&w->out, iov[i].iov_base, iov[i].iov_len) != PAR_OK)
            w->kill_reason = "write buffer overflow";
    arm_out(w, 1);
}

static void flush_out(par_worker_t *w)
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

static void send_frame(par_worker_t *w, uint8_t type, uint64_t id, const char *hdr, size_t hlen,
                       const char *body, size_t blen)
{
    uint8_t fh[PAR_PROTO_HEADER_SIZE];
    par_proto_encode(fh, type, id, (uint32_t)hlen, (uint32_t)blen);
    struct iovec iov[3] = {{fh, sizeof(fh)}, {(void *)hdr, hlen}, {(void *)body, blen}};
    wsend(w, iov, 3);
}

static void send_invoke(par_worker_t *w, par_call_t *c)
{
    par_pool_t *p = w->pool;
    c->_wid = ++p->next_id;
    pending_add(w, c);
    char stackbuf[1024];
    par_buf_t h;
    par_buf_init_on(&h, stackbuf, sizeof(stackbuf), 0);
    int64_t remaining = c->deadline_ms ? c->deadline_ms - par__now_ms() : 0;
    if (remaining < 1 && c->deadline_ms)
        remaining = 1;
    par_buf_appends(&h, "{\"x\":");
    par_buf_append_i64(&h, (int64_t)c->_export_idx);
    par_buf_appends(&h, ",\"agent\":");
    par_buf_append_json_str(&h, c->agent_id, strlen(c->agent_id));
    par_buf_appends(&h, ",\"request_id\":");
    par_buf_append_json_str(&h, c->request_id, strlen(c->request_id));
    par_buf_appends(&h, ",\"trace_id\":");
    par_buf_append_json_str(&h, c->trace_id, strlen(c->trace_id));
    par_buf_appends(&h, ",\"span_id\":");
    par_buf_append_json_str(&h, c->span_id, strlen(c->span_id));
    if (c->subject) {
        par_buf_appends(&h, ",\"subject\":");
        par_buf_append_json_str(&h, c->subject, strlen(c->subject));
    }
    if (c->tenant) {
        par_buf_appends(&h, ",\"tenant\":");
        par_buf_append_json_str(&h, c->tenant, strlen(c->tenant));
    }
    par_buf_appends(&h, ",\"deadline_ms\":");
    par_buf_append_i64(&h, remaining);
    if (c->context) {
        par_buf_appends(&h, ",\"context\":");
        par_buf_append(&h, c->context, c->context_len);
    }
    par_buf_append(&h, "}", 1);
    send_frame(w, PAR_FRAME_INVOKE, c->_wid, h.data, h.len, c->input, c->input_len);
    par_buf_free(&h); /* frees only what outgrew stackbuf */
}

/* In a crash loop and nothing to run on: callers get 503 at once. Lock held. */
static int in_crash_loop(par_pool_t *p)
{
    if (p->crashes_in_row < CRASH_LOOP_CRASHES)
        return 0;
    for (par_worker_t *w = p->workers; w; w = w->next)
        if (w->state == W_READY)
            return 0;
    return 1;
}

static par_worker_t *pick_worker(par_pool_t *p)
{
    par_worker_t *best = NULL;
    for (par_worker_t *w = p->workers; w; w = w->next)
        if (w->state == W_READY && (best == NULL || w->inflight < best->inflight))
            best = w;
    return best;
}

/* A finished (or failed) call gives its concurrency slot back. Pool lock held. */
static void release_slot(par_pool_t *p, par_call_t *c)
{
    if (c->_limited) {
        c->_limited = 0;
        p->dispatched--;
    }
}

/* Sibling calls never wait for a slot: the caller already holds one, and
 * making it wait for itself would deadlock. */
static int is_limited(par_pool_t *p, par_call_t *c)
{
    return p->limit && !(c->caller_pv && strcmp(c->caller_pv->name, p->name) == 0);
}

/* Sends queued calls while a worker is ready and a slot is free. Pool lock held. */
static void drain_queue(par_pool_t *p)
{
    while (p->q_head) {
        par_worker_t *w = pick_worker(p);
        if (w == NULL)
            return;
        par_call_t *c = p->q_head;
        int limited = is_limited(p, c);
        if (limited && p->dispatched >= p->limit)
            return;
        p->q_head = c->_qnext;
        if (p->q_head == NULL)
            p->q_tail = NULL;
        p->q_len--;
        c->_qnext = NULL;
        if (limited) {
            c->_limited = 1;
            p->dispatched++;
        }
        send_invoke(w, c);
    }
}

/* ---- spawn ------------------------------------------------------------------ */

static void close_if(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Removes a directory tree without following symbolic links or leaving the
 * file system, whatever its depth (util/fs): what a worker wrote is not
 * trusted. One warning per tree that cannot be removed completely. */
static void remove_tree(const char *path)
{
    par_fs_result_t res;
    if (par_fs_remove(path, &res) != 0)
        par_log_msg(PAR_LOG_WARN, "cannot remove %s completely: %llu entries failed, first: %s",
                    path, (unsigned long long)res.failures, strerror(res.first_errno));
}

/* Creates the private scratch directory of a new worker, owned by the
 * worker's uid, mode 0700. Returns its path (owned) or NULL. */
static char *make_scratch(par_super_t *s, par_pool_t *p, uint64_t wid)
{
    par_runtime_t *rt = s->rt;
    char *dir = NULL;
    if (s->scratch_base == NULL || asprintf(&dir, "%s/%s@%s.%llu", s->scratch_base, p->name,
                                            p->version, (unsigned long long)wid) < 0)
        return NULL;
    remove_tree(dir); /* a leftover of an earlier runtime with the same numbering */
    if (mkdir(dir, 0700) != 0 ||
        (rt->worker_uid >= 0 && chown(dir, (uid_t)rt->worker_uid, (gid_t)rt->worker_gid) != 0)) {
        par_log_msg(PAR_LOG_ERROR, "cannot create the worker scratch directory %s: %s", dir,
                    strerror(errno));
        rmdir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

/* Kills a worker and every process it started (its process group). */
static void kill_worker(par_worker_t *w)
{
    kill(-w->pid, SIGKILL);
    kill(w->pid, SIGKILL);
}

/* Pool lock held. */
static int spawn_worker(par_pool_t *p)
{
    par_super_t *s = p->s;
    int sv[2] = {-1, -1}, pp[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(pp, O_CLOEXEC) != 0) {
        par_log_msg(PAR_LOG_ERROR, "cannot create worker channel: %s", strerror(errno));
        close_if(&sv[0]), close_if(&sv[1]), close_if(&pp[0]), close_if(&pp[1]);
        return PAR_E_IO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 2);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    /* its own process group: whatever it leaves behind is killed with it */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    /* its own process group; the runtime's blocked signals (SIGTERM, SIGINT,
     * SIGHUP are taken by its signal thread) are not the worker's */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, defaults;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    pthread_mutex_lock(&s->lock);
    uint64_t wid = ++s->next_wid;
    pthread_mutex_unlock(&s->lock);
    char *scratch = make_scratch(s, p, wid);
    size_t argc = 0;
    while (p->argv[argc])
        argc++;
    char **argv = calloc(argc + 3, sizeof(char *));
    int rc = scratch && argv ? 0 : EIO;
    if (rc == 0) {
        /* right after the program name: a trailing --exec PROG must stay last */
        argv[0] = p->argv[0];
        argv[1] = (char *)"--scratch";
        argv[2] = scratch;
        memcpy(argv + 3, p->argv + 1, argc * sizeof(char *));
    }
    pid_t pid;
    if (rc == 0)
        rc = posix_spawn(&pid, p->argv[0], &fa, &attr, argv, p->envp);
    free(argv);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    close(pp[1]);
    if (rc != 0) {
        if (scratch)
            remove_tree(scratch);
        free(scratch);
        par_log_msg(PAR_LOG_ERROR, "cannot start worker %s: %s", p->argv[0], strerror(rc));
        close(sv[0]);
        close(pp[0]);
        if (!p->started) {
            char msg[PATH_MAX + 64];
            snprintf(msg, sizeof(msg), "cannot start the worker %s: %s", p->argv[0], strerror(rc));
            free(p->start_error);
            p->start_error = strdup(msg);
            p->start_failed = 1;
            pthread_cond_broadcast(&p->cond);
        }
        return PAR_E_IO;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(pp[0], F_SETFL, O_NONBLOCK);
    par_worker_t *w = calloc(1, sizeof(*w));
    w->pool = p;
    w->pid = pid;
    w->fd = sv[0];
    w->out_fd = pp[0];
    w->state = W_STARTING;
    w->started_ms = par__now_ms();
    par_buf_init(&w->in, 0);
    par_buf_init(&w->out, 256u << 20);
    w->sock_tag = (tag_t){TAG_SOCK, w};
    w->out_tag = (tag_t){TAG_OUT, w};
    w->wid = wid;
    w->scratch = scratch;
    char key[512];
    snprintf(key, sizeof(key), "%s@%s", p->name, p->version);
    par_scratch_watch(s->quota, wid, pid, scratch, key, (uint64_t)s->rt->cfg.scratch_mb << 20);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &w->sock_tag};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, w->fd, &ev);
    struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &w->out_tag};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, w->out_fd, &ev2);
    w->next = p->workers;
    p->workers = w;
    p->live++;
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_DEBUG, "worker started")) {
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", pid);
        par_log_end(&l);
    }
    return PAR_OK;
}

/* ---- completion ----------------------------------------------------------- */

typedef struct done_list {
    par_call_t *head;
} done_list_t;

static void done_push(done_list_t *d, par_call_t *c)
{
    c->_qnext = d->head;
    d->head = c;
}

static void done_run(done_list_t *d)
{
    while (d->head) {
        par_call_t *c = d->head;
        d->head = c->_qnext;
        c->_qnext = NULL;
        par__call_finish(c);
    }
}

static void set_fail(par_call_t *c, int status, const char *msg)
{
    c->status = status;
    par_buf_reset(&c->output);
    par_buf_appends(&c->output, msg);
}

static int status_from_name(const char *name)
{
    for (int i = 1; i < PAR_STATUS_COUNT; i++)
        if (strcmp(par_status_name(i), name) == 0)
            return i;
    return PAR_E_AGENT_ERROR;
}

/* ---- worker death ---------------------------------------------------------- */

static void describe_exit(int st, char *buf, size_t n)
{
    if (WIFSIGNALED(st))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else if (WIFEXITED(st))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(st));
    else
        snprintf(buf, n, "ended (status %d)", st);
}

static void drain_output(par_worker_t *w);
static int output_allowed(par_worker_t *w);

/* Keeps the last TAIL_MAX_LINES lines, at most TAIL_MAX_BYTES, of what a
 * starting worker wrote: the oldest whole lines go first. */
static void tail_add(par_worker_t *w, const char *s, size_t n)
{
    if (n > TAIL_MAX_BYTES / 4)
        s += n - TAIL_MAX_BYTES / 4, n = TAIL_MAX_BYTES / 4; /* a line's end says the most */
    if (w->tail_len + n + 1 > sizeof(w->tail)) {
        size_t drop = w->tail_len + n + 1 - sizeof(w->tail);
        char *nl = memchr(w->tail + drop, '\n', w->tail_len - drop);
        drop = nl ? (size_t)(nl + 1 - w->tail) : w->tail_len;
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
    memcpy(w->tail + w->tail_len, s, n);
    w->tail_len += n;
    w->tail[w->tail_len++] = '\n';
    size_t lines = 0;
    for (size_t i = 0; i < w->tail_len; i++)
        lines += w->tail[i] == '\n';
    while (lines-- > TAIL_MAX_LINES) {
        char *nl = memchr(w->tail, '\n', w->tail_len);
        size_t drop = (size_t)(nl + 1 - w->tail);
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
}

/* The start error of a worker that died before HELLO: how it ended, what
 * it said (its start ERROR frame) and its last output lines. */
static char *start_error_of(par_worker_t *w, const char *how, const char *said)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    if (said)
        par_buf_appends(&b, said);
    else
        par_buf_appendf(&b, "worker %s before it was ready", how);
    if (w->tail_len) {
        par_buf_appendf(&b, "\nlast output of the worker (pid %d, %s):\n", (int)w->pid, how);
        par_buf_append(&b, w->tail, w->tail_len - 1);
    }
    size_t n;
    char *s = par_buf_steal(&b, &n);
    return s ? s : strdup("worker failed to start");
}

/* The worker is gone: its scratch directory goes with it. */
static void worker_free_sandbox(par_worker_t *w)
{
    par_super_t *s = w->pool->s;
    if (w->scratch && atomic_load(&s->attached)) {
        trash_t *t = malloc(sizeof(*t));
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
        remove_tree(w->scratch);
        free(w->scratch);
        w->scratch = NULL;
    }
    json_decref(w->sandbox);
    w->sandbox = NULL;
}

static void worker_dead(par_worker_t *w)
{
    par_pool_t *p = w->pool;
    par_super_t *s = p->s;
    if (w->corked) { /* runs on the corking thread: the list is this thread's */
        for (par_worker_t **pp = &tl_corked; *pp; pp = &(*pp)->cork_next) {
            if (*pp == w) {
                *pp = w->cork_next;
                break;
            }
        }
        w->corked = 0;
    }
    drain_output(w);
    epoll_ctl(s->ep, EPOLL_CTL_DEL, w->fd, NULL);
    epoll_ctl(s->ep, EPOLL_CTL_DEL, w->out_fd, NULL);
    uint64_t scratch_used = 0, scratch_limit = 0; /* forgotten before the pid is reaped */
    if (par_scratch_forget(s->quota, w->wid, &scratch_used, &scratch_limit))
        w->kill_reason = "scratch quota exceeded";
    kill_worker(w);
    int st = 0;
    while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
        ;
    char how[128];
    describe_exit(st, how, sizeof(how));

    done_list_t done = {NULL};
    pthread_mutex_lock(&p->lock);
    int was_state = w->state;
    w->state = W_DEAD;
    close_if(&w->fd);
    close_if(&w->out_fd);
    for (size_t b = 0; b < PENDING_BUCKETS; b++) {
        while (w->pending[b]) {
            par_call_t *c = w->pending[b];
            w->pending[b] = c->_hnext;
            c->_hnext = NULL;
            c->_worker = NULL;
            char msg[640];
            int status = PAR_E_AGENT_CRASHED;
            if (w->kill_reason && strcmp(w->kill_reason, "protocol error") == 0) {
                status = PAR_E_PROTOCOL;
                snprintf(msg, sizeof(msg),
                         "the worker (pid %d) running agent '%s' broke the worker protocol and "
                         "was stopped",
                         (int)w->pid, c->agent_id);
            } else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGXFSZ) {
                status = PAR_E_SCRATCH_QUOTA;
                snprintf(msg, sizeof(msg),
                         "the worker (pid %d) running agent '%s' wrote a file larger than the "
                         "scratch quota of %u MB (limits.scratch_mb, RLIMIT_FSIZE) and was stopped",
                         (int)w->pid, c->agent_id, s->rt->cfg.scratch_mb);
            } else if (w->kill_reason && strcmp(w->kill_reason, "scratch quota exceeded") == 0) {
                status = PAR_E_SCRATCH_QUOTA;
                snprintf(msg, sizeof(msg),
                         "the worker (pid %d) running agent '%s' was stopped: its package used at "
                         "least %llu MB of scratch space, over its quota of %llu MB "
                         "(limits.scratch_mb)",
                         (int)w->pid, c->agent_id, (unsigned long long)(scratch_used >> 20),
                         (unsigned long long)(scratch_limit >> 20));
            } else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU)
                snprintf(msg, sizeof(msg),
                         "the worker (pid %d) running agent '%s' used up its CPU time limit of "
                         "%u s (RLIMIT_CPU) and was stopped",
                         (int)w->pid, c->agent_id, p->cpu_seconds);
            else if (p->memory_mb)
                snprintf(msg, sizeof(msg),
                         "the worker (pid %d) running agent '%s' died: %s (its memory is "
                         "limited to %u MB; an agent that needs more dies this way)",
                         (int)w->pid, c->agent_id, how, p->memory_mb);
            else
                snprintf(msg, sizeof(msg), "the worker (pid %d) running agent '%s' died: %s",
                         (int)w->pid, c->agent_id, how);
            set_fail(c, status, msg);
            release_slot(p, c);
            done_push(&done, c);
        }
    }
    w->inflight = 0;
    if (was_state == W_STARTING || was_state == W_READY)
        p->live--;
    for (par_worker_t **pp = &p->workers; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    int crashed = !p->stopping && !p->start_failed && w->kill_reason == NULL;
    if (w->kill_reason && strcmp(w->kill_reason, "deadline exceeded") == 0)
        p->timeout_kills++;
    if (was_state == W_STARTING && !p->started)
        p->start_failed = 1;
    if (was_state == W_STARTING && !p->started) {
        char *e = start_error_of(w, how, p->start_error);
        free(p->start_error);
        p->start_error = e;
    }
    if (crashed) {
        p->restarts++;
        p->crashes_in_row++;
        int64_t backoff = 0;
        if (p->crashes_in_row > 1) {
            backoff = 50ll << (p->crashes_in_row < 9 ? p->crashes_in_row - 2 : 7);
            if (backoff > MAX_BACKOFF_MS)
                backoff = MAX_BACKOFF_MS;
            backoff += rand() % (backoff / 4 + 1); /* jitter */
        }
        p->respawn_at_ms = par__now_ms() + backoff;
    }
    if (crashed && in_crash_loop(p)) {
        while (p->q_head) {
            par_call_t *c = p->q_head;
            p->q_head = c->_qnext;
            p->q_len--;
            set_fail(c, PAR_E_UNAVAILABLE, "the agent's package is in a crash loop");
            done_push(&done, c);
        }
        p->q_tail = NULL;
    }
    int looping = crashed && in_crash_loop(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (looping)
        par_log_msg(PAR_LOG_WARN, "%s@%s is in a crash loop (%u crashes in a row)", p->name,
                    p->version, p->crashes_in_row);

    par_logline_t l;
    if (par_log_begin(&l, crashed ? PAR_LOG_WARN : PAR_LOG_DEBUG,
                      crashed ? "worker crashed" : "worker stopped")) {
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", w->pid);
        par_log_str(&l, "exit", how);
        if (w->kill_reason)
            par_log_str(&l, "reason", w->kill_reason);
        if (was_state == W_STARTING && w->tail_len)
            par_log_strn(&l, "last_output", w->tail, w->tail_len - 1);
        par_log_end(&l);
    }
    par_buf_free(&w->in);
    par_buf_free(&w->out);
    worker_free_sandbox(w);
    free(w);
    done_run(&done);
}

/* ---- reading frames -------------------------------------------------------- */

static void child_done(par_call_t *c);

static void handle_call_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    par_runtime_t *rt = p->s->rt;
    json_t *h = json_loadb(f->header, f->header_len, 0, NULL);
    const char *agent = json_string_value(json_object_get(h, "agent"));
    uint64_t parent_id = (uint64_t)json_integer_value(json_object_get(h, "parent"));
    par_call_t *c = par__call_new();
    int rc = PAR_OK;
    if (agent == NULL || strlen(agent) > PAR_ID_MAX) {
        rc = PAR_E_BAD_REQUEST;
        par_buf_appends(&c->output, "CALL needs an \"agent\" id");
    } else {
        strcpy(c->agent_id, agent);
    }
    pthread_mutex_lock(&p->lock);
    par_call_t *parent = pending_find(w, parent_id, 0);
    if (parent && rc == PAR_OK) {
        par__call_link(c, parent);
    } else if (rc == PAR_OK) {
        rc = PAR_E_BAD_REQUEST;
        par_buf_appends(&c->output, "CALL names no in-flight parent invocation");
    }
    pthread_mutex_unlock(&p->lock);
    json_decref(h);
    c->input = f->body_len ? f->body : "null";
    c->input_len = f->body_len ? f->body_len : 4;
    c->done = child_done;
    c->_parent_pool = p;
    c->_parent_worker_id = w->wid;
    c->_parent_call_id = f->id;
    atomic_fetch_add(&p->refs, 1);
    if (rc == PAR_OK && (rc = par__call_own_input(c)) == PAR_OK)
        rc = par__call_start(rt, c);
    if (rc != PAR_OK) {
        c->status = rc;
        child_done(c);
    }
}

/* The RESULT header: {"cpu_ms": number, "units": {...}}, both optional. */
static void result_header(par_call_t *c, const char *h, size_t n)
{
    par_json_field_t fl[2] = {{"cpu_ms", NULL, 0}, {"units", NULL, 0}};
    if (n == 0 || par_json_scan(h, n, fl, 2, NULL) != 0 || par_json_root_type(h, n) != '{')
        return;
    if (fl[0].ptr && par_json_root_type(fl[0].ptr, fl[0].len) == '0') {
        char num[64];
        size_t k = fl[0].len < sizeof(num) - 1 ? fl[0].len : sizeof(num) - 1;
        memcpy(num, fl[0].ptr, k);
        num[k] = '\0';
        c->cpu_ns = (int64_t)(strtod(num, NULL) * 1e6);
    }
    if (fl[1].ptr && par_json_root_type(fl[1].ptr, fl[1].len) == '{' &&
        (c->units_json = malloc(fl[1].len + 1)) != NULL) {
        memcpy(c->units_json, fl[1].ptr, fl[1].len);
        c->units_json[fl[1].len] = '\0';
    }
}

/* A LOG frame names the call it belongs to by its frame id; the agent,
 * request and trace are that call's, never what the header claims. A frame
 * for no call in flight (id 0: start-up, a background thread; or an id the
 * worker made up) is logged as the package's worker. Only `level` and `msg`
 * are read from the header. */
static void handle_log_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    json_t *h = json_loadb(f->header, f->header_len, 0, NULL);
    const char *lv = json_string_value(json_object_get(h, "level"));
    const char *m = json_string_value(json_object_get(h, "msg"));
    if (w->state == W_STARTING && m)
        tail_add(w, m, strlen(m));
    if (!output_allowed(w)) {
        json_decref(h);
        return;
    }
    char agent[PAR_ID_MAX + 1] = "", rid[PAR_REQUEST_ID_MAX + 1] = "", trace[64] = "";
    pthread_mutex_lock(&p->lock);
    par_call_t *c = f->id ? pending_find(w, f->id, 0) : NULL;
    if (c) {
        memcpy(agent, c->agent_id, sizeof(agent));
        memcpy(rid, c->request_id, sizeof(rid));
        memcpy(trace, c->trace_id, sizeof(trace));
    }
    pthread_mutex_unlock(&p->lock);
    int level = lv ? par_log_parse_level(lv) : PAR_LOG_INFO;
    par_logline_t l;
    if (par_log_begin(&l, level < 0 ? PAR_LOG_INFO : level, m ? m : "")) {
        par_log_str(&l, "source", "agent");
        par_log_str(&l, "package", p->name);
        par_log_str(&l, "version", p->version);
        par_log_int(&l, "pid", w->pid);
        if (c) {
            par_log_str(&l, "agent", agent);
            par_log_str(&l, "request_id", rid);
            par_log_str(&l, "trace_id", trace);
        }
        par_log_end(&l);
    }
    json_decref(h);
}

static void handle_frame(par_worker_t *w, const par_frame_t *f)
{
    par_pool_t *p = w->pool;
    done_list_t done = {NULL};
    switch (f->type) {
    case PAR_FRAME_SANDBOX: {
        /* par-worker's own report, sent before it loads or execs package code;
         * only the first one counts and only before HELLO */
        json_t *h = f->header_len ? json_loadb(f->header, f->header_len, 0, NULL) : NULL;
        json_t *sb = json_object_get(h, "sandbox");
        pthread_mutex_lock(&p->lock);
        if (w->state == W_STARTING && w->sandbox == NULL && json_is_object(sb))
            w->sandbox = json_incref(sb);
        pthread_mutex_unlock(&p->lock);
        json_decref(h);
        break;
    }
    case PAR_FRAME_HELLO: {
        json_t *h = f->header_len ? json_loadb(f->header, f->header_len, 0, NULL) : NULL;
        json_t *hpid = json_object_get(h, "pid");
        if (hpid && json_integer_value(hpid) != w->pid) {
            par_log_msg(PAR_LOG_ERROR,
                        "worker %d of %s said HELLO for pid %lld: not the worker it started",
                        (int)w->pid, p->name, (long long)json_integer_value(hpid));
            w->kill_reason = "protocol error";
            json_decref(h);
            kill_worker(w);
            break;
        }
        pthread_mutex_lock(&p->lock);
        if (w->state == W_STARTING) {
            if (w->sandbox == NULL) {
                /* no report from par-worker: a worker started some other way */
                json_t *sb = json_object_get(h, "sandbox");
                w->sandbox = json_is_object(sb) ? json_incref(sb)
                                                : json_pack("{s:b, s:s}", "enabled", 0, "reason",
                                                            "the worker reported no sandbox");
            }
            json_decref(p->sandbox);
            p->sandbox = json_incref(w->sandbox);
            w->state = W_READY;
            p->started = 1;
            drain_queue(p);
        }
        json_t *degraded = json_object_get(p->sandbox, "degraded");
        int warn = !p->sandbox_warned && json_array_size(degraded) > 0;
        p->sandbox_warned |= warn;
        char *list = warn ? json_dumps(degraded, JSON_COMPACT) : NULL;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        if (list) {
            par_logline_t l;
            if (par_log_begin(&l, PAR_LOG_WARN, "worker sandbox degraded")) {
                par_log_str(&l, "package", p->name);
                par_log_str(&l, "version", p->version);
                par_log_str(&l, "degraded", list);
                par_log_end(&l);
            }
            free(list);
        }
        json_decref(h);
        break;
    }
    case PAR_FRAME_RESULT:
    case PAR_FRAME_ERROR: {
        /* RESULT, the hot path, is read with the non-allocating scanner */
        json_t *h = f->header_len && f->type == PAR_FRAME_ERROR
                        ? json_loadb(f->header, f->header_len, 0, NULL)
                        : NULL;
        if (f->id == 0 && f->type == PAR_FRAME_ERROR) {
            const char *m = json_string_value(json_object_get(h, "message"));
            const char *name = json_string_value(json_object_get(h, "error"));
            pthread_mutex_lock(&p->lock);
            free(p->start_error);
            p->start_error = strdup(m ? m : "worker failed to start");
            if (name && strcmp(name, "agent_load_failed") == 0)
                p->start_status = PAR_E_AGENT_LOAD_FAILED;
            pthread_mutex_unlock(&p->lock);
            json_decref(h);
            break;
        }
        pthread_mutex_lock(&p->lock);
        par_call_t *c = pending_find(w, f->id, 1);
        if (c) {
            release_slot(p, c);
            drain_queue(p);
        }
        int kill_now = w->state == W_RETIRING && w->inflight == 0;
        pthread_mutex_unlock(&p->lock);
        if (kill_now)
            kill_worker(w);
        if (c == NULL) {
            json_decref(h);
            break; /* answered after its deadline: already completed */
        }
        if (f->type == PAR_FRAME_RESULT) {
            size_t off;
            if (f->body_len == 0 || par_json_scan(f->body, f->body_len, NULL, 0, &off) != 0) {
                char msg[400];
                snprintf(msg, sizeof(msg),
                         "agent '%s' returned output that is not valid JSON (byte %zu of %u)",
                         c->agent_id, f->body_len ? off : 0, f->body_len);
                set_fail(c, PAR_E_BAD_OUTPUT, msg);
            } else {
                c->status = PAR_OK;
                par_buf_reset(&c->output);
                if (par_buf_append(&c->output, f->body, f->body_len) != PAR_OK)
                    set_fail(c, PAR_E_OUTPUT_TOO_LARGE, "agent output exceeds the cap");
                result_header(c, f->header, f->header_len);
            }
        } else {
            const char *name = json_string_value(json_object_get(h, "error"));
            const char *m = json_string_value(json_object_get(h, "message"));
            set_fail(c, status_from_name(name ? name : "agent_error"), m ? m : "agent error");
            const char *tb = json_string_value(json_object_get(h, "traceback"));
            if (tb && c->status == PAR_E_AGENT_ERROR) /* for the embedder (par_call), not HTTP */
                c->traceback = strdup(tb);
        }
        json_decref(h);
        done_push(&done, c);
        break;
    }
    case PAR_FRAME_CALL:
        handle_call_frame(w, f);
        break;
    case PAR_FRAME_LOG:
        handle_log_frame(w, f);
        break;
    default:
        break; /* USAGE, CHUNK: accepted and ignored in this protocol version */
    }
    done_run(&done);
}

/* Returns 0 while the worker lives, -1 when it must be treated as dead. */
static int read_worker(par_worker_t *w)
{
    for (;;) {
        if (par_buf_reserve(&w->in, 64 * 1024) != PAR_OK)
            return -1;
        ssize_t r = read(w->fd, w->in.data + w->in.len, w->in.cap - w->in.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return 0;
        if (r <= 0) {
            par_log_msg(PAR_LOG_DEBUG, "worker %d: %s", (int)w->pid,
                        r == 0 ? "end of stream" : strerror(errno));
            return -1;
        }
        w->in.len += (size_t)r;
        for (;;) {
            par_frame_t f;
            size_t used;
            const char *err;
            int d = par_proto_decode((uint8_t *)w->in.data + w->in_start, w->in.len - w->in_start,
                                     w->pool->max_output, &f, &used, &err);
            if (d < 0) {
                par_log_msg(PAR_LOG_ERROR, "worker %d of %s broke the protocol: %s", (int)w->pid,
                            w->pool->name, err);
                w->kill_reason = "protocol error";
                return -1;
            }
            if (d == 0)
                break;
            handle_frame(w, &f);
            w->in_start += used;
            if (w->state == W_DEAD)
                return -1;
        }
        if (w->in_start == w->in.len) {
            w->in.len = w->in_start = 0;
        } else if (w->in_start > 0) {
            memmove(w->in.data, w->in.data + w->in_start, w->in.len - w->in_start);
            w->in.len -= w->in_start;
            w->in_start = 0;
        }
        if ((size_t)r < 64 * 1024)
            return 0;
    }
}

/* Rate limit shared by output lines and LOG frames of one worker. */
static int output_allowed(par_worker_t *w)
{
    int64_t now = par__now_ms();
    if (now - w->lines_window_ms >= 1000) {
        if (w->lines_dropped)
            par_log_msg(PAR_LOG_WARN, "worker %d of %s: %llu output lines dropped (rate limit)",
                        (int)w->pid, w->pool->name, (unsigned long long)w->lines_dropped);
        w->lines_window_ms = now;
        w->lines_in_window = 0;
        w->lines_dropped = 0;
    }
    if (++w->lines_in_window > OUTPUT_LINES_PER_SEC) {
        w->lines_dropped++;
        return 0;
    }
    return 1;
}

static void emit_line(par_worker_t *w)
{
    if (w->state == W_STARTING)
        tail_add(w, w->line, w->line_len);
    if (!output_allowed(w)) {
        w->line_len = 0;
        return;
    }
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "agent output")) {
        par_log_str(&l, "source", "agent");
        par_log_str(&l, "package", w->pool->name);
        par_log_str(&l, "version", w->pool->version);
        par_log_int(&l, "pid", w->pid);
        par_log_strn(&l, "line", w->line, w->line_len);
        par_log_end(&l);
    }
    w->line_len = 0;
}

static void drain_output(par_worker_t *w)
{
    char buf[8192];
    for (int rounds = 0; rounds < 64; rounds++) {
        ssize_t r = read(w->out_fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n' || w->line_len == sizeof(w->line)) {
                emit_line(w);
                if (buf[i] == '\n')
                    continue;
            }
            w->line[w->line_len++] = buf[i];
        }
    }
}

/* ---- maintenance ------------------------------------------------------------ */

static void pool_maintain(par_pool_t *p, int64_t now)
{
    done_list_t done = {NULL};
    pthread_mutex_lock(&p->lock);
    /* deadlines of calls in workers */
    for (par_worker_t *w = p->workers; w; w = w->next) {
        if (w->state == W_DEAD)
            continue;
        for (size_t b = 0; b < PENDING_BUCKETS; b++) {
            for (par_call_t **pp = &w->pending[b]; *pp;) {
                par_call_t *c = *pp;
                if (c->deadline_ms == 0 || c->deadline_ms > now) {
                    pp = &c->_hnext;
                    continue;
                }
                *pp = c->_hnext;
                c->_hnext = NULL;
                c->_worker = NULL;
                w->inflight--;
                send_frame(w, PAR_FRAME_CANCEL, c->_wid, NULL, 0, NULL, 0);
                char msg[400];
                snprintf(msg, sizeof(msg),
                         "agent '%s' did not answer within its deadline; its worker is replaced",
                         c->agent_id);
                set_fail(c, PAR_E_TIMEOUT, msg);
                release_slot(p, c);
                done_push(&done, c);
                if (w->state != W_RETIRING) {
                    if (w->state == W_READY || w->state == W_STARTING)
                        p->live--;
                    w->state = W_RETIRING;
                    w->kill_reason = "deadline exceeded";
                }
            }
        }
        if (w->state == W_RETIRING && w->inflight == 0)
            kill_worker(w);
        /* a worker that never says HELLO is killed */
        if (w->state == W_STARTING && now - w->started_ms > START_TIMEOUT_MS) {
            w->kill_reason = "start timeout";
            if (p->start_error == NULL)
                p->start_error = strdup("worker did not become ready within 10 s");
            kill_worker(w);
        }
    }
    /* deadlines of queued calls */
    for (par_call_t **pp = &p->q_head; *pp;) {
        par_call_t *c = *pp;
        if (c->deadline_ms == 0 || c->deadline_ms > now) {
            p->q_tail = c;
            pp = &c->_qnext;
            continue;
        }
        *pp = c->_qnext;
        p->q_len--;
        set_fail(c, PAR_E_TIMEOUT, "the call waited for a worker or a free slot past its deadline");
        done_push(&done, c);
    }
    if (p->q_head == NULL)
        p->q_tail = NULL;
    /* workers: keep min_workers live, grow on demand, respawn after backoff */
    if (!p->stopping && !p->start_failed && now >= p->respawn_at_ms) {
        unsigned want = p->min_workers ? p->min_workers : (p->q_head ? 1 : 0);
        if (p->want_spawn && p->live < p->max_workers)
            want = p->live + 1 > want ? p->live + 1 : want;
        p->want_spawn = 0;
        while (p->live < want && p->live < p->max_workers)
            if (spawn_worker(p) != PAR_OK) {
                p->respawn_at_ms = now + 1000;
                break;
            }
    }
    drain_queue(p);
    /* a worker that lived 30 s resets the crash streak */
    for (par_worker_t *w = p->workers; w; w = w->next)
        if (w->state == W_READY && now - w->started_ms > 30000)
            p->crashes_in_row = 0;
    if (p->stopping) {
        for (par_worker_t *w = p->workers; w; w = w->next) {
            if (p->stop_now) {
                /* unloaded before its calls finished: they end with `draining` */
                for (size_t k = 0; k < PENDING_BUCKETS; k++) {
                    while (w->pending[k]) {
                        par_call_t *c = w->pending[k];
                        w->pending[k] = c->_hnext;
                        c->_hnext = NULL;
                        c->_worker = NULL;
                        w->inflight--;
                        release_slot(p, c);
                        set_fail(c, PAR_E_DRAINING,
                                 "the agent's package version was unloaded before it answered");
                        done_push(&done, c);
                    }
                }
            }
            if (w->inflight == 0 || p->stop_now) {
                if (w->kill_reason == NULL)
                    w->kill_reason = "stopped";
                kill_worker(w);
            }
        }
        if (p->stop_now) {
            while (p->q_head) {
                par_call_t *c = p->q_head;
                p->q_head = c->_qnext;
                p->q_len--;
                set_fail(c, PAR_E_DRAINING, "the package is being unloaded");
                done_push(&done, c);
            }
            p->q_tail = NULL;
        }
    }
    pthread_mutex_unlock(&p->lock);
    done_run(&done);
}

static void maintain(par_super_t *s)
{
    int64_t now = par__now_ms();
    par__runtime_tick(s->rt, now);
    pthread_mutex_lock(&s->lock);
    for (par_pool_t **pp = &s->pools; *pp;) {
        par_pool_t *p = *pp;
        pthread_mutex_unlock(&s->lock);
        pool_maintain(p, now);
        pthread_mutex_lock(&s->lock);
        pthread_mutex_lock(&p->lock);
        int gone =
            p->stopping && p->workers == NULL && p->q_head == NULL && atomic_load(&p->refs) == 0;
        pthread_mutex_unlock(&p->lock);
        if (gone) {
            *pp = p->next;
            pool_free(p);
        } else {
            pp = &p->next;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* One turn of the supervisor's I/O: ready worker sockets and pipes, then
 * maintenance when due. io_lock held. */
static void io_iterate(par_super_t *s, int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(s->ep, evs, 64, timeout_ms);
    int woken = 0;
    for (int i = 0; i < n; i++) {
        tag_t *t = evs[i].data.ptr;
        if (t->kind == TAG_WAKE) {
            uint64_t v;
            ssize_t r = read(s->wake_fd, &v, sizeof(v));
            (void)r;
            woken = 1;
            continue;
        }
        par_worker_t *w = t->ptr;
        if (t->kind == TAG_OUT) {
            drain_output(w);
            continue;
        }
        if (evs[i].events & EPOLLOUT) {
            pthread_mutex_lock(&w->pool->lock);
            flush_out(w);
            pthread_mutex_unlock(&w->pool->lock);
        }
        int dead = 0;
        if (evs[i].events & EPOLLIN)
            dead = read_worker(w) != 0;
        if (!dead && (evs[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
            dead = read_worker(w) != 0 || 1;
        if (dead) {
            /* later events in this batch may name this worker: neutralise them */
            for (int k = i + 1; k < n; k++) {
                tag_t *t2 = evs[k].data.ptr;
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
        trash_t *t = s->trash;
        if (t)
            s->trash = t->next;
        pthread_mutex_unlock(&s->lock);
        if (t == NULL)
            return;
        remove_tree(t->path);
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
    wake(s); /* out of its epoll_wait, into io_cond */
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

void par_super_cork(int on)
{
    tl_cork = on;
}

void par_super_uncork(void)
{
    while (tl_corked) {
        par_worker_t *w = tl_corked;
        tl_corked = w->cork_next;
        pthread_mutex_lock(&w->pool->lock);
        w->corked = 0;
        w->cork_next = NULL;
        if (w->state != W_DEAD) {
            flush_out(w);
            if (w->out_start < w->out.len)
                arm_out(w, 1); /* the socket is full: the rest goes on EPOLLOUT */
        }
        pthread_mutex_unlock(&w->pool->lock);
    }
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

/* ---- public ---------------------------------------------------------------- */

int par_super_new(par_runtime_t *rt, par_super_t **out)
{
    par_super_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    s->rt = rt;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->io_lock, NULL);
    pthread_cond_init(&s->io_cond, NULL);
    /* scratch directories: left over from a runtime that died are removed;
     * the base is searchable, each worker's own is private to its uid */
    char *base = NULL;
    if (asprintf(&base, "%s/scratch", rt->state_dir) >= 0) {
        remove_tree(base);
        if (mkdir(base, 0711) == 0 || errno == EEXIST) {
            chmod(base, 0711);
            s->scratch_base = realpath(base, NULL);
        }
        if (s->scratch_base == NULL)
            par_log_msg(PAR_LOG_ERROR, "cannot create %s: %s", base, strerror(errno));
        free(base);
    }
    s->quota = par_scratch_new();
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->wake_tag = (tag_t){TAG_WAKE, NULL};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->wake_tag};
    if (s->ep < 0 || s->wake_fd < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake_fd, &ev) != 0 ||
        pthread_create(&s->thread, NULL, io_thread, s) != 0) {
        if (s->ep >= 0)
            close(s->ep);
        if (s->wake_fd >= 0)
            close(s->wake_fd);
        par_scratch_free(s->quota);
        free(s->scratch_base);
        free(s);
        return PAR_E_IO;
    }
    *out = s;
    return PAR_OK;
}

void par_super_free(par_super_t *s)
{
    if (s == NULL)
        return;
    if (atomic_load(&s->attached)) /* the loop that ran its I/O is gone */
        par_super_detach(s);
    /* stop every pool now and let the I/O thread reap the workers */
    pthread_mutex_lock(&s->lock);
    for (par_pool_t *p = s->pools; p; p = p->next) {
        pthread_mutex_lock(&p->lock);
        p->stopping = p->stop_now = 1;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < 500; i++) {
        wake(s);
        pthread_mutex_lock(&s->lock);
        int left = 0;
        for (par_pool_t *p = s->pools; p; p = p->next)
            left += p->workers != NULL;
        pthread_mutex_unlock(&s->lock);
        if (!left)
            break;
        usleep(10000);
    }
    atomic_store(&s->stop, 1); /* detached above: the I/O thread is in io_iterate */
    wake(s);
    pthread_join(s->thread, NULL);
    par_scratch_free(s->quota);
    while (s->pools) {
        par_pool_t *p = s->pools;
        s->pools = p->next;
        while (p->workers) {
            par_worker_t *w = p->workers;
            p->workers = w->next;
            kill_worker(w);
            waitpid(w->pid, NULL, 0);
            close_if(&w->fd);
            close_if(&w->out_fd);
            par_buf_free(&w->in);
            par_buf_free(&w->out);
            worker_free_sandbox(w);
            free(w);
        }
        pool_free(p);
    }
    close(s->ep);
    close(s->wake_fd);
    free(s->scratch_base);
    free(s);
}

static void pool_free(par_pool_t *p)
{
    for (char **a = p->argv; a && *a; a++)
        free(*a);
    free(p->argv);
    for (char **e = p->envp; e && *e; e++)
        free(*e);
    free(p->envp);
    free(p->name);
    free(p->version);
    free(p->start_error);
    json_decref(p->sandbox);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

int par_pool_start(par_super_t *s, par_pkgver_t *pv, par_buf_t *err)
{
    par_runtime_t *rt = s->rt;
    const par_manifest_t *m = pv->manifest;
    par_pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PAR_E_NO_MEMORY;
    p->s = s;
    atomic_init(&p->refs, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->name = strdup(pv->name);
    p->version = strdup(pv->version);
    p->min_workers = rt->cfg.min_workers;
    p->max_workers = rt->cfg.max_workers;
    p->concurrency = rt->cfg.worker_concurrency;
    p->max_output = rt->cfg.max_output_bytes;
    p->limit = m->limits.concurrency ? m->limits.concurrency : rt->cfg.default_concurrency;
    p->queue_max = rt->cfg.max_queue;
    if (p->min_workers > p->max_workers)
        p->max_workers = p->min_workers;

    /* par-worker puts itself in the sandbox (docs/sandbox.md), then runs the
     * package: native exports itself, Python by exec'ing the interpreter with
     * the shim. The scratch directory is added per worker (spawn_worker). */
    size_t argc = 0;
    p->argv = calloc(72 + 2 * m->export_count, sizeof(char *));
    p->argv[argc++] = strdup(rt->worker_path);
    p->memory_mb = m->limits.memory_mb ? m->limits.memory_mb : rt->cfg.default_memory_mb;
    int python = m->runtime_kind == PAR_RUNTIME_PYTHON;
#ifdef PAR_SANITIZE_BUILD
    /* AddressSanitizer reserves terabytes of address space: no RLIMIT_AS for
     * an instrumented process. The Python shim applies the limit itself,
     * after par-worker has exec'd the (uninstrumented) interpreter. */
    if (!python)
        p->memory_mb = 0;
    unsigned sandbox_memory_mb = 0;
#else
    unsigned sandbox_memory_mb = p->memory_mb;
#endif
    p->cpu_seconds = rt->cfg.worker_cpu_seconds;
    if (p->cpu_seconds) {
        p->argv[argc++] = strdup("--cpu-seconds");
        p->argv[argc++] = xasprintf("%u", p->cpu_seconds);
    }
    if (rt->cfg.scratch_mb) { /* no single file larger than the whole quota */
        p->argv[argc++] = strdup("--file-size-mb");
        p->argv[argc++] = xasprintf("%u", rt->cfg.scratch_mb);
    }
    if (sandbox_memory_mb) {
        p->argv[argc++] = strdup("--memory-mb");
        p->argv[argc++] = xasprintf("%u", sandbox_memory_mb);
    }
    if (rt->worker_uid >= 0) {
        p->argv[argc++] = strdup("--uid");
        p->argv[argc++] = xasprintf("%ld", rt->worker_uid);
        p->argv[argc++] = strdup("--gid");
        p->argv[argc++] = xasprintf("%ld", rt->worker_gid);
    }
    if (rt->cfg.sandbox_max_files) {
        p->argv[argc++] = strdup("--max-files");
        p->argv[argc++] = xasprintf("%u", rt->cfg.sandbox_max_files);
    }
    if (rt->cfg.sandbox_max_processes) {
        p->argv[argc++] = strdup("--max-processes");
        p->argv[argc++] = xasprintf("%u", rt->cfg.sandbox_max_processes);
    }
    if (par_manifest_has_capability(m, "network"))
        p->argv[argc++] = strdup("--network");
    if (par_manifest_has_capability(m, "subprocess"))
        p->argv[argc++] = strdup("--subprocess");
    if (python) {
        p->argv[argc++] = strdup("--fd");
        p->argv[argc++] = strdup("3");
        p->argv[argc++] = strdup("--root");
        p->argv[argc++] = strdup(pv->root);
        /* what the interpreter reads besides /usr: the shim, the package's
         * site-packages */
        char *shim_dir = strdup(rt->python_shim);
        char *slash = shim_dir ? strrchr(shim_dir, '/') : NULL;
        if (slash && slash != shim_dir) {
            *slash = '\0';
            p->argv[argc++] = strdup("--ro");
            p->argv[argc++] = shim_dir;
        } else {
            free(shim_dir);
        }
        if (pv->python_site) {
            p->argv[argc++] = strdup("--ro");
            p->argv[argc++] = strdup(pv->python_site);
        }
        /* an interpreter installed outside /usr (/opt/python3.12/bin/python3):
         * its prefix holds the standard library and libpython */
        char real[PATH_MAX];
        if (realpath(rt->cfg.python, real) && strncmp(real, "/usr/", 5) != 0) {
            char *bin = strrchr(real, '/');
            if (bin && bin != real) {
                *bin = '\0';
                char *prefix = strrchr(real, '/');
                if (prefix && prefix != real)
                    *prefix = '\0';
                p->argv[argc++] = strdup("--ro");
                p->argv[argc++] = strdup(real);
            }
        }
        /* -I: no PYTHON* variables, no user site, no script directory on
         * sys.path; -S: no site module (no system site-packages, nothing read
         * from /etc); -B: the package directory is never written to. A
         * package's requirements come in through --site. Everything after
         * --exec is the interpreter's. */
        p->argv[argc++] = strdup("--exec");
        p->argv[argc++] = strdup(rt->cfg.python);
        p->argv[argc++] = strdup("-I");
        p->argv[argc++] = strdup("-S");
        p->argv[argc++] = strdup("-B");
        p->argv[argc++] = strdup(rt->python_shim);
        if (pv->python_site) {
            p->argv[argc++] = strdup("--site");
            p->argv[argc++] = strdup(pv->python_site);
        }
        if (p->memory_mb) {
            p->argv[argc++] = strdup("--memory-mb");
            p->argv[argc++] = xasprintf("%u", p->memory_mb);
        }
        if (p->cpu_seconds) {
            p->argv[argc++] = strdup("--cpu-seconds");
            p->argv[argc++] = xasprintf("%u", p->cpu_seconds);
        }
    }
    p->argv[argc++] = strdup("--fd");
    p->argv[argc++] = strdup("3");
    p->argv[argc++] = strdup("--root");
    p->argv[argc++] = strdup(pv->root);
    p->argv[argc++] = strdup("--max-input");
    p->argv[argc++] = xasprintf("%zu", pv->max_input);
    p->max_input = pv->max_input;
    p->argv[argc++] = strdup("--max-output");
    p->argv[argc++] = xasprintf("%zu", rt->cfg.max_output_bytes);
    for (size_t i = 0; i < m->export_count; i++) {
        p->argv[argc++] = strdup("--export");
        p->argv[argc++] = xasprintf("%s=%s", m->exports[i].name, m->exports[i].entrypoint);
    }
    /* a scrubbed environment: the package's own (.env, then agent.yaml
     * `environment`, `${NAME}` only for names the operator allows) */
    par_envlist_t env = {0};
    par_buf_t warn;
    par_buf_init(&warn, 0);
    par_package_env(pv->root, m, rt->cfg.env_allow, &env, &warn);
    if (warn.len) {
        par_logline_t l;
        if (par_log_begin(&l, PAR_LOG_WARN, "package environment")) {
            par_log_str(&l, "package", pv->name);
            par_log_str(&l, "version", pv->version);
            par_log_strn(&l, "warnings", warn.data, warn.len);
            par_log_end(&l);
        }
    }
    par_buf_free(&warn);
    p->envp = calloc(7 + env.count, sizeof(char *));
    size_t envc = 0;
    p->envp[envc++] = strdup("PATH=/usr/local/bin:/usr/bin:/bin");
    p->envp[envc++] = strdup("LANG=C.UTF-8");
    if (m->runtime_kind == PAR_RUNTIME_PYTHON)
        /* glibc reserves 64 MiB of address space per malloc arena, one per
         * thread up to 8 per core: under RLIMIT_AS that starves threads */
        p->envp[envc++] = strdup("MALLOC_ARENA_MAX=2");
#ifdef PAR_SANITIZE_BUILD
    /* Sanitizer builds: a deliberate agent crash must end the worker with its
     * signal, as in production; memory errors are still caught by the
     * instrumentation itself. */
    p->envp[envc++] = strdup("ASAN_OPTIONS=handle_segv=0:handle_sigbus=0:handle_abort=0:"
                             "handle_sigfpe=0:detect_leaks=0");
#endif
    for (size_t i = 0; i < env.count; i++) {
        if (strncmp(env.items[i], "PATH=", 5) == 0 || strncmp(env.items[i], "LANG=", 5) == 0) {
            free(p->envp[strncmp(env.items[i], "PATH=", 5) == 0 ? 0 : 1]);
            p->envp[strncmp(env.items[i], "PATH=", 5) == 0 ? 0 : 1] = env.items[i];
        } else {
            p->envp[envc++] = env.items[i];
        }
        env.items[i] = NULL;
    }
    par_envlist_free(&env);

    /* Workers are spawned by the I/O thread only: PR_SET_PDEATHSIG in the
     * worker fires when the *thread* that forked it exits, so a short-lived
     * deploy thread must never be a worker's parent. */
    pthread_mutex_lock(&s->lock);
    p->next = s->pools;
    s->pools = p;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&p->lock);
    p->want_spawn = 1;
    pthread_mutex_unlock(&p->lock);
    wake(s);
    int rc = PAR_OK;
    pthread_mutex_lock(&p->lock);
    int64_t until = par__now_ms() + START_TIMEOUT_MS + 1000;
    while (!p->started && !p->start_failed && par__now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    if (!p->started) {
        par_buf_appendf(err, "%s@%s: %s\n", p->name, p->version,
                        p->start_error ? p->start_error : "worker failed to start");
        rc = p->start_status ? p->start_status : PAR_E_INCOMPATIBLE;
        p->stopping = p->stop_now = 1;
    }
    free(p->start_error);
    p->start_error = NULL;
    pthread_mutex_unlock(&p->lock);
    wake(s);
    if (rc == PAR_OK) {
        atomic_fetch_add(&p->refs, 1); /* the package version's, dropped by par_pool_release */
        pv->pool = p;
    }
    return rc;
}

int par_pool_submit(par_pool_t *p, par_call_t *c)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        par_buf_appends(&c->output, "the package is being unloaded");
        return PAR_E_DRAINING;
    }
    par_worker_t *w = pick_worker(p);
    int need_wake = 0;
    int limited = is_limited(p, c);
    if (limited && p->dispatched >= p->limit) {
        if (p->q_len >= p->queue_max) {
            pthread_mutex_unlock(&p->lock);
            par_buf_appendf(&c->output,
                            "'%s' is at its concurrency limit (%u running, %zu waiting); retry "
                            "later",
                            c->agent_id, p->limit, p->q_len);
            return PAR_E_OVER_CAPACITY;
        }
        w = NULL; /* wait in the queue for a slot */
    }
    if (w == NULL && in_crash_loop(p)) {
        int64_t wait = p->respawn_at_ms - par__now_ms();
        par_buf_appendf(&c->output,
                        "'%s' is in a crash loop (%u crashes in a row); the next restart is in "
                        "%lld ms",
                        c->agent_id, p->crashes_in_row, (long long)(wait > 0 ? wait : 0));
        pthread_mutex_unlock(&p->lock);
        return PAR_E_UNAVAILABLE;
    }
    if (w == NULL) {
        int rc = par__call_own_input(c);
        if (rc != PAR_OK) {
            pthread_mutex_unlock(&p->lock);
            return rc;
        }
        c->_qnext = NULL;
        if (p->q_tail)
            p->q_tail->_qnext = c;
        else
            p->q_head = c;
        p->q_tail = c;
        p->q_len++;
        if (p->live == 0)
            need_wake = 1;
    } else {
        if (limited) {
            c->_limited = 1;
            p->dispatched++;
        }
        if (w->inflight >= p->concurrency && p->live < p->max_workers && !p->want_spawn) {
            p->want_spawn = 1;
            need_wake = 1;
        }
        send_invoke(w, c);
    }
    pthread_mutex_unlock(&p->lock);
    if (need_wake)
        wake(p->s);
    return PAR_OK;
}

int par_pool_cancel(par_pool_t *p, par_call_t *c, const char *why)
{
    int found = 0;
    pthread_mutex_lock(&p->lock);
    par_worker_t *w = c->_worker;
    if (w && pending_find(w, c->_wid, 1) == c) {
        send_frame(w, PAR_FRAME_CANCEL, c->_wid, NULL, 0, NULL, 0);
        release_slot(p, c);
        found = 1;
    } else {
        for (par_call_t **pp = &p->q_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->_qnext) {
            if (*pp != c)
                continue;
            *pp = c->_qnext;
            if (p->q_tail == c)
                p->q_tail = prev;
            p->q_len--;
            c->_qnext = NULL;
            found = 1;
            break;
        }
    }
    if (found)
        drain_queue(p); /* the freed slot goes to the next waiting call */
    pthread_mutex_unlock(&p->lock);
    if (!found)
        return PAR_E_NOT_FOUND; /* finishing already, or never reached the pool */
    set_fail(c, PAR_E_CANCELLED, why);
    par__call_finish(c);
    return PAR_OK;
}

void par_pool_release(par_pool_t *p)
{
    par_super_t *s = p->s;
    atomic_fetch_sub(&p->refs, 1);
    wake(s);
}

void par_pool_stop(par_pool_t *p, int now)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    p->stop_now |= now;
    pthread_mutex_unlock(&p->lock);
    wake(p->s);
}

json_t *par_pool_sandbox(par_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    json_t *sb = p->sandbox ? json_deep_copy(p->sandbox) : NULL;
    pthread_mutex_unlock(&p->lock);
    return sb ? sb : json_pack("{s:b, s:s}", "enabled", 0, "reason", "no worker has started yet");
}

json_t *par_pool_describe(par_pool_t *p)
{
    json_t *a = json_array();
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next)
        json_array_append_new(a,
                              json_pack("{s:i, s:s, s:i, s:I}", "pid", (int)w->pid, "state",
                                        wstate_names[w->state], "in_flight", (int)w->inflight,
                                        "uptime_ms", (json_int_t)(par__now_ms() - w->started_ms)));
    pthread_mutex_unlock(&p->lock);
    return a;
}

int par_pool_live(par_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    int live = 0;
    for (par_worker_t *w = p->workers; w; w = w->next)
        live |= w->state == W_READY;
    pthread_mutex_unlock(&p->lock);
    return live;
}

void par_pool_stats(par_pool_t *p, par_pool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next) {
        out->starting += w->state == W_STARTING;
        out->ready += w->state == W_READY;
        out->retiring += w->state == W_RETIRING;
    }
    out->crashes = p->restarts;
    out->timeouts = p->timeout_kills;
    out->crash_loop = in_crash_loop(p);
    out->crashes_in_row = p->crashes_in_row;
    pthread_mutex_unlock(&p->lock);
}

unsigned par_pool_restarts(par_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned r = p->restarts;
    pthread_mutex_unlock(&p->lock);
    return r;
}

/* ---- sibling calls ------------------------------------------------------------ */

static void child_done(par_call_t *c)
{
    par_pool_t *p = c->_parent_pool;
    /* the callee's usage units roll up into the caller's invocation */
    char stackbuf[1024];
    par_buf_t hdr;
    par_buf_init_on(&hdr, stackbuf, sizeof(stackbuf), 0);
    par_buf_appends(&hdr, "{\"status\":");
    par_buf_append_i64(&hdr, c->status == PAR_OK ? 0 : c->status);
    if (c->status == PAR_OK && c->units_json) {
        par_buf_appends(&hdr, ",\"units\":");
        par_buf_appends(&hdr, c->units_json);
    }
    par_buf_appends(&hdr, "}");
    par_buf_t body;
    par_buf_init(&body, 0);
    if (c->status == PAR_OK && p->max_input && c->output.len > p->max_input) {
        /* the caller's worker refuses frames over its input cap: answer it
         * with an error it can read instead of a frame that would end it */
        char msg[PAR_ID_MAX + 200];
        snprintf(msg, sizeof(msg),
                 "the output of '%s' (%zu bytes) exceeds what its caller accepts (%zu bytes, "
                 "limits.max_input_kb)",
                 c->agent_id, c->output.len, p->max_input);
        c->status = PAR_E_OUTPUT_TOO_LARGE;
        par_buf_reset(&c->output);
        par_buf_appends(&c->output, msg);
        par_buf_reset(&hdr);
        par_buf_appends(&hdr, "{\"status\":");
        par_buf_append_i64(&hdr, c->status);
        par_buf_appends(&hdr, "}");
    }
    if (c->status == PAR_OK) {
        par_buf_append(&body, c->output.data, c->output.len);
    } else {
        par_buf_appends(&body, "{\"error\":\"");
        par_buf_appends(&body, par_status_name(c->status));
        par_buf_appends(&body, "\",\"message\":");
        par_buf_append_json_str(&body, c->output.data ? c->output.data : "", c->output.len);
        par_buf_appends(&body, "}");
    }
    pthread_mutex_lock(&p->lock);
    for (par_worker_t *w = p->workers; w; w = w->next) {
        if (w->wid == c->_parent_worker_id) {
            send_frame(w, PAR_FRAME_CALL_RESULT, c->_parent_call_id, hdr.data, hdr.len, body.data,
                       body.len);
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    par_buf_free(&hdr);
    par_buf_free(&body);
    atomic_fetch_sub(&p->refs, 1);
    par__call_free(c);
}
