/* desk_api.c - the desk's JSON API (desk.h): every answer is a call of the
 * public API written by the one JSON writer (cli/json_record.h). The list
 * is served from an index of record summaries built on the first listing
 * (decrypting 100,000 records takes seconds; sorting and paging them in
 * memory takes milliseconds), kept up to date by the desk's own changes
 * and rebuilt after a sync. */
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "cli.h"
#include "desk.h"
#include "fieldvault_sync.h"
#include "json_record.h"
#include "report.h"

#define JSON_TYPE "application/json; charset=utf-8"
#define PAGE_MAX 500

/* ---- the index -------------------------------------------------------- */

struct entry {
    json_summary s; /* title and tags point into the copies below */
    char *title;
    char **tags;
    int readable;
    fv_unreadable u; /* when not readable; u.why is static */
};

struct desk_index {
    struct entry *e;
    size_t n, cap;
    int oom;
    atomic_int *stop; /* the desk is locking: the walk ends */
    int failed; /* records that failed verification, or none: 0 */
};

static void entry_clear(struct entry *e)
{
    if (e->title) {
        fv_wipe(e->title, strlen(e->title));
        free(e->title);
    }
    for (size_t i = 0; e->tags && i < e->s.ntags; i++) {
        fv_wipe(e->tags[i], strlen(e->tags[i]));
        free(e->tags[i]);
    }
    free(e->tags);
    memset(e, 0, sizeof *e);
}

static char *dup_text(const char *s)
{
    size_t n = strlen(s ? s : "");
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, s ? s : "", n + 1);
    return p;
}

/* Copies what the list shows of `r` into `e`. 0, or -1 out of memory. */
static int entry_fill(struct entry *e, const fv_record *r)
{
    memset(e, 0, sizeof *e);
    json_summary_from_record(&e->s, r);
    e->readable = 1;
    e->title = dup_text(r->title);
    e->tags = calloc(r->ntags ? r->ntags : 1, sizeof *e->tags);
    if (!e->title || !e->tags)
        goto oom;
    for (size_t i = 0; i < r->ntags; i++, e->s.ntags = i)
        if ((e->tags[i] = dup_text(r->tags[i])) == NULL)
            goto oom;
    e->s.ntags = r->ntags;
    e->s.title = e->title;
    e->s.tags = (const char *const *)e->tags;
    return 0;
oom:
    entry_clear(e);
    return -1;
}

static struct entry *index_slot(struct desk_index *x)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 256;
        struct entry *e = realloc(x->e, cap * sizeof *e);
        if (e == NULL) {
            x->oom = 1;
            return NULL;
        }
        x->e = e;
        x->cap = cap;
    }
    return &x->e[x->n];
}

static int index_add(const fv_record *r, void *payload)
{
    struct desk_index *x = payload;
    if (atomic_load(x->stop))
        return 1;
    struct entry *e = index_slot(x);
    if (e == NULL || entry_fill(e, r) != 0) {
        x->oom = 1;
        return 1;
    }
    x->n++;
    return 0;
}

static int index_add_unreadable(const fv_unreadable *u, void *payload)
{
    struct desk_index *x = payload;
    struct entry *e = index_slot(x);
    if (e == NULL)
        return 1;
    memset(e, 0, sizeof *e);
    e->u = *u;
    e->u.why = fv_unreadable_why(u->reason);
    if (e->u.why == NULL)
        e->u.why = "cannot be opened here";
    memcpy(e->s.id, u->id, FV_ID_BYTES);
    x->n++;
    return 0;
}

static void index_free(struct desk_index *x)
{
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->n; i++)
        entry_clear(&x->e[i]);
    free(x->e);
    free(x);
}

void desk_api_clear(desk *d)
{
    index_free(d->index);
    d->index = NULL;
    report_devices_free(d->names);
    d->names = NULL;
}

/* FV_OK with d->index built, or the walk's failure. */
static int index_get(desk *d, struct desk_index **out)
{
    if (d->index == NULL) {
        struct desk_index *x = calloc(1, sizeof *x);
        if (x == NULL)
            return FV_ENOMEM;
        x->stop = &d->locked;
        int rc = fv_vault_query_ex(d->v, NULL, index_add, index_add_unreadable, x);
        if (x->oom || (rc != FV_OK && rc != FV_ECORRUPT && rc != FV_ENOTFOUND)) {
            int oom = x->oom;
            index_free(x);
            return oom ? FV_ENOMEM : rc;
        }
        x->failed = rc == FV_ECORRUPT;
        d->index = x;
    }
    *out = d->index;
    return FV_OK;
}

static struct entry *index_find(struct desk_index *x,
                                const unsigned char id[FV_ID_BYTES])
{
    for (size_t i = 0; x && i < x->n; i++)
        if (memcmp(x->e[i].s.id, id, FV_ID_BYTES) == 0)
            return &x->e[i];
    return NULL;
}

/* After the desk changed record `id`: its entry read again (or dropped
 * when it is gone). */
static void index_refresh(desk *d, const unsigned char id[FV_ID_BYTES])
{
    struct desk_index *x = d->index;
    struct entry *e = index_find(x, id);
    fv_record *r = NULL;
    if (x == NULL)
        return;
    if (fv_record_get(d->v, &r, id) != FV_OK) {
        if (e) {
            entry_clear(e);
            memmove(e, e + 1, (size_t)(x->e + x->n - (e + 1)) * sizeof *e);
            x->n--;
        }
        return;
    }
    struct entry ne;
    if (entry_fill(&ne, r) == 0) {
        if (e) {
            entry_clear(e);
            *e = ne;
        } else if ((e = index_slot(x)) != NULL) {
            *e = ne;
            x->n++;
        } else {
            entry_clear(&ne);
        }
    }
    fv_record_free(r);
}

void desk_api_warm(desk *d)
{
    struct desk_index *x;
    pthread_mutex_lock(&d->lock);
    if (d->v && !atomic_load(&d->locked)) {
        desk_names_refresh(d);
        if (!atomic_load(&d->locked))
            (void)index_get(d, &x); /* a failure is told to the first listing */
    }
    pthread_mutex_unlock(&d->lock);
}

/* ---- device names ------------------------------------------------------ */

void desk_names_refresh(desk *d)
{
    report_devices *t;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    so.timeout_ms = 5000;
    if (d->v == NULL || (t = report_devices_fetch(d->v, &so)) == NULL)
        return;
    report_devices_free(d->names);
    d->names = t;
}

static const char *name_of(const desk *d, const unsigned char id[FV_ID_BYTES])
{
    return report_device_name(d->names, id);
}

/* "names": {"HEX": "name", ...}: every device name known, for the page to
 * show beside ids. */
static void names_json(FILE *o, const desk *d)
{
    json_key(o, "names");
    fputc('{', o);
    for (size_t i = 0; d->names && i < d->names->n; i++) {
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, d->names->d[i].id);
        fputs(i ? ", " : "", o);
        json_key(o, hex);
        json_strz(o, d->names->d[i].name);
    }
    fputc('}', o);
}

/* ---- helpers ------------------------------------------------------------ */

static unsigned http_status(int rc)
{
    switch (rc) {
    case FV_EINVAL: case FV_ELIMIT: return MHD_HTTP_BAD_REQUEST;
    case FV_ENOTFOUND: case FV_EAMBIGUOUS: return MHD_HTTP_NOT_FOUND;
    case FV_EDENIED: return MHD_HTTP_FORBIDDEN;
    case FV_EEXIST: case FV_EBUSY: case FV_EINCOMPLETE: return MHD_HTTP_CONFLICT;
    case FV_ENET: case FV_ETLS: case FV_EEOF: case FV_EPIN: case FV_EPROTO:
    case FV_ESERVER: case FV_EPROXY: case FV_EINVITE:
        return MHD_HTTP_BAD_GATEWAY;
    case FV_ECORRUPT: return MHD_HTTP_UNPROCESSABLE_CONTENT;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

static int fail(desk *d, desk_req *r, int rc)
{
    return desk_error(r->conn, http_status(rc),
                      d->v ? fv_vault_errmsg(d->v) : fv_strerror(rc));
}

static const char *arg(desk_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

/* The record named by `hex` (a full id or a unique prefix). */
static int record_id(desk *d, const char *hex, unsigned char id[FV_ID_BYTES])
{
    if (hex == NULL || *hex == '\0')
        return FV_EINVAL;
    return fv_record_resolve(d->v, id, hex);
}

static int ok_json(desk_req *r, desk_out *o)
{
    return desk_send(r->conn, MHD_HTTP_OK, JSON_TYPE, o);
}

/* ---- GET /api/session ------------------------------------------------------ */

static int api_session(desk *d, desk_req *r)
{
    desk_out o;
    char hex[FV_ID_HEX_BYTES];
    if (desk_open_out(&o))
        return MHD_NO;
    fv_id_to_hex(hex, d->device);
    fputc('{', o.f);
    json_key(o.f, "csrf");
    json_strz(o.f, d->csrf);
    fputs(", ", o.f);
    json_key(o.f, "device");
    json_strz(o.f, hex);
    fputs(", ", o.f);
    json_key(o.f, "version");
    json_strz(o.f, fv_version());
    fputs(", ", o.f);
    json_key(o.f, "idle");
    fprintf(o.f, "%d, ", d->idle_seconds);
    json_key(o.f, "names_known");
    fputs(d->names && d->names->fetched ? "true, " : "false, ", o.f);
    names_json(o.f, d);
    fputs("}\n", o.f);
    return ok_json(r, &o);
}

/* ---- GET /api/records ----------------------------------------------------- */

enum { SORT_CREATED, SORT_MODIFIED, SORT_TITLE, SORT_STATE };
static _Thread_local int sort_key, sort_desc;

static int cmp_entry(const void *pa, const void *pb)
{
    const struct entry *a = *(const struct entry *const *)pa;
    const struct entry *b = *(const struct entry *const *)pb;
    int c = 0;
    if (a->readable != b->readable)
        return a->readable ? -1 : 1; /* unreadable ones last */
    switch (sort_key) {
    case SORT_MODIFIED:
        c = (a->s.modified > b->s.modified) - (a->s.modified < b->s.modified);
        break;
    case SORT_TITLE:
        c = strcmp(a->title ? a->title : "", b->title ? b->title : "");
        break;
    case SORT_STATE:
        c = (a->s.state > b->s.state) - (a->s.state < b->s.state);
        break;
    }
    if (c == 0)
        c = (a->s.created > b->s.created) - (a->s.created < b->s.created);
    if (c == 0)
        c = memcmp(a->s.id, b->s.id, FV_ID_BYTES);
    return sort_desc ? -c : c;
}

/* The ids of the records whose text contains `q` (and pass the filter),
 * sorted for bsearch. */
typedef struct idset {
    unsigned char (*ids)[FV_ID_BYTES];
    size_t n, cap;
    int oom;
} idset;

static int idset_add(const fv_record *rec, void *payload)
{
    idset *s = payload;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        void *p = realloc(s->ids, cap * FV_ID_BYTES);
        if (p == NULL) {
            s->oom = 1;
            return 1;
        }
        s->ids = p;
        s->cap = cap;
    }
    memcpy(s->ids[s->n++], rec->id, FV_ID_BYTES);
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, FV_ID_BYTES);
}

static int has_tag(const struct entry *e, const char *tag)
{
    for (size_t i = 0; i < e->s.ntags; i++)
        if (strcmp(e->tags[i], tag) == 0)
            return 1;
    return 0;
}

static int api_records(desk *d, desk_req *r)
{
    const char *state_s = arg(r, "state"), *tag = arg(r, "tag"),
               *device_s = arg(r, "device"), *since_s = arg(r, "since"),
               *until_s = arg(r, "until"), *q = arg(r, "q"),
               *sort_s = arg(r, "sort"), *order_s = arg(r, "order"),
               *offset_s = arg(r, "offset"), *limit_s = arg(r, "limit");
    int state = -1, offset = 0, limit = 50;
    int64_t since = 0, until = 0;
    unsigned char device[FV_ID_BYTES];
    int by_device = 0, filtered = 0;
    struct desk_index *x;
    idset found = {0};
    struct entry **sel = NULL;
    size_t nsel = 0;
    desk_out o = {0};
    int rc;

    if (state_s && *state_s) {
        if (fv_state_parse(state_s, &state) != FV_OK)
            return desk_error(r->conn, 400, "unknown state");
        filtered = 1;
    }
    if (tag && !*tag)
        tag = NULL;
    if (q && !*q)
        q = NULL;
    if (device_s && *device_s) {
        if (cli_parse_device_id(device_s, device) != 0)
            return desk_error(r->conn, 400, "device: 64 hex digits");
        by_device = 1;
    }
    if ((since_s && *since_s && cli_parse_time(since_s, 0, &since) != 0) ||
        (until_s && *until_s && cli_parse_time(until_s, 1, &until) != 0))
        return desk_error(r->conn, 400, "dates: YYYY-MM-DD");
    if ((offset_s && cli_parse_int(offset_s, &offset) != 0) ||
        (limit_s && (cli_parse_int(limit_s, &limit) != 0 || limit < 1)))
        return desk_error(r->conn, 400, "offset, limit: numbers");
    if (limit > PAGE_MAX)
        limit = PAGE_MAX;
    sort_key = SORT_CREATED;
    if (sort_s && strcmp(sort_s, "modified") == 0)
        sort_key = SORT_MODIFIED;
    else if (sort_s && strcmp(sort_s, "title") == 0)
        sort_key = SORT_TITLE;
    else if (sort_s && strcmp(sort_s, "state") == 0)
        sort_key = SORT_STATE;
    sort_desc = !(order_s && strcmp(order_s, "asc") == 0);
    filtered |= tag || q || by_device || since || until;

    if ((rc = index_get(d, &x)) != FV_OK)
        return fail(d, r, rc);
    if (q) {
        /* Full text: the core's search (narratives are not in the index). */
        fv_filter f = FV_FILTER_INIT;
        f.text = q;
        rc = fv_vault_query(d->v, &f, idset_add, &found);
        if (found.oom || (rc != FV_OK && rc != FV_ECORRUPT && rc != FV_ENOTFOUND)) {
            free(found.ids);
            return fail(d, r, found.oom ? FV_ENOMEM : rc);
        }
        if (found.n)
            qsort(found.ids, found.n, FV_ID_BYTES, cmp_id);
    }
    sel = malloc((x->n ? x->n : 1) * sizeof *sel);
    if (sel == NULL) {
        free(found.ids);
        return fail(d, r, FV_ENOMEM);
    }
    for (size_t i = 0; i < x->n; i++) {
        struct entry *e = &x->e[i];
        if (!e->readable) {
            /* Only what is known without opening it: no filter at all. */
            if (filtered)
                continue;
        } else {
            if (state >= 0 && e->s.state != state)
                continue;
            if (tag && !has_tag(e, tag))
                continue;
            if (by_device && (!e->s.origin_known ||
                              memcmp(e->s.origin, device, FV_ID_BYTES) != 0))
                continue;
            if (since && e->s.created < since)
                continue;
            if (until && e->s.created > until)
                continue;
            if (q && (found.n == 0 ||
                      !bsearch(e->s.id, found.ids, found.n, FV_ID_BYTES, cmp_id)))
                continue;
        }
        sel[nsel++] = e;
    }
    if (nsel)
        qsort(sel, nsel, sizeof *sel, cmp_entry);

    if (desk_open_out(&o)) {
        free(sel);
        free(found.ids);
        return MHD_NO;
    }
    fputc('{', o.f);
    json_key(o.f, "total");
    fprintf(o.f, "%zu, ", nsel);
    json_key(o.f, "all");
    fprintf(o.f, "%zu, ", x->n);
    json_key(o.f, "offset");
    fprintf(o.f, "%d, ", offset);
    json_key(o.f, "limit");
    fprintf(o.f, "%d, ", limit);
    json_key(o.f, "failed_verification");
    fputs(x->failed ? "true, " : "false, ", o.f);
    json_key(o.f, "records");
    fputc('[', o.f);
    for (size_t i = (size_t)offset, k = 0; i < nsel && k < (size_t)limit; i++, k++) {
        struct entry *e = sel[i];
        fputs(k ? ",\n" : "\n", o.f);
        if (!e->readable) {
            json_unreadable_write(o.f, &e->u);
            continue;
        }
        e->s.with_name = 1;
        e->s.author_name = e->s.origin_known ? name_of(d, e->s.origin) : NULL;
        json_summary_write(o.f, &e->s);
    }
    fputs("]}\n", o.f);
    free(sel);
    free(found.ids);
    return ok_json(r, &o);
}

/* ---- GET /api/facets: what the filters offer ------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int api_facets(desk *d, desk_req *r)
{
    struct desk_index *x;
    const char **tags = NULL;
    size_t ntags = 0, cap = 0;
    desk_out o;
    int rc = index_get(d, &x);
    if (rc != FV_OK)
        return fail(d, r, rc);
    for (size_t i = 0; i < x->n; i++)
        for (size_t k = 0; k < x->e[i].s.ntags; k++) {
            const char **t = cli_grow(tags, &cap, ntags, sizeof *tags, 64);
            if (t == NULL) {
                free(tags);
                return fail(d, r, FV_ENOMEM);
            }
            tags = t;
            tags[ntags++] = x->e[i].tags[k];
        }
    if (ntags)
        qsort(tags, ntags, sizeof *tags, cmp_str);
    if (desk_open_out(&o)) {
        free(tags);
        return MHD_NO;
    }
    fputc('{', o.f);
    json_key(o.f, "tags");
    fputc('[', o.f);
    for (size_t i = 0, k = 0; i < ntags; i++) {
        if (i && strcmp(tags[i], tags[i - 1]) == 0)
            continue;
        fputs(k++ ? ", " : "", o.f);
        json_strz(o.f, tags[i]);
    }
    fputs("], ", o.f);
    json_key(o.f, "authors");
    fputc('[', o.f);
    /* The creating devices present, named where the server said. */
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++) {
        const struct entry *e = &x->e[i];
        if (!e->readable || !e->s.origin_known)
            continue;
        size_t j = 0;
        for (; j < i; j++)
            if (x->e[j].readable && x->e[j].s.origin_known &&
                memcmp(x->e[j].s.origin, e->s.origin, FV_ID_BYTES) == 0)
                break;
        if (j < i)
            continue;
        fputs(k++ ? ", " : "", o.f);
        fputc('{', o.f);
        json_key(o.f, "id");
        json_id(o.f, e->s.origin);
        fputs(", ", o.f);
        json_key(o.f, "name");
        json_strz(o.f, name_of(d, e->s.origin));
        fputc('}', o.f);
    }
    fputs("]}\n", o.f);
    free(tags);
    return ok_json(r, &o);
}

/* ---- GET /api/record ------------------------------------------------------ */

struct rev {
    unsigned char id[FV_ID_BYTES];
    unsigned char author[FV_ID_BYTES];
    int kind;
    int64_t time;
    int head;
    int purged;
    size_t nparents;
    unsigned char (*parents)[FV_ID_BYTES];
};

struct revs {
    struct rev *r;
    size_t n, cap;
    int oom;
};

static int collect_rev(const fv_revision *rv, void *payload)
{
    struct revs *h = payload;
    struct rev *nr = cli_grow(h->r, &h->cap, h->n, sizeof *nr, 8);
    if (nr == NULL) {
        h->oom = 1;
        return 1;
    }
    h->r = nr;
    nr = &h->r[h->n];
    memset(nr, 0, sizeof *nr);
    memcpy(nr->id, rv->id, FV_ID_BYTES);
    memcpy(nr->author, rv->author, FV_ID_BYTES);
    nr->kind = rv->kind;
    nr->time = rv->time;
    nr->head = rv->head;
    nr->purged = rv->purged;
    if (rv->nparents) {
        nr->parents = malloc(rv->nparents * FV_ID_BYTES);
        if (nr->parents == NULL) {
            h->oom = 1;
            return 1;
        }
        memcpy(nr->parents, rv->parents, rv->nparents * FV_ID_BYTES);
        nr->nparents = rv->nparents;
    }
    h->n++;
    return 0;
}

static void revs_free(struct revs *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->r[i].parents);
    free(h->r);
}

struct notes_out {
    FILE *f;
    size_t n;
};

static int write_note(const fv_note *n, void *payload)
{
    struct notes_out *no = payload;
    fputs(no->n++ ? ",\n" : "\n", no->f);
    json_note_write(no->f, n->id, n->record, n->author, n->time, n->text,
                    strlen(n->text));
    return 0;
}

static int api_record(desk *d, desk_req *r)
{
    unsigned char id[FV_ID_BYTES];
    fv_record *rec = NULL;
    struct revs h = {0};
    desk_out o = {0};
    int delivered = 0, rc;

    if ((rc = record_id(d, arg(r, "id"), id)) != FV_OK)
        return fail(d, r, rc);
    if ((rc = fv_record_get(d->v, &rec, id)) != FV_OK)
        return fail(d, r, rc);
    rc = fv_record_history(d->v, id, collect_rev, &h);
    if (h.oom || rc != FV_OK) {
        fv_record_free(rec);
        revs_free(&h);
        return fail(d, r, h.oom ? FV_ENOMEM : rc);
    }
    if (fv_record_delivered(d->v, id, &delivered) != FV_OK)
        delivered = 0;
    if (desk_open_out(&o)) {
        fv_record_free(rec);
        revs_free(&h);
        return MHD_NO;
    }
    fputs("{\n", o.f);
    json_record_members(o.f, rec, "  ", 1);
    fputs("  ", o.f);
    json_key(o.f, "revisions");
    fputc('[', o.f);
    for (size_t i = 0; i < h.n; i++) {
        fputs(i ? ",\n    " : "\n    ", o.f);
        json_revision_write(o.f, h.r[i].id, h.r[i].kind, h.r[i].time,
                            h.r[i].author,
                            (const unsigned char(*)[FV_ID_BYTES])h.r[i].parents,
                            h.r[i].nparents, h.r[i].head);
    }
    fputs("],\n  ", o.f);
    json_key(o.f, "heads");
    fputc('[', o.f);
    size_t nh = 0;
    for (size_t i = 0; i < h.n; i++)
        if (h.r[i].head) {
            fputs(nh++ ? ", " : "", o.f);
            json_id(o.f, h.r[i].id);
        }
    fputs("],\n  ", o.f);
    json_key(o.f, "head_records");
    fputc('[', o.f);
    nh = 0;
    for (size_t i = 0; i < h.n; i++) {
        fv_record *hr = NULL;
        if (!h.r[i].head || h.r[i].kind != FV_REVISION ||
            fv_record_get_revision(d->v, &hr, id, h.r[i].id) != FV_OK)
            continue;
        fputs(nh++ ? ",\n    {\n" : "\n    {\n", o.f);
        json_record_members(o.f, hr, "      ", 0);
        fputs("    }", o.f);
        fv_record_free(hr);
    }
    fputs("],\n  ", o.f);
    json_key(o.f, "notes");
    fputc('[', o.f);
    struct notes_out no = {o.f, 0};
    rc = fv_notes_list(d->v, id, write_note, &no);
    fputs("],\n  ", o.f);
    json_key(o.f, "delivered");
    fputs(delivered ? "true,\n  " : "false,\n  ", o.f);
    json_key(o.f, "author_name");
    json_strz(o.f, name_of(d, rec->origin));
    fputs(",\n  ", o.f);
    json_key(o.f, "notes_count");
    fprintf(o.f, "%zu,\n  ", rec->nnotes);
    json_key(o.f, "conflict");
    fputs(rec->nheads > 1 ? "true,\n  " : "false,\n  ", o.f);
    names_json(o.f, d);
    fputs("\n}\n", o.f);
    fv_record_free(rec);
    revs_free(&h);
    if (rc != FV_OK) {
        desk_discard(&o);
        return fail(d, r, rc);
    }
    return ok_json(r, &o);
}

/* ---- GET /api/attachment: bytes as the player asks, by HTTP range ---------- */

struct att_stream {
    desk *d;
    unsigned char id[FV_ID_BYTES];
    char *name;
    uint64_t start; /* first byte of the response in the attachment */
    uint64_t len;   /* bytes in the response */
};

struct copy_to {
    char *buf;
    size_t len;
};

static int copy_out(const unsigned char *p, size_t n, void *payload)
{
    struct copy_to *c = payload;
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    return 0;
}

static ssize_t att_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct att_stream *s = cls;
    struct copy_to ct = {buf, 0};
    ssize_t ret;
    if (pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > s->len - pos)
        max = (size_t)(s->len - pos);
    pthread_mutex_lock(&s->d->lock);
    if (s->d->v == NULL ||
        fv_attachment_read_range(s->d->v, s->id, s->name, s->start + pos, max,
                                 copy_out, &ct, NULL) != FV_OK ||
        ct.len == 0)
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    else
        ret = (ssize_t)ct.len;
    pthread_mutex_unlock(&s->d->lock);
    return ret;
}

static void att_free(void *cls)
{
    struct att_stream *s = cls;
    free(s->name);
    free(s);
}

static int api_attachment(desk *d, desk_req *r)
{
    unsigned char id[FV_ID_BYTES];
    const char *name = arg(r, "name");
    uint64_t size = 0, start = 0, len;
    int rc, inline_ok;
    struct copy_to none = {NULL, 0};

    if ((rc = record_id(d, arg(r, "id"), id)) != FV_OK)
        return fail(d, r, rc);
    if (name == NULL)
        return desk_error(r->conn, 400, "name?");
    /* The size, and that the attachment exists and is whole. */
    if ((rc = fv_attachment_read_range(d->v, id, name, 0, 0, copy_out, &none,
                                       &size)) != FV_OK)
        return fail(d, r, rc);
    len = size;
    const char *range = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Range");
    unsigned status = MHD_HTTP_OK;
    if (range) {
        if (desk_range(range, size, &start, &len) != 0) {
            char cr[64];
            struct MHD_Response *rs = MHD_create_response_from_buffer(
                0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (rs == NULL)
                return MHD_NO;
            desk_headers(rs, 1);
            snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
            MHD_add_response_header(rs, "Content-Range", cr);
            int ret = MHD_queue_response(r->conn, MHD_HTTP_RANGE_NOT_SATISFIABLE, rs);
            MHD_destroy_response(rs);
            return ret;
        }
        status = MHD_HTTP_PARTIAL_CONTENT;
    }
    struct att_stream *s = calloc(1, sizeof *s);
    if (s == NULL || (s->name = dup_text(name)) == NULL) {
        free(s);
        return fail(d, r, FV_ENOMEM);
    }
    s->d = d;
    memcpy(s->id, id, FV_ID_BYTES);
    s->start = start;
    s->len = len;
    /* Blocks of a chunk: each read decrypts at most two chunks (one when
     * the range starts on a chunk edge, as players mostly ask). */
    struct MHD_Response *rs =
        MHD_create_response_from_callback(len, FV_CHUNK_BYTES, att_read, s, att_free);
    if (rs == NULL) {
        att_free(s);
        return MHD_NO;
    }
    desk_headers(rs, 1);
    MHD_add_response_header(rs, "Content-Type", report_media_type(name, &inline_ok));
    MHD_add_response_header(rs, "Accept-Ranges", "bytes");
    if (!inline_ok)
        MHD_add_response_header(rs, "Content-Disposition", "attachment");
    if (status == MHD_HTTP_PARTIAL_CONTENT) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu",
                 (unsigned long long)start,
                 (unsigned long long)(start + len - 1),
                 (unsigned long long)size);
        MHD_add_response_header(rs, "Content-Range", cr);
    }
    int ret = MHD_queue_response(r->conn, status, rs);
    MHD_destroy_response(rs);
    return ret;
}

/* ---- POST: state, note, retract, merge ---------------------------------- */

/* {"ok": true, "id": ID} after a change to record `id`. */
static int changed(desk *d, desk_req *r, const unsigned char id[FV_ID_BYTES])
{
    desk_out o;
    index_refresh(d, id);
    if (desk_open_out(&o))
        return MHD_NO;
    fputc('{', o.f);
    json_key(o.f, "ok");
    fputs("true, ", o.f);
    json_key(o.f, "id");
    json_id(o.f, id);
    fputs("}\n", o.f);
    return ok_json(r, &o);
}

static int form_id(desk *d, desk_req *r, unsigned char id[FV_ID_BYTES])
{
    char *hex = desk_form(r->body, r->body_len, "id");
    int rc = record_id(d, hex, id);
    desk_free_text(hex);
    return rc;
}

static int api_state(desk *d, desk_req *r)
{
    unsigned char id[FV_ID_BYTES];
    char *st = desk_form(r->body, r->body_len, "state");
    int state, rc;
    if (st == NULL || fv_state_parse(st, &state) != FV_OK) {
        desk_free_text(st);
        return desk_error(r->conn, 400, "state: new, reviewed, needs-follow-up or archived");
    }
    desk_free_text(st);
    if ((rc = form_id(d, r, id)) != FV_OK ||
        (rc = fv_record_set_state(d->v, id, state)) != FV_OK)
        return fail(d, r, rc);
    return changed(d, r, id);
}

static int api_note(desk *d, desk_req *r)
{
    unsigned char id[FV_ID_BYTES];
    char *text = desk_form(r->body, r->body_len, "text");
    int rc;
    if (text == NULL || *text == '\0') {
        desk_free_text(text);
        return desk_error(r->conn, 400, "the note is empty");
    }
    if ((rc = form_id(d, r, id)) == FV_OK)
        rc = fv_note_add(d->v, NULL, id, text);
    desk_free_text(text);
    if (rc != FV_OK)
        return fail(d, r, rc);
    return changed(d, r, id);
}

static int api_retract(desk *d, desk_req *r)
{
    unsigned char id[FV_ID_BYTES];
    char hex[FV_ID_HEX_BYTES];
    char *confirm = desk_form(r->body, r->body_len, "confirm");
    int rc;
    if ((rc = form_id(d, r, id)) != FV_OK) {
        desk_free_text(confirm);
        return fail(d, r, rc);
    }
    /* The confirmation names the record in full: a retraction destroys
     * every copy, everywhere. */
    fv_id_to_hex(hex, id);
    if (confirm == NULL || strcmp(confirm, hex) != 0) {
        desk_free_text(confirm);
        return desk_error(r->conn, 400, "confirm: the record's full id");
    }
    desk_free_text(confirm);
    if ((rc = fv_record_retract(d->v, id)) != FV_OK)
        return fail(d, r, rc);
    return changed(d, r, id);
}

static int api_merge(desk *d, desk_req *r)
{
    unsigned char id[FV_ID_BYTES], rev[FV_ID_BYTES];
    fv_record_input in = FV_RECORD_INPUT_INIT;
    char *title = desk_form(r->body, r->body_len, "title");
    char *narrative = desk_form(r->body, r->body_len, "narrative");
    int rc;
    if ((rc = form_id(d, r, id)) == FV_OK) {
        if (title && *title)
            in.title = title;
        if (narrative) {
            in.narrative = narrative;
            in.narrative_len = strlen(narrative);
        }
        rc = fv_record_merge(d->v, rev, id, &in);
    }
    desk_free_text(title);
    desk_free_text(narrative);
    if (rc != FV_OK)
        return fail(d, r, rc);
    return changed(d, r, id);
}

/* ---- sync now ------------------------------------------------------------- */

static int sync_progress(uint64_t done, uint64_t total, void *payload)
{
    desk *d = payload;
    atomic_store(&d->sync_done, done);
    atomic_store(&d->sync_total, total);
    return 0;
}

static void *sync_main(void *arg)
{
    desk *d = arg;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res;
    fv_sync_session *s = NULL;
    int rc;

    so.progress = sync_progress;
    so.progress_payload = d;
    pthread_mutex_lock(&d->lock);
    if (d->v == NULL || atomic_load(&d->locked)) {
        rc = FV_ECANCELED;
        snprintf(d->sync_msg, sizeof d->sync_msg, "the vault is locked");
    } else if ((rc = fv_sync_session_new(&s, d->v, &so)) == FV_OK) {
        pthread_mutex_lock(&d->sync_lock);
        d->sync_session = s;
        pthread_mutex_unlock(&d->sync_lock);
        rc = fv_sync_session_run(s, &res);
        pthread_mutex_lock(&d->sync_lock);
        d->sync_session = NULL;
        pthread_mutex_unlock(&d->sync_lock);
        fv_sync_session_free(s);
    }
    if (d->v) {
        if (rc == FV_OK)
            snprintf(d->sync_msg, sizeof d->sync_msg,
                     "pushed %llu, pulled %llu (%llu new), %zu in conflict",
                     (unsigned long long)res.pushed,
                     (unsigned long long)res.pulled,
                     (unsigned long long)res.added, res.conflicts);
        else
            snprintf(d->sync_msg, sizeof d->sync_msg, "%s",
                     fv_vault_errmsg(d->v));
        /* What arrived is listed from a fresh index. */
        index_free(d->index);
        d->index = NULL;
        if (rc == FV_OK)
            desk_names_refresh(d);
    }
    atomic_store(&d->sync_rc, rc);
    atomic_store(&d->sync_running, 0);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static int api_sync_start(desk *d, desk_req *r)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&d->sync_running, &expected, 1))
        return desk_error(r->conn, MHD_HTTP_CONFLICT, "a sync is running");
    if (d->sync_thread_started)
        pthread_join(d->sync_thread, NULL);
    d->sync_thread_started = 0;
    atomic_store(&d->sync_done, 0);
    atomic_store(&d->sync_total, 0);
    /* The sync thread takes the lock this request holds: it starts once
     * the answer is sent. */
    if (pthread_create(&d->sync_thread, NULL, sync_main, d) != 0) {
        atomic_store(&d->sync_running, 0);
        return fail(d, r, FV_ENOMEM);
    }
    d->sync_thread_started = 1;
    return desk_error(r->conn, MHD_HTTP_ACCEPTED, "started");
}

/* GET /api/sync: progress, read without the vault's lock. */
static int api_sync_status(desk *d, desk_req *r)
{
    desk_out o;
    int rc = atomic_load(&d->sync_rc);
    int running = atomic_load(&d->sync_running);
    if (desk_open_out(&o))
        return MHD_NO;
    fputc('{', o.f);
    json_key(o.f, "running");
    fputs(running ? "true, " : "false, ", o.f);
    json_key(o.f, "done");
    fprintf(o.f, "%llu, ", (unsigned long long)atomic_load(&d->sync_done));
    json_key(o.f, "total");
    fprintf(o.f, "%llu, ", (unsigned long long)atomic_load(&d->sync_total));
    json_key(o.f, "result");
    if (running || rc == 1) {
        fputs("null}\n", o.f);
    } else {
        fputc('{', o.f);
        json_key(o.f, "ok");
        fputs(rc == FV_OK ? "true, " : "false, ", o.f);
        json_key(o.f, "message");
        /* Written by the sync thread before sync_running fell to 0. */
        json_strz(o.f, d->sync_msg);
        fputs("}}\n", o.f);
    }
    return ok_json(r, &o);
}

/* ---- devices, verify, export ----------------------------------------------- */

static int api_devices(desk *d, desk_req *r)
{
    desk_out o;
    const char *refresh = arg(r, "refresh");
    if (refresh && strcmp(refresh, "1") == 0)
        desk_names_refresh(d);
    if (desk_open_out(&o))
        return MHD_NO;
    fputc('{', o.f);
    json_key(o.f, "known");
    fputs(d->names && d->names->fetched ? "true, " : "false, ", o.f);
    json_key(o.f, "why");
    json_strz(o.f, d->names && !d->names->fetched ? d->names->why : NULL);
    fputs(", ", o.f);
    json_key(o.f, "devices");
    fputc('[', o.f);
    for (size_t i = 0; d->names && i < d->names->n; i++) {
        const report_device *nd = &d->names->d[i];
        fputs(i ? ",\n" : "\n", o.f);
        fputc('{', o.f);
        json_key(o.f, "id");
        json_id(o.f, nd->id);
        fputs(", ", o.f);
        json_key(o.f, "name");
        json_strz(o.f, nd->name);
        fputs(", ", o.f);
        json_key(o.f, "role");
        json_strz(o.f, nd->role == FV_ROLE_COORDINATOR ? "coordinator" : "field");
        fputs(", ", o.f);
        json_key(o.f, "revoked");
        fputs(nd->revoked ? "true, " : "false, ", o.f);
        json_key(o.f, "enrolled");
        json_time(o.f, nd->enrolled);
        fputc('}', o.f);
    }
    fputs("]}\n", o.f);
    return ok_json(r, &o);
}

static int api_invite(desk *d, desk_req *r)
{
    char *name = desk_form(r->body, r->body_len, "name");
    char *role_s = desk_form(r->body, r->body_len, "role");
    char *invite = NULL;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    int role = role_s && strcmp(role_s, "coordinator") == 0 ? FV_ROLE_COORDINATOR
                                                            : FV_ROLE_FIELD;
    int rc = FV_EINVAL;
    desk_out o;
    so.timeout_ms = 10000;
    if (name && *name)
        rc = fv_org_invite(d->v, &invite, name, role, 7 * 24 * 3600, &so);
    desk_free_text(name);
    desk_free_text(role_s);
    if (rc != FV_OK)
        return name ? fail(d, r, rc) : desk_error(r->conn, 400, "name?");
    if (desk_open_out(&o)) {
        desk_free_text(invite);
        return MHD_NO;
    }
    fputc('{', o.f);
    json_key(o.f, "invite");
    json_strz(o.f, invite);
    fputs("}\n", o.f);
    desk_free_text(invite);
    return ok_json(r, &o);
}

static int api_revoke(desk *d, desk_req *r)
{
    unsigned char dev[FV_ID_BYTES];
    char *hex = desk_form(r->body, r->body_len, "device");
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    int bad = hex == NULL || cli_parse_device_id(hex, dev) != 0;
    desk_free_text(hex);
    if (bad)
        return desk_error(r->conn, 400, "device: 64 hex digits");
    so.timeout_ms = 10000;
    int rc = fv_org_revoke(d->v, dev, &so);
    if (rc != FV_OK)
        return fail(d, r, rc);
    desk_names_refresh(d);
    return api_devices(d, r);
}

struct issues_out {
    FILE *f;
    uint64_t n;
    const unsigned char *only; /* this record's issues only, or NULL */
    uint64_t record_issues;
};

static int write_issue(const fv_verify_issue *is, void *payload)
{
    struct issues_out *io = payload;
    if (io->only) {
        if (is->record == NULL || memcmp(is->record, io->only, FV_ID_BYTES) != 0)
            return 0;
        io->record_issues++;
    }
    if (io->n++ >= 1000)
        return 0; /* counted, not listed */
    fputs(io->n > 1 ? ",\n" : "\n", io->f);
    fputc('{', io->f);
    json_key(io->f, "record");
    if (is->record)
        json_id(io->f, is->record);
    else
        fputs("null", io->f);
    fputs(", ", io->f);
    json_key(io->f, "envelope");
    if (is->envelope)
        json_id(io->f, is->envelope);
    else
        fputs("null", io->f);
    fputs(", ", io->f);
    json_key(io->f, "problem");
    json_strz(io->f, is->problem);
    fputc('}', io->f);
    return 0;
}

/* POST /api/verify [id=ID]: fv_vault_verify over the whole vault; with an
 * id, "issues" and "record_ok" are that record's (a record page's custody
 * check), "ok" still the vault's. */
static int api_verify(desk *d, desk_req *r)
{
    fv_verify_report rep;
    unsigned char id[FV_ID_BYTES];
    int by_record = 0, rc;
    desk_out o;
    char *hex = desk_form(r->body, r->body_len, "id");
    if (hex) {
        rc = record_id(d, hex, id);
        desk_free_text(hex);
        if (rc != FV_OK)
            return fail(d, r, rc);
        by_record = 1;
    }
    if (desk_open_out(&o))
        return MHD_NO;
    memset(&rep, 0, sizeof rep);
    fputc('{', o.f);
    json_key(o.f, "issues");
    fputc('[', o.f);
    struct issues_out io = {o.f, 0, by_record ? id : NULL, 0};
    rc = fv_vault_verify(d->v, write_issue, &io, &rep);
    fputs("], ", o.f);
    if (rc != FV_OK && rc != FV_ECORRUPT) {
        desk_discard(&o);
        return fail(d, r, rc);
    }
    if (by_record) {
        json_key(o.f, "record_ok");
        fputs(io.record_issues == 0 ? "true, " : "false, ", o.f);
    }
    json_key(o.f, "ok");
    fputs(rc == FV_OK ? "true, " : "false, ", o.f);
    json_key(o.f, "envelopes");
    fprintf(o.f, "%llu, ", (unsigned long long)rep.envelopes);
    json_key(o.f, "chunks");
    fprintf(o.f, "%llu, ", (unsigned long long)rep.chunks);
    json_key(o.f, "receipts");
    fprintf(o.f, "%llu, ", (unsigned long long)rep.receipts);
    json_key(o.f, "failures");
    fprintf(o.f, "%llu}\n", (unsigned long long)rep.failures);
    return ok_json(r, &o);
}

/* POST /api/export format=F path=P: the CLI's exports; the HTML names
 * devices from the names the desk holds. */
static int api_export(desk *d, desk_req *r)
{
    static const struct {
        const char *name;
        int format;
    } formats[] = {{"json", REPORT_JSON},
                   {"csv", REPORT_CSV},
                   {"html", REPORT_HTML},
                   {"evidence", 0}};
    char *fmt = desk_form(r->body, r->body_len, "format");
    char *path = desk_form(r->body, r->body_len, "path");
    char msg[REPORT_MSG_BYTES] = "";
    uint64_t count = 0;
    int rc = FV_EINVAL, format = -1;
    desk_out o;
    for (size_t i = 0; fmt && i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(fmt, formats[i].name) == 0)
            format = formats[i].format;
    desk_free_text(fmt);
    /* An absolute path: the desk's working directory is no one's choice. */
    if (format < 0 || path == NULL || path[0] != '/') {
        desk_free_text(path);
        return desk_error(r->conn, 400,
                          "format: json, csv, html or evidence; path: "
                          "an absolute path that does not exist yet");
    }
    if (format == 0) {
        fv_export_options eo = FV_EXPORT_OPTIONS_INIT;
        eo.path = path;
        rc = fv_export(d->v, &count, &eo);
        if (rc != FV_OK)
            snprintf(msg, sizeof msg, "%s", fv_vault_errmsg(d->v));
    } else {
        report_options ro;
        memset(&ro, 0, sizeof ro);
        ro.format = format;
        ro.path = path;
        ro.devices = d->names;
        rc = report_export(d->v, &count, msg, &ro);
    }
    desk_free_text(path);
    if (rc != FV_OK)
        return desk_error(r->conn, http_status(rc), msg);
    if (desk_open_out(&o))
        return MHD_NO;
    fputc('{', o.f);
    json_key(o.f, "exported");
    fprintf(o.f, "%llu}\n", (unsigned long long)count);
    return ok_json(r, &o);
}

/* ---- routing -------------------------------------------------------------- */

int desk_api(desk *d, desk_req *r)
{
    static const struct {
        const char *method, *path;
        int (*fn)(desk *, desk_req *);
    } routes[] = {
        {"GET", "/api/session", api_session},
        {"GET", "/api/records", api_records},
        {"GET", "/api/facets", api_facets},
        {"GET", "/api/record", api_record},
        {"GET", "/api/attachment", api_attachment},
        {"GET", "/api/devices", api_devices},
        {"POST", "/api/state", api_state},
        {"POST", "/api/note", api_note},
        {"POST", "/api/retract", api_retract},
        {"POST", "/api/merge", api_merge},
        {"POST", "/api/sync", api_sync_start},
        {"POST", "/api/invite", api_invite},
        {"POST", "/api/revoke", api_revoke},
        {"POST", "/api/verify", api_verify},
        {"POST", "/api/export", api_export},
    };
    int get = strcmp(r->method, "POST") != 0;
    /* Progress is read while the sync holds the vault. */
    if (get && strcmp(r->path, "/api/sync") == 0)
        return api_sync_status(d, r);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(r->path, routes[i].path) != 0)
            continue;
        if (strcmp(routes[i].method, get ? "GET" : "POST") != 0)
            return desk_error(r->conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "method not allowed");
        pthread_mutex_lock(&d->lock);
        int ret;
        if (d->v == NULL || atomic_load(&d->locked))
            ret = desk_error(r->conn, MHD_HTTP_LOCKED,
                             "the vault is locked: start `fieldvault desk` again");
        else
            ret = routes[i].fn(d, r);
        pthread_mutex_unlock(&d->lock);
        return ret;
    }
    return desk_error(r->conn, MHD_HTTP_NOT_FOUND, "no such call");
}
