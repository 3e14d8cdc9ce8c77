/*
 * util/yaml.h — one YAML document, read with libyaml, for the manifest
 * (agent.yaml) and the configuration (par.yaml).
 *
 * Owns: loading exactly one document with the structural checks every
 * reader needs (one document, scalar and unique mapping keys, a bound on
 * what aliases expand to), and small typed accessors over libyaml's nodes.
 * What a key means is the caller's business (pkg/manifest.c, config/).
 *
 * libyaml (Debian libyaml-0-2) is used instead of libfyaml 0.7.12, which
 * crashes on some invalid input ("? p ] x:\t|") instead of refusing it.
 * libyaml's parser and loader are iterative, so nesting depth costs heap,
 * not C stack; inputs are capped by their callers.
 *
 * Threads: a par_yaml_t belongs to one thread at a time; distinct documents
 * may be used on distinct threads.
 */
#ifndef PAR_UTIL_YAML_H
#define PAR_UTIL_YAML_H

#include <stddef.h>
#include <yaml.h>

#include "util/buf.h"

/* Nodes a document may reach once aliases are expanded, and how deep. */
#define PAR_YAML_MAX_NODES 20000
#define PAR_YAML_MAX_DEPTH 64

typedef struct par_yaml {
    yaml_document_t doc;
    int loaded;
} par_yaml_t;

/** Parses `data` (exactly one document; an empty input is an empty
 *  document). On error appends "line L, column C: problem" to `err` and
 *  returns PAR_E_INVALID_ARGUMENT (or PAR_E_NO_MEMORY); `y` then needs no
 *  par_yaml_free(), though calling it is harmless. */
int par_yaml_load(par_yaml_t *y, const char *data, size_t len, par_buf_t *err);

void par_yaml_free(par_yaml_t *y);

/** The root node, or NULL for an empty document. */
yaml_node_t *par_yaml_root(par_yaml_t *y);

/** The node an index in a sequence item or mapping pair refers to. */
yaml_node_t *par_yaml_node(par_yaml_t *y, int index);

/** The value of `key` in mapping `map`, or NULL (also when `map` is not a mapping). */
yaml_node_t *par_yaml_get(par_yaml_t *y, yaml_node_t *map, const char *key);

/** A scalar's text (NUL-terminated; `len` may be NULL), or NULL for another kind. */
const char *par_yaml_scalar(const yaml_node_t *n, size_t *len);

/** 1 for a missing node and for the plain scalars "", "~", "null", "Null", "NULL". */
int par_yaml_is_null(const yaml_node_t *n);

/** Reads a plain boolean (true/false in YAML 1.2's spellings, and yes/no/on/off
 *  as YAML 1.1 and PyYAML read them). Returns 0, or -1 when `n` is not one. */
int par_yaml_bool(const yaml_node_t *n, int *out);

/** 1-based line of a node, for messages. */
static inline unsigned long par_yaml_line(const yaml_node_t *n)
{
    return n ? (unsigned long)n->start_mark.line + 1 : 0;
}

/** The node as JSON (jansson): mappings become objects (keys as text),
 *  sequences arrays; a plain scalar that reads as null, a boolean, an
 *  integer or a number becomes one, any other scalar (and every quoted one)
 *  a string. NULL when out of memory or nested past PAR_YAML_MAX_DEPTH. */
struct json_t;
struct json_t *par_yaml_to_json(par_yaml_t *y, yaml_node_t *n);

/** A short name of the node's kind ("a mapping", "a list", "a string"), for messages. */
const char *par_yaml_kind(const yaml_node_t *n);

#endif
