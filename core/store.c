/* store.c - the vault's SQLite file (see store.h). */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "fieldvault.h"
#include "store_db.h"

/* Hot statements are prepared once per handle. */
enum stmt_id {
    ST_ENV_INSERT,
    ST_ENV_GET,
    ST_EDGE_INSERT,
    ST_EDGE_HAS_CHILD,
    ST_HEAD_DELETE,
    ST_HEAD_INSERT,
    ST_CHUNKREF_INSERT,
    ST_CHUNK_PUT,
    ST_CHUNK_GET,
    ST_EACH_HEAD,
    ST_RECORD_HEADS,
    ST_RECORD_ENVS,
    ST_RECORDS_BETWEEN,
    ST_GRANT_INSERT,
    ST_GRANTS,
    ST_OUTBOX,
    ST_DELIVERED,
    ST_RECEIPT_INSERT,
    ST_ENV_RECORD,
    ST_CONFLICT_SET,
    ST_CONFLICT_CLEAR,
    ST_CHUNK_HAS,
    ST_CHUNK_REFERENCED,
    ST_CHUNK_DELIVERED,
    ST_CHUNK_OUTBOX,
    ST_CHUNK_MISSING,
    ST_REVIEW_PUT,
    ST_REVIEW_GET,
    ST_NOTE_PUT,
    ST_NOTE_COUNT,
    ST_RETRACTED,
    ST_NOTES_OF,
    ST_CHUNK_LEN,
    ST_CHUNK_UNSENT,
    ST_DEVICE_GET,
    ST_COUNT
};

/* The heads of record ?1 that are revisions (not tombstones). */
#define LIVE_HEADS "(SELECT count(*) FROM envelope e JOIN head h ON h.eseq = " \
                   "e.seq WHERE e.record = ?1 AND e.kind = 1)"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_ENV_INSERT] = "INSERT OR IGNORE INTO envelope(id, record, kind, bytes, "
                      "own, mac, ckey) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_ENV_GET] = "SELECT e.id, e.record, e.kind, e.bytes, "
                   "EXISTS(SELECT 1 FROM head h WHERE h.eseq = e.seq), e.mac, e.ckey "
                   "FROM envelope e WHERE e.id = ?1",
    [ST_EDGE_INSERT] = "INSERT OR IGNORE INTO edge(parent, child) VALUES (?1, ?2)",
    [ST_EDGE_HAS_CHILD] = "SELECT 1 FROM edge WHERE parent = ?1 LIMIT 1",
    [ST_HEAD_DELETE] = "DELETE FROM head WHERE eseq = (SELECT seq FROM "
                       "envelope WHERE id = ?2 AND record = ?1)",
    [ST_HEAD_INSERT] = "INSERT OR IGNORE INTO head(eseq, rseq) VALUES ("
                       "(SELECT seq FROM envelope WHERE id = ?2), (SELECT "
                       "min(seq) FROM envelope WHERE record = ?1))",
    [ST_CHUNKREF_INSERT] = "INSERT OR IGNORE INTO chunkref(hash, envelope) "
                           "VALUES (?1, ?2)",
    [ST_CHUNK_PUT] = "INSERT OR IGNORE INTO chunk(hash, data, delivered) "
                     "VALUES (?1, ?2, ?3)",
    [ST_CHUNK_GET] = "SELECT data FROM chunk WHERE hash = ?1",
    /* Records in the order their first envelope arrived. */
    [ST_EACH_HEAD] = "SELECT e.id, e.record, e.kind, e.bytes, 1, e.mac, e.ckey "
                     "FROM head h INDEXED BY head_order "
                     "JOIN envelope e ON e.seq = h.eseq ORDER BY h.rseq, h.eseq",
    [ST_RECORD_HEADS] = "SELECT e.id, e.record, e.kind, e.bytes, 1, e.mac, e.ckey "
                        "FROM envelope e JOIN head h ON h.eseq = e.seq "
                        "WHERE e.record = ?1 ORDER BY e.seq",
    /* A record's revisions and tombstones; its key grants, notes, review
     * states and retractions (kinds 3 to 6) stand beside its history, not
     * in it. */
    [ST_RECORD_ENVS] = "SELECT e.id, e.record, e.kind, e.bytes, "
                       "EXISTS(SELECT 1 FROM head h WHERE h.eseq = e.seq), "
                       "e.mac, e.ckey FROM envelope e WHERE e.record = ?1 "
                       "AND e.kind IN (1, 2) ORDER BY e.seq",
    [ST_RECORDS_BETWEEN] = "SELECT DISTINCT record FROM envelope "
                           "WHERE record BETWEEN ?1 AND ?2 LIMIT ?3",
    [ST_GRANT_INSERT] = "INSERT OR IGNORE INTO grant_of(target, grant_id) "
                        "VALUES (?1, ?2)",
    [ST_GRANTS] = "SELECT e.bytes FROM grant_of g JOIN envelope e "
                  "ON e.id = g.grant_id WHERE g.target = ?1 AND e.bytes IS NOT NULL",
    /* ?3: 1 for the key grants (kind 3), 0 for the rest. */
    [ST_OUTBOX] = "SELECT seq, id, bytes FROM envelope WHERE own AND NOT delivered "
                  "AND seq > ?1 AND bytes IS NOT NULL AND (kind = 3) = ?3 "
                  "ORDER BY seq LIMIT ?2",
    [ST_DELIVERED] = "UPDATE envelope SET delivered = ?2 WHERE id = ?1",
    [ST_RECEIPT_INSERT] = "INSERT INTO receipt(sealed) VALUES (?1)",
    [ST_ENV_RECORD] = "SELECT record FROM envelope WHERE id = ?1",
    [ST_CONFLICT_SET] = "INSERT OR IGNORE INTO conflict(record) SELECT ?1 "
                        "WHERE " LIVE_HEADS " > 1",
    [ST_CONFLICT_CLEAR] = "DELETE FROM conflict WHERE record = ?1 AND "
                          LIVE_HEADS " <= 1",
    [ST_CHUNK_HAS] = "SELECT 1 FROM chunk WHERE hash = ?1",
    [ST_CHUNK_LEN] = "SELECT length(data) FROM chunk WHERE hash = ?1",
    [ST_CHUNK_REFERENCED] = "SELECT 1 FROM chunkref WHERE hash = ?1 LIMIT 1",
    [ST_CHUNK_DELIVERED] = "UPDATE chunk SET delivered = 1 WHERE hash = ?1",
    /* Chunks of own envelopes whose receipts are in, not yet acknowledged;
     * paged by hash. */
    [ST_CHUNK_OUTBOX] = "SELECT c.hash, length(c.data) FROM chunk c "
                        "INDEXED BY chunk_outbox WHERE NOT c.delivered "
                        "AND c.hash > ?1 AND EXISTS (SELECT 1 FROM chunkref r "
                        "JOIN envelope e ON e.id = r.envelope WHERE "
                        "r.hash = c.hash AND e.own AND e.delivered = 1) "
                        "ORDER BY c.hash LIMIT ?2",
    /* As the outbox, whether or not the envelopes' receipts are in: what a
     * courier bundle carries. */
    [ST_CHUNK_UNSENT] = "SELECT c.hash, length(c.data) FROM chunk c "
                        "INDEXED BY chunk_outbox WHERE NOT c.delivered "
                        "AND c.hash > ?1 AND EXISTS (SELECT 1 FROM chunkref r "
                        "JOIN envelope e ON e.id = r.envelope WHERE "
                        "r.hash = c.hash AND e.own) "
                        "ORDER BY c.hash LIMIT ?2",
    /* A certified device (store_devices.c's table): asked once per
     * envelope a coordinator imports, hence cached here. */
    [ST_DEVICE_GET] = "SELECT role, enrolled, revoked FROM device WHERE pk = ?1",
    /* Chunks that stored envelopes list and this vault does not hold. */
    [ST_CHUNK_MISSING] = "SELECT DISTINCT r.hash FROM chunkref r WHERE "
                         "r.hash > ?1 AND NOT EXISTS (SELECT 1 FROM chunk c "
                         "WHERE c.hash = r.hash) ORDER BY r.hash LIMIT ?2",
    /* The newest review state wins: by time, then by the larger id. */
    [ST_REVIEW_PUT] = "INSERT INTO review(record, id, time, state) VALUES "
                      "(?1, ?2, ?3, ?4) ON CONFLICT(record) DO UPDATE SET "
                      "id = excluded.id, time = excluded.time, state = "
                      "excluded.state WHERE excluded.time > review.time OR "
                      "(excluded.time = review.time AND excluded.id > review.id)",
    [ST_REVIEW_GET] = "SELECT state, time FROM review WHERE record = ?1",
    [ST_NOTE_PUT] = "INSERT OR IGNORE INTO note(id, record) VALUES (?1, ?2)",
    [ST_NOTE_COUNT] = "SELECT count(*) FROM note WHERE record = ?1",
    [ST_RETRACTED] = "SELECT 1 FROM envelope WHERE record = ?1 AND kind = 6 "
                     "LIMIT 1",
    [ST_NOTES_OF] = "SELECT e.id, e.record, e.kind, e.bytes, 0, e.mac, e.ckey "
                    "FROM note n JOIN envelope e ON e.id = n.id "
                    "WHERE n.record = ?1 AND e.bytes IS NOT NULL ORDER BY e.seq",
};

static const char schema_sql[] =
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
    /* seq: local arrival order. bytes: NULL once a delete destroyed it. */
    /* own: written by this device; delivered: the server's receipt for it is
     * committed (the outbox is own AND NOT delivered): 1 stored, 2 refused
     * by the server (out of the outbox, never counted delivered). mac: keyed BLAKE2b of
     * bytes, stored once their signature was verified (docs/FORMAT.md 10).
     * ckey: its content key wrapped under a vault subkey, so that reading
     * it again costs no X25519 (schema 2; NULL: none). */
    "CREATE TABLE envelope(seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
    " record BLOB NOT NULL, kind INTEGER NOT NULL, bytes BLOB,"
    " own INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,"
    " mac BLOB, ckey BLOB);"
    "CREATE INDEX envelope_record ON envelope(record, seq);"
    "CREATE INDEX envelope_outbox ON envelope(seq) WHERE own AND NOT delivered;"
    /* A key grant names the envelope whose key it carries (docs/FORMAT.md). */
    "CREATE TABLE grant_of(target BLOB NOT NULL, grant_id BLOB NOT NULL,"
    " PRIMARY KEY(target, grant_id)) WITHOUT ROWID;"
    /* Signed server receipts, kept as evidence of delivery, sealed under
     * the vault key (their times and log positions are the organisation's
     * activity; docs/FORMAT.md 4). */
    "CREATE TABLE receipt(seq INTEGER PRIMARY KEY, sealed BLOB NOT NULL);"
    "CREATE TABLE edge(parent BLOB NOT NULL, child BLOB NOT NULL,"
    " PRIMARY KEY(parent, child)) WITHOUT ROWID;"
    /* A head by the local seq of its envelope (eseq) and of its record's
     * first envelope (rseq), so that listing walks an index instead of
     * sorting rows (a sort could spill envelopes to a temporary file outside
     * the vault). Integer keys: a new record's head goes at the end of both
     * b-trees; keyed by the random 32-byte ids, every arriving envelope
     * dirtied a page of its own. */
    "CREATE TABLE head(eseq INTEGER PRIMARY KEY, rseq INTEGER NOT NULL);"
    "CREATE INDEX head_order ON head(rseq, eseq);"
    /* Records with more than one head that is a revision (kept by
     * fv_store_env_put). */
    "CREATE TABLE conflict(record BLOB PRIMARY KEY) WITHOUT ROWID;"
    /* delivered: for a chunk of this device's own envelopes, the server
     * acknowledged storing it (the chunk outbox is the rest). */
    "CREATE TABLE chunk(hash BLOB PRIMARY KEY, data BLOB NOT NULL,"
    " delivered INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX chunk_outbox ON chunk(hash) WHERE NOT delivered;"
    "CREATE TABLE chunkref(hash BLOB NOT NULL, envelope BLOB NOT NULL,"
    " PRIMARY KEY(hash, envelope)) WITHOUT ROWID;"
    "CREATE INDEX chunkref_envelope ON chunkref(envelope);"
    /* The coordinator's desk: the newest review state this vault can read
     * per record, and the notes it can read. Retractions are envelopes of
     * kind 6 and need no table. */
    "CREATE TABLE review(record BLOB PRIMARY KEY, id BLOB NOT NULL,"
    " time INTEGER NOT NULL, state INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE note(id BLOB PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX note_record ON note(record);"
    /* Who may speak (store_devices.c, docs/FORMAT.md 15): the devices the
     * organisation certified, and envelopes kept apart until their author's
     * certificate arrives. */
    "CREATE TABLE device(pk BLOB PRIMARY KEY, role INTEGER NOT NULL,"
    " enrolled INTEGER NOT NULL, revoked INTEGER, cert BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE quarantine(id BLOB PRIMARY KEY, author BLOB NOT NULL,"
    " kind INTEGER NOT NULL, why INTEGER NOT NULL, courier INTEGER NOT NULL,"
    " arrived INTEGER NOT NULL, bytes BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX quarantine_author ON quarantine(author);";

/* Schema 1 to 2: the wrapped content keys (envelope.ckey). */
static const char *const migrations[] = {
    "ALTER TABLE envelope ADD COLUMN ckey BLOB;",
};

static const fv_db_schema vault_schema = {
    .label = "database",
    .create_sql = schema_sql,
    .user_version = 2,
    .migrations = migrations,
    /* 'FVVT': tells a vault's database from a server's ('FVSV'). */
    .application_id = 0x46565654,
    /* secure_delete: freed pages are zeroed, so a deleted record's
     * ciphertext and wrapped keys do not linger (see SECURITY.md).
     * temp_store: sorts and temporary tables stay in memory, never in a
     * file outside the vault. */
    .pragmas = "PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;",
    .missing_rc = FV_ENOVAULT,
    /* Inserts here are OR IGNORE, OR REPLACE or take a fresh seq: a
     * constraint that still fails means a damaged file, not a duplicate. */
    .constraint_rc = FV_ECORRUPT,
    .stmt_sql = stmt_sql,
    .nstmts = ST_COUNT,
    .check_stmts = 1,
};
_Static_assert(ST_COUNT <= FV_DB_STMTS_MAX, "statement cache");

struct fv_store {
    fv_db d;
};

fv_db *fv_store_db(fv_store *s) { return &s->d; }

const char *fv_store_errmsg(const fv_store *s)
{
    return s ? s->d.msg : "database: no handle";
}

int fv_store_open(fv_store **out, const char *path, int create)
{
    fv_store *s = calloc(1, sizeof *s);
    int rc;

    *out = NULL;
    if (!s)
        return FV_ENOMEM;
    if ((rc = fv_db_open(&s->d, path, create, &vault_schema))) {
        free(s);
        return rc;
    }
    *out = s;
    return FV_OK;
}

void fv_store_close(fv_store *s)
{
    if (s)
        fv_db_close(&s->d);
    free(s);
}

int fv_store_begin(fv_store *s) { return fv_db_begin(&s->d); }

int fv_store_commit(fv_store *s) { return fv_db_commit(&s->d); }

void fv_store_rollback(fv_store *s) { fv_db_rollback(&s->d); }
int fv_store_bulk_begin(fv_store *s) { return fv_db_bulk_begin(&s->d); }
int fv_store_bulk_end(fv_store *s) { return fv_db_bulk_end(&s->d); }

int fv_store_checkpoint(fv_store *s) { return fv_db_checkpoint(&s->d); }

int fv_store_meta_get(fv_store *s, const char *key, unsigned char **val,
                      size_t *len)
{
    return fv_db_meta_get(&s->d, key, val, len);
}

int fv_store_meta_put(fv_store *s, const char *key, const void *val,
                      size_t len)
{
    return fv_db_meta_put(&s->d, key, val, len);
}

static int bind_id(sqlite3_stmt *st, int col, const unsigned char *id)
{
    return sqlite3_bind_blob(st, col, id, 32, SQLITE_STATIC);
}

int fv_store_env_put(fv_store *s, const fv_store_env *e,
                     const unsigned char (*parents)[32], size_t nparents,
                     const unsigned char (*chunks)[32], size_t nchunks,
                     int *added)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_ENV_INSERT);
    int rc;
    size_t i;

    *added = 0;
    if (st) {
        bind_id(st, 1, e->id);
        bind_id(st, 2, e->record);
        sqlite3_bind_int(st, 3, e->kind);
        sqlite3_bind_blob64(st, 4, e->bytes, e->len, SQLITE_STATIC);
        sqlite3_bind_int(st, 5, e->own);
        if (e->mac)
            sqlite3_bind_blob(st, 6, e->mac, 32, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 6);
        if (e->ckey)
            sqlite3_bind_blob(st, 7, e->ckey, FV_STORE_CKEY_BYTES, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 7);
    }
    if ((rc = fv_db_step_done(&s->d, st, "envelope")))
        return rc;
    if (sqlite3_changes(s->d.db) == 0)
        return FV_OK; /* already stored: content addresses are idempotent */
    *added = 1;
    if (e->grant) {
        /* A grant stands beside the revision graph, not in it. */
        for (i = 0; i < nparents && rc == FV_OK; i++) {
            st = fv_db_stmt(&s->d, ST_GRANT_INSERT);
            if (st) {
                bind_id(st, 1, parents[i]);
                bind_id(st, 2, e->id);
            }
            rc = fv_db_step_done(&s->d, st, "grant");
        }
        return rc;
    }
    /* Notes, review states and retractions (kinds 4 to 6) are about the
     * record, not in its revision graph: no edge, no head. */
    if (e->kind >= 4)
        return FV_OK;

    for (i = 0; i < nparents; i++) {
        /* A revision continues its parents' record, never another one. */
        st = fv_db_stmt(&s->d, ST_ENV_RECORD);
        if (st)
            bind_id(st, 1, parents[i]);
        rc = fv_db_step_row(&s->d, st, "envelope");
        if (rc == FV_OK) {
            int other = sqlite3_column_bytes(st, 0) != 32 ||
                        memcmp(sqlite3_column_blob(st, 0), e->record, 32);
            sqlite3_reset(st);
            if (other)
                return fv_db_error(&s->d, FV_ECORRUPT, "a revision names "
                                   "a parent of another record");
        } else if (rc != FV_ENOTFOUND) {
            return rc;
        }
        st = fv_db_stmt(&s->d, ST_EDGE_INSERT);
        if (st) {
            bind_id(st, 1, parents[i]);
            bind_id(st, 2, e->id);
        }
        if ((rc = fv_db_step_done(&s->d, st, "edge")))
            return rc;
        st = fv_db_stmt(&s->d, ST_HEAD_DELETE);
        if (st) {
            bind_id(st, 1, e->record);
            bind_id(st, 2, parents[i]);
        }
        if ((rc = fv_db_step_done(&s->d, st, "head")))
            return rc;
    }
    for (i = 0; i < nchunks; i++) {
        st = fv_db_stmt(&s->d, ST_CHUNKREF_INSERT);
        if (st) {
            bind_id(st, 1, chunks[i]);
            bind_id(st, 2, e->id);
        }
        if ((rc = fv_db_step_done(&s->d, st, "chunk reference")))
            return rc;
    }
    /* An envelope that arrives after one of its children is no head. */
    st = fv_db_stmt(&s->d, ST_EDGE_HAS_CHILD);
    if (st)
        bind_id(st, 1, e->id);
    if ((rc = fv_db_step_row(&s->d, st, "edge")) == FV_OK)
        sqlite3_reset(st);
    if (rc == FV_ENOTFOUND) {
        st = fv_db_stmt(&s->d, ST_HEAD_INSERT);
        if (st) {
            bind_id(st, 1, e->record);
            bind_id(st, 2, e->id);
        }
        rc = fv_db_step_done(&s->d, st, "head");
    }
    if (rc)
        return rc;
    /* The record's heads changed: keep its entry in the conflict table
     * right, so that counting conflicts never scans the vault. */
    st = fv_db_stmt(&s->d, ST_CONFLICT_SET);
    if (st)
        bind_id(st, 1, e->record);
    if ((rc = fv_db_step_done(&s->d, st, "conflict")))
        return rc;
    st = fv_db_stmt(&s->d, ST_CONFLICT_CLEAR);
    if (st)
        bind_id(st, 1, e->record);
    return fv_db_step_done(&s->d, st, "conflict");
}

static void row_env(sqlite3_stmt *st, fv_store_env *e)
{
    e->id = sqlite3_column_blob(st, 0);
    e->record = sqlite3_column_blob(st, 1);
    e->kind = sqlite3_column_int(st, 2);
    e->bytes = sqlite3_column_blob(st, 3);
    e->len = (size_t)sqlite3_column_bytes(st, 3);
    e->head = sqlite3_column_int(st, 4);
    e->mac = sqlite3_column_count(st) > 5 && sqlite3_column_bytes(st, 5) == 32
                 ? sqlite3_column_blob(st, 5)
                 : NULL;
    e->ckey = sqlite3_column_count(st) > 6 &&
                      sqlite3_column_bytes(st, 6) == FV_STORE_CKEY_BYTES
                  ? sqlite3_column_blob(st, 6)
                  : NULL;
}

static int row_valid(sqlite3_stmt *st)
{
    return sqlite3_column_bytes(st, 0) == 32 &&
           sqlite3_column_bytes(st, 1) == 32;
}

int fv_store_env_get(fv_store *s, const unsigned char id[32],
                     unsigned char record[32], int *kind,
                     unsigned char **bytes, size_t *len, unsigned char *mac)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_ENV_GET);
    fv_store_env e;
    int rc;

    *bytes = NULL;
    *len = 0;
    if (st)
        bind_id(st, 1, id);
    if ((rc = fv_db_step_row(&s->d, st, "envelope")))
        return rc;
    if (!row_valid(st))
        rc = FV_ECORRUPT;
    else {
        row_env(st, &e);
        memcpy(record, e.record, 32);
        *kind = e.kind;
        if (mac) {
            if (e.mac)
                memcpy(mac, e.mac, 32);
            else
                memset(mac, 0, 32);
        }
        if (e.bytes) {
            *bytes = malloc(e.len ? e.len : 1);
            if (!*bytes)
                rc = FV_ENOMEM;
            else {
                memcpy(*bytes, e.bytes, e.len);
                *len = e.len;
            }
        }
    }
    sqlite3_reset(st);
    return rc;
}

/* Steps a query and calls fn per row. The statement is reset on every path
 * so a nested query on the same handle cannot see it half-run. */
static int each_row(fv_store *s, sqlite3_stmt *st, fv_store_env_fn fn,
                    void *payload)
{
    int rc, r = FV_OK;
    fv_store_env e;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!row_valid(st)) {
            r = FV_ECORRUPT;
            break;
        }
        row_env(st, &e);
        if ((r = fn(&e, payload)) != 0)
            break;
    }
    if (r == FV_OK && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "query");
    sqlite3_reset(st);
    return r;
}

/* Iterations run on the cached statement (preparing one per call cost as
 * much as the query, per record in an export); a callback may still call
 * other store functions, and when it runs the same iteration again that
 * nested one gets a statement of its own. */
static int each_query(fv_store *s, enum stmt_id id, const unsigned char *rec,
                      fv_store_env_fn fn, void *payload)
{
    sqlite3_stmt *st = s->d.st[id];
    int rc, own = st && sqlite3_stmt_busy(st);
    if (own) {
        if ((rc = fv_db_prepare(&s->d, stmt_sql[id], &st, "query")))
            return rc;
    } else if (!(st = fv_db_stmt(&s->d, id))) {
        return fv_db_fail(&s->d, sqlite3_errcode(s->d.db), "query");
    }
    if (rec)
        bind_id(st, 1, rec);
    rc = each_row(s, st, fn, payload);
    if (own)
        sqlite3_finalize(st);
    return rc;
}

int fv_store_each_head(fv_store *s, fv_store_env_fn fn, void *payload)
{
    return each_query(s, ST_EACH_HEAD, NULL, fn, payload);
}

int fv_store_record_heads(fv_store *s, const unsigned char record[32],
                          fv_store_env_fn fn, void *payload)
{
    return each_query(s, ST_RECORD_HEADS, record, fn, payload);
}

int fv_store_record_envs(fv_store *s, const unsigned char record[32],
                         fv_store_env_fn fn, void *payload)
{
    return each_query(s, ST_RECORD_ENVS, record, fn, payload);
}

int fv_store_records_between(fv_store *s, const unsigned char lo[32],
                             const unsigned char hi[32],
                             unsigned char (*out)[32], size_t max,
                             size_t *count)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_RECORDS_BETWEEN);
    int rc;
    *count = 0;
    if (!st)
        return fv_db_fail(&s->d, sqlite3_errcode(s->d.db), "records");
    bind_id(st, 1, lo);
    bind_id(st, 2, hi);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32)
            continue;
        memcpy(out[*count], sqlite3_column_blob(st, 0), 32);
        (*count)++;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? FV_OK : fv_db_fail(&s->d, rc, "records");
}

int fv_store_chunk_put(fv_store *s, const unsigned char hash[32],
                       const void *data, size_t len, int delivered)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_CHUNK_PUT);
    if (st) {
        bind_id(st, 1, hash);
        sqlite3_bind_blob64(st, 2, data, len, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, delivered != 0);
    }
    return fv_db_step_done(&s->d, st, "chunk");
}

/* 1 if a single-row query on `hash` finds a row, 0 if not, or an error. */
static int hash_exists(fv_store *s, enum stmt_id id, const unsigned char hash[32])
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, id);
    int rc;
    if (st)
        bind_id(st, 1, hash);
    rc = fv_db_step_row(&s->d, st, "chunk");
    if (rc == FV_OK) {
        sqlite3_reset(st);
        return 1;
    }
    return rc == FV_ENOTFOUND ? 0 : rc;
}

int fv_store_chunk_has(fv_store *s, const unsigned char hash[32])
{
    return hash_exists(s, ST_CHUNK_HAS, hash);
}

int fv_store_chunk_len(fv_store *s, const unsigned char hash[32], size_t *len)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_CHUNK_LEN);
    int rc;
    if (st)
        bind_id(st, 1, hash);
    rc = fv_db_step_row(&s->d, st, "chunk");
    if (rc == FV_OK) {
        *len = (size_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 1;
    }
    return rc == FV_ENOTFOUND ? 0 : rc;
}

int fv_store_chunk_referenced(fv_store *s, const unsigned char hash[32])
{
    return hash_exists(s, ST_CHUNK_REFERENCED, hash);
}

int fv_store_chunk_delivered(fv_store *s, const unsigned char hash[32])
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_CHUNK_DELIVERED);
    if (st)
        bind_id(st, 1, hash);
    return fv_db_step_done(&s->d, st, "chunk");
}

/* Pages through a hash query: up to max hashes greater than `after`. */
static int hash_page(fv_store *s, enum stmt_id id, const unsigned char after[32],
                     size_t max, fv_store_hash_fn fn, void *payload)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, id);
    int rc, r = 0;
    if (!st)
        return fv_db_fail(&s->d, sqlite3_errcode(s->d.db), "chunks");
    bind_id(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32) {
            r = FV_ECORRUPT;
            break;
        }
        if ((r = fn(sqlite3_column_blob(st, 0),
                    id != ST_CHUNK_MISSING ? (uint64_t)sqlite3_column_int64(st, 1) : 0,
                    payload)) != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "chunks");
    sqlite3_reset(st);
    return r;
}

int fv_store_chunk_outbox(fv_store *s, const unsigned char after[32], size_t max,
                          fv_store_hash_fn fn, void *payload)
{
    return hash_page(s, ST_CHUNK_OUTBOX, after, max, fn, payload);
}

int fv_store_chunk_unsent(fv_store *s, const unsigned char after[32], size_t max,
                          fv_store_hash_fn fn, void *payload)
{
    return hash_page(s, ST_CHUNK_UNSENT, after, max, fn, payload);
}

int fv_store_chunk_missing(fv_store *s, const unsigned char after[32], size_t max,
                           fv_store_hash_fn fn, void *payload)
{
    return hash_page(s, ST_CHUNK_MISSING, after, max, fn, payload);
}

int fv_store_chunk_get(fv_store *s, const unsigned char hash[32],
                       unsigned char *buf, size_t cap, size_t *len)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_CHUNK_GET);
    int rc, n;
    if (st)
        bind_id(st, 1, hash);
    if ((rc = fv_db_step_row(&s->d, st, "chunk")))
        return rc;
    n = sqlite3_column_bytes(st, 0);
    if ((size_t)n > cap)
        rc = FV_ECORRUPT;
    else {
        memcpy(buf, sqlite3_column_blob(st, 0), (size_t)n);
        *len = (size_t)n;
    }
    sqlite3_reset(st);
    return rc;
}

/* Destroys the ciphertext and the wrapped content keys of the record's
 * envelopes but `keep`: all of them, or (drop) only its revisions,
 * tombstones and grants. */
static int purge(fv_store *s, const unsigned char record[32],
                 const unsigned char keep[32], int drop)
{
#define KINDS " AND (?3 = 0 OR kind IN (1, 2, 3))"
    static const char *const sql[] = {
        "DELETE FROM chunkref WHERE envelope IN (SELECT id FROM envelope "
        "WHERE record = ?1 AND id <> ?2" KINDS ")",
        "UPDATE envelope SET bytes = NULL, ckey = NULL WHERE record = ?1 "
        "AND id <> ?2" KINDS,
        "DELETE FROM chunk WHERE NOT EXISTS (SELECT 1 FROM chunkref r "
        "WHERE r.hash = chunk.hash)",
    };
#undef KINDS
    int rc = FV_OK;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0] && rc == FV_OK; i++) {
        sqlite3_stmt *st;
        if ((rc = fv_db_prepare(&s->d, sql[i], &st, "purge")))
            break;
        if (i < 2) {
            bind_id(st, 1, record);
            bind_id(st, 2, keep);
            sqlite3_bind_int(st, 3, drop);
        }
        rc = fv_db_step_done(&s->d, st, "purge");
        sqlite3_finalize(st);
    }
    return rc;
}

int fv_store_purge_record(fv_store *s, const unsigned char record[32],
                          const unsigned char keep[32])
{
    return purge(s, record, keep, 0);
}

int fv_store_drop_record(fv_store *s, const unsigned char record[32])
{
    static const unsigned char none[32]; /* no envelope has this id */
    return purge(s, record, none, 1);
}

/* ---- the coordinator's desk ------------------------------------------ */

int fv_store_review_put(fv_store *s, const unsigned char record[32],
                        const unsigned char id[32], int64_t time, int state)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_REVIEW_PUT);
    if (st) {
        bind_id(st, 1, record);
        bind_id(st, 2, id);
        sqlite3_bind_int64(st, 3, time);
        sqlite3_bind_int(st, 4, state);
    }
    return fv_db_step_done(&s->d, st, "review");
}

int fv_store_review_get(fv_store *s, const unsigned char record[32],
                        int *state, int64_t *time)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_REVIEW_GET);
    int rc;
    if (st)
        bind_id(st, 1, record);
    if ((rc = fv_db_step_row(&s->d, st, "review")))
        return rc;
    *state = sqlite3_column_int(st, 0);
    *time = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return FV_OK;
}

int fv_store_note_put(fv_store *s, const unsigned char id[32],
                      const unsigned char record[32])
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_NOTE_PUT);
    if (st) {
        bind_id(st, 1, id);
        bind_id(st, 2, record);
    }
    return fv_db_step_done(&s->d, st, "note");
}

int fv_store_note_count(fv_store *s, const unsigned char record[32],
                        size_t *count)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_NOTE_COUNT);
    int rc;
    if (st)
        bind_id(st, 1, record);
    if ((rc = fv_db_step_row(&s->d, st, "note")))
        return rc;
    *count = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return FV_OK;
}

int fv_store_notes(fv_store *s, const unsigned char *record,
                   fv_store_env_fn fn, void *payload)
{
    static const char all[] = "SELECT e.id, e.record, e.kind, e.bytes, 0, e.mac, e.ckey "
                              "FROM note n JOIN envelope e ON e.id = n.id "
                              "WHERE e.bytes IS NOT NULL ORDER BY e.seq";
    sqlite3_stmt *st;
    int rc;
    if (record) /* per record in an export: the cached statement */
        return each_query(s, ST_NOTES_OF, record, fn, payload);
    if ((rc = fv_db_prepare(&s->d, all, &st, "notes")))
        return rc;
    rc = each_row(s, st, fn, payload);
    sqlite3_finalize(st);
    return rc;
}

int fv_store_retracted(fv_store *s, const unsigned char record[32])
{
    return hash_exists(s, ST_RETRACTED, record);
}

int fv_store_each_kind(fv_store *s, int kind, fv_store_env_fn fn,
                       void *payload)
{
    static const char sql[] = "SELECT id, record, kind, bytes, 0, mac, ckey FROM envelope "
                              "WHERE kind = ?1 AND bytes IS NOT NULL "
                              "ORDER BY seq";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "envelopes");
    if (rc)
        return rc;
    sqlite3_bind_int(st, 1, kind);
    rc = each_row(s, st, fn, payload);
    sqlite3_finalize(st);
    return rc;
}

int fv_store_env_own(fv_store *s, const unsigned char id[32])
{
    static const char sql[] = "SELECT own FROM envelope WHERE id = ?1";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "envelope");
    if (rc)
        return rc;
    bind_id(st, 1, id);
    rc = fv_db_step_row(&s->d, st, "envelope");
    if (rc == FV_OK)
        rc = sqlite3_column_int(st, 0) != 0;
    else if (rc == FV_ENOTFOUND)
        rc = 0;
    sqlite3_finalize(st);
    return rc;
}

int fv_store_retract_record(fv_store *s, const unsigned char record[32])
{
    /* ENVS: every envelope of the record but its retractions. */
#define ENVS "(SELECT id FROM envelope WHERE record = ?1 AND kind <> 6)"
    static const char *const sql[] = {
        "DELETE FROM chunkref WHERE envelope IN " ENVS,
        "DELETE FROM grant_of WHERE target IN " ENVS " OR grant_id IN " ENVS,
        "DELETE FROM edge WHERE child IN " ENVS " OR parent IN " ENVS,
        "DELETE FROM head WHERE eseq IN (SELECT seq FROM envelope WHERE "
        "record = ?1)",
        "DELETE FROM conflict WHERE record = ?1",
        "DELETE FROM review WHERE record = ?1",
        "DELETE FROM note WHERE record = ?1",
        "DELETE FROM envelope WHERE record = ?1 AND kind <> 6",
        "DELETE FROM chunk WHERE NOT EXISTS (SELECT 1 FROM chunkref r "
        "WHERE r.hash = chunk.hash)",
    };
#undef ENVS
    int rc = FV_OK;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0] && rc == FV_OK; i++) {
        sqlite3_stmt *st;
        if ((rc = fv_db_prepare(&s->d, sql[i], &st, "retract")))
            break;
        if (sqlite3_bind_parameter_count(st) > 0)
            bind_id(st, 1, record);
        rc = fv_db_step_done(&s->d, st, "retract");
        sqlite3_finalize(st);
    }
    return rc;
}

int fv_store_grants(fv_store *s, const unsigned char target[32],
                    fv_store_blob_fn fn, void *payload)
{
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, stmt_sql[ST_GRANTS], &st, "grants"), r = 0;
    if (rc)
        return rc;
    bind_id(st, 1, target);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = fn(sqlite3_column_blob(st, 0),
                    (size_t)sqlite3_column_bytes(st, 0), payload)) != 0)
            break;
    if (r == 0 && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "grants");
    sqlite3_finalize(st);
    return r;
}

/* One pass of the outbox: the key grants (`grants` 1) or the rest, from
 * local seq `after`; positions are reported shifted by `shift`. *n counts
 * the rows given to fn. */
static int outbox_pass(fv_store *s, int grants, int64_t after, int64_t shift,
                       size_t max, size_t *n, fv_store_outbox_fn fn,
                       void *payload)
{
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, stmt_sql[ST_OUTBOX], &st, "outbox"), r = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    sqlite3_bind_int(st, 3, grants);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) != 32 || seq <= 0 ||
            seq >= FV_STORE_OUTBOX_SPAN) {
            r = FV_ECORRUPT;
            break;
        }
        ++*n;
        if ((r = fn(seq + shift, sqlite3_column_blob(st, 1),
                    sqlite3_column_blob(st, 2),
                    (size_t)sqlite3_column_bytes(st, 2), payload)) != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = fv_db_fail(&s->d, rc, "outbox");
    sqlite3_finalize(st);
    return r;
}

int fv_store_outbox(fv_store *s, int64_t after, size_t max,
                    fv_store_outbox_fn fn, void *payload)
{
    size_t n = 0;
    int r = 0;
    /* Key grants first: a grant opens a record written before the device
     * knew the organisation's key, and is written (with a later seq) when
     * it learns it. Sent after what it opens, a cut sync would leave the
     * server holding records no coordinator can read until the next sync;
     * sent first, the server never holds such a record without its grant
     * (a grant without its target opens nothing and harms nothing). */
    if (after < FV_STORE_OUTBOX_SPAN) {
        r = outbox_pass(s, 1, after < 0 ? 0 : after, 0, max, &n, fn, payload);
        after = FV_STORE_OUTBOX_SPAN;
    }
    if (r == 0 && n < max)
        r = outbox_pass(s, 0, after - FV_STORE_OUTBOX_SPAN,
                        FV_STORE_OUTBOX_SPAN, max - n, &n, fn, payload);
    return r;
}

int fv_store_delivered(fv_store *s, const unsigned char *sealed, size_t len,
                       const unsigned char *const *ids,
                       const unsigned char *refused, size_t n)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_RECEIPT_INSERT);
    int rc;
    if (st)
        sqlite3_bind_blob64(st, 1, sealed, len, SQLITE_STATIC);
    if ((rc = fv_db_step_done(&s->d, st, "receipt")))
        return rc;
    for (size_t i = 0; i < n && rc == FV_OK; i++) {
        st = fv_db_stmt(&s->d, ST_DELIVERED);
        if (st) {
            bind_id(st, 1, ids[i]);
            sqlite3_bind_int(st, 2, refused && refused[i] ? 2 : 1);
        }
        rc = fv_db_step_done(&s->d, st, "delivered");
    }
    return rc;
}

int fv_store_undeliver_all(fv_store *s)
{
    /* The chunks too: a server that lost an envelope lost its chunks. The
     * next sync's CHUNK-QUERY finds those it still holds, which then move
     * no bytes. */
    int rc = fv_db_exec(&s->d, "UPDATE envelope SET delivered = 0 "
                               "WHERE own AND delivered");
    if (rc == FV_OK)
        rc = fv_db_exec(&s->d, "UPDATE chunk SET delivered = 0 WHERE "
                               "delivered AND EXISTS (SELECT 1 FROM chunkref r "
                               "JOIN envelope e ON e.id = r.envelope WHERE "
                               "r.hash = chunk.hash AND e.own)");
    return rc;
}

int fv_store_own_envelopes(fv_store *s, fv_store_env_fn fn, void *payload)
{
    static const char sql[] = "SELECT id, record, kind, bytes, 0, mac, ckey FROM envelope "
                              "WHERE own AND bytes IS NOT NULL AND kind <> 3 "
                              "ORDER BY seq";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "envelopes");
    if (rc)
        return rc;
    rc = each_row(s, st, fn, payload);
    sqlite3_finalize(st);
    return rc;
}

int fv_store_conflicts(fv_store *s, size_t *count)
{
    static const char sql[] = "SELECT count(*) FROM conflict";
    int n = 0, rc = fv_db_pragma_int(&s->d, sql, &n);
    *count = (size_t)n;
    return rc;
}

/* A record this device wrote is delivered once every own envelope of it has
 * its receipt and every chunk those envelopes list was acknowledged. */
#define RECORD_DELIVERED(r)                                                   \
    "NOT EXISTS (SELECT 1 FROM envelope x WHERE x.record = " r " AND x.own "  \
    "AND x.delivered <> 1 AND x.bytes IS NOT NULL) AND NOT EXISTS (SELECT 1 "\
    "FROM chunkref cr JOIN envelope y ON y.id = cr.envelope LEFT JOIN chunk " \
    "c ON c.hash = cr.hash WHERE y.record = " r " AND y.own AND "            \
    "(c.hash IS NULL OR NOT c.delivered))"

int fv_store_record_delivered(fv_store *s, const unsigned char record[32],
                              int *delivered)
{
    static const char sql[] = "SELECT " RECORD_DELIVERED("?1");
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "delivered");
    if (rc)
        return rc;
    bind_id(st, 1, record);
    rc = fv_db_step_row(&s->d, st, "delivered");
    if (rc == FV_OK)
        *delivered = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

int fv_store_delivered_records(fv_store *s, int (*fn)(const unsigned char *record,
                                                      void *payload),
                               void *payload)
{
    /* Records this device created, with something left to destroy. */
    static const char sql[] =
        "SELECT g.record FROM envelope g WHERE g.id = g.record AND g.own AND "
        "EXISTS (SELECT 1 FROM envelope b WHERE b.record = g.record AND "
        "b.bytes IS NOT NULL AND b.kind = 1) AND " RECORD_DELIVERED("g.record");
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "delivered"), r = 0;
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32) {
            r = FV_ECORRUPT;
            break;
        }
        if ((r = fn(sqlite3_column_blob(st, 0), payload)) != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "delivered");
    sqlite3_finalize(st);
    return r;
}

int fv_store_pending_upload(fv_store *s, uint64_t *bytes)
{
    /* Own envelopes without a receipt, and chunks of own envelopes not yet
     * acknowledged: what a sync has ahead of it to send. */
    static const char sql[] =
        "SELECT (SELECT total(length(bytes)) FROM envelope WHERE own AND NOT "
        "delivered AND bytes IS NOT NULL) + (SELECT total(length(c.data)) FROM "
        "chunk c INDEXED BY chunk_outbox WHERE NOT c.delivered AND EXISTS "
        "(SELECT 1 FROM chunkref r JOIN envelope e ON e.id = r.envelope WHERE "
        "r.hash = c.hash AND e.own))";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "pending");
    if (rc)
        return rc;
    rc = fv_db_step_row(&s->d, st, "pending");
    if (rc == FV_OK)
        *bytes = (uint64_t)sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* ---- chain of custody and evidence ---------------------------------------- */

int fv_store_each_envelope(fv_store *s, fv_store_env_fn fn, void *payload)
{
    static const char sql[] = "SELECT e.id, e.record, e.kind, e.bytes, "
                              "EXISTS(SELECT 1 FROM head h WHERE h.eseq = "
                              "e.seq), e.mac, e.ckey FROM envelope e "
                              "ORDER BY e.seq";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "envelopes");
    if (rc)
        return rc;
    rc = each_row(s, st, fn, payload);
    sqlite3_finalize(st);
    return rc;
}

int fv_store_record_all_envs(fv_store *s, const unsigned char record[32],
                             fv_store_env_fn fn, void *payload)
{
    static const char sql[] = "SELECT e.id, e.record, e.kind, e.bytes, "
                              "EXISTS(SELECT 1 FROM head h WHERE h.eseq = "
                              "e.seq), e.mac, e.ckey FROM envelope e "
                              "WHERE e.record = ?1 ORDER BY e.seq";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "envelopes");
    if (rc)
        return rc;
    bind_id(st, 1, record);
    rc = each_row(s, st, fn, payload);
    sqlite3_finalize(st);
    return rc;
}

int fv_store_each_chunk(fv_store *s, fv_store_chunk_fn fn, void *payload)
{
    static const char sql[] = "SELECT hash, data FROM chunk ORDER BY hash";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "chunks"), r = 0;
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32) {
            r = FV_ECORRUPT;
            break;
        }
        if ((r = fn(sqlite3_column_blob(st, 0), sqlite3_column_blob(st, 1),
                    (size_t)sqlite3_column_bytes(st, 1), payload)) != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "chunks");
    sqlite3_finalize(st);
    return r;
}

int fv_store_each_receipt(fv_store *s, fv_store_receipt_fn fn, void *payload)
{
    static const char sql[] = "SELECT seq, sealed FROM receipt ORDER BY seq";
    sqlite3_stmt *st;
    int rc = fv_db_prepare(&s->d, sql, &st, "receipts"), r = 0;
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((r = fn(sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
                    (size_t)sqlite3_column_bytes(st, 1), payload)) != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fv_db_fail(&s->d, rc, "receipts");
    sqlite3_finalize(st);
    return r;
}

int fv_store_device_get(fv_store *s, const unsigned char pk[32],
                        fv_store_device *d)
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_DEVICE_GET);
    int rc;
    if (st)
        sqlite3_bind_blob(st, 1, pk, 32, SQLITE_STATIC);
    if ((rc = fv_db_step_row(&s->d, st, "device")))
        return rc;
    memset(d, 0, sizeof *d);
    memcpy(d->pk, pk, 32);
    d->role = sqlite3_column_int(st, 0);
    d->enrolled = sqlite3_column_int64(st, 1);
    d->has_revoked = sqlite3_column_type(st, 2) != SQLITE_NULL;
    d->revoked = sqlite3_column_int64(st, 2);
    sqlite3_reset(st);
    return FV_OK;
}

int fv_store_env_record(fv_store *s, const unsigned char id[32],
                        unsigned char record[32])
{
    sqlite3_stmt *st = fv_db_stmt(&s->d, ST_ENV_RECORD);
    int rc;
    if (st)
        bind_id(st, 1, id);
    if ((rc = fv_db_step_row(&s->d, st, "envelope")))
        return rc;
    if (sqlite3_column_bytes(st, 0) != 32)
        rc = FV_ECORRUPT;
    else
        memcpy(record, sqlite3_column_blob(st, 0), 32);
    sqlite3_reset(st);
    return rc;
}
