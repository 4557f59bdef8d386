/*
 * textparse.h - the library's one hexadecimal codec and one host:port
 * parser (internal; the UTF-8 checks are in codec.h). Every hex string,
 * every server, proxy and listen address in core/, sync/, server/, cli/ and
 * web/ goes through these, so that the client and the server read an
 * address the same way.
 */
#ifndef FV_TEXTPARSE_H
#define FV_TEXTPARSE_H

#include <stddef.h>

/* Lowercase hex of bin[0..n) and a NUL into out, which holds 2n+1 bytes
 * (out_cap). FV_OK, or FV_EINVAL (nothing written) if it does not fit. */
int fv_hex_encode(char *out, size_t out_cap, const unsigned char *bin,
                  size_t n);

/* Decodes exactly 2n hex digits (either case) from hex[0..hex_len) into
 * out[0..n). No separators, no prefix, no odd digit, nothing after.
 * FV_OK, or FV_EINVAL with out wiped. */
int fv_hex_decode(unsigned char *out, size_t n, const char *hex,
                  size_t hex_len);

/* The value (0..15) of one hex digit, or -1. */
int fv_hex_digit(int c);

#define FV_ADDR_HOST_MAX 255 /* bytes of a host, without the brackets */
#define FV_ADDR_PORT0 1      /* fv_addr_parse: accept port 0 (a listener) */

/* Splits "HOST:PORT" or "[IPV6]:PORT" into host (NUL-terminated, brackets
 * removed, at most FV_ADDR_HOST_MAX bytes) and port (1 to 5 decimal digits,
 * 1..65535; 0 as well with FV_ADDR_PORT0). A bare IPv6 address ("::1",
 * "::1:443") is refused: it needs brackets. The host is printable ASCII
 * without spaces, '[', ']', '/', '@' or ':' (inside brackets: a valid
 * IPv6 address). On FV_EINVAL, *why (if why is not NULL) points at a fixed
 * message that names no byte of s. */
int fv_addr_parse(const char *s, int flags,
                  char host[FV_ADDR_HOST_MAX + 1], char port[6],
                  const char **why);

#endif
