/*
 * client.h - the device side of the sync protocol as a sans-I/O engine
 * (docs/PROTOCOL.md). It consumes bytes received from the server and
 * produces bytes to send; it touches no socket, clock or random source. The
 * caller (sync/session.c, or a phone app's own network stack) moves the bytes.
 *
 * Use: fv_client_new, then fv_client_start once the TLS handshake is done,
 * then loop: send what fv_client_pending offers (fv_client_ack what was
 * taken), feed what arrives to fv_client_recv, until fv_client_done or an
 * error. Errors are sticky. One thread at a time per engine; the vault
 * handle must not be used elsewhere meanwhile.
 */
#ifndef FV_CLIENT_H
#define FV_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "fieldvault.h"
#include "proto.h"
#include "vault_sync.h"

typedef struct fv_client fv_client;

enum fv_client_op {
    FV_CLIENT_SYNC = 1,   /* push the outbox, pull the feed */
    FV_CLIENT_ENROLL = 2, /* redeem an invite */
    FV_CLIENT_INVITE = 3, /* coordinator: make an invite */
    FV_CLIENT_DEVICES = 4,
    FV_CLIENT_REVOKE = 5,
    FV_CLIENT_ORGKEY = 6 /* coordinator: publish the organisation key */
};

typedef int (*fv_client_device_fn)(const fv_devinfo *d, void *payload);

typedef struct fv_client_request {
    int op;
    const fv_invite *invite;     /* ENROLL */
    const char *server_override; /* ENROLL: the address to remember instead */
    const char *name;            /* INVITE */
    int role;                    /* INVITE */
    uint64_t ttl;                /* INVITE, seconds */
    const unsigned char *device; /* REVOKE */
    fv_client_device_fn device_fn; /* DEVICES */
    void *device_payload;
} fv_client_request;

typedef struct fv_client_stats {
    uint64_t pushed;    /* envelopes whose receipts were committed */
    uint64_t pulled;    /* log entries received and verified */
    uint64_t added;     /* of those, new to this vault */
    uint64_t outbox;    /* envelopes the sync set out to push */
    size_t conflicts;   /* records with concurrent heads, after the sync */
    int role;           /* the device's role, from WELCOME */
    uint64_t chunks_sent;        /* acknowledged (or found held) by the server */
    uint64_t chunks_received;    /* verified and stored */
    uint64_t chunks_unavailable; /* listed, but not on the server yet */
    uint64_t chunks_rejected;    /* failed verification: dropped */
    uint64_t chunk_bytes_sent, chunk_bytes_received;
    uint64_t refused;   /* pulled envelopes whose content breaks FORMAT.md */
    uint64_t frames_received;    /* whole frames from the server */
    uint64_t certified; /* device certificates this vault signed */
    uint64_t released;  /* envelopes they let out of the quarantine */
    uint64_t rejected;  /* own envelopes the server's receipts refused */
} fv_client_stats;

/* Runs fv_vs_check(v, env[i], len[i], &out[i]) (vault_sync.h) for every
 * i < n, on whatever threads it likes, and returns once all are done. */
typedef void (*fv_client_check_fn)(const fv_vault *v,
                                   const unsigned char *const *env,
                                   const size_t *len, fv_vs_checked *out,
                                   size_t n, void *payload);

/* `req` and everything it points to must outlive the engine. */
int fv_client_new(fv_client **out, fv_vault *v, const fv_client_request *req);
void fv_client_free(fv_client *c);

/* After the TLS handshake: the pin of the key the server presented and the
 * channel binding (sync/tls.h). Refuses (FV_EPIN) a key other than the one
 * this vault or invite pins, before producing any byte. */
int fv_client_start(fv_client *c, const unsigned char pin[32],
                    const unsigned char binding[32]);

/* Hands the checks of each batch of pulled envelopes (signatures, content
 * keys) to fn (sync/session.c runs them on a worker pool); the engine
 * applies the results in the log's order, as it would its own. Without it
 * (or fn NULL) the engine checks them itself, on the calling thread. */
void fv_client_set_checker(fv_client *c, fv_client_check_fn fn, void *payload);

/* Consumes received bytes. Returns the sticky status. */
int fv_client_recv(fv_client *c, const unsigned char *p, size_t n);

const unsigned char *fv_client_pending(const fv_client *c, size_t *n);
/* Bytes queued and not yet taken. */
size_t fv_client_pending_bytes(const fv_client *c);
void fv_client_ack(fv_client *c, size_t n);

int fv_client_done(const fv_client *c);
int fv_client_status(const fv_client *c); /* FV_OK or the sticky error */
const char *fv_client_errmsg(const fv_client *c);
const fv_client_stats *fv_client_get_stats(const fv_client *c);
/* INVITE's result, valid until fv_client_free. */
const char *fv_client_invite_text(const fv_client *c);
/* After a failure: FV_ROLLBACK_BEHIND or FV_ROLLBACK_DIVERGED
 * (fieldvault_sync.h) if the server said its log went back or lost what it
 * receipted (ERROR rollback), or differs from what this device read (ERROR
 * diverged), else 0. */
int fv_client_rollback(const fv_client *c);
/* Forgets the feed position and the receipt mark in *st: the next pull
 * reads the feed from its start. */
void fv_client_forget(fv_sync_state *st);

#endif
