/*
 * config/internal.h — helpers shared by the files of src/config/ only.
 */
#ifndef PAR_CONFIG_INTERNAL_H
#define PAR_CONFIG_INTERNAL_H

#include "config/config.h"

/* The largest configuration file read. */
#define PAR_CONF_MAX_FILE (1u << 20)

/* Text → value of key `k`; paths made absolute against `base` (NULL = cwd).
 * NULL on a mistake, with `why` set or empty ("expected …" then applies). */
json_t *par__conf_parse_text(const par_conf_key_t *k, const char *v, const char *base, char *why,
                             size_t cap);
/* Stores `val` (taken) for `id`, appending to a list when `append`. */
void par__conf_store(par_conf_t *c, int id, json_t *val, par_conf_source_t src, const char *origin,
                     int append);
/* "ORIGIN: `path`: why" or "ORIGIN: `path`: expected …, not `v`". */
void par__conf_say(par_buf_t *err, const char *origin, const par_conf_key_t *k, const char *v,
                   const char *why);
void par__conf_expected(const par_conf_key_t *k, char *out, size_t cap);
const char *par__conf_type_name(const par_conf_key_t *k);
int par__conf_is_section(const char *prefix);
void par__conf_suggest_path(const char *prefix, const char *name, char *out, size_t cap);
json_t *par__conf_trust_key_entry(const char *text, const char *base);

#endif
