/*
 * runtime/converge.c — the converge decision and the packages folder.
 *
 * Owns: par__converge_diff (pure: desired set + active set → plan; unit
 * tested in tests/unit/test_converge.c) and the packages folder: the first
 * deploy of its .apkg files and the inotify watcher thread that keeps the
 * active set following it. The registry index poller is converge_index.c.
 * Callers: `par serve` (folder), converge_index.c (diff). The watcher thread
 * deploys through par__deploy; it must never run on an event loop and never
 * stop inside a deploy.
 */
#include "runtime/converge.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "obs/log.h"
#include "runtime/runtime.h"

/* ---- the decision ------------------------------------------------------------------ */

int par__converge_permanent(int status)
{
    return status != PAR_E_FETCH_FAILED && status != PAR_E_IO && status != PAR_E_NO_MEMORY &&
           status != PAR_E_INTERNAL && status != PAR_E_TIMEOUT;
}

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* 1 when a later entry names the same package (or, nameless, has the same key). */
static int superseded(const par_converge_input_t *in, size_t i)
{
    const par_converge_want_t *w = &in->want[i];
    for (size_t j = i + 1; j < in->nwant; j++)
        if (w->name ? same(w->name, in->want[j].name) : same(w->key, in->want[j].key))
            return 1;
    return 0;
}

static int current(const par_converge_input_t *in, const par_converge_want_t *w)
{
    if (w->name == NULL || w->version == NULL)
        return 0;
    for (size_t k = 0; k < in->nhave; k++) {
        const par_converge_have_t *h = &in->have[k];
        if (h->active && same(h->name, w->name) && same(h->version, w->version) &&
            (w->sha256 == NULL || same(h->sha256, w->sha256)))
            return 1;
    }
    return 0;
}

static int doomed(const par_converge_input_t *in, const par_converge_have_t *h)
{
    if (!h->active)
        return 0;
    for (size_t k = 0; k < in->ngone; k++)
        if (same(h->source, in->gone[k]))
            return 1;
    if (in->origin == NULL || !same(h->origin, in->origin))
        return 0;
    for (size_t k = 0; k < in->nlisted; k++)
        if (same(h->name, in->listed[k]))
            return 0;
    return 1;
}

int par__converge_diff(const par_converge_input_t *in, par_converge_plan_t *out)
{
    assert(in && out);
    memset(out, 0, sizeof(*out));
    size_t nw = in->nwant ? in->nwant : 1, nh = in->nhave ? in->nhave : 1;
    out->deploy = malloc(nw * sizeof(size_t));
    out->kept_want = malloc(nw * sizeof(size_t));
    out->kept_refused = malloc(nw * sizeof(size_t));
    out->remove = malloc(nh * sizeof(size_t));
    if (!out->deploy || !out->kept_want || !out->kept_refused || !out->remove) {
        par__converge_plan_free(out);
        return PAR_E_NO_MEMORY;
    }
    for (size_t i = 0; i < in->nwant; i++) {
        const par_converge_want_t *w = &in->want[i];
        assert(w->key != NULL);
        if (superseded(in, i) || current(in, w))
            continue;
        size_t k;
        for (k = 0; k < in->nrefused; k++)
            if (same(in->refused[k], w->key))
                break;
        if (k < in->nrefused) { /* refused before, unchanged since: the verdict stands */
            out->kept_want[out->nkept] = i;
            out->kept_refused[out->nkept++] = k;
        } else {
            out->deploy[out->ndeploy++] = i;
        }
    }
    for (size_t j = 0; j < in->nhave; j++)
        if (doomed(in, &in->have[j]))
            out->remove[out->nremove++] = j;
    assert(out->ndeploy + out->nkept <= in->nwant && out->nremove <= in->nhave);
    return PAR_OK;
}

void par__converge_plan_free(par_converge_plan_t *p)
{
    free(p->deploy);
    free(p->kept_want);
    free(p->kept_refused);
    free(p->remove);
    memset(p, 0, sizeof(*p));
}

/* ---- the packages folder ----------------------------------------------------------- */

struct par_folder_watch {
    par_runtime_t *rt;
    char *dir;
    int fd;
    int stop_fd; /* eventfd: the watcher leaves between two deploys, never inside one */
    pthread_t thread;
};

static int is_apkg(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".apkg") == 0 && name[0] != '.';
}

/* "x.apkg.minisig" or "x.apkg.sha256" → "x.apkg" in `apkg`. */
static int is_side_file(const char *name, char apkg[NAME_MAX + 1])
{
    static const char *const sfx[] = {".minisig", ".sha256"};
    size_t n = strlen(name);
    for (size_t i = 0; i < 2; i++) {
        size_t l = strlen(sfx[i]);
        if (n > l && strcmp(name + n - l, sfx[i]) == 0) {
            snprintf(apkg, NAME_MAX + 1, "%.*s", (int)(n - l), name);
            return is_apkg(apkg);
        }
    }
    return 0;
}

static void deploy_file(par_runtime_t *rt, const char *path)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    par_deploy_req_t req = {.path = path, .origin = "dir"};
    par__deploy(rt, &req, &err, NULL); /* logged and listed either way */
    par_buf_free(&err);
}

/* The active set as the decision sees it; `pk` keeps the strings alive. */
static int have_snapshot(par_runtime_t *rt, par_pkgver_t ***pk, size_t *n,
                         par_converge_have_t **out)
{
    if (par__packages_snapshot(rt, pk, n) != PAR_OK)
        return PAR_E_NO_MEMORY;
    *out = calloc(*n ? *n : 1, sizeof(**out));
    if (*out == NULL) {
        for (size_t i = 0; i < *n; i++)
            par__pkgver_unref((*pk)[i]);
        free(*pk);
        return PAR_E_NO_MEMORY;
    }
    for (size_t i = 0; i < *n; i++) {
        par_pkgver_t *p = (*pk)[i];
        (*out)[i] =
            (par_converge_have_t){p->name,   p->version, p->sha256,
                                  p->source, p->origin,  atomic_load(&p->state) == PAR_PKG_ACTIVE};
    }
    return PAR_OK;
}

static void have_release(par_pkgver_t **pk, size_t n, par_converge_have_t *have)
{
    for (size_t i = 0; i < n; i++)
        par__pkgver_unref(pk[i]);
    free(pk);
    free(have);
}

/* Converges on files of the folder that changed: deploy those that are there,
 * remove what was deployed from those that are gone. */
static void folder_converge(par_runtime_t *rt, const char *dir, char names[][NAME_MAX + 1],
                            size_t count)
{
    char(*paths)[PATH_MAX] = malloc(count * sizeof(*paths));
    par_converge_want_t *want = calloc(count, sizeof(*want));
    const char **gone = calloc(count, sizeof(*gone));
    par_pkgver_t **pk = NULL;
    size_t n = 0, nwant = 0, ngone = 0;
    par_converge_have_t *have = NULL;
    par_converge_plan_t plan = {0};
    if (!paths || !want || !gone || have_snapshot(rt, &pk, &n, &have) != PAR_OK)
        goto out;
    for (size_t i = 0; i < count; i++) {
        snprintf(paths[i], PATH_MAX, "%s/%s", dir, names[i]);
        if (access(paths[i], F_OK) == 0)
            want[nwant++].key = paths[i];
        else
            gone[ngone++] = paths[i];
    }
    par_converge_input_t in = {
        .want = want, .nwant = nwant, .have = have, .nhave = n, .gone = gone, .ngone = ngone};
    if (par__converge_diff(&in, &plan) != PAR_OK)
        goto out;
    for (size_t i = 0; i < plan.ndeploy; i++)
        deploy_file(rt, want[plan.deploy[i]].key);
    for (size_t i = 0; i < plan.nremove; i++) {
        const par_converge_have_t *h = &have[plan.remove[i]];
        par_log_msg(PAR_LOG_INFO, "%s was removed from the packages folder: unloading %s@%s",
                    h->source, h->name, h->version);
        par__runtime_remove(rt, h->name, h->version);
    }
out:
    if (pk)
        have_release(pk, n, have);
    par__converge_plan_free(&plan);
    free(paths);
    free(want);
    free(gone);
}

/* Collects the package names a batch of inotify events concerns. */
static size_t event_names(const char *buf, ssize_t r, char names[64][NAME_MAX + 1])
{
    size_t count = 0;
    for (const char *p = buf; p < buf + r;) {
        const struct inotify_event *ev = (const struct inotify_event *)p;
        /* a signature or digest file arriving after its package redeploys it */
        char name[NAME_MAX + 1] = "";
        if (ev->len && is_apkg(ev->name))
            snprintf(name, sizeof(name), "%s", ev->name);
        else if (!(ev->len && is_side_file(ev->name, name) &&
                   !(ev->mask & (IN_DELETE | IN_MOVED_FROM))))
            name[0] = '\0';
        if (name[0]) {
            size_t k;
            for (k = 0; k < count; k++)
                if (strcmp(names[k], name) == 0)
                    break;
            if (k == count && count < 64)
                snprintf(names[count++], NAME_MAX + 1, "%s", name);
        }
        p += sizeof(*ev) + ev->len;
    }
    return count;
}

static void *watch_main(void *arg)
{
    par_folder_watch_t *w = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    char names[64][NAME_MAX + 1];
    for (;;) {
        struct pollfd pfd[2] = {{w->fd, POLLIN, 0}, {w->stop_fd, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        ssize_t r = read(w->fd, buf, sizeof(buf));
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        /* collect the names first: a publisher often writes then renames */
        size_t count = event_names(buf, r, names);
        if (count) {
            usleep(50000); /* let a burst of writes settle */
            folder_converge(w->rt, w->dir, names, count);
        }
    }
    return NULL;
}

par_folder_watch_t *par__folder_watch_start(par_runtime_t *rt, const char *dir)
{
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 ||
        inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0) {
        par_log_msg(PAR_LOG_WARN, "cannot watch %s for changes: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    par_folder_watch_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->dir = strdup(dir)) == NULL) {
        par_log_msg(PAR_LOG_WARN, "cannot watch %s for changes: out of memory", dir);
        free(w);
        close(fd);
        return NULL;
    }
    w->rt = rt;
    w->fd = fd;
    w->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (w->stop_fd < 0 || pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        close(fd);
        if (w->stop_fd >= 0)
            close(w->stop_fd);
        free(w->dir);
        free(w);
        return NULL;
    }
    return w;
}

void par__folder_watch_stop(par_folder_watch_t *w)
{
    if (w == NULL)
        return;
    uint64_t one = 1;
    if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
        par_log_msg(PAR_LOG_WARN, "cannot stop the folder watcher: %s", strerror(errno));
    pthread_join(w->thread, NULL);
    close(w->stop_fd);
    close(w->fd);
    free(w->dir);
    free(w);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void par__folder_deploy_all(par_runtime_t *rt, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        par_log_msg(PAR_LOG_WARN, "packages directory %s: %s; serving no packages", dir,
                    strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".apkg") == 0) {
            char **grown = realloc(names, (n + 1) * sizeof(char *));
            char *copy = grown ? strdup(e->d_name) : NULL;
            if (grown)
                names = grown;
            if (copy == NULL) {
                par_log_msg(PAR_LOG_ERROR, "packages directory %s: out of memory; %s skipped", dir,
                            e->d_name);
                continue;
            }
            names[n++] = copy;
        }
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        deploy_file(rt, path);
        free(names[i]);
    }
    free(names);
}
