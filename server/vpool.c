/* vpool.c - the checks of PUSH signatures on the worker pool (see vpool.h;
 * the threads are core/wpool.c's, shared with the device's sync). */
#include "vpool.h"

#include <stdlib.h>

#include "fieldvault.h"
#include "wpool.h"

#define SLICE 16 /* envelopes a thread takes at once (about a millisecond) */

struct fv_vpool {
    fv_wpool *pool;
};

struct fv_vbatch {
    fv_srv_verify v;
    void *owner;
    fv_wjob *job;
};

static void check_slice(void *ctx, size_t from, size_t to)
{
    const fv_srv_verify *v = &((fv_vbatch *)ctx)->v;
    for (size_t i = from; i < to; i++)
        v->result[i] = fv_srv_verify_envelope(v->env[i], v->len[i]);
}

int fv_vpool_new(fv_vpool **out, unsigned int threads)
{
    fv_vpool *p;
    int rc;

    *out = NULL;
    if (threads < 1 || threads > FV_VPOOL_MAX_THREADS)
        return FV_EINVAL;
    if (!(p = calloc(1, sizeof *p)))
        return FV_ENOMEM;
    if ((rc = fv_wpool_new(&p->pool, threads, 1))) {
        free(p);
        return rc;
    }
    *out = p;
    return FV_OK;
}

void fv_vpool_free(fv_vpool *p)
{
    if (!p)
        return;
    fv_wpool_free(p->pool);
    free(p);
}

int fv_vpool_fd(const fv_vpool *p) { return fv_wpool_fd(p->pool); }

int fv_vpool_submit(fv_vpool *p, const fv_srv_verify *v, void *owner,
                    fv_vbatch **out)
{
    fv_vbatch *b;
    int rc;

    *out = NULL;
    if (!v || v->n == 0)
        return FV_EINVAL;
    if (!(b = calloc(1, sizeof *b)))
        return FV_ENOMEM;
    b->v = *v;
    b->owner = owner;
    /* The job's owner is the batch itself: fv_vpool_take frees it. */
    if ((rc = fv_wpool_submit(p->pool, check_slice, b, v->n, SLICE, b,
                              &b->job))) {
        free(b);
        return rc;
    }
    *out = b;
    return FV_OK;
}

void *fv_vpool_take(fv_vpool *p)
{
    fv_vbatch *b = fv_wpool_take(p->pool);
    void *owner = NULL;
    if (b) {
        owner = b->owner;
        free(b);
    }
    return owner;
}

void fv_vpool_cancel(fv_vpool *p, fv_vbatch *b)
{
    if (!p || !b)
        return;
    fv_wpool_cancel(p->pool, b->job);
    free(b);
}
