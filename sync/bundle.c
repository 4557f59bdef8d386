/* bundle.c - courier bundles: the outbox written to a file for a USB stick
 * or SD card, and read back elsewhere with the same verification as a sync
 * (docs/PROTOCOL.md, "Courier bundles"; the file's layout is in bundle.h).
 * The reader (fv_bundle_read) serves the vault's importer here and the
 * server's (fv_server_import). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "fieldvault_sync.h"
#include "fileio.h"
#include "proto.h"
#include "vault_sync.h"

#define BUNDLE_MAGIC "FVBUNDL1"
#define BUNDLE_BATCH_BYTES (512u * 1024)
#define READ_BYTES (64u * 1024)

struct exporter {
    fv_out out;
    const unsigned char *env[FV_PROTO_MAX_BATCH];
    size_t len[FV_PROTO_MAX_BATCH];
    unsigned char *copy[FV_PROTO_MAX_BATCH];
    size_t n, bytes, total;
    int64_t last;
    int rc;
};

static int flush_batch(struct exporter *x)
{
    int rc = FV_OK;
    if (x->n)
        rc = fv_send_push(&x->out, x->env, x->len, x->n);
    for (size_t i = 0; i < x->n; i++)
        free(x->copy[i]);
    x->total += x->n;
    x->n = x->bytes = 0;
    return rc;
}

static int export_cb(int64_t seq, const unsigned char *id,
                     const unsigned char *bytes, size_t len, void *payload)
{
    struct exporter *x = payload;
    (void)id;
    if (x->n == FV_PROTO_MAX_BATCH ||
        (x->n > 0 && x->bytes + len > BUNDLE_BATCH_BYTES))
        if ((x->rc = flush_batch(x)))
            return 1;
    if (!(x->copy[x->n] = malloc(len ? len : 1)))
        return x->rc = FV_ENOMEM;
    memcpy(x->copy[x->n], bytes, len);
    x->env[x->n] = x->copy[x->n];
    x->len[x->n++] = len;
    x->bytes += len;
    x->last = seq;
    return 0;
}

/* The device certificates this vault holds go first, in CERTS frames:
 * the reader learns who may speak before it meets what they wrote. */
static int cert_cb(const unsigned char *bytes, size_t len, void *payload)
{
    struct exporter *x = payload;
    if (len > FV_MAX_CERT_BYTES)
        return 0; /* cannot be one this vault verified: not passed on */
    if (x->n == FV_PROTO_MAX_BATCH) {
        x->rc = fv_send_certs(&x->out, x->env, x->len, x->n);
        for (size_t i = 0; i < x->n; i++)
            free(x->copy[i]);
        x->n = 0;
        if (x->rc)
            return 1;
    }
    if (!(x->copy[x->n] = malloc(len ? len : 1)))
        return x->rc = FV_ENOMEM;
    memcpy(x->copy[x->n], bytes, len);
    x->env[x->n] = x->copy[x->n];
    x->len[x->n++] = len;
    return 0;
}

static int export_certs(fv_vault *v, int fd, struct exporter *x)
{
    const unsigned char *p;
    size_t pending;
    int rc = fv_vs_certs_each(v, cert_cb, x);
    if (rc >= 0 && x->rc)
        rc = x->rc;
    if (rc == FV_OK && x->n)
        rc = fv_send_certs(&x->out, x->env, x->len, x->n);
    for (size_t i = 0; i < x->n; i++)
        free(x->copy[i]);
    x->n = 0;
    x->rc = FV_OK;
    p = fv_out_pending(&x->out, &pending);
    if (rc == FV_OK && pending)
        rc = fv_write_all(fd, p, pending);
    fv_out_ack(&x->out, pending);
    return rc;
}

int fv_bundle_export(fv_vault *v, const char *path, uint64_t *count)
{
    struct exporter x;
    int fd, rc = FV_OK;

    if (!v || !path)
        return FV_EINVAL;
    memset(&x, 0, sizeof x);
    fv_out_init(&x.out);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fv_vs_fail(v, errno == EEXIST ? FV_EEXIST : FV_EIO,
                          "cannot create the bundle file");
    rc = fv_write_all(fd, (const unsigned char *)BUNDLE_MAGIC, 8);
    if (rc == FV_OK)
        rc = export_certs(v, fd, &x);
    /* The outbox in pages, each page written out before the next is read. */
    while (rc == FV_OK) {
        int64_t before = x.last;
        size_t pending;
        const unsigned char *p;
        rc = fv_vs_outbox(v, x.last, FV_PROTO_MAX_BATCH, export_cb, &x);
        if (rc >= 0 && x.rc)
            rc = x.rc;
        if (rc == FV_OK)
            rc = flush_batch(&x);
        p = fv_out_pending(&x.out, &pending);
        if (rc == FV_OK && pending)
            rc = fv_write_all(fd, p, pending);
        fv_out_ack(&x.out, pending);
        if (x.last == before)
            break;
    }
    /* The end mark: without it, a bundle cut between two frames would read
     * as whole. */
    if (rc == FV_OK && (rc = fv_send_simple(&x.out, FV_MSG_BYE)) == FV_OK) {
        size_t pending;
        const unsigned char *p = fv_out_pending(&x.out, &pending);
        rc = fv_write_all(fd, p, pending);
        fv_out_ack(&x.out, pending);
    }
    if (rc == FV_OK && fsync(fd) != 0)
        rc = FV_EIO;
    close(fd);
    flush_batch(&x);
    fv_out_free(&x.out);
    if (rc) {
        unlink(path);
        return fv_vs_fail(v, rc, rc == FV_ENOSPC ? "disk full"
                                                 : "cannot write the bundle file");
    }
    if (count)
        *count = x.total;
    return FV_OK;
}

/* Reads exactly n bytes unless the file ends first: the count read, or -1. */
static ssize_t read_full(int fd, unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* One pass over the open bundle from its start: checks the magic, every
 * frame, and the end mark; with fn set, hands it each batch. */
static int read_pass(int fd, unsigned char *buf, fv_msg *m,
                     fv_bundle_batch_fn fn, fv_bundle_batch_fn cert_fn,
                     void *payload, const char **msg)
{
    unsigned char magic[8];
    fv_framer fr;
    int rc = FV_OK, ended = 0;
    ssize_t got;

    if (lseek(fd, 0, SEEK_SET) != 0) {
        *msg = "cannot read the bundle file";
        return FV_EIO;
    }
    got = read_full(fd, magic, sizeof magic);
    if (got < 0) {
        *msg = "cannot read the bundle file";
        return FV_EIO;
    }
    if (got != (ssize_t)sizeof magic || memcmp(magic, BUNDLE_MAGIC, 8) != 0) {
        *msg = "not a FieldVault bundle";
        return FV_ECORRUPT;
    }
    fv_framer_init(&fr);
    while (rc == FV_OK) {
        ssize_t n = read(fd, buf, READ_BYTES);
        size_t off = 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = FV_EIO;
            *msg = "cannot read the bundle file";
            break;
        }
        if (n == 0) {
            /* A frame begun and not finished, or no end mark: cut short. */
            if (!ended || fr.hdr_len) {
                rc = FV_ECORRUPT;
                *msg = "the bundle is truncated";
            }
            break;
        }
        while (rc == FV_OK && off < (size_t)n) {
            const unsigned char *frame;
            size_t flen;
            int err;
            if (ended) {
                rc = FV_ECORRUPT; /* bytes after the end mark */
                *msg = "the bundle is damaged";
                break;
            }
            off += fv_framer_feed(&fr, buf + off, (size_t)n - off, &frame,
                                  &flen, &err);
            if (err) {
                rc = err == FV_ENOMEM ? FV_ENOMEM : FV_ECORRUPT;
                *msg = rc == FV_ECORRUPT ? "the bundle is damaged"
                                         : "out of memory";
                break;
            }
            if (!frame)
                continue;
            if (fv_msg_decode(m, frame, flen) != FV_OK ||
                (m->type != FV_MSG_PUSH && m->type != FV_MSG_BYE &&
                 m->type != FV_MSG_CERTS)) {
                rc = FV_ECORRUPT;
                *msg = "the bundle is damaged";
                break;
            }
            if (m->type == FV_MSG_BYE)
                ended = 1;
            else if (m->type == FV_MSG_CERTS) {
                if (fn && cert_fn)
                    rc = cert_fn(m->u.push.env, m->u.push.len, m->u.push.n,
                                 payload);
            } else if (fn)
                rc = fn(m->u.push.env, m->u.push.len, m->u.push.n, payload);
        }
    }
    fv_framer_free(&fr);
    return rc;
}

int fv_bundle_read(const char *path, fv_bundle_batch_fn fn, void *payload,
                   const char **why)
{
    return fv_bundle_read_ex(path, fn, NULL, payload, why);
}

int fv_bundle_read_ex(const char *path, fv_bundle_batch_fn fn,
                      fv_bundle_batch_fn cert_fn, void *payload,
                      const char **why)
{
    unsigned char *buf = NULL;
    const char *msg = NULL;
    fv_msg *m = NULL;
    int fd, rc;

    if (why)
        *why = NULL;
    if (!path || !fn)
        return FV_EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (why)
            *why = "cannot open the bundle file";
        return errno == ENOENT ? FV_ENOTFOUND : FV_EIO;
    }
    buf = malloc(READ_BYTES);
    m = malloc(sizeof *m);
    if (!buf || !m) {
        rc = FV_ENOMEM;
        msg = "out of memory";
    } else {
        /* The whole file is checked first, so that a bundle cut short or
         * damaged in its framing stores nothing; then its batches are
         * handed over. (The second pass checks again: the file may have
         * changed in between.) */
        rc = read_pass(fd, buf, m, NULL, NULL, NULL, &msg);
        if (rc == FV_OK)
            rc = read_pass(fd, buf, m, fn, cert_fn, payload, &msg);
    }
    close(fd);
    free(buf);
    free(m);
    if (why)
        *why = msg;
    return rc;
}

struct vault_import {
    fv_vault *v;
    uint64_t total, added, skipped, refused;
};

static int vault_batch(const unsigned char *const *env, const size_t *len,
                       size_t n, void *payload)
{
    struct vault_import *x = payload;
    size_t nadded = 0, nskipped = 0, nrefused = 0;
    /* Verified and stored as pulled envelopes are, but with no server
     * behind them (review states are left out). */
    int rc = fv_vs_import_bundle(x->v, env, len, n, &nadded, &nskipped,
                                 &nrefused);
    if (rc == FV_EPROTO)
        rc = fv_vs_fail(x->v, FV_ECORRUPT,
                        "an envelope in the bundle fails verification");
    if (rc == FV_OK) {
        x->total += n;
        x->added += nadded;
        x->skipped += nskipped;
        x->refused += nrefused;
    }
    return rc;
}

static int vault_certs(const unsigned char *const *cert, const size_t *len,
                       size_t n, void *payload)
{
    struct vault_import *x = payload;
    size_t added = 0, rejected = 0;
    /* Each is checked against the organisation key; the bad ones are
     * passed over and the bundle goes on. */
    return fv_vs_certs_import(x->v, cert, len, n, &added, &rejected);
}

int fv_bundle_import(fv_vault *v, const char *path, uint64_t *count,
                     uint64_t *added, uint64_t *skipped)
{
    struct vault_import x = {v, 0, 0, 0, 0};
    const char *why = NULL;
    int rc;

    if (!v || !path)
        return FV_EINVAL;
    rc = fv_bundle_read_ex(path, vault_batch, vault_certs, &x, &why);
    if (rc && why)
        rc = fv_vs_fail(v, rc, why); /* the file's failure, not a batch's */
    if (count)
        *count = x.total;
    if (added)
        *added = x.added;
    if (skipped)
        *skipped = x.skipped;
    /* Everything else of the bundle is imported and committed; the refused
     * envelopes make the import fail as damaged data, said once. */
    if (rc == FV_OK && x.refused > 0) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "%llu envelope%s in the bundle %s refused: %s content breaks "
                 "the format (the other %llu imported)",
                 (unsigned long long)x.refused, x.refused == 1 ? "" : "s",
                 x.refused == 1 ? "was" : "were",
                 x.refused == 1 ? "its" : "their",
                 (unsigned long long)(x.total - x.refused - x.skipped));
        rc = fv_vs_fail(v, FV_ECORRUPT, msg);
    }
    return rc;
}
