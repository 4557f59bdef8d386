/* faultshim.h - the fault-injection seam of the fault tests (faultshim.c).
 *
 * The test program that links faultshim.c defines malloc, calloc, realloc,
 * free and the libc file calls (open, read, write, pread, pwrite, fsync,
 * fdatasync, rename, link, unlink, ftruncate, mkdir, mkstemp, close), so
 * every allocation and every file operation of the process goes through it:
 * the project's own code, SQLite, libsodium and libcbor alike. It can fail
 * the Nth allocation, fail the Nth open, read, write or sync of a file under
 * the test's root with an errno, and simulate power loss at the Nth sync.
 * It cannot run under AddressSanitizer, which interposes malloc itself: the
 * fault tests are built only without sanitizers. */
#ifndef FV_FAULTSHIM_H
#define FV_FAULTSHIM_H

#include <stddef.h>

enum fs_kind { FS_OPEN, FS_READ, FS_WRITE, FS_SYNC, FS_KINDS };

/* Only files under this directory (an absolute path) are counted and
 * failed; stdout, /dev/urandom and the like pass untouched. */
void fs_set_root(const char *root);

/* I/O faults: the nth operation of `kind` on a file under the root fails
 * with errno `err` (once); n = 0 disarms. */
void fs_io_arm(int kind, long n, int err);
/* Operations of each kind seen since the last fs_io_arm. */
long fs_io_count(int kind);
/* Faults injected since the last fs_io_arm, and of those, syncs of regular
 * files or directories the project made (not SQLite, which deliberately
 * ignores a failed directory sync). */
int fs_io_injected(void);
int fs_io_injected_own_sync(void);

/* Allocation faults: the nth allocation fails (once); n = 0 disarms.
 * Allocations made while armed are tracked until freed. */
void fs_alloc_arm(long n);
long fs_alloc_count(void);
int fs_alloc_injected(void);
/* Tracked allocations still live; prints up to a few of them (size and
 * caller) to stderr when `report`. */
long fs_alloc_live(int report);

/* Power loss: records what is durable in `dirs` (their whole trees) now;
 * from then on every fsync or fdatasync of a file under the root makes that
 * file's content durable, every directory sync its entries. At sync number
 * `crash_at` (1-based; before it takes effect) the process "loses power":
 * every file and directory entry is put back to its durable state and the
 * process exits with status 99. fs_power_crash() does the same at any point
 * (after the last sync). Returns the syncs counted so far. */
void fs_power_begin(const char *const *dirs, size_t ndirs, long crash_at);
long fs_power_syncs(void);
void fs_power_crash(void);

#endif
