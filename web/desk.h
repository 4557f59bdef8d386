/*
 * desk.h - the coordinator's desk in a browser (`fieldvault desk`): a thin
 * HTTP adapter (libmicrohttpd) over the public API of fieldvault.h and
 * fieldvault_sync.h. Linked into the `fieldvault` command only: nothing of
 * it is in the libraries a phone links.
 *
 * Threads: libmicrohttpd runs one thread per connection. The vault handle
 * and everything read from it (the list index, the device names) are used
 * under desk.lock only; the sync progress is read without it.
 */
#ifndef FV_DESK_H
#define FV_DESK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "fieldvault.h"

#define DESK_SECRET_HEX 65 /* 32 random bytes as hex, NUL */

struct desk_index; /* desk_api.c */
struct report_devices; /* report/report.h */

typedef struct desk {
    pthread_mutex_t lock;  /* guards v, index, names */
    fv_vault *v;           /* NULL once locked (idle timeout, shutdown) */
    char *dir;
    struct desk_index *index; /* built on the first listing */
    struct report_devices *names; /* device id -> name, from the server */
    unsigned char device[FV_ID_BYTES];

    /* The per-launch secrets: the URL token (used once), the session
     * cookie it is exchanged for, the CSRF token the page sends back. */
    char token[DESK_SECRET_HEX];
    atomic_int token_used;
    char session[DESK_SECRET_HEX];
    char csrf[DESK_SECRET_HEX];

    unsigned port;
    char hosts[3][64];   /* Host values accepted: 127.0.0.1:P, localhost:P,
                            [::1]:P */
    char origins[3][80]; /* Origin values accepted: http:// + a host */

    int idle_seconds;         /* 0: never */
    _Atomic int64_t last_use; /* time of the last authenticated request */
    atomic_int locked;
    atomic_int stopping;      /* shutting down: no unlock */

    /* Sync now, on a thread of its own. */
    atomic_int sync_running;
    _Atomic uint64_t sync_done, sync_total;
    atomic_int sync_rc;       /* result of the last sync, 1 = none yet */
    char sync_msg[256];       /* its message, under lock */
    pthread_mutex_t sync_lock; /* guards sync_session */
    void *sync_session;        /* fv_sync_session while running */
    pthread_t sync_thread;
    int sync_thread_started;   /* main thread and the API, under lock */
    pthread_t warm_thread;     /* desk_api_warm at launch */
    int warm_started;
} desk;

/* A response being built: a memory stream (open_memstream) whose buffer is
 * wiped when freed. */
typedef struct desk_out {
    FILE *f;
    char *buf;
    size_t len;
} desk_out;

/* A parsed request for the API (desk_api.c). */
typedef struct desk_req {
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    const char *body; /* the form body (application/x-www-form-urlencoded) */
    size_t body_len;
} desk_req;

/* desk_api.c: answers an authenticated request under /api/. Returns the
 * libmicrohttpd result. */
int desk_api(desk *d, desk_req *r);

/* desk_api.c: frees the index and names (wiping their text). Under lock. */
void desk_api_clear(desk *d);

/* desk_api.c: what the first page needs, read while the browser opens:
 * the device names, then the list index. Takes the lock; stops early when
 * the desk locks. Any thread. */
void desk_api_warm(desk *d);

/* desk_api.c: fetches the device names from the server (coordinators);
 * quietly leaves them unknown when it cannot. Under lock. */
void desk_names_refresh(desk *d);

/* desk.c: response helpers shared with desk_api.c. */
int desk_open_out(desk_out *o);
/* Sends `o` (closed and freed here) with `status` and `type`. */
int desk_send(struct MHD_Connection *c, unsigned status, const char *type,
              desk_out *o);
/* Drops `o` unsent (its bytes wiped). */
void desk_discard(desk_out *o);
/* {"error": MSG} with `status`. */
int desk_error(struct MHD_Connection *c, unsigned status, const char *msg);
/* Adds the headers every response carries (no-store, CSP...). */
void desk_headers(void *response, int attachment);

/* desk.c: the value of `key` in a form body, percent-decoded into a new
 * string (caller frees with desk_free_text), or NULL when absent or not
 * valid UTF-8 without NUL. */
char *desk_form(const char *body, size_t len, const char *key);
void desk_free_text(char *s);

/* desk_parse.c: a Range header ("bytes=A-B", "bytes=A-", "bytes=-N", one
 * range, digits only) of a `size`-byte attachment into [*start, *start +
 * *len). 0, or -1 when it is not satisfiable or not understood (416). */
int desk_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len);

#endif /* FV_DESK_H */
