/*
 * store_db.h - the SQLite plumbing under store.c (the vault's database) and
 * server/store_server.c (the server's). Internal to the store module: only
 * core/store*.c and server/store_server.c include this header, and with it
 * sqlite3.h.
 *
 * Functions that return int return FV_OK or an FV_E code; on failure the
 * handle's msg says more ("<label>: <what>: <SQLite's message>").
 */
#ifndef FV_STORE_DB_H
#define FV_STORE_DB_H

#include <stddef.h>
#include <sqlite3.h>

#define FV_DB_STMTS_MAX 40 /* cached statements per handle */

/* One kind of database: how to make it, and how to recognise it. Every
 * kind has the table meta(k TEXT PRIMARY KEY, v BLOB NOT NULL). */
typedef struct fv_db_schema {
    const char *label;      /* in messages: "database", "server database" */
    const char *create_sql; /* the tables, made in one transaction */
    int user_version;       /* a newer one is FV_EVERSION, another FV_ECORRUPT */
    /* migrations[v - 1] turns schema v into v + 1, for every v from 1 to
     * user_version - 1 (the array holds user_version - 1 entries, or is
     * NULL: no older schema is read). An older file is upgraded at open,
     * every step in one transaction, so that it is either wholly the old
     * schema or wholly the new one. A NULL entry: v cannot be upgraded
     * (FV_ECORRUPT, as an unknown schema). */
    const char *const *migrations;
    int application_id;     /* another one is FV_ECORRUPT (0: not checked) */
    const char *pragmas;    /* per connection, beside the common ones; or NULL */
    int missing_rc;         /* a missing file, when not creating */
    int constraint_rc;      /* what SQLITE_CONSTRAINT means to the callers */
    const char *const *stmt_sql; /* the cached statements, by id */
    int nstmts;                  /* at most FV_DB_STMTS_MAX */
    int check_stmts;             /* at open, every statement must compile */
} fv_db_schema;

/* Embedded in a store handle; used by one thread at a time. */
typedef struct fv_db {
    sqlite3 *db;
    const fv_db_schema *schema;
    sqlite3_stmt *st[FV_DB_STMTS_MAX]; /* by the store's statement ids */
    sqlite3_stmt *meta[2];             /* the meta table's (store_db.c) */
    char msg[160];
} fv_db;

/* Opens `path` (FV_EEXIST with `create` if a file is there,
 * schema->missing_rc without it if none is). On failure `d` is closed
 * already. */
int fv_db_open(fv_db *d, const char *path, int create,
               const fv_db_schema *schema);
/* Finalizes, checkpoints and closes; harmless on a closed `d`. */
void fv_db_close(fv_db *d);

/* Records SQLite code `rc` from doing `what`; returns its FV_E code. */
int fv_db_fail(fv_db *d, int rc, const char *what);
/* Records a message of our own; returns `rc`. */
int fv_db_error(fv_db *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Cached statement `id`, reset and unbound; NULL if it does not compile
 * (the step functions below then fail with SQLite's code). */
sqlite3_stmt *fv_db_stmt(fv_db *d, int id);
/* A statement of its own, which the caller finalizes: an iteration runs on
 * one so that its callback may use the handle meanwhile. */
int fv_db_prepare(fv_db *d, const char *sql, sqlite3_stmt **st,
                  const char *what);
int fv_db_exec(fv_db *d, const char *sql);
/* Steps a statement that returns no rows, then resets it. */
int fv_db_step_done(fv_db *d, sqlite3_stmt *st, const char *what);
/* Steps a query expected to return at most one row: FV_OK with the row
 * current (the caller reads it, then resets), FV_ENOTFOUND, or an error.
 * On anything but FV_OK the statement is already reset. */
int fv_db_step_row(fv_db *d, sqlite3_stmt *st, const char *what);
/* The first column of the first row of `sql`, a pragma or a count. */
int fv_db_pragma_int(fv_db *d, const char *sql, int *out);

int fv_db_begin(fv_db *d); /* BEGIN IMMEDIATE */
int fv_db_commit(fv_db *d);
void fv_db_rollback(fv_db *d); /* harmless outside a transaction */
int fv_db_checkpoint(fv_db *d); /* truncating; busy is no failure */

/* The meta table. *val is malloc'd (the caller frees it). FV_ENOTFOUND. */
int fv_db_meta_get(fv_db *d, const char *key, unsigned char **val,
                   size_t *len);
/* A value that must be exactly `len` bytes (FV_ECORRUPT if not). */
int fv_db_meta_get_fixed(fv_db *d, const char *key, void *val, size_t len);
int fv_db_meta_put(fv_db *d, const char *key, const void *val, size_t len);

/* The database under a vault's store handle (store.c), for the other
 * store files of the vault (store_devices.c). */
struct fv_store;
fv_db *fv_store_db(struct fv_store *s);

#endif
