/*
 * codec.c - canonical CBOR writer and strict pull reader (see codec.h).
 *
 * The writer lets libcbor encode each head into our own buffer. The reader
 * checks every head itself first (shortest form, definite lengths, lengths
 * and counts bounded by the bytes left), then lets cbor_stream_decode decode
 * that one head and cross-checks what its callbacks report. cbor_load is
 * never used: it would allocate a tree sized by untrusted input.
 */
#include "codec.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "fieldvault.h"

#define HEAD_MAX 9 /* initial byte + 8-byte argument */

/* Memory that may hold plaintext; the volatile pointer keeps the compiler
 * from dropping stores to a buffer that is about to be freed. */
/* The writer's buffer may hold plaintext. explicit_bzero (glibc, the BSDs)
 * is as fast as memset and is never optimised away. */
static void wipe(void *p, size_t n)
{
    explicit_bzero(p, n);
}

/* ---- writer ----------------------------------------------------------- */

void fv_enc_init(fv_enc *e)
{
    e->buf = NULL;
    e->len = 0;
    e->cap = 0;
    e->err = FV_OK;
}

/* Makes room for n more bytes. Returns 1, or 0 with e->err set (sticky). */
static int reserve(fv_enc *e, size_t n)
{
    size_t need, cap;
    unsigned char *nb;

    if (e->err != FV_OK)
        return 0;
    if (e->cap - e->len >= n)
        return 1;
    if (n > SIZE_MAX - e->len)
        goto fail;
    need = e->len + n;
    cap = e->cap ? e->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* Never realloc: it could leave a plaintext copy behind unwiped. */
    nb = malloc(cap);
    if (nb == NULL)
        goto fail;
    if (e->len > 0)
        memcpy(nb, e->buf, e->len);
    if (e->buf != NULL) {
        wipe(e->buf, e->cap);
        free(e->buf);
    }
    e->buf = nb;
    e->cap = cap;
    return 1;
fail:
    e->err = FV_ENOMEM;
    return 0;
}

/* Records a head written by libcbor into the reserved HEAD_MAX bytes. */
static void head_done(fv_enc *e, size_t n)
{
    /* libcbor returns 0 only when the room is too small, which HEAD_MAX
     * rules out; treat it as the writer's one failure rather than ignore it. */
    if (n == 0)
        e->err = FV_ENOMEM;
    else
        e->len += n;
}

/* The (buffer, size) argument pair every cbor_encode_* takes. */
#define ROOM(e) ((e)->buf + (e)->len), ((e)->cap - (e)->len)

void fv_enc_uint(fv_enc *e, uint64_t v)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_uint(v, ROOM(e)));
}

void fv_enc_int(fv_enc *e, int64_t v)
{
    if (v >= 0)
        fv_enc_uint(e, (uint64_t)v);
    else if (reserve(e, HEAD_MAX)) /* -1 - v cannot overflow for v < 0 */
        head_done(e, cbor_encode_negint((uint64_t)(-1 - v), ROOM(e)));
}

void fv_enc_null(fv_enc *e)
{
    static const unsigned char null_item = 0xf6;
    fv_enc_raw(e, &null_item, 1);
}

void fv_enc_raw(fv_enc *e, const void *p, size_t n)
{
    if (n > 0 && reserve(e, n)) {
        memcpy(e->buf + e->len, p, n);
        e->len += n;
    }
}

void fv_enc_bytes_head(fv_enc *e, size_t n)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_bytestring_start(n, ROOM(e)));
}

void fv_enc_bytes(fv_enc *e, const void *p, size_t n)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_bytestring_start(n, ROOM(e)));
    fv_enc_raw(e, p, n);
}

void fv_enc_text(fv_enc *e, const char *p, size_t n)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_string_start(n, ROOM(e)));
    fv_enc_raw(e, p, n);
}

void fv_enc_cstr(fv_enc *e, const char *s)
{
    fv_enc_text(e, s, strlen(s));
}

void fv_enc_array(fv_enc *e, size_t n)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_array_start(n, ROOM(e)));
}

void fv_enc_map(fv_enc *e, size_t n)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_map_start(n, ROOM(e)));
}

void fv_enc_tag(fv_enc *e, uint64_t tag)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_tag(tag, ROOM(e)));
}

void fv_enc_bool(fv_enc *e, int b)
{
    if (reserve(e, HEAD_MAX))
        head_done(e, cbor_encode_bool(b != 0, ROOM(e)));
}

int fv_enc_finish(fv_enc *e, unsigned char **out, size_t *out_len)
{
    int rc;

    /* An empty writer still hands out a real buffer, so *out is never NULL
     * on success. */
    if (e->buf == NULL)
        reserve(e, 1);
    rc = e->err;
    if (rc != FV_OK) {
        fv_enc_dispose(e);
        e->err = rc;
        return rc;
    }
    *out = e->buf;
    *out_len = e->len;
    fv_enc_init(e);
    return FV_OK;
}

void fv_enc_dispose(fv_enc *e)
{
    if (e->buf != NULL) {
        wipe(e->buf, e->cap);
        free(e->buf);
    }
    fv_enc_init(e);
}

void fv_enc_free_buf(unsigned char *buf, size_t len)
{
    if (buf != NULL) {
        wipe(buf, len);
        free(buf);
    }
}

/* ---- reader ----------------------------------------------------------- */

/* What libcbor's callbacks saw for one head. */
struct seen {
    int calls;
    int major;
    uint64_t arg;
    const unsigned char *data; /* strings only */
};

static void saw(void *ctx, int major, uint64_t arg)
{
    struct seen *s = ctx;

    s->calls++;
    s->major = major;
    s->arg = arg;
}

static void cb_u8(void *c, uint8_t v) { saw(c, FV_CBOR_UINT, v); }
static void cb_u16(void *c, uint16_t v) { saw(c, FV_CBOR_UINT, v); }
static void cb_u32(void *c, uint32_t v) { saw(c, FV_CBOR_UINT, v); }
static void cb_u64(void *c, uint64_t v) { saw(c, FV_CBOR_UINT, v); }
static void cb_n8(void *c, uint8_t v) { saw(c, FV_CBOR_NEGINT, v); }
static void cb_n16(void *c, uint16_t v) { saw(c, FV_CBOR_NEGINT, v); }
static void cb_n32(void *c, uint32_t v) { saw(c, FV_CBOR_NEGINT, v); }
static void cb_n64(void *c, uint64_t v) { saw(c, FV_CBOR_NEGINT, v); }
static void cb_array(void *c, size_t n) { saw(c, FV_CBOR_ARRAY, n); }
static void cb_map(void *c, size_t n) { saw(c, FV_CBOR_MAP, n); }
static void cb_tag(void *c, uint64_t v) { saw(c, FV_CBOR_TAG, v); }
static void cb_bool(void *c, bool b) { saw(c, FV_CBOR_SIMPLE, b ? 21 : 20); }

static void cb_bytes(void *c, cbor_data p, size_t n)
{
    saw(c, FV_CBOR_BYTES, n);
    ((struct seen *)c)->data = p;
}

static void cb_text(void *c, cbor_data p, size_t n)
{
    saw(c, FV_CBOR_TEXT, n);
    ((struct seen *)c)->data = p;
}

/* The pre-checks reject everything else before libcbor sees it; these make
 * a slip there fail closed rather than call through a NULL pointer. */
static void cb_bad(void *c) { saw(c, -1, 0); }
static void cb_badf(void *c, float f) { (void)f; saw(c, -1, 0); }
static void cb_badd(void *c, double f) { (void)f; saw(c, -1, 0); }

static const struct cbor_callbacks callbacks = {
    .uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
    .negint8 = cb_n8, .negint16 = cb_n16, .negint32 = cb_n32,
    .negint64 = cb_n64,
    .byte_string = cb_bytes, .string = cb_text,
    .array_start = cb_array, .map_start = cb_map,
    .tag = cb_tag, .boolean = cb_bool,
    .byte_string_start = cb_bad, .string_start = cb_bad,
    .indef_array_start = cb_bad, .indef_map_start = cb_bad,
    .undefined = cb_bad, .null = cb_bad, .indef_break = cb_bad,
    .float2 = cb_badf, .float4 = cb_badf, .float8 = cb_badd,
};

/* Reads the next head, which must be of type `major`, and consumes the item
 * (for strings, with its content). *arg gets the argument (the value, length
 * or count; simple value 20 or 21 for false or true), *data (if not NULL)
 * the string content. */
static int next(fv_dec *d, int major, uint64_t *arg, const unsigned char **data)
{
    const unsigned char *h;
    size_t rem, hsize, used;
    unsigned ai, i;
    uint64_t v = 0;
    struct seen s = {0, -1, 0, NULL};
    struct cbor_decoder_result r;

    if (d->err != FV_OK)
        return d->err;
    if (d->pos >= d->len)
        goto corrupt;
    h = d->p + d->pos;
    rem = d->len - d->pos;
    ai = h[0] & 31u;
    if ((h[0] >> 5) != (unsigned)major || ai >= 28)
        goto corrupt; /* 28-30 reserved, 31 indefinite length or break */
    if (major == FV_CBOR_SIMPLE && h[0] != 0xf4 && h[0] != 0xf5)
        goto corrupt;
    /* 8-byte lengths and counts can never be backed by real input. */
    if (ai == 27 && major >= FV_CBOR_BYTES && major <= FV_CBOR_MAP)
        goto corrupt;
    hsize = ai < 24 ? 1 : 1 + ((size_t)1 << (ai - 24));
    if (hsize > rem)
        goto corrupt;
    if (ai < 24)
        v = ai;
    for (i = 1; i < hsize; i++)
        v = v << 8 | h[i];
    /* Shortest form: each wider argument must need its width. */
    if ((ai == 24 && v < 24) || (ai == 25 && v <= 0xff) ||
        (ai == 26 && v <= 0xffff) || (ai == 27 && v <= 0xffffffff))
        goto corrupt;
    /* Bound lengths and counts by the bytes after the head before anyone
     * uses them: every item takes at least one byte, so a caller can
     * allocate n elements safely. */
    used = hsize;
    if (major == FV_CBOR_BYTES || major == FV_CBOR_TEXT) {
        if (v > rem - hsize)
            goto corrupt;
        used += (size_t)v;
    } else if ((major == FV_CBOR_ARRAY && v > rem - hsize) ||
               (major == FV_CBOR_MAP && v > (rem - hsize) / 2)) {
        goto corrupt;
    }

    if (major == FV_CBOR_TAG && ai < 24) {
        /* libcbor 0.8 rejects the one-byte tags 6..20 its own encoder
         * writes; the whole item is the initial byte, so take it as is. */
        s.calls = 1;
        s.major = major;
        s.arg = v;
    } else {
        r = cbor_stream_decode(h, rem, &callbacks, &s);
        if (r.status != CBOR_DECODER_FINISHED || r.read != used)
            goto corrupt;
    }
    if (s.calls != 1 || s.major != major || s.arg != v)
        goto corrupt;
    if ((major == FV_CBOR_BYTES || major == FV_CBOR_TEXT) &&
        s.data != h + hsize)
        goto corrupt;
    if (major == FV_CBOR_TEXT &&
        !fv_utf8_valid((const char *)h + hsize, (size_t)v))
        goto corrupt;

    d->pos += used;
    *arg = v;
    if (data != NULL)
        *data = h + hsize;
    return FV_OK;
corrupt:
    d->err = FV_ECORRUPT;
    return d->err;
}

static int fail(fv_dec *d)
{
    d->err = FV_ECORRUPT;
    return d->err;
}

void fv_dec_init(fv_dec *d, const void *p, size_t n)
{
    d->p = p;
    d->len = n;
    d->pos = 0;
    d->err = FV_OK;
}

int fv_dec_peek(const fv_dec *d)
{
    if (d->err != FV_OK || d->pos >= d->len)
        return -1;
    return d->p[d->pos] >> 5;
}

int fv_dec_uint(fv_dec *d, uint64_t *v)
{
    return next(d, FV_CBOR_UINT, v, NULL);
}

int fv_dec_int(fv_dec *d, int64_t *v)
{
    uint64_t a;
    int neg = fv_dec_peek(d) == FV_CBOR_NEGINT;

    if (next(d, neg ? FV_CBOR_NEGINT : FV_CBOR_UINT, &a, NULL) != FV_OK)
        return d->err;
    if (a > (uint64_t)INT64_MAX)
        return fail(d);
    *v = neg ? -1 - (int64_t)a : (int64_t)a;
    return FV_OK;
}

int fv_dec_bytes(fv_dec *d, const unsigned char **p, size_t *n)
{
    uint64_t len;

    if (next(d, FV_CBOR_BYTES, &len, p) != FV_OK)
        return d->err;
    *n = (size_t)len; /* bounded by the input size in next() */
    return FV_OK;
}

int fv_dec_bytes_exact(fv_dec *d, unsigned char *out, size_t n)
{
    const unsigned char *p = NULL;
    size_t got = 0;

    if (fv_dec_bytes(d, &p, &got) != FV_OK)
        return d->err;
    if (got != n)
        return fail(d);
    if (n > 0)
        memcpy(out, p, n);
    return FV_OK;
}

int fv_dec_text(fv_dec *d, const char **p, size_t *n)
{
    uint64_t len;
    const unsigned char *s;

    if (next(d, FV_CBOR_TEXT, &len, &s) != FV_OK)
        return d->err;
    *p = (const char *)s;
    *n = (size_t)len;
    return FV_OK;
}

int fv_dec_array(fv_dec *d, size_t *n)
{
    uint64_t c;

    if (next(d, FV_CBOR_ARRAY, &c, NULL) != FV_OK)
        return d->err;
    *n = (size_t)c;
    return FV_OK;
}

int fv_dec_map(fv_dec *d, size_t *n)
{
    uint64_t c;

    if (next(d, FV_CBOR_MAP, &c, NULL) != FV_OK)
        return d->err;
    *n = (size_t)c;
    return FV_OK;
}

int fv_dec_tag(fv_dec *d, uint64_t *tag)
{
    return next(d, FV_CBOR_TAG, tag, NULL);
}

int fv_dec_null(fv_dec *d)
{
    if (d->err || d->pos >= d->len || d->p[d->pos] != 0xf6)
        return 0;
    d->pos++;
    return 1;
}

int fv_dec_bool(fv_dec *d, int *b)
{
    uint64_t v;

    if (next(d, FV_CBOR_SIMPLE, &v, NULL) != FV_OK)
        return d->err;
    *b = v == 21;
    return FV_OK;
}

int fv_dec_key(fv_dec *d, uint64_t key)
{
    uint64_t v;

    if (next(d, FV_CBOR_UINT, &v, NULL) != FV_OK)
        return d->err;
    return v == key ? FV_OK : fail(d);
}

int fv_dec_key_text(fv_dec *d, const char *key)
{
    const char *p = NULL;
    size_t n = 0, kn = strlen(key);

    if (fv_dec_text(d, &p, &n) != FV_OK)
        return d->err;
    return n == kn && memcmp(p, key, n) == 0 ? FV_OK : fail(d);
}

int fv_dec_skip(fv_dec *d, int max_depth)
{
    int t = fv_dec_peek(d);
    uint64_t n, i, items;
    const unsigned char *p;

    if (t < 0 || max_depth < 0)
        return fail(d);
    if (t == FV_CBOR_ARRAY || t == FV_CBOR_MAP || t == FV_CBOR_TAG) {
        /* Containers and tags each take a level, so the recursion is bounded
         * by max_depth and a chain of tags cannot run deep. */
        if (max_depth <= 0 || next(d, t, &n, NULL) != FV_OK)
            return fail(d);
        items = t == FV_CBOR_TAG ? 1 : t == FV_CBOR_MAP ? 2 * n : n;
        for (i = 0; i < items && d->err == FV_OK; i++)
            fv_dec_skip(d, max_depth - 1);
        return d->err;
    }
    return next(d, t, &n, &p);
}

int fv_dec_finish(const fv_dec *d)
{
    if (d->err != FV_OK)
        return d->err;
    return d->pos == d->len ? FV_OK : FV_ECORRUPT;
}

/* ---- text ------------------------------------------------------------- */

int fv_cbor_key_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    /* The encoded head grows with the length, so "shorter encoding first"
     * is "shorter text first". */
    if (an != bn)
        return an < bn ? -1 : 1;
    return an == 0 ? 0 : memcmp(a, b, an);
}

size_t fv_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t k, more;
    unsigned c, lo = 0x80, hi = 0xbf;
    uint32_t v;

    if (n == 0)
        return 0;
    c = s[0];
    if (c < 0x80) {
        if (cp)
            *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        more = 1;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        more = 2;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates D800-DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        more = 3;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0; /* continuation, C0/C1 overlong, or F5-FF */
    }
    if (more > n - 1 || s[1] < lo || s[1] > hi)
        return 0;
    for (k = 1; k <= more; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[k] & 0x3f);
    }
    if (cp)
        *cp = v;
    return more + 1;
}

int fv_utf8_valid(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0, k;
    uint64_t w;

    while (i < n) {
        /* Most text is ASCII: step over it eight bytes at a time. */
        if (n - i >= 8) {
            memcpy(&w, s + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        if ((k = fv_utf8_seq(s + i, n - i, NULL)) == 0)
            return 0;
        i += k;
    }
    return 1;
}
