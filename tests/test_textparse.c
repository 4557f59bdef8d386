/* test_textparse.c - the one hex codec, the one UTF-8 decoder and the one
 * host:port parser (core/textparse.h, core/codec.h) that the client, the
 * server, the CLI and the desk share. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "check.h"
#include "codec.h"
#include "fieldvault.h"
#include "textparse.h"

static void test_hex(void)
{
    unsigned char bin[64], back[64];
    char hex[129];

    for (size_t n = 0; n <= sizeof bin; n++) {
        randombytes_buf(bin, n);
        CHECK_EQ(fv_hex_encode(hex, 2 * n + 1, bin, n), FV_OK);
        CHECK_EQ(strlen(hex), 2 * n);
        CHECK_EQ(strspn(hex, "0123456789abcdef"), 2 * n);
        memset(back, 0xaa, sizeof back);
        CHECK_EQ(fv_hex_decode(back, n, hex, 2 * n), FV_OK);
        CHECK(n == 0 || memcmp(back, bin, n) == 0);
        /* One byte short of room: refused, nothing written. */
        if (n) {
            memset(hex, 'x', sizeof hex);
            CHECK_EQ(fv_hex_encode(hex, 2 * n, bin, n), FV_EINVAL);
            CHECK(hex[0] == 'x');
        }
    }
    CHECK_EQ(fv_hex_encode(hex, sizeof hex, (const unsigned char *)"\x00\xff\x0a", 3), FV_OK);
    CHECK(strcmp(hex, "00ff0a") == 0);
    CHECK_EQ(fv_hex_decode(back, 3, "00FF0A", 6), FV_OK); /* either case */
    CHECK(memcmp(back, "\x00\xff\x0a", 3) == 0);

    /* Strict: exact length, no odd digit, no separator, no junk. */
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"00ff0", 3}, {"00ff0a0", 3}, {"00ff0a00", 3}, {"00:ff:0a", 3},
        {"00 ff 0a", 3}, {"0xff0a", 3}, {"00fg0a", 3}, {"00ff0 ", 3},
        {"-0ff0a", 3}, {"+0ff0a", 3}, {"", 1}, {"0", 1}, {"g0", 1},
        {"0g", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(back, 0xaa, sizeof back);
        CHECK_EQ(fv_hex_decode(back, bad[i].n, bad[i].s, strlen(bad[i].s)), FV_EINVAL);
        CHECK(back[0] == 0); /* wiped */
    }
    /* A NUL inside the counted length is not a digit. */
    CHECK_EQ(fv_hex_decode(back, 2, "00\0000", 4), FV_EINVAL);
    CHECK_EQ(fv_hex_decode(NULL, 1, "00", 2), FV_EINVAL);
    CHECK_EQ(fv_hex_decode(back, 1, NULL, 2), FV_EINVAL);

    for (int c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9' ? c - '0'
                 : c >= 'a' && c <= 'f' ? c - 'a' + 10
                 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        CHECK_EQ(fv_hex_digit(c), want);
    }
}

static void test_utf8_seq(void)
{
    static const struct {
        const char *s;
        size_t len;
        uint32_t cp;
    } good[] = {
        {"A", 1, 0x41}, {"\x7f", 1, 0x7f}, {"\xc2\x80", 2, 0x80},
        {"\xdf\xbf", 2, 0x7ff}, {"\xe0\xa0\x80", 3, 0x800},
        {"\xed\x9f\xbf", 3, 0xd7ff}, {"\xee\x80\x80", 3, 0xe000},
        {"\xef\xbf\xbd", 3, 0xfffd}, {"\xf0\x90\x80\x80", 4, 0x10000},
        {"\xf4\x8f\xbf\xbf", 4, 0x10ffff},
    };
    static const char *bad[] = {
        "\x80", "\xbf", "\xc0\x80", "\xc1\xbf",    /* continuation, overlong */
        "\xe0\x80\x80", "\xe0\x9f\xbf",            /* overlong 3 */
        "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf",    /* overlong 4 */
        "\xed\xa0\x80", "\xed\xbf\xbf",            /* surrogates */
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",    /* past U+10FFFF */
        "\xfe", "\xff", "\xc2" "A", "\xe2\x82" "A",      /* bad continuation */
    };
    uint32_t cp;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cp = 0;
        CHECK_EQ(fv_utf8_seq((const unsigned char *)good[i].s, good[i].len, &cp),
                 good[i].len);
        CHECK_EQ(cp, good[i].cp);
        CHECK(fv_utf8_valid(good[i].s, good[i].len));
        /* Every truncation of a multi-byte sequence is refused. */
        for (size_t k = 1; k < good[i].len; k++) {
            CHECK_EQ(fv_utf8_seq((const unsigned char *)good[i].s, k, &cp), 0);
            CHECK(!fv_utf8_valid(good[i].s, k));
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(fv_utf8_seq((const unsigned char *)bad[i], strlen(bad[i]), &cp), 0);
        CHECK(!fv_utf8_valid(bad[i], strlen(bad[i])));
    }
    CHECK_EQ(fv_utf8_seq((const unsigned char *)"", 0, &cp), 0);
    /* The sequence is one character: what follows is not read. */
    CHECK_EQ(fv_utf8_seq((const unsigned char *)"\xc3\xa9\xff", 3, NULL), 2);

    /* fv_utf8_valid is fv_utf8_seq over the whole input, for every
     * two-byte string and every one of a sample of longer ones. */
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            unsigned char s[2] = {(unsigned char)a, (unsigned char)b};
            size_t k = fv_utf8_seq(s, 2, NULL);
            int want = k == 2 || (k == 1 && fv_utf8_seq(s + 1, 1, NULL) == 1);
            if (fv_utf8_valid((const char *)s, 2) != want)
                CHECK(!"fv_utf8_valid and fv_utf8_seq disagree");
        }
}

static void test_addr(void)
{
    static const struct {
        const char *s;
        int flags;
        const char *host, *port; /* NULL host: refused */
    } cases[] = {
        {"127.0.0.1:443", 0, "127.0.0.1", "443"},
        {"vault.example.org:8443", 0, "vault.example.org", "8443"},
        {"[::1]:443", 0, "::1", "443"},
        {"[2001:db8::7]:1", 0, "2001:db8::7", "1"},
        {"h:65535", 0, "h", "65535"},
        {"h:1", 0, "h", "1"},
        {"h:0", FV_ADDR_PORT0, "h", "0"},  /* a listener's free port */
        {"h:0", 0, NULL, NULL},
        {"h:99999", 0, NULL, NULL},
        {"h:99999", FV_ADDR_PORT0, NULL, NULL},
        {"h:65536", 0, NULL, NULL},
        {"h:-1", 0, NULL, NULL},
        {"h:+1", 0, NULL, NULL},
        {"h: 1", 0, NULL, NULL},
        {"h:123456", 0, NULL, NULL},
        {"h:443x", 0, NULL, NULL},
        {"h:443 ", 0, NULL, NULL},
        {"host:", 0, NULL, NULL},
        {":443", 0, NULL, NULL},
        {"host", 0, NULL, NULL},
        {"", 0, NULL, NULL},
        {"::1", 0, NULL, NULL},            /* bare IPv6: brackets needed */
        {"::1", FV_ADDR_PORT0, NULL, NULL},
        {"::1:443", 0, NULL, NULL},
        {"2001:db8::7:443", 0, NULL, NULL},
        {"[::1]", 0, NULL, NULL},
        {"[::1]:", 0, NULL, NULL},
        {"[::1]443", 0, NULL, NULL},
        {"[::1:443", 0, NULL, NULL},
        {"[]:443", 0, NULL, NULL},
        {"[vault.example.org]:443", 0, NULL, NULL},
        {"[::1]:443:1", 0, NULL, NULL},
        {"ho st:443", 0, NULL, NULL},
        {"host/x:443", 0, NULL, NULL},
        {"user@host:443", 0, NULL, NULL},
        {"h\x01:443", 0, NULL, NULL},
        {"h\xc3\xa9:443", 0, NULL, NULL},
    };
    char host[FV_ADDR_HOST_MAX + 1], port[6], big[600];
    const char *why;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = fv_addr_parse(cases[i].s, cases[i].flags, host, port, &why);
        if (cases[i].host) {
            if (rc != FV_OK)
                fprintf(stderr, "refused: %s (%s)\n", cases[i].s, why);
            CHECK_EQ(rc, FV_OK);
            CHECK(rc != FV_OK || strcmp(host, cases[i].host) == 0);
            CHECK(rc != FV_OK || strcmp(port, cases[i].port) == 0);
        } else {
            if (rc != FV_EINVAL)
                fprintf(stderr, "accepted: %s\n", cases[i].s);
            CHECK_EQ(rc, FV_EINVAL);
            CHECK(why != NULL && why[0] != '\0' && !strchr(why, '\n'));
        }
    }
    /* A host of 255 bytes is the longest. */
    memset(big, 'a', 255);
    snprintf(big + 255, sizeof big - 255, ":443");
    CHECK_EQ(fv_addr_parse(big, 0, host, port, &why), FV_OK);
    CHECK_EQ(strlen(host), 255);
    memset(big, 'a', 256);
    snprintf(big + 256, sizeof big - 256, ":443");
    CHECK_EQ(fv_addr_parse(big, 0, host, port, &why), FV_EINVAL);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(fv_addr_parse(big, 0, host, port, &why), FV_EINVAL);
    CHECK_EQ(fv_addr_parse(NULL, 0, host, port, &why), FV_EINVAL);
    CHECK_EQ(fv_addr_parse("h:1", 0, host, port, NULL), FV_OK); /* why optional */

    /* Every prefix of a good address is either refused or a shorter port
     * of the same host: never a different split. */
    static const char *const good[] = {"[2001:db8::7]:8443", "vault.example.org:8443"};
    for (size_t g = 0; g < 2; g++) {
        size_t n = strlen(good[g]);
        for (size_t k = 0; k <= n; k++) {
            char pre[64];
            memcpy(pre, good[g], k);
            pre[k] = '\0';
            if (fv_addr_parse(pre, 0, host, port, &why) == FV_OK)
                CHECK(strncmp(port, "8443", strlen(port)) == 0 &&
                      (strcmp(host, "2001:db8::7") == 0 ||
                       strcmp(host, "vault.example.org") == 0));
        }
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_hex();
    test_utf8_seq();
    test_addr();
    return check_summary("test_textparse");
}
