/* test_desk_core.c - the coordinator's desk in the vault (core/desk.c): review
 * states and how the newest wins, filters, notes readable by the right keys
 * only, merges that end a conflict and keep history, retractions that purge
 * the record from vault.db and refuse what arrives later. Real vaults on
 * real SQLite files; envelopes travel between vaults as a courier bundle
 * carries them (the outbox of one, verified import into another). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"
#include "vault_internal.h"
#include "vault_sync.h"
#include "wpool.h"
#include "forge.h"

static char root[256];
static int seq;

static const char PASS[] = "correct horse battery staple";
static const char RECOVERY[] = "a separate recovery passphrase";

static const char *new_path(const char *what)
{
    static char paths[64][320];
    char *p = paths[++seq % 64];
    snprintf(p, sizeof paths[0], "%s/%s%d", root, what, seq);
    return p;
}

static fv_vault *create(const char *dir)
{
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, PASS, strlen(PASS), &o), FV_OK);
    return v;
}

/* ---- carrying envelopes between vaults ---------------------------------- */

/* Every envelope of a vault's outbox, copied out. */
struct bag {
    unsigned char *env[512];
    size_t len[512];
    size_t n;
};

static int bag_cb(int64_t s, const unsigned char *id, const unsigned char *bytes,
                  size_t len, void *payload)
{
    struct bag *b = payload;
    (void)s;
    (void)id;
    if (b->n == 512)
        return FV_ELIMIT;
    b->env[b->n] = malloc(len);
    memcpy(b->env[b->n], bytes, len);
    b->len[b->n++] = len;
    return 0;
}

static void bag_fill(struct bag *b, fv_vault *from)
{
    memset(b, 0, sizeof *b);
    CHECK_EQ(fv_vs_outbox(from, 0, 512, bag_cb, b), FV_OK);
}

static void bag_free(struct bag *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->env[i]);
    b->n = 0;
}

static void bag_import(fv_vault *to, const struct bag *b)
{
    size_t added = 0, refused = 0;
    int rc = fv_vs_import(to, NULL, (const unsigned char *const *)b->env,
                          b->len, b->n, &added, &refused);
    if (rc)
        fprintf(stderr, "  import: %s\n", fv_vault_errmsg(to));
    CHECK_EQ(rc, FV_OK);
    CHECK_EQ(refused, 0);
}

/* Carries everything `from` wrote to `to`, as a courier bundle would. */
static void carry(fv_vault *from, fv_vault *to)
{
    struct bag b;
    bag_fill(&b, from);
    bag_import(to, &b);
    bag_free(&b);
}

/* Delivers envelopes to coordinator `to` as the server's feed does (the
 * server has checked who may write what: review states travel only this
 * way between coordinators, never by courier). */
static void bag_serve(fv_vault *to, const struct bag *b)
{
    fv_sync_state st;
    size_t added = 0, refused = 0;
    int rc;
    if (fv_vs_state_get(to, &st) != FV_OK) {
        memset(&st, 0, sizeof st);
        st.role = FV_ROLE_COORDINATOR;
    }
    CHECK_EQ(st.role, FV_ROLE_COORDINATOR);
    rc = fv_vs_import(to, &st, (const unsigned char *const *)b->env, b->len,
                      b->n, &added, &refused);
    if (rc)
        fprintf(stderr, "  import: %s\n", fv_vault_errmsg(to));
    CHECK_EQ(rc, FV_OK);
    CHECK_EQ(refused, 0);
}

/* Carries everything `from` wrote to coordinator `to` through the server. */
static void serve(fv_vault *from, fv_vault *to)
{
    struct bag b;
    bag_fill(&b, from);
    bag_serve(to, &b);
    bag_free(&b);
}

static int sealed_to(const fv_env *e, const unsigned char pk[32]);

/* Carries what `from` wrote for field device `to` as the server delivers
 * it (the server has checked who may write what). */
static void deliver(fv_vault *from, fv_vault *to)
{
    struct bag b, mine;
    fv_sync_state st;
    unsigned char sp[32], box[32];
    size_t added = 0, refused = 0;
    memset(&st, 0, sizeof st);
    memset(&mine, 0, sizeof mine);
    st.role = FV_ROLE_FIELD;
    fv_vs_device(to, sp, box);
    bag_fill(&b, from);
    for (size_t i = 0; i < b.n; i++) {
        fv_env e;
        if (fv_env_parse(&e, b.env[i], b.len[i]) != FV_OK)
            continue;
        if (sealed_to(&e, box)) {
            mine.env[mine.n] = b.env[i];
            mine.len[mine.n++] = b.len[i];
        }
        fv_env_clear(&e);
    }
    CHECK(mine.n > 0);
    CHECK_EQ(fv_vs_import(to, &st, (const unsigned char *const *)mine.env,
                          mine.len, mine.n, &added, &refused), FV_OK);
    CHECK_EQ(refused, 0);
    bag_free(&b);
}

/* The newest envelope of a vault's outbox of the given kind. */
static size_t last_of_kind(const struct bag *b, int kind, fv_env *e)
{
    for (size_t i = b->n; i-- > 0;) {
        if (fv_env_parse(e, b->env[i], b->len[i]) != FV_OK)
            continue;
        if (e->kind == kind)
            return i;
        fv_env_clear(e);
    }
    return (size_t)-1;
}

static int sealed_to(const fv_env *e, const unsigned char pk[32])
{
    for (size_t i = 0; i < e->nrecipients; i++)
        if (memcmp(e->recipient_pk[i], pk, 32) == 0)
            return 1;
    return 0;
}

/* ---- records ----------------------------------------------------------- */

static void add(fv_vault *v, unsigned char id[FV_ID_BYTES], const char *title,
                const char *tag, const char *narrative)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    const char *tags[1] = {tag};
    in.title = title;
    in.narrative = narrative;
    in.narrative_len = strlen(narrative);
    in.tags = tags;
    in.ntags = 1;
    CHECK_EQ(fv_record_add(v, id, &in), FV_OK);
}

static int get_state(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    fv_record *r = NULL;
    int s = -1;
    if (fv_record_get(v, &r, id) == FV_OK)
        s = r->state;
    fv_record_free(r);
    return s;
}

/* The ids a query visits, in order. */
struct ids {
    unsigned char id[16][FV_ID_BYTES];
    size_t n;
};

static int ids_cb(const fv_record *r, void *payload)
{
    struct ids *s = payload;
    if (s->n < 16)
        memcpy(s->id[s->n++], r->id, FV_ID_BYTES);
    return 0;
}

static size_t query(fv_vault *v, const fv_filter *f, struct ids *out)
{
    memset(out, 0, sizeof *out);
    CHECK_EQ(fv_vault_query(v, f, ids_cb, out), FV_OK);
    return out->n;
}

static int has_id(const struct ids *s, const unsigned char id[FV_ID_BYTES])
{
    for (size_t i = 0; i < s->n; i++)
        if (memcmp(s->id[i], id, FV_ID_BYTES) == 0)
            return 1;
    return 0;
}

/* Notes a vault can read (about one record or all). */
struct notes {
    char text[8][64];
    unsigned char author[8][FV_ID_BYTES];
    unsigned char record[8][FV_ID_BYTES];
    size_t n;
};

static int notes_cb(const fv_note *n, void *payload)
{
    struct notes *s = payload;
    if (s->n < 8) {
        snprintf(s->text[s->n], sizeof s->text[0], "%s", n->text);
        memcpy(s->author[s->n], n->author, FV_ID_BYTES);
        memcpy(s->record[s->n], n->record, FV_ID_BYTES);
        s->n++;
    }
    return 0;
}

static size_t notes(fv_vault *v, const unsigned char *id, struct notes *out)
{
    memset(out, 0, sizeof *out);
    CHECK_EQ(fv_note_list(v, id, notes_cb, out), FV_OK);
    return out->n;
}

/* ---- files --------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long len;
    *n = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(len > 0 ? (size_t)len : 1);
    if (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)
        len = 0;
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static int file_has(const char *path, const unsigned char *needle, size_t m)
{
    size_t n;
    unsigned char *buf = slurp(path, &n);
    int found = 0;
    for (size_t i = 0; buf && i + m <= n && !found; i++)
        found = memcmp(buf + i, needle, m) == 0;
    free(buf);
    return found;
}

/* Whether the vault's database (or its WAL) still holds these bytes. */
static int vault_has(const char *dir, const unsigned char *needle, size_t m)
{
    char p[400];
    snprintf(p, sizeof p, "%s/vault.db", dir);
    if (file_has(p, needle, m))
        return 1;
    snprintf(p, sizeof p, "%s/vault.db-wal", dir);
    return file_has(p, needle, m);
}

static long long db_count(const char *dir, const char *sql,
                          const unsigned char id[FV_ID_BYTES])
{
    char p[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;
    snprintf(p, sizeof p, "%s/vault.db", dir);
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (id)
            sqlite3_bind_blob(st, 1, id, FV_ID_BYTES, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* ---- the cast ----------------------------------------------------------- */

struct org {
    const char *dc, *dc2, *df1, *df2;
    fv_vault *c, *c2;   /* coordinators */
    fv_vault *f1, *f2;  /* field devices */
    unsigned char pk[32];
    unsigned char c_id[32], c2_id[32], f1_id[32], f2_id[32];
};

static int certs_cb(const unsigned char *bytes, size_t len, void *payload)
{
    struct bag *b = payload;
    if (b->n == 512)
        return FV_ELIMIT;
    b->env[b->n] = malloc(len);
    memcpy(b->env[b->n], bytes, len);
    b->len[b->n++] = len;
    return 0;
}

/* Everyone enrolled: both coordinators certify the four devices, as a
 * sync does, and the field devices hold the certificates (from a bundle)
 * so that what reaches them by courier is from known devices. */
static void org_certify(struct org *o)
{
    fv_vs_devinfo list[4];
    const unsigned char *ids[4] = {o->c_id, o->c2_id, o->f1_id, o->f2_id};
    struct bag b;
    size_t issued = 0, released = 0, added = 0, rejected = 0;
    memset(list, 0, sizeof list);
    for (int i = 0; i < 4; i++) {
        memcpy(list[i].pk, ids[i], 32);
        list[i].role = i < 2 ? FV_ROLE_COORDINATOR : FV_ROLE_FIELD;
        list[i].enrolled = 1000;
    }
    CHECK_EQ(fv_vs_certify(o->c, list, 4, &issued, &released), FV_OK);
    CHECK_EQ(issued, 4);
    CHECK_EQ(fv_vs_certify(o->c2, list, 4, &issued, &released), FV_OK);
    memset(&b, 0, sizeof b);
    CHECK_EQ(fv_vs_certs_each(o->c, certs_cb, &b), FV_OK);
    CHECK_EQ(b.n, 4);
    CHECK_EQ(fv_vs_certs_import(o->f1, (const unsigned char *const *)b.env,
                                b.len, b.n, &added, &rejected), FV_OK);
    CHECK_EQ(added, 4);
    CHECK_EQ(rejected, 0);
    CHECK_EQ(fv_vs_certs_import(o->f2, (const unsigned char *const *)b.env,
                                b.len, b.n, &added, &rejected), FV_OK);
    bag_free(&b);
}

/* Hands `to` the organisation's certificates, as a bundle or (for a vault
 * holding the organisation key) its own first sync would. */
static void give_certs(struct org *o, fv_vault *to)
{
    struct bag b;
    size_t added = 0, rejected = 0;
    memset(&b, 0, sizeof b);
    CHECK_EQ(fv_vs_certs_each(o->c, certs_cb, &b), FV_OK);
    CHECK_EQ(fv_vs_certs_import(to, (const unsigned char *const *)b.env,
                                b.len, b.n, &added, &rejected), FV_OK);
    CHECK_EQ(rejected, 0);
    bag_free(&b);
}

/* Coordinator `c` certifies one more field device, as its sync would once
 * the device enrolled. */
static void certify_one(fv_vault *c, fv_vault *dev)
{
    fv_vs_devinfo d;
    size_t issued = 0, released = 0;
    memset(&d, 0, sizeof d);
    fv_vault_get_device_id(dev, d.pk);
    d.role = FV_ROLE_FIELD;
    d.enrolled = 1000;
    CHECK_EQ(fv_vs_certify(c, &d, 1, &issued, &released), FV_OK);
    CHECK_EQ(issued, 1);
}

static void org_setup(struct org *o)
{
    const char *key = new_path("orgkey");
    o->dc = new_path("coord");
    o->dc2 = new_path("coord");
    o->df1 = new_path("field");
    o->df2 = new_path("field");
    o->c = create(o->dc);
    o->c2 = create(o->dc2);
    o->f1 = create(o->df1);
    o->f2 = create(o->df2);
    CHECK_EQ(fv_vs_org_create(o->c, o->pk), FV_OK);
    CHECK_EQ(fv_org_key_export(o->c, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    CHECK_EQ(fv_org_key_import(o->c2, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    CHECK_EQ(fv_vs_org_learn(o->f1, o->pk), FV_OK);
    CHECK_EQ(fv_vs_org_learn(o->f2, o->pk), FV_OK);
    fv_vault_get_device_id(o->c, o->c_id);
    fv_vault_get_device_id(o->c2, o->c2_id);
    fv_vault_get_device_id(o->f1, o->f1_id);
    fv_vault_get_device_id(o->f2, o->f2_id);
    org_certify(o);
}

static void org_close(struct org *o)
{
    fv_vault_close(o->c);
    fv_vault_close(o->c2);
    fv_vault_close(o->f1);
    fv_vault_close(o->f2);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_state_names(void)
{
    static const char *const names[] = {"new", "reviewed", "needs-follow-up",
                                        "archived"};
    int s = -5;
    for (int i = 0; i < 4; i++) {
        CHECK(fv_state_name(i) && strcmp(fv_state_name(i), names[i]) == 0);
        CHECK_EQ(fv_state_parse(&s, names[i]), FV_OK);
        CHECK_EQ(s, i);
    }
    CHECK(fv_state_name(-1) == NULL);
    CHECK(fv_state_name(4) == NULL);
    CHECK_EQ(fv_state_parse(&s, "Reviewed"), FV_EINVAL);
    CHECK_EQ(fv_state_parse(&s, ""), FV_EINVAL);
    CHECK_EQ(fv_state_parse(&s, "needs follow up"), FV_EINVAL);
    CHECK_EQ(fv_state_parse(&s, NULL), FV_EINVAL);
}

/* Payload codecs of kinds 4 and 5 (FORMAT.md 7.1). */
static void test_payloads(void)
{
    unsigned char *p = NULL;
    size_t n = 0, len = 0;
    char *text = NULL;
    int64_t t = 0;
    int s = -1;

    CHECK_EQ(fv_state_encode(&p, &n, 1700000000, FV_STATE_ARCHIVED), FV_OK);
    CHECK_EQ(fv_state_decode(&t, &s, p, n), FV_OK);
    CHECK_EQ(t, 1700000000);
    CHECK_EQ(s, FV_STATE_ARCHIVED);
    fv_enc_free_buf(p, n);
    CHECK_EQ(fv_state_encode(&p, &n, 5, 4), FV_OK); /* no such state */
    CHECK_EQ(fv_state_decode(&t, &s, p, n), FV_ECORRUPT);
    fv_enc_free_buf(p, n);
    /* {"time": 5, "state": 1} is the canonical order; the other is refused. */
    {
        static const unsigned char good[] = "\xa2\x64time\x05\x65state\x01";
        static const unsigned char swapped[] = "\xa2\x65state\x01\x64time\x05";
        CHECK_EQ(fv_state_decode(&t, &s, good, sizeof good - 1), FV_OK);
        CHECK_EQ(fv_state_decode(&t, &s, swapped, sizeof swapped - 1), FV_ECORRUPT);
    }
    CHECK_EQ(fv_note_encode(&p, &n, "call me\n", 8, -3), FV_OK);
    CHECK_EQ(fv_note_decode(&text, &len, &t, p, n), FV_OK);
    CHECK(text && len == 8 && strcmp(text, "call me\n") == 0 && t == -3);
    fv_env_free_plain((unsigned char *)text, len + 1);
    fv_enc_free_buf(p, n);
    /* Empty text, a NUL, bad UTF-8: refused. */
    CHECK_EQ(fv_note_encode(&p, &n, "", 0, 1), FV_OK);
    CHECK_EQ(fv_note_decode(&text, &len, &t, p, n), FV_ECORRUPT);
    fv_enc_free_buf(p, n);
    CHECK_EQ(fv_note_encode(&p, &n, "a\0b", 3, 1), FV_OK);
    CHECK_EQ(fv_note_decode(&text, &len, &t, p, n), FV_ECORRUPT);
    fv_enc_free_buf(p, n);
    {
        static const unsigned char bad[] = "\xa2\x64text\x61\xff\x64time\x01";
        static const unsigned char good[] = "\xa2\x64text\x61\x41\x64time\x01";
        CHECK_EQ(fv_note_decode(&text, &len, &t, good, sizeof good - 1), FV_OK);
        fv_env_free_plain((unsigned char *)text, len + 1);
        CHECK_EQ(fv_note_decode(&text, &len, &t, bad, sizeof bad - 1), FV_ECORRUPT);
    }
}

static void test_states(struct org *o, const unsigned char a[32],
                        const unsigned char b[32])
{
    struct bag bag;
    fv_env e;
    size_t i;

    CHECK_EQ(get_state(o->c, a), FV_STATE_NEW);
    /* A field device holds no organisation key. */
    CHECK_EQ(fv_record_set_state(o->f1, a, FV_STATE_REVIEWED), FV_EDENIED);
    CHECK_EQ(fv_record_set_state(o->c, a, 4), FV_EINVAL);
    CHECK_EQ(fv_record_set_state(o->c, a, -1), FV_EINVAL);
    {
        unsigned char none[32] = {1, 2, 3};
        CHECK_EQ(fv_record_set_state(o->c, none, FV_STATE_REVIEWED), FV_ENOTFOUND);
    }
    CHECK_EQ(fv_record_set_state(o->c, a, FV_STATE_REVIEWED), FV_OK);
    CHECK_EQ(get_state(o->c, a), FV_STATE_REVIEWED);
    /* Set again within the same second: the later setting wins. */
    CHECK_EQ(fv_record_set_state(o->c, a, FV_STATE_NEEDS_FOLLOW_UP), FV_OK);
    CHECK_EQ(get_state(o->c, a), FV_STATE_NEEDS_FOLLOW_UP);
    CHECK_EQ(get_state(o->c, b), FV_STATE_NEW);

    /* Sealed to the writer and the organisation only. */
    bag_fill(&bag, o->c);
    i = last_of_kind(&bag, FV_ENV_STATE, &e);
    CHECK(i != (size_t)-1);
    if (i != (size_t)-1) {
        unsigned char cbox[32], fbox[32], sp[32];
        fv_vs_device(o->c, sp, cbox);
        fv_vs_device(o->f1, sp, fbox);
        CHECK_EQ(e.nrecipients, 2);
        CHECK(sealed_to(&e, cbox) && sealed_to(&e, o->pk) && !sealed_to(&e, fbox));
        CHECK(e.nparents == 1 && memcmp(e.parents[0], a, 32) == 0);
        fv_env_clear(&e);
    }
    /* The other coordinator reads them from the server; a field device
     * given them by courier stores none: its record stays "new". */
    bag_serve(o->c2, &bag);
    bag_import(o->f1, &bag);
    bag_free(&bag);
    CHECK_EQ(get_state(o->c2, a), FV_STATE_NEEDS_FOLLOW_UP);
    CHECK_EQ(get_state(o->f1, a), FV_STATE_NEW);
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM envelope WHERE kind = 5", NULL), 0);
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM review", NULL), 0);

    /* The second coordinator's later setting wins everywhere. */
    CHECK_EQ(fv_record_set_state(o->c2, a, FV_STATE_ARCHIVED), FV_OK);
    serve(o->c2, o->c);
    CHECK_EQ(get_state(o->c, a), FV_STATE_ARCHIVED);
    /* Importing the older ones again changes nothing. */
    serve(o->c, o->c2);
    CHECK_EQ(get_state(o->c2, a), FV_STATE_ARCHIVED);
    CHECK_EQ(fv_record_set_state(o->c, b, FV_STATE_REVIEWED), FV_OK);
    serve(o->c, o->c2);
    CHECK_EQ(get_state(o->c2, b), FV_STATE_REVIEWED);
}

/* Two settings with the same time: the larger envelope id wins, whatever
 * the order they arrive in. */
static void test_state_tie(struct org *o, const unsigned char rec[32])
{
    unsigned char id1[32], id2[32], *p = NULL;
    unsigned char recips[2][32], sp[32];
    size_t n = 0;
    struct bag bag, rev;
    const char *d1 = new_path("tie"), *d2 = new_path("tie"),
               *key = new_path("orgkey");
    fv_vault *x = create(d1), *y = create(d2);
    int64_t t = 4000000000LL; /* after anything the clock sets */
    int want;

    fv_vs_device(o->c2, sp, recips[0]);
    memcpy(recips[1], o->pk, 32);
    CHECK_EQ(fv_store_begin(o->c2->store), FV_OK);
    for (int k = 0; k < 2; k++) {
        fv_v_write w = {
            .kind = FV_ENV_STATE,
            .record = rec,
            .parents = (const unsigned char(*)[FV_ID_BYTES])rec,
            .nparents = 1,
            .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips,
            .nrecipients = 2,
        };
        CHECK_EQ(fv_state_encode(&p, &n, t, k ? FV_STATE_REVIEWED
                                              : FV_STATE_NEEDS_FOLLOW_UP), FV_OK);
        w.payload = p;
        w.payload_len = n;
        CHECK_EQ(fv_v_write_envelope(o->c2, k ? id2 : id1, &w), FV_OK);
        fv_enc_free_buf(p, n);
    }
    CHECK_EQ(fv_store_commit(o->c2->store), FV_OK);
    want = memcmp(id2, id1, 32) > 0 ? FV_STATE_REVIEWED : FV_STATE_NEEDS_FOLLOW_UP;

    CHECK_EQ(fv_org_key_export(o->c, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    CHECK_EQ(fv_org_key_import(x, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    give_certs(o, x);
    CHECK_EQ(fv_org_key_import(y, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    give_certs(o, y);
    bag_fill(&bag, o->f1); /* the record itself */
    bag_import(x, &bag);
    bag_import(y, &bag);
    bag_free(&bag);
    bag_fill(&bag, o->c2);
    memset(&rev, 0, sizeof rev);
    for (size_t i = 0; i < bag.n; i++) {
        rev.env[i] = bag.env[bag.n - 1 - i];
        rev.len[i] = bag.len[bag.n - 1 - i];
    }
    rev.n = bag.n;
    bag_serve(x, &bag);
    bag_serve(y, &rev);
    bag_free(&bag);
    CHECK_EQ(get_state(x, rec), want);
    CHECK_EQ(get_state(y, rec), want);
    serve(o->c2, o->c);
    CHECK_EQ(get_state(o->c, rec), want);
    fv_vault_close(x);
    fv_vault_close(y);
}

/* Imports a bag as a courier bundle: *skipped counts review states left out. */
static int bundle_in(fv_vault *to, const struct bag *b, size_t *added,
                     size_t *skipped)
{
    size_t refused = 0;
    int rc = fv_vs_import_bundle(to, (const unsigned char *const *)b->env,
                                 b->len, b->n, added, skipped, &refused);
    CHECK_EQ(refused, 0);
    return rc;
}

/* A field device cannot be told from a coordinator by its key, so a review
 * state it forges (sealed to the public organisation key, dated far ahead
 * to stick) and hands over in a bundle is left out, counted, and the rest
 * of the bundle imports. A coordinator's own states re-imported from a
 * bundle are fine; another coordinator's are left out (the server carries
 * them). */
static void test_state_forged(struct org *o, const unsigned char a[32])
{
    unsigned char fid[32], recips[2][32], sp[32], *p = NULL;
    size_t n = 0, added = 0, skipped = 0, states = 0, refused = 0;
    struct bag bag;
    const char *d = new_path("forged"), *key = new_path("orgkey");
    fv_vault *x = create(d);
    int want = get_state(o->c, a), want2 = get_state(o->c2, a);
    fv_v_write w = {
        .kind = FV_ENV_STATE,
        .record = a,
        .parents = (const unsigned char(*)[FV_ID_BYTES])a,
        .nparents = 1,
        .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips,
        .nrecipients = 2,
    };

    CHECK(want > FV_STATE_NEW && want != FV_STATE_REVIEWED);
    fv_vs_device(o->f1, sp, recips[0]);
    memcpy(recips[1], o->pk, 32);
    CHECK_EQ(fv_state_encode(&p, &n, 8000000000LL, FV_STATE_REVIEWED), FV_OK);
    w.payload = p;
    w.payload_len = n;
    CHECK_EQ(fv_store_begin(o->f1->store), FV_OK);
    CHECK_EQ(fv_v_write_envelope(o->f1, fid, &w), FV_OK);
    CHECK_EQ(fv_store_commit(o->f1->store), FV_OK);
    fv_enc_free_buf(p, n);

    /* f1's whole outbox (its records and the forged state) to both
     * coordinators and to a fresh vault holding the organisation key. */
    bag_fill(&bag, o->f1);
    CHECK_EQ(bundle_in(o->c, &bag, &added, &skipped), FV_OK);
    CHECK_EQ(skipped, 1);
    CHECK_EQ(get_state(o->c, a), want);
    CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM envelope WHERE id = ?1", fid), 0);
    CHECK_EQ(bundle_in(o->c2, &bag, &added, &skipped), FV_OK);
    CHECK_EQ(skipped, 1);
    CHECK_EQ(get_state(o->c2, a), want2);
    CHECK_EQ(fv_org_key_export(o->c, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    CHECK_EQ(fv_org_key_import(x, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    give_certs(o, x);
    CHECK_EQ(bundle_in(x, &bag, &added, &skipped), FV_OK);
    CHECK_EQ(skipped, 1);
    CHECK_EQ(added, bag.n - 1);
    CHECK_EQ(get_state(x, a), FV_STATE_NEW);
    /* fv_vs_import with no server state is the same courier path. */
    CHECK_EQ(fv_vs_import(x, NULL, (const unsigned char *const *)bag.env,
                          bag.len, bag.n, &added, &refused), FV_OK);
    CHECK_EQ(get_state(x, a), FV_STATE_NEW);
    CHECK_EQ(db_count(d, "SELECT count(*) FROM envelope WHERE kind = 5", NULL), 0);
    bag_free(&bag);

    /* The coordinator's own states back from a bundle: taken, nothing
     * skipped, its state unchanged. Handed to the other coordinator by
     * courier, each is left out. */
    bag_fill(&bag, o->c);
    for (size_t i = 0; i < bag.n; i++) {
        fv_env e;
        if (fv_env_parse(&e, bag.env[i], bag.len[i]) != FV_OK)
            continue;
        states += e.kind == FV_ENV_STATE;
        fv_env_clear(&e);
    }
    CHECK(states > 0);
    CHECK_EQ(bundle_in(o->c, &bag, &added, &skipped), FV_OK);
    CHECK_EQ(skipped, 0);
    CHECK_EQ(get_state(o->c, a), want);
    CHECK_EQ(bundle_in(x, &bag, &added, &skipped), FV_OK);
    CHECK_EQ(skipped, states);
    CHECK_EQ(get_state(x, a), FV_STATE_NEW);
    /* Through the server, they (and c2's, the latest) reach it. */
    bag_serve(x, &bag);
    serve(o->c2, x);
    CHECK_EQ(get_state(x, a), want);
    bag_free(&bag);
    fv_vault_close(x);
}

/* Review states held before the organisation key arrives are read once it
 * does. */
static void test_state_after_key_import(struct org *o, const unsigned char a[32])
{
    const char *d = new_path("late"), *key = new_path("orgkey");
    fv_vault *x = create(d);
    int want = get_state(o->c, a);

    carry(o->f1, x);
    serve(o->c, x);
    serve(o->c2, x);
    CHECK_EQ(get_state(x, a), -1); /* not readable at all yet */
    CHECK_EQ(fv_org_key_export(o->c, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    CHECK_EQ(fv_org_key_import(x, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    give_certs(o, x);
    CHECK(want > FV_STATE_NEW);
    CHECK_EQ(get_state(x, a), want);
    fv_vault_close(x);
}

static void test_filters(struct org *o, const unsigned char a[32],
                         const unsigned char b[32], const unsigned char d[32])
{
    fv_filter f = FV_FILTER_INIT;
    struct ids s;
    int64_t now = fv_v_now();
    unsigned char ab[2][32];
    fv_record *r = NULL;

    CHECK_EQ(query(o->c, NULL, &s), 3);
    CHECK_EQ(query(o->c, &f, &s), 3);
    /* Every read carries the creating device, state and notes. */
    CHECK_EQ(fv_record_get(o->c, &r, d), FV_OK);
    if (r) {
        CHECK(memcmp(r->origin, o->f2_id, 32) == 0);
        CHECK_EQ(r->state, FV_STATE_NEW);
        CHECK_EQ(r->nnotes, 0);
    }
    fv_record_free(r);

    f.state = get_state(o->c, a);
    CHECK_EQ(query(o->c, &f, &s), 1);
    CHECK(has_id(&s, a));
    f.state = FV_STATE_NEW;
    CHECK_EQ(query(o->c, &f, &s), 1);
    CHECK(has_id(&s, d));
    f.state = 7;
    CHECK_EQ(fv_vault_query(o->c, &f, ids_cb, &s), FV_EINVAL);

    f = (fv_filter)FV_FILTER_INIT;
    f.tag = "border";
    CHECK_EQ(query(o->c, &f, &s), 1);
    CHECK(has_id(&s, b));
    f.tag = "bord"; /* exact tags only */
    CHECK_EQ(query(o->c, &f, &s), 0);

    f = (fv_filter)FV_FILTER_INIT;
    f.origin = o->f2_id;
    CHECK_EQ(query(o->c, &f, &s), 1);
    CHECK(has_id(&s, d));
    f.origin = o->f1_id;
    CHECK_EQ(query(o->c, &f, &s), 2);
    CHECK(has_id(&s, a) && has_id(&s, b));
    f.origin = o->c_id;
    CHECK_EQ(query(o->c, &f, &s), 0);

    f = (fv_filter)FV_FILTER_INIT;
    f.since = now - 3600;
    CHECK_EQ(query(o->c, &f, &s), 3);
    f.since = now + 3600;
    CHECK_EQ(query(o->c, &f, &s), 0);
    f.since = 0; /* a real bound: 1970-01-01T00:00:00Z */
    CHECK_EQ(query(o->c, &f, &s), 3);
    f.until = 0;
    CHECK_EQ(query(o->c, &f, &s), 0);
    f.until = now - 3600;
    CHECK_EQ(query(o->c, &f, &s), 0);
    f.until = now + 3600;
    CHECK_EQ(query(o->c, &f, &s), 3);

    f = (fv_filter)FV_FILTER_INIT;
    f.text = "RIVER"; /* as fv_vault_search: ASCII case folded */
    CHECK_EQ(query(o->c, &f, &s), 1);
    CHECK(has_id(&s, d));

    /* Only these records, in this order. */
    f = (fv_filter)FV_FILTER_INIT;
    memcpy(ab[0], d, 32);
    memcpy(ab[1], b, 32);
    f.ids = (const unsigned char(*)[FV_ID_BYTES])ab;
    f.nids = 2;
    CHECK_EQ(query(o->c, &f, &s), 2);
    CHECK(memcmp(s.id[0], d, 32) == 0 && memcmp(s.id[1], b, 32) == 0);
    f.tag = "border"; /* and the other conditions still hold */
    CHECK_EQ(query(o->c, &f, &s), 1);
    CHECK(has_id(&s, b));

    /* Several conditions at once. */
    f = (fv_filter)FV_FILTER_INIT;
    f.origin = o->f1_id;
    f.state = FV_STATE_REVIEWED;
    f.tag = "border";
    CHECK_EQ(query(o->c, &f, &s), get_state(o->c, b) == FV_STATE_REVIEWED);

    /* A field device sees every record it holds as "new". */
    f = (fv_filter)FV_FILTER_INIT;
    f.state = FV_STATE_NEW;
    CHECK_EQ(query(o->f1, &f, &s), 2);

    /* fv_vault_search is a filter with text only. */
    memset(&s, 0, sizeof s);
    CHECK_EQ(fv_vault_search(o->c, "river", ids_cb, &s), FV_OK);
    CHECK_EQ(s.n, 1);
}

static void test_notes(struct org *o, const unsigned char a[32],
                       const unsigned char d[32])
{
    unsigned char nid[32], cbox[32], f1box[32], f2box[32], sp[32];
    struct notes s;
    struct bag bag;
    fv_record *r = NULL;
    fv_env e;
    size_t i;
    char *big;

    fv_vs_device(o->c, sp, cbox);
    fv_vs_device(o->f1, sp, f1box);
    fv_vs_device(o->f2, sp, f2box);

    CHECK_EQ(fv_note_add(o->c, nid, a, ""), FV_EINVAL);
    CHECK_EQ(fv_note_add(o->c, nid, a, "\xff\xfe"), FV_EINVAL);
    big = malloc(FV_MAX_NOTE_BYTES + 2);
    memset(big, 'x', FV_MAX_NOTE_BYTES + 1);
    big[FV_MAX_NOTE_BYTES + 1] = 0;
    CHECK_EQ(fv_note_add(o->c, nid, a, big), FV_EINVAL);
    {
        unsigned char none[32] = {9};
        CHECK_EQ(fv_note_add(o->c, nid, none, "hello"), FV_ENOTFOUND);
    }

    CHECK_EQ(fv_note_add(o->c, nid, a, "Please call the witness back."), FV_OK);
    CHECK_EQ(notes(o->c, a, &s), 1);
    CHECK(strcmp(s.text[0], "Please call the witness back.") == 0);
    CHECK(memcmp(s.author[0], o->c_id, 32) == 0);
    CHECK(memcmp(s.record[0], a, 32) == 0);
    CHECK_EQ(notes(o->c, d, &s), 0);
    CHECK_EQ(fv_record_get(o->c, &r, a), FV_OK);
    if (r)
        CHECK_EQ(r->nnotes, 1);
    fv_record_free(r);
    r = NULL;

    /* Sealed to the writer, the record's creating device and the
     * organisation: not to the other field device. */
    bag_fill(&bag, o->c);
    i = last_of_kind(&bag, FV_ENV_NOTE, &e);
    CHECK(i != (size_t)-1);
    if (i != (size_t)-1) {
        CHECK(memcmp(e.id, nid, 32) == 0);
        CHECK_EQ(e.nrecipients, 3);
        CHECK(sealed_to(&e, cbox) && sealed_to(&e, f1box) && sealed_to(&e, o->pk));
        CHECK(!sealed_to(&e, f2box));
        fv_env_clear(&e);
    }
    /* Nothing of the text is in the vault in clear. */
    CHECK(!vault_has(o->dc, (const unsigned char *)"call the witness", 16));
    bag_import(o->f1, &bag);
    bag_import(o->f2, &bag);
    bag_free(&bag);

    /* The author device reads it after the "sync"; another device cannot. */
    CHECK_EQ(notes(o->f1, NULL, &s), 1);
    CHECK(strcmp(s.text[0], "Please call the witness back.") == 0);
    CHECK_EQ(fv_record_get(o->f1, &r, a), FV_OK);
    if (r)
        CHECK_EQ(r->nnotes, 1);
    fv_record_free(r);
    r = NULL;
    CHECK_EQ(notes(o->f2, NULL, &s), 0);

    /* The field answers; the coordinators read both, oldest first. */
    CHECK_EQ(fv_note_add(o->f1, NULL, a, "Done: she confirmed the date.\nAll well."), FV_OK);
    carry(o->f1, o->c);
    carry(o->f1, o->c2);
    CHECK_EQ(notes(o->c, a, &s), 2);
    CHECK(strcmp(s.text[0], "Please call the witness back.") == 0);
    CHECK(strncmp(s.text[1], "Done: she confirmed", 19) == 0);
    CHECK(memcmp(s.author[1], o->f1_id, 32) == 0);
    CHECK_EQ(notes(o->c2, NULL, &s), 1); /* c's own note has not reached c2 */
    carry(o->c, o->c2);
    CHECK_EQ(notes(o->c2, NULL, &s), 2);

    /* The largest note. */
    big[FV_MAX_NOTE_BYTES] = 0;
    CHECK_EQ(fv_note_add(o->c, NULL, d, big), FV_OK);
    CHECK_EQ(notes(o->c, d, &s), 1);
    CHECK_EQ(strlen(s.text[0]), 63);
    free(big);
}

struct hist {
    size_t n, merges;
};

static int hist_cb(const fv_revision *rev, void *payload)
{
    struct hist *h = payload;
    h->n++;
    if (rev->nparents > 1)
        h->merges++;
    return 0;
}

struct heads {
    unsigned char id[4][FV_ID_BYTES];
    size_t n;
};

/* Counts revisions written by `author` and the others. */
struct by_author {
    const unsigned char *author;
    size_t mine, others;
};

static int by_author_cb(const fv_revision *rev, void *payload)
{
    struct by_author *b = payload;
    if (memcmp(rev->author, b->author, FV_ID_BYTES) == 0 && !rev->purged)
        b->mine++;
    else
        b->others++;
    return 0;
}

static int heads_cb(const fv_revision *rev, void *payload)
{
    struct heads *h = payload;
    if (rev->head && h->n < 4)
        memcpy(h->id[h->n++], rev->id, FV_ID_BYTES);
    return 0;
}

/* The value of field `key` in r, or NULL. */
static const char *field_of(const fv_record *r, const char *key)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].key, key) == 0)
            return r->fields[i].value;
    return NULL;
}

/* fv_record_get_revision on each head of record a's conflict (f1's edit
 * and c2's), on its genesis, and on what is not a readable revision of it. */
static void test_conflict_heads(struct org *o, const unsigned char a[32],
                                const unsigned char b[32])
{
    struct heads h;
    fv_record *r = NULL, *newest = NULL;
    size_t i, by_f1 = 0, by_c2 = 0, shown = 0;

    memset(&h, 0, sizeof h);
    CHECK_EQ(fv_record_history(o->c, a, heads_cb, &h), FV_OK);
    CHECK_EQ(h.n, 2);
    CHECK_EQ(fv_record_get(o->c, &newest, a), FV_OK);
    for (i = 0; i < h.n && newest; i++) {
        CHECK_EQ(fv_record_get_revision(o->c, &r, a, h.id[i]), FV_OK);
        if (!r)
            continue;
        CHECK(memcmp(r->id, a, 32) == 0);
        CHECK(memcmp(r->revision, h.id[i], 32) == 0);
        CHECK(memcmp(r->origin, o->f1_id, 32) == 0);
        CHECK_EQ(r->nheads, 2);
        CHECK_EQ(r->state, newest->state);
        CHECK_EQ(r->nnotes, newest->nnotes);
        CHECK(strcmp(r->title, "detained at the border post") == 0);
        if (memcmp(r->author, o->f1_id, 32) == 0) {
            by_f1++;
            CHECK(field_of(r, "place") && strcmp(field_of(r, "place"), "Yanji") == 0);
            CHECK(field_of(r, "witness") == NULL);
        } else if (memcmp(r->author, o->c2_id, 32) == 0) {
            by_c2++;
            CHECK(field_of(r, "witness") && strcmp(field_of(r, "witness"), "W-017") == 0);
            CHECK(field_of(r, "place") == NULL);
        }
        if (memcmp(r->revision, newest->revision, 32) == 0) {
            shown++;
            CHECK_EQ(r->nfields, newest->nfields);
            CHECK_EQ(r->modified, newest->modified);
        }
        fv_record_free(r);
        r = NULL;
    }
    CHECK_EQ(by_f1, 1);
    CHECK_EQ(by_c2, 1);
    CHECK_EQ(shown, 1);
    fv_record_free(newest);

    /* The genesis (the record id is its first revision's id). */
    CHECK_EQ(fv_record_get_revision(o->c, &r, a, a), FV_OK);
    if (r) {
        CHECK(memcmp(r->revision, a, 32) == 0);
        CHECK(memcmp(r->author, o->f1_id, 32) == 0);
        CHECK_EQ(r->nfields, 0);
        CHECK(r->narrative_len == strlen("three days without water") &&
              memcmp(r->narrative, "three days without water", r->narrative_len) == 0);
    }
    fv_record_free(r);
    r = NULL;

    /* Not a revision of this record, or of any. */
    CHECK_EQ(fv_record_get_revision(o->c, &r, a, b), FV_ENOTFOUND);
    CHECK(r == NULL);
    CHECK_EQ(fv_record_get_revision(o->c, &r, b, h.id[0]), FV_ENOTFOUND);
    {
        unsigned char none[32] = {9};
        CHECK_EQ(fv_record_get_revision(o->c, &r, a, none), FV_ENOTFOUND);
        CHECK(strcmp(fv_vault_errmsg(o->c), "no such revision of the record") == 0);
    }
    CHECK_EQ(fv_record_get_revision(o->c, NULL, a, a), FV_EINVAL);
    CHECK_EQ(fv_record_get_revision(NULL, &r, a, a), FV_EINVAL);
}

/* fv_record_get_revision where the revision is a tombstone, was destroyed
 * by a delete, or was tampered with in vault.db. */
static void test_revision_edges(void)
{
    const char *dir = new_path("revs");
    fv_vault *v = create(dir);
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char x[32], y[32], ey[32];
    fv_record *r = NULL;
    struct heads h;
    char p[400];
    sqlite3 *db;

    add(v, x, "to be deleted", "misc", "gone soon");
    add(v, y, "to be damaged", "misc", "a byte will change");
    in.title = "to be damaged, edited";
    CHECK_EQ(fv_record_edit(v, ey, y, &in), FV_OK);
    CHECK_EQ(fv_record_delete(v, x), FV_OK);
    CHECK_EQ(fv_record_get_revision(v, &r, x, x), FV_ENOTFOUND);
    memset(&h, 0, sizeof h);
    CHECK_EQ(fv_record_history(v, x, heads_cb, &h), FV_OK);
    CHECK_EQ(h.n, 1); /* the tombstone */
    if (h.n)
        CHECK_EQ(fv_record_get_revision(v, &r, x, h.id[0]), FV_ENOTFOUND);
    CHECK_EQ(fv_record_get_revision(v, &r, y, ey), FV_OK);
    if (r)
        CHECK(strcmp(r->title, "to be damaged, edited") == 0);
    fv_record_free(r);
    r = NULL;
    fv_vault_close(v);

    /* The last byte of the edit's envelope flipped on disk. */
    snprintf(p, sizeof p, "%s/vault.db", dir);
    CHECK_EQ(sqlite3_open(p, &db), SQLITE_OK);
    {
        sqlite3_stmt *st;
        CHECK_EQ(sqlite3_prepare_v2(db, "SELECT bytes FROM envelope WHERE id = ?1",
                                    -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_blob(st, 1, ey, 32, SQLITE_STATIC);
        CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
        {
            int n = sqlite3_column_bytes(st, 0);
            unsigned char *b = malloc((size_t)n);
            sqlite3_stmt *up;
            memcpy(b, sqlite3_column_blob(st, 0), (size_t)n);
            b[n - 1] ^= 1;
            CHECK_EQ(sqlite3_prepare_v2(db, "UPDATE envelope SET bytes = ?1 WHERE id = ?2",
                                        -1, &up, NULL), SQLITE_OK);
            sqlite3_bind_blob(up, 1, b, n, SQLITE_TRANSIENT);
            sqlite3_bind_blob(up, 2, ey, 32, SQLITE_STATIC);
            CHECK_EQ(sqlite3_step(up), SQLITE_DONE);
            sqlite3_finalize(up);
            free(b);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    v = NULL;
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_record_get_revision(v, &r, y, ey), FV_ECORRUPT);
    CHECK(r == NULL);
    CHECK_EQ(fv_record_get_revision(v, &r, y, y), FV_OK); /* the genesis is intact */
    fv_record_free(r);
    fv_vault_close(v);
}

/* Which head of a conflict a vault shows depends on the envelopes alone
 * (FORMAT.md 5.4): the two coordinators each write an edit of the same
 * record and then receive the other's, so each holds the two heads in the
 * opposite arrival order; both show the same one. The edits are made in the
 * same second (retried with a new record until they are), where the signed
 * time ties and the greater envelope id decides. */
static void test_conflict_shown_alike(struct org *o)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field f1[1] = {{"place", "first"}}, f2[1] = {{"place", "second"}};
    unsigned char x[32], e1[32], e2[32];
    fv_record *r1 = NULL, *r2 = NULL;
    int tie = 0;

    for (int attempt = 0; attempt < 10 && !tie; attempt++) {
        time_t before;
        add(o->f1, x, "two coordinators at once", "conflict", "who is shown");
        carry(o->f1, o->c);
        carry(o->f1, o->c2);
        before = time(NULL);
        in.fields = f1;
        in.nfields = 1;
        CHECK_EQ(fv_record_edit(o->c, e1, x, &in), FV_OK);
        in.fields = f2;
        CHECK_EQ(fv_record_edit(o->c2, e2, x, &in), FV_OK);
        tie = time(NULL) == before;
    }
    CHECK(tie);
    serve(o->c, o->c2);
    serve(o->c2, o->c);
    CHECK_EQ(fv_record_get(o->c, &r1, x), FV_OK);
    CHECK_EQ(fv_record_get(o->c2, &r2, x), FV_OK);
    if (r1 && r2) {
        CHECK_EQ(r1->nheads, 2);
        CHECK_EQ(r2->nheads, 2);
        CHECK_EQ(r1->modified, r2->modified);
        CHECK(memcmp(r1->revision, r2->revision, 32) == 0);
        /* The tie goes to the greater envelope id. */
        CHECK(memcmp(r1->revision, memcmp(e1, e2, 32) > 0 ? e1 : e2, 32) == 0);
        CHECK(strcmp(r1->fields[0].value, r2->fields[0].value) == 0);
    }
    fv_record_free(r1);
    fv_record_free(r2);
}

static void test_merge(struct org *o, const unsigned char a[32],
                       const unsigned char b[32])
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field f1[1] = {{"place", "Yanji"}}, f2[1] = {{"witness", "W-017"}};
    fv_field fm[1] = {{"status", "merged"}};
    unsigned char rev[32];
    fv_record *r = NULL;
    struct hist h = {0, 0};
    size_t nconf = 0;

    /* Concurrent edits: the field device and a coordinator, each unaware
     * of the other. */
    in.fields = f1;
    in.nfields = 1;
    CHECK_EQ(fv_record_edit(o->f1, NULL, a, &in), FV_OK);
    in.fields = f2;
    CHECK_EQ(fv_record_edit(o->c2, NULL, a, &in), FV_OK);
    carry(o->f1, o->c);
    carry(o->c2, o->c);
    CHECK_EQ(fv_record_get(o->c, &r, a), FV_OK);
    if (r)
        CHECK_EQ(r->nheads, 2);
    fv_record_free(r);
    r = NULL;
    CHECK_EQ(fv_vs_conflicts(o->c, &nconf), FV_OK);
    CHECK_EQ(nconf, 1);
    test_conflict_heads(o, a, b);

    in.fields = fm;
    CHECK_EQ(fv_record_merge(o->c, rev, a, &in), FV_OK);
    CHECK_EQ(fv_record_get(o->c, &r, a), FV_OK);
    if (r) {
        size_t i, seen = 0;
        CHECK_EQ(r->nheads, 1);
        CHECK(memcmp(r->revision, rev, 32) == 0);
        for (i = 0; i < r->nfields; i++)
            seen += strcmp(r->fields[i].key, "status") == 0 &&
                    strcmp(r->fields[i].value, "merged") == 0;
        CHECK_EQ(seen, 1);
        CHECK(memcmp(r->origin, o->f1_id, 32) == 0); /* still f1's record */
        CHECK(memcmp(r->author, o->c_id, 32) == 0);
    }
    fv_record_free(r);
    r = NULL;
    CHECK_EQ(fv_vs_conflicts(o->c, &nconf), FV_OK);
    CHECK_EQ(nconf, 0);
    /* Every revision stays: genesis, two edits, the merge of both. */
    CHECK_EQ(fv_record_history(o->c, a, hist_cb, &h), FV_OK);
    CHECK_EQ(h.n, 4);
    CHECK_EQ(h.merges, 1);

    /* The merge ends the conflict where it arrives too. */
    carry(o->c, o->c2);
    carry(o->f1, o->c2);
    CHECK_EQ(fv_record_get(o->c2, &r, a), FV_OK);
    if (r) {
        CHECK_EQ(r->nheads, 1);
        CHECK(memcmp(r->revision, rev, 32) == 0);
    }
    fv_record_free(r);
    r = NULL;

    /* With a single head a merge is an edit: one parent. */
    h.n = h.merges = 0;
    in.fields = f1;
    CHECK_EQ(fv_record_merge(o->c, rev, b, &in), FV_OK);
    CHECK_EQ(fv_record_history(o->c, b, hist_cb, &h), FV_OK);
    CHECK_EQ(h.n, 2);
    CHECK_EQ(h.merges, 0);
    {
        unsigned char none[32] = {7};
        CHECK_EQ(fv_record_merge(o->c, rev, none, &in), FV_ENOTFOUND);
    }
}

struct rlist {
    fv_retraction r[4];
    size_t n;
};

static int rlist_cb(const fv_retraction *r, void *payload)
{
    struct rlist *l = payload;
    if (l->n < 4)
        l->r[l->n++] = *r;
    return 0;
}

static const unsigned char attach_bytes[] = "evidence photo bytes, encrypted as chunks";

static long long read_once(unsigned char *buf, size_t cap, void *payload)
{
    int *done = payload;
    size_t n = sizeof attach_bytes;
    if (*done || cap < n)
        return 0;
    memcpy(buf, attach_bytes, n);
    *done = 1;
    return (long long)n;
}

static void test_retract(struct org *o)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_attachment_source src = {0};
    unsigned char d[32], x[32], probe[48], chunk_probe[48];
    char narrative[4000];
    struct bag bag, late, orig;
    struct rlist l;
    fv_record *r = NULL;
    struct notes s;
    fv_env e;
    int done = 0;
    size_t i;
    const char *tag = "retract-me";

    /* A record of f2's with an attachment, at the coordinators and f1 (as
     * if by a courier), with a note and a review state. */
    for (i = 0; i + 1 < sizeof narrative; i++)
        narrative[i] = (char)('a' + i % 26);
    narrative[i] = 0;
    in.title = "withdrawn testimony";
    in.narrative = narrative;
    in.narrative_len = strlen(narrative);
    in.tags = &tag;
    in.ntags = 1;
    src.name = "photo.jpg";
    src.read = read_once;
    src.read_payload = &done;
    in.attachments = &src;
    in.nattachments = 1;
    CHECK_EQ(fv_record_add(o->f2, d, &in), FV_OK);
    bag_fill(&bag, o->f2);
    i = last_of_kind(&bag, FV_ENV_REVISION, &e);
    CHECK(i != (size_t)-1);
    if (i != (size_t)-1) {
        /* Bytes from the middle of its ciphertext. */
        CHECK(e.ctlen > 2000);
        memcpy(probe, e.ct + e.ctlen / 2, sizeof probe);
        fv_env_clear(&e);
    }
    bag_import(o->c, &bag);
    bag_import(o->c2, &bag);
    bag_import(o->f1, &bag);
    orig = bag; /* kept to bring the record back later */
    {
        /* The attachment's chunk, as stored. */
        char p[400];
        sqlite3 *db;
        sqlite3_stmt *st;
        snprintf(p, sizeof p, "%s/vault.db", o->df2);
        CHECK_EQ(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        CHECK_EQ(sqlite3_prepare_v2(db, "SELECT hash, data FROM chunk", -1, &st, NULL), SQLITE_OK);
        CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
        CHECK(sqlite3_column_bytes(st, 1) >= (int)sizeof chunk_probe);
        memcpy(chunk_probe, sqlite3_column_blob(st, 1), sizeof chunk_probe);
        /* The coordinator downloads it, as a sync would. */
        CHECK_EQ(fv_vs_chunk_store(o->c, sqlite3_column_blob(st, 0),
                                   sqlite3_column_blob(st, 1),
                                   (size_t)sqlite3_column_bytes(st, 1)), FV_OK);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    CHECK_EQ(fv_note_add(o->c, NULL, d, "may we quote you?"), FV_OK);
    CHECK_EQ(fv_record_set_state(o->c, d, FV_STATE_REVIEWED), FV_OK);
    carry(o->c, o->f2);
    CHECK_EQ(notes(o->f2, d, &s), 1);
    CHECK(vault_has(o->dc, probe, sizeof probe));
    CHECK(vault_has(o->dc, chunk_probe, sizeof chunk_probe));
    CHECK(vault_has(o->df2, probe, sizeof probe));
    CHECK(vault_has(o->df2, chunk_probe, sizeof chunk_probe));

    /* Neither the author nor a coordinator: refused. */
    CHECK_EQ(fv_record_retract(o->f1, d), FV_EDENIED);
    {
        unsigned char none[32] = {5};
        CHECK_EQ(fv_record_retract(o->f2, none), FV_ENOTFOUND);
    }

    /* The author retracts: its copy goes at once. */
    CHECK_EQ(fv_record_retract(o->f2, d), FV_OK);
    CHECK_EQ(fv_record_get(o->f2, &r, d), FV_ENOTFOUND);
    CHECK(strcmp(fv_vault_errmsg(o->f2), "the record was retracted") == 0);
    CHECK_EQ(notes(o->f2, d, &s), 0);
    CHECK(!vault_has(o->df2, probe, sizeof probe));
    CHECK(!vault_has(o->df2, chunk_probe, sizeof chunk_probe));
    CHECK_EQ(db_count(o->df2, "SELECT count(*) FROM envelope WHERE record = ?1", d), 1);
    CHECK_EQ(fv_record_retract(o->f2, d), FV_ENOTFOUND); /* already */

    /* Meanwhile c2 writes a note about it, not knowing. */
    CHECK_EQ(fv_note_add(o->c2, NULL, d, "late note"), FV_OK);

    /* The retraction reaches a coordinator. */
    carry(o->f2, o->c);
    CHECK_EQ(fv_record_get(o->c, &r, d), FV_ENOTFOUND);
    CHECK(strcmp(fv_vault_errmsg(o->c), "the record was retracted") == 0);
    CHECK_EQ(fv_record_history(o->c, d, hist_cb, &(struct hist){0, 0}), FV_ENOTFOUND);
    CHECK_EQ(fv_record_get_revision(o->c, &r, d, d), FV_ENOTFOUND);
    CHECK(strcmp(fv_vault_errmsg(o->c), "the record was retracted") == 0);
    CHECK_EQ(notes(o->c, d, &s), 0);
    CHECK(!vault_has(o->dc, probe, sizeof probe));
    CHECK(!vault_has(o->dc, chunk_probe, sizeof chunk_probe));
    CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM envelope WHERE record = ?1", d), 1);
    CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM review WHERE record = ?1", d), 0);
    CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM note WHERE record = ?1", d), 0);
    {
        fv_filter f = FV_FILTER_INIT;
        struct ids q;
        f.tag = tag;
        CHECK_EQ(query(o->c, &f, &q), 0);
    }
    memset(&l, 0, sizeof l);
    CHECK_EQ(fv_retraction_list(o->c, rlist_cb, &l), FV_OK);
    CHECK_EQ(l.n, 1);
    CHECK(memcmp(l.r[0].record, d, 32) == 0);
    CHECK(memcmp(l.r[0].author, o->f2_id, 32) == 0);
    CHECK(l.r[0].time > 0);

    /* What arrives later is dropped: c2's late note, and the record again. */
    bag_fill(&late, o->c2);
    bag_import(o->c, &late);
    bag_free(&late);
    bag_import(o->c, &orig);
    bag_free(&orig);
    CHECK_EQ(notes(o->c, d, &s), 0);
    CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM envelope WHERE record = ?1", d), 1);
    CHECK_EQ(fv_record_get(o->c, &r, d), FV_ENOTFOUND);
    /* Importing the same retraction twice changes nothing either. */
    carry(o->f2, o->c);
    memset(&l, 0, sizeof l);
    CHECK_EQ(fv_retraction_list(o->c, rlist_cb, &l), FV_OK);
    CHECK_EQ(l.n, 1);

    /* A coordinator may retract a field device's record; it reaches the
     * author device, which destroys its copy. */
    add(o->f1, x, "second thoughts", "misc", "the witness asked us to stop");
    carry(o->f1, o->c);
    CHECK_EQ(fv_record_retract(o->c, x), FV_OK);
    CHECK_EQ(fv_record_get(o->c, &r, x), FV_ENOTFOUND);
    bag_fill(&bag, o->c);
    i = last_of_kind(&bag, FV_ENV_RETRACTION, &e);
    CHECK(i != (size_t)-1);
    if (i != (size_t)-1) {
        unsigned char cbox[32], f1box[32], sp[32];
        fv_vs_device(o->c, sp, cbox);
        fv_vs_device(o->f1, sp, f1box);
        CHECK(sealed_to(&e, cbox) && sealed_to(&e, f1box) && sealed_to(&e, o->pk));
        CHECK(memcmp(e.record, x, 32) == 0);
        fv_env_clear(&e);
    }
    bag_free(&bag);
    CHECK_EQ(fv_record_get(o->f1, &r, x), FV_OK);
    fv_record_free(r);
    r = NULL;
    /* By courier the field device cannot tell a coordinator's retraction
     * from anyone's: it waits for the server. */
    carry(o->c, o->f1);
    CHECK_EQ(fv_record_get(o->f1, &r, x), FV_OK);
    fv_record_free(r);
    r = NULL;
    deliver(o->c, o->f1);
    CHECK_EQ(fv_record_get(o->f1, &r, x), FV_ENOTFOUND);
    CHECK(strcmp(fv_vault_errmsg(o->f1), "the record was retracted") == 0);
    memset(&l, 0, sizeof l);
    CHECK_EQ(fv_retraction_list(o->f1, rlist_cb, &l), FV_OK);
    CHECK(l.n >= 1);
    /* The field device's own copy is refused after the retraction too. */
    carry(o->f1, o->c);
    CHECK_EQ(fv_record_get(o->c, &r, x), FV_ENOTFOUND);
    CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM envelope WHERE record = ?1", x), 1);

    /* A retraction forged by another device (signed, but not by the
     * record's author) in a courier bundle destroys nothing. */
    {
        unsigned char y[32], rid[32], *p = NULL, recips[1][32], sp[32];
        size_t n = 0;
        add(o->f2, y, "kept", "misc", "this one stays");
        carry(o->f2, o->c);
        carry(o->f2, o->f1);
        fv_vs_device(o->f1, sp, recips[0]);
        CHECK_EQ(fv_tombstone_encode(&p, &n, fv_v_now()), FV_OK);
        CHECK_EQ(fv_store_begin(o->f1->store), FV_OK);
        {
            fv_v_write w = {
                .kind = FV_ENV_RETRACTION,
                .record = y,
                .parents = (const unsigned char(*)[FV_ID_BYTES])y,
                .nparents = 1,
                .payload = p,
                .payload_len = n,
                .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips,
                .nrecipients = 1,
            };
            CHECK_EQ(fv_v_write_envelope(o->f1, rid, &w), FV_OK);
        }
        CHECK_EQ(fv_store_commit(o->f1->store), FV_OK);
        fv_enc_free_buf(p, n);
        carry(o->f1, o->c);
        CHECK_EQ(fv_record_get(o->c, &r, y), FV_OK);
        fv_record_free(r);
        r = NULL;
        CHECK_EQ(db_count(o->dc, "SELECT count(*) FROM envelope WHERE kind = 6 AND record = ?1", y), 0);
    }
}

/* fv_vs_check on the sync's worker pool, as sync/session.c runs it. */
struct pool_checks {
    const fv_vault *v;
    const struct bag *b;
    fv_vs_checked *out;
};

static void pool_check_fn(void *ctx, size_t from, size_t to)
{
    struct pool_checks *k = ctx;
    for (size_t i = from; i < to; i++)
        fv_vs_check(k->v, k->b->env[i], k->b->len[i], &k->out[i]);
}

/* A pulled batch imported the way a sync does: checked on three threads
 * and the caller's in slices of three, then applied in order. */
static int import_pooled(fv_vault *to, const fv_sync_state *st,
                         const struct bag *b, size_t *added, size_t *refused)
{
    fv_wpool *p = NULL;
    fv_vs_checked *chk = fv_secure_alloc(b->n * sizeof *chk);
    struct pool_checks k = {to, b, chk};
    int rc;
    CHECK(chk != NULL);
    CHECK_EQ(fv_wpool_new(&p, 3, 0), FV_OK);
    CHECK_EQ(fv_wpool_run(p, pool_check_fn, &k, b->n, 3), FV_OK);
    fv_wpool_free(p);
    rc = fv_vs_import_checked(to, st, (const unsigned char *const *)b->env,
                              b->len, chk, b->n, added, refused);
    fv_secure_free(chk);
    return rc;
}

/* Envelopes as the server's feed delivers them to field device `to` (the
 * chain already checked by the sync engine). */
static int feed(fv_vault *to, unsigned char *const *env, const size_t *len,
                size_t n, size_t *added)
{
    fv_sync_state st;
    size_t refused = 0;
    int rc;
    memset(&st, 0, sizeof st);
    st.role = FV_ROLE_FIELD;
    rc = fv_vs_import(to, &st, (const unsigned char *const *)env, len, n, added,
                      &refused);
    CHECK_EQ(refused, 0);
    return rc;
}

/* The server routes a coordinator's retraction to every field device that
 * held part of the record, though it is sealed to the record's creator
 * only: here f1 holds f2's record (ciphertext it cannot open, carried by
 * courier). From the feed the retraction is taken and destroys that copy;
 * anything else not sealed to the device, or a retraction that fails its
 * signature, is still refused. */
static void test_retract_unsealed(struct org *o)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char w[32], f1box[32], sp[32], probe[48];
    char narrative[3000];
    struct bag bag;
    fv_record *r = NULL;
    fv_env e;
    size_t i, ri, ni, added = 0;
    const char *tag = "held-by-two";

    for (i = 0; i + 1 < sizeof narrative; i++)
        narrative[i] = (char)('A' + i % 26);
    narrative[i] = 0;
    in.title = "told to two workers";
    in.narrative = narrative;
    in.narrative_len = strlen(narrative);
    in.tags = &tag;
    in.ntags = 1;
    CHECK_EQ(fv_record_add(o->f2, w, &in), FV_OK);
    bag_fill(&bag, o->f2);
    i = last_of_kind(&bag, FV_ENV_REVISION, &e);
    CHECK(i != (size_t)-1);
    if (i != (size_t)-1) {
        memcpy(probe, e.ct + e.ctlen / 2, sizeof probe);
        fv_env_clear(&e);
    }
    bag_free(&bag);
    carry(o->f2, o->c);
    carry(o->f2, o->f1);
    CHECK(vault_has(o->df1, probe, sizeof probe));
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM envelope WHERE record = ?1", w), 1);

    CHECK_EQ(fv_note_add(o->c, NULL, w, "to the author only"), FV_OK);
    CHECK_EQ(fv_record_retract(o->c, w), FV_OK);
    fv_vs_device(o->f1, sp, f1box);
    bag_fill(&bag, o->c);
    ni = last_of_kind(&bag, FV_ENV_NOTE, &e);
    CHECK(ni != (size_t)-1);
    if (ni != (size_t)-1) {
        CHECK(!sealed_to(&e, f1box));
        fv_env_clear(&e);
    }
    ri = last_of_kind(&bag, FV_ENV_RETRACTION, &e);
    CHECK(ri != (size_t)-1);
    if (ri == (size_t)-1 || ni == (size_t)-1) {
        bag_free(&bag);
        return;
    }
    CHECK(!sealed_to(&e, f1box)); /* sealed to c, the organisation, f2 */
    CHECK(memcmp(e.record, w, 32) == 0);
    fv_env_clear(&e);

    /* By courier f1 cannot tell who may retract: nothing is destroyed. */
    bag_import(o->f1, &(struct bag){.env = {bag.env[ri]}, .len = {bag.len[ri]}, .n = 1});
    CHECK(vault_has(o->df1, probe, sizeof probe));
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM envelope WHERE kind = 6 AND record = ?1", w), 0);

    /* A note not sealed to f1 in its feed: refused, nothing stored. */
    CHECK_EQ(feed(o->f1, &bag.env[ni], &bag.len[ni], 1, &added), FV_EPROTO);
    CHECK(strstr(fv_vault_errmsg(o->f1), "not meant for this device") != NULL);
    /* A retraction whose signature fails: refused too. */
    {
        unsigned char *t = malloc(bag.len[ri]);
        size_t tl = bag.len[ri];
        memcpy(t, bag.env[ri], tl);
        t[tl - 1] ^= 1;
        CHECK_EQ(feed(o->f1, &t, &tl, 1, &added), FV_EPROTO);
        free(t);
    }
    CHECK(vault_has(o->df1, probe, sizeof probe));
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM envelope WHERE record = ?1", w), 1);

    /* The coordinator's retraction in the feed, with the note that failed
     * before left out as the server leaves it: the sync's import succeeds
     * and f1's copy is destroyed; the retraction alone stays. */
    CHECK_EQ(feed(o->f1, &bag.env[ri], &bag.len[ri], 1, &added), FV_OK);
    CHECK_EQ(added, 1);
    CHECK_EQ(fv_record_get(o->f1, &r, w), FV_ENOTFOUND);
    CHECK(strcmp(fv_vault_errmsg(o->f1), "the record was retracted") == 0);
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM envelope WHERE record = ?1", w), 1);
    CHECK_EQ(db_count(o->df1, "SELECT count(*) FROM envelope WHERE kind = 6 AND record = ?1", w), 1);
    CHECK(!vault_has(o->df1, probe, sizeof probe));
    {
        struct rlist l;
        size_t k, seen = 0;
        memset(&l, 0, sizeof l);
        CHECK_EQ(fv_retraction_list(o->f1, rlist_cb, &l), FV_OK);
        for (k = 0; k < l.n; k++)
            seen += memcmp(l.r[k].record, w, 32) == 0 &&
                    memcmp(l.r[k].author, o->c_id, 32) == 0;
        CHECK_EQ(seen, 1);
    }
    /* Delivered again (a cut sync): nothing changes. */
    CHECK_EQ(feed(o->f1, &bag.env[ri], &bag.len[ri], 1, &added), FV_OK);
    CHECK_EQ(added, 0);
    bag_free(&bag);
}

static int stop_cb(const fv_record *r, void *payload)
{
    (void)r;
    (*(int *)payload)++;
    return 1;
}

/* Edge cases of queries, and a database from before the desk tables. */
static void test_edges(struct org *o, const unsigned char a[32])
{
    fv_filter f = FV_FILTER_INIT;
    unsigned char two[2][32] = {{0}};
    const char *dir = new_path("old");
    fv_vault *v = create(dir);
    int calls = 0;
    char p[400];
    sqlite3 *db;

    /* The caller stops a listing. */
    CHECK_EQ(fv_vault_query(o->c, NULL, stop_cb, &calls), FV_ECANCELED);
    CHECK_EQ(calls, 1);
    /* An unknown id among the ids, or a malformed filter. */
    memcpy(two[0], a, 32);
    two[1][0] = 0x42;
    f.ids = (const unsigned char(*)[FV_ID_BYTES])two;
    f.nids = 2;
    CHECK_EQ(fv_vault_query(o->c, &f, stop_cb, &calls), FV_ECANCELED);
    f.nids = 2;
    memcpy(two[0], two[1], 32);
    CHECK_EQ(fv_vault_query(o->c, &f, stop_cb, &calls), FV_ENOTFOUND);
    f = (fv_filter)FV_FILTER_INIT;
    f.version = 99;
    CHECK_EQ(fv_vault_query(o->c, &f, stop_cb, &calls), FV_EINVAL);
    f = (fv_filter)FV_FILTER_INIT;
    f.nids = 1; /* without ids */
    CHECK_EQ(fv_vault_query(o->c, &f, stop_cb, &calls), FV_EINVAL);

    /* A revision that arrives without its record's genesis (another
     * device's edit, by courier) is read with its origin unknown. */
    {
        const char *dw = new_path("partial"), *key = new_path("orgkey");
        fv_vault *w = create(dw);
        static const unsigned char zero[32];
        fv_record *r = NULL;
        struct ids q;
        CHECK_EQ(fv_org_key_export(o->c, key, RECOVERY, strlen(RECOVERY)), FV_OK);
        CHECK_EQ(fv_org_key_import(w, key, RECOVERY, strlen(RECOVERY)), FV_OK);
        give_certs(o, w);
        carry(o->c2, w); /* c2's edit of a, not f1's genesis */
        CHECK_EQ(fv_record_get(w, &r, a), FV_OK);
        if (r) {
            CHECK(memcmp(r->origin, zero, 32) == 0);
            CHECK(memcmp(r->author, o->c2_id, 32) == 0);
        }
        fv_record_free(r);
        CHECK(query(w, NULL, &q) >= 1);
        /* Its history is what the vault holds: c2's revisions, no genesis;
         * an id the vault knows nothing of is still no record. */
        struct by_author b = {o->c2_id, 0, 0};
        unsigned char unknown[32];
        CHECK_EQ(fv_record_history(w, a, by_author_cb, &b), FV_OK);
        CHECK(b.mine >= 1);
        CHECK_EQ(b.others, 0);
        memset(unknown, 0x5a, sizeof unknown);
        CHECK_EQ(fv_record_history(w, unknown, by_author_cb, &b), FV_ENOTFOUND);
        CHECK(strcmp(fv_vault_errmsg(w), "no such record") == 0);
        fv_vault_close(w);
    }

    /* A vault.db without the desk tables (an earlier build's) is refused
     * as not recognised, not used half-way. */
    fv_vault_close(v);
    snprintf(p, sizeof p, "%s/vault.db", dir);
    CHECK_EQ(sqlite3_open(p, &db), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(db, "DROP TABLE review", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    v = NULL;
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_ECORRUPT);
    fv_vault_close(v);
}

static int ids_of(int64_t s, const unsigned char *id, const unsigned char *bytes,
                  size_t len, void *payload)
{
    struct ids *l = payload;
    (void)s;
    (void)bytes;
    (void)len;
    if (l->n < 16)
        memcpy(l->id[l->n++], id, FV_ID_BYTES);
    return 0;
}

/* Retention drops a delivered record from the field device; notes about it
 * stay readable, arrive later, and the device can still answer and
 * retract. */
static void test_retention(struct org *o)
{
    unsigned char z[32], sig[64] = {0};
    const unsigned char *idp[16];
    struct ids out;
    struct notes s;
    fv_record *r = NULL;
    size_t dropped = 0;

    CHECK_EQ(fv_vault_set_retention(o->f1, FV_RETENTION_DROP_AFTER_RECEIPT), FV_OK);
    add(o->f1, z, "kept at the office", "misc", "a record delivered, then dropped");
    carry(o->f1, o->c);
    CHECK_EQ(fv_note_add(o->c, NULL, z, "first note"), FV_OK);
    deliver(o->c, o->f1);
    CHECK_EQ(notes(o->f1, z, &s), 1);
    /* Every envelope f1 wrote has its receipt. */
    memset(&out, 0, sizeof out);
    do {
        out.n = 0;
        CHECK_EQ(fv_vs_outbox(o->f1, 0, 16, ids_of, &out), FV_OK);
        for (size_t i = 0; i < out.n; i++)
            idp[i] = out.id[i];
        if (out.n)
            CHECK_EQ(fv_vs_delivered(o->f1, NULL, (const unsigned char *)"r", 1, sig,
                                     idp, NULL, out.n), FV_OK);
    } while (out.n == 16);
    CHECK_EQ(fv_vs_apply_retention(o->f1, &dropped), FV_OK);
    CHECK(dropped >= 1);
    CHECK_EQ(fv_record_get(o->f1, &r, z), FV_ENOTFOUND);
    CHECK_EQ(notes(o->f1, z, &s), 1);
    CHECK(strcmp(s.text[0], "first note") == 0);

    CHECK_EQ(fv_note_add(o->c, NULL, z, "second note"), FV_OK);
    deliver(o->c, o->f1);
    CHECK_EQ(fv_vs_apply_retention(o->f1, &dropped), FV_OK);
    CHECK_EQ(notes(o->f1, z, &s), 2);
    CHECK_EQ(fv_note_add(o->f1, NULL, z, "answered"), FV_OK);
    carry(o->f1, o->c);
    CHECK_EQ(notes(o->c, z, &s), 3);
    CHECK_EQ(fv_record_retract(o->f1, z), FV_OK);
    CHECK_EQ(notes(o->f1, z, &s), 0);
    carry(o->f1, o->c);
    CHECK_EQ(fv_record_get(o->c, &r, z), FV_ENOTFOUND);
    CHECK_EQ(notes(o->c, z, &s), 0);
}

/* ---- envelope MACs (docs/FORMAT.md 10) ------------------------------------ */

/* One envelope row's bytes (malloc'd) or mac, by id. */
static unsigned char *env_col(const char *dir, const char *col,
                              const unsigned char id[FV_ID_BYTES], size_t *n)
{
    char p[400], sql[100];
    sqlite3 *db;
    sqlite3_stmt *st;
    unsigned char *out = NULL;
    *n = 0;
    snprintf(p, sizeof p, "%s/vault.db", dir);
    snprintf(sql, sizeof sql, "SELECT %s FROM envelope WHERE id = ?1", col);
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, id, FV_ID_BYTES, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_blob(st, 0)) {
            *n = (size_t)sqlite3_column_bytes(st, 0);
            out = malloc(*n);
            memcpy(out, sqlite3_column_blob(st, 0), *n);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return out;
}

/* Sets the row `id`'s bytes, id and mac (mac NULL: SQL NULL). */
static void env_set(const char *dir, const unsigned char id[FV_ID_BYTES],
                    const unsigned char *bytes, size_t n,
                    const unsigned char new_id[FV_ID_BYTES],
                    const unsigned char *mac, size_t macn)
{
    char p[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR;
    snprintf(p, sizeof p, "%s/vault.db", dir);
    CHECK_EQ(sqlite3_open(p, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, "UPDATE envelope SET bytes = ?2, id = ?3, "
                               "mac = ?4 WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, id, FV_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, bytes, (int)n, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, new_id, FV_ID_BYTES, SQLITE_STATIC);
        if (mac)
            sqlite3_bind_blob(st, 4, mac, (int)macn, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    CHECK_EQ(rc, SQLITE_DONE);
    CHECK_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
}

static int count_rec_cb(const fv_record *r, void *payload)
{
    (void)r;
    (*(int *)payload)++;
    return 0;
}

/* What a coordinator's vault reads of record `a` whose head is `rev`:
 * fv_record_get's result, the records listed and list's result, and
 * fv_vault_verify's result and failures. */
static void mac_reads(struct org *o, const unsigned char a[32], int want_get,
                      int want_list, int want_verify)
{
    fv_record *r = NULL;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    int n = 0;
    CHECK_EQ(fv_vault_open(&o->c, o->dc, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_record_get(o->c, &r, a), want_get);
    if (want_get == FV_OK && r)
        CHECK(strcmp(r->title, "edited") == 0);
    fv_record_free(r);
    CHECK_EQ(fv_vault_list(o->c, count_rec_cb, &n), want_list);
    CHECK_EQ(n, want_list == FV_OK ? 1 : 0);
    rep = (fv_verify_report)FV_VERIFY_REPORT_INIT;
    CHECK_EQ(fv_vault_verify(o->c, &rep, NULL, NULL), want_verify);
    CHECK(want_verify == FV_OK ? rep.failures == 0 : rep.failures >= 1);
    fv_vault_close(o->c);
    o->c = NULL;
}

/* Each stored envelope carries the vault's MAC (own writes and imports); a
 * read skips the signature only for bytes whose MAC matches, falls back to
 * the full verify when it is missing or wrong, and fv_vault_verify checks
 * every signature whatever the MACs say. */
static void test_env_macs(void)
{
    struct org o;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char a[32], rev[32], bad_id[32], forged[32], *bytes, *mac, *bad;
    size_t len, maclen;

    org_setup(&o);
    add(o.f1, a, "first", "detention", "the first account");
    in.title = "edited";
    in.narrative = "the second account";
    in.narrative_len = strlen(in.narrative);
    CHECK_EQ(fv_record_edit(o.f1, rev, a, &in), FV_OK);
    carry(o.f1, o.c);
    CHECK(db_count(o.df1, "SELECT count(*) FROM envelope", NULL) >= 2);
    CHECK_EQ(db_count(o.df1, "SELECT count(*) FROM envelope WHERE "
                             "length(mac) IS NOT 32", NULL), 0);
    CHECK(db_count(o.dc, "SELECT count(*) FROM envelope", NULL) >= 2);
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE "
                            "length(mac) IS NOT 32", NULL), 0);
    fv_vault_close(o.c);
    o.c = NULL;

    bytes = env_col(o.dc, "bytes", rev, &len);
    mac = env_col(o.dc, "mac", rev, &maclen);
    CHECK(bytes && mac && maclen == 32);
    if (!bytes || !mac || maclen != 32)
        goto out;
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);

    /* A missing or garbage MAC on intact bytes: the full verify, and read. */
    env_set(o.dc, rev, bytes, len, rev, NULL, 0);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    unsigned char junk[32];
    fv_random(junk, sizeof junk);
    env_set(o.dc, rev, bytes, len, rev, junk, sizeof junk);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    env_set(o.dc, rev, bytes, len, rev, junk, 7);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);

    /* A flipped signature byte, filed under the new bytes' hash so that the
     * content address holds: the old MAC no longer matches, the signature
     * is checked and fails. */
    bad = malloc(len);
    memcpy(bad, bytes, len);
    bad[len - 1] ^= 0x01; /* the last byte of the COSE signature */
    fv_hash(bad_id, bad, len);
    env_set(o.dc, rev, bad, len, bad_id, mac, maclen);
    mac_reads(&o, a, FV_ECORRUPT, FV_ECORRUPT, FV_ECORRUPT);
    env_set(o.dc, bad_id, bad, len, bad_id, junk, sizeof junk);
    mac_reads(&o, a, FV_ECORRUPT, FV_ECORRUPT, FV_ECORRUPT);

    /* Only the vault key makes a MAC that matches: made with it, the read
     * takes the bad signature (the passphrase holder vouched for it), and
     * fv_vault_verify, which ignores MACs, still finds it. */
    CHECK_EQ(fv_vault_open(&o.c, o.dc, PASS, strlen(PASS)), FV_OK);
    fv_v_env_mac(o.c, forged, bad, len);
    fv_vault_close(o.c);
    o.c = NULL;
    env_set(o.dc, bad_id, bad, len, bad_id, forged, sizeof forged);
    mac_reads(&o, a, FV_OK, FV_OK, FV_ECORRUPT);

    /* Restored: everything reads and verifies again. */
    env_set(o.dc, bad_id, bytes, len, rev, mac, maclen);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    free(bad);
out:
    free(bytes);
    free(mac);
    CHECK_EQ(fv_vault_open(&o.c, o.dc, PASS, strlen(PASS)), FV_OK);
    org_close(&o);
}

/* Sets row `id`'s ckey (NULL: SQL NULL). */
static void ckey_set(const char *dir, const unsigned char id[FV_ID_BYTES],
                     const unsigned char *ckey, size_t n)
{
    char p[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR;
    snprintf(p, sizeof p, "%s/vault.db", dir);
    CHECK_EQ(sqlite3_open(p, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, "UPDATE envelope SET ckey = ?2 WHERE id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, id, FV_ID_BYTES, SQLITE_STATIC);
        if (ckey)
            sqlite3_bind_blob(st, 2, ckey, (int)n, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    CHECK_EQ(rc, SQLITE_DONE);
    CHECK_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
}

/* An imported envelope keeps its content key wrapped (envelope.ckey), and
 * reads open with it; a wrapped key that is garbage, another row's, or a
 * well wrapped key that is not the envelope's committed one costs the full
 * open, nothing more. A schema 1 file gains the column when opened. */
static void test_ckeys(void)
{
    struct org o;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char a[32], rev[32], junk[FV_STORE_CKEY_BYTES], key[32];
    unsigned char *ck, *other;
    size_t n = 0, m = 0;

    org_setup(&o);
    add(o.f1, a, "first", "detention", "the first account");
    in.title = "edited";
    in.narrative = "the second account";
    in.narrative_len = strlen(in.narrative);
    CHECK_EQ(fv_record_edit(o.f1, rev, a, &in), FV_OK);
    carry(o.f1, o.c);
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE kind = 1", NULL), 2);
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE kind = 1 "
                            "AND length(ckey) = 48", NULL), 2);
    fv_vault_close(o.c);
    o.c = NULL;
    ck = env_col(o.dc, "ckey", rev, &n);
    other = env_col(o.dc, "ckey", a, &m);
    CHECK(ck && n == FV_STORE_CKEY_BYTES && other && m == FV_STORE_CKEY_BYTES);
    if (!ck || !other || n != FV_STORE_CKEY_BYTES || m != FV_STORE_CKEY_BYTES)
        goto out;
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);

    fv_random(junk, sizeof junk);
    ckey_set(o.dc, rev, junk, sizeof junk);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    ckey_set(o.dc, rev, junk, 7);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    ckey_set(o.dc, rev, other, m); /* bound to the other id */
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    CHECK_EQ(fv_vault_open(&o.c, o.dc, PASS, strlen(PASS)), FV_OK);
    fv_random(key, sizeof key);
    fv_v_ckey_wrap(o.c, junk, rev, key); /* opens, but not the committed key */
    fv_vault_close(o.c);
    o.c = NULL;
    ckey_set(o.dc, rev, junk, sizeof junk);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    ckey_set(o.dc, rev, ck, n);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);

    /* Schema 1, as an older build wrote it: upgraded at open, read alike,
     * and the next import keeps keys again. */
    {
        char p[400];
        sqlite3 *db;
        snprintf(p, sizeof p, "%s/vault.db", o.dc);
        CHECK_EQ(sqlite3_open(p, &db), SQLITE_OK);
        CHECK_EQ(sqlite3_exec(db, "ALTER TABLE envelope DROP COLUMN ckey; "
                                  "PRAGMA user_version = 1", NULL, NULL, NULL),
                 SQLITE_OK);
        sqlite3_close(db);
    }
    CHECK_EQ(db_count(o.dc, "PRAGMA user_version", NULL), 1);
    mac_reads(&o, a, FV_OK, FV_OK, FV_OK);
    CHECK_EQ(db_count(o.dc, "PRAGMA user_version", NULL), 2);
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE ckey IS NULL",
                      NULL), db_count(o.dc, "SELECT count(*) FROM envelope", NULL));
    CHECK_EQ(fv_vault_open(&o.c, o.dc, PASS, strlen(PASS)), FV_OK);
    add(o.f1, a, "second", "detention", "another account");
    carry(o.f1, o.c);
    fv_vault_close(o.c);
    o.c = NULL;
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE length(ckey) = 48",
                      NULL), 1);
    /* Destroying a record's ciphertext destroys its wrapped keys with it
     * (crypto-shredding: SECURITY.md). */
    CHECK_EQ(fv_vault_open(&o.c, o.dc, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_store_begin(o.c->store), FV_OK);
    CHECK_EQ(fv_store_drop_record(o.c->store, a), FV_OK);
    CHECK_EQ(fv_store_commit(o.c->store), FV_OK);
    fv_vault_close(o.c);
    o.c = NULL;
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE bytes IS NULL",
                      NULL), 1);
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE ckey IS NOT NULL",
                      NULL), 0);
out:
    free(ck);
    free(other);
    fv_wipe(key, sizeof key);
    CHECK_EQ(fv_vault_open(&o.c, o.dc, PASS, strlen(PASS)), FV_OK);
    org_close(&o);
}

/* Writes, in coordinator `c`, an envelope of `kind` about record `id`
 * whose (well sealed, signed) payload is `payload`: what a buggy or hostile
 * writer could put in a vault. */
static void write_raw_desk(fv_vault *c, const unsigned char pk[32], int kind,
                           const unsigned char id[32], unsigned char *payload,
                           size_t n)
{
    unsigned char recips[2][32], sp[32], eid[32];
    fv_vs_device(c, sp, recips[0]);
    memcpy(recips[1], pk, 32);
    fv_v_write w = {
        .kind = kind,
        .record = id,
        .parents = (const unsigned char(*)[FV_ID_BYTES])id,
        .nparents = 1,
        .payload = payload,
        .payload_len = n,
        .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips,
        .nrecipients = 2,
    };
    CHECK_EQ(fv_store_begin(c->store), FV_OK);
    CHECK_EQ(fv_v_write_envelope(c, eid, &w), FV_OK);
    CHECK_EQ(fv_store_commit(c->store), FV_OK);
    fv_enc_free_buf(payload, n);
}

/* fv_vault_verify decodes what notes, review states and retractions say,
 * not only that they decrypt: a review state holding a note's payload and a
 * note holding a review state's are both reported. */
static void test_verify_desk_payloads(void)
{
    struct org o;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    unsigned char a[32], *p = NULL;
    size_t n = 0;

    org_setup(&o);
    add(o.f1, a, "verified", "detention", "what the desk says about it");
    carry(o.f1, o.c);
    CHECK_EQ(fv_record_set_state(o.c, a, FV_STATE_REVIEWED), FV_OK);
    CHECK_EQ(fv_note_add(o.c, NULL, a, "call back on Monday"), FV_OK);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_OK);
    CHECK_EQ(rep.failures, 0);

    CHECK_EQ(fv_note_encode(&p, &n, "not a state", 11, fv_v_now()), FV_OK);
    write_raw_desk(o.c, o.pk, FV_ENV_STATE, a, p, n);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 1);
    CHECK_EQ(fv_state_encode(&p, &n, fv_v_now(), FV_STATE_ARCHIVED), FV_OK);
    write_raw_desk(o.c, o.pk, FV_ENV_NOTE, a, p, n);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 2);
    /* Neither changed what the desk shows. */
    {
        fv_record *r = NULL;
        CHECK_EQ(fv_record_get(o.c, &r, a), FV_OK);
        CHECK(r && r->state == FV_STATE_REVIEWED && r->nnotes == 1);
        fv_record_free(r);
    }

    /* A review state dated INT64_MAX (the newest by time forever): a new
     * setting is refused rather than dated by an overflowing time + 1. */
    CHECK_EQ(fv_state_encode(&p, &n, INT64_MAX, FV_STATE_ARCHIVED), FV_OK);
    write_raw_desk(o.c, o.pk, FV_ENV_STATE, a, p, n);
    CHECK_EQ(fv_store_begin(o.c->store), FV_OK);
    CHECK_EQ(fv_v_desk_reindex(o.c), FV_OK);
    CHECK_EQ(fv_store_commit(o.c->store), FV_OK);
    CHECK_EQ(get_state(o.c, a), FV_STATE_ARCHIVED);
    CHECK_EQ(fv_record_set_state(o.c, a, FV_STATE_REVIEWED), FV_ELIMIT);
    CHECK(strstr(fv_vault_errmsg(o.c), "end of time") != NULL);
    CHECK_EQ(get_state(o.c, a), FV_STATE_ARCHIVED);
    org_close(&o);
}

/* ---- payloads that break FORMAT.md (issue 10) ------------------------------ */

static int envelope_held(const char *dir, const unsigned char id[32])
{
    return (int)db_count(dir, "SELECT count(*) FROM envelope WHERE id = ?1", id);
}

/* Every validly signed envelope whose payload breaks FORMAT.md is refused
 * on import, by the courier path and by the server's: not stored, not acted
 * on (a malformed retraction destroys nothing), counted; the good envelopes
 * of the same batch are imported. */
static void test_import_refuses_malformed(void)
{
    /* {"time": 1} as an indefinite-length map; "time" as text; an extra
     * key; a note with a byte after it. */
    static const unsigned char indef[] = {0xbf, 0x64, 't', 'i', 'm', 'e', 0x01, 0xff};
    static const unsigned char texttime[] = {0xa1, 0x64, 't', 'i', 'm', 'e', 0x61, '1'};
    static const unsigned char extra[] = {0xa2, 0x64, 't', 'i', 'm', 'e', 0x01,
                                          0x65, 's', 't', 'a', 't', 'e', 0x00};
    static const unsigned char dup[] = {0xa2, 0x64, 't', 'i', 'm', 'e', 0x01,
                                        0x64, 't', 'i', 'm', 'e', 0x02};
    static const unsigned char timebytes[] = {0xa1, 0x64, 't', 'i', 'm', 'e', 0x41, 0x01};
    static const uint64_t one = 1, none = 0;
    static const unsigned char somehash[1][32] = {{1}};
    struct org o;
    struct bag bag;
    unsigned char a[32], g[32], bad[32][32], key[32], *p = NULL;
    size_t nbad = 0, added = 0, skipped = 0, refused = 0, n = 0;
    fv_sync_state st;
    fv_record *r = NULL;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    struct raw_rev rr;

    org_setup(&o);
    add(o.f1, a, "named by a forged retraction", "detention", "still here");
    carry(o.f1, o.c);

    /* Retractions, tombstones, notes and key grants with broken payloads. */
    {
        const struct { int kind; const unsigned char *p; size_t n; } forged[] = {
            {FV_ENV_RETRACTION, indef, sizeof indef},
            {FV_ENV_RETRACTION, texttime, sizeof texttime},
            {FV_ENV_RETRACTION, extra, sizeof extra},
            {FV_ENV_TOMBSTONE, dup, sizeof dup},
            {FV_ENV_TOMBSTONE, timebytes, sizeof timebytes},
            {FV_ENV_NOTE, texttime, sizeof texttime},
        };
        for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
            fv_v_write w = {.kind = forged[i].kind, .record = a,
                            .parents = (const unsigned char(*)[32])a, .nparents = 1};
            write_forged(o.f1, o.pk, &w, forged[i].p, forged[i].n, bad[nbad++]);
        }
    }
    CHECK_EQ(fv_note_encode(&p, &n, "a note", 6, 1700000000), FV_OK);
    {
        unsigned char *q = malloc(n + 1);
        fv_v_write w = {.kind = FV_ENV_NOTE, .record = a,
                        .parents = (const unsigned char(*)[32])a, .nparents = 1};
        memcpy(q, p, n);
        q[n] = 0x00; /* a trailing byte */
        write_forged(o.f1, o.pk, &w, q, n + 1, bad[nbad++]);
        free(q);
    }
    fv_enc_free_buf(p, n);
    /* Key grants for a's genesis, with its real key: extra key, duplicate
     * key, trailing byte, wrong type. */
    own_key(o.f1, a, key);
    {
        static const unsigned char trailing[] = {0xa1, 0x64, 't', 'i', 'm', 'e', 0x01, 0x00};
        const unsigned char *gp[] = {extra, dup, trailing, texttime};
        const size_t gn[] = {sizeof extra, sizeof dup, sizeof trailing, sizeof texttime};
        for (size_t i = 0; i < 4; i++) {
            fv_v_write w = {.kind = FV_ENV_GRANT, .record = a,
                            .parents = (const unsigned char(*)[32])a, .nparents = 1,
                            .recipients = (const unsigned char(*)[32])o.pk,
                            .nrecipients = 1, .content_key = key};
            write_forged(o.f1, o.pk, &w, gp[i], gn[i], bad[nbad++]);
        }
    }
    /* Revisions: a control byte in the title, invalid UTF-8, names that are
     * paths, chunk size 0, chunk lists that do not match, tags out of order. */
    memset(&rr, 0, sizeof rr);
    rr.title = "a\x01title";
    rr.title_len = 7;
    write_raw_rev(o.f1, o.pk, &rr, NULL, 0, NULL, 0, bad[nbad++]);
    memset(&rr, 0, sizeof rr);
    rr.narr = "bad \xff utf-8";
    rr.narr_len = 11;
    write_raw_rev(o.f1, o.pk, &rr, NULL, 0, NULL, 0, bad[nbad++]);
    memset(&rr, 0, sizeof rr);
    rr.title = "\xed\xa0\x80"; /* a surrogate */
    rr.title_len = 3;
    write_raw_rev(o.f1, o.pk, &rr, NULL, 0, NULL, 0, bad[nbad++]);
    {
        const char *names[] = {"..", ".", "a/b", "a\\b", "", "x\ny"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            memset(&rr, 0, sizeof rr);
            rr.natt = 1;
            rr.name = names[i];
            rr.size = 10;
            rr.chunk = FV_CHUNK_BYTES;
            write_raw_rev(o.f1, o.pk, &rr, &one, 1, somehash, 1, bad[nbad++]);
        }
    }
    memset(&rr, 0, sizeof rr);
    rr.natt = 1;
    rr.size = 0;
    rr.chunk = 0;
    write_raw_rev(o.f1, o.pk, &rr, &none, 1, NULL, 0, bad[nbad++]);
    rr.size = 10;
    rr.chunk = FV_CHUNK_BYTES;
    write_raw_rev(o.f1, o.pk, &rr, NULL, 0, NULL, 0, bad[nbad++]); /* no list */
    rr.size = FV_CHUNK_BYTES + 1; /* two chunks, one listed */
    write_raw_rev(o.f1, o.pk, &rr, &one, 1, somehash, 1, bad[nbad++]);
    memset(&rr, 0, sizeof rr);
    rr.tag0 = "b";
    rr.tag1 = "a";
    write_raw_rev(o.f1, o.pk, &rr, NULL, 0, NULL, 0, bad[nbad++]);
    rr.tag0 = "a";
    rr.tag1 = "a";
    write_raw_rev(o.f1, o.pk, &rr, NULL, 0, NULL, 0, bad[nbad++]);
    CHECK(nbad <= 32);
    /* And a good record after them all. */
    add(o.f1, g, "written after the forged ones", "border", "imported");

    bag_fill(&bag, o.f1);
    CHECK_EQ(fv_vs_import_bundle(o.c, (const unsigned char *const *)bag.env,
                                 bag.len, bag.n, &added, &skipped, &refused),
             FV_OK);
    CHECK_EQ(refused, nbad);
    CHECK_EQ(skipped, 0);
    for (size_t i = 0; i < nbad; i++)
        CHECK_EQ(envelope_held(o.dc, bad[i]), 0);
    CHECK_EQ(fv_record_get(o.c, &r, a), FV_OK); /* not retracted */
    CHECK(r && strcmp(r->title, "named by a forged retraction") == 0 &&
          r->nnotes == 0);
    fv_record_free(r);
    r = NULL;
    CHECK_EQ(fv_record_get(o.c, &r, g), FV_OK);
    fv_record_free(r);
    r = NULL;
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_OK);
    CHECK_EQ(rep.failures, 0);

    /* The server's path (a coordinator's pull) refuses the same ones. */
    memset(&st, 0, sizeof st);
    st.role = FV_ROLE_COORDINATOR;
    CHECK_EQ(fv_vs_import(o.c2, &st, (const unsigned char *const *)bag.env,
                          bag.len, bag.n, &added, &refused), FV_OK);
    CHECK_EQ(refused, nbad);
    for (size_t i = 0; i < nbad; i++)
        CHECK_EQ(envelope_held(o.dc2, bad[i]), 0);
    CHECK_EQ(fv_record_get(o.c2, &r, a), FV_OK);
    fv_record_free(r);
    r = NULL;

    /* The same batch checked on the worker pool: each forged one refused
     * alone again (never stored), the good ones already held. */
    CHECK_EQ(import_pooled(o.c2, &st, &bag, &added, &refused), FV_OK);
    CHECK_EQ(refused, nbad);
    CHECK_EQ(added, 0);
    for (size_t i = 0; i < nbad; i++)
        CHECK_EQ(envelope_held(o.dc2, bad[i]), 0);
    CHECK_EQ(fv_record_get(o.c2, &r, g), FV_OK);
    fv_record_free(r);
    r = NULL;
    /* A signature that does not verify fails the batch on the pool as it
     * does inline: FV_EPROTO, nothing of it stored. Then, whole, the new
     * record comes in beside the refusals. */
    {
        unsigned char g2[32];
        struct bag b2;
        size_t at = SIZE_MAX;
        add(o.f1, g2, "written after the pool's first batch", "border",
            "imported");
        memset(&b2, 0, sizeof b2);
        bag_fill(&b2, o.f1);
        for (size_t i = 0; i < b2.n; i++) {
            fv_env e;
            if (fv_env_parse(&e, b2.env[i], b2.len[i]) == FV_OK) {
                if (memcmp(e.id, g2, 32) == 0)
                    at = i;
                fv_env_clear(&e);
            }
        }
        CHECK(at != SIZE_MAX);
        if (at != SIZE_MAX) {
            b2.env[at][b2.len[at] - 1] ^= 1;
            CHECK_EQ(import_pooled(o.c2, &st, &b2, &added, &refused), FV_EPROTO);
            CHECK_EQ(fv_record_get(o.c2, &r, g2), FV_ENOTFOUND);
            b2.env[at][b2.len[at] - 1] ^= 1;
        }
        CHECK_EQ(import_pooled(o.c2, &st, &b2, &added, &refused), FV_OK);
        CHECK_EQ(refused, nbad);
        CHECK_EQ(added, 1);
        CHECK_EQ(fv_record_get(o.c2, &r, g2), FV_OK);
        CHECK(r && strcmp(r->title, "written after the pool's first batch") == 0);
        fv_record_free(r);
        r = NULL;
        bag_free(&b2);
    }
    bag_free(&bag);
    fv_wipe(key, sizeof key);
    org_close(&o);
}

/* A pull's held transaction (fv_vs_pull_hold): batches joined to it are
 * stored, with the last cursor, only when it is flushed; dropped, nothing
 * of them stays and the cursor is where it was. */
static void test_pull_hold(void)
{
    struct org o;
    struct bag bag, first, second;
    fv_sync_state st, got;
    size_t added = 0, refused = 0, half;
    unsigned char ids[6][32];

    org_setup(&o);
    for (int i = 0; i < 6; i++)
        add(o.f1, ids[i], "held", "border", "in a held pull");
    bag_fill(&bag, o.f1);
    CHECK(bag.n >= 6);
    half = bag.n / 2;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    for (size_t i = 0; i < bag.n; i++) {
        struct bag *b = i < half ? &first : &second;
        b->env[b->n] = bag.env[i];
        b->len[b->n++] = bag.len[i];
    }
    memset(&st, 0, sizeof st);
    st.role = FV_ROLE_COORDINATOR;

    /* Dropped: nothing of either batch, the cursor unmoved. */
    CHECK_EQ(fv_vs_pull_hold(o.c2), FV_OK);
    CHECK_EQ(fv_vs_pull_hold(o.c2), FV_EINVAL); /* one at a time */
    st.cursor = 100;
    CHECK_EQ(import_pooled(o.c2, &st, &first, &added, &refused), FV_OK);
    CHECK_EQ(added, first.n);
    st.cursor = 200;
    CHECK_EQ(import_pooled(o.c2, &st, &second, &added, &refused), FV_OK);
    fv_vs_pull_drop(o.c2);
    fv_vs_pull_drop(o.c2); /* nothing held: harmless */
    CHECK_EQ(fv_vs_pull_flush(o.c2), FV_OK);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(envelope_held(o.dc2, ids[i]), 0);
    CHECK_EQ(fv_vs_state_get(o.c2, &got) == FV_OK ? got.cursor : 0, 0);

    /* Flushed: both, with the second batch's cursor. */
    CHECK_EQ(fv_vs_pull_hold(o.c2), FV_OK);
    st.cursor = 100;
    CHECK_EQ(import_pooled(o.c2, &st, &first, &added, &refused), FV_OK);
    st.cursor = 200;
    CHECK_EQ(import_pooled(o.c2, &st, &second, &added, &refused), FV_OK);
    CHECK_EQ(added, second.n);
    CHECK_EQ(fv_vs_pull_flush(o.c2), FV_OK);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(envelope_held(o.dc2, ids[i]), 1);
    CHECK_EQ(fv_vs_state_get(o.c2, &got), FV_OK);
    CHECK_EQ(got.cursor, 200);
    /* Without a hold each batch commits alone again. */
    CHECK_EQ(import_pooled(o.c2, &st, &second, &added, &refused), FV_OK);
    CHECK_EQ(added, 0);
    bag_free(&bag);
    org_close(&o);
}

/* A key grant whose payload breaks FORMAT.md 7 opens nothing: refused on
 * import, and, stored by an older build, not used to read its target and
 * reported by verify. A good grant then opens the record. */
static void test_grant_malformed(void)
{
    static const unsigned char extra[] = {0xa2, 0x64, 't', 'i', 'm', 'e', 0x01,
                                          0x65, 's', 't', 'a', 't', 'e', 0x00};
    struct org o;
    struct bag bag;
    const char *de = new_path("early");
    fv_vault *e = create(de);
    unsigned char r[32], key[32], gid[32], mac[32];
    size_t added = 0, skipped = 0, refused = 0;
    fv_record *rec = NULL;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    fv_store_env se;
    fv_env ge;
    int was = 0;

    org_setup(&o);
    certify_one(o.c, e);
    add(e, r, "written before the organisation key", "early", "grant me");
    own_key(e, r, key);
    {
        fv_v_write w = {.kind = FV_ENV_GRANT, .record = r,
                        .parents = (const unsigned char(*)[32])r, .nparents = 1,
                        .recipients = (const unsigned char(*)[32])o.pk,
                        .nrecipients = 1, .content_key = key};
        write_forged(e, o.pk, &w, extra, sizeof extra, gid);
    }
    bag_fill(&bag, e);
    CHECK_EQ(fv_vs_import_bundle(o.c, (const unsigned char *const *)bag.env,
                                 bag.len, bag.n, &added, &skipped, &refused),
             FV_OK);
    CHECK_EQ(refused, 1);
    CHECK_EQ(envelope_held(o.dc, gid), 0);
    CHECK_EQ(fv_record_get(o.c, &rec, r), FV_ENOTFOUND);
    bag_free(&bag);

    /* As an older build stored it: in the store, with its MAC. */
    {
        unsigned char rec_id[32], *bytes = NULL;
        size_t len = 0;
        int kind;
        CHECK_EQ(fv_store_env_get(e->store, gid, rec_id, &kind, &bytes, &len, NULL), FV_OK);
        CHECK_EQ(fv_env_parse(&ge, bytes, len), FV_OK);
        memset(&se, 0, sizeof se);
        se.id = ge.id;
        se.record = ge.record;
        se.kind = ge.kind;
        se.bytes = bytes;
        se.len = len;
        fv_v_env_mac(o.c, mac, bytes, len);
        se.mac = mac;
        se.grant = 1;
        CHECK_EQ(fv_store_begin(o.c->store), FV_OK);
        CHECK_EQ(fv_store_env_put(o.c->store, &se,
                                  (const unsigned char(*)[32])ge.parents, 1,
                                  NULL, 0, &was), FV_OK);
        CHECK_EQ(fv_store_commit(o.c->store), FV_OK);
        CHECK_EQ(was, 1);
        fv_env_clear(&ge);
        free(bytes);
    }
    CHECK_EQ(fv_record_get(o.c, &rec, r), FV_ENOTFOUND);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_ECORRUPT);
    /* The bad grant, and the record it does not open. */
    CHECK_EQ(rep.failures, 2);

    /* The grant e writes itself once it learns the key is good. */
    CHECK_EQ(fv_vs_org_learn(e, o.pk), FV_OK);
    bag_fill(&bag, e); /* the forged grant again, and the good one */
    CHECK_EQ(fv_vs_import_bundle(o.c, (const unsigned char *const *)bag.env,
                                 bag.len, bag.n, &added, &skipped, &refused),
             FV_OK);
    CHECK_EQ(refused, 1);
    bag_free(&bag);
    CHECK_EQ(fv_record_get(o.c, &rec, r), FV_OK);
    CHECK(rec && strcmp(rec->title, "written before the organisation key") == 0);
    fv_record_free(rec);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 1); /* the stored bad grant, still */

    /* A well-formed grant that carries another key than its target's: not
     * refused (its payload is sound), never used, and reported by verify. */
    {
        unsigned char other[32], *p = NULL;
        size_t n = 0;
        fv_v_write w = {.kind = FV_ENV_GRANT, .record = r,
                        .parents = (const unsigned char(*)[32])r, .nparents = 1,
                        .recipients = (const unsigned char(*)[32])o.pk,
                        .nrecipients = 1, .content_key = other};
        fv_random(other, sizeof other);
        CHECK_EQ(fv_tombstone_encode(&p, &n, 1700000000), FV_OK);
        write_forged(e, o.pk, &w, p, n, gid);
        fv_enc_free_buf(p, n);
        fv_wipe(other, sizeof other);
    }
    bag_fill(&bag, e);
    CHECK_EQ(fv_vs_import_bundle(o.c, (const unsigned char *const *)bag.env,
                                 bag.len, bag.n, &added, &skipped, &refused),
             FV_OK);
    CHECK_EQ(refused, 1); /* the malformed one, again */
    CHECK_EQ(envelope_held(o.dc, gid), 1);
    bag_free(&bag);
    CHECK_EQ(fv_record_get(o.c, &rec, r), FV_OK);
    fv_record_free(rec);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 2);
    fv_wipe(key, sizeof key);
    fv_vault_close(e);
    org_close(&o);
}

/* An attachment whose signed size lies about its signed chunk (one chunk
 * either way, but of another length): `show` does not call it complete
 * but corrupt, and verify reports it. */
static void test_attachment_size_lie(void)
{
    const char *d = new_path("sizes");
    fv_vault *x = create(d);
    unsigned char pk[32], sp[32], k[32], nonce[FV_NONCE_BYTES] = {0};
    unsigned char plain[50], ct[50 + FV_TAG_BYTES], h[1][32], ok[32], liar[32];
    uint64_t one = 1;
    fv_record *r = NULL;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    struct raw_rev rr;

    fv_vs_device(x, sp, pk); /* sealed to x twice over is fine: one key */
    fv_random(k, sizeof k);
    memset(plain, 'z', sizeof plain);
    fv_aead_encrypt(ct, plain, sizeof plain, NULL, 0, nonce, k);
    fv_hash(h[0], ct, sizeof ct);
    CHECK_EQ(fv_store_begin(x->store), FV_OK);
    CHECK_EQ(fv_store_chunk_put(x->store, h[0], ct, sizeof ct, 0), FV_OK);
    CHECK_EQ(fv_store_commit(x->store), FV_OK);

    memset(&rr, 0, sizeof rr);
    rr.natt = 1;
    rr.chunk = FV_CHUNK_BYTES;
    rr.key = k;
    rr.size = sizeof plain;
    {
        fv_v_write w;
        unsigned char *p = NULL;
        size_t n = 0;
        memset(&w, 0, sizeof w);
        w.kind = FV_ENV_REVISION;
        w.chunk_counts = &one;
        w.nattachments = 1;
        w.chunks = (const unsigned char(*)[32])h;
        w.nchunks = 1;
        w.recipients = (const unsigned char(*)[32])pk;
        w.nrecipients = 1;
        raw_rev_bytes(&p, &n, &rr);
        write_forged(x, pk, &w, p, n, ok);
        fv_enc_free_buf(p, n);
        CHECK_EQ(fv_record_get(x, &r, ok), FV_OK);
        CHECK(r && r->nattachments == 1 && r->attachments[0].chunks_present == 1);
        fv_record_free(r);
        r = NULL;
        CHECK_EQ(fv_vault_verify(x, &rep, NULL, NULL), FV_OK);

        rr.size = 100; /* still one chunk, but not this one */
        memset(&w, 0, sizeof w);
        w.kind = FV_ENV_REVISION;
        w.chunk_counts = &one;
        w.nattachments = 1;
        w.chunks = (const unsigned char(*)[32])h;
        w.nchunks = 1;
        w.recipients = (const unsigned char(*)[32])pk;
        w.nrecipients = 1;
        raw_rev_bytes(&p, &n, &rr);
        write_forged(x, pk, &w, p, n, liar);
        fv_enc_free_buf(p, n);
    }
    CHECK_EQ(fv_record_get(x, &r, liar), FV_ECORRUPT);
    CHECK(strstr(fv_vault_errmsg(x), "size does not match") != NULL);
    CHECK_EQ(fv_vault_verify(x, &rep, NULL, NULL), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 1);
    fv_vault_close(x);
}

/* A record added and deleted before its first sync: only its tombstone
 * leaves the device (the delete destroyed the genesis there). The receiving
 * coordinator's verify passes, now and after more ordinary use. */
static void test_tombstone_before_sync(void)
{
    struct org o;
    unsigned char r[32], k[32];
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;

    org_setup(&o);
    add(o.f1, r, "a slip", "none", "deleted at once");
    CHECK_EQ(fv_record_delete(o.f1, r), FV_OK);
    add(o.f1, k, "kept", "none", "stays");
    carry(o.f1, o.c);
    CHECK_EQ(envelope_held(o.dc, r), 0); /* the genesis never came */
    CHECK_EQ(db_count(o.dc, "SELECT count(*) FROM envelope WHERE record = ?1 "
                            "AND kind = 2", r), 1);
    CHECK_EQ(fv_vault_verify(o.c, &rep, NULL, NULL), FV_OK);
    CHECK_EQ(rep.failures, 0);
    CHECK_EQ(fv_vault_verify(o.f1, &rep, NULL, NULL), FV_OK);
    org_close(&o);
}

/* ---- records this vault cannot open (issue 10, section 1) ---------------- */

/* A genesis revision written by `v`, signed as it signs everything, but
 * sealed to exactly `pk`, with `payload` (taken) as its content: what an
 * enrolled device could push, or a buggy one write. */
static void write_sealed_genesis(fv_vault *v, const unsigned char pk[32],
                                 unsigned char *payload, size_t n,
                                 unsigned char id[32])
{
    fv_v_write w = {
        .kind = FV_ENV_REVISION,
        .payload = payload,
        .payload_len = n,
        .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])pk,
        .nrecipients = 1,
    };
    CHECK_EQ(fv_store_begin(v->store), FV_OK);
    CHECK_EQ(fv_v_write_envelope(v, id, &w), FV_OK);
    CHECK_EQ(fv_store_commit(v->store), FV_OK);
    fv_enc_free_buf(payload, n);
}

/* A well-formed record payload titled `title`. */
static unsigned char *record_payload(const char *title, size_t *n)
{
    fv_record r;
    unsigned char *out = NULL;
    memset(&r, 0, sizeof r);
    r.title = title;
    r.narrative = "";
    r.created = r.modified = fv_v_now();
    CHECK_EQ(fv_payload_encode(&out, n, &r, NULL), FV_OK);
    return out;
}

/* What a walk met: readable records and unreadable ones, in order. */
struct met {
    unsigned char id[32][FV_ID_BYTES];
    int reason[32]; /* 0: readable */
    char why[32][200];
    size_t n, readable, unreadable;
};

static int met_ok(const fv_record *r, void *payload)
{
    struct met *m = payload;
    if (m->n < 32) {
        memcpy(m->id[m->n], r->id, FV_ID_BYTES);
        m->reason[m->n++] = 0;
    }
    m->readable++;
    return 0;
}

static int met_bad(const fv_unreadable *u, void *payload)
{
    struct met *m = payload;
    CHECK(u->why != NULL && strcmp(u->why, fv_unreadable_why(u->reason)) == 0);
    if (m->n < 32) {
        memcpy(m->id[m->n], u->id, FV_ID_BYTES);
        snprintf(m->why[m->n], sizeof m->why[0], "%s", u->why);
        m->reason[m->n++] = u->reason;
    }
    m->unreadable++;
    return 0;
}

static int met_reason(const struct met *m, const unsigned char id[32])
{
    for (size_t i = 0; i < m->n; i++)
        if (memcmp(m->id[i], id, FV_ID_BYTES) == 0)
            return m->reason[i];
    return -1;
}

static int verify_count_cb(const fv_verify_issue *is, void *payload)
{
    struct met *m = payload;
    if (is->record && strstr(is->problem, "cannot open") && m->n < 32) {
        memcpy(m->id[m->n], is->record, FV_ID_BYTES);
        m->reason[m->n++] = 1;
        m->unreadable++;
    }
    return 0;
}

static void test_unreadable(void)
{
    struct org o;
    struct met m;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    fv_export_options eo = FV_EXPORT_OPTIONS_INIT;
    unsigned char a[32], b[32], never1[32], never2[32], rnd[32], bad[32];
    unsigned char late[32], rpk[32], rsk[32], *p;
    const char *dn = new_path("never"), *out = new_path("evidence");
    const char *dk = new_path("keyless"), *key = new_path("orgkey");
    fv_vault *never, *keyless;
    uint64_t count = 0;
    fv_filter f = FV_FILTER_INIT;
    size_t n;

    org_setup(&o);
    /* A vault that does not know the organisation key: its records are
     * sealed to its own key only, and a courier bundle brings them to the
     * coordinator. (The coordinator has certified the device; a bundle by
     * a device it has not is kept apart instead: test_devices.c.) */
    never = create(dn);
    certify_one(o.c, never);
    add(never, never1, "never enrolled one", "detention", "sealed to itself");
    add(o.f1, a, "readable before", "detention", "the first readable one");
    carry(o.f1, o.c);
    carry(never, o.c);
    add(never, never2, "never enrolled two", "detention", "sealed to itself too");
    carry(never, o.c);
    /* An enrolled device's envelope, validly signed, sealed to a random
     * key. And one sealed to the organisation whose content is garbage:
     * written in the coordinator's own vault, as whatever reaches a vault
     * (a stricter import refuses such content from outside) must not stop
     * its reads. */
    fv_box_keypair(rpk, rsk);
    p = record_payload("sealed to a random key", &n);
    write_sealed_genesis(o.f1, rpk, p, n, rnd);
    p = malloc(8);
    memcpy(p, "\xa1\x01\x02garbage", 8);
    write_sealed_genesis(o.c, o.pk, p, 8, bad);
    add(o.f1, b, "readable after", "border", "the last readable one");
    serve(o.f1, o.c);

    /* The walk goes on past each, naming it once, in its place. */
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_query_ex(o.c, NULL, met_ok, met_bad, &m), FV_OK);
    CHECK_EQ(m.readable, 2);
    CHECK_EQ(m.unreadable, 4);
    CHECK_EQ(met_reason(&m, a), 0);
    CHECK_EQ(met_reason(&m, b), 0);
    CHECK_EQ(met_reason(&m, never1), FV_UNREADABLE_NO_KEY);
    CHECK_EQ(met_reason(&m, never2), FV_UNREADABLE_NO_KEY);
    CHECK_EQ(met_reason(&m, rnd), FV_UNREADABLE_NO_KEY);
    CHECK_EQ(met_reason(&m, bad), FV_UNREADABLE_MALFORMED);
    CHECK(memcmp(m.id[0], a, 32) == 0 && memcmp(m.id[m.n - 1], b, 32) == 0);
    /* Nothing from inside them is ever shown: the why is fixed text. */
    for (size_t i = 0; i < m.n; i++)
        CHECK(strstr(m.why[i], "random") == NULL && strstr(m.why[i], "never") == NULL);

    /* fv_vault_query (and list, search) visit every readable record, then
     * say how many were left out. */
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_query(o.c, NULL, met_ok, &m), FV_ENOTFOUND);
    CHECK_EQ(m.readable, 2);
    CHECK(strstr(fv_vault_errmsg(o.c), "4 records cannot be opened") != NULL);
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_search(o.c, "readable", met_ok, &m), FV_OK);
    CHECK_EQ(m.readable, 2);
    /* A filter on content leaves them out; one on ids or state keeps them. */
    memset(&m, 0, sizeof m);
    f.tag = "detention";
    CHECK_EQ(fv_vault_query_ex(o.c, &f, met_ok, met_bad, &m), FV_OK);
    CHECK_EQ(m.readable, 1);
    CHECK_EQ(m.unreadable, 0);
    {
        unsigned char ids[3][32];
        fv_filter fi = FV_FILTER_INIT;
        memcpy(ids[0], b, 32);
        memcpy(ids[1], rnd, 32);
        memcpy(ids[2], a, 32);
        fi.ids = (const unsigned char(*)[FV_ID_BYTES])ids;
        fi.nids = 3;
        memset(&m, 0, sizeof m);
        CHECK_EQ(fv_vault_query_ex(o.c, &fi, met_ok, met_bad, &m), FV_OK);
        CHECK_EQ(m.n, 3);
        CHECK(memcmp(m.id[1], rnd, 32) == 0 && m.reason[1] == FV_UNREADABLE_NO_KEY);
        fi.state = FV_STATE_NEW;
        memset(&m, 0, sizeof m);
        CHECK_EQ(fv_vault_query_ex(o.c, &fi, met_ok, met_bad, &m), FV_OK);
        CHECK_EQ(m.n, 3);
    }
    /* Reading one says why. */
    {
        fv_record *r = NULL;
        CHECK_EQ(fv_record_get(o.c, &r, rnd), FV_ENOTFOUND);
        CHECK(strstr(fv_vault_errmsg(o.c), "no key this vault holds") != NULL);
        CHECK_EQ(fv_record_get(o.c, &r, bad), FV_ECORRUPT);
        CHECK(strstr(fv_vault_errmsg(o.c), "malformed") != NULL);
    }

    /* The evidence export writes the readable records and names the rest;
     * without a caller to hear of them it writes nothing. An options struct
     * of an earlier layout (version 2) is refused. */
    eo.path = out;
    eo.unreadable = met_bad;
    eo.unreadable_payload = &m;
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_export(o.c, &count, &eo), FV_OK);
    CHECK_EQ(count, 2);
    CHECK_EQ(m.unreadable, 4);
    CHECK(access(out, F_OK) == 0);
    {
        char manifest[600];
        snprintf(manifest, sizeof manifest, "%s/manifest.json", out);
        CHECK(file_has(manifest, (const unsigned char *)"\"record_count\": 2", 17));
    }
    eo.unreadable = NULL;
    eo.path = new_path("evidence2");
    CHECK_EQ(fv_export(o.c, &count, &eo), FV_ENOTFOUND);
    CHECK(access(eo.path, F_OK) != 0);
    eo.version = 2;
    CHECK_EQ(fv_export(o.c, &count, &eo), FV_EINVAL);
    CHECK(access(eo.path, F_OK) != 0);

    /* verify reports each record it cannot open (and the malformed one). */
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_verify(o.c, &rep, verify_count_cb, &m), FV_ECORRUPT);
    CHECK_EQ(m.unreadable, 3);
    CHECK_EQ(met_reason(&m, never1), 1);
    CHECK_EQ(met_reason(&m, rnd), 1);
    CHECK_EQ(rep.failures, 4);

    /* A key grant arriving later opens what it grants: the never-enrolled
     * vault learns the organisation's key, and its grants reach the desk. */
    CHECK_EQ(fv_vs_org_learn(never, o.pk), FV_OK);
    add(never, late, "written after learning the key", "detention", "sealed to the organisation");
    serve(never, o.c);
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_query_ex(o.c, NULL, met_ok, met_bad, &m), FV_OK);
    CHECK_EQ(m.readable, 5);
    CHECK_EQ(met_reason(&m, never1), 0);
    CHECK_EQ(met_reason(&m, never2), 0);
    CHECK_EQ(met_reason(&m, late), 0);
    CHECK_EQ(m.unreadable, 2);

    /* A coordinator holding the organisation's public key but not its
     * secret half is told to import it. */
    keyless = create(dk);
    CHECK_EQ(fv_vs_org_learn(keyless, o.pk), FV_OK);
    serve(o.f1, keyless);
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_query_ex(keyless, NULL, met_ok, met_bad, &m), FV_OK);
    CHECK_EQ(m.readable, 0);
    CHECK_EQ(met_reason(&m, a), FV_UNREADABLE_NO_ORG_KEY);
    CHECK_EQ(met_reason(&m, b), FV_UNREADABLE_NO_ORG_KEY);
    CHECK(strstr(fv_unreadable_why(FV_UNREADABLE_NO_ORG_KEY), "org key import") != NULL);
    CHECK_EQ(fv_org_key_export(o.c, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    CHECK_EQ(fv_org_key_import(keyless, key, RECOVERY, strlen(RECOVERY)), FV_OK);
    memset(&m, 0, sizeof m);
    CHECK_EQ(fv_vault_query_ex(keyless, NULL, met_ok, met_bad, &m), FV_OK);
    CHECK_EQ(met_reason(&m, a), 0);
    CHECK_EQ(met_reason(&m, b), 0);

    fv_vault_close(keyless);
    fv_vault_close(never);
    org_close(&o);
}

/* An edit of a record whose first revision has not arrived, sealed
 * elsewhere: named as waiting for its genesis. And a record with one head
 * that opens and one that does not is shown by the one that opens. */
static void test_unreadable_heads(void)
{
    struct org o;
    struct met m;
    struct bag bag, edit;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char a[32], rev[32];
    fv_env e;
    size_t i;

    org_setup(&o);
    /* A field device (certified, but not knowing the organisation key yet)
     * writes and edits; only the edit reaches the coordinator (a courier
     * bundle of part of the outbox). */
    {
        const char *d = new_path("field");
        fv_vault *x = create(d);
        certify_one(o.c, x);
        add(x, a, "written offline", "detention", "before enrollment");
        in.title = "edited offline";
        CHECK_EQ(fv_record_edit(x, rev, a, &in), FV_OK);
        bag_fill(&bag, x);
        memset(&edit, 0, sizeof edit);
        for (i = 0; i < bag.n; i++) {
            CHECK_EQ(fv_env_parse(&e, bag.env[i], bag.len[i]), FV_OK);
            if (!e.genesis) {
                edit.env[edit.n] = bag.env[i];
                edit.len[edit.n++] = bag.len[i];
            }
            fv_env_clear(&e);
        }
        CHECK_EQ(edit.n, 1);
        bag_import(o.c, &edit);
        memset(&m, 0, sizeof m);
        CHECK_EQ(fv_vault_query_ex(o.c, NULL, met_ok, met_bad, &m), FV_OK);
        CHECK_EQ(m.n, 1);
        CHECK_EQ(met_reason(&m, a), FV_UNREADABLE_NO_GENESIS);
        bag_free(&bag);
        fv_vault_close(x);
    }
    org_close(&o);
}

/* ---- padded last chunks (FORMAT.md 8) ---------------------------------- */

struct sink {
    unsigned char buf[512];
    size_t n;
};

static int sink_cb(const unsigned char *p, size_t n, void *payload)
{
    struct sink *s = payload;
    if (s->n + n > sizeof s->buf)
        return 1;
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

/* A revision signed by the vault's own device key, whose one attachment
 * (5 bytes, "padded": 1) has the last chunk `pt` of `pn` bytes as stored
 * plaintext: what the read gives, or refuses. */
static int read_forged_chunk(fv_vault *v, const unsigned char *pt, size_t pn,
                             int padded, struct sink *out)
{
    unsigned char key[32], nonce[FV_NONCE_BYTES] = {0}, ct[600], hash[32];
    unsigned char rid[32], opk[32], osk[32], *payload = NULL, pad = (unsigned char)padded;
    fv_attachment_info ai = {"x.bin", 5, FV_CHUNK_BYTES, 1, 0};
    fv_record r;
    size_t n = 0;
    uint64_t count = 1;

    memset(&r, 0, sizeof r);
    r.title = "forged chunk";
    r.narrative = "";
    r.attachments = &ai;
    r.nattachments = 1;
    fv_random(key, sizeof key);
    fv_aead_encrypt(ct, pt, pn, NULL, 0, nonce, key);
    fv_hash(hash, ct, pn + FV_TAG_BYTES);
    CHECK_EQ(fv_payload_encode_ex(&payload, &n, &r,
                                  (const unsigned char(*)[32])key, &pad), FV_OK);
    CHECK_EQ(fv_store_begin(v->store), FV_OK);
    CHECK_EQ(fv_store_chunk_put(v->store, hash, ct, pn + FV_TAG_BYTES, 0), FV_OK);
    CHECK_EQ(fv_store_commit(v->store), FV_OK);
    fv_box_keypair(opk, osk);
    {
        fv_v_write w = {.kind = FV_ENV_REVISION, .chunk_counts = &count,
                        .nattachments = 1,
                        .chunks = (const unsigned char(*)[32])hash, .nchunks = 1};
        write_forged(v, opk, &w, payload, n, rid);
    }
    fv_enc_free_buf(payload, n);
    out->n = 0;
    return fv_attachment_read(v, rid, "x.bin", sink_cb, out, NULL, NULL);
}

static void test_padded_chunks(void)
{
    fv_vault *v = create(new_path("padchunk"));
    unsigned char pt[300];
    struct sink out;

    if (!v)
        return;
    memset(pt, 0, sizeof pt);
    memcpy(pt, "hello", 5);
    /* The writer's form: 5 bytes, zeros to the 256 floor: exactly 5 read. */
    CHECK_EQ(read_forged_chunk(v, pt, 256, 1, &out), FV_OK);
    CHECK(out.n == 5 && memcmp(out.buf, "hello", 5) == 0);
    /* A non-zero byte anywhere in the padding: damage, nothing given. */
    pt[5] = 1;
    CHECK_EQ(read_forged_chunk(v, pt, 256, 1, &out), FV_ECORRUPT);
    CHECK_EQ(out.n, 0);
    pt[5] = 0;
    pt[255] = 0x80;
    CHECK_EQ(read_forged_chunk(v, pt, 256, 1, &out), FV_ECORRUPT);
    pt[255] = 0;
    /* Another length than the bucket (the size lies about the chunk). */
    CHECK_EQ(read_forged_chunk(v, pt, 272, 1, &out), FV_ECORRUPT);
    CHECK_EQ(read_forged_chunk(v, pt, 5, 1, &out), FV_ECORRUPT);
    /* Unpadded ("padded" absent, as format 1 wrote it): exactly 5 bytes
     * stored, and a padded length is then the lie. */
    CHECK_EQ(read_forged_chunk(v, pt, 5, 0, &out), FV_OK);
    CHECK(out.n == 5 && memcmp(out.buf, "hello", 5) == 0);
    CHECK_EQ(read_forged_chunk(v, pt, 256, 0, &out), FV_ECORRUPT);
    fv_vault_close(v);
}

int main(void)
{
    struct org o;
    unsigned char a[32], b[32], d[32];
    const char *tmp = getenv("TMPDIR");

    snprintf(root, sizeof root, "%s/fv_test_desk_core_XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_state_names();
    test_payloads();
    test_padded_chunks();

    org_setup(&o);
    add(o.f1, a, "detained at the border post", "detention", "three days without water");
    add(o.f1, b, "the crossing", "border", "we paid a guide");
    add(o.f2, d, "the river", "detention", "we crossed the river at night");
    carry(o.f1, o.c);
    carry(o.f2, o.c);
    carry(o.f1, o.c2);
    carry(o.f2, o.c2);

    test_states(&o, a, b);
    test_state_tie(&o, b);
    test_state_after_key_import(&o, a);
    test_state_forged(&o, a);
    test_filters(&o, a, b, d);
    test_notes(&o, a, d);
    test_merge(&o, a, b);
    test_edges(&o, a);
    test_retract(&o);
    test_retract_unsealed(&o);
    test_revision_edges();
    test_retention(&o);
    test_conflict_shown_alike(&o);
    org_close(&o);
    test_env_macs();
    test_ckeys();
    test_pull_hold();
    test_verify_desk_payloads();
    test_import_refuses_malformed();
    test_grant_malformed();
    test_attachment_size_lie();
    test_tombstone_before_sync();
    test_unreadable();
    test_unreadable_heads();

    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", root);
    }
    return check_summary("test_desk_core");
}
