/* store_db.c - SQLite plumbing shared by the store module (see store_db.h). */
#include "store_db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fieldvault.h"

static int map_rc(const fv_db *d, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return FV_OK;
    case SQLITE_NOMEM: return FV_ENOMEM;
    case SQLITE_FULL: return FV_ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return FV_EBUSY;
    case SQLITE_CONSTRAINT: return d->schema->constraint_rc;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_SCHEMA:
    case SQLITE_MISMATCH:
        return FV_ECORRUPT;
    case SQLITE_IOERR: {
        /* A short read means the file was cut: that is corruption. A write
         * refused for want of space (a quota, a file size limit) is a full
         * disk, as SQLITE_FULL is, not an I/O fault. */
        int e = d->db ? sqlite3_system_errno(d->db) : 0;
        if (rc == SQLITE_IOERR_SHORT_READ)
            return FV_ECORRUPT;
        return e == ENOSPC || e == EDQUOT || e == EFBIG ? FV_ENOSPC : FV_EIO;
    }
    default: return FV_EIO;
    }
}

int fv_db_fail(fv_db *d, int rc, const char *what)
{
    int code = map_rc(d, rc);
    snprintf(d->msg, sizeof d->msg, "%s: %s: %s", d->schema->label, what,
             sqlite3_errstr(rc));
    return code == FV_OK ? FV_EIO : code;
}

int fv_db_error(fv_db *d, int rc, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(d->msg, sizeof d->msg, "%s: ", d->schema->label);
    if (n > 0 && (size_t)n < sizeof d->msg) {
        va_start(ap, fmt);
        vsnprintf(d->msg + n, sizeof d->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static sqlite3_stmt *cached(fv_db *d, sqlite3_stmt **st, const char *sql)
{
    if (!*st && sqlite3_prepare_v3(d->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                   st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(*st);
    sqlite3_clear_bindings(*st);
    return *st;
}

sqlite3_stmt *fv_db_stmt(fv_db *d, int id)
{
    return cached(d, &d->st[id], d->schema->stmt_sql[id]);
}

/* Every kind of database has the meta table (store_db.h). */
enum { META_GET, META_PUT };
static const char *const meta_sql[2] = {
    [META_GET] = "SELECT v FROM meta WHERE k = ?1",
    [META_PUT] = "INSERT OR REPLACE INTO meta(k, v) VALUES (?1, ?2)",
};

static sqlite3_stmt *meta_stmt(fv_db *d, int id)
{
    return cached(d, &d->meta[id], meta_sql[id]);
}

int fv_db_prepare(fv_db *d, const char *sql, sqlite3_stmt **st,
                  const char *what)
{
    int rc = sqlite3_prepare_v2(d->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? FV_OK : fv_db_fail(d, rc, what);
}

int fv_db_exec(fv_db *d, const char *sql)
{
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? FV_OK : fv_db_fail(d, rc, "statement");
}

int fv_db_step_done(fv_db *d, sqlite3_stmt *st, const char *what)
{
    int rc;
    if (!st)
        return fv_db_fail(d, sqlite3_errcode(d->db), what);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? FV_OK : fv_db_fail(d, rc, what);
}

int fv_db_step_row(fv_db *d, sqlite3_stmt *st, const char *what)
{
    int rc;
    if (!st)
        return fv_db_fail(d, sqlite3_errcode(d->db), what);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return FV_OK;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? FV_ENOTFOUND : fv_db_fail(d, rc, what);
}

int fv_db_pragma_int(fv_db *d, const char *sql, int *out)
{
    sqlite3_stmt *st;
    int rc = fv_db_prepare(d, sql, &st, "pragma");
    if (rc == FV_OK && (rc = fv_db_step_row(d, st, "pragma")) == FV_OK)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* ---- open and close --------------------------------------------------- */

/* WAL + synchronous FULL: every commit is durable when it returns (so the
 * server only ever sends a receipt for envelopes that are on disk). */
static const char durable_sql[] =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;";

static int create_new(fv_db *d, const char *path)
{
    const fv_db_schema *sc = d->schema;
    char stamp[96];
    int rc;

    /* Before anything is written: the WAL and shared-memory files take the
     * database file's mode when SQLite creates them. */
    chmod(path, 0600);
    snprintf(stamp, sizeof stamp,
             "PRAGMA user_version = %d; PRAGMA application_id = %d; COMMIT",
             sc->user_version, sc->application_id);
    if (!(rc = fv_db_exec(d, durable_sql)) && !(rc = fv_db_exec(d, "BEGIN")) &&
        !(rc = fv_db_exec(d, sc->create_sql)))
        rc = fv_db_exec(d, stamp);
    return rc;
}

static int open_existing(fv_db *d)
{
    const fv_db_schema *sc = d->schema;
    int rc, appid = 0, version = 0;

    /* Reading the header is the first touch of the file: a file that is
     * not a database, or cut short, fails here. */
    if ((rc = fv_db_pragma_int(d, "PRAGMA application_id", &appid)) ||
        (rc = fv_db_pragma_int(d, "PRAGMA user_version", &version)))
        return rc;
    /* The application_id tells a vault's database from a server's. */
    if (sc->application_id && appid != sc->application_id)
        return fv_db_error(d, FV_ECORRUPT, "application_id %#x, not %#x",
                           (unsigned)appid, (unsigned)sc->application_id);
    if (version > sc->user_version)
        return fv_db_error(d, FV_EVERSION, "schema %d is newer", version);
    if (version != sc->user_version)
        return fv_db_error(d, FV_ECORRUPT, "schema %d is unknown", version);
    if ((rc = fv_db_exec(d, durable_sql)))
        return rc;
    /* Every statement must compile against this file's schema: a database
     * from another build fails here, not halfway through a write. */
    if (sc->check_stmts) {
        int ok = meta_stmt(d, META_GET) && meta_stmt(d, META_PUT);
        for (int i = 0; ok && i < sc->nstmts; i++)
            ok = fv_db_stmt(d, i) != NULL;
        if (!ok) {
            /* Only a statement the schema cannot compile (SQLITE_ERROR)
             * says the file is foreign; running out of memory or an I/O
             * error while compiling is that error, not a damaged vault. */
            int e = sqlite3_errcode(d->db);
            if ((e & 0xff) != SQLITE_ERROR)
                return fv_db_fail(d, e, "prepare");
            return fv_db_error(d, FV_ECORRUPT, "schema not recognised");
        }
    }
    return FV_OK;
}

int fv_db_open(fv_db *d, const char *path, int create,
               const fv_db_schema *schema)
{
    struct stat sb;
    int rc, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

    memset(d, 0, sizeof *d);
    d->schema = schema;
    if (stat(path, &sb) == 0) {
        if (create)
            return FV_EEXIST;
        if (!S_ISREG(sb.st_mode))
            return FV_ECORRUPT;
    } else if (!create) {
        return schema->missing_rc;
    }
    if (create)
        flags |= SQLITE_OPEN_CREATE | SQLITE_OPEN_EXCLUSIVE;
    rc = sqlite3_open_v2(path, &d->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = fv_db_fail(d, rc, "open");
    } else {
        sqlite3_extended_result_codes(d->db, 1);
        sqlite3_busy_timeout(d->db, 10000);
        rc = fv_db_exec(d, "PRAGMA foreign_keys = OFF;"
                           "PRAGMA trusted_schema = OFF;");
        if (!rc && schema->pragmas)
            rc = fv_db_exec(d, schema->pragmas);
        if (!rc)
            rc = create ? create_new(d, path) : open_existing(d);
    }
    if (rc)
        fv_db_close(d);
    return rc;
}

void fv_db_close(fv_db *d)
{
    for (int i = 0; i < FV_DB_STMTS_MAX; i++)
        sqlite3_finalize(d->st[i]);
    for (int i = 0; i < 2; i++)
        sqlite3_finalize(d->meta[i]);
    if (d->db) {
        /* Leave no WAL behind: a vault's may hold freed pages of deleted
         * data. */
        sqlite3_wal_checkpoint_v2(d->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                  NULL, NULL);
        sqlite3_close_v2(d->db);
    }
    memset(d, 0, sizeof *d);
}

/* ---- transactions ----------------------------------------------------- */

int fv_db_begin(fv_db *d) { return fv_db_exec(d, "BEGIN IMMEDIATE"); }

int fv_db_commit(fv_db *d) { return fv_db_exec(d, "COMMIT"); }

void fv_db_rollback(fv_db *d)
{
    if (!sqlite3_get_autocommit(d->db))
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
}

int fv_db_checkpoint(fv_db *d)
{
    int rc = sqlite3_wal_checkpoint_v2(d->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                       NULL, NULL);
    /* Another reader may hold the WAL: the next close checkpoints again. */
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return FV_OK;
    return rc == SQLITE_OK ? FV_OK : fv_db_fail(d, rc, "checkpoint");
}

/* ---- meta ------------------------------------------------------------- */

int fv_db_meta_get(fv_db *d, const char *key, unsigned char **val,
                   size_t *len)
{
    sqlite3_stmt *st = meta_stmt(d, META_GET);
    int rc, n;

    *val = NULL;
    *len = 0;
    if (st)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if ((rc = fv_db_step_row(d, st, "meta")))
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

int fv_db_meta_get_fixed(fv_db *d, const char *key, void *val, size_t len)
{
    sqlite3_stmt *st = meta_stmt(d, META_GET);
    int rc;
    if (st)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if ((rc = fv_db_step_row(d, st, "meta")))
        return rc;
    if ((size_t)sqlite3_column_bytes(st, 0) != len)
        rc = fv_db_error(d, FV_ECORRUPT, "meta %s is damaged", key);
    else if (len)
        memcpy(val, sqlite3_column_blob(st, 0), len);
    sqlite3_reset(st);
    return rc;
}

int fv_db_meta_put(fv_db *d, const char *key, const void *val, size_t len)
{
    sqlite3_stmt *st = meta_stmt(d, META_PUT);
    if (st) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, len ? val : "", len, SQLITE_STATIC);
    }
    return fv_db_step_done(d, st, "meta");
}
