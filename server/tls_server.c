/*
 * tls_server.c - the server's side of TLS (see tls_server.h): its identity
 * (an ECDSA P-256 key and a certificate that looks like any self-signed
 * one), certificate renewal, requests and installs, listening and
 * accepting. In the server library only; the connection itself and what
 * both sides share are sync/tls.c (tls_internal.h).
 *
 * The server's certificate and key are reference-counted: the server and
 * each connection it accepted hold a reference, so fv_tls_server_close and
 * fv_tls_close may come in any order, from any thread.
 */
#include "tls_server.h"
#include "tls_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/x509_csr.h>

#include "civil.h"
#include "crypto.h"
#include "fileio.h"
#include "fieldvault.h"

#define FV_TLS_FILE_MAX (64 * 1024) /* a key or certificate PEM file */
#define FV_TLS_KEY_PEM_MAX 1024     /* a P-256 key in PEM is ~230 bytes */
#define FV_TLS_CRT_PEM_MAX 4096     /* our certificate in PEM is ~600 bytes */
/* Connections the kernel queues before accept: a burst of devices waits
 * there (the kernel caps it at net.core.somaxconn) instead of having its
 * SYNs dropped and retried for two minutes while the loop is busy. */
#define FV_TLS_BACKLOG 4096
/* The certificate crosses the network in clear in TLS 1.2: it must look
 * like any self-signed one (a host name, dates like an ordinary issuer's),
 * never like FieldVault. Devices never read it; they pin the key. The
 * generic name is used only when neither the operator nor the machine
 * gives one. */
#define FV_TLS_GENERIC_HOST "localhost.localdomain"
#define FV_TLS_VALID_DAYS 365            /* `openssl req -x509 -days 365` */
#define FV_TLS_BACKDATE_MAX (2 * 86400)  /* not_before: 1 h to 2 days ago */
#define FV_TLS_LEGACY_DAYS 398           /* longer: made by an older build */
#define FV_TLS_RENEW_LEFT (30 * 86400)   /* re-issued with this much left */


struct tls_identity {
    atomic_int refs;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
};

struct fv_tls_server {
    int fd;
    int port;
    struct tls_identity *id;
};

/* ---- files ------------------------------------------------------------- */

/* Reads a whole small file into malloc'd memory with a NUL appended (the
 * PEM parsers want it); *len counts the NUL. The caller wipes and frees. */
static int read_file(const char *path, unsigned char **out, size_t *len)
{
    struct stat st;
    unsigned char *buf = NULL;
    size_t size, got = 0;
    int fd, rc = FV_EIO;

    *out = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FV_EIO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto cleanup;
    if (st.st_size < 0 || st.st_size > FV_TLS_FILE_MAX) {
        rc = FV_ECORRUPT;
        goto cleanup;
    }
    size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (buf == NULL) {
        rc = FV_ENOMEM;
        goto cleanup;
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto cleanup;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = 0;
    *out = buf;
    *len = got + 1;
    buf = NULL;
    rc = FV_OK;
cleanup:
    if (buf != NULL) {
        fv_wipe(buf, size + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

static int load_cert(mbedtls_x509_crt *crt, const char *path)
{
    unsigned char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len);

    if (rc != FV_OK)
        return rc;
    /* A positive result means some certificates in the file did not parse. */
    if (mbedtls_x509_crt_parse(crt, buf, len) != 0)
        rc = FV_ECORRUPT;
    free(buf);
    return rc;
}

static int is_p256_key(const mbedtls_pk_context *pk)
{
    return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
           mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

/* ---- identity ----------------------------------------------------------- */

int fv_tls_hostname_ok(const char *name)
{
    size_t len, label = 0;
    int digits = 1; /* the label so far is all digits */

    if (name == NULL || (len = strlen(name)) == 0 || len > FV_TLS_HOSTNAME_MAX)
        return 0;
    /* Letters, digits, '-' and '.', labels of 1 to 63 that neither start nor
     * end with '-'. This also keeps ',' and '=' out of the subject string
     * mbedtls parses ("CN=..."), so a name cannot add attributes. */
    for (size_t i = 0; i <= len; i++) {
        char ch = name[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || name[i - 1] == '-')
                return 0;
            /* No top-level label is all digits: that is an IPv4 address. */
            if (ch == '\0' && digits)
                return 0;
            label = 0;
            digits = 1;
            continue;
        }
        if (ch < '0' || ch > '9')
            digits = 0;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-'))
            return 0;
        if (label == 0 && ch == '-')
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

/* The machine's host name when it is a usable DNS name (what Debian's own
 * snake-oil certificate carries), else FV_TLS_GENERIC_HOST. */
static void default_hostname(char out[FV_TLS_HOSTNAME_MAX + 1])
{
    char h[FV_TLS_HOSTNAME_MAX + 2];

    memset(h, 0, sizeof h);
    if (gethostname(h, sizeof h - 1) == 0 && fv_tls_hostname_ok(h) &&
        strcmp(h, "localhost") != 0) {
        memcpy(out, h, strlen(h) + 1);
        return;
    }
    memcpy(out, FV_TLS_GENERIC_HOST, sizeof FV_TLS_GENERIC_HOST);
}

/* "YYYYMMDDHHMMSS", the form mbedtls_x509write_crt_set_validity takes. */
static int x509_time(char out[15], int64_t t)
{
    fv_civil c;

    fv_civil_from_unix(&c, t);
    if (c.year < 1950 || c.year > 9999)
        return -1;
    snprintf(out, 15, "%04d%02d%02d%02d%02d%02d", (int)c.year, c.month, c.day,
             c.hour, c.min, c.sec);
    return 0;
}

static int64_t x509_unix(const mbedtls_x509_time *t)
{
    return fv_days_from_civil(t->year, t->mon, t->day) * 86400 +
           (int64_t)t->hour * 3600 + t->min * 60 + t->sec;
}

/* subjectAltName = SEQUENCE { [2] IA5String dNSName }, DER, ending at the end
 * of buf (as mbedtls writes). Names are at most 253 bytes. */
static size_t san_der(unsigned char *buf, size_t cap, const char *host)
{
    size_t n = strlen(host), inner, i = cap;

    if (n > FV_TLS_HOSTNAME_MAX || cap < n + 8)
        return 0;
    i -= n;
    memcpy(buf + i, host, n);
    if (n >= 128)
        buf[--i] = (unsigned char)n, buf[--i] = 0x81;
    else
        buf[--i] = (unsigned char)n;
    buf[--i] = 0x82; /* [2] dNSName */
    inner = cap - i;
    if (inner >= 128)
        buf[--i] = (unsigned char)inner, buf[--i] = 0x81;
    else
        buf[--i] = (unsigned char)inner;
    buf[--i] = 0x30;
    return cap - i;
}

/* A self-signed certificate for `key` in PEM, as an ordinary one looks: the
 * host name as subject and subjectAltName, a random serial, valid from a
 * random moment up to FV_TLS_BACKDATE_MAX before `now` for
 * FV_TLS_VALID_DAYS. */
static int cert_issue(mbedtls_pk_context *key, const char *host, int64_t now,
                      unsigned char *pem, size_t cap)
{
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    unsigned char serial_bytes[16], back[4], san[FV_TLS_HOSTNAME_MAX + 16];
    char subject[FV_TLS_HOSTNAME_MAX + 4], from[15], to[15];
    size_t san_len = san_der(san, sizeof san, host);
    int64_t start;
    uint32_t r;
    int rc = FV_ECRYPTO;

    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);
    if (!fv_tls_hostname_ok(host) || san_len == 0) {
        rc = FV_EINVAL;
        goto cleanup;
    }
    snprintf(subject, sizeof subject, "CN=%s", host);
    /* Backdated by 1 hour to FV_TLS_BACKDATE_MAX: a little, as issuers do
     * against clock skew, and by a random amount so that the dates do not
     * say to the second when the server started. */
    fv_random(back, sizeof back);
    r = (uint32_t)back[0] << 24 | (uint32_t)back[1] << 16 |
        (uint32_t)back[2] << 8 | back[3];
    start = now - 3600 - (int64_t)(r % (FV_TLS_BACKDATE_MAX - 3600));
    if (x509_time(from, start) != 0 ||
        x509_time(to, start + (int64_t)FV_TLS_VALID_DAYS * 86400) != 0)
        goto cleanup;
    /* A positive serial of fixed length: clear the sign bit, set the next. */
    fv_random(serial_bytes, sizeof serial_bytes);
    serial_bytes[0] = (unsigned char)((serial_bytes[0] & 0x3f) | 0x40);
    if (mbedtls_mpi_read_binary(&serial, serial_bytes, sizeof serial_bytes) != 0)
        goto cleanup;

    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, key);
    mbedtls_x509write_crt_set_issuer_key(&crt, key);
    if (mbedtls_x509write_crt_set_subject_name(&crt, subject) != 0 ||
        mbedtls_x509write_crt_set_issuer_name(&crt, subject) != 0 ||
        mbedtls_x509write_crt_set_serial(&crt, &serial) != 0 ||
        mbedtls_x509write_crt_set_validity(&crt, from, to) != 0 ||
        mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1) != 0 ||
        mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) != 0 ||
        mbedtls_x509write_crt_set_extension(
            &crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
            MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
            san + sizeof san - san_len, san_len) != 0 ||
        mbedtls_x509write_crt_set_subject_key_identifier(&crt) != 0)
        goto cleanup;
    if (mbedtls_x509write_crt_pem(&crt, pem, cap, fv_tls_rng, NULL) != 0)
        goto cleanup;
    rc = FV_OK;
cleanup:
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&crt);
    return rc;
}

/* Makes the directory entry of `path` durable (fsync of its directory). */
static int sync_parent(const char *path)
{
    char *dir = fv_path_dir(path);
    int rc = dir ? fv_fsync_dir(dir) : FV_ENOMEM;
    free(dir);
    return rc;
}

/* Replaces `path` with `len` bytes at once: a temp file beside it, fsync,
 * rename, fsync of the directory. A crash leaves the old file or the new. */
static int file_replace(const char *path, const void *data, size_t len)
{
    char *tmp = NULL, *dir = NULL;
    size_t n = strlen(path);
    int fd = -1, rc = FV_ENOMEM;

    tmp = malloc(n + 5);
    dir = fv_path_dir(path);
    if (tmp == NULL || dir == NULL)
        goto cleanup;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    (void)unlink(tmp); /* a stale one from a crash */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = fv_errno_rc(errno);
        goto cleanup;
    }
    rc = fv_write_all(fd, data, len);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    if (close(fd) != 0 && rc == FV_OK)
        rc = FV_EIO;
    fd = -1;
    if (rc == FV_OK && rename(tmp, path) != 0)
        rc = fv_errno_rc(errno);
    if (rc != FV_OK)
        (void)unlink(tmp);
    else
        rc = fv_fsync_dir(dir); /* the new content may not survive a crash */
cleanup:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(dir);
    return rc;
}

static int load_key(mbedtls_pk_context *key, const char *key_path)
{
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    int rc = read_file(key_path, &pem, &pem_len);

    if (rc != FV_OK)
        return rc;
    if (mbedtls_pk_parse_key(key, pem, pem_len, NULL, 0) != 0 ||
        !is_p256_key(key))
        rc = FV_ECORRUPT;
    fv_wipe(pem, pem_len);
    free(pem);
    return rc;
}

int fv_tls_identity_create(const char *key_path, const char *cert_path,
                           unsigned char pin[FV_TLS_PIN_BYTES])
{
    return fv_tls_identity_create_named(key_path, cert_path, NULL, pin);
}

int fv_tls_identity_create_named(const char *key_path, const char *cert_path,
                                 const char *hostname,
                                 unsigned char pin[FV_TLS_PIN_BYTES])
{
    mbedtls_pk_context key;
    unsigned char key_pem[FV_TLS_KEY_PEM_MAX];
    unsigned char crt_pem[FV_TLS_CRT_PEM_MAX];
    unsigned char new_pin[FV_TLS_PIN_BYTES];
    char host[FV_TLS_HOSTNAME_MAX + 1];
    int key_fd = -1, crt_fd = -1, made_key = 0, made_crt = 0;
    int rc = FV_ECRYPTO;

    mbedtls_pk_init(&key);
    memset(key_pem, 0, sizeof key_pem);
    memset(crt_pem, 0, sizeof crt_pem);

    if (key_path == NULL || cert_path == NULL || pin == NULL ||
        (hostname != NULL && !fv_tls_hostname_ok(hostname))) {
        rc = FV_EINVAL;
        goto cleanup;
    }
    if (hostname != NULL)
        memcpy(host, hostname, strlen(hostname) + 1);
    else
        default_hostname(host);
    if (fv_crypto_init() != FV_OK)
        goto cleanup;

    if (mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
        mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key),
                            fv_tls_rng, NULL) != 0)
        goto cleanup;
    if ((rc = cert_issue(&key, host, (int64_t)time(NULL), crt_pem,
                         sizeof crt_pem)) != FV_OK)
        goto cleanup;
    rc = FV_ECRYPTO;
    if (mbedtls_pk_write_key_pem(&key, key_pem, sizeof key_pem) != 0)
        goto cleanup;
    if (fv_tls_pin_of_key(&key, new_pin) != FV_OK)
        goto cleanup;

    key_fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (key_fd < 0) {
        rc = errno == EEXIST ? FV_EEXIST : FV_EIO;
        goto cleanup;
    }
    made_key = 1;
    crt_fd = open(cert_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (crt_fd < 0) {
        rc = errno == EEXIST ? FV_EEXIST : FV_EIO;
        goto cleanup;
    }
    made_crt = 1;

    rc = fv_write_all(key_fd, key_pem, strlen((const char *)key_pem));
    if (rc == FV_OK && fsync(key_fd) != 0)
        rc = FV_EIO;
    if (rc == FV_OK)
        rc = fv_write_all(crt_fd, crt_pem, strlen((const char *)crt_pem));
    if (rc == FV_OK && fsync(crt_fd) != 0)
        rc = FV_EIO;
    if (close(key_fd) != 0 && rc == FV_OK)
        rc = FV_EIO;
    key_fd = -1;
    if (close(crt_fd) != 0 && rc == FV_OK)
        rc = FV_EIO;
    crt_fd = -1;
    /* The new names durable too: without it a power loss after we
     * answered could take both files, and with them the pin devices
     * learned. */
    if (rc == FV_OK)
        rc = sync_parent(key_path);
    if (rc == FV_OK)
        rc = sync_parent(cert_path);
    if (rc != FV_OK)
        goto cleanup;

    memcpy(pin, new_pin, FV_TLS_PIN_BYTES);
    made_key = made_crt = 0; /* keep them */

cleanup:
    if (key_fd >= 0)
        close(key_fd);
    if (crt_fd >= 0)
        close(crt_fd);
    if (made_key)
        unlink(key_path);
    if (made_crt)
        unlink(cert_path);
    fv_wipe(key_pem, sizeof key_pem);
    fv_wipe(crt_pem, sizeof crt_pem);
    mbedtls_pk_free(&key); /* zeroizes the private scalar */
    return rc;
}

int fv_tls_identity_pin(const char *cert_path, unsigned char pin[FV_TLS_PIN_BYTES])
{
    mbedtls_x509_crt crt;
    int rc;

    if (cert_path == NULL || pin == NULL)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    mbedtls_x509_crt_init(&crt);
    rc = load_cert(&crt, cert_path);
    if (rc == FV_OK)
        rc = fv_tls_pin_of_key(&crt.pk, pin);
    mbedtls_x509_crt_free(&crt);
    return rc;
}

/* The subject's CN of `crt` into out when it is a usable host name. */
static int cert_cn(const mbedtls_x509_crt *crt, char out[FV_TLS_HOSTNAME_MAX + 1])
{
    for (const mbedtls_x509_name *n = &crt->subject; n != NULL; n = n->next) {
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0 ||
            n->val.len == 0 || n->val.len > FV_TLS_HOSTNAME_MAX)
            continue;
        memcpy(out, n->val.p, n->val.len);
        out[n->val.len] = '\0';
        return fv_tls_hostname_ok(out) ? 0 : -1;
    }
    return -1;
}

/* 1 when the file holds one certificate signed by its own key (ours, or a
 * self-signed one of the operator's), not a chain from a CA. */
static int cert_self_issued(const mbedtls_x509_crt *crt)
{
    return crt->next == NULL && crt->issuer_raw.len == crt->subject_raw.len &&
           memcmp(crt->issuer_raw.p, crt->subject_raw.p, crt->issuer_raw.len) == 0;
}

int fv_tls_cert_renew(const char *key_path, const char *cert_path,
                      const char *hostname, int64_t now, int *renewed)
{
    mbedtls_pk_context key;
    mbedtls_x509_crt crt;
    unsigned char pem[FV_TLS_CRT_PEM_MAX];
    char host[FV_TLS_HOSTNAME_MAX + 1];
    int64_t from, to;
    int rc, named;

    if (renewed != NULL)
        *renewed = 0;
    if (key_path == NULL || cert_path == NULL || renewed == NULL ||
        (hostname != NULL && !fv_tls_hostname_ok(hostname)))
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    mbedtls_pk_init(&key);
    mbedtls_x509_crt_init(&crt);
    memset(pem, 0, sizeof pem);
    if ((rc = load_cert(&crt, cert_path)) != FV_OK ||
        (rc = load_key(&key, key_path)) != FV_OK)
        goto cleanup;
    rc = FV_ECORRUPT;
    if (mbedtls_pk_check_pair(&crt.pk, &key) != 0)
        goto cleanup;
    rc = FV_OK;
    /* A certificate from a CA is the operator's to renew: replacing it
     * with a self-signed one would undo what they installed. */
    if (!cert_self_issued(&crt))
        goto cleanup;
    from = x509_unix(&crt.valid_from);
    to = x509_unix(&crt.valid_to);
    named = cert_cn(&crt, host) == 0 && strcmp(host, "localhost") != 0;
    /* Renewed when it nears its end, and at once when an older build made
     * it (CN=localhost, valid until 2099): both mark the server. */
    if (named && to - now > FV_TLS_RENEW_LEFT &&
        to - from <= (int64_t)FV_TLS_LEGACY_DAYS * 86400)
        goto cleanup;
    if (!named) {
        if (hostname != NULL)
            memcpy(host, hostname, strlen(hostname) + 1);
        else
            default_hostname(host);
    }
    if ((rc = cert_issue(&key, host, now, pem, sizeof pem)) != FV_OK ||
        (rc = file_replace(cert_path, pem, strlen((const char *)pem))) != FV_OK)
        goto cleanup;
    *renewed = 1;
cleanup:
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&key);
    return rc;
}

int fv_tls_csr(const char *key_path, const char *cert_path,
               const char *hostname, char **out)
{
    mbedtls_pk_context key;
    mbedtls_x509_crt crt;
    mbedtls_x509write_csr req;
    unsigned char san[FV_TLS_HOSTNAME_MAX + 16];
    unsigned char *pem = NULL;
    char host[FV_TLS_HOSTNAME_MAX + 1], subject[FV_TLS_HOSTNAME_MAX + 4];
    size_t san_len;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (key_path == NULL || cert_path == NULL || out == NULL ||
        (hostname != NULL && !fv_tls_hostname_ok(hostname)))
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    mbedtls_pk_init(&key);
    mbedtls_x509_crt_init(&crt);
    mbedtls_x509write_csr_init(&req);
    if ((rc = load_key(&key, key_path)) != FV_OK)
        goto cleanup;
    if (hostname != NULL) {
        memcpy(host, hostname, strlen(hostname) + 1);
    } else {
        /* The name the current certificate carries. */
        if ((rc = load_cert(&crt, cert_path)) != FV_OK)
            goto cleanup;
        rc = FV_EINVAL;
        if (cert_cn(&crt, host) != 0)
            goto cleanup;
    }
    rc = FV_ENOMEM;
    pem = calloc(1, FV_TLS_CRT_PEM_MAX);
    if (pem == NULL)
        goto cleanup;
    rc = FV_ECRYPTO;
    san_len = san_der(san, sizeof san, host);
    snprintf(subject, sizeof subject, "CN=%s", host);
    mbedtls_x509write_csr_set_md_alg(&req, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&req, &key);
    if (san_len == 0 ||
        mbedtls_x509write_csr_set_subject_name(&req, subject) != 0 ||
        mbedtls_x509write_csr_set_extension(
            &req, MBEDTLS_OID_SUBJECT_ALT_NAME,
            MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME),
            san + sizeof san - san_len, san_len) != 0 ||
        mbedtls_x509write_csr_pem(&req, pem, FV_TLS_CRT_PEM_MAX, fv_tls_rng,
                                  NULL) != 0)
        goto cleanup;
    *out = (char *)pem;
    pem = NULL;
    rc = FV_OK;
cleanup:
    free(pem);
    mbedtls_x509write_csr_free(&req);
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&key);
    return rc;
}

int fv_tls_cert_install(const char *key_path, const char *cert_path,
                        const char *chain_path)
{
    mbedtls_pk_context key;
    mbedtls_x509_crt chain;
    unsigned char *in = NULL, *pem = NULL;
    size_t in_len = 0, len = 0, cap = FV_TLS_FILE_MAX * 2;
    int rc;

    if (key_path == NULL || cert_path == NULL || chain_path == NULL)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    mbedtls_pk_init(&key);
    mbedtls_x509_crt_init(&chain);
    if ((rc = load_key(&key, key_path)) != FV_OK ||
        (rc = read_file(chain_path, &in, &in_len)) != FV_OK)
        goto cleanup;
    rc = FV_ECORRUPT;
    /* Every certificate must parse (a positive result counts failures). */
    if (mbedtls_x509_crt_parse(&chain, in, in_len) != 0 || chain.raw.len == 0)
        goto cleanup;
    /* The leaf must carry the key devices pinned: a certificate for another
     * key would make every device refuse the server. */
    rc = FV_EPIN;
    if (!is_p256_key(&chain.pk) || mbedtls_pk_check_pair(&chain.pk, &key) != 0)
        goto cleanup;
    /* Only the certificates are kept, re-encoded: whatever else the file
     * held (text, another key) stays out of the server's directory. */
    rc = FV_ENOMEM;
    pem = malloc(cap);
    if (pem == NULL)
        goto cleanup;
    rc = FV_ECORRUPT;
    for (const mbedtls_x509_crt *c = &chain; c != NULL; c = c->next) {
        size_t n = 0;
        if (mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE-----\n",
                                     "-----END CERTIFICATE-----\n", c->raw.p,
                                     c->raw.len, pem + len, cap - len, &n) != 0)
            goto cleanup;
        len += n - 1; /* n counts the NUL written */
    }
    rc = file_replace(cert_path, pem, len);
cleanup:
    free(pem);
    if (in != NULL) {
        fv_wipe(in, in_len);
        free(in);
    }
    mbedtls_x509_crt_free(&chain);
    mbedtls_pk_free(&key);
    return rc;
}

static void identity_unref(struct tls_identity *id)
{
    if (id != NULL && atomic_fetch_sub(&id->refs, 1) == 1) {
        mbedtls_x509_crt_free(&id->cert);
        mbedtls_pk_free(&id->key);
        free(id);
    }
}

/* fv_tls_conn_new's release: a connection's reference. */
static void identity_release(void *owner)
{
    identity_unref(owner);
}

static int identity_load(struct tls_identity **out, const char *key_path,
                         const char *cert_path)
{
    struct tls_identity *id;
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    int rc;

    *out = NULL;
    id = calloc(1, sizeof *id);
    if (id == NULL)
        return FV_ENOMEM;
    atomic_init(&id->refs, 1);
    mbedtls_x509_crt_init(&id->cert);
    mbedtls_pk_init(&id->key);

    rc = load_cert(&id->cert, cert_path);
    if (rc != FV_OK)
        goto cleanup;
    rc = read_file(key_path, &pem, &pem_len);
    if (rc != FV_OK)
        goto cleanup;
    rc = FV_ECORRUPT;
    if (mbedtls_pk_parse_key(&id->key, pem, pem_len, NULL, 0) != 0)
        goto cleanup;
    /* Our policy's only key type; and the two files must belong together. */
    if (!is_p256_key(&id->key) || !is_p256_key(&id->cert.pk) ||
        mbedtls_pk_check_pair(&id->cert.pk, &id->key) != 0)
        goto cleanup;
    *out = id;
    id = NULL;
    rc = FV_OK;
cleanup:
    if (pem != NULL) {
        fv_wipe(pem, pem_len);
        free(pem);
    }
    identity_unref(id);
    return rc;
}

/* ---- ending a connection ------------------------------------------------ */

void fv_tls_shutdown(fv_tls_conn *c)
{
    if (c == NULL)
        return;
    if (c->handshake_done && c->error == 0)
        (void)mbedtls_ssl_close_notify(&c->ssl);
    if (c->error == 0)
        c->error = FV_EEOF; /* no more TLS on it; no second close_notify */
    (void)shutdown(c->fd, SHUT_WR);
}

int fv_tls_discard(fv_tls_conn *c, size_t max)
{
    unsigned char scratch[4096];
    size_t total = 0;

    if (c == NULL)
        return FV_EINVAL;
    while (total < max) {
        ssize_t r = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (r > 0) {
            total += (size_t)r;
            continue;
        }
        if (r == 0)
            return FV_EEOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return total ? FV_OK : FV_TLS_WANT_READ;
        return FV_ENET;
    }
    return FV_OK;
}

/* ---- server ------------------------------------------------------------- */

int fv_tls_listen(fv_tls_server **out, const char *host, const char *port,
                  const char *key_path, const char *cert_path)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage addr;
    socklen_t addrlen = sizeof addr;
    fv_tls_server *s = NULL;
    int rc;

    if (out == NULL)
        return FV_EINVAL;
    *out = NULL;
    if (port == NULL || key_path == NULL || cert_path == NULL)
        return FV_EINVAL;
    if (fv_crypto_init() != FV_OK)
        return FV_ECRYPTO;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return FV_ENOMEM;
    s->fd = -1;
    rc = identity_load(&s->id, key_path, cert_path);
    if (rc != FV_OK)
        goto cleanup;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = FV_ENET;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        goto cleanup;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;
        int fd = fv_tls_socket_new(ai->ai_family, ai->ai_socktype, ai->ai_protocol);

        if (fd < 0)
            continue;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, FV_TLS_BACKLOG) == 0) {
            s->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (s->fd < 0)
        goto cleanup;
    if (getsockname(s->fd, (struct sockaddr *)&addr, &addrlen) != 0)
        goto cleanup;
    if (addr.ss_family == AF_INET)
        s->port = ntohs(((const struct sockaddr_in *)&addr)->sin_port);
    else if (addr.ss_family == AF_INET6)
        s->port = ntohs(((const struct sockaddr_in6 *)&addr)->sin6_port);
    *out = s;
    s = NULL;
    rc = FV_OK;
cleanup:
    fv_tls_server_close(s);
    return rc;
}

int fv_tls_server_reload(fv_tls_server *s, const char *key_path,
                         const char *cert_path)
{
    struct tls_identity *id = NULL;
    int rc;

    if (s == NULL || key_path == NULL || cert_path == NULL)
        return FV_EINVAL;
    if ((rc = identity_load(&id, key_path, cert_path)) != FV_OK)
        return rc; /* the identity in use stays */
    /* Connections accepted before keep their reference to the old one. */
    identity_unref(s->id);
    s->id = id;
    return FV_OK;
}

int fv_tls_server_fd(const fv_tls_server *s) { return s != NULL ? s->fd : -1; }

int fv_tls_server_port(const fv_tls_server *s) { return s != NULL ? s->port : 0; }

void fv_tls_server_close(fv_tls_server *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    identity_unref(s->id); /* connections still open keep their reference */
    free(s);
}

int fv_tls_accept(fv_tls_server *s, fv_tls_conn **out)
{
    int fd;

    if (out == NULL)
        return FV_EINVAL;
    *out = NULL;
    if (s == NULL)
        return FV_EINVAL;
    for (;;) {
        fd = accept(s->fd, NULL, NULL);
        if (fd >= 0)
            break;
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return FV_ENOTFOUND;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue; /* that one went away; try the next */
        case EMFILE:
        case ENFILE:
            return FV_ELIMIT; /* out of descriptors: the caller may free one */
        case ENOBUFS:
        case ENOMEM:
            return FV_ENOMEM;
        default:
            return FV_ENET;
        }
    }
    /* accept() does not pass O_NONBLOCK or FD_CLOEXEC on everywhere. */
    if (fv_tls_socket_prepare(fd) != 0) {
        close(fd);
        return FV_ENET;
    }
    fv_tls_socket_nodelay(fd);
    atomic_fetch_add(&s->id->refs, 1); /* the connection's, from here on */
    return fv_tls_conn_new(out, fd, MBEDTLS_SSL_IS_SERVER, &s->id->cert,
                           &s->id->key, identity_release, s->id);
}
