/*
 * runtime/fleet.h — this node in a fleet's node registry (PostgreSQL), and
 * the other nodes as the registry last showed them (docs/fleet.md, "Runs
 * across nodes").
 *
 * Exists only when fleet.postgres is set. Owns: this node's tag (6
 * characters of [a-z2-7] derived from its node id, the suffix of the run ids
 * it makes, runtime/runs.h), its row in the table `par_nodes` (node id, tag,
 * advertise URL, started and heartbeat times, the table created if missing),
 * and a thread that every fleet.heartbeat_ms writes the heartbeat and reads
 * the whole table back into a snapshot. It reconnects on any failure; libpq
 * calls never run on another thread. A node is dead when its last heartbeat
 * is older than fleet.dead_after_ms, measured by PostgreSQL's clock (no clock
 * skew between nodes matters).
 *
 * Callers: `par serve` (new, start, stop), the run engine (the tag), the HTTP
 * layer's forwarding (par_fleet_owner, from its forwarding threads: it may
 * wait for a refresh, so never from a loop thread). Thread-safe.
 */
#ifndef PAR_RUNTIME_FLEET_H
#define PAR_RUNTIME_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct par_fleet par_fleet_t;

typedef struct par_fleet_config {
    const char *postgres;   /* conninfo or URL (copied) */
    const char *node_id;    /* copied */
    uint32_t heartbeat_ms;  /* fleet.heartbeat_ms */
    uint32_t dead_after_ms; /* fleet.dead_after_ms */
} par_fleet_config_t;

/* This node's fleet state with its tag; loads libpq (PAR_E_IO, with why in
 * err, when it cannot). No thread, no connection yet. */
int par_fleet_new(const par_fleet_config_t *cfg, par_fleet_t **out, par_buf_t *err);
/* Starts the heartbeat thread, advertising `url` (copied; http://HOST:PORT). */
int par_fleet_start(par_fleet_t *f, const char *url);
/* Stops the thread; marks this node dead in the registry at once when
 * connected (its runs read interrupted), and frees. NULL is a no-op. */
void par_fleet_free(par_fleet_t *f);

/* The tag in this node's run ids (PAR_RUN_TAG_LEN characters, terminated). */
const char *par_fleet_tag(const par_fleet_t *f);
const char *par_fleet_node_id(const par_fleet_t *f);
uint32_t par_fleet_dead_after_ms(const par_fleet_t *f);

/* The tag of a node id (6 characters of [a-z2-7] from its SHA-256) into
 * out[7]. */
void par_fleet_tag_of(const char *node_id, char out[7]);

/* The node whose tag is `tag` (PAR_RUN_TAG_LEN characters): its advertise
 * URL into url[cap], its node id into node[ncap], and its heartbeat age in
 * *age_ms. PAR_OK (alive), PAR_E_INTERRUPTED (dead: older than
 * fleet.dead_after_ms), PAR_E_RUN_NOT_FOUND (no such node: waits up to one
 * refresh for a node that registered since the last one). Blocks: never on
 * a loop thread. */
int par_fleet_owner(par_fleet_t *f, const char *tag, char *url, size_t cap, char *node, size_t ncap,
                    int64_t *age_ms);

/* The heartbeat age of tag's node by the last snapshot, or -1 when unknown;
 * non-blocking. */
int64_t par_fleet_age_ms(par_fleet_t *f, const char *tag);

/* Forwarded requests by outcome, for /metrics (http/forward.c counts). */
enum {
    PAR_FLEET_FWD_OK,          /* the owner answered (any status) */
    PAR_FLEET_FWD_DEAD,        /* the owner's heartbeat is stale: answered interrupted */
    PAR_FLEET_FWD_UNREACHABLE, /* connecting to the owner failed: answered interrupted */
    PAR_FLEET_FWD_CUT,         /* the owner's answer broke off (a stream ended interrupted) */
    PAR_FLEET_FWD_UNKNOWN,     /* no node has the id's tag: run_not_found */
    PAR_FLEET_FWD_LOOP,        /* refused: a forwarded request for a run not here */
    PAR_FLEET_FWD_BUSY,        /* refused: too many forwards in flight */
    PAR_FLEET_FWD_COUNT
};
void par_fleet_count_forward(par_fleet_t *f, int outcome);
/* par_fleet_* families: nodes alive and dead, heartbeat failures,
 * forwarded requests by outcome. NULL renders the families empty. */
void par_fleet_render_metrics(par_fleet_t *f, par_buf_t *b);

#endif
