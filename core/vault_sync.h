/*
 * vault_sync.h - what the sync engine (sync/) needs from a vault: its sync
 * state, its outbox, receipts, verified import of pulled envelopes, and the
 * organisation key. Internal: embedders use fieldvault_sync.h.
 *
 * Every function returns FV_OK or an FV_E code and leaves a message on the
 * vault handle.
 */
#ifndef FV_VAULT_SYNC_H
#define FV_VAULT_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "fieldvault.h"
#include "store.h"

/* What a vault remembers about its server. Stored encrypted in the vault
 * (it names the organisation's server). */
typedef struct fv_sync_state {
    char server[256];              /* host:port */
    unsigned char pin[32];         /* BLAKE2b-256 of the server's TLS key */
    unsigned char server_key[32];  /* the server's Ed25519 receipt key */
    int has_epoch;
    unsigned char epoch[16];
    uint64_t cursor;               /* feed position reached */
    unsigned char chain[32];       /* feed chain at the cursor */
    int role;                      /* FV_ROLE_* (sync/proto.h) */
    /* The receipt mark: the highest log position a receipt of this device
     * named (0: none since enrollment, a new server or a rollback), and
     * the envelope id there. Sent in PULL, so that a server that lost it
     * says so (docs/PROTOCOL.md, PULL). */
    uint64_t rseq;
    unsigned char rid[32];
} fv_sync_state;

/* The vault's sync lock: one exchange with the server (sync, enroll, the
 * coordinator's requests) per vault at a time, across processes and
 * handles: an exclusive flock on sync.lock in the vault directory, held
 * until fv_vs_unlock (or the process ends). FV_EBUSY with a message, and
 * *fd = -1, when another holds it. */
int fv_vs_lock(fv_vault *v, int *fd);
void fv_vs_unlock(int fd);

/* FV_ENOTFOUND if the vault never enrolled. */
int fv_vs_state_get(fv_vault *v, fv_sync_state *st);
/* Saves the state (in its own transaction). */
int fv_vs_state_put(fv_vault *v, const fv_sync_state *st);

void fv_vs_device(const fv_vault *v, unsigned char sign_pk[32],
                  unsigned char box_pk[32]);
/* Signs with the device's Ed25519 key. */
void fv_vs_sign(fv_vault *v, unsigned char sig[64], const unsigned char *m,
                size_t n);

/* The organisation's public key, if known: 1 and *pk, else 0. */
int fv_vs_org_pk(const fv_vault *v, unsigned char pk[32]);
/* Learns the organisation's public key (from an invite or a WELCOME) and
 * writes key grants so that everything recorded before reaches it readable.
 * A different key than the one already known is refused (FV_EDENIED). */
int fv_vs_org_learn(fv_vault *v, const unsigned char pk[32]);
/* Creates the organisation key pair in this (coordinator's) vault. FV_EEXIST
 * if it has one. */
int fv_vs_org_create(fv_vault *v, unsigned char pk[32]);

/* The outbox, as fv_store_outbox. */
int fv_vs_outbox(fv_vault *v, int64_t after, size_t max,
                 fv_store_outbox_fn fn, void *payload);

/* Commits a server receipt (already verified by the sync engine) and marks
 * the envelopes it names delivered, with *st (its receipt mark moved; NULL:
 * the state unchanged), in one transaction; those whose `refused` entry is
 * not 0 (NULL: none) are marked refused: out of the outbox, never counted
 * as delivered. */
int fv_vs_delivered(fv_vault *v, const fv_sync_state *st,
                    const unsigned char *body, size_t body_len,
                    const unsigned char sig[64],
                    const unsigned char *const *ids,
                    const unsigned char *refused, size_t n);

/* Every stored server receipt, oldest first, opened: `body` and `sig` (64
 * bytes) are valid during the call; both NULL for a stored receipt that
 * does not open (damaged). Returns the first non-zero callback result or
 * a store code. */
typedef int (*fv_vs_receipt_fn)(int64_t seq, const unsigned char *body,
                                size_t body_len, const unsigned char *sig,
                                void *payload);
int fv_vs_each_receipt(fv_vault *v, fv_vs_receipt_fn fn, void *payload);

/* A server that holds nothing of ours, or lost part of it (another epoch,
 * or a rollback): every own envelope, and every chunk they list, goes back
 * to the outbox, and *st (its cursor, chain and receipt mark reset by the
 * caller) is saved, in one transaction. Receipts already held stay. */
int fv_vs_reset(fv_vault *v, const fv_sync_state *st);

/* Verifies and stores pulled envelopes in one transaction, together with
 * *st (the cursor the sync engine advanced after checking the chain). A
 * field device accepts only envelopes it wrote or that are addressed to it,
 * and retractions (the server decides who may retract, and routes them to
 * every device that held part of the record) whatever they are sealed to.
 * FV_EPROTO if an envelope is forged or not meant for this device: nothing
 * of the batch is stored. *added counts envelopes new to the vault.
 * *refused counts validly signed envelopes whose content this vault can
 * open and that break FORMAT.md (fv_payload_check): each is left out,
 * stored nowhere and acted on in no way, and the rest of the batch goes on.
 * With st NULL (a courier bundle, as fv_vs_import_bundle) no cursor moves
 * and any author's verified envelope is accepted, except review states
 * and what the device list keeps apart (devices.c, fv_v_admit). */
int fv_vs_import(fv_vault *v, const fv_sync_state *st,
                 const unsigned char *const *env, const size_t *len, size_t n,
                 size_t *added, size_t *refused);
/* What fv_vs_check found of one pulled envelope. Holds a content key:
 * keep it in fv_secure_alloc memory and wipe it once imported. */
typedef struct fv_vs_checked {
    int rc;     /* FV_OK, or the code its parse fails with (FV_ECORRUPT,
                   FV_EVERSION, FV_ENOMEM) */
    int key_rc; /* rc FV_OK: FV_OK (key is its content key, unsealed with
                   the device's or the organisation's key), FV_ECORRUPT
                   (its seal to one of them does not open) or FV_ENOTFOUND
                   (sealed to neither: import looks for a key grant) */
    int payload_rc; /* key_rc FV_OK: the payload decrypted with key and
                       checked against FORMAT.md (fv_payload_check): FV_OK,
                       FV_ECORRUPT or FV_ENOMEM */
    unsigned char key[32];
} fv_vs_checked;
/* The costly part of importing one pulled envelope, done ahead: its
 * structure and signature checked, its content key unsealed, its payload
 * decrypted and checked (the plaintext is not kept). Reads only
 * the vault's keys: several threads may call it at once, while the
 * thread that owns the vault does nothing else with it (the sync's worker
 * pool, sync/session.c). */
void fv_vs_check(const fv_vault *v, const unsigned char *env, size_t len,
                 fv_vs_checked *out);
/* fv_vs_import with checked[i] what fv_vs_check found of env[i] (NULL:
 * each is checked here): an envelope whose check failed fails the batch as
 * its own check would have, and the work done is not done again. */
int fv_vs_import_checked(fv_vault *v, const fv_sync_state *st,
                         const unsigned char *const *env, const size_t *len,
                         const fv_vs_checked *checked, size_t n,
                         size_t *added, size_t *refused);
/* A pull's batches in one transaction: after fv_vs_pull_hold, each
 * fv_vs_import_checked (or fv_vs_import) joins the transaction instead of
 * committing its own, until fv_vs_pull_flush commits them all (with the
 * last cursor they stored) or fv_vs_pull_drop rolls them back (the next
 * pull reads them again). Nothing else may use the vault's store meanwhile.
 * A failed import leaves the transaction for fv_vs_pull_drop. Fewer, larger
 * commits write each random-keyed index page once per several batches
 * rather than once per batch. fv_vs_pull_drop with nothing held is
 * harmless. */
int fv_vs_pull_hold(fv_vault *v);
int fv_vs_pull_flush(fv_vault *v);
void fv_vs_pull_drop(fv_vault *v);
/* A courier bundle's batch: no server checked who wrote what, and a vault
 * cannot tell a coordinator's key from a field device's, so a review state
 * (kind 5) is not stored unless this device wrote it; *skipped counts those
 * left out (the rest imports). A retraction is taken only from the record's
 * creating device; notes are taken from any author (they carry it). */
int fv_vs_import_bundle(fv_vault *v, const unsigned char *const *env,
                        const size_t *len, size_t n, size_t *added,
                        size_t *skipped, size_t *refused);

/* ---- attachment chunks ------------------------------------------------ */

/* The chunk outbox and the missing chunks, as in store.h. */
int fv_vs_chunk_outbox(fv_vault *v, const unsigned char after[32], size_t max,
                       fv_store_hash_fn fn, void *payload);
int fv_vs_chunk_missing(fv_vault *v, const unsigned char after[32], size_t max,
                        fv_store_hash_fn fn, void *payload);
/* A chunk's ciphertext into buf. */
int fv_vs_chunk_get(fv_vault *v, const unsigned char hash[32],
                    unsigned char *buf, size_t cap, size_t *len);
/* The server holds these chunks: marks them delivered, in one transaction. */
int fv_vs_chunks_delivered(fv_vault *v, const unsigned char *const *hash,
                           size_t n);
/* Stores a chunk that arrived: it must hash to `hash` and be listed by a
 * stored envelope (FV_EPROTO otherwise, and nothing is stored). */
int fv_vs_chunk_store(fv_vault *v, const unsigned char hash[32],
                      const unsigned char *data, size_t len);

/* The chunks of own envelopes the server has not acknowledged, whether or
 * not the envelopes' receipts are in: what a courier bundle carries. */
int fv_vs_chunk_unsent(fv_vault *v, const unsigned char after[32], size_t max,
                       fv_store_hash_fn fn, void *payload);
/* A chunk from a courier bundle, checked as fv_vs_chunk_store checks one
 * from the server: *got says what became of it. A chunk that does not hash
 * to `hash` or that no stored envelope lists is not stored (FV_OK: the
 * caller counts it); one already held is left as it is. */
enum {
    FV_VS_CHUNK_ADDED = 1,
    FV_VS_CHUNK_HELD,
    FV_VS_CHUNK_TAMPERED,
    FV_VS_CHUNK_UNLISTED
};
int fv_vs_chunk_import(fv_vault *v, const unsigned char hash[32],
                       const unsigned char *data, size_t len, int *got);
/* A transaction around a run of fv_vs_chunk_import calls (one commit, one
 * fsync, for many chunks); fv_vs_chunks_end commits, or with commit 0 rolls
 * back. */
int fv_vs_chunks_begin(fv_vault *v);
int fv_vs_chunks_end(fv_vault *v, int commit);
/* Around an import of many chunks: the new pages are written once, not to
 * the WAL and again at the checkpoint (fv_db_bulk_begin, store_db.c).
 * fv_vs_bulk_begin is 1 if the vault switched, 0 if not (another
 * connection has it open: slower, no less safe); call fv_vs_bulk_end after
 * a 1, outside a transaction. */
int fv_vs_bulk_begin(fv_vault *v);
int fv_vs_bulk_end(fv_vault *v);

/* Applies the retention policy after a sync: with drop-after-receipt,
 * destroys the local copy of every record this device wrote whose envelopes
 * and chunks are all delivered. *dropped counts them. */
int fv_vs_apply_retention(fv_vault *v, size_t *dropped);

/* Bytes a sync has ahead of it to send (for progress). */
int fv_vs_pending_upload(fv_vault *v, uint64_t *bytes);

/* Leaves a message on the vault handle (for the sync session's failures)
 * and returns rc. */
int fv_vs_fail(fv_vault *v, int rc, const char *msg);

/* The proxy URL this vault syncs through (it may hold credentials: stored
 * sealed, padded to a fixed size). */
#define FV_VS_PROXY_BYTES 1024
/* Copies it, NUL-terminated, into buf: FV_ENOTFOUND when none is set. The
 * caller wipes buf. */
int fv_vs_proxy_get(fv_vault *v, char buf[FV_VS_PROXY_BYTES]);
/* Remembers `url` (already checked; at most FV_VS_PROXY_BYTES - 1 bytes), or
 * forgets the proxy when url is NULL. */
int fv_vs_proxy_put(fv_vault *v, const char *url);

/* Records with more than one live head. */
int fv_vs_conflicts(fv_vault *v, size_t *count);


/* ---- who may speak (devices.c) ------------------------------------------ */

/* A device as the server lists it, for fv_vs_certify. */
typedef struct fv_vs_devinfo {
    unsigned char pk[32];
    int role;
    int revoked;
    int64_t enrolled;
    int64_t revoked_at; /* when, as the server recorded it; 0: not known */
} fv_vs_devinfo;

/* 1 if this vault holds the organisation's secret key (it certifies). */
int fv_vs_can_certify(const fv_vault *v);
/* Signs a certificate for each listed device this vault's list lacks, and
 * a revocation for each newly revoked one (dated now), stores them and
 * releases the envelopes they cover. */
int fv_vs_certify(fv_vault *v, const fv_vs_devinfo *list, size_t n,
                  size_t *issued, size_t *released);
/* Certificates from a courier bundle: each is verified against the
 * organisation's public key; one that fails is counted in *rejected and
 * passed over. */
int fv_vs_certs_import(fv_vault *v, const unsigned char *const *cert,
                       const size_t *len, size_t n, size_t *added,
                       size_t *rejected);
/* Every certificate this vault holds (for a bundle). */
int fv_vs_certs_each(fv_vault *v, fv_store_blob_fn fn, void *payload);

#endif
