/*
 * bundle.h - reading courier bundles (docs/PROTOCOL.md, "Courier bundles"),
 * shared by the vault's importer (fv_bundle_import, sync/bundle.c) and the
 * server's (fv_server_import, server/server.c). Internal to the sync library.
 *
 * A bundle is the 8 bytes "FVBUNDL1", CERTS frames (the device
 * certificates the writing vault holds), PUSH frames exactly as on the wire,
 * then CHUNK-PUT frames (attachment chunks the envelopes list), and a BYE
 * frame that marks its end: a bundle cut anywhere, even between two
 * frames, is told from a whole one. Each frame carries its length, so
 * every frame before a cut is whole and usable.
 */
#ifndef FV_BUNDLE_H
#define FV_BUNDLE_H

#include <stddef.h>

/* Called for each PUSH frame of a bundle, in order: its n envelopes (at
 * most FV_PROTO_MAX_BATCH), valid during the call only. Returns FV_OK to go
 * on; anything else stops the read and is returned by fv_bundle_read. */
typedef int (*fv_bundle_batch_fn)(const unsigned char *const *env,
                                  const size_t *len, size_t n, void *payload);
/* Called for each CHUNK-PUT frame: a chunk as the bundle names it (hash)
 * and its bytes (at most FV_SYNC_MAX_CHUNK), unchecked: the callee verifies
 * both. Same return rule. */
typedef int (*fv_bundle_chunk_fn)(const unsigned char *hash,
                                  const unsigned char *data, size_t len,
                                  void *payload);

/* The *why of a bundle that ends before its end mark (compare pointers). */
extern const char fv_bundle_cut_short[];

/* Reads the bundle at `path` in one pass, calling fn or chunk_fn for each
 * frame as soon as it is whole: a file cut short or damaged yields every
 * frame before the fault (memory holds one frame at a time). Returns FV_OK
 * once the end mark is read, a callback's non-zero return, or:
 * FV_ENOTFOUND (no such file), FV_EIO (cannot open or read it),
 * FV_ECORRUPT (not a bundle, a damaged frame, anything but CERTS, PUSH and
 * CHUNK-PUT frames before the end mark, a CERTS frame after a PUSH or
 * CHUNK-PUT frame, bytes after the end mark, or a file cut short: *why is
 * then fv_bundle_cut_short), FV_ENOMEM. For the file's failures, *why
 * (may be NULL) receives a fixed message; it is left NULL when a callback
 * failed. The CERTS frames are checked and passed over. */
int fv_bundle_read(const char *path, fv_bundle_batch_fn fn,
                   fv_bundle_chunk_fn chunk_fn, void *payload,
                   const char **why);
/* fv_bundle_read that also hands the CERTS frames (device certificates,
 * docs/PROTOCOL.md) to cert_fn (may be NULL), in the same pass: all of
 * them before the first envelope, so that the envelopes' authors are known
 * when they are admitted. */
int fv_bundle_read_ex(const char *path, fv_bundle_batch_fn fn,
                      fv_bundle_batch_fn cert_fn, fv_bundle_chunk_fn chunk_fn,
                      void *payload, const char **why);

#endif
