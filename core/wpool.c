/* wpool.c - a small pool of worker threads (see wpool.h). */
#include "wpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "fieldvault.h"

#define DEFAULT_SLICE 16

enum { J_QUEUED, J_OUT, J_DONE };

struct fv_wjob {
    fv_wjob *next; /* in the queue or the done list */
    fv_wpool_fn fn;
    void *ctx;
    void *owner;
    size_t n, slice;
    size_t next_i;    /* the first item not handed out */
    size_t finished;  /* items run */
    unsigned running; /* threads at its slices */
    int where;        /* J_*: queued, all handed out, on the done list */
    int waited;       /* fv_wpool_wait holds it: never on the done list */
    int cancelled;
};

struct fv_wpool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* the queue gained a job, or stop */
    pthread_cond_t idle; /* a waited or cancelled job's slice finished */
    fv_wjob *qhead, *qtail;
    fv_wjob *dhead, *dtail;
    int stop;
    int wake[2]; /* notify: a byte is written when the done list gains a job */
    unsigned int nthreads;
    pthread_t threads[FV_WPOOL_MAX_THREADS];
};

static void list_push(fv_wjob **head, fv_wjob **tail, fv_wjob *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void list_remove(fv_wjob **head, fv_wjob **tail, fv_wjob *j)
{
    fv_wjob *prev = NULL, *x;
    for (x = *head; x && x != j; x = x->next)
        prev = x;
    if (!x)
        return;
    if (prev)
        prev->next = j->next;
    else
        *head = j->next;
    if (*tail == j)
        *tail = prev;
    j->next = NULL;
}

/* Hands out the next slice of j (queued): the job goes to the back of the
 * queue if more remains (round-robin between jobs). Under the lock. */
static void slice_take(fv_wpool *p, fv_wjob *j, size_t *from, size_t *to)
{
    *from = j->next_i;
    *to = j->n - *from > j->slice ? *from + j->slice : j->n;
    j->next_i = *to;
    list_remove(&p->qhead, &p->qtail, j);
    if (*to < j->n)
        list_push(&p->qhead, &p->qtail, j);
    else
        j->where = J_OUT;
    j->running++;
}

/* Counts a slice as run. Under the lock. */
static void slice_done(fv_wpool *p, fv_wjob *j, size_t count)
{
    j->running--;
    j->finished += count;
    if (j->cancelled || j->waited) {
        if (!j->running)
            pthread_cond_broadcast(&p->idle);
    } else if (j->finished == j->n) {
        int was_empty = p->dhead == NULL;
        j->where = J_DONE;
        list_push(&p->dhead, &p->dtail, j);
        if (was_empty && p->wake[1] >= 0) {
            ssize_t w;
            do
                w = write(p->wake[1], "", 1);
            while (w < 0 && errno == EINTR);
            /* EAGAIN: the pipe is full, hence readable already. */
        }
    }
}

static void *worker(void *arg)
{
    fv_wpool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        fv_wjob *j;
        size_t from, to;
        while (!p->stop && !p->qhead)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        j = p->qhead;
        slice_take(p, j, &from, &to);
        pthread_mutex_unlock(&p->mu);
        j->fn(j->ctx, from, to);
        pthread_mutex_lock(&p->mu);
        slice_done(p, j, to - from);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

unsigned int fv_wpool_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores <= 1)
        return 0;
    if (cores > FV_WPOOL_DEVICE_CAP + 1)
        cores = FV_WPOOL_DEVICE_CAP + 1;
    return (unsigned int)cores - 1;
}

int fv_wpool_new(fv_wpool **out, unsigned int threads, int notify)
{
    fv_wpool *p;
    int rc = FV_OK;

    *out = NULL;
    if (threads < 1 || threads > FV_WPOOL_MAX_THREADS)
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
    if (notify) {
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
    fv_wpool_free(p);
    return rc;
}

void fv_wpool_free(fv_wpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* The owner waited for, took or cancelled every job; whatever is left
     * goes (a job both queued and running cannot be: the threads are
     * joined). */
    while (p->qhead) {
        fv_wjob *j = p->qhead;
        p->qhead = j->next;
        free(j);
    }
    while (p->dhead) {
        fv_wjob *j = p->dhead;
        p->dhead = j->next;
        free(j);
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

int fv_wpool_fd(const fv_wpool *p) { return p->wake[0]; }

int fv_wpool_submit(fv_wpool *p, fv_wpool_fn fn, void *ctx, size_t n,
                    size_t slice, void *owner, fv_wjob **out)
{
    fv_wjob *j;
    *out = NULL;
    if (!fn || n == 0)
        return FV_EINVAL;
    if (!(j = calloc(1, sizeof *j)))
        return FV_ENOMEM;
    j->fn = fn;
    j->ctx = ctx;
    j->owner = owner;
    j->n = n;
    j->slice = slice ? slice : DEFAULT_SLICE;
    j->where = J_QUEUED;
    pthread_mutex_lock(&p->mu);
    list_push(&p->qhead, &p->qtail, j);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    *out = j;
    return FV_OK;
}

void fv_wpool_wait(fv_wpool *p, fv_wjob *j)
{
    if (!p || !j)
        return;
    pthread_mutex_lock(&p->mu);
    j->waited = 1;
    if (j->where == J_DONE) /* finished before it was marked */
        list_remove(&p->dhead, &p->dtail, j);
    while (j->where == J_QUEUED) {
        size_t from, to;
        slice_take(p, j, &from, &to);
        pthread_mutex_unlock(&p->mu);
        j->fn(j->ctx, from, to);
        pthread_mutex_lock(&p->mu);
        slice_done(p, j, to - from);
    }
    while (j->running)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    free(j);
}

int fv_wpool_run(fv_wpool *p, fv_wpool_fn fn, void *ctx, size_t n,
                 size_t slice)
{
    fv_wjob *j;
    int rc;
    if (n == 0)
        return FV_OK;
    if (!p) {
        fn(ctx, 0, n);
        return FV_OK;
    }
    if ((rc = fv_wpool_submit(p, fn, ctx, n, slice, NULL, &j)))
        return rc;
    fv_wpool_wait(p, j);
    return FV_OK;
}

void *fv_wpool_take(fv_wpool *p)
{
    unsigned char drain[64];
    fv_wjob *j;
    void *owner = NULL;

    /* Emptied before the list is looked at: a job that lands after this
     * writes a new byte, so the next poll() wakes for it. */
    if (p->wake[0] >= 0)
        while (read(p->wake[0], drain, sizeof drain) > 0)
            ;
    pthread_mutex_lock(&p->mu);
    if ((j = p->dhead) != NULL) {
        list_remove(&p->dhead, &p->dtail, j);
        owner = j->owner;
    }
    pthread_mutex_unlock(&p->mu);
    free(j);
    return owner;
}

void fv_wpool_cancel(fv_wpool *p, fv_wjob *j)
{
    if (!p || !j)
        return;
    pthread_mutex_lock(&p->mu);
    if (j->where == J_QUEUED)
        list_remove(&p->qhead, &p->qtail, j);
    else if (j->where == J_DONE)
        list_remove(&p->dhead, &p->dtail, j);
    j->cancelled = 1;
    while (j->running)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    free(j);
}
