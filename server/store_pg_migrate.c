/* store_pg_migrate.c - an embedded server store copied into PostgreSQL
 * (fv_sstore_pg_import_sqlite, store_pg.h; `fieldvault server migrate`). */
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

PGconn *fv_sstore_pg_conn(fv_sstore *base);

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define MAXC 6

/* One table: what to read from SQLite, where it goes in PostgreSQL, and
 * each column's kind: 'b' bytes (NULL stays NULL), 'i' integer, 't' text. */
struct table {
    const char *name, *select, *insert, *kinds;
};

static const struct table tables[] = {
    {"meta", "SELECT k, v FROM meta", "INSERT INTO meta(k, v) VALUES ($1, $2) "
     "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", "tb"},
    {"device", "SELECT pk, box, name, role, revoked, enrolled FROM device",
     "INSERT INTO device(pk, box, name, role, revoked, enrolled) "
     "VALUES ($1, $2, $3, $4, $5, $6)", "bbbiii"},
    {"invite", "SELECT token_hash, name, role, expires, used, device "
     "FROM invite", "INSERT INTO invite(token_hash, name, role, expires, "
     "used, device) VALUES ($1, $2, $3, $4, $5, $6)", "bbiiib"},
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

static int copy_chunks(struct mig *m, fv_sstore_migrated *out)
{
    sqlite3_stmt *st = NULL;
    int rc = FV_OK, s;
    if (sqlite3_prepare_v2(m->db, "SELECT hash, pack, off, len FROM chunk",
                           -1, &st, NULL) != SQLITE_OK)
        return FV_ECORRUPT;
    while (rc == FV_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned char hash[32], got[32], idb[8], lenb[8];
        int64_t pack = sqlite3_column_int64(st, 1);
        int64_t off = sqlite3_column_int64(st, 2);
        int64_t len = sqlite3_column_int64(st, 3);
        PGresult *r = NULL;
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
        if (rc)
            break;
        {
            Oid t1[1] = {OID_BYTEA};
            const char *v1[1] = {(const char *)m->buf};
            int l1[1] = {(int)len}, f1[1] = {1};
            rc = pg_exec(m->pg, "INSERT INTO chunkdata(data) VALUES ($1) "
                                "RETURNING id", 1, t1, v1, l1, f1, &r);
        }
        if (rc == FV_OK) {
            Oid t3[3] = {OID_BYTEA, OID_INT8, OID_INT8};
            const char *v3[3] = {(const char *)hash, (const char *)idb,
                                 (const char *)lenb};
            int l3[3] = {32, 8, 8}, f3[3] = {1, 1, 1};
            if (PQntuples(r) != 1 || PQgetlength(r, 0, 0) != 8)
                rc = FV_EIO;
            else
                memcpy(idb, PQgetvalue(r, 0, 0), 8);
            PQclear(r);
            put_int(lenb, len);
            if (rc == FV_OK)
                rc = pg_exec(m->pg, "INSERT INTO chunk(hash, data_id, len) "
                                    "VALUES ($1, $2, $3)", 3, t3, v3, l3, f3,
                             NULL);
        }
        if (rc == FV_OK)
            out->chunks++;
    }
    if (rc == FV_OK && s != SQLITE_DONE)
        rc = FV_ECORRUPT;
    sqlite3_finalize(st);
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
    /* One read snapshot of the source, one transaction in PostgreSQL. */
    if (sqlite3_exec(m.db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        (rc = pg_exec(m.pg, "BEGIN", 0, NULL, NULL, NULL, NULL, NULL)) ||
        (rc = pg_exec(m.pg, "SELECT pg_advisory_xact_lock(1180062550)", 0,
                      NULL, NULL, NULL, NULL, NULL))) {
        rc = rc ? rc : FV_EIO;
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
        rc = copy_chunks(&m, &out);
    if (rc == FV_OK)
        rc = pg_exec(m.pg, "COMMIT", 0, NULL, NULL, NULL, NULL, NULL);
    else
        PQclear(PQexec(m.pg, "ROLLBACK"));
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
