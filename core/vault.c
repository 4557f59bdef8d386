/* vault.c - the public vault API (fieldvault.h): keys, key file, records,
 * attachments. Crypto lives in crypto.c, storage in store.c, the byte formats
 * in envelope.c and record.c; this file ties them together. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"
#include "store.h"
#include "vault_internal.h"

#define KEY_FILE "vault.key"
#define DB_FILE "vault.db"

/* Key file layout (docs/FORMAT.md): all integers little-endian. */
#define KF_MAGIC "FieldVlt"
#define KF_HEADER_BYTES 48 /* magic..salt: authenticated as AEAD data */
#define KF_BYTES (KF_HEADER_BYTES + FV_NONCE_BYTES + FV_KEY_BYTES + FV_TAG_BYTES)
#define KF_ALG_ARGON2ID13 1

/* crypto_kdf context and subkey ids of the secrets in the meta table. */
#define META_KEY_CTX "fvdevkey"
#define META_DEVICE_KEYS 1
#define META_ORG_KEY 2
#define DEVKEY_SECRET_BYTES (FV_SIGN_SK_BYTES + FV_BOX_SK_BYTES)

static const struct {
    uint64_t ops, mem;
} kdf_profiles[] = {
    [FV_KDF_DESKTOP] = {2, 256u << 20},
    [FV_KDF_PHONE] = {3, 64u << 20},
    [FV_KDF_TEST] = {1, 8192},
};

int64_t fv_v_now(void) { return (int64_t)time(NULL); }

/* ---- messages ------------------------------------------------------- */

const char *fv_version(void) { return FV_VERSION_STRING; }

const char *fv_strerror(int code)
{
    switch (code) {
    case FV_OK: return "success";
    case FV_EINVAL: return "invalid argument";
    case FV_ENOMEM: return "out of memory";
    case FV_EIO: return "input/output error";
    case FV_ENOVAULT: return "no vault at that directory";
    case FV_EEXIST: return "already exists";
    case FV_EPASSPHRASE: return "wrong passphrase";
    case FV_EVERSION: return "vault or data of a newer format";
    case FV_ECORRUPT: return "corrupt or tampered data";
    case FV_ENOTFOUND: return "not found";
    case FV_ENOSPC: return "disk full";
    case FV_ECANCELED: return "canceled";
    case FV_ELIMIT: return "input beyond a limit";
    case FV_EBUSY: return "vault busy";
    case FV_ECRYPTO: return "crypto library failed to start";
    case FV_EAMBIGUOUS: return "id prefix matches more than one record";
    case FV_ENET: return "network failure";
    case FV_EPIN: return "the server's key does not match the pinned key";
    case FV_ETLS: return "TLS failure";
    case FV_EEOF: return "the connection was closed";
    case FV_EPROTO: return "protocol error";
    case FV_EDENIED: return "refused by the server";
    case FV_EINVITE: return "the invite is damaged, used or expired";
    default: return "unknown error";
    }
}

const char *fv_vault_errmsg(const fv_vault *v)
{
    return v ? v->msg : "no vault handle";
}

/* Records the failure `rc` with a message and returns rc. */
int fv_v_err(fv_vault *v, int rc, const char *fmt, ...)
{
    va_list ap;
    if (rc == FV_OK || !v)
        return rc;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* A store failure: the store's message, which never holds content. */
int fv_v_serr(fv_vault *v, int rc)
{
    if (rc == FV_OK)
        return rc;
    return fv_v_err(v, rc, "%s", rc == FV_ENOSPC ? "disk full"
                                             : fv_store_errmsg(v->store));
}

void fv_id_to_hex(char out[FV_ID_HEX_BYTES],
                  const unsigned char id[FV_ID_BYTES])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < FV_ID_BYTES; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * FV_ID_BYTES] = '\0';
}

/* ---- files ---------------------------------------------------------- */

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? FV_ENOSPC : FV_EIO;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno_rc(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return FV_OK;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return FV_EIO;
    fsync(fd);
    close(fd);
    return FV_OK;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Derives the key-wrapping key from the passphrase. */
static int wrapping_key(unsigned char *out, const unsigned char *header,
                        const char *pass, size_t passlen)
{
    return fv_pwhash(out, FV_KEY_BYTES, pass, passlen, header + 32,
                     get_le(header + 16, 8), get_le(header + 24, 8));
}

/* Writes the key file atomically: temp file, fsync, rename, fsync dir. With
 * `exclusive`, fails with FV_EEXIST if a key file is already there. */
static int write_key_file(fv_vault *v, const char *pass, size_t passlen,
                          int exclusive)
{
    unsigned char kf[KF_BYTES];
    unsigned char *wk = NULL;
    char *path = path_join(v->dir, KEY_FILE), *tmp = path_join(v->dir, ".vault.key.tmp");
    int fd = -1, rc;

    if (!path || !tmp) {
        rc = FV_ENOMEM;
        goto done;
    }
    memcpy(kf, KF_MAGIC, 8);
    put_le(kf + 8, FV_FORMAT_VERSION, 4);
    put_le(kf + 12, KF_ALG_ARGON2ID13, 4);
    put_le(kf + 16, v->opslimit, 8);
    put_le(kf + 24, v->memlimit, 8);
    fv_random(kf + 32, FV_SALT_BYTES);
    fv_random(kf + KF_HEADER_BYTES, FV_NONCE_BYTES);
    wk = fv_secure_alloc(FV_KEY_BYTES);
    if (!wk) {
        rc = FV_ENOMEM;
        goto done;
    }
    if ((rc = wrapping_key(wk, kf, pass, passlen)))
        goto done;
    fv_aead_encrypt(kf + KF_HEADER_BYTES + FV_NONCE_BYTES, v->sec->vault_key,
                    FV_KEY_BYTES, kf, KF_HEADER_BYTES, kf + KF_HEADER_BYTES, wk);

    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno_rc(errno);
        goto done;
    }
    if ((rc = write_all(fd, kf, sizeof kf)))
        goto done;
    if (fsync(fd) != 0) {
        rc = errno_rc(errno);
        goto done;
    }
    close(fd);
    fd = -1;
    if (exclusive) {
        /* link() refuses to replace: no race with a second init. */
        if (link(tmp, path) != 0) {
            rc = errno == EEXIST ? FV_EEXIST : errno_rc(errno);
            goto done;
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        rc = errno_rc(errno);
        goto done;
    }
    fsync_dir(v->dir);
done:
    if (fd >= 0)
        close(fd);
    if (tmp && rc)
        unlink(tmp);
    fv_secure_free(wk);
    free(path);
    free(tmp);
    return rc;
}

/* Reads and unwraps the key file into v->sec->vault_key. */
static int read_key_file(fv_vault *v, const char *pass, size_t passlen)
{
    unsigned char kf[KF_BYTES + 1];
    unsigned char *wk = NULL;
    char *path = path_join(v->dir, KEY_FILE);
    ssize_t n = 0, r;
    int fd, rc;

    if (!path)
        return FV_ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return errno == ENOENT ? fv_v_err(v, FV_ENOVAULT, "no vault at %s", v->dir)
                               : fv_v_err(v, FV_EIO, "cannot read the key file: %s",
                                      strerror(errno));
    while ((r = read(fd, kf + n, sizeof kf - (size_t)n)) > 0 ||
           (r < 0 && errno == EINTR))
        if (r > 0)
            n += r;
    close(fd);
    if (n < 12 || memcmp(kf, KF_MAGIC, 8) != 0)
        return fv_v_err(v, FV_ECORRUPT, "the key file is not a FieldVault key file");
    if (get_le(kf + 8, 4) > FV_FORMAT_VERSION)
        return fv_v_err(v, FV_EVERSION,
                    "the vault has format %u; this version reads format %d",
                    (unsigned)get_le(kf + 8, 4), FV_FORMAT_VERSION);
    if (n != KF_BYTES || get_le(kf + 8, 4) != FV_FORMAT_VERSION ||
        get_le(kf + 12, 4) != KF_ALG_ARGON2ID13 ||
        !fv_pwhash_params_ok(get_le(kf + 16, 8), get_le(kf + 24, 8)))
        return fv_v_err(v, FV_ECORRUPT, "the key file is damaged");
    v->opslimit = get_le(kf + 16, 8);
    v->memlimit = get_le(kf + 24, 8);
    wk = fv_secure_alloc(FV_KEY_BYTES);
    if (!wk)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    rc = wrapping_key(wk, kf, pass, passlen);
    if (rc == FV_OK &&
        fv_aead_decrypt(v->sec->vault_key, kf + KF_HEADER_BYTES + FV_NONCE_BYTES,
                        FV_KEY_BYTES + FV_TAG_BYTES, kf, KF_HEADER_BYTES,
                        kf + KF_HEADER_BYTES, wk) != FV_OK)
        rc = FV_EPASSPHRASE;
    fv_secure_free(wk);
    if (rc == FV_EPASSPHRASE)
        return fv_v_err(v, rc, "wrong passphrase");
    return fv_v_err(v, rc, "cannot derive the key: %s", fv_strerror(rc));
}

/* ---- secrets in the meta table -------------------------------------- */

/* Stored as nonce || XChaCha20-Poly1305(subkey, plain, ad). */
int fv_v_meta_seal(fv_vault *v, const char *name, uint64_t subkey_id,
                   const unsigned char *plain, size_t len,
                   const unsigned char *ad, size_t adlen)
{
    unsigned char *k = fv_secure_alloc(FV_KEY_BYTES);
    unsigned char *blob = malloc(FV_NONCE_BYTES + len + FV_TAG_BYTES);
    int rc = FV_ENOMEM;

    if (k && blob) {
        fv_kdf_derive(k, FV_KEY_BYTES, subkey_id, META_KEY_CTX, v->sec->vault_key);
        fv_random(blob, FV_NONCE_BYTES);
        fv_aead_encrypt(blob + FV_NONCE_BYTES, plain, len, ad, adlen, blob, k);
        rc = fv_v_serr(v, fv_store_meta_put(v->store, name, blob,
                                             FV_NONCE_BYTES + len + FV_TAG_BYTES));
    }
    fv_secure_free(k);
    free(blob);
    return rc;
}

int fv_v_meta_open(fv_vault *v, const char *name, uint64_t subkey_id,
                   unsigned char *plain, size_t len, const unsigned char *ad,
                   size_t adlen)
{
    unsigned char *blob = NULL, *k = NULL;
    size_t blen;
    int rc = fv_store_meta_get(v->store, name, &blob, &blen);

    if (rc == FV_OK && blen != FV_NONCE_BYTES + len + FV_TAG_BYTES)
        rc = FV_ECORRUPT;
    if (rc == FV_OK) {
        k = fv_secure_alloc(FV_KEY_BYTES);
        if (!k)
            rc = FV_ENOMEM;
    }
    if (rc == FV_OK) {
        fv_kdf_derive(k, FV_KEY_BYTES, subkey_id, META_KEY_CTX, v->sec->vault_key);
        rc = fv_aead_decrypt(plain, blob + FV_NONCE_BYTES, blen - FV_NONCE_BYTES,
                             ad, adlen, blob, k);
    }
    fv_secure_free(k);
    free(blob);
    return rc;
}

/* ---- device keys ---------------------------------------------------- */

/* The device's secret keys are stored encrypted under a subkey of the vault
 * key, bound to the public keys stored beside them. */
static void devkey_ad(unsigned char ad[FV_SIGN_PK_BYTES + FV_BOX_PK_BYTES],
                      const fv_vault *v)
{
    memcpy(ad, v->sign_pk, FV_SIGN_PK_BYTES);
    memcpy(ad + FV_SIGN_PK_BYTES, v->box_pk, FV_BOX_PK_BYTES);
}

static int store_device_keys(fv_vault *v)
{
    unsigned char ad[FV_SIGN_PK_BYTES + FV_BOX_PK_BYTES];
    unsigned char *plain = fv_secure_alloc(DEVKEY_SECRET_BYTES);
    int rc;

    if (!plain)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    memcpy(plain, v->sec->sign_sk, FV_SIGN_SK_BYTES);
    memcpy(plain + FV_SIGN_SK_BYTES, v->sec->box_sk, FV_BOX_SK_BYTES);
    devkey_ad(ad, v);
    rc = fv_store_meta_put(v->store, "sign_pk", v->sign_pk, FV_SIGN_PK_BYTES);
    if (!rc)
        rc = fv_store_meta_put(v->store, "box_pk", v->box_pk, FV_BOX_PK_BYTES);
    if (!rc)
        rc = fv_v_meta_seal(v, "device_keys", META_DEVICE_KEYS, plain,
                            DEVKEY_SECRET_BYTES, ad, sizeof ad);
    fv_secure_free(plain);
    return fv_v_serr(v, rc);
}

static int meta_exact(fv_vault *v, const char *key, unsigned char *out,
                      size_t n)
{
    unsigned char *val;
    size_t len;
    int rc = fv_store_meta_get(v->store, key, &val, &len);
    if (rc == FV_OK && len != n)
        rc = FV_ECORRUPT;
    if (rc == FV_OK)
        memcpy(out, val, n);
    free(val);
    return rc;
}

static int load_device_keys(fv_vault *v)
{
    unsigned char ad[FV_SIGN_PK_BYTES + FV_BOX_PK_BYTES];
    unsigned char *plain;
    int rc;

    if ((rc = meta_exact(v, "sign_pk", v->sign_pk, FV_SIGN_PK_BYTES)) ||
        (rc = meta_exact(v, "box_pk", v->box_pk, FV_BOX_PK_BYTES)))
        return rc == FV_ECORRUPT || rc == FV_ENOTFOUND
                   ? fv_v_err(v, FV_ECORRUPT, "the vault database is damaged")
                   : fv_v_serr(v, rc);
    if (!(plain = fv_secure_alloc(DEVKEY_SECRET_BYTES)))
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    devkey_ad(ad, v);
    rc = fv_v_meta_open(v, "device_keys", META_DEVICE_KEYS, plain,
                        DEVKEY_SECRET_BYTES, ad, sizeof ad);
    if (rc == FV_OK) {
        memcpy(v->sec->sign_sk, plain, FV_SIGN_SK_BYTES);
        memcpy(v->sec->box_sk, plain + FV_SIGN_SK_BYTES, FV_BOX_SK_BYTES);
    }
    fv_secure_free(plain);
    if (rc == FV_ECORRUPT || rc == FV_ENOTFOUND)
        return fv_v_err(v, FV_ECORRUPT,
                        "the vault's device keys do not match its key file");
    if (rc)
        return fv_v_serr(v, rc);
    /* The organisation's keys, if this vault has them (vault_sync.c). */
    rc = meta_exact(v, "org_pk", v->org_pk, FV_BOX_PK_BYTES);
    if (rc == FV_OK) {
        v->has_org_pk = 1;
        rc = fv_v_meta_open(v, "org_sk", META_ORG_KEY, v->sec->org_sk,
                            FV_BOX_SK_BYTES, v->org_pk, FV_BOX_PK_BYTES);
        if (rc == FV_OK)
            v->has_org_sk = 1;
    }
    if (rc == FV_ENOTFOUND)
        rc = FV_OK;
    return rc == FV_ECORRUPT
               ? fv_v_err(v, rc, "the vault's organisation key is damaged")
               : fv_v_serr(v, rc);
}

/* ---- open, create, close ------------------------------------------- */

static int vault_new(fv_vault **out, const char *dir)
{
    fv_vault *v;
    *out = NULL;
    if (!dir || !*dir)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    v = calloc(1, sizeof *v);
    if (!v)
        return FV_ENOMEM;
    v->dir = strdup(dir);
    v->sec = fv_secure_alloc(sizeof *v->sec);
    if (!v->dir || !v->sec) {
        fv_vault_close(v);
        return FV_ENOMEM;
    }
    *out = v;
    return FV_OK;
}

static int open_store(fv_vault *v, int create)
{
    char *path = path_join(v->dir, DB_FILE);
    int rc;
    if (!path)
        return FV_ENOMEM;
    rc = fv_store_open(&v->store, path, create);
    free(path);
    switch (rc) {
    case FV_OK: return FV_OK;
    case FV_ENOVAULT: return fv_v_err(v, rc, "the vault at %s has no database", v->dir);
    case FV_ECORRUPT: return fv_v_err(v, rc, "the vault database is damaged");
    case FV_EVERSION: return fv_v_err(v, rc, "the vault database has a newer format");
    case FV_EEXIST: return fv_v_err(v, rc, "a vault database already exists in %s", v->dir);
    default: return fv_v_err(v, rc, "cannot open the vault database: %s", fv_strerror(rc));
    }
}

int fv_vault_create(fv_vault **out, const char *dir, const char *passphrase,
                    size_t passphrase_len, const fv_create_options *opts)
{
    fv_create_options defaults = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    struct stat sb;
    int rc, made_key = 0;

    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (!passphrase || passphrase_len == 0 || !opts ||
        opts->version != FV_CREATE_OPTIONS_VERSION || opts->kdf_profile < 0 ||
        opts->kdf_profile > FV_KDF_TEST)
        return FV_EINVAL;
    if ((rc = vault_new(&v, dir)))
        return rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = errno_rc(errno);
        goto fail;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        rc = FV_EIO;
        goto fail;
    }
    v->opslimit = kdf_profiles[opts->kdf_profile].ops;
    v->memlimit = kdf_profiles[opts->kdf_profile].mem;
    fv_random(v->sec->vault_key, FV_KEY_BYTES);
    fv_sign_keypair(v->sign_pk, v->sec->sign_sk);
    fv_box_keypair(v->box_pk, v->sec->box_sk);

    if ((rc = write_key_file(v, passphrase, passphrase_len, 1)))
        goto fail;
    made_key = 1;
    if ((rc = open_store(v, 1)))
        goto fail;
    if ((rc = fv_store_begin(v->store)) || (rc = store_device_keys(v)) ||
        (rc = fv_store_commit(v->store)))
        goto fail;
    *out = v;
    return FV_OK;
fail:
    if (made_key) {
        /* Undo a half-made vault so the next init can succeed. */
        char *kp = path_join(dir, KEY_FILE), *dp = path_join(dir, DB_FILE);
        fv_store_close(v->store);
        v->store = NULL;
        if (kp)
            unlink(kp);
        if (dp && rc != FV_EEXIST)
            unlink(dp);
        free(kp);
        free(dp);
    }
    fv_vault_close(v);
    return rc;
}

int fv_vault_open(fv_vault **out, const char *dir, const char *passphrase,
                  size_t passphrase_len)
{
    fv_vault *v = NULL;
    int rc;

    *out = NULL;
    if (!passphrase)
        return FV_EINVAL;
    if ((rc = vault_new(&v, dir)))
        return rc;
    if ((rc = read_key_file(v, passphrase, passphrase_len)) ||
        (rc = open_store(v, 0)) || (rc = load_device_keys(v))) {
        fv_vault_close(v);
        return rc;
    }
    *out = v;
    return FV_OK;
}

void fv_vault_close(fv_vault *v)
{
    if (!v)
        return;
    fv_store_close(v->store);
    fv_secure_free(v->sec);
    free(v->dir);
    free(v);
}

int fv_vault_passwd(fv_vault *v, const char *pass, size_t passlen)
{
    if (!pass || passlen == 0)
        return fv_v_err(v, FV_EINVAL, "the new passphrase is empty");
    return fv_v_err(v, write_key_file(v, pass, passlen, 0),
                "cannot write the new key file");
}

int fv_vault_device_id(const fv_vault *v, unsigned char out[FV_ID_BYTES])
{
    memcpy(out, v->sign_pk, FV_ID_BYTES);
    return FV_OK;
}

/* Overwrites a file with random bytes and syncs it, then removes it. */
static int shred_unlink(const char *path)
{
    unsigned char junk[4096];
    struct stat sb;
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? FV_ENOTFOUND : FV_EIO;
    if (fstat(fd, &sb) == 0) {
        for (off_t done = 0; done < sb.st_size; done += (off_t)sizeof junk) {
            fv_random(junk, sizeof junk);
            if (write_all(fd, junk, sizeof junk) != FV_OK)
                break;
        }
        fdatasync(fd);
    }
    close(fd);
    return unlink(path) == 0 ? FV_OK : FV_EIO;
}

int fv_vault_panic(const char *dir)
{
    static const char *const rest[] = {DB_FILE, DB_FILE "-wal", DB_FILE "-shm",
                                       ".vault.key.tmp"};
    char *path;
    int rc;

    if (!dir || !*dir)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    /* The key file first: once it is gone nothing else can be decrypted,
     * however long removing the rest takes or whether it completes. */
    if (!(path = path_join(dir, KEY_FILE)))
        return FV_ENOMEM;
    rc = shred_unlink(path);
    free(path);
    if (rc == FV_ENOTFOUND)
        rc = FV_ENOVAULT;
    else if (rc == FV_OK)
        fsync_dir(dir);
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        if ((path = path_join(dir, rest[i]))) {
            if (unlink(path) == 0 && rc == FV_ENOVAULT)
                rc = FV_OK;
            free(path);
        }
    }
    rmdir(dir); /* only if empty: the directory may hold the user's files */
    return rc;
}

/* ---- reading envelopes ---------------------------------------------- */

/* Parses a stored envelope and checks that it is what the store says it is:
 * the content address, the record it belongs to. */
int fv_v_parse_stored(fv_vault *v, fv_env *e, const fv_store_env *se)
{
    int rc;
    if (!se->bytes)
        return fv_v_err(v, FV_ENOTFOUND, "the revision was deleted");
    rc = fv_env_parse(e, se->bytes, se->len);
    if (rc == FV_OK && (!fv_ct_equal(e->id, se->id, FV_ID_BYTES) ||
                        memcmp(e->record, se->record, FV_ID_BYTES) != 0 ||
                        e->kind != se->kind)) {
        fv_env_clear(e);
        rc = FV_ECORRUPT;
    }
    if (rc == FV_ECORRUPT)
        return fv_v_err(v, rc, "an envelope failed verification (tampered or damaged)");
    return fv_v_err(v, rc, "cannot read an envelope: %s", fv_strerror(rc));
}

struct grant_try {
    fv_vault *v;
    const fv_env *target;
    unsigned char *plain;
    size_t plain_len;
};

/* Tries one key grant for the target envelope: a grant from the target's
 * own author, sealed to a key this vault holds, whose key opens the target. */
static int grant_cb(const unsigned char *bytes, size_t len, void *payload)
{
    struct grant_try *t = payload;
    unsigned char key[FV_KEY_BYTES];
    fv_env g;
    int rc;

    if (fv_env_parse(&g, bytes, len) != FV_OK)
        return 0;
    rc = FV_ENOTFOUND;
    if (g.kind == FV_ENV_GRANT &&
        memcmp(g.author, t->target->author, FV_SIGN_PK_BYTES) == 0 &&
        memcmp(g.record, t->target->record, FV_ID_BYTES) == 0 &&
        memcmp(g.parents[0], t->target->id, FV_ID_BYTES) == 0) {
        rc = fv_env_unseal(&g, t->v->box_pk, t->v->sec->box_sk, key);
        if (rc == FV_ENOTFOUND && t->v->has_org_sk)
            rc = fv_env_unseal(&g, t->v->org_pk, t->v->sec->org_sk, key);
        if (rc == FV_OK)
            rc = fv_env_decrypt(t->target, key, &t->plain, &t->plain_len);
    }
    fv_wipe(key, sizeof key);
    fv_env_clear(&g);
    return rc == FV_OK; /* stop at the first grant that works */
}

int fv_v_open_payload(fv_vault *v, const fv_env *e, unsigned char **plain,
                      size_t *plain_len)
{
    struct grant_try t = {v, e, NULL, 0};
    int rc = fv_env_open(e, v->box_pk, v->sec->box_sk, plain, plain_len);

    if (rc == FV_ENOTFOUND && v->has_org_sk)
        rc = fv_env_open(e, v->org_pk, v->sec->org_sk, plain, plain_len);
    if (rc != FV_ENOTFOUND)
        return rc;
    rc = fv_store_grants(v->store, e->id, grant_cb, &t);
    if (rc < 0)
        return rc;
    if (!t.plain)
        return FV_ENOTFOUND;
    *plain = t.plain;
    *plain_len = t.plain_len;
    return FV_OK;
}

size_t fv_v_recipients(const fv_vault *v,
                       unsigned char out[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES],
                       const fv_env *extra)
{
    size_t n = 0, i, j;
    memcpy(out[n++], v->box_pk, FV_BOX_PK_BYTES);
    if (v->has_org_pk)
        memcpy(out[n++], v->org_pk, FV_BOX_PK_BYTES);
    for (i = 0; extra && i < extra->nrecipients; i++) {
        for (j = 0; j < n; j++)
            if (memcmp(out[j], extra->recipient_pk[i], FV_BOX_PK_BYTES) == 0)
                break;
        if (j == n && n < FV_ENV_MAX_RECIPIENTS)
            memcpy(out[n++], extra->recipient_pk[i], FV_BOX_PK_BYTES);
    }
    return n;
}

/* Decrypts a parsed revision envelope into a record. */
static int open_revision(fv_vault *v, fv_rec **out, const fv_env *e)
{
    unsigned char *plain;
    size_t plain_len;
    fv_rec *r;
    int rc;

    *out = NULL;
    rc = fv_v_open_payload(v, e, &plain, &plain_len);
    if (rc == FV_ENOTFOUND)
        return fv_v_err(v, rc, "the record is not readable by this vault");
    if (rc)
        return fv_v_err(v, FV_ECORRUPT, "an envelope failed to decrypt (tampered or damaged)");
    rc = fv_payload_decode(&r, plain, plain_len);
    fv_env_free_plain(plain, plain_len);
    if (rc)
        return fv_v_err(v, rc, "a record's content is malformed");
    /* The envelope's signed chunk lists must match the payload's manifest. */
    if (r->pub.nattachments != e->nattachments)
        rc = FV_ECORRUPT;
    for (size_t i = 0; rc == FV_OK && i < e->nattachments; i++)
        if (r->pub.attachments[i].chunks != e->chunk_counts[i])
            rc = FV_ECORRUPT;
    if (rc) {
        fv_rec_free(r);
        return fv_v_err(v, rc, "a record's attachment manifest does not match its envelope");
    }
    memcpy(r->pub.id, e->record, FV_ID_BYTES);
    memcpy(r->pub.revision, e->id, FV_ID_BYTES);
    memcpy(r->pub.author, e->author, FV_ID_BYTES);
    *out = r;
    return FV_OK;
}

/* The newest undeleted head of one record, gathered from its head rows. */
struct head_pick {
    fv_vault *v;
    fv_rec *best;
    fv_env best_env; /* kept for attachment chunk lists */
    unsigned char *best_bytes;
    size_t nheads;
    int rc;
    int want_env;
};

static void pick_clear(struct head_pick *p)
{
    fv_rec_free(p->best);
    fv_env_clear(&p->best_env);
    free(p->best_bytes);
    p->best = NULL;
    p->best_bytes = NULL;
    p->nheads = 0;
}

/* Considers one head row: tombstones count as heads but are never shown. */
static int pick_consider(struct head_pick *p, const fv_store_env *se)
{
    fv_env e;
    fv_rec *r;
    int rc;

    p->nheads++;
    if (se->kind == FV_ENV_TOMBSTONE)
        return FV_OK;
    if ((rc = fv_v_parse_stored(p->v, &e, se)))
        return rc;
    rc = open_revision(p->v, &r, &e);
    if (rc) {
        fv_env_clear(&e);
        return rc;
    }
    if (p->best && p->best->pub.modified > r->pub.modified) {
        fv_rec_free(r);
        fv_env_clear(&e);
        return FV_OK;
    }
    fv_rec_free(p->best);
    fv_env_clear(&p->best_env);
    free(p->best_bytes);
    p->best = r;
    p->best_env = e;
    p->best_bytes = NULL;
    if (p->want_env) {
        /* The env points into statement memory: keep its own copy. */
        fv_env_clear(&p->best_env);
        p->best_bytes = malloc(se->len);
        if (!p->best_bytes)
            return FV_ENOMEM;
        memcpy(p->best_bytes, se->bytes, se->len);
        return fv_env_parse(&p->best_env, p->best_bytes, se->len);
    }
    fv_env_clear(&p->best_env);
    return FV_OK;
}

static int pick_cb(const fv_store_env *se, void *payload)
{
    struct head_pick *p = payload;
    int rc = pick_consider(p, se);
    if (rc)
        p->rc = rc;
    return rc;
}

/* Finds the newest undeleted head of `id`. */
static int newest_head(fv_vault *v, struct head_pick *p,
                       const unsigned char id[FV_ID_BYTES], int want_env)
{
    int rc;
    memset(p, 0, sizeof *p);
    p->v = v;
    p->want_env = want_env;
    rc = fv_store_record_heads(v->store, id, pick_cb, p);
    if (rc && !p->rc)
        rc = fv_v_serr(v, rc);
    if (rc == FV_OK && !p->best)
        rc = fv_v_err(v, FV_ENOTFOUND, p->nheads ? "the record was deleted"
                                             : "no such record");
    if (rc == FV_OK)
        p->best->pub.nheads = p->nheads;
    else
        pick_clear(p);
    return rc;
}

int fv_record_get(fv_vault *v, fv_record **out, const unsigned char id[FV_ID_BYTES])
{
    struct head_pick p;
    int rc;
    *out = NULL;
    if ((rc = newest_head(v, &p, id, 0)))
        return rc;
    *out = &p.best->pub;
    p.best = NULL;
    pick_clear(&p);
    return FV_OK;
}

void fv_record_free(fv_record *r)
{
    /* fv_record is the first member of fv_rec. */
    fv_rec_free((fv_rec *)r);
}

/* ---- listing and search --------------------------------------------- */

static int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int contains(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m == 0)
        return 1;
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && ascii_lower((unsigned char)hay[i + j]) ==
                            ascii_lower((unsigned char)needle[j]))
            j++;
        if (j == m)
            return 1;
    }
    return 0;
}

static int cstr_contains(const char *s, const char *needle)
{
    return contains(s, strlen(s), needle, strlen(needle));
}

static int record_matches(const fv_record *r, const char *text)
{
    size_t i;
    if (cstr_contains(r->title, text) ||
        contains(r->narrative, r->narrative_len, text, strlen(text)))
        return 1;
    for (i = 0; i < r->nfields; i++)
        if (cstr_contains(r->fields[i].key, text) ||
            cstr_contains(r->fields[i].value, text))
            return 1;
    for (i = 0; i < r->ntags; i++)
        if (cstr_contains(r->tags[i], text))
            return 1;
    for (i = 0; i < r->nattachments; i++)
        if (cstr_contains(r->attachments[i].name, text))
            return 1;
    return 0;
}

struct walk {
    fv_vault *v;
    const char *text; /* NULL: every record */
    fv_record_fn fn;
    void *payload;
    struct head_pick pick;
    unsigned char record[FV_ID_BYTES];
    int have_record;
    int bad_record; /* the current record failed verification */
    size_t corrupt;
    int stop;
};

/* Emits the record gathered so far, if any, and starts over. */
static int walk_flush(struct walk *w)
{
    int rc = 0;
    if (w->bad_record)
        w->corrupt++;
    else if (w->pick.best) {
        w->pick.best->pub.nheads = w->pick.nheads;
        if (!w->text || record_matches(&w->pick.best->pub, w->text))
            rc = w->fn(&w->pick.best->pub, w->payload);
    }
    pick_clear(&w->pick);
    w->pick.v = w->v;
    w->bad_record = 0;
    return rc;
}

static int walk_cb(const fv_store_env *se, void *payload)
{
    struct walk *w = payload;
    int rc;
    if (!w->have_record || memcmp(w->record, se->record, FV_ID_BYTES) != 0) {
        if (w->have_record && walk_flush(w)) {
            w->stop = 1;
            return FV_ECANCELED;
        }
        memcpy(w->record, se->record, FV_ID_BYTES);
        w->have_record = 1;
    }
    if (w->bad_record)
        return FV_OK;
    rc = pick_consider(&w->pick, se);
    if (rc == FV_ECORRUPT) {
        w->bad_record = 1;
        return FV_OK;
    }
    return rc;
}

static int walk(fv_vault *v, const char *text, fv_record_fn fn, void *payload)
{
    struct walk w;
    int rc;

    memset(&w, 0, sizeof w);
    w.v = v;
    w.pick.v = v;
    w.text = text;
    w.fn = fn;
    w.payload = payload;
    rc = fv_store_each_head(v->store, walk_cb, &w);
    if (rc == FV_OK && w.have_record && walk_flush(&w))
        rc = FV_ECANCELED;
    pick_clear(&w.pick);
    if (rc == FV_ECANCELED)
        return fv_v_err(v, rc, "stopped by the caller");
    if (rc)
        return w.stop ? rc : (v->msg[0] ? rc : fv_v_serr(v, rc));
    if (w.corrupt)
        return fv_v_err(v, FV_ECORRUPT,
                    "%zu record%s failed verification (tampered or damaged) "
                    "and %s not shown",
                    w.corrupt, w.corrupt == 1 ? "" : "s",
                    w.corrupt == 1 ? "was" : "were");
    return FV_OK;
}

int fv_vault_list(fv_vault *v, fv_record_fn fn, void *payload)
{
    if (!v || !fn)
        return FV_EINVAL;
    return walk(v, NULL, fn, payload);
}

int fv_vault_search(fv_vault *v, const char *text, fv_record_fn fn,
                    void *payload)
{
    if (!v || !fn || !text)
        return FV_EINVAL;
    return walk(v, text, fn, payload);
}

/* ---- history -------------------------------------------------------- */

struct history {
    fv_vault *v;
    fv_revision_fn fn;
    void *payload;
    int rc;
};

static int history_cb(const fv_store_env *se, void *payload)
{
    struct history *h = payload;
    fv_revision rev;
    fv_env e;
    fv_rec *r = NULL;
    int rc;

    memset(&rev, 0, sizeof rev);
    memcpy(rev.id, se->id, FV_ID_BYTES);
    rev.kind = se->kind;
    rev.head = se->head;
    if (!se->bytes) {
        rev.purged = 1;
        return h->fn(&rev, h->payload) ? FV_ECANCELED : FV_OK;
    }
    if ((rc = fv_v_parse_stored(h->v, &e, se)))
        return h->rc = rc;
    memcpy(rev.author, e.author, FV_ID_BYTES);
    rev.parents = (const unsigned char(*)[FV_ID_BYTES])e.parents;
    rev.nparents = e.nparents;
    if (e.kind == FV_ENV_TOMBSTONE) {
        unsigned char *plain;
        size_t n;
        rc = fv_v_open_payload(h->v, &e, &plain, &n);
        if (rc == FV_OK) {
            rc = fv_tombstone_decode(&rev.time, plain, n);
            fv_env_free_plain(plain, n);
        }
        if (rc)
            rc = fv_v_err(h->v, FV_ECORRUPT, "a tombstone failed verification");
    } else if ((rc = open_revision(h->v, &r, &e)) == FV_OK) {
        rev.time = r->pub.modified;
    }
    if (rc == FV_OK && h->fn(&rev, h->payload))
        rc = FV_ECANCELED;
    fv_rec_free(r);
    fv_env_clear(&e);
    return h->rc = rc;
}

int fv_record_history(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                      fv_revision_fn fn, void *payload)
{
    struct history h = {v, fn, payload, FV_OK};
    int rc, seen = 0;
    unsigned char rec[FV_ID_BYTES];
    unsigned char *bytes = NULL;
    size_t len;
    int kind;

    /* A record id is its first revision's id. */
    rc = fv_store_env_get(v->store, id, rec, &kind, &bytes, &len);
    free(bytes);
    if (rc == FV_ENOTFOUND || (rc == FV_OK && memcmp(rec, id, FV_ID_BYTES)))
        return fv_v_err(v, FV_ENOTFOUND, "no such record");
    if (rc)
        return fv_v_serr(v, rc);
    (void)seen;
    rc = fv_store_record_envs(v->store, id, history_cb, &h);
    if (rc == FV_ECANCELED)
        return fv_v_err(v, rc, "stopped by the caller");
    return h.rc ? h.rc : fv_v_serr(v, rc);
}

int fv_record_resolve(fv_vault *v, unsigned char out[FV_ID_BYTES],
                      const char *hex)
{
    unsigned char lo[FV_ID_BYTES], hi[FV_ID_BYTES], found[2][FV_ID_BYTES];
    size_t n, count, i;
    int rc;

    if (!hex || (n = strlen(hex)) < 4 || n > 2 * FV_ID_BYTES)
        return fv_v_err(v, FV_EINVAL, "an id is 4 to 64 hexadecimal digits");
    memset(lo, 0x00, sizeof lo);
    memset(hi, 0xff, sizeof hi);
    for (i = 0; i < n; i++) {
        int c = ascii_lower((unsigned char)hex[i]), d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return fv_v_err(v, FV_EINVAL, "an id is 4 to 64 hexadecimal digits");
        if (i % 2 == 0) {
            lo[i / 2] = (unsigned char)(d << 4);
            hi[i / 2] = (unsigned char)(d << 4 | 0x0f);
        } else {
            lo[i / 2] |= (unsigned char)d;
            hi[i / 2] = (unsigned char)((hi[i / 2] & 0xf0) | d);
        }
    }
    rc = fv_store_records_between(v->store, lo, hi, found, 2, &count);
    if (rc)
        return fv_v_serr(v, rc);
    if (count == 0)
        return fv_v_err(v, FV_ENOTFOUND, "no record with id %s", hex);
    if (count > 1)
        return fv_v_err(v, FV_EAMBIGUOUS, "more than one record id starts with %s", hex);
    memcpy(out, found[0], FV_ID_BYTES);
    return FV_OK;
}

/* ---- writing -------------------------------------------------------- */

/* Chunk i of an attachment is encrypted under the attachment's own key with
 * the nonce LE64(i) || zeros: keys are never reused across attachments. */
static void chunk_nonce(unsigned char nonce[FV_NONCE_BYTES], uint64_t i)
{
    memset(nonce, 0, FV_NONCE_BYTES);
    put_le(nonce, i, 8);
}

struct attach_out {
    fv_attachment_info *info;            /* grows with the record */
    unsigned char (*keys)[FV_KEY_BYTES]; /* wiped on free */
    uint64_t *counts;
    unsigned char (*chunks)[FV_HASH_BYTES];
    size_t n, nchunks, chunks_cap;
};

struct progress {
    fv_progress_fn fn;
    void *payload;
    uint64_t done, total;
};

static int chunks_push(struct attach_out *o, const unsigned char h[FV_HASH_BYTES])
{
    if (o->nchunks == o->chunks_cap) {
        size_t cap = o->chunks_cap ? o->chunks_cap * 2 : 64;
        void *p = realloc(o->chunks, cap * FV_HASH_BYTES);
        if (!p)
            return FV_ENOMEM;
        o->chunks = p;
        o->chunks_cap = cap;
    }
    memcpy(o->chunks[o->nchunks++], h, FV_HASH_BYTES);
    return FV_OK;
}

/* Fills buf from a file or a callback; short only at the end. */
static int read_full(int fd, const fv_attachment_source *src, unsigned char *buf,
                     size_t cap, size_t *got)
{
    *got = 0;
    while (*got < cap) {
        long long r;
        if (fd >= 0) {
            r = read(fd, buf + *got, cap - *got);
            if (r < 0 && errno == EINTR)
                continue;
        } else {
            r = src->read(buf + *got, cap - *got, src->read_payload);
        }
        if (r < 0 || (unsigned long long)r > cap - *got)
            return FV_EIO;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return FV_OK;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Encrypts one attachment into chunks stored inside the open transaction. */
static int add_attachment(fv_vault *v, struct attach_out *o, size_t idx,
                          const fv_attachment_source *src, struct progress *pr,
                          unsigned char *plain, unsigned char *ct)
{
    fv_attachment_info *info = &o->info[o->n];
    unsigned char *key = o->keys[o->n];
    unsigned char nonce[FV_NONCE_BYTES], hash[FV_HASH_BYTES];
    uint64_t count = 0, size = 0;
    size_t got;
    int fd = -1, rc = FV_OK;

    info->name = src->name ? src->name : (src->path ? base_name(src->path) : NULL);
    if (!fv_text_ok(info->name, FV_MAX_ATTACHMENT_NAME_BYTES) ||
        strchr(info->name, '/') || !strcmp(info->name, ".") ||
        !strcmp(info->name, ".."))
        return fv_v_err(v, FV_EINVAL, "attachment %zu has no valid name", idx + 1);
    for (size_t j = 0; j < o->n; j++)
        if (strcmp(o->info[j].name, info->name) == 0)
            return fv_v_err(v, FV_EINVAL,
                        "attachment %zu: the record already has an attachment "
                        "of that name", idx + 1);
    if (src->path) {
        fd = open(src->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return fv_v_err(v, FV_EIO, "attachment %zu: cannot open the file: %s",
                        idx + 1, strerror(errno));
    } else if (!src->read) {
        return fv_v_err(v, FV_EINVAL, "attachment %zu has neither path nor reader", idx + 1);
    }
    fv_random(key, FV_KEY_BYTES);
    for (;;) {
        if ((rc = read_full(fd, src, plain, FV_CHUNK_BYTES, &got))) {
            fv_v_err(v, rc, "attachment %zu: cannot read the file", idx + 1);
            break;
        }
        if (got == 0)
            break;
        chunk_nonce(nonce, count);
        fv_aead_encrypt(ct, plain, got, NULL, 0, nonce, key);
        fv_hash(hash, ct, got + FV_TAG_BYTES);
        if ((rc = fv_store_chunk_put(v->store, hash, ct, got + FV_TAG_BYTES)) ||
            (rc = chunks_push(o, hash))) {
            fv_v_serr(v, rc);
            break;
        }
        count++;
        size += got;
        pr->done += got;
        if (pr->fn && pr->fn(pr->done, pr->total, pr->payload)) {
            rc = fv_v_err(v, FV_ECANCELED, "canceled");
            break;
        }
        if (got < FV_CHUNK_BYTES)
            break;
    }
    if (fd >= 0)
        close(fd);
    if (rc)
        return rc;
    info->size = size;
    info->chunk_bytes = FV_CHUNK_BYTES;
    info->chunks = count;
    o->counts[o->n] = count;
    o->n++;
    return FV_OK;
}

static void attach_out_free(struct attach_out *o)
{
    free(o->info);
    if (o->keys)
        fv_secure_free(o->keys);
    free(o->counts);
    free(o->chunks);
}

static int attach_out_init(struct attach_out *o, size_t n)
{
    memset(o, 0, sizeof *o);
    o->info = calloc(n ? n : 1, sizeof *o->info);
    o->counts = calloc(n ? n : 1, sizeof *o->counts);
    if (n) /* attachment keys: locked memory, only when there are some */
        o->keys = fv_secure_alloc(n * FV_KEY_BYTES);
    return o->info && o->counts && (!n || o->keys) ? FV_OK : FV_ENOMEM;
}

int fv_v_write_envelope(fv_vault *v, unsigned char id_out[FV_ID_BYTES],
                        const fv_v_write *w)
{
    unsigned char recips[FV_ENV_MAX_RECIPIENTS][FV_BOX_PK_BYTES];
    fv_env_spec spec = {
        .kind = w->kind,
        .content_key = w->content_key,
        .record = w->record,
        .parents = w->parents,
        .nparents = w->nparents,
        .payload = w->payload,
        .payload_len = w->payload_len,
        .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])recips,
        .chunk_counts = w->chunk_counts,
        .nattachments = w->nattachments,
        .chunks = w->chunks,
        .sign_pk = v->sign_pk,
        .sign_sk = v->sec->sign_sk,
    };
    fv_store_env se;
    unsigned char *env = NULL;
    size_t env_len;
    int rc, added;

    if (w->recipients) {
        spec.recipients = w->recipients;
        spec.nrecipients = w->nrecipients;
    } else {
        spec.nrecipients = fv_v_recipients(v, recips, w->base);
    }
    rc = fv_env_build(&env, &env_len, id_out, &spec);
    if (rc == FV_ELIMIT)
        return fv_v_err(v, rc, "the record is too large for one envelope "
                               "(at most %u bytes)", FV_ENV_MAX_BYTES);
    if (rc)
        return fv_v_err(v, rc, "cannot build the envelope: %s", fv_strerror(rc));
    memset(&se, 0, sizeof se);
    se.id = id_out;
    se.record = w->record ? w->record : id_out;
    se.kind = w->kind;
    se.bytes = env;
    se.len = env_len;
    se.own = 1;
    se.grant = w->kind == FV_ENV_GRANT;
    rc = fv_store_env_put(v->store, &se, w->parents, w->nparents, w->chunks,
                          w->nchunks, &added);
    free(env);
    return fv_v_serr(v, rc);
}

static int check_input(fv_vault *v, const fv_record_input *in, int adding)
{
    size_t i;
    if (!in || in->version != FV_RECORD_INPUT_VERSION)
        return fv_v_err(v, FV_EINVAL, "unsupported record input version");
    if ((adding || in->title) && !fv_text_ok(in->title, FV_MAX_TITLE_BYTES))
        return fv_v_err(v, FV_EINVAL, "the title must be 1 to %d bytes of UTF-8 "
                    "text without control characters", FV_MAX_TITLE_BYTES);
    if (in->narrative && (in->narrative_len > FV_MAX_NARRATIVE_BYTES))
        return fv_v_err(v, FV_ELIMIT, "the narrative is larger than %u bytes",
                    FV_MAX_NARRATIVE_BYTES);
    if (in->narrative && !fv_utf8_valid(in->narrative, in->narrative_len))
        return fv_v_err(v, FV_EINVAL, "the narrative is not valid UTF-8");
    if (in->nfields > FV_MAX_FIELDS || in->ntags > FV_MAX_TAGS ||
        in->nattachments > FV_MAX_ATTACHMENTS)
        return fv_v_err(v, FV_ELIMIT, "too many fields, tags or attachments");
    for (i = 0; i < in->nfields; i++)
        if (!fv_text_ok(in->fields[i].key, FV_MAX_FIELD_KEY_BYTES) ||
            !fv_value_ok(in->fields[i].value, FV_MAX_FIELD_VALUE_BYTES))
            return fv_v_err(v, FV_EINVAL, "field %zu: a key is 1 to %d bytes of "
                        "UTF-8 without control characters; a value is UTF-8",
                        i + 1, FV_MAX_FIELD_KEY_BYTES);
    for (i = 0; i < in->ntags; i++)
        if (!fv_text_ok(in->tags[i], FV_MAX_TAG_BYTES))
            return fv_v_err(v, FV_EINVAL, "tag %zu is not 1 to %d bytes of UTF-8 "
                        "without control characters", i + 1, FV_MAX_TAG_BYTES);
    if (adding && (in->nremove_tags || in->nremove_attachments))
        return fv_v_err(v, FV_EINVAL, "a new record has nothing to remove");
    return FV_OK;
}

static uint64_t sources_total(const fv_record_input *in)
{
    uint64_t total = 0;
    struct stat sb;
    for (size_t i = 0; i < in->nattachments; i++)
        if (in->attachments[i].path && stat(in->attachments[i].path, &sb) == 0)
            total += (uint64_t)sb.st_size;
    return total;
}

/* Writes one revision: the record in `r` (fields and tags sorted), the
 * attachments kept from `base` (indexes in keep[]), and new attachments from
 * `in`. Runs in one transaction: all of it is stored, or none. */
static int write_revision(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                          fv_record *r, const struct head_pick *base,
                          const size_t *keep, size_t nkeep,
                          const fv_record_input *in)
{
    struct attach_out o;
    struct progress pr = {in->progress, in->progress_payload, 0, 0};
    unsigned char *plain = NULL, *ct = NULL, *payload = NULL;
    unsigned char rev[FV_ID_BYTES];
    size_t payload_len = 0, total = nkeep + in->nattachments;
    int rc;

    if (total > FV_MAX_ATTACHMENTS)
        return fv_v_err(v, FV_ELIMIT, "a record holds at most %d attachments",
                    FV_MAX_ATTACHMENTS);
    if ((rc = attach_out_init(&o, total)))
        return fv_v_err(v, rc, "out of memory");
    /* Chunk buffers only when there are new attachments: locked memory is
     * costly to map, and most records have none. */
    if (in->nattachments) {
        plain = fv_secure_alloc(FV_CHUNK_BYTES);
        ct = malloc(FV_CHUNK_BYTES + FV_TAG_BYTES);
        if (!plain || !ct) {
            rc = fv_v_err(v, FV_ENOMEM, "out of memory");
            goto done;
        }
    }
    /* Kept attachments reuse their key and chunks: nothing is re-encrypted. */
    for (size_t i = 0; i < nkeep; i++) {
        const fv_env *be = &base->best_env;
        size_t first = 0;
        for (size_t j = 0; j < keep[i]; j++)
            first += (size_t)be->chunk_counts[j];
        o.info[o.n] = base->best->pub.attachments[keep[i]];
        memcpy(o.keys[o.n], base->best->keys[keep[i]], FV_KEY_BYTES);
        o.counts[o.n] = be->chunk_counts[keep[i]];
        for (uint64_t c = 0; c < be->chunk_counts[keep[i]]; c++)
            if ((rc = chunks_push(&o, be->chunks[first + c])))
                goto done;
        o.n++;
    }
    if ((rc = fv_store_begin(v->store))) {
        fv_v_serr(v, rc);
        goto done;
    }
    pr.total = sources_total(in);
    for (size_t i = 0; i < in->nattachments; i++)
        if ((rc = add_attachment(v, &o, i, &in->attachments[i], &pr, plain, ct)))
            goto rollback;
    r->attachments = o.info;
    r->nattachments = o.n;
    if ((rc = fv_payload_encode(&payload, &payload_len, r,
                                (const unsigned char(*)[FV_KEY_BYTES])o.keys))) {
        fv_v_err(v, rc, "cannot encode the record");
        goto rollback;
    }
    {
        fv_v_write w = {
            .kind = FV_ENV_REVISION,
            .record = base ? base->best->pub.id : NULL,
            .parents = base ? (const unsigned char(*)[FV_ID_BYTES])base->best->pub.revision
                            : NULL,
            .nparents = base ? 1 : 0,
            .payload = payload,
            .payload_len = payload_len,
            .base = base ? &base->best_env : NULL,
            .chunk_counts = o.counts,
            .nattachments = o.n,
            .chunks = (const unsigned char(*)[FV_HASH_BYTES])o.chunks,
            .nchunks = o.nchunks,
        };
        rc = fv_v_write_envelope(v, rev, &w);
    }
    if (rc)
        goto rollback;
    if ((rc = fv_store_commit(v->store))) {
        fv_v_serr(v, rc);
        goto rollback;
    }
    if (out_rev)
        memcpy(out_rev, rev, FV_ID_BYTES);
    goto done;
rollback:
    fv_store_rollback(v->store);
done:
    fv_enc_free_buf(payload, payload_len);
    fv_secure_free(plain);
    free(ct);
    attach_out_free(&o);
    return rc;
}


int fv_record_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                  const fv_record_input *in)
{
    fv_record r;
    fv_field *fields = NULL;
    const char **tags = NULL;
    size_t ntags;
    int rc;

    if (!v)
        return FV_EINVAL;
    if ((rc = check_input(v, in, 1)))
        return rc;
    memset(&r, 0, sizeof r);
    fields = malloc((in->nfields ? in->nfields : 1) * sizeof *fields);
    tags = malloc((in->ntags ? in->ntags : 1) * sizeof *tags);
    if (!fields || !tags) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    if (in->nfields)
        memcpy(fields, in->fields, in->nfields * sizeof *fields);
    for (ntags = 0; ntags < in->ntags; ntags++)
        tags[ntags] = in->tags[ntags];
    if (fv_sort_fields(fields, in->nfields)) {
        rc = fv_v_err(v, FV_EINVAL, "a field key is given twice");
        goto done;
    }
    fv_sort_tags(tags, &ntags);
    r.title = in->title;
    r.narrative = in->narrative ? in->narrative : "";
    r.narrative_len = in->narrative ? in->narrative_len : 0;
    r.fields = fields;
    r.nfields = in->nfields;
    r.tags = tags;
    r.ntags = ntags;
    r.created = r.modified = fv_v_now();
    rc = write_revision(v, out_id, &r, NULL, NULL, 0, in);
done:
    free(fields);
    free(tags);
    return rc;
}

int fv_record_edit(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                   const unsigned char id[FV_ID_BYTES],
                   const fv_record_input *in)
{
    struct head_pick base;
    const fv_record *b;
    fv_record r;
    fv_field *fields = NULL;
    const char **tags = NULL;
    size_t nfields = 0, ntags = 0, nkeep = 0, i, j;
    size_t keep[FV_MAX_ATTACHMENTS];
    int rc;

    if (!v)
        return FV_EINVAL;
    if ((rc = check_input(v, in, 0)))
        return rc;
    if ((rc = newest_head(v, &base, id, 1)))
        return rc;
    b = &base.best->pub;
    fields = malloc((b->nfields + in->nfields + 1) * sizeof *fields);
    tags = malloc((b->ntags + in->ntags + 1) * sizeof *tags);
    if (!fields || !tags) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    /* Fields: the base's, then each given one set (or removed if empty). */
    for (i = 0; i < b->nfields; i++)
        fields[nfields++] = b->fields[i];
    for (i = 0; i < in->nfields; i++) {
        for (j = 0; j < nfields && strcmp(fields[j].key, in->fields[i].key); j++)
            ;
        if (j == nfields && in->fields[i].value[0])
            fields[nfields++] = in->fields[i];
        else if (j < nfields && in->fields[i].value[0])
            fields[j].value = in->fields[i].value;
        else if (j < nfields)
            fields[j] = fields[--nfields];
    }
    if (nfields > FV_MAX_FIELDS) {
        rc = fv_v_err(v, FV_ELIMIT, "a record holds at most %d fields", FV_MAX_FIELDS);
        goto done;
    }
    fv_sort_fields(fields, nfields);
    /* Tags: the base's plus the added, less the removed. */
    for (i = 0; i < b->ntags; i++)
        tags[ntags++] = b->tags[i];
    for (i = 0; i < in->ntags; i++)
        tags[ntags++] = in->tags[i];
    for (i = 0; i < in->nremove_tags; i++)
        for (j = 0; j < ntags;)
            if (in->remove_tags[i] && strcmp(tags[j], in->remove_tags[i]) == 0)
                tags[j] = tags[--ntags];
            else
                j++;
    fv_sort_tags(tags, &ntags);
    if (ntags > FV_MAX_TAGS) {
        rc = fv_v_err(v, FV_ELIMIT, "a record holds at most %d tags", FV_MAX_TAGS);
        goto done;
    }
    /* Attachments: keep all but the removed ones, which must exist. */
    for (i = 0; i < in->nremove_attachments; i++) {
        for (j = 0; j < b->nattachments; j++)
            if (in->remove_attachments[i] &&
                strcmp(b->attachments[j].name, in->remove_attachments[i]) == 0)
                break;
        if (j == b->nattachments) {
            rc = fv_v_err(v, FV_ENOTFOUND, "the record has no attachment of that name");
            goto done;
        }
    }
    for (j = 0; j < b->nattachments; j++) {
        for (i = 0; i < in->nremove_attachments; i++)
            if (in->remove_attachments[i] &&
                strcmp(b->attachments[j].name, in->remove_attachments[i]) == 0)
                break;
        if (i == in->nremove_attachments)
            keep[nkeep++] = j;
    }
    r = *b;
    if (in->title)
        r.title = in->title;
    if (in->narrative) {
        r.narrative = in->narrative;
        r.narrative_len = in->narrative_len;
    }
    r.fields = fields;
    r.nfields = nfields;
    r.tags = tags;
    r.ntags = ntags;
    r.modified = fv_v_now();
    /* A revision's time never goes backwards from its parent's. */
    if (r.modified < b->modified)
        r.modified = b->modified;
    rc = write_revision(v, out_rev, &r, &base, keep, nkeep, in);
done:
    free(fields);
    free(tags);
    pick_clear(&base);
    return rc;
}

struct head_ids {
    unsigned char ids[FV_ENV_MAX_PARENTS][FV_ID_BYTES];
    size_t n;
    int live; /* heads that are not tombstones */
};

static int head_ids_cb(const fv_store_env *se, void *payload)
{
    struct head_ids *h = payload;
    if (h->n == FV_ENV_MAX_PARENTS)
        return FV_ELIMIT;
    memcpy(h->ids[h->n++], se->id, FV_ID_BYTES);
    if (se->kind != FV_ENV_TOMBSTONE)
        h->live++;
    return FV_OK;
}

int fv_record_delete(fv_vault *v, const unsigned char id[FV_ID_BYTES])
{
    struct head_ids heads;
    unsigned char *payload = NULL, tomb[FV_ID_BYTES];
    size_t payload_len = 0;
    int rc;

    if (!v)
        return FV_EINVAL;
    memset(&heads, 0, sizeof heads);
    if ((rc = fv_store_begin(v->store)))
        return fv_v_serr(v, rc);
    rc = fv_store_record_heads(v->store, id, head_ids_cb, &heads);
    if (rc) {
        fv_v_serr(v, rc);
        goto rollback;
    }
    if (heads.live == 0) {
        rc = fv_v_err(v, FV_ENOTFOUND, heads.n ? "the record was already deleted"
                                           : "no such record");
        goto rollback;
    }
    if ((rc = fv_tombstone_encode(&payload, &payload_len, fv_v_now()))) {
        fv_v_err(v, rc, "out of memory");
        goto rollback;
    }
    {
        fv_v_write w = {
            .kind = FV_ENV_TOMBSTONE,
            .record = id,
            .parents = (const unsigned char(*)[FV_ID_BYTES])heads.ids,
            .nparents = heads.n,
            .payload = payload,
            .payload_len = payload_len,
        };
        rc = fv_v_write_envelope(v, tomb, &w);
    }
    if (rc)
        goto rollback;
    /* Crypto-shred locally: every revision's ciphertext and sealed keys go,
     * and with them the record's attachments. */
    if ((rc = fv_store_purge_record(v->store, id, tomb)) ||
        (rc = fv_store_commit(v->store))) {
        fv_v_serr(v, rc);
        goto rollback;
    }
    fv_enc_free_buf(payload, payload_len);
    return fv_v_serr(v, fv_store_checkpoint(v->store));
rollback:
    fv_store_rollback(v->store);
    fv_enc_free_buf(payload, payload_len);
    return rc;
}

/* ---- reading attachments -------------------------------------------- */

int fv_attachment_read(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                       const char *name, fv_write_fn fn, void *payload,
                       fv_progress_fn progress, void *progress_payload)
{
    struct head_pick p;
    const fv_attachment_info *a = NULL;
    unsigned char *plain = NULL, *ct = NULL;
    unsigned char nonce[FV_NONCE_BYTES], hash[FV_HASH_BYTES];
    size_t first = 0, i, len;
    uint64_t done = 0;
    int rc;

    if (!v || !name || !fn)
        return FV_EINVAL;
    if ((rc = newest_head(v, &p, id, 1)))
        return rc;
    for (i = 0; i < p.best->pub.nattachments; i++) {
        if (strcmp(p.best->pub.attachments[i].name, name) == 0) {
            a = &p.best->pub.attachments[i];
            break;
        }
        first += (size_t)p.best_env.chunk_counts[i];
    }
    if (!a) {
        rc = fv_v_err(v, FV_ENOTFOUND, "the record has no attachment of that name");
        goto done;
    }
    plain = fv_secure_alloc(a->chunk_bytes);
    ct = malloc((size_t)a->chunk_bytes + FV_TAG_BYTES);
    if (!plain || !ct) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    for (uint64_t c = 0; c < a->chunks; c++) {
        const unsigned char *want = p.best_env.chunks[first + c];
        uint64_t expect = c + 1 < a->chunks ? a->chunk_bytes
                                            : a->size - c * a->chunk_bytes;
        rc = fv_store_chunk_get(v->store, want, ct,
                                (size_t)a->chunk_bytes + FV_TAG_BYTES, &len);
        if (rc == FV_ENOTFOUND) {
            rc = fv_v_err(v, FV_ECORRUPT, "an attachment chunk is missing");
            goto done;
        }
        if (rc == FV_OK) {
            fv_hash(hash, ct, len);
            chunk_nonce(nonce, c);
            if (len != expect + FV_TAG_BYTES ||
                !fv_ct_equal(hash, want, FV_HASH_BYTES) ||
                fv_aead_decrypt(plain, ct, len, NULL, 0, nonce,
                                p.best->keys[a - p.best->pub.attachments]))
                rc = FV_ECORRUPT;
        }
        if (rc) {
            fv_v_err(v, rc, rc == FV_ECORRUPT
                            ? "an attachment chunk failed verification"
                            : "%s", fv_store_errmsg(v->store));
            goto done;
        }
        if (fn(plain, (size_t)expect, payload)) {
            rc = fv_v_err(v, FV_EIO, "cannot write the attachment's bytes");
            goto done;
        }
        done += expect;
        if (progress && progress(done, a->size, progress_payload)) {
            rc = fv_v_err(v, FV_ECANCELED, "canceled");
            goto done;
        }
    }
done:
    fv_secure_free(plain);
    free(ct);
    pick_clear(&p);
    return rc;
}

static int write_fd(const unsigned char *buf, size_t len, void *payload)
{
    return write_all(*(int *)payload, buf, len) != FV_OK;
}

int fv_attachment_save(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                       const char *name, const char *path,
                       fv_progress_fn progress, void *progress_payload)
{
    char *tmp;
    size_t n;
    int fd, rc;
    struct stat sb;

    if (!v || !path || !*path)
        return FV_EINVAL;
    if (lstat(path, &sb) == 0)
        return fv_v_err(v, FV_EEXIST, "the output file already exists");
    n = strlen(path) + 16;
    if (!(tmp = malloc(n)))
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.fvtmp-XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = fv_v_err(v, errno_rc(errno), "cannot create the output file: %s",
                  strerror(errno));
        free(tmp);
        return rc;
    }
    rc = fv_attachment_read(v, id, name, write_fd, &fd, progress, progress_payload);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_v_err(v, errno_rc(errno), "cannot write the output file: %s",
                  strerror(errno));
    close(fd);
    /* Only a fully verified file appears under its name; link() will not
     * replace a file that appeared meanwhile. */
    if (rc == FV_OK && link(tmp, path) != 0)
        rc = fv_v_err(v, errno == EEXIST ? FV_EEXIST : errno_rc(errno),
                  "cannot create the output file: %s", strerror(errno));
    unlink(tmp);
    free(tmp);
    return rc;
}
