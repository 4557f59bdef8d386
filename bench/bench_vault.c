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
 *
 * vault.unlock.duress (s; target ratio about 1): fv_vault_open with the
 * duress passphrase (which destroys the real vault and opens the decoy) of
 * a vault of 200 records made with the default KDF profile; the limit is a
 * normal open of the same vault just before. 3 rounds, each on a fresh
 * vault (a duress open is a one-way trip); the medians.
 */
#include <errno.h>
#include <sodium.h>
#include <sqlite3.h>
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

#include "common.h"
#include "fieldvault.h"

/* The records of this benchmark are larger than common.h's. */
#define VREC_NARRATIVE_BYTES 2048
#define VREC_FIELDS 4
#define VREC_TAGS 2
#define SEALED_KEY_BYTES (crypto_aead_xchacha20poly1305_ietf_KEYBYTES + crypto_box_SEALBYTES)

static struct {
    int quick;
    int rounds;
    size_t add_records;
    size_t list_records;
    const char *base; /* where the scratch directory goes */
} opt;

/* ---- test records --------------------------------------------------- */

struct vrec {
    char title[32];
    char narrative[VREC_NARRATIVE_BYTES];
    char values[VREC_FIELDS][40];
    char tagbuf[VREC_TAGS][16];
    fv_field fields[VREC_FIELDS];
    const char *tags[VREC_TAGS];
    fv_record_input in;
};

/* Fixed-width content, so that every record's envelope has the same size. */
static struct vrec *make_records(size_t n, unsigned seed)
{
    static const char *const keys[VREC_FIELDS] = {"location", "date",
                                              "interviewer", "language"};
    static const char *const langs[] = {"ar", "en", "fr", "es", "ru", "uk"};
    struct vrec *recs = xmalloc(n * sizeof *recs);
    for (size_t i = 0; i < n; i++) {
        struct vrec *r = &recs[i];
        unsigned k = (unsigned)(i % 100000);
        fv_record_input in = FV_RECORD_INPUT_INIT;
        snprintf(r->title, sizeof r->title, "Testimony %05u", k);
        make_narrative(r->narrative, VREC_NARRATIVE_BYTES, (uint64_t)seed << 32 | i);
        snprintf(r->values[0], sizeof r->values[0], "District %02u, village %03u",
                 k % 97, k % 997);
        snprintf(r->values[1], sizeof r->values[1], "2024-%02u-%02u",
                 1 + k % 12, 1 + k % 28);
        snprintf(r->values[2], sizeof r->values[2], "Interviewer %03u", k % 311);
        snprintf(r->values[3], sizeof r->values[3], "%s", langs[k % 6]);
        for (int f = 0; f < VREC_FIELDS; f++) {
            r->fields[f].key = keys[f];
            r->fields[f].value = r->values[f];
        }
        snprintf(r->tagbuf[0], sizeof r->tagbuf[0], "batch-%03u", k / 100 % 1000);
        snprintf(r->tagbuf[1], sizeof r->tagbuf[1], "region-%c", 'a' + k % 26);
        r->tags[0] = r->tagbuf[0];
        r->tags[1] = r->tagbuf[1];
        in.title = r->title;
        in.narrative = r->narrative;
        in.narrative_len = VREC_NARRATIVE_BYTES;
        in.fields = r->fields;
        in.nfields = VREC_FIELDS;
        in.tags = r->tags;
        in.ntags = VREC_TAGS;
        r->in = in;
    }
    return recs;
}

/* ---- reading envelopes (COSE_Sign1, docs/FORMAT.md) ------------------ */

/* What the limits need from an envelope's body beyond common.h's
 * env_view: the first recipient's sealed key, the nonce and the
 * ciphertext. */
struct payload_view {
    const unsigned char *sealed, *nonce, *ct;
    size_t ct_len;
};

/* Finds an envelope's parts (parse_env) and those of its body. 0 on
 * success. */
static int parse_payload(struct env_view *ev, struct payload_view *pv,
                         const unsigned char *p, size_t n)
{
    struct cur b;
    uint64_t arg, key;
    size_t len;
    memset(pv, 0, sizeof *pv);
    if (parse_env(ev, p, n))
        return 1;
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
                    pv->sealed = s;
            }
        } else if (key == 6) {
            if (cbor_bytes(&b, &pv->nonce, &len) ||
                len != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
                return 1;
        } else if (key == 7) {
            if (cbor_bytes(&b, &pv->ct, &pv->ct_len) ||
                pv->ct_len < crypto_aead_xchacha20poly1305_ietf_ABYTES)
                return 1;
        } else if (cbor_skip(&b, 0)) {
            return 1;
        }
    }
    return !pv->sealed || !pv->nonce || !pv->ct || b.pos != b.n;
}

/* ---- vault.add ------------------------------------------------------ */

/* The sizes of the work one add does, read from a vault's file. */
struct add_shape {
    size_t env_len;     /* envelope bytes stored */
    size_t payload_len; /* plaintext bytes encrypted */
    size_t tbs_len;     /* bytes signed */
};

/* Adds one record to a new vault and reads the sizes of its envelope. */
static struct add_shape measure_shape(const struct vrec *rec)
{
    char *dir = scratch_path("add-shape"), *path;
    fv_vault *v = create_vault(dir);
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    struct add_shape sh;
    struct env_view ev;
    struct payload_view pv;

    fv_check(fv_record_add(v, NULL, &rec->in), v, "fv_record_add");
    fv_vault_close(v);
    path = path_join(dir, "vault.db");
    db = open_ro(path);
    if (sqlite3_prepare_v2(db, "SELECT bytes FROM envelope", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        die("cannot read %s: %s", path, sqlite3_errmsg(db));
    sh.env_len = (size_t)sqlite3_column_bytes(st, 0);
    if (parse_payload(&ev, &pv, sqlite3_column_blob(st, 0), sh.env_len))
        die("cannot parse an envelope of the vault (has the format changed?)");
    sh.payload_len = pv.ct_len - crypto_aead_xchacha20poly1305_ietf_ABYTES;
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
    path = path_join(q->dir, "vault.db");
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
    struct vrec *recs = make_records(n, 1);
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
        fv_vault *v = create_vault(dir);
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
    if (!r->title || r->narrative_len != VREC_NARRATIVE_BYTES)
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
    char *path = path_join(dir, "vault.db");
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
        struct payload_view pv;
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
        if (parse_payload(&ev, &pv, it->env, len))
            die("cannot parse an envelope of the vault (has the format changed?)");
        memcpy(it->author, ev.author, sizeof it->author);
        memcpy(it->sig, ev.sig, sizeof it->sig);
        it->tbs_len = sig_structure(NULL, &ev);
        it->tbs = xmalloc(it->tbs_len);
        sig_structure(it->tbs, &ev);
        it->ct_len = pv.ct_len;
        plen = pv.ct_len - crypto_aead_xchacha20poly1305_ietf_ABYTES;
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

static void bench_list(void)
{
    size_t n = opt.list_records, max_plain;
    char *dir = scratch_path("list-vault");
    struct vrec *recs = make_records(n, 2);
    struct open_item *items;
    unsigned char box_pk[crypto_box_PUBLICKEYBYTES], box_sk[crypto_box_SECRETKEYBYTES];
    unsigned char *plain;
    fv_vault *v;
    struct list_run alone = {NULL, NULL, NULL, NULL, 0, 0, 0}, both;
    double t0, tl = 0, tb = -1;
    long rss0 = -1, peak = -1;

    note("vault.list: building a vault of %zu records", n);
    v = create_vault(dir);
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
        rss0 = status_kib(getpid(), "VmRSS");
    t0 = now();
    list_round(v, n, &alone);
    t0 = now() - t0;
    if (rss0 >= 0)
        peak = status_kib(getpid(), "VmHWM");
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

static void bench_unlock_duress(void)
{
    static const char duress[] = "a duress passphrase for the benchmark";
    char *dir = scratch_path("duress-vault");
    double tr[3], td[3];

    note("vault.unlock.duress: 3 vaults of 200 records, default KDF profile");
    for (int i = 0; i < 3; i++) {
        fv_vault *v = NULL;
        double t0;
        fv_check(fv_vault_create(&v, dir, PASSPHRASE, strlen(PASSPHRASE), NULL),
                 NULL, "fv_vault_create");
        for (int k = 0; k < 200; k++) {
            fv_record_input in = FV_RECORD_INPUT_INIT;
            char narrative[2048];
            memset(narrative, 'a' + k % 26, sizeof narrative);
            in.title = "a testimony";
            in.narrative = narrative;
            in.narrative_len = sizeof narrative;
            fv_check(fv_record_add(v, NULL, &in), v, "fv_record_add");
        }
        fv_check(fv_vault_set_duress(v, duress, strlen(duress), NULL), v,
                 "fv_vault_set_duress");
        fv_vault_close(v);
        t0 = now();
        fv_check(fv_vault_open(&v, dir, PASSPHRASE, strlen(PASSPHRASE)), v,
                 "fv_vault_open");
        tr[i] = now() - t0;
        fv_vault_close(v);
        t0 = now();
        fv_check(fv_vault_open(&v, dir, duress, strlen(duress)), v,
                 "fv_vault_open (duress)");
        td[i] = now() - t0;
        fv_vault_close(v);
        note("vault.unlock.duress: round %d: normal %.3f s, duress %.3f s", i,
             tr[i], td[i]);
        rm_tree(dir);
    }
    qsort(tr, 3, sizeof tr[0], cmp_double);
    qsort(td, 3, sizeof td[0], cmp_double);
    report("vault.unlock.duress", td[1], "s", tr[1], 3);
    free(dir);
}

/* ---- main ----------------------------------------------------------- */

static const char usage[] =
    "usage: bench_vault [--quick] [--dir DIR] [--rounds N] [--add-records N]\n"
    "                   [--list-records N] [NAME...]\n"
    "Runs the measurements whose names start with a NAME (vault.add,\n"
    "vault.list, vault.list.memory, vault.unlock, vault.unlock.duress; none:\n"
    "all) and prints one JSON line per measurement. Scratch files go in a new\n"
    "directory under DIR (default $TMPDIR or /tmp) and are removed afterwards.\n";

int main(int argc, char **argv)
{
    static const char *const known[] = {"vault.add", "vault.list",
                                        "vault.list.memory", "vault.unlock",
                                        "vault.unlock.duress"};
    size_t add_n = 0, list_n = 0, rounds = 3;

    const struct bench_flag flags[] = {{.name = "--rounds", .count = &rounds},
                                       {.name = "--add-records", .count = &add_n},
                                       {.name = "--list-records", .count = &list_n},
                                       {.name = NULL}};
    struct bench_cmdline cl = bench_cmdline(argc, argv, "bench_vault", usage,
                                            known, sizeof known / sizeof known[0],
                                            flags);
    opt.quick = cl.quick;
    opt.base = cl.dir;
    opt.rounds = (int)rounds;
    opt.add_records = add_n ? add_n : opt.quick ? 300 : 2000;
    opt.list_records = list_n ? list_n : opt.quick ? 2000 : 10000;

    if (sodium_init() < 0)
        die("libsodium failed to start");
    make_scratch(opt.base);
    note("FieldVault %s, SQLite %s, libsodium %s; scratch %s", fv_version(),
         sqlite3_libversion(), sodium_version_string(), scratch);

    if (wanted("vault.add"))
        bench_add();
    if (wanted("vault.list") || wanted("vault.list.memory"))
        bench_list();
    if (wanted("vault.unlock"))
        bench_unlock();
    if (wanted("vault.unlock.duress"))
        bench_unlock_duress();
    return 0;
}
