/* server.c - the server's directory and its event loop (see server.h). The
 * protocol itself is in server_engine.c; this file moves bytes between it
 * and TLS, and keeps time. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "crypto.h"
#include "fileio.h"
#include "fieldvault.h"
#include "proto.h"
#include "server_engine.h"
#include "server_stage.h"
#ifdef FV_HAVE_POSTGRESQL
#include "store_pg.h"
#endif
#include "sstore.h"
#include "textparse.h"
#include "tls_server.h"
#include "vpool.h"

#define KEY_FILE "tls.key"
#define CRT_FILE "tls.crt"
#define RECEIPT_FILE "receipt.key"
#define DB_FILE "server.db"
#define CHUNK_DIR "chunks" /* pack files of attachment chunks (store_server.h) */
#define FORMAT "1"

#define DEFAULT_MAX_CONN 1024
#define DEFAULT_PER_ADDRESS 128
#define DEFAULT_PER_DEVICE 4
#define DEFAULT_BUDGET_MIB 64
#define MIN_BUDGET_MIB 16 /* room for a few connections at FV_FRAME_MAX */
#define FD_MARGIN 64      /* descriptors besides connections: store, packs */
#define EVICT_LOG_MS 1000 /* eviction summaries at most this often */
#define DEFAULT_HANDSHAKE_MS 10000
#define DEFAULT_IDLE_MS 60000
#define DEFAULT_FRAME_MS 120000
#define TICK_MS 200           /* the stop flag is checked this often */
#define IO_BYTES 16384        /* per connection: one TLS record each way */
#define ROUNDS_PER_WAKE 8     /* read-handle-write rounds per connection */
/* The listen queue is drained each wake (the kernel holds at most
 * net.core.somaxconn connections in it, 4096 on Debian 12): a burst of
 * devices beyond it would otherwise lose SYNs until the kernel's retries
 * give up. */
#define ACCEPTS_PER_WAKE 4096
/* TLS handshake steps (each an ECDHE key or a signature: the costly part
 * of a connection) per wake, oldest connection first; the rest wait their
 * turn without their handshake deadline running, and accepting and the
 * connections already past their handshake come back between turns. */
#define HANDSHAKES_PER_WAKE 16
/* A pre-auth connection that has spoken is evicted to make room only once
 * its peer has been silent this long (one that never sent a byte: at
 * once). Otherwise new connections wait in the listen queue. */
#define EVICT_GRACE_MS 2000
#define ACCEPT_PAUSE_MS 100 /* re-check when nothing could make room */
#define DRAIN_BYTES (256u << 10) /* read and dropped per turn while closing */
#define LINGER_MS 2000           /* closing: how long input is still dropped */
#define CERT_CHECK_MS (3600 * 1000) /* the certificate's renewal is checked */
#define CERT_STAT_MS 2000           /* ... and its file looked at for a change */
#define VERIFY_INLINE_MAX 4 /* a PUSH of at most this many envelopes is
                               checked on the loop's thread: handing it to
                               the pool would cost it more than it saves */

/* fv_server_options.stop may be set from a signal handler only if this is
 * lock-free. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");

/* ---- small helpers ---------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void engine_random(void *buf, size_t n, void *payload)
{
    (void)payload;
    fv_random(buf, n);
}

/* Splits "host:port" or "[v6]:port" into host and port (0..65535: port 0
 * listens on a free port). The client reads addresses with the same parser. */
static int parse_addr(const char *s, char host[256], char port[6])
{
    return fv_addr_parse(s, FV_ADDR_PORT0, host, port, NULL);
}

/* The receipt key: 64 raw bytes, created O_EXCL mode 0600. */
static int receipt_key_write(const char *path, const unsigned char *sk)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    int rc;
    if (fd < 0)
        return errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno);
    rc = fv_write_all(fd, sk, FV_SIGN_SK_BYTES);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    return rc;
}

/* Reads the receipt key into sk (secure memory). */
static int receipt_key_read(const char *path, unsigned char *sk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = FV_OK;
    size_t got = 0;
    struct stat sb;
    if (fd < 0)
        return errno == ENOENT ? FV_ENOTFOUND : FV_EIO;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        sb.st_size != FV_SIGN_SK_BYTES)
        rc = FV_ECORRUPT;
    while (rc == FV_OK && got < FV_SIGN_SK_BYTES) {
        ssize_t r = read(fd, sk + got, FV_SIGN_SK_BYTES - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = r == 0 ? FV_ECORRUPT : FV_EIO;
        else
            got += (size_t)r;
    }
    close(fd);
    return rc;
}

/* The server's files, by name. For a store named by a URL (PostgreSQL),
 * db is the URL and the files are copies in stage (server_stage.h). */
struct paths {
    char *key, *crt, *receipt, *db, *wal, *shm, *chunks;
    char *stage;
};

static void paths_free(struct paths *p)
{
    free(p->key);
    free(p->crt);
    free(p->receipt);
    free(p->db);
    free(p->wal);
    free(p->shm);
    free(p->chunks);
    fv_stage_close(p->stage);
}

static int paths_make(struct paths *p, const char *dir)
{
    int rc;
    memset(p, 0, sizeof *p);
    if (fv_sstore_is_pg(dir)) {
        if ((rc = fv_stage_open(dir, &p->stage)))
            return rc;
        if (!(p->db = strdup(dir))) {
            paths_free(p);
            return FV_ENOMEM;
        }
        dir = p->stage;
    }
    p->key = fv_path_join(dir, KEY_FILE);
    p->crt = fv_path_join(dir, CRT_FILE);
    p->receipt = fv_path_join(dir, RECEIPT_FILE);
    if (!p->db)
        p->db = fv_path_join(dir, DB_FILE);
    p->wal = fv_path_join(dir, DB_FILE "-wal");
    p->shm = fv_path_join(dir, DB_FILE "-shm");
    p->chunks = fv_path_join(dir, CHUNK_DIR);
    if (!p->key || !p->crt || !p->receipt || !p->db || !p->wal || !p->shm ||
        !p->chunks) {
        paths_free(p);
        return FV_ENOMEM;
    }
    return FV_OK;
}

int fv_server_set_chunks(const char *dir)
{
#ifdef FV_HAVE_POSTGRESQL
    return fv_sstore_pg_set_chunks(dir);
#else
    return dir ? FV_EINVAL : FV_OK;
#endif
}

/* ---- init ------------------------------------------------------------- */

/* What server init keeps in a shared store (server_stage.h). */
static const char *const stage_files[] = {KEY_FILE, CRT_FILE, RECEIPT_FILE,
                                          NULL};

/* The host name for the certificate: the operator's, else the host of
 * `listen` when it is a name (not an address), else NULL (tls.c's default). */
static const char *cert_hostname(const char *hostname, const char *host)
{
    if (hostname)
        return hostname;
    return fv_tls_hostname_ok(host) ? host : NULL;
}

int fv_server_init(const char *dir, const char *listen, unsigned char pin[32],
                   char **admin_invite)
{
    return fv_server_init_named(dir, listen, NULL, pin, admin_invite);
}

int fv_server_init_named(const char *dir, const char *listen,
                         const char *hostname, unsigned char pin[32],
                         char **admin_invite)
{
    char host[256], port[6];
    unsigned char epoch[FV_EPOCH_BYTES], pk[FV_SIGN_PK_BYTES];
    unsigned char token[FV_TOKEN_BYTES];
    unsigned char *sk = NULL;
    struct paths p;
    struct stat sb;
    fv_sstore *st = NULL;
    int rc, made_tls = 0, made_receipt = 0, made_db = 0, made_chunks = 0;
    const char *const *f;

    if (admin_invite)
        *admin_invite = NULL;
    if (!dir || !*dir || !pin || !admin_invite ||
        parse_addr(listen, host, port) || strlen(listen) > 255 ||
        (hostname && !fv_tls_hostname_ok(hostname)))
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    if ((rc = paths_make(&p, dir)))
        return rc;
    if (p.stage)
        dir = p.stage; /* the files go into the store (server_stage.h) */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = fv_errno_rc(errno);
        goto done;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        rc = FV_EIO;
        goto done;
    }
    {
        const char *const any[] = {p.db, p.receipt, p.key, p.crt, p.chunks,
                                   NULL};
        for (f = any; *f; f++)
            if (lstat(*f, &sb) == 0) {
                rc = FV_EEXIST;
                goto done;
            }
    }
    sk = fv_secure_alloc(FV_SIGN_SK_BYTES);
    if (!sk) {
        rc = FV_ENOMEM;
        goto done;
    }

    if ((rc = fv_tls_identity_create_named(p.key, p.crt,
                                           cert_hostname(hostname, host), pin)))
        goto done;
    made_tls = 1;
    fv_sign_keypair(pk, sk);
    if ((rc = receipt_key_write(p.receipt, sk)))
        goto done;
    made_receipt = 1;
    /* The store makes it when first needed too (a server made before
     * attachments has none). */
    if (mkdir(p.chunks, 0700) != 0) {
        rc = fv_errno_rc(errno);
        goto done;
    }
    made_chunks = 1;
    if ((rc = fv_sstore_open(&st, p.db, 1)))
        goto done;
    made_db = 1;
    fv_random(epoch, sizeof epoch);
    if ((rc = fv_sstore_begin(st)) ||
        (rc = fv_sstore_meta_put(st, "format", FORMAT, strlen(FORMAT))) ||
        (rc = fv_sstore_meta_put(st, "epoch", epoch, sizeof epoch)) ||
        (rc = fv_sstore_meta_put(st, "receipt_pk", pk, sizeof pk)) ||
        (rc = fv_sstore_meta_put(st, "listen", listen, strlen(listen))) ||
        (p.stage && (rc = fv_stage_save(st, p.stage, stage_files))) ||
        (rc = fv_sstore_commit(st)))
        goto done;
    fv_random(token, sizeof token);
    rc = fv_srv_invite_create(admin_invite, st, listen, pin, NULL, "admin", 5,
                              FV_ROLE_COORDINATOR,
                              (int64_t)time(NULL) + FV_SERVER_INVITE_TTL,
                              token);
    fv_wipe(token, sizeof token);
    if (rc)
        goto done;
    fv_sstore_close(st);
    st = NULL;
    /* The new files' names must survive a crash, or the server is not
     * made (and what was made goes again). */
    rc = fv_fsync_dir(dir);
done:
    if (st) {
        fv_sstore_rollback(st);
#ifdef FV_HAVE_POSTGRESQL
        if (rc && p.stage)
            fv_sstore_pg_drop(st); /* the tables it made */
#endif
        fv_sstore_close(st);
    }
    if (rc) {
        /* Undo a half-made server so that the next init can succeed. */
        if (made_db && !p.stage) {
            unlink(p.db);
            unlink(p.wal);
            unlink(p.shm);
        }
        if (made_chunks)
            rmdir(p.chunks);
        if (made_receipt)
            unlink(p.receipt);
        if (made_tls) {
            unlink(p.key);
            unlink(p.crt);
        }
        if (*admin_invite) {
            free(*admin_invite);
            *admin_invite = NULL;
        }
        fv_wipe(pin, 32);
    }
    fv_secure_free(sk);
    paths_free(&p);
    return rc;
}

/* Opens the store of the server in `dir` and reads its listen address. */
static int open_server_store(fv_sstore **st, const char *dir,
                             const struct paths *p, char listen[256])
{
    unsigned char *v = NULL;
    size_t len = 0;
    struct stat sb;
    int rc;

    *st = NULL;
    if (p->stage)
        dir = p->stage;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return FV_ENOTFOUND;
    if ((rc = fv_sstore_open(st, p->db, 0)))
        return rc;
    rc = fv_sstore_meta_get(*st, "format", &v, &len);
    if (rc == FV_OK && (len != strlen(FORMAT) || memcmp(v, FORMAT, len)))
        rc = FV_EVERSION;
    free(v);
    v = NULL;
    if (rc == FV_OK)
        rc = fv_sstore_meta_get(*st, "listen", &v, &len);
    if (rc == FV_OK && (len == 0 || len > 255 || memchr(v, 0, len)))
        rc = FV_ECORRUPT;
    if (rc == FV_OK) {
        memcpy(listen, v, len);
        listen[len] = '\0';
    }
    free(v);
    if (rc == FV_ENOTFOUND)
        rc = FV_ECORRUPT; /* a meta value is missing */
    if (rc) {
        fv_sstore_close(*st);
        *st = NULL;
    }
    return rc;
}

int fv_server_invite(const char *dir, const char *name, int role,
                     uint64_t ttl, char **invite)
{
    char listen[256];
    unsigned char pin[32], org[32], token[FV_TOKEN_BYTES];
    struct paths p;
    fv_sstore *st = NULL;
    int rc, has_org;

    if (invite)
        *invite = NULL;
    if (!dir || !name || !invite || ttl == 0 || ttl > FV_MAX_INVITE_TTL)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    if ((rc = paths_make(&p, dir)))
        return rc;
    if ((rc = open_server_store(&st, dir, &p, listen)) ||
        (rc = fv_tls_identity_pin(p.crt, pin)))
        goto done;
    rc = fv_sstore_meta_get_fixed(st, "org", org, sizeof org);
    has_org = rc == FV_OK;
    if (rc && rc != FV_ENOTFOUND)
        goto done;
    fv_random(token, sizeof token);
    rc = fv_srv_invite_create(invite, st, listen, pin, has_org ? org : NULL,
                              name, strlen(name), role,
                              (int64_t)time(NULL) + (int64_t)ttl, token);
    fv_wipe(token, sizeof token);
done:
    fv_sstore_close(st);
    paths_free(&p);
    return rc;
}

int fv_server_csr(const char *dir, const char *hostname, char **pem)
{
    char listen[256];
    struct paths p;
    fv_sstore *st = NULL;
    int rc;

    if (pem)
        *pem = NULL;
    if (!dir || !pem || (hostname && !fv_tls_hostname_ok(hostname)))
        return FV_EINVAL;
    if ((rc = paths_make(&p, dir)))
        return rc;
    if (!(rc = open_server_store(&st, dir, &p, listen)))
        rc = fv_tls_csr(p.key, p.crt, hostname, pem);
    fv_sstore_close(st);
    paths_free(&p);
    return rc;
}

int fv_server_cert_install(const char *dir, const char *chain_path)
{
    char listen[256];
    struct paths p;
    fv_sstore *st = NULL;
    int rc;

    if (!dir || !chain_path)
        return FV_EINVAL;
    if ((rc = paths_make(&p, dir)))
        return rc;
    if (!(rc = open_server_store(&st, dir, &p, listen)))
        rc = fv_tls_cert_install(p.key, p.crt, chain_path);
    if (!rc && p.stage) {
        const char *const crt[] = {CRT_FILE, NULL};
        rc = fv_stage_save(st, p.stage, crt);
    }
    fv_sstore_close(st);
    paths_free(&p);
    return rc;
}

/* ---- the event loop --------------------------------------------------- */

enum phase { PH_HANDSHAKE, PH_OPEN };

/* Connections from one source address, or of one device: what they hold
 * against the caps. A slot is free when nconn is 0. */
struct group {
    unsigned char key[33]; /* 'a' and the address, or 'd' and the device key */
    unsigned int nconn, npre;
    size_t held;
};

struct sconn {
    fv_tls_conn *tls;
    fv_srv_conn *eng;
    fv_vbatch *vb; /* its PUSH's signature checks, in the pool */
    struct group *addr, *dev; /* dev: NULL until HELLO succeeded */
    size_t held;  /* fv_srv_conn_buffered when last counted */
    unsigned long id;
    int phase;
    int dead;
    int heard;    /* a byte arrived from the peer */
    int kick;     /* has work that poll() would not announce */
    int hs_want;  /* FV_TLS_WANT_* of the handshake */
    int r_want;   /* ... of the last read, 0 if it returned data */
    int w_want;   /* ... of the pending write */
    int64_t t_start, t_last, t_frame;
    int64_t t_defer;  /* waiting for a handshake turn since (0: not) */
    int64_t t_linger; /* closing after an ERROR: input dropped until then */
    size_t in_off, in_len; /* bytes read, not yet taken by the engine */
    size_t w_off, w_len;   /* bytes taken from the engine, not yet written */
    unsigned char in[IO_BYTES];
    unsigned char wb[IO_BYTES];
};

struct server {
    const fv_server_options *o;
    unsigned int max_conn, hs_ms, idle_ms, frame_ms;
    unsigned int per_addr, per_dev, max_pre, pre_per_addr;
    size_t budget, dev_budget, addr_budget;
    size_t held;        /* over every connection */
    unsigned int npre;  /* connections before HELLO succeeded */
    struct group *groups;
    size_t ngroups;     /* slots: 2 per connection */
    int reserve_fd;     /* given up to accept-and-close out of descriptors */
    int fd_short;       /* in a burst of EMFILE/ENFILE */
    int64_t fd_short_at; /* its last EMFILE/ENFILE */
    unsigned long fd_dropped, evicted, over_budget;
    int64_t evict_logged;
    fv_tls_server *tls;
    fv_sstore *st;
    fv_srv *srv;
    fv_srv_env env;
    fv_vpool *pool; /* NULL: signatures are checked on the loop's thread */
    struct sconn **conns;
    size_t nconns;
    struct pollfd *pfds;
    unsigned long next_id;
    int64_t accept_resume;
    int64_t cert_check;     /* when to check the renewal again */
    int64_t cert_stat;      /* when to look for a changed file again */
    struct stat cert_sb;    /* the certificate file as last loaded */
    char *cert_host;        /* for a renewal that needs a new name */
    /* A shared store (server_stage.h): the digest of its certificate as
     * last loaded, the store's meta standing in for the file. */
    unsigned char cert_digest[FV_HASH_BYTES];
};

static void default_log(const char *line, void *payload)
{
    (void)payload;
    fprintf(stderr, "fieldvault serve: %s\n", line);
}

static void slog(struct server *S, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void slog(struct server *S, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    if (!S->env.log)
        return; /* fv_server_import logs nothing */
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    S->env.log(line, S->env.log_payload);
}

/* ---- what connections hold: the caps ---------------------------------- */

/* The group of `key` (33 bytes), made if missing. Slots are 2 per
 * connection, so one is always free for a connection being counted. */
static struct group *group_get(struct server *S, const unsigned char key[33])
{
    struct group *free_slot = NULL;
    for (size_t i = 0; i < S->ngroups; i++) {
        struct group *g = &S->groups[i];
        if (g->nconn == 0) {
            if (!free_slot)
                free_slot = g;
        } else if (memcmp(g->key, key, sizeof g->key) == 0) {
            return g;
        }
    }
    if (free_slot) {
        memset(free_slot, 0, sizeof *free_slot);
        memcpy(free_slot->key, key, sizeof free_slot->key);
    }
    return free_slot;
}

/* The source address as a group key. IPv6 addresses count by their /64:
 * one subscriber usually holds a whole /64, so counting single addresses
 * would let one peer take every slot. IPv4-mapped addresses count as IPv4. */
static void addr_key(int fd, unsigned char key[33])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0, 0xff, 0xff};
    memset(key, 0, 33);
    key[0] = 'a';
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return; /* unknown: all such share one group */
    if (ss.ss_family == AF_INET) {
        memcpy(key + 1, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const unsigned char *a =
            ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, sizeof mapped) == 0) {
            memcpy(key + 1, a + 12, 4);
        } else {
            key[0] = '6';
            memcpy(key + 1, a, 8);
        }
    }
}

/* Brings the bytes counted for c to what its engine holds now (0 once it
 * is dead: its buffers go with it). */
static void account(struct server *S, struct sconn *c)
{
    size_t now = c->eng && !c->dead ? fv_srv_conn_buffered(c->eng) : 0;
    S->held = S->held - c->held + now;
    c->addr->held = c->addr->held - c->held + now;
    if (c->dev)
        c->dev->held = c->dev->held - c->held + now;
    c->held = now;
}

/* Marks c dead and uncounts what it holds at once, so that the budgets
 * see the room it leaves before it is reaped. */
static void conn_kill(struct server *S, struct sconn *c)
{
    if (!c->dead)
        c->dead = 1;
    account(S, c);
}

static void conn_close(struct server *S, struct sconn *c, const char *why)
{
    if (why)
        slog(S, "conn %lu: closed (%s)", c->id, why);
    if (!c->dead)
        c->dead = 1;
    account(S, c);
    if (c->dev) {
        c->dev->nconn--;
    } else {
        S->npre--;
        c->addr->npre--;
    }
    c->addr->nconn--;
    /* The pool's threads read the frame the engine holds: done with it
     * first. */
    fv_vpool_cancel(S->pool, c->vb);
    c->vb = NULL;
    fv_srv_conn_free(c->eng);
    fv_tls_close(c->tls);
    fv_wipe(c->in, sizeof c->in);
    free(c);
    S->accept_resume = 0; /* a descriptor and a slot are free again */
}

/* Whether bytes from c's peer wait in its socket, unread. */
static int has_input(const struct sconn *c)
{
    int avail = 0;
    return ioctl(fv_tls_fd(c->tls), FIONREAD, &avail) == 0 && avail > 0;
}

/* Whether c's peer is waiting on us: bytes it sent not yet read (its
 * ClientHello, its key exchange), or a handshake turn to come. */
static int waits_on_us(struct sconn *c, int64_t now)
{
    if (c->t_defer)
        return 1;
    if (has_input(c)) {
        c->heard = 1;
        c->t_last = now;
        return 1;
    }
    return 0;
}

/* How readily pre-auth connection c gives way to a new one: 0 never sent
 * a byte (a socket held open, not a client in its handshake), 1 refused
 * and closing, 2 silent in its TLS handshake for EVICT_GRACE_MS; -1 not
 * at all (a client at work, or waiting on us on a busy server, or one
 * past its handshake, which cost its peer an ECDHE and has until the
 * handshake deadline to say HELLO: a device on a busy machine can take
 * seconds to). */
static int evict_rank(struct sconn *c, int64_t now)
{
    if (!c->heard)
        return 0;
    if (c->t_linger)
        return 1;
    if (c->phase == PH_HANDSHAKE && now - c->t_last >= EVICT_GRACE_MS)
        return 2;
    return -1;
}

/* Which pre-auth connection goes first to make room: the lowest
 * evict_rank, then the one silent longest; never one waiting on us. NULL
 * if none may go. `g`: only those of that address (NULL: any). */
static struct sconn *preauth_victim(struct server *S, const struct group *g,
                                    int64_t now)
{
    struct sconn *v = NULL;
    int vr = 0;
    for (size_t i = 0; i < S->nconns; i++) {
        struct sconn *c = S->conns[i];
        int r;
        if (c->dead || c->dev || (g && c->addr != g) ||
            (r = evict_rank(c, now)) < 0)
            continue;
        if (v && (r > vr || (r == vr && c->t_last >= v->t_last)))
            continue;
        if (!waits_on_us(c, now)) {
            v = c;
            vr = r;
        }
    }
    return v;
}

/* Closes a pre-auth connection to make room (of address `g`, or any):
 * they cost a peer nothing to open, so a flood of them must cost the
 * server a slot each, never the ability to accept a client that is
 * actually talking. Called between services only (it moves S->conns).
 * Returns 1 if one was closed. */
static int evict_preauth(struct server *S, const struct group *g,
                         int64_t now)
{
    struct sconn *v = preauth_victim(S, g, now);
    size_t i;
    if (!v)
        return 0;
    for (i = 0; S->conns[i] != v; i++)
        ;
    memmove(&S->conns[i], &S->conns[i + 1],
            (S->nconns - i - 1) * sizeof *S->conns);
    S->nconns--;
    conn_close(S, v, NULL);
    S->evicted++;
    return 1;
}

/* The live connection holding most, in `g` (NULL: any). */
static struct sconn *biggest(struct server *S, const struct group *g)
{
    struct sconn *v = NULL;
    for (size_t i = 0; i < S->nconns; i++) {
        struct sconn *c = S->conns[i];
        if (!c->dead && (!g || c->addr == g || c->dev == g) &&
            (!v || c->held > v->held))
            v = c;
    }
    return v;
}

/* After c's buffers changed: while c's device, c's address or everyone
 * holds more than the budget allows, the connection holding most in that
 * group is closed (usually the one that grew). */
static void enforce_budgets(struct server *S, struct sconn *c)
{
    for (;;) {
        struct group *g = NULL;
        struct sconn *v;
        const char *what;
        if (c->dev && c->dev->held > S->dev_budget) {
            g = c->dev;
            what = "its device's";
        } else if (c->addr->held > S->addr_budget) {
            g = c->addr;
            what = "its address's";
        } else if (S->held > S->budget) {
            what = "the server's";
        } else {
            return;
        }
        if (!(v = biggest(S, g)) || v->held == 0)
            return;
        slog(S, "conn %lu: closed (holds %zu KiB: over %s memory budget)",
             v->id, v->held >> 10, what);
        S->over_budget++;
        conn_kill(S, v);
    }
}

/* Once HELLO succeeded: the connection leaves the pre-auth pool and counts
 * against its device; a device over its limit loses its oldest connections
 * (a stale one a cut left behind, or those of a flood of its own). */
static void conn_authed(struct server *S, struct sconn *c)
{
    unsigned char key[33];
    struct group *g;
    key[0] = 'd';
    memcpy(key + 1, fv_srv_conn_device(c->eng), 32);
    if (!(g = group_get(S, key))) {
        c->dead = 1; /* cannot happen: there are 2 slots per connection */
        return;
    }
    /* Uncounted from the address alone, then counted with the device. */
    S->held -= c->held;
    c->addr->held -= c->held;
    c->held = 0;
    S->npre--;
    c->addr->npre--;
    c->dev = g;
    g->nconn++;
    account(S, c);
    for (;;) {
        struct sconn *old = NULL;
        unsigned int live = 0;
        for (size_t i = 0; i < S->nconns; i++) {
            struct sconn *o = S->conns[i];
            if (o->dead || o->dev != g)
                continue;
            live++;
            if (o != c && (!old || o->t_start < old->t_start))
                old = o;
        }
        if (live <= S->per_dev || !old)
            break;
        slog(S, "conn %lu: closed (its device has %u connections, the "
             "limit is %u: the oldest goes)", old->id, live, S->per_dev);
        conn_kill(S, old);
    }
}

static void log_evictions(struct server *S, int64_t now, int force)
{
    if (S->evicted && (force || now - S->evict_logged >= EVICT_LOG_MS)) {
        slog(S, "closed %lu idle connections before authentication to make "
             "room (limits: %u before HELLO, %u from one address)",
             S->evicted, S->max_pre, S->pre_per_addr);
        S->evicted = 0;
        S->evict_logged = now;
    }
}

/* Out of descriptors (EMFILE/ENFILE): said once per burst, as what it is.
 * An idle pre-auth connection makes room if there is one. Otherwise, while
 * connections of ours are at work (clients in their handshake, synced
 * devices), the new ones wait in the listen queue until one of them ends:
 * closing them unserved would turn away a client that is merely early.
 * With none (the descriptors are taken by something else), the reserve
 * descriptor accepts the connection and closes it, so that the clients
 * waiting in the queue learn at once instead of timing out. Returns 1 if
 * accepting may go on. */
static int out_of_fds(struct server *S, int64_t now)
{
    S->fd_short_at = now;
    if (!S->fd_short) {
        slog(S, "cannot accept: too many open files (%zu connections "
             "open): closing idle connections, or waiting, until "
             "descriptors free up", S->nconns);
        S->fd_short = 1;
    }
    if (evict_preauth(S, NULL, now))
        return 1;
    if (S->nconns == 0 && S->reserve_fd >= 0) {
        int fd;
        close(S->reserve_fd);
        fd = accept(fv_tls_server_fd(S->tls), NULL, NULL);
        if (fd >= 0) {
            close(fd);
            S->fd_dropped++;
        }
        S->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && S->reserve_fd >= 0)
            return 1;
    }
    /* Until a connection closes (conn_close), or a while. */
    S->accept_resume = now + ACCEPT_PAUSE_MS;
    return 0;
}

static void accept_some(struct server *S, int64_t now)
{
    unsigned refused = 0;
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        fv_tls_conn *t = NULL;
        struct sconn *c;
        struct group *g;
        unsigned char key[33];
        int rc;
        /* Full, and every pre-auth connection at work: the next ones wait
         * in the listen queue until a connection closes. */
        if ((S->npre >= S->max_pre || S->nconns >= S->max_conn) &&
            !preauth_victim(S, NULL, now)) {
            S->accept_resume = now + ACCEPT_PAUSE_MS;
            break;
        }
        rc = fv_tls_accept(S->tls, &t);
        if (rc == FV_ENOTFOUND)
            break;
        if (rc == FV_ELIMIT) {
            if (out_of_fds(S, now))
                continue;
            break;
        }
        if (rc) {
            /* Out of memory: the listener stays readable, so wait a little
             * instead of spinning. */
            slog(S, "cannot accept: %s", fv_strerror(rc));
            S->accept_resume = now + ACCEPT_PAUSE_MS;
            break;
        }
        if (S->fd_short && now - S->fd_short_at >= 1000) {
            /* A second without EMFILE ends the burst. */
            slog(S, "accepting again (%lu connections were closed unserved "
                 "for want of descriptors)", S->fd_dropped);
            S->fd_short = 0;
            S->fd_dropped = 0;
        }
        addr_key(fv_tls_fd(t), key);
        g = group_get(S, key);
        /* Room from this address's own pre-auth connections: its idle
         * sockets give way to the new connection; with none idle, the new
         * one is refused (its share is used up). */
        if (g && (g->npre >= S->pre_per_addr || g->nconn >= S->per_addr))
            evict_preauth(S, g, now);
        if (g && (S->npre >= S->max_pre || S->nconns >= S->max_conn))
            evict_preauth(S, NULL, now);
        if (!g || g->nconn >= S->per_addr || g->npre >= S->pre_per_addr ||
            S->nconns >= S->max_conn ||
            !(c = malloc(sizeof *c))) {
            fv_tls_close(t);
            refused++;
            continue;
        }
        /* The two buffers are left untouched until used: a server holding
         * thousands of handshakes does not pay 32 KiB of memory for
         * each. */
        memset(c, 0, offsetof(struct sconn, in));
        c->tls = t;
        c->addr = g;
        g->nconn++;
        g->npre++;
        S->npre++;
        c->id = ++S->next_id;
        c->phase = PH_HANDSHAKE;
        c->t_start = c->t_last = now;
        c->kick = 1; /* the ClientHello may already be there */
        {
            int avail = 0; /* then it is a client, not an idle socket */
            c->heard = ioctl(fv_tls_fd(t), FIONREAD, &avail) == 0 && avail > 0;
        }
        S->conns[S->nconns++] = c;
        slog(S, "conn %lu: opened", c->id);
    }
    if (refused)
        slog(S, "refused %u connections (limits: %u in all, %u from one "
             "address)", refused, S->max_conn, S->per_addr);
}

/* Moves engine output to TLS. Returns 1 if bytes moved, 0 if not, -1 when
 * the connection failed. */
static int conn_flush(struct sconn *c, int64_t now)
{
    int moved = 0;
    for (;;) {
        size_t n = 0;
        int rc;
        if (c->w_len == 0) {
            size_t len;
            const unsigned char *p = fv_srv_conn_send_buf(c->eng, &len);
            if (!p)
                return moved;
            if (len > sizeof c->wb)
                len = sizeof c->wb;
            /* A copy: after WANT_*, TLS must be called again with the same
             * bytes, while the engine's queue may move. */
            memcpy(c->wb, p, len);
            fv_srv_conn_send_ack(c->eng, len);
            c->w_off = 0;
            c->w_len = len;
        }
        rc = fv_tls_write(c->tls, c->wb + c->w_off, c->w_len - c->w_off, &n);
        if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
            c->w_want = rc;
            return moved;
        }
        if (rc != FV_OK)
            return -1;
        c->w_want = 0;
        c->w_off += n;
        if (c->w_off == c->w_len)
            c->w_off = c->w_len = 0;
        c->t_last = now;
        moved = 1;
    }
}

static int conn_has_output(struct sconn *c)
{
    size_t len;
    return c->w_len > 0 || fv_srv_conn_send_buf(c->eng, &len) != NULL;
}

/* Reads and drops what the peer still sends, so that closing does not turn
 * into a reset that could discard our last frames in flight (an ERROR the
 * device must read: a device still uploading chunks when the server's disk
 * fills has megabytes on the way). 1 once the peer has closed its side (or
 * failed), 0 to come back when more arrives or the linger time ends. */
static int conn_drain(struct sconn *c)
{
    size_t total = 0, n;
    int rc;
    if (!c->t_linger) {
        while (total < DRAIN_BYTES &&
               fv_tls_read(c->tls, c->in, sizeof c->in, &n) == FV_OK)
            total += n;
        return 1;
    }
    /* Lingering: our side is shut (the peer reads the ERROR, then the
     * end); what it still sends is dropped unread until it closes. */
    rc = fv_tls_discard(c->tls, DRAIN_BYTES);
    if (rc == FV_OK) {
        c->kick = 1; /* more may be waiting: the next turn goes on */
        return 0;
    }
    return rc != FV_TLS_WANT_READ;
}

/* A PUSH that the engine just paused for its signature checks goes to the
 * pool (or, small or without a pool, is checked here and now). */
static void conn_verify(struct server *S, struct sconn *c)
{
    fv_srv_verify v;
    if (c->vb || !fv_srv_conn_verify_jobs(c->eng, &v))
        return;
    if (S->pool && v.n > VERIFY_INLINE_MAX &&
        fv_vpool_submit(S->pool, &v, c, &c->vb) == FV_OK)
        return;
    for (size_t i = 0; i < v.n; i++)
        v.result[i] = fv_srv_verify_envelope(v.env[i], v.len[i]);
    fv_srv_conn_verify_done(c->eng);
}

/* The PUSHes whose checks the pool finished are stored and answered. */
static void verified(struct server *S)
{
    struct sconn *c;
    while ((c = fv_vpool_take(S->pool)) != NULL) {
        c->vb = NULL;
        fv_srv_conn_verify_done(c->eng);
        c->kick = 1; /* its receipt to send, its input to go on with */
    }
}

/* Drives one connection as far as it goes without blocking. */
static void conn_service(struct server *S, struct sconn *c, int64_t now)
{
    int rc;
    c->kick = 0;
    if (c->phase == PH_HANDSHAKE) {
        unsigned char binding[32];
        int avail = 0;
        /* Bytes waiting: a client at work, not a socket held open (which
         * pre-auth eviction takes first). */
        if (ioctl(fv_tls_fd(c->tls), FIONREAD, &avail) == 0 && avail > 0) {
            c->heard = 1;
            c->t_last = now;
        }
        rc = fv_tls_handshake(c->tls);
        if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
            c->hs_want = rc;
            return;
        }
        if (rc != FV_OK || fv_tls_binding(c->tls, binding) != FV_OK) {
            slog(S, "conn %lu: TLS handshake failed: %s", c->id,
                 fv_strerror(rc ? rc : FV_ETLS));
            c->dead = 1;
            return;
        }
        rc = fv_srv_conn_new(&c->eng, S->srv, binding, c->id);
        fv_wipe(binding, sizeof binding);
        if (rc) {
            slog(S, "conn %lu: %s", c->id, fv_strerror(rc));
            c->dead = 1;
            return;
        }
        c->phase = PH_OPEN;
        c->t_last = now;
    }
    for (int round = 0; round < ROUNDS_PER_WAKE; round++) {
        int progress = 0, state;
        if (c->in_off < c->in_len) {
            /* More may be at hand: chunks stay pending (a durable batch
             * costs an fdatasync) until the input runs dry, below. */
            size_t k = fv_srv_conn_recv_more(c->eng, c->in + c->in_off,
                                             c->in_len - c->in_off);
            conn_verify(S, c);
            if (k) {
                c->in_off += k;
                progress = 1;
            }
            if (c->in_off == c->in_len)
                c->in_off = c->in_len = 0;
            if (!fv_srv_conn_in_frame(c->eng))
                c->t_frame = 0;
            else if (!c->t_frame)
                c->t_frame = now;
        }
        rc = conn_flush(c, now);
        if (rc < 0) {
            slog(S, "conn %lu: closed (write failed)", c->id);
            c->dead = 1;
            return;
        }
        progress |= rc;
        state = fv_srv_conn_state(c->eng);
        if (state == FV_SRV_FAILED) {
            c->dead = 1;
            return;
        }
        if (state == FV_SRV_CLOSING) {
            if (!conn_has_output(c)) {
                /* After BYE the device sends nothing more: close now.
                 * After an ERROR it may still be sending: linger. */
                if (!c->t_linger && fv_srv_conn_error(c->eng)) {
                    c->t_linger = now + LINGER_MS;
                    fv_tls_shutdown(c->tls);
                }
                if (conn_drain(c))
                    c->dead = 2; /* a clean close */
                return;
            }
        } else if (c->in_len == 0) {
            size_t n = 0;
            rc = fv_tls_read(c->tls, c->in, sizeof c->in, &n);
            if (rc == FV_OK) {
                c->in_len = n;
                c->r_want = 0;
                c->t_last = now;
                progress = 1;
            } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
                c->r_want = rc;
            } else {
                slog(S, "conn %lu: closed (%s)", c->id,
                     rc == FV_EEOF ? "by the peer" : fv_strerror(rc));
                c->dead = 1;
                return;
            }
        }
        if (!progress) {
            /* Nothing more to read for now: the chunks received become
             * durable, and their acknowledgements go out (the device may
             * be waiting for them to send more). */
            if (fv_srv_conn_flush(c->eng))
                c->kick = 1;
            return;
        }
    }
    c->kick = 1; /* more to do: come back without waiting */
}

/* After a service: HELLO may have succeeded, buffers may have grown. */
static void conn_settle(struct server *S, struct sconn *c)
{
    if (!c->dead && !c->dev && c->phase == PH_OPEN &&
        fv_srv_conn_authenticated(c->eng))
        conn_authed(S, c);
    account(S, c);
    if (!c->dead)
        enforce_budgets(S, c);
}

static short conn_events(const struct sconn *c)
{
    short ev = 0;
    if (c->phase == PH_HANDSHAKE)
        return c->hs_want == FV_TLS_WANT_WRITE ? POLLOUT : POLLIN;
    if (c->w_len > 0)
        ev |= c->w_want == FV_TLS_WANT_READ ? POLLIN : POLLOUT;
    if (c->in_len == 0 && fv_srv_conn_state(c->eng) == FV_SRV_RUNNING)
        ev |= c->r_want == FV_TLS_WANT_WRITE ? POLLOUT : POLLIN;
    if (c->t_linger)
        ev |= POLLIN;
    return ev;
}

/* Work that needs no event: buffered TLS bytes, input the engine would now
 * take, output not yet handed to TLS. */
static int conn_ready(struct sconn *c)
{
    if (c->kick)
        return 1;
    if (c->phase == PH_HANDSHAKE)
        return 0;
    if (c->in_off < c->in_len && fv_srv_conn_wants_input(c->eng))
        return 1;
    if (c->in_len == 0 && fv_srv_conn_state(c->eng) == FV_SRV_RUNNING &&
        fv_tls_pending(c->tls) > 0)
        return 1;
    if (c->w_len == 0 && conn_has_output(c))
        return 1;
    if (c->t_linger)
        return 0; /* only poll() says when the peer sent more */
    return fv_srv_conn_state(c->eng) != FV_SRV_RUNNING && !conn_has_output(c);
}

/* When the connection runs out of time, and which limit that is. */
static int64_t conn_deadline(const struct server *S, const struct sconn *c,
                             const char **why)
{
    int64_t d = c->t_last + S->idle_ms;
    *why = "idle";
    if (c->t_defer)
        return INT64_MAX; /* waiting on us, not on the peer */
    if (c->t_linger) {
        *why = "done";
        return c->t_linger;
    }
    if (c->phase == PH_HANDSHAKE || !fv_srv_conn_authenticated(c->eng)) {
        if (c->t_start + S->hs_ms < d) {
            d = c->t_start + S->hs_ms;
            *why = "handshake deadline";
        }
    }
    if (c->t_frame && c->t_frame + S->frame_ms < d) {
        d = c->t_frame + S->frame_ms;
        *why = "frame deadline";
    }
    return d;
}

/* Closes the dead and the connections past a deadline; compacts. */
static void reap(struct server *S, int64_t now)
{
    size_t i, j;
    for (i = 0, j = 0; i < S->nconns; i++) {
        struct sconn *c = S->conns[i];
        const char *why;
        if (!c->dead && now >= conn_deadline(S, c, &why)) {
            slog(S, "conn %lu: closed (%s)", c->id, why);
            c->dead = 1;
        }
        if (c->dead) {
            conn_close(S, c, c->dead == 2 ? "done" : NULL);
            continue;
        }
        S->conns[j++] = c;
    }
    S->nconns = j;
}

/* Each connection is a descriptor: the soft limit is raised (never past
 * the hard one) to what max_connections needs. Short of it, accepting
 * meets EMFILE, which the loop survives (out_of_fds). */
static void raise_fd_limit(struct server *S)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)S->max_conn + FD_MARGIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= want)
        return;
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        /* The caps must hold below the limit, or EMFILE would decide who
         * is served: fewer connections, the same shares. */
        unsigned int n = rl.rlim_cur > 2 * FD_MARGIN
                             ? (unsigned int)(rl.rlim_cur - FD_MARGIN)
                             : (unsigned int)(rl.rlim_cur / 2);
        slog(S, "warning: open files are limited to %llu: serving at most "
             "%u connections, not %u", (unsigned long long)rl.rlim_cur,
             n ? n : 1, S->max_conn);
        S->max_conn = n ? n : 1;
    }
}

static int load_engine(struct server *S, const char *dir, const struct paths *p,
                       const char *listen, unsigned int flags)
{
    unsigned char epoch[FV_EPOCH_BYTES], pk[FV_SIGN_PK_BYTES], pin[32];
    unsigned char *sk = fv_secure_alloc(FV_SIGN_SK_BYTES);
    fv_srv_config cfg;
    struct stat sb;
    int rc;

    if (!sk)
        return FV_ENOMEM;
    if ((rc = fv_sstore_meta_get_fixed(S->st, "epoch", epoch, sizeof epoch)) ||
        (rc = fv_sstore_meta_get_fixed(S->st, "receipt_pk", pk, sizeof pk))) {
        rc = rc == FV_ENOTFOUND ? FV_ECORRUPT : rc;
        goto done;
    }
    if ((rc = receipt_key_read(p->receipt, sk)))
        goto done;
    if (stat(p->receipt, &sb) == 0 && (sb.st_mode & 077))
        slog(S, "warning: %s/%s can be read by other users", dir,
             RECEIPT_FILE);
    if (!fv_ct_equal(sk + 32, pk, 32)) {
        slog(S, "the receipt key does not match the database");
        rc = FV_ECORRUPT;
        goto done;
    }
    if ((rc = fv_tls_identity_pin(p->crt, pin)))
        goto done;
    memset(&cfg, 0, sizeof cfg);
    cfg.version = FV_SRV_CONFIG_VERSION;
    cfg.store = S->st;
    cfg.receipt_sk = sk;
    cfg.epoch = epoch;
    cfg.pin = pin;
    cfg.address = listen;
    cfg.env = &S->env;
    cfg.flags = flags;
    rc = fv_srv_new(&S->srv, &cfg);
done:
    fv_secure_free(sk);
    return rc;
}

/* The digest of the certificate in a shared store's meta. */
static int cert_stored_digest(struct server *S, unsigned char out[FV_HASH_BYTES])
{
    unsigned char *v = NULL;
    size_t len = 0;
    int rc = fv_sstore_meta_get(S->st, "tls_crt", &v, &len);
    if (rc == FV_OK)
        fv_hash(out, v, len);
    free(v);
    return rc;
}

/* Makes the listener present the certificate when it changed (renewed by
 * cert_tick, or installed by `server cert` while the server runs): one
 * look every CERT_STAT_MS, at the file's stat() or, for a shared store
 * whose files are not staged, at its meta. A certificate that fails to
 * load is logged, the one in use stays, and it is not retried until it
 * changes again. */
static void cert_reload(struct server *S, const struct paths *p, int64_t now)
{
    unsigned char digest[FV_HASH_BYTES];
    struct paths q;
    struct stat sb;
    int rc;

    S->cert_stat = now + CERT_STAT_MS;
    if (!S->tls)
        return;
    if (fv_sstore_is_pg(p->db) && !p->stage) {
        if (cert_stored_digest(S, digest) != FV_OK ||
            fv_ct_equal(digest, S->cert_digest, sizeof digest))
            return;
        memcpy(S->cert_digest, digest, sizeof digest);
        if ((rc = paths_make(&q, p->db)) == FV_OK) {
            rc = fv_tls_server_reload(S->tls, q.key, q.crt);
            paths_free(&q);
        }
    } else {
        if (stat(p->crt, &sb) != 0)
            return;
        if (sb.st_ino == S->cert_sb.st_ino &&
            sb.st_size == S->cert_sb.st_size &&
            sb.st_mtim.tv_sec == S->cert_sb.st_mtim.tv_sec &&
            sb.st_mtim.tv_nsec == S->cert_sb.st_mtim.tv_nsec)
            return;
        S->cert_sb = sb;
        rc = fv_tls_server_reload(S->tls, p->key, p->crt);
    }
    if (rc)
        slog(S, "cannot load the new certificate: %s", fv_strerror(rc));
    else
        slog(S, "certificate loaded");
}

/* Re-issues the self-signed certificate when it nears its end (hourly),
 * into the shared store too when there is one (staging its files for the
 * moment it takes). A failure is logged; the certificate in use stays. */
static void cert_tick(struct server *S, const struct paths *p, int64_t now)
{
    static const char *const crt[] = {CRT_FILE, NULL};
    const struct paths *use = p;
    struct paths q;
    int renewed = 0, rc = FV_OK;

    S->cert_check = now + CERT_CHECK_MS;
    if (fv_sstore_is_pg(p->db) && !p->stage) {
        rc = paths_make(&q, p->db);
        use = &q;
    }
    if (rc == FV_OK)
        rc = fv_tls_cert_renew(use->key, use->crt, S->cert_host,
                               (int64_t)time(NULL), &renewed);
    if (rc == FV_OK && renewed && use->stage)
        rc = fv_stage_save(S->st, use->stage, crt);
    if (use == &q)
        paths_free(&q);
    if (rc)
        slog(S, "cannot renew the certificate: %s", fv_strerror(rc));
    else if (renewed)
        slog(S, "certificate renewed (same key)");
    cert_reload(S, p, now);
}

int fv_server_run(const char *dir, const fv_server_options *opts)
{
    fv_server_options defaults = FV_SERVER_OPTIONS_INIT;
    struct server S;
    struct paths p;
    char stored[256], host[256], port[6];
    const char *listen;
    long threads = FV_SERVER_VERIFY_AUTO;
    int rc;

    if (!opts)
        opts = &defaults;
    if (!dir || opts->version < 1 || opts->version > FV_SERVER_OPTIONS_VERSION)
        return FV_EINVAL;
    /* Version 1 options end before verify_threads. */
    if (opts->version >= 2)
        threads = opts->verify_threads;
    if (threads < FV_SERVER_VERIFY_AUTO || threads > FV_SERVER_VERIFY_MAX)
        return FV_EINVAL;
    if (threads == FV_SERVER_VERIFY_AUTO) {
        threads = sysconf(_SC_NPROCESSORS_ONLN);
        if (threads < 1)
            threads = 1;
        if (threads > FV_SERVER_VERIFY_MAX)
            threads = FV_SERVER_VERIFY_MAX;
    }
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    memset(&S, 0, sizeof S);
    S.o = opts;
    S.max_conn =
        opts->max_connections ? opts->max_connections : DEFAULT_MAX_CONN;
    S.hs_ms = opts->handshake_ms ? opts->handshake_ms : DEFAULT_HANDSHAKE_MS;
    S.idle_ms = opts->idle_ms ? opts->idle_ms : DEFAULT_IDLE_MS;
    S.frame_ms = opts->frame_ms ? opts->frame_ms : DEFAULT_FRAME_MS;
    S.per_addr = opts->max_per_address ? opts->max_per_address
                                       : DEFAULT_PER_ADDRESS;
    S.per_dev =
        opts->max_per_device ? opts->max_per_device : DEFAULT_PER_DEVICE;
    S.budget = (size_t)(opts->memory_mib ? opts->memory_mib
                                         : DEFAULT_BUDGET_MIB) << 20;
    S.env.random = engine_random;
    S.env.log = opts->log ? opts->log : default_log;
    S.env.log_payload = opts->log ? opts->log_payload : NULL;
    S.env.now = (int64_t)time(NULL);
    S.reserve_fd = -1;
    if (S.max_conn > 65536 || opts->memory_mib > 65536 ||
        (opts->memory_mib && opts->memory_mib < MIN_BUDGET_MIB))
        return FV_EINVAL;
    /* One device may hold a quarter of the budget, one address half. */
    S.dev_budget = S.budget / 4;
    S.addr_budget = S.budget / 2;
    if ((rc = paths_make(&p, dir)))
        return rc;
    if ((rc = open_server_store(&S.st, dir, &p, stored)))
        goto done;
    listen = opts->listen ? opts->listen : stored;
    if (parse_addr(listen, host, port)) {
        rc = FV_EINVAL;
        goto done;
    }
    /* Invites carry the address given at init: a listen override (say,
     * port 0 in a test) is where we bind, not where devices are sent. */
    if (threads > 0 && (rc = fv_vpool_new(&S.pool, (unsigned int)threads)))
        goto done;
    if ((rc = load_engine(&S, dir, &p, stored,
                          S.pool ? FV_SRV_VERIFY_DEFERRED : 0)))
        goto done;
    S.conns = calloc(S.max_conn, sizeof *S.conns);
    /* The listener, the connections, the pool's descriptor. */
    S.pfds = calloc((size_t)S.max_conn + 2, sizeof *S.pfds);
    S.ngroups = 2 * (size_t)S.max_conn + 2;
    S.groups = calloc(S.ngroups, sizeof *S.groups);
    if (!S.conns || !S.pfds || !S.groups) {
        rc = FV_ENOMEM;
        goto done;
    }
    raise_fd_limit(&S);
    if (S.per_addr > S.max_conn)
        S.per_addr = S.max_conn;
    /* Before HELLO, a quarter of the slots in all and half of those from
     * one address: the rest stays for devices that authenticated. */
    S.max_pre = S.max_conn / 4 ? S.max_conn / 4 : 1;
    S.pre_per_addr = S.max_pre / 2 ? S.max_pre / 2 : 1;
    if (S.pre_per_addr > S.per_addr)
        S.pre_per_addr = S.per_addr;
    S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    {
        char shost[256], sport[6];
        /* The name devices were sent to (the address given at init). */
        if (!parse_addr(stored, shost, sport) && fv_tls_hostname_ok(shost))
            S.cert_host = strdup(shost);
    }
    cert_tick(&S, &p, mono_ms());
    if (stat(p.crt, &S.cert_sb) != 0)
        memset(&S.cert_sb, 0, sizeof S.cert_sb);
    if ((rc = fv_tls_listen(&S.tls, host, port, p.key, p.crt))) {
        slog(&S, "cannot listen on %s: %s", listen, fv_strerror(rc));
        goto done;
    }
    if (p.stage) {
        /* The key and certificate are loaded: the staged copies go now,
         * and cert_reload watches the store's meta instead. */
        if (cert_stored_digest(&S, S.cert_digest) != FV_OK)
            memset(S.cert_digest, 0, sizeof S.cert_digest);
        fv_stage_close(p.stage);
        p.stage = NULL;
    }
    if (!opts->ready) /* the ready callback reports it otherwise */
        slog(&S, "listening on %s port %d", host, fv_tls_server_port(S.tls));
    if (opts->ready)
        opts->ready(host, fv_tls_server_port(S.tls), opts->ready_payload);

    while (!(opts->stop && atomic_load(opts->stop))) {
        int64_t now = mono_ms(), deadline = now + TICK_MS;
        size_t n = S.nconns, i;
        int timeout, ready = 0;
        unsigned hs_turns;

        S.pfds[0].fd = now >= S.accept_resume ? fv_tls_server_fd(S.tls) : -1;
        S.pfds[0].events = POLLIN;
        S.pfds[0].revents = 0;
        for (i = 0; i < n; i++) {
            struct sconn *c = S.conns[i];
            const char *why;
            int64_t d = conn_deadline(&S, c, &why);
            S.pfds[i + 1].fd = fv_tls_fd(c->tls);
            S.pfds[i + 1].events = conn_events(c);
            S.pfds[i + 1].revents = 0;
            if (d < deadline)
                deadline = d;
            if (conn_ready(c))
                ready = 1;
        }
        if (S.accept_resume > now && S.accept_resume < deadline)
            deadline = S.accept_resume;
        S.pfds[n + 1].fd = S.pool ? fv_vpool_fd(S.pool) : -1;
        S.pfds[n + 1].events = POLLIN;
        S.pfds[n + 1].revents = 0;
        timeout = ready ? 0 : (int)(deadline > now ? deadline - now : 0);
        if (poll(S.pfds, n + 2, timeout) < 0 && errno != EINTR) {
            slog(&S, "poll failed");
            rc = FV_EIO;
            break;
        }
        if (S.pfds[n + 1].revents)
            verified(&S);
        now = mono_ms();
        S.env.now = (int64_t)time(NULL);
        if (now >= S.cert_check)
            cert_tick(&S, &p, now);
        else if (now >= S.cert_stat)
            cert_reload(&S, &p, now);
        hs_turns = HANDSHAKES_PER_WAKE;
        for (i = 0; i < n; i++) {
            struct sconn *c = S.conns[i];
            if (c->dead || !(S.pfds[i + 1].revents || conn_ready(c)))
                continue;
            if (c->phase == PH_HANDSHAKE && has_input(c)) {
                /* A step with the peer's bytes at hand (the costly kind:
                 * without, it only finds nothing to read). Oldest first
                 * (conns is in accepting order): a device half-way
                 * through its handshake finishes before new ones start. */
                if (!hs_turns) {
                    if (!c->t_defer)
                        c->t_defer = now;
                    c->kick = 1;
                    continue;
                }
                hs_turns--;
                if (c->t_defer) {
                    /* The wait was ours: the peer's clocks resume. */
                    c->t_start += now - c->t_defer;
                    c->t_last += now - c->t_defer;
                    c->t_defer = 0;
                }
            }
            conn_service(&S, c, now);
            conn_settle(&S, c);
        }
        /* Reap before accepting, so that the dead do not count against
         * the limit. The new ones are served from the next wake on. */
        reap(&S, now);
        if (S.pfds[0].revents & POLLIN)
            accept_some(&S, now);
        log_evictions(&S, now, 0);
    }
    log_evictions(&S, 0, 1);
    slog(&S, "stopped");
done:
    for (size_t i = 0; i < S.nconns; i++)
        conn_close(&S, S.conns[i], NULL);
    if (S.reserve_fd >= 0)
        close(S.reserve_fd);
    free(S.groups);
    fv_tls_server_close(S.tls);
    fv_vpool_free(S.pool);
    fv_srv_free(S.srv);
    if (S.st)
        fv_sstore_checkpoint(S.st);
    fv_sstore_close(S.st);
    free(S.conns);
    free(S.pfds);
    free(S.cert_host);
    paths_free(&p);
    return rc;
}

/* ---- courier bundles ------------------------------------------------- */

struct importer {
    fv_srv *srv;
    fv_bundle_stats st;
};

static int import_batch(const unsigned char *const *env, const size_t *len,
                        size_t n, void *payload)
{
    struct importer *im = payload;
    size_t added = 0;
    /* Author NULL: each envelope's own, in runs of the same author; the
     * batch is stored whole or not at all. */
    int rc = fv_srv_store_batch(im->srv, NULL, env, len, n, NULL, &added);
    if (rc == FV_OK) {
        im->st.envelopes += n;
        im->st.added += added;
    }
    return rc;
}

static int import_chunk(const unsigned char *hash, const unsigned char *data,
                        size_t len, void *payload)
{
    struct importer *im = payload;
    int added = 0;
    /* Stored as a CHUNK-PUT is: the device's next sync finds it held. */
    int rc = fv_srv_store_chunk(im->srv, hash, data, len, &added);
    if (rc == FV_EPROTO)
        im->st.chunks_refused++;
    else if (rc == FV_ENOTFOUND)
        im->st.chunks_unlisted++;
    else if (rc)
        return rc;
    im->st.chunks++;
    im->st.chunk_bytes += len;
    im->st.chunks_added += (uint64_t)added;
    return FV_OK;
}

int fv_server_import(const char *dir, const char *path, uint64_t *count,
                     uint64_t *added)
{
    fv_bundle_stats st;
    int rc = fv_server_import_with(dir, path, &st, NULL);
    if (count)
        *count = st.envelopes;
    if (added)
        *added = st.added;
    return rc;
}

int fv_server_import_with(const char *dir, const char *path,
                          fv_bundle_stats *stats, const char **why)
{
    struct server S;
    struct importer im;
    struct paths p;
    char stored[256];
    int rc;

    if (stats)
        memset(stats, 0, sizeof *stats);
    if (why)
        *why = NULL;
    if (!dir || !path)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    memset(&S, 0, sizeof S);
    memset(&im, 0, sizeof im);
    S.env.random = engine_random;
    S.env.now = (int64_t)time(NULL);
    if ((rc = paths_make(&p, dir)))
        return rc;
    /* Opened as fv_server_run opens it; a running server's own connection
     * takes turns with this one (WAL, BEGIN IMMEDIATE, busy timeout). */
    if ((rc = open_server_store(&S.st, dir, &p, stored)) ||
        (rc = load_engine(&S, dir, &p, stored, 0)))
        goto done;
    im.srv = S.srv;
    rc = fv_bundle_read(path, import_batch, import_chunk, &im, why);
    im.st.truncated = why && *why == fv_bundle_cut_short;
    /* Tampered chunks are left out, the rest stored: then said as damage. */
    if (rc == FV_OK && im.st.chunks_refused)
        rc = FV_ECORRUPT;
    if (stats)
        *stats = im.st;
done:
    fv_srv_free(S.srv);
    fv_sstore_close(S.st);
    paths_free(&p);
    return rc;
}
