/*
 * fileio.h - the few file helpers every part of FieldVault needs: whole
 * writes, directory syncs, errno to FV_E codes, path joining. Internal.
 */
#ifndef FV_FILEIO_H
#define FV_FILEIO_H

#include <stddef.h>

/* FV_ENOSPC for a full disk or quota, else FV_EIO. */
int fv_errno_rc(int e);
/* The text of errno value e, in place of strerror (which need not be
 * thread-safe): fv_errno_text(errno).text is valid until the end of the
 * full expression, e.g. as an argument of a message formatter. */
typedef struct fv_errtext {
    char text[96];
} fv_errtext;
fv_errtext fv_errno_text(int e);
/* Writes all n bytes (retrying short writes and EINTR). */
int fv_write_all(int fd, const void *p, size_t n);
/* fv_write_all as an fv_attachment_read callback: payload points to the int
 * file descriptor; non-zero when the write failed. */
int fv_write_fd_cb(const unsigned char *buf, size_t len, void *payload);
/* fsync()s a directory so that a rename or create in it is durable;
 * FV_EIO or FV_ENOSPC when that cannot be promised. */
int fv_fsync_dir(const char *dir);
/* "dir/name", malloc'd; NULL when out of memory. */
char *fv_path_join(const char *dir, const char *name);
/* The directory holding `path` ("." when it names none, "/" for the root),
 * malloc'd; NULL when out of memory. */
char *fv_path_dir(const char *path);

/* Output that appears under its name only when complete (docs/EXPORT.md,
 * "Complete or absent"): built under PATH.fvtmp-XXXXXX in the same
 * directory, then linked (a file) or renamed (a directory) to PATH. Used by
 * the evidence export and by the report writers (report/). */
typedef struct fv_staged {
    char *path;   /* borrowed from the caller */
    char *tmp;    /* the temporary name */
    char *parent; /* the directory holding both */
    int is_dir;
    int fd;       /* the open temporary file or directory; -1 once closed */
    int made;     /* the temporary exists: abort removes it */
} fv_staged;
/* Makes the temporary: a file (0600, s->fd open for writing) or a directory
 * (0700, s->fd open on it). FV_EEXIST when `path` exists, FV_EIO,
 * FV_ENOSPC, FV_ENOMEM. On failure nothing is left to undo but
 * fv_staged_abort. */
int fv_staged_begin(fv_staged *s, const char *path, int is_dir);
/* fsyncs what s->fd names (the caller has written, fsynced and closed
 * everything inside), closes it, and gives the output its name, durably.
 * FV_EEXIST when a file or directory took the name meanwhile. */
int fv_staged_commit(fv_staged *s);
/* Closes and removes whatever is still temporary; frees. Always call it,
 * after a commit too. */
void fv_staged_abort(fv_staged *s);
/* A new file `name` in directory `dir` (an open directory fd), 0600,
 * never following a link: *fd open for writing. FV_EEXIST, FV_EIO,
 * FV_ENOSPC. */
int fv_create_at(int dir, const char *name, int *fd);
/* Removes a directory tree (symlinks are removed, not followed). */
void fv_remove_tree(const char *path);

#endif
