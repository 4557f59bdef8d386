/* test_desk_http.c - what the desk reads from a request (web/desk_parse.c):
 * form bodies and Range headers, fed every prefix, every byte at every
 * place, and every one- and two-byte escape, against an independent
 * UTF-8 check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "desk.h"

/* The reference: decode each sequence to its code point and check its
 * range (a different method from desk_parse.c's byte patterns). */
static int utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned long cp, min;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c >> 5) == 6) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c >> 4) == 14) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c >> 3) == 30) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] >> 6) != 2)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static void form_value(const char *body, const char *key, const char *want)
{
    char *got = desk_form(body, strlen(body), key);
    if (want == NULL) {
        CHECK(got == NULL);
    } else {
        CHECK(got != NULL && strcmp(got, want) == 0);
    }
    desk_free_text(got);
}

static void test_forms(void)
{
    const char *b = "id=abc&text=%E2%82%AC+x%2b&empty=&k&id=second&%69d=no";
    form_value(b, "id", "abc");
    form_value(b, "text", "\xe2\x82\xac x+");
    form_value(b, "empty", "");
    form_value(b, "k", NULL);
    form_value(b, "missing", NULL);
    form_value(b, "i", NULL);
    form_value("", "id", NULL);
    form_value("=", "", "");
    form_value("a=%", "a", NULL);
    form_value("a=%4", "a", NULL);
    form_value("a=%4g", "a", NULL);
    form_value("a=%00", "a", NULL);
    form_value("a=x%00y", "a", NULL);
    form_value("a=%c0%80", "a", NULL);         /* overlong NUL */
    form_value("a=%e0%80%80", "a", NULL);      /* overlong */
    form_value("a=%ed%a0%80", "a", NULL);      /* a surrogate */
    form_value("a=%f4%90%80%80", "a", NULL);   /* past U+10FFFF */
    form_value("a=%f0%9f%98%80", "a", "\xf0\x9f\x98\x80");
    form_value("a=\xed\x95\x9c", "a", "\xed\x95\x9c"); /* raw UTF-8 too */
    form_value("a=\xff", "a", NULL);

    /* Every one- and two-byte escape: accepted exactly when the bytes are
     * valid UTF-8 without NUL. */
    for (unsigned x = 0; x < 256; x++)
        for (unsigned y = 0; y < 257; y++) {
            char body[32];
            unsigned char raw[2] = {(unsigned char)x, (unsigned char)y};
            size_t n = y < 256 ? 2 : 1;
            if (y < 256)
                snprintf(body, sizeof body, "v=%%%02X%%%02x", x, y);
            else
                snprintf(body, sizeof body, "v=%%%02x", x);
            char *got = desk_form(body, strlen(body), "v");
            int ok = utf8_ok(raw, n);
            CHECK_EQ(got != NULL, ok);
            if (got && ok)
                CHECK(strlen(got) == n && memcmp(got, raw, n) == 0);
            desk_free_text(got);
        }
    /* Every three-byte sequence starting E0..EF with a continuation range. */
    for (unsigned x = 0xe0; x <= 0xef; x++)
        for (unsigned y = 0x70; y <= 0xc0; y++) {
            char body[40];
            unsigned char raw[3] = {(unsigned char)x, (unsigned char)y, 0x80};
            snprintf(body, sizeof body, "v=%%%02x%%%02x%%80", x, y);
            char *got = desk_form(body, strlen(body), "v");
            CHECK_EQ(got != NULL, utf8_ok(raw, 3));
            desk_free_text(got);
        }

    /* Every prefix, and every byte at every place, of a real body: never
     * more than what was given, and only valid text. */
    const char *tmpl = "id=0123abcd&text=%ED%95%9C%EA%B8%80+%3Cscript%3E&state=reviewed";
    size_t tl = strlen(tmpl);
    char *buf = malloc(tl + 1);
    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    for (size_t n = 0; n <= tl; n++) {
        memcpy(buf, tmpl, n);
        for (int k = 0; k < 3; k++) {
            const char *key = k == 0 ? "id" : k == 1 ? "text" : "state";
            char *got = desk_form(buf, n, key);
            if (got) {
                CHECK(strlen(got) <= n);
                CHECK(utf8_ok((const unsigned char *)got, strlen(got)));
            }
            desk_free_text(got);
        }
    }
    for (size_t i = 0; i < tl; i++)
        for (unsigned c = 0; c < 256; c++) {
            memcpy(buf, tmpl, tl);
            buf[i] = (char)c;
            char *got = desk_form(buf, tl, "text");
            if (got) {
                CHECK(strlen(got) <= tl);
                CHECK(utf8_ok((const unsigned char *)got, strlen(got)));
            }
            desk_free_text(got);
        }
    free(buf);
}

static void range_is(const char *h, uint64_t size, int ok, uint64_t start,
                     uint64_t len)
{
    uint64_t s = 12345, l = 67890;
    int rc = desk_range(h, size, &s, &l);
    CHECK_EQ(rc, ok ? 0 : -1);
    if (ok && rc == 0) {
        CHECK_EQ(s, start);
        CHECK_EQ(l, len);
    }
}

static void test_ranges(void)
{
    range_is("bytes=0-99", 1000, 1, 0, 100);
    range_is("bytes=0-0", 1000, 1, 0, 1);
    range_is("bytes=999-999", 1000, 1, 999, 1);
    range_is("bytes=500-", 1000, 1, 500, 500);
    range_is("bytes=990-5000", 1000, 1, 990, 10);
    range_is("bytes=990-18446744073709551615", 1000, 1, 990, 10);
    range_is("bytes=990-99999999999999999999999", 1000, 1, 990, 10);
    range_is("bytes=-10", 1000, 1, 990, 10);
    range_is("bytes=-5000", 1000, 1, 0, 1000);
    range_is("bytes=1000-", 1000, 0, 0, 0);
    range_is("bytes=0-", 0, 0, 0, 0);
    range_is("bytes=-1", 0, 0, 0, 0);
    range_is("bytes=-0", 1000, 0, 0, 0);
    range_is("bytes=5-2", 1000, 0, 0, 0);
    range_is("bytes=0-1,5-6", 1000, 0, 0, 0);
    range_is("bytes= 0-1", 1000, 0, 0, 0);
    range_is("bytes=+0-1", 1000, 0, 0, 0);
    range_is("bytes=--1", 1000, 0, 0, 0);
    range_is("bytes=0--1", 1000, 0, 0, 0);
    range_is("bytes=0-1 ", 1000, 0, 0, 0);
    range_is("bytes=0x10-", 1000, 0, 0, 0);
    range_is("bytes=", 1000, 0, 0, 0);
    range_is("bytes=-", 1000, 0, 0, 0);
    range_is("items=0-1", 1000, 0, 0, 0);
    range_is("BYTES=0-1", 1000, 0, 0, 0);
    range_is("bytes=18446744073709551616-", 1000, 0, 0, 0);
    range_is("bytes=18446744073709551615-", UINT64_MAX, 0, 0, 0);
    range_is("bytes=18446744073709551614-", UINT64_MAX, 1, UINT64_MAX - 1, 1);
    range_is("bytes=0-", UINT64_MAX, 1, 0, UINT64_MAX);

    /* Every prefix and every byte at every place: a range, when one is
     * given, lies inside the file and is not empty. */
    const char *tmpl = "bytes=262140-524300";
    size_t tl = strlen(tmpl);
    char buf[64];
    for (size_t n = 0; n <= tl; n++) {
        memcpy(buf, tmpl, n);
        buf[n] = '\0';
        uint64_t s, l;
        if (desk_range(buf, 600000, &s, &l) == 0)
            CHECK(l > 0 && s < 600000 && l <= 600000 - s);
    }
    for (size_t i = 0; i < tl; i++)
        for (unsigned c = 1; c < 256; c++) {
            memcpy(buf, tmpl, tl + 1);
            buf[i] = (char)c;
            for (uint64_t size = 0; size < 700000; size += 300000) {
                uint64_t s, l;
                if (desk_range(buf, size, &s, &l) == 0)
                    CHECK(l > 0 && s < size && l <= size - s);
            }
        }
}

int main(void)
{
    test_forms();
    test_ranges();
    return check_summary("test_desk_http");
}
