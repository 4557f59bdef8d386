/* store_server.c - the sync server's SQLite database (see store_server.h). */
#define _GNU_SOURCE /* fallocate: a retraction punches holes in packs */
#include "store_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fieldvault.h"
#include "fileio.h"
#include "store_db.h"

enum stmt_id {
    ST_DEV_GET,
    ST_DEV_BY_BOX,
    ST_DEV_ADD,
    ST_DEV_REVOKE,
    ST_DEV_EACH,
    ST_INV_ADD,
    ST_INV_GET,
    ST_INV_USE,
    ST_LOG_FIND,
    ST_LOG_HEAD,
    ST_LOG_CHAIN,
    ST_LOG_ADD,
    ST_FEED_HEAD,
    ST_FEED_CHAIN,
    ST_FEED_ADD,
    ST_READ_LOG,
    ST_READ_FEED,
    ST_REF_ADD,
    ST_REF_ANY,
    ST_REF_AUTHOR,
    ST_CHUNK_ADD,
    ST_CHUNK_FIND,
    ST_CHUNK_FIND_READER,
    ST_CHUNK_LIVE,
    ST_CHUNK_DEL,
    ST_REC_ADD,
    ST_REC_ORIGIN,
    ST_RETRACTED,
    ST_RETRACT_ADD,
    ST_ERASE_LOG,
    ST_FEED_HAS,
    ST_COUNT
};

#define DEV_COLS "pk, box, name, role, revoked, enrolled"

/* A chunkref row r of hash h is live if its entry's record is not
 * retracted (or unknown: entries from before records were filed). */
#define LIVE_REF_OF(h)                                                      \
    "LEFT JOIN logrec lr2 ON lr2.seq = r.seq WHERE r.hash = " h " AND "     \
    "(lr2.record IS NULL OR NOT EXISTS "                                    \
    "(SELECT 1 FROM retracted t WHERE t.record = lr2.record))"
#define LIVE_REF LIVE_REF_OF("?1")

static const char *const stmt_sql[ST_COUNT] = {
    [ST_DEV_GET] = "SELECT " DEV_COLS " FROM device WHERE pk = ?1",
    [ST_DEV_BY_BOX] = "SELECT " DEV_COLS " FROM device WHERE box = ?1",
    [ST_DEV_ADD] = "INSERT INTO device(" DEV_COLS ") "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* revoked: 0, or when (Unix seconds; 1 from a server that did not
     * record the time). */
    [ST_DEV_REVOKE] = "UPDATE device SET revoked = CASE WHEN revoked = 0 "
                      "THEN max(?2, 2) ELSE revoked END WHERE pk = ?1",
    [ST_DEV_EACH] = "SELECT " DEV_COLS " FROM device "
                    "ORDER BY enrolled, pk LIMIT ?1",
    [ST_INV_ADD] = "INSERT INTO invite(token_hash, name, role, expires, used) "
                   "VALUES (?1, ?2, ?3, ?4, 0)",
    [ST_INV_GET] = "SELECT name, role, expires, used, device FROM invite "
                   "WHERE token_hash = ?1",
    [ST_INV_USE] = "UPDATE invite SET used = 1, device = ?2 "
                   "WHERE token_hash = ?1 AND used = 0",
    [ST_LOG_FIND] = "SELECT seq, author FROM log WHERE id = ?1",
    [ST_LOG_HEAD] = "SELECT seq, chain FROM log ORDER BY seq DESC LIMIT 1",
    [ST_LOG_CHAIN] = "SELECT chain FROM log WHERE seq = ?1",
    [ST_LOG_ADD] = "INSERT INTO log(seq, id, author, bytes, chain) "
                   "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_FEED_HEAD] = "SELECT fseq, chain FROM feed WHERE device = ?1 "
                     "ORDER BY fseq DESC LIMIT 1",
    [ST_FEED_CHAIN] = "SELECT chain FROM feed WHERE device = ?1 AND fseq = ?2",
    [ST_FEED_ADD] = "INSERT INTO feed(device, fseq, seq, chain) "
                    "VALUES (?1, ?2, ?3, ?4)",
    [ST_READ_LOG] = "SELECT seq, bytes, chain, id FROM log "
                    "WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    [ST_READ_FEED] = "SELECT f.fseq, l.bytes, f.chain, l.id FROM feed f "
                     "JOIN log l ON l.seq = f.seq WHERE f.device = ?4 "
                     "AND f.fseq > ?1 AND f.fseq <= ?2 "
                     "ORDER BY f.fseq LIMIT ?3",
    [ST_REF_ADD] = "INSERT OR IGNORE INTO chunkref(hash, seq) VALUES (?1, ?2)",
    [ST_REF_ANY] = "SELECT 1 FROM chunkref WHERE hash = ?1 LIMIT 1",
    [ST_REF_AUTHOR] = "SELECT 1 FROM chunkref r JOIN log l ON l.seq = r.seq "
                      "WHERE r.hash = ?1 AND l.author = ?2 LIMIT 1",
    [ST_CHUNK_ADD] = "INSERT OR IGNORE INTO chunk(hash, pack, off, len) "
                     "VALUES (?1, ?2, ?3, ?4)",
    [ST_CHUNK_FIND] = "SELECT pack, off, len FROM chunk WHERE hash = ?1",
    /* Listed by an entry the reader wrote, or by one in its feed: from the
     * few entries that list the hash to the feed (CROSS JOIN fixes that
     * order; feed_seq makes it a lookup), not through the whole feed. */
    [ST_CHUNK_FIND_READER] =
        "SELECT pack, off, len FROM chunk WHERE hash = ?1 AND ("
        "EXISTS (SELECT 1 FROM chunkref r JOIN log l ON l.seq = r.seq "
        "WHERE r.hash = ?1 AND l.author = ?2) OR "
        "EXISTS (SELECT 1 FROM chunkref r CROSS JOIN feed f "
        "ON f.device = ?2 AND f.seq = r.seq WHERE r.hash = ?1))",
    [ST_CHUNK_LIVE] = "SELECT 1 FROM chunkref r " LIVE_REF " LIMIT 1",
    [ST_CHUNK_DEL] = "DELETE FROM chunk WHERE hash = ?1",
    [ST_REC_ADD] = "INSERT OR IGNORE INTO logrec(seq, record) VALUES (?1, ?2)",
    /* The genesis: the entry whose id is the record's and that is filed
     * under itself. */
    [ST_REC_ORIGIN] = "SELECT l.author FROM log l JOIN logrec r "
                      "ON r.seq = l.seq AND r.record = l.id WHERE l.id = ?1",
    [ST_RETRACTED] = "SELECT seq, id FROM retracted WHERE record = ?1",
    [ST_RETRACT_ADD] = "INSERT INTO retracted(record, seq, id) "
                       "VALUES (?1, ?2, ?3)",
    [ST_ERASE_LOG] = "UPDATE log SET bytes = X'' WHERE seq IN "
                     "(SELECT seq FROM logrec WHERE record = ?1) "
                     "AND seq != ?2 AND length(bytes) > 0",
    [ST_FEED_HAS] = "SELECT 1 FROM feed WHERE device = ?1 AND seq = ?2",
};

/* The chunks a retraction of record ?1 destroys: held, listed by an entry
 * of the record, and by no live entry (LIVE_REF). */
static const char erase_chunks_sql[] =
    "SELECT c.hash, c.pack, c.off, c.len FROM chunk c WHERE c.hash IN "
    "(SELECT r.hash FROM logrec lr JOIN chunkref r ON r.seq = lr.seq "
    "WHERE lr.record = ?1) AND NOT EXISTS "
    "(SELECT 1 FROM chunkref r " LIVE_REF_OF("c.hash") ")";

/* Field devices whose feed holds an entry of record ?1. */
static const char readers_sql[] =
    "SELECT d.pk FROM device d WHERE d.role = 1 AND d.revoked = 0 AND EXISTS "
    "(SELECT 1 FROM logrec r CROSS JOIN feed f ON f.device = d.pk "
    "AND f.seq = r.seq WHERE r.record = ?1)";

static const char schema_sql[] =
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE device(pk BLOB PRIMARY KEY, box BLOB NOT NULL UNIQUE,"
    " name TEXT NOT NULL, role INTEGER NOT NULL, revoked INTEGER NOT NULL,"
    " enrolled INTEGER NOT NULL) WITHOUT ROWID;"
    /* device: who redeemed it, so that a device whose WELCOME was lost can
     * redeem the same token again (see server_engine.c). */
    "CREATE TABLE invite(token_hash BLOB PRIMARY KEY, name TEXT NOT NULL,"
    " role INTEGER NOT NULL, expires INTEGER NOT NULL, used INTEGER NOT NULL,"
    " device BLOB) WITHOUT ROWID;"
    "CREATE TABLE log(seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
    " author BLOB NOT NULL, bytes BLOB NOT NULL, chain BLOB NOT NULL);"
    "CREATE TABLE feed(device BLOB NOT NULL, fseq INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, chain BLOB NOT NULL, PRIMARY KEY(device, fseq))"
    " WITHOUT ROWID;"
    /* Is log entry seq in the feed of device? (a field device's chunk
     * reads) */
    "CREATE INDEX feed_seq ON feed(device, seq);"
    /* The chunks each log entry lists (its signed manifest), and where the
     * chunks held are: their bytes are in pack files (store_server.h). */
    "CREATE TABLE chunkref(hash BLOB NOT NULL, seq INTEGER NOT NULL,"
    " PRIMARY KEY(hash, seq)) WITHOUT ROWID;"
    "CREATE TABLE chunk(hash BLOB PRIMARY KEY, pack INTEGER NOT NULL,"
    " off INTEGER NOT NULL, len INTEGER NOT NULL) WITHOUT ROWID;";

/* Records and retractions (store_server.h), made on every open if missing:
 * a database from an earlier build gains them (its older entries are not
 * filed under a record, and count as live). */
static const char records_sql[] =
    "CREATE TABLE IF NOT EXISTS logrec(seq INTEGER PRIMARY KEY,"
    " record BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS logrec_record ON logrec(record);"
    "CREATE TABLE IF NOT EXISTS retracted(record BLOB PRIMARY KEY,"
    " seq INTEGER NOT NULL, id BLOB NOT NULL) WITHOUT ROWID;";

static const fv_db_schema server_schema = {
    .label = "server database",
    .create_sql = schema_sql,
    .user_version = 1,
    /* 'FVSV': tells a server database from a vault's ('FVVT'). */
    .application_id = 0x46565356,
    /* secure_delete: a retraction's erased envelopes leave zeroed pages,
     * not ciphertext in free space. */
    .pragmas = "PRAGMA secure_delete = ON;",
    .missing_rc = FV_ENOTFOUND,
    /* A duplicate device, invite or log entry (store_server.h). */
    .constraint_rc = FV_EEXIST,
    .stmt_sql = stmt_sql,
    .nstmts = ST_COUNT,
};
_Static_assert(ST_COUNT <= FV_DB_STMTS_MAX, "statement cache");

#define PACK_READERS 4 /* pack files kept open for reading */

/* The SQLite implementation of the server store interface (sstore.h). */
typedef struct sqls sqls;
static const fv_sstore_ops sqls_ops;
static int sqls_log_find_author(fv_sstore *base, const unsigned char id[32],
                                uint64_t *seq, unsigned char *author);
static int sqls_chunk_discard(fv_sstore *base, const fv_sstore_chunkloc *loc);
static int sqls_chunk_sync(fv_sstore *base);

struct sqls {
    fv_sstore base; /* first: what the interface (sstore.h) hands out */
    fv_db d;
    /* Chunk packs (see store_server.h). */
    char *chunk_dir;
    uint64_t pack_max;
    int wfd;          /* the pack being appended to, or -1 */
    uint32_t wpack;   /* its number */
    uint64_t wsize;   /* its size: where the next chunk goes */
    int dirty;        /* appended to since the last sync */
    int sync_failed;  /* a pack closed without its sync: the next fails */
    struct {
        int fd; /* -1: free */
        uint32_t pack;
    } rd[PACK_READERS];
    unsigned rd_next;
    /* Chunk bytes to destroy at the next commit (store_server.h). */
    fv_sstore_chunkloc *erase;
    size_t nerase, erase_cap;
    int erased; /* this commit erased data: checkpoint after it */
};

static const char *sqls_errmsg(const fv_sstore *base)
{
    const sqls *s = (const sqls *)base;
    return s ? s->d.msg : "server database: no handle";
}

/* The chunk directory beside the database at `path`: DIR/chunks. */
static char *chunk_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = malloc(n + sizeof "chunks");
    if (p) {
        memcpy(p, path, n);
        memcpy(p + n, "chunks", sizeof "chunks");
    }
    return p;
}

int fv_sstore_sqlite_open(fv_sstore **out, const char *path, int create)
{
    sqls *s = calloc(1, sizeof *s);
    int rc;

    *out = NULL;
    if (!s)
        return FV_ENOMEM;
    s->wfd = -1;
    for (int i = 0; i < PACK_READERS; i++)
        s->rd[i].fd = -1;
    s->pack_max = FV_SSTORE_PACK_MAX;
    if (!(s->chunk_dir = chunk_dir_of(path))) {
        free(s);
        return FV_ENOMEM;
    }
    if ((rc = fv_db_open(&s->d, path, create, &server_schema)) == FV_OK &&
        (rc = fv_db_exec(&s->d, records_sql)) != FV_OK)
        fv_db_close(&s->d);
    if (rc) {
        free(s->chunk_dir);
        free(s);
        return rc;
    }
    s->base.ops = &sqls_ops;
    *out = &s->base;
    return FV_OK;
}

static void sqls_close(fv_sstore *base)
{
    sqls *s = (sqls *)base;
    if (!s)
        return;
    fv_db_close(&s->d);
    if (s->wfd >= 0)
        close(s->wfd);
    for (int i = 0; i < PACK_READERS; i++)
        if (s->rd[i].fd >= 0)
            close(s->rd[i].fd);
    free(s->chunk_dir);
    free(s->erase);
    free(s);
}

static int sqls_begin(fv_sstore *base)
{
    sqls *s = (sqls *)base;
    return fv_db_begin(&s->d);
}

static int erase_pending(sqls *s);

static int sqls_commit(fv_sstore *base)
{
    sqls *s = (sqls *)base;
    int rc = FV_OK;
    if (s->nerase)
        rc = erase_pending(s);
    s->nerase = 0;
    if (rc == FV_OK)
        rc = fv_db_commit(&s->d);
    if (rc == FV_OK && s->erased)
        rc = fv_db_checkpoint(&s->d);
    s->erased = 0;
    return rc;
}

static void sqls_rollback(fv_sstore *base)
{
    sqls *s = (sqls *)base;
    s->nerase = 0;
    s->erased = 0;
    fv_db_rollback(&s->d);
}

static int sqls_checkpoint(fv_sstore *base)
{
    sqls *s = (sqls *)base;
    return fv_db_checkpoint(&s->d);
}

/* ---- meta ------------------------------------------------------------- */

static int sqls_meta_get(fv_sstore *base, const char *key, unsigned char **val,
                         size_t *len)
{
    sqls *s = (sqls *)base;
    return fv_db_meta_get(&s->d, key, val, len);
}

static int sqls_meta_get_fixed(fv_sstore *base, const char *key, void *val,
                               size_t len)
{
    sqls *s = (sqls *)base;
    return fv_db_meta_get_fixed(&s->d, key, val, len);
}

static int sqls_meta_put(fv_sstore *base, const char *key, const void *val,
                         size_t len)
{
    sqls *s = (sqls *)base;
    return fv_db_meta_put(&s->d, key, val, len);
}

/* ---- devices ---------------------------------------------------------- */

static int bind_key(sqlite3_stmt *st, int col, const unsigned char *k)
{
    return sqlite3_bind_blob(st, col, k, 32, SQLITE_STATIC);
}

/* Copies a 32-byte blob column; 0 if the column is not 32 bytes. */
static int col_key(sqlite3_stmt *st, int col, unsigned char out[32])
{
    if (sqlite3_column_bytes(st, col) != 32)
        return 0;
    memcpy(out, sqlite3_column_blob(st, col), 32);
    return 1;
}

static int col_name(sqlite3_stmt *st, int col, char *out, size_t *len)
{
    const unsigned char *p = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (!p || n < 0 || n > FV_SSTORE_NAME_MAX)
        return 0;
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return 1;
}

static int row_device(sqlite3_stmt *st, fv_sstore_device *d)
{
    memset(d, 0, sizeof *d);
    if (!col_key(st, 0, d->pk) || !col_key(st, 1, d->box) ||
        !col_name(st, 2, d->name, &d->name_len))
        return FV_ECORRUPT;
    d->role = sqlite3_column_int(st, 3);
    d->revoked = sqlite3_column_int64(st, 4) != 0;
    d->revoked_at = sqlite3_column_int64(st, 4) > 1 ? sqlite3_column_int64(st, 4) : 0;
    d->enrolled = sqlite3_column_int64(st, 5);
    return FV_OK;
}

static int device_query(sqls *s, enum stmt_id id, const unsigned char key[32],
                        fv_sstore_device *d)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, id);
    int rc;
    if (st)
        bind_key(st, 1, key);
    if ((rc = fv_db_step_row(&s->d, st, "device")))
        return rc;
    rc = row_device(st, d);
    sqlite3_reset(st);
    return rc;
}

static int sqls_device_get(fv_sstore *base, const unsigned char pk[32],
                           fv_sstore_device *d)
{
    sqls *s = (sqls *)base;
    return device_query(s, ST_DEV_GET, pk, d);
}

static int sqls_device_by_box(fv_sstore *base, const unsigned char box[32],
                              fv_sstore_device *d)
{
    sqls *s = (sqls *)base;
    return device_query(s, ST_DEV_BY_BOX, box, d);
}

static int sqls_device_add(fv_sstore *base, const fv_sstore_device *d)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st;
    if (d->name_len > FV_SSTORE_NAME_MAX)
        return FV_EINVAL;
    st = fv_db_stmt(&s->d, ST_DEV_ADD);
    if (st) {
        bind_key(st, 1, d->pk);
        bind_key(st, 2, d->box);
        sqlite3_bind_text(st, 3, d->name, (int)d->name_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, d->role);
        sqlite3_bind_int(st, 5, d->revoked ? 1 : 0);
        sqlite3_bind_int64(st, 6, d->enrolled);
    }
    return fv_db_step_done(&s->d, st, "device");
}

static int sqls_device_revoke(fv_sstore *base, const unsigned char pk[32],
                              int64_t now)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_DEV_REVOKE);
    int rc;
    if (st) {
        bind_key(st, 1, pk);
        sqlite3_bind_int64(st, 2, now);
    }
    if ((rc = fv_db_step_done(&s->d, st, "device")))
        return rc;
    return sqlite3_changes(s->d.db) ? FV_OK : FV_ENOTFOUND;
}

static int sqls_each_device(fv_sstore *base, size_t max, fv_sstore_device_fn fn,
                            void *payload)
{
    sqls *s = (sqls *)base;
    /* Its own statement, so the callback may use the handle. */
    sqlite3_stmt *st;
    fv_sstore_device d;
    int rc = fv_db_prepare(&s->d, stmt_sql[ST_DEV_EACH], &st, "device");
    int r = FV_OK;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((r = row_device(st, &d)) != FV_OK || (r = fn(&d, payload)) != 0)
            break;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "device");
    sqlite3_finalize(st);
    return r;
}

/* ---- invites ---------------------------------------------------------- */

static int sqls_invite_add(fv_sstore *base, const unsigned char token_hash[32],
                           const char *name, size_t name_len, int role,
                           int64_t expires)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st;
    if (name_len > FV_SSTORE_NAME_MAX)
        return FV_EINVAL;
    st = fv_db_stmt(&s->d, ST_INV_ADD);
    if (st) {
        bind_key(st, 1, token_hash);
        sqlite3_bind_text(st, 2, name, (int)name_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, role);
        sqlite3_bind_int64(st, 4, expires);
    }
    return fv_db_step_done(&s->d, st, "invite");
}

static int sqls_invite_get(fv_sstore *base, const unsigned char token_hash[32],
                           fv_sstore_invite *inv)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_INV_GET);
    int rc;
    memset(inv, 0, sizeof *inv);
    if (st)
        bind_key(st, 1, token_hash);
    if ((rc = fv_db_step_row(&s->d, st, "invite")))
        return rc;
    if (!col_name(st, 0, inv->name, &inv->name_len))
        rc = FV_ECORRUPT;
    inv->role = sqlite3_column_int(st, 1);
    inv->expires = sqlite3_column_int64(st, 2);
    inv->used = sqlite3_column_int(st, 3) != 0;
    inv->has_device = col_key(st, 4, inv->device);
    sqlite3_reset(st);
    return rc;
}

static int sqls_invite_use(fv_sstore *base, const unsigned char token_hash[32],
                           const unsigned char device[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_INV_USE);
    int rc;
    if (st) {
        bind_key(st, 1, token_hash);
        bind_key(st, 2, device);
    }
    if ((rc = fv_db_step_done(&s->d, st, "invite")))
        return rc;
    return sqlite3_changes(s->d.db) == 1 ? FV_OK : FV_EINVITE;
}

/* ---- log and feeds ---------------------------------------------------- */

static int sqls_log_find(fv_sstore *base, const unsigned char id[32],
                         uint64_t *seq)
{
    sqls *s = (sqls *)base;
    return sqls_log_find_author(&s->base, id, seq, NULL);
}

static int sqls_log_find_author(fv_sstore *base, const unsigned char id[32],
                                uint64_t *seq, unsigned char *author)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_LOG_FIND);
    int rc = FV_OK;
    if (st)
        bind_key(st, 1, id);
    if ((rc = fv_db_step_row(&s->d, st, "log")))
        return rc;
    *seq = (uint64_t)sqlite3_column_int64(st, 0);
    if (author && !col_key(st, 1, author))
        rc = FV_ECORRUPT;
    sqlite3_reset(st);
    return rc;
}

/* Reads (position, chain) from the current row; FV_ECORRUPT if damaged. */
static int row_pos_chain(sqlite3_stmt *st, uint64_t *pos,
                         unsigned char chain[32])
{
    sqlite3_int64 v = sqlite3_column_int64(st, 0);
    if (v < 1 || !col_key(st, 1, chain))
        return FV_ECORRUPT;
    *pos = (uint64_t)v;
    return FV_OK;
}

static int head_query(sqls *s, sqlite3_stmt *st, uint64_t *pos,
                      unsigned char chain[32])
{
    int rc = fv_db_step_row(&s->d, st, "head");
    if (rc == FV_ENOTFOUND) {
        *pos = 0;
        memset(chain, 0, 32);
        return FV_OK;
    }
    if (rc)
        return rc;
    rc = row_pos_chain(st, pos, chain);
    sqlite3_reset(st);
    return rc;
}

static int chain_query(sqls *s, sqlite3_stmt *st, unsigned char chain[32])
{
    int rc = fv_db_step_row(&s->d, st, "chain");
    if (rc)
        return rc;
    if (!col_key(st, 0, chain))
        rc = FV_ECORRUPT;
    sqlite3_reset(st);
    return rc;
}

static int sqls_log_head(fv_sstore *base, uint64_t *seq,
                         unsigned char chain[32])
{
    sqls *s = (sqls *)base;
    return head_query(s, fv_db_stmt(&s->d, ST_LOG_HEAD), seq, chain);
}

static int sqls_log_chain(fv_sstore *base, uint64_t seq,
                          unsigned char chain[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_LOG_CHAIN);
    if (seq > INT64_MAX)
        return FV_ENOTFOUND;
    if (st)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    return chain_query(s, st, chain);
}

static int sqls_log_add(fv_sstore *base, uint64_t seq,
                        const unsigned char id[32],
                        const unsigned char author[32],
                        const unsigned char *bytes, size_t len,
                        const unsigned char chain[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_LOG_ADD);
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    if (st) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        bind_key(st, 2, id);
        bind_key(st, 3, author);
        sqlite3_bind_blob64(st, 4, len ? (const void *)bytes : "", len,
                            SQLITE_STATIC);
        bind_key(st, 5, chain);
    }
    return fv_db_step_done(&s->d, st, "log");
}

static int sqls_feed_head(fv_sstore *base, const unsigned char device[32],
                          uint64_t *fseq, unsigned char chain[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_FEED_HEAD);
    if (st)
        bind_key(st, 1, device);
    return head_query(s, st, fseq, chain);
}

static int sqls_feed_chain(fv_sstore *base, const unsigned char device[32],
                           uint64_t fseq, unsigned char chain[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_FEED_CHAIN);
    if (fseq > INT64_MAX)
        return FV_ENOTFOUND;
    if (st) {
        bind_key(st, 1, device);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)fseq);
    }
    return chain_query(s, st, chain);
}

static int sqls_feed_add(fv_sstore *base, const unsigned char device[32],
                         uint64_t fseq, uint64_t seq,
                         const unsigned char chain[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_FEED_ADD);
    if (fseq > INT64_MAX || seq > INT64_MAX)
        return FV_ELIMIT;
    if (st) {
        bind_key(st, 1, device);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)fseq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
        bind_key(st, 4, chain);
    }
    return fv_db_step_done(&s->d, st, "feed");
}

static int sqls_read(fv_sstore *base, const unsigned char *device,
                     uint64_t after, uint64_t upto, size_t max,
                     fv_sstore_entry_fn fn, void *payload)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, device ? ST_READ_FEED : ST_READ_LOG);
    fv_sstore_entry e;
    int rc, r = FV_OK;

    if (!st)
        return fv_db_fail(&s->d, sqlite3_errcode(s->d.db), "read");
    if (upto > INT64_MAX)
        upto = INT64_MAX;
    if (after >= upto || max == 0)
        return FV_OK;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)upto);
    {
        uint64_t lim = max; /* a size_t: 32 bits on armhf */
        sqlite3_bind_int64(st, 3, lim > INT64_MAX ? INT64_MAX : (sqlite3_int64)lim);
    }
    if (device)
        bind_key(st, 4, device);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 pos = sqlite3_column_int64(st, 0);
        e.bytes = sqlite3_column_blob(st, 1);
        e.len = (size_t)sqlite3_column_bytes(st, 1);
        e.chain = sqlite3_column_blob(st, 2);
        e.id = sqlite3_column_blob(st, 3);
        if (e.len == 0)
            e.bytes = NULL; /* erased: its record was retracted */
        if (pos < 1 || (!e.bytes && e.len) || !e.chain || !e.id ||
            sqlite3_column_bytes(st, 2) != 32 ||
            sqlite3_column_bytes(st, 3) != 32) {
            r = fv_db_error(&s->d, FV_ECORRUPT, "a log entry is damaged");
            break;
        }
        e.seq = (uint64_t)pos;
        if ((r = fn(&e, payload)) != 0)
            break;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "read");
    sqlite3_reset(st);
    return r;
}

/* ---- attachment chunks ------------------------------------------------ */

static int sqls_chunkref_add(fv_sstore *base, const unsigned char hash[32],
                             uint64_t seq)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_REF_ADD);
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    if (st) {
        bind_key(st, 1, hash);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    }
    return fv_db_step_done(&s->d, st, "chunkref");
}

static int sqls_chunk_listed(fv_sstore *base, const unsigned char hash[32],
                             const unsigned char *author)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, author ? ST_REF_AUTHOR : ST_REF_ANY);
    int rc;
    if (st) {
        bind_key(st, 1, hash);
        if (author)
            bind_key(st, 2, author);
    }
    if ((rc = fv_db_step_row(&s->d, st, "chunkref")) == FV_OK)
        sqlite3_reset(st);
    return rc;
}

static int sqls_chunk_add(fv_sstore *base, const unsigned char hash[32],
                          const fv_sstore_chunkloc *loc)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_CHUNK_ADD);
    int rc;
    if (loc->off > INT64_MAX)
        return FV_ELIMIT;
    if (st) {
        bind_key(st, 1, hash);
        sqlite3_bind_int64(st, 2, loc->pack);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)loc->off);
        sqlite3_bind_int64(st, 4, loc->len);
    }
    if ((rc = fv_db_step_done(&s->d, st, "chunk")))
        return rc;
    /* Already indexed elsewhere: no index row would name these bytes. */
    return sqlite3_changes(s->d.db) ? FV_OK : sqls_chunk_discard(&s->base, loc);
}

static int sqls_chunk_live(fv_sstore *base, const unsigned char hash[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_CHUNK_LIVE);
    int rc;
    if (st)
        bind_key(st, 1, hash);
    if ((rc = fv_db_step_row(&s->d, st, "chunkref")) == FV_OK)
        sqlite3_reset(st);
    return rc;
}

static int sqls_chunk_discard(fv_sstore *base, const fv_sstore_chunkloc *loc)
{
    sqls *s = (sqls *)base;
    if (s->nerase == s->erase_cap) {
        size_t cap = s->erase_cap ? s->erase_cap * 2 : 64;
        fv_sstore_chunkloc *p = realloc(s->erase, cap * sizeof *p);
        if (!p)
            return fv_db_error(&s->d, FV_ENOMEM, "chunks: out of memory");
        s->erase = p;
        s->erase_cap = cap;
    }
    s->erase[s->nerase++] = *loc;
    return FV_OK;
}

static int sqls_chunk_find(fv_sstore *base, const unsigned char hash[32],
                           const unsigned char *reader, fv_sstore_chunkloc *loc)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st =
        fv_db_stmt(&s->d, reader ? ST_CHUNK_FIND_READER : ST_CHUNK_FIND);
    sqlite3_int64 pack, off, len;
    int rc;
    if (st) {
        bind_key(st, 1, hash);
        if (reader)
            bind_key(st, 2, reader);
    }
    if ((rc = fv_db_step_row(&s->d, st, "chunk")))
        return rc;
    pack = sqlite3_column_int64(st, 0);
    off = sqlite3_column_int64(st, 1);
    len = sqlite3_column_int64(st, 2);
    sqlite3_reset(st);
    if (pack < 1 || pack > UINT32_MAX || off < 0 || len < 1 ||
        len > UINT32_MAX)
        return fv_db_error(&s->d, FV_ECORRUPT, "a chunk's index is damaged");
    loc->pack = (uint32_t)pack;
    loc->off = (uint64_t)off;
    loc->len = (uint32_t)len;
    return FV_OK;
}

void fv_sstore_chunk_set_pack_max(fv_sstore *base, uint64_t bytes)
{
    sqls *s = (sqls *)base;
    if (base && base->ops == &sqls_ops)
        s->pack_max = bytes ? bytes : FV_SSTORE_PACK_MAX;
}

/* Records errno from doing `what`; returns its FV_E code. */
static int pack_fail(sqls *s, const char *what)
{
    int e = errno;
    /* opendir() allocates: out of memory is not a failing disk. */
    return fv_db_error(&s->d,
                       e == ENOMEM                                  ? FV_ENOMEM
                       : e == ENOSPC || e == EDQUOT || e == EFBIG ? FV_ENOSPC
                                                                    : FV_EIO,
                       "chunks: %s: %s", what, fv_errno_text(e).text);
}

static void pack_path(const sqls *s, uint32_t pack, char *out, size_t size)
{
    snprintf(out, size, "%s/pack-%06u", s->chunk_dir, (unsigned)pack);
}

/* Makes the entries of directory `dir` durable: 0, or -1 with errno set. */
static int fsync_path(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r, e;
    if (fd < 0)
        return -1;
    r = fsync(fd);
    e = errno;
    close(fd);
    errno = e;
    return r;
}

/* Makes the chunk directory (0700) if it is missing: a server made before
 * chunks existed has none. */
static int chunk_dir_make(sqls *s)
{
    struct stat sb;
    if (mkdir(s->chunk_dir, 0700) == 0) {
        /* Its entry in the server directory must survive a crash too: if
         * that cannot be made sure, the directory goes again, so that the
         * next attempt makes (and syncs) it anew. */
        char *parent = strdup(s->chunk_dir), *slash;
        int r = -1;
        if (!parent)
            errno = ENOMEM;
        else if ((slash = strrchr(parent, '/'))) {
            *slash = '\0';
            r = fsync_path(slash == parent ? "/" : parent);
        } else {
            r = fsync_path(".");
        }
        free(parent);
        if (r != 0) {
            int rc = pack_fail(s, "cannot sync the server directory");
            rmdir(s->chunk_dir);
            return rc;
        }
        return FV_OK;
    }
    if (errno != EEXIST)
        return pack_fail(s, "cannot make the directory");
    if (lstat(s->chunk_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fv_db_error(&s->d, FV_EIO, "chunks: not a directory");
    return FV_OK;
}

/* The highest pack number in the directory (0 if none). */
static int pack_last(sqls *s, uint32_t *last)
{
    DIR *d = opendir(s->chunk_dir);
    struct dirent *e;
    *last = 0;
    if (!d)
        return pack_fail(s, "cannot list the directory");
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        unsigned long v;
        char *end;
        if (strncmp(n, "pack-", 5) != 0 || strlen(n + 5) < 6 ||
            strspn(n + 5, "0123456789") != strlen(n + 5))
            continue;
        errno = 0;
        v = strtoul(n + 5, &end, 10);
        if (errno == 0 && v > *last && v < UINT32_MAX)
            *last = (uint32_t)v;
    }
    closedir(d);
    return FV_OK;
}

/* Opens pack `pack` for appending, creating it (0600) if `create`. */
static int pack_open_write(sqls *s, uint32_t pack, int create)
{
    char path[4096];
    struct stat sb;
    int fd;
    pack_path(s, pack, path, sizeof path);
    fd = open(path,
              O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW |
                  (create ? O_CREAT | O_EXCL : 0),
              0600);
    if (fd < 0)
        return pack_fail(s, "cannot open a pack");
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fv_db_error(&s->d, FV_EIO, "chunks: a pack is not a file");
    }
    /* The new name survives a crash, or the empty pack goes again (the
     * next attempt creates it anew). */
    if (create && fsync_path(s->chunk_dir) != 0) {
        int rc = pack_fail(s, "cannot sync the chunk directory");
        close(fd);
        unlink(path);
        return rc;
    }
    s->wfd = fd;
    s->wpack = pack;
    s->wsize = (uint64_t)sb.st_size;
    s->dirty = 0;
    return FV_OK;
}

/* Makes sure a pack with room for `len` more bytes is open. */
static int pack_ready(sqls *s, size_t len)
{
    uint32_t last;
    int rc;
    if (s->wfd >= 0 && (s->wsize == 0 || s->wsize + len <= s->pack_max))
        return FV_OK;
    if (s->wfd >= 0) {
        /* Full: what was appended to it must be durable before the next
         * sync, which covers the new pack only. */
        if ((rc = sqls_chunk_sync(&s->base)))
            return rc;
        close(s->wfd);
        s->wfd = -1;
        return pack_open_write(s, s->wpack + 1, 1);
    }
    if ((rc = chunk_dir_make(s)) || (rc = pack_last(s, &last)))
        return rc;
    if (last == 0)
        return pack_open_write(s, 1, 1);
    if ((rc = pack_open_write(s, last, 0)))
        return rc;
    if (s->wsize == 0 || s->wsize + len <= s->pack_max)
        return FV_OK;
    close(s->wfd);
    s->wfd = -1;
    return pack_open_write(s, last + 1, 1);
}

/* Appends under the pack's lock (see fv_sstore_chunk_append, sstore.h). */
static int append_locked(sqls *s, const unsigned char *data, size_t len,
                         fv_sstore_chunkloc *loc)
{
    const unsigned char *p = data;
    size_t left = len;
    struct stat sb;
    uint64_t off;
    int rc;

    /* Another process may have appended since (`server import` beside a
     * running server): the chunk goes where the file ends now. */
    if (fstat(s->wfd, &sb) == 0 && (uint64_t)sb.st_size > s->wsize)
        s->wsize = (uint64_t)sb.st_size;
    off = s->wsize;
    /* One write() of the whole chunk; a short one (a signal, a full disk)
     * goes on where it stopped. */
    while (left > 0) {
        ssize_t w = write(s->wfd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            rc = pack_fail(s, "cannot write a pack");
            /* Cut the partial chunk back off. If that fails too, its bytes
             * stay as garbage no index row names, and the next chunk goes
             * after them (O_APPEND): measure where that is. */
            if (ftruncate(s->wfd, (off_t)off) != 0) {
                off_t end = lseek(s->wfd, 0, SEEK_END);
                if (end >= (off_t)off)
                    s->wsize = (uint64_t)end;
                else {
                    /* Cannot tell: make what other batches appended
                     * durable, and reopen (and measure) next time. */
                    if (s->dirty && fdatasync(s->wfd) != 0)
                        s->sync_failed = 1;
                    close(s->wfd);
                    s->wfd = -1;
                    s->dirty = 0;
                }
            }
            return rc;
        }
        p += w;
        left -= (size_t)w;
    }
    s->wsize = off + len;
    s->dirty = 1;
    loc->pack = s->wpack;
    loc->off = off;
    loc->len = (uint32_t)len;
    return FV_OK;
}

static int sqls_chunk_append(fv_sstore *base, const unsigned char *data,
                             size_t len, fv_sstore_chunkloc *loc)
{
    sqls *s = (sqls *)base;
    int fd, rc;

    if (len == 0 || len > UINT32_MAX || len > s->pack_max)
        return FV_EINVAL;
    if ((rc = pack_ready(s, len)))
        return rc;
    /* Two writers of one pack (a running server and `server import`) each
     * measure the end and write under an exclusive lock, so that the
     * offset indexed is where the bytes went. */
    fd = s->wfd;
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return pack_fail(s, "cannot lock a pack");
    rc = append_locked(s, data, len, loc);
    if (s->wfd == fd) /* (closing it, append_locked released the lock) */
        flock(fd, LOCK_UN);
    return rc;
}

static int sqls_chunk_sync(fv_sstore *base)
{
    sqls *s = (sqls *)base;
    if (s->sync_failed) {
        s->sync_failed = 0;
        return fv_db_error(&s->d, FV_EIO, "chunks: a pack could not be synced");
    }
    if (s->wfd < 0 || !s->dirty)
        return FV_OK;
    if (fdatasync(s->wfd) != 0)
        return pack_fail(s, "cannot sync a pack");
    s->dirty = 0;
    return FV_OK;
}

/* A descriptor to read pack `pack` with. */
static int pack_reader(sqls *s, uint32_t pack, int *fd)
{
    char path[4096];
    unsigned i;
    if (s->wfd >= 0 && pack == s->wpack) {
        *fd = s->wfd; /* opened O_RDWR: pread ignores O_APPEND */
        return FV_OK;
    }
    for (i = 0; i < PACK_READERS; i++)
        if (s->rd[i].fd >= 0 && s->rd[i].pack == pack) {
            *fd = s->rd[i].fd;
            return FV_OK;
        }
    pack_path(s, pack, path, sizeof path);
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (*fd < 0)
        return errno == ENOENT
                   ? fv_db_error(&s->d, FV_ECORRUPT, "chunks: a pack is missing")
                   : pack_fail(s, "cannot open a pack");
    i = s->rd_next++ % PACK_READERS;
    if (s->rd[i].fd >= 0)
        close(s->rd[i].fd);
    s->rd[i].fd = *fd;
    s->rd[i].pack = pack;
    return FV_OK;
}

static int sqls_chunk_read(fv_sstore *base, const fv_sstore_chunkloc *loc,
                           unsigned char *buf)
{
    sqls *s = (sqls *)base;
    size_t got = 0;
    int fd, rc;
    if (loc->off > INT64_MAX - (uint64_t)loc->len)
        return FV_ECORRUPT;
    if ((rc = pack_reader(s, loc->pack, &fd)))
        return rc;
    while (got < loc->len) {
        ssize_t r = pread(fd, buf + got, loc->len - got,
                          (off_t)(loc->off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return pack_fail(s, "cannot read a pack");
        if (r == 0)
            return fv_db_error(&s->d, FV_ECORRUPT, "chunks: a pack is cut short");
        got += (size_t)r;
    }
    return FV_OK;
}

/* ---- records and retraction ------------------------------------------- */

static int sqls_logrec_add(fv_sstore *base, uint64_t seq,
                           const unsigned char record[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_REC_ADD);
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    if (st) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        bind_key(st, 2, record);
    }
    return fv_db_step_done(&s->d, st, "logrec");
}

static int sqls_record_origin(fv_sstore *base, const unsigned char record[32],
                              unsigned char origin[32])
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_REC_ORIGIN);
    int rc;
    if (st)
        bind_key(st, 1, record);
    if ((rc = fv_db_step_row(&s->d, st, "logrec")))
        return rc;
    if (!col_key(st, 0, origin))
        rc = fv_db_error(&s->d, FV_ECORRUPT, "a log entry is damaged");
    sqlite3_reset(st);
    return rc;
}

static int sqls_retracted(fv_sstore *base, const unsigned char record[32],
                          uint64_t *seq, unsigned char *id)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_RETRACTED);
    unsigned char tmp[32];
    sqlite3_int64 v;
    int rc;
    if (st)
        bind_key(st, 1, record);
    if ((rc = fv_db_step_row(&s->d, st, "retracted")))
        return rc;
    v = sqlite3_column_int64(st, 0);
    if (v < 0 || !col_key(st, 1, id ? id : tmp))
        rc = fv_db_error(&s->d, FV_ECORRUPT, "a retraction is damaged");
    else if (seq)
        *seq = (uint64_t)v;
    sqlite3_reset(st);
    return rc;
}

static int sqls_feed_has(fv_sstore *base, const unsigned char device[32],
                         uint64_t seq)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_FEED_HAS);
    int rc;
    if (seq > INT64_MAX)
        return FV_ENOTFOUND;
    if (st) {
        bind_key(st, 1, device);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    }
    if ((rc = fv_db_step_row(&s->d, st, "feed")) == FV_OK)
        sqlite3_reset(st);
    return rc;
}

static int sqls_retract(fv_sstore *base, const unsigned char record[32],
                        uint64_t seq, const unsigned char id[32],
                        uint64_t *entries, uint64_t *chunks)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st, *it = NULL;
    unsigned char hash[32];
    size_t n0 = s->nerase;
    uint64_t nchunks = 0;
    int rc;

    if (entries)
        *entries = 0;
    if (chunks)
        *chunks = 0;
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    if ((st = fv_db_stmt(&s->d, ST_RETRACT_ADD))) {
        bind_key(st, 1, record);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        bind_key(st, 3, id);
    }
    if ((rc = fv_db_step_done(&s->d, st, "retracted")))
        return rc;
    if ((st = fv_db_stmt(&s->d, ST_ERASE_LOG))) {
        bind_key(st, 1, record);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    }
    if ((rc = fv_db_step_done(&s->d, st, "log")))
        return rc;
    if (entries)
        *entries = (uint64_t)sqlite3_changes(s->d.db);
    s->erased = 1; /* the WAL holds the erased pages until a checkpoint */
    /* The chunks to destroy, gathered first (their rows go below). */
    if ((rc = fv_db_prepare(&s->d, erase_chunks_sql, &it, "chunk")))
        return rc;
    bind_key(it, 1, record);
    while ((rc = sqlite3_step(it)) == SQLITE_ROW) {
        fv_sstore_chunkloc loc;
        sqlite3_int64 pack = sqlite3_column_int64(it, 1);
        sqlite3_int64 off = sqlite3_column_int64(it, 2);
        sqlite3_int64 len = sqlite3_column_int64(it, 3);
        if (pack < 1 || pack > UINT32_MAX || off < 0 || len < 1 ||
            len > UINT32_MAX) {
            rc = fv_db_error(&s->d, FV_ECORRUPT, "a chunk's index is damaged");
            goto fail;
        }
        loc.pack = (uint32_t)pack;
        loc.off = (uint64_t)off;
        loc.len = (uint32_t)len;
        if ((rc = sqls_chunk_discard(&s->base, &loc)))
            goto fail;
    }
    if (rc != SQLITE_DONE) {
        rc = fv_db_fail(&s->d, rc, "chunk");
        goto fail;
    }
    sqlite3_reset(it);
    /* The same rows again, now to delete them: their hashes. */
    while ((rc = sqlite3_step(it)) == SQLITE_ROW) {
        if (!col_key(it, 0, hash)) {
            rc = fv_db_error(&s->d, FV_ECORRUPT, "a chunk's index is damaged");
            goto fail;
        }
        if ((st = fv_db_stmt(&s->d, ST_CHUNK_DEL)))
            bind_key(st, 1, hash);
        if ((rc = fv_db_step_done(&s->d, st, "chunk")))
            goto fail;
        nchunks++;
    }
    if (rc != SQLITE_DONE) {
        rc = fv_db_fail(&s->d, rc, "chunk");
        goto fail;
    }
    sqlite3_finalize(it);
    if (chunks)
        *chunks = nchunks;
    return FV_OK;
fail:
    sqlite3_finalize(it);
    s->nerase = n0;
    return rc;
}

static int sqls_record_readers(fv_sstore *base, const unsigned char record[32],
                               fv_sstore_key_fn fn, void *payload)
{
    sqls *s = (sqls *)base;
    sqlite3_stmt *st;
    unsigned char(*keys)[32] = NULL, (*p)[32];
    size_t n = 0, cap = 0;
    int rc = fv_db_prepare(&s->d, readers_sql, &st, "feed"), r = FV_OK;
    if (rc)
        return rc;
    bind_key(st, 1, record);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            if (!(p = realloc(keys, cap * sizeof *p))) {
                r = fv_db_error(&s->d, FV_ENOMEM, "feed: out of memory");
                break;
            }
            keys = p;
        }
        if (!col_key(st, 0, keys[n])) {
            r = fv_db_error(&s->d, FV_ECORRUPT, "a device is damaged");
            break;
        }
        n++;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "feed");
    sqlite3_finalize(st);
    for (size_t i = 0; r == FV_OK && i < n; i++)
        r = fn(keys[i], payload);
    free(keys);
    return r;
}

static int cmp_loc(const void *a, const void *b)
{
    const fv_sstore_chunkloc *x = a, *y = b;
    if (x->pack != y->pack)
        return x->pack < y->pack ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Destroys the bytes at loc in the pack open as fd: a hole punched in place
 * (the file keeps its size, so other chunks keep their offsets), or, where
 * the file system cannot punch, zeros written over them. */
static int erase_range(int fd, const fv_sstore_chunkloc *loc)
{
    static const unsigned char zeros[65536];
    uint64_t done = 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)loc->off, (off_t)loc->len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -1;
    while (done < loc->len) {
        size_t k = loc->len - done < sizeof zeros ? (size_t)(loc->len - done)
                                                  : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, k, (off_t)(loc->off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (uint64_t)w;
    }
    return 0;
}

/* Destroys the bytes s->erase names, one pack at a time, each pack made
 * durable (fdatasync) before the next. */
static int erase_pending(sqls *s)
{
    size_t i = 0;
    qsort(s->erase, s->nerase, sizeof *s->erase, cmp_loc);
    while (i < s->nerase) {
        uint32_t pack = s->erase[i].pack;
        char path[4096];
        int fd;
        pack_path(s, pack, path, sizeof path);
        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            if (errno != ENOENT)
                return pack_fail(s, "cannot open a pack to erase");
            /* No pack, no bytes to destroy. */
            while (i < s->nerase && s->erase[i].pack == pack)
                i++;
            continue;
        }
        for (; i < s->nerase && s->erase[i].pack == pack; i++)
            if (erase_range(fd, &s->erase[i]) != 0) {
                int rc = pack_fail(s, "cannot erase chunk bytes");
                close(fd);
                return rc;
            }
        if (fdatasync(fd) != 0) {
            int rc = pack_fail(s, "cannot sync an erased pack");
            close(fd);
            return rc;
        }
        close(fd);
        s->erased = 1;
    }
    return FV_OK;
}

static const fv_sstore_ops sqls_ops = {
    .close = sqls_close,
    .errmsg = sqls_errmsg,
    .begin = sqls_begin,
    .commit = sqls_commit,
    .rollback = sqls_rollback,
    .checkpoint = sqls_checkpoint,
    .meta_get = sqls_meta_get,
    .meta_get_fixed = sqls_meta_get_fixed,
    .meta_put = sqls_meta_put,
    .device_get = sqls_device_get,
    .device_by_box = sqls_device_by_box,
    .device_add = sqls_device_add,
    .device_revoke = sqls_device_revoke,
    .each_device = sqls_each_device,
    .invite_add = sqls_invite_add,
    .invite_get = sqls_invite_get,
    .invite_use = sqls_invite_use,
    .log_find = sqls_log_find,
    .log_find_author = sqls_log_find_author,
    .log_head = sqls_log_head,
    .log_chain = sqls_log_chain,
    .log_add = sqls_log_add,
    .feed_head = sqls_feed_head,
    .feed_chain = sqls_feed_chain,
    .feed_add = sqls_feed_add,
    .feed_has = sqls_feed_has,
    .read = sqls_read,
    .chunkref_add = sqls_chunkref_add,
    .chunk_listed = sqls_chunk_listed,
    .chunk_append = sqls_chunk_append,
    .chunk_sync = sqls_chunk_sync,
    .chunk_add = sqls_chunk_add,
    .chunk_find = sqls_chunk_find,
    .chunk_read = sqls_chunk_read,
    .chunk_live = sqls_chunk_live,
    .chunk_discard = sqls_chunk_discard,
    .logrec_add = sqls_logrec_add,
    .record_origin = sqls_record_origin,
    .retracted = sqls_retracted,
    .retract = sqls_retract,
    .record_readers = sqls_record_readers,
};
