/* faultshim.c - allocation, I/O and power-loss faults for the fault tests
 * (faultshim.h). One seam for the whole process: the test executable
 * defines the allocator and the libc file calls, so the dynamic linker binds
 * SQLite's, libsodium's and libcbor's calls to them as well as the
 * project's (linked statically into the test). Debian's libcbor and
 * libsodium have no allocator hook, and SQLite's VFS cannot reach fsync or
 * the project's own key files, packs and exports: interposition reaches
 * everything with one counter per kind. */
#undef _FILE_OFFSET_BITS /* define open and open64, read and pread64 alike */
#define _GNU_SOURCE
#include "faultshim.h"

#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Paths here are a short temporary root plus a few names. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* glibc's own allocator, under the names it exports for interposers. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

/* ---- the real calls ------------------------------------------------------ */

#define REAL(ret, name, args)                                   \
    static ret(*real_##name) args;                              \
    static void load_##name(void)                               \
    {                                                           \
        if (!real_##name)                                       \
            real_##name = (ret(*) args)dlsym(RTLD_NEXT, #name); \
    }

REAL(int, open64, (const char *, int, ...))
REAL(int, openat64, (int, const char *, int, ...))
REAL(ssize_t, read, (int, void *, size_t))
REAL(ssize_t, write, (int, const void *, size_t))
REAL(ssize_t, pread64, (int, void *, size_t, off64_t))
REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t))
REAL(int, fsync, (int))
REAL(int, fdatasync, (int))
REAL(int, rename, (const char *, const char *))
REAL(int, link, (const char *, const char *))
REAL(int, unlink, (const char *))
REAL(int, unlinkat, (int, const char *, int))
REAL(int, ftruncate64, (int, off64_t))
REAL(int, fallocate64, (int, int, off64_t, off64_t))
REAL(int, mkdir, (const char *, mode_t))
REAL(int, mkstemp64, (char *))
REAL(int, close, (int))

/* ---- state --------------------------------------------------------------- */

#define MAX_FD 4096
static unsigned char tracked[MAX_FD];
static char root[512];
static size_t rootlen;

static int io_kind = -1, io_err, io_injected, io_injected_own_sync;
static long io_countdown, io_count[FS_KINDS];

static int power_on;
static long power_crash_at, power_syncs;

void fs_set_root(const char *r)
{
    snprintf(root, sizeof root, "%s", r);
    rootlen = strlen(root);
    if (getenv("FS_TRACE")) {
        /* backtrace()'s first call loads its unwinder, allocating for good:
         * done now, so that a traced run's report holds no such "leak". */
        void *bt[2];
        backtrace(bt, 2);
    }
}

static int under_root(const char *path)
{
    return rootlen && path && strncmp(path, root, rootlen) == 0 &&
           (path[rootlen] == '/' || path[rootlen] == '\0');
}

static int fd_tracked(int fd)
{
    return fd >= 0 && fd < MAX_FD && tracked[fd];
}

static void track_fd(int fd, int on)
{
    if (fd >= 0 && fd < MAX_FD)
        tracked[fd] = (unsigned char)on;
}

void fs_io_arm(int kind, long n, int err)
{
    io_kind = n > 0 ? kind : -1;
    io_countdown = n;
    io_err = err;
    io_injected = io_injected_own_sync = 0;
    memset(io_count, 0, sizeof io_count);
}

long fs_io_count(int kind) { return io_count[kind]; }
int fs_io_injected(void) { return io_injected; }
int fs_io_injected_own_sync(void) { return io_injected_own_sync; }

/* Counts an operation of `kind` on a file under the root; non-zero (errno
 * set) when this one is to fail. */
static int io_fail(int kind, void *caller)
{
    io_count[kind]++;
    if (io_kind != kind || --io_countdown != 0)
        return 0;
    io_kind = -1;
    io_injected++;
    if (kind == FS_SYNC) {
        Dl_info info;
        if (!(dladdr(caller, &info) && info.dli_fname &&
              strstr(info.dli_fname, "libsqlite3"))) {
            io_injected_own_sync++;
            if (getenv("FS_TRACE")) { /* a debugging aid: which sync */
                void *bt[24];
                int n = backtrace(bt, 24);
                backtrace_symbols_fd(bt, n, 2);
            }
        }
    }
    errno = io_err;
    return 1;
}

/* ---- allocation ---------------------------------------------------------- */

/* Live tracked allocations: open addressing over a fixed table (reset each
 * time the allocator is armed); TOMB marks a freed slot. */
#define ATAB (1u << 18)
#define TOMB ((void *)1)
struct aslot {
    void *p;
    size_t size;
    void *caller;
};
static struct aslot *atab;
static int alloc_armed, alloc_injected;
static long alloc_countdown, alloc_count, alloc_live;

void fs_alloc_arm(long n)
{
    alloc_armed = 0;
    if (!atab) {
        atab = mmap(NULL, ATAB * sizeof *atab, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (atab == MAP_FAILED)
            abort();
    }
    memset(atab, 0, ATAB * sizeof *atab);
    alloc_countdown = n;
    alloc_count = alloc_live = 0;
    alloc_injected = 0;
    alloc_armed = n > 0;
}

long fs_alloc_count(void) { return alloc_count; }
int fs_alloc_injected(void) { return alloc_injected; }

static size_t ahash(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 20) & (ATAB - 1);
}

static void atrack(void *p, size_t size, void *caller)
{
    size_t i = ahash(p);
    for (size_t n = 0; n < ATAB; n++, i = (i + 1) & (ATAB - 1)) {
        if (atab[i].p == NULL || atab[i].p == TOMB) {
            atab[i].p = p;
            atab[i].size = size;
            atab[i].caller = caller;

            alloc_live++;
            return;
        }
    }
    abort(); /* table full: a test far bigger than these */
}

/* Forgets p; non-zero if it was tracked. */
static int auntrack(void *p)
{
    size_t i = ahash(p);
    for (size_t n = 0; n < ATAB && atab[i].p; n++, i = (i + 1) & (ATAB - 1)) {
        if (atab[i].p == p) {
            atab[i].p = TOMB;
            alloc_live--;
            return 1;
        }
    }
    return 0;
}

long fs_alloc_live(int report)
{
    int shown = 0;
    if (!alloc_armed && !atab)
        return 0;
    for (size_t i = 0; report && i < ATAB && shown < 8; i++) {
        if (atab[i].p && atab[i].p != TOMB) {
            Dl_info info;
            const char *sym = "?";
            if (dladdr(atab[i].caller, &info) && info.dli_sname)
                sym = info.dli_sname;
            fprintf(stderr, "  leaked %zu bytes, allocated from %s (%p)\n",
                    atab[i].size, sym, atab[i].caller);
            if (dladdr(atab[i].caller, &info) && info.dli_fname)
                fprintf(stderr, "    (%s+%#lx)\n", info.dli_fname,
                        (unsigned long)((char *)atab[i].caller - (char *)info.dli_fbase));
            shown++;
        }
    }
    return alloc_live;
}

/* Counts an allocation; non-zero when this one is to fail. */
static int alloc_fail(void)
{
    if (!alloc_armed)
        return 0;
    alloc_count++;
    if (alloc_countdown > 0 && --alloc_countdown == 0) {
        alloc_injected++;
        if (getenv("FS_TRACE")) { /* a debugging aid: where it failed */
            void *bt[24];
            int n = backtrace(bt, 24);
            backtrace_symbols_fd(bt, n, 2);
        }
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *malloc(size_t n)
{
    void *p;
    if (alloc_fail())
        return NULL;
    p = __libc_malloc(n);
    if (p && alloc_armed)
        atrack(p, n, __builtin_return_address(0));
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p;
    if (alloc_fail())
        return NULL;
    p = __libc_calloc(a, b);
    if (p && alloc_armed)
        atrack(p, a * b, __builtin_return_address(0));
    return p;
}

void free(void *p)
{
    if (p && atab)
        auntrack(p);
    __libc_free(p);
}

void *realloc(void *p, size_t n)
{
    void *q;
    if (!p)
        return malloc(n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    if (alloc_fail())
        return NULL;
    q = __libc_realloc(p, n);
    /* The block keeps its standing: tracked if it was allocated while armed. */
    if (q && atab && auntrack(p))
        atrack(q, n, __builtin_return_address(0));
    return q;
}

void *memalign(size_t align, size_t n)
{
    void *p;
    if (alloc_fail())
        return NULL;
    p = __libc_memalign(align, n);
    if (p && alloc_armed)
        atrack(p, n, __builtin_return_address(0));
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/* ---- power loss ---------------------------------------------------------- */

/* What is durable: file contents by inode, directory entries by path. */
struct dfile {
    dev_t dev;
    ino_t ino;
    mode_t mode;
    unsigned char *data;
    size_t len;
};
struct dent {
    char name[256];
    dev_t dev;
    ino_t ino;
    int isdir;
};
struct ddir {
    char path[1024];
    struct dent *ents;
    size_t n;
};
static struct dfile *dfiles;
static size_t ndfiles;
static struct ddir *ddirs;
static size_t nddirs;

static struct dfile *dfile_find(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < ndfiles; i++)
        if (dfiles[i].dev == dev && dfiles[i].ino == ino)
            return &dfiles[i];
    return NULL;
}

static struct ddir *ddir_find(const char *path)
{
    for (size_t i = 0; i < nddirs; i++)
        if (strcmp(ddirs[i].path, path) == 0)
            return &ddirs[i];
    return NULL;
}

/* Records fd's whole content as durable. */
static void durable_file(int fd)
{
    struct stat st;
    struct dfile *f;
    unsigned char *data;
    size_t got = 0;
    char link[64];
    int rfd;

    load_pread64();
    load_open64();
    load_close();
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    /* fd may be write-only: read through a descriptor of our own. */
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if ((rfd = real_open64(link, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "faultshim: cannot read back %s\n", link);
        _exit(98);
    }
    data = __libc_malloc((size_t)st.st_size + 1);
    if (!data)
        abort();
    while (got < (size_t)st.st_size) {
        ssize_t r = real_pread64(rfd, data + got, (size_t)st.st_size - got, (off64_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    real_close(rfd);
    if (!(f = dfile_find(st.st_dev, st.st_ino))) {
        dfiles = __libc_realloc(dfiles, (ndfiles + 1) * sizeof *dfiles);
        if (!dfiles)
            abort();
        f = &dfiles[ndfiles++];
        f->dev = st.st_dev;
        f->ino = st.st_ino;
    } else {
        __libc_free(f->data);
    }
    f->mode = st.st_mode & 07777;
    f->data = data;
    f->len = got;
}

static void listing(const char *path, struct dent **out, size_t *n);

/* Records the entries of directory `path` as durable (subdirectories new
 * to us start with no durable entries). */
static void durable_dir(const char *path)
{
    struct ddir *d = ddir_find(path);
    if (!d) {
        ddirs = __libc_realloc(ddirs, (nddirs + 1) * sizeof *ddirs);
        if (!ddirs)
            abort();
        d = &ddirs[nddirs++];
        snprintf(d->path, sizeof d->path, "%s", path);
    } else {
        __libc_free(d->ents);
    }
    listing(path, &d->ents, &d->n);
    for (size_t i = 0; i < d->n; i++) {
        char sub[1300];
        if (!d->ents[i].isdir)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, d->ents[i].name);
        if (!ddir_find(sub)) {
            struct ddir *s;
            ddirs = __libc_realloc(ddirs, (nddirs + 1) * sizeof *ddirs);
            if (!ddirs)
                abort();
            s = &ddirs[nddirs++];
            snprintf(s->path, sizeof s->path, "%s", sub);
            s->ents = NULL;
            s->n = 0;
        }
    }
}

static void listing(const char *path, struct dent **out, size_t *n)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    *out = NULL;
    *n = 0;
    if (!dir)
        return;
    while ((e = readdir(dir))) {
        char p[1300];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (lstat(p, &st) != 0)
            continue;
        *out = __libc_realloc(*out, (*n + 1) * sizeof **out);
        if (!*out)
            abort();
        snprintf((*out)[*n].name, sizeof (*out)[*n].name, "%s", e->d_name);
        (*out)[*n].dev = st.st_dev;
        (*out)[*n].ino = st.st_ino;
        (*out)[*n].isdir = S_ISDIR(st.st_mode);
        (*n)++;
    }
    closedir(dir);
}

/* The whole tree under `path` is durable as it stands. */
static void durable_tree(const char *path)
{
    struct ddir *d;
    durable_dir(path);
    d = ddir_find(path);
    for (size_t i = 0; d && i < d->n; i++) {
        char p[1300];
        snprintf(p, sizeof p, "%s/%s", path, d->ents[i].name);
        if (d->ents[i].isdir) {
            durable_tree(p);
            d = ddir_find(path); /* ddirs may have moved */
        } else {
            int fd;
            load_open64();
            if ((fd = real_open64(p, O_RDONLY | O_CLOEXEC)) >= 0) {
                durable_file(fd);
                load_close();
                real_close(fd);
            }
        }
    }
}

void fs_power_begin(const char *const *dirs, size_t ndirs, long crash_at)
{
    for (size_t i = 0; i < ndirs; i++)
        durable_tree(dirs[i]);
    power_crash_at = crash_at;
    power_syncs = 0;
    power_on = 1;
}

long fs_power_syncs(void) { return power_syncs; }

static void remove_tree(const char *path)
{
    struct stat st;
    load_unlink();
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        struct dent *ents;
        size_t n;
        listing(path, &ents, &n);
        for (size_t i = 0; i < n; i++) {
            char p[1300];
            snprintf(p, sizeof p, "%s/%s", path, ents[i].name);
            remove_tree(p);
        }
        __libc_free(ents);
        rmdir(path);
    } else {
        real_unlink(path);
    }
}

void fs_power_crash(void)
{
    load_open64();
    load_write();
    load_close();
    load_unlink();
    load_mkdir();
    /* Parents come before their subdirectories in ddirs. */
    for (size_t i = 0; i < nddirs; i++) {
        struct ddir *d = &ddirs[i];
        struct dent *cur;
        size_t ncur;
        struct stat st;
        if (lstat(d->path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue; /* its own entry was not durable */
        listing(d->path, &cur, &ncur);
        for (size_t j = 0; j < ncur; j++) {
            int keep = 0;
            for (size_t k = 0; k < d->n; k++)
                if (!strcmp(d->ents[k].name, cur[j].name) && d->ents[k].isdir == cur[j].isdir)
                    keep = 1;
            if (!keep) {
                char p[1300];
                snprintf(p, sizeof p, "%s/%s", d->path, cur[j].name);
                remove_tree(p);
            }
        }
        __libc_free(cur);
        for (size_t k = 0; k < d->n; k++) {
            char p[1300];
            struct dfile *f;
            int fd;
            snprintf(p, sizeof p, "%s/%s", d->path, d->ents[k].name);
            if (d->ents[k].isdir) {
                real_mkdir(p, 0700);
                continue;
            }
            /* A file whose content never reached a sync is empty. */
            f = dfile_find(d->ents[k].dev, d->ents[k].ino);
            real_unlink(p);
            fd = real_open64(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, f ? f->mode : 0600);
            if (fd < 0) {
                fprintf(stderr, "faultshim: cannot restore %s\n", p);
                _exit(98);
            }
            for (size_t off = 0; f && off < f->len;) {
                ssize_t w = real_write(fd, f->data + off, f->len - off);
                if (w <= 0)
                    _exit(98);
                off += (size_t)w;
            }
            real_close(fd);
        }
    }
    _exit(99);
}

static void power_sync(int fd)
{
    struct stat st;
    power_syncs++;
    if (power_syncs == power_crash_at)
        fs_power_crash();
    if (fstat(fd, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        char link[64], path[1024];
        ssize_t n;
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, path, sizeof path - 1);
        if (n > 0) {
            path[n] = '\0';
            durable_dir(path);
        }
    } else {
        durable_file(fd);
    }
}

/* ---- the file calls ------------------------------------------------------ */

static int do_open(int dirfd, const char *path, int flags, mode_t mode, void *caller)
{
    int fd, t = path[0] == '/' ? under_root(path) : fd_tracked(dirfd);
    (void)caller;
    if (t && io_fail(FS_OPEN, caller))
        return -1;
    load_openat64();
    fd = real_openat64(dirfd, path, flags, mode);
    if (fd >= 0)
        track_fd(fd, t);
    return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, mode, __builtin_return_address(0));
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, mode, __builtin_return_address(0));
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, mode, __builtin_return_address(0));
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, mode, __builtin_return_address(0));
}

int mkstemp64(char *tmpl)
{
    int fd, t = under_root(tmpl);
    if (t && io_fail(FS_OPEN, __builtin_return_address(0)))
        return -1;
    load_mkstemp64();
    fd = real_mkstemp64(tmpl);
    if (fd >= 0)
        track_fd(fd, t);
    return fd;
}

int mkstemp(char *tmpl)
{
    return mkstemp64(tmpl);
}

int close(int fd)
{
    track_fd(fd, 0);
    load_close();
    return real_close(fd);
}

ssize_t read(int fd, void *buf, size_t n)
{
    if (fd_tracked(fd) && io_fail(FS_READ, __builtin_return_address(0)))
        return -1;
    load_read();
    return real_read(fd, buf, n);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
    if (fd_tracked(fd) && io_fail(FS_READ, __builtin_return_address(0)))
        return -1;
    load_pread64();
    return real_pread64(fd, buf, n, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    return pread64(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (fd_tracked(fd) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_write();
    return real_write(fd, buf, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    if (fd_tracked(fd) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_pwrite64();
    return real_pwrite64(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite64(fd, buf, n, off);
}

int ftruncate64(int fd, off64_t len)
{
    if (fd_tracked(fd) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_ftruncate64();
    return real_ftruncate64(fd, len);
}

int ftruncate(int fd, off_t len)
{
    return ftruncate64(fd, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
    if (fd_tracked(fd) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_fallocate64();
    return real_fallocate64(fd, mode, off, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    return fallocate64(fd, mode, off, len);
}

static int do_sync(int fd, int data_only, void *caller)
{
    int t = fd_tracked(fd);
    if (t && io_fail(FS_SYNC, caller))
        return -1;
    if (t && power_on)
        power_sync(fd); /* may not return */
    if (data_only) {
        load_fdatasync();
        return real_fdatasync(fd);
    }
    load_fsync();
    return real_fsync(fd);
}

int fsync(int fd)
{
    return do_sync(fd, 0, __builtin_return_address(0));
}

int fdatasync(int fd)
{
    return do_sync(fd, 1, __builtin_return_address(0));
}

int rename(const char *from, const char *to)
{
    if (under_root(to) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_rename();
    return real_rename(from, to);
}

int link(const char *from, const char *to)
{
    if (under_root(to) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_link();
    return real_link(from, to);
}

int unlink(const char *path)
{
    if (under_root(path) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_unlink();
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    int t = path[0] == '/' ? under_root(path) : fd_tracked(dirfd);
    if (t && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_unlinkat();
    return real_unlinkat(dirfd, path, flags);
}

int mkdir(const char *path, mode_t mode)
{
    if (under_root(path) && io_fail(FS_WRITE, __builtin_return_address(0)))
        return -1;
    load_mkdir();
    return real_mkdir(path, mode);
}
