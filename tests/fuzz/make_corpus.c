/*
 * make_corpus.c - writes the fuzz fixture (tests/fuzz/fixture/) and the seed
 * corpora (tests/fuzz/corpus/TARGET/) from real traffic: a real server
 * directory (fv_server_init) and real vaults, a coordinator and a field
 * device, enrolled and syncing through the real device and server engines
 * (sync/client.c, server/server_engine.c), their bytes moved in memory and
 * recorded both ways. Then: every frame of that traffic, the envelopes it
 * carried and their payloads (opened with the vaults' keys), courier
 * bundles, invites, an organisation key file, vault files, and the test
 * vectors (tests/vectors/ and tests/vectors/v2/). The v2-* seeds of the
 * envelope, payload and codec corpora were added from tests/vectors/v2
 * (each envelope, and its payload prefixed by its kind) when format 2
 * came; a later run keeps them, as it keeps every input not named seed-*.
 *
 * The fixture is the state every harness copies per input; the traffic
 * recorded after it was written starts from exactly that state, so those
 * seeds reach as deep as a real sync does.
 *
 * Usage: make_corpus OUT_DIR VECTORS_DIR (scripts/fuzz --corpus runs it
 * with tests/fuzz and tests/vectors). Run by hand when a format or the
 * protocol changes; its output is committed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "common.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault_sync.h"
#include "server.h"
#include "vault_sync.h"

static char out_dir[FZ_PATH_MAX];
static fz_server server;
static fz_keys coord_keys, field_keys;
static int written;

static void die(const char *what, int rc)
{
    fprintf(stderr, "make_corpus: %s: %s\n", what, fv_strerror(rc));
    exit(1);
}

/* Removes the seeds an earlier run wrote (seed-*: they match the fixture
 * it replaced); inputs kept for a fixed crash have other names and stay. */
static void remove_old_seeds(void)
{
    char dir[FZ_PATH_MAX];
    DIR *top, *d;
    struct dirent *t, *de;
    snprintf(dir, sizeof dir, "%s/corpus", out_dir);
    if (!(top = opendir(dir)))
        return;
    while ((t = readdir(top)) != NULL) {
        char sub[FZ_PATH_MAX];
        if (t->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, t->d_name);
        if (!(d = opendir(sub)))
            continue;
        while ((de = readdir(d)) != NULL) {
            char p[FZ_PATH_MAX];
            if (strncmp(de->d_name, "seed-", 5) != 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", sub, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    closedir(top);
}

/* Writes one seed into corpus/TARGET, named by its hash (so a seed is
 * written once however often the traffic repeats it). */
static void seed(const char *target, const void *p, size_t n)
{
    char path[FZ_PATH_MAX], hex[FV_ID_HEX_BYTES];
    unsigned char h[32];
    struct stat sb;
    fv_hash(h, p, n);
    fv_id_to_hex(hex, h);
    hex[16] = '\0';
    snprintf(path, sizeof path, "%s/corpus/%s", out_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/corpus/%s/seed-%s", out_dir, target, hex);
    if (stat(path, &sb) == 0)
        return;
    if (fz_write_file(path, p, n) != FV_OK)
        die(path, FV_EIO);
    chmod(path, 0644);
    written++;
}

/* ---- conversations ---------------------------------------------------- */

/* One connection between a vault and the server engine, all bytes moved
 * at once each way; c2s and s2c receive what went each way. */
static int converse(fv_vault *v, const fv_client_request *req, fz_buf *c2s,
                    fz_buf *s2c, char **invite)
{
    fv_client *c = NULL;
    fv_srv_conn *sc = NULL;
    int rc, rounds = 0;

    if ((rc = fv_client_new(&c, v, req)))
        return rc;
    if ((rc = fv_srv_conn_new(&sc, server.srv, fz_binding, 1))) {
        fv_client_free(c);
        return rc;
    }
    fv_client_start(c, server.pin, fz_binding);
    while (fv_client_status(c) == FV_OK && !fv_client_done(c) && rounds++ < 10000) {
        size_t n, before = s2c->len;
        const unsigned char *p = fv_client_pending(c, &n);
        fz_buf in = {0};
        if (n > 0) {
            fz_buf_add(c2s, p, n);
            fz_buf_add(&in, p, n);
            fv_client_ack(c, n);
        }
        fz_srv_drive(sc, in.p, in.len, s2c);
        fz_buf_free(&in);
        if (s2c->len > before)
            fv_client_recv(c, s2c->p + before, s2c->len - before);
        else if (n == 0)
            break;
    }
    rc = fv_client_status(c);
    if (rc == FV_OK && !fv_client_done(c))
        rc = FV_EPROTO;
    if (rc == FV_OK && invite && fv_client_invite_text(c))
        *invite = strdup(fv_client_invite_text(c));
    fv_client_free(c);
    fv_srv_conn_free(sc);
    return rc;
}

/* The frames of a recorded stream, split with the real framer. */
typedef int (*frame_fn)(const unsigned char *body, size_t len, void *payload);

static void each_frame(const fz_buf *b, frame_fn fn, void *payload)
{
    fv_framer f;
    size_t off = 0;
    fv_framer_init(&f);
    while (off < b->len) {
        const unsigned char *frame = NULL;
        size_t flen = 0;
        int err = 0;
        off += fv_framer_feed(&f, b->p + off, b->len - off, &frame, &flen, &err);
        if (err)
            die("a recorded frame", err);
        if (frame && fn(frame, flen, payload))
            break;
    }
    fv_framer_free(&f);
}

static void seed_envelope(const unsigned char *env, size_t len)
{
    seed("envelope", env, len);
    seed("codec", env, len);
}

/* fuzz_payload's seeds: every envelope of the corpus opened with every key
 * the fixture holds; each plaintext prefixed by its envelope's kind. */
static void seed_payloads(void)
{
    const fz_keys *ks[2] = {&coord_keys, &field_keys};
    char dir[FZ_PATH_MAX];
    DIR *d;
    struct dirent *de;
    snprintf(dir, sizeof dir, "%s/corpus/envelope", out_dir);
    if (!(d = opendir(dir)))
        die(dir, FV_EIO);
    while ((de = readdir(d)) != NULL) {
        char path[FZ_PATH_MAX];
        size_t len = 0;
        unsigned char *env;
        fv_env e;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (!(env = fz_read_file(path, &len)))
            die(path, FV_EIO);
        if (fv_env_parse(&e, env, len) != FV_OK) {
            free(env);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            const unsigned char *pk[2] = {ks[i]->box_pk, ks[i]->org_pk};
            const unsigned char *sk[2] = {ks[i]->box_sk, ks[i]->org_sk};
            for (int j = 0; j < (ks[i]->has_org ? 2 : 1); j++) {
                unsigned char *plain = NULL, *s;
                size_t plen = 0;
                if (fv_env_open(&e, pk[j], sk[j], &plain, &plen) != FV_OK)
                    continue;
                if ((s = malloc(plen + 1))) {
                    s[0] = (unsigned char)e.kind;
                    memcpy(s + 1, plain, plen);
                    seed("payload", s, plen + 1);
                    seed("codec", s + 1, plen);
                    fv_wipe(s, plen + 1);
                    free(s);
                }
                fv_env_free_plain(plain, plen);
            }
        }
        fv_env_clear(&e);
        free(env);
    }
    closedir(d);
}

static int frame_seed(const unsigned char *body, size_t len, void *payload)
{
    fv_msg m;
    (void)payload;
    seed("proto", body, len);
    seed("codec", body, len);
    if (fv_msg_decode(&m, body, len) != FV_OK)
        return 0;
    if (m.type == FV_MSG_PUSH)
        for (size_t i = 0; i < m.u.push.n; i++)
            seed_envelope(m.u.push.env[i], m.u.push.len[i]);
    if (m.type == FV_MSG_ENTRIES)
        for (size_t i = 0; i < m.u.entries.n; i++)
            if (m.u.entries.env[i])
                seed_envelope(m.u.entries.env[i], m.u.entries.len[i]);
    return 0;
}

/* The bytes of a stream after its first frame (the HELLO: fuzz_server
 * sends its own). */
static int skip_first(const unsigned char *body, size_t len, void *payload)
{
    size_t *first = payload;
    (void)body;
    *first = 4 + len;
    return 1;
}

/* Records one conversation into the corpora: the device's bytes after its
 * HELLO for fuzz_server_ROLE, the server's bytes for fuzz_client_OP, and
 * every frame both ways for fuzz_proto and what they carry. */
static void record(const char *server_target, const char *client_target,
                   const fz_buf *c2s, const fz_buf *s2c)
{
    size_t first = 0;
    each_frame(c2s, skip_first, &first);
    if (server_target && c2s->len > first)
        seed(server_target, c2s->p + first, c2s->len - first);
    if (client_target)
        seed(client_target, s2c->p, s2c->len);
    each_frame(c2s, frame_seed, NULL);
    each_frame(s2c, frame_seed, NULL);
}

static int talk(fv_vault *v, const fv_client_request *req,
                const char *server_target, const char *client_target,
                char **invite)
{
    fz_buf c2s = {0}, s2c = {0};
    int rc = converse(v, req, &c2s, &s2c, invite);
    record(server_target, client_target, &c2s, &s2c);
    fz_buf_free(&c2s);
    fz_buf_free(&s2c);
    return rc;
}

static void enroll(fv_vault *v, const char *text, const char *client_target)
{
    fv_invite inv;
    fv_client_request req = {.op = FV_CLIENT_ENROLL, .invite = &inv};
    int rc;
    if ((rc = fv_invite_decode(&inv, text)))
        die("an invite", rc);
    seed("invite", text, strlen(text));
    if ((rc = talk(v, &req, NULL, client_target, NULL)))
        die("enroll", rc);
}

static void sync_vault(fv_vault *v, const char *server_target)
{
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    int rc = talk(v, &req, server_target, "client_sync", NULL);
    if (rc)
        die("sync", rc);
}

/* ---- content ---------------------------------------------------------- */

struct gen {
    size_t left;
    uint32_t state;
};

static long long gen_read(unsigned char *buf, size_t len, void *payload)
{
    struct gen *g = payload;
    size_t n = len < g->left ? len : g->left;
    for (size_t i = 0; i < n; i++) {
        g->state = g->state * 1664525u + 1013904223u;
        buf[i] = (unsigned char)(g->state >> 24);
    }
    g->left -= n;
    return (long long)n;
}

static void add_record(fv_vault *v, const char *title, size_t attachment,
                       unsigned char id[FV_ID_BYTES])
{
    static const fv_field fields[] = {{"location", "Kharkiv, district 4"},
                                      {"witness", "W-17"}};
    static const char *const tags[] = {"detention", "urgent"};
    struct gen g = {attachment, 7};
    fv_attachment_source src = {"photo.jpg", NULL, gen_read, &g};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    int rc;
    in.title = title;
    in.narrative = "Statement taken at the shelter.\nSecond line.";
    in.narrative_len = strlen(in.narrative);
    in.fields = fields;
    in.nfields = 2;
    in.tags = tags;
    in.ntags = 2;
    if (attachment) {
        in.attachments = &src;
        in.nattachments = 1;
    }
    if ((rc = fv_record_add(v, id, &in)))
        die("record add", rc);
}

static fv_vault *new_vault(const char *dir)
{
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    int rc;
    o.kdf_profile = FV_KDF_TEST;
    if ((rc = fv_vault_create(&v, dir, FZ_PASS, strlen(FZ_PASS), &o)))
        die("vault create", rc);
    return v;
}

/* fuzz_vault_open's input: the key file's length (2 bytes, little
 * endian), the key file, then the database. */
static void seed_vault_files(const char *dir)
{
    char path[FZ_PATH_MAX];
    size_t klen = 0, dlen = 0;
    unsigned char *key, *db, *s = NULL;
    snprintf(path, sizeof path, "%s/vault.key", dir);
    key = fz_read_file(path, &klen);
    snprintf(path, sizeof path, "%s/vault.db", dir);
    db = fz_read_file(path, &dlen);
    if (!key || !db || klen > 0xffff || !(s = malloc(2 + klen + dlen)))
        die("vault files", FV_EIO);
    s[0] = (unsigned char)(klen & 0xff);
    s[1] = (unsigned char)(klen >> 8);
    memcpy(s + 2, key, klen);
    memcpy(s + 2 + klen, db, dlen);
    seed("vault_open", s, 2 + klen + dlen);
    free(s);
    free(key);
    free(db);
}

static void seed_file(const char *target, const char *path)
{
    size_t n = 0;
    unsigned char *p = fz_read_file(path, &n);
    if (!p)
        die(path, FV_EIO);
    seed(target, p, n);
    free(p);
}

static int first_id(const fv_record *r, void *payload)
{
    memcpy(payload, r->id, FV_ID_BYTES);
    return 1;
}

int main(int argc, char **argv)
{
    char gen[FZ_PATH_MAX], rec[FZ_PATH_MAX], path[FZ_PATH_MAX], fix[FZ_PATH_MAX];
    char *admin = NULL, *field_invite = NULL, *fresh_invite = NULL;
    unsigned char pin[32], org[32], rid[FV_ID_BYTES], gone[FV_ID_BYTES];
    const char *names[] = {"server", "coord", "field", "fresh"};
    fv_vault *coord, *field, *fresh;
    fv_client_request req;
    int rc;

    if (argc != 3) {
        fprintf(stderr, "usage: make_corpus OUT_DIR VECTORS_DIR\n");
        return 2;
    }
    snprintf(out_dir, sizeof out_dir, "%s", argv[1]);
    fz_init();
    fz_scratch(gen, "gen", 1);
    snprintf(path, sizeof path, "%s/corpus", out_dir);
    mkdir(path, 0755);
    remove_old_seeds();

    /* A server, as `fieldvault server init` makes it. Its first invite
     * expires 30 days from now: the engine's clock is the real one until
     * both devices are enrolled, then the harnesses' fixed one. */
    snprintf(path, sizeof path, "%s/server", gen);
    if ((rc = fv_server_init(path, "127.0.0.1:7443", pin, &admin)))
        die("server init", rc);
    if ((rc = fz_server_open(&server, path)))
        die("server open", rc);
    server.env.now = (int64_t)time(NULL);

    /* The coordinator: enrolls, makes and publishes the organisation key,
     * invites a field device and one more (left unredeemed for
     * fuzz_client_enroll). */
    snprintf(path, sizeof path, "%s/coord", gen);
    coord = new_vault(path);
    enroll(coord, admin, "client_enroll");
    server.env.now = FZ_NOW - 3600;
    if ((rc = fv_vs_org_create(coord, org)))
        die("org create", rc);
    req = (fv_client_request){.op = FV_CLIENT_ORGKEY};
    if ((rc = talk(coord, &req, "server_coord", "client_devices", NULL)))
        die("orgkey", rc);
    req = (fv_client_request){.op = FV_CLIENT_INVITE, .name = "field 1",
                              .role = FV_ROLE_FIELD, .ttl = 30 * 24 * 3600};
    if ((rc = talk(coord, &req, "server_coord", "client_devices", &field_invite)) ||
        !field_invite)
        die("invite", rc);
    req.name = "field 2";
    if ((rc = talk(coord, &req, "server_coord", "client_devices", &fresh_invite)) ||
        !fresh_invite)
        die("invite", rc);

    /* The field device: records before and after enrolling (key grants),
     * an edit, a deletion, a retraction; the coordinator's notes and
     * review states about them. */
    snprintf(path, sizeof path, "%s/field", gen);
    field = new_vault(path);
    add_record(field, "before enrolling", 0, NULL);
    enroll(field, field_invite, "client_enroll");
    add_record(field, "with a photo", 3000, rid);
    add_record(field, "to be deleted", 0, gone);
    if ((rc = fv_record_delete(field, gone)))
        die("delete", rc);
    {
        fv_record_input in = FV_RECORD_INPUT_INIT;
        in.title = "with a photo, edited";
        if ((rc = fv_record_edit(field, NULL, rid, &in)))
            die("edit", rc);
    }
    add_record(field, "to be retracted", 0, gone);
    sync_vault(field, "server_field");
    sync_vault(coord, "server_coord");
    if ((rc = fv_note_add(coord, NULL, rid, "Please confirm the date.")) ||
        (rc = fv_record_set_state(coord, rid, FV_STATE_REVIEWED)))
        die("note, state", rc);
    sync_vault(coord, "server_coord");
    sync_vault(field, "server_field");
    if ((rc = fv_record_retract(field, gone)))
        die("retract", rc);
    sync_vault(field, "server_field");
    sync_vault(coord, "server_coord");

    /* A vault that is not enrolled yet, with a record. */
    snprintf(path, sizeof path, "%s/fresh", gen);
    fresh = new_vault(path);
    add_record(fresh, "not enrolled", 0, NULL);

    /* The organisation key file (FV_KDF_TEST cost, as the vault's). */
    snprintf(path, sizeof path, "%s/org.key", gen);
    if ((rc = fv_org_key_export(coord, path, FZ_RECOVERY, strlen(FZ_RECOVERY))))
        die("org key export", rc);
    seed_file("orgkey", path);

    /* What waits in the outboxes when the fixture is taken: new records,
     * a note and a review state. */
    add_record(field, "after the fixture", 2000, NULL);
    add_record(field, "after the fixture 2", 0, NULL);
    if ((rc = fv_vault_list(coord, first_id, rid)) != FV_ECANCELED ||
        (rc = fv_note_add(coord, NULL, rid, "Second note.")) ||
        (rc = fv_record_set_state(coord, rid, FV_STATE_ARCHIVED)))
        die("coordinator outbox", rc);
    fv_vault_close(coord);
    fv_vault_close(field);
    fv_vault_close(fresh);
    fz_server_close(&server);

    /* The fixture. */
    snprintf(fix, sizeof fix, "%s/fixture", out_dir);
    fz_rm_tree(fix);
    if (mkdir(fix, 0755) != 0)
        die(fix, FV_EIO);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char s[FZ_PATH_MAX], t[FZ_PATH_MAX];
        snprintf(s, sizeof s, "%s/%s", gen, names[i]);
        snprintf(t, sizeof t, "%s/%s", fix, names[i]);
        if ((rc = fz_copy_tree(s, t)))
            die("fixture copy", rc);
    }
    snprintf(path, sizeof path, "%s/invite.txt", fix);
    if ((rc = fz_write_file(path, fresh_invite, strlen(fresh_invite))))
        die(path, rc);
    chmod(path, 0644);
    fz_vault_keys("coord", &coord_keys);
    fz_vault_keys("field", &field_keys);

    /* Traffic from the fixture's state, as the harnesses start from it. */
    fz_scratch(rec, "rec", 1);
    snprintf(path, sizeof path, "%s/server", rec);
    snprintf(gen, sizeof gen, "%s/server", fix);
    if ((rc = fz_copy_tree(gen, path)) || (rc = fz_server_open(&server, path)))
        die("fixture server", rc);
    field = fz_vault_copy_open("field", "rec-field");
    coord = fz_vault_copy_open("coord", "rec-coord");
    fresh = fz_vault_copy_open("fresh", "rec-fresh");
    {
        char b[FZ_PATH_MAX];
        snprintf(b, sizeof b, "%s/field.bundle", rec);
        if ((rc = fv_bundle_export(field, NULL, b, NULL)))
            die("bundle export", rc);
        seed_file("bundle_vault", b);
        seed_file("bundle_server", b);
        snprintf(b, sizeof b, "%s/fresh.bundle", rec);
        if ((rc = fv_bundle_export(fresh, NULL, b, NULL)))
            die("bundle export", rc);
        seed_file("bundle_vault", b);
    }
    sync_vault(field, "server_field");
    sync_vault(coord, "server_coord");
    req = (fv_client_request){.op = FV_CLIENT_DEVICES};
    if ((rc = talk(coord, &req, "server_coord", "client_devices", NULL)))
        die("devices", rc);
    enroll(fresh, fresh_invite, "client_enroll");
    fv_vault_close(field);
    fv_vault_close(coord);
    fv_vault_close(fresh);
    fz_server_close(&server);

    /* Vault files, invites, test vectors. */
    snprintf(path, sizeof path, "%s/field", fix);
    seed_vault_files(path);
    snprintf(path, sizeof path, "%s/fresh", fix);
    seed_vault_files(path);
    seed("invite", admin, strlen(admin));
    {
        static const char *const vectors[] = {
            "envelope-concurrent.cbor", "envelope-early.cbor",
            "envelope-genesis.cbor", "envelope-grant.cbor",
            "envelope-revision.cbor", "envelope-tombstone.cbor"};
        /* Format 1's vectors, and format 2's in v2/ (padded payloads). */
        for (size_t i = 0; i < 2 * (sizeof vectors / sizeof *vectors); i++) {
            size_t n = 0, k = i % (sizeof vectors / sizeof *vectors);
            unsigned char *p;
            snprintf(path, sizeof path, "%s/%s%s", argv[2],
                     i == k ? "" : "v2/", vectors[k]);
            if (!(p = fz_read_file(path, &n)))
                die(path, FV_EIO);
            seed_envelope(p, n);
            free(p);
        }
    }
    seed_payloads();
    free(admin);
    free(field_invite);
    free(fresh_invite);
    fprintf(stderr, "make_corpus: %d new seeds in %s/corpus, fixture in %s\n",
            written, out_dir, fix);
    return 0;
}
