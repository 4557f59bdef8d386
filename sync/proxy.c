/* proxy.c - the proxy URL parser and the SOCKS5 / HTTP CONNECT exchanges
 * (proxy.h). Plain socket I/O on a non-blocking socket, every wait through
 * fv_tls_wait_fd so that the deadline and the session's wake pipe work as
 * they do while connecting. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fieldvault.h"
#include "textparse.h"
#include "tls.h"

/* ---- URL ----------------------------------------------------------------- */

/* Percent-decodes s[0..n) into out (cap 255): its length, or -1. */
static int pct_decode(unsigned char *out, const char *s, size_t n)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            unsigned char b;
            if (i + 2 >= n || fv_hex_decode(&b, 1, s + i + 1, 2) != FV_OK)
                return -1;
            c = b;
            i += 2;
        } else if (c <= 0x20 || c >= 0x7f) {
            return -1;
        }
        if (o >= 255)
            return -1;
        out[o++] = (unsigned char)c;
    }
    return (int)o;
}

static int host_char_ok(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

int fv_proxy_parse(fv_proxy *p, const char *url, const char **why)
{
    static const struct {
        const char *prefix;
        int type;
    } schemes[] = {{"socks5h://", FV_PROXY_SOCKS5H},
                   {"socks5://", FV_PROXY_SOCKS5},
                   {"http://", FV_PROXY_HTTP}};
    const char *rest = NULL, *at, *hp, *end;
    const char *dummy, *bad;
    char hp_buf[FV_PROXY_URL_MAX + 1];
    size_t i, len, hl;

    if (!why)
        why = &dummy;
    *why = "";
    if (!p)
        return FV_EINVAL;
    memset(p, 0, sizeof *p);
    if (!url) {
        *why = "no proxy URL";
        return FV_EINVAL;
    }
    len = strlen(url);
    if (len > FV_PROXY_URL_MAX) {
        *why = "the proxy URL is too long";
        return FV_EINVAL;
    }
    for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t pl = strlen(schemes[i].prefix);
        if (strncmp(url, schemes[i].prefix, pl) == 0) {
            p->type = schemes[i].type;
            rest = url + pl;
            break;
        }
    }
    if (!rest) {
        *why = "want socks5h://, socks5:// or http:// followed by HOST:PORT";
        return FV_EINVAL;
    }
    end = rest + strlen(rest);
    if (end > rest && end[-1] == '/')
        end--; /* "http://proxy:3128/" as commonly written */
    /* The last '@' ends the credentials: a password may hold '@' only
     * percent-encoded, but a stray one must not move the host. */
    at = NULL;
    for (hp = rest; hp < end; hp++)
        if (*hp == '@')
            at = hp;
    if (at) {
        const char *sep = memchr(rest, ':', (size_t)(at - rest));
        int ul, pw;
        if (!sep) {
            *why = "the proxy credentials are not USER:PASS";
            goto fail;
        }
        ul = pct_decode(p->user, rest, (size_t)(sep - rest));
        pw = pct_decode(p->pass, sep + 1, (size_t)(at - sep - 1));
        if (ul < 1 || pw < 1) {
            *why = "the proxy user name and password must each be 1 to 255 "
                   "bytes, printable or percent-encoded";
            goto fail;
        }
        p->user_len = (size_t)ul;
        p->pass_len = (size_t)pw;
        p->has_auth = 1;
        rest = at + 1;
    }
    hl = (size_t)(end - rest);
    if (hl >= sizeof hp_buf) {
        *why = "the proxy address is too long";
        goto fail;
    }
    memcpy(hp_buf, rest, hl);
    hp_buf[hl] = '\0';
    if (fv_addr_parse(hp_buf, 0, p->host, p->port, &bad)) {
        *why = bad;
        goto fail;
    }
    return FV_OK;
fail:
    fv_proxy_wipe(p);
    return FV_EINVAL;
}

void fv_proxy_wipe(fv_proxy *p)
{
    if (p)
        fv_wipe(p, sizeof *p);
}

void fv_proxy_name(const fv_proxy *p, char *buf, size_t cap)
{
    const char *scheme = p->type == FV_PROXY_SOCKS5H  ? "socks5h"
                         : p->type == FV_PROXY_SOCKS5 ? "socks5"
                                                      : "http";
    int v6 = strchr(p->host, ':') != NULL;
    if (cap == 0)
        return;
    snprintf(buf, cap, "%s://%s%s%s:%s", scheme, v6 ? "[" : "", p->host,
             v6 ? "]" : "", p->port);
}

/* ---- reply parsers --------------------------------------------------------- */

static const char *socks5_error(unsigned rep, int *rc)
{
    *rc = FV_ENET; /* the proxy works; the server is out of its reach */
    switch (rep) {
    case 3: return "the proxy could not reach the server: network unreachable";
    case 4: return "the proxy could not reach the server: host unreachable";
    case 5: return "the proxy could not reach the server: connection refused";
    case 6: return "the proxy could not reach the server: TTL expired";
    /* Tor's extended errors (ExtendedErrors): an onion service's state. */
    case 0xF0: return "the proxy could not reach the server: onion service descriptor not found";
    case 0xF1: return "the proxy could not reach the server: onion service descriptor is invalid";
    case 0xF2: return "the proxy could not reach the server: onion service introduction failed";
    case 0xF3: return "the proxy could not reach the server: onion service rendezvous failed";
    case 0xF6: return "the proxy could not reach the server: the .onion address is invalid";
    case 0xF7: return "the proxy could not reach the server: onion service introduction timed out";
    }
    *rc = FV_EPROXY;
    switch (rep) {
    case 1: return "the proxy failed (SOCKS5 general failure)";
    case 2: return "the proxy's rules do not allow a connection to the server";
    case 7: return "the proxy does not support CONNECT";
    case 8: return "the proxy does not support this address type";
    case 0xF4: return "the proxy needs onion service client authorization";
    case 0xF5: return "the proxy's onion service client authorization was refused";
    default: return "the proxy sent an unknown SOCKS5 reply code";
    }
}

int fv_proxy_socks5_reply(const unsigned char *b, size_t n, size_t *need,
                          const char **why)
{
    size_t total;
    int rc;

    *why = "";
    if (n >= 1 && b[0] != 5) {
        *why = "the proxy is not a SOCKS5 proxy (bad reply version)";
        return FV_EPROXY;
    }
    if (n >= 2 && b[1] != 0) {
        *why = socks5_error(b[1], &rc);
        return rc;
    }
    if (n >= 3 && b[2] != 0) {
        *why = "the proxy sent a malformed SOCKS5 reply (reserved byte)";
        return FV_EPROXY;
    }
    if (n < 4) {
        *need = 4;
        return 1;
    }
    switch (b[3]) {
    case 1: total = 4 + 4 + 2; break;
    case 4: total = 4 + 16 + 2; break;
    case 3:
        if (n < 5) {
            *need = 5;
            return 1;
        }
        if (b[4] == 0) {
            *why = "the proxy sent a malformed SOCKS5 reply (empty name)";
            return FV_EPROXY;
        }
        total = 5 + (size_t)b[4] + 2;
        break;
    default:
        *why = "the proxy sent a malformed SOCKS5 reply (address type)";
        return FV_EPROXY;
    }
    *need = total;
    if (n < total)
        return 1;
    if (n > total) {
        *why = "the proxy sent more than its SOCKS5 reply";
        return FV_EPROXY;
    }
    return FV_OK;
}

/* A header line's bytes: visible ASCII, space and tab only. */
static int line_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] >= 0x7f)
            return 0;
    return 1;
}

int fv_proxy_http_reply(const unsigned char *b, size_t n, int *status,
                        const char **why)
{
    size_t i, eol = 0, line_start, head_end = 0;
    int code;

    *status = 0;
    *why = "";
    /* The head ends at the first empty line; CRLF only (strict). */
    for (i = 0; i + 3 < n; i++)
        if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' &&
            b[i + 3] == '\n') {
            head_end = i + 4;
            break;
        }
    if (head_end == 0) {
        /* Fail early on what can never become a valid head. */
        size_t pre = n < 9 ? n : 9;
        if (memcmp(b, "HTTP/1.", pre < 7 ? pre : 7) != 0 ||
            (pre >= 8 && b[7] != '0' && b[7] != '1') ||
            (pre == 9 && b[8] != ' ')) {
            *why = "the proxy is not an HTTP proxy (malformed reply)";
            return FV_EPROXY;
        }
        /* Line ends are CRLF only: a bare LF or CR is refused now
         * rather than waited on to the cap. */
        for (i = 0; i < n; i++)
            if ((b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) ||
                (b[i] == '\r' && i + 1 < n && b[i + 1] != '\n')) {
                *why = "the proxy sent a malformed HTTP reply (line ends)";
                return FV_EPROXY;
            }
        if (n >= FV_PROXY_HTTP_MAX) {
            *why = "the proxy's reply headers are too long";
            return FV_EPROXY;
        }
        return 1;
    }
    if (head_end > FV_PROXY_HTTP_MAX) {
        *why = "the proxy's reply headers are too long";
        return FV_EPROXY;
    }
    if (head_end != n) {
        *why = "the proxy sent more than its reply";
        return FV_EPROXY;
    }
    /* Status line: "HTTP/1.x DDD reason". */
    for (eol = 0; eol + 1 < n && !(b[eol] == '\r' && b[eol + 1] == '\n'); eol++)
        ;
    if (eol < 12 || memcmp(b, "HTTP/1.", 7) != 0 ||
        (b[7] != '0' && b[7] != '1') || b[8] != ' ' || b[9] < '1' ||
        b[9] > '5' || b[10] < '0' || b[10] > '9' || b[11] < '0' ||
        b[11] > '9' || (eol > 12 && b[12] != ' ') || !line_ok(b, eol)) {
        *why = "the proxy sent a malformed HTTP status line";
        return FV_EPROXY;
    }
    code = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    /* Headers: NAME ":" value, each line printable. None is acted on. */
    line_start = eol + 2;
    while (line_start < head_end - 2) {
        size_t e = line_start, colon = 0;
        while (!(b[e] == '\r' && b[e + 1] == '\n'))
            e++;
        for (i = line_start; i < e; i++)
            if (b[i] == ':') {
                colon = i;
                break;
            }
        if (colon == 0 || colon == line_start || !line_ok(b + line_start, e - line_start)) {
            *why = "the proxy sent a malformed HTTP header";
            return FV_EPROXY;
        }
        for (i = line_start; i < colon; i++)
            if (!host_char_ok(b[i]) || b[i] == '.') {
                *why = "the proxy sent a malformed HTTP header";
                return FV_EPROXY;
            }
        line_start = e + 2;
    }
    *status = code;
    if (code >= 200 && code <= 299)
        return FV_OK;
    switch (code) {
    case 401: /* tinyproxy's answer to a wrong password */
    case 407:
        *why = "the proxy refused the user name or password";
        return FV_EPROXY;
    case 403:
        *why = "the proxy does not allow a connection to the server";
        return FV_EPROXY;
    case 502:
    case 503:
    case 504:
        *why = "the proxy could not reach the server";
        return FV_ENET;
    default:
        *why = "the proxy refused the connection";
        return FV_EPROXY;
    }
}

/* ---- I/O --------------------------------------------------------------------- */

struct io {
    int fd;
    int64_t deadline;
    int wake;
    const char *phase; /* for a timeout's message */
    char *why;
    size_t whycap;
};

static int io_fail(struct io *io, int rc, const char *msg)
{
    if (io->why && io->whycap)
        snprintf(io->why, io->whycap, "%s", msg);
    return rc;
}

/* A wait's failure as the handshake reports it. */
static int io_wait(struct io *io, short events)
{
    int rc = fv_tls_wait_fd(io->fd, events, io->deadline, io->wake);
    if (rc == FV_ENET) {
        char m[160];
        snprintf(m, sizeof m, "the proxy did not answer in time (%s)", io->phase);
        return io_fail(io, FV_EPROXY, m);
    }
    return rc;
}

static int io_send(struct io *io, const unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(io->fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = io_wait(io, POLLOUT);
            if (rc)
                return rc;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return io_fail(io, FV_EPROXY, "the proxy closed the connection");
        }
    }
    return FV_OK;
}

/* Reads exactly n bytes (never more: what follows is the server's). */
static int io_recv(struct io *io, unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(io->fd, b, n, 0);
        if (r > 0) {
            b += r;
            n -= (size_t)r;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = io_wait(io, POLLIN);
            if (rc)
                return rc;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            return io_fail(io, FV_EPROXY,
                           r == 0 ? "the proxy closed the connection during its handshake"
                                  : "the connection to the proxy failed during its handshake");
        }
    }
    return FV_OK;
}

static void b64(char *out, const unsigned char *in, size_t n)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

static int http_connect(struct io *io, const fv_proxy *p, const char *host,
                        const char *port)
{
    /* user:pass (511) as base64 (684) and the request around it. */
    unsigned char cred[255 + 1 + 255];
    char auth[700], req[1400], head[FV_PROXY_HTTP_MAX];
    const char *why;
    int v6 = strchr(host, ':') != NULL, rc, status, len;
    size_t n = 0;

    auth[0] = '\0';
    if (p->has_auth) {
        memcpy(cred, p->user, p->user_len);
        cred[p->user_len] = ':';
        memcpy(cred + p->user_len + 1, p->pass, p->pass_len);
        b64(auth, cred, p->user_len + 1 + p->pass_len);
    }
    len = snprintf(req, sizeof req,
                   "CONNECT %s%s%s:%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s%s%s\r\n",
                   v6 ? "[" : "", host, v6 ? "]" : "", port, v6 ? "[" : "", host,
                   v6 ? "]" : "", port,
                   p->has_auth ? "Proxy-Authorization: Basic " : "", auth,
                   p->has_auth ? "\r\n" : "");
    if (len < 0 || (size_t)len >= sizeof req) {
        rc = io_fail(io, FV_EINVAL, "the proxy request is too long");
        goto cleanup;
    }
    io->phase = "CONNECT";
    if ((rc = io_send(io, (const unsigned char *)req, (size_t)len)))
        goto cleanup;
    /* Byte by byte up to the blank line: the bytes after it are the
     * server's and must be left to TLS. */
    for (;;) {
        if ((rc = io_recv(io, (unsigned char *)head + n, 1)))
            goto cleanup;
        n++;
        rc = fv_proxy_http_reply((const unsigned char *)head, n, &status, &why);
        if (rc == 1)
            continue;
        if (rc != FV_OK && status != 0) {
            char m[200];
            snprintf(m, sizeof m, "%s (HTTP %d)", why, status);
            rc = io_fail(io, rc, m);
        } else if (rc != FV_OK) {
            rc = io_fail(io, rc, why);
        }
        break;
    }
cleanup:
    fv_wipe(cred, sizeof cred);
    fv_wipe(auth, sizeof auth);
    fv_wipe(req, sizeof req);
    return rc;
}

static int socks5_connect(struct io *io, const fv_proxy *p, const char *host,
                          const char *port)
{
    unsigned char m[3 + 255 + 255], r[4 + 256 + 2];
    size_t n, need;
    const char *why;
    unsigned long pn = strtoul(port, NULL, 10);
    int rc;

    /* Method selection: with credentials only user/password, so that a
     * proxy cannot downgrade to none (and Tor isolates per credential). */
    m[0] = 5;
    m[1] = 1;
    m[2] = p->has_auth ? 2 : 0;
    io->phase = "SOCKS5 greeting";
    if ((rc = io_send(io, m, 3)) || (rc = io_recv(io, r, 2)))
        goto cleanup;
    if (r[0] != 5) {
        rc = io_fail(io, FV_EPROXY, "the proxy is not a SOCKS5 proxy");
        goto cleanup;
    }
    if (r[1] != m[2]) {
        rc = io_fail(io, FV_EPROXY,
                     r[1] == 0xFF && p->has_auth
                         ? "the proxy does not accept a user name and password"
                     : r[1] == 0xFF || r[1] == 2
                         ? "the proxy wants a user name and password (USER:PASS@ in the proxy URL)"
                         : "the proxy chose an authentication method not offered");
        goto cleanup;
    }
    if (p->has_auth) {
        m[0] = 1; /* RFC 1929 */
        m[1] = (unsigned char)p->user_len;
        memcpy(m + 2, p->user, p->user_len);
        m[2 + p->user_len] = (unsigned char)p->pass_len;
        memcpy(m + 3 + p->user_len, p->pass, p->pass_len);
        io->phase = "SOCKS5 authentication";
        rc = io_send(io, m, 3 + p->user_len + p->pass_len);
        fv_wipe(m, sizeof m);
        if (rc || (rc = io_recv(io, r, 2)))
            goto cleanup;
        if (r[0] != 1) {
            rc = io_fail(io, FV_EPROXY, "the proxy sent a malformed authentication reply");
            goto cleanup;
        }
        if (r[1] != 0) {
            rc = io_fail(io, FV_EPROXY, "the proxy refused the user name or password");
            goto cleanup;
        }
    }

    /* CONNECT: the name itself with socks5h (the proxy resolves it), else
     * an address: a literal, or what the device resolves. */
    m[0] = 5;
    m[1] = 1;
    m[2] = 0;
    n = 3;
    if (inet_pton(AF_INET, host, m + 4) == 1) {
        m[3] = 1;
        n = 8;
    } else if (inet_pton(AF_INET6, host, m + 4) == 1) {
        m[3] = 4;
        n = 20;
    } else if (p->type == FV_PROXY_SOCKS5H) {
        size_t hl = strlen(host);
        if (hl == 0 || hl > 255) {
            rc = io_fail(io, FV_EINVAL, "the server's name is longer than 255 bytes");
            goto cleanup;
        }
        m[3] = 3;
        m[4] = (unsigned char)hl;
        memcpy(m + 5, host, hl);
        n = 5 + hl;
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
            rc = io_fail(io, FV_ENET, "cannot resolve the server's name (socks5h:// lets the proxy do it)");
            goto cleanup;
        }
        if (res->ai_family == AF_INET) {
            m[3] = 1;
            memcpy(m + 4, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, 4);
            n = 8;
        } else {
            m[3] = 4;
            memcpy(m + 4, &((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr, 16);
            n = 20;
        }
        freeaddrinfo(res);
    }
    m[n++] = (unsigned char)(pn >> 8);
    m[n++] = (unsigned char)pn;
    io->phase = "SOCKS5 CONNECT";
    if ((rc = io_send(io, m, n)))
        goto cleanup;
    /* The reply's length shows as it comes: read what the parser needs. */
    n = 0;
    need = 4;
    for (;;) {
        if ((rc = io_recv(io, r + n, need - n)))
            goto cleanup;
        n = need;
        rc = fv_proxy_socks5_reply(r, n, &need, &why);
        if (rc == 1)
            continue;
        if (rc != FV_OK)
            rc = io_fail(io, rc, why);
        break;
    }
cleanup:
    fv_wipe(m, sizeof m);
    return rc;
}

int fv_proxy_handshake(int fd, const fv_proxy *p, const char *host,
                       const char *port, int64_t deadline, int wake,
                       char *why, size_t whycap)
{
    struct io io = {fd, deadline, wake, "", why, whycap};
    const char *endp = port;
    unsigned long pn;

    if (why && whycap)
        why[0] = '\0';
    if (!p || !host || !port)
        return FV_EINVAL;
    pn = strtoul(port, (char **)&endp, 10);
    if (*port == '\0' || *endp != '\0' || pn < 1 || pn > 65535)
        return io_fail(&io, FV_EINVAL, "the server port is not a number from 1 to 65535");
    if (p->type == FV_PROXY_HTTP)
        return http_connect(&io, p, host, port);
    return socks5_connect(&io, p, host, port);
}
