/* test_sync_engine.c - the device engine (sync/client.c) against the server
 * engine (server/server_engine.c), in one process with no sockets: bytes are
 * moved by hand, in random slices, and connections are cut in both
 * directions at growing offsets: every byte offset at first, then at a
 * stride that grows with the offset (1 + offset/40 on the way up, 1 +
 * offset/60 on the way back, 7 + offset/30 for a coordinator's pull), each
 * cut followed by the next sync from where the last one left off, until
 * one runs through whole. That samples every phase of the exchange, not
 * every byte of it: the counts are printed. After every cut both sides must
 * be consistent, and the next sync must finish the work with nothing stored
 * twice. Real vaults and a real server database on disk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "client.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "proto.h"
#include "server_engine.h"
#include "store_server.h"
#include "vault_internal.h"
#include "vault_sync.h"

static char root[256];
static const char PASS[] = "pw";
static unsigned char pin[32], epoch[16], receipt_pk[32], receipt_sk[64];
static fv_sstore *sstore;
static fv_srv *srv;
static fv_srv_env env;
static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void srv_random(void *buf, size_t n, void *payload)
{
    (void)payload;
    fv_random(buf, n);
}

static fv_vault *new_vault(const char *name)
{
    char dir[400];
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    o.kdf_profile = FV_KDF_TEST;
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    CHECK_EQ(fv_vault_create(&v, dir, PASS, 2, &o), FV_OK);
    return v;
}

static void add_record(fv_vault *v, const char *title)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    in.title = title;
    in.narrative = "증언 text";
    in.narrative_len = strlen(in.narrative);
    CHECK_EQ(fv_record_add(v, NULL, &in), FV_OK);
}

struct outcome {
    int client_status;
    int done;
    size_t c2s, s2c; /* bytes moved */
    fv_client_stats stats;
    char *invite;
};

/* Runs one connection between a vault and the server. It is cut (both
 * engines dropped, as when the network goes) once `cut_c2s` bytes went to
 * the server or `cut_s2c` came back; SIZE_MAX means never. */
static struct outcome converse(fv_vault *v, const fv_client_request *req,
                               size_t cut_c2s, size_t cut_s2c)
{
    struct outcome o;
    unsigned char binding[32];
    fv_client *c = NULL;
    fv_srv_conn *sc = NULL;
    unsigned char *held = NULL; /* bytes the server has not consumed yet */
    size_t held_len = 0;
    int rounds = 0;

    memset(&o, 0, sizeof o);
    fv_random(binding, sizeof binding);
    o.client_status = fv_client_new(&c, v, req);
    if (o.client_status)
        return o;
    CHECK_EQ(fv_srv_conn_new(&sc, srv, binding, 1), FV_OK);
    fv_client_start(c, pin, binding);
    while (fv_client_status(c) == FV_OK && !fv_client_done(c) && rounds++ < 100000) {
        size_t n, take, moved = 0;
        const unsigned char *p = fv_client_pending(c, &n);
        /* client -> server, in a random slice */
        if (n > 0 && o.c2s < cut_c2s) {
            take = 1 + (size_t)(next_rand() % n);
            if (take > cut_c2s - o.c2s)
                take = cut_c2s - o.c2s;
            held = realloc(held, held_len + take);
            memcpy(held + held_len, p, take);
            held_len += take;
            fv_client_ack(c, take);
            o.c2s += take;
            moved = 1;
        }
        if (held_len > 0 && fv_srv_conn_state(sc) == FV_SRV_RUNNING) {
            size_t used = fv_srv_conn_recv(sc, held, held_len);
            memmove(held, held + used, held_len - used);
            held_len -= used;
            moved |= used > 0;
        }
        /* server -> client */
        p = fv_srv_conn_send_buf(sc, &n);
        if (n > 0 && o.s2c < cut_s2c) {
            take = 1 + (size_t)(next_rand() % n);
            if (take > cut_s2c - o.s2c)
                take = cut_s2c - o.s2c;
            unsigned char *copy = malloc(take);
            memcpy(copy, p, take);
            fv_srv_conn_send_ack(sc, take);
            o.s2c += take;
            fv_client_recv(c, copy, take);
            free(copy);
            moved = 1;
        }
        if (!moved)
            break; /* cut, or both sides wait: the connection is over */
    }
    o.done = fv_client_done(c);
    o.client_status = fv_client_status(c);
    o.stats = *fv_client_get_stats(c);
    if (fv_client_invite_text(c))
        o.invite = strdup(fv_client_invite_text(c));
    fv_client_free(c);
    fv_srv_conn_free(sc);
    free(held);
    return o;
}

static struct outcome sync_full(fv_vault *v)
{
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    return converse(v, &req, SIZE_MAX, SIZE_MAX);
}

static int count_cb(const fv_record *r, void *payload)
{
    (void)r;
    (*(int *)payload)++;
    return 0;
}

static int count_records(fv_vault *v)
{
    int n = 0;
    CHECK_EQ(fv_vault_list(v, count_cb, &n), FV_OK);
    return n;
}

/* Pseudo-random attachment bytes, and a checksum of what comes back. */
struct gen {
    uint64_t left, state, sum;
    uint64_t count;
};

static long long gen_read(unsigned char *buf, size_t len, void *payload)
{
    struct gen *g = payload;
    size_t n = len < g->left ? len : (size_t)g->left;
    for (size_t i = 0; i < n; i++) {
        g->state = g->state * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(g->state >> 56);
        g->sum = g->sum * 31 + buf[i];
    }
    g->left -= n;
    return (long long)n;
}

static int sum_write(const unsigned char *buf, size_t len, void *payload)
{
    struct gen *g = payload;
    for (size_t i = 0; i < len; i++)
        g->sum = g->sum * 31 + buf[i];
    g->count += len;
    return 0;
}

static int first_id(const fv_record *r, void *payload)
{
    memcpy(payload, r->id, FV_ID_BYTES);
    return 1;
}

static int count_rev(const fv_revision *rev, void *payload)
{
    CHECK_EQ(rev->kind, FV_REVISION);
    (*(int *)payload)++;
    return 0;
}

static long long log_rows(void)
{
    uint64_t head = 0;
    unsigned char chain[32];
    CHECK_EQ(fv_sstore_log_head(sstore, &head, chain), FV_OK);
    return (long long)head;
}

static void enroll(fv_vault *v, const char *invite_text, int want_role)
{
    fv_invite inv;
    fv_client_request req = {.op = FV_CLIENT_ENROLL, .invite = &inv};
    struct outcome o;
    CHECK_EQ(fv_invite_decode(&inv, invite_text), FV_OK);
    o = converse(v, &req, SIZE_MAX, SIZE_MAX);
    CHECK_EQ(o.client_status, FV_OK);
    CHECK(o.done);
    CHECK_EQ(o.stats.role, want_role);
}

static int count_note(const fv_note *n, void *payload)
{
    (void)n;
    (*(int *)payload)++;
    return 0;
}

static int find_retraction(const fv_retraction *r, void *payload)
{
    return memcmp(r->record, payload, FV_ID_BYTES) == 0;
}

/* A whole valid frame and then a bad length, in one fv_client_recv: the
 * engine fails with FV_EPROTO and frees the message it decoded the first
 * frame into (a leak here is found by LeakSanitizer in the FV_SANITIZE
 * build). */
static void good_frame_then_bad_length(fv_vault *v)
{
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    unsigned char binding[32], *buf = NULL;
    fv_client *c = NULL;
    fv_srv_conn *sc = NULL;
    const unsigned char *p;
    size_t n, flen;

    fv_random(binding, sizeof binding);
    CHECK_EQ(fv_client_new(&c, v, &req), FV_OK);
    CHECK_EQ(fv_srv_conn_new(&sc, srv, binding, 1), FV_OK);
    CHECK_EQ(fv_client_start(c, pin, binding), FV_OK);
    p = fv_client_pending(c, &n);
    CHECK(n > 0);
    CHECK_EQ(fv_srv_conn_recv(sc, p, n), n);
    fv_client_ack(c, n);
    p = fv_srv_conn_send_buf(sc, &n);
    CHECK(n > 4);
    flen = 4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
    CHECK(flen <= n);
    if (flen <= n && (buf = malloc(flen + 4))) {
        memcpy(buf, p, flen);
        memset(buf + flen, 0xff, 4); /* beyond FV_FRAME_MAX */
        CHECK_EQ(fv_client_recv(c, buf, flen + 4), FV_EPROTO);
        CHECK_EQ(fv_client_status(c), FV_EPROTO);
        /* Sticky: more bytes change nothing and allocate nothing. */
        CHECK_EQ(fv_client_recv(c, buf, flen), FV_EPROTO);
    }
    free(buf);
    fv_client_free(c);
    fv_srv_conn_free(sc);
}

/* The server's whole log, checked: every genesis by `author` that is not
 * sealed to the organisation key `org` has its key grant in the log too.
 * *genesis and *grants count what it holds of `author`. */
struct grant_audit {
    const unsigned char *author, *org;
    unsigned char need[400][32]; /* genesis ids that need a grant */
    unsigned char have[400][32]; /* grant targets */
    size_t nneed, nhave;
};

static int audit_cb(const fv_sstore_entry *e, void *payload)
{
    struct grant_audit *a = payload;
    fv_env ev;
    size_t i;
    if (!e->bytes || fv_env_parse(&ev, e->bytes, e->len) != FV_OK)
        return 0;
    if (memcmp(ev.author, a->author, 32) == 0) {
        for (i = 0; i < ev.nrecipients; i++)
            if (memcmp(ev.recipient_pk[i], a->org, 32) == 0)
                break;
        if (ev.kind == FV_ENV_GRANT && a->nhave < 400)
            memcpy(a->have[a->nhave++], ev.parents[0], 32);
        else if (ev.genesis && i == ev.nrecipients && a->nneed < 400)
            memcpy(a->need[a->nneed++], ev.id, 32);
    }
    fv_env_clear(&ev);
    return 0;
}

/* The number of genesis envelopes of `author` the server holds without
 * the grant that opens them. */
static size_t ungranted(struct grant_audit *a)
{
    size_t missing = 0;
    uint64_t head = 0;
    unsigned char chain[32];
    a->nneed = a->nhave = 0;
    CHECK_EQ(fv_sstore_log_head(sstore, &head, chain), FV_OK);
    CHECK_EQ(fv_sstore_read(sstore, NULL, 0, head, SIZE_MAX, audit_cb, a), FV_OK);
    for (size_t i = 0; i < a->nneed; i++) {
        size_t j;
        for (j = 0; j < a->nhave && memcmp(a->need[i], a->have[j], 32); j++)
            ;
        missing += j == a->nhave;
    }
    return missing;
}

/* Records a walk shows, [0], and names as not readable here, [1]. */
static int tally_ok(const fv_record *r, void *payload)
{
    (void)r;
    ((int *)payload)[0]++;
    return 0;
}

static int tally_unreadable(const fv_unreadable *u, void *payload)
{
    (void)u;
    ((int *)payload)[1]++;
    return 0;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[400], *admin = NULL;
    unsigned char token[16];
    fv_srv_config cfg = {FV_SRV_CONFIG_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, 0};
    struct outcome o;

    snprintf(root, sizeof root, "%s/fv-test-engine-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root) || fv_crypto_init())
        return 1;
    snprintf(path, sizeof path, "%s/server.db", root);
    CHECK_EQ(fv_sstore_open(&sstore, path, 1), FV_OK);
    fv_random(pin, sizeof pin);
    fv_random(epoch, sizeof epoch);
    fv_sign_keypair(receipt_pk, receipt_sk);
    env.random = srv_random;
    env.now = 1800000000;
    cfg.store = sstore;
    cfg.receipt_sk = receipt_sk;
    cfg.epoch = epoch;
    cfg.pin = pin;
    cfg.address = "127.0.0.1:1";
    cfg.env = &env;
    CHECK_EQ(fv_srv_new(&srv, &cfg), FV_OK);
    fv_random(token, sizeof token);
    CHECK_EQ(fv_srv_invite_create(&admin, sstore, cfg.address, pin, NULL, "admin",
                                  5, FV_ROLE_COORDINATOR, env.now + 3600, token),
             FV_OK);

    /* Coordinator: enroll, create and publish the organisation key. */
    fv_vault *coord = new_vault("coord");
    enroll(coord, admin, FV_ROLE_COORDINATOR);
    unsigned char org[32];
    CHECK_EQ(fv_vs_org_create(coord, org), FV_OK);
    fv_client_request orgreq = {.op = FV_CLIENT_ORGKEY};
    o = converse(coord, &orgreq, SIZE_MAX, SIZE_MAX);
    CHECK_EQ(o.client_status, FV_OK);
    fv_client_request inv = {.op = FV_CLIENT_INVITE, .name = "worker 17",
                             .role = FV_ROLE_FIELD, .ttl = 3600};
    o = converse(coord, &inv, SIZE_MAX, SIZE_MAX);
    CHECK_EQ(o.client_status, FV_OK);
    CHECK(o.invite != NULL);

    /* Field device: records made before enrolling reach the organisation
     * through key grants. */
    fv_vault *field = new_vault("field");
    add_record(field, "before enrolling 1");
    add_record(field, "before enrolling 2");
    if (o.invite)
        enroll(field, o.invite, FV_ROLE_FIELD);
    free(o.invite);
    /* The author still reads what it recorded before enrolling, also after
     * opening its vault again. */
    CHECK_EQ(count_records(field), 2);
    {
        char dir[400];
        snprintf(dir, sizeof dir, "%s/field", root);
        fv_vault_close(field);
        field = NULL;
        CHECK_EQ(fv_vault_open(&field, dir, PASS, 2), FV_OK);
        CHECK_EQ(count_records(field), 2);
        /* Its history shows the one revision, not the key grant beside it. */
        unsigned char early[FV_ID_BYTES];
        int revs = 0;
        CHECK_EQ(fv_vault_list(field, first_id, early), FV_ECANCELED);
        CHECK_EQ(fv_record_history(field, early, count_rev, &revs), FV_OK);
        CHECK_EQ(revs, 1);
    }
    for (int i = 0; i < 6; i++) {
        char t[32];
        snprintf(t, sizeof t, "record %d", i);
        add_record(field, t);
    }

    /* Cut the upload at growing offsets until a sync gets through whole:
     * every cut leaves both sides consistent, and work done stays done. */
    size_t cuts = 0, up_last = 0;
    for (size_t cut = 1;; cut += 1 + cut / 40) {
        fv_client_request req = {.op = FV_CLIENT_SYNC};
        o = converse(field, &req, cut, SIZE_MAX);
        cuts++;
        up_last = cut;
        if (o.done)
            break;
        if (cut > 4u << 20) {
            CHECK(0); /* never finishing means a bug */
            break;
        }
    }
    CHECK(cuts > 10);
    printf("cuts on the way up: %zu, every offset to 40, then sparser, the "
           "last at byte %zu\n", cuts, up_last);
    /* Cuts on the way back, at growing offsets of a sync's answer. */
    add_record(field, "answered late");
    cuts = 0;
    for (size_t cut = 0;; cut += 1 + cut / 60) {
        fv_client_request req = {.op = FV_CLIENT_SYNC};
        o = converse(field, &req, SIZE_MAX, cut);
        cuts++;
        if (o.done) {
            printf("cuts on the way back: %zu, every offset to 60, then "
                   "sparser, the last at byte %zu\n", cuts, cut);
            break;
        }
        if (cut > 4u << 20) {
            CHECK(0);
            break;
        }
    }
    o = sync_full(field);
    CHECK_EQ(o.client_status, FV_OK);
    CHECK(o.done);
    CHECK_EQ(o.stats.outbox, 0); /* everything delivered, nothing twice */
    /* 9 records + 2 grants on the server, each once. */
    CHECK_EQ(log_rows(), 11);

    /* The coordinator pulls, with cuts, and ends with every record once,
     * readable (the two early ones through their grants). */
    cuts = 0;
    for (size_t cut = 0;; cut += 7 + cut / 30) {
        fv_client_request req = {.op = FV_CLIENT_SYNC};
        o = converse(coord, &req, SIZE_MAX, cut);
        cuts++;
        if (o.done) {
            printf("cuts of a coordinator's pull: %zu, every 7th offset at "
                   "first, then sparser, the last at byte %zu\n", cuts, cut);
            break;
        }
        if (cut > 4u << 20) {
            CHECK(0);
            break;
        }
    }
    CHECK_EQ(count_records(coord), 9);
    o = sync_full(coord);
    CHECK_EQ(o.stats.pulled, 0);
    CHECK_EQ(count_records(coord), 9);

    /* A second field device never receives the first one's envelopes. */
    o = converse(coord, &inv, SIZE_MAX, SIZE_MAX);
    fv_vault *field2 = new_vault("field2");
    if (o.invite)
        enroll(field2, o.invite, FV_ROLE_FIELD);
    free(o.invite);
    add_record(field2, "other worker");
    o = sync_full(field2);
    CHECK_EQ(o.client_status, FV_OK);
    CHECK_EQ(o.stats.pushed, 1);
    CHECK_EQ(o.stats.pulled, 0); /* its own envelopes are not sent back */
    CHECK_EQ(count_records(field2), 1);

    /* A sync with nothing new: everything in one flight each way. */
    o = sync_full(field2);
    CHECK_EQ(o.stats.pushed + o.stats.pulled, 0);
    CHECK(o.c2s < 400 && o.s2c < 400);

    /* A concurrent edit: the coordinator and the author both edit the same
     * record from the same head; both revisions survive as a conflict. */
    o = sync_full(coord);
    CHECK_EQ(count_records(coord), 10);
    unsigned char rid[FV_ID_BYTES];
    CHECK_EQ(fv_vault_list(field2, first_id, rid), FV_ECANCELED);
    fv_record_input ed = FV_RECORD_INPUT_INIT;
    ed.title = "edited in the field";
    CHECK_EQ(fv_record_edit(field2, NULL, rid, &ed), FV_OK);
    ed.title = "edited at the office";
    CHECK_EQ(fv_record_edit(coord, NULL, rid, &ed), FV_OK);
    o = sync_full(field2);
    CHECK_EQ(o.stats.pushed, 1);
    o = sync_full(coord);
    CHECK_EQ(o.client_status, FV_OK);
    CHECK_EQ(o.stats.conflicts, 1);
    fv_record *r = NULL;
    CHECK_EQ(fv_record_get(coord, &r, rid), FV_OK);
    CHECK(r && r->nheads == 2);
    fv_record_free(r);
    /* The author sees the coordinator's revision too: it is addressed to it. */
    o = sync_full(field2);
    CHECK_EQ(o.stats.conflicts, 1);
    CHECK_EQ(fv_record_get(field2, &r, rid), FV_OK);
    CHECK(r && r->nheads == 2);
    fv_record_free(r);
    /* An attachment crosses with the connection cut again and again, each
     * time at a later byte: every chunk the server received whole is kept,
     * and the coordinator ends with the exact bytes. */
    {
        struct gen src = {3 * FV_CHUNK_BYTES + 12345, 99, 0, 0};
        struct gen back = {0, 0, 0, 0};
        fv_attachment_source as = {"interview.m4a", NULL, gen_read, &src};
        fv_record_input in = FV_RECORD_INPUT_INIT;
        unsigned char aid[FV_ID_BYTES];
        uint64_t sent = 0, cuts_a = 0, total = src.left;
        int delivered = -1;
        in.title = "with audio";
        in.attachments = &as;
        in.nattachments = 1;
        CHECK_EQ(fv_record_add(field, aid, &in), FV_OK);
        for (size_t cut = 200;; cut += 150000) {
            fv_client_request req = {.op = FV_CLIENT_SYNC};
            o = converse(field, &req, cut, SIZE_MAX);
            sent += o.c2s;
            cuts_a++;
            if (o.done)
                break;
            if (cuts_a > 200) {
                CHECK(0);
                break;
            }
        }
        CHECK(cuts_a > 3);
        /* Resending is bounded by what was in flight at each cut. */
        CHECK(sent < total * 2 + cuts_a * (uint64_t)FV_CHUNK_BYTES * 2);
        CHECK_EQ(fv_record_delivered(field, &delivered, aid), FV_OK);
        CHECK_EQ(delivered, 1);
        o = sync_full(field);
        CHECK_EQ(o.stats.chunks_sent, 0); /* nothing twice */
        for (size_t cut = 100;; cut += 200000) {
            fv_client_request req = {.op = FV_CLIENT_SYNC};
            o = converse(coord, &req, SIZE_MAX, cut);
            if (o.done)
                break;
            if (cut > 50u << 20) {
                CHECK(0);
                break;
            }
        }
        fv_record *ar = NULL;
        CHECK_EQ(fv_record_get(coord, &ar, aid), FV_OK);
        CHECK(ar && ar->nattachments == 1 &&
              ar->attachments[0].chunks_present == ar->attachments[0].chunks);
        fv_record_free(ar);
        CHECK_EQ(fv_attachment_read(coord, aid, "interview.m4a", sum_write, &back,
                                    NULL, NULL), FV_OK);
        CHECK_EQ(back.count, total);
        CHECK(back.sum == src.sum);
    }

    /* Retraction: entries whose envelopes the server erased come as their
     * ids; the device engine checks the chain over them, moves its cursor
     * on and stores nothing for them. */
    {
        unsigned char x[FV_ID_BYTES], x2[FV_ID_BYTES], nid[FV_ID_BYTES];
        fv_record_input in = FV_RECORD_INPUT_INIT;
        long long before;
        int notes = 0;
        o = sync_full(coord);
        CHECK_EQ(o.client_status, FV_OK);
        /* A note to the field about X, which the field device retracts
         * before pulling it: its feed holds the note, erased. */
        in.title = "to be retracted";
        CHECK_EQ(fv_record_add(field, x, &in), FV_OK);
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        o = sync_full(coord);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(fv_note_add(coord, nid, x, "please call back"), FV_OK);
        o = sync_full(coord);
        CHECK_EQ(o.stats.pushed, 1);
        CHECK_EQ(fv_record_retract(field, x), FV_OK);
        before = log_rows();
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK(o.done);
        CHECK_EQ(o.stats.pushed, 1);
        CHECK_EQ(o.stats.pulled, 1); /* the note, as its id */
        CHECK_EQ(o.stats.added, 0);
        CHECK_EQ(log_rows(), before + 1);
        CHECK_EQ(fv_note_list(field, NULL, count_note, &notes), FV_OK);
        CHECK_EQ(notes, 0);
        /* The cursor moved over it with the right chain: the next sync
         * has nothing, and is not refused as diverged. */
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(o.stats.pulled, 0);
        /* The coordinator pulls the retraction: its copy goes. */
        o = sync_full(coord);
        CHECK_EQ(o.client_status, FV_OK);
        fv_record *gone = NULL;
        CHECK_EQ(fv_record_get(coord, &gone, x), FV_ENOTFOUND);
        fv_record_free(gone);

        /* A record the coordinator never pulled: it gets its envelopes as
         * ids, then the retraction, with the connection cut at growing
         * offsets on the way back. */
        in.title = "retracted before anyone read it";
        CHECK_EQ(fv_record_add(field, x2, &in), FV_OK);
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(fv_record_retract(field, x2), FV_OK);
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        for (size_t cut = 0;; cut += 3 + cut / 20) {
            fv_client_request req = {.op = FV_CLIENT_SYNC};
            o = converse(coord, &req, SIZE_MAX, cut);
            CHECK(o.client_status == FV_OK || !o.done);
            if (o.done)
                break;
            if (cut > 1u << 20) {
                CHECK(0);
                break;
            }
        }
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(fv_record_get(coord, &gone, x2), FV_ENOTFOUND);
        fv_record_free(gone);
        CHECK_EQ(fv_retraction_list(coord, find_retraction, x2), FV_ECANCELED);
        o = sync_full(coord);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(o.stats.pulled, 0);

        /* The coordinator retracts a record the field device edits offline
         * meanwhile: its late revision is acknowledged (its outbox drains)
         * but not stored, and the retraction reaches it. */
        unsigned char x3[FV_ID_BYTES];
        in.title = "edited after its retraction";
        CHECK_EQ(fv_record_add(field, x3, &in), FV_OK);
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        o = sync_full(coord);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(fv_record_retract(coord, x3), FV_OK);
        o = sync_full(coord);
        CHECK_EQ(o.stats.pushed, 1);
        fv_record_input ed3 = FV_RECORD_INPUT_INIT;
        ed3.title = "late edit";
        CHECK_EQ(fv_record_edit(field, NULL, x3, &ed3), FV_OK);
        before = log_rows();
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(o.stats.pushed, 1);
        CHECK_EQ(o.stats.pulled, 1); /* the retraction */
        CHECK_EQ(log_rows(), before);
        CHECK_EQ(fv_record_get(field, &gone, x3), FV_ENOTFOUND);
        fv_record_free(gone);
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(o.stats.outbox, 0);
        CHECK_EQ(o.stats.pushed + o.stats.pulled, 0);
    }

    good_frame_then_bad_length(field2);

    /* A first sync of 300 records made offline, before enrolling, cut at
     * growing offsets: the key grants that open them travel first, so the
     * server never holds one of them without its grant, and the
     * coordinator never meets a record it cannot open. */
    {
        struct grant_audit *audit = calloc(1, sizeof *audit);
        unsigned char f3[32], box[32];
        int tally[2] = {0, 0}, unread_seen = 0;
        size_t cuts3 = 0, worst = 0;
        fv_vault *field3 = new_vault("field3");
        o = converse(coord, &inv, SIZE_MAX, SIZE_MAX);
        for (int i = 0; i < 300; i++) {
            char t[32];
            snprintf(t, sizeof t, "offline %d", i);
            add_record(field3, t);
        }
        if (o.invite)
            enroll(field3, o.invite, FV_ROLE_FIELD);
        free(o.invite);
        fv_vs_device(field3, f3, box);
        audit->author = f3;
        audit->org = org;
        for (size_t cut = 1;; cut += 1 + cut / 8) {
            fv_client_request req = {.op = FV_CLIENT_SYNC};
            size_t missing;
            o = converse(field3, &req, cut, SIZE_MAX);
            cuts3++;
            missing = ungranted(audit);
            if (missing > worst)
                worst = missing;
            /* What the coordinator sees after this cut. */
            CHECK_EQ(sync_full(coord).client_status, FV_OK);
            tally[0] = tally[1] = 0;
            CHECK_EQ(fv_vault_query_ex(coord, NULL, tally_ok, tally_unreadable,
                                       tally), FV_OK);
            unread_seen += tally[1];
            if (o.done || cut > 8u << 20)
                break;
        }
        CHECK(o.done);
        CHECK(cuts3 > 20);
        CHECK_EQ(worst, 0);
        CHECK_EQ(unread_seen, 0);
        CHECK_EQ(audit->nneed, 300);
        CHECK_EQ(audit->nhave, 300);
        CHECK_EQ(ungranted(audit), 0);
        /* Every one of the 300 readable at the desk. */
        tally[0] = tally[1] = 0;
        CHECK_EQ(fv_vault_query_ex(coord, NULL, tally_ok, tally_unreadable,
                                   tally), FV_OK);
        CHECK_EQ(tally[1], 0);
        CHECK(tally[0] >= 300);
        fv_vault_close(field3);
        free(audit);
    }

    /* One envelope the server refuses (a note about a record it will never
     * hold) among good ones: the receipt refuses it alone (protocol 2),
     * the rest is delivered, the device counts it, marks it refused and
     * never sends it again, and later syncs go on. */
    {
        unsigned char ghost[32], nid[32], yid[32], sp[32], self[1][32];
        static const unsigned char payload[] = "not read by the server";
        fv_record_input in = FV_RECORD_INPUT_INIT;
        fv_v_write w;
        fv_record *got = NULL;
        int delivered = -1;
        o = sync_full(field);
        CHECK_EQ(o.client_status, FV_OK);
        fv_random(ghost, sizeof ghost);
        memset(&w, 0, sizeof w);
        w.kind = FV_ENV_NOTE;
        w.record = ghost;
        w.parents = (const unsigned char(*)[FV_ID_BYTES])ghost;
        w.nparents = 1;
        w.payload = payload;
        w.payload_len = sizeof payload;
        fv_vs_device(field, sp, self[0]);
        w.recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])self;
        w.nrecipients = 1;
        CHECK_EQ(fv_store_begin(field->store), FV_OK);
        CHECK_EQ(fv_v_write_envelope(field, nid, &w), FV_OK);
        CHECK_EQ(fv_store_commit(field->store), FV_OK);
        in.title = "after a refused note";
        CHECK_EQ(fv_record_add(field, yid, &in), FV_OK);
        /* The second round starts over first (a replaced or rolled-back
         * server): the refused envelope is offered once more with
         * everything else, since a refusal is one server's judgement; this
         * server refuses it again, alone. */
        for (int round = 0; round < 2; round++) {
            if (round == 1) {
                fv_sync_state st;
                CHECK_EQ(fv_vs_state_get(field, &st), FV_OK);
                fv_client_forget(&st);
                CHECK_EQ(fv_vs_reset(field, &st), FV_OK);
                fv_wipe(&st, sizeof st);
            }
            o = sync_full(field);
            CHECK_EQ(o.client_status, FV_OK);
            CHECK(o.done);
            CHECK_EQ(o.stats.rejected, 1);
            if (round == 0)
                CHECK_EQ(o.stats.pushed, 1);
            CHECK_EQ(fv_store_record_delivered(field->store, yid, &delivered),
                     FV_OK);
            CHECK_EQ(delivered, 1);
            /* Not in the outbox any more: nothing to send, nothing
             * refused. */
            o = sync_full(field);
            CHECK_EQ(o.client_status, FV_OK);
            CHECK_EQ(o.stats.pushed, 0);
            CHECK_EQ(o.stats.rejected, 0);
            CHECK_EQ(o.c2s < 4096, 1);
        }
        o = sync_full(coord);
        CHECK_EQ(o.client_status, FV_OK);
        CHECK_EQ(fv_record_get(coord, &got, yid), FV_OK);
        fv_record_free(got);
    }

    fv_vault_close(coord);
    fv_vault_close(field);
    fv_vault_close(field2);
    fv_srv_free(srv);
    fv_sstore_close(sstore);
    free(admin);
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", root);
    }
    return check_summary("test_sync_engine");
}
