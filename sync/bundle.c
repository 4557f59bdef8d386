/* bundle.c - courier bundles: the device certificates, the outbox and its
 * attachment chunks, written to a file for a USB stick or SD card, and
 * read back elsewhere with the same verification as a sync
 * (docs/PROTOCOL.md, "Courier bundles"; the file's layout is in bundle.h).
 * The reader (fv_bundle_read) serves the vault's importer here and the
 * server's (fv_server_import). Both sides stream: one frame, at most one
 * chunk, in memory at a time. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "call.h"
#include "fieldvault_sync.h"
#include "fileio.h"
#include "proto.h"
#include "result.h"
#include "vault_sync.h"

#define BUNDLE_MAGIC "FVBUNDL1"
#define BUNDLE_BATCH_BYTES (512u * 1024)
#define READ_BYTES (64u * 1024)
#define CHUNK_PAGE 256
/* FAT32's largest file: no part is larger once splitting is asked. */
#define PART_CAP 0xFFFFFFFFull

struct exporter {
    fv_vault *v;
    fv_out out;
    const unsigned char *env[FV_PROTO_MAX_BATCH];
    size_t len[FV_PROTO_MAX_BATCH];
    unsigned char *copy[FV_PROTO_MAX_BATCH];
    size_t n, bytes, total;
    int64_t last;
    int rc;
    /* the part being written */
    const char *base;
    char *path;
    size_t path_cap;
    int fd, split;
    uint64_t max, written, part_chunks, bye_len;
    uint64_t parts;
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

const char fv_bundle_cut_short[] = "the bundle is cut short";

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

/* Writes out what the frames queued so far hold. */
static int drain(struct exporter *x)
{
    size_t pending;
    const unsigned char *p = fv_out_pending(&x->out, &pending);
    int rc = pending ? fv_write_all(x->fd, p, pending) : FV_OK;
    fv_out_ack(&x->out, pending);
    x->written += pending;
    return rc;
}

/* Every certificate this vault holds, in CERTS frames, written out. */
static int export_certs(struct exporter *x)
{
    int rc = fv_vs_certs_each(x->v, cert_cb, x);
    if (rc >= 0 && x->rc)
        rc = x->rc;
    if (rc == FV_OK && x->n)
        rc = fv_send_certs(&x->out, x->env, x->len, x->n);
    for (size_t i = 0; i < x->n; i++)
        free(x->copy[i]);
    x->n = 0;
    x->rc = FV_OK;
    if (rc == FV_OK)
        rc = drain(x);
    return rc;
}

/* The part's name: the path itself, or path.001, path.002 ... */
static int part_path(struct exporter *x, uint64_t k)
{
    size_t need = strlen(x->base) + 24;
    if (need > x->path_cap) {
        char *p = realloc(x->path, need);
        if (!p)
            return FV_ENOMEM;
        x->path = p;
        x->path_cap = need;
    }
    if (x->split)
        snprintf(x->path, x->path_cap, "%s.%03llu", x->base,
                 (unsigned long long)k);
    else
        snprintf(x->path, x->path_cap, "%s", x->base);
    return FV_OK;
}

/* Starts the next part: the magic, the device certificates, then every
 * envelope of the outbox, so that each part is a whole bundle: its
 * envelopes' authors are known before them and its chunks find their
 * manifests in it, whatever order the parts arrive in. */
static int part_open(struct exporter *x)
{
    int rc;

    if ((rc = part_path(x, x->parts + 1)))
        return rc;
    x->fd = open(x->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (x->fd < 0)
        return errno == EEXIST ? FV_EEXIST : FV_EIO;
    x->parts++;
    x->written = x->part_chunks = 0;
    x->last = 0;
    x->total = 0;
    rc = fv_write_all(x->fd, (const unsigned char *)BUNDLE_MAGIC, 8);
    x->written = 8;
    if (rc == FV_OK)
        rc = export_certs(x);
    /* The outbox in pages, each page written out before the next is read. */
    while (rc == FV_OK) {
        int64_t before = x->last;
        rc = fv_vs_outbox(x->v, x->last, FV_PROTO_MAX_BATCH, export_cb, x);
        if (rc >= 0 && x->rc)
            rc = x->rc;
        if (rc == FV_OK)
            rc = flush_batch(x);
        if (rc == FV_OK)
            rc = drain(x);
        if (x->last == before)
            break;
    }
    if (rc == FV_OK && x->split && x->written + x->bye_len > x->max)
        rc = FV_ELIMIT;
    return rc;
}

/* Ends the part: the end mark (without it, a bundle cut between two
 * frames would read as whole), then fsync. */
static int part_close(struct exporter *x)
{
    int rc = fv_send_simple(&x->out, FV_MSG_BYE);
    if (rc == FV_OK)
        rc = drain(x);
    if (rc == FV_OK && fsync(x->fd) != 0)
        rc = FV_EIO;
    if (close(x->fd) != 0 && rc == FV_OK)
        rc = FV_EIO;
    x->fd = -1;
    /* The part's new name must survive a crash too, or the export is not
     * reported done (the caller then removes every part). */
    if (rc == FV_OK) {
        char *dir = fv_path_dir(x->path);
        rc = dir ? fv_fsync_dir(dir) : FV_ENOMEM;
        free(dir);
    }
    return rc;
}

struct chunk_page {
    unsigned char hash[CHUNK_PAGE][32];
    size_t n;
};

static int chunk_page_cb(const unsigned char *hash, uint64_t len, void *payload)
{
    struct chunk_page *pg = payload;
    (void)len;
    memcpy(pg->hash[pg->n++], hash, 32);
    return 0;
}

/* Appends the chunks the server has not acknowledged, one at a time,
 * starting a new part whenever the next one would not fit. */
static int export_chunks(struct exporter *x, fv_bundle_stats *st)
{
    struct chunk_page *pg = malloc(sizeof *pg);
    unsigned char *buf = malloc(FV_SYNC_MAX_CHUNK), after[32];
    int rc = pg && buf ? FV_OK : FV_ENOMEM;

    memset(after, 0, sizeof after);
    while (rc == FV_OK) {
        pg->n = 0;
        if ((rc = fv_vs_chunk_unsent(x->v, after, CHUNK_PAGE, chunk_page_cb,
                                     pg)) || pg->n == 0)
            break;
        memcpy(after, pg->hash[pg->n - 1], 32);
        for (size_t i = 0; i < pg->n && rc == FV_OK; i++) {
            size_t len = 0, pending;
            rc = fv_vs_chunk_get(x->v, pg->hash[i], buf, FV_SYNC_MAX_CHUNK,
                                 &len);
            if (rc == FV_ENOTFOUND) { /* gone since the page was read */
                rc = FV_OK;
                continue;
            }
            if (rc == FV_OK)
                rc = fv_send_chunk(&x->out, FV_MSG_CHUNK_PUT, pg->hash[i], buf,
                                   len);
            fv_out_pending(&x->out, &pending);
            if (rc == FV_OK && x->split &&
                x->written + pending + x->bye_len > x->max) {
                if (x->part_chunks == 0)
                    rc = FV_ELIMIT; /* not even alone with the envelopes */
                else {
                    /* The encoded frame waits aside while the part ends
                     * and the next one begins. */
                    fv_out held = x->out;
                    fv_out_init(&x->out);
                    rc = part_close(x);
                    if (rc == FV_OK)
                        rc = part_open(x);
                    if (rc == FV_OK &&
                        x->written + pending + x->bye_len > x->max)
                        rc = FV_ELIMIT;
                    flush_batch(x);
                    fv_out_free(&x->out);
                    x->out = held;
                }
            }
            if (rc == FV_OK)
                rc = drain(x);
            if (rc == FV_OK) {
                x->part_chunks++;
                st->chunks++;
                st->chunk_bytes += len;
            }
        }
    }
    free(pg);
    free(buf);
    return rc;
}

/* A caller's fv_bundle_stats not set up with FV_BUNDLE_STATS_INIT. */
static int stats_ok(const fv_bundle_stats *stats)
{
    return fv_result_ok(stats, FV_RESULT_MIN(fv_bundle_stats, truncated));
}

static int stats_fail(fv_vault *v)
{
    return fv_vs_fail(v, FV_EINVAL, "the fv_bundle_stats' size is not set: "
                                    "start from FV_BUNDLE_STATS_INIT");
}

static int bundle_export(fv_vault *v, fv_bundle_stats *stats, const char *path,
                         const fv_bundle_options *opt)
{
    struct exporter x;
    fv_bundle_stats st;
    int rc;

    memset(&st, 0, sizeof st);
    if (!v || !path || (opt && opt->version != FV_BUNDLE_OPTIONS_VERSION))
        return FV_EINVAL;
    if (stats && !stats_ok(stats))
        return stats_fail(v);
    if (stats)
        fv_result_put(stats, &st, sizeof st);
    memset(&x, 0, sizeof x);
    x.v = v;
    x.base = path;
    x.fd = -1;
    x.split = opt && opt->max_size > 0;
    x.max = x.split ? (opt->max_size < PART_CAP ? opt->max_size : PART_CAP) : 0;
    fv_out_init(&x.out);
    /* The end mark's size, for the room each part keeps for it. */
    if ((rc = fv_send_simple(&x.out, FV_MSG_BYE)) == FV_OK) {
        size_t pending;
        fv_out_pending(&x.out, &pending);
        x.bye_len = pending;
        fv_out_ack(&x.out, pending);
    }
    if (rc == FV_OK)
        rc = part_open(&x);
    st.envelopes = x.total;
    if (rc == FV_OK && !(opt && opt->no_attachments))
        rc = export_chunks(&x, &st);
    if (rc == FV_OK)
        rc = part_close(&x);
    if (x.fd >= 0)
        close(x.fd);
    flush_batch(&x);
    fv_out_free(&x.out);
    st.parts = x.parts;
    if (rc) {
        /* No part of a failed export stays: a courier must not carry it. */
        for (uint64_t k = 1; k <= x.parts; k++)
            if (part_path(&x, k) == FV_OK)
                unlink(x.path);
        free(x.path);
        if (rc == FV_ENOMEM)
            return fv_vs_fail(v, rc, "out of memory");
        if (rc == FV_ELIMIT)
            return fv_vs_fail(v, rc, "the size limit is too small: a part "
                                     "must hold every certificate and "
                                     "envelope of the bundle and at least "
                                     "one chunk");
        if (rc == FV_EEXIST)
            return fv_vs_fail(v, rc, "the bundle file exists already");
        if (rc == FV_EIO && x.parts == 0)
            return fv_vs_fail(v, rc, "cannot create the bundle file");
        if (rc == FV_EIO || rc == FV_ENOSPC)
            return fv_vs_fail(v, rc, rc == FV_ENOSPC
                                         ? "disk full"
                                         : "cannot write the bundle file");
        return rc; /* the vault's own failure, its message set */
    }
    free(x.path);
    if (stats)
        fv_result_put(stats, &st, sizeof st);
    return FV_OK;
}

int fv_bundle_export(fv_vault *v, fv_bundle_stats *stats, const char *path,
                     const fv_bundle_options *opt)
{
    return FV_CALL(v, bundle_export(v, stats, path, opt));
}

int fv_bundle_read(const char *path, fv_bundle_batch_fn fn,
                   fv_bundle_chunk_fn chunk_fn, void *payload, const char **why)
{
    return fv_bundle_read_ex(path, fn, NULL, chunk_fn, payload, why);
}

int fv_bundle_read_ex(const char *path, fv_bundle_batch_fn fn,
                      fv_bundle_batch_fn cert_fn, fv_bundle_chunk_fn chunk_fn,
                      void *payload, const char **why)
{
    unsigned char *buf = NULL, magic[8];
    const char *msg = NULL;
    fv_msg *m = NULL;
    fv_framer fr;
    int fd, rc = FV_OK, ended = 0, past_certs = 0;
    ssize_t got;

    if (why)
        *why = NULL;
    if (!path || !fn || !chunk_fn)
        return FV_EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (why)
            *why = "cannot open the bundle file";
        return errno == ENOENT ? FV_ENOTFOUND : FV_EIO;
    }
    fv_framer_init(&fr);
    buf = malloc(READ_BYTES);
    m = malloc(sizeof *m);
    if (!buf || !m) {
        rc = FV_ENOMEM;
        msg = "out of memory";
        goto cleanup;
    }
    got = read_full(fd, magic, sizeof magic);
    if (got < 0) {
        rc = FV_EIO;
        msg = "cannot read the bundle file";
        goto cleanup;
    }
    if (got != (ssize_t)sizeof magic || memcmp(magic, BUNDLE_MAGIC, 8) != 0) {
        rc = FV_ECORRUPT;
        msg = "not a FieldVault bundle";
        goto cleanup;
    }
    /* One pass: each frame is handled as soon as it is whole, so that a
     * file cut short still yields everything before the cut. */
    while (rc == FV_OK) {
        ssize_t n = read(fd, buf, READ_BYTES);
        size_t off = 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = FV_EIO;
            msg = "cannot read the bundle file";
            break;
        }
        if (n == 0) {
            /* A frame begun and not finished, or no end mark: cut short. */
            if (!ended) {
                rc = FV_ECORRUPT;
                msg = fv_bundle_cut_short;
            }
            break;
        }
        while (rc == FV_OK && off < (size_t)n) {
            const unsigned char *frame;
            size_t flen;
            int err;
            if (ended) {
                rc = FV_ECORRUPT; /* bytes after the end mark */
                msg = "the bundle is damaged";
                break;
            }
            off += fv_framer_feed(&fr, buf + off, (size_t)n - off, &frame,
                                  &flen, &err);
            if (err) {
                rc = err == FV_ENOMEM ? FV_ENOMEM : FV_ECORRUPT;
                msg = rc == FV_ECORRUPT ? "the bundle is damaged"
                                        : "out of memory";
                break;
            }
            if (!frame)
                continue;
            /* Certificates come before everything else: an envelope is
             * admitted or kept apart by the certificates read before it,
             * so one arriving later would have judged it too early. */
            if (fv_msg_decode(m, frame, flen) != FV_OK ||
                (m->type != FV_MSG_PUSH && m->type != FV_MSG_CHUNK_PUT &&
                 m->type != FV_MSG_CERTS && m->type != FV_MSG_BYE) ||
                (m->type == FV_MSG_CERTS && past_certs)) {
                rc = FV_ECORRUPT;
                msg = "the bundle is damaged";
                break;
            }
            if (m->type == FV_MSG_BYE) {
                ended = 1;
            } else if (m->type == FV_MSG_CERTS) {
                if (cert_fn)
                    rc = cert_fn(m->u.push.env, m->u.push.len, m->u.push.n,
                                 payload);
            } else if (m->type == FV_MSG_PUSH) {
                past_certs = 1;
                rc = fn(m->u.push.env, m->u.push.len, m->u.push.n, payload);
            } else {
                past_certs = 1;
                rc = chunk_fn(m->u.chunk.hash, m->u.chunk.data,
                              m->u.chunk.len, payload);
            }
        }
    }
cleanup:
    fv_framer_free(&fr);
    close(fd);
    free(buf);
    free(m);
    if (why)
        *why = msg;
    return rc;
}

/* Chunks stored per transaction by an import: one fsync per 8 MiB. */
#define CHUNKS_PER_COMMIT 128

struct vault_import {
    fv_vault *v;
    fv_bundle_stats st;
    size_t pending; /* chunks in the open transaction, if any */
    int in_txn;
};

/* Commits the chunks stored so far: each was verified before it was. */
static int chunks_commit(struct vault_import *x)
{
    int rc = FV_OK;
    if (x->in_txn)
        rc = fv_vs_chunks_end(x->v, 1);
    x->in_txn = 0;
    x->pending = 0;
    return rc;
}

static int vault_batch(const unsigned char *const *env, const size_t *len,
                       size_t n, void *payload)
{
    struct vault_import *x = payload;
    size_t nadded = 0, nskipped = 0, nrefused = 0;
    /* Verified and stored as pulled envelopes are, but with no server
     * behind them (review states are left out), in their own
     * transaction. */
    int rc = chunks_commit(x);
    if (rc == FV_OK)
        rc = fv_vs_import_bundle(x->v, env, len, n, &nadded, &nskipped,
                                 &nrefused);
    if (rc == FV_EPROTO)
        rc = fv_vs_fail(x->v, FV_ECORRUPT,
                        "an envelope in the bundle fails verification");
    if (rc == FV_OK) {
        x->st.envelopes += n;
        x->st.added += nadded;
        x->st.skipped += nskipped;
        x->st.refused += nrefused;
    }
    return rc;
}

static int vault_certs(const unsigned char *const *cert, const size_t *len,
                       size_t n, void *payload)
{
    struct vault_import *x = payload;
    size_t added = 0, rejected = 0;
    /* Each is checked against the organisation key; the bad ones are
     * passed over and the bundle goes on. Stored before the envelopes
     * that follow are admitted (fv_bundle_read_ex keeps them first). */
    int rc = chunks_commit(x);
    if (rc == FV_OK)
        rc = fv_vs_certs_import(x->v, cert, len, n, &added, &rejected);
    return rc;
}

static int vault_chunk(const unsigned char *hash, const unsigned char *data,
                       size_t len, void *payload)
{
    struct vault_import *x = payload;
    int got = 0, rc = FV_OK;
    if (!x->in_txn && (rc = fv_vs_chunks_begin(x->v)) == FV_OK)
        x->in_txn = 1;
    /* Checked as a chunk from the server is: against its hash and the
     * signed manifests this vault holds (stored from this bundle or
     * before). */
    if (rc == FV_OK)
        rc = fv_vs_chunk_import(x->v, hash, data, len, &got);
    if (rc == FV_OK && ++x->pending == CHUNKS_PER_COMMIT)
        rc = chunks_commit(x);
    if (rc)
        return rc;
    x->st.chunks++;
    x->st.chunk_bytes += len;
    x->st.chunks_added += got == FV_VS_CHUNK_ADDED;
    x->st.chunks_refused += got == FV_VS_CHUNK_TAMPERED;
    x->st.chunks_unlisted += got == FV_VS_CHUNK_UNLISTED;
    return FV_OK;
}

/* The message for a bundle whose import stopped or refused something after
 * other items were stored: `what`, then what was imported `where` (before
 * the fault, or beside what was refused). */
static void import_message(char *msg, size_t cap, const char *what,
                           const char *where, const fv_bundle_stats *st)
{
    uint64_t kept = st->chunks - st->chunks_refused - st->chunks_unlisted;
    snprintf(msg, cap, "%s (%s: %llu envelope%s and %llu attachment chunk%s "
                       "imported)",
             what, where, (unsigned long long)st->envelopes,
             st->envelopes == 1 ? "" : "s", (unsigned long long)kept,
             kept == 1 ? "" : "s");
}

static int bundle_import(fv_vault *v, fv_bundle_stats *stats, const char *path)
{
    struct vault_import x;
    const char *why = NULL;
    char msg[320], what[200];
    int rc, bulk;

    memset(&x, 0, sizeof x);
    x.v = v;
    if (!v || !path)
        return FV_EINVAL;
    if (stats && !stats_ok(stats))
        return stats_fail(v);
    if (stats)
        fv_result_put(stats, &x.st, sizeof x.st);
    /* The chunks are most of a bundle's bytes: written once to the
     * database rather than to the WAL and again at its checkpoint. */
    bulk = fv_vs_bulk_begin(v);
    rc = fv_bundle_read_ex(path, vault_batch, vault_certs, vault_chunk, &x,
                           &why);
    /* Whatever stopped the read, the chunks verified before it are kept. */
    if (x.in_txn) {
        int crc = chunks_commit(&x);
        if (rc == FV_OK || why)
            rc = crc ? crc : rc;
        if (crc)
            why = NULL; /* the store's message stands */
    }
    /* Back to WAL. What was committed stays committed if this fails (the
     * next open of the vault asks for WAL again); the failure is said. */
    if (bulk) {
        int brc = fv_vs_bulk_end(v);
        if (rc == FV_OK)
            rc = brc;
    }
    x.st.truncated = why == fv_bundle_cut_short;
    if (rc && why) {
        /* The file's failure, not an item's: what came before it stays. */
        if (x.st.envelopes || x.st.chunks) {
            import_message(msg, sizeof msg, why,
                           x.st.truncated ? "before the cut"
                                          : "before the damage",
                           &x.st);
            rc = fv_vs_fail(v, rc, msg);
        } else {
            rc = fv_vs_fail(v, rc, why);
        }
    }
    if (stats)
        fv_result_put(stats, &x.st, sizeof x.st);
    /* Everything else of the bundle is imported and committed; the refused
     * envelopes and chunks make the import fail as damaged data, said
     * once. */
    if (rc == FV_OK && x.st.refused > 0) {
        snprintf(what, sizeof what,
                 "%llu envelope%s in the bundle %s refused: %s content "
                 "breaks the format",
                 (unsigned long long)x.st.refused,
                 x.st.refused == 1 ? "" : "s",
                 x.st.refused == 1 ? "was" : "were",
                 x.st.refused == 1 ? "its" : "their");
        snprintf(msg, sizeof msg, "%s (the other %llu imported)", what,
                 (unsigned long long)(x.st.envelopes - x.st.refused -
                                      x.st.skipped));
        rc = fv_vs_fail(v, FV_ECORRUPT, msg);
    } else if (rc == FV_OK && x.st.chunks_refused > 0) {
        snprintf(what, sizeof what,
                 "%llu chunk%s in the bundle %s refused: %s not match %s hash",
                 (unsigned long long)x.st.chunks_refused,
                 x.st.chunks_refused == 1 ? "" : "s",
                 x.st.chunks_refused == 1 ? "was" : "were",
                 x.st.chunks_refused == 1 ? "it does" : "they do",
                 x.st.chunks_refused == 1 ? "its" : "their");
        import_message(msg, sizeof msg, what, "beside it", &x.st);
        rc = fv_vs_fail(v, FV_ECORRUPT, msg);
    }
    return rc;
}

int fv_bundle_import(fv_vault *v, fv_bundle_stats *stats, const char *path)
{
    return FV_CALL(v, bundle_import(v, stats, path));
}
