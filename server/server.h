/*
 * server.h - the FieldVault sync server: its directory and its event loop.
 *
 * A server directory (mode 0700) holds:
 *   tls.key, tls.crt   the TLS identity (ECDSA P-256; devices pin its key).
 *                      tls.crt is self-signed and re-issued by the server
 *                      (same key) 30 days before it ends, unless the
 *                      operator installed one from a CA
 *   receipt.key        the Ed25519 key that signs receipts (64 raw bytes, 0600)
 *   server.db          envelopes (ciphertext), devices' public keys, invite
 *                      token hashes, the index of attachment chunks, and
 *                      meta: format, epoch, receipt public key, listen
 *                      address, organisation public key
 *   chunks/            attachment chunks (ciphertext) in append-only pack
 *                      files pack-000001, ... (0700, files 0600)
 * Nothing in it opens a testimony.
 *
 * fv_server_run serves devices over TLS on one thread with poll(): it
 * verifies every envelope before storing it (the signatures of a PUSH on a
 * pool of threads, while the loop serves other connections), and bounds what a client can
 * make it spend (connections, bytes buffered, time per handshake, frame and
 * idle period). See docs/PROTOCOL.md.
 */
#ifndef FV_SERVER_H
#define FV_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fieldvault_sync.h" /* fv_bundle_stats */

#define FV_SERVER_INVITE_TTL (30 * 24 * 3600) /* the first invite, seconds */

/* Creates a server in `dir` (made 0700 if missing) that will listen on
 * `listen` ("host:port", "[v6addr]:port"); the same address goes into
 * invites, so make it one devices can reach. Also makes the first invite:
 * single use, coordinator role, name "admin", valid 30 days. `pin` receives
 * the pin of the TLS key (what devices check), *admin_invite the invite
 * string (malloc'd; the caller frees it). Nothing is left behind on failure.
 * FV_EEXIST if a server is already there, FV_EINVAL (bad address), FV_EIO,
 * FV_ENOSPC, FV_ENOMEM. Any thread. */
int fv_server_init(const char *dir, const char *listen, unsigned char pin[32],
                   char **admin_invite);

/* fv_server_init with the host name of the TLS certificate (subject CN and
 * subjectAltName): `hostname` if not NULL (FV_EINVAL unless it is a DNS
 * host name), else the host of `listen` when it is a name, else the
 * machine's host name, else "localhost.localdomain". */
int fv_server_init_named(const char *dir, const char *listen,
                         const char *hostname, unsigned char pin[32],
                         char **admin_invite);

/* A certificate signing request (PEM, malloc'd into *pem) for the server's
 * pinned TLS key, for `hostname` (NULL: the name in the current
 * certificate), to send to a CA. */
int fv_server_csr(const char *dir, const char *hostname, char **pem);

/* Installs the certificate chain in the file at `chain_path` (PEM, leaf
 * first) as the server's certificate. The leaf must be for the server's
 * pinned key: FV_EPIN if not (nothing is changed), FV_ECORRUPT if a
 * certificate does not parse. A running server presents it to new
 * connections within 2 seconds (fv_server_run looks at the file's inode,
 * size and mtime). A CA's certificate is never re-issued by
 * the server: renewing it is the operator's task. */
int fv_server_cert_install(const char *dir, const char *chain_path);

/* Makes another invite in the server at `dir` (for instance when the admin
 * invite was lost or expired): role 1 (field) or 2 (coordinator), valid
 * `ttl` seconds (at most 30 days). May run while the server runs. */
int fv_server_invite(const char *dir, const char *name, int role,
                     uint64_t ttl, char **invite);

/* Imports a courier bundle (docs/PROTOCOL.md, "Courier bundles") into the
 * server at `dir`, opened as fv_server_run opens it: every envelope is
 * verified and stored exactly as a PUSH from its author would be (log and
 * feeds, one transaction per batch, known envelopes keep their position),
 * so importing a bundle twice changes nothing. Each envelope's author must
 * be an enrolled device that is not revoked. A bundle is written by one
 * device, but a batch of several authors is taken as runs of the same
 * author, still in one transaction. *count (may be NULL) receives how many
 * envelopes were read, *added how many were new to the log, both counting
 * only batches stored. May run while the server runs (SQLite WAL; each
 * batch waits its turn to write). Logs nothing.
 *
 * A damaged or truncated file keeps what came before the fault: FV_ECORRUPT. An envelope that
 * fails verification (FV_ECORRUPT), an author not enrolled or revoked, or
 * an envelope its author may not write (a review state from a field device,
 * a note about a record the server does not hold...: FV_EDENIED) stops the
 * import at its batch: nothing of that batch is
 * stored, the batches before it stay. Also FV_ENOTFOUND (no bundle there,
 * or no server), FV_EVERSION, FV_EIO, FV_ENOSPC, FV_ENOMEM, FV_EINVAL. */
int fv_server_import(const char *dir, const char *path, uint64_t *count,
                     uint64_t *added);
/* As fv_server_import, also for attachment chunks: each is checked and
 * stored as a CHUNK-PUT is (listed by an envelope in the log, matching its
 * hash, durable before it is indexed), so that its author's next sync
 * finds it held. Items are stored as they are read: a file cut short or
 * damaged keeps what came before (FV_ECORRUPT, *why then a fixed message,
 * stats->truncated for a cut). A chunk that does not match its hash is
 * left out and counted, the rest stored, and the call returns FV_ECORRUPT;
 * one no envelope lists is ignored and counted. stats (may be NULL) is
 * filled also on failure. */
int fv_server_import_with(const char *dir, const char *path,
                          fv_bundle_stats *stats, const char **why);

/* Moves the server in directory `from` (stopped) into the new PostgreSQL
 * store `to` ("postgresql://..."; README, "PostgreSQL"): devices, invites,
 * the log, feeds, receipts' key, chunks (into the chunk directory of
 * fv_server_set_chunks if one is set), and the TLS and receipt keys, so
 * that devices keep their pin and identities and sync on. `from` is left
 * as it was. *envelopes, *devices, *chunks (may be NULL) receive the
 * counts. FV_EEXIST if `to` holds any table (or the chunk directory any
 * file), FV_ENOTFOUND if `from` holds no server, FV_EDATABASE,
 * FV_ECORRUPT, FV_EVERSION, FV_EIO; FV_EINVAL in a build without
 * PostgreSQL. One transaction: nothing is left in `to` on failure. */
int fv_server_migrate(const char *from, const char *to, uint64_t *envelopes,
                      uint64_t *devices, uint64_t *chunks);

/* `--chunks DIR`: the PostgreSQL stores this process opens afterwards
 * (fv_server_init*, fv_server_run...) keep attachment chunks as files in
 * `dir`, which several servers may share (README, "PostgreSQL";
 * store_pg.h, fv_sstore_pg_set_chunks). NULL: in the database. FV_EINVAL
 * in a build without PostgreSQL, FV_ENOMEM. Process-wide: call it before
 * the server starts. */
int fv_server_set_chunks(const char *dir);

/* Writes the server directory `dir` (SQLite store) into one new file at
 * `output` (mode 0600: it holds the server's private keys), consistent
 * while `serve` runs: the database copied at one instant and each chunk
 * pack up to what that copy references, then the key and certificate
 * files (docs/PROTOCOL.md, "Server backups"). The file is written under a
 * temporary name, synced and linked into place. *files and *bytes (may be
 * NULL) receive what it holds. FV_ENOTFOUND if no server is at `dir`,
 * FV_EEXIST if `output` exists, FV_EBUSY, FV_ECORRUPT, FV_EIO, FV_ENOSPC.
 * On failure a one-line reason is in msg (msg_size bytes, may be NULL) and
 * nothing is left at `output`.
 *
 * `dir` may name a PostgreSQL store ("postgresql://..."; its chunk
 * directory as fv_server_set_chunks says): read in one REPEATABLE READ
 * snapshot while serve processes write, written as the same file, staged
 * as a server directory beside `output` (as much room again) and removed.
 * FV_EDATABASE; FV_EINVAL in a build without PostgreSQL. */
int fv_server_backup(const char *dir, const char *output, uint64_t *files,
                     uint64_t *bytes, char *msg, size_t msg_size);

/* Makes the server directory `dir` (missing or empty) again from the
 * backup at `input`, checked whole (its hash, its names, its limits) as
 * it is written into a temporary directory beside `dir` that is renamed
 * into place only when complete and synced. FV_EEXIST if `dir` is not
 * empty, FV_ENOTFOUND if `input` is missing, FV_ECORRUPT for a damaged or
 * cut file, FV_EVERSION for a newer format, FV_EIO, FV_ENOSPC; on failure
 * nothing is left at `dir` and a one-line reason is in msg.
 *
 * `dir` may name an empty PostgreSQL database: the file is restored and
 * checked whole in a private directory under $TMPDIR first, then moved in
 * as by fv_server_migrate (one transaction; the chunk directory of
 * fv_server_set_chunks, if set, made and filled), and the directory wiped
 * and removed. FV_EEXIST if the database holds any table or the chunk
 * directory any file, FV_EDATABASE. */
int fv_server_restore(const char *input, const char *dir, uint64_t *files,
                      uint64_t *bytes, char *msg, size_t msg_size);

/* One line per event (no newline): connections, enrollments, push counts,
 * errors. Never envelope content, key material or client addresses. */
typedef void (*fv_server_log_fn)(const char *line, void *payload);
/* Called once the server listens: the host and the bound port. */
typedef void (*fv_server_ready_fn)(const char *host, int port, void *payload);

typedef struct fv_server_options {
    unsigned int version;        /* FV_SERVER_OPTIONS_VERSION */
    const char *listen;          /* "host:port" (port 0: any free one);
                                    NULL: the address given at init */
    unsigned int max_connections; /* 0: 1024; over it, accepted and closed */
    unsigned int handshake_ms;   /* 0: 10 s, from accept until HELLO is
                                    accepted */
    unsigned int idle_ms;        /* 0: 60 s without a byte moving */
    unsigned int frame_ms;       /* 0: 120 s from a frame's first byte to
                                    its last */
    fv_server_log_fn log;        /* NULL: "fieldvault serve: ..." on stderr */
    void *log_payload;
    fv_server_ready_fn ready;    /* optional */
    void *ready_payload;
    atomic_int *stop;            /* optional: non-zero stops the server
                                    (see fv_server_run) */
    /* What one peer can make the server hold (SECURITY.md, "Server
     * resources"). Before HELLO succeeds a connection is "pre-auth": at
     * most max_connections / 4 of them, half of those from one address
     * (IPv6: one /64); when full, the idlest pre-auth connection is closed
     * to make room for the new one (one that never sent a byte first). */
    unsigned int max_per_address; /* 0: 128 connections from one address;
                                     over it, the new one is closed */
    unsigned int max_per_device;  /* 0: 4 connections of one device; over
                                     it, its oldest is closed */
    unsigned int memory_mib;      /* 0: 64 MiB (16 to 65536) that frame and
                                     output buffers may hold in all; one
                                     device a quarter, one address half;
                                     over it, the connection holding most
                                     is closed */
    /* Version 2. */
    int verify_threads; /* threads that check PUSH signatures (at most
                           FV_SERVER_VERIFY_MAX); 0: none, the loop's own
                           thread checks them; FV_SERVER_VERIFY_AUTO (the
                           default): one per online CPU. A PUSH of a few
                           envelopes is checked on the loop's thread. */
} fv_server_options;

#define FV_SERVER_VERIFY_AUTO (-1)
#define FV_SERVER_VERIFY_MAX 64

/* Version 1 (no verify_threads) is accepted too: it verifies with one
 * thread per CPU. */
#define FV_SERVER_OPTIONS_VERSION 2
#define FV_SERVER_OPTIONS_INIT                                              \
    {FV_SERVER_OPTIONS_VERSION, NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL, \
     NULL, 0, 0, 0, FV_SERVER_VERIFY_AUTO}

/* Runs the server in `dir` until *opts->stop becomes non-zero, then closes
 * every connection, checkpoints the database and returns FV_OK. The flag is
 * read with atomic_load at least every 200 ms; set it with atomic_store from
 * any thread, or from a signal handler (atomic_int is lock-free wherever
 * FieldVault builds, which is what makes that async-signal-safe in C11). A
 * signal that interrupts the server's own thread is seen at once. `opts` may
 * be NULL for the defaults (then it runs until the process ends). Returns an
 * error only if it cannot start: FV_ENOTFOUND (no server there),
 * FV_ECORRUPT, FV_EVERSION, FV_ENET (cannot listen), FV_EINVAL, FV_EIO,
 * FV_ENOMEM. Runs on the calling thread (plus verify_threads threads it
 * starts and joins); several servers may run in one process on different
 * directories. */
int fv_server_run(const char *dir, const fv_server_options *opts);

#endif
