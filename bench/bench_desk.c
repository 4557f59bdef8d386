/*
 * bench_desk.c - the desk in a browser, `fieldvault desk` (run it with
 * scripts/bench).
 *
 *   bench_desk [--quick] [--dir DIR] [--records N] [--fieldvault PATH]
 *              [NAME...]
 *
 * Each measurement prints one JSON object on its own line on stdout, as the
 * other benchmarks do: {"bench": NAME, "value": X, "unit": U, "limit": Y,
 * "ratio": X/Y}. Everything else goes to stderr. Scratch files go in one
 * new directory under DIR (default $TMPDIR, else /tmp), removed at exit.
 *
 * The starting point (not timed): one vault (FV_KDF_TEST) holding N records
 * (100,000; --quick 10,000; --records) as bench_vault writes them (a
 * 300-byte narrative, 2 fields, one of 26 tags), closed and synced to
 * disk. Then the Release CLI's `fieldvault desk --no-open --idle 0` runs on
 * it as a child, and this program speaks HTTP to it on 127.0.0.1 as the
 * page does: the one-time token, then the cookie.
 *
 * desk.list.first (seconds; ratio <= 1 meets the target): the first page
 * of the record list (GET /api/records?limit=50, newest first), from the
 * desk's launch (fork: unlock, listen, the one-time token exchanged for the
 * cookie) to the last byte of the answer. The desk reads every record once
 * to build its index, from its launch on (while a browser would open). The
 * limit is `fieldvault list --json` of the same vault in the same run (a
 * child, fork to exit, output to a file): the same unlock and walk over
 * every record, printed.
 *
 * desk.list.filtered (seconds; ratio well below 1): then a filtered,
 * sorted page (one tag, state new, sorted by title, the second page), the
 * index built: what a coordinator waits for at every click. The limit is
 * `fieldvault list --json --tag T` of the same vault in the same run.
 *
 * desk.list.page (seconds): a page deep in the unfiltered list (offset
 * N/2), the index built. No limit: it must not grow with the offset.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static const char usage[] =
    "usage: bench_desk [--quick] [--dir DIR] [--records N] "
    "[--fieldvault PATH] [NAME...]\n"
    "  NAME: desk.list.first, desk.list.filtered, desk.list.page (a prefix; "
    "none: all)\n";

/* An HTTP/1.1 exchange with the desk: the status, the whole answer in
 * *resp (malloc'd), its length. */
static int http(unsigned port, const char *path, const char *cookie,
                char **resp, size_t *len)
{
    struct sockaddr_in a;
    char req[1024];
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect to the desk: %s", strerror(errno));
    int k = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s%s%s"
                     "Connection: close\r\n\r\n",
                     path, port, cookie ? "Cookie: " : "", cookie ? cookie : "",
                     cookie ? "\r\n" : "");
    if (write(fd, req, (size_t)k) != k)
        die("write to the desk: %s", strerror(errno));
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                die("out of memory");
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read from the desk: %s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        die("not an HTTP answer from the desk");
    *resp = buf;
    *len = n;
    return status;
}

/* GET path, timed; dies unless 200. Returns the seconds and the "total". */
static double timed_get(unsigned port, const char *path, const char *cookie,
                        unsigned long long *total)
{
    char *resp;
    size_t len;
    double t0 = now();
    int st = http(port, path, cookie, &resp, &len);
    t0 = now() - t0;
    if (st != 200)
        die("GET %s: HTTP %d", path, st);
    const char *p = strstr(resp, "\"total\": ");
    if (!p)
        die("GET %s: no total", path);
    *total = strtoull(p + 9, NULL, 10);
    free(resp);
    return t0;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"desk.list.first", "desk.list.filtered",
                                        "desk.list.page"};
    size_t nrec = 0;
    const struct bench_flag flags[] = {{.name = "--records", .count = &nrec},
                                       {.name = NULL}};
    char *dir, *pass, *out, line[512], cookie[128], path[256];
    unsigned long long total;
    unsigned port;
    FILE *pf;

    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_desk", usage,
                                            known, sizeof known / sizeof known[0],
                                            flags);
    if (!nrec)
        nrec = cl.quick ? 10000 : 100000;
    make_scratch(cl.dir);
    signal(SIGPIPE, SIG_IGN);

    dir = scratch_path("vault");
    pass = path_join(scratch, "passphrase");
    out = path_join(scratch, "cli.out");
    if (!(pf = fopen(pass, "w")) || fputs(PASSPHRASE "\n", pf) < 0 ||
        fclose(pf) != 0)
        die("cannot write %s", pass);
    note("adding %zu records", nrec);
    double t0 = now();
    fv_vault *v = create_vault(dir);
    add_records(v, 1, 0, nrec);
    fv_vault_close(v);
    sync();
    note("added in %.1f s", now() - t0);

    /* The limits: the CLI's listing of the same vault, in the same run. */
    const char *all[] = {"fieldvault", "--vault", dir, "--passphrase-file",
                         pass, "list", "--json", NULL};
    const char *tagged[] = {"fieldvault", "--vault", dir, "--passphrase-file",
                            pass, "list", "--json", "--tag", "region-c", NULL};
    double t_list = run_cli(all, out, NULL);
    double t_list_tag = run_cli(tagged, out, NULL);
    note("fieldvault list --json: %.2f s; with --tag: %.2f s", t_list, t_list_tag);

    /* The desk, as a child; its first line says where. */
    int pfd[2];
    if (pipe(pfd) != 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    double t_launch = now();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(pfd[1], 1) < 0)
            _exit(126);
        close(pfd[0]);
        execl(bench_fieldvault, "fieldvault", "--vault", dir,
              "--passphrase-file", pass, "--json", "desk", "--no-open",
              "--idle", "0", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *df = fdopen(pfd[0], "r");
    if (!df || !fgets(line, sizeof line, df))
        die("the desk did not start");
    const char *u = strstr(line, "http://127.0.0.1:");
    const char *tok = strstr(line, "token=");
    if (!u || !tok || sscanf(u, "http://127.0.0.1:%u/", &port) != 1)
        die("the desk printed %s", line);
    char token[65];
    memcpy(token, tok + 6, 64);
    token[64] = '\0';

    /* The one-time token for the cookie, as the browser does. */
    char *resp;
    size_t len;
    snprintf(path, sizeof path, "/?token=%s", token);
    if (http(port, path, NULL, &resp, &len) != 303)
        die("the desk refused its own token");
    const char *sc = strstr(resp, "Set-Cookie: ");
    if (!sc)
        die("no cookie from the desk");
    sc += strlen("Set-Cookie: ");
    size_t clen = strcspn(sc, ";\r\n");
    if (clen >= sizeof cookie)
        die("a cookie too long");
    memcpy(cookie, sc, clen);
    cookie[clen] = '\0';
    free(resp);

    double t_req = timed_get(port, "/api/records?limit=50", cookie, &total);
    double t_first = now() - t_launch;
    note("desk: the first page's request itself took %.3f s", t_req);
    if (total != nrec)
        die("the desk lists %llu records, not %zu", total, nrec);
    double t_filtered = timed_get(
        port, "/api/records?tag=region-c&state=new&sort=title&order=asc"
              "&offset=50&limit=50", cookie, &total);
    unsigned long long want = 0;
    for (size_t i = 0; i < nrec; i++)
        want += (i % 1000000) % 26 == 2;
    if (total != want)
        die("the filtered page counts %llu records, not %llu", total, want);
    snprintf(path, sizeof path, "/api/records?limit=50&offset=%zu", nrec / 2);
    double t_page = timed_get(port, path, cookie, &total);
    note("desk: first page %.3f s, filtered %.4f s, page at %zu %.4f s",
         t_first, t_filtered, nrec / 2, t_page);

    kill(pid, SIGTERM);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        die("the desk did not exit 0 on SIGTERM (status %d)", status);
    fclose(df);

    if (wanted("desk.list.first"))
        report("desk.list.first", t_first, "s", t_list, 3);
    if (wanted("desk.list.filtered"))
        report("desk.list.filtered", t_filtered, "s", t_list_tag, 4);
    if (wanted("desk.list.page"))
        report("desk.list.page", t_page, "s", 0, 4);
    free(dir);
    free(pass);
    free(out);
    return 0;
}
