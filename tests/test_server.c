/*
 * test_server.c - the sync server (server/server_engine.c, server/store_server.c,
 * server/server.c) against docs/PROTOCOL.md.
 *
 * Most tests drive the sans-I/O engine directly, with no socket: client
 * frames are built with proto.c's encoders, HELLO signatures are made over
 * fv_hello_tbs with a fixed fake pin and binding, envelopes with
 * fv_env_build. The last test runs fv_server_run over real TLS on 127.0.0.1
 * in a thread, with a good client served while bad ones are dropped.
 * Courier bundles (fv_server_import) are written by real vaults enrolled
 * through the device engine (sync/client.c), and by hand.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "check.h"
#include "client.h"
#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"
#include "proto.h"
#include "server.h"
#include "server_engine.h"
#include "store_server.h"
#include "tls_server.h"
#include "vault_sync.h"

#define NOW 1700000000
#define ADDRESS "vault.example.org:7443"

/* ---- small helpers ---------------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_server: out of memory\n");
        exit(2);
    }
    return p;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_server: cannot remove %s\n", dir);
}

static void make_tmpdir(char out[64])
{
    snprintf(out, 64, "/tmp/fv-test-server-XXXXXX");
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        exit(2);
    }
}

/* A growable byte buffer. */
typedef struct buf {
    unsigned char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            exit(2);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Decodes the frame at *off of b: 1 and *m, or 0 at the end (or if the
 * frame is cut or does not decode). */
static int next_msg(const buf *b, size_t *off, fv_msg *m)
{
    size_t n;
    if (*off + 4 > b->len)
        return 0;
    n = (size_t)b->p[*off] << 24 | (size_t)b->p[*off + 1] << 16 |
        (size_t)b->p[*off + 2] << 8 | b->p[*off + 3];
    if (*off + 4 + n > b->len || fv_msg_decode(m, b->p + *off + 4, n))
        return 0;
    *off += 4 + n;
    return 1;
}

/* The types of every message in b, as a string of numbers ("16,17,19"). */
static const char *types(const buf *b)
{
    static char s[512];
    size_t off = 0, o = 0;
    fv_msg m;
    s[0] = '\0';
    while (next_msg(b, &off, &m) && o + 8 < sizeof s)
        o += (size_t)snprintf(s + o, sizeof s - o, o ? ",%d" : "%d", m.type);
    return s;
}

/* The error code of the last message of b, or 0 if it is no ERROR. */
static int last_error(const buf *b)
{
    size_t off = 0;
    fv_msg m;
    int code = 0;
    while (next_msg(b, &off, &m))
        code = m.type == FV_MSG_ERROR ? (int)m.u.error.code : 0;
    return code;
}

/* ---- a server and devices --------------------------------------------- */

typedef struct harness {
    char dir[64];
    char db[128];
    fv_sstore *st;
    fv_srv *srv;
    fv_srv_env env;
    unsigned char sk[64], pk[32], epoch[16], pin[32];
    unsigned char admin_token[16];
} harness;

static void test_random(void *p, size_t n, void *payload)
{
    (void)payload;
    fv_random(p, n);
}

static int log_lines;
static int log_leak; /* a log line showed something it must not */
static const char *log_forbidden; /* e.g. an envelope's payload marker */

static void test_log(const char *line, void *payload)
{
    (void)payload;
    log_lines++;
    if (log_forbidden && strstr(line, log_forbidden))
        log_leak = 1;
    if (getenv("FV_TEST_VERBOSE"))
        fprintf(stderr, "  log: %s\n", line);
}

static void harness_open(harness *h)
{
    fv_srv_config cfg;
    char *text = NULL;
    memset(h, 0, sizeof *h);
    make_tmpdir(h->dir);
    snprintf(h->db, sizeof h->db, "%s/server.db", h->dir);
    if (fv_sstore_open(&h->st, h->db, 1) != FV_OK)
        exit(2);
    fv_sign_keypair(h->pk, h->sk);
    fv_random(h->epoch, sizeof h->epoch);
    memset(h->pin, 0x5a, sizeof h->pin);
    h->env.now = NOW;
    h->env.random = test_random;
    h->env.log = test_log;
    memset(&cfg, 0, sizeof cfg);
    cfg.version = FV_SRV_CONFIG_VERSION;
    cfg.store = h->st;
    cfg.receipt_sk = h->sk;
    cfg.epoch = h->epoch;
    cfg.pin = h->pin;
    cfg.address = ADDRESS;
    cfg.env = &h->env;
    CHECK_EQ(fv_srv_new(&h->srv, &cfg), FV_OK);
    fv_random(h->admin_token, sizeof h->admin_token);
    CHECK_EQ(fv_srv_invite_create(&text, h->st, ADDRESS, h->pin, NULL, "admin",
                                  5, FV_ROLE_COORDINATOR, NOW + 3600,
                                  h->admin_token),
             FV_OK);
    free(text);
}

static void harness_close(harness *h)
{
    fv_srv_free(h->srv);
    fv_sstore_close(h->st);
    rm_rf(h->dir);
}

typedef struct device {
    unsigned char pk[32], sk[64], box[32], box_sk[32];
} device;

static void device_new(device *d)
{
    fv_sign_keypair(d->pk, d->sk);
    fv_box_keypair(d->box, d->box_sk);
}

static const unsigned char binding_a[32] = {1, 2, 3, 4};

/* The highest protocol version c_hello offers: 1 plays an older device. */
static unsigned hello_max = FV_PROTOCOL_VERSION;

/* HELLO from d, over `binding` and `pin`; enrolling with `token` if given. */
static void c_hello(fv_out *o, const device *d, const unsigned char pin[32],
                    const unsigned char binding[32], const unsigned char *token)
{
    unsigned char *tbs, sig[64];
    size_t len;
    if (fv_hello_tbs(&tbs, &len, pin, binding, d->pk, token,
                     token ? d->box : NULL) != FV_OK)
        exit(2);
    fv_sign(sig, tbs, len, d->sk);
    fv_enc_free_buf(tbs, len);
    CHECK_EQ(fv_send_hello_upto(o, hello_max, d->pk, sig, token,
                                token ? d->box : NULL),
             FV_OK);
}

/* An envelope by d, sealed to `recips` (n of them), with a payload of
 * `size` bytes. *out is malloc'd. */
static unsigned char *make_env(const device *d,
                               const unsigned char (*recips)[32], size_t n,
                               size_t size, size_t *len, unsigned char id[32])
{
    unsigned char *payload = xmalloc(size), *out = NULL;
    fv_env_spec sp;
    memset(payload, 0xa0, size);
    memset(&sp, 0, sizeof sp);
    sp.kind = FV_ENV_REVISION;
    sp.payload = payload;
    sp.payload_len = size;
    sp.recipients = recips;
    sp.nrecipients = n;
    sp.sign_pk = d->pk;
    sp.sign_sk = d->sk;
    if (fv_env_build(&out, len, id, &sp) != FV_OK)
        exit(2);
    free(payload);
    return out;
}

static unsigned char *env_to_self(const device *d, size_t *len,
                                  unsigned char id[32])
{
    return make_env(d, (const unsigned char(*)[32])d->box, 1, 64, len, id);
}

/* Takes every byte the engine offers, acknowledging in pieces of `piece`. */
static size_t drain(fv_srv_conn *c, buf *out, size_t piece)
{
    size_t total = 0, len;
    const unsigned char *p;
    while ((p = fv_srv_conn_send_buf(c, &len)) != NULL) {
        if (len > piece)
            len = piece;
        buf_add(out, p, len);
        fv_srv_conn_send_ack(c, len);
        total += len;
    }
    return total;
}

/* Feeds `in` in chunks of `chunk` bytes, reading all output as it comes.
 * Returns how many input bytes the engine took. */
static size_t drive(fv_srv_conn *c, const unsigned char *in, size_t n,
                    size_t chunk, buf *out)
{
    size_t off = 0;
    for (;;) {
        size_t take = n - off < chunk ? n - off : chunk, k = 0, got;
        if (take && fv_srv_conn_state(c) == FV_SRV_RUNNING)
            k = fv_srv_conn_recv(c, in + off, take);
        off += k;
        got = drain(c, out, 1000);
        if (k == 0 && got == 0)
            break;
    }
    return off;
}

/* One connection: feeds the flight, collects the replies into out (reset
 * first), returns the final state. */
static int session(harness *h, const unsigned char binding[32],
                   const fv_out *flight, buf *out)
{
    fv_srv_conn *c = NULL;
    size_t len;
    const unsigned char *p = fv_out_pending(flight, &len);
    int state;
    static unsigned long id;
    out->len = 0;
    if (fv_srv_conn_new(&c, h->srv, binding, ++id) != FV_OK)
        exit(2);
    drive(c, p, len, 4096, out);
    state = fv_srv_conn_state(c);
    fv_srv_conn_free(c);
    return state;
}

/* Enrolls d with `token`: 1 on WELCOME. */
static int enroll(harness *h, const device *d, const unsigned char *token)
{
    fv_out o;
    buf out = {0};
    size_t off = 0;
    fv_msg m;
    int ok;
    fv_out_init(&o);
    c_hello(&o, d, h->pin, binding_a, token);
    session(h, binding_a, &o, &out);
    ok = next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME;
    fv_out_free(&o);
    buf_free(&out);
    return ok;
}

/* A coordinator's INVITE: returns the decoded invite's token in `token`. */
static int make_invite(harness *h, const device *coord, const char *name,
                       int role, unsigned char token[16])
{
    fv_out o;
    buf out = {0};
    size_t off = 0;
    fv_msg m;
    fv_invite inv;
    char text[1100];
    int ok = 0;
    fv_out_init(&o);
    c_hello(&o, coord, h->pin, binding_a, NULL);
    fv_send_invite(&o, name, (uint64_t)role, 3600);
    fv_send_simple(&o, FV_MSG_BYE);
    session(h, binding_a, &o, &out);
    if (next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME &&
        next_msg(&out, &off, &m) && m.type == FV_MSG_INVITED &&
        m.u.invited.len < sizeof text) {
        memcpy(text, m.u.invited.text, m.u.invited.len);
        text[m.u.invited.len] = '\0';
        if (fv_invite_decode(&inv, text) == FV_OK) {
            CHECK(strcmp(inv.address, ADDRESS) == 0);
            CHECK(memcmp(inv.pin, h->pin, 32) == 0);
            memcpy(token, inv.token, 16);
            ok = 1;
        }
    }
    fv_out_free(&o);
    buf_free(&out);
    return ok;
}

static uint64_t log_head(harness *h)
{
    uint64_t seq = 0;
    unsigned char chain[32];
    CHECK_EQ(fv_sstore_log_head(h->st, &seq, chain), FV_OK);
    return seq;
}

/* ---- init ------------------------------------------------------------- */

static void test_init(void)
{
    char dir[64], sdir[128], path[256], *inv = NULL, *inv2 = NULL;
    unsigned char pin[32], pin2[32], token_hash[32];
    fv_invite dec;
    struct stat sb;
    fv_sstore *st = NULL;
    fv_sstore_invite si;
    unsigned char epoch[16], rpk[32];
    FILE *f;

    make_tmpdir(dir);
    snprintf(sdir, sizeof sdir, "%s/srv", dir);
    CHECK_EQ(fv_server_init(sdir, "no-port", pin, &inv), FV_EINVAL);
    CHECK_EQ(fv_server_init(sdir, "::1:7443", pin, &inv), FV_EINVAL);
    CHECK_EQ(fv_server_init(sdir, "h:70000", pin, &inv), FV_EINVAL);
    CHECK(inv == NULL);
    CHECK_EQ(fv_server_init(sdir, "127.0.0.1:7443", pin, &inv), FV_OK);
    CHECK(inv != NULL && strncmp(inv, "fv1-", 4) == 0);

    CHECK(stat(sdir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    snprintf(path, sizeof path, "%s/receipt.key", sdir);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600 &&
          sb.st_size == 64);
    snprintf(path, sizeof path, "%s/tls.key", sdir);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    snprintf(path, sizeof path, "%s/tls.crt", sdir);
    CHECK(stat(path, &sb) == 0);
    CHECK_EQ(fv_tls_identity_pin(path, pin2), FV_OK);
    CHECK(memcmp(pin, pin2, 32) == 0);
    snprintf(path, sizeof path, "%s/server.db", sdir);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0077) == 0);
    {
        char cdir[256];
        snprintf(cdir, sizeof cdir, "%s/chunks", sdir);
        CHECK(stat(cdir, &sb) == 0 && S_ISDIR(sb.st_mode) &&
              (sb.st_mode & 0777) == 0700);
    }

    /* The invite: address, pin, a token whose hash (only) the db holds. */
    CHECK_EQ(fv_invite_decode(&dec, inv), FV_OK);
    CHECK(strcmp(dec.address, "127.0.0.1:7443") == 0);
    CHECK(memcmp(dec.pin, pin, 32) == 0);
    CHECK(!dec.has_org);
    fv_hash(token_hash, dec.token, 16);
    CHECK_EQ(fv_sstore_open(&st, path, 0), FV_OK);
    if (st) {
        CHECK_EQ(fv_sstore_invite_get(st, token_hash, &si), FV_OK);
        CHECK_EQ(si.role, FV_ROLE_COORDINATOR);
        CHECK(si.name_len == 5 && strcmp(si.name, "admin") == 0);
        CHECK(!si.used);
        CHECK(si.expires > (int64_t)time(NULL) + 29 * 86400 &&
              si.expires <= (int64_t)time(NULL) + 30 * 86400);
        {
            unsigned char raw[32] = {0};
            memcpy(raw, dec.token, 16);
            CHECK_EQ(fv_sstore_invite_get(st, raw, &si), FV_ENOTFOUND);
        }
        CHECK_EQ(fv_sstore_meta_get_fixed(st, "epoch", epoch, 16), FV_OK);
        CHECK_EQ(fv_sstore_meta_get_fixed(st, "receipt_pk", rpk, 32), FV_OK);
        CHECK_EQ(fv_sstore_meta_get_fixed(st, "org", rpk, 32), FV_ENOTFOUND);
        fv_sstore_close(st);
    }
    /* The raw token appears nowhere in the database file. */
    if ((f = fopen(path, "rb")) != NULL) {
        buf b = {0};
        unsigned char chunk[4096];
        size_t n;
        int found = 0;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_add(&b, chunk, n);
        fclose(f);
        for (size_t i = 0; i + 16 <= b.len; i++)
            if (memcmp(b.p + i, dec.token, 16) == 0)
                found = 1;
        CHECK(!found);
        CHECK(b.len > 0);
        buf_free(&b);
    }

    /* A second init refuses, and changes nothing. */
    CHECK_EQ(fv_server_init(sdir, "127.0.0.1:7443", pin2, &inv2), FV_EEXIST);
    CHECK(inv2 == NULL);
    snprintf(path, sizeof path, "%s/tls.crt", sdir);
    CHECK_EQ(fv_tls_identity_pin(path, pin2), FV_OK);
    CHECK(memcmp(pin, pin2, 32) == 0);

    /* More invites, offline. */
    CHECK_EQ(fv_server_invite(sdir, "worker", FV_ROLE_FIELD, 3600, &inv2),
             FV_OK);
    CHECK(inv2 && fv_invite_decode(&dec, inv2) == FV_OK &&
          memcmp(dec.pin, pin, 32) == 0);
    free(inv2);
    inv2 = NULL;
    CHECK_EQ(fv_server_invite(sdir, "worker", 3, 3600, &inv2), FV_EINVAL);
    CHECK_EQ(fv_server_invite(sdir, "worker", 1, 31u * 86400, &inv2),
             FV_EINVAL);
    CHECK_EQ(fv_server_invite(dir, "worker", 1, 60, &inv2), FV_ENOTFOUND);

    /* A vault's database is not a server's. */
    {
        char other[256];
        fv_sstore *s2 = NULL;
        snprintf(other, sizeof other, "%s/not-server.db", dir);
        f = fopen(other, "wb");
        if (f) {
            fputs("SQLite format 3", f);
            fclose(f);
        }
        CHECK(fv_sstore_open(&s2, other, 0) != FV_OK);
        CHECK(s2 == NULL);
    }
    free(inv);
    rm_rf(dir);
}

/* ---- HELLO and enrollment --------------------------------------------- */

static void test_enroll(void)
{
    harness h;
    device admin, other, field;
    fv_out o;
    buf out = {0};
    size_t off = 0;
    fv_msg m;
    unsigned char token[16], bad_token[16];
    fv_sstore_device d;

    harness_open(&h);
    device_new(&admin);
    device_new(&other);
    device_new(&field);
    fv_out_init(&o);

    /* Not enrolled, no invite. */
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);

    /* The admin invite: WELCOME as coordinator. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, h.admin_token);
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_RUNNING);
    CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME);
    CHECK_EQ(m.u.welcome.version, FV_PROTOCOL_VERSION);
    CHECK_EQ(m.u.welcome.role, FV_ROLE_COORDINATOR);
    CHECK(memcmp(m.u.welcome.epoch, h.epoch, 16) == 0);
    CHECK(memcmp(m.u.welcome.server, h.pk, 32) == 0);
    CHECK(m.u.welcome.org == NULL);
    CHECK_EQ(fv_sstore_device_get(h.st, admin.pk, &d), FV_OK);
    CHECK(memcmp(d.box, admin.box, 32) == 0 && d.role == FV_ROLE_COORDINATOR &&
          !d.revoked && d.enrolled == NOW && strcmp(d.name, "admin") == 0);

    /* The same invite again, by another device: ERROR invite. */
    o.len = o.start = 0;
    c_hello(&o, &other, h.pin, binding_a, h.admin_token);
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
    CHECK_EQ(last_error(&out), FV_PERR_INVITE);
    CHECK_EQ(fv_sstore_device_get(h.st, other.pk, &d), FV_ENOTFOUND);

    /* By the device it enrolled (its WELCOME was lost): let in again. */
    CHECK(enroll(&h, &admin, h.admin_token));

    /* An unknown token. */
    fv_random(bad_token, sizeof bad_token);
    o.len = o.start = 0;
    c_hello(&o, &other, h.pin, binding_a, bad_token);
    session(&h, binding_a, &o, &out);
    CHECK_EQ(last_error(&out), FV_PERR_INVITE);

    /* An enrolled device with another (valid) invite: denied, and the
     * invite stays unused. */
    CHECK(make_invite(&h, &admin, "spare", FV_ROLE_FIELD, token));
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, token);
    session(&h, binding_a, &o, &out);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    /* A new device whose X25519 key is already enrolled: denied. */
    {
        device clone = other;
        memcpy(clone.box, admin.box, 32);
        o.len = o.start = 0;
        c_hello(&o, &clone, h.pin, binding_a, token);
        session(&h, binding_a, &o, &out);
        CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    }
    /* The invite is still good: a field device enrolls with it. */
    CHECK(enroll(&h, &field, token));
    CHECK_EQ(fv_sstore_device_get(h.st, field.pk, &d), FV_OK);
    CHECK_EQ(d.role, FV_ROLE_FIELD);
    CHECK(strcmp(d.name, "spare") == 0);

    /* An expired invite. */
    CHECK(make_invite(&h, &admin, "late", FV_ROLE_FIELD, token));
    h.env.now = NOW + 3600; /* expires = NOW + 3600: no longer valid */
    o.len = o.start = 0;
    c_hello(&o, &other, h.pin, binding_a, token);
    session(&h, binding_a, &o, &out);
    CHECK_EQ(last_error(&out), FV_PERR_INVITE);
    h.env.now = NOW + 3599;
    CHECK(enroll(&h, &other, token));
    h.env.now = NOW;

    fv_out_free(&o);
    buf_free(&out);
    harness_close(&h);
}

static void test_hello_checks(void)
{
    harness h;
    device admin, mallory;
    fv_out o;
    buf out = {0};
    unsigned char other_binding[32], other_pin[32];

    harness_open(&h);
    device_new(&admin);
    device_new(&mallory);
    CHECK(enroll(&h, &admin, h.admin_token));
    fv_out_init(&o);
    memset(other_binding, 7, 32);
    memset(other_pin, 9, 32);

    /* A good plain HELLO. */
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_RUNNING);
    CHECK(strcmp(types(&out), "16") == 0);

    /* Signed over another connection's binding (a relayed HELLO). */
    CHECK_EQ(session(&h, other_binding, &o, &out), FV_SRV_CLOSING);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);

    /* Signed for another server's pin. */
    o.len = o.start = 0;
    c_hello(&o, &admin, other_pin, binding_a, NULL);
    session(&h, binding_a, &o, &out);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);

    /* A forged signature: mallory signs, claiming admin's key. */
    {
        unsigned char *tbs, sig[64];
        size_t len;
        fv_hello_tbs(&tbs, &len, h.pin, binding_a, admin.pk, NULL, NULL);
        fv_sign(sig, tbs, len, mallory.sk);
        fv_enc_free_buf(tbs, len);
        o.len = o.start = 0;
        fv_send_hello(&o, admin.pk, sig, NULL, NULL);
        session(&h, binding_a, &o, &out);
        CHECK_EQ(last_error(&out), FV_PERR_DENIED);
        /* and a signature with a bit flipped */
        o.len = o.start = 0;
        c_hello(&o, &admin, h.pin, binding_a, NULL);
        o.buf[o.len - 3] ^= 1; /* inside sig: the last field is null (1 byte) */
        session(&h, binding_a, &o, &out);
        CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    }

    /* Anything but HELLO first. */
    o.len = o.start = 0;
    fv_send_simple(&o, FV_MSG_DEVICES);
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "31") == 0);
    CHECK_EQ(last_error(&out), FV_PERR_MALFORMED);

    /* HELLO twice. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,31") == 0);
    CHECK_EQ(last_error(&out), FV_PERR_MALFORMED);

    /* A server's message from a client. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_simple(&o, FV_MSG_OK);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,31") == 0);

    /* Versions: [2, 3] only -> ERROR version; [3, 1] -> WELCOME 1. */
    for (int t = 0; t < 2; t++) {
        unsigned char *tbs, sig[64];
        size_t len;
        fv_enc e;
        fv_hello_tbs(&tbs, &len, h.pin, binding_a, admin.pk, NULL, NULL);
        fv_sign(sig, tbs, len, admin.sk);
        fv_enc_free_buf(tbs, len);
        fv_enc_init(&e);
        fv_enc_array(&e, 5);
        fv_enc_uint(&e, FV_MSG_HELLO);
        fv_enc_array(&e, 2);
        fv_enc_uint(&e, t == 0 ? 4 : 3);
        fv_enc_uint(&e, t == 0 ? 3 : 1);
        fv_enc_bytes(&e, admin.pk, 32);
        fv_enc_bytes(&e, sig, 64);
        fv_enc_null(&e);
        o.len = o.start = 0;
        fv_out_frame(&o, &e);
        session(&h, binding_a, &o, &out);
        if (t == 0) {
            CHECK_EQ(last_error(&out), FV_PERR_VERSION);
        } else {
            size_t off = 0;
            fv_msg m;
            CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME &&
                  m.u.welcome.version == 1);
        }
    }

    /* BYE: everything before it is answered, nothing after it. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_simple(&o, FV_MSG_DEVICES);
    fv_send_simple(&o, FV_MSG_BYE);
    fv_send_simple(&o, FV_MSG_DEVICES);
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
    CHECK(strcmp(types(&out), "16,21") == 0);

    fv_out_free(&o);
    buf_free(&out);
    harness_close(&h);
}

/* ---- coordinator requests --------------------------------------------- */

static void test_coordinator(void)
{
    harness h;
    device admin, field, field2;
    fv_out o;
    buf out = {0};
    size_t off;
    fv_msg m;
    unsigned char token[16], org[32], org2[32], junk[32];
    fv_devinfo di;

    harness_open(&h);
    device_new(&admin);
    device_new(&field);
    device_new(&field2);
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "field one", FV_ROLE_FIELD, token));
    CHECK(enroll(&h, &field, token));
    fv_out_init(&o);

    /* A field device may not make invites, list, revoke or set keys. */
    for (int t = 0; t < 4; t++) {
        o.len = o.start = 0;
        c_hello(&o, &field, h.pin, binding_a, NULL);
        if (t == 0)
            fv_send_invite(&o, "x", FV_ROLE_COORDINATOR, 60);
        else if (t == 1)
            fv_send_simple(&o, FV_MSG_DEVICES);
        else
            fv_send_key(&o, t == 2 ? FV_MSG_REVOKE : FV_MSG_ORGKEY, admin.pk);
        session(&h, binding_a, &o, &out);
        CHECK(strcmp(types(&out), "16,31") == 0);
        CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    }

    /* DEVICES. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_simple(&o, FV_MSG_DEVICES);
    session(&h, binding_a, &o, &out);
    off = 0;
    CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME);
    CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_DEVLIST);
    CHECK_EQ(m.u.devlist.n, 2);
    {
        int seen_admin = 0, seen_field = 0;
        for (size_t i = 0; i < m.u.devlist.n; i++) {
            CHECK_EQ(fv_devlist_next(&m, &di), FV_OK);
            if (memcmp(di.device, admin.pk, 32) == 0)
                seen_admin = di.role == FV_ROLE_COORDINATOR && !di.revoked &&
                             di.name_len == 5;
            if (memcmp(di.device, field.pk, 32) == 0)
                seen_field = di.role == FV_ROLE_FIELD && di.enrolled == NOW &&
                             di.name_len == 9 &&
                             memcmp(di.name, "field one", 9) == 0;
        }
        CHECK(seen_admin && seen_field);
    }

    /* ORGKEY: set once; the same again is fine; another is refused. */
    fv_random(org, 32);
    fv_random(org2, 32);
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_key(&o, FV_MSG_ORGKEY, org);
    fv_send_key(&o, FV_MSG_ORGKEY, org);
    fv_send_key(&o, FV_MSG_ORGKEY, org2);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,22,22,31") == 0);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    /* WELCOME now carries it, and so do new invites. */
    o.len = o.start = 0;
    c_hello(&o, &field, h.pin, binding_a, NULL);
    session(&h, binding_a, &o, &out);
    off = 0;
    CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME &&
          m.u.welcome.org && memcmp(m.u.welcome.org, org, 32) == 0);
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_invite(&o, "field two", FV_ROLE_FIELD, 600);
    session(&h, binding_a, &o, &out);
    off = 0;
    CHECK(next_msg(&out, &off, &m) && next_msg(&out, &off, &m) &&
          m.type == FV_MSG_INVITED);
    if (m.type == FV_MSG_INVITED) {
        char text[1100];
        fv_invite inv;
        memcpy(text, m.u.invited.text, m.u.invited.len);
        text[m.u.invited.len] = '\0';
        CHECK_EQ(fv_invite_decode(&inv, text), FV_OK);
        CHECK(inv.has_org && memcmp(inv.org, org, 32) == 0);
        CHECK(enroll(&h, &field2, inv.token));
    }
    /* The org key survives a restart of the engine. */
    {
        fv_srv *s2 = NULL;
        fv_srv_config cfg = {FV_SRV_CONFIG_VERSION, h.st, h.sk, h.epoch,
                             h.pin, ADDRESS, &h.env, 0};
        fv_srv *keep = h.srv;
        CHECK_EQ(fv_srv_new(&s2, &cfg), FV_OK);
        h.srv = s2;
        o.len = o.start = 0;
        c_hello(&o, &field, h.pin, binding_a, NULL);
        session(&h, binding_a, &o, &out);
        off = 0;
        CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME &&
              m.u.welcome.org && memcmp(m.u.welcome.org, org, 32) == 0);
        h.srv = keep;
        fv_srv_free(s2);
        /* A receipt key whose halves do not match is refused. */
        {
            unsigned char bad[64];
            memcpy(bad, h.sk, 64);
            bad[40] ^= 1;
            cfg.receipt_sk = bad;
            CHECK_EQ(fv_srv_new(&s2, &cfg), FV_ECORRUPT);
            CHECK(s2 == NULL);
        }
    }

    /* REVOKE: OK; then that device is refused. Not itself, not unknown. */
    fv_random(junk, 32);
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_key(&o, FV_MSG_REVOKE, field.pk);
    fv_send_key(&o, FV_MSG_REVOKE, field.pk); /* again: harmless */
    fv_send_simple(&o, FV_MSG_BYE);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,22,22") == 0);
    o.len = o.start = 0;
    c_hello(&o, &field, h.pin, binding_a, NULL);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "31") == 0);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    /* A revoked device re-using the invite that enrolled it: still no. */
    CHECK(!enroll(&h, &field, token));
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_key(&o, FV_MSG_REVOKE, admin.pk);
    session(&h, binding_a, &o, &out);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_key(&o, FV_MSG_REVOKE, junk);
    session(&h, binding_a, &o, &out);
    CHECK_EQ(last_error(&out), FV_PERR_DENIED);
    /* The coordinator still gets in. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16") == 0);

    fv_out_free(&o);
    buf_free(&out);
    harness_close(&h);
}

/* ---- PUSH and RECEIPT ------------------------------------------------- */

/* Checks a RECEIPT message against ids and expected seqs. */
static void check_receipt(const fv_msg *m, const harness *h,
                          const device *d, unsigned char (*ids)[32],
                          const uint64_t *seqs, size_t n)
{
    fv_receipt r;
    CHECK_EQ(m->type, FV_MSG_RECEIPT);
    if (m->type != FV_MSG_RECEIPT)
        return;
    CHECK_EQ(fv_sign_verify(m->u.receipt.sig, m->u.receipt.body,
                            m->u.receipt.body_len, h->pk),
             FV_OK);
    CHECK_EQ(fv_receipt_decode(&r, m->u.receipt.body, m->u.receipt.body_len),
             FV_OK);
    CHECK(memcmp(r.epoch, h->epoch, 16) == 0);
    CHECK(memcmp(r.device, d->pk, 32) == 0);
    CHECK_EQ(r.time, h->env.now);
    CHECK_EQ(r.n, n);
    for (size_t i = 0; i < n && i < r.n; i++) {
        CHECK(memcmp(r.id[i], ids[i], 32) == 0);
        CHECK_EQ(r.seq[i], seqs[i]);
    }
}

static void test_push(void)
{
    enum { N = 5 };
    harness h;
    device admin, other;
    fv_out o;
    buf out = {0};
    size_t off, len[N + 2];
    fv_msg m;
    unsigned char *env[N + 2], ids[N + 2][32], server_pk[32];
    uint64_t seqs[N + 2];

    harness_open(&h);
    device_new(&admin);
    device_new(&other);
    CHECK(enroll(&h, &admin, h.admin_token));
    for (int i = 0; i < N; i++) {
        env[i] = env_to_self(&admin, &len[i], ids[i]);
        seqs[i] = (uint64_t)i + 1;
    }
    fv_out_init(&o);

    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_push(&o, (const unsigned char *const *)env, len, N);
    fv_send_simple(&o, FV_MSG_BYE);
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
    off = 0;
    CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME);
    memcpy(server_pk, m.u.welcome.server, 32);
    CHECK(memcmp(server_pk, h.pk, 32) == 0);
    CHECK(next_msg(&out, &off, &m));
    check_receipt(&m, &h, &admin, ids, seqs, N);
    CHECK(!next_msg(&out, &off, &m));
    CHECK_EQ(log_head(&h), N);

    /* The same batch again: same seqs, nothing stored twice. And a batch
     * that repeats one envelope, plus a new one. */
    CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
    off = 0;
    CHECK(next_msg(&out, &off, &m) && next_msg(&out, &off, &m));
    check_receipt(&m, &h, &admin, ids, seqs, N);
    CHECK_EQ(log_head(&h), N);
    env[N] = env_to_self(&admin, &len[N], ids[N]);
    {
        const unsigned char *e2[3] = {env[N], env[2], env[N]};
        size_t l2[3] = {len[N], len[2], len[N]};
        unsigned char i2[3][32];
        uint64_t s2[3] = {N + 1, 3, N + 1};
        memcpy(i2[0], ids[N], 32);
        memcpy(i2[1], ids[2], 32);
        memcpy(i2[2], ids[N], 32);
        o.len = o.start = 0;
        c_hello(&o, &admin, h.pin, binding_a, NULL);
        fv_send_push(&o, e2, l2, 3);
        session(&h, binding_a, &o, &out);
        off = 0;
        CHECK(next_msg(&out, &off, &m) && next_msg(&out, &off, &m));
        check_receipt(&m, &h, &admin, i2, s2, 3);
        CHECK_EQ(log_head(&h), N + 1);
    }

    /* Rejections: nothing of the batch is stored. */
    env[N + 1] = env_to_self(&admin, &len[N + 1], ids[N + 1]);
    {
        size_t blen;
        unsigned char bid[32], *by_other = env_to_self(&other, &blen, bid);
        unsigned char *flipped = xmalloc(len[0]);
        uint64_t seq;
        /* Protocol 1: one bad envelope fails its batch (ERROR, nothing
         * stored). Protocol 2: it is refused alone in the receipt, with its
         * reason, the good one stored, and the connection goes on. */
        for (int t = 0; t < 8; t++) {
            const unsigned char *e2[2] = {env[N + 1], NULL};
            size_t l2[2] = {len[N + 1], 0};
            hello_max = t < 4 ? 1 : 2;
            if (t % 4 == 0) { /* signed by another device */
                e2[1] = by_other;
                l2[1] = blen;
            } else if (t % 4 <= 2) { /* a byte flipped: in the body, at the end */
                memcpy(flipped, env[0], len[0]);
                flipped[t % 4 == 1 ? len[0] / 2 : len[0] - 1] ^= 0x40;
                e2[1] = flipped;
                l2[1] = len[0];
            } else { /* cut short */
                e2[1] = env[0];
                l2[1] = len[0] - 1;
            }
            o.len = o.start = 0;
            c_hello(&o, &admin, h.pin, binding_a, NULL);
            fv_send_push(&o, e2, l2, 2);
            fv_send_simple(&o, FV_MSG_DEVICES);
            if (t >= 4) {
                size_t at = 0;
                fv_msg rm;
                fv_receipt r;
                unsigned char bad_id[32];
                session(&h, binding_a, &o, &out);
                CHECK(strcmp(types(&out), "16,17,21") == 0);
                CHECK(next_msg(&out, &at, &rm) && next_msg(&out, &at, &rm));
                CHECK_EQ(fv_receipt_decode(&r, rm.u.receipt.body,
                                           rm.u.receipt.body_len),
                         FV_OK);
                fv_hash(bad_id, e2[1], l2[1]);
                CHECK(r.n == 2 && memcmp(r.id[0], ids[N + 1], 32) == 0 &&
                      memcmp(r.id[1], bad_id, 32) == 0);
                CHECK_EQ(r.seq[0], N + 2);
                CHECK_EQ(r.refused[0], 0);
                CHECK_EQ(r.seq[1], 0);
                CHECK_EQ(r.refused[1], t == 4 ? FV_REFUSE_AUTHOR
                                              : FV_REFUSE_INVALID);
                CHECK_EQ(r.nrefused, 1);
                CHECK_EQ(log_head(&h), N + 2);
                continue;
            }
            CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
            CHECK(strcmp(types(&out), "16,31") == 0);
            CHECK_EQ(last_error(&out), FV_PERR_REJECTED);
            CHECK_EQ(fv_sstore_log_find(h.st, ids[N + 1], &seq), FV_ENOTFOUND);
            CHECK_EQ(log_head(&h), N + 1);
        }
        hello_max = FV_PROTOCOL_VERSION;
        free(by_other);
        free(flipped);
    }
    /* The good one alone, pushed again, keeps its number. */
    o.len = o.start = 0;
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_push(&o, (const unsigned char *const *)&env[N + 1], &len[N + 1], 1);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,17") == 0);
    CHECK_EQ(log_head(&h), N + 2);

    for (int i = 0; i < N + 2; i++)
        free(env[i]);
    fv_out_free(&o);
    buf_free(&out);
    harness_close(&h);
}

/* ---- PULL ------------------------------------------------------------- */

typedef struct pulled {
    size_t n;
    uint64_t seq[64];
    unsigned char id[64][32];
    int erased[64]; /* the entry came as its id alone */
    size_t nerased;
    uint64_t head;
    unsigned char head_chain[32];
    int chains_ok, done, error;
} pulled;

/* Reads ENTRIES... PULLED from out at *off, checking every chain link from
 * `start` (position, chain). */
static void read_pull(const buf *out, size_t *off, uint64_t start,
                      const unsigned char start_chain[32], pulled *r)
{
    unsigned char chain[32];
    uint64_t pos = start;
    fv_msg m;
    memset(r, 0, sizeof *r);
    r->chains_ok = 1;
    memcpy(chain, start_chain, 32);
    while (next_msg(out, off, &m)) {
        if (m.type == FV_MSG_ENTRIES) {
            for (size_t i = 0; i < m.u.entries.n; i++) {
                fv_env e;
                int gone = m.u.entries.env[i] == NULL;
                if (m.u.entries.seq[i] != pos + 1 ||
                    (gone ? !m.u.entries.id[i]
                          : fv_env_parse(&e, m.u.entries.env[i],
                                         m.u.entries.len[i]) != FV_OK)) {
                    r->chains_ok = 0;
                    continue;
                }
                if (gone)
                    memcpy(e.id, m.u.entries.id[i], 32);
                else
                    fv_env_clear(&e);
                fv_chain_next(chain, chain, pos + 1, e.id);
                if (memcmp(chain, m.u.entries.chain[i], 32) != 0)
                    r->chains_ok = 0;
                pos++;
                if (r->n < 64) {
                    r->seq[r->n] = pos;
                    memcpy(r->id[r->n], e.id, 32);
                    r->erased[r->n] = gone;
                }
                r->nerased += (size_t)gone;
                r->n++;
            }
        } else if (m.type == FV_MSG_PULLED) {
            r->head = m.u.pulled.head;
            memcpy(r->head_chain, m.u.pulled.chain, 32);
            r->done = 1;
            if (r->head != pos || memcmp(chain, r->head_chain, 32) != 0)
                r->chains_ok = 0;
            return;
        } else {
            r->error = m.type == FV_MSG_ERROR ? (int)m.u.error.code : -1;
            return;
        }
    }
}

static int has_id(const pulled *r, const unsigned char id[32])
{
    for (size_t i = 0; i < r->n && i < 64; i++)
        if (memcmp(r->id[i], id, 32) == 0)
            return 1;
    return 0;
}

/* HELLO + PULL(epoch, cursor, chain, receipt mark rseq/rid) + BYE as d;
 * the result in r. */
static void do_pull_mark(harness *h, const device *d,
                         const unsigned char *epoch, uint64_t cursor,
                         const unsigned char chain[32], uint64_t rseq,
                         const unsigned char *rid, pulled *r)
{
    fv_out o;
    buf out = {0};
    size_t off = 0;
    fv_msg m;
    static const unsigned char zero[32];
    fv_out_init(&o);
    c_hello(&o, d, h->pin, binding_a, NULL);
    fv_send_pull(&o, epoch, cursor, chain, rseq, rid);
    fv_send_simple(&o, FV_MSG_BYE);
    session(h, binding_a, &o, &out);
    memset(r, 0, sizeof *r);
    if (next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME) {
        int restart = !epoch || memcmp(epoch, h->epoch, 16) != 0;
        read_pull(&out, &off, restart ? 0 : cursor, restart ? zero : chain, r);
    }
    fv_out_free(&o);
    buf_free(&out);
}

static void do_pull(harness *h, const device *d, const unsigned char *epoch,
                    uint64_t cursor, const unsigned char chain[32], pulled *r)
{
    do_pull_mark(h, d, epoch, cursor, chain, 0, NULL, r);
}

static void push_envs(harness *h, const device *d, unsigned char **env,
                      size_t *len, size_t n)
{
    fv_out o;
    buf out = {0};
    fv_out_init(&o);
    c_hello(&o, d, h->pin, binding_a, NULL);
    fv_send_push(&o, (const unsigned char *const *)env, len, n);
    fv_send_simple(&o, FV_MSG_BYE);
    session(h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,17") == 0);
    fv_out_free(&o);
    buf_free(&out);
}

static void test_pull(void)
{
    harness h;
    device admin, a, b, stranger;
    unsigned char token[16], zero[32] = {0}, chain[32], wrong[32];
    unsigned char *env[8], ids[8][32], other_epoch[16];
    size_t len[8];
    pulled r, r2;

    harness_open(&h);
    device_new(&admin);
    device_new(&a);
    device_new(&b);
    device_new(&stranger); /* never enrolled */
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "a", FV_ROLE_FIELD, token));
    CHECK(enroll(&h, &a, token));
    CHECK(make_invite(&h, &admin, "b", FV_ROLE_FIELD, token));
    CHECK(enroll(&h, &b, token));

    /* Nothing yet: PULLED 0 with the zero chain. */
    do_pull(&h, &a, NULL, 0, zero, &r);
    CHECK(r.done && r.n == 0 && r.head == 0 && r.chains_ok);

    /* a: 3 of its own (sealed to itself and an org key); b: 2; the
     * coordinator: two notes to a. */
    {
        unsigned char org[32], to_a[2][32];
        unsigned char recips[2][32];
        fv_random(org, 32);
        memcpy(recips[0], a.box, 32);
        memcpy(recips[1], org, 32);
        for (int i = 0; i < 3; i++)
            env[i] = make_env(&a, (const unsigned char(*)[32])recips, 2, 100,
                              &len[i], ids[i]);
        push_envs(&h, &a, env, len, 3);
        env[3] = env_to_self(&b, &len[3], ids[3]);
        /* b seals one to a as well: a field device's envelope still never
         * reaches another field device */
        memcpy(recips[0], b.box, 32);
        memcpy(recips[1], a.box, 32);
        env[4] = make_env(&b, (const unsigned char(*)[32])recips, 2, 80,
                          &len[4], ids[4]);
        push_envs(&h, &b, env + 3, len + 3, 2);
        memcpy(to_a[0], admin.box, 32);
        memcpy(to_a[1], a.box, 32);
        env[5] = make_env(&admin, (const unsigned char(*)[32])to_a, 2, 50,
                          &len[5], ids[5]);
        env[6] = make_env(&admin, (const unsigned char(*)[32])to_a, 2, 60,
                          &len[6], ids[6]);
        /* sealed to the stranger's key: it is nobody's feed */
        env[7] = make_env(&admin, (const unsigned char(*)[32])stranger.box, 1,
                          50, &len[7], ids[7]);
        push_envs(&h, &admin, env + 5, len + 5, 3);
    }
    CHECK_EQ(log_head(&h), 8);

    /* The coordinator reads the whole log, chains and all. */
    do_pull(&h, &admin, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.error == 0);
    CHECK_EQ(r.n, 8);
    CHECK_EQ(r.head, 8);
    for (int i = 0; i < 8; i++)
        CHECK(has_id(&r, ids[i]));
    /* a reads the two notes to it: never b's envelopes, even the one b
     * sealed to a, and never its own (it has them). */
    do_pull(&h, &a, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok);
    CHECK_EQ(r.n, 2);
    CHECK(has_id(&r, ids[5]) && has_id(&r, ids[6]));
    CHECK(!has_id(&r, ids[0]) && !has_id(&r, ids[1]) && !has_id(&r, ids[2]) &&
          !has_id(&r, ids[3]) && !has_id(&r, ids[4]) && !has_id(&r, ids[7]));
    /* b reads nothing: nobody addressed it. */
    do_pull(&h, &b, NULL, 0, zero, &r2);
    CHECK(r2.done && r2.chains_ok);
    CHECK_EQ(r2.n, 0);

    /* From a's cursor 1 with the right chain: the rest. */
    {
        unsigned char c1[32];
        fv_chain_next(c1, zero, 1, r.id[0]);
        do_pull(&h, &a, h.epoch, 1, c1, &r2);
        CHECK(r2.done && r2.chains_ok && r2.n == 1 && r2.head == 2);
        CHECK(memcmp(r2.head_chain, r.head_chain, 32) == 0);
        /* At the head: nothing but PULLED. */
        do_pull(&h, &a, h.epoch, 2, r.head_chain, &r2);
        CHECK(r2.done && r2.n == 0 && r2.head == 2);
        /* Past the head: rollback. A wrong chain: diverged. */
        do_pull(&h, &a, h.epoch, 3, r.head_chain, &r2);
        CHECK_EQ(r2.error, FV_PERR_ROLLBACK);
        memcpy(wrong, c1, 32);
        wrong[0] ^= 1;
        do_pull(&h, &a, h.epoch, 1, wrong, &r2);
        CHECK_EQ(r2.error, FV_PERR_DIVERGED);
        do_pull(&h, &a, h.epoch, 0, wrong, &r2);
        CHECK_EQ(r2.error, FV_PERR_DIVERGED);
        /* a's chain at 2 is not the coordinator's. */
        do_pull(&h, &admin, h.epoch, 2, r.head_chain, &r2);
        CHECK_EQ(r2.error, FV_PERR_DIVERGED);
        /* Another epoch (a replaced server): the whole feed, whatever the
         * cursor. */
        fv_random(other_epoch, 16);
        do_pull(&h, &a, other_epoch, 99, wrong, &r2);
        CHECK(r2.done && r2.chains_ok && r2.n == 2);
    }
    /* Coordinator from cursor 8 at the head chain: nothing new. */
    do_pull(&h, &admin, NULL, 0, zero, &r);
    memcpy(chain, r.head_chain, 32);
    do_pull(&h, &admin, h.epoch, 8, chain, &r2);
    CHECK(r2.done && r2.n == 0 && r2.head == 8);
    do_pull(&h, &admin, h.epoch, 9, chain, &r2);
    CHECK_EQ(r2.error, FV_PERR_ROLLBACK);

    /* The receipt mark: the log holds that envelope at that position, or
     * the server lost what it receipted (a restore from an older copy)
     * and says rollback, whatever the cursor. Another epoch ignores it. */
    do_pull_mark(&h, &a, h.epoch, 0, zero, 3, r.id[2], &r2);
    CHECK(r2.done && r2.chains_ok && r2.n == 2 && r2.error == 0);
    do_pull_mark(&h, &admin, h.epoch, 8, chain, 8, r.id[7], &r2);
    CHECK(r2.done && r2.n == 0 && r2.error == 0);
    do_pull_mark(&h, &a, h.epoch, 0, zero, 4, r.id[2], &r2);
    CHECK_EQ(r2.error, FV_PERR_ROLLBACK);
    do_pull_mark(&h, &admin, h.epoch, 8, chain, 9, r.id[7], &r2);
    CHECK_EQ(r2.error, FV_PERR_ROLLBACK);
    fv_random(wrong, 32);
    do_pull_mark(&h, &admin, h.epoch, 8, chain, 8, wrong, &r2);
    CHECK_EQ(r2.error, FV_PERR_ROLLBACK);
    fv_random(other_epoch, 16);
    do_pull_mark(&h, &a, other_epoch, 0, zero, 5, wrong, &r2);
    CHECK(r2.done && r2.chains_ok && r2.n == 2);

    for (int i = 0; i < 8; i++)
        free(env[i]);
    harness_close(&h);
}

/* A long pull streams in frames of at most 256 entries and ~900 KB, while
 * the output queue stays small; an envelope too big for that budget goes
 * alone. */
static void test_pull_stream(void)
{
    enum { BIG = 12, SMALL = 600 };
    harness h;
    device admin;
    unsigned char **env = xmalloc((BIG + SMALL + 1) * sizeof *env);
    size_t *len = xmalloc((BIG + SMALL + 1) * sizeof *len);
    unsigned char id[32], zero[32] = {0};
    fv_out o;
    buf out = {0};
    fv_srv_conn *c = NULL;
    size_t max_queued = 0, frames = 0, total = 0, max_entries = 0, off = 0;
    fv_msg m;
    pulled r;
    int i;

    harness_open(&h);
    device_new(&admin);
    CHECK(enroll(&h, &admin, h.admin_token));
    for (i = 0; i < BIG; i++) /* ~300 KB each */
        env[i] = make_env(&admin, (const unsigned char(*)[32])admin.box, 1,
                          300000, &len[i], id);
    for (; i < BIG + SMALL; i++)
        env[i] = env_to_self(&admin, &len[i], id);
    /* and one that fits a frame only alone (its payload is padded to a
     * bucket of 16384 bytes at this size: FORMAT.md 5.8) */
    env[i] = make_env(&admin, (const unsigned char(*)[32])admin.box, 1,
                      FV_SYNC_MAX_ENVELOPE - 16384 - 1024, &len[i], id);
    CHECK(len[i] > FV_SRV_ENTRIES_BYTES && len[i] <= FV_SYNC_MAX_ENVELOPE);
    for (i = 0; i < BIG; i += 3)
        push_envs(&h, &admin, env + i, len + i, 3);
    push_envs(&h, &admin, env + BIG, len + BIG, 256);
    push_envs(&h, &admin, env + BIG + 256, len + BIG + 256, 256);
    push_envs(&h, &admin, env + BIG + 512, len + BIG + 512, SMALL - 512);
    push_envs(&h, &admin, env + BIG + SMALL, len + BIG + SMALL, 1);
    CHECK_EQ(log_head(&h), BIG + SMALL + 1);

    /* PULL, then more requests behind it, and a client that reads slowly. */
    fv_out_init(&o);
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_pull(&o, NULL, 0, zero, 0, NULL);
    fv_send_simple(&o, FV_MSG_DEVICES);
    fv_send_simple(&o, FV_MSG_BYE);
    CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
    {
        size_t n, k, done = 0;
        const unsigned char *p = fv_out_pending(&o, &n);
        k = fv_srv_conn_recv(c, p, n);
        /* It stops after PULL: DEVICES waits until the pull is sent. */
        CHECK(k < n);
        CHECK(!fv_srv_conn_wants_input(c));
        done = k;
        for (int guard = 0; guard < 100000; guard++) {
            size_t q, got;
            const unsigned char *b = fv_srv_conn_send_buf(c, &q);
            if (q > max_queued)
                max_queued = q;
            if (!b) {
                if (done == n)
                    break;
                k = fv_srv_conn_recv(c, p + done, n - done);
                done += k;
                if (k == 0)
                    break;
                continue;
            }
            got = q < 7000 ? q : 7000; /* a slow reader */
            buf_add(&out, b, got);
            fv_srv_conn_send_ack(c, got);
        }
        CHECK_EQ(done, n);
    }
    CHECK_EQ(fv_srv_conn_state(c), FV_SRV_CLOSING);
    fv_srv_conn_free(c);
    CHECK(max_queued <= FV_SRV_OUT_LOW + FV_FRAME_MAX + 4);
    CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_WELCOME);
    {
        size_t save = off;
        while (next_msg(&out, &off, &m) && m.type == FV_MSG_ENTRIES) {
            size_t bytes = 0;
            frames++;
            total += m.u.entries.n;
            for (size_t j = 0; j < m.u.entries.n; j++)
                bytes += m.u.entries.len[j];
            if (m.u.entries.n > max_entries)
                max_entries = m.u.entries.n;
            CHECK(m.u.entries.n == 1 || bytes <= FV_SRV_ENTRIES_BYTES);
        }
        CHECK_EQ(m.type, FV_MSG_PULLED);
        CHECK(next_msg(&out, &off, &m) && m.type == FV_MSG_DEVLIST);
        CHECK(!next_msg(&out, &off, &m));
        off = save;
        read_pull(&out, &off, 0, zero, &r);
        CHECK(r.done && r.chains_ok);
        CHECK_EQ(r.n, BIG + SMALL + 1);
    }
    CHECK_EQ(total, BIG + SMALL + 1);
    CHECK(max_entries <= 256 && max_entries >= 200);
    CHECK(frames >= 6);

    for (i = 0; i <= BIG + SMALL; i++)
        free(env[i]);
    free(env);
    free(len);
    fv_out_free(&o);
    buf_free(&out);
    harness_close(&h);
}

/* A client that sends requests and never reads: the engine stops taking
 * input once its output passes FV_SRV_OUT_MAX. */
static void test_backpressure(void)
{
    harness h;
    device admin;
    fv_out o;
    fv_srv_conn *c = NULL;
    size_t n, k, q;
    const unsigned char *p;

    harness_open(&h);
    device_new(&admin);
    CHECK(enroll(&h, &admin, h.admin_token));
    fv_out_init(&o);
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    for (int i = 0; i < 120000; i++) /* each answer is ~55 bytes */
        fv_send_simple(&o, FV_MSG_DEVICES);
    p = fv_out_pending(&o, &n);
    CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
    k = fv_srv_conn_recv(c, p, n);
    CHECK(k < n);
    CHECK(!fv_srv_conn_wants_input(c));
    fv_srv_conn_send_buf(c, &q);
    CHECK(q > FV_SRV_OUT_MAX && q < FV_SRV_OUT_MAX + 4096);
    CHECK_EQ(fv_srv_conn_recv(c, p + k, n - k), 0);
    /* Reading some is not enough: it resumes below FV_SRV_OUT_LOW. */
    {
        buf part = {0};
        const unsigned char *b;
        while ((b = fv_srv_conn_send_buf(c, &q)) != NULL &&
               q > FV_SRV_OUT_LOW + 65536) {
            buf_add(&part, b, 65536);
            fv_srv_conn_send_ack(c, 65536);
            CHECK_EQ(fv_srv_conn_recv(c, p + k, n - k), 0);
        }
        buf_free(&part);
    }
    /* Once the peer reads, it goes on. */
    {
        buf out = {0};
        size_t done = k;
        while (done < n) {
            drain(c, &out, 1 << 20);
            k = fv_srv_conn_recv(c, p + done, n - done);
            if (k == 0)
                break;
            done += k;
        }
        drain(c, &out, 1 << 20);
        CHECK_EQ(done, n);
        CHECK_EQ(fv_srv_conn_state(c), FV_SRV_RUNNING);
        buf_free(&out);
    }
    fv_srv_conn_free(c);
    fv_out_free(&o);
    harness_close(&h);
}

/* ---- hostile bytes ---------------------------------------------------- */

/* Every split of a valid flight gives the same answer; fed byte by byte,
 * the engine answers only when a frame completes; every truncated prefix is
 * harmless. */
static void test_prefixes(void)
{
    harness h;
    device admin;
    fv_out o;
    buf ref = {0}, out = {0};
    unsigned char *env[2], id[32], zero[32] = {0};
    size_t len[2], n, ends[8], nends = 0, off = 0;
    const unsigned char *p;
    fv_srv_conn *c;

    harness_open(&h);
    device_new(&admin);
    CHECK(enroll(&h, &admin, h.admin_token));
    env[0] = env_to_self(&admin, &len[0], id);
    env[1] = env_to_self(&admin, &len[1], id);
    fv_out_init(&o);
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    fv_send_push(&o, (const unsigned char *const *)env, len, 2);
    fv_send_pull(&o, NULL, 0, zero, 0, NULL);
    fv_send_simple(&o, FV_MSG_BYE);
    p = fv_out_pending(&o, &n);
    while (off < n) { /* the frame ends */
        size_t fl = (size_t)p[off] << 24 | (size_t)p[off + 1] << 16 |
                    (size_t)p[off + 2] << 8 | p[off + 3];
        off += 4 + fl;
        ends[nends++] = off;
    }
    CHECK_EQ(session(&h, binding_a, &o, &ref), FV_SRV_CLOSING);
    CHECK(strcmp(types(&ref), "16,17,18,19") == 0);

    /* Byte by byte: output grows only as a frame completes. */
    CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
    {
        size_t e = 0, before = 0, q;
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(fv_srv_conn_recv(c, p + i, 1), 1);
            fv_srv_conn_send_buf(c, &q);
            if (e < nends && i + 1 == ends[e]) {
                if (e + 1 < nends)
                    CHECK(q > before);
                else /* BYE: no answer, and the end */
                    CHECK_EQ(fv_srv_conn_state(c), FV_SRV_CLOSING);
                e++;
            } else {
                CHECK_EQ(q, before);
                CHECK_EQ(fv_srv_conn_in_frame(c), 1);
            }
            drain(c, &out, 1 << 20);
            before = 0;
        }
    }
    fv_srv_conn_free(c);
    CHECK(out.len == ref.len && memcmp(out.p, ref.p, ref.len) == 0);

    /* Every split point. */
    for (size_t cut = 1; cut < n; cut++) {
        out.len = 0;
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
        drive(c, p, cut, n, &out);
        drive(c, p + cut, n - cut, n, &out);
        if (out.len != ref.len || memcmp(out.p, ref.p, ref.len) != 0) {
            CHECK(!"a split changed the answer");
            fv_srv_conn_free(c);
            break;
        }
        fv_srv_conn_free(c);
    }

    /* Every truncated prefix, byte by byte, then dropped: no answer to an
     * incomplete frame, no crash, no leak. */
    for (size_t cut = 0; cut < n; cut++) {
        size_t full = 0;
        out.len = 0;
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
        for (size_t i = 0; i < cut; i++)
            fv_srv_conn_recv(c, p + i, 1);
        drain(c, &out, 1 << 20);
        while (full < nends && ends[full] <= cut)
            full++;
        {
            size_t o2 = 0, count = 0;
            fv_msg m;
            while (next_msg(&out, &o2, &m))
                count++;
            /* one answer per whole frame, PULL's being ENTRIES + PULLED */
            CHECK_EQ(count, full == 0 ? 0 : full == 1 ? 1 : full == 2 ? 2 : 4);
        }
        fv_srv_conn_free(c);
    }
    fv_out_free(&o);
    free(env[0]);
    free(env[1]);
    buf_free(&ref);
    buf_free(&out);
    harness_close(&h);
}

/* An HTTP probe: one request, fed in pieces of `chunk`. Returns the state;
 * the answer is in out (NUL-terminated), *took how many bytes were taken. */
static int http_probe(harness *h, const char *req, size_t chunk, buf *out,
                      size_t *took)
{
    fv_srv_conn *c;
    int state;
    out->len = 0;
    CHECK_EQ(fv_srv_conn_new(&c, h->srv, binding_a, 7), FV_OK);
    *took = drive(c, (const unsigned char *)req, strlen(req), chunk, out);
    state = fv_srv_conn_state(c);
    CHECK_EQ(fv_srv_conn_error(c), FV_PERR_MALFORMED);
    fv_srv_conn_free(c);
    buf_add(out, "", 1);
    return state;
}

/* The answer's Content-Length equals the body that follows the head. */
static int http_length_ok(const buf *out)
{
    const char *s = (const char *)out->p;
    const char *cl = strstr(s, "\r\nContent-Length: ");
    const char *body = strstr(s, "\r\n\r\n");
    if (!cl || !body || cl > body)
        return 0;
    return (size_t)atol(cl + 18) == strlen(body + 4);
}

static void test_http_probe(void)
{
    static const char get[] = "GET /fieldvault-probe HTTP/1.1\r\n"
                              "Host: vault.example.org\r\n"
                              "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    harness h;
    buf out = {0};
    size_t took;
    char *big;

    harness_open(&h);
    log_forbidden = "fieldvault-probe"; /* nothing of the request is logged */

    /* Whole, and byte by byte: the same 404, a web server's. */
    for (size_t chunk = sizeof get; chunk >= 1; chunk = chunk > 1 ? 1 : 0) {
        CHECK_EQ(http_probe(&h, get, chunk, &out, &took), FV_SRV_CLOSING);
        CHECK_EQ(took, strlen(get));
        CHECK(strncmp((const char *)out.p,
                      "HTTP/1.1 404 Not Found\r\n", 24) == 0);
        /* NOW is 2023-11-14T22:13:20Z, a Tuesday. */
        CHECK(strstr((const char *)out.p,
                     "\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n") != NULL);
        CHECK(strstr((const char *)out.p, "\r\nConnection: close\r\n"));
        CHECK(strstr((const char *)out.p, "<h1>404 Not Found</h1>"));
        CHECK(!strstr((const char *)out.p, "Server:"));
        CHECK(!strstr((const char *)out.p, "fieldvault-probe"));
        CHECK(http_length_ok(&out));
    }
    /* Bare LF line ends; HTTP/1.0 needs no Host; HEAD has no body. */
    CHECK_EQ(http_probe(&h, "HEAD / HTTP/1.0\n\n", 64, &out, &took),
             FV_SRV_CLOSING);
    CHECK(strncmp((const char *)out.p, "HTTP/1.1 404 ", 13) == 0);
    CHECK(strstr((const char *)out.p, "Content-Length: 1"));
    CHECK_EQ(strlen(strstr((const char *)out.p, "\r\n\r\n")), 4);
    /* HTTP/1.1 without Host, a bad request line, a control byte: 400. */
    {
        static const char *const bad[] = {
            "GET / HTTP/1.1\r\n\r\n",
            "GET /\r\n\r\n",
            "OPTIONS  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "CONNECT\x01",
            "Z\r\n\r\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            CHECK_EQ(http_probe(&h, bad[i], 3, &out, &took), FV_SRV_CLOSING);
            CHECK(strncmp((const char *)out.p,
                          "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
            CHECK(strstr((const char *)out.p, "<h1>400 Bad Request</h1>"));
            CHECK(http_length_ok(&out));
        }
    }
    /* The body of a POST is not read: the head is answered, then close. */
    {
        static const char post[] = "POST /upload HTTP/1.1\r\nHost: a\r\n"
                                   "Content-Length: 5\r\n\r\nhello";
        CHECK_EQ(http_probe(&h, post, sizeof post, &out, &took),
                 FV_SRV_CLOSING);
        CHECK_EQ(took, strlen(post) - 5);
        CHECK(strncmp((const char *)out.p, "HTTP/1.1 404 ", 13) == 0);
    }
    /* A head that never ends is answered 400 at FV_SRV_HTTP_MAX bytes. */
    big = xmalloc(FV_SRV_HTTP_MAX + 100);
    memset(big, 'A', FV_SRV_HTTP_MAX + 99);
    big[FV_SRV_HTTP_MAX + 99] = '\0';
    CHECK_EQ(http_probe(&h, big, 1000, &out, &took), FV_SRV_CLOSING);
    CHECK_EQ(took, FV_SRV_HTTP_MAX);
    CHECK(strncmp((const char *)out.p, "HTTP/1.1 400 ", 13) == 0);
    free(big);
    /* A lowercase first byte is not a method: a frame length, refused as
     * before with a protocol ERROR. */
    {
        fv_srv_conn *c;
        out.len = 0;
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 8), FV_OK);
        drive(c, (const unsigned char *)"get / HTTP/1.1\r\n\r\n", 18, 18, &out);
        CHECK_EQ(last_error(&out), FV_PERR_MALFORMED);
        fv_srv_conn_free(c);
    }
    log_forbidden = NULL;
    buf_free(&out);
    harness_close(&h);
}

/* fv_send_chunk_fill: the chunk written in place is the frame
 * fv_send_chunk makes of the same bytes; a fill that fails leaves the
 * queue as it was, the frames before it whole. */
static int fill_pattern(void *arg, unsigned char *dst, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = (unsigned char)(i * 7 + 3);
    return arg ? *(int *)arg : FV_OK;
}

static void test_chunk_fill(void)
{
    static unsigned char data[300000];
    unsigned char hash[32];
    fv_out a, b;
    buf got = {0};
    size_t off = 0, la, lb, before;
    const unsigned char *pa, *pb;
    fv_msg m;
    int fail = FV_ECORRUPT;

    memset(hash, 0x5a, sizeof hash);
    fill_pattern(NULL, data, sizeof data);
    fv_out_init(&a);
    fv_out_init(&b);
    CHECK_EQ(fv_send_chunk(&a, FV_MSG_CHUNK_PUT, hash, data, sizeof data), FV_OK);
    CHECK_EQ(fv_send_chunk_fill(&b, FV_MSG_CHUNK_PUT, hash, sizeof data,
                                fill_pattern, NULL), FV_OK);
    pa = fv_out_pending(&a, &la);
    pb = fv_out_pending(&b, &lb);
    CHECK(la == lb && memcmp(pa, pb, la) == 0);
    /* Sent in part, then a failing fill: nothing of it is queued. */
    fv_out_ack(&b, 1000);
    before = fv_out_size(&b);
    CHECK_EQ(fv_send_chunk_fill(&b, FV_MSG_CHUNK_PUT, hash, sizeof data,
                                fill_pattern, &fail), FV_ECORRUPT);
    CHECK_EQ(fv_out_size(&b), before);
    CHECK_EQ(fv_send_chunk_fill(&b, FV_MSG_CHUNK_PUT, hash, FV_FRAME_MAX,
                                fill_pattern, NULL), FV_ELIMIT);
    CHECK_EQ(fv_out_size(&b), before);
    pb = fv_out_pending(&b, &lb);
    CHECK(lb == la - 1000 && memcmp(pb, pa + 1000, lb) == 0);
    /* And a whole frame after it decodes as the chunk. */
    CHECK_EQ(fv_send_chunk_fill(&b, FV_MSG_CHUNK_PUT, hash, 1000,
                                fill_pattern, NULL), FV_OK);
    pb = fv_out_pending(&b, &lb);
    buf_add(&got, pb + (la - 1000), lb - (la - 1000));
    CHECK(next_msg(&got, &off, &m));
    CHECK_EQ(m.type, FV_MSG_CHUNK_PUT);
    CHECK(m.u.chunk.len == 1000 && memcmp(m.u.chunk.data, data, 1000) == 0);
    CHECK(memcmp(m.u.chunk.hash, hash, 32) == 0);
    CHECK_EQ(off, got.len);
    buf_free(&got);
    fv_out_free(&a);
    fv_out_free(&b);
}

static void test_garbage(void)
{
    harness h;
    device admin;
    fv_out o;
    buf out = {0};
    fv_srv_conn *c;
    unsigned char frame[4 + 300];
    fv_framer f;
    const unsigned char *fp;
    size_t fl;
    int err;

    harness_open(&h);
    device_new(&admin);
    CHECK(enroll(&h, &admin, h.admin_token));

    /* 0xFFFFFFFF: refused on the length, and the framer never grew. */
    {
        static const unsigned char huge[8] = {0xff, 0xff, 0xff, 0xff,
                                              1,    2,    3,    4};
        static const unsigned char zero_len[4] = {0, 0, 0, 0};
        static const unsigned char big_preauth[4] = {0, 0, 0x10, 0x01};
        fv_framer_init(&f);
        CHECK_EQ(fv_framer_feed(&f, huge, 8, &fp, &fl, &err), 4);
        CHECK_EQ(err, FV_EPROTO);
        CHECK(f.body == NULL && f.cap == 0);
        fv_framer_free(&f);

        for (int t = 0; t < 3; t++) {
            const unsigned char *bytes = t == 0   ? huge
                                         : t == 1 ? zero_len
                                                  : big_preauth;
            size_t blen = t == 0 ? 8 : 4;
            out.len = 0;
            CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
            CHECK_EQ(fv_srv_conn_recv(c, bytes, blen), 4);
            drain(c, &out, 1 << 20);
            CHECK_EQ(fv_srv_conn_state(c), FV_SRV_CLOSING);
            CHECK_EQ(fv_srv_conn_error(c), FV_PERR_MALFORMED);
            CHECK_EQ(last_error(&out), FV_PERR_MALFORMED);
            fv_srv_conn_free(c);
        }
        /* After HELLO: a megabyte is allowed, a byte more is not. */
        for (int t = 0; t < 2; t++) {
            unsigned char hdr[4];
            uint32_t l = FV_FRAME_MAX + (uint32_t)t;
            hdr[0] = (unsigned char)(l >> 24);
            hdr[1] = (unsigned char)(l >> 16);
            hdr[2] = (unsigned char)(l >> 8);
            hdr[3] = (unsigned char)l;
            fv_out_init(&o);
            c_hello(&o, &admin, h.pin, binding_a, NULL);
            out.len = 0;
            CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
            drive(c, o.buf, o.len, o.len, &out);
            CHECK_EQ(fv_srv_conn_recv(c, hdr, 4), 4);
            CHECK_EQ(fv_srv_conn_state(c),
                     t == 0 ? FV_SRV_RUNNING : FV_SRV_CLOSING);
            CHECK_EQ(fv_srv_conn_in_frame(c), t == 0);
            fv_srv_conn_free(c);
            fv_out_free(&o);
        }
    }

    /* Random frames before HELLO: ERROR malformed, every time. */
    for (int i = 0; i < 2000; i++) {
        uint32_t l;
        fv_random(&l, sizeof l);
        l = 1 + l % 300;
        frame[0] = frame[1] = 0;
        frame[2] = (unsigned char)(l >> 8);
        frame[3] = (unsigned char)l;
        fv_random(frame + 4, l);
        out.len = 0;
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
        fv_srv_conn_recv(c, frame, 4 + l);
        drain(c, &out, 1 << 20);
        if (last_error(&out) != FV_PERR_MALFORMED) {
            CHECK(!"garbage did not get ERROR malformed");
            fv_srv_conn_free(c);
            break;
        }
        fv_srv_conn_free(c);
    }

    /* After HELLO: mutated valid messages never crash; each answer is an
     * ERROR or a normal reply; the log never gains an unverified entry. */
    {
        unsigned char *env, id[32], zero[32] = {0};
        size_t elen;
        fv_out req;
        env = env_to_self(&admin, &elen, id);
        for (int i = 0; i < 3000; i++) {
            size_t rl, pos;
            const unsigned char *rp;
            unsigned char *mut;
            unsigned char r[3];
            fv_out_init(&req);
            switch (i % 4) {
            case 0:
                fv_send_push(&req, (const unsigned char *const *)&env, &elen,
                             1);
                break;
            case 1:
                fv_send_pull(&req, h.epoch, 0, zero, 0, NULL);
                break;
            case 2:
                fv_send_invite(&req, "n", 1, 60);
                break;
            default:
                fv_send_key(&req, FV_MSG_REVOKE, admin.pk);
                break;
            }
            rp = fv_out_pending(&req, &rl);
            mut = xmalloc(rl);
            memcpy(mut, rp, rl);
            fv_random(r, sizeof r);
            pos = 4 + ((size_t)r[0] << 8 | r[1]) % (rl - 4);
            mut[pos] ^= (unsigned char)(r[2] | 1);
            fv_out_init(&o);
            c_hello(&o, &admin, h.pin, binding_a, NULL);
            out.len = 0;
            CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 1), FV_OK);
            drive(c, o.buf, o.len, o.len, &out);
            drive(c, mut, rl, rl, &out);
            fv_srv_conn_free(c);
            fv_out_free(&o);
            fv_out_free(&req);
            free(mut);
        }
        /* nothing from the mutated PUSHes got in except the real one */
        CHECK(log_head(&h) <= 1);
        free(env);
    }

    buf_free(&out);
    harness_close(&h);
}

/* ---- fv_server_run over TLS ------------------------------------------- */

typedef struct run_ctx {
    char dir[128];
    fv_server_options opts;
    atomic_int stop; /* set by the test's thread, read by the server's */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port;
    int rc;
    int lines, enrolled, pushed, deadlines, frame_deadlines, refused, evicted;
    int over_budget, device_limit, out_of_fds;
} run_ctx;

static void run_log(const char *line, void *payload)
{
    run_ctx *r = payload;
    pthread_mutex_lock(&r->mu);
    r->lines++;
    if (strstr(line, "enrolled"))
        r->enrolled++;
    if (strstr(line, "pushed"))
        r->pushed++;
    if (strstr(line, "deadline") || strstr(line, "idle"))
        r->deadlines++;
    if (strstr(line, "frame deadline"))
        r->frame_deadlines++;
    if (strstr(line, "refused"))
        r->refused++;
    if (strstr(line, "to make room"))
        r->evicted++;
    if (strstr(line, "memory budget"))
        r->over_budget++;
    if (strstr(line, "the oldest goes"))
        r->device_limit++;
    if (strstr(line, "too many open files"))
        r->out_of_fds++;
    pthread_mutex_unlock(&r->mu);
    if (getenv("FV_TEST_VERBOSE"))
        fprintf(stderr, "  server: %s\n", line);
}

static void run_ready(const char *host, int port, void *payload)
{
    run_ctx *r = payload;
    (void)host;
    pthread_mutex_lock(&r->mu);
    r->port = port;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void *run_main(void *arg)
{
    run_ctx *r = arg;
    r->rc = fv_server_run(r->dir, &r->opts);
    pthread_mutex_lock(&r->mu);
    if (r->port == 0)
        r->port = -1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* r's server options: the defaults, its log and ready callbacks, its stop
 * flag (cleared). */
static void run_opts_init(run_ctx *r)
{
    fv_server_options o = FV_SERVER_OPTIONS_INIT;
    r->opts = o;
    r->opts.log = run_log;
    r->opts.log_payload = r;
    r->opts.ready = run_ready;
    r->opts.ready_payload = r;
    atomic_init(&r->stop, 0);
    r->opts.stop = &r->stop;
}

static int tcp_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* 1 if the server closed fd within ms (read gives EOF or an error). */
static int closed_within(int fd, int ms)
{
    int64_t end = now_ms() + ms;
    unsigned char b[4096];
    while (now_ms() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(end - now_ms())) <= 0)
            continue;
        ssize_t r = read(fd, b, sizeof b);
        if (r <= 0)
            return 1;
    }
    return 0;
}

static int tls_write_all(fv_tls_conn *c, const unsigned char *p, size_t n)
{
    int64_t end = now_ms() + 10000;
    while (n > 0 && now_ms() < end) {
        size_t w = 0;
        int rc = fv_tls_write(c, p, n, &w);
        if (rc == FV_OK) {
            p += w;
            n -= w;
        } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
            struct pollfd pf = {fv_tls_fd(c),
                                rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT, 0};
            poll(&pf, 1, 100);
        } else {
            return rc;
        }
    }
    return n == 0 ? FV_OK : FV_ENET;
}

/* Reads until the server closes (or ms pass); returns the last status. */
static int tls_read_all(fv_tls_conn *c, buf *out, int ms)
{
    int64_t end = now_ms() + ms;
    unsigned char b[16384];
    while (now_ms() < end) {
        size_t n = 0;
        int rc = fv_tls_read(c, b, sizeof b, &n);
        if (rc == FV_OK)
            buf_add(out, b, n);
        else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
            struct pollfd pf = {fv_tls_fd(c),
                                rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT, 0};
            poll(&pf, 1, 50);
        } else
            return rc;
    }
    return FV_ENET;
}

static void test_run(void)
{
    run_ctx r;
    char top[64], port[16], *invite = NULL;
    unsigned char pin[32], binding[32], zero[32] = {0};
    fv_invite inv;
    device admin;
    pthread_t th;
    int silent = -1;
    fv_tls_conn *good = NULL, *garbage = NULL, *drip = NULL;
    int64_t t0;

    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    make_tmpdir(top);
    snprintf(r.dir, sizeof r.dir, "%s/srv", top);
    CHECK_EQ(fv_server_init(r.dir, "127.0.0.1:0", pin, &invite), FV_OK);
    CHECK_EQ(fv_invite_decode(&inv, invite), FV_OK);
    free(invite);
    device_new(&admin);

    {
        fv_server_options o = FV_SERVER_OPTIONS_INIT;
        r.opts = o;
    }
    r.opts.max_connections = 8;
    r.opts.handshake_ms = 2000;
    r.opts.idle_ms = 1500;
    r.opts.frame_ms = 1200;
    r.opts.log = run_log;
    r.opts.log_payload = &r;
    r.opts.ready = run_ready;
    r.opts.ready_payload = &r;
    atomic_init(&r.stop, 0);
    r.opts.stop = &r.stop;
    if (pthread_create(&th, NULL, run_main, &r) != 0) {
        CHECK(!"pthread_create");
        return;
    }
    pthread_mutex_lock(&r.mu);
    while (r.port == 0)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    CHECK(r.port > 0);
    if (r.port <= 0)
        goto stop;
    snprintf(port, sizeof port, "%d", r.port);

    /* Bad clients first: one silent (TCP only), one sending garbage. */
    silent = tcp_connect(r.port);
    CHECK(silent >= 0);
    t0 = now_ms();
    CHECK_EQ(fv_tls_connect(&garbage, "127.0.0.1", port, pin, 5000), FV_OK);
    if (garbage) {
        static const unsigned char junk[] = {0, 0, 0, 5, 0xff, 0xfe, 0, 1, 2};
        buf got = {0};
        CHECK_EQ(tls_write_all(garbage, junk, sizeof junk), FV_OK);
        CHECK_EQ(tls_read_all(garbage, &got, 3000), FV_EEOF);
        CHECK(strcmp(types(&got), "31") == 0);
        CHECK_EQ(last_error(&got), FV_PERR_MALFORMED);
        buf_free(&got);
    }

    /* The good client: enroll + push + pull + bye in one flight. */
    CHECK_EQ(fv_tls_connect(&good, "127.0.0.1", port, pin, 5000), FV_OK);
    if (good) {
        fv_out o;
        buf got = {0};
        size_t off = 0, elen[3];
        unsigned char *env[3], ids[3][32];
        fv_msg m;
        pulled pr;
        CHECK_EQ(fv_tls_binding(good, binding), FV_OK);
        fv_out_init(&o);
        c_hello(&o, &admin, pin, binding, inv.token);
        for (int i = 0; i < 3; i++)
            env[i] = env_to_self(&admin, &elen[i], ids[i]);
        fv_send_push(&o, (const unsigned char *const *)env, elen, 3);
        fv_send_pull(&o, NULL, 0, zero, 0, NULL);
        fv_send_simple(&o, FV_MSG_BYE);
        CHECK_EQ(tls_write_all(good, o.buf, o.len), FV_OK);
        CHECK_EQ(tls_read_all(good, &got, 5000), FV_EEOF);
        CHECK(strcmp(types(&got), "16,17,18,19") == 0);
        unsigned char server_pk[32] = {0};
        CHECK(next_msg(&got, &off, &m) && m.type == FV_MSG_WELCOME &&
              m.u.welcome.role == FV_ROLE_COORDINATOR);
        if (m.type == FV_MSG_WELCOME)
            memcpy(server_pk, m.u.welcome.server, 32);
        if (next_msg(&got, &off, &m) && m.type == FV_MSG_RECEIPT) {
            fv_receipt rc;
            CHECK_EQ(fv_sign_verify(m.u.receipt.sig, m.u.receipt.body,
                                    m.u.receipt.body_len, server_pk), FV_OK);
            CHECK_EQ(fv_receipt_decode(&rc, m.u.receipt.body,
                                       m.u.receipt.body_len), FV_OK);
            CHECK(rc.n == 3 && rc.seq[0] == 1 && rc.seq[2] == 3);
        }
        read_pull(&got, &off, 0, zero, &pr);
        CHECK(pr.done && pr.chains_ok && pr.n == 3);
        for (int i = 0; i < 3; i++)
            free(env[i]);
        fv_out_free(&o);
        buf_free(&got);
        fv_tls_close(good);
        good = NULL;
    }
    /* It was served while the silent one still held its connection. */
    CHECK(now_ms() - t0 < 2000 || !"the good client took too long");
    if (silent >= 0)
        CHECK(closed_within(silent, 4000));

    /* An authenticated device that drips a frame, a byte every 300 ms: it
     * is never idle, but its frame runs out of time. */
    CHECK_EQ(fv_tls_connect(&drip, "127.0.0.1", port, pin, 5000), FV_OK);
    if (drip) {
        static const unsigned char hdr[] = {0, 0, 0, 40, 1, 2, 3, 4, 5, 6, 7, 8,
                                            9, 10, 11, 12, 13, 14, 15, 16};
        fv_out o;
        buf got = {0};
        int64_t start;
        int closed = 0;
        CHECK_EQ(fv_tls_binding(drip, binding), FV_OK);
        fv_out_init(&o);
        c_hello(&o, &admin, pin, binding, NULL);
        CHECK_EQ(tls_write_all(drip, o.buf, o.len), FV_OK);
        fv_out_free(&o);
        start = now_ms();
        for (size_t i = 0; i < sizeof hdr && !closed; i++) {
            unsigned char b[4096];
            size_t n;
            int rc;
            usleep(300000);
            if (tls_write_all(drip, hdr + i, 1) != FV_OK)
                closed = 1;
            while ((rc = fv_tls_read(drip, b, sizeof b, &n)) == FV_OK)
                buf_add(&got, b, n);
            if (rc != FV_TLS_WANT_READ && rc != FV_TLS_WANT_WRITE)
                closed = 1;
        }
        CHECK(closed);
        CHECK(now_ms() - start >= 1200 && now_ms() - start < 5000);
        CHECK(strcmp(types(&got), "16") == 0);
        buf_free(&got);
    }

    /* The pre-auth limit (8 / 4 = 2 in all, 1 from one address): each
     * new socket takes the place of the idlest one held open, which is
     * closed at once; the newest stays. */
    {
        int fds[10], nf = 0;
        for (int i = 0; i < 10; i++)
            if ((fds[nf] = tcp_connect(r.port)) >= 0)
                nf++;
        CHECK_EQ(nf, 10);
        {
            int closed = 0;
            for (int i = 0; i < nf; i++)
                closed += closed_within(fds[i], i < 9 ? 1000 : 100);
            CHECK_EQ(closed, 9);
        }
        for (int i = 0; i < nf; i++)
            close(fds[i]);
    }
    /* and a device can connect again afterwards */
    {
        fv_tls_conn *again = NULL;
        int64_t end = now_ms() + 4000;
        while (!again && now_ms() < end)
            if (fv_tls_connect(&again, "127.0.0.1", port, pin, 1000) != FV_OK)
                usleep(100000);
        CHECK(again != NULL);
        if (again) {
            fv_out o;
            buf got = {0};
            CHECK_EQ(fv_tls_binding(again, binding), FV_OK);
            fv_out_init(&o);
            c_hello(&o, &admin, pin, binding, NULL);
            fv_send_simple(&o, FV_MSG_BYE);
            tls_write_all(again, o.buf, o.len);
            CHECK_EQ(tls_read_all(again, &got, 5000), FV_EEOF);
            CHECK(strcmp(types(&got), "16") == 0);
            buf_free(&got);
            fv_out_free(&o);
            fv_tls_close(again);
        }
    }

stop:
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, FV_OK);
    CHECK(r.enrolled == 1);
    CHECK(r.pushed == 1);
    CHECK(r.deadlines >= 2);
    CHECK(r.frame_deadlines == 1);
    CHECK(r.evicted >= 1);
    if (silent >= 0)
        close(silent);
    fv_tls_close(garbage);
    fv_tls_close(drip);
    /* The server's data survived the stop. */
    {
        char db[256];
        fv_sstore *st = NULL;
        uint64_t head = 0;
        unsigned char chain[32];
        snprintf(db, sizeof db, "%s/server.db", r.dir);
        CHECK_EQ(fv_sstore_open(&st, db, 0), FV_OK);
        if (st) {
            CHECK_EQ(fv_sstore_log_head(st, &head, chain), FV_OK);
            CHECK_EQ(head, 3);
            fv_sstore_close(st);
        }
    }
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    rm_rf(top);
}

/* ---- signatures checked on the server's threads ----------------------- */

/* The engine with FV_SRV_VERIFY_DEFERRED, driven directly: a PUSH pauses
 * its connection and hands out one check per envelope the log does not
 * hold from the device; the results given back decide (a failure the
 * caller reports refuses the push, a result left alone is checked by the
 * engine itself); a connection freed while it waits leaks nothing. */
static void test_verify_deferred(void)
{
    harness h;
    device admin;
    fv_srv *s2 = NULL;
    fv_srv_config cfg;
    unsigned char *env[20], ids[20][32];
    size_t elen[20];
    fv_srv_verify v;
    hello_max = 1; /* protocol 1: one bad envelope fails its batch */

    harness_open(&h);
    device_new(&admin);
    CHECK(enroll(&h, &admin, h.admin_token));
    memset(&cfg, 0, sizeof cfg);
    cfg.version = FV_SRV_CONFIG_VERSION;
    cfg.store = h.st;
    cfg.receipt_sk = h.sk;
    cfg.epoch = h.epoch;
    cfg.pin = h.pin;
    cfg.address = ADDRESS;
    cfg.env = &h.env;
    cfg.flags = FV_SRV_VERIFY_DEFERRED;
    CHECK_EQ(fv_srv_new(&s2, &cfg), FV_OK);
    if (!s2) {
        harness_close(&h);
        return;
    }
    for (int i = 0; i < 20; i++)
        env[i] = env_to_self(&admin, &elen[i], ids[i]);

    for (int round = 0; round < 4; round++) {
        fv_srv_conn *c = NULL;
        fv_out o;
        buf out = {0};
        size_t len, used;
        const unsigned char *p;
        uint64_t head = log_head(&h);
        size_t first = round == 1 ? 10 : round == 3 ? 15 : 0;

        CHECK_EQ(fv_srv_conn_new(&c, s2, binding_a, 900 + (unsigned long)round),
                 FV_OK);
        if (!c)
            break;
        fv_out_init(&o);
        c_hello(&o, &admin, h.pin, binding_a, NULL);
        /* Rounds 0 and 1: envelopes 0..9, then 10..14; 2: 0..9 again (held:
         * no check); 3: 15..19 with a check reported failed. */
        if (round == 0 || round == 2)
            fv_send_push(&o, (const unsigned char *const *)env, elen, 10);
        else
            fv_send_push(&o, (const unsigned char *const *)env + first, elen + first,
                         5);
        fv_send_simple(&o, FV_MSG_BYE);
        p = fv_out_pending(&o, &len);
        used = fv_srv_conn_recv(c, p, len);
        if (round == 2) {
            /* Every envelope held: answered at once, nothing to check. */
            CHECK_EQ(fv_srv_conn_verify_jobs(c, &v), 0);
            CHECK_EQ(used, len);
        } else {
            CHECK(used < len);
            CHECK_EQ(fv_srv_conn_wants_input(c), 0);
            CHECK_EQ(fv_srv_conn_verify_jobs(c, &v), 1);
            CHECK_EQ(v.n, round == 0 ? 10 : 5);
            /* Nothing more is taken while the checks are out. */
            CHECK_EQ(fv_srv_conn_recv(c, p + used, len - used), 0);
            for (size_t i = 0; i < v.n && i < 10; i++) {
                size_t k = first + i;
                CHECK(v.len[i] == elen[k] && memcmp(v.env[i], env[k], elen[k]) == 0);
                if (round == 0)
                    v.result[i] = fv_srv_verify_envelope(v.env[i], v.len[i]);
                else if (round == 3 && i == 2)
                    v.result[i] = FV_ECORRUPT; /* said of a good envelope */
                /* round 1: left alone, the engine checks them */
            }
            if (round == 1) {
                /* A round whose connection goes while it waits: nothing
                 * leaks, nothing is stored; then the same, answered. */
                fv_srv_conn_free(c);
                c = NULL;
                CHECK_EQ(log_head(&h), head);
                CHECK_EQ(fv_srv_conn_new(&c, s2, binding_a, 990), FV_OK);
                if (!c)
                    break;
                used = fv_srv_conn_recv(c, p, len);
                CHECK(used < len);
                CHECK_EQ(fv_srv_conn_verify_jobs(c, &v), 1);
            }
            fv_srv_conn_verify_done(c);
            CHECK_EQ(fv_srv_conn_verify_jobs(c, &v), 0);
            if (fv_srv_conn_state(c) == FV_SRV_RUNNING)
                used += fv_srv_conn_recv(c, p + used, len - used);
        }
        drain(c, &out, 1 << 20);
        if (round == 3) {
            CHECK(strcmp(types(&out), "16,31") == 0);
            CHECK_EQ(last_error(&out), FV_PERR_REJECTED);
            CHECK_EQ(log_head(&h), head);
        } else {
            size_t off = 0;
            fv_msg m;
            CHECK(strcmp(types(&out), "16,17") == 0);
            CHECK_EQ(used, len);
            CHECK_EQ(log_head(&h), round == 0 ? 10 : 15);
            if (next_msg(&out, &off, &m) && next_msg(&out, &off, &m) &&
                m.type == FV_MSG_RECEIPT) {
                fv_receipt r;
                CHECK_EQ(fv_receipt_decode(&r, m.u.receipt.body,
                                           m.u.receipt.body_len), FV_OK);
                CHECK(r.n == (round == 1 ? 5u : 10u));
                CHECK(r.seq[0] == (round == 1 ? 11u : 1u));
            }
        }
        fv_out_free(&o);
        buf_free(&out);
        fv_srv_conn_free(c);
    }
    for (int i = 0; i < 20; i++)
        free(env[i]);
    fv_srv_free(s2);
    harness_close(&h);
}

#define VBATCH FV_PROTO_MAX_BATCH

/* What one connection of test_run_verify got back. */
typedef struct vreply {
    char types[64];
    int code;        /* the ERROR's code, or 0 */
    char text[128];  /* and its text */
    uint64_t first[4], last[4]; /* each receipt's first and last seq */
    int in_order;    /* every receipt lists its PUSH's ids in order, seqs
                        consecutive */
    size_t receipts;
} vreply;

/* One connection to the server of `r`: HELLO from d (enrolling with
 * token), then `npush` PUSHes of `per` envelopes each, then BYE; reads
 * until the server closes. env[k] are the envelopes (npush * per). With
 * `cut`, closes right after writing, reading nothing. */
static void vconverse(run_ctx *r, const unsigned char pin[32], const device *d,
                      const unsigned char *token, unsigned char **env,
                      const size_t *elen, unsigned char (*ids)[32],
                      size_t npush, size_t per, int cut, vreply *out)
{
    char port[16];
    fv_tls_conn *t = NULL;
    unsigned char binding[32];
    fv_out o;
    buf got = {0};
    size_t off = 0, k = 0;
    fv_msg m;

    memset(out, 0, sizeof *out);
    out->in_order = 1;
    snprintf(port, sizeof port, "%d", r->port);
    CHECK_EQ(fv_tls_connect(&t, "127.0.0.1", port, pin, 5000), FV_OK);
    if (!t)
        return;
    CHECK_EQ(fv_tls_binding(t, binding), FV_OK);
    fv_out_init(&o);
    c_hello(&o, d, pin, binding, token);
    for (size_t p = 0; p < npush; p++)
        fv_send_push(&o, (const unsigned char *const *)env + p * per,
                     elen + p * per, per);
    fv_send_simple(&o, FV_MSG_BYE);
    CHECK_EQ(tls_write_all(t, o.buf, o.len), FV_OK);
    fv_out_free(&o);
    if (cut) {
        fv_tls_close(t);
        return;
    }
    CHECK_EQ(tls_read_all(t, &got, 20000), FV_EEOF);
    snprintf(out->types, sizeof out->types, "%s", types(&got));
    while (next_msg(&got, &off, &m)) {
        if (m.type == FV_MSG_ERROR) {
            out->code = (int)m.u.error.code;
            snprintf(out->text, sizeof out->text, "%.*s",
                     (int)m.u.error.len, m.u.error.text);
        } else if (m.type == FV_MSG_RECEIPT && out->receipts < 4) {
            fv_receipt rc;
            size_t i = out->receipts++;
            if (fv_receipt_decode(&rc, m.u.receipt.body,
                                  m.u.receipt.body_len) != FV_OK ||
                rc.n != per) {
                out->in_order = 0;
                continue;
            }
            out->first[i] = rc.seq[0];
            out->last[i] = rc.seq[rc.n - 1];
            for (size_t j = 0; j < rc.n; j++, k++)
                if (memcmp(rc.id[j], ids[i * per + j], 32) != 0 ||
                    rc.seq[j] != rc.seq[0] + j)
                    out->in_order = 0;
        }
    }
    buf_free(&got);
    fv_tls_close(t);
}

/* The server's log head, read from its directory while it runs. */
static uint64_t dir_log_head(const char *dir)
{
    char db[256];
    fv_sstore *st = NULL;
    uint64_t head = 0;
    unsigned char chain[32];
    snprintf(db, sizeof db, "%s/server.db", dir);
    CHECK_EQ(fv_sstore_open(&st, db, 0), FV_OK);
    if (st) {
        CHECK_EQ(fv_sstore_log_head(st, &head, chain), FV_OK);
        fv_sstore_close(st);
    }
    return head;
}

/* fv_server_run with the signatures of PUSHes checked on a pool of threads
 * (verify_threads 2) answers exactly as with none (0, on the loop's
 * thread): a bad signature in the middle of a big push refuses the whole
 * push with the same ERROR, the first failing envelope decides which
 * (a bad signature before an envelope by another device, and after it),
 * good pushes are stored in the order they came with consecutive seqs,
 * and a connection cut while its push is being checked leaves the server
 * serving. */
static void test_run_verify(void)
{
    device admin, other;
    size_t n = 3 * VBATCH;
    unsigned char **env = xmalloc(n * sizeof *env), (*ids)[32];
    size_t *elen = xmalloc(n * sizeof *elen);
    vreply rep[2][5];
    unsigned char *foreign, fid[32];
    size_t flen;
    hello_max = 1; /* protocol 1: one bad envelope fails its batch */

    ids = xmalloc(n * sizeof *ids);
    device_new(&admin);
    device_new(&other);
    for (size_t i = 0; i < n; i++)
        env[i] = env_to_self(&admin, &elen[i], ids[i]);
    foreign = env_to_self(&other, &flen, fid);

    for (int pass = 0; pass < 2; pass++) {
        run_ctx r;
        char top[64], *invite = NULL;
        unsigned char pin[32];
        fv_invite inv;
        pthread_t th;
        unsigned char *keep[2];
        size_t keep_len[2];

        memset(&r, 0, sizeof r);
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        make_tmpdir(top);
        snprintf(r.dir, sizeof r.dir, "%s/srv", top);
        CHECK_EQ(fv_server_init(r.dir, "127.0.0.1:0", pin, &invite), FV_OK);
        CHECK_EQ(fv_invite_decode(&inv, invite), FV_OK);
        free(invite);
        {
            fv_server_options o = FV_SERVER_OPTIONS_INIT;
            r.opts = o;
        }
        r.opts.verify_threads = pass == 0 ? 0 : 2;
        r.opts.log = run_log;
        r.opts.log_payload = &r;
        r.opts.ready = run_ready;
        r.opts.ready_payload = &r;
        atomic_init(&r.stop, 0);
        r.opts.stop = &r.stop;
        if (pthread_create(&th, NULL, run_main, &r) != 0) {
            CHECK(!"pthread_create");
            break;
        }
        pthread_mutex_lock(&r.mu);
        while (r.port == 0)
            pthread_cond_wait(&r.cv, &r.mu);
        pthread_mutex_unlock(&r.mu);
        CHECK(r.port > 0);
        if (r.port <= 0) {
            pthread_join(th, NULL);
            break;
        }

        /* A bad signature (its last byte) at 137 of 256: the first PUSH
         * is refused whole, the second never handled. */
        env[137][elen[137] - 1] ^= 1;
        vconverse(&r, pin, &admin, inv.token, env, elen, ids, 2, VBATCH, 0,
                  &rep[pass][0]);
        env[137][elen[137] - 1] ^= 1;
        CHECK(strcmp(rep[pass][0].types, "16,31") == 0);
        CHECK_EQ(rep[pass][0].code, FV_PERR_REJECTED);
        CHECK(strcmp(rep[pass][0].text, "an envelope failed verification") == 0);

        /* Another device's envelope at 100 and a bad signature at 200:
         * the first in order decides; then the other way round. */
        keep[0] = env[100];
        keep_len[0] = elen[100];
        env[100] = foreign;
        elen[100] = flen;
        env[200][elen[200] - 1] ^= 1;
        vconverse(&r, pin, &admin, NULL, env, elen, ids, 1, VBATCH, 0,
                  &rep[pass][1]);
        env[200][elen[200] - 1] ^= 1;
        CHECK(strcmp(rep[pass][1].types, "16,31") == 0);
        CHECK(strcmp(rep[pass][1].text,
                     "an envelope is not signed by this device") == 0);
        env[50][elen[50] - 1] ^= 1;
        vconverse(&r, pin, &admin, NULL, env, elen, ids, 1, VBATCH, 0,
                  &rep[pass][2]);
        env[50][elen[50] - 1] ^= 1;
        env[100] = keep[0];
        elen[100] = keep_len[0];
        CHECK(strcmp(rep[pass][2].text, "an envelope failed verification") == 0);
        CHECK_EQ(dir_log_head(r.dir), 0);

        /* Three good pushes on one connection: stored in order. */
        vconverse(&r, pin, &admin, NULL, env, elen, ids, 3, VBATCH, 0,
                  &rep[pass][3]);
        CHECK(strcmp(rep[pass][3].types, "16,17,17,17") == 0);
        CHECK(rep[pass][3].in_order);
        CHECK(rep[pass][3].receipts == 3 && rep[pass][3].first[0] == 1 &&
              rep[pass][3].last[2] == n);

        /* A push of new envelopes cut before its answer, then the same
         * again (the server was not stuck on the first). */
        for (size_t i = 0; i < VBATCH; i++) {
            free(env[i]);
            env[i] = env_to_self(&admin, &elen[i], ids[i]);
        }
        vconverse(&r, pin, &admin, NULL, env, elen, ids, 1, VBATCH, 1,
                  &rep[pass][4]);
        vconverse(&r, pin, &admin, NULL, env, elen, ids, 1, VBATCH, 0,
                  &rep[pass][4]);
        CHECK(strcmp(rep[pass][4].types, "16,17") == 0);
        CHECK(rep[pass][4].in_order);
        CHECK_EQ(dir_log_head(r.dir), n + VBATCH);

        atomic_store(&r.stop, 1);
        pthread_join(th, NULL);
        CHECK_EQ(r.rc, FV_OK);
        pthread_mutex_destroy(&r.mu);
        pthread_cond_destroy(&r.cv);
        rm_rf(top);
    }
    /* Both ways, the same answers. */
    for (int i = 0; i < 5; i++) {
        CHECK(strcmp(rep[0][i].types, rep[1][i].types) == 0);
        CHECK_EQ(rep[0][i].code, rep[1][i].code);
        CHECK(strcmp(rep[0][i].text, rep[1][i].text) == 0);
    }
    for (size_t i = 0; i < n; i++)
        free(env[i]);
    free(env);
    free(elen);
    free(ids);
    free(foreign);
}

/* ---- courier bundles into the server ---------------------------------- */

/* A harness on a real server directory (fv_server_init), as fv_server_import
 * opens it: the engine uses the directory's receipt key, epoch and pin. */
static void harness_open_server(harness *h)
{
    fv_srv_config cfg;
    fv_invite inv;
    char *admin = NULL, path[160];
    FILE *f;

    memset(h, 0, sizeof *h);
    make_tmpdir(h->dir);
    CHECK_EQ(fv_server_init(h->dir, ADDRESS, h->pin, &admin), FV_OK);
    if (!admin || fv_invite_decode(&inv, admin) != FV_OK)
        exit(2);
    memcpy(h->admin_token, inv.token, sizeof h->admin_token);
    free(admin);
    snprintf(path, sizeof path, "%s/receipt.key", h->dir);
    f = fopen(path, "rb");
    if (!f || fread(h->sk, 1, 64, f) != 64)
        exit(2);
    fclose(f);
    memcpy(h->pk, h->sk + 32, 32);
    snprintf(h->db, sizeof h->db, "%s/server.db", h->dir);
    if (fv_sstore_open(&h->st, h->db, 0) != FV_OK ||
        fv_sstore_meta_get_fixed(h->st, "epoch", h->epoch, 16) != FV_OK)
        exit(2);
    h->env.now = NOW;
    h->env.random = test_random;
    h->env.log = test_log;
    memset(&cfg, 0, sizeof cfg);
    cfg.version = FV_SRV_CONFIG_VERSION;
    cfg.store = h->st;
    cfg.receipt_sk = h->sk;
    cfg.epoch = h->epoch;
    cfg.pin = h->pin;
    cfg.address = ADDRESS;
    cfg.env = &h->env;
    CHECK_EQ(fv_srv_new(&h->srv, &cfg), FV_OK);
}

static fv_vault *vault_new(const harness *h, const char *name)
{
    char dir[160];
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    o.kdf_profile = FV_KDF_TEST;
    snprintf(dir, sizeof dir, "%s/%s", h->dir, name);
    CHECK_EQ(fv_vault_create(&v, dir, "pw", 2, &o), FV_OK);
    if (!v)
        exit(2);
    return v;
}

static void vault_add(fv_vault *v, const char *title)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    in.title = title;
    in.narrative = "carried by hand";
    in.narrative_len = strlen(in.narrative);
    CHECK_EQ(fv_record_add(v, NULL, &in), FV_OK);
}

/* Runs one request of a real vault against the harness's engine, moving
 * every byte by hand. The client's final status; *stats if given. */
static int vault_converse(harness *h, fv_vault *v, const fv_client_request *req,
                          fv_client_stats *stats)
{
    static unsigned long id = 5000;
    fv_client *c = NULL;
    fv_srv_conn *sc = NULL;
    int rc = fv_client_new(&c, v, req), rounds = 0;

    if (rc)
        return rc;
    if (fv_srv_conn_new(&sc, h->srv, binding_a, ++id) != FV_OK)
        exit(2);
    fv_client_start(c, h->pin, binding_a);
    while (fv_client_status(c) == FV_OK && !fv_client_done(c) &&
           rounds++ < 100000) {
        const unsigned char *p;
        size_t n;
        int moved = 0;
        p = fv_client_pending(c, &n);
        if (n > 0 && fv_srv_conn_state(sc) == FV_SRV_RUNNING) {
            size_t used = fv_srv_conn_recv(sc, p, n);
            fv_client_ack(c, used);
            moved |= used > 0;
        }
        while ((p = fv_srv_conn_send_buf(sc, &n)) != NULL) {
            fv_client_recv(c, p, n);
            fv_srv_conn_send_ack(sc, n);
            moved = 1;
        }
        if (!moved)
            break;
    }
    rc = fv_client_done(c) ? fv_client_status(c)
                           : (fv_client_status(c) ? fv_client_status(c)
                                                  : FV_EPROTO);
    if (stats)
        *stats = *fv_client_get_stats(c);
    fv_client_free(c);
    fv_srv_conn_free(sc);
    return rc;
}

/* Enrolls a real vault with `token` through the engines. */
static int vault_enroll(harness *h, fv_vault *v, const unsigned char token[16])
{
    fv_invite inv;
    fv_client_request req;
    memset(&inv, 0, sizeof inv);
    snprintf(inv.address, sizeof inv.address, "%s", ADDRESS);
    memcpy(inv.pin, h->pin, 32);
    memcpy(inv.token, token, 16);
    memset(&req, 0, sizeof req);
    req.op = FV_CLIENT_ENROLL;
    req.invite = &inv;
    return vault_converse(h, v, &req, NULL);
}

/* The envelopes of a bundle, as fv_bundle_read hands them over. */
typedef struct bundle_ids {
    size_t n, batches;
    unsigned char id[64][32];
    unsigned char author[64][32];
} bundle_ids;

static int collect_ids(const unsigned char *const *env, const size_t *len,
                       size_t n, void *payload)
{
    bundle_ids *b = payload;
    b->batches++;
    for (size_t i = 0; i < n; i++) {
        fv_env e;
        if (fv_env_parse(&e, env[i], len[i]) != FV_OK)
            return FV_ECORRUPT;
        fv_env_clear(&e);
        if (b->n < 64) {
            memcpy(b->id[b->n], e.id, 32);
            memcpy(b->author[b->n], e.author, 32);
        }
        b->n++;
    }
    return FV_OK;
}

static int collect_chunks(const unsigned char *hash, const unsigned char *data,
                          size_t len, void *payload)
{
    (void)hash;
    (void)data;
    (void)len;
    (void)payload;
    return FV_ECORRUPT; /* the bundles here carry no attachment */
}

static unsigned char *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p;
    long n;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        exit(2);
    p = xmalloc((size_t)n);
    if (fread(p, 1, (size_t)n, f) != (size_t)n)
        exit(2);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void file_write(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n))
        exit(2);
    fclose(f);
}

/* How many times each id appears in the whole log (counts[i] for ids[i]). */
struct log_count {
    const unsigned char (*ids)[32];
    size_t n;
    size_t *counts;
    size_t entries;
};

static int count_in_log(const fv_sstore_entry *e, void *payload)
{
    struct log_count *lc = payload;
    fv_env env;
    lc->entries++;
    if (fv_env_parse(&env, e->bytes, e->len) != FV_OK)
        return FV_ECORRUPT;
    fv_env_clear(&env);
    for (size_t i = 0; i < lc->n; i++)
        if (memcmp(env.id, lc->ids[i], 32) == 0)
            lc->counts[i]++;
    return 0;
}

/* 1 if every one of the n ids is in the log exactly once. */
static int log_holds_once(harness *h, const unsigned char (*ids)[32], size_t n)
{
    size_t counts[64] = {0};
    struct log_count lc = {ids, n, counts, 0};
    int ok = 1;
    if (n > 64)
        return 0;
    CHECK_EQ(fv_sstore_read(h->st, NULL, 0, log_head(h), 100000, count_in_log,
                            &lc),
             FV_OK);
    CHECK_EQ(lc.entries, log_head(h));
    for (size_t i = 0; i < n; i++)
        if (counts[i] != 1)
            ok = 0;
    return ok;
}

/* None of the n ids is in the log. */
static int log_holds_none(harness *h, const unsigned char (*ids)[32], size_t n)
{
    uint64_t seq;
    for (size_t i = 0; i < n; i++)
        if (fv_sstore_log_find(h->st, ids[i], &seq) != FV_ENOTFOUND)
            return 0;
    return 1;
}

/* A bundle written by a real, enrolled field vault, imported into the
 * server: stored as a push would be, once, readable by a coordinator's
 * pull; damaged copies store nothing; strangers and the revoked are
 * refused. */
static void test_bundle_import(void)
{
    enum { N = 3 };
    harness h;
    device admin;
    fv_vault *field, *stranger;
    unsigned char token[16], device_pk[32], box_pk[32], zero[32] = {0};
    char good[160], bad[160], other[160];
    unsigned char *data;
    size_t data_len, first;
    uint64_t count = 99, added = 99;
    fv_bundle_stats bst = FV_BUNDLE_STATS_INIT;
    bundle_ids b;
    pulled r;
    fv_client_stats stats;
    fv_client_request sync_req;

    harness_open_server(&h);
    device_new(&admin);
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "courier", FV_ROLE_FIELD, token));
    field = vault_new(&h, "field");
    CHECK_EQ(vault_enroll(&h, field, token), FV_OK);
    fv_vs_device(field, device_pk, box_pk);
    for (int i = 0; i < N; i++) {
        char t[32];
        snprintf(t, sizeof t, "by hand %d", i);
        vault_add(field, t);
    }
    snprintf(good, sizeof good, "%s/stick.fvb", h.dir);
    snprintf(bad, sizeof bad, "%s/bad.fvb", h.dir);
    snprintf(other, sizeof other, "%s/stranger.fvb", h.dir);
    CHECK_EQ(fv_bundle_export(field, &bst, good, NULL), FV_OK);
    CHECK_EQ(bst.envelopes, N);

    /* What the bundle holds: N envelopes by the field device, one batch. */
    memset(&b, 0, sizeof b);
    CHECK_EQ(fv_bundle_read(good, collect_ids, collect_chunks, &b, NULL), FV_OK);
    CHECK_EQ(b.n, N);
    CHECK_EQ(b.batches, 1);
    for (size_t i = 0; i < b.n && i < 64; i++)
        CHECK(memcmp(b.author[i], device_pk, 32) == 0);
    CHECK_EQ(log_head(&h), 0);

    /* Damaged copies: FV_ECORRUPT, and nothing of the damaged batch is
     * stored (those cut or damaged after the batch are below). */
    data = file_read(good, &data_len);
    CHECK(data_len > 12 && memcmp(data, "FVBUNDL1", 8) == 0);
    first = (size_t)data[8] << 24 | (size_t)data[9] << 16 |
            (size_t)data[10] << 8 | data[11];
    CHECK(8 + 4 + first < data_len); /* the end mark follows the batch */
    {
        const size_t cuts[] = {8 + 4 + first - 1, 8 + 4 + first / 2, 12, 10,
                               8, 5, 0};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            count = added = 99;
            file_write(bad, data, cuts[i]);
            CHECK_EQ(fv_server_import(h.dir, bad, &count, &added),
                     FV_ECORRUPT);
            CHECK_EQ(count, 0);
            CHECK_EQ(added, 0);
            CHECK_EQ(log_head(&h), 0);
        }
    }
    {
        /* in the magic; mid-batch; in the last envelope's signature (the
         * frame still decodes: the envelope fails verification) */
        const size_t flips[] = {3, 8 + 4 + first / 2, 8 + 4 + first - 10};
        unsigned char *copy = xmalloc(data_len + 1);
        for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
            memcpy(copy, data, data_len);
            copy[flips[i]] ^= 0x20;
            file_write(bad, copy, data_len);
            CHECK_EQ(fv_server_import(h.dir, bad, &count, &added),
                     FV_ECORRUPT);
            CHECK_EQ(log_head(&h), 0);
        }
        free(copy);
    }
    CHECK(log_holds_none(&h, (const unsigned char(*)[32])b.id, N));

    /* A real vault that never enrolled: its bundle is refused whole. */
    stranger = vault_new(&h, "stranger");
    vault_add(stranger, "not one of ours");
    CHECK_EQ(fv_bundle_export(stranger, &bst, other, NULL), FV_OK);
    CHECK_EQ(bst.envelopes, 1);
    CHECK_EQ(fv_server_import(h.dir, other, &count, &added), FV_EDENIED);
    CHECK_EQ(count, 0);
    CHECK_EQ(log_head(&h), 0);

    /* The good bundle: every envelope stored, each once. */
    CHECK_EQ(fv_server_import(h.dir, good, &count, &added), FV_OK);
    CHECK_EQ(count, N);
    CHECK_EQ(added, N);
    CHECK_EQ(log_head(&h), N);
    CHECK(log_holds_once(&h, (const unsigned char(*)[32])b.id, N));
    /* Twice: nothing changes. */
    CHECK_EQ(fv_server_import(h.dir, good, &count, &added), FV_OK);
    CHECK_EQ(count, N);
    CHECK_EQ(added, 0);
    CHECK_EQ(log_head(&h), N);
    CHECK(log_holds_once(&h, (const unsigned char(*)[32])b.id, N));
    /* Cut or damaged after the whole batch (in the end mark, a byte after
     * it): the batch is read, then FV_ECORRUPT. */
    {
        unsigned char *copy = xmalloc(data_len + 1);
        const size_t cuts[] = {data_len - 1, 8 + 4 + first};
        for (size_t i = 0; i < 4; i++) {
            memcpy(copy, data, data_len);
            copy[data_len] = 0;
            if (i < 2)
                file_write(bad, copy, cuts[i]);
            else if (i == 2) {
                copy[data_len - 1] ^= 0x20;
                file_write(bad, copy, data_len);
            } else
                file_write(bad, copy, data_len + 1);
            count = added = 99;
            CHECK_EQ(fv_server_import(h.dir, bad, &count, &added),
                     FV_ECORRUPT);
            CHECK_EQ(count, N);
            CHECK_EQ(added, 0);
            CHECK_EQ(log_head(&h), N);
        }
        free(copy);
    }

    /* The coordinator's pull gets them, chained. */
    do_pull(&h, &admin, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.error == 0);
    CHECK_EQ(r.n, N);
    for (size_t i = 0; i < N; i++)
        CHECK(has_id(&r, b.id[i]));

    /* The field device's network sync then delivers the same envelopes:
     * receipts for all, nothing stored twice, nothing echoed back. */
    memset(&sync_req, 0, sizeof sync_req);
    sync_req.op = FV_CLIENT_SYNC;
    CHECK_EQ(vault_converse(&h, field, &sync_req, &stats), FV_OK);
    CHECK_EQ(stats.pushed, N);
    CHECK_EQ(stats.pulled, 0);
    CHECK_EQ(log_head(&h), N);
    CHECK(log_holds_once(&h, (const unsigned char(*)[32])b.id, N));

    /* Once the device is revoked, its bundles are refused. */
    CHECK_EQ(fv_sstore_device_revoke(h.st, device_pk, 1000), FV_OK);
    CHECK_EQ(fv_server_import(h.dir, good, &count, &added), FV_EDENIED);
    CHECK_EQ(log_head(&h), N);

    /* No bundle, or no server there. */
    snprintf(bad, sizeof bad, "%s/missing.fvb", h.dir);
    CHECK_EQ(fv_server_import(h.dir, bad, &count, &added), FV_ENOTFOUND);
    snprintf(bad, sizeof bad, "%s/field", h.dir);
    CHECK_EQ(fv_server_import(bad, good, &count, &added), FV_ENOTFOUND);
    CHECK_EQ(fv_server_import(NULL, good, &count, &added), FV_EINVAL);

    free(data);
    fv_vault_close(field);
    fv_vault_close(stranger);
    harness_close(&h);
}

/* Writes a bundle by hand: the magic, a PUSH frame per batch (sizes[k]
 * envelopes each), and the end mark if asked. */
static void write_bundle(const char *path, unsigned char **env,
                         const size_t *len, const size_t *sizes,
                         size_t nbatches, int end_mark)
{
    fv_out o;
    const unsigned char *p;
    size_t k = 0, n;
    buf all = {0};
    fv_out_init(&o);
    for (size_t i = 0; i < nbatches; i++) {
        CHECK_EQ(fv_send_push(&o, (const unsigned char *const *)env + k,
                              len + k, sizes[i]),
                 FV_OK);
        k += sizes[i];
    }
    if (end_mark)
        CHECK_EQ(fv_send_simple(&o, FV_MSG_BYE), FV_OK);
    buf_add(&all, "FVBUNDL1", 8);
    p = fv_out_pending(&o, &n);
    buf_add(&all, p, n);
    file_write(path, all.p, all.len);
    buf_free(&all);
    fv_out_free(&o);
}

/* Hand-made bundles: batches of several authors (each envelope routed to
 * the feeds as its own author's push would), an unknown author in a batch,
 * a damaged second batch, a missing end mark, other frames; and
 * fv_srv_store_batch itself. */
static void test_bundle_batches(void)
{
    enum { NE = 12 };
    harness h;
    device admin, a, b, stranger;
    unsigned char token[16], zero[32] = {0}, *env[NE], ids[NE][32];
    size_t len[NE];
    char path[160];
    uint64_t count, added;
    pulled r;

    harness_open_server(&h);
    device_new(&admin);
    device_new(&a);
    device_new(&b);
    device_new(&stranger);
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "a", FV_ROLE_FIELD, token));
    CHECK(enroll(&h, &a, token));
    CHECK(make_invite(&h, &admin, "b", FV_ROLE_FIELD, token));
    CHECK(enroll(&h, &b, token));
    snprintf(path, sizeof path, "%s/hand.fvb", h.dir);

    /* 0-2, 6-9: a's own; 3: the coordinator's to a; 4: to b; 5: the
     * stranger's; 10: a's, sealed to b too (never b's to read); 11: a's. */
    for (int i = 0; i < NE; i++)
        env[i] = env_to_self(&a, &len[i], ids[i]);
    free(env[3]);
    env[3] = make_env(&admin, (const unsigned char(*)[32])a.box, 1, 70,
                      &len[3], ids[3]);
    free(env[4]);
    env[4] = make_env(&admin, (const unsigned char(*)[32])b.box, 1, 70,
                      &len[4], ids[4]);
    free(env[5]);
    env[5] = env_to_self(&stranger, &len[5], ids[5]);
    free(env[10]);
    {
        unsigned char to[2][32];
        memcpy(to[0], a.box, 32);
        memcpy(to[1], b.box, 32);
        env[10] = make_env(&a, (const unsigned char(*)[32])to, 2, 70, &len[10],
                           ids[10]);
    }

    /* Runs a, a, coordinator, a, coordinator in one batch; a second batch
     * repeats one. One transaction each; routed by each author's role. */
    {
        unsigned char *e[6] = {env[0], env[1], env[3], env[2], env[4], env[1]};
        size_t l[6] = {len[0], len[1], len[3], len[2], len[4], len[1]};
        size_t sizes[2] = {5, 1};
        write_bundle(path, e, l, sizes, 2, 1);
        CHECK_EQ(fv_server_import(h.dir, path, &count, &added), FV_OK);
        CHECK_EQ(count, 6);
        CHECK_EQ(added, 5);
        CHECK_EQ(log_head(&h), 5);
        CHECK(log_holds_once(&h, (const unsigned char(*)[32])ids, 5));
        do_pull(&h, &a, NULL, 0, zero, &r);
        CHECK(r.done && r.chains_ok && r.n == 1 && has_id(&r, ids[3]));
        do_pull(&h, &b, NULL, 0, zero, &r);
        CHECK(r.done && r.chains_ok && r.n == 1 && has_id(&r, ids[4]));
        do_pull(&h, &admin, NULL, 0, zero, &r);
        CHECK(r.done && r.chains_ok && r.n == 5);
    }

    /* A batch with an author never enrolled: nothing of it is stored, the
     * batch before it is. */
    {
        unsigned char *e[3] = {env[6], env[7], env[5]};
        size_t l[3] = {len[6], len[7], len[5]};
        size_t sizes[2] = {1, 2};
        write_bundle(path, e, l, sizes, 2, 1);
        CHECK_EQ(fv_server_import(h.dir, path, &count, &added), FV_EDENIED);
        CHECK_EQ(count, 1);
        CHECK_EQ(added, 1);
        CHECK_EQ(log_head(&h), 6);
        CHECK(log_holds_none(&h, (const unsigned char(*)[32])ids[7], 1));
        CHECK(log_holds_none(&h, (const unsigned char(*)[32])ids[5], 1));
    }

    /* A damaged envelope in the second batch: the first is stored, nothing
     * of the second. */
    {
        unsigned char *flipped = xmalloc(len[9]);
        unsigned char *e[3] = {env[7], env[8], flipped};
        size_t l[3] = {len[7], len[8], len[9]};
        size_t sizes[2] = {1, 2};
        memcpy(flipped, env[9], len[9]);
        flipped[len[9] / 2] ^= 0x40;
        write_bundle(path, e, l, sizes, 2, 1);
        CHECK_EQ(fv_server_import(h.dir, path, &count, &added), FV_ECORRUPT);
        CHECK_EQ(count, 1);
        CHECK_EQ(added, 1);
        CHECK_EQ(log_head(&h), 7);
        CHECK(log_holds_none(&h, (const unsigned char(*)[32])ids[8], 2));
        free(flipped);
    }

    /* No end mark: a bundle cut between frames is damage, its whole
     * frames read (envelopes stored already here). Bytes after the end
     * mark, a frame other than CERTS, PUSH and CHUNK-PUT, or a CERTS frame
     * after a PUSH (certificates come first: envelopes are admitted by
     * them), are damage; CERTS frames first are passed over here. */
    {
        unsigned char *e[2] = {env[0], env[1]};
        size_t l[2] = {len[0], len[1]};
        size_t sizes[2] = {1, 1};
        write_bundle(path, e, l, sizes, 2, 0);
        CHECK_EQ(fv_server_import(h.dir, path, &count, &added), FV_ECORRUPT);
        CHECK_EQ(count, 2);
        CHECK_EQ(added, 0);
        CHECK_EQ(log_head(&h), 7);
    }
    {
        fv_out o;
        buf all = {0};
        const unsigned char *p, cert[64] = {1, 2, 3};
        const unsigned char *certs[1] = {cert};
        size_t n, cert_len = sizeof cert;
        for (int t = 0; t < 4; t++) {
            fv_out_init(&o);
            if (t == 3)
                CHECK_EQ(fv_send_certs(&o, certs, &cert_len, 1), FV_OK);
            fv_send_push(&o, (const unsigned char *const *)&env[0], &len[0], 1);
            if (t == 0) {
                fv_send_simple(&o, FV_MSG_BYE);
                fv_send_simple(&o, FV_MSG_BYE);
            } else if (t == 1) {
                fv_send_pull(&o, NULL, 0, zero, 0, NULL);
                fv_send_simple(&o, FV_MSG_BYE);
            } else if (t == 2) {
                CHECK_EQ(fv_send_certs(&o, certs, &cert_len, 1), FV_OK);
                fv_send_simple(&o, FV_MSG_BYE);
            } else {
                fv_send_simple(&o, FV_MSG_BYE);
            }
            all.len = 0;
            buf_add(&all, "FVBUNDL1", 8);
            p = fv_out_pending(&o, &n);
            buf_add(&all, p, n);
            file_write(path, all.p, all.len);
            CHECK_EQ(fv_server_import(h.dir, path, &count, &added),
                     t == 3 ? FV_OK : FV_ECORRUPT);
            CHECK_EQ(log_head(&h), 7);
            fv_out_free(&o);
        }
        buf_free(&all);
    }
    /* An empty bundle is whole. */
    write_bundle(path, env, len, NULL, 0, 1);
    CHECK_EQ(fv_server_import(h.dir, path, &count, &added), FV_OK);
    CHECK_EQ(count, 0);
    CHECK_EQ(added, 0);

    /* fv_srv_store_batch itself, with an author given. */
    {
        uint64_t seqs[3] = {0};
        size_t nadded = 99;
        const unsigned char *e[3] = {env[8], env[0], env[8]};
        size_t l[3] = {len[8], len[0], len[8]};
        CHECK_EQ(fv_srv_store_batch(h.srv, a.pk, e, l, 3, seqs, &nadded),
                 FV_OK);
        CHECK_EQ(nadded, 1);
        CHECK_EQ(seqs[0], 8);
        CHECK_EQ(seqs[1], 1); /* known: keeps its seq */
        CHECK_EQ(seqs[2], 8);
        CHECK_EQ(log_head(&h), 8);
        /* someone else's envelope in a's batch */
        e[0] = env[9];
        l[0] = len[9];
        e[1] = env[3];
        l[1] = len[3];
        CHECK_EQ(fv_srv_store_batch(h.srv, a.pk, e, l, 2, NULL, &nadded),
                 FV_ECORRUPT);
        e[0] = env[5];
        l[0] = len[5];
        CHECK_EQ(fv_srv_store_batch(h.srv, stranger.pk, e, l, 1, NULL,
                                    &nadded),
                 FV_EDENIED);
        CHECK_EQ(fv_srv_store_batch(h.srv, a.pk, e, l, FV_PROTO_MAX_BATCH + 1,
                                    NULL, &nadded),
                 FV_EINVAL);
        CHECK_EQ(log_head(&h), 8);
        CHECK(log_holds_none(&h, (const unsigned char(*)[32])ids[9], 1));
        /* revoked: refused, given or found */
        CHECK_EQ(fv_sstore_device_revoke(h.st, b.pk, 1000), FV_OK);
        {
            unsigned char bid[32];
            size_t blen;
            unsigned char *by_b = env_to_self(&b, &blen, bid);
            const unsigned char *be[1] = {by_b};
            CHECK_EQ(fv_srv_store_batch(h.srv, b.pk, be, &blen, 1, NULL,
                                        &nadded),
                     FV_EDENIED);
            CHECK_EQ(fv_srv_store_batch(h.srv, NULL, be, &blen, 1, NULL,
                                        &nadded),
                     FV_EDENIED);
            CHECK_EQ(log_head(&h), 8);
            free(by_b);
        }
    }

    for (int i = 0; i < NE; i++)
        free(env[i]);
    harness_close(&h);
}

/* ---- a device connecting to a server that is away ---------------------- */

/* A free port on 127.0.0.1 (bound, read, closed: free again). */
static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void *late_server_main(void *arg)
{
    usleep(1500000); /* the device's first tries find nobody */
    return run_main(arg);
}

static void *cancel_later_main(void *arg)
{
    usleep(700000);
    fv_sync_session_cancel(arg);
    return NULL;
}

/* fv_sync tries again while the server is away (connection refused),
 * inside its timeout, and gives up at the timeout or on a cancel. */
static void test_connect_retry(void)
{
    run_ctx r;
    char top[64], vdir[96], listen[32], *invite = NULL;
    unsigned char pin[32];
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    fv_sync_session *sess = NULL;
    fv_vault *v = NULL;
    pthread_t th, canceller;
    int port = free_port();

    CHECK(port > 0);
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    make_tmpdir(top);
    snprintf(r.dir, sizeof r.dir, "%s/srv", top);
    snprintf(vdir, sizeof vdir, "%s/dev", top);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    CHECK_EQ(fv_server_init(r.dir, listen, pin, &invite), FV_OK);
    free(invite);
    invite = NULL;
    run_opts_init(&r);
    co.kdf_profile = FV_KDF_TEST;
    so.server = listen;
    so.timeout_ms = 20000;

    /* Enrolled while the server runs; then it stops. */
    if (pthread_create(&th, NULL, run_main, &r) != 0)
        exit(2);
    pthread_mutex_lock(&r.mu);
    while (r.port == 0)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    CHECK_EQ(r.port, port);
    CHECK_EQ(fv_vault_create(&v, vdir, "pw", 2, &co), FV_OK);
    CHECK_EQ(fv_server_invite(r.dir, "late", FV_ROLE_FIELD, 3600, &invite),
             FV_OK);
    CHECK_EQ(fv_enroll(v, NULL, invite, &so), FV_OK);
    free(invite);
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, FV_OK);

    /* The server comes back 1.5 s after the sync began: it goes through. */
    r.port = 0;
    atomic_store(&r.stop, 0);
    if (pthread_create(&th, NULL, late_server_main, &r) != 0)
        exit(2);
    vault_add(v, "written while the server was away");
    CHECK_EQ(fv_sync(v, &res, &so), FV_OK);
    CHECK_EQ(res.pushed, 1);
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, FV_OK);

    /* Nobody there: the tries end with the timeout, as a network
     * failure. */
    vault_add(v, "for nobody");
    so.timeout_ms = 1500;
    CHECK_EQ(fv_sync(v, &res, &so), FV_ENET);

    /* ... or with a cancel, in a wait between tries. */
    so.timeout_ms = 60000;
    CHECK_EQ(fv_sync_session_new(&sess, v, &so), FV_OK);
    if (sess) {
        if (pthread_create(&canceller, NULL, cancel_later_main, sess) != 0)
            exit(2);
        CHECK_EQ(fv_sync_session_run(sess, &res), FV_ECANCELED);
        pthread_join(canceller, NULL);
        fv_sync_session_free(sess);
    }
    fv_vault_close(v);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    rm_rf(top);
}

/* ---- floods: what one device or one address can make it spend --------- */

/* The server runs in a child process, so that its peak resident set
 * (VmHWM) is its own, not the attackers'. Run alone: `test_server floods`
 * (ctest: test_server_floods). */
#if defined(__SANITIZE_ADDRESS__)
/* ASan keeps freed memory in quarantine (256 MiB) and runs several times
 * slower: fewer frames, and no check of the peak, which measures ASan. */
#define FLOOD_FRAMES 60
#define FLOOD_CHECK_RSS 0
#else
#define FLOOD_FRAMES 300 /* connections of one device, each 1 MiB - 2 bytes
                            into a frame of 1 MiB - 1 (300 hold 300 MiB
                            without the caps; the benchmark opens 1,000) */
#define FLOOD_CHECK_RSS 1
#endif
#define FLOOD_SOCKETS 2000 /* idle sockets, reopened as fast as dropped */
#define FLOOD_SYNCS 29    /* legitimate devices syncing meanwhile */
#define FLOOD_RSS_KIB (128 * 1024)

typedef struct flood_srv {
    char dir[128], log[160], addr[32], port[8];
    pid_t pid;
} flood_srv;

static atomic_int flood_stop;
static int flood_log_fd = -1;

static void flood_on_term(int sig)
{
    (void)sig;
    atomic_store(&flood_stop, 1);
}

static void flood_log(const char *line, void *payload)
{
    char b[300];
    int n = snprintf(b, sizeof b, "%s\n", line);
    (void)payload;
    if (n > 0 && write(flood_log_fd, b, (size_t)n < sizeof b ? (size_t)n
                                                              : sizeof b - 1))
        return;
}

static int flood_hog; /* descriptors to leave free once listening */

static void flood_ready(const char *host, int port, void *payload)
{
    (void)host;
    if (flood_hog) {
        /* Something else takes the descriptors (as ENFILE would): all but
         * flood_hog, fewer than the connections the server allows. */
        int fds[64], n = 0, fd;
        while ((fd = open("/dev/null", O_RDONLY)) >= 0)
            if (n < flood_hog)
                fds[n++] = fd;
        while (n > 0)
            close(fds[--n]);
    }
    if (write(*(int *)payload, &port, sizeof port) != sizeof port)
        _exit(3);
}

/* Starts fv_server_run on s->dir in a child, its descriptors limited to
 * `nofile` (soft and hard) if not 0, `hog` of them left free once it
 * listens if not 0, with the given limits (0: the defaults); its log lines
 * go to s->log. */
static int flood_start(flood_srv *s, rlim_t nofile, int hog,
                       unsigned per_device, unsigned memory_mib)
{
    int pfd[2], port = 0;
    struct pollfd pf;
    if (pipe(pfd) != 0)
        return -1;
    s->pid = fork();
    if (s->pid == 0) {
        fv_server_options o = FV_SERVER_OPTIONS_INIT;
        struct sigaction sa;
        int rc;
        close(pfd[0]);
        flood_hog = hog;
        if (nofile) {
            struct rlimit rl = {nofile, nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                _exit(3);
        }
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = flood_on_term;
        sigaction(SIGTERM, &sa, NULL);
        flood_log_fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
                            0600);
        o.listen = "127.0.0.1:0";
        o.max_per_device = per_device;
        o.memory_mib = memory_mib;
        o.log = flood_log;
        o.ready = flood_ready;
        o.ready_payload = &pfd[1];
        o.stop = &flood_stop;
        rc = fv_server_run(s->dir, &o);
        _exit(rc == FV_OK ? 0 : 1);
    }
    close(pfd[1]);
    pf.fd = pfd[0];
    pf.events = POLLIN;
    if (s->pid < 0 || poll(&pf, 1, 20000) != 1 ||
        read(pfd[0], &port, sizeof port) != sizeof port || port <= 0) {
        close(pfd[0]);
        return -1;
    }
    close(pfd[0]);
    snprintf(s->port, sizeof s->port, "%d", port);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", port);
    return 0;
}

/* SIGTERM, then its exit status (0: it stopped cleanly). */
static int flood_stop_server(flood_srv *s)
{
    int st = 0;
    kill(s->pid, SIGTERM);
    if (waitpid(s->pid, &st, 0) != s->pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* How many lines of the server's log contain `what`. */
static int flood_log_count(const flood_srv *s, const char *what)
{
    FILE *f = fopen(s->log, "r");
    char line[512];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        n += strstr(line, what) != NULL;
    fclose(f);
    return n;
}

/* How many descriptors process pid holds (-1 if unknown). */
static int fd_count(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;
    snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static long vm_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t fl = strlen(field);
    long v = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':')
            v = atol(line + fl + 1);
    fclose(f);
    return v;
}

/* A legitimate device: one new record, then fv_sync with a generous
 * timeout (the machine is loaded and the server under attack). */
typedef struct legit {
    fv_vault *v;
    const char *addr;
    pthread_t tid;
    int rc;
    uint64_t pushed;
} legit;

static void *legit_main(void *arg)
{
    legit *l = arg;
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    res = (fv_sync_result)FV_SYNC_RESULT_INIT;
    so.server = l->addr;
    so.timeout_ms = 60000;
    l->rc = fv_sync(l->v, &res, &so);
    l->pushed = res.pushed;
    return NULL;
}

/* Each of the n devices adds a record and syncs, all at once; returns how
 * many pushed their record. */
static int legit_round(legit *ls, int n, const char *title)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        vault_add(ls[i].v, title);
        if (pthread_create(&ls[i].tid, NULL, legit_main, &ls[i]) != 0)
            exit(2);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(ls[i].tid, NULL);
        if (ls[i].rc == FV_OK && ls[i].pushed == 1)
            ok++;
        else if (getenv("FV_TEST_VERBOSE"))
            fprintf(stderr, "  legit %d: %s, pushed %llu\n", i,
                    fv_strerror(ls[i].rc), (unsigned long long)ls[i].pushed);
    }
    return ok;
}

/* One enrolled device opening connection after connection, each holding
 * all but the last byte of a frame of 1 MiB - 1. */
typedef struct frame_flood {
    const device *d;
    const unsigned char *pin;
    const char *port;
    int first, n, sent;
    fv_tls_conn **held;
    pthread_t tid;
} frame_flood;

#define FLOOD_FRAME_THREADS 2 /* connections opened 2 at a time */
static unsigned char flood_body[FV_FRAME_MAX - 2];

static void *frame_flood_main(void *arg)
{
    frame_flood *f = arg;
    const unsigned char *body = flood_body;
    static const unsigned char hdr[4] = {0x00, 0x0f, 0xff, 0xff};
    for (int i = f->first; i < f->first + f->n; i++) {
        fv_tls_conn *t = NULL;
        unsigned char binding[32];
        fv_out o;
        if (fv_tls_connect(&t, "127.0.0.1", f->port, f->pin, 20000) != FV_OK)
            continue;
        f->held[i] = t;
        fv_tls_binding(t, binding);
        fv_out_init(&o);
        c_hello(&o, f->d, f->pin, binding, NULL);
        /* A write fails once the server closed this one: on to the next. */
        if (tls_write_all(t, o.buf, o.len) == FV_OK &&
            tls_write_all(t, hdr, sizeof hdr) == FV_OK &&
            tls_write_all(t, body, sizeof flood_body) == FV_OK)
            f->sent++;
        fv_out_free(&o);
    }
    return NULL;
}

/* Idle TCP sockets, FLOOD_SOCKETS at a time, each reopened as soon as the
 * server drops it. */
typedef struct socket_flood {
    int port;
    atomic_int stop;
    long opened;
    pthread_t tid;
} socket_flood;

static void *socket_flood_main(void *arg)
{
    socket_flood *f = arg;
    static struct pollfd pf[FLOOD_SOCKETS];
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)f->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < FLOOD_SOCKETS; i++)
        pf[i].fd = -1;
    while (!atomic_load(&f->stop)) {
        for (int i = 0; i < FLOOD_SOCKETS; i++) {
            if (pf[i].fd >= 0)
                continue;
            pf[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (pf[i].fd < 0)
                break;
            if (connect(pf[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
                errno != EINPROGRESS) {
                close(pf[i].fd);
                pf[i].fd = -1;
                continue;
            }
            pf[i].events = POLLIN;
            f->opened++;
        }
        if (poll(pf, FLOOD_SOCKETS, 20) <= 0)
            continue;
        for (int i = 0; i < FLOOD_SOCKETS; i++)
            if (pf[i].fd >= 0 && pf[i].revents) {
                close(pf[i].fd); /* dropped (or refused): open another */
                pf[i].fd = -1;
            }
    }
    for (int i = 0; i < FLOOD_SOCKETS; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    return NULL;
}

/* Makes n vaults enrolled as field devices of the server. */
static void flood_devices(const flood_srv *s, const char *top, legit *ls,
                          int n)
{
    for (int i = 0; i < n; i++) {
        fv_create_options co = FV_CREATE_OPTIONS_INIT;
        fv_sync_options so = FV_SYNC_OPTIONS_INIT;
        char dir[160], name[16], *invite = NULL;
        co.kdf_profile = FV_KDF_TEST;
        snprintf(dir, sizeof dir, "%s/dev%d", top, i);
        snprintf(name, sizeof name, "dev%d", i);
        if (fv_vault_create(&ls[i].v, dir, "pw", 2, &co) != FV_OK ||
            fv_server_invite(s->dir, name, FV_ROLE_FIELD, 3600, &invite) !=
                FV_OK)
            exit(2);
        so.server = s->addr;
        CHECK_EQ(fv_enroll(ls[i].v, NULL, invite, &so), FV_OK);
        free(invite);
        ls[i].addr = s->addr;
    }
}

static void test_floods(void)
{
    char top[64], *invite = NULL;
    unsigned char pin[32];
    fv_invite inv;
    flood_srv s;
    device attacker;
    legit ls[FLOOD_SYNCS];
    frame_flood ff[FLOOD_FRAME_THREADS];
    fv_tls_conn **held = NULL;
    int sent = 0;
    socket_flood sf;
    struct rlimit rl;
    int ok;
    long hwm;
    int fds0, after;
    int64_t t0 = now_ms();

    /* Thousands of sockets: the soft limit up to the hard one. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(&s, 0, sizeof s);
    memset(ls, 0, sizeof ls);
    make_tmpdir(top);
    snprintf(s.dir, sizeof s.dir, "%s/srv", top);
    snprintf(s.log, sizeof s.log, "%s/serve.log", top);
    CHECK_EQ(fv_server_init(s.dir, "127.0.0.1:0", pin, &invite), FV_OK);
    free(invite);
    invite = NULL;
    if (flood_start(&s, 0, 0, 8, 16) != 0) {
        CHECK(!"the server did not start");
        goto out;
    }
    flood_devices(&s, top, ls, FLOOD_SYNCS);
    /* The attacker: an enrolled device of its own. */
    device_new(&attacker);
    CHECK_EQ(fv_server_invite(s.dir, "attacker", FV_ROLE_FIELD, 3600, &invite),
             FV_OK);
    CHECK_EQ(fv_invite_decode(&inv, invite), FV_OK);
    free(invite);
    {
        fv_tls_conn *t = NULL;
        unsigned char binding[32];
        fv_out o;
        buf got = {0};
        CHECK_EQ(fv_tls_connect(&t, "127.0.0.1", s.port, pin, 10000), FV_OK);
        if (!t)
            goto stop;
        fv_tls_binding(t, binding);
        fv_out_init(&o);
        c_hello(&o, &attacker, pin, binding, inv.token);
        fv_send_simple(&o, FV_MSG_BYE);
        CHECK_EQ(tls_write_all(t, o.buf, o.len), FV_OK);
        CHECK_EQ(tls_read_all(t, &got, 10000), FV_EEOF);
        CHECK(strcmp(types(&got), "16") == 0); /* WELCOME */
        buf_free(&got);
        fv_out_free(&o);
        fv_tls_close(t);
    }

    /* 0. Ten connections of the attacker, HELLO only: beyond 8, its
     * oldest close. */
    {
        fv_tls_conn *ts[10] = {0};
        for (int i = 0; i < 10; i++) {
            unsigned char binding[32];
            fv_out o;
            if (fv_tls_connect(&ts[i], "127.0.0.1", s.port, pin, 10000) !=
                FV_OK)
                continue;
            fv_tls_binding(ts[i], binding);
            fv_out_init(&o);
            c_hello(&o, &attacker, pin, binding, NULL);
            CHECK_EQ(tls_write_all(ts[i], o.buf, o.len), FV_OK);
            fv_out_free(&o);
        }
        usleep(1000000);
        CHECK_EQ(flood_log_count(&s, "the oldest goes"), 2);
        for (int i = 0; i < 10; i++)
            fv_tls_close(ts[i]);
    }

    /* 1. Frames: the device's connections beyond 8 close (oldest first),
     * and beyond its 4 MiB (a quarter of 16) the one holding most closes;
     * the others sync. */
    memset(ff, 0, sizeof ff);
    memset(flood_body, 0x5c, sizeof flood_body);
    if (!(held = calloc(FLOOD_FRAMES, sizeof *held)))
        exit(2);
    for (int i = 0; i < FLOOD_FRAME_THREADS; i++) {
        ff[i].d = &attacker;
        ff[i].pin = pin;
        ff[i].port = s.port;
        ff[i].first = i * (FLOOD_FRAMES / FLOOD_FRAME_THREADS);
        ff[i].n = FLOOD_FRAMES / FLOOD_FRAME_THREADS;
        ff[i].held = held;
        if (pthread_create(&ff[i].tid, NULL, frame_flood_main, &ff[i]))
            exit(2);
    }
    usleep(500000); /* under way */
    ok = legit_round(ls, FLOOD_SYNCS, "during the frame flood");
    for (int i = 0; i < FLOOD_FRAME_THREADS; i++) {
        pthread_join(ff[i].tid, NULL);
        sent += ff[i].sent;
    }
    hwm = vm_kib(s.pid, "VmHWM");
    fprintf(stderr, "test_server: frame flood: %d connections took a frame, "
            "%d of %d syncs ok meanwhile, server peak %ld KiB (%.1f s)\n",
            sent, ok, FLOOD_SYNCS, hwm, (double)(now_ms() - t0) / 1e3);
    CHECK(sent >= FLOOD_FRAMES / 2); /* the attack did take place */
    CHECK(ok * 100 >= FLOOD_SYNCS * 95);
    CHECK(hwm > 0 && (hwm < FLOOD_RSS_KIB || !FLOOD_CHECK_RSS));
    CHECK(flood_log_count(&s, "over its device's memory budget") >=
          FLOOD_FRAMES / 2);
    for (int i = 0; i < FLOOD_FRAMES; i++)
        fv_tls_close(held[i]);
    free(held);
    usleep(1000000); /* the server closes them */

    /* 2. Sockets: 2,000 idle ones, reopened as fast as they are dropped;
     * the pre-auth slots go to the clients that talk. */
    t0 = now_ms();
    memset(&sf, 0, sizeof sf);
    sf.port = atoi(s.port);
    atomic_init(&sf.stop, 0);
    if (pthread_create(&sf.tid, NULL, socket_flood_main, &sf))
        exit(2);
    usleep(500000);
    ok = legit_round(ls, FLOOD_SYNCS, "during the socket flood");
    atomic_store(&sf.stop, 1);
    pthread_join(sf.tid, NULL);
    fprintf(stderr, "test_server: socket flood: %ld sockets opened, %d of %d "
            "syncs ok meanwhile (%.1f s)\n", sf.opened, ok, FLOOD_SYNCS,
            (double)(now_ms() - t0) / 1e3);
    CHECK(sf.opened > FLOOD_SOCKETS);
    CHECK(ok * 100 >= FLOOD_SYNCS * 95);
    CHECK(flood_log_count(&s, "to make room") >= 1);
stop:
    CHECK_EQ(flood_stop_server(&s), 0);

    /* 3. The same flood against a server that has 8 descriptors left once
     * it listens (200 at most, the rest taken): it says so once per burst,
     * makes room from the idle connections, and serves. */
    t0 = now_ms();
    if (flood_start(&s, 200, 8, 0, 0) != 0) {
        CHECK(!"the server did not start");
        goto out;
    }
    for (int i = 0; i < FLOOD_SYNCS; i++)
        ls[i].addr = s.addr;
    fds0 = fd_count(s.pid);
    memset(&sf, 0, sizeof sf);
    sf.port = atoi(s.port);
    atomic_init(&sf.stop, 0);
    if (pthread_create(&sf.tid, NULL, socket_flood_main, &sf))
        exit(2);
    usleep(500000);
    ok = legit_round(ls, FLOOD_SYNCS, "out of descriptors");
    atomic_store(&sf.stop, 1);
    pthread_join(sf.tid, NULL);
    /* Right after the flood: its closed sockets still fill the listen
     * queue ahead of the devices, and every descriptor but 8 is taken. */
    after = legit_round(ls, FLOOD_SYNCS, "after the flood");
    {
        int bursts = flood_log_count(&s, "too many open files");
        int ends = flood_log_count(&s, "accepting again");
        int fds = fd_count(s.pid);
        /* The server's side of the last connections closes as it reads
         * their end: a few seconds at most. */
        for (int k = 0; k < 100 && fds > fds0; k++) {
            usleep(100000);
            fds = fd_count(s.pid);
        }
        fprintf(stderr, "test_server: out of descriptors: %d of %d syncs ok "
                "during the flood, %d of %d right after it, %d bursts "
                "logged, %d descriptors open (%d before) (%.1f s)\n", ok,
                FLOOD_SYNCS, after, FLOOD_SYNCS, bursts, fds, fds0,
                (double)(now_ms() - t0) / 1e3);
        /* Degraded, not down: with 8 descriptors for everything, a client
         * whose ClientHello is late can lose its slot to the flood (how
         * many do moves with the machine's load: 14 to 29 of 29 seen). */
        CHECK(ok * 3 >= FLOOD_SYNCS);
        /* Once the flood stops, the devices are served in their turn:
         * none loses its slot mid-handshake to the next one (which
         * let 6 or 7 of 29 through), and the flood leaves no descriptor
         * or slot behind. 29 of 29 seen on a loaded machine; at least
         * 25 asked. */
        CHECK(after >= FLOOD_SYNCS - 4);
        CHECK(fds0 > 0 && fds == fds0);
        CHECK(bursts >= 1);
        CHECK(bursts <= ends + 1); /* once per burst, not per connection */
    }
    CHECK_EQ(flood_stop_server(&s), 0);
out:
    for (int i = 0; i < FLOOD_SYNCS; i++)
        fv_vault_close(ls[i].v);
    rm_rf(top);
}

/* ---- attachment chunks ------------------------------------------------ */

/* Chunk bytes: a splitmix64 stream from `seed`, so that a test can make
 * them again instead of keeping them (the server cannot decrypt: any bytes
 * do, named by their BLAKE2b-256). */
static void chunk_fill(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        size_t k = n - i < 8 ? n - i : 8;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        memcpy(p + i, &z, k);
    }
}

/* An envelope by d, sealed to `recips`, listing `hashes` as natt
 * attachments of counts[] chunks. *out is malloc'd. */
static unsigned char *make_env_att(const device *d,
                                   const unsigned char (*recips)[32],
                                   size_t nrecips, const uint64_t *counts,
                                   size_t natt,
                                   const unsigned char (*hashes)[32],
                                   size_t *len, unsigned char id[32])
{
    static const unsigned char payload[] = {0xa1, 0x01, 0x02};
    unsigned char *out = NULL;
    fv_env_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = FV_ENV_REVISION;
    sp.payload = payload;
    sp.payload_len = sizeof payload;
    sp.recipients = recips;
    sp.nrecipients = nrecips;
    sp.chunk_counts = counts;
    sp.nattachments = natt;
    sp.chunks = hashes;
    sp.sign_pk = d->pk;
    sp.sign_sk = d->sk;
    if (fv_env_build(&out, len, id, &sp) != FV_OK)
        exit(2);
    return out;
}

static void c_put(fv_out *o, const unsigned char hash[32],
                  const unsigned char *data, size_t len)
{
    CHECK_EQ(fv_send_chunk(o, FV_MSG_CHUNK_PUT, hash, data, len), FV_OK);
}

static void c_hashes(fv_out *o, int type, const unsigned char (*h)[32],
                     const size_t *idx, size_t n)
{
    const unsigned char *p[FV_PROTO_MAX_QUERY];
    for (size_t i = 0; i < n; i++)
        p[i] = h[idx[i]];
    CHECK_EQ(fv_send_hashes(o, type, p, n), FV_OK);
}

/* How many of the hashes in ACK frames of b are `hash`. */
static int acks_of(const buf *b, const unsigned char hash[32])
{
    size_t off = 0;
    fv_msg m;
    int n = 0;
    while (next_msg(b, &off, &m))
        if (m.type == FV_MSG_CHUNK_ACK)
            for (size_t i = 0; i < m.u.hashes.n; i++)
                n += memcmp(m.u.hashes.hash[i], hash, 32) == 0;
    return n;
}

static size_t acks_total(const buf *b)
{
    size_t off = 0, n = 0;
    fv_msg m;
    while (next_msg(b, &off, &m))
        if (m.type == FV_MSG_CHUNK_ACK)
            n += m.u.hashes.n;
    return n;
}

/* The bits of the last CHUNK-HAVE in b, as a string of 0 and 1 ("" if
 * none). */
static const char *have_bits(const buf *b, size_t n)
{
    static char s[FV_PROTO_MAX_QUERY + 1];
    size_t off = 0;
    fv_msg m;
    s[0] = '\0';
    while (next_msg(b, &off, &m))
        if (m.type == FV_MSG_CHUNK_HAVE && m.u.have.len == (n + 7) / 8) {
            for (size_t i = 0; i < n; i++)
                s[i] = (m.u.have.bits[i / 8] >> (i % 8)) & 1 ? '1' : '0';
            s[n] = '\0';
        }
    return s;
}

/* One session of d: HELLO, a CHUNK-QUERY of h[idx[0..n)], BYE; the bits. */
static const char *query(harness *h, const device *d,
                         const unsigned char (*hs)[32], const size_t *idx,
                         size_t n)
{
    fv_out o;
    buf out = {0};
    static char s[FV_PROTO_MAX_QUERY + 1];
    fv_out_init(&o);
    c_hello(&o, d, h->pin, binding_a, NULL);
    c_hashes(&o, FV_MSG_CHUNK_QUERY, hs, idx, n);
    fv_send_simple(&o, FV_MSG_BYE);
    session(h, binding_a, &o, &out);
    snprintf(s, sizeof s, "%s", have_bits(&out, n));
    fv_out_free(&o);
    buf_free(&out);
    return s;
}

/* The bytes of every file in DIR/chunks (-1 if there is no such
 * directory), and how many packs. */
static long long pack_bytes(const char *dir, int *npacks)
{
    char path[256];
    long long total = 0;
    struct stat sb;
    int n = 0;
    for (int i = 1; i < 100; i++) {
        snprintf(path, sizeof path, "%s/chunks/pack-%06d", dir, i);
        if (stat(path, &sb) != 0)
            break;
        total += sb.st_size;
        n++;
    }
    snprintf(path, sizeof path, "%s/chunks", dir);
    if (npacks)
        *npacks = n;
    return stat(path, &sb) == 0 ? total : -1;
}

/* Checks the CHUNK frames of b against what was asked (idx into hs[]) and
 * what should come back: data[i] (len[i]) or NULL for "not held". */
static void check_chunks(const buf *b, const unsigned char (*hs)[32],
                         const size_t *idx, size_t n,
                         unsigned char *const *data, const size_t *len,
                         const int *expect)
{
    size_t off = 0, k = 0;
    fv_msg m;
    while (next_msg(b, &off, &m)) {
        if (m.type != FV_MSG_CHUNK)
            continue;
        CHECK(k < n);
        if (k >= n)
            return;
        CHECK(memcmp(m.u.chunk.hash, hs[idx[k]], 32) == 0);
        if (expect[k]) {
            CHECK(m.u.chunk.data != NULL);
            CHECK(m.u.chunk.data && m.u.chunk.len == len[idx[k]] &&
                  memcmp(m.u.chunk.data, data[idx[k]], m.u.chunk.len) == 0);
        } else {
            CHECK(m.u.chunk.data == NULL);
        }
        k++;
    }
    CHECK_EQ(k, n);
}

#define NCH 14

static void test_chunks(void)
{
    harness h;
    device admin, a, b;
    unsigned char token[16], hs[NCH][32], ids[6][32];
    unsigned char *data[NCH], *env[6];
    size_t len[NCH], elen[6];
    static const size_t sizes[NCH] = {
        FV_CHUNK_BYTES + 16, 1000, 16, 70000, FV_CHUNK_BYTES + 16, 17,
        FV_CHUNK_BYTES + 16, 5000, FV_CHUNK_BYTES + 16, 4096,
        3000, 999, 123456, 64};
    char path[256];
    struct stat sb;
    long long before;
    fv_out o;
    buf out = {0};
    int npacks = 0;

    harness_open(&h);
    device_new(&admin);
    device_new(&a);
    device_new(&b);
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "a", FV_ROLE_FIELD, token) &&
          enroll(&h, &a, token));
    CHECK(make_invite(&h, &admin, "b", FV_ROLE_FIELD, token) &&
          enroll(&h, &b, token));
    for (int i = 0; i < NCH; i++) {
        len[i] = sizes[i];
        data[i] = xmalloc(len[i]);
        chunk_fill(data[i], len[i], (uint64_t)i + 1);
        fv_hash(hs[i], data[i], len[i]);
    }
    /* A's record: chunks 0-5 in two attachments; another of A's lists
     * 6-9; B's lists 10; chunk 11 is listed by no one; 12 comes in a
     * bundle (below); 13 is listed by A, put by the coordinator. */
    {
        uint64_t c1[2] = {4, 2}, c2[1] = {4}, c3[1] = {1}, c6[1] = {1};
        env[0] = make_env_att(&a, (const unsigned char(*)[32])a.box, 1, c1, 2,
                              (const unsigned char(*)[32])hs[0], &elen[0],
                              ids[0]);
        env[1] = make_env_att(&a, (const unsigned char(*)[32])a.box, 1, c2, 1,
                              (const unsigned char(*)[32])hs[6], &elen[1],
                              ids[1]);
        env[2] = make_env_att(&b, (const unsigned char(*)[32])b.box, 1, c3, 1,
                              (const unsigned char(*)[32])hs[10], &elen[2],
                              ids[2]);
        env[5] = make_env_att(&a, (const unsigned char(*)[32])a.box, 1, c6, 1,
                              (const unsigned char(*)[32])hs[13], &elen[5],
                              ids[5]);
    }
    /* Before any envelope lists them: nothing held, nothing accepted. */
    {
        size_t idx[2] = {0, 11};
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 2),
                     "00") == 0);
    }
    /* Push, then query in the same flight: none held yet. */
    {
        size_t idx[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
        fv_out_init(&o);
        c_hello(&o, &a, h.pin, binding_a, NULL);
        fv_send_push(&o, (const unsigned char *const *)env, elen, 2);
        c_hashes(&o, FV_MSG_CHUNK_QUERY, (const unsigned char(*)[32])hs, idx,
                 10);
        fv_send_simple(&o, FV_MSG_BYE);
        CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
        CHECK(strcmp(types(&out), "16,17,23") == 0);
        CHECK(strcmp(have_bits(&out, 10), "0000000000") == 0);
        fv_out_free(&o);
        push_envs(&h, &b, &env[2], &elen[2], 1);
        push_envs(&h, &a, &env[5], &elen[5], 1);
    }
    CHECK_EQ(pack_bytes(h.dir, NULL), -1); /* made when first needed */

    /* Put all six: each acknowledged once, then a query sees them all. */
    {
        size_t idx[6] = {0, 1, 2, 3, 4, 5};
        long long total = 0;
        fv_out_init(&o);
        c_hello(&o, &a, h.pin, binding_a, NULL);
        for (int i = 0; i < 6; i++) {
            c_put(&o, hs[i], data[i], len[i]);
            total += (long long)len[i];
        }
        c_hashes(&o, FV_MSG_CHUNK_QUERY, (const unsigned char(*)[32])hs, idx,
                 6);
        fv_send_simple(&o, FV_MSG_BYE);
        CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
        CHECK_EQ(last_error(&out), 0);
        for (int i = 0; i < 6; i++)
            CHECK_EQ(acks_of(&out, hs[i]), 1);
        CHECK_EQ(acks_total(&out), 6);
        CHECK(strcmp(have_bits(&out, 6), "111111") == 0);
        /* the HAVE comes after every ACK: replies keep the request order */
        {
            const char *t = types(&out);
            CHECK(strncmp(t, "16,24", 5) == 0 &&
                  strcmp(t + strlen(t) - 3, ",23") == 0);
        }
        fv_out_free(&o);
        CHECK_EQ(pack_bytes(h.dir, &npacks), total);
        CHECK_EQ(npacks, 1);
        snprintf(path, sizeof path, "%s/chunks", h.dir);
        CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0700);
        snprintf(path, sizeof path, "%s/chunks/pack-000001", h.dir);
        CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
        /* and a later connection's query too */
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 6),
                     "111111") == 0);
    }
    before = pack_bytes(h.dir, NULL);

    /* Again: acknowledged, not written twice (also twice in one batch). */
    fv_out_init(&o);
    c_hello(&o, &a, h.pin, binding_a, NULL);
    c_put(&o, hs[0], data[0], len[0]);
    c_put(&o, hs[1], data[1], len[1]);
    c_put(&o, hs[1], data[1], len[1]);
    fv_send_simple(&o, FV_MSG_BYE);
    {
        fv_srv_conn *c = NULL;
        size_t n;
        const unsigned char *p = fv_out_pending(&o, &n);
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 900), FV_OK);
        out.len = 0;
        CHECK_EQ(fv_srv_conn_recv(c, p, n), n); /* one call: one batch */
        drain(c, &out, 1 << 20);
        fv_srv_conn_free(c);
    }
    CHECK(strcmp(types(&out), "16,24") == 0);
    CHECK_EQ(acks_of(&out, hs[0]), 1);
    CHECK_EQ(acks_of(&out, hs[1]), 2);
    CHECK_EQ(pack_bytes(h.dir, NULL), before);
    fv_out_free(&o);

    /* Refused, with ERROR rejected: a chunk no envelope lists; data that
     * does not hash to the name; another field device's chunk; nothing is
     * written. Before HELLO, a put is malformed. */
    {
        struct {
            const device *d;
            const unsigned char *hash;
            int chunk;
            int code;
        } bad[5];
        int nb = 0;
        bad[nb].d = &a, bad[nb].hash = hs[11], bad[nb].chunk = 11,
        bad[nb++].code = FV_PERR_REJECTED;
        bad[nb].d = &a, bad[nb].hash = hs[7], bad[nb].chunk = 6,
        bad[nb++].code = FV_PERR_REJECTED;
        bad[nb].d = &b, bad[nb].hash = hs[7], bad[nb].chunk = 7,
        bad[nb++].code = FV_PERR_REJECTED;
        bad[nb].d = &b, bad[nb].hash = hs[0], bad[nb].chunk = 0,
        bad[nb++].code = FV_PERR_REJECTED; /* even one held already */
        bad[nb].d = NULL, bad[nb].hash = hs[7], bad[nb].chunk = 7,
        bad[nb++].code = FV_PERR_MALFORMED;
        for (int i = 0; i < nb; i++) {
            fv_out_init(&o);
            if (bad[i].d)
                c_hello(&o, bad[i].d, h.pin, binding_a, NULL);
            c_put(&o, bad[i].hash, data[bad[i].chunk], len[bad[i].chunk]);
            fv_send_simple(&o, FV_MSG_BYE);
            CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
            CHECK(strcmp(types(&out), bad[i].d ? "16,31" : "31") == 0);
            CHECK_EQ(last_error(&out), bad[i].code);
            fv_out_free(&o);
        }
        CHECK_EQ(pack_bytes(h.dir, NULL), before);
    }

    /* A good chunk before a bad one: stored, and acknowledged before the
     * ERROR. */
    fv_out_init(&o);
    c_hello(&o, &a, h.pin, binding_a, NULL);
    c_put(&o, hs[9], data[9], len[9]);
    c_put(&o, hs[11], data[11], len[11]);
    {
        fv_srv_conn *c = NULL;
        size_t n, idx[1] = {9};
        const unsigned char *p = fv_out_pending(&o, &n);
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 901), FV_OK);
        out.len = 0;
        fv_srv_conn_recv_more(c, p, n);
        drain(c, &out, 1 << 20);
        CHECK(strcmp(types(&out), "16,24,31") == 0);
        CHECK_EQ(acks_of(&out, hs[9]), 1);
        CHECK_EQ(last_error(&out), FV_PERR_REJECTED);
        fv_srv_conn_free(c);
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 1),
                     "1") == 0);
    }
    fv_out_free(&o);

    /* Batching: with more input at hand, chunks wait (no ACK) until a
     * flush; fv_srv_conn_flush then acknowledges them. */
    before = pack_bytes(h.dir, NULL);
    fv_out_init(&o);
    c_hello(&o, &a, h.pin, binding_a, NULL);
    c_put(&o, hs[13], data[13], len[13]);
    {
        fv_srv_conn *c = NULL;
        size_t n;
        const unsigned char *p = fv_out_pending(&o, &n);
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 902), FV_OK);
        out.len = 0;
        CHECK_EQ(fv_srv_conn_recv_more(c, p, n), n);
        drain(c, &out, 1 << 20);
        CHECK(strcmp(types(&out), "16") == 0);
        CHECK_EQ(pack_bytes(h.dir, NULL), before + (long long)len[13]);
        CHECK_EQ(fv_srv_conn_flush(c), 1);
        drain(c, &out, 1 << 20);
        CHECK(strcmp(types(&out), "16,24") == 0);
        CHECK_EQ(acks_of(&out, hs[13]), 1);
        CHECK_EQ(fv_srv_conn_flush(c), 0); /* nothing pending */
        fv_srv_conn_free(c);
    }
    fv_out_free(&o);

    /* A connection cut in the middle of a put: the whole chunks before it
     * are kept (made durable when the connection is freed), the cut one
     * is not. */
    fv_out_init(&o);
    c_hello(&o, &a, h.pin, binding_a, NULL);
    c_put(&o, hs[6], data[6], len[6]);
    c_put(&o, hs[7], data[7], len[7]);
    c_put(&o, hs[8], data[8], len[8]);
    {
        fv_srv_conn *c = NULL;
        size_t n, idx[3] = {6, 7, 8};
        const unsigned char *p = fv_out_pending(&o, &n);
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 903), FV_OK);
        out.len = 0;
        n -= len[8] / 2; /* half of the last frame */
        CHECK_EQ(fv_srv_conn_recv_more(c, p, n), n);
        drain(c, &out, 1 << 20);
        CHECK(strcmp(types(&out), "16") == 0); /* no ACK yet */
        CHECK(fv_srv_conn_in_frame(c));
        fv_srv_conn_free(c);
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 3),
                     "110") == 0);
    }
    fv_out_free(&o);

    /* The coordinator may upload any listed chunk (here one of A's). */
    {
        size_t idx[1] = {8};
        fv_out_init(&o);
        c_hello(&o, &admin, h.pin, binding_a, NULL);
        c_put(&o, hs[8], data[8], len[8]);
        fv_send_simple(&o, FV_MSG_BYE);
        session(&h, binding_a, &o, &out);
        CHECK(strcmp(types(&out), "16,24") == 0);
        fv_out_free(&o);
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 1),
                     "1") == 0);
    }

    /* Downloads. The coordinator: the exact bytes of any chunk held, null
     * for one not held yet (10: B has not uploaded it) or unknown (11). */
    {
        size_t idx[8] = {0, 1, 2, 3, 4, 5, 10, 11};
        int expect[8] = {1, 1, 1, 1, 1, 1, 0, 0};
        fv_out_init(&o);
        c_hello(&o, &admin, h.pin, binding_a, NULL);
        c_hashes(&o, FV_MSG_CHUNK_GET, (const unsigned char(*)[32])hs, idx, 8);
        fv_send_simple(&o, FV_MSG_BYE);
        CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
        CHECK(strcmp(types(&out), "16,25,25,25,25,25,25,25,25") == 0);
        check_chunks(&out, (const unsigned char(*)[32])hs, idx, 8, data, len,
                     expect);
        fv_out_free(&o);
    }
    /* B uploads its own chunk. */
    fv_out_init(&o);
    c_hello(&o, &b, h.pin, binding_a, NULL);
    c_put(&o, hs[10], data[10], len[10]);
    fv_send_simple(&o, FV_MSG_BYE);
    session(&h, binding_a, &o, &out);
    CHECK(strcmp(types(&out), "16,24") == 0);
    fv_out_free(&o);
    /* Field devices: their own chunks, and not another's (null, as if not
     * held: existence is not revealed); queries likewise. */
    {
        size_t idx[4] = {0, 1, 10, 11};
        int exp_b[4] = {0, 0, 1, 0}, exp_a[4] = {1, 1, 0, 0};
        int exp_c[4] = {1, 1, 1, 0};
        const device *who[3] = {&b, &a, &admin};
        const int *exp[3] = {exp_b, exp_a, exp_c};
        for (int w = 0; w < 3; w++) {
            fv_out_init(&o);
            c_hello(&o, who[w], h.pin, binding_a, NULL);
            c_hashes(&o, FV_MSG_CHUNK_GET, (const unsigned char(*)[32])hs, idx,
                     4);
            fv_send_simple(&o, FV_MSG_BYE);
            session(&h, binding_a, &o, &out);
            check_chunks(&out, (const unsigned char(*)[32])hs, idx, 4, data,
                         len, exp[w]);
            fv_out_free(&o);
        }
        CHECK(strcmp(query(&h, &b, (const unsigned char(*)[32])hs, idx, 4),
                     "0010") == 0);
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 4),
                     "1100") == 0);
        CHECK(strcmp(query(&h, &admin, (const unsigned char(*)[32])hs, idx,
                           4),
                     "1110") == 0);
    }
    /* What the organisation sends B (in B's feed) B may get: here a
     * coordinator's record that reuses two of A's chunks. */
    {
        uint64_t c4[1] = {2};
        size_t idx[3] = {0, 1, 2};
        int expect[3] = {1, 1, 0};
        env[3] = make_env_att(&admin, (const unsigned char(*)[32])b.box, 1, c4,
                              1, (const unsigned char(*)[32])hs[0], &elen[3],
                              ids[3]);
        push_envs(&h, &admin, &env[3], &elen[3], 1);
        CHECK(strcmp(query(&h, &b, (const unsigned char(*)[32])hs, idx, 3),
                     "110") == 0);
        fv_out_init(&o);
        c_hello(&o, &b, h.pin, binding_a, NULL);
        c_hashes(&o, FV_MSG_CHUNK_GET, (const unsigned char(*)[32])hs, idx, 3);
        fv_send_simple(&o, FV_MSG_BYE);
        session(&h, binding_a, &o, &out);
        check_chunks(&out, (const unsigned char(*)[32])hs, idx, 3, data, len,
                     expect);
        fv_out_free(&o);
    }
    /* Before HELLO, a query or a get is refused like any frame. */
    {
        size_t idx[1] = {0};
        fv_out_init(&o);
        c_hashes(&o, FV_MSG_CHUNK_GET, (const unsigned char(*)[32])hs, idx, 1);
        CHECK_EQ(session(&h, binding_a, &o, &out), FV_SRV_CLOSING);
        CHECK(strcmp(types(&out), "31") == 0);
        fv_out_free(&o);
    }

    /* A courier bundle's envelopes record their chunks too; and a full
     * pack gives way to the next one, both still read. */
    {
        uint64_t c5[1] = {1};
        size_t added = 0, idx[3] = {12, 0, 4};
        int expect[3] = {1, 1, 1};
        env[4] = make_env_att(&a, (const unsigned char(*)[32])a.box, 1, c5, 1,
                              (const unsigned char(*)[32])hs[12], &elen[4],
                              ids[4]);
        CHECK_EQ(fv_srv_store_batch(h.srv, NULL,
                                    (const unsigned char *const *)&env[4],
                                    &elen[4], 1, NULL, &added),
                 FV_OK);
        CHECK_EQ(added, 1);
        fv_sstore_chunk_set_pack_max(h.st, 1u << 20);
        fv_out_init(&o);
        c_hello(&o, &a, h.pin, binding_a, NULL);
        c_put(&o, hs[12], data[12], len[12]);
        c_hashes(&o, FV_MSG_CHUNK_GET, (const unsigned char(*)[32])hs, idx, 3);
        fv_send_simple(&o, FV_MSG_BYE);
        session(&h, binding_a, &o, &out);
        CHECK(strcmp(types(&out), "16,24,25,25,25") == 0);
        check_chunks(&out, (const unsigned char(*)[32])hs, idx, 3, data, len,
                     expect);
        fv_out_free(&o);
        pack_bytes(h.dir, &npacks);
        CHECK_EQ(npacks, 2);
        snprintf(path, sizeof path, "%s/chunks/pack-000002", h.dir);
        CHECK(stat(path, &sb) == 0 && sb.st_size == (off_t)len[12] &&
              (sb.st_mode & 0777) == 0600);
        fv_sstore_chunk_set_pack_max(h.st, 0);
    }
    /* A new handle on the same directory appends to the last pack and
     * reads the older ones. */
    {
        fv_sstore *st2 = NULL;
        fv_sstore_chunkloc loc;
        unsigned char *back = xmalloc(len[12]);
        CHECK_EQ(fv_sstore_open(&st2, h.db, 0), FV_OK);
        if (st2) {
            CHECK_EQ(fv_sstore_chunk_find(st2, hs[12], NULL, &loc), FV_OK);
            CHECK_EQ(loc.pack, 2);
            CHECK_EQ(fv_sstore_chunk_read(st2, &loc, back), FV_OK);
            CHECK(memcmp(back, data[12], len[12]) == 0);
            CHECK_EQ(fv_sstore_chunk_find(st2, hs[12], b.pk, &loc),
                     FV_ENOTFOUND);
            CHECK_EQ(fv_sstore_chunk_find(st2, hs[12], a.pk, &loc), FV_OK);
            CHECK_EQ(fv_sstore_chunk_append(st2, data[2], len[2], &loc),
                     FV_OK);
            CHECK_EQ(loc.pack, 2);
            CHECK_EQ(loc.off, len[12]);
            CHECK_EQ(fv_sstore_chunk_sync(st2), FV_OK);
            fv_sstore_close(st2);
        }
        free(back);
    }

    buf_free(&out);
    for (int i = 0; i < NCH; i++)
        free(data[i]);
    for (int i = 0; i < 6; i++)
        free(env[i]);
    harness_close(&h);
}

/* Peak resident memory so far, in KiB. */
static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double secs(int64_t ms) { return (double)ms / 1000.0; }

/* A 50 MB attachment (200 chunks of 256 KiB; FV_TEST_CHUNK_MB sets the
 * size) through the engine, up from a field device and down to the
 * coordinator, in memory that does not grow with it. Prints the engine's
 * upload rate (put + durable batches; no TLS). */
static void test_chunks_big(void)
{
    harness h;
    device admin, a;
    unsigned char token[16], id[32], (*hs)[32];
    unsigned char *data, *env;
    size_t clen = FV_CHUNK_BYTES + 16, nchunks = 200, elen, acked = 0;
    size_t early = 0;
    const char *mb = getenv("FV_TEST_CHUNK_MB");
    long rss0, rss1;
    int64_t t_put = 0, t0;
    fv_srv_conn *c = NULL;
    fv_out o;
    buf out = {0};

    if (mb && strtol(mb, NULL, 10) > 0)
        nchunks = (size_t)strtol(mb, NULL, 10) * 4;
    harness_open(&h);
    device_new(&admin);
    device_new(&a);
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "a", FV_ROLE_FIELD, token) &&
          enroll(&h, &a, token));
    hs = xmalloc(nchunks * 32);
    data = xmalloc(clen);
    for (size_t i = 0; i < nchunks; i++) {
        chunk_fill(data, clen, 1000 + i);
        fv_hash(hs[i], data, clen);
    }
    {
        uint64_t count = nchunks;
        env = make_env_att(&a, (const unsigned char(*)[32])a.box, 1, &count, 1,
                           (const unsigned char(*)[32])hs, &elen, id);
    }
    push_envs(&h, &a, &env, &elen, 1);
    rss0 = peak_rss_kib();

    /* Up: frames fed 4 MiB at a time, as more input at hand (the event
     * loop's way); batches close at FV_SRV_CHUNK_BATCH by themselves. */
    CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 910), FV_OK);
    fv_out_init(&o);
    c_hello(&o, &a, h.pin, binding_a, NULL);
    for (size_t i = 0; i <= nchunks; i++) {
        size_t n;
        const unsigned char *p;
        if (i < nchunks) {
            chunk_fill(data, clen, 1000 + i);
            c_put(&o, hs[i], data, clen);
        }
        if (fv_out_size(&o) < (4u << 20) && i < nchunks)
            continue;
        p = fv_out_pending(&o, &n);
        t0 = now_ms();
        CHECK_EQ(fv_srv_conn_recv_more(c, p, n), n);
        if (i == nchunks)
            fv_srv_conn_flush(c);
        t_put += now_ms() - t0;
        out.len = 0;
        drain(c, &out, 1 << 20);
        acked += acks_total(&out);
        if (i < nchunks)
            early = acked;
        CHECK_EQ(last_error(&out), 0);
        fv_out_ack(&o, n);
    }
    fv_out_free(&o);
    fv_srv_conn_free(c);
    CHECK_EQ(acked, nchunks);
    CHECK(early > 0); /* full batches were acknowledged on the way */
    CHECK_EQ(pack_bytes(h.dir, NULL), (long long)(nchunks * clen));
    printf("test_server: chunk upload through the engine: %.0f MB/s "
           "(%zu MB: put, hash check, write, fdatasync + index per batch)\n",
           (double)(nchunks * clen) / 1e6 / secs(t_put > 0 ? t_put : 1),
           nchunks * clen / 1000000);

    /* Down: the coordinator asks for 64 at a time; the engine produces
     * CHUNK frames as its output drains, never queueing much. */
    CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 911), FV_OK);
    fv_out_init(&o);
    c_hello(&o, &admin, h.pin, binding_a, NULL);
    for (size_t i = 0; i < nchunks; i += FV_PROTO_MAX_GET) {
        const unsigned char *hp[FV_PROTO_MAX_GET];
        size_t k = nchunks - i < FV_PROTO_MAX_GET ? nchunks - i
                                                  : FV_PROTO_MAX_GET;
        for (size_t j = 0; j < k; j++)
            hp[j] = hs[i + j];
        CHECK_EQ(fv_send_hashes(&o, FV_MSG_CHUNK_GET, hp, k), FV_OK);
    }
    fv_send_simple(&o, FV_MSG_BYE);
    {
        size_t n, off = 0, got = 0, maxq = 0, fed = 0;
        const unsigned char *p = fv_out_pending(&o, &n);
        buf in = {0};
        int bad = 0;
        t0 = now_ms();
        while (fv_srv_conn_state(c) == FV_SRV_RUNNING ||
               fv_srv_conn_send_buf(c, &off) != NULL) {
            size_t q;
            const unsigned char *s;
            if (fed < n && fv_srv_conn_state(c) == FV_SRV_RUNNING)
                fed += fv_srv_conn_recv(c, p + fed, n - fed);
            s = fv_srv_conn_send_buf(c, &q);
            if (q > maxq)
                maxq = q;
            if (!s)
                break;
            if (q > 256u << 10)
                q = 256u << 10;
            buf_add(&in, s, q);
            fv_srv_conn_send_ack(c, q);
            /* Whole frames: check and drop them. */
            off = 0;
            for (;;) {
                fv_msg m;
                size_t before = off;
                if (!next_msg(&in, &off, &m))
                    break;
                if (m.type == FV_MSG_CHUNK) {
                    if (!m.u.chunk.data || m.u.chunk.len != clen ||
                        got >= nchunks ||
                        memcmp(m.u.chunk.hash, hs[got], 32) != 0) {
                        bad++;
                    } else {
                        chunk_fill(data, clen, 1000 + got);
                        bad += memcmp(data, m.u.chunk.data, clen) != 0;
                    }
                    got++;
                } else if (m.type != FV_MSG_WELCOME) {
                    bad++;
                }
                (void)before;
            }
            memmove(in.p, in.p + off, in.len - off);
            in.len -= off;
        }
        CHECK_EQ(got, nchunks);
        CHECK_EQ(bad, 0);
        CHECK(maxq <= FV_SRV_OUT_LOW + clen + 64);
        CHECK_EQ(fv_srv_conn_state(c), FV_SRV_CLOSING);
        if (getenv("FV_TEST_VERBOSE"))
            printf("test_server: chunk download through the engine: "
                   "%.0f MB/s\n",
                   (double)(nchunks * clen) / 1e6 /
                       secs(now_ms() - t0 > 0 ? now_ms() - t0 : 1));
        buf_free(&in);
    }
    fv_out_free(&o);
    fv_srv_conn_free(c);
    rss1 = peak_rss_kib();
    if (getenv("FV_TEST_VERBOSE"))
        printf("test_server: peak RSS grew by %ld KiB for %zu MB\n",
               rss1 - rss0, nchunks * clen / 1000000);
#ifndef __SANITIZE_ADDRESS__
    /* The attachment is 50 MB: memory grows by a few frames and one batch
     * of index entries at most, not with it. */
    if (rss1 - rss0 >= 16 * 1024)
        fprintf(stderr, "test_server: peak RSS grew by %ld KiB\n",
                rss1 - rss0);
    CHECK(rss1 - rss0 < 16 * 1024);
#endif
    (void)rss1;
    buf_free(&out);
    free(env);
    free(hs);
    free(data);
    harness_close(&h);
}

/* Attachment chunks through fv_server_run over TLS: a flight of puts is
 * acknowledged in full; a connection cut in the middle of a put keeps the
 * whole chunks before it (the event loop's close path makes them durable);
 * a later connection finds them and gets the exact bytes back. Prints the
 * upload rate over loopback TLS (FV_TEST_CHUNK_MB sets the size). */
static void test_run_chunks(void)
{
    run_ctx r;
    char top[64], port[16], *invite = NULL, path[256];
    unsigned char pin[32], binding[32], (*hs)[32], id[32];
    unsigned char *data, *env = NULL;
    size_t clen = FV_CHUNK_BYTES + 16, k = 64, nch, elen = 0;
    const char *mb = getenv("FV_TEST_CHUNK_MB");
    fv_invite inv;
    device admin;
    pthread_t th;
    struct stat sb;

    if (mb && strtol(mb, NULL, 10) > 0)
        k = (size_t)strtol(mb, NULL, 10) * 4;
    nch = k + 3;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    make_tmpdir(top);
    snprintf(r.dir, sizeof r.dir, "%s/srv", top);
    CHECK_EQ(fv_server_init(r.dir, "127.0.0.1:0", pin, &invite), FV_OK);
    CHECK_EQ(fv_invite_decode(&inv, invite), FV_OK);
    free(invite);
    snprintf(path, sizeof path, "%s/chunks", r.dir);
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) &&
          (sb.st_mode & 0777) == 0700);
    device_new(&admin);
    hs = xmalloc(nch * 32);
    data = xmalloc(clen);
    for (size_t i = 0; i < nch; i++) {
        chunk_fill(data, clen, 5000 + i);
        fv_hash(hs[i], data, clen);
    }
    {
        uint64_t count = nch;
        env = make_env_att(&admin, (const unsigned char(*)[32])admin.box, 1,
                           &count, 1, (const unsigned char(*)[32])hs, &elen,
                           id);
    }
    run_opts_init(&r);
    if (pthread_create(&th, NULL, run_main, &r) != 0) {
        CHECK(!"pthread_create");
        goto out;
    }
    pthread_mutex_lock(&r.mu);
    while (r.port == 0)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    CHECK(r.port > 0);
    if (r.port <= 0)
        goto stop;
    snprintf(port, sizeof port, "%d", r.port);

    /* Enroll, push, put k chunks, BYE: one flight, written as it is made;
     * every chunk is acknowledged before the server closes. */
    {
        fv_tls_conn *t = NULL;
        fv_out o;
        buf got = {0};
        int64_t t0 = now_ms(), dt;
        int ok = 1;
        CHECK_EQ(fv_tls_connect(&t, "127.0.0.1", port, pin, 5000), FV_OK);
        if (t) {
            CHECK_EQ(fv_tls_binding(t, binding), FV_OK);
            fv_out_init(&o);
            c_hello(&o, &admin, pin, binding, inv.token);
            fv_send_push(&o, (const unsigned char *const *)&env, &elen, 1);
            for (size_t i = 0; i <= k && ok; i++) {
                size_t n;
                const unsigned char *p;
                if (i < k) {
                    chunk_fill(data, clen, 5000 + i);
                    c_put(&o, hs[i], data, clen);
                } else {
                    fv_send_simple(&o, FV_MSG_BYE);
                }
                p = fv_out_pending(&o, &n);
                ok = tls_write_all(t, p, n) == FV_OK;
                fv_out_ack(&o, n);
            }
            CHECK(ok);
            CHECK_EQ(tls_read_all(t, &got, 20000), FV_EEOF);
            dt = now_ms() - t0;
            CHECK(strncmp(types(&got), "16,17,24", 8) == 0);
            CHECK_EQ(acks_total(&got), k);
            CHECK_EQ(acks_of(&got, hs[k - 1]), 1);
            CHECK_EQ(last_error(&got), 0);
            printf("test_server: chunk upload over loopback TLS "
                   "(fv_server_run): %.0f MB/s (%zu MB)\n",
                   (double)(k * clen) / 1e6 / secs(dt > 0 ? dt : 1),
                   k * clen / 1000000);
            fv_out_free(&o);
            buf_free(&got);
            fv_tls_close(t);
        }
    }
    /* Two whole chunks, half of a third, and the connection is gone. */
    {
        fv_tls_conn *t = NULL;
        fv_out o;
        buf got = {0};
        CHECK_EQ(fv_tls_connect(&t, "127.0.0.1", port, pin, 5000), FV_OK);
        if (t) {
            size_t n;
            const unsigned char *p;
            CHECK_EQ(fv_tls_binding(t, binding), FV_OK);
            fv_out_init(&o);
            c_hello(&o, &admin, pin, binding, NULL);
            for (size_t i = k; i < k + 3; i++) {
                chunk_fill(data, clen, 5000 + i);
                c_put(&o, hs[i], data, clen);
            }
            p = fv_out_pending(&o, &n);
            CHECK_EQ(tls_write_all(t, p, n - clen / 2), FV_OK);
            /* FIN after the bytes; the server reads them all, then sees the
             * end in the middle of a frame and closes. */
            shutdown(fv_tls_fd(t), SHUT_WR);
            tls_read_all(t, &got, 5000);
            fv_out_free(&o);
            buf_free(&got);
            fv_tls_close(t);
        }
    }
    /* A new connection: the two are held, the cut one is not; the bytes
     * come back exact. */
    {
        fv_tls_conn *t = NULL;
        fv_out o;
        buf got = {0};
        size_t qi[3] = {k, k + 1, k + 2}, gi[3] = {0, k + 1, k + 2};
        CHECK_EQ(fv_tls_connect(&t, "127.0.0.1", port, pin, 5000), FV_OK);
        if (t) {
            size_t off = 0, nget = 0;
            fv_msg m;
            CHECK_EQ(fv_tls_binding(t, binding), FV_OK);
            fv_out_init(&o);
            c_hello(&o, &admin, pin, binding, NULL);
            c_hashes(&o, FV_MSG_CHUNK_QUERY, (const unsigned char(*)[32])hs,
                     qi, 3);
            c_hashes(&o, FV_MSG_CHUNK_GET, (const unsigned char(*)[32])hs, gi,
                     3);
            fv_send_simple(&o, FV_MSG_BYE);
            CHECK_EQ(tls_write_all(t, o.buf, o.len), FV_OK);
            CHECK_EQ(tls_read_all(t, &got, 5000), FV_EEOF);
            CHECK(strcmp(types(&got), "16,23,25,25,25") == 0);
            CHECK(strcmp(have_bits(&got, 3), "110") == 0);
            while (next_msg(&got, &off, &m)) {
                if (m.type != FV_MSG_CHUNK)
                    continue;
                CHECK(memcmp(m.u.chunk.hash, hs[gi[nget]], 32) == 0);
                if (nget < 2) {
                    chunk_fill(data, clen, 5000 + gi[nget]);
                    CHECK(m.u.chunk.data && m.u.chunk.len == clen &&
                          memcmp(m.u.chunk.data, data, clen) == 0);
                } else {
                    CHECK(m.u.chunk.data == NULL);
                }
                nget++;
            }
            fv_out_free(&o);
            buf_free(&got);
            fv_tls_close(t);
        }
    }
stop:
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, FV_OK);
out:
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    free(env);
    free(hs);
    free(data);
    rm_rf(top);
}


/* ---- notes, review states, retraction --------------------------------- */

/* An envelope of `kind` by d: a genesis (record NULL), or about `record`,
 * its one parent (as notes, review states and retractions have it), sealed
 * to recips (n), listing the nch chunks `hashes` as one attachment. */
static unsigned char *make_about(const device *d, int kind,
                                 const unsigned char *record,
                                 const unsigned char (*recips)[32], size_t n,
                                 const unsigned char (*hashes)[32], size_t nch,
                                 size_t *len, unsigned char id[32])
{
    static const unsigned char payload[] = {0xa1, 0x61, 0x74, 0x01};
    uint64_t count = nch;
    unsigned char *out = NULL;
    fv_env_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = kind;
    sp.record = record;
    sp.parents = (const unsigned char(*)[32])record;
    sp.nparents = record ? 1 : 0;
    sp.payload = payload;
    sp.payload_len = sizeof payload;
    sp.recipients = recips;
    sp.nrecipients = n;
    if (nch) {
        sp.chunk_counts = &count;
        sp.nattachments = 1;
        sp.chunks = hashes;
    }
    sp.sign_pk = d->pk;
    sp.sign_sk = d->sk;
    if (fv_env_build(&out, len, id, &sp) != FV_OK)
        exit(2);
    return out;
}

/* Pushes env[0..n) as d: 0 on a RECEIPT for all of them (their seqs into
 * seqs, may be NULL), else the ERROR code (-1 if neither came). */
/* What push_try returns for a receipt refusing an envelope (protocol 2). */
#define REFUSED(reason) (64 + (reason))

static int push_try(harness *h, const device *d, unsigned char **env,
                    size_t *len, size_t n, uint64_t *seqs)
{
    fv_out o;
    buf out = {0};
    size_t off = 0;
    fv_msg m;
    fv_receipt r;
    int res = -1;
    fv_out_init(&o);
    c_hello(&o, d, h->pin, binding_a, NULL);
    fv_send_push(&o, (const unsigned char *const *)env, len, n);
    fv_send_simple(&o, FV_MSG_BYE);
    session(h, binding_a, &o, &out);
    while (next_msg(&out, &off, &m)) {
        if (m.type == FV_MSG_RECEIPT &&
            fv_receipt_decode(&r, m.u.receipt.body, m.u.receipt.body_len) ==
                FV_OK &&
            r.n == n) {
            res = 0;
            for (size_t i = 0; seqs && i < n; i++)
                seqs[i] = r.seq[i];
            for (size_t i = 0; i < n && res == 0; i++)
                if (r.refused[i])
                    res = REFUSED(r.refused[i]);
        } else if (m.type == FV_MSG_ERROR) {
            res = (int)m.u.error.code;
        }
    }
    fv_out_free(&o);
    buf_free(&out);
    return res;
}

/* 1 if the file at path holds the n bytes `needle` (0 if there is no file). */
static int file_holds(const char *path, const unsigned char *needle, size_t n)
{
    struct stat sb;
    unsigned char *p;
    size_t len;
    int found = 0;
    if (stat(path, &sb) != 0)
        return 0;
    p = file_read(path, &len);
    for (size_t i = 0; i + n <= len && !found; i++)
        found = p[i] == needle[0] && memcmp(p + i, needle, n) == 0;
    free(p);
    return found;
}

/* 1 if server.db or its WAL holds 48 bytes from the middle of env. */
static int db_holds(const harness *h, const unsigned char *env, size_t len)
{
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", h->db);
    return file_holds(h->db, env + len / 2, 48) ||
           file_holds(wal, env + len / 2, 48);
}

static int erased_in(const pulled *r, const unsigned char id[32])
{
    for (size_t i = 0; i < r->n && i < 64; i++)
        if (memcmp(r->id[i], id, 32) == 0)
            return r->erased[i];
    return -1;
}

/* Uploads chunks idx[0..n) of data/hs as d; the number of CHUNK-ACKs. */
static size_t put_chunks(harness *h, const device *d, unsigned char **data,
                         const size_t *len, const unsigned char (*hs)[32],
                         const size_t *idx, size_t n)
{
    fv_out o;
    buf out = {0};
    size_t acks;
    fv_out_init(&o);
    c_hello(&o, d, h->pin, binding_a, NULL);
    for (size_t i = 0; i < n; i++)
        c_put(&o, hs[idx[i]], data[idx[i]], len[idx[i]]);
    fv_send_simple(&o, FV_MSG_BYE);
    session(h, binding_a, &o, &out);
    acks = acks_total(&out);
    fv_out_free(&o);
    buf_free(&out);
    return acks;
}

enum {
    G1, V1, G2, G3, S1, N1, N2, C1, G4, N4, N3, R1, /* stored */
    P1, P2, P3, P4, P5, /* refused */
    V2, R1B, E1, R3, NDESK
};

/* ENTRIES with erased entries: encoded as [id], decoded back with env NULL
 * and the id; every cut prefix and a malformed erased form are refused. */
static void test_entries_erased(void)
{
    unsigned char env[40], id[32], chain[3][32];
    const unsigned char *envs[3] = {env, NULL, env}, *idp[3] = {NULL, id, NULL};
    const unsigned char *chains[3] = {chain[0], chain[1], chain[2]};
    uint64_t seq[3] = {7, 8, 9};
    size_t len[3] = {sizeof env, 0, 10}, n;
    const unsigned char *p;
    fv_out o;
    fv_msg m;

    memset(env, 0x11, sizeof env);
    memset(id, 0x22, sizeof id);
    for (int i = 0; i < 3; i++)
        memset(chain[i], 0x30 + i, 32);
    fv_out_init(&o);
    CHECK_EQ(fv_send_entries(&o, seq, envs, len, idp, chains, 3), FV_OK);
    p = fv_out_pending(&o, &n);
    CHECK(n > 4);
    CHECK_EQ(fv_msg_decode(&m, p + 4, n - 4), FV_OK);
    CHECK_EQ(m.type, FV_MSG_ENTRIES);
    CHECK_EQ(m.u.entries.n, 3);
    CHECK(m.u.entries.env[0] && m.u.entries.len[0] == sizeof env &&
          !m.u.entries.id[0]);
    CHECK(!m.u.entries.env[1] && m.u.entries.len[1] == 0 &&
          m.u.entries.id[1] && memcmp(m.u.entries.id[1], id, 32) == 0);
    CHECK(m.u.entries.env[2] && m.u.entries.len[2] == 10);
    CHECK_EQ(m.u.entries.seq[1], 8);
    CHECK(memcmp(m.u.entries.chain[1], chain[1], 32) == 0);
    for (size_t k = 0; k < n - 4; k++)
        CHECK(fv_msg_decode(&m, p + 4, k) != FV_OK);
    /* An erased entry is [id]: one id of 32 bytes, nothing else. The
     * first form here is the good one (so the others fail for their own
     * fault). */
    for (int t = 0; t < 4; t++) {
        static const size_t nids[4] = {1, 2, 1, 0}, idlen[4] = {32, 32, 31, 32};
        unsigned char *msg = NULL;
        size_t mlen = 0;
        fv_enc e;
        fv_enc_init(&e);
        fv_enc_array(&e, 2);
        fv_enc_uint(&e, FV_MSG_ENTRIES);
        fv_enc_array(&e, 1);
        fv_enc_array(&e, 3);
        fv_enc_uint(&e, 8);
        fv_enc_array(&e, nids[t]);
        for (size_t k = 0; k < nids[t]; k++)
            fv_enc_bytes(&e, id, idlen[t]);
        fv_enc_bytes(&e, chain[0], 32);
        CHECK_EQ(fv_enc_finish(&e, &msg, &mlen), FV_OK);
        CHECK_EQ(fv_msg_decode(&m, msg, mlen) == FV_OK, t == 0);
        fv_enc_free_buf(msg, mlen);
    }
    fv_out_free(&o);
}

static void test_desk(void)
{
    harness h;
    device admin, a, b, e;
    unsigned char token[16], org[32], zero[32] = {0}, unknown[32];
    unsigned char *env[NDESK], ids[NDESK][32], hs[3][32], *data[3];
    unsigned char recips[3][32];
    char pack[256];
    size_t len[NDESK], dlen[3] = {70000, 5000, 3000};
    uint64_t head, seq, seqs[2];
    struct stat sb0, sb1;
    pulled r, rb;
    int npacks;

    harness_open(&h);
    device_new(&admin);
    device_new(&a);
    device_new(&b);
    device_new(&e);
    fv_random(org, 32);
    fv_random(unknown, 32);
    CHECK(enroll(&h, &admin, h.admin_token));
    CHECK(make_invite(&h, &admin, "a", FV_ROLE_FIELD, token) &&
          enroll(&h, &a, token));
    CHECK(make_invite(&h, &admin, "b", FV_ROLE_FIELD, token) &&
          enroll(&h, &b, token));
    CHECK(make_invite(&h, &admin, "e", FV_ROLE_FIELD, token) &&
          enroll(&h, &e, token));
    for (int i = 0; i < 3; i++) {
        data[i] = xmalloc(dlen[i]);
        /* Seeds far apart: nearby ones give shifted copies of a stream. */
        chunk_fill(data[i], dlen[i], ((uint64_t)i + 77) << 40);
        fv_hash(hs[i], data[i], dlen[i]);
    }
#define SEAL(x, y, z)                                                       \
    (memcpy(recips[0], (x), 32), memcpy(recips[1], (y), 32),                \
     memcpy(recips[2], (z), 32), (const unsigned char(*)[32])recips)
#define HS(i) ((const unsigned char(*)[32])hs[i])

    /* a's records R1 (two chunks, and a revision) and R2 (one chunk); b's
     * R3. Sealed to the writer and the organisation key. */
    env[G1] = make_about(&a, FV_ENV_REVISION, NULL, SEAL(a.box, org, org), 2,
                         HS(0), 2, &len[G1], ids[G1]);
    env[V1] = make_about(&a, FV_ENV_REVISION, ids[G1], SEAL(a.box, org, org),
                         2, NULL, 0, &len[V1], ids[V1]);
    env[G2] = make_about(&a, FV_ENV_REVISION, NULL, SEAL(a.box, org, org), 2,
                         HS(2), 1, &len[G2], ids[G2]);
    env[G3] = make_about(&b, FV_ENV_REVISION, NULL, SEAL(b.box, org, org), 2,
                         NULL, 0, &len[G3], ids[G3]);
    CHECK_EQ(push_try(&h, &a, &env[G1], &len[G1], 3, NULL), 0);
    CHECK_EQ(push_try(&h, &b, &env[G3], &len[G3], 1, NULL), 0);
    {
        size_t idx[3] = {0, 1, 2};
        CHECK_EQ(put_chunks(&h, &a, data, dlen, (const unsigned char(*)[32])hs,
                            idx, 3),
                 3);
    }
    CHECK_EQ(log_head(&h), 4);

    /* Refused, the way a forbidden envelope is (ERROR rejected, nothing of
     * the batch stored): a review state from a field device, even the
     * creator; a note or retraction of a's record from b; a note about a
     * record the server does not hold, or about a revision that is not a
     * record's genesis; and a good note batched with a refused one. */
    env[P1] = make_about(&a, FV_ENV_STATE, ids[G1], SEAL(a.box, org, org), 2,
                         NULL, 0, &len[P1], ids[P1]);
    env[P2] = make_about(&b, FV_ENV_NOTE, ids[G1], SEAL(b.box, a.box, org), 3,
                         NULL, 0, &len[P2], ids[P2]);
    env[P3] = make_about(&b, FV_ENV_RETRACTION, ids[G1],
                         SEAL(b.box, a.box, org), 3, NULL, 0, &len[P3],
                         ids[P3]);
    env[P4] = make_about(&a, FV_ENV_NOTE, unknown, SEAL(a.box, org, org), 2,
                         NULL, 0, &len[P4], ids[P4]);
    env[P5] = make_about(&admin, FV_ENV_NOTE, ids[V1],
                         SEAL(admin.box, a.box, org), 3, NULL, 0, &len[P5],
                         ids[P5]);
    env[N2] = make_about(&a, FV_ENV_NOTE, ids[G1], SEAL(a.box, org, org), 2,
                         NULL, 0, &len[N2], ids[N2]);
    /* Protocol 1 fails the batch; protocol 2 refuses the envelope in the
     * receipt, with its reason. */
    for (unsigned v = 1; v <= 2; v++) {
        int deny = v == 1 ? FV_PERR_REJECTED : REFUSED(FV_REFUSE_DENIED);
        int unheld = v == 1 ? FV_PERR_REJECTED : REFUSED(FV_REFUSE_UNHELD);
        hello_max = v;
        CHECK_EQ(push_try(&h, &a, &env[P1], &len[P1], 1, NULL), deny);
        CHECK_EQ(push_try(&h, &b, &env[P2], &len[P2], 1, NULL), deny);
        CHECK_EQ(push_try(&h, &b, &env[P3], &len[P3], 1, NULL), deny);
        CHECK_EQ(push_try(&h, &a, &env[P4], &len[P4], 1, NULL), unheld);
        CHECK_EQ(push_try(&h, &admin, &env[P5], &len[P5], 1, NULL), unheld);
    }
    hello_max = 1;
    {
        unsigned char *two[2] = {env[N2], env[P1]};
        size_t l2[2] = {len[N2], len[P1]};
        CHECK_EQ(push_try(&h, &a, two, l2, 2, NULL), FV_PERR_REJECTED);
    }
    hello_max = FV_PROTOCOL_VERSION;
    CHECK_EQ(log_head(&h), 4);
    CHECK_EQ(fv_sstore_log_find(h.st, ids[N2], &seq), FV_ENOTFOUND);
    /* A courier bundle is held to the same rules. */
    CHECK_EQ(fv_srv_store_batch(h.srv, a.pk,
                                (const unsigned char *const *)&env[P1],
                                &len[P1], 1, NULL, NULL),
             FV_EDENIED);
    CHECK_EQ(fv_srv_store_batch(h.srv, NULL,
                                (const unsigned char *const *)&env[P2],
                                &len[P2], 1, NULL, NULL),
             FV_EDENIED);
    CHECK_EQ(log_head(&h), 4);

    /* A record retracted before the server held it: the retraction is
     * acknowledged at 0 and its id remembered (nothing else), so that the
     * record arriving later (a courier bundle made before the retraction,
     * or a push) is acknowledged at 0 and not stored either. */
    {
        unsigned char gid[32], rid[32], *ge, *re, got[32];
        size_t glen, rlen;
        uint64_t s1[1] = {9}, rseq = 9;
        ge = make_about(&a, FV_ENV_REVISION, NULL, SEAL(a.box, org, org), 2,
                        NULL, 0, &glen, gid);
        re = make_about(&a, FV_ENV_RETRACTION, gid, SEAL(a.box, org, org), 2,
                        NULL, 0, &rlen, rid);
        CHECK_EQ(push_try(&h, &a, &re, &rlen, 1, s1), 0);
        CHECK_EQ(s1[0], 0);
        CHECK_EQ(fv_sstore_retracted(h.st, gid, &rseq, got), FV_OK);
        CHECK_EQ(rseq, 0);
        CHECK(memcmp(got, rid, 32) == 0);
        s1[0] = 9;
        CHECK_EQ(fv_srv_store_batch(h.srv, NULL,
                                    (const unsigned char *const *)&ge, &glen,
                                    1, s1, NULL),
                 FV_OK);
        CHECK_EQ(s1[0], 0);
        s1[0] = 9;
        CHECK_EQ(push_try(&h, &a, &ge, &glen, 1, s1), 0);
        CHECK_EQ(s1[0], 0);
        CHECK_EQ(fv_sstore_log_find(h.st, gid, &seq), FV_ENOTFOUND);
        CHECK_EQ(fv_sstore_record_origin(h.st, gid, got), FV_ENOTFOUND);
        CHECK_EQ(log_head(&h), 4);
        free(ge);
        free(re);
    }

    /* Accepted: the coordinator's review state (sealed to coordinators
     * only) and note (sealed to a as well) and a revision it seals to b;
     * a's own note; a new record and a note about it in one batch; the
     * coordinator's note to b about R3. */
    env[S1] = make_about(&admin, FV_ENV_STATE, ids[G1],
                         SEAL(admin.box, org, org), 2, NULL, 0, &len[S1],
                         ids[S1]);
    env[N1] = make_about(&admin, FV_ENV_NOTE, ids[G1],
                         SEAL(admin.box, a.box, org), 3, NULL, 0, &len[N1],
                         ids[N1]);
    env[C1] = make_about(&admin, FV_ENV_REVISION, ids[G1],
                         SEAL(admin.box, b.box, org), 3, NULL, 0, &len[C1],
                         ids[C1]);
    env[G4] = make_about(&a, FV_ENV_REVISION, NULL, SEAL(a.box, org, org), 2,
                         NULL, 0, &len[G4], ids[G4]);
    env[N4] = make_about(&a, FV_ENV_NOTE, ids[G4], SEAL(a.box, org, org), 2,
                         NULL, 0, &len[N4], ids[N4]);
    env[N3] = make_about(&admin, FV_ENV_NOTE, ids[G3],
                         SEAL(admin.box, b.box, org), 3, NULL, 0, &len[N3],
                         ids[N3]);
    CHECK_EQ(push_try(&h, &admin, &env[S1], &len[S1], 2, NULL), 0);
    CHECK_EQ(push_try(&h, &a, &env[N2], &len[N2], 1, NULL), 0);
    CHECK_EQ(push_try(&h, &admin, &env[C1], &len[C1], 1, NULL), 0);
    CHECK_EQ(push_try(&h, &a, &env[G4], &len[G4], 2, NULL), 0);
    CHECK_EQ(push_try(&h, &admin, &env[N3], &len[N3], 1, NULL), 0);
    CHECK_EQ(log_head(&h), 11);

    /* Routing: a gets the note sealed to it, never the review state, its
     * own envelopes or b's; b gets what was sealed to it, nothing of a's. */
    do_pull(&h, &a, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.n == 1 && has_id(&r, ids[N1]));
    do_pull(&h, &b, NULL, 0, zero, &rb);
    CHECK(rb.done && rb.chains_ok && rb.n == 2 && has_id(&rb, ids[C1]) &&
          has_id(&rb, ids[N3]) && rb.nerased == 0);
    do_pull(&h, &admin, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.n == 11 && r.nerased == 0);

    /* What the retraction must destroy is there now (so the checks below
     * can fail). */
    snprintf(pack, sizeof pack, "%s/chunks/pack-000001", h.dir);
    CHECK(pack_bytes(h.dir, &npacks) > 0 && npacks == 1);
    CHECK_EQ(stat(pack, &sb0), 0);
    for (int i = 0; i < 3; i++)
        CHECK(file_holds(pack, data[i] + dlen[i] / 2, 64));
    CHECK(db_holds(&h, env[G1], len[G1]) && db_holds(&h, env[V1], len[V1]) &&
          db_holds(&h, env[N1], len[N1]));

    /* a retracts R1. */
    env[R1] = make_about(&a, FV_ENV_RETRACTION, ids[G1], SEAL(a.box, org, org),
                         2, NULL, 0, &len[R1], ids[R1]);
    CHECK_EQ(push_try(&h, &a, &env[R1], &len[R1], 1, seqs), 0);
    CHECK_EQ(seqs[0], 12);
    CHECK_EQ(log_head(&h), 12);
    CHECK_EQ(fv_sstore_retracted(h.st, ids[G1], &seq, NULL), FV_OK);
    CHECK_EQ(seq, 12);
    CHECK_EQ(fv_sstore_retracted(h.st, ids[G2], &seq, NULL), FV_ENOTFOUND);
    /* R1's chunk bytes are gone from the pack, which keeps its size (a
     * hole, not a rewrite); R2's chunk stays. */
    CHECK_EQ(stat(pack, &sb1), 0);
    CHECK_EQ(sb1.st_size, sb0.st_size);
    CHECK(!file_holds(pack, data[0] + dlen[0] / 2, 64));
    CHECK(!file_holds(pack, data[1] + dlen[1] / 2, 64));
    CHECK(!file_holds(pack, data[1], 64));
    CHECK(file_holds(pack, data[2] + dlen[2] / 2, 64));
    /* Every other envelope of R1 is gone from the database and its WAL;
     * the retraction and the other records stay. */
    {
        static const int gone[] = {G1, V1, S1, N1, N2, C1};
        for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
            CHECK(!db_holds(&h, env[gone[i]], len[gone[i]]));
        CHECK(db_holds(&h, env[R1], len[R1]) && db_holds(&h, env[G2], len[G2]) &&
              db_holds(&h, env[N4], len[N4]));
    }
    {
        size_t idx[3] = {0, 1, 2};
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 3),
                     "001") == 0);
        CHECK(strcmp(query(&h, &admin, (const unsigned char(*)[32])hs, idx,
                           3),
                     "001") == 0);
    }
    /* The log keeps every position and chain: erased entries come as
     * their ids, the retraction in full. */
    do_pull(&h, &admin, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.n == 12 && r.head == 12);
    CHECK_EQ(r.nerased, 6);
    CHECK(erased_in(&r, ids[G1]) == 1 && erased_in(&r, ids[V1]) == 1 &&
          erased_in(&r, ids[S1]) == 1 && erased_in(&r, ids[N1]) == 1 &&
          erased_in(&r, ids[N2]) == 1 && erased_in(&r, ids[C1]) == 1);
    CHECK(erased_in(&r, ids[R1]) == 0 && erased_in(&r, ids[G2]) == 0 &&
          erased_in(&r, ids[G4]) == 0 && erased_in(&r, ids[N3]) == 0);
    /* b held part of R1 (C1): it gets the retraction, from where it was. */
    {
        pulled r2;
        do_pull(&h, &b, h.epoch, rb.head, rb.head_chain, &r2);
        CHECK(r2.done && r2.chains_ok && r2.n == 1 && has_id(&r2, ids[R1]) &&
              r2.head == 3);
        do_pull(&h, &b, NULL, 0, zero, &r2);
        CHECK(r2.done && r2.chains_ok && r2.n == 3 && r2.nerased == 1 &&
              erased_in(&r2, ids[C1]) == 1 && erased_in(&r2, ids[N3]) == 0);
    }
    /* a wrote it: it does not get it back; its note from the coordinator
     * is now an id. */
    do_pull(&h, &a, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.n == 1 && erased_in(&r, ids[N1]) == 1);

    /* Late arrivals: acknowledged at seq 0, not stored. */
    env[V2] = make_about(&a, FV_ENV_REVISION, ids[G1], SEAL(a.box, org, org),
                         2, NULL, 0, &len[V2], ids[V2]);
    env[R1B] = make_about(&admin, FV_ENV_RETRACTION, ids[G1],
                          SEAL(admin.box, a.box, org), 3, NULL, 0, &len[R1B],
                          ids[R1B]);
    env[E1] = make_about(&e, FV_ENV_REVISION, ids[G1], SEAL(e.box, org, org),
                         2, NULL, 0, &len[E1], ids[E1]);
    seqs[0] = seqs[1] = 99;
    {
        unsigned char *two[2] = {env[V2], env[G2]};
        size_t l2[2] = {len[V2], len[G2]};
        CHECK_EQ(push_try(&h, &a, two, l2, 2, seqs), 0);
        CHECK(seqs[0] == 0 && seqs[1] == 3);
    }
    CHECK_EQ(push_try(&h, &admin, &env[R1B], &len[R1B], 1, seqs), 0);
    CHECK_EQ(seqs[0], 0);
    do_pull(&h, &e, NULL, 0, zero, &r);
    CHECK(r.done && r.n == 0);
    CHECK_EQ(push_try(&h, &e, &env[E1], &len[E1], 1, seqs), 0);
    CHECK_EQ(seqs[0], 0);
    CHECK_EQ(log_head(&h), 12);
    CHECK_EQ(fv_sstore_log_find(h.st, ids[V2], &seq), FV_ENOTFOUND);
    CHECK_EQ(fv_sstore_log_find(h.st, ids[E1], &seq), FV_ENOTFOUND);
    /* e sent an envelope of R1: it hears of the retraction. */
    do_pull(&h, &e, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.n == 1 && has_id(&r, ids[R1]) &&
          erased_in(&r, ids[R1]) == 0);
    /* Twice changes nothing. */
    CHECK_EQ(push_try(&h, &e, &env[E1], &len[E1], 1, seqs), 0);
    do_pull(&h, &e, NULL, 0, zero, &r);
    CHECK(r.done && r.n == 1);
    /* A chunk of R1 uploaded late: acknowledged, not stored. */
    {
        size_t idx[1] = {1};
        CHECK_EQ(put_chunks(&h, &a, data, dlen, (const unsigned char(*)[32])hs,
                            idx, 1),
                 1);
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])hs, idx, 1),
                     "0") == 0);
        CHECK_EQ(stat(pack, &sb1), 0);
        CHECK_EQ(sb1.st_size, sb0.st_size);
        CHECK(!file_holds(pack, data[1] + dlen[1] / 2, 64));
    }

    /* The coordinator retracts b's R3: b gets it once (it is sealed to b,
     * and b's feed held R3's note), and the note becomes an id. */
    env[R3] = make_about(&admin, FV_ENV_RETRACTION, ids[G3],
                         SEAL(admin.box, b.box, org), 3, NULL, 0, &len[R3],
                         ids[R3]);
    CHECK_EQ(push_try(&h, &admin, &env[R3], &len[R3], 1, seqs), 0);
    CHECK_EQ(seqs[0], 13);
    do_pull(&h, &b, NULL, 0, zero, &r);
    CHECK(r.done && r.chains_ok && r.n == 4 && r.nerased == 2 &&
          erased_in(&r, ids[N3]) == 1 && erased_in(&r, ids[R3]) == 0);
    CHECK(!db_holds(&h, env[G3], len[G3]) && !db_holds(&h, env[N3], len[N3]));
    head = log_head(&h);
    CHECK_EQ(head, 13);

    /* A chunk that arrived on one connection, written but not yet made
     * durable and indexed, when another connection retracts its record:
     * it is acknowledged, never indexed, and its bytes are destroyed. */
    {
        unsigned char h5[32], id5[32], idr5[32], *g5, *r5, *d5;
        size_t l5, lr5, n5 = 40000, sent;
        const unsigned char *p;
        fv_srv_conn *c = NULL;
        fv_out o;
        buf out = {0};
        size_t idx[1] = {0};
        d5 = xmalloc(n5);
        chunk_fill(d5, n5, 91ull << 40);
        fv_hash(h5, d5, n5);
        g5 = make_about(&a, FV_ENV_REVISION, NULL, SEAL(a.box, org, org), 2,
                        (const unsigned char(*)[32])h5, 1, &l5, id5);
        r5 = make_about(&a, FV_ENV_RETRACTION, id5, SEAL(a.box, org, org), 2,
                        NULL, 0, &lr5, idr5);
        CHECK_EQ(push_try(&h, &a, &g5, &l5, 1, NULL), 0);
        fv_out_init(&o);
        c_hello(&o, &a, h.pin, binding_a, NULL);
        c_put(&o, h5, d5, n5);
        p = fv_out_pending(&o, &sent);
        CHECK_EQ(fv_srv_conn_new(&c, h.srv, binding_a, 99), FV_OK);
        CHECK_EQ(fv_srv_conn_recv_more(c, p, sent), sent);
        CHECK(file_holds(pack, d5 + n5 / 2, 64)); /* written, pending */
        CHECK_EQ(push_try(&h, &a, &r5, &lr5, 1, NULL), 0);
        CHECK_EQ(fv_srv_conn_flush(c), 1);
        drain(c, &out, 1 << 20);
        CHECK_EQ(acks_of(&out, h5), 1);
        fv_srv_conn_free(c);
        CHECK(!file_holds(pack, d5 + n5 / 2, 64));
        CHECK(strcmp(query(&h, &a, (const unsigned char(*)[32])h5, idx, 1),
                     "0") == 0);
        fv_out_free(&o);
        buf_free(&out);
        free(g5);
        free(r5);
        free(d5);
    }
#undef SEAL
#undef HS
    for (int i = 0; i < NDESK; i++)
        free(env[i]);
    for (int i = 0; i < 3; i++)
        free(data[i]);
    harness_close(&h);
}

int main(int argc, char **argv)
{
    if (fv_crypto_init() != FV_OK)
        return 2;
    if (argc == 2 && !strcmp(argv[1], "floods")) {
        test_floods();
        return check_summary("test_server floods");
    }
    if (argc == 2 && !strcmp(argv[1], "verify")) {
        test_verify_deferred();
        test_run_verify(); /* alone: what the ThreadSanitizer build runs */
        return check_summary("test_server verify");
    }
    test_init();
    test_chunks_big(); /* early: its check of peak memory needs a low peak */
    test_enroll();
    test_hello_checks();
    test_coordinator();
    test_push();
    test_pull();
    test_pull_stream();
    test_backpressure();
    test_prefixes();
    test_chunk_fill();
    test_garbage();
    test_http_probe();
    test_run();
    test_connect_retry();
    test_verify_deferred();
    test_run_verify();
    hello_max = FV_PROTOCOL_VERSION; /* the two above play protocol 1 */
    test_bundle_import();
    test_bundle_batches();
    test_chunks();
    test_run_chunks();
    test_entries_erased();
    test_desk();
    CHECK(!log_leak);
    CHECK(log_lines > 0);
    return check_summary("test_server");
}
