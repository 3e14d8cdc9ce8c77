/*
 * http/tls.c — see tls.h.
 */
#include "http/tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#define H2O_USE_EPOLL 1
#include <h2o.h>

#include "obs/log.h"

struct par_http_tls {
    char *cert, *key, *client_ca;
    int http2;
    pthread_mutex_t lock;
    SSL_CTX *ctx; /* published; under lock */
    _Atomic uint64_t gen;
    SSL_CTX **all; /* every context ever published, to recognise them */
    size_t nall;
};

static void ssl_errors(par_buf_t *err)
{
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        par_buf_appendf(err, " (%s)", buf);
    }
}

static SSL_CTX *build(const par_http_tls_t *t, par_buf_t *err)
{
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        par_buf_appends(err, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(c, t->cert) != 1) {
        par_buf_appendf(err, "tls.cert: cannot load the certificate chain from %s", t->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, t->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            par_buf_appendf(err, "tls.key: %s is not the key of the certificate in %s", t->key,
                            t->cert);
        else
            par_buf_appendf(err, "tls.key: cannot load the private key from %s", t->key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        par_buf_appendf(err, "tls.key: %s is not the key of the certificate in %s", t->key,
                        t->cert);
        goto fail;
    }
    if (t->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (names == NULL || SSL_CTX_load_verify_locations(c, t->client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            par_buf_appendf(err, "tls.client_ca: cannot load CA certificates from %s",
                            t->client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(c, names);
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (t->http2)
        h2o_ssl_register_alpn_protocols(c, h2o_http2_alpn_protocols);
    return c;
fail:
    ssl_errors(err);
    SSL_CTX_free(c);
    return NULL;
}

static int publish(par_http_tls_t *t, SSL_CTX *c)
{
    pthread_mutex_lock(&t->lock);
    SSL_CTX **a = realloc(t->all, (t->nall + 1) * sizeof(*a));
    if (a == NULL) {
        pthread_mutex_unlock(&t->lock);
        SSL_CTX_free(c);
        return -1;
    }
    t->all = a;
    t->all[t->nall++] = c; /* holds the creation reference until free */
    t->ctx = c;
    atomic_fetch_add(&t->gen, 1);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

int par__http_tls_new(const char *cert, const char *key, const char *client_ca, int http2,
                      par_http_tls_t **out, par_buf_t *err)
{
    if (cert == NULL || key == NULL) {
        par_buf_appends(err, cert ? "tls.key is required with tls.cert"
                                  : "tls.cert is required with tls.key");
        return PAR_E_INVALID_ARGUMENT;
    }
    par_http_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PAR_E_NO_MEMORY;
    t->cert = strdup(cert);
    t->key = strdup(key);
    t->client_ca = client_ca ? strdup(client_ca) : NULL;
    t->http2 = http2;
    pthread_mutex_init(&t->lock, NULL);
    SSL_CTX *c = build(t, err);
    if (c == NULL || publish(t, c) != 0) {
        par__http_tls_free(t);
        return PAR_E_INVALID_ARGUMENT;
    }
    *out = t;
    return PAR_OK;
}

void par__http_tls_free(par_http_tls_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nall; i++)
        SSL_CTX_free(t->all[i]);
    free(t->all);
    free(t->cert), free(t->key), free(t->client_ca);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int par__http_tls_reload(par_http_tls_t *t, par_buf_t *err)
{
    SSL_CTX *c = build(t, err);
    if (c == NULL)
        return PAR_E_INVALID_ARGUMENT;
    return publish(t, c) == 0 ? PAR_OK : PAR_E_NO_MEMORY;
}

void par__http_tls_current(par_http_tls_t *t, SSL_CTX **ctx, uint64_t *gen)
{
    if (*ctx && atomic_load(&t->gen) == *gen)
        return;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *c = t->ctx;
    SSL_CTX_up_ref(c);
    *gen = atomic_load(&t->gen);
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(*ctx);
    *ctx = c;
}

int par__http_tls_wants_clients(const par_http_tls_t *t)
{
    return t && t->client_ca != NULL;
}

/* h2o 2.2 gives no accessor for a socket's SSL. Its private per-socket TLS
 * state begins {SSL_CTX *ssl_ctx; SSL *ossl; ...}: that layout is used only
 * after checking that the first slot is one of our own contexts and that the
 * SSL in the second belongs to it, so another layout yields "no subject"
 * (and a log line), never a wrong one. */
static SSL *ssl_of(par_http_tls_t *t, h2o_socket_t *sock)
{
    if (sock == NULL || sock->ssl == NULL)
        return NULL;
    void **slots = (void **)sock->ssl;
    int ours = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nall && !ours; i++)
        ours = slots[0] == (void *)t->all[i];
    pthread_mutex_unlock(&t->lock);
    SSL *s = ours ? slots[1] : NULL;
    if (s == NULL || SSL_get_SSL_CTX(s) != slots[0]) {
        static atomic_int said;
        if (!atomic_exchange(&said, 1))
            par_log_msg(PAR_LOG_ERROR, "this libh2o keeps its TLS state in an unknown layout: "
                                       "client certificates cannot become caller identities");
        return NULL;
    }
    return s;
}

int par__http_tls_subject(par_http_tls_t *t, struct st_h2o_socket_t *sock, char *out, size_t cap)
{
    SSL *s = ssl_of(t, sock);
    if (s == NULL || SSL_get_verify_result(s) != X509_V_OK)
        return -1;
    X509 *peer = SSL_get1_peer_certificate(s);
    if (peer == NULL)
        return -1;
    BIO *b = BIO_new(BIO_s_mem());
    int rc = -1;
    /* a subject longer than the cap is no identity at all: cut, two could collide */
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0 &&
        BIO_pending(b) > 0 && (size_t)BIO_pending(b) < cap) {
        int n = BIO_read(b, out, (int)cap - 1);
        if (n > 0) {
            out[n] = '\0';
            rc = 0;
        }
    }
    BIO_free(b);
    X509_free(peer);
    return rc;
}
