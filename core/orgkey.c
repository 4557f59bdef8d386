/* orgkey.c - organisation key custody (fieldvault.h): the organisation's key
 * pair written to a file under a separate recovery passphrase, and read back
 * into another coordinator's vault. The layout is in docs/FORMAT.md,
 * "Organisation key file". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fileio.h"
#include "fieldvault.h"
#include "vault_internal.h"
#include "vault_sync.h"

#define OK_MAGIC "FVORGKY1"
#define OK_VERSION 1
#define OK_ALG_ARGON2ID13 1
#define OK_HEADER_BYTES 48 /* magic..salt: authenticated as AEAD data */
#define OK_PAIR_BYTES (FV_BOX_PK_BYTES + FV_BOX_SK_BYTES)
#define OK_CT_OFF (OK_HEADER_BYTES + FV_NONCE_BYTES)
#define OK_SUM_OFF (OK_CT_OFF + OK_PAIR_BYTES + FV_TAG_BYTES)
#define OK_BYTES (OK_SUM_OFF + FV_HASH_BYTES)

/* crypto_kdf subkey of the `org_sk` meta row (vault.c, docs/FORMAT.md 4). */
#define META_ORG_KEY 2

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

static int recovery_key(unsigned char *key, const unsigned char *header,
                        const char *recovery, size_t recovery_len)
{
    return fv_pwhash(key, FV_KEY_BYTES, recovery, recovery_len, header + 32,
                     get_le(header + 16, 8), get_le(header + 24, 8));
}

/* Writes `len` bytes to a new file `path`, 0600, atomically: a temporary
 * file beside it, fsync, link() (which never replaces), directory fsync. */
static int write_new_file(fv_vault *v, const char *path,
                          const unsigned char *buf, size_t len)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n), *dir = fv_path_dir(path);
    int fd = -1, rc = FV_OK;

    if (!tmp || !dir) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(tmp, n, "%s.fvtmp-XXXXXX", path);
    fd = mkstemp(tmp); /* 0600, O_EXCL */
    if (fd < 0) {
        rc = fv_v_err(v, fv_errno_rc(errno), "cannot create the key file: %s",
                      fv_errno_text(errno).text);
        tmp[0] = '\0';
        goto done;
    }
    if ((rc = fv_write_all(fd, buf, len))) {
        /* The helper's result, not errno, which it does not promise to keep. */
        rc = fv_v_err(v, rc, "cannot write the key file: %s", fv_strerror(rc));
        goto done;
    }
    if (fsync(fd) != 0) {
        rc = fv_v_err(v, fv_errno_rc(errno), "cannot write the key file: %s",
                      fv_errno_text(errno).text);
        goto done;
    }
    if (link(tmp, path) != 0) {
        rc = fv_v_err(v, errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno),
                      "cannot create the key file: %s", fv_errno_text(errno).text);
        goto done;
    }
    /* A name that may not survive a crash is not a recovery file: taken
     * back, so that a retry can make it again. */
    if ((rc = fv_fsync_dir(dir)) != FV_OK) {
        unlink(path);
        rc = fv_v_err(v, rc, "cannot make the key file durable: %s", fv_strerror(rc));
    }
done:
    if (fd >= 0)
        close(fd);
    if (tmp && tmp[0])
        unlink(tmp);
    free(tmp);
    free(dir);
    return rc;
}

static int org_key_export(fv_vault *v, const char *path, const char *recovery,
                          size_t recovery_len)
{
    unsigned char file[OK_BYTES];
    unsigned char *key = NULL, *pair = NULL;
    struct stat sb;
    int rc;

    if (!v || !path || !*path || !recovery || recovery_len == 0)
        return v ? fv_v_err(v, FV_EINVAL, "want an output path and a recovery passphrase")
                 : FV_EINVAL;
    if (!v->has_org_sk)
        return fv_v_err(v, FV_EDENIED, "this vault holds no organisation key");
    if (lstat(path, &sb) == 0)
        return fv_v_err(v, FV_EEXIST, "the output file already exists");
    key = fv_secure_alloc(FV_KEY_BYTES);
    pair = fv_secure_alloc(OK_PAIR_BYTES);
    if (!key || !pair) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(file, OK_MAGIC, 8);
    fv_v_put_le(file + 8, OK_VERSION, 4);
    fv_v_put_le(file + 12, OK_ALG_ARGON2ID13, 4);
    fv_v_put_le(file + 16, v->opslimit, 8);
    fv_v_put_le(file + 24, v->memlimit, 8);
    fv_random(file + 32, FV_SALT_BYTES);
    fv_random(file + OK_HEADER_BYTES, FV_NONCE_BYTES);
    if ((rc = recovery_key(key, file, recovery, recovery_len))) {
        rc = fv_v_err(v, rc, "cannot derive the recovery key: %s", fv_strerror(rc));
        goto done;
    }
    memcpy(pair, v->org_pk, FV_BOX_PK_BYTES);
    memcpy(pair + FV_BOX_PK_BYTES, v->sec->org_sk, FV_BOX_SK_BYTES);
    fv_aead_encrypt(file + OK_CT_OFF, pair, OK_PAIR_BYTES, file, OK_HEADER_BYTES,
                    file + OK_HEADER_BYTES, key);
    fv_hash(file + OK_SUM_OFF, file, OK_SUM_OFF);
    rc = write_new_file(v, path, file, sizeof file);
done:
    fv_secure_free(key);
    fv_secure_free(pair);
    return rc;
}

int fv_org_key_export(fv_vault *v, const char *path, const char *recovery,
                      size_t recovery_len)
{
    return FV_CALL(v, org_key_export(v, path, recovery, recovery_len));
}

/* Reads the whole file into `file` (OK_BYTES) and checks everything that
 * needs no passphrase. */
static int read_key_file(fv_vault *v, const char *path,
                         unsigned char file[OK_BYTES])
{
    unsigned char sum[FV_HASH_BYTES], extra;
    size_t n = 0;
    ssize_t r = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), e;

    if (fd < 0)
        return fv_v_err(v, FV_EIO, "cannot read the key file: %s", fv_errno_text(errno).text);
    while (n < OK_BYTES && ((r = read(fd, file + n, OK_BYTES - n)) > 0 ||
                            (r < 0 && errno == EINTR)))
        if (r > 0)
            n += (size_t)r;
    /* One byte more than the file should hold tells a longer file apart. */
    if (n == OK_BYTES) {
        while ((r = read(fd, &extra, 1)) < 0 && errno == EINTR)
            ;
        if (r > 0)
            n++;
    }
    e = errno;
    close(fd);
    if (r < 0)
        return fv_v_err(v, FV_EIO, "cannot read the key file: %s", fv_errno_text(e).text);
    if (n < 12 || memcmp(file, OK_MAGIC, 8) != 0)
        return fv_v_err(v, FV_ECORRUPT, "not a FieldVault organisation key file");
    /* The checksum first, so that a damaged version field is damage. */
    if (n == OK_BYTES) {
        fv_hash(sum, file, OK_SUM_OFF);
        if (!fv_ct_equal(sum, file + OK_SUM_OFF, FV_HASH_BYTES))
            return fv_v_err(v, FV_ECORRUPT, "the key file is damaged");
    }
    if (get_le(file + 8, 4) > OK_VERSION)
        return fv_v_err(v, FV_EVERSION,
                        "the key file has format %u; this version reads format %d",
                        (unsigned)get_le(file + 8, 4), OK_VERSION);
    if (n != OK_BYTES)
        return fv_v_err(v, FV_ECORRUPT, "the key file is damaged (wrong size)");
    if (get_le(file + 8, 4) != OK_VERSION ||
        get_le(file + 12, 4) != OK_ALG_ARGON2ID13 ||
        !fv_pwhash_params_ok(get_le(file + 16, 8), get_le(file + 24, 8)))
        return fv_v_err(v, FV_ECORRUPT, "the key file is damaged");
    return FV_OK;
}

/* Keeps the organisation's secret key in the vault (sealed like fv_org_init
 * does, bound to its public key) and learns the public key, which grants
 * the organisation what this device wrote before. */
static int adopt(fv_vault *v, const unsigned char *pk, const unsigned char *sk)
{
    int rc;

    if (v->has_org_sk)
        return fv_ct_equal(v->org_pk, pk, FV_BOX_PK_BYTES)
                   ? FV_OK
                   : fv_v_err(v, FV_EEXIST,
                              "this vault holds a different organisation key");
    if (v->has_org_pk && !fv_ct_equal(v->org_pk, pk, FV_BOX_PK_BYTES))
        return fv_v_err(v, FV_EEXIST,
                        "this vault knows a different organisation key");
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    memcpy(v->sec->org_sk, sk, FV_BOX_SK_BYTES);
    memcpy(v->org_pk, pk, FV_BOX_PK_BYTES); /* equal if already known */
    v->has_org_sk = 1;
    rc = fv_v_meta_seal(v, "org_sk", META_ORG_KEY, sk, FV_BOX_SK_BYTES, pk,
                        FV_BOX_PK_BYTES);
    /* Review states and notes already held become readable: index them. */
    if (rc == FV_OK)
        rc = fv_v_desk_reindex(v);
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_commit(v->store));
    if (rc) {
        fv_store_rollback(v->store);
        v->has_org_sk = 0;
        fv_wipe(v->sec->org_sk, FV_BOX_SK_BYTES);
        return rc;
    }
    if ((rc = fv_vs_org_learn(v, pk))) {
        /* Without `org_pk` the sealed row is ignored at open; a retry
         * seals it again. */
        v->has_org_sk = 0;
        fv_wipe(v->sec->org_sk, FV_BOX_SK_BYTES);
    }
    return rc;
}

static int org_key_import(fv_vault *v, const char *path, const char *recovery,
                          size_t recovery_len)
{
    unsigned char file[OK_BYTES], probe[16], sealed[16 + FV_SEAL_BYTES];
    unsigned char *key = NULL, *pair = NULL;
    int rc;

    if (!v || !path || !recovery)
        return v ? fv_v_err(v, FV_EINVAL, "want a key file and a recovery passphrase")
                 : FV_EINVAL;
    if ((rc = read_key_file(v, path, file)))
        return rc;
    key = fv_secure_alloc(FV_KEY_BYTES);
    pair = fv_secure_alloc(OK_PAIR_BYTES);
    if (!key || !pair) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = recovery_key(key, file, recovery, recovery_len))) {
        rc = fv_v_err(v, rc, "cannot derive the recovery key: %s", fv_strerror(rc));
        goto done;
    }
    if (fv_aead_decrypt(pair, file + OK_CT_OFF, OK_PAIR_BYTES + FV_TAG_BYTES,
                        file, OK_HEADER_BYTES, file + OK_HEADER_BYTES, key)) {
        rc = fv_v_err(v, FV_EPASSPHRASE, "wrong recovery passphrase");
        goto done;
    }
    /* The secret key must open what is sealed to the public key. */
    fv_random(probe, sizeof probe);
    rc = fv_seal(sealed, probe, sizeof probe, pair);
    if (rc == FV_OK)
        rc = fv_seal_open(probe, sealed, sizeof sealed, pair,
                          pair + FV_BOX_PK_BYTES);
    if (rc) {
        rc = fv_v_err(v, FV_ECORRUPT, "the key file holds a broken key pair");
        goto done;
    }
    rc = adopt(v, pair, pair + FV_BOX_PK_BYTES);
done:
    fv_secure_free(key);
    fv_secure_free(pair);
    return rc;
}

int fv_org_key_import(fv_vault *v, const char *path, const char *recovery,
                      size_t recovery_len)
{
    return FV_CALL(v, org_key_import(v, path, recovery, recovery_len));
}
