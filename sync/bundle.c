/* bundle.c - courier bundles: the outbox written to a file for a USB stick
 * or SD card, and read back elsewhere with the same verification as a sync
 * (docs/PROTOCOL.md, "Courier bundles"). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fieldvault_sync.h"
#include "proto.h"
#include "vault_sync.h"

#define BUNDLE_MAGIC "FVBUNDL1"
#define BUNDLE_BATCH_BYTES (512u * 1024)

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno == ENOSPC ? FV_ENOSPC : FV_EIO;
        p += w;
        n -= (size_t)w;
    }
    return FV_OK;
}

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
    rc = write_all(fd, (const unsigned char *)BUNDLE_MAGIC, 8);
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
            rc = write_all(fd, p, pending);
        fv_out_ack(&x.out, pending);
        if (x.last == before)
            break;
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

int fv_bundle_import(fv_vault *v, const char *path, uint64_t *count,
                     uint64_t *added)
{
    unsigned char *buf = NULL, magic[8];
    fv_framer fr;
    fv_msg *m = NULL;
    int fd, rc = FV_OK;
    uint64_t total = 0, new_total = 0;

    if (!v || !path)
        return FV_EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fv_vs_fail(v, errno == ENOENT ? FV_ENOTFOUND : FV_EIO,
                          "cannot open the bundle file");
    fv_framer_init(&fr);
    buf = malloc(64 * 1024);
    m = malloc(sizeof *m);
    if (!buf || !m)
        rc = FV_ENOMEM;
    else if (read(fd, magic, 8) != 8 || memcmp(magic, BUNDLE_MAGIC, 8) != 0)
        rc = fv_vs_fail(v, FV_ECORRUPT, "not a FieldVault bundle");
    while (rc == FV_OK) {
        ssize_t n = read(fd, buf, 64 * 1024);
        size_t off = 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fv_vs_fail(v, FV_EIO, "cannot read the bundle file");
            break;
        }
        if (n == 0) {
            if (fr.hdr_len || fr.body_len)
                rc = fv_vs_fail(v, FV_ECORRUPT, "the bundle is truncated");
            break;
        }
        while (rc == FV_OK && off < (size_t)n) {
            const unsigned char *frame;
            size_t flen, nadded = 0;
            int err;
            off += fv_framer_feed(&fr, buf + off, (size_t)n - off, &frame, &flen, &err);
            if (err) {
                rc = fv_vs_fail(v, FV_ECORRUPT, "the bundle is damaged");
                break;
            }
            if (!frame)
                continue;
            if (fv_msg_decode(m, frame, flen) || m->type != FV_MSG_PUSH) {
                rc = fv_vs_fail(v, FV_ECORRUPT, "the bundle is damaged");
                break;
            }
            /* Verified and stored exactly as pulled envelopes are. */
            rc = fv_vs_import(v, NULL, m->u.push.env, m->u.push.len,
                              m->u.push.n, &nadded);
            if (rc == FV_EPROTO)
                rc = fv_vs_fail(v, FV_ECORRUPT,
                                "an envelope in the bundle fails verification");
            total += m->u.push.n;
            new_total += nadded;
        }
    }
    close(fd);
    fv_framer_free(&fr);
    free(buf);
    free(m);
    if (count)
        *count = total;
    if (added)
        *added = new_total;
    return rc;
}
