/*
 * tls_server.h - the server's side of TLS (sync/tls.h has the policy and the
 * connection): its identity files, certificate renewal, requests and
 * installs, listening and accepting, and ending a connection after an
 * ERROR. Server library only (server/tls_server.c).
 */
#ifndef FV_TLS_SERVER_H
#define FV_TLS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "tls.h"

typedef struct fv_tls_server fv_tls_server;

#define FV_TLS_HOSTNAME_MAX 253

/* Creates a new server identity: an ECDSA P-256 key written to `key_path`
 * (PEM, created O_EXCL mode 0600) and a self-signed certificate for it at
 * `cert_path` (PEM). `pin` receives the key's pin. FV_EEXIST, FV_EIO. The
 * certificate looks like an ordinary self-signed one: subject CN and
 * subjectAltName the machine's host name (or "localhost.localdomain" when it
 * has no usable one), a random serial, valid 365 days from a random moment
 * 1 hour to 2 days ago. */
int fv_tls_identity_create(const char *key_path, const char *cert_path,
                           unsigned char pin[FV_TLS_PIN_BYTES]);
/* The same with `hostname` as the name (NULL: the default above).
 * FV_EINVAL if it is not a DNS host name (fv_tls_hostname_ok). */
int fv_tls_identity_create_named(const char *key_path, const char *cert_path,
                                 const char *hostname,
                                 unsigned char pin[FV_TLS_PIN_BYTES]);

/* 1 if `name` is a DNS host name: labels of 1 to 63 letters, digits and
 * '-' (not first or last), at most 253 bytes, the last label not all
 * digits (so no IP address). */
int fv_tls_hostname_ok(const char *name);

/* Re-issues the self-signed certificate at `cert_path` under the same key
 * (so the pin does not change) when it has less than 30 days left, or was
 * made by an older build (CN=localhost or valid longer than 398 days). It
 * keeps its host name, unless that was "localhost": then `hostname` (NULL:
 * the default of fv_tls_identity_create). A certificate issued by a CA (the
 * operator's, fv_tls_cert_install) is left alone. The file is replaced
 * atomically. *renewed says whether it was. FV_ECORRUPT when the
 * certificate is not for the key, FV_EIO... */
int fv_tls_cert_renew(const char *key_path, const char *cert_path,
                      const char *hostname, int64_t now, int *renewed);

/* A certificate signing request (PEM, malloc'd into *out) for the key at
 * `key_path`, for `hostname` (NULL: the CN of the certificate at
 * `cert_path`), to have a CA issue a certificate for the pinned key. */
int fv_tls_csr(const char *key_path, const char *cert_path,
               const char *hostname, char **out);

/* Installs the certificate chain in the file `chain_path` (PEM, leaf first,
 * or one DER certificate) as `cert_path`, after checking that every
 * certificate parses (FV_ECORRUPT) and that the leaf is for the P-256 key at
 * `key_path` (FV_EPIN otherwise: devices pin that key). Only the
 * certificates are written, re-encoded as PEM; atomically. */
int fv_tls_cert_install(const char *key_path, const char *cert_path,
                        const char *chain_path);

/* The pin of the certificate at `cert_path`. */
int fv_tls_identity_pin(const char *cert_path,
                        unsigned char pin[FV_TLS_PIN_BYTES]);

/* Listens on host:port (port "0" picks a free one) with the identity files.
 * The socket is non-blocking. */
int fv_tls_listen(fv_tls_server **out, const char *host, const char *port,
                  const char *key_path, const char *cert_path);
/* Loads the identity files again (a renewed or installed certificate):
 * connections accepted from now on present it; those already accepted keep
 * the old one. On failure the identity in use stays. */
int fv_tls_server_reload(fv_tls_server *s, const char *key_path,
                         const char *cert_path);
int fv_tls_server_fd(const fv_tls_server *s);
/* The bound port (useful after port "0"). */
int fv_tls_server_port(const fv_tls_server *s);
void fv_tls_server_close(fv_tls_server *s);

/* Accepts one pending connection (non-blocking socket, handshake not yet
 * done: drive it with fv_tls_handshake). FV_ENOTFOUND when none is pending,
 * FV_ELIMIT when this process or the system is out of descriptors (EMFILE,
 * ENFILE), FV_ENOMEM, FV_ENET. */
int fv_tls_accept(fv_tls_server *s, fv_tls_conn **out);

/* Ends this side of an established connection without closing it: a
 * close_notify (one try) and a TCP FIN, so that the peer reads everything
 * sent so far and then the end. Nothing more is read or written through
 * TLS afterwards (they return FV_EEOF); fv_tls_discard drops what the peer
 * still sends, so that closing later does not reset the connection and
 * discard, at the peer, what was sent last. */
void fv_tls_shutdown(fv_tls_conn *c);
/* After fv_tls_shutdown: reads and drops up to `max` bytes. FV_OK if some
 * were dropped (call again), FV_TLS_WANT_READ when none wait, FV_EEOF once
 * the peer has closed, or FV_ENET. */
int fv_tls_discard(fv_tls_conn *c, size_t max);

#endif
