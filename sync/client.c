/* client.c - the device side of sync, sans-I/O (see client.h). */
#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fieldvault_sync.h"
#include "vault_sync.h"

#define WINDOW 4                   /* PUSH batches in flight */
#define BATCH_BYTES (512u * 1024)  /* envelope bytes per PUSH */
/* CHUNK-PUTs not yet acknowledged: the server acknowledges a batch with one
 * fdatasync when its input runs dry, so a deeper window means fewer syncs.
 * Twice the server's durable batch (FV_SRV_CHUNK_BATCH, 8 MiB: 32 chunks
 * of 256 KiB): while the server makes one batch durable, the next is on
 * its way, instead of both sides waiting on each other around every
 * fdatasync. A cut costs only the chunk being sent: the server keeps every
 * chunk that arrived whole, and the next query finds them. */
#define CHUNK_WINDOW 64
/* The next chunk is queued once less than this (a TLS record) is left to
 * send: the socket's buffer keeps the link busy meanwhile. */
#define OUT_LOW (16u * 1024)
/* Pulled entries stored in one transaction (fv_vs_pull_hold): each commit
 * rewrites the index pages its random ids touched, so eight batches of 256
 * per commit write each page about once where eight commits would write it
 * up to eight times. A cut loses at most this many (read again next time). */
#define HOLD_ENTRIES 2048

/* One page of attachment chunks being uploaded or downloaded. */
struct chunk_page {
    unsigned char hash[FV_PROTO_MAX_QUERY][32];
    uint64_t len[FV_PROTO_MAX_QUERY];
    size_t n;
    size_t todo[FV_PROTO_MAX_QUERY]; /* upload: indexes the server lacks */
    size_t ntodo, next;              /* upload: how many, the next to send */
    size_t answered;                 /* download: CHUNKs received */
    int out;                         /* a QUERY or GET awaits its answer */
};

struct batch {
    size_t n;
    unsigned char ids[FV_PROTO_MAX_BATCH][32];
};

struct fv_client {
    fv_vault *v;
    const fv_client_request *req;
    fv_sync_state st;
    unsigned char device[32], box[32];
    fv_out out;
    fv_framer in;
    int status;
    char msg[256];
    int started, welcomed, pull_done, answered, bye_sent, outbox_done;
    unsigned version; /* the protocol version WELCOME chose */
    /* A coordinator's vault that holds the organisation key certifies the
     * devices the server lists (DEVICES, pipelined before PULL). */
    int certify, certified;
    int rollback; /* FV_ROLLBACK_* after ERROR rollback or diverged */
    int64_t last_queued; /* outbox position of the last envelope in a PUSH */
    struct batch inflight[WINDOW];
    size_t inflight_head, inflight_count;
    fv_client_stats stats;
    char *invite_text;
    /* attachment chunks: upload after the envelopes' receipts, then
     * download what this vault lacks */
    int up_done, down_done;
    unsigned char up_after[32], down_after[32]; /* paging cursors */
    struct chunk_page *page;
    size_t unacked; /* CHUNK-PUTs sent, not yet acknowledged */
    fv_client_check_fn check; /* NULL: pulled envelopes checked here */
    void *check_payload;
    fv_vs_checked *checked; /* FV_PROTO_MAX_BATCH, fv_secure_alloc (keys) */
    int holding; /* a pull transaction is held (fv_vs_pull_hold) */
    size_t held; /* entries stored in it */
};

static int cfail(fv_client *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfail(fv_client *c, int rc, const char *fmt, ...)
{
    va_list ap;
    if (c->status != FV_OK)
        return c->status;
    /* What the held pull transaction stored goes back: the vault is the
     * caller's again at once (it may start over: session.c). */
    if (c->holding) {
        fv_vs_pull_drop(c->v);
        c->holding = 0;
        c->held = 0;
    }
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    c->status = rc;
    return rc;
}

/* A vault failure: its message. */
static int vfail(fv_client *c, int rc)
{
    return rc ? cfail(c, rc, "%s", fv_vault_errmsg(c->v)) : FV_OK;
}

int fv_client_new(fv_client **out, fv_vault *v, const fv_client_request *req)
{
    fv_client *c;
    int rc = FV_OK;

    *out = NULL;
    if (!v || !req || (req->op == FV_CLIENT_ENROLL && !req->invite))
        return FV_EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return FV_ENOMEM;
    c->v = v;
    c->req = req;
    fv_out_init(&c->out);
    fv_framer_init(&c->in);
    fv_vs_device(v, c->device, c->box);
    if (req->op == FV_CLIENT_ENROLL) {
        fv_sync_state old;
        if (fv_vs_state_get(v, &old) == FV_OK) {
            free(c);
            return FV_EEXIST;
        }
        snprintf(c->st.server, sizeof c->st.server, "%s",
                 req->server_override ? req->server_override
                                      : req->invite->address);
        memcpy(c->st.pin, req->invite->pin, 32);
    } else {
        rc = fv_vs_state_get(v, &c->st);
    }
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return FV_OK;
}

void fv_client_free(fv_client *c)
{
    if (!c)
        return;
    if (c->holding)
        fv_vs_pull_drop(c->v); /* cut mid-feed: read again next time */
    fv_out_free(&c->out);
    fv_framer_free(&c->in);
    free(c->invite_text);
    free(c->page);
    fv_secure_free(c->checked);
    fv_wipe(&c->st, sizeof c->st);
    free(c);
}

/* ---- pushing ---------------------------------------------------------- */

struct gather {
    const unsigned char *env[FV_PROTO_MAX_BATCH];
    size_t len[FV_PROTO_MAX_BATCH];
    unsigned char *copy[FV_PROTO_MAX_BATCH];
    struct batch *b;
    size_t bytes;
    int64_t last;
};

static int gather_cb(int64_t seq, const unsigned char *id,
                     const unsigned char *bytes, size_t len, void *payload)
{
    struct gather *g = payload;
    size_t i = g->b->n;
    if (i > 0 && g->bytes + len > BATCH_BYTES)
        return 1; /* full: this one goes in the next batch */
    g->copy[i] = malloc(len ? len : 1);
    if (!g->copy[i])
        return FV_ENOMEM;
    memcpy(g->copy[i], bytes, len);
    g->env[i] = g->copy[i];
    g->len[i] = len;
    memcpy(g->b->ids[i], id, 32);
    g->b->n++;
    g->bytes += len;
    g->last = seq;
    return 0;
}

/* Queues PUSH frames while the window has room and the outbox has more;
 * queues BYE once everything is sent. */
static int fill_window(fv_client *c)
{
    while (c->status == FV_OK && !c->outbox_done && c->inflight_count < WINDOW) {
        struct gather g;
        struct batch *b =
            &c->inflight[(c->inflight_head + c->inflight_count) % WINDOW];
        int rc;

        memset(&g, 0, sizeof g);
        b->n = 0;
        g.b = b;
        g.last = c->last_queued;
        rc = fv_vs_outbox(c->v, c->last_queued, FV_PROTO_MAX_BATCH, gather_cb, &g);
        if (rc < 0) {
            vfail(c, rc);
        } else if (b->n == 0) {
            c->outbox_done = 1;
        } else {
            rc = fv_send_push(&c->out, g.env, g.len, b->n);
            if (rc)
                cfail(c, rc, "cannot queue a push: %s", fv_strerror(rc));
            c->last_queued = g.last;
            c->inflight_count++;
            c->stats.outbox += b->n;
        }
        for (size_t i = 0; i < b->n; i++)
            free(g.copy[i]);
    }
    return c->status;
}

/* Sends BYE once nothing more will be asked of the server. */
static void maybe_bye(fv_client *c)
{
    if (c->status == FV_OK && !c->bye_sent &&
        (c->req->op != FV_CLIENT_SYNC || (c->up_done && c->down_done))) {
        int rc = fv_send_simple(&c->out, FV_MSG_BYE);
        if (rc)
            cfail(c, rc, "cannot queue BYE");
        c->bye_sent = 1;
    }
}

/* ---- attachment chunks ------------------------------------------------- */

static int page_cb(const unsigned char *hash, uint64_t len, void *payload)
{
    struct chunk_page *pg = payload;
    memcpy(pg->hash[pg->n], hash, 32);
    pg->len[pg->n++] = len;
    return 0;
}

/* Starts the next page of chunks to upload (CHUNK-QUERY) or to download
 * (CHUNK-GET), or notes that there is none. */
static void next_page(fv_client *c, int upload)
{
    struct chunk_page *pg = c->page;
    const unsigned char *hashes[FV_PROTO_MAX_QUERY];
    unsigned char *after = upload ? c->up_after : c->down_after;
    int rc;

    memset(pg, 0, sizeof *pg);
    rc = upload ? fv_vs_chunk_outbox(c->v, after, FV_PROTO_MAX_QUERY, page_cb, pg)
                : fv_vs_chunk_missing(c->v, after, FV_PROTO_MAX_GET, page_cb, pg);
    if (rc) {
        vfail(c, rc);
        return;
    }
    if (pg->n == 0) {
        if (upload)
            c->up_done = 1;
        else
            c->down_done = 1;
        return;
    }
    memcpy(after, pg->hash[pg->n - 1], 32);
    for (size_t i = 0; i < pg->n; i++)
        hashes[i] = pg->hash[i];
    rc = fv_send_hashes(&c->out, upload ? FV_MSG_CHUNK_QUERY : FV_MSG_CHUNK_GET,
                        hashes, pg->n);
    if (rc)
        cfail(c, rc, "cannot queue a chunk request");
    pg->out = 1;
}

/* A chunk read from the vault straight into the output queue. */
struct chunk_fill {
    fv_vault *v;
    const unsigned char *hash;
    int vault_rc; /* the vault's error, with its message */
};

static int fill_chunk(void *arg, unsigned char *dst, size_t len)
{
    struct chunk_fill *f = arg;
    size_t got = 0;
    f->vault_rc = fv_vs_chunk_get(f->v, f->hash, dst, len, &got);
    if (f->vault_rc)
        return f->vault_rc;
    return got == len ? FV_OK : FV_ECORRUPT;
}

/* Queues CHUNK-PUTs of the current page while few are unacknowledged and
 * less than a TLS record waits to be sent: the queue then never holds
 * much to move down when it is reused. */
static void send_chunks(fv_client *c)
{
    struct chunk_page *pg = c->page;
    while (c->status == FV_OK && pg->next < pg->ntodo &&
           c->unacked < CHUNK_WINDOW && fv_out_size(&c->out) < OUT_LOW) {
        size_t i = pg->todo[pg->next++];
        struct chunk_fill f = {c->v, pg->hash[i], FV_OK};
        int rc;
        if (pg->len[i] == 0 || pg->len[i] > FV_SYNC_MAX_CHUNK) {
            cfail(c, FV_ECORRUPT, "a stored chunk has an impossible length");
            return;
        }
        rc = fv_send_chunk_fill(&c->out, FV_MSG_CHUNK_PUT, pg->hash[i],
                                (size_t)pg->len[i], fill_chunk, &f);
        if (f.vault_rc) {
            vfail(c, f.vault_rc);
            return;
        }
        if (rc) {
            cfail(c, rc, rc == FV_ECORRUPT
                             ? "a stored chunk is not as long as its row says"
                             : "cannot queue a chunk");
            return;
        }
        c->unacked++;
        c->stats.chunk_bytes_sent += pg->len[i];
    }
}

/* Moves the attachment phases along: called whenever something changed. */
static void chunk_step(fv_client *c)
{
    if (c->req->op != FV_CLIENT_SYNC || !c->welcomed || c->status)
        return;
    if (!c->page) {
        c->page = malloc(sizeof *c->page);
        if (!c->page) {
            cfail(c, FV_ENOMEM, "out of memory");
            return;
        }
        memset(c->page, 0, sizeof *c->page);
    }
    /* Upload once every envelope has its receipt: the server accepts only
     * chunks its stored envelopes list. */
    if (!c->up_done && c->outbox_done && c->inflight_count == 0) {
        struct chunk_page *pg = c->page;
        if (!pg->out && pg->next == pg->ntodo && c->unacked == 0)
            next_page(c, 1);
        if (!c->up_done && !pg->out)
            send_chunks(c);
    }
    /* Then download what the pulled envelopes list and this vault lacks. */
    if (c->up_done && c->pull_done && !c->down_done && !c->page->out)
        next_page(c, 0);
    maybe_bye(c);
}

static int on_have(fv_client *c, const fv_msg *m)
{
    struct chunk_page *pg = c->page;
    const unsigned char *held[FV_PROTO_MAX_QUERY];
    size_t nheld = 0;

    if (!pg || !pg->out || c->up_done || m->u.have.len != (pg->n + 7) / 8)
        return cfail(c, FV_EPROTO, "an unexpected CHUNK-HAVE");
    pg->out = 0;
    for (size_t i = 0; i < pg->n; i++) {
        if (m->u.have.bits[i / 8] >> (i % 8) & 1)
            held[nheld++] = pg->hash[i]; /* arrived before a cut */
        else
            pg->todo[pg->ntodo++] = i;
    }
    if (nheld)
        vfail(c, fv_vs_chunks_delivered(c->v, held, nheld));
    c->stats.chunks_sent += nheld;
    return c->status;
}

static int on_ack(fv_client *c, const fv_msg *m)
{
    if (m->u.hashes.n > c->unacked)
        return cfail(c, FV_EPROTO, "the server acknowledged chunks not sent");
    /* Delivered only once the server says the chunk is durably stored. */
    if (vfail(c, fv_vs_chunks_delivered(c->v, m->u.hashes.hash, m->u.hashes.n)))
        return c->status;
    c->unacked -= m->u.hashes.n;
    c->stats.chunks_sent += m->u.hashes.n;
    return FV_OK;
}

static int on_chunk(fv_client *c, const fv_msg *m)
{
    struct chunk_page *pg = c->page;
    int rc;

    if (!pg || !pg->out || !c->up_done || pg->answered >= pg->n ||
        memcmp(m->u.chunk.hash, pg->hash[pg->answered], 32) != 0)
        return cfail(c, FV_EPROTO, "an unexpected CHUNK");
    if (++pg->answered == pg->n)
        pg->out = 0;
    if (!m->u.chunk.data) {
        c->stats.chunks_unavailable++; /* its author has not uploaded it yet */
        return FV_OK;
    }
    rc = fv_vs_chunk_store(c->v, m->u.chunk.hash, m->u.chunk.data,
                           m->u.chunk.len);
    if (rc == FV_EPROTO) {
        /* Never accepted: dropped, and asked for again next time. */
        c->stats.chunks_rejected++;
        return FV_OK;
    }
    if (rc)
        return vfail(c, rc);
    c->stats.chunks_received++;
    c->stats.chunk_bytes_received += m->u.chunk.len;
    return FV_OK;
}

/* ---- start ------------------------------------------------------------ */

int fv_client_start(fv_client *c, const unsigned char pin[32],
                    const unsigned char binding[32])
{
    const fv_client_request *r = c->req;
    const unsigned char *token = r->op == FV_CLIENT_ENROLL ? r->invite->token : NULL;
    const unsigned char *box = token ? c->box : NULL;
    unsigned char sig[64];
    unsigned char *tbs = NULL;
    size_t tbs_len = 0;
    int rc;

    if (c->status || c->started)
        return c->status ? c->status : FV_EINVAL;
    c->started = 1;
    if (!fv_ct_equal(pin, c->st.pin, 32))
        return cfail(c, FV_EPIN, "the server's key does not match the pinned key");
    if ((rc = fv_hello_tbs(&tbs, &tbs_len, pin, binding, c->device, token, box)))
        return cfail(c, rc, "out of memory");
    fv_vs_sign(c->v, sig, tbs, tbs_len);
    fv_enc_free_buf(tbs, tbs_len);
    rc = fv_send_hello(&c->out, c->device, sig, token, box);
    c->certify = (r->op == FV_CLIENT_SYNC || r->op == FV_CLIENT_REVOKE ||
                  r->op == FV_CLIENT_DEVICES) &&
                 c->st.role == FV_ROLE_COORDINATOR && fv_vs_can_certify(c->v);
    switch (r->op) {
    case FV_CLIENT_SYNC:
        /* Before PULL, so that what the pull brings meets today's list. */
        if (!rc && c->certify)
            rc = fv_send_simple(&c->out, FV_MSG_DEVICES);
        if (!rc)
            rc = fv_send_pull(&c->out, c->st.has_epoch ? c->st.epoch : NULL,
                              c->st.cursor, c->st.chain, c->st.rseq,
                              c->st.rseq ? c->st.rid : NULL);
        break;
    case FV_CLIENT_INVITE:
        if (!rc)
            rc = fv_send_invite(&c->out, r->name, (uint64_t)r->role, r->ttl);
        break;
    case FV_CLIENT_DEVICES:
        if (!rc)
            rc = fv_send_simple(&c->out, FV_MSG_DEVICES);
        break;
    case FV_CLIENT_REVOKE:
        if (!rc)
            rc = fv_send_key(&c->out, FV_MSG_REVOKE, r->device);
        /* After REVOKE: the list then shows it revoked, and this vault
         * signs the revocation at once. */
        if (!rc && c->certify)
            rc = fv_send_simple(&c->out, FV_MSG_DEVICES);
        break;
    case FV_CLIENT_ORGKEY: {
        unsigned char org[32];
        if (!fv_vs_org_pk(c->v, org))
            return cfail(c, FV_ENOTFOUND, "this vault has no organisation key");
        if (!rc)
            rc = fv_send_key(&c->out, FV_MSG_ORGKEY, org);
        break;
    }
    default:
        break;
    }
    if (rc)
        return cfail(c, rc, "cannot queue the first messages");
    /* Pipelined: the server handles everything after HELLO in order, so a
     * sync with nothing new is one round trip. */
    if (r->op == FV_CLIENT_SYNC)
        fill_window(c);
    maybe_bye(c);
    return c->status;
}

/* ---- receiving -------------------------------------------------------- */

static int on_welcome(fv_client *c, const fv_msg *m)
{
    int rc = FV_OK;
    if (m->u.welcome.version < FV_PROTO_MIN_VERSION ||
        m->u.welcome.version > FV_PROTOCOL_VERSION)
        return cfail(c, FV_EPROTO, "the server chose an unknown protocol version");
    c->version = (unsigned)m->u.welcome.version;
    c->stats.role = (int)m->u.welcome.role;
    if (c->req->op == FV_CLIENT_ENROLL) {
        memcpy(c->st.server_key, m->u.welcome.server, 32);
        memcpy(c->st.epoch, m->u.welcome.epoch, 16);
        c->st.has_epoch = 1;
        c->st.role = (int)m->u.welcome.role;
        if ((rc = vfail(c, fv_vs_state_put(c->v, &c->st))))
            return rc;
        if (c->req->invite->has_org)
            rc = vfail(c, fv_vs_org_learn(c->v, c->req->invite->org));
        c->answered = 1;
    } else {
        if (!fv_ct_equal(m->u.welcome.server, c->st.server_key, 32))
            return cfail(c, FV_EPIN, "the server's receipt key changed since enrollment");
        if (!c->st.has_epoch ||
            memcmp(c->st.epoch, m->u.welcome.epoch, 16) != 0) {
            /* A new server (or a first sync): its log starts over, and it
             * holds nothing of ours. The PULL already sent carried our old
             * epoch, so the server sends its feed from the start. */
            int had = c->st.has_epoch;
            memcpy(c->st.epoch, m->u.welcome.epoch, 16);
            c->st.has_epoch = 1;
            fv_client_forget(&c->st);
            if ((rc = vfail(c, had ? fv_vs_reset(c->v, &c->st)
                                   : fv_vs_state_put(c->v, &c->st))))
                return rc;
        }
        if (c->st.role != (int)m->u.welcome.role) {
            c->st.role = (int)m->u.welcome.role;
            if ((rc = vfail(c, fv_vs_state_put(c->v, &c->st))))
                return rc;
        }
    }
    if (rc == FV_OK && m->u.welcome.org)
        rc = vfail(c, fv_vs_org_learn(c->v, m->u.welcome.org));
    c->welcomed = 1;
    return rc;
}

static int on_receipt(fv_client *c, const fv_msg *m)
{
    fv_sync_state next;
    fv_receipt r;
    struct batch *b;
    const unsigned char *ids[FV_PROTO_MAX_BATCH];
    size_t i;
    int rc;

    if (c->inflight_count == 0)
        return cfail(c, FV_EPROTO, "the server sent a receipt for nothing");
    b = &c->inflight[c->inflight_head];
    if (fv_sign_verify(m->u.receipt.sig, m->u.receipt.body,
                       m->u.receipt.body_len, c->st.server_key) != FV_OK ||
        fv_receipt_decode(&r, m->u.receipt.body, m->u.receipt.body_len) ||
        memcmp(r.epoch, c->st.epoch, 16) != 0 ||
        memcmp(r.device, c->device, 32) != 0 || r.n != b->n)
        return cfail(c, FV_EPROTO, "the server's receipt does not verify");
    /* Version 1 refuses a whole batch with ERROR, never an envelope. */
    if (r.nrefused && c->version < 2)
        return cfail(c, FV_EPROTO, "the server's receipt refuses an envelope "
                                   "under protocol version 1");
    next = c->st;
    for (i = 0; i < r.n; i++) {
        if (memcmp(r.id[i], b->ids[i], 32) != 0)
            return cfail(c, FV_EPROTO, "the receipt names other envelopes");
        ids[i] = r.id[i];
        /* The receipt mark: the highest position a receipt named (seq 0:
         * a retraction not stored). */
        if (r.seq[i] > next.rseq) {
            next.rseq = r.seq[i];
            memcpy(next.rid, r.id[i], 32);
        }
    }
    rc = vfail(c, fv_vs_delivered(c->v, &next, m->u.receipt.body,
                                  m->u.receipt.body_len, m->u.receipt.sig, ids,
                                  r.refused, r.n));
    if (rc)
        return rc;
    c->st = next;
    c->stats.pushed += r.n - r.nrefused;
    c->stats.rejected += r.nrefused;
    c->inflight_head = (c->inflight_head + 1) % WINDOW;
    c->inflight_count--;
    fill_window(c);
    maybe_bye(c);
    return c->status;
}

/* Commits the held pull transaction, if any. */
static int hold_flush(fv_client *c)
{
    if (!c->holding)
        return FV_OK;
    c->holding = 0;
    c->held = 0;
    return vfail(c, fv_vs_pull_flush(c->v));
}

static int on_entries(fv_client *c, const fv_msg *m)
{
    fv_sync_state next = c->st;
    unsigned char id[32];
    const unsigned char *env[FV_PROTO_MAX_BATCH];
    size_t len[FV_PROTO_MAX_BATCH], n = 0, added = 0, refused = 0;
    int rc;

    for (size_t i = 0; i < m->u.entries.n; i++) {
        unsigned char want[32];
        if (m->u.entries.seq[i] != next.cursor + 1)
            return cfail(c, FV_EPROTO, "the server's log skips or repeats entries");
        /* An erased entry (its record was retracted) carries its id only:
         * the chain advances over it, and nothing is stored. */
        if (m->u.entries.env[i]) {
            fv_hash(id, m->u.entries.env[i], m->u.entries.len[i]);
            env[n] = m->u.entries.env[i];
            len[n++] = m->u.entries.len[i];
        } else {
            memcpy(id, m->u.entries.id[i], 32);
        }
        fv_chain_next(want, next.chain, m->u.entries.seq[i], id);
        if (!fv_ct_equal(want, m->u.entries.chain[i], 32))
            return cfail(c, FV_EPROTO, "the server's log chain does not verify");
        next.cursor = m->u.entries.seq[i];
        memcpy(next.chain, want, 32);
    }
    /* The chain holds: signatures and content keys are checked (on the
     * caller's threads, if it gave a checker) before anything is stored. */
    if (n && !c->checked &&
        !(c->checked = fv_secure_alloc(FV_PROTO_MAX_BATCH * sizeof *c->checked)))
        return cfail(c, FV_ENOMEM, "out of memory");
    if (n && c->check)
        c->check(c->v, env, len, c->checked, n, c->check_payload);
    else
        for (size_t i = 0; i < n; i++)
            fv_vs_check(c->v, env[i], len[i], &c->checked[i]);
    if (!c->holding) {
        if ((rc = vfail(c, fv_vs_pull_hold(c->v))))
            return rc;
        c->holding = 1;
    }
    rc = vfail(c, fv_vs_import_checked(c->v, &next, env, len, c->checked, n,
                                       &added, &refused));
    fv_wipe(c->checked, n * sizeof *c->checked);
    if (rc)
        return rc; /* cfail rolled the held entries back */
    c->held += m->u.entries.n;
    if (c->held >= HOLD_ENTRIES && (rc = hold_flush(c)))
        return rc;
    c->st = next;
    c->stats.pulled += m->u.entries.n;
    c->stats.added += added;
    c->stats.refused += refused;
    return FV_OK;
}

void fv_client_set_checker(fv_client *c, fv_client_check_fn fn, void *payload)
{
    c->check = fn;
    c->check_payload = payload;
}

static int on_error(fv_client *c, const fv_msg *m)
{
    char text[160];
    size_t n = 0;
    int rc;
    /* The server's words, reduced to printable ASCII before they are shown. */
    for (size_t i = 0; i < m->u.error.len && n + 1 < sizeof text; i++) {
        char ch = m->u.error.text[i];
        text[n++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    text[n] = '\0';
    switch (m->u.error.code) {
    case FV_PERR_DENIED: rc = FV_EDENIED; break;
    case FV_PERR_INVITE: rc = FV_EINVITE; break;
    case FV_PERR_BUSY: rc = FV_ENET; break;
    /* The server's log went back, or differs from what this device read
     * and was receipted: the caller may recover (fv_client_rollback). */
    case FV_PERR_ROLLBACK:
    case FV_PERR_DIVERGED:
        c->rollback = m->u.error.code == FV_PERR_ROLLBACK
                          ? FV_ROLLBACK_BEHIND
                          : FV_ROLLBACK_DIVERGED;
        rc = FV_EPROTO;
        break;
    /* The server's own failure (a full disk...): nothing here is damaged
     * and the outbox keeps everything not yet receipted. */
    case FV_PERR_INTERNAL:
    case FV_PERR_FULL: rc = FV_ESERVER; break;
    default: rc = FV_EPROTO; break;
    }
    return cfail(c, rc, rc == FV_ESERVER ? "the server failed on its side: %s"
                                         : "the server refused: %s", text);
}

/* The server's device list, certified by this vault (core/devices.c). */
static int certify(fv_client *c, const fv_msg *m)
{
    fv_msg copy = *m;
    fv_devinfo d;
    fv_vs_devinfo *list = NULL;
    size_t n = 0, issued = 0, released = 0;
    int rc = FV_OK;

    if (copy.u.devlist.n &&
        !(list = calloc(copy.u.devlist.n, sizeof *list)))
        return cfail(c, FV_ENOMEM, "out of memory");
    for (size_t i = 0; i < copy.u.devlist.n && rc == FV_OK; i++) {
        if ((rc = fv_devlist_next(&copy, &d)))
            break;
        memcpy(list[n].pk, d.device, 32);
        list[n].role = (int)d.role;
        list[n].revoked = d.revoked;
        list[n].enrolled = d.enrolled;
        list[n].revoked_at = d.revoked_at;
        n++;
    }
    if (rc)
        rc = cfail(c, FV_EPROTO, "the server's device list is malformed");
    else
        rc = vfail(c, fv_vs_certify(c->v, list, n, &issued, &released));
    c->stats.certified += issued;
    c->stats.released += released;
    free(list);
    return rc;
}

static int on_message(fv_client *c, const fv_msg *m)
{
    int frc;
    if (!c->welcomed && m->type != FV_MSG_WELCOME && m->type != FV_MSG_ERROR)
        return cfail(c, FV_EPROTO, "the server did not answer HELLO first");
    /* Only ENTRIES join the held pull transaction: the feed's end
     * (PULLED), a receipt or anything else finds what came before
     * committed. */
    if (m->type != FV_MSG_ENTRIES && (frc = hold_flush(c)))
        return frc;
    switch (m->type) {
    case FV_MSG_WELCOME:
        return c->welcomed ? cfail(c, FV_EPROTO, "a second WELCOME")
                           : on_welcome(c, m);
    case FV_MSG_ERROR:
        return on_error(c, m);
    case FV_MSG_RECEIPT:
        return on_receipt(c, m);
    case FV_MSG_ENTRIES:
        if (c->req->op != FV_CLIENT_SYNC || c->pull_done)
            break;
        return on_entries(c, m);
    case FV_MSG_PULLED:
        if (c->req->op != FV_CLIENT_SYNC || c->pull_done)
            break;
        if (m->u.pulled.head != c->st.cursor ||
            !fv_ct_equal(m->u.pulled.chain, c->st.chain, 32))
            return cfail(c, FV_EPROTO, "the server's log head does not match what it sent");
        c->pull_done = 1;
        return vfail(c, fv_vs_conflicts(c->v, &c->stats.conflicts));
    case FV_MSG_INVITED:
        if (c->req->op != FV_CLIENT_INVITE || c->answered)
            break;
        c->invite_text = malloc(m->u.invited.len + 1);
        if (!c->invite_text)
            return cfail(c, FV_ENOMEM, "out of memory");
        memcpy(c->invite_text, m->u.invited.text, m->u.invited.len);
        c->invite_text[m->u.invited.len] = '\0';
        c->answered = 1;
        return FV_OK;
    case FV_MSG_DEVLIST: {
        fv_msg copy = *m;
        fv_devinfo d;
        int rc;
        if (c->certify && !c->certified) {
            c->certified = 1;
            if ((rc = certify(c, m)))
                return rc;
            if (c->req->op != FV_CLIENT_DEVICES)
                return FV_OK;
        }
        if (c->req->op != FV_CLIENT_DEVICES || c->answered)
            break;
        for (size_t i = 0; i < copy.u.devlist.n; i++)
            if (fv_devlist_next(&copy, &d) == FV_OK && c->req->device_fn &&
                c->req->device_fn(&d, c->req->device_payload))
                return cfail(c, FV_ECANCELED, "stopped by the caller");
        c->answered = 1;
        return FV_OK;
    }
    case FV_MSG_CHUNK_HAVE:
        return on_have(c, m);
    case FV_MSG_CHUNK_ACK:
        return on_ack(c, m);
    case FV_MSG_CHUNK:
        return on_chunk(c, m);
    case FV_MSG_OK:
        if ((c->req->op != FV_CLIENT_REVOKE && c->req->op != FV_CLIENT_ORGKEY) ||
            c->answered)
            break;
        c->answered = 1;
        return FV_OK;
    default:
        break;
    }
    return cfail(c, FV_EPROTO, "the server sent an unexpected message (type %d)",
                 m->type);
}

int fv_client_recv(fv_client *c, const unsigned char *p, size_t n)
{
    fv_msg *m = NULL;
    while (c->status == FV_OK && n > 0) {
        const unsigned char *frame;
        size_t flen;
        int err;
        size_t used = fv_framer_feed(&c->in, p, n, &frame, &flen, &err);
        p += used;
        n -= used;
        /* Every failure falls through to the one free below: a bad length
         * after a good frame must not leak the message buffer. */
        if (err) {
            cfail(c, err, "the server sent a malformed frame");
            break;
        }
        if (!frame)
            continue;
        c->stats.frames_received++;
        if (!m && !(m = malloc(sizeof *m))) {
            cfail(c, FV_ENOMEM, "out of memory");
            break;
        }
        if (fv_msg_decode(m, frame, flen))
            cfail(c, FV_EPROTO, "the server sent a malformed message");
        else if (on_message(c, m) == FV_OK)
            chunk_step(c);
    }
    free(m);
    return c->status;
}

const unsigned char *fv_client_pending(const fv_client *c, size_t *n)
{
    return fv_out_pending(&c->out, n);
}

size_t fv_client_pending_bytes(const fv_client *c) { return fv_out_size(&c->out); }

void fv_client_ack(fv_client *c, size_t n)
{
    fv_out_ack(&c->out, n);
    /* The queue drained: room for more chunks. */
    if (c->status == FV_OK && c->page && c->page->next < c->page->ntodo)
        chunk_step(c);
}

int fv_client_done(const fv_client *c)
{
    if (c->status != FV_OK || !c->welcomed || fv_out_size(&c->out) > 0)
        return 0;
    switch (c->req->op) {
    case FV_CLIENT_SYNC:
        return c->pull_done && c->outbox_done && c->inflight_count == 0 &&
               c->up_done && c->down_done && c->unacked == 0 &&
               (!c->certify || c->certified);
    case FV_CLIENT_ENROLL:
        return 1;
    default:
        return c->answered && (!c->certify || c->certified);
    }
}

int fv_client_status(const fv_client *c) { return c->status; }

const char *fv_client_errmsg(const fv_client *c)
{
    return c->msg[0] ? c->msg : fv_strerror(c->status);
}

const fv_client_stats *fv_client_get_stats(const fv_client *c)
{
    return &c->stats;
}

const char *fv_client_invite_text(const fv_client *c) { return c->invite_text; }

int fv_client_rollback(const fv_client *c) { return c->rollback; }

void fv_client_forget(fv_sync_state *st)
{
    st->cursor = 0;
    memset(st->chain, 0, 32);
    st->rseq = 0;
    memset(st->rid, 0, 32);
}
