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

/* ---- the VFS ------------------------------------------------------------ */

/* Every database is opened through "fieldvault", a thin layer over the
 * default VFS. SQLite's unix VFS reports a read that failed with EIO (or
 * ERANGE, ENXIO) as SQLITE_IOERR_CORRUPTFS, which its API turns into
 * SQLITE_CORRUPT, "database disk image is malformed": to the caller a
 * failing disk would look like a tampered vault. The layer reports such a
 * read as the I/O error it is (SQLITE_IOERR_READ, so FV_EIO); corruption
 * stays what SQLite finds in bytes it did read. Everything else passes
 * through unchanged. */
#define FV_VFS_NAME "fieldvault"

typedef struct vfs_file {
    sqlite3_file base;  /* pMethods = &vfs_io, or NULL when not open */
    sqlite3_file *real; /* the default VFS's file, right after this struct */
} vfs_file;

static sqlite3_vfs *vfs_real(sqlite3_vfs *v) { return v->pAppData; }
static sqlite3_file *file_real(sqlite3_file *f) { return ((vfs_file *)f)->real; }

static int io_close(sqlite3_file *f)
{
    sqlite3_file *r = file_real(f);
    int rc = r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
    f->pMethods = NULL;
    return rc;
}

static int io_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    sqlite3_file *r = file_real(f);
    int rc = r->pMethods->xRead(r, buf, n, off);
    return rc == SQLITE_IOERR_CORRUPTFS ? SQLITE_IOERR_READ : rc;
}

static int io_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xWrite(r, buf, n, off);
}

static int io_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xTruncate(r, size);
}

static int io_sync(sqlite3_file *f, int flags)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xSync(r, flags);
}

static int io_size(sqlite3_file *f, sqlite3_int64 *size)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xFileSize(r, size);
}

static int io_lock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xLock(r, lock);
}

static int io_unlock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xUnlock(r, lock);
}

static int io_check_lock(sqlite3_file *f, int *out)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xCheckReservedLock(r, out);
}

static int io_control(sqlite3_file *f, int op, void *arg)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xFileControl(r, op, arg);
}

static int io_sector(sqlite3_file *f)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xSectorSize(r);
}

static int io_device(sqlite3_file *f)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->xDeviceCharacteristics(r);
}

static int io_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
                      void volatile **p)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->iVersion >= 2
               ? r->pMethods->xShmMap(r, pg, pgsz, extend, p)
               : SQLITE_IOERR_SHMMAP;
}

static int io_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->iVersion >= 2 ? r->pMethods->xShmLock(r, off, n, flags)
                                      : SQLITE_IOERR_SHMLOCK;
}

static void io_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = file_real(f);
    if (r->pMethods->iVersion >= 2)
        r->pMethods->xShmBarrier(r);
}

static int io_shm_unmap(sqlite3_file *f, int del)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->iVersion >= 2 ? r->pMethods->xShmUnmap(r, del)
                                      : SQLITE_OK;
}

static int io_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
    sqlite3_file *r = file_real(f);
    if (r->pMethods->iVersion >= 3)
        return r->pMethods->xFetch(r, off, n, p);
    *p = NULL; /* no mapping: SQLite reads instead */
    return SQLITE_OK;
}

static int io_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = file_real(f);
    return r->pMethods->iVersion >= 3 ? r->pMethods->xUnfetch(r, off, p)
                                      : SQLITE_OK;
}

static const sqlite3_io_methods vfs_io = {
    3,           io_close,     io_read,        io_write,     io_truncate,
    io_sync,     io_size,      io_lock,        io_unlock,    io_check_lock,
    io_control,  io_sector,    io_device,      io_shm_map,   io_shm_lock,
    io_shm_barrier, io_shm_unmap, io_fetch,    io_unfetch,
};

static int vfs_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f,
                    int flags, int *out)
{
    vfs_file *w = (vfs_file *)f;
    sqlite3_vfs *rv = vfs_real(v);
    int rc;
    w->real = (sqlite3_file *)(w + 1);
    w->real->pMethods = NULL;
    rc = rv->xOpen(rv, name, w->real, flags, out);
    /* SQLite closes a file whose pMethods is set even when the open
     * failed: ours is set exactly when the real one is. */
    w->base.pMethods = w->real->pMethods ? &vfs_io : NULL;
    return rc;
}

static int vfs_delete(sqlite3_vfs *v, const char *name, int dirsync)
{
    return vfs_real(v)->xDelete(vfs_real(v), name, dirsync);
}

static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    return vfs_real(v)->xAccess(vfs_real(v), name, flags, out);
}

static int vfs_fullpath(sqlite3_vfs *v, const char *name, int n, char *out)
{
    return vfs_real(v)->xFullPathname(vfs_real(v), name, n, out);
}

static void *vfs_dlopen(sqlite3_vfs *v, const char *name)
{
    return vfs_real(v)->xDlOpen(vfs_real(v), name);
}

static void vfs_dlerror(sqlite3_vfs *v, int n, char *out)
{
    vfs_real(v)->xDlError(vfs_real(v), n, out);
}

static void (*vfs_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    return vfs_real(v)->xDlSym(vfs_real(v), h, sym);
}

static void vfs_dlclose(sqlite3_vfs *v, void *h)
{
    vfs_real(v)->xDlClose(vfs_real(v), h);
}

static int vfs_random(sqlite3_vfs *v, int n, char *out)
{
    return vfs_real(v)->xRandomness(vfs_real(v), n, out);
}

static int vfs_sleep(sqlite3_vfs *v, int us)
{
    return vfs_real(v)->xSleep(vfs_real(v), us);
}

static int vfs_time(sqlite3_vfs *v, double *out)
{
    return vfs_real(v)->xCurrentTime(vfs_real(v), out);
}

static int vfs_last_error(sqlite3_vfs *v, int n, char *out)
{
    return vfs_real(v)->xGetLastError(vfs_real(v), n, out);
}

static int vfs_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    sqlite3_vfs *rv = vfs_real(v);
    double d;
    int rc;
    if (rv->iVersion >= 2 && rv->xCurrentTimeInt64)
        return rv->xCurrentTimeInt64(rv, out);
    rc = rv->xCurrentTime(rv, &d);
    *out = (sqlite3_int64)(d * 86400000.0);
    return rc;
}

static sqlite3_vfs fv_vfs = {
    2, 0, 0, NULL, FV_VFS_NAME, NULL,
    vfs_open, vfs_delete, vfs_access, vfs_fullpath,
    vfs_dlopen, vfs_dlerror, vfs_dlsym, vfs_dlclose,
    vfs_random, vfs_sleep, vfs_time, vfs_last_error, vfs_time64,
    NULL, NULL, NULL,
};

/* Registers the layer once per process (not as the default: other users
 * of SQLite in the process keep theirs). Returns a SQLite code. */
static int vfs_register(void)
{
    static int registered;
    sqlite3_mutex *m;
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK)
        return rc;
    m = sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_APP1);
    sqlite3_mutex_enter(m);
    if (!registered) {
        sqlite3_vfs *rv = sqlite3_vfs_find(NULL);
        if (!rv) {
            rc = SQLITE_ERROR;
        } else {
            fv_vfs.szOsFile = (int)sizeof(vfs_file) + rv->szOsFile;
            fv_vfs.mxPathname = rv->mxPathname;
            fv_vfs.pAppData = rv;
            if ((rc = sqlite3_vfs_register(&fv_vfs, 0)) == SQLITE_OK)
                registered = 1;
        }
    }
    sqlite3_mutex_leave(m);
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

/* Upgrades the file from schema `version` to the current one in one
 * transaction. The version is read again under the write lock: another
 * process may have upgraded the file meanwhile. */
static int migrate(fv_db *d, int version)
{
    const fv_db_schema *sc = d->schema;
    char stamp[48];
    int rc;

    if ((rc = fv_db_exec(d, durable_sql)) || (rc = fv_db_begin(d)))
        return rc;
    rc = fv_db_pragma_int(d, "PRAGMA user_version", &version);
    if (!rc && version > sc->user_version)
        rc = fv_db_error(d, FV_EVERSION, "schema %d is newer", version);
    for (; !rc && version < sc->user_version; version++) {
        const char *step = version >= 1 ? sc->migrations[version - 1] : NULL;
        if (!step)
            rc = fv_db_error(d, FV_ECORRUPT, "schema %d is unknown", version);
        /* A step this file's tables cannot take (SQLITE_ERROR) says the
         * file is not what its version claims; I/O and memory failures
         * stay what they are. */
        else if ((rc = fv_db_exec(d, step)) &&
                 (sqlite3_errcode(d->db) & 0xff) == SQLITE_ERROR)
            rc = fv_db_error(d, FV_ECORRUPT,
                             "schema %d cannot be upgraded", version);
    }
    snprintf(stamp, sizeof stamp, "PRAGMA user_version = %d", sc->user_version);
    if (!rc && !(rc = fv_db_exec(d, stamp)))
        rc = fv_db_commit(d);
    if (rc)
        fv_db_rollback(d);
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
    if (version < sc->user_version) {
        if (version < 1 || !sc->migrations)
            return fv_db_error(d, FV_ECORRUPT, "schema %d is unknown", version);
        if ((rc = migrate(d, version)))
            return rc;
    }
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
    if ((rc = vfs_register()) == SQLITE_OK)
        rc = sqlite3_open_v2(path, &d->db, flags, FV_VFS_NAME);
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
