/*
 * codec.h - canonical CBOR (RFC 8949 section 4.2.1) writer and a strict,
 * bounded pull reader. The only module that includes libcbor.
 *
 * The writer emits shortest-form heads and definite lengths only; callers
 * emit map keys in canonical order (fv_cbor_key_cmp orders text keys).
 * The reader accepts exactly what the writer produces and nothing else:
 * shortest-form integers and lengths, definite lengths, no 8-byte lengths,
 * valid UTF-8 text, no floats or simple values except true and false, no
 * trailing bytes (fv_dec_finish). It never allocates: strings are returned as
 * pointers into the input. Array and map counts are checked against the bytes
 * left before the caller sees them, so a count never exceeds what the input
 * could hold.
 */
#ifndef FV_CODEC_H
#define FV_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Writer. Errors are sticky: after a failure every call is a no-op and
 * fv_enc_finish reports it. The buffer is wiped whenever it is moved or
 * freed, since it may hold plaintext. */
typedef struct fv_enc {
    unsigned char *buf;
    size_t len;
    size_t cap;
    int err; /* FV_OK or FV_ENOMEM */
} fv_enc;

void fv_enc_init(fv_enc *e);
void fv_enc_uint(fv_enc *e, uint64_t v);
void fv_enc_int(fv_enc *e, int64_t v);
void fv_enc_bytes(fv_enc *e, const void *p, size_t n);
/* Only the head of a byte string of n bytes: the caller appends the bytes
 * themselves (to send a large string without copying it into the writer). */
void fv_enc_bytes_head(fv_enc *e, size_t n);
void fv_enc_text(fv_enc *e, const char *p, size_t n);
void fv_enc_cstr(fv_enc *e, const char *s); /* text of a NUL-terminated string */
void fv_enc_array(fv_enc *e, size_t n);
void fv_enc_map(fv_enc *e, size_t n);
void fv_enc_tag(fv_enc *e, uint64_t tag);
void fv_enc_bool(fv_enc *e, int b);
void fv_enc_null(fv_enc *e);
void fv_enc_raw(fv_enc *e, const void *p, size_t n); /* already-encoded item */
/* Hands the encoded bytes to the caller (*out, never NULL on FV_OK; free
 * with fv_enc_free_buf) and leaves the writer empty. On FV_ENOMEM the buffer
 * is wiped and freed. Either way a later fv_enc_dispose is harmless. */
int fv_enc_finish(fv_enc *e, unsigned char **out, size_t *out_len);
/* Wipes and frees the writer's buffer (after an error, or instead of finish).
 * Safe on a writer that is empty, finished or already disposed. */
void fv_enc_dispose(fv_enc *e);
/* Wipes and frees a buffer returned by fv_enc_finish. NULL is harmless. */
void fv_enc_free_buf(unsigned char *buf, size_t len);

/* Reader over a borrowed buffer. Every fv_dec_* returns FV_OK, or
 * FV_ECORRUPT if the next item is malformed, non-canonical, of another type,
 * or runs past the end. Errors are sticky. */
typedef struct fv_dec {
    const unsigned char *p;
    size_t len;
    size_t pos;
    int err;
} fv_dec;

enum fv_cbor_type {
    FV_CBOR_UINT = 0,
    FV_CBOR_NEGINT = 1,
    FV_CBOR_BYTES = 2,
    FV_CBOR_TEXT = 3,
    FV_CBOR_ARRAY = 4,
    FV_CBOR_MAP = 5,
    FV_CBOR_TAG = 6,
    FV_CBOR_SIMPLE = 7
};

void fv_dec_init(fv_dec *d, const void *p, size_t n);
/* Major type of the next item, or -1 at the end or after an error. */
int fv_dec_peek(const fv_dec *d);
int fv_dec_uint(fv_dec *d, uint64_t *v);
int fv_dec_int(fv_dec *d, int64_t *v); /* uint or negint that fits int64 */
int fv_dec_bytes(fv_dec *d, const unsigned char **p, size_t *n);
/* A byte string of exactly n bytes, copied into out. */
int fv_dec_bytes_exact(fv_dec *d, unsigned char *out, size_t n);
int fv_dec_text(fv_dec *d, const char **p, size_t *n);
int fv_dec_array(fv_dec *d, size_t *n);
int fv_dec_map(fv_dec *d, size_t *n);
int fv_dec_tag(fv_dec *d, uint64_t *tag);
int fv_dec_bool(fv_dec *d, int *b);
/* If the next item is null (0xf6), consumes it and returns 1; else 0. Null is
 * accepted only where a caller asks for it this way. */
int fv_dec_null(fv_dec *d); /* 1 for true, 0 for false */
/* Reads the next uint and checks it equals `key`: for maps with fixed keys. */
int fv_dec_key(fv_dec *d, uint64_t key);
/* Reads the next text and checks it equals `key`. */
int fv_dec_key_text(fv_dec *d, const char *key);
/* Skips one whole item. Each array, map or tag takes one level of
 * `max_depth` (a scalar needs 0, [1] needs 1, [[1]] needs 2); deeper input
 * is FV_ECORRUPT. It recurses once per level: keep max_depth small. */
int fv_dec_skip(fv_dec *d, int max_depth);
/* FV_OK if every byte was consumed and no error happened. */
int fv_dec_finish(const fv_dec *d);

/* Canonical order of two text map keys (shorter first, then bytewise):
 * <0, 0, >0 like memcmp. */
int fv_cbor_key_cmp(const char *a, size_t an, const char *b, size_t bn);

/* 1 if p[0..n) is well-formed UTF-8 (no overlongs, surrogates, or code
 * points past U+10FFFF), else 0. */
int fv_utf8_valid(const char *p, size_t n);

/* The length (1..4) of the one well-formed UTF-8 sequence at s[0..n), with
 * its code point in *cp (if cp is not NULL), or 0 if the bytes there are not
 * well-formed (overlong, surrogate, past U+10FFFF, truncated). The single
 * UTF-8 decoder of the project: fv_utf8_valid, the CLI's and the exports'
 * escaping, and the desk's parser all use it. */
size_t fv_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

#endif
