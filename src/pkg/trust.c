/*
 * pkg/trust.c — see trust.h.
 */
#include "pkg/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *slurp(const char *path, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(cap + 1);
    size_t n = 0;
    ssize_t r;
    while (buf && n < cap && (r = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)r;
    close(fd);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

int par_trust_init(par_trust_t *t, const par_trusted_key_t *keys, size_t n, int require,
                   par_buf_t *err)
{
    memset(t, 0, sizeof(*t));
    t->require = require;
    if (n == 0)
        return PAR_OK;
    t->keys = calloc(n, sizeof(*t->keys));
    if (t->keys == NULL)
        return PAR_E_NO_MEMORY;
    int rc = PAR_OK;
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i].key ? keys[i].key : "";
        par_trust_key_t *tk = &t->keys[t->nkeys];
        par_buf_t kerr;
        par_buf_init(&kerr, 0);
        int prc;
        /* a key string is base64 without '/'-free guarantees; a path has a '/' or ends in .pub */
        size_t klen = strlen(k);
        int is_path = strchr(k, '/') != NULL && access(k, R_OK) == 0;
        if (!is_path && klen > 4 && strcmp(k + klen - 4, ".pub") == 0)
            is_path = 1;
        if (is_path) {
            size_t len = 0;
            char *text = slurp(k, 4096, &len);
            if (text == NULL) {
                par_buf_appendf(err, "trust.keys[%zu]: %s: %s\n", i, k, strerror(errno));
                rc = PAR_E_INVALID_ARGUMENT;
                par_buf_free(&kerr);
                continue;
            }
            prc = par_ms_pubkey_parse(text, len, &tk->pk, &kerr);
            free(text);
        } else {
            prc = par_ms_pubkey_parse(k, klen, &tk->pk, &kerr);
        }
        if (prc != PAR_OK) {
            par_buf_appendf(err, "trust.keys[%zu]: %.*s\n", i, (int)kerr.len,
                            kerr.data ? kerr.data : "not a minisign public key");
            rc = PAR_E_INVALID_ARGUMENT;
            par_buf_free(&kerr);
            continue;
        }
        par_buf_free(&kerr);
        if (keys[i].packages) {
            size_t np = 0;
            while (keys[i].packages[np])
                np++;
            /* a key whose pins could not be copied must not become an
             * unpinned key (which may sign any unpinned name): fail */
            tk->patterns = calloc(np + 1, sizeof(char *));
            for (size_t j = 0; tk->patterns && j < np; j++)
                if ((tk->patterns[j] = strdup(keys[i].packages[j])) == NULL)
                    break;
            t->nkeys++; /* par_trust_free() frees what was copied */
            if (tk->patterns == NULL || (np > 0 && tk->patterns[np - 1] == NULL)) {
                par_buf_errf(err, "trust.keys[%zu]: out of memory\n", i);
                rc = PAR_E_NO_MEMORY;
                break;
            }
            continue;
        }
        t->nkeys++;
    }
    if (rc != PAR_OK)
        par_trust_free(t);
    return rc;
}

void par_trust_free(par_trust_t *t)
{
    for (size_t i = 0; i < t->nkeys; i++) {
        for (size_t j = 0; t->keys[i].patterns && t->keys[i].patterns[j]; j++)
            free(t->keys[i].patterns[j]);
        free(t->keys[i].patterns);
    }
    free(t->keys);
    t->keys = NULL;
    t->nkeys = 0;
}

static const par_trust_key_t *find(const par_trust_t *t, const char *id)
{
    for (size_t i = 0; i < t->nkeys; i++)
        if (strcmp(t->keys[i].pk.id, id) == 0)
            return &t->keys[i];
    return NULL;
}

int par_trust_verify(const par_trust_t *t, const char *sig, size_t siglen, const void *msg,
                     size_t len, const uint8_t *prehash, char signer[17], par_buf_t *err)
{
    par_ms_sig_t s;
    int rc = par_ms_sig_parse(sig, siglen, &s, err);
    if (rc != PAR_OK)
        return PAR_E_SIGNATURE_INVALID;
    const par_trust_key_t *k = find(t, s.id);
    if (k == NULL) {
        par_buf_appendf(err, "signed by key %s, which is not among the %zu trusted key(s)\n", s.id,
                        t->nkeys);
        rc = PAR_E_UNTRUSTED_SIGNER;
    } else if (!s.prehashed && msg == NULL) {
        par_buf_appendf(err, "a legacy (Ed) signature needs the archive bytes\n");
        rc = PAR_E_SIGNATURE_INVALID;
    } else {
        rc = par_ms_verify(&k->pk, &s, msg, len, prehash, err);
        if (rc == PAR_OK)
            memcpy(signer, s.id, 17);
        else if (rc != PAR_E_UNTRUSTED_SIGNER)
            rc = PAR_E_SIGNATURE_INVALID;
    }
    par_ms_sig_free(&s);
    return rc;
}

static int pinned_to(const par_trust_key_t *k, const char *pattern)
{
    for (size_t j = 0; k->patterns && k->patterns[j]; j++)
        if (strcmp(k->patterns[j], pattern) == 0)
            return 1;
    return 0;
}

/* The keys pinned to `pattern`, for a message: "A, B". */
static void append_pinned(const par_trust_t *t, const char *pattern, par_buf_t *err)
{
    int first = 1;
    for (size_t i = 0; i < t->nkeys; i++)
        if (pinned_to(&t->keys[i], pattern)) {
            par_buf_appendf(err, "%s%s", first ? "" : ", ", t->keys[i].pk.id);
            first = 0;
        }
}

/* The first pinned pattern that matches `name` and that `k` (NULL: no
 * signature) is not pinned to, or NULL when every matching pin allows it. */
static const char *unmet_pin(const par_trust_t *t, const par_trust_key_t *k, const char *name,
                             int *matched)
{
    for (size_t i = 0; i < t->nkeys; i++)
        for (size_t j = 0; t->keys[i].patterns && t->keys[i].patterns[j]; j++) {
            const char *p = t->keys[i].patterns[j];
            if (fnmatch(p, name, 0) != 0)
                continue;
            *matched = 1;
            if (k == NULL || !pinned_to(k, p))
                return p;
        }
    return NULL;
}

int par_trust_check_name(const par_trust_t *t, const char *signer, const char *name, par_buf_t *err)
{
    const par_trust_key_t *k = NULL;
    if (signer && signer[0] && (k = find(t, signer)) == NULL) {
        par_buf_appendf(err, "key %s is not trusted\n", signer);
        return PAR_E_UNTRUSTED_SIGNER;
    }
    int matched = 0;
    const char *p = unmet_pin(t, k, name, &matched);
    if (p != NULL) {
        par_buf_appendf(err, "package '%s' matches %s, which only key(s) ", name, p);
        append_pinned(t, p, err);
        if (k == NULL) {
            par_buf_appendf(err, " may sign; it is not signed\n");
            return PAR_E_SIGNATURE_MISSING;
        }
        par_buf_appendf(err, " may sign; it is signed by key %s\n", signer);
        return PAR_E_UNTRUSTED_SIGNER;
    }
    if (matched || k == NULL || k->patterns == NULL)
        return PAR_OK;
    /* an unpinned name: a pinned key was trusted for its patterns only */
    par_buf_appendf(err, "key %s is pinned to", signer);
    for (size_t j = 0; k->patterns[j]; j++)
        par_buf_appendf(err, "%s %s", j ? "," : "", k->patterns[j]);
    par_buf_appendf(err, " and may sign only those names; not '%s'\n", name);
    return PAR_E_UNTRUSTED_SIGNER;
}
