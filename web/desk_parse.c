/* desk_parse.c - what the desk reads from a request's bytes (desk.h): form
 * bodies and Range headers. No I/O, no state: tests/test_desk_http.c feeds
 * them every prefix and every byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "desk.h"
#include "textparse.h"

/* ---- forms ---------------------------------------------------------------- */

/* Percent-decodes s[0..n) ('+' is a space) into a new string; NULL on a
 * bad escape, a NUL byte or invalid UTF-8. */
static char *form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t k = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            unsigned char b;
            if (i + 2 >= n || fv_hex_decode(&b, 1, s + i + 1, 2) != FV_OK)
                goto bad;
            ch = b;
            i += 2;
        }
        if (ch == 0)
            goto bad;
        out[k++] = (char)ch;
    }
    out[k] = '\0';
    /* UTF-8 only: everything a record holds is text. */
    if (!fv_utf8_valid(out, k))
        goto bad;
    return out;
bad:
    fv_wipe(out, n + 1);
    free(out);
    return NULL;
}

char *desk_form(const char *body, size_t len, const char *key)
{
    size_t klen = strlen(key), i = 0;
    while (body && i < len) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - body) : len;
        const char *eq = memchr(body + i, '=', end - i);
        if (eq && (size_t)(eq - (body + i)) == klen &&
            memcmp(body + i, key, klen) == 0)
            return form_decode(eq + 1, (size_t)(body + end - (eq + 1)));
        i = end + 1;
    }
    return NULL;
}

void desk_free_text(char *s)
{
    if (s) {
        fv_wipe(s, strlen(s));
        free(s);
    }
}

/* ---- ranges --------------------------------------------------------------- */

/* Decimal digits only (strtoull would take a sign or spaces); *end after
 * them. -1 without a digit or past UINT64_MAX. */
static int parse_u64(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        p++;
    }
    if (p == s)
        return -1;
    *end = p;
    *out = v;
    return 0;
}

/* "bytes=A-B", "bytes=A-", "bytes=-N" of a `size`-byte file into
 * [*start, *start + *len): one range only. 0, or -1 when not
 * satisfiable (or not understood: a player asks nothing else). */
int desk_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    uint64_t a, b;
    const char *end;
    if (strncmp(h, "bytes=", 6) != 0)
        return -1;
    h += 6;
    if (*h == '-') {
        if (parse_u64(h + 1, &end, &b) != 0 || *end || b == 0 || size == 0)
            return -1;
        if (b > size)
            b = size;
        *start = size - b;
        *len = b;
        return 0;
    }
    if (parse_u64(h, &end, &a) != 0 || *end != '-')
        return -1;
    h = end + 1;
    if (*h) {
        /* A last byte past UINT64_MAX is as good as "to the end". */
        if (parse_u64(h, &end, &b) != 0) {
            const char *q = h;
            while (*q >= '0' && *q <= '9')
                q++;
            if (q == h || *q)
                return -1;
            b = UINT64_MAX;
        } else if (*end || b < a) {
            return -1;
        }
    } else {
        b = UINT64_MAX;
    }
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return 0;
}
