/*
 * plugins/trusted-header — an auth provider for deployments behind an
 * authenticating proxy (docs/extensions.md, "trusted-header").
 *
 * The proxy authenticates the user and forwards the request with the
 * identity in headers. This provider believes those headers only when the
 * connection comes from one of the configured proxy addresses (CIDRs); a
 * request from anywhere else is refused, whatever headers it carries, so a
 * client that reaches PAR directly cannot claim to be anyone.
 *
 *   plugins:
 *     - path: /usr/lib/par/plugins/trusted-header.so
 *       config:
 *         proxies: [10.0.0.0/8, "::1/128"]          required
 *         subject_header: X-Forwarded-User          default
 *         tenant_header: X-Forwarded-Tenant         optional
 *         permissions_header: X-Forwarded-Groups    optional: space/comma separated
 *         permissions: [agents:invoke]              granted to every identity (default)
 *   auth:
 *     mode: plugin:trusted-header
 *
 * Permission values from the header are permission strings or values that
 * auth.permissions.grants maps. Threads: authenticate runs on the event
 * loops, concurrently; it reads immutable state and answers at once.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/plugin.h>

#define MAX_PERMS 64
#define MAX_VALUE 1024

typedef struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned bits;
} cidr_t;

typedef struct state {
    const par_plugin_host_t *host;
    cidr_t *proxies;
    size_t nproxies;
    char *subject_header, *tenant_header, *perms_header;
    char **perms; /* granted to everyone, NULL-terminated */
} state_t;

/* ---- addresses ------------------------------------------------------------------ */

static int parse_cidr(const char *text, cidr_t *c)
{
    char buf[80];
    if (strlen(text) >= sizeof(buf))
        return -1;
    strcpy(buf, text);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, buf, c->addr) == 1)
        c->family = AF_INET, c->bits = 32;
    else if (inet_pton(AF_INET6, buf, c->addr) == 1)
        c->family = AF_INET6, c->bits = 128;
    else
        return -1;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b < 0 || (unsigned long)b > c->bits)
            return -1;
        c->bits = (unsigned)b;
    }
    return 0;
}

static int in_cidr(const cidr_t *c, int family, const unsigned char *a)
{
    if (c->family != family)
        return 0;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

static int from_proxy(const state_t *s, const char *peer)
{
    unsigned char a[16];
    int family = inet_pton(AF_INET, peer, a) == 1    ? AF_INET
                 : inet_pton(AF_INET6, peer, a) == 1 ? AF_INET6
                                                     : 0;
    for (size_t i = 0; family && i < s->nproxies; i++)
        if (in_cidr(&s->proxies[i], family, a))
            return 1;
    return 0;
}

/* ---- configuration ------------------------------------------------------------------- */

static void state_free(state_t *s)
{
    if (s == NULL)
        return;
    free(s->proxies);
    free(s->subject_header);
    free(s->tenant_header);
    free(s->perms_header);
    for (size_t i = 0; s->perms && s->perms[i]; i++)
        free(s->perms[i]);
    free(s->perms);
    free(s);
}

static char *opt_str(json_t *conf, const char *key, const char *def, int *bad)
{
    json_t *v = json_object_get(conf, key);
    if (v && !json_is_string(v))
        *bad = 1;
    const char *s = v && json_is_string(v) ? json_string_value(v) : def;
    return s ? strdup(s) : NULL;
}

static int read_proxies(state_t *s, json_t *list, char *err, size_t cap)
{
    if (!json_is_array(list) || json_array_size(list) == 0) {
        snprintf(err, cap,
                 "config.proxies: a non-empty list of proxy addresses (CIDRs such as "
                 "10.0.0.0/8) is required: identities are believed only from them");
        return -1;
    }
    s->nproxies = json_array_size(list);
    s->proxies = calloc(s->nproxies, sizeof(*s->proxies));
    if (s->proxies == NULL)
        return snprintf(err, cap, "out of memory"), -1;
    for (size_t i = 0; i < s->nproxies; i++) {
        const char *t = json_string_value(json_array_get(list, i));
        if (t == NULL || parse_cidr(t, &s->proxies[i]) != 0) {
            snprintf(err, cap, "config.proxies[%zu]: '%s' is not an address or CIDR", i,
                     t ? t : "(not a string)");
            return -1;
        }
    }
    return 0;
}

static int read_perms(state_t *s, json_t *list, char *err, size_t cap)
{
    size_t n = list ? json_array_size(list) : 1;
    if (list && !json_is_array(list))
        return snprintf(err, cap, "config.permissions: a list of permissions"), -1;
    s->perms = calloc(n + 1, sizeof(char *));
    if (s->perms == NULL)
        return snprintf(err, cap, "out of memory"), -1;
    for (size_t i = 0; i < n; i++) {
        const char *t = list ? json_string_value(json_array_get(list, i)) : "agents:invoke";
        if (t == NULL || (s->perms[i] = strdup(t)) == NULL)
            return snprintf(err, cap, "config.permissions[%zu]: not a string", i), -1;
    }
    return 0;
}

static int configure(state_t *s, json_t *conf, char *err, size_t cap)
{
    static const char *const known[] = {
        "proxies", "subject_header", "tenant_header", "permissions_header", "permissions", NULL};
    const char *key;
    json_t *val;
    json_object_foreach(conf, key, val)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (known[i] == NULL) {
            snprintf(err, cap,
                     "config.%s: unknown key (known: proxies, subject_header, tenant_header, "
                     "permissions_header, permissions)",
                     key);
            return -1;
        }
    }
    if (read_proxies(s, json_object_get(conf, "proxies"), err, cap) != 0 ||
        read_perms(s, json_object_get(conf, "permissions"), err, cap) != 0)
        return -1;
    int bad = 0;
    s->subject_header = opt_str(conf, "subject_header", "X-Forwarded-User", &bad);
    s->tenant_header = opt_str(conf, "tenant_header", NULL, &bad);
    s->perms_header = opt_str(conf, "permissions_header", NULL, &bad);
    if (bad || s->subject_header == NULL) {
        snprintf(err, cap, "config: the *_header keys are header names (strings)");
        return -1;
    }
    return 0;
}

static int th_init(const par_plugin_host_t *host, void **out, char *err, size_t cap)
{
    state_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return snprintf(err, cap, "out of memory"), -1;
    s->host = host;
    json_error_t je;
    json_t *conf = json_loads(host->config(host, NULL), 0, &je);
    int rc = conf ? configure(s, conf, err, cap) : (snprintf(err, cap, "config: %s", je.text), -1);
    json_decref(conf);
    if (rc != 0) {
        state_free(s);
        return -1;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "trusting %s from %zu proxy range(s)", s->subject_header,
             s->nproxies);
    host->log(host, PAR_LOG_INFO, msg);
    *out = s;
    return 0;
}

static void th_fini(void *state)
{
    state_free(state);
}

/* ---- authenticate ---------------------------------------------------------------------- */

/* A header's value as a C string in out[cap]; 0 when absent, empty or too long. */
static int header(const state_t *s, const par_auth_request_t *req, const char *name, char *out,
                  size_t cap)
{
    par_slice_t v;
    if (name == NULL || !s->host->auth_header(req, name, &v) || v.len == 0 || v.len >= cap)
        return 0;
    memcpy(out, v.ptr, v.len);
    out[v.len] = '\0';
    return 1;
}

static void refuse(const state_t *s, par_auth_done_t *done, int status, const char *reason)
{
    par_auth_result_t r = {.size = sizeof(r), .status = status, .reason = reason};
    s->host->auth_complete(done, &r);
}

static void th_authenticate(void *state, const par_auth_info_t *info, const par_auth_request_t *req,
                            par_auth_done_t *done)
{
    const state_t *s = state;
    char why[160], subject[MAX_VALUE], tenant[MAX_VALUE], groups[MAX_VALUE];
    if (!from_proxy(s, info->peer_addr)) {
        snprintf(why, sizeof(why), "the connection from '%s' is not from a configured proxy",
                 info->peer_addr);
        refuse(s, done, PAR_E_INVALID_TOKEN, why);
        return;
    }
    if (!header(s, req, s->subject_header, subject, sizeof(subject))) {
        snprintf(why, sizeof(why), "the proxy sent no %s header", s->subject_header);
        refuse(s, done, PAR_E_UNAUTHORIZED, why);
        return;
    }
    int has_tenant = header(s, req, s->tenant_header, tenant, sizeof(tenant));
    const char *perms[MAX_PERMS + 1];
    size_t n = 0;
    for (size_t i = 0; s->perms[i] && n < MAX_PERMS; i++)
        perms[n++] = s->perms[i];
    if (header(s, req, s->perms_header, groups, sizeof(groups))) {
        char *save = NULL;
        for (char *t = strtok_r(groups, " ,", &save); t && n < MAX_PERMS;
             t = strtok_r(NULL, " ,", &save))
            perms[n++] = t;
    }
    perms[n] = NULL;
    par_auth_result_t r = {.size = sizeof(r),
                           .status = PAR_OK,
                           .subject = subject,
                           .tenant = has_tenant ? tenant : NULL,
                           .permissions = perms};
    s->host->auth_complete(done, &r);
}

static const par_auth_ops_t th_auth = {.size = sizeof(par_auth_ops_t),
                                       .authenticate = th_authenticate};

static const par_plugin_t th_plugin = {.abi = PAR_PLUGIN_ABI,
                                       .size = sizeof(par_plugin_t),
                                       .name = "trusted-header",
                                       .version = "1.0.0",
                                       .init = th_init,
                                       .fini = th_fini,
                                       .auth = &th_auth};

__attribute__((visibility("default"))) const par_plugin_t *par_plugin_entry(void);
const par_plugin_t *par_plugin_entry(void)
{
    return &th_plugin;
}
