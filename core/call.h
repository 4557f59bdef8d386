/*
 * call.h - the frame of every public call on a vault handle, so that its
 * message (fv_vault_errmsg) always describes the call that just returned
 * (docs/API.md, "Result codes and messages"). Each public function is a
 * one-line wrapper over its static body:
 *
 *     int fv_record_add(fv_vault *v, ...)
 *     {
 *         return FV_CALL(v, record_add(v, ...));
 *     }
 *
 * Internal; the core's and the sync engine's files include it.
 */
#ifndef FV_CALL_H
#define FV_CALL_H

#include "fieldvault.h"

/* Forgets the handle's message: what the call records from here is its own.
 * NULL is harmless. */
void fv_call_begin(fv_vault *v);
/* The end of public call `fn` (its name, for the message) that returned
 * `rc` on `v`: a success leaves no message ("no error"); a failure that
 * recorded none gets "fn: fv_strerror(rc)" (with no handle, in
 * fv_error_last()). Returns rc. */
int fv_call_end(fv_vault *v, int rc, const char *fn);

/* `return FV_CALL(v, body(v, ...));`: the body runs between the two. */
#define FV_CALL(v, body) (fv_call_begin(v), fv_call_end((v), (body), __func__))

#endif
