/*
 * envelope.h - signed, encrypted envelopes (docs/FORMAT.md): a COSE_Sign1
 * (EdDSA) whose payload is a canonical CBOR body carrying the revision graph
 * in clear and the record's content as XChaCha20-Poly1305 ciphertext under a
 * fresh key, sealed to each recipient's X25519 key.
 */
#ifndef FV_ENVELOPE_H
#define FV_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

/* The body version written (docs/FORMAT.md 5.8): 2 pads the payload inside
 * the AEAD to a Padme bucket. Readers take versions 1 and 2. */
#define FV_ENV_VERSION 2
#define FV_ENV_VERSION_1 1 /* unpadded; still read everywhere */
/* The smallest padded plaintext of a version 2 envelope, and of the last
 * chunk of a padded attachment (FORMAT.md 5.8, 8). */
#define FV_PAD_FLOOR 256
#define FV_ENV_REVISION 1
#define FV_ENV_TOMBSTONE 2
#define FV_ENV_GRANT 3 /* carries another envelope's content key (FORMAT.md) */
#define FV_ENV_NOTE 4       /* a note about a record (FORMAT.md 7.1) */
#define FV_ENV_STATE 5      /* a record's review state */
#define FV_ENV_RETRACTION 6 /* the record's retraction */
/* Kinds that are about a record: never a genesis, one parent, the record. */
#define FV_ENV_IS_DESK(k) ((k) >= FV_ENV_NOTE && (k) <= FV_ENV_RETRACTION)
#define FV_ENV_MAX_PARENTS 64
#define FV_ENV_MAX_RECIPIENTS 16
/* The largest envelope anyone writes or reads: one sync frame's worth
 * (docs/PROTOCOL.md). */
#define FV_ENV_MAX_BYTES ((1u << 20) - 4096)

/* A parsed, signature-checked envelope. Pointers point into the buffer given
 * to fv_env_parse, which must outlive this struct. */
typedef struct fv_env {
    unsigned char id[FV_HASH_BYTES];     /* BLAKE2b-256 of the whole envelope */
    unsigned char author[FV_SIGN_PK_BYTES];
    unsigned char record[FV_HASH_BYTES]; /* the genesis revision's id */
    int version; /* body key 1: 1 or 2 (FV_ENV_VERSION) */
    int kind;
    int genesis;
    size_t nparents;
    unsigned char parents[FV_ENV_MAX_PARENTS][FV_HASH_BYTES];
    size_t nrecipients;
    const unsigned char *recipient_pk[FV_ENV_MAX_RECIPIENTS];
    const unsigned char *recipient_seal[FV_ENV_MAX_RECIPIENTS];
    const unsigned char *nonce;
    const unsigned char *ct;
    size_t ctlen;
    const unsigned char *commit; /* key commitment (FORMAT.md) */
    size_t nattachments;
    uint64_t *chunk_counts;         /* malloc'd: chunks per attachment */
    unsigned char (*chunks)[FV_HASH_BYTES]; /* malloc'd: every chunk hash */
    size_t nchunks;
} fv_env;

/* Parses `buf`, checks its structure and its author's signature, and
 * computes its id. FV_ECORRUPT, FV_EVERSION, FV_ENOMEM. On success release
 * with fv_env_clear. */
int fv_env_parse(fv_env *e, const unsigned char *buf, size_t len);
/* fv_env_parse with flags. FV_ENV_SIG_KNOWN: every check but the Ed25519
 * verify, for bytes whose signature this vault verified when it stored them
 * (their keyed MAC matches, docs/FORMAT.md 10); never for bytes from
 * outside. */
#define FV_ENV_SIG_KNOWN 1u
int fv_env_parse_ex(fv_env *e, const unsigned char *buf, size_t len,
                    unsigned flags);
void fv_env_clear(fv_env *e);

/* What a new envelope carries. */
typedef struct fv_env_spec {
    int kind;
    /* A grant seals this existing content key instead of a fresh one. */
    const unsigned char *content_key;
    const unsigned char *record; /* NULL for a genesis revision */
    const unsigned char (*parents)[FV_HASH_BYTES];
    size_t nparents;
    const unsigned char *payload; /* plaintext, canonical CBOR */
    size_t payload_len;
    const unsigned char (*recipients)[FV_BOX_PK_BYTES];
    size_t nrecipients;
    const uint64_t *chunk_counts; /* per attachment */
    size_t nattachments;
    const unsigned char (*chunks)[FV_HASH_BYTES]; /* all, in order */
    const unsigned char *sign_pk;
    const unsigned char *sign_sk;
} fv_env_spec;

/* Builds, encrypts and signs an envelope. *out is malloc'd (the caller
 * frees it); `id` receives its content address. */
int fv_env_build(unsigned char **out, size_t *out_len,
                 unsigned char id[FV_HASH_BYTES], const fv_env_spec *spec);

/* Decrypts the payload with the recipient key pair (pk, sk). *plain is
 * malloc'd; wipe and free it with fv_env_free_plain. FV_ENOTFOUND if the
 * envelope is not sealed to pk, FV_ECORRUPT if it does not decrypt. */
int fv_env_open(const fv_env *e, const unsigned char pk[FV_BOX_PK_BYTES],
                const unsigned char sk[FV_BOX_SK_BYTES], unsigned char **plain,
                size_t *plain_len);
void fv_env_free_plain(unsigned char *plain, size_t len);

/* The two halves of fv_env_open: unseal the content key for recipient
 * (pk, sk), and decrypt the payload with a content key. */
int fv_env_unseal(const fv_env *e, const unsigned char pk[FV_BOX_PK_BYTES],
                  const unsigned char sk[FV_BOX_SK_BYTES],
                  unsigned char key[FV_KEY_BYTES]);
int fv_env_decrypt(const fv_env *e, const unsigned char key[FV_KEY_BYTES],
                   unsigned char **plain, size_t *plain_len);

/* Padme (FORMAT.md 5.8): n rounded up so that only its top
 * floor(log2(floor(log2 n))) + 1 bits may be non-zero; n itself if n < 2. */
uint64_t fv_padme(uint64_t n);
/* The padded length of a version 2 plaintext holding `len` payload bytes:
 * fv_padme(max(len + 1, FV_PAD_FLOOR)). */
uint64_t fv_env_padded_len(uint64_t len);
/* The stored plaintext length of the last chunk of a padded attachment
 * whose last chunk holds `len` (1..chunk) bytes: fv_padme(max(len,
 * FV_PAD_FLOOR)), at most `chunk`. */
uint64_t fv_chunk_padded_len(uint64_t len, uint64_t chunk);

#endif
