/*
 * store_server.h - the sync server's SQLite database (server.db). Part of the
 * store module: the only files that include sqlite3 are core/store*.c and
 * this one.
 *
 * The server holds ciphertext and public keys only: signed envelopes, the
 * devices' public keys, BLAKE2b-256 hashes of invite tokens (a leaked
 * database leaks no usable token), and a few public meta values (format,
 * epoch, receipt public key, listen address, organisation public key).
 *
 * Tables (see docs/PROTOCOL.md for the log and feeds):
 *   meta(k, v)
 *   device(pk, box, name, role, revoked, enrolled)
 *   invite(token_hash, name, role, expires, used, device)
 *   log(seq, id, author, bytes, chain)      the global log, seq 1, 2, 3...
 *   feed(device, fseq, seq, chain)          a field device's feed of the log
 *   chunkref(hash, seq)                     the chunks each log entry lists
 *   chunk(hash, pack, off, len)             where a chunk's bytes are
 *   logrec(seq, record)                     the record each log entry is of
 *   retracted(record, seq, id)              retracted records, and by what
 *
 * Chunk bodies (attachment ciphertext) are not in the database: they are in
 * pack files beside it (see "attachment chunks" below).
 *
 * This module stores what it is given: chains are computed by the caller
 * (server/server_engine.c, with fv_chain_next), because the chain formula
 * belongs to the protocol layer above.
 *
 * Every function returns FV_OK or an FV_E code; fv_sstore_errmsg says more
 * (SQLite messages name tables, never values). A handle is used by one
 * thread at a time. Writes that must be atomic go between fv_sstore_begin
 * and fv_sstore_commit.
 */
#ifndef FV_STORE_SERVER_H
#define FV_STORE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#define FV_SSTORE_NAME_MAX 128 /* bytes of a device or invite name */

typedef struct fv_sstore fv_sstore;

/* Opens the server database at `path`; with `create`, makes a new one
 * (FV_EEXIST if a file is there). Without it: FV_ENOTFOUND if the file is
 * missing, FV_ECORRUPT if it is not a FieldVault server database (a vault's
 * database included), FV_EVERSION if its schema is newer. WAL journal,
 * synchronous=FULL: a commit is durable when it returns. */
int fv_sstore_open(fv_sstore **out, const char *path, int create);
/* Finalizes, checkpoints and closes. NULL is harmless. */
void fv_sstore_close(fv_sstore *s);
/* The last failure's message; valid until the next call on the handle. */
const char *fv_sstore_errmsg(const fv_sstore *s);

int fv_sstore_begin(fv_sstore *s); /* BEGIN IMMEDIATE */
/* COMMIT; first destroys the chunk bytes a retraction or a discard left to
 * destroy (see "records and retraction"), then checkpoints if it did. */
int fv_sstore_commit(fv_sstore *s);
void fv_sstore_rollback(fv_sstore *s); /* harmless outside a transaction */
int fv_sstore_checkpoint(fv_sstore *s); /* truncating WAL checkpoint */

/* Meta values. *val is malloc'd (the caller frees it). FV_ENOTFOUND. */
int fv_sstore_meta_get(fv_sstore *s, const char *key, unsigned char **val,
                       size_t *len);
/* Reads a meta value that must be exactly `len` bytes (FV_ECORRUPT if not). */
int fv_sstore_meta_get_fixed(fv_sstore *s, const char *key, void *val,
                             size_t len);
int fv_sstore_meta_put(fv_sstore *s, const char *key, const void *val,
                       size_t len);

/* ---- devices ---------------------------------------------------------- */

typedef struct fv_sstore_device {
    unsigned char pk[32];  /* Ed25519: the device's identity */
    unsigned char box[32]; /* X25519: what envelopes are sealed to */
    char name[FV_SSTORE_NAME_MAX + 1]; /* NUL-terminated copy ... */
    size_t name_len;                   /* ... of name_len bytes */
    int role;                          /* 1 field, 2 coordinator */
    int revoked;
    int64_t enrolled; /* Unix seconds */
    int64_t revoked_at; /* Unix seconds; 0 if not revoked or not known */
} fv_sstore_device;

/* FV_ENOTFOUND if no device has that key. */
int fv_sstore_device_get(fv_sstore *s, const unsigned char pk[32],
                         fv_sstore_device *d);
int fv_sstore_device_by_box(fv_sstore *s, const unsigned char box[32],
                            fv_sstore_device *d);
/* Adds a device. FV_EEXIST if its pk or box is already registered,
 * FV_EINVAL if the name is too long. */
int fv_sstore_device_add(fv_sstore *s, const fv_sstore_device *d);
/* Marks a device revoked at `now` (again is harmless and keeps the first
 * time). FV_ENOTFOUND. */
int fv_sstore_device_revoke(fv_sstore *s, const unsigned char pk[32],
                            int64_t now);
/* Calls fn for each device in enrollment order, at most `max` of them; `d`
 * is valid during the call. fn returns non-zero to stop (that value is
 * returned). */
typedef int (*fv_sstore_device_fn)(const fv_sstore_device *d, void *payload);
int fv_sstore_each_device(fv_sstore *s, size_t max, fv_sstore_device_fn fn,
                          void *payload);

/* ---- invites ---------------------------------------------------------- */

typedef struct fv_sstore_invite {
    char name[FV_SSTORE_NAME_MAX + 1];
    size_t name_len;
    int role;
    int64_t expires; /* Unix seconds: valid while now < expires */
    int used;
    int has_device;
    unsigned char device[32]; /* who redeemed it, if used */
} fv_sstore_invite;

/* Adds an invite under the hash of its token. FV_EEXIST, FV_EINVAL. */
int fv_sstore_invite_add(fv_sstore *s, const unsigned char token_hash[32],
                         const char *name, size_t name_len, int role,
                         int64_t expires);
/* FV_ENOTFOUND. */
int fv_sstore_invite_get(fv_sstore *s, const unsigned char token_hash[32],
                         fv_sstore_invite *inv);
/* Marks an unused invite used by `device`. FV_EINVITE if it is unknown or
 * already used (the check and the update are one statement). */
int fv_sstore_invite_use(fv_sstore *s, const unsigned char token_hash[32],
                         const unsigned char device[32]);

/* ---- the log and the feeds -------------------------------------------- */

/* The log position of envelope `id`. FV_ENOTFOUND. */
int fv_sstore_log_find(fv_sstore *s, const unsigned char id[32],
                       uint64_t *seq);
/* The same, with the envelope's author (32 bytes) into `author`. */
int fv_sstore_log_find_author(fv_sstore *s, const unsigned char id[32],
                              uint64_t *seq, unsigned char *author);
/* The log's last position and chain: 0 and 32 zero bytes when empty. */
int fv_sstore_log_head(fv_sstore *s, uint64_t *seq, unsigned char chain[32]);
/* The chain at log position seq >= 1. FV_ENOTFOUND. */
int fv_sstore_log_chain(fv_sstore *s, uint64_t seq, unsigned char chain[32]);
/* Appends an envelope at `seq` (the caller's head + 1). Call inside a
 * transaction. FV_EEXIST if the id or seq is taken. */
int fv_sstore_log_add(fv_sstore *s, uint64_t seq, const unsigned char id[32],
                      const unsigned char author[32],
                      const unsigned char *bytes, size_t len,
                      const unsigned char chain[32]);

/* The same three for the feed of `device`. */
int fv_sstore_feed_head(fv_sstore *s, const unsigned char device[32],
                        uint64_t *fseq, unsigned char chain[32]);
int fv_sstore_feed_chain(fv_sstore *s, const unsigned char device[32],
                         uint64_t fseq, unsigned char chain[32]);
int fv_sstore_feed_add(fv_sstore *s, const unsigned char device[32],
                       uint64_t fseq, uint64_t seq,
                       const unsigned char chain[32]);

typedef struct fv_sstore_entry {
    uint64_t seq; /* the position in the feed read (log seq, or fseq) */
    const unsigned char *bytes; /* NULL (len 0): erased, its record was
                                   retracted; only its id remains */
    size_t len;
    const unsigned char *id;    /* 32 bytes: the envelope's id */
    const unsigned char *chain; /* 32 bytes */
} fv_sstore_entry;

/* Calls fn for the entries at positions after < pos <= upto of the log
 * (device NULL) or of the feed of `device`, in order, at most `max` of them.
 * `e` and its pointers are valid during the call only; fn must not call
 * fv_sstore_read itself. fn returns 0 to go on, non-zero to stop (that
 * value is returned). */
typedef int (*fv_sstore_entry_fn)(const fv_sstore_entry *e, void *payload);
int fv_sstore_read(fv_sstore *s, const unsigned char *device, uint64_t after,
                   uint64_t upto, size_t max, fv_sstore_entry_fn fn,
                   void *payload);

/* ---- attachment chunks ------------------------------------------------ */

/*
 * A chunk is attachment ciphertext named by its BLAKE2b-256 hash
 * (docs/FORMAT.md, Attachments). Its bytes go into append-only pack files in
 * the directory `chunks` beside the database (DIR/chunks/pack-000001,
 * pack-000002...; the directory 0700, made when first needed, the files
 * 0600); a new pack starts when the current one would pass
 * FV_SSTORE_PACK_MAX. The table chunk indexes them; chunkref records which
 * log entries list which chunk hashes (their signed manifests), for the
 * permission checks.
 *
 * Storing a chunk takes three steps: fv_sstore_chunk_append writes its
 * bytes at the end of the current pack (neither durable nor findable yet);
 * fv_sstore_chunk_sync makes everything appended so far durable; then
 * fv_sstore_chunk_add indexes it (inside a transaction: a batch of chunks
 * is one commit). A crash between the steps leaves bytes no index row
 * names: unreachable and harmless (the space is lost; packs are never
 * rewritten).
 */

#define FV_SSTORE_PACK_MAX (1ull << 30) /* bytes per pack file */

typedef struct fv_sstore_chunkloc {
    uint32_t pack; /* pack-NNNNNN, from 1 */
    uint64_t off;
    uint32_t len;
} fv_sstore_chunkloc;

/* Records that log entry `seq` lists chunk `hash` (again is harmless). Call
 * inside the transaction that appends the entry. */
int fv_sstore_chunkref_add(fv_sstore *s, const unsigned char hash[32],
                           uint64_t seq);
/* FV_OK if some log entry written by `author` lists `hash` (any entry, with
 * `author` NULL), else FV_ENOTFOUND. */
int fv_sstore_chunk_listed(fv_sstore *s, const unsigned char hash[32],
                           const unsigned char *author);

/* Appends len (1..FV_SSTORE_PACK_MAX) bytes to the current pack with one
 * write(), starting a new pack (the old one made durable first) when this
 * one would grow past the limit. *loc receives where they are. On failure
 * the pack is cut back to where it was. FV_EIO, FV_ENOSPC, FV_EINVAL. */
int fv_sstore_chunk_append(fv_sstore *s, const unsigned char *data,
                           size_t len, fv_sstore_chunkloc *loc);
/* Makes every byte appended so far durable (fdatasync). FV_EIO. */
int fv_sstore_chunk_sync(fv_sstore *s);
/* Indexes a chunk whose bytes are durable at *loc. A hash already indexed
 * keeps its first copy (this copy's bytes are discarded, as by
 * fv_sstore_chunk_discard). Call inside a transaction. */
int fv_sstore_chunk_add(fv_sstore *s, const unsigned char hash[32],
                        const fv_sstore_chunkloc *loc);
/* Where chunk `hash` is, if the store holds it and `reader` may have it:
 * with `reader` NULL, any chunk held (a coordinator's view: every chunk held
 * is listed by some log entry); else only a chunk listed by an entry that
 * `reader` wrote or that is in the feed of `reader`. FV_ENOTFOUND
 * otherwise (held or not: the two are not told apart). */
int fv_sstore_chunk_find(fv_sstore *s, const unsigned char hash[32],
                         const unsigned char *reader, fv_sstore_chunkloc *loc);
/* Reads the loc->len bytes at *loc into buf (pread). FV_ECORRUPT if the
 * pack is missing or too short, FV_EIO. The bytes are not checked against
 * their hash: every reader checks them (docs/PROTOCOL.md). */
int fv_sstore_chunk_read(fv_sstore *s, const fv_sstore_chunkloc *loc,
                         unsigned char *buf);
/* Sets the pack size limit of this handle (tests make small packs). */
void fv_sstore_chunk_set_pack_max(fv_sstore *s, uint64_t bytes);
/* FV_OK if some log entry lists `hash` whose record is not retracted (or
 * not known: entries stored before records were tracked), else
 * FV_ENOTFOUND: the chunk's record was retracted, its bytes go unstored. */
int fv_sstore_chunk_live(fv_sstore *s, const unsigned char hash[32]);
/* Bytes appended at *loc that must not stay (a chunk of a record retracted
 * meanwhile, or a second copy of a chunk already indexed): destroyed at the
 * next fv_sstore_commit, as a retraction's. Call inside a transaction. */
int fv_sstore_chunk_discard(fv_sstore *s, const fv_sstore_chunkloc *loc);

/* ---- records and retraction ------------------------------------------- */

/*
 * Each log entry appended since this table exists is filed under its record
 * (the id of the record's genesis envelope: its own id for a genesis). A
 * retraction erases the record: the bytes of every other entry of the record
 * become empty (the rows, ids and chains stay, so every feed's hash chain
 * still verifies), and every chunk that only retracted records list leaves
 * the index and has its bytes destroyed in the pack (a hole punched with
 * fallocate, or zeros written), made durable by fdatasync.
 *
 * The destruction of chunk bytes waits for fv_sstore_commit, which does it
 * just before COMMIT (a failure there fails the commit: the caller rolls
 * back, and nothing of the retraction is recorded), then runs a truncating
 * WAL checkpoint (secure_delete is on: freed pages are zeroed, and the WAL
 * no longer holds old copies). fv_sstore_rollback forgets them. A commit
 * that fails after the bytes were destroyed leaves index rows naming zeros:
 * readers check every chunk against its hash and drop it, and the
 * retraction, pushed again, finishes the job.
 */

/* Files log entry `seq` under `record`. Call in the appending transaction. */
int fv_sstore_logrec_add(fv_sstore *s, uint64_t seq,
                         const unsigned char record[32]);
/* The author of record `record`'s genesis envelope, if the log holds it as
 * a genesis (FV_ENOTFOUND otherwise). */
int fv_sstore_record_origin(fv_sstore *s, const unsigned char record[32],
                            unsigned char origin[32]);
/* FV_OK if `record` was retracted, with the retraction's log position and
 * envelope id (either may be NULL), else FV_ENOTFOUND. */
int fv_sstore_retracted(fv_sstore *s, const unsigned char record[32],
                        uint64_t *seq, unsigned char *id);
/* Retracts `record` by log entry `seq` (envelope `id`): as described above.
 * Call inside a transaction, after the retraction's own entry is filed.
 * *entries and *chunks (may be NULL) receive how many envelopes were
 * erased and how many chunks will be destroyed. FV_EEXIST if the record is
 * already retracted. */
int fv_sstore_retract(fv_sstore *s, const unsigned char record[32],
                      uint64_t seq, const unsigned char id[32],
                      uint64_t *entries, uint64_t *chunks);
/* Calls fn for each enrolled, unrevoked field device whose feed holds an
 * entry of `record`. The devices are gathered first, so fn may write
 * (feeds included). fn returns non-zero to stop (that value is returned). */
typedef int (*fv_sstore_key_fn)(const unsigned char key[32], void *payload);
int fv_sstore_record_readers(fv_sstore *s, const unsigned char record[32],
                             fv_sstore_key_fn fn, void *payload);
/* FV_OK if log entry `seq` is in the feed of `device`, else FV_ENOTFOUND. */
int fv_sstore_feed_has(fv_sstore *s, const unsigned char device[32],
                       uint64_t seq);

#endif
