/*
 * auth/auth.c — see auth.h.
 */
#include "auth/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <par/par.h>

#include "obs/log.h"
#include "auth/metrics.h"

struct par_auth {
    par_auth_config_t cfg;     /* owned; providers borrow from it */
    par_auth_provider_t *prov; /* NULL when the mode is off */
};

static const char *const reason_names[] = {
#define PAR__AUTH_REASON_NAME(name, str) str,
    PAR_AUTH_REASON_MAP(PAR__AUTH_REASON_NAME)
#undef PAR__AUTH_REASON_NAME
};

const char *par_auth_reason_name(int reason)
{
    return reason >= 0 && reason < PAR_AUTH_REASON_COUNT ? reason_names[reason] : "none";
}

static par_auth_t *take_config(par_auth_config_t *cfg)
{
    par_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    return a;
}

int par__auth_registry_build(const par_auth_registry_t *r, par_auth_config_t *cfg,
                             par_auth_provider_t **out, par_buf_t *err);

int par_auth_new_from(const par_auth_registry_t *reg, par_auth_config_t *cfg, par_auth_t **out,
                      par_buf_t *err)
{
    par_auth_t *a = take_config(cfg);
    if (a == NULL) {
        par_auth_config_free(cfg);
        par_buf_appends(err, "out of memory");
        return PAR_E_NO_MEMORY;
    }
    int rc = PAR_OK;
    par_auth_registry_t *own = NULL;
    if (a->cfg.mode == PAR_AUTH_UNSET) {
        par_buf_appends(err, "auth.mode is not set");
        rc = PAR_E_INVALID_ARGUMENT;
    } else if (a->cfg.mode != PAR_AUTH_OFF) {
        if (reg == NULL && (rc = par_auth_registry_new(&own)) == PAR_OK)
            reg = own;
        if (rc == PAR_OK)
            rc = par__auth_registry_build(reg, &a->cfg, &a->prov, err);
        par_auth_registry_free(own);
    }
    if (rc != PAR_OK) {
        par_auth_config_free(&a->cfg);
        free(a);
        return rc;
    }
    *out = a;
    return PAR_OK;
}

int par_auth_new(par_auth_config_t *cfg, par_auth_t **out, par_buf_t *err)
{
    return par_auth_new_from(NULL, cfg, out, err);
}

void par_auth_waiter_done(par_auth_waiter_t *w)
{
    if (w && w->_answer && w->_answer_free)
        w->_answer_free(w->_answer);
    if (w)
        w->_answer = NULL;
}

int par_auth_new_with_provider(par_auth_config_t *cfg, par_auth_provider_t *p, par_auth_t **out)
{
    par_auth_t *a = take_config(cfg);
    if (a == NULL) {
        par_auth_config_free(cfg);
        p->ops->destroy(p);
        return PAR_E_NO_MEMORY;
    }
    a->prov = p;
    *out = a;
    return PAR_OK;
}

void par_auth_destroy(par_auth_t *a)
{
    if (a == NULL)
        return;
    if (a->prov)
        a->prov->ops->destroy(a->prov);
    par_auth_config_free(&a->cfg);
    free(a);
}

int par_auth_enabled(const par_auth_t *a)
{
    return a && a->prov != NULL;
}

int par_auth_mode(const par_auth_t *a)
{
    return a ? a->cfg.mode : PAR_AUTH_OFF;
}

int par_auth_is_open(const par_auth_t *a, const char *path, size_t len)
{
    for (size_t i = 0; i < a->cfg.nopen; i++)
        if (strlen(a->cfg.open_paths[i]) == len && memcmp(a->cfg.open_paths[i], path, len) == 0)
            return 1;
    return 0;
}

par_slice_t par_auth_bearer(par_slice_t v)
{
    par_slice_t none = {NULL, 0};
    const char *p = v.ptr, *end = v.ptr + v.len;
    if (p == NULL)
        return none;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (end - p < 6 || strncasecmp(p, "bearer", 6) != 0)
        return none;
    p += 6;
    if (p < end && *p != ' ' && *p != '\t')
        return none; /* "Bearerish": another scheme */
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    par_slice_t t = {p, (size_t)(end - p)};
    return t;
}

static void log_refusal(const par_auth_t *a, const char *request_id, const par_auth_fail_t *f)
{
    par_auth_count_failure(f->reason);
    par_logline_t l;
    if (!par_log_begin(&l, PAR_LOG_INFO,
                       f->reason == PAR_AUTH_R_FORBIDDEN ? "authorization refused"
                                                         : "authentication failed"))
        return;
    par_log_str(&l, "request_id", request_id);
    par_log_str(&l, "auth", par_auth_mode_name(a->cfg.mode));
    par_log_str(&l, "reason", par_auth_reason_name(f->reason));
    par_log_str(&l, "detail", f->detail);
    par_log_end(&l);
}

int par_auth_authenticate(par_auth_t *a, const par_auth_creds_t *cr, par_auth_waiter_t *w,
                          const char *request_id, par_identity_t **out)
{
    *out = NULL;
    if (!par_auth_enabled(a))
        return PAR_OK;
    par_auth_fail_t f = {PAR_AUTH_R_NONE, ""};
    if (a->prov->ops->check_request) { /* it reads what it needs of the request itself */
        int rc = a->prov->ops->check_request(a->prov, cr, w, request_id, out, &f);
        if (rc == PAR_OK || rc == PAR_AUTH_PENDING)
            return rc;
        if (f.reason == PAR_AUTH_R_NONE)
            f.reason = PAR_AUTH_R_PLUGIN;
        log_refusal(a, request_id, &f);
        return rc == PAR_E_AUTH_UNAVAILABLE || rc == PAR_E_UNAUTHORIZED ? rc : PAR_E_INVALID_TOKEN;
    }
    par_slice_t cred = par_auth_bearer(cr->authorization);
    if (cred.ptr == NULL && a->cfg.mode == PAR_AUTH_API_KEY && cr->api_key.ptr)
        cred = cr->api_key;
    if (cred.ptr == NULL) {
        par__auth_fail(&f, 0, PAR_AUTH_R_MISSING, "%s",
                       cr->authorization.ptr ? "the Authorization header is not a Bearer credential"
                                             : "no credentials");
        log_refusal(a, request_id, &f);
        return PAR_E_UNAUTHORIZED;
    }
    if (cred.len == 0) {
        par__auth_fail(&f, 0, PAR_AUTH_R_MALFORMED, "empty bearer credential");
        log_refusal(a, request_id, &f);
        return PAR_E_INVALID_TOKEN;
    }
    int rc = a->prov->ops->check(a->prov, cred, w, out, &f);
    if (rc == PAR_OK || rc == PAR_AUTH_PENDING)
        return rc;
    if (f.reason == PAR_AUTH_R_NONE)
        f.reason = PAR_AUTH_R_MALFORMED;
    log_refusal(a, request_id, &f);
    if (rc != PAR_E_AUTH_UNAVAILABLE)
        rc = PAR_E_INVALID_TOKEN;
    return rc;
}

/* `msg` already says what is missing; count, log and refuse. */
static int forbid(par_auth_t *a, const char *request_id, const char *msg)
{
    par_auth_fail_t f = {PAR_AUTH_R_FORBIDDEN, ""};
    snprintf(f.detail, sizeof(f.detail), "%s", msg);
    log_refusal(a, request_id, &f);
    return PAR_E_FORBIDDEN;
}

int par_auth_require_admin(par_auth_t *a, const par_identity_t *id, const char *request_id,
                           char *msg, size_t cap)
{
    if (!par_auth_enabled(a) || (id && par_perms_allow_admin(&id->perms)))
        return PAR_OK;
    snprintf(msg, cap, "this route needs the permission 'runtime:admin'");
    return forbid(a, request_id, msg);
}

int par_auth_require_invoke(par_auth_t *a, const par_identity_t *id, const char *agent_id,
                            size_t len, const char *request_id, char *msg, size_t cap)
{
    if (!par_auth_enabled(a) || (id && par_perms_allow_invoke(&id->perms, agent_id, len)))
        return PAR_OK;
    snprintf(msg, cap,
             "agent '%.*s' needs the permission 'agents:invoke' (or an agents:invoke:<pattern> "
             "that matches it)",
             (int)(len > 200 ? 200 : len), agent_id);
    return forbid(a, request_id, msg);
}

int par_auth_ready(par_auth_t *a, par_buf_t *why)
{
    if (!par_auth_enabled(a))
        return 1;
    return a->prov->ops->ready(a->prov, why);
}

json_t *par_auth_describe(par_auth_t *a)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL; /* callers take NULL as "nothing to describe" */
    json_object_set_new(o, "mode", json_string(par_auth_mode_name(par_auth_mode(a))));
    if (!par_auth_enabled(a))
        return o;
    json_t *open = json_array();
    for (size_t i = 0; i < a->cfg.nopen; i++)
        json_array_append_new(open, json_string(a->cfg.open_paths[i]));
    json_object_set_new(o, "open_paths", open);
    json_object_set_new(o, "provider", json_string(a->prov->ops->name));
    json_object_set_new(o, "subject_claim", json_string(a->cfg.subject_claim));
    json_object_set_new(o, "tenant_claim",
                        a->cfg.tenant_claim ? json_string(a->cfg.tenant_claim) : json_null());
    a->prov->ops->describe(a->prov, o);
    return o;
}
