/*
 * runtime/runs_store.c — the runs on disk and the runs' thread.
 *
 * <state_dir>/runs/<run_id>.events holds a run's events as the SSE text a
 * client receives, one after the other (an event's data is one line, so
 * every event ends with the file's only "\n\n" sequences); an in-memory
 * offset index per run makes any replay one pread. <run_id>.json is the
 * run's record (owner, agent, version, status, times, metadata, units),
 * replaced whole (write, rename). The runs' thread writes both behind the
 * engine every RUNS_FLUSH_MS — events first, then a record that never says
 * more than the events written — so loop and I/O threads never touch the
 * disk for an event, and a kill -9 loses at most the last few ms of events
 * (the page cache keeps what was written; a power loss can lose more: no
 * fsync, by design). It also expires ended runs after runs.retention: the
 * events go, the record stays as a tombstone (reads answer 410 run_expired)
 * for one more retention period, then goes too (404 run_not_found).
 *
 * At open, the records found are read back; a run an earlier process left
 * queued or running ends `interrupted` with a run.interrupted event.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "obs/log.h"
#include "runtime/runs_internal.h"
#include "runtime/runtime.h"

static int terminal(int status)
{
    return status >= PAR_RUN_SUCCEEDED;
}

static void path_of(const par_runs_t *rs, const char *id, const char *ext, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%s", rs->dir, id, ext);
}

void par__run_dirty(par_run_t *r, int record)
{
    par_runs_t *rs = r->rs;
    if (record) {
        pthread_mutex_lock(&r->mu);
        r->record_dirty = 1;
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&rs->lock);
    if (!r->in_dirty) {
        r->in_dirty = 1;
        par_run_ref(r); /* the queue's */
        r->dirty_next = rs->dirty;
        rs->dirty = r;
    }
    pthread_mutex_unlock(&rs->lock);
}

/* ---- reading the event file ------------------------------------------------------------ */

int par__run_file_read_locked(par_run_t *r, uint64_t a, uint64_t b, size_t max_bytes,
                              par_buf_t *out, uint64_t *last)
{
    if (r->off == NULL || r->expired || r->deleted || a < 1 || b > r->flushed_seq || a > b)
        return PAR_E_RUN_EXPIRED;
    uint64_t e = a; /* read a..e */
    while (e < b && r->off[e] - r->off[a - 1] < max_bytes)
        e++;
    uint64_t from = r->off[a - 1], n = r->off[e] - from;
    if (par_buf_reserve(out, (size_t)n) != PAR_OK)
        return PAR_E_NO_MEMORY;
    int fd = r->fd, own = fd < 0;
    if (own) { /* an ended run: its file is opened for this read */
        char p[4096];
        path_of(r->rs, r->id, ".events", p, sizeof(p));
        if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
            return PAR_E_RUN_EXPIRED;
    } else {
        r->fd_readers++; /* the fd stays open until this read is done */
    }
    pthread_mutex_unlock(&r->mu);
    ssize_t got = pread(fd, out->data + out->len, (size_t)n, (off_t)from);
    if (own)
        close(fd);
    pthread_mutex_lock(&r->mu);
    if (!own && --r->fd_readers == 0 && r->fd_close_later >= 0) {
        close(r->fd_close_later);
        r->fd_close_later = -1;
    }
    if (got != (ssize_t)n) {
        par_log_msg(PAR_LOG_ERROR, "run %s: cannot read its event file: %s", r->id,
                    got < 0 ? strerror(errno) : "short read");
        return PAR_E_RUN_EXPIRED;
    }
    out->len += (size_t)n;
    *last = e;
    return PAR_OK;
}

/* ---- writing ----------------------------------------------------------------------- */

static int write_whole(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, data, len);
    int ok = w == (ssize_t)len;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The record of `r` (mu held). */
static char *record_text(const par_run_t *r)
{
    json_t *meta = r->metadata ? json_loads(r->metadata, 0, NULL) : NULL;
    json_t *units = r->units ? json_loads(r->units, 0, NULL) : NULL;
    json_t *j = json_pack(
        "{s:s,s:s,s:o,s:o,s:s,s:i,s:I,s:I,s:I,s:f,s:o,s:o,s:s,s:s,s:b,s:b,"
        "s:o,s:o,s:I}",
        "run_id", r->id, "agent_id", r->agent_id, "package", str_or_null(r->package), "version",
        str_or_null(r->version), "status", par_run_status_name(r->status), "end_status",
        r->end_status, "created_ms", (json_int_t)r->created_ms, "started_ms",
        (json_int_t)r->started_ms, "ended_ms", (json_int_t)r->ended_ms, "duration_ms",
        r->duration_ms, "subject", str_or_null(r->subject), "tenant", str_or_null(r->tenant),
        "request_id", r->request_id, "trace_id", r->trace_id, "cancel_on_disconnect",
        r->cancel_on_disconnect, "expired", r->expired, "metadata", meta ? meta : json_null(),
        "units", units ? units : json_null(), "events", (json_int_t)r->last_seq);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static void remove_files(par_runs_t *rs, const char *id)
{
    char p[4096];
    path_of(rs, id, ".events", p, sizeof(p));
    unlink(p);
    path_of(rs, id, ".json", p, sizeof(p));
    unlink(p);
}

/* Closes the event file (mu held; the caller unlinks it). */
static void close_fd_locked(par_run_t *r)
{
    if (r->fd >= 0 && r->fd_readers) {
        assert(r->fd_close_later < 0);
        r->fd_close_later = r->fd; /* the last reader closes it */
    } else if (r->fd >= 0) {
        close(r->fd);
    }
    r->fd = -1;
}

static void drop_event_file_locked(par_run_t *r)
{
    if (r->off && r->flushed_seq)
        atomic_fetch_sub(&r->rs->spill_bytes, (unsigned long)r->off[r->flushed_seq]);
    close_fd_locked(r);
    r->flushed_seq = 0;
}

/* Writes the events not yet in the file (mu held; dropped around the write). */
static int flush_events_locked(par_run_t *r)
{
    par_runs_t *rs = r->rs;
    if (r->flushed_seq >= r->last_seq)
        return 0;
    if (r->fd < 0) {
        char p[4096];
        path_of(rs, r->id, ".events", p, sizeof(p));
        pthread_mutex_unlock(&r->mu);
        int fd = open(p, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        pthread_mutex_lock(&r->mu);
        if (fd < 0) {
            par_log_msg(PAR_LOG_ERROR, "run %s: cannot open %s: %s", r->id, p, strerror(errno));
            return -1;
        }
        r->fd = fd;
    }
    while (r->flushed_seq < r->last_seq) {
        struct iovec iov[64];
        int n = 0;
        /* unflushed events stay in memory (only this thread trims) */
        for (uint64_t s = r->flushed_seq + 1; s <= r->last_seq && n < 64; s++, n++) {
            const run_ev_t *e = r->mem[s - r->mem_first];
            iov[n] = (struct iovec){(void *)e->text, e->len};
        }
        if (r->capoff < r->flushed_seq + (uint64_t)n + 1) {
            size_t cap = r->capoff ? r->capoff * 2 : 256;
            while (cap < r->flushed_seq + (uint64_t)n + 1)
                cap *= 2;
            uint64_t *o = realloc(r->off, cap * sizeof(*o));
            if (o == NULL)
                return -1;
            if (r->capoff == 0)
                o[0] = 0;
            r->off = o;
            r->capoff = cap;
        }
        int fd = r->fd;
        pthread_mutex_unlock(&r->mu);
        size_t want = 0;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        ssize_t w = writev(fd, iov, n);
        pthread_mutex_lock(&r->mu);
        if (w != (ssize_t)want) {
            par_log_msg(PAR_LOG_ERROR, "run %s: cannot write its events: %s", r->id,
                        w < 0 ? strerror(errno) : "short write");
            return -1; /* a short write is overwritten by nothing: recovery cuts it */
        }
        for (int i = 0; i < n; i++) {
            r->off[r->flushed_seq + 1] = r->off[r->flushed_seq] + iov[i].iov_len;
            r->flushed_seq++;
        }
        atomic_fetch_add(&rs->spill_bytes, (unsigned long)want);
    }
    return 0;
}

/* One run's turn on the runs' thread. */
static void flush_run(par_run_t *r)
{
    par_runs_t *rs = r->rs;
    pthread_mutex_lock(&r->mu);
    if (r->deleted) {
        drop_event_file_locked(r);
        pthread_mutex_unlock(&r->mu);
        remove_files(rs, r->id);
        return;
    }
    int ok = r->expired || flush_events_locked(r) == 0;
    par__run_trim_locked(r);
    /* an ended run's file is complete: no fd is held through its retention
     * (readers open it for each read) */
    if (terminal(r->status) && r->flushed_seq == r->last_seq)
        close_fd_locked(r);
    int rec = ok && r->record_dirty;
    if (rec)
        r->record_dirty = 0;
    char *text = rec ? record_text(r) : NULL;
    pthread_mutex_unlock(&r->mu);
    if (text) {
        char p[4096];
        path_of(rs, r->id, ".json", p, sizeof(p));
        if (write_whole(p, text, strlen(text)) != 0)
            par_log_msg(PAR_LOG_ERROR, "run %s: cannot write its record %s: %s", r->id, p,
                        strerror(errno));
        free(text);
    }
}

static void flush_all(par_runs_t *rs)
{
    pthread_mutex_lock(&rs->lock);
    par_run_t *list = rs->dirty;
    rs->dirty = NULL;
    while (list) {
        /* a run stays marked until its turn: dirtied again meanwhile, it is
         * not linked a second time (that would cut this list) */
        par_run_t *r = list;
        list = r->dirty_next;
        r->dirty_next = NULL;
        r->in_dirty = 0;
        pthread_mutex_unlock(&rs->lock);
        flush_run(r);
        par_run_unref(r); /* the queue's */
        pthread_mutex_lock(&rs->lock);
    }
    pthread_mutex_unlock(&rs->lock);
}

/* ---- retention ----------------------------------------------------------------------- */

/* An ended run past runs.retention loses its events and becomes a
 * tombstone; a tombstone past another retention period goes. */
static size_t expire(par_runs_t *rs, int64_t now)
{
    par_run_t *batch[64];
    int gone[64];
    size_t n = 0;
    int64_t keep = (int64_t)rs->retention_s * 1000;
    pthread_mutex_lock(&rs->lock);
    par_run_t *r;
    while (n < 64 && (r = rs->xhead[RUNS_TOMBS]) && now >= r->expire_at_ms + keep) {
        par__runs_remove_locked(rs, r); /* its table reference moves to batch */
        gone[n] = 1;
        batch[n++] = r;
    }
    while (n < 64 && (r = rs->xhead[RUNS_ENDED]) && now >= r->expire_at_ms) {
        pthread_mutex_lock(&r->mu);
        r->expired = 1;
        r->record_dirty = 1;
        pthread_mutex_unlock(&r->mu);
        par__runs_xpush_locked(rs, r, RUNS_TOMBS);
        par_run_ref(r);
        gone[n] = 0;
        batch[n++] = r;
    }
    pthread_mutex_unlock(&rs->lock);
    for (size_t i = 0; i < n; i++) {
        r = batch[i];
        char p[4096];
        pthread_mutex_lock(&r->mu);
        drop_event_file_locked(r);
        par__run_events_free(r);
        r->capoff = 0;
        pthread_mutex_unlock(&r->mu);
        path_of(rs, r->id, ".events", p, sizeof(p));
        unlink(p);
        if (gone[i])
            remove_files(rs, r->id);
        else
            par__run_dirty(r, 1);
        par_run_unref(r);
    }
    return n;
}

/* ---- the runs' thread ------------------------------------------------------------------- */

static void *runs_thread(void *arg)
{
    par_runs_t *rs = arg;
    int64_t next_expiry = 0;
    pthread_mutex_lock(&rs->lock);
    while (!rs->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += RUNS_FLUSH_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&rs->wake, &rs->lock, &ts);
        pthread_mutex_unlock(&rs->lock);
        flush_all(rs);
        int64_t now = par__now_ms();
        if (now >= next_expiry) {
            while (expire(rs, now) == 64)
                ;
            next_expiry = now + 1000;
        }
        pthread_mutex_lock(&rs->lock);
    }
    pthread_mutex_unlock(&rs->lock);
    flush_all(rs);
    return NULL;
}

void par__runs_store_stop(par_runs_t *rs)
{
    if (!rs->thread_started) {
        flush_all(rs);
        return;
    }
    pthread_mutex_lock(&rs->lock);
    rs->stop = 1;
    pthread_cond_signal(&rs->wake);
    pthread_mutex_unlock(&rs->lock);
    pthread_join(rs->thread, NULL);
    rs->thread_started = 0;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* Rebuilds the offset index of an event file; cuts a torn last event. */
static int scan_events(par_run_t *r, const char *path)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    char buf[65536];
    uint64_t at = 0, end_of_last = 0;
    char prev = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] == '\n' && prev == '\n') {
                if (r->capoff < r->flushed_seq + 2) {
                    size_t cap = r->capoff ? r->capoff * 2 : 256;
                    uint64_t *o = realloc(r->off, cap * sizeof(*o));
                    if (o == NULL) {
                        close(fd);
                        return -1;
                    }
                    o[0] = 0;
                    r->off = o, r->capoff = cap;
                }
                end_of_last = at + (uint64_t)i + 1;
                r->off[++r->flushed_seq] = end_of_last;
                prev = 0;
                continue;
            }
            prev = buf[i];
        }
        at += (uint64_t)got;
    }
    if (at != end_of_last && ftruncate(fd, (off_t)end_of_last) != 0)
        par_log_msg(PAR_LOG_WARN, "run %s: cannot cut its torn last event", r->id);
    r->fd = fd;
    atomic_fetch_add(&r->rs->spill_bytes, (unsigned long)end_of_last);
    r->last_seq = r->flushed_seq;
    r->mem_first = r->last_seq + 1;
    return 0;
}

static char *dup_str(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? strdup(s) : NULL;
}

/* A run from its record (NULL when the record is unreadable). */
static par_run_t *load_record(par_runs_t *rs, const char *path)
{
    json_t *j = json_load_file(path, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "run_id"));
    const char *agent = json_string_value(json_object_get(j, "agent_id"));
    int st = par_run_status_parse(json_string_value(json_object_get(j, "status")));
    par_run_t *r =
        id && agent && par_run_id_valid(id, strlen(id)) && st >= 0 ? par__run_new(rs) : NULL;
    if (r == NULL) {
        json_decref(j);
        return NULL;
    }
    memcpy(r->id, id, strlen(id) + 1);
    snprintf(r->agent_id, sizeof(r->agent_id), "%s", agent);
    snprintf(r->request_id, sizeof(r->request_id), "%s",
             json_string_value(json_object_get(j, "request_id")) ?: "");
    snprintf(r->trace_id, sizeof(r->trace_id), "%s",
             json_string_value(json_object_get(j, "trace_id")) ?: "");
    r->package = dup_str(j, "package"), r->version = dup_str(j, "version");
    r->subject = dup_str(j, "subject"), r->tenant = dup_str(j, "tenant");
    json_t *m = json_object_get(j, "metadata"), *u = json_object_get(j, "units");
    r->metadata = json_is_object(m) ? json_dumps(m, JSON_COMPACT) : NULL;
    r->units = json_is_object(u) ? json_dumps(u, JSON_COMPACT) : NULL;
    r->status = st;
    r->end_status = (int)json_integer_value(json_object_get(j, "end_status"));
    r->created_ms = json_integer_value(json_object_get(j, "created_ms"));
    r->started_ms = json_integer_value(json_object_get(j, "started_ms"));
    r->ended_ms = json_integer_value(json_object_get(j, "ended_ms"));
    r->duration_ms = json_number_value(json_object_get(j, "duration_ms"));
    r->cancel_on_disconnect = json_is_true(json_object_get(j, "cancel_on_disconnect"));
    r->expired = json_is_true(json_object_get(j, "expired"));
    if (r->expired) { /* a tombstone keeps its count; the events are gone */
        json_int_t n = json_integer_value(json_object_get(j, "events"));
        r->last_seq = n > 0 ? (uint64_t)n : 0;
        r->mem_first = r->last_seq + 1;
    }
    json_decref(j);
    return r;
}

/* A run an earlier process left in flight: it ends `interrupted`. */
static void interrupted_by_restart(par_run_t *r)
{
    static const char msg[] = "the runtime restarted while the run was in flight";
    par_buf_t b;
    par_buf_init(&b, 0);
    par_buf_appendf(&b, "{\"error\":\"%s\",\"message\":\"%s\",\"request_id\":",
                    par_status_name(PAR_E_INTERRUPTED), msg);
    par_buf_append_json_str(&b, r->request_id, strlen(r->request_id));
    par_buf_appends(&b, "}");
    r->status = PAR_RUN_INTERRUPTED;
    r->end_status = PAR_E_INTERRUPTED;
    r->ended_ms = par__wall_ms();
    if (b.data == NULL || par__run_append_locked(r, "run.interrupted", 15, b.data, b.len) != PAR_OK)
        par_log_msg(PAR_LOG_ERROR, "run %s: out of memory for its run.interrupted event", r->id);
    r->record_dirty = 1;
    par_buf_free(&b);
}

static void recover_one(par_runs_t *rs, const char *name, int64_t now_wall, unsigned *n_int)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", rs->dir, name);
    par_run_t *r = load_record(rs, p);
    if (r == NULL) {
        par_log_msg(PAR_LOG_WARN, "runs: ignoring the unreadable record %s", p);
        return;
    }
    int64_t keep = (int64_t)rs->retention_s * 1000;
    path_of(rs, r->id, ".events", p, sizeof(p));
    if (!r->expired && scan_events(r, p) != 0)
        par_log_msg(PAR_LOG_WARN, "run %s: its event file %s cannot be read", r->id, p);
    if (!terminal(r->status)) {
        interrupted_by_restart(r);
        (*n_int)++;
    } else if (r->fd >= 0) { /* complete: read back by opening it */
        close(r->fd);
        r->fd = -1;
    }
    int64_t left = r->ended_ms + keep - now_wall; /* until its events expire */
    r->expire_at_ms = par__now_ms() + left;
    pthread_mutex_lock(&rs->lock);
    int dup = par__runs_find_locked(rs, r->id) != NULL ||
              (rs->count >= rs->nhash && par__runs_grow_locked(rs) != PAR_OK);
    if (!dup) {
        par__runs_insert_locked(rs, r);
        par__runs_xpush_locked(rs, r, r->expired ? RUNS_TOMBS : RUNS_ENDED);
    }
    pthread_mutex_unlock(&rs->lock);
    if (dup) {
        par_run_unref(r);
        return;
    }
    if (r->record_dirty || r->last_seq > r->flushed_seq)
        par__run_dirty(r, 1);
}

static int by_expiry(const void *a, const void *b)
{
    int64_t x = (*(par_run_t *const *)a)->expire_at_ms, y = (*(par_run_t *const *)b)->expire_at_ms;
    return x < y ? -1 : x > y;
}

/* The runs read back joined the expiry lists in directory order: sorts them. */
static int sort_expiry_lists(par_runs_t *rs)
{
    for (int l = RUNS_ENDED; l <= RUNS_TOMBS; l++) {
        size_t n = 0;
        for (par_run_t *r = rs->xhead[l]; r; r = r->xnext)
            n++;
        if (n < 2)
            continue;
        par_run_t **v = malloc(n * sizeof(*v));
        if (v == NULL)
            return PAR_E_NO_MEMORY;
        n = 0;
        for (par_run_t *r = rs->xhead[l]; r; r = r->xnext)
            v[n++] = r;
        qsort(v, n, sizeof(*v), by_expiry);
        for (size_t i = 0; i < n; i++)
            par__runs_xpush_locked(rs, v[i], l);
        free(v);
    }
    return PAR_OK;
}

int par__runs_store_open(par_runs_t *rs, par_buf_t *err)
{
    if (mkdir(rs->dir, 0700) != 0 && errno != EEXIST) {
        par_buf_errf(err, "cannot create the runs directory %s: %s", rs->dir, strerror(errno));
        return PAR_E_IO;
    }
    DIR *d = opendir(rs->dir);
    if (d == NULL) {
        par_buf_errf(err, "cannot read the runs directory %s: %s", rs->dir, strerror(errno));
        return PAR_E_IO;
    }
    unsigned n_int = 0;
    int64_t now = par__wall_ms();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0 &&
            par_run_id_valid(e->d_name, len - 5))
            recover_one(rs, e->d_name, now, &n_int);
    }
    closedir(d);
    if (sort_expiry_lists(rs) != PAR_OK) { /* not shared yet: no lock needed */
        par_buf_errf(err, "out of memory reading the runs back");
        return PAR_E_NO_MEMORY;
    }
    if (rs->count)
        par_log_msg(PAR_LOG_INFO,
                    "runs: %zu run(s) read back from %s, %u interrupted by the restart", rs->count,
                    rs->dir, n_int);
    if (pthread_create(&rs->thread, NULL, runs_thread, rs) != 0) {
        par_buf_errf(err, "cannot start the runs' thread");
        return PAR_E_NO_MEMORY;
    }
    rs->thread_started = 1;
    return PAR_OK;
}
