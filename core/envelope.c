/* envelope.c - build, parse and open envelopes (see envelope.h and
 * docs/FORMAT.md). */
#include "envelope.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fieldvault.h"

#define COSE_TAG_SIGN1 18
#define COSE_HDR_ALG 1
#define COSE_HDR_KID 4
#define COSE_ALG_EDDSA (-8)
#define SEALED_KEY_BYTES (FV_KEY_BYTES + FV_SEAL_BYTES)

enum body_key {
    BODY_VERSION = 1,
    BODY_KIND = 2,
    BODY_RECORD = 3,
    BODY_PARENTS = 4,
    BODY_RECIPIENTS = 5,
    BODY_NONCE = 6,
    BODY_CIPHERTEXT = 7,
    BODY_CHUNKS = 8,
    BODY_COMMIT = 9
};

/* The key commitment: BLAKE2b-256 keyed with the content key over a fixed
 * string. It binds every recipient (and every grant) to the one key that
 * opens the signed ciphertext: no author can hand different readers
 * different plaintexts. */
static void key_commit(unsigned char out[FV_HASH_BYTES],
                       const unsigned char key[FV_KEY_BYTES])
{
    static const char label[] = "FieldVault key commitment v1";
    fv_hash_keyed(out, label, sizeof label - 1, key, FV_KEY_BYTES);
}

/* The rules fv_env_parse enforces on kinds, parents and attachments, so that
 * nothing is signed that a reader would refuse. */
static int shape_ok(int kind, int genesis, size_t nparents, size_t natt)
{
    if (kind < FV_ENV_REVISION || kind > FV_ENV_RETRACTION)
        return 0;
    return genesis == (nparents == 0) &&
           (kind == FV_ENV_REVISION || (!genesis && natt == 0)) &&
           ((kind != FV_ENV_GRANT && !FV_ENV_IS_DESK(kind)) ||
            nparents == 1) &&
           natt <= FV_MAX_ATTACHMENTS;
}

/* A note, review state or retraction names the record itself (its genesis
 * revision) as its one parent. */
static int desk_parent_ok(int kind, const unsigned char *record,
                          const unsigned char (*parents)[FV_HASH_BYTES])
{
    return !FV_ENV_IS_DESK(kind) || memcmp(parents[0], record, 32) == 0;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 32); }

/* COSE Sig_structure for a Sign1 with empty external AAD (RFC 9052 4.4). */
static int sig_structure(fv_enc *e, const unsigned char *prot, size_t prot_len,
                         const unsigned char *body, size_t body_len)
{
    int rc;
    fv_enc_init(e);
    fv_enc_array(e, 4);
    fv_enc_cstr(e, "Signature1");
    fv_enc_bytes(e, prot, prot_len);
    fv_enc_bytes(e, "", 0);
    fv_enc_bytes(e, body, body_len);
    /* Out of memory halfway: the callers return at once, never reaching the
     * fv_enc_finish that would free the writer's buffer. */
    if ((rc = e->err))
        fv_enc_dispose(e);
    return rc;
}

static void encode_protected(fv_enc *e, const unsigned char *author)
{
    fv_enc_init(e);
    fv_enc_map(e, 2);
    fv_enc_uint(e, COSE_HDR_ALG);
    fv_enc_int(e, COSE_ALG_EDDSA);
    fv_enc_uint(e, COSE_HDR_KID);
    fv_enc_bytes(e, author, FV_SIGN_PK_BYTES);
}

int fv_env_build(unsigned char **out, size_t *out_len,
                 unsigned char id[FV_HASH_BYTES], const fv_env_spec *sp)
{
    unsigned char key[FV_KEY_BYTES], nonce[FV_NONCE_BYTES];
    unsigned char parents[FV_ENV_MAX_PARENTS][32];
    unsigned char recips[FV_ENV_MAX_RECIPIENTS][32];
    unsigned char sealed[FV_ENV_MAX_RECIPIENTS][SEALED_KEY_BYTES];
    unsigned char sig[FV_SIG_BYTES], commit[FV_HASH_BYTES];
    unsigned char *ct = NULL, *body = NULL, *prot = NULL, *tbs = NULL;
    size_t body_len = 0, prot_len = 0, tbs_len = 0, i, a, c, padded;
    fv_enc e;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (sp->nparents > FV_ENV_MAX_PARENTS || sp->nrecipients == 0 ||
        sp->nrecipients > FV_ENV_MAX_RECIPIENTS ||
        (sp->record == NULL) != (sp->nparents == 0) ||
        !shape_ok(sp->kind, sp->record == NULL, sp->nparents, sp->nattachments) ||
        !desk_parent_ok(sp->kind, sp->record, sp->parents))
        return FV_EINVAL;
    if (sp->payload_len > FV_ENV_MAX_BYTES)
        return FV_ELIMIT;
    padded = (size_t)fv_env_padded_len(sp->payload_len);
    if (padded > FV_ENV_MAX_BYTES)
        return FV_ELIMIT;
    ct = malloc(padded + FV_TAG_BYTES);
    if (!ct)
        return FV_ENOMEM;
    /* Version 2: payload || 0x80 || zeros, encrypted in place, so that
     * the padding is authenticated with the payload and no plaintext copy
     * outlives the encryption. */
    if (sp->payload_len)
        memcpy(ct, sp->payload, sp->payload_len);
    ct[sp->payload_len] = 0x80;
    memset(ct + sp->payload_len + 1, 0, padded - sp->payload_len - 1);

    if (sp->content_key)
        memcpy(key, sp->content_key, sizeof key);
    else
        fv_random(key, sizeof key);
    fv_random(nonce, sizeof nonce);
    fv_aead_encrypt(ct, ct, padded, NULL, 0, nonce, key);
    if (sp->nparents) {
        memcpy(parents, sp->parents, sp->nparents * 32);
        qsort(parents, sp->nparents, 32, cmp_id);
    }
    memcpy(recips, sp->recipients, sp->nrecipients * 32);
    qsort(recips, sp->nrecipients, 32, cmp_id);
    for (i = 0; i < sp->nrecipients; i++) {
        if ((i > 0 && memcmp(recips[i - 1], recips[i], 32) == 0) ||
            (rc = fv_seal(sealed[i], key, sizeof key, recips[i])) != FV_OK) {
            rc = FV_EINVAL;
            goto done;
        }
    }
    for (i = 1; i < sp->nparents; i++)
        if (memcmp(parents[i - 1], parents[i], 32) == 0) {
            rc = FV_EINVAL;
            goto done;
        }

    fv_enc_init(&e);
    fv_enc_map(&e, sp->record ? 9 : 8);
    fv_enc_uint(&e, BODY_VERSION);
    fv_enc_uint(&e, FV_ENV_VERSION);
    fv_enc_uint(&e, BODY_KIND);
    fv_enc_uint(&e, (uint64_t)sp->kind);
    if (sp->record) {
        fv_enc_uint(&e, BODY_RECORD);
        fv_enc_bytes(&e, sp->record, 32);
    }
    fv_enc_uint(&e, BODY_PARENTS);
    fv_enc_array(&e, sp->nparents);
    for (i = 0; i < sp->nparents; i++)
        fv_enc_bytes(&e, parents[i], 32);
    fv_enc_uint(&e, BODY_RECIPIENTS);
    fv_enc_array(&e, sp->nrecipients);
    for (i = 0; i < sp->nrecipients; i++) {
        fv_enc_array(&e, 2);
        fv_enc_bytes(&e, recips[i], 32);
        fv_enc_bytes(&e, sealed[i], SEALED_KEY_BYTES);
    }
    fv_enc_uint(&e, BODY_NONCE);
    fv_enc_bytes(&e, nonce, sizeof nonce);
    fv_enc_uint(&e, BODY_CIPHERTEXT);
    fv_enc_bytes(&e, ct, padded + FV_TAG_BYTES);
    fv_enc_uint(&e, BODY_CHUNKS);
    fv_enc_array(&e, sp->nattachments);
    for (a = 0, c = 0; a < sp->nattachments; a++) {
        fv_enc_array(&e, sp->chunk_counts[a]);
        for (uint64_t k = 0; k < sp->chunk_counts[a]; k++, c++)
            fv_enc_bytes(&e, sp->chunks[c], 32);
    }
    fv_enc_uint(&e, BODY_COMMIT);
    key_commit(commit, key);
    fv_enc_bytes(&e, commit, sizeof commit);
    if ((rc = fv_enc_finish(&e, &body, &body_len)))
        goto done;

    encode_protected(&e, sp->sign_pk);
    if ((rc = fv_enc_finish(&e, &prot, &prot_len)))
        goto done;
    if ((rc = sig_structure(&e, prot, prot_len, body, body_len)) ||
        (rc = fv_enc_finish(&e, &tbs, &tbs_len)))
        goto done;
    fv_sign(sig, tbs, tbs_len, sp->sign_sk);

    fv_enc_init(&e);
    fv_enc_tag(&e, COSE_TAG_SIGN1);
    fv_enc_array(&e, 4);
    fv_enc_bytes(&e, prot, prot_len);
    fv_enc_map(&e, 0);
    fv_enc_bytes(&e, body, body_len);
    fv_enc_bytes(&e, sig, sizeof sig);
    if ((rc = fv_enc_finish(&e, out, out_len)))
        goto done;
    if (*out_len > FV_ENV_MAX_BYTES) {
        /* Nothing is signed that a reader would refuse. */
        free(*out);
        *out = NULL;
        *out_len = 0;
        rc = FV_ELIMIT;
        goto done;
    }
    fv_hash(id, *out, *out_len);
done:
    fv_wipe(key, sizeof key);
    free(ct);
    fv_enc_free_buf(body, body_len);
    fv_enc_free_buf(prot, prot_len);
    fv_enc_free_buf(tbs, tbs_len);
    return rc;
}

static int parse_protected(fv_env *e, const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t m;
    int64_t alg;
    fv_dec_init(&d, p, n);
    fv_dec_map(&d, &m);
    if (m != 2)
        return FV_ECORRUPT;
    fv_dec_key(&d, COSE_HDR_ALG);
    fv_dec_int(&d, &alg);
    fv_dec_key(&d, COSE_HDR_KID);
    fv_dec_bytes_exact(&d, e->author, sizeof e->author);
    if (fv_dec_finish(&d) || alg != COSE_ALG_EDDSA)
        return FV_ECORRUPT;
    return FV_OK;
}

/* Reads an array of strictly increasing 32-byte ids. */
static int parse_ids(fv_dec *d, unsigned char (*out)[32], size_t max,
                     size_t *count)
{
    size_t n;
    if (fv_dec_array(d, &n) || n > max)
        return FV_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        if (fv_dec_bytes_exact(d, out[i], 32) ||
            (i > 0 && memcmp(out[i - 1], out[i], 32) >= 0))
            return FV_ECORRUPT;
    }
    *count = n;
    return FV_OK;
}

static int parse_chunks(fv_env *e, fv_dec *d)
{
    size_t natt, n, total = 0;
    fv_dec probe;

    if (fv_dec_array(d, &natt) || natt > FV_MAX_ATTACHMENTS)
        return FV_ECORRUPT;
    /* First pass counts, so one allocation holds every hash. */
    probe = *d;
    for (size_t a = 0; a < natt; a++) {
        if (fv_dec_array(&probe, &n))
            return FV_ECORRUPT;
        total += n; /* each count is bounded by the bytes left: no overflow */
        for (size_t i = 0; i < n; i++) {
            const unsigned char *h;
            size_t hl;
            if (fv_dec_bytes(&probe, &h, &hl) || hl != 32)
                return FV_ECORRUPT;
        }
    }
    e->chunk_counts = calloc(natt ? natt : 1, sizeof *e->chunk_counts);
    e->chunks = malloc(total ? total * 32 : 1);
    if (!e->chunk_counts || !e->chunks)
        return FV_ENOMEM;
    for (size_t a = 0, c = 0; a < natt; a++) {
        fv_dec_array(d, &n);
        e->chunk_counts[a] = n;
        for (size_t i = 0; i < n; i++, c++)
            fv_dec_bytes_exact(d, e->chunks[c], 32);
    }
    e->nattachments = natt;
    e->nchunks = total;
    return d->err;
}

static int parse_body(fv_env *e, const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t m, i, len;
    uint64_t version, kind = 0;
    const unsigned char *b;
    int rc;

    fv_dec_init(&d, p, n);
    if (fv_dec_map(&d, &m) || fv_dec_key(&d, BODY_VERSION) ||
        fv_dec_uint(&d, &version))
        return FV_ECORRUPT;
    if (version > FV_ENV_VERSION)
        return FV_EVERSION;
    if ((version != FV_ENV_VERSION_1 && version != FV_ENV_VERSION) ||
        (m != 8 && m != 9))
        return FV_ECORRUPT;
    e->version = (int)version;
    fv_dec_key(&d, BODY_KIND);
    fv_dec_uint(&d, &kind);
    if (kind < FV_ENV_REVISION || kind > FV_ENV_RETRACTION)
        return FV_ECORRUPT;
    e->kind = (int)kind;
    e->genesis = (m == 8);
    if (!e->genesis) {
        fv_dec_key(&d, BODY_RECORD);
        fv_dec_bytes_exact(&d, e->record, 32);
    }
    fv_dec_key(&d, BODY_PARENTS);
    if (parse_ids(&d, e->parents, FV_ENV_MAX_PARENTS, &e->nparents))
        return FV_ECORRUPT;
    fv_dec_key(&d, BODY_RECIPIENTS);
    if (fv_dec_array(&d, &m) || m == 0 || m > FV_ENV_MAX_RECIPIENTS)
        return FV_ECORRUPT;
    for (i = 0; i < m; i++) {
        size_t two;
        if (fv_dec_array(&d, &two) || two != 2 ||
            fv_dec_bytes(&d, &b, &len) || len != FV_BOX_PK_BYTES ||
            (i > 0 && memcmp(e->recipient_pk[i - 1], b, 32) >= 0))
            return FV_ECORRUPT;
        e->recipient_pk[i] = b;
        if (fv_dec_bytes(&d, &b, &len) || len != SEALED_KEY_BYTES)
            return FV_ECORRUPT;
        e->recipient_seal[i] = b;
    }
    e->nrecipients = m;
    fv_dec_key(&d, BODY_NONCE);
    if (fv_dec_bytes(&d, &e->nonce, &len) || len != FV_NONCE_BYTES)
        return FV_ECORRUPT;
    fv_dec_key(&d, BODY_CIPHERTEXT);
    if (fv_dec_bytes(&d, &e->ct, &e->ctlen) || e->ctlen < FV_TAG_BYTES)
        return FV_ECORRUPT;
    /* A version 2 plaintext is a bucket length (FORMAT.md 5.8): checked
     * here, so that a server holding no key refuses any other length. */
    if (e->version != FV_ENV_VERSION_1 &&
        (e->ctlen - FV_TAG_BYTES < FV_PAD_FLOOR ||
         fv_padme(e->ctlen - FV_TAG_BYTES) != e->ctlen - FV_TAG_BYTES))
        return FV_ECORRUPT;
    fv_dec_key(&d, BODY_CHUNKS);
    if (d.err)
        return FV_ECORRUPT;
    if ((rc = parse_chunks(e, &d)) != FV_OK)
        return rc;
    fv_dec_key(&d, BODY_COMMIT);
    if (fv_dec_bytes(&d, &e->commit, &len) || len != FV_HASH_BYTES ||
        fv_dec_finish(&d))
        return FV_ECORRUPT;
    /* A genesis revision has no parents; every later envelope has some;
     * only revisions carry attachments; a grant names exactly the one
     * envelope whose key it carries; a note, review state or retraction
     * names exactly the record's genesis. */
    if (!shape_ok(e->kind, e->genesis, e->nparents, e->nattachments) ||
        !desk_parent_ok(e->kind, e->record, e->parents))
        return FV_ECORRUPT;
    return FV_OK;
}

int fv_env_parse(fv_env *e, const unsigned char *buf, size_t len)
{
    return fv_env_parse_ex(e, buf, len, 0);
}

int fv_env_parse_ex(fv_env *e, const unsigned char *buf, size_t len,
                    unsigned flags)
{
    fv_dec d;
    uint64_t tag;
    size_t n, prot_len, body_len, tbs_len = 0;
    const unsigned char *prot, *body, *sig;
    unsigned char *tbs = NULL;
    fv_enc enc;
    int rc;

    memset(e, 0, sizeof *e);
    if (len > FV_ENV_MAX_BYTES)
        return FV_ECORRUPT;
    fv_dec_init(&d, buf, len);
    fv_dec_tag(&d, &tag);
    fv_dec_array(&d, &n);
    if (d.err || tag != COSE_TAG_SIGN1 || n != 4)
        return FV_ECORRUPT;
    fv_dec_bytes(&d, &prot, &prot_len);
    fv_dec_map(&d, &n);
    if (d.err || n != 0)
        return FV_ECORRUPT;
    fv_dec_bytes(&d, &body, &body_len);
    fv_dec_bytes(&d, &sig, &n);
    if (fv_dec_finish(&d) || n != FV_SIG_BYTES)
        return FV_ECORRUPT;
    if ((rc = parse_protected(e, prot, prot_len)))
        return rc;
    if (!(flags & FV_ENV_SIG_KNOWN)) {
        if ((rc = sig_structure(&enc, prot, prot_len, body, body_len)) ||
            (rc = fv_enc_finish(&enc, &tbs, &tbs_len)))
            return rc;
        rc = fv_sign_verify(sig, tbs, tbs_len, e->author);
        fv_enc_free_buf(tbs, tbs_len);
        if (rc)
            return rc;
    }
    fv_hash(e->id, buf, len);
    rc = parse_body(e, body, body_len);
    if (rc) {
        fv_env_clear(e);
        return rc;
    }
    if (e->genesis)
        memcpy(e->record, e->id, 32);
    return FV_OK;
}

void fv_env_clear(fv_env *e)
{
    free(e->chunk_counts);
    free(e->chunks);
    e->chunk_counts = NULL;
    e->chunks = NULL;
    e->nattachments = e->nchunks = 0;
}

int fv_env_unseal(const fv_env *e, const unsigned char pk[FV_BOX_PK_BYTES],
                  const unsigned char sk[FV_BOX_SK_BYTES],
                  unsigned char key[FV_KEY_BYTES])
{
    for (size_t i = 0; i < e->nrecipients; i++)
        if (memcmp(e->recipient_pk[i], pk, FV_BOX_PK_BYTES) == 0)
            return fv_seal_open(key, e->recipient_seal[i], SEALED_KEY_BYTES, pk,
                                sk) ? FV_ECORRUPT : FV_OK;
    return FV_ENOTFOUND;
}

int fv_env_decrypt(const fv_env *e, const unsigned char key[FV_KEY_BYTES],
                   unsigned char **plain, size_t *plain_len)
{
    size_t mlen = e->ctlen - FV_TAG_BYTES;
    unsigned char commit[FV_HASH_BYTES], *m;

    *plain = NULL;
    *plain_len = 0;
    key_commit(commit, key);
    if (!fv_ct_equal(commit, e->commit, FV_HASH_BYTES))
        return FV_ECORRUPT; /* not the key the author committed to */
    m = malloc(mlen ? mlen : 1);
    if (!m)
        return FV_ENOMEM;
    if (fv_aead_decrypt(m, e->ct, e->ctlen, NULL, 0, e->nonce, key)) {
        free(m);
        return FV_ECORRUPT;
    }
    if (e->version != FV_ENV_VERSION_1) {
        /* Strip payload || 0x80 || zeros, strictly: the one padded length
         * for the payload's length, or the envelope is damaged. */
        size_t n = mlen;
        while (n > 0 && m[n - 1] == 0)
            n--;
        if (n == 0 || m[n - 1] != 0x80 || fv_env_padded_len(n - 1) != mlen) {
            fv_wipe(m, mlen);
            free(m);
            return FV_ECORRUPT;
        }
        mlen = n - 1;
        m[mlen] = 0; /* the marker, wiped like the rest */
    }
    *plain = m;
    *plain_len = mlen;
    return FV_OK;
}

uint64_t fv_padme(uint64_t n)
{
    unsigned e = 0, s = 0;
    uint64_t mask;

    if (n < 2)
        return n;
    while ((n >> e) > 1) /* e = floor(log2 n) */
        e++;
    while ((e >> s) > 1) /* s = floor(log2 e) */
        s++;
    s++;
    if (e <= s)
        return n;
    mask = ((uint64_t)1 << (e - s)) - 1;
    return (n + mask) & ~mask;
}

uint64_t fv_env_padded_len(uint64_t len)
{
    return fv_padme(len + 1 < FV_PAD_FLOOR ? FV_PAD_FLOOR : len + 1);
}

uint64_t fv_chunk_padded_len(uint64_t len, uint64_t chunk)
{
    uint64_t p = fv_padme(len < FV_PAD_FLOOR ? FV_PAD_FLOOR : len);
    return p < chunk ? p : chunk;
}

int fv_env_open(const fv_env *e, const unsigned char pk[FV_BOX_PK_BYTES],
                const unsigned char sk[FV_BOX_SK_BYTES], unsigned char **plain,
                size_t *plain_len)
{
    unsigned char key[FV_KEY_BYTES];
    int rc = fv_env_unseal(e, pk, sk, key);

    *plain = NULL;
    *plain_len = 0;
    if (rc == FV_OK)
        rc = fv_env_decrypt(e, key, plain, plain_len);
    fv_wipe(key, sizeof key);
    return rc;
}

void fv_env_free_plain(unsigned char *plain, size_t len)
{
    if (plain) {
        fv_wipe(plain, len);
        free(plain);
    }
}
