/*
 * store.h - the vault's SQLite file. The only module that includes sqlite3.
 *
 * Holds only what is safe to hold on a seized device: envelopes (signed
 * ciphertext), attachment chunks (ciphertext), their content-address ids, the
 * revision graph between ids, and a few meta values that are ciphertext or
 * public. Every function returns FV_OK or an FV_E code; fv_store_errmsg
 * says more (never content: SQLite messages name tables, not values).
 */
#ifndef FV_STORE_H
#define FV_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fv_store fv_store;

/* Opens `path`; with `create`, makes a new database (FV_EEXIST if one is
 * there). Without it, FV_ENOVAULT if the file is missing, FV_ECORRUPT if it
 * is not a FieldVault database, FV_EVERSION if its schema is newer. */
int fv_store_open(fv_store **out, const char *path, int create);
void fv_store_close(fv_store *s);
const char *fv_store_errmsg(const fv_store *s);

int fv_store_begin(fv_store *s); /* a write transaction */
int fv_store_commit(fv_store *s);
void fv_store_rollback(fv_store *s); /* harmless outside a transaction */
/* Around transactions that mostly add large rows (fv_db_bulk_begin). */
int fv_store_bulk_begin(fv_store *s);
int fv_store_bulk_end(fv_store *s);
/* Truncating WAL checkpoint, so deleted pages leave the WAL too. */
int fv_store_checkpoint(fv_store *s);

/* Meta values: *val is malloc'd, the caller frees it. FV_ENOTFOUND. */
int fv_store_meta_get(fv_store *s, const char *key, unsigned char **val,
                      size_t *len);
int fv_store_meta_put(fv_store *s, const char *key, const void *val,
                      size_t len);

#define FV_STORE_CKEY_BYTES 48 /* a 32-byte key and its 16-byte tag */

typedef struct fv_store_env {
    const unsigned char *id;     /* 32 bytes */
    const unsigned char *record; /* 32 bytes */
    int kind;
    const unsigned char *bytes; /* NULL if purged */
    size_t len;
    int head;
    int own;   /* written by this device: goes to the outbox */
    int grant; /* a key grant: linked to its target (parents[0]), no head */
    /* 32 bytes: the vault's keyed MAC of bytes, stored once their signature
     * was verified; NULL if none (docs/FORMAT.md 10). */
    const unsigned char *mac;
    /* FV_STORE_CKEY_BYTES: the content key wrapped for this vault
     * (fv_v_ckey_wrap, docs/FORMAT.md 10); NULL if none. */
    const unsigned char *ckey;
} fv_store_env;

/* Stores an envelope with its parent links and the chunk hashes it refers
 * to, and updates the record's heads. Storing an id twice changes nothing
 * (*added = 0). Call inside a transaction. */
int fv_store_env_put(fv_store *s, const fv_store_env *e,
                     const unsigned char (*parents)[32], size_t nparents,
                     const unsigned char (*chunks)[32], size_t nchunks,
                     int *added);

/* The envelope `id`: its record, kind and a malloc'd copy of its bytes
 * (*bytes is NULL if purged; the caller frees it), and, if `mac` is not
 * NULL, its stored MAC there (32 bytes; zeros if none). FV_ENOTFOUND. */
int fv_store_env_get(fv_store *s, const unsigned char id[32],
                     unsigned char record[32], int *kind,
                     unsigned char **bytes, size_t *len, unsigned char *mac);

/* Calls fn for every head envelope, oldest record first, then oldest head
 * first. `e` is valid during the call. fn returns non-zero to stop (that
 * value is returned). */
typedef int (*fv_store_env_fn)(const fv_store_env *e, void *payload);
int fv_store_each_head(fv_store *s, fv_store_env_fn fn, void *payload);
/* Heads of one record. */
int fv_store_record_heads(fv_store *s, const unsigned char record[32],
                          fv_store_env_fn fn, void *payload);
/* Every revision and tombstone of one record (not its key grants), in the
 * order they were stored. */
int fv_store_record_envs(fv_store *s, const unsigned char record[32],
                         fv_store_env_fn fn, void *payload);

/* Record ids in [lo, hi] (bytewise); up to `max` of them into out. */
int fv_store_records_between(fv_store *s, const unsigned char lo[32],
                             const unsigned char hi[32],
                             unsigned char (*out)[32], size_t max,
                             size_t *count);

/* Chunks of ciphertext, by content address. `delivered`: the server holds
 * it (a chunk received from the server, or acknowledged by it). */
int fv_store_chunk_put(fv_store *s, const unsigned char hash[32],
                       const void *data, size_t len, int delivered);
/* 1 if held / listed by a stored envelope, 0 if not, or an FV_E code. */
int fv_store_chunk_has(fv_store *s, const unsigned char hash[32]);
int fv_store_chunk_referenced(fv_store *s, const unsigned char hash[32]);
/* 1 and *len = its ciphertext's size if the chunk is held, 0 if not, or an
 * FV_E code: its length checked against the attachment's size without
 * reading it. */
int fv_store_chunk_len(fv_store *s, const unsigned char hash[32], size_t *len);
/* Marks a chunk acknowledged by the server. */
int fv_store_chunk_delivered(fv_store *s, const unsigned char hash[32]);

/* Pages of chunk hashes, in hash order after `after` (32 zero bytes to
 * start), at most `max`: fn returns non-zero to stop. */
typedef int (*fv_store_hash_fn)(const unsigned char *hash, uint64_t len,
                                void *payload);
/* The chunk outbox: chunks of own envelopes whose receipts are committed,
 * not yet acknowledged by the server (`len`: their size). */
int fv_store_chunk_outbox(fv_store *s, const unsigned char after[32], size_t max,
                          fv_store_hash_fn fn, void *payload);
/* Chunks of own envelopes not yet acknowledged by the server, whether or
 * not their envelopes' receipts are in (a courier bundle's), as above. */
int fv_store_chunk_unsent(fv_store *s, const unsigned char after[32], size_t max,
                          fv_store_hash_fn fn, void *payload);
/* Chunks that stored envelopes list but this vault does not hold. */
int fv_store_chunk_missing(fv_store *s, const unsigned char after[32], size_t max,
                           fv_store_hash_fn fn, void *payload);
/* Copies chunk `hash` into buf (cap bytes). FV_ENOTFOUND, FV_ECORRUPT if it
 * does not fit. */
int fv_store_chunk_get(fv_store *s, const unsigned char hash[32],
                       unsigned char *buf, size_t cap, size_t *len);

/* Destroys the ciphertext of every envelope of `record` but `keep`, and the
 * chunks no remaining envelope refers to. Call inside a transaction. */
int fv_store_purge_record(fv_store *s, const unsigned char record[32],
                          const unsigned char keep[32]);
/* Retention: destroys the ciphertext of the record's revisions, tombstones
 * and key grants, and the chunks no remaining envelope refers to; its notes
 * stay readable. Inside a transaction. */
int fv_store_drop_record(fv_store *s, const unsigned char record[32]);

/* Calls fn with every key grant envelope that targets `target`. */
typedef int (*fv_store_blob_fn)(const unsigned char *bytes, size_t len,
                                void *payload);
int fv_store_grants(fv_store *s, const unsigned char target[32],
                    fv_store_blob_fn fn, void *payload);

/* The outbox: own envelopes without a committed receipt, at most `max`,
 * after position `after` (0: from the start): the key grants first, then
 * the others, each in the order they were written. A position (fn's
 * `seq`, the next call's `after`) is a grant's local sequence number, or
 * another's plus FV_STORE_OUTBOX_SPAN. */
#define FV_STORE_OUTBOX_SPAN ((int64_t)1 << 62)
typedef int (*fv_store_outbox_fn)(int64_t seq, const unsigned char *id,
                                  const unsigned char *bytes, size_t len,
                                  void *payload);
int fv_store_outbox(fv_store *s, int64_t after, size_t max,
                    fv_store_outbox_fn fn, void *payload);

/* Stores a receipt (sealed by the vault: vault_sync.c) and marks the
 * envelopes it names delivered (envelope.delivered 1), or refused (2) where
 * `refused` (NULL: none) is not 0. Call inside a transaction. */
int fv_store_delivered(fv_store *s, const unsigned char *sealed, size_t len,
                       const unsigned char *const *ids,
                       const unsigned char *refused, size_t n);
/* Puts every own envelope, and every chunk they list, back in the outbox
 * (a new server, or one that lost some). Call inside a transaction. */
int fv_store_undeliver_all(fv_store *s);
/* Every own, unpurged envelope that is not a grant, in write order. */
int fv_store_own_envelopes(fv_store *s, fv_store_env_fn fn, void *payload);

/* Whether every own envelope of `record` has its receipt and every chunk
 * they list was acknowledged. */
int fv_store_record_delivered(fv_store *s, const unsigned char record[32],
                              int *delivered);
/* Calls fn for each record this device created that is delivered as above
 * and still has ciphertext here. */
int fv_store_delivered_records(fv_store *s, int (*fn)(const unsigned char *record,
                                                      void *payload),
                               void *payload);

/* Bytes a sync has to send: own envelopes without receipts and chunks of
 * own envelopes not yet acknowledged. */
int fv_store_pending_upload(fv_store *s, uint64_t *bytes);

/* Records with more than one head that is a revision (a conflict). */
int fv_store_conflicts(fv_store *s, size_t *count);

/* ---- the coordinator's desk (desk.c) ------------------------------------ */

/* Indexes a review state this vault can read; the record keeps the newest
 * (by time, then by the larger id). Inside a transaction. */
int fv_store_review_put(fv_store *s, const unsigned char record[32],
                        const unsigned char id[32], int64_t time, int state);
/* The record's indexed review state. FV_ENOTFOUND if none. */
int fv_store_review_get(fv_store *s, const unsigned char record[32],
                        int *state, int64_t *time);
/* Indexes a note this vault can read. Inside a transaction. */
int fv_store_note_put(fv_store *s, const unsigned char id[32],
                      const unsigned char record[32]);
int fv_store_note_count(fv_store *s, const unsigned char record[32],
                        size_t *count);
/* The indexed notes about `record` (NULL: every record), in the order they
 * were stored. */
int fv_store_notes(fv_store *s, const unsigned char *record,
                   fv_store_env_fn fn, void *payload);
/* 1 if the vault holds a retraction of `record`, 0 if not, or an FV_E code. */
int fv_store_retracted(fv_store *s, const unsigned char record[32]);
/* Every envelope of one kind that still has its bytes, in stored order. */
int fv_store_each_kind(fv_store *s, int kind, fv_store_env_fn fn,
                       void *payload);
/* 1 if envelope `id` was written by this device, 0 if not (or unknown), or
 * an FV_E code. */
int fv_store_env_own(fv_store *s, const unsigned char id[32]);
/* Deletes every envelope of `record` but its retractions, with their parent
 * links, heads, key grants, notes, review state and the chunks nothing else
 * lists. Inside a transaction; checkpoint after the commit. */
int fv_store_retract_record(fv_store *s, const unsigned char record[32]);

/* ---- chain of custody and evidence (verify.c, export.c) ----------------- */

/* Every envelope (all kinds; bytes NULL if purged), in the order stored. */
int fv_store_each_envelope(fv_store *s, fv_store_env_fn fn, void *payload);
/* Every envelope of one record, its key grants included, in the order
 * stored. */
int fv_store_record_all_envs(fv_store *s, const unsigned char record[32],
                             fv_store_env_fn fn, void *payload);
/* Every stored chunk, in hash order; `data` is valid during the call. */
typedef int (*fv_store_chunk_fn)(const unsigned char *hash,
                                 const unsigned char *data, size_t len,
                                 void *payload);
int fv_store_each_chunk(fv_store *s, fv_store_chunk_fn fn, void *payload);
/* Every stored server receipt, oldest first, as sealed (fv_vs_each_receipt
 * opens them). */
typedef int (*fv_store_receipt_fn)(int64_t seq, const unsigned char *sealed,
                                   size_t len, void *payload);
int fv_store_each_receipt(fv_store *s, fv_store_receipt_fn fn, void *payload);
/* The record of envelope `id` (purged or not). FV_ENOTFOUND. */
int fv_store_env_record(fv_store *s, const unsigned char id[32],
                        unsigned char record[32]);


/* ---- who may speak (store_devices.c) ---------------------------------- */

/* A device the organisation certified (docs/FORMAT.md 15): the facts of its
 * newest certificate, which is kept beside them. */
typedef struct fv_store_device {
    unsigned char pk[32];
    int role;
    int64_t enrolled;
    int has_revoked;
    int64_t revoked;
    const unsigned char *cert; /* put: the certificate; get: not filled */
    size_t cert_len;
} fv_store_device;

/* FV_OK with *d filled, or FV_ENOTFOUND. */
int fv_store_device_get(fv_store *s, const unsigned char pk[32],
                        fv_store_device *d);
/* Inserts or replaces the row of d->pk. Inside a transaction. */
int fv_store_device_put(fv_store *s, const fv_store_device *d);
/* Every stored certificate, in device order. */
int fv_store_device_certs(fv_store *s, fv_store_blob_fn fn, void *payload);

typedef struct fv_store_quarantined {
    const unsigned char *id, *author;
    int kind, why, courier;
    int64_t arrived;
    const unsigned char *bytes;
    size_t len;
} fv_store_quarantined;
typedef int (*fv_store_quarantine_fn)(const fv_store_quarantined *q,
                                      void *payload);

/* Keeps an envelope apart (or updates why it is). Inside a transaction. */
int fv_store_quarantine_put(fv_store *s, const fv_store_quarantined *q);
int fv_store_quarantine_del(fv_store *s, const unsigned char id[32]);
/* The quarantined envelopes, by arrival; by `author` only unless NULL. */
int fv_store_quarantine_each(fv_store *s, const unsigned char *author,
                             fv_store_quarantine_fn fn, void *payload);

#endif
