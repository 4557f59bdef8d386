/*
 * proxy.h - reaching the server through a SOCKS5 (RFC 1928, RFC 1929) or
 * HTTP CONNECT proxy, e.g. Tor's SocksPort. Plain socket I/O before TLS
 * starts: the proxy then carries the TLS bytes and sees nothing else (the
 * pin still decides which server key is accepted).
 *
 * Proxy URLs:
 *   socks5://[USER:PASS@]HOST:PORT   the device resolves the server's name
 *   socks5h://[USER:PASS@]HOST:PORT  the proxy resolves it (no DNS query
 *                                    from the device; .onion addresses)
 *   http://[USER:PASS@]HOST:PORT     HTTP CONNECT, Basic auth
 * HOST may be an IPv6 literal in brackets. USER and PASS are 1 to 255
 * bytes, percent-encoding allowed (%40 for '@', %3A for ':').
 *
 * Every byte the proxy sends is hostile: replies are read with bounds and
 * parsed strictly. Results: FV_EPROXY when the proxy cannot be reached,
 * refuses, fails or breaks its protocol; FV_ENET when the proxy answers
 * that it cannot reach the server; FV_ECANCELED when `wake` ends a wait.
 */
#ifndef FV_PROXY_H
#define FV_PROXY_H

#include <stddef.h>
#include <stdint.h>

enum fv_proxy_type {
    FV_PROXY_SOCKS5 = 1,
    FV_PROXY_SOCKS5H = 2,
    FV_PROXY_HTTP = 3
};

/* Longest proxy URL accepted (credentials included). */
#define FV_PROXY_URL_MAX 1023
/* Cap on an HTTP CONNECT reply's status line and headers. */
#define FV_PROXY_HTTP_MAX 8192

typedef struct fv_proxy {
    int type;           /* enum fv_proxy_type */
    char host[256];     /* without brackets */
    char port[6];
    int has_auth;
    unsigned char user[255], pass[255]; /* secrets: fv_proxy_wipe */
    size_t user_len, pass_len;
} fv_proxy;

/* Parses a proxy URL into *p. FV_EINVAL (with a reason in *why, which never
 * quotes the credentials) when it is not one of the forms above. *p holds
 * credentials: the caller wipes it (fv_proxy_wipe) on every path. */
int fv_proxy_parse(fv_proxy *p, const char *url, const char **why);

/* Wipes *p (credentials included). NULL is harmless. */
void fv_proxy_wipe(fv_proxy *p);

/* "socks5h://HOST:PORT": the proxy as messages may show it, without
 * credentials. Always NUL-terminates (truncates if cap is short). */
void fv_proxy_name(const fv_proxy *p, char *buf, size_t cap);

/* Asks the proxy, over `fd` (a connected non-blocking socket to it), for a
 * tunnel to host:port, by `deadline` (CLOCK_MONOTONIC ms, as
 * fv_tls_now_ms) and stopping at once with FV_ECANCELED when `wake` (or -1)
 * is readable. On FV_OK the next byte on fd is the server's. On failure
 * `why` (cap `whycap`) says what happened, without credentials. */
int fv_proxy_handshake(int fd, const fv_proxy *p, const char *host,
                       const char *port, int64_t deadline, int wake,
                       char *why, size_t whycap);

/* ---- the reply parsers, apart for tests ---------------------------------- */

/* A SOCKS5 CONNECT reply of which `n` bytes are in `b`: 1 with *need (the
 * reply's full length, once known; else n + 1) when it is incomplete,
 * FV_OK when it is complete and grants the tunnel, else FV_EPROXY or
 * FV_ENET with *why set. Never reads past n. */
int fv_proxy_socks5_reply(const unsigned char *b, size_t n, size_t *need,
                          const char **why);

/* An HTTP CONNECT reply's head (status line and headers) of which `n`
 * bytes are in `b`: 1 when the blank line that ends it has not come yet,
 * FV_OK when complete with a 2xx status (*status), else FV_EPROXY or
 * FV_ENET with *status (0 if malformed) and *why set. More than
 * FV_PROXY_HTTP_MAX bytes without the end is FV_EPROXY. */
int fv_proxy_http_reply(const unsigned char *b, size_t n, int *status,
                        const char **why);

#endif
