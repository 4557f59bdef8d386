/* store_pg.c - the server store in PostgreSQL, over libpq (see store_pg.h). */
#include "store_pg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "chunkdir.h"
#include "crypto.h"
#include "fieldvault.h"

#define OID_BYTEA 17
#define OID_INT8 20

/* The advisory lock every write transaction takes: 'FVSV' (0x46565356;
 * one store per database; store_pg_migrate.c takes it too). */
#define WRITE_LOCK "1180062550"

#define MAXP 6 /* parameters of one statement, at most */

typedef struct pgs {
    fv_sstore base; /* first: what the interface (sstore.h) hands out */
    PGconn *conn;
    int in_tx;
    char msg[256];
    /* chunkdata rows (or chunk files) to delete at the next commit. */
    int64_t *erase;
    size_t nerase, erase_cap;
    fv_chunkdir *cd; /* NULL: chunks in chunkdata */
    char *made_dir;  /* the chunk directory this handle's init made */
    int64_t made_max; /* the highest chunk file it wrote there */
    int create_tx;    /* made with FV_SSTORE_PG_CREATE_TX */
} pgs;

/* --chunks DIR of this process (fv_sstore_pg_set_chunks). */
static char *chunks_option;

int fv_sstore_pg_set_chunks(const char *dir)
{
    char *copy = dir ? strdup(dir) : NULL;
    if (dir && !copy)
        return FV_ENOMEM;
    free(chunks_option);
    chunks_option = copy;
    return FV_OK;
}

static const fv_sstore_ops pgs_ops;

/* A statement's parameters: bytea or int8, all sent binary. */
typedef struct params {
    int n;
    Oid types[MAXP];
    const char *vals[MAXP];
    int lens[MAXP];
    int fmts[MAXP];
    unsigned char ints[MAXP][8];
} params;

static void p_bytes(params *p, const void *b, size_t len)
{
    int i = p->n++;
    p->types[i] = OID_BYTEA;
    p->vals[i] = len ? (const char *)b : "";
    p->lens[i] = (int)len;
    p->fmts[i] = 1;
}

static void p_key(params *p, const unsigned char *k)
{
    p_bytes(p, k, 32);
}

static void p_int(params *p, int64_t v)
{
    int i = p->n++;
    uint64_t u = (uint64_t)v;
    for (int k = 7; k >= 0; k--) {
        p->ints[i][k] = (unsigned char)u;
        u >>= 8;
    }
    p->types[i] = OID_INT8;
    p->vals[i] = (const char *)p->ints[i];
    p->lens[i] = 8;
    p->fmts[i] = 1;
}

static int pg_error(pgs *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* The FV_E code for a failed result (NULL: no result at all). A lost
 * connection is FV_EDATABASE; a unique violation FV_EEXIST. The message
 * names `what` (a table) and the SQLSTATE, never a value. */
static int res_fail(pgs *s, PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(s->conn) != CONNECTION_OK)
        return pg_error(s, FV_EDATABASE,
                        "server database: %s: the connection to PostgreSQL "
                        "was lost", what);
    if (state && strcmp(state, "23505") == 0)
        return pg_error(s, FV_EEXIST, "server database: %s: already there",
                        what);
    if (state && (strcmp(state, "53100") == 0)) /* disk_full */
        return pg_error(s, FV_ENOSPC, "server database: %s: disk full", what);
    if (state && strncmp(state, "08", 2) == 0)
        return pg_error(s, FV_EDATABASE,
                        "server database: %s: connection failure (SQLSTATE "
                        "%s)", what, state);
    return pg_error(s, FV_EIO, "server database: %s: failed (SQLSTATE %s)",
                    what, state ? state : "none");
}

/* After a lost connection, outside a transaction: one try to get it back
 * (a database restarted under a running server). */
static int conn_ready(pgs *s)
{
    if (PQstatus(s->conn) == CONNECTION_OK)
        return FV_OK;
    if (s->in_tx)
        return pg_error(s, FV_EDATABASE,
                        "server database: the connection to PostgreSQL was "
                        "lost");
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK)
        return pg_error(s, FV_EDATABASE,
                        "server database: PostgreSQL cannot be reached");
    return FV_OK;
}

/* Runs sql with p (may be NULL); results in binary. *out receives the
 * result (the caller PQclears it) when it returned rows, or is cleared. */
static int run(pgs *s, const char *sql, const params *p, PGresult **out,
               const char *what)
{
    PGresult *r;
    ExecStatusType t;
    int rc = conn_ready(s);
    if (out)
        *out = NULL;
    if (rc)
        return rc;
    r = PQexecParams(s->conn, sql, p ? p->n : 0, p ? p->types : NULL,
                     p ? p->vals : NULL, p ? p->lens : NULL,
                     p ? p->fmts : NULL, 1);
    t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        rc = res_fail(s, r, what);
        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return FV_OK;
}

/* Runs several statements with no parameters (the schema). */
static int run_script(pgs *s, const char *sql)
{
    PGresult *r = PQexec(s->conn, sql);
    ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = FV_OK;
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
        rc = res_fail(s, r, "schema");
    PQclear(r);
    return rc;
}

/* Runs a statement and returns how many rows it changed in *changed. */
static int run_count(pgs *s, const char *sql, const params *p,
                     uint64_t *changed, const char *what)
{
    PGresult *r;
    int rc = run(s, sql, p, &r, what);
    if (rc)
        return rc;
    *changed = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return FV_OK;
}

/* Runs a query that returns at most one row: FV_ENOTFOUND if none. */
static int run_row(pgs *s, const char *sql, const params *p, PGresult **out,
                   const char *what)
{
    int rc = run(s, sql, p, out, what);
    if (rc)
        return rc;
    if (PQntuples(*out) < 1) {
        PQclear(*out);
        *out = NULL;
        return FV_ENOTFOUND;
    }
    return FV_OK;
}

static int col_int(const PGresult *r, int row, int col, int64_t *v)
{
    const unsigned char *b;
    uint64_t u = 0;
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8 ||
        PQftype(r, col) != OID_INT8)
        return 0;
    b = (const unsigned char *)PQgetvalue(r, row, col);
    for (int k = 0; k < 8; k++)
        u = (u << 8) | b[k];
    *v = (int64_t)u;
    return 1;
}

static int col_key(const PGresult *r, int row, int col, unsigned char out[32])
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 32)
        return 0;
    memcpy(out, PQgetvalue(r, row, col), 32);
    return 1;
}

static int col_name(const PGresult *r, int row, int col, char *out,
                    size_t *len)
{
    int n = PQgetlength(r, row, col);
    if (PQgetisnull(r, row, col) || n < 0 || n > FV_SSTORE_NAME_MAX)
        return 0;
    memcpy(out, PQgetvalue(r, row, col), (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return 1;
}

/* ---- schema ----------------------------------------------------------- */

static const char schema_sql[] =
    "CREATE TABLE schema_version(version bigint NOT NULL);"
    "CREATE TABLE meta(k text PRIMARY KEY, v bytea NOT NULL);"
    "CREATE TABLE device(pk bytea PRIMARY KEY, box bytea NOT NULL UNIQUE,"
    " name bytea NOT NULL, role bigint NOT NULL, revoked bigint NOT NULL,"
    " enrolled bigint NOT NULL);"
    "CREATE TABLE invite(token_hash bytea PRIMARY KEY, name bytea NOT NULL,"
    " role bigint NOT NULL, expires bigint NOT NULL, used bigint NOT NULL,"
    " device bytea);"
    "CREATE TABLE log(seq bigint PRIMARY KEY, id bytea NOT NULL UNIQUE,"
    " author bytea NOT NULL, bytes bytea NOT NULL, chain bytea NOT NULL);"
    "CREATE TABLE feed(device bytea NOT NULL, fseq bigint NOT NULL,"
    " seq bigint NOT NULL, chain bytea NOT NULL, PRIMARY KEY(device, fseq));"
    "CREATE INDEX feed_seq ON feed(device, seq);"
    "CREATE TABLE chunkref(hash bytea NOT NULL, seq bigint NOT NULL,"
    " PRIMARY KEY(hash, seq));"
    "CREATE INDEX chunkref_seq ON chunkref(seq);"
    "CREATE TABLE chunkdata(id bigserial PRIMARY KEY, data bytea NOT NULL);"
    /* Ciphertext does not compress: no time spent trying. */
    "ALTER TABLE chunkdata ALTER COLUMN data SET STORAGE EXTERNAL;"
    "ALTER TABLE log ALTER COLUMN bytes SET STORAGE EXTERNAL;"
    "CREATE TABLE chunk(hash bytea PRIMARY KEY, data_id bigint NOT NULL,"
    " len bigint NOT NULL);"
    "CREATE TABLE logrec(seq bigint PRIMARY KEY, record bytea NOT NULL);"
    "CREATE INDEX logrec_record ON logrec(record);"
    "CREATE TABLE retracted(record bytea PRIMARY KEY, seq bigint NOT NULL,"
    " id bytea NOT NULL);"
    "INSERT INTO schema_version(version) VALUES (1);";

/* Version 2: chunks as files in a directory (chunkdir.h), numbered by a
 * sequence every server draws from; chunk.data_id is that number. */
static const char schema_dir_sql[] =
    "CREATE SEQUENCE chunkfile;"
    "UPDATE schema_version SET version = 2;";

/* Makes the chunk directory chunks_option for a new store, inside the
 * schema's transaction: its absolute path and its id go into meta. */
static int chunks_create(pgs *s)
{
    unsigned char id[FV_CHUNKDIR_ID_BYTES];
    char *abs = NULL;
    params p = {0};
    int rc;

    fv_random(id, sizeof id);
    if ((rc = fv_chunkdir_create(chunks_option, id)))
        return pg_error(s, rc, "chunks: cannot make the directory");
    if (!(s->made_dir = strdup(chunks_option)) ||
        !(abs = realpath(chunks_option, NULL)))
        rc = FV_ENOMEM;
    if (rc == FV_OK)
        rc = run_script(s, schema_dir_sql);
    if (rc == FV_OK) {
        p_bytes(&p, id, sizeof id);
        p_bytes(&p, abs, strlen(abs));
        rc = run(s, "INSERT INTO meta(k, v) VALUES ('chunk_dir_id', $1), "
                    "('chunk_dir', $2)", &p, NULL, "meta");
    }
    if (rc == FV_OK)
        rc = fv_chunkdir_open(&s->cd, chunks_option, id);
    free(abs);
    return rc;
}

/* Opens the chunk directory of a store that has one: --chunks if given,
 * else the path init recorded. FV_EINVAL for --chunks on a store that
 * keeps its chunks in PostgreSQL. */
static int chunks_attach(pgs *s)
{
    PGresult *r = NULL, *r2 = NULL;
    char *dir = NULL;
    int rc = run_row(s, "SELECT v FROM meta WHERE k = 'chunk_dir_id'", NULL,
                     &r, "meta");
    if (rc == FV_ENOTFOUND)
        return chunks_option ? FV_EINVAL : FV_OK;
    if (rc)
        return rc;
    if (PQgetlength(r, 0, 0) != FV_CHUNKDIR_ID_BYTES)
        rc = FV_ECORRUPT;
    else if (!chunks_option &&
             (rc = run_row(s, "SELECT v FROM meta WHERE k = 'chunk_dir'",
                           NULL, &r2, "meta")) == FV_OK) {
        int n = PQgetlength(r2, 0, 0);
        if (!(dir = malloc((size_t)n + 1)))
            rc = FV_ENOMEM;
        else {
            memcpy(dir, PQgetvalue(r2, 0, 0), (size_t)n);
            dir[n] = '\0';
        }
    }
    if (rc == FV_OK)
        rc = fv_chunkdir_open(&s->cd, chunks_option ? chunks_option : dir,
                              (const unsigned char *)PQgetvalue(r, 0, 0));
    PQclear(r);
    PQclear(r2);
    free(dir);
    return rc;
}

/* The schema's version: 0 if there is no schema_version table. */
static int schema_version(pgs *s, int64_t *v)
{
    PGresult *r;
    int rc = run(s, "SELECT to_regclass('schema_version') IS NOT NULL", NULL,
                 &r, "schema_version");
    int have;
    if (rc)
        return rc;
    have = PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 1 &&
           PQgetvalue(r, 0, 0)[0] == 1;
    PQclear(r);
    *v = 0;
    if (!have)
        return FV_OK;
    rc = run_row(s, "SELECT max(version)::bigint FROM schema_version", NULL,
                 &r, "schema_version");
    if (rc == FV_OK) {
        if (!col_int(r, 0, 0, v) || *v < 1)
            rc = pg_error(s, FV_ECORRUPT,
                          "server database: schema_version is damaged");
        PQclear(r);
    } else if (rc == FV_ENOTFOUND) {
        rc = pg_error(s, FV_ECORRUPT,
                      "server database: schema_version is empty");
    }
    return rc;
}

/* FV_OK if the database's schema holds no table, sequence or view (a
 * restore or a migration fills only an empty database), else FV_EEXIST. */
static int schema_empty(pgs *s)
{
    PGresult *r;
    int64_t n = 0;
    int rc = run_row(s, "SELECT count(*)::bigint FROM pg_class c JOIN "
                        "pg_namespace n ON n.oid = c.relnamespace WHERE "
                        "n.nspname = current_schema() AND c.relkind IN "
                        "('r', 'p', 'S', 'v', 'm', 'f')",
                     NULL, &r, "schema");
    if (rc)
        return rc;
    if (!col_int(r, 0, 0, &n))
        rc = pg_error(s, FV_EIO, "server database: cannot list tables");
    PQclear(r);
    return rc ? rc : n ? FV_EEXIST : FV_OK;
}

int fv_sstore_pg_open(fv_sstore **out, const char *uri, int create)
{
    pgs *s;
    int64_t ver = 0;
    int rc;

    *out = NULL;
    if (!fv_sstore_is_pg(uri))
        return FV_EINVAL;
    {
        /* libpq parses the URI; a malformed one is the caller's error. */
        char *err = NULL;
        PQconninfoOption *o = PQconninfoParse(uri, &err);
        if (!o) {
            PQfreemem(err);
            return FV_EINVAL;
        }
        PQconninfoFree(o);
    }
    if (!(s = calloc(1, sizeof *s)))
        return FV_ENOMEM;
    s->base.ops = &pgs_ops;
    s->conn = PQconnectdb(uri);
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        rc = s->conn ? FV_EDATABASE : FV_ENOMEM;
        goto fail;
    }
    /* Quiet NOTICEs; bytea in and out in binary anyway. */
    if ((rc = run(s, "SET client_min_messages = warning", NULL, NULL,
                  "session")) ||
        (rc = run(s, "SET synchronous_commit = on", NULL, NULL, "session")))
        goto fail;
    if (create) {
        /* One init at a time on this database. */
        if ((rc = run(s, "BEGIN", NULL, NULL, "schema")) ||
            (rc = run(s, "SELECT pg_advisory_xact_lock(" WRITE_LOCK ")", NULL,
                      NULL, "schema")) ||
            (rc = schema_version(s, &ver)))
            goto fail_tx;
        if (ver || (create == FV_SSTORE_PG_CREATE_TX &&
                    (rc = schema_empty(s)))) {
            rc = rc ? rc : FV_EEXIST;
            goto fail_tx;
        }
        if ((rc = run_script(s, schema_sql)) ||
            (chunks_option && (rc = chunks_create(s))))
            goto fail_tx;
        if (create == FV_SSTORE_PG_CREATE_TX)
            s->in_tx = s->create_tx = 1; /* the caller fills it, commits */
        else if ((rc = run(s, "COMMIT", NULL, NULL, "schema")))
            goto fail_tx;
    } else {
        if ((rc = schema_version(s, &ver)))
            goto fail;
        if (ver == 0) {
            rc = FV_ENOTFOUND;
            goto fail;
        }
        if (ver > FV_SSTORE_PG_SCHEMA) {
            rc = FV_EVERSION;
            goto fail;
        }
        if ((rc = chunks_attach(s)))
            goto fail;
    }
    *out = &s->base;
    return FV_OK;
fail_tx:
    PQclear(PQexec(s->conn, "ROLLBACK"));
fail:
    fv_chunkdir_close(s->cd);
    if (s->made_dir)
        fv_chunkdir_remove(s->made_dir);
    free(s->made_dir);
    PQfinish(s->conn);
    free(s);
    return rc;
}

static void pgs_close(fv_sstore *base)
{
    pgs *s = (pgs *)base;
    if (!s)
        return;
    if (s->in_tx)
        PQclear(PQexec(s->conn, "ROLLBACK"));
    PQfinish(s->conn);
    free(s->erase);
    fv_chunkdir_close(s->cd);
    free(s->made_dir);
    free(s);
}

static const char *pgs_errmsg(const fv_sstore *base)
{
    const pgs *s = (const pgs *)base;
    return s ? s->msg : "server database: no handle";
}

/* ---- transactions ----------------------------------------------------- */

static int pgs_begin(fv_sstore *base)
{
    pgs *s = (pgs *)base;
    int rc;
    if (s->in_tx)
        return pg_error(s, FV_EINVAL, "server database: already in a "
                                      "transaction");
    if ((rc = run(s, "BEGIN", NULL, NULL, "begin")))
        return rc;
    s->in_tx = 1;
    s->nerase = 0;
    /* Write transactions one at a time across every process: the log
     * head read next is the one the previous writer committed. */
    if ((rc = run(s, "SELECT pg_advisory_xact_lock(" WRITE_LOCK ")", NULL,
                  NULL, "begin"))) {
        PQclear(PQexec(s->conn, "ROLLBACK"));
        s->in_tx = 0;
    }
    return rc;
}

static int pgs_commit(fv_sstore *base)
{
    pgs *s = (pgs *)base;
    int rc = FV_OK;
    if (!s->in_tx)
        return FV_OK;
    for (size_t i = 0; rc == FV_OK && i < s->nerase; i++) {
        params p = {0};
        p_int(&p, s->erase[i]);
        /* A file's bytes are destroyed before the commit, as the embedded
         * store's are (docs/PROTOCOL.md, Retraction). */
        rc = s->cd ? fv_chunkdir_destroy(s->cd, (uint64_t)s->erase[i])
                   : run(s, "DELETE FROM chunkdata WHERE id = $1", &p, NULL,
                         "chunkdata");
    }
    s->nerase = 0;
    if (rc == FV_OK)
        rc = run(s, "COMMIT", NULL, NULL, "commit");
    if (rc) {
        PQclear(PQexec(s->conn, "ROLLBACK"));
    }
    s->in_tx = 0;
    return rc;
}

static void pgs_rollback(fv_sstore *base)
{
    pgs *s = (pgs *)base;
    s->nerase = 0;
    if (!s->in_tx)
        return;
    PQclear(PQexec(s->conn, "ROLLBACK"));
    s->in_tx = 0;
}

static int pgs_checkpoint(fv_sstore *base)
{
    (void)base; /* PostgreSQL checkpoints on its own */
    return FV_OK;
}

/* ---- meta ------------------------------------------------------------- */

static int pgs_meta_get(fv_sstore *base, const char *key, unsigned char **val,
                        size_t *len)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int rc, n;
    *val = NULL;
    *len = 0;
    p_bytes(&p, key, strlen(key));
    if ((rc = run_row(s, "SELECT v FROM meta WHERE k = convert_from($1, "
                         "'UTF8')", &p, &r, "meta")))
        return rc;
    n = PQgetlength(r, 0, 0);
    if (!(*val = malloc(n > 0 ? (size_t)n : 1)))
        rc = FV_ENOMEM;
    else {
        memcpy(*val, PQgetvalue(r, 0, 0), (size_t)n);
        *len = (size_t)n;
    }
    PQclear(r);
    return rc;
}

static int pgs_meta_get_fixed(fv_sstore *base, const char *key, void *val,
                              size_t len)
{
    pgs *s = (pgs *)base;
    unsigned char *v;
    size_t n;
    int rc = pgs_meta_get(base, key, &v, &n);
    if (rc)
        return rc;
    if (n != len)
        rc = pg_error(s, FV_ECORRUPT, "server database: meta value %s has "
                                      "the wrong size", key);
    else
        memcpy(val, v, len);
    fv_wipe(v, n);
    free(v);
    return rc;
}

static int pgs_meta_put(fv_sstore *base, const char *key, const void *val,
                        size_t len)
{
    pgs *s = (pgs *)base;
    params p = {0};
    p_bytes(&p, key, strlen(key));
    p_bytes(&p, val, len);
    return run(s, "INSERT INTO meta(k, v) VALUES (convert_from($1, 'UTF8'), "
                  "$2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
               &p, NULL, "meta");
}

/* ---- devices ---------------------------------------------------------- */

#define DEV_COLS "pk, box, name, role, revoked, enrolled"

static int row_device(const PGresult *r, int row, fv_sstore_device *d)
{
    int64_t role, rev, enr;
    memset(d, 0, sizeof *d);
    if (!col_key(r, row, 0, d->pk) || !col_key(r, row, 1, d->box) ||
        !col_name(r, row, 2, d->name, &d->name_len) ||
        !col_int(r, row, 3, &role) || !col_int(r, row, 4, &rev) ||
        !col_int(r, row, 5, &enr))
        return FV_ECORRUPT;
    d->role = (int)role;
    d->revoked = rev != 0;
    d->revoked_at = rev > 1 ? rev : 0;
    d->enrolled = enr;
    return FV_OK;
}

static int device_query(pgs *s, const char *sql, const unsigned char key[32],
                        fv_sstore_device *d)
{
    PGresult *r;
    params p = {0};
    int rc;
    p_key(&p, key);
    if ((rc = run_row(s, sql, &p, &r, "device")))
        return rc;
    if ((rc = row_device(r, 0, d)))
        pg_error(s, rc, "server database: a device is damaged");
    PQclear(r);
    return rc;
}

static int pgs_device_get(fv_sstore *base, const unsigned char pk[32],
                          fv_sstore_device *d)
{
    return device_query((pgs *)base,
                        "SELECT " DEV_COLS " FROM device WHERE pk = $1", pk, d);
}

static int pgs_device_by_box(fv_sstore *base, const unsigned char box[32],
                             fv_sstore_device *d)
{
    return device_query((pgs *)base,
                        "SELECT " DEV_COLS " FROM device WHERE box = $1", box,
                        d);
}

static int pgs_device_add(fv_sstore *base, const fv_sstore_device *d)
{
    pgs *s = (pgs *)base;
    params p = {0};
    if (d->name_len > FV_SSTORE_NAME_MAX)
        return FV_EINVAL;
    p_key(&p, d->pk);
    p_key(&p, d->box);
    p_bytes(&p, d->name, d->name_len);
    p_int(&p, d->role);
    p_int(&p, d->revoked ? 1 : 0);
    p_int(&p, d->enrolled);
    return run(s, "INSERT INTO device(" DEV_COLS ") VALUES ($1, $2, $3, $4, "
                  "$5, $6)", &p, NULL, "device");
}

static int pgs_device_revoke(fv_sstore *base, const unsigned char pk[32],
                             int64_t now)
{
    pgs *s = (pgs *)base;
    params p = {0};
    uint64_t n = 0;
    int rc;
    p_key(&p, pk);
    p_int(&p, now);
    /* revoked: 0, or when (as the embedded store's). */
    if ((rc = run_count(s, "UPDATE device SET revoked = CASE WHEN revoked = 0 "
                           "THEN greatest($2, 2) ELSE revoked END "
                           "WHERE pk = $1", &p, &n, "device")))
        return rc;
    return n ? FV_OK : FV_ENOTFOUND;
}

static int pgs_each_device(fv_sstore *base, size_t max, fv_sstore_device_fn fn,
                           void *payload)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    fv_sstore_device d;
    int rc, n;
    uint64_t lim = max;
    p_int(&p, lim > INT64_MAX ? INT64_MAX : (int64_t)lim);
    /* The rows are all in r: the callback may use the handle. */
    if ((rc = run(s, "SELECT " DEV_COLS " FROM device ORDER BY enrolled, pk "
                     "LIMIT $1", &p, &r, "device")))
        return rc;
    n = PQntuples(r);
    for (int i = 0; i < n && rc == FV_OK; i++) {
        if ((rc = row_device(r, i, &d)) != FV_OK) {
            pg_error(s, rc, "server database: a device is damaged");
            break;
        }
        rc = fn(&d, payload);
    }
    PQclear(r);
    return rc;
}

/* ---- invites ---------------------------------------------------------- */

static int pgs_invite_add(fv_sstore *base, const unsigned char token_hash[32],
                          const char *name, size_t name_len, int role,
                          int64_t expires)
{
    pgs *s = (pgs *)base;
    params p = {0};
    if (name_len > FV_SSTORE_NAME_MAX)
        return FV_EINVAL;
    p_key(&p, token_hash);
    p_bytes(&p, name, name_len);
    p_int(&p, role);
    p_int(&p, expires);
    return run(s, "INSERT INTO invite(token_hash, name, role, expires, used) "
                  "VALUES ($1, $2, $3, $4, 0)", &p, NULL, "invite");
}

static int pgs_invite_get(fv_sstore *base, const unsigned char token_hash[32],
                          fv_sstore_invite *inv)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int64_t role, expires, used;
    int rc;
    memset(inv, 0, sizeof *inv);
    p_key(&p, token_hash);
    if ((rc = run_row(s, "SELECT name, role, expires, used, device FROM invite "
                         "WHERE token_hash = $1", &p, &r, "invite")))
        return rc;
    if (!col_name(r, 0, 0, inv->name, &inv->name_len) ||
        !col_int(r, 0, 1, &role) || !col_int(r, 0, 2, &expires) ||
        !col_int(r, 0, 3, &used))
        rc = pg_error(s, FV_ECORRUPT, "server database: an invite is damaged");
    else {
        inv->role = (int)role;
        inv->expires = expires;
        inv->used = used != 0;
        inv->has_device = col_key(r, 0, 4, inv->device);
    }
    PQclear(r);
    return rc;
}

static int pgs_invite_use(fv_sstore *base, const unsigned char token_hash[32],
                          const unsigned char device[32])
{
    pgs *s = (pgs *)base;
    params p = {0};
    uint64_t n = 0;
    int rc;
    p_key(&p, token_hash);
    p_key(&p, device);
    if ((rc = run_count(s, "UPDATE invite SET used = 1, device = $2 "
                           "WHERE token_hash = $1 AND used = 0", &p, &n,
                        "invite")))
        return rc;
    return n == 1 ? FV_OK : FV_EINVITE;
}

/* ---- log and feeds ---------------------------------------------------- */

static int pgs_log_find_author(fv_sstore *base, const unsigned char id[32],
                               uint64_t *seq, unsigned char *author)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int64_t v;
    int rc;
    p_key(&p, id);
    if ((rc = run_row(s, "SELECT seq, author FROM log WHERE id = $1", &p, &r,
                      "log")))
        return rc;
    if (!col_int(r, 0, 0, &v) || v < 1 || (author && !col_key(r, 0, 1, author)))
        rc = pg_error(s, FV_ECORRUPT, "server database: a log entry is "
                                      "damaged");
    else
        *seq = (uint64_t)v;
    PQclear(r);
    return rc;
}

static int pgs_log_find(fv_sstore *base, const unsigned char id[32],
                        uint64_t *seq)
{
    return pgs_log_find_author(base, id, seq, NULL);
}

/* (position, chain) of a head query; 0 and zeros when there is no row. */
static int head_query(pgs *s, const char *sql, const params *p, uint64_t *pos,
                      unsigned char chain[32])
{
    PGresult *r;
    int64_t v;
    int rc = run_row(s, sql, p, &r, "head");
    if (rc == FV_ENOTFOUND) {
        *pos = 0;
        memset(chain, 0, 32);
        return FV_OK;
    }
    if (rc)
        return rc;
    if (!col_int(r, 0, 0, &v) || v < 1 || !col_key(r, 0, 1, chain))
        rc = pg_error(s, FV_ECORRUPT, "server database: a chain is damaged");
    else
        *pos = (uint64_t)v;
    PQclear(r);
    return rc;
}

static int chain_query(pgs *s, const char *sql, const params *p,
                       unsigned char chain[32])
{
    PGresult *r;
    int rc = run_row(s, sql, p, &r, "chain");
    if (rc)
        return rc;
    if (!col_key(r, 0, 0, chain))
        rc = pg_error(s, FV_ECORRUPT, "server database: a chain is damaged");
    PQclear(r);
    return rc;
}

static int pgs_log_head(fv_sstore *base, uint64_t *seq,
                        unsigned char chain[32])
{
    return head_query((pgs *)base,
                      "SELECT seq, chain FROM log ORDER BY seq DESC LIMIT 1",
                      NULL, seq, chain);
}

static int pgs_log_chain(fv_sstore *base, uint64_t seq,
                         unsigned char chain[32])
{
    params p = {0};
    if (seq > INT64_MAX)
        return FV_ENOTFOUND;
    p_int(&p, (int64_t)seq);
    return chain_query((pgs *)base, "SELECT chain FROM log WHERE seq = $1", &p,
                       chain);
}

static int pgs_log_add(fv_sstore *base, uint64_t seq,
                       const unsigned char id[32],
                       const unsigned char author[32],
                       const unsigned char *bytes, size_t len,
                       const unsigned char chain[32])
{
    pgs *s = (pgs *)base;
    params p = {0};
    if (seq > INT64_MAX || len > INT32_MAX)
        return FV_ELIMIT;
    p_int(&p, (int64_t)seq);
    p_key(&p, id);
    p_key(&p, author);
    p_bytes(&p, bytes, len);
    p_key(&p, chain);
    return run(s, "INSERT INTO log(seq, id, author, bytes, chain) "
                  "VALUES ($1, $2, $3, $4, $5)", &p, NULL, "log");
}

static int pgs_feed_head(fv_sstore *base, const unsigned char device[32],
                         uint64_t *fseq, unsigned char chain[32])
{
    params p = {0};
    p_key(&p, device);
    return head_query((pgs *)base,
                      "SELECT fseq, chain FROM feed WHERE device = $1 "
                      "ORDER BY fseq DESC LIMIT 1", &p, fseq, chain);
}

static int pgs_feed_chain(fv_sstore *base, const unsigned char device[32],
                          uint64_t fseq, unsigned char chain[32])
{
    params p = {0};
    if (fseq > INT64_MAX)
        return FV_ENOTFOUND;
    p_key(&p, device);
    p_int(&p, (int64_t)fseq);
    return chain_query((pgs *)base,
                       "SELECT chain FROM feed WHERE device = $1 AND "
                       "fseq = $2", &p, chain);
}

static int pgs_feed_add(fv_sstore *base, const unsigned char device[32],
                        uint64_t fseq, uint64_t seq,
                        const unsigned char chain[32])
{
    params p = {0};
    if (fseq > INT64_MAX || seq > INT64_MAX)
        return FV_ELIMIT;
    p_key(&p, device);
    p_int(&p, (int64_t)fseq);
    p_int(&p, (int64_t)seq);
    p_key(&p, chain);
    return run((pgs *)base, "INSERT INTO feed(device, fseq, seq, chain) "
                            "VALUES ($1, $2, $3, $4)", &p, NULL, "feed");
}

static int pgs_feed_has(fv_sstore *base, const unsigned char device[32],
                        uint64_t seq)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int rc;
    if (seq > INT64_MAX)
        return FV_ENOTFOUND;
    p_key(&p, device);
    p_int(&p, (int64_t)seq);
    if ((rc = run_row(s, "SELECT 1 FROM feed WHERE device = $1 AND seq = $2 "
                         "LIMIT 1", &p, &r, "feed")) == FV_OK)
        PQclear(r);
    return rc;
}

static int pgs_read(fv_sstore *base, const unsigned char *device,
                    uint64_t after, uint64_t upto, size_t max,
                    fv_sstore_entry_fn fn, void *payload)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    fv_sstore_entry e;
    uint64_t lim = max;
    int rc, n;

    if (upto > INT64_MAX)
        upto = INT64_MAX;
    if (after >= upto || max == 0)
        return FV_OK;
    p_int(&p, (int64_t)after);
    p_int(&p, (int64_t)upto);
    p_int(&p, lim > INT64_MAX ? INT64_MAX : (int64_t)lim);
    if (device)
        p_key(&p, device);
    rc = run(s, device ? "SELECT f.fseq, l.bytes, f.chain, l.id FROM feed f "
                         "JOIN log l ON l.seq = f.seq WHERE f.device = $4 "
                         "AND f.fseq > $1 AND f.fseq <= $2 "
                         "ORDER BY f.fseq LIMIT $3"
                       : "SELECT seq, bytes, chain, id FROM log "
                         "WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
             &p, &r, "read");
    if (rc)
        return rc;
    n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        int64_t pos;
        if (!col_int(r, i, 0, &pos) || pos < 1 || PQgetisnull(r, i, 1) ||
            PQgetlength(r, i, 2) != 32 || PQgetlength(r, i, 3) != 32) {
            rc = pg_error(s, FV_ECORRUPT, "server database: a log entry is "
                                          "damaged");
            break;
        }
        e.seq = (uint64_t)pos;
        e.len = (size_t)PQgetlength(r, i, 1);
        e.bytes = e.len ? (const unsigned char *)PQgetvalue(r, i, 1) : NULL;
        e.chain = (const unsigned char *)PQgetvalue(r, i, 2);
        e.id = (const unsigned char *)PQgetvalue(r, i, 3);
        if ((rc = fn(&e, payload)) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

/* ---- attachment chunks ------------------------------------------------ */

/* Existence query: FV_OK if it returns a row, else FV_ENOTFOUND. */
static int exists(pgs *s, const char *sql, const params *p, const char *what)
{
    PGresult *r;
    int rc = run_row(s, sql, p, &r, what);
    if (rc == FV_OK)
        PQclear(r);
    return rc;
}

static int pgs_chunkref_add(fv_sstore *base, const unsigned char hash[32],
                            uint64_t seq)
{
    params p = {0};
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    p_key(&p, hash);
    p_int(&p, (int64_t)seq);
    return run((pgs *)base, "INSERT INTO chunkref(hash, seq) VALUES ($1, $2) "
                            "ON CONFLICT DO NOTHING", &p, NULL, "chunkref");
}

static int pgs_chunk_listed(fv_sstore *base, const unsigned char hash[32],
                            const unsigned char *author)
{
    params p = {0};
    p_key(&p, hash);
    if (!author)
        return exists((pgs *)base,
                      "SELECT 1 FROM chunkref WHERE hash = $1 LIMIT 1", &p,
                      "chunkref");
    p_key(&p, author);
    return exists((pgs *)base,
                  "SELECT 1 FROM chunkref r JOIN log l ON l.seq = r.seq "
                  "WHERE r.hash = $1 AND l.author = $2 LIMIT 1", &p,
                  "chunkref");
}

static int pgs_chunk_append(fv_sstore *base, const unsigned char *data,
                            size_t len, fv_sstore_chunkloc *loc)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int64_t id = 0;
    int rc;
    if (len == 0 || len > UINT32_MAX || len > INT32_MAX)
        return FV_EINVAL;
    if (s->cd) {
        /* A number no server has used, then the file, durable at
         * fv_sstore_chunk_sync; unreachable until indexed. */
        if ((rc = run_row(s, "SELECT nextval('chunkfile')", NULL, &r,
                          "chunkfile")))
            return rc == FV_ENOTFOUND ? FV_EIO : rc;
        if (!col_int(r, 0, 0, &id) || id < 1)
            rc = pg_error(s, FV_EIO, "server database: chunkfile: no number");
        PQclear(r);
        if (rc == FV_OK && (rc = fv_chunkdir_write(s->cd, (uint64_t)id, data,
                                                   len)))
            pg_error(s, rc, "chunks: cannot write a chunk file");
        if (rc == FV_OK && s->made_dir && id > s->made_max)
            s->made_max = id;
        if (rc == FV_OK) {
            loc->pack = 2;
            loc->off = (uint64_t)id;
            loc->len = (uint32_t)len;
        }
        return rc;
    }
    p_bytes(&p, data, len);
    /* Its own statement (outside any transaction: durable when it
     * returns); unreachable until fv_sstore_chunk_add indexes it. */
    if ((rc = run_row(s, "INSERT INTO chunkdata(data) VALUES ($1) "
                         "RETURNING id", &p, &r, "chunkdata")))
        return rc == FV_ENOTFOUND ? FV_EIO : rc;
    if (!col_int(r, 0, 0, &id) || id < 1)
        rc = pg_error(s, FV_EIO, "server database: chunkdata: no row id");
    else {
        loc->pack = 1;
        loc->off = (uint64_t)id;
        loc->len = (uint32_t)len;
    }
    PQclear(r);
    return rc;
}

static int pgs_chunk_sync(fv_sstore *base)
{
    pgs *s = (pgs *)base;
    int rc;
    /* In PostgreSQL, each append was committed, durably, on its own. */
    if (!s->cd)
        return FV_OK;
    if ((rc = fv_chunkdir_sync(s->cd)))
        pg_error(s, rc, "chunks: cannot make the chunk files durable");
    return rc;
}

static int pgs_chunk_discard(fv_sstore *base, const fv_sstore_chunkloc *loc)
{
    pgs *s = (pgs *)base;
    if (loc->off > INT64_MAX)
        return FV_OK; /* names no row */
    if (s->nerase == s->erase_cap) {
        size_t cap = s->erase_cap ? s->erase_cap * 2 : 64;
        int64_t *q = realloc(s->erase, cap * sizeof *q);
        if (!q)
            return pg_error(s, FV_ENOMEM, "chunks: out of memory");
        s->erase = q;
        s->erase_cap = cap;
    }
    s->erase[s->nerase++] = (int64_t)loc->off;
    return FV_OK;
}

static int pgs_chunk_add(fv_sstore *base, const unsigned char hash[32],
                         const fv_sstore_chunkloc *loc)
{
    pgs *s = (pgs *)base;
    params p = {0};
    uint64_t n = 0;
    int rc;
    if (loc->off > INT64_MAX)
        return FV_ELIMIT;
    p_key(&p, hash);
    p_int(&p, (int64_t)loc->off);
    p_int(&p, loc->len);
    if ((rc = run_count(s, "INSERT INTO chunk(hash, data_id, len) "
                           "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &p, &n, "chunk")))
        return rc;
    /* Already indexed: no index row would name this copy. */
    return n ? FV_OK : pgs_chunk_discard(base, loc);
}

static int loc_row(pgs *s, const PGresult *r, int row, int col,
                   fv_sstore_chunkloc *loc)
{
    int64_t id, len;
    if (!col_int(r, row, col, &id) || !col_int(r, row, col + 1, &len) ||
        id < 1 || len < 1 || len > UINT32_MAX)
        return pg_error(s, FV_ECORRUPT, "server database: a chunk's index "
                                        "is damaged");
    loc->pack = s->cd ? 2 : 1;
    loc->off = (uint64_t)id;
    loc->len = (uint32_t)len;
    return FV_OK;
}

static int pgs_chunk_find(fv_sstore *base, const unsigned char hash[32],
                          const unsigned char *reader, fv_sstore_chunkloc *loc)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int rc;
    p_key(&p, hash);
    if (reader)
        p_key(&p, reader);
    rc = run_row(s, reader
                        ? "SELECT data_id, len FROM chunk WHERE hash = $1 AND ("
                          "EXISTS (SELECT 1 FROM chunkref r JOIN log l ON "
                          "l.seq = r.seq WHERE r.hash = $1 AND l.author = $2) "
                          "OR EXISTS (SELECT 1 FROM chunkref r JOIN feed f "
                          "ON f.device = $2 AND f.seq = r.seq "
                          "WHERE r.hash = $1))"
                        : "SELECT data_id, len FROM chunk WHERE hash = $1",
                 &p, &r, "chunk");
    if (rc)
        return rc;
    rc = loc_row(s, r, 0, 0, loc);
    PQclear(r);
    return rc;
}

static int pgs_chunk_read(fv_sstore *base, const fv_sstore_chunkloc *loc,
                          unsigned char *buf)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int rc;
    if (loc->off > INT64_MAX)
        return FV_ECORRUPT;
    if (s->cd) {
        if ((rc = fv_chunkdir_read(s->cd, loc->off, buf, loc->len)))
            pg_error(s, rc, rc == FV_ECORRUPT ? "chunks: a chunk file is "
                                                "missing or cut short"
                                              : "chunks: cannot read a chunk "
                                                "file");
        return rc;
    }
    p_int(&p, (int64_t)loc->off);
    rc = run_row(s, "SELECT data FROM chunkdata WHERE id = $1", &p, &r,
                 "chunkdata");
    if (rc == FV_ENOTFOUND)
        return pg_error(s, FV_ECORRUPT, "server database: a chunk's bytes "
                                        "are missing");
    if (rc)
        return rc;
    if (PQgetlength(r, 0, 0) != (int)loc->len)
        rc = pg_error(s, FV_ECORRUPT, "server database: a chunk's bytes are "
                                      "cut short");
    else
        memcpy(buf, PQgetvalue(r, 0, 0), loc->len);
    PQclear(r);
    return rc;
}

/* A chunkref row r of hash h is live if its entry's record is not
 * retracted (or unknown: entries from before records were filed). */
#define LIVE_REF_OF(h)                                                      \
    "LEFT JOIN logrec lr2 ON lr2.seq = r.seq WHERE r.hash = " h " AND "     \
    "(lr2.record IS NULL OR NOT EXISTS "                                    \
    "(SELECT 1 FROM retracted t WHERE t.record = lr2.record))"

static int pgs_chunk_live(fv_sstore *base, const unsigned char hash[32])
{
    params p = {0};
    p_key(&p, hash);
    return exists((pgs *)base,
                  "SELECT 1 FROM chunkref r " LIVE_REF_OF("$1") " LIMIT 1", &p,
                  "chunkref");
}

/* ---- records and retraction ------------------------------------------- */

static int pgs_logrec_add(fv_sstore *base, uint64_t seq,
                          const unsigned char record[32])
{
    params p = {0};
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    p_int(&p, (int64_t)seq);
    p_key(&p, record);
    return run((pgs *)base, "INSERT INTO logrec(seq, record) VALUES ($1, $2) "
                            "ON CONFLICT DO NOTHING", &p, NULL, "logrec");
}

static int pgs_record_origin(fv_sstore *base, const unsigned char record[32],
                             unsigned char origin[32])
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    int rc;
    p_key(&p, record);
    if ((rc = run_row(s, "SELECT l.author FROM log l JOIN logrec r "
                         "ON r.seq = l.seq AND r.record = l.id WHERE l.id = $1",
                      &p, &r, "logrec")))
        return rc;
    if (!col_key(r, 0, 0, origin))
        rc = pg_error(s, FV_ECORRUPT, "server database: a log entry is "
                                      "damaged");
    PQclear(r);
    return rc;
}

static int pgs_retracted(fv_sstore *base, const unsigned char record[32],
                         uint64_t *seq, unsigned char *id)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    unsigned char tmp[32];
    int64_t v;
    int rc;
    p_key(&p, record);
    if ((rc = run_row(s, "SELECT seq, id FROM retracted WHERE record = $1", &p,
                      &r, "retracted")))
        return rc;
    if (!col_int(r, 0, 0, &v) || v < 0 || !col_key(r, 0, 1, id ? id : tmp))
        rc = pg_error(s, FV_ECORRUPT, "server database: a retraction is "
                                      "damaged");
    else if (seq)
        *seq = (uint64_t)v;
    PQclear(r);
    return rc;
}

static int pgs_retract(fv_sstore *base, const unsigned char record[32],
                       uint64_t seq, const unsigned char id[32],
                       uint64_t *entries, uint64_t *chunks)
{
    pgs *s = (pgs *)base;
    PGresult *r = NULL;
    params p = {0};
    size_t n0 = s->nerase;
    uint64_t n = 0;
    int rc, rows;

    if (entries)
        *entries = 0;
    if (chunks)
        *chunks = 0;
    if (seq > INT64_MAX)
        return FV_ELIMIT;
    p_key(&p, record);
    p_int(&p, (int64_t)seq);
    p_key(&p, id);
    if ((rc = run(s, "INSERT INTO retracted(record, seq, id) "
                     "VALUES ($1, $2, $3)", &p, NULL, "retracted")))
        return rc;
    p.n = 2;
    if ((rc = run_count(s, "UPDATE log SET bytes = ''::bytea WHERE seq IN "
                           "(SELECT seq FROM logrec WHERE record = $1) "
                           "AND seq <> $2 AND length(bytes) > 0",
                        &p, &n, "log")))
        return rc;
    if (entries)
        *entries = n;
    /* The chunks it destroys: held, listed by an entry of the record, and
     * by no live entry; their index rows go now, their bytes at commit. */
    p.n = 1;
    if ((rc = run(s, "DELETE FROM chunk c WHERE c.hash IN "
                     "(SELECT r.hash FROM logrec lr JOIN chunkref r "
                     "ON r.seq = lr.seq WHERE lr.record = $1) AND NOT EXISTS "
                     "(SELECT 1 FROM chunkref r " LIVE_REF_OF("c.hash") ") "
                     "RETURNING c.data_id, c.len", &p, &r, "chunk")))
        return rc;
    rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        fv_sstore_chunkloc loc = {0};
        if ((rc = loc_row(s, r, i, 0, &loc)) ||
            (rc = pgs_chunk_discard(base, &loc))) {
            s->nerase = n0;
            PQclear(r);
            return rc;
        }
    }
    PQclear(r);
    if (chunks)
        *chunks = (uint64_t)rows;
    return FV_OK;
}

static int pgs_record_readers(fv_sstore *base, const unsigned char record[32],
                              fv_sstore_key_fn fn, void *payload)
{
    pgs *s = (pgs *)base;
    PGresult *r;
    params p = {0};
    unsigned char key[32];
    int rc, n;
    p_key(&p, record);
    /* Gathered first (all in r): fn may write. */
    if ((rc = run(s, "SELECT d.pk FROM device d WHERE d.role = 1 AND "
                     "d.revoked = 0 AND EXISTS (SELECT 1 FROM logrec r JOIN "
                     "feed f ON f.device = d.pk AND f.seq = r.seq "
                     "WHERE r.record = $1)", &p, &r, "feed")))
        return rc;
    n = PQntuples(r);
    for (int i = 0; i < n && rc == FV_OK; i++) {
        if (!col_key(r, i, 0, key)) {
            rc = pg_error(s, FV_ECORRUPT, "server database: a device is "
                                          "damaged");
            break;
        }
        rc = fn(key, payload);
    }
    PQclear(r);
    return rc;
}

static const fv_sstore_ops pgs_ops = {
    .close = pgs_close,
    .errmsg = pgs_errmsg,
    .begin = pgs_begin,
    .commit = pgs_commit,
    .rollback = pgs_rollback,
    .checkpoint = pgs_checkpoint,
    .meta_get = pgs_meta_get,
    .meta_get_fixed = pgs_meta_get_fixed,
    .meta_put = pgs_meta_put,
    .device_get = pgs_device_get,
    .device_by_box = pgs_device_by_box,
    .device_add = pgs_device_add,
    .device_revoke = pgs_device_revoke,
    .each_device = pgs_each_device,
    .invite_add = pgs_invite_add,
    .invite_get = pgs_invite_get,
    .invite_use = pgs_invite_use,
    .log_find = pgs_log_find,
    .log_find_author = pgs_log_find_author,
    .log_head = pgs_log_head,
    .log_chain = pgs_log_chain,
    .log_add = pgs_log_add,
    .feed_head = pgs_feed_head,
    .feed_chain = pgs_feed_chain,
    .feed_add = pgs_feed_add,
    .feed_has = pgs_feed_has,
    .read = pgs_read,
    .chunkref_add = pgs_chunkref_add,
    .chunk_listed = pgs_chunk_listed,
    .chunk_append = pgs_chunk_append,
    .chunk_sync = pgs_chunk_sync,
    .chunk_add = pgs_chunk_add,
    .chunk_find = pgs_chunk_find,
    .chunk_read = pgs_chunk_read,
    .chunk_live = pgs_chunk_live,
    .chunk_discard = pgs_chunk_discard,
    .logrec_add = pgs_logrec_add,
    .record_origin = pgs_record_origin,
    .retracted = pgs_retracted,
    .retract = pgs_retract,
    .record_readers = pgs_record_readers,
};

/* For store_pg_migrate.c: the handle's connection. */
PGconn *fv_sstore_pg_conn(fv_sstore *base);
PGconn *fv_sstore_pg_conn(fv_sstore *base)
{
    return base && base->ops == &pgs_ops ? ((pgs *)base)->conn : NULL;
}

void fv_sstore_pg_drop(fv_sstore *base)
{
    pgs *s = (pgs *)base;
    if (!base || base->ops != &pgs_ops)
        return;
    pgs_rollback(base);
    /* A schema made in the caller's transaction went with the rollback
     * (and what is there now is another's). */
    if (!s->create_tx)
        run_script(s, "DROP TABLE IF EXISTS meta, device, invite, log, "
                      "feed, chunkref, chunkdata, chunk, logrec, retracted, "
                      "schema_version; DROP SEQUENCE IF EXISTS chunkfile");
    if (s->made_dir) {
        /* The files this handle wrote into the directory it made (a
         * restore or a migration undone): numbers 1.. of its new
         * sequence, which no other server could see. */
        for (int64_t n = 1; s->cd && n <= s->made_max; n++)
            fv_chunkdir_destroy(s->cd, (uint64_t)n);
        fv_chunkdir_close(s->cd);
        s->cd = NULL;
        fv_chunkdir_remove(s->made_dir);
    }
}
