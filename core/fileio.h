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

#endif
