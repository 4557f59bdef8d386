/*
 * bench_attach.c - FieldVault's attachment sync benchmarks (run them with
 * scripts/bench).
 *
 *   bench_attach [--quick] [--dir DIR] [--rounds N] [--size MIB] [--verify]
 *                [--fieldvault PATH] [--socks dante|microsocks] [NAME...]
 *
 * A NAME selects the measurements whose name starts with it; no NAME runs
 * them all. Each measurement prints one JSON object on its own line on
 * stdout, as bench_vault and bench_sync do:
 *
 *   {"bench": NAME, "value": X, "unit": U, "limit": Y, "ratio": X/Y}
 *
 * Everything else goes to stderr. Scratch files (vaults, servers, the
 * limit's TLS identity) go in one new directory under DIR, so the device's
 * and the server's disk writes land on the same file system; it is removed
 * at exit. Sizes are binary: 1 MiB = 2^20 bytes, throughput in MiB/s.
 *
 * The starting point (not timed). A server is made with fv_server_init and
 * run as its own process, the Release `fieldvault serve --data DIR --listen
 * 127.0.0.1:0` (--fieldvault PATH; default: `fieldvault` next to this
 * program). A coordinator enrolls with the admin invite and publishes the
 * organisation key (fv_org_init), so the record is sealed to the device and
 * to the organisation as in real use; a field device (FV_KDF_TEST) enrolls
 * with an invite from fv_server_invite. The server is stopped, and one
 * record with one attachment of S bytes (1 GiB; --quick 128 MiB; --size)
 * is added to the device's vault with fv_record_add, its bytes streamed
 * from a pseudo-random generator through fv_attachment_source.read (no
 * file), their BLAKE2b-256 kept. The closed server and device directories
 * are the starting point of every transfer below: each copies both (the
 * copies fsync'd before timing, so no write-back of the copy competes with
 * the transfer) and starts `fieldvault serve` on the copy.
 *
 * attach.upload (MiB/s; target ratio >= 0.8). Each of --rounds (2; --quick
 * 3: two rounds of 1 GiB keep a full run near 2.5 minutes) rounds
 * times one fv_sync of the device in this process over loopback TLS: it
 * pushes the record's envelope (small) and uploads the S bytes as chunks.
 * The server must then index every chunk (rows of `chunk` in its
 * server.db, read with SQLite read-only after the server stopped) and
 * fv_sync must report them all sent. The limit is bulk TLS with the same
 * code and cipher suite and no application: a child process listens with
 * fv_tls_listen on the pinned identity made by fv_tls_identity_create,
 * accepts, completes the handshake and reads and discards S bytes, then
 * answers one byte; this process fv_tls_connect's to it and writes S bytes
 * in 1 MiB writes. Its time runs from connect (the handshake included, as
 * in fv_sync) to the answer. Rounds alternate the order (sync then limit,
 * limit then sync); the figures come from the quietest round, the one whose
 * limit took least time: value = S / t_sync, limit = S / t_limit. On
 * stderr, each round also gives the CPU-seconds the server process, this
 * process and the whole machine used during the sync (the machines are
 * shared: that tells a slow sync from a busy machine), how the server and
 * the device spent its wall time (/proc/PID/schedstat: running, waiting
 * for a CPU, blocked on the disk or the peer), and CPU-seconds per GiB of
 * either side of the upload and of the limit.
 *
 * attach.upload.socks5 (MiB/s; target ratio >= 0.9). Each round of
 * attach.upload also runs the same upload (fresh copies) through a SOCKS5
 * proxy started by this program on a free 127.0.0.1 port (socks5h://):
 * the proxy's cost on the upload. value = S / the fastest proxied upload,
 * limit = S / the fastest direct upload of the same process and run. The
 * proxy is danted (dante-server, which relays 64 KiB at a time); --socks
 * microsocks runs microsocks instead, which relays through a 1 KiB buffer
 * (a poll, a read and a write per KiB, whatever the device writes), so
 * that its own copying, not the device's, sets the figure. stderr names
 * the proxy and the CPU-seconds per GiB it used.
 *
 * attach.server.rss (KiB; "limit" 65536 = 64 MiB, ratio = value / limit:
 * below 1 meets the target). The server process's peak resident set
 * (VmHWM of /proc/PID/status, read right after each transfer and before
 * the server stops): its start and one whole upload. The largest over
 * every upload of the run (the rounds and the client.rss upload).
 *
 * attach.client.rss (KiB; "limit" 65536, ratio = value / limit). One more
 * upload, made by the CLI in a child process, `fieldvault --vault DIR
 * --passphrase-file F sync --server ADDR --json`: its peak resident set
 * (ru_maxrss from wait4, the child's VmHWM over its whole life: start,
 * unlock, sync, exit). A child, because this process also holds the
 * setup's state; its wall time goes to stderr, not timed against a limit.
 * On stderr, the rounds of attach.upload also say how much
 * this process's peak resident set grew during its fv_sync
 * (/proc/self/clear_refs), which should agree.
 *
 * attach.resume.ratio (ratio; limit 1.05, ratio = value / limit: below 1
 * meets the target). One more upload through a TCP proxy thread on
 * 127.0.0.1 that forwards both ways and cuts a connection once the device
 * has sent it 20,000,000 bytes (the cut): it closes the device's side at
 * once, and ends the server's side with end of stream after exactly those
 * bytes, reading and dropping what the server still sends until it closes
 * (a reset would make Linux drop input the server had received but not
 * yet read, which a cut in the network does not). The device may connect
 * again meanwhile. fv_sync is repeated until it succeeds (at most
 * 2 S / cut + 10 attempts). value = every byte the device sent through
 * the proxy over all attempts (TLS records, handshakes included) / S. The
 * server must then index every chunk. stderr gives the attempts, what the
 * server's log says (connections that began while the one before was
 * still open on the server, chunks written twice) and, for comparison, the
 * same ratio for an uncut fv_sync (its application bytes / S).
 *
 * Fetch-back check (always with --quick, otherwise with --verify; no
 * figure): after the last upload, a copy of the coordinator syncs with that
 * server (which, if attach.resume.ratio ran, is the resumed one), must
 * receive every chunk, and fv_attachment_read must give back bytes whose
 * BLAKE2b-256 equals the generator's. Its download rate goes to stderr.
 *
 * Any failed check ends the program with status 1 and a line on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"
#include "server.h"
#include "tls_server.h"

#define ATTACHMENT_NAME "interview.mp4"
#define MIB (1024.0 * 1024.0)
#define RSS_LIMIT_KIB 65536 /* 64 MiB */
#define RESUME_LIMIT 1.05
#define CUT_BYTES 20000000ull /* "a cut every 20 MB" */
#define LIMIT_WRITE (1u << 20) /* the limit's writes */
#define SYNC_TIMEOUT_MS 60000

static struct {
    int quick;
    int verify;
    int rounds;
    uint64_t size;          /* attachment bytes */
    const char *base;       /* where the scratch directory goes */
    const char *fieldvault; /* the CLI: `serve`, and `sync` for client.rss */
    const char *socks;      /* attach.upload.socks5's proxy: dante, microsocks */
} opt;

static pid_t other_pid; /* the limit's receiver or a CLI sync, killed at exit */
static pid_t proxy_pid; /* attach.upload.socks5's SOCKS5 server */
static uint64_t uncut_sent; /* fv_sync's bytes_sent for an uncut upload */

/* Runs at exit before common.c's cleanup (registered after it). */
static void kill_other(void)
{
    if (other_pid > 0) {
        kill(other_pid, SIGKILL);
        waitpid(other_pid, NULL, 0);
        other_pid = 0;
    }
}

static double mib(uint64_t bytes)
{
    return (double)bytes / MIB;
}

/* ---- scratch files -------------------------------------------------- */

/* CPU-seconds of a process and its children (danted relays in a child;
 * microsocks in threads, which proc_cpu counts). */
static double tree_cpu(pid_t pid)
{
    char path[80];
    double t = proc_cpu(pid);
    long child;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", (long)pid, (long)pid);
    if ((f = fopen(path, "r"))) {
        while (fscanf(f, "%ld", &child) == 1) {
            double c = proc_cpu((pid_t)child);
            if (c > 0)
                t += c;
        }
        fclose(f);
    }
    return t;
}

static void write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

/* ---- /proc ------------------------------------------------------------ */

/* A process's (main thread's) time on a CPU and waiting for one, in
 * seconds so far (/proc/PID/schedstat; pid 0: this process). The rest of
 * its wall time it was blocked: on the disk, or on its peer. */
static void sched_times(pid_t pid, double *run, double *wait)
{
    char path[64];
    unsigned long long r = 0, w = 0;
    FILE *f;
    if (pid)
        snprintf(path, sizeof path, "/proc/%ld/schedstat", (long)pid);
    else
        snprintf(path, sizeof path, "/proc/self/schedstat");
    *run = *wait = 0;
    if (!(f = fopen(path, "r")))
        return;
    if (fscanf(f, "%llu %llu", &r, &w) == 2) {
        *run = (double)r * 1e-9;
        *wait = (double)w * 1e-9;
    }
    fclose(f);
}

static long self_minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* The machine's busy and total CPU seconds so far (/proc/stat). */
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

/* ---- `fieldvault serve` ------------------------------------------------ */

/* A running server on a copy of the starting point. */
struct srv {
    char *dir, *log;
    char addr[64];
    pid_t pid;
};

static void srv_start(struct srv *s, const char *dir)
{
    s->dir = strdup(dir);
    s->log = path_join(scratch, "serve.log");
    if (!s->dir)
        die("out of memory");
    s->pid = serve_start(s->dir, s->log, s->addr, sizeof s->addr);
}

static void srv_stop(struct srv *s)
{
    long maxrss;
    serve_stop(s->pid, s->log, &maxrss);
    s->pid = 0;
}

static void srv_free(struct srv *s, int remove_dir)
{
    if (remove_dir)
        rm_tree(s->dir);
    unlink(s->log);
    free(s->dir);
    free(s->log);
    memset(s, 0, sizeof *s);
}

/* Padme (docs/FORMAT.md 5.8). */
static uint64_t padme(uint64_t n)
{
    int e = 0, s = 0, z;
    if (n < 2)
        return n;
    while ((n >> (e + 1)) != 0)
        e++;
    while ((e >> (s + 1)) != 0)
        s++;
    z = e - s - 1;
    return z > 0 ? (n + ((uint64_t)1 << z) - 1) & ~(((uint64_t)1 << z) - 1) : n;
}

/* The ciphertext bytes of an attachment of `size` bytes in chunks of
 * `chunk` (docs/FORMAT.md 8): each chunk + 16, the last zero-padded to
 * min(chunk, Padme(max(last, 256))). */
static uint64_t stored_bytes(uint64_t size, uint64_t chunk)
{
    uint64_t n = size / chunk + (size % chunk != 0), last, pad;
    if (n == 0)
        return 0;
    last = size - (n - 1) * chunk;
    pad = padme(last < 256 ? 256 : last);
    return (n - 1) * (chunk + 16) + (pad < chunk ? pad : chunk) + 16;
}

/* After the server stopped: its index must name every chunk, in full. */
static void check_server_chunks(const char *server_dir, uint64_t nchunks,
                                uint64_t chunk_bytes, const char *what)
{
    char *path = path_join(server_dir, "server.db");
    sqlite3 *db = open_ro(path);
    int64_t rows = query_int(db, "SELECT count(*) FROM chunk");
    int64_t bytes = query_int(db, "SELECT coalesce(sum(len), 0) FROM chunk");
    sqlite3_close(db);
    free(path);
    if (rows != (int64_t)nchunks || bytes != (int64_t)chunk_bytes)
        die("%s: the server indexes %lld chunks (%lld bytes); expected %llu "
            "(%llu bytes)", what, (long long)rows, (long long)bytes,
            (unsigned long long)nchunks, (unsigned long long)chunk_bytes);
}

/* ---- the starting point ------------------------------------------------ */

static struct {
    char *server, *device, *coordinator; /* closed, stopped */
    unsigned char record[FV_ID_BYTES];
    unsigned char hash[crypto_generichash_BYTES]; /* of the plaintext */
    uint64_t nchunks;     /* chunks of the attachment */
    uint64_t chunk_bytes; /* their ciphertext bytes (what the server stores) */
} base;

static void setup(void)
{
    unsigned char pin[32];
    char *admin = NULL, *invite = NULL;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_attachment_source src;
    fv_record *rec = NULL;
    struct gen g;
    struct srv s;
    fv_vault *v;
    int role = 0, rc;
    double t0;

    base.server = scratch_path("server");
    base.device = scratch_path("device");
    base.coordinator = scratch_path("coordinator");
    if ((rc = fv_server_init(base.server, "127.0.0.1:0", pin, &admin)))
        die("fv_server_init: %s", fv_strerror(rc));
    srv_start(&s, base.server);
    note("%s serve (pid %ld) listening on %s", opt.fieldvault, (long)s.pid,
         s.addr);
    so.server = s.addr;

    v = create_vault(base.coordinator);
    fv_check(fv_enroll(v, &role, admin, &so), v, "fv_enroll (admin invite)");
    if (role != FV_ROLE_COORDINATOR)
        die("the admin invite gave role %d, not coordinator", role);
    fv_check(fv_org_init(v, &so), v, "fv_org_init");
    fv_vault_close(v);
    free(admin);

    if ((rc = fv_server_invite(base.server, "field 1", FV_ROLE_FIELD,
                               INVITE_TTL, &invite)))
        die("fv_server_invite: %s", fv_strerror(rc));
    v = create_vault(base.device);
    fv_check(fv_enroll(v, &role, invite, &so), v, "fv_enroll");
    if (role != FV_ROLE_FIELD)
        die("a field invite gave role %d", role);
    free(invite);
    srv_stop(&s);
    srv_free(&s, 0);

    note("adding a record with a %.0f MiB attachment to the device's vault",
         mib(opt.size));
    gen_init(&g, 0x9e3779b97f4a7c15ull, opt.size);
    memset(&src, 0, sizeof src);
    src.name = ATTACHMENT_NAME;
    src.read = gen_read;
    src.read_payload = &g;
    in.title = "Interview, district 4";
    in.attachments = &src;
    in.nattachments = 1;
    t0 = now();
    fv_check(fv_record_add(v, base.record, &in), v, "fv_record_add");
    t0 = now() - t0;
    if (g.left != 0)
        die("fv_record_add read %llu of %llu bytes",
            (unsigned long long)(opt.size - g.left),
            (unsigned long long)opt.size);
    crypto_generichash_final(&g.hash, base.hash, sizeof base.hash);
    fv_check(fv_record_get(v, &rec, base.record), v, "fv_record_get");
    if (rec->nattachments != 1 || rec->attachments[0].size != opt.size)
        die("the record does not hold the attachment: %zu attachments, %llu "
            "bytes", rec->nattachments,
            rec->nattachments ? (unsigned long long)rec->attachments[0].size
                              : 0);
    /* Not a check of this benchmark (the transfers check the chunks), but
     * a wrong count here is what `fieldvault show` would print. */
    if (rec->attachments[0].chunks_present != rec->attachments[0].chunks)
        note("fv_record_get reports %llu of %llu chunks present on the "
             "device that wrote them",
             (unsigned long long)rec->attachments[0].chunks_present,
             (unsigned long long)rec->attachments[0].chunks);
    base.nchunks = rec->attachments[0].chunks;
    /* Each chunk is its plaintext and a 16-byte tag, the last padded to
     * its bucket (docs/FORMAT.md 8). */
    base.chunk_bytes = stored_bytes(opt.size, rec->attachments[0].chunk_bytes);
    note("added in %.1f s (%.0f MiB/s): %llu chunks of %u bytes", t0,
         mib(opt.size) / t0, (unsigned long long)base.nchunks,
         rec->attachments[0].chunk_bytes);
    fv_record_free(rec);
    fv_vault_close(v);
    sync();
}

/* Fresh copies of the starting point: a server running on one, a device. */
static fv_vault *fresh_pair(struct srv *s, char **device_dir)
{
    char *sdir = scratch_path("server");
    *device_dir = scratch_path("device");
    copy_tree(base.server, sdir);
    copy_tree(base.device, *device_dir);
    srv_start(s, sdir);
    free(sdir);
    return open_vault(*device_dir);
}

/* ---- the limit: bulk TLS, no application ------------------------------- */

static struct {
    char *key, *crt;
    unsigned char pin[FV_TLS_PIN_BYTES];
} ident;

static void wait_fd(int fd, int want, double deadline)
{
    struct pollfd p = {fd, want == FV_TLS_WANT_WRITE ? POLLOUT : POLLIN, 0};
    int left = (int)((deadline - now()) * 1000);
    if (left <= 0 || poll(&p, 1, left) == 0)
        _exit(3);
}

/* The receiver, in a child: accepts one connection, reads and drops
 * `bytes`, answers one byte, waits for the close. */
static void __attribute__((noreturn)) tls_sink(fv_tls_server *ls, uint64_t bytes)
{
    static unsigned char buf[64 * 1024];
    double deadline = now() + 600;
    fv_tls_conn *c = NULL;
    uint64_t got = 0;
    size_t n;
    int rc;

    for (;;) {
        rc = fv_tls_accept(ls, &c);
        if (rc == FV_OK)
            break;
        if (rc != FV_ENOTFOUND)
            _exit(2);
        wait_fd(fv_tls_server_fd(ls), FV_TLS_WANT_READ, deadline);
    }
    while ((rc = fv_tls_handshake(c)) != FV_OK) {
        if (rc < 0)
            _exit(4);
        wait_fd(fv_tls_fd(c), rc, deadline);
    }
    while (got < bytes) {
        rc = fv_tls_read(c, buf, sizeof buf, &n);
        if (rc == FV_OK)
            got += n;
        else if (rc > 0)
            wait_fd(fv_tls_fd(c), rc, deadline);
        else
            _exit(5);
    }
    buf[0] = 'k';
    while ((rc = fv_tls_write(c, buf, 1, &n)) != FV_OK) {
        if (rc < 0)
            _exit(6);
        wait_fd(fv_tls_fd(c), rc, deadline);
    }
    /* Until the sender closes: its last bytes are not cut by a reset. */
    while ((rc = fv_tls_read(c, buf, sizeof buf, &n)) == FV_OK || rc > 0)
        if (rc > 0)
            wait_fd(fv_tls_fd(c), rc, deadline);
    fv_tls_close(c);
    _exit(0);
}

static void limit_setup(void)
{
    char *dir = scratch_path("tls-identity");
    int rc;
    if (mkdir(dir, 0700) != 0)
        die("cannot make %s: %s", dir, strerror(errno));
    ident.key = path_join(dir, "tls.key");
    ident.crt = path_join(dir, "tls.crt");
    if ((rc = fv_tls_identity_create(ident.key, ident.crt, ident.pin)))
        die("fv_tls_identity_create: %s", fv_strerror(rc));
    free(dir);
}

/* One bulk transfer of `bytes` to a child over loopback TLS: its time.
 * *cpu_send and *cpu_recv receive the CPU-seconds of either side. */
static double limit_round(uint64_t bytes, double *cpu_send, double *cpu_recv)
{
    static unsigned char buf[LIMIT_WRITE];
    fv_tls_server *ls = NULL;
    fv_tls_conn *c = NULL;
    char port[16];
    uint64_t sent = 0;
    double t0, t, deadline, cpu0;
    struct rusage ru;
    size_t n;
    int rc, status;
    pid_t pid;

    randombytes_buf(buf, sizeof buf);
    if ((rc = fv_tls_listen(&ls, "127.0.0.1", "0", ident.key, ident.crt)))
        die("fv_tls_listen: %s", fv_strerror(rc));
    snprintf(port, sizeof port, "%d", fv_tls_server_port(ls));
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0)
        tls_sink(ls, bytes);
    other_pid = pid;
    fv_tls_server_close(ls);

    cpu0 = self_cpu();
    t0 = now();
    deadline = t0 + 600;
    if ((rc = fv_tls_connect(&c, "127.0.0.1", port, ident.pin, 30000)))
        die("limit: fv_tls_connect: %s", fv_strerror(rc));
    while (sent < bytes) {
        size_t len = bytes - sent < sizeof buf ? (size_t)(bytes - sent) : sizeof buf;
        size_t off = 0;
        while (off < len) {
            rc = fv_tls_write(c, buf + off, len - off, &n);
            if (rc == FV_OK) {
                off += n;
            } else if (rc > 0) {
                struct pollfd p = {fv_tls_fd(c),
                                   rc == FV_TLS_WANT_WRITE ? POLLOUT : POLLIN, 0};
                if (now() > deadline || poll(&p, 1, 1000) < 0)
                    die("limit: the receiver stalled");
            } else {
                die("limit: fv_tls_write: %s", fv_strerror(rc));
            }
        }
        sent += len;
    }
    for (;;) {
        unsigned char k;
        rc = fv_tls_read(c, &k, 1, &n);
        if (rc == FV_OK)
            break;
        if (rc < 0)
            die("limit: no answer from the receiver: %s", fv_strerror(rc));
        {
            struct pollfd p = {fv_tls_fd(c),
                               rc == FV_TLS_WANT_WRITE ? POLLOUT : POLLIN, 0};
            if (now() > deadline || poll(&p, 1, 1000) < 0)
                die("limit: the receiver did not answer");
        }
    }
    t = now() - t0;
    *cpu_send = self_cpu() - cpu0;
    fv_tls_close(c);
    if (wait4(pid, &status, 0, &ru) != pid)
        die("waiting for the limit's receiver: %s", strerror(errno));
    *cpu_recv = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    other_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("limit: the receiver failed (status %d)", status);
    return t;
}

/* ---- attach.upload, attach.server.rss ---------------------------------- */

struct upload {
    double t;            /* the fv_sync */
    long server_hwm;     /* KiB */
    long self_growth;    /* KiB, -1 if unknown */
    double cpu_server, cpu_client; /* CPU-seconds during the fv_sync */
    double cpu_proxy;    /* the SOCKS5 server's, through a proxy */
    double t_close;      /* the fv_vault_close after it (not timed) */
    long minflt;         /* this process's minor page faults during it */
    fv_sync_result res;
};

/* One timed upload on fresh copies. Leaves the server directory in
 * *server_dir (the caller removes it). */
static struct upload upload_round(int r, char **server_dir, const char *proxy)
{
    struct upload u;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    struct srv s;
    char *ddir;
    fv_vault *v = fresh_pair(&s, &ddir);
    double t0, srv0, srv1, cli0, cli1, busy0, busy1, all0, all1, px0 = 0;
    double srun0, srun1, swait0, swait1, crun0, crun1, cwait0, cwait1;
    long rss0;
    int rc, can_reset;

    memset(&u, 0, sizeof u);
    so.server = s.addr;
    so.timeout_ms = SYNC_TIMEOUT_MS;
    so.proxy = proxy ? proxy : "none";
    can_reset = reset_peak_rss() == 0;
    rss0 = status_kib(getpid(), "VmRSS");
    machine_cpu(&busy0, &all0);
    srv0 = proc_cpu(s.pid);
    cli0 = self_cpu();
    if (proxy)
        px0 = tree_cpu(proxy_pid);
    u.minflt = self_minflt();
    sched_times(s.pid, &srun0, &swait0);
    sched_times(0, &crun0, &cwait0);
    t0 = now();
    u.res = (fv_sync_result)FV_SYNC_RESULT_INIT;
    rc = fv_sync(v, &u.res, &so);
    u.t = now() - t0;
    if (proxy)
        u.cpu_proxy = tree_cpu(proxy_pid) - px0;
    sched_times(0, &crun1, &cwait1);
    sched_times(s.pid, &srun1, &swait1);
    cli1 = self_cpu();
    u.minflt = self_minflt() - u.minflt;
    srv1 = proc_cpu(s.pid);
    machine_cpu(&busy1, &all1);
    u.self_growth = can_reset && rss0 >= 0 ? status_kib(getpid(), "VmHWM") - rss0 : -1;
    u.server_hwm = status_kib(s.pid, "VmHWM");
    u.cpu_server = srv1 - srv0;
    u.cpu_client = cli1 - cli0;
    if (rc != FV_OK) {
        tail_file(s.log, 10);
        die("attach.upload: fv_sync: %s (%s)", fv_strerror(rc),
            fv_vault_errmsg(v));
    }
    t0 = now();
    fv_vault_close(v);
    u.t_close = now() - t0;
    srv_stop(&s);
    if (u.res.pushed != 1 || u.res.chunks_sent != base.nchunks)
        die("attach.upload: fv_sync pushed %llu envelopes and %llu chunks; "
            "expected 1 and %llu", (unsigned long long)u.res.pushed,
            (unsigned long long)u.res.chunks_sent,
            (unsigned long long)base.nchunks);
    check_server_chunks(s.dir, base.nchunks, base.chunk_bytes, "attach.upload");
    uncut_sent = u.res.bytes_sent;
    note("attach.upload%s round %d: fv_sync %.2f s (%.1f MiB/s), %llu bytes "
         "sent, %llu received, %u round trips; fv_vault_close after it "
         "(not timed) %.2f s", proxy ? ".socks5" : "", r + 1, u.t, mib(opt.size) / u.t,
         (unsigned long long)u.res.bytes_sent,
         (unsigned long long)u.res.bytes_received, u.res.roundtrips,
         u.t_close);
    note("attach.upload round %d: during fv_sync the server process used "
         "%.2f CPU-seconds, this process %.2f; the machine (every process) "
         "was busy %.2f of %.2f; server peak resident set %ld KiB, this "
         "process's grew by %ld KiB; this process took %ld minor page "
         "faults", r + 1, srv1 - srv0, cli1 - cli0, busy1 - busy0,
         all1 - all0, u.server_hwm, u.self_growth, u.minflt);
    note("attach.upload round %d: of the %.2f s, the server ran %.2f s, "
         "waited for a CPU %.2f s, was blocked (disk, peer) %.2f s; the "
         "device ran %.2f s, waited %.2f s, was blocked %.2f s", r + 1, u.t,
         srun1 - srun0, swait1 - swait0,
         u.t - (srun1 - srun0) - (swait1 - swait0), crun1 - crun0,
         cwait1 - cwait0, u.t - (crun1 - crun0) - (cwait1 - cwait0));
    if (proxy)
        note("attach.upload.socks5 round %d: the proxy (%s) used %.2f "
             "CPU-seconds, %.2f per GiB; server %.2f and device %.2f per GiB",
             r + 1, opt.socks, u.cpu_proxy, u.cpu_proxy * 1024 / mib(opt.size),
             u.cpu_server * 1024 / mib(opt.size),
             u.cpu_client * 1024 / mib(opt.size));
    rm_tree(ddir);
    free(ddir);
    *server_dir = strdup(s.dir);
    srv_free(&s, 0);
    return u;
}

/* One round of attach.upload.socks5: upload_round through the SOCKS5 proxy
 * at `url` (its server copy removed after). Returns the lesser of its time
 * and `best` (< 0: none yet). */
static double socks_upload(int r, const char *url, double best)
{
    char *sdir = NULL;
    struct upload u = upload_round(r, &sdir, url);
    rm_tree(sdir);
    free(sdir);
    return best < 0 || u.t < best ? u.t : best;
}

/* ---- attach.client.rss --------------------------------------------------- */

/* One upload by `fieldvault sync` in a child: its peak resident set. */
static long cli_upload(long *server_hwm, char **server_dir)
{
    struct srv s;
    char *ddir, *pass = path_join(scratch, "passphrase"), *out;
    char *err;
    fv_vault *v = fresh_pair(&s, &ddir);
    struct rusage ru;
    double t0, t;
    int status;
    pid_t pid;

    fv_vault_close(v); /* opened once to check it; the CLI opens its own */
    write_text(pass, PASSPHRASE "\n");
    out = path_join(scratch, "sync.out");
    err = path_join(scratch, "sync.err");
    fflush(NULL);
    t0 = now();
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fo < 0 || fe < 0 || nul < 0 || dup2(nul, 0) < 0 ||
            dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(126);
        execl(opt.fieldvault, "fieldvault", "--vault", ddir,
              "--passphrase-file", pass, "sync", "--server", s.addr,
              "--timeout", "60", "--json", (char *)NULL);
        _exit(127);
    }
    other_pid = pid;
    if (wait4(pid, &status, 0, &ru) != pid)
        die("waiting for fieldvault sync: %s", strerror(errno));
    t = now() - t0;
    other_pid = 0;
    *server_hwm = status_kib(s.pid, "VmHWM");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        note("fieldvault sync ended with status %d:", status);
        tail_file(err, 10);
        tail_file(s.log, 10);
        die("attach.client.rss: fieldvault sync failed");
    }
    srv_stop(&s);
    check_server_chunks(s.dir, base.nchunks, base.chunk_bytes,
                        "attach.client.rss");
    note("attach.client.rss: fieldvault sync took %.2f s (%.1f MiB/s, with "
         "its start, unlock and close), %.2f CPU-seconds, %ld minor page "
         "faults; its peak resident set %ld KiB; the server's %ld KiB", t,
         mib(opt.size) / t,
         (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6,
         ru.ru_minflt, ru.ru_maxrss, *server_hwm);
    {
        FILE *f = fopen(out, "r");
        char line[512];
        if (f && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            note("attach.client.rss: fieldvault sync --json: %s", line);
        }
        if (f)
            fclose(f);
    }
    unlink(out);
    unlink(err);
    unlink(pass);
    free(out);
    free(err);
    free(pass);
    rm_tree(ddir);
    free(ddir);
    *server_dir = strdup(s.dir);
    srv_free(&s, 0);
    return ru.ru_maxrss;
}

/* ---- attach.resume.ratio: a proxy that cuts ----------------------------- */

struct proxy {
    int lfd;
    char addr[64];            /* where the device connects */
    struct sockaddr_in to;    /* the server */
    uint64_t cut;             /* client->server bytes per connection */
    volatile int stop;
    pthread_t tid;
    /* results, read after the thread is joined or between syncs */
    pthread_mutex_t mu;
    uint64_t up, down;        /* bytes forwarded, every connection */
    unsigned conns, cuts;
    unsigned draining;        /* server sides of cut connections still open */
    pthread_cond_t drained;
    char err[200];
};

struct flow {
    int from, to;
    unsigned char *buf;
    size_t len, off;
    uint64_t count, max; /* max: UINT64_MAX when no cut */
    int eof, shut;
};

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Reads what fits (and what the cut allows); 0 or -1 when done. */
static int flow_read(struct flow *f)
{
    size_t room = 256 * 1024;
    ssize_t n;
    if (f->max - f->count < room)
        room = (size_t)(f->max - f->count);
    n = read(f->from, f->buf, room);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    if (n == 0) {
        f->eof = 1;
        return 1;
    }
    f->len = (size_t)n;
    f->off = 0;
    f->count += (uint64_t)n;
    return 1;
}

static int flow_write(struct flow *f)
{
    ssize_t n = send(f->to, f->buf + f->off, f->len - f->off, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    f->off += (size_t)n;
    if (f->off == f->len)
        f->off = f->len = 0;
    return 1;
}

/* Forwards one connection until both sides finished, one failed, or the
 * client has sent `cut` bytes. Returns 1 after a cut. */
static int proxy_conn(struct proxy *p, int cfd, int sfd)
{
    static unsigned char b1[256 * 1024], b2[256 * 1024];
    struct flow up = {cfd, sfd, b1, 0, 0, 0, p->cut, 0, 0};
    struct flow down = {sfd, cfd, b2, 0, 0, 0, UINT64_MAX, 0, 0};
    double last = now();
    int cut = 0;

    for (;;) {
        struct pollfd fds[2] = {{cfd, 0, 0}, {sfd, 0, 0}};
        struct flow *fl[2] = {&up, &down};
        int r, bad = 0;

        if (up.count >= up.max && up.len == 0) {
            cut = 1;
            break;
        }
        for (int i = 0; i < 2; i++) {
            struct flow *f = fl[i];
            if (f->eof && f->len == 0 && !f->shut) {
                shutdown(f->to, SHUT_WR);
                f->shut = 1;
            }
        }
        if (up.shut && down.shut)
            break;
        if (!up.eof && up.len == 0)
            fds[0].events |= POLLIN;
        if (up.len)
            fds[1].events |= POLLOUT;
        if (!down.eof && down.len == 0)
            fds[1].events |= POLLIN;
        if (down.len)
            fds[0].events |= POLLOUT;
        r = poll(fds, 2, 1000);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0) {
            if (now() - last > 120 || p->stop)
                break;
            continue;
        }
        last = now();
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && !up.eof &&
            up.len == 0)
            bad |= flow_read(&up) < 0;
        if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && !down.eof &&
            down.len == 0)
            bad |= flow_read(&down) < 0;
        if ((fds[1].revents & (POLLOUT | POLLERR)) && up.len)
            bad |= flow_write(&up) < 0;
        if ((fds[0].revents & (POLLOUT | POLLERR)) && down.len)
            bad |= flow_write(&down) < 0;
        if (bad)
            break; /* a reset: the sync saw it too */
    }
    pthread_mutex_lock(&p->mu);
    p->up += up.count;
    p->down += down.count;
    p->conns++;
    p->cuts += cut;
    pthread_mutex_unlock(&p->mu);
    return cut;
}

struct drain {
    struct proxy *p;
    int fd;
};

/* The server's side of a cut connection: it has received every byte the
 * device sent before the cut, then end of stream. What it still sends is
 * read and dropped until it closes, so that no reset makes its kernel drop
 * bytes that already reached it (Linux discards a socket's unread input
 * when a reset arrives), as a cut in the network would not either. */
static void *drain_main(void *arg)
{
    struct drain *d = arg;
    unsigned char sink[16 * 1024];
    double deadline = now() + 60;
    shutdown(d->fd, SHUT_WR);
    while (now() < deadline) {
        struct pollfd pf = {d->fd, POLLIN, 0};
        ssize_t n;
        if (poll(&pf, 1, 200) <= 0)
            continue;
        n = read(d->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            break;
    }
    close(d->fd);
    pthread_mutex_lock(&d->p->mu);
    d->p->draining--;
    pthread_cond_broadcast(&d->p->drained);
    pthread_mutex_unlock(&d->p->mu);
    free(d);
    return NULL;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    while (!p->stop) {
        struct pollfd lp = {p->lfd, POLLIN, 0};
        int cfd, sfd;
        if (poll(&lp, 1, 200) <= 0)
            continue;
        cfd = accept(p->lfd, NULL, NULL);
        if (cfd < 0)
            continue;
        sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (sfd < 0 || connect(sfd, (struct sockaddr *)&p->to, sizeof p->to) != 0 ||
            set_nonblock(cfd) || set_nonblock(sfd)) {
            pthread_mutex_lock(&p->mu);
            snprintf(p->err, sizeof p->err, "cannot reach the server: %s",
                     strerror(errno));
            pthread_mutex_unlock(&p->mu);
            close(cfd);
            if (sfd >= 0)
                close(sfd);
            continue;
        }
        if (proxy_conn(p, cfd, sfd)) {
            /* The cut: the device's side at once; the server's side ends
             * after what it received, in a thread of its own, while the
             * device may already be back on a new connection. */
            struct drain *d = malloc(sizeof *d);
            pthread_t t;
            close(cfd);
            pthread_mutex_lock(&p->mu);
            p->draining++;
            pthread_mutex_unlock(&p->mu);
            if (d) {
                d->p = p;
                d->fd = sfd;
            }
            if (!d || pthread_create(&t, NULL, drain_main, d) != 0) {
                free(d);
                close(sfd);
                pthread_mutex_lock(&p->mu);
                p->draining--;
                pthread_mutex_unlock(&p->mu);
            } else {
                pthread_detach(t);
            }
            continue;
        }
        close(cfd);
        close(sfd);
    }
    return NULL;
}

static void proxy_start(struct proxy *p, const char *server_addr, uint64_t cut)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    const char *colon = strrchr(server_addr, ':');
    char host[64];

    memset(p, 0, sizeof *p);
    p->cut = cut;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->drained, NULL);
    if (!colon || (size_t)(colon - server_addr) >= sizeof host)
        die("resume: cannot read the server's address %s", server_addr);
    memcpy(host, server_addr, (size_t)(colon - server_addr));
    host[colon - server_addr] = '\0';
    p->to.sin_family = AF_INET;
    {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
            die("resume: the server's port in %s is not a port", server_addr);
        p->to.sin_port = htons((uint16_t)port);
    }
    if (inet_pton(AF_INET, host, &p->to.sin_addr) != 1)
        die("resume: the server's address %s is not IPv4", server_addr);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->lfd, 8) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &alen) != 0)
        die("resume: cannot make the proxy: %s", strerror(errno));
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", ntohs(a.sin_port));
    if (pthread_create(&p->tid, NULL, proxy_main, p) != 0)
        die("resume: cannot start the proxy thread");
}

static void proxy_stop(struct proxy *p)
{
    p->stop = 1;
    pthread_join(p->tid, NULL);
    close(p->lfd);
    pthread_mutex_lock(&p->mu);
    while (p->draining > 0)
        pthread_cond_wait(&p->drained, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&p->drained);
    pthread_mutex_destroy(&p->mu);
}

/* What the server's log says of the resumed upload: how many connections
 * began while an earlier one was still open on the server (chunks that one
 * had received but not yet indexed read as missing to the new one's
 * CHUNK-QUERY, and the device sends them again), and how many chunks it
 * wrote in all (more than the attachment has: some were written twice). */
static void resume_log_summary(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[512];
    unsigned conns = 0, overlaps = 0, open_now = 0;
    unsigned long long stored = 0, bytes = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        const char *p;
        if (strstr(line, " connected (")) {
            conns++;
            overlaps += open_now > 0;
            open_now++;
        } else if (strstr(line, ": closed (") && open_now > 0) {
            open_now--;
        } else if ((p = strstr(line, " chunks stored ("))) {
            const char *q = p;
            unsigned long long n, b;
            while (q > line && q[-1] >= '0' && q[-1] <= '9')
                q--;
            if (sscanf(q, "%llu chunks stored (%llu bytes", &n, &b) == 2) {
                stored += n;
                bytes += b;
            }
        }
    }
    fclose(f);
    note("attach.resume: the server's log: %u of %u connections began while "
         "the one before was still open there; %llu chunks written (%llu "
         "bytes), %llu more than the attachment has", overlaps, conns,
         stored, bytes, stored > base.nchunks ? stored - base.nchunks : 0);
}

/* The upload through the cutting proxy, fv_sync repeated until it
 * succeeds. Returns client->server bytes / S. */
static double resume_run(char **server_dir)
{
    struct srv s;
    struct proxy p;
    char *ddir;
    fv_vault *v = fresh_pair(&s, &ddir);
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    uint64_t cut = CUT_BYTES, app_sent = 0, chunks = 0;
    unsigned max_attempts = (unsigned)(2 * opt.size / cut + 10), attempts = 0;
    double t0 = now(), ratio;
    int rc = FV_ENET;

    proxy_start(&p, s.addr, cut);
    so.server = p.addr;
    so.timeout_ms = SYNC_TIMEOUT_MS;
    note("attach.resume: cutting every connection after %llu client bytes "
         "(at most %u attempts)", (unsigned long long)cut, max_attempts);
    while (rc != FV_OK && attempts < max_attempts) {
        res = (fv_sync_result)FV_SYNC_RESULT_INIT;
        rc = fv_sync(v, &res, &so);
        attempts++;
        app_sent += res.bytes_sent;
        if (rc == FV_OK) {
            chunks += res.chunks_sent;
        } else if (rc != FV_ENET) {
            tail_file(s.log, 10);
            die("attach.resume: fv_sync attempt %u: %s (%s)", attempts,
                fv_strerror(rc), fv_vault_errmsg(v));
        }
        if (p.err[0])
            die("attach.resume: proxy: %s", p.err);
    }
    proxy_stop(&p);
    if (rc != FV_OK)
        die("attach.resume: fv_sync did not succeed in %u attempts (%s)",
            attempts, fv_vault_errmsg(v));
    fv_vault_close(v);
    srv_stop(&s);
    check_server_chunks(s.dir, base.nchunks, base.chunk_bytes, "attach.resume");
    ratio = (double)p.up / (double)opt.size;
    note("attach.resume: %u attempts (%u connections, %u cut) in %.1f s; "
         "the device sent %llu bytes through the proxy (%llu application "
         "bytes: fv_sync's bytes_sent), received %llu; the last attempt "
         "acknowledged %llu chunks", attempts, p.conns, p.cuts, now() - t0,
         (unsigned long long)p.up, (unsigned long long)app_sent,
         (unsigned long long)p.down, (unsigned long long)chunks);
    resume_log_summary(s.log);
    if (uncut_sent)
        note("attach.resume: for comparison, an uncut fv_sync of the same "
             "record sent %llu application bytes: %.3f of the attachment",
             (unsigned long long)uncut_sent,
             (double)uncut_sent / (double)opt.size);
    rm_tree(ddir);
    free(ddir);
    *server_dir = strdup(s.dir);
    srv_free(&s, 0);
    return ratio;
}

/* ---- fetch-back check ----------------------------------------------------- */

/* A copy of the coordinator syncs with the server at `server_dir` and must
 * read the attachment back, identical. */
static void fetch_back(const char *server_dir)
{
    char *cdir = scratch_path("coordinator");
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    struct hash_sink hs;
    unsigned char got[crypto_generichash_BYTES];
    struct srv s;
    fv_vault *v;
    double t0, t1, t2;

    copy_tree(base.coordinator, cdir);
    srv_start(&s, server_dir);
    v = open_vault(cdir);
    so.server = s.addr;
    so.timeout_ms = SYNC_TIMEOUT_MS;
    t0 = now();
    fv_check(fv_sync(v, &res, &so), v, "fetch-back: coordinator fv_sync");
    t1 = now();
    srv_stop(&s);
    if (res.chunks_received != base.nchunks || res.chunks_rejected ||
        res.chunks_unavailable)
        die("fetch-back: the coordinator received %llu chunks (%llu "
            "rejected, %llu unavailable); expected %llu",
            (unsigned long long)res.chunks_received,
            (unsigned long long)res.chunks_rejected,
            (unsigned long long)res.chunks_unavailable,
            (unsigned long long)base.nchunks);
    hash_sink_init(&hs);
    fv_check(fv_attachment_read(v, base.record, ATTACHMENT_NAME, hash_write,
                                &hs, NULL, NULL),
             v, "fetch-back: fv_attachment_read");
    crypto_generichash_final(&hs.hash, got, sizeof got);
    t2 = now();
    if (hs.bytes != opt.size || sodium_memcmp(got, base.hash, sizeof got) != 0)
        die("fetch-back: the coordinator read %llu bytes that differ from "
            "the %llu the device attached", (unsigned long long)hs.bytes,
            (unsigned long long)opt.size);
    note("fetch-back: the coordinator downloaded %llu chunks in %.2f s (%.1f "
         "MiB/s) and read the attachment back identical in %.2f s",
         (unsigned long long)res.chunks_received, t1 - t0,
         mib(opt.size) / (t1 - t0), t2 - t1);
    fv_vault_close(v);
    rm_tree(cdir);
    free(cdir);
    srv_free(&s, 0);
}

/* ---- main ----------------------------------------------------------- */

static const char usage[] =
    "usage: bench_attach [--quick] [--dir DIR] [--rounds N] [--size MIB]\n"
    "                    [--verify] [--fieldvault PATH] [--socks dante|microsocks]\n"
    "                    [NAME...]\n"
    "Runs the measurements whose names start with a NAME (attach.upload,\n"
    "attach.upload.socks5, attach.client.rss, attach.server.rss, attach.resume.ratio; none: all)\n"
    "and prints one JSON line per measurement. --size: the attachment in\n"
    "MiB (1024; --quick 128); --rounds: attach.upload's rounds (2;\n"
    "--quick 3); --verify: read the attachment back through a coordinator\n"
    "after the last upload (always with --quick); --fieldvault: the CLI\n"
    "run as `serve` and `sync` (default: fieldvault next to this program);\n"
    "--socks: the SOCKS5 server of attach.upload.socks5 (dante).\n"
    "Scratch files go in a new directory under DIR (default $TMPDIR or\n"
    "/tmp) and are removed afterwards.\n";

int main(int argc, char **argv)
{
    static const char *const known[] = {"attach.upload", "attach.upload.socks5",
                                        "attach.client.rss",
                                        "attach.server.rss",
                                        "attach.resume.ratio"};
    size_t size_mib = 0, nrounds = 0;
    const struct bench_flag flags[] = {
        {.name = "--verify", .on = &opt.verify},
        {.name = "--rounds", .count = &nrounds},
        {.name = "--size", .count = &size_mib},
        {.name = "--socks", .text = &opt.socks},
        {.name = NULL}};
    struct sigaction sa;
    char *last_server = NULL;
    long server_hwm = -1;
    int want_up, want_socks, want_srss, want_crss, want_resume, fetch;
    double t_start, t_setup, t_up, t_cli, t_resume;

    opt.socks = "dante";
    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_attach", usage,
                                            known, sizeof known / sizeof known[0],
                                            flags);
    opt.quick = cl.quick;
    opt.base = cl.dir;
    opt.fieldvault = bench_fieldvault;
    if (strcmp(opt.socks, "microsocks") && strcmp(opt.socks, "dante")) {
        fprintf(stderr, "bench_attach: --socks: " SOCKS_KINDS "\n%s", usage);
        return 2;
    }
    if (!size_mib)
        size_mib = opt.quick ? 128 : 1024;
    /* Two rounds of 1 GiB (each an upload and a limit) keep a full run
     * near 2.5 minutes on a shared 2-core machine. */
    opt.rounds = nrounds ? (int)nrounds : opt.quick ? 3 : 2;
    if (size_mib > 7 * 1024)
        die("--size: at most 7168 MiB (one record's chunk list)");
    opt.size = (uint64_t)size_mib << 20;
    want_up = wanted("attach.upload");
    want_socks = wanted("attach.upload.socks5");
    want_srss = wanted("attach.server.rss");
    want_crss = wanted("attach.client.rss");
    want_resume = wanted("attach.resume.ratio");
    fetch = opt.quick || opt.verify;

    /* A peer that closes first must not end the benchmark. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (sodium_init() < 0)
        die("libsodium failed to start");
    make_scratch(opt.base);
    atexit(kill_other);
    note("FieldVault %s, SQLite %s, libsodium %s; scratch %s; attachment "
         "%zu MiB", fv_version(), sqlite3_libversion(), sodium_version_string(),
         scratch, size_mib);
    t_start = now();
    setup();
    t_setup = now();

    if (want_up || want_srss || want_socks) {
        int rounds = want_up || want_socks ? opt.rounds : 1;
        double tu = 0, tl = -1, td = -1, ts = -1;
        char socks_url[64];
        pid_t socks = want_socks ? socks_start(opt.socks, socks_url,
                                                    sizeof socks_url)
                                 : 0;
        proxy_pid = socks;
        if (want_up)
            limit_setup();
        for (int r = 0; r < rounds; r++) {
            struct upload u;
            double t_lim = -1, c_send = 0, c_recv = 0;
            if (want_up && r % 2 == 1)
                t_lim = limit_round(opt.size, &c_send, &c_recv);
            if (last_server) {
                rm_tree(last_server);
                free(last_server);
            }
            if (want_socks && r % 2 == 1)
                ts = socks_upload(r, socks_url, ts);
            u = upload_round(r, &last_server, NULL);
            if (want_socks && r % 2 == 0)
                ts = socks_upload(r, socks_url, ts);
            if (td < 0 || u.t < td)
                td = u.t;
            if (want_up && r % 2 == 0)
                t_lim = limit_round(opt.size, &c_send, &c_recv);
            if (u.server_hwm > server_hwm)
                server_hwm = u.server_hwm;
            if (want_up) {
                note("attach.upload round %d: upload %.1f MiB/s, limit (bulk "
                     "TLS) %.1f MiB/s; CPU-seconds per GiB: upload server "
                     "%.2f + device %.2f, limit receiver %.2f + sender %.2f",
                     r + 1, mib(opt.size) / u.t, mib(opt.size) / t_lim,
                     u.cpu_server * 1024 / mib(opt.size),
                     u.cpu_client * 1024 / mib(opt.size),
                     c_recv * 1024 / mib(opt.size),
                     c_send * 1024 / mib(opt.size));
                if (tl < 0 || t_lim < tl) {
                    tl = t_lim;
                    tu = u.t;
                }
            }
        }
        if (want_up)
            report("attach.upload", mib(opt.size) / tu, "MiB/s",
                   mib(opt.size) / tl, 1);
        if (want_socks) {
            socks_stop(socks);
            report("attach.upload.socks5", mib(opt.size) / ts, "MiB/s",
                   mib(opt.size) / td, 1);
        }
    }
    t_up = now();
    if (want_crss || want_srss) {
        long hwm = -1, crss;
        if (last_server) {
            rm_tree(last_server);
            free(last_server);
        }
        crss = cli_upload(&hwm, &last_server);
        if (hwm > server_hwm)
            server_hwm = hwm;
        note("attach.client.rss, attach.server.rss: peak resident sets in "
             "KiB against a limit of %d KiB (64 MiB): a ratio below 1 meets "
             "the target", RSS_LIMIT_KIB);
        if (want_crss)
            report("attach.client.rss", (double)crss, "KiB", RSS_LIMIT_KIB, 0);
        if (want_srss)
            report("attach.server.rss", (double)server_hwm, "KiB",
                   RSS_LIMIT_KIB, 0);
    }
    t_cli = now();
    if (want_resume) {
        double ratio;
        if (last_server) {
            rm_tree(last_server);
            free(last_server);
        }
        ratio = resume_run(&last_server);
        note("attach.resume.ratio: bytes sent / attachment size against a "
             "limit of %.2f: a ratio below 1 meets the target", RESUME_LIMIT);
        report("attach.resume.ratio", ratio, "ratio", RESUME_LIMIT, 3);
    }
    t_resume = now();
    if (fetch && last_server)
        fetch_back(last_server);
    else if (!fetch)
        note("fetch-back check skipped (it runs with --quick or --verify)");
    if (last_server) {
        rm_tree(last_server);
        free(last_server);
    }
    note("wall time: setup %.0f s, attach.upload rounds %.0f s, "
         "client.rss upload %.0f s, resume %.0f s, fetch-back %.0f s; "
         "total %.0f s", t_setup - t_start, t_up - t_setup, t_cli - t_up,
         t_resume - t_cli, now() - t_resume, now() - t_start);
    return 0;
}
