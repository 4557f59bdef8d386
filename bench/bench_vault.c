/*
 * bench_vault.c - FieldVault's benchmarks (run them with scripts/bench).
 *
 *   bench_vault [--quick] [--dir DIR] [--rounds N] [--add-records N]
 *               [--list-records N] [NAME...]
 *
 * A NAME selects the measurements whose name starts with it (vault.add,
 * vault.list, vault.list.memory, vault.unlock); no NAME runs them all. Each
 * measurement prints one JSON object on its own line on stdout:
 *
 *   {"bench": NAME, "value": X, "unit": U, "limit": Y, "ratio": X/Y}
 *
 * with "limit" and "ratio" where a limit applies. Everything else goes to
 * stderr. The machines are shared and noisy, so a figure is never judged
 * alone: the limit is the same work done with SQLite and libsodium alone,
 * measured in the same run, in the same scratch directory (so on the same
 * file system), interleaved with the vault record by record.
 *
 * vault.add (records/s; target ratio >= 0.7). N records (2,000; --quick 300),
 * each a 2 KiB narrative, a title, 4 fields and 2 tags, added with
 * fv_record_add into a fresh vault (FV_KDF_TEST: the KDF is not measured).
 * Each add is durable on return. The limit is the sum of two parts, each
 * timed alone for the same N records:
 *   - crypto: per record a random key and nonce, XChaCha20-Poly1305 of a
 *     payload as long as the vault's, crypto_box_seal of the key, an Ed25519
 *     signature over a message as long as the vault's COSE Sig_structure, and
 *     BLAKE2b-256 over an envelope-sized buffer (the id);
 *   - SQLite: a fresh database with journal_mode=WAL, synchronous=FULL, one
 *     table (id BLOB PRIMARY KEY, bytes BLOB), N inserts of a random 32-byte
 *     id and as many bytes as one of the vault's envelopes, each in its own
 *     BEGIN IMMEDIATE ... COMMIT.
 * The sizes are those of a real envelope, read from a vault file. Each of 3
 * rounds (--rounds) uses a fresh vault and a fresh database, and interleaves
 * the three parts record by record (vault, crypto, SQLite; the reverse in odd
 * rounds), timing each part alone, so that a burst of load on the shared
 * machine or its disk falls on the vault and the limit alike. The figures
 * come from the quietest round, the one whose limit took least time:
 * value = N / t_vault, limit = N / (t_crypto + t_sqlite). (A slow disk hides
 * the vault's fixed CPU costs behind fsync, so the quietest round is also the
 * strictest.)
 *
 * vault.list (records/s; target ratio >= 0.5). A vault of N records (10,000;
 * --quick 2,000) is built with fv_record_add, closed and opened again (the
 * unlock is not timed); one fv_vault_list, not counted, warms the caches.
 * The limit opens the same envelopes with libsodium alone, from memory: the
 * envelopes are read out of the vault file with SQLite before timing, and
 * per envelope it checks the real Ed25519 signature over the real COSE
 * Sig_structure with the author key the envelope names, hashes the envelope
 * (BLAKE2b-256) and compares it with its id, opens a sealed content key and
 * decrypts a ciphertext of the same length. The benchmark cannot read the
 * vault's secret box key through the public API, so those last two use a key
 * of its own, sealed and encrypted before timing. Each round is one
 * fv_vault_list whose callback does the limit's work for the envelope of the
 * record it is given, timed on its own and taken out of the list's time: so
 * the two interleave record by record, as in vault.add. From the quietest
 * round: value = N / t_list, limit = N / t_limit.
 *
 * vault.list.memory (KiB; no limit): how far the process's peak resident set
 * grew during the first fv_vault_list (Linux: /proc/self/clear_refs).
 *
 * vault.unlock (s; no limit): fv_vault_open of one vault made with the
 * default (desktop) KDF profile; the median of 3 opens.
 */
#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "fieldvault.h"

#define PASSPHRASE "correct horse battery staple"
#define NARRATIVE_BYTES 2048
#define NFIELDS 4
#define NTAGS 2
#define SEALED_KEY_BYTES (crypto_aead_xchacha20poly1305_ietf_KEYBYTES + crypto_box_SEALBYTES)

static struct {
    int quick;
    int rounds;
    size_t add_records;
    size_t list_records;
    const char *base; /* where the scratch directory goes */
    char **names;
    int nnames;
} opt;

static char *scratch; /* removed at exit */
static unsigned dir_serial;

/* ---- diagnostics and output ----------------------------------------- */

static void rm_tree(const char *path);

static void cleanup(void)
{
    if (scratch) {
        rm_tree(scratch);
        free(scratch);
        scratch = NULL;
    }
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("bench_vault: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1); /* cleanup() runs from atexit */
}

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
    va_list ap;
    fputs("bench_vault: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* One measurement, one line. `limit` <= 0: no limit applies. */
static void report(const char *name, double value, const char *unit,
                   double limit, int decimals)
{
    printf("{\"bench\": \"%s\", \"value\": %.*f, \"unit\": \"%s\"", name,
           decimals, value, unit);
    if (limit > 0)
        printf(", \"limit\": %.*f, \"ratio\": %.3f", decimals, limit,
               value / limit);
    printf("}\n");
    fflush(stdout);
}

static int wanted(const char *name)
{
    if (opt.nnames == 0)
        return 1;
    for (int i = 0; i < opt.nnames; i++)
        if (strncmp(name, opt.names[i], strlen(opt.names[i])) == 0)
            return 1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void fv_check(int rc, fv_vault *v, const char *what)
{
    if (rc != FV_OK)
        die("%s: %s (%s)", what, fv_strerror(rc),
            v ? fv_vault_errmsg(v) : "no handle");
}

/* ---- scratch files -------------------------------------------------- */

static void rm_tree(const char *path)
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

static void make_scratch(void)
{
    const char *base = opt.base ? opt.base : getenv("TMPDIR");
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
    atexit(cleanup);
}

/* A new path in the scratch directory; the caller frees it. */
static char *scratch_path(const char *what)
{
    size_t n = strlen(scratch) + strlen(what) + 24;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s-%u", scratch, what, ++dir_serial);
    return p;
}

static char *db_path(const char *vault_dir)
{
    size_t n = strlen(vault_dir) + 16;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/vault.db", vault_dir);
    return p;
}

/* ---- test records --------------------------------------------------- */

struct rec_in {
    char title[32];
    char narrative[NARRATIVE_BYTES];
    char values[NFIELDS][40];
    char tagbuf[NTAGS][16];
    fv_field fields[NFIELDS];
    const char *tags[NTAGS];
    fv_record_input in;
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: the content only has to look like text. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void make_narrative(char *out, size_t len, uint64_t seed)
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

/* Fixed-width content, so that every record's envelope has the same size. */
static struct rec_in *make_records(size_t n, unsigned seed)
{
    static const char *const keys[NFIELDS] = {"location", "date",
                                              "interviewer", "language"};
    static const char *const langs[] = {"ar", "en", "fr", "es", "ru", "uk"};
    struct rec_in *recs = xmalloc(n * sizeof *recs);
    for (size_t i = 0; i < n; i++) {
        struct rec_in *r = &recs[i];
        unsigned k = (unsigned)(i % 100000);
        fv_record_input in = FV_RECORD_INPUT_INIT;
        snprintf(r->title, sizeof r->title, "Testimony %05u", k);
        make_narrative(r->narrative, NARRATIVE_BYTES, (uint64_t)seed << 32 | i);
        snprintf(r->values[0], sizeof r->values[0], "District %02u, village %03u",
                 k % 97, k % 997);
        snprintf(r->values[1], sizeof r->values[1], "2024-%02u-%02u",
                 1 + k % 12, 1 + k % 28);
        snprintf(r->values[2], sizeof r->values[2], "Interviewer %03u", k % 311);
        snprintf(r->values[3], sizeof r->values[3], "%s", langs[k % 6]);
        for (int f = 0; f < NFIELDS; f++) {
            r->fields[f].key = keys[f];
            r->fields[f].value = r->values[f];
        }
        snprintf(r->tagbuf[0], sizeof r->tagbuf[0], "batch-%03u", k / 100 % 1000);
        snprintf(r->tagbuf[1], sizeof r->tagbuf[1], "region-%c", 'a' + k % 26);
        r->tags[0] = r->tagbuf[0];
        r->tags[1] = r->tagbuf[1];
        in.title = r->title;
        in.narrative = r->narrative;
        in.narrative_len = NARRATIVE_BYTES;
        in.fields = r->fields;
        in.nfields = NFIELDS;
        in.tags = r->tags;
        in.ntags = NTAGS;
        r->in = in;
    }
    return recs;
}

static fv_vault *create_vault(const char *dir, int profile)
{
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    co.kdf_profile = profile;
    fv_check(fv_vault_create(&v, dir, PASSPHRASE, strlen(PASSPHRASE), &co),
             NULL, "fv_vault_create");
    return v;
}

/* ---- reading envelopes (COSE_Sign1, docs/FORMAT.md) ------------------ */

/* A minimal CBOR reader: enough to find an envelope's parts. */
struct cur {
    const unsigned char *p;
    size_t n, pos;
    int err;
};

static int cbor_head(struct cur *c, int *major, uint64_t *arg)
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

static int cbor_expect(struct cur *c, int major, uint64_t *arg)
{
    int m;
    if (cbor_head(c, &m, arg) || m != major)
        return c->err = 1;
    return 0;
}

static int cbor_bytes(struct cur *c, const unsigned char **p, size_t *n)
{
    uint64_t len;
    if (cbor_expect(c, 2, &len) || len > c->n - c->pos)
        return c->err = 1;
    *p = c->p + c->pos;
    *n = (size_t)len;
    c->pos += (size_t)len;
    return 0;
}

static int cbor_skip(struct cur *c, int depth)
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

struct env_view {
    const unsigned char *prot, *body, *sig, *author, *sealed, *nonce, *ct;
    size_t prot_len, body_len, ct_len;
};

/* Finds the parts of an envelope: its protected header (with the author's
 * key), body, signature, and in the body the first recipient's sealed key,
 * the nonce and the ciphertext. 0 on success. */
static int parse_env(struct env_view *ev, const unsigned char *p, size_t n)
{
    struct cur c = {p, n, 0, 0}, h, b;
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
            if (cbor_bytes(&h, &ev->author, &len) || len != crypto_sign_PUBLICKEYBYTES)
                return 1;
        } else if (cbor_skip(&h, 0)) {
            return 1;
        }
    }

    b = (struct cur){ev->body, ev->body_len, 0, 0};
    if (cbor_expect(&b, 5, &arg))
        return 1;
    for (uint64_t i = 0, m = arg; i < m; i++) {
        const unsigned char *pk;
        if (cbor_expect(&b, 0, &key))
            return 1;
        if (key == 5) { /* recipients: [[pk, sealed key], ...] */
            uint64_t nr, two;
            if (cbor_expect(&b, 4, &nr) || nr < 1)
                return 1;
            for (uint64_t r = 0; r < nr; r++) {
                const unsigned char *s;
                if (cbor_expect(&b, 4, &two) || two != 2 ||
                    cbor_bytes(&b, &pk, &len) || cbor_bytes(&b, &s, &len) ||
                    len != SEALED_KEY_BYTES)
                    return 1;
                if (r == 0)
                    ev->sealed = s;
            }
        } else if (key == 6) {
            if (cbor_bytes(&b, &ev->nonce, &len) ||
                len != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
                return 1;
        } else if (key == 7) {
            if (cbor_bytes(&b, &ev->ct, &ev->ct_len) ||
                ev->ct_len < crypto_aead_xchacha20poly1305_ietf_ABYTES)
                return 1;
        } else if (cbor_skip(&b, 0)) {
            return 1;
        }
    }
    return !ev->author || !ev->sealed || !ev->nonce || !ev->ct || b.pos != b.n;
}

static size_t put_head(unsigned char *out, int major, uint64_t arg)
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
static size_t sig_structure(unsigned char *out, const struct env_view *ev)
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

static sqlite3 *open_ro(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die("cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
    return db;
}

/* ---- vault.add ------------------------------------------------------ */

/* The sizes of the work one add does, read from a vault's file. */
struct add_shape {
    size_t env_len;     /* envelope bytes stored */
    size_t payload_len; /* plaintext bytes encrypted */
    size_t tbs_len;     /* bytes signed */
};

/* Adds one record to a new vault and reads the sizes of its envelope. */
static struct add_shape measure_shape(const struct rec_in *rec)
{
    char *dir = scratch_path("add-shape"), *path;
    fv_vault *v = create_vault(dir, FV_KDF_TEST);
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    struct add_shape sh;
    struct env_view ev;

    fv_check(fv_record_add(v, NULL, &rec->in), v, "fv_record_add");
    fv_vault_close(v);
    path = db_path(dir);
    db = open_ro(path);
    if (sqlite3_prepare_v2(db, "SELECT bytes FROM envelope", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    sh.env_len = (size_t)sqlite3_column_bytes(st, 0);
    if (parse_env(&ev, sqlite3_column_blob(st, 0), sh.env_len))
        die("cannot parse an envelope of the vault (has the format changed?)");
    sh.payload_len = ev.ct_len - crypto_aead_xchacha20poly1305_ietf_ABYTES;
    sh.tbs_len = sig_structure(NULL, &ev);
    sqlite3_finalize(st);
    sqlite3_close(db);
    rm_tree(dir);
    free(path);
    free(dir);
    return sh;
}

/* The limit's crypto for one record, on buffers set up in advance. */
struct add_crypto {
    const struct add_shape *sh;
    unsigned char sign_pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sign_sk[crypto_sign_SECRETKEYBYTES];
    unsigned char box_pk[crypto_box_PUBLICKEYBYTES];
    unsigned char box_sk[crypto_box_SECRETKEYBYTES];
    unsigned char *plain, *ct, *tbs, *env;
};

static void add_crypto_init(struct add_crypto *c, const struct add_shape *sh)
{
    c->sh = sh;
    crypto_sign_keypair(c->sign_pk, c->sign_sk);
    crypto_box_keypair(c->box_pk, c->box_sk);
    c->plain = xmalloc(sh->payload_len);
    c->ct = xmalloc(sh->payload_len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    c->tbs = xmalloc(sh->tbs_len);
    c->env = xmalloc(sh->env_len);
    randombytes_buf(c->plain, sh->payload_len);
    randombytes_buf(c->tbs, sh->tbs_len);
    randombytes_buf(c->env, sh->env_len);
}

static void add_crypto_free(struct add_crypto *c)
{
    free(c->plain);
    free(c->ct);
    free(c->tbs);
    free(c->env);
}

static void add_crypto_one(struct add_crypto *c)
{
    const struct add_shape *sh = c->sh;
    unsigned char key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    unsigned char sealed[SEALED_KEY_BYTES];
    unsigned char sig[crypto_sign_BYTES], id[32];
    size_t ctlen = sh->payload_len + crypto_aead_xchacha20poly1305_ietf_ABYTES;

    randombytes_buf(key, sizeof key);
    randombytes_buf(nonce, sizeof nonce);
    crypto_aead_xchacha20poly1305_ietf_encrypt(c->ct, NULL, c->plain,
                                               sh->payload_len, NULL, 0, NULL,
                                               nonce, key);
    if (crypto_box_seal(sealed, key, sizeof key, c->box_pk) != 0)
        die("crypto_box_seal failed");
    /* The signed message and the hashed envelope hold the ciphertext. */
    memcpy(c->tbs + sh->tbs_len - ctlen, c->ct, ctlen);
    crypto_sign_detached(sig, NULL, c->tbs, sh->tbs_len, c->sign_sk);
    memcpy(c->env + sh->env_len - sizeof sig, sig, sizeof sig);
    crypto_generichash(id, sizeof id, c->env, sh->env_len, NULL, 0);
    c->plain[id[1] % sh->payload_len] ^= id[0]; /* no two records alike */
}

/* The limit's SQLite: a table of (id, bytes), one transaction per row. */
struct add_sql {
    char *dir;
    sqlite3 *db;
    sqlite3_stmt *begin, *ins, *commit;
    const unsigned char *bytes;
    size_t len;
};

static void exec_or_die(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die("sqlite: %s: %s", sql, sqlite3_errmsg(db));
}

static void add_sql_open(struct add_sql *q, const unsigned char *bytes,
                         size_t len)
{
    char *path;
    memset(q, 0, sizeof *q);
    q->dir = scratch_path("add-sqlite");
    q->bytes = bytes;
    q->len = len;
    if (mkdir(q->dir, 0700) != 0)
        die("cannot make %s: %s", q->dir, strerror(errno));
    path = db_path(q->dir);
    /* The open flags and pragmas the vault's store uses for durability. */
    if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die("cannot create %s", path);
    free(path);
    exec_or_die(q->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
    exec_or_die(q->db, "CREATE TABLE t(id BLOB PRIMARY KEY, bytes BLOB)");
    if (sqlite3_prepare_v2(q->db, "BEGIN IMMEDIATE", -1, &q->begin, NULL) ||
        sqlite3_prepare_v2(q->db, "INSERT INTO t(id, bytes) VALUES (?1, ?2)",
                           -1, &q->ins, NULL) ||
        sqlite3_prepare_v2(q->db, "COMMIT", -1, &q->commit, NULL))
        die("sqlite: %s", sqlite3_errmsg(q->db));
}

static void add_sql_one(struct add_sql *q, const unsigned char id[32])
{
    if (sqlite3_step(q->begin) != SQLITE_DONE)
        die("sqlite: begin: %s", sqlite3_errmsg(q->db));
    sqlite3_reset(q->begin);
    sqlite3_bind_blob(q->ins, 1, id, 32, SQLITE_STATIC);
    sqlite3_bind_blob64(q->ins, 2, q->bytes, q->len, SQLITE_STATIC);
    if (sqlite3_step(q->ins) != SQLITE_DONE)
        die("sqlite: insert: %s", sqlite3_errmsg(q->db));
    sqlite3_reset(q->ins);
    if (sqlite3_step(q->commit) != SQLITE_DONE)
        die("sqlite: commit: %s", sqlite3_errmsg(q->db));
    sqlite3_reset(q->commit);
}

static void add_sql_close(struct add_sql *q)
{
    sqlite3_finalize(q->begin);
    sqlite3_finalize(q->ins);
    sqlite3_finalize(q->commit);
    sqlite3_close(q->db);
    rm_tree(q->dir);
    free(q->dir);
}

/* The vault's adds and the limit's work interleave record by record, so that
 * a burst of load on the shared machine (or its disk) falls on both alike. */
static void bench_add(void)
{
    size_t n = opt.add_records;
    struct rec_in *recs = make_records(n, 1);
    unsigned char(*ids)[32] = xmalloc(n * sizeof *ids);
    unsigned char *bytes;
    struct add_shape shape = measure_shape(&recs[0]);
    struct add_crypto crypto;
    double tv = 0, tc = 0, ts = -1;

    note("vault.add: %zu records per round, %d rounds; envelope %zu bytes, "
         "payload %zu, signed %zu", n, opt.rounds, shape.env_len,
         shape.payload_len, shape.tbs_len);
    randombytes_buf(ids, n * sizeof *ids);
    bytes = xmalloc(shape.env_len);
    randombytes_buf(bytes, shape.env_len);
    add_crypto_init(&crypto, &shape);

    for (int r = 0; r < opt.rounds; r++) {
        char *dir = scratch_path("add-vault");
        fv_vault *v = create_vault(dir, FV_KDF_TEST);
        struct add_sql sql;
        double v_sum = 0, c_sum = 0, s_sum = 0, t0, t1, t2, t3;

        add_sql_open(&sql, bytes, shape.env_len);
        for (size_t i = 0; i < n; i++) {
            if (r % 2 == 0) {
                t0 = now();
                fv_check(fv_record_add(v, NULL, &recs[i].in), v, "fv_record_add");
                t1 = now();
                add_crypto_one(&crypto);
                t2 = now();
                add_sql_one(&sql, ids[i]);
                t3 = now();
                v_sum += t1 - t0;
                c_sum += t2 - t1;
                s_sum += t3 - t2;
            } else {
                t0 = now();
                add_sql_one(&sql, ids[i]);
                t1 = now();
                add_crypto_one(&crypto);
                t2 = now();
                fv_check(fv_record_add(v, NULL, &recs[i].in), v, "fv_record_add");
                t3 = now();
                s_sum += t1 - t0;
                c_sum += t2 - t1;
                v_sum += t3 - t2;
            }
        }
        fv_vault_close(v);
        add_sql_close(&sql);
        rm_tree(dir);
        free(dir);
        note("vault.add round %d: vault %.3f ms/record; limit %.3f "
             "(crypto %.3f + sqlite %.3f)", r + 1, 1e3 * v_sum / (double)n,
             1e3 * (c_sum + s_sum) / (double)n, 1e3 * c_sum / (double)n,
             1e3 * s_sum / (double)n);
        if (ts < 0 || c_sum + s_sum < tc + ts) {
            tv = v_sum;
            tc = c_sum;
            ts = s_sum;
        }
    }
    report("vault.add", (double)n / tv, "records/s", (double)n / (tc + ts), 1);
    add_crypto_free(&crypto);
    free(recs);
    free(ids);
    free(bytes);
}

/* ---- vault.list ----------------------------------------------------- */

/* One envelope as the limit opens it. */
struct open_item {
    unsigned char id[32];
    unsigned char author[crypto_sign_PUBLICKEYBYTES];
    unsigned char sig[crypto_sign_BYTES];
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    unsigned char sealed[SEALED_KEY_BYTES]; /* to the benchmark's own key */
    unsigned char *env, *tbs, *ct;
    size_t env_len, tbs_len, ct_len;
};

/* The limit's work for one envelope. */
static void open_one(const struct open_item *it, const unsigned char *box_pk,
                     const unsigned char *box_sk, unsigned char *plain)
{
    unsigned char key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES], id[32];
    if (crypto_sign_verify_detached(it->sig, it->tbs, it->tbs_len, it->author) != 0)
        die("limit: the signature of an envelope does not verify");
    crypto_generichash(id, sizeof id, it->env, it->env_len, NULL, 0);
    if (sodium_memcmp(id, it->id, sizeof id) != 0)
        die("limit: an envelope does not match its id");
    if (crypto_box_seal_open(key, it->sealed, sizeof it->sealed, box_pk, box_sk) != 0)
        die("limit: a content key does not open");
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, it->ct,
                                                   it->ct_len, NULL, 0,
                                                   it->nonce, key) != 0)
        die("limit: a payload does not decrypt");
    sodium_memzero(key, sizeof key);
}

/* One fv_vault_list. With items, the callback also does the limit's work for
 * the same envelope, timed on its own and taken out of the vault's time. */
struct list_run {
    const struct open_item *items; /* NULL: the vault alone */
    const unsigned char *box_pk, *box_sk;
    unsigned char *plain;
    size_t n;
    size_t records;
    double t_limit;
};

static int list_cb(const fv_record *r, void *payload)
{
    struct list_run *lr = payload;
    double t0;
    if (!r->title || r->narrative_len != NARRATIVE_BYTES)
        die("fv_vault_list gave a record that was not added");
    if (lr->items) {
        if (lr->records >= lr->n ||
            memcmp(r->revision, lr->items[lr->records].id, FV_ID_BYTES) != 0)
            die("fv_vault_list gave the records in an unexpected order");
        t0 = now();
        open_one(&lr->items[lr->records], lr->box_pk, lr->box_sk, lr->plain);
        lr->t_limit += now() - t0;
    }
    lr->records++;
    return 0;
}

/* Returns the vault's time; lr->t_limit holds the limit's. */
static double list_round(fv_vault *v, size_t n, struct list_run *lr)
{
    double t0, t;
    lr->records = 0;
    lr->t_limit = 0;
    t0 = now();
    fv_check(fv_vault_list(v, list_cb, lr), v, "fv_vault_list");
    t = now() - t0;
    if (lr->records != n)
        die("fv_vault_list gave %zu records, expected %zu", lr->records, n);
    return t - lr->t_limit;
}

/* Reads every head envelope of the vault in `dir` and prepares what the
 * limit opens: the real signed bytes, the real signature, and a sealed key
 * and ciphertext of the real sizes under the benchmark's own box key. */
static struct open_item *load_items(const char *dir, size_t n,
                                    const unsigned char *box_pk,
                                    size_t *max_plain)
{
    char *path = db_path(dir);
    sqlite3 *db = open_ro(path);
    sqlite3_stmt *st = NULL;
    struct open_item *items = xmalloc(n * sizeof *items);
    unsigned char key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    unsigned char *plain = NULL;
    size_t count = 0, plain_cap = 0;
    int rc;

    *max_plain = 0;
    /* In the order fv_vault_list gives them (every record has one revision).
     * "+seq" makes SQLite scan by rowid rather than sort the envelopes. */
    if (sqlite3_prepare_v2(db, "SELECT id, bytes FROM envelope WHERE +seq IN "
                           "(SELECT eseq FROM head) ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct open_item *it;
        struct env_view ev;
        size_t len = (size_t)sqlite3_column_bytes(st, 1), plen;
        if (count == n)
            die("the vault holds more than %zu records", n);
        it = &items[count++];
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
        it->ct_len = ev.ct_len;
        plen = ev.ct_len - crypto_aead_xchacha20poly1305_ietf_ABYTES;
        if (plen > plain_cap) {
            free(plain);
            plain = xmalloc(plen);
            randombytes_buf(plain, plen);
            plain_cap = plen;
        }
        it->ct = xmalloc(it->ct_len);
        randombytes_buf(key, sizeof key);
        randombytes_buf(it->nonce, sizeof it->nonce);
        crypto_aead_xchacha20poly1305_ietf_encrypt(it->ct, NULL, plain, plen, NULL,
                                                   0, NULL, it->nonce, key);
        if (crypto_box_seal(it->sealed, key, sizeof key, box_pk) != 0)
            die("crypto_box_seal failed");
        if (plen > *max_plain)
            *max_plain = plen;
    }
    if (rc != SQLITE_DONE)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    if (count != n)
        die("the vault holds %zu records, expected %zu", count, n);
    sqlite3_finalize(st);
    sqlite3_close(db);
    sodium_memzero(key, sizeof key);
    free(plain);
    free(path);
    return items;
}

/* A value in KiB from /proc/self/status ("VmRSS", "VmHWM"), or -1. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets the peak resident set to the current one (Linux 4.0+). */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    fputs("5", f);
    return fclose(f) == 0 ? 0 : -1;
}

static void bench_list(void)
{
    size_t n = opt.list_records, max_plain;
    char *dir = scratch_path("list-vault");
    struct rec_in *recs = make_records(n, 2);
    struct open_item *items;
    unsigned char box_pk[crypto_box_PUBLICKEYBYTES], box_sk[crypto_box_SECRETKEYBYTES];
    unsigned char *plain;
    fv_vault *v;
    struct list_run alone = {NULL, NULL, NULL, NULL, 0, 0, 0}, both;
    double t0, tl = 0, tb = -1;
    long rss0 = -1, peak = -1;

    note("vault.list: building a vault of %zu records", n);
    v = create_vault(dir, FV_KDF_TEST);
    t0 = now();
    for (size_t i = 0; i < n; i++)
        fv_check(fv_record_add(v, NULL, &recs[i].in), v, "fv_record_add");
    note("vault.list: built in %.1f s", now() - t0);
    fv_vault_close(v);
    free(recs);

    crypto_box_keypair(box_pk, box_sk);
    items = load_items(dir, n, box_pk, &max_plain);
    plain = xmalloc(max_plain);
    both = (struct list_run){items, box_pk, box_sk, plain, n, 0, 0};

    t0 = now();
    fv_check(fv_vault_open(&v, dir, PASSPHRASE, strlen(PASSPHRASE)), v,
             "fv_vault_open");
    note("vault.list: fv_vault_open (test KDF) of %zu records took %.3f s "
         "(not counted)", n, now() - t0);

    /* The first list warms the caches; it also gives the memory figure. */
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    if (reset_peak_rss() == 0)
        rss0 = status_kib("VmRSS");
    t0 = now();
    list_round(v, n, &alone);
    t0 = now() - t0;
    if (rss0 >= 0)
        peak = status_kib("VmHWM");
    note("vault.list: first list (not counted) %.1f us/record",
         1e6 * t0 / (double)n);

    for (int r = 0; r < opt.rounds; r++) {
        double t = list_round(v, n, &both);
        note("vault.list round %d: vault %.1f us/record, limit %.1f us/record",
             r + 1, 1e6 * t / (double)n, 1e6 * both.t_limit / (double)n);
        if (tb < 0 || both.t_limit < tb) {
            tl = t;
            tb = both.t_limit;
        }
    }
    fv_vault_close(v);
    if (wanted("vault.list"))
        report("vault.list", (double)n / tl, "records/s", (double)n / tb, 1);
    if (wanted("vault.list.memory") && peak >= 0 && rss0 >= 0)
        report("vault.list.memory", (double)(peak - rss0), "KiB", 0, 0);

    for (size_t i = 0; i < n; i++) {
        free(items[i].env);
        free(items[i].tbs);
        free(items[i].ct);
    }
    free(items);
    free(plain);
    sodium_memzero(box_sk, sizeof box_sk);
    rm_tree(dir);
    free(dir);
}

/* ---- vault.unlock --------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_unlock(void)
{
    char *dir = scratch_path("unlock-vault");
    fv_vault *v = NULL;
    double t[3];

    note("vault.unlock: making a vault with the default KDF profile");
    fv_check(fv_vault_create(&v, dir, PASSPHRASE, strlen(PASSPHRASE), NULL),
             NULL, "fv_vault_create");
    fv_vault_close(v);
    for (int i = 0; i < 3; i++) {
        double t0 = now();
        fv_check(fv_vault_open(&v, dir, PASSPHRASE, strlen(PASSPHRASE)), v,
                 "fv_vault_open");
        t[i] = now() - t0;
        fv_vault_close(v);
    }
    qsort(t, 3, sizeof t[0], cmp_double);
    note("vault.unlock: %.3f, %.3f, %.3f s", t[0], t[1], t[2]);
    report("vault.unlock", t[1], "s", 0, 3);
    rm_tree(dir);
    free(dir);
}

/* ---- main ----------------------------------------------------------- */

static const char usage[] =
    "usage: bench_vault [--quick] [--dir DIR] [--rounds N] [--add-records N]\n"
    "                   [--list-records N] [NAME...]\n"
    "Runs the measurements whose names start with a NAME (vault.add,\n"
    "vault.list, vault.list.memory, vault.unlock; none: all) and prints one\n"
    "JSON line per measurement. Scratch files go in a new directory under DIR\n"
    "(default $TMPDIR or /tmp) and are removed afterwards.\n";

static size_t parse_count(const char *s, const char *what)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s ? s : "", &end, 10);
    if (!s || errno || *end || v == 0 || v > 10000000)
        die("%s needs a count from 1 to 10000000", what);
    return (size_t)v;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"vault.add", "vault.list",
                                        "vault.list.memory", "vault.unlock"};
    size_t add_n = 0, list_n = 0;

    opt.rounds = 3;
    opt.names = xmalloc((size_t)argc * sizeof *opt.names);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            opt.quick = 1;
        } else if (!strcmp(a, "--dir") && i + 1 < argc) {
            opt.base = argv[++i];
        } else if (!strcmp(a, "--rounds") && i + 1 < argc) {
            opt.rounds = (int)parse_count(argv[++i], "--rounds");
        } else if (!strcmp(a, "--add-records") && i + 1 < argc) {
            add_n = parse_count(argv[++i], "--add-records");
        } else if (!strcmp(a, "--list-records") && i + 1 < argc) {
            list_n = parse_count(argv[++i], "--list-records");
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "bench_vault: unknown option %s\n%s", a, usage);
            return 2;
        } else {
            int hit = 0;
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                hit |= strncmp(known[k], a, strlen(a)) == 0;
            if (!hit) {
                fprintf(stderr, "bench_vault: no measurement is named %s\n%s",
                        a, usage);
                return 2;
            }
            opt.names[opt.nnames++] = argv[i];
        }
    }
    opt.add_records = add_n ? add_n : opt.quick ? 300 : 2000;
    opt.list_records = list_n ? list_n : opt.quick ? 2000 : 10000;

    if (sodium_init() < 0)
        die("libsodium failed to start");
    make_scratch();
    note("FieldVault %s, SQLite %s, libsodium %s; scratch %s", fv_version(),
         sqlite3_libversion(), sodium_version_string(), scratch);

    if (wanted("vault.add"))
        bench_add();
    if (wanted("vault.list") || wanted("vault.list.memory"))
        bench_list();
    if (wanted("vault.unlock"))
        bench_unlock();
    free(opt.names);
    return 0;
}
