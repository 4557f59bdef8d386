/*
 * server_stage.h - the server's files for a store named by a URL
 * (PostgreSQL, store_pg.h). Several serve processes, on several machines,
 * share such a store, so what a server directory keeps in files (tls.key,
 * tls.crt, receipt.key: server.h) is kept in the store's meta instead
 * ("tls_key", "tls_crt", "receipt_key"), and each process works on copies
 * in a private directory of its own (mode 0700, files 0600, under
 * $TMPDIR or /tmp), removed when it is done. Internal to server/.
 */
#ifndef FV_SERVER_STAGE_H
#define FV_SERVER_STAGE_H

#include "sstore.h"

/* Makes the private directory (*dir, malloc'd) and, if the store at `url`
 * exists, writes the server's files into it from the store. A store that
 * does not exist yet (server init) leaves it empty. FV_EDATABASE,
 * FV_ECORRUPT, FV_EVERSION, FV_EIO, FV_ENOMEM. */
int fv_stage_open(const char *url, char **dir);

/* Copies the files of `dir` named in `names` (NULL-terminated, of
 * "tls.key", "tls.crt", "receipt.key") into the store's meta. */
int fv_stage_save(fv_sstore *st, const char *dir, const char *const *names);

/* Overwrites the server's files in `dir` and removes them, and whatever
 * else is in it, and it; frees dir. NULL is harmless. */
void fv_stage_close(char *dir);

#endif
