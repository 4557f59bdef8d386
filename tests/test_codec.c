/* test_codec.c - the canonical CBOR writer and strict reader (core/codec.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"
#include "fieldvault.h"

/* Hex to bytes into out (capacity cap); returns the byte count. */
static size_t unhex(unsigned char *out, size_t cap, const char *hex)
{
    size_t n = 0;
    unsigned v;

    while (hex[0] != '\0' && hex[1] != '\0' && n < cap) {
        if (sscanf(hex, "%2x", &v) != 1)
            break;
        out[n++] = (unsigned char)v;
        hex += 2;
    }
    return n;
}

/* Finishes e and checks the output equals hex. */
static int enc_is(fv_enc *e, const char *hex)
{
    unsigned char want[256], *got = NULL;
    size_t wn = unhex(want, sizeof want, hex), gn = 0;
    int ok = fv_enc_finish(e, &got, &gn) == FV_OK && gn == wn &&
             memcmp(got, want, wn) == 0;

    if (!ok)
        fprintf(stderr, "  encoding differs from %s\n", hex);
    fv_enc_free_buf(got, gn);
    return ok;
}

static void dec_hex(fv_dec *d, unsigned char *buf, size_t cap, const char *hex)
{
    fv_dec_init(d, buf, unhex(buf, cap, hex));
}

/* ---- writer: exact bytes ---------------------------------------------- */

static void test_rfc8949_vectors(void)
{
    static const struct { uint64_t v; const char *hex; } u[] = {
        {0, "00"}, {1, "01"}, {10, "0a"}, {23, "17"}, {24, "1818"},
        {25, "1819"}, {100, "1864"}, {1000, "1903e8"},
        {1000000, "1a000f4240"}, {1000000000000, "1b000000e8d4a51000"},
        {UINT64_MAX, "1bffffffffffffffff"},
    };
    static const struct { int64_t v; const char *hex; } s[] = {
        {-1, "20"}, {-10, "29"}, {-100, "3863"}, {-1000, "3903e7"},
    };
    static const struct { const char *s; const char *hex; } t[] = {
        {"", "60"}, {"a", "6161"}, {"IETF", "6449455446"},
        {"\"\\", "62225c"}, {"\xc3\xbc", "62c3bc"}, {"\xe6\xb0\xb4", "63e6b0b4"},
        {"\xf0\x90\x85\x91", "64f0908591"},
    };
    fv_enc e;
    size_t i;

    for (i = 0; i < sizeof u / sizeof u[0]; i++) {
        fv_enc_init(&e);
        fv_enc_uint(&e, u[i].v);
        CHECK(enc_is(&e, u[i].hex));
    }
    for (i = 0; i < sizeof s / sizeof s[0]; i++) {
        fv_enc_init(&e);
        fv_enc_int(&e, s[i].v);
        CHECK(enc_is(&e, s[i].hex));
    }
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        fv_enc_init(&e);
        fv_enc_cstr(&e, t[i].s);
        CHECK(enc_is(&e, t[i].hex));
    }

    fv_enc_init(&e);
    fv_enc_bool(&e, 0);
    fv_enc_bool(&e, 7);
    CHECK(enc_is(&e, "f4f5"));

    fv_enc_init(&e);
    fv_enc_tag(&e, 1);
    fv_enc_uint(&e, 1363896240);
    CHECK(enc_is(&e, "c11a514b67b0"));

    fv_enc_init(&e);
    fv_enc_tag(&e, 23);
    fv_enc_bytes(&e, "\x01\x02\x03\x04", 4);
    CHECK(enc_is(&e, "d74401020304"));

    fv_enc_init(&e);
    fv_enc_tag(&e, 24);
    fv_enc_bytes(&e, "dIETF", 5);
    CHECK(enc_is(&e, "d818456449455446"));

    fv_enc_init(&e);
    fv_enc_tag(&e, 32);
    fv_enc_cstr(&e, "http://www.example.com");
    CHECK(enc_is(&e, "d82076687474703a2f2f7777772e6578616d706c652e636f6d"));

    fv_enc_init(&e);
    fv_enc_bytes(&e, NULL, 0);
    fv_enc_bytes(&e, "\x01\x02\x03\x04", 4);
    CHECK(enc_is(&e, "404401020304"));

    fv_enc_init(&e); /* [] [1, [2, 3], [4, 5]] */
    fv_enc_array(&e, 0);
    fv_enc_array(&e, 3);
    fv_enc_uint(&e, 1);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, 2);
    fv_enc_uint(&e, 3);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, 4);
    fv_enc_uint(&e, 5);
    CHECK(enc_is(&e, "808301820203820405"));

    fv_enc_init(&e); /* [1, 2, ..., 25] */
    fv_enc_array(&e, 25);
    for (i = 1; i <= 25; i++)
        fv_enc_uint(&e, i);
    CHECK(enc_is(&e, "98190102030405060708090a0b0c0d0e0f101112131415161718181819"));

    fv_enc_init(&e); /* {} {1: 2, 3: 4} {"a": 1, "b": [2, 3]} */
    fv_enc_map(&e, 0);
    fv_enc_map(&e, 2);
    fv_enc_uint(&e, 1);
    fv_enc_uint(&e, 2);
    fv_enc_uint(&e, 3);
    fv_enc_uint(&e, 4);
    fv_enc_map(&e, 2);
    fv_enc_cstr(&e, "a");
    fv_enc_uint(&e, 1);
    fv_enc_cstr(&e, "b");
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, 2);
    fv_enc_uint(&e, 3);
    CHECK(enc_is(&e, "a0a201020304a26161016162820203"));

    fv_enc_init(&e); /* ["a", {"b": "c"}] */
    fv_enc_array(&e, 2);
    fv_enc_cstr(&e, "a");
    fv_enc_map(&e, 1);
    fv_enc_cstr(&e, "b");
    fv_enc_cstr(&e, "c");
    fv_enc_raw(&e, "\xf5", 1);
    CHECK(enc_is(&e, "826161a161626163f5"));

    /* One-byte tags 6..20: libcbor's stream decoder refuses them, ours not. */
    for (i = 0; i < 24; i++) {
        unsigned char *buf = NULL;
        size_t n = 0;
        uint64_t tag = 99;
        fv_dec d;

        fv_enc_init(&e);
        fv_enc_tag(&e, i);
        fv_enc_uint(&e, 0);
        CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
        CHECK(n == 2 && buf[0] == 0xc0 + i && buf[1] == 0);
        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_tag(&d, &tag), FV_OK);
        CHECK_EQ(tag, i);
        CHECK_EQ(fv_dec_uint(&d, &tag), FV_OK);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);
        fv_enc_free_buf(buf, n);
    }
}

/* ---- round trips of every writer function ------------------------------ */

static void test_int_round_trips(void)
{
    static const uint64_t u[] = {0, 23, 24, 255, 256, 65535, 65536,
                                 UINT32_MAX, (uint64_t)UINT32_MAX + 1,
                                 UINT64_MAX - 1, UINT64_MAX};
    static const size_t usize[] = {1, 1, 2, 2, 3, 3, 5, 5, 9, 9, 9};
    static const int64_t s[] = {0, 1, -1, -24, -25, -256, -257, -65536,
                                -65537, INT32_MIN, INT64_MAX, INT64_MIN,
                                INT64_MIN + 1};
    static const size_t ssize[] = {1, 1, 1, 1, 2, 2, 3, 3, 5, 5, 9, 9, 9};
    size_t i, n;
    unsigned char *buf;
    fv_enc e;
    fv_dec d;
    uint64_t uv;
    int64_t sv;

    for (i = 0; i < sizeof u / sizeof u[0]; i++) {
        fv_enc_init(&e);
        fv_enc_uint(&e, u[i]);
        CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
        CHECK_EQ(n, usize[i]);
        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_peek(&d), FV_CBOR_UINT);
        CHECK_EQ(fv_dec_uint(&d, &uv), FV_OK);
        CHECK(uv == u[i]);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);
        fv_dec_init(&d, buf, n); /* as int64: only if it fits */
        CHECK_EQ(fv_dec_int(&d, &sv), u[i] <= INT64_MAX ? FV_OK : FV_ECORRUPT);
        if (u[i] <= INT64_MAX)
            CHECK(sv == (int64_t)u[i]);
        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_key(&d, u[i]), FV_OK);
        fv_enc_free_buf(buf, n);
    }
    for (i = 0; i < sizeof s / sizeof s[0]; i++) {
        fv_enc_init(&e);
        fv_enc_int(&e, s[i]);
        CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
        CHECK_EQ(n, ssize[i]);
        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_peek(&d), s[i] < 0 ? FV_CBOR_NEGINT : FV_CBOR_UINT);
        CHECK_EQ(fv_dec_int(&d, &sv), FV_OK);
        CHECK(sv == s[i]);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);
        if (s[i] < 0) { /* a negint is not a uint */
            fv_dec_init(&d, buf, n);
            CHECK_EQ(fv_dec_uint(&d, &uv), FV_ECORRUPT);
        }
        fv_enc_free_buf(buf, n);
    }
    /* -2^64 is valid CBOR but outside int64 */
    {
        unsigned char in[16];

        dec_hex(&d, in, sizeof in, "3bffffffffffffffff");
        CHECK_EQ(fv_dec_int(&d, &sv), FV_ECORRUPT);
        dec_hex(&d, in, sizeof in, "3b8000000000000000");
        CHECK_EQ(fv_dec_int(&d, &sv), FV_ECORRUPT);
        dec_hex(&d, in, sizeof in, "3b7fffffffffffffff");
        CHECK_EQ(fv_dec_int(&d, &sv), FV_OK);
        CHECK(sv == INT64_MIN);
    }
}

static void test_string_round_trips(void)
{
    static const size_t lens[] = {0, 1, 23, 24, 255, 256, 65535, 65536, 70000};
    static const size_t heads[] = {1, 1, 1, 2, 2, 3, 3, 5, 5};
    size_t i, j, n, got;
    unsigned char *src = malloc(70000), *buf, *copy = malloc(70000);
    const unsigned char *bp;
    const char *tp;
    fv_enc e;
    fv_dec d;

    if (src == NULL || copy == NULL) {
        CHECK(!"out of memory");
        goto cleanup;
    }
    for (j = 0; j < 70000; j++)
        src[j] = (unsigned char)('a' + j % 26);
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        fv_enc_init(&e);
        fv_enc_bytes(&e, src, lens[i]);
        fv_enc_text(&e, (const char *)src, lens[i]);
        CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
        CHECK_EQ(n, 2 * (heads[i] + lens[i]));
        CHECK_EQ(buf[0] >> 5, FV_CBOR_BYTES);
        CHECK_EQ(buf[heads[i] + lens[i]] >> 5, FV_CBOR_TEXT);

        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_peek(&d), FV_CBOR_BYTES);
        CHECK_EQ(fv_dec_bytes(&d, &bp, &got), FV_OK);
        CHECK(got == lens[i] && memcmp(bp, src, got) == 0);
        CHECK_EQ(fv_dec_peek(&d), FV_CBOR_TEXT);
        CHECK_EQ(fv_dec_text(&d, &tp, &got), FV_OK);
        CHECK(got == lens[i] && memcmp(tp, src, got) == 0);
        CHECK_EQ(fv_dec_peek(&d), -1);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);

        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_bytes_exact(&d, copy, lens[i]), FV_OK);
        CHECK(lens[i] == 0 || memcmp(copy, src, lens[i]) == 0);
        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_bytes_exact(&d, copy, lens[i] + 1), FV_ECORRUPT);
        fv_dec_init(&d, buf, n); /* bytes are not text, and back */
        CHECK_EQ(fv_dec_text(&d, &tp, &got), FV_ECORRUPT);
        fv_enc_free_buf(buf, n);
    }
cleanup:
    free(src);
    free(copy);
}

/* ---- composite structure: every prefix --------------------------------- */

static void enc_composite(fv_enc *e)
{
    static const unsigned char id[32] = {1, 2, 3};

    fv_enc_map(e, 6);
    fv_enc_uint(e, 1);
    fv_enc_bytes(e, id, sizeof id);
    fv_enc_uint(e, 2);
    fv_enc_int(e, -1700000000);
    fv_enc_uint(e, 3);
    fv_enc_cstr(e, "\xec\x95\x88\xeb\x85\x95 \xe4\xb8\xad\xe6\x96\x87");
    fv_enc_uint(e, 4);
    fv_enc_array(e, 3);
    fv_enc_bool(e, 1);
    fv_enc_bool(e, 0);
    fv_enc_tag(e, 42);
    fv_enc_uint(e, 70000);
    fv_enc_uint(e, 5);
    fv_enc_map(e, 2);
    fv_enc_cstr(e, "b");
    fv_enc_array(e, 0);
    fv_enc_cstr(e, "aa");
    fv_enc_uint(e, UINT64_MAX);
    fv_enc_uint(e, 6);
    fv_enc_bytes(e, NULL, 0);
}

/* Reads the composite with the typed calls; FV_OK only if all of it is there. */
static int dec_composite(const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t cnt, blen;
    int64_t t;
    uint64_t v;
    int b1 = 0, b2 = 1;
    const char *s;
    const unsigned char *bp;
    unsigned char id[32];

    fv_dec_init(&d, p, n);
    fv_dec_map(&d, &cnt);
    if (d.err == FV_OK && cnt != 6)
        return -100;
    fv_dec_key(&d, 1);
    fv_dec_bytes_exact(&d, id, sizeof id);
    fv_dec_key(&d, 2);
    fv_dec_int(&d, &t);
    fv_dec_key(&d, 3);
    fv_dec_text(&d, &s, &blen);
    fv_dec_key(&d, 4);
    fv_dec_array(&d, &cnt);
    fv_dec_bool(&d, &b1);
    fv_dec_bool(&d, &b2);
    fv_dec_tag(&d, &v);
    fv_dec_uint(&d, &v);
    fv_dec_key(&d, 5);
    fv_dec_map(&d, &cnt);
    fv_dec_key_text(&d, "b");
    fv_dec_skip(&d, 4);
    fv_dec_key_text(&d, "aa");
    fv_dec_uint(&d, &v);
    fv_dec_key(&d, 6);
    fv_dec_bytes(&d, &bp, &blen);
    if (fv_dec_finish(&d) != FV_OK)
        return fv_dec_finish(&d);
    if (t != -1700000000 || id[2] != 3 || !b1 || b2 || v != UINT64_MAX ||
        blen != 0)
        return -101;
    return FV_OK;
}

static void test_prefixes(void)
{
    fv_enc e;
    unsigned char *buf, *copy;
    size_t n, i;
    fv_dec d;

    fv_enc_init(&e);
    enc_composite(&e);
    CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
    CHECK_EQ(dec_composite(buf, n), FV_OK);
    fv_dec_init(&d, buf, n);
    CHECK_EQ(fv_dec_skip(&d, 3), FV_OK);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);
    fv_dec_init(&d, buf, n); /* {4: [true, false, 42(70000)]} is 3 deep */
    CHECK_EQ(fv_dec_skip(&d, 2), FV_ECORRUPT);

    /* Each prefix in a buffer of its own size so ASan sees any overread. */
    for (i = 0; i < n; i++) {
        copy = malloc(i ? i : 1);
        if (copy == NULL)
            break;
        memcpy(copy, buf, i);
        CHECK(dec_composite(copy, i) != FV_OK);
        fv_dec_init(&d, copy, i);
        fv_dec_skip(&d, 8);
        CHECK(fv_dec_finish(&d) != FV_OK);
        free(copy);
    }

    /* Trailing bytes: the item reads, finish refuses. */
    copy = malloc(n + 1);
    if (copy != NULL) {
        memcpy(copy, buf, n);
        copy[n] = 0;
        CHECK_EQ(dec_composite(copy, n + 1), FV_ECORRUPT);
        fv_dec_init(&d, copy, n + 1);
        CHECK_EQ(fv_dec_skip(&d, 8), FV_OK);
        CHECK_EQ(fv_dec_peek(&d), FV_CBOR_UINT);
        CHECK_EQ(fv_dec_finish(&d), FV_ECORRUPT);
        free(copy);
    }
    fv_enc_free_buf(buf, n);
}

/* ---- what the reader must refuse --------------------------------------- */

static void test_rejects(void)
{
    static const char *bad[] = {
        /* non-shortest ints, negints and tags */
        "1805", "1817", "190010", "1900ff", "1a0000ffff", "1b00000000ffffffff",
        "3817", "3900ff", "3a0000ffff", "3b00000000ffffffff", "d81700",
        "d9001700", "da0000ffff00", "db00000000ffffffff00",
        /* non-shortest lengths and counts */
        "580161", "78016161", "5900016161", "7a0000000161", "980100",
        "99000100", "b8010000", "ba000000010000",
        /* 8-byte lengths and counts, even small ones */
        "5b000000000000000161", "7b000000000000000161",
        "9b000000000000000100", "bb00000000000000010000",
        /* indefinite lengths and break */
        "5f4100ff", "7f6161ff", "9fff", "9f00ff", "bfff", "ff",
        /* floats, null, undefined, other simple values, reserved */
        "f93c00", "fa3f800000", "fb3ff0000000000000", "f6", "f7", "f0",
        "f820", "1c", "1d", "1e", "3c", "5c", "7c", "9c", "bc", "dc", "fc",
        /* truncated heads and contents */
        "18", "19ff", "1affffff", "1bffffffffffffff", "41", "6261", "5801",
        "c1", "81", "a1", "a100", "8201",
        /* huge declared lengths and counts */
        "5affffffff00", "7affffffff00", "9affffffff00", "baffffffff0000",
        "5a7fffffff", "9a00010000", "b9ffff00",
        /* invalid UTF-8 in text */
        "62c080", "63eda080", "64f4908080", "62e282", "6180", "61ff",
        "63e08080", "64f0808080", "61c2",
    };
    unsigned char in[64], b[4];
    const unsigned char *p;
    const char *t;
    size_t i, n;
    uint64_t v;
    int64_t s;
    int bl;
    fv_dec d;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dec_hex(&d, in, sizeof in, bad[i]);
        fv_dec_skip(&d, 8);
        if (fv_dec_finish(&d) == FV_OK)
            fprintf(stderr, "  accepted %s\n", bad[i]);
        CHECK(fv_dec_finish(&d) != FV_OK);
    }

    /* the typed readers refuse them too */
    dec_hex(&d, in, sizeof in, "1805");
    CHECK_EQ(fv_dec_uint(&d, &v), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "190010");
    CHECK_EQ(fv_dec_int(&d, &s), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "5affffffff");
    CHECK_EQ(fv_dec_bytes(&d, &p, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "7affffffff");
    CHECK_EQ(fv_dec_text(&d, &t, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "9affffffff");
    CHECK_EQ(fv_dec_array(&d, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "baffffffff");
    CHECK_EQ(fv_dec_map(&d, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "5b0000000000000001ff");
    CHECK_EQ(fv_dec_bytes(&d, &p, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "f6");
    CHECK_EQ(fv_dec_bool(&d, &bl), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "f93c00");
    CHECK_EQ(fv_dec_peek(&d), FV_CBOR_SIMPLE);
    CHECK_EQ(fv_dec_bool(&d, &bl), FV_ECORRUPT);
    CHECK_EQ(fv_dec_peek(&d), -1); /* sticky */
    dec_hex(&d, in, sizeof in, "63eda080");
    CHECK_EQ(fv_dec_text(&d, &t, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "6161");
    CHECK_EQ(fv_dec_bytes(&d, &p, &n), FV_ECORRUPT); /* text is not bytes */

    /* A count must fit the bytes after its head: one byte per item. */
    dec_hex(&d, in, sizeof in, "8201");
    CHECK_EQ(fv_dec_array(&d, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "820102");
    CHECK_EQ(fv_dec_array(&d, &n), FV_OK);
    CHECK_EQ(n, 2);
    dec_hex(&d, in, sizeof in, "a101");
    CHECK_EQ(fv_dec_map(&d, &n), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "a10102");
    CHECK_EQ(fv_dec_map(&d, &n), FV_OK);
    CHECK_EQ(n, 1);

    /* empty input, and type mismatches */
    fv_dec_init(&d, NULL, 0);
    CHECK_EQ(fv_dec_peek(&d), -1);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);
    CHECK_EQ(fv_dec_uint(&d, &v), FV_ECORRUPT);
    CHECK_EQ(fv_dec_finish(&d), FV_ECORRUPT);
    fv_dec_init(&d, NULL, 0);
    CHECK_EQ(fv_dec_skip(&d, 4), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "f5");
    CHECK_EQ(fv_dec_uint(&d, &v), FV_ECORRUPT);
    CHECK_EQ(fv_dec_bool(&d, &bl), FV_ECORRUPT); /* sticky */
    dec_hex(&d, in, sizeof in, "f5f4");
    CHECK_EQ(fv_dec_bool(&d, &bl), FV_OK);
    CHECK_EQ(bl, 1);
    CHECK_EQ(fv_dec_bool(&d, &bl), FV_OK);
    CHECK_EQ(bl, 0);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);

    /* bytes_exact wants exactly n */
    dec_hex(&d, in, sizeof in, "43010203");
    CHECK_EQ(fv_dec_bytes_exact(&d, b, 4), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "43010203");
    CHECK_EQ(fv_dec_bytes_exact(&d, b, 2), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "43010203");
    CHECK_EQ(fv_dec_bytes_exact(&d, b, 3), FV_OK);
    CHECK(memcmp(b, "\x01\x02\x03", 3) == 0);
}

/* ---- UTF-8 ------------------------------------------------------------- */

static void test_utf8(void)
{
    static const char *good[] = {
        "", "plain ascii longer than eight bytes",
        "\xec\x95\x88\xeb\x85\x95\xed\x95\x98\xec\x84\xb8\xec\x9a\x94", /* 안녕하세요 */
        "\xe4\xb8\xad\xe6\x96\x87", /* 中文 */
        "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
        "abcdefgh\xc3\xa9zyxwvuts",
    };
    static const char *bad[] = {
        "\xc0\x80", "\xc1\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\x80", "\xbf",
        "\xe2\x82", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80",
        "\xf0\x8f\xbf\xbf", "\xc3", "\xe2\x28\xa1", "\xf0\x90\x28\xbc",
        "abcdefghijklmnop\xc0\x80", "abcdefg\x80hijklmnop", "abcdefghi\xe2\x82",
    };
    size_t i;
    fv_enc e;
    fv_dec d;
    unsigned char *buf;
    const char *t;
    size_t n, tn;

    for (i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(fv_utf8_valid(good[i], strlen(good[i])));
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(!fv_utf8_valid(bad[i], strlen(bad[i])));
        /* through the reader */
        fv_enc_init(&e);
        fv_enc_cstr(&e, bad[i]);
        CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
        fv_dec_init(&d, buf, n);
        CHECK_EQ(fv_dec_text(&d, &t, &tn), FV_ECORRUPT);
        fv_enc_free_buf(buf, n);
    }
    CHECK(fv_utf8_valid("a\0b", 3)); /* NUL is valid UTF-8 */
    CHECK(!fv_utf8_valid("\xe4\xb8\xad", 2));

    /* Every scalar value round trips; every surrogate is refused. */
    {
        unsigned long cp;
        unsigned char u[4];
        size_t k;
        int bad_seen = 0;

        for (cp = 0; cp <= 0x10ffff; cp++) {
            if (cp < 0x80) {
                u[0] = (unsigned char)cp;
                k = 1;
            } else if (cp < 0x800) {
                u[0] = (unsigned char)(0xc0 | cp >> 6);
                u[1] = (unsigned char)(0x80 | (cp & 0x3f));
                k = 2;
            } else if (cp < 0x10000) {
                u[0] = (unsigned char)(0xe0 | cp >> 12);
                u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                u[2] = (unsigned char)(0x80 | (cp & 0x3f));
                k = 3;
            } else {
                u[0] = (unsigned char)(0xf0 | cp >> 18);
                u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
                u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                u[3] = (unsigned char)(0x80 | (cp & 0x3f));
                k = 4;
            }
            if (fv_utf8_valid((const char *)u, k) !=
                !(cp >= 0xd800 && cp <= 0xdfff))
                bad_seen++;
        }
        CHECK_EQ(bad_seen, 0);
    }
}

/* ---- keys -------------------------------------------------------------- */

static int sign(int x) { return (x > 0) - (x < 0); }

/* Bytewise order of the canonical encodings, the definition in RFC 8949. */
static int encoded_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    fv_enc e;
    unsigned char *ea = NULL, *eb = NULL;
    size_t ean = 0, ebn = 0, m;
    int r;

    fv_enc_init(&e);
    fv_enc_text(&e, a, an);
    fv_enc_finish(&e, &ea, &ean);
    fv_enc_init(&e);
    fv_enc_text(&e, b, bn);
    fv_enc_finish(&e, &eb, &ebn);
    m = ean < ebn ? ean : ebn;
    r = memcmp(ea, eb, m);
    if (r == 0)
        r = (ean > ebn) - (ean < ebn);
    fv_enc_free_buf(ea, ean);
    fv_enc_free_buf(eb, ebn);
    return sign(r);
}

static void test_keys(void)
{
    static char big_a[300], big_b[300];
    static const size_t lens[] = {0, 1, 2, 23, 24, 255, 256, 300};
    size_t i, j;
    fv_dec d;
    unsigned char in[16];

    CHECK(fv_cbor_key_cmp("b", 1, "aa", 2) < 0);
    CHECK(fv_cbor_key_cmp("aa", 2, "b", 1) > 0);
    CHECK(fv_cbor_key_cmp("a", 1, "b", 1) < 0);
    CHECK(fv_cbor_key_cmp("ab", 2, "ab", 2) == 0);
    CHECK(fv_cbor_key_cmp("", 0, "a", 1) < 0);
    CHECK(fv_cbor_key_cmp(NULL, 0, NULL, 0) == 0);
    CHECK(fv_cbor_key_cmp("\xc3\xa9", 2, "zz", 2) > 0); /* bytes, unsigned */

    memset(big_a, 'a', sizeof big_a);
    memset(big_b, 'b', sizeof big_b);
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (j = 0; j < sizeof lens / sizeof lens[0]; j++) {
            CHECK_EQ(sign(fv_cbor_key_cmp(big_a, lens[i], big_b, lens[j])),
                     encoded_cmp(big_a, lens[i], big_b, lens[j]));
            CHECK_EQ(sign(fv_cbor_key_cmp(big_b, lens[i], big_a, lens[j])),
                     encoded_cmp(big_b, lens[i], big_a, lens[j]));
        }

    dec_hex(&d, in, sizeof in, "03");
    CHECK_EQ(fv_dec_key(&d, 4), FV_ECORRUPT);
    CHECK_EQ(fv_dec_finish(&d), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "0304");
    CHECK_EQ(fv_dec_key(&d, 3), FV_OK);
    CHECK_EQ(fv_dec_key(&d, 3), FV_ECORRUPT);
    CHECK_EQ(fv_dec_key(&d, 4), FV_ECORRUPT); /* sticky */
    dec_hex(&d, in, sizeof in, "6161"); /* text is not a uint key */
    CHECK_EQ(fv_dec_key(&d, 0x61), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "626162");
    CHECK_EQ(fv_dec_key_text(&d, "ab"), FV_OK);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);
    dec_hex(&d, in, sizeof in, "626162");
    CHECK_EQ(fv_dec_key_text(&d, "ac"), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "626162");
    CHECK_EQ(fv_dec_key_text(&d, "a"), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "626162");
    CHECK_EQ(fv_dec_key_text(&d, "abc"), FV_ECORRUPT);
    dec_hex(&d, in, sizeof in, "60");
    CHECK_EQ(fv_dec_key_text(&d, ""), FV_OK);
    dec_hex(&d, in, sizeof in, "01");
    CHECK_EQ(fv_dec_key_text(&d, "\x01"), FV_ECORRUPT);
}

/* ---- skip and depth ---------------------------------------------------- */

static void test_skip_depth(void)
{
    enum { DEEP = 100000 };
    unsigned char *buf = malloc(DEEP + 1);
    fv_dec d;
    size_t k;

    if (buf == NULL) {
        CHECK(!"out of memory");
        return;
    }
    for (k = 0; k <= 20; k++) { /* k nested arrays around a 0 */
        memset(buf, 0x81, k);
        buf[k] = 0;
        fv_dec_init(&d, buf, k + 1);
        CHECK_EQ(fv_dec_skip(&d, (int)k), FV_OK);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);
        fv_dec_init(&d, buf, k + 1);
        CHECK_EQ(fv_dec_skip(&d, (int)k - 1), FV_ECORRUPT);
        if (k > 0) { /* k one-pair maps nested as keys: the values are missing */
            memset(buf, 0xa1, k);
            fv_dec_init(&d, buf, k + 1);
            fv_dec_skip(&d, 64);
            CHECK(fv_dec_finish(&d) != FV_OK);
        }
    }
    /* Very deep input with a small limit fails fast, without deep recursion. */
    memset(buf, 0x81, DEEP);
    buf[DEEP] = 0;
    fv_dec_init(&d, buf, DEEP + 1);
    CHECK_EQ(fv_dec_skip(&d, 32), FV_ECORRUPT);
    memset(buf, 0xc1, DEEP); /* a chain of tags is as deep */
    fv_dec_init(&d, buf, DEEP + 1);
    CHECK_EQ(fv_dec_skip(&d, 32), FV_ECORRUPT);
    fv_dec_init(&d, buf + DEEP - 3, 4);
    CHECK_EQ(fv_dec_skip(&d, 3), FV_OK);
    /* A map counts its keys and values. */
    {
        unsigned char m[] = {0xa2, 0x01, 0x81, 0x02, 0x62, 'h', 'i', 0x40, 0x03};

        fv_dec_init(&d, m, sizeof m - 1);
        CHECK_EQ(fv_dec_skip(&d, 2), FV_OK);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);
        fv_dec_init(&d, m, sizeof m);
        CHECK_EQ(fv_dec_skip(&d, 2), FV_OK);
        CHECK_EQ(fv_dec_finish(&d), FV_ECORRUPT);
        fv_dec_init(&d, m, sizeof m - 1);
        CHECK_EQ(fv_dec_skip(&d, 1), FV_ECORRUPT);
    }
    free(buf);
}

/* ---- writer growth and failure ----------------------------------------- */

static void test_writer_large(void)
{
    enum { N = 220000 }; /* five bytes each: just over 1 MB */
    fv_enc e;
    fv_dec d;
    unsigned char *buf;
    size_t n, i, cnt;
    uint64_t v;
    int ok = 1;

    fv_enc_init(&e);
    fv_enc_array(&e, N);
    for (i = 0; i < N; i++)
        fv_enc_uint(&e, 65536 + i);
    CHECK(e.cap >= e.len && e.len == 5 + 5 * (size_t)N);
    CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
    CHECK(e.buf == NULL && e.len == 0);
    fv_enc_dispose(&e); /* harmless after finish */
    CHECK(n > 1024 * 1024);
    fv_dec_init(&d, buf, n);
    CHECK_EQ(fv_dec_array(&d, &cnt), FV_OK);
    CHECK_EQ(cnt, N);
    for (i = 0; i < cnt && ok; i++)
        ok = fv_dec_uint(&d, &v) == FV_OK && v == 65536 + i;
    CHECK(ok);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);
    fv_dec_init(&d, buf, n);
    CHECK_EQ(fv_dec_skip(&d, 1), FV_OK);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);
    fv_enc_free_buf(buf, n);

    /* one big string through fv_enc_raw */
    buf = calloc(1, 3 * 1024 * 1024);
    if (buf != NULL) {
        unsigned char *out;
        const unsigned char *p;

        fv_enc_init(&e);
        fv_enc_uint(&e, 1);
        fv_enc_bytes(&e, buf, 3 * 1024 * 1024);
        CHECK_EQ(fv_enc_finish(&e, &out, &n), FV_OK);
        CHECK_EQ(n, 1 + 5 + 3 * 1024 * 1024);
        fv_dec_init(&d, out, n);
        CHECK_EQ(fv_dec_key(&d, 1), FV_OK);
        CHECK_EQ(fv_dec_bytes(&d, &p, &cnt), FV_OK);
        CHECK_EQ(cnt, 3 * 1024 * 1024);
        CHECK_EQ(fv_dec_finish(&d), FV_OK);
        fv_enc_free_buf(out, n);
        free(buf);
    }

    /* an empty writer still yields a buffer */
    fv_enc_init(&e);
    CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_OK);
    CHECK(buf != NULL && n == 0);
    fv_enc_free_buf(buf, n);
    fv_enc_free_buf(NULL, 0);

    /* size_t overflow is FV_ENOMEM, sticky, and the buffer is released */
    fv_enc_init(&e);
    fv_enc_uint(&e, 1);
    fv_enc_raw(&e, "x", SIZE_MAX);
    CHECK_EQ(e.err, FV_ENOMEM);
    i = e.len;
    fv_enc_uint(&e, 2);
    fv_enc_cstr(&e, "ignored");
    CHECK_EQ(e.len, i);
    buf = NULL;
    CHECK_EQ(fv_enc_finish(&e, &buf, &n), FV_ENOMEM);
    CHECK(buf == NULL && e.buf == NULL);
    fv_enc_dispose(&e);
    fv_enc_dispose(&e);

    fv_enc_init(&e);
    fv_enc_bytes(&e, "x", SIZE_MAX - 4);
    CHECK_EQ(e.err, FV_ENOMEM);
    fv_enc_dispose(&e);
    CHECK(e.buf == NULL && e.err == FV_OK);
}

/* ---- random input never crashes ---------------------------------------- */

static volatile unsigned sink; /* keeps the bounds-checked reads alive */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Walks input the way a caller would: peek, read by type, skip the rest. */
static void walk(const unsigned char *p, size_t n)
{
    fv_dec d;
    uint64_t u;
    int64_t s;
    size_t len;
    const unsigned char *bp;
    const char *tp;
    int b, steps = 0;

    fv_dec_init(&d, p, n);
    while (fv_dec_peek(&d) >= 0 && steps++ < 1000) {
        switch (fv_dec_peek(&d)) {
        case FV_CBOR_UINT:
            fv_dec_uint(&d, &u);
            break;
        case FV_CBOR_NEGINT:
            fv_dec_int(&d, &s);
            break;
        case FV_CBOR_BYTES:
            if (fv_dec_bytes(&d, &bp, &len) == FV_OK && len > 0)
                sink = bp[len - 1]; /* ASan checks the bounds */
            break;
        case FV_CBOR_TEXT:
            if (fv_dec_text(&d, &tp, &len) == FV_OK && len > 0)
                sink = (unsigned char)tp[len - 1];
            break;
        case FV_CBOR_ARRAY:
        case FV_CBOR_MAP:
            fv_dec_skip(&d, 16);
            break;
        case FV_CBOR_TAG:
            fv_dec_tag(&d, &u);
            break;
        default:
            fv_dec_bool(&d, &b);
        }
    }
    (void)fv_dec_finish(&d);
    fv_dec_init(&d, p, n);
    while (fv_dec_skip(&d, 8) == FV_OK && d.pos < d.len)
        ;
}

static void test_random(void)
{
    enum { ROUNDS = 100000, MAXLEN = 48 };
    unsigned char *buf, *comp;
    size_t i, j, n, cn;
    fv_enc e;
    /* bytes that start interesting heads, so random input gets past byte 0 */
    static const unsigned char heads[] = {
        0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x20, 0x38, 0x3b, 0x40, 0x41,
        0x58, 0x5a, 0x5b, 0x5f, 0x60, 0x63, 0x78, 0x7a, 0x7f, 0x80, 0x82,
        0x98, 0x9a, 0x9f, 0xa0, 0xa1, 0xb8, 0xba, 0xbf, 0xc0, 0xc6, 0xd8,
        0xdb, 0xf4, 0xf5, 0xf6, 0xf9, 0xfb, 0xff, 0xc3, 0xe4, 0xed, 0xf4};

    fv_enc_init(&e);
    enc_composite(&e);
    if (fv_enc_finish(&e, &comp, &cn) != FV_OK) {
        CHECK(!"out of memory");
        return;
    }
    for (i = 0; i < ROUNDS; i++) {
        if (i % 2 == 0) { /* fresh random bytes */
            n = (size_t)(rng() % (MAXLEN + 1));
            buf = malloc(n ? n : 1);
            if (buf == NULL)
                break;
            for (j = 0; j < n; j++)
                buf[j] = rng() % 2 ? heads[rng() % sizeof heads]
                                   : (unsigned char)rng();
        } else { /* the composite with a few bytes changed, maybe cut */
            n = cn - (size_t)(rng() % 4 == 0 ? rng() % cn : 0);
            buf = malloc(n ? n : 1);
            if (buf == NULL)
                break;
            memcpy(buf, comp, n);
            for (j = rng() % 4 + 1; j > 0 && n > 0; j--)
                buf[rng() % n] = rng() % 2 ? heads[rng() % sizeof heads]
                                           : (unsigned char)rng();
        }
        walk(buf, n);
        (void)dec_composite(buf, n);
        free(buf);
    }
    CHECK_EQ(i, ROUNDS);
    fv_enc_free_buf(comp, cn);
}

int main(void)
{
    test_rfc8949_vectors();
    test_int_round_trips();
    test_string_round_trips();
    test_prefixes();
    test_rejects();
    test_utf8();
    test_keys();
    test_skip_depth();
    test_writer_large();
    test_random();
    return check_summary("test_codec");
}
