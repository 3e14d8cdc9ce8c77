/*
 * auth/permissions.h — what a caller may do, and how token claims grant it.
 *
 * Two permissions exist:
 *   runtime:admin            every management route (/runtime/..., /metrics)
 *   agents:invoke            invoke (and see) every agent
 *   agents:invoke:<pattern>  only agents whose id matches an fnmatch pattern:
 *                            a pattern without '/' matches the package name
 *                            (all its exports), one with '/' matches
 *                            "package/export" ("echo/shout", "echo/x*")
 * The version pin of an id ("echo@1.0.0/shout") plays no part.
 *
 * A permission map (auth.permissions in the configuration) says which claims
 * to read (`scope`, `scp`, `roles` by default, or dotted paths such as
 * `realm_access.roles`; values are space-separated strings or arrays of
 * strings) and, optionally, which permissions each value grants. Without
 * grants, a value that is itself a permission string grants that permission.
 *
 * Called by the providers when they build an identity and by the HTTP server
 * when it authorizes a route. Pure functions over immutable data; any thread.
 */
#ifndef PAR_AUTH_PERMISSIONS_H
#define PAR_AUTH_PERMISSIONS_H

#include <jansson.h>
#include <stddef.h>

#define PAR_PERM_ADMIN "runtime:admin"
#define PAR_PERM_INVOKE "agents:invoke"
#define PAR_PERM_PATTERN_MAX 200

typedef struct par_perms {
    int admin;
    int invoke_all;
    char **patterns; /* from agents:invoke:<pattern>, owned */
    size_t npatterns;
} par_perms_t;

/* One entry of auth.permissions.grants: a claim value and what it grants. */
typedef struct par_grant {
    char *value;
    par_perms_t perms;
} par_grant_t;

typedef struct par_perm_map {
    char **claims; /* claim paths to read; owned */
    size_t nclaims;
    par_grant_t *grants; /* NULL/0: claim values are permission strings */
    size_t ngrants;
} par_perm_map_t;

/* Parses one permission string and adds it to `p`. Returns 0; -1 when `s` is
 * not a permission (then `err`, if not NULL, says why); -2 when out of memory. */
int par_perms_add(par_perms_t *p, const char *s, char *err, size_t errcap);
/* Adds everything `from` grants to `into`. Returns 0 or -1 (out of memory). */
int par_perms_merge(par_perms_t *into, const par_perms_t *from);
void par_perms_free(par_perms_t *p);

int par_perms_allow_admin(const par_perms_t *p);
/* May the holder invoke (and see) the agent with this id? */
int par_perms_allow_invoke(const par_perms_t *p, const char *agent_id, size_t len);

/* The default map: claims scope, scp, roles; no grants. */
int par_perm_map_default(par_perm_map_t *m);
void par_perm_map_free(par_perm_map_t *m);

/* Looks a claim up by path: the whole path as one key first (namespaced
 * claims such as "https://example.com/roles" contain dots), then as
 * dot-separated object keys. Returns a borrowed value or NULL. */
json_t *par_claim_get(json_t *claims, const char *path);

/* Computes the permissions granted by `claims` under map `m` into `out`
 * (which must be zeroed). Returns 0 or -1 (out of memory). */
int par_perms_from_claims(const par_perm_map_t *m, json_t *claims, par_perms_t *out);

#endif
