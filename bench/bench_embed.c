/*
 * bench_embed.c - the library's resident memory, for apps on phones (run it
 * with scripts/bench embed).
 *
 *   bench_embed [--quick] [--dir DIR] [--fieldvault PATH] [NAME...]
 *
 * A NAME selects the measurements whose name starts with it; none runs them
 * all. Each prints one JSON line on stdout, without a limit:
 *
 *   {"bench": NAME, "value": X, "unit": "MiB"}
 *
 * Everything else goes to stderr. Scratch files go in one new directory
 * under DIR (default $TMPDIR, else /tmp), removed at exit.
 *
 * Each figure is measured in a child forked for it alone, as what the
 * library adds to the process: the child resets its peak resident set
 * (/proc/self/clear_refs, "5"), reads its resident set (VmRSS) as the
 * baseline, does the work, and reports its peak (VmHWM) minus the
 * baseline. The server is the `fieldvault serve` process (--fieldvault
 * PATH; default: `fieldvault` next to this program), so its memory is not
 * counted. The setup (not measured): a coordinator enrolls with the admin
 * invite and creates the organisation key, so that records are sealed to
 * the device and the organisation as in real use.
 *
 *   embed.rss.open    fv_vault_open of a vault made with FV_KDF_PHONE (an
 *                     empty vault: what opening costs, not its records):
 *                     the peak, Argon2id's memory included.
 *   embed.rss.steady  the same child after the open: what the open handle
 *                     holds (VmRSS minus the baseline), once a listing of
 *                     the vault's records has run.
 *   embed.rss.sync    one fv_sync of a field device (FV_KDF_TEST, opened
 *                     before the baseline) that pushes 1,000 records (a
 *                     title, a 300-byte narrative, 2 fields, a tag).
 *   embed.rss.attach.up    one fv_sync that uploads a record with an
 *                     attachment of 64 MiB (--quick 16 MiB).
 *   embed.rss.attach.down  the coordinator's fv_sync that downloads it,
 *                     then fv_attachment_read of every byte (checked).
 *
 * Two timings, with a limit:
 *
 *   embed.unlock.phone  fv_vault_open of a FV_KDF_PHONE vault: the median of
 *                     3 of its CPU time (Argon2id uses one core: on an idle
 *                     device, the wait), in seconds, against the limit of
 *                     1 s; the wall time is in the note.
 *   embed.java.add, embed.java.list  records per second through the Java
 *                     binding (bench/java/.../JavaBench.java in a JVM)
 *                     against the C API in this process in the same run,
 *                     the same records (title, 300-byte narrative, 2
 *                     fields, a tag): 2,000 adds (--quick 400), each
 *                     durable on return, in 40 steps (--quick 16), then
 *                     16 listings (--quick 4), the two sides alternating
 *                     step by step
 *                     and by turns going first; each side's rate is its
 *                     median step's. Each side first warms up on a vault
 *                     of its own (6,000 adds and 8 listings; --quick
 *                     400 and 16): the JVM's compiler has then finished
 *                     with the binding's code, as in an app that has run
 *                     for a while; the warm-up vaults live on /dev/shm
 *                     when it exists (their fsyncs would only slow the
 *                     warm-up), the timed ones beside the other scratch
 *                     files.
 *                     Built only when CMake found a JDK.
 */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"

static const char usage[] =
    "usage: bench_embed [--quick] [--dir DIR] [--fieldvault PATH] [NAME...]\n"
    "  embed.rss.open, embed.rss.steady, embed.rss.sync, embed.rss.attach.up,\n"
    "  embed.rss.attach.down, embed.unlock.phone, embed.java.add, embed.java.list\n";

static struct {
    int quick;
    const char *base;
} opt;

#define SYNC_RECORDS 1000

static double mib(long kib) { return (double)kib / 1024.0; }

/* ---- a measured child ---------------------------------------------------- */

/* The figures a child sends back, in KiB: peak growth, and resident growth
 * at the end. */
struct figures {
    long peak, steady;
};

typedef void (*child_fn)(void *arg, struct figures *f);

/* Runs fn in a forked child and returns its figures; dies if it fails. */
static struct figures in_child(child_fn fn, void *arg, const char *what)
{
    struct figures f = {-1, -1};
    int fds[2], status;
    pid_t pid;
    fflush(NULL);
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        fn(arg, &f);
        if (write(fds[1], &f, sizeof f) != (ssize_t)sizeof f)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], &f, sizeof f) != (ssize_t)sizeof f)
        f.peak = -1;
    close(fds[0]);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || f.peak < 0)
        die("%s: the measuring child failed", what);
    return f;
}

/* Call at the start of the measured part: the baseline. */
static long begin(void)
{
    long rss;
    if (reset_peak_rss() != 0)
        die("cannot reset the peak resident set (/proc/self/clear_refs): %s",
            strerror(errno));
    rss = status_kib(getpid(), "VmRSS");
    if (rss < 0)
        die("cannot read /proc/self/status");
    return rss;
}

static void end(long base, struct figures *f)
{
    f->peak = status_kib(getpid(), "VmHWM") - base;
    f->steady = status_kib(getpid(), "VmRSS") - base;
}

/* ---- the cases ----------------------------------------------------------- */

struct ctx {
    const char *addr;
    char *phone_dir, *device_dir, *big_dir, *coord_dir;
    uint64_t big_bytes;
    unsigned char big_id[FV_ID_BYTES];
    unsigned char big_hash[crypto_generichash_BYTES];
};

static int count_cb(const fv_record *r, void *payload)
{
    (void)r;
    (*(size_t *)payload)++;
    return 0;
}

static void case_open(void *arg, struct figures *f)
{
    struct ctx *c = arg;
    fv_vault *v = NULL;
    size_t n = 0;
    long base = begin(), peak;
    double t = now();
    fv_check(fv_vault_open(&v, c->phone_dir, PASSPHRASE, strlen(PASSPHRASE)),
             NULL, "fv_vault_open (phone profile)");
    t = now() - t;
    peak = status_kib(getpid(), "VmHWM") - base;
    note("phone profile: fv_vault_open took %.2f s", t);
    fv_check(fv_vault_list(v, count_cb, &n), v, "fv_vault_list");
    end(base, f);
    f->peak = peak; /* the open's; the steady state is after the listing */
    fv_vault_close(v);
}

static void case_sync(void *arg, struct figures *f)
{
    struct ctx *c = arg;
    fv_vault *v = open_vault(c->device_dir);
    fv_sync_result r = FV_SYNC_RESULT_INIT;
    long base = begin();
    r = sync_or_die(v, c->addr, "fv_sync (1,000 records)");
    end(base, f);
    if (r.pushed != SYNC_RECORDS)
        die("the sync pushed %llu records, not %d",
            (unsigned long long)r.pushed, SYNC_RECORDS);
    fv_vault_close(v);
}

static void case_attach_up(void *arg, struct figures *f)
{
    struct ctx *c = arg;
    fv_vault *v = open_vault(c->big_dir);
    fv_sync_result r = FV_SYNC_RESULT_INIT;
    long base = begin();
    r = sync_or_die(v, c->addr, "fv_sync (attachment upload)");
    end(base, f);
    if (r.chunks_sent == 0)
        die("the sync sent no attachment chunk");
    fv_vault_close(v);
}

static void case_attach_down(void *arg, struct figures *f)
{
    struct ctx *c = arg;
    fv_vault *v = open_vault(c->coord_dir);
    struct hash_sink h;
    unsigned char got[crypto_generichash_BYTES];
    fv_sync_result r = FV_SYNC_RESULT_INIT;
    long base = begin();
    r = sync_or_die(v, c->addr, "fv_sync (attachment download)");
    hash_sink_init(&h);
    fv_check(fv_attachment_read(v, c->big_id, "evidence.bin", hash_write, &h,
                                NULL, NULL),
             v, "fv_attachment_read");
    end(base, f);
    crypto_generichash_final(&h.hash, got, sizeof got);
    if (r.chunks_received == 0 || h.bytes != c->big_bytes ||
        sodium_memcmp(got, c->big_hash, sizeof got) != 0)
        die("the downloaded attachment differs from the one added");
    fv_vault_close(v);
}

/* ---- setup --------------------------------------------------------------- */

static void add_big_record(fv_vault *v, struct ctx *c)
{
    struct gen g;
    fv_attachment_source a = {"evidence.bin", NULL, gen_read, &g};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    gen_init(&g, 0x5eed5eedull, c->big_bytes);
    in.title = "video of the checkpoint";
    in.attachments = &a;
    in.nattachments = 1;
    fv_check(fv_record_add(v, c->big_id, &in), v, "fv_record_add (attachment)");
    crypto_generichash_final(&g.hash, c->big_hash, sizeof c->big_hash);
}

static void coordinator(const char *dir, const char *admin, const char *addr)
{
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_vault *v = create_vault(dir);
    int role = 0;
    so.server = addr;
    fv_check(fv_enroll(v, &role, admin, &so), v, "fv_enroll (admin invite)");
    if (role != FV_ROLE_COORDINATOR)
        die("the admin invite gave role %d", role);
    fv_check(fv_org_init(v, &so), v, "fv_org_init");
    fv_vault_close(v);
}

static void report_mib(const char *name, long kib)
{
    if (wanted(name))
        report(name, mib(kib), "MiB", 0, 1);
}

static double median3(double *t)
{
    double x;
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (t[j] < t[i]) {
                x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    return t[1];
}

/* embed.unlock.phone: fv_vault_open of a phone-profile vault, the median of
 * 3: the CPU time it costs (Argon2id runs on one core, so on an idle
 * device this is the wait), with the wall time beside it in the note (it
 * grows with the machine's load). */
static void unlock_phone(const char *dir)
{
    double wall[3], cpu[3];
    fv_vault *v;
    for (int i = 0; i < 3; i++) {
        wall[i] = now();
        cpu[i] = self_cpu();
        fv_check(fv_vault_open(&v, dir, PASSPHRASE, strlen(PASSPHRASE)), NULL,
                 "fv_vault_open (phone profile)");
        cpu[i] = self_cpu() - cpu[i];
        wall[i] = now() - wall[i];
        fv_vault_close(v);
    }
    note("phone profile unlock: %.3f s CPU, %.3f s wall (medians of 3)", median3(cpu),
         median3(wall));
    report("embed.unlock.phone", median3(cpu), "s", 1.0, 3);
}

#ifdef FV_BENCH_JAVA
static int count_title(const fv_record *r, void *payload)
{
    *(size_t *)payload += strlen(r->title);
    return 0;
}

/* JavaBench in a JVM, its stdin and stdout ours. */
struct jvm {
    pid_t pid;
    FILE *to, *from;
};

static void jvm_start(struct jvm *j, const char *dir)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        die("pipe: %s", strerror(errno));
    if ((j->pid = fork()) < 0)
        die("fork: %s", strerror(errno));
    if (j->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        /* A heap of fixed size touched at start: the first touch of the
         * young generation's pages (page faults in every array allocation
         * until the heap has been used once) is the JVM's warm-up, not the
         * binding's cost, and a long-running app has paid it. */
        execl(FV_BENCH_JAVA, FV_BENCH_JAVA, "-Xms256m", "-Xmx256m", "-XX:+AlwaysPreTouch",
              "-Dfieldvault.jni.path=" FV_BENCH_JNI, "-cp",
              FV_BENCH_JAVA_CP, "org.fieldvault.bench.JavaBench", dir, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (!(j->to = fdopen(in[1], "w")) || !(j->from = fdopen(out[0], "r")))
        die("fdopen: %s", strerror(errno));
}

/* Sends one command; returns the seconds JavaBench says it took, and in
 * *cpu its thread's CPU seconds. */
static double jvm_do(struct jvm *j, const char *cmd, double *cpu)
{
    char line[128];
    double t = -1, c = -1;
    fprintf(j->to, "%s\n", cmd);
    fflush(j->to);
    if (!fgets(line, sizeof line, j->from) || sscanf(line, "t %lf %lf", &t, &c) != 2 || t < 0)
        die("JavaBench failed");
    if (cpu)
        *cpu = c;
    return t;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void jvm_stop(struct jvm *j)
{
    int st;
    fputs("quit\n", j->to);
    fclose(j->to);
    fclose(j->from);
    if (waitpid(j->pid, &st, 0) != j->pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("JavaBench exited with status %d", st);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* embed.java.add, embed.java.list: the same records added (each durable)
 * and listed through the C API in this process and through the binding in
 * a JVM, in alternating steps (C first, then Java first, ...) so that the
 * machine's changing load falls on both; after a warm-up on each side.
 * Each side's rate is that of its median step. */
static void java_vs_c(void)
{
    /* Short steps (50 adds), so that both sides see the same moment of
     * the machine's load and of the disk's fsync latency. */
    const size_t n = opt.quick ? 400 : 2000, steps = opt.quick ? 16 : 40, per = n / steps;
    const size_t rounds = opt.quick ? 4 : 16, warm = opt.quick ? n : 3 * n;
    const size_t warm_lists = opt.quick ? 16 : 8; /* 6,400 and 48,000 records */
    double c_add, c_list, j_add, j_list, t, ct[40], jt[40], cc[40], jc[40];
    char cmd[600];
    char *dir = scratch_path("java"), *cdir = scratch_path("c-timed"), *wdir, *jwdir;
    char shm[] = "/dev/shm/fv-bench-warm-XXXXXX";
    const char *warm_base = mkdtemp(shm) ? shm : scratch;
    struct rec_in rec;
    size_t seen = 0, next = 0;
    struct jvm j;
    fv_vault *v, *w;

    wdir = path_join(warm_base, "c-warm");
    jwdir = path_join(warm_base, "java-warm");
    if (mkdir(dir, 0700) != 0)
        die("mkdir %s: %s", dir, strerror(errno));
    jvm_start(&j, dir);
    snprintf(cmd, sizeof cmd, "warm %zu %zu %s", warm, warm_lists, jwdir);
    jvm_do(&j, cmd, NULL);
    w = create_vault(wdir);
    for (size_t i = 0; i < warm; i++) {
        make_record(&rec, 1, i);
        fv_check(fv_record_add(w, NULL, &rec.in), w, "fv_record_add");
    }
    for (size_t r = 0; r < warm_lists; r++)
        fv_check(fv_vault_list(w, count_title, &seen), w, "fv_vault_list");
    fv_vault_close(w);
    if (warm_base == shm)
        rm_tree(shm);

    v = create_vault(cdir);
    snprintf(cmd, sizeof cmd, "add %zu", per);
    for (size_t s = 0; s < steps; s++) {
        if (s % 2)
            jt[s] = jvm_do(&j, cmd, &jc[s]);
        t = now();
        cc[s] = thread_cpu();
        for (size_t i = 0; i < per; i++, next++) {
            make_record(&rec, 1, next);
            fv_check(fv_record_add(v, NULL, &rec.in), v, "fv_record_add");
        }
        cc[s] = thread_cpu() - cc[s];
        ct[s] = now() - t;
        if (s % 2 == 0)
            jt[s] = jvm_do(&j, cmd, &jc[s]);
    }
    c_add = (double)per / median(ct, steps);
    j_add = (double)per / median(jt, steps);
    note("add, CPU time: C API %.0f/s, Java %.0f/s (ratio %.3f)", per / median(cc, steps),
         per / median(jc, steps), median(cc, steps) / median(jc, steps));
    for (size_t r = 0; r < rounds; r++) {
        if (r % 2)
            jt[r] = jvm_do(&j, "list 1", &jc[r]);
        t = now();
        cc[r] = thread_cpu();
        fv_check(fv_vault_list(v, count_title, &seen), v, "fv_vault_list");
        cc[r] = thread_cpu() - cc[r];
        ct[r] = now() - t;
        if (r % 2 == 0)
            jt[r] = jvm_do(&j, "list 1", &jc[r]);
    }
    c_list = (double)(steps * per) / median(ct, rounds);
    j_list = (double)(steps * per) / median(jt, rounds);
    note("list, CPU time: C API %.0f/s, Java %.0f/s (ratio %.3f)",
         (double)(steps * per) / median(cc, rounds), (double)(steps * per) / median(jc, rounds),
         median(cc, rounds) / median(jc, rounds));
    fv_vault_close(v);
    jvm_stop(&j);
    if (seen == 0)
        die("nothing listed");
    note("%zu records in %zu alternating steps, %zu listings: C API add %.0f/s list %.0f/s; "
         "Java add %.0f/s list %.0f/s",
         steps * per, steps, rounds, c_add, c_list, j_add, j_list);
    if (wanted("embed.java.add"))
        report("embed.java.add", j_add, "records/s", c_add, 0);
    if (wanted("embed.java.list"))
        report("embed.java.list", j_list, "records/s", c_list, 0);
    free(dir);
    free(cdir);
    free(wdir);
    free(jwdir);
}
#endif

static void run(void)
{
    struct ctx c;
    char addr[64], *sdir = scratch_path("server"), *log = scratch_path("serve.log");
    char *admin;
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    fv_vault *v;
    pid_t spid;
    long srv_rss;
    struct figures f;
    double t;

    memset(&c, 0, sizeof c);
    c.big_bytes = (opt.quick ? 16u : 64u) * 1024 * 1024;
    c.phone_dir = scratch_path("phone");
    c.device_dir = scratch_path("device");
    c.big_dir = scratch_path("camera");
    c.coord_dir = scratch_path("coordinator");

    if (wanted("embed.rss.open") || wanted("embed.rss.steady")) {
        co.kdf_profile = FV_KDF_PHONE;
        t = now();
        fv_check(fv_vault_create(&v, c.phone_dir, PASSPHRASE,
                                 strlen(PASSPHRASE), &co),
                 NULL, "fv_vault_create (phone profile)");
        fv_vault_close(v);
        note("phone profile: fv_vault_create took %.2f s", now() - t);
        f = in_child(case_open, &c, "open");
        report_mib("embed.rss.open", f.peak);
        report_mib("embed.rss.steady", f.steady);
    }
    if (wanted("embed.unlock.phone")) {
        char *pdir = scratch_path("phone-unlock");
        co.kdf_profile = FV_KDF_PHONE;
        fv_check(fv_vault_create(&v, pdir, PASSPHRASE, strlen(PASSPHRASE), &co),
                 NULL, "fv_vault_create (phone profile)");
        fv_vault_close(v);
        unlock_phone(pdir);
        free(pdir);
    }
    if (wanted("embed.java.add") || wanted("embed.java.list")) {
#ifdef FV_BENCH_JAVA
        java_vs_c();
#else
        note("embed.java.*: no JDK was found at configure time; not measured");
#endif
    }
    if (!wanted("embed.rss.sync") && !wanted("embed.rss.attach.up") &&
        !wanted("embed.rss.attach.down"))
        goto done;

    admin = server_create(sdir);
    spid = serve_start(sdir, log, addr, sizeof addr);
    c.addr = addr;
    coordinator(c.coord_dir, admin, addr);
    free(admin);
    if (wanted("embed.rss.sync")) {
        v = field_device(sdir, addr, c.device_dir, "device");
        add_records(v, 1, 0, SYNC_RECORDS);
        fv_vault_close(v);
        f = in_child(case_sync, &c, "sync");
        report_mib("embed.rss.sync", f.peak);
    }
    if (wanted("embed.rss.attach.up") || wanted("embed.rss.attach.down")) {
        v = field_device(sdir, addr, c.big_dir, "camera");
        add_big_record(v, &c);
        fv_vault_close(v);
        note("attachment: %llu MiB", (unsigned long long)(c.big_bytes >> 20));
        f = in_child(case_attach_up, &c, "attachment upload");
        report_mib("embed.rss.attach.up", f.peak);
        if (wanted("embed.rss.attach.down")) {
            f = in_child(case_attach_down, &c, "attachment download");
            report_mib("embed.rss.attach.down", f.peak);
        }
    }
    serve_stop(spid, log, &srv_rss);
done:
    free(sdir);
    free(log);
    free(c.phone_dir);
    free(c.device_dir);
    free(c.big_dir);
    free(c.coord_dir);
}

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "embed.rss.open", "embed.rss.steady", "embed.rss.sync",
        "embed.rss.attach.up", "embed.rss.attach.down", "embed.unlock.phone",
        "embed.java.add", "embed.java.list"};
    struct sigaction sa;

    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_embed", usage,
                                            known, sizeof known / sizeof known[0],
                                            NULL);
    opt.quick = cl.quick;
    opt.base = cl.dir;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (sodium_init() < 0)
        die("libsodium failed to start");
    make_scratch(opt.base);
    note("FieldVault %s, SQLite %s, libsodium %s; scratch %s", fv_version(),
         sqlite3_libversion(), sodium_version_string(), scratch);
    run();
    return 0;
}
