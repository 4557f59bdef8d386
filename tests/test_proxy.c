/* test_proxy.c - sync/proxy.c: the proxy URL parser, the SOCKS5 and HTTP
 * CONNECT reply parsers fed every prefix of good and hostile replies, and
 * the handshakes against a scripted proxy on a socket pair: every
 * truncation, a proxy that hangs (deadline), a cancel (wake pipe), the
 * bytes sent (credentials, ATYP), and the server's first bytes left unread.
 * The real proxies (microsocks, tinyproxy) are driven by test_proxy.py. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "fieldvault.h"
#include "proxy.h"
#include "tls.h"

/* ---- URLs ------------------------------------------------------------------- */

static void test_parse_good(void)
{
    fv_proxy p;
    const char *why;
    char name[300];

    CHECK_EQ(fv_proxy_parse(&p, "socks5h://127.0.0.1:9050", &why), FV_OK);
    CHECK_EQ(p.type, FV_PROXY_SOCKS5H);
    CHECK(strcmp(p.host, "127.0.0.1") == 0 && strcmp(p.port, "9050") == 0);
    CHECK_EQ(p.has_auth, 0);

    CHECK_EQ(fv_proxy_parse(&p, "socks5://dev1:pa%40ss%3Aw@proxy.example:1080", &why), FV_OK);
    CHECK_EQ(p.type, FV_PROXY_SOCKS5);
    CHECK(strcmp(p.host, "proxy.example") == 0 && strcmp(p.port, "1080") == 0);
    CHECK(p.has_auth && p.user_len == 4 && memcmp(p.user, "dev1", 4) == 0);
    CHECK(p.pass_len == 7 && memcmp(p.pass, "pa@ss:w", 7) == 0);
    fv_proxy_name(&p, name, sizeof name);
    CHECK(strcmp(name, "socks5://proxy.example:1080") == 0); /* no USER:PASS */
    fv_proxy_wipe(&p);
    CHECK(p.user_len == 0 && p.user[0] == 0 && p.pass[0] == 0);

    CHECK_EQ(fv_proxy_parse(&p, "http://[::1]:3128/", &why), FV_OK);
    CHECK_EQ(p.type, FV_PROXY_HTTP);
    CHECK(strcmp(p.host, "::1") == 0 && strcmp(p.port, "3128") == 0);
    fv_proxy_name(&p, name, sizeof name);
    CHECK(strcmp(name, "http://[::1]:3128") == 0);

    /* A password holding '@' unencoded: the last '@' ends it. */
    CHECK_EQ(fv_proxy_parse(&p, "socks5h://u:a@b@127.0.0.1:1", &why), FV_OK);
    CHECK(p.pass_len == 3 && memcmp(p.pass, "a@b", 3) == 0);
    CHECK(strcmp(p.host, "127.0.0.1") == 0);
    fv_proxy_name(&p, name, 4); /* truncates, terminated */
    CHECK(strlen(name) == 3);
    fv_proxy_wipe(&p);
}

static void test_parse_bad(void)
{
    static const char *bad[] = {
        "", "127.0.0.1:9050", "socks4://127.0.0.1:1080", "SOCKS5H://h:1",
        "socks5h://", "socks5h://:9050", "socks5h://host", "socks5h://host:",
        "socks5h://host:0", "socks5h://host:65536", "socks5h://host:123456",
        "socks5h://host:12a", "socks5h://host:-1", "socks5h://ho st:1",
        "socks5h://host/x:1", "socks5h://[::1:1", "socks5h://[::1]1",
        "socks5h://[zz]:1", "socks5h://[]:1", "socks5h://user@host:1",
        "socks5h://:pw@host:1", "socks5h://user:@host:1",
        "socks5h://us%zzer:pw@host:1", "socks5h://us%4:pw@host:1",
        "socks5h://us er:pw@host:1", "http://host:1//", "socks5h://h\x01:1",
        "socks5h://u:p\x7f@h:1",
    };
    char big[2048];
    fv_proxy p;
    const char *why;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = fv_proxy_parse(&p, bad[i], &why);
        if (rc != FV_EINVAL)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_EQ(rc, FV_EINVAL);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(p.has_auth == 0 && p.user_len == 0 && p.type == 0);
    }
    CHECK_EQ(fv_proxy_parse(&p, NULL, &why), FV_EINVAL);
    CHECK_EQ(fv_proxy_parse(NULL, "socks5h://h:1", NULL), FV_EINVAL);
    CHECK_EQ(fv_proxy_parse(&p, "socks5h://h:1", NULL), FV_OK); /* why optional */

    /* Host of 255 bytes is fine, 256 is not; user and password 255 / 256. */
    memcpy(big, "socks5h://", 10);
    memset(big + 10, 'a', 255);
    strcpy(big + 10 + 255, ":1");
    CHECK_EQ(fv_proxy_parse(&p, big, &why), FV_OK);
    memset(big + 10, 'a', 256);
    strcpy(big + 10 + 256, ":1");
    CHECK_EQ(fv_proxy_parse(&p, big, &why), FV_EINVAL);
    memset(big + 10, 'u', 255);
    strcpy(big + 10 + 255, ":secretpw@h:1");
    CHECK_EQ(fv_proxy_parse(&p, big, &why), FV_OK);
    CHECK_EQ(p.user_len, 255);
    memset(big + 10, 'u', 256);
    strcpy(big + 10 + 256, ":secretpw@h:1");
    CHECK_EQ(fv_proxy_parse(&p, big, &why), FV_EINVAL);
    CHECK(strstr(why, "secretpw") == NULL);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "http://", 7);
    CHECK_EQ(fv_proxy_parse(&p, big, &why), FV_EINVAL);
    fv_proxy_wipe(&p);
}

/* ---- reply parsers ------------------------------------------------------- */

/* Every strict prefix of a good reply asks for more (and never for fewer
 * bytes than it has); the whole is FV_OK; one byte more is refused. */
static void socks5_good(const unsigned char *r, size_t n)
{
    unsigned char b[300];
    size_t need = 0;
    const char *why;

    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(fv_proxy_socks5_reply(r, i, &need, &why), 1);
        CHECK(need > i && need <= n);
    }
    CHECK_EQ(fv_proxy_socks5_reply(r, n, &need, &why), FV_OK);
    CHECK_EQ(need, n);
    memcpy(b, r, n);
    b[n] = 0;
    CHECK_EQ(fv_proxy_socks5_reply(b, n + 1, &need, &why), FV_EPROXY);
}

static void test_socks5_reply(void)
{
    static const unsigned char v4[] = {5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90};
    static const unsigned char v6[] = {5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
    static const unsigned char nm[] = {5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 80};
    static const struct {
        unsigned char b[6];
        size_t n;
        int rc;
    } bad[] = {
        {{4, 0, 0, 1}, 1, FV_EPROXY},    /* SOCKS4 */
        {{5, 1}, 2, FV_EPROXY},          /* general failure */
        {{5, 2}, 2, FV_EPROXY},          /* not allowed */
        {{5, 3}, 2, FV_ENET},            /* network unreachable */
        {{5, 4}, 2, FV_ENET},            /* host unreachable */
        {{5, 5}, 2, FV_ENET},            /* refused */
        {{5, 6}, 2, FV_ENET},            /* TTL */
        {{5, 7}, 2, FV_EPROXY},          /* command not supported */
        {{5, 8}, 2, FV_EPROXY},          /* address type */
        {{5, 9}, 2, FV_EPROXY},          /* unknown */
        {{5, 0xF2}, 2, FV_ENET},         /* Tor: onion intro failed */
        {{5, 0xF4}, 2, FV_EPROXY},       /* Tor: client auth missing */
        {{5, 0xFF}, 2, FV_EPROXY},
        {{5, 0, 1}, 3, FV_EPROXY},       /* reserved byte */
        {{5, 0, 0, 0}, 4, FV_EPROXY},    /* ATYP 0 */
        {{5, 0, 0, 2}, 4, FV_EPROXY},    /* ATYP 2 */
        {{5, 0, 0, 5}, 4, FV_EPROXY},
        {{5, 0, 0, 3, 0}, 5, FV_EPROXY}, /* empty name */
    };
    size_t need;
    const char *why;

    socks5_good(v4, sizeof v4);
    socks5_good(v6, sizeof v6);
    socks5_good(nm, sizeof nm);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = fv_proxy_socks5_reply(bad[i].b, bad[i].n, &need, &why);
        if (rc != bad[i].rc)
            fprintf(stderr, "socks5 case %zu: %d\n", i, rc);
        CHECK_EQ(rc, bad[i].rc);
        CHECK(why[0] != '\0');
    }
    /* The longest name: 255 bytes, reply of 262. */
    {
        unsigned char b[262];
        memset(b, 'a', sizeof b);
        b[0] = 5, b[1] = 0, b[2] = 0, b[3] = 3, b[4] = 255;
        socks5_good(b, sizeof b);
    }
}

static const char *http_good[] = {
    "HTTP/1.1 200 Connection established\r\n\r\n",
    "HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n",
    "HTTP/1.1 200\r\n\r\n",
    "HTTP/1.1 204 No Content\r\nX-A: 1\r\nX_b:\t2\r\n\r\n",
};

static const struct {
    const char *s;
    int rc;
    int status;
} http_bad[] = {
    {"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n", FV_EPROXY, 407},
    {"HTTP/1.0 401 Unauthorized\r\n\r\n", FV_EPROXY, 401},
    {"HTTP/1.1 403 Forbidden\r\n\r\n", FV_EPROXY, 403},
    {"HTTP/1.1 502 Bad Gateway\r\n\r\n", FV_ENET, 502},
    {"HTTP/1.1 504 Gateway Timeout\r\n\r\n", FV_ENET, 504},
    {"HTTP/1.1 500 Oops\r\n\r\n", FV_EPROXY, 500},
    {"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n", FV_EPROXY, 301},
    {"HTTP/2.0 200 OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 20 OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 2000 OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 600 OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 099 OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 2x0 OK\r\n\r\n", FV_EPROXY, 0},
    {"http/1.1 200 OK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\n\n", FV_EPROXY, 0},
    {"SSH-2.0-OpenSSH\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\r\n: empty\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\r\nX: a\x01z\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 O\x1bK\r\n\r\n", FV_EPROXY, 0},
    {"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", FV_EPROXY, 0},
};

static void test_http_reply(void)
{
    unsigned char big[FV_PROXY_HTTP_MAX + 64];
    const char *why;
    int status;
    size_t n;

    for (size_t i = 0; i < sizeof http_good / sizeof http_good[0]; i++) {
        const unsigned char *s = (const unsigned char *)http_good[i];
        n = strlen(http_good[i]);
        for (size_t k = 0; k < n; k++)
            CHECK_EQ(fv_proxy_http_reply(s, k, &status, &why), 1);
        CHECK_EQ(fv_proxy_http_reply(s, n, &status, &why), FV_OK);
        CHECK(status >= 200 && status <= 299);
    }
    for (size_t i = 0; i < sizeof http_bad / sizeof http_bad[0]; i++) {
        const unsigned char *s = (const unsigned char *)http_bad[i].s;
        int rc;
        n = strlen(http_bad[i].s);
        /* No prefix is ever accepted; the whole is refused as it should. */
        for (size_t k = 0; k < n; k++) {
            rc = fv_proxy_http_reply(s, k, &status, &why);
            CHECK(rc == 1 || rc == FV_EPROXY || rc == FV_ENET);
        }
        rc = fv_proxy_http_reply(s, n, &status, &why);
        if (rc != http_bad[i].rc || status != http_bad[i].status)
            fprintf(stderr, "http case %zu: rc %d status %d\n", i, rc, status);
        CHECK_EQ(rc, http_bad[i].rc);
        CHECK_EQ(status, http_bad[i].status);
        CHECK(why[0] != '\0');
    }
    /* More than the head: the parser is only ever given the head. */
    CHECK_EQ(fv_proxy_http_reply((const unsigned char *)"HTTP/1.1 200 OK\r\n\r\nTLS?",
                                 21, &status, &why), FV_EPROXY);
    /* Headers that never end: refused at the cap, not read for ever. */
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    memset(big + 17, 'a', sizeof big - 17);
    CHECK_EQ(fv_proxy_http_reply(big, FV_PROXY_HTTP_MAX - 1, &status, &why), 1);
    CHECK_EQ(fv_proxy_http_reply(big, FV_PROXY_HTTP_MAX, &status, &why), FV_EPROXY);
    /* A complete head just over the cap is refused too. */
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(big + 20, 'b', FV_PROXY_HTTP_MAX);
    memcpy(big + FV_PROXY_HTTP_MAX - 3, "\r\n\r\n", 4);
    CHECK_EQ(fv_proxy_http_reply(big, FV_PROXY_HTTP_MAX + 1, &status, &why), FV_EPROXY);
    memcpy(big + FV_PROXY_HTTP_MAX - 4, "\r\n\r\n", 4);
    CHECK_EQ(fv_proxy_http_reply(big, FV_PROXY_HTTP_MAX, &status, &why), FV_OK);
}

/* ---- handshakes against a scripted proxy ------------------------------------ */

struct script {
    int rc;
    char why[256];
    unsigned char sent[1024]; /* what the device sent the proxy */
    size_t nsent;
    unsigned char left[64];   /* bytes the handshake left unread */
    size_t nleft;
    int64_t ms;               /* how long the handshake took */
};

/* Runs the handshake with the proxy's replies already queued on the
 * socket; `eof`: the proxy then closes its side (else it goes silent);
 * `wake`: a readable fd, or -1. */
static void run_script(struct script *s, const char *url, const char *host,
                       const unsigned char *reply, size_t n, int eof,
                       int timeout_ms, int wake)
{
    int sv[2];
    fv_proxy p;
    const char *why;
    int64_t t0;
    ssize_t r;

    memset(s, 0, sizeof *s);
    s->rc = 99;
    if (fv_proxy_parse(&p, url, &why) != FV_OK ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        CHECK(!"script setup");
        return;
    }
    if (n > 0)
        CHECK_EQ(write(sv[1], reply, n), (ssize_t)n);
    if (eof)
        shutdown(sv[1], SHUT_WR);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    t0 = fv_tls_now_ms();
    s->rc = fv_proxy_handshake(sv[0], &p, host, "443", t0 + timeout_ms, wake,
                               s->why, sizeof s->why);
    s->ms = fv_tls_now_ms() - t0;
    r = read(sv[1], s->sent, sizeof s->sent);
    s->nsent = r > 0 ? (size_t)r : 0;
    r = read(sv[0], s->left, sizeof s->left);
    s->nleft = r > 0 ? (size_t)r : 0;
    close(sv[0]);
    close(sv[1]);
    fv_proxy_wipe(&p);
}

static void test_socks5_handshake(void)
{
    /* method: user/password; auth ok; CONNECT granted (IPv4); then the
     * server's first bytes, which the handshake must leave alone. */
    static const unsigned char good[] = {5, 2, 1, 0, 5, 0, 0, 1, 10, 0, 0, 1,
                                         1, 187, 'S', 'R', 'V'};
    static const unsigned char want[] = {
        5, 1, 2,                                          /* greeting */
        1, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', 'e', 'c', 'r', 'e', 't',
        5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r',
        'g', 1, 187};
    const size_t body = sizeof good - 3;
    struct script s;
    int wake[2];

    run_script(&s, "socks5h://alice:secret@127.0.0.1:9050", "example.org",
               good, sizeof good, 1, 2000, -1);
    CHECK_EQ(s.rc, FV_OK);
    CHECK(s.nsent == sizeof want && memcmp(s.sent, want, sizeof want) == 0);
    CHECK(s.nleft == 3 && memcmp(s.left, "SRV", 3) == 0);

    /* Every truncation: a proxy that closes fails cleanly, one that goes
     * silent fails at the deadline; neither is ever taken for success. */
    for (size_t k = 0; k < body; k++) {
        run_script(&s, "socks5h://alice:secret@127.0.0.1:9050", "example.org",
                   good, k, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "closed") != NULL);
        CHECK(strstr(s.why, "secret") == NULL);
    }
    for (size_t k = 0; k < body; k += 3) {
        run_script(&s, "socks5h://alice:secret@127.0.0.1:9050", "example.org",
                   good, k, 0, 150, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "in time") != NULL);
        CHECK(s.ms >= 140 && s.ms < 1500);
    }

    /* A cancel ends a silent proxy at once. */
    CHECK_EQ(pipe(wake), 0);
    CHECK_EQ(write(wake[1], "", 1), 1);
    run_script(&s, "socks5h://127.0.0.1:9050", "example.org", NULL, 0, 0,
               10000, wake[0]);
    CHECK_EQ(s.rc, FV_ECANCELED);
    CHECK(s.ms < 1000);
    close(wake[0]);
    close(wake[1]);

    /* Without credentials: method 0 offered alone; IPv6 literal as ATYP 4. */
    {
        static const unsigned char r[] = {5, 0, 5, 0, 0, 4, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
        run_script(&s, "socks5h://127.0.0.1:9050", "::1", r, sizeof r, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_OK);
        CHECK(s.nsent == 3 + 4 + 16 + 2 && s.sent[2] == 0 && s.sent[6] == 4);
    }
    /* socks5 (local resolution) sends an address, never the name. */
    {
        static const unsigned char r[] = {5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
        run_script(&s, "socks5://127.0.0.1:9050", "127.0.0.1", r, sizeof r, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_OK);
        CHECK(s.nsent == 3 + 10 && s.sent[6] == 1);
    }
    /* Refusals. */
    {
        static const unsigned char noauth[] = {5, 0xFF};
        static const unsigned char wantauth[] = {5, 2};
        static const unsigned char badpw[] = {5, 2, 1, 1};
        static const unsigned char down[] = {5, 2, 1, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0};
        static const unsigned char socks4[] = {0, 90};
        static const unsigned char authver[] = {5, 2, 5, 0};

        run_script(&s, "socks5h://a:b@h:1", "x", noauth, 2, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "does not accept") != NULL);
        run_script(&s, "socks5h://h:1", "x", wantauth, 2, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "wants a user name") != NULL);
        run_script(&s, "socks5h://a:wrongpw@h:1", "x", badpw, 4, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "refused the user name or password") != NULL);
        CHECK(strstr(s.why, "wrongpw") == NULL);
        run_script(&s, "socks5h://a:b@h:1", "x", down, sizeof down, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_ENET);
        CHECK(strstr(s.why, "connection refused") != NULL);
        run_script(&s, "socks5h://h:1", "x", socks4, 2, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        run_script(&s, "socks5h://a:b@h:1", "x", authver, 4, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
    }
}

static void test_http_handshake(void)
{
    static const char good[] =
        "HTTP/1.0 200 Connection established\r\nProxy-agent: t\r\n\r\nSRV";
    const size_t head = sizeof good - 1 - 3;
    struct script s;
    int wake[2];

    run_script(&s, "http://bob:s3cret@127.0.0.1:3128", "example.org",
               (const unsigned char *)good, sizeof good - 1, 1, 2000, -1);
    CHECK_EQ(s.rc, FV_OK);
    s.sent[s.nsent < sizeof s.sent ? s.nsent : sizeof s.sent - 1] = 0;
    CHECK(strcmp((char *)s.sent,
                 "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n"
                 "Proxy-Authorization: Basic Ym9iOnMzY3JldA==\r\n\r\n") == 0);
    CHECK(s.nleft == 3 && memcmp(s.left, "SRV", 3) == 0);

    for (size_t k = 0; k < head; k++) {
        run_script(&s, "http://127.0.0.1:3128", "example.org",
                   (const unsigned char *)good, k, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
    }
    run_script(&s, "http://127.0.0.1:3128", "example.org",
               (const unsigned char *)good, 20, 0, 150, -1);
    CHECK_EQ(s.rc, FV_EPROXY);
    CHECK(strstr(s.why, "in time") != NULL);

    CHECK_EQ(pipe(wake), 0);
    CHECK_EQ(write(wake[1], "", 1), 1);
    run_script(&s, "http://127.0.0.1:3128", "example.org", NULL, 0, 0, 10000,
               wake[0]);
    CHECK_EQ(s.rc, FV_ECANCELED);
    CHECK(s.ms < 1000);
    close(wake[0]);
    close(wake[1]);

    /* IPv6 literal in brackets; no credentials: no Authorization line. */
    run_script(&s, "http://[::1]:3128", "::1", (const unsigned char *)good,
               head, 1, 2000, -1);
    CHECK_EQ(s.rc, FV_OK);
    s.sent[s.nsent < sizeof s.sent ? s.nsent : sizeof s.sent - 1] = 0;
    CHECK(strcmp((char *)s.sent,
                 "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n") == 0);

    {
        static const char deny[] = "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
        run_script(&s, "http://bob:nope@127.0.0.1:3128", "example.org",
                   (const unsigned char *)deny, sizeof deny - 1, 1, 2000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "HTTP 407") != NULL);
        CHECK(strstr(s.why, "nope") == NULL);
    }
    /* A flood with no end of headers is cut at the cap. */
    {
        static unsigned char flood[FV_PROXY_HTTP_MAX + 100];
        memcpy(flood, "HTTP/1.1 200 OK\r\n", 17);
        memset(flood + 17, 'x', sizeof flood - 17);
        run_script(&s, "http://127.0.0.1:3128", "example.org", flood,
                   sizeof flood, 1, 5000, -1);
        CHECK_EQ(s.rc, FV_EPROXY);
        CHECK(strstr(s.why, "too long") != NULL);
    }
}

int main(void)
{
    test_parse_good();
    test_parse_bad();
    test_socks5_reply();
    test_http_reply();
    test_socks5_handshake();
    test_http_handshake();
    return check_summary("test_proxy");
}
