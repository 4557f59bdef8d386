/* test_faults.c - the vault under allocation failure, I/O errors and power
 * loss (issue 11). Every allocation and file operation of the process goes
 * through faultshim.c. For each operation (open and list, add with an
 * attachment, edit, delete, export, passwd) and each fault, it fails the
 * Nth allocation, or the Nth open, read, write or sync of a vault file, for
 * every N until the operation runs through untouched; each run must end
 * with FV_OK or the fault's error (FV_ENOMEM, FV_EIO, FV_ENOSPC), leak
 * nothing, never report success over a failed sync of its own, and leave a
 * vault that opens, verifies and holds exactly what was acknowledged. Power
 * loss: for every sync boundary of a sequence of those operations, a child
 * process loses power there (every write not made durable by a sync is
 * undone), and the vault must then pass PRAGMA integrity_check and
 * fv_vault_verify and hold every acknowledged change.
 * A sync exchange through both engines (the server's database and packs
 * included) is one of the operations; a retraction and retention through
 * them run when FV_FAULT_OPS names them (test_faults_desk), and power-sync
 * loses power at every sync boundary of a sync (vault and server).
 * The server store's packs: a failed sync of a directory that gained the
 * chunk directory or a pack fails the append and leaves nothing half made.
 * Courier bundles (FV_FAULT_OPS=bundle-export,bundle-parts,bundle-import,
 * server-import): a field device's export (whole, and in parts), the
 * import into a coordinator that certified it, and the server's side of
 * `server import`; after each faulted import the importer verifies and a
 * second import brings in everything; after a faulted export no file is
 * left. power-bundle loses power at every sync boundary of an import into
 * the coordinator's vault and of an export.
 * Usage: test_faults [alloc|io|power|packs|power-sync|power-bundle]...
 * (default: the first four). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "client.h"
#include "crypto.h"
#include "bundle.h"
#include "faultshim.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"
#include "fileio.h"
#include "proto.h"
#include "server.h"
#include "server_engine.h"
#include "store_server.h"
#include "tls.h"
#include "tls_server.h"
#include "vault_sync.h"

static char root[256];
static char vdir[320], attach[320], outpath[320];
static const char PASS[] = "first passphrase", PASS2[] = "second passphrase";
static const char *pass = PASS; /* the vault's passphrase now */

#define ATTACH_BYTES (300u * 1024) /* two chunks */

/* ---- the vault as expected ------------------------------------------------ */

struct seen {
    int n;
    const char *want_title;
    int title_found;
};

static int seen_cb(const fv_record *r, void *payload)
{
    struct seen *s = payload;
    s->n++;
    if (s->want_title && strcmp(r->title, s->want_title) == 0)
        s->title_found = 1;
    return 0;
}

static int sum_cb(const unsigned char *buf, size_t len, void *payload)
{
    (void)buf;
    *(uint64_t *)payload += len;
    return 0;
}

/* Opens the vault with `p` (or, when `alt` is set, with alt if p fails),
 * checks it verifies, and returns the number of records (-1 if it does not
 * open or verify). `title`, when set, must be a record's title exactly when
 * *found is asked for. */
static int vault_state(const char *p, const char *alt, const char *title, int *found)
{
    fv_vault *v = NULL;
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    struct seen s = {0, title, 0};
    int rc = fv_vault_open(&v, vdir, p, strlen(p));
    if (rc == FV_EPASSPHRASE && alt)
        rc = fv_vault_open(&v, vdir, alt, strlen(alt));
    if (rc != FV_OK) {
        fprintf(stderr, "  vault does not open: %s\n", fv_strerror(rc));
        return -1;
    }
    rep = (fv_verify_report)FV_VERIFY_REPORT_INIT;
    if ((rc = fv_vault_verify(v, &rep, NULL, NULL)) != FV_OK ||
        (rc = fv_vault_list(v, seen_cb, &s)) != FV_OK) {
        fprintf(stderr, "  vault does not verify: %s (%llu failures)\n", fv_strerror(rc),
                (unsigned long long)rep.failures);
        fv_vault_close(v);
        return -1;
    }
    fv_vault_close(v);
    if (found)
        *found = s.title_found;
    return s.n;
}

/* Which passphrase opens the vault now. */
static const char *current_pass(void)
{
    fv_vault *v = NULL;
    if (fv_vault_open(&v, vdir, PASS, strlen(PASS)) == FV_OK) {
        fv_vault_close(v);
        return PASS;
    }
    return PASS2;
}

/* ---- the operations --------------------------------------------------------- */

/* Each opens the vault, does its work, closes it, and returns the first
 * failure (FV_OK when everything succeeded). */
struct opctx {
    unsigned char id[FV_ID_BYTES]; /* the record edited or deleted */
    int n;                         /* records before */
    int seq;
};

/* The handle's last message, kept for the report of a run. */
static char lastmsg[512];

/* PRAGMA integrity_check of the database at `path` says "ok". */
static int db_integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

/* After a sync run: the server's database passes integrity_check, the
 * server opens, and holds the record when the sync was acknowledged. */
static int server_state_ok(int acknowledged, const unsigned char *record);

static int done(fv_vault *v, int rc)
{
    snprintf(lastmsg, sizeof lastmsg, "%s", v && rc ? fv_vault_errmsg(v) : "");
    fv_vault_close(v);
    return rc;
}

static int first_cb(const fv_record *r, void *payload)
{
    memcpy(payload, r->id, FV_ID_BYTES);
    return 1;
}

static int add_one(fv_vault *v, unsigned char *id, const char *title, int with_attachment)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field f[1] = {{"place", "Yanji"}};
    const char *tags[] = {"detention"};
    fv_attachment_source a = {"photo.jpg", attach, NULL, NULL};
    in.title = title;
    in.narrative = "The interviewee was held for three days.";
    in.narrative_len = strlen(in.narrative);
    in.fields = f;
    in.nfields = 1;
    in.tags = tags;
    in.ntags = 1;
    if (with_attachment) {
        in.attachments = &a;
        in.nattachments = 1;
    }
    return fv_record_add(v, id, &in);
}

static int op_list(struct opctx *c)
{
    fv_vault *v = NULL;
    struct seen s = {0, NULL, 0};
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    if (rc == FV_OK)
        rc = fv_vault_list(v, seen_cb, &s);
    if (rc == FV_OK && s.n != c->n) {
        fprintf(stderr, "list: FV_OK but %d of %d records\n", s.n, c->n);
        rc = FV_ECORRUPT;
    }
    return done(v, rc);
}

static int op_add(struct opctx *c)
{
    fv_vault *v = NULL;
    char title[64];
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    snprintf(title, sizeof title, "added %d", c->seq);
    if (rc == FV_OK)
        rc = add_one(v, NULL, title, 1);
    return done(v, rc);
}

static int op_edit(struct opctx *c)
{
    fv_vault *v = NULL;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field f[1] = {{"place", "Tumen"}};
    char title[64];
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    snprintf(title, sizeof title, "edited %d", c->seq);
    in.title = title;
    in.fields = f;
    in.nfields = 1;
    if (rc == FV_OK)
        rc = fv_record_edit(v, NULL, c->id, &in);
    return done(v, rc);
}

static int op_delete(struct opctx *c)
{
    fv_vault *v = NULL;
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    if (rc == FV_OK)
        rc = fv_record_delete(v, c->id);
    return done(v, rc);
}

static int op_export(struct opctx *c)
{
    fv_vault *v = NULL;
    fv_export_options o = FV_EXPORT_OPTIONS_INIT;
    uint64_t n = 0;
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    (void)c;
    o.path = outpath;
    if (rc == FV_OK)
        rc = fv_export(v, &n, &o);
    return done(v, rc);
}

static int op_read_attachment(struct opctx *c)
{
    fv_vault *v = NULL;
    uint64_t sum = 0;
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    if (rc == FV_OK)
        rc = fv_attachment_read(v, c->id, "photo.jpg", sum_cb, &sum, NULL, NULL);
    if (rc == FV_OK && sum != ATTACH_BYTES)
        rc = FV_ECORRUPT;
    return done(v, rc);
}

static int op_passwd(struct opctx *c)
{
    fv_vault *v = NULL;
    const char *to = pass == PASS ? PASS2 : PASS;
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    (void)c;
    if (rc == FV_OK)
        rc = fv_vault_passwd(v, to, strlen(to));
    return done(v, rc);
}

/* ---- a sync exchange through both engines (as in test_sync_engine.c) ---- */

static unsigned char pin[32], epoch[16], receipt_pk[32], receipt_sk[64];
static fv_sstore *sstore;
static fv_srv *srv;
static fv_srv_env env;

static void srv_random(void *buf, size_t n, void *payload)
{
    (void)payload;
    fv_random(buf, n);
}

/* The server's own account of a failure on its side (its log line), for
 * the run that failed on the server: the device then only hears "the
 * server failed" (FV_ESERVER) or nothing (FV_EEOF), and the fault must be
 * what the server failed with. */
static char srv_failure[256];

static void srv_log(const char *line, void *payload)
{
    (void)payload;
    if (!srv_failure[0] && (strstr(line, " failed: ") || strstr(line, "cannot queue")))
        snprintf(srv_failure, sizeof srv_failure, "%s", line);
}

/* A run's result is the fault's error: rc itself, or, for a failure the
 * server met, its log naming one of `codes` (n of them). */
static int is_fault_result(int rc, const int *codes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rc == codes[i])
            return 1;
    if (rc != FV_ESERVER && rc != FV_EEOF)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (srv_failure[0] && strstr(srv_failure, fv_strerror(codes[i])))
            return 1;
    return 0;
}

/* Runs one connection between vault v and the server to its end. Static
 * buffers: the harness allocates nothing, so only the engines' allocations
 * are counted and failed. Returns the client's result (FV_EEOF when the
 * server gave up without a word). */
static int converse(fv_vault *v, const fv_client_request *req, char **invite)
{
    static unsigned char held[4u << 20];
    unsigned char binding[32];
    fv_client *c = NULL;
    fv_srv_conn *sc = NULL;
    size_t held_len = 0;
    int rc, rounds = 0;

    fv_random(binding, sizeof binding);
    srv_failure[0] = '\0';
    if ((rc = fv_client_new(&c, v, req)))
        return rc;
    if ((rc = fv_srv_conn_new(&sc, srv, binding, 1))) {
        fv_client_free(c);
        return rc;
    }
    fv_client_start(c, pin, binding);
    while (fv_client_status(c) == FV_OK && !fv_client_done(c) && rounds++ < 100000) {
        size_t n, moved = 0;
        const unsigned char *p = fv_client_pending(c, &n);
        if (n > 0 && held_len < sizeof held) {
            size_t take = n < sizeof held - held_len ? n : sizeof held - held_len;
            memcpy(held + held_len, p, take);
            held_len += take;
            fv_client_ack(c, take);
            moved = 1;
        }
        if (held_len > 0 && fv_srv_conn_state(sc) == FV_SRV_RUNNING) {
            size_t used = fv_srv_conn_recv(sc, held, held_len);
            memmove(held, held + used, held_len - used);
            held_len -= used;
            moved |= used > 0;
        }
        p = fv_srv_conn_send_buf(sc, &n);
        if (n > 0) {
            /* The client may keep pointers into nothing of ours: copy is
             * not needed, the buffer stays valid until the ack below. */
            fv_client_recv(c, p, n);
            fv_srv_conn_send_ack(sc, n);
            moved = 1;
        }
        if (!moved)
            break;
    }
    rc = fv_client_status(c);
    if (rc == FV_OK && !fv_client_done(c))
        rc = FV_EEOF;
    if (rc == FV_OK && invite && fv_client_invite_text(c))
        *invite = strdup(fv_client_invite_text(c));
    if (rc != FV_OK)
        snprintf(lastmsg, sizeof lastmsg, "%s%s%s", fv_client_errmsg(c) ? fv_client_errmsg(c) : "",
                 srv_failure[0] ? "; server: " : "", srv_failure);
    fv_client_free(c);
    fv_srv_conn_free(sc);
    return rc;
}

/* The server, a coordinator with the organisation key, and the test's
 * vault enrolled as a field device. */
static fv_srv_config cfg = {FV_SRV_CONFIG_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, 0};
static char server_db[400];
/* Courier bundles: the second field device's vault, the coordinator's,
 * the coordinator as it was before any import, the courier's bundle, and
 * where an export writes. */
static char courier_dir[320], coord_dir[400], coord_base[320], good_bundle[320], bundle_out[320];
static unsigned char courier_id[FV_ID_BYTES]; /* the courier's record */
static int bundle_opened; /* the bundle operation's vault opened */
/* `server import`: the server as it was before any import (the courier
 * enrolled), a copy that each import runs on, and the chunks a whole
 * import leaves there. */
static char server_base[320], server_imp_db[400];
static int server_imp_chunks;
static void server_imp_reset(void);
static int server_import_whole(void);

/* Opens the server: its database and engine. */
static int server_open(void)
{
    int rc = fv_sstore_open(&sstore, server_db, 0);
    cfg.store = sstore;
    if (rc == FV_OK && (rc = fv_srv_new(&srv, &cfg)) != FV_OK) {
        fv_sstore_close(sstore);
        sstore = NULL;
    }
    return rc;
}

static void server_close(void)
{
    fv_srv_free(srv);
    fv_sstore_close(sstore);
    srv = NULL;
    sstore = NULL;
}

static void server_setup(void)
{
    char path[400], cdir[400], cmd[800], *admin = NULL, *invite = NULL;
    unsigned char token[16], org[32];
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_client_request orgreq = {.op = FV_CLIENT_ORGKEY};
    fv_client_request inv = {.op = FV_CLIENT_INVITE, .name = "worker 17",
                             .role = FV_ROLE_FIELD, .ttl = 3600};
    fv_invite in1, in2, in3;
    fv_client_request enroll = {.op = FV_CLIENT_ENROLL}, sync = {.op = FV_CLIENT_SYNC};
    fv_vault *coord = NULL, *v = NULL;

    snprintf(path, sizeof path, "%s/server", root);
    CHECK_EQ(mkdir(path, 0700), 0);
    snprintf(server_db, sizeof server_db, "%s/server/server.db", root);
    CHECK_EQ(fv_sstore_open(&sstore, server_db, 1), FV_OK);
    fv_random(pin, sizeof pin);
    fv_random(epoch, sizeof epoch);
    fv_sign_keypair(receipt_pk, receipt_sk);
    env.random = srv_random;
    env.log = srv_log;
    env.now = 1800000000;
    cfg.store = sstore;
    cfg.receipt_sk = receipt_sk;
    cfg.epoch = epoch;
    cfg.pin = pin;
    cfg.address = "127.0.0.1:1";
    cfg.env = &env;
    CHECK_EQ(fv_srv_new(&srv, &cfg), FV_OK);
    fv_random(token, sizeof token);
    CHECK_EQ(fv_srv_invite_create(&admin, sstore, cfg.address, pin, NULL, "admin", 5,
                                  FV_ROLE_COORDINATOR, env.now + 3600, token),
             FV_OK);
    o.kdf_profile = FV_KDF_TEST;
    snprintf(cdir, sizeof cdir, "%s/coord", root);
    CHECK_EQ(fv_vault_create(&coord, cdir, PASS, strlen(PASS), &o), FV_OK);
    CHECK_EQ(fv_invite_decode(&in1, admin ? admin : ""), FV_OK);
    enroll.invite = &in1;
    CHECK_EQ(converse(coord, &enroll, NULL), FV_OK);
    CHECK_EQ(fv_vs_org_create(coord, org), FV_OK);
    CHECK_EQ(converse(coord, &orgreq, NULL), FV_OK);
    CHECK_EQ(converse(coord, &inv, &invite), FV_OK);
    fv_vault_close(coord);
    CHECK_EQ(fv_vault_open(&v, vdir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_invite_decode(&in2, invite ? invite : ""), FV_OK);
    enroll.invite = &in2;
    CHECK_EQ(converse(v, &enroll, NULL), FV_OK);
    fv_vault_close(v);
    v = NULL;
    /* The courier: a second field device, whose records travel in a
     * bundle to the coordinator; the coordinator's next sync certifies
     * both devices, so its import admits the courier's envelopes. */
    free(invite);
    invite = NULL;
    inv.name = "courier 3";
    CHECK_EQ(fv_vault_open(&coord, cdir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(converse(coord, &inv, &invite), FV_OK);
    fv_vault_close(coord);
    coord = NULL;
    snprintf(courier_dir, sizeof courier_dir, "%s/courier", root);
    snprintf(coord_dir, sizeof coord_dir, "%s", cdir);
    CHECK_EQ(fv_vault_create(&v, courier_dir, PASS, strlen(PASS), &o), FV_OK);
    CHECK_EQ(fv_invite_decode(&in3, invite ? invite : ""), FV_OK);
    enroll.invite = &in3;
    CHECK_EQ(converse(v, &enroll, NULL), FV_OK);
    CHECK_EQ(add_one(v, courier_id, "couriered", 1), FV_OK);
    fv_vault_close(v);
    CHECK_EQ(fv_vault_open(&coord, cdir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(converse(coord, &sync, NULL), FV_OK);
    fv_vault_close(coord);
    free(admin);
    free(invite);
    server_close();
    /* The coordinator as it stands, for every import to start from, and
     * the courier's bundle. */
    snprintf(coord_base, sizeof coord_base, "%s/coord-base", root);
    snprintf(good_bundle, sizeof good_bundle, "%s/courier.fvb", root);
    snprintf(bundle_out, sizeof bundle_out, "%s/export.fvb", root);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", coord_dir, coord_base);
    CHECK_EQ(system(cmd), 0);
    CHECK_EQ(fv_vault_open(&v, courier_dir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_bundle_export(v, NULL, good_bundle, NULL), FV_OK);
    fv_vault_close(v);
    snprintf(server_base, sizeof server_base, "%s/server-base", root);
    snprintf(server_imp_db, sizeof server_imp_db, "%s/server-imp/server.db", root);
    snprintf(cmd, sizeof cmd, "cp -a '%s/server' '%s'", root, server_base);
    CHECK_EQ(system(cmd), 0);
    server_imp_reset();
    CHECK_EQ(server_import_whole(), 0);
    server_imp_reset();
}

static unsigned char synced_id[FV_ID_BYTES];

/* Adds a record (small, with the attachment), then syncs: the record's
 * delivery is what a successful sync acknowledges. */
static int op_sync(struct opctx *c)
{
    fv_vault *v = NULL;
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    char title[64];
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    snprintf(title, sizeof title, "added %d", c->seq);
    memset(synced_id, 0, sizeof synced_id);
    if (rc == FV_OK)
        rc = add_one(v, synced_id, title, 1);
    if (rc == FV_OK && (rc = server_open()) == FV_OK) {
        rc = converse(v, &req, NULL);
        server_close();
        /* The client's message, not the vault's. */
        fv_vault_close(v);
        return rc;
    }
    return done(v, rc);
}

/* A vault call's failure: its message kept for the report. */
static int vfail(fv_vault *v, int rc)
{
    if (rc)
        snprintf(lastmsg, sizeof lastmsg, "%s", fv_vault_errmsg(v));
    return rc;
}

static unsigned char retracted_id[FV_ID_BYTES];
/* Set by a run that reported a failed sync of ours itself, though its
 * operation went on to succeed. */
static int own_sync_reported;

/* Adds a record (with the attachment), syncs, retracts it and syncs again:
 * the retraction on both sides (the server erasing its envelopes and
 * chunks in the packs) is what a successful run acknowledges. */
static int op_retract(struct opctx *c)
{
    fv_vault *v = NULL;
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    char title[64];
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    snprintf(title, sizeof title, "added %d", c->seq);
    memset(retracted_id, 0, sizeof retracted_id);
    if (rc == FV_OK)
        rc = add_one(v, retracted_id, title, 1);
    if (rc == FV_OK && (rc = server_open()) == FV_OK) {
        /* A failed first sync (its failure is this run's fault, so no
         * failed sync of ours goes unreported) leaves the record unsent:
         * the server then acknowledges a retraction of a record it never
         * held, the other path. */
        if (converse(v, &req, NULL) != FV_OK && fs_io_injected_own_sync())
            own_sync_reported = 1;
        lastmsg[0] = '\0';
        if ((rc = vfail(v, fv_record_retract(v, retracted_id))) == FV_OK)
            rc = converse(v, &req, NULL);
        server_close();
        fv_vault_close(v);
        return rc;
    }
    return done(v, rc);
}

/* With the policy "drop after receipt": adds a record (with the
 * attachment), syncs, and applies the policy (as a session does after a
 * sync): the local copy destroyed once the server holds all of it. */
static int op_retention(struct opctx *c)
{
    fv_vault *v = NULL;
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    char title[64];
    size_t dropped = 0;
    int rc = fv_vault_open(&v, vdir, pass, strlen(pass));
    snprintf(title, sizeof title, "added %d", c->seq);
    memset(synced_id, 0, sizeof synced_id);
    if (rc == FV_OK)
        rc = vfail(v, fv_vault_set_retention(v, FV_RETENTION_DROP_AFTER_RECEIPT));
    if (rc == FV_OK)
        rc = add_one(v, synced_id, title, 1);
    if (rc == FV_OK && (rc = server_open()) == FV_OK) {
        rc = converse(v, &req, NULL);
        server_close();
        if (rc == FV_OK)
            rc = vfail(v, fv_vs_apply_retention(v, &dropped));
        fv_vault_close(v);
        return rc;
    }
    return done(v, rc);
}

/* ---- courier bundles ---------------------------------------------------- */

/* The courier exports its outbox (a record with the two-chunk attachment)
 * to a new bundle file. */
static int op_bundle_export(struct opctx *c)
{
    fv_vault *v = NULL;
    int rc = fv_vault_open(&v, courier_dir, PASS, strlen(PASS));
    (void)c;
    bundle_opened = rc == FV_OK;
    if (rc == FV_OK)
        rc = fv_bundle_export(v, NULL, bundle_out, NULL);
    return done(v, rc);
}

/* The same export in parts (bundle_out.001, .002: each a whole bundle,
 * the attachment's two chunks apart). */
static int op_bundle_parts(struct opctx *c)
{
    fv_vault *v = NULL;
    fv_bundle_options o = FV_BUNDLE_OPTIONS_INIT;
    fv_bundle_stats st = FV_BUNDLE_STATS_INIT;
    int rc = fv_vault_open(&v, courier_dir, PASS, strlen(PASS));
    (void)c;
    bundle_opened = rc == FV_OK;
    o.max_size = 270u * 1024;
    if (rc == FV_OK)
        rc = fv_bundle_export(v, &st, bundle_out, &o);
    if (rc == FV_OK && st.parts != 2) {
        fprintf(stderr, "bundle-parts: %llu parts, not 2\n", (unsigned long long)st.parts);
        rc = FV_ELIMIT;
    }
    return done(v, rc);
}

/* The coordinator imports the courier's bundle (from the coordinator as
 * it was before any import: check_after puts it back). */
static int op_bundle_import(struct opctx *c)
{
    fv_vault *v = NULL;
    int rc = fv_vault_open(&v, coord_dir, PASS, strlen(PASS));
    (void)c;
    bundle_opened = rc == FV_OK;
    if (rc == FV_OK)
        rc = fv_bundle_import(v, NULL, good_bundle);
    return done(v, rc);
}

/* The coordinator back as it was before any import. */
static void coord_reset(void)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", coord_dir, coord_base, coord_dir);
    CHECK_EQ(system(cmd), 0);
}

/* The vault at `dir` passes integrity_check, opens and verifies; holds the
 * courier's record, attachment bytes included, when `want` (-1 when any
 * of it fails). Returns whether it holds the record. */
static int dir_state(const char *dir, int want)
{
    char path[400];
    fv_vault *v = NULL;
    fv_record *r = NULL;
    uint64_t sum = 0;
    int rc, held;
    snprintf(path, sizeof path, "%s/vault.db", dir);
    if (!db_integrity_ok(path)) {
        fprintf(stderr, "  %s: integrity_check fails\n", dir);
        return -1;
    }
    if ((rc = fv_vault_open(&v, dir, PASS, strlen(PASS))) != FV_OK ||
        (rc = fv_vault_verify(v, NULL, NULL, NULL)) != FV_OK) {
        fprintf(stderr, "  %s does not open or verify: %s\n", dir, fv_strerror(rc));
        fv_vault_close(v);
        return -1;
    }
    rc = fv_record_get(v, &r, courier_id);
    fv_record_free(r);
    held = rc == FV_OK;
    if (rc != FV_OK && rc != FV_ENOTFOUND) {
        fprintf(stderr, "  %s: the courier's record: %s\n", dir, fv_strerror(rc));
        held = -1;
    } else if (held && (rc = fv_attachment_read(v, courier_id, "photo.jpg", sum_cb, &sum, NULL, NULL)) != FV_OK) {
        /* An envelope may be in before its chunks (stored as they are
         * read): only a whole import promises the bytes. */
        if (want || (rc != FV_ENOTFOUND && rc != FV_EINCOMPLETE)) {
            fprintf(stderr, "  %s: the courier's attachment: %s\n", dir, fv_strerror(rc));
            if (want)
                held = -1;
        }
    } else if (held && sum != ATTACH_BYTES) {
        fprintf(stderr, "  %s: the courier's attachment has %llu bytes\n", dir, (unsigned long long)sum);
        held = -1;
    }
    fv_vault_close(v);
    if (want && held == 0)
        fprintf(stderr, "  %s lacks the courier's record\n", dir);
    return want && held == 0 ? -1 : held;
}

/* Imports `bundle` into the coordinator, untouched: it completes and
 * brings in the courier's record whole. */
static int import_whole(const char *bundle)
{
    fv_vault *v = NULL;
    int rc = fv_vault_open(&v, coord_dir, PASS, strlen(PASS));
    if (rc == FV_OK)
        rc = fv_bundle_import(v, NULL, bundle);
    if (rc != FV_OK)
        fprintf(stderr, "  the import fails: %s (%s)\n", fv_strerror(rc), v ? fv_vault_errmsg(v) : "");
    fv_vault_close(v);
    return rc == FV_OK && dir_state(coord_dir, 1) == 1 ? 0 : -1;
}

/* The server's side of `server import` (server/server.c's importer): the
 * bundle read into the engine, each batch stored as a PUSH is, each chunk
 * as a CHUNK-PUT is, on a copy of the server. */
struct srv_import {
    int refused;
};

static int srv_import_batch(const unsigned char *const *e, const size_t *len, size_t n, void *payload)
{
    (void)payload;
    return fv_srv_store_batch(srv, NULL, e, len, n, NULL, NULL);
}

static int srv_import_chunk(const unsigned char *hash, const unsigned char *data, size_t len, void *payload)
{
    struct srv_import *im = payload;
    int added = 0, rc = fv_srv_store_chunk(srv, hash, data, len, &added);
    if (rc == FV_EPROTO || rc == FV_ENOTFOUND) {
        im->refused++;
        return FV_OK;
    }
    return rc;
}

/* Runs one import into the server copy. */
static int server_import_run(void)
{
    char keep[400];
    struct srv_import im = {0};
    const char *why = NULL;
    int rc;
    snprintf(keep, sizeof keep, "%s", server_db);
    snprintf(server_db, sizeof server_db, "%s", server_imp_db);
    if ((rc = server_open()) == FV_OK) {
        rc = fv_bundle_read(good_bundle, srv_import_batch, srv_import_chunk, &im, &why);
        if (rc == FV_OK && im.refused)
            rc = FV_ECORRUPT;
        if (rc != FV_OK)
            snprintf(lastmsg, sizeof lastmsg, "%s (%d chunks refused)", why ? why : "", im.refused);
        server_close();
    }
    snprintf(server_db, sizeof server_db, "%s", keep);
    return rc;
}

static int op_server_import(struct opctx *c)
{
    (void)c;
    return server_import_run();
}

static void server_imp_reset(void)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/server-imp' && cp -a '%s' '%s/server-imp'", root, server_base,
             root);
    CHECK_EQ(system(cmd), 0);
}

static int server_chunks_ok(void);
static int server_chunks_seen;

/* The server copy passes integrity_check, opens, every chunk it lists is
 * whole, and it holds the courier's record when `want` (or, with `whole`,
 * the record and all its chunks). Returns whether it holds the record, -1
 * on any failure. */
static int server_imp_state(int want, int whole)
{
    char keep[400];
    unsigned char origin[32];
    int rc, held = -1;
    snprintf(keep, sizeof keep, "%s", server_db);
    snprintf(server_db, sizeof server_db, "%s", server_imp_db);
    if (!db_integrity_ok(server_db))
        fprintf(stderr, "  the server's database fails integrity_check\n");
    else if (server_chunks_ok() != 0)
        fprintf(stderr, "  the server's chunks are not whole\n");
    else if ((rc = server_open()) != FV_OK)
        fprintf(stderr, "  the server does not open: %s\n", fv_strerror(rc));
    else {
        rc = fv_sstore_record_origin(sstore, courier_id, origin);
        server_close();
        held = rc == FV_OK ? 1 : rc == FV_ENOTFOUND ? 0 : -1;
        if ((want || whole) && held == 0) {
            fprintf(stderr, "  the server lacks the courier's record\n");
            held = -1;
        } else if (whole && held == 1 && server_chunks_seen != server_imp_chunks) {
            fprintf(stderr, "  the server holds %d chunks, not %d\n", server_chunks_seen, server_imp_chunks);
            held = -1;
        }
    }
    snprintf(server_db, sizeof server_db, "%s", keep);
    return held;
}

/* An import untouched completes and leaves the record and its chunks. */
static int server_import_whole(void)
{
    int rc = server_import_run();
    if (rc != FV_OK) {
        fprintf(stderr, "  the server's import fails: %s (%s)\n", fv_strerror(rc), lastmsg);
        return -1;
    }
    if (server_imp_chunks == 0) { /* the first whole import: its count */
        server_imp_state(1, 0);
        server_imp_chunks = server_chunks_seen;
        if (server_imp_chunks < 2)
            fprintf(stderr, "  the server holds %d chunks after an import\n", server_imp_chunks);
        return server_imp_chunks >= 2 ? 0 : -1;
    }
    return server_imp_state(1, 1) == 1 ? 0 : -1;
}

/* Whether the vault holds record `id` (-1: it does not open). */
static int vault_holds(const unsigned char *id)
{
    fv_vault *v = NULL;
    fv_record *r = NULL;
    int rc;
    if (fv_vault_open(&v, vdir, pass, strlen(pass)) != FV_OK)
        return -1;
    rc = fv_record_get(v, &r, id);
    fv_record_free(r);
    fv_vault_close(v);
    return rc == FV_OK ? 1 : rc == FV_ENOTFOUND ? 0 : -1;
}

/* Whether the server holds record `id` (1), has it retracted (2), or
 * neither (0); -1 if it does not open. */
static int server_holds(const unsigned char *id)
{
    unsigned char origin[32], rid[32];
    uint64_t rseq;
    int rc, out;
    if (server_open() != FV_OK)
        return -1;
    if ((rc = fv_sstore_retracted(sstore, id, &rseq, rid)) == FV_OK)
        out = 2;
    else if (rc == FV_ENOTFOUND)
        out = fv_sstore_record_origin(sstore, id, origin) == FV_OK ? 1 : 0;
    else
        out = -1;
    server_close();
    return out;
}

static int server_state_ok(int acknowledged, const unsigned char *record)
{
    unsigned char origin[32];
    int rc;
    if (!db_integrity_ok(server_db)) {
        fprintf(stderr, "  the server's database fails integrity_check\n");
        return -1;
    }
    if ((rc = server_open()) != FV_OK) {
        fprintf(stderr, "  the server does not open: %s\n", fv_strerror(rc));
        return -1;
    }
    rc = acknowledged ? fv_sstore_record_origin(sstore, record, origin) : FV_OK;
    server_close();
    if (rc != FV_OK) {
        fprintf(stderr, "  the server lacks an acknowledged record: %s\n", fv_strerror(rc));
        return -1;
    }
    return 0;
}

enum check_kind { CK_SAME, CK_ADD, CK_EDIT, CK_DELETE, CK_EXPORT, CK_PASSWD, CK_SYNC,
                  CK_RETRACT, CK_RETENTION, CK_BUNDLE_EXPORT, CK_BUNDLE_PARTS, CK_BUNDLE_IMPORT,
                  CK_SERVER_IMPORT };

struct op {
    const char *name;
    int (*fn)(struct opctx *);
    int check;
    int extra; /* run only when FV_FAULT_OPS names it (test_faults_desk) */
};

static const struct op ops[] = {
    {"open+list", op_list, CK_SAME, 0},
    {"add", op_add, CK_ADD, 0},
    {"edit", op_edit, CK_EDIT, 0},
    {"attachment", op_read_attachment, CK_SAME, 0},
    {"export", op_export, CK_EXPORT, 0},
    {"delete", op_delete, CK_DELETE, 0},
    {"passwd", op_passwd, CK_PASSWD, 0},
    {"sync", op_sync, CK_SYNC, 0},
    {"retract", op_retract, CK_RETRACT, 1},
    {"retention", op_retention, CK_RETENTION, 1},
    {"bundle-export", op_bundle_export, CK_BUNDLE_EXPORT, 1},
    {"bundle-parts", op_bundle_parts, CK_BUNDLE_PARTS, 1},
    {"bundle-import", op_bundle_import, CK_BUNDLE_IMPORT, 1},
    {"server-import", op_server_import, CK_SERVER_IMPORT, 1},
};
#define NOPS (sizeof ops / sizeof ops[0])

/* Before each operation: the context it needs. */
static void prepare(struct opctx *c)
{
    fv_vault *v = NULL;
    pass = current_pass();
    CHECK_EQ(fv_vault_open(&v, vdir, pass, strlen(pass)), FV_OK);
    c->n = 0;
    if (v) {
        struct seen s = {0, NULL, 0};
        fv_vault_list(v, seen_cb, &s);
        c->n = s.n;
        memset(c->id, 0, sizeof c->id);
        fv_vault_list(v, first_cb, c->id);
        /* op_retention sets "drop after receipt": never for the others. */
        CHECK_EQ(fv_vault_set_retention(v, FV_RETENTION_KEEP), FV_OK);
    }
    fv_vault_close(v);
    fv_remove_tree(outpath);
}

/* After a run that returned rc: the vault opens, verifies and holds what
 * the operation acknowledged (and nothing of one that failed, but for an
 * add or delete that committed before a later step failed). Returns 0 when
 * everything holds. */
static int check_after(const struct op *o, struct opctx *c, int rc)
{
    char title[64];
    int found = 0, n;
    struct stat st;

    /* A failed export or import says why (the vault's message). */
    if ((o->check == CK_BUNDLE_EXPORT || o->check == CK_BUNDLE_PARTS ||
         o->check == CK_BUNDLE_IMPORT) && rc != FV_OK && bundle_opened && !lastmsg[0]) {
        fprintf(stderr, "  %s: %s without a message\n", o->name, fv_strerror(rc));
        return -1;
    }
    if (getenv("FV_FAULT_SHOW") && rc != FV_OK)
        fprintf(stderr, "  %s: %s: %s\n", o->name, fv_strerror(rc), lastmsg);
    if (o->check == CK_BUNDLE_EXPORT) {
        /* The courier's vault as before; the bundle there only when the
         * export succeeded, and then whole: it imports completely. */
        int bad = dir_state(courier_dir, 1) < 0, exists = stat(bundle_out, &st) == 0;
        if (exists != (rc == FV_OK)) {
            fprintf(stderr, "  bundle export: %s, and the file %s\n", fv_strerror(rc),
                    exists ? "is there" : "is not");
            bad = 1;
        }
        if (exists && rc == FV_OK && import_whole(bundle_out) != 0)
            bad = 1;
        unlink(bundle_out);
        coord_reset();
        return bad ? -1 : 0;
    }
    if (o->check == CK_BUNDLE_PARTS) {
        /* No part of a failed export stays; after a successful one, the
         * parts imported one after the other bring in the record whole. */
        char part[2][400];
        int bad = dir_state(courier_dir, 1) < 0, exist[2];
        for (int k = 0; k < 2; k++) {
            snprintf(part[k], sizeof part[k], "%s.%03d", bundle_out, k + 1);
            exist[k] = stat(part[k], &st) == 0;
            if (exist[k] != (rc == FV_OK)) {
                fprintf(stderr, "  bundle parts: %s, and part %d %s\n", fv_strerror(rc), k + 1,
                        exist[k] ? "is there" : "is not");
                bad = 1;
            }
        }
        if (rc == FV_OK && exist[0] && exist[1]) {
            fv_vault *v = NULL;
            int irc = fv_vault_open(&v, coord_dir, PASS, strlen(PASS));
            if (irc == FV_OK)
                irc = fv_bundle_import(v, NULL, part[0]);
            if (irc == FV_OK)
                irc = fv_bundle_import(v, NULL, part[1]);
            if (irc != FV_OK)
                fprintf(stderr, "  the parts' import fails: %s\n", fv_strerror(irc));
            fv_vault_close(v);
            if (irc != FV_OK || dir_state(coord_dir, 1) != 1)
                bad = 1;
        }
        unlink(part[0]);
        unlink(part[1]);
        coord_reset();
        return bad ? -1 : 0;
    }
    if (o->check == CK_BUNDLE_IMPORT) {
        /* The coordinator opens and verifies, holds the record when the
         * import succeeded, and a second import, untouched, brings in
         * everything. */
        int held = dir_state(coord_dir, rc == FV_OK), bad = held < 0;
        if (!bad && import_whole(good_bundle) != 0)
            bad = 1;
        coord_reset();
        return bad ? -1 : 0;
    }
    if (o->check == CK_SERVER_IMPORT) {
        /* The server opens, its chunks are whole, it holds the record when
         * the import succeeded, and a second import brings in everything. */
        int bad = server_imp_state(rc == FV_OK, 0) < 0 || server_import_whole() != 0;
        server_imp_reset();
        return bad ? -1 : 0;
    }
    if (o->check == CK_PASSWD) {
        const char *to = pass == PASS ? PASS2 : PASS;
        n = vault_state(rc == FV_OK ? to : pass, rc == FV_OK ? NULL : to, NULL, NULL);
        return n == c->n ? 0 : -1;
    }
    snprintf(title, sizeof title, "%s %d", o->check == CK_EDIT ? "edited" : "added", c->seq);
    n = vault_state(pass, NULL, title, &found);
    if (n < 0)
        return -1;
    switch (o->check) {
    case CK_RETRACT: {
        /* Else the record may be there, or gone here (retracted, not yet
         * sent). */
        int here = vault_holds(retracted_id), there = server_holds(retracted_id);
        if (server_state_ok(0, NULL) != 0 || here < 0 || there < 0)
            return -1;
        /* Acknowledged: gone here, and retracted at the server, or never
         * there (its first sync failed: the server acknowledged the
         * retraction of a record it never held). Never still held. */
        if (rc == FV_OK ? here || there == 1 || n != c->n : n != c->n && n != c->n + 1) {
            fprintf(stderr, "  retract: %d records of %d, here %d, at the server %d\n", n, c->n,
                    here, there);
            return -1;
        }
        c->n = n;
        return 0;
    }
    case CK_RETENTION: {
        /* Acknowledged: the server holds it, the vault no longer does.
         * Always: nothing is gone here that the server does not hold. */
        static const unsigned char none[FV_ID_BYTES];
        int here = vault_holds(synced_id), there = server_holds(synced_id);
        if (server_state_ok(0, NULL) != 0 || here < 0 || there < 0)
            return -1;
        if (memcmp(synced_id, none, sizeof none) == 0) /* never added */
            here = 1;
        if ((rc == FV_OK && here) || (!here && there != 1)) {
            fprintf(stderr, "  retention: here %d, at the server %d\n", here, there);
            return -1;
        }
        c->n = n;
        return 0;
    }
    case CK_SYNC:
        if (server_state_ok(rc == FV_OK, synced_id) != 0)
            return -1;
        if (rc == FV_OK) { /* acknowledged: the record is delivered */
            fv_vault *v = NULL;
            int delivered = 0;
            if (fv_vault_open(&v, vdir, pass, strlen(pass)) != FV_OK ||
                fv_record_delivered(v, &delivered, synced_id) != FV_OK || !delivered) {
                fprintf(stderr, "  a synced record is not delivered\n");
                fv_vault_close(v);
                return -1;
            }
            fv_vault_close(v);
        }
        /* the record was added first: */
        /* fall through */
    case CK_ADD:
        if (rc == FV_OK ? n != c->n + 1 || !found
                        : !(n == c->n || (n == c->n + 1 && (found || o->check == CK_SYNC))))
            return -1;
        if (n == c->n + 1)
            c->n++;
        return 0;
    case CK_DELETE:
        if (rc == FV_OK ? n != c->n - 1 : !(n == c->n || n == c->n - 1))
            return -1;
        if (n == c->n - 1) /* the next run deletes another */
            prepare(c);
        return 0;
    case CK_EDIT:
        return n == c->n && (rc != FV_OK || found) ? 0 : -1;
    case CK_EXPORT:
        /* The directory appears only when complete, so only on success. */
        if ((stat(outpath, &st) == 0) != (rc == FV_OK))
            return -1;
        fv_remove_tree(outpath);
        return n == c->n ? 0 : -1;
    default:
        return n == c->n ? 0 : -1;
    }
}

/* FV_FAULT_OPS (a debugging aid): only the operations it names. */
static int skip_op(const struct op *o)
{
    const char *only = getenv("FV_FAULT_OPS");
    size_t n = strlen(o->name);
    if (!only)
        return o->extra;
    /* A name of the comma-separated list ("export" is not "bundle-export"). */
    for (const char *p = only; (p = strstr(p, o->name)) != NULL; p++)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 0;
    return 1;
}

/* FV_FAULT_BUDGET: at most this many runs per operation and fault (the
 * points then sampled at an even stride, always the first and the last);
 * 0 exercises every point. The default keeps the test within ctest's
 * budget on a small machine; `FV_FAULT_BUDGET=0 test_faults` is the
 * exhaustive run. */
static long budget = 25;

/* The sync exchange opens the vault and the server in every run, and its
 * points grow with the vault: a smaller share of the default budget. */
static long op_budget(const struct op *o)
{
    return o->check >= CK_SYNC && budget > 0 ? (budget + 1) / 2 : budget;
}

static long stride_for(const struct op *o, long total)
{
    long b = op_budget(o);
    return b <= 0 || total <= b ? 1 : (total + b - 1) / b;
}

/* The next point after n: every stride-th, and the last (total) too;
 * after the last, a point no run reaches, so the loop ends with a run
 * that goes through untouched. (An operation whose work grows with the
 * vault, as a retraction's purge or a sync does, would otherwise be
 * chased past its counted points, run after run.) */
static long next_point(long n, long stride, long total)
{
    if (n >= total)
        return LONG_MAX;
    if (n + stride > total)
        return total;
    return n + stride;
}

/* ---- allocation failure ----------------------------------------------------- */

static long total_points, total_failures;

static void report(const char *what, long points, long failures)
{
    printf("%s: %ld points, %ld failures\n", what, points, failures);
    fflush(stdout);
    total_points += points;
    total_failures += failures;
}

static void run_alloc(void)
{
    long points = 0, failures = 0;
    for (size_t i = 0; i < NOPS; i++) {
        struct opctx c;
        long op_points = 0;
        if (skip_op(&ops[i]))
            continue;
        long total, stride;
        memset(&c, 0, sizeof c);
        prepare(&c);
        /* A run without faults counts the allocations. */
        c.seq++;
        fs_alloc_arm(LONG_MAX);
        CHECK_EQ(ops[i].fn(&c), FV_OK);
        total = fs_alloc_count();
        fs_alloc_arm(0);
        CHECK_EQ(check_after(&ops[i], &c, FV_OK), 0);
        prepare(&c);
        stride = stride_for(&ops[i], total);
        for (long n = 1;; n = next_point(n, stride, total)) {
            int rc, injected;
            long live;
            c.seq++;
            fs_alloc_arm(n);
            rc = ops[i].fn(&c);
            injected = fs_alloc_injected();
            live = fs_alloc_live(0);
            if (live)
                fs_alloc_live(1);
            fs_alloc_arm(0);
            if (!injected) {
                /* The operation ran through: n - 1 allocations to fail. */
                if (rc != FV_OK) {
                    fprintf(stderr, "alloc %s: fails without a fault: %s\n", ops[i].name, fv_strerror(rc));
                    failures++;
                }
                check_after(&ops[i], &c, rc);
                if (ops[i].check == CK_PASSWD)
                    pass = current_pass();
                break;
            }
            op_points++;
            if (rc != FV_OK && !is_fault_result(rc, (const int[]){FV_ENOMEM}, 1)) {
                fprintf(stderr, "alloc %s #%ld: %s, not FV_ENOMEM (%s)\n", ops[i].name, n, fv_strerror(rc), lastmsg);
                failures++;
            }
            if (live) {
                fprintf(stderr, "alloc %s #%ld: %ld allocations leaked\n", ops[i].name, n, live);
                failures++;
            }
            if (check_after(&ops[i], &c, rc) != 0) {
                fprintf(stderr, "alloc %s #%ld (%s): vault not as acknowledged\n", ops[i].name, n,
                        fv_strerror(rc));
                failures++;
            }
            if (ops[i].check == CK_PASSWD && rc == FV_OK)
                pass = current_pass();
        }
        printf("  alloc %s: %ld of %ld points\n", ops[i].name, op_points, total);
        points += op_points;
    }
    report("alloc", points, failures);
    CHECK_EQ(failures, 0);
}

/* ---- I/O errors --------------------------------------------------------------- */

static void run_io(void)
{
    static const struct {
        int kind, err;
        const char *name;
    } faults[] = {
        {FS_OPEN, EIO, "open EIO"},   {FS_READ, EIO, "read EIO"},
        {FS_WRITE, EIO, "write EIO"}, {FS_WRITE, ENOSPC, "write ENOSPC"},
        {FS_SYNC, EIO, "sync EIO"},
    };
    long points = 0, failures = 0;
    for (size_t i = 0; i < NOPS; i++) {
        long op_points = 0, op_total = 0;
        if (skip_op(&ops[i]))
            continue;
        for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
            struct opctx c;
            long total, stride;
            memset(&c, 0, sizeof c);
            prepare(&c);
            /* A run without faults counts the operations of this kind. */
            c.seq++;
            fs_io_arm(faults[f].kind, LONG_MAX, faults[f].err);
            CHECK_EQ(ops[i].fn(&c), FV_OK);
            total = fs_io_count(faults[f].kind);
            fs_io_arm(0, 0, 0);
            CHECK_EQ(check_after(&ops[i], &c, FV_OK), 0);
            prepare(&c);
            op_total += total;
            stride = stride_for(&ops[i], total);
            for (long n = 1;; n = next_point(n, stride, total)) {
                int rc, injected, own_sync;
                long live;
                c.seq++;
                fs_alloc_arm(LONG_MAX); /* track leaks, fail nothing */
                fs_io_arm(faults[f].kind, n, faults[f].err);
                own_sync_reported = 0;
                rc = ops[i].fn(&c);
                injected = fs_io_injected();
                own_sync = fs_io_injected_own_sync();
                fs_io_arm(0, 0, 0);
                live = fs_alloc_live(0);
                if (live)
                    fs_alloc_live(1);
                fs_alloc_arm(0);
                if (!injected) {
                    if (rc != FV_OK) {
                        fprintf(stderr, "io %s: fails without a fault: %s\n", ops[i].name, fv_strerror(rc));
                        failures++;
                    }
                    check_after(&ops[i], &c, rc);
                    pass = current_pass();
                    break;
                }
                op_points++;
                /* Never FV_ECORRUPT: a failing disk is not a tampered vault
                 * (SQLite's EIO on read goes through core/store_db.c's VFS). */
                if (rc != FV_OK &&
                    !is_fault_result(rc, (const int[]){FV_EIO, FV_ENOSPC}, 2)) {
                    fprintf(stderr, "io %s %s #%ld: %s (%s)\n", ops[i].name, faults[f].name, n, fv_strerror(rc), lastmsg);
                    failures++;
                }
                if (rc == FV_OK && own_sync && !own_sync_reported) {
                    fprintf(stderr, "io %s %s #%ld: a failed sync reported as success\n", ops[i].name,
                            faults[f].name, n);
                    failures++;
                }
                if (live) {
                    fprintf(stderr, "io %s %s #%ld: %ld allocations leaked\n", ops[i].name, faults[f].name, n, live);
                    failures++;
                }
                if (check_after(&ops[i], &c, rc) != 0) {
                    fprintf(stderr, "io %s %s #%ld (%s): vault not as acknowledged\n", ops[i].name,
                            faults[f].name, n, fv_strerror(rc));
                    failures++;
                }
                if (ops[i].check == CK_PASSWD)
                    pass = current_pass();
            }
        }
        printf("  io %s: %ld of %ld points\n", ops[i].name, op_points, op_total);
        points += op_points;
    }
    report("io", points, failures);
    CHECK_EQ(failures, 0);
}

/* ---- power loss --------------------------------------------------------------- */

/* What the child acknowledged, shared with the parent. */
struct acks {
    long syncs; /* all syncs of the sequence, when it ran to its end */
    int step;   /* steps acknowledged */
    unsigned char a[FV_ID_BYTES], b[FV_ID_BYTES];
    unsigned char pin[32]; /* the TLS identity's, once acknowledged */
};

enum { ST_OPEN = 1, ST_ADD_A, ST_EDIT_A, ST_ADD_B, ST_DELETE_B, ST_PASSWD, ST_ADD_C, ST_CLOSE };

/* The sequence a child runs up to its crash. */
static void power_child(struct acks *k, long crash_at)
{
    const char *dirs[] = {vdir};
    fv_vault *v = NULL;
    fv_record_input in = FV_RECORD_INPUT_INIT;

    fs_power_begin(dirs, 1, crash_at);
    if (fv_vault_open(&v, vdir, PASS, strlen(PASS)) != FV_OK)
        _exit(2);
    k->step = ST_OPEN;
    if (add_one(v, k->a, "record A", 1) != FV_OK)
        _exit(2);
    k->step = ST_ADD_A;
    in.title = "record A, edited";
    if (fv_record_edit(v, NULL, k->a, &in) != FV_OK)
        _exit(2);
    k->step = ST_EDIT_A;
    if (add_one(v, k->b, "record B", 0) != FV_OK)
        _exit(2);
    k->step = ST_ADD_B;
    if (fv_record_delete(v, k->b) != FV_OK)
        _exit(2);
    k->step = ST_DELETE_B;
    if (fv_vault_passwd(v, PASS2, strlen(PASS2)) != FV_OK)
        _exit(2);
    k->step = ST_PASSWD;
    if (add_one(v, NULL, "record C", 0) != FV_OK)
        _exit(2);
    k->step = ST_ADD_C;
    fv_vault_close(v);
    k->step = ST_CLOSE;
    k->syncs = fs_power_syncs();
    fs_power_crash();
}

static int integrity_ok(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/vault.db", vdir);
    return db_integrity_ok(path);
}

/* The vault after the crash holds every acknowledged step. */
static int power_check(const struct acks *k)
{
    fv_vault *v = NULL;
    fv_record *r = NULL;
    uint64_t sum = 0;
    int rc, bad = 0;
    struct seen s = {0, "record C", 0};

    if (!integrity_ok()) {
        fprintf(stderr, "  integrity_check fails\n");
        return -1;
    }
    rc = fv_vault_open(&v, vdir, PASS2, strlen(PASS2));
    if (rc == FV_EPASSPHRASE && k->step < ST_PASSWD)
        rc = fv_vault_open(&v, vdir, PASS, strlen(PASS));
    if (rc != FV_OK) {
        fprintf(stderr, "  the vault does not open: %s\n", fv_strerror(rc));
        return -1;
    }
    if ((rc = fv_vault_verify(v, NULL, NULL, NULL)) != FV_OK) {
        fprintf(stderr, "  verify: %s\n", fv_strerror(rc));
        bad = 1;
    }
    if (k->step >= ST_ADD_A) {
        if ((rc = fv_record_get(v, &r, k->a)) != FV_OK) {
            fprintf(stderr, "  acknowledged record A missing: %s\n", fv_strerror(rc));
            bad = 1;
        } else if (k->step >= ST_EDIT_A && strcmp(r->title, "record A, edited") != 0) {
            fprintf(stderr, "  acknowledged edit of A missing\n");
            bad = 1;
        }
        fv_record_free(r);
        r = NULL;
        if (fv_attachment_read(v, k->a, "photo.jpg", sum_cb, &sum, NULL, NULL) != FV_OK ||
            sum != ATTACH_BYTES) {
            fprintf(stderr, "  acknowledged attachment of A unreadable\n");
            bad = 1;
        }
    }
    if (k->step >= ST_ADD_B) {
        rc = fv_record_get(v, &r, k->b);
        fv_record_free(r);
        r = NULL;
        /* While the delete runs, B may be there or gone. */
        if (k->step == ST_ADD_B ? rc != FV_OK && rc != FV_ENOTFOUND
                                : rc != (k->step < ST_DELETE_B ? FV_OK : FV_ENOTFOUND)) {
            fprintf(stderr, "  record B: %s after step %d\n", fv_strerror(rc), k->step);
            bad = 1;
        }
    }
    if (fv_vault_list(v, seen_cb, &s) != FV_OK || (k->step >= ST_ADD_C && !s.title_found)) {
        fprintf(stderr, "  acknowledged record C missing\n");
        bad = 1;
    }
    fv_vault_close(v);
    return bad ? -1 : 0;
}

/* Runs `child` in a fork for every sync boundary (crash_at 1, 2, ... until
 * one past its last sync), each after the shell command `reset`, and
 * `check` after each crash; reports the points as `what`. */
static void power_points(const char *what, const char *reset,
                         void (*child)(struct acks *k, long crash_at, void *ctx),
                         int (*check)(const struct acks *k, void *ctx), void *ctx)
{
    long points = 0, failures = 0;
    struct acks *k = mmap(NULL, sizeof *k, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    CHECK(k != MAP_FAILED);
    if (k == MAP_FAILED)
        return;
    for (long crash_at = 1;; crash_at++) {
        pid_t pid;
        int status = 0;
        CHECK_EQ(system(reset), 0);
        memset(k, 0, sizeof *k);
        k->syncs = -1;
        fflush(NULL);
        if ((pid = fork()) == 0)
            child(k, crash_at, ctx);
        CHECK(pid > 0);
        waitpid(pid, &status, 0);
        points++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 99) {
            fprintf(stderr, "%s #%ld: the child failed (status %d, step %d)\n", what, crash_at, status,
                    k->step);
            failures++;
        } else if (check(k, ctx) != 0) {
            fprintf(stderr, "%s #%ld: lost power after step %d\n", what, crash_at, k->step);
            failures++;
        }
        if (k->syncs >= 0 && k->syncs < crash_at)
            break;
        if (crash_at > 2000) { /* never reaching the end means a bug */
            failures++;
            break;
        }
    }
    munmap(k, sizeof *k);
    report(what, points, failures);
    CHECK_EQ(failures, 0);
}

static void power_vault_child(struct acks *k, long crash_at, void *ctx)
{
    (void)ctx;
    power_child(k, crash_at);
}

static int power_vault_check(const struct acks *k, void *ctx)
{
    (void)ctx;
    return power_check(k);
}

static void run_power(void)
{
    char base[320], cmd[2048];
    fv_vault *v = NULL;
    fv_create_options o = FV_CREATE_OPTIONS_INIT;

    /* The starting vault: one record, closed (so its WAL is checkpointed
     * away and the two files are all of it). */
    snprintf(base, sizeof base, "%s/power-base", root);
    snprintf(vdir, sizeof vdir, "%s/power", root);
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, base, PASS, strlen(PASS), &o), FV_OK);
    CHECK_EQ(add_one(v, NULL, "before", 0), FV_OK);
    fv_vault_close(v);
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s' && mkdir -m 700 '%s' && cp '%s/vault.db' "
             "'%s/vault.key' '%s/'", vdir, vdir, base, base, vdir);
    power_points("power", cmd, power_vault_child, power_vault_check, NULL);
}

/* ---- the server's packs ------------------------------------------------------- */

/* The server store's first chunk makes the chunk directory and a pack, and
 * syncs the directories that gained them. A sync failing there fails the
 * append (FV_EIO), never reports it done, and leaves nothing half made: the
 * next append, unfaulted, works and its bytes read back. */
static void run_packs(void)
{
    long points = 0, failures = 0;
    unsigned char data[1000], back[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 31 + 7);
    for (long n = 1;; n++) {
        char dir[400], db[420];
        fv_sstore *st = NULL;
        fv_sstore_chunkloc loc;
        int rc, injected, own_sync;
        snprintf(dir, sizeof dir, "%s/packs-%ld", root, n);
        snprintf(db, sizeof db, "%s/server.db", dir);
        CHECK_EQ(mkdir(dir, 0700), 0);
        CHECK_EQ(fv_sstore_open(&st, db, 1), FV_OK);
        if (!st)
            break;
        fs_io_arm(FS_SYNC, n, EIO);
        rc = fv_sstore_chunk_append(st, data, sizeof data, &loc);
        if (rc == FV_OK)
            rc = fv_sstore_chunk_sync(st);
        injected = fs_io_injected();
        own_sync = fs_io_injected_own_sync();
        fs_io_arm(0, 0, 0);
        if (!injected) {
            CHECK_EQ(rc, FV_OK);
            fv_sstore_close(st);
            break;
        }
        points++;
        if (own_sync && rc == FV_OK) {
            fprintf(stderr, "packs sync EIO #%ld: a failed sync reported as success\n", n);
            failures++;
        } else if (rc != FV_OK && rc != FV_EIO) {
            fprintf(stderr, "packs sync EIO #%ld: %s (%s)\n", n, fv_strerror(rc), fv_sstore_errmsg(st));
            failures++;
        }
        if (fv_sstore_chunk_append(st, data, sizeof data, &loc) != FV_OK ||
            fv_sstore_chunk_sync(st) != FV_OK || fv_sstore_chunk_read(st, &loc, back) != FV_OK ||
            memcmp(back, data, sizeof data) != 0) {
            fprintf(stderr, "packs sync EIO #%ld: the next append does not work: %s\n", n,
                    fv_sstore_errmsg(st));
            failures++;
        }
        fv_sstore_close(st);
    }
    CHECK(points >= 2); /* the chunk directory's parent, then the new pack's */
    report("packs", points, failures);
}

/* ---- power loss during a sync: the server's packs ----------------------- */

enum { SS_ADDED = 1, SS_SYNCED, SS_CLOSED };

/* Adds a record with the attachment and syncs it, up to the crash. */
static void power_sync_child(struct acks *k, long crash_at, const char *sdir)
{
    const char *dirs[] = {vdir, sdir};
    fv_vault *v = NULL;
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    int delivered = 0;

    fs_power_begin(dirs, 2, crash_at);
    if (fv_vault_open(&v, vdir, pass, strlen(pass)) != FV_OK)
        _exit(2);
    if (add_one(v, k->a, "record S", 1) != FV_OK)
        _exit(2);
    k->step = SS_ADDED;
    if (server_open() != FV_OK || converse(v, &req, NULL) != FV_OK)
        _exit(2);
    server_close();
    if (fv_record_delivered(v, &delivered, k->a) != FV_OK || !delivered)
        _exit(2);
    k->step = SS_SYNCED;
    fv_vault_close(v);
    k->step = SS_CLOSED;
    k->syncs = fs_power_syncs();
    fs_power_crash();
}

/* Every chunk the server's database lists is whole in its pack. */
static int server_chunks_ok(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    static unsigned char buf[FV_MAX_CHUNK_BYTES + FV_TAG_BYTES + 64];
    int bad = 0, n = 0;
    if (sqlite3_open_v2(server_db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT hash FROM chunk", -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (server_open() != FV_OK) {
        sqlite3_finalize(st);
        sqlite3_close(db);
        return -1;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        fv_sstore_chunkloc loc;
        unsigned char got[FV_HASH_BYTES];
        const unsigned char *h = sqlite3_column_blob(st, 0);
        n++;
        if (sqlite3_column_bytes(st, 0) != 32 || fv_sstore_chunk_find(sstore, h, NULL, &loc) != FV_OK ||
            loc.len > sizeof buf || fv_sstore_chunk_read(sstore, &loc, buf) != FV_OK) {
            bad++;
            continue;
        }
        fv_hash(got, buf, loc.len);
        if (memcmp(got, h, 32) != 0)
            bad++;
    }
    server_chunks_seen = n;
    server_close();
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (bad)
        fprintf(stderr, "  %d of %d chunks the server lists are not whole in its packs\n", bad, n);
    return bad ? -1 : 0;
}

/* After the crash: both databases pass integrity_check, the vault opens
 * and verifies, every chunk the server lists is whole, an acknowledged
 * delivery is at the server, and the next sync completes (delivering the
 * record when its add was acknowledged). */
static int power_sync_check(const struct acks *k)
{
    char path[400];
    fv_vault *v = NULL;
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    int rc, delivered = 0;

    snprintf(path, sizeof path, "%s/vault.db", vdir);
    if (!db_integrity_ok(path) || !db_integrity_ok(server_db)) {
        fprintf(stderr, "  integrity_check fails\n");
        return -1;
    }
    if (vault_state(pass, NULL, NULL, NULL) < 0 || server_chunks_ok() != 0)
        return -1;
    if (k->step >= SS_SYNCED && server_holds(k->a) != 1) {
        fprintf(stderr, "  the server lost an acknowledged record\n");
        return -1;
    }
    if ((rc = fv_vault_open(&v, vdir, pass, strlen(pass))) == FV_OK &&
        (rc = server_open()) == FV_OK) {
        rc = converse(v, &req, NULL);
        server_close();
        if (rc == FV_OK && k->step >= SS_ADDED &&
            (fv_record_delivered(v, &delivered, k->a) != FV_OK || !delivered))
            rc = FV_EIO;
    }
    fv_vault_close(v);
    if (rc != FV_OK) {
        fprintf(stderr, "  the next sync fails: %s (%s)\n", fv_strerror(rc), lastmsg);
        return -1;
    }
    return server_chunks_ok();
}

static void psync_child(struct acks *k, long crash_at, void *ctx)
{
    power_sync_child(k, crash_at, ctx);
}

static int psync_check(const struct acks *k, void *ctx)
{
    (void)ctx;
    return power_sync_check(k);
}

static void run_power_sync(void)
{
    char base[300], sdir[300], cmd[2400];
    char main_vdir[320], main_sdb[400];

    /* The starting state: the test's vault and server, closed, copied. */
    snprintf(main_vdir, sizeof main_vdir, "%s", vdir);
    snprintf(main_sdb, sizeof main_sdb, "%s", server_db);
    pass = current_pass();
    snprintf(base, sizeof base, "%s/psync-base", root);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -a '%s' '%s/vault' && cp -a '%s/server' '%s/server'",
             base, vdir, base, root, base);
    CHECK_EQ(system(cmd), 0);
    snprintf(vdir, sizeof vdir, "%s/psync/vault", root);
    snprintf(sdir, sizeof sdir, "%s/psync/server", root);
    snprintf(server_db, sizeof server_db, "%s/server.db", sdir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s/psync' && mkdir -m 700 '%s/psync' && cp -a '%s/vault' '%s' && "
             "cp -a '%s/server' '%s'", root, root, base, vdir, base, sdir);
    power_points("power sync", cmd, psync_child, psync_check, sdir);
    snprintf(vdir, sizeof vdir, "%s", main_vdir);
    snprintf(server_db, sizeof server_db, "%s", main_sdb);
}


/* ---- power loss while the server's TLS identity is written ------------------ */

enum { SI_CREATED = 1, SI_RENEWED };

/* 340 days on: a certificate made now has less than 30 days left. */
#define TLS_LATER (340 * 86400LL)

/* The server's TLS identity made (the key, then its self-signed
 * certificate, as `server init` does) and its certificate renewed, up to
 * the crash. */
static void power_tls_child(struct acks *k, long crash_at, const char *dir, const char *key,
                            const char *crt)
{
    const char *dirs[] = {dir};
    int renewed = 0;

    fs_power_begin(dirs, 1, crash_at);
    if (fv_tls_identity_create_named(key, crt, "fault.example", k->pin) != FV_OK)
        _exit(2);
    k->step = SI_CREATED;
    if (fv_tls_cert_renew(key, crt, NULL, (int64_t)time(NULL) + TLS_LATER, &renewed) != FV_OK ||
        !renewed)
        _exit(2);
    k->step = SI_RENEWED;
    k->syncs = fs_power_syncs();
    fs_power_crash();
}

/* After the crash: an acknowledged identity is there with the pin devices
 * learned (the key and a certificate for it); an acknowledged renewal is
 * durable (the certificate needs no renewal 340 days on). An identity not
 * acknowledged may be missing or partial, but a certificate that parses is
 * never for another key. */
static int power_tls_check(const struct acks *k, const char *key, const char *crt)
{
    unsigned char got[32];
    int renewed = -1, rc;

    if (k->step < SI_CREATED) {
        if (fv_tls_identity_pin(crt, got) != FV_OK)
            return 0; /* nothing whole: `server init` had not answered */
        rc = fv_tls_cert_renew(key, crt, NULL, (int64_t)time(NULL), &renewed);
        if (rc == FV_ECORRUPT || rc == FV_EPIN) {
            fprintf(stderr, "  the certificate is not for the key: %s\n", fv_strerror(rc));
            return -1;
        }
        return 0;
    }
    if (fv_tls_identity_pin(crt, got) != FV_OK || memcmp(got, k->pin, 32) != 0) {
        fprintf(stderr, "  the acknowledged identity's pin is lost or changed\n");
        return -1;
    }
    if ((rc = fv_tls_cert_renew(key, crt, NULL, (int64_t)time(NULL), &renewed)) != FV_OK) {
        fprintf(stderr, "  the acknowledged identity does not load: %s\n", fv_strerror(rc));
        return -1;
    }
    if (k->step >= SI_RENEWED) {
        rc = fv_tls_cert_renew(key, crt, NULL, (int64_t)time(NULL) + TLS_LATER, &renewed);
        if (rc != FV_OK || renewed) {
            fprintf(stderr, "  the acknowledged renewal is lost (%s)\n", fv_strerror(rc));
            return -1;
        }
    }
    if (fv_tls_identity_pin(crt, got) != FV_OK || memcmp(got, k->pin, 32) != 0) {
        fprintf(stderr, "  the pin changed\n");
        return -1;
    }
    return 0;
}

struct tls_files {
    const char *dir, *key, *crt;
};

static void tls_child(struct acks *k, long crash_at, void *ctx)
{
    const struct tls_files *x = ctx;
    power_tls_child(k, crash_at, x->dir, x->key, x->crt);
}

static int tls_check(const struct acks *k, void *ctx)
{
    const struct tls_files *x = ctx;
    return power_tls_check(k, x->key, x->crt);
}

static void run_power_tls(void)
{
    char dir[300], key[400], crt[400], cmd[700];
    struct tls_files x = {dir, key, crt};

    snprintf(dir, sizeof dir, "%s/ptls", root);
    snprintf(key, sizeof key, "%s/tls.key", dir);
    snprintf(crt, sizeof crt, "%s/tls.crt", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -m 700 '%s'", dir, dir);
    power_points("power tls", cmd, tls_child, tls_check, &x);
}

/* ---- power loss during a bundle import -------------------------------------- */

enum { SB_IMPORTED = 1, SB_CLOSED };

/* ---- power loss during `server import` ---------------------------------------- */

/* Whether the server in directory `dir` holds the courier's record (1, 0;
 * -1 if its database fails integrity_check or does not open). */
static int psrv_holds(const char *dir)
{
    char db[400];
    unsigned char origin[32];
    fv_sstore *st = NULL;
    int rc;
    snprintf(db, sizeof db, "%s/server.db", dir);
    if (!db_integrity_ok(db) || fv_sstore_open(&st, db, 0) != FV_OK)
        return -1;
    rc = fv_sstore_record_origin(st, courier_id, origin);
    fv_sstore_close(st);
    return rc == FV_OK ? 1 : rc == FV_ENOTFOUND ? 0 : -1;
}

/* `server import` of the courier's bundle into a real server directory
 * (its database, keys and identity loaded as `serve` loads them), up to the
 * crash. */
static void power_srvimp_child(struct acks *k, long crash_at, void *ctx)
{
    const char *dirs[] = {ctx}, *dir = ctx;
    fs_power_begin(dirs, 1, crash_at);
    if (fv_server_import_with(dir, good_bundle, NULL, NULL) != FV_OK)
        _exit(2);
    k->step = SB_IMPORTED;
    k->syncs = fs_power_syncs();
    fs_power_crash();
}

/* After the crash: the database passes integrity_check, an acknowledged
 * import's record is there, and the next import, untouched, loads the
 * directory and its keys and completes with the record there. */
static int power_srvimp_check(const struct acks *k, void *ctx)
{
    const char *dir = ctx;
    const char *why = NULL;
    int held = psrv_holds(dir), rc;
    if (held < 0 || (k->step >= SB_IMPORTED && held != 1)) {
        fprintf(stderr, "  the server is damaged or lost the import (%d)\n", held);
        return -1;
    }
    if ((rc = fv_server_import_with(dir, good_bundle, NULL, &why)) != FV_OK) {
        fprintf(stderr, "  the next import fails: %s (%s)\n", fv_strerror(rc), why ? why : "");
        return -1;
    }
    return psrv_holds(dir) == 1 ? 0 : -1;
}

static void run_power_server_import(void)
{
    char base[300], dir[300], db[400], cmd[1400], *invite = NULL;
    unsigned char tpin[32], sp[32], box[32];
    fv_sstore *st = NULL;
    fv_sstore_device d;
    fv_vault *v = NULL;

    /* A real server (`server init`) where the courier is enrolled. */
    snprintf(base, sizeof base, "%s/psrv-base", root);
    snprintf(dir, sizeof dir, "%s/psrv", root);
    CHECK_EQ(fv_server_init(base, "127.0.0.1:1", tpin, &invite), FV_OK);
    free(invite);
    CHECK_EQ(fv_vault_open(&v, courier_dir, PASS, strlen(PASS)), FV_OK);
    fv_vs_device(v, sp, box);
    fv_vault_close(v);
    memset(&d, 0, sizeof d);
    memcpy(d.pk, sp, 32);
    memcpy(d.box, box, 32);
    memcpy(d.name, "courier", 8);
    d.name_len = 7;
    d.role = FV_ROLE_FIELD;
    d.enrolled = (int64_t)time(NULL);
    snprintf(db, sizeof db, "%s/server.db", base);
    CHECK_EQ(fv_sstore_open(&st, db, 0), FV_OK);
    CHECK_EQ(fv_sstore_device_add(st, &d), FV_OK);
    fv_sstore_close(st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", dir, base, dir);
    power_points("power server import", cmd, power_srvimp_child, power_srvimp_check, dir);
}


/* The coordinator imports the courier's bundle, up to the crash. */
static void power_bundle_child(struct acks *k, long crash_at)
{
    const char *dirs[] = {coord_dir};
    fv_vault *v = NULL;

    fs_power_begin(dirs, 1, crash_at);
    if (fv_vault_open(&v, coord_dir, PASS, strlen(PASS)) != FV_OK)
        _exit(2);
    if (fv_bundle_import(v, NULL, good_bundle) != FV_OK)
        _exit(2);
    k->step = SB_IMPORTED;
    fv_vault_close(v);
    k->step = SB_CLOSED;
    k->syncs = fs_power_syncs();
    fs_power_crash();
}

/* The courier exports to a new file in its own directory, up to the
 * crash. */
static void power_export_child(struct acks *k, long crash_at, const char *odir, const char *out)
{
    const char *dirs[] = {courier_dir, odir};
    fv_vault *v = NULL;

    fs_power_begin(dirs, 2, crash_at);
    if (fv_vault_open(&v, courier_dir, PASS, strlen(PASS)) != FV_OK)
        _exit(2);
    if (fv_bundle_export(v, NULL, out, NULL) != FV_OK)
        _exit(2);
    k->step = SB_IMPORTED; /* the export acknowledged */
    fv_vault_close(v);
    k->step = SB_CLOSED;
    k->syncs = fs_power_syncs();
    fs_power_crash();
}

/* After a crash during an export: the courier's vault verifies; a bundle
 * file there after an acknowledged export imports whole; any other file
 * left either imports whole or is refused as damaged or cut short, and
 * the coordinator still verifies. */
static int power_export_check(const struct acks *k, const char *out)
{
    struct stat st;
    fv_vault *v = NULL;
    int rc, bad = dir_state(courier_dir, 1) < 0;
    if (stat(out, &st) != 0) {
        if (k->step >= SB_IMPORTED) {
            fprintf(stderr, "  an acknowledged bundle is gone\n");
            bad = 1;
        }
        return bad ? -1 : 0;
    }
    rc = fv_vault_open(&v, coord_dir, PASS, strlen(PASS));
    if (rc == FV_OK)
        rc = fv_bundle_import(v, NULL, out);
    fv_vault_close(v);
    if (rc == FV_OK ? dir_state(coord_dir, 1) != 1
                    : k->step >= SB_IMPORTED || rc != FV_ECORRUPT || dir_state(coord_dir, 0) < 0) {
        fprintf(stderr, "  the bundle left (%lld bytes) imports with %s\n", (long long)st.st_size,
                fv_strerror(rc));
        bad = 1;
    }
    coord_reset();
    return bad ? -1 : 0;
}

static void run_power_export(void)
{
    char odir[400], out[480], cmd[1000];
    long points = 0, failures = 0;
    struct acks *k = mmap(NULL, sizeof *k, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    CHECK(k != MAP_FAILED);
    snprintf(odir, sizeof odir, "%s/out", root);
    snprintf(out, sizeof out, "%s/export.fvb", odir);
    for (long crash_at = 1;; crash_at++) {
        pid_t pid;
        int status = 0;
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -m 700 '%s'", odir, odir);
        CHECK_EQ(system(cmd), 0);
        memset(k, 0, sizeof *k);
        k->syncs = -1;
        fflush(NULL);
        if ((pid = fork()) == 0)
            power_export_child(k, crash_at, odir, out);
        CHECK(pid > 0);
        waitpid(pid, &status, 0);
        points++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 99) {
            fprintf(stderr, "power export #%ld: the child failed (status %d, step %d)\n", crash_at, status,
                    k->step);
            failures++;
        } else if (power_export_check(k, out) != 0) {
            fprintf(stderr, "power export #%ld: lost power after step %d\n", crash_at, k->step);
            failures++;
        }
        if (k->syncs >= 0 && k->syncs < crash_at)
            break;
        if (crash_at > 2000) {
            failures++;
            break;
        }
    }
    report("power export", points, failures);
    CHECK_EQ(failures, 0);
}

/* For every sync boundary of an import: after the crash the coordinator
 * passes integrity_check, opens and verifies, holds the record whole when
 * the import was acknowledged, and the next import completes. */
static void run_power_bundle(void)
{
    long points = 0, failures = 0;
    struct acks *k = mmap(NULL, sizeof *k, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    CHECK(k != MAP_FAILED);
    for (long crash_at = 1;; crash_at++) {
        pid_t pid;
        int status = 0;
        coord_reset();
        memset(k, 0, sizeof *k);
        k->syncs = -1;
        fflush(NULL);
        if ((pid = fork()) == 0)
            power_bundle_child(k, crash_at);
        CHECK(pid > 0);
        waitpid(pid, &status, 0);
        points++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 99) {
            fprintf(stderr, "power bundle #%ld: the child failed (status %d, step %d)\n", crash_at, status,
                    k->step);
            failures++;
        } else if (dir_state(coord_dir, k->step >= SB_IMPORTED) < 0 || import_whole(good_bundle) != 0) {
            fprintf(stderr, "power bundle #%ld: lost power after step %d\n", crash_at, k->step);
            failures++;
        }
        if (k->syncs >= 0 && k->syncs < crash_at)
            break;
        if (crash_at > 2000) { /* never reaching the end means a bug */
            failures++;
            break;
        }
    }
    coord_reset();
    report("power bundle", points, failures);
    CHECK_EQ(failures, 0);
}

int main(int argc, char **argv)
{
    fv_vault *v = NULL;
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    int do_alloc = argc < 2, do_io = argc < 2, do_power = argc < 2, do_packs = argc < 2,
        do_power_sync = 0, do_power_bundle = 0, do_power_tls = 0;
    unsigned char *buf;
    const char *b = getenv("FV_FAULT_BUDGET");

    for (int i = 1; i < argc; i++) {
        do_alloc |= !strcmp(argv[i], "alloc");
        do_io |= !strcmp(argv[i], "io");
        do_power |= !strcmp(argv[i], "power");
        do_packs |= !strcmp(argv[i], "packs");
        do_power_sync |= !strcmp(argv[i], "power-sync");
        do_power_bundle |= !strcmp(argv[i], "power-bundle");
        do_power_tls |= !strcmp(argv[i], "power-tls");
    }
    if (b)
        budget = atol(b);
    snprintf(root, sizeof root, "/tmp/fv-faults-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    fs_set_root(root);
    snprintf(vdir, sizeof vdir, "%s/vault", root);
    snprintf(attach, sizeof attach, "%s/photo.jpg", root);
    snprintf(outpath, sizeof outpath, "%s/evidence", root);

    /* The attachment: two chunks of pseudo-random bytes. */
    buf = malloc(ATTACH_BYTES);
    CHECK(buf != NULL);
    for (size_t i = 0; buf && i < ATTACH_BYTES; i++)
        buf[i] = (unsigned char)(i * 2654435761u >> 13);
    {
        int fd = open(attach, O_WRONLY | O_CREAT | O_EXCL, 0600);
        CHECK(fd >= 0 && buf && write(fd, buf, ATTACH_BYTES) == (ssize_t)ATTACH_BYTES);
        close(fd);
    }
    free(buf);

    /* The vault: two records with an attachment. Warm-up: one run of every
     * operation before counting, so that SQLite's and libsodium's one-time
     * global set-up is not taken for a leak. */
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, vdir, PASS, strlen(PASS), &o), FV_OK);
    CHECK_EQ(add_one(v, NULL, "first", 1), FV_OK);
    CHECK_EQ(add_one(v, NULL, "second", 1), FV_OK);
    fv_vault_close(v);
    for (size_t i = 0; i < NOPS; i++)
        if (do_power_sync || do_power_bundle || (ops[i].check >= CK_SYNC && !skip_op(&ops[i]))) {
            server_setup();
            break;
        }
    for (size_t i = 0; i < NOPS; i++) {
        struct opctx c;
        if (ops[i].check == CK_DELETE || ops[i].check == CK_PASSWD || skip_op(&ops[i]))
            continue;
        memset(&c, 0, sizeof c);
        prepare(&c);
        CHECK_EQ(ops[i].fn(&c), FV_OK);
        fv_remove_tree(outpath);
        unlink(bundle_out);
        if (ops[i].check == CK_BUNDLE_PARTS) {
            char part[400];
            for (int k = 1; k <= 2; k++) {
                snprintf(part, sizeof part, "%s.%03d", bundle_out, k);
                unlink(part);
            }
        }
        if (ops[i].check == CK_BUNDLE_IMPORT)
            coord_reset();
        if (ops[i].check == CK_SERVER_IMPORT)
            server_imp_reset();
    }

    if (do_alloc)
        run_alloc();
    if (do_io)
        run_io();
    if (do_power_sync)
        run_power_sync();
    if (do_power_bundle) {
        run_power_bundle();
        run_power_export();
        run_power_server_import();
    }
    if (do_power_tls)
        run_power_tls();
    if (do_power)
        run_power();
    if (do_packs)
        run_packs();
    printf("faults: %ld points, %ld failures\n", total_points, total_failures);
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", root);
    }
    return check_summary("test_faults");
}
