/*
 * bundle.h - reading courier bundles (docs/PROTOCOL.md, "Courier bundles"),
 * shared by the vault's importer (fv_bundle_import, sync/bundle.c) and the
 * server's (fv_server_import, sync/server.c). Internal to the sync library.
 *
 * A bundle is the 8 bytes "FVBUNDL1", CERTS frames (the device
 * certificates the writing vault holds), PUSH frames exactly as on the wire,
 * and a BYE frame that marks its end: a bundle cut anywhere, even between
 * two frames, is told from a whole one.
 */
#ifndef FV_BUNDLE_H
#define FV_BUNDLE_H

#include <stddef.h>

/* Called for each PUSH frame of a bundle, in order: its n envelopes (at
 * most FV_PROTO_MAX_BATCH), valid during the call only. Returns FV_OK to go
 * on; anything else stops the read and is returned by fv_bundle_read. */
typedef int (*fv_bundle_batch_fn)(const unsigned char *const *env,
                                  const size_t *len, size_t n, void *payload);

/* Reads the bundle at `path` twice: first to check its framing from the
 * magic to the end mark, so that a file cut short or with a damaged frame
 * hands over nothing; then calling fn for each batch in order (a batch fn
 * refuses stops the read; the batches before it stay handled). Returns
 * FV_OK once the end mark is read, fn's non-zero return, or: FV_ENOTFOUND
 * (no such file), FV_EIO (cannot open or read it), FV_ECORRUPT (not a
 * bundle, a damaged frame, anything but PUSH frames before the end mark,
 * bytes after it, or a file cut short), FV_ENOMEM. For the file's failures,
 * *why (may be NULL) receives a fixed message; it is left NULL when fn
 * failed. */
int fv_bundle_read(const char *path, fv_bundle_batch_fn fn, void *payload,
                   const char **why);
/* fv_bundle_read that also hands the CERTS frames (device certificates,
 * docs/PROTOCOL.md) to cert_fn; fv_bundle_read passes them over. */
int fv_bundle_read_ex(const char *path, fv_bundle_batch_fn fn,
                      fv_bundle_batch_fn cert_fn, void *payload,
                      const char **why);

#endif
