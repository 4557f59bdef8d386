/*
 * record.h - the plaintext payload of an envelope (docs/FORMAT.md,
 * "Payload"): canonical CBOR in, a decoded fv_record out. Everything here is
 * plaintext, so every buffer is wiped before it is freed.
 */
#ifndef FV_RECORD_H
#define FV_RECORD_H

#include "crypto.h"
#include "fieldvault.h"

/* A decoded revision: the public view first, then what only the library
 * needs (attachment keys). Allocated in one wiped arena. */
typedef struct fv_rec {
    fv_record pub;
    unsigned char (*keys)[FV_KEY_BYTES]; /* per attachment */
    /* Per attachment: 1 if its last chunk is padded (its manifest has
     * "padded": 1, FORMAT.md 8), else 0. */
    unsigned char *padded;
    struct fv_arena *arena;
} fv_rec;

/* Encodes a revision payload. r->fields and r->tags must be in canonical
 * order without duplicates (fv_sort_fields, fv_sort_tags). */
int fv_payload_encode(unsigned char **out, size_t *out_len, const fv_record *r,
                      const unsigned char (*keys)[FV_KEY_BYTES]);
/* fv_payload_encode with, per attachment, whether its last chunk is padded
 * (padded[i] non-zero writes "padded": 1); padded NULL: none is. */
int fv_payload_encode_ex(unsigned char **out, size_t *out_len,
                         const fv_record *r,
                         const unsigned char (*keys)[FV_KEY_BYTES],
                         const unsigned char *padded);
/* Decodes and validates a revision payload into a new fv_rec (ids, author
 * and nheads are left for the caller). FV_ECORRUPT, FV_ENOMEM. */
int fv_payload_decode(fv_rec **out, const unsigned char *p, size_t n);
void fv_rec_free(fv_rec *r);

int fv_tombstone_encode(unsigned char **out, size_t *out_len, int64_t time);
int fv_tombstone_decode(int64_t *time, const unsigned char *p, size_t n);
/* A retraction's payload is a tombstone's: {"time": int}. */

/* A note (FORMAT.md 7.1): {"text": 1..FV_MAX_NOTE_BYTES of UTF-8 without
 * NUL, "time": int}. Decoding gives *text malloc'd and NUL-terminated:
 * wipe and free it with fv_env_free_plain(text, len + 1). */
int fv_note_encode(unsigned char **out, size_t *out_len, const char *text,
                   size_t len, int64_t time);
int fv_note_decode(char **text, size_t *len, int64_t *time,
                   const unsigned char *p, size_t n);
/* A review state: {"time": int, "state": 0..3}. */
int fv_state_encode(unsigned char **out, size_t *out_len, int64_t time,
                    int state);
int fv_state_decode(int64_t *time, int *state, const unsigned char *p,
                    size_t n);
/* 1 if `s` (len bytes) is a valid note text. */
int fv_note_text_ok(const char *s, size_t len);

/* Sorts into canonical order; returns FV_EINVAL on a duplicate key. */
int fv_sort_fields(fv_field *f, size_t n);
/* Sorts into canonical order and drops duplicates; *n is updated. */
void fv_sort_tags(const char **t, size_t *n);

/* 1 if s is valid UTF-8 of 1..max bytes with no NUL or control character. */
int fv_text_ok(const char *s, size_t max);
/* 1 if s is valid UTF-8 of at most max bytes (a field value: may hold line
 * breaks). */
int fv_value_ok(const char *s, size_t max);

/* 1 if `name` is a valid attachment name (FORMAT.md 6): a label of at most
 * FV_MAX_ATTACHMENT_NAME_BYTES, without '/' or '\\', not "." or "..". Also
 * the check before a name becomes part of a file path. */
int fv_attachment_name_ok(const char *name);

/* The plaintext bytes chunk i (< a->chunks) of attachment a holds
 * (FORMAT.md 8): chunk, the last size - (n - 1) * chunk. */
uint64_t fv_chunk_plain_bytes(const fv_attachment_info *a, uint64_t i);
/* The ciphertext size of chunk i (< a->chunks) of attachment a (FORMAT.md
 * 8): chunk + 16; the last size - (n - 1) * chunk + 16, or, if `padded`,
 * its bucket (fv_chunk_padded_len) + 16. A stored chunk of any other size
 * means the signed size lies about the signed chunks. */
uint64_t fv_chunk_ct_bytes(const fv_attachment_info *a, int padded,
                           uint64_t i);

struct fv_env;
/* The one check of a decrypted payload against FORMAT.md, by the kind of
 * envelope `e` it came from: the kind's strict decoder (canonical CBOR,
 * exact keys, types, text rules), and for a revision its attachment
 * manifest against the signed chunk lists (fv_payload_check_rec). Run
 * wherever a payload is opened, before anything is stored or done with it.
 * FV_OK, FV_ECORRUPT, FV_ENOMEM. */
int fv_payload_check(const struct fv_env *e, const unsigned char *p, size_t n);
int fv_payload_check_rec(const struct fv_env *e, const fv_rec *r);

#endif
