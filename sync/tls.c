/*
 * tls.c - TLS 1.2 over TCP with mbedtls 2.28: the device's side and what
 * both sides share (tls_internal.h). The server's side is
 * server/tls_server.c. See tls.h for the policy.
 *
 * How it is put together:
 * - Every connection owns its mbedtls_ssl_config. mbedtls 2.28 offers the
 *   key-export callback (which the channel binding needs) only per
 *   configuration, and the callback is not told which context it fired for,
 *   so a configuration shared by all server connections could not say whose
 *   binding it computed. A configuration is a few hundred bytes and only
 *   points at the server's certificate and key, which are shared.
 * - A server connection holds a reference to the certificate and key it
 *   presents (server/tls_server.c counts them), so the server and its
 *   connections may be closed in any order, from any thread. Connections
 *   only read the key (ECDSA signing keeps no state in the key context).
 * - Errors are sticky: after a fatal error (or end of stream) every call on
 *   the connection returns the same code, since mbedtls must not be driven
 *   again after one.
 * - Sockets never raise SIGPIPE: the bio callbacks below send with
 *   MSG_NOSIGNAL (SO_NOSIGPIPE where that is the platform's way).
 */
#include "tls_internal.h"
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/net_sockets.h> /* only for the MBEDTLS_ERR_NET_* codes */
#include <mbedtls/ssl.h>

#include "crypto.h"
#include "fieldvault.h"

#if defined(MSG_NOSIGNAL)
#define FV_SEND_FLAGS MSG_NOSIGNAL
#else
#define FV_SEND_FLAGS 0
#endif

#define FV_TLS_MASTER_BYTES 48      /* TLS 1.2 master secret */
#define FV_TLS_RANDOM_BYTES 32      /* ClientHello / ServerHello random */

static const char binding_label[] = "FieldVault channel binding v1";
#define FV_TLS_LABEL_BYTES (sizeof binding_label - 1)

/* mbedtls keeps pointers to these lists: they must outlive every config. */
/* The ECDSA suites of Mozilla's "intermediate" TLS 1.2 configuration, in
 * its order: what an ordinary nginx with an EC certificate offers. */
static const int tls_ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

/* X25519, P-256, P-384: OpenSSL's default groups that mbedtls has. */
static const mbedtls_ecp_group_id tls_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

/* Both ends offer HTTP/1.1 by ALPN, as a web server and its client would.
 * Like nginx, the server refuses a client that offers ALPN without it. */
static const char *tls_alpn[] = {"http/1.1", NULL};

/* ---- small helpers ------------------------------------------------------ */

int fv_tls_rng(void *unused, unsigned char *out, size_t len)
{
    (void)unused;
    fv_random(out, len);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fv_tls_now_ms(void) { return now_ms(); }

/* POLLERR/POLLHUP count as ready: the next I/O call reports them. */
int fv_tls_wait_fd(int fd, short events, int64_t deadline, int wake)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p[2] = {{.fd = fd, .events = events, .revents = 0},
                              {.fd = wake, .events = POLLIN, .revents = 0}};
        int r;

        if (left <= 0)
            return FV_ENET;
        r = poll(p, wake >= 0 ? 2 : 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0 && wake >= 0 && p[1].revents)
            return FV_ECANCELED;
        if (r > 0)
            return FV_OK;
        if (r == 0)
            return FV_ENET;
        if (errno != EINTR)
            return FV_ENET;
    }
}

int fv_tls_socket_prepare(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFD);

    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
#if defined(SO_NOSIGPIPE)
    if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) < 0)
        return -1;
#endif
    (void)one;
    return 0;
}

void fv_tls_socket_nodelay(int fd)
{
    int one = 1;
    /* Latency only: a failure here does not affect correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int fv_tls_socket_new(int family, int type, int protocol)
{
#if defined(SOCK_CLOEXEC)
    /* Closes the window in which another thread's fork+exec inherits it. */
    int fd = socket(family, type | SOCK_CLOEXEC, protocol);
#else
    int fd = socket(family, type, protocol);
#endif
    if (fd < 0)
        return -1;
    if (fv_tls_socket_prepare(fd) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int fv_tls_pin_of_key(mbedtls_pk_context *pk, unsigned char pin[FV_TLS_PIN_BYTES])
{
    unsigned char der[FV_TLS_SPKI_MAX];
    /* mbedtls writes DER backwards, ending at the end of the buffer. */
    int len = mbedtls_pk_write_pubkey_der(pk, der, sizeof der);

    if (len <= 0)
        return FV_ECORRUPT;
    fv_hash(pin, der + sizeof der - (size_t)len, (size_t)len);
    return FV_OK;
}

/* ---- connections -------------------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    const fv_tls_conn *c = ctx;
    ssize_t n;

    if (len > INT_MAX)
        len = INT_MAX;
    do
        n = send(c->fd, buf, len, FV_SEND_FLAGS);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    if (errno == EPIPE || errno == ECONNRESET)
        return MBEDTLS_ERR_NET_CONN_RESET;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    const fv_tls_conn *c = ctx;
    ssize_t n;

    if (len > INT_MAX)
        len = INT_MAX;
    do
        n = recv(c->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (int)n; /* 0: end of stream, which mbedtls reports as such */
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (errno == ECONNRESET)
        return MBEDTLS_ERR_NET_CONN_RESET;
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* Client: the only trust decision. The leaf's key must hash to the pin; the
 * rest of the chain, names, dates and CA flags play no part, so their flags
 * are cleared.
 *
 * Why VERIFY_OPTIONAL (set below) and a fatal return here: under
 * VERIFY_REQUIRED, mbedtls 2.28 fails every handshake that has no CA chain
 * configured (MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED), and a pin needs none. Under
 * VERIFY_OPTIONAL mbedtls ignores flags left set, but treats an error
 * returned by this callback as fatal: it sends an alert and stops the
 * handshake before any application data. The flag is set as well, and
 * fv_tls_handshake checks both the flags and that the pin was seen. */
static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    fv_tls_conn *c = ctx;
    unsigned char got[FV_TLS_PIN_BYTES];

    if (depth != 0) {
        *flags = 0;
        return 0;
    }
    if (fv_tls_pin_of_key(&crt->pk, got) == FV_OK &&
        fv_ct_equal(got, c->expected_pin, FV_TLS_PIN_BYTES)) {
        memcpy(c->peer_pin, got, FV_TLS_PIN_BYTES);
        c->have_peer_pin = 1;
        c->pin_mismatch = 0;
        *flags = 0;
        return 0;
    }
    c->have_peer_pin = 0;
    c->pin_mismatch = 1;
    *flags |= MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    return MBEDTLS_ERR_X509_FATAL_ERROR;
}

/* Both ends call this when they derive the session keys. The master secret
 * is used in place as the hash key: no copy of it is made here. */
static int export_keys_cb(void *ctx, const unsigned char *ms,
                          const unsigned char *kb, size_t maclen,
                          size_t keylen, size_t ivlen,
                          const unsigned char client_random[32],
                          const unsigned char server_random[32],
                          mbedtls_tls_prf_types prf)
{
    fv_tls_conn *c = ctx;
    unsigned char msg[FV_TLS_LABEL_BYTES + 2 * FV_TLS_RANDOM_BYTES];

    (void)kb;
    (void)maclen;
    (void)keylen;
    (void)ivlen;
    (void)prf;
    memcpy(msg, binding_label, FV_TLS_LABEL_BYTES);
    memcpy(msg + FV_TLS_LABEL_BYTES, client_random, FV_TLS_RANDOM_BYTES);
    memcpy(msg + FV_TLS_LABEL_BYTES + FV_TLS_RANDOM_BYTES, server_random,
           FV_TLS_RANDOM_BYTES);
    fv_hash_keyed(c->binding, msg, sizeof msg, ms, FV_TLS_MASTER_BYTES);
    c->have_binding = 1;
    return 0;
}

/* Frees a connection without sending anything; closes its socket. */
static void conn_free(fv_tls_conn *c)
{
    if (c == NULL)
        return;
    mbedtls_ssl_free(&c->ssl); /* zeroizes keys and buffers */
    mbedtls_ssl_config_free(&c->conf);
    if (c->fd >= 0)
        close(c->fd);
    if (c->release)
        c->release(c->owner);
    fv_wipe(c, sizeof *c);
    free(c);
}

int fv_tls_conn_new(fv_tls_conn **out, int fd, int endpoint,
                    mbedtls_x509_crt *cert, mbedtls_pk_context *key,
                    void (*release)(void *owner), void *owner)
{
    fv_tls_conn *c;
    int rc = FV_ETLS, ret;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        if (release)
            release(owner);
        return FV_ENOMEM;
    }
    c->fd = fd;
    c->is_client = endpoint == MBEDTLS_SSL_IS_CLIENT;
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_ssl_init(&c->ssl);
    c->owner = owner;
    c->release = release;

    if (mbedtls_ssl_config_defaults(&c->conf, endpoint,
                                    MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        goto cleanup;
    mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&c->conf, tls_ciphersuites);
    mbedtls_ssl_conf_curves(&c->conf, tls_curves);
    mbedtls_ssl_conf_rng(&c->conf, fv_tls_rng, NULL);
    mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    mbedtls_ssl_conf_extended_master_secret(&c->conf, MBEDTLS_SSL_EXTENDED_MS_ENABLED);
    mbedtls_ssl_conf_export_keys_ext_cb(&c->conf, export_keys_cb, c);
    if (mbedtls_ssl_conf_alpn_protocols(&c->conf, tls_alpn) != 0)
        goto cleanup;
    if (c->is_client) {
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
        mbedtls_ssl_conf_verify(&c->conf, verify_cb, c);
    } else {
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
        if (cert == NULL || key == NULL ||
            mbedtls_ssl_conf_own_cert(&c->conf, cert, key) != 0)
            goto cleanup;
    }
    ret = mbedtls_ssl_setup(&c->ssl, &c->conf);
    if (ret != 0) {
        rc = ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? FV_ENOMEM : FV_ETLS;
        goto cleanup;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    *out = c;
    c = NULL;
    rc = FV_OK;
cleanup:
    conn_free(c);
    return rc;
}

/* An mbedtls result as FV_OK, FV_TLS_WANT_* or an FV_E code. */
static int map_result(int ret)
{
    switch (ret) {
    case 0:
        return FV_OK;
    case MBEDTLS_ERR_SSL_WANT_READ:
        return FV_TLS_WANT_READ;
    case MBEDTLS_ERR_SSL_WANT_WRITE:
        return FV_TLS_WANT_WRITE;
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
    case MBEDTLS_ERR_SSL_CONN_EOF:
        return FV_EEOF;
    case MBEDTLS_ERR_NET_CONN_RESET:
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        return FV_ENET;
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
        return FV_ENOMEM;
    default:
        return FV_ETLS;
    }
}

int fv_tls_handshake(fv_tls_conn *c)
{
    int rc;

    if (c == NULL)
        return FV_EINVAL;
    if (c->error != 0)
        return c->error;
    if (c->handshake_done)
        return FV_OK;
    rc = map_result(mbedtls_ssl_handshake(&c->ssl));
    if (rc == FV_OK) {
        /* Belt and braces: never report success without the binding and,
         * on a client, without having seen the pinned key. */
        if (!c->have_binding ||
            (c->is_client && (!c->have_peer_pin ||
                              mbedtls_ssl_get_verify_result(&c->ssl) != 0)))
            rc = FV_ETLS;
        else
            c->handshake_done = 1;
    } else if (rc < 0) {
        if (c->pin_mismatch)
            rc = FV_EPIN;
        else if (rc == FV_EEOF || rc == FV_ENET)
            rc = c->is_client ? FV_ENET : FV_ETLS; /* cut mid-handshake */
        else if (rc != FV_ENOMEM)
            rc = FV_ETLS;
    }
    if (rc < 0)
        c->error = rc;
    return rc;
}

/* A connected, non-blocking TCP socket to ai, or -1. *rc receives the
 * result of the wait for the connect, if there was one: FV_ECANCELED when
 * `wake` ended it. */
static int tcp_connect(const struct addrinfo *ai, int64_t deadline, int wake,
                       int *rc)
{
    int fd = fv_tls_socket_new(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int err = 0;
    socklen_t len = sizeof err;

    if (fd < 0)
        return -1;
    fv_tls_socket_nodelay(fd);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    /* After EINTR a non-blocking connect goes on in the background. */
    if (errno != EINPROGRESS && errno != EINTR)
        goto fail;
    if ((*rc = fv_tls_wait_fd(fd, POLLOUT, deadline, wake)) != FV_OK)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

int fv_tls_connect(fv_tls_conn **out, const char *host, const char *port,
                   const unsigned char pin[FV_TLS_PIN_BYTES], int timeout_ms)
{
    return fv_tls_connect_wake(out, host, port, pin, timeout_ms, -1);
}

int fv_tls_connect_wake(fv_tls_conn **out, const char *host, const char *port,
                        const unsigned char pin[FV_TLS_PIN_BYTES],
                        int timeout_ms, int wake)
{
    return fv_tls_connect_proxy(out, host, port, pin, timeout_ms, wake, NULL,
                                NULL, 0);
}

int fv_tls_connect_proxy(fv_tls_conn **out, const char *host, const char *port,
                         const unsigned char pin[FV_TLS_PIN_BYTES],
                         int timeout_ms, int wake, const struct fv_proxy *proxy,
                         char *why, size_t whycap)
{
    struct addrinfo hints, *res = NULL, *ai;
    fv_tls_conn *c = NULL;
    int64_t deadline;
    int fd = -1, rc = FV_ENET, ret;

    if (why && whycap)
        why[0] = '\0';
    if (out == NULL)
        return FV_EINVAL;
    *out = NULL;
    if (host == NULL || port == NULL || pin == NULL || timeout_ms <= 0)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    deadline = now_ms() + timeout_ms;

    /* Name resolution blocks and ignores the deadline: pass a numeric
     * address where that matters. Through a proxy only the proxy's own
     * address is resolved here: the server's name goes to the proxy
     * (socks5h, http) or is resolved by sync/proxy.c (socks5). */
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(proxy ? proxy->host : host, proxy ? proxy->port : port,
                    &hints, &res) != 0)
        res = NULL;
    for (ai = res; ai != NULL && fd < 0 && rc != FV_ECANCELED &&
                   now_ms() < deadline;
         ai = ai->ai_next)
        fd = tcp_connect(ai, deadline, wake, &rc);
    if (res)
        freeaddrinfo(res);
    if (fd < 0 && rc == FV_ECANCELED)
        return rc;
    if (fd < 0 && proxy) {
        if (why && whycap)
            snprintf(why, whycap, "cannot reach the proxy");
        return FV_EPROXY;
    }
    if (fd < 0)
        return FV_ENET;
    if (proxy) {
        rc = fv_proxy_handshake(fd, proxy, host, port, deadline, wake, why,
                                whycap);
        if (rc != FV_OK) {
            close(fd);
            return rc;
        }
    }

    rc = fv_tls_conn_new(&c, fd, MBEDTLS_SSL_IS_CLIENT, NULL, NULL, NULL,
                         NULL);
    if (rc != FV_OK)
        return rc;
    memcpy(c->expected_pin, pin, FV_TLS_PIN_BYTES);
    ret = mbedtls_ssl_set_hostname(&c->ssl, host); /* sent as SNI */
    if (ret != 0) {
        rc = ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? FV_ENOMEM : FV_EINVAL;
        goto cleanup;
    }
    for (;;) {
        rc = fv_tls_handshake(c);
        if (rc <= 0)
            break;
        rc = fv_tls_wait_fd(c->fd, rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT, deadline,
                     wake);
        if (rc != FV_OK)
            break;
    }
    if (rc != FV_OK)
        goto cleanup;
    *out = c;
    c = NULL;
cleanup:
    conn_free(c);
    return rc;
}

int fv_tls_read(fv_tls_conn *c, void *buf, size_t len, size_t *n)
{
    int ret, rc;

    if (n != NULL)
        *n = 0;
    if (c == NULL || buf == NULL || n == NULL || len == 0)
        return FV_EINVAL;
    if (c->error != 0)
        return c->error;
    if (!c->handshake_done)
        return FV_EINVAL;
    ret = mbedtls_ssl_read(&c->ssl, buf, len);
    if (ret > 0) {
        *n = (size_t)ret;
        return FV_OK;
    }
    /* 0: the transport ended without a close_notify. */
    rc = ret == 0 ? FV_EEOF : map_result(ret);
    if (rc < 0)
        c->error = rc;
    return rc;
}

int fv_tls_write(fv_tls_conn *c, const void *buf, size_t len, size_t *n)
{
    int ret, rc;

    if (n != NULL)
        *n = 0;
    if (c == NULL || buf == NULL || n == NULL || len == 0)
        return FV_EINVAL;
    if (c->error != 0)
        return c->error;
    if (!c->handshake_done)
        return FV_EINVAL;
    ret = mbedtls_ssl_write(&c->ssl, buf, len);
    if (ret > 0) {
        *n = (size_t)ret;
        return FV_OK;
    }
    rc = ret == 0 ? FV_ETLS : map_result(ret);
    if (rc < 0)
        c->error = rc;
    return rc;
}

size_t fv_tls_pending(const fv_tls_conn *c)
{
    if (c == NULL || c->error != 0)
        return 0;
    return mbedtls_ssl_get_bytes_avail(&c->ssl);
}

int fv_tls_fd(const fv_tls_conn *c) { return c != NULL ? c->fd : -1; }

int fv_tls_binding(const fv_tls_conn *c, unsigned char out[FV_TLS_BINDING_BYTES])
{
    if (c == NULL || out == NULL || !c->handshake_done || !c->have_binding)
        return FV_EINVAL;
    memcpy(out, c->binding, FV_TLS_BINDING_BYTES);
    return FV_OK;
}

int fv_tls_peer_pin(const fv_tls_conn *c, unsigned char pin[FV_TLS_PIN_BYTES])
{
    if (c == NULL || pin == NULL || !c->is_client || !c->handshake_done ||
        !c->have_peer_pin)
        return FV_EINVAL;
    memcpy(pin, c->peer_pin, FV_TLS_PIN_BYTES);
    return FV_OK;
}

void fv_tls_close(fv_tls_conn *c)
{
    if (c == NULL)
        return;
    /* One try: on a full socket buffer the alert is simply dropped. */
    if (c->handshake_done && c->error == 0)
        (void)mbedtls_ssl_close_notify(&c->ssl);
    conn_free(c);
}
