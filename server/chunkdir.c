/* chunkdir.c - attachment chunks as files in a shared directory (see
 * chunkdir.h). */
#include "chunkdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fieldvault.h"
#include "fileio.h"

#define MARKER "FIELDVAULT-CHUNKS"
#define MARKER_TEXT "fieldvault chunks v1 "
#define MARKER_BYTES (sizeof MARKER_TEXT - 1 + 2 * FV_CHUNKDIR_ID_BYTES + 1)
#define FANOUT 256

struct fv_chunkdir {
    char *dir;
    int *pending;          /* open files written since the last sync */
    size_t npending, cap;
    unsigned char dirty[FANOUT / 8]; /* subdirectories to fsync */
};

static void marker_text(char out[MARKER_BYTES + 1],
                        const unsigned char id[FV_CHUNKDIR_ID_BYTES])
{
    static const char hex[] = "0123456789abcdef";
    size_t n = sizeof MARKER_TEXT - 1;
    memcpy(out, MARKER_TEXT, n);
    for (size_t i = 0; i < FV_CHUNKDIR_ID_BYTES; i++) {
        out[n++] = hex[id[i] >> 4];
        out[n++] = hex[id[i] & 15];
    }
    out[n++] = '\n';
    out[n] = '\0';
}

/* DIR/xx or DIR/xx/nnnnnnnnnnnnnnnn into buf (of PATH_MAX). */
static int sub_path(char *buf, size_t size, const char *dir, unsigned sub)
{
    int n = snprintf(buf, size, "%s/%02x", dir, sub & 0xff);
    return n > 0 && (size_t)n < size ? FV_OK : FV_ELIMIT;
}

static int file_path(char *buf, size_t size, const char *dir, uint64_t n)
{
    int k = snprintf(buf, size, "%s/%02x/%016" PRIx64, dir,
                     (unsigned)(n & 0xff), n);
    return k > 0 && (size_t)k < size ? FV_OK : FV_ELIMIT;
}

/* 1 if `dir` has no entry but . and .., 0 if it has, -1 if unreadable. */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int empty = 1;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

int fv_chunkdir_create(const char *dir,
                       const unsigned char id[FV_CHUNKDIR_ID_BYTES])
{
    char path[4096], text[MARKER_BYTES + 1];
    int fd, rc, e;

    if (mkdir(dir, 0700) != 0) {
        if (errno != EEXIST)
            return fv_errno_rc(errno);
        e = dir_empty(dir);
        if (e < 0)
            return fv_errno_rc(errno);
        if (!e)
            return FV_EEXIST;
    }
    for (unsigned i = 0; i < FANOUT; i++) {
        if ((rc = sub_path(path, sizeof path, dir, i)))
            return rc;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return fv_errno_rc(errno);
    }
    /* The marker last: a directory with one is complete. */
    if (snprintf(path, sizeof path, "%s/%s", dir, MARKER) >= (int)sizeof path)
        return FV_ELIMIT;
    marker_text(text, id);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fv_errno_rc(errno);
    rc = fv_write_all(fd, text, strlen(text));
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    if (rc == FV_OK)
        rc = fv_fsync_dir(dir);
    return rc;
}

void fv_chunkdir_remove(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, MARKER) < (int)sizeof path)
        unlink(path);
    for (unsigned i = 0; i < FANOUT; i++)
        if (sub_path(path, sizeof path, dir, i) == FV_OK)
            rmdir(path); /* only if empty: no chunk is ever removed here */
    rmdir(dir);
}

int fv_chunkdir_open(fv_chunkdir **out, const char *dir,
                     const unsigned char id[FV_CHUNKDIR_ID_BYTES])
{
    char path[4096], want[MARKER_BYTES + 1], got[MARKER_BYTES + 2];
    fv_chunkdir *d;
    ssize_t n;
    int fd;

    *out = NULL;
    if (snprintf(path, sizeof path, "%s/%s", dir, MARKER) >= (int)sizeof path)
        return FV_ELIMIT;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? FV_ENOTFOUND
                                                   : fv_errno_rc(errno);
    n = read(fd, got, sizeof got - 1);
    close(fd);
    marker_text(want, id);
    if (n != (ssize_t)strlen(want) || memcmp(got, want, (size_t)n) != 0)
        return FV_EDENIED;
    if (!(d = calloc(1, sizeof *d)) || !(d->dir = strdup(dir))) {
        free(d);
        return FV_ENOMEM;
    }
    *out = d;
    return FV_OK;
}

static void drop_pending(fv_chunkdir *d)
{
    for (size_t i = 0; i < d->npending; i++)
        close(d->pending[i]);
    d->npending = 0;
}

void fv_chunkdir_close(fv_chunkdir *d)
{
    if (!d)
        return;
    drop_pending(d);
    free(d->pending);
    free(d->dir);
    free(d);
}

int fv_chunkdir_write(fv_chunkdir *d, uint64_t n, const unsigned char *data,
                      size_t len)
{
    char path[4096];
    int fd, rc;

    if ((rc = file_path(path, sizeof path, d->dir, n)))
        return rc;
    if (d->npending == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        int *p = realloc(d->pending, cap * sizeof *p);
        if (!p)
            return FV_ENOMEM;
        d->pending = p;
        d->cap = cap;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno);
    if ((rc = fv_write_all(fd, data, len))) {
        close(fd);
        unlink(path);
        return rc;
    }
    d->pending[d->npending++] = fd;
    d->dirty[(n & 0xff) / 8] |= (unsigned char)(1u << (n & 7));
    return FV_OK;
}

int fv_chunkdir_sync(fv_chunkdir *d)
{
    char path[4096];
    int rc = FV_OK;

    for (size_t i = 0; i < d->npending; i++)
        if (rc == FV_OK && fdatasync(d->pending[i]) != 0)
            rc = fv_errno_rc(errno);
    drop_pending(d);
    /* The new names, once per subdirectory. */
    for (unsigned i = 0; i < FANOUT; i++) {
        if (!(d->dirty[i / 8] >> (i % 8) & 1))
            continue;
        if (rc == FV_OK && (rc = sub_path(path, sizeof path, d->dir, i)) ==
                               FV_OK)
            rc = fv_fsync_dir(path);
    }
    memset(d->dirty, 0, sizeof d->dirty);
    return rc;
}

int fv_chunkdir_read(fv_chunkdir *d, uint64_t n, unsigned char *buf,
                     size_t len)
{
    char path[4096];
    struct stat sb;
    size_t got = 0;
    int fd, rc;

    if ((rc = file_path(path, sizeof path, d->dir, n)))
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? FV_ECORRUPT : fv_errno_rc(errno);
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != len) {
        close(fd);
        return FV_ECORRUPT;
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r == 0 ? FV_ECORRUPT : FV_EIO;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    return rc;
}

int fv_chunkdir_destroy(fv_chunkdir *d, uint64_t n)
{
    static const unsigned char zero[64 * 1024];
    char path[4096];
    struct stat sb;
    int fd, rc;

    if ((rc = file_path(path, sizeof path, d->dir, n)))
        return rc;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? FV_OK : fv_errno_rc(errno);
    /* Zeros over the ciphertext first: unlinking alone leaves the blocks
     * readable on the disk until they are reused. */
    if (fstat(fd, &sb) != 0)
        rc = fv_errno_rc(errno);
    for (off_t off = 0; rc == FV_OK && off < sb.st_size;) {
        size_t k = (size_t)(sb.st_size - off) < sizeof zero
                       ? (size_t)(sb.st_size - off)
                       : sizeof zero;
        ssize_t w = pwrite(fd, zero, k, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = fv_errno_rc(errno);
        else
            off += w;
    }
    if (rc == FV_OK && fdatasync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    if (rc == FV_OK && unlink(path) != 0)
        rc = fv_errno_rc(errno);
    if (rc == FV_OK && sub_path(path, sizeof path, d->dir,
                                (unsigned)(n & 0xff)) == FV_OK)
        rc = fv_fsync_dir(path);
    return rc;
}
