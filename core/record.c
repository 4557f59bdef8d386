/* record.c - revision payloads (see record.h and docs/FORMAT.md). */
#include "record.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "envelope.h"

/* ---- a wiped bump arena --------------------------------------------- */

struct fv_arena {
    struct fv_arena *next;
    size_t cap;
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

static void *arena_alloc(struct fv_arena **head, size_t n)
{
    struct fv_arena *a = *head;
    const size_t align = alignof(max_align_t);
    void *p;

    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        if (cap > SIZE_MAX - sizeof *a)
            return NULL;
        a = malloc(sizeof *a + cap);
        if (!a)
            return NULL;
        a->next = *head;
        a->cap = cap;
        a->used = 0;
        *head = a;
    }
    p = a->data + a->used;
    a->used += n;
    return p;
}

static void arena_free(struct fv_arena *a)
{
    while (a) {
        struct fv_arena *next = a->next;
        fv_wipe(a->data, a->used);
        free(a);
        a = next;
    }
}

static char *arena_str(struct fv_arena **a, const char *p, size_t n)
{
    char *s = arena_alloc(a, n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* ---- text rules ----------------------------------------------------- */

static int text_ok(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max || !fv_utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

int fv_text_ok(const char *s, size_t max)
{
    return s && text_ok(s, strnlen(s, max + 1), max);
}

int fv_value_ok(const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : max + 1;
    return n <= max && fv_utf8_valid(s, n);
}

int fv_attachment_name_ok(const char *name)
{
    /* A label (no control byte, no NUL), and never a path: no separator of
     * any common system, not "." or "..". */
    return fv_text_ok(name, FV_MAX_ATTACHMENT_NAME_BYTES) &&
           !strchr(name, '/') && !strchr(name, '\\') &&
           strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int key_cmp(const char *a, const char *b)
{
    return fv_cbor_key_cmp(a, strlen(a), b, strlen(b));
}

static int field_cmp(const void *a, const void *b)
{
    return key_cmp(((const fv_field *)a)->key, ((const fv_field *)b)->key);
}

static int tag_cmp(const void *a, const void *b)
{
    return key_cmp(*(const char *const *)a, *(const char *const *)b);
}

int fv_sort_fields(fv_field *f, size_t n)
{
    qsort(f, n, sizeof *f, field_cmp);
    for (size_t i = 1; i < n; i++)
        if (field_cmp(&f[i - 1], &f[i]) == 0)
            return FV_EINVAL;
    return FV_OK;
}

void fv_sort_tags(const char **t, size_t *n)
{
    size_t i, out = 0;
    qsort(t, *n, sizeof *t, tag_cmp);
    for (i = 0; i < *n; i++)
        if (out == 0 || key_cmp(t[out - 1], t[i]) != 0)
            t[out++] = t[i];
    *n = out;
}

/* ---- payload -------------------------------------------------------- */

/* Map keys in canonical order: shorter first, then bytewise. */
static const char *const payload_keys[] = {
    "tags", "time", "title", "fields", "created", "narrative", "attachments",
};
enum { PK_TAGS, PK_TIME, PK_TITLE, PK_FIELDS, PK_CREATED, PK_NARRATIVE,
       PK_ATTACHMENTS, PK_COUNT };

static const char *const attachment_keys[] = {"key", "name", "size", "chunk",
                                              "padded"};

int fv_payload_encode(unsigned char **out, size_t *out_len, const fv_record *r,
                      const unsigned char (*keys)[FV_KEY_BYTES])
{
    return fv_payload_encode_ex(out, out_len, r, keys, NULL);
}

int fv_payload_encode_ex(unsigned char **out, size_t *out_len,
                         const fv_record *r,
                         const unsigned char (*keys)[FV_KEY_BYTES],
                         const unsigned char *padded)
{
    fv_enc e;
    size_t i;

    fv_enc_init(&e);
    fv_enc_map(&e, PK_COUNT);
    fv_enc_cstr(&e, payload_keys[PK_TAGS]);
    fv_enc_array(&e, r->ntags);
    for (i = 0; i < r->ntags; i++)
        fv_enc_cstr(&e, r->tags[i]);
    fv_enc_cstr(&e, payload_keys[PK_TIME]);
    fv_enc_int(&e, r->modified);
    fv_enc_cstr(&e, payload_keys[PK_TITLE]);
    fv_enc_cstr(&e, r->title);
    fv_enc_cstr(&e, payload_keys[PK_FIELDS]);
    fv_enc_map(&e, r->nfields);
    for (i = 0; i < r->nfields; i++) {
        fv_enc_cstr(&e, r->fields[i].key);
        fv_enc_cstr(&e, r->fields[i].value);
    }
    fv_enc_cstr(&e, payload_keys[PK_CREATED]);
    fv_enc_int(&e, r->created);
    fv_enc_cstr(&e, payload_keys[PK_NARRATIVE]);
    fv_enc_text(&e, r->narrative ? r->narrative : "", r->narrative_len);
    fv_enc_cstr(&e, payload_keys[PK_ATTACHMENTS]);
    fv_enc_array(&e, r->nattachments);
    for (i = 0; i < r->nattachments; i++) {
        const fv_attachment_info *a = &r->attachments[i];
        int pad = padded && padded[i];
        fv_enc_map(&e, pad ? 5 : 4);
        fv_enc_cstr(&e, attachment_keys[0]);
        fv_enc_bytes(&e, keys[i], FV_KEY_BYTES);
        fv_enc_cstr(&e, attachment_keys[1]);
        fv_enc_cstr(&e, a->name);
        fv_enc_cstr(&e, attachment_keys[2]);
        fv_enc_uint(&e, a->size);
        fv_enc_cstr(&e, attachment_keys[3]);
        fv_enc_uint(&e, a->chunk_bytes);
        if (pad) {
            fv_enc_cstr(&e, attachment_keys[4]);
            fv_enc_uint(&e, 1);
        }
    }
    return fv_enc_finish(&e, out, out_len);
}

/* Reads a text item into the arena as a NUL-terminated string. */
static int dec_str(fv_dec *d, struct fv_arena **a, const char **out,
                   size_t max, int allow_any)
{
    const char *p;
    size_t n;
    if (fv_dec_text(d, &p, &n))
        return FV_ECORRUPT;
    if (allow_any ? (n > max || memchr(p, 0, n) != NULL) : !text_ok(p, n, max))
        return FV_ECORRUPT;
    if (!(*out = arena_str(a, p, n)))
        return FV_ENOMEM;
    return FV_OK;
}

static int dec_fields(fv_dec *d, fv_rec *r)
{
    size_t n;
    fv_field *f;
    int rc;
    if (fv_dec_map(d, &n) || n > FV_MAX_FIELDS)
        return FV_ECORRUPT;
    f = arena_alloc(&r->arena, n * sizeof *f);
    if (!f)
        return FV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((rc = dec_str(d, &r->arena, &f[i].key, FV_MAX_FIELD_KEY_BYTES, 0)))
            return rc;
        if (i > 0 && key_cmp(f[i - 1].key, f[i].key) >= 0)
            return FV_ECORRUPT; /* unordered or duplicate key */
        if ((rc = dec_str(d, &r->arena, &f[i].value, FV_MAX_FIELD_VALUE_BYTES,
                          1)))
            return rc;
    }
    r->pub.fields = f;
    r->pub.nfields = n;
    return FV_OK;
}

static int dec_tags(fv_dec *d, fv_rec *r)
{
    size_t n;
    const char **t;
    int rc;
    if (fv_dec_array(d, &n) || n > FV_MAX_TAGS)
        return FV_ECORRUPT;
    t = arena_alloc(&r->arena, n * sizeof *t);
    if (!t)
        return FV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((rc = dec_str(d, &r->arena, &t[i], FV_MAX_TAG_BYTES, 0)))
            return rc;
        if (i > 0 && key_cmp(t[i - 1], t[i]) >= 0)
            return FV_ECORRUPT;
    }
    r->pub.tags = t;
    r->pub.ntags = n;
    return FV_OK;
}

static int dec_attachments(fv_dec *d, fv_rec *r)
{
    size_t n, m;
    fv_attachment_info *att;
    uint64_t chunk;
    int rc;

    if (fv_dec_array(d, &n) || n > FV_MAX_ATTACHMENTS)
        return FV_ECORRUPT;
    att = arena_alloc(&r->arena, n * sizeof *att);
    r->keys = arena_alloc(&r->arena, n * FV_KEY_BYTES);
    r->padded = arena_alloc(&r->arena, n ? n : 1);
    if (!att || !r->keys || !r->padded)
        return FV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t pad = 0;
        if (fv_dec_map(d, &m) || (m != 4 && m != 5) || fv_dec_key_text(d, "key") ||
            fv_dec_bytes_exact(d, r->keys[i], FV_KEY_BYTES) ||
            fv_dec_key_text(d, "name"))
            return FV_ECORRUPT;
        if ((rc = dec_str(d, &r->arena, &att[i].name,
                          FV_MAX_ATTACHMENT_NAME_BYTES, 0)))
            return rc;
        if (fv_dec_key_text(d, "size") || fv_dec_uint(d, &att[i].size) ||
            fv_dec_key_text(d, "chunk") || fv_dec_uint(d, &chunk) ||
            chunk == 0 || chunk > FV_MAX_CHUNK_BYTES)
            return FV_ECORRUPT;
        /* "padded" is there only to say 1 (FORMAT.md 8): one encoding. */
        if (m == 5 && (fv_dec_key_text(d, "padded") || fv_dec_uint(d, &pad) ||
                       pad != 1))
            return FV_ECORRUPT;
        r->padded[i] = (unsigned char)pad;
        /* Names follow the writer's rules: never a path. */
        if (!fv_attachment_name_ok(att[i].name))
            return FV_ECORRUPT;
        att[i].chunk_bytes = (uint32_t)chunk;
        att[i].chunks = att[i].size / chunk + (att[i].size % chunk != 0);
        att[i].chunks_present = 0; /* counted by the reader that holds them */
        for (size_t j = 0; j < i; j++)
            if (strcmp(att[j].name, att[i].name) == 0)
                return FV_ECORRUPT;
    }
    r->pub.attachments = att;
    r->pub.nattachments = n;
    return FV_OK;
}

int fv_payload_decode(fv_rec **out, const unsigned char *p, size_t n)
{
    struct fv_arena *arena = NULL;
    fv_rec *r;
    fv_dec d;
    size_t m;
    const char *narr;
    int rc = FV_ECORRUPT;

    *out = NULL;
    r = arena_alloc(&arena, sizeof *r);
    if (!r)
        return FV_ENOMEM;
    memset(r, 0, sizeof *r);
    r->arena = arena;
    fv_dec_init(&d, p, n);
    if (fv_dec_map(&d, &m) || m != PK_COUNT || fv_dec_key_text(&d, "tags"))
        goto fail;
    if ((rc = dec_tags(&d, r)))
        goto fail;
    rc = FV_ECORRUPT;
    if (fv_dec_key_text(&d, "time") || fv_dec_int(&d, &r->pub.modified) ||
        fv_dec_key_text(&d, "title"))
        goto fail;
    if ((rc = dec_str(&d, &r->arena, &r->pub.title, FV_MAX_TITLE_BYTES, 0)))
        goto fail;
    rc = FV_ECORRUPT;
    if (fv_dec_key_text(&d, "fields"))
        goto fail;
    if ((rc = dec_fields(&d, r)))
        goto fail;
    rc = FV_ECORRUPT;
    if (fv_dec_key_text(&d, "created") || fv_dec_int(&d, &r->pub.created) ||
        fv_dec_key_text(&d, "narrative") ||
        fv_dec_text(&d, &narr, &r->pub.narrative_len) ||
        r->pub.narrative_len > FV_MAX_NARRATIVE_BYTES)
        goto fail;
    rc = FV_ENOMEM;
    if (!(r->pub.narrative = arena_str(&r->arena, narr, r->pub.narrative_len)))
        goto fail;
    rc = FV_ECORRUPT;
    if (fv_dec_key_text(&d, "attachments"))
        goto fail;
    if ((rc = dec_attachments(&d, r)))
        goto fail;
    if (fv_dec_finish(&d)) {
        rc = FV_ECORRUPT;
        goto fail;
    }
    *out = r;
    return FV_OK;
fail:
    arena_free(r->arena);
    return rc;
}

void fv_rec_free(fv_rec *r)
{
    if (r)
        arena_free(r->arena);
}

int fv_tombstone_encode(unsigned char **out, size_t *out_len, int64_t time)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_map(&e, 1);
    fv_enc_cstr(&e, "time");
    fv_enc_int(&e, time);
    return fv_enc_finish(&e, out, out_len);
}

int fv_tombstone_decode(int64_t *time, const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t m;
    fv_dec_init(&d, p, n);
    if (fv_dec_map(&d, &m) || m != 1 || fv_dec_key_text(&d, "time") ||
        fv_dec_int(&d, time) || fv_dec_finish(&d))
        return FV_ECORRUPT;
    return FV_OK;
}

int fv_note_text_ok(const char *s, size_t len)
{
    return len >= 1 && len <= FV_MAX_NOTE_BYTES && !memchr(s, 0, len) &&
           fv_utf8_valid(s, len);
}

int fv_note_encode(unsigned char **out, size_t *out_len, const char *text,
                   size_t len, int64_t time)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_map(&e, 2);
    fv_enc_cstr(&e, "text");
    fv_enc_text(&e, text, len);
    fv_enc_cstr(&e, "time");
    fv_enc_int(&e, time);
    return fv_enc_finish(&e, out, out_len);
}

int fv_note_decode(char **text, size_t *len, int64_t *time,
                   const unsigned char *p, size_t n)
{
    fv_dec d;
    size_t m, tl = 0;
    const char *t = NULL;

    *text = NULL;
    *len = 0;
    fv_dec_init(&d, p, n);
    if (fv_dec_map(&d, &m) || m != 2 || fv_dec_key_text(&d, "text") ||
        fv_dec_text(&d, &t, &tl) || fv_dec_key_text(&d, "time") ||
        fv_dec_int(&d, time) || fv_dec_finish(&d) || !fv_note_text_ok(t, tl))
        return FV_ECORRUPT;
    if (!(*text = malloc(tl + 1)))
        return FV_ENOMEM;
    memcpy(*text, t, tl);
    (*text)[tl] = 0;
    *len = tl;
    return FV_OK;
}

int fv_state_encode(unsigned char **out, size_t *out_len, int64_t time,
                    int state)
{
    fv_enc e;
    fv_enc_init(&e);
    fv_enc_map(&e, 2);
    fv_enc_cstr(&e, "time");
    fv_enc_int(&e, time);
    fv_enc_cstr(&e, "state");
    fv_enc_uint(&e, (uint64_t)state);
    return fv_enc_finish(&e, out, out_len);
}

int fv_state_decode(int64_t *time, int *state, const unsigned char *p,
                    size_t n)
{
    fv_dec d;
    size_t m;
    uint64_t st = 0;
    fv_dec_init(&d, p, n);
    if (fv_dec_map(&d, &m) || m != 2 || fv_dec_key_text(&d, "time") ||
        fv_dec_int(&d, time) || fv_dec_key_text(&d, "state") ||
        fv_dec_uint(&d, &st) || fv_dec_finish(&d) || st > FV_STATE_ARCHIVED)
        return FV_ECORRUPT;
    *state = (int)st;
    return FV_OK;
}

int fv_payload_check_rec(const fv_env *e, const fv_rec *r)
{
    /* The signed chunk lists and the manifest must agree list for list:
     * a hash list longer or shorter than the size says would leave chunks
     * unread or ask for chunks that do not exist. */
    if (r->pub.nattachments != e->nattachments)
        return FV_ECORRUPT;
    for (size_t i = 0; i < e->nattachments; i++)
        if (r->pub.attachments[i].chunks != e->chunk_counts[i] ||
            /* version 1 knows no padded attachment (FORMAT.md 11) */
            (r->padded[i] && e->version == FV_ENV_VERSION_1))
            return FV_ECORRUPT;
    return FV_OK;
}

int fv_payload_check(const fv_env *e, const unsigned char *p, size_t n)
{
    fv_rec *r = NULL;
    char *text = NULL;
    size_t len = 0;
    int64_t t;
    int state, rc;

    switch (e->kind) {
    case FV_ENV_REVISION:
        if ((rc = fv_payload_decode(&r, p, n)) == FV_OK)
            rc = fv_payload_check_rec(e, r);
        fv_rec_free(r);
        return rc;
    case FV_ENV_TOMBSTONE:
    case FV_ENV_GRANT:
    case FV_ENV_RETRACTION: /* all three are {"time": int} */
        return fv_tombstone_decode(&t, p, n);
    case FV_ENV_NOTE:
        rc = fv_note_decode(&text, &len, &t, p, n);
        if (rc == FV_OK)
            fv_env_free_plain((unsigned char *)text, len + 1);
        return rc;
    case FV_ENV_STATE:
        return fv_state_decode(&t, &state, p, n);
    default:
        return FV_ECORRUPT;
    }
}

uint64_t fv_chunk_plain_bytes(const fv_attachment_info *a, uint64_t i)
{
    return i + 1 < a->chunks ? a->chunk_bytes
                             : a->size - i * (uint64_t)a->chunk_bytes;
}

uint64_t fv_chunk_ct_bytes(const fv_attachment_info *a, int padded,
                           uint64_t i)
{
    uint64_t plain = fv_chunk_plain_bytes(a, i);
    if (padded && i + 1 == a->chunks)
        plain = fv_chunk_padded_len(plain, a->chunk_bytes);
    return plain + FV_TAG_BYTES;
}
