/*
 * auth/auth.h — who may call PAR, and what they may do.
 *
 * Owns the authentication mode (off, oidc, api_key), the routes that are open
 * without credentials, the provider seam, and the single entry points the HTTP
 * server calls per request: par_auth_authenticate() turns the request's
 * credential into an identity (auth/identity.h), par_auth_require_admin() and
 * par_auth_require_invoke() decide a route. Every refusal is counted in
 * par_auth_failures_total{reason} and logged with its precise reason and the
 * request id; the HTTP answer only carries the stable error name.
 *
 * Providers. A provider turns one credential into an identity. Two are built
 * in (auth/oidc.c: JWT bearer tokens from an OpenID Connect issuer;
 * auth/apikey.c: static API keys); another (an extension, a test double)
 * plugs in by filling a par_auth_provider_ops_t and calling
 * par_auth_new_with_provider().
 *
 * Threads: authenticate/require/ready/describe from any thread, including
 * event-loop threads: they never block on the network or on a lock held
 * across I/O. A provider that needs the network (an OIDC key refresh) answers
 * PAR_AUTH_PENDING and calls the waiter back from its own thread. new and
 * destroy on the main thread.
 */
#ifndef PAR_AUTH_AUTH_H
#define PAR_AUTH_AUTH_H

#include <jansson.h>
#include <stddef.h>

#include <par/agent.h>

#include "auth/config.h"
#include "auth/identity.h"
#include "auth/reason.h"
#include "util/buf.h"

/* Returned instead of a status when the answer will come through a waiter. */
#define PAR_AUTH_PENDING (-1)

/* A request parked until a provider can answer (an unknown `kid` is being
 * looked up at the issuer). `ready` is called exactly once, from any thread;
 * the caller then authenticates again with no waiter. */
typedef struct par_auth_waiter par_auth_waiter_t;
struct par_auth_waiter {
    void (*ready)(par_auth_waiter_t *w);
    par_auth_waiter_t *_next; /* provider-private */
    /* provider-private: an answer kept for the next round (a request
     * provider's asynchronous answer), released by par_auth_waiter_done() */
    void *_answer;
    void (*_answer_free)(void *answer);
};

/* Releases what a provider kept in `w` (the caller's waiter is done). */
void par_auth_waiter_done(par_auth_waiter_t *w);

typedef struct par_auth_provider par_auth_provider_t;
typedef struct par_auth_creds par_auth_creds_t;

typedef struct par_auth_provider_ops {
    const char *name; /* "oidc", "api_key": shown in /runtime/info and logs */
    /* Turns a credential into an identity. Returns PAR_OK with *out
     * referenced; PAR_E_INVALID_TOKEN or PAR_E_AUTH_UNAVAILABLE with `f` set;
     * or PAR_AUTH_PENDING (only when `w` is not NULL) after arranging for
     * w->ready to be called. Must not block. */
    int (*check)(par_auth_provider_t *p, par_slice_t credential, par_auth_waiter_t *w,
                 par_identity_t **out, par_auth_fail_t *f);
    /* Readiness: 1 when the provider can verify credentials, else 0 with a
     * reason appended to `why`. */
    int (*ready)(par_auth_provider_t *p, par_buf_t *why);
    /* Adds what an operator should see to `into` (/runtime/info "auth"). */
    void (*describe)(par_auth_provider_t *p, json_t *into);
    void (*destroy)(par_auth_provider_t *p);
    /* A request provider (a plugin's: it reads any header and the peer
     * address) sets this instead of using `check`, which is then never
     * called: the whole request's credentials in, with `cr->resumed` the
     * waiter of an earlier PAR_AUTH_PENDING round (its answer in _answer).
     * Same returns as `check`. May be NULL. */
    int (*check_request)(par_auth_provider_t *p, const par_auth_creds_t *cr, par_auth_waiter_t *w,
                         const char *request_id, par_identity_t **out, par_auth_fail_t *f);
} par_auth_provider_ops_t;

struct par_auth_provider {
    const par_auth_provider_ops_t *ops;
    void *data; /* the provider's own state */
};

typedef struct par_auth par_auth_t;

/* The credential of one request, as the HTTP layer found it. */
struct par_auth_creds {
    par_slice_t authorization; /* the Authorization header value, {NULL,0} when absent */
    par_slice_t api_key;       /* the X-API-Key header value, {NULL,0} when absent */
    /* For request providers (may be NULL/empty): the connection's peer
     * address as text ("" when none), the method and path, any header by
     * name (1 and *v set, or 0), and the waiter of an earlier round. */
    const char *peer_addr, *method, *path;
    int (*header)(void *ctx, const char *name, par_slice_t *v);
    void *header_ctx;
    par_auth_waiter_t *resumed;
};

/* Providers by name: the built-in "oidc" and "api_key", and those plugins
 * add ("plugin:<name>"). auth.mode selects one when par_auth_new_from()
 * builds the authenticator. Main thread, at start. */
typedef int (*par_auth_factory_fn)(void *data, par_auth_config_t *cfg, par_auth_provider_t **out,
                                   par_buf_t *err);
typedef struct par_auth_registry par_auth_registry_t;

/* A registry holding the built-in providers. PAR_E_NO_MEMORY. */
int par_auth_registry_new(par_auth_registry_t **out);
void par_auth_registry_free(par_auth_registry_t *r);
/* Adds a provider; PAR_E_CONFLICT when the name is taken. `name` is copied. */
int par_auth_registry_add(par_auth_registry_t *r, const char *name, par_auth_factory_fn fn,
                          void *data);
/* Appends the registered names, comma-separated, to `out` (for messages). */
void par_auth_registry_names(const par_auth_registry_t *r, par_buf_t *out);

/* Builds the authenticator for a finished configuration (par_auth_config_finish)
 * and starts the OIDC key refresh in the background when the mode is oidc.
 * Mode off gives an authenticator that lets everything through. Takes the
 * configuration over: *cfg is left empty, on failure too. On failure `err`
 * says why. */
int par_auth_new(par_auth_config_t *cfg, par_auth_t **out, par_buf_t *err);
/* The same, choosing the provider in `reg` (NULL: the built-in ones). */
int par_auth_new_from(const par_auth_registry_t *reg, par_auth_config_t *cfg, par_auth_t **out,
                      par_buf_t *err);
/* The same with a provider supplied by the caller (owned from now on), for
 * extensions and tests; the mode must not be off. */
int par_auth_new_with_provider(par_auth_config_t *cfg, par_auth_provider_t *p, par_auth_t **out);
/* Stops background work, answers parked requests and frees. */
void par_auth_destroy(par_auth_t *a);

/* Is authentication on (mode oidc, api_key or plugin)? */
int par_auth_enabled(const par_auth_t *a);
int par_auth_mode(const par_auth_t *a);

/* Is this exact path served without credentials (auth.open_paths)? */
int par_auth_is_open(const par_auth_t *a, const char *path, size_t len);

/* Authenticates a request. Returns PAR_OK with *out referenced (unref it);
 * PAR_E_UNAUTHORIZED (no credential), PAR_E_INVALID_TOKEN,
 * PAR_E_AUTH_UNAVAILABLE; or PAR_AUTH_PENDING when `w` was parked. Failures
 * are logged with `request_id` and counted. */
int par_auth_authenticate(par_auth_t *a, const par_auth_creds_t *cr, par_auth_waiter_t *w,
                          const char *request_id, par_identity_t **out);

/* Authorization of a route. PAR_OK or PAR_E_FORBIDDEN with `msg` naming the
 * missing permission (for the response body); refusals are logged and counted. */
int par_auth_require_admin(par_auth_t *a, const par_identity_t *id, const char *request_id,
                           char *msg, size_t cap);
int par_auth_require_invoke(par_auth_t *a, const par_identity_t *id, const char *agent_id,
                            size_t len, const char *request_id, char *msg, size_t cap);

/* 1 when credentials can be checked now; else 0 and `why` says what is missing. */
int par_auth_ready(par_auth_t *a, par_buf_t *why);

/* {"mode": …, "open_paths": […], provider details…}; a new reference. */
json_t *par_auth_describe(par_auth_t *a);

/* Returns the token of an "Authorization: Bearer <token>" value, or {NULL,0}
 * when the scheme is not Bearer. Exposed for the unit tests. */
par_slice_t par_auth_bearer(par_slice_t authorization);

#endif
