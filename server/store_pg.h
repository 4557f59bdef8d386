/*
 * store_pg.h - the PostgreSQL server store: an implementation of sstore.h
 * over libpq, so that several `fieldvault serve` processes, on one machine
 * or several, share one organisation (README, "PostgreSQL"). Built with
 * FV_POSTGRESQL (on when libpq is found); the server library only.
 *
 * Tables (schema version 1, made by `fieldvault server init --store URL`;
 * every key, hash, chain and envelope is bytea, every number bigint):
 *   schema_version(version)
 *   meta(k, v)                             as the embedded store's, and the
 *                                          server's TLS key and certificate
 *                                          and receipt key (server.c), which
 *                                          every serve process needs
 *   device, invite, log, feed, chunkref,   as the embedded store's
 *   logrec, retracted                      (store_server.h)
 *   chunk(hash, data_id, len)              the chunk index
 *   chunkdata(id, data)                    chunk bytes (attachment
 *                                          ciphertext), one row a chunk
 *
 * One totally ordered log across processes: fv_sstore_begin starts a
 * transaction and takes a transaction-scoped advisory lock (one key for the
 * whole store), so write transactions run one at a time whichever process
 * runs them, and each reads the log head after the previous one committed
 * (READ COMMITTED: each statement sees what was committed before it).
 * Nothing is cached in the handle: a device revoked, an invite used or a
 * record retracted through one process is what the next statement of every
 * other process sees.
 *
 * Chunks in a directory (schema version 2, `--chunks DIR`): the sequence
 * chunkfile numbers them, meta holds the directory's path (chunk_dir) and
 * id (chunk_dir_id), chunk.data_id is the file's number (loc: pack 2, off
 * = the number); fv_sstore_chunk_append writes the file and
 * fv_sstore_chunk_sync makes the batch durable; a retraction destroys the
 * files (zeros, then unlink) just before COMMIT. Otherwise:
 *
 * Chunks: fv_sstore_chunk_append inserts the bytes as a row of chunkdata
 * in its own (autocommitted, durable) statement; the loc it returns names
 * the row (pack 1, off = row id). fv_sstore_chunk_sync has nothing left to
 * do. A retraction deletes the chunkdata rows just before COMMIT, and the
 * log bytes it erases are overwritten in the same transaction;
 * PostgreSQL keeps dead row versions until VACUUM reclaims them (SECURITY.md,
 * "PostgreSQL").
 *
 * Statements are parameterised; error messages name tables, never values,
 * and never the connection string (which may hold a password).
 */
#ifndef FV_STORE_PG_H
#define FV_STORE_PG_H

#include <stdint.h>

#include "sstore.h"

/* The newest schema_version this build reads: 1, or 2 for a store made
 * with a chunk directory (fv_sstore_pg_set_chunks). */
#define FV_SSTORE_PG_SCHEMA 2

/* `--chunks DIR` for this process: the stores fv_sstore_pg_open opens
 * afterwards keep their attachment chunks as files in `dir` (chunkdir.h),
 * which several servers may share (NULL: back to the default). With
 * `create`, the store is made so (schema version 2; `dir` created 0700 if
 * missing, else it must be empty: FV_EEXIST; its absolute path is
 * recorded). Without it, a store made so opens `dir` in place of the
 * recorded path (another mount point), and a store that keeps its chunks
 * in PostgreSQL is refused (FV_EINVAL). A process-wide setting, as the
 * CLI's option is: call it before opening, not while stores open on other
 * threads. FV_ENOMEM. */
int fv_sstore_pg_set_chunks(const char *dir);

/* `create` for fv_sstore_pg_open (and fv_sstore_open): make the schema
 * in a database that holds no table at all (else FV_EEXIST), and leave
 * its transaction open, the write lock held, for the caller to fill the
 * store and then fv_sstore_commit it, or fv_sstore_pg_drop it: a restore
 * or a migration is one transaction. */
#define FV_SSTORE_PG_CREATE_TX 2

/* Opens the PostgreSQL store at the libpq connection URI `uri`; with
 * `create`, makes the schema (FV_EEXIST if one is there). Without it:
 * FV_ENOTFOUND if there is no FieldVault schema, FV_EVERSION if it is
 * newer. A store with a chunk directory: FV_ENOTFOUND also if the
 * directory has no marker (not made, or not mounted), FV_EDENIED if it
 * belongs to another store. FV_EDATABASE if the database cannot be reached or refuses the
 * connection. */
int fv_sstore_pg_open(fv_sstore **out, const char *uri, int create);

/* Undoes a store that server init made and could not finish (its tables
 * dropped: the next one then starts afresh), or rolls back one made with
 * FV_SSTORE_PG_CREATE_TX; either way the chunk directory it made goes,
 * with the chunk files it wrote there. */
void fv_sstore_pg_drop(fv_sstore *pg);

/* Copies the embedded store at `db_path` (server.db, its packs in `chunks`
 * beside it) into the new, empty PostgreSQL store `pg`, made by
 * fv_sstore_pg_open with FV_SSTORE_PG_CREATE_TX and still in that
 * transaction (the caller commits): every table as it is, each chunk's
 * bytes stored as the store keeps chunks (chunkdata, or its chunk
 * directory; a chunk whose bytes do not match its hash, left by an
 * interrupted retraction, is left out and counted in *skipped). *stats
 * receives the counts (may be NULL): devices, envelopes, chunks.
 * FV_ENOTFOUND, FV_ECORRUPT, FV_EVERSION, FV_EDATABASE, FV_EIO. The source
 * must not be served meanwhile. */
typedef struct fv_sstore_migrated {
    uint64_t devices, envelopes, chunks, skipped;
} fv_sstore_migrated;
int fv_sstore_pg_import_sqlite(fv_sstore *pg, const char *db_path,
                               fv_sstore_migrated *stats);

/* The reverse, for a backup: writes the PostgreSQL store `pg` (opened,
 * not in a transaction) as a new server directory `dir` (which must
 * exist, empty) of the embedded store: server.db, chunks/pack-NNNNNN, and
 * the server's files that the store keeps in meta (tls.key, tls.crt,
 * receipt.key; server_stage.h), all 0600. Everything is read in one
 * REPEATABLE READ, READ ONLY transaction, so the copy is the store at one
 * instant while `serve` processes go on writing; a chunk that a
 * retraction committed since destroyed (in the chunk directory) is left
 * out and counted in *skipped. *stats as above (may be NULL). FV_ECORRUPT,
 * FV_EDATABASE, FV_EIO, FV_ENOSPC, FV_ENOMEM. */
int fv_sstore_pg_export_sqlite(fv_sstore *pg, const char *dir,
                               fv_sstore_migrated *stats);

#endif
