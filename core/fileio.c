/* fileio.c - file helpers shared by the vault, the server and bundles. */
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* ---- staged output -------------------------------------------------------- */

int fv_staged_begin(fv_staged *s, const char *path, int is_dir)
{
    struct stat sb;
    size_t n = strlen(path) + 16;

    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->is_dir = is_dir;
    s->path = (char *)path;
    if (lstat(path, &sb) == 0)
        return FV_EEXIST;
    if (!(s->tmp = malloc(n)) || !(s->parent = fv_path_dir(path)))
        return FV_ENOMEM;
    snprintf(s->tmp, n, "%s.fvtmp-XXXXXX", path);
    if (is_dir) {
        if (!mkdtemp(s->tmp))
            return fv_errno_rc(errno);
        s->made = 1;
        chmod(s->tmp, 0700);
        s->fd = open(s->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        s->fd = mkstemp(s->tmp);
        s->made = s->fd >= 0;
        if (s->fd >= 0)
            fchmod(s->fd, 0600);
    }
    return s->fd < 0 ? fv_errno_rc(errno) : FV_OK;
}

int fv_staged_commit(fv_staged *s)
{
    struct stat sb;
    int rc = FV_OK;

    if (s->fd >= 0 && fsync(s->fd) != 0)
        rc = fv_errno_rc(errno);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (rc)
        return rc;
    if (s->is_dir) {
        /* rename() would replace an empty directory made meanwhile: look
         * first (the remaining race is harmless, nothing is lost). */
        if (lstat(s->path, &sb) == 0)
            return FV_EEXIST;
        if (rename(s->tmp, s->path) != 0)
            return errno == EEXIST || errno == ENOTEMPTY ? FV_EEXIST
                                                        : fv_errno_rc(errno);
    } else {
        if (link(s->tmp, s->path) != 0)
            return errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno);
        unlink(s->tmp);
    }
    s->made = 0;
    if ((rc = fv_fsync_dir(s->parent)) != FV_OK) {
        /* The name may not survive a crash: taken back rather than
         * reported done, a directory as a file (what failed is not left
         * behind to refuse the next attempt as existing). */
        if (s->is_dir)
            fv_remove_tree(s->path);
        else
            unlink(s->path);
    }
    return rc;
}

void fv_staged_abort(fv_staged *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->made && s->tmp) {
        if (s->is_dir)
            fv_remove_tree(s->tmp);
        else
            unlink(s->tmp);
    }
    s->made = 0;
    free(s->tmp);
    free(s->parent);
    s->tmp = s->parent = NULL;
}

int fv_create_at(int dir, const char *name, int *fd)
{
    *fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                 0600);
    return *fd < 0 ? (errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno)) : FV_OK;
}

static void remove_tree_at(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d;
    struct dirent *de;

    if (fd < 0) {
        unlinkat(parent, name, 0);
        return;
    }
    if (!(d = fdopendir(fd))) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(fd, de->d_name, 0) != 0)
            remove_tree_at(fd, de->d_name);
    }
    closedir(d);
    unlinkat(parent, name, AT_REMOVEDIR);
}

void fv_remove_tree(const char *path)
{
    remove_tree_at(AT_FDCWD, path);
}
