/* session.c - the blocking driver of a sync: one TLS connection, the client
 * engine (client.c) fed from it, the public calls of fieldvault_sync.h. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "fieldvault_sync.h"
#include "tls.h"
#include "vault_sync.h"

#define READ_CHUNK (64 * 1024)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Splits "host:port" or "[v6]:port". */
static int split_address(const char *addr, char *host, size_t hostcap,
                         char *port, size_t portcap)
{
    const char *colon, *h = addr;
    size_t hl;
    if (!addr)
        return FV_EINVAL;
    if (*addr == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':')
            return FV_EINVAL;
        h = addr + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return FV_EINVAL;
        hl = (size_t)(colon - addr);
    }
    if (hl == 0 || hl >= hostcap || strlen(colon + 1) == 0 ||
        strlen(colon + 1) >= portcap ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return FV_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portcap, "%s", colon + 1);
    return FV_OK;
}

struct run {
    uint64_t upload; /* bytes to send, as the sync began */
    fv_vault *v;
    fv_client *c;
    fv_tls_conn *tls;
    const fv_sync_options *o;
    fv_sync_result res;
};

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

/* Moves bytes between the TLS connection and the engine until the engine is
 * done or fails, the connection stalls for timeout_ms, or the caller
 * cancels. */
static int pump(struct run *r, int timeout_ms)
{
    unsigned char *buf = malloc(READ_CHUNK);
    int64_t last = now_ms();
    int wrote_since_read = 0, rc = FV_OK;

    if (!buf)
        return FV_ENOMEM;
    while (rc == FV_OK && !fv_client_done(r->c)) {
        size_t len, n;
        const unsigned char *out = fv_client_pending(r->c, &len);
        short events = POLLIN;
        int moved = 0, wrc = FV_OK;

        if ((rc = fv_client_status(r->c)))
            break;
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
                if (progress(r)) {
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
        if (rc || fv_client_done(r->c))
            break;
        if (moved) {
            last = now_ms();
            continue;
        }
        if (now_ms() - last > timeout_ms) {
            rc = FV_ENET;
            break;
        }
        {
            struct pollfd p = {fv_tls_fd(r->tls), events, 0};
            if (fv_client_pending(r->c, &len) && len > 0)
                p.events |= POLLOUT;
            poll(&p, 1, 200);
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

/* One connection: connect, run the request, close. */
static int run_request(fv_vault *v, const fv_client_request *req,
                       const fv_sync_options *o, const char *address,
                       const unsigned char pin[32], fv_sync_result *res,
                       char **invite_text)
{
    fv_sync_options defaults = FV_SYNC_OPTIONS_INIT;
    struct run r;
    unsigned char peer_pin[32], binding[32];
    char host[256], port[16];
    int rc, timeout;

    memset(&r, 0, sizeof r);
    r.v = v;
    r.o = o ? o : &defaults;
    timeout = r.o->timeout_ms > 0 ? r.o->timeout_ms : 30000;
    if (split_address(address, host, sizeof host, port, sizeof port))
        return fv_vs_fail(v, FV_EINVAL, "the server address is not host:port");
    if (req->op == FV_CLIENT_SYNC && fv_vs_pending_upload(v, &r.upload))
        r.upload = 0; /* progress only */
    if ((rc = fv_client_new(&r.c, v, req)))
        return rc == FV_EEXIST
                   ? fv_vs_fail(v, rc, "this vault is already enrolled")
                   : rc;
    rc = fv_tls_connect(&r.tls, host, port, pin, timeout);
    if (rc) {
        fv_client_free(r.c);
        return fv_vs_fail(v, rc, net_message(rc));
    }
    if ((rc = fv_tls_peer_pin(r.tls, peer_pin)) == FV_OK &&
        (rc = fv_tls_binding(r.tls, binding)) == FV_OK &&
        (rc = fv_client_start(r.c, peer_pin, binding)) == FV_OK)
        rc = pump(&r, timeout);
    if (rc) {
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
    if (res)
        *res = r.res;
    return rc;
}

/* Runs a request against the server this vault is enrolled with. */
static int run_enrolled(fv_vault *v, const fv_client_request *req,
                        const fv_sync_options *o, fv_sync_result *res,
                        char **invite_text)
{
    fv_sync_state st;
    int rc = fv_vs_state_get(v, &st);
    if (rc)
        return rc;
    rc = run_request(v, req, o, o && o->server ? o->server : st.server, st.pin,
                     res, invite_text);
    fv_wipe(&st, sizeof st);
    return rc;
}

int fv_sync(fv_vault *v, const fv_sync_options *o, fv_sync_result *res)
{
    fv_client_request req = {.op = FV_CLIENT_SYNC};
    fv_sync_result local;
    if (!v)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, res ? res : &local, NULL);
}

int fv_enroll(fv_vault *v, const char *invite, const fv_sync_options *o,
              int *role)
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
                     inv.pin, &res, NULL);
    if (rc == FV_OK && role)
        *role = res.role;
    fv_wipe(&inv, sizeof inv);
    return rc;
}

int fv_org_init(fv_vault *v, const fv_sync_options *o)
{
    fv_client_request req = {.op = FV_CLIENT_ORGKEY};
    unsigned char pk[32];
    int rc;
    if (!v)
        return FV_EINVAL;
    /* Creating the key is local and idempotent to retry: a vault that has
     * one only publishes it again. */
    if (!fv_vs_org_pk(v, pk) && (rc = fv_vs_org_create(v, pk)))
        return rc;
    return run_enrolled(v, &req, o, NULL, NULL);
}

int fv_org_invite(fv_vault *v, char **invite, const char *name, int role,
                  uint64_t ttl, const fv_sync_options *o)
{
    fv_client_request req = {.op = FV_CLIENT_INVITE, .name = name,
                             .role = role, .ttl = ttl};
    *invite = NULL;
    if (!v || !name)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, NULL, invite);
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

int fv_org_devices(fv_vault *v, fv_device_fn fn, void *payload,
                   const fv_sync_options *o)
{
    struct devices ds = {fn, payload};
    fv_client_request req = {.op = FV_CLIENT_DEVICES, .device_fn = device_cb,
                             .device_payload = &ds};
    if (!v || !fn)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, NULL, NULL);
}

int fv_org_revoke(fv_vault *v, const unsigned char id[32],
                  const fv_sync_options *o)
{
    fv_client_request req = {.op = FV_CLIENT_REVOKE, .device = id};
    if (!v || !id)
        return FV_EINVAL;
    return run_enrolled(v, &req, o, NULL, NULL);
}
