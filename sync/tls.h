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
 *
 * This header is the device's side and the connection both sides use; the
 * server's side (its identity, listening, accepting) is server/tls_server.h,
 * in the server library only, never in what a phone links.
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

typedef struct fv_tls_conn fv_tls_conn;

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

/* Advances the handshake of an accepted connection (server/tls_server.h;
 * fv_tls_connect drives its own). FV_OK when complete, FV_TLS_WANT_*, or
 * FV_ETLS. */
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

#endif
