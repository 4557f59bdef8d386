/*
 * vault_internal.h - what vault.c shares with the other files of the vault
 * (vault_sync.c). Not installed; not for embedders.
 */
#ifndef FV_VAULT_INTERNAL_H
#define FV_VAULT_INTERNAL_H

#include <stdint.h>

#include "call.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"
#include "store.h"

/* The sync lock's file in the vault directory (fv_vs_lock): it holds no
 * data, and panic removes it with the rest. */
#define FV_SYNC_LOCK_FILE "sync.lock"

/* The key file: a 48-byte header and two key slots of 72 bytes. */
#define FV_V_KEYFILE_BYTES 192

/* Secrets of an open vault, in one guarded allocation. */
struct secrets {
    unsigned char vault_key[FV_KEY_BYTES];
    unsigned char sign_sk[FV_SIGN_SK_BYTES];
    unsigned char box_sk[FV_BOX_SK_BYTES];
    unsigned char org_sk[FV_BOX_SK_BYTES]; /* coordinators only */
    /* Subkey 4 of the vault key: MACs of envelopes whose signature this
     * vault verified (docs/FORMAT.md 4 and 10). */
    unsigned char env_mac_key[FV_KEY_BYTES];
};

struct fv_vault {
    char *dir;
    fv_store *store;
    struct secrets *sec; /* fv_secure_alloc */
    unsigned char sign_pk[FV_SIGN_PK_BYTES];
    unsigned char box_pk[FV_BOX_PK_BYTES];
    int has_org_sk;     /* this vault holds the organisation's secret key */
    int has_org_pk;     /* the organisation's public key is known */
    unsigned char org_pk[FV_BOX_PK_BYTES];
    uint64_t opslimit, memlimit;
    /* The key file as read or last written (docs/FORMAT.md 3): its header
     * and both slots, so passwd and duress rewrap one slot and keep the
     * other. Not secret, but wiped with the handle. */
    unsigned char keyfile[FV_V_KEYFILE_BYTES];
    char msg[256];
};

/* Records a failure message on the handle and returns rc (FV_OK passes). */
int fv_v_err(fv_vault *v, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Resets the thread's fv_error_last() to "no error": the success of a call
 * with no handle (docs/API.md, "Result codes and messages"). */
void fv_error_clear_last(void);
/* Sets the thread's fv_error_last() message (a call with no handle). */
void fv_error_set_last(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A store failure, with the store's message. */
int fv_v_serr(fv_vault *v, int rc);
int64_t fv_v_now(void);

/* nonce || XChaCha20-Poly1305 under crypto_kdf subkey `subkey_id` of the
 * vault key, bound to `ad`: `out` holds FV_NONCE_BYTES + len +
 * FV_TAG_BYTES; opening writes blen - FV_NONCE_BYTES - FV_TAG_BYTES bytes
 * (FV_ECORRUPT if the blob is short or fails to authenticate). */
int fv_v_subkey_seal(const fv_vault *v, uint64_t subkey_id, unsigned char *out,
                     const unsigned char *plain, size_t len,
                     const unsigned char *ad, size_t adlen);
int fv_v_subkey_open(const fv_vault *v, uint64_t subkey_id, unsigned char *plain,
                     const unsigned char *blob, size_t blen,
                     const unsigned char *ad, size_t adlen);
/* Secrets kept in the meta table, encrypted under crypto_kdf subkey
 * `subkey_id` of the vault key and bound to `ad`. */
int fv_v_meta_seal(fv_vault *v, const char *name, uint64_t subkey_id,
                   const unsigned char *plain, size_t len,
                   const unsigned char *ad, size_t adlen);
int fv_v_meta_open(fv_vault *v, const char *name, uint64_t subkey_id,
                   unsigned char *plain, size_t len, const unsigned char *ad,
                   size_t adlen);

/* Parses a stored envelope and checks it is what the store says it is. */
int fv_v_parse_stored(fv_vault *v, fv_env *e, const fv_store_env *se);

/* The vault's MAC of envelope bytes whose signature it has verified. */
void fv_v_env_mac(const fv_vault *v, unsigned char mac[FV_HASH_BYTES],
                  const unsigned char *bytes, size_t len);
/* fv_env_parse of stored bytes: the Ed25519 verify is skipped when `mac`
 * (32 bytes, or NULL) is the vault's MAC of them; every other check stays.
 * Returns fv_env_parse's codes, sets no message. */
int fv_v_env_parse(const fv_vault *v, fv_env *e, const unsigned char *bytes,
                   size_t len, const unsigned char *mac);

/* Decrypts an envelope's payload with whatever key this vault holds for it:
 * its own X25519 key, the organisation's, or a key grant. */
int fv_v_open_payload(fv_vault *v, const fv_env *e, unsigned char **plain,
                      size_t *plain_len);

/* The recipients of a new envelope: this device, the organisation (when its
 * key is known), and `extra` (the recipients of the revision it builds on). */
size_t fv_v_recipients(const fv_vault *v,
                       unsigned char out[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES],
                       const fv_env *extra);

/* A new envelope signed by this device, stored in the open transaction and
 * queued in the outbox. */
typedef struct fv_v_write {
    int kind;
    const unsigned char *record; /* NULL: a genesis revision */
    const unsigned char (*parents)[FV_ID_BYTES];
    size_t nparents;
    const unsigned char *payload; /* plaintext */
    size_t payload_len;
    const fv_env *base; /* its recipients are kept (an edit) */
    const unsigned char (*recipients)[FV_BOX_PK_BYTES]; /* or exactly these */
    size_t nrecipients;
    const unsigned char *content_key; /* a grant: this key, not a fresh one */
    const uint64_t *chunk_counts;
    size_t nattachments;
    const unsigned char (*chunks)[FV_HASH_BYTES];
    size_t nchunks;
} fv_v_write;

int fv_v_write_envelope(fv_vault *v, unsigned char id_out[FV_ID_BYTES],
                        const fv_v_write *w);

/* ---- files (vault.c) ---------------------------------------------------- */

void fv_v_put_le(unsigned char *p, uint64_t v, int n);

/* ---- reading records (records.c) ---------------------------------------- */

/* Why `e`, validly signed, does not open here (enum fv_unreadable_reason):
 * sealed to the organisation key while this vault lacks its secret half,
 * or to no key it holds at all. */
int fv_v_sealed_reason(const fv_vault *v, const fv_env *e);

/* The newest undeleted head of one record, gathered from its head rows. */
struct head_pick {
    fv_vault *v;
    fv_rec *best;
    fv_env best_env; /* with want_env: kept for attachment chunk lists */
    unsigned char *best_bytes;
    size_t nheads;
    int rc;
    int want_env;
    /* A head this vault cannot open (enum fv_unreadable_reason; 0: none),
     * the first one met: what a listing shows when no head opens. */
    int unread;
    unsigned char unread_rev[FV_ID_BYTES];
    unsigned char unread_author[FV_ID_BYTES];
};

/* Finds the newest undeleted head of record `id` (FV_ENOTFOUND if none).
 * Release with fv_v_pick_clear. */
int fv_v_newest_head(fv_vault *v, struct head_pick *p,
                     const unsigned char id[FV_ID_BYTES], int want_env);
void fv_v_pick_clear(struct head_pick *p);

/* ---- the coordinator's desk (desk.c) ------------------------------------ */

/* Fills r->origin, r->state and r->nnotes of a record just read. */
int fv_v_record_desk(fv_vault *v, fv_record *r);
/* Indexes a note or review state that this vault can open (others are left
 * alone). Inside a transaction. */
int fv_v_desk_index(fv_vault *v, const fv_env *e);
/* Indexes every stored note and review state this vault can open: call it,
 * inside a transaction, once the vault has learned the organisation's
 * secret key. */
int fv_v_desk_reindex(fv_vault *v);

/* ---- writing attachments (attachments.c) --------------------------------- */

/* The attachments of a revision being written. */
struct attach_out {
    fv_attachment_info *info;            /* grows with the record */
    unsigned char (*keys)[FV_KEY_BYTES]; /* locked memory, wiped on free */
    uint64_t *counts;                    /* chunks per attachment */
    unsigned char *padded;               /* last chunk padded (FORMAT.md 8) */
    unsigned char (*chunks)[FV_HASH_BYTES];
    size_t n, nchunks, chunks_cap;
};

struct progress {
    fv_progress_fn fn;
    void *payload;
    uint64_t done, total;
};

int fv_v_attach_init(struct attach_out *o, size_t n);
void fv_v_attach_free(struct attach_out *o);
int fv_v_chunks_push(struct attach_out *o, const unsigned char h[FV_HASH_BYTES]);
/* Encrypts one source into chunks stored inside the open transaction, with
 * the chunk buffers `plain` (locked) and `ct` of FV_CHUNK_BYTES (+ tag). */
int fv_v_attach_add(fv_vault *v, struct attach_out *o, size_t idx,
                    const fv_attachment_source *src, struct progress *pr,
                    unsigned char *plain, unsigned char *ct);
/* The sum of the sizes of the file sources (for progress). */
uint64_t fv_v_sources_total(const fv_record_input *in);


/* ---- who may speak (devices.c) ------------------------------------------ */

/* Inside a transaction, for an envelope verified and about to be stored:
 * 1 if its author may speak here (docs/PROTOCOL.md, "Who may speak"), 0 if
 * it was kept apart in the quarantine instead, or an error. `courier`: it
 * came in a bundle, not from the server. */
int fv_v_admit(fv_vault *v, const fv_env *e, const unsigned char *bytes,
               size_t len, int courier);
/* Inside a transaction (vault_sync.c): imports an envelope taken out of the
 * quarantine as it would have been imported when it arrived; *added
 * grows by one if it was stored (not kept apart again, not dropped). */
int fv_v_import_released(fv_vault *v, const unsigned char *bytes, size_t len,
                         int courier, size_t *added, int *retracted);

#endif
