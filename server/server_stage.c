/* server_stage.c - the server's files kept in a shared store (see
 * server_stage.h). */
#include "server_stage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fieldvault.h"
#include "fileio.h"

/* Each file and its meta key. */
static const struct {
    const char *file, *key;
} files[] = {
    {"tls.key", "tls_key"},
    {"tls.crt", "tls_crt"},
    {"receipt.key", "receipt_key"},
    {"chunks", NULL}, /* a directory server init makes and removes */
};
#define NFILES (sizeof files / sizeof files[0])

#define FILE_MAX (1u << 20) /* a key or a certificate chain, at most */

static const char *key_of(const char *file)
{
    for (size_t i = 0; i < NFILES; i++)
        if (strcmp(files[i].file, file) == 0)
            return files[i].key;
    return NULL;
}

static int write_file(const char *path, const unsigned char *v, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    int rc;
    if (fd < 0)
        return fv_errno_rc(errno);
    rc = fv_write_all(fd, v, len);
    close(fd);
    return rc;
}

/* Reads a whole small file (malloc'd into *v). */
static int read_file(const char *path, unsigned char **v, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = FV_OK;
    struct stat sb;
    size_t got = 0;
    *v = NULL;
    *len = 0;
    if (fd < 0)
        return errno == ENOENT ? FV_ENOTFOUND : FV_EIO;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 1 ||
        sb.st_size > FILE_MAX)
        rc = FV_ECORRUPT;
    else if (!(*v = malloc((size_t)sb.st_size)))
        rc = FV_ENOMEM;
    while (rc == FV_OK && got < (size_t)sb.st_size) {
        ssize_t r = read(fd, *v + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = r == 0 ? FV_ECORRUPT : FV_EIO;
        else
            got += (size_t)r;
    }
    close(fd);
    if (rc) {
        if (*v)
            fv_wipe(*v, (size_t)sb.st_size);
        free(*v);
        *v = NULL;
    } else
        *len = got;
    return rc;
}

int fv_stage_open(const char *url, char **dir)
{
    const char *tmp = getenv("TMPDIR");
    fv_sstore *st = NULL;
    char *d;
    size_t n;
    int rc;

    *dir = NULL;
    if (!tmp || !*tmp || tmp[0] != '/')
        tmp = "/tmp";
    n = strlen(tmp) + sizeof "/fieldvault-server-XXXXXX";
    if (!(d = malloc(n)))
        return FV_ENOMEM;
    snprintf(d, n, "%s/fieldvault-server-XXXXXX", tmp);
    if (!mkdtemp(d)) { /* mode 0700 */
        rc = fv_errno_rc(errno);
        free(d);
        return rc;
    }
    rc = fv_sstore_open(&st, url, 0);
    if (rc == FV_ENOTFOUND)
        rc = FV_OK; /* server init makes it */
    for (size_t i = 0; st && rc == FV_OK && i < NFILES; i++) {
        unsigned char *v = NULL;
        size_t len = 0;
        char *path;
        if (!files[i].key)
            continue;
        rc = fv_sstore_meta_get(st, files[i].key, &v, &len);
        if (rc == FV_ENOTFOUND) {
            rc = FV_OK; /* a half-made server: its init says so */
            continue;
        }
        if (rc)
            break;
        if (!(path = fv_path_join(d, files[i].file)))
            rc = FV_ENOMEM;
        else
            rc = len ? write_file(path, v, len) : FV_ECORRUPT;
        free(path);
        fv_wipe(v, len);
        free(v);
    }
    fv_sstore_close(st);
    if (rc) {
        fv_stage_close(d);
        return rc;
    }
    *dir = d;
    return FV_OK;
}

int fv_stage_save(fv_sstore *st, const char *dir, const char *const *names)
{
    int rc = FV_OK;
    for (; rc == FV_OK && *names; names++) {
        const char *key = key_of(*names);
        unsigned char *v = NULL;
        size_t len = 0;
        char *path = fv_path_join(dir, *names);
        if (!key || !path)
            rc = path ? FV_EINVAL : FV_ENOMEM;
        else if ((rc = read_file(path, &v, &len)) == FV_OK)
            rc = fv_sstore_meta_put(st, key, v, len);
        if (v)
            fv_wipe(v, len);
        free(v);
        free(path);
    }
    return rc;
}

/* Overwrites a file with zeros before it goes (its blocks may be reused
 * by another user's file otherwise, on a file system that does not
 * zero them). */
static void wipe_file(const char *path)
{
    static const unsigned char zeros[4096];
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd >= 0) {
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
            off_t done = 0;
            while (done < sb.st_size) {
                size_t k = (size_t)(sb.st_size - done) < sizeof zeros
                               ? (size_t)(sb.st_size - done)
                               : sizeof zeros;
                ssize_t w = pwrite(fd, zeros, k, done);
                if (w <= 0)
                    break;
                done += w;
            }
            fdatasync(fd);
        }
        close(fd);
    }
    unlink(path);
}

void fv_stage_close(char *dir)
{
    if (!dir)
        return;
    for (size_t i = 0; i < NFILES; i++) {
        char *path = files[i].key ? fv_path_join(dir, files[i].file) : NULL;
        if (path)
            wipe_file(path);
        free(path);
    }
    fv_remove_tree(dir); /* what else was put there (a backup's staging) */
    free(dir);
}
