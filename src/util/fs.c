/*
 * util/fs.c — see fs.h.
 *
 * The walk is a loop over a heap array of frames, one per directory level
 * between the top and the directory being read. Only the PAR_FS_OPEN_DIRS
 * deepest frames hold an open DIR; a shallower one is closed with its read
 * position (telldir) when the walk goes deeper, and reopened through ".." of
 * its child (checked by device and inode: a directory moved meanwhile stops
 * the walk rather than letting it wander) and repositioned (seekdir) when the
 * walk comes back up. So neither the C stack nor the descriptor table grows
 * with depth, and no path longer than one name is ever formed.
 */
#include "util/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct frame {
    DIR *d;         /* NULL while closed */
    long pos;       /* read position while closed */
    struct stat st; /* the directory itself, for its own visit */
    char *name;     /* its name in its parent; NULL for the top */
} frame_t;

typedef struct walk {
    frame_t *f;
    size_t n, cap;
    size_t open;   /* frames with an open DIR: always the deepest ones */
    dev_t top_dev; /* the walk never enters another file system */
    const char *top;
    par_fs_visit_fn visit;
    void *ud;
    par_fs_result_t *res;
} walk_t;

static void fail(walk_t *w, int err)
{
    w->res->failures++;
    if (w->res->first_errno == 0)
        w->res->first_errno = err ? err : EIO;
}

/* Opens a directory below `dirfd` without following a link; a directory whose
 * mode locks its owner out (a worker may chmod 000 its own) is opened up. */
static int open_dir_at(int dirfd, const char *name)
{
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, name, flags);
    if (fd < 0 && errno == EACCES && fchmodat(dirfd, name, 0700, 0) == 0)
        fd = openat(dirfd, name, flags);
    return fd;
}

static void close_all(walk_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->f[i].d)
            closedir(w->f[i].d);
        free(w->f[i].name);
    }
    free(w->f);
    w->f = NULL;
    w->n = w->cap = w->open = 0;
}

/* Takes `fd` (a directory described by `st`) as the new deepest frame. */
static int push(walk_t *w, int fd, const char *name, const struct stat *st)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        frame_t *nf = realloc(w->f, cap * sizeof(*nf));
        if (nf == NULL) {
            close(fd);
            return -1;
        }
        w->f = nf, w->cap = cap;
    }
    frame_t *t = &w->f[w->n];
    t->name = name ? strdup(name) : NULL;
    t->d = (name == NULL || t->name) ? fdopendir(fd) : NULL;
    if (t->d == NULL) {
        free(t->name);
        close(fd);
        return -1;
    }
    t->st = *st;
    t->pos = 0;
    w->n++;
    if (++w->open > PAR_FS_OPEN_DIRS) { /* close the shallowest open one */
        frame_t *o = &w->f[w->n - w->open];
        o->pos = telldir(o->d);
        closedir(o->d);
        o->d = NULL;
        w->open--;
    }
    return 0;
}

/* Reopens the parent of the deepest frame through "..", if it was closed. */
static int reopen_parent(walk_t *w)
{
    frame_t *p = &w->f[w->n - 2];
    if (p->d)
        return 0;
    int fd = openat(dirfd(w->f[w->n - 1].d), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_dev != p->st.st_dev || st.st_ino != p->st.st_ino) {
        if (fd >= 0)
            close(fd);
        errno = ESTALE; /* the tree was moved under the walk */
        return -1;
    }
    if ((p->d = fdopendir(fd)) == NULL) {
        close(fd);
        return -1;
    }
    seekdir(p->d, p->pos);
    w->open++;
    return 0;
}

/* The deepest directory is read: visit it from its parent and drop it.
 * Returns the visitor's verdict (1 stops), or -2 when the walk cannot go on. */
static int pop(walk_t *w)
{
    frame_t t = w->f[w->n - 1];
    if (w->n > 1 && reopen_parent(w) != 0) {
        fail(w, errno);
        return -2;
    }
    closedir(t.d);
    w->open--;
    w->n--;
    int pfd = w->n ? dirfd(w->f[w->n - 1].d) : AT_FDCWD;
    int r = w->visit(w->ud, pfd, t.name ? t.name : w->top, &t.st);
    free(t.name);
    if (r < 0)
        fail(w, errno);
    return r;
}

/* One entry of the deepest directory: a directory of the same file system is
 * entered, anything else is visited. */
static int step(walk_t *w, const char *name)
{
    int fd = dirfd(w->f[w->n - 1].d);
    struct stat st;
    int r = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW);
    if (r != 0 && errno == EACCES && fchmod(fd, 0700) == 0) /* listable, not searchable */
        r = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW);
    if (r != 0) {
        if (errno != ENOENT)
            fail(w, errno);
        return 0;
    }
    w->res->entries++;
    if (S_ISDIR(st.st_mode) && st.st_dev == w->top_dev) {
        int cfd = open_dir_at(fd, name);
        struct stat cst;
        if (cfd >= 0 && fstat(cfd, &cst) == 0 && cst.st_ino == st.st_ino &&
            cst.st_dev == st.st_dev) {
            if (push(w, cfd, name, &cst) == 0) {
                if (w->n - 1 > w->res->max_depth)
                    w->res->max_depth = w->n - 1;
                return 0;
            }
        } else if (cfd >= 0) {
            close(cfd);
            errno = ESTALE;
        }
        fail(w, errno);
    }
    r = w->visit(w->ud, fd, name, &st);
    if (r < 0)
        fail(w, errno);
    return r;
}

static int walk_dir(walk_t *w)
{
    while (w->n > 0) {
        errno = 0;
        struct dirent *e = readdir(w->f[w->n - 1].d);
        int r;
        if (e == NULL) {
            if (errno != 0)
                fail(w, errno);
            r = pop(w);
        } else if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        } else {
            r = step(w, e->d_name);
        }
        if (r == 1)
            return 1;
        if (r == -2)
            return -1;
    }
    return 0;
}

int par_fs_walk(const char *path, par_fs_visit_fn visit, void *ud, par_fs_result_t *res)
{
    par_fs_result_t own;
    walk_t w = {.top = path, .visit = visit, .ud = ud, .res = res ? res : &own};
    memset(w.res, 0, sizeof(*w.res));
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : (fail(&w, errno), -1);
    w.res->entries = 1;
    w.top_dev = st.st_dev;
    int r;
    if (!S_ISDIR(st.st_mode)) {
        r = visit(ud, AT_FDCWD, path, &st);
        if (r < 0)
            fail(&w, errno);
    } else {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == EACCES && fchmodat(AT_FDCWD, path, 0700, 0) == 0)
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || push(&w, fd, NULL, &st) != 0) {
            fail(&w, errno);
            return -1;
        }
        r = walk_dir(&w);
        close_all(&w);
    }
    if (r == 1)
        return 1;
    if (w.res->failures) {
        errno = w.res->first_errno;
        return -1;
    }
    return 0;
}

static int remove_visit(void *ud, int dirfd, const char *name, const struct stat *st)
{
    (void)ud;
    int flags = S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0;
    if (unlinkat(dirfd, name, flags) == 0 || errno == ENOENT)
        return 0;
    /* a directory without write permission for its owner: open it up */
    if ((errno == EACCES || errno == EPERM) && dirfd != AT_FDCWD && fchmod(dirfd, 0700) == 0 &&
        (unlinkat(dirfd, name, flags) == 0 || errno == ENOENT))
        return 0;
    return -1;
}

int par_fs_remove(const char *path, par_fs_result_t *res)
{
    par_fs_result_t own;
    int r = par_fs_walk(path, remove_visit, NULL, res ? res : &own);
    if (r == 0)
        return 0;
    int e = errno;
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return 0;
    errno = e;
    return -1;
}

/* Inodes with several links, each counted once: a file hard-linked a thousand
 * times takes its blocks once. Open addressing on (dev, ino). */
typedef struct inode_set {
    struct inode_key {
        dev_t dev;
        ino_t ino;
    } * k;
    size_t n, cap;
} inode_set_t;

/* 1 when (dev, ino) was new (and is now in the set), 0 when seen, -1 when out
 * of memory (then it counts again: over-counting is the safe side). */
static int inode_add(inode_set_t *s, dev_t dev, ino_t ino)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        struct inode_key *k = calloc(cap, sizeof(*k));
        if (k == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->k[i].ino == 0)
                continue;
            size_t h = (size_t)(s->k[i].ino * 0x9e3779b97f4a7c15ull ^ s->k[i].dev) & (cap - 1);
            while (k[h].ino != 0)
                h = (h + 1) & (cap - 1);
            k[h] = s->k[i];
        }
        free(s->k);
        s->k = k, s->cap = cap;
    }
    size_t h = (size_t)(ino * 0x9e3779b97f4a7c15ull ^ dev) & (s->cap - 1);
    for (; s->k[h].ino != 0; h = (h + 1) & (s->cap - 1))
        if (s->k[h].ino == ino && s->k[h].dev == dev)
            return 0;
    s->k[h] = (struct inode_key){dev, ino ? ino : 1};
    s->n++;
    return 1;
}

typedef struct usage {
    uint64_t bytes, stop_above;
    inode_set_t linked;
} usage_t;

static int usage_visit(void *ud, int dirfd, const char *name, const struct stat *st)
{
    (void)dirfd, (void)name;
    usage_t *u = ud;
    if (!S_ISDIR(st->st_mode) && st->st_nlink > 1 &&
        inode_add(&u->linked, st->st_dev, st->st_ino) == 0)
        return 0;
    uint64_t b = (uint64_t)st->st_blocks * 512;
    u->bytes += b > 512 ? b : 512;
    return u->stop_above && u->bytes > u->stop_above ? 1 : 0;
}

int par_fs_usage(const char *path, uint64_t stop_above, uint64_t *bytes, par_fs_result_t *res)
{
    usage_t u = {.stop_above = stop_above};
    int r = par_fs_walk(path, usage_visit, &u, res);
    free(u.linked.k);
    *bytes = u.bytes;
    return r < 0 ? -1 : 0;
}
