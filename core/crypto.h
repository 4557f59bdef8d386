/*
 * crypto.h - every primitive FieldVault uses, on fixed buffers. The only
 * module that includes libsodium. Functions return FV_OK or an FV_E code.
 */
#ifndef FV_CRYPTO_H
#define FV_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define FV_KEY_BYTES 32        /* symmetric keys (XChaCha20-Poly1305, KDF) */
#define FV_NONCE_BYTES 24
#define FV_TAG_BYTES 16
#define FV_HASH_BYTES 32       /* BLAKE2b-256 */
#define FV_SIGN_PK_BYTES 32    /* Ed25519 */
#define FV_SIGN_SK_BYTES 64
#define FV_SIG_BYTES 64
#define FV_BOX_PK_BYTES 32     /* X25519 */
#define FV_BOX_SK_BYTES 32
#define FV_SEAL_BYTES 48       /* crypto_box_seal overhead */
#define FV_SALT_BYTES 16

int fv_crypto_init(void);

void fv_random(void *buf, size_t n);
int fv_ct_equal(const void *a, const void *b, size_t n); /* 1 if equal */

/* BLAKE2b-256 keyed with `key` (16..64 bytes): a MAC / PRF. */
void fv_hash_keyed(unsigned char out[FV_HASH_BYTES], const void *in, size_t n,
                   const unsigned char *key, size_t keylen);

/* BLAKE2b-256 of one buffer, and incrementally. */
void fv_hash(unsigned char out[FV_HASH_BYTES], const void *in, size_t n);
typedef struct fv_hash_state {
    unsigned char opaque[384] __attribute__((aligned(64)));
} fv_hash_state;
void fv_hash_init(fv_hash_state *st);
void fv_hash_update(fv_hash_state *st, const void *in, size_t n);
void fv_hash_final(fv_hash_state *st, unsigned char out[FV_HASH_BYTES]);

/* XChaCha20-Poly1305-IETF. c holds mlen + FV_TAG_BYTES bytes. Decryption
 * returns FV_ECORRUPT when the tag does not verify (m is then wiped). */
void fv_aead_encrypt(unsigned char *c, const unsigned char *m, size_t mlen,
                     const unsigned char *ad, size_t adlen,
                     const unsigned char nonce[FV_NONCE_BYTES],
                     const unsigned char key[FV_KEY_BYTES]);
int fv_aead_decrypt(unsigned char *m, const unsigned char *c, size_t clen,
                    const unsigned char *ad, size_t adlen,
                    const unsigned char nonce[FV_NONCE_BYTES],
                    const unsigned char key[FV_KEY_BYTES]);

/* Ed25519. */
void fv_sign_keypair(unsigned char pk[FV_SIGN_PK_BYTES],
                     unsigned char sk[FV_SIGN_SK_BYTES]);
void fv_sign(unsigned char sig[FV_SIG_BYTES], const unsigned char *m,
             size_t mlen, const unsigned char sk[FV_SIGN_SK_BYTES]);
int fv_sign_verify(const unsigned char sig[FV_SIG_BYTES],
                   const unsigned char *m, size_t mlen,
                   const unsigned char pk[FV_SIGN_PK_BYTES]); /* FV_ECORRUPT */

/* Signatures by the organisation's X25519 key pair (XEdDSA-style, see
 * crypto.c): a plain Ed25519 signature under `kid`, the Ed25519 form of the
 * organisation's public key. fv_org_kid_ok: 1 if `kid` is that form of
 * `org_pk` (then check the signature with fv_sign_verify). */
int fv_org_sign(unsigned char sig[FV_SIG_BYTES], unsigned char kid[32],
                const unsigned char *m, size_t mlen,
                const unsigned char org_sk[FV_BOX_SK_BYTES]);
/* The Ed25519 form of the organisation's public key, from its secret. */
int fv_org_sign_pk(unsigned char kid[32],
                   const unsigned char org_sk[FV_BOX_SK_BYTES]);
int fv_org_kid_ok(const unsigned char kid[32],
                  const unsigned char org_pk[FV_BOX_PK_BYTES]);

/* X25519 sealed boxes (anonymous sender): c holds mlen + FV_SEAL_BYTES. */
void fv_box_keypair(unsigned char pk[FV_BOX_PK_BYTES],
                    unsigned char sk[FV_BOX_SK_BYTES]);
int fv_seal(unsigned char *c, const unsigned char *m, size_t mlen,
            const unsigned char pk[FV_BOX_PK_BYTES]);
int fv_seal_open(unsigned char *m, const unsigned char *c, size_t clen,
                 const unsigned char pk[FV_BOX_PK_BYTES],
                 const unsigned char sk[FV_BOX_SK_BYTES]); /* FV_ECORRUPT */

/* Subkey `id` of `key` in the 8-character context `ctx` (crypto_kdf). */
void fv_kdf_derive(unsigned char *sub, size_t sublen, uint64_t id,
                   const char ctx[8], const unsigned char key[FV_KEY_BYTES]);

/* Argon2id v1.3. FV_ENOMEM if the memory cannot be had, FV_EINVAL if the
 * parameters are outside libsodium's bounds. */
int fv_pwhash(unsigned char *out, size_t outlen, const char *pass,
              size_t passlen, const unsigned char salt[FV_SALT_BYTES],
              uint64_t opslimit, uint64_t memlimit);
/* 1 if a stored Argon2id cost is within libsodium's bounds and at most
 * FV_PWHASH_OPS_MAX passes over FV_PWHASH_MEM_MAX bytes (four times the
 * desktop profile's memory, eight times its passes), so that a key file
 * with a damaged cost is refused at once instead of hanging the open or
 * exhausting memory (docs/FORMAT.md). */
#define FV_PWHASH_OPS_MAX 16
#define FV_PWHASH_MEM_MAX (1ull << 30)
int fv_pwhash_params_ok(uint64_t opslimit, uint64_t memlimit);

#endif
