/* desk.c - the coordinator's desk (fieldvault.h): review states, notes
 * between coordinators and the field, retractions, and the per-record view
 * of them (fv_record.origin, state, nnotes). Each is a signed envelope of
 * kind 4, 5 or 6 naming the record as its one parent (docs/FORMAT.md 7.1):
 * they sync and travel in courier bundles like revisions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"
#include "store.h"
#include "vault_internal.h"

static const char *const state_names[] = {
    [FV_STATE_NEW] = "new",
    [FV_STATE_REVIEWED] = "reviewed",
    [FV_STATE_NEEDS_FOLLOW_UP] = "needs-follow-up",
    [FV_STATE_ARCHIVED] = "archived",
};

const char *fv_state_name(int state)
{
    if (state < FV_STATE_NEW || state > FV_STATE_ARCHIVED)
        return NULL;
    return state_names[state];
}

int fv_state_parse(int *state, const char *name)
{
    for (int i = FV_STATE_NEW; name && i <= FV_STATE_ARCHIVED; i++)
        if (strcmp(name, state_names[i]) == 0) {
            if (state)
                *state = i;
            fv_error_clear_last();
            return FV_OK;
        }
    fv_error_set_last("unknown review state");
    return FV_EINVAL;
}

/* ---- what a record's genesis says --------------------------------------- */

/* The record's creating device: its genesis author, and the X25519 keys the
 * genesis is sealed to other than the organisation's. */
struct origin {
    unsigned char author[FV_SIGN_PK_BYTES];
    unsigned char box[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES];
    size_t nbox;
    int known; /* the genesis is held and verified */
    int own;   /* this device wrote it */
};

/* FV_ENOTFOUND (with a message) if the vault holds nothing of record `id`
 * or it was retracted. A genesis whose ciphertext was destroyed (deleted,
 * dropped after delivery) leaves `known` 0. */
static int origin_get(fv_vault *v, struct origin *o,
                      const unsigned char id[FV_ID_BYTES])
{
    unsigned char rec[FV_ID_BYTES], *bytes = NULL, mac[FV_HASH_BYTES];
    size_t len = 0;
    int kind, rc;
    fv_env e;

    memset(o, 0, sizeof *o);
    rc = fv_store_env_get(v->store, id, rec, &kind, &bytes, &len, mac);
    if (rc == FV_ENOTFOUND || (rc == FV_OK && (memcmp(rec, id, FV_ID_BYTES) ||
                                               kind != FV_ENV_REVISION))) {
        free(bytes);
        rc = fv_store_retracted(v->store, id);
        if (rc < 0)
            return fv_v_serr(v, rc);
        return fv_v_err(v, FV_ENOTFOUND, rc ? "the record was retracted"
                                            : "no such record");
    }
    if (rc)
        return fv_v_serr(v, rc);
    rc = fv_store_env_own(v->store, id);
    if (rc < 0) {
        free(bytes);
        return fv_v_serr(v, rc);
    }
    o->own = rc;
    if (!bytes)
        return FV_OK;
    rc = fv_v_env_parse(v, &e, bytes, len, mac);
    if (rc == FV_OK && (!fv_ct_equal(e.id, id, FV_ID_BYTES) || !e.genesis))
        rc = FV_ECORRUPT;
    if (rc) {
        fv_env_clear(&e); /* harmless after a failed parse */
        free(bytes);
        /* Out of memory is not tampering: the record must not be skipped. */
        if (rc == FV_ENOMEM)
            return fv_v_err(v, rc, "out of memory while reading an envelope");
        return fv_v_err(v, FV_ECORRUPT, "an envelope failed verification (tampered or damaged)");
    }
    memcpy(o->author, e.author, FV_SIGN_PK_BYTES);
    for (size_t i = 0; i < e.nrecipients; i++)
        if (!v->has_org_pk ||
            memcmp(e.recipient_pk[i], v->org_pk, FV_BOX_PK_BYTES) != 0)
            memcpy(o->box[o->nbox++], e.recipient_pk[i], FV_BOX_PK_BYTES);
    o->known = 1;
    o->own = memcmp(e.author, v->sign_pk, FV_SIGN_PK_BYTES) == 0;
    fv_env_clear(&e);
    free(bytes);
    return FV_OK;
}

static void add_recipient(unsigned char (*out)[FV_BOX_PK_BYTES], size_t *n,
                          const unsigned char *pk)
{
    for (size_t i = 0; i < *n; i++)
        if (memcmp(out[i], pk, FV_BOX_PK_BYTES) == 0)
            return;
    if (*n < FV_ENV_MAX_RECIPIENTS)
        memcpy(out[(*n)++], pk, FV_BOX_PK_BYTES);
}

/* The writer, the organisation key (when known) and, with `creator`, the
 * record's creating device (`o` is read only then). */
static size_t desk_recipients(fv_vault *v,
                              unsigned char out[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES],
                              const struct origin *o, int creator)
{
    size_t n = 0;
    add_recipient(out, &n, v->box_pk);
    if (v->has_org_pk)
        add_recipient(out, &n, v->org_pk);
    for (size_t i = 0; creator && i < o->nbox; i++)
        add_recipient(out, &n, o->box[i]);
    return n;
}

/* ---- indexes ------------------------------------------------------------ */

int fv_v_desk_index(fv_vault *v, const fv_env *e)
{
    unsigned char *plain = NULL;
    size_t plain_len = 0;
    int64_t time;
    int rc, state;

    if (e->kind != FV_ENV_NOTE && e->kind != FV_ENV_STATE)
        return FV_OK;
    rc = fv_v_open_payload(v, e, &plain, &plain_len);
    if (rc == FV_ENOTFOUND || rc == FV_ECORRUPT)
        return FV_OK; /* not for this vault, or unreadable: not indexed */
    if (rc)
        return fv_v_err(v, rc, "cannot open an envelope: %s", fv_strerror(rc));
    if (e->kind == FV_ENV_STATE) {
        if (fv_state_decode(&time, &state, plain, plain_len) == FV_OK)
            rc = fv_store_review_put(v->store, e->record, e->id, time, state);
    } else {
        char *text;
        size_t len;
        if (fv_note_decode(&text, &len, &time, plain, plain_len) == FV_OK) {
            fv_env_free_plain((unsigned char *)text, len + 1);
            rc = fv_store_note_put(v->store, e->id, e->record);
        }
    }
    fv_env_free_plain(plain, plain_len);
    return fv_v_serr(v, rc);
}

struct reindex {
    fv_vault *v;
    int rc;
};

static int reindex_cb(const fv_store_env *se, void *payload)
{
    struct reindex *r = payload;
    fv_env e;
    int rc = fv_v_parse_stored(r->v, &e, se);
    if (rc == FV_ECORRUPT)
        return FV_OK; /* a damaged envelope is left to fv_vault_verify */
    if (rc)
        return r->rc = rc;
    rc = fv_v_desk_index(r->v, &e);
    fv_env_clear(&e);
    return r->rc = rc;
}

int fv_v_desk_reindex(fv_vault *v)
{
    struct reindex r = {v, FV_OK};
    int rc = fv_store_each_kind(v->store, FV_ENV_STATE, reindex_cb, &r);
    if (rc == FV_OK)
        rc = fv_store_each_kind(v->store, FV_ENV_NOTE, reindex_cb, &r);
    return r.rc ? r.rc : fv_v_serr(v, rc);
}

int fv_v_record_desk(fv_vault *v, fv_record *r)
{
    int64_t time;
    int rc;

    /* A record never edited has its genesis as its head. */
    if (memcmp(r->revision, r->id, FV_ID_BYTES) == 0) {
        memcpy(r->origin, r->author, FV_ID_BYTES);
    } else {
        /* A revision can arrive without its genesis (a courier bundle of
         * another device's edits): the origin is then unknown (zeros). */
        struct origin o;
        rc = origin_get(v, &o, r->id);
        if (rc == FV_ENOTFOUND)
            v->msg[0] = 0;
        else if (rc)
            return rc;
        else if (o.known)
            memcpy(r->origin, o.author, FV_ID_BYTES);
        else if (o.own)
            memcpy(r->origin, v->sign_pk, FV_ID_BYTES);
    }
    rc = fv_store_review_get(v->store, r->id, &r->state, &time);
    if (rc == FV_ENOTFOUND)
        r->state = FV_STATE_NEW;
    else if (rc)
        return fv_v_serr(v, rc);
    return fv_v_serr(v, fv_store_note_count(v->store, r->id, &r->nnotes));
}

/* ---- writing ------------------------------------------------------------- */

/* Writes one desk envelope about record `id` in its own transaction; with a
 * retraction, destroys the record's other envelopes in it too. */
static int write_desk(fv_vault *v, unsigned char out_id[FV_ID_BYTES], int kind,
                      const unsigned char id[FV_ID_BYTES],
                      const unsigned char (*recips)[FV_BOX_PK_BYTES],
                      size_t nrecips, unsigned char *payload,
                      size_t payload_len)
{
    unsigned char eid[FV_ID_BYTES];
    fv_v_write w = {
        .kind = kind,
        .record = id,
        .parents = (const unsigned char(*)[FV_ID_BYTES])id,
        .nparents = 1,
        .payload = payload,
        .payload_len = payload_len,
        .recipients = recips,
        .nrecipients = nrecips,
    };
    int rc;

    if ((rc = fv_store_begin(v->store))) {
        fv_enc_free_buf(payload, payload_len);
        return fv_v_serr(v, rc);
    }
    rc = fv_v_write_envelope(v, eid, &w);
    if (rc == FV_OK && kind == FV_ENV_RETRACTION) {
        rc = fv_v_serr(v, fv_store_retract_record(v->store, id));
    } else if (rc == FV_OK) {
        unsigned char *bytes = NULL, rec[FV_ID_BYTES], mac[FV_HASH_BYTES];
        size_t len = 0;
        int k;
        fv_env e;
        rc = fv_v_serr(v, fv_store_env_get(v->store, eid, rec, &k, &bytes,
                                           &len, mac));
        if (rc == FV_OK &&
            (rc = fv_v_env_parse(v, &e, bytes, len, mac)) == FV_OK) {
            rc = fv_v_desk_index(v, &e);
            fv_env_clear(&e);
        }
        free(bytes);
    }
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_commit(v->store));
    if (rc)
        fv_store_rollback(v->store);
    fv_enc_free_buf(payload, payload_len);
    if (rc == FV_OK && out_id)
        memcpy(out_id, eid, FV_ID_BYTES);
    /* SQLite's WAL keeps the deleted pages until a truncating checkpoint. */
    if (rc == FV_OK && kind == FV_ENV_RETRACTION)
        rc = fv_v_serr(v, fv_store_checkpoint(v->store));
    return rc;
}

/* The record must be readable here, not deleted or retracted. */
static int record_live(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    struct head_pick p;
    int rc = fv_v_newest_head(v, &p, id, 0);
    if (rc == FV_OK)
        fv_v_pick_clear(&p);
    return rc;
}

static int record_set_state(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                            int state)
{
    unsigned char recips[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES];
    unsigned char *payload = NULL;
    size_t payload_len = 0, n;
    int64_t now = fv_v_now(), cur_time;
    int rc, cur;

    if (!v || !id)
        return FV_EINVAL;
    if (!fv_state_name(state))
        return fv_v_err(v, FV_EINVAL, "a review state is new, reviewed, "
                                      "needs-follow-up or archived");
    if (!v->has_org_sk)
        return fv_v_err(v, FV_EDENIED, "only a coordinator (a vault holding "
                                       "the organisation key) sets review states");
    if ((rc = record_live(v, id)))
        return rc;
    /* The newest setting wins by time: one made after the current one
     * must not lose to it on a clock tie or a clock behind. */
    rc = fv_store_review_get(v->store, id, &cur, &cur_time);
    if (rc && rc != FV_ENOTFOUND)
        return fv_v_serr(v, rc);
    if (rc == FV_OK && cur_time >= now) {
        /* A setting dated at the end of time (hostile, or a clock gone
         * wrong) cannot be passed: cur_time + 1 would overflow. */
        if (cur_time == INT64_MAX)
            return fv_v_err(v, FV_ELIMIT, "the current review state is dated "
                                          "at the end of time and cannot be "
                                          "replaced");
        now = cur_time + 1;
    }
    if ((rc = fv_state_encode(&payload, &payload_len, now, state)))
        return fv_v_err(v, rc, "out of memory");
    /* Coordinators only: the writer and the organisation key. */
    n = desk_recipients(v, recips, NULL, 0);
    return write_desk(v, NULL, FV_ENV_STATE, id,
                      (const unsigned char(*)[FV_BOX_PK_BYTES])recips, n,
                      payload, payload_len);
}

int fv_record_set_state(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                        int state)
{
    return FV_CALL(v, record_set_state(v, id, state));
}

static int note_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                    const unsigned char id[FV_ID_BYTES], const char *text)
{
    unsigned char recips[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES];
    unsigned char *payload = NULL;
    size_t payload_len = 0, len, n;
    struct origin o;
    int rc;

    if (!v || !id || !text)
        return FV_EINVAL;
    len = strlen(text);
    if (!fv_note_text_ok(text, len))
        return fv_v_err(v, FV_EINVAL, "a note is 1 to %d bytes of UTF-8 text",
                        FV_MAX_NOTE_BYTES);
    if ((rc = origin_get(v, &o, id)))
        return rc;
    if (!o.known && !o.own)
        return fv_v_err(v, FV_ENOTFOUND, "the record was deleted");
    if ((rc = fv_note_encode(&payload, &payload_len, text, len, fv_v_now())))
        return fv_v_err(v, rc, "out of memory");
    n = desk_recipients(v, recips, &o, 1);
    return write_desk(v, out_id, FV_ENV_NOTE, id,
                      (const unsigned char(*)[FV_BOX_PK_BYTES])recips, n,
                      payload, payload_len);
}

int fv_note_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                const unsigned char id[FV_ID_BYTES], const char *text)
{
    return FV_CALL(v, note_add(v, out_id, id, text));
}

static int record_retract(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    unsigned char recips[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES];
    unsigned char *payload = NULL;
    size_t payload_len = 0, n;
    struct origin o;
    int rc;

    if (!v || !id)
        return FV_EINVAL;
    if ((rc = origin_get(v, &o, id)))
        return rc;
    if (!o.own && !v->has_org_sk)
        return fv_v_err(v, FV_EDENIED, "only the device that created the "
                                       "record or a coordinator can retract it");
    if ((rc = fv_tombstone_encode(&payload, &payload_len, fv_v_now())))
        return fv_v_err(v, rc, "out of memory");
    n = desk_recipients(v, recips, &o, 1);
    return write_desk(v, NULL, FV_ENV_RETRACTION, id,
                      (const unsigned char(*)[FV_BOX_PK_BYTES])recips, n,
                      payload, payload_len);
}

int fv_record_retract(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    return FV_CALL(v, record_retract(v, id));
}

/* ---- reading ------------------------------------------------------------- */

struct note_walk {
    fv_vault *v;
    fv_note_fn fn;
    void *payload;
    int rc;
};

static int note_cb(const fv_store_env *se, void *payload)
{
    struct note_walk *w = payload;
    unsigned char *plain = NULL;
    size_t plain_len = 0, len = 0;
    char *text = NULL;
    fv_note n;
    fv_env e;
    int rc;

    if ((rc = fv_v_parse_stored(w->v, &e, se)))
        return w->rc = rc;
    memset(&n, 0, sizeof n);
    rc = fv_v_open_payload(w->v, &e, &plain, &plain_len);
    if (rc == FV_OK)
        rc = fv_note_decode(&text, &len, &n.time, plain, plain_len);
    fv_env_free_plain(plain, plain_len);
    if (rc) {
        fv_env_clear(&e);
        return w->rc = fv_v_err(w->v, rc == FV_ENOMEM ? rc : FV_ECORRUPT,
                                "a note failed verification (tampered or damaged)");
    }
    memcpy(n.id, e.id, FV_ID_BYTES);
    memcpy(n.record, e.record, FV_ID_BYTES);
    memcpy(n.author, e.author, FV_ID_BYTES);
    n.text = text;
    fv_env_clear(&e);
    if (w->fn(&n, w->payload))
        rc = fv_v_err(w->v, FV_ECANCELED, "stopped by the caller");
    fv_env_free_plain((unsigned char *)text, len + 1);
    return w->rc = rc;
}

static int note_list(fv_vault *v, const unsigned char *id, fv_note_fn fn,
                     void *payload)
{
    struct note_walk w = {v, fn, payload, FV_OK};
    int rc;
    if (!v || !fn)
        return FV_EINVAL;
    rc = fv_store_notes(v->store, id, note_cb, &w);
    return w.rc ? w.rc : fv_v_serr(v, rc);
}

int fv_note_list(fv_vault *v, const unsigned char *id, fv_note_fn fn,
                 void *payload)
{
    return FV_CALL(v, note_list(v, id, fn, payload));
}

struct retraction_walk {
    fv_vault *v;
    fv_retraction_fn fn;
    void *payload;
    int rc;
};

static int retraction_cb(const fv_store_env *se, void *payload)
{
    struct retraction_walk *w = payload;
    unsigned char *plain = NULL;
    size_t plain_len = 0;
    fv_retraction r;
    fv_env e;
    int rc;

    if ((rc = fv_v_parse_stored(w->v, &e, se)))
        return w->rc = rc;
    memset(&r, 0, sizeof r);
    memcpy(r.id, e.id, FV_ID_BYTES);
    memcpy(r.record, e.record, FV_ID_BYTES);
    memcpy(r.author, e.author, FV_ID_BYTES);
    /* The time is inside the payload: 0 where this vault cannot open it. */
    if (fv_v_open_payload(w->v, &e, &plain, &plain_len) == FV_OK &&
        fv_tombstone_decode(&r.time, plain, plain_len) != FV_OK)
        r.time = 0;
    fv_env_free_plain(plain, plain_len);
    fv_env_clear(&e);
    rc = FV_OK;
    if (w->fn(&r, w->payload))
        rc = fv_v_err(w->v, FV_ECANCELED, "stopped by the caller");
    return w->rc = rc;
}

static int retraction_list(fv_vault *v, fv_retraction_fn fn, void *payload)
{
    struct retraction_walk w = {v, fn, payload, FV_OK};
    int rc;
    if (!v || !fn)
        return FV_EINVAL;
    rc = fv_store_each_kind(v->store, FV_ENV_RETRACTION, retraction_cb, &w);
    return w.rc ? w.rc : fv_v_serr(v, rc);
}

int fv_retraction_list(fv_vault *v, fv_retraction_fn fn, void *payload)
{
    return FV_CALL(v, retraction_list(v, fn, payload));
}
