/* proto.c - sync frames and messages (see proto.h, docs/PROTOCOL.md). */
#include "proto.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "fieldvault.h"

/* ---- output frames ---------------------------------------------------- */

void fv_out_init(fv_out *o) { memset(o, 0, sizeof *o); }

void fv_out_free(fv_out *o)
{
    free(o->buf);
    memset(o, 0, sizeof *o);
}

/* Makes room for `add` more bytes after o->len. */
static int out_reserve(fv_out *o, size_t add)
{
    size_t need = o->len + add;
    /* Reclaim the sent prefix only when it is worth a copy: when it is half
     * the queue, or when the buffer would have to grow. */
    if (o->start > 0 && (need > o->cap || o->start >= o->len / 2)) {
        memmove(o->buf, o->buf + o->start, o->len - o->start);
        o->len -= o->start;
        o->start = 0;
        need = o->len + add;
    }
    if (need > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        unsigned char *p;
        while (cap < need)
            cap *= 2;
        p = realloc(o->buf, cap);
        if (!p)
            return FV_ENOMEM;
        o->buf = p;
        o->cap = cap;
    }
    return FV_OK;
}

int fv_out_raw(fv_out *o, const void *p, size_t n)
{
    if (n > FV_FRAME_MAX)
        return FV_ELIMIT;
    if (n == 0)
        return FV_OK;
    if (out_reserve(o, n) != FV_OK)
        return FV_ENOMEM;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return FV_OK;
}

/* Appends the length prefix and the writer's bytes of a frame whose body
 * ends with tail_len more bytes, and reserves room for those: *tail is
 * where they go. The frame counts as queued only once the caller adds
 * tail_len to o->len; *start is where it begins. Disposes the writer. */
static int frame_open(fv_out *o, fv_enc *e, size_t tail_len, unsigned char **tail,
                      size_t *start)
{
    size_t n;
    if (e->err) {
        fv_enc_dispose(e);
        return FV_ENOMEM;
    }
    n = e->len + tail_len;
    if (e->len == 0 || tail_len > FV_FRAME_MAX || n > FV_FRAME_MAX) {
        fv_enc_dispose(e);
        return FV_ELIMIT;
    }
    if (out_reserve(o, 4 + n) != FV_OK) {
        fv_enc_dispose(e);
        return FV_ENOMEM;
    }
    *start = o->len;
    o->buf[o->len] = (unsigned char)(n >> 24);
    o->buf[o->len + 1] = (unsigned char)(n >> 16);
    o->buf[o->len + 2] = (unsigned char)(n >> 8);
    o->buf[o->len + 3] = (unsigned char)n;
    memcpy(o->buf + o->len + 4, e->buf, e->len);
    o->len += 4 + e->len;
    *tail = o->buf + o->len;
    fv_enc_dispose(e);
    return FV_OK;
}

int fv_out_frame_tail(fv_out *o, fv_enc *e, const void *tail, size_t tail_len)
{
    unsigned char *at;
    size_t start;
    int rc = frame_open(o, e, tail_len, &at, &start);
    if (rc == FV_OK && tail_len) {
        memcpy(at, tail, tail_len);
        o->len += tail_len;
    }
    return rc;
}

int fv_out_frame_fill(fv_out *o, fv_enc *e, size_t tail_len,
                      int (*fill)(void *arg, unsigned char *dst, size_t len),
                      void *arg)
{
    unsigned char *at;
    size_t start;
    int rc = frame_open(o, e, tail_len, &at, &start);
    if (rc != FV_OK)
        return rc;
    if ((rc = fill(arg, at, tail_len)) != FV_OK) {
        o->len = start; /* nothing of the frame stays queued */
        return rc;
    }
    o->len += tail_len;
    return FV_OK;
}

int fv_out_frame(fv_out *o, fv_enc *e)
{
    return fv_out_frame_tail(o, e, NULL, 0);
}

const unsigned char *fv_out_pending(const fv_out *o, size_t *len)
{
    *len = o->len - o->start;
    return o->buf ? o->buf + o->start : NULL;
}

void fv_out_ack(fv_out *o, size_t n)
{
    if (n > o->len - o->start)
        n = o->len - o->start;
    o->start += n;
    if (o->start >= o->len)
        o->start = o->len = 0;
}

size_t fv_out_size(const fv_out *o) { return o->len - o->start; }

/* ---- input frames ----------------------------------------------------- */

void fv_framer_init(fv_framer *f) { memset(f, 0, sizeof *f); }

void fv_framer_free(fv_framer *f)
{
    free(f->body);
    memset(f, 0, sizeof *f);
}

#define FRAMER_KEEP (64u * 1024) /* a body buffer above this is not kept */

size_t fv_framer_feed(fv_framer *f, const unsigned char *p, size_t n,
                      const unsigned char **frame, size_t *frame_len, int *err)
{
    size_t used = 0;
    *frame = NULL;
    *frame_len = 0;
    *err = f->err;
    if (f->err)
        return 0; /* sticky: a framer that failed never reads again */
    if (f->hdr_len == 0 && f->cap > FRAMER_KEEP) {
        /* The last frame was large: give the memory back. */
        free(f->body);
        f->body = NULL;
        f->cap = 0;
    }
    while (used < n && f->hdr_len < 4) {
        f->hdr[f->hdr_len++] = p[used++];
        if (f->hdr_len == 4) {
            uint32_t len = (uint32_t)f->hdr[0] << 24 | (uint32_t)f->hdr[1] << 16 |
                           (uint32_t)f->hdr[2] << 8 | f->hdr[3];
            if (len == 0 || len > FV_FRAME_MAX) {
                *err = f->err = FV_EPROTO;
                return used;
            }
            f->need = len;
            f->body_len = 0;
        }
    }
    if (f->hdr_len < 4)
        return used;
    {
        size_t take = f->need - f->body_len;
        if (take > n - used)
            take = n - used;
        /* The buffer grows with the bytes that actually arrived, not with
         * the length a peer declared. */
        if (f->body_len + take > f->cap) {
            size_t cap = f->cap ? f->cap : 4096;
            unsigned char *b;
            while (cap < f->body_len + take)
                cap *= 2;
            if (cap > f->need)
                cap = f->need;
            b = realloc(f->body, cap);
            if (!b) {
                *err = f->err = FV_ENOMEM;
                return used;
            }
            f->body = b;
            f->cap = cap;
        }
        if (take)
            memcpy(f->body + f->body_len, p + used, take);
        f->body_len += take;
        used += take;
    }
    if (f->body_len == f->need) {
        *frame = f->body;
        *frame_len = f->need;
        f->hdr_len = 0;
    }
    return used;
}

/* ---- decoding --------------------------------------------------------- */

static int key32(fv_dec *d, const unsigned char **out)
{
    size_t n;
    if (fv_dec_bytes(d, out, &n) || n != 32)
        return FV_EPROTO;
    return FV_OK;
}

static int fixed(fv_dec *d, const unsigned char **out, size_t want)
{
    size_t n;
    if (fv_dec_bytes(d, out, &n) || n != want)
        return FV_EPROTO;
    return FV_OK;
}

/* null, or a fixed-size byte string */
static int opt_fixed(fv_dec *d, const unsigned char **out, size_t want)
{
    *out = NULL;
    return fv_dec_null(d) ? FV_OK : fixed(d, out, want);
}

static int devinfo_read(fv_dec *d, fv_devinfo *di)
{
    size_t six;
    uint64_t role;
    di->revoked_at = 0;
    if (fv_dec_array(d, &six) || six != 6 || key32(d, &di->device) ||
        fv_dec_text(d, &di->name, &di->name_len) ||
        di->name_len > FV_MAX_DEVICE_NAME || fv_dec_uint(d, &role) ||
        fv_dec_bool(d, &di->revoked) || fv_dec_int(d, &di->enrolled) ||
        (!fv_dec_null(d) && (fv_dec_int(d, &di->revoked_at) ||
                             di->revoked_at <= 0 || !di->revoked)))
        return FV_EPROTO;
    di->role = role;
    return FV_OK;
}

static int dec_envelopes(fv_dec *d, const unsigned char **env, size_t *len,
                         size_t *count)
{
    size_t n;
    if (fv_dec_array(d, &n) || n == 0 || n > FV_PROTO_MAX_BATCH)
        return FV_EPROTO;
    for (size_t i = 0; i < n; i++)
        if (fv_dec_bytes(d, &env[i], &len[i]) || len[i] > FV_SYNC_MAX_ENVELOPE)
            return FV_EPROTO;
    *count = n;
    return FV_OK;
}

static int dec_body(fv_msg *m, fv_dec *d, size_t fields)
{
    size_t n, i;
    switch (m->type) {
    case FV_MSG_HELLO:
        if (fields != 5 || fv_dec_array(d, &n) || n == 0 || n > 8)
            return FV_EPROTO;
        for (i = 0; i < n; i++)
            if (fv_dec_uint(d, &m->u.hello.versions[i]))
                return FV_EPROTO;
        m->u.hello.nversions = n;
        if (key32(d, &m->u.hello.device) || fixed(d, &m->u.hello.sig, 64))
            return FV_EPROTO;
        if (fv_dec_null(d))
            return FV_OK;
        if (fv_dec_array(d, &n) || n != 2 ||
            fixed(d, &m->u.hello.token, FV_TOKEN_BYTES) ||
            key32(d, &m->u.hello.box))
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_PUSH:
        if (fields != 2)
            return FV_EPROTO;
        return dec_envelopes(d, m->u.push.env, m->u.push.len, &m->u.push.n);
    case FV_MSG_CERTS:
        if (fields != 2 || fv_dec_array(d, &n) || n == 0 ||
            n > FV_PROTO_MAX_BATCH)
            return FV_EPROTO;
        for (i = 0; i < n; i++)
            if (fv_dec_bytes(d, &m->u.push.env[i], &m->u.push.len[i]) ||
                m->u.push.len[i] > FV_MAX_CERT_BYTES)
                return FV_EPROTO;
        m->u.push.n = n;
        return FV_OK;
    case FV_MSG_PULL:
        m->u.pull.rseq = 0;
        m->u.pull.rid = NULL;
        if ((fields != 4 && fields != 5) ||
            opt_fixed(d, &m->u.pull.epoch, FV_EPOCH_BYTES) ||
            fv_dec_uint(d, &m->u.pull.cursor) || key32(d, &m->u.pull.chain))
            return FV_EPROTO;
        /* The receipt mark: [seq, id], seq at least 1. */
        if (fields == 5 &&
            (fv_dec_array(d, &n) || n != 2 ||
             fv_dec_uint(d, &m->u.pull.rseq) || m->u.pull.rseq == 0 ||
             key32(d, &m->u.pull.rid)))
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_INVITE:
        if (fields != 4 ||
            fv_dec_text(d, &m->u.invite.name, &m->u.invite.name_len) ||
            m->u.invite.name_len == 0 ||
            m->u.invite.name_len > FV_MAX_DEVICE_NAME ||
            fv_dec_uint(d, &m->u.invite.role) ||
            (m->u.invite.role != FV_ROLE_FIELD &&
             m->u.invite.role != FV_ROLE_COORDINATOR) ||
            fv_dec_uint(d, &m->u.invite.ttl) || m->u.invite.ttl == 0 ||
            m->u.invite.ttl > FV_MAX_INVITE_TTL)
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_REVOKE:
        return fields == 2 ? key32(d, &m->u.revoke.device) : FV_EPROTO;
    case FV_MSG_ORGKEY:
        return fields == 2 ? key32(d, &m->u.orgkey.org) : FV_EPROTO;
    case FV_MSG_DEVICES:
    case FV_MSG_BYE:
    case FV_MSG_OK:
        return fields == 1 ? FV_OK : FV_EPROTO;
    case FV_MSG_WELCOME:
        if (fields != 6 || fv_dec_uint(d, &m->u.welcome.version) ||
            fixed(d, &m->u.welcome.epoch, FV_EPOCH_BYTES) ||
            key32(d, &m->u.welcome.server) || fv_dec_uint(d, &m->u.welcome.role) ||
            (m->u.welcome.role != FV_ROLE_FIELD &&
             m->u.welcome.role != FV_ROLE_COORDINATOR) ||
            opt_fixed(d, &m->u.welcome.org, 32))
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_RECEIPT:
        if (fields != 3 ||
            fv_dec_bytes(d, &m->u.receipt.body, &m->u.receipt.body_len) ||
            fixed(d, &m->u.receipt.sig, 64))
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_ENTRIES:
        if (fields != 2 || fv_dec_array(d, &n) || n == 0 ||
            n > FV_PROTO_MAX_BATCH)
            return FV_EPROTO;
        for (i = 0; i < n; i++) {
            size_t three, one;
            m->u.entries.env[i] = m->u.entries.id[i] = NULL;
            m->u.entries.len[i] = 0;
            if (fv_dec_array(d, &three) || three != 3 ||
                fv_dec_uint(d, &m->u.entries.seq[i]))
                return FV_EPROTO;
            if (fv_dec_peek(d) == FV_CBOR_ARRAY) {
                /* erased: [id] */
                if (fv_dec_array(d, &one) || one != 1 ||
                    key32(d, &m->u.entries.id[i]))
                    return FV_EPROTO;
            } else if (fv_dec_bytes(d, &m->u.entries.env[i],
                                    &m->u.entries.len[i]) ||
                       m->u.entries.len[i] > FV_SYNC_MAX_ENVELOPE) {
                return FV_EPROTO;
            }
            if (key32(d, &m->u.entries.chain[i]))
                return FV_EPROTO;
        }
        m->u.entries.n = n;
        return FV_OK;
    case FV_MSG_PULLED:
        if (fields != 3 || fv_dec_uint(d, &m->u.pulled.head) ||
            key32(d, &m->u.pulled.chain))
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_INVITED:
        if (fields != 2 ||
            fv_dec_text(d, &m->u.invited.text, &m->u.invited.len) ||
            m->u.invited.len > 1024)
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_DEVLIST:
        if (fields != 2 || fv_dec_array(d, &n) || n > FV_PROTO_MAX_ITEMS)
            return FV_EPROTO;
        m->u.devlist.n = n;
        m->u.devlist.list = *d; /* a copy that fv_devlist_next walks */
        for (i = 0; i < n; i++) {
            fv_devinfo di; /* checked now, so fv_devlist_next cannot fail */
            if (devinfo_read(d, &di))
                return FV_EPROTO;
        }
        return FV_OK;
    case FV_MSG_CHUNK_QUERY:
    case FV_MSG_CHUNK_GET:
    case FV_MSG_CHUNK_ACK: {
        size_t max = m->type == FV_MSG_CHUNK_QUERY ? FV_PROTO_MAX_QUERY
                                                   : FV_PROTO_MAX_GET;
        if (fields != 2 || fv_dec_array(d, &n) || n == 0 || n > max)
            return FV_EPROTO;
        for (i = 0; i < n; i++)
            if (key32(d, &m->u.hashes.hash[i]))
                return FV_EPROTO;
        m->u.hashes.n = n;
        return FV_OK;
    }
    case FV_MSG_CHUNK_PUT:
    case FV_MSG_CHUNK:
        if (fields != 3 || key32(d, &m->u.chunk.hash))
            return FV_EPROTO;
        if (m->type == FV_MSG_CHUNK && fv_dec_null(d))
            return FV_OK; /* not held */
        if (fv_dec_bytes(d, &m->u.chunk.data, &m->u.chunk.len) ||
            m->u.chunk.len < 16 || m->u.chunk.len > FV_SYNC_MAX_CHUNK)
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_CHUNK_HAVE:
        if (fields != 2 || fv_dec_bytes(d, &m->u.have.bits, &m->u.have.len) ||
            m->u.have.len == 0 || m->u.have.len > (FV_PROTO_MAX_QUERY + 7) / 8)
            return FV_EPROTO;
        return FV_OK;
    case FV_MSG_ERROR:
        if (fields != 3 || fv_dec_uint(d, &m->u.error.code) ||
            fv_dec_text(d, &m->u.error.text, &m->u.error.len) ||
            m->u.error.len > 512)
            return FV_EPROTO;
        return FV_OK;
    default:
        return FV_EPROTO;
    }
}

int fv_msg_decode(fv_msg *m, const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t fields;
    uint64_t type;

    memset(m, 0, sizeof *m);
    fv_dec_init(&d, p, n);
    if (fv_dec_array(&d, &fields) || fields == 0 || fv_dec_uint(&d, &type) ||
        type > 255)
        return FV_EPROTO;
    m->type = (int)type;
    if (dec_body(m, &d, fields) || fv_dec_finish(&d))
        return FV_EPROTO;
    return FV_OK;
}

int fv_devlist_next(fv_msg *m, fv_devinfo *di)
{
    return devinfo_read(&m->u.devlist.list, di);
}

/* ---- encoding --------------------------------------------------------- */

static void enc_opt(fv_enc *e, const unsigned char *p, size_t n)
{
    if (p)
        fv_enc_bytes(e, p, n);
    else
        fv_enc_null(e);
}

static void enc_enroll(fv_enc *e, const unsigned char *token,
                       const unsigned char *box)
{
    if (!token) {
        fv_enc_null(e);
        return;
    }
    fv_enc_array(e, 2);
    fv_enc_bytes(e, token, FV_TOKEN_BYTES);
    fv_enc_bytes(e, box, 32);
}

int fv_send_hello(fv_out *o, const unsigned char device[32],
                  const unsigned char sig[64], const unsigned char *token,
                  const unsigned char *box)
{
    return fv_send_hello_upto(o, FV_PROTOCOL_VERSION, device, sig, token, box);
}

int fv_send_hello_upto(fv_out *o, unsigned max, const unsigned char device[32],
                       const unsigned char sig[64], const unsigned char *token,
                       const unsigned char *box)
{
    fv_enc e;
    if (max < FV_PROTO_MIN_VERSION || max > FV_PROTOCOL_VERSION)
        return FV_EINVAL;
    fv_enc_init(&e);
    fv_enc_array(&e, 5);
    fv_enc_uint(&e, FV_MSG_HELLO);
    fv_enc_array(&e, max - FV_PROTO_MIN_VERSION + 1);
    for (unsigned v = FV_PROTO_MIN_VERSION; v <= max; v++)
        fv_enc_uint(&e, v);
    fv_enc_bytes(&e, device, 32);
    fv_enc_bytes(&e, sig, 64);
    enc_enroll(&e, token, box);
    return fv_out_frame(o, &e);
}

int fv_hello_tbs(unsigned char **out, size_t *len, const unsigned char pin[32],
                 const unsigned char binding[32], const unsigned char device[32],
                 const unsigned char *token, const unsigned char *box)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 5);
    fv_enc_cstr(&e, "FieldVault hello v1");
    fv_enc_bytes(&e, pin, 32);
    fv_enc_bytes(&e, binding, 32);
    fv_enc_bytes(&e, device, 32);
    enc_enroll(&e, token, box);
    return fv_enc_finish(&e, out, len);
}

int fv_send_push(fv_out *o, const unsigned char *const *env, const size_t *len,
                 size_t n)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, FV_MSG_PUSH);
    fv_enc_array(&e, n);
    for (size_t i = 0; i < n; i++)
        fv_enc_bytes(&e, env[i], len[i]);
    return fv_out_frame(o, &e);
}

int fv_send_certs(fv_out *o, const unsigned char *const *cert,
                  const size_t *len, size_t n)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, FV_MSG_CERTS);
    fv_enc_array(&e, n);
    for (size_t i = 0; i < n; i++)
        fv_enc_bytes(&e, cert[i], len[i]);
    return fv_out_frame(o, &e);
}

int fv_send_pull(fv_out *o, const unsigned char *epoch, uint64_t cursor,
                 const unsigned char chain[32], uint64_t rseq,
                 const unsigned char *rid)
{
    fv_enc e;
    int mark = rid && rseq > 0;
    fv_enc_init(&e);
    fv_enc_array(&e, mark ? 5 : 4);
    fv_enc_uint(&e, FV_MSG_PULL);
    enc_opt(&e, epoch, FV_EPOCH_BYTES);
    fv_enc_uint(&e, cursor);
    fv_enc_bytes(&e, chain, 32);
    if (mark) {
        fv_enc_array(&e, 2);
        fv_enc_uint(&e, rseq);
        fv_enc_bytes(&e, rid, 32);
    }
    return fv_out_frame(o, &e);
}

int fv_send_invite(fv_out *o, const char *name, uint64_t role, uint64_t ttl)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 4);
    fv_enc_uint(&e, FV_MSG_INVITE);
    fv_enc_cstr(&e, name);
    fv_enc_uint(&e, role);
    fv_enc_uint(&e, ttl);
    return fv_out_frame(o, &e);
}

int fv_send_simple(fv_out *o, int type)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 1);
    fv_enc_uint(&e, (uint64_t)type);
    return fv_out_frame(o, &e);
}

int fv_send_key(fv_out *o, int type, const unsigned char key[32])
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, (uint64_t)type);
    fv_enc_bytes(&e, key, 32);
    return fv_out_frame(o, &e);
}

int fv_send_welcome(fv_out *o, uint64_t version, const unsigned char *epoch,
                    const unsigned char server[32], uint64_t role,
                    const unsigned char *org)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 6);
    fv_enc_uint(&e, FV_MSG_WELCOME);
    fv_enc_uint(&e, version);
    fv_enc_bytes(&e, epoch, FV_EPOCH_BYTES);
    fv_enc_bytes(&e, server, 32);
    fv_enc_uint(&e, role);
    enc_opt(&e, org, 32);
    return fv_out_frame(o, &e);
}

int fv_send_receipt(fv_out *o, const unsigned char *body, size_t body_len,
                    const unsigned char sig[64])
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 3);
    fv_enc_uint(&e, FV_MSG_RECEIPT);
    fv_enc_bytes(&e, body, body_len);
    fv_enc_bytes(&e, sig, 64);
    return fv_out_frame(o, &e);
}

int fv_send_entries(fv_out *o, const uint64_t *seq,
                    const unsigned char *const *env, const size_t *len,
                    const unsigned char *const *id,
                    const unsigned char *const *chain, size_t n)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, FV_MSG_ENTRIES);
    fv_enc_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        fv_enc_array(&e, 3);
        fv_enc_uint(&e, seq[i]);
        if (env[i]) {
            fv_enc_bytes(&e, env[i], len[i]);
        } else {
            fv_enc_array(&e, 1);
            fv_enc_bytes(&e, id[i], 32);
        }
        fv_enc_bytes(&e, chain[i], 32);
    }
    return fv_out_frame(o, &e);
}

int fv_send_pulled(fv_out *o, uint64_t head, const unsigned char chain[32])
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 3);
    fv_enc_uint(&e, FV_MSG_PULLED);
    fv_enc_uint(&e, head);
    fv_enc_bytes(&e, chain, 32);
    return fv_out_frame(o, &e);
}

int fv_send_invited(fv_out *o, const char *invite)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, FV_MSG_INVITED);
    fv_enc_cstr(&e, invite);
    return fv_out_frame(o, &e);
}

int fv_send_devlist(fv_out *o, const fv_devinfo *d, size_t n)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, FV_MSG_DEVLIST);
    fv_enc_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        fv_enc_array(&e, 6);
        fv_enc_bytes(&e, d[i].device, 32);
        fv_enc_text(&e, d[i].name, d[i].name_len);
        fv_enc_uint(&e, d[i].role);
        fv_enc_bool(&e, d[i].revoked);
        fv_enc_int(&e, d[i].enrolled);
        if (d[i].revoked && d[i].revoked_at > 0)
            fv_enc_int(&e, d[i].revoked_at);
        else
            fv_enc_null(&e);
    }
    return fv_out_frame(o, &e);
}

int fv_send_error(fv_out *o, uint64_t code, const char *text)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 3);
    fv_enc_uint(&e, FV_MSG_ERROR);
    fv_enc_uint(&e, code);
    fv_enc_cstr(&e, text);
    return fv_out_frame(o, &e);
}

int fv_send_hashes(fv_out *o, int type, const unsigned char *const *hash,
                   size_t n)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, (uint64_t)type);
    fv_enc_array(&e, n);
    for (size_t i = 0; i < n; i++)
        fv_enc_bytes(&e, hash[i], 32);
    return fv_out_frame(o, &e);
}

int fv_send_chunk(fv_out *o, int type, const unsigned char hash[32],
                  const unsigned char *data, size_t len)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 3);
    fv_enc_uint(&e, (uint64_t)type);
    fv_enc_bytes(&e, hash, 32);
    if (!data) {
        fv_enc_null(&e);
        return fv_out_frame(o, &e);
    }
    /* The chunk (ciphertext) goes into the queue once, not via the writer. */
    fv_enc_bytes_head(&e, len);
    return fv_out_frame_tail(o, &e, data, len);
}

int fv_send_chunk_fill(fv_out *o, int type, const unsigned char hash[32],
                       size_t len,
                       int (*fill)(void *arg, unsigned char *dst, size_t len),
                       void *arg)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 3);
    fv_enc_uint(&e, (uint64_t)type);
    fv_enc_bytes(&e, hash, 32);
    fv_enc_bytes_head(&e, len);
    return fv_out_frame_fill(o, &e, len, fill, arg);
}

int fv_send_have(fv_out *o, const unsigned char *bits, size_t nbits)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 2);
    fv_enc_uint(&e, FV_MSG_CHUNK_HAVE);
    fv_enc_bytes(&e, bits, (nbits + 7) / 8);
    return fv_out_frame(o, &e);
}

/* ---- receipts and chains ---------------------------------------------- */

#define RECEIPT_CONTEXT "FieldVault receipt v1"

int fv_receipt_body(unsigned char **out, size_t *len,
                    const unsigned char epoch[FV_EPOCH_BYTES],
                    const unsigned char device[32], int64_t time,
                    const unsigned char (*ids)[32], const uint64_t *seqs,
                    const unsigned char *refused, size_t n)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_array(&e, 5);
    fv_enc_cstr(&e, RECEIPT_CONTEXT);
    fv_enc_bytes(&e, epoch, FV_EPOCH_BYTES);
    fv_enc_bytes(&e, device, 32);
    fv_enc_int(&e, time);
    fv_enc_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        int r = refused && refused[i];
        fv_enc_array(&e, r ? 3 : 2);
        fv_enc_bytes(&e, ids[i], 32);
        fv_enc_uint(&e, r ? 0 : seqs[i]);
        if (r)
            fv_enc_uint(&e, refused[i]);
    }
    return fv_enc_finish(&e, out, len);
}

int fv_receipt_decode(fv_receipt *r, const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t five, count, two;
    memset(r, 0, sizeof *r);
    fv_dec_init(&d, p, n);
    if (fv_dec_array(&d, &five) || five != 5 ||
        fv_dec_key_text(&d, RECEIPT_CONTEXT) ||
        fixed(&d, &r->epoch, FV_EPOCH_BYTES) || key32(&d, &r->device) ||
        fv_dec_int(&d, &r->time) || fv_dec_array(&d, &count) || count == 0 ||
        count > FV_PROTO_MAX_BATCH)
        return FV_EPROTO;
    for (size_t i = 0; i < count; i++) {
        uint64_t why = 0;
        if (fv_dec_array(&d, &two) || (two != 2 && two != 3) ||
            key32(&d, &r->id[i]) || fv_dec_uint(&d, &r->seq[i]) ||
            (two == 3 && (fv_dec_uint(&d, &why) || why == 0 || why > 255 ||
                          r->seq[i] != 0)))
            return FV_EPROTO;
        r->refused[i] = (unsigned char)why;
        r->nrefused += why != 0;
    }
    r->n = count;
    return fv_dec_finish(&d) ? FV_EPROTO : FV_OK;
}

void fv_chain_next(unsigned char out[32], const unsigned char prev[32],
                   uint64_t seq, const unsigned char id[32])
{
    unsigned char buf[32 + 8 + 32];
    memcpy(buf, prev, 32);
    for (int i = 0; i < 8; i++)
        buf[32 + i] = (unsigned char)(seq >> (56 - 8 * i));
    memcpy(buf + 40, id, 32);
    fv_hash(out, buf, sizeof buf);
}

/* ---- invites ---------------------------------------------------------- */

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
#define INVITE_PREFIX "fv1-"

int fv_invite_encode(char **out, const fv_invite *inv)
{
    unsigned char *raw = NULL, hash[32];
    size_t len = 0, o = 0, bits = 0;
    uint32_t acc = 0;
    fv_enc e;
    char *s;
    int rc;

    *out = NULL;
    fv_enc_init(&e);
    fv_enc_array(&e, 4);
    fv_enc_cstr(&e, inv->address);
    fv_enc_bytes(&e, inv->pin, 32);
    fv_enc_bytes(&e, inv->token, FV_TOKEN_BYTES);
    enc_opt(&e, inv->has_org ? inv->org : NULL, 32);
    fv_hash(hash, e.buf ? e.buf : (const unsigned char *)"", e.len);
    fv_enc_raw(&e, hash, 4);
    if ((rc = fv_enc_finish(&e, &raw, &len)))
        return rc;
    s = malloc(sizeof INVITE_PREFIX + len * 8 / 5 + 2);
    if (!s) {
        fv_enc_free_buf(raw, len);
        return FV_ENOMEM;
    }
    memcpy(s, INVITE_PREFIX, sizeof INVITE_PREFIX - 1);
    o = sizeof INVITE_PREFIX - 1;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 5) {
            s[o++] = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        s[o++] = b32[(acc << (5 - bits)) & 31];
    s[o] = '\0';
    fv_enc_free_buf(raw, len);
    *out = s;
    return FV_OK;
}

int fv_invite_decode(fv_invite *inv, const char *text)
{
    unsigned char raw[512], hash[32];
    size_t n = 0, bits = 0, m;
    uint32_t acc = 0;
    const char *p;
    const unsigned char *pin, *token, *org;
    const char *addr;
    size_t addr_len;
    fv_dec d;

    memset(inv, 0, sizeof *inv);
    if (!text)
        return FV_EINVITE;
    while (*text == ' ')
        text++;
    if (strncasecmp(text, INVITE_PREFIX, sizeof INVITE_PREFIX - 1) != 0)
        return FV_EINVITE;
    for (p = text + sizeof INVITE_PREFIX - 1; *p; p++) {
        int c = *p, v;
        if (c == '-' || c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c >= 'a' && c <= 'z')
            v = c - 'a';
        else if (c >= '2' && c <= '7')
            v = c - '2' + 26;
        else
            return FV_EINVITE;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            if (n == sizeof raw)
                return FV_EINVITE;
            raw[n++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    /* Strict base32: the leftover bits must be fewer than a character's
     * and zero, so one invite has exactly one spelling (up to case and
     * dashes). */
    if (n < 5 || bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
        return FV_EINVITE;
    fv_hash(hash, raw, n - 4);
    if (!fv_ct_equal(hash, raw + n - 4, 4))
        return FV_EINVITE;
    fv_dec_init(&d, raw, n - 4);
    if (fv_dec_array(&d, &m) || m != 4 || fv_dec_text(&d, &addr, &addr_len) ||
        addr_len == 0 || addr_len >= sizeof inv->address ||
        memchr(addr, 0, addr_len) || key32(&d, &pin) ||
        fixed(&d, &token, FV_TOKEN_BYTES) || opt_fixed(&d, &org, 32) ||
        fv_dec_finish(&d))
        return FV_EINVITE;
    memcpy(inv->address, addr, addr_len);
    inv->address[addr_len] = '\0';
    memcpy(inv->pin, pin, 32);
    memcpy(inv->token, token, FV_TOKEN_BYTES);
    if (org) {
        inv->has_org = 1;
        memcpy(inv->org, org, 32);
    }
    return FV_OK;
}
