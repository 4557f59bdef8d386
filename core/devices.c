/* devices.c - who may speak (docs/PROTOCOL.md, "Who may speak";
 * docs/FORMAT.md 15): device certificates signed by the organisation key,
 * the verified device list each vault keeps, and the quarantine where
 * envelopes by an author the list does not vouch for are kept apart until
 * its certificate arrives. */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "vault_internal.h"
#include "vault_sync.h"

#define CERT_LABEL "FieldVault device v1"
#define CERT_MAX_BYTES 1024 /* FV_MAX_CERT_BYTES in sync/proto.h */
#define COSE_TAG_SIGN1 18
#define COSE_ALG_EDDSA (-8)

/* ---- certificates ------------------------------------------------------ */

/* The COSE protected header: {1: -8, 4: kid}. */
static void enc_protected(fv_enc *e, const unsigned char kid[32])
{
    fv_enc_map(e, 2);
    fv_enc_uint(e, 1);
    fv_enc_int(e, COSE_ALG_EDDSA);
    fv_enc_uint(e, 4);
    fv_enc_bytes(e, kid, 32);
}

/* COSE's Sig_structure for a Sign1 with empty external AAD. */
static int sig_structure(unsigned char **out, size_t *len,
                         const unsigned char *prot, size_t prot_len,
                         const unsigned char *stmt, size_t stmt_len)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 4);
    fv_enc_cstr(&e, "Signature1");
    fv_enc_bytes(&e, prot, prot_len);
    fv_enc_bytes(&e, "", 0);
    fv_enc_bytes(&e, stmt, stmt_len);
    return fv_enc_finish(&e, out, len);
}

/* A certificate for `d`, signed with the organisation's secret key. */
static int cert_make(fv_vault *v, unsigned char **out, size_t *out_len,
                     const fv_store_device *d)
{
    unsigned char kid[32], sig[FV_SIG_BYTES];
    unsigned char *prot = NULL, *stmt = NULL, *tbs = NULL;
    size_t prot_len = 0, stmt_len = 0, tbs_len = 0;
    fv_enc e;
    int rc;

    *out = NULL;
    if ((rc = fv_org_sign_pk(kid, v->sec->org_sk)))
        return rc;
    fv_enc_init(&e);
    enc_protected(&e, kid);
    if ((rc = fv_enc_finish(&e, &prot, &prot_len)))
        goto cleanup;
    fv_enc_init(&e);
    fv_enc_array(&e, 5);
    fv_enc_cstr(&e, CERT_LABEL);
    fv_enc_bytes(&e, d->pk, 32);
    fv_enc_uint(&e, (uint64_t)d->role);
    fv_enc_int(&e, d->enrolled);
    if (d->has_revoked)
        fv_enc_int(&e, d->revoked);
    else
        fv_enc_null(&e);
    if ((rc = fv_enc_finish(&e, &stmt, &stmt_len)))
        goto cleanup;
    if ((rc = sig_structure(&tbs, &tbs_len, prot, prot_len, stmt, stmt_len)))
        goto cleanup;
    if ((rc = fv_org_sign(sig, kid, tbs, tbs_len, v->sec->org_sk)))
        goto cleanup;
    fv_enc_init(&e);
    fv_enc_tag(&e, COSE_TAG_SIGN1);
    fv_enc_array(&e, 4);
    fv_enc_bytes(&e, prot, prot_len);
    fv_enc_map(&e, 0);
    fv_enc_bytes(&e, stmt, stmt_len);
    fv_enc_bytes(&e, sig, sizeof sig);
    rc = fv_enc_finish(&e, out, out_len);
cleanup:
    fv_enc_free_buf(prot, prot_len);
    fv_enc_free_buf(stmt, stmt_len);
    fv_enc_free_buf(tbs, tbs_len);
    return rc;
}

/* Parses and verifies a certificate against the organisation's public key:
 * FV_OK with *d filled (d->cert points into `p`), FV_ECORRUPT for anything
 * malformed, non-canonical, signed by another key or failing its
 * signature. */
static int cert_parse(fv_store_device *d, const unsigned char *p, size_t n,
                      const unsigned char org_pk[32])
{
    const unsigned char *prot, *stmt, *sig, *kid, *pk;
    size_t prot_len, stmt_len, sig_len, kid_len, pk_len, count;
    const char *label;
    size_t label_len;
    unsigned char *tbs = NULL;
    size_t tbs_len = 0;
    uint64_t tag, role;
    int64_t alg;
    fv_dec dc, hp, st;
    int rc;

    if (n > CERT_MAX_BYTES)
        return FV_ECORRUPT;
    fv_dec_init(&dc, p, n);
    if (fv_dec_tag(&dc, &tag) || tag != COSE_TAG_SIGN1 ||
        fv_dec_array(&dc, &count) || count != 4 ||
        fv_dec_bytes(&dc, &prot, &prot_len) || fv_dec_map(&dc, &count) ||
        count != 0 || fv_dec_bytes(&dc, &stmt, &stmt_len) ||
        fv_dec_bytes(&dc, &sig, &sig_len) || sig_len != FV_SIG_BYTES ||
        fv_dec_finish(&dc))
        return FV_ECORRUPT;
    fv_dec_init(&hp, prot, prot_len);
    if (fv_dec_map(&hp, &count) || count != 2 || fv_dec_key(&hp, 1) ||
        fv_dec_int(&hp, &alg) || alg != COSE_ALG_EDDSA || fv_dec_key(&hp, 4) ||
        fv_dec_bytes(&hp, &kid, &kid_len) || kid_len != 32 ||
        fv_dec_finish(&hp))
        return FV_ECORRUPT;
    /* Only the organisation's own key speaks for it. */
    if (!fv_org_kid_ok(kid, org_pk))
        return FV_ECORRUPT;
    if ((rc = sig_structure(&tbs, &tbs_len, prot, prot_len, stmt, stmt_len)))
        return rc;
    rc = fv_sign_verify(sig, tbs, tbs_len, kid);
    fv_enc_free_buf(tbs, tbs_len);
    if (rc)
        return FV_ECORRUPT;
    memset(d, 0, sizeof *d);
    fv_dec_init(&st, stmt, stmt_len);
    if (fv_dec_array(&st, &count) || count != 5 ||
        fv_dec_text(&st, &label, &label_len) ||
        label_len != strlen(CERT_LABEL) ||
        memcmp(label, CERT_LABEL, label_len) != 0 ||
        fv_dec_bytes(&st, &pk, &pk_len) || pk_len != 32 ||
        fv_dec_uint(&st, &role) ||
        (role != FV_ROLE_FIELD && role != FV_ROLE_COORDINATOR) ||
        fv_dec_int(&st, &d->enrolled))
        return FV_ECORRUPT;
    if (!fv_dec_null(&st)) {
        if (fv_dec_int(&st, &d->revoked))
            return FV_ECORRUPT;
        d->has_revoked = 1;
    }
    if (fv_dec_finish(&st))
        return FV_ECORRUPT;
    memcpy(d->pk, pk, 32);
    d->role = (int)role;
    d->cert = p;
    d->cert_len = n;
    return FV_OK;
}

/* ---- the quarantine ----------------------------------------------------- */

/* The signed time of an envelope's payload (every kind has one, docs/FORMAT.md
 * 6, 7): FV_OK, FV_ENOTFOUND if this vault cannot open it, or FV_ECORRUPT. */
static int env_time(fv_vault *v, const fv_env *e, int64_t *t)
{
    unsigned char *plain = NULL;
    size_t plain_len = 0, n, i;
    int rc = fv_v_open_payload(v, e, &plain, &plain_len), found = 0;
    fv_dec d;

    if (rc)
        return rc == FV_ENOTFOUND ? rc : FV_ECORRUPT;
    fv_dec_init(&d, plain, plain_len);
    rc = fv_dec_map(&d, &n) ? FV_ECORRUPT : FV_OK;
    for (i = 0; rc == FV_OK && i < n && !found; i++) {
        const char *k;
        size_t klen;
        if (fv_dec_text(&d, &k, &klen))
            rc = FV_ECORRUPT;
        else if (klen == 4 && memcmp(k, "time", 4) == 0)
            rc = fv_dec_int(&d, t) ? FV_ECORRUPT : (found = 1, FV_OK);
        else if (fv_dec_skip(&d, 3))
            rc = FV_ECORRUPT;
    }
    if (rc == FV_OK && !found)
        rc = FV_ECORRUPT;
    fv_env_free_plain(plain, plain_len);
    return rc;
}

int fv_v_admit(fv_vault *v, const fv_env *e, const unsigned char *bytes,
               size_t len, int courier)
{
    fv_store_device d;
    fv_store_quarantined q;
    unsigned char rec[FV_ID_BYTES];
    int64_t t = 0;
    int rc, why;

    /* A device trusts itself. */
    if (memcmp(e->author, v->sign_pk, 32) == 0)
        return 1;
    /* From the server a vault takes the server's word (it refuses devices
     * that are not enrolled, or revoked), unless it holds the organisation
     * key: a coordinator's vault certifies the devices at each sync, before
     * it pulls, and holds to its own list. */
    if (!courier && !v->has_org_sk)
        return 1;
    rc = fv_store_env_record(v->store, e->id, rec);
    if (rc == FV_OK)
        return 1; /* held already: nothing new enters */
    if (rc != FV_ENOTFOUND)
        return fv_v_serr(v, rc);
    rc = fv_store_device_get(v->store, e->author, &d);
    if (rc == FV_ENOTFOUND) {
        why = FV_QUARANTINE_UNKNOWN;
    } else if (rc) {
        return fv_v_serr(v, rc);
    } else if (!d.has_revoked) {
        return 1;
    } else {
        /* Revoked: what it signed before its revocation stands; what is
         * dated after it, or cannot be dated here, is kept apart. */
        rc = env_time(v, e, &t);
        if (rc == FV_OK && t <= d.revoked)
            return 1;
        why = FV_QUARANTINE_REVOKED;
    }
    memset(&q, 0, sizeof q);
    q.id = e->id;
    q.author = e->author;
    q.kind = e->kind;
    q.why = why;
    q.courier = courier;
    q.arrived = fv_v_now();
    q.bytes = bytes;
    q.len = len;
    rc = fv_store_quarantine_put(v->store, &q);
    return rc ? fv_v_serr(v, rc) : 0;
}

struct held {
    unsigned char (*id)[FV_ID_BYTES];
    unsigned char **bytes;
    size_t *len;
    int *courier;
    size_t n, cap;
    int rc;
};

static void held_free(struct held *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->bytes[i]);
    free(h->id);
    free(h->bytes);
    free(h->len);
    free(h->courier);
    memset(h, 0, sizeof *h);
}

static int held_add(const fv_store_quarantined *q, void *payload)
{
    struct held *h = payload;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        void *a = realloc(h->id, cap * FV_ID_BYTES);
        if (a)
            h->id = a;
        void *b = a ? realloc(h->bytes, cap * sizeof *h->bytes) : NULL;
        if (b)
            h->bytes = b;
        void *c = b ? realloc(h->len, cap * sizeof *h->len) : NULL;
        if (c)
            h->len = c;
        void *d = c ? realloc(h->courier, cap * sizeof *h->courier) : NULL;
        if (!d)
            return h->rc = FV_ENOMEM;
        h->courier = d;
        h->cap = cap;
    }
    if (!(h->bytes[h->n] = malloc(q->len ? q->len : 1)))
        return h->rc = FV_ENOMEM;
    memcpy(h->bytes[h->n], q->bytes, q->len);
    memcpy(h->id[h->n], q->id, FV_ID_BYTES);
    h->len[h->n] = q->len;
    h->courier[h->n] = q->courier;
    h->n++;
    return 0;
}

/* Inside a transaction: the envelopes of `author` kept apart are taken out
 * and imported again under the list as it now stands (one dated after a
 * revocation goes back in). *released counts those stored. */
static int release(fv_vault *v, const unsigned char author[32],
                   size_t *released, int *retracted)
{
    struct held h;
    int rc;

    memset(&h, 0, sizeof h);
    rc = fv_store_quarantine_each(v->store, author, held_add, &h);
    if (h.rc)
        rc = h.rc;
    for (size_t i = 0; rc == FV_OK && i < h.n; i++) {
        rc = fv_v_serr(v, fv_store_quarantine_del(v->store, h.id[i]));
        if (rc == FV_OK)
            rc = fv_v_import_released(v, h.bytes[i], h.len[i], h.courier[i],
                                      released, retracted);
    }
    held_free(&h);
    return rc == FV_ENOMEM ? fv_v_err(v, rc, "out of memory") : rc;
}

/* Inside a transaction: keeps certificate `nd` if it says something new
 * (a device not listed yet, or its revocation, or an earlier one: a
 * revocation is never undone), then releases what it covers. */
static int merge(fv_vault *v, const fv_store_device *nd, int *changed,
                 size_t *released, int *retracted)
{
    fv_store_device old;
    int rc = fv_store_device_get(v->store, nd->pk, &old);

    *changed = 0;
    if (rc && rc != FV_ENOTFOUND)
        return fv_v_serr(v, rc);
    if (rc == FV_OK &&
        !(nd->has_revoked && (!old.has_revoked || nd->revoked < old.revoked)))
        return FV_OK;
    if ((rc = fv_v_serr(v, fv_store_device_put(v->store, nd))))
        return rc;
    *changed = 1;
    return release(v, nd->pk, released, retracted);
}

static int finish(fv_vault *v, int rc, int retracted)
{
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_commit(v->store));
    if (rc)
        fv_store_rollback(v->store);
    else if (retracted)
        rc = fv_v_serr(v, fv_store_checkpoint(v->store));
    return rc;
}

int fv_vs_can_certify(const fv_vault *v) { return v->has_org_sk; }

int fv_vs_certify(fv_vault *v, const fv_vs_devinfo *list, size_t n,
                  size_t *issued, size_t *released)
{
    int rc, retracted = 0;
    int64_t now = fv_v_now();

    *issued = *released = 0;
    if (!v->has_org_sk)
        return fv_v_err(v, FV_EDENIED, "this vault holds no organisation key");
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        fv_store_device old, nd;
        unsigned char *cert = NULL;
        size_t cert_len = 0;
        int have, changed = 0;

        rc = fv_store_device_get(v->store, list[i].pk, &old);
        if (rc && rc != FV_ENOTFOUND) {
            rc = fv_v_serr(v, rc);
            break;
        }
        have = rc == FV_OK;
        rc = FV_OK;
        /* Listed and unrevoked, or revoked and known so: nothing new. The
         * revocation is dated by the server, which made it; a server that
         * does not say when (a database from before it recorded the time)
         * leaves the first vault to see it revoked to date it now. */
        if (have && (old.has_revoked || !list[i].revoked))
            continue;
        memset(&nd, 0, sizeof nd);
        memcpy(nd.pk, list[i].pk, 32);
        nd.role = list[i].role;
        nd.enrolled = list[i].enrolled;
        nd.has_revoked = list[i].revoked;
        nd.revoked = list[i].revoked_at > 0 ? list[i].revoked_at : now;
        if (have) {
            nd.role = old.role;
            nd.enrolled = old.enrolled;
        }
        if ((rc = cert_make(v, &cert, &cert_len, &nd))) {
            rc = fv_v_err(v, rc, "cannot sign a device certificate");
            break;
        }
        nd.cert = cert;
        nd.cert_len = cert_len;
        rc = merge(v, &nd, &changed, released, &retracted);
        *issued += (size_t)changed;
        fv_enc_free_buf(cert, cert_len);
    }
    return finish(v, rc, retracted);
}

int fv_vs_certs_import(fv_vault *v, const unsigned char *const *cert,
                       const size_t *len, size_t n, size_t *added,
                       size_t *rejected)
{
    int rc, retracted = 0;
    size_t released = 0;

    *added = *rejected = 0;
    /* Without the organisation's public key nothing can be checked: a
     * device that is not enrolled trusts only itself. */
    if (!v->has_org_pk) {
        *rejected = n;
        return FV_OK;
    }
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    for (size_t i = 0; rc == FV_OK && i < n; i++) {
        fv_store_device d;
        int changed = 0;
        /* One bad certificate (another organisation's, damaged, forged)
         * is passed over; the others still count. */
        if (cert_parse(&d, cert[i], len[i], v->org_pk) != FV_OK) {
            (*rejected)++;
            continue;
        }
        rc = merge(v, &d, &changed, &released, &retracted);
        *added += (size_t)changed;
    }
    return finish(v, rc, retracted);
}

int fv_vs_certs_each(fv_vault *v, fv_store_blob_fn fn, void *payload)
{
    int rc = fv_store_device_certs(v->store, fn, payload);
    return rc < 0 ? fv_v_serr(v, rc) : rc;
}

/* ---- listing ------------------------------------------------------------- */

struct listing {
    fv_vault *v;
    fv_quarantine_fn fn;
    void *payload;
    int rc;
};

static int list_one(const fv_store_quarantined *q, void *payload)
{
    struct listing *l = payload;
    fv_quarantined out;
    fv_env e;

    memset(&out, 0, sizeof out);
    memcpy(out.id, q->id, FV_ID_BYTES);
    memcpy(out.author, q->author, FV_ID_BYTES);
    out.kind = q->kind;
    out.why = q->why;
    /* Re-checked as it is read: a row altered on disk is not shown as an
     * envelope it is not. */
    if (fv_env_parse(&e, q->bytes, q->len) != FV_OK ||
        memcmp(e.id, q->id, FV_ID_BYTES) != 0 ||
        memcmp(e.author, q->author, FV_ID_BYTES) != 0) {
        fv_env_clear(&e);
        return l->rc = fv_v_err(l->v, FV_ECORRUPT,
                                "a quarantined envelope is damaged");
    }
    out.has_time = env_time(l->v, &e, &out.time) == FV_OK;
    fv_env_clear(&e);
    return l->rc = l->fn(&out, l->payload);
}

static int quarantine_list(fv_vault *v, fv_quarantine_fn fn, void *payload)
{
    struct listing l = {v, fn, payload, FV_OK};
    int rc;
    if (!v || !fn)
        return v ? fv_v_err(v, FV_EINVAL, "want a callback") : FV_EINVAL;
    rc = fv_store_quarantine_each(v->store, NULL, list_one, &l);
    if (l.rc)
        return l.rc;
    return rc ? fv_v_serr(v, rc) : FV_OK;
}

int fv_quarantine_list(fv_vault *v, fv_quarantine_fn fn, void *payload)
{
    return FV_CALL(v, quarantine_list(v, fn, payload));
}
