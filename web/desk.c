/* desk.c - `fieldvault desk` (desk.h): the HTTP server around the desk's
 * API. Everything a request must pass before it reaches the vault is here:
 * loopback only, the Host and Origin checks, the one-time token and its
 * session cookie, the CSRF token, the idle lock; and the headers every
 * response carries (SECURITY.md, "The desk in a browser"). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cli.h"
#include "desk.h"
#include "textparse.h"
#include "fieldvault_sync.h"

/* The page, generated at build time from web/page/ (embed.cmake). */
struct desk_asset {
    const char *path;
    const char *type;
    const unsigned char *data;
    size_t len;
};
extern const struct desk_asset desk_assets[];
extern const size_t desk_nassets;

#define DESK_MAX_BODY (2u * 1024 * 1024) /* a merge's narrative fits */
#define DESK_DEFAULT_IDLE 900            /* seconds */

static const char csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; media-src 'self'; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'";

/* ---- small pieces ------------------------------------------------------- */

static int secret_new(char out[DESK_SECRET_HEX])
{
    unsigned char b[32];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    fv_id_to_hex(out, b);
    fv_wipe(b, sizeof b);
    return 0;
}

/* Constant-time comparison of a presented secret with ours. */
static int secret_equal(const char *given, const char *ours)
{
    size_t n = strlen(ours);
    unsigned char diff = 0;
    if (given == NULL || strlen(given) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(given[i] ^ ours[i]);
    return diff == 0;
}

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- responses ---------------------------------------------------------- */

int desk_open_out(desk_out *o)
{
    o->buf = NULL;
    o->len = 0;
    o->f = open_memstream(&o->buf, &o->len);
    return o->f ? 0 : -1;
}

/* The response's buffer: its length is kept before it, so that the free
 * callback can wipe what may be decrypted text. */
static void wipe_free(void *p)
{
    if (p == NULL)
        return;
    unsigned char *base = (unsigned char *)p - sizeof(size_t);
    size_t len;
    memcpy(&len, base, sizeof len);
    fv_wipe(base, len + sizeof len);
    free(base);
}

void desk_headers(void *response, int attachment)
{
    struct MHD_Response *rs = response;
    MHD_add_response_header(rs, "Cache-Control", "no-store");
    MHD_add_response_header(rs, "Pragma", "no-cache");
    MHD_add_response_header(rs, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(rs, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(rs, "X-Frame-Options", "DENY");
    MHD_add_response_header(rs, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(rs, "Cross-Origin-Resource-Policy", "same-origin");
    /* An attachment is the witness's bytes: never a document of ours. */
    MHD_add_response_header(rs, "Content-Security-Policy",
                            attachment ? "sandbox; default-src 'none'" : csp);
}

static int send_bytes(struct MHD_Connection *c, unsigned status,
                      const char *type, const void *data, size_t len,
                      int copy_wiped)
{
    struct MHD_Response *rs;
    if (copy_wiped) {
        unsigned char *base = malloc(len + sizeof(size_t) + 1);
        if (base == NULL)
            return MHD_NO;
        memcpy(base, &len, sizeof len);
        memcpy(base + sizeof len, data, len);
        rs = MHD_create_response_from_buffer_with_free_callback(
            len, base + sizeof len, wipe_free);
        if (rs == NULL) {
            wipe_free(base + sizeof len);
            return MHD_NO;
        }
    } else {
        rs = MHD_create_response_from_buffer(len, (void *)data,
                                             MHD_RESPMEM_PERSISTENT);
        if (rs == NULL)
            return MHD_NO;
    }
    desk_headers(rs, 0);
    if (type)
        MHD_add_response_header(rs, "Content-Type", type);
    int ret = MHD_queue_response(c, status, rs);
    MHD_destroy_response(rs);
    return ret;
}

int desk_send(struct MHD_Connection *c, unsigned status, const char *type,
              desk_out *o)
{
    int ret = MHD_NO;
    if (o->f) {
        fflush(o->f);
        int bad = ferror(o->f);
        fclose(o->f);
        o->f = NULL;
        if (!bad)
            ret = send_bytes(c, status, type, o->buf, o->len, 1);
    }
    if (o->buf) {
        fv_wipe(o->buf, o->len);
        free(o->buf);
    }
    o->buf = NULL;
    o->len = 0;
    return ret;
}

void desk_discard(desk_out *o)
{
    if (o->f)
        fclose(o->f);
    o->f = NULL;
    if (o->buf) {
        fv_wipe(o->buf, o->len);
        free(o->buf);
    }
    o->buf = NULL;
    o->len = 0;
}

int desk_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
    desk_out o;
    if (desk_open_out(&o))
        return MHD_NO;
    fputc('{', o.f);
    json_key(o.f, "error");
    json_strz(o.f, msg);
    fputs("}\n", o.f);
    return desk_send(c, status, "application/json; charset=utf-8", &o);
}

/* A refusal before authentication: plain text, nothing of the vault. */
static int refuse(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return send_bytes(c, status, "text/plain; charset=utf-8", msg,
                      strlen(msg), 0);
}

/* ---- the request gate --------------------------------------------------- */

struct conn_ctx {
    char *body;
    size_t len;
    size_t cap;
    int too_big;
};

static void conn_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct conn_ctx *x = *con_cls;
    if (x) {
        if (x->body) {
            fv_wipe(x->body, x->cap);
            free(x->body);
        }
        free(x);
        *con_cls = NULL;
    }
}

static int one_of(const char *v, const char list[][80], size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v, (const char *)list + i * w) == 0)
            return 1;
    return 0;
}

static int host_ok(const desk *d, const char *host)
{
    for (size_t i = 0; i < 3; i++)
        if (host && strcmp(host, d->hosts[i]) == 0)
            return 1;
    return 0;
}

static int origin_ok(const desk *d, const char *origin)
{
    return one_of(origin, d->origins, 3, sizeof d->origins[0]);
}

static const struct desk_asset *asset_for(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < desk_nassets; i++)
        if (strcmp(desk_assets[i].path, path) == 0)
            return &desk_assets[i];
    return NULL;
}

/* The one-time token: exchanged for the session cookie, then the browser
 * is sent to the bare page so that the token leaves its address bar. */
static int token_exchange(desk *d, struct MHD_Connection *c, const char *given)
{
    int expected = 0;
    if (!secret_equal(given, d->token) ||
        !atomic_compare_exchange_strong(&d->token_used, &expected, 1))
        return refuse(c, MHD_HTTP_UNAUTHORIZED,
                      "This desk link is not valid (it works once). "
                      "Start `fieldvault desk` again for a new one.\n");
    char cookie[160];
    snprintf(cookie, sizeof cookie,
             "fv_desk=%s; Path=/; HttpOnly; SameSite=Strict", d->session);
    struct MHD_Response *rs =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (rs == NULL)
        return MHD_NO;
    desk_headers(rs, 0);
    MHD_add_response_header(rs, "Set-Cookie", cookie);
    MHD_add_response_header(rs, "Location", "/");
    int ret = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, rs);
    MHD_destroy_response(rs);
    fv_wipe(cookie, sizeof cookie);
    atomic_store(&d->last_use, now_s());
    return ret;
}

/* While locked: {"locked": true, "csrf"} for the unlock form. */
static int locked_session(desk *d, struct MHD_Connection *c)
{
    desk_out o;
    if (desk_open_out(&o))
        return MHD_NO;
    fputc('{', o.f);
    json_key(o.f, "locked");
    fputs("true, ", o.f);
    json_key(o.f, "csrf");
    json_strz(o.f, d->csrf);
    fputs("}\n", o.f);
    return desk_send(c, MHD_HTTP_OK, "application/json; charset=utf-8", &o);
}

/* POST /api/unlock passphrase=P (cookie, CSRF token and Origin checked as
 * for every POST): opens the vault again after the idle lock. The
 * passphrase is wiped as soon as the open returns; a wrong one counts
 * toward the vault's wipe-after setting exactly as any other unlock does
 * (fv_vault_open counts it), and after the vault was destroyed every try
 * gets 410. */
static int unlock(desk *d, struct MHD_Connection *c, struct conn_ctx *x)
{
    char *pass = desk_form(x->body, x->len, "passphrase");
    fv_vault *v = NULL;
    int rc = FV_EINVAL;
    if (x->body)
        fv_wipe(x->body, x->cap); /* the form, percent-encoded */
    if (pass == NULL || pass[0] == '\0') {
        desk_free_text(pass);
        return desk_error(c, MHD_HTTP_BAD_REQUEST, "passphrase?");
    }
    pthread_mutex_lock(&d->lock);
    if (atomic_load(&d->stopping) || d->v != NULL) {
        pthread_mutex_unlock(&d->lock);
        desk_free_text(pass);
        return desk_error(c, MHD_HTTP_CONFLICT, "the vault is not locked");
    }
    rc = fv_vault_open(&v, d->dir, pass, strlen(pass));
    desk_free_text(pass);
    if (rc == FV_OK) {
        d->v = v;
        atomic_store(&d->last_use, now_s());
        atomic_store(&d->locked, 0);
        desk_names_refresh(d);
    }
    pthread_mutex_unlock(&d->lock);
    if (rc == FV_EPASSPHRASE)
        return desk_error(c, MHD_HTTP_FORBIDDEN, "wrong passphrase");
    if (rc == FV_ENOVAULT)
        return desk_error(c, MHD_HTTP_GONE, "no vault any more");
    if (rc != FV_OK)
        return desk_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, fv_error_last());
    fprintf(stderr, "fieldvault: desk: the vault is unlocked again\n");
    desk_out o;
    if (desk_open_out(&o))
        return MHD_NO;
    fputs("{\"unlocked\": true}\n", o.f);
    return desk_send(c, MHD_HTTP_OK, "application/json; charset=utf-8", &o);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    desk *d = cls;
    struct conn_ctx *x = *con_cls;
    (void)version;

    if (x == NULL) {
        /* Every check before anything else, on the request's headers. */
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
        const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        if (!host_ok(d, host))
            return refuse(c, MHD_HTTP_MISDIRECTED_REQUEST,
                          "wrong Host: the desk answers only at its own address\n");
        if (origin && !origin_ok(d, origin))
            return refuse(c, MHD_HTTP_FORBIDDEN, "foreign Origin refused\n");
        if (!get && strcmp(method, "POST") != 0)
            return refuse(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        const char *tok = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
        if (get && tok && strcmp(url, "/") == 0)
            return token_exchange(d, c, tok);
        const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "fv_desk");
        if (!secret_equal(cookie, d->session))
            return refuse(c, MHD_HTTP_UNAUTHORIZED,
                          "not signed in: open the link `fieldvault desk` printed\n");
        if (!get) {
            const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token");
            if (!secret_equal(t, d->csrf))
                return refuse(c, MHD_HTTP_FORBIDDEN, "missing or wrong CSRF token\n");
            /* A state change comes from the page itself: fetch() always
             * names its origin on a POST. */
            if (origin == NULL)
                return refuse(c, MHD_HTTP_FORBIDDEN, "a POST must name its Origin\n");
        }
        if ((x = calloc(1, sizeof *x)) == NULL)
            return MHD_NO;
        *con_cls = x;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!x->too_big) {
            if (x->len + *upload_size > DESK_MAX_BODY) {
                x->too_big = 1;
            } else {
                if (x->len + *upload_size + 1 > x->cap) {
                    size_t cap = x->cap ? x->cap : 4096;
                    while (cap < x->len + *upload_size + 1)
                        cap *= 2;
                    char *nb = malloc(cap);
                    if (nb == NULL)
                        return MHD_NO;
                    if (x->body) {
                        memcpy(nb, x->body, x->len);
                        fv_wipe(x->body, x->cap);
                        free(x->body);
                    }
                    x->body = nb;
                    x->cap = cap;
                }
                memcpy(x->body + x->len, upload, *upload_size);
                x->len += *upload_size;
                x->body[x->len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (x->too_big)
        return desk_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request too large");

    /* Authenticated: this is use, and the idle clock starts again. */
    if (atomic_load(&d->locked)) {
        /* Locked after being idle: the page (which holds no record) and
         * the CSRF token are still served, so that the passphrase form can
         * unlock the vault again without a new launch. */
        if (strcmp(url, "/api/unlock") == 0 && strcmp(method, "POST") == 0)
            return (enum MHD_Result)unlock(d, c, x);
        if (strcmp(url, "/api/session") == 0 && strcmp(method, "POST") != 0)
            return locked_session(d, c);
        const struct desk_asset *a = asset_for(url);
        if (a != NULL && strcmp(method, "POST") != 0)
            return send_bytes(c, MHD_HTTP_OK, a->type, a->data, a->len, 0);
        return desk_error(c, MHD_HTTP_LOCKED,
                          "the vault is locked: unlock it with its passphrase");
    }
    if (strcmp(url, "/api/unlock") == 0)
        return desk_error(c, MHD_HTTP_CONFLICT, "the vault is not locked");
    atomic_store(&d->last_use, now_s());
    if (strncmp(url, "/api/", 5) == 0) {
        desk_req r = {c, method, url, x->body, x->len};
        return (enum MHD_Result)desk_api(d, &r);
    }
    const struct desk_asset *a = asset_for(url);
    if (a == NULL || strcmp(method, "POST") == 0)
        return refuse(c, MHD_HTTP_NOT_FOUND, "not found\n");
    return send_bytes(c, MHD_HTTP_OK, a->type, a->data, a->len, 0);
}

/* ---- the command -------------------------------------------------------- */

/* Parses --listen: 127.0.0.1:PORT, localhost:PORT, [::1]:PORT or a bare
 * PORT (on 127.0.0.1); any other address is refused: the desk serves
 * decrypted testimony and must not be reachable from another machine. */
static int parse_listen(const char *s, struct sockaddr_storage *ss,
                        socklen_t *sl)
{
    char host[FV_ADDR_HOST_MAX + 1], port_s[6];
    int port;
    memset(ss, 0, sizeof *ss);
    if (!strchr(s, ':')) {
        if (cli_parse_int(s, &port) != 0 || port < 0 || port > 65535)
            return -1;
        snprintf(host, sizeof host, "%s", "127.0.0.1");
    } else if (fv_addr_parse(s, FV_ADDR_PORT0, host, port_s, NULL) != FV_OK ||
               cli_parse_int(port_s, &port) != 0) {
        return -1;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "%s", "127.0.0.1");
    if (strcmp(host, "::1") == 0) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_loopback;
        a6->sin6_port = htons((uint16_t)port);
        *sl = sizeof *a6;
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    /* 127.0.0.1 exactly: the whole of 127/8 is loopback, but the Host
     * check and the printed address name this one. */
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1 ||
        a4->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        return -2;
    *sl = sizeof *a4;
    return 0;
}

static void *warm_main(void *arg)
{
    desk_api_warm(arg);
    return NULL;
}

/* Opens the browser on `url` where one can be found, quietly otherwise. */
static void open_browser(const char *url)
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        /* Nothing of the vault or the server reaches the browser, nor the
         * desk's blocked and ignored signals. */
        closefrom(3);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execlp("xdg-open", "xdg-open", url, (char *)NULL);
        _exit(127);
    }
}

int cmd_desk(cli *c)
{
    cli_opt opts[] = {{"listen", OPT_ONE, NULL, 0},
                      {"no-open", OPT_FLAG, NULL, 0},
                      {"idle", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    struct MHD_Daemon *daemon = NULL;
    desk d;
    sigset_t sigs, old;
    int rc;
    int mutex_ready = 0;

    memset(&d, 0, sizeof d);
    atomic_store(&d.sync_rc, 1);
    sigemptyset(&old);
    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    cli_opt *listen = cli_opt_get(opts, "listen");
    int r = parse_listen(listen->count ? listen->values[0] : "127.0.0.1:0",
                         &ss, &sl);
    if (r != 0) {
        cli_error(r == -2 ? "desk: --listen must be a loopback address "
                            "(127.0.0.1:PORT or [::1]:PORT): the desk serves "
                            "decrypted records"
                          : "desk: --listen wants 127.0.0.1:PORT");
        rc = CLI_USAGE;
        goto cleanup;
    }
    d.idle_seconds = DESK_DEFAULT_IDLE;
    cli_opt *idle = cli_opt_get(opts, "idle");
    if (idle->count && cli_parse_int(idle->values[0], &d.idle_seconds) != 0) {
        cli_error("desk: --idle wants a number of seconds (0: never)");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (secret_new(d.token) || secret_new(d.session) || secret_new(d.csrf)) {
        cli_error("desk: no random source");
        rc = CLI_FAIL;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &d.v, &d.dir)) != 0)
        goto cleanup;
    fv_vault_device_id(d.v, d.device);
    pthread_mutex_init(&d.lock, NULL);
    pthread_mutex_init(&d.sync_lock, NULL);
    mutex_ready = 1;

    /* The threads libmicrohttpd starts inherit this mask: SIGINT and
     * SIGTERM reach the main thread's sigtimedwait only. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, &d,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                              MHD_OPTION_NOTIFY_COMPLETED, conn_done, NULL,
                              MHD_OPTION_END);
    if (daemon == NULL) {
        int e = errno;
        cli_error("desk: cannot listen on %s%s%s",
                  listen->count ? listen->values[0] : "127.0.0.1",
                  e ? ": " : "", e ? strerror(e) : "");
        rc = CLI_NETWORK;
        goto cleanup;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    d.port = info ? info->port : 0;
    snprintf(d.hosts[0], sizeof d.hosts[0], "127.0.0.1:%u", d.port);
    snprintf(d.hosts[1], sizeof d.hosts[1], "localhost:%u", d.port);
    snprintf(d.hosts[2], sizeof d.hosts[2], "[::1]:%u", d.port);
    for (int i = 0; i < 3; i++)
        snprintf(d.origins[i], sizeof d.origins[i], "http://%s", d.hosts[i]);
    atomic_store(&d.last_use, now_s());

    char url[160];
    snprintf(url, sizeof url, "http://%s/?token=%s",
             ss.ss_family == AF_INET6 ? d.hosts[2] : d.hosts[0], d.token);
    if (c->json) {
        fputc('{', stdout);
        json_key(stdout, "url");
        json_strz(stdout, url);
        fputs(", ", stdout);
        json_key(stdout, "port");
        fprintf(stdout, "%u}\n", d.port);
    } else {
        fprintf(stdout, "The desk is open at\n  %s\n"
                        "(the link works once). Ctrl-C locks the vault and "
                        "stops the desk.\n", url);
    }
    fflush(stdout);
    if (!cli_opt_get(opts, "no-open")->count)
        open_browser(url);
    fv_wipe(url, sizeof url);

    /* The device names and the list index, read while the browser opens. */
    d.warm_started = pthread_create(&d.warm_thread, NULL, warm_main, &d) == 0;

    for (;;) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig > 0)
            break;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ; /* the browser opener */
        if (d.idle_seconds > 0 && !atomic_load(&d.locked) &&
            !atomic_load(&d.sync_running) &&
            now_s() - atomic_load(&d.last_use) >= d.idle_seconds) {
            pthread_mutex_lock(&d.lock);
            atomic_store(&d.locked, 1);
            desk_api_clear(&d);
            fv_vault_close(d.v);
            d.v = NULL;
            pthread_mutex_unlock(&d.lock);
            fprintf(stderr, "fieldvault: desk: idle for %d seconds: the vault "
                            "is locked\n", d.idle_seconds);
        }
    }
    rc = CLI_OK;

cleanup:
    if (daemon) {
        /* No request passes the gate from here on, and none starts a sync
         * (desk_api checks `locked` under the lock). A running sync is
         * cancelled first: it holds the vault, and requests wait for it. */
        atomic_store(&d.stopping, 1);
        pthread_mutex_lock(&d.lock);
        atomic_store(&d.locked, 1);
        pthread_mutex_unlock(&d.lock);
        if (d.warm_started)
            pthread_join(d.warm_thread, NULL); /* its walk stops at `locked` */
        pthread_mutex_lock(&d.sync_lock);
        if (d.sync_session)
            fv_sync_session_cancel(d.sync_session);
        pthread_mutex_unlock(&d.sync_lock);
        MHD_stop_daemon(daemon);
        pthread_mutex_lock(&d.lock);
        int joinable = d.sync_thread_started;
        d.sync_thread_started = 0;
        pthread_mutex_unlock(&d.lock);
        if (joinable)
            pthread_join(d.sync_thread, NULL);
    }
    if (mutex_ready) {
        desk_api_clear(&d);
        pthread_mutex_destroy(&d.lock);
        pthread_mutex_destroy(&d.sync_lock);
    }
    fv_vault_close(d.v);
    free(d.dir);
    fv_wipe(d.token, sizeof d.token);
    fv_wipe(d.session, sizeof d.session);
    fv_wipe(d.csrf, sizeof d.csrf);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    cli_opts_free(opts);
    return rc;
}
