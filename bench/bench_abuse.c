/*
 * bench_abuse.c - what one device or one address can make the server spend
 * (sync.abuse.*), against a `fieldvault serve` process on 127.0.0.1:
 *
 *   sync.abuse.frames.rss   the server's peak resident set (VmHWM, MiB)
 *                           while one enrolled device opens 1,000
 *                           connections, each holding all but the last byte
 *                           of a frame of 1 MiB - 1; limit 128 MiB
 *   sync.abuse.frames.ok    the share of 29 legitimate syncs (fv_sync, one
 *                           new record each) that succeed meanwhile; limit
 *                           0.95
 *   sync.abuse.sockets.ok   the same share while 2,000 idle TCP sockets are
 *                           reopened as fast as the server drops them
 *
 * A share under 0.95 is reported as it is: the line is the measurement.
 * --quick: 200 frames, 1,000 sockets. Not part of the library.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "crypto.h"
#include "proto.h"
#include "server.h"
#include "tls.h"

#define SYNCS 29

static struct {
    int quick;
    const char *base, *fieldvault;
    int frames, sockets;
} opt;

/* Thousands of sockets: the soft descriptor limit up to the hard one. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            note("cannot raise the descriptor limit: %s", strerror(errno));
    }
}

/* ---- the legitimate devices ------------------------------------------- */

struct legit {
    fv_vault *v;
    const char *addr;
    pthread_t tid;
    int rc;
    uint64_t pushed;
};

static void *legit_main(void *arg)
{
    struct legit *l = arg;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    so.server = l->addr;
    so.timeout_ms = 60000; /* generous: the machine is loaded */
    l->rc = fv_sync(l->v, &res, &so);
    l->pushed = res.pushed;
    return NULL;
}

/* Each device adds a record and syncs, all at once: the share that pushed
 * their record. */
static double legit_round(struct legit *ls, size_t *next_record)
{
    int ok = 0;
    for (int i = 0; i < SYNCS; i++) {
        add_records(ls[i].v, (unsigned)(100 + i), (*next_record)++, 1);
        if (pthread_create(&ls[i].tid, NULL, legit_main, &ls[i]) != 0)
            die("cannot start a sync thread");
    }
    for (int i = 0; i < SYNCS; i++) {
        pthread_join(ls[i].tid, NULL);
        if (ls[i].rc == FV_OK && ls[i].pushed == 1)
            ok++;
        else
            note("a legitimate sync failed: %s (%s)", fv_strerror(ls[i].rc),
                 fv_vault_errmsg(ls[i].v));
    }
    return (double)ok / SYNCS;
}

/* ---- the attacks ------------------------------------------------------ */

struct attacker {
    unsigned char pk[32], sk[64], box[32], box_sk[32], pin[32];
    char port[8];
};

static int write_all(fv_tls_conn *c, const unsigned char *p, size_t n)
{
    double end = now() + 20;
    while (n > 0 && now() < end) {
        size_t w = 0;
        int rc = fv_tls_write(c, p, n, &w);
        if (rc == FV_OK) {
            p += w;
            n -= w;
        } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
            struct pollfd pf = {fv_tls_fd(c),
                                rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT, 0};
            poll(&pf, 1, 100);
        } else {
            return rc;
        }
    }
    return n == 0 ? FV_OK : FV_ENET;
}

/* Connects and says HELLO (enrolling with `token` if given). */
static fv_tls_conn *attacker_hello(const struct attacker *a,
                                   const unsigned char *token)
{
    fv_tls_conn *t = NULL;
    unsigned char binding[32], sig[64], *tbs = NULL;
    size_t len;
    fv_out o;
    int rc;
    if (fv_tls_connect(&t, "127.0.0.1", a->port, a->pin, 20000) != FV_OK)
        return NULL;
    fv_tls_binding(t, binding);
    if (fv_hello_tbs(&tbs, &len, a->pin, binding, a->pk, token,
                     token ? a->box : NULL) != FV_OK)
        die("fv_hello_tbs");
    fv_sign(sig, tbs, len, a->sk);
    fv_enc_free_buf(tbs, len);
    fv_out_init(&o);
    if (fv_send_hello(&o, a->pk, sig, token, token ? a->box : NULL) != FV_OK)
        die("fv_send_hello");
    rc = write_all(t, o.buf + o.start, o.len - o.start);
    fv_out_free(&o);
    if (rc != FV_OK) {
        fv_tls_close(t);
        return NULL;
    }
    return t;
}

struct frames {
    const struct attacker *a;
    int n, sent;
    fv_tls_conn **held;
    pthread_t tid;
};

static void *frames_main(void *arg)
{
    struct frames *f = arg;
    static const unsigned char hdr[4] = {0x00, 0x0f, 0xff, 0xff};
    unsigned char *body = xmalloc(FV_FRAME_MAX - 2);
    memset(body, 0x5c, FV_FRAME_MAX - 2);
    for (int i = 0; i < f->n; i++) {
        fv_tls_conn *t = attacker_hello(f->a, NULL);
        if (!t)
            continue;
        f->held[i] = t; /* held open until the end of the attack */
        if (write_all(t, hdr, sizeof hdr) == FV_OK &&
            write_all(t, body, FV_FRAME_MAX - 2) == FV_OK)
            f->sent++;
    }
    free(body);
    return NULL;
}

struct sockets {
    int port, n;
    atomic_int stop;
    long opened;
    pthread_t tid;
};

static void *sockets_main(void *arg)
{
    struct sockets *f = arg;
    struct pollfd *pf = calloc((size_t)f->n, sizeof *pf);
    struct sockaddr_in sa;
    if (!pf)
        die("out of memory");
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)f->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < f->n; i++)
        pf[i].fd = -1;
    while (!atomic_load(&f->stop)) {
        for (int i = 0; i < f->n; i++) {
            if (pf[i].fd >= 0)
                continue;
            pf[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (pf[i].fd < 0)
                break;
            if (connect(pf[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
                errno != EINPROGRESS) {
                close(pf[i].fd);
                pf[i].fd = -1;
                continue;
            }
            pf[i].events = POLLIN;
            f->opened++;
        }
        if (poll(pf, (nfds_t)f->n, 20) <= 0)
            continue;
        for (int i = 0; i < f->n; i++)
            if (pf[i].fd >= 0 && pf[i].revents) {
                close(pf[i].fd); /* dropped: open another at once */
                pf[i].fd = -1;
            }
    }
    for (int i = 0; i < f->n; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    free(pf);
    return NULL;
}

/* ---- the run ---------------------------------------------------------- */

static void bench_abuse(void)
{
    char *server_dir = scratch_path("abuse-server");
    char *log = scratch_path("serve.log");
    char *admin, *invite = NULL, addr[64];
    struct legit ls[SYNCS];
    struct attacker a;
    struct frames fr;
    struct sockets so;
    fv_invite inv;
    fv_tls_conn *t;
    size_t next_record = 0;
    double share, t0;
    long hwm, maxrss;
    pid_t pid;

    raise_nofile();
    admin = server_create(server_dir);
    free(admin);
    pid = serve_start(server_dir, log, addr, sizeof addr);
    note("sync.abuse: %s serve (pid %ld) listening on %s", opt.fieldvault,
         (long)pid, addr);
    memset(ls, 0, sizeof ls);
    for (int i = 0; i < SYNCS; i++) {
        char name[32];
        char *dir = scratch_path("abuse-device");
        snprintf(name, sizeof name, "device %d", i);
        ls[i].v = field_device(server_dir, addr, dir, name);
        ls[i].addr = addr;
        free(dir);
    }

    /* The attacker: a device enrolled like any other. */
    fv_sign_keypair(a.pk, a.sk);
    fv_box_keypair(a.box, a.box_sk);
    if (fv_server_invite(server_dir, "attacker", FV_ROLE_FIELD, INVITE_TTL,
                         &invite) != FV_OK ||
        fv_invite_decode(&inv, invite) != FV_OK)
        die("cannot make the attacker's invite");
    free(invite);
    memcpy(a.pin, inv.pin, 32);
    snprintf(a.port, sizeof a.port, "%s", strrchr(addr, ':') + 1);
    if (!(t = attacker_hello(&a, inv.token)))
        die("the attacker could not enroll");
    usleep(200000);
    fv_tls_close(t);

    if (wanted("sync.abuse.frames")) {
        memset(&fr, 0, sizeof fr);
        fr.a = &a;
        fr.n = opt.frames;
        fr.held = calloc((size_t)fr.n, sizeof *fr.held);
        if (!fr.held || pthread_create(&fr.tid, NULL, frames_main, &fr))
            die("cannot start the frame attack");
        t0 = now();
        usleep(500000); /* under way */
        share = legit_round(ls, &next_record);
        pthread_join(fr.tid, NULL);
        hwm = status_kib(pid, "VmHWM");
        note("sync.abuse.frames: %d of %d connections sent their frame in "
             "%.1f s; server peak %ld KiB", fr.sent, fr.n, now() - t0, hwm);
        for (int i = 0; i < fr.n; i++)
            fv_tls_close(fr.held[i]);
        free(fr.held);
        if (wanted("sync.abuse.frames.rss"))
            report("sync.abuse.frames.rss", (double)hwm / 1024.0, "MiB", 128,
                   1);
        if (wanted("sync.abuse.frames.ok"))
            report("sync.abuse.frames.ok", share, "share", 0.95, 3);
        sleep(1); /* the server closes them */
    }
    if (wanted("sync.abuse.sockets")) {
        memset(&so, 0, sizeof so);
        so.port = atoi(a.port);
        so.n = opt.sockets;
        atomic_init(&so.stop, 0);
        if (pthread_create(&so.tid, NULL, sockets_main, &so))
            die("cannot start the socket attack");
        t0 = now();
        usleep(500000);
        share = legit_round(ls, &next_record);
        atomic_store(&so.stop, 1);
        pthread_join(so.tid, NULL);
        note("sync.abuse.sockets: %ld sockets opened in %.1f s", so.opened,
             now() - t0);
        report("sync.abuse.sockets.ok", share, "share", 0.95, 3);
    }
    serve_stop(pid, log, &maxrss);
    for (int i = 0; i < SYNCS; i++)
        fv_vault_close(ls[i].v);
    rm_tree(server_dir);
    unlink(log);
    free(server_dir);
    free(log);
}

static const char usage[] =
    "usage: bench_abuse [--quick] [--dir DIR] [--fieldvault PATH] [NAME...]\n"
    "Runs the measurements whose names start with a NAME\n"
    "(sync.abuse.frames.rss, sync.abuse.frames.ok, sync.abuse.sockets.ok;\n"
    "none: all) against `fieldvault serve` and prints one JSON line per\n"
    "measurement. 1,000 frames and 2,000 sockets (--quick: 200 and 1,000).\n"
    "Scratch files go in a new directory under DIR (default $TMPDIR or\n"
    "/tmp) and are removed afterwards.\n";

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "sync.abuse.frames.rss", "sync.abuse.frames.ok",
        "sync.abuse.sockets.ok"};
    struct sigaction sa;

    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_abuse", usage,
                                            known, sizeof known / sizeof known[0],
                                            NULL);
    opt.quick = cl.quick;
    opt.base = cl.dir;
    opt.fieldvault = bench_fieldvault;
    opt.frames = opt.quick ? 200 : 1000;
    opt.sockets = opt.quick ? 1000 : 2000;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (fv_crypto_init() != FV_OK)
        die("libsodium failed to start");
    make_scratch(opt.base);
    note("FieldVault %s; scratch %s", fv_version(), scratch);
    bench_abuse();
    return 0;
}
