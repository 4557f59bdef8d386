/* forge.h - envelopes a buggy or hostile device could write: signed with
 * a vault's own device key and sealed as the library seals, but carrying
 * payloads that break docs/FORMAT.md. Shared by test_desk_core.c and the
 * forge_bundle tool that the end-to-end tests use to make hostile courier
 * bundles. Include after check.h and vault_internal.h. */
#ifndef FV_TEST_FORGE_H
#define FV_TEST_FORGE_H

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "envelope.h"
#include "store.h"
#include "vault_internal.h"
#include "vault_sync.h"

/* Writes in `v` a signed envelope whose payload is exactly `p` (whatever it
 * holds), sealed to `v` and the organisation key unless w->recipients says
 * otherwise: what a buggy or hostile device could send. */
static void write_forged(fv_vault *v, const unsigned char pk[32], fv_v_write *w,
                         const unsigned char *p, size_t n, unsigned char id[32])
{
    unsigned char recips[2][32], sp[32];
    if (!w->recipients) {
        fv_vs_device(v, sp, recips[0]);
        memcpy(recips[1], pk, 32);
        w->recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips;
        w->nrecipients = 2;
    }
    w->payload = p;
    w->payload_len = n;
    CHECK_EQ(fv_store_begin(v->store), FV_OK);
    CHECK_EQ(fv_v_write_envelope(v, id, w), FV_OK);
    CHECK_EQ(fv_store_commit(v->store), FV_OK);
    w->recipients = NULL;
}

/* A revision payload written field by field, so that each rule can be
 * broken on its own (the library's encoder is never asked to). */
struct raw_rev {
    const char *title, *narr, *tag0, *tag1, *name;
    size_t title_len, narr_len;
    uint64_t size, chunk;
    size_t natt;
    const unsigned char *key;
};

static void raw_rev_bytes(unsigned char **p, size_t *n, const struct raw_rev *r)
{
    static const unsigned char zero[32];
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_map(&e, 7);
    fv_enc_cstr(&e, "tags");
    fv_enc_array(&e, r->tag1 ? 2 : 1);
    fv_enc_cstr(&e, r->tag0 ? r->tag0 : "t");
    if (r->tag1)
        fv_enc_cstr(&e, r->tag1);
    fv_enc_cstr(&e, "time");
    fv_enc_int(&e, 1700000000);
    fv_enc_cstr(&e, "title");
    fv_enc_text(&e, r->title ? r->title : "a title",
                r->title ? r->title_len : 7);
    fv_enc_cstr(&e, "fields");
    fv_enc_map(&e, 0);
    fv_enc_cstr(&e, "created");
    fv_enc_int(&e, 1700000000);
    fv_enc_cstr(&e, "narrative");
    fv_enc_text(&e, r->narr ? r->narr : "", r->narr ? r->narr_len : 0);
    fv_enc_cstr(&e, "attachments");
    fv_enc_array(&e, r->natt);
    for (size_t i = 0; i < r->natt; i++) {
        fv_enc_map(&e, 4);
        fv_enc_cstr(&e, "key");
        fv_enc_bytes(&e, r->key ? r->key : zero, 32);
        fv_enc_cstr(&e, "name");
        fv_enc_cstr(&e, r->name ? r->name : "photo.jpg");
        fv_enc_cstr(&e, "size");
        fv_enc_uint(&e, r->size);
        fv_enc_cstr(&e, "chunk");
        fv_enc_uint(&e, r->chunk);
    }
    CHECK_EQ(fv_enc_finish(&e, p, n), FV_OK);
}

/* A genesis revision carrying raw payload r; `counts`/`chunks` are what its
 * signed chunk lists say. */
static void write_raw_rev(fv_vault *v, const unsigned char pk[32],
                          const struct raw_rev *r, const uint64_t *counts,
                          size_t nlists, const unsigned char (*chunks)[32],
                          size_t nchunks, unsigned char id[32])
{
    unsigned char *p = NULL;
    size_t n = 0;
    fv_v_write w = {.kind = FV_ENV_REVISION,
                    .chunk_counts = counts,
                    .nattachments = nlists,
                    .chunks = chunks,
                    .nchunks = nchunks};
    raw_rev_bytes(&p, &n, r);
    write_forged(v, pk, &w, p, n, id);
    fv_enc_free_buf(p, n);
}

/* The content key of envelope `id` held by `v`, sealed to v's own key. */
static void own_key(fv_vault *v, const unsigned char id[32], unsigned char key[32])
{
    unsigned char rec[32], *bytes = NULL;
    size_t len = 0;
    int kind;
    fv_env e;
    CHECK_EQ(fv_store_env_get(v->store, id, rec, &kind, &bytes, &len, NULL), FV_OK);
    CHECK_EQ(fv_env_parse(&e, bytes, len), FV_OK);
    CHECK_EQ(fv_env_unseal(&e, v->box_pk, v->sec->box_sk, key), FV_OK);
    fv_env_clear(&e);
    free(bytes);
}

#endif
