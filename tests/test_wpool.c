/* test_wpool.c - the worker pool (core/wpool.c) alone, as the device's sync
 * and the server's signature checks use it:
 *
 *   a. every item of a job runs exactly once and its result lands at its
 *      own index, whatever the slice size, thread count and job size;
 *   b. an item that fails marks its own result only;
 *   c. fv_wpool_wait: the calling thread runs the job's slices too, so a
 *      job finishes while every pool thread is held by another job;
 *   d. notify: the descriptor wakes, fv_wpool_take hands back each done
 *      job once, oldest first, and never one being waited for;
 *   e. cancel: slices not started never run, running ones finish before
 *      fv_wpool_cancel returns;
 *   f. shutdown with idle threads, bad arguments, fv_wpool_threads's cap.
 *
 * Run under ThreadSanitizer by scripts/test --thread. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fieldvault.h"
#include "wpool.h"

struct squares {
    size_t n;
    long *out;
    atomic_int *runs; /* how often each item ran */
    size_t bad;       /* the item that "fails" (SIZE_MAX: none) */
};

static void squares_fn(void *ctx, size_t from, size_t to)
{
    struct squares *s = ctx;
    for (size_t i = from; i < to; i++) {
        atomic_fetch_add(&s->runs[i], 1);
        s->out[i] = i == s->bad ? -1 : (long)(i * i);
    }
}

static void squares_init(struct squares *s, size_t n, size_t bad)
{
    s->n = n;
    s->out = calloc(n, sizeof *s->out);
    s->runs = calloc(n, sizeof *s->runs);
    s->bad = bad;
}

static int squares_ok(const struct squares *s)
{
    for (size_t i = 0; i < s->n; i++) {
        long want = i == s->bad ? -1 : (long)(i * i);
        if (s->out[i] != want || atomic_load(&s->runs[i]) != 1)
            return 0;
    }
    return 1;
}

static void squares_free(struct squares *s)
{
    free(s->out);
    free((void *)s->runs);
}

/* A job whose first slice blocks until released: it holds a thread. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, open;
};

static void gate_fn(void *ctx, size_t from, size_t to)
{
    struct gate *g = ctx;
    (void)from;
    (void)to;
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(struct gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->entered < n)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void *opener(void *arg)
{
    gate_open(arg);
    return NULL;
}

static void test_order(void)
{
    static const size_t sizes[] = {1, 2, 15, 16, 17, 255, 256, 1000};
    static const size_t slices[] = {0, 1, 7, 16, 300};
    for (unsigned int t = 1; t <= 4; t++) {
        fv_wpool *p = NULL;
        CHECK_EQ(fv_wpool_new(&p, t, 0), FV_OK);
        for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
            for (size_t b = 0; b < sizeof slices / sizeof *slices; b++) {
                struct squares s;
                squares_init(&s, sizes[a], sizes[a] / 2);
                CHECK_EQ(fv_wpool_run(p, squares_fn, &s, s.n, slices[b]),
                         FV_OK);
                CHECK(squares_ok(&s));
                squares_free(&s);
            }
        fv_wpool_free(p);
    }
    /* Without a pool the caller runs it all. */
    {
        struct squares s;
        squares_init(&s, 100, SIZE_MAX);
        CHECK_EQ(fv_wpool_run(NULL, squares_fn, &s, s.n, 0), FV_OK);
        CHECK(squares_ok(&s));
        squares_free(&s);
    }
}

/* Many jobs queued at once, then waited for in reverse: each whole. */
static void test_many_jobs(void)
{
    enum { JOBS = 20 };
    struct squares s[JOBS];
    fv_wjob *j[JOBS];
    fv_wpool *p = NULL;
    CHECK_EQ(fv_wpool_new(&p, 3, 0), FV_OK);
    for (int i = 0; i < JOBS; i++) {
        squares_init(&s[i], 50 + (size_t)i * 13, (size_t)i);
        CHECK_EQ(fv_wpool_submit(p, squares_fn, &s[i], s[i].n, 5, NULL, &j[i]),
                 FV_OK);
    }
    for (int i = JOBS - 1; i >= 0; i--) {
        fv_wpool_wait(p, j[i]);
        CHECK(squares_ok(&s[i]));
        squares_free(&s[i]);
    }
    /* Nothing left for take: waited jobs never reach the done list. */
    CHECK(fv_wpool_take(p) == NULL);
    fv_wpool_free(p);
}

/* The only thread is held by a gated job: the caller finishes its own job
 * alone. */
static void test_wait_helps(void)
{
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    struct squares s;
    fv_wjob *gj = NULL, *sj = NULL;
    fv_wpool *p = NULL;
    CHECK_EQ(fv_wpool_new(&p, 1, 1), FV_OK);
    CHECK_EQ(fv_wpool_submit(p, gate_fn, &g, 1, 1, &g, &gj), FV_OK);
    gate_wait_entered(&g, 1);
    squares_init(&s, 200, 3);
    CHECK_EQ(fv_wpool_submit(p, squares_fn, &s, s.n, 8, &s, &sj), FV_OK);
    fv_wpool_wait(p, sj);
    CHECK(squares_ok(&s));
    squares_free(&s);
    gate_open(&g);
    /* The gated job is done once its descriptor says so. */
    {
        struct pollfd pfd = {fv_wpool_fd(p), POLLIN, 0};
        CHECK_EQ(poll(&pfd, 1, 10000), 1);
    }
    CHECK(fv_wpool_take(p) == &g);
    CHECK(fv_wpool_take(p) == NULL);
    fv_wpool_free(p);
}

/* notify: each done job comes back once through take; the descriptor
 * wakes for a job that lands after a take emptied it. */
static void test_take(void)
{
    enum { JOBS = 8 };
    struct squares s[JOBS];
    fv_wjob *j[JOBS];
    int seen[JOBS] = {0}, got = 0;
    fv_wpool *p = NULL;
    CHECK_EQ(fv_wpool_new(&p, 2, 1), FV_OK);
    CHECK(fv_wpool_fd(p) >= 0);
    for (int i = 0; i < JOBS; i++) {
        squares_init(&s[i], 64, SIZE_MAX);
        CHECK_EQ(fv_wpool_submit(p, squares_fn, &s[i], s[i].n, 4, &s[i], &j[i]),
                 FV_OK);
    }
    while (got < JOBS) {
        struct pollfd pfd = {fv_wpool_fd(p), POLLIN, 0};
        void *owner;
        if (poll(&pfd, 1, 10000) != 1) {
            CHECK(!"the pool's descriptor never woke");
            break;
        }
        while ((owner = fv_wpool_take(p)) != NULL) {
            int i = (int)((struct squares *)owner - s);
            CHECK(i >= 0 && i < JOBS);
            if (i >= 0 && i < JOBS) {
                CHECK_EQ(seen[i], 0);
                seen[i] = 1;
                CHECK(squares_ok(&s[i]));
                got++;
            }
        }
    }
    for (int i = 0; i < JOBS; i++)
        squares_free(&s[i]);
    /* Without notify there is no descriptor. */
    fv_wpool_free(p);
    CHECK_EQ(fv_wpool_new(&p, 1, 0), FV_OK);
    CHECK_EQ(fv_wpool_fd(p), -1);
    fv_wpool_free(p);
}

/* Cancel: a job behind a gated one never runs; a running one (the gate)
 * is waited for. */
static void test_cancel(void)
{
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    struct squares s;
    fv_wjob *gj = NULL, *sj = NULL;
    fv_wpool *p = NULL;
    CHECK_EQ(fv_wpool_new(&p, 1, 1), FV_OK);
    CHECK_EQ(fv_wpool_submit(p, gate_fn, &g, 1, 1, &g, &gj), FV_OK);
    gate_wait_entered(&g, 1);
    squares_init(&s, 100, SIZE_MAX);
    CHECK_EQ(fv_wpool_submit(p, squares_fn, &s, s.n, 10, &s, &sj), FV_OK);
    fv_wpool_cancel(p, sj);
    for (size_t i = 0; i < s.n; i++)
        CHECK_EQ(atomic_load(&s.runs[i]), 0);
    squares_free(&s);
    /* The gate opens from another thread while cancel waits for it. */
    {
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, opener, &g), 0);
        fv_wpool_cancel(p, gj);
        pthread_join(t, NULL);
    }
    CHECK(fv_wpool_take(p) == NULL); /* cancelled jobs never come back */
    fv_wpool_cancel(p, NULL);
    fv_wpool_free(p);
}

static void test_edges(void)
{
    fv_wpool *p = (fv_wpool *)1;
    fv_wjob *j = (fv_wjob *)1;
    unsigned int t = fv_wpool_threads();
    CHECK_EQ(fv_wpool_new(&p, 0, 0), FV_EINVAL);
    CHECK(p == NULL);
    CHECK_EQ(fv_wpool_new(&p, FV_WPOOL_MAX_THREADS + 1, 0), FV_EINVAL);
    CHECK(t <= FV_WPOOL_DEVICE_CAP);
    CHECK_EQ(t, (unsigned int)(sysconf(_SC_NPROCESSORS_ONLN) > FV_WPOOL_DEVICE_CAP
                                   ? FV_WPOOL_DEVICE_CAP
                                   : sysconf(_SC_NPROCESSORS_ONLN) - 1));
    /* Shutdown of idle threads, many at once. */
    CHECK_EQ(fv_wpool_new(&p, 16, 1), FV_OK);
    CHECK_EQ(fv_wpool_submit(p, squares_fn, NULL, 0, 0, NULL, &j), FV_EINVAL);
    CHECK(j == NULL);
    CHECK(fv_wpool_take(p) == NULL);
    fv_wpool_free(p);
    fv_wpool_free(NULL);
    CHECK_EQ(fv_wpool_run(NULL, squares_fn, NULL, 0, 0), FV_OK);
}

int main(void)
{
    test_order();
    test_many_jobs();
    test_wait_helps();
    test_take();
    test_cancel();
    test_edges();
    return check_summary("test_wpool");
}
