/* attachments.c - attachments in fixed-size chunks (docs/FORMAT.md): each
 * chunk encrypted under the attachment's own key with its index as nonce,
 * stored by the hash of its ciphertext, which the signed envelope lists.
 * Files are streamed: memory does not grow with their size. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fileio.h"
#include "fieldvault.h"
#include "record.h"
#include "store.h"
#include "vault_internal.h"

/* Files with more chunks than this at FV_CHUNK_BYTES use FV_MAX_CHUNK_BYTES. */
#define FV_LARGE_FILE_CHUNKS 16384

/* ---- writing attachments ------------------------------------------- */

/* Chunk i of an attachment is encrypted under the attachment's own key with
 * the nonce LE64(i) || zeros: keys are never reused across attachments. */
static void chunk_nonce(unsigned char nonce[FV_NONCE_BYTES], uint64_t i)
{
    memset(nonce, 0, FV_NONCE_BYTES);
    fv_v_put_le(nonce, i, 8);
}

int fv_v_chunks_push(struct attach_out *o, const unsigned char h[FV_HASH_BYTES])
{
    if (o->nchunks == o->chunks_cap) {
        size_t cap = o->chunks_cap ? o->chunks_cap * 2 : 64;
        void *p = realloc(o->chunks, cap * FV_HASH_BYTES);
        if (!p)
            return FV_ENOMEM;
        o->chunks = p;
        o->chunks_cap = cap;
    }
    memcpy(o->chunks[o->nchunks++], h, FV_HASH_BYTES);
    return FV_OK;
}

/* Fills buf from a file or a callback; short only at the end. */
static int read_full(int fd, const fv_attachment_source *src, unsigned char *buf,
                     size_t cap, size_t *got)
{
    *got = 0;
    while (*got < cap) {
        long long r;
        if (fd >= 0) {
            r = read(fd, buf + *got, cap - *got);
            if (r < 0 && errno == EINTR)
                continue;
        } else {
            r = src->read(buf + *got, cap - *got, src->read_payload);
        }
        if (r < 0 || (unsigned long long)r > cap - *got)
            return FV_EIO;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return FV_OK;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Encrypts one attachment into chunks stored inside the open transaction. */
int fv_v_attach_add(fv_vault *v, struct attach_out *o, size_t idx,
                          const fv_attachment_source *src, struct progress *pr,
                          unsigned char *plain, unsigned char *ct)
{
    fv_attachment_info *info = &o->info[o->n];
    unsigned char *key = o->keys[o->n];
    unsigned char nonce[FV_NONCE_BYTES], hash[FV_HASH_BYTES];
    uint64_t count = 0, size = 0;
    size_t got, stored, chunk = FV_CHUNK_BYTES;
    struct stat sb;
    int fd = -1, rc = FV_OK;

    info->name = src->name ? src->name : (src->path ? base_name(src->path) : NULL);
    if (!info->name || !fv_attachment_name_ok(info->name))
        return fv_v_err(v, FV_EINVAL, "attachment %zu has no valid name", idx + 1);
    for (size_t j = 0; j < o->n; j++)
        if (strcmp(o->info[j].name, info->name) == 0)
            return fv_v_err(v, FV_EINVAL,
                        "attachment %zu: the record already has an attachment "
                        "of that name", idx + 1);
    if (src->path) {
        fd = open(src->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            /* The path as the caller gave it: which file is the problem. */
            return fv_v_err(v, FV_EIO, "attachment %zu: cannot open %s: %s",
                        idx + 1, src->path, fv_errno_text(errno).text);
        /* Very large files get larger chunks, so that their hash list
         * still fits the signed envelope (FORMAT.md, Attachments). */
        if (fstat(fd, &sb) == 0 &&
            (uint64_t)sb.st_size > (uint64_t)FV_CHUNK_BYTES * FV_LARGE_FILE_CHUNKS)
            chunk = FV_MAX_CHUNK_BYTES;
    } else if (!src->read) {
        return fv_v_err(v, FV_EINVAL, "attachment %zu has neither path nor reader", idx + 1);
    }
    fv_random(key, FV_KEY_BYTES);
    for (;;) {
        if ((rc = read_full(fd, src, plain, chunk, &got))) {
            fv_v_err(v, rc, "attachment %zu: cannot read the file", idx + 1);
            break;
        }
        if (got == 0)
            break;
        /* A short chunk is the last: zero-padded to its bucket (FORMAT.md
         * 8), so that the stored size says the size only to the bucket. */
        stored = got < chunk ? (size_t)fv_chunk_padded_len(got, chunk) : got;
        memset(plain + got, 0, stored - got);
        chunk_nonce(nonce, count);
        fv_aead_encrypt(ct, plain, stored, NULL, 0, nonce, key);
        fv_hash(hash, ct, stored + FV_TAG_BYTES);
        if ((rc = fv_store_chunk_put(v->store, hash, ct, stored + FV_TAG_BYTES, 0)) ||
            (rc = fv_v_chunks_push(o, hash))) {
            fv_v_serr(v, rc);
            break;
        }
        count++;
        size += got;
        pr->done += got;
        if (pr->fn && pr->fn(pr->done, pr->total, pr->payload)) {
            rc = fv_v_err(v, FV_ECANCELED, "canceled");
            break;
        }
        if (got < chunk)
            break;
    }
    if (fd >= 0)
        close(fd);
    if (rc)
        return rc;
    info->size = size;
    info->chunk_bytes = (uint32_t)chunk;
    info->chunks = count;
    o->padded[o->n] = 1;
    o->counts[o->n] = count;
    o->n++;
    return FV_OK;
}

void fv_v_attach_free(struct attach_out *o)
{
    free(o->info);
    if (o->keys)
        fv_secure_free(o->keys);
    free(o->counts);
    free(o->padded);
    free(o->chunks);
}

int fv_v_attach_init(struct attach_out *o, size_t n)
{
    memset(o, 0, sizeof *o);
    o->info = calloc(n ? n : 1, sizeof *o->info);
    o->counts = calloc(n ? n : 1, sizeof *o->counts);
    o->padded = calloc(n ? n : 1, 1);
    if (n) /* attachment keys: locked memory, only when there are some */
        o->keys = fv_secure_alloc(n * FV_KEY_BYTES);
    if (o->info && o->counts && o->padded && (!n || o->keys))
        return FV_OK;
    /* The callers return at once: nothing half-made is left to them. */
    fv_v_attach_free(o);
    memset(o, 0, sizeof *o);
    return FV_ENOMEM;
}

uint64_t fv_v_sources_total(const fv_record_input *in)
{
    uint64_t total = 0;
    struct stat sb;
    for (size_t i = 0; i < in->nattachments; i++)
        if (in->attachments[i].path && stat(in->attachments[i].path, &sb) == 0)
            total += (uint64_t)sb.st_size;
    return total;
}

/* Writes one revision: the record in `r` (fields and tags sorted), the
 * attachments kept from `base` (indexes in keep[]), and new attachments from
 * `in`. Runs in one transaction: all of it is stored, or none. */
/* ---- reading attachments -------------------------------------------- */

/* 1 if the n bytes at p are all zero. */
static int zeros(const unsigned char *p, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* One attachment of the record's newest head, being read: its info, where
 * its chunks start in the head's chunk list, whether its last chunk is
 * padded, and buffers for one chunk. */
struct att_reader {
    struct head_pick p;
    const fv_attachment_info *a;
    size_t first;
    int pad;
    unsigned char *plain, *ct;
};

static void reader_close(struct att_reader *r)
{
    fv_secure_free(r->plain);
    free(r->ct);
    fv_v_pick_clear(&r->p);
}

static int reader_open(fv_vault *v, struct att_reader *r,
                       const unsigned char id[FV_ID_BYTES], const char *name)
{
    int rc;

    memset(r, 0, sizeof *r);
    if ((rc = fv_v_newest_head(v, &r->p, id, 1)))
        return rc;
    for (size_t i = 0; i < r->p.best->pub.nattachments; i++) {
        if (strcmp(r->p.best->pub.attachments[i].name, name) == 0) {
            r->a = &r->p.best->pub.attachments[i];
            r->pad = r->p.best->padded[i];
            break;
        }
        r->first += (size_t)r->p.best_env.chunk_counts[i];
    }
    if (!r->a)
        return fv_v_err(v, FV_ENOTFOUND,
                        "the record has no attachment of that name");
    r->plain = fv_secure_alloc(r->a->chunk_bytes);
    r->ct = malloc((size_t)r->a->chunk_bytes + FV_TAG_BYTES);
    if (!r->plain || !r->ct)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    return FV_OK;
}

/* Chunk c, fetched, checked against its hash and length, decrypted into
 * r->plain and its padding checked: *plain_len receives its bytes of the
 * attachment. */
static int reader_chunk(fv_vault *v, struct att_reader *r, uint64_t c,
                        uint64_t *plain_len)
{
    const fv_attachment_info *a = r->a;
    const unsigned char *want = r->p.best_env.chunks[r->first + c];
    unsigned char nonce[FV_NONCE_BYTES], hash[FV_HASH_BYTES];
    uint64_t stored = fv_chunk_ct_bytes(a, r->pad, c) - FV_TAG_BYTES;
    uint64_t expect = fv_chunk_plain_bytes(a, c);
    size_t len;
    int rc = fv_store_chunk_get(v->store, want, r->ct,
                                (size_t)a->chunk_bytes + FV_TAG_BYTES, &len);

    if (rc == FV_ENOTFOUND)
        return fv_v_err(v, FV_EINCOMPLETE,
                        "the attachment has not fully arrived: %llu of %llu "
                        "chunks so far",
                        (unsigned long long)a->chunks_present,
                        (unsigned long long)a->chunks);
    if (rc)
        return fv_v_err(v, rc, "%s", fv_store_errmsg(v->store));
    fv_hash(hash, r->ct, len);
    chunk_nonce(nonce, c);
    if (len != stored + FV_TAG_BYTES ||
        !fv_ct_equal(hash, want, FV_HASH_BYTES) ||
        fv_aead_decrypt(r->plain, r->ct, len, NULL, 0, nonce,
                        r->p.best->keys[a - r->p.best->pub.attachments]) ||
        !zeros(r->plain + expect, (size_t)(stored - expect)))
        /* padding is zeros, or it is damage */
        return fv_v_err(v, FV_ECORRUPT,
                        "an attachment chunk failed verification");
    *plain_len = expect;
    return FV_OK;
}

static int attachment_read(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                           const char *name, fv_write_fn fn, void *payload,
                           fv_progress_fn progress, void *progress_payload)
{
    struct att_reader r;
    uint64_t done = 0, n;
    int rc;

    if (!v || !name || !fn)
        return FV_EINVAL;
    rc = reader_open(v, &r, id, name);
    for (uint64_t c = 0; rc == FV_OK && c < r.a->chunks; c++) {
        if ((rc = reader_chunk(v, &r, c, &n)))
            break;
        if (fn(r.plain, (size_t)n, payload)) {
            rc = fv_v_err(v, FV_EIO, "cannot write the attachment's bytes");
            break;
        }
        done += n;
        if (progress && progress(done, r.a->size, progress_payload))
            rc = fv_v_err(v, FV_ECANCELED, "canceled");
    }
    reader_close(&r);
    return rc;
}

int fv_attachment_read(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                       const char *name, fv_write_fn fn, void *payload,
                       fv_progress_fn progress, void *progress_payload)
{
    return FV_CALL(v, attachment_read(v, id, name, fn, payload, progress, progress_payload));
}

static int attachment_read_range(fv_vault *v, uint64_t *size,
                                 const unsigned char id[FV_ID_BYTES],
                                 const char *name, uint64_t offset, uint64_t length,
                                 fv_write_fn fn, void *payload)
{
    struct att_reader r;
    uint64_t end, n;
    int rc;

    if (!v || !name || !fn)
        return FV_EINVAL;
    if ((rc = reader_open(v, &r, id, name)))
        goto done;
    if (size)
        *size = r.a->size;
    if (offset > r.a->size || r.a->chunk_bytes == 0) {
        rc = fv_v_err(v, FV_EINVAL, "the range starts past the attachment's end");
        goto done;
    }
    end = length > r.a->size - offset ? r.a->size : offset + length;
    /* Only the chunks the range touches are read, each verified whole
     * before any of its bytes are passed on. */
    for (uint64_t c = offset / r.a->chunk_bytes; c < r.a->chunks; c++) {
        uint64_t cstart = c * r.a->chunk_bytes, from, to;
        if (cstart >= end)
            break;
        if ((rc = reader_chunk(v, &r, c, &n)))
            goto done;
        from = offset > cstart ? offset - cstart : 0;
        to = end - cstart < n ? end - cstart : n;
        if (from < to && fn(r.plain + from, (size_t)(to - from), payload)) {
            rc = fv_v_err(v, FV_EIO, "cannot write the attachment's bytes");
            goto done;
        }
    }
done:
    reader_close(&r);
    return rc;
}

int fv_attachment_read_range(fv_vault *v, uint64_t *size,
                             const unsigned char id[FV_ID_BYTES],
                             const char *name, uint64_t offset, uint64_t length,
                             fv_write_fn fn, void *payload)
{
    return FV_CALL(v, attachment_read_range(v, size, id, name, offset, length, fn, payload));
}

static int attachment_save(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                           const char *name, const char *path,
                           fv_progress_fn progress, void *progress_payload)
{
    char *tmp, *dir;
    size_t n;
    int fd, rc;
    struct stat sb;

    if (!v || !path || !*path)
        return FV_EINVAL;
    if (lstat(path, &sb) == 0)
        return fv_v_err(v, FV_EEXIST, "the output file already exists");
    n = strlen(path) + 16;
    tmp = malloc(n);
    dir = fv_path_dir(path);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    }
    snprintf(tmp, n, "%s.fvtmp-XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = fv_v_err(v, fv_errno_rc(errno), "cannot create the output file: %s",
                  fv_errno_text(errno).text);
        free(tmp);
        free(dir);
        return rc;
    }
    rc = attachment_read(v, id, name, fv_write_fd_cb, &fd, progress, progress_payload);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_v_err(v, fv_errno_rc(errno), "cannot write the output file: %s",
                  fv_errno_text(errno).text);
    close(fd);
    /* Only a fully verified file appears under its name; link() will not
     * replace a file that appeared meanwhile. */
    if (rc == FV_OK && link(tmp, path) != 0)
        rc = fv_v_err(v, errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno),
                  "cannot create the output file: %s", fv_errno_text(errno).text);
    unlink(tmp);
    /* The new name made durable, or the file is taken back rather than
     * reported saved (as an export is). */
    if (rc == FV_OK && (rc = fv_fsync_dir(dir)) != FV_OK) {
        unlink(path);
        rc = fv_v_err(v, rc, "cannot make the output file durable: %s", fv_strerror(rc));
    }
    free(tmp);
    free(dir);
    return rc;
}

int fv_attachment_save(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                       const char *name, const char *path,
                       fv_progress_fn progress, void *progress_payload)
{
    return FV_CALL(v, attachment_save(v, id, name, path, progress, progress_payload));
}

