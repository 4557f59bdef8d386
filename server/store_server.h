/*
 * store_server.h - the embedded server store: the implementation of
 * sstore.h that every server uses today, a SQLite database (server.db) and
 * pack files beside it. Part of the store module: the only files that
 * include sqlite3 are core/store*.c and this one.
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
 * append-only pack files in the directory `chunks` beside it
 * (DIR/chunks/pack-000001, pack-000002...; the directory 0700, made when
 * first needed, the files 0600); a new pack starts when the current one
 * would pass FV_SSTORE_PACK_MAX. fv_sstore_chunk_append writes a chunk at
 * the end of the current pack with one write() (the old pack made durable
 * first when a new one starts; on failure the pack is cut back to where it
 * was); fv_sstore_chunk_sync is an fdatasync of it; fv_sstore_chunk_read a
 * pread. A crash between the steps of sstore.h leaves bytes no index row
 * names: the space is lost (packs are never rewritten).
 *
 * A retraction's chunk bytes are destroyed in the packs (a hole punched
 * with fallocate, or zeros written), made durable by fdatasync, just before
 * COMMIT; the commit then runs a truncating WAL checkpoint (secure_delete is
 * on: freed pages are zeroed, and the WAL no longer holds old copies).
 *
 * WAL journal, synchronous=FULL: a commit is durable when it returns.
 * fv_sstore_begin is BEGIN IMMEDIATE. Several processes may open one
 * server.db (the server and `fieldvault server invite`, `import`...): each
 * transaction waits its turn to write, and a pack is appended to under an
 * flock.
 */
#ifndef FV_STORE_SERVER_H
#define FV_STORE_SERVER_H

#include <stdint.h>

#include "sstore.h"

#define FV_SSTORE_PACK_MAX (1ull << 30) /* bytes per pack file */

/* Opens the embedded store whose database is at `path` (its packs in
 * `chunks` beside it); with `create`, makes a new database (FV_EEXIST if a
 * file is there). Without it: FV_ENOTFOUND if the file is missing,
 * FV_ECORRUPT if it is not a FieldVault server database (a vault's
 * database included), FV_EVERSION if its schema is newer. */
int fv_sstore_sqlite_open(fv_sstore **out, const char *path, int create);

/* Sets the pack size limit of an embedded store's handle (tests make small
 * packs); does nothing to another implementation's. */
void fv_sstore_chunk_set_pack_max(fv_sstore *s, uint64_t bytes);

#endif
