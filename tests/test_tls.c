/* test_tls.c - the TLS transport (sync/tls.c) over real sockets on 127.0.0.1.
 *
 * An echo server runs in a thread with a small poll loop; the main thread is
 * the client. SIGPIPE keeps its default action on purpose: if the library
 * ever wrote to a dead socket without MSG_NOSIGNAL, this program would die. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#include "check.h"
#include "crypto.h"
#include "fieldvault.h"
#include "tls_server.h"

#define MAX_SLOTS 16
#define ECHO_BYTES 65536
#define MEGABYTE (1024 * 1024)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* xorshift64*: reproducible chunk sizes, not security. */
static uint64_t rnd_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static size_t rnd_between(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)(rnd_next(s) % (hi - lo + 1));
}

/* ---- the echo server thread --------------------------------------------- */

struct stats {
    int accepted, hs_ok, hs_fail, last_hs_error;
    int eofs, nets, other_errors, closed_by_server;
    long long bytes_in;
    unsigned char last_binding[FV_TLS_BINDING_BYTES];
};

struct slot {
    fv_tls_conn *c;
    int handshaken;
    short want;  /* poll events the connection waits for */
    size_t head; /* buf[head, tail) still to echo */
    size_t tail;
    size_t wlen; /* length frozen by a FV_TLS_WANT_* from fv_tls_write */
    unsigned char buf[ECHO_BYTES];
};

struct server {
    fv_tls_server *srv;
    pthread_t thread;
    atomic_int stop;
    atomic_int close_all; /* ask the thread to close every connection */
    pthread_mutex_t mu;
    struct stats st; /* under mu */
    struct slot slots[MAX_SLOTS];
};

static struct stats snap(struct server *sv)
{
    struct stats st;
    pthread_mutex_lock(&sv->mu);
    st = sv->st;
    pthread_mutex_unlock(&sv->mu);
    return st;
}

/* Re-reads the server's stats into st until cond holds or 5 s pass. */
#define WAIT_UNTIL(sv, st, cond)                          \
    do {                                                  \
        int64_t wait_deadline_ = now_ms() + 5000;         \
        for (;;) {                                        \
            (st) = snap(sv);                              \
            if ((cond) || now_ms() > wait_deadline_)      \
                break;                                    \
            sleep_ms(2);                                  \
        }                                                 \
    } while (0)

static void slot_close(struct server *sv, struct slot *sl, int by_server)
{
    fv_tls_close(sl->c);
    sl->c = NULL;
    if (by_server) {
        pthread_mutex_lock(&sv->mu);
        sv->st.closed_by_server++;
        pthread_mutex_unlock(&sv->mu);
    }
}

static void slot_fail(struct server *sv, struct slot *sl, int rc)
{
    pthread_mutex_lock(&sv->mu);
    if (rc == FV_EEOF)
        sv->st.eofs++;
    else if (rc == FV_ENET)
        sv->st.nets++;
    else
        sv->st.other_errors++;
    pthread_mutex_unlock(&sv->mu);
    slot_close(sv, sl, 0);
}

/* Drives one connection as far as it goes without blocking. */
static void slot_step(struct server *sv, struct slot *sl)
{
    int rc, progress;
    size_t n;

    if (!sl->handshaken) {
        rc = fv_tls_handshake(sl->c);
        if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
            sl->want = rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT;
            return;
        }
        pthread_mutex_lock(&sv->mu);
        if (rc == FV_OK) {
            sv->st.hs_ok++;
            fv_tls_binding(sl->c, sv->st.last_binding);
        } else {
            sv->st.hs_fail++;
            sv->st.last_hs_error = rc;
        }
        pthread_mutex_unlock(&sv->mu);
        if (rc != FV_OK) {
            slot_close(sv, sl, 0);
            return;
        }
        sl->handshaken = 1;
    }
    do {
        progress = 0;
        sl->want = 0;
        if (sl->tail > sl->head) {
            size_t len = sl->wlen ? sl->wlen : sl->tail - sl->head;
            rc = fv_tls_write(sl->c, sl->buf + sl->head, len, &n);
            if (rc == FV_OK) {
                sl->head += n;
                sl->wlen = 0;
                progress = 1;
            } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
                sl->wlen = len;
                sl->want |= rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT;
            } else {
                slot_fail(sv, sl, rc);
                return;
            }
        }
        if (sl->head == sl->tail && sl->wlen == 0)
            sl->head = sl->tail = 0;
        if (sl->tail < ECHO_BYTES) {
            rc = fv_tls_read(sl->c, sl->buf + sl->tail, ECHO_BYTES - sl->tail, &n);
            if (rc == FV_OK) {
                sl->tail += n;
                progress = 1;
                pthread_mutex_lock(&sv->mu);
                sv->st.bytes_in += (long long)n;
                pthread_mutex_unlock(&sv->mu);
            } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
                sl->want |= rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT;
            } else {
                slot_fail(sv, sl, rc);
                return;
            }
        }
    } while (progress);
}

static void *server_main(void *arg)
{
    struct server *sv = arg;
    struct pollfd pfd[MAX_SLOTS + 1];
    int map[MAX_SLOTS + 1];

    while (!atomic_load(&sv->stop)) {
        int np = 0, timeout = 20;

        if (atomic_exchange(&sv->close_all, 0)) {
            for (int i = 0; i < MAX_SLOTS; i++)
                if (sv->slots[i].c != NULL)
                    slot_close(sv, &sv->slots[i], 1);
        }
        pfd[np].fd = fv_tls_server_fd(sv->srv);
        pfd[np].events = POLLIN;
        map[np++] = -1;
        for (int i = 0; i < MAX_SLOTS; i++) {
            struct slot *sl = &sv->slots[i];
            if (sl->c == NULL)
                continue;
            if (fv_tls_pending(sl->c) > 0)
                timeout = 0;
            pfd[np].fd = fv_tls_fd(sl->c);
            pfd[np].events = sl->want ? sl->want : POLLIN;
            map[np++] = i;
        }
        if (poll(pfd, (nfds_t)np, timeout) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents & POLLIN) {
            for (;;) {
                fv_tls_conn *c;
                int i, rc = fv_tls_accept(sv->srv, &c);
                if (rc != FV_OK)
                    break;
                pthread_mutex_lock(&sv->mu);
                sv->st.accepted++;
                pthread_mutex_unlock(&sv->mu);
                for (i = 0; i < MAX_SLOTS && sv->slots[i].c != NULL; i++)
                    ;
                if (i == MAX_SLOTS) {
                    fv_tls_close(c);
                    continue;
                }
                memset(&sv->slots[i], 0, offsetof(struct slot, buf));
                sv->slots[i].c = c;
                slot_step(sv, &sv->slots[i]);
            }
        }
        for (int k = 1; k < np; k++) {
            struct slot *sl = &sv->slots[map[k]];
            if (sl->c != NULL && (pfd[k].revents || fv_tls_pending(sl->c) > 0))
                slot_step(sv, sl);
        }
    }
    for (int i = 0; i < MAX_SLOTS; i++)
        fv_tls_close(sv->slots[i].c);
    return NULL;
}

static struct server *server_start(const char *key, const char *cert)
{
    struct server *sv = calloc(1, sizeof *sv);
    if (sv == NULL)
        return NULL;
    pthread_mutex_init(&sv->mu, NULL);
    if (fv_tls_listen(&sv->srv, "127.0.0.1", "0", key, cert) != FV_OK ||
        pthread_create(&sv->thread, NULL, server_main, sv) != 0) {
        fv_tls_server_close(sv->srv);
        free(sv);
        return NULL;
    }
    return sv;
}

static void server_stop(struct server *sv)
{
    if (sv == NULL)
        return;
    atomic_store(&sv->stop, 1);
    pthread_join(sv->thread, NULL);
    fv_tls_server_close(sv->srv);
    pthread_mutex_destroy(&sv->mu);
    free(sv);
}

static void port_str(char out[16], int port) { snprintf(out, 16, "%d", port); }

/* ---- client helpers ----------------------------------------------------- */

static int conn_to(fv_tls_conn **c, int port, const unsigned char *pin, int timeout_ms)
{
    char p[16];
    port_str(p, port);
    return fv_tls_connect(c, "127.0.0.1", p, pin, timeout_ms);
}

/* Sends `total` random bytes through the echo server and checks they come
 * back, with random write sizes (many beyond one TLS record, so writes are
 * partial) and random small reads. Returns 1 on success. */
static int echo_exchange(fv_tls_conn *c, size_t total, uint64_t seed, int *partial_writes)
{
    unsigned char *out = malloc(total), *in = malloc(total);
    size_t sent = 0, got = 0, frozen = 0;
    int64_t deadline = now_ms() + 60000;
    int ok = 0;

    *partial_writes = 0;
    if (out == NULL || in == NULL)
        goto done;
    fv_random(out, total);
    while (got < total) {
        short ev = 0;
        int progress = 0, rc;
        size_t n;

        if (now_ms() > deadline) {
            fprintf(stderr, "  echo: timed out at %zu sent, %zu received\n", sent, got);
            goto done;
        }
        if (sent < total) {
            size_t len = frozen ? frozen : rnd_between(&seed, 1, total - sent < 40000 ? total - sent : 40000);
            rc = fv_tls_write(c, out + sent, len, &n);
            if (rc == FV_OK) {
                if (n == 0 || n > len)
                    goto done;
                if (n < len)
                    (*partial_writes)++;
                sent += n;
                frozen = 0;
                progress = 1;
            } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
                frozen = len; /* call again with the same arguments */
                ev |= rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT;
            } else {
                fprintf(stderr, "  echo: write failed %d\n", rc);
                goto done;
            }
        }
        {
            size_t want = rnd_between(&seed, 1, total - got < 8192 ? total - got : 8192);
            rc = fv_tls_read(c, in + got, want, &n);
            if (rc == FV_OK) {
                if (n == 0 || n > want)
                    goto done;
                got += n;
                progress = 1;
            } else if (rc == FV_TLS_WANT_READ || rc == FV_TLS_WANT_WRITE) {
                ev |= rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT;
            } else {
                fprintf(stderr, "  echo: read failed %d\n", rc);
                goto done;
            }
        }
        if (!progress && fv_tls_pending(c) == 0) {
            struct pollfd p = {fv_tls_fd(c), ev, 0};
            poll(&p, 1, 100);
        }
    }
    ok = memcmp(in, out, total) == 0;
done:
    free(out);
    free(in);
    return ok;
}

/* ---- raw sockets and a raw mbedtls client ------------------------------- */

/* A blocking TCP socket connected to 127.0.0.1:port, with a 5 s receive
 * timeout, or -1. */
static int raw_connect(int port)
{
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A TCP socket bound to 127.0.0.1 on a free port, listening or not. */
static int raw_bound(int do_listen, int *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        (do_listen && listen(fd, 4) != 0) ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Reads until EOF, reset or the 5 s timeout; 1 if the peer closed. */
static int raw_drain(int fd)
{
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        return n == 0 || errno == ECONNRESET;
    }
}

static int raw_send(void *ctx, const unsigned char *buf, size_t len)
{
    ssize_t n = send(*(int *)ctx, buf, len, MSG_NOSIGNAL);
    return n < 0 ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : (int)n;
}

static int raw_recv(void *ctx, unsigned char *buf, size_t len)
{
    ssize_t n = recv(*(int *)ctx, buf, len, 0);
    return n < 0 ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : (int)n;
}

static int test_rng(void *unused, unsigned char *out, size_t len)
{
    (void)unused;
    fv_random(out, len);
    return 0;
}

/* Handshakes with 127.0.0.1:port as a plain mbedtls client that trusts any
 * certificate, offering TLS 1.0 up to 1.`max_minor - 1` and the given
 * suites (NULL: mbedtls's defaults). Returns mbedtls's handshake result. */
static int raw_tls_client(int port, int max_minor, const int *suites)
{
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    int fd = raw_connect(port), ret;

    if (fd < 0)
        return -1;
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        mbedtls_ssl_conf_rng(&conf, test_rng, NULL);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
        mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_1);
        mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, max_minor);
        if (suites != NULL)
            mbedtls_ssl_conf_ciphersuites(&conf, suites);
        ret = mbedtls_ssl_setup(&ssl, &conf);
    }
    if (ret == 0) {
        mbedtls_ssl_set_bio(&ssl, &fd, raw_send, raw_recv, NULL);
        do
            ret = mbedtls_ssl_handshake(&ssl);
        while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
        if (ret == 0)
            mbedtls_ssl_close_notify(&ssl);
    }
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    close(fd);
    return ret;
}

/* An impostor: a plain mbedtls server that presents a certificate it copied
 * (with the pinned key) but signs with another key, as anyone who saw the
 * real server's certificate could. Serves one handshake. */
struct impostor {
    int lfd;
    const char *cert, *key;
    int result;
};

static void *impostor_main(void *arg)
{
    struct impostor *im = arg;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    struct timeval tv = {5, 0};
    int fd = accept(im->lfd, NULL, NULL), ret;

    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    im->result = -1;
    if (fd < 0)
        return NULL;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ret = mbedtls_x509_crt_parse_file(&crt, im->cert);
    if (ret == 0)
        ret = mbedtls_pk_parse_keyfile(&pk, im->key, NULL);
    if (ret == 0)
        ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        mbedtls_ssl_conf_rng(&conf, test_rng, NULL);
        ret = mbedtls_ssl_conf_own_cert(&conf, &crt, &pk);
    }
    if (ret == 0)
        ret = mbedtls_ssl_setup(&ssl, &conf);
    if (ret == 0) {
        mbedtls_ssl_set_bio(&ssl, &fd, raw_send, raw_recv, NULL);
        do
            ret = mbedtls_ssl_handshake(&ssl);
        while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
    }
    im->result = ret;
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&pk);
    close(fd);
    return NULL;
}

/* ---- the tests ---------------------------------------------------------- */

static char dir[64];
static char key1[128], cert1[128], key2[128], cert2[128];
static unsigned char pin1[FV_TLS_PIN_BYTES], pin2[FV_TLS_PIN_BYTES];

static void test_identity(void)
{
    unsigned char again[FV_TLS_PIN_BYTES], p[FV_TLS_PIN_BYTES];
    struct stat st;
    char other[160];

    CHECK_EQ(fv_tls_identity_create(key1, cert1, pin1), FV_OK);
    CHECK(stat(key1, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(cert1, &st) == 0 && S_ISREG(st.st_mode));
    CHECK_EQ(fv_tls_identity_pin(cert1, again), FV_OK);
    CHECK(memcmp(again, pin1, sizeof pin1) == 0);

    /* Never overwrites, and leaves what is there alone. */
    memset(p, 0xAA, sizeof p);
    CHECK_EQ(fv_tls_identity_create(key1, cert1, p), FV_EEXIST);
    CHECK_EQ(fv_tls_identity_pin(cert1, again), FV_OK);
    CHECK(memcmp(again, pin1, sizeof pin1) == 0);
    /* A new key path with an existing certificate: no key file left over. */
    snprintf(other, sizeof other, "%s/other.key", dir);
    CHECK_EQ(fv_tls_identity_create(other, cert1, p), FV_EEXIST);
    CHECK(access(other, F_OK) != 0);
    /* An existing key with a new certificate path: no certificate left. */
    snprintf(other, sizeof other, "%s/other.crt", dir);
    CHECK_EQ(fv_tls_identity_create(key1, other, p), FV_EEXIST);
    CHECK(access(other, F_OK) != 0);

    CHECK_EQ(fv_tls_identity_create(key2, cert2, pin2), FV_OK);
    CHECK(memcmp(pin1, pin2, sizeof pin1) != 0);

    snprintf(other, sizeof other, "%s/missing.crt", dir);
    CHECK_EQ(fv_tls_identity_pin(other, p), FV_EIO);
    CHECK_EQ(fv_tls_identity_pin(key1, p), FV_ECORRUPT); /* a key is no certificate */
    CHECK_EQ(fv_tls_identity_create(NULL, cert1, p), FV_EINVAL);
}

/* ---- certificates ------------------------------------------------------- */

static int64_t crt_time(const mbedtls_x509_time *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = t->year - 1900;
    tm.tm_mon = t->mon - 1;
    tm.tm_mday = t->day;
    tm.tm_hour = t->hour;
    tm.tm_min = t->min;
    tm.tm_sec = t->sec;
    return (int64_t)timegm(&tm);
}

/* The certificate file's first certificate: its CN into cn, its dates. */
static int crt_read(const char *path, char cn[256], int64_t *from, int64_t *to,
                    int *san_ok)
{
    mbedtls_x509_crt crt;
    int ok = 0;

    mbedtls_x509_crt_init(&crt);
    if (mbedtls_x509_crt_parse_file(&crt, path) == 0) {
        const mbedtls_x509_name *n;
        cn[0] = '\0';
        for (n = &crt.subject; n != NULL; n = n->next)
            if (n->oid.len == 3 && memcmp(n->oid.p, "\x55\x04\x03", 3) == 0 &&
                n->val.len < 256) {
                memcpy(cn, n->val.p, n->val.len);
                cn[n->val.len] = '\0';
            }
        *from = crt_time(&crt.valid_from);
        *to = crt_time(&crt.valid_to);
        /* subjectAltName: one dNSName equal to the CN. */
        *san_ok = crt.subject_alt_names.buf.len == strlen(cn) &&
                  memcmp(crt.subject_alt_names.buf.p, cn, strlen(cn)) == 0 &&
                  crt.subject_alt_names.next == NULL;
        ok = 1;
    }
    mbedtls_x509_crt_free(&crt);
    return ok;
}

static int file_same(const char *a, const char *b)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    CHECK(system(cmd) == 0);
}

/* Writes a certificate for the key in `subject_key` (a PEM file) signed by
 * `issuer_key`, with the given names and dates ("YYYYMMDDhhmmss"), appending
 * to `path` when `append`. */
static void write_crt(const char *path, int append, const char *subject_key,
                      const char *issuer_key, const char *subject,
                      const char *issuer, const char *from, const char *to,
                      int is_ca)
{
    mbedtls_pk_context sk, ik;
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    unsigned char pem[4096];
    FILE *f;

    mbedtls_pk_init(&sk);
    mbedtls_pk_init(&ik);
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    CHECK_EQ(mbedtls_pk_parse_keyfile(&sk, subject_key, NULL), 0);
    CHECK_EQ(mbedtls_pk_parse_keyfile(&ik, issuer_key, NULL), 0);
    CHECK_EQ(mbedtls_mpi_lset(&serial, 4242), 0);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &sk);
    mbedtls_x509write_crt_set_issuer_key(&w, &ik);
    CHECK_EQ(mbedtls_x509write_crt_set_subject_name(&w, subject), 0);
    CHECK_EQ(mbedtls_x509write_crt_set_issuer_name(&w, issuer), 0);
    CHECK_EQ(mbedtls_x509write_crt_set_serial(&w, &serial), 0);
    CHECK_EQ(mbedtls_x509write_crt_set_validity(&w, from, to), 0);
    CHECK_EQ(mbedtls_x509write_crt_set_basic_constraints(&w, is_ca, -1), 0);
    CHECK_EQ(mbedtls_x509write_crt_pem(&w, pem, sizeof pem, test_rng, NULL), 0);
    f = fopen(path, append ? "a" : "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs((const char *)pem, f);
        fclose(f);
    }
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    mbedtls_pk_free(&sk);
    mbedtls_pk_free(&ik);
}

static void test_certificates(void)
{
    char k[160], c[160], ca_k[160], ca_c[160], chain[160], saved[160];
    char cn[256], cn2[256];
    unsigned char pin[FV_TLS_PIN_BYTES], p[FV_TLS_PIN_BYTES], junk[FV_TLS_PIN_BYTES];
    int64_t from, to, from2, to2, now = (int64_t)time(NULL);
    int san, renewed = -1;
    char *csr = NULL;
    struct server *sv;

    snprintf(k, sizeof k, "%s/named.key", dir);
    snprintf(c, sizeof c, "%s/named.crt", dir);
    snprintf(ca_k, sizeof ca_k, "%s/ca.key", dir);
    snprintf(ca_c, sizeof ca_c, "%s/ca.crt", dir);
    snprintf(chain, sizeof chain, "%s/chain.pem", dir);
    snprintf(saved, sizeof saved, "%s/saved.crt", dir);

    /* Host names: DNS names only, so nothing can be added to the subject. */
    CHECK(fv_tls_hostname_ok("mail.example.org"));
    CHECK(fv_tls_hostname_ok("host-1"));
    CHECK(!fv_tls_hostname_ok(""));
    CHECK(!fv_tls_hostname_ok("10.0.0.1"));
    CHECK(!fv_tls_hostname_ok("a.example.org,O=FieldVault"));
    CHECK(!fv_tls_hostname_ok("-a.example.org"));
    CHECK(!fv_tls_hostname_ok("a-.example.org"));
    CHECK(!fv_tls_hostname_ok("a..org"));
    CHECK(!fv_tls_hostname_ok("a.org."));
    CHECK(!fv_tls_hostname_ok("x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    CHECK_EQ(fv_tls_identity_create_named(k, c, "bad name", junk), FV_EINVAL);
    CHECK(access(k, F_OK) != 0 && access(c, F_OK) != 0);

    /* An ordinary-looking self-signed certificate: the name, a year from a
     * little before now, a SAN, nothing about localhost or 2099. */
    CHECK_EQ(fv_tls_identity_create_named(k, c, "mail.example.org", pin), FV_OK);
    CHECK(crt_read(c, cn, &from, &to, &san));
    CHECK(strcmp(cn, "mail.example.org") == 0);
    CHECK(san);
    CHECK(from <= now - 3600 && from >= now - 2 * 86400 - 5);
    CHECK_EQ(to - from, 365 * 86400);
    /* The default name is never "localhost"; the first certificate too. */
    CHECK(crt_read(cert1, cn2, &from2, &to2, &san));
    CHECK(strcmp(cn2, "localhost") != 0 && cn2[0] != '\0');
    CHECK(to2 - from2 == 365 * 86400);

    /* Renewal: nothing to do for a fresh one; near its end, the same name
     * and key with new dates. */
    copy_file(c, saved);
    CHECK_EQ(fv_tls_cert_renew(k, c, NULL, now, &renewed), FV_OK);
    CHECK_EQ(renewed, 0);
    CHECK(file_same(c, saved));
    CHECK_EQ(fv_tls_cert_renew(k, c, "other.example.org", to - 10 * 86400,
                               &renewed), FV_OK);
    CHECK_EQ(renewed, 1);
    CHECK(crt_read(c, cn, &from2, &to2, &san));
    CHECK(strcmp(cn, "mail.example.org") == 0);
    CHECK(from2 > from + 300 * 86400);
    CHECK_EQ(fv_tls_identity_pin(c, p), FV_OK);
    CHECK(memcmp(p, pin, sizeof p) == 0);
    /* An older build's certificate (CN=localhost, until 2099) is replaced
     * at once, under the name given. */
    write_crt(c, 0, k, k, "CN=localhost", "CN=localhost", "20200101000000",
              "20991231235959", 0);
    CHECK_EQ(fv_tls_cert_renew(k, c, "vault.example.org", now, &renewed), FV_OK);
    CHECK_EQ(renewed, 1);
    CHECK(crt_read(c, cn, &from2, &to2, &san));
    CHECK(strcmp(cn, "vault.example.org") == 0 && san);
    CHECK_EQ(to2 - from2, 365 * 86400);
    CHECK_EQ(fv_tls_identity_pin(c, p), FV_OK);
    CHECK(memcmp(p, pin, sizeof p) == 0);
    /* A certificate for another key is damage, not renewed. */
    CHECK_EQ(fv_tls_cert_renew(key2, c, NULL, now, &renewed), FV_ECORRUPT);

    /* A CA signs the request: the certificate is for the pinned key. */
    CHECK_EQ(fv_tls_identity_create_named(ca_k, ca_c, "ca.example.net", junk),
             FV_OK);
    CHECK_EQ(fv_tls_csr(k, c, NULL, &csr), FV_OK);
    if (csr != NULL) {
        mbedtls_x509_csr req;
        mbedtls_pk_context key;
        mbedtls_x509_csr_init(&req);
        mbedtls_pk_init(&key);
        CHECK_EQ(mbedtls_x509_csr_parse(&req, (const unsigned char *)csr,
                                        strlen(csr) + 1), 0);
        CHECK_EQ(mbedtls_pk_parse_keyfile(&key, k, NULL), 0);
        CHECK_EQ(mbedtls_pk_check_pair(&req.pk, &key), 0);
        CHECK(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----") == csr);
        mbedtls_x509_csr_free(&req);
        mbedtls_pk_free(&key);
        free(csr);
    }
    CHECK_EQ(fv_tls_csr(k, c, "bad,name", &csr), FV_EINVAL);
    write_crt(chain, 0, k, ca_k, "CN=vault.example.org", "CN=ca.example.net",
              "20250101000000", "20350101000000", 0);
    write_crt(chain, 1, ca_k, ca_k, "CN=ca.example.net", "CN=ca.example.net",
              "20250101000000", "20350101000000", 1);
    copy_file(c, saved);
    CHECK_EQ(fv_tls_cert_install(k, c, chain), FV_OK);
    CHECK_EQ(fv_tls_identity_pin(c, p), FV_OK);
    CHECK(memcmp(p, pin, sizeof p) == 0);
    /* The server never replaces a CA's certificate, even near its end. */
    CHECK_EQ(fv_tls_cert_renew(k, c, NULL, (int64_t)2051222400, &renewed), FV_OK);
    CHECK_EQ(renewed, 0);
    sv = server_start(k, c);
    CHECK(sv != NULL);
    if (sv != NULL) {
        fv_tls_conn *conn = NULL;
        CHECK_EQ(conn_to(&conn, fv_tls_server_port(sv->srv), pin, 5000), FV_OK);
        fv_tls_close(conn);
        server_stop(sv);
    }
    /* A CA's certificate for another key is refused; nothing changes. */
    copy_file(c, saved);
    write_crt(chain, 0, key2, ca_k, "CN=vault.example.org", "CN=ca.example.net",
              "20250101000000", "20350101000000", 0);
    CHECK_EQ(fv_tls_cert_install(k, c, chain), FV_EPIN);
    CHECK(file_same(c, saved));
    CHECK_EQ(fv_tls_cert_install(k, c, k), FV_ECORRUPT); /* a key, no chain */
    CHECK(file_same(c, saved));

    /* Reloading: a bad pair leaves the identity in use. */
    {
        fv_tls_server *s = NULL;
        CHECK_EQ(fv_tls_listen(&s, "127.0.0.1", "0", k, c), FV_OK);
        CHECK_EQ(fv_tls_server_reload(s, k, cert2), FV_ECORRUPT);
        CHECK_EQ(fv_tls_server_reload(s, key2, cert2), FV_OK);
        fv_tls_server_close(s);
    }
    unlink(k), unlink(c), unlink(ca_k), unlink(ca_c), unlink(chain),
        unlink(saved);
}

static void test_listen_errors(void)
{
    fv_tls_server *s = (fv_tls_server *)1;
    char missing[160];

    /* A key and a certificate that do not belong together. */
    CHECK_EQ(fv_tls_listen(&s, "127.0.0.1", "0", key1, cert2), FV_ECORRUPT);
    CHECK(s == NULL);
    snprintf(missing, sizeof missing, "%s/missing.key", dir);
    CHECK_EQ(fv_tls_listen(&s, "127.0.0.1", "0", missing, cert1), FV_EIO);
    CHECK_EQ(fv_tls_listen(&s, "127.0.0.1", "not-a-port", key1, cert1), FV_ENET);
    fv_tls_server_close(NULL);
    fv_tls_close(NULL);
}

static void test_echo_and_binding(struct server *sv)
{
    fv_tls_conn *c = NULL, *c2 = NULL;
    unsigned char b1[FV_TLS_BINDING_BYTES], b2[FV_TLS_BINDING_BYTES], p[FV_TLS_PIN_BYTES];
    struct stats st, st0 = snap(sv);
    int port = fv_tls_server_port(sv->srv), partial = 0;
    size_t n;

    CHECK(port > 0);
    CHECK_EQ(conn_to(&c, port, pin1, 5000), FV_OK);
    if (c == NULL)
        return;
    CHECK_EQ(fv_tls_peer_pin(c, p), FV_OK);
    CHECK(memcmp(p, pin1, sizeof p) == 0);
    CHECK(echo_exchange(c, MEGABYTE, 42, &partial));
    CHECK(partial > 0);
    printf("  1 MiB echoed both ways; %d partial writes\n", partial);
    WAIT_UNTIL(sv, st, st.hs_ok == st0.hs_ok + 1);
    CHECK_EQ(st.hs_ok, st0.hs_ok + 1);
    CHECK_EQ(st.bytes_in - st0.bytes_in, MEGABYTE);
    CHECK_EQ(fv_tls_binding(c, b1), FV_OK);
    CHECK(memcmp(b1, st.last_binding, sizeof b1) == 0);
    CHECK(memcmp(b1, (unsigned char[FV_TLS_BINDING_BYTES]){0}, sizeof b1) != 0);

    /* A second session: its own binding, again the same at both ends. */
    CHECK_EQ(conn_to(&c2, port, pin1, 5000), FV_OK);
    if (c2 != NULL) {
        CHECK(echo_exchange(c2, 1000, 7, &partial));
        WAIT_UNTIL(sv, st, st.hs_ok == st0.hs_ok + 2);
        CHECK_EQ(fv_tls_binding(c2, b2), FV_OK);
        CHECK(memcmp(b2, st.last_binding, sizeof b2) == 0);
        CHECK(memcmp(b1, b2, sizeof b1) != 0);
    }

    /* close_notify reaches the server as FV_EEOF. */
    st0 = snap(sv);
    fv_tls_close(c);
    WAIT_UNTIL(sv, st, st.eofs == st0.eofs + 1);
    CHECK_EQ(st.eofs, st0.eofs + 1);
    fv_tls_close(c2);
    WAIT_UNTIL(sv, st, st.eofs == st0.eofs + 2);
    CHECK_EQ(st.eofs, st0.eofs + 2);

    /* The server hangs up: the client reads FV_EEOF, sticky. */
    CHECK_EQ(conn_to(&c, port, pin1, 5000), FV_OK);
    if (c != NULL) {
        unsigned char buf[16];
        int rc;
        int64_t deadline = now_ms() + 5000;

        WAIT_UNTIL(sv, st, st.hs_ok == st0.hs_ok + 1);
        atomic_store(&sv->close_all, 1);
        do {
            struct pollfd pf = {fv_tls_fd(c), POLLIN, 0};
            poll(&pf, 1, 50);
            rc = fv_tls_read(c, buf, sizeof buf, &n);
        } while (rc == FV_TLS_WANT_READ && now_ms() < deadline);
        CHECK_EQ(rc, FV_EEOF);
        CHECK_EQ(fv_tls_read(c, buf, sizeof buf, &n), FV_EEOF);
        CHECK_EQ(fv_tls_write(c, buf, sizeof buf, &n), FV_EEOF);
        fv_tls_close(c);
    }
}

static void test_wrong_pin(struct server *sv1, struct server *sv2)
{
    fv_tls_conn *c = (fv_tls_conn *)1;
    unsigned char bad[FV_TLS_PIN_BYTES];
    struct stats st, st0 = snap(sv1);
    int64_t t0;

    memcpy(bad, pin1, sizeof bad);
    bad[31] ^= 1;
    t0 = now_ms();
    CHECK_EQ(conn_to(&c, fv_tls_server_port(sv1->srv), bad, 5000), FV_EPIN);
    CHECK(c == NULL);
    CHECK(now_ms() - t0 < 2000);
    WAIT_UNTIL(sv1, st, st.hs_fail == st0.hs_fail + 1);
    CHECK_EQ(st.hs_fail, st0.hs_fail + 1);
    CHECK_EQ(st.last_hs_error, FV_ETLS); /* the client's bad_certificate alert */
    CHECK_EQ(st.hs_ok, st0.hs_ok);
    CHECK_EQ(st.bytes_in, st0.bytes_in);

    /* Another server, another key: the first pin does not open it. */
    st0 = snap(sv2);
    CHECK_EQ(conn_to(&c, fv_tls_server_port(sv2->srv), pin1, 5000), FV_EPIN);
    WAIT_UNTIL(sv2, st, st.hs_fail == st0.hs_fail + 1);
    CHECK_EQ(st.hs_ok, st0.hs_ok);
    CHECK_EQ(st.bytes_in, st0.bytes_in);
    /* ...and its own pin does. */
    CHECK_EQ(conn_to(&c, fv_tls_server_port(sv2->srv), pin2, 5000), FV_OK);
    if (c != NULL) {
        unsigned char p[FV_TLS_PIN_BYTES];
        CHECK_EQ(fv_tls_peer_pin(c, p), FV_OK);
        CHECK(memcmp(p, pin2, sizeof p) == 0);
    }
    fv_tls_close(c);
}

/* The pinned key in a copied certificate is not enough: the handshake
 * proves possession of the private key. */
static void test_impostor(void)
{
    struct impostor im = {-1, cert1, key2, 0};
    fv_tls_conn *c = NULL;
    pthread_t t;
    int port = 0;

    im.lfd = raw_bound(1, &port);
    CHECK(im.lfd >= 0);
    if (im.lfd < 0 || pthread_create(&t, NULL, impostor_main, &im) != 0)
        return;
    CHECK_EQ(conn_to(&c, port, pin1, 5000), FV_ETLS);
    CHECK(c == NULL);
    pthread_join(t, NULL);
    CHECK(im.result != 0);
    close(im.lfd);
}

static void test_protocol_policy(struct server *sv)
{
    static const int cbc_only[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, 0};
    static const int ours[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};
    int port = fv_tls_server_port(sv->srv);
    struct stats st, st0 = snap(sv);

    /* Control: a plain TLS 1.2 client with our suite gets in... */
    CHECK_EQ(raw_tls_client(port, MBEDTLS_SSL_MINOR_VERSION_3, ours), 0);
    WAIT_UNTIL(sv, st, st.hs_ok == st0.hs_ok + 1);
    CHECK_EQ(st.hs_ok, st0.hs_ok + 1);
    /* ...with TLS 1.1 at most it does not. */
    CHECK(raw_tls_client(port, MBEDTLS_SSL_MINOR_VERSION_2, NULL) != 0);
    WAIT_UNTIL(sv, st, st.hs_fail == st0.hs_fail + 1);
    CHECK_EQ(st.hs_fail, st0.hs_fail + 1);
    CHECK_EQ(st.last_hs_error, FV_ETLS);
    /* Nor with only a CBC suite. */
    CHECK(raw_tls_client(port, MBEDTLS_SSL_MINOR_VERSION_3, cbc_only) != 0);
    WAIT_UNTIL(sv, st, st.hs_fail == st0.hs_fail + 2);
    CHECK_EQ(st.hs_fail, st0.hs_fail + 2);
    CHECK_EQ(st.hs_ok, st0.hs_ok + 1);
}

static void test_garbage(struct server *sv)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    unsigned char rec[5 + 64], noise[4096];
    const unsigned char *inputs[3] = {(const unsigned char *)http, rec, noise};
    size_t lens[3] = {sizeof http - 1, sizeof rec, sizeof noise};
    int port = fv_tls_server_port(sv->srv);

    /* A handshake record header with a nonsense body, then nothing. */
    rec[0] = 0x16, rec[1] = 3, rec[2] = 3, rec[3] = 0, rec[4] = 64;
    fv_random(rec + 5, 64);
    fv_random(noise, sizeof noise);
    for (int i = 0; i < 3; i++) {
        struct stats st, st0 = snap(sv);
        int fd = raw_connect(port);

        CHECK(fd >= 0);
        if (fd < 0)
            continue;
        CHECK(send(fd, inputs[i], lens[i], MSG_NOSIGNAL) == (ssize_t)lens[i]);
        shutdown(fd, SHUT_WR);
        CHECK(raw_drain(fd)); /* the server hangs up */
        close(fd);
        WAIT_UNTIL(sv, st, st.hs_fail == st0.hs_fail + 1);
        CHECK_EQ(st.hs_fail, st0.hs_fail + 1);
        CHECK_EQ(st.last_hs_error, FV_ETLS);
        CHECK_EQ(st.bytes_in, st0.bytes_in);
    }
}

static void test_network_failures(struct server *sv)
{
    fv_tls_conn *c = NULL;
    int port, fd, elapsed;
    int64_t t0;
    char p[16];

    /* A bound port nobody listens on: refused at once. */
    fd = raw_bound(0, &port);
    CHECK(fd >= 0);
    t0 = now_ms();
    CHECK_EQ(conn_to(&c, port, pin1, 5000), FV_ENET);
    CHECK(now_ms() - t0 < 1000);
    close(fd);

    /* The kernel completes TCP, nothing ever answers the ClientHello. */
    fd = raw_bound(1, &port);
    CHECK(fd >= 0);
    t0 = now_ms();
    CHECK_EQ(conn_to(&c, port, pin1, 500), FV_ENET);
    elapsed = (int)(now_ms() - t0);
    CHECK(elapsed >= 450 && elapsed < 2000);
    printf("  silent server: FV_ENET after %d ms (timeout 500)\n", elapsed);
    close(fd);

    CHECK_EQ(fv_tls_connect(&c, "127.0.0.1", "1", pin1, 0), FV_EINVAL);
    port_str(p, fv_tls_server_port(sv->srv));
    CHECK_EQ(fv_tls_connect(&c, "no-such-host.invalid", p, pin1, 500), FV_ENET);
}

/* A client that vanishes with a TCP reset: the server reads FV_ENET. A
 * client that keeps writing to a server that hung up: FV_ENET, no SIGPIPE. */
static void test_reset(struct server *sv)
{
    fv_tls_conn *c = NULL;
    struct stats st, st0 = snap(sv);
    int port = fv_tls_server_port(sv->srv), partial, rc = FV_OK;

    CHECK_EQ(conn_to(&c, port, pin1, 5000), FV_OK);
    if (c != NULL) {
        struct linger lg = {1, 0};
        int devnull = open("/dev/null", O_RDWR);

        CHECK(echo_exchange(c, 100, 3, &partial));
        /* Swap the socket for /dev/null under the connection: the socket's
         * last reference goes, and with linger 0 that sends a RST. */
        CHECK(setsockopt(fv_tls_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        CHECK(dup2(devnull, fv_tls_fd(c)) == fv_tls_fd(c));
        close(devnull);
        WAIT_UNTIL(sv, st, st.nets == st0.nets + 1);
        CHECK_EQ(st.nets, st0.nets + 1);
        fv_tls_close(c);
    }

    c = NULL;
    st0 = snap(sv);
    CHECK_EQ(conn_to(&c, port, pin1, 5000), FV_OK);
    if (c != NULL) {
        unsigned char buf[4096] = {0};
        int64_t deadline = now_ms() + 5000;
        size_t n;

        WAIT_UNTIL(sv, st, st.hs_ok == st0.hs_ok + 1);
        atomic_store(&sv->close_all, 1);
        WAIT_UNTIL(sv, st, st.closed_by_server == st0.closed_by_server + 1);
        while (now_ms() < deadline) {
            rc = fv_tls_write(c, buf, sizeof buf, &n);
            if (rc < 0)
                break;
            if (rc > 0) {
                struct pollfd pf = {fv_tls_fd(c), POLLOUT, 0};
                poll(&pf, 1, 50);
            }
            sleep_ms(1);
        }
        CHECK_EQ(rc, FV_ENET);
        fv_tls_close(c);
    }
}

/* The server may be closed before the connections it accepted. */
static void test_lifetimes(void)
{
    fv_tls_server *s = NULL;
    fv_tls_conn *c = NULL;
    unsigned char buf[8], b[FV_TLS_BINDING_BYTES];
    size_t n;
    int fd;

    CHECK_EQ(fv_tls_listen(&s, "127.0.0.1", "0", key1, cert1), FV_OK);
    if (s == NULL)
        return;
    CHECK_EQ(fv_tls_accept(s, &c), FV_ENOTFOUND);
    fd = raw_connect(fv_tls_server_port(s));
    CHECK(fd >= 0);
    for (int i = 0; i < 100 && fv_tls_accept(s, &c) == FV_ENOTFOUND; i++)
        sleep_ms(5);
    CHECK(c != NULL);
    fv_tls_server_close(s);
    if (c != NULL) {
        CHECK_EQ(fv_tls_read(c, buf, sizeof buf, &n), FV_EINVAL); /* no handshake yet */
        CHECK_EQ(fv_tls_binding(c, b), FV_EINVAL);
        CHECK_EQ(fv_tls_peer_pin(c, b), FV_EINVAL);
        CHECK_EQ(fv_tls_handshake(c), FV_TLS_WANT_READ);
        CHECK(fv_tls_fd(c) >= 0);
        CHECK((fcntl(fv_tls_fd(c), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((fcntl(fv_tls_fd(c), F_GETFD) & FD_CLOEXEC) != 0);
        close(fd);
        fd = -1;
        /* The client went away mid-handshake. */
        for (int i = 0; i < 100; i++) {
            int rc = fv_tls_handshake(c);
            if (rc != FV_TLS_WANT_READ) {
                CHECK_EQ(rc, FV_ETLS);
                break;
            }
            sleep_ms(5);
        }
        fv_tls_close(c);
    }
    if (fd >= 0)
        close(fd);
}

static void test_memory(struct server *sv)
{
#if defined(HAVE_MALLINFO2) && !defined(UNDER_ASAN)
    enum { N = 8 };
    fv_tls_conn *cs[N] = {0};
    fv_tls_server *s = NULL;
    struct stats st, st0 = snap(sv);
    size_t m0, m1, m2, m3;
    int port = fv_tls_server_port(sv->srv);

    /* The server thread is idle between polls, so the counters move only
     * with our connections (both ends live in this process). */
    m0 = mallinfo2().uordblks;
    for (int i = 0; i < N; i++)
        CHECK_EQ(conn_to(&cs[i], port, pin1, 5000), FV_OK);
    WAIT_UNTIL(sv, st, st.hs_ok == st0.hs_ok + N);
    sleep_ms(50);
    m1 = mallinfo2().uordblks;
    atomic_store(&sv->close_all, 1);
    WAIT_UNTIL(sv, st, st.closed_by_server == st0.closed_by_server + N);
    sleep_ms(50);
    m2 = mallinfo2().uordblks;
    for (int i = 0; i < N; i++)
        fv_tls_close(cs[i]);
    printf("  per connection after the handshake: client %zu bytes, server %zu bytes\n",
           (m2 - m0) / N, (m1 - m2) / N);

    /* The server end alone, its client in a child process: the peak during
     * the handshake is what each half-open connection can cost a server. */
    CHECK_EQ(fv_tls_listen(&s, "127.0.0.1", "0", key1, cert1), FV_OK);
    if (s != NULL) {
        fv_tls_conn *c = NULL;
        size_t peak;
        int rc = FV_ENOTFOUND, status = 0;
        pid_t pid = fork();

        if (pid == 0) {
            fv_tls_conn *cc = NULL;
            unsigned char b[1];
            size_t n;
            if (conn_to(&cc, fv_tls_server_port(s), pin1, 5000) != FV_OK)
                _exit(1);
            /* Wait for the parent to hang up. */
            while (fv_tls_read(cc, b, 1, &n) == FV_TLS_WANT_READ) {
                struct pollfd pf = {fv_tls_fd(cc), POLLIN, 0};
                poll(&pf, 1, 100);
            }
            _exit(0);
        }
        CHECK(pid > 0);
        for (int i = 0; i < 500 && rc == FV_ENOTFOUND; i++) {
            struct pollfd pf = {fv_tls_server_fd(s), POLLIN, 0};
            poll(&pf, 1, 10);
            m0 = mallinfo2().uordblks;
            rc = fv_tls_accept(s, &c);
        }
        CHECK_EQ(rc, FV_OK);
        if (c != NULL) {
            m3 = peak = mallinfo2().uordblks;
            do {
                size_t m;
                rc = fv_tls_handshake(c);
                m = mallinfo2().uordblks;
                peak = m > peak ? m : peak;
                if (rc > 0) {
                    struct pollfd pf = {fv_tls_fd(c), rc == FV_TLS_WANT_READ ? POLLIN : POLLOUT, 0};
                    poll(&pf, 1, 100);
                }
            } while (rc > 0);
            CHECK_EQ(rc, FV_OK);
            m1 = mallinfo2().uordblks;
            printf("  server end alone: %zu bytes accepted, %zu at the handshake's peak, "
                   "%zu after it (mbedtls config %zu + context %zu of that)\n",
                   m3 - m0, peak - m0, m1 - m0, sizeof(mbedtls_ssl_config),
                   sizeof(mbedtls_ssl_context));
            fv_tls_close(c);
        }
        if (pid > 0) {
            CHECK(waitpid(pid, &status, 0) == pid);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        fv_tls_server_close(s);
    }
#else
    (void)sv;
    printf("  memory measurement skipped (sanitizer or no mallinfo2)\n");
#endif
}

int main(void)
{
    struct server *sv1 = NULL, *sv2 = NULL;

    if (fv_crypto_init() != FV_OK) {
        fprintf(stderr, "test_tls: crypto init failed\n");
        return 1;
    }
    snprintf(dir, sizeof dir, "/tmp/fv-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(key1, sizeof key1, "%s/server1.key", dir);
    snprintf(cert1, sizeof cert1, "%s/server1.crt", dir);
    snprintf(key2, sizeof key2, "%s/server2.key", dir);
    snprintf(cert2, sizeof cert2, "%s/server2.crt", dir);

    test_identity();
    test_listen_errors();
    test_certificates();
    sv1 = server_start(key1, cert1);
    sv2 = server_start(key2, cert2);
    CHECK(sv1 != NULL && sv2 != NULL);
    if (sv1 != NULL && sv2 != NULL) {
        CHECK(fv_tls_server_port(sv1->srv) != fv_tls_server_port(sv2->srv));
        test_echo_and_binding(sv1);
        test_wrong_pin(sv1, sv2);
        test_impostor();
        test_protocol_policy(sv1);
        test_garbage(sv1);
        test_network_failures(sv1);
        test_reset(sv1);
        test_lifetimes();
        test_memory(sv1);
        {
            struct stats st = snap(sv1);
            printf("  server 1: %d accepted, %d handshakes, %d refused\n",
                   st.accepted, st.hs_ok, st.hs_fail);
        }
    }
    server_stop(sv1);
    server_stop(sv2);

    unlink(key1), unlink(cert1), unlink(key2), unlink(cert2);
    rmdir(dir);
    return check_summary("test_tls");
}
