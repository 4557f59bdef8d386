/* sstore.c - the server store interface (sstore.h): each function calls
 * the handle's implementation. */
#include "sstore.h"

#include "store_pg.h"
#include "store_server.h"

#include <string.h>

#include "fieldvault.h"

int fv_sstore_is_pg(const char *path)
{
    return path && (strncmp(path, "postgresql://", 13) == 0 ||
                    strncmp(path, "postgres://", 11) == 0);
}

int fv_sstore_open(fv_sstore **out, const char *path, int create)
{
    if (fv_sstore_is_pg(path)) {
#ifdef FV_HAVE_POSTGRESQL
        return fv_sstore_pg_open(out, path, create);
#else
        *out = NULL;
        return FV_EINVAL; /* built without PostgreSQL */
#endif
    }
    return fv_sstore_sqlite_open(out, path, create);
}

void fv_sstore_close(fv_sstore *s)
{
    if (s)
        s->ops->close(s);
}

const char *fv_sstore_errmsg(const fv_sstore *s)
{
    return s ? s->ops->errmsg(s) : "server database: no handle";
}

int fv_sstore_begin(fv_sstore *s)
{
    return s->ops->begin(s);
}

int fv_sstore_commit(fv_sstore *s)
{
    return s->ops->commit(s);
}

void fv_sstore_rollback(fv_sstore *s)
{
    s->ops->rollback(s);
}

int fv_sstore_checkpoint(fv_sstore *s)
{
    return s->ops->checkpoint(s);
}

int fv_sstore_meta_get(fv_sstore *s, const char *key, unsigned char **val,
                       size_t *len)
{
    return s->ops->meta_get(s, key, val, len);
}

int fv_sstore_meta_get_fixed(fv_sstore *s, const char *key, void *val,
                             size_t len)
{
    return s->ops->meta_get_fixed(s, key, val, len);
}

int fv_sstore_meta_put(fv_sstore *s, const char *key, const void *val,
                       size_t len)
{
    return s->ops->meta_put(s, key, val, len);
}

int fv_sstore_device_get(fv_sstore *s, const unsigned char pk[32],
                         fv_sstore_device *d)
{
    return s->ops->device_get(s, pk, d);
}

int fv_sstore_device_by_box(fv_sstore *s, const unsigned char box[32],
                            fv_sstore_device *d)
{
    return s->ops->device_by_box(s, box, d);
}

int fv_sstore_device_add(fv_sstore *s, const fv_sstore_device *d)
{
    return s->ops->device_add(s, d);
}

int fv_sstore_device_revoke(fv_sstore *s, const unsigned char pk[32],
                            int64_t now)
{
    return s->ops->device_revoke(s, pk, now);
}

int fv_sstore_each_device(fv_sstore *s, size_t max, fv_sstore_device_fn fn,
                          void *payload)
{
    return s->ops->each_device(s, max, fn, payload);
}

int fv_sstore_invite_add(fv_sstore *s, const unsigned char token_hash[32],
                         const char *name, size_t name_len, int role,
                         int64_t expires)
{
    return s->ops->invite_add(s, token_hash, name, name_len, role, expires);
}

int fv_sstore_invite_get(fv_sstore *s, const unsigned char token_hash[32],
                         fv_sstore_invite *inv)
{
    return s->ops->invite_get(s, token_hash, inv);
}

int fv_sstore_invite_use(fv_sstore *s, const unsigned char token_hash[32],
                         const unsigned char device[32])
{
    return s->ops->invite_use(s, token_hash, device);
}

int fv_sstore_log_find(fv_sstore *s, const unsigned char id[32], uint64_t *seq)
{
    return s->ops->log_find(s, id, seq);
}

int fv_sstore_log_find_author(fv_sstore *s, const unsigned char id[32],
                              uint64_t *seq, unsigned char *author)
{
    return s->ops->log_find_author(s, id, seq, author);
}

int fv_sstore_log_head(fv_sstore *s, uint64_t *seq, unsigned char chain[32])
{
    return s->ops->log_head(s, seq, chain);
}

int fv_sstore_log_chain(fv_sstore *s, uint64_t seq, unsigned char chain[32])
{
    return s->ops->log_chain(s, seq, chain);
}

int fv_sstore_log_add(fv_sstore *s, uint64_t seq, const unsigned char id[32],
                      const unsigned char author[32],
                      const unsigned char *bytes, size_t len,
                      const unsigned char chain[32])
{
    return s->ops->log_add(s, seq, id, author, bytes, len, chain);
}

int fv_sstore_feed_head(fv_sstore *s, const unsigned char device[32],
                        uint64_t *fseq, unsigned char chain[32])
{
    return s->ops->feed_head(s, device, fseq, chain);
}

int fv_sstore_feed_chain(fv_sstore *s, const unsigned char device[32],
                         uint64_t fseq, unsigned char chain[32])
{
    return s->ops->feed_chain(s, device, fseq, chain);
}

int fv_sstore_feed_add(fv_sstore *s, const unsigned char device[32],
                       uint64_t fseq, uint64_t seq,
                       const unsigned char chain[32])
{
    return s->ops->feed_add(s, device, fseq, seq, chain);
}

int fv_sstore_feed_has(fv_sstore *s, const unsigned char device[32],
                       uint64_t seq)
{
    return s->ops->feed_has(s, device, seq);
}

int fv_sstore_read(fv_sstore *s, const unsigned char *device, uint64_t after,
                   uint64_t upto, size_t max, fv_sstore_entry_fn fn,
                   void *payload)
{
    return s->ops->read(s, device, after, upto, max, fn, payload);
}

int fv_sstore_chunkref_add(fv_sstore *s, const unsigned char hash[32],
                           uint64_t seq)
{
    return s->ops->chunkref_add(s, hash, seq);
}

int fv_sstore_chunk_listed(fv_sstore *s, const unsigned char hash[32],
                           const unsigned char *author)
{
    return s->ops->chunk_listed(s, hash, author);
}

int fv_sstore_chunk_append(fv_sstore *s, const unsigned char *data, size_t len,
                           fv_sstore_chunkloc *loc)
{
    return s->ops->chunk_append(s, data, len, loc);
}

int fv_sstore_chunk_sync(fv_sstore *s)
{
    return s->ops->chunk_sync(s);
}

int fv_sstore_chunk_add(fv_sstore *s, const unsigned char hash[32],
                        const fv_sstore_chunkloc *loc)
{
    return s->ops->chunk_add(s, hash, loc);
}

int fv_sstore_chunk_find(fv_sstore *s, const unsigned char hash[32],
                         const unsigned char *reader, fv_sstore_chunkloc *loc)
{
    return s->ops->chunk_find(s, hash, reader, loc);
}

int fv_sstore_chunk_read(fv_sstore *s, const fv_sstore_chunkloc *loc,
                         unsigned char *buf)
{
    return s->ops->chunk_read(s, loc, buf);
}

int fv_sstore_chunk_live(fv_sstore *s, const unsigned char hash[32])
{
    return s->ops->chunk_live(s, hash);
}

int fv_sstore_chunk_discard(fv_sstore *s, const fv_sstore_chunkloc *loc)
{
    return s->ops->chunk_discard(s, loc);
}

int fv_sstore_logrec_add(fv_sstore *s, uint64_t seq,
                         const unsigned char record[32])
{
    return s->ops->logrec_add(s, seq, record);
}

int fv_sstore_record_origin(fv_sstore *s, const unsigned char record[32],
                            unsigned char origin[32])
{
    return s->ops->record_origin(s, record, origin);
}

int fv_sstore_retracted(fv_sstore *s, const unsigned char record[32],
                        uint64_t *seq, unsigned char *id)
{
    return s->ops->retracted(s, record, seq, id);
}

int fv_sstore_retract(fv_sstore *s, const unsigned char record[32],
                      uint64_t seq, const unsigned char id[32],
                      uint64_t *entries, uint64_t *chunks)
{
    return s->ops->retract(s, record, seq, id, entries, chunks);
}

int fv_sstore_record_readers(fv_sstore *s, const unsigned char record[32],
                             fv_sstore_key_fn fn, void *payload)
{
    return s->ops->record_readers(s, record, fn, payload);
}
