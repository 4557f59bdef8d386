/* store_pg_migrate.c - an embedded server store copied into PostgreSQL
 * (fv_sstore_pg_import_sqlite, store_pg.h; `fieldvault server migrate`,
 * `server restore --store`), and a PostgreSQL store copied out as an
 * embedded one (fv_sstore_pg_export_sqlite; `server backup --store`). */
#include "store_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "crypto.h"
#include "fieldvault.h"
#include "fileio.h"
#include "store_server.h"

PGconn *fv_sstore_pg_conn(fv_sstore *base);

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define MAXC 6

/* One table: what to read from SQLite, where it goes in PostgreSQL, and
 * each column's kind: 'b' bytes (NULL stays NULL), 'i' integer, 't' text,
 * 'n' a name (TEXT in SQLite, bytea in PostgreSQL). The columns are named
 * alike in both, so the same lists copy the other way (export). */
struct table {
    const char *name, *select, *insert, *kinds;
};

static const struct table tables[] = {
    {"meta", "SELECT k, v FROM meta", "INSERT INTO meta(k, v) VALUES ($1, $2) "
     "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", "tb"},
    {"device", "SELECT pk, box, name, role, revoked, enrolled FROM device",
     "INSERT INTO device(pk, box, name, role, revoked, enrolled) "
     "VALUES ($1, $2, $3, $4, $5, $6)", "bbniii"},
    {"invite", "SELECT token_hash, name, role, expires, used, device "
     "FROM invite", "INSERT INTO invite(token_hash, name, role, expires, "
     "used, device) VALUES ($1, $2, $3, $4, $5, $6)", "bniiib"},
    {"log", "SELECT seq, id, author, bytes, chain FROM log ORDER BY seq",
     "INSERT INTO log(seq, id, author, bytes, chain) "
     "VALUES ($1, $2, $3, $4, $5)", "ibbbb"},
    {"feed", "SELECT device, fseq, seq, chain FROM feed",
     "INSERT INTO feed(device, fseq, seq, chain) VALUES ($1, $2, $3, $4)",
     "biib"},
    {"chunkref", "SELECT hash, seq FROM chunkref",
     "INSERT INTO chunkref(hash, seq) VALUES ($1, $2)", "bi"},
    {"logrec", "SELECT seq, record FROM logrec",
     "INSERT INTO logrec(seq, record) VALUES ($1, $2)", "ib"},
    {"retracted", "SELECT record, seq, id FROM retracted",
     "INSERT INTO retracted(record, seq, id) VALUES ($1, $2, $3)", "bib"},
};

struct mig {
    sqlite3 *db;
    PGconn *pg;
    char *chunk_dir;
    unsigned char *buf;
    size_t cap;
};

/* Runs one statement; FV_OK or the code for its failure. */
static int pg_exec(PGconn *pg, const char *sql, int n, const Oid *types,
                   const char *const *vals, const int *lens, const int *fmts,
                   PGresult **out)
{
    PGresult *r = PQexecParams(pg, sql, n, types, vals, lens, fmts, 1);
    ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = FV_OK;
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        rc = PQstatus(pg) != CONNECTION_OK ? FV_EDATABASE
             : st && strcmp(st, "23505") == 0 ? FV_ECORRUPT /* duplicate */
                                               : FV_EIO;
    }
    if (rc == FV_OK && out)
        *out = r;
    else
        PQclear(r);
    return rc;
}

static void put_int(unsigned char b[8], int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int k = 7; k >= 0; k--) {
        b[k] = (unsigned char)u;
        u >>= 8;
    }
}

static int copy_table(struct mig *m, const struct table *t, uint64_t *rows)
{
    sqlite3_stmt *st = NULL;
    int n = (int)strlen(t->kinds), rc = FV_OK, s;
    Oid types[MAXC];
    int fmts[MAXC];
    unsigned char ints[MAXC][8];

    *rows = 0;
    for (int i = 0; i < n; i++) {
        types[i] = t->kinds[i] == 'i' ? OID_INT8
                   : t->kinds[i] == 't' ? OID_TEXT : OID_BYTEA;
        fmts[i] = 1;
    }
    if (sqlite3_prepare_v2(m->db, t->select, -1, &st, NULL) != SQLITE_OK) {
        /* logrec and retracted come with a later schema: none, nothing */
        return strcmp(t->name, "logrec") == 0 ||
                       strcmp(t->name, "retracted") == 0
                   ? FV_OK
                   : FV_ECORRUPT;
    }
    while (rc == FV_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *vals[MAXC];
        int lens[MAXC];
        for (int i = 0; i < n; i++) {
            if (t->kinds[i] == 'i') {
                put_int(ints[i], sqlite3_column_int64(st, i));
                vals[i] = (const char *)ints[i];
                lens[i] = 8;
            } else if (sqlite3_column_type(st, i) == SQLITE_NULL) {
                vals[i] = NULL;
                lens[i] = 0;
            } else {
                const void *b = sqlite3_column_blob(st, i);
                lens[i] = sqlite3_column_bytes(st, i);
                vals[i] = b ? (const char *)b : "";
            }
        }
        rc = pg_exec(m->pg, t->insert, n, types, vals, lens, fmts, NULL);
        (*rows)++;
    }
    if (rc == FV_OK && s != SQLITE_DONE)
        rc = FV_ECORRUPT;
    sqlite3_finalize(st);
    return rc;
}

/* Reads len bytes at off of pack `pack` into m->buf: FV_OK, or
 * FV_ENOTFOUND when they are not all there. */
static int pack_read(struct mig *m, int64_t pack, int64_t off, int64_t len)
{
    char path[4096];
    size_t got = 0;
    int fd;
    if ((size_t)len > m->cap) {
        unsigned char *p = realloc(m->buf, (size_t)len);
        if (!p)
            return FV_ENOMEM;
        m->buf = p;
        m->cap = (size_t)len;
    }
    snprintf(path, sizeof path, "%s/pack-%06u", m->chunk_dir, (unsigned)pack);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return errno == ENOENT ? FV_ENOTFOUND : FV_EIO;
    while (got < (size_t)len) {
        ssize_t r = pread(fd, m->buf + got, (size_t)len - got,
                          (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return got == (size_t)len ? FV_OK : FV_ENOTFOUND;
}

/* Each chunk stored as `pg` keeps chunks (a row of chunkdata, or a file
 * of its chunk directory), through the store's own interface, and indexed
 * in the open transaction; durable before the caller's commit. */
static int copy_chunks(struct mig *m, fv_sstore *pg, fv_sstore_migrated *out)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_OK, s;
    if (sqlite3_prepare_v2(m->db, "SELECT hash, pack, off, len FROM chunk",
                           -1, &st, NULL) != SQLITE_OK)
        return FV_ECORRUPT;
    while (rc == FV_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned char hash[32], got[32];
        int64_t pack = sqlite3_column_int64(st, 1);
        int64_t off = sqlite3_column_int64(st, 2);
        int64_t len = sqlite3_column_int64(st, 3);
        fv_sstore_chunkloc loc;
        if (sqlite3_column_bytes(st, 0) != 32 || pack < 1 ||
            pack > UINT32_MAX || off < 0 || len < 1 || len > (1 << 24)) {
            rc = FV_ECORRUPT;
            break;
        }
        memcpy(hash, sqlite3_column_blob(st, 0), 32);
        rc = pack_read(m, pack, off, len);
        if (rc == FV_OK) {
            fv_hash(got, m->buf, (size_t)len);
            if (!fv_ct_equal(got, hash, 32))
                rc = FV_ENOTFOUND;
        }
        if (rc == FV_ENOTFOUND) {
            /* Bytes an interrupted retraction destroyed (or a pack gone):
             * readers would drop them anyway. */
            out->skipped++;
            rc = FV_OK;
            continue;
        }
        if (rc == FV_OK &&
            (rc = fv_sstore_chunk_append(pg, m->buf, (size_t)len, &loc)) ==
                FV_OK &&
            (rc = fv_sstore_chunk_add(pg, hash, &loc)) == FV_OK)
            out->chunks++;
    }
    if (rc == FV_OK && s != SQLITE_DONE)
        rc = FV_ECORRUPT;
    sqlite3_finalize(st);
    if (rc == FV_OK)
        rc = fv_sstore_chunk_sync(pg);
    return rc;
}

/* FV_OK if db is a FieldVault server database of a version this build
 * reads (store_server.c: application_id 'FVSV', user_version 1). */
static int check_source(sqlite3 *db)
{
    sqlite3_stmt *st;
    int64_t app = 0, ver = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            app = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            ver = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (app != 0x46565356)
        return FV_ECORRUPT;
    return ver == 1 ? FV_OK : FV_EVERSION;
}

int fv_sstore_pg_import_sqlite(fv_sstore *pg, const char *db_path,
                               fv_sstore_migrated *stats)
{
    struct mig m;
    fv_sstore_migrated out;
    int rc;
    char *dir = NULL;

    memset(&m, 0, sizeof m);
    memset(&out, 0, sizeof out);
    if (stats)
        *stats = out;
    if (!(m.pg = fv_sstore_pg_conn(pg)))
        return FV_EINVAL;
    if (access(db_path, F_OK) != 0)
        return FV_ENOTFOUND;
    if (sqlite3_open_v2(db_path, &m.db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK) {
        sqlite3_close(m.db);
        return FV_EIO;
    }
    sqlite3_busy_timeout(m.db, 10000);
    if (!(dir = fv_path_dir(db_path)) ||
        !(m.chunk_dir = fv_path_join(dir, "chunks"))) {
        rc = FV_ENOMEM;
        goto done;
    }
    if ((rc = check_source(m.db)))
        goto done;
    /* The caller's transaction (FV_SSTORE_PG_CREATE_TX) holds the schema
     * made for this: all of it commits, or nothing. */
    if (PQtransactionStatus(m.pg) != PQTRANS_INTRANS) {
        rc = FV_EINVAL;
        goto done;
    }
    /* One read snapshot of the source. */
    if (sqlite3_exec(m.db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        rc = FV_EIO;
        goto done;
    }
    for (size_t i = 0; rc == FV_OK && i < sizeof tables / sizeof *tables;
         i++) {
        uint64_t rows = 0;
        rc = copy_table(&m, &tables[i], &rows);
        if (strcmp(tables[i].name, "device") == 0)
            out.devices = rows;
        else if (strcmp(tables[i].name, "log") == 0)
            out.envelopes = rows;
    }
    if (rc == FV_OK)
        rc = copy_chunks(&m, pg, &out);
    sqlite3_exec(m.db, "ROLLBACK", NULL, NULL, NULL);
done:
    if (rc == FV_OK && stats)
        *stats = out;
    if (m.buf)
        fv_wipe(m.buf, m.cap);
    free(m.buf);
    free(m.chunk_dir);
    free(dir);
    sqlite3_close(m.db);
    return rc;
}

/* ---- PostgreSQL to an embedded store (backups) ------------------------ */

#define FETCH_ROWS "256"

/* The server's files the store keeps in meta (server_stage.h): written as
 * files of the directory, not rows of its database; and what only a
 * PostgreSQL store has (its chunk directory), left out. */
static const struct {
    const char *key, *file;
} meta_files[] = {
    {"tls_key", "tls.key"},         {"tls_crt", "tls.crt"},
    {"receipt_key", "receipt.key"}, {"chunk_dir", NULL},
    {"chunk_dir_id", NULL},
};

static int64_t get_int(const char *p)
{
    uint64_t u = 0;
    for (int k = 0; k < 8; k++)
        u = u << 8 | (unsigned char)p[k];
    return (int64_t)u;
}

/* A meta row that is one of meta_files: its file written (2), or nothing
 * for a row left out (1); 0 if it goes into the database. */
static int meta_file(const char *dir, const PGresult *r, int row, int *rc)
{
    const char *k = PQgetvalue(r, row, 0);
    int kl = PQgetlength(r, row, 0);
    for (size_t i = 0; i < sizeof meta_files / sizeof *meta_files; i++) {
        char *path;
        int fd;
        if ((size_t)kl != strlen(meta_files[i].key) ||
            memcmp(k, meta_files[i].key, (size_t)kl) != 0)
            continue;
        if (!meta_files[i].file)
            return 1;
        if (!(path = fv_path_join(dir, meta_files[i].file))) {
            *rc = FV_ENOMEM;
            return 1;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
        free(path);
        if (fd < 0) {
            *rc = fv_errno_rc(errno);
            return 1;
        }
        *rc = fv_write_all(fd, PQgetvalue(r, row, 1),
                           (size_t)PQgetlength(r, row, 1));
        if (*rc == FV_OK && fsync(fd) != 0)
            *rc = fv_errno_rc(errno);
        close(fd);
        return 2;
    }
    return 0;
}

/* One table, read through a cursor (a few hundred rows in memory at a
 * time), into the SQLite database db. */
static int export_table(PGconn *pg, sqlite3 *db, const char *dir,
                        const struct table *t, uint64_t *rows)
{
    sqlite3_stmt *ins = NULL;
    char sql[256];
    int n = (int)strlen(t->kinds), rc, nfiles = 0;

    *rows = 0;
    snprintf(sql, sizeof sql, "DECLARE fv_export NO SCROLL CURSOR FOR %s",
             t->select);
    if ((rc = pg_exec(pg, sql, 0, NULL, NULL, NULL, NULL, NULL)))
        return rc;
    if (sqlite3_prepare_v2(db, t->insert, -1, &ins, NULL) != SQLITE_OK)
        rc = FV_EIO;
    while (rc == FV_OK) {
        PGresult *r = NULL;
        int got;
        if ((rc = pg_exec(pg, "FETCH " FETCH_ROWS " FROM fv_export", 0, NULL,
                          NULL, NULL, NULL, &r)))
            break;
        got = PQntuples(r);
        if (PQnfields(r) != n)
            rc = FV_ECORRUPT;
        for (int row = 0; rc == FV_OK && row < got; row++) {
            int mf = strcmp(t->name, "meta") == 0
                         ? meta_file(dir, r, row, &rc) : 0;
            nfiles += mf == 2;
            if (mf)
                continue;
            sqlite3_reset(ins);
            for (int i = 0; rc == FV_OK && i < n; i++) {
                const char *v = PQgetvalue(r, row, i);
                int len = PQgetlength(r, row, i), b;
                if (PQgetisnull(r, row, i))
                    b = sqlite3_bind_null(ins, i + 1);
                else if (t->kinds[i] == 'i')
                    b = len == 8 ? sqlite3_bind_int64(ins, i + 1, get_int(v))
                                 : SQLITE_MISMATCH;
                else if (t->kinds[i] == 'b')
                    b = sqlite3_bind_blob(ins, i + 1, v, len, SQLITE_STATIC);
                else
                    b = sqlite3_bind_text(ins, i + 1, v, len, SQLITE_STATIC);
                if (b != SQLITE_OK)
                    rc = b == SQLITE_MISMATCH ? FV_ECORRUPT : FV_EIO;
            }
            if (rc == FV_OK) {
                int s = sqlite3_step(ins);
                rc = s == SQLITE_DONE         ? FV_OK
                     : s == SQLITE_FULL       ? FV_ENOSPC
                     : s == SQLITE_CONSTRAINT ? FV_ECORRUPT
                                              : FV_EIO;
                (*rows)++;
            }
        }
        PQclear(r);
        if (got == 0)
            break;
    }
    sqlite3_finalize(ins);
    if (rc == FV_OK)
        rc = pg_exec(pg, "CLOSE fv_export", 0, NULL, NULL, NULL, NULL, NULL);
    if (rc == FV_OK && strcmp(t->name, "meta") == 0 && nfiles < 3)
        rc = FV_ECORRUPT; /* a store without its keys: no server */
    return rc;
}

/* Every chunk the snapshot indexes, read as `pg` keeps it, appended to
 * the embedded store `lite`'s packs and indexed there. */
static int export_chunks(fv_sstore *pg, fv_sstore *lite, unsigned char *buf,
                         fv_sstore_migrated *out)
{
    PGconn *conn = fv_sstore_pg_conn(pg);
    int rc;

    if ((rc = pg_exec(conn, "DECLARE fv_export NO SCROLL CURSOR FOR "
                            "SELECT hash, data_id, len FROM chunk "
                            "ORDER BY data_id", 0, NULL, NULL, NULL, NULL,
                      NULL)) ||
        (rc = fv_sstore_begin(lite)))
        return rc;
    while (rc == FV_OK) {
        PGresult *r = NULL;
        int got;
        if ((rc = pg_exec(conn, "FETCH " FETCH_ROWS " FROM fv_export", 0,
                          NULL, NULL, NULL, NULL, &r)))
            break;
        got = PQntuples(r);
        for (int row = 0; rc == FV_OK && row < got; row++) {
            fv_sstore_chunkloc from = {0}, to;
            unsigned char hash[32], h[32];
            int64_t id, len;
            if (PQgetlength(r, row, 0) != 32 || PQgetlength(r, row, 1) != 8 ||
                PQgetlength(r, row, 2) != 8) {
                rc = FV_ECORRUPT;
                break;
            }
            memcpy(hash, PQgetvalue(r, row, 0), 32);
            id = get_int(PQgetvalue(r, row, 1));
            len = get_int(PQgetvalue(r, row, 2));
            if (id < 1 || len < 1 || len > (1 << 24)) {
                rc = FV_ECORRUPT;
                break;
            }
            from.off = (uint64_t)id;
            from.len = (uint32_t)len;
            rc = fv_sstore_chunk_read(pg, &from, buf);
            if (rc == FV_OK) {
                fv_hash(h, buf, (size_t)len);
                if (!fv_ct_equal(h, hash, 32))
                    rc = FV_ECORRUPT;
            }
            if (rc == FV_ECORRUPT) {
                /* A chunk file a retraction committed after the snapshot
                 * has destroyed: the backup's server holds it as lost. */
                out->skipped++;
                rc = FV_OK;
                continue;
            }
            if (rc == FV_OK &&
                (rc = fv_sstore_chunk_append(lite, buf, (size_t)len, &to)) ==
                    FV_OK &&
                (rc = fv_sstore_chunk_add(lite, hash, &to)) == FV_OK)
                out->chunks++;
        }
        PQclear(r);
        if (got == 0)
            break;
    }
    if (rc == FV_OK)
        rc = fv_sstore_chunk_sync(lite);
    if (rc == FV_OK)
        rc = fv_sstore_commit(lite);
    else
        fv_sstore_rollback(lite);
    if (rc == FV_OK)
        rc = pg_exec(conn, "CLOSE fv_export", 0, NULL, NULL, NULL, NULL,
                     NULL);
    return rc;
}

int fv_sstore_pg_export_sqlite(fv_sstore *pg, const char *dir,
                               fv_sstore_migrated *stats)
{
    fv_sstore_migrated out;
    fv_sstore *lite = NULL;
    sqlite3 *db = NULL;
    PGconn *conn = fv_sstore_pg_conn(pg);
    unsigned char *buf = NULL;
    char *path = NULL;
    int rc, in_tx = 0;

    memset(&out, 0, sizeof out);
    if (stats)
        *stats = out;
    if (!conn || PQtransactionStatus(conn) != PQTRANS_IDLE)
        return FV_EINVAL;
    if (!(path = fv_path_join(dir, "server.db")) ||
        !(buf = malloc(1u << 24))) {
        rc = FV_ENOMEM;
        goto done;
    }
    /* The embedded store's own schema, at its current version. */
    if ((rc = fv_sstore_sqlite_open(&lite, path, 1)))
        goto done;
    fv_sstore_close(lite);
    lite = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        rc = FV_EIO;
        goto done;
    }
    /* One snapshot for every table and the chunk index: the store as it
     * was at one instant, whatever serve processes commit meanwhile. */
    if ((rc = pg_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, "
                            "READ ONLY", 0, NULL, NULL, NULL, NULL, NULL)))
        goto done;
    in_tx = 1;
    for (size_t i = 0; rc == FV_OK && i < sizeof tables / sizeof *tables;
         i++) {
        struct table t = tables[i];
        uint64_t rows = 0;
        /* SQLite's upsert reads as PostgreSQL's: the same text. */
        rc = export_table(conn, db, dir, &t, &rows);
        if (strcmp(t.name, "device") == 0)
            out.devices = rows;
        else if (strcmp(t.name, "log") == 0)
            out.envelopes = rows;
    }
    if (rc == FV_OK) {
        int s = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        rc = s == SQLITE_OK ? FV_OK : s == SQLITE_FULL ? FV_ENOSPC : FV_EIO;
    }
    sqlite3_close(db);
    db = NULL;
    if (rc == FV_OK && (rc = fv_sstore_sqlite_open(&lite, path, 0)) == FV_OK)
        rc = export_chunks(pg, lite, buf, &out);
done:
    if (in_tx)
        PQclear(PQexec(conn, rc == FV_OK ? "COMMIT" : "ROLLBACK"));
    if (db) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);
    }
    fv_sstore_close(lite);
    if (buf)
        fv_wipe(buf, 1u << 24);
    free(buf);
    free(path);
    if (rc == FV_OK && stats)
        *stats = out;
    return rc;
}
