/* server_engine.c - the server side of the sync protocol, sans I/O (see
 * server_engine.h and docs/PROTOCOL.md). */
#include "server_engine.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "civil.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "proto.h"
#include "textparse.h"

_Static_assert(FV_SSTORE_NAME_MAX == FV_MAX_DEVICE_NAME, "name limits agree");
_Static_assert(FV_SRV_ENTRIES_BYTES < FV_SYNC_MAX_ENVELOPE,
               "one envelope always fits the pull buffer");

#define PULL_BUF_BYTES FV_SYNC_MAX_ENVELOPE
#define FEED_CACHE 32 /* feed heads remembered during one PUSH batch */
#define KEEP_BUF_BYTES (64u << 10) /* larger idle buffers are released */
#define STOP_READ 1
#define SIG_UNCHECKED 1 /* push_wait.sig: not checked by the caller's threads */

/* One envelope of a PUSH batch, after verification. Pointers point into the
 * frame being handled (or the caller's batch). */
struct push_item {
    const unsigned char *bytes;
    size_t len;
    size_t nrecip;
    const unsigned char *recip[FV_ENV_MAX_RECIPIENTS];
    unsigned char author[32];
    const fv_sstore_device *dev; /* its author, once looked up */
    size_t ref0, nref; /* the chunk hashes it lists: s->refs[ref0 ..] */
    int kind, genesis;
    unsigned char record[32]; /* its record (its own id for a genesis) */
};

/* A PUSH whose signatures the caller checks (FV_SRV_VERIFY_DEFERRED), from
 * the frame's arrival until fv_srv_conn_verify_done. Pointers point into the
 * frame, which stays as it is while the connection is paused for it. */
struct push_wait {
    size_t n;
    const unsigned char *env[FV_PROTO_MAX_BATCH];
    size_t len[FV_PROTO_MAX_BATCH];
    int sig[FV_PROTO_MAX_BATCH]; /* per envelope: its check, SIG_UNCHECKED */
    /* The checks handed out: the envelopes the log does not hold yet. */
    size_t njobs;
    const unsigned char *job_env[FV_PROTO_MAX_BATCH];
    size_t job_len[FV_PROTO_MAX_BATCH];
    int job_res[FV_PROTO_MAX_BATCH];
    size_t job_of[FV_PROTO_MAX_BATCH];
};

struct feed_head {
    unsigned char device[32];
    uint64_t fseq;
    unsigned char chain[32];
};

struct fv_srv {
    fv_sstore *st;
    fv_srv_env *env;
    unsigned char *sk; /* receipt key, secure memory */
    unsigned char receipt_pk[32];
    unsigned char epoch[FV_EPOCH_BYTES];
    unsigned char pin[32];
    unsigned char org[32];
    int has_org;
    char address[256];
    unsigned int flags; /* fv_srv_config.flags */

    /* Scratch shared by the connections (one thread uses them all). */
    fv_msg msg;
    struct push_item items[FV_PROTO_MAX_BATCH];
    unsigned char ids[FV_PROTO_MAX_BATCH][32];
    uint64_t seqs[FV_PROTO_MAX_BATCH];
    struct feed_head feeds[FEED_CACHE];
    size_t nfeeds;
    /* Why store_items refused a batch (FV_EDENIED): fixed text, and the
     * refusal reason (enum fv_proto_refusal). */
    const char *why;
    unsigned char why_code;
    /* Protocol 2 refuses envelopes one by one (per_envelope set for the
     * batch): refused[i] holds item i's reason, 0 for accepted. */
    int per_envelope;
    unsigned char refused[FV_PROTO_MAX_BATCH];
    uint64_t nrefused;
    /* What the last batch retracted, for the log line. */
    uint64_t nretract, erased_entries, erased_chunks, late;
    uint64_t unheld; /* retractions of records the log never held */
    /* The authors of a batch stored with no connection. */
    fv_sstore_device authors[FV_PROTO_MAX_BATCH];
    /* The chunk hashes the envelopes of a batch list (up to ~30,000 per
     * envelope): allocated per batch, freed after it. */
    unsigned char (*refs)[32];
    size_t nrefs, refs_cap;
    /* A chunk read for CHUNK-GET (at most one chunk). */
    unsigned char *chunk_buf;
    size_t chunk_cap;
    /* The ENTRIES frame being gathered. */
    unsigned char *pull_buf;
    size_t pull_len, pull_n;
    uint64_t pull_expect;
    uint64_t pull_seq[FV_PROTO_MAX_BATCH];
    const unsigned char *pull_env[FV_PROTO_MAX_BATCH];
    size_t pull_elen[FV_PROTO_MAX_BATCH];
    unsigned char pull_id[FV_PROTO_MAX_BATCH][32]; /* of erased entries */
    const unsigned char *pull_idp[FV_PROTO_MAX_BATCH];
    unsigned char pull_chain[FV_PROTO_MAX_BATCH][32];
    const unsigned char *pull_chainp[FV_PROTO_MAX_BATCH];
};

struct fv_srv_conn {
    fv_srv *srv;
    unsigned long id;
    unsigned char binding[32];
    fv_framer in;
    fv_out out;
    int state;
    int perr;
    int authed;
    int out_full; /* paused since output passed FV_SRV_OUT_MAX */
    struct push_wait *wait; /* a PUSH waiting for its signature checks */
    fv_sstore_device dev; /* the connected device, once authed */
    /* A PULL being streamed: entries (pos, head] remain. */
    int pulling;
    uint64_t pull_pos, pull_head;
    unsigned char pull_chain[32];
    /* Chunks received, written, not yet durable and acknowledged. */
    struct chunk_pend *pend;
    size_t npend, pend_cap;
    uint64_t pend_bytes; /* written by this batch */
    /* A CHUNK-GET being answered: hashes [get_pos, get_n) remain. */
    int getting;
    size_t get_pos, get_n;
    unsigned char get_hash[FV_PROTO_MAX_GET][32];
    /* For the log line at the end. */
    uint64_t put_count, put_bytes, get_count, get_bytes;
    /* An HTTP probe: its request head so far (NULL unless one came).
     * http_started once a byte was taken as the start of a frame. */
    unsigned char *http;
    size_t http_len;
    int http_started;
    unsigned version; /* the protocol version WELCOME chose */
};

struct chunk_pend {
    unsigned char hash[32];
    fv_sstore_chunkloc loc;
    int written; /* 0: already held (or earlier in the batch): ack only */
};

static int chunk_flush(fv_srv_conn *c, int ack);
static int chunk_check(fv_srv *s, const unsigned char *author,
                       const unsigned char hash[32], const unsigned char *data,
                       size_t len, int *held);

static const char *const perr_names[] = {
    "", "version", "denied", "invite", "malformed", "rejected",
    "rollback", "diverged", "busy", "internal", "full"};

/* ---- helpers ---------------------------------------------------------- */

static void slog(const fv_srv_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void slog(const fv_srv_conn *c, const char *fmt, ...)
{
    const fv_srv_env *env = c->srv->env;
    char line[256];
    int n;
    va_list ap;
    if (!env->log)
        return;
    n = snprintf(line, sizeof line, "conn %lu: ", c->id);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    env->log(line, env->log_payload);
}

/* The first 8 hex digits of a key: enough to tell devices apart in a log. */
static const char *short_hex(char out[9], const unsigned char *k)
{
    fv_hex_encode(out, 9, k, 4);
    return out;
}

static const char *role_name(int role)
{
    return role == FV_ROLE_COORDINATOR ? "coordinator" : "field";
}

/* Sends ERROR and closes after it. The message is fixed text: nothing the
 * peer sent is echoed. */
static void conn_error(fv_srv_conn *c, int code, const char *text)
{
    if (c->state != FV_SRV_RUNNING)
        return;
    /* The chunks before the fault are good: store them, and acknowledge
     * them before the ERROR. (A failing flush reports itself.) */
    if (c->npend)
        chunk_flush(c, 1);
    if (c->state != FV_SRV_RUNNING)
        return;
    c->perr = code;
    c->pulling = 0;
    c->getting = 0;
    slog(c, "error %s: %s", perr_names[code], text);
    c->state = fv_send_error(&c->out, (uint64_t)code, text) == FV_OK
                   ? FV_SRV_CLOSING
                   : FV_SRV_FAILED;
}

/* A server-side failure: logged with the store's message, the peer told
 * only "internal". */
static void conn_internal(fv_srv_conn *c, int rc, const char *what)
{
    if (c->state != FV_SRV_RUNNING)
        return;
    slog(c, "%s failed: %s (%s)", what, fv_strerror(rc),
         fv_sstore_errmsg(c->srv->st));
    /* A full disk is the server's own state, not damage and not the
     * device's fault: its own code, so that the device says so. */
    if (rc == FV_ENOSPC)
        conn_error(c, FV_PERR_FULL, "the server's disk is full");
    else
        conn_error(c, FV_PERR_INTERNAL, "the server failed");
}

/* Queues a frame; out of memory leaves nothing to do but close. */
static int queued(fv_srv_conn *c, int rc)
{
    if (rc != FV_OK && c->state == FV_SRV_RUNNING) {
        slog(c, "cannot queue a reply: %s", fv_strerror(rc));
        c->state = FV_SRV_FAILED;
        c->pulling = 0;
        c->getting = 0;
    }
    return rc;
}

/* ---- shared state ----------------------------------------------------- */

int fv_srv_invite_create(char **out, fv_sstore *st, const char *address,
                         const unsigned char pin[32], const unsigned char *org,
                         const char *name, size_t name_len, int role,
                         int64_t expires, const unsigned char token[16])
{
    fv_invite inv;
    unsigned char hash[32];
    size_t alen;
    int rc;

    *out = NULL;
    if (!address || (alen = strlen(address)) == 0 ||
        alen >= sizeof inv.address || !name || name_len == 0 ||
        name_len > FV_MAX_DEVICE_NAME ||
        (role != FV_ROLE_FIELD && role != FV_ROLE_COORDINATOR))
        return FV_EINVAL;
    memset(&inv, 0, sizeof inv);
    memcpy(inv.address, address, alen);
    memcpy(inv.pin, pin, 32);
    memcpy(inv.token, token, FV_TOKEN_BYTES);
    if (org) {
        inv.has_org = 1;
        memcpy(inv.org, org, 32);
    }
    /* The string first: a failure then stores nothing. */
    if ((rc = fv_invite_encode(out, &inv)) == FV_OK) {
        fv_hash(hash, token, FV_TOKEN_BYTES);
        rc = fv_sstore_invite_add(st, hash, name, name_len, role, expires);
        if (rc) {
            fv_wipe(*out, strlen(*out));
            free(*out);
            *out = NULL;
        }
    }
    fv_wipe(&inv, sizeof inv);
    return rc;
}

struct filing {
    fv_sstore *st;
    uint64_t last;
};

static int file_entry(const fv_sstore_entry *e, void *payload)
{
    struct filing *f = payload;
    fv_env env;
    int rc = FV_OK;
    f->last = e->seq;
    if (!e->bytes)
        return FV_OK; /* erased: filed when its record was retracted */
    if (fv_env_parse(&env, e->bytes, e->len) != FV_OK)
        return FV_ECORRUPT; /* verified when it came: the store is damaged */
    rc = fv_sstore_logrec_add(f->st, e->seq, env.record);
    fv_env_clear(&env);
    return rc;
}

/* A database from before log entries were filed under their records
 * (store_server.h): files every entry once, so that a retraction finds all
 * of a record's envelopes. Meta "records" marks it done. */
static int file_records(fv_sstore *st)
{
    struct filing f = {st, 0};
    unsigned char *v = NULL, chain[32];
    uint64_t head;
    size_t len;
    int rc = fv_sstore_meta_get(st, "records", &v, &len);
    free(v);
    if (rc != FV_ENOTFOUND)
        return rc;
    if ((rc = fv_sstore_begin(st)))
        return rc;
    rc = fv_sstore_log_head(st, &head, chain);
    while (rc == FV_OK && f.last < head) {
        uint64_t from = f.last;
        rc = fv_sstore_read(st, NULL, from, head, FV_PROTO_MAX_BATCH,
                            file_entry, &f);
        if (rc == FV_OK && f.last == from)
            rc = FV_ECORRUPT; /* the head promised more */
    }
    if (rc == FV_OK)
        rc = fv_sstore_meta_put(st, "records", "1", 1);
    if (rc == FV_OK)
        rc = fv_sstore_commit(st);
    if (rc)
        fv_sstore_rollback(st);
    return rc;
}

int fv_srv_new(fv_srv **out, const fv_srv_config *cfg)
{
    static const unsigned char probe[] = "FieldVault receipt key check";
    unsigned char sig[FV_SIG_BYTES];
    fv_srv *s;
    size_t alen;
    int rc;

    *out = NULL;
    if (!cfg || cfg->version != FV_SRV_CONFIG_VERSION || !cfg->store ||
        !cfg->receipt_sk || !cfg->epoch || !cfg->pin || !cfg->address ||
        (alen = strlen(cfg->address)) == 0 || alen >= sizeof s->address ||
        !cfg->env || !cfg->env->random)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    s = calloc(1, sizeof *s);
    if (!s)
        return FV_ENOMEM;
    s->sk = fv_secure_alloc(FV_SIGN_SK_BYTES);
    if (!s->sk) {
        rc = FV_ENOMEM;
        goto fail;
    }
    s->st = cfg->store;
    s->env = cfg->env;
    memcpy(s->sk, cfg->receipt_sk, FV_SIGN_SK_BYTES);
    /* An Ed25519 secret key is seed || public key; a damaged key file would
     * sign receipts no device accepts, so check the pair now. */
    memcpy(s->receipt_pk, s->sk + 32, 32);
    fv_sign(sig, probe, sizeof probe, s->sk);
    if (fv_sign_verify(sig, probe, sizeof probe, s->receipt_pk) != FV_OK) {
        rc = FV_ECORRUPT;
        goto fail;
    }
    memcpy(s->epoch, cfg->epoch, FV_EPOCH_BYTES);
    memcpy(s->pin, cfg->pin, 32);
    memcpy(s->address, cfg->address, alen + 1);
    s->flags = cfg->flags;
    rc = fv_sstore_meta_get_fixed(s->st, "org", s->org, 32);
    if (rc == FV_OK)
        s->has_org = 1;
    else if (rc != FV_ENOTFOUND)
        goto fail;
    if ((rc = file_records(s->st)))
        goto fail;
    *out = s;
    return FV_OK;
fail:
    fv_srv_free(s);
    return rc;
}

void fv_srv_free(fv_srv *s)
{
    if (!s)
        return;
    fv_secure_free(s->sk);
    free(s->pull_buf);
    free(s->refs);
    free(s->chunk_buf);
    free(s);
}

/* ---- connections ------------------------------------------------------ */

int fv_srv_conn_new(fv_srv_conn **out, fv_srv *s,
                    const unsigned char binding[32], unsigned long id)
{
    fv_srv_conn *c;
    *out = NULL;
    if (!s || !binding)
        return FV_EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return FV_ENOMEM;
    c->srv = s;
    c->id = id;
    memcpy(c->binding, binding, 32);
    fv_framer_init(&c->in);
    fv_out_init(&c->out);
    c->state = FV_SRV_RUNNING;
    *out = c;
    return FV_OK;
}

void fv_srv_conn_free(fv_srv_conn *c)
{
    char hex[9];
    if (!c)
        return;
    /* However the connection ends, what arrived whole is kept. */
    chunk_flush(c, 0);
    if (c->put_count || c->get_count)
        slog(c, "device %s: %" PRIu64 " chunks stored (%" PRIu64
                " bytes), %" PRIu64 " sent (%" PRIu64 " bytes)",
             short_hex(hex, c->dev.pk), c->put_count, c->put_bytes,
             c->get_count, c->get_bytes);
    free(c->pend);
    free(c->wait);
    free(c->http);
    fv_framer_free(&c->in);
    fv_out_free(&c->out);
    free(c);
}

int fv_srv_conn_state(const fv_srv_conn *c) { return c->state; }
int fv_srv_conn_in_frame(const fv_srv_conn *c) { return c->in.hdr_len > 0; }

const unsigned char *fv_srv_conn_device(const fv_srv_conn *c)
{
    return c->authed ? c->dev.pk : NULL;
}

size_t fv_srv_conn_buffered(const fv_srv_conn *c)
{
    return c->in.cap + c->out.cap;
}
int fv_srv_conn_authenticated(const fv_srv_conn *c) { return c->authed; }
int fv_srv_conn_error(const fv_srv_conn *c) { return c->perr; }

/* Input stops above FV_SRV_OUT_MAX of output and resumes only below
 * FV_SRV_OUT_LOW. Without that gap, a peer that pipelines small requests and
 * reads slowly would have each reply appended to a queue of ~4 MiB whose
 * sent prefix fv_out_frame compacts with memmove: megabytes of copying for
 * each few kilobytes it reads. */
static void update_out_full(fv_srv_conn *c)
{
    size_t n = fv_out_size(&c->out);
    if (n > FV_SRV_OUT_MAX)
        c->out_full = 1;
    else if (n < FV_SRV_OUT_LOW)
        c->out_full = 0;
}

static int paused(const fv_srv_conn *c)
{
    return c->pulling || c->getting || c->out_full || c->wait;
}

int fv_srv_conn_wants_input(const fv_srv_conn *c)
{
    return c->state == FV_SRV_RUNNING && !paused(c);
}

/* ---- HELLO ------------------------------------------------------------ */

static int welcome(fv_srv_conn *c)
{
    fv_srv *s = c->srv;
    char hex[9];
    if (queued(c, fv_send_welcome(&c->out, c->version, s->epoch,
                                  s->receipt_pk, (uint64_t)c->dev.role,
                                  s->has_org ? s->org : NULL)))
        return -1;
    c->authed = 1;
    slog(c, "device %s connected (%s)", short_hex(hex, c->dev.pk),
         role_name(c->dev.role));
    return 0;
}

/* Registers the device through its invite, in one transaction. Returns 0
 * with c->dev filled, or -1 after an ERROR. */
static int enroll(fv_srv_conn *c, const unsigned char *device,
                  const unsigned char *token, const unsigned char *box)
{
    fv_srv *s = c->srv;
    fv_sstore_invite inv;
    fv_sstore_device other;
    unsigned char hash[32];
    char hex[9];
    int rc;

    fv_hash(hash, token, FV_TOKEN_BYTES);
    if ((rc = fv_sstore_begin(s->st))) {
        conn_internal(c, rc, "enrollment");
        return -1;
    }
    rc = fv_sstore_device_get(s->st, device, &c->dev);
    if (rc == FV_OK) {
        /* The same device redeeming the token that enrolled it: its WELCOME
         * was lost on a cut connection. Let it in as enrolled (revocation
         * still applies); any other enrolled key is refused. */
        int retry = fv_sstore_invite_get(s->st, hash, &inv) == FV_OK &&
                    inv.used && inv.has_device &&
                    memcmp(inv.device, device, 32) == 0 &&
                    memcmp(c->dev.box, box, 32) == 0;
        fv_sstore_rollback(s->st);
        if (!retry) {
            conn_error(c, FV_PERR_DENIED, "this device is already enrolled");
            return -1;
        }
        if (c->dev.revoked) {
            conn_error(c, FV_PERR_DENIED, "this device was revoked");
            return -1;
        }
        return 0;
    }
    if (rc != FV_ENOTFOUND)
        goto internal;
    rc = fv_sstore_invite_get(s->st, hash, &inv);
    if (rc == FV_ENOTFOUND ||
        (rc == FV_OK && (inv.used || s->env->now >= inv.expires))) {
        fv_sstore_rollback(s->st);
        conn_error(c, FV_PERR_INVITE,
                   rc == FV_ENOTFOUND ? "unknown invite"
                   : inv.used         ? "the invite was already used"
                                      : "the invite has expired");
        return -1;
    }
    if (rc)
        goto internal;
    if (inv.role != FV_ROLE_FIELD && inv.role != FV_ROLE_COORDINATOR) {
        rc = FV_ECORRUPT;
        goto internal;
    }
    rc = fv_sstore_device_by_box(s->st, box, &other);
    if (rc == FV_OK) {
        fv_sstore_rollback(s->st);
        conn_error(c, FV_PERR_DENIED,
                   "this encryption key is already enrolled");
        return -1;
    }
    if (rc != FV_ENOTFOUND)
        goto internal;
    memset(&c->dev, 0, sizeof c->dev);
    memcpy(c->dev.pk, device, 32);
    memcpy(c->dev.box, box, 32);
    memcpy(c->dev.name, inv.name, inv.name_len + 1);
    c->dev.name_len = inv.name_len;
    c->dev.role = inv.role;
    c->dev.enrolled = s->env->now;
    if ((rc = fv_sstore_device_add(s->st, &c->dev)) ||
        (rc = fv_sstore_invite_use(s->st, hash, device)) ||
        (rc = fv_sstore_commit(s->st)))
        goto internal;
    slog(c, "device %s enrolled (%s)", short_hex(hex, device),
         role_name(c->dev.role));
    return 0;
internal:
    fv_sstore_rollback(s->st);
    conn_internal(c, rc, "enrollment");
    return -1;
}

static void handle_hello(fv_srv_conn *c, const fv_msg *m)
{
    fv_srv *s = c->srv;
    unsigned char *tbs = NULL;
    size_t tbs_len = 0, i;
    int rc;

    /* The highest version both speak. */
    c->version = 0;
    for (i = 0; i < m->u.hello.nversions; i++)
        if (m->u.hello.versions[i] >= FV_PROTO_MIN_VERSION &&
            m->u.hello.versions[i] <= FV_PROTOCOL_VERSION &&
            m->u.hello.versions[i] > c->version)
            c->version = (unsigned)m->u.hello.versions[i];
    if (c->version == 0) {
        conn_error(c, FV_PERR_VERSION, "no common protocol version");
        return;
    }
    rc = fv_hello_tbs(&tbs, &tbs_len, s->pin, c->binding, m->u.hello.device,
                      m->u.hello.token, m->u.hello.box);
    if (rc) {
        queued(c, rc);
        return;
    }
    rc = fv_sign_verify(m->u.hello.sig, tbs, tbs_len, m->u.hello.device);
    fv_enc_free_buf(tbs, tbs_len);
    if (rc) {
        conn_error(c, FV_PERR_DENIED, "bad HELLO signature");
        return;
    }
    if (m->u.hello.token) {
        if (enroll(c, m->u.hello.device, m->u.hello.token, m->u.hello.box))
            return;
    } else {
        rc = fv_sstore_device_get(s->st, m->u.hello.device, &c->dev);
        if (rc == FV_ENOTFOUND) {
            conn_error(c, FV_PERR_DENIED, "this device is not enrolled");
            return;
        }
        if (rc) {
            conn_internal(c, rc, "device lookup");
            return;
        }
        if (c->dev.revoked) {
            conn_error(c, FV_PERR_DENIED, "this device was revoked");
            return;
        }
    }
    welcome(c);
}

/* ---- PUSH ------------------------------------------------------------- */

/* The feed head of `device` in this batch: from the cache, or the store. */
static int feed_append(fv_srv *s, const unsigned char device[32],
                       uint64_t seq, const unsigned char id[32])
{
    struct feed_head *h = NULL, tmp;
    int rc;
    for (size_t i = 0; i < s->nfeeds; i++)
        if (memcmp(s->feeds[i].device, device, 32) == 0) {
            h = &s->feeds[i];
            break;
        }
    if (!h) {
        h = s->nfeeds < FEED_CACHE ? &s->feeds[s->nfeeds] : &tmp;
        memcpy(h->device, device, 32);
        if ((rc = fv_sstore_feed_head(s->st, device, &h->fseq, h->chain)))
            return rc;
        if (h != &tmp)
            s->nfeeds++;
    }
    fv_chain_next(h->chain, h->chain, h->fseq + 1, id);
    h->fseq++;
    return fv_sstore_feed_add(s->st, device, h->fseq, seq, h->chain);
}

/* Appends item i to the log and to the feeds of its field-device readers:
 * for what a coordinator writes, every enrolled, unrevoked field device
 * whose X25519 key is among its recipients. A field device's envelope never
 * reaches another field device's feed, even sealed to it: a seized phone
 * must not hold another worker's testimony (DESIGN.md, Roles), and the
 * organisation is who addresses a device (PROTOCOL.md, PULL). Nor does it
 * come back to its author, who has it: on a slow link every byte counts. */
static int append(fv_srv *s, size_t i, uint64_t *head,
                  unsigned char chain[32])
{
    const struct push_item *it = &s->items[i];
    const fv_sstore_device *author = it->dev;
    unsigned char readers[1 + FV_ENV_MAX_RECIPIENTS][32];
    size_t nreaders = 0, r, k;
    fv_sstore_device d;
    int rc;

    fv_chain_next(chain, chain, *head + 1, s->ids[i]);
    if ((rc = fv_sstore_log_add(s->st, *head + 1, s->ids[i], author->pk,
                                it->bytes, it->len, chain)))
        return rc;
    s->seqs[i] = ++*head;
    for (k = 0; k < it->nref; k++)
        if ((rc = fv_sstore_chunkref_add(s->st, s->refs[it->ref0 + k],
                                         s->seqs[i])))
            return rc;
    for (r = 0; author->role == FV_ROLE_COORDINATOR && r < it->nrecip; r++) {
        if (memcmp(it->recip[r], author->box, 32) == 0)
            continue; /* the author itself */
        rc = fv_sstore_device_by_box(s->st, it->recip[r], &d);
        if (rc == FV_ENOTFOUND)
            continue; /* the organisation key, or a device not enrolled */
        if (rc)
            return rc;
        if (d.role != FV_ROLE_FIELD || d.revoked)
            continue; /* coordinators read the whole log */
        for (k = 0; k < nreaders; k++)
            if (memcmp(readers[k], d.pk, 32) == 0)
                break;
        if (k == nreaders)
            memcpy(readers[nreaders++], d.pk, 32);
    }
    for (k = 0; k < nreaders; k++)
        if ((rc = feed_append(s, readers[k], s->seqs[i], s->ids[i])))
            return rc;
    return FV_OK;
}

/* Room for `more` hashes in s->refs. */
static int refs_reserve(fv_srv *s, size_t more)
{
    size_t need = s->nrefs + more, cap = s->refs_cap ? s->refs_cap : 256;
    unsigned char(*p)[32];
    if (need <= s->refs_cap)
        return FV_OK;
    while (cap < need)
        cap *= 2;
    if (!(p = realloc(s->refs, cap * sizeof *p)))
        return FV_ENOMEM;
    s->refs = p;
    s->refs_cap = cap;
    return FV_OK;
}

/* The batch is done: its hash list goes. */
static void refs_release(fv_srv *s)
{
    free(s->refs);
    s->refs = NULL;
    s->nrefs = s->refs_cap = 0;
}

/* 1 if the log holds the envelope whose id is `id` from `author` (NULL:
 * never): it was verified when it came. */
static int known_from(fv_srv *s, const unsigned char *author,
                      const unsigned char id[32], size_t len)
{
    unsigned char known_author[32];
    uint64_t seq;
    return author && len <= FV_SYNC_MAX_ENVELOPE &&
           fv_sstore_log_find_author(s->st, id, &seq, known_author) == FV_OK &&
           memcmp(known_author, author, 32) == 0;
}

int fv_srv_verify_envelope(const unsigned char *bytes, size_t len)
{
    fv_env env;
    int rc;
    if (!bytes || len > FV_SYNC_MAX_ENVELOPE)
        return FV_ECORRUPT;
    rc = fv_env_parse(&env, bytes, len);
    if (rc == FV_OK)
        fv_env_clear(&env);
    return rc;
}

/* Checks envelopes [0, n) of a batch before anything is stored: size,
 * structure and signature, and, if `author` is set, that `author` wrote
 * each. `sig` (NULL: none) holds what fv_srv_verify_envelope said of each
 * envelope on the caller's threads (SIG_UNCHECKED where it was not asked):
 * a failure there fails the envelope where its own check would have, and
 * a success leaves only the checks that do not need the signature. Fills
 * s->items (without their device) and s->ids. Returns FV_OK, or an error
 * with *why the rejection's fixed text (FV_ECORRUPT, or FV_ENOMEM while
 * parsing). */
static int verify_batch(fv_srv *s, const unsigned char *author,
                        const unsigned char *const *bytes, const size_t *len,
                        size_t n, const int *sig, const char **why)
{
    fv_env env;
    int rc;

    *why = NULL;
    s->nrefs = 0;
    memset(s->refused, 0, n);
    for (size_t i = 0; i < n; i++) {
        struct push_item *it = &s->items[i];
        /* An envelope the log already holds from this author was verified
         * when it came: a device re-pushing after a cut connection costs a
         * hash, not a signature check. (Its id is the hash of its bytes.) */
        fv_hash(s->ids[i], bytes[i], len[i]);
        if (known_from(s, author, s->ids[i], len[i])) {
            it->bytes = bytes[i];
            it->len = len[i];
            it->nrecip = 0; /* not appended again: no feeds to compute */
            it->nref = 0;   /* nor chunk references: recorded then */
            it->kind = 0;   /* nor checked again */
            it->genesis = 0;
            memcpy(it->author, author, 32);
            it->dev = NULL;
            continue;
        }
        if (len[i] > FV_SYNC_MAX_ENVELOPE)
            rc = FV_ECORRUPT;
        else if (!sig || sig[i] == SIG_UNCHECKED)
            rc = fv_env_parse(&env, bytes[i], len[i]);
        else if (sig[i] != FV_OK)
            rc = sig[i];
        else /* these very bytes verified on the caller's thread */
            rc = fv_env_parse_ex(&env, bytes[i], len[i], FV_ENV_SIG_KNOWN);
        if (rc == FV_ENOMEM) {
            *why = "an envelope failed verification";
            return rc;
        }
        if (rc == FV_OK && author && memcmp(env.author, author, 32) != 0) {
            fv_env_clear(&env);
            rc = FV_EDENIED;
        }
        if (rc) {
            *why = rc == FV_EDENIED ? "an envelope is not signed by this device"
                                    : "an envelope failed verification";
            if (!s->per_envelope)
                return FV_ECORRUPT;
            /* Refused alone: the rest of the batch goes on. */
            s->refused[i] = rc == FV_EDENIED ? FV_REFUSE_AUTHOR
                                             : FV_REFUSE_INVALID;
            it->bytes = bytes[i];
            it->len = len[i];
            it->nrecip = it->nref = 0;
            it->kind = it->genesis = 0;
            it->dev = NULL;
            continue;
        }
        /* The chunks it lists, recorded with its log position when it is
         * appended (the permission checks of CHUNK-PUT and -GET). */
        it->ref0 = s->nrefs;
        it->nref = env.nchunks;
        if (env.nchunks && refs_reserve(s, env.nchunks)) {
            fv_env_clear(&env);
            *why = "the server is out of memory";
            return FV_ENOMEM;
        }
        if (env.nchunks)
            memcpy(s->refs[s->nrefs], env.chunks, env.nchunks * 32);
        s->nrefs += env.nchunks;
        fv_env_clear(&env);
        memcpy(s->ids[i], env.id, 32);
        it->bytes = bytes[i];
        it->len = len[i];
        it->nrecip = env.nrecipients;
        memcpy(it->recip, env.recipient_pk,
               env.nrecipients * sizeof it->recip[0]);
        memcpy(it->author, env.author, 32);
        it->kind = env.kind;
        it->genesis = env.genesis;
        memcpy(it->record, env.record, 32);
        it->dev = NULL;
    }
    return FV_OK;
}

struct retract_ctx {
    fv_srv *s;
    const unsigned char *author; /* of the retraction: it has it */
    uint64_t seq;
    const unsigned char *id;
};

/* Puts the retraction (ctx) in the feed of field device `device`, unless
 * it wrote it or has it already. */
static int retraction_to(const unsigned char device[32], void *payload)
{
    struct retract_ctx *x = payload;
    int rc;
    if (memcmp(device, x->author, 32) == 0)
        return FV_OK;
    rc = fv_sstore_feed_has(x->s->st, device, x->seq);
    if (rc == FV_ENOTFOUND)
        rc = feed_append(x->s, device, x->seq, x->id);
    return rc;
}

/* Item i, a retraction just appended, retracts its record: the server
 * erases the record's other envelopes and its chunks (store_server.h; the
 * chunk bytes are destroyed as the batch commits), and every field device
 * that held the record gets the retraction in its feed: the device that
 * created it (`origin`), and each whose feed holds an entry of the record
 * (a revision or note a coordinator sealed to it). Coordinators read the
 * whole log. */
static int retract(fv_srv *s, size_t i, const unsigned char origin[32])
{
    const struct push_item *it = &s->items[i];
    struct retract_ctx x = {s, it->author, s->seqs[i], s->ids[i]};
    fv_sstore_device d;
    uint64_t entries, chunks;
    int rc;

    if ((rc = fv_sstore_retract(s->st, it->record, s->seqs[i], s->ids[i],
                                &entries, &chunks)))
        return rc;
    s->nretract++;
    s->erased_entries += entries;
    s->erased_chunks += chunks;
    rc = fv_sstore_device_get(s->st, origin, &d);
    if (rc == FV_OK && d.role == FV_ROLE_FIELD && !d.revoked)
        rc = retraction_to(origin, &x);
    else if (rc == FV_ENOTFOUND)
        rc = FV_OK;
    if (rc == FV_OK)
        rc = fv_sstore_record_readers(s->st, it->record, retraction_to, &x);
    return rc;
}

/* Stores item i, new to the log. An envelope of a retracted record is
 * acknowledged (seq 0 in the receipt, so the device's outbox drains) but
 * not stored, and its author gets the retraction in its feed. A note,
 * review state or retraction must be about a record the log holds, and
 * its author allowed: a coordinator, or for a note or a retraction, the
 * device that created the record. */
static int store_one(fv_srv *s, size_t i, uint64_t *head,
                     unsigned char chain[32], size_t *added)
{
    const struct push_item *it = &s->items[i];
    unsigned char origin[32], rid[32], rauthor[32];
    uint64_t rseq;
    int rc;

    /* A genesis too: a record retracted before the server held it (its
     * retraction at log position 0, below) may arrive later, by courier. */
    rc = fv_sstore_retracted(s->st, it->genesis ? s->ids[i] : it->record,
                             &rseq, rid);
    if (rc == FV_OK) {
        struct retract_ctx x = {s, rauthor, rseq, rid};
        s->seqs[i] = 0;
        s->late++;
        /* Nothing to tell when the retraction is not in the log. */
        if (it->dev->role != FV_ROLE_FIELD || rseq == 0)
            return FV_OK;
        rc = fv_sstore_log_find_author(s->st, rid, &rseq, rauthor);
        return rc ? rc : retraction_to(it->dev->pk, &x);
    }
    if (rc != FV_ENOTFOUND)
        return rc;
    if (it->kind == FV_ENV_NOTE || it->kind == FV_ENV_STATE ||
        it->kind == FV_ENV_RETRACTION) {
        rc = fv_sstore_record_origin(s->st, it->record, origin);
        if (rc == FV_ENOTFOUND && it->kind == FV_ENV_RETRACTION) {
            /* A record retracted before it ever left its device, or an
             * outbox sent again to a new server: nothing here to tell
             * anyone. Acknowledged at seq 0 and not stored, like a late
             * envelope, so that the device's outbox drains. Its id alone
             * is remembered (retracted at log position 0), so that a copy
             * of the record arriving later (a courier bundle made before
             * the retraction) is not stored either; a key grant of it the
             * log holds is erased. */
            s->seqs[i] = 0;
            s->unheld++;
            return fv_sstore_retract(s->st, it->record, 0, s->ids[i], NULL,
                                     NULL);
        }
        if (rc == FV_ENOTFOUND) {
            s->why = "an envelope is about a record the server does not hold";
            s->why_code = FV_REFUSE_UNHELD;
            return FV_EDENIED;
        }
        if (rc)
            return rc;
        if (it->dev->role != FV_ROLE_COORDINATOR &&
            (it->kind == FV_ENV_STATE || memcmp(origin, it->author, 32) != 0)) {
            s->why = it->kind == FV_ENV_STATE
                         ? "only a coordinator sets a review state"
                         : "only a coordinator or the record's creator may "
                           "write that";
            s->why_code = FV_REFUSE_DENIED;
            return FV_EDENIED;
        }
    }
    if ((rc = append(s, i, head, chain)))
        return rc;
    ++*added;
    if ((rc = fv_sstore_logrec_add(s->st, s->seqs[i],
                                   it->genesis ? s->ids[i] : it->record)))
        return rc;
    if (it->kind == FV_ENV_RETRACTION)
        rc = retract(s, i, origin);
    return rc;
}

/* Stores the verified items [0, n), each with its device set, in one
 * transaction: known ids (earlier, or earlier in this batch) keep their
 * seq, the others are appended (or, for a retracted record, acknowledged
 * at seq 0: see store_one). s->seqs receives the positions. On failure the
 * transaction is rolled back: FV_EDENIED with s->why if an envelope was
 * not this device's to write. */
static int store_items(fv_srv *s, size_t n, size_t *added)
{
    unsigned char chain[32];
    uint64_t head;
    int rc;

    *added = 0;
    s->nfeeds = 0;
    if ((rc = fv_sstore_begin(s->st)))
        goto fail;
    if ((rc = fv_sstore_log_head(s->st, &head, chain)))
        goto fail;
    s->why = NULL;
    s->nretract = s->erased_entries = s->erased_chunks = s->late = 0;
    s->unheld = s->nrefused = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->refused[i]) {
            s->seqs[i] = 0;
            s->nrefused++;
            continue;
        }
        rc = fv_sstore_log_find(s->st, s->ids[i], &s->seqs[i]);
        if (rc == FV_ENOTFOUND)
            rc = store_one(s, i, &head, chain, added);
        if (rc == FV_EDENIED && s->per_envelope) {
            /* Nothing of it was written: refused alone. */
            s->refused[i] = s->why_code;
            s->seqs[i] = 0;
            s->nrefused++;
            rc = FV_OK;
        }
        if (rc)
            goto fail;
    }
    if ((rc = fv_sstore_commit(s->st)))
        goto fail;
    return FV_OK;
fail:
    fv_sstore_rollback(s->st);
    return rc;
}

/* The device `pk` into *d: FV_EDENIED if unknown or revoked. */
static int author_get(fv_srv *s, const unsigned char pk[32],
                      fv_sstore_device *d)
{
    int rc = fv_sstore_device_get(s->st, pk, d);
    if (rc == FV_ENOTFOUND || (rc == FV_OK && d->revoked))
        return FV_EDENIED;
    return rc;
}

/* Sets each verified item's device: `author`'s (s->authors[0]), or its own
 * author's, looked up once per distinct author (nauthors already known). */
static int batch_authors(fv_srv *s, const unsigned char *author, size_t n,
                         size_t nauthors)
{
    size_t i, k;
    int rc;
    for (i = 0; i < n; i++) {
        struct push_item *it = &s->items[i];
        if (author) {
            it->dev = &s->authors[0];
            continue;
        }
        /* A run of the same author shares its device; a new run looks it
         * up (once per distinct author in the batch). */
        if (i > 0 && memcmp(it->author, s->items[i - 1].author, 32) == 0) {
            it->dev = s->items[i - 1].dev;
            continue;
        }
        for (k = 0; k < nauthors; k++)
            if (memcmp(s->authors[k].pk, it->author, 32) == 0)
                break;
        if (k == nauthors) {
            if ((rc = author_get(s, it->author, &s->authors[k])))
                return rc;
            nauthors++;
        }
        it->dev = &s->authors[k];
    }
    return FV_OK;
}

int fv_srv_store_batch(fv_srv *s, const unsigned char *author,
                       const unsigned char *const *env, const size_t *len,
                       size_t n, uint64_t *seqs, size_t *added)
{
    const char *why;
    size_t nauthors = 0, nadded = 0, i;
    int rc;

    if (added)
        *added = 0;
    if (!s || n > FV_PROTO_MAX_BATCH || (n > 0 && (!env || !len)))
        return FV_EINVAL;
    for (i = 0; i < n; i++)
        if (!env[i])
            return FV_EINVAL;
    if (author) {
        if ((rc = author_get(s, author, &s->authors[0])))
            return rc;
        nauthors = 1;
    }
    s->per_envelope = 0; /* a bundle's batch stands or falls whole */
    rc = verify_batch(s, author, env, len, n, NULL, &why);
    if (rc == FV_OK)
        rc = batch_authors(s, author, n, nauthors);
    if (rc == FV_OK)
        rc = store_items(s, n, &nadded);
    refs_release(s);
    if (rc)
        return rc;
    if (seqs && n > 0)
        memcpy(seqs, s->seqs, n * sizeof *seqs);
    if (added)
        *added = nadded;
    return FV_OK;
}

int fv_srv_store_chunk(fv_srv *s, const unsigned char hash[32],
                       const unsigned char *data, size_t len, int *added)
{
    fv_sstore_chunkloc loc;
    int rc, held = 0;

    *added = 0;
    if (!s || !hash || !data || len > FV_SYNC_MAX_CHUNK)
        return FV_EINVAL;
    /* Listed by any author's envelope: the bundle's envelopes were checked
     * author by author as they were stored. */
    if ((rc = chunk_check(s, NULL, hash, data, len, &held)) || held)
        return rc;
    /* As a connection's batch of one: written, made durable, indexed. */
    if ((rc = fv_sstore_chunk_append(s->st, data, len, &loc)) ||
        (rc = fv_sstore_chunk_sync(s->st)) ||
        (rc = fv_sstore_begin(s->st)))
        return rc;
    rc = fv_sstore_chunk_live(s->st, hash);
    if (rc == FV_OK && (rc = fv_sstore_chunk_add(s->st, hash, &loc)) == FV_OK)
        *added = 1;
    else if (rc == FV_ENOTFOUND)
        rc = fv_sstore_chunk_discard(s->st, &loc);
    if (rc == FV_OK)
        rc = fv_sstore_commit(s->st);
    if (rc) {
        fv_sstore_rollback(s->st);
        *added = 0;
    }
    return rc;
}

/* Stores and answers a PUSH of n envelopes whose signatures `sig` (NULL:
 * none) checked already (verify_batch). */
static void push_finish(fv_srv_conn *c, const unsigned char *const *env,
                        const size_t *len, size_t n, const int *sig)
{
    fv_srv *s = c->srv;
    size_t i, added = 0;
    unsigned char rsig[FV_SIG_BYTES], *body = NULL;
    size_t body_len = 0;
    const char *why;
    char hex[9];
    int rc;

    /* As fv_srv_store_batch, for the device authenticated at HELLO (a
     * revocation applies from its next connection on). Every envelope is
     * checked before anything is stored. Under protocol 1 one failing
     * envelope fails the batch; from 2 on it is refused alone, in the
     * receipt. */
    s->per_envelope = c->version >= 2;
    rc = verify_batch(s, c->dev.pk, env, len, n, sig, &why);
    if (rc == FV_OK) {
        for (i = 0; i < n; i++)
            s->items[i].dev = &c->dev;
        rc = store_items(s, n, &added);
        refs_release(s);
        if (rc == FV_EDENIED) {
            conn_error(c, FV_PERR_REJECTED, s->why);
            return;
        }
        if (rc) {
            conn_internal(c, rc, "storing a push");
            return;
        }
    } else {
        refs_release(s);
        if (rc == FV_ENOMEM)
            conn_internal(c, rc, "verifying a push");
        else
            conn_error(c, FV_PERR_REJECTED, why);
        return;
    }

    rc = fv_receipt_body(&body, &body_len, s->epoch, c->dev.pk, s->env->now,
                         (const unsigned char(*)[32])s->ids, s->seqs,
                         c->version >= 2 ? s->refused : NULL, n);
    if (rc) {
        queued(c, rc);
        return;
    }
    fv_sign(rsig, body, body_len, s->sk);
    rc = fv_send_receipt(&c->out, body, body_len, rsig);
    fv_enc_free_buf(body, body_len);
    if (queued(c, rc))
        return;
    slog(c, "device %s pushed %zu envelopes (%zu new)",
         short_hex(hex, c->dev.pk), n, added);
    if (s->nretract)
        slog(c, "%" PRIu64 " records retracted: %" PRIu64
                " envelopes and %" PRIu64 " chunks erased",
             s->nretract, s->erased_entries, s->erased_chunks);
    if (s->late)
        slog(c, "%" PRIu64 " envelopes of retracted records not stored",
             s->late);
    if (s->unheld)
        slog(c, "%" PRIu64 " retractions of records never held, not stored",
             s->unheld);
    if (s->nrefused)
        slog(c, "%" PRIu64 " envelopes refused (%s)", s->nrefused,
             why ? why : s->why);
}

static void handle_push(fv_srv_conn *c, const fv_msg *m)
{
    fv_srv *s = c->srv;
    struct push_wait *w;
    size_t n = m->u.push.n;
    unsigned char id[32];

    if (!(s->flags & FV_SRV_VERIFY_DEFERRED)) {
        push_finish(c, m->u.push.env, m->u.push.len, n, NULL);
        return;
    }
    /* The signatures are checked on the caller's threads: the envelopes
     * the log does not hold from this device become jobs, and the
     * connection pauses (its frame stays put) until they are done. */
    if (!(w = malloc(sizeof *w))) {
        conn_internal(c, FV_ENOMEM, "verifying a push");
        return;
    }
    w->n = n;
    w->njobs = 0;
    for (size_t i = 0; i < n; i++) {
        w->env[i] = m->u.push.env[i];
        w->len[i] = m->u.push.len[i];
        w->sig[i] = SIG_UNCHECKED;
        if (w->len[i] > FV_SYNC_MAX_ENVELOPE)
            continue; /* refused without a check */
        fv_hash(id, w->env[i], w->len[i]);
        if (known_from(s, c->dev.pk, id, w->len[i]))
            continue;
        w->job_env[w->njobs] = w->env[i];
        w->job_len[w->njobs] = w->len[i];
        w->job_res[w->njobs] = SIG_UNCHECKED;
        w->job_of[w->njobs++] = i;
    }
    if (w->njobs == 0) {
        push_finish(c, w->env, w->len, n, NULL);
        free(w);
        return;
    }
    c->wait = w;
}

int fv_srv_conn_verify_jobs(fv_srv_conn *c, fv_srv_verify *out)
{
    memset(out, 0, sizeof *out);
    if (!c || !c->wait)
        return 0;
    out->n = c->wait->njobs;
    out->env = c->wait->job_env;
    out->len = c->wait->job_len;
    out->result = c->wait->job_res;
    return 1;
}

void fv_srv_conn_verify_done(fv_srv_conn *c)
{
    struct push_wait *w;
    if (!c || !(w = c->wait))
        return;
    for (size_t k = 0; k < w->njobs; k++)
        w->sig[w->job_of[k]] = w->job_res[k];
    c->wait = NULL;
    if (c->state == FV_SRV_RUNNING)
        push_finish(c, w->env, w->len, w->n, w->sig);
    free(w);
    update_out_full(c);
}

/* ---- PULL ------------------------------------------------------------- */

static int collect(const fv_sstore_entry *e, void *payload)
{
    fv_srv *s = payload;
    size_t n = s->pull_n;
    if (n > 0 && s->pull_len + e->len > FV_SRV_ENTRIES_BYTES)
        return STOP_READ;
    /* Positions are dense: a gap or a huge entry means a damaged store. */
    if (e->seq != s->pull_expect || e->len > FV_SYNC_MAX_ENVELOPE ||
        s->pull_len + e->len > PULL_BUF_BYTES)
        return FV_ECORRUPT;
    if (e->bytes) {
        memcpy(s->pull_buf + s->pull_len, e->bytes, e->len);
        s->pull_env[n] = s->pull_buf + s->pull_len;
    } else {
        /* Erased (its record was retracted): the id alone keeps the chain
         * checkable. */
        s->pull_env[n] = NULL;
    }
    memcpy(s->pull_id[n], e->id, 32);
    s->pull_idp[n] = s->pull_id[n];
    s->pull_elen[n] = e->len;
    s->pull_seq[n] = e->seq;
    memcpy(s->pull_chain[n], e->chain, 32);
    s->pull_chainp[n] = s->pull_chain[n];
    s->pull_len += e->len;
    s->pull_n++;
    s->pull_expect++;
    return 0;
}

/* Queues ENTRIES frames while the output is small, then PULLED. */
static void pump(fv_srv_conn *c)
{
    fv_srv *s = c->srv;
    int field = c->dev.role != FV_ROLE_COORDINATOR;
    int rc;

    while (c->pulling && c->state == FV_SRV_RUNNING &&
           fv_out_size(&c->out) < FV_SRV_OUT_LOW) {
        if (c->pull_pos >= c->pull_head) {
            c->pulling = 0;
            queued(c, fv_send_pulled(&c->out, c->pull_head, c->pull_chain));
            return;
        }
        if (!s->pull_buf && !(s->pull_buf = malloc(PULL_BUF_BYTES))) {
            queued(c, FV_ENOMEM);
            return;
        }
        s->pull_len = s->pull_n = 0;
        s->pull_expect = c->pull_pos + 1;
        rc = fv_sstore_read(s->st, field ? c->dev.pk : NULL, c->pull_pos,
                            c->pull_head, FV_PROTO_MAX_BATCH, collect, s);
        if (rc == STOP_READ)
            rc = FV_OK;
        if (rc == FV_OK && s->pull_n == 0)
            rc = FV_ECORRUPT; /* the head promised more */
        if (rc) {
            conn_internal(c, rc, "reading the log");
            return;
        }
        if (queued(c, fv_send_entries(&c->out, s->pull_seq, s->pull_env,
                                      s->pull_elen, s->pull_idp,
                                      s->pull_chainp, s->pull_n)))
            return;
        c->pull_pos = s->pull_seq[s->pull_n - 1];
    }
}

/* The receipt mark of a PULL: 0 if the log holds the envelope at the
 * position a receipt of ours named, 1 if not (the server was restored from
 * an older copy, or its log was rewritten), -1 after a store failure
 * (answered). */
static int receipt_held(fv_srv_conn *c, const fv_msg *m)
{
    uint64_t seq;
    int rc = fv_sstore_log_find(c->srv->st, m->u.pull.rid, &seq);
    if (rc == FV_ENOTFOUND)
        return 1;
    if (rc) {
        conn_internal(c, rc, "reading the log");
        return -1;
    }
    return seq != m->u.pull.rseq;
}

static void handle_pull(fv_srv_conn *c, const fv_msg *m)
{
    fv_srv *s = c->srv;
    int field = c->dev.role != FV_ROLE_COORDINATOR;
    uint64_t head, cursor = m->u.pull.cursor;
    unsigned char chain[32], at[32];
    int rc;

    rc = field ? fv_sstore_feed_head(s->st, c->dev.pk, &head, chain)
               : fv_sstore_log_head(s->st, &head, chain);
    if (rc) {
        conn_internal(c, rc, "reading the log head");
        return;
    }
    if (!m->u.pull.epoch ||
        memcmp(m->u.pull.epoch, s->epoch, FV_EPOCH_BYTES) != 0) {
        cursor = 0; /* a new or replaced server: the whole feed */
    } else if (m->u.pull.rid && (rc = receipt_held(c, m))) {
        if (rc > 0)
            conn_error(c, FV_PERR_ROLLBACK,
                       "the server lost envelopes it receipted");
        return;
    } else if (cursor > head) {
        conn_error(c, FV_PERR_ROLLBACK, "the cursor is past the server's log");
        return;
    } else {
        if (cursor == 0)
            memset(at, 0, 32);
        else if ((rc = field ? fv_sstore_feed_chain(s->st, c->dev.pk, cursor,
                                                    at)
                             : fv_sstore_log_chain(s->st, cursor, at))) {
            conn_internal(c, rc, "reading the chain");
            return;
        }
        if (!fv_ct_equal(at, m->u.pull.chain, 32)) {
            conn_error(c, FV_PERR_DIVERGED, "the chain at the cursor differs");
            return;
        }
    }
    c->pulling = 1;
    c->pull_pos = cursor;
    c->pull_head = head;
    memcpy(c->pull_chain, chain, 32);
    if (head > cursor) {
        char hex[9];
        slog(c, "device %s pulls %" PRIu64 " entries",
             short_hex(hex, c->dev.pk), head - cursor);
    }
    pump(c);
}

/* ---- attachment chunks ------------------------------------------------ */

/* Who may read what (docs/PROTOCOL.md, Attachments): a coordinator any
 * chunk held; a field device those listed by envelopes it wrote or that
 * are in its feed. NULL: no restriction. */
static const unsigned char *reader_of(const fv_srv_conn *c)
{
    return c->dev.role == FV_ROLE_COORDINATOR ? NULL : c->dev.pk;
}

/* Makes the pending batch durable: fdatasync of the pack (all that was
 * appended, other connections' bytes too), then ONE transaction indexing
 * the chunks this batch wrote, and only then, with `ack`, the CHUNK-ACKs
 * (up to FV_PROTO_MAX_GET hashes each), in the order the chunks came.
 * Returns 1 if it queued output, 0 if not, -1 on failure (reported to the
 * peer; the batch is dropped: its bytes stay in the pack, unindexed, and
 * the device sends those chunks again). A crash between the write and the
 * commit leaves the same: bytes in a pack that no index row names, never
 * read, harmless (the device's next query does not find those chunks). */
static int chunk_flush(fv_srv_conn *c, int ack)
{
    fv_srv *s = c->srv;
    size_t n = c->npend, i, k;
    int rc = FV_OK, written = 0;

    if (n == 0)
        return 0;
    c->npend = 0; /* whatever happens: a failure below reports itself */
    c->pend_bytes = 0;
    for (i = 0; i < n; i++)
        written |= c->pend[i].written;
    if (written) {
        if ((rc = fv_sstore_chunk_sync(s->st)) == FV_OK &&
            (rc = fv_sstore_begin(s->st)) == FV_OK) {
            for (i = 0; i < n && rc == FV_OK; i++) {
                if (!c->pend[i].written)
                    continue;
                /* Its record retracted since it arrived: its bytes go. */
                rc = fv_sstore_chunk_live(s->st, c->pend[i].hash);
                if (rc == FV_OK)
                    rc = fv_sstore_chunk_add(s->st, c->pend[i].hash,
                                             &c->pend[i].loc);
                else if (rc == FV_ENOTFOUND)
                    rc = fv_sstore_chunk_discard(s->st, &c->pend[i].loc);
            }
            if (rc == FV_OK)
                rc = fv_sstore_commit(s->st);
            if (rc)
                fv_sstore_rollback(s->st);
        }
        if (rc) {
            if (c->state == FV_SRV_RUNNING)
                conn_internal(c, rc, "storing chunks");
            else
                slog(c, "storing chunks failed: %s (%s)", fv_strerror(rc),
                     fv_sstore_errmsg(s->st));
            return -1;
        }
    }
    for (i = 0; i < n; i++)
        if (c->pend[i].written) {
            c->put_count++;
            c->put_bytes += c->pend[i].loc.len;
        }
    if (!ack || c->state != FV_SRV_RUNNING)
        return 0;
    for (i = 0; i < n; i += k) {
        const unsigned char *h[FV_PROTO_MAX_GET];
        for (k = 0; k < FV_PROTO_MAX_GET && i + k < n; k++)
            h[k] = c->pend[i + k].hash;
        if (queued(c, fv_send_hashes(&c->out, FV_MSG_CHUNK_ACK, h, k)))
            return -1;
    }
    return 1;
}

int fv_srv_conn_flush(fv_srv_conn *c)
{
    int r = chunk_flush(c, 1);
    update_out_full(c);
    return r != 0 && c->state != FV_SRV_FAILED;
}

/* Room for one more pending chunk. */
static int pend_reserve(fv_srv_conn *c)
{
    size_t cap;
    struct chunk_pend *p;
    if (c->npend < c->pend_cap)
        return FV_OK;
    cap = c->pend_cap ? c->pend_cap * 4 : 16;
    if (cap > FV_SRV_CHUNK_PENDING)
        cap = FV_SRV_CHUNK_PENDING;
    if (!(p = realloc(c->pend, cap * sizeof *p)))
        return FV_ENOMEM;
    c->pend = p;
    c->pend_cap = cap;
    return FV_OK;
}

/* The checks every arriving chunk passes before it is stored: listed by a
 * signed envelope in the log that `author` wrote (NULL: any author), and
 * hashing to its name. FV_ENOTFOUND (not listed), FV_EPROTO (does not match
 * its hash), or FV_OK with *held set when it is not to be written: its
 * record was retracted (acknowledged all the same, so that the device's
 * outbox drains), or the store holds it already. */
static int chunk_check(fv_srv *s, const unsigned char *author,
                       const unsigned char hash[32], const unsigned char *data,
                       size_t len, int *held)
{
    unsigned char got[32];
    fv_sstore_chunkloc loc;
    int rc;

    *held = 0;
    if ((rc = fv_sstore_chunk_listed(s->st, hash, author)))
        return rc;
    fv_hash(got, data, len);
    if (!fv_ct_equal(got, hash, 32))
        return FV_EPROTO;
    rc = fv_sstore_chunk_live(s->st, hash);
    if (rc == FV_ENOTFOUND) {
        *held = 1;
        return FV_OK;
    }
    if (rc)
        return rc;
    rc = fv_sstore_chunk_find(s->st, hash, NULL, &loc);
    if (rc != FV_OK && rc != FV_ENOTFOUND)
        return rc;
    *held = rc == FV_OK;
    return FV_OK;
}

static void handle_chunk_put(fv_srv_conn *c, const fv_msg *m)
{
    fv_srv *s = c->srv;
    const unsigned char *hash = m->u.chunk.hash;
    struct chunk_pend *p;
    size_t i;
    int rc, held = 0;

    if (!m->u.chunk.data || m->u.chunk.len > FV_SYNC_MAX_CHUNK) {
        conn_error(c, FV_PERR_MALFORMED, "malformed message");
        return;
    }
    /* A coordinator may upload any listed chunk, a field device only those
     * its own envelopes list: nothing else is stored. */
    rc = chunk_check(s, c->dev.role == FV_ROLE_COORDINATOR ? NULL : c->dev.pk,
                     hash, m->u.chunk.data, m->u.chunk.len, &held);
    if (rc == FV_ENOTFOUND) {
        conn_error(c, FV_PERR_REJECTED,
                   "no envelope of this device lists the chunk");
        return;
    }
    if (rc == FV_EPROTO) {
        conn_error(c, FV_PERR_REJECTED, "a chunk does not match its hash");
        return;
    }
    if (rc) {
        conn_internal(c, rc, "checking a chunk");
        return;
    }
    /* Held already, or earlier in this batch: acknowledged, not written. */
    for (i = 0; i < c->npend && !held; i++)
        held = memcmp(c->pend[i].hash, hash, 32) == 0;
    if (pend_reserve(c)) {
        queued(c, FV_ENOMEM);
        return;
    }
    p = &c->pend[c->npend];
    memcpy(p->hash, hash, 32);
    p->written = !held;
    if (!held) {
        /* Straight from the frame to the pack: one write(), no copy. */
        if ((rc = fv_sstore_chunk_append(s->st, m->u.chunk.data,
                                         m->u.chunk.len, &p->loc))) {
            conn_internal(c, rc, "writing a chunk");
            return;
        }
        c->pend_bytes += m->u.chunk.len;
    }
    c->npend++;
    if (c->pend_bytes >= FV_SRV_CHUNK_BATCH ||
        c->npend >= FV_SRV_CHUNK_PENDING)
        chunk_flush(c, 1);
}

static void handle_chunk_query(fv_srv_conn *c, const fv_msg *m)
{
    unsigned char bits[(FV_PROTO_MAX_QUERY + 7) / 8];
    const unsigned char *reader = reader_of(c);
    fv_sstore_chunkloc loc;
    size_t n = m->u.hashes.n;
    int rc;

    memset(bits, 0, sizeof bits);
    for (size_t i = 0; i < n; i++) {
        rc = fv_sstore_chunk_find(c->srv->st, m->u.hashes.hash[i], reader,
                                  &loc);
        if (rc == FV_OK)
            bits[i / 8] |= (unsigned char)(1u << (i % 8));
        else if (rc != FV_ENOTFOUND) {
            conn_internal(c, rc, "looking up chunks");
            return;
        }
    }
    queued(c, fv_send_have(&c->out, bits, n));
}

/* Queues CHUNK frames while the output is small: one chunk in memory at a
 * time, however many were asked for. */
static void pump_get(fv_srv_conn *c)
{
    fv_srv *s = c->srv;
    const unsigned char *reader = reader_of(c);
    fv_sstore_chunkloc loc;
    char hex[9];
    int rc;

    while (c->getting && c->state == FV_SRV_RUNNING &&
           fv_out_size(&c->out) < FV_SRV_OUT_LOW) {
        const unsigned char *hash;
        if (c->get_pos >= c->get_n) {
            c->getting = 0;
            if (s->chunk_cap > KEEP_BUF_BYTES) {
                free(s->chunk_buf);
                s->chunk_buf = NULL;
                s->chunk_cap = 0;
            }
            return;
        }
        hash = c->get_hash[c->get_pos];
        rc = fv_sstore_chunk_find(s->st, hash, reader, &loc);
        if (rc == FV_OK && loc.len > FV_SYNC_MAX_CHUNK)
            rc = FV_ECORRUPT;
        if (rc == FV_OK && loc.len > s->chunk_cap) {
            unsigned char *b = realloc(s->chunk_buf, loc.len);
            if (!b) {
                queued(c, FV_ENOMEM);
                return;
            }
            s->chunk_buf = b;
            s->chunk_cap = loc.len;
        }
        if (rc == FV_OK)
            rc = fv_sstore_chunk_read(s->st, &loc, s->chunk_buf);
        if (rc == FV_ECORRUPT) {
            /* A damaged pack: say "not held", so the device asks again
             * later rather than failing the whole sync. */
            slog(c, "chunk %s unreadable: %s", short_hex(hex, hash),
                 fv_sstore_errmsg(s->st));
            rc = FV_ENOTFOUND;
        }
        if (rc == FV_ENOTFOUND) {
            /* Not held, or not this device's to read: the same answer. */
            rc = fv_send_chunk(&c->out, FV_MSG_CHUNK, hash, NULL, 0);
        } else if (rc) {
            conn_internal(c, rc, "reading a chunk");
            return;
        } else {
            rc = fv_send_chunk(&c->out, FV_MSG_CHUNK, hash, s->chunk_buf,
                               loc.len);
            c->get_count++;
            c->get_bytes += loc.len;
        }
        if (queued(c, rc))
            return;
        c->get_pos++;
    }
}

static void handle_chunk_get(fv_srv_conn *c, const fv_msg *m)
{
    for (size_t i = 0; i < m->u.hashes.n; i++)
        memcpy(c->get_hash[i], m->u.hashes.hash[i], 32);
    c->get_n = m->u.hashes.n;
    c->get_pos = 0;
    c->getting = 1;
    pump_get(c);
}

/* ---- coordinator requests --------------------------------------------- */

static void handle_invite(fv_srv_conn *c, const fv_msg *m)
{
    fv_srv *s = c->srv;
    unsigned char token[FV_TOKEN_BYTES];
    char *text = NULL;
    int rc;

    s->env->random(token, sizeof token, s->env->random_payload);
    rc = fv_srv_invite_create(&text, s->st, s->address, s->pin,
                              s->has_org ? s->org : NULL, m->u.invite.name,
                              m->u.invite.name_len, (int)m->u.invite.role,
                              s->env->now + (int64_t)m->u.invite.ttl, token);
    fv_wipe(token, sizeof token);
    if (rc) {
        conn_internal(c, rc, "making an invite");
        return;
    }
    rc = fv_send_invited(&c->out, text);
    fv_wipe(text, strlen(text));
    free(text);
    if (queued(c, rc) == FV_OK)
        slog(c, "invite made (%s, valid %" PRIu64 " s)",
             role_name((int)m->u.invite.role), m->u.invite.ttl);
}

struct devlist {
    fv_sstore_device *d;
    size_t n, cap;
};

static int devlist_add(const fv_sstore_device *d, void *payload)
{
    struct devlist *l = payload;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        fv_sstore_device *p = realloc(l->d, cap * sizeof *p);
        if (!p)
            return FV_ENOMEM;
        l->d = p;
        l->cap = cap;
    }
    l->d[l->n++] = *d;
    return 0;
}

static void handle_devices(fv_srv_conn *c)
{
    struct devlist l = {NULL, 0, 0};
    fv_devinfo *info = NULL;
    int rc;

    /* A device list of FV_PROTO_MAX_ITEMS entries fits one frame (each is
     * under 200 bytes); more are not listed. */
    rc = fv_sstore_each_device(c->srv->st, FV_PROTO_MAX_ITEMS, devlist_add, &l);
    if (rc == FV_OK && l.n &&
        !(info = calloc(l.n, sizeof *info)))
        rc = FV_ENOMEM;
    if (rc) {
        conn_internal(c, rc, "listing devices");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++) {
        info[i].device = l.d[i].pk;
        info[i].name = l.d[i].name;
        info[i].name_len = l.d[i].name_len;
        info[i].role = (uint64_t)l.d[i].role;
        info[i].revoked = l.d[i].revoked;
        info[i].enrolled = l.d[i].enrolled;
        info[i].revoked_at = l.d[i].revoked_at;
    }
    queued(c, fv_send_devlist(&c->out, info, l.n));
done:
    free(info);
    free(l.d);
}

static void handle_revoke(fv_srv_conn *c, const fv_msg *m)
{
    char hex[9];
    int rc;
    if (memcmp(m->u.revoke.device, c->dev.pk, 32) == 0) {
        /* The last coordinator could otherwise lock the organisation out. */
        conn_error(c, FV_PERR_DENIED, "a device cannot revoke itself");
        return;
    }
    rc = fv_sstore_device_revoke(c->srv->st, m->u.revoke.device,
                                 c->srv->env->now);
    if (rc == FV_ENOTFOUND) {
        conn_error(c, FV_PERR_DENIED, "no such device");
        return;
    }
    if (rc) {
        conn_internal(c, rc, "revoking");
        return;
    }
    slog(c, "device %s revoked", short_hex(hex, m->u.revoke.device));
    queued(c, fv_send_simple(&c->out, FV_MSG_OK));
}

static void handle_orgkey(fv_srv_conn *c, const fv_msg *m)
{
    fv_srv *s = c->srv;
    int rc;
    /* Another server on the same store may have set it since. */
    if (!s->has_org &&
        fv_sstore_meta_get_fixed(s->st, "org", s->org, 32) == FV_OK)
        s->has_org = 1;
    if (s->has_org) {
        if (memcmp(s->org, m->u.orgkey.org, 32) != 0) {
            conn_error(c, FV_PERR_DENIED,
                       "the organisation key is already set");
            return;
        }
    } else {
        if ((rc = fv_sstore_meta_put(s->st, "org", m->u.orgkey.org, 32))) {
            conn_internal(c, rc, "storing the organisation key");
            return;
        }
        memcpy(s->org, m->u.orgkey.org, 32);
        s->has_org = 1;
        slog(c, "organisation key set");
    }
    queued(c, fv_send_simple(&c->out, FV_MSG_OK));
}

/* ---- frames ----------------------------------------------------------- */

static void handle_frame(fv_srv_conn *c, const unsigned char *p, size_t n)
{
    fv_msg *m = &c->srv->msg;

    if (fv_msg_decode(m, p, n) != FV_OK) {
        conn_error(c, FV_PERR_MALFORMED, "malformed message");
        return;
    }
    if (!c->authed) {
        if (m->type != FV_MSG_HELLO)
            conn_error(c, FV_PERR_MALFORMED, "HELLO must come first");
        else
            handle_hello(c, m);
        return;
    }
    /* A batch of chunks closes before anything else is handled: replies
     * keep the order of requests, and a query sees the chunks put before
     * it. */
    if (m->type != FV_MSG_CHUNK_PUT && c->npend &&
        (chunk_flush(c, 1) < 0 || c->state != FV_SRV_RUNNING))
        return;
    switch (m->type) {
    case FV_MSG_CHUNK_PUT:
        handle_chunk_put(c, m);
        return;
    case FV_MSG_CHUNK_QUERY:
        handle_chunk_query(c, m);
        return;
    case FV_MSG_CHUNK_GET:
        handle_chunk_get(c, m);
        return;
    case FV_MSG_PUSH:
        handle_push(c, m);
        return;
    case FV_MSG_PULL:
        handle_pull(c, m);
        return;
    case FV_MSG_BYE:
        slog(c, "bye");
        c->state = FV_SRV_CLOSING;
        return;
    case FV_MSG_INVITE:
    case FV_MSG_DEVICES:
    case FV_MSG_REVOKE:
    case FV_MSG_ORGKEY:
        if (c->dev.role != FV_ROLE_COORDINATOR) {
            conn_error(c, FV_PERR_DENIED, "this needs the coordinator role");
            return;
        }
        if (m->type == FV_MSG_INVITE)
            handle_invite(c, m);
        else if (m->type == FV_MSG_DEVICES)
            handle_devices(c);
        else if (m->type == FV_MSG_REVOKE)
            handle_revoke(c, m);
        else
            handle_orgkey(c, m);
        return;
    default: /* HELLO again, or a server's message */
        conn_error(c, FV_PERR_MALFORMED, "unexpected message");
        return;
    }
}

/* ---- HTTP probes -------------------------------------------------------
 *
 * A censor's prober that completes the handshake and speaks HTTP/1.1 gets
 * what a web server with nothing at that address answers, not a protocol
 * ERROR. It cannot be a frame: a connection's first frame is HELLO, whose
 * length (at most FV_SRV_PREAUTH_FRAME_MAX) starts 00 00, and no length of
 * any frame (at most FV_FRAME_MAX = 00 10 00 00) starts with a byte from
 * 'A' (0x41) to 'Z', which every HTTP method does. The head is read up to
 * its blank line (at most FV_SRV_HTTP_MAX bytes), then answered: 404 for a
 * well-formed request, 400 for anything else, as nginx does; the body is
 * nginx's error page without its signature line, and there is no Server
 * header (docs/PROTOCOL.md, "HTTP probes"). Nothing of the request is
 * logged or echoed. */

static const char *const wdays[] = {"Thu", "Fri", "Sat", "Sun",
                                    "Mon", "Tue", "Wed"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* 1 if the head holds a request line "METHOD SP /target SP HTTP/1.x" (and,
 * for HTTP/1.1, a Host header), as a server would take it. */
static int http_well_formed(const char *h, size_t n)
{
    size_t i = 0, j;
    const char *line_end = memchr(h, '\n', n);
    size_t ll;

    if (!line_end)
        return 0;
    ll = (size_t)(line_end - h);
    if (ll > 0 && h[ll - 1] == '\r')
        ll--;
    while (i < ll && h[i] >= 'A' && h[i] <= 'Z')
        i++;
    if (i == 0 || i >= ll || h[i] != ' ')
        return 0;
    j = ++i;
    while (i < ll && h[i] > ' ' && h[i] < 0x7f)
        i++;
    if (i == j || i >= ll || h[i] != ' ' || (h[j] != '/' && h[j] != '*'))
        return 0;
    i++;
    if (ll - i != 8 || memcmp(h + i, "HTTP/1.", 7) != 0 ||
        (h[i + 7] != '0' && h[i + 7] != '1'))
        return 0;
    if (h[i + 7] == '0')
        return 1;
    for (const char *q = line_end + 1; q < h + n;) {
        const char *e = memchr(q, '\n', (size_t)(h + n - q));
        if (!e)
            break;
        if ((size_t)(e - q) >= 5 && strncasecmp(q, "host:", 5) == 0)
            return 1;
        q = e + 1;
    }
    return 0;
}

static void http_answer(fv_srv_conn *c, int complete)
{
    static const char page[] =
        "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
        "<center><h1>%d %s</h1></center>\r\n</body>\r\n</html>\r\n";
    char body[256], head[512];
    const char *h = (const char *)c->http;
    int ok = complete && http_well_formed(h, c->http_len);
    int code = ok ? 404 : 400;
    const char *reason = ok ? "Not Found" : "Bad Request";
    int is_head = ok && c->http_len > 5 && memcmp(h, "HEAD ", 5) == 0;
    int64_t now = c->srv->env->now;
    int64_t days = now >= 0 ? now / 86400 : (now - 86399) / 86400;
    fv_civil t;
    int bn, hn;

    fv_civil_from_unix(&t, now);
    bn = snprintf(body, sizeof body, page, code, reason, code, reason);
    hn = snprintf(head, sizeof head,
                  "HTTP/1.1 %d %s\r\n"
                  "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n"
                  "Content-Type: text/html\r\n"
                  "Content-Length: %d\r\n"
                  "Connection: close\r\n\r\n",
                  code, reason, wdays[((days % 7) + 7) % 7], t.day,
                  months[t.month - 1], (int)(t.year % 10000), t.hour, t.min,
                  t.sec, bn);
    slog(c, "not the sync protocol: answered as a web server (%d)", code);
    c->perr = FV_PERR_MALFORMED; /* closes as after an ERROR: lingering */
    if (fv_out_raw(&c->out, head, (size_t)hn) != FV_OK ||
        (!is_head && fv_out_raw(&c->out, body, (size_t)bn) != FV_OK)) {
        c->state = FV_SRV_FAILED;
        return;
    }
    c->state = FV_SRV_CLOSING;
}

/* Takes bytes of an HTTP request head; answers once it is whole, or too
 * long, or cannot be one. Returns how many it took. */
static size_t http_feed(fv_srv_conn *c, const unsigned char *p, size_t n)
{
    size_t take = 0;

    if (!c->http && !(c->http = malloc(FV_SRV_HTTP_MAX))) {
        c->state = FV_SRV_FAILED;
        return n;
    }
    while (take < n && c->http_len < FV_SRV_HTTP_MAX) {
        unsigned char b = p[take++];
        size_t k = c->http_len;
        c->http[c->http_len++] = b;
        /* A control byte other than CR, LF or TAB is no HTTP head. */
        if (b < 0x20 && b != '\r' && b != '\n' && b != '\t') {
            http_answer(c, 0);
            return take;
        }
        /* The blank line ending the head: CRLF CRLF, or bare LF LF as
         * servers also accept. */
        if (b == '\n' && ((k >= 1 && c->http[k - 1] == '\n') ||
                          (k >= 3 && !memcmp(c->http + k - 3, "\r\n\r", 3)))) {
            http_answer(c, 1);
            return take;
        }
    }
    if (c->http_len == FV_SRV_HTTP_MAX)
        http_answer(c, 0);
    return take;
}

static size_t conn_recv(fv_srv_conn *c, const unsigned char *p, size_t n);

size_t fv_srv_conn_recv(fv_srv_conn *c, const unsigned char *p, size_t n)
{
    size_t used = conn_recv(c, p, n);
    /* All it was given is handled: the chunks in it become durable and are
     * acknowledged now (the device may be waiting for that to send more). */
    fv_srv_conn_flush(c);
    return used;
}

size_t fv_srv_conn_recv_more(fv_srv_conn *c, const unsigned char *p,
                             size_t n)
{
    return conn_recv(c, p, n);
}

static size_t conn_recv(fv_srv_conn *c, const unsigned char *p, size_t n)
{
    size_t used = 0;

    while (used < n && c->state == FV_SRV_RUNNING && !paused(c)) {
        const unsigned char *frame;
        size_t frame_len, k;
        int err;

        if (c->http || (!c->http_started && p[used] >= 'A' && p[used] <= 'Z')) {
            used += http_feed(c, p + used, n - used);
            break;
        }
        c->http_started = 1;

        /* Check the length before the framer sizes its buffer for it: a
         * peer that has not authenticated gets only HELLO-sized frames. */
        if (c->in.hdr_len < 4 && n - used >= 4 - c->in.hdr_len) {
            size_t max = c->authed ? FV_FRAME_MAX : FV_SRV_PREAUTH_FRAME_MAX;
            uint32_t len = 0;
            for (size_t i = 0; i < c->in.hdr_len; i++)
                len = len << 8 | c->in.hdr[i];
            for (size_t i = 0; i < 4 - c->in.hdr_len; i++)
                len = len << 8 | p[used + i];
            if (len == 0 || len > max) {
                used += 4 - c->in.hdr_len;
                conn_error(c, FV_PERR_MALFORMED, "bad frame length");
                break;
            }
        }
        k = fv_framer_feed(&c->in, p + used, n - used, &frame, &frame_len,
                           &err);
        used += k;
        if (err == FV_EPROTO) {
            conn_error(c, FV_PERR_MALFORMED, "bad frame length");
            break;
        }
        if (err) {
            queued(c, err);
            break;
        }
        if (frame) {
            handle_frame(c, frame, frame_len);
            update_out_full(c);
        }
    }
    return used;
}

const unsigned char *fv_srv_conn_send_buf(fv_srv_conn *c, size_t *len)
{
    const unsigned char *p = fv_out_pending(&c->out, len);
    if (*len == 0 || c->state == FV_SRV_FAILED) {
        *len = 0;
        return NULL;
    }
    return p;
}

void fv_srv_conn_send_ack(fv_srv_conn *c, size_t n)
{
    fv_out_ack(&c->out, n);
    if (fv_out_size(&c->out) == 0 && c->out.cap > KEEP_BUF_BYTES) {
        fv_out_free(&c->out);
        fv_out_init(&c->out);
    }
    pump(c);
    pump_get(c);
    update_out_full(c);
}
