/* forge_bundle.c - writes hostile envelopes into a real vault, for the
 * end-to-end tests of `bundle import` (tests/test_desk.py):
 *
 *     forge_bundle SRC DEST PASSFILE RECORD
 *
 * opens vault SRC and vault DEST with the passphrase in PASSFILE, and writes
 * into SRC's outbox envelopes signed with SRC's own device key and sealed to
 * SRC and to DEST's device key, whose payloads break docs/FORMAT.md: two
 * retractions of RECORD (an id or prefix of a record SRC created), a key
 * grant for RECORD's genesis that carries its real content key, and
 * revisions breaking the text, name and chunk rules. `fieldvault bundle
 * export` then carries them like any other envelope. Prints one line per
 * envelope: what it breaks, a space, its id in hex.
 *
 *     forge_bundle --newer SRC PASSFILE
 *
 * writes into SRC's outbox one validly signed envelope of body version 3,
 * one above the newest this build reads (the body {1: 3}: a later version
 * may shape the rest as it likes), as a newer FieldVault would.
 *
 *     forge_bundle --orphan-note SRC PASSFILE
 *
 * writes into SRC's outbox a note about a record no device ever made (a
 * random id): well formed and signed, but one the server refuses (it does
 * not hold the record, docs/PROTOCOL.md, PUSH and RECEIPT). Exit 0, or 1 if
 * anything failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fieldvault.h"
#include "forge.h"

static int read_pass(const char *path, char *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f)
        return -1;
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *len = n;
    return 0;
}

static void say(const char *what, const unsigned char id[32])
{
    printf("%s ", what);
    for (int i = 0; i < 32; i++)
        printf("%02x", id[i]);
    putchar('\n');
}

/* A COSE_Sign1 around the body {1: 3}, signed by v's device key
 * (docs/FORMAT.md 5.1, 5.3), stored in v's outbox. */
static int forge_newer(fv_vault *v)
{
    static const unsigned char body[] = {0xa1, 0x01, FV_ENV_VERSION + 1};
    unsigned char prot[38], sig_structure[64], env[128], sig[64], id[32];
    unsigned char mac[32], box[32];
    size_t n = 0, m = 0;
    fv_store_env se;
    int added = 0, rc;

    prot[0] = 0xa2, prot[1] = 0x01, prot[2] = 0x27, prot[3] = 0x04;
    prot[4] = 0x58, prot[5] = 0x20;
    fv_vs_device(v, prot + 6, box);
    /* ["Signature1", protected, h'', body] */
    sig_structure[m++] = 0x84;
    sig_structure[m++] = 0x6a;
    memcpy(sig_structure + m, "Signature1", 10);
    m += 10;
    sig_structure[m++] = 0x58;
    sig_structure[m++] = 38;
    memcpy(sig_structure + m, prot, 38);
    m += 38;
    sig_structure[m++] = 0x40;
    sig_structure[m++] = 0x43;
    memcpy(sig_structure + m, body, 3);
    m += 3;
    fv_vs_sign(v, sig, sig_structure, m);
    env[n++] = 0xd2;
    env[n++] = 0x84;
    env[n++] = 0x58;
    env[n++] = 38;
    memcpy(env + n, prot, 38);
    n += 38;
    env[n++] = 0xa0;
    env[n++] = 0x43;
    memcpy(env + n, body, 3);
    n += 3;
    env[n++] = 0x58;
    env[n++] = 0x40;
    memcpy(env + n, sig, 64);
    n += 64;
    fv_hash(id, env, n);
    memset(&se, 0, sizeof se);
    se.id = id;
    se.record = id;
    se.kind = FV_ENV_REVISION;
    se.bytes = env;
    se.len = n;
    fv_v_env_mac(v, mac, env, n);
    se.mac = mac;
    se.own = 1;
    if ((rc = fv_store_begin(v->store)) == FV_OK &&
        (rc = fv_store_env_put(v->store, &se, NULL, 0, NULL, 0, &added)) == FV_OK)
        rc = fv_store_commit(v->store);
    if (rc)
        fv_store_rollback(v->store);
    else
        say("newer-version", id);
    return rc;
}

/* A note about a random record id, sealed to v alone, in v's outbox. */
static int forge_orphan_note(fv_vault *v)
{
    static const unsigned char payload[] = "about nothing this server holds";
    unsigned char ghost[32], self[1][32], sp[32], id[32];
    fv_v_write w;
    int rc;
    fv_random(ghost, sizeof ghost);
    fv_vs_device(v, sp, self[0]);
    memset(&w, 0, sizeof w);
    w.kind = FV_ENV_NOTE;
    w.record = ghost;
    w.parents = (const unsigned char(*)[FV_ID_BYTES])ghost;
    w.nparents = 1;
    w.payload = payload;
    w.payload_len = sizeof payload;
    w.recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])self;
    w.nrecipients = 1;
    if ((rc = fv_store_begin(v->store)) == FV_OK &&
        (rc = fv_v_write_envelope(v, id, &w)) == FV_OK)
        rc = fv_store_commit(v->store);
    if (rc)
        fv_store_rollback(v->store);
    else
        say("orphan-note", id);
    return rc;
}

int main(int argc, char **argv)
{
    static const unsigned char indef[] = {0xbf, 0x64, 't', 'i', 'm', 'e', 0x01, 0xff};
    static const unsigned char texttime[] = {0xa1, 0x64, 't', 'i', 'm', 'e', 0x61, '1'};
    static const unsigned char extra[] = {0xa2, 0x64, 't', 'i', 'm', 'e', 0x01,
                                          0x65, 's', 't', 'a', 't', 'e', 0x00};
    static const uint64_t one = 1, none = 0;
    static const unsigned char somehash[1][32] = {{1}};
    char pass[1024];
    size_t plen = 0;
    fv_vault *src = NULL, *dst = NULL;
    unsigned char rec[32], dpk[32], sp[32], key[32], id[32];
    struct raw_rev rr;

    if (argc == 4 && (strcmp(argv[1], "--newer") == 0 ||
                      strcmp(argv[1], "--orphan-note") == 0)) {
        int rc = 1;
        if (read_pass(argv[3], pass, sizeof pass, &plen) == 0 &&
            fv_vault_open(&src, argv[2], pass, plen) == FV_OK) {
            rc = (argv[1][2] == 'n' ? forge_newer(src)
                                    : forge_orphan_note(src)) == FV_OK
                     ? 0
                     : 1;
            fv_vault_close(src);
        }
        return rc;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: forge_bundle SRC DEST PASSFILE RECORD\n"
                        "       forge_bundle --newer SRC PASSFILE\n"
                        "       forge_bundle --orphan-note SRC PASSFILE\n");
        return 2;
    }
    if (read_pass(argv[3], pass, sizeof pass, &plen) ||
        fv_vault_open(&src, argv[1], pass, plen) != FV_OK ||
        fv_vault_open(&dst, argv[2], pass, plen) != FV_OK ||
        fv_record_resolve(src, rec, argv[4]) != FV_OK) {
        fprintf(stderr, "forge_bundle: cannot open the vaults or the record\n");
        return 1;
    }
    fv_vs_device(dst, sp, dpk);
    fv_vault_close(dst);

    {
        fv_v_write w = {.kind = FV_ENV_RETRACTION, .record = rec,
                        .parents = (const unsigned char(*)[32])rec, .nparents = 1};
        write_forged(src, dpk, &w, indef, sizeof indef, id);
        say("retraction-indefinite-map", id);
        write_forged(src, dpk, &w, texttime, sizeof texttime, id);
        say("retraction-text-time", id);
    }
    own_key(src, rec, key);
    {
        fv_v_write w = {.kind = FV_ENV_GRANT, .record = rec,
                        .parents = (const unsigned char(*)[32])rec, .nparents = 1,
                        .recipients = (const unsigned char(*)[32])dpk,
                        .nrecipients = 1, .content_key = key};
        write_forged(src, dpk, &w, extra, sizeof extra, id);
        say("grant-extra-key", id);
    }
    memset(key, 0, sizeof key);

    memset(&rr, 0, sizeof rr);
    rr.title = "bad \xc3\x28 utf-8";
    rr.title_len = strlen(rr.title);
    write_raw_rev(src, dpk, &rr, NULL, 0, NULL, 0, id);
    say("title-invalid-utf8", id);
    rr.title = "bell\x07";
    rr.title_len = strlen(rr.title);
    write_raw_rev(src, dpk, &rr, NULL, 0, NULL, 0, id);
    say("title-control-byte", id);
    memset(&rr, 0, sizeof rr);
    rr.natt = 1;
    rr.size = 10;
    rr.chunk = FV_CHUNK_BYTES;
    rr.name = "..";
    write_raw_rev(src, dpk, &rr, &one, 1, somehash, 1, id);
    say("name-dotdot", id);
    rr.name = "../../etc/passwd";
    write_raw_rev(src, dpk, &rr, &one, 1, somehash, 1, id);
    say("name-slash", id);
    rr.name = "photo.jpg";
    rr.size = 0;
    rr.chunk = 0;
    write_raw_rev(src, dpk, &rr, &none, 1, NULL, 0, id);
    say("chunk-zero", id);
    rr.size = 10;
    rr.chunk = FV_CHUNK_BYTES;
    write_raw_rev(src, dpk, &rr, NULL, 0, NULL, 0, id);
    say("chunk-lists-mismatch", id);
    memset(&rr, 0, sizeof rr);
    rr.tag0 = "zeta"; /* same length: bytewise order wants "beta" first */
    rr.tag1 = "beta";
    write_raw_rev(src, dpk, &rr, NULL, 0, NULL, 0, id);
    say("tags-out-of-order", id);

    fv_vault_close(src);
    return check_failures ? 1 : 0;
}
