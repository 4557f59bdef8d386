/* export.c - fv_export (fieldvault.h): the evidence export, the records
 * that pass a filter as the signed envelopes and encrypted chunks the vault
 * holds, with a manifest (docs/EXPORT.md, "Evidence"). It reads raw
 * envelopes, so it is the one export in the core; the plaintext reports
 * (JSON, CSV, HTML) are written over the public API by report/.
 *
 * Streaming: each record is written as the query visits it, so memory does
 * not grow with the record count. The directory is built under a temporary
 * name and renamed to its own only when complete (fv_staged). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "civil.h"
#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "fileio.h"
#include "store.h"
#include "textparse.h"
#include "vault_internal.h"
#include "vault_sync.h"

#define EXPORT_VERSION 1 /* of the manifest's layout */
#define OUT_BUF 65536

/* ---- a buffered writer with a sticky error ------------------------------- */

struct out {
    int fd;
    unsigned char *buf;
    size_t n;
    int err;
};

static int out_open(struct out *o, int fd)
{
    memset(o, 0, sizeof *o);
    o->fd = fd;
    o->buf = malloc(OUT_BUF);
    return o->buf ? FV_OK : FV_ENOMEM;
}

static void out_flush(struct out *o)
{
    if (!o->err && o->n)
        o->err = fv_write_all(o->fd, o->buf, o->n);
    o->n = 0;
}
static void out_raw(struct out *o, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n && !o->err) {
        size_t k = OUT_BUF - o->n < n ? OUT_BUF - o->n : n;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        n -= k;
        if (o->n == OUT_BUF)
            out_flush(o);
    }
}

static void out_s(struct out *o, const char *s) { out_raw(o, s, strlen(s)); }

static void out_fmt(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_fmt(struct out *o, const char *fmt, ...)
{
    char b[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_raw(o, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

/* Flushes, fsyncs and closes the file; frees the buffer. Returns the sticky
 * error. */
static int out_close(struct out *o)
{
    out_flush(o);
    if (o->fd >= 0) {
        if (!o->err && fsync(o->fd) != 0)
            o->err = fv_errno_rc(errno);
        close(o->fd);
        o->fd = -1;
    }
    free(o->buf);
    o->buf = NULL;
    return o->err;
}

/* Ids, hashes and times are all the manifest holds besides numbers: hex
 * digits and ISO 8601, which need no escaping. */
static void out_time_json(struct out *o, int64_t t)
{
    char b[32];
    fv_time_iso(b, t);
    if (b[0] == '?')
        out_s(o, "null");
    else
        out_fmt(o, "\"%s\"", b);
}

static void out_id_json(struct out *o, const unsigned char id[FV_ID_BYTES])
{
    char hex[FV_ID_HEX_BYTES];
    fv_id_to_hex(hex, id);
    out_fmt(o, "\"%s\"", hex);
}

static void out_hex(struct out *o, const unsigned char *p, size_t n)
{
    char b[3];
    for (size_t i = 0; i < n; i++) {
        fv_hex_encode(b, sizeof b, p + i, 1);
        out_raw(o, b, 2);
    }
}

/* ---- the export ------------------------------------------------------------ */

struct exp {
    fv_vault *v;
    const fv_export_options *opt;
    struct out o;    /* manifest.json */
    int dir;         /* the temporary directory */
    int sub[2];      /* envelopes/, chunks/ */
    uint64_t done, total;
    int rc;          /* the first failure inside a callback */
    unsigned char *chunk; /* a chunk buffer */
    unsigned char device[FV_ID_BYTES];
};

static int exp_fail(struct exp *x, int rc, const char *what)
{
    if (x->rc == FV_OK && rc != FV_OK) {
        x->rc = rc;
        fv_v_err(x->v, rc, "cannot write the export (%s): %s", what,
                 rc == FV_ENOSPC ? "disk full" : fv_strerror(rc));
    }
    return rc;
}

/* ---- evidence ---- */

static int write_file_at(int dir, const char *name, const void *p, size_t n)
{
    int fd, rc = fv_create_at(dir, name, &fd);
    if (rc)
        return rc;
    rc = fv_write_all(fd, p, n);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    return rc;
}

struct ev_rec {
    struct exp *x;
    size_t n;
    int rc;
};

static int evidence_env_cb(const fv_store_env *se, void *payload)
{
    struct ev_rec *er = payload;
    struct exp *x = er->x;
    struct out *o = &x->o;
    char hex[FV_ID_HEX_BYTES], name[FV_ID_HEX_BYTES + 8];
    fv_env e;
    int rc;

    fv_id_to_hex(hex, se->id);
    out_s(o, er->n++ ? ",\n      {" : "\n      {");
    out_fmt(o, "\"id\": \"%s\", \"kind\": %d", hex, se->kind);
    if (!se->bytes) {
        out_s(o, ", \"purged\": true}");
        return o->err;
    }
    /* The bytes as stored; their hash is their id (checked here, so that
     * the manifest never vouches for damaged bytes). */
    if (fv_v_env_parse(x->v, &e, se->bytes, se->len, se->mac) != FV_OK ||
        !fv_ct_equal(e.id, se->id, FV_ID_BYTES)) {
        fv_env_clear(&e);
        return er->rc = fv_v_err(x->v, FV_ECORRUPT,
                                 "an envelope failed verification (run "
                                 "'fieldvault verify')");
    }
    snprintf(name, sizeof name, "%s.cose", hex);
    if ((rc = write_file_at(x->sub[0], name, se->bytes, se->len))) {
        fv_env_clear(&e);
        return er->rc = exp_fail(x, rc, "an envelope file");
    }
    out_fmt(o, ", \"file\": \"envelopes/%s\", \"bytes\": %zu, \"blake2b_256\": \"%s\", "
               "\"author\": ", name, se->len, hex);
    out_id_json(o, e.author);
    out_s(o, ", \"parents\": [");
    for (size_t i = 0; i < e.nparents; i++) {
        out_s(o, i ? ", " : "");
        out_id_json(o, e.parents[i]);
    }
    out_s(o, "], \"chunks\": [");
    for (size_t i = 0; i < e.nchunks; i++) {
        size_t len;
        char h[FV_ID_HEX_BYTES];
        fv_id_to_hex(h, e.chunks[i]);
        rc = fv_store_chunk_get(x->v->store, e.chunks[i], x->chunk,
                                FV_MAX_CHUNK_BYTES + FV_TAG_BYTES, &len);
        if (rc == FV_OK) {
            /* Like the envelope, a chunk must hash to its name before the
             * manifest lists it. */
            unsigned char sum[FV_HASH_BYTES];
            fv_hash(sum, x->chunk, len);
            if (!fv_ct_equal(sum, e.chunks[i], FV_HASH_BYTES)) {
                fv_env_clear(&e);
                return er->rc = fv_v_err(x->v, FV_ECORRUPT,
                                         "an attachment chunk failed verification "
                                         "(run 'fieldvault verify')");
            }
            rc = write_file_at(x->sub[1], h, x->chunk, len);
            if (rc == FV_EEXIST)
                rc = FV_OK; /* shared by another revision: written already */
            if (rc) {
                fv_env_clear(&e);
                return er->rc = exp_fail(x, rc, "a chunk file");
            }
        } else if (rc != FV_ENOTFOUND) {
            fv_env_clear(&e);
            return er->rc = fv_v_serr(x->v, rc);
        }
        out_fmt(o, "%s{\"hash\": \"%s\", \"file\": %s%s%s}", i ? ", " : "", h,
                rc == FV_OK ? "\"chunks/" : "null", rc == FV_OK ? h : "",
                rc == FV_OK ? "\"" : "");
    }
    out_s(o, "]}");
    fv_env_clear(&e);
    return o->err;
}

static int evidence_record(struct exp *x, const fv_record *r)
{
    struct out *o = &x->o;
    struct ev_rec er = {x, 0, FV_OK};
    int rc;

    out_s(o, x->done ? ",\n    {" : "\n    {");
    out_s(o, "\"id\": ");
    out_id_json(o, r->id);
    out_s(o, ", \"revision\": ");
    out_id_json(o, r->revision);
    out_s(o, ", \"origin\": ");
    out_id_json(o, r->origin);
    out_s(o, ",\n     \"envelopes\": [");
    rc = fv_store_record_all_envs(x->v->store, r->id, evidence_env_cb, &er);
    if (rc)
        return er.rc ? er.rc : rc == o->err ? rc : fv_v_serr(x->v, rc);
    out_s(o, "\n    ]}");
    return o->err;
}

struct ev_receipts {
    struct exp *x;
    size_t n;
};

static int evidence_receipt_cb(int64_t seq, const unsigned char *body,
                               size_t len, const unsigned char *sig,
                               void *payload)
{
    struct ev_receipts *er = payload;
    struct exp *x = er->x;
    struct out *o = &x->o;
    fv_dec d;
    size_t five, count, two, covered = 0;
    const unsigned char *p;
    size_t pn;
    uint64_t s;
    int64_t t;
    char hex[FV_ID_HEX_BYTES], name[FV_ID_HEX_BYTES + 8];
    struct stat sb;

    if (!sig || !body)
        return FV_OK;
    /* Only receipts that cover an exported envelope (its file exists). */
    fv_dec_init(&d, body, len);
    if (fv_dec_array(&d, &five) || five != 5 || fv_dec_text(&d, (const char **)&p, &pn) ||
        fv_dec_bytes(&d, &p, &pn) || fv_dec_bytes(&d, &p, &pn) ||
        fv_dec_int(&d, &t) || fv_dec_array(&d, &count))
        return FV_OK; /* malformed: 'fieldvault verify' reports it */
    for (size_t i = 0; i < count; i++) {
        if (fv_dec_array(&d, &two) || two != 2 || fv_dec_bytes(&d, &p, &pn) ||
            pn != 32 || fv_dec_uint(&d, &s))
            return FV_OK;
        fv_id_to_hex(hex, p);
        snprintf(name, sizeof name, "%s.cose", hex);
        if (fstatat(x->sub[0], name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
            covered++;
    }
    if (!covered)
        return FV_OK;
    out_s(o, er->n++ ? ",\n    {" : "\n    {");
    out_fmt(o, "\"seq\": %lld, \"time\": ", (long long)seq);
    out_time_json(o, t);
    out_s(o, ", \"body\": \"");
    out_hex(o, body, len);
    out_s(o, "\", \"sig\": \"");
    out_hex(o, sig, 64);
    out_s(o, "\"}");
    return o->err;
}

static const char evidence_readme[] =
    "FieldVault evidence export\n"
    "==========================\n"
    "\n"
    "This directory holds, for each selected testimony, the original signed\n"
    "envelopes exactly as the vault stores them, the encrypted attachment\n"
    "chunks they list, and the server's signed receipts of delivery. Nothing\n"
    "here is decrypted: the envelopes prove who wrote what, and when, without\n"
    "revealing it. Each can be checked with no FieldVault code at all.\n"
    "\n"
    "  manifest.json          every record, its envelopes, their hashes and\n"
    "                         chunks, and the receipts that cover them\n"
    "  envelopes/<id>.cose    one envelope: a COSE_Sign1 (RFC 9052), EdDSA\n"
    "  chunks/<hash>          one encrypted attachment chunk\n"
    "\n"
    "To verify by hand (docs/FORMAT.md in the FieldVault source):\n"
    "\n"
    "1. An envelope's id is the BLAKE2b-256 (32-byte digest, no key) of the\n"
    "   file's bytes; the file name and the manifest give that id in hex.\n"
    "   A record's id is the id of its first (genesis) envelope.\n"
    "2. Each envelope is signed with Ed25519 by its author, whose public key\n"
    "   is the 'kid' (label 4) of the protected header. Check the signature\n"
    "   over the COSE Sig_structure ['Signature1', protected, h'', payload]\n"
    "   as FORMAT.md, 'Verifying an envelope', describes step by step.\n"
    "3. The signed body names the record, the parent envelopes (the revision\n"
    "   history) and, per attachment, the BLAKE2b-256 hash of every chunk.\n"
    "   Each file in chunks/ must hash to its name, and that hash must be in\n"
    "   the signed list of an envelope of this export.\n"
    "4. A receipt is the server's statement that it stored envelopes: its\n"
    "   body (CBOR, docs/PROTOCOL.md: ['FieldVault receipt v1', epoch,\n"
    "   device, time, [[id, seq]...]]) is signed with Ed25519 by the server's\n"
    "   receipt key, given in manifest.json as server_receipt_key. Compare\n"
    "   that key with the one the organisation holds for its server.\n"
    "\n"
    "tests/vectors/ in the FieldVault source holds test vectors for every\n"
    "step, and tests/vectors/check_vectors.py is an independent reader of\n"
    "the format written from the document alone. tests/verify_evidence.py\n"
    "checks a whole evidence directory with it:\n"
    "\n"
    "    python3 tests/verify_evidence.py DIR\n"
    "\n"
    "(Debian: apt-get install python3-cryptography, for Ed25519.)\n"
    "\n"
    "The content of an envelope is encrypted to its recipients (the author's\n"
    "device and the organisation's coordinators); only they can decrypt it,\n"
    "and a decrypted copy proves nothing the signature does not.\n";

static int evidence_finish(struct exp *x)
{
    struct ev_receipts er = {x, 0};
    fv_sync_state st;
    int rc, have;

    rc = fv_vs_state_get(x->v, &st);
    if (rc && rc != FV_ENOTFOUND)
        return rc;
    have = rc == FV_OK;
    out_s(&x->o, "\n  ],\n  \"receipts\": [");
    rc = fv_vs_each_receipt(x->v, evidence_receipt_cb, &er);
    if (rc && rc != x->o.err)
        rc = fv_v_serr(x->v, rc);
    out_s(&x->o, er.n ? "\n  ],\n  \"server_receipt_key\": " : "],\n  \"server_receipt_key\": ");
    if (have) {
        out_id_json(&x->o, st.server_key);
        out_s(&x->o, ",\n  \"server_epoch\": \"");
        out_hex(&x->o, st.epoch, sizeof st.epoch);
        out_s(&x->o, "\"");
    } else {
        out_s(&x->o, "null");
    }
    fv_wipe(&st, sizeof st);
    if (rc)
        return rc;
    rc = write_file_at(x->dir, "README.txt", evidence_readme, sizeof evidence_readme - 1);
    return exp_fail(x, rc, "README.txt");
}

/* ---- driving it ---- */

static int count_cb(const fv_record *r, void *payload)
{
    (void)r;
    ((struct exp *)payload)->total++;
    return 0;
}

/* The counting pass: unreadable records are told of in the writing pass. */
static int count_unreadable_cb(const fv_unreadable *u, void *payload)
{
    (void)u;
    (void)payload;
    return 0;
}

/* The writing pass: the caller hears of each record left out. */
static int unreadable_cb(const fv_unreadable *u, void *payload)
{
    struct exp *x = payload;
    if (x->opt->unreadable(u, x->opt->unreadable_payload)) {
        if (x->rc == FV_OK)
            x->rc = fv_v_err(x->v, FV_ECANCELED, "stopped by the caller");
        return 1;
    }
    return 0;
}

static void out_header_json(struct exp *x)
{
    char t[32];
    fv_time_iso(t, fv_v_now());
    out_fmt(&x->o, "{\n  \"fieldvault_evidence\": %d,\n  \"format_version\": %d,\n"
                   "  \"exported_at\": \"%s\",\n  \"vault_device\": ",
            EXPORT_VERSION, FV_FORMAT_VERSION, t);
    out_id_json(&x->o, x->device);
    out_s(&x->o, ",\n  \"records\": [");
}

static int record_cb(const fv_record *r, void *payload)
{
    struct exp *x = payload;
    int rc = evidence_record(x, r);
    if (rc == FV_OK && x->o.err)
        rc = x->o.err;
    if (rc == FV_OK) {
        x->done++;
        if (x->opt->progress &&
            x->opt->progress(x->done, x->total, x->opt->progress_payload))
            rc = FV_ECANCELED;
    }
    if (rc && x->rc == FV_OK)
        x->rc = rc;
    return rc != FV_OK;
}

static int export_records(fv_vault *v, uint64_t *count, const fv_export_options *opt)
{
    static const char *const subs[] = {"envelopes", "chunks"};
    struct exp x;
    fv_staged st;
    int fd = -1, rc;

    if (count)
        *count = 0;
    if (!v)
        return FV_EINVAL;
    /* Versions 1 and 2 were laid out differently (a format, a write
     * callback): refused rather than misread. */
    if (!opt || opt->version != FV_EXPORT_OPTIONS_VERSION)
        return fv_v_err(v, FV_EINVAL, "unsupported export options version");
    if (!opt->path || !*opt->path)
        return fv_v_err(v, FV_EINVAL, "the export needs an output path");
    memset(&x, 0, sizeof x);
    x.v = v;
    x.opt = opt;
    x.dir = x.sub[0] = x.sub[1] = -1;
    x.o.fd = -1;
    fv_vault_get_device_id(v, x.device);

    rc = fv_staged_begin(&st, opt->path, 1);
    if (rc == FV_EEXIST) {
        rc = fv_v_err(v, rc, "the output directory already exists");
        goto done;
    }
    if (rc) {
        exp_fail(&x, rc, "the output directory");
        goto done;
    }
    x.dir = st.fd;
    if (opt->progress) {
        /* The total, for the progress callback: a first, counting pass. */
        rc = fv_vault_query_ex(v, opt->filter, count_cb,
                               opt->unreadable ? count_unreadable_cb : NULL, &x);
        if (rc)
            goto done;
    }
    for (size_t i = 0; i < 2; i++) {
        if (mkdirat(x.dir, subs[i], 0700) != 0 ||
            (x.sub[i] = openat(x.dir, subs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            rc = exp_fail(&x, fv_errno_rc(errno), "the output directory");
            goto done;
        }
    }
    if ((rc = fv_create_at(x.dir, "manifest.json", &fd))) {
        exp_fail(&x, rc, "manifest.json");
        goto done;
    }
    if ((rc = out_open(&x.o, fd))) {
        close(fd);
        rc = fv_v_err(v, rc, "out of memory");
        goto done;
    }
    if (!(x.chunk = malloc(FV_MAX_CHUNK_BYTES + FV_TAG_BYTES))) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    out_header_json(&x);
    rc = fv_vault_query_ex(v, opt->filter, record_cb,
                           opt->unreadable ? unreadable_cb : NULL, &x);
    if (x.rc)
        rc = x.rc;
    if (rc == FV_ECORRUPT)
        rc = fv_v_err(v, rc, "some records failed verification and the export "
                             "was not written (run 'fieldvault verify')");
    if (rc || (rc = evidence_finish(&x)))
        goto done;
    out_fmt(&x.o, ",\n  \"record_count\": %llu\n}\n", (unsigned long long)x.done);
    if ((rc = out_close(&x.o))) {
        exp_fail(&x, rc, "manifest.json");
        goto done;
    }
    for (int i = 0; rc == FV_OK && i < 2; i++)
        if (fsync(x.sub[i]) != 0)
            rc = exp_fail(&x, fv_errno_rc(errno), "the output directory");
    if (rc)
        goto done;
    x.dir = -1; /* the commit closes it */
    rc = fv_staged_commit(&st);
    if (rc == FV_EEXIST)
        rc = fv_v_err(v, rc, "the output directory already exists");
    else if (rc)
        exp_fail(&x, rc, "the output directory");
done:
    if (x.o.buf) {
        x.o.err = x.o.err ? x.o.err : FV_ECANCELED; /* nothing more is written */
        out_close(&x.o);
    }
    for (int i = 0; i < 2; i++)
        if (x.sub[i] >= 0)
            close(x.sub[i]);
    fv_staged_abort(&st);
    free(x.chunk);
    if (rc == FV_OK && count)
        *count = x.done;
    return rc;
}

int fv_export(fv_vault *v, uint64_t *count, const fv_export_options *opt)
{
    return FV_CALL(v, export_records(v, count, opt));
}
