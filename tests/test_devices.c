/* test_devices.c - who may speak (core/devices.c): signatures by the
 * organisation's X25519 key pair, device certificates (made, checked,
 * refused when forged, damaged or another organisation's), and the
 * quarantine: envelopes by an author with no certificate, or by a revoked
 * device dated after its revocation, kept out of every listing and
 * verify, and released when the certificate arrives. Real vaults on real
 * SQLite files; envelopes travel as a courier bundle carries them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "crypto.h"
#include "fieldvault.h"
#include "vault_internal.h"
#include "vault_sync.h"

static char root[256];
static int seq;
static const char PASS[] = "correct horse battery staple";

static const char *new_path(const char *what)
{
    static char paths[32][320];
    char *p = paths[++seq % 32];
    snprintf(p, sizeof paths[0], "%s/%s%d", root, what, seq);
    return p;
}

static fv_vault *create(const char *what)
{
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, new_path(what), PASS, strlen(PASS), &o), FV_OK);
    return v;
}

/* ---- byte bags ------------------------------------------------------------ */

struct bag {
    unsigned char *b[64];
    size_t len[64];
    size_t n;
};

static int bag_blob(const unsigned char *bytes, size_t len, void *payload)
{
    struct bag *g = payload;
    if (g->n == 64)
        return FV_ELIMIT;
    g->b[g->n] = malloc(len);
    memcpy(g->b[g->n], bytes, len);
    g->len[g->n++] = len;
    return 0;
}

static int bag_env(int64_t s, const unsigned char *id, const unsigned char *bytes,
                   size_t len, void *payload)
{
    (void)s;
    (void)id;
    return bag_blob(bytes, len, payload);
}

static void bag_free(struct bag *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->b[i]);
    g->n = 0;
}

static void outbox(struct bag *g, fv_vault *v)
{
    memset(g, 0, sizeof *g);
    CHECK_EQ(fv_vs_outbox(v, 0, 64, bag_env, g), FV_OK);
}

static void certs(struct bag *g, fv_vault *v)
{
    memset(g, 0, sizeof *g);
    CHECK_EQ(fv_vs_certs_each(v, bag_blob, g), FV_OK);
}

static int courier(fv_vault *to, const struct bag *g)
{
    size_t added = 0, skipped = 0, refused = 0;
    int rc = fv_vs_import_bundle(to, (const unsigned char *const *)g->b,
                                 g->len, g->n, &added, &skipped, &refused);
    CHECK_EQ(refused, 0);
    return rc;
}

static size_t certs_in(fv_vault *to, const struct bag *g, size_t *rejected)
{
    size_t added = 0, r = 0;
    CHECK_EQ(fv_vs_certs_import(to, (const unsigned char *const *)g->b, g->len,
                                g->n, &added, &r), FV_OK);
    if (rejected)
        *rejected = r;
    return added;
}

/* ---- counting ------------------------------------------------------------- */

static int count_rec(const fv_record *r, void *payload)
{
    (void)r;
    ++*(size_t *)payload;
    return 0;
}

static size_t records(fv_vault *v)
{
    size_t n = 0;
    CHECK_EQ(fv_vault_list(v, count_rec, &n), FV_OK);
    return n;
}

struct qlist {
    fv_quarantined q[16];
    size_t n;
};

static int q_cb(const fv_quarantined *q, void *payload)
{
    struct qlist *l = payload;
    if (l->n < 16)
        l->q[l->n] = *q;
    l->n++;
    return 0;
}

static size_t held(fv_vault *v, struct qlist *l)
{
    struct qlist local;
    if (!l)
        l = &local;
    memset(l, 0, sizeof *l);
    CHECK_EQ(fv_quarantine_list(v, q_cb, l), FV_OK);
    return l->n;
}

static void add(fv_vault *v, unsigned char id[32], const char *title)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    in.title = title;
    in.narrative = "what was said";
    in.narrative_len = strlen(in.narrative);
    CHECK_EQ(fv_record_add(v, id, &in), FV_OK);
}

static void certify(fv_vault *c, fv_vault *dev, int role, int revoked,
                    int64_t revoked_at)
{
    fv_vs_devinfo d;
    size_t issued = 0, released = 0;
    memset(&d, 0, sizeof d);
    fv_vault_get_device_id(dev, d.pk);
    d.role = role;
    d.enrolled = 1000;
    d.revoked = revoked;
    d.revoked_at = revoked_at;
    CHECK_EQ(fv_vs_certify(c, &d, 1, &issued, &released), FV_OK);
}

/* ---- tests ------------------------------------------------------------------ */

/* Many keys, so that both signs of the Ed25519 form come up. */
static void test_org_signatures(void)
{
    unsigned char pk[32], sk[32], pk2[32], sk2[32], kid[32], kid2[32];
    unsigned char sig[64], msg[100];
    /* About half the keys take the negated scalar (E's sign bit set):
     * 64 keys exercise both paths. */
    for (int i = 0; i < 64; i++) {
        fv_box_keypair(pk, sk);
        fv_box_keypair(pk2, sk2);
        fv_random(msg, sizeof msg);
        CHECK_EQ(fv_org_sign(sig, kid, msg, sizeof msg, sk), FV_OK);
        CHECK_EQ(fv_org_sign_pk(kid2, sk), FV_OK);
        CHECK(memcmp(kid, kid2, 32) == 0);
        CHECK_EQ(fv_org_kid_ok(kid, pk), 1);
        CHECK_EQ(fv_org_kid_ok(kid, pk2), 0);
        CHECK_EQ(fv_sign_verify(sig, msg, sizeof msg, kid), FV_OK);
        msg[i % sizeof msg] ^= 1;
        CHECK(fv_sign_verify(sig, msg, sizeof msg, kid) != FV_OK);
        msg[i % sizeof msg] ^= 1;
        sig[i] ^= 0x20;
        CHECK(fv_sign_verify(sig, msg, sizeof msg, kid) != FV_OK);
        sig[i] ^= 0x20;
        /* -A maps to the same X25519 key but is not the organisation's
         * one signing key. */
        kid[31] ^= 0x80;
        CHECK_EQ(fv_org_kid_ok(kid, pk), 0);
        /* Another key's signature never passes as this one's. */
        CHECK_EQ(fv_org_sign(sig, kid2, msg, sizeof msg, sk2), FV_OK);
        CHECK_EQ(fv_org_kid_ok(kid2, pk), 0);
        kid[31] ^= 0x80;
        CHECK_EQ(kid[31] & 0x80, 0); /* the one form: sign bit clear */
    }
}

static void test_certificates(void)
{
    fv_vault *c = create("coord"), *f = create("field"), *other = create("other"),
             *lone = create("lone");
    unsigned char pk[32], opk[32];
    struct bag g, og;
    size_t rejected = 0;

    CHECK_EQ(fv_vs_org_create(c, pk), FV_OK);
    CHECK_EQ(fv_vs_org_create(other, opk), FV_OK);
    CHECK_EQ(fv_vs_org_learn(f, pk), FV_OK);
    /* Only a holder of the organisation's secret key certifies. */
    {
        fv_vs_devinfo d;
        size_t i = 0, r = 0;
        memset(&d, 0, sizeof d);
        d.role = FV_ROLE_FIELD;
        CHECK_EQ(fv_vs_certify(f, &d, 1, &i, &r), FV_EDENIED);
    }
    certify(c, f, FV_ROLE_FIELD, 0, 0);
    certify(c, c, FV_ROLE_COORDINATOR, 0, 0);
    certify(c, f, FV_ROLE_FIELD, 0, 0); /* nothing new: no second one */
    certs(&g, c);
    CHECK_EQ(g.n, 2);
    CHECK_EQ(certs_in(f, &g, &rejected), 2);
    CHECK_EQ(rejected, 0);
    CHECK_EQ(certs_in(f, &g, &rejected), 0); /* known already */

    /* Another organisation's certificates, and damaged ones: passed over. */
    certify(other, f, FV_ROLE_COORDINATOR, 0, 0);
    certs(&og, other);
    CHECK_EQ(og.n, 1);
    CHECK_EQ(certs_in(c, &og, &rejected), 0);
    CHECK_EQ(rejected, 1);
    for (size_t at = 0; at < g.len[0]; at += 7) {
        struct bag one = {{g.b[0]}, {g.len[0]}, 1};
        g.b[0][at] ^= 0x01;
        CHECK_EQ(certs_in(lone, &one, &rejected), 0);
        CHECK_EQ(certs_in(other, &one, &rejected), 0);
        CHECK_EQ(rejected, 1);
        g.b[0][at] ^= 0x01;
    }
    {
        struct bag cut = {{g.b[0]}, {g.len[0] - 1}, 1};
        CHECK_EQ(certs_in(other, &cut, &rejected), 0);
        CHECK_EQ(rejected, 1);
    }
    /* A vault that knows no organisation key checks nothing: it takes
     * none. */
    CHECK_EQ(certs_in(lone, &g, &rejected), 0);
    CHECK_EQ(rejected, 2);
    bag_free(&g);
    bag_free(&og);
    fv_vault_close(c);
    fv_vault_close(f);
    fv_vault_close(other);
    fv_vault_close(lone);
}

static void test_quarantine(void)
{
    fv_vault *c = create("coord"), *f = create("field"), *x = create("forger"),
             *r = create("revoked");
    unsigned char pk[32], fid[32], xid[32], rid1[32], rid2[32];
    unsigned char note[32], xdev[32];
    struct bag g, cg;
    struct qlist l;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    int64_t now = fv_v_now();

    CHECK_EQ(fv_vs_org_create(c, pk), FV_OK);
    CHECK_EQ(fv_vs_org_learn(f, pk), FV_OK);
    CHECK_EQ(fv_vs_org_learn(x, pk), FV_OK); /* from an invite it saw */
    CHECK_EQ(fv_vs_org_learn(r, pk), FV_OK);
    fv_vault_get_device_id(x, xdev);
    certify(c, c, FV_ROLE_COORDINATOR, 0, 0);
    certify(c, f, FV_ROLE_FIELD, 0, 0);

    /* The forger's record by courier: kept apart, in nothing the desk
     * shows, and verify stays clean. */
    add(x, xid, "forged");
    outbox(&g, x);
    CHECK_EQ(courier(c, &g), FV_OK);
    CHECK_EQ(courier(c, &g), FV_OK); /* twice: still one */
    CHECK_EQ(held(c, &l), 1);
    CHECK(memcmp(l.q[0].id, xid, 32) == 0);
    CHECK(memcmp(l.q[0].author, xdev, 32) == 0);
    CHECK_EQ(l.q[0].kind, 1);
    CHECK_EQ(l.q[0].why, FV_QUARANTINE_UNKNOWN);
    CHECK_EQ(l.q[0].has_time, 1);
    CHECK(l.q[0].time >= now - 5 && l.q[0].time <= now + 5);
    CHECK_EQ(records(c), 0);
    {
        fv_record *rec = NULL;
        CHECK_EQ(fv_record_get(c, &rec, xid), FV_ENOTFOUND);
        fv_record_free(rec);
    }
    CHECK_EQ(fv_vault_verify(c, &rep, NULL, NULL), FV_OK);
    CHECK_EQ(rep.envelopes, 0);
    bag_free(&g);

    /* The certified field device's record passes. */
    add(f, fid, "honest");
    outbox(&g, f);
    CHECK_EQ(courier(c, &g), FV_OK);
    CHECK_EQ(records(c), 1);
    bag_free(&g);

    /* Its certificate, when it comes, releases the forger's record (had
     * the organisation enrolled it after all). */
    certify(c, x, FV_ROLE_FIELD, 0, 0);
    CHECK_EQ(held(c, NULL), 0);
    CHECK_EQ(records(c), 2);

    /* A revoked device: what it dated before the revocation stands, what
     * it dated after is kept apart, and stays so. */
    certify(c, r, FV_ROLE_FIELD, 0, 0);
    add(r, rid1, "before");
    outbox(&g, r);
    certify(c, r, FV_ROLE_FIELD, 1, now - 3600); /* revoked an hour ago */
    CHECK_EQ(courier(c, &g), FV_OK);
    CHECK_EQ(held(c, &l), 1);
    CHECK_EQ(l.q[0].why, FV_QUARANTINE_REVOKED);
    CHECK(memcmp(l.q[0].id, rid1, 32) == 0);
    CHECK_EQ(records(c), 2);
    /* An earlier date for the revocation replaces a later one; a later one
     * never does, and nothing un-revokes a device. */
    certify(c, r, FV_ROLE_FIELD, 0, 0);
    certify(c, r, FV_ROLE_FIELD, 1, now + 3600);
    CHECK_EQ(held(c, NULL), 1);
    bag_free(&g);
    /* A vault that cannot open a revoked device's envelopes cannot date
     * them: it keeps them apart too (the safer side). */
    add(r, rid2, "also after");
    outbox(&g, r);
    {
        fv_vault *c2 = create("coord2");
        struct bag key;
        CHECK_EQ(fv_vs_org_learn(c2, pk), FV_OK); /* the public key only */
        certs(&key, c);
        CHECK_EQ(certs_in(c2, &key, NULL), key.n);
        CHECK_EQ(courier(c2, &g), FV_OK);
        CHECK_EQ(held(c2, &l), 2);
        CHECK_EQ(l.q[0].why, FV_QUARANTINE_REVOKED);
        CHECK_EQ(l.q[0].has_time, 0);
        bag_free(&key);
        fv_vault_close(c2);
    }
    bag_free(&g);

    /* A field device reached by a coordinator's bundle: the note passes
     * once the coordinator's certificate is there, not before. */
    CHECK_EQ(fv_note_add(c, note, fid, "come to the office"), FV_OK);
    outbox(&g, c);
    CHECK_EQ(courier(f, &g), FV_OK);
    CHECK_EQ(held(f, &l), 1);
    CHECK_EQ(l.q[0].kind, 4);
    CHECK_EQ(l.q[0].why, FV_QUARANTINE_UNKNOWN);
    certs(&cg, c);
    CHECK(certs_in(f, &cg, NULL) >= 2);
    CHECK_EQ(held(f, NULL), 0);
    bag_free(&cg);
    /* Its own envelopes come back to it whatever the list says. */
    {
        struct bag own;
        outbox(&own, f);
        fv_vault *lone = create("lone");
        CHECK_EQ(courier(f, &own), FV_OK);
        CHECK_EQ(held(f, NULL), 0);
        /* A vault with no list at all keeps everyone else's apart. */
        CHECK_EQ(courier(lone, &own), FV_OK);
        CHECK_EQ(held(lone, NULL), own.n);
        CHECK_EQ(records(lone), 0);
        bag_free(&own);
        fv_vault_close(lone);
    }
    bag_free(&g);
    fv_vault_close(c);
    fv_vault_close(f);
    fv_vault_close(x);
    fv_vault_close(r);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/fv_test_devices_XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK_EQ(fv_crypto_init(), FV_OK);
    test_org_signatures();
    test_certificates();
    test_quarantine();
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", root);
    }
    return check_summary("test_devices");
}
