/* common.c - see common.h. */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "crypto.h"
#include "fileio.h"
#include "tls_server.h"
#include "vault_internal.h"

#ifndef FV_FUZZ_FIXTURE
#define FV_FUZZ_FIXTURE "tests/fuzz/fixture"
#endif

const unsigned char fz_binding[32] = {0x66, 0x75, 0x7a, 0x7a};

static char root[FZ_PATH_MAX];
static pid_t root_owner;

static void root_remove(void)
{
    if (root[0] && getpid() == root_owner)
        fz_rm_tree(root);
}

void fz_init(void)
{
    const char *base = getenv("TMPDIR");
    if (root[0])
        return;
    if (fv_crypto_init() != FV_OK) {
        fprintf(stderr, "fuzz: libsodium does not start\n");
        exit(1);
    }
    /* /dev/shm: every input copies a vault or a server directory. */
    if (access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    snprintf(root, sizeof root, "%s/fv-fuzz-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "fuzz: cannot make a scratch directory in %s\n",
                base ? base : "/tmp");
        exit(1);
    }
    root_owner = getpid();
    atexit(root_remove);
}

void fz_scratch(char out[FZ_PATH_MAX], const char *name, int mk)
{
    snprintf(out, FZ_PATH_MAX, "%s/%s", root, name);
    fz_rm_tree(out);
    if (mk && mkdir(out, 0700) != 0) {
        fprintf(stderr, "fuzz: cannot make %s\n", out);
        exit(1);
    }
}

/* The fixture is copied into the scratch root once, at the first call:
 * the harness then reads one consistent fixture even if make_corpus
 * writes a new one while it runs. */
void fz_fixture(char out[FZ_PATH_MAX], const char *name)
{
    static char copy[FZ_PATH_MAX];
    if (!copy[0]) {
        const char *dir = getenv("FV_FUZZ_FIXTURE");
        snprintf(copy, sizeof copy, "%s/fixture", root);
        if (fz_copy_tree(dir && *dir ? dir : FV_FUZZ_FIXTURE, copy) != FV_OK) {
            fprintf(stderr, "fuzz: cannot copy the fixture %s\n",
                    dir && *dir ? dir : FV_FUZZ_FIXTURE);
            exit(1);
        }
    }
    snprintf(out, FZ_PATH_MAX, "%s/%s", copy, name);
}

void fz_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d) {
        unlink(dir);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char p[FZ_PATH_MAX];
        struct stat sb;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            fz_rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int fz_write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc;
    if (fd < 0)
        return FV_EIO;
    rc = fv_write_all(fd, p, n);
    close(fd);
    return rc;
}

unsigned char *fz_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long size;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1)) &&
        fread(buf, 1, (size_t)size, f) == (size_t)size) {
        buf[size] = 0;
        *n = (size_t)size;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int fz_copy_tree(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    struct dirent *de;
    int rc = FV_OK;
    if (!d)
        return FV_ENOTFOUND;
    if (mkdir(dst, 0700) != 0) {
        closedir(d);
        return FV_EIO;
    }
    while (rc == FV_OK && (de = readdir(d)) != NULL) {
        char s[FZ_PATH_MAX], t[FZ_PATH_MAX];
        struct stat sb;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(s, sizeof s, "%s/%s", src, de->d_name);
        snprintf(t, sizeof t, "%s/%s", dst, de->d_name);
        if (lstat(s, &sb) != 0)
            rc = FV_EIO;
        else if (S_ISDIR(sb.st_mode))
            rc = fz_copy_tree(s, t);
        else if (S_ISREG(sb.st_mode)) {
            size_t n = 0;
            unsigned char *p = fz_read_file(s, &n);
            rc = p ? fz_write_file(t, p, n) : FV_EIO;
            free(p);
        }
    }
    closedir(d);
    return rc;
}

fv_vault *fz_vault_copy_open(const char *name, const char *slot)
{
    char src[FZ_PATH_MAX], dst[FZ_PATH_MAX];
    fv_vault *v = NULL;
    int rc;
    fz_fixture(src, name);
    fz_scratch(dst, slot, 0);
    if ((rc = fz_copy_tree(src, dst)) != FV_OK ||
        (rc = fv_vault_open(&v, dst, FZ_PASS, strlen(FZ_PASS))) != FV_OK) {
        fprintf(stderr, "fuzz: fixture vault %s does not open: %s\n", src,
                fv_strerror(rc));
        exit(1);
    }
    return v;
}

void fz_vault_keys(const char *name, fz_keys *k)
{
    fv_vault *v = fz_vault_copy_open(name, "keys");
    memset(k, 0, sizeof *k);
    memcpy(k->sign_pk, v->sign_pk, 32);
    memcpy(k->sign_sk, v->sec->sign_sk, 64);
    memcpy(k->box_pk, v->box_pk, 32);
    memcpy(k->box_sk, v->sec->box_sk, 32);
    k->has_org = v->has_org_sk;
    if (v->has_org_sk) {
        memcpy(k->org_pk, v->org_pk, 32);
        memcpy(k->org_sk, v->sec->org_sk, 32);
    }
    fv_vault_close(v);
}

int fz_server_pin(const char *dir, unsigned char pin[32])
{
    char crt[FZ_PATH_MAX];
    snprintf(crt, sizeof crt, "%s/tls.crt", dir);
    return fv_tls_identity_pin(crt, pin);
}

static void srv_random(void *buf, size_t n, void *payload)
{
    (void)payload;
    fv_random(buf, n);
}

int fz_server_open(fz_server *s, const char *dir)
{
    char path[FZ_PATH_MAX];
    unsigned char epoch[FV_EPOCH_BYTES], sk[64], *listen = NULL;
    size_t listen_len = 0, n = 0;
    unsigned char *key = NULL;
    char address[256];
    fv_srv_config cfg;
    int rc;

    memset(s, 0, sizeof *s);
    s->env.now = FZ_NOW;
    s->env.random = srv_random;
    snprintf(path, sizeof path, "%s/server.db", dir);
    if ((rc = fv_sstore_open(&s->st, path, 0)) ||
        (rc = fv_sstore_meta_get_fixed(s->st, "epoch", epoch, sizeof epoch)) ||
        (rc = fv_sstore_meta_get(s->st, "listen", &listen, &listen_len)) ||
        (rc = fz_server_pin(dir, s->pin)))
        goto done;
    snprintf(path, sizeof path, "%s/receipt.key", dir);
    key = fz_read_file(path, &n);
    if (!key || n != sizeof sk || listen_len == 0 || listen_len >= sizeof address) {
        rc = FV_ECORRUPT;
        goto done;
    }
    memcpy(sk, key, sizeof sk);
    memcpy(address, listen, listen_len);
    address[listen_len] = '\0';
    memset(&cfg, 0, sizeof cfg);
    cfg.version = FV_SRV_CONFIG_VERSION;
    cfg.store = s->st;
    cfg.receipt_sk = sk;
    cfg.epoch = epoch;
    cfg.pin = s->pin;
    cfg.address = address;
    cfg.env = &s->env;
    rc = fv_srv_new(&s->srv, &cfg);
done:
    fv_wipe(sk, sizeof sk);
    if (key)
        fv_wipe(key, n);
    free(key);
    free(listen);
    if (rc)
        fz_server_close(s);
    return rc;
}

void fz_server_close(fz_server *s)
{
    fv_srv_free(s->srv);
    fv_sstore_close(s->st);
    s->srv = NULL;
    s->st = NULL;
}

int fz_hello(fv_out *o, const unsigned char pin[32], const unsigned char pk[32],
             const unsigned char sk[64])
{
    unsigned char *tbs = NULL, sig[64];
    size_t len = 0;
    int rc = fv_hello_tbs(&tbs, &len, pin, fz_binding, pk, NULL, NULL);
    if (rc)
        return rc;
    fv_sign(sig, tbs, len, sk);
    fv_enc_free_buf(tbs, len);
    return fv_send_hello(o, pk, sig, NULL, NULL);
}

void fz_buf_add(fz_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (!(b->p = realloc(b->p, cap)))
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

void fz_buf_free(fz_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void fz_srv_drive(fv_srv_conn *c, const unsigned char *p, size_t n,
                  fz_buf *out)
{
    size_t off = 0;
    for (;;) {
        size_t k = 0, got = 0, len;
        const unsigned char *q;
        if (off < n && fv_srv_conn_state(c) == FV_SRV_RUNNING)
            k = fv_srv_conn_recv(c, p + off, n - off);
        off += k;
        while ((q = fv_srv_conn_send_buf(c, &len)) != NULL && len > 0) {
            if (out)
                fz_buf_add(out, q, len);
            fv_srv_conn_send_ack(c, len);
            got += len;
        }
        if (k == 0 && got == 0)
            break;
    }
}
