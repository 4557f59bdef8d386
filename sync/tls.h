/*
 * tls.h - TLS 1.2 over TCP for sync. The only module that includes mbedtls.
 *
 * Policy (not configurable): TLS 1.2 only; ECDHE-ECDSA with AES-GCM or
 * ChaCha20-Poly1305 only; ALPN "http/1.1"; the server's identity is an
 * ECDSA P-256 key in a self-signed certificate, or one a CA issued for the
 * same key; clients never consult a CA store: they pin the
 * BLAKE2b-256 hash of the server's SubjectPublicKeyInfo (DER) and refuse any
 * other key during the handshake, before a byte of application data moves.
 * Randomness comes from libsodium (fv_random), not from mbedtls's entropy.
 *
 * Functions return FV_OK or an FV_E code; the extra codes below are only
 * returned by this module. A connection is used by one thread at a time.
 */
#ifndef FV_TLS_H
#define FV_TLS_H

#include <stddef.h>
#include <stdint.h>

#define FV_TLS_PIN_BYTES 32
#define FV_TLS_BINDING_BYTES 32

/* Non-blocking progress: wait until the socket is readable / writable, then
 * call again with the same arguments. */
#define FV_TLS_WANT_READ 1
#define FV_TLS_WANT_WRITE 2

typedef struct fv_tls_server fv_tls_server;
typedef struct fv_tls_conn fv_tls_conn;

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

/* Connects to host:port and completes the handshake, refusing a server whose
 * key does not hash to `pin`, all within `timeout_ms`. The connection is
 * left blocking-free (non-blocking socket); fv_tls_read/fv_tls_write then
 * return FV_TLS_WANT_* as on the server side. FV_ENET on network failure or
 * timeout, FV_EPIN on a pin mismatch, FV_ETLS on any other handshake failure. */
int fv_tls_connect(fv_tls_conn **out, const char *host, const char *port,
                   const unsigned char pin[FV_TLS_PIN_BYTES], int timeout_ms);

/* fv_tls_connect that also gives up with FV_ECANCELED as soon as `wake`
 * (a file descriptor, e.g. a pipe's read end; -1 for none) is readable:
 * while connecting and during the handshake. It reads nothing from it. */
int fv_tls_connect_wake(fv_tls_conn **out, const char *host, const char *port,
                        const unsigned char pin[FV_TLS_PIN_BYTES],
                        int timeout_ms, int wake);

/* fv_tls_connect_wake through a proxy (sync/proxy.h; NULL: none): the
 * device connects only to the proxy, which opens the tunnel to host:port,
 * then TLS runs through it as before. FV_EPROXY when the proxy cannot be
 * reached, refuses or fails; FV_ENET when it says the server is out of
 * reach. `why` (cap `whycap`, may be NULL) receives the proxy's part of a
 * failure, without credentials. */
struct fv_proxy;
int fv_tls_connect_proxy(fv_tls_conn **out, const char *host, const char *port,
                         const unsigned char pin[FV_TLS_PIN_BYTES],
                         int timeout_ms, int wake, const struct fv_proxy *proxy,
                         char *why, size_t whycap);

/* The clock of the deadlines below: CLOCK_MONOTONIC, in milliseconds. */
int64_t fv_tls_now_ms(void);

/* Waits until fd is ready for `events` (POLLIN / POLLOUT) or `deadline`
 * passes (FV_ENET). A readable `wake` (if not -1) ends the wait first:
 * FV_ECANCELED. POLLERR/POLLHUP count as ready. For the plain socket I/O
 * before TLS (sync/proxy.c). */
int fv_tls_wait_fd(int fd, short events, int64_t deadline, int wake);

/* Server side: advances the handshake. FV_OK when complete, FV_TLS_WANT_*,
 * or FV_ETLS. */
int fv_tls_handshake(fv_tls_conn *c);

/* Reads up to len bytes: FV_OK with *n > 0, FV_TLS_WANT_*, FV_EEOF when the
 * peer closed, FV_ENET / FV_ETLS on failure. */
int fv_tls_read(fv_tls_conn *c, void *buf, size_t len, size_t *n);

/* Writes up to len bytes (possibly fewer: *n says how many were taken).
 * After FV_TLS_WANT_*, call again with the same buf and len. */
int fv_tls_write(fv_tls_conn *c, const void *buf, size_t len, size_t *n);

/* Bytes decrypted and buffered inside TLS, not yet returned by fv_tls_read
 * (poll() cannot see them). */
size_t fv_tls_pending(const fv_tls_conn *c);

int fv_tls_fd(const fv_tls_conn *c);

/* A value both ends of this TLS session compute alike and no other session
 * shares: BLAKE2b-256 keyed with the session's master secret over the
 * handshake randoms. Signing it binds a signature to this connection. */
int fv_tls_binding(const fv_tls_conn *c,
                   unsigned char out[FV_TLS_BINDING_BYTES]);

/* Client side: the pin of the key the server presented. */
int fv_tls_peer_pin(const fv_tls_conn *c, unsigned char pin[FV_TLS_PIN_BYTES]);

/* Sends close_notify (best effort) and frees. NULL is harmless. */
void fv_tls_close(fv_tls_conn *c);

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
