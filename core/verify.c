/* verify.c - chain of custody (fieldvault.h, fv_vault_verify): every stored
 * envelope re-parsed and its signature, content address, key commitment and
 * revision links checked again, every chunk re-hashed, every server receipt
 * checked against the server's key and the envelopes it names. Nothing is
 * trusted from an earlier check: this is what a coordinator runs before
 * handing records over as evidence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"
#include "result.h"
#include "store.h"
#include "vault_internal.h"
#include "vault_sync.h"

#define RECEIPT_CONTEXT "FieldVault receipt v1" /* docs/PROTOCOL.md */
#define EPOCH_BYTES 16

struct vctx {
    fv_vault *v;
    fv_verify_fn fn;
    void *payload;
    fv_verify_report rep;
    fv_sync_state st;
    int have_state;
    int canceled;
};

/* Reports one failed check. Non-zero when the caller asked to stop. */
static int issue(struct vctx *c, const unsigned char *record,
                 const unsigned char *envelope, const char *problem)
{
    fv_verify_issue i = {record, envelope, problem};
    c->rep.failures++;
    if (c->fn && c->fn(&i, c->payload)) {
        c->canceled = 1;
        return FV_ECANCELED;
    }
    return FV_OK;
}

/* Every held chunk of a revision's attachments has the size its
 * attachment's `size` and `chunk` give it (FORMAT.md 8): the hashes are
 * signed, but so is the size, and the two must agree to the last byte. */
static int check_chunk_sizes(struct vctx *c, const fv_env *e, const fv_rec *r)
{
    size_t k = 0, len;
    for (size_t i = 0; i < r->pub.nattachments; i++) {
        const fv_attachment_info *a = &r->pub.attachments[i];
        for (uint64_t j = 0; j < a->chunks; j++, k++) {
            int rc = fv_store_chunk_len(c->v->store, e->chunks[k], &len);
            if (rc < 0)
                return rc;
            if (rc == 1 && len != fv_chunk_ct_bytes(a, r->padded[i], j))
                return issue(c, e->record, e->id, "an attachment's size does "
                                                  "not match its chunks");
        }
    }
    return FV_OK;
}

/* A key grant whose own payload is sound must also carry its target's key
 * (FORMAT.md 5.6): from the target's author, for its record, and a key that
 * passes the target's commitment. A read ignores any other grant; verify
 * says so. A target this vault does not hold (or no longer holds) has
 * nothing to check against. */
static int check_grant_target(struct vctx *c, const fv_env *g)
{
    unsigned char key[FV_KEY_BYTES], rec[FV_ID_BYTES], *bytes = NULL;
    unsigned char *plain = NULL;
    size_t len = 0, n = 0;
    int kind, rc;
    fv_env t;

    rc = fv_store_env_get(c->v->store, g->parents[0], rec, &kind, &bytes, &len,
                          NULL);
    if (rc == FV_ENOTFOUND || (rc == FV_OK && !bytes)) {
        free(bytes);
        return FV_OK;
    }
    if (rc)
        return rc;
    rc = fv_env_parse(&t, bytes, len);
    free(bytes);
    if (rc)
        return rc == FV_ENOMEM ? rc : FV_OK; /* reported as the target's own */
    if (memcmp(t.author, g->author, FV_SIGN_PK_BYTES) != 0 ||
        memcmp(t.record, g->record, FV_ID_BYTES) != 0) {
        fv_env_clear(&t);
        return issue(c, g->record, g->id, "a key grant is not from its target's "
                                          "author or not for its record");
    }
    rc = fv_env_unseal(g, c->v->box_pk, c->v->sec->box_sk, key);
    if (rc == FV_ENOTFOUND && c->v->has_org_sk)
        rc = fv_env_unseal(g, c->v->org_pk, c->v->sec->org_sk, key);
    if (rc == FV_OK)
        rc = fv_env_decrypt(&t, key, &plain, &n);
    fv_wipe(key, sizeof key);
    fv_env_free_plain(plain, n);
    fv_env_clear(&t);
    if (rc == FV_ECORRUPT)
        return issue(c, g->record, g->id, "a key grant carries another key "
                                          "than its target's");
    return rc == FV_ENOMEM ? rc : FV_OK;
}

/* Decrypts the payload where this vault can, and checks it against
 * FORMAT.md and against the signed envelope: every kind, key grants
 * included, by the same decoders an import uses (fv_payload_check). */
static int check_payload(struct vctx *c, const fv_env *e)
{
    unsigned char *plain = NULL;
    size_t n = 0;
    fv_rec *r = NULL;
    int rc = fv_v_open_payload(c->v, e, &plain, &n);

    if (rc == FV_ENOTFOUND && e->kind == FV_ENV_REVISION) {
        /* A record revision this vault cannot open is reported: a reader
         * here sees nothing of it, and should know why (a coordinator
         * without the organisation key, a key grant yet to arrive, a key
         * nobody here holds). Other kinds sealed elsewhere (notes between
         * others, coordinators' review states) are not meant for it. */
        char why[160];
        snprintf(why, sizeof why, "this vault cannot open the revision: %s",
                 fv_unreadable_why(fv_v_sealed_reason(c->v, e)));
        return issue(c, e->record, e->id, why);
    }
    if (rc == FV_ENOTFOUND || rc == FV_ENOMEM)
        return rc == FV_ENOMEM ? rc : FV_OK; /* not sealed to this vault */
    if (rc < 0 && rc != FV_ECORRUPT)
        return rc;
    if (rc == FV_ECORRUPT)
        return issue(c, e->record, e->id, "the content does not decrypt under "
                                          "its committed key");
    if (e->kind == FV_ENV_REVISION) {
        rc = fv_payload_decode(&r, plain, n);
        if (rc == FV_ENOMEM)
            goto done;
        if (rc)
            rc = issue(c, e->record, e->id, "the decrypted record is malformed");
        else if (fv_payload_check_rec(e, r))
            rc = issue(c, e->record, e->id, "the attachment manifest does "
                                            "not match the signed chunk lists");
        else
            rc = check_chunk_sizes(c, e, r);
    } else {
        static const char *const what[] = {
            [FV_ENV_TOMBSTONE] = "the decrypted tombstone is malformed",
            [FV_ENV_GRANT] = "the decrypted key grant is malformed",
            [FV_ENV_NOTE] = "the decrypted note is malformed",
            [FV_ENV_STATE] = "the decrypted review state is malformed",
            [FV_ENV_RETRACTION] = "the decrypted retraction is malformed",
        };
        rc = fv_payload_check(e, plain, n);
        if (rc && rc != FV_ENOMEM)
            rc = issue(c, e->record, e->id, what[e->kind]);
        else if (rc == FV_OK && e->kind == FV_ENV_GRANT)
            rc = check_grant_target(c, e);
    }
done:
    fv_rec_free(r);
    fv_env_free_plain(plain, n);
    return rc;
}

static int env_cb(const fv_store_env *se, void *payload)
{
    struct vctx *c = payload;
    unsigned char prec[FV_ID_BYTES];
    fv_env e;
    int rc;

    if (!se->bytes)
        return FV_OK; /* destroyed by a delete or after delivery */
    c->rep.envelopes++;
    rc = fv_env_parse(&e, se->bytes, se->len);
    if (rc == FV_ENOMEM)
        return rc;
    if (rc)
        return issue(c, se->record, se->id, "the envelope is malformed or its "
                                            "signature does not verify");
    if (!fv_ct_equal(e.id, se->id, FV_ID_BYTES))
        rc = issue(c, se->record, se->id, "the envelope's bytes do not hash to "
                                          "its id (content address)");
    else if (memcmp(e.record, se->record, FV_ID_BYTES) != 0 || e.kind != se->kind)
        rc = issue(c, se->record, se->id, "the envelope is filed under another "
                                          "record or kind than it says");
    /* Every parent known, and of the same record. A retraction outlives the
     * record it names (whose envelopes it destroyed): it has none to link.
     * A tombstone may name revisions that never left their device: a record
     * deleted before its first sync destroyed them there, and only the
     * tombstone travelled (the ones that are here must still match). */
    for (size_t i = 0; rc == FV_OK && e.kind != FV_ENV_RETRACTION &&
                       i < e.nparents; i++) {
        int r = fv_store_env_record(c->v->store, e.parents[i], prec);
        if (r == FV_ENOTFOUND && e.kind == FV_ENV_TOMBSTONE)
            rc = FV_OK;
        else if (r == FV_ENOTFOUND)
            rc = issue(c, e.record, e.id, "a parent revision is missing");
        else if (r)
            rc = r;
        else if (memcmp(prec, e.record, FV_ID_BYTES) != 0)
            rc = issue(c, e.record, e.id, "a parent belongs to another record");
    }
    if (rc == FV_OK)
        rc = check_payload(c, &e);
    fv_env_clear(&e);
    return rc;
}

static int chunk_cb(const unsigned char *hash, const unsigned char *data,
                    size_t len, void *payload)
{
    struct vctx *c = payload;
    unsigned char h[FV_HASH_BYTES];
    c->rep.chunks++;
    fv_hash(h, data, len);
    if (!fv_ct_equal(h, hash, FV_HASH_BYTES))
        return issue(c, NULL, NULL, "a stored attachment chunk does not match "
                                    "its hash");
    return FV_OK;
}

/* receipt-body = ["FieldVault receipt v1", epoch, device, time, [* [id, seq]]]
 * (docs/PROTOCOL.md). Calls check_id for each id; FV_ECORRUPT if malformed. */
static int receipt_decode(const unsigned char *body, size_t len,
                          unsigned char epoch[EPOCH_BYTES],
                          unsigned char device[32], size_t *n,
                          const unsigned char **ids)
{
    fv_dec d;
    size_t five, count, two;
    int64_t t;
    uint64_t seq;

    fv_dec_init(&d, body, len);
    if (fv_dec_array(&d, &five) || five != 5 ||
        fv_dec_key_text(&d, RECEIPT_CONTEXT) ||
        fv_dec_bytes_exact(&d, epoch, EPOCH_BYTES) ||
        fv_dec_bytes_exact(&d, device, 32) || fv_dec_int(&d, &t) ||
        fv_dec_array(&d, &count) || count == 0)
        return FV_ECORRUPT;
    *ids = d.p + d.pos;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *p;
        size_t pn;
        if (fv_dec_array(&d, &two) || two != 2 || fv_dec_bytes(&d, &p, &pn) ||
            pn != 32 || fv_dec_uint(&d, &seq))
            return FV_ECORRUPT;
    }
    *n = count;
    return fv_dec_finish(&d);
}

static int receipt_cb(int64_t seq, const unsigned char *body, size_t len,
                      const unsigned char *sig, void *payload)
{
    struct vctx *c = payload;
    unsigned char epoch[EPOCH_BYTES], device[32], rec[FV_ID_BYTES];
    const unsigned char *ids;
    size_t n;
    fv_dec d;
    int rc;

    (void)seq;
    if (!body) {
        c->rep.receipts++;
        return issue(c, NULL, NULL, "a stored server receipt is damaged (it does not decrypt)");
    }
    if (receipt_decode(body, len, epoch,
                       device, &n, &ids)) {
        c->rep.receipts++;
        return issue(c, NULL, NULL, "a stored server receipt is malformed");
    }
    /* A receipt of an earlier server (before a move to a new one) was signed
     * by a key this vault no longer holds: it cannot be checked. */
    if (c->have_state && c->st.has_epoch &&
        memcmp(epoch, c->st.epoch, EPOCH_BYTES) != 0)
        return FV_OK;
    c->rep.receipts++;
    if (!c->have_state)
        return issue(c, NULL, NULL, "a server receipt, but no enrolled server "
                                    "key to check it against");
    if (!sig || fv_sign_verify(sig, body, len, c->st.server_key) != FV_OK)
        return issue(c, NULL, NULL, "a server receipt's signature does not verify");
    if (memcmp(device, c->v->sign_pk, 32) != 0)
        return issue(c, NULL, NULL, "a server receipt names another device");
    /* Every envelope it names that this vault still holds must be one this
     * device wrote. (One it no longer holds was retracted: its retraction
     * remains, and the receipt still proves the delivery.) */
    fv_dec_init(&d, ids, (size_t)(body + len - ids));
    for (size_t i = 0; i < n; i++) {
        const unsigned char *id;
        size_t two, idn;
        uint64_t s;
        fv_dec_array(&d, &two);
        fv_dec_bytes(&d, &id, &idn);
        fv_dec_uint(&d, &s);
        rc = fv_store_env_own(c->v->store, id);
        if (rc == 0 && fv_store_env_record(c->v->store, id, rec) == FV_OK)
            rc = issue(c, rec, id, "a server receipt names an envelope another "
                                   "device wrote");
        else if (rc == 1)
            rc = FV_OK;
        if (rc)
            return rc;
    }
    return FV_OK;
}

static int vault_verify(fv_vault *v, fv_verify_report *report, fv_verify_fn fn,
                        void *payload)
{
    struct vctx c;
    int rc;

    if (!v)
        return FV_EINVAL;
    if (report && !fv_result_ok(report, FV_RESULT_MIN(fv_verify_report, failures)))
        return fv_v_err(v, FV_EINVAL, "the fv_verify_report's size is not "
                        "set: start from FV_VERIFY_REPORT_INIT");
    memset(&c, 0, sizeof c);
    c.v = v;
    c.fn = fn;
    c.payload = payload;
    rc = fv_vs_state_get(v, &c.st);
    if (rc == FV_OK)
        c.have_state = 1;
    else if (rc != FV_ENOTFOUND)
        goto done;
    rc = fv_store_each_envelope(v->store, env_cb, &c);
    if (rc == FV_OK)
        rc = fv_store_each_chunk(v->store, chunk_cb, &c);
    if (rc == FV_OK)
        rc = fv_vs_each_receipt(v, receipt_cb, &c);
    if (rc == FV_ECANCELED && c.canceled)
        rc = fv_v_err(v, rc, "stopped by the caller");
    else if (rc == FV_ENOMEM)
        rc = fv_v_err(v, rc, "out of memory");
    else if (rc)
        rc = fv_v_serr(v, rc);
    else if (c.rep.failures)
        rc = fv_v_err(v, FV_ECORRUPT, "%llu check%s failed: the vault holds "
                                      "tampered or damaged data",
                      (unsigned long long)c.rep.failures,
                      c.rep.failures == 1 ? "" : "s");
done:
    fv_wipe(&c.st, sizeof c.st);
    if (report)
        fv_result_put(report, &c.rep, sizeof c.rep);
    return rc;
}

int fv_vault_verify(fv_vault *v, fv_verify_report *report, fv_verify_fn fn,
                    void *payload)
{
    return FV_CALL(v, vault_verify(v, report, fn, payload));
}
