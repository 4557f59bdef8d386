/*
 * server_engine.h - the server side of the sync protocol (docs/PROTOCOL.md)
 * as a sans-I/O engine, in the BearSSL style: the caller feeds the bytes it
 * received (fv_srv_conn_recv), sends what the engine offers
 * (fv_srv_conn_send_buf) and acknowledges what was sent
 * (fv_srv_conn_send_ack). The engine touches no socket, and reads no clock
 * or random source of its own: both come from the fv_srv_env the caller
 * passes in (and updates). server/server.c drives it over TLS; tests drive it
 * directly, byte by byte.
 *
 * An fv_srv holds what every connection shares (the store, the receipt key,
 * epoch, pin, organisation key). An fv_srv_conn is one connection. An fv_srv
 * and all its connections are used by one thread.
 *
 * Bounds: a frame's length is checked before its buffer grows (at most
 * FV_FRAME_MAX; at most FV_SRV_PREAUTH_FRAME_MAX before HELLO succeeded);
 * output is bounded: once more than FV_SRV_OUT_MAX bytes wait to be sent
 * (until they drain below FV_SRV_OUT_LOW), and while a PULL is being
 * streamed, fv_srv_conn_recv consumes nothing more, so a client that does
 * not read cannot make the server buffer without bound. A long PULL is
 * produced one ENTRIES frame at a time, as the output drains below
 * FV_SRV_OUT_LOW, and a CHUNK-GET one CHUNK frame at a time likewise.
 *
 * Attachment chunks (CHUNK-PUT) are checked (listed by an envelope of the
 * connected device, hashing to their name), written to the store's packs at
 * once, and made durable in batches: fdatasync of the pack, then one
 * transaction indexing the batch, and only then their CHUNK-ACKs. A batch
 * closes once FV_SRV_CHUNK_BATCH bytes or FV_SRV_CHUNK_PENDING chunks wait,
 * when fv_srv_conn_recv has consumed what it was given, before any other
 * message is handled, before an ERROR, and when the connection is freed
 * (so a cut connection keeps every chunk that arrived whole). Memory holds
 * the frame being read and, per pending chunk, its hash and place only.
 *
 * Signatures. An envelope's Ed25519 check is most of what a PUSH costs the
 * server. With FV_SRV_VERIFY_DEFERRED the engine does not check them
 * itself: a PUSH's frame pauses its connection and hands out one job per
 * envelope the log does not hold from that device (fv_srv_conn_verify_jobs);
 * the caller runs fv_srv_verify_envelope on each, on any threads it likes,
 * while it serves other connections, then calls fv_srv_conn_verify_done,
 * which checks the rest on the engine's thread, stores the batch in order
 * and queues the receipt exactly as an inline PUSH would (same refusals,
 * same first failing envelope, same log). The engine itself starts no
 * thread and does no I/O.
 */
#ifndef FV_SERVER_ENGINE_H
#define FV_SERVER_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "sstore.h"

#define FV_SRV_OUT_MAX (4u << 20)  /* stop reading above this much output */
#define FV_SRV_OUT_LOW (256u << 10) /* resume reading, or make the next
                                       ENTRIES frame, below this */
#define FV_SRV_ENTRIES_BYTES (900u << 10) /* envelope bytes per ENTRIES frame */
#define FV_SRV_PREAUTH_FRAME_MAX 4096 /* a HELLO is far smaller */
#define FV_SRV_HTTP_MAX 8192 /* an HTTP probe's request head, answered 400
                                beyond (nginx's default large buffer) */
#define FV_SRV_CONFIG_VERSION 1
#define FV_SRV_CHUNK_BATCH (8u << 20) /* chunk bytes written per durable batch */
#define FV_SRV_CHUNK_PENDING 1024    /* chunks per batch at most */

/* Fills buf with n random bytes. */
typedef void (*fv_srv_random_fn)(void *buf, size_t n, void *payload);
/* One line of log (no newline; never envelope content or key material). */
typedef void (*fv_srv_log_fn)(const char *line, void *payload);

/* The engine's view of the world, owned by the caller, who sets `now`
 * (Unix seconds) before feeding bytes. */
typedef struct fv_srv_env {
    int64_t now;
    fv_srv_random_fn random; /* required */
    void *random_payload;
    fv_srv_log_fn log; /* optional */
    void *log_payload;
} fv_srv_env;

typedef struct fv_srv_config {
    unsigned int version; /* FV_SRV_CONFIG_VERSION */
    fv_sstore *store;     /* borrowed: must outlive the fv_srv */
    const unsigned char *receipt_sk; /* Ed25519 secret key (64): copied into
                                        secure memory */
    const unsigned char *epoch;      /* FV_EPOCH_BYTES */
    const unsigned char *pin;        /* 32: this server's TLS key pin */
    const char *address;             /* host:port written into invites */
    fv_srv_env *env;                 /* borrowed: must outlive the fv_srv */
    unsigned int flags;              /* FV_SRV_VERIFY_DEFERRED, or 0 */
} fv_srv_config;

/* fv_srv_config.flags: PUSH signatures are checked by the caller
 * (fv_srv_conn_verify_jobs). */
#define FV_SRV_VERIFY_DEFERRED 1u

typedef struct fv_srv fv_srv;
typedef struct fv_srv_conn fv_srv_conn;

/* Makes the shared server state. The organisation key, if set, is read from
 * the store's meta ("org"). A database from an earlier build has its log
 * entries filed under their records first (once; it reads the whole log).
 * FV_EINVAL, FV_ENOMEM, FV_ECORRUPT, FV_EIO. Free with fv_srv_free after
 * every connection is freed. */
int fv_srv_new(fv_srv **out, const fv_srv_config *cfg);
/* Wipes the receipt key and frees. NULL is harmless. */
void fv_srv_free(fv_srv *s);

/* Makes an invite (docs/PROTOCOL.md, Invites): stores the hash of `token`
 * with the name, role and expiry, and writes the invite string (address,
 * pin, token, org key or none) into *out (malloc'd; the caller frees it).
 * Used for INVITE and by fv_server_init. Not inside a transaction of the
 * caller's. FV_EINVAL, FV_ENOMEM, FV_EIO... */
int fv_srv_invite_create(char **out, fv_sstore *st, const char *address,
                         const unsigned char pin[32], const unsigned char *org,
                         const char *name, size_t name_len, int role,
                         int64_t expires, const unsigned char token[16]);

/* Verifies and stores a batch of envelopes exactly as a PUSH from `author`
 * would, with no connection (a courier bundle read on the server): `author`
 * must be an enrolled device that is not revoked (FV_EDENIED if not); every
 * envelope is checked (size, structure, signature, written by `author`)
 * before anything is stored (FV_ECORRUPT if one fails: nothing is stored);
 * then the batch goes to the log and the feeds in one transaction, as a
 * PUSH's does. Envelopes already in the log keep their position. A note
 * or review state about a record the log does not hold, or an envelope its
 * author may not write (docs/PROTOCOL.md, PUSH), is FV_EDENIED, with
 * nothing of the batch stored; a retraction of a record the log never held
 * is acknowledged (seq 0) and not stored. A retraction erases its record as a PUSH's
 * does; an envelope of a retracted record is not stored (its seq is 0).
 *
 * With `author` NULL, each envelope's own author is used: the batch is
 * split into runs of envelopes by the same author, and every one of them
 * must be enrolled and not revoked (else FV_EDENIED, nothing stored); the
 * whole batch is still stored in one transaction.
 *
 * n is at most FV_PROTO_MAX_BATCH (FV_EINVAL). seqs (may be NULL; room for
 * n) receives each envelope's log position, *added (may be NULL) how many
 * were new. Writes no log line. FV_ENOMEM, FV_EIO, FV_ENOSPC... from the
 * store (the transaction is rolled back). A PUSH runs the same checks and
 * storage for the device that passed HELLO (not looked up again: a
 * revocation applies from its next connection). Uses the fv_srv's scratch:
 * call it on the thread that uses the fv_srv, between connection calls. */
int fv_srv_store_batch(fv_srv *s, const unsigned char *author,
                       const unsigned char *const *env, const size_t *len,
                       size_t n, uint64_t *seqs, size_t *added);

/* Stores one chunk of a courier bundle as a CHUNK-PUT would be stored:
 * listed by an envelope in the log (of any author), matching its hash,
 * durable before it is indexed. *added is 1 if it was new. FV_ENOTFOUND
 * (no envelope lists it) and FV_EPROTO (it does not match its hash) store
 * nothing; a chunk held already or of a retracted record is FV_OK with
 * *added 0. Also FV_EIO, FV_ENOSPC, FV_ENOMEM, FV_EINVAL. Same threading
 * rule as fv_srv_store_batch. */
int fv_srv_store_chunk(fv_srv *s, const unsigned char hash[32],
                       const unsigned char *data, size_t len, int *added);

enum fv_srv_state {
    FV_SRV_RUNNING = 0, /* exchanging frames */
    FV_SRV_CLOSING = 1, /* send what is queued, then close (BYE or ERROR) */
    FV_SRV_FAILED = 2   /* close now: nothing more can be sent */
};

/* A connection, once the TLS handshake is done: `binding` is its channel
 * binding (fv_tls_binding), which HELLO's signature must cover. `id` only
 * names the connection in log lines. FV_ENOMEM. */
int fv_srv_conn_new(fv_srv_conn **out, fv_srv *s,
                    const unsigned char binding[32], unsigned long id);
/* Makes the pending chunks durable first (nothing more can be sent: they
 * are found by the device's next CHUNK-QUERY). NULL is harmless. */
void fv_srv_conn_free(fv_srv_conn *c);

/* Consumes received bytes and handles every frame they complete. Returns
 * how many of the n bytes it took: fewer than n when it pauses (output over
 * FV_SRV_OUT_MAX, a PULL or CHUNK-GET being streamed, a PUSH waiting for
 * its signature checks, or the state left RUNNING); the caller keeps the
 * rest and offers it again after sending (or after the checks).
 * Before it returns, the chunks received are made durable and their
 * CHUNK-ACKs queued (as fv_srv_conn_flush). */
size_t fv_srv_conn_recv(fv_srv_conn *c, const unsigned char *p, size_t n);
/* The same for a caller that has more input at hand (an event loop that
 * reads one TLS record at a time): chunks received stay pending (written,
 * not yet durable nor acknowledged) until a batch fills, or the caller
 * calls fv_srv_conn_flush (do so whenever the input runs dry: the peer may
 * be waiting for the acknowledgements), fv_srv_conn_recv or
 * fv_srv_conn_free. A durable batch costs an fdatasync and a commit: one
 * per TLS record would cap uploads near the disk's sync rate. */
size_t fv_srv_conn_recv_more(fv_srv_conn *c, const unsigned char *p,
                             size_t n);
/* Makes the pending chunks durable and queues their CHUNK-ACKs. Returns 1
 * if it queued anything (there is output to send), else 0. A failure of
 * the store is reported to the peer (ERROR internal) and closes. */
int fv_srv_conn_flush(fv_srv_conn *c);

/* The signature checks a PUSH waits for (FV_SRV_VERIFY_DEFERRED). */
typedef struct fv_srv_verify {
    size_t n;                        /* envelopes to check (at least 1) */
    const unsigned char *const *env; /* their bytes */
    const size_t *len;
    int *result; /* the caller stores fv_srv_verify_envelope(env[i], len[i])
                    in result[i]; one left alone is checked by
                    fv_srv_conn_verify_done itself */
} fv_srv_verify;

/* 1 if the connection's PUSH waits for its checks, with *out filled; else
 * 0. Everything *out points to stays valid and unchanged, and the
 * connection takes no input (fv_srv_conn_wants_input is 0), until
 * fv_srv_conn_verify_done or fv_srv_conn_free: the caller must see every
 * check it handed to another thread finished (or never started) before it
 * calls either. Engine's thread. */
int fv_srv_conn_verify_jobs(fv_srv_conn *c, fv_srv_verify *out);
/* The checks of fv_srv_conn_verify_jobs are done: the PUSH is checked
 * further, stored and answered (or refused), and the connection takes
 * input again. Harmless if nothing waits. Engine's thread. */
void fv_srv_conn_verify_done(fv_srv_conn *c);
/* What an envelope's checks up to and with its signature say: FV_OK,
 * FV_ECORRUPT (too long, malformed, or not signed by the author it names),
 * FV_EVERSION, FV_ENOMEM. Touches nothing shared: any thread, at once. */
int fv_srv_verify_envelope(const unsigned char *env, size_t len);

/* The bytes waiting to be sent (NULL and 0 when none), valid until the next
 * call on the connection. */
const unsigned char *fv_srv_conn_send_buf(fv_srv_conn *c, size_t *len);
/* Reports that the first n of them were sent; may queue the next part of a
 * PULL. */
void fv_srv_conn_send_ack(fv_srv_conn *c, size_t n);

int fv_srv_conn_state(const fv_srv_conn *c); /* enum fv_srv_state */
/* 1 if fv_srv_conn_recv would take bytes now. */
int fv_srv_conn_wants_input(const fv_srv_conn *c);
/* 1 if part of a frame has arrived (its deadline is the caller's). */
int fv_srv_conn_in_frame(const fv_srv_conn *c);
/* 1 once HELLO succeeded. */
int fv_srv_conn_authenticated(const fv_srv_conn *c);
/* The connected device's public key (32 bytes, valid as long as the
 * connection), or NULL before HELLO succeeded. */
const unsigned char *fv_srv_conn_device(const fv_srv_conn *c);
/* The bytes of memory the connection's buffers hold now: the frame being
 * read (as allocated, which grows with the bytes that arrived) and the
 * output not yet sent. What an event loop counts against its budgets. */
size_t fv_srv_conn_buffered(const fv_srv_conn *c);
/* The protocol error sent to the peer (enum fv_proto_error), or 0. An
 * HTTP probe's answer (the first bytes looked like an HTTP request: a
 * 404 or 400 response, then closing) counts as FV_PERR_MALFORMED. */
int fv_srv_conn_error(const fv_srv_conn *c);

#endif
