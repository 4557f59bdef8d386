/*
 * textparse.c - the hexadecimal codec over libsodium's constant-time
 * sodium_bin2hex/sodium_hex2bin, and the host:port parser.
 */
#include "textparse.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "fieldvault.h"

int fv_hex_encode(char *out, size_t out_cap, const unsigned char *bin,
                  size_t n)
{
    if (!out || (n && !bin) || n > (SIZE_MAX - 1) / 2 || out_cap < 2 * n + 1)
        return FV_EINVAL;
    sodium_bin2hex(out, out_cap, bin, n);
    return FV_OK;
}

int fv_hex_decode(unsigned char *out, size_t n, const char *hex,
                  size_t hex_len)
{
    size_t got = 0;
    const char *end = NULL;

    if (!out || (hex_len && !hex) || n > SIZE_MAX / 2 || hex_len != 2 * n)
        goto bad;
    if (n == 0)
        return FV_OK;
    /* No ignore set: a separator stops the decoder, which the length
     * checks below then refuse. */
    if (sodium_hex2bin(out, n, hex, hex_len, NULL, &got, &end) != 0 ||
        got != n || end != hex + hex_len)
        goto bad;
    return FV_OK;
bad:
    if (out && n)
        sodium_memzero(out, n);
    return FV_EINVAL;
}

int fv_hex_digit(int c)
{
    char s[2] = {(char)c, '0'};
    unsigned char b;
    if (fv_hex_decode(&b, 1, s, 2) != FV_OK)
        return -1;
    return b >> 4;
}

static int host_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("[]/@:\\", c);
}

int fv_addr_parse(const char *s, int flags,
                  char host[FV_ADDR_HOST_MAX + 1], char port[6],
                  const char **why)
{
    const char *dummy, *colon, *h;
    size_t hl, pl, i;
    unsigned long v = 0;

    if (!why)
        why = &dummy;
    *why = "";
    if (!s || !host || !port) {
        *why = "no address";
        return FV_EINVAL;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        unsigned char a6[16];
        if (!rb || rb[1] != ':') {
            *why = "an IPv6 address is written [IPV6]:PORT";
            return FV_EINVAL;
        }
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
        if (hl == 0 || hl > FV_ADDR_HOST_MAX) {
            *why = "the IPv6 address is malformed";
            return FV_EINVAL;
        }
        memcpy(host, h, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, a6) != 1) {
            host[0] = '\0';
            *why = "the IPv6 address is malformed";
            return FV_EINVAL;
        }
    } else {
        colon = strchr(s, ':');
        if (!colon) {
            *why = "the address has no :PORT";
            return FV_EINVAL;
        }
        if (strchr(colon + 1, ':')) {
            *why = "an IPv6 address needs brackets: [IPV6]:PORT";
            return FV_EINVAL;
        }
        hl = (size_t)(colon - s);
        if (hl == 0 || hl > FV_ADDR_HOST_MAX) {
            *why = "the host is empty or longer than 255 bytes";
            return FV_EINVAL;
        }
        for (i = 0; i < hl; i++)
            if (!host_char_ok((unsigned char)s[i])) {
                *why = "the host is not a name or an address";
                return FV_EINVAL;
            }
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    pl = strlen(colon + 1);
    if (pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") != pl) {
        host[0] = '\0';
        *why = "the port is not a number from 1 to 65535";
        return FV_EINVAL;
    }
    for (i = 0; i < pl; i++)
        v = v * 10 + (unsigned long)(colon[1 + i] - '0');
    if (v > 65535 || (v == 0 && !(flags & FV_ADDR_PORT0))) {
        host[0] = '\0';
        *why = "the port is not a number from 1 to 65535";
        return FV_EINVAL;
    }
    memcpy(port, colon + 1, pl + 1);
    return FV_OK;
}
