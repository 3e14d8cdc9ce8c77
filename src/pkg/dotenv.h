/*
 * pkg/dotenv.h — a package's environment: `.env` and agent.yaml `environment`,
 * with `${NAME}` expanded only for names the operator allows.
 */
#ifndef PAR_PKG_DOTENV_H
#define PAR_PKG_DOTENV_H

#include <stddef.h>

#include "pkg/manifest.h"
#include "util/buf.h"

/* A list of NAME=VALUE strings (the envp form), owned. */
typedef struct par_envlist {
    char **items;
    size_t count, cap;
} par_envlist_t;

void par_envlist_free(par_envlist_t *l);
/* Sets NAME to VALUE, replacing an earlier NAME. */
int par_envlist_set(par_envlist_t *l, const char *name, size_t nlen, const char *value,
                    size_t vlen);

/*
 * Parses `.env` text into `l`: `NAME=value` lines, an optional `export `
 * prefix, `#` comments, blank lines; values unquoted (trimmed, ` #` starts a
 * comment), 'single-quoted' (literal: stored with `$` doubled, so expansion
 * gives it back unchanged) or "double-quoted" (\n \t \" \\ \$ escapes).
 * A line that is none of these is skipped with a warning in `warnings`
 * (".env:3: ...").
 */
void par_dotenv_parse(const char *text, size_t len, par_envlist_t *l, par_buf_t *warnings);

/*
 * Expands `${NAME}` in `value` from the runtime's own environment when NAME is
 * in `allow` (NULL-terminated); any other `${NAME}` becomes "" with a warning
 * naming `key`. `$$` is a literal `$`. Returns a malloc'ed string, NULL when
 * out of memory.
 */
char *par_env_expand(const char *value, const char *const *allow, const char *key,
                     par_buf_t *warnings);

/*
 * Names a package may not set: they steer the dynamic loader or the C library
 * (LD_PRELOAD, GLIBC_TUNABLES, GCONV_PATH, ...) and would act when par-worker
 * starts, before its sandbox. Returns 1 for such a name.
 */
int par_env_name_refused(const char *name, size_t len);

/*
 * Deploy-time check of a package's `.env` and `environment`: appends one line
 * per refused name to `err`; returns the number of problems.
 */
int par_package_env_check(const char *root, const par_manifest_t *m, par_buf_t *err);

/*
 * The environment a package's workers get on top of the runtime's fixed
 * variables: `.env` from `root` (when present), then agent.yaml `environment`
 * (which wins), every value expanded with par_env_expand(). Refused names
 * (par_env_name_refused) are left out with a warning.
 */
int par_package_env(const char *root, const par_manifest_t *m, const char *const *allow,
                    par_envlist_t *out, par_buf_t *warnings);

#endif
