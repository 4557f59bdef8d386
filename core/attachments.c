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
    size_t got, chunk = FV_CHUNK_BYTES;
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
        chunk_nonce(nonce, count);
        fv_aead_encrypt(ct, plain, got, NULL, 0, nonce, key);
        fv_hash(hash, ct, got + FV_TAG_BYTES);
        if ((rc = fv_store_chunk_put(v->store, hash, ct, got + FV_TAG_BYTES, 0)) ||
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
    free(o->chunks);
}

int fv_v_attach_init(struct attach_out *o, size_t n)
{
    memset(o, 0, sizeof *o);
    o->info = calloc(n ? n : 1, sizeof *o->info);
    o->counts = calloc(n ? n : 1, sizeof *o->counts);
    if (n) /* attachment keys: locked memory, only when there are some */
        o->keys = fv_secure_alloc(n * FV_KEY_BYTES);
    if (o->info && o->counts && (!n || o->keys))
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

int fv_attachment_read(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                       const char *name, fv_write_fn fn, void *payload,
                       fv_progress_fn progress, void *progress_payload)
{
    struct head_pick p;
    const fv_attachment_info *a = NULL;
    unsigned char *plain = NULL, *ct = NULL;
    unsigned char nonce[FV_NONCE_BYTES], hash[FV_HASH_BYTES];
    size_t first = 0, i, len;
    uint64_t done = 0;
    int rc;

    if (!v || !name || !fn)
        return FV_EINVAL;
    if ((rc = fv_v_newest_head(v, &p, id, 1)))
        return rc;
    for (i = 0; i < p.best->pub.nattachments; i++) {
        if (strcmp(p.best->pub.attachments[i].name, name) == 0) {
            a = &p.best->pub.attachments[i];
            break;
        }
        first += (size_t)p.best_env.chunk_counts[i];
    }
    if (!a) {
        rc = fv_v_err(v, FV_ENOTFOUND, "the record has no attachment of that name");
        goto done;
    }
    plain = fv_secure_alloc(a->chunk_bytes);
    ct = malloc((size_t)a->chunk_bytes + FV_TAG_BYTES);
    if (!plain || !ct) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    for (uint64_t c = 0; c < a->chunks; c++) {
        const unsigned char *want = p.best_env.chunks[first + c];
        uint64_t expect = fv_chunk_ct_bytes(a, c) - FV_TAG_BYTES;
        rc = fv_store_chunk_get(v->store, want, ct,
                                (size_t)a->chunk_bytes + FV_TAG_BYTES, &len);
        if (rc == FV_ENOTFOUND) {
            rc = fv_v_err(v, FV_EINCOMPLETE,
                          "the attachment has not fully arrived: %llu of %llu "
                          "chunks so far",
                          (unsigned long long)a->chunks_present,
                          (unsigned long long)a->chunks);
            goto done;
        }
        if (rc == FV_OK) {
            fv_hash(hash, ct, len);
            chunk_nonce(nonce, c);
            if (len != expect + FV_TAG_BYTES ||
                !fv_ct_equal(hash, want, FV_HASH_BYTES) ||
                fv_aead_decrypt(plain, ct, len, NULL, 0, nonce,
                                p.best->keys[a - p.best->pub.attachments]))
                rc = FV_ECORRUPT;
        }
        if (rc) {
            fv_v_err(v, rc, rc == FV_ECORRUPT
                            ? "an attachment chunk failed verification"
                            : "%s", fv_store_errmsg(v->store));
            goto done;
        }
        if (fn(plain, (size_t)expect, payload)) {
            rc = fv_v_err(v, FV_EIO, "cannot write the attachment's bytes");
            goto done;
        }
        done += expect;
        if (progress && progress(done, a->size, progress_payload)) {
            rc = fv_v_err(v, FV_ECANCELED, "canceled");
            goto done;
        }
    }
done:
    fv_secure_free(plain);
    free(ct);
    fv_v_pick_clear(&p);
    return rc;
}

int fv_attachment_save(fv_vault *v, const unsigned char id[FV_ID_BYTES],
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
    rc = fv_attachment_read(v, id, name, fv_write_fd_cb, &fd, progress, progress_payload);
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

