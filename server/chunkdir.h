/*
 * chunkdir.h - attachment chunks as files in a directory that several
 * servers share (a PostgreSQL store made with `--chunks DIR`: README,
 * "PostgreSQL"). Each chunk is one file named by a number the database
 * hands out (a sequence: unique across every server), written once and
 * never changed until a retraction destroys it. The database indexes them;
 * this module only moves bytes.
 *
 * Layout: DIR/FIELDVAULT-CHUNKS (the marker: the store's 16-byte id in hex,
 * so that a server never writes into another store's directory, or into an
 * empty mount point), DIR/00 ... DIR/ff (mode 0700), and in DIR/xx, where
 * xx is the number's low byte in hex, the file of number n as 16 hex
 * digits (mode 0600).
 *
 * A handle belongs to one thread at a time.
 */
#ifndef FV_CHUNKDIR_H
#define FV_CHUNKDIR_H

#include <stddef.h>
#include <stdint.h>

#define FV_CHUNKDIR_ID_BYTES 16

typedef struct fv_chunkdir fv_chunkdir;

/* Makes the layout in `dir` (created 0700 if missing; else it must be
 * empty: FV_EEXIST) for the store `id`, durably. FV_EIO, FV_ENOSPC. */
int fv_chunkdir_create(const char *dir,
                       const unsigned char id[FV_CHUNKDIR_ID_BYTES]);
/* Undoes fv_chunkdir_create on a directory that holds no chunk yet (a
 * failed `server init`); leaves anything else as it is. */
void fv_chunkdir_remove(const char *dir);

/* Opens `dir` for the store `id`: FV_ENOTFOUND if it has no marker (not
 * made, or not mounted), FV_EDENIED if the marker names another store,
 * FV_ENOMEM. */
int fv_chunkdir_open(fv_chunkdir **out, const char *dir,
                     const unsigned char id[FV_CHUNKDIR_ID_BYTES]);
void fv_chunkdir_close(fv_chunkdir *d); /* NULL is harmless */

/* Writes chunk n (a new file: FV_EEXIST if it exists). It is durable only
 * after fv_chunkdir_sync. FV_EIO, FV_ENOSPC (nothing left behind). */
int fv_chunkdir_write(fv_chunkdir *d, uint64_t n, const unsigned char *data,
                      size_t len);
/* Makes every chunk written since the last call durable (one fdatasync a
 * file, one fsync a directory). FV_EIO, FV_ENOSPC. */
int fv_chunkdir_sync(fv_chunkdir *d);
/* Reads chunk n, which must be exactly len bytes: FV_ECORRUPT if it is
 * missing or of another length, FV_EIO. */
int fv_chunkdir_read(fv_chunkdir *d, uint64_t n, unsigned char *buf,
                     size_t len);
/* Destroys chunk n: its bytes overwritten with zeros and made durable,
 * then the file removed (and the removal made durable). A missing file is
 * FV_OK. FV_EIO. */
int fv_chunkdir_destroy(fv_chunkdir *d, uint64_t n);

#endif
