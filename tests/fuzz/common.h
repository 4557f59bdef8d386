/*
 * common.h - what the libFuzzer harnesses (tests/fuzz/fuzz_*.c) and the
 * seed corpus generator (make_corpus.c) share: scratch directories, copies
 * of the fixture (real vaults and a real server directory, written by
 * make_corpus), a server engine loaded from a server directory as
 * server/server.c loads it, and the device keys of a fixture vault.
 *
 * Every harness starts each input from a fresh copy of the fixture it
 * needs, in a scratch directory (under /dev/shm when it is writable, so
 * that copies cost no disk I/O), removed before the next input.
 */
#ifndef FV_FUZZ_COMMON_H
#define FV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "fieldvault.h"
#include "proto.h"
#include "server_engine.h"
#include "store_server.h"

/* Every fixture vault's passphrase, and the organisation key file's
 * recovery passphrase. */
#define FZ_PASS "fuzz"
#define FZ_RECOVERY "fuzz recovery"
/* The channel binding every fuzzed connection uses. */
extern const unsigned char fz_binding[32];
/* The engine clock: a fixed time, inside the fixture invites' validity. */
#define FZ_NOW 1800000000

/* Once per process: libsodium, the scratch root (removed at exit). Exits
 * on failure: a harness cannot run without them. */
void fz_init(void);
/* A fresh scratch path for one input, `name` under the root, written to
 * out: whatever an earlier input left there is removed first, and the
 * directory is made when `mkdir` is set. */
#define FZ_PATH_MAX 512
void fz_scratch(char out[FZ_PATH_MAX], const char *name, int mkdir);
/* The fixture's path for `name` (FV_FUZZ_FIXTURE in the environment, else
 * the source tree's tests/fuzz/fixture). */
void fz_fixture(char out[FZ_PATH_MAX], const char *name);
/* Copies the directory tree src to dst (which must not exist). */
int fz_copy_tree(const char *src, const char *dst);
void fz_rm_tree(const char *dir);
/* Writes n bytes to a new file at path. */
int fz_write_file(const char *path, const void *p, size_t n);
/* Reads a whole file (malloc'd, NUL-terminated); NULL on failure. */
unsigned char *fz_read_file(const char *path, size_t *n);

/* Copies fixture vault `name` into scratch slot `slot` and opens it. Exits
 * on failure (a damaged fixture is the rig's fault, not a finding). */
fv_vault *fz_vault_copy_open(const char *name, const char *slot);
/* The signing and box keys of fixture vault `name` (read once through a
 * scratch copy; the fixture is never written). org_sk is zero if the
 * vault holds no organisation key. */
typedef struct fz_keys {
    unsigned char sign_pk[32], sign_sk[64], box_pk[32], box_sk[32];
    int has_org;
    unsigned char org_pk[32], org_sk[32];
} fz_keys;
void fz_vault_keys(const char *name, fz_keys *k);

/* A server engine over the server directory `dir`, loaded as
 * fv_server_run loads it (store, epoch, receipt key, TLS pin, address). */
typedef struct fz_server {
    fv_sstore *st;
    fv_srv *srv;
    fv_srv_env env;
    unsigned char pin[32];
} fz_server;
int fz_server_open(fz_server *s, const char *dir);
void fz_server_close(fz_server *s);
/* The TLS pin of server directory `dir`. */
int fz_server_pin(const char *dir, unsigned char pin[32]);

/* Appends a valid HELLO by the device (pk, sk) for `pin` and fz_binding. */
int fz_hello(fv_out *o, const unsigned char pin[32], const unsigned char pk[32],
             const unsigned char sk[64]);
/* Feeds p[0..n) to the connection and takes everything it answers (into
 * `out` if not NULL) until neither side moves. */
typedef struct fz_buf {
    unsigned char *p;
    size_t len, cap;
} fz_buf;
void fz_buf_add(fz_buf *b, const void *p, size_t n);
void fz_buf_free(fz_buf *b);
void fz_srv_drive(fv_srv_conn *c, const unsigned char *p, size_t n,
                  fz_buf *out);

#endif
