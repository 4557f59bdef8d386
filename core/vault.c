/* vault.c - a vault's life (fieldvault.h): create, open, passwd, panic, the
 * key file, the device keys and other secrets in the meta table, messages.
 * Records are in records.c, attachments in attachments.c, the sync side in
 * vault_sync.c; crypto lives in crypto.c, storage in store.c, the byte
 * formats in envelope.c and record.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fileio.h"
#include "fieldvault.h"
#include "record.h"
#include "store.h"
#include "textparse.h"
#include "vault_internal.h"

#define KEY_FILE "vault.key"
#define KEY_TMP ".vault.key.tmp" /* the only other name a key is written under */
#define DB_FILE "vault.db"
/* The failed-unlock counter and its limit: read before the passphrase is
 * known, so it is beside the key file, in clear (docs/FORMAT.md 3.1). */
#define GUARD_FILE "vault.guard"
#define GUARD_MAGIC "FVguard1"
#define GUARD_BYTES 16
#define GUARD_MAX 1000000u
/* Where `duress set` builds the decoy vault before it is sealed away. */
#define DECOY_TMP ".duress.tmp"
#define DECOY_ROW "decoy"          /* meta row: the sealed decoy database */
#define DECOY_MAX (64u << 20)      /* the decoy database's largest size */
#define SHRED_BUF (64 * 1024)

/* Key file layout (docs/FORMAT.md): all integers little-endian. */
#define KF_MAGIC "FieldVlt"
#define KF_HEADER_BYTES 48 /* magic..salt: authenticated as AEAD data */
#define KF_SLOT_BYTES (FV_NONCE_BYTES + FV_KEY_BYTES + FV_TAG_BYTES)
/* Key files written before the duress slot have one slot; they are read,
 * and the next write adds the second. */
#define KF_V1_BYTES (KF_HEADER_BYTES + KF_SLOT_BYTES)
#define KF_BYTES (KF_HEADER_BYTES + 2 * KF_SLOT_BYTES)
#define KF_SLOT(kf, i) ((kf) + KF_HEADER_BYTES + (size_t)(i) * KF_SLOT_BYTES)
#define KF_ALG_ARGON2ID13 1
_Static_assert(KF_BYTES == FV_V_KEYFILE_BYTES, "key file size");

/* crypto_kdf context and subkey ids of the secrets in the meta table. */
#define META_KEY_CTX "fvdevkey"
#define META_DEVICE_KEYS 1
#define META_ORG_KEY 2
/* 3 is the sync state (vault_sync.c); 4 keys the envelope MACs; 5 seals
 * the server receipts (vault_sync.c); 6 seals the proxy URL (vault_sync.c). */
#define META_ENV_MAC 4
/* 6 seals the decoy database under the decoy's vault key. */
#define META_DECOY 6
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

int fv_format_version(void) { return FV_FORMAT_VERSION; }

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
    case FV_EINCOMPLETE: return "the attachment has not fully arrived yet";
    case FV_ESERVER: return "the server failed on its side";
    case FV_EPROXY: return "the proxy cannot be reached, refused or failed";
    case FV_EDATABASE: return "the server's database cannot be reached";
    default: return "unknown error";
    }
}

const char *fv_vault_errmsg(const fv_vault *v)
{
    if (!v)
        return "no vault handle";
    return v->msg[0] ? v->msg : "no error";
}

/* The calling thread's last recorded failure (fv_error_last): a copy of
 * every handle message, and the message of a failed call that has no
 * handle to keep it (open, create, panic). Never content or key material,
 * as every message. */
static _Thread_local char last_error[256];

const char *fv_error_last(void)
{
    return last_error[0] ? last_error : "no error";
}

void fv_error_clear_last(void)
{
    last_error[0] = '\0';
}

void fv_error_set_last(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
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
    memcpy(last_error, v->msg, sizeof last_error);
    return rc;
}

/* The frame of every public call on a handle (call.h). */
void fv_call_begin(fv_vault *v)
{
    if (v)
        v->msg[0] = '\0';
}

int fv_call_end(fv_vault *v, int rc, const char *fn)
{
    if (!v) {
        if (rc != FV_OK)
            fv_error_set_last("%s: %s (no vault handle)", fn, fv_strerror(rc));
    } else if (rc == FV_OK) {
        v->msg[0] = '\0';
    } else if (!v->msg[0]) {
        fv_v_err(v, rc, "%s: %s", fn, fv_strerror(rc));
    }
    return rc;
}

/* A failed open or create: its handle is about to be freed, so its message
 * (or, when the failure recorded none, the code's name) stays behind as the
 * thread's last error. Returns rc. */
static int vault_fail(fv_vault *v, int rc, const char *what, const char *dir)
{
    if (v && v->msg[0])
        fv_error_set_last("%s", v->msg);
    else
        fv_error_set_last("%s %s: %s", what, dir ? dir : "(null)", fv_strerror(rc));
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
    fv_hex_encode(out, FV_ID_HEX_BYTES, id, FV_ID_BYTES);
}

/* ---- files ---------------------------------------------------------- */

void fv_v_put_le(unsigned char *p, uint64_t v, int n)
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

/* Overwrites the open regular file `fd` in place with random bytes over its
 * whole length, then syncs it. In place: the same inode, so every hard link
 * to it and every block the file system has not moved reads the new bytes. */
static int shred_fd(int fd)
{
    unsigned char small[256], *junk = NULL;
    size_t cap = sizeof small;
    struct stat sb;
    off_t off = 0;
    int rc = FV_OK;

    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return FV_EIO;
    /* A key file fits the stack buffer; a database gets a larger one, for
     * speed, or the small one if memory is short. */
    if (sb.st_size > (off_t)sizeof small && (junk = malloc(SHRED_BUF)))
        cap = SHRED_BUF;
    while (rc == FV_OK && off < sb.st_size) {
        unsigned char *buf = junk ? junk : small;
        size_t n = sb.st_size - off < (off_t)cap ? (size_t)(sb.st_size - off) : cap;
        ssize_t w;
        fv_random(buf, n);
        w = pwrite(fd, buf, n, off);
        if (w > 0)
            off += w;
        else if (w < 0 && errno != EINTR)
            rc = fv_errno_rc(errno);
    }
    if (fsync(fd) != 0 && rc == FV_OK)
        rc = FV_EIO;
    free(junk);
    return rc;
}

/* Destroys the file at `path`: shred_fd, then its name is removed. A name
 * that is not a regular file (a symbolic link, a FIFO someone planted) is
 * removed without being opened through. FV_ENOTFOUND when there is none;
 * FV_EIO when the overwrite failed (the name is removed all the same). */
static int shred_unlink(const char *path)
{
    int rc, fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT)
        return FV_ENOTFOUND;
    rc = fd >= 0 ? shred_fd(fd) : FV_OK;
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0 && errno != ENOENT)
        rc = FV_EIO;
    return rc;
}

/* Derives the key-wrapping key from the passphrase. One derivation opens
 * either slot: both are wrapped under keys made with the header's salt. */
static int wrapping_key(unsigned char *out, const unsigned char *header,
                        const char *pass, size_t passlen)
{
    return fv_pwhash(out, FV_KEY_BYTES, pass, passlen, header + 32,
                     get_le(header + 16, 8), get_le(header + 24, 8));
}

/* Slot `i` of key file image `kf` := a fresh nonce and `key` wrapped under
 * `wk`, bound to the header. */
static void wrap_slot(unsigned char *kf, int i, const unsigned char *key,
                      const unsigned char *wk)
{
    unsigned char *s = KF_SLOT(kf, i);
    fv_random(s, FV_NONCE_BYTES);
    fv_aead_encrypt(s + FV_NONCE_BYTES, key, FV_KEY_BYTES, kf, KF_HEADER_BYTES,
                    s, wk);
}

static int unwrap_slot(unsigned char *key, const unsigned char *kf, int i,
                       const unsigned char *wk)
{
    const unsigned char *s = KF_SLOT(kf, i);
    return fv_aead_decrypt(key, s + FV_NONCE_BYTES, FV_KEY_BYTES + FV_TAG_BYTES,
                           kf, KF_HEADER_BYTES, s, wk);
}

/* Writes the key file atomically: temp file, fsync, rename, fsync dir. With
 * `exclusive`, fails with FV_EEXIST if a key file is already there. The
 * temp file is held under an exclusive flock from its creation until its
 * name is gone (renamed, or destroyed on failure): a locked temp is a write
 * in progress, which destroy_stale_temp leaves alone. */
static int write_key_file(fv_vault *v, const unsigned char kf[KF_BYTES],
                          int exclusive)
{
    char *path = fv_path_join(v->dir, KEY_FILE), *tmp = fv_path_join(v->dir, KEY_TMP);
    int fd = -1, rc, named = 0;

    if (!path || !tmp) {
        rc = FV_ENOMEM;
        goto done;
    }
    /* A stale temp is destroyed, not merely unlinked: it holds a key. */
    shred_unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = fv_errno_rc(errno);
        goto done;
    }
    named = 1;
    if (flock(fd, LOCK_EX) != 0) {
        rc = FV_EIO;
        goto done;
    }
    if ((rc = fv_write_all(fd, kf, KF_BYTES)))
        goto done;
    if (fsync(fd) != 0) {
        rc = fv_errno_rc(errno);
        goto done;
    }
    if (exclusive) {
        /* link() refuses to replace: no race with a second init. */
        if (link(tmp, path) != 0) {
            rc = errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno);
            goto done;
        }
        unlink(tmp); /* the same inode stays, as vault.key */
    } else if (rename(tmp, path) != 0) {
        rc = fv_errno_rc(errno);
        goto done;
    }
    named = 0;
    /* The new name is in place but not yet durable if this fails: say so
     * (the old passphrase may still open the vault after a crash). */
    rc = fv_fsync_dir(v->dir);
done:
    if (fd >= 0 && named) {
        /* Failed with the temp still named: it holds the key under the new
         * passphrase, so it is overwritten before it goes. The name is
         * removed only if it is still ours (destroy_stale_temp in another
         * process may have taken it). */
        struct stat a, b;
        shred_fd(fd);
        if (fstat(fd, &a) == 0 && lstat(tmp, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            unlink(tmp);
    }
    if (fd >= 0)
        close(fd); /* releases the lock, after the name is settled */
    if (rc == FV_OK && kf != v->keyfile)
        memcpy(v->keyfile, kf, KF_BYTES);
    free(path);
    free(tmp);
    return rc;
}

/* A temp key file left by a passwd or init that was killed holds the vault
 * key, wrapped under the new passphrase: it is destroyed (shred_fd) before
 * the vault is opened. A temp another process holds locked is its write in
 * progress and is left alone. Once the lock is ours, the name must still be
 * the inode locked (else a writer replaced it: nothing of ours), and an
 * inode that is also vault.key (an init killed between its link and its
 * unlink) loses only the temp name. */
static void destroy_stale_temp(const char *dir)
{
    char *tmp = fv_path_join(dir, KEY_TMP), *key = fv_path_join(dir, KEY_FILE);
    struct stat a, b, k;
    int fd = -1;

    if (!tmp || !key)
        goto done;
    fd = open(tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno != ENOENT && lstat(tmp, &b) == 0 && !S_ISREG(b.st_mode))
            unlink(tmp); /* not a file this code writes: only the name goes */
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        goto done; /* a passwd or init at work */
    if (fstat(fd, &a) != 0 || lstat(tmp, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino)
        goto done;
    if (!(stat(key, &k) == 0 && k.st_dev == a.st_dev && k.st_ino == a.st_ino))
        shred_fd(fd);
    unlink(tmp);
    /* Best effort: its bytes are shredded already, and a name that comes
     * back after a crash is destroyed by the next open. */
    (void)fv_fsync_dir(dir);
done:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(key);
}

/* Reads the key file into v->keyfile and checks it (docs/FORMAT.md 3); no
 * passphrase yet. A one-slot file gets a random second slot in memory. */
static int read_key_file(fv_vault *v)
{
    unsigned char kf[KF_BYTES + 1];
    char *path = fv_path_join(v->dir, KEY_FILE);
    ssize_t n = 0, r;
    int fd;

    if (!path)
        return FV_ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return errno == ENOENT ? fv_v_err(v, FV_ENOVAULT, "no vault at %s", v->dir)
                               : fv_v_err(v, FV_EIO, "cannot read the key file: %s",
                                      fv_errno_text(errno).text);
    while ((r = read(fd, kf + n, sizeof kf - (size_t)n)) > 0 ||
           (r < 0 && errno == EINTR))
        if (r > 0)
            n += r;
    if (r < 0) {
        /* The disk failed: the file may be whole, so not "damaged". */
        int e = errno;
        close(fd);
        return fv_v_err(v, fv_errno_rc(e), "cannot read the key file: %s",
                        fv_errno_text(e).text);
    }
    close(fd);
    if (n < 12 || memcmp(kf, KF_MAGIC, 8) != 0)
        return fv_v_err(v, FV_ECORRUPT, "the key file is not a FieldVault key file");
    if (get_le(kf + 8, 4) > FV_FORMAT_VERSION)
        return fv_v_err(v, FV_EVERSION,
                    "the vault has format %u; this version reads format %d",
                    (unsigned)get_le(kf + 8, 4), FV_FORMAT_VERSION);
    if ((n != KF_BYTES && n != KF_V1_BYTES) ||
        get_le(kf + 8, 4) != FV_FORMAT_VERSION ||
        get_le(kf + 12, 4) != KF_ALG_ARGON2ID13 ||
        !fv_pwhash_params_ok(get_le(kf + 16, 8), get_le(kf + 24, 8)))
        return fv_v_err(v, FV_ECORRUPT, "the key file is damaged");
    if (n == KF_V1_BYTES)
        fv_random(KF_SLOT(kf, 1), KF_SLOT_BYTES);
    memcpy(v->keyfile, kf, KF_BYTES);
    v->opslimit = get_le(kf + 16, 8);
    v->memlimit = get_le(kf + 24, 8);
    return FV_OK;
}

/* One Argon2 run, then both slots are tried, always both, so that the time
 * does not tell which one opened. *slot = 0 (the vault key) or 1 (the
 * duress slot: the decoy's key); `wk` keeps the wrapping key. */
static int unlock_key_file(fv_vault *v, unsigned char *wk, int *slot,
                           const char *pass, size_t passlen)
{
    unsigned char *other = fv_secure_alloc(FV_KEY_BYTES);
    int rc, a, b;

    if (!other)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    rc = wrapping_key(wk, v->keyfile, pass, passlen);
    if (rc == FV_OK) {
        a = unwrap_slot(v->sec->vault_key, v->keyfile, 0, wk);
        b = unwrap_slot(other, v->keyfile, 1, wk);
        if (a == FV_OK) {
            *slot = 0;
        } else if (b == FV_OK) {
            *slot = 1;
            memcpy(v->sec->vault_key, other, FV_KEY_BYTES);
        } else {
            rc = FV_EPASSPHRASE;
        }
    }
    fv_secure_free(other);
    if (rc == FV_EPASSPHRASE)
        return fv_v_err(v, rc, "wrong passphrase");
    return fv_v_err(v, rc, "cannot derive the key: %s", fv_strerror(rc));
}

/* ---- the failed-unlock counter (vault.guard) ------------------------- */

/* Opens and locks the counter file: *fd is -1 when there is none (no wipe
 * armed). The lock is held only around a read and a write, never across the
 * KDF, so concurrent unlocks each count. */
static int guard_open(fv_vault *v, int *fd, uint32_t *limit, uint32_t *fails)
{
    unsigned char g[GUARD_BYTES];
    char *path = fv_path_join(v->dir, GUARD_FILE);
    struct stat sb;
    ssize_t n = 0;

    *fd = -1;
    *limit = *fails = 0;
    if (!path)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    *fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    free(path);
    if (*fd < 0) {
        if (errno == ENOENT)
            return FV_OK;
        return fv_v_err(v, FV_EIO, "cannot open the failed-unlock counter %s: %s",
                        GUARD_FILE, fv_errno_text(errno).text);
    }
    if (flock(*fd, LOCK_EX) != 0 || fstat(*fd, &sb) != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return fv_v_err(v, fv_errno_rc(e), "cannot read the failed-unlock counter %s: %s",
                        GUARD_FILE, fv_errno_text(e).text);
    }
    if (S_ISREG(sb.st_mode) && sb.st_size == GUARD_BYTES &&
        (n = pread(*fd, g, sizeof g, 0)) < 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return fv_v_err(v, fv_errno_rc(e), "cannot read the failed-unlock counter %s: %s",
                        GUARD_FILE, fv_errno_text(e).text);
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size != GUARD_BYTES || n != (ssize_t)sizeof g ||
        memcmp(g, GUARD_MAGIC, 8) != 0 || get_le(g + 8, 4) > GUARD_MAX) {
        close(*fd);
        *fd = -1;
        return fv_v_err(v, FV_ECORRUPT, "the failed-unlock counter %s is damaged",
                        GUARD_FILE);
    }
    *limit = (uint32_t)get_le(g + 8, 4);
    *fails = (uint32_t)get_le(g + 12, 4);
    return FV_OK;
}

/* Writes limit and failures in place and syncs: durable when it returns. */
static int guard_store(fv_vault *v, int fd, uint32_t limit, uint32_t fails)
{
    unsigned char g[GUARD_BYTES];
    memcpy(g, GUARD_MAGIC, 8);
    fv_v_put_le(g + 8, limit, 4);
    fv_v_put_le(g + 12, fails, 4);
    if (pwrite(fd, g, sizeof g, 0) != (ssize_t)sizeof g || fsync(fd) != 0)
        return fv_v_err(v, fv_errno_rc(errno),
                        "cannot write the failed-unlock counter: %s",
                        fv_errno_text(errno).text);
    return FV_OK;
}

/* Before the KDF: one more failure, durably, unless it is undone by success.
 * A counter already at its limit (an unlock killed during the KDF of the
 * last allowed try) destroys the vault without another guess. */
static int guard_before_kdf(fv_vault *v)
{
    uint32_t limit, fails;
    int fd, rc = guard_open(v, &fd, &limit, &fails);

    if (rc || fd < 0 || limit == 0)
        goto done;
    if (fails >= limit) {
        close(fd);
        fd = -1;
        fv_vault_panic(v->dir);
        rc = fv_v_err(v, FV_ENOVAULT,
                      "no vault at %s: destroyed after %u failed unlocks", v->dir,
                      (unsigned)limit);
        goto done;
    }
    rc = guard_store(v, fd, limit, fails + 1);
done:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* After the KDF: a success resets the counter; a failure that reached the
 * limit destroys the vault as panic does. */
static int guard_after_kdf(fv_vault *v, int unlocked)
{
    uint32_t limit, fails;
    int fd, rc = guard_open(v, &fd, &limit, &fails);

    if (rc || fd < 0 || limit == 0)
        goto done;
    if (unlocked) {
        if (fails != 0)
            rc = guard_store(v, fd, limit, 0);
    } else if (fails >= limit) {
        close(fd);
        fd = -1;
        fv_vault_panic(v->dir);
    }
done:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Creates or replaces the counter file with `limit` and no failures, or
 * removes it for 0. */
static int guard_set(fv_vault *v, uint32_t limit)
{
    char *path = fv_path_join(v->dir, GUARD_FILE);
    int fd = -1, rc = FV_OK;

    if (!path)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    if (limit == 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            rc = fv_v_err(v, fv_errno_rc(errno), "cannot remove %s: %s",
                          GUARD_FILE, fv_errno_text(errno).text);
        goto done;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
              0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0 || ftruncate(fd, GUARD_BYTES) != 0) {
        rc = fv_v_err(v, fv_errno_rc(errno), "cannot write %s: %s", GUARD_FILE,
                      fv_errno_text(errno).text);
        goto done;
    }
    rc = guard_store(v, fd, limit, 0);
done:
    if (fd >= 0)
        close(fd);
    /* The counter's new name must survive a crash, or the wipe it arms
     * may silently not be there: reported, the setting not promised. */
    if (rc == FV_OK && (rc = fv_fsync_dir(v->dir)) != FV_OK)
        rc = fv_v_err(v, rc, "cannot make %s durable: %s", GUARD_FILE, fv_strerror(rc));
    free(path);
    return rc;
}

static int vault_set_wipe_after(fv_vault *v, unsigned int failures)
{
    if (!v)
        return FV_EINVAL;
    if (failures > GUARD_MAX)
        return fv_v_err(v, FV_EINVAL, "wipe-after: at most %u", GUARD_MAX);
    return guard_set(v, failures);
}

int fv_vault_set_wipe_after(fv_vault *v, unsigned int failures)
{
    return FV_CALL(v, vault_set_wipe_after(v, failures));
}

static int vault_get_wipe_after(fv_vault *v, unsigned int *failures)
{
    uint32_t limit, fails;
    int fd, rc;

    if (!v || !failures)
        return FV_EINVAL;
    rc = guard_open(v, &fd, &limit, &fails);
    if (fd >= 0)
        close(fd);
    *failures = rc == FV_OK ? limit : 0;
    return rc;
}

int fv_vault_get_wipe_after(fv_vault *v, unsigned int *failures)
{
    return FV_CALL(v, vault_get_wipe_after(v, failures));
}

/* ---- secrets in the meta table -------------------------------------- */

/* out = nonce || XChaCha20-Poly1305(subkey, plain, ad), the subkey of
 * `vault_key`. The subkey lives in guarded memory only for the call. */
static int key_seal(const unsigned char *vault_key, uint64_t subkey_id,
                    unsigned char *out, const unsigned char *plain, size_t len,
                    const unsigned char *ad, size_t adlen)
{
    unsigned char *k = fv_secure_alloc(FV_KEY_BYTES);
    if (!k)
        return FV_ENOMEM;
    fv_kdf_derive(k, FV_KEY_BYTES, subkey_id, META_KEY_CTX, vault_key);
    fv_random(out, FV_NONCE_BYTES);
    fv_aead_encrypt(out + FV_NONCE_BYTES, plain, len, ad, adlen, out, k);
    fv_secure_free(k);
    return FV_OK;
}

int fv_v_subkey_seal(const fv_vault *v, uint64_t subkey_id, unsigned char *out,
                     const unsigned char *plain, size_t len,
                     const unsigned char *ad, size_t adlen)
{
    return key_seal(v->sec->vault_key, subkey_id, out, plain, len, ad, adlen);
}

int fv_v_subkey_open(const fv_vault *v, uint64_t subkey_id, unsigned char *plain,
                     const unsigned char *blob, size_t blen,
                     const unsigned char *ad, size_t adlen)
{
    unsigned char *k;
    int rc;
    if (blen < FV_NONCE_BYTES + FV_TAG_BYTES)
        return FV_ECORRUPT;
    if (!(k = fv_secure_alloc(FV_KEY_BYTES)))
        return FV_ENOMEM;
    fv_kdf_derive(k, FV_KEY_BYTES, subkey_id, META_KEY_CTX, v->sec->vault_key);
    rc = fv_aead_decrypt(plain, blob + FV_NONCE_BYTES, blen - FV_NONCE_BYTES,
                         ad, adlen, blob, k);
    fv_secure_free(k);
    return rc;
}

/* Stored as nonce || XChaCha20-Poly1305(subkey, plain, ad). */
int fv_v_meta_seal(fv_vault *v, const char *name, uint64_t subkey_id,
                   const unsigned char *plain, size_t len,
                   const unsigned char *ad, size_t adlen)
{
    unsigned char *blob = malloc(FV_NONCE_BYTES + len + FV_TAG_BYTES);
    int rc = FV_ENOMEM;

    if (blob && (rc = fv_v_subkey_seal(v, subkey_id, blob, plain, len, ad, adlen)) == FV_OK)
        rc = fv_v_serr(v, fv_store_meta_put(v->store, name, blob,
                                             FV_NONCE_BYTES + len + FV_TAG_BYTES));
    free(blob);
    return rc;
}

int fv_v_meta_open(fv_vault *v, const char *name, uint64_t subkey_id,
                   unsigned char *plain, size_t len, const unsigned char *ad,
                   size_t adlen)
{
    unsigned char *blob = NULL;
    size_t blen;
    int rc = fv_store_meta_get(v->store, name, &blob, &blen);

    if (rc == FV_OK && blen != FV_NONCE_BYTES + len + FV_TAG_BYTES)
        rc = FV_ECORRUPT;
    if (rc == FV_OK)
        rc = fv_v_subkey_open(v, subkey_id, plain, blob, blen, ad, adlen);
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

static void derive_mac_key(fv_vault *v)
{
    fv_kdf_derive(v->sec->env_mac_key, FV_KEY_BYTES, META_ENV_MAC, META_KEY_CTX,
                  v->sec->vault_key);
}

static int open_store(fv_vault *v, int create)
{
    char *path = fv_path_join(v->dir, DB_FILE);
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
    unsigned char *wk = NULL;
    struct stat sb;
    int rc, made_key = 0;

    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (!passphrase || passphrase_len == 0) {
        fv_error_set_last("cannot create a vault: the passphrase is empty");
        return FV_EINVAL;
    }
    if (opts->version != FV_CREATE_OPTIONS_VERSION || opts->kdf_profile < 0 ||
        opts->kdf_profile > FV_KDF_TEST) {
        fv_error_set_last("cannot create a vault: unknown options version or KDF profile");
        return FV_EINVAL;
    }
    if ((rc = vault_new(&v, dir)))
        return vault_fail(NULL, rc, "cannot create a vault in", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = fv_v_err(v, fv_errno_rc(errno), "cannot create %s: %s", dir,
                      fv_errno_text(errno).text);
        goto fail;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        rc = fv_v_err(v, FV_EIO, "%s is not a directory", dir);
        goto fail;
    }
    v->opslimit = kdf_profiles[opts->kdf_profile].ops;
    v->memlimit = kdf_profiles[opts->kdf_profile].mem;
    fv_random(v->sec->vault_key, FV_KEY_BYTES);
    derive_mac_key(v);
    fv_sign_keypair(v->sign_pk, v->sec->sign_sk);
    fv_box_keypair(v->box_pk, v->sec->box_sk);

    /* The key file: the vault key in slot 0 and random bytes in slot 1,
     * which looks the same as a duress slot (fv_vault_set_duress). */
    memcpy(v->keyfile, KF_MAGIC, 8);
    fv_v_put_le(v->keyfile + 8, FV_FORMAT_VERSION, 4);
    fv_v_put_le(v->keyfile + 12, KF_ALG_ARGON2ID13, 4);
    fv_v_put_le(v->keyfile + 16, v->opslimit, 8);
    fv_v_put_le(v->keyfile + 24, v->memlimit, 8);
    fv_random(v->keyfile + 32, FV_SALT_BYTES);
    fv_random(KF_SLOT(v->keyfile, 1), KF_SLOT_BYTES);
    if (!(wk = fv_secure_alloc(FV_KEY_BYTES))) {
        rc = FV_ENOMEM;
        goto fail;
    }
    if ((rc = wrapping_key(wk, v->keyfile, passphrase, passphrase_len)))
        goto fail;
    wrap_slot(v->keyfile, 0, v->sec->vault_key, wk);
    fv_secure_free(wk);
    wk = NULL;
    if ((rc = write_key_file(v, v->keyfile, 1)))
        goto fail;
    made_key = 1;
    if ((rc = open_store(v, 1)))
        goto fail;
    if ((rc = fv_store_begin(v->store)) || (rc = store_device_keys(v)) ||
        (rc = fv_store_commit(v->store)))
        goto fail;
    v->msg[0] = '\0';
    fv_error_clear_last();
    *out = v;
    return FV_OK;
fail:
    if (made_key) {
        /* Undo a half-made vault so the next init can succeed. */
        char *kp = fv_path_join(dir, KEY_FILE), *dp = fv_path_join(dir, DB_FILE);
        fv_store_close(v->store);
        v->store = NULL;
        if (kp)
            shred_unlink(kp); /* it holds the key: destroyed, not unlinked */
        if (dp && rc != FV_EEXIST)
            unlink(dp);
        free(kp);
        free(dp);
    }
    fv_secure_free(wk);
    vault_fail(v, rc, "cannot create a vault in", dir);
    fv_vault_close(v);
    return rc;
}

static int duress_takeover(fv_vault *v, const unsigned char *wk);

int fv_vault_open(fv_vault **out, const char *dir, const char *passphrase,
                  size_t passphrase_len)
{
    fv_vault *v = NULL;
    unsigned char *wk = NULL;
    int rc, slot = 0;

    *out = NULL;
    if (!passphrase)
        return vault_fail(NULL, FV_EINVAL, "no passphrase to open", dir);
    if ((rc = vault_new(&v, dir)))
        return vault_fail(NULL, rc, "cannot open vault", dir);
    destroy_stale_temp(dir); /* before anything else reads the directory */
    if ((rc = read_key_file(v)))
        goto fail;
    if (!(wk = fv_secure_alloc(FV_KEY_BYTES))) {
        rc = FV_ENOMEM;
        goto fail;
    }
    /* The failure is counted, durably, before the KDF can be interrupted. */
    if ((rc = guard_before_kdf(v)))
        goto fail;
    rc = unlock_key_file(v, wk, &slot, passphrase, passphrase_len);
    if (rc == FV_OK || rc == FV_EPASSPHRASE) {
        int g = guard_after_kdf(v, rc == FV_OK);
        if (rc == FV_OK)
            rc = g;
    }
    if (rc == FV_OK && slot == 1)
        rc = duress_takeover(v, wk);
    if (rc == FV_OK)
        derive_mac_key(v);
    if (rc || (rc = open_store(v, 0)) || (rc = load_device_keys(v)))
        goto fail;
    fv_secure_free(wk);
    /* What the open met on its way (a duress takeover too) is not a
     * failure of the call. */
    v->msg[0] = '\0';
    fv_error_clear_last();
    *out = v;
    return FV_OK;
fail:
    fv_secure_free(wk);
    vault_fail(v, rc, "cannot open vault", dir);
    fv_vault_close(v);
    return rc;
}

void fv_vault_close(fv_vault *v)
{
    if (!v)
        return;
    fv_wipe(v->keyfile, sizeof v->keyfile);
    fv_store_close(v->store);
    fv_secure_free(v->sec);
    free(v->dir);
    free(v);
}

/* A new passphrase rewraps slot 0 under the same salt (the duress slot,
 * wrapped under a key made with that salt, stays valid) with a new nonce. */
static int vault_passwd(fv_vault *v, const char *pass, size_t passlen)
{
    unsigned char kf[KF_BYTES];
    unsigned char *wk = fv_secure_alloc(FV_KEY_BYTES), *probe = fv_secure_alloc(FV_KEY_BYTES);
    int rc;

    if (!pass || passlen == 0) {
        rc = fv_v_err(v, FV_EINVAL, "the new passphrase is empty");
        goto done;
    }
    if (!wk || !probe) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(kf, v->keyfile, KF_BYTES);
    if ((rc = wrapping_key(wk, kf, pass, passlen))) {
        rc = fv_v_err(v, rc, "cannot derive the key: %s", fv_strerror(rc));
        goto done;
    }
    if (unwrap_slot(probe, kf, 1, wk) == FV_OK) {
        rc = fv_v_err(v, FV_EINVAL, "the new passphrase is the duress passphrase");
        goto done;
    }
    wrap_slot(kf, 0, v->sec->vault_key, wk);
    rc = fv_v_err(v, write_key_file(v, kf, 0), "cannot write the new key file");
done:
    fv_wipe(kf, sizeof kf);
    fv_secure_free(wk);
    fv_secure_free(probe);
    return rc;
}

int fv_vault_passwd(fv_vault *v, const char *pass, size_t passlen)
{
    return FV_CALL(v, vault_passwd(v, pass, passlen));
}

int fv_vault_get_device_id(const fv_vault *v, unsigned char out[FV_ID_BYTES])
{
    memcpy(out, v->sign_pk, FV_ID_BYTES);
    return FV_OK;
}

/* Every file that ever holds key material or vault data, in the order they
 * are destroyed: the key file first (once it is gone nothing else can be
 * decrypted, however long the rest takes or whether it completes), then the
 * temp key file, then the database and every file SQLite keeps beside it. */
static const char *const vault_files[] = {
    KEY_FILE, KEY_TMP, DB_FILE, DB_FILE "-wal", DB_FILE "-shm", DB_FILE "-journal",
};

/* Destroys every file of vault_files in `dir`, the key file first and its
 * removal made durable before the rest: panic's routine, which the duress
 * unlock and the failed-unlock wipe share. *found: any was there. */
static int destroy_vault_files(const char *dir, int *found)
{
    char *path;
    int rc, failed = 0;

    *found = 0;
    for (size_t i = 0; i < sizeof vault_files / sizeof vault_files[0]; i++) {
        if (!(path = fv_path_join(dir, vault_files[i]))) {
            failed = 1;
            continue;
        }
        rc = shred_unlink(path);
        free(path);
        if (rc != FV_ENOTFOUND)
            *found = 1;
        if (rc != FV_OK && rc != FV_ENOTFOUND)
            failed = 1;
        /* The key's name gone, durably, first; the rest is destroyed even
         * when that cannot be promised, and the failure reported. */
        if (i == 0 && rc != FV_ENOTFOUND && fv_fsync_dir(dir) != FV_OK)
            failed = 1;
    }
    return failed ? FV_EIO : FV_OK;
}

/* A decoy directory left by a `duress set` that died (it holds a decoy
 * vault: harmless records, but a tell) is destroyed like a vault; a name
 * that is not a directory (a symbolic link planted to point elsewhere) is
 * only removed, never followed. */
static void destroy_decoy_tmp(const char *dir)
{
    char *tmp = fv_path_join(dir, DECOY_TMP);
    struct stat sb;
    int found;

    if (tmp && lstat(tmp, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            destroy_vault_files(tmp, &found);
            rmdir(tmp);
        } else {
            unlink(tmp);
        }
    }
    free(tmp);
}

int fv_vault_panic(const char *dir)
{
    char *path;
    int rc, found = 0;

    if (!dir || !*dir) {
        fv_error_set_last("no vault directory given");
        return FV_EINVAL;
    }
    if (fv_crypto_init() != FV_OK)
        return vault_fail(NULL, FV_ECRYPTO, "cannot destroy vault", dir);
    rc = destroy_vault_files(dir, &found);
    /* The sync lock holds nothing, the failed-unlock counter a count: their
     * names only. */
    if ((path = fv_path_join(dir, FV_SYNC_LOCK_FILE))) {
        unlink(path);
        free(path);
    }
    if ((path = fv_path_join(dir, GUARD_FILE))) {
        unlink(path);
        free(path);
    }
    destroy_decoy_tmp(dir);
    if (fv_fsync_dir(dir) != FV_OK && rc == FV_OK)
        rc = FV_EIO; /* the names' removal may not survive a crash */
    rmdir(dir); /* only if empty: the directory may hold the user's files */
    if (!found) {
        fv_error_set_last("no vault at %s", dir);
        return FV_ENOVAULT;
    }
    if (rc != FV_OK)
        vault_fail(NULL, rc, "cannot destroy every file of the vault in", dir);
    else
        fv_error_clear_last();
    return rc;
}

/* ---- duress ------------------------------------------------------------ */

/* The whole of a regular file at `path` (at most `max` bytes), malloc'd. */
static int read_whole(const char *path, unsigned char **out, size_t *len,
                      size_t max)
{
    struct stat sb;
    unsigned char *buf = NULL;
    size_t n = 0;
    ssize_t r;
    int rc = FV_OK, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    *out = NULL;
    *len = 0;
    if (fd < 0)
        return fv_errno_rc(errno);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = FV_EIO;
        goto done;
    }
    if ((uint64_t)sb.st_size > max) {
        rc = FV_ELIMIT;
        goto done;
    }
    if (!(buf = malloc(sb.st_size ? (size_t)sb.st_size : 1))) {
        rc = FV_ENOMEM;
        goto done;
    }
    while (n < (size_t)sb.st_size &&
           ((r = read(fd, buf + n, (size_t)sb.st_size - n)) > 0 ||
            (r < 0 && errno == EINTR)))
        if (r > 0)
            n += (size_t)r;
    if (n != (size_t)sb.st_size)
        rc = FV_EIO;
done:
    close(fd);
    if (rc == FV_OK) {
        *out = buf;
        *len = n;
    } else {
        free(buf);
    }
    return rc;
}

/* Records a decoy holds when no source is given: ordinary, harmless. */
static int decoy_defaults(fv_vault *d)
{
    static const struct {
        const char *title, *text;
    } recs[] = {
        {"Shopping list", "Rice, lentils, tomatoes, onions, tea, soap, batteries."},
        {"Bus times", "Line 4 leaves the market at 7:10, 8:40 and 17:30; "
                      "on Fridays the last one is at 16:00."},
        {"Reminder", "Call the clinic on Tuesday about the vaccination appointment."},
    };
    int rc = FV_OK;
    for (size_t i = 0; rc == FV_OK && i < sizeof recs / sizeof recs[0]; i++) {
        fv_record_input in = FV_RECORD_INPUT_INIT;
        in.title = recs[i].title;
        in.narrative = recs[i].text;
        in.narrative_len = strlen(recs[i].text);
        rc = fv_record_add(d, NULL, &in);
    }
    return rc;
}

/* fv_vault_list callback: the record's text (title, narrative, fields,
 * tags; not its attachments) added to the decoy. */
static int decoy_copy_cb(const fv_record *r, void *payload)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    in.title = r->title;
    in.narrative = r->narrative;
    in.narrative_len = r->narrative_len;
    in.fields = r->fields;
    in.nfields = r->nfields;
    in.tags = r->tags;
    in.ntags = r->ntags;
    return fv_record_add(payload, NULL, &in) != FV_OK;
}

static int vault_set_duress(fv_vault *v, const char *duress_passphrase,
                            size_t duress_passphrase_len, const fv_duress_options *opts)
{
    fv_duress_options defaults = FV_DURESS_OPTIONS_INIT;
    fv_create_options copts = FV_CREATE_OPTIONS_INIT;
    unsigned char kf[KF_BYTES];
    unsigned char *wk = NULL, *probe = NULL, *dkey = NULL, *dpass = NULL;
    unsigned char *image = NULL, *blob = NULL;
    size_t ilen = 0;
    char *tmpdir = NULL, *tmpdb = NULL;
    fv_vault *d = NULL;
    int rc;

    if (!v)
        return FV_EINVAL;
    if (!opts)
        opts = &defaults;
    if (!duress_passphrase || duress_passphrase_len == 0 ||
        opts->version != FV_DURESS_OPTIONS_VERSION)
        return fv_v_err(v, FV_EINVAL, "the duress passphrase is empty");
    /* A decoy copied from this very vault (the same device keys) would hand
     * its testimonies to whoever forces the duress passphrase. */
    if (opts->decoy_from &&
        memcmp(opts->decoy_from->sign_pk, v->sign_pk, FV_SIGN_PK_BYTES) == 0)
        return fv_v_err(v, FV_EINVAL, "the decoy cannot be a copy of this vault");
    wk = fv_secure_alloc(FV_KEY_BYTES);
    probe = fv_secure_alloc(FV_KEY_BYTES);
    dkey = fv_secure_alloc(FV_KEY_BYTES);
    dpass = fv_secure_alloc(32);
    tmpdir = fv_path_join(v->dir, DECOY_TMP);
    tmpdb = tmpdir ? fv_path_join(tmpdir, DB_FILE) : NULL;
    if (!wk || !probe || !dkey || !dpass || !tmpdb) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    /* The same salt and cost as the vault's passphrase: one Argon2 run at
     * unlock serves both slots. */
    memcpy(kf, v->keyfile, KF_BYTES);
    if ((rc = wrapping_key(wk, kf, duress_passphrase, duress_passphrase_len))) {
        rc = fv_v_err(v, rc, "cannot derive the key: %s", fv_strerror(rc));
        goto done;
    }
    if (unwrap_slot(probe, kf, 0, wk) == FV_OK) {
        rc = fv_v_err(v, FV_EINVAL,
                      "the duress passphrase must differ from the vault's passphrase");
        goto done;
    }
    /* The decoy is a whole vault of its own (its own vault key and device
     * keys), built beside this one; its database is then sealed under its
     * key into this vault's database and the directory destroyed. A decoy
     * left half-built by a process that died goes first. */
    destroy_decoy_tmp(v->dir);
    fv_random(dpass, 32);
    copts.kdf_profile = FV_KDF_TEST; /* its key file is thrown away */
    if ((rc = fv_vault_create(&d, tmpdir, (const char *)dpass, 32, &copts))) {
        rc = fv_v_err(v, rc, "cannot build the decoy vault: %s", fv_strerror(rc));
        goto done;
    }
    rc = opts->decoy_from ? fv_vault_list(opts->decoy_from, decoy_copy_cb, d)
                          : decoy_defaults(d);
    if (rc) {
        rc = fv_v_err(v, rc == FV_ECANCELED ? FV_EIO : rc,
                      "cannot fill the decoy vault: %s",
                      rc == FV_ECANCELED ? fv_vault_errmsg(d) : fv_strerror(rc));
        goto done;
    }
    memcpy(dkey, d->sec->vault_key, FV_KEY_BYTES);
    fv_vault_close(d); /* checkpoints: the database file is whole */
    d = NULL;
    rc = read_whole(tmpdb, &image, &ilen, DECOY_MAX);
    destroy_decoy_tmp(v->dir);
    if (rc) {
        rc = fv_v_err(v, rc, "cannot read the decoy database: %s", fv_strerror(rc));
        goto done;
    }
    if (!(blob = malloc(FV_NONCE_BYTES + ilen + FV_TAG_BYTES))) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = key_seal(dkey, META_DECOY, blob, image, ilen,
                       (const unsigned char *)DECOY_ROW, strlen(DECOY_ROW))) ||
        (rc = fv_v_serr(v, fv_store_meta_put(v->store, DECOY_ROW, blob,
                                              FV_NONCE_BYTES + ilen + FV_TAG_BYTES))))
        goto done;
    /* Last, the slot: until it is written the old duress state stands. */
    wrap_slot(kf, 1, dkey, wk);
    rc = fv_v_err(v, write_key_file(v, kf, 0), "cannot write the new key file");
done:
    fv_vault_close(d);
    destroy_decoy_tmp(v->dir);
    if (image)
        fv_wipe(image, ilen);
    free(image);
    free(blob);
    fv_wipe(kf, sizeof kf);
    fv_secure_free(wk);
    fv_secure_free(probe);
    fv_secure_free(dkey);
    fv_secure_free(dpass);
    free(tmpdir);
    free(tmpdb);
    return rc;
}

int fv_vault_set_duress(fv_vault *v, const char *duress_passphrase,
                        size_t duress_passphrase_len, const fv_duress_options *opts)
{
    return FV_CALL(v, vault_set_duress(v, duress_passphrase, duress_passphrase_len, opts));
}

static int vault_clear_duress(fv_vault *v)
{
    unsigned char kf[KF_BYTES];
    int rc;

    if (!v)
        return FV_EINVAL;
    memcpy(kf, v->keyfile, KF_BYTES);
    fv_random(KF_SLOT(kf, 1), KF_SLOT_BYTES); /* as a vault without one */
    rc = fv_v_err(v, write_key_file(v, kf, 0), "cannot write the new key file");
    /* The sealed decoy can no longer be opened; its row goes too. */
    if (rc == FV_OK)
        rc = fv_v_serr(v, fv_store_meta_put(v->store, DECOY_ROW, "", 0));
    return rc;
}

int fv_vault_clear_duress(fv_vault *v)
{
    return FV_CALL(v, vault_clear_duress(v));
}

/* The duress passphrase opened slot 1: v->sec->vault_key is the decoy's key.
 * The real vault is destroyed as panic destroys it (the key file first),
 * then the decoy is laid out under the same names, a key file whose slot 0
 * wraps the decoy's key under the same salt and derivation (no second
 * Argon2 run) and a random slot 1, and the decoy's database as vault.db. */
static int duress_takeover(fv_vault *v, const unsigned char *wk)
{
    unsigned char kf[KF_BYTES];
    unsigned char *blob = NULL, *image = NULL;
    size_t blen = 0, ilen = 0;
    char *db = fv_path_join(v->dir, DB_FILE);
    int rc, found, fd = -1;

    if (!db)
        return fv_v_err(v, FV_ENOMEM, "out of memory");
    /* The sealed decoy database, read from the real one before it goes. */
    if ((rc = open_store(v, 0)) == FV_OK) {
        rc = fv_store_meta_get(v->store, DECOY_ROW, &blob, &blen);
        fv_store_close(v->store);
        v->store = NULL;
    }
    if (rc == FV_OK && blen < FV_NONCE_BYTES + FV_TAG_BYTES)
        rc = FV_ECORRUPT;
    if (rc == FV_OK && !(image = malloc(blen - FV_NONCE_BYTES - FV_TAG_BYTES + 1)))
        rc = FV_ENOMEM;
    if (rc == FV_OK) {
        ilen = blen - FV_NONCE_BYTES - FV_TAG_BYTES;
        rc = fv_v_subkey_open(v, META_DECOY, image, blob, blen,
                              (const unsigned char *)DECOY_ROW, strlen(DECOY_ROW));
    }
    memcpy(kf, v->keyfile, KF_HEADER_BYTES);
    wrap_slot(kf, 0, v->sec->vault_key, wk);
    fv_random(KF_SLOT(kf, 1), KF_SLOT_BYTES);
    /* Whatever the decoy's state, the real vault goes. */
    destroy_vault_files(v->dir, &found);
    if (rc) {
        rc = fv_v_err(v, FV_ECORRUPT, "the vault database is damaged");
        goto done;
    }
    if ((rc = write_key_file(v, kf, 1))) {
        rc = fv_v_err(v, rc, "cannot write the key file: %s", fv_strerror(rc));
        goto done;
    }
    fd = open(db, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || (rc = fv_write_all(fd, image, ilen)) != FV_OK || fsync(fd) != 0) {
        rc = fv_v_err(v, rc ? rc : fv_errno_rc(errno),
                      "cannot write the vault database: %s", fv_strerror(rc ? rc : FV_EIO));
        goto done;
    }
    if ((rc = fv_fsync_dir(v->dir)) != FV_OK)
        rc = fv_v_err(v, rc, "cannot make the vault database durable: %s", fv_strerror(rc));
done:
    if (fd >= 0)
        close(fd);
    if (image)
        fv_wipe(image, ilen);
    free(image);
    free(blob);
    free(db);
    fv_wipe(kf, sizeof kf);
    return rc;
}
