/*
 * bench_sync.c - FieldVault's sync benchmarks (run them with scripts/bench).
 *
 *   bench_sync [--quick] [--dir DIR] [--rounds N] [--records N]
 *              [--devices N] [--fieldvault PATH] [--verify-threads N]
 *              [NAME...]
 *
 * A NAME selects the measurements whose name starts with it; no NAME runs
 * them all. --verify-threads sets fv_server_options.verify_threads of the
 * servers run in this process (default: the server's, one per CPU), to
 * compare with the signatures checked on the server's loop (0). Each measurement prints one JSON object on its own line on
 * stdout, as bench_vault does:
 *
 *   {"bench": NAME, "value": X, "unit": U, "limit": Y, "ratio": X/Y}
 *
 * with "limit" and "ratio" where a limit applies. Everything else goes to
 * stderr. Scratch files (vaults, servers, the limit's database) go in one
 * new directory under DIR, so every disk write of a figure and of its limit
 * lands on the same file system; it is removed at exit.
 *
 * sync.push (envelopes/s; target ratio >= 0.5). A server is made with
 * fv_server_init; a coordinator enrolls with the admin invite and publishes
 * the organisation key (fv_org_init), so records are sealed to the device
 * and the organisation as in real use; a field device enrolls with an invite
 * from fv_server_invite. The server is then stopped and N small records
 * (100,000; --quick 10,000: a title, a 300-byte narrative, 2 fields, a tag)
 * are added to the device's vault (FV_KDF_TEST) with fv_record_add. The
 * server directory and the vault directory, closed, are the starting point
 * of every round (--rounds, 3): each round copies both, runs fv_server_run
 * on the copy in a thread of this process (its real server.db, on disk,
 * listening on 127.0.0.1) and times one fv_sync of the device over loopback
 * TLS, which pushes the N envelopes. The server's log must then hold
 * exactly N envelopes. The limit is the work the server cannot avoid for
 * the same envelopes, done with libsodium and SQLite alone: the real
 * envelope bytes are read from the vault file before timing, and per batch
 * of 256 (a PUSH's most) each envelope's real Ed25519 signature is checked
 * over its real COSE Sig_structure (crypto_sign_verify_detached) and its id
 * recomputed (BLAKE2b-256 of its bytes, which the server must do too: it
 * cannot take the device's word for an id); then, in a fresh database with
 * journal_mode=WAL and synchronous=FULL, one BEGIN IMMEDIATE ... COMMIT
 * inserts the 256 envelopes into env(id BLOB PRIMARY KEY, bytes BLOB) and
 * one row each into log(seq INTEGER PRIMARY KEY, id BLOB): what the server
 * stores per envelope without its other bookkeeping. Rounds alternate the
 * order (sync then limit, limit then sync). The figures come from the
 * quietest round, the one whose limit took least time: value = N / t_sync,
 * limit = N / t_limit. The sync shares the machine with its client (the
 * device, in this process); the limit does server work only. On stderr,
 * each round also says how the server thread and the device spent the
 * sync's wall time (/proc/self/task/TID/schedstat: running, waiting for a
 * CPU, blocked on the disk or the peer) and how busy the whole machine was:
 * the machines are shared, and that tells a slow server from a busy one.
 *
 * sync.push.socks5 (envelopes/s; target ratio >= 0.9). Each round of
 * sync.push also runs the same push (fresh copies of the same server and
 * device) through a SOCKS5 proxy started by this program on a free
 * 127.0.0.1 port (socks5h://, so the server's name goes to the proxy),
 * danted, or microsocks with --socks microsocks: the proxy's cost on the
 * sync. value = N / the fastest proxied
 * sync, limit = N / the fastest direct sync of the same process and run.
 *
 * sync.noop.bytes, sync.noop.roundtrips (bytes, round trips; no limit). On
 * the server and device of the last round (N envelopes on both sides), an
 * fv_sync with nothing new: fv_sync_result's bytes_sent + bytes_received
 * (application bytes after the TLS handshake: no TLS record overhead) and
 * roundtrips (waits for the server after the handshake). The same for a
 * second field device of 1,000 records on the same server:
 * sync.noop.bytes.1k, sync.noop.roundtrips.1k. Neither may grow with N.
 * Three syncs are made each time (they must agree); stderr gives their
 * wall times, which are not measured against a limit.
 *
 * sync.one.bytes (bytes; no limit): one more record on the N-record device,
 * then fv_sync: bytes_sent + bytes_received.
 *
 * sync.push.cores (envelopes/s; target ratio >= 1.6 on two cores). Two
 * field devices of N records each (made as sync.push's device is, on one
 * server) push at once: each round copies the server and both vaults,
 * starts fv_server_run in a thread (its signature threads at their
 * default, one per CPU) and times, from a barrier releasing two threads
 * of this process until the later of their fv_sync returns, both pushes.
 * The log must then hold 2N envelopes. value = 2N / that time, limit =
 * sync.push's single-core limit for the first device's N envelopes, both
 * from the quietest round (as sync.push, the one whose limit took least
 * time): the ratio says
 * how far ingest scales past one core. The devices run in this process
 * and share the same cores: stderr gives the CPU-seconds of the server
 * (its loop and signature threads) and of the devices apart.
 *
 * server.small.latency (ms; no limit). On the server of sync.push.cores
 * with its first device's N envelopes not yet pushed (100,000; --quick
 * 10,000), a third field device syncs one new record at a time, over and
 * over, while the first device pushes its N: the 99th percentile of those
 * one-record fv_syncs' wall times (each a TLS handshake, a PUSH of one
 * envelope and an empty PULL). stderr gives the same figures with the
 * server idle, and how many syncs ran. One device's big push must not
 * hold up another's small sync.
 *
 * sync.load.seconds, sync.load.ok, sync.load.server_rss. M devices
 * (--devices M: 10,000; --quick 50) sync at once with a server running as its own process, the
 * Release `fieldvault serve` (--fieldvault PATH; default: `fieldvault` next
 * to this program), with --max-connections and --max-per-address 8M+64
 * and --memory-mib M/4+64 (every device comes from 127.0.0.1 at once; at
 * most 65536). Before timing, each device is invited (fv_server_invite),
 * its vault created (FV_KDF_TEST) and enrolled (fv_enroll) and given 20
 * records, by four threads, and its vault closed. Then worker processes
 * of at most 2,000 devices each (a process's descriptor limit, 20,000 on
 * the development machine and not to be raised there, would not hold
 * 10,000 vaults and their sockets) open the vaults and start a thread per
 * device (256 KiB stacks); released together (the arrival: one instant
 * burst of M connects, no ramp), each thread runs fv_sync on its own
 * handle with a 600 s timeout (a device waits its turn behind the others'
 * handshakes, and tries connecting again as fv_sync does when it is turned
 * away: beyond the pre-auth share of one address, 8,192 at 65536
 * connections, or when the kernel's SYN retries give up): a full TLS
 * handshake and 20 envelopes pushed. The
 * descriptor limit of this process, which serve inherits, is raised to
 * M+256 (the hard limit too, where the process may). seconds: wall time from the
 * release until the last worker process ended; ok: how many succeeded (anything
 * but M fails the benchmark); server_rss: the server process's peak
 * resident set in KiB (VmHWM of /proc/PID/status, read right after the
 * load: the peak of its start, the M enrollments and the load; stderr also
 * gives ru_maxrss from wait4, which adds the shutdown's checkpoint and, in
 * a sanitizer build, the leak check at exit).
 * Afterwards the server is stopped with SIGTERM and its log, read with
 * SQLite, must hold exactly M * 20 envelopes from M authors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"
#include "server.h"

#define BATCH 256            /* envelopes per PUSH (docs/PROTOCOL.md) */
#define SMALL_RECORDS 1000   /* the second device of sync.noop.*.1k */
#define LOAD_RECORDS 20      /* per device in sync.load */
#define LOAD_TIMEOUT_MS (600 * 1000) /* a sync.load device's --timeout */
#define LOAD_STACK (256 * 1024)      /* a sync.load device thread's stack */
#define LOAD_PREP_THREADS 4          /* threads that make the devices */
/* Devices per worker process: each a vault (3 descriptors), then a socket
 * and the vault's lock, well within a 20,000 descriptor limit. */
#define LOAD_PER_PROC 2000
#define LOG_LINES 8          /* server log lines kept for a failure message */
#define LATENCY_IDLE 50      /* one-record syncs with the server idle */

static struct {
    int quick;
    int rounds;
    size_t records;
    size_t devices;
    const char *base;       /* where the scratch directory goes */
    const char *fieldvault; /* the CLI, for sync.load */
    int verify_threads;     /* of the servers in this process */
    const char *socks;      /* sync.push.socks5's proxy (socks_start) */
} opt;

/* ---- a server in a thread of this process --------------------------- */

struct server_thread {
    const char *dir;
    pthread_t tid;
    long tid_linux; /* for its schedstat */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 starting, 1 listening, 2 returned */
    int rc;
    int port;
    char addr[64]; /* "127.0.0.1:PORT", for fv_sync_options.server */
    atomic_int stop; /* set by the benchmark's thread */
    char last[LOG_LINES][200]; /* the last log lines, for failures */
    unsigned long lines;
};

static void st_log(const char *line, void *payload)
{
    struct server_thread *t = payload;
    snprintf(t->last[t->lines++ % LOG_LINES], sizeof t->last[0], "%s", line);
}

static void st_ready(const char *host, int port, void *payload)
{
    struct server_thread *t = payload;
    pthread_mutex_lock(&t->mu);
    snprintf(t->addr, sizeof t->addr, "%s:%d", host, port);
    t->tid_linux = my_tid(); /* ready runs on the server's thread */
    t->port = port;
    t->state = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *st_main(void *arg)
{
    struct server_thread *t = arg;
    fv_server_options so = FV_SERVER_OPTIONS_INIT;
    int rc;
    so.listen = "127.0.0.1:0";
    so.log = st_log;
    so.log_payload = t;
    so.ready = st_ready;
    so.ready_payload = t;
    so.stop = &t->stop;
    so.verify_threads = opt.verify_threads;
    rc = fv_server_run(t->dir, &so);
    pthread_mutex_lock(&t->mu);
    t->rc = rc;
    t->state = 2;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void st_dump_log(const struct server_thread *t)
{
    unsigned long first = t->lines > LOG_LINES ? t->lines - LOG_LINES : 0;
    for (unsigned long i = first; i < t->lines; i++)
        note("server: %s", t->last[i % LOG_LINES]);
}

static void server_start(struct server_thread *t, const char *dir)
{
    memset(t, 0, sizeof *t);
    t->dir = dir;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    atomic_init(&t->stop, 0);
    if (pthread_create(&t->tid, NULL, st_main, t) != 0)
        die("cannot start a thread");
    pthread_mutex_lock(&t->mu);
    while (t->state == 0)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    if (t->state == 2) {
        pthread_join(t->tid, NULL);
        st_dump_log(t);
        die("fv_server_run: %s", fv_strerror(t->rc));
    }
}

static void server_stop(struct server_thread *t)
{
    atomic_store(&t->stop, 1);
    pthread_join(t->tid, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    if (t->rc != FV_OK) {
        st_dump_log(t);
        die("fv_server_run: %s", fv_strerror(t->rc));
    }
}

/* ---- server setup ---------------------------------------------------- */

/* Enrolls a new coordinator with the admin invite and publishes the
 * organisation key, so that field devices seal to it as in real use. */
static void coordinator_setup(const char *admin, const char *addr)
{
    char *cdir = scratch_path("coordinator");
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_vault *c = create_vault(cdir);
    int role = 0;
    so.server = addr;
    fv_check(fv_enroll(c, &role, admin, &so), c, "fv_enroll (admin invite)");
    if (role != FV_ROLE_COORDINATOR)
        die("the admin invite gave role %d, not coordinator", role);
    fv_check(fv_org_init(c, &so), c, "fv_org_init");
    fv_vault_close(c);
    free(cdir);
}



/* How many envelopes, and from how many authors, the server's log holds. */
static void server_log_count(const char *server_dir, int64_t *envelopes,
                             int64_t *authors)
{
    char *path = path_join(server_dir, "server.db");
    sqlite3 *db = open_ro(path);
    *envelopes = query_int(db, "SELECT count(*) FROM log");
    if (authors)
        *authors = query_int(db, "SELECT count(DISTINCT author) FROM log");
    sqlite3_close(db);
    free(path);
}

/* ---- the limit of sync.push ------------------------------------------ */

/* One envelope as the limit handles it: the real bytes, signature, author
 * and signed message, read from the device's vault. */
struct env_item {
    unsigned char id[32];
    unsigned char author[crypto_sign_PUBLICKEYBYTES];
    unsigned char sig[crypto_sign_BYTES];
    unsigned char *env, *tbs;
    size_t env_len, tbs_len;
};

/* The device's own envelopes (what its first sync pushes), in order. */
static struct env_item *load_items(const char *vault_dir, size_t *count,
                                   size_t *env_bytes, size_t *tbs_bytes)
{
    char *path = path_join(vault_dir, "vault.db");
    sqlite3 *db = open_ro(path);
    sqlite3_stmt *st = NULL;
    size_t n = 0, cap = 1024;
    struct env_item *items = xmalloc(cap * sizeof *items);
    int rc;

    *env_bytes = *tbs_bytes = 0;
    if (sqlite3_prepare_v2(db, "SELECT id, bytes FROM envelope WHERE own "
                           "ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        struct env_view ev;
        struct env_item *it;
        if (n == cap) {
            cap *= 2;
            items = realloc(items, cap * sizeof *items);
            if (!items)
                die("out of memory");
        }
        it = &items[n++];
        if (sqlite3_column_bytes(st, 0) != 32)
            die("an envelope id is not 32 bytes");
        memcpy(it->id, sqlite3_column_blob(st, 0), 32);
        it->env = xmalloc(len);
        memcpy(it->env, sqlite3_column_blob(st, 1), len);
        it->env_len = len;
        if (parse_env(&ev, it->env, len))
            die("cannot parse an envelope of the vault (has the format changed?)");
        memcpy(it->author, ev.author, sizeof it->author);
        memcpy(it->sig, ev.sig, sizeof it->sig);
        it->tbs_len = sig_structure(NULL, &ev);
        it->tbs = xmalloc(it->tbs_len);
        sig_structure(it->tbs, &ev);
        *env_bytes += len;
        *tbs_bytes += it->tbs_len;
    }
    if (rc != SQLITE_DONE)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    *count = n;
    return items;
}

static void free_items(struct env_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].env);
        free(items[i].tbs);
    }
    free(items);
}

static void exec_or_die(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die("sqlite: %s: %s", sql, sqlite3_errmsg(db));
}

static void step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        die("sqlite: %s: %s", what, sqlite3_errmsg(db));
    sqlite3_reset(st);
}

/* The server's unavoidable work for the n envelopes, batch by batch, in a
 * fresh database. *t_verify and *t_store receive the two parts' times. */
static void limit_round(const struct env_item *items, size_t n,
                        double *t_verify, double *t_store)
{
    char *dir = scratch_path("limit"), *path;
    sqlite3 *db = NULL;
    sqlite3_stmt *begin = NULL, *ins_env = NULL, *ins_log = NULL,
                 *commit = NULL;
    double tv = 0, ts = 0;

    if (mkdir(dir, 0700) != 0)
        die("cannot make %s: %s", dir, strerror(errno));
    path = path_join(dir, "server.db");
    /* The server store's open flags and durability pragmas. */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                       SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die("cannot create %s", path);
    exec_or_die(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
    exec_or_die(db, "CREATE TABLE env(id BLOB PRIMARY KEY, bytes BLOB NOT NULL);"
                    "CREATE TABLE log(seq INTEGER PRIMARY KEY, id BLOB NOT NULL);");
    if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) ||
        sqlite3_prepare_v2(db, "INSERT INTO env(id, bytes) VALUES (?1, ?2)",
                           -1, &ins_env, NULL) ||
        sqlite3_prepare_v2(db, "INSERT INTO log(seq, id) VALUES (?1, ?2)", -1,
                           &ins_log, NULL) ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL))
        die("sqlite: %s", sqlite3_errmsg(db));

    for (size_t b = 0; b < n; b += BATCH) {
        size_t m = n - b < BATCH ? n - b : BATCH;
        double t0 = now(), t1, t2;
        for (size_t i = b; i < b + m; i++) {
            const struct env_item *it = &items[i];
            unsigned char id[32];
            if (crypto_sign_verify_detached(it->sig, it->tbs, it->tbs_len,
                                            it->author) != 0)
                die("limit: the signature of an envelope does not verify");
            crypto_generichash(id, sizeof id, it->env, it->env_len, NULL, 0);
            if (sodium_memcmp(id, it->id, sizeof id) != 0)
                die("limit: an envelope does not match its id");
        }
        t1 = now();
        step_done(db, begin, "begin");
        for (size_t i = b; i < b + m; i++) {
            const struct env_item *it = &items[i];
            sqlite3_bind_blob(ins_env, 1, it->id, 32, SQLITE_STATIC);
            sqlite3_bind_blob64(ins_env, 2, it->env, it->env_len, SQLITE_STATIC);
            step_done(db, ins_env, "insert");
            sqlite3_bind_int64(ins_log, 1, (sqlite3_int64)(i + 1));
            sqlite3_bind_blob(ins_log, 2, it->id, 32, SQLITE_STATIC);
            step_done(db, ins_log, "insert");
        }
        step_done(db, commit, "commit");
        t2 = now();
        tv += t1 - t0;
        ts += t2 - t1;
    }
    sqlite3_finalize(begin);
    sqlite3_finalize(ins_env);
    sqlite3_finalize(ins_log);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    rm_tree(dir);
    free(dir);
    free(path);
    *t_verify = tv;
    *t_store = ts;
}

/* ---- sync.push, sync.noop.*, sync.one.bytes -------------------------- */

/* A thread's time on a CPU and waiting for one, in seconds so far
 * (/proc/self/task/TID/schedstat; zeros where the kernel does not keep it).
 * The rest of its wall time it was blocked: on the disk, or on its peer. */
static void sched_times(long tid, double *run, double *wait)
{
    char path[64];
    unsigned long long r = 0, w = 0;
    FILE *f;
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    *run = *wait = 0;
    if (!(f = fopen(path, "r")))
        return;
    if (fscanf(f, "%llu %llu", &r, &w) == 2) {
        *run = (double)r * 1e-9;
        *wait = (double)w * 1e-9;
    }
    fclose(f);
}

/* The machine's busy and total CPU seconds so far (/proc/stat), to tell a
 * thread that waits for the disk from one that waits for a CPU. */
static void machine_cpu(double *busy, double *total)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    long hz = sysconf(_SC_CLK_TCK);
    *busy = *total = 0;
    if (!f)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8 && hz > 0) {
        unsigned long long all = 0;
        for (int i = 0; i < 8; i++)
            all += v[i];
        *total = (double)all / (double)hz;
        *busy = (double)(all - v[3] - v[4]) / (double)hz; /* not idle, iowait */
    }
    fclose(f);
}

/* One round of sync.push: a copy of the server and of the device, one
 * fv_sync. Returns its time; the copies stay (the caller removes them). */
static double push_round(const char *server0, const char *device0,
                         const char *server_dir, const char *device_dir,
                         size_t n, const char *proxy)
{
    struct server_thread srv;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    fv_vault *v;
    double t0, t, busy0, busy1, all0, all1;
    double srun0, srun1, swait0, swait1, crun0, crun1, cwait0, cwait1;
    int64_t logged;

    copy_tree(server0, server_dir);
    copy_tree(device0, device_dir);
    server_start(&srv, server_dir);
    v = open_vault(device_dir);
    machine_cpu(&busy0, &all0);
    sched_times(srv.tid_linux, &srun0, &swait0);
    sched_times(my_tid(), &crun0, &cwait0);
    t0 = now();
    res = sync_via(v, srv.addr, proxy, "fv_sync (push)");
    t = now() - t0;
    sched_times(srv.tid_linux, &srun1, &swait1);
    sched_times(my_tid(), &crun1, &cwait1);
    machine_cpu(&busy1, &all1);
    fv_vault_close(v);
    server_stop(&srv);
    if (res.pushed != n || res.pulled != 0)
        die("sync.push: fv_sync pushed %llu and pulled %llu envelopes; "
            "expected %zu and 0", (unsigned long long)res.pushed,
            (unsigned long long)res.pulled, n);
    server_log_count(server_dir, &logged, NULL);
    if (logged != (int64_t)n)
        die("sync.push: the server's log holds %lld envelopes, expected %zu",
            (long long)logged, n);
    note("sync.push%s: fv_sync %.2f s (%.0f envelopes/s), %llu bytes sent, "
         "%llu received, %u round trips", proxy ? ".socks5" : "", t, (double)n / t,
         (unsigned long long)res.bytes_sent,
         (unsigned long long)res.bytes_received, res.roundtrips);
    note("sync.push: during fv_sync, the server thread ran %.2f s (%.1f "
         "us/envelope), waited for a CPU %.2f s, was blocked %.2f s; the "
         "device ran %.2f s, waited %.2f s, was blocked %.2f s; the machine "
         "(every process) was busy %.2f of %.2f CPU-seconds", srun1 - srun0,
         1e6 * (srun1 - srun0) / (double)n, swait1 - swait0,
         t - (srun1 - srun0) - (swait1 - swait0), crun1 - crun0,
         cwait1 - cwait0, t - (crun1 - crun0) - (cwait1 - cwait0),
         busy1 - busy0, all1 - all0);
    return t;
}

/* One round of sync.push.socks5: push_round through the SOCKS5 proxy at
 * `url`, on copies of its own (removed after). Returns the lesser of its
 * time and `best` (< 0: none yet). */
static double socks_round(const char *server0, const char *device0, size_t n,
                          const char *url, double best)
{
    char *sdir = scratch_path("server-socks"), *ddir = scratch_path("device-socks");
    double t = push_round(server0, device0, sdir, ddir, n, url);
    rm_tree(sdir);
    rm_tree(ddir);
    free(sdir);
    free(ddir);
    return best < 0 || t < best ? t : best;
}

/* Syncs with nothing new (three: they must agree) and reports the first. */
static void noop_measure(fv_vault *v, const char *addr, const char *suffix)
{
    char name[64];
    fv_sync_result r[3];
    double t[3];
    uint64_t bytes;
    for (int i = 0; i < 3; i++) {
        double t0 = now();
        r[i] = sync_or_die(v, addr, "fv_sync (nothing new)");
        t[i] = now() - t0;
        if (r[i].pushed || r[i].pulled)
            die("sync.noop%s: a sync with nothing new moved envelopes", suffix);
        if (i > 0 && (r[i].bytes_sent != r[0].bytes_sent ||
                      r[i].bytes_received != r[0].bytes_received ||
                      r[i].roundtrips != r[0].roundtrips))
            note("sync.noop%s: syncs with nothing new differ: %llu+%llu "
                 "bytes, %u round trips, then %llu+%llu, %u", suffix,
                 (unsigned long long)r[0].bytes_sent,
                 (unsigned long long)r[0].bytes_received, r[0].roundtrips,
                 (unsigned long long)r[i].bytes_sent,
                 (unsigned long long)r[i].bytes_received, r[i].roundtrips);
    }
    bytes = r[0].bytes_sent + r[0].bytes_received;
    note("sync.noop%s: %llu bytes sent, %llu received, %u round trips; "
         "fv_sync took %.1f, %.1f, %.1f ms", suffix,
         (unsigned long long)r[0].bytes_sent,
         (unsigned long long)r[0].bytes_received, r[0].roundtrips, 1e3 * t[0],
         1e3 * t[1], 1e3 * t[2]);
    snprintf(name, sizeof name, "sync.noop.bytes%s", suffix);
    if (wanted(name))
        report(name, (double)bytes, "bytes", 0, 0);
    snprintf(name, sizeof name, "sync.noop.roundtrips%s", suffix);
    if (wanted(name))
        report(name, (double)r[0].roundtrips, "roundtrips", 0, 0);
}

static void bench_push(void)
{
    int want_push = wanted("sync.push");
    int want_socks = wanted("sync.push.socks5");
    int want_big = want_push || want_socks || wanted("sync.noop.bytes") ||
                   wanted("sync.noop.roundtrips") || wanted("sync.one.bytes");
    /* A prefix such as "sync.noop.bytes" selects the .1k figure too. */
    int want_small = wanted("sync.noop.bytes.1k") ||
                     wanted("sync.noop.roundtrips.1k");
    size_t n = opt.records, count = 0, env_bytes, tbs_bytes;
    int rounds = want_push || want_socks ? opt.rounds : 1;
    char socks_url[64];
    pid_t socks = want_socks ? socks_start(opt.socks, socks_url, sizeof socks_url) : 0;
    double td_min = -1, ts_min = -1;
    char *server0 = scratch_path("server"), *admin;
    char *device0 = scratch_path("device");
    char *server_dir = NULL, *device_dir = NULL;
    struct server_thread srv;
    struct env_item *items = NULL;
    fv_vault *v;
    fv_sync_result a = FV_SYNC_RESULT_INIT;
    double t0, tp = 0, tv = 0, ts = -1;

    /* The starting point: a server with a coordinator, the organisation key
     * and an enrolled field device. */
    admin = server_create(server0);
    server_start(&srv, server0);
    coordinator_setup(admin, srv.addr);
    free(admin);
    v = field_device(server0, srv.addr, device0, "field 1");
    if (!want_big) {
        fv_vault_close(v);
        server_dir = server0;
        goto small;
    }
    server_stop(&srv);

    note("sync.push: adding %zu records to the device's vault", n);
    t0 = now();
    add_records(v, 1, 0, n);
    fv_vault_close(v);
    note("sync.push: added in %.1f s", now() - t0);
    if (want_push) {
        items = load_items(device0, &count, &env_bytes, &tbs_bytes);
        if (count != n)
            die("the device's vault holds %zu own envelopes, expected %zu",
                count, n);
        note("sync.push: %zu envelopes of %.0f bytes on average (signed "
             "part %.0f); %d rounds", n, (double)env_bytes / (double)n,
             (double)tbs_bytes / (double)n, rounds);
    }

    for (int r = 0; r < rounds; r++) {
        double t_sync, t_v = 0, t_s = 0;
        if (server_dir) {
            rm_tree(server_dir);
            rm_tree(device_dir);
            free(server_dir);
            free(device_dir);
        }
        server_dir = scratch_path("server");
        device_dir = scratch_path("device");
        if (want_push && r % 2 == 1)
            limit_round(items, n, &t_v, &t_s);
        if (want_socks && r % 2 == 1)
            ts_min = socks_round(server0, device0, n, socks_url, ts_min);
        t_sync = push_round(server0, device0, server_dir, device_dir, n, NULL);
        if (want_socks && r % 2 == 0)
            ts_min = socks_round(server0, device0, n, socks_url, ts_min);
        if (want_push && r % 2 == 0)
            limit_round(items, n, &t_v, &t_s);
        if (td_min < 0 || t_sync < td_min)
            td_min = t_sync;
        if (want_push) {
            note("sync.push round %d: sync %.1f us/envelope; limit %.1f "
                 "(verify %.1f + sqlite %.1f)", r + 1, 1e6 * t_sync / (double)n,
                 1e6 * (t_v + t_s) / (double)n, 1e6 * t_v / (double)n,
                 1e6 * t_s / (double)n);
            if (ts < 0 || t_v + t_s < tv + ts) {
                tp = t_sync;
                tv = t_v;
                ts = t_s;
            }
        }
    }
    if (want_push)
        report("sync.push", (double)n / tp, "envelopes/s",
               (double)n / (tv + ts), 1);
    if (want_socks) {
        socks_stop(socks);
        report("sync.push.socks5", (double)n / ts_min, "envelopes/s",
               (double)n / td_min, 1);
    }
    free_items(items, count);

    /* N envelopes on both sides: the device of the last round. */
    server_start(&srv, server_dir);
    v = open_vault(device_dir);
    noop_measure(v, srv.addr, "");
    if (wanted("sync.one.bytes")) {
        add_records(v, 1, n, 1);
        t0 = now();
        a = sync_or_die(v, srv.addr, "fv_sync (one record)");
        t0 = now() - t0;
        if (a.pushed != 1 || a.pulled != 0)
            die("sync.one.bytes: fv_sync pushed %llu envelopes, pulled %llu",
                (unsigned long long)a.pushed, (unsigned long long)a.pulled);
        note("sync.one: %llu bytes sent, %llu received, %u round trips; "
             "fv_sync took %.1f ms", (unsigned long long)a.bytes_sent,
             (unsigned long long)a.bytes_received, a.roundtrips, 1e3 * t0);
        report("sync.one.bytes", (double)(a.bytes_sent + a.bytes_received),
               "bytes", 0, 0);
    }
    fv_vault_close(v);

small:
    if (want_small) {
        char *dir = scratch_path("device-1k");
        v = field_device(server_dir, srv.addr, dir, "field 2");
        add_records(v, 2, 0, SMALL_RECORDS);
        a = sync_or_die(v, srv.addr, "fv_sync (1k records)");
        if (a.pushed != SMALL_RECORDS)
            die("sync.noop.*.1k: the first sync pushed %llu envelopes",
                (unsigned long long)a.pushed);
        noop_measure(v, srv.addr, ".1k");
        fv_vault_close(v);
        rm_tree(dir);
        free(dir);
    }
    server_stop(&srv);
    rm_tree(server0);
    rm_tree(device0);
    if (server_dir != server0) {
        rm_tree(server_dir);
        free(server_dir);
    }
    if (device_dir) {
        rm_tree(device_dir);
        free(device_dir);
    }
    free(server0);
    free(device0);
}

/* ---- sync.push.cores, server.small.latency --------------------------- */

struct pusher {
    fv_vault *v;
    const char *addr;
    pthread_barrier_t *go;
    pthread_t tid;
    int rc;
    fv_sync_result res;
    double end;
    double cpu; /* the thread's CPU seconds (run time) for its fv_sync */
    char msg[200];
};

static void *pusher_main(void *arg)
{
    struct pusher *d = arg;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    double run0, run1, wait;
    so.server = d->addr;
    if (d->go)
        pthread_barrier_wait(d->go);
    sched_times(my_tid(), &run0, &wait);
    d->res = (fv_sync_result)FV_SYNC_RESULT_INIT;
    d->rc = fv_sync(d->v, &d->res, &so);
    d->end = now();
    sched_times(my_tid(), &run1, &wait);
    d->cpu = run1 - run0;
    if (d->rc != FV_OK)
        snprintf(d->msg, sizeof d->msg, "%s", fv_vault_errmsg(d->v));
    return NULL;
}

static void pusher_check(const struct pusher *d, size_t n, const char *what)
{
    if (d->rc != FV_OK)
        die("%s: fv_sync: %s (%s)", what, fv_strerror(d->rc), d->msg);
    if (d->res.pushed != n)
        die("%s: fv_sync pushed %llu envelopes, expected %zu", what,
            (unsigned long long)d->res.pushed, n);
}

/* One round of sync.push.cores on copies of the server and both devices.
 * Returns the wall time of the two pushes at once. */
static double cores_round(const char *server0, char *const dev0[2], size_t n)
{
    char *sdir = scratch_path("server-cores"), *ddir[2];
    struct server_thread srv;
    struct pusher d[2];
    pthread_barrier_t go;
    double t0, t, busy0, busy1, all0, all1, self0, self1;
    int64_t logged, authors;

    copy_tree(server0, sdir);
    server_start(&srv, sdir);
    memset(d, 0, sizeof d);
    if (pthread_barrier_init(&go, NULL, 3) != 0)
        die("cannot make a barrier");
    for (int i = 0; i < 2; i++) {
        ddir[i] = scratch_path("device-cores");
        copy_tree(dev0[i], ddir[i]);
        d[i].v = open_vault(ddir[i]);
        d[i].addr = srv.addr;
        d[i].go = &go;
        if (pthread_create(&d[i].tid, NULL, pusher_main, &d[i]) != 0)
            die("cannot start a thread");
    }
    machine_cpu(&busy0, &all0);
    self0 = self_cpu();
    pthread_barrier_wait(&go);
    t0 = now();
    for (int i = 0; i < 2; i++)
        pthread_join(d[i].tid, NULL);
    t = now() - t0;
    self1 = self_cpu();
    machine_cpu(&busy1, &all1);
    pthread_barrier_destroy(&go);
    server_stop(&srv);
    for (int i = 0; i < 2; i++) {
        pusher_check(&d[i], n, "sync.push.cores");
        fv_vault_close(d[i].v);
        rm_tree(ddir[i]);
        free(ddir[i]);
    }
    server_log_count(sdir, &logged, &authors);
    if (logged != (int64_t)(2 * n) || authors != 2)
        die("sync.push.cores: the server's log holds %lld envelopes from "
            "%lld devices, expected %zu from 2", (long long)logged,
            (long long)authors, 2 * n);
    note("sync.push.cores: two pushes of %zu envelopes at once in %.2f s "
         "(%.0f envelopes/s; the devices finished %.2f s apart); the "
         "machine (every process) was busy %.2f of %.2f CPU-seconds", n, t,
         2.0 * (double)n / t, d[0].end > d[1].end ? d[0].end - d[1].end
                                                  : d[1].end - d[0].end,
         busy1 - busy0, all1 - all0);
    /* This process is the two devices and the server (its loop and its
     * signature threads); this thread only waits. */
    note("sync.push.cores: CPU-seconds: the server %.2f (%.1f us/envelope), "
         "the two devices %.2f (%.1f us/envelope)",
         self1 - self0 - d[0].cpu - d[1].cpu,
         1e6 * (self1 - self0 - d[0].cpu - d[1].cpu) / (double)(2 * n),
         d[0].cpu + d[1].cpu, 1e6 * (d[0].cpu + d[1].cpu) / (double)(2 * n));
    rm_tree(sdir);
    free(sdir);
    return t;
}

static int cmp_double(const void *a, const void *b);

/* One-record syncs of `v`, one after another, until `stop` says so (or
 * `max` were made); each one's wall time in lat[]. Returns how many. */
static size_t small_syncs(fv_vault *v, const char *addr, size_t *next,
                          double *lat, size_t max, const struct pusher *big)
{
    size_t k = 0;
    while (k < max && (!big || big->end == 0)) {
        fv_sync_result r = FV_SYNC_RESULT_INIT;
        double t0;
        add_records(v, 3, (*next)++, 1);
        t0 = now();
        r = sync_or_die(v, addr, "fv_sync (one record)");
        lat[k++] = 1e3 * (now() - t0);
        if (r.pushed != 1)
            die("server.small.latency: a one-record sync pushed %llu",
                (unsigned long long)r.pushed);
    }
    return k;
}

static double percentile(double *v, size_t n, double p)
{
    size_t i;
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void bench_cores(void)
{
    int want_cores = wanted("sync.push.cores");
    int want_lat = wanted("server.small.latency");
    size_t n = opt.records, count = 0, env_bytes, tbs_bytes, next = 0;
    char *server0 = scratch_path("server"), *admin, *dev0[3];
    struct server_thread srv;
    struct env_item *items = NULL;
    fv_vault *v[3];
    double best = -1, tv = 0, ts = -1;

    admin = server_create(server0);
    server_start(&srv, server0);
    coordinator_setup(admin, srv.addr);
    free(admin);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "field %d", i + 1);
        dev0[i] = scratch_path("device");
        v[i] = field_device(server0, srv.addr, dev0[i], name);
    }
    server_stop(&srv);
    note("sync.push.cores: adding %zu records to each of two vaults", n);
    for (int i = 0; i < 2; i++) {
        add_records(v[i], (unsigned)(i + 1), 0, n);
        fv_vault_close(v[i]);
    }
    fv_vault_close(v[2]);

    if (want_cores) {
        items = load_items(dev0[0], &count, &env_bytes, &tbs_bytes);
        if (count != n)
            die("the device's vault holds %zu own envelopes, expected %zu",
                count, n);
        for (int r = 0; r < opt.rounds; r++) {
            double t, t_v = 0, t_s = 0;
            if (r % 2 == 1)
                limit_round(items, n, &t_v, &t_s);
            t = cores_round(server0, dev0, n);
            if (r % 2 == 0)
                limit_round(items, n, &t_v, &t_s);
            note("sync.push.cores round %d: %.1f us/envelope for the two "
                 "devices; single-core limit %.1f (verify %.1f + sqlite "
                 "%.1f)", r + 1, 1e6 * t / (double)(2 * n),
                 1e6 * (t_v + t_s) / (double)n, 1e6 * t_v / (double)n,
                 1e6 * t_s / (double)n);
            /* As sync.push: the round whose limit took least time. */
            if (ts < 0 || t_v + t_s < tv + ts) {
                best = t;
                tv = t_v;
                ts = t_s;
            }
        }
        free_items(items, count);
        report("sync.push.cores", 2.0 * (double)n / best, "envelopes/s",
               (double)n / (tv + ts), 2);
    }

    if (want_lat) {
        char *sdir = scratch_path("server-lat"), *ddir[2];
        size_t max = 100000, k, kidle;
        double *lat = xmalloc(max * sizeof *lat), idle50, idle99, p50, p99,
               t0;
        struct pusher big;

        copy_tree(server0, sdir);
        for (int i = 0; i < 2; i++) {
            ddir[i] = scratch_path("device-lat");
            copy_tree(dev0[i == 0 ? 0 : 2], ddir[i]);
        }
        server_start(&srv, sdir);
        v[2] = open_vault(ddir[1]);
        kidle = small_syncs(v[2], srv.addr, &next, lat, LATENCY_IDLE, NULL);
        idle50 = percentile(lat, kidle, 0.5);
        idle99 = percentile(lat, kidle, 0.99);
        memset(&big, 0, sizeof big);
        big.v = open_vault(ddir[0]);
        big.addr = srv.addr;
        t0 = now();
        if (pthread_create(&big.tid, NULL, pusher_main, &big) != 0)
            die("cannot start a thread");
        k = small_syncs(v[2], srv.addr, &next, lat, max, &big);
        pthread_join(big.tid, NULL);
        pusher_check(&big, n, "server.small.latency");
        p50 = percentile(lat, k, 0.5);
        p99 = percentile(lat, k, 0.99);
        note("server.small.latency: %zu one-record syncs during a push of "
             "%zu envelopes (%.2f s): median %.1f ms, p99 %.1f ms, slowest "
             "%.1f ms; with the server idle (%zu syncs): median %.1f ms, p99 "
             "%.1f ms", k, n, big.end - t0, p50, p99, k ? lat[k - 1] : 0.0,
             kidle, idle50, idle99);
        if (k < 10)
            note("server.small.latency: only %zu syncs ran during the push: "
                 "the percentile is their slowest", k);
        fv_vault_close(big.v);
        fv_vault_close(v[2]);
        server_stop(&srv);
        report("server.small.latency", p99, "ms", 0, 1);
        for (int i = 0; i < 2; i++) {
            rm_tree(ddir[i]);
            free(ddir[i]);
        }
        rm_tree(sdir);
        free(sdir);
        free(lat);
    }
    for (int i = 0; i < 3; i++) {
        rm_tree(dev0[i]);
        free(dev0[i]);
    }
    rm_tree(server0);
    free(server0);
}

/* ---- sync.load ------------------------------------------------------- */

/* Raises this process's descriptor limit (which `serve`, started from it,
 * inherits) to `want`: the hard limit too where the process may
 * (CAP_SYS_RESOURCE), else up to the hard limit. */
static void raise_nofile(size_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit up = {want, rl.rlim_max == RLIM_INFINITY ||
                                          rl.rlim_max > want
                                      ? rl.rlim_max
                                      : want};
        if (setrlimit(RLIMIT_NOFILE, &up) != 0) {
            rl.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                note("cannot raise the descriptor limit: %s",
                     strerror(errno));
        }
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < want)
        note("the descriptor limit is %llu; %zu devices may want %zu",
             (unsigned long long)rl.rlim_cur, opt.devices, want);
}

/* The kernel settings the load meets, read (never changed) and said
 * before and after it: the listen queue's cap, the SYN queue, the SYN
 * retries of a connect. */
static void note_sysctls(const char *when)
{
    static const char *const names[] = {"net/core/somaxconn",
                                        "net/ipv4/tcp_max_syn_backlog",
                                        "net/ipv4/tcp_syn_retries",
                                        "net/ipv4/tcp_abort_on_overflow"};
    char line[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[64], v[32] = "?";
        FILE *f;
        snprintf(path, sizeof path, "/proc/sys/%s", names[i]);
        if ((f = fopen(path, "r")) != NULL) {
            if (!fgets(v, sizeof v, f))
                snprintf(v, sizeof v, "?");
            fclose(f);
        }
        v[strcspn(v, "\n")] = '\0';
        len += (size_t)snprintf(line + len, sizeof line - len, " %s %s",
                                strrchr(names[i], '/') + 1, v);
        if (len >= sizeof line)
            break;
    }
    note("sync.load: kernel %s:%s", when, line);
}

/* What serve's log says of the load: connections refused beyond the
 * caps (summed from "refused N connections"), closed to make room, closed
 * at the handshake deadline, bursts out of descriptors. */
static void note_serve_log(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[512];
    unsigned long refused = 0, evicted = 0, hs_deadline = 0, fds = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        const char *p;
        if ((p = strstr(line, "refused ")) != NULL &&
            strstr(line, " connections (limits"))
            refused += strtoul(p + 8, NULL, 10);
        if ((p = strstr(line, "closed ")) != NULL &&
            strstr(line, "to make room"))
            evicted += strtoul(p + 7, NULL, 10);
        hs_deadline += strstr(line, "(handshake deadline)") != NULL;
        fds += strstr(line, "too many open files") != NULL;
    }
    fclose(f);
    note("sync.load: serve's log: %lu connections refused beyond the caps "
         "(each device tries again), %lu closed before HELLO to make room, "
         "%lu at the handshake deadline, %lu bursts out of descriptors",
         refused, evicted, hs_deadline, fds);
}

/* What a device's sync came to, in memory the worker processes share
 * with this one. */
struct load_result {
    int rc;
    uint64_t pushed;
    double start, end;
    char msg[200];
};

struct load_shared {
    atomic_size_t ready; /* worker processes with every thread waiting */
    atomic_int go;       /* set once: the devices start */
    struct load_result r[];
};

struct device {
    fv_vault *v;
    const char *addr;
    pthread_barrier_t *go; /* of its worker process */
    pthread_t tid;
    struct load_result *out;
};

static void *device_main(void *arg)
{
    struct device *d = arg;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    so.server = d->addr;
    /* Thousands of handshakes queue at one server: a device waits its
     * turn (a stall, not a failure) instead of giving up after 30 s. */
    so.timeout_ms = LOAD_TIMEOUT_MS;
    pthread_barrier_wait(d->go);
    d->out->start = now();
    d->out->rc = fv_sync(d->v, &res, &so);
    d->out->end = now();
    d->out->pushed = res.pushed;
    if (d->out->rc != FV_OK)
        snprintf(d->out->msg, sizeof d->out->msg, "%s",
                 fv_vault_errmsg(d->v));
    return NULL;
}

/* A worker process: devices [from, to) open their vaults, start a thread
 * each (256 KiB stacks: ten thousand threads of the default 8 MiB would
 * reserve 80 GB of address space), wait together until the parent says
 * go, sync, and leave their results in `sh`. Each worker has a descriptor
 * limit of its own: a vault holds three (database, WAL, shm), a sync a
 * socket and the vault's lock. */
static void load_worker(struct load_shared *sh, char **dirs, size_t from,
                        size_t to, const char *addr)
{
    size_t n = to - from;
    struct device *d = calloc(n, sizeof *d);
    pthread_barrier_t go;
    pthread_attr_t attr;

    if (!d || pthread_barrier_init(&go, NULL, (unsigned)n + 1) != 0 ||
        pthread_attr_init(&attr) != 0 ||
        pthread_attr_setstacksize(&attr, LOAD_STACK) != 0)
        die("cannot set up a worker's devices");
    for (size_t k = 0; k < n; k++) {
        d[k].v = open_vault(dirs[from + k]);
        d[k].addr = addr;
        d[k].go = &go;
        d[k].out = &sh->r[from + k];
        if (pthread_create(&d[k].tid, &attr, device_main, &d[k]) != 0)
            die("cannot start device thread %zu", from + k);
    }
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go))
        usleep(200);
    pthread_barrier_wait(&go);
    for (size_t k = 0; k < n; k++)
        pthread_join(d[k].tid, NULL);
    for (size_t k = 0; k < n; k++)
        fv_vault_close(d[k].v);
    _exit(0);
}

/* The devices are made by a few threads at once (each: an invite, a
 * vault, an enrollment over TLS, the records; the vault closed again),
 * taking the next index. */
struct prep {
    char **dirs;
    size_t m, next;
    const char *server_dir, *addr;
    pthread_mutex_t lock;
};

static void *prep_main(void *arg)
{
    struct prep *p = arg;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    so.server = p->addr;
    so.timeout_ms = LOAD_TIMEOUT_MS;
    for (;;) {
        char name[32], *invite = NULL;
        fv_vault *v;
        size_t i;
        int rc, role = 0;
        pthread_mutex_lock(&p->lock);
        i = p->next++;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->m)
            return NULL;
        snprintf(name, sizeof name, "device %zu", i);
        /* One invite at a time: each opens the server's store beside the
         * running server, and several at once would contend for its
         * write lock. */
        pthread_mutex_lock(&p->lock);
        rc = fv_server_invite(p->server_dir, name, FV_ROLE_FIELD, INVITE_TTL,
                              &invite);
        pthread_mutex_unlock(&p->lock);
        if (rc != FV_OK)
            die("fv_server_invite: %s", fv_strerror(rc));
        v = create_vault(p->dirs[i]);
        fv_check(fv_enroll(v, &role, invite, &so), v, "fv_enroll");
        free(invite);
        if (role != FV_ROLE_FIELD)
            die("a field invite gave role %d", role);
        add_records(v, (unsigned)(100 + i), 0, LOAD_RECORDS);
        fv_vault_close(v);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_load(void)
{
    size_t m = opt.devices, ok = 0, failed_shown = 0;
    size_t nproc = (m + LOAD_PER_PROC - 1) / LOAD_PER_PROC;
    size_t shared_bytes = sizeof(struct load_shared) +
                          m * sizeof(struct load_result);
    char *server_dir = scratch_path("load-server");
    char *log = scratch_path("serve.log");
    char *admin, addr[64];
    char **dirs = calloc(m, sizeof *dirs);
    double *lat = calloc(m, sizeof *lat);
    pid_t *workers = calloc(nproc, sizeof *workers);
    struct load_shared *sh;
    char maxconn[24], memmib[24];
    const char *const serve_args[] = {"--max-connections", maxconn,
                                      "--max-per-address", maxconn,
                                      "--memory-mib", memmib, NULL};
    struct prep prep = {0};
    pthread_t prep_tid[LOAD_PREP_THREADS];
    struct rusage ru;
    pid_t pid;
    long rss_before, hwm, maxrss;
    int64_t logged, authors;
    double t0, t, srv0, srv1, dev1, busy0, busy1, all0, all1;

    if (!dirs || !lat || !workers)
        die("out of memory");
    sh = mmap(NULL, shared_bytes, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("cannot map the shared results: %s", strerror(errno));
    atomic_init(&sh->ready, 0);
    atomic_init(&sh->go, 0);
    /* The server's side of every socket, and its store. */
    raise_nofile(m + 256);
    /* Every simulated device comes from 127.0.0.1 at the same moment:
     * serve's per-address and pre-authentication shares (a quarter of
     * --max-connections, half of that per address) must hold them all,
     * and the buffers of all of them (README, "Server resources"). */
    snprintf(maxconn, sizeof maxconn, "%zu",
             8 * m + 64 < 65536 ? 8 * m + 64 : 65536);
    snprintf(memmib, sizeof memmib, "%zu",
             m / 4 + 64 < 65536 ? m / 4 + 64 : 65536);
    admin = server_create(server_dir);
    pid = serve_start_with(server_dir, log, addr, sizeof addr, serve_args);
    note("sync.load: %s serve (pid %ld) listening on %s", opt.fieldvault,
         (long)pid, addr);
    coordinator_setup(admin, addr);
    free(admin);

    note("sync.load: preparing %zu devices of %d records", m, LOAD_RECORDS);
    t0 = now();
    for (size_t i = 0; i < m; i++)
        dirs[i] = scratch_path("load-device");
    prep.dirs = dirs;
    prep.m = m;
    prep.server_dir = server_dir;
    prep.addr = addr;
    if (pthread_mutex_init(&prep.lock, NULL) != 0)
        die("cannot make a mutex");
    for (int k = 0; k < LOAD_PREP_THREADS; k++)
        if (pthread_create(&prep_tid[k], NULL, prep_main, &prep) != 0)
            die("cannot start a preparing thread");
    for (int k = 0; k < LOAD_PREP_THREADS; k++)
        pthread_join(prep_tid[k], NULL);
    pthread_mutex_destroy(&prep.lock);
    note("sync.load: prepared in %.1f s; %zu worker processes of at most "
         "%d devices", now() - t0, nproc, LOAD_PER_PROC);
    rss_before = status_kib(pid, "VmRSS");
    note_sysctls("before the load");

    for (size_t w = 0; w < nproc; w++) {
        size_t from = w * m / nproc, to = (w + 1) * m / nproc;
        workers[w] = fork();
        if (workers[w] < 0)
            die("fork: %s", strerror(errno));
        if (workers[w] == 0)
            load_worker(sh, dirs, from, to, addr);
    }
    /* Every worker's threads wait at their barrier: then all go at once. */
    while (atomic_load(&sh->ready) < nproc) {
        int status;
        for (size_t w = 0; w < nproc; w++)
            if (workers[w] && waitpid(workers[w], &status, WNOHANG) ==
                                  workers[w])
                die("sync.load: worker %zu ended before the load", w);
        usleep(10000);
    }
    machine_cpu(&busy0, &all0);
    srv0 = proc_cpu(pid);
    t0 = now();
    atomic_store(&sh->go, 1);
    for (size_t w = 0; w < nproc; w++) {
        int status;
        if (waitpid(workers[w], &status, 0) != workers[w] ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("sync.load: worker %zu failed", w);
    }
    t = now() - t0;
    srv1 = proc_cpu(pid);
    machine_cpu(&busy1, &all1);
    /* The workers, all reaped (serve still runs: not counted). */
    getrusage(RUSAGE_CHILDREN, &ru);
    dev1 = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

    hwm = status_kib(pid, "VmHWM");
    note_sysctls("after it");
    serve_stop(pid, log, &maxrss);
    note_serve_log(log);
    server_log_count(server_dir, &logged, &authors);

    for (size_t i = 0; i < m; i++) {
        struct load_result *d = &sh->r[i];
        lat[i] = d->end - d->start;
        if (d->rc == FV_OK && d->pushed == LOAD_RECORDS) {
            ok++;
        } else if (failed_shown++ < 10) {
            if (d->rc == FV_OK)
                note("sync.load: device %zu pushed %llu envelopes, not %d", i,
                     (unsigned long long)d->pushed, LOAD_RECORDS);
            else
                note("sync.load: device %zu failed after %.2f s: %s (%s)", i,
                     lat[i], fv_strerror(d->rc), d->msg);
        }
    }
    qsort(lat, m, sizeof *lat, cmp_double);
    note("sync.load: %zu of %zu devices synced in %.2f s; per device: "
         "fastest %.2f s, median %.2f s, slowest %.2f s", ok, m, t, lat[0],
         lat[m / 2], lat[m - 1]);
    note("sync.load: during the load the server process used %.2f "
         "CPU-seconds (%.1f ms per device), the devices (the worker "
         "processes, opening their vaults included) %.2f; the machine "
         "(every process) was busy %.2f of %.2f",
         srv1 - srv0, 1e3 * (srv1 - srv0) / (double)m, dev1, busy1 - busy0,
         all1 - all0);
    note("sync.load: server resident set %ld KiB before the load; peak %ld "
         "KiB after it (VmHWM), %ld KiB over its whole life with the "
         "shutdown (getrusage)", rss_before, hwm, maxrss);
    note("sync.load: the server's log holds %lld envelopes from %lld devices",
         (long long)logged, (long long)authors);

    if (wanted("sync.load.ok"))
        report("sync.load.ok", (double)ok, "devices", 0, 0);
    if (ok != m)
        die("sync.load: %zu of %zu devices failed to sync", m - ok, m);
    if (logged != (int64_t)(m * LOAD_RECORDS) || authors != (int64_t)m)
        die("sync.load: the server's log holds %lld envelopes from %lld "
            "devices; expected %zu from %zu", (long long)logged,
            (long long)authors, m * LOAD_RECORDS, m);
    if (wanted("sync.load.seconds"))
        report("sync.load.seconds", t, "s", 0, 2);
    if (wanted("sync.load.server_rss"))
        report("sync.load.server_rss", (double)(hwm > 0 ? hwm : maxrss),
               "KiB", 0, 0);

    for (size_t i = 0; i < m; i++) {
        rm_tree(dirs[i]);
        free(dirs[i]);
    }
    munmap(sh, shared_bytes);
    rm_tree(server_dir);
    unlink(log);
    free(server_dir);
    free(log);
    free(workers);
    free(dirs);
    free(lat);
}

/* ---- main ----------------------------------------------------------- */

static const char usage[] =
    "usage: bench_sync [--quick] [--dir DIR] [--rounds N] [--records N]\n"
    "                  [--devices N] [--fieldvault PATH] [--verify-threads N]\n"
    "                  [--socks dante|microsocks] [NAME...]\n"
    "Runs the measurements whose names start with a NAME (sync.push,\n"
    "sync.push.socks5, sync.push.cores, server.small.latency, sync.noop.bytes, sync.noop.roundtrips, sync.noop.bytes.1k,\n"
    "sync.noop.roundtrips.1k, sync.one.bytes, sync.load.seconds, sync.load.ok,\n"
    "sync.load.server_rss; none: all) and prints one JSON line per\n"
    "measurement. --records: sync.push's records (100000; --quick 10000);\n"
    "--devices: sync.load's devices (10000; --quick 50); --fieldvault: the CLI\n"
    "that sync.load runs as `serve` (default: fieldvault next to this\n"
    "program); --verify-threads: the in-process servers' signature\n"
    "threads (default: one per CPU; 0: none); --socks: the SOCKS5 server of\n"
    "sync.push.socks5 (dante). Scratch files go in a new\n"
    "directory under DIR (default $TMPDIR or /tmp) and are removed\n"
    "afterwards.\n";


int main(int argc, char **argv)
{
    static const char *const known[] = {
        "sync.push", "sync.push.socks5", "sync.push.cores",
        "server.small.latency", "sync.noop.bytes", "sync.noop.roundtrips",
        "sync.noop.bytes.1k", "sync.noop.roundtrips.1k", "sync.one.bytes",
        "sync.load.seconds", "sync.load.ok", "sync.load.server_rss"};
    size_t records = 0, devices = 0, rounds = 3;
    const char *threads = NULL;
    const struct bench_flag flags[] = {{.name = "--rounds", .count = &rounds},
                                       {.name = "--records", .count = &records},
                                       {.name = "--devices", .count = &devices},
                                       {.name = "--verify-threads", .text = &threads},
                                       {.name = "--socks", .text = &opt.socks},
                                       {.name = NULL}};
    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_sync", usage,
                                            known, sizeof known / sizeof known[0],
                                            flags);
    struct sigaction sa;

    opt.quick = cl.quick;
    opt.base = cl.dir;
    opt.fieldvault = bench_fieldvault;
    opt.rounds = (int)rounds;
    opt.verify_threads = FV_SERVER_VERIFY_AUTO;
    if (!opt.socks)
        opt.socks = "dante";
    if (strcmp(opt.socks, "dante") && strcmp(opt.socks, "microsocks")) {
        fprintf(stderr, "bench_sync: --socks: " SOCKS_KINDS "\n%s", usage);
        return 2;
    }
    if (threads)
        opt.verify_threads =
            strcmp(threads, "0") ? (int)parse_count(threads, "--verify-threads") : 0;
    opt.records = records ? records : opt.quick ? 10000 : 100000;
    opt.devices = devices ? devices : opt.quick ? 50 : 10000;

    /* A peer that closes first must not end the benchmark. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (sodium_init() < 0)
        die("libsodium failed to start");
    make_scratch(opt.base);
    note("FieldVault %s, SQLite %s, libsodium %s; scratch %s", fv_version(),
         sqlite3_libversion(), sodium_version_string(), scratch);

    if (wanted("sync.push") || wanted("sync.push.socks5") ||
        wanted("sync.noop.bytes") ||
        wanted("sync.noop.roundtrips") || wanted("sync.noop.bytes.1k") ||
        wanted("sync.noop.roundtrips.1k") || wanted("sync.one.bytes"))
        bench_push();
    if (wanted("sync.push.cores") || wanted("server.small.latency"))
        bench_cores();
    if (wanted("sync.load.seconds") || wanted("sync.load.ok") ||
        wanted("sync.load.server_rss"))
        bench_load();
    return 0;
}
