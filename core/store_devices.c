/* store_devices.c - the vault's tables of who may speak (store.h): the
 * devices the organisation certified and the quarantine. Apart from
 * store.c so that this part of the schema stays in one place. */
#include <stdlib.h>
#include <string.h>

#include "fieldvault.h"
#include "store.h"
#include "store_db.h"

/* fv_store_device_get is in store.c, with the cached statements. */

int fv_store_device_put(fv_store *s, const fv_store_device *d)
{
    static const char sql[] =
        "INSERT OR REPLACE INTO device(pk, role, enrolled, revoked, cert) "
        "VALUES (?1, ?2, ?3, ?4, ?5)";
    fv_db *db = fv_store_db(s);
    sqlite3_stmt *st;
    int rc = fv_db_prepare(db, sql, &st, "device");
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, d->pk, 32, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, d->role);
    sqlite3_bind_int64(st, 3, d->enrolled);
    if (d->has_revoked)
        sqlite3_bind_int64(st, 4, d->revoked);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_blob(st, 5, d->cert, (int)d->cert_len, SQLITE_STATIC);
    rc = fv_db_step_done(db, st, "device");
    sqlite3_finalize(st);
    return rc;
}

int fv_store_device_certs(fv_store *s, fv_store_blob_fn fn, void *payload)
{
    static const char sql[] = "SELECT cert FROM device ORDER BY pk";
    fv_db *db = fv_store_db(s);
    sqlite3_stmt *st;
    int rc = fv_db_prepare(db, sql, &st, "devices"), r = FV_OK;
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = fn(sqlite3_column_blob(st, 0),
                    (size_t)sqlite3_column_bytes(st, 0), payload)) != 0)
            break;
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fv_db_fail(db, rc, "devices");
    sqlite3_finalize(st);
    return r;
}

int fv_store_quarantine_put(fv_store *s, const fv_store_quarantined *q)
{
    static const char sql[] =
        "INSERT INTO quarantine(id, author, kind, why, courier, arrived, bytes) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET "
        "why = excluded.why";
    fv_db *db = fv_store_db(s);
    sqlite3_stmt *st;
    int rc = fv_db_prepare(db, sql, &st, "quarantine");
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, q->id, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, q->author, 32, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, q->kind);
    sqlite3_bind_int(st, 4, q->why);
    sqlite3_bind_int(st, 5, q->courier);
    sqlite3_bind_int64(st, 6, q->arrived);
    sqlite3_bind_blob(st, 7, q->bytes, (int)q->len, SQLITE_STATIC);
    rc = fv_db_step_done(db, st, "quarantine");
    sqlite3_finalize(st);
    return rc;
}

int fv_store_quarantine_del(fv_store *s, const unsigned char id[32])
{
    static const char sql[] = "DELETE FROM quarantine WHERE id = ?1";
    fv_db *db = fv_store_db(s);
    sqlite3_stmt *st;
    int rc = fv_db_prepare(db, sql, &st, "quarantine");
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, id, 32, SQLITE_STATIC);
    rc = fv_db_step_done(db, st, "quarantine");
    sqlite3_finalize(st);
    return rc;
}

int fv_store_quarantine_each(fv_store *s, const unsigned char *author,
                             fv_store_quarantine_fn fn, void *payload)
{
    static const char sql[] =
        "SELECT id, author, kind, why, courier, arrived, bytes FROM quarantine "
        "WHERE ?1 IS NULL OR author = ?1 ORDER BY arrived, id";
    fv_db *db = fv_store_db(s);
    sqlite3_stmt *st;
    int rc = fv_db_prepare(db, sql, &st, "quarantine"), r = FV_OK;
    if (rc)
        return rc;
    if (author)
        sqlite3_bind_blob(st, 1, author, 32, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fv_store_quarantined q;
        if (sqlite3_column_bytes(st, 0) != 32 ||
            sqlite3_column_bytes(st, 1) != 32) {
            r = fv_db_error(db, FV_ECORRUPT, "quarantine: a damaged row");
            break;
        }
        q.id = sqlite3_column_blob(st, 0);
        q.author = sqlite3_column_blob(st, 1);
        q.kind = sqlite3_column_int(st, 2);
        q.why = sqlite3_column_int(st, 3);
        q.courier = sqlite3_column_int(st, 4);
        q.arrived = sqlite3_column_int64(st, 5);
        q.bytes = sqlite3_column_blob(st, 6);
        q.len = (size_t)sqlite3_column_bytes(st, 6);
        if ((r = fn(&q, payload)) != 0)
            break;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fv_db_fail(db, rc, "quarantine");
    sqlite3_finalize(st);
    return r;
}
