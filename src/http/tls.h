/*
 * http/tls.h — TLS on PAR's own listener (OpenSSL).
 *
 * Owns the server SSL_CTX built from tls.cert / tls.key / tls.client_ca:
 * TLS 1.2 and later with OpenSSL's current default ciphers, no renegotiation,
 * no compression, ALPN "h2" offered only when HTTP/2 is on, and with a client
 * CA, a client certificate required and verified during the handshake.
 * par__http_tls_reload() builds a new context from the same files and
 * publishes it: connections accepted later use it, open connections keep the
 * one they were made with (an SSL holds a reference to its context), so a
 * reload drops nothing. A context that fails to build is never published.
 *
 * Threads: new/free from the starting thread; reload from any thread (the
 * SIGHUP path); par__http_tls_current() and par__http_tls_subject() from the
 * loop threads. Never blocks on I/O other than reading the three files.
 */
#ifndef PAR_HTTP_TLS_H
#define PAR_HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include <par/par.h>

#include "util/buf.h"

typedef struct par_http_tls par_http_tls_t;
struct st_h2o_socket_t;

/* Builds the first context; on failure `err` says which file and why. */
int par__http_tls_new(const char *cert, const char *key, const char *client_ca, int http2,
                      par_http_tls_t **out, par_buf_t *err);
void par__http_tls_free(par_http_tls_t *t);
/* Rebuilds the context from the same files; the old one stays on error. */
int par__http_tls_reload(par_http_tls_t *t, par_buf_t *err);
/* The published context when its generation differs from *gen: releases
 * *ctx, stores a new reference and the generation. Cheap when unchanged. */
void par__http_tls_current(par_http_tls_t *t, SSL_CTX **ctx, uint64_t *gen);
/* Whether client certificates are required (tls.client_ca set). */
int par__http_tls_wants_clients(const par_http_tls_t *t);
/* The verified client certificate's subject (RFC 2253, "CN=alice,O=acme")
 * of a TLS connection, into out; 0, or -1 when there is none. */
int par__http_tls_subject(par_http_tls_t *t, struct st_h2o_socket_t *sock, char *out, size_t cap);

#endif
