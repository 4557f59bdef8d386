/* server_migrate.c - a server directory moved into PostgreSQL
 * (fv_server_migrate, server.h). */
#include "server.h"

#include <stdlib.h>
#include <sys/stat.h>

#include "fieldvault.h"
#include "crypto.h"
#include "fileio.h"
#include "server_stage.h"
#include "sstore.h"
#ifdef FV_HAVE_POSTGRESQL
#include "store_pg.h"
#endif

int fv_server_migrate(const char *from, const char *to, uint64_t *envelopes,
                      uint64_t *devices, uint64_t *chunks)
{
#ifdef FV_HAVE_POSTGRESQL
    static const char *const files[] = {"tls.key", "tls.crt", "receipt.key",
                                        NULL};
    fv_sstore_migrated n = {0};
    fv_sstore *pg = NULL;
    struct stat sb;
    char *db = NULL;
    int rc;

    if (envelopes)
        *envelopes = 0;
    if (devices)
        *devices = 0;
    if (chunks)
        *chunks = 0;
    if (!from || !to || !fv_sstore_is_pg(to) || fv_sstore_is_pg(from))
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    if (!(db = fv_path_join(from, "server.db")))
        return FV_ENOMEM;
    if (stat(db, &sb) != 0) {
        free(db);
        return FV_ENOTFOUND;
    }
    if ((rc = fv_sstore_open(&pg, to, FV_SSTORE_PG_CREATE_TX))) {
        free(db);
        return rc;
    }
    /* Schema, tables, chunks and keys: one transaction. */
    rc = fv_sstore_pg_import_sqlite(pg, db, &n);
    if (rc == FV_OK)
        rc = fv_stage_save(pg, from, files);
    if (rc == FV_OK)
        rc = fv_sstore_commit(pg);
    if (rc == FV_ENOTFOUND)
        rc = FV_ECORRUPT; /* a server directory without its keys */
    if (rc)
        fv_sstore_pg_drop(pg);
    fv_sstore_close(pg);
    free(db);
    if (rc == FV_OK) {
        if (envelopes)
            *envelopes = n.envelopes;
        if (devices)
            *devices = n.devices;
        if (chunks)
            *chunks = n.chunks;
    }
    return rc;
#else
    (void)from;
    (void)to;
    (void)envelopes;
    (void)devices;
    (void)chunks;
    return FV_EINVAL;
#endif
}
