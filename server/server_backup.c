/* server_backup.c - one file holding a whole server, made while `serve`
 * runs, and a server made again from it (fv_server_backup,
 * fv_server_restore: server.h; the file's layout is docs/PROTOCOL.md,
 * "Server backups"). A PostgreSQL store goes through the same file: its
 * backup is written as the embedded store's directory would be (staged
 * beside the output), and restoring one into PostgreSQL restores the
 * directory privately, then migrates it in one transaction. */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fieldvault.h"
#include "crypto.h"
#include "fileio.h"
#include "server_stage.h"
#include "sstore.h"
#ifdef FV_HAVE_POSTGRESQL
#include "store_pg.h"
#endif

#define MAGIC "FVBACKUP"
#define MAGIC_LEN 8
#define VERSION 1u
#define NAME_MAX_LEN 64
#define MAX_ENTRIES (1u << 20)
#define MAX_SIZE ((uint64_t)1 << 40) /* one file: 1 TiB */
#define IO_BUF (64u << 10)
#define HASH_BYTES 32
#define PACK_PREFIX "chunks/pack-"
#define BUSY_MS 10000 /* how long the database's writer may hold us off */

static void say(char *msg, size_t size, const char *fmt, ...)
{
    va_list ap;
    if (!msg || !size)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, size, fmt, ap);
    va_end(ap);
}

/* A name the file may hold: a plain file of the server directory
 * ([A-Za-z0-9._-], not starting with a dot) or chunks/pack-NNNNNN. */
static int name_ok(const char *name, size_t n)
{
    size_t pl = sizeof PACK_PREFIX - 1;
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    if (n == pl + 6 && memcmp(name, PACK_PREFIX, pl) == 0) {
        for (size_t i = pl; i < n; i++)
            if (name[i] < '0' || name[i] > '9')
                return 0;
        return 1;
    }
    if (name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- writing ---------------------------------------------------------- */

typedef struct {
    int fd;
    crypto_generichash_state h;
    unsigned char *buf;
    size_t n;
    int rc;
    uint64_t total; /* bytes of the files held */
} writer;

static void w_flush(writer *w)
{
    if (w->rc == FV_OK && w->n)
        w->rc = fv_write_all(w->fd, w->buf, w->n);
    w->n = 0;
}

static void w_put(writer *w, const void *p, size_t len)
{
    const unsigned char *b = p;
    crypto_generichash_update(&w->h, b, len);
    while (len && w->rc == FV_OK) {
        size_t k = IO_BUF - w->n < len ? IO_BUF - w->n : len;
        memcpy(w->buf + w->n, b, k);
        w->n += k;
        b += k;
        len -= k;
        if (w->n == IO_BUF)
            w_flush(w);
    }
}

/* One entry: `name`, then `size` bytes read from fd (which must hold at
 * least that many). */
static int w_entry(writer *w, const char *name, int fd, uint64_t size,
                   char *msg, size_t msize)
{
    unsigned char hdr[2 + NAME_MAX_LEN + 8];
    size_t nl = strlen(name);
    unsigned char *tmp = NULL;
    uint64_t left = size, off = 0;

    put_be(hdr, nl, 2);
    memcpy(hdr + 2, name, nl);
    put_be(hdr + 2 + nl, size, 8);
    w_put(w, hdr, 2 + nl + 8);
    if (!(tmp = malloc(IO_BUF)))
        return FV_ENOMEM;
    while (left && w->rc == FV_OK) {
        size_t want = left < IO_BUF ? (size_t)left : IO_BUF;
        ssize_t r = pread(fd, tmp, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            free(tmp);
            say(msg, msize, "%s: %s", name,
                e ? fv_errno_text(e).text : "shorter than the database says");
            return e ? fv_errno_rc(e) : FV_ECORRUPT;
        }
        w_put(w, tmp, (size_t)r);
        w->total += (uint64_t)r;
        left -= (uint64_t)r;
        off += (uint64_t)r;
    }
    free(tmp);
    if (w->rc)
        say(msg, msize, "cannot write the backup: %s", fv_strerror(w->rc));
    return w->rc;
}

static int file_entry(writer *w, const char *dir, const char *name,
                      char *msg, size_t msize)
{
    char *path = fv_path_join(dir, name);
    struct stat sb;
    int fd, rc;
    if (!path)
        return FV_ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        say(msg, msize, "%s: %s", name, fv_errno_text(e).text);
        return fv_errno_rc(e);
    }
    rc = w_entry(w, name, fd, (uint64_t)sb.st_size, msg, msize);
    close(fd);
    return rc;
}

/* The database copied at one instant, into the file at tmp, and the length
 * of each pack it references at that instant (*packs: pairs of pack
 * number and length, *npacks of them). */
static int copy_db(const char *src, const char *tmp, uint64_t **packs,
                   size_t *npacks, char *msg, size_t msize)
{
    sqlite3 *s = NULL, *d = NULL;
    sqlite3_stmt *q = NULL;
    sqlite3_backup *b = NULL;
    uint64_t *p = NULL;
    size_t n = 0, cap = 0;
    int rc = FV_OK, r;

    *packs = NULL;
    *npacks = 0;
    if (sqlite3_open_v2(src, &s, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        say(msg, msize, "server.db: %s", s ? sqlite3_errmsg(s) : "cannot open");
        rc = FV_EIO;
        goto cleanup;
    }
    sqlite3_busy_timeout(s, BUSY_MS);
    /* One read transaction for the pack lengths and the copy: the backup
     * API reads within it (WAL: `serve` goes on writing meanwhile). */
    if (sqlite3_exec(s, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s, "SELECT pack, MAX(off + len) FROM chunk "
                              "GROUP BY pack ORDER BY pack",
                           -1, &q, NULL) != SQLITE_OK) {
        say(msg, msize, "server.db: %s", sqlite3_errmsg(s));
        rc = FV_ECORRUPT;
        goto cleanup;
    }
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 pk = sqlite3_column_int64(q, 0),
                      len = sqlite3_column_int64(q, 1);
        if (pk < 0 || pk > 999999 || len < 0 || (uint64_t)len > MAX_SIZE) {
            say(msg, msize, "server.db: a chunk outside any pack");
            rc = FV_ECORRUPT;
            goto cleanup;
        }
        if (n + 2 > cap) {
            uint64_t *np = realloc(p, (cap = cap ? cap * 2 : 32) * sizeof *p);
            if (!np) {
                rc = FV_ENOMEM;
                goto cleanup;
            }
            p = np;
        }
        p[n++] = (uint64_t)pk;
        p[n++] = (uint64_t)len;
    }
    if (r != SQLITE_DONE) {
        say(msg, msize, "server.db: %s", sqlite3_errmsg(s));
        rc = r == SQLITE_BUSY ? FV_EBUSY : FV_EIO;
        goto cleanup;
    }
    if (sqlite3_open_v2(tmp, &d, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        !(b = sqlite3_backup_init(d, "main", s, "main"))) {
        say(msg, msize, "cannot copy server.db: %s",
            d ? sqlite3_errmsg(d) : "out of memory");
        rc = FV_EIO;
        goto cleanup;
    }
    r = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (r != SQLITE_DONE) {
        say(msg, msize, "cannot copy server.db: %s", sqlite3_errstr(r));
        rc = r == SQLITE_BUSY || r == SQLITE_LOCKED ? FV_EBUSY
             : r == SQLITE_FULL                    ? FV_ENOSPC
                                                   : FV_EIO;
        goto cleanup;
    }
cleanup:
    sqlite3_finalize(q);
    if (s)
        sqlite3_exec(s, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(s);
    if (d && sqlite3_close(d) != SQLITE_OK && rc == FV_OK)
        rc = FV_EIO;
    if (rc == FV_OK) {
        *packs = p;
        *npacks = n / 2;
    } else {
        free(p);
    }
    return rc;
}

static int backup_dir(const char *dir, const char *output, uint64_t *files,
                      uint64_t *bytes, char *msg, size_t msg_size)
{
    static const char *const required[] = {"receipt.key", "tls.key",
                                           "tls.crt", NULL};
    writer w = {.fd = -1};
    char *db = NULL, *tmp = NULL, *dbtmp = NULL, *odir = NULL, *chunks = NULL;
    uint64_t *packs = NULL, nfiles = 0;
    size_t npacks = 0;
    int dbfd = -1, rc = FV_OK;
    DIR *dh = NULL;
    struct dirent *de;
    struct stat sb;
    unsigned char hdr[MAGIC_LEN + 4], end[2] = {0, 0}, hash[HASH_BYTES];

    if (files)
        *files = 0;
    if (bytes)
        *bytes = 0;
    say(msg, msg_size, "%s", "");
    if (!dir || !output || !*dir || !*output)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    if (!(db = fv_path_join(dir, "server.db")) ||
        !(chunks = fv_path_join(dir, "chunks")) ||
        !(odir = fv_path_dir(output)) ||
        !(tmp = calloc(1, strlen(output) + 16)) ||
        !(dbtmp = calloc(1, strlen(output) + 16)) || !(w.buf = malloc(IO_BUF))) {
        rc = FV_ENOMEM;
        goto cleanup;
    }
    if (stat(db, &sb) != 0) {
        say(msg, msg_size, "no server at %s", dir);
        rc = FV_ENOTFOUND;
        goto cleanup;
    }
    if (lstat(output, &sb) == 0) {
        say(msg, msg_size, "%s already exists", output);
        rc = FV_EEXIST;
        goto cleanup;
    }
    /* Both made 0600 by mkstemp: the backup holds the server's keys. */
    snprintf(tmp, strlen(output) + 16, "%s.tmp-XXXXXX", output);
    snprintf(dbtmp, strlen(output) + 16, "%s.db-XXXXXX", output);
    if ((w.fd = mkstemp(tmp)) < 0) {
        tmp[0] = '\0';
        say(msg, msg_size, "cannot create %s: %s", output,
            fv_errno_text(errno).text);
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    if ((dbfd = mkstemp(dbtmp)) < 0) {
        dbtmp[0] = '\0';
        say(msg, msg_size, "cannot create a file beside %s: %s", output,
            fv_errno_text(errno).text);
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    if ((rc = copy_db(db, dbtmp, &packs, &npacks, msg, msg_size)))
        goto cleanup;
    if (fstat(dbfd, &sb) != 0) {
        rc = fv_errno_rc(errno);
        goto cleanup;
    }

    crypto_generichash_init(&w.h, NULL, 0, HASH_BYTES);
    memcpy(hdr, MAGIC, MAGIC_LEN);
    put_be(hdr + MAGIC_LEN, VERSION, 4);
    w_put(&w, hdr, sizeof hdr);
    if ((rc = w_entry(&w, "server.db", dbfd, (uint64_t)sb.st_size, msg,
                      msg_size)))
        goto cleanup;
    nfiles++;
    for (int i = 0; required[i]; i++, nfiles++)
        if ((rc = file_entry(&w, dir, required[i], msg, msg_size)))
            goto cleanup;
    /* Other plain files of the directory (a certificate chain...). */
    if (!(dh = opendir(dir))) {
        say(msg, msg_size, "%s: %s", dir, fv_errno_text(errno).text);
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    while ((de = readdir(dh))) {
        const char *nm = de->d_name;
        char *path;
        int skip = !name_ok(nm, strlen(nm)) ||
                   strncmp(nm, "server.db", 9) == 0;
        for (int i = 0; required[i] && !skip; i++)
            skip = strcmp(nm, required[i]) == 0;
        if (skip || !(path = fv_path_join(dir, nm)))
            continue;
        skip = lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode);
        free(path);
        if (skip)
            continue;
        if ((rc = file_entry(&w, dir, nm, msg, msg_size)))
            goto cleanup;
        nfiles++;
    }
    /* Packs are appended to, never rewritten in place before the database
     * stops referencing what is there: their first bytes up to what the
     * copied database references are consistent with it. */
    for (size_t i = 0; i < npacks; i++, nfiles++) {
        char name[sizeof PACK_PREFIX + 8], *path;
        int fd;
        snprintf(name, sizeof name, PACK_PREFIX "%06u",
                 (unsigned)packs[2 * i]);
        if (!(path = fv_path_join(dir, name))) {
            rc = FV_ENOMEM;
            goto cleanup;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        free(path);
        if (fd < 0) {
            say(msg, msg_size, "%s: %s", name, fv_errno_text(errno).text);
            rc = errno == ENOENT ? FV_ECORRUPT : fv_errno_rc(errno);
            goto cleanup;
        }
        rc = w_entry(&w, name, fd, packs[2 * i + 1], msg, msg_size);
        close(fd);
        if (rc)
            goto cleanup;
    }
    w_put(&w, end, 2);
    crypto_generichash_final(&w.h, hash, HASH_BYTES);
    w_flush(&w);
    if (w.rc == FV_OK)
        w.rc = fv_write_all(w.fd, hash, HASH_BYTES);
    if ((rc = w.rc)) {
        say(msg, msg_size, "cannot write %s: %s", output, fv_strerror(rc));
        goto cleanup;
    }
    if (fsync(w.fd) != 0) {
        rc = fv_errno_rc(errno);
        say(msg, msg_size, "cannot write %s: %s", output,
            fv_errno_text(errno).text);
        goto cleanup;
    }
    /* link(): never over a file that appeared meanwhile. */
    if (link(tmp, output) != 0) {
        int e = errno;
        rc = e == EEXIST ? FV_EEXIST : fv_errno_rc(e);
        say(msg, msg_size, "cannot create %s: %s", output,
            fv_errno_text(e).text);
        goto cleanup;
    }
    if ((rc = fv_fsync_dir(odir)))
        say(msg, msg_size, "cannot make %s durable", output);
cleanup:
    if (w.fd >= 0)
        close(w.fd);
    if (dbfd >= 0)
        close(dbfd);
    if (dh)
        closedir(dh);
    if (tmp && tmp[0])
        unlink(tmp);
    if (dbtmp && dbtmp[0]) {
        size_t l = strlen(dbtmp);
        unlink(dbtmp);
        /* A journal SQLite may have left beside the copy. */
        char *j = malloc(l + 16);
        if (j) {
            snprintf(j, l + 16, "%s-journal", dbtmp);
            unlink(j);
            free(j);
        }
    }
    if (rc == FV_OK) {
        if (files)
            *files = nfiles;
        if (bytes)
            *bytes = w.total;
    } else if (msg && msg_size && !msg[0]) {
        say(msg, msg_size, "%s", fv_strerror(rc));
    }
    if (w.buf)
        sodium_memzero(w.buf, IO_BUF); /* held key bytes */
    free(w.buf);
    free(packs);
    free(db);
    free(chunks);
    free(odir);
    free(tmp);
    free(dbtmp);
    return rc;
}

/* ---- reading ---------------------------------------------------------- */

typedef struct {
    int fd;
    crypto_generichash_state h;
    unsigned char *buf;
    size_t pos, len;
    int eof;
} reader;

/* Exactly n bytes into out (hashed when `hash`): FV_OK, FV_ECORRUPT at a
 * premature end, FV_EIO. */
static int r_get(reader *r, void *out, size_t n, int hash)
{
    unsigned char *o = out;
    while (n) {
        if (r->pos == r->len) {
            ssize_t k = read(r->fd, r->buf, IO_BUF);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return fv_errno_rc(errno);
            if (k == 0)
                return FV_ECORRUPT;
            r->pos = 0;
            r->len = (size_t)k;
        }
        size_t m = r->len - r->pos < n ? r->len - r->pos : n;
        if (hash)
            crypto_generichash_update(&r->h, r->buf + r->pos, m);
        memcpy(o, r->buf + r->pos, m);
        r->pos += m;
        o += m;
        n -= m;
    }
    return FV_OK;
}

/* An empty directory or nothing at dir: 0 (*exists set), else -1. */
static int empty_or_missing(const char *dir, int *exists)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    int n = 0;
    *exists = 0;
    if (!dh)
        return errno == ENOENT ? 0 : -1;
    *exists = 1;
    while ((de = readdir(dh)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(dh);
    return n ? -1 : 0;
}

/* The restored database is a server's, and whole: 0, else FV_ECORRUPT
 * (SQLite's own checks, beyond the file's hash). */
static int db_check(const char *dir, char *msg, size_t msize)
{
    char *path = fv_path_join(dir, "server.db");
    sqlite3 *d = NULL;
    sqlite3_stmt *q = NULL;
    int rc = FV_ECORRUPT;
    if (!path)
        return FV_ENOMEM;
    if (sqlite3_open_v2(path, &d, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(d, "PRAGMA application_id", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW &&
        sqlite3_column_int64(q, 0) == 0x46565356 /* 'FVSV' */) {
        sqlite3_finalize(q);
        q = NULL;
        if (sqlite3_prepare_v2(d, "PRAGMA quick_check", -1, &q, NULL) ==
                SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0) &&
            strcmp((const char *)sqlite3_column_text(q, 0), "ok") == 0)
            rc = FV_OK;
    }
    sqlite3_finalize(q);
    sqlite3_close(d);
    free(path);
    if (rc)
        say(msg, msize, "the backup's server.db is not a whole server "
                        "database (nothing restored)");
    return rc;
}

static int restore_dir(const char *input, const char *dir_arg,
                       uint64_t *files, uint64_t *bytes, char *msg,
                       size_t msg_size)
{
    reader r = {.fd = -1};
    char *dir = NULL, *tmp = NULL, *parent = NULL, *chunks = NULL, *path = NULL;
    unsigned char hdr[MAGIC_LEN + 4], two[2], eight[8];
    unsigned char hash[HASH_BYTES], want[HASH_BYTES], *blk = NULL;
    uint64_t nfiles = 0, total = 0;
    int rc = FV_OK, exists, made = 0, have_db = 0, have_key = 0;
    int have_tls = 0, have_crt = 0;

    if (files)
        *files = 0;
    if (bytes)
        *bytes = 0;
    say(msg, msg_size, "%s", "");
    if (!input || !dir_arg || !*input || !*dir_arg)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    /* "SDIR/" names SDIR: the temporary directory goes beside it. */
    if (!(dir = strdup(dir_arg)))
        return FV_ENOMEM;
    for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/'; l--)
        dir[l - 1] = '\0';
    if (!strcmp(dir, "/")) {
        free(dir);
        return FV_EINVAL;
    }
    if (empty_or_missing(dir, &exists) != 0) {
        say(msg, msg_size, "%s is not empty (restore makes a new server "
                           "directory)", dir);
        free(dir);
        return FV_EEXIST;
    }
    if (!(parent = fv_path_dir(dir)) ||
        !(tmp = malloc(strlen(dir) + 24)) || !(r.buf = malloc(IO_BUF)) ||
        !(blk = malloc(IO_BUF))) {
        rc = FV_ENOMEM;
        goto cleanup;
    }
    if ((r.fd = open(input, O_RDONLY | O_CLOEXEC)) < 0) {
        say(msg, msg_size, "cannot open %s: %s", input,
            fv_errno_text(errno).text);
        rc = errno == ENOENT ? FV_ENOTFOUND : fv_errno_rc(errno);
        goto cleanup;
    }
    crypto_generichash_init(&r.h, NULL, 0, HASH_BYTES);
    if ((rc = r_get(&r, hdr, sizeof hdr, 1)) ||
        memcmp(hdr, MAGIC, MAGIC_LEN) != 0) {
        if (rc != FV_EIO && rc != FV_ENOSPC)
            rc = FV_ECORRUPT;
        say(msg, msg_size, "%s is not a FieldVault server backup", input);
        goto cleanup;
    }
    if (get_be(hdr + MAGIC_LEN, 4) != VERSION) {
        say(msg, msg_size, "%s is a backup of a newer, unknown format", input);
        rc = FV_EVERSION;
        goto cleanup;
    }
    snprintf(tmp, strlen(dir) + 24, "%s.restore-XXXXXX", dir);
    if (!mkdtemp(tmp)) { /* mode 0700 */
        say(msg, msg_size, "cannot create a directory beside %s: %s", dir,
            fv_errno_text(errno).text);
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    made = 1;
    if (!(chunks = fv_path_join(tmp, "chunks"))) {
        rc = FV_ENOMEM;
        goto cleanup;
    }
    if (mkdir(chunks, 0700) != 0) {
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    for (;;) {
        char name[NAME_MAX_LEN + 1];
        size_t nl;
        uint64_t size;
        int fd;
        if ((rc = r_get(&r, two, 2, 1)))
            goto bad;
        nl = (size_t)get_be(two, 2);
        if (nl == 0)
            break;
        if (nl > NAME_MAX_LEN || nfiles >= MAX_ENTRIES) {
            rc = FV_ECORRUPT;
            goto bad;
        }
        if ((rc = r_get(&r, name, nl, 1)) || (rc = r_get(&r, eight, 8, 1)))
            goto bad;
        name[nl] = '\0';
        size = get_be(eight, 8);
        if (!name_ok(name, nl) || memchr(name, '\0', nl) || size > MAX_SIZE) {
            rc = FV_ECORRUPT;
            goto bad;
        }
        free(path);
        if (!(path = fv_path_join(tmp, name))) {
            rc = FV_ENOMEM;
            goto cleanup;
        }
        /* O_EXCL: a name twice is a damaged file. */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
        if (fd < 0) {
            rc = errno == EEXIST ? FV_ECORRUPT : fv_errno_rc(errno);
            if (rc == FV_ECORRUPT)
                goto bad;
            say(msg, msg_size, "cannot write %s: %s", name,
                fv_errno_text(errno).text);
            goto cleanup;
        }
        while (size && rc == FV_OK) {
            size_t k = size < IO_BUF ? (size_t)size : IO_BUF;
            if ((rc = r_get(&r, blk, k, 1)) == FV_OK)
                rc = fv_write_all(fd, blk, k);
            size -= k;
            total += k;
        }
        if (rc == FV_OK && fsync(fd) != 0)
            rc = fv_errno_rc(errno);
        close(fd);
        if (rc == FV_ECORRUPT)
            goto bad;
        if (rc) {
            say(msg, msg_size, "cannot write %s: %s", name, fv_strerror(rc));
            goto cleanup;
        }
        have_db |= !strcmp(name, "server.db");
        have_key |= !strcmp(name, "receipt.key");
        have_tls |= !strcmp(name, "tls.key");
        have_crt |= !strcmp(name, "tls.crt");
        nfiles++;
    }
    crypto_generichash_final(&r.h, hash, HASH_BYTES);
    if ((rc = r_get(&r, want, HASH_BYTES, 0)))
        goto bad;
    if (sodium_memcmp(hash, want, HASH_BYTES) != 0) {
        rc = FV_ECORRUPT;
        goto bad;
    }
    if (r.pos != r.len || read(r.fd, two, 1) != 0) {
        rc = FV_ECORRUPT; /* bytes after the end */
        goto bad;
    }
    if (!have_db || !have_key || !have_tls || !have_crt) {
        rc = FV_ECORRUPT;
        goto bad;
    }
    if ((rc = db_check(tmp, msg, msg_size)) || (rc = fv_fsync_dir(chunks)) ||
        (rc = fv_fsync_dir(tmp)))
        goto cleanup;
    if (exists && rmdir(dir) != 0) {
        say(msg, msg_size, "%s: %s", dir, fv_errno_text(errno).text);
        rc = errno == ENOTEMPTY || errno == EEXIST ? FV_EEXIST
                                                   : fv_errno_rc(errno);
        goto cleanup;
    }
    if (rename(tmp, dir) != 0) {
        say(msg, msg_size, "cannot create %s: %s", dir,
            fv_errno_text(errno).text);
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    made = 0;
    rc = fv_fsync_dir(parent);
    goto cleanup;
bad:
    if (rc == FV_ECORRUPT)
        say(msg, msg_size, "%s is damaged or cut short (nothing restored)",
            input);
cleanup:
    if (r.fd >= 0)
        close(r.fd);
    if (made)
        fv_remove_tree(tmp);
    if (rc == FV_OK) {
        if (files)
            *files = nfiles;
        if (bytes)
            *bytes = total;
    } else if (msg && msg_size && !msg[0]) {
        say(msg, msg_size, "%s", fv_strerror(rc));
    }
    if (r.buf)
        sodium_memzero(r.buf, IO_BUF);
    if (blk)
        sodium_memzero(blk, IO_BUF);
    free(r.buf);
    free(blk);
    free(path);
    free(chunks);
    free(tmp);
    free(parent);
    free(dir);
    return rc;
}

/* ---- PostgreSQL ------------------------------------------------------- */

#ifdef FV_HAVE_POSTGRESQL
/* A private directory (0700) at prefix + "XXXXXX": *out, malloc'd. */
static int stage_dir(const char *prefix, char **out)
{
    size_t n = strlen(prefix) + 8;
    char *d = malloc(n);
    int rc;
    *out = NULL;
    if (!d)
        return FV_ENOMEM;
    snprintf(d, n, "%sXXXXXX", prefix);
    if (!mkdtemp(d)) {
        rc = fv_errno_rc(errno);
        free(d);
        return rc;
    }
    *out = d;
    return FV_OK;
}

/* The store at `url` written as a server directory in a private directory
 * beside `output` (the disk the backup goes to), then that directory
 * written as the backup, then the directory wiped and removed. */
static int backup_pg(const char *url, const char *output, uint64_t *files,
                     uint64_t *bytes, char *msg, size_t msize)
{
    fv_sstore *pg = NULL;
    fv_sstore_migrated n;
    struct stat sb;
    char *prefix = NULL, *stage = NULL;
    int rc;

    if (lstat(output, &sb) == 0) {
        say(msg, msize, "%s already exists", output);
        return FV_EEXIST;
    }
    if (!(prefix = malloc(strlen(output) + 16)))
        return FV_ENOMEM;
    snprintf(prefix, strlen(output) + 16, "%s.stage-", output);
    if ((rc = stage_dir(prefix, &stage))) {
        say(msg, msize, "cannot create a directory beside %s: %s", output,
            fv_strerror(rc));
        goto cleanup;
    }
    if ((rc = fv_sstore_open(&pg, url, 0))) {
        say(msg, msize, "%s",
            rc == FV_ENOTFOUND ? "no server in that database (or its chunk "
                                 "directory is not there)"
            : rc == FV_EDENIED ? "the chunk directory belongs to another "
                                 "server"
            : rc == FV_EINVAL  ? "a malformed URL, or --chunks for a store "
                                 "that keeps its chunks in the database"
            : rc == FV_EVERSION ? "the database is of a newer FieldVault"
            : rc == FV_EDATABASE ? "the database cannot be reached"
                                 : fv_strerror(rc));
        goto cleanup;
    }
    if ((rc = fv_sstore_pg_export_sqlite(pg, stage, &n))) {
        say(msg, msize, "cannot read the store: %s",
            fv_sstore_errmsg(pg)[0] ? fv_sstore_errmsg(pg) : fv_strerror(rc));
        goto cleanup;
    }
    fv_sstore_close(pg);
    pg = NULL;
    rc = backup_dir(stage, output, files, bytes, msg, msize);
cleanup:
    fv_sstore_close(pg);
    fv_stage_close(stage);
    free(prefix);
    return rc;
}

/* The file restored as a server directory in a private directory under
 * $TMPDIR (checked whole there: nothing reaches the database before its
 * hash is), then migrated into the empty database at `url` in one
 * transaction, then the directory wiped and removed. */
static int restore_pg(const char *input, const char *url, uint64_t *files,
                      uint64_t *bytes, char *msg, size_t msize)
{
    const char *tmpdir = getenv("TMPDIR");
    char *prefix = NULL, *stage = NULL;
    uint64_t env = 0, dev = 0, chunks = 0;
    int rc;

    if (!tmpdir || tmpdir[0] != '/')
        tmpdir = "/tmp";
    /* Before unpacking what may be a large file: a database that cannot
     * be reached, or that holds a server, is said at once (the migration
     * checks again, in its transaction). */
    {
        fv_sstore *pg = NULL;
        rc = fv_sstore_open(&pg, url, 0);
        fv_sstore_close(pg);
        if (rc == FV_OK || rc == FV_EVERSION || rc == FV_EDENIED)
            rc = FV_EEXIST;
        else if (rc == FV_ENOTFOUND)
            rc = FV_OK;
        if (rc) {
            say(msg, msize, "%s",
                rc == FV_EEXIST ? "the database is not empty (restore makes "
                                  "a new server in an empty database)"
                : rc == FV_EDATABASE ? "the database cannot be reached"
                : rc == FV_EINVAL    ? "a malformed URL, or a database that "
                                       "holds a server"
                                     : fv_strerror(rc));
            return rc;
        }
    }
    if (!(prefix = fv_path_join(tmpdir, "fieldvault-restore-")))
        return FV_ENOMEM;
    if ((rc = stage_dir(prefix, &stage))) {
        say(msg, msize, "cannot create a directory in %s: %s", tmpdir,
            fv_strerror(rc));
        goto cleanup;
    }
    /* Into the (empty) private directory itself: the key files are then
     * where fv_stage_close overwrites them. */
    if ((rc = restore_dir(input, stage, files, bytes, msg, msize)))
        goto cleanup;
    rc = fv_server_migrate(stage, url, &env, &dev, &chunks);
    if (rc)
        say(msg, msize, "%s",
            rc == FV_EEXIST ? "the database is not empty (restore makes a "
                              "new server in an empty database)"
            : rc == FV_EDATABASE ? "the database cannot be reached, or it "
                                   "refused the restore (nothing restored)"
            : rc == FV_ECORRUPT ? "the backup's server does not read whole "
                                  "(nothing restored)"
            : rc == FV_EVERSION ? "the backup's server is of a newer "
                                  "FieldVault"
                                : fv_strerror(rc));
cleanup:
    if (rc && files)
        *files = 0;
    if (rc && bytes)
        *bytes = 0;
    fv_stage_close(stage);
    free(prefix);
    return rc;
}
#endif

/* For a PostgreSQL store: the outputs cleared, and FV_OK if this build
 * has PostgreSQL (else FV_EINVAL, said in msg). */
static int pg_start(const char *file, uint64_t *files, uint64_t *bytes,
                    char *msg, size_t msg_size)
{
    if (files)
        *files = 0;
    if (bytes)
        *bytes = 0;
    say(msg, msg_size, "%s", "");
    if (!file || !*file)
        return FV_EINVAL;
#ifdef FV_HAVE_POSTGRESQL
    return FV_OK;
#else
    say(msg, msg_size, "this build has no PostgreSQL support");
    return FV_EINVAL;
#endif
}

int fv_server_backup(const char *dir, const char *output, uint64_t *files,
                     uint64_t *bytes, char *msg, size_t msg_size)
{
    int rc;
    if (!dir || !fv_sstore_is_pg(dir))
        return backup_dir(dir, output, files, bytes, msg, msg_size);
    if ((rc = pg_start(output, files, bytes, msg, msg_size)))
        return rc;
#ifdef FV_HAVE_POSTGRESQL
    rc = backup_pg(dir, output, files, bytes, msg, msg_size);
#endif
    return rc;
}

int fv_server_restore(const char *input, const char *dir, uint64_t *files,
                      uint64_t *bytes, char *msg, size_t msg_size)
{
    int rc;
    if (!dir || !fv_sstore_is_pg(dir))
        return restore_dir(input, dir, files, bytes, msg, msg_size);
    if ((rc = pg_start(input, files, bytes, msg, msg_size)))
        return rc;
#ifdef FV_HAVE_POSTGRESQL
    rc = restore_pg(input, dir, files, bytes, msg, msg_size);
#endif
    return rc;
}
