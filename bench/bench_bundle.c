/*
 * bench_bundle.c - a courier bundle carrying an attachment (run it with
 * scripts/bench).
 *
 *   bench_bundle [--quick] [--dir DIR] [--size MIB] [--fieldvault PATH]
 *                [NAME...]
 *
 * Each measurement prints one JSON object on its own line on stdout, as the
 * other benchmarks do: {"bench": NAME, "value": X, "unit": U, "limit": Y,
 * "ratio": X/Y}. Everything else goes to stderr. Scratch files go in one
 * new directory under DIR (default $TMPDIR, else /tmp), removed at exit.
 * Sizes are binary, throughput in MiB/s.
 *
 * The starting point (not timed): a server runs on 127.0.0.1 only while
 * the organisation is set up. Vault B (FV_KDF_TEST) enrolls with the admin
 * invite and creates the organisation key (fv_org_init); vault A enrolls
 * as a field device, and B certifies it (fv_org_device_list, as its next sync
 * would), so B admits what A signs instead of keeping it apart. A then
 * holds one record with one attachment of S bytes (1 GiB; --quick 64 MiB;
 * --size), its bytes streamed from a pseudo-random generator through
 * fv_attachment_source.read, never synced. Both vaults are closed and
 * synced to disk.
 *
 * bundle.attach (MiB/s; target ratio >= 0.3). The Release CLI in child
 * processes: `fieldvault bundle export FILE` on A, then `fieldvault bundle
 * import FILE` on B, each timed from fork to exit (start, unlock, work,
 * close: what a courier waits for). value = S / (t_export + t_import). The
 * import must report every chunk added. The limit is a plain copy of the
 * bundle file's bytes in the same run (1 MiB reads and writes, fsync'd, as
 * the bundle's own writes are): limit = S / t_copy. A bundle moves the
 * bytes twice (the vault to the file, the file to the other vault) and
 * checks every chunk, the copy moves them once: a ratio near 0.5 is the
 * most a two-step transfer can reach.
 *
 * bundle.attach.rss (KiB; "limit" 65536 = 64 MiB, ratio = value / limit:
 * below 1 meets the target). The larger of the two children's peak
 * resident sets (ru_maxrss from wait4: each child's VmHWM over its whole
 * life). Memory must stay flat in the bundle's size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define RSS_LIMIT_KIB 65536.0

static const char usage[] =
    "usage: bench_bundle [--quick] [--dir DIR] [--size MIB] "
    "[--fieldvault PATH] [NAME...]\n"
    "  NAME: bundle.attach, bundle.attach.rss (a prefix; none: all)\n";

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* The first line of a file (the CLI's JSON answer), into line. */
static void first_line(const char *path, char *line, size_t cap)
{
    FILE *f = fopen(path, "r");
    line[0] = '\0';
    if (f && fgets(line, (int)cap, f))
        line[strcspn(line, "\n")] = '\0';
    if (f)
        fclose(f);
}

/* The value of a JSON number field in one line of the CLI's output. */
static unsigned long long json_u64(const char *line, const char *key)
{
    char k[64];
    const char *p;
    snprintf(k, sizeof k, "\"%s\": ", key);
    if (!(p = strstr(line, k)))
        die("no %s in %s", key, line);
    return strtoull(p + strlen(k), NULL, 10);
}

static int count_device(const fv_device_info *d, void *payload)
{
    (void)d;
    ++*(int *)payload;
    return 0;
}

/* Coordinator B (with the organisation key) and field device A, enrolled
 * with a server that runs only meanwhile; B certifies A. */
static void organisation(const char *a, const char *b)
{
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    char *server = scratch_path("server"), *log = path_join(scratch, "serve.log");
    char *admin = server_create(server), addr[64];
    int role = 0, ndevices = 0;
    pid_t pid = serve_start(server, log, addr, sizeof addr);
    fv_vault *v = create_vault(b);

    so.server = addr;
    fv_check(fv_enroll(v, &role, admin, &so), v, "fv_enroll (admin invite)");
    if (role != FV_ROLE_COORDINATOR)
        die("the admin invite gave role %d, not coordinator", role);
    fv_check(fv_org_init(v, &so), v, "fv_org_init");
    fv_vault_close(field_device(server, addr, a, "courier"));
    fv_check(fv_org_device_list(v, &so, count_device, &ndevices), v,
             "fv_org_device_list");
    if (ndevices != 2)
        die("the organisation lists %d devices, not 2", ndevices);
    fv_vault_close(v);
    long rss;
    serve_stop(pid, log, &rss);
    free(admin);
    free(server);
    free(log);
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"bundle.attach", "bundle.attach.rss"};
    size_t size_mib = 0;
    const struct bench_flag flags[] = {{.name = "--size", .count = &size_mib},
                                       {.name = NULL}};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_attachment_source src;
    unsigned char record[FV_ID_BYTES];
    char *a, *b, *pass, *file, *copy, *out, line[1024];
    uint64_t size, nchunks;
    long rss_exp = 0, rss_imp = 0;
    double t_exp, t_imp, t_copy, t0;
    struct gen g;
    fv_vault *v;
    FILE *pf;

    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_bundle", usage,
                                            known, sizeof known / sizeof known[0],
                                            flags);
    if (!size_mib)
        size_mib = cl.quick ? 64 : 1024;
    if (size_mib > 7 * 1024)
        die("--size: at most 7168 MiB (one record's chunk list)");
    size = (uint64_t)size_mib << 20;
    make_scratch(cl.dir);

    /* The starting point. */
    a = scratch_path("a");
    b = scratch_path("b");
    pass = path_join(scratch, "passphrase");
    file = path_join(scratch, "stick.fvb");
    copy = path_join(scratch, "copy.fvb");
    out = path_join(scratch, "cli.out");
    if (!(pf = fopen(pass, "w")) || fputs(PASSPHRASE "\n", pf) < 0 ||
        fclose(pf) != 0)
        die("cannot write %s", pass);
    organisation(a, b);
    note("adding a record with a %.0f MiB attachment to vault A", mib(size));
    v = open_vault(a);
    gen_init(&g, 0x9e3779b97f4a7c15ull, size);
    memset(&src, 0, sizeof src);
    src.name = "interview.bin";
    src.read = gen_read;
    src.read_payload = &g;
    in.title = "Interview, district 4";
    in.attachments = &src;
    in.nattachments = 1;
    t0 = now();
    fv_check(fv_record_add(v, record, &in), v, "fv_record_add");
    note("added in %.1f s", now() - t0);
    fv_vault_close(v);
    sync();
    nchunks = (size + FV_CHUNK_BYTES - 1) / FV_CHUNK_BYTES;

    {
        const char *exp[] = {"fieldvault", "--vault", a, "--passphrase-file",
                             pass, "bundle", "export", file, "--json", NULL};
        const char *imp[] = {"fieldvault", "--vault", b, "--passphrase-file",
                             pass, "bundle", "import", file, "--json", NULL};
        t_exp = run_cli(exp, out, &rss_exp);
        first_line(out, line, sizeof line);
        note("export: %.2f s (%.1f MiB/s), peak RSS %ld KiB: %s", t_exp,
             mib(size) / t_exp, rss_exp, line);
        if (json_u64(line, "chunks") != nchunks)
            die("the bundle holds %llu chunks, not %llu",
                json_u64(line, "chunks"), (unsigned long long)nchunks);
        t_imp = run_cli(imp, out, &rss_imp);
        first_line(out, line, sizeof line);
        note("import: %.2f s (%.1f MiB/s), peak RSS %ld KiB: %s", t_imp,
             mib(size) / t_imp, rss_imp, line);
        if (json_u64(line, "chunks_added") != nchunks)
            die("the import added %llu chunks, not %llu",
                json_u64(line, "chunks_added"), (unsigned long long)nchunks);
    }
    /* The limit: the same bytes copied once, in the same run. */
    t0 = now();
    copy_file(file, copy, 0600);
    t_copy = now() - t0;
    note("plain copy of the %.0f MiB bundle: %.2f s (%.1f MiB/s)",
         mib(size), t_copy, mib(size) / t_copy);
    unlink(copy);

    if (wanted("bundle.attach"))
        report("bundle.attach", mib(size) / (t_exp + t_imp), "MiB/s",
               mib(size) / t_copy, 1);
    if (wanted("bundle.attach.rss"))
        report("bundle.attach.rss",
               (double)(rss_exp > rss_imp ? rss_exp : rss_imp), "KiB",
               RSS_LIMIT_KIB, 0);
    free(a);
    free(b);
    free(pass);
    free(file);
    free(copy);
    free(out);
    return 0;
}
