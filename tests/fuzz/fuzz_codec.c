/*
 * fuzz_codec.c - arbitrary bytes through the strict CBOR reader
 * (core/codec.c), every item read with the reader call its type asks for,
 * nested up to a depth and skipped (fv_dec_skip) below it. Whatever the
 * reader accepts whole must be canonical: written again by the writer, it
 * comes out byte for byte the same. No state.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(fv_dec *d, fv_enc *e, int depth)
{
    uint64_t u;
    int64_t i;
    const unsigned char *b;
    const char *t;
    size_t n;
    int flag;

    if (depth > 8) {
        size_t start = d->pos;
        if (fv_dec_skip(d, 8) == FV_OK)
            fv_enc_raw(e, d->p + start, d->pos - start);
        return;
    }
    switch (fv_dec_peek(d)) {
    case FV_CBOR_UINT:
        if (fv_dec_uint(d, &u) == FV_OK)
            fv_enc_uint(e, u);
        break;
    case FV_CBOR_NEGINT:
        if (fv_dec_int(d, &i) == FV_OK)
            fv_enc_int(e, i);
        break;
    case FV_CBOR_BYTES:
        if (fv_dec_bytes(d, &b, &n) == FV_OK)
            fv_enc_bytes(e, b, n);
        break;
    case FV_CBOR_TEXT:
        if (fv_dec_text(d, &t, &n) == FV_OK) {
            if (!fv_utf8_valid(t, n))
                abort(); /* the reader passed text that is not UTF-8 */
            fv_enc_text(e, t, n);
        }
        break;
    case FV_CBOR_ARRAY:
        if (fv_dec_array(d, &n) == FV_OK) {
            fv_enc_array(e, n);
            for (size_t k = 0; k < n && d->err == FV_OK; k++)
                walk(d, e, depth + 1);
        }
        break;
    case FV_CBOR_MAP:
        if (fv_dec_map(d, &n) == FV_OK) {
            fv_enc_map(e, n);
            for (size_t k = 0; k < 2 * n && d->err == FV_OK; k++)
                walk(d, e, depth + 1);
        }
        break;
    case FV_CBOR_TAG:
        if (fv_dec_tag(d, &u) == FV_OK) {
            fv_enc_tag(e, u);
            walk(d, e, depth + 1);
        }
        break;
    case FV_CBOR_SIMPLE:
        if (fv_dec_null(d))
            fv_enc_null(e);
        else if (fv_dec_bool(d, &flag) == FV_OK)
            fv_enc_bool(e, flag);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_dec d;
    fv_enc e;
    unsigned char *out = NULL;
    size_t len = 0;

    fv_dec_init(&d, data, size);
    fv_enc_init(&e);
    while (d.err == FV_OK && d.pos < d.len)
        walk(&d, &e, 0);
    if (fv_enc_finish(&e, &out, &len) != FV_OK)
        return 0;
    if (fv_dec_finish(&d) == FV_OK && (len != size || memcmp(out, data, size)))
        abort(); /* accepted, but not what the canonical writer writes */
    fv_enc_free_buf(out, len);
    fv_enc_dispose(&e);
    return 0;
}
