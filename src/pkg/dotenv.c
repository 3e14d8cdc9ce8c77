/*
 * pkg/dotenv.c — see dotenv.h.
 */
#include "pkg/dotenv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "util/proc.h"

#define DOTENV_MAX_BYTES (256 * 1024)

void par_envlist_free(par_envlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

int par_envlist_set(par_envlist_t *l, const char *name, size_t nlen, const char *value, size_t vlen)
{
    char *s = malloc(nlen + vlen + 2);
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    memcpy(s, name, nlen);
    s[nlen] = '=';
    memcpy(s + nlen + 1, value, vlen);
    s[nlen + 1 + vlen] = '\0';
    for (size_t i = 0; i < l->count; i++) {
        if (strncmp(l->items[i], name, nlen) == 0 && l->items[i][nlen] == '=') {
            free(l->items[i]);
            l->items[i] = s;
            return PAR_OK;
        }
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **n = realloc(l->items, cap * sizeof(*n));
        if (n == NULL) {
            free(s);
            return PAR_E_NO_MEMORY;
        }
        l->items = n;
        l->cap = cap;
    }
    l->items[l->count++] = s;
    return PAR_OK;
}

static int is_name_start(int c)
{
    return isalpha(c) || c == '_';
}

static int is_name(int c)
{
    return isalnum(c) || c == '_';
}

/* One line, without its newline. */
static void parse_line(const char *p, const char *end, size_t lineno, par_envlist_t *l,
                       par_buf_t *warnings)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end || *p == '#')
        return;
    if (end - p > 7 && memcmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
        p += 7;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
    }
    const char *name = p;
    if (p == end || !is_name_start((unsigned char)*p))
        goto bad;
    while (p < end && is_name((unsigned char)*p))
        p++;
    size_t nlen = (size_t)(p - name);
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end || *p != '=')
        goto bad;
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    par_buf_t v;
    par_buf_init(&v, 0);
    if (p < end && (*p == '\'' || *p == '"')) {
        char q = *p++;
        int closed = 0;
        while (p < end) {
            char c = *p++;
            if (c == q) {
                closed = 1;
                break;
            }
            if (q == '"' && c == '\\' && p < end) {
                char e = *p++;
                if (e == '$') { /* \$: a literal dollar, never an expansion */
                    par_buf_append(&v, "$$", 2);
                    continue;
                }
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            }
            if (q == '\'' && c == '$') { /* single quotes are literal: no ${NAME} */
                par_buf_append(&v, "$$", 2);
                continue;
            }
            par_buf_append(&v, &c, 1);
        }
        while (closed && p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (!closed || (p < end && *p != '#')) {
            par_buf_free(&v);
            goto bad;
        }
    } else {
        const char *s = p;
        while (p < end && !(*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')))
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        par_buf_append(&v, s, (size_t)(e - s));
    }
    par_envlist_set(l, name, nlen, v.data ? v.data : "", v.len);
    par_buf_free(&v);
    return;
bad:
    par_buf_errf(warnings, ".env:%zu: not NAME=value, skipped\n", lineno);
}

void par_dotenv_parse(const char *text, size_t len, par_envlist_t *l, par_buf_t *warnings)
{
    const char *p = text, *end = text + len;
    size_t lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        lineno++;
        parse_line(p, e > p && e[-1] == '\r' ? e - 1 : e, lineno, l, warnings);
        p = nl ? nl + 1 : end;
    }
}

static int allowed(const char *const *allow, const char *name, size_t len)
{
    for (size_t i = 0; allow && allow[i]; i++)
        if (strlen(allow[i]) == len && memcmp(allow[i], name, len) == 0)
            return 1;
    return 0;
}

char *par_env_expand(const char *value, const char *const *allow, const char *key,
                     par_buf_t *warnings)
{
    par_buf_t out;
    par_buf_init(&out, 0);
    int bad = 0; /* an append failed: out of memory */
    const char *p = value;
    while (*p) {
        if (p[0] == '$' && p[1] == '$') {
            bad |= par_buf_append(&out, "$", 1) != PAR_OK;
            p += 2;
            continue;
        }
        if (p[0] == '$' && p[1] == '{') {
            const char *n = p + 2, *q = n;
            while (*q && is_name((unsigned char)*q))
                q++;
            if (*q == '}' && q > n && is_name_start((unsigned char)*n)) {
                size_t len = (size_t)(q - n);
                if (allowed(allow, n, len)) {
                    char name[256];
                    snprintf(name, sizeof(name), "%.*s", (int)len, n);
                    const char *v = getenv(name);
                    if (v)
                        bad |= par_buf_appends(&out, v) != PAR_OK;
                } else if (warnings) {
                    par_buf_appendf(warnings,
                                    "environment %s: ${%.*s} is not in the operator's env.allow "
                                    "list; expanded to an empty string\n",
                                    key, (int)len, n);
                }
                p = q + 1;
                continue;
            }
        }
        bad |= par_buf_append(&out, p, 1) != PAR_OK;
        p++;
    }
    bad |= par_buf_terminate(&out) != PAR_OK;
    if (bad) {
        par_buf_free(&out);
        return NULL;
    }
    char *s = par_buf_steal(&out, NULL);
    return s ? s : strdup("");
}

int par_env_name_refused(const char *name, size_t len)
{
    /* glibc's list of variables it drops for set-id programs (unsecvars.h),
     * and the whole LD_ family */
    static const char *const refused[] = {
        "GCONV_PATH",  "GETCONF_DIR",  "GLIBC_TUNABLES", "HOSTALIASES",      "LOCALDOMAIN",
        "LOCPATH",     "MALLOC_TRACE", "NIS_PATH",       "NLSPATH",          "RESOLV_HOST_CONF",
        "RES_OPTIONS", "TMPDIR",       "TZDIR",          "MALLOC_ARENA_MAX", "PAR_SANDBOX"};
    if (len >= 3 && memcmp(name, "LD_", 3) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (strlen(refused[i]) == len && memcmp(refused[i], name, len) == 0)
            return 1;
    return 0;
}

/* `.env` then agent.yaml `environment`, unexpanded. */
static void raw_env(const char *root, const par_manifest_t *m, par_envlist_t *raw,
                    par_buf_t *warnings)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/.env", root);
    par_buf_t text;
    par_buf_init(&text, 0);
    if (par_file_read(path, DOTENV_MAX_BYTES, &text) == 0)
        par_dotenv_parse(text.data, text.len, raw, warnings);
    else if (errno != ENOENT && warnings)
        par_buf_appendf(warnings, ".env: cannot read: %s\n", strerror(errno));
    par_buf_free(&text);
    for (size_t i = 0; m && i < m->environment_count; i++)
        par_envlist_set(raw, m->environment[i].key, strlen(m->environment[i].key),
                        m->environment[i].value, strlen(m->environment[i].value));
}

int par_package_env_check(const char *root, const par_manifest_t *m, par_buf_t *err)
{
    par_envlist_t raw = {0};
    raw_env(root, m, &raw, NULL);
    int problems = 0;
    for (size_t i = 0; i < raw.count; i++) {
        size_t n = strcspn(raw.items[i], "=");
        if (par_env_name_refused(raw.items[i], n)) {
            par_buf_appendf(err,
                            "environment %.*s: not allowed: it steers the dynamic loader or "
                            "the C library, or is set by the sandbox\n",
                            (int)n, raw.items[i]);
            problems++;
        }
    }
    par_envlist_free(&raw);
    return problems;
}

int par_package_env(const char *root, const par_manifest_t *m, const char *const *allow,
                    par_envlist_t *out, par_buf_t *warnings)
{
    par_envlist_t raw = {0};
    raw_env(root, m, &raw, warnings);
    int rc = PAR_OK;
    for (size_t i = 0; i < raw.count && rc == PAR_OK; i++) {
        char *eq = strchr(raw.items[i], '=');
        if (par_env_name_refused(raw.items[i], (size_t)(eq - raw.items[i]))) {
            par_buf_errf(warnings, "environment %.*s: not allowed, left out\n",
                         (int)(eq - raw.items[i]), raw.items[i]);
            continue;
        }
        *eq = '\0';
        char *v = par_env_expand(eq + 1, allow, raw.items[i], warnings);
        rc = v ? par_envlist_set(out, raw.items[i], strlen(raw.items[i]), v, strlen(v))
               : PAR_E_NO_MEMORY;
        free(v);
        *eq = '=';
    }
    par_envlist_free(&raw);
    return rc;
}
