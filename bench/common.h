/*
 * common.h - what FieldVault's benchmarks share (all of them): diagnostics,
 * the one-line JSON results, name selection, timing, scratch files, vaults
 * and servers, attachment bytes, /proc figures, and a minimal envelope
 * reader for the limits. Not part of the library.
 */
#ifndef FV_BENCH_COMMON_H
#define FV_BENCH_COMMON_H

#include <sodium.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fieldvault.h"
#include "fieldvault_sync.h"

#define PASSPHRASE "correct horse battery staple"
#define INVITE_TTL 3600

/* ---- diagnostics and output ------------------------------------------- */

extern const char *bench_prog;       /* the prefix of every diagnostic */
extern const char *bench_fieldvault; /* the CLI that serve_start runs */
extern char *scratch;                /* the scratch directory (make_scratch) */

/* "PROG: message" on stderr; die then exits 1 (the scratch directory and a
 * `fieldvault serve` child are removed by the process that made them). */
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void note(const char *fmt, ...);

/* One measurement, one JSON line on stdout:
 * {"bench": NAME, "value": X, "unit": U, "limit": Y, "ratio": X/Y}, without
 * limit and ratio when `limit` <= 0. */
void report(const char *name, double value, const char *unit, double limit,
            int decimals);

/* The NAMEs given on the command line (borrowed): wanted() is true for a
 * name that starts with one of them, or for every name when there are none. */
void bench_select(const char *const *names, int n);
int wanted(const char *name);

/* One option of a benchmark's own: "--NAME VALUE", a count (parse_count)
 * into *count or the text into *text; or the switch "--NAME", which sets
 * *on to 1. */
struct bench_flag {
    const char *name;
    size_t *count;
    const char **text;
    int *on;
};

/* What every benchmark's command line holds beside its own options. */
struct bench_cmdline {
    int quick;       /* --quick: sizes shrunk for CI */
    const char *dir; /* --dir DIR: where scratch goes (NULL: $TMPDIR) */
};

/* Reads the command line the benchmarks share, after setting bench_prog to
 * `prog`: --quick, --dir DIR, --fieldvault PATH (bench_fieldvault; else
 * default_fieldvault()), -h or --help (`usage` on stdout, exit 0), the
 * options of `flags` (ended by one without a name; NULL for none), and NAMEs,
 * each the start of one of the `nknown` names in `known`, which it selects
 * (bench_select). Anything else: a line and `usage` on stderr, exit 2. */
struct bench_cmdline bench_cmdline(int argc, char **argv, const char *prog,
                                   const char *usage,
                                   const char *const *known, size_t nknown,
                                   const struct bench_flag *flags);

double now(void); /* CLOCK_MONOTONIC, seconds */
/* A command-line count, 1..10,000,000; dies with `what` otherwise. */
size_t parse_count(const char *s, const char *what);
long my_tid(void);
void *xmalloc(size_t n);
/* Dies with the library's message unless rc is FV_OK. */
void fv_check(int rc, fv_vault *v, const char *what);

/* ---- scratch files -------------------------------------------------- */

void rm_tree(const char *path);
/* A new directory under `base` (NULL: $TMPDIR, else /tmp), removed at exit. */
void make_scratch(const char *base);
/* A new path in the scratch directory; the caller frees it. */
char *scratch_path(const char *what);
char *path_join(const char *dir, const char *name);
/* The copies are fsync'd: their write-back must not compete with the
 * timed work that follows. */
void copy_file(const char *from, const char *to, mode_t mode);
void copy_tree(const char *from, const char *to);

/* ---- test records ------------------------------------------------------ */

#define NARRATIVE_BYTES 300
#define NFIELDS 2

struct rec_in {
    char title[32];
    char narrative[NARRATIVE_BYTES];
    char values[NFIELDS][40];
    char tagbuf[16];
    fv_field fields[NFIELDS];
    const char *tags[1];
    fv_record_input in;
};

uint64_t rng_next(uint64_t *s); /* xorshift64* */
/* Text that looks like a testimony, `len` bytes. */
void make_narrative(char *out, size_t len, uint64_t seed);
/* Record i of a device: a title, a 300-byte narrative, 2 fields, a tag;
 * fixed-width, so that every envelope of a run has the same size. */
void make_record(struct rec_in *r, unsigned device, size_t i);
/* fv_record_add of records first..first+n-1 of a device. */
void add_records(fv_vault *v, unsigned device, size_t first, size_t n);

/* ---- attachment bytes -------------------------------------------------- */

/* `left` bytes of xorshift64* output for fv_attachment_source.read,
 * hashed (BLAKE2b-256) as they are handed out. */
struct gen {
    uint64_t state, left;
    crypto_generichash_state hash;
};

void gen_init(struct gen *g, uint64_t seed, uint64_t bytes);
long long gen_read(unsigned char *buf, size_t len, void *payload);

/* A sink for fv_attachment_read: hashes (BLAKE2b-256) and counts. */
struct hash_sink {
    crypto_generichash_state hash;
    uint64_t bytes;
};

void hash_sink_init(struct hash_sink *h);
int hash_write(const unsigned char *buf, size_t len, void *payload);

/* ---- vaults, servers, devices ------------------------------------------ */

fv_vault *create_vault(const char *dir); /* FV_KDF_TEST */
fv_vault *open_vault(const char *dir);
/* fv_server_init; returns the admin invite (free it). */
char *server_create(const char *dir);
/* A new vault in `dir`, enrolled as a field device through an invite made
 * with fv_server_invite. */
fv_vault *field_device(const char *server_dir, const char *addr,
                       const char *dir, const char *name);
fv_sync_result sync_or_die(fv_vault *v, const char *addr, const char *what);
/* fv_sync through `proxy` (a fv_sync_options.proxy URL; NULL: direct). */
fv_sync_result sync_via(fv_vault *v, const char *addr, const char *proxy,
                        const char *what);
/* The SOCKS5 server `kind` (no auth) on a free 127.0.0.1 port, as a child
 * killed at exit: "dante" (danted from dante-server, configured in the
 * scratch directory) or "microsocks". Its pid; `url` receives
 * "socks5h://127.0.0.1:PORT". Dies for another kind. */
#define SOCKS_KINDS "dante or microsocks"
pid_t socks_start(const char *kind, char *url, size_t cap);
void socks_stop(pid_t pid);

/* `bench_fieldvault serve --data DIR --listen 127.0.0.1:0`, its stderr to
 * `log`; waits for it to listen and returns its pid and address. */
pid_t serve_start(const char *dir, const char *log, char *addr,
                  size_t addr_cap);
/* serve_start with more options of serve after the others (NULL-ended). */
pid_t serve_start_with(const char *dir, const char *log, char *addr,
                       size_t addr_cap, const char *const *extra);
/* SIGTERM; its exit status must be 0. *maxrss: its ru_maxrss (KiB). */
void serve_stop(pid_t pid, const char *log, long *maxrss);
/* `fieldvault` in the directory of this program. */
const char *default_fieldvault(void);
void tail_file(const char *path, int lines);
/* Runs bench_fieldvault with args (args[0] its name) in a child, stdin
 * from /dev/null, stdout to `out`: its wall time, and its peak resident
 * set in *rss (KiB) unless rss is NULL. Dies, with the end of its stderr,
 * unless it exits 0. */
double run_cli(const char *const *args, const char *out, long *rss);

/* ---- SQLite and /proc -------------------------------------------------- */

sqlite3 *open_ro(const char *path);
int64_t query_int(sqlite3 *db, const char *sql);
/* A value in KiB from /proc/PID/status ("VmRSS", "VmHWM"), or -1. */
long status_kib(pid_t pid, const char *field);
/* Resets this process's peak resident set (VmHWM) to its current one
 * (/proc/self/clear_refs, Linux 4.0+). 0 on success, -1 if it cannot. */
int reset_peak_rss(void);
double proc_cpu(pid_t pid); /* CPU seconds of a process so far, or -1 */
double self_cpu(void);

/* ---- reading envelopes (COSE_Sign1, docs/FORMAT.md) -------------------- */

/* A minimal CBOR reader: enough to find the parts of an envelope. */
struct cur {
    const unsigned char *p;
    size_t n, pos;
    int err;
};

int cbor_head(struct cur *c, int *major, uint64_t *arg);
int cbor_expect(struct cur *c, int major, uint64_t *arg);
int cbor_bytes(struct cur *c, const unsigned char **p, size_t *n);
int cbor_skip(struct cur *c, int depth);
size_t put_head(unsigned char *out, int major, uint64_t arg);

struct env_view {
    const unsigned char *prot, *body, *sig, *author;
    size_t prot_len, body_len;
};

/* Finds an envelope's protected header (and in it the author's key), its
 * body and its signature. 0 on success. */
int parse_env(struct env_view *ev, const unsigned char *p, size_t n);
/* The COSE Sig_structure ["Signature1", protected, h'', body] that the
 * envelope's signature covers (RFC 9052 4.4). With out == NULL, its size. */
size_t sig_structure(unsigned char *out, const struct env_view *ev);

#endif
