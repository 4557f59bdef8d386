/*
 * sync_cmds.c - the commands that reach beyond the vault: the server
 * (`server init`, `server invite`, `serve`), enrollment, the coordinator's
 * `org` requests, `sync`, and courier bundles. Each is a thin layer over
 * fieldvault_sync.h and server/server.h; what they print is documented in
 * help.c and the exit codes in main.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fieldvault_sync.h"
#include "report.h"
#include "server.h"
#include "textparse.h"
#include "tls_server.h"

#define TTL_HOURS_DEFAULT (7 * 24)
#define TTL_HOURS_MAX (30 * 24)
#define TIMEOUT_S_MAX 86400

/* ---- shared helpers ------------------------------------------------------ */

/* A subcommand ("init" in `server init ...`) and the function that runs it
 * on the rest of the arguments. A table ends with a NULL name. */
typedef struct subcommand {
    const char *name;
    int (*run)(cli *c);
} subcommand;

/* Splits off the subcommand word and runs it from `subs`. A first argument
 * that is an option or missing, or an unknown word, is --help (then the
 * help is printed) or a usage error naming `want`. */
static int run_subcommand(cli *c, const subcommand *subs, const char *want)
{
    int rc;

    if (c->argc >= 1 && c->argv[0][0] != '-') {
        const char *sub = c->argv[0];
        c->argc--;
        c->argv++;
        for (const subcommand *s = subs; s->name != NULL; s++)
            if (strcmp(sub, s->name) == 0)
                return s->run(c);
        cli_error("%s: unknown subcommand '%s' (want %s)", c->cmd, sub, want);
        return CLI_USAGE;
    }
    rc = cli_parse(c, NULL);
    if (rc != 0 || cli_help_requested(c, &rc))
        return rc;
    cli_error("%s: missing subcommand (want %s)", c->cmd, want);
    return CLI_USAGE;
}

static const char *role_name(int role)
{
    switch (role) {
    case FV_ROLE_FIELD: return "field";
    case FV_ROLE_COORDINATOR: return "coordinator";
    default: return "unknown";
    }
}

/* --role field|coordinator; `dflt` when absent. */
static int parse_role(const cli_opt *o, int dflt, int *role)
{
    *role = dflt;
    if (o->count == 0)
        return 0;
    if (strcmp(o->values[0], "field") == 0)
        *role = FV_ROLE_FIELD;
    else if (strcmp(o->values[0], "coordinator") == 0)
        *role = FV_ROLE_COORDINATOR;
    else {
        cli_error("--role: want field or coordinator, not '%s'",
                  o->values[0]);
        return CLI_USAGE;
    }
    return 0;
}

/* --ttl HOURS, 1 to 720 (30 days, the server's limit). */
static int parse_ttl(const cli_opt *o, uint64_t *seconds)
{
    int h = TTL_HOURS_DEFAULT;
    if (o->count && (cli_parse_int(o->values[0], &h) != 0 || h < 1 ||
                     h > TTL_HOURS_MAX)) {
        cli_error("--ttl: want a number of hours from 1 to %d, not '%s'",
                  TTL_HOURS_MAX, o->values[0]);
        return CLI_USAGE;
    }
    *seconds = (uint64_t)h * 3600;
    return 0;
}

/* --name N: what the coordinator will see in `org devices`. */
static int check_name(const cli_opt *o, const char **name)
{
    if (o->count == 0 || o->values[0][0] == '\0') {
        cli_error("%s", o->count ? "--name: empty name"
                                 : "--name N is required (who the invite is "
                                   "for, as the device list will show it)");
        return CLI_USAGE;
    }
    *name = o->values[0];
    return 0;
}

/* --data SDIR, required by the server commands. */
static int check_data(const cli_opt *o, const char **dir)
{
    if (o->count == 0 || o->values[0][0] == '\0') {
        cli_error("--data SDIR is required (the server's directory)");
        return CLI_USAGE;
    }
    *dir = o->values[0];
    return 0;
}

/* What messages call a store: a directory as it is; a PostgreSQL URL
 * without its password or its parameters (which may hold one). */
static const char *store_label(const char *store, char *buf, size_t size)
{
    const char *p = strstr(store, "://"), *at, *colon, *q;
    size_t n;
    if (!p || (strncmp(store, "postgresql://", 13) != 0 &&
               strncmp(store, "postgres://", 11) != 0))
        return store;
    p += 3;
    q = p + strcspn(p, "/?");
    at = memchr(p, '@', (size_t)(q - p));
    colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    n = strcspn(store, "?");
    if (colon)
        snprintf(buf, size, "%.*s:***%.*s", (int)(colon - store), store,
                 (int)(n - (size_t)(at - store)), at);
    else
        snprintf(buf, size, "%.*s", (int)n, store);
    return buf;
}

/* What an FV_EINVAL about a PostgreSQL URL means. */
#define PG_EINVAL "a malformed PostgreSQL URL, or a fieldvault built without " \
                  "PostgreSQL"

/* --data SDIR or --store URL (a PostgreSQL database: README,
 * "PostgreSQL"), one of them, for the server commands; *label is what
 * messages call it. */
static int check_store(const cli_opt *data, const cli_opt *store,
                       const char **dir, const char **label, char *buf,
                       size_t size)
{
    if (store->count && data->count) {
        cli_error("give --data SDIR or --store URL, not both");
        return CLI_USAGE;
    }
    if (store->count) {
        if (strncmp(store->values[0], "postgresql://", 13) != 0 &&
            strncmp(store->values[0], "postgres://", 11) != 0) {
            cli_error("--store wants a PostgreSQL URL "
                      "(postgresql://USER@HOST/DB); a directory is --data");
            return CLI_USAGE;
        }
        *dir = store->values[0];
    } else {
        int rc = check_data(data, dir);
        if (rc)
            return rc;
    }
    *label = store_label(*dir, buf, size);
    return 0;
}

/* The options of every command that connects: --server, --timeout and
 * --proxy. The proxy: --proxy, else FIELDVAULT_PROXY, else (NULL) the one
 * the vault remembers (config set proxy); "none" connects directly. The
 * library checks the URL and never shows its credentials. */
static int sync_options(fv_sync_options *so, const cli_opt *server,
                        const cli_opt *timeout, const cli_opt *proxy)
{
    int s;
    const char *env = getenv("FIELDVAULT_PROXY");

    if (proxy != NULL && proxy->count) {
        if (proxy->values[0][0] == '\0') {
            cli_error("--proxy: want socks5h://[USER:PASS@]HOST:PORT, "
                      "socks5://..., http://... or none");
            return CLI_USAGE;
        }
        so->proxy = proxy->values[0];
    } else if (env != NULL && env[0] != '\0') {
        so->proxy = env;
    }
    if (server != NULL && server->count) {
        char host[FV_ADDR_HOST_MAX + 1], port[6];
        const char *why;
        if (fv_addr_parse(server->values[0], 0, host, port, &why)) {
            cli_error("--server: want HOST:PORT or [IPV6]:PORT (%s)", why);
            return CLI_USAGE;
        }
        so->server = server->values[0];
    }
    if (timeout->count) {
        if (cli_parse_int(timeout->values[0], &s) != 0 || s < 1 ||
            s > TIMEOUT_S_MAX) {
            cli_error("--timeout: want seconds from 1 to %d, not '%s'",
                      TIMEOUT_S_MAX, timeout->values[0]);
            return CLI_USAGE;
        }
        so->timeout_ms = s * 1000;
    }
    return 0;
}

/* ---- progress and cancel while connected --------------------------------- */

/* A progress line on stderr once a transfer has run for PROGRESS_AFTER
 * seconds, only when stderr is a terminal and there is a label; Ctrl-C
 * cancels (cli_cancel_arm). The library calls it as bytes move: done and
 * the total known so far, in bytes of envelopes and attachment chunks (the
 * total may grow as work is found). The line shows the bytes done, a
 * smoothed rate and, when the total is ahead of what is done, the time
 * left. The library calls it also while a link stalls, so the rate falls
 * then; a cancel during a stall is seen within a fraction of a second. */
#define PROGRESS_AFTER 2.0
#define RATE_EVERY 0.5 /* seconds between rate samples */
#define RATE_WEIGHT 0.3 /* of the newest sample in the smoothed rate */

typedef struct net_progress {
    const char *label;
    int tty;
    int drawn;
    struct timespec start;
    struct timespec last;     /* last drawn */
    struct timespec sampled;  /* last rate sample */
    uint64_t sampled_done;
    double rate;              /* bytes per second, smoothed; < 0: none yet */
} net_progress;

static double since(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) +
           (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* Folds a new sample into the smoothed rate, at most every RATE_EVERY. */
static void rate_update(net_progress *p, uint64_t done,
                        const struct timespec *now)
{
    double dt = since(&p->sampled, now);
    if (dt < RATE_EVERY)
        return;
    double inst = done >= p->sampled_done
                      ? (double)(done - p->sampled_done) / dt : 0.0;
    p->rate = p->rate < 0 ? inst
                          : RATE_WEIGHT * inst + (1 - RATE_WEIGHT) * p->rate;
    p->sampled = *now;
    p->sampled_done = done;
}

static int net_progress_fn(uint64_t done, uint64_t total, void *payload)
{
    net_progress *p = payload;
    struct timespec now;
    char sdone[32], stotal[32], srate[32], sleft[32];

    if (cli_canceled())
        return 1;
    if (!p->tty)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    rate_update(p, done, &now);
    if (since(&p->start, &now) < PROGRESS_AFTER)
        return 0;
    if (p->drawn && since(&p->last, &now) < 0.2)
        return 0;
    p->last = now;
    size_format(sdone, sizeof sdone, done);
    fprintf(stderr, "\r%s: %s", p->label, sdone);
    if (total > done) {
        size_format(stotal, sizeof stotal, total);
        fprintf(stderr, " of %s", stotal);
    }
    if (p->rate >= 0) {
        size_format(srate, sizeof srate, (uint64_t)p->rate);
        fprintf(stderr, "  %s/s", srate);
        if (total > done && p->rate >= 1.0) {
            duration_format(sleft, sizeof sleft,
                            (double)(total - done) / p->rate);
            fprintf(stderr, "  %s left", sleft);
        }
    }
    fputs("\033[K", stderr);
    fflush(stderr);
    p->drawn = 1;
    return 0;
}

/* Arms the progress line (none when `label` is NULL) for one call into the
 * library. Ctrl-C and SIGTERM are caught (cli_cancel_arm) only by sync,
 * whose session wakes at once; the other requests cannot be woken while
 * they connect or shake hands, so a caught signal would wait for the
 * timeout: there the signal simply ends the process (the vault's
 * transactions keep it whole). */
static void net_begin(net_progress *p, const char *label, fv_sync_options *so)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->tty = label != NULL && isatty(STDERR_FILENO);
    p->rate = -1;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    p->sampled = p->start;
    so->progress = net_progress_fn;
    so->progress_payload = p;
}

static void net_end(net_progress *p)
{
    cli_cancel_disarm();
    if (p->drawn) {
        fputc('\n', stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}

/* --chunks DIR (a PostgreSQL store's shared chunk directory: README,
 * "PostgreSQL"), for server init and serve. */
static int chunks_opt(const cli_opt *chunks, const char *dir,
                      const char *label)
{
    if (!chunks->count)
        return 0;
    if (dir == label && strncmp(dir, "postgres", 8) != 0) {
        cli_error("--chunks is for a PostgreSQL store (--store URL); a "
                  "server directory keeps its chunks in SDIR/chunks");
        return CLI_USAGE;
    }
    if (!chunks->values[0][0]) {
        cli_error("--chunks wants a directory");
        return CLI_USAGE;
    }
    if (fv_server_set_chunks(chunks->values[0])) {
        cli_error("--chunks: " PG_EINVAL);
        return CLI_USAGE;
    }
    return 0;
}

/* ---- server init, server invite --------------------------------------------- */

static int server_init(cli *c)
{
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"listen", OPT_ONE, NULL, 0},
                      {"hostname", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {"chunks", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    unsigned char pin[32];
    char *invite = NULL, lbuf[1024];
    const char *hostname;
    const char *dir, *label;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = check_store(&opts[0], &opts[3], &dir, &label, lbuf,
                          sizeof lbuf)) != 0 ||
        (rc = chunks_opt(&opts[4], dir, label)) != 0)
        goto cleanup;
    if (opts[1].count == 0) {
        cli_error("server init: --listen HOST:PORT is required (the address "
                  "devices will be sent to)");
        rc = CLI_USAGE;
        goto cleanup;
    }
    hostname = opts[2].count ? opts[2].values[0] : NULL;
    if (hostname && !fv_tls_hostname_ok(hostname)) {
        cli_error("server init: bad --hostname '%s' (want a DNS name such as "
                  "mail.example.org)", hostname);
        rc = CLI_USAGE;
        goto cleanup;
    }
    int r = fv_server_init_named(dir, opts[1].values[0], hostname, pin,
                                 &invite);
    if (r != FV_OK) {
        invite = NULL;
        if (r == FV_EINVAL && dir != label)
            cli_error("cannot create a server in %s: bad --listen address "
                      "'%s', or " PG_EINVAL, label, opts[1].values[0]);
        else if (r == FV_EINVAL)
            cli_error("cannot create a server in %s: bad --listen address "
                      "'%s' (want HOST:PORT, or [V6ADDR]:PORT)",
                      label, opts[1].values[0]);
        else if (r == FV_EEXIST && opts[4].count)
            cli_error("cannot create a server in %s: it holds one already, "
                      "or the chunk directory %s is not empty", label,
                      opts[4].values[0]);
        else
            cli_error("cannot create a server in %s: %s", label,
                      fv_strerror(r));
        rc = cli_exit_code(r);
        goto cleanup;
    }
    char hex[FV_ID_HEX_BYTES];
    fv_id_to_hex(hex, pin);
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "pin");
        json_strz(stdout, hex);
        fputs(", ", stdout);
        json_key(stdout, "admin_invite");
        json_strz(stdout, invite);
        fputs("}\n", stdout);
    } else {
        fputs("created server ", stdout);
        text_puts(stdout, label);
        fputs(" for ", stdout);
        text_puts(stdout, opts[1].values[0]);
        fprintf(stdout, "\npin %s\n", hex);
        fputs("admin invite (single use, coordinator, valid 30 days):\n",
              stdout);
        fputs(invite, stdout);
        fputc('\n', stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    free(invite);
    cli_opts_free(opts);
    return rc;
}

static int server_invite(cli *c)
{
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"name", OPT_ONE, NULL, 0},
                      {"role", OPT_ONE, NULL, 0},
                      {"ttl", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    char *invite = NULL, lbuf[1024];
    const char *dir, *name, *label;
    uint64_t ttl;
    int role;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = check_store(&opts[0], &opts[4], &dir, &label, lbuf,
                          sizeof lbuf)) != 0 ||
        (rc = check_name(&opts[1], &name)) != 0 ||
        (rc = parse_role(&opts[2], FV_ROLE_COORDINATOR, &role)) != 0 ||
        (rc = parse_ttl(&opts[3], &ttl)) != 0)
        goto cleanup;
    int r = fv_server_invite(dir, name, role, ttl, &invite);
    if (r != FV_OK) {
        invite = NULL;
        cli_error("cannot make an invite in %s: %s", label,
                  r == FV_ENOTFOUND              ? "no server there"
                  : r == FV_EINVAL && dir != label ? PG_EINVAL
                                                   : fv_strerror(r));
        rc = cli_exit_code(r);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "invite");
        json_strz(stdout, invite);
        fputs("}\n", stdout);
    } else {
        fputs(invite, stdout);
        fputc('\n', stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    free(invite);
    cli_opts_free(opts);
    return rc;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* `vault`: a vault's bundle import (review states are the server's);
 * `held` (NULL for the server's): how much the vault's quarantine grew. */
static void print_import(const cli *c, const char *file,
                         const fv_bundle_stats *st, int vault,
                         const uint64_t *held)
{
    uint64_t bad = st->chunks_refused + st->chunks_unlisted;
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "file");
        json_strz(stdout, file);
        fprintf(stdout, ", \"envelopes\": %llu, \"added\": %llu",
                (unsigned long long)st->envelopes,
                (unsigned long long)st->added);
        if (vault)
            fprintf(stdout, ", \"states_skipped\": %llu",
                    (unsigned long long)st->skipped);
        if (held)
            fprintf(stdout, ", \"quarantined\": %llu",
                    (unsigned long long)*held);
        fprintf(stdout,
                ", \"chunks\": %llu, \"chunk_bytes\": %llu, "
                "\"chunks_added\": %llu, \"chunks_refused\": %llu, "
                "\"chunks_unlisted\": %llu}\n",
                (unsigned long long)st->chunks,
                (unsigned long long)st->chunk_bytes,
                (unsigned long long)st->chunks_added,
                (unsigned long long)st->chunks_refused,
                (unsigned long long)st->chunks_unlisted);
        return;
    }
    fprintf(stdout, "imported %llu %s (%llu new)",
            (unsigned long long)st->envelopes,
            plural(st->envelopes, "envelope", "envelopes"),
            (unsigned long long)st->added);
    if (st->chunks > bad)
        fprintf(stdout, " and %llu attachment %s (%llu new)",
                (unsigned long long)(st->chunks - bad),
                plural(st->chunks - bad, "chunk", "chunks"),
                (unsigned long long)st->chunks_added);
    fputc('\n', stdout);
    if (vault && st->skipped > 0)
        fprintf(stdout,
                "%llu review %s skipped: they travel only through the "
                "server\n",
                (unsigned long long)st->skipped,
                plural(st->skipped, "state", "states"));
    if (held && *held > 0)
        fprintf(stdout,
                "%llu %s kept apart: not from a device the organisation "
                "certified, or dated after its revocation (see "
                "'fieldvault quarantine')\n",
                (unsigned long long)*held,
                plural(*held, "envelope", "envelopes"));
    if (st->chunks_unlisted > 0)
        fprintf(stdout,
                "%llu %s ignored: no envelope held lists %s\n",
                (unsigned long long)st->chunks_unlisted,
                plural(st->chunks_unlisted, "chunk", "chunks"),
                plural(st->chunks_unlisted, "it", "them"));
}

static int count_held(const fv_quarantined *q, void *payload)
{
    (void)q;
    ++*(uint64_t *)payload;
    return 0;
}

static int server_import(cli *c)
{
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    const char *dir, *why = NULL;
    fv_bundle_stats st = FV_BUNDLE_STATS_INIT;
    int rc;

    if (cli_begin(c, opts, 1, 1, "FILE", &rc) ||
        (rc = check_store(&opts[0], &opts[1], &dir, &why, NULL, 0)) != 0)
        goto cleanup;
    why = NULL;
    int r = fv_server_import_with(dir, c->pos[0], &st, &why);
    if (r != FV_OK) {
        uint64_t kept = st.chunks - st.chunks_refused - st.chunks_unlisted;
        if (r == FV_ECORRUPT && !why)
            cli_error("cannot import the bundle: %llu %s refused: %s not "
                      "match %s hash (beside %s: %llu %s and %llu "
                      "attachment %s imported)",
                      (unsigned long long)st.chunks_refused,
                      plural(st.chunks_refused, "chunk was", "chunks were"),
                      plural(st.chunks_refused, "it does", "they do"),
                      plural(st.chunks_refused, "its", "their"),
                      plural(st.chunks_refused, "it", "them"),
                      (unsigned long long)st.envelopes,
                      plural(st.envelopes, "envelope", "envelopes"),
                      (unsigned long long)kept, plural(kept, "chunk", "chunks"));
        else if (r == FV_ECORRUPT && (st.envelopes || st.chunks))
            cli_error("cannot import the bundle: %s (before %s: %llu %s and "
                      "%llu attachment %s imported)",
                      why, st.truncated ? "the cut" : "the damage",
                      (unsigned long long)st.envelopes,
                      plural(st.envelopes, "envelope", "envelopes"),
                      (unsigned long long)kept, plural(kept, "chunk", "chunks"));
        else
            cli_error("cannot import the bundle: %s",
                      r == FV_ENOTFOUND ? "no server or no bundle there"
                      : r == FV_EDENIED
                          ? "an envelope's author is not an enrolled device, or "
                            "may not write that envelope (a review state from a "
                            "field device, a note or retraction about a record "
                            "the server does not hold or another device created)"
                          : why ? why : fv_strerror(r));
        rc = cli_exit_code(r);
        goto cleanup;
    }
    print_import(c, c->pos[0], &st, 0, NULL);
    rc = cli_flush_stdout();
cleanup:
    cli_opts_free(opts);
    return rc;
}

/* ---- server csr, server cert ------------------------------------------------ */

static int server_csr(cli *c)
{
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"hostname", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    char *pem = NULL;
    const char *dir, *hostname, *label;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = check_store(&opts[0], &opts[2], &dir, &label, NULL, 0)) != 0)
        goto cleanup;
    hostname = opts[1].count ? opts[1].values[0] : NULL;
    if (hostname && !fv_tls_hostname_ok(hostname)) {
        cli_error("server csr: bad --hostname '%s' (want a DNS name such as "
                  "mail.example.org)", hostname);
        rc = CLI_USAGE;
        goto cleanup;
    }
    int r = fv_server_csr(dir, hostname, &pem);
    if (r != FV_OK) {
        cli_error("cannot make a certificate request: %s",
                  r == FV_ENOTFOUND ? "no server there"
                  : r == FV_EINVAL ? "the certificate names no host: give "
                                     "--hostname"
                                   : fv_strerror(r));
        rc = cli_exit_code(r);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "csr");
        json_strz(stdout, pem);
        fputs("}\n", stdout);
    } else {
        fputs(pem, stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    free(pem);
    cli_opts_free(opts);
    return rc;
}

static int server_cert(cli *c)
{
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    const char *dir, *label;
    int rc;

    if (cli_begin(c, opts, 1, 1, "FILE", &rc) ||
        (rc = check_store(&opts[0], &opts[1], &dir, &label, NULL, 0)) != 0)
        goto cleanup;
    int r = fv_server_cert_install(dir, c->pos[0]);
    if (r != FV_OK) {
        cli_error("cannot install the certificate: %s",
                  r == FV_EPIN ? "it is not for the server's key (devices "
                                 "pin that key: have the CA sign the request "
                                 "from 'fieldvault server csr')"
                  : r == FV_ECORRUPT ? "not a PEM certificate chain"
                  : r == FV_ENOTFOUND ? "no server there"
                                      : fv_strerror(r));
        rc = cli_exit_code(r);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "installed");
        json_strz(stdout, c->pos[0]);
        fputs("}\n", stdout);
    } else {
        fputs("installed certificate ", stdout);
        text_puts(stdout, c->pos[0]);
        fputs(" (same key: devices keep their pin)\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_opts_free(opts);
    return rc;
}

/* ---- server migrate ---------------------------------------------------------- */

static int server_migrate(cli *c)
{
    cli_opt opts[] = {{"from", OPT_ONE, NULL, 0},
                      {"to", OPT_ONE, NULL, 0},
                      {"chunks", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    const char *from, *to, *label;
    char lbuf[1024];
    uint64_t env = 0, dev = 0, chunks = 0;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    if (opts[0].count == 0 || opts[0].values[0][0] == '\0' ||
        opts[1].count == 0) {
        cli_error("server migrate: --from SDIR and --to "
                  "postgresql://USER@HOST/DB are required");
        rc = CLI_USAGE;
        goto cleanup;
    }
    from = opts[0].values[0];
    to = opts[1].values[0];
    if (strncmp(to, "postgresql://", 13) != 0 &&
        strncmp(to, "postgres://", 11) != 0) {
        cli_error("server migrate: --to wants a PostgreSQL URL "
                  "(postgresql://USER@HOST/DB)");
        rc = CLI_USAGE;
        goto cleanup;
    }
    label = store_label(to, lbuf, sizeof lbuf);
    if ((rc = chunks_opt(&opts[2], to, label)))
        goto cleanup;
    int r = fv_server_migrate(from, to, &env, &dev, &chunks);
    if (r != FV_OK) {
        cli_error("cannot migrate %s to %s: %s", from, label,
                  r == FV_ENOTFOUND ? "no server there"
                  : r == FV_EEXIST  ? "the database is not empty, or the "
                                      "chunk directory holds files"
                  : r == FV_EINVAL  ? PG_EINVAL
                                    : fv_strerror(r));
        rc = cli_exit_code(r);
        goto cleanup;
    }
    if (c->json) {
        fprintf(stdout, "{\"envelopes\": %llu, \"devices\": %llu, "
                        "\"chunks\": %llu}\n", (unsigned long long)env,
                (unsigned long long)dev, (unsigned long long)chunks);
    } else {
        fputs("migrated ", stdout);
        text_puts(stdout, from);
        fputs(" to ", stdout);
        text_puts(stdout, label);
        fprintf(stdout, ": %llu envelopes, %llu devices, %llu chunks (same "
                        "pin: devices sync on)\n", (unsigned long long)env,
                (unsigned long long)dev, (unsigned long long)chunks);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_opts_free(opts);
    return rc;
}

/* ---- server backup, server restore ------------------------------------------ */

/* --output FILE (backup) or --input FILE (restore), required. */
static int check_file(const cli_opt *o, const char *what, const char **file)
{
    if (o->count == 0 || o->values[0][0] == '\0') {
        cli_error("--%s FILE is required", what);
        return CLI_USAGE;
    }
    *file = o->values[0];
    return 0;
}

static void backup_done(cli *c, const char *verb, const char *path,
                        uint64_t files, uint64_t bytes)
{
    if (c->json) {
        fprintf(stdout, "{\"files\": %llu, \"bytes\": %llu}\n",
                (unsigned long long)files, (unsigned long long)bytes);
        return;
    }
    fputs(verb, stdout);
    text_puts(stdout, path);
    fprintf(stdout, ": %llu files, %llu bytes\n", (unsigned long long)files,
            (unsigned long long)bytes);
}

static int server_backup(cli *c)
{
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"output", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {"chunks", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    const char *dir, *out, *label;
    char msg[512], lbuf[1024];
    uint64_t files = 0, bytes = 0;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = check_store(&opts[0], &opts[2], &dir, &label, lbuf,
                          sizeof lbuf)) ||
        (rc = chunks_opt(&opts[3], dir, label)) ||
        (rc = check_file(&opts[1], "output", &out)))
        goto cleanup;
    int r = fv_server_backup(dir, out, &files, &bytes, msg, sizeof msg);
    if (r != FV_OK) {
        cli_error("cannot back up %s: %s", label,
                  r == FV_EINVAL && dir != label && !msg[0] ? PG_EINVAL : msg);
        rc = cli_exit_code(r);
        goto cleanup;
    }
    backup_done(c, "backed up to ", out, files, bytes);
    rc = cli_flush_stdout();
cleanup:
    cli_opts_free(opts);
    return rc;
}

static int server_restore(cli *c)
{
    cli_opt opts[] = {{"input", OPT_ONE, NULL, 0},
                      {"data", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {"chunks", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    const char *dir, *in, *label;
    char msg[512], lbuf[1024];
    uint64_t files = 0, bytes = 0;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = check_file(&opts[0], "input", &in)) ||
        (rc = check_store(&opts[1], &opts[2], &dir, &label, lbuf,
                          sizeof lbuf)) ||
        (rc = chunks_opt(&opts[3], dir, label)))
        goto cleanup;
    int r = fv_server_restore(in, dir, &files, &bytes, msg, sizeof msg);
    if (r != FV_OK) {
        cli_error("cannot restore %s: %s", label,
                  r == FV_EINVAL && dir != label && !msg[0] ? PG_EINVAL : msg);
        rc = cli_exit_code(r);
        goto cleanup;
    }
    backup_done(c, "restored ", label, files, bytes);
    rc = cli_flush_stdout();
cleanup:
    cli_opts_free(opts);
    return rc;
}

int cmd_server(cli *c)
{
    static const subcommand subs[] = {{"init", server_init},
                                      {"invite", server_invite},
                                      {"import", server_import},
                                      {"csr", server_csr},
                                      {"cert", server_cert},
                                      {"migrate", server_migrate},
                                      {"backup", server_backup},
                                      {"restore", server_restore},
                                      {NULL, NULL}};
    return run_subcommand(c, subs, "init, invite, import, csr, cert, "
                                   "migrate, backup or restore");
}

/* ---- serve ------------------------------------------------------------------ */

/* Lock-free (server.c checks), so the handler may store to it. */
static atomic_int serve_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    atomic_store(&serve_stop, 1);
}

static void serve_log(const char *line, void *payload)
{
    char when[32];
    (void)payload;
    time_format(when, sizeof when, (int64_t)time(NULL), TIME_ISO);
    fprintf(stderr, "fieldvault serve: %s ", when);
    text_puts(stderr, line);
    fputc('\n', stderr);
    fflush(stderr);
}

static void serve_ready(const char *host, int port, void *payload)
{
    (void)payload;
    /* The line tests and supervisors wait for: the real port, even when
     * port 0 was asked for. */
    fprintf(stderr, "fieldvault serve: listening on %s%s%s:%d\n",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
            port);
    fflush(stderr);
}

/* A limit of `serve`: an integer from lo to hi; 0 (absent) keeps the
 * server's default. */
static int parse_limit(const cli_opt *o, int lo, int hi, unsigned int *out)
{
    int v = 0;
    if (o->count == 0)
        return 0;
    if (cli_parse_int(o->values[0], &v) != 0 || v < lo || v > hi) {
        cli_error("--%s: want a number from %d to %d, not '%s'", o->name, lo,
                  hi, o->values[0]);
        return CLI_USAGE;
    }
    *out = (unsigned int)v;
    return 0;
}

int cmd_serve(cli *c)
{
    /* One write per log line, not one per character. */
    setvbuf(stderr, NULL, _IOLBF, 0);
    cli_opt opts[] = {{"data", OPT_ONE, NULL, 0},
                      {"listen", OPT_ONE, NULL, 0},
                      {"max-connections", OPT_ONE, NULL, 0},
                      {"max-per-address", OPT_ONE, NULL, 0},
                      {"max-per-device", OPT_ONE, NULL, 0},
                      {"memory-mib", OPT_ONE, NULL, 0},
                      {"store", OPT_ONE, NULL, 0},
                      {"verify-threads", OPT_ONE, NULL, 0},
                      {"chunks", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_server_options so = FV_SERVER_OPTIONS_INIT;
    unsigned int threads = 0;
    struct sigaction sa, old_term, old_int, old_pipe;
    const char *dir, *label;
    char lbuf[1024];
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = check_store(&opts[0], &opts[6], &dir, &label, lbuf,
                          sizeof lbuf)) != 0 ||
        (rc = parse_limit(&opts[2], 1, 65536, &so.max_connections)) != 0 ||
        (rc = parse_limit(&opts[3], 1, 65536, &so.max_per_address)) != 0 ||
        (rc = parse_limit(&opts[4], 1, 1024, &so.max_per_device)) != 0 ||
        (rc = parse_limit(&opts[5], 16, 65536, &so.memory_mib)) != 0 ||
        (rc = parse_limit(&opts[7], 0, FV_SERVER_VERIFY_MAX, &threads)) != 0 ||
        (rc = chunks_opt(&opts[8], dir, label)) != 0)
        goto cleanup;
    if (opts[7].count)
        so.verify_threads = (int)threads;
    so.listen = opts[1].count ? opts[1].values[0] : NULL;
    so.log = serve_log;
    so.ready = serve_ready;
    so.stop = &serve_stop;

    /* SIGTERM and SIGINT ask the loop to stop (it looks at least every
     * 200 ms); a second SIGINT ends the process at once. A log reader that
     * went away must not kill the server: SIGPIPE is ignored. */
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int);
    sa.sa_flags = 0;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);

    int r = fv_server_run(dir, &so);

    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (r != FV_OK) {
        const char *why = fv_strerror(r);
        if (r == FV_ENOTFOUND && dir != label)
            why = "no server there (create one with 'fieldvault server "
                  "init'), or its chunk directory is missing (not mounted? "
                  "--chunks DIR names it)";
        else if (r == FV_ENOTFOUND)
            why = "no server there (create one with 'fieldvault server init')";
        else if (r == FV_EDENIED)
            why = "the chunk directory belongs to another server";
        else if (r == FV_EINVAL && opts[8].count)
            why = "--chunks is given, but this server keeps its chunks in "
                  "PostgreSQL";
        else if (r == FV_ENET)
            why = "cannot listen on the address";
        else if (r == FV_EINVAL && dir != label)
            why = PG_EINVAL;
        cli_error("cannot serve %s: %s", label, why);
        rc = cli_exit_code(r);
        goto cleanup;
    }
    rc = CLI_OK;
cleanup:
    cli_opts_free(opts);
    return rc;
}

/* ---- enroll ------------------------------------------------------------------ */

int cmd_enroll(cli *c)
{
    cli_opt opts[] = {{"server", OPT_ONE, NULL, 0},
                      {"timeout", OPT_ONE, NULL, 0},
                      {"proxy", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    net_progress prog;
    fv_vault *v = NULL;
    char *dir = NULL;
    int role = 0;
    int rc;

    if (cli_begin(c, opts, 1, 1, "INVITE", &rc) ||
        (rc = sync_options(&so, &opts[0], &opts[1], &opts[2])) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    net_begin(&prog, "enrolling", &so);
    int r = fv_enroll(v, &role, c->pos[0], &so);
    net_end(&prog);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    unsigned char dev[FV_ID_BYTES];
    if ((r = fv_vault_get_device_id(v, dev)) != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "role");
        json_strz(stdout, role_name(role));
        fputs(", ", stdout);
        json_key(stdout, "device");
        json_id(stdout, dev);
        fputs("}\n", stdout);
    } else {
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, dev);
        fprintf(stdout, "enrolled as %s\ndevice %s\n", role_name(role), hex);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

/* ---- org init, invite, devices, revoke --------------------------------------- */

/* cli_begin for an org subcommand (its options table starts with
 * --timeout), then fills the connection options. Returns 1 when the
 * command ends there, with its exit code in *rc. */
static int org_begin(cli *c, cli_opt *opts, size_t min, size_t max,
                     const char *what, fv_sync_options *so, int *rc)
{
    const cli_opt *proxy = NULL;
    if (cli_begin(c, opts, min, max, what, rc))
        return 1;
    for (cli_opt *o = opts; o->name != NULL; o++)
        if (strcmp(o->name, "proxy") == 0)
            proxy = o;
    *rc = sync_options(so, NULL, &opts[0], proxy);
    return *rc != 0;
}

static int org_init(cli *c)
{
    net_progress prog;
    cli_opt opts[] = {{"timeout", OPT_ONE, NULL, 0},
                      {"proxy", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc;

    if (org_begin(c, opts, 0, 0, "", &so, &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    net_begin(&prog, NULL, &so);
    int r = fv_org_init(v, &so);
    net_end(&prog);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "published");
        fputs("true}\n", stdout);
    } else {
        fputs("organisation key created and published\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

static int org_invite(cli *c)
{
    net_progress prog;
    cli_opt opts[] = {{"timeout", OPT_ONE, NULL, 0},
                      {"name", OPT_ONE, NULL, 0},
                      {"role", OPT_ONE, NULL, 0},
                      {"ttl", OPT_ONE, NULL, 0},
                      {"proxy", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_vault *v = NULL;
    char *dir = NULL, *invite = NULL;
    const char *name;
    uint64_t ttl;
    int role;
    int rc;

    if (org_begin(c, opts, 0, 0, "", &so, &rc))
        goto cleanup;
    if ((rc = check_name(&opts[1], &name)) != 0 ||
        (rc = parse_role(&opts[2], FV_ROLE_FIELD, &role)) != 0 ||
        (rc = parse_ttl(&opts[3], &ttl)) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    net_begin(&prog, NULL, &so);
    int r = fv_org_invite(v, &invite, name, role, ttl, &so);
    net_end(&prog);
    if (r != FV_OK) {
        invite = NULL;
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "invite");
        json_strz(stdout, invite);
        fputs(", ", stdout);
        json_key(stdout, "name");
        json_strz(stdout, name);
        fputs(", ", stdout);
        json_key(stdout, "role");
        json_strz(stdout, role_name(role));
        fputs("}\n", stdout);
    } else {
        fputs(invite, stdout);
        fputc('\n', stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    if (invite)
        fv_wipe(invite, strlen(invite));
    fv_free(invite);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

/* The device list is collected whole (report_devices_fetch) before
 * anything is printed, so that a connection cut halfway prints no partial
 * document. */
static void print_devices(const report_devices *l, int json)
{
    FILE *o = stdout;
    if (json)
        fputs("[", o);
    for (size_t i = 0; i < l->n; i++) {
        const report_device *d = &l->d[i];
        if (json) {
            json_list_item(o, i);
            json_key(o, "id");
            json_id(o, d->id);
            fputs(", ", o);
            json_key(o, "name");
            json_strz(o, d->name);
            fputs(", ", o);
            json_key(o, "role");
            json_strz(o, role_name(d->role));
            fputs(", ", o);
            json_key(o, "revoked");
            fputs(d->revoked ? "true, " : "false, ", o);
            json_key(o, "enrolled");
            json_time(o, d->enrolled);
            fputs("}", o);
        } else {
            char hex[FV_ID_HEX_BYTES], when[32];
            fv_id_to_hex(hex, d->id);
            time_format(when, sizeof when, d->enrolled, TIME_MINUTES);
            fprintf(o, "%s  %-11s  %s  ", hex, role_name(d->role), when);
            text_puts(o, d->name);
            if (d->revoked)
                fputs(" [revoked]", o);
            fputc('\n', o);
        }
    }
    if (json)
        json_list_end(o, l->n);
}

static int org_devices(cli *c)
{
    net_progress prog;
    cli_opt opts[] = {{"timeout", OPT_ONE, NULL, 0},
                      {"proxy", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_vault *v = NULL;
    char *dir = NULL;
    report_devices *l = NULL;
    int rc;

    if (org_begin(c, opts, 0, 0, "", &so, &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    net_begin(&prog, NULL, &so);
    l = report_devices_fetch(v, &so);
    net_end(&prog);
    if (l == NULL) {
        cli_error("out of memory");
        rc = CLI_FAIL;
        goto cleanup;
    }
    if (l->rc != FV_OK) {
        rc = cli_fail(v, l->rc, NULL);
        goto cleanup;
    }
    print_devices(l, c->json);
    rc = cli_flush_stdout();
cleanup:
    report_devices_free(l);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

static int org_revoke(cli *c)
{
    net_progress prog;
    cli_opt opts[] = {{"timeout", OPT_ONE, NULL, 0},
                      {"proxy", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    unsigned char id[FV_ID_BYTES];
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc;

    if (org_begin(c, opts, 1, 1, "DEVICE_ID", &so, &rc))
        goto cleanup;
    if (cli_parse_device_id(c->pos[0], id) != 0) {
        cli_error("org revoke: want a device id of 64 hex digits (see 'org "
                  "devices'), not '%s'", c->pos[0]);
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    net_begin(&prog, NULL, &so);
    int r = fv_org_revoke(v, id, &so);
    net_end(&prog);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "revoked");
        json_id(stdout, id);
        fputs("}\n", stdout);
    } else {
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, id);
        fprintf(stdout, "revoked %s\n", hex);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

/* ---- org key export, import (local: no server) --------------------------------- */

/* The recovery passphrase: from --recovery-passphrase-file, else a prompt
 * (asked twice when `confirm`). Returns 0 or an exit code. */
static int recovery_get(cli_secret *rec, const cli_opt *file, int confirm)
{
    if (file->count)
        return cli_passphrase_from_file(rec, file->values[0]);
    return cli_passphrase_prompt(rec, "Recovery passphrase: ", confirm);
}

static int org_key_export(cli *c)
{
    cli_opt opts[] = {{"output", OPT_ONE, NULL, 0},
                      {"recovery-passphrase-file", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    cli_secret rec = {NULL, 0};
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    if (!opts[0].count || !opts[0].values[0][0]) {
        cli_error("org key export: missing --output FILE");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0 ||
        (rc = recovery_get(&rec, &opts[1], 1)) != 0)
        goto cleanup;
    int r = fv_org_key_export(v, opts[0].values[0], rec.buf, rec.len);
    cli_secret_free(&rec);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "output");
        json_strz(stdout, opts[0].values[0]);
        fputs(", ", stdout);
        json_key(stdout, "exported");
        fputs("true}\n", stdout);
    } else {
        fputs("organisation key written to ", stdout);
        text_puts(stdout, opts[0].values[0]);
        fputs(" (encrypted under the recovery passphrase; keep it apart "
              "from this vault)\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_secret_free(&rec);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

static int org_key_import(cli *c)
{
    cli_opt opts[] = {{"recovery-passphrase-file", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    cli_secret rec = {NULL, 0};
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc;

    if (cli_begin(c, opts, 1, 1, "FILE", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0 ||
        (rc = recovery_get(&rec, &opts[0], 0)) != 0)
        goto cleanup;
    int r = fv_org_key_import(v, c->pos[0], rec.buf, rec.len);
    cli_secret_free(&rec);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "imported");
        fputs("true}\n", stdout);
    } else {
        fputs("organisation key imported: this vault reads what the "
              "organisation's coordinators read\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_secret_free(&rec);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

static int org_key(cli *c)
{
    static const subcommand subs[] = {{"export", org_key_export},
                                      {"import", org_key_import},
                                      {NULL, NULL}};
    return run_subcommand(c, subs, "export or import");
}

int cmd_org(cli *c)
{
    static const subcommand subs[] = {{"init", org_init},
                                      {"invite", org_invite},
                                      {"devices", org_devices},
                                      {"revoke", org_revoke},
                                      {"key", org_key},
                                      {NULL, NULL}};
    return run_subcommand(c, subs, "init, invite, devices, revoke or key");
}

/* ---- sync ---------------------------------------------------------------------- */

/* "; attachment chunks: 3 sent, 2 received, ..." for the counts that are not
 * zero; nothing when all are. */
static void print_chunk_counts(const fv_sync_result *res)
{
    const struct {
        uint64_t n;
        const char *what;
    } parts[] = {
        {res->chunks_sent, "sent"},
        {res->chunks_received, "received"},
        {res->chunks_unavailable, "not yet on the server"},
        {res->chunks_rejected, "rejected (failed verification)"},
    };
    int first = 1;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i].n == 0)
            continue;
        fprintf(stdout, "%s%llu %s", first ? "; attachment chunks: " : ", ",
                (unsigned long long)parts[i].n, parts[i].what);
        first = 0;
    }
}

int cmd_sync(cli *c)
{
    cli_opt opts[] = {{"server", OPT_ONE, NULL, 0},
                      {"timeout", OPT_ONE, NULL, 0},
                      {"proxy", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    net_progress prog;
    fv_sync_session *s = NULL;
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc) ||
        (rc = sync_options(&so, &opts[0], &opts[1], &opts[2])) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    /* A session, so that Ctrl-C or SIGTERM stops it at once, even while a
     * connect or the TLS handshake hangs. */
    net_begin(&prog, "syncing", &so);
    cli_cancel_arm();
    int r = fv_sync_session_new(&s, v, &so);
    if (r == FV_OK) {
        cli_cancel_session(s);
        r = fv_sync_session_run(s, &res);
        cli_cancel_session(NULL);
    }
    net_end(&prog);
    /* Said first, whatever follows: the server lost data or shows another
     * log, and this device started over with it (docs/PROTOCOL.md). */
    if (res.rollback)
        cli_error("%s: this device read its log again from the start and "
                  "pushed again everything it wrote",
                  res.rollback == FV_ROLLBACK_BEHIND
                      ? "the server's log went back or lost what it receipted "
                        "(restored from an older backup?)"
                      : "the server's log differs from what this device read "
                        "(restored from an older backup, or rewritten)");
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fprintf(stdout,
                "{\"pushed\": %llu, \"pulled\": %llu, \"added\": %llu, "
                "\"conflicts\": %zu, \"bytes_sent\": %llu, "
                "\"bytes_received\": %llu, \"roundtrips\": %u, "
                "\"chunks_sent\": %llu, \"chunks_received\": %llu, "
                "\"chunks_unavailable\": %llu, \"chunks_rejected\": %llu, "
                "\"dropped\": %zu, \"refused\": %llu, \"rejected\": %llu, \"rollback\": %s}\n",
                (unsigned long long)res.pushed, (unsigned long long)res.pulled,
                (unsigned long long)res.added, res.conflicts,
                (unsigned long long)res.bytes_sent,
                (unsigned long long)res.bytes_received, res.roundtrips,
                (unsigned long long)res.chunks_sent,
                (unsigned long long)res.chunks_received,
                (unsigned long long)res.chunks_unavailable,
                (unsigned long long)res.chunks_rejected, res.dropped,
                (unsigned long long)res.refused,
                (unsigned long long)res.rejected,
                res.rollback == FV_ROLLBACK_BEHIND     ? "\"behind\""
                : res.rollback == FV_ROLLBACK_DIVERGED ? "\"diverged\""
                                                       : "null");
    } else {
        char sent[32], recvd[32];
        size_format(sent, sizeof sent, res.bytes_sent);
        size_format(recvd, sizeof recvd, res.bytes_received);
        fprintf(stdout,
                "pushed %llu, pulled %llu (%llu new), %zu %s; %s sent, "
                "%s received, %u round %s",
                (unsigned long long)res.pushed, (unsigned long long)res.pulled,
                (unsigned long long)res.added, res.conflicts,
                plural(res.conflicts, "conflict", "conflicts"), sent, recvd,
                res.roundtrips, plural(res.roundtrips, "trip", "trips"));
        print_chunk_counts(&res);
        if (res.dropped)
            fprintf(stdout, "; dropped %zu delivered %s from this device",
                    res.dropped, plural(res.dropped, "record", "records"));
        fputc('\n', stdout);
    }
    rc = cli_flush_stdout();
    /* The sync itself succeeded, but chunks that failed verification were
     * dropped: the data the server holds (or sent) is damaged. Said after
     * the summary, which stays complete. */
    /* Envelopes whose content broke the format were left out (the rest
     * of the sync went on): damaged or forged data, exit 5. */
    if (res.refused > 0) {
        int one = res.refused == 1;
        cli_error("%llu %s from the server %s refused: %s content breaks the "
                  "format and %s not stored",
                  (unsigned long long)res.refused,
                  one ? "envelope" : "envelopes", one ? "was" : "were",
                  one ? "its" : "their", one ? "was" : "were");
        if (rc == CLI_OK)
            rc = CLI_CORRUPT;
    }
    /* Envelopes of this vault the server refused (PROTOCOL.md, PUSH and
     * RECEIPT): kept here, not sent again, the rest delivered. */
    if (res.rejected > 0) {
        int one = res.rejected == 1;
        cli_error("%llu %s of this vault %s refused by the server and %s "
                  "not sent again (the server log says why)",
                  (unsigned long long)res.rejected,
                  one ? "envelope" : "envelopes", one ? "was" : "were",
                  one ? "is" : "are");
        if (rc == CLI_OK)
            rc = CLI_CORRUPT;
    }
    if (res.rollback && rc == CLI_OK)
        rc = CLI_ROLLBACK;
    if (res.chunks_rejected > 0) {
        int one = res.chunks_rejected == 1;
        cli_error("%llu attachment %s failed verification and %s not stored; "
                  "%s will be asked for again",
                  (unsigned long long)res.chunks_rejected,
                  one ? "chunk" : "chunks", one ? "was" : "were",
                  one ? "it" : "they");
        if (rc == CLI_OK)
            rc = CLI_CORRUPT;
    }
cleanup:
    fv_sync_session_free(s);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

/* ---- bundle export, import --------------------------------------------------- */

/* --max-size SIZE: bytes, or a number with K, M, G (powers of 1024). */
static int parse_size(const cli_opt *o, uint64_t *bytes)
{
    const char *s = o->count ? o->values[0] : "";
    char *end = NULL;
    unsigned long long n;
    unsigned shift = 0;

    *bytes = 0;
    if (!o->count)
        return 0;
    errno = 0;
    n = (s[0] >= '0' && s[0] <= '9') ? strtoull(s, &end, 10) : 0;
    if (end && (end[0] == 'K' || end[0] == 'k'))
        shift = 10;
    else if (end && (end[0] == 'M' || end[0] == 'm'))
        shift = 20;
    else if (end && (end[0] == 'G' || end[0] == 'g'))
        shift = 30;
    if (end && shift)
        end++;
    if (!end || *end || errno || n == 0 || n > (UINT64_MAX >> shift)) {
        cli_error("--max-size: want a size such as 4G, 700M or a number of "
                  "bytes, not '%s'", s);
        return CLI_USAGE;
    }
    *bytes = (uint64_t)n << shift;
    return 0;
}

static int bundle_export(cli *c)
{
    cli_opt opts[] = {{"with-attachments", OPT_FLAG, NULL, 0},
                      {"no-attachments", OPT_FLAG, NULL, 0},
                      {"max-size", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_vault *v = NULL;
    char *dir = NULL, size[32];
    fv_bundle_options o = FV_BUNDLE_OPTIONS_INIT;
    fv_bundle_stats st = FV_BUNDLE_STATS_INIT;
    int rc;

    if (cli_begin(c, opts, 1, 1, "FILE", &rc))
        goto cleanup;
    if (opts[0].count && opts[1].count) {
        cli_error("--with-attachments and --no-attachments exclude each other");
        rc = CLI_USAGE;
        goto cleanup;
    }
    o.no_attachments = opts[1].count > 0;
    if ((rc = parse_size(&opts[2], &o.max_size)) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    const char *file = c->pos[0];
    int r = fv_bundle_export(v, &st, file, &o);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "file");
        json_strz(stdout, file);
        fprintf(stdout,
                ", \"envelopes\": %llu, \"chunks\": %llu, "
                "\"chunk_bytes\": %llu, \"parts\": %llu}\n",
                (unsigned long long)st.envelopes,
                (unsigned long long)st.chunks,
                (unsigned long long)st.chunk_bytes,
                (unsigned long long)(o.max_size ? st.parts : 0));
    } else {
        fprintf(stdout, "exported %llu %s", (unsigned long long)st.envelopes,
                plural(st.envelopes, "envelope", "envelopes"));
        if (st.chunks) {
            size_format(size, sizeof size, st.chunk_bytes);
            fprintf(stdout, " and %llu attachment %s (%s)",
                    (unsigned long long)st.chunks,
                    plural(st.chunks, "chunk", "chunks"), size);
        }
        fputs(" to ", stdout);
        text_puts(stdout, file);
        if (o.max_size) {
            fputs(".001", stdout);
            if (st.parts > 1) {
                fputs(" ... ", stdout);
                text_puts(stdout, file);
                fprintf(stdout, ".%03llu", (unsigned long long)st.parts);
            }
            fprintf(stdout, " (%llu %s)", (unsigned long long)st.parts,
                    plural(st.parts, "part", "parts"));
        }
        fputc('\n', stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

static int bundle_import(cli *c)
{
    fv_vault *v = NULL;
    char *dir = NULL;
    fv_bundle_stats st = FV_BUNDLE_STATS_INIT;
    int rc;

    if (cli_begin(c, NULL, 1, 1, "FILE", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    uint64_t held_before = 0, held = 0;
    int r = fv_quarantine_list(v, count_held, &held_before);
    if (r == FV_OK)
        r = fv_bundle_import(v, &st, c->pos[0]);
    if (r == FV_OK)
        r = fv_quarantine_list(v, count_held, &held);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    /* How much the quarantine grew (a bundle's certificates may also
     * release envelopes held before: the count is then the net). */
    held = held > held_before ? held - held_before : 0;
    print_import(c, c->pos[0], &st, 1, &held);
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    return rc;
}

int cmd_bundle(cli *c)
{
    static const subcommand subs[] = {{"export", bundle_export},
                                      {"import", bundle_import},
                                      {NULL, NULL}};
    return run_subcommand(c, subs, "export or import");
}
