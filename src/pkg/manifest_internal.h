/*
 * pkg/manifest_internal.h — what the two halves of agent.yaml parsing share:
 * manifest.c (the reader: YAML nodes into a par_manifest_t) and
 * manifest_check.c (reporting problems, value rules, unknown keys with "did
 * you mean", the character check and loading the YAML). Not part of
 * manifest.h's interface; include it only from pkg/manifest*.c. Any thread:
 * all state lives in the check_t of one parse.
 */
#ifndef PAR_PKG_MANIFEST_INTERNAL_H
#define PAR_PKG_MANIFEST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/id.h"
#include "pkg/manifest.h"
#include "util/buf.h"
#include "util/yaml.h"

/* Problems written to `errors`; later ones are only counted. */
#define MAX_SHOWN 100
/* pixell-kit's default when `runtime` is omitted (its AgentManifest model). */
#define DEFAULT_RUNTIME "python3.11"
#define NAME_RE "^[a-z][a-z0-9-]*$"
#define NAME_MAX_LEN PAR_ID_PART_MAX
/* An entrypoint is a relative path and a symbol: bounded like a path. */
#define ENTRYPOINT_MAX_LEN 1024
/* A `calls` pattern matches ids "name@version/sub". */
#define CALL_PATTERN_MAX_LEN (3 * PAR_ID_PART_MAX + 2)

typedef struct check {
    par_buf_t *errors;
    unsigned nerrors;
    bool oom;
    par_manifest_t *m;
    par_yaml_t *y;
} check_t;

static inline bool is_type(const yaml_node_t *n, yaml_node_type_t t)
{
    return n != NULL && n->type == t;
}

static inline bool key_is(const yaml_node_t *k, const char *key)
{
    return is_type(k, YAML_SCALAR_NODE) && k->data.scalar.length == strlen(key) &&
           memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0;
}

typedef void (*pair_fn)(check_t *c, const char *key, yaml_node_t *value, void *ud);

typedef enum unknown_rule {
    UNKNOWN_ERROR,     /* PAR's blocks: every unknown key is an error */
    UNKNOWN_WARN_FAR,  /* top level: close to a known key = error, else a warning */
    UNKNOWN_IGNORE_FAR /* metadata: close to a known key = error, else ignored */
} unknown_rule_t;

/* pixell-kit's limit keys under metadata.par.limits (NULL-terminated). */
extern const char *const par__manifest_limit_keys[];

/* One problem for the whole document: "agent.yaml: <message>". Counts every
 * problem, writes the first MAX_SHOWN. */
void par__manifest_report(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One problem at a field path: "agent.yaml: <path>: <message>". */
/* Checks the `skills` and `input_schema` of the block at `where`
 * ("metadata.par", "metadata.sub_agents[1]"; either node may be NULL) and
 * stores them as JSON text into *skills_out and *schema_out
 * (manifest_check.c). */
void par__manifest_described(check_t *c, const char *where, yaml_node_t *skills,
                             yaml_node_t *schema, char **skills_out, char **schema_out);

void par__manifest_problem(check_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A user-supplied key made safe for a message or a path (at most 64 bytes,
 * control characters shown as '?'); returns buf. */
const char *par__manifest_shown(const char *s, char *buf, size_t size);

/* 1 when s[0..n) is a C identifier (environment variable names). */
int par__manifest_is_ident(const char *s, size_t n);
/* Checks an entrypoint ("module:function", "lib/x.so:symbol") for `kind`. */
void par__manifest_check_entrypoint(check_t *c, const char *path, const char *e,
                                    par_runtime_kind_t kind);
/* Reports the keys of `map` not in `known` as `rule` says. */
void par__manifest_check_keys(check_t *c, yaml_node_t *map, const char *path,
                              const char *const *known, unknown_rule_t rule);
/* 1 when the bytes are UTF-8 made of YAML's printable characters; else the
 * first bad one is reported with its line and column. */
bool par__manifest_chars_ok(check_t *c, const char *yaml, size_t len);
/* Loads the document (characters checked already) into c->y; PAR_OK when
 * its root is a mapping, else the problems are reported and the status
 * returned. */
int par__manifest_yaml_load(check_t *c, const char *yaml, size_t len);

/* Reader helpers (manifest.c) that the checks use. */
void par__manifest_strlist_add(check_t *c, par_strlist_t *l, const char *s);
void par__manifest_each_pair(check_t *c, yaml_node_t *map, pair_fn fn, void *ud);

#endif
