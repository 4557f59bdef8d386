/* records.c - reading and writing records (fieldvault.h): the newest head
 * of a record, listing and search, history, id prefixes, and adds, edits and
 * deletes as signed envelopes. */
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
#include "fieldvault.h"
#include "record.h"
#include "store.h"
#include "textparse.h"
#include "vault_internal.h"

/* ---- reading envelopes ---------------------------------------------- */

void fv_v_env_mac(const fv_vault *v, unsigned char mac[FV_HASH_BYTES],
                  const unsigned char *bytes, size_t len)
{
    fv_hash_keyed(mac, bytes, len, v->sec->env_mac_key, FV_KEY_BYTES);
}

int fv_v_env_parse(const fv_vault *v, fv_env *e, const unsigned char *bytes,
                   size_t len, const unsigned char *mac)
{
    unsigned char want[FV_HASH_BYTES];
    unsigned flags = 0;

    /* Only this vault's key makes a MAC that matches: whoever can write
     * vault.db without the passphrase cannot vouch for bytes. A missing or
     * wrong MAC costs the full verify, nothing more. */
    if (mac) {
        fv_v_env_mac(v, want, bytes, len);
        if (fv_ct_equal(want, mac, FV_HASH_BYTES))
            flags = FV_ENV_SIG_KNOWN;
    }
    return fv_env_parse_ex(e, bytes, len, flags);
}

/* Parses a stored envelope and checks that it is what the store says it is:
 * the content address, the record it belongs to. */
int fv_v_parse_stored(fv_vault *v, fv_env *e, const fv_store_env *se)
{
    int rc;
    if (!se->bytes)
        return fv_v_err(v, FV_ENOTFOUND, "the revision was deleted");
    rc = fv_v_env_parse(v, e, se->bytes, se->len, se->mac);
    if (rc == FV_OK && (!fv_ct_equal(e->id, se->id, FV_ID_BYTES) ||
                        memcmp(e->record, se->record, FV_ID_BYTES) != 0 ||
                        e->kind != se->kind)) {
        fv_env_clear(e);
        rc = FV_ECORRUPT;
    }
    if (rc == FV_ECORRUPT)
        return fv_v_err(v, rc, "an envelope failed verification (tampered or damaged)");
    return fv_v_err(v, rc, "cannot read an envelope: %s", fv_strerror(rc));
}

struct grant_try {
    fv_vault *v;
    const fv_env *target;
    unsigned char *plain;
    size_t plain_len;
};

/* Tries one key grant for the target envelope: a grant from the target's
 * own author, sealed to a key this vault holds, whose key opens the target. */
static int grant_cb(const unsigned char *bytes, size_t len, void *payload)
{
    struct grant_try *t = payload;
    unsigned char key[FV_KEY_BYTES], *gp = NULL;
    size_t gn = 0;
    fv_env g;
    int rc;

    if (fv_env_parse(&g, bytes, len) != FV_OK)
        return 0;
    rc = FV_ENOTFOUND;
    if (g.kind == FV_ENV_GRANT &&
        memcmp(g.author, t->target->author, FV_SIGN_PK_BYTES) == 0 &&
        memcmp(g.record, t->target->record, FV_ID_BYTES) == 0 &&
        memcmp(g.parents[0], t->target->id, FV_ID_BYTES) == 0) {
        rc = fv_env_unseal(&g, t->v->box_pk, t->v->sec->box_sk, key);
        if (rc == FV_ENOTFOUND && t->v->has_org_sk)
            rc = fv_env_unseal(&g, t->v->org_pk, t->v->sec->org_sk, key);
        /* The grant's own payload is opened and checked first: a grant
         * that breaks FORMAT.md 7 is not used for anything. */
        if (rc == FV_OK && (rc = fv_env_decrypt(&g, key, &gp, &gn)) == FV_OK)
            rc = fv_payload_check(&g, gp, gn);
        fv_env_free_plain(gp, gn);
        if (rc == FV_OK)
            rc = fv_env_decrypt(t->target, key, &t->plain, &t->plain_len);
    }
    fv_wipe(key, sizeof key);
    fv_env_clear(&g);
    return rc == FV_OK; /* stop at the first grant that works */
}

int fv_v_open_payload(fv_vault *v, const fv_env *e, unsigned char **plain,
                      size_t *plain_len)
{
    struct grant_try t = {v, e, NULL, 0};
    int rc = fv_env_open(e, v->box_pk, v->sec->box_sk, plain, plain_len);

    if (rc == FV_ENOTFOUND && v->has_org_sk)
        rc = fv_env_open(e, v->org_pk, v->sec->org_sk, plain, plain_len);
    if (rc != FV_ENOTFOUND)
        return rc;
    rc = fv_store_grants(v->store, e->id, grant_cb, &t);
    if (rc < 0)
        return rc;
    if (!t.plain)
        return FV_ENOTFOUND;
    *plain = t.plain;
    *plain_len = t.plain_len;
    return FV_OK;
}

size_t fv_v_recipients(const fv_vault *v,
                       unsigned char out[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES],
                       const fv_env *extra)
{
    size_t n = 0, i, j;
    memcpy(out[n++], v->box_pk, FV_BOX_PK_BYTES);
    if (v->has_org_pk)
        memcpy(out[n++], v->org_pk, FV_BOX_PK_BYTES);
    for (i = 0; extra && i < extra->nrecipients; i++) {
        for (j = 0; j < n; j++)
            if (memcmp(out[j], extra->recipient_pk[i], FV_BOX_PK_BYTES) == 0)
                break;
        if (j == n && n < FV_ENV_MAX_RECIPIENTS)
            memcpy(out[n++], extra->recipient_pk[i], FV_BOX_PK_BYTES);
    }
    return n;
}

const char *fv_unreadable_why(int reason)
{
    switch (reason) {
    case FV_UNREADABLE_NO_KEY:
        return "sealed to no key this vault holds, and no key grant that "
               "opens it has arrived";
    case FV_UNREADABLE_NO_ORG_KEY:
        return "sealed to the organisation key, which this vault does not "
               "hold: import it with 'fieldvault org key import'";
    case FV_UNREADABLE_MALFORMED:
        return "its signed content is malformed";
    case FV_UNREADABLE_NO_GENESIS:
        return "its first revision has not arrived, and nothing held of it "
               "opens";
    default:
        return NULL;
    }
}

int fv_v_sealed_reason(const fv_vault *v, const fv_env *e)
{
    for (size_t i = 0; v->has_org_pk && !v->has_org_sk && i < e->nrecipients; i++)
        if (memcmp(e->recipient_pk[i], v->org_pk, FV_BOX_PK_BYTES) == 0)
            return FV_UNREADABLE_NO_ORG_KEY;
    return FV_UNREADABLE_NO_KEY;
}

/* A record that does not open: FV_ECORRUPT for malformed content (its
 * author wrote it badly), FV_ENOTFOUND when it is sealed elsewhere. */
static int unreadable_err(fv_vault *v, int reason)
{
    return fv_v_err(v, reason == FV_UNREADABLE_MALFORMED ? FV_ECORRUPT
                                                         : FV_ENOTFOUND,
                    "the record is not readable by this vault: %s",
                    fv_unreadable_why(reason));
}

/* Decrypts a parsed revision envelope into a record. A validly signed
 * envelope that this vault cannot open is not tampering (its author sealed
 * it elsewhere, or wrote it badly): *reason (enum fv_unreadable_reason) is
 * then set, so that a reader can name it and go on. */
static int open_revision(fv_vault *v, fv_rec **out, const fv_env *e,
                         int *reason)
{
    unsigned char *plain;
    size_t plain_len;
    fv_rec *r;
    int rc;

    *out = NULL;
    *reason = 0;
    rc = fv_v_open_payload(v, e, &plain, &plain_len);
    if (rc == FV_ENOTFOUND)
        *reason = fv_v_sealed_reason(v, e);
    else if (rc == FV_ECORRUPT)
        *reason = FV_UNREADABLE_MALFORMED; /* not under its committed key */
    else if (rc)
        return fv_v_err(v, rc, "cannot open an envelope: %s", fv_strerror(rc));
    if (*reason)
        return unreadable_err(v, *reason);
    rc = fv_payload_decode(&r, plain, plain_len);
    fv_env_free_plain(plain, plain_len);
    if (rc == FV_ENOMEM)
        return fv_v_err(v, rc, "out of memory");
    /* The envelope's signed chunk lists must match the payload's manifest. */
    if (rc == FV_OK && (rc = fv_payload_check_rec(e, r)) != FV_OK)
        fv_rec_free(r);
    if (rc) {
        *reason = FV_UNREADABLE_MALFORMED;
        return unreadable_err(v, *reason);
    }
    /* How much of each attachment this vault holds (a reader that pulled
     * the record may still be waiting for chunks). */
    for (size_t i = 0, c = 0; i < e->nattachments; i++) {
        fv_attachment_info *a = (fv_attachment_info *)&r->pub.attachments[i];
        for (uint64_t k = 0; k < e->chunk_counts[i]; k++, c++) {
            size_t len = 0;
            rc = fv_store_chunk_len(v->store, e->chunks[c], &len);
            if (rc < 0) {
                fv_rec_free(r);
                return fv_v_serr(v, rc);
            }
            /* A chunk of another size than `size` says: the author signed
             * a size that lies about the chunks it signed. */
            if (rc == 1 && len != fv_chunk_ct_bytes(a, r->padded[i], k)) {
                fv_rec_free(r);
                return fv_v_err(v, FV_ECORRUPT, "an attachment's size does not "
                                "match its chunks");
            }
            a->chunks_present += (uint64_t)rc;
        }
    }
    memcpy(r->pub.id, e->record, FV_ID_BYTES);
    memcpy(r->pub.revision, e->id, FV_ID_BYTES);
    memcpy(r->pub.author, e->author, FV_ID_BYTES);
    *out = r;
    return FV_OK;
}

void fv_v_pick_clear(struct head_pick *p)
{
    fv_rec_free(p->best);
    fv_env_clear(&p->best_env);
    free(p->best_bytes);
    p->best = NULL;
    p->best_bytes = NULL;
    p->nheads = 0;
    p->unread = 0;
}

/* Considers one head row: tombstones count as heads but are never shown. */
static int pick_consider(struct head_pick *p, const fv_store_env *se)
{
    fv_env e;
    fv_rec *r;
    int rc, reason;

    p->nheads++;
    /* Tombstones, and revisions dropped after delivery (retention), count
     * as heads but are never shown. */
    if (se->kind == FV_ENV_TOMBSTONE || !se->bytes)
        return FV_OK;
    if ((rc = fv_v_parse_stored(p->v, &e, se)))
        return rc;
    rc = open_revision(p->v, &r, &e, &reason);
    if (rc && reason) {
        /* Another head may open: this one is named only if none does. */
        if (!p->unread) {
            p->unread = reason;
            memcpy(p->unread_rev, e.id, FV_ID_BYTES);
            memcpy(p->unread_author, e.author, FV_ID_BYTES);
        }
        fv_env_clear(&e);
        return FV_OK;
    }
    if (rc) {
        fv_env_clear(&e);
        return rc;
    }
    /* Which head is shown is decided by the envelopes alone (FORMAT.md 5.4):
     * the greatest signed `modified`, ties broken by the greater envelope
     * id, never by the order the heads arrived in this vault. */
    if (p->best && (p->best->pub.modified > r->pub.modified ||
                    (p->best->pub.modified == r->pub.modified &&
                     memcmp(p->best->pub.revision, r->pub.revision, FV_ID_BYTES) > 0))) {
        fv_rec_free(r);
        fv_env_clear(&e);
        return FV_OK;
    }
    fv_rec_free(p->best);
    fv_env_clear(&p->best_env);
    free(p->best_bytes);
    p->best = r;
    p->best_env = e;
    p->best_bytes = NULL;
    if (p->want_env) {
        /* The env points into statement memory: keep its own copy. */
        fv_env_clear(&p->best_env);
        p->best_bytes = malloc(se->len);
        if (!p->best_bytes)
            return FV_ENOMEM;
        memcpy(p->best_bytes, se->bytes, se->len);
        /* A copy of the bytes verified just above (fv_v_parse_stored). */
        return fv_env_parse_ex(&p->best_env, p->best_bytes, se->len,
                               FV_ENV_SIG_KNOWN);
    }
    fv_env_clear(&p->best_env);
    return FV_OK;
}

static int pick_cb(const fv_store_env *se, void *payload)
{
    struct head_pick *p = payload;
    int rc = pick_consider(p, se);
    if (rc)
        p->rc = rc;
    return rc;
}

/* Finds the newest undeleted head of `id`. */
int fv_v_newest_head(fv_vault *v, struct head_pick *p,
                       const unsigned char id[FV_ID_BYTES], int want_env)
{
    int rc;
    memset(p, 0, sizeof *p);
    p->v = v;
    p->want_env = want_env;
    rc = fv_store_record_heads(v->store, id, pick_cb, p);
    if (rc && !p->rc)
        rc = fv_v_serr(v, rc);
    if (rc == FV_OK && !p->best && !p->nheads &&
        (rc = fv_store_retracted(v->store, id)) != 0)
        rc = rc < 0 ? fv_v_serr(v, rc)
                    : fv_v_err(v, FV_ENOTFOUND, "the record was retracted");
    if (rc == FV_OK && !p->best && p->unread)
        rc = unreadable_err(v, p->unread);
    if (rc == FV_OK && !p->best)
        rc = fv_v_err(v, FV_ENOTFOUND, p->nheads ? "the record was deleted, or dropped from this device after delivery"
                                             : "no such record");
    if (rc == FV_OK) {
        p->best->pub.nheads = p->nheads;
        rc = fv_v_record_desk(v, &p->best->pub);
    }
    if (rc) {
        /* Kept for a caller that names the record it could not open. */
        int unread = p->unread;
        size_t nheads = p->nheads;
        fv_v_pick_clear(p);
        p->unread = unread;
        p->nheads = nheads;
    }
    return rc;
}

static int record_get(fv_vault *v, fv_record **out, const unsigned char id[FV_ID_BYTES])
{
    struct head_pick p;
    int rc;
    *out = NULL;
    if ((rc = fv_v_newest_head(v, &p, id, 0)))
        return rc;
    *out = &p.best->pub;
    p.best = NULL;
    fv_v_pick_clear(&p);
    return FV_OK;
}

int fv_record_get(fv_vault *v, fv_record **out, const unsigned char id[FV_ID_BYTES])
{
    return FV_CALL(v, record_get(v, out, id));
}

static int count_cb(const fv_store_env *se, void *payload)
{
    (void)se;
    ++*(size_t *)payload;
    return 0;
}

static int record_get_revision(fv_vault *v, fv_record **out,
                               const unsigned char id[FV_ID_BYTES],
                               const unsigned char rev[FV_ID_BYTES])
{
    unsigned char rec[FV_ID_BYTES], *bytes = NULL;
    size_t len = 0, nheads = 0;
    fv_store_env se;
    fv_rec *r = NULL;
    fv_env e;
    unsigned char mac[FV_HASH_BYTES];
    int kind, rc;

    if (out)
        *out = NULL;
    if (!v || !out || !id || !rev)
        return FV_EINVAL;
    rc = fv_store_env_get(v->store, rev, rec, &kind, &bytes, &len, mac);
    if (rc == FV_OK && (memcmp(rec, id, FV_ID_BYTES) != 0 ||
                        kind != FV_ENV_REVISION))
        rc = FV_ENOTFOUND;
    if (rc == FV_ENOTFOUND) {
        free(bytes);
        /* A retraction keeps none of its record's revisions. */
        rc = fv_store_retracted(v->store, id);
        if (rc < 0)
            return fv_v_serr(v, rc);
        return fv_v_err(v, FV_ENOTFOUND, rc ? "the record was retracted"
                                            : "no such revision of the record");
    }
    if (rc)
        return fv_v_serr(v, rc);
    if (!bytes)
        return fv_v_err(v, FV_ENOTFOUND, "the revision was deleted, or dropped "
                                         "from this device after delivery");
    memset(&se, 0, sizeof se);
    se.id = rev;
    se.record = rec;
    se.kind = kind;
    se.bytes = bytes;
    se.len = len;
    se.mac = mac;
    if ((rc = fv_v_parse_stored(v, &e, &se)) == FV_OK) {
        int reason;
        rc = open_revision(v, &r, &e, &reason);
        fv_env_clear(&e);
    }
    free(bytes);
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_record_heads(v->store, id, count_cb, &nheads));
    if (rc == FV_OK) {
        r->pub.nheads = nheads;
        rc = fv_v_record_desk(v, &r->pub);
    }
    if (rc) {
        fv_rec_free(r);
        return rc;
    }
    *out = &r->pub;
    return FV_OK;
}

int fv_record_get_revision(fv_vault *v, fv_record **out,
                           const unsigned char id[FV_ID_BYTES],
                           const unsigned char rev[FV_ID_BYTES])
{
    return FV_CALL(v, record_get_revision(v, out, id, rev));
}

void fv_record_free(fv_record *r)
{
    /* fv_record is the first member of fv_rec. */
    fv_rec_free((fv_rec *)r);
}

/* ---- listing and search --------------------------------------------- */

static int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int contains(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m == 0)
        return 1;
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && ascii_lower((unsigned char)hay[i + j]) ==
                            ascii_lower((unsigned char)needle[j]))
            j++;
        if (j == m)
            return 1;
    }
    return 0;
}

static int cstr_contains(const char *s, const char *needle)
{
    return contains(s, strlen(s), needle, strlen(needle));
}

static int record_matches(const fv_record *r, const char *text)
{
    size_t i;
    if (cstr_contains(r->title, text) ||
        contains(r->narrative, r->narrative_len, text, strlen(text)))
        return 1;
    for (i = 0; i < r->nfields; i++)
        if (cstr_contains(r->fields[i].key, text) ||
            cstr_contains(r->fields[i].value, text))
            return 1;
    for (i = 0; i < r->ntags; i++)
        if (cstr_contains(r->tags[i], text))
            return 1;
    for (i = 0; i < r->nattachments; i++)
        if (cstr_contains(r->attachments[i].name, text))
            return 1;
    return 0;
}

/* The conditions of a filter that need the decrypted record. */
static int filter_matches(const fv_filter *f, const fv_record *r)
{
    size_t i;
    if (!f)
        return 1;
    if (f->state >= 0 && r->state != f->state)
        return 0;
    if (f->origin && memcmp(r->origin, f->origin, FV_ID_BYTES) != 0)
        return 0;
    if (r->created < f->since || r->created > f->until)
        return 0;
    if (f->tag) {
        for (i = 0; i < r->ntags && strcmp(r->tags[i], f->tag); i++)
            ;
        if (i == r->ntags)
            return 0;
    }
    return !f->text || record_matches(r, f->text);
}

/* The conditions that can be checked before decrypting: the review state,
 * from its index. 1: the record may pass. */
static int filter_early(fv_vault *v, const fv_filter *f,
                        const unsigned char record[FV_ID_BYTES])
{
    int64_t time;
    int state, rc;
    if (!f || f->state < 0)
        return 1;
    rc = fv_store_review_get(v->store, record, &state, &time);
    if (rc == FV_ENOTFOUND)
        state = FV_STATE_NEW;
    else if (rc)
        return rc;
    return state == f->state;
}

struct walk {
    fv_vault *v;
    const fv_filter *filter; /* NULL: every record */
    fv_record_fn fn;
    fv_unreadable_fn unreadable; /* NULL: count them in `unread` */
    void *payload;
    size_t unread;   /* records not opened, with `unreadable` NULL */
    int first_reason; /* of the first of them */
    struct head_pick pick;
    unsigned char record[FV_ID_BYTES];
    int have_record;
    int bad_record; /* the current record failed verification */
    int skip;       /* the current record fails the filter */
    size_t corrupt;
    int stop;
};

/* A record none of whose heads opens (p->unread): passed on to the
 * caller's `unreadable`, or counted. It passes the filter only where the
 * filter needs nothing from inside it (the review state is checked before,
 * from its index). Non-zero: the caller asked to stop. */
static int walk_unreadable(struct walk *w, const struct head_pick *p,
                           const unsigned char id[FV_ID_BYTES])
{
    const fv_filter *f = w->filter;
    unsigned char rec[FV_ID_BYTES];
    fv_unreadable u;
    int rc;

    if (f && (f->text || f->tag || f->origin || f->since != INT64_MIN ||
              f->until != INT64_MAX))
        return FV_OK;
    memset(&u, 0, sizeof u);
    u.reason = p->unread;
    /* A head sealed elsewhere, of a record whose genesis is not here: the
     * first revision (and what came with it) has yet to arrive. */
    if (u.reason == FV_UNREADABLE_NO_KEY) {
        rc = fv_store_env_record(w->v->store, id, rec);
        if (rc == FV_ENOTFOUND)
            u.reason = FV_UNREADABLE_NO_GENESIS;
        else if (rc)
            return fv_v_serr(w->v, rc);
    }
    if (!w->unreadable) {
        if (w->unread++ == 0)
            w->first_reason = u.reason;
        return FV_OK;
    }
    memcpy(u.id, id, FV_ID_BYTES);
    memcpy(u.revision, p->unread_rev, FV_ID_BYTES);
    memcpy(u.author, p->unread_author, FV_ID_BYTES);
    u.nheads = p->nheads;
    u.why = fv_unreadable_why(u.reason);
    return w->unreadable(&u, w->payload) ? FV_ECANCELED : FV_OK;
}

/* Emits the record gathered so far, if any, and starts over. */
static int walk_flush(struct walk *w)
{
    int rc = 0;
    if (w->bad_record)
        w->corrupt++;
    else if (!w->pick.best && w->pick.unread && !w->skip)
        rc = walk_unreadable(w, &w->pick, w->record);
    else if (w->pick.best && !w->skip) {
        w->pick.best->pub.nheads = w->pick.nheads;
        rc = fv_v_record_desk(w->v, &w->pick.best->pub);
        if (rc == FV_ECORRUPT) { /* its genesis failed verification */
            w->corrupt++;
            rc = FV_OK;
        } else if (rc == FV_OK && filter_matches(w->filter, &w->pick.best->pub))
            rc = w->fn(&w->pick.best->pub, w->payload) ? FV_ECANCELED : FV_OK;
    }
    fv_v_pick_clear(&w->pick);
    w->pick.v = w->v;
    w->bad_record = 0;
    w->skip = 0;
    return rc;
}

static int walk_cb(const fv_store_env *se, void *payload)
{
    struct walk *w = payload;
    int rc;
    if (!w->have_record || memcmp(w->record, se->record, FV_ID_BYTES) != 0) {
        if (w->have_record && (rc = walk_flush(w))) {
            w->stop = rc == FV_ECANCELED;
            return rc;
        }
        memcpy(w->record, se->record, FV_ID_BYTES);
        w->have_record = 1;
        if ((rc = filter_early(w->v, w->filter, w->record)) < 0)
            return fv_v_serr(w->v, rc);
        w->skip = !rc;
    }
    if (w->bad_record || w->skip)
        return FV_OK;
    rc = pick_consider(&w->pick, se);
    if (rc == FV_ECORRUPT) {
        w->bad_record = 1;
        return FV_OK;
    }
    return rc;
}

/* The records named by the filter's ids, in that order (each once). */
static int walk_ids(struct walk *w)
{
    const fv_filter *f = w->filter;
    for (size_t i = 0; i < f->nids; i++) {
        struct head_pick p;
        size_t j;
        int rc;
        for (j = 0; j < i && memcmp(f->ids[j], f->ids[i], FV_ID_BYTES); j++)
            ;
        if (j < i)
            continue;
        rc = fv_v_newest_head(w->v, &p, f->ids[i], 0);
        if (rc && p.unread) {
            rc = filter_early(w->v, f, f->ids[i]);
            rc = rc < 0 ? fv_v_serr(w->v, rc)
                        : rc ? walk_unreadable(w, &p, f->ids[i]) : FV_OK;
            if (rc == FV_ECANCELED)
                return fv_v_err(w->v, rc, "stopped by the caller");
            if (rc)
                return rc;
            continue;
        }
        if (rc)
            return rc;
        if (filter_matches(f, &p.best->pub) && w->fn(&p.best->pub, w->payload))
            rc = fv_v_err(w->v, FV_ECANCELED, "stopped by the caller");
        fv_v_pick_clear(&p);
        if (rc)
            return rc;
    }
    return FV_OK;
}

static int walk(fv_vault *v, const fv_filter *filter, fv_record_fn fn,
                fv_unreadable_fn unreadable, void *payload)
{
    struct walk w;
    int rc;

    memset(&w, 0, sizeof w);
    w.v = v;
    w.pick.v = v;
    w.filter = filter;
    w.fn = fn;
    w.unreadable = unreadable;
    w.payload = payload;
    if (filter && filter->nids) {
        rc = walk_ids(&w);
    } else {
        rc = fv_store_each_head(v->store, walk_cb, &w);
        if (rc == FV_OK && w.have_record) {
            rc = walk_flush(&w);
            w.stop = rc == FV_ECANCELED;
        }
        fv_v_pick_clear(&w.pick);
        if (rc == FV_ECANCELED)
            return fv_v_err(v, rc, "stopped by the caller");
        if (rc)
            return w.stop ? rc : (v->msg[0] ? rc : fv_v_serr(v, rc));
    }
    if (rc)
        return rc;
    if (w.corrupt)
        return fv_v_err(v, FV_ECORRUPT,
                    "%zu record%s failed verification (tampered or damaged) "
                    "and %s not shown",
                    w.corrupt, w.corrupt == 1 ? "" : "s",
                    w.corrupt == 1 ? "was" : "were");
    if (w.unread)
        return fv_v_err(v, FV_ENOTFOUND,
                    "%zu record%s cannot be opened by this vault and %s not "
                    "shown (%s%s)", w.unread, w.unread == 1 ? "" : "s",
                    w.unread == 1 ? "was" : "were",
                    w.unread == 1 ? "" : "the first: ",
                    fv_unreadable_why(w.first_reason));
    return FV_OK;
}

static int vault_query_ex(fv_vault *v, const fv_filter *filter, fv_record_fn fn,
                          fv_unreadable_fn unreadable, void *payload)
{
    if (!v || !fn)
        return FV_EINVAL;
    if (filter && (filter->version != FV_FILTER_VERSION ||
                   (filter->state >= 0 && !fv_state_name(filter->state)) ||
                   (filter->nids && !filter->ids)))
        return fv_v_err(v, FV_EINVAL, "invalid filter");
    return walk(v, filter, fn, unreadable, payload);
}

int fv_vault_query_ex(fv_vault *v, const fv_filter *filter, fv_record_fn fn,
                      fv_unreadable_fn unreadable, void *payload)
{
    return FV_CALL(v, vault_query_ex(v, filter, fn, unreadable, payload));
}

static int vault_query(fv_vault *v, const fv_filter *filter, fv_record_fn fn,
                       void *payload)
{
    return vault_query_ex(v, filter, fn, NULL, payload);
}

int fv_vault_query(fv_vault *v, const fv_filter *filter, fv_record_fn fn,
                   void *payload)
{
    return FV_CALL(v, vault_query(v, filter, fn, payload));
}

static int vault_list(fv_vault *v, fv_record_fn fn, void *payload)
{
    return vault_query(v, NULL, fn, payload);
}

int fv_vault_list(fv_vault *v, fv_record_fn fn, void *payload)
{
    return FV_CALL(v, vault_list(v, fn, payload));
}

static int vault_search(fv_vault *v, const char *text, fv_record_fn fn,
                        void *payload)
{
    fv_filter f = FV_FILTER_INIT;
    if (!text)
        return FV_EINVAL;
    f.text = text;
    return vault_query(v, &f, fn, payload);
}

int fv_vault_search(fv_vault *v, const char *text, fv_record_fn fn,
                    void *payload)
{
    return FV_CALL(v, vault_search(v, text, fn, payload));
}

/* ---- history -------------------------------------------------------- */

struct history {
    fv_vault *v;
    fv_revision_fn fn;
    void *payload;
    int rc;
    size_t seen;
};

static int history_cb(const fv_store_env *se, void *payload)
{
    struct history *h = payload;
    fv_revision rev;
    fv_env e;
    fv_rec *r = NULL;
    int rc;

    h->seen++;
    memset(&rev, 0, sizeof rev);
    memcpy(rev.id, se->id, FV_ID_BYTES);
    rev.kind = se->kind;
    rev.head = se->head;
    if (!se->bytes) {
        rev.purged = 1;
        return h->fn(&rev, h->payload) ? FV_ECANCELED : FV_OK;
    }
    if ((rc = fv_v_parse_stored(h->v, &e, se)))
        return h->rc = rc;
    memcpy(rev.author, e.author, FV_ID_BYTES);
    rev.parents = (const unsigned char(*)[FV_ID_BYTES])e.parents;
    rev.nparents = e.nparents;
    if (e.kind == FV_ENV_TOMBSTONE) {
        unsigned char *plain;
        size_t n;
        rc = fv_v_open_payload(h->v, &e, &plain, &n);
        if (rc == FV_OK) {
            rc = fv_tombstone_decode(&rev.time, plain, n);
            fv_env_free_plain(plain, n);
        }
        if (rc)
            rc = fv_v_err(h->v, FV_ECORRUPT, "a tombstone failed verification");
    } else {
        int reason;
        rc = open_revision(h->v, &r, &e, &reason);
        if (rc == FV_OK)
            rev.time = r->pub.modified;
        else if (reason)
            rc = FV_OK; /* listed all the same: its time (inside) is 0 */
    }
    if (rc == FV_OK && h->fn(&rev, h->payload))
        rc = FV_ECANCELED;
    fv_rec_free(r);
    fv_env_clear(&e);
    return h->rc = rc;
}

static int record_history(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                          fv_revision_fn fn, void *payload)
{
    struct history h = {v, fn, payload, FV_OK, 0};
    int rc, genesis;
    unsigned char rec[FV_ID_BYTES];
    unsigned char *bytes = NULL;
    size_t len;
    int kind;

    /* A record id is its first revision's id; an id naming a later
     * revision is no record. The first revision may not have arrived yet
     * while a later one has (a courier bundle carrying an edit): the record
     * is then known by the revisions stored under it. */
    rc = fv_store_env_get(v->store, id, rec, &kind, &bytes, &len, NULL);
    free(bytes);
    if (rc == FV_OK && memcmp(rec, id, FV_ID_BYTES))
        return fv_v_err(v, FV_ENOTFOUND, "no such record");
    if (rc && rc != FV_ENOTFOUND)
        return fv_v_serr(v, rc);
    genesis = rc == FV_OK;
    rc = fv_store_record_envs(v->store, id, history_cb, &h);
    if (rc == FV_ECANCELED)
        return fv_v_err(v, rc, "stopped by the caller");
    if (h.rc || rc)
        return h.rc ? h.rc : fv_v_serr(v, rc);
    if (!genesis && h.seen == 0) {
        rc = fv_store_retracted(v->store, id);
        if (rc < 0)
            return fv_v_serr(v, rc);
        return fv_v_err(v, FV_ENOTFOUND, rc ? "the record was retracted"
                                            : "no such record");
    }
    return FV_OK;
}

int fv_record_history(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                      fv_revision_fn fn, void *payload)
{
    return FV_CALL(v, record_history(v, id, fn, payload));
}

static int record_resolve(fv_vault *v, unsigned char out[FV_ID_BYTES],
                          const char *hex)
{
    unsigned char lo[FV_ID_BYTES], hi[FV_ID_BYTES], found[2][FV_ID_BYTES];
    size_t n, count, i;
    int rc;

    if (!hex || (n = strlen(hex)) < 4 || n > 2 * FV_ID_BYTES)
        return fv_v_err(v, FV_EINVAL, "an id is 4 to 64 hexadecimal digits");
    memset(lo, 0x00, sizeof lo);
    memset(hi, 0xff, sizeof hi);
    for (i = 0; i < n; i++) {
        int d = fv_hex_digit((unsigned char)hex[i]);
        if (d < 0)
            return fv_v_err(v, FV_EINVAL, "an id is 4 to 64 hexadecimal digits");
        if (i % 2 == 0) {
            lo[i / 2] = (unsigned char)(d << 4);
            hi[i / 2] = (unsigned char)(d << 4 | 0x0f);
        } else {
            lo[i / 2] |= (unsigned char)d;
            hi[i / 2] = (unsigned char)((hi[i / 2] & 0xf0) | d);
        }
    }
    rc = fv_store_records_between(v->store, lo, hi, found, 2, &count);
    if (rc)
        return fv_v_serr(v, rc);
    if (count == 0)
        return fv_v_err(v, FV_ENOTFOUND, "no record with id %s", hex);
    if (count > 1)
        return fv_v_err(v, FV_EAMBIGUOUS, "more than one record id starts with %s", hex);
    memcpy(out, found[0], FV_ID_BYTES);
    return FV_OK;
}

int fv_record_resolve(fv_vault *v, unsigned char out[FV_ID_BYTES],
                      const char *hex)
{
    return FV_CALL(v, record_resolve(v, out, hex));
}

int fv_v_write_envelope(fv_vault *v, unsigned char id_out[FV_ID_BYTES],
                        const fv_v_write *w)
{
    unsigned char recips[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES];
    fv_env_spec spec = {
        .kind = w->kind,
        .content_key = w->content_key,
        .record = w->record,
        .parents = w->parents,
        .nparents = w->nparents,
        .payload = w->payload,
        .payload_len = w->payload_len,
        .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips,
        .chunk_counts = w->chunk_counts,
        .nattachments = w->nattachments,
        .chunks = w->chunks,
        .sign_pk = v->sign_pk,
        .sign_sk = v->sec->sign_sk,
    };
    fv_store_env se;
    unsigned char *env = NULL, mac[FV_HASH_BYTES];
    size_t env_len;
    int rc, added;

    if (w->recipients) {
        spec.recipients = w->recipients;
        spec.nrecipients = w->nrecipients;
    } else {
        spec.nrecipients = fv_v_recipients(v, recips, w->base);
    }
    rc = fv_env_build(&env, &env_len, id_out, &spec);
    if (rc == FV_ELIMIT)
        return fv_v_err(v, rc, "the record is too large for one envelope "
                               "(at most %u bytes)", FV_ENV_MAX_BYTES);
    if (rc)
        return fv_v_err(v, rc, "cannot build the envelope: %s", fv_strerror(rc));
    memset(&se, 0, sizeof se);
    se.id = id_out;
    se.record = w->record ? w->record : id_out;
    se.kind = w->kind;
    se.bytes = env;
    se.len = env_len;
    fv_v_env_mac(v, mac, env, env_len); /* signed here, by this vault */
    se.mac = mac;
    se.own = 1;
    se.grant = w->kind == FV_ENV_GRANT;
    rc = fv_store_env_put(v->store, &se, w->parents, w->nparents, w->chunks,
                          w->nchunks, &added);
    free(env);
    return fv_v_serr(v, rc);
}

static int check_input(fv_vault *v, const fv_record_input *in, int adding)
{
    size_t i;
    if (!in || in->version != FV_RECORD_INPUT_VERSION)
        return fv_v_err(v, FV_EINVAL, "unsupported record input version");
    if ((adding || in->title) && !fv_text_ok(in->title, FV_MAX_TITLE_BYTES))
        return fv_v_err(v, FV_EINVAL, "the title must be 1 to %d bytes of UTF-8 "
                    "text without control characters", FV_MAX_TITLE_BYTES);
    if (in->narrative && (in->narrative_len > FV_MAX_NARRATIVE_BYTES))
        return fv_v_err(v, FV_ELIMIT, "the narrative is larger than %u bytes",
                    FV_MAX_NARRATIVE_BYTES);
    if (in->narrative && !fv_utf8_valid(in->narrative, in->narrative_len))
        return fv_v_err(v, FV_EINVAL, "the narrative is not valid UTF-8");
    if (in->nfields > FV_MAX_FIELDS || in->ntags > FV_MAX_TAGS ||
        in->nattachments > FV_MAX_ATTACHMENTS)
        return fv_v_err(v, FV_ELIMIT, "too many fields, tags or attachments");
    for (i = 0; i < in->nfields; i++)
        if (!fv_text_ok(in->fields[i].key, FV_MAX_FIELD_KEY_BYTES) ||
            !fv_value_ok(in->fields[i].value, FV_MAX_FIELD_VALUE_BYTES))
            return fv_v_err(v, FV_EINVAL, "field %zu: a key is 1 to %d bytes of "
                        "UTF-8 without control characters; a value is UTF-8",
                        i + 1, FV_MAX_FIELD_KEY_BYTES);
    for (i = 0; i < in->ntags; i++)
        if (!fv_text_ok(in->tags[i], FV_MAX_TAG_BYTES))
            return fv_v_err(v, FV_EINVAL, "tag %zu is not 1 to %d bytes of UTF-8 "
                        "without control characters", i + 1, FV_MAX_TAG_BYTES);
    if (adding && (in->nremove_tags || in->nremove_attachments))
        return fv_v_err(v, FV_EINVAL, "a new record has nothing to remove");
    return FV_OK;
}

/* Writes a revision of `r`: a genesis without `base`, else a child of
 * `parents` (the base's newest head for an edit, every head for a merge)
 * keeping the base's attachments `keep`. */
static int write_revision(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                          fv_record *r, const struct head_pick *base,
                          const unsigned char (*parents)[FV_ID_BYTES],
                          size_t nparents, const size_t *keep, size_t nkeep,
                          const fv_record_input *in)
{
    struct attach_out o;
    struct progress pr = {in->progress, in->progress_payload, 0, 0};
    unsigned char *plain = NULL, *ct = NULL, *payload = NULL;
    unsigned char rev[FV_ID_BYTES];
    size_t payload_len = 0, total = nkeep + in->nattachments;
    int rc;

    if (total > FV_MAX_ATTACHMENTS)
        return fv_v_err(v, FV_ELIMIT, "a record holds at most %d attachments",
                    FV_MAX_ATTACHMENTS);
    if ((rc = fv_v_attach_init(&o, total)))
        return fv_v_err(v, rc, "out of memory");
    /* Chunk buffers only when there are new attachments: locked memory is
     * costly to map, and most records have none. */
    if (in->nattachments) {
        plain = fv_secure_alloc(FV_MAX_CHUNK_BYTES);
        ct = malloc(FV_MAX_CHUNK_BYTES + FV_TAG_BYTES);
        if (!plain || !ct) {
            rc = fv_v_err(v, FV_ENOMEM, "out of memory");
            goto done;
        }
    }
    /* Kept attachments reuse their key and chunks: nothing is re-encrypted. */
    for (size_t i = 0; i < nkeep; i++) {
        const fv_env *be = &base->best_env;
        size_t first = 0;
        for (size_t j = 0; j < keep[i]; j++)
            first += (size_t)be->chunk_counts[j];
        o.info[o.n] = base->best->pub.attachments[keep[i]];
        memcpy(o.keys[o.n], base->best->keys[keep[i]], FV_KEY_BYTES);
        o.padded[o.n] = base->best->padded[keep[i]];
        o.counts[o.n] = be->chunk_counts[keep[i]];
        for (uint64_t c = 0; c < be->chunk_counts[keep[i]]; c++)
            if ((rc = fv_v_chunks_push(&o, be->chunks[first + c])))
                goto done;
        o.n++;
    }
    if ((rc = fv_store_begin(v->store))) {
        fv_v_serr(v, rc);
        goto done;
    }
    pr.total = fv_v_sources_total(in);
    for (size_t i = 0; i < in->nattachments; i++)
        if ((rc = fv_v_attach_add(v, &o, i, &in->attachments[i], &pr, plain, ct)))
            goto rollback;
    r->attachments = o.info;
    r->nattachments = o.n;
    if ((rc = fv_payload_encode_ex(&payload, &payload_len, r,
                                   (const unsigned char(*)[FV_KEY_BYTES])o.keys,
                                   o.padded))) {
        fv_v_err(v, rc, "cannot encode the record");
        goto rollback;
    }
    {
        fv_v_write w = {
            .kind = FV_ENV_REVISION,
            .record = base ? base->best->pub.id : NULL,
            .parents = base ? parents : NULL,
            .nparents = base ? nparents : 0,
            .payload = payload,
            .payload_len = payload_len,
            .base = base ? &base->best_env : NULL,
            .chunk_counts = o.counts,
            .nattachments = o.n,
            .chunks = (const unsigned char(*)[FV_HASH_BYTES])o.chunks,
            .nchunks = o.nchunks,
        };
        rc = fv_v_write_envelope(v, rev, &w);
    }
    if (rc)
        goto rollback;
    if ((rc = fv_store_commit(v->store))) {
        fv_v_serr(v, rc);
        goto rollback;
    }
    if (out_rev)
        memcpy(out_rev, rev, FV_ID_BYTES);
    goto done;
rollback:
    fv_store_rollback(v->store);
done:
    fv_enc_free_buf(payload, payload_len);
    fv_secure_free(plain);
    free(ct);
    fv_v_attach_free(&o);
    return rc;
}

static int record_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                      const fv_record_input *in)
{
    fv_record r;
    fv_field *fields = NULL;
    const char **tags = NULL;
    size_t ntags;
    int rc;

    if (!v)
        return FV_EINVAL;
    if ((rc = check_input(v, in, 1)))
        return rc;
    memset(&r, 0, sizeof r);
    fields = malloc((in->nfields ? in->nfields : 1) * sizeof *fields);
    tags = malloc((in->ntags ? in->ntags : 1) * sizeof *tags);
    if (!fields || !tags) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    if (in->nfields)
        memcpy(fields, in->fields, in->nfields * sizeof *fields);
    for (ntags = 0; ntags < in->ntags; ntags++)
        tags[ntags] = in->tags[ntags];
    if (fv_sort_fields(fields, in->nfields)) {
        rc = fv_v_err(v, FV_EINVAL, "a field key is given twice");
        goto done;
    }
    fv_sort_tags(tags, &ntags);
    r.title = in->title;
    r.narrative = in->narrative ? in->narrative : "";
    r.narrative_len = in->narrative ? in->narrative_len : 0;
    r.fields = fields;
    r.nfields = in->nfields;
    r.tags = tags;
    r.ntags = ntags;
    r.created = r.modified = fv_v_now();
    rc = write_revision(v, out_id, &r, NULL, NULL, 0, NULL, 0, in);
done:
    free(fields);
    free(tags);
    return rc;
}

int fv_record_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                  const fv_record_input *in)
{
    return FV_CALL(v, record_add(v, out_id, in));
}

struct head_ids {
    unsigned char ids[FV_ENV_MAX_PARENTS][FV_ID_BYTES];
    size_t n;
    int live; /* heads that are not tombstones */
};

static int head_ids_cb(const fv_store_env *se, void *payload)
{
    struct head_ids *h = payload;
    if (h->n == FV_ENV_MAX_PARENTS)
        return FV_ELIMIT;
    memcpy(h->ids[h->n++], se->id, FV_ID_BYTES);
    if (se->kind != FV_ENV_TOMBSTONE)
        h->live++;
    return FV_OK;
}

/* An edit (a child of the newest head) or, with `merge`, a merge (a child
 * of every head): the newest head's content with the changes in `in`. */
static int edit_record(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                       const unsigned char id[FV_ID_BYTES],
                       const fv_record_input *in, int merge)
{
    struct head_pick base;
    struct head_ids heads;
    const fv_record *b;
    fv_record r;
    fv_field *fields = NULL;
    const char **tags = NULL;
    size_t nfields = 0, ntags = 0, nkeep = 0, i, j;
    size_t keep[FV_MAX_ATTACHMENTS];
    int rc;

    if (!v)
        return FV_EINVAL;
    if ((rc = check_input(v, in, 0)))
        return rc;
    if ((rc = fv_v_newest_head(v, &base, id, 1)))
        return rc;
    b = &base.best->pub;
    memset(&heads, 0, sizeof heads);
    if (merge && (rc = fv_store_record_heads(v->store, id, head_ids_cb, &heads))) {
        rc = rc == FV_ELIMIT ? fv_v_err(v, rc, "a merge joins at most %d heads",
                                        FV_ENV_MAX_PARENTS)
                             : fv_v_serr(v, rc);
        fv_v_pick_clear(&base);
        return rc;
    }
    if (!merge || heads.n == 0) {
        memcpy(heads.ids[0], b->revision, FV_ID_BYTES);
        heads.n = 1;
    }
    fields = malloc((b->nfields + in->nfields + 1) * sizeof *fields);
    tags = malloc((b->ntags + in->ntags + 1) * sizeof *tags);
    if (!fields || !tags) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    /* Fields: the base's, then each given one set (or removed if empty). */
    for (i = 0; i < b->nfields; i++)
        fields[nfields++] = b->fields[i];
    for (i = 0; i < in->nfields; i++) {
        for (j = 0; j < nfields && strcmp(fields[j].key, in->fields[i].key); j++)
            ;
        if (j == nfields && in->fields[i].value[0])
            fields[nfields++] = in->fields[i];
        else if (j < nfields && in->fields[i].value[0])
            fields[j].value = in->fields[i].value;
        else if (j < nfields)
            fields[j] = fields[--nfields];
    }
    if (nfields > FV_MAX_FIELDS) {
        rc = fv_v_err(v, FV_ELIMIT, "a record holds at most %d fields", FV_MAX_FIELDS);
        goto done;
    }
    fv_sort_fields(fields, nfields);
    /* Tags: the base's plus the added, less the removed. */
    for (i = 0; i < b->ntags; i++)
        tags[ntags++] = b->tags[i];
    for (i = 0; i < in->ntags; i++)
        tags[ntags++] = in->tags[i];
    for (i = 0; i < in->nremove_tags; i++)
        for (j = 0; j < ntags;)
            if (in->remove_tags[i] && strcmp(tags[j], in->remove_tags[i]) == 0)
                tags[j] = tags[--ntags];
            else
                j++;
    fv_sort_tags(tags, &ntags);
    if (ntags > FV_MAX_TAGS) {
        rc = fv_v_err(v, FV_ELIMIT, "a record holds at most %d tags", FV_MAX_TAGS);
        goto done;
    }
    /* Attachments: keep all but the removed ones, which must exist. */
    for (i = 0; i < in->nremove_attachments; i++) {
        for (j = 0; j < b->nattachments; j++)
            if (in->remove_attachments[i] &&
                strcmp(b->attachments[j].name, in->remove_attachments[i]) == 0)
                break;
        if (j == b->nattachments) {
            rc = fv_v_err(v, FV_ENOTFOUND, "the record has no attachment of that name");
            goto done;
        }
    }
    for (j = 0; j < b->nattachments; j++) {
        for (i = 0; i < in->nremove_attachments; i++)
            if (in->remove_attachments[i] &&
                strcmp(b->attachments[j].name, in->remove_attachments[i]) == 0)
                break;
        if (i == in->nremove_attachments)
            keep[nkeep++] = j;
    }
    r = *b;
    if (in->title)
        r.title = in->title;
    if (in->narrative) {
        r.narrative = in->narrative;
        r.narrative_len = in->narrative_len;
    }
    r.fields = fields;
    r.nfields = nfields;
    r.tags = tags;
    r.ntags = ntags;
    r.modified = fv_v_now();
    /* A revision's time never goes backwards from its parent's. */
    if (r.modified < b->modified)
        r.modified = b->modified;
    rc = write_revision(v, out_rev, &r, &base,
                        (const unsigned char(*)[FV_ID_BYTES])heads.ids, heads.n,
                        keep, nkeep, in);
done:
    free(fields);
    free(tags);
    fv_v_pick_clear(&base);
    return rc;
}

static int record_edit(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                       const unsigned char id[FV_ID_BYTES],
                       const fv_record_input *in)
{
    return edit_record(v, out_rev, id, in, 0);
}

int fv_record_edit(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                   const unsigned char id[FV_ID_BYTES],
                   const fv_record_input *in)
{
    return FV_CALL(v, record_edit(v, out_rev, id, in));
}

static int record_merge(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                        const unsigned char id[FV_ID_BYTES],
                        const fv_record_input *in)
{
    return edit_record(v, out_rev, id, in, 1);
}

int fv_record_merge(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                    const unsigned char id[FV_ID_BYTES],
                    const fv_record_input *in)
{
    return FV_CALL(v, record_merge(v, out_rev, id, in));
}

static int record_delete(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    struct head_ids heads;
    unsigned char *payload = NULL, tomb[FV_ID_BYTES];
    size_t payload_len = 0;
    int rc;

    if (!v)
        return FV_EINVAL;
    memset(&heads, 0, sizeof heads);
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    rc = fv_store_record_heads(v->store, id, head_ids_cb, &heads);
    if (rc) {
        fv_v_serr(v, rc);
        goto rollback;
    }
    if (heads.live == 0) {
        rc = fv_v_err(v, FV_ENOTFOUND, heads.n ? "the record was already deleted"
                                           : "no such record");
        goto rollback;
    }
    if ((rc = fv_tombstone_encode(&payload, &payload_len, fv_v_now()))) {
        fv_v_err(v, rc, "out of memory");
        goto rollback;
    }
    {
        fv_v_write w = {
            .kind = FV_ENV_TOMBSTONE,
            .record = id,
            .parents = (const unsigned char(*)[FV_ID_BYTES])heads.ids,
            .nparents = heads.n,
            .payload = payload,
            .payload_len = payload_len,
        };
        rc = fv_v_write_envelope(v, tomb, &w);
    }
    if (rc)
        goto rollback;
    /* Crypto-shred locally: every revision's ciphertext and sealed keys go,
     * and with them the record's attachments. */
    if ((rc = fv_store_purge_record(v->store, id, tomb)) ||
        (rc = fv_store_commit(v->store))) {
        fv_v_serr(v, rc);
        goto rollback;
    }
    fv_enc_free_buf(payload, payload_len);
    return fv_v_serr(v, fv_store_checkpoint(v->store));
rollback:
    fv_store_rollback(v->store);
    fv_enc_free_buf(payload, payload_len);
    return rc;
}

int fv_record_delete(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    return FV_CALL(v, record_delete(v, id));
}

