/* session.c - the blocking driver of a sync: one TLS connection, the client
 * engine (client.c) fed from it, the public calls of fieldvault_sync.h.
 *
 * Cancelling a session from another thread (or a signal handler): the
 * session owns a self-pipe. fv_sync_session_cancel sets an atomic flag and
 * then writes one byte to the pipe; every wait of a run (connect, the TLS
 * handshake, each poll for data) also polls the pipe's read end, so it
 * wakes at once. The flag is what decides; the byte only wakes. A run that
 * stops on the flag clears it and drains the pipe, and every run drains
 * stale bytes before it looks at the flag. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "call.h"
#include "client.h"
#include "crypto.h"
#include "proxy.h"
#include "result.h"
#include "fieldvault_sync.h"
#include "textparse.h"
#include "tls.h"
#include "vault_sync.h"
#include "wpool.h"

#define READ_CHUNK (64 * 1024)
/* Progress that resets the stall timer: a whole frame from the server, or
 * this many bytes moved either way since the last reset. Single bytes do
 * not count: a server that drips one byte every two seconds (inside TLS
 * records, or below them) never makes progress and is cut after the
 * timeout, while any link steadier than PROGRESS_BYTES per timeout (4 KiB
 * in 30 s by default: 137 bytes a second) keeps a long transfer going. */
#define PROGRESS_BYTES 4096
/* Records written between two looks for input while the output flows. */
#define READ_EVERY 16

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The caller's options as the current version, whichever version its
 * header had: a version-1 struct ends before `proxy`, so it is read field
 * by field. FV_EINVAL for a version this library does not know. */
static int options_get(fv_sync_options *out, const fv_sync_options *o)
{
    fv_sync_options defaults = FV_SYNC_OPTIONS_INIT;
    *out = defaults;
    if (!o)
        return FV_OK;
    if (o->version != 1 && o->version != FV_SYNC_OPTIONS_VERSION)
        return FV_EINVAL;
    out->server = o->server;
    out->timeout_ms = o->timeout_ms;
    out->progress = o->progress;
    out->progress_payload = o->progress_payload;
    if (o->version >= 2)
        out->proxy = o->proxy;
    return FV_OK;
}

struct fv_sync_session {
    fv_vault *v;          /* borrowed */
    fv_sync_options o;    /* a copy; o.server and o.proxy point at the copies */
    char *server;         /* malloc'd copy of options->server, or NULL */
    char *proxy;          /* copy of options->proxy (sodium-free: wiped) */
    atomic_int cancel;    /* a stop was asked and not yet used up */
    int wake[2];          /* self-pipe: [0] polled by the run, [1] written */
};

/* fv_sync_session_cancel is async-signal-safe only if this is lock-free. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");

/* Empties the wake pipe (non-blocking). */
static void drain_wake(fv_sync_session *s)
{
    char junk[64];
    while (read(s->wake[0], junk, sizeof junk) > 0)
        ;
}

struct run {
    uint64_t upload; /* bytes to send, as the sync began */
    fv_sync_session *s; /* NULL: not cancellable from outside */
    fv_vault *v;
    fv_client *c;
    fv_tls_conn *tls;
    const fv_sync_options *o;
    fv_sync_result res;
    fv_wpool *pool; /* checks pulled signatures; started at the first batch */
    int no_pool;    /* one core, or the pool could not start */
};

/* ---- the checks of pulled envelopes, on the worker pool --------------- */

#define CHECK_SLICE 16 /* envelopes a thread takes at once (about a ms) */

struct checks {
    const fv_vault *v;
    const unsigned char *const *env;
    const size_t *len;
    fv_vs_checked *out;
};

static void check_slice(void *ctx, size_t from, size_t to)
{
    struct checks *k = ctx;
    for (size_t i = from; i < to; i++)
        fv_vs_check(k->v, k->env[i], k->len[i], &k->out[i]);
}

/* The engine's checker (fv_client_set_checker): the pool's threads and
 * this one share the batch. The pool starts with the first batch worth it,
 * so a sync with nothing to pull starts no thread; without one (one core,
 * or no thread could start) this thread checks alone. */
static void run_checks(const fv_vault *v, const unsigned char *const *env,
                       const size_t *len, fv_vs_checked *out, size_t n,
                       void *payload)
{
    struct run *r = payload;
    struct checks k = {v, env, len, out};
    if (!r->pool && !r->no_pool && n > 1) {
        unsigned int t = fv_wpool_threads();
        if (!t || fv_wpool_new(&r->pool, t, 0) != FV_OK)
            r->no_pool = 1;
    }
    if (fv_wpool_run(r->pool, check_slice, &k, n, CHECK_SLICE) != FV_OK)
        check_slice(&k, 0, n);
}

static int progress(struct run *r)
{
    uint64_t done = r->res.bytes_sent + r->res.bytes_received, total;
    if (!r->o->progress)
        return 0;
    /* Bytes on the wire each way stand for the work done. Ahead: what the
     * vault had to send when the sync began (known), and whatever the
     * server sends (not known until it comes). */
    total = r->upload + r->res.bytes_received;
    if (total < done + fv_client_pending_bytes(r->c))
        total = done + fv_client_pending_bytes(r->c);
    return r->o->progress(done, total, r->o->progress_payload);
}

static int stop_asked(const struct run *r)
{
    return r->s && atomic_load(&r->s->cancel);
}

/* Moves bytes between the TLS connection and the engine until the engine is
 * done or fails, the connection makes no progress (PROGRESS_BYTES) for
 * timeout_ms, or the caller cancels (progress callback or
 * fv_sync_session_cancel). */
static int pump(struct run *r, int timeout_ms)
{
    unsigned char *buf = malloc(READ_CHUNK);
    int64_t last = now_ms();
    uint64_t mark_bytes = 0, mark_frames = 0;
    int wrote_since_read = 0, writes_unread = 0, rc = FV_OK;

    if (!buf)
        return FV_ENOMEM;
    while (rc == FV_OK && !fv_client_done(r->c)) {
        size_t len, n;
        const unsigned char *out = fv_client_pending(r->c, &len);
        short events = POLLIN;
        int moved = 0, wrc = FV_OK;

        if ((rc = fv_client_status(r->c)))
            break;
        if (stop_asked(r)) {
            rc = FV_ECANCELED;
            break;
        }
        if (len > 0) {
            wrc = fv_tls_write(r->tls, out, len, &n);
            if (wrc == FV_OK) {
                fv_client_ack(r->c, n);
                r->res.bytes_sent += n;
                wrote_since_read = moved = 1;
            } else if (wrc == FV_TLS_WANT_WRITE) {
                events |= POLLOUT;
            } else if (wrc != FV_TLS_WANT_READ) {
                rc = wrc;
                break;
            }
        }
        /* While writes go through, look for input only every few records:
         * the answers (CHUNK-ACKs) are not urgent, and a read that finds
         * nothing is a system call per record for nothing. */
        if (wrc != FV_OK || len == 0 || ++writes_unread >= READ_EVERY) {
            writes_unread = 0;
            for (;;) {
                int rrc = fv_tls_read(r->tls, buf, READ_CHUNK, &n);
                if (rrc == FV_OK) {
                    if (wrote_since_read) {
                        r->res.roundtrips++;
                        wrote_since_read = 0;
                    }
                    r->res.bytes_received += n;
                    moved = 1;
                    if ((rc = fv_client_recv(r->c, buf, n)))
                        break;
                    if (progress(r) || stop_asked(r)) {
                        rc = FV_ECANCELED;
                        break;
                    }
                    continue;
                }
                if (rrc == FV_TLS_WANT_WRITE)
                    events |= POLLOUT;
                else if (rrc == FV_EEOF)
                    rc = fv_client_done(r->c) ? FV_OK : FV_ENET;
                else if (rrc != FV_TLS_WANT_READ)
                    rc = rrc;
                break;
            }
        }
        if (rc || fv_client_done(r->c))
            break;
        if (moved) {
            uint64_t bytes = r->res.bytes_sent + r->res.bytes_received;
            uint64_t frames = fv_client_get_stats(r->c)->frames_received;
            if (frames != mark_frames || bytes - mark_bytes >= PROGRESS_BYTES) {
                last = now_ms();
                mark_bytes = bytes;
                mark_frames = frames;
            }
        }
        if (now_ms() - last > timeout_ms) {
            rc = FV_ENET;
            break;
        }
        if (moved)
            continue;
        {
            struct pollfd p[2] = {{fv_tls_fd(r->tls), events, 0},
                                  {r->s ? r->s->wake[0] : -1, POLLIN, 0}};
            if (fv_client_pending(r->c, &len) && len > 0)
                p[0].events |= POLLOUT;
            if (poll(p, r->s ? 2 : 1, 200) > 0 && p[1].revents &&
                !stop_asked(r))
                drain_wake(r->s); /* stale: its request was used up */
            if (stop_asked(r)) {
                rc = FV_ECANCELED;
                break;
            }
        }
        /* Also between bytes: a caller can cancel a stalled link. */
        if (progress(r)) {
            rc = FV_ECANCELED;
            break;
        }
    }
    free(buf);
    if (rc == FV_OK)
        rc = fv_client_status(r->c);
    return rc;
}

static const char *net_message(int rc)
{
    switch (rc) {
    case FV_EPIN: return "the server's key does not match the pinned key: refused before sending anything";
    case FV_ETLS: return "the TLS handshake with the server failed";
    case FV_ENET: return "cannot reach the server, or the connection was cut or stalled";
    case FV_ECANCELED: return "canceled";
    default: return fv_strerror(rc);
    }
}

/* The proxy a connection goes through: options->proxy, else the vault's
 * remembered one; "none" is a direct connection. 1 with *p filled (the
 * caller wipes it), 0 for none, or an FV_E code. */
static int proxy_choose(fv_vault *v, const char *url, fv_proxy *p)
{
    char stored[FV_VS_PROXY_BYTES], msg[200];
    const char *why = "";
    int rc;

    memset(p, 0, sizeof *p);
    if (!url) {
        rc = fv_vs_proxy_get(v, stored);
        if (rc == FV_ENOTFOUND)
            return 0;
        if (rc)
            return rc;
        url = stored;
    }
    if (strcmp(url, "none") == 0) {
        rc = 0;
    } else if (fv_proxy_parse(p, url, &why) == FV_OK) {
        rc = 1;
    } else {
        snprintf(msg, sizeof msg, "the proxy URL is not valid: %s", why);
        rc = fv_vs_fail(v, FV_EINVAL, msg);
    }
    if (url == stored)
        fv_wipe(stored, sizeof stored);
    return rc;
}

/* 1 if host is a Tor onion name ("....onion", any case, a final dot
 * allowed). */
static int is_onion(const char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    return n >= 6 && strncasecmp(host + n - 6, ".onion", 6) == 0;
}

/* A connect failure's message: the proxy's own words when it said any. */
static int connect_fail(fv_vault *v, int rc, const fv_proxy *p, int use,
                        const char *why)
{
    char name[300], msg[600];
    if (!use)
        return fv_vs_fail(v, rc, net_message(rc));
    fv_proxy_name(p, name, sizeof name);
    if (rc == FV_ECANCELED || rc == FV_EPIN || rc == FV_ETLS)
        return fv_vs_fail(v, rc, net_message(rc));
    if (why[0])
        snprintf(msg, sizeof msg, "proxy %s: %s", name, why);
    else
        snprintf(msg, sizeof msg,
                 "%s, through the proxy %s", net_message(rc), name);
    return fv_vs_fail(v, rc, msg);
}

#define CONNECT_BACKOFF_MS 250       /* the first wait before trying again */
#define CONNECT_BACKOFF_MAX_MS 8000  /* the waits double up to this */

/* Connects (TCP, the proxy if any, TLS) as fv_tls_connect_proxy does, and
 * tries again when that fails as a flaky link or a busy server fails
 * (FV_ENET: refused, unreachable, timed out, cut during the handshake):
 * after a wait that doubles from CONNECT_BACKOFF_MS up to
 * CONNECT_BACKOFF_MAX_MS, each drawn at random between half and all of it
 * so that devices turned away together do not come back together, for as
 * long as `timeout_ms` from the first try allows. Nothing of the request
 * is sent before the handshake ends, so a try repeats nothing. A cancel
 * (fv_sync_session_cancel, or the progress callback) ends the wait with
 * FV_ECANCELED; a pin, TLS or proxy failure is returned at once. */
static int connect_retry(struct run *r, const char *host, const char *port,
                         const unsigned char pin[32], int timeout_ms,
                         const fv_proxy *px, char *why, size_t whycap)
{
    int64_t deadline = now_ms() + timeout_ms, left = timeout_ms;
    unsigned int backoff = CONNECT_BACKOFF_MS;
    int wake = r->s ? r->s->wake[0] : -1;
    for (;;) {
        uint32_t rnd;
        int64_t until;
        int rc = fv_tls_connect_proxy(&r->tls, host, port, pin, (int)left,
                                      wake, px, why, whycap);
        if (rc != FV_ENET)
            return rc;
        fv_random(&rnd, sizeof rnd);
        until = now_ms() + backoff / 2 + rnd % (backoff / 2 + 1);
        /* A try needs time of its own: not one that would start at the
         * deadline. */
        if (until + CONNECT_BACKOFF_MS >= deadline)
            return rc;
        while (now_ms() < until) {
            struct pollfd p = {wake, POLLIN, 0};
            int64_t wait = until - now_ms();
            if (poll(&p, wake >= 0 ? 1 : 0, wait > 0 ? (int)wait : 0) > 0 &&
                !stop_asked(r))
                drain_wake(r->s); /* stale: its request was used up */
            if (stop_asked(r) || progress(r))
                return FV_ECANCELED;
        }
        if (backoff < CONNECT_BACKOFF_MAX_MS)
            backoff *= 2;
        left = deadline - now_ms();
    }
}

/* One connection: connect, run the request, close. */
static int run_request(fv_vault *v, const fv_client_request *req,
                       const fv_sync_options *o, const char *address,
                       const unsigned char pin[32], fv_sync_result *res,
                       char **invite_text, fv_sync_session *sess)
{
    fv_sync_options opts;
    struct run r;
    unsigned char peer_pin[32], binding[32];
    char host[FV_ADDR_HOST_MAX + 1], port[6], why[256];
    const char *bad;
    fv_proxy px;
    int rc, timeout, use_proxy, lock = -1;

    memset(&r, 0, sizeof r);
    memset(&px, 0, sizeof px);
    r.v = v;
    r.s = sess;
    if (options_get(&opts, o))
        return fv_vs_fail(v, FV_EINVAL, "unknown version of the sync options");
    r.o = &opts;
    timeout = r.o->timeout_ms > 0 ? r.o->timeout_ms : 30000;
    if (fv_addr_parse(address, 0, host, port, &bad)) {
        snprintf(why, sizeof why, "the server address is not HOST:PORT or "
                 "[IPV6]:PORT: %s", bad);
        return fv_vs_fail(v, FV_EINVAL, why);
    }
    if ((use_proxy = proxy_choose(v, opts.proxy, &px)) < 0)
        return use_proxy;
    /* A .onion name resolves nowhere but inside Tor: looked up by the
     * device it would only leak to the local resolver. */
    if (is_onion(host) && (!use_proxy || px.type == FV_PROXY_SOCKS5)) {
        fv_proxy_wipe(&px);
        return fv_vs_fail(v, FV_EINVAL,
                          "the server is a .onion address: connect through "
                          "Tor with --proxy socks5h://127.0.0.1:9050");
    }
    /* One exchange per vault at a time: two syncs would both send the
     * same outbox and attachments, and the server store them twice. */
    if ((rc = fv_vs_lock(v, &lock))) {
        fv_proxy_wipe(&px);
        return rc;
    }
    if (req->op == FV_CLIENT_SYNC && fv_vs_pending_upload(v, &r.upload))
        r.upload = 0; /* progress only */
    if ((rc = fv_client_new(&r.c, v, req))) {
        fv_vs_unlock(lock);
        fv_proxy_wipe(&px);
        return rc == FV_EEXIST
                   ? fv_vs_fail(v, rc, "this vault is already enrolled")
                   : rc;
    }
    rc = connect_retry(&r, host, port, pin, timeout, use_proxy ? &px : NULL,
                       why, sizeof why);
    if (rc) {
        fv_client_free(r.c);
        fv_vs_unlock(lock);
        rc = connect_fail(v, rc, &px, use_proxy, why);
        fv_proxy_wipe(&px);
        return rc;
    }
    fv_proxy_wipe(&px);
    fv_client_set_checker(r.c, run_checks, &r);
    if ((rc = fv_tls_peer_pin(r.tls, peer_pin)) == FV_OK &&
        (rc = fv_tls_binding(r.tls, binding)) == FV_OK &&
        (rc = fv_client_start(r.c, peer_pin, binding)) == FV_OK)
        rc = pump(&r, timeout);
    if (rc && (r.res.rollback = fv_client_rollback(r.c)) != 0) {
        /* The server lost part of its log, or shows another: everything
         * of ours goes back to the outbox and the feed is read again from
         * its start, under the same lock (run_enrolled runs it). */
        fv_sync_state st;
        char msg[300];
        int rrc = fv_vs_state_get(v, &st);
        if (rrc == FV_OK) {
            fv_client_forget(&st);
            rrc = fv_vs_reset(v, &st);
        }
        fv_wipe(&st, sizeof st);
        snprintf(msg, sizeof msg, "%s%s", fv_client_errmsg(r.c),
                 rrc ? " (and this device could not start over)" : "");
        fv_vs_fail(v, rrc ? rrc : rc, msg);
        if (rrc) {
            rc = rrc;
            r.res.rollback = 0;
        }
    } else if (rc) {
        if (fv_client_status(r.c))
            fv_vs_fail(v, rc, fv_client_errmsg(r.c));
        else
            fv_vs_fail(v, rc, net_message(rc));
    } else {
        const fv_client_stats *s = fv_client_get_stats(r.c);
        r.res.pushed = s->pushed;
        r.res.pulled = s->pulled;
        r.res.added = s->added;
        r.res.role = s->role;
        r.res.conflicts = s->conflicts;
        r.res.chunks_sent = s->chunks_sent;
        r.res.chunks_received = s->chunks_received;
        r.res.chunks_unavailable = s->chunks_unavailable;
        r.res.chunks_rejected = s->chunks_rejected;
        r.res.refused = s->refused;
        r.res.rejected = s->rejected;
        if (req->op == FV_CLIENT_SYNC)
            rc = fv_vs_apply_retention(v, &r.res.dropped);
        if (invite_text && fv_client_invite_text(r.c)) {
            *invite_text = strdup(fv_client_invite_text(r.c));
            if (!*invite_text)
                rc = fv_vs_fail(v, FV_ENOMEM, "out of memory");
        }
    }
    fv_tls_close(r.tls);
    fv_client_free(r.c);
    fv_wpool_free(r.pool);
    fv_vs_unlock(lock);
    if (res)
        *res = r.res;
    return rc;
}

/* Runs a request against the server this vault is enrolled with. */
static int run_enrolled(fv_vault *v, const fv_client_request *req,
                        const fv_sync_options *o, fv_sync_result *res,
                        char **invite_text, fv_sync_session *s)
{
    fv_sync_state st;
    int rc = fv_vs_state_get(v, &st);
    if (rc)
        return rc;
    const char *address = o && o->server ? o->server : st.server;
    fv_sync_result local;

    if (!res)
        res = &local;
    rc = run_request(v, req, o, address, st.pin, res, invite_text, s);
    /* A rollback: the vault has started over (run_request); sync again at
     * once, once, and say so in the result. A server that refuses the
     * fresh start too gets its error. */
    if (rc && res->rollback && req->op == FV_CLIENT_SYNC) {
        int why = res->rollback;
        rc = run_request(v, req, o, address, st.pin, res, invite_text, s);
        if (rc == FV_OK || !res->rollback)
            res->rollback = why;
    }
    fv_wipe(&st, sizeof st);
    return rc;
}

static int sync_session_new(fv_sync_session **out, fv_vault *v,
                            const fv_sync_options *o)
{
    fv_sync_options opts;
    fv_sync_session *s;
    int i;

    if (!out)
        return FV_EINVAL;
    *out = NULL;
    if (!v)
        return FV_EINVAL;
    if (options_get(&opts, o))
        return fv_vs_fail(v, FV_EINVAL,
                          "unknown version of the sync options");
    s = calloc(1, sizeof *s);
    if (!s)
        return fv_vs_fail(v, FV_ENOMEM, "out of memory");
    s->v = v;
    s->o = opts;
    atomic_init(&s->cancel, 0);
    s->wake[0] = s->wake[1] = -1;
    if ((s->o.server && !(s->server = strdup(s->o.server))) ||
        (s->o.proxy && !(s->proxy = strdup(s->o.proxy)))) {
        fv_sync_session_free(s);
        return fv_vs_fail(v, FV_ENOMEM, "out of memory");
    }
    s->o.server = s->server;
    s->o.proxy = s->proxy;
    /* Both ends non-blocking: cancel never blocks on a full pipe (a full
     * pipe already wakes the run), and draining stops when it is empty. */
    if (pipe(s->wake) != 0) {
        fv_sync_session_free(s);
        return fv_vs_fail(v, FV_ENOMEM, "cannot create the session's wake pipe");
    }
    for (i = 0; i < 2; i++) {
        int fl = fcntl(s->wake[i], F_GETFL);
        if (fl < 0 || fcntl(s->wake[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(s->wake[i], F_SETFD, FD_CLOEXEC) < 0) {
            fv_sync_session_free(s);
            return fv_vs_fail(v, FV_EIO, "cannot set up the session's wake pipe");
        }
    }
    *out = s;
    return FV_OK;
}

static int sync_session_run(fv_sync_session *s, fv_sync_result *res)
{
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    fv_sync_result full;
    int rc;

    if (!s)
        return FV_EINVAL;
    if (res && !fv_result_ok(res, FV_RESULT_MIN(fv_sync_result, rejected)))
        return fv_vs_fail(s->v, FV_EINVAL, "the fv_sync_result's size is not "
                          "set: start from FV_SYNC_RESULT_INIT");
    memset(&full, 0, sizeof full);
    full.size = sizeof full;
    /* Drained before the flag is read: a cancel that lands in between
     * leaves its byte in the pipe, so no wake-up is lost. */
    drain_wake(s);
    if (atomic_load(&s->cancel))
        rc = fv_vs_fail(s->v, FV_ECANCELED, net_message(FV_ECANCELED));
    else
        rc = run_enrolled(s->v, &req, &s->o, &full, NULL, s);
    if (rc == FV_ECANCELED && atomic_exchange(&s->cancel, 0))
        drain_wake(s);
    if (res)
        fv_result_put(res, &full, sizeof full);
    return rc;
}

void fv_sync_session_cancel(fv_sync_session *s)
{
    int saved = errno; /* a signal handler must leave errno as it was */
    ssize_t n;

    if (!s)
        return;
    /* The flag first: whoever is woken by the byte finds it set. */
    atomic_store(&s->cancel, 1);
    do
        n = write(s->wake[1], "", 1);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full, which wakes the run as well. */
    errno = saved;
}

void fv_sync_session_free(fv_sync_session *s)
{
    if (!s)
        return;
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    free(s->server);
    if (s->proxy) {
        fv_wipe(s->proxy, strlen(s->proxy));
        free(s->proxy);
    }
    free(s);
}

static int vault_set_proxy(fv_vault *v, const char *url)
{
    fv_proxy p;
    const char *why = "";
    char msg[200];
    int rc;

    if (!v)
        return FV_EINVAL;
    if (!url || strcmp(url, "none") == 0)
        return fv_vs_proxy_put(v, NULL);
    rc = fv_proxy_parse(&p, url, &why);
    fv_proxy_wipe(&p);
    if (rc) {
        snprintf(msg, sizeof msg, "the proxy URL is not valid: %s", why);
        return fv_vs_fail(v, FV_EINVAL, msg);
    }
    return fv_vs_proxy_put(v, url);
}

static int vault_get_proxy(fv_vault *v, char **url, int *has_credentials)
{
    char stored[FV_VS_PROXY_BYTES], name[300];
    fv_proxy p;
    int rc;

    if (url)
        *url = NULL;
    if (has_credentials)
        *has_credentials = 0;
    if (!v || !url)
        return FV_EINVAL;
    rc = fv_vs_proxy_get(v, stored);
    if (rc == FV_ENOTFOUND)
        return FV_OK;
    if (rc)
        return rc;
    rc = fv_proxy_parse(&p, stored, NULL);
    fv_wipe(stored, sizeof stored);
    if (rc) {
        fv_proxy_wipe(&p);
        return fv_vs_fail(v, FV_ECORRUPT, "the vault's proxy setting is damaged");
    }
    fv_proxy_name(&p, name, sizeof name);
    if (has_credentials)
        *has_credentials = p.has_auth;
    fv_proxy_wipe(&p);
    if (!(*url = strdup(name)))
        return fv_vs_fail(v, FV_ENOMEM, "out of memory");
    return FV_OK;
}

static int sync_once(fv_vault *v, fv_sync_result *res, const fv_sync_options *o)
{
    fv_sync_session *s;
    int rc;
    if (!v)
        return FV_EINVAL;
    if ((rc = fv_sync_session_new(&s, v, o)))
        return rc;
    rc = fv_sync_session_run(s, res);
    fv_sync_session_free(s);
    return rc;
}

static int enroll_device(fv_vault *v, int *role, const char *invite,
                         const fv_sync_options *o)
{
    fv_invite inv;
    fv_sync_result res;
    fv_client_request req = {.op = FV_CLIENT_ENROLL, .invite = &inv};
    int rc;

    if (!v)
        return FV_EINVAL;
    if (fv_invite_decode(&inv, invite))
        return fv_vs_fail(v, FV_EINVITE,
                          "the invite is damaged (check it was copied whole)");
    req.server_override = o ? o->server : NULL;
    rc = run_request(v, &req, o, o && o->server ? o->server : inv.address,
                     inv.pin, &res, NULL, NULL);
    if (rc == FV_OK && role)
        *role = res.role;
    fv_wipe(&inv, sizeof inv);
    return rc;
}

static int org_init(fv_vault *v, const fv_sync_options *o)
{
    fv_client_request req = {.op = FV_CLIENT_ORGKEY};
    fv_sync_state st;
    unsigned char pk[32];
    int rc;
    if (!v)
        return FV_EINVAL;
    /* A vault that is not enrolled cannot publish the key: it is refused
     * before anything is written, so a failed command leaves no key rows
     * (and no grants) behind. */
    rc = fv_vs_state_get(v, &st);
    fv_wipe(&st, sizeof st);
    if (rc)
        return rc;
    /* Creating the key is local and idempotent to retry: a vault that has
     * one only publishes it again. */
    if (!fv_vs_org_pk(v, pk) && (rc = fv_vs_org_create(v, pk)))
        return rc;
    return run_enrolled(v, &req, o, NULL, NULL, NULL);
}

static int org_invite(fv_vault *v, char **invite, const char *name, int role,
                      uint64_t ttl, const fv_sync_options *o)
{
    fv_client_request req = {.op = FV_CLIENT_INVITE, .name = name,
                             .role = role, .ttl = ttl};
    *invite = NULL;
    if (!v || !name)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, NULL, invite, NULL);
}

struct devices {
    fv_device_fn fn;
    void *payload;
};

static int device_cb(const fv_devinfo *d, void *payload)
{
    struct devices *ds = payload;
    fv_device_info info;
    char name[FV_MAX_DEVICE_NAME + 1];
    int rc;
    memcpy(info.id, d->device, 32);
    memcpy(name, d->name, d->name_len);
    name[d->name_len] = '\0';
    info.name = name;
    info.role = (int)d->role;
    info.revoked = d->revoked;
    info.enrolled = d->enrolled;
    rc = ds->fn(&info, ds->payload);
    return rc;
}

static int org_device_list(fv_vault *v, const fv_sync_options *o,
                           fv_device_fn fn, void *payload)
{
    struct devices ds = {fn, payload};
    fv_client_request req = {.op = FV_CLIENT_DEVICES, .device_fn = device_cb,
                             .device_payload = &ds};
    if (!v || !fn)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, NULL, NULL, NULL);
}

static int org_revoke(fv_vault *v, const unsigned char id[32],
                      const fv_sync_options *o)
{
    fv_client_request req = {.op = FV_CLIENT_REVOKE, .device = id};
    if (!v || !id)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, NULL, NULL, NULL);
}

/* ---- the public calls (call.h: each leaves its own message) ---- */

int fv_vault_set_proxy(fv_vault *v, const char *url)
{
    return FV_CALL(v, vault_set_proxy(v, url));
}

int fv_vault_get_proxy(fv_vault *v, char **url, int *has_credentials)
{
    return FV_CALL(v, vault_get_proxy(v, url, has_credentials));
}

int fv_sync(fv_vault *v, fv_sync_result *res, const fv_sync_options *o)
{
    return FV_CALL(v, sync_once(v, res, o));
}

int fv_sync_session_new(fv_sync_session **out, fv_vault *v,
                        const fv_sync_options *o)
{
    return FV_CALL(v, sync_session_new(out, v, o));
}

int fv_sync_session_run(fv_sync_session *s, fv_sync_result *res)
{
    return FV_CALL(s ? s->v : NULL, sync_session_run(s, res));
}

int fv_enroll(fv_vault *v, int *role, const char *invite,
              const fv_sync_options *o)
{
    return FV_CALL(v, enroll_device(v, role, invite, o));
}

int fv_org_init(fv_vault *v, const fv_sync_options *o)
{
    return FV_CALL(v, org_init(v, o));
}

int fv_org_invite(fv_vault *v, char **invite, const char *name, int role,
                  uint64_t ttl, const fv_sync_options *o)
{
    return FV_CALL(v, org_invite(v, invite, name, role, ttl, o));
}

int fv_org_device_list(fv_vault *v, const fv_sync_options *o,
                       fv_device_fn fn, void *payload)
{
    return FV_CALL(v, org_device_list(v, o, fn, payload));
}

int fv_org_revoke(fv_vault *v, const unsigned char id[32],
                  const fv_sync_options *o)
{
    return FV_CALL(v, org_revoke(v, id, o));
}
