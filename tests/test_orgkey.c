/* test_orgkey.c - organisation key custody (fv_org_key_export/import) on real
 * vaults in a temporary directory: a round trip that lets a second
 * coordinator read what a field device sealed to the organisation, a wrong
 * recovery passphrase, every flipped byte, every truncation, an existing
 * output file, a vault holding a different organisation key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "crypto.h"
#include "fieldvault.h"
#include "vault_sync.h"

#define KEYFILE_BYTES 184 /* docs/FORMAT.md, "Organisation key file" */

static char root[256];
static int seq;

static const char PASS[] = "correct horse battery staple";
static const char RECOVERY[] = "recovery: 열쇠 in the safe";

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

/* A vault with its own organisation key, as `org init` makes it. */
static fv_vault *coordinator(const char *dir, unsigned char pk[32])
{
    fv_vault *v = create(dir);
    CHECK_EQ(fv_vs_org_create(v, pk), FV_OK);
    return v;
}

static int export_(fv_vault *v, const char *path, const char *rec)
{
    return fv_org_key_export(v, path, rec, strlen(rec));
}

static int import_(fv_vault *v, const char *path, const char *rec)
{
    return fv_org_key_import(v, path, rec, strlen(rec));
}

static long read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    long n;
    if (!f)
        return -1;
    n = (long)fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_file(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK_EQ(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* Copies the envelopes of one vault's outbox into another, as the server's
 * feed delivers them to a coordinator (from a courier bundle, a vault that
 * knows no organisation key yet could not check who wrote them and would
 * keep them apart: test_devices.c). */
struct carry {
    fv_vault *to;
    int rc;
};

static int carry_one(int64_t seq_, const unsigned char *id,
                     const unsigned char *bytes, size_t len, void *payload)
{
    struct carry *c = payload;
    const unsigned char *env[1] = {bytes};
    size_t lens[1] = {len}, added = 0, refused = 0;
    fv_sync_state st;
    (void)seq_;
    (void)id;
    memset(&st, 0, sizeof st);
    st.role = FV_ROLE_COORDINATOR;
    c->rc = fv_vs_import(c->to, &st, env, lens, 1, &added, &refused);
    if (c->rc == FV_OK && refused)
        c->rc = FV_ECORRUPT;
    return c->rc;
}

static void test_round_trip(void)
{
    unsigned char pk[32], id[FV_ID_BYTES], buf[512];
    const char *d1 = new_path("coord"), *d2 = new_path("coord"),
               *df = new_path("field"), *key = new_path("key");
    fv_vault *c1 = coordinator(d1, pk), *c2 = create(d2), *f = create(df);
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_record *r = NULL;
    struct stat sb;
    struct carry carry = {c2, FV_OK};

    /* A field device that knows the organisation key writes a record. */
    CHECK_EQ(fv_vs_org_learn(f, pk), FV_OK);
    in.title = "the crossing at night";
    in.narrative = "we waited by the river";
    in.narrative_len = strlen(in.narrative);
    CHECK_EQ(fv_record_add(f, id, &in), FV_OK);
    CHECK_EQ(fv_vs_outbox(f, 0, 100, carry_one, &carry), FV_OK);
    CHECK_EQ(carry.rc, FV_OK);
    /* The second coordinator holds the envelope but cannot open it yet. */
    CHECK(fv_record_get(c2, &r, id) != FV_OK);
    fv_record_free(r);
    r = NULL;

    CHECK_EQ(export_(c1, key, RECOVERY), FV_OK);
    CHECK_EQ(stat(key, &sb), 0);
    CHECK_EQ(sb.st_mode & 0777, 0600);
    CHECK_EQ(sb.st_size, KEYFILE_BYTES);
    CHECK_EQ(read_file(key, buf, sizeof buf), KEYFILE_BYTES);
    CHECK(memcmp(buf, "FVORGKY1", 8) == 0);
    /* No temporary file is left beside it. */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | grep -c fvtmp) -eq 0", root);
    CHECK_EQ(system(cmd), 0);

    CHECK_EQ(import_(c2, key, RECOVERY), FV_OK);
    CHECK_EQ(fv_record_get(c2, &r, id), FV_OK);
    if (r)
        CHECK(strcmp(r->title, "the crossing at night") == 0);
    fv_record_free(r);
    r = NULL;
    /* Importing the same key again is harmless. */
    CHECK_EQ(import_(c2, key, RECOVERY), FV_OK);
    /* It stays after the vault is closed and opened again. */
    fv_vault_close(c2);
    c2 = NULL;
    CHECK_EQ(fv_vault_open(&c2, d2, PASS, strlen(PASS)), FV_OK);
    unsigned char pk2[32];
    CHECK_EQ(fv_vs_org_pk(c2, pk2), 1);
    CHECK(memcmp(pk, pk2, 32) == 0);
    CHECK_EQ(fv_record_get(c2, &r, id), FV_OK);
    fv_record_free(r);
    /* The second coordinator can export it in turn. */
    CHECK_EQ(export_(c2, new_path("key"), "another recovery"), FV_OK);

    /* A field device with no organisation secret key cannot export. */
    CHECK_EQ(export_(f, new_path("key"), RECOVERY), FV_EDENIED);
    CHECK(strlen(fv_vault_errmsg(f)) > 0);
    CHECK_EQ(export_(c1, new_path("key"), ""), FV_EINVAL);

    fv_vault_close(c1);
    fv_vault_close(c2);
    fv_vault_close(f);
}

static void test_refusals(void)
{
    unsigned char pk[32], pk_other[32], good[512], bad[512];
    const char *key = new_path("key"), *copy = new_path("key");
    fv_vault *c1 = coordinator(new_path("coord"), pk);
    fv_vault *c2 = create(new_path("coord"));
    fv_vault *other = coordinator(new_path("coord"), pk_other);
    fv_vault *learnt = create(new_path("coord"));
    long n;

    CHECK_EQ(export_(c1, key, RECOVERY), FV_OK);
    n = read_file(key, good, sizeof good);
    CHECK_EQ(n, KEYFILE_BYTES);

    /* An existing output file is never replaced. */
    CHECK_EQ(export_(c1, key, RECOVERY), FV_EEXIST);
    CHECK_EQ(read_file(key, bad, sizeof bad), n);
    CHECK(memcmp(good, bad, (size_t)n) == 0);
    CHECK_EQ(export_(c1, root, RECOVERY), FV_EEXIST);

    /* Wrong recovery passphrase. */
    CHECK_EQ(import_(c2, key, "not the recovery passphrase"), FV_EPASSPHRASE);
    CHECK_EQ(import_(c2, key, PASS), FV_EPASSPHRASE);

    /* Every flipped byte is damage. */
    for (long i = 0; i < n; i++) {
        memcpy(bad, good, (size_t)n);
        bad[i] ^= 0x01;
        unlink(copy);
        write_file(copy, bad, (size_t)n);
        int rc = import_(c2, copy, RECOVERY);
        if (rc != FV_ECORRUPT) {
            fprintf(stderr, "byte %ld flipped: %s\n", i, fv_strerror(rc));
            CHECK_EQ(rc, FV_ECORRUPT);
        }
    }
    /* A newer version (checksum intact) is reported as such. */
    memcpy(bad, good, (size_t)n);
    bad[8] = 2;
    fv_hash(bad + n - 32, bad, (size_t)n - 32);
    unlink(copy);
    write_file(copy, bad, (size_t)n);
    CHECK_EQ(import_(c2, copy, RECOVERY), FV_EVERSION);

    /* A cost beyond any vault's (checksum intact: it is not keyed) is
     * refused before any work: 17 passes over 8 KiB would be cheap to run,
     * and then fail as a wrong passphrase instead. */
    memcpy(bad, good, (size_t)n);
    memset(bad + 16, 0, 16);
    bad[16] = 17;             /* opslimit, LE64 */
    bad[24 + 1] = 0x20;       /* memlimit 8192, LE64 */
    fv_hash(bad + n - 32, bad, (size_t)n - 32);
    unlink(copy);
    write_file(copy, bad, (size_t)n);
    CHECK_EQ(import_(c2, copy, RECOVERY), FV_ECORRUPT);

    /* Every truncation, and a byte too many. */
    for (long len = 0; len < n; len++) {
        unlink(copy);
        write_file(copy, good, (size_t)len);
        int rc = import_(c2, copy, RECOVERY);
        if (rc != FV_ECORRUPT) {
            fprintf(stderr, "truncated to %ld: %s\n", len, fv_strerror(rc));
            CHECK_EQ(rc, FV_ECORRUPT);
        }
    }
    memcpy(bad, good, (size_t)n);
    bad[n] = 0;
    unlink(copy);
    write_file(copy, bad, (size_t)n + 1);
    CHECK_EQ(import_(c2, copy, RECOVERY), FV_ECORRUPT);
    CHECK_EQ(import_(c2, new_path("missing"), RECOVERY), FV_EIO);
    CHECK_EQ(import_(c2, root, RECOVERY), FV_EIO); /* a directory */

    /* None of that gave c2 a key. */
    CHECK_EQ(export_(c2, new_path("key"), RECOVERY), FV_EDENIED);

    /* A vault holding (or knowing) a different organisation key. */
    CHECK_EQ(import_(other, key, RECOVERY), FV_EEXIST);
    CHECK_EQ(fv_vs_org_learn(learnt, pk_other), FV_OK);
    CHECK_EQ(import_(learnt, key, RECOVERY), FV_EEXIST);
    CHECK_EQ(export_(learnt, new_path("key"), RECOVERY), FV_EDENIED);
    /* The same key: fine, and nothing changes. */
    CHECK_EQ(import_(c1, key, RECOVERY), FV_OK);
    /* The vault with the other key still opens its own key's file. */
    const char *okey = new_path("key");
    CHECK_EQ(export_(other, okey, RECOVERY), FV_OK);
    CHECK_EQ(import_(learnt, okey, RECOVERY), FV_OK);

    fv_vault_close(c1);
    fv_vault_close(c2);
    fv_vault_close(other);
    fv_vault_close(learnt);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/fv-test-orgkey-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_refusals();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
    return check_summary("test_orgkey");
}
