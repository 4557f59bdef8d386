/*
 * common.c - what FieldVault's benchmarks share (common.h): diagnostics and
 * the one-line JSON results, name selection, timing, a scratch directory
 * removed at exit, vaults, a server (in this process's files, or the
 * `fieldvault serve` process) and its devices, /proc figures, and a minimal
 * reader of envelopes (COSE_Sign1, docs/FORMAT.md) for the limits.
 */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

char *scratch;             /* removed at exit */
static unsigned dir_serial;
static pid_t serve_pid;    /* a `fieldvault serve` child, killed at exit */
static pid_t socks_pid;    /* a microsocks child, killed at exit */
const char *bench_prog = "bench";
const char *bench_fieldvault = "fieldvault";
static const char *const *names;
static int nnames;

static pid_t owner; /* the process that made the scratch directory */

static void cleanup(void)
{
    if (getpid() != owner) /* a forked child leaves them to its parent */
        return;
    if (serve_pid > 0) {
        kill(serve_pid, SIGKILL);
        waitpid(serve_pid, NULL, 0);
        serve_pid = 0;
    }
    if (socks_pid > 0) {
        kill(socks_pid, SIGKILL);
        waitpid(socks_pid, NULL, 0);
        socks_pid = 0;
    }
    if (scratch) {
        rm_tree(scratch);
        free(scratch);
        scratch = NULL;
    }
}

void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", bench_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1); /* cleanup() runs from atexit */
}

void note(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", bench_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* One measurement, one line. `limit` <= 0: no limit applies. */
void report(const char *name, double value, const char *unit, double limit,
            int decimals)
{
    printf("{\"bench\": \"%s\", \"value\": %.*f, \"unit\": \"%s\"", name,
           decimals, value, unit);
    if (limit > 0)
        printf(", \"limit\": %.*f, \"ratio\": %.3f", decimals, limit,
               value / limit);
    printf("}\n");
    fflush(stdout);
}

void bench_select(const char *const *selected, int n)
{
    names = selected;
    nnames = n;
}

int wanted(const char *name)
{
    if (nnames == 0)
        return 1;
    for (int i = 0; i < nnames; i++)
        if (strncmp(name, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

struct bench_cmdline bench_cmdline(int argc, char **argv, const char *prog,
                                   const char *usage,
                                   const char *const *known, size_t nknown,
                                   const struct bench_flag *flags)
{
    struct bench_cmdline c = {0, NULL};
    const char **sel = xmalloc((size_t)argc * sizeof *sel);
    int nsel = 0;

    bench_prog = prog;
    bench_fieldvault = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct bench_flag *f = NULL;
        for (size_t k = 0; flags && flags[k].name && !f; k++)
            if (!strcmp(a, flags[k].name))
                f = &flags[k];
        if (!strcmp(a, "--quick")) {
            c.quick = 1;
        } else if (f && f->on) {
            *f->on = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            exit(0);
        } else if (a[0] == '-' && i + 1 < argc &&
                   (f || !strcmp(a, "--dir") || !strcmp(a, "--fieldvault"))) {
            const char *v = argv[++i];
            if (!f && !strcmp(a, "--dir"))
                c.dir = v;
            else if (!f)
                bench_fieldvault = v;
            else if (f->count)
                *f->count = parse_count(v, a);
            else
                *f->text = v;
        } else if (a[0] == '-') {
            fprintf(stderr, "%s: unknown option %s\n%s", prog, a, usage);
            exit(2);
        } else {
            int hit = 0;
            for (size_t k = 0; k < nknown; k++)
                hit |= strncmp(known[k], a, strlen(a)) == 0;
            if (!hit) {
                fprintf(stderr, "%s: no measurement is named %s\n%s", prog,
                        a, usage);
                exit(2);
            }
            sel[nsel++] = a;
        }
    }
    if (!bench_fieldvault)
        bench_fieldvault = default_fieldvault();
    bench_select(sel, nsel); /* kept for the program's life */
    return c;
}

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long my_tid(void)
{
    return (long)syscall(SYS_gettid);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

void fv_check(int rc, fv_vault *v, const char *what)
{
    if (rc != FV_OK)
        die("%s: %s (%s)", what, fv_strerror(rc),
            v ? fv_vault_errmsg(v) : "no handle");
}

/* ---- scratch files -------------------------------------------------- */

void rm_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        if (d) {
            while ((de = readdir(d)) != NULL) {
                char *child;
                size_t n;
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                    continue;
                n = strlen(path) + strlen(de->d_name) + 2;
                child = xmalloc(n);
                snprintf(child, n, "%s/%s", path, de->d_name);
                rm_tree(child);
                free(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

void make_scratch(const char *base)
{
    if (!base)
        base = getenv("TMPDIR");
    size_t n;
    if (!base || !*base)
        base = "/tmp";
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        die("cannot make %s: %s", base, strerror(errno));
    n = strlen(base) + 32;
    scratch = xmalloc(n);
    snprintf(scratch, n, "%s/fv-bench.XXXXXX", base);
    if (!mkdtemp(scratch)) {
        free(scratch);
        scratch = NULL;
        die("cannot make a scratch directory in %s: %s", base, strerror(errno));
    }
    owner = getpid();
    atexit(cleanup);
}

/* A new path in the scratch directory; the caller frees it. */
char *scratch_path(const char *what)
{
    size_t n = strlen(scratch) + strlen(what) + 24;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s-%u", scratch, what, ++dir_serial);
    return p;
}

char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void copy_file(const char *from, const char *to, mode_t mode)
{
    static unsigned char buf[1 << 20];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777);
    ssize_t r;
    if (in < 0 || out < 0)
        die("cannot copy %s to %s: %s", from, to, strerror(errno));
    while ((r = read(in, buf, sizeof buf)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("cannot read %s: %s", from, strerror(errno));
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                die("cannot write %s: %s", to, strerror(errno));
            off += w;
        }
    }
    close(in);
    if (fsync(out) != 0 || close(out) != 0)
        die("cannot write %s: %s", to, strerror(errno));
}

/* Copies a directory of files (a closed vault, a stopped server). */
void copy_tree(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *de;
    struct stat sb;
    if (!d || stat(from, &sb) != 0 || mkdir(to, sb.st_mode & 0777) != 0)
        die("cannot copy %s to %s: %s", from, to, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        char *src, *dst;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        src = path_join(from, de->d_name);
        dst = path_join(to, de->d_name);
        if (lstat(src, &sb) != 0)
            die("cannot read %s: %s", src, strerror(errno));
        if (S_ISDIR(sb.st_mode))
            copy_tree(src, dst);
        else if (S_ISREG(sb.st_mode))
            copy_file(src, dst, sb.st_mode);
        free(src);
        free(dst);
    }
    closedir(d);
}

/* ---- test records --------------------------------------------------- */

uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: the content only has to look like text. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

void make_narrative(char *out, size_t len, uint64_t seed)
{
    static const char *const words[] = {
        "the", "soldiers", "came", "to", "village", "at", "night", "and",
        "we", "were", "taken", "from", "our", "houses", "my", "brother",
        "was", "beaten", "in", "front", "of", "his", "children", "they",
        "asked", "about", "men", "who", "had", "left", "for", "city",
        "nobody", "told", "us", "where", "detained", "three", "days",
        "later", "water", "was", "cut", "market", "burned", "witness",
    };
    size_t pos = 0, nwords = sizeof words / sizeof words[0];
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    while (pos < len) {
        uint64_t r = rng_next(&s);
        const char *w = words[r % nwords];
        size_t wl = strlen(w);
        for (size_t i = 0; i < wl && pos < len; i++)
            out[pos++] = w[i];
        if (pos < len)
            out[pos++] = (r >> 32) % 23 == 0 ? '\n' : ' ';
    }
}

/* Record i of a device: fixed-width content, so that every envelope of a
 * run has the same size. */
void make_record(struct rec_in *r, unsigned device, size_t i)
{
    static const char *const keys[NFIELDS] = {"location", "date"};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned k = (unsigned)(i % 1000000);
    snprintf(r->title, sizeof r->title, "Testimony %04u-%06u", device % 10000, k);
    make_narrative(r->narrative, NARRATIVE_BYTES, (uint64_t)device << 32 | i);
    snprintf(r->values[0], sizeof r->values[0], "District %02u, village %03u",
             k % 97, k % 997);
    snprintf(r->values[1], sizeof r->values[1], "2024-%02u-%02u", 1 + k % 12,
             1 + k % 28);
    for (int f = 0; f < NFIELDS; f++) {
        r->fields[f].key = keys[f];
        r->fields[f].value = r->values[f];
    }
    snprintf(r->tagbuf, sizeof r->tagbuf, "region-%c", 'a' + k % 26);
    r->tags[0] = r->tagbuf;
    in.title = r->title;
    in.narrative = r->narrative;
    in.narrative_len = NARRATIVE_BYTES;
    in.fields = r->fields;
    in.nfields = NFIELDS;
    in.tags = r->tags;
    in.ntags = 1;
    r->in = in;
}

void add_records(fv_vault *v, unsigned device, size_t first, size_t n)
{
    struct rec_in rec;
    for (size_t i = first; i < first + n; i++) {
        make_record(&rec, device, i);
        fv_check(fv_record_add(v, NULL, &rec.in), v, "fv_record_add");
    }
}

/* ---- attachment bytes ----------------------------------------------- */

void gen_init(struct gen *g, uint64_t seed, uint64_t bytes)
{
    g->state = seed ? seed : 1; /* xorshift stays at 0 once there */
    g->left = bytes;
    crypto_generichash_init(&g->hash, NULL, 0, crypto_generichash_BYTES);
}

long long gen_read(unsigned char *buf, size_t len, void *payload)
{
    struct gen *g = payload;
    size_t i;
    if (len > g->left)
        len = (size_t)g->left;
    for (i = 0; i + 8 <= len; i += 8) {
        uint64_t x = rng_next(&g->state);
        memcpy(buf + i, &x, 8);
    }
    for (; i < len; i++)
        buf[i] = (unsigned char)rng_next(&g->state);
    crypto_generichash_update(&g->hash, buf, len);
    g->left -= len;
    return (long long)len;
}

void hash_sink_init(struct hash_sink *h)
{
    crypto_generichash_init(&h->hash, NULL, 0, crypto_generichash_BYTES);
    h->bytes = 0;
}

int hash_write(const unsigned char *buf, size_t len, void *payload)
{
    struct hash_sink *h = payload;
    crypto_generichash_update(&h->hash, buf, len);
    h->bytes += len;
    return 0;
}

/* ---- vaults, servers, devices --------------------------------------- */

fv_vault *create_vault(const char *dir)
{
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    co.kdf_profile = FV_KDF_TEST;
    fv_check(fv_vault_create(&v, dir, PASSPHRASE, strlen(PASSPHRASE), &co),
             NULL, "fv_vault_create");
    return v;
}

fv_vault *open_vault(const char *dir)
{
    fv_vault *v = NULL;
    fv_check(fv_vault_open(&v, dir, PASSPHRASE, strlen(PASSPHRASE)), v,
             "fv_vault_open");
    return v;
}

char *server_create(const char *dir)
{
    unsigned char pin[32];
    char *admin = NULL;
    int rc = fv_server_init(dir, "127.0.0.1:0", pin, &admin);
    if (rc != FV_OK)
        die("fv_server_init: %s", fv_strerror(rc));
    return admin;
}

/* A new vault in `dir`, enrolled as a field device through an invite made
 * with fv_server_invite. */
fv_vault *field_device(const char *server_dir, const char *addr,
                              const char *dir, const char *name)
{
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    char *invite = NULL;
    fv_vault *v;
    int role = 0, rc;
    so.server = addr;
    rc = fv_server_invite(server_dir, name, FV_ROLE_FIELD, INVITE_TTL, &invite);
    if (rc != FV_OK)
        die("fv_server_invite: %s", fv_strerror(rc));
    v = create_vault(dir);
    fv_check(fv_enroll(v, &role, invite, &so), v, "fv_enroll");
    if (role != FV_ROLE_FIELD)
        die("a field invite gave role %d", role);
    free(invite);
    return v;
}

fv_sync_result sync_or_die(fv_vault *v, const char *addr,
                                  const char *what)
{
    return sync_via(v, addr, NULL, what);
}

fv_sync_result sync_via(fv_vault *v, const char *addr, const char *proxy,
                        const char *what)
{
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    res = (fv_sync_result)FV_SYNC_RESULT_INIT;
    so.server = addr;
    so.proxy = proxy ? proxy : "none";
    fv_check(fv_sync(v, &res, &so), v, what);
    return res;
}


/* danted's configuration in the scratch directory: SOCKS5 without
 * authentication on 127.0.0.1:port, CONNECT to anywhere from loopback. */
static char *dante_conf(const char *port)
{
    char *path = scratch_path("danted.conf");
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    fprintf(f, "logoutput: /dev/null\n"
               "internal: 127.0.0.1 port = %s\n"
               "external: 127.0.0.1\n"
               "clientmethod: none\n"
               "socksmethod: none\n"
               "%s"
               "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
               "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }\n",
            port, geteuid() == 0 ? "user.unprivileged: nobody\n" : "");
    if (fclose(f) != 0)
        die("cannot write %s", path);
    return path;
}

pid_t socks_start(const char *kind, char *url, size_t cap)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    double deadline = now() + 10;
    char port[8], *conf = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0), dante = strcmp(kind, "dante") == 0;
    pid_t pid;

    if (!dante && strcmp(kind, "microsocks") != 0)
        die("unknown SOCKS5 server %s (" SOCKS_KINDS ")", kind);
    /* A free port: bound, read back, released for the proxy to take. */
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.sin_port));
    snprintf(url, cap, "socks5h://127.0.0.1:%s", port);
    if (dante)
        conf = dante_conf(port);
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
            _exit(126);
        /* danted stays in the foreground without -D; /usr/sbin is not on
         * every user's PATH. */
        if (dante)
            execl("/usr/sbin/danted", "danted", "-f", conf, (char *)NULL);
        else
            execlp("microsocks", "microsocks", "-i", "127.0.0.1", "-p", port,
                   (char *)NULL);
        _exit(127);
    }
    free(conf);
    socks_pid = pid;
    for (;;) {
        int status, ok;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return pid;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            socks_pid = 0;
            die("%s did not start (scripts/deps installs it)",
                dante ? "danted" : "microsocks");
        }
        if (now() > deadline)
            die("%s did not listen within 10 s", dante ? "danted" : "microsocks");
        usleep(20000);
    }
}

void socks_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    socks_pid = 0;
}

sqlite3 *open_ro(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die("cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
    return db;
}

int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        die("sqlite: %s: %s", sql, sqlite3_errmsg(db));
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- reading envelopes (COSE_Sign1, docs/FORMAT.md) ------------------ */

int cbor_head(struct cur *c, int *major, uint64_t *arg)
{
    unsigned b, ai, len;
    if (c->err || c->pos >= c->n)
        return c->err = 1;
    b = c->p[c->pos++];
    *major = (int)(b >> 5);
    ai = b & 31;
    if (ai < 24) {
        *arg = ai;
        return 0;
    }
    if (ai > 27)
        return c->err = 1;
    len = 1u << (ai - 24);
    if (c->n - c->pos < len)
        return c->err = 1;
    *arg = 0;
    for (unsigned i = 0; i < len; i++)
        *arg = *arg << 8 | c->p[c->pos++];
    return 0;
}

int cbor_expect(struct cur *c, int major, uint64_t *arg)
{
    int m;
    if (cbor_head(c, &m, arg) || m != major)
        return c->err = 1;
    return 0;
}

int cbor_bytes(struct cur *c, const unsigned char **p, size_t *n)
{
    uint64_t len;
    if (cbor_expect(c, 2, &len) || len > c->n - c->pos)
        return c->err = 1;
    *p = c->p + c->pos;
    *n = (size_t)len;
    c->pos += (size_t)len;
    return 0;
}

int cbor_skip(struct cur *c, int depth)
{
    int major;
    uint64_t arg;
    if (depth > 8 || cbor_head(c, &major, &arg))
        return c->err = 1;
    switch (major) {
    case 2:
    case 3:
        if (arg > c->n - c->pos)
            return c->err = 1;
        c->pos += (size_t)arg;
        return 0;
    case 4:
        for (uint64_t i = 0; i < arg && !c->err; i++)
            cbor_skip(c, depth + 1);
        return c->err;
    case 5:
        for (uint64_t i = 0; i < 2 * arg && !c->err; i++)
            cbor_skip(c, depth + 1);
        return c->err;
    case 6:
        return cbor_skip(c, depth + 1);
    default:
        return 0;
    }
}

/* Finds an envelope's protected header (and in it the author's key), its
 * body and its signature. 0 on success. */
int parse_env(struct env_view *ev, const unsigned char *p, size_t n)
{
    struct cur c = {p, n, 0, 0}, h;
    uint64_t arg, key;
    size_t len;
    memset(ev, 0, sizeof *ev);
    if (cbor_expect(&c, 6, &arg) || arg != 18 || cbor_expect(&c, 4, &arg) ||
        arg != 4 || cbor_bytes(&c, &ev->prot, &ev->prot_len) ||
        cbor_expect(&c, 5, &arg) || arg != 0 ||
        cbor_bytes(&c, &ev->body, &ev->body_len) ||
        cbor_bytes(&c, &ev->sig, &len) || len != crypto_sign_BYTES ||
        c.pos != n)
        return 1;
    h = (struct cur){ev->prot, ev->prot_len, 0, 0};
    if (cbor_expect(&h, 5, &arg))
        return 1;
    for (uint64_t i = 0, m = arg; i < m; i++) {
        if (cbor_expect(&h, 0, &key))
            return 1;
        if (key == 4) {
            if (cbor_bytes(&h, &ev->author, &len) ||
                len != crypto_sign_PUBLICKEYBYTES)
                return 1;
        } else if (cbor_skip(&h, 0)) {
            return 1;
        }
    }
    return !ev->author;
}

size_t put_head(unsigned char *out, int major, uint64_t arg)
{
    unsigned char tmp[9];
    size_t n;
    if (arg < 24) {
        tmp[0] = (unsigned char)(major << 5 | (int)arg);
        n = 1;
    } else {
        int ai = arg <= 0xff ? 24 : arg <= 0xffff ? 25 : arg <= 0xffffffffu ? 26 : 27;
        size_t len = (size_t)1 << (ai - 24);
        tmp[0] = (unsigned char)(major << 5 | ai);
        for (size_t i = 0; i < len; i++)
            tmp[1 + i] = (unsigned char)(arg >> (8 * (len - 1 - i)));
        n = 1 + len;
    }
    if (out)
        memcpy(out, tmp, n);
    return n;
}

/* The COSE Sig_structure ["Signature1", protected, h'', body] that the
 * envelope's signature covers (RFC 9052 4.4). With out == NULL, its size. */
size_t sig_structure(unsigned char *out, const struct env_view *ev)
{
    static const char ctx[] = "Signature1";
    size_t n = 0;
#define PUT(major, arg) n += put_head(out ? out + n : NULL, major, arg)
#define RAW(p, len)                       \
    do {                                  \
        if (out)                          \
            memcpy(out + n, (p), (len));  \
        n += (len);                       \
    } while (0)
    PUT(4, 4);
    PUT(3, sizeof ctx - 1);
    RAW(ctx, sizeof ctx - 1);
    PUT(2, ev->prot_len);
    RAW(ev->prot, ev->prot_len);
    PUT(2, 0);
    PUT(2, ev->body_len);
    RAW(ev->body, ev->body_len);
#undef PUT
#undef RAW
    return n;
}


/* A value in KiB from /proc/PID/status ("VmRSS", "VmHWM"), or -1. */
long status_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    FILE *f;
    long v = -1;
    size_t n = strlen(field);
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    fputs("5", f);
    return fclose(f) == 0 ? 0 : -1;
}

/* CPU seconds (user + system) a process has used so far, or -1. */
double proc_cpu(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    long hz = sysconf(_SC_CLK_TCK);
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* After "pid (comm) ": state is field 3, utime and stime 14 and 15. */
    if (!(p = strrchr(buf, ')')) ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2 || hz <= 0)
        return -1;
    return (double)(ut + st) / (double)hz;
}

double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* The last lines of a file, on stderr (a server's log, after a failure). */
void tail_file(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    char buf[512];
    char **ring;
    long n = 0;
    if (!f)
        return;
    ring = calloc((size_t)lines, sizeof *ring);
    while (ring && fgets(buf, sizeof buf, f)) {
        free(ring[n % lines]);
        ring[n % lines] = strdup(buf);
        n++;
    }
    for (long i = n > lines ? n - lines : 0; ring && i < n; i++) {
        fprintf(stderr, "  %s", ring[i % lines] ? ring[i % lines] : "\n");
        free(ring[i % lines]);
    }
    free(ring);
    fclose(f);
}

/* Starts `fieldvault serve --data DIR --listen 127.0.0.1:0`, its stderr to
 * `log`, and waits for its "listening on HOST:PORT" line. */
pid_t serve_start(const char *dir, const char *log, char *addr,
                         size_t addr_cap)
{
    return serve_start_with(dir, log, addr, addr_cap, NULL);
}

pid_t serve_start_with(const char *dir, const char *log, char *addr,
                       size_t addr_cap, const char *const *extra)
{
    double deadline = now() + 30;
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 ||
            dup2(fd, 2) < 0)
            _exit(126);
        const char *argv[32];
        size_t n = 0;
        argv[n++] = "fieldvault";
        argv[n++] = "serve";
        /* A PostgreSQL store (bench_pg) is --store, a directory --data. */
        argv[n++] = strncmp(dir, "postgresql://", 13) ? "--data" : "--store";
        argv[n++] = dir;
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
        for (size_t i = 0; extra && extra[i] && n + 1 < sizeof argv / sizeof *argv; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(bench_fieldvault, (char *const *)argv);
        _exit(127);
    }
    serve_pid = pid;
    for (;;) {
        FILE *f = fopen(log, "r");
        char line[512];
        int status;
        if (f) {
            while (fgets(line, sizeof line, f)) {
                /* The ready line (not the log line "listening on HOST port
                 * N" that precedes it). */
                static const char ready[] = "fieldvault serve: listening on ";
                if (!strncmp(line, ready, sizeof ready - 1)) {
                    const char *p = line + sizeof ready - 1;
                    size_t len;
                    len = strcspn(p, " \r\n");
                    if (len == 0 || len >= addr_cap)
                        die("cannot read the server's address: %s", line);
                    memcpy(addr, p, len);
                    addr[len] = '\0';
                    fclose(f);
                    return pid;
                }
            }
            fclose(f);
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            serve_pid = 0;
            note("%s serve exited (status %d) before listening:", bench_fieldvault,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            tail_file(log, 20);
            die("cannot run %s (build it, or give --fieldvault PATH)",
                bench_fieldvault);
        }
        if (now() > deadline)
            die("%s serve did not listen within 30 s", bench_fieldvault);
        usleep(20000);
    }
}

/* Stops the server with SIGTERM; its exit status must be 0. */
void serve_stop(pid_t pid, const char *log, long *maxrss)
{
    struct rusage ru;
    int status;
    kill(pid, SIGTERM);
    if (wait4(pid, &status, 0, &ru) != pid)
        die("waiting for the server: %s", strerror(errno));
    serve_pid = 0;
    *maxrss = ru.ru_maxrss;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        note("the server ended with status %d:", status);
        tail_file(log, 20);
        die("the server failed");
    }
}

/* `fieldvault` in the directory of this program. */
const char *default_fieldvault(void)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    char *slash;
    if (n <= 0)
        return "fieldvault";
    path[n] = '\0';
    slash = strrchr(path, '/');
    if (!slash)
        return "fieldvault";
    /* readlink left 16 bytes of room: "fieldvault" and its NUL fit. */
    memcpy(slash + 1, "fieldvault", sizeof "fieldvault");
    return path;
}

double run_cli(const char *const *args, const char *out, long *rss)
{
    char *err = path_join(scratch, "cli.err");
    struct rusage ru;
    double t0;
    int status;
    pid_t pid;

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
        execv(bench_fieldvault, (char *const *)args);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) != pid)
        die("waiting for fieldvault: %s", strerror(errno));
    t0 = now() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char cmd[512] = "";
        for (size_t i = 1, n = 0; args[i] && n < sizeof cmd; i++)
            n += (size_t)snprintf(cmd + n, sizeof cmd - n, " %s", args[i]);
        note("fieldvault%s ended with status %d:", cmd, status);
        tail_file(err, 10);
        die("fieldvault failed");
    }
    if (rss)
        *rss = ru.ru_maxrss;
    unlink(err);
    free(err);
    return t0;
}

size_t parse_count(const char *s, const char *what)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s ? s : "", &end, 10);
    if (!s || errno || *end || v == 0 || v > 10000000)
        die("%s needs a count from 1 to 10000000", what);
    return (size_t)v;
}
