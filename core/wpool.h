/*
 * wpool.h - a small pool of worker threads (internal: nothing here is
 * FV_API). A job is n independent items, run by a function over a range
 * [from, to) of them; the pool cuts a job into slices and its threads take
 * slices round-robin across the jobs waiting, so a small job is not queued
 * behind the whole of a big one. Each item writes its own result (the job
 * function's business): results stay in the items' order whatever thread
 * ran them, and one item's failure is its own.
 *
 * Two ways to learn that a job is done:
 *   - fv_wpool_wait: the calling thread runs slices of that job itself
 *     until every slice is done (a device's sync: session.c), so a pool of
 *     k threads puts k + 1 cores to work;
 *   - a descriptor (fv_wpool_new with notify set) that polls readable once
 *     a job is done, then fv_wpool_take (the server's event loop, through
 *     server/vpool.c).
 *
 * One thread (the owner's) calls every function here; the pool's own
 * threads only run job functions.
 */
#ifndef FV_WPOOL_H
#define FV_WPOOL_H

#include <stddef.h>

#define FV_WPOOL_MAX_THREADS 64
/* The most threads a device's sync starts (fv_wpool_threads). */
#define FV_WPOOL_DEVICE_CAP 3

typedef struct fv_wpool fv_wpool;
typedef struct fv_wjob fv_wjob;

/* Runs items [from, to) of a job; `ctx` is the job's. Called on any of the
 * pool's threads, or on the owner's in fv_wpool_wait, for disjoint ranges
 * of one job at the same time. */
typedef void (*fv_wpool_fn)(void *ctx, size_t from, size_t to);

/* Starts `threads` threads (1 to FV_WPOOL_MAX_THREADS). `notify`: keep a
 * descriptor for fv_wpool_fd. FV_EINVAL, FV_ENOMEM, FV_EIO (no pipe or no
 * thread at all; fewer threads than asked is not an error). */
int fv_wpool_new(fv_wpool **out, unsigned int threads, int notify);
/* Stops and joins the threads. Every job must have been waited for, taken
 * or cancelled. NULL is harmless. */
void fv_wpool_free(fv_wpool *p);
/* The threads a device's pool should start beside the syncing thread: the
 * online cores, at most FV_WPOOL_DEVICE_CAP + 1 of them, less that thread
 * (0 on one core: no pool). */
unsigned int fv_wpool_threads(void);

/* With notify: a descriptor that polls readable once a job is done; else
 * -1. */
int fv_wpool_fd(const fv_wpool *p);
/* Queues a job of n items (n > 0) in slices of `slice` items (0: 16).
 * `ctx` and what it points to must stay valid until the job is waited
 * for, taken or cancelled; `owner` comes back from fv_wpool_take. *out is
 * the job, for fv_wpool_wait or fv_wpool_cancel. FV_EINVAL, FV_ENOMEM. */
int fv_wpool_submit(fv_wpool *p, fv_wpool_fn fn, void *ctx, size_t n,
                    size_t slice, void *owner, fv_wjob **out);
/* Runs slices of job j on the calling thread while any is left, waits for
 * the threads running the others, then forgets j. */
void fv_wpool_wait(fv_wpool *p, fv_wjob *j);
/* Runs a job to its end: on the pool with the calling thread's help, or,
 * with p NULL, on the calling thread alone. FV_ENOMEM (nothing was run). */
int fv_wpool_run(fv_wpool *p, fv_wpool_fn fn, void *ctx, size_t n,
                 size_t slice);
/* A job whose every item is done, oldest first: returns its owner and
 * forgets the job (NULL when none is done). Never returns a job that
 * fv_wpool_wait is waiting for. */
void *fv_wpool_take(fv_wpool *p);
/* Forgets a job not yet taken: its slices not started never start, and
 * those running finish before it returns. NULL is harmless. */
void fv_wpool_cancel(fv_wpool *p, fv_wjob *j);

#endif
