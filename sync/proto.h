/*
 * proto.h - the sync protocol's messages and frames (docs/PROTOCOL.md):
 * encoders, a bounded frame reader, a strict decoder, invites. No I/O.
 */
#ifndef FV_PROTO_H
#define FV_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fieldvault.h"
#include "fieldvault_sync.h" /* FV_PROTOCOL_VERSION, the version's one home */

/* The oldest protocol version this build speaks; it speaks every one from
 * here up to FV_PROTOCOL_VERSION (fieldvault_sync.h). Version 2: a PUSH's
 * receipt refuses envelopes one by one (docs/PROTOCOL.md, PUSH and
 * RECEIPT). */
#define FV_PROTO_MIN_VERSION 1
#define FV_FRAME_MAX (1u << 20)
#define FV_PROTO_MAX_BATCH 256
#define FV_PROTO_MAX_ITEMS 4096
#define FV_EPOCH_BYTES 16
#define FV_TOKEN_BYTES 16
#define FV_MAX_DEVICE_NAME 128
#define FV_MAX_INVITE_TTL (30u * 24 * 3600)
/* The largest envelope that fits a PUSH or ENTRIES frame with room to spare. */
#define FV_SYNC_MAX_ENVELOPE (FV_FRAME_MAX - 4096)
#define FV_MAX_CERT_BYTES 1024   /* a device certificate (docs/FORMAT.md 15) */
#define FV_PROTO_MAX_QUERY 1024  /* hashes per CHUNK-QUERY */
#define FV_PROTO_MAX_GET 64      /* hashes per CHUNK-GET and CHUNK-ACK */
/* The largest chunk ciphertext on the wire: the largest plaintext chunk a
 * reader accepts plus the AEAD tag (FV_MAX_CHUNK_BYTES, fieldvault.h). */
#define FV_SYNC_MAX_CHUNK (FV_MAX_CHUNK_BYTES + 16)

enum fv_msg_type {
    FV_MSG_HELLO = 1,
    FV_MSG_PUSH = 2,
    FV_MSG_PULL = 3,
    FV_MSG_INVITE = 4,
    FV_MSG_DEVICES = 5,
    FV_MSG_REVOKE = 6,
    FV_MSG_ORGKEY = 7,
    FV_MSG_BYE = 8,
    FV_MSG_CHUNK_QUERY = 9,
    FV_MSG_CHUNK_PUT = 10,
    FV_MSG_CHUNK_GET = 11,
    FV_MSG_WELCOME = 16,
    FV_MSG_RECEIPT = 17,
    FV_MSG_ENTRIES = 18,
    FV_MSG_PULLED = 19,
    FV_MSG_INVITED = 20,
    FV_MSG_DEVLIST = 21,
    FV_MSG_OK = 22,
    FV_MSG_CHUNK_HAVE = 23,
    FV_MSG_CHUNK_ACK = 24,
    FV_MSG_CHUNK = 25,
    FV_MSG_CERTS = 26, /* device certificates; courier bundles only */
    FV_MSG_ERROR = 31
};

enum fv_proto_error {
    FV_PERR_VERSION = 1,
    FV_PERR_DENIED = 2,
    FV_PERR_INVITE = 3,
    FV_PERR_MALFORMED = 4,
    FV_PERR_REJECTED = 5,
    FV_PERR_ROLLBACK = 6,
    FV_PERR_DIVERGED = 7,
    FV_PERR_BUSY = 8,
    FV_PERR_INTERNAL = 9,
    FV_PERR_FULL = 10 /* the server's storage is full */
};

/* Why a version-2 receipt refuses an envelope (docs/PROTOCOL.md). Appended,
 * never renumbered; a device takes an unknown reason as a refusal. */
enum fv_proto_refusal {
    FV_REFUSE_INVALID = 1,   /* failed verification (size, structure, sig) */
    FV_REFUSE_AUTHOR = 2,    /* not signed by the connected device */
    FV_REFUSE_UNHELD = 3,    /* about a record the server does not hold */
    FV_REFUSE_DENIED = 4     /* not its author's to write (role) */
};

/* Roles (FV_ROLE_FIELD, FV_ROLE_COORDINATOR) are in fieldvault.h. */

/* ---- frames ----------------------------------------------------------- */

/* Output: frames queued for sending. BearSSL style: the caller takes bytes
 * from fv_out_pending and reports how many it sent with fv_out_ack. */
typedef struct fv_out {
    unsigned char *buf;
    size_t start, len, cap; /* unsent bytes are buf[start .. len) */
} fv_out;

void fv_out_init(fv_out *o);
void fv_out_free(fv_out *o);
/* Appends one frame holding the writer's bytes (and disposes the writer).
 * FV_ENOMEM, FV_ELIMIT if over FV_FRAME_MAX. */
int fv_out_frame(fv_out *o, fv_enc *e);
/* Appends one frame made of the writer's bytes followed by `tail` (copied
 * once, straight into the queue). */
int fv_out_frame_tail(fv_out *o, fv_enc *e, const void *tail, size_t tail_len);
/* The same with the tail written in place by fill(arg, dst, tail_len)
 * (for example read from storage straight into the queue). A fill that
 * fails (returns an FV_E code) leaves nothing of the frame queued. */
int fv_out_frame_fill(fv_out *o, fv_enc *e, size_t tail_len,
                      int (*fill)(void *arg, unsigned char *dst, size_t len),
                      void *arg);
/* Appends bytes as they are, outside any frame (the server's answer to an
 * HTTP probe). FV_ENOMEM, FV_ELIMIT over FV_FRAME_MAX. */
int fv_out_raw(fv_out *o, const void *p, size_t n);
const unsigned char *fv_out_pending(const fv_out *o, size_t *len);
void fv_out_ack(fv_out *o, size_t n);
size_t fv_out_size(const fv_out *o); /* bytes not yet sent */

/* Input: accumulates bytes into whole frames. The length is checked against
 * FV_FRAME_MAX as soon as its 4 bytes arrive, and the body buffer grows only
 * with bytes that arrived. Errors are sticky. */
typedef struct fv_framer {
    unsigned char hdr[4];
    size_t hdr_len;
    unsigned char *body;
    size_t body_len, need, cap;
    int err; /* sticky */
} fv_framer;

void fv_framer_init(fv_framer *f);
void fv_framer_free(fv_framer *f);
/* Consumes bytes from p[0..n) up to the end of one frame. Returns the number
 * consumed; *frame is set (to the body, *frame_len bytes, valid until the
 * next call) when a frame completed. *err = FV_EPROTO on a bad length,
 * FV_ENOMEM; after either, nothing more is consumed. */
size_t fv_framer_feed(fv_framer *f, const unsigned char *p, size_t n,
                      const unsigned char **frame, size_t *frame_len, int *err);

/* ---- messages --------------------------------------------------------- */

typedef struct fv_msg {
    int type;
    union {
        struct {
            uint64_t versions[8];
            size_t nversions;
            const unsigned char *device, *sig;
            const unsigned char *token, *box; /* NULL unless enrolling */
        } hello;
        struct { /* PUSH; CERTS (its certificates) */
            size_t n;
            const unsigned char *env[FV_PROTO_MAX_BATCH];
            size_t len[FV_PROTO_MAX_BATCH];
        } push;
        struct {
            const unsigned char *epoch; /* NULL if none */
            uint64_t cursor;
            const unsigned char *chain;
            /* The receipt mark (rid NULL: none): the highest log position
             * this device's receipts name, and the envelope there. */
            uint64_t rseq;
            const unsigned char *rid;
        } pull;
        struct {
            const char *name;
            size_t name_len;
            uint64_t role, ttl;
        } invite;
        struct {
            const unsigned char *device;
        } revoke;
        struct {
            const unsigned char *org;
        } orgkey;
        struct {
            uint64_t version, role;
            const unsigned char *epoch, *server, *org; /* org NULL if none */
        } welcome;
        struct {
            const unsigned char *body, *sig;
            size_t body_len;
        } receipt;
        struct {
            size_t n;
            uint64_t seq[FV_PROTO_MAX_BATCH];
            /* env NULL (len 0): an erased entry, whose record was
             * retracted; id then holds its envelope id (else NULL). */
            const unsigned char *env[FV_PROTO_MAX_BATCH];
            size_t len[FV_PROTO_MAX_BATCH];
            const unsigned char *id[FV_PROTO_MAX_BATCH];
            const unsigned char *chain[FV_PROTO_MAX_BATCH];
        } entries;
        struct {
            uint64_t head;
            const unsigned char *chain;
        } pulled;
        struct {
            const char *text;
            size_t len;
        } invited;
        struct {
            size_t n;
            fv_dec list; /* positioned at the first entry: see fv_devlist_next */
        } devlist;
        struct {
            uint64_t code;
            const char *text;
            size_t len;
        } error;
        struct { /* CHUNK-QUERY, CHUNK-GET, CHUNK-ACK */
            size_t n;
            const unsigned char *hash[FV_PROTO_MAX_QUERY];
        } hashes;
        struct { /* CHUNK-PUT, CHUNK (data NULL: not held) */
            const unsigned char *hash, *data;
            size_t len;
        } chunk;
        struct { /* CHUNK-HAVE: bit i of byte i/8, least significant first */
            const unsigned char *bits;
            size_t len;
        } have;
    } u;
} fv_msg;

/* Decodes one frame body. Pointers point into it. FV_EPROTO if the message
 * breaks the grammar in docs/PROTOCOL.md. */
int fv_msg_decode(fv_msg *m, const unsigned char *p, size_t n);

typedef struct fv_devinfo {
    const unsigned char *device;
    const char *name;
    size_t name_len;
    uint64_t role;
    int revoked;
    int64_t enrolled;
    int64_t revoked_at; /* 0: not revoked, or the server does not know when */
} fv_devinfo;
/* Reads the next entry of a DEVLIST message. */
int fv_devlist_next(fv_msg *m, fv_devinfo *d);

/* Encoders: each appends one frame to `o`. */
int fv_send_hello(fv_out *o, const unsigned char device[32],
                  const unsigned char sig[64], const unsigned char *token,
                  const unsigned char *box);
/* As fv_send_hello, offering versions FV_PROTO_MIN_VERSION to `max` only:
 * how an older peer speaks (tests). */
int fv_send_hello_upto(fv_out *o, unsigned max, const unsigned char device[32],
                       const unsigned char sig[64], const unsigned char *token,
                       const unsigned char *box);
int fv_send_push(fv_out *o, const unsigned char *const *env, const size_t *len,
                 size_t n);
/* CERTS: 1 to FV_PROTO_MAX_BATCH device certificates of at most
 * FV_MAX_CERT_BYTES each (docs/PROTOCOL.md, Courier bundles). */
int fv_send_certs(fv_out *o, const unsigned char *const *cert,
                  const size_t *len, size_t n);
/* rid NULL (or rseq 0): no receipt mark (docs/PROTOCOL.md, PULL). */
int fv_send_pull(fv_out *o, const unsigned char *epoch, uint64_t cursor,
                 const unsigned char chain[32], uint64_t rseq,
                 const unsigned char *rid);
int fv_send_invite(fv_out *o, const char *name, uint64_t role, uint64_t ttl);
int fv_send_simple(fv_out *o, int type); /* DEVICES, BYE, OK */
int fv_send_key(fv_out *o, int type, const unsigned char key[32]); /* REVOKE, ORGKEY */
int fv_send_welcome(fv_out *o, uint64_t version, const unsigned char *epoch,
                    const unsigned char server[32], uint64_t role,
                    const unsigned char *org);
int fv_send_receipt(fv_out *o, const unsigned char *body, size_t body_len,
                    const unsigned char sig[64]);
/* env[i] NULL: an erased entry, sent as its id[i] alone (id may be NULL if
 * no env[i] is). */
int fv_send_entries(fv_out *o, const uint64_t *seq,
                    const unsigned char *const *env, const size_t *len,
                    const unsigned char *const *id,
                    const unsigned char *const *chain, size_t n);
int fv_send_pulled(fv_out *o, uint64_t head, const unsigned char chain[32]);
int fv_send_invited(fv_out *o, const char *invite);
int fv_send_devlist(fv_out *o, const fv_devinfo *d, size_t n);
int fv_send_error(fv_out *o, uint64_t code, const char *text);
/* CHUNK-QUERY, CHUNK-GET, CHUNK-ACK: a type and its hashes. */
int fv_send_hashes(fv_out *o, int type, const unsigned char *const *hash,
                   size_t n);
/* CHUNK-PUT, or CHUNK (data NULL: the server does not hold it). */
int fv_send_chunk(fv_out *o, int type, const unsigned char hash[32],
                  const unsigned char *data, size_t len);
/* CHUNK-PUT or CHUNK of len bytes that fill writes into the queue. */
int fv_send_chunk_fill(fv_out *o, int type, const unsigned char hash[32],
                       size_t len,
                       int (*fill)(void *arg, unsigned char *dst, size_t len),
                       void *arg);
int fv_send_have(fv_out *o, const unsigned char *bits, size_t nbits);

/* The bytes a device signs in HELLO (docs/PROTOCOL.md, hello-tbs). *out is
 * malloc'd: free with fv_enc_free_buf. */
int fv_hello_tbs(unsigned char **out, size_t *len, const unsigned char pin[32],
                 const unsigned char binding[32], const unsigned char device[32],
                 const unsigned char *token, const unsigned char *box);

/* Receipt bodies. Encoding: ids and seqs of n entries; `refused` (NULL:
 * none, as version 1 requires) holds each entry's refusal reason, 0 for an
 * envelope accepted (a refused one is written [id, 0, reason]). */
int fv_receipt_body(unsigned char **out, size_t *len,
                    const unsigned char epoch[FV_EPOCH_BYTES],
                    const unsigned char device[32], int64_t time,
                    const unsigned char (*ids)[32], const uint64_t *seqs,
                    const unsigned char *refused, size_t n);
typedef struct fv_receipt {
    const unsigned char *epoch, *device;
    int64_t time;
    size_t n;
    const unsigned char *id[FV_PROTO_MAX_BATCH];
    uint64_t seq[FV_PROTO_MAX_BATCH];
    unsigned char refused[FV_PROTO_MAX_BATCH]; /* reason, 0: accepted */
    size_t nrefused;
} fv_receipt;
int fv_receipt_decode(fv_receipt *r, const unsigned char *p, size_t n);

/* The hash chain step: BLAKE2b-256(prev || uint64_be(seq) || id). */
void fv_chain_next(unsigned char out[32], const unsigned char prev[32],
                   uint64_t seq, const unsigned char id[32]);

/* ---- invites ---------------------------------------------------------- */

typedef struct fv_invite {
    char address[256];
    unsigned char pin[32];
    unsigned char token[FV_TOKEN_BYTES];
    int has_org;
    unsigned char org[32];
} fv_invite;

/* Writes "fv1-..." into a malloc'd string. */
int fv_invite_encode(char **out, const fv_invite *inv);
/* FV_EINVITE if damaged (checksum, grammar). */
int fv_invite_decode(fv_invite *inv, const char *text);

#endif
