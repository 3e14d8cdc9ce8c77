/*
 * auth/permissions.c — see permissions.h.
 */
#include "auth/permissions.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/id.h"

/* Agent ids are [a-z0-9-], '/', '@' and version characters; patterns add the
 * fnmatch metacharacters. Anything else cannot match an id and is refused
 * at configuration time. */
static int pattern_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PAR_PERM_PATTERN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '/' ||
              c == '*' || c == '?' || c == '[' || c == ']' || c == '!'))
            return 0;
    }
    return 1;
}

int par_perms_add(par_perms_t *p, const char *s, char *err, size_t errcap)
{
    if (strcmp(s, PAR_PERM_ADMIN) == 0) {
        p->admin = 1;
        return 0;
    }
    if (strcmp(s, PAR_PERM_INVOKE) == 0) {
        p->invoke_all = 1;
        return 0;
    }
    size_t plen = strlen(PAR_PERM_INVOKE ":");
    if (strncmp(s, PAR_PERM_INVOKE ":", plen) != 0) {
        if (err)
            snprintf(err, errcap,
                     "'%.80s' is not a permission (runtime:admin, agents:invoke or "
                     "agents:invoke:<pattern>)",
                     s);
        return -1;
    }
    const char *pat = s + plen;
    if (!pattern_ok(pat)) {
        if (err)
            snprintf(err, errcap,
                     "'%.80s': the agent pattern must be 1-%d characters of a-z 0-9 - / and "
                     "the fnmatch characters * ? [ ] !",
                     s, PAR_PERM_PATTERN_MAX);
        return -1;
    }
    if (strcmp(pat, "*") == 0) {
        p->invoke_all = 1;
        return 0;
    }
    for (size_t i = 0; i < p->npatterns; i++)
        if (strcmp(p->patterns[i], pat) == 0)
            return 0;
    char **n = realloc(p->patterns, (p->npatterns + 1) * sizeof(*n));
    if (n == NULL)
        return -2;
    p->patterns = n;
    if ((p->patterns[p->npatterns] = strdup(pat)) == NULL)
        return -2;
    p->npatterns++;
    return 0;
}

int par_perms_merge(par_perms_t *into, const par_perms_t *from)
{
    into->admin |= from->admin;
    into->invoke_all |= from->invoke_all;
    char buf[PAR_PERM_PATTERN_MAX + 32];
    for (size_t i = 0; i < from->npatterns; i++) {
        snprintf(buf, sizeof(buf), PAR_PERM_INVOKE ":%s", from->patterns[i]);
        if (par_perms_add(into, buf, NULL, 0) == -2)
            return -1;
    }
    return 0;
}

void par_perms_free(par_perms_t *p)
{
    for (size_t i = 0; i < p->npatterns; i++)
        free(p->patterns[i]);
    free(p->patterns);
    memset(p, 0, sizeof(*p));
}

int par_perms_allow_admin(const par_perms_t *p)
{
    return p->admin;
}

int par_perms_allow_invoke(const par_perms_t *p, const char *agent_id, size_t len)
{
    if (p->invoke_all)
        return 1;
    if (p->npatterns == 0)
        return 0;
    par_agent_id_t id;
    if (len > 200 || par_agent_id_parse(agent_id, len, &id) != 0)
        return 0;
    /* len <= 200 bounds both copies */
    char pkg[201], full[202];
    memcpy(pkg, id.name, id.name_len);
    pkg[id.name_len] = '\0';
    if (id.sub) {
        memcpy(full, id.name, id.name_len);
        full[id.name_len] = '/';
        memcpy(full + id.name_len + 1, id.sub, id.sub_len);
        full[id.name_len + 1 + id.sub_len] = '\0';
    }
    for (size_t i = 0; i < p->npatterns; i++) {
        const char *pat = p->patterns[i];
        if (strchr(pat, '/') == NULL) {
            if (fnmatch(pat, pkg, 0) == 0)
                return 1;
        } else if (id.sub && fnmatch(pat, full, FNM_PATHNAME) == 0) {
            return 1;
        }
    }
    return 0;
}

int par_perm_map_default(par_perm_map_t *m)
{
    static const char *const names[] = {"scope", "scp", "roles"};
    memset(m, 0, sizeof(*m));
    m->claims = calloc(3, sizeof(char *));
    if (m->claims == NULL)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if ((m->claims[i] = strdup(names[i])) == NULL) {
            par_perm_map_free(m);
            return -1;
        }
        m->nclaims++;
    }
    return 0;
}

void par_perm_map_free(par_perm_map_t *m)
{
    for (size_t i = 0; i < m->nclaims; i++)
        free(m->claims[i]);
    free(m->claims);
    for (size_t i = 0; i < m->ngrants; i++) {
        free(m->grants[i].value);
        par_perms_free(&m->grants[i].perms);
    }
    free(m->grants);
    memset(m, 0, sizeof(*m));
}

json_t *par_claim_get(json_t *claims, const char *path)
{
    json_t *v = json_object_get(claims, path);
    if (v || strchr(path, '.') == NULL)
        return v;
    char buf[256];
    if (strlen(path) >= sizeof(buf))
        return NULL;
    strcpy(buf, path);
    v = claims;
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_is_object(v) ? json_object_get(v, k) : NULL;
    return v;
}

/* Grants what one claim value is worth under the map. */
static int grant_value(const par_perm_map_t *m, const char *val, size_t len, par_perms_t *out)
{
    if (m->ngrants == 0) {
        char buf[PAR_PERM_PATTERN_MAX + 32];
        if (len >= sizeof(buf))
            return 0;
        memcpy(buf, val, len);
        buf[len] = '\0';
        /* scopes such as "openid" or "profile" are simply not permissions */
        return par_perms_add(out, buf, NULL, 0) == -2 ? -1 : 0;
    }
    for (size_t i = 0; i < m->ngrants; i++) {
        if (strlen(m->grants[i].value) == len && memcmp(m->grants[i].value, val, len) == 0)
            if (par_perms_merge(out, &m->grants[i].perms) != 0)
                return -1;
    }
    return 0;
}

int par_perms_from_claims(const par_perm_map_t *m, json_t *claims, par_perms_t *out)
{
    for (size_t c = 0; c < m->nclaims; c++) {
        json_t *v = par_claim_get(claims, m->claims[c]);
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t n = json_string_length(v);
            for (size_t i = 0; i < n;) {
                while (i < n && s[i] == ' ')
                    i++;
                size_t start = i;
                while (i < n && s[i] != ' ')
                    i++;
                if (i > start && grant_value(m, s + start, i - start, out) != 0)
                    return -1;
            }
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                if (json_is_string(e) &&
                    grant_value(m, json_string_value(e), json_string_length(e), out) != 0)
                    return -1;
            }
        }
    }
    return 0;
}
