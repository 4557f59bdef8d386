/*
 * bench_coord.c - the coordinator's desk benchmark (run it with scripts/bench).
 *
 *   bench_coord [--quick] [--dir DIR] [--records N] [--devices N]
 *               [--fieldvault PATH] [NAME...]
 *
 * A NAME selects the measurements whose name starts with it (coord.export
 * selects them all). Each measurement prints one JSON object on its own
 * line on stdout, as the other benchmarks do:
 *
 *   {"bench": NAME, "value": X, "unit": U, "limit": Y, "ratio": X/Y}
 *
 * Everything else goes to stderr. Scratch files go in one new directory under
 * DIR (default $TMPDIR, else /tmp), removed at exit.
 *
 * The setup (not timed): a server (fv_server_init) runs as the Release
 * `fieldvault serve` process (--fieldvault PATH; default: `fieldvault` next to
 * this program). A first coordinator enrolls with the admin invite, creates
 * the organisation key (fv_org_init), writes it to a key file
 * (fv_org_key_export) and makes two coordinator invites (fv_org_invite).
 * D field devices (100; --quick 20) are invited (fv_server_invite), enrolled
 * (fv_enroll) and, eight at a time, given N/D records each with fv_record_add
 * (N: 100,000; --quick 10,000; a title, a 300-byte narrative, 2 fields, a
 * tag: sealed to the device and the organisation as in real use), pushed
 * with fv_sync: first a tenth of each device's records, then the rest.
 *
 * The coordinator, measured in a process of its own (this program started
 * again, so that its peak resident set is its own): a new vault (FV_KDF_TEST) enrolls with a
 * coordinator invite and imports the organisation key file
 * (fv_org_key_import), then
 *   - pull + decrypt: one fv_sync that pulls every record from the server,
 *     then one fv_vault_list that verifies, opens and decodes every record;
 *   - report_export (report/, the `export` command's writer) of every
 *     record to a JSON file, then to a CSV file.
 * It runs once when the server holds a tenth of the records (N/10) and
 * once, with another new vault, when it holds all N.
 *
 *   coord.export.pull  records/s: N / (fv_sync + fv_vault_list) of the N run
 *   coord.export.json  records/s: N / report_export (JSON)
 *   coord.export.csv   records/s: N / report_export (CSV)
 *       each beside the same limit: the N record envelopes read from the
 *       coordinator's vault file before timing, then, with libsodium alone,
 *       per envelope: its Ed25519 signature verified over its COSE
 *       Sig_structure, its id recomputed (BLAKE2b-256), the content key
 *       opened from the organisation's sealed box (crypto_box_seal_open, with
 *       the organisation's key read from the key file as docs/FORMAT.md says),
 *       the key commitment checked and the payload decrypted
 *       (XChaCha20-Poly1305). Target ratio >= 0.5.
 *   coord.export.rss.tenth  KiB: the coordinator process's peak resident
 *       set (VmHWM at its end) for the N/10 run.
 *   coord.export.rss.all    KiB: the same for the N run; its "limit" is the
 *       N/10 figure, so its ratio shows how memory grows with ten times the
 *       records (want about 1: streamed output).
 *
 * Beside the wall-clock times, stderr gives the CPU seconds of each phase,
 * of the limit and of the server during the N run: on a shared machine they
 * show what the code costs when the wall clock mostly shows the load.
 * BENCH_COORD_WRAP (environment): a command the coordinator's process runs
 * under, to profile it alone, e.g.
 *   BENCH_COORD_WRAP="valgrind --tool=callgrind" bench_coord --quick
 *   BENCH_COORD_WRAP="perf record -g -o coord.data" bench_coord --quick
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"
#include "report.h"
#include "server.h"

#define RECOVERY "the organisation's recovery passphrase"
#define BUILDERS 8 /* threads adding and pushing device records */
#define KEYFILE_BYTES 184 /* docs/FORMAT.md, "Organisation key file" */

static struct {
    int quick;
    size_t records;
    size_t devices;
    const char *base;
    const char *fieldvault;
} opt;

/* ---- the field devices ------------------------------------------------ */

struct builders {
    fv_vault **dev;
    size_t ndev;
    const char *addr;
    size_t per_device;
    int tenth; /* 1: the first tenth of each device's records; 0: the rest */
};

struct builder {
    struct builders *b;
    size_t first;
};

static void *builder_main(void *arg)
{
    struct builder *w = arg;
    struct builders *b = w->b;
    size_t tenth = b->per_device / 10;
    size_t lo = b->tenth ? 0 : tenth, hi = b->tenth ? tenth : b->per_device;

    for (size_t d = w->first; d < b->ndev; d += BUILDERS) {
        add_records(b->dev[d], (unsigned)(1000 + d), lo, hi - lo);
        fv_sync_result r = sync_or_die(b->dev[d], b->addr, "fv_sync (device)");
        if (r.pushed != hi - lo)
            die("a device pushed %llu envelopes, expected %zu",
                (unsigned long long)r.pushed, hi - lo);
    }
    return NULL;
}

static void build(struct builders *b, int tenth)
{
    pthread_t t[BUILDERS];
    struct builder w[BUILDERS];
    double t0 = now(), c0 = proc_cpu(getpid());
    b->tenth = tenth;
    for (int i = 0; i < BUILDERS; i++) {
        w[i] = (struct builder){b, (size_t)i};
        if (pthread_create(&t[i], NULL, builder_main, &w[i]) != 0)
            die("cannot start a thread");
    }
    for (int i = 0; i < BUILDERS; i++)
        pthread_join(t[i], NULL);
    note("coord.export: %zu devices added and pushed %s of their records in "
         "%.1f s (not timed; %.1f CPU seconds here)", b->ndev,
         tenth ? "a tenth" : "the rest", now() - t0, proc_cpu(getpid()) - c0);
}

/* ---- the coordinator, in a process of its own -------------------------- */

struct coord_result {
    double t_sync, t_list, t_json, t_csv;
    double cpu[4]; /* CPU seconds (user + system) of each of those */
    uint64_t pulled, listed, json, csv;
    long json_bytes, csv_bytes;
    long hwm[4]; /* VmHWM (KiB) after the pull, the list, each export */
};

static int count_cb(const fv_record *r, void *payload)
{
    if (!r->title || r->narrative_len != NARRATIVE_BYTES)
        die("fv_vault_list gave a record that was not added");
    (*(uint64_t *)payload)++;
    return 0;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* The child's work: enroll, import the key, pull, list, export twice. */
static void coordinator_child(const char *dir, const char *addr,
                              const char *invite, const char *keyfile,
                              struct coord_result *res)
{
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    report_options eo;
    char msg[REPORT_MSG_BYTES];
    fv_sync_result sr = FV_SYNC_RESULT_INIT;
    char *json = path_join(dir, "../export.json");
    char *csv = path_join(dir, "../export.csv");
    fv_vault *v = create_vault(dir);
    int role = 0;
    double t0, c0;

    so.server = addr;
    fv_check(fv_enroll(v, &role, invite, &so), v, "fv_enroll (coordinator)");
    if (role != FV_ROLE_COORDINATOR)
        die("a coordinator invite gave role %d", role);
    fv_check(fv_org_key_import(v, keyfile, RECOVERY, strlen(RECOVERY)), v,
             "fv_org_key_import");

    sr = (fv_sync_result)FV_SYNC_RESULT_INIT;
    c0 = proc_cpu(getpid());
    t0 = now();
    fv_check(fv_sync(v, &sr, &so), v, "fv_sync (coordinator)");
    res->t_sync = now() - t0;
    res->cpu[0] = proc_cpu(getpid()) - c0;
    res->pulled = sr.pulled;
    res->hwm[0] = status_kib(getpid(), "VmHWM");
    c0 = proc_cpu(getpid());
    t0 = now();
    fv_check(fv_vault_list(v, count_cb, &res->listed), v, "fv_vault_list");
    res->t_list = now() - t0;
    res->cpu[1] = proc_cpu(getpid()) - c0;
    res->hwm[1] = status_kib(getpid(), "VmHWM");

    memset(&eo, 0, sizeof eo);
    eo.format = REPORT_JSON;
    eo.path = json;
    c0 = proc_cpu(getpid());
    t0 = now();
    if (report_export(v, &res->json, msg, &eo) != FV_OK)
        die("report_export (JSON): %s", msg);
    res->t_json = now() - t0;
    res->cpu[2] = proc_cpu(getpid()) - c0;
    res->hwm[2] = status_kib(getpid(), "VmHWM");
    eo.format = REPORT_CSV;
    eo.path = csv;
    c0 = proc_cpu(getpid());
    t0 = now();
    if (report_export(v, &res->csv, msg, &eo) != FV_OK)
        die("report_export (CSV): %s", msg);
    res->t_csv = now() - t0;
    res->cpu[3] = proc_cpu(getpid()) - c0;
    res->hwm[3] = status_kib(getpid(), "VmHWM");
    res->json_bytes = file_size(json);
    res->csv_bytes = file_size(csv);
    fv_vault_close(v);
    unlink(json);
    unlink(csv);
    free(json);
    free(csv);
}

/* Runs the coordinator in a new process (this program again, with
 * --coordinator-run: a fork alone would count the pages it shares with
 * this process, devices and all, in its resident set); returns its peak
 * resident set (KiB: VmHWM just before it ends, which starts over at exec,
 * unlike ru_maxrss) and fills *res. */
static long coordinator_run(const char *dir, const char *addr,
                            const char *invite, const char *keyfile,
                            struct coord_result *res)
{
    int fds[2], status;
    char fdarg[16];
    pid_t pid;
    ssize_t n;

    memset(res, 0, sizeof *res);
    fflush(NULL);
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* BENCH_COORD_WRAP: a command the coordinator runs under, for
         * profiling ("valgrind --tool=callgrind", "perf record -g"). */
        const char *wrap = getenv("BENCH_COORD_WRAP");
        char exe[4096];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        close(fds[0]);
        if (wrap && *wrap && len > 0) {
            exe[len] = '\0';
            execl("/bin/sh", "sh", "-c", "exec $BENCH_COORD_WRAP \"$@\"",
                  "sh", exe, "--coordinator-run", dir, addr, invite, keyfile,
                  fdarg, (char *)NULL);
        } else {
            execl("/proc/self/exe", "bench_coord", "--coordinator-run", dir,
                  addr, invite, keyfile, fdarg, (char *)NULL);
        }
        _exit(127);
    }
    close(fds[1]);
    while ((n = read(fds[0], res, sizeof *res)) < 0 && errno == EINTR)
        ;
    close(fds[0]);
    if (waitpid(pid, &status, 0) != pid)
        die("waiting for the coordinator: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        n != (ssize_t)sizeof *res)
        die("the coordinator process failed (status %d)", status);
    return res->hwm[3];
}

/* bench_coord --coordinator-run DIR ADDR INVITE KEYFILE FD: the
 * coordinator's process; its results go to FD. */
static int coordinator_main(char **argv)
{
    struct coord_result res;
    int fd = (int)parse_count(argv[6], "the result descriptor");
    memset(&res, 0, sizeof res);
    bench_prog = "bench_coord (coordinator)";
    if (sodium_init() < 0)
        die("libsodium failed to start");
    coordinator_child(argv[2], argv[3], argv[4], argv[5], &res);
    return write(fd, &res, sizeof res) == (ssize_t)sizeof res ? 0 : 1;
}

/* ---- the limit: verifying and opening with libsodium alone -------------- */

/* The organisation's key pair, from the key file (docs/FORMAT.md). */
static void org_keys(const char *keyfile, unsigned char pk[32],
                     unsigned char sk[32])
{
    unsigned char f[KEYFILE_BYTES], key[32], pair[64];
    FILE *fp = fopen(keyfile, "rb");
    uint64_t ops = 0, mem = 0;

    if (!fp || fread(f, 1, sizeof f, fp) != sizeof f)
        die("cannot read the organisation key file");
    fclose(fp);
    for (int i = 7; i >= 0; i--) {
        ops = ops << 8 | f[16 + i];
        mem = mem << 8 | f[24 + i];
    }
    if (memcmp(f, "FVORGKY1", 8) != 0 ||
        crypto_pwhash(key, sizeof key, RECOVERY, strlen(RECOVERY), f + 32,
                      ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) != 0 ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(pair, NULL, NULL, f + 72,
                                                   80, f, 48, f + 48, key) != 0)
        die("limit: cannot open the organisation key file");
    memcpy(pk, pair, 32);
    memcpy(sk, pair + 32, 32);
    sodium_memzero(pair, sizeof pair);
    sodium_memzero(key, sizeof key);
}

/* One envelope as the limit opens it: its real bytes and parts. */
struct open_item {
    unsigned char id[32];
    unsigned char *env, *tbs;
    size_t env_len, tbs_len;
    const unsigned char *author, *sig, *sealed, *nonce, *ct, *commit;
    size_t ct_len;
};

/* In the body: the organisation's sealed key, the nonce, the ciphertext and
 * the key commitment. 0 on success. */
static int parse_body(struct open_item *it, const struct env_view *ev,
                      const unsigned char org_pk[32])
{
    struct cur b = {ev->body, ev->body_len, 0, 0};
    uint64_t arg, key;
    size_t len;
    if (cbor_expect(&b, 5, &arg))
        return 1;
    for (uint64_t i = 0, m = arg; i < m; i++) {
        if (cbor_expect(&b, 0, &key))
            return 1;
        if (key == 5) {
            uint64_t nr, two;
            if (cbor_expect(&b, 4, &nr))
                return 1;
            for (uint64_t r = 0; r < nr; r++) {
                const unsigned char *pk, *s;
                size_t pl;
                if (cbor_expect(&b, 4, &two) || two != 2 ||
                    cbor_bytes(&b, &pk, &pl) || cbor_bytes(&b, &s, &len) ||
                    pl != 32 || len != 80)
                    return 1;
                if (!memcmp(pk, org_pk, 32))
                    it->sealed = s;
            }
        } else if (key == 6) {
            if (cbor_bytes(&b, &it->nonce, &len) || len != 24)
                return 1;
        } else if (key == 7) {
            if (cbor_bytes(&b, &it->ct, &it->ct_len) || it->ct_len < 16)
                return 1;
        } else if (key == 9) {
            if (cbor_bytes(&b, &it->commit, &len) || len != 32)
                return 1;
        } else if (cbor_skip(&b, 0)) {
            return 1;
        }
    }
    return !it->sealed || !it->nonce || !it->ct || !it->commit || b.pos != b.n;
}

/* Every record envelope (kind 1) of the vault in `dir`, read before timing. */
static struct open_item *load_items(const char *dir, size_t *count,
                                    const unsigned char org_pk[32])
{
    char *path = path_join(dir, "vault.db");
    sqlite3 *db = open_ro(path);
    sqlite3_stmt *st = NULL;
    size_t n = 0, cap = 1024;
    struct open_item *items = xmalloc(cap * sizeof *items);
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT id, bytes FROM envelope WHERE kind = 1 "
                           "AND bytes IS NOT NULL ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        struct env_view ev;
        struct open_item *it;
        if (n == cap) {
            cap *= 2;
            if (!(items = realloc(items, cap * sizeof *items)))
                die("out of memory");
        }
        it = &items[n++];
        memset(it, 0, sizeof *it);
        if (sqlite3_column_bytes(st, 0) != 32)
            die("an envelope id is not 32 bytes");
        memcpy(it->id, sqlite3_column_blob(st, 0), 32);
        it->env = xmalloc(len);
        memcpy(it->env, sqlite3_column_blob(st, 1), len);
        it->env_len = len;
        if (parse_env(&ev, it->env, len) || parse_body(it, &ev, org_pk))
            die("cannot parse an envelope (has the format changed?)");
        it->author = ev.author;
        it->sig = ev.sig;
        it->tbs_len = sig_structure(NULL, &ev);
        it->tbs = xmalloc(it->tbs_len);
        sig_structure(it->tbs, &ev);
    }
    if (rc != SQLITE_DONE)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    *count = n;
    return items;
}

static double limit_run(const struct open_item *items, size_t n,
                        const unsigned char pk[32], const unsigned char sk[32])
{
    static const char label[] = "FieldVault key commitment v1";
    unsigned char key[32], id[32], commit[32];
    unsigned char *plain = NULL;
    size_t cap = 0;
    double t0 = now();

    for (size_t i = 0; i < n; i++) {
        const struct open_item *it = &items[i];
        if (it->ct_len - 16 > cap) {
            free(plain);
            cap = it->ct_len - 16;
            plain = xmalloc(cap);
        }
        if (crypto_sign_verify_detached(it->sig, it->tbs, it->tbs_len,
                                        it->author) != 0)
            die("limit: the signature of an envelope does not verify");
        crypto_generichash(id, sizeof id, it->env, it->env_len, NULL, 0);
        if (sodium_memcmp(id, it->id, sizeof id) != 0)
            die("limit: an envelope does not match its id");
        if (crypto_box_seal_open(key, it->sealed, 80, pk, sk) != 0)
            die("limit: a content key does not open");
        crypto_generichash(commit, sizeof commit, (const unsigned char *)label,
                           sizeof label - 1, key, sizeof key);
        if (sodium_memcmp(commit, it->commit, sizeof commit) != 0)
            die("limit: a key commitment does not match");
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, it->ct,
                                                       it->ct_len, NULL, 0,
                                                       it->nonce, key) != 0)
            die("limit: a payload does not decrypt");
    }
    t0 = now() - t0;
    sodium_memzero(key, sizeof key);
    free(plain);
    return t0;
}

/* ---- coord.export ------------------------------------------------------ */

static void check_run(const struct coord_result *r, size_t n, const char *what)
{
    note("coord.export (%s, %zu records): fv_sync %.2f s (%llu envelopes "
         "pulled), fv_vault_list %.2f s, JSON %.2f s (%ld bytes), CSV %.2f s "
         "(%ld bytes)", what, n, r->t_sync, (unsigned long long)r->pulled,
         r->t_list, r->t_json, r->json_bytes, r->t_csv, r->csv_bytes);
    note("coord.export (%s): CPU seconds (user + system): fv_sync %.2f, "
         "fv_vault_list %.2f, JSON %.2f, CSV %.2f", what, r->cpu[0],
         r->cpu[1], r->cpu[2], r->cpu[3]);
    note("coord.export (%s): peak resident set after the pull %ld KiB, the "
         "list %ld, the JSON export %ld, the CSV export %ld", what, r->hwm[0],
         r->hwm[1], r->hwm[2], r->hwm[3]);
    if (r->pulled != n || r->listed != n || r->json != n || r->csv != n)
        die("the coordinator saw %llu pulled, %llu listed, %llu + %llu "
            "exported; expected %zu each", (unsigned long long)r->pulled,
            (unsigned long long)r->listed, (unsigned long long)r->json,
            (unsigned long long)r->csv, n);
}

static void bench_export(void)
{
    size_t d = opt.devices, per = opt.records / opt.devices;
    size_t n = d * per, tenth = d * (per / 10);
    char *sdir = scratch_path("server"), *log = scratch_path("serve.log");
    char *c0dir = scratch_path("coordinator0"), *keyfile = scratch_path("org.key");
    char *invite[2] = {NULL, NULL}, *cdir[2], *admin, addr[64];
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    struct builders b;
    struct coord_result res[2];
    unsigned char pk[32], sk[32];
    struct open_item *items;
    size_t nitems;
    long rss[2], maxrss;
    double tl, cpu0;
    fv_vault *c0;
    pid_t pid;
    int role = 0;

    if (per < 10)
        die("want at least 10 records per device");
    admin = server_create(sdir);
    pid = serve_start(sdir, log, addr, sizeof addr);
    note("coord.export: %s serve (pid %ld) listening on %s", opt.fieldvault,
         (long)pid, addr);

    /* The first coordinator: the organisation key, its file, two invites. */
    so.server = addr;
    c0 = create_vault(c0dir);
    fv_check(fv_enroll(c0, &role, admin, &so), c0, "fv_enroll (admin invite)");
    fv_check(fv_org_init(c0, &so), c0, "fv_org_init");
    fv_check(fv_org_key_export(c0, keyfile, RECOVERY, strlen(RECOVERY)), c0,
             "fv_org_key_export");
    for (int i = 0; i < 2; i++) {
        fv_check(fv_org_invite(c0, &invite[i], "coordinator", FV_ROLE_COORDINATOR,
                               INVITE_TTL, &so), c0, "fv_org_invite");
        cdir[i] = scratch_path("coordinator");
    }
    fv_vault_close(c0);
    free(admin);

    note("coord.export: %zu devices of %zu records each (%zu in all)", d, per, n);
    b.dev = xmalloc(d * sizeof *b.dev);
    b.ndev = d;
    b.addr = addr;
    b.per_device = per;
    for (size_t i = 0; i < d; i++) {
        char name[32], *dir = scratch_path("device");
        snprintf(name, sizeof name, "device %zu", i);
        b.dev[i] = field_device(sdir, addr, dir, name);
        free(dir);
    }

    build(&b, 1);
    rss[0] = coordinator_run(cdir[0], addr, invite[0], keyfile, &res[0]);
    check_run(&res[0], tenth, "a tenth");
    build(&b, 0);
    cpu0 = proc_cpu(pid);
    rss[1] = coordinator_run(cdir[1], addr, invite[1], keyfile, &res[1]);
    note("coord.export: the server used %.2f CPU seconds meanwhile",
         proc_cpu(pid) - cpu0);
    check_run(&res[1], n, "all");
    for (size_t i = 0; i < d; i++)
        fv_vault_close(b.dev[i]);
    free(b.dev);

    /* The limit, on the envelopes the second coordinator holds. */
    org_keys(keyfile, pk, sk);
    items = load_items(cdir[1], &nitems, pk);
    if (nitems != n)
        die("the coordinator's vault holds %zu record envelopes, expected %zu",
            nitems, n);
    cpu0 = proc_cpu(getpid());
    tl = limit_run(items, nitems, pk, sk);
    cpu0 = proc_cpu(getpid()) - cpu0;
    note("coord.export: limit %.2f s (%.1f us/envelope), %.2f CPU seconds",
         tl, 1e6 * tl / (double)n, cpu0);

    if (wanted("coord.export.pull"))
        report("coord.export.pull", (double)n / (res[1].t_sync + res[1].t_list),
               "records/s", (double)n / tl, 1);
    if (wanted("coord.export.json"))
        report("coord.export.json", (double)n / res[1].t_json, "records/s",
               (double)n / tl, 1);
    if (wanted("coord.export.csv"))
        report("coord.export.csv", (double)n / res[1].t_csv, "records/s",
               (double)n / tl, 1);
    if (wanted("coord.export.rss.tenth"))
        report("coord.export.rss.tenth", (double)rss[0], "KiB", 0, 0);
    if (wanted("coord.export.rss.all"))
        report("coord.export.rss.all", (double)rss[1], "KiB", (double)rss[0], 0);

    serve_stop(pid, log, &maxrss);
    note("coord.export: the server's peak resident set %ld KiB", maxrss);
    for (size_t i = 0; i < nitems; i++) {
        free(items[i].env);
        free(items[i].tbs);
    }
    free(items);
    sodium_memzero(sk, sizeof sk);
    for (int i = 0; i < 2; i++) {
        fv_free(invite[i]);
        free(cdir[i]);
    }
    free(sdir);
    free(log);
    free(c0dir);
    free(keyfile);
}

/* ---- main ----------------------------------------------------------- */

static const char usage[] =
    "usage: bench_coord [--quick] [--dir DIR] [--records N] [--devices N]\n"
    "                   [--fieldvault PATH] [NAME...]\n"
    "Runs the measurements whose names start with a NAME (coord.export.pull,\n"
    "coord.export.json, coord.export.csv, coord.export.rss.tenth,\n"
    "coord.export.rss.all); none runs them all. --quick: 10,000 records from\n"
    "20 devices instead of 100,000 from 100.\n";

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "coord.export.pull", "coord.export.json", "coord.export.csv",
        "coord.export.rss.tenth", "coord.export.rss.all"};
    size_t records = 0, devices = 0;
    struct sigaction sa;

    if (argc == 7 && !strcmp(argv[1], "--coordinator-run"))
        return coordinator_main(argv);
    const struct bench_flag flags[] = {{.name = "--records", .count = &records},
                                       {.name = "--devices", .count = &devices},
                                       {.name = NULL}};
    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_coord", usage,
                                            known, sizeof known / sizeof known[0],
                                            flags);
    opt.quick = cl.quick;
    opt.base = cl.dir;
    opt.fieldvault = bench_fieldvault;
    opt.records = records ? records : opt.quick ? 10000 : 100000;
    opt.devices = devices ? devices : opt.quick ? 20 : 100;
    if (opt.devices > opt.records)
        die("want at least as many records as devices");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (sodium_init() < 0)
        die("libsodium failed to start");
    make_scratch(opt.base);
    note("FieldVault %s, SQLite %s, libsodium %s; scratch %s", fv_version(),
         sqlite3_libversion(), sodium_version_string(), scratch);
    bench_export();
    return 0;
}
