/*
 * plugin/auth.c — a plugin's auth provider behind the auth layer's provider
 * seam (auth/auth.h): registered as "plugin:<name>", selected by auth.mode.
 *
 * One round of a request: the provider is asked with the request's
 * credentials (any header through host->auth_header, the peer address) and
 * answers through host->auth_complete with a `done` handle, exactly once.
 * An answer given during the call is used at once (no hand-off); a later
 * one parks the request (PAR_AUTH_PENDING, like an OIDC key refresh), is
 * kept in the waiter, and the request's loop takes it on the next round.
 *
 * A `done` has two references: the round's (dropped when the answer has
 * been read, or with the waiter) and the plugin's (dropped when it
 * completes). Threads: check on event loops; completion on any thread;
 * destroy on the main thread (parked requests are answered 503, a later
 * completion is ignored).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "auth/identity.h"
#include "obs/log.h"
#include "plugin/internal.h"

struct par_auth_request {
    const par_auth_creds_t *cr;
};

struct par_auth_done {
    atomic_int refs;
    par_plug_t *p;
    int completed;                       /* an answer is in (the plugin's, or the host's 503) */
    par_auth_waiter_t *w;                /* the parked request's waiter, or NULL */
    struct par_auth_done *next, **pprev; /* p->pending while parked */
    int status;
    char *subject, *tenant;
    char **perms;
    char reason[256];
};

typedef struct prov {
    par_auth_provider_t base;
    par_plug_t *p;
    const par_auth_config_t *cfg; /* the authenticator's: permission grants */
} prov_t;

static void done_unref(struct par_auth_done *d)
{
    if (atomic_fetch_sub(&d->refs, 1) != 1)
        return;
    free(d->subject);
    free(d->tenant);
    for (size_t i = 0; d->perms && d->perms[i]; i++)
        free(d->perms[i]);
    free(d->perms);
    free(d);
}

static void done_release_round(void *answer)
{
    done_unref(answer);
}

static void unlink_pending(struct par_auth_done *d)
{
    if (d->pprev) {
        *d->pprev = d->next;
        if (d->next)
            d->next->pprev = d->pprev;
        d->pprev = NULL;
        d->next = NULL;
    }
}

/* ---- host functions -------------------------------------------------------------- */

int par__plug_auth_header(const par_auth_request_t *r, const char *name, par_slice_t *value)
{
    if (r == NULL || name == NULL || r->cr->header == NULL)
        return 0;
    return r->cr->header(r->cr->header_ctx, name, value);
}

/* Copies the plugin's answer (its strings are its own). */
static void take_answer(struct par_auth_done *d, const par_auth_result_t *res)
{
    d->status = res ? res->status : PAR_E_AUTH_UNAVAILABLE;
    if (res == NULL || res->size < offsetof(par_auth_result_t, reason)) {
        snprintf(d->reason, sizeof(d->reason), "the plugin gave no valid answer");
        d->status = PAR_E_AUTH_UNAVAILABLE;
        return;
    }
    if (d->status != PAR_OK) {
        int has_reason = PAR_PLUGIN_HAS(res, par_auth_result_t, reason) && res->reason;
        snprintf(d->reason, sizeof(d->reason), "%s", has_reason ? res->reason : "refused");
        return;
    }
    d->subject = res->subject ? strdup(res->subject) : NULL;
    d->tenant = res->tenant ? strdup(res->tenant) : NULL;
    size_t n = 0;
    while (res->permissions && res->permissions[n])
        n++;
    d->perms = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; d->perms && i < n; i++)
        d->perms[i] = strdup(res->permissions[i]);
}

void par__plug_auth_complete(par_auth_done_t *d, const par_auth_result_t *res)
{
    if (d == NULL)
        return;
    par_plug_t *p = d->p;
    pthread_mutex_lock(&p->lock);
    int late = d->completed;
    par_auth_waiter_t *w = NULL;
    if (!late) {
        take_answer(d, res);
        d->completed = 1;
        w = d->w;
        unlink_pending(d);
    }
    pthread_mutex_unlock(&p->lock);
    if (late)
        par_log_msg(PAR_LOG_DEBUG,
                    "plugin %s: an auth answer came after the host had answered the request; "
                    "ignored",
                    p->name);
    if (w)
        w->ready(w); /* the loop reads the answer on the next round */
    done_unref(d);   /* the plugin's reference */
}

void par__plug_auth_free_pending(par_plug_t *p)
{
    /* after fini: answers that never came are no longer expected */
    while (p->pending) {
        struct par_auth_done *d = p->pending;
        unlink_pending(d);
        done_unref(d);
    }
}

/* ---- the provider ------------------------------------------------------------------ */

/* The answer as an identity (PAR_OK), or a refusal in `f`. */
static int answer(const prov_t *pr, const struct par_auth_done *d, par_identity_t **out,
                  par_auth_fail_t *f)
{
    if (d->status != PAR_OK) {
        int st = d->status == PAR_E_UNAUTHORIZED || d->status == PAR_E_AUTH_UNAVAILABLE
                     ? d->status
                     : PAR_E_INVALID_TOKEN;
        return par__auth_fail(f, st,
                              st == PAR_E_UNAUTHORIZED       ? PAR_AUTH_R_MISSING
                              : st == PAR_E_AUTH_UNAVAILABLE ? PAR_AUTH_R_UNAVAILABLE
                                                             : PAR_AUTH_R_PLUGIN,
                              "plugin %s: %s", pr->p->name, d->reason);
    }
    size_t sl = d->subject ? strlen(d->subject) : 0, tl = d->tenant ? strlen(d->tenant) : 0;
    if (sl == 0 || sl > PAR_SUBJECT_MAX || tl > PAR_TENANT_MAX || (d->tenant && tl == 0))
        return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_CLAIMS,
                              "plugin %s: the subject must be 1 to %d bytes and the tenant at "
                              "most %d",
                              pr->p->name, PAR_SUBJECT_MAX, PAR_TENANT_MAX);
    par_identity_t *id = par_identity_new(d->subject, d->tenant);
    if (id == NULL || d->perms == NULL)
        return par_identity_unref(id), PAR_E_NO_MEMORY;
    for (size_t i = 0; d->perms[i]; i++) {
        if (par_perms_add(&id->perms, d->perms[i], NULL, 0) == 0)
            continue;
        /* not a permission string: a value auth.permissions.grants maps */
        for (size_t g = 0; g < pr->cfg->perms.ngrants; g++)
            if (strcmp(pr->cfg->perms.grants[g].value, d->perms[i]) == 0 &&
                par_perms_merge(&id->perms, &pr->cfg->perms.grants[g].perms) != 0)
                return par_identity_unref(id), PAR_E_NO_MEMORY;
    }
    *out = id;
    return PAR_OK;
}

static void fill_info(par_auth_info_t *info, const par_auth_creds_t *cr, const char *rid)
{
    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    info->request_id = rid ? rid : "";
    info->peer_addr = cr->peer_addr ? cr->peer_addr : "";
    info->authorization = cr->authorization;
    info->api_key = cr->api_key;
    info->method = cr->method ? cr->method : "";
    info->path = cr->path ? cr->path : "";
}

static int check_request(par_auth_provider_t *base, const par_auth_creds_t *cr,
                         par_auth_waiter_t *w, const char *request_id, par_identity_t **out,
                         par_auth_fail_t *f)
{
    prov_t *pr = (prov_t *)base;
    par_plug_t *p = pr->p;
    if (cr->resumed && cr->resumed->_answer) /* the answer that woke the request */
        return answer(pr, cr->resumed->_answer, out, f);
    struct par_auth_done *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return PAR_E_NO_MEMORY;
    atomic_init(&d->refs, 2); /* this round's and the plugin's */
    d->p = p;
    par_auth_info_t info;
    fill_info(&info, cr, request_id);
    struct par_auth_request req = {cr};
    p->auth.authenticate(p->state, &info, &req, d);
    pthread_mutex_lock(&p->lock);
    if (!d->completed && w) {
        d->w = w;
        d->next = p->pending;
        if (p->pending)
            p->pending->pprev = &d->next;
        d->pprev = &p->pending;
        p->pending = d;
        w->_answer = d; /* the round's reference goes with the waiter */
        w->_answer_free = done_release_round;
        pthread_mutex_unlock(&p->lock);
        return PAR_AUTH_PENDING;
    }
    int completed = d->completed;
    pthread_mutex_unlock(&p->lock);
    int rc = completed ? answer(pr, d, out, f)
                       : par__auth_fail(f, PAR_E_AUTH_UNAVAILABLE, PAR_AUTH_R_UNAVAILABLE,
                                        "plugin %s did not answer at once and the request "
                                        "cannot wait",
                                        p->name);
    done_unref(d);
    return rc;
}

static int prov_check(par_auth_provider_t *p, par_slice_t credential, par_auth_waiter_t *w,
                      par_identity_t **out, par_auth_fail_t *f)
{
    (void)p, (void)credential, (void)w, (void)out;
    return par__auth_fail(f, PAR_E_AUTH_UNAVAILABLE, PAR_AUTH_R_UNAVAILABLE, "not used");
}

static int prov_ready(par_auth_provider_t *base, par_buf_t *why)
{
    prov_t *pr = (prov_t *)base;
    if (!PAR_PLUGIN_HAS(&pr->p->auth, par_auth_ops_t, ready) || pr->p->auth.ready == NULL)
        return 1;
    char msg[512] = "";
    if (pr->p->auth.ready(pr->p->state, msg, sizeof(msg)))
        return 1;
    msg[sizeof(msg) - 1] = '\0';
    par_buf_appendf(why, "auth plugin %s is not ready: %s", pr->p->name, *msg ? msg : "no reason");
    return 0;
}

static void prov_describe(par_auth_provider_t *base, json_t *into)
{
    prov_t *pr = (prov_t *)base;
    json_object_set_new(into, "plugin", json_string(pr->p->name));
    json_object_set_new(into, "plugin_version", json_string(pr->p->version));
}

/* Answers the parked requests (503): nothing may wait on a provider that goes away. */
static void prov_destroy(par_auth_provider_t *base)
{
    prov_t *pr = (prov_t *)base;
    par_plug_t *p = pr->p;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        struct par_auth_done *d = p->pending;
        par_auth_waiter_t *w = NULL;
        if (d) {
            unlink_pending(d);
            d->completed = 1;
            d->status = PAR_E_AUTH_UNAVAILABLE;
            snprintf(d->reason, sizeof(d->reason), "the runtime is stopping");
            w = d->w;
        }
        pthread_mutex_unlock(&p->lock);
        if (d == NULL)
            break;
        if (w)
            w->ready(w);
        /* the plugin's reference stays: a later completion is ignored and drops it */
    }
    free(pr);
}

static const par_auth_provider_ops_t plugin_ops = {
    .name = "plugin",
    .check = prov_check,
    .ready = prov_ready,
    .describe = prov_describe,
    .destroy = prov_destroy,
    .check_request = check_request,
};

static int factory(void *data, par_auth_config_t *cfg, par_auth_provider_t **out, par_buf_t *err)
{
    (void)err;
    prov_t *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return PAR_E_NO_MEMORY;
    pr->base.ops = &plugin_ops;
    pr->base.data = pr;
    pr->p = data;
    pr->cfg = cfg;
    *out = &pr->base;
    return PAR_OK;
}

int par__plug_auth_register(par_plug_t *p, par_auth_registry_t *reg, par_buf_t *err)
{
    char name[80];
    snprintf(name, sizeof(name), "plugin:%s", p->name);
    int rc = par_auth_registry_add(reg, name, factory, p);
    if (rc == PAR_E_CONFLICT)
        par_buf_appendf(err, "auth provider %s is registered twice", name);
    return rc;
}
