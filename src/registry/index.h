/*
 * registry/index.h — polls a registry index and converges on it.
 *
 * The index (`registry.index_url`, https:// or s3://) is a JSON document
 *   {"packages": [{"name", "version", "url", "sha256"?, "signature_url"?}]}
 * naming the desired set. Every poll_ms the poller fetches it (ETag /
 * If-None-Match) and converges: deploys entries whose name is not active at
 * that version and digest, and removes packages it deployed earlier whose
 * name left the index. A broken or unreachable index changes nothing; it is
 * logged, counted (par_registry_poll_total{result}) and shown in
 * /runtime/info. A bad entry is reported and skipped; the others converge.
 * An entry refused for a reason that retrying cannot fix (digest, signature,
 * invalid package) is not retried until the entry changes; fetch failures
 * are retried at the next poll.
 * Owns one thread. Started by par_runtime_new when index_url is set.
 */
#ifndef PAR_REGISTRY_INDEX_H
#define PAR_REGISTRY_INDEX_H

#include <jansson.h>

#include <par/par.h>

typedef struct par_index par_index_t;

int par_index_start(par_runtime_t *rt, const char *url, unsigned poll_ms, par_index_t **out);
void par_index_stop(par_index_t *ix);

/* 1 once the first poll finished (whatever its result). */
int par_index_settled(par_index_t *ix);

/* A JSON object describing the index and the last poll (new reference). */
json_t *par_index_status(par_index_t *ix);

#endif
