/*
 * tls_internal.h - what both sides of TLS share: the connection's layout
 * and the helpers compiled once, into the device library (sync/tls.c, which
 * also holds the device's side). The server's side (listening, accepting,
 * its identity and certificates) is server/tls_server.c, in the server
 * library only. Internal: mbedtls's types show here.
 */
#ifndef FV_TLS_INTERNAL_H
#define FV_TLS_INTERNAL_H

#include <stddef.h>

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "tls.h"

#define FV_TLS_SPKI_MAX 1024 /* any EC SubjectPublicKeyInfo fits */

struct fv_tls_conn {
    int fd;
    int is_client;
    int handshake_done;
    int error; /* sticky FV_E code; 0 while the connection is usable */
    int pin_mismatch;
    int have_peer_pin;
    int have_binding;
    unsigned char expected_pin[FV_TLS_PIN_BYTES]; /* client only */
    unsigned char peer_pin[FV_TLS_PIN_BYTES];     /* client only */
    unsigned char binding[FV_TLS_BINDING_BYTES];
    /* Server side: who holds the certificate and key it presents;
     * release(owner) when the connection is freed. */
    void *owner;
    void (*release)(void *owner);
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
};

/* mbedtls's random source: libsodium's (fv_random). Always 0. */
int fv_tls_rng(void *unused, unsigned char *out, size_t len);

/* A socket set up as every TLS socket is: close-on-exec, non-blocking, no
 * SIGPIPE. fv_tls_socket_prepare does it to an accepted one (-1 on
 * failure); fv_tls_socket_new makes one (-1 on failure). */
int fv_tls_socket_prepare(int fd);
int fv_tls_socket_new(int family, int type, int protocol);
/* TCP_NODELAY, best effort. */
void fv_tls_socket_nodelay(int fd);

/* The pin of a key: BLAKE2b-256 of its SubjectPublicKeyInfo in DER. */
int fv_tls_pin_of_key(mbedtls_pk_context *pk,
                      unsigned char pin[FV_TLS_PIN_BYTES]);

/* A connection on `fd` (owned from here on: closed also on failure), as
 * MBEDTLS_SSL_IS_CLIENT or _IS_SERVER with the policy of tls.h. A server's
 * presents `cert` and `key`, which `owner` holds: the connection takes one
 * reference of the caller's, and calls release(owner) when it is freed
 * (also on failure). A client passes NULLs. */
int fv_tls_conn_new(fv_tls_conn **out, int fd, int endpoint,
                    mbedtls_x509_crt *cert, mbedtls_pk_context *key,
                    void (*release)(void *owner), void *owner);

#endif
