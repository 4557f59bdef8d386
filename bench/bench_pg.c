/*
 * bench_pg.c - server.pg.push: envelopes per second that DEVICES field
 * devices push at once through two `fieldvault serve` processes sharing one
 * PostgreSQL store, against the same devices pushing the same records to
 * one `fieldvault serve` on the embedded store (SQLite), in the same run:
 * the limit. Each device pushes RECORDS records in one sync; device i goes
 * to server i % 2.
 *
 * Run by scripts/bench through tests/with_pg.sh, which starts a temporary
 * PostgreSQL cluster and sets FV_PG_URL, FV_PG_DIR and FV_PG_BIN; scratch
 * files go under $TMPDIR (with_pg.sh's, owned by the cluster's user).
 *
 * usage: bench_pg [--quick] [--records N] [--devices N] [--fieldvault PATH]
 *                 [--dir IGNORED] [server.pg.push]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

struct dev {
    fv_vault *v;
    const char *addr;
    size_t n;
    pthread_t tid;
    int rc;
    uint64_t pushed;
};

static void *push_main(void *p)
{
    struct dev *d = p;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    so.server = d->addr;
    d->rc = fv_sync(d->v, &res, &so);
    d->pushed = res.pushed;
    return NULL;
}

static pid_t servers[2];

static void kill_servers(void)
{
    for (int i = 0; i < 2; i++)
        if (servers[i] > 0) {
            kill(servers[i], SIGKILL);
            waitpid(servers[i], NULL, 0);
            servers[i] = 0;
        }
}

/* Envelopes/s of `ndev` devices with `n` records each pushing at once to
 * the store `store` through `nserve` serve processes. */
static double push_run(const char *store, const char *tag, int nserve,
                       size_t ndev, size_t n)
{
    char addr[2][128], name[64];
    char *log[2];
    struct dev *d = xmalloc(ndev * sizeof *d);
    double t0, t;
    uint64_t total = 0;
    long rss;
    char *admin = server_create(store);
    free(admin);
    for (int i = 0; i < nserve; i++) {
        snprintf(name, sizeof name, "%s-serve%d.log", tag, i);
        log[i] = scratch_path(name);
        servers[i] = serve_start(store, log[i], addr[i], sizeof addr[i]);
    }
    for (size_t i = 0; i < ndev; i++) {
        char *dir;
        snprintf(name, sizeof name, "%s-dev%zu", tag, i);
        dir = scratch_path(name);
        d[i].addr = addr[i % (size_t)nserve];
        d[i].v = field_device(store, d[i].addr, dir, name);
        d[i].n = n;
        add_records(d[i].v, (unsigned)i, 0, n);
        free(dir);
    }
    t0 = now();
    for (size_t i = 0; i < ndev; i++)
        if (pthread_create(&d[i].tid, NULL, push_main, &d[i]) != 0)
            die("pthread_create");
    for (size_t i = 0; i < ndev; i++)
        pthread_join(d[i].tid, NULL);
    t = now() - t0;
    for (size_t i = 0; i < ndev; i++) {
        if (d[i].rc != FV_OK)
            die("%s: device %zu: sync: %s", tag, i, fv_strerror(d[i].rc));
        total += d[i].pushed;
        fv_vault_close(d[i].v);
    }
    if (total != ndev * n)
        die("%s: %llu envelopes pushed, want %zu", tag,
            (unsigned long long)total, ndev * n);
    for (int i = 0; i < nserve; i++) {
        serve_stop(servers[i], log[i], &rss);
        servers[i] = 0;
        free(log[i]);
    }
    free(d);
    note("%s: %llu envelopes from %zu devices through %d server%s in %.2f s",
         tag, (unsigned long long)total, ndev, nserve, nserve > 1 ? "s" : "",
         t);
    return (double)total / t;
}

int main(int argc, char **argv)
{
    const char *names[8];
    int nnames = 0, quick = 0;
    size_t records = 0, devices = 0;
    const char *url = getenv("FV_PG_URL"), *fv = NULL;
    char *sdir;
    double pg, lite;

    bench_prog = "bench_pg";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick"))
            quick = 1;
        else if (!strcmp(a, "--dir") && i + 1 < argc)
            i++; /* scratch goes under $TMPDIR: see above */
        else if (!strcmp(a, "--records") && i + 1 < argc)
            records = parse_count(argv[++i], "--records");
        else if (!strcmp(a, "--devices") && i + 1 < argc)
            devices = parse_count(argv[++i], "--devices");
        else if (!strcmp(a, "--fieldvault") && i + 1 < argc)
            fv = argv[++i];
        else if (a[0] == '-') {
            fprintf(stderr, "bench_pg: unknown option %s\n", a);
            return 2;
        } else if (strncmp("server.pg.push", a, strlen(a)) == 0 &&
                   nnames < 8)
            names[nnames++] = a;
        else {
            fprintf(stderr, "bench_pg: no measurement is named %s\n", a);
            return 2;
        }
    }
    bench_select(names, nnames);
    if (!wanted("server.pg.push"))
        return 0;
    if (!url || strncmp(url, "postgresql://", 13) != 0) {
        fprintf(stderr, "bench_pg: FV_PG_URL is not set: run it through "
                        "tests/with_pg.sh\n");
        return 2;
    }
    bench_fieldvault = fv ? fv : default_fieldvault();
    if (!records)
        records = quick ? 300 : 3000;
    if (!devices)
        devices = 4;
    if (sodium_init() < 0)
        die("libsodium");
    make_scratch(NULL);
    atexit(kill_servers);
    sdir = scratch_path("sqlite-server");
    lite = push_run(sdir, "sqlite", 1, devices, records);
    pg = push_run(url, "pg", 2, devices, records);
    free(sdir);
    report("server.pg.push", pg, "envelopes/s", lite, 0);
    return 0;
}
