/* vault_sync.c - a vault's side of sync (see vault_sync.h): sync state,
 * outbox and receipts, verified import, the organisation key and key grants. */
#include "vault_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "codec.h"
#include "envelope.h"
#include "fileio.h"
#include "record.h"
#include "vault_internal.h"

#define META_SYNC_STATE 3

/* Fixed layout of the (encrypted) state blob. */
#define ST_SERVER 0
#define ST_PIN (ST_SERVER + 256)
#define ST_KEY (ST_PIN + 32)
#define ST_HAS_EPOCH (ST_KEY + 32)
#define ST_EPOCH (ST_HAS_EPOCH + 1)
#define ST_CURSOR (ST_EPOCH + 16)
#define ST_CHAIN (ST_CURSOR + 8)
#define ST_ROLE (ST_CHAIN + 32)
#define ST_BYTES_V1 (ST_ROLE + 1) /* before the receipt mark */
#define ST_RSEQ ST_BYTES_V1
#define ST_RID (ST_RSEQ + 8)
#define ST_BYTES (ST_RID + 32)

static const unsigned char state_ad[] = "FieldVault sync state v1";

int fv_vs_lock(fv_vault *v, int *fd)
{
    char *path = fv_path_join(v->dir, FV_SYNC_LOCK_FILE);
    int e;

    *fd = -1;
    if (!path)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    e = errno;
    free(path);
    if (*fd < 0)
        return fv_v_err(v, fv_errno_rc(e), "cannot open the sync lock: %s",
                        fv_errno_text(e).text);
    /* Not waiting: a sync holds the lock for as long as its transfer takes,
     * and a second one would only repeat its work when it got the lock. */
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        e = errno;
        close(*fd);
        *fd = -1;
        if (e == EWOULDBLOCK)
            return fv_v_err(v, FV_EBUSY, "vault busy: another sync of this vault is running");
        return fv_v_err(v, FV_EIO, "cannot take the sync lock: %s",
                        fv_errno_text(e).text);
    }
    return FV_OK;
}

void fv_vs_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static void state_pack(unsigned char *b, const fv_sync_state *st)
{
    memset(b, 0, ST_BYTES);
    memcpy(b + ST_SERVER, st->server, strnlen(st->server, 255));
    memcpy(b + ST_PIN, st->pin, 32);
    memcpy(b + ST_KEY, st->server_key, 32);
    b[ST_HAS_EPOCH] = (unsigned char)(st->has_epoch != 0);
    memcpy(b + ST_EPOCH, st->epoch, 16);
    for (int i = 0; i < 8; i++)
        b[ST_CURSOR + i] = (unsigned char)(st->cursor >> (8 * i));
    memcpy(b + ST_CHAIN, st->chain, 32);
    b[ST_ROLE] = (unsigned char)st->role;
    for (int i = 0; i < 8; i++)
        b[ST_RSEQ + i] = (unsigned char)(st->rseq >> (8 * i));
    memcpy(b + ST_RID, st->rid, 32);
}

static void state_unpack(fv_sync_state *st, const unsigned char *b)
{
    memset(st, 0, sizeof *st);
    memcpy(st->server, b + ST_SERVER, 255);
    memcpy(st->pin, b + ST_PIN, 32);
    memcpy(st->server_key, b + ST_KEY, 32);
    st->has_epoch = b[ST_HAS_EPOCH];
    memcpy(st->epoch, b + ST_EPOCH, 16);
    for (int i = 7; i >= 0; i--)
        st->cursor = (st->cursor << 8) | b[ST_CURSOR + i];
    memcpy(st->chain, b + ST_CHAIN, 32);
    st->role = b[ST_ROLE];
    for (int i = 7; i >= 0; i--)
        st->rseq = (st->rseq << 8) | b[ST_RSEQ + i];
    memcpy(st->rid, b + ST_RID, 32);
}

int fv_vs_state_get(fv_vault *v, fv_sync_state *st)
{
    unsigned char b[ST_BYTES];
    int rc = fv_v_meta_open(v, "sync", META_SYNC_STATE, b, sizeof b, state_ad,
                            sizeof state_ad);
    /* A state written before the receipt mark existed: none yet. */
    if (rc == FV_ECORRUPT) {
        memset(b, 0, sizeof b);
        rc = fv_v_meta_open(v, "sync", META_SYNC_STATE, b, ST_BYTES_V1,
                            state_ad, sizeof state_ad);
    }
    if (rc == FV_ENOTFOUND)
        return fv_v_err(v, rc, "this vault is not enrolled with a server");
    if (rc)
        return fv_v_err(v, rc == FV_ECORRUPT ? rc : rc,
                        "cannot read the vault's sync state: %s", fv_strerror(rc));
    state_unpack(st, b);
    fv_wipe(b, sizeof b);
    return FV_OK;
}

/* Inside a transaction. */
static int state_put(fv_vault *v, const fv_sync_state *st)
{
    unsigned char b[ST_BYTES];
    int rc;
    state_pack(b, st);
    rc = fv_v_meta_seal(v, "sync", META_SYNC_STATE, b, sizeof b, state_ad,
                        sizeof state_ad);
    fv_wipe(b, sizeof b);
    return rc;
}

/* Saves *st in one transaction; with `undeliver`, every own envelope and
 * its chunks go back to the outbox in the same one. */
static int state_commit(fv_vault *v, const fv_sync_state *st, int undeliver)
{
    int rc = fv_store_begin(v->store);
    if (rc == FV_OK && undeliver)
        rc = fv_store_undeliver_all(v->store);
    if (rc == FV_OK)
        rc = state_put(v, st);
    if (rc == FV_OK)
        rc = fv_store_commit(v->store);
    if (rc)
        fv_store_rollback(v->store);
    return fv_v_serr(v, rc);
}

int fv_vs_state_put(fv_vault *v, const fv_sync_state *st)
{
    return state_commit(v, st, 0);
}

void fv_vs_device(const fv_vault *v, unsigned char sign_pk[32],
                  unsigned char box_pk[32])
{
    memcpy(sign_pk, v->sign_pk, 32);
    memcpy(box_pk, v->box_pk, 32);
}

void fv_vs_sign(fv_vault *v, unsigned char sig[64], const unsigned char *m,
                size_t n)
{
    fv_sign(sig, m, n, v->sec->sign_sk);
}

int fv_vs_org_pk(const fv_vault *v, unsigned char pk[32])
{
    if (!v->has_org_pk)
        return 0;
    memcpy(pk, v->org_pk, 32);
    return 1;
}

/* ---- key grants ------------------------------------------------------- */

struct granting {
    fv_vault *v;
    int rc;
    size_t count;
};

/* Writes a grant for one own envelope that the organisation cannot open. */
static int grant_one(const fv_store_env *se, void *payload)
{
    struct granting *g = payload;
    fv_vault *v = g->v;
    unsigned char key[FV_KEY_BYTES], gid[FV_ID_BYTES];
    unsigned char *tp = NULL;
    size_t tlen = 0, i;
    fv_env e;
    int rc;

    if ((rc = fv_v_parse_stored(v, &e, se)))
        return g->rc = rc;
    for (i = 0; i < e.nrecipients; i++)
        if (memcmp(e.recipient_pk[i], v->org_pk, 32) == 0)
            break;
    rc = FV_OK;
    if (i == e.nrecipients) {
        rc = fv_env_unseal(&e, v->box_pk, v->sec->box_sk, key);
        if (rc == FV_OK)
            rc = fv_tombstone_encode(&tp, &tlen, fv_v_now());
        if (rc == FV_OK) {
            fv_v_write w = {
                .kind = FV_ENV_GRANT,
                .record = e.record,
                .parents = (const unsigned char(*)[FV_ID_BYTES])e.id,
                .nparents = 1,
                .payload = tp,
                .payload_len = tlen,
                .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])v->org_pk,
                .nrecipients = 1,
                .content_key = key,
            };
            rc = fv_v_write_envelope(v, gid, &w);
            g->count++;
        }
        fv_enc_free_buf(tp, tlen);
        fv_wipe(key, sizeof key);
    }
    fv_env_clear(&e);
    return g->rc = rc;
}

/* Inside a transaction: grants for everything written before the
 * organisation's key was known. The ids and signatures of what was recorded
 * stay untouched: that is the chain of custody. */
static int grant_all(fv_vault *v)
{
    struct granting g = {v, FV_OK, 0};
    int rc = fv_store_own_envelopes(v->store, grant_one, &g);
    return g.rc ? g.rc : fv_v_serr(v, rc);
}

int fv_vs_org_learn(fv_vault *v, const unsigned char pk[32])
{
    int rc;
    if (v->has_org_pk)
        return memcmp(v->org_pk, pk, 32) == 0
                   ? FV_OK
                   : fv_v_err(v, FV_EDENIED,
                              "the organisation key differs from the one this vault knows");
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    memcpy(v->org_pk, pk, 32);
    v->has_org_pk = 1;
    rc = fv_v_serr(v, fv_store_meta_put(v->store, "org_pk", pk, 32));
    if (rc == FV_OK)
        rc = grant_all(v);
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_commit(v->store));
    if (rc) {
        fv_store_rollback(v->store);
        v->has_org_pk = 0;
    }
    return rc;
}

int fv_vs_org_create(fv_vault *v, unsigned char pk[32])
{
    int rc;
    if (v->has_org_sk || v->has_org_pk)
        return fv_v_err(v, FV_EEXIST, "this vault already knows an organisation key");
    fv_box_keypair(pk, v->sec->org_sk);
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    rc = fv_v_meta_seal(v, "org_sk", 2, v->sec->org_sk, FV_BOX_SK_BYTES, pk, 32);
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_commit(v->store));
    if (rc) {
        fv_store_rollback(v->store);
        fv_wipe(v->sec->org_sk, FV_BOX_SK_BYTES);
        return rc;
    }
    v->has_org_sk = 1;
    /* Publishing the public half also grants everything written so far. */
    return fv_vs_org_learn(v, pk);
}

/* ---- outbox and receipts ---------------------------------------------- */

int fv_vs_outbox(fv_vault *v, int64_t after, size_t max,
                 fv_store_outbox_fn fn, void *payload)
{
    return fv_v_serr(v, fv_store_outbox(v->store, after, max, fn, payload));
}

/* Receipts at rest are sealed under subkey 5 of the vault key (FORMAT.md
 * 4, 10): body || sig, bound to this label. In clear, their server times
 * and organisation-wide log positions would tell whoever holds the device
 * how active the whole organisation is, and when this device delivered. */
#define RECEIPT_SUBKEY 5
static const char receipt_ad[] = "FieldVault receipt at rest v1";
#define RECEIPT_SIG_BYTES 64

int fv_vs_delivered(fv_vault *v, const fv_sync_state *st,
                    const unsigned char *body, size_t body_len,
                    const unsigned char sig[64],
                    const unsigned char *const *ids,
                    const unsigned char *refused, size_t n)
{
    size_t plen = body_len + RECEIPT_SIG_BYTES;
    size_t slen = FV_NONCE_BYTES + plen + FV_TAG_BYTES;
    unsigned char *plain = malloc(plen), *sealed = malloc(slen);
    int rc = FV_ENOMEM;

    if (plain && sealed) {
        memcpy(plain, body, body_len);
        memcpy(plain + body_len, sig, RECEIPT_SIG_BYTES);
        rc = fv_v_subkey_seal(v, RECEIPT_SUBKEY, sealed, plain, plen,
                              (const unsigned char *)receipt_ad, sizeof receipt_ad - 1);
    }
    if (rc == FV_OK && (rc = fv_store_begin(v->store)) == FV_OK) {
        rc = fv_store_delivered(v->store, sealed, slen, ids, refused, n);
        if (rc == FV_OK && st)
            rc = state_put(v, st);
        if (rc == FV_OK)
            rc = fv_store_commit(v->store);
        if (rc)
            fv_store_rollback(v->store);
    }
    if (plain)
        fv_wipe(plain, plen);
    free(plain);
    free(sealed);
    return fv_v_serr(v, rc);
}

struct receipt_walk {
    fv_vault *v;
    fv_vs_receipt_fn fn;
    void *payload;
    unsigned char *buf;
    size_t cap;
};

static int receipt_open_cb(int64_t seq, const unsigned char *sealed, size_t len,
                           void *payload)
{
    struct receipt_walk *w = payload;
    size_t plen;

    /* A row that does not open is handed on as unreadable (NULL): verify
     * reports it, and the other receipts still count. */
    if (!sealed || len < FV_NONCE_BYTES + FV_TAG_BYTES + RECEIPT_SIG_BYTES)
        return w->fn(seq, NULL, 0, NULL, w->payload);
    plen = len - FV_NONCE_BYTES - FV_TAG_BYTES;
    if (plen > w->cap) {
        unsigned char *p = malloc(plen);
        if (!p)
            return FV_ENOMEM;
        if (w->buf) {
            fv_wipe(w->buf, w->cap);
            free(w->buf);
        }
        w->buf = p;
        w->cap = plen;
    }
    if (fv_v_subkey_open(w->v, RECEIPT_SUBKEY, w->buf, sealed, len,
                         (const unsigned char *)receipt_ad, sizeof receipt_ad - 1))
        return w->fn(seq, NULL, 0, NULL, w->payload);
    return w->fn(seq, w->buf, plen - RECEIPT_SIG_BYTES,
                 w->buf + plen - RECEIPT_SIG_BYTES, w->payload);
}

int fv_vs_each_receipt(fv_vault *v, fv_vs_receipt_fn fn, void *payload)
{
    struct receipt_walk w = {v, fn, payload, NULL, 0};
    int rc = fv_store_each_receipt(v->store, receipt_open_cb, &w);
    if (w.buf) {
        fv_wipe(w.buf, w.cap);
        free(w.buf);
    }
    return rc;
}

int fv_vs_reset(fv_vault *v, const fv_sync_state *st)
{
    return state_commit(v, st, 1);
}

/* ---- import ----------------------------------------------------------- */

static int addressed_to(const fv_env *e, const unsigned char box_pk[32])
{
    for (size_t i = 0; i < e->nrecipients; i++)
        if (memcmp(e->recipient_pk[i], box_pk, 32) == 0)
            return 1;
    return 0;
}

/* A courier bundle has no server behind it to check who may retract a
 * record: from one, only a retraction by the record's creating device (as
 * its genesis here shows) is taken. A coordinator's reaches this vault at
 * its next sync. */
static int courier_may_retract(fv_vault *v, const fv_env *e)
{
    unsigned char rec[FV_ID_BYTES], *bytes = NULL;
    size_t len = 0;
    int kind, ok = 0;
    fv_env g;

    if (memcmp(e->author, v->sign_pk, 32) == 0)
        return 1;
    if (fv_store_env_get(v->store, e->record, rec, &kind, &bytes, &len,
                         NULL) == FV_OK &&
        bytes && fv_env_parse(&g, bytes, len) == FV_OK) {
        ok = g.genesis && fv_ct_equal(g.id, e->record, FV_ID_BYTES) &&
             memcmp(g.author, e->author, 32) == 0;
        fv_env_clear(&g);
    }
    free(bytes);
    return ok;
}

/* Opens the payload where this vault can (its device key, the organisation
 * key, or a stored key grant) and checks it against FORMAT.md by kind:
 * FV_OK also when the vault cannot open it (nothing to check), FV_ECORRUPT
 * when a validly signed envelope holds content that does not decrypt under
 * its committed key or breaks its format. */
static int payload_valid(fv_vault *v, const fv_env *e)
{
    unsigned char *plain = NULL;
    size_t n = 0;
    int rc = fv_v_open_payload(v, e, &plain, &n);

    if (rc == FV_ENOTFOUND)
        return FV_OK;
    if (rc == FV_OK)
        rc = fv_payload_check(e, plain, n);
    fv_env_free_plain(plain, n);
    return rc;
}

/* *retracted is set when a retraction destroyed a record (the caller runs
 * the truncating checkpoint after the commit). `courier`: from a bundle,
 * not from the server; *skipped counts the review states it leaves out,
 * *refused the envelopes whose content breaks FORMAT.md (neither stored
 * nor acted on; the rest of the batch goes on). */
static int import_one(fv_vault *v, int role, int courier,
                      const unsigned char *bytes, size_t len, size_t *added,
                      size_t *skipped, size_t *refused, int *retracted)
{
    fv_store_env se;
    fv_env e;
    unsigned char mac[FV_HASH_BYTES];
    int rc, own, was_added = 0;

    rc = fv_env_parse(&e, bytes, len);
    if (rc == FV_EVERSION)
        return fv_v_err(v, rc, "%s holds an envelope made by a newer FieldVault: "
                               "update this program to read it",
                        courier ? "the bundle" : "the server");
    if (rc == FV_ENOMEM)
        return fv_v_err(v, rc, "out of memory");
    if (rc)
        return fv_v_err(v, FV_EPROTO, courier
                        ? "the bundle holds an envelope that fails verification"
                        : "the server sent an envelope that fails verification");
    own = memcmp(e.author, v->sign_pk, 32) == 0;
    /* A retraction is taken whatever it is sealed to: the server routes it
     * to every device that held part of the record (or pushed to it since),
     * it carries nothing this device needs to read, and it only destroys
     * this vault's copy. Its signature was checked above. */
    if (role == FV_ROLE_FIELD && !own && e.kind != FV_ENV_RETRACTION &&
        !addressed_to(&e, v->box_pk)) {
        fv_env_clear(&e);
        return fv_v_err(v, FV_EPROTO,
                        "the server sent an envelope not meant for this device");
    }
    /* A review state is only a coordinator's to set, and only the server
     * knows who is one: a vault cannot tell a coordinator's signing key from
     * a field device's. From a bundle, a state is left out (not an error:
     * the rest imports), unless this device wrote it. Coordinators exchange
     * states through the server. */
    if (e.kind == FV_ENV_STATE && courier && !own) {
        fv_env_clear(&e);
        (*skipped)++;
        return FV_OK;
    }
    /* Nothing more of a retracted record is kept: what arrives after its
     * retraction is dropped (the batch, and the cursor, still move on). */
    if (e.kind != FV_ENV_RETRACTION &&
        (rc = fv_store_retracted(v->store, e.record)) != 0) {
        fv_env_clear(&e);
        return rc < 0 ? fv_v_serr(v, rc) : FV_OK;
    }
    if (e.kind == FV_ENV_RETRACTION && courier && !courier_may_retract(v, &e)) {
        fv_env_clear(&e);
        return FV_OK;
    }
    /* Nothing is stored or done (a retraction destroys a record) on a
     * payload this vault can read before it has been checked. A bad one is
     * refused alone: one forged envelope must not hold back the others. */
    rc = payload_valid(v, &e);
    if (rc == FV_ECORRUPT) {
        fv_env_clear(&e);
        (*refused)++;
        return FV_OK;
    }
    if (rc) {
        fv_env_clear(&e);
        return rc == FV_ENOMEM ? fv_v_err(v, rc, "out of memory") : fv_v_serr(v, rc);
    }
    /* Who may speak: an author the organisation has not certified here,
     * or revoked before this was dated, is kept apart (devices.c). */
    if ((rc = fv_v_admit(v, &e, bytes, len, courier)) != 1) {
        fv_env_clear(&e);
        return rc < 0 ? rc : FV_OK;
    }
    memset(&se, 0, sizeof se);
    se.id = e.id;
    se.record = e.record;
    se.kind = e.kind;
    se.bytes = bytes;
    se.len = len;
    fv_v_env_mac(v, mac, bytes, len); /* its signature was verified above */
    se.mac = mac;
    se.own = 0; /* what came from the server needs no pushing */
    se.grant = e.kind == FV_ENV_GRANT;
    rc = fv_store_env_put(v->store, &se,
                          (const unsigned char(*)[FV_ID_BYTES])e.parents,
                          e.nparents,
                          (const unsigned char(*)[FV_HASH_BYTES])e.chunks,
                          e.nchunks, &was_added);
    rc = fv_v_serr(v, rc);
    if (rc == FV_OK && was_added && e.kind == FV_ENV_RETRACTION) {
        /* The witness withdrew consent: every other envelope of the
         * record, its chunks and keys go; the retraction stays. */
        rc = fv_v_serr(v, fv_store_retract_record(v->store, e.record));
        *retracted = 1;
    } else if (rc == FV_OK && was_added) {
        rc = fv_v_desk_index(v, &e);
    }
    fv_env_clear(&e);
    *added += (size_t)was_added;
    return rc;
}

static int import_batch(fv_vault *v, const fv_sync_state *st,
                        const unsigned char *const *env, const size_t *len,
                        size_t n, size_t *added, size_t *skipped,
                        size_t *refused)
{
    int rc = fv_store_begin(v->store), retracted = 0;
    *added = 0;
    *skipped = 0;
    *refused = 0;
    if (rc)
        return fv_v_serr(v, rc);
    for (size_t i = 0; i < n && rc == FV_OK; i++)
        rc = import_one(v, st ? st->role : FV_ROLE_COORDINATOR, st == NULL,
                        env[i], len[i], added, skipped, refused, &retracted);
    if (rc == FV_OK && st)
        rc = state_put(v, st);
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_commit(v->store));
    if (rc)
        fv_store_rollback(v->store);
    /* SQLite's WAL holds the deleted pages until a truncating checkpoint. */
    else if (retracted)
        rc = fv_v_serr(v, fv_store_checkpoint(v->store));
    return rc;
}

int fv_v_import_released(fv_vault *v, const unsigned char *bytes, size_t len,
                         int courier, size_t *added, int *retracted)
{
    size_t skipped = 0, refused = 0;
    /* Its recipients were checked when it first arrived. */
    return import_one(v, FV_ROLE_COORDINATOR, courier, bytes, len, added,
                      &skipped, &refused, retracted);
}

int fv_vs_import(fv_vault *v, const fv_sync_state *st,
                 const unsigned char *const *env, const size_t *len, size_t n,
                 size_t *added, size_t *refused)
{
    size_t skipped;
    return import_batch(v, st, env, len, n, added, &skipped, refused);
}

int fv_vs_import_bundle(fv_vault *v, const unsigned char *const *env,
                        const size_t *len, size_t n, size_t *added,
                        size_t *skipped, size_t *refused)
{
    return import_batch(v, NULL, env, len, n, added, skipped, refused);
}

int fv_vs_conflicts(fv_vault *v, size_t *count)
{
    return fv_v_serr(v, fv_store_conflicts(v->store, count));
}

int fv_vs_fail(fv_vault *v, int rc, const char *msg)
{
    return fv_v_err(v, rc, "%s", msg);
}

/* ---- proxy -------------------------------------------------------------- */

/* Subkey 6 of the meta secrets (vault.c lists 1 to 5). A forgotten proxy
 * is an all-zero blob, sealed like any other: the meta table shows
 * neither whether a proxy is set nor how long its URL is. */
#define META_PROXY 6
static const unsigned char proxy_ad[] = "FieldVault proxy v1";

int fv_vs_proxy_get(fv_vault *v, char buf[FV_VS_PROXY_BYTES])
{
    int rc = fv_v_meta_open(v, "proxy", META_PROXY, (unsigned char *)buf,
                            FV_VS_PROXY_BYTES, proxy_ad, sizeof proxy_ad);
    if (rc == FV_OK) {
        buf[FV_VS_PROXY_BYTES - 1] = '\0';
        if (buf[0] == '\0')
            rc = FV_ENOTFOUND;
        return rc;
    }
    fv_wipe(buf, FV_VS_PROXY_BYTES);
    if (rc == FV_ENOTFOUND)
        return rc;
    return fv_v_err(v, rc, "cannot read the vault's proxy setting: %s",
                    fv_strerror(rc));
}

int fv_vs_proxy_put(fv_vault *v, const char *url)
{
    unsigned char b[FV_VS_PROXY_BYTES];
    int rc;
    memset(b, 0, sizeof b);
    if (url) {
        size_t n = strlen(url);
        if (n >= sizeof b)
            return fv_v_err(v, FV_EINVAL, "the proxy URL is too long");
        memcpy(b, url, n);
    }
    rc = fv_v_meta_seal(v, "proxy", META_PROXY, b, sizeof b, proxy_ad,
                        sizeof proxy_ad);
    fv_wipe(b, sizeof b);
    return rc;
}

/* ---- attachment chunks ------------------------------------------------ */

int fv_vs_chunk_outbox(fv_vault *v, const unsigned char after[32], size_t max,
                       fv_store_hash_fn fn, void *payload)
{
    int rc = fv_store_chunk_outbox(v->store, after, max, fn, payload);
    return rc < 0 ? fv_v_serr(v, rc) : rc;
}

int fv_vs_chunk_missing(fv_vault *v, const unsigned char after[32], size_t max,
                        fv_store_hash_fn fn, void *payload)
{
    int rc = fv_store_chunk_missing(v->store, after, max, fn, payload);
    return rc < 0 ? fv_v_serr(v, rc) : rc;
}

int fv_vs_chunk_get(fv_vault *v, const unsigned char hash[32],
                    unsigned char *buf, size_t cap, size_t *len)
{
    return fv_v_serr(v, fv_store_chunk_get(v->store, hash, buf, cap, len));
}

int fv_vs_chunks_delivered(fv_vault *v, const unsigned char *const *hash,
                           size_t n)
{
    int rc = fv_store_begin(v->store);
    for (size_t i = 0; i < n && rc == FV_OK; i++)
        rc = fv_store_chunk_delivered(v->store, hash[i]);
    if (rc == FV_OK)
        rc = fv_store_commit(v->store);
    if (rc)
        fv_store_rollback(v->store);
    return fv_v_serr(v, rc);
}

int fv_vs_chunk_unsent(fv_vault *v, const unsigned char after[32], size_t max,
                       fv_store_hash_fn fn, void *payload)
{
    int rc = fv_store_chunk_unsent(v->store, after, max, fn, payload);
    return rc < 0 ? fv_v_serr(v, rc) : rc;
}

/* Checks a chunk that arrived against the signed manifests this vault
 * holds and stores it: FV_VS_CHUNK_* in *got. Nothing is stored unless it
 * hashes to `hash` and a stored envelope lists it. */
static int chunk_take(fv_vault *v, const unsigned char hash[32],
                      const unsigned char *data, size_t len, int delivered,
                      int *got)
{
    unsigned char h[FV_HASH_BYTES];
    int rc;

    fv_hash(h, data, len);
    if (!fv_ct_equal(h, hash, FV_HASH_BYTES)) {
        *got = FV_VS_CHUNK_TAMPERED;
        return FV_OK;
    }
    rc = fv_store_chunk_referenced(v->store, hash);
    if (rc == 0) {
        *got = FV_VS_CHUNK_UNLISTED;
        return FV_OK;
    }
    if (rc < 0)
        return fv_v_serr(v, rc);
    rc = fv_store_chunk_has(v->store, hash);
    if (rc < 0)
        return fv_v_serr(v, rc);
    *got = rc ? FV_VS_CHUNK_HELD : FV_VS_CHUNK_ADDED;
    if (rc)
        return FV_OK;
    return fv_v_serr(v, fv_store_chunk_put(v->store, hash, data, len, delivered));
}

int fv_vs_chunk_store(fv_vault *v, const unsigned char hash[32],
                      const unsigned char *data, size_t len)
{
    int got = 0, rc = chunk_take(v, hash, data, len, 1, &got);

    /* Checked against the signed manifest before anything is stored. */
    if (rc == FV_OK && got == FV_VS_CHUNK_TAMPERED)
        return fv_v_err(v, FV_EPROTO, "a chunk from the server does not match its hash");
    if (rc == FV_OK && got == FV_VS_CHUNK_UNLISTED)
        return fv_v_err(v, FV_EPROTO, "the server sent a chunk no envelope lists");
    return rc;
}

int fv_vs_chunks_begin(fv_vault *v)
{
    return fv_v_serr(v, fv_store_begin(v->store));
}

int fv_vs_chunks_end(fv_vault *v, int commit)
{
    int rc = commit ? fv_store_commit(v->store) : FV_OK;
    if (!commit || rc)
        fv_store_rollback(v->store);
    return fv_v_serr(v, rc);
}

int fv_vs_bulk_begin(fv_vault *v)
{
    return fv_store_bulk_begin(v->store);
}

int fv_vs_bulk_end(fv_vault *v)
{
    return fv_v_serr(v, fv_store_bulk_end(v->store));
}

int fv_vs_chunk_import(fv_vault *v, const unsigned char hash[32],
                       const unsigned char *data, size_t len, int *got)
{
    /* Not known to be on the server: a bundle travelled without it. */
    return chunk_take(v, hash, data, len, 0, got);
}

/* ---- retention -------------------------------------------------------- */

static int vault_set_retention(fv_vault *v, int policy)
{
    unsigned char b = (unsigned char)policy;
    if (!v || (policy != FV_RETENTION_KEEP &&
               policy != FV_RETENTION_DROP_AFTER_RECEIPT))
        return FV_EINVAL;
    return fv_v_serr(v, fv_store_meta_put(v->store, "retention", &b, 1));
}

static int vault_get_retention(fv_vault *v, int *policy)
{
    unsigned char *val = NULL;
    size_t len;
    int rc;
    if (!v || !policy)
        return FV_EINVAL;
    rc = fv_store_meta_get(v->store, "retention", &val, &len);
    *policy = FV_RETENTION_KEEP;
    if (rc == FV_OK && len == 1)
        *policy = val[0];
    free(val);
    return rc == FV_ENOTFOUND ? FV_OK : fv_v_serr(v, rc);
}

static int record_delivered(fv_vault *v, int *delivered,
                            const unsigned char id[FV_ID_BYTES])
{
    int rc;
    if (!v || !delivered)
        return FV_EINVAL;
    rc = fv_store_record_delivered(v->store, id, delivered);
    return fv_v_serr(v, rc);
}

struct dropping {
    fv_vault *v;
    unsigned char (*ids)[FV_ID_BYTES];
    size_t n, cap;
};

static int collect_delivered(const unsigned char *record, void *payload)
{
    struct dropping *d = payload;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        void *p = realloc(d->ids, cap * FV_ID_BYTES);
        if (!p)
            return FV_ENOMEM;
        d->ids = p;
        d->cap = cap;
    }
    memcpy(d->ids[d->n++], record, FV_ID_BYTES);
    return 0;
}

int fv_vs_apply_retention(fv_vault *v, size_t *dropped)
{
    struct dropping d = {v, NULL, 0, 0};
    int policy, rc;

    *dropped = 0;
    if ((rc = vault_get_retention(v, &policy)) || policy != FV_RETENTION_DROP_AFTER_RECEIPT)
        return rc;
    rc = fv_store_delivered_records(v->store, collect_delivered, &d);
    if (rc == FV_OK)
        rc = fv_store_begin(v->store);
    for (size_t i = 0; i < d.n && rc == FV_OK; i++)
        rc = fv_store_drop_record(v->store, d.ids[i]);
    if (rc == FV_OK)
        rc = fv_store_commit(v->store);
    if (rc)
        fv_store_rollback(v->store);
    else {
        *dropped = d.n;
        if (d.n)
            rc = fv_store_checkpoint(v->store);
    }
    free(d.ids);
    return fv_v_serr(v, rc);
}

int fv_vs_pending_upload(fv_vault *v, uint64_t *bytes)
{
    return fv_v_serr(v, fv_store_pending_upload(v->store, bytes));
}

/* ---- the public calls (call.h: each leaves its own message) ---- */

int fv_vault_set_retention(fv_vault *v, int policy)
{
    return FV_CALL(v, vault_set_retention(v, policy));
}

int fv_vault_get_retention(fv_vault *v, int *policy)
{
    return FV_CALL(v, vault_get_retention(v, policy));
}

int fv_record_delivered(fv_vault *v, int *delivered,
                        const unsigned char id[FV_ID_BYTES])
{
    return FV_CALL(v, record_delivered(v, delivered, id));
}
