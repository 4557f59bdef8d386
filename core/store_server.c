/* store_server.c - the sync server's SQLite database (see store_server.h). */
#include "store_server.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fieldvault.h"

#define SCHEMA_VERSION 1
/* 'FVSV': tells a server database from a vault's (which has none). */
#define APPLICATION_ID 0x46565356

enum stmt_id {
    ST_META_GET,
    ST_META_PUT,
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
    ST_COUNT
};

#define DEV_COLS "pk, box, name, role, revoked, enrolled"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_META_GET] = "SELECT v FROM meta WHERE k = ?1",
    [ST_META_PUT] = "INSERT OR REPLACE INTO meta(k, v) VALUES (?1, ?2)",
    [ST_DEV_GET] = "SELECT " DEV_COLS " FROM device WHERE pk = ?1",
    [ST_DEV_BY_BOX] = "SELECT " DEV_COLS " FROM device WHERE box = ?1",
    [ST_DEV_ADD] = "INSERT INTO device(" DEV_COLS ") "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_DEV_REVOKE] = "UPDATE device SET revoked = 1 WHERE pk = ?1",
    [ST_DEV_EACH] = "SELECT " DEV_COLS " FROM device "
                    "ORDER BY enrolled, pk LIMIT ?1",
    [ST_INV_ADD] = "INSERT INTO invite(token_hash, name, role, expires, used) "
                   "VALUES (?1, ?2, ?3, ?4, 0)",
    [ST_INV_GET] = "SELECT name, role, expires, used, device FROM invite "
                   "WHERE token_hash = ?1",
    [ST_INV_USE] = "UPDATE invite SET used = 1, device = ?2 "
                   "WHERE token_hash = ?1 AND used = 0",
    [ST_LOG_FIND] = "SELECT seq FROM log WHERE id = ?1",
    [ST_LOG_HEAD] = "SELECT seq, chain FROM log ORDER BY seq DESC LIMIT 1",
    [ST_LOG_CHAIN] = "SELECT chain FROM log WHERE seq = ?1",
    [ST_LOG_ADD] = "INSERT INTO log(seq, id, author, bytes, chain) "
                   "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_FEED_HEAD] = "SELECT fseq, chain FROM feed WHERE device = ?1 "
                     "ORDER BY fseq DESC LIMIT 1",
    [ST_FEED_CHAIN] = "SELECT chain FROM feed WHERE device = ?1 AND fseq = ?2",
    [ST_FEED_ADD] = "INSERT INTO feed(device, fseq, seq, chain) "
                    "VALUES (?1, ?2, ?3, ?4)",
    [ST_READ_LOG] = "SELECT seq, bytes, chain FROM log "
                    "WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    [ST_READ_FEED] = "SELECT f.fseq, l.bytes, f.chain FROM feed f "
                     "JOIN log l ON l.seq = f.seq WHERE f.device = ?4 "
                     "AND f.fseq > ?1 AND f.fseq <= ?2 "
                     "ORDER BY f.fseq LIMIT ?3",
};

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
    " WITHOUT ROWID;";

struct fv_sstore {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char msg[160];
};

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return FV_OK;
    case SQLITE_NOMEM:
        return FV_ENOMEM;
    case SQLITE_FULL:
        return FV_ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return FV_EBUSY;
    case SQLITE_CONSTRAINT:
        return FV_EEXIST;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_SCHEMA:
    case SQLITE_MISMATCH:
        return FV_ECORRUPT;
    case SQLITE_IOERR:
        if (rc == SQLITE_IOERR_SHORT_READ)
            return FV_ECORRUPT;
        return FV_EIO;
    default:
        return FV_EIO;
    }
}

static int fail(fv_sstore *s, int rc, const char *what)
{
    int code = map_rc(rc);
    if (s)
        snprintf(s->msg, sizeof s->msg, "server database: %s: %s", what,
                 sqlite3_errstr(rc));
    return code == FV_OK ? FV_EIO : code;
}

const char *fv_sstore_errmsg(const fv_sstore *s)
{
    return s ? s->msg : "server database: no handle";
}

static sqlite3_stmt *stmt(fv_sstore *s, enum stmt_id id)
{
    if (!s->st[id] &&
        sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                           &s->st[id], NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(s->st[id]);
    sqlite3_clear_bindings(s->st[id]);
    return s->st[id];
}

static int exec(fv_sstore *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? FV_OK : fail(s, rc, "statement");
}

static int step_done(fv_sstore *s, sqlite3_stmt *st, const char *what)
{
    int rc;
    if (!st)
        return fail(s, sqlite3_errcode(s->db), what);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? FV_OK : fail(s, rc, what);
}

/* Steps a query expected to return at most one row: FV_OK with the row
 * current (the caller reads it, then resets), FV_ENOTFOUND, or an error.
 * On anything but FV_OK the statement is already reset. */
static int step_row(fv_sstore *s, sqlite3_stmt *st, const char *what)
{
    int rc;
    if (!st)
        return fail(s, sqlite3_errcode(s->db), what);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return FV_OK;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? FV_ENOTFOUND : fail(s, rc, what);
}

static int pragma_int(fv_sstore *s, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? FV_OK : fail(s, rc, "pragma");
}

int fv_sstore_open(fv_sstore **out, const char *path, int create)
{
    fv_sstore *s;
    struct stat sb;
    int rc, version = 0, appid = 0;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

    *out = NULL;
    if (stat(path, &sb) == 0) {
        if (create)
            return FV_EEXIST;
        if (!S_ISREG(sb.st_mode))
            return FV_ECORRUPT;
    } else if (!create) {
        return FV_ENOTFOUND;
    }
    if (create)
        flags |= SQLITE_OPEN_CREATE | SQLITE_OPEN_EXCLUSIVE;
    s = calloc(1, sizeof *s);
    if (!s)
        return FV_ENOMEM;
    rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(s, rc, "open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 10000);
    /* No secure_delete: the server holds ciphertext only and never deletes.
     * WAL + synchronous FULL: every commit is durable when it returns, so a
     * receipt is only ever sent for envelopes that are on disk. */
    rc = exec(s, "PRAGMA foreign_keys = OFF; PRAGMA trusted_schema = OFF;");
    if (rc)
        goto fail;
    if (create) {
        chmod(path, 0600);
        rc = exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
        if (!rc)
            rc = exec(s, "BEGIN");
        if (!rc)
            rc = exec(s, schema_sql);
        if (!rc)
            rc = exec(s, "PRAGMA user_version = 1;"
                         "PRAGMA application_id = 1180062550; COMMIT");
        if (rc)
            goto fail;
    } else {
        rc = pragma_int(s, "PRAGMA application_id", &appid);
        if (!rc)
            rc = pragma_int(s, "PRAGMA user_version", &version);
        if (rc)
            goto fail;
        if (appid != APPLICATION_ID) {
            snprintf(s->msg, sizeof s->msg,
                     "server database: not a FieldVault server database");
            rc = FV_ECORRUPT;
            goto fail;
        }
        if (version > SCHEMA_VERSION) {
            snprintf(s->msg, sizeof s->msg,
                     "server database: schema %d is newer", version);
            rc = FV_EVERSION;
            goto fail;
        }
        if (version != SCHEMA_VERSION) {
            rc = FV_ECORRUPT;
            goto fail;
        }
        rc = exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
        if (rc)
            goto fail;
    }
    *out = s;
    return FV_OK;
fail:
    fv_sstore_close(s);
    return rc;
}

_Static_assert(APPLICATION_ID == 1180062550, "application_id in the SQL");

void fv_sstore_close(fv_sstore *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db) {
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                  NULL, NULL);
        sqlite3_close_v2(s->db);
    }
    free(s);
}

int fv_sstore_begin(fv_sstore *s) { return exec(s, "BEGIN IMMEDIATE"); }

int fv_sstore_commit(fv_sstore *s) { return exec(s, "COMMIT"); }

void fv_sstore_rollback(fv_sstore *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int fv_sstore_checkpoint(fv_sstore *s)
{
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                       NULL, NULL);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return FV_OK;
    return rc == SQLITE_OK ? FV_OK : fail(s, rc, "checkpoint");
}

/* ---- meta ------------------------------------------------------------- */

int fv_sstore_meta_get(fv_sstore *s, const char *key, unsigned char **val,
                       size_t *len)
{
    sqlite3_stmt *st = stmt(s, ST_META_GET);
    int rc, n;

    *val = NULL;
    *len = 0;
    if (st)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if ((rc = step_row(s, st, "meta")))
        return rc;
    n = sqlite3_column_bytes(st, 0);
    *val = malloc(n ? (size_t)n : 1);
    if (!*val)
        rc = FV_ENOMEM;
    else {
        if (n)
            memcpy(*val, sqlite3_column_blob(st, 0), (size_t)n);
        *len = (size_t)n;
    }
    sqlite3_reset(st);
    return rc;
}

int fv_sstore_meta_get_fixed(fv_sstore *s, const char *key, void *val,
                             size_t len)
{
    sqlite3_stmt *st = stmt(s, ST_META_GET);
    int rc;
    if (st)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if ((rc = step_row(s, st, "meta")))
        return rc;
    if ((size_t)sqlite3_column_bytes(st, 0) != len) {
        snprintf(s->msg, sizeof s->msg, "server database: meta %s is damaged",
                 key);
        rc = FV_ECORRUPT;
    } else if (len) {
        memcpy(val, sqlite3_column_blob(st, 0), len);
    }
    sqlite3_reset(st);
    return rc;
}

int fv_sstore_meta_put(fv_sstore *s, const char *key, const void *val,
                       size_t len)
{
    sqlite3_stmt *st = stmt(s, ST_META_PUT);
    if (st) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, len ? val : "", len, SQLITE_STATIC);
    }
    return step_done(s, st, "meta");
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
    d->revoked = sqlite3_column_int(st, 4) != 0;
    d->enrolled = sqlite3_column_int64(st, 5);
    return FV_OK;
}

static int device_query(fv_sstore *s, enum stmt_id id,
                        const unsigned char key[32], fv_sstore_device *d)
{
    sqlite3_stmt *st = stmt(s, id);
    int rc;
    if (st)
        bind_key(st, 1, key);
    if ((rc = step_row(s, st, "device")))
        return rc;
    rc = row_device(st, d);
    sqlite3_reset(st);
    return rc;
}

int fv_sstore_device_get(fv_sstore *s, const unsigned char pk[32],
                         fv_sstore_device *d)
{
    return device_query(s, ST_DEV_GET, pk, d);
}

int fv_sstore_device_by_box(fv_sstore *s, const unsigned char box[32],
                            fv_sstore_device *d)
{
    return device_query(s, ST_DEV_BY_BOX, box, d);
}

int fv_sstore_device_add(fv_sstore *s, const fv_sstore_device *d)
{
    sqlite3_stmt *st;
    if (d->name_len > FV_SSTORE_NAME_MAX)
        return FV_EINVAL;
    st = stmt(s, ST_DEV_ADD);
    if (st) {
        bind_key(st, 1, d->pk);
        bind_key(st, 2, d->box);
        sqlite3_bind_text(st, 3, d->name, (int)d->name_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, d->role);
        sqlite3_bind_int(st, 5, d->revoked ? 1 : 0);
        sqlite3_bind_int64(st, 6, d->enrolled);
    }
    return step_done(s, st, "device");
}

int fv_sstore_device_revoke(fv_sstore *s, const unsigned char pk[32])
{
    sqlite3_stmt *st = stmt(s, ST_DEV_REVOKE);
    int rc;
    if (st)
        bind_key(st, 1, pk);
    if ((rc = step_done(s, st, "device")))
        return rc;
    return sqlite3_changes(s->db) ? FV_OK : FV_ENOTFOUND;
}

int fv_sstore_each_device(fv_sstore *s, size_t max, fv_sstore_device_fn fn,
                          void *payload)
{
    /* Its own statement, so the callback may use the handle. */
    sqlite3_stmt *st = NULL;
    fv_sstore_device d;
    int rc = sqlite3_prepare_v2(s->db, stmt_sql[ST_DEV_EACH], -1, &st, NULL);
    int r = FV_OK;
    if (rc != SQLITE_OK)
        return fail(s, rc, "device");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((r = row_device(st, &d)) != FV_OK || (r = fn(&d, payload)) != 0)
            break;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fail(s, rc, "device");
    sqlite3_finalize(st);
    return r;
}

/* ---- invites ---------------------------------------------------------- */

int fv_sstore_invite_add(fv_sstore *s, const unsigned char token_hash[32],
                         const char *name, size_t name_len, int role,
                         int64_t expires)
{
    sqlite3_stmt *st;
    if (name_len > FV_SSTORE_NAME_MAX)
        return FV_EINVAL;
    st = stmt(s, ST_INV_ADD);
    if (st) {
        bind_key(st, 1, token_hash);
        sqlite3_bind_text(st, 2, name, (int)name_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, role);
        sqlite3_bind_int64(st, 4, expires);
    }
    return step_done(s, st, "invite");
}

int fv_sstore_invite_get(fv_sstore *s, const unsigned char token_hash[32],
                         fv_sstore_invite *inv)
{
    sqlite3_stmt *st = stmt(s, ST_INV_GET);
    int rc;
    memset(inv, 0, sizeof *inv);
    if (st)
        bind_key(st, 1, token_hash);
    if ((rc = step_row(s, st, "invite")))
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

int fv_sstore_invite_use(fv_sstore *s, const unsigned char token_hash[32],
                         const unsigned char device[32])
{
    sqlite3_stmt *st = stmt(s, ST_INV_USE);
    int rc;
    if (st) {
        bind_key(st, 1, token_hash);
        bind_key(st, 2, device);
    }
    if ((rc = step_done(s, st, "invite")))
        return rc;
    return sqlite3_changes(s->db) == 1 ? FV_OK : FV_EINVITE;
}

/* ---- log and feeds ---------------------------------------------------- */

int fv_sstore_log_find(fv_sstore *s, const unsigned char id[32],
                       uint64_t *seq)
{
    sqlite3_stmt *st = stmt(s, ST_LOG_FIND);
    int rc;
    if (st)
        bind_key(st, 1, id);
    if ((rc = step_row(s, st, "log")))
        return rc;
    *seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return FV_OK;
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

static int head_query(fv_sstore *s, sqlite3_stmt *st, uint64_t *pos,
                      unsigned char chain[32])
{
    int rc = step_row(s, st, "head");
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

static int chain_query(fv_sstore *s, sqlite3_stmt *st, unsigned char chain[32])
{
    int rc = step_row(s, st, "chain");
    if (rc)
        return rc;
    if (!col_key(st, 0, chain))
        rc = FV_ECORRUPT;
    sqlite3_reset(st);
    return rc;
}

int fv_sstore_log_head(fv_sstore *s, uint64_t *seq, unsigned char chain[32])
{
    return head_query(s, stmt(s, ST_LOG_HEAD), seq, chain);
}

int fv_sstore_log_chain(fv_sstore *s, uint64_t seq, unsigned char chain[32])
{
    sqlite3_stmt *st = stmt(s, ST_LOG_CHAIN);
    if (seq > INT64_MAX)
        return FV_ENOTFOUND;
    if (st)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    return chain_query(s, st, chain);
}

int fv_sstore_log_add(fv_sstore *s, uint64_t seq, const unsigned char id[32],
                      const unsigned char author[32],
                      const unsigned char *bytes, size_t len,
                      const unsigned char chain[32])
{
    sqlite3_stmt *st = stmt(s, ST_LOG_ADD);
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
    return step_done(s, st, "log");
}

int fv_sstore_feed_head(fv_sstore *s, const unsigned char device[32],
                        uint64_t *fseq, unsigned char chain[32])
{
    sqlite3_stmt *st = stmt(s, ST_FEED_HEAD);
    if (st)
        bind_key(st, 1, device);
    return head_query(s, st, fseq, chain);
}

int fv_sstore_feed_chain(fv_sstore *s, const unsigned char device[32],
                         uint64_t fseq, unsigned char chain[32])
{
    sqlite3_stmt *st = stmt(s, ST_FEED_CHAIN);
    if (fseq > INT64_MAX)
        return FV_ENOTFOUND;
    if (st) {
        bind_key(st, 1, device);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)fseq);
    }
    return chain_query(s, st, chain);
}

int fv_sstore_feed_add(fv_sstore *s, const unsigned char device[32],
                       uint64_t fseq, uint64_t seq,
                       const unsigned char chain[32])
{
    sqlite3_stmt *st = stmt(s, ST_FEED_ADD);
    if (fseq > INT64_MAX || seq > INT64_MAX)
        return FV_ELIMIT;
    if (st) {
        bind_key(st, 1, device);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)fseq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
        bind_key(st, 4, chain);
    }
    return step_done(s, st, "feed");
}

int fv_sstore_read(fv_sstore *s, const unsigned char *device, uint64_t after,
                   uint64_t upto, size_t max, fv_sstore_entry_fn fn,
                   void *payload)
{
    sqlite3_stmt *st = stmt(s, device ? ST_READ_FEED : ST_READ_LOG);
    fv_sstore_entry e;
    int rc, r = FV_OK;

    if (!st)
        return fail(s, sqlite3_errcode(s->db), "read");
    if (upto > INT64_MAX)
        upto = INT64_MAX;
    if (after >= upto || max == 0)
        return FV_OK;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)upto);
    sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (sqlite3_int64)max);
    if (device)
        bind_key(st, 4, device);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 pos = sqlite3_column_int64(st, 0);
        e.bytes = sqlite3_column_blob(st, 1);
        e.len = (size_t)sqlite3_column_bytes(st, 1);
        e.chain = sqlite3_column_blob(st, 2);
        if (pos < 1 || !e.bytes || sqlite3_column_bytes(st, 2) != 32) {
            r = FV_ECORRUPT;
            snprintf(s->msg, sizeof s->msg, "server database: a log entry "
                                            "is damaged");
            break;
        }
        e.seq = (uint64_t)pos;
        if ((r = fn(&e, payload)) != 0)
            break;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fail(s, rc, "read");
    sqlite3_reset(st);
    return r;
}
