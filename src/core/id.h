/*
 * core/id.h — agent ids: `name`, `name/sub`, `name@version`, `name@version/sub`.
 * Pure functions, any thread.
 */
#ifndef PAR_CORE_ID_H
#define PAR_CORE_ID_H

#include <stddef.h>

/* Bytes in an id's name, version or sub-agent name (agent.yaml refuses longer). */
#define PAR_ID_PART_MAX 64

typedef struct par_agent_id {
    const char *name;
    size_t name_len;
    const char *version; /* NULL when not pinned */
    size_t version_len;
    const char *sub; /* NULL for the main export */
    size_t sub_len;
} par_agent_id_t;

/* Splits and validates an id. Returns 0, or -1 when it is not a well-formed
 * id (names must match ^[a-z][a-z0-9-]*$, versions [0-9A-Za-z.+-]+, at most
 * one '@' and one '/'). */
/* A package or sub-agent name: [a-z][a-z0-9-]*, at most PAR_ID_PART_MAX bytes. */
int par_id_valid_name(const char *s, size_t n);

int par_agent_id_parse(const char *s, size_t len, par_agent_id_t *out);

/* The first check on an id or package name taken from a request path (after
 * percent-decoding), before any lookup may treat it as a C string: it must be
 * 1..max bytes long and hold no control byte (0x00-0x1f, 0x7f). Returns 0, or
 * -1 with `why` (cap bytes, NUL-terminated) saying what is wrong and where. */
int par_id_path_check(const char *s, size_t len, size_t max, char *why, size_t cap);

#endif
