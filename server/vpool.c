/* vpool.c - threads that check PUSH signatures (see vpool.h). */
#include "vpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fieldvault.h"

#define SLICE 16 /* envelopes a thread takes at once (about a millisecond) */

enum { B_QUEUED, B_OUT, B_DONE };

struct fv_vbatch {
    fv_vbatch *next; /* in the queue or the done list */
    fv_srv_verify v;
    void *owner;
    size_t next_i;    /* the first envelope not handed to a thread */
    size_t checked;   /* envelopes whose result is written */
    unsigned running; /* threads at its slices */
    int where;        /* B_*: queued, all handed out, on the done list */
    int cancelled;
};

struct fv_vpool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* the queue gained a batch, or stop */
    pthread_cond_t idle; /* a cancelled batch's slice finished */
    fv_vbatch *qhead, *qtail;
    fv_vbatch *dhead, *dtail;
    int stop;
    int wake[2]; /* a byte is written when the done list gains a batch */
    unsigned int nthreads;
    pthread_t threads[FV_VPOOL_MAX_THREADS];
};

static void list_push(fv_vbatch **head, fv_vbatch **tail, fv_vbatch *b)
{
    b->next = NULL;
    if (*tail)
        (*tail)->next = b;
    else
        *head = b;
    *tail = b;
}

static void list_remove(fv_vbatch **head, fv_vbatch **tail, fv_vbatch *b)
{
    fv_vbatch *prev = NULL, *x;
    for (x = *head; x && x != b; x = x->next)
        prev = x;
    if (!x)
        return;
    if (prev)
        prev->next = b->next;
    else
        *head = b->next;
    if (*tail == b)
        *tail = prev;
    b->next = NULL;
}

static void *worker(void *arg)
{
    fv_vpool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        fv_vbatch *b;
        size_t from, to;
        while (!p->stop && !p->qhead)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        /* A slice of the first batch; the batch goes to the back of the
         * queue if more remains (round-robin between pushes). */
        b = p->qhead;
        from = b->next_i;
        to = b->v.n - from > SLICE ? from + SLICE : b->v.n;
        b->next_i = to;
        list_remove(&p->qhead, &p->qtail, b);
        if (to < b->v.n)
            list_push(&p->qhead, &p->qtail, b);
        else
            b->where = B_OUT;
        b->running++;
        pthread_mutex_unlock(&p->mu);

        for (size_t i = from; i < to; i++)
            b->v.result[i] = fv_srv_verify_envelope(b->v.env[i], b->v.len[i]);

        pthread_mutex_lock(&p->mu);
        b->running--;
        b->checked += to - from;
        if (b->cancelled) {
            if (!b->running)
                pthread_cond_broadcast(&p->idle);
        } else if (b->checked == b->v.n) {
            int was_empty = p->dhead == NULL;
            b->where = B_DONE;
            list_push(&p->dhead, &p->dtail, b);
            if (was_empty) {
                ssize_t w;
                do
                    w = write(p->wake[1], "", 1);
                while (w < 0 && errno == EINTR);
                /* EAGAIN: the pipe is full, hence readable already. */
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int fv_vpool_new(fv_vpool **out, unsigned int threads)
{
    fv_vpool *p;
    int rc = FV_OK;

    *out = NULL;
    if (threads < 1 || threads > FV_VPOOL_MAX_THREADS)
        return FV_EINVAL;
    if (!(p = calloc(1, sizeof *p)))
        return FV_ENOMEM;
    p->wake[0] = p->wake[1] = -1;
    if (pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        return FV_ENOMEM;
    }
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (pipe(p->wake) != 0) {
        p->wake[0] = p->wake[1] = -1;
        rc = FV_EIO;
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(p->wake[i], F_GETFL);
        fcntl(p->wake[i], F_SETFL, fl | O_NONBLOCK);
        fcntl(p->wake[i], F_SETFD, FD_CLOEXEC);
    }
    for (; p->nthreads < threads; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) != 0) {
            rc = p->nthreads ? FV_OK : FV_EIO; /* fewer threads will do */
            break;
        }
    if (rc)
        goto fail;
    *out = p;
    return FV_OK;
fail:
    fv_vpool_free(p);
    return rc;
}

void fv_vpool_free(fv_vpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* The caller cancelled or took every batch; whatever is left goes. */
    while (p->qhead) {
        fv_vbatch *b = p->qhead;
        p->qhead = b->next;
        if (b->where == B_QUEUED)
            free(b);
    }
    while (p->dhead) {
        fv_vbatch *b = p->dhead;
        p->dhead = b->next;
        free(b);
    }
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int fv_vpool_fd(const fv_vpool *p) { return p->wake[0]; }

int fv_vpool_submit(fv_vpool *p, const fv_srv_verify *v, void *owner,
                    fv_vbatch **out)
{
    fv_vbatch *b;
    *out = NULL;
    if (!v || v->n == 0)
        return FV_EINVAL;
    if (!(b = calloc(1, sizeof *b)))
        return FV_ENOMEM;
    b->v = *v;
    b->owner = owner;
    b->where = B_QUEUED;
    pthread_mutex_lock(&p->mu);
    list_push(&p->qhead, &p->qtail, b);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    *out = b;
    return FV_OK;
}

void *fv_vpool_take(fv_vpool *p)
{
    unsigned char drain[64];
    fv_vbatch *b;
    void *owner = NULL;

    /* Emptied before the list is looked at: a batch that lands after
     * this writes a new byte, so the next poll() wakes for it. */
    while (read(p->wake[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&p->mu);
    if ((b = p->dhead) != NULL) {
        list_remove(&p->dhead, &p->dtail, b);
        owner = b->owner;
    }
    pthread_mutex_unlock(&p->mu);
    free(b);
    return owner;
}

void fv_vpool_cancel(fv_vpool *p, fv_vbatch *b)
{
    if (!p || !b)
        return;
    pthread_mutex_lock(&p->mu);
    if (b->where == B_QUEUED)
        list_remove(&p->qhead, &p->qtail, b);
    else if (b->where == B_DONE)
        list_remove(&p->dhead, &p->dtail, b);
    b->cancelled = 1;
    while (b->running)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    free(b);
}
