/*
 * fieldvault_sync.h - syncing a vault with its organisation's server
 * (docs/PROTOCOL.md): enrollment, sync, and the coordinator's requests.
 *
 * Conventions as in fieldvault.h. Every call here opens one TLS connection
 * to the server the vault is enrolled with (or `options->server`), pins the
 * server's key, and closes it before returning. The vault handle must not be
 * used by another thread during the call. On failure, fv_vault_errmsg(v)
 * says what happened.
 */
#ifndef FIELDVAULT_SYNC_H
#define FIELDVAULT_SYNC_H

#include <stdint.h>

#include "fieldvault.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FV_PROTOCOL_VERSION 2 /* docs/PROTOCOL.md; the one place: the engine,
                                 the client and the server read it */

/* FV_PROTOCOL_VERSION of this library: the newest sync protocol it speaks
 * (it speaks every version from 1 up to it). */
FV_API int fv_protocol_version(void);

typedef struct fv_sync_options {
    unsigned int version;   /* FV_SYNC_OPTIONS_VERSION */
    const char *server;     /* "host:port" instead of the enrolled address */
    int timeout_ms;         /* connect + handshake deadline (a refused,
                               timed-out or cut connect is tried again
                               within it, after waits doubling from
                               0.25 s to 8 s, jittered), then the
                               longest stretch without progress (a whole
                               frame, or 4 KiB moved); 0 = 30 s */
    /* Called as the sync moves: bytes of envelopes and attachment chunks
     * done, and the total known so far (it grows as work is found).
     * Non-zero cancels (FV_ECANCELED); what was committed stays committed. */
    fv_progress_fn progress;
    void *progress_payload;
    /* Appended in version 2. The proxy to reach the server through:
     * "socks5h://[USER:PASS@]HOST:PORT" (Tor: socks5h://127.0.0.1:9050; the
     * proxy resolves the server's name), "socks5://..." (this device
     * resolves it), "http://[USER:PASS@]HOST:PORT" (HTTP CONNECT). The
     * device then connects to nothing but the proxy. "none": connect
     * directly. NULL: the vault's remembered proxy (fv_vault_set_proxy),
     * if any. A malformed URL is FV_EINVAL; a proxy that cannot be reached,
     * refuses or fails, FV_EPROXY; one that says the server is out of its
     * reach, FV_ENET. */
    const char *proxy;
} fv_sync_options;

#define FV_SYNC_OPTIONS_VERSION 2
#define FV_SYNC_OPTIONS_INIT {FV_SYNC_OPTIONS_VERSION, 0, 0, 0, 0, 0}

/* Caller-allocated: start from FV_SYNC_RESULT_INIT, which sets size (the
 * library fills only what size covers, so the struct can grow; FV_EINVAL
 * for a size smaller than this struct at 1.0). */
typedef struct fv_sync_result {
    size_t size;             /* sizeof(fv_sync_result) */
    uint64_t pushed;         /* envelopes delivered (receipts committed) */
    uint64_t pulled;         /* envelopes received and verified */
    uint64_t added;          /* of those, new to this vault */
    size_t conflicts;        /* records with concurrent edits, after sync */
    int role;                /* enum fv_role */
    uint64_t bytes_sent;     /* application bytes, after the TLS handshake */
    uint64_t bytes_received;
    unsigned roundtrips;     /* waits for the server after the handshake */
    uint64_t chunks_sent;    /* attachment chunks the server now holds */
    uint64_t chunks_received;    /* verified against their envelopes, stored */
    uint64_t chunks_unavailable; /* listed, not yet uploaded by their author */
    uint64_t chunks_rejected;    /* failed verification: dropped, asked for
                                    again at the next sync */
    size_t dropped;          /* records dropped after delivery (retention) */
    /* Appended: envelopes pulled whose content this vault opened and found
     * malformed (docs/FORMAT.md): not stored, not acted on. */
    uint64_t refused;
    /* Appended: FV_ROLLBACK_BEHIND or FV_ROLLBACK_DIVERGED if the server's
     * log went back or differed from what this vault had read or been
     * receipted (a server restored from an older backup): the vault put
     * everything it wrote back in its outbox and read its feed again from
     * the start, in this call (docs/PROTOCOL.md, PULL); else 0. */
    int rollback;
    /* Appended: envelopes of this vault the server refused (its receipt
     * names each with a reason, docs/PROTOCOL.md): kept here, not sent
     * again. */
    uint64_t rejected;
} fv_sync_result;

/* fv_sync_result.rollback */
enum fv_rollback {
    FV_ROLLBACK_BEHIND = 1,  /* the log is shorter, or lost what it receipted */
    FV_ROLLBACK_DIVERGED = 2 /* the log differs at this vault's position */
};

#define FV_SYNC_RESULT_INIT \
    {sizeof(fv_sync_result), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

/* Remembers in vault `v` the proxy its connections go through when the
 * options name none (see fv_sync_options.proxy); NULL or "none" forgets
 * it. Stored sealed (it may hold a password). FV_EINVAL for a malformed
 * URL (the message says why, without the credentials). */
FV_API int fv_vault_set_proxy(fv_vault *v, const char *url);

/* The vault's remembered proxy, as it may be shown: "socks5h://HOST:PORT",
 * without its credentials. *url is the caller's (fv_free() it), NULL when none is
 * set; *has_credentials (may be NULL) is 1 when it holds USER:PASS. */
FV_API int fv_vault_get_proxy(fv_vault *v, char **url, int *has_credentials);

/* Pushes every envelope the server has not acknowledged and pulls what is
 * new for this device. FV_ENOTFOUND if the vault is not enrolled; FV_ENET,
 * FV_EPIN, FV_ETLS, FV_EDENIED, FV_EPROTO, FV_ECANCELED, FV_EPROXY. FV_EBUSY, before
 * connecting, while another sync, enroll or org request of the same vault
 * directory runs (any process or handle: a flock on DIR/sync.lock). */
FV_API int fv_sync(fv_vault *v, fv_sync_result *result,
                   const fv_sync_options *options);

/* A sync as an object, for apps that run it on a worker thread and cancel
 * it from another (a "Stop" button). fv_sync() is new + run + free. */
typedef struct fv_sync_session fv_sync_session;

/* Prepares a sync of vault `v` (borrowed: it must outlive the session and
 * not be used by another thread while fv_sync_session_run runs). */
FV_API int fv_sync_session_new(fv_sync_session **out, fv_vault *v,
                               const fv_sync_options *options);

/* Runs the sync, as fv_sync. May be called again after it returns (a
 * cancelled or cut sync resumes where the committed state left it). */
FV_API int fv_sync_session_run(fv_sync_session *s, fv_sync_result *result);

/* Asks a running (or the next) fv_sync_session_run to stop: it returns
 * FV_ECANCELED promptly, even while waiting on the network, and what was
 * committed stays committed. Any thread, any time; async-signal-safe. The
 * request is used up by the run it stops: the next run starts afresh. */
FV_API void fv_sync_session_cancel(fv_sync_session *s);

/* Frees the session. Not while fv_sync_session_run runs. NULL is harmless. */
FV_API void fv_sync_session_free(fv_sync_session *s);

/* Redeems an invite: the vault enrolls with the server it names (or
 * options->server) and remembers it. *role (may be NULL) receives the role.
 * FV_EINVITE (damaged, used or expired), FV_EEXIST (already enrolled). */
FV_API int fv_enroll(fv_vault *v, int *role, const char *invite,
                     const fv_sync_options *options);

/* Coordinator: creates the organisation's key pair in this vault and
 * publishes its public half to the server. */
FV_API int fv_org_init(fv_vault *v, const fv_sync_options *options);

/* Coordinator: asks the server for a single-use invite for a new device
 * called `name` with `role`, valid `ttl_seconds` (at most 30 days).
 * *invite is the caller's: fv_free() it (it is a secret until used:
 * fv_wipe it first). */
FV_API int fv_org_invite(fv_vault *v, char **invite, const char *name,
                         int role, uint64_t ttl_seconds,
                         const fv_sync_options *options);

typedef struct fv_device_info {
    unsigned char id[32]; /* the device's Ed25519 key */
    const char *name;     /* valid during the callback */
    int role;
    int revoked;
    int64_t enrolled; /* Unix seconds */
} fv_device_info;

typedef int (*fv_device_fn)(const fv_device_info *d, void *payload);

/* Coordinator: the organisation's devices. */
FV_API int fv_org_device_list(fv_vault *v, const fv_sync_options *options,
                              fv_device_fn fn, void *payload);

/* Coordinator: refuses device `id` from its next connection on. */
FV_API int fv_org_revoke(fv_vault *v, const unsigned char id[32],
                         const fv_sync_options *options);

/* Courier bundles (docs/PROTOCOL.md, "Courier bundles"). */
typedef struct fv_bundle_options {
    unsigned int version; /* FV_BUNDLE_OPTIONS_VERSION */
    /* Envelopes only: the attachment chunks stay behind. */
    int no_attachments;
    /* 0: one file at the path. Else parts path.001, path.002 ..., each a
     * whole bundle of at most this many bytes (and never more than
     * 4 GiB - 1, FAT32's largest file), each carrying every envelope. */
    uint64_t max_size;
} fv_bundle_options;

#define FV_BUNDLE_OPTIONS_VERSION 1
#define FV_BUNDLE_OPTIONS_INIT {FV_BUNDLE_OPTIONS_VERSION, 0, 0}

/* What an export or import did. Caller-allocated output, like
 * fv_sync_result: start from FV_BUNDLE_STATS_INIT; fields are only
 * appended. */
typedef struct fv_bundle_stats {
    size_t size;              /* sizeof(fv_bundle_stats) */
    uint64_t envelopes;       /* written (once per bundle) / read */
    uint64_t added;           /* import: envelopes new to the vault */
    uint64_t skipped;         /* import: review states left out */
    uint64_t refused;         /* import: envelopes whose content breaks FORMAT.md */
    uint64_t chunks;          /* chunks written / read whole */
    uint64_t chunk_bytes;     /* their ciphertext bytes */
    uint64_t chunks_added;    /* import: new to the vault or server */
    uint64_t chunks_refused;  /* import: not matching their hash */
    uint64_t chunks_unlisted; /* import: listed by no envelope held: ignored */
    uint64_t parts;           /* export: files written */
    int truncated;            /* import: the file ends before its end mark */
} fv_bundle_stats;

#define FV_BUNDLE_STATS_INIT \
    {sizeof(fv_bundle_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

/* Writes every envelope the server has not acknowledged to a new file at
 * `path` (FV_EEXIST if it exists), then, unless options say otherwise, the
 * attachment chunks their envelopes list that the server has not
 * acknowledged (the chunk outbox, whether or not the envelopes' receipts
 * are in). One chunk is in memory at a time. With options->max_size, the
 * parts path.001 ... (FV_EEXIST if one exists; FV_ELIMIT if a part cannot
 * hold the envelopes and one chunk). A failed export leaves no file. The
 * outbox is unchanged: only a server's receipt empties it. options (from
 * FV_BUNDLE_OPTIONS_INIT; FV_EINVAL for a version this library does not
 * know) and stats (filled on success) may be NULL. */
FV_API int fv_bundle_export(fv_vault *v, fv_bundle_stats *stats,
                            const char *path, const fv_bundle_options *options);

/* Reads a bundle: every envelope is verified as if it had arrived over the
 * network, then stored; every chunk is checked against its hash and a
 * signed manifest the vault holds (from this bundle or before) before it
 * is stored. Importing a bundle twice changes nothing. Items are stored as
 * they are read: FV_ECORRUPT if the file is cut short (stats->truncated)
 * or damaged, or an envelope fails verification (nothing of its batch is
 * stored): what came before stays imported, and the message says how much.
 * FV_EVERSION for an envelope of a newer format. An envelope whose payload
 * this vault opens and finds malformed, or a chunk that does not match its
 * hash, is refused alone: the rest is imported and committed, and the call
 * then returns FV_ECORRUPT with a message naming how many were refused. A
 * chunk no envelope held lists is ignored and counted. Review states
 * travel only through the server (which knows who is a coordinator): one
 * in a bundle is left out unless this device wrote it, and counted.
 * stats (may be NULL) is filled also on failure. */
FV_API int fv_bundle_import(fv_vault *v, fv_bundle_stats *stats,
                            const char *path);

#ifdef __cplusplus
}
#endif

#endif
