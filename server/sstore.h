/*
 * sstore.h - the server's storage, behind one interface: what the server
 * engine (server_engine.c), the event loop and the server commands
 * (server.c) call to keep devices, invites, the organisation's log and its
 * hash chain with the feeds, attachment chunks, and the erasure a
 * retraction asks for. Each implementation fills an fv_sstore_ops table;
 * every fv_sstore_* function below calls the handle's implementation, and
 * nothing above this header knows which one it is.
 *
 * Implementations:
 *   store_server.h  the embedded default: SQLite (server.db) and pack files
 *                   beside it (fv_sstore_sqlite_open)
 *   store_pg.h      PostgreSQL, shared by several serve processes
 *                   (fv_sstore_pg_open; built with FV_POSTGRESQL)
 *
 * The server holds ciphertext and public keys only: signed envelopes, the
 * devices' public keys, BLAKE2b-256 hashes of invite tokens (a leaked store
 * leaks no usable token), and a few public meta values (format, epoch,
 * receipt public key, listen address, organisation public key).
 *
 * Receipts are signed by the engine over log positions and chains the
 * store returns; the store keeps their public key (meta "receipt_pk"), not
 * the secret one (receipt.key, a file of the server directory).
 *
 * A store keeps what it is given: chains are computed by the caller
 * (server/server_engine.c, with fv_chain_next), because the chain formula
 * belongs to the protocol layer above.
 *
 * Every function returns FV_OK or an FV_E code; fv_sstore_errmsg says more
 * (messages name tables or files, never values). A handle is used by one
 * thread at a time. Writes that must be atomic go between fv_sstore_begin
 * and fv_sstore_commit.
 */
#ifndef FV_SSTORE_H
#define FV_SSTORE_H

#include <stddef.h>
#include <stdint.h>

#define FV_SSTORE_NAME_MAX 128 /* bytes of a device or invite name */

typedef struct fv_sstore_ops fv_sstore_ops;

/* A store handle. Each implementation's own struct begins with this one
 * and hands out a pointer to it; `ops` is its table (below). */
typedef struct fv_sstore {
    const fv_sstore_ops *ops;
} fv_sstore;

/* Opens the server store at `path`; with `create`, makes a new one
 * (FV_EEXIST if one is there). Without it: FV_ENOTFOUND if it is missing,
 * FV_ECORRUPT if it is not a FieldVault server store (a vault's database
 * included), FV_EVERSION if its schema is newer. A path that starts with
 * "postgresql://" or "postgres://" names a PostgreSQL store (store_pg.h;
 * FV_EINVAL in a build without it, FV_EDATABASE if it cannot be reached);
 * any other the embedded store (fv_sstore_sqlite_open, store_server.h). A
 * commit is durable when it returns. */
int fv_sstore_open(fv_sstore **out, const char *path, int create);
/* 1 if `path` names a PostgreSQL store ("postgresql://..." or
 * "postgres://..."), whether or not this build supports it. */
int fv_sstore_is_pg(const char *path);
/* Closes (the embedded store checkpoints first). NULL is harmless. */
void fv_sstore_close(fv_sstore *s);
/* The last failure's message; valid until the next call on the handle. */
const char *fv_sstore_errmsg(const fv_sstore *s);

/* Starts a write transaction: one writer at a time, across processes too
 * (the embedded store: BEGIN IMMEDIATE). */
int fv_sstore_begin(fv_sstore *s);
/* Commits; first destroys the chunk bytes a retraction or a discard left
 * to destroy (see "records and retraction"), then (the embedded store)
 * checkpoints if it did. */
int fv_sstore_commit(fv_sstore *s);
void fv_sstore_rollback(fv_sstore *s); /* harmless outside a transaction */
/* Folds what was written back into the store's main file (the embedded
 * store: a truncating WAL checkpoint); FV_OK where there is nothing to do. */
int fv_sstore_checkpoint(fv_sstore *s);

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
 * (docs/FORMAT.md, Attachments). The store keeps its bytes where the
 * implementation chooses (the embedded store: append-only pack files,
 * store_server.h) and indexes them; chunkref records which log entries list
 * which chunk hashes (their signed manifests), for the permission checks.
 *
 * Storing a chunk takes three steps: fv_sstore_chunk_append writes its
 * bytes (neither durable nor findable yet); fv_sstore_chunk_sync makes
 * everything appended so far durable; then fv_sstore_chunk_add indexes it
 * (inside a transaction: a batch of chunks is one commit). A crash between
 * the steps leaves bytes no index row names: unreachable and harmless.
 */

/* Where a chunk's bytes are, in the implementation's terms (the embedded
 * store: pack-NNNNNN, offset, length). */
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

/* Writes the len (at least 1) bytes of a chunk; *loc receives where they
 * are. On failure nothing of them stays findable (the embedded store
 * cuts the pack back). FV_EIO, FV_ENOSPC, FV_EINVAL. */
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
/* Reads the loc->len bytes at *loc into buf. FV_ECORRUPT if they are
 * missing (a pack missing or too short), FV_EIO. The bytes are not checked
 * against their hash: every reader checks them (docs/PROTOCOL.md). */
int fv_sstore_chunk_read(fv_sstore *s, const fv_sstore_chunkloc *loc,
                         unsigned char *buf);
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
 * Each log entry appended since records were tracked is filed under its
 * record (the id of the record's genesis envelope: its own id for a
 * genesis). A retraction erases the record: the bytes of every other entry
 * of the record become empty (the entries, ids and chains stay, so every
 * feed's hash chain still verifies), and every chunk that only retracted
 * records list leaves the index and has its bytes destroyed, durably.
 *
 * The destruction of chunk bytes waits for fv_sstore_commit, which does it
 * just before it commits (a failure there fails the commit: the caller
 * rolls back, and nothing of the retraction is recorded), and leaves no old
 * copy of the erased bytes in the store's own files (the embedded store:
 * secure_delete and a truncating WAL checkpoint; store_server.h).
 * fv_sstore_rollback forgets them. A commit that fails after the bytes
 * were destroyed leaves index rows naming zeros: readers check every chunk
 * against its hash and drop it, and the retraction, pushed again, finishes
 * the job.
 */

/* Files log entry `seq` under `record`. Call in the appending transaction. */
int fv_sstore_logrec_add(fv_sstore *s, uint64_t seq,
                         const unsigned char record[32]);
/* The author of record `record`'s genesis envelope, if the log holds it as
 * a genesis (FV_ENOTFOUND otherwise). */
int fv_sstore_record_origin(fv_sstore *s, const unsigned char record[32],
                            unsigned char origin[32]);
/* FV_OK if `record` was retracted, with the retraction's log position and
 * envelope id (either may be NULL), else FV_ENOTFOUND. Position 0: the
 * record was retracted before the server held it (the retraction is not in
 * the log, its id alone is kept: fv_sstore_retract with seq 0). */
int fv_sstore_retracted(fv_sstore *s, const unsigned char record[32],
                        uint64_t *seq, unsigned char *id);
/* Retracts `record` by log entry `seq` (envelope `id`): as described above.
 * `seq` 0: a retraction the log does not hold, of a record it never held. 
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

/* ---- the implementations' table ---------------------------------------- */

/* What an implementation provides: one function per fv_sstore_* function
 * above (the same arguments, the same results, the same rules), all
 * required. fv_sstore_close and fv_sstore_errmsg handle NULL themselves
 * and never pass it on. */
struct fv_sstore_ops {
    void (*close)(fv_sstore *s);
    const char *(*errmsg)(const fv_sstore *s);
    int (*begin)(fv_sstore *s);
    int (*commit)(fv_sstore *s);
    void (*rollback)(fv_sstore *s);
    int (*checkpoint)(fv_sstore *s);

    int (*meta_get)(fv_sstore *s, const char *key, unsigned char **val,
                    size_t *len);
    int (*meta_get_fixed)(fv_sstore *s, const char *key, void *val,
                          size_t len);
    int (*meta_put)(fv_sstore *s, const char *key, const void *val,
                    size_t len);

    int (*device_get)(fv_sstore *s, const unsigned char pk[32],
                      fv_sstore_device *d);
    int (*device_by_box)(fv_sstore *s, const unsigned char box[32],
                         fv_sstore_device *d);
    int (*device_add)(fv_sstore *s, const fv_sstore_device *d);
    int (*device_revoke)(fv_sstore *s, const unsigned char pk[32],
                         int64_t now);
    int (*each_device)(fv_sstore *s, size_t max, fv_sstore_device_fn fn,
                       void *payload);

    int (*invite_add)(fv_sstore *s, const unsigned char token_hash[32],
                      const char *name, size_t name_len, int role,
                      int64_t expires);
    int (*invite_get)(fv_sstore *s, const unsigned char token_hash[32],
                      fv_sstore_invite *inv);
    int (*invite_use)(fv_sstore *s, const unsigned char token_hash[32],
                      const unsigned char device[32]);

    int (*log_find)(fv_sstore *s, const unsigned char id[32], uint64_t *seq);
    int (*log_find_author)(fv_sstore *s, const unsigned char id[32],
                           uint64_t *seq, unsigned char *author);
    int (*log_head)(fv_sstore *s, uint64_t *seq, unsigned char chain[32]);
    int (*log_chain)(fv_sstore *s, uint64_t seq, unsigned char chain[32]);
    int (*log_add)(fv_sstore *s, uint64_t seq, const unsigned char id[32],
                   const unsigned char author[32], const unsigned char *bytes,
                   size_t len, const unsigned char chain[32]);
    int (*feed_head)(fv_sstore *s, const unsigned char device[32],
                     uint64_t *fseq, unsigned char chain[32]);
    int (*feed_chain)(fv_sstore *s, const unsigned char device[32],
                      uint64_t fseq, unsigned char chain[32]);
    int (*feed_add)(fv_sstore *s, const unsigned char device[32],
                    uint64_t fseq, uint64_t seq, const unsigned char chain[32]);
    int (*feed_has)(fv_sstore *s, const unsigned char device[32],
                    uint64_t seq);
    int (*read)(fv_sstore *s, const unsigned char *device, uint64_t after,
                uint64_t upto, size_t max, fv_sstore_entry_fn fn,
                void *payload);

    int (*chunkref_add)(fv_sstore *s, const unsigned char hash[32],
                        uint64_t seq);
    int (*chunk_listed)(fv_sstore *s, const unsigned char hash[32],
                        const unsigned char *author);
    int (*chunk_append)(fv_sstore *s, const unsigned char *data, size_t len,
                        fv_sstore_chunkloc *loc);
    int (*chunk_sync)(fv_sstore *s);
    int (*chunk_add)(fv_sstore *s, const unsigned char hash[32],
                     const fv_sstore_chunkloc *loc);
    int (*chunk_find)(fv_sstore *s, const unsigned char hash[32],
                      const unsigned char *reader, fv_sstore_chunkloc *loc);
    int (*chunk_read)(fv_sstore *s, const fv_sstore_chunkloc *loc,
                      unsigned char *buf);
    int (*chunk_live)(fv_sstore *s, const unsigned char hash[32]);
    int (*chunk_discard)(fv_sstore *s, const fv_sstore_chunkloc *loc);

    int (*logrec_add)(fv_sstore *s, uint64_t seq,
                      const unsigned char record[32]);
    int (*record_origin)(fv_sstore *s, const unsigned char record[32],
                         unsigned char origin[32]);
    int (*retracted)(fv_sstore *s, const unsigned char record[32],
                     uint64_t *seq, unsigned char *id);
    int (*retract)(fv_sstore *s, const unsigned char record[32], uint64_t seq,
                   const unsigned char id[32], uint64_t *entries,
                   uint64_t *chunks);
    int (*record_readers)(fv_sstore *s, const unsigned char record[32],
                          fv_sstore_key_fn fn, void *payload);
};

#endif
