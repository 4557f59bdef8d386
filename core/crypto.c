/* crypto.c - thin, fixed-buffer wrappers over libsodium (see crypto.h). */
#include "crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fieldvault.h"

/* FV_FUZZING lets every signature pass (fv_sign_verify): it compiles only
 * in the fuzz build (clang with ASan and libFuzzer's coverage). */
#ifdef FV_FUZZING
#ifndef __clang__
#error "FV_FUZZING is for the fuzz build only (CMake FV_FUZZ, clang)"
#elif !__has_feature(address_sanitizer)
#error "FV_FUZZING is for the fuzz build only (CMake FV_FUZZ, with ASan)"
#endif
#endif

_Static_assert(sizeof(fv_hash_state) >= sizeof(crypto_generichash_state),
               "fv_hash_state too small");
_Static_assert(FV_SEAL_BYTES == crypto_box_SEALBYTES, "seal overhead");
_Static_assert(FV_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag");
_Static_assert(FV_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
               "nonce");
_Static_assert(FV_SALT_BYTES == crypto_pwhash_SALTBYTES, "salt");

int fv_crypto_init(void)
{
    /* sodium_init is thread-safe and idempotent: 1 means already done. */
    return sodium_init() < 0 ? FV_ECRYPTO : FV_OK;
}

void fv_random(void *buf, size_t n) { randombytes_buf(buf, n); }

int fv_ct_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void fv_wipe(void *p, size_t len)
{
    if (p)
        sodium_memzero(p, len);
}

void *fv_secure_alloc(size_t len)
{
    if (fv_crypto_init() != FV_OK)
        return NULL;
    return sodium_malloc(len);
}

void fv_secure_free(void *p) { sodium_free(p); }

void fv_free(void *p) { free(p); }

void fv_hash(unsigned char out[FV_HASH_BYTES], const void *in, size_t n)
{
    crypto_generichash(out, FV_HASH_BYTES, in, n, NULL, 0);
}

void fv_hash_keyed(unsigned char out[FV_HASH_BYTES], const void *in, size_t n,
                   const unsigned char *key, size_t keylen)
{
    crypto_generichash(out, FV_HASH_BYTES, in, n, key, keylen);
}

void fv_hash_init(fv_hash_state *st)
{
    crypto_generichash_init((crypto_generichash_state *)st, NULL, 0,
                            FV_HASH_BYTES);
}

void fv_hash_update(fv_hash_state *st, const void *in, size_t n)
{
    crypto_generichash_update((crypto_generichash_state *)st, in, n);
}

void fv_hash_final(fv_hash_state *st, unsigned char out[FV_HASH_BYTES])
{
    crypto_generichash_final((crypto_generichash_state *)st, out,
                             FV_HASH_BYTES);
}

void fv_aead_encrypt(unsigned char *c, const unsigned char *m, size_t mlen,
                     const unsigned char *ad, size_t adlen,
                     const unsigned char nonce[FV_NONCE_BYTES],
                     const unsigned char key[FV_KEY_BYTES])
{
    crypto_aead_xchacha20poly1305_ietf_encrypt(c, NULL, m, mlen, ad, adlen,
                                               NULL, nonce, key);
}

int fv_aead_decrypt(unsigned char *m, const unsigned char *c, size_t clen,
                    const unsigned char *ad, size_t adlen,
                    const unsigned char nonce[FV_NONCE_BYTES],
                    const unsigned char key[FV_KEY_BYTES])
{
    if (clen < FV_TAG_BYTES)
        return FV_ECORRUPT;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(m, NULL, NULL, c, clen, ad,
                                                   adlen, nonce, key) != 0) {
        sodium_memzero(m, clen - FV_TAG_BYTES);
        return FV_ECORRUPT;
    }
    return FV_OK;
}

void fv_sign_keypair(unsigned char pk[FV_SIGN_PK_BYTES],
                     unsigned char sk[FV_SIGN_SK_BYTES])
{
    crypto_sign_keypair(pk, sk);
}

void fv_sign(unsigned char sig[FV_SIG_BYTES], const unsigned char *m,
             size_t mlen, const unsigned char sk[FV_SIGN_SK_BYTES])
{
    crypto_sign_detached(sig, NULL, m, mlen, sk);
}

int fv_sign_verify(const unsigned char sig[FV_SIG_BYTES],
                   const unsigned char *m, size_t mlen,
                   const unsigned char pk[FV_SIGN_PK_BYTES])
{
    int ok = crypto_sign_verify_detached(sig, m, mlen, pk) == 0;
#ifdef FV_FUZZING
    /* The fuzz build only (CMake FV_FUZZ, never a release: SECURITY.md):
     * every signature passes, so that mutated envelopes, HELLOs and
     * receipts reach the decoders behind their signatures. The real check
     * still runs above, to stay covered. */
    ok = 1;
#endif
    return ok ? FV_OK : FV_ECORRUPT;
}

void fv_box_keypair(unsigned char pk[FV_BOX_PK_BYTES],
                    unsigned char sk[FV_BOX_SK_BYTES])
{
    crypto_box_keypair(pk, sk);
}

int fv_seal(unsigned char *c, const unsigned char *m, size_t mlen,
            const unsigned char pk[FV_BOX_PK_BYTES])
{
    /* Fails only for a public key of low order. */
    return crypto_box_seal(c, m, mlen, pk) == 0 ? FV_OK : FV_EINVAL;
}

int fv_seal_open(unsigned char *m, const unsigned char *c, size_t clen,
                 const unsigned char pk[FV_BOX_PK_BYTES],
                 const unsigned char sk[FV_BOX_SK_BYTES])
{
    if (clen < FV_SEAL_BYTES)
        return FV_ECORRUPT;
    return crypto_box_seal_open(m, c, clen, pk, sk) == 0 ? FV_OK : FV_ECORRUPT;
}

void fv_kdf_derive(unsigned char *sub, size_t sublen, uint64_t id,
                   const char ctx[8], const unsigned char key[FV_KEY_BYTES])
{
    crypto_kdf_derive_from_key(sub, sublen, id, ctx, key);
}

int fv_pwhash_params_ok(uint64_t opslimit, uint64_t memlimit)
{
    /* Past FV_PWHASH_*_MAX a cost is damage, not a choice: a flipped high
     * bit would hang the open for hours or exhaust memory. */
    return opslimit >= crypto_pwhash_OPSLIMIT_MIN &&
           opslimit <= crypto_pwhash_OPSLIMIT_MAX &&
           opslimit <= FV_PWHASH_OPS_MAX &&
           memlimit >= crypto_pwhash_MEMLIMIT_MIN &&
           memlimit <= crypto_pwhash_MEMLIMIT_MAX && memlimit <= SIZE_MAX &&
           memlimit <= FV_PWHASH_MEM_MAX;
}

int fv_pwhash(unsigned char *out, size_t outlen, const char *pass,
              size_t passlen, const unsigned char salt[FV_SALT_BYTES],
              uint64_t opslimit, uint64_t memlimit)
{
    if (!fv_pwhash_params_ok(opslimit, memlimit))
        return FV_EINVAL;
    if (crypto_pwhash(out, outlen, pass, passlen, salt, opslimit,
                      (size_t)memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return FV_ENOMEM;
    return FV_OK;
}

/* ---- organisation signatures (docs/FORMAT.md 15) ----------------------- */

/* The Ed25519 form of the organisation's X25519 key pair, as XEdDSA
 * (Signal's construction) does it: the clamped X25519 scalar k, reduced
 * mod L, gives the point E = kB whose Montgomery u is the X25519 public
 * key. The public key is E with its sign bit cleared (A), the scalar a is k
 * or -k to match. No second key to keep: every holder of the organisation's
 * secret key can sign, and every device that knows the public key can
 * check, with nothing new to distribute or trust. */
static int org_scalar(unsigned char a[32], unsigned char kid[32],
                      const unsigned char org_sk[FV_BOX_SK_BYTES])
{
    unsigned char wide[64];
    int rc = FV_OK;

    memset(wide, 0, sizeof wide);
    memcpy(wide, org_sk, 32);
    wide[0] &= 248;
    wide[31] &= 127;
    wide[31] |= 64;
    crypto_core_ed25519_scalar_reduce(a, wide);
    if (crypto_scalarmult_ed25519_base_noclamp(kid, a) != 0)
        rc = FV_EINVAL;
    else if (kid[31] & 0x80) {
        crypto_core_ed25519_scalar_negate(wide, a);
        memcpy(a, wide, 32);
        kid[31] &= 0x7f;
    }
    sodium_memzero(wide, sizeof wide);
    return rc;
}

int fv_org_sign(unsigned char sig[FV_SIG_BYTES], unsigned char kid[32],
                const unsigned char *m, size_t mlen,
                const unsigned char org_sk[FV_BOX_SK_BYTES])
{
    static const unsigned char label[] = "FieldVault organisation signature nonce v1";
    unsigned char a[32], r[32], h[64], prefix[32], noise[32];
    crypto_hash_sha512_state st;
    int rc;

    if ((rc = org_scalar(a, kid, org_sk)))
        goto cleanup;
    /* The nonce: secret (keyed by the secret key), different per message,
     * and hedged with fresh randomness against a weak or faulty state. */
    crypto_generichash(prefix, sizeof prefix, label, sizeof label - 1, org_sk,
                       FV_BOX_SK_BYTES);
    randombytes_buf(noise, sizeof noise);
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, prefix, sizeof prefix);
    crypto_hash_sha512_update(&st, noise, sizeof noise);
    crypto_hash_sha512_update(&st, m, mlen);
    crypto_hash_sha512_final(&st, h);
    crypto_core_ed25519_scalar_reduce(r, h);
    if (crypto_scalarmult_ed25519_base_noclamp(sig, r) != 0) {
        rc = FV_EINVAL;
        goto cleanup;
    }
    /* s = r + SHA-512(R || A || m) a mod L: a plain Ed25519 signature
     * under A. */
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, sig, 32);
    crypto_hash_sha512_update(&st, kid, 32);
    crypto_hash_sha512_update(&st, m, mlen);
    crypto_hash_sha512_final(&st, h);
    crypto_core_ed25519_scalar_reduce(prefix, h);
    crypto_core_ed25519_scalar_mul(h, prefix, a);
    crypto_core_ed25519_scalar_add(sig + 32, r, h);
    if (crypto_sign_verify_detached(sig, m, mlen, kid) != 0)
        rc = FV_EINVAL;
cleanup:
    sodium_memzero(a, sizeof a);
    sodium_memzero(r, sizeof r);
    sodium_memzero(h, sizeof h);
    sodium_memzero(prefix, sizeof prefix);
    sodium_memzero(noise, sizeof noise);
    sodium_memzero(&st, sizeof st);
    return rc;
}

int fv_org_sign_pk(unsigned char kid[32],
                   const unsigned char org_sk[FV_BOX_SK_BYTES])
{
    unsigned char a[32];
    int rc = org_scalar(a, kid, org_sk);
    sodium_memzero(a, sizeof a);
    return rc;
}

int fv_org_kid_ok(const unsigned char kid[32],
                  const unsigned char org_pk[FV_BOX_PK_BYTES])
{
    unsigned char u[32];
    int ok;
    /* A and -A have the same u: the sign bit is fixed to 0 so that one
     * organisation key has one signing key. */
    if ((kid[31] & 0x80) || crypto_sign_ed25519_pk_to_curve25519(u, kid) != 0)
        return 0;
    ok = sodium_memcmp(u, org_pk, 32) == 0;
    return ok;
}
