/*
 * http/check.h — checks every request passes before it is authenticated or
 * routed: HTTP/1 message framing (RFC 9112 6.3), the encoding of the headers
 * PAR reads and hands on, and ids taken from the path.
 *
 * Called by http/server.c on the loop thread that owns the request; pure
 * apart from reading the request. A failed check yields a one-line message
 * for a 400 bad_request; framing failures also require the connection to be
 * closed (the caller clears http1_is_persistent), since the end of the
 * message, and so the start of the next one, is unknown. Which part of a
 * path is an id is the route table's business (http/routes.h).
 */
#ifndef PAR_HTTP_CHECK_H
#define PAR_HTTP_CHECK_H

#include <stddef.h>

#define H2O_USE_EPOLL 1
#include <h2o.h>

#include "http/routes.h"

/* 0, or -1 with `msg`: several Content-Length values that differ, or
 * Content-Length together with Transfer-Encoding. */
int par__http_check_framing(h2o_req_t *req, char *msg, size_t cap);

/* The same check over a request head's bytes `p[0..n)` (request line, then
 * header lines up to the empty line; what follows is ignored). */
int par__http_check_head(const char *p, size_t n, char *msg, size_t cap);

/* 0, or -1 with `msg`: a header PAR reads and passes on to agents or logs
 * (X-Request-ID, traceparent, X-Par-Timeout-Ms) is not well-formed UTF-8 or
 * holds a control byte. */
int par__http_check_headers(h2o_req_t *req, char *msg, size_t cap);

/* 0, or -1 with `msg`: the agent id or package name the route took from the
 * path (after percent-decoding; http/routes.h) holds a control byte or is
 * longer than the id limit. Routes that carry no id pass. */
int par__http_check_route_id(const par_http_match_t *m, char *msg, size_t cap);

/* The same for a path, matched as for a POST (the fuzz harness's entry). */
int par__http_check_path_ids(h2o_iovec_t path, char *msg, size_t cap);

#endif
