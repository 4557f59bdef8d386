/*
 * vpool.h - the threads that check PUSH signatures for the event loop
 * (server.c), so that ingest uses every core and one device's big push
 * does not hold up other devices' syncs. The engine hands out the checks
 * (fv_srv_conn_verify_jobs, server_engine.h); this pool runs them and tells
 * the loop, through a descriptor it polls, when a PUSH's checks are all
 * done. The threads are the device library's worker pool (core/wpool.h,
 * the one that also checks a device's pulled envelopes); this file only
 * makes PUSH checks its jobs.
 *
 * A PUSH's checks are cut into slices of a few envelopes; the threads take
 * slices round-robin across the PUSHes waiting, so a small one is not
 * queued behind the whole of a big one.
 *
 * One thread (the event loop's) calls every function here; the pool's own
 * threads only run fv_srv_verify_envelope and write the results.
 */
#ifndef FV_VPOOL_H
#define FV_VPOOL_H

#include "server_engine.h"

#define FV_VPOOL_MAX_THREADS 64

typedef struct fv_vpool fv_vpool;
typedef struct fv_vbatch fv_vbatch;

/* Starts `threads` threads (1 to FV_VPOOL_MAX_THREADS). FV_EINVAL,
 * FV_ENOMEM, FV_EIO (no pipe or thread). */
int fv_vpool_new(fv_vpool **out, unsigned int threads);
/* Stops and joins the threads. Every batch must have been taken or
 * cancelled. NULL is harmless. */
void fv_vpool_free(fv_vpool *p);
/* A descriptor that polls readable once a batch is done. */
int fv_vpool_fd(const fv_vpool *p);
/* Queues the checks of *v (what it points to must stay valid until the
 * batch is taken or cancelled). `owner` comes back from fv_vpool_take.
 * *out is the batch, for fv_vpool_cancel. FV_ENOMEM. */
int fv_vpool_submit(fv_vpool *p, const fv_srv_verify *v, void *owner,
                    fv_vbatch **out);
/* A batch whose every check is done, oldest first: returns its owner and
 * forgets the batch (NULL when none is done). Its results are in the
 * fv_srv_verify's result array. */
void *fv_vpool_take(fv_vpool *p);
/* Forgets a batch not yet taken: its checks not started never start, and
 * those running finish before it returns. */
void fv_vpool_cancel(fv_vpool *p, fv_vbatch *b);

#endif
