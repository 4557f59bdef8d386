/* fileio.c - file helpers shared by the vault, the server and bundles. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fieldvault.h"

int fv_errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? FV_ENOSPC : FV_EIO;
}

fv_errtext fv_errno_text(int e)
{
    fv_errtext t;
    /* The POSIX strerror_r (the project builds without _GNU_SOURCE). */
    if (strerror_r(e, t.text, sizeof t.text) != 0)
        snprintf(t.text, sizeof t.text, "error %d", e);
    return t;
}

int fv_write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fv_errno_rc(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return FV_OK;
}

int fv_write_fd_cb(const unsigned char *buf, size_t len, void *payload)
{
    return fv_write_all(*(int *)payload, buf, len) != FV_OK;
}

int fv_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = FV_OK;
    if (fd < 0)
        return fv_errno_rc(errno);
    /* A failed sync means the new name may not survive a crash: the
     * caller must not report the operation durable. */
    if (fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    return rc;
}

char *fv_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *fv_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d;
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    if (!(d = malloc((size_t)(slash - path) + 1)))
        return NULL;
    memcpy(d, path, (size_t)(slash - path));
    d[slash - path] = '\0';
    return d;
}
