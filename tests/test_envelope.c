/*
 * test_envelope.c - envelopes and payloads (core/envelope.c, core/record.c)
 * checked against docs/FORMAT.md:
 *
 *   a. the committed vectors in $FV_TEST_VECTORS (tests/vectors): key file,
 *      device keys, envelopes, payloads, attachment chunks, each read the way
 *      FORMAT.md says, and each envelope re-encoded by this file's own writer
 *      to the same bytes;
 *   b. build/parse/open round trips with random keys;
 *   c. every single-byte and single-bit change of an envelope is rejected;
 *   d. every truncated prefix, and trailing bytes, are rejected;
 *   e. structural violations, hand-built and validly signed, are rejected;
 *      the key commitment (a key that is not the committed one never opens);
 *      the shapes fv_env_build refuses; the envelope size limit;
 *   f. payload rules (canonical order, duplicates, text, UTF-8, chunk size,
 *      attachment names, narrative size);
 *   g. a vault written by the library, read back with the documented layout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "check.h"
#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"

#define SEALED_BYTES (FV_KEY_BYTES + FV_SEAL_BYTES) /* 80 */
#define COMMIT_LABEL "FieldVault key commitment v1"   /* FORMAT.md 5.2 */

/* ---- small helpers ---------------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_envelope: out of memory\n");
        exit(2);
    }
    return p;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly n bytes of hex from p[0..len); 1 on success. */
static int unhex_n(unsigned char *out, size_t n, const char *p, size_t len)
{
    if (len != 2 * n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

static unsigned char *read_file(const char *dir, const char *name, size_t *n)
{
    char path[1024];
    FILE *f;
    unsigned char *buf = NULL;
    long size;

    *n = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0) {
        buf = xmalloc((size_t)size + 1);
        *n = fread(buf, 1, (size_t)size, f);
        buf[*n] = 0;
    }
    fclose(f);
    return buf;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* FORMAT.md "Attachments": LE64(index) || 16 zero bytes. */
static void chunk_nonce(unsigned char nonce[FV_NONCE_BYTES], uint64_t i)
{
    memset(nonce, 0, FV_NONCE_BYTES);
    put_le(nonce, i, 8);
}

/* FORMAT.md 5.2, written out with libsodium itself: BLAKE2b-256 keyed with
 * the 32-byte content key over the 28 bytes of the label. */
static void key_commit(unsigned char out[32], const unsigned char key[32])
{
    crypto_generichash(out, 32, (const unsigned char *)COMMIT_LABEL,
                       sizeof COMMIT_LABEL - 1, key, 32);
}

static int parse_rc(const unsigned char *buf, size_t len)
{
    fv_env e;
    int rc = fv_env_parse(&e, buf, len);
    if (rc == FV_OK)
        fv_env_clear(&e);
    return rc;
}

static int finish(fv_enc *e, unsigned char **out, size_t *len)
{
    int rc = fv_enc_finish(e, out, len);
    CHECK_EQ(rc, FV_OK);
    return rc;
}

/* ---- a minimal JSON reader for vectors.json ----------------------------- */

typedef struct jv {
    const char *p, *end; /* one value's text */
} jv;

static const char *j_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* The end of the value starting at p, or NULL. */
static const char *j_skip(const char *p, const char *e)
{
    p = j_ws(p, e);
    if (p >= e)
        return NULL;
    if (*p == '"') {
        for (p++; p < e && *p != '"'; p++)
            if (*p == '\\')
                p++;
        return p < e ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = j_ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                if (!(p = j_skip(p, e)))
                    return NULL;
                p = j_ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p++;
            }
            if (!(p = j_skip(p, e)))
                return NULL;
            p = j_ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            return p < e && *p == close ? p + 1 : NULL;
        }
    }
    while (p < e && !strchr(",]} \n\r\t", *p))
        p++;
    return p;
}

/* Next member of an object (key set) or element of an array (key NULL):
 * *it starts NULL. Returns 1 while there is one. */
static int j_next(jv c, const char **it, jv *key, jv *val)
{
    const char *p = *it ? *it : c.p + 1, *q;
    p = j_ws(p, c.end);
    if (p < c.end && *p == ',')
        p = j_ws(p + 1, c.end);
    if (p >= c.end || *p == '}' || *p == ']')
        return 0;
    if (key) {
        if (!(q = j_skip(p, c.end)))
            return 0;
        key->p = p;
        key->end = q;
        p = j_ws(q, c.end);
        if (p >= c.end || *p != ':')
            return 0;
        p = j_ws(p + 1, c.end);
    }
    if (!(q = j_skip(p, c.end)))
        return 0;
    val->p = p;
    val->end = q;
    *it = q;
    return 1;
}

static int j_member(jv obj, const char *name, jv *out)
{
    const char *it = NULL;
    jv k;
    size_t n = strlen(name);
    if (obj.p >= obj.end || *obj.p != '{')
        return 0;
    while (j_next(obj, &it, &k, out))
        if ((size_t)(k.end - k.p) == n + 2 && memcmp(k.p + 1, name, n) == 0)
            return 1;
    return 0;
}

/* A dotted path of object members, e.g. "envelopes.genesis.id". */
static jv j_get(jv root, const char *path)
{
    char part[64];
    jv cur = root, bad = {"", ""};
    while (*path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part)
            return bad;
        memcpy(part, path, n);
        part[n] = 0;
        if (!j_member(cur, part, &cur)) {
            fprintf(stderr, "  vectors.json has no %s\n", part);
            return bad;
        }
        path += n + (path[n] == '.');
    }
    return cur;
}

static size_t j_len(jv arr)
{
    const char *it = NULL;
    jv v;
    size_t n = 0;
    while (j_next(arr, &it, NULL, &v))
        n++;
    return n;
}

static jv j_at(jv arr, size_t i)
{
    const char *it = NULL;
    jv v = {"", ""};
    for (size_t k = 0; k <= i; k++)
        if (!j_next(arr, &it, NULL, &v))
            return (jv){"", ""};
    return v;
}

static void utf8_put(char **o, unsigned long cp)
{
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80) {
        *u++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *u++ = (unsigned char)(0xc0 | cp >> 6);
        *u++ = (unsigned char)(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        *u++ = (unsigned char)(0xe0 | cp >> 12);
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 63));
        *u++ = (unsigned char)(0x80 | (cp & 63));
    } else {
        *u++ = (unsigned char)(0xf0 | cp >> 18);
        *u++ = (unsigned char)(0x80 | ((cp >> 12) & 63));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 63));
        *u++ = (unsigned char)(0x80 | (cp & 63));
    }
    *o = (char *)u;
}

/* A JSON string, unescaped, malloc'd and NUL-terminated; *n its length. */
static char *j_str(jv v, size_t *n)
{
    const char *p = v.p + 1, *e = v.end - 1;
    char *out = xmalloc((size_t)(v.end - v.p) + 1), *o = out;
    if (v.end - v.p < 2 || *v.p != '"') {
        *out = 0;
        *n = 0;
        return out;
    }
    while (p < e) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': *o++ = '\n'; p++; break;
        case 't': *o++ = '\t'; p++; break;
        case 'r': *o++ = '\r'; p++; break;
        case 'b': *o++ = '\b'; p++; break;
        case 'f': *o++ = '\f'; p++; break;
        case 'u': {
            unsigned long cp = strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 5;
            if (cp >= 0xd800 && cp < 0xdc00 && p + 6 <= e && p[0] == '\\') {
                unsigned long lo =
                    strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            utf8_put(&o, cp);
            break;
        }
        default: *o++ = *p++; break;
        }
    }
    *o = 0;
    *n = (size_t)(o - out);
    return out;
}

/* A hex string of exactly n bytes. */
static int j_hex(jv v, unsigned char *out, size_t n)
{
    int ok = v.end - v.p >= 2 && *v.p == '"' &&
             unhex_n(out, n, v.p + 1, (size_t)(v.end - v.p - 2));
    if (!ok)
        fprintf(stderr, "  bad hex of %zu bytes in vectors.json: %.40s\n", n, v.p);
    return ok;
}

/* A hex string of any length, malloc'd. */
static unsigned char *j_hexdup(jv v, size_t *n)
{
    size_t len = v.end - v.p >= 2 ? (size_t)(v.end - v.p - 2) / 2 : 0;
    unsigned char *out = xmalloc(len);
    *n = j_hex(v, out, len) ? len : 0;
    return out;
}

static long long j_int(jv v)
{
    return strtoll(v.p, NULL, 10);
}

/* 1 if the JSON string v equals p[0..n). */
static int j_eq(jv v, const char *p, size_t n)
{
    size_t m;
    char *s = j_str(v, &m);
    int eq = m == n && memcmp(s, p, n) == 0;
    free(s);
    return eq;
}

/* ---- an independent envelope writer (FORMAT.md, "Envelope") -------------- */

/* Body fields, with knobs to break each rule. Defaults (body_defaults) make
 * a valid genesis revision. */
struct body {
    uint64_t version, kind;
    size_t map_count; /* 0: the right count */
    int swap_first;   /* write key 2 before key 1 */
    int has_record;
    unsigned char record[32];
    const unsigned char (*parents)[32];
    size_t nparents;
    const unsigned char (*rpk)[32];
    const unsigned char (*rseal)[SEALED_BYTES];
    size_t nrecip, pk_len, seal_len, recip_arity;
    const unsigned char *nonce;
    size_t nonce_len;
    const unsigned char *ct;
    size_t ct_len;
    size_t natt;
    const uint64_t *counts;
    const unsigned char (*chunks)[32];
    size_t hash_len;
    const unsigned char *commit; /* key 9 */
    size_t commit_len;
    int no_commit_key;
    int extra_key; /* add key 10 */
    int no_chunks_key;
};

static void enc_body(fv_enc *e, const struct body *b)
{
    static const unsigned char zero[256];
    size_t n = b->map_count ? b->map_count
                            : 8u + (b->has_record != 0) + (b->extra_key != 0) -
                                  (b->no_chunks_key != 0) -
                                  (b->no_commit_key != 0);
    fv_enc_init(e);
    fv_enc_map(e, n);
    if (b->swap_first) {
        fv_enc_uint(e, 2);
        fv_enc_uint(e, b->kind);
        fv_enc_uint(e, 1);
        fv_enc_uint(e, b->version);
    } else {
        fv_enc_uint(e, 1);
        fv_enc_uint(e, b->version);
        fv_enc_uint(e, 2);
        fv_enc_uint(e, b->kind);
    }
    if (b->has_record) {
        fv_enc_uint(e, 3);
        fv_enc_bytes(e, b->record, 32);
    }
    fv_enc_uint(e, 4);
    fv_enc_array(e, b->nparents);
    for (size_t i = 0; i < b->nparents; i++)
        fv_enc_bytes(e, b->parents[i], 32);
    fv_enc_uint(e, 5);
    fv_enc_array(e, b->nrecip);
    for (size_t i = 0; i < b->nrecip; i++) {
        fv_enc_array(e, b->recip_arity);
        fv_enc_bytes(e, b->rpk[i], b->pk_len);
        if (b->recip_arity >= 2)
            fv_enc_bytes(e, b->seal_len <= SEALED_BYTES ? b->rseal[i] : zero,
                         b->seal_len);
        if (b->recip_arity >= 3)
            fv_enc_bytes(e, zero, 0);
    }
    fv_enc_uint(e, 6);
    fv_enc_bytes(e, b->nonce_len <= FV_NONCE_BYTES ? b->nonce : zero, b->nonce_len);
    fv_enc_uint(e, 7);
    fv_enc_bytes(e, b->ct, b->ct_len);
    if (!b->no_chunks_key) {
        fv_enc_uint(e, 8);
        fv_enc_array(e, b->natt);
        for (size_t a = 0, c = 0; a < b->natt; a++) {
            fv_enc_array(e, b->counts[a]);
            for (uint64_t k = 0; k < b->counts[a]; k++, c++)
                fv_enc_bytes(e, b->chunks[c], b->hash_len);
        }
    }
    if (!b->no_commit_key) {
        fv_enc_uint(e, 9);
        fv_enc_bytes(e, b->commit_len <= 32 ? b->commit : zero, b->commit_len);
    }
    if (b->extra_key) {
        fv_enc_uint(e, 10);
        fv_enc_uint(e, 0);
    }
}

/* The protected header {1: alg, 4: kid}, with knobs. */
struct prot {
    int64_t alg;
    const unsigned char *kid;
    size_t kid_len;
    int swap;      /* {4: kid, 1: alg} */
    int extra;     /* add {3: 0} (content type) */
    int empty;     /* a zero-length protected bstr */
};

static void enc_prot(fv_enc *e, const struct prot *p)
{
    fv_enc_init(e);
    if (p->empty)
        return;
    fv_enc_map(e, 2 + (p->extra != 0));
    if (p->swap) {
        fv_enc_uint(e, 4);
        fv_enc_bytes(e, p->kid, p->kid_len);
        fv_enc_uint(e, 1);
        fv_enc_int(e, p->alg);
    } else {
        fv_enc_uint(e, 1);
        fv_enc_int(e, p->alg);
        if (p->extra) {
            fv_enc_uint(e, 3);
            fv_enc_uint(e, 0);
        }
        fv_enc_uint(e, 4);
        fv_enc_bytes(e, p->kid, p->kid_len);
    }
}

/* The outer COSE_Sign1, with knobs. */
struct outer {
    uint64_t tag;
    int untagged;
    size_t arity;    /* 4 */
    int unprot_kid;  /* unprotected {4: kid} instead of {} */
    size_t sig_len;  /* 64 */
    const unsigned char *sk;
    int sign_body_only; /* sign the body bytes instead of Sig_structure */
};

static void sig_structure(fv_enc *e, const unsigned char *prot, size_t pl,
                          const unsigned char *body, size_t bl)
{
    fv_enc_init(e);
    fv_enc_array(e, 4);
    fv_enc_cstr(e, "Signature1");
    fv_enc_bytes(e, prot, pl);
    fv_enc_bytes(e, "", 0);
    fv_enc_bytes(e, body, bl);
}

static int make_env(unsigned char **out, size_t *len, const struct outer *o,
                    const unsigned char *prot, size_t pl,
                    const unsigned char *body, size_t bl)
{
    unsigned char sig[FV_SIG_BYTES + 1] = {0}, *tbs = NULL;
    size_t tl = 0;
    fv_enc e;
    int rc;

    sig_structure(&e, prot, pl, body, bl);
    if ((rc = finish(&e, &tbs, &tl)))
        return rc;
    if (o->sign_body_only)
        fv_sign(sig, body, bl, o->sk);
    else
        fv_sign(sig, tbs, tl, o->sk);
    fv_enc_free_buf(tbs, tl);
    fv_enc_init(&e);
    if (!o->untagged)
        fv_enc_tag(&e, o->tag);
    fv_enc_array(&e, o->arity);
    fv_enc_bytes(&e, prot, pl);
    if (o->unprot_kid) {
        fv_enc_map(&e, 1);
        fv_enc_uint(&e, 4);
        fv_enc_bytes(&e, prot, 0);
    } else {
        fv_enc_map(&e, 0);
    }
    fv_enc_bytes(&e, body, bl);
    if (o->arity >= 4)
        fv_enc_bytes(&e, sig, o->sig_len);
    if (o->arity >= 5)
        fv_enc_bytes(&e, "", 0);
    return finish(&e, out, len);
}

static struct outer outer_defaults(const unsigned char *sk)
{
    struct outer o = {18, 0, 4, 0, FV_SIG_BYTES, sk, 0};
    return o;
}

/* Encodes body and protected header and wraps them: the rc of parsing. */
static int try_env(const struct body *b, const struct prot *p,
                   const struct outer *o, fv_env *keep,
                   unsigned char **keep_bytes)
{
    unsigned char *body = NULL, *pr = NULL, *env = NULL;
    size_t bl = 0, pl = 0, el = 0;
    fv_enc e;
    int rc;

    enc_body(&e, b);
    if ((rc = finish(&e, &body, &bl)))
        return rc;
    enc_prot(&e, p);
    if ((rc = finish(&e, &pr, &pl))) {
        fv_enc_free_buf(body, bl);
        return rc;
    }
    rc = make_env(&env, &el, o, pr, pl, body, bl);
    if (rc == FV_OK) {
        if (keep) {
            /* The caller keeps the bytes: they back the parsed pointers. */
            rc = fv_env_parse(keep, env, el);
            if (rc == FV_OK)
                *keep_bytes = env;
            else
                free(env);
        } else {
            rc = parse_rc(env, el);
            free(env);
        }
    }
    fv_enc_free_buf(body, bl);
    fv_enc_free_buf(pr, pl);
    return rc;
}

/* ---- a. the committed vectors ----------------------------------------- */

/* The envelope vectors that must be there; vectors.json may list more. */
static const char *const vector_names[] = {"genesis", "revision", "concurrent",
                                           "tombstone", "early", "grant"};

struct vec {
    char *json;
    size_t json_len;
    jv root;
    const char *dir;
};

/* Re-encodes a parsed envelope with this file's writer and the device key:
 * Ed25519 is deterministic, so the bytes must be the same. */
static void check_reencode(const fv_env *p, const unsigned char *bytes,
                           size_t len, const unsigned char *sign_sk)
{
    unsigned char rpk[FV_ENV_MAX_RECIPIENTS][32];
    unsigned char rseal[FV_ENV_MAX_RECIPIENTS][SEALED_BYTES];
    unsigned char *body = NULL, *pr = NULL, *env = NULL;
    size_t bl = 0, pl = 0, el = 0;
    struct body b;
    struct prot pp = {-8, p->author, 32, 0, 0, 0};
    struct outer o = outer_defaults(sign_sk);
    fv_enc e;

    memset(&b, 0, sizeof b);
    for (size_t i = 0; i < p->nrecipients; i++) {
        memcpy(rpk[i], p->recipient_pk[i], 32);
        memcpy(rseal[i], p->recipient_seal[i], SEALED_BYTES);
    }
    b.version = (uint64_t)p->version;
    b.kind = (uint64_t)p->kind;
    b.has_record = !p->genesis;
    memcpy(b.record, p->record, 32);
    b.parents = (const unsigned char(*)[32])p->parents;
    b.nparents = p->nparents;
    b.rpk = (const unsigned char(*)[32])rpk;
    b.rseal = (const unsigned char(*)[SEALED_BYTES])rseal;
    b.nrecip = p->nrecipients;
    b.pk_len = 32;
    b.seal_len = SEALED_BYTES;
    b.recip_arity = 2;
    b.nonce = p->nonce;
    b.nonce_len = FV_NONCE_BYTES;
    b.ct = p->ct;
    b.ct_len = p->ctlen;
    b.natt = p->nattachments;
    b.counts = p->chunk_counts;
    b.chunks = (const unsigned char(*)[32])p->chunks;
    b.hash_len = 32;
    b.commit = p->commit;
    b.commit_len = 32;
    enc_body(&e, &b);
    if (finish(&e, &body, &bl))
        return;
    enc_prot(&e, &pp);
    if (finish(&e, &pr, &pl) == FV_OK &&
        make_env(&env, &el, &o, pr, pl, body, bl) == FV_OK) {
        CHECK_EQ(el, len);
        CHECK(el == len && memcmp(env, bytes, len) == 0);
        free(env);
    }
    fv_enc_free_buf(body, bl);
    fv_enc_free_buf(pr, pl);
}

/* The decoded payload equals the JSON "payload" object. */
static void check_payload_json(const fv_rec *r, jv pj)
{
    jv v, k, k2;
    const char *it = NULL;
    size_t i = 0;

    CHECK_EQ(r->pub.modified, j_int(j_get(pj, "time")));
    CHECK_EQ(r->pub.created, j_int(j_get(pj, "created")));
    CHECK(j_eq(j_get(pj, "title"), r->pub.title, strlen(r->pub.title)));
    CHECK(j_eq(j_get(pj, "narrative"), r->pub.narrative, r->pub.narrative_len));
    v = j_get(pj, "tags");
    CHECK_EQ(j_len(v), r->pub.ntags);
    for (i = 0; i < r->pub.ntags; i++)
        CHECK(j_eq(j_at(v, i), r->pub.tags[i], strlen(r->pub.tags[i])));
    v = j_get(pj, "fields");
    for (i = 0; j_next(v, &it, &k, &k2); i++)
        ;
    CHECK_EQ(i, r->pub.nfields);
    it = NULL;
    for (i = 0; i < r->pub.nfields; i++) {
        jv val;
        if (!j_next(v, &it, &k, &val))
            break;
        CHECK(j_eq(k, r->pub.fields[i].key, strlen(r->pub.fields[i].key)));
        CHECK(j_eq(val, r->pub.fields[i].value, strlen(r->pub.fields[i].value)));
    }
    v = j_get(pj, "attachments");
    CHECK_EQ(j_len(v), r->pub.nattachments);
    for (i = 0; i < r->pub.nattachments && i < j_len(v); i++) {
        jv a = j_at(v, i);
        unsigned char key[32];
        CHECK(j_eq(j_get(a, "name"), r->pub.attachments[i].name,
                   strlen(r->pub.attachments[i].name)));
        CHECK_EQ(j_int(j_get(a, "size")), r->pub.attachments[i].size);
        CHECK_EQ(j_int(j_get(a, "chunk")), r->pub.attachments[i].chunk_bytes);
        CHECK(j_hex(j_get(a, "key"), key, 32) && memcmp(key, r->keys[i], 32) == 0);
    }
}

static void test_keyfile_vector(struct vec *V, unsigned char vault_key[32])
{
    jv kj = j_get(V->root, "keyfile");
    unsigned char want[192], wk[32], wk_want[32], vk[32], vk_want[32], bad[120];
    unsigned char *kf;
    size_t n, plen;
    char *pass = j_str(j_get(kj, "passphrase"), &plen);
    uint64_t ops, mem;

    /* 192 bytes (two slots), or 120 for vectors made before the duress slot
     * (still read: docs/FORMAT.md 3); slot 1 is at the same offsets. */
    kf = read_file(V->dir, "vault.key", &n);
    CHECK(kf != NULL);
    CHECK(n == 120 || n == 192);
    if (!kf || (n != 120 && n != 192)) {
        free(kf);
        free(pass);
        return;
    }
    CHECK(j_hex(j_get(kj, "hex"), want, n));
    CHECK(memcmp(kf, want, n) == 0);
    /* Header: magic, LE32 version, LE32 alg, LE64 opslimit, LE64 memlimit,
     * salt; then nonce, then the wrapped key and its tag. */
    CHECK(memcmp(kf, "FieldVlt", 8) == 0);
    CHECK_EQ(get_le(kf + 8, 4), 1);
    CHECK_EQ(get_le(kf + 12, 4), 1);
    ops = get_le(kf + 16, 8);
    mem = get_le(kf + 24, 8);
    CHECK_EQ(ops, 1);
    CHECK_EQ(mem, 8192);
    CHECK_EQ(ops, j_int(j_get(kj, "opslimit")));
    CHECK_EQ(mem, j_int(j_get(kj, "memlimit")));
    CHECK(j_hex(j_get(kj, "salt"), want, 16) && memcmp(want, kf + 32, 16) == 0);
    CHECK(j_hex(j_get(kj, "nonce"), want, 24) && memcmp(want, kf + 48, 24) == 0);
    CHECK(j_hex(j_get(kj, "wrapping_key"), wk_want, 32));
    CHECK(j_hex(j_get(kj, "vault_key"), vk_want, 32));
    CHECK(strlen(pass) == plen);

    CHECK_EQ(fv_pwhash(wk, 32, pass, plen, kf + 32, ops, mem), FV_OK);
    CHECK(memcmp(wk, wk_want, 32) == 0);
    CHECK_EQ(fv_aead_decrypt(vk, kf + 72, 48, kf, 48, kf + 48, wk), FV_OK);
    CHECK(memcmp(vk, vk_want, 32) == 0);
    memcpy(vault_key, vk, 32);

    /* The whole 48-byte header is the AAD: changing any byte of it (here the
     * algorithm field, then the last salt byte) breaks the unwrap even with
     * the right wrapping key. */
    memcpy(bad, kf, 120);
    bad[12] ^= 2;
    CHECK_EQ(fv_aead_decrypt(vk, bad + 72, 48, bad, 48, bad + 48, wk), FV_ECORRUPT);
    memcpy(bad, kf, 120);
    bad[47] ^= 1;
    CHECK_EQ(fv_aead_decrypt(vk, bad + 72, 48, bad, 48, bad + 48, wk), FV_ECORRUPT);
    /* A wrong passphrase derives another key. */
    CHECK_EQ(fv_pwhash(wk, 32, pass, plen - 1, kf + 32, ops, mem), FV_OK);
    CHECK_EQ(fv_aead_decrypt(vk, kf + 72, 48, kf, 48, kf + 48, wk), FV_ECORRUPT);
    fv_wipe(vk, sizeof vk);
    free(kf);
    free(pass);
}

static void test_device_vector(struct vec *V, const unsigned char vault_key[32])
{
    jv dj = j_get(V->root, "device");
    unsigned char sub[32], sub_want[32], blob[136], ad[64], sec[96];
    unsigned char spk[32], ssk[64], bpk[32], bsk[32], m[5] = "probe", c[53], m2[5];

    CHECK(j_hex(j_get(dj, "devkey_subkey"), sub_want, 32));
    CHECK(j_hex(j_get(dj, "device_keys"), blob, sizeof blob));
    CHECK(j_hex(j_get(dj, "sign_pk"), spk, 32));
    CHECK(j_hex(j_get(dj, "sign_sk"), ssk, 64));
    CHECK(j_hex(j_get(dj, "box_pk"), bpk, 32));
    CHECK(j_hex(j_get(dj, "box_sk"), bsk, 32));
    fv_kdf_derive(sub, 32, 1, "fvdevkey", vault_key);
    CHECK(memcmp(sub, sub_want, 32) == 0);
    memcpy(ad, spk, 32);
    memcpy(ad + 32, bpk, 32);
    CHECK_EQ(fv_aead_decrypt(sec, blob + 24, 112, ad, 64, blob, sub), FV_OK);
    CHECK(memcmp(sec, ssk, 64) == 0);
    CHECK(memcmp(sec + 64, bsk, 32) == 0);
    CHECK(memcmp(ssk + 32, spk, 32) == 0); /* libsodium sk = seed || pk */
    /* The AAD is sign_pk || box_pk, in that order. */
    memcpy(ad, bpk, 32);
    memcpy(ad + 32, spk, 32);
    CHECK_EQ(fv_aead_decrypt(sec, blob + 24, 112, ad, 64, blob, sub), FV_ECORRUPT);
    /* Another subkey id does not open it. */
    fv_kdf_derive(sub, 32, 2, "fvdevkey", vault_key);
    memcpy(ad, spk, 32);
    memcpy(ad + 32, bpk, 32);
    CHECK_EQ(fv_aead_decrypt(sec, blob + 24, 112, ad, 64, blob, sub), FV_ECORRUPT);
    /* box_sk is box_pk's secret. */
    CHECK_EQ(fv_seal(c, m, 5, bpk), FV_OK);
    CHECK_EQ(fv_seal_open(m2, c, sizeof c, bpk, bsk), FV_OK);
    CHECK(memcmp(m, m2, 5) == 0);
    fv_wipe(sec, sizeof sec);
}

static void test_envelope_vectors(struct vec *V)
{
    jv ej = j_get(V->root, "envelopes");
    unsigned char dev_sk[64], dev_bpk[32], dev_bsk[32], org_pk[32], org_sk[32];
    unsigned char stranger_pk[32], stranger_sk[32];

    CHECK(j_hex(j_get(V->root, "device.sign_sk"), dev_sk, 64));
    CHECK(j_hex(j_get(V->root, "device.box_pk"), dev_bpk, 32));
    CHECK(j_hex(j_get(V->root, "device.box_sk"), dev_bsk, 32));
    CHECK(j_hex(j_get(V->root, "organisation.box_pk"), org_pk, 32));
    CHECK(j_hex(j_get(V->root, "organisation.box_sk"), org_sk, 32));
    fv_box_keypair(stranger_pk, stranger_sk);

    for (size_t vi = 0; vi < sizeof vector_names / sizeof vector_names[0]; vi++)
        CHECK(j_member(ej, vector_names[vi], &(jv){NULL, NULL}));
    for (const char *it = NULL;;) {
        jv name, x, arr;
        char *file;
        size_t fn, len, plen, want_len;
        unsigned char *bytes, *plain = NULL, *want_payload;
        unsigned char id[32], h[32], rec[32], author[32], nonce[24], key[32];
        unsigned char key_want[32], commit[32], commit_want[32];
        fv_env p;
        int rc, to_org = 0, to_dev = 0;

        if (!j_next(ej, &it, &name, &x))
            break;
#ifndef FV_ENV_GRANT
        if (j_int(j_get(x, "kind")) == 3)
            continue; /* this library predates key grants */
#endif
        file = j_str(j_get(x, "file"), &fn);
        bytes = read_file(V->dir, file, &len);
        CHECK(bytes != NULL);
        free(file);
        if (!bytes)
            continue;
        CHECK_EQ(len, j_int(j_get(x, "bytes")));
        CHECK(j_hex(j_get(x, "id"), id, 32));
        CHECK(j_hex(j_get(x, "record"), rec, 32));
        CHECK(j_hex(j_get(x, "author"), author, 32));
        CHECK(j_hex(j_get(x, "nonce"), nonce, 24));
        CHECK(j_hex(j_get(x, "content_key"), key_want, 32));
        CHECK(j_hex(j_get(x, "commit"), commit_want, 32));
        /* The commitment is FORMAT.md's function of the content key. */
        key_commit(commit, key_want);
        CHECK(memcmp(commit, commit_want, 32) == 0);
        /* The id is BLAKE2b-256 of the file, whatever parses it. */
        fv_hash(h, bytes, len);
        CHECK(memcmp(h, id, 32) == 0);
        /* The first bytes: tag 18, array of 4, protected bstr of 38 bytes
         * holding {1: -8, 4: h'<32 bytes>'}, then the empty map. */
        CHECK(len > 47 && memcmp(bytes, "\xd2\x84\x58\x26\xa2\x01\x27\x04\x58\x20", 10) == 0);
        CHECK(len > 47 && memcmp(bytes + 10, author, 32) == 0 && bytes[42] == 0xa0);

        rc = fv_env_parse(&p, bytes, len);
        CHECK_EQ(rc, FV_OK);
        if (rc) {
            free(bytes);
            continue;
        }
        CHECK(memcmp(p.id, id, 32) == 0);
        CHECK(memcmp(p.record, rec, 32) == 0);
        CHECK(memcmp(p.author, author, 32) == 0);
        CHECK(memcmp(p.nonce, nonce, 24) == 0);
        CHECK(memcmp(p.commit, commit_want, 32) == 0);
        CHECK_EQ(p.kind, j_int(j_get(x, "kind")));
        CHECK_EQ(p.genesis, *j_get(x, "genesis").p == 't');
        if (p.genesis)
            CHECK(memcmp(p.record, p.id, 32) == 0);
        arr = j_get(x, "parents");
        CHECK_EQ(p.nparents, j_len(arr));
        for (size_t i = 0; i < p.nparents && i < j_len(arr); i++)
            CHECK(j_hex(j_at(arr, i), h, 32) && memcmp(h, p.parents[i], 32) == 0);
        arr = j_get(x, "recipients");
        CHECK_EQ(p.nrecipients, j_len(arr));
        for (size_t i = 0; i < p.nrecipients && i < j_len(arr); i++) {
            CHECK(j_hex(j_at(arr, i), h, 32) &&
                  memcmp(h, p.recipient_pk[i], 32) == 0);
            to_org |= memcmp(p.recipient_pk[i], org_pk, 32) == 0;
            to_dev |= memcmp(p.recipient_pk[i], dev_bpk, 32) == 0;
        }
        CHECK(to_org || to_dev);
        arr = j_get(x, "chunks");
        CHECK_EQ(p.nattachments, j_len(arr));
        for (size_t a = 0, c = 0; a < p.nattachments && a < j_len(arr); a++) {
            jv list = j_at(arr, a);
            CHECK_EQ(p.chunk_counts[a], j_len(list));
            for (size_t k = 0; k < p.chunk_counts[a]; k++, c++)
                CHECK(j_hex(j_at(list, k), h, 32) && memcmp(h, p.chunks[c], 32) == 0);
        }
        check_reencode(&p, bytes, len, dev_sk);

        /* Each recipient's sealed key is the content key. */
        for (size_t i = 0; i < p.nrecipients; i++) {
            const unsigned char *sk =
                memcmp(p.recipient_pk[i], org_pk, 32) == 0 ? org_sk : dev_bsk;
            CHECK_EQ(fv_seal_open(key, p.recipient_seal[i], SEALED_BYTES,
                                  p.recipient_pk[i], sk), FV_OK);
            CHECK(memcmp(key, key_want, 32) == 0);
        }
        /* fv_env_decrypt takes the committed key, and no other (here the
         * content key with one bit changed). */
        CHECK_EQ(fv_env_decrypt(&p, key_want, &plain, &plen), FV_OK);
        fv_env_free_plain(plain, plen);
        key[0] = key_want[0] ^ 1;
        memcpy(key + 1, key_want + 1, 31);
        CHECK_EQ(fv_env_decrypt(&p, key, &plain, &plen), FV_ECORRUPT);
        CHECK(plain == NULL);
        /* Content: XChaCha20-Poly1305 with the body's nonce, empty AAD;
         * in format 2 the payload padded to its bucket (FORMAT.md 5.8). */
        want_payload = j_hexdup(j_get(x, "payload_hex"), &want_len);
        {
            jv ver;
            int version = j_member(x, "version", &ver) ? (int)j_int(ver) : 1;
            size_t raw_len = want_len;
            unsigned char *raw = version == 2
                                     ? j_hexdup(j_get(x, "plaintext_hex"), &raw_len)
                                     : NULL;
            CHECK_EQ(p.version, version);
            if (version == 2)
                CHECK(raw && raw_len == fv_env_padded_len(want_len) &&
                      memcmp(raw, want_payload, want_len) == 0 &&
                      raw[want_len] == 0x80);
            plain = xmalloc(p.ctlen);
            CHECK_EQ(fv_aead_decrypt(plain, p.ct, p.ctlen, NULL, 0, p.nonce, key_want), FV_OK);
            CHECK(p.ctlen - FV_TAG_BYTES == raw_len &&
                  memcmp(plain, raw ? raw : want_payload, raw_len) == 0);
            free(plain);
            free(raw);
        }
        /* Opened by each recipient; a key pair that is none gets
         * FV_ENOTFOUND, not a decryption attempt. */
        CHECK_EQ(fv_env_open(&p, org_pk, org_sk, &plain, &plen),
                 to_org ? FV_OK : FV_ENOTFOUND);
        CHECK(!to_org || (plen == want_len && memcmp(plain, want_payload, want_len) == 0));
        fv_env_free_plain(plain, plen);
        CHECK_EQ(fv_env_open(&p, dev_bpk, dev_bsk, &plain, &plen),
                 to_dev ? FV_OK : FV_ENOTFOUND);
        fv_env_free_plain(plain, plen);
        plain = xmalloc(want_len);
        memcpy(plain, want_payload, want_len);
        plen = want_len;
        if (p.kind != FV_ENV_REVISION) { /* a tombstone or a key grant */
            int64_t t = 0;
            CHECK_EQ(fv_tombstone_decode(&t, plain, plen), FV_OK);
            CHECK_EQ(t, j_int(j_get(x, "payload.time")));
            CHECK_EQ(p.nattachments, 0);
        } else {
            fv_rec *r = NULL;
            CHECK_EQ(fv_payload_decode(&r, plain, plen), FV_OK);
            if (r) {
                check_payload_json(r, j_get(x, "payload"));
                /* The signed chunk lists match the payload's manifest. */
                CHECK_EQ(r->pub.nattachments, p.nattachments);
                for (size_t a = 0; a < p.nattachments && a < r->pub.nattachments; a++)
                    CHECK_EQ(r->pub.attachments[a].chunks, p.chunk_counts[a]);
                fv_rec_free(r);
            }
        }
        fv_env_free_plain(plain, plen);
        CHECK_EQ(fv_env_open(&p, stranger_pk, stranger_sk, &plain, &plen), FV_ENOTFOUND);
        /* The right public key with a wrong secret key. */
        CHECK_EQ(fv_env_open(&p, to_org ? org_pk : dev_bpk, stranger_sk, &plain, &plen),
                 FV_ECORRUPT);
        fv_env_clear(&p);
        free(want_payload);
        free(bytes);
    }
    fv_wipe(dev_sk, sizeof dev_sk);
}

/* The key grant: opened by the organisation, its sealed key is the content
 * key of the early record, which the organisation could not open itself. */
static void test_grant_vector(struct vec *V)
{
    jv gj = j_get(V->root, "envelopes.grant"), ej = j_get(V->root, "envelopes.early");
    unsigned char org_pk[32], org_sk[32], key[32], want[32], eid[32];
    unsigned char *gb, *eb, *plain, *payload;
    size_t gl, el, fn, pl;
    char *gf, *ef;
    fv_env g, e;

#ifndef FV_ENV_GRANT
    return;
#endif
    CHECK(j_hex(j_get(V->root, "organisation.box_pk"), org_pk, 32));
    CHECK(j_hex(j_get(V->root, "organisation.box_sk"), org_sk, 32));
    gf = j_str(j_get(gj, "file"), &fn);
    ef = j_str(j_get(ej, "file"), &fn);
    gb = read_file(V->dir, gf, &gl);
    eb = read_file(V->dir, ef, &el);
    free(gf);
    free(ef);
    CHECK(gb && eb);
    if (gb && eb && fv_env_parse(&g, gb, gl) == FV_OK) {
        if (fv_env_parse(&e, eb, el) == FV_OK) {
            CHECK_EQ(g.kind, 3);
            CHECK(e.genesis && e.nrecipients == 1 && g.nrecipients == 1);
            CHECK(g.nparents == 1 && memcmp(g.parents[0], e.id, 32) == 0);
            CHECK(memcmp(g.record, e.record, 32) == 0);
            CHECK(memcmp(g.author, e.author, 32) == 0);
            /* The grant carries the commitment of the key it grants. */
            CHECK(memcmp(g.commit, e.commit, 32) == 0);
            CHECK(memcmp(g.recipient_pk[0], org_pk, 32) == 0);
            CHECK(j_hex(j_get(ej, "id"), eid, 32) && memcmp(eid, e.id, 32) == 0);
            /* The early record is not sealed to the organisation ... */
            CHECK_EQ(fv_env_open(&e, org_pk, org_sk, &plain, &pl), FV_ENOTFOUND);
            /* ... but the grant gives it the key: FORMAT.md 5.6. */
            CHECK_EQ(fv_seal_open(key, g.recipient_seal[0], SEALED_BYTES, org_pk,
                                  org_sk), FV_OK);
            CHECK(j_hex(j_get(ej, "content_key"), want, 32) && memcmp(key, want, 32) == 0);
            CHECK(j_hex(j_get(gj, "content_key"), want, 32) && memcmp(key, want, 32) == 0);
            plain = xmalloc(e.ctlen);
            CHECK_EQ(fv_aead_decrypt(plain, e.ct, e.ctlen, NULL, 0, e.nonce, key), FV_OK);
            payload = j_hexdup(j_get(ej, "payload_hex"), &pl);
            /* format 2: the payload, then its padding (FORMAT.md 5.8) */
            CHECK(e.ctlen - FV_TAG_BYTES ==
                      (e.version == 2 ? fv_env_padded_len(pl) : pl) &&
                  memcmp(plain, payload, pl) == 0);
            free(plain);
            /* ... and the library takes it: it is the committed key. */
            CHECK_EQ(fv_env_decrypt(&e, key, &plain, &fn), FV_OK);
            CHECK(fn == pl && plain && memcmp(plain, payload, pl) == 0);
            fv_env_free_plain(plain, fn);
            free(payload);
            fv_env_clear(&e);
        }
        fv_env_clear(&g);
    }
    fv_wipe(key, sizeof key);
    free(gb);
    free(eb);
}

static void test_attachment_vectors(struct vec *V)
{
    jv atts = j_get(V->root, "attachments");
    jv rev_chunks = j_get(V->root, "envelopes.revision.chunks");
    jv rev_atts = j_get(V->root, "envelopes.revision.payload.attachments");

    /* Format 1: three; format 2 adds an unpadded one kept from format 1. */
    CHECK(j_len(atts) >= 3);
    CHECK_EQ(j_len(rev_chunks), j_len(atts));
    for (size_t a = 0; a < j_len(atts); a++) {
        jv aj = j_at(atts, a), chunks = j_get(aj, "chunks");
        unsigned char key[32], pk[32], want_hash[32], h[32];
        uint64_t size = (uint64_t)j_int(j_get(aj, "size"));
        uint64_t csize = (uint64_t)j_int(j_get(aj, "chunk"));
        size_t nch = j_len(chunks), got = 0, hexlen = 0;
        unsigned char *plain = xmalloc(size), *hexplain = NULL;
        jv rule, padj;
        int padded = j_member(aj, "padded", &padj) && j_int(padj) == 1;

        CHECK_EQ(csize, FV_CHUNK_BYTES);
        CHECK_EQ(nch, size / csize + (size % csize != 0));
        CHECK(j_hex(j_get(aj, "key"), key, 32));
        /* The same key sits in the revision's payload, same position. */
        CHECK(j_hex(j_get(j_at(rev_atts, a), "key"), pk, 32) && memcmp(pk, key, 32) == 0);
        {
            size_t nl;
            char *name = j_str(j_get(aj, "name"), &nl);
            CHECK(j_eq(j_get(j_at(rev_atts, a), "name"), name, nl));
            free(name);
        }
        CHECK_EQ(j_len(j_at(rev_chunks, a)), nch);
        for (size_t i = 0; i < nch; i++) {
            jv cj = j_at(chunks, i);
            unsigned char nonce[24], nonce_want[24], *ct;
            size_t fn, clen;
            char *file = j_str(j_get(cj, "file"), &fn);
            ct = read_file(V->dir, file, &clen);
            free(file);
            CHECK(ct != NULL);
            if (!ct)
                break;
            CHECK_EQ(clen, j_int(j_get(cj, "bytes")));
            /* Every chunk but the last holds `chunk` plaintext bytes; the
             * last, its bytes, padded to its bucket in format 2. */
            {
                fv_attachment_info ai = {"", size, (uint32_t)csize, nch, 0};
                CHECK_EQ(clen, fv_chunk_ct_bytes(&ai, padded, i));
                CHECK_EQ(clen - FV_TAG_BYTES,
                         i + 1 < nch ? csize
                                     : padded ? fv_chunk_padded_len(size - i * csize, csize)
                                              : size - i * csize);
            }
            CHECK(j_hex(j_get(cj, "hash"), want_hash, 32));
            fv_hash(h, ct, clen);
            CHECK(memcmp(h, want_hash, 32) == 0);
            /* ... and it is the one the signed envelope lists. */
            CHECK(j_hex(j_at(j_at(rev_chunks, a), i), h, 32) &&
                  memcmp(h, want_hash, 32) == 0);
            chunk_nonce(nonce, i);
            CHECK(j_hex(j_get(cj, "nonce"), nonce_want, 24) &&
                  memcmp(nonce, nonce_want, 24) == 0);
            {
                size_t real = i + 1 < nch ? csize : size - i * csize;
                unsigned char *pt = xmalloc(clen);
                CHECK_EQ(fv_aead_decrypt(pt, ct, clen, NULL, 0, nonce, key), FV_OK);
                if (real <= clen - FV_TAG_BYTES && got + real <= size) {
                    memcpy(plain + got, pt, real);
                    for (size_t z = real; z < clen - FV_TAG_BYTES; z++)
                        if (pt[z] != 0) {
                            CHECK(!"padding is zero bytes");
                            break;
                        }
                }
                free(pt);
            }
            /* The index is bound in: another index's nonce fails. */
            chunk_nonce(nonce, i + 1);
            {
                unsigned char *tmp = xmalloc(clen);
                CHECK_EQ(fv_aead_decrypt(tmp, ct, clen, NULL, 0, nonce, key), FV_ECORRUPT);
                free(tmp);
            }
            got += i + 1 < nch ? csize : size - i * csize;
            free(ct);
        }
        CHECK_EQ(got, size);
        fv_hash(h, plain, got);
        CHECK(j_hex(j_get(aj, "plaintext_blake2b256"), want_hash, 32) &&
              memcmp(h, want_hash, 32) == 0);
        if (j_member(aj, "plaintext_hex", &rule)) {
            hexplain = j_hexdup(rule, &hexlen);
            CHECK(hexlen == size && memcmp(hexplain, plain, size) == 0);
            free(hexplain);
        } else {
            CHECK(j_member(aj, "plaintext_rule", &rule));
            for (size_t i = 0; i < got; i++)
                if (plain[i] != (unsigned char)(7 * i + 3)) {
                    CHECK(!"plaintext rule");
                    break;
                }
        }
        free(plain);
    }
    /* The kept attachment: the revision reuses the genesis' chunk. */
    {
        unsigned char g[32], r[32];
        CHECK(j_hex(j_at(j_at(j_get(V->root, "envelopes.genesis.chunks"), 0), 0), g, 32));
        CHECK(j_hex(j_at(j_at(rev_chunks, 0), 0), r, 32));
        CHECK(memcmp(g, r, 32) == 0);
    }
}

static int load_vectors_in(struct vec *V, const char *dir);

static int load_vectors(struct vec *V)
{
    const char *dir = getenv("FV_TEST_VECTORS");
    return load_vectors_in(V, dir && *dir ? dir : "tests/vectors");
}

static int load_vectors_in(struct vec *V, const char *dir)
{
    V->dir = dir;
    V->json = (char *)read_file(V->dir, "vectors.json", &V->json_len);
    if (!V->json) {
        fprintf(stderr, "test_envelope: no %s/vectors.json (set FV_TEST_VECTORS)\n",
                V->dir);
        CHECK(!"vectors.json is readable");
        return 0;
    }
    V->root.p = j_ws(V->json, V->json + V->json_len);
    V->root.end = j_skip(V->root.p, V->json + V->json_len);
    CHECK(V->root.end != NULL && *V->root.p == '{');
    return V->root.end != NULL && *V->root.p == '{';
}

/* ---- b. round trips with random keys ----------------------------------- */

struct keys {
    unsigned char spk[32], ssk[64];
    unsigned char bpk[FV_ENV_MAX_RECIPIENTS + 1][32], bsk[FV_ENV_MAX_RECIPIENTS + 1][32];
};

static void new_keys(struct keys *k)
{
    fv_sign_keypair(k->spk, k->ssk);
    for (size_t i = 0; i <= FV_ENV_MAX_RECIPIENTS; i++)
        fv_box_keypair(k->bpk[i], k->bsk[i]);
}

static fv_env_spec spec_for(const struct keys *k, const unsigned char *payload,
                            size_t len, size_t nrecip)
{
    fv_env_spec s;
    memset(&s, 0, sizeof s);
    s.kind = FV_ENV_REVISION;
    s.payload = payload;
    s.payload_len = len;
    s.recipients = (const unsigned char(*)[32])k->bpk;
    s.nrecipients = nrecip;
    s.sign_pk = k->spk;
    s.sign_sk = k->ssk;
    return s;
}

static int sorted_unique(const unsigned char (*ids)[32], size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (memcmp(ids[i - 1], ids[i], 32) >= 0)
            return 0;
    return 1;
}

static void test_round_trips(void)
{
    struct keys k;
    const unsigned char payload[] = "\xa1\x64time\x01";
    unsigned char *env = NULL, *env2 = NULL, *plain = NULL, id[32], id2[32];
    unsigned char parents[FV_ENV_MAX_PARENTS + 1][32], h[32];
    size_t len = 0, len2 = 0, plen = 0;
    fv_env_spec s;
    fv_env p;

    new_keys(&k);

    /* Genesis: record id = own id, no parents. */
    s = spec_for(&k, payload, sizeof payload - 1, 1);
    CHECK_EQ(fv_env_build(&env, &len, id, &s), FV_OK);
    fv_hash(h, env, len);
    CHECK(memcmp(h, id, 32) == 0);
    CHECK_EQ(fv_env_parse(&p, env, len), FV_OK);
    CHECK(memcmp(p.id, id, 32) == 0);
    CHECK(memcmp(p.record, id, 32) == 0);
    CHECK(p.genesis && p.kind == FV_ENV_REVISION && p.nparents == 0);
    CHECK(memcmp(p.author, k.spk, 32) == 0);
    CHECK_EQ(p.nrecipients, 1);
    /* Version 2: the plaintext is padded to the floor bucket. */
    CHECK_EQ(p.version, FV_ENV_VERSION);
    CHECK_EQ(p.ctlen, FV_PAD_FLOOR + FV_TAG_BYTES);
    CHECK_EQ(fv_env_open(&p, k.bpk[0], k.bsk[0], &plain, &plen), FV_OK);
    CHECK(plen == sizeof payload - 1 && memcmp(plain, payload, plen) == 0);
    fv_env_free_plain(plain, plen);
    {
        /* Key 9 is the commitment of the sealed content key. */
        unsigned char ck[32], cm[32];
        CHECK_EQ(fv_env_unseal(&p, k.bpk[0], k.bsk[0], ck), FV_OK);
        key_commit(cm, ck);
        CHECK(memcmp(cm, p.commit, 32) == 0);
        fv_wipe(ck, sizeof ck);
    }
    fv_env_clear(&p);
    /* Fresh key and nonce every time: same input, another envelope. */
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
    CHECK(len2 == len && memcmp(id, id2, 32) != 0);
    free(env2);

    /* A child with several parents, given unsorted: stored sorted. */
    for (size_t i = 0; i < 5; i++)
        fv_random(parents[i], 32);
    if (sorted_unique((const unsigned char(*)[32])parents, 5)) {
        /* Random ids came out sorted: swap two so the input is not. */
        memcpy(parents[5], parents[0], 32);
        memcpy(parents[0], parents[4], 32);
        memcpy(parents[4], parents[5], 32);
    }
    s.record = id;
    s.parents = (const unsigned char(*)[32])parents;
    s.nparents = 5;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
    CHECK_EQ(fv_env_parse(&p, env2, len2), FV_OK);
    CHECK(!p.genesis && memcmp(p.record, id, 32) == 0 && p.nparents == 5);
    CHECK(sorted_unique((const unsigned char(*)[32])p.parents, 5));
    for (size_t i = 0; i < 5; i++) {
        size_t j;
        for (j = 0; j < 5 && memcmp(p.parents[j], parents[i], 32); j++)
            ;
        CHECK(j < 5);
    }
    fv_env_clear(&p);
    free(env2);
    /* Duplicate parents, a parent list without a record, a record without
     * parents, and too many parents are refused at build time. */
    memcpy(parents[1], parents[3], 32);
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);
    s.nparents = 0;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);
    s.record = NULL;
    s.nparents = 2;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);
    for (size_t i = 0; i <= FV_ENV_MAX_PARENTS; i++) {
        fv_random(parents[i], 32);
    }
    s.record = id;
    s.nparents = FV_ENV_MAX_PARENTS;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
    CHECK_EQ(parse_rc(env2, len2), FV_OK);
    free(env2);
    s.nparents = FV_ENV_MAX_PARENTS + 1;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);

    /* A tombstone. */
    {
        unsigned char *tp = NULL;
        size_t tl = 0;
        int64_t t = 0;
        CHECK_EQ(fv_tombstone_encode(&tp, &tl, -5), FV_OK);
        s = spec_for(&k, tp, tl, 1);
        s.kind = FV_ENV_TOMBSTONE;
        s.record = id;
        s.parents = (const unsigned char(*)[32])parents;
        s.nparents = 2;
        CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
        CHECK_EQ(fv_env_parse(&p, env2, len2), FV_OK);
        CHECK(p.kind == FV_ENV_TOMBSTONE && !p.genesis && p.nattachments == 0);
        CHECK_EQ(fv_env_open(&p, k.bpk[0], k.bsk[0], &plain, &plen), FV_OK);
        CHECK_EQ(fv_tombstone_decode(&t, plain, plen), FV_OK);
        CHECK_EQ(t, -5);
        fv_env_free_plain(plain, plen);
        fv_env_clear(&p);
        free(env2);
        fv_enc_free_buf(tp, tl);
    }

    /* Several recipients, given unsorted: stored sorted, each can open. */
    s = spec_for(&k, payload, sizeof payload - 1, FV_ENV_MAX_RECIPIENTS);
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
    CHECK_EQ(fv_env_parse(&p, env2, len2), FV_OK);
    CHECK_EQ(p.nrecipients, FV_ENV_MAX_RECIPIENTS);
    for (size_t i = 1; i < p.nrecipients; i++)
        CHECK(memcmp(p.recipient_pk[i - 1], p.recipient_pk[i], 32) < 0);
    for (size_t i = 0; i < FV_ENV_MAX_RECIPIENTS; i++) {
        CHECK_EQ(fv_env_open(&p, k.bpk[i], k.bsk[i], &plain, &plen), FV_OK);
        CHECK(plen == sizeof payload - 1 && memcmp(plain, payload, plen) == 0);
        fv_env_free_plain(plain, plen);
    }
    CHECK_EQ(fv_env_open(&p, k.bpk[FV_ENV_MAX_RECIPIENTS],
                         k.bsk[FV_ENV_MAX_RECIPIENTS], &plain, &plen), FV_ENOTFOUND);
    CHECK(plain == NULL);
    fv_env_clear(&p);
    free(env2);
    s.nrecipients = FV_ENV_MAX_RECIPIENTS + 1;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);
    s.nrecipients = 0;
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);
    {
        unsigned char dup[2][32];
        memcpy(dup[0], k.bpk[3], 32);
        memcpy(dup[1], k.bpk[3], 32);
        s.recipients = (const unsigned char(*)[32])dup;
        s.nrecipients = 2;
        CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_EINVAL);
    }

    /* Attachments with chunk lists, including an empty attachment. */
    {
        uint64_t counts[4] = {2, 0, 3, 1};
        unsigned char chunks[6][32];
        size_t c = 0;
        for (size_t i = 0; i < 6; i++)
            fv_random(chunks[i], 32);
        s = spec_for(&k, payload, sizeof payload - 1, 3);
        s.chunk_counts = counts;
        s.nattachments = 4;
        s.chunks = (const unsigned char(*)[32])chunks;
        CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
        CHECK_EQ(fv_env_parse(&p, env2, len2), FV_OK);
        CHECK_EQ(p.nattachments, 4);
        CHECK_EQ(p.nchunks, 6);
        for (size_t a = 0; a < 4 && a < p.nattachments; a++) {
            CHECK_EQ(p.chunk_counts[a], counts[a]);
            for (uint64_t i = 0; i < counts[a]; i++, c++)
                CHECK(memcmp(p.chunks[c], chunks[c], 32) == 0);
        }
        fv_env_clear(&p);
        free(env2);
    }

#ifdef FV_ENV_GRANT
    /* A key grant: the target's content key sealed to a new recipient, and
     * the grant's own payload encrypted under that same key. */
    {
        unsigned char tkey[32], gkey[32], *genv = NULL, gid[32], *tplain = NULL;
        size_t glen = 0, tl = 0;
        fv_env tp, gp;
        s = spec_for(&k, payload, sizeof payload - 1, 1);
        CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
        CHECK_EQ(fv_env_parse(&tp, env2, len2), FV_OK);
        CHECK_EQ(fv_env_unseal(&tp, k.bpk[0], k.bsk[0], tkey), FV_OK);
        s = spec_for(&k, (const unsigned char *)"", 0, 1);
        s.recipients = (const unsigned char(*)[32])k.bpk[5];
        s.kind = FV_ENV_GRANT;
        s.content_key = tkey;
        s.record = tp.record;
        s.parents = (const unsigned char(*)[32])tp.id;
        s.nparents = 1;
        CHECK_EQ(fv_env_build(&genv, &glen, gid, &s), FV_OK);
        CHECK_EQ(fv_env_parse(&gp, genv, glen), FV_OK);
        CHECK(gp.kind == FV_ENV_GRANT && gp.nparents == 1 &&
              memcmp(gp.parents[0], tp.id, 32) == 0);
        /* It commits to the key it grants: its target's. */
        CHECK(memcmp(gp.commit, tp.commit, 32) == 0);
        CHECK_EQ(fv_env_unseal(&tp, k.bpk[5], k.bsk[5], gkey), FV_ENOTFOUND);
        CHECK_EQ(fv_env_unseal(&gp, k.bpk[5], k.bsk[5], gkey), FV_OK);
        CHECK(memcmp(gkey, tkey, 32) == 0);
        CHECK_EQ(fv_env_decrypt(&tp, gkey, &tplain, &tl), FV_OK);
        CHECK(tl == sizeof payload - 1 && memcmp(tplain, payload, tl) == 0);
        fv_env_free_plain(tplain, tl);
        fv_wipe(tkey, sizeof tkey);
        fv_wipe(gkey, sizeof gkey);
        fv_env_clear(&gp);
        fv_env_clear(&tp);
        free(genv);
        free(env2);
    }
#endif

    /* An empty payload: padded to the floor, like any short one. */
    s = spec_for(&k, NULL, 0, 1);
    CHECK_EQ(fv_env_build(&env2, &len2, id2, &s), FV_OK);
    CHECK_EQ(fv_env_parse(&p, env2, len2), FV_OK);
    CHECK_EQ(p.ctlen, FV_PAD_FLOOR + FV_TAG_BYTES);
    CHECK_EQ(fv_env_open(&p, k.bpk[0], k.bsk[0], &plain, &plen), FV_OK);
    CHECK_EQ(plen, 0);
    fv_env_free_plain(plain, plen);
    fv_env_clear(&p);
    free(env2);
    free(env);

    /* Payloads: encode -> decode keeps every field. */
    {
        fv_field f[3] = {{"zz", "last"}, {"a", "first\nline"}, {"장소", "연길"}};
        const char *tags[4] = {"b", "a", "탈북", "a"};
        size_t ntags = 4;
        fv_attachment_info info[2] = {{"a.txt", 0, FV_CHUNK_BYTES, 0, 0},
                                      {"b.wav", 3 * FV_CHUNK_BYTES + 1, FV_CHUNK_BYTES, 4, 0}};
        unsigned char keys[2][32];
        fv_record r;
        fv_rec *d = NULL;
        unsigned char *out = NULL;
        size_t olen = 0;
        const char narr[] = "line\0with NUL";

        fv_random(keys, sizeof keys);
        memset(&r, 0, sizeof r);
        CHECK_EQ(fv_sort_fields(f, 3), FV_OK);
        fv_sort_tags(tags, &ntags);
        CHECK_EQ(ntags, 3);
        r.title = "제목 title";
        r.narrative = narr;
        r.narrative_len = sizeof narr - 1;
        r.fields = f;
        r.nfields = 3;
        r.tags = tags;
        r.ntags = ntags;
        r.created = -1;
        r.modified = INT64_MAX;
        r.attachments = info;
        r.nattachments = 2;
        CHECK_EQ(fv_payload_encode(&out, &olen, &r, (const unsigned char(*)[32])keys), FV_OK);
        CHECK_EQ(fv_payload_decode(&d, out, olen), FV_OK);
        if (d) {
            CHECK(strcmp(d->pub.title, r.title) == 0);
            CHECK(d->pub.narrative_len == r.narrative_len &&
                  memcmp(d->pub.narrative, narr, r.narrative_len) == 0);
            CHECK_EQ(d->pub.created, -1);
            CHECK_EQ(d->pub.modified, INT64_MAX);
            CHECK_EQ(d->pub.nfields, 3);
            for (size_t i = 0; i < 3 && i < d->pub.nfields; i++)
                CHECK(strcmp(d->pub.fields[i].key, f[i].key) == 0 &&
                      strcmp(d->pub.fields[i].value, f[i].value) == 0);
            /* Canonical order: shorter first ("a", "zz", then 6-byte "장소"). */
            CHECK(d->pub.nfields == 3 && strcmp(d->pub.fields[0].key, "a") == 0 &&
                  strcmp(d->pub.fields[1].key, "zz") == 0);
            CHECK_EQ(d->pub.ntags, 3);
            CHECK_EQ(d->pub.nattachments, 2);
            for (size_t i = 0; i < 2 && i < d->pub.nattachments; i++) {
                CHECK(strcmp(d->pub.attachments[i].name, info[i].name) == 0);
                CHECK_EQ(d->pub.attachments[i].size, info[i].size);
                CHECK_EQ(d->pub.attachments[i].chunk_bytes, FV_CHUNK_BYTES);
                CHECK(memcmp(d->keys[i], keys[i], 32) == 0);
            }
            CHECK_EQ(d->pub.attachments[0].chunks, 0);
            CHECK_EQ(d->pub.attachments[1].chunks, 4);
            fv_rec_free(d);
        }
        fv_enc_free_buf(out, olen);
    }
}

/* ---- c. tampering --------------------------------------------------------- */

/* The signature covers the protected header and the whole body; every other
 * byte of the envelope is CBOR structure that the parser checks exactly (tag
 * 18, array of 4, an empty map, a 64-byte signature, no trailing bytes). So a
 * changed byte either breaks the structure or the Ed25519 signature: no
 * single change can ever parse, with the old id or a new one. That is the
 * property asserted here, for every byte and every bit. */
static void tamper_all(const unsigned char *env, size_t len, const char *what)
{
    unsigned char *b = xmalloc(len);
    size_t bad = 0;

    CHECK_EQ(parse_rc(env, len), FV_OK);
    memcpy(b, env, len);
    for (size_t i = 0; i < len; i++) {
        static const unsigned char masks[] = {0xff, 0x01, 0x02, 0x04, 0x08,
                                              0x10, 0x20, 0x40, 0x80};
        for (size_t m = 0; m < sizeof masks; m++) {
            int rc;
            b[i] ^= masks[m];
            rc = parse_rc(b, len);
            b[i] ^= masks[m];
            if (rc != FV_ECORRUPT) {
                if (bad++ < 5)
                    fprintf(stderr, "  %s: byte %zu ^ %02x parses with rc %d\n",
                            what, i, masks[m], rc);
            }
        }
    }
    CHECK_EQ(bad, 0);
    CHECK(memcmp(b, env, len) == 0);
    free(b);
}

/* A valid signature by another key over a changed body: it parses (the
 * author is then the other key) but never opens as the original. */
static void test_resigned(const unsigned char *env, size_t len,
                          const unsigned char org_pk[32],
                          const unsigned char org_sk[32])
{
    fv_env p;
    unsigned char spk[32], ssk[64], *plain = NULL;
    size_t plen = 0;

    CHECK_EQ(fv_env_parse(&p, env, len), FV_OK);
    fv_sign_keypair(spk, ssk);
    {
        unsigned char rpk[2][32], rseal[2][SEALED_BYTES], nonce[24], commit[32];
        unsigned char *ct = xmalloc(p.ctlen);
        struct body b;
        struct prot pp = {-8, spk, 32, 0, 0, 0};
        struct outer o = outer_defaults(ssk);
        unsigned char *qb = NULL;
        fv_env q;

        memset(&b, 0, sizeof b);
        for (size_t i = 0; i < p.nrecipients && i < 2; i++) {
            memcpy(rpk[i], p.recipient_pk[i], 32);
            memcpy(rseal[i], p.recipient_seal[i], SEALED_BYTES);
        }
        memcpy(nonce, p.nonce, 24);
        memcpy(commit, p.commit, 32);
        memcpy(ct, p.ct, p.ctlen);
        b.version = 1;
        b.kind = (uint64_t)p.kind;
        b.rpk = (const unsigned char(*)[32])rpk;
        b.rseal = (const unsigned char(*)[SEALED_BYTES])rseal;
        b.nrecip = p.nrecipients;
        b.pk_len = 32;
        b.seal_len = SEALED_BYTES;
        b.recip_arity = 2;
        b.nonce = nonce;
        b.nonce_len = 24;
        b.ct = ct;
        b.ct_len = p.ctlen;
        b.natt = p.nattachments;
        b.counts = p.chunk_counts;
        b.chunks = (const unsigned char(*)[32])p.chunks;
        b.hash_len = 32;
        b.commit = commit;
        b.commit_len = 32;
        /* Unchanged content under another signer: opens (the signature is
         * what says who wrote it). */
        CHECK_EQ(try_env(&b, &pp, &o, &q, &qb), FV_OK);
        if (qb) {
            CHECK(memcmp(q.author, spk, 32) == 0);
            CHECK(memcmp(q.id, p.id, 32) != 0);
            CHECK_EQ(fv_env_open(&q, org_pk, org_sk, &plain, &plen), FV_OK);
            fv_env_free_plain(plain, plen);
            fv_env_clear(&q);
            free(qb);
            qb = NULL;
        }
        /* One ciphertext bit, one nonce bit, one sealed-key bit, one
         * commitment bit: parses (validly signed by its new author), never
         * opens. */
        for (int which = 0; which < 4; which++) {
            if (which == 0)
                ct[p.ctlen / 2] ^= 1;
            else if (which == 1)
                nonce[3] ^= 0x40;
            else if (which == 2) {
                for (size_t i = 0; i < p.nrecipients && i < 2; i++)
                    rseal[i][40] ^= 8;
            } else {
                for (size_t i = 0; i < p.nrecipients && i < 2; i++)
                    rseal[i][40] ^= 8; /* undo the sealed keys */
                commit[17] ^= 0x10;
            }
            CHECK_EQ(try_env(&b, &pp, &o, &q, &qb), FV_OK);
            if (qb) {
                CHECK_EQ(fv_env_open(&q, org_pk, org_sk, &plain, &plen), FV_ECORRUPT);
                CHECK(plain == NULL);
                fv_env_clear(&q);
                free(qb);
                qb = NULL;
            }
            if (which == 0)
                ct[p.ctlen / 2] ^= 1;
            else if (which == 1)
                nonce[3] ^= 0x40;
        }
        free(ct);
    }
    fv_env_clear(&p);
}

/* ---- d. prefixes and trailing bytes -------------------------------------- */

static void prefixes(const unsigned char *env, size_t len, const char *what)
{
    size_t bad = 0;
    unsigned char *b = xmalloc(len + 1 + len);

    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so reading past it is an ASan error. */
        unsigned char *cut = xmalloc(n);
        memcpy(cut, env, n);
        if (parse_rc(cut, n) != FV_ECORRUPT && bad++ < 5)
            fprintf(stderr, "  %s: prefix of %zu bytes does not fail\n", what, n);
        free(cut);
    }
    CHECK_EQ(bad, 0);
    memcpy(b, env, len);
    b[len] = 0x00;
    CHECK_EQ(parse_rc(b, len + 1), FV_ECORRUPT);
    b[len] = 0xff;
    CHECK_EQ(parse_rc(b, len + 1), FV_ECORRUPT);
    b[len] = 0xa0;
    CHECK_EQ(parse_rc(b, len + 1), FV_ECORRUPT);
    memcpy(b + len, env, len);
    CHECK_EQ(parse_rc(b, 2 * len), FV_ECORRUPT);
    free(b);
}

/* ---- e. structural violations, each validly signed ---------------------- */

struct fixture {
    struct keys k;
    unsigned char key[32], nonce[24], commit[32];
    unsigned char payload[8];
    unsigned char ct[8 + FV_TAG_BYTES];
    unsigned char rpk[FV_ENV_MAX_RECIPIENTS + 1][32];
    unsigned char rseal[FV_ENV_MAX_RECIPIENTS + 1][SEALED_BYTES];
    unsigned char parents[FV_ENV_MAX_PARENTS + 1][32];
    unsigned char chunks[300][32];
    uint64_t counts[FV_MAX_ATTACHMENTS + 1];
};

static int cmp32(const void *a, const void *b) { return memcmp(a, b, 32); }

static void fixture_init(struct fixture *f)
{
    new_keys(&f->k);
    fv_random(f->key, 32);
    fv_random(f->nonce, 24);
    memcpy(f->payload, "\xa1\x64time\x00", 7);
    fv_aead_encrypt(f->ct, f->payload, 7, NULL, 0, f->nonce, f->key);
    key_commit(f->commit, f->key);
    memcpy(f->rpk, f->k.bpk, sizeof f->rpk);
    qsort(f->rpk, FV_ENV_MAX_RECIPIENTS + 1, 32, cmp32);
    for (size_t i = 0; i <= FV_ENV_MAX_RECIPIENTS; i++)
        CHECK_EQ(fv_seal(f->rseal[i], f->key, 32, f->rpk[i]), FV_OK);
    for (size_t i = 0; i <= FV_ENV_MAX_PARENTS; i++)
        fv_random(f->parents[i], 32);
    qsort(f->parents, FV_ENV_MAX_PARENTS + 1, 32, cmp32);
    fv_random(f->chunks, sizeof f->chunks);
    for (size_t i = 0; i <= FV_MAX_ATTACHMENTS; i++)
        f->counts[i] = 1;
}

static struct body body_defaults(const struct fixture *f)
{
    struct body b;
    memset(&b, 0, sizeof b);
    b.version = 1;
    b.kind = FV_ENV_REVISION;
    b.parents = (const unsigned char(*)[32])f->parents;
    b.rpk = (const unsigned char(*)[32])f->rpk;
    b.rseal = (const unsigned char(*)[SEALED_BYTES])f->rseal;
    b.nrecip = 1;
    b.pk_len = 32;
    b.seal_len = SEALED_BYTES;
    b.recip_arity = 2;
    b.nonce = f->nonce;
    b.nonce_len = 24;
    b.ct = f->ct;
    b.ct_len = 7 + FV_TAG_BYTES;
    b.counts = f->counts;
    b.chunks = (const unsigned char(*)[32])f->chunks;
    b.hash_len = 32;
    b.commit = f->commit;
    b.commit_len = 32;
    return b;
}

/* A child of the fixture: record set, two parents, one attachment. */
static struct body child_defaults(const struct fixture *f)
{
    struct body b = body_defaults(f);
    b.has_record = 1;
    memcpy(b.record, f->parents[9], 32);
    b.nparents = 2;
    b.natt = 1;
    return b;
}

#define REJECT(b, p, o, want)                                          \
    do {                                                               \
        int rc_ = try_env(&(b), &(p), &(o), NULL, NULL);                     \
        if (rc_ != (want))                                             \
            fprintf(stderr, "  case %s: rc %d, want %d\n", #b, rc_, want); \
        CHECK_EQ(rc_, want);                                           \
    } while (0)

static void test_structure(void)
{
    static struct fixture f;
    struct prot p, p0;
    struct outer o, o0;
    struct body b, g0, c0;
    fv_env q;
    unsigned char other_pk[32], other_sk[64], *qb = NULL;

    fixture_init(&f);
    fv_sign_keypair(other_pk, other_sk);
    p0 = (struct prot){-8, f.k.spk, 32, 0, 0, 0};
    o0 = outer_defaults(f.k.ssk);
    g0 = body_defaults(&f);
    c0 = child_defaults(&f);

    /* The controls: the hand-built genesis and child parse and open. */
    CHECK_EQ(try_env(&g0, &p0, &o0, &q, &qb), FV_OK);
    if (qb) {
        unsigned char *plain = NULL;
        size_t plen = 0, j;
        CHECK(q.genesis && memcmp(q.record, q.id, 32) == 0);
        for (j = 0; j < FV_ENV_MAX_RECIPIENTS && memcmp(f.k.bpk[j], f.rpk[0], 32); j++)
            ;
        CHECK_EQ(fv_env_open(&q, f.rpk[0], f.k.bsk[j], &plain, &plen), FV_OK);
        CHECK(plen == 7 && plain && memcmp(plain, f.payload, 7) == 0);
        fv_env_free_plain(plain, plen);
        fv_env_clear(&q);
        free(qb);
    }
    CHECK_EQ(try_env(&c0, &p0, &o0, NULL, NULL), FV_OK);
    b = c0;
    b.kind = FV_ENV_TOMBSTONE;
    b.natt = 0;
    CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
    b = g0;
    b.nrecip = FV_ENV_MAX_RECIPIENTS;
    CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
    b = c0;
    b.nparents = FV_ENV_MAX_PARENTS;
    CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
    b = g0;
    b.natt = FV_MAX_ATTACHMENTS;
    CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
    b = g0;
    b.ct_len = FV_TAG_BYTES; /* an empty plaintext is well-formed */
    CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);

    /* The outer structure. */
    o = o0; o.tag = 98;  REJECT(g0, p0, o, FV_ECORRUPT); /* COSE_Sign */
    o = o0; o.tag = 17;  REJECT(g0, p0, o, FV_ECORRUPT); /* COSE_Mac0 */
    o = o0; o.tag = 16;  REJECT(g0, p0, o, FV_ECORRUPT); /* COSE_Encrypt0 */
    o = o0; o.untagged = 1; REJECT(g0, p0, o, FV_ECORRUPT);
    o = o0; o.arity = 3; REJECT(g0, p0, o, FV_ECORRUPT);
    o = o0; o.arity = 5; REJECT(g0, p0, o, FV_ECORRUPT);
    o = o0; o.unprot_kid = 1; REJECT(g0, p0, o, FV_ECORRUPT);
    o = o0; o.sig_len = 63; REJECT(g0, p0, o, FV_ECORRUPT);
    o = o0; o.sig_len = 65; REJECT(g0, p0, o, FV_ECORRUPT);
    o = o0; o.sk = other_sk; REJECT(g0, p0, o, FV_ECORRUPT); /* kid is not the signer */
    o = o0; o.sign_body_only = 1; REJECT(g0, p0, o, FV_ECORRUPT);

    /* The protected header. */
    p = p0; p.alg = -7;  REJECT(g0, p, o0, FV_ECORRUPT);  /* ES256 */
    p = p0; p.alg = -19; REJECT(g0, p, o0, FV_ECORRUPT);  /* Ed25519 (fully specified) */
    p = p0; p.alg = 8;   REJECT(g0, p, o0, FV_ECORRUPT);
    p = p0; p.swap = 1;  REJECT(g0, p, o0, FV_ECORRUPT);
    p = p0; p.extra = 1; REJECT(g0, p, o0, FV_ECORRUPT);
    p = p0; p.empty = 1; REJECT(g0, p, o0, FV_ECORRUPT);
    p = p0; p.kid_len = 31; REJECT(g0, p, o0, FV_ECORRUPT);

    /* The body map. */
    b = g0; b.version = 3; REJECT(b, p0, o0, FV_EVERSION);
    b = c0; b.version = 3; REJECT(b, p0, o0, FV_EVERSION);
    /* A newer version may reshape the rest of the body: still FV_EVERSION. */
    b = g0; b.version = 3; b.extra_key = 1; REJECT(b, p0, o0, FV_EVERSION);
    b = g0; b.version = 3; b.map_count = 1; REJECT(b, p0, o0, FV_EVERSION);
    /* Version 2 is read, but its plaintext must be a bucket (FORMAT.md
     * 5.8): this one's 7 bytes are not, and the parser says so before any
     * key is needed. */
    b = g0; b.version = 2; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.version = 2; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.version = 1000000; REJECT(b, p0, o0, FV_EVERSION);
    b = g0; b.version = 0; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.swap_first = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    /* Unknown kinds, on a body that is otherwise valid for any kind (a
     * child with one parent and no attachments). */
    b = c0; b.natt = 0; b.nparents = 1; CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
    b.kind = 0; REJECT(b, p0, o0, FV_ECORRUPT);
    b.kind = 7; REJECT(b, p0, o0, FV_ECORRUPT);
    b.kind = 257; REJECT(b, p0, o0, FV_ECORRUPT);
    /* Notes, review states and retractions (kinds 4, 5, 6): never a
     * genesis, exactly one parent, which is the record id itself, and no
     * chunk lists. */
    for (uint64_t k = FV_ENV_NOTE; k <= FV_ENV_RETRACTION; k++) {
        b = c0; b.kind = k; b.natt = 0; b.nparents = 1;
        memcpy(b.record, f.parents[0], 32);
        CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
        b.nparents = 2; REJECT(b, p0, o0, FV_ECORRUPT);   /* two parents */
        b.nparents = 0; REJECT(b, p0, o0, FV_ECORRUPT);   /* none */
        b.nparents = 1; b.natt = 1; REJECT(b, p0, o0, FV_ECORRUPT); /* chunks */
        b.counts = (uint64_t[]){0}; REJECT(b, p0, o0, FV_ECORRUPT); /* empty */
        b = c0; b.kind = k; b.natt = 0; b.nparents = 1;   /* parent != record */
        REJECT(b, p0, o0, FV_ECORRUPT);
        b = g0; b.kind = k; REJECT(b, p0, o0, FV_ECORRUPT); /* genesis */
    }
#ifdef FV_ENV_GRANT
    /* Key grants: never genesis, exactly one parent, no attachments. */
    b = c0; b.kind = FV_ENV_GRANT; b.natt = 0; b.nparents = 1;
    CHECK_EQ(try_env(&b, &p0, &o0, NULL, NULL), FV_OK);
    b.nparents = 2; REJECT(b, p0, o0, FV_ECORRUPT);
    b.nparents = 0; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.kind = FV_ENV_GRANT; b.nparents = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.kind = FV_ENV_GRANT; REJECT(b, p0, o0, FV_ECORRUPT);
#else
    b.kind = 3; REJECT(b, p0, o0, FV_ECORRUPT);
#endif
    b = g0; b.extra_key = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.extra_key = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.no_chunks_key = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.map_count = 9; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.map_count = 8; REJECT(b, p0, o0, FV_ECORRUPT);
    /* The key commitment (key 9): always there, last, 32 bytes. The
     * bodies of the previous layout (7 or 8 keys, no commitment) are
     * refused. */
    b = g0; b.no_commit_key = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.no_commit_key = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.no_commit_key = 1; b.map_count = 8; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.no_chunks_key = 1; b.no_commit_key = 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.commit_len = 31; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.commit_len = 33; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.commit_len = 0; REJECT(b, p0, o0, FV_ECORRUPT);

    /* The revision graph. */
    b = g0; b.nparents = 1; REJECT(b, p0, o0, FV_ECORRUPT);  /* genesis with parents */
    b = c0; b.nparents = 0; REJECT(b, p0, o0, FV_ECORRUPT);  /* child without */
    b = c0; b.nparents = FV_ENV_MAX_PARENTS + 1; REJECT(b, p0, o0, FV_ECORRUPT);
    {
        unsigned char pp[3][32];
        memcpy(pp[0], f.parents[2], 32);
        memcpy(pp[1], f.parents[1], 32); /* unsorted */
        memcpy(pp[2], f.parents[3], 32);
        b = c0; b.parents = (const unsigned char(*)[32])pp; b.nparents = 3;
        REJECT(b, p0, o0, FV_ECORRUPT);
        memcpy(pp[1], f.parents[2], 32); /* duplicate */
        REJECT(b, p0, o0, FV_ECORRUPT);
    }
    b = g0; b.kind = FV_ENV_TOMBSTONE; REJECT(b, p0, o0, FV_ECORRUPT); /* genesis tombstone */
    b = c0; b.kind = FV_ENV_TOMBSTONE; REJECT(b, p0, o0, FV_ECORRUPT); /* with an attachment */
    b = c0; b.kind = FV_ENV_TOMBSTONE; b.natt = 1; b.counts = (uint64_t[]){0};
    REJECT(b, p0, o0, FV_ECORRUPT); /* even an empty one */

    /* Recipients. */
    b = g0; b.nrecip = 0; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.nrecip = FV_ENV_MAX_RECIPIENTS + 1; REJECT(b, p0, o0, FV_ECORRUPT);
    {
        unsigned char rp[2][32], rs[2][SEALED_BYTES];
        memcpy(rp[0], f.rpk[1], 32);
        memcpy(rp[1], f.rpk[0], 32); /* unsorted */
        memcpy(rs[0], f.rseal[1], SEALED_BYTES);
        memcpy(rs[1], f.rseal[0], SEALED_BYTES);
        b = g0; b.rpk = (const unsigned char(*)[32])rp;
        b.rseal = (const unsigned char(*)[SEALED_BYTES])rs; b.nrecip = 2;
        REJECT(b, p0, o0, FV_ECORRUPT);
        memcpy(rp[1], f.rpk[1], 32); /* duplicate */
        REJECT(b, p0, o0, FV_ECORRUPT);
    }
    b = g0; b.pk_len = 31; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.seal_len = 79; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.seal_len = 81; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.recip_arity = 3; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.recip_arity = 1; REJECT(b, p0, o0, FV_ECORRUPT);

    /* Sizes. */
    b = g0; b.nonce_len = 23; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.nonce_len = 12; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.ct_len = FV_TAG_BYTES - 1; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.hash_len = 31; REJECT(b, p0, o0, FV_ECORRUPT);
    b = c0; b.hash_len = 33; REJECT(b, p0, o0, FV_ECORRUPT);
    b = g0; b.natt = FV_MAX_ATTACHMENTS + 1; REJECT(b, p0, o0, FV_ECORRUPT);
}

/* Raw body bytes: non-canonical encodings the writer cannot produce. */
static void test_raw_bodies(void)
{
    static struct fixture f;
    unsigned char *body = NULL, *pr = NULL, *env = NULL, *raw;
    size_t bl = 0, pl = 0, el = 0;
    struct prot p0;
    struct outer o0;
    struct body g0;
    fv_enc e;

    fixture_init(&f);
    p0 = (struct prot){-8, f.k.spk, 32, 0, 0, 0};
    o0 = outer_defaults(f.k.ssk);
    g0 = body_defaults(&f);
    enc_body(&e, &g0);
    if (finish(&e, &body, &bl))
        return;
    enc_prot(&e, &p0);
    if (finish(&e, &pr, &pl))
        return;
    raw = xmalloc(bl + 16);
    /* The body starts a8 01 01 02 01 04 80 05 81 82 58 20 ... and ends
     * 09 58 20 <32-byte commitment>. */
    CHECK(memcmp(body, "\xa8\x01\x01\x02\x01\x04\x80\x05\x81\x82\x58\x20", 12) == 0);
    CHECK(bl > 35 && memcmp(body + bl - 35, "\x09\x58\x20", 3) == 0 &&
          memcmp(body + bl - 32, f.commit, 32) == 0);

#define RAW_CASE(edit)                                                   \
    do {                                                                 \
        size_t rl = bl;                                                  \
        memcpy(raw, body, bl);                                           \
        edit;                                                            \
        if (make_env(&env, &el, &o0, pr, pl, raw, rl) == FV_OK) {        \
            CHECK_EQ(parse_rc(env, el), FV_ECORRUPT);                    \
            free(env);                                                   \
        }                                                                \
    } while (0)

    /* version as a two-byte integer 18 01 */
    RAW_CASE(memmove(raw + 3, raw + 2, bl - 2); raw[1] = 0x18; raw[2] = 0x01; rl++);
    /* kind as 19 00 01 */
    RAW_CASE(memmove(raw + 6, raw + 4, bl - 4); raw[4] = 0x19; raw[5] = 0; raw[6] = 1; rl += 2);
    /* parents as an indefinite-length array 9f ff */
    RAW_CASE(memmove(raw + 7, raw + 6, bl - 6); raw[6] = 0x9f; raw[7] = 0xff; rl++);
    /* the whole body map indefinite: bf ... ff */
    RAW_CASE(raw[0] = 0xbf; raw[bl] = 0xff; rl++);
    /* the sealed key with a two-byte length 59 00 50 (shortest is 58 50) */
    {
        size_t at = 12 + 32; /* after the recipient key: 58 50 <80 bytes> */
        RAW_CASE(CHECK(raw[at] == 0x58 && raw[at + 1] == 0x50);
                 memmove(raw + at + 3, raw + at + 2, bl - at - 2);
                 raw[at] = 0x59; raw[at + 1] = 0; raw[at + 2] = 0x50; rl++);
    }
    /* a trailing byte inside the body */
    RAW_CASE(raw[bl] = 0x00; rl++);
    /* the commitment with a two-byte length 59 00 20 (shortest is 58 20) */
    RAW_CASE(memmove(raw + bl - 32 + 1, raw + bl - 32, 32);
             raw[bl - 34] = 0x59; raw[bl - 33] = 0; raw[bl - 32] = 0x20; rl++);
    /* the commitment as key 9 written 18 09 */
    RAW_CASE(memmove(raw + bl - 35 + 1, raw + bl - 35, 35);
             raw[bl - 35] = 0x18; raw[bl - 34] = 0x09; rl++);
    /* a key of 1 written as text "1" */
    RAW_CASE(memmove(raw + 2, raw + 1, bl - 1); raw[1] = 0x61; raw[2] = '1'; rl++);
    /* a trailing byte inside the protected header */
    {
        unsigned char prx[64];
        memcpy(prx, pr, pl);
        prx[pl] = 0;
        if (make_env(&env, &el, &o0, prx, pl + 1, body, bl) == FV_OK) {
            CHECK_EQ(parse_rc(env, el), FV_ECORRUPT);
            free(env);
        }
    }
    /* the control: unedited, it parses */
    memcpy(raw, body, bl);
    if (make_env(&env, &el, &o0, pr, pl, raw, bl) == FV_OK) {
        CHECK_EQ(parse_rc(env, el), FV_OK);
        free(env);
    }
#undef RAW_CASE
    free(raw);
    fv_enc_free_buf(body, bl);
    fv_enc_free_buf(pr, pl);
}

/* The secret key of one of the fixture's recipients (f->rpk is sorted). */
static const unsigned char *fixture_sk(const struct fixture *f,
                                       const unsigned char pk[32])
{
    for (size_t j = 0; j <= FV_ENV_MAX_RECIPIENTS; j++)
        if (memcmp(f->k.bpk[j], pk, 32) == 0)
            return f->k.bsk[j];
    CHECK(!"a fixture recipient");
    return f->k.bsk[0];
}

/* The key commitment (FORMAT.md 5.2, 5.5): a body whose commitment is not
 * that of the sealed key parses (it is validly signed) but never opens, and
 * a recipient handed another key than the committed one gets FV_ECORRUPT
 * while the others read the committed content: no author can show two
 * readers two plaintexts. */
static void test_commitment(void)
{
    static struct fixture f;
    struct prot p0;
    struct outer o0;
    struct body b;
    unsigned char k2[32], c2[32], rs[2][SEALED_BYTES], *qb = NULL, *plain = NULL;
    unsigned char got[32];
    size_t plen = 0;
    fv_env q;

    fixture_init(&f);
    p0 = (struct prot){-8, f.k.spk, 32, 0, 0, 0};
    o0 = outer_defaults(f.k.ssk);
    fv_random(k2, sizeof k2);
    key_commit(c2, k2);

    /* The commitment of another key, everything else right: the sealed key
     * unseals and would decrypt the ciphertext, but it is not the committed
     * key, so it is refused before decryption; the committed key does not
     * decrypt the ciphertext. */
    b = body_defaults(&f);
    b.commit = c2;
    CHECK_EQ(try_env(&b, &p0, &o0, &q, &qb), FV_OK);
    if (qb) {
        CHECK(memcmp(q.commit, c2, 32) == 0);
        CHECK_EQ(fv_env_open(&q, f.rpk[0], fixture_sk(&f, f.rpk[0]), &plain, &plen),
                 FV_ECORRUPT);
        CHECK(plain == NULL && plen == 0);
        CHECK_EQ(fv_env_unseal(&q, f.rpk[0], fixture_sk(&f, f.rpk[0]), got), FV_OK);
        CHECK(memcmp(got, f.key, 32) == 0);
        CHECK_EQ(fv_env_decrypt(&q, f.key, &plain, &plen), FV_ECORRUPT);
        CHECK(plain == NULL);
        CHECK_EQ(fv_env_decrypt(&q, k2, &plain, &plen), FV_ECORRUPT);
        CHECK(plain == NULL);
        fv_env_clear(&q);
        free(qb);
        qb = NULL;
    }
    /* An all-zero commitment: the same. */
    {
        static const unsigned char zero[32];
        b = body_defaults(&f);
        b.commit = zero;
        CHECK_EQ(try_env(&b, &p0, &o0, &q, &qb), FV_OK);
        if (qb) {
            CHECK_EQ(fv_env_open(&q, f.rpk[0], fixture_sk(&f, f.rpk[0]), &plain,
                                 &plen), FV_ECORRUPT);
            fv_env_clear(&q);
            free(qb);
            qb = NULL;
        }
    }
    /* Two recipients, the second sealed another key: the first reads the
     * committed content, the second gets FV_ECORRUPT, not other content. */
    memcpy(rs[0], f.rseal[0], SEALED_BYTES);
    CHECK_EQ(fv_seal(rs[1], k2, 32, f.rpk[1]), FV_OK);
    b = body_defaults(&f);
    b.rseal = (const unsigned char(*)[SEALED_BYTES])rs;
    b.nrecip = 2;
    CHECK_EQ(try_env(&b, &p0, &o0, &q, &qb), FV_OK);
    if (qb) {
        CHECK_EQ(fv_env_open(&q, f.rpk[0], fixture_sk(&f, f.rpk[0]), &plain, &plen),
                 FV_OK);
        CHECK(plen == 7 && plain && memcmp(plain, f.payload, 7) == 0);
        fv_env_free_plain(plain, plen);
        CHECK_EQ(fv_env_open(&q, f.rpk[1], fixture_sk(&f, f.rpk[1]), &plain, &plen),
                 FV_ECORRUPT);
        CHECK(plain == NULL);
        fv_env_clear(&q);
        free(qb);
        qb = NULL;
    }
    /* The same, with the ciphertext under the second key and the
     * commitment the second key's: now only the second reads, and the
     * first is refused. Either way one key, one content. */
    {
        unsigned char ct2[sizeof f.ct];
        fv_aead_encrypt(ct2, f.payload, 7, NULL, 0, f.nonce, k2);
        b.ct = ct2;
        b.commit = c2;
        CHECK_EQ(try_env(&b, &p0, &o0, &q, &qb), FV_OK);
        if (qb) {
            CHECK_EQ(fv_env_open(&q, f.rpk[0], fixture_sk(&f, f.rpk[0]), &plain,
                                 &plen), FV_ECORRUPT);
            CHECK_EQ(fv_env_open(&q, f.rpk[1], fixture_sk(&f, f.rpk[1]), &plain,
                                 &plen), FV_OK);
            CHECK(plen == 7 && plain && memcmp(plain, f.payload, 7) == 0);
            fv_env_free_plain(plain, plen);
            fv_env_clear(&q);
            free(qb);
            qb = NULL;
        }
    }
    fv_wipe(k2, sizeof k2);
}

/* A key grant is bound to its target's commitment: a grant that carries
 * another key (whether it commits to that key or claims the target's
 * commitment) never opens the target. */
static void test_grant_commitment(void)
{
    struct keys k;
    const unsigned char payload[] = "\xa1\x64time\x01";
    unsigned char *tenv = NULL, *genv = NULL, *gb = NULL, *plain = NULL;
    unsigned char tid[32], gid[32], tkey[32], k2[32], got[32];
    size_t tlen = 0, glen = 0, plen = 0;
    fv_env_spec s;
    fv_env t, g;

    new_keys(&k);
    s = spec_for(&k, payload, sizeof payload - 1, 1);
    CHECK_EQ(fv_env_build(&tenv, &tlen, tid, &s), FV_OK);
    if (!tenv || fv_env_parse(&t, tenv, tlen) != FV_OK) {
        CHECK(!"the grant target");
        free(tenv);
        return;
    }
    CHECK_EQ(fv_env_unseal(&t, k.bpk[0], k.bsk[0], tkey), FV_OK);
    fv_random(k2, sizeof k2);

    /* Built by the library with another key: a well-formed grant, which
     * commits to that key, not the target's. */
    s = spec_for(&k, (const unsigned char *)"\xa1\x64time\x02", 7, 1);
    s.recipients = (const unsigned char(*)[32])k.bpk[5];
    s.kind = FV_ENV_GRANT;
    s.content_key = k2;
    s.record = t.record;
    s.parents = (const unsigned char(*)[32])t.id;
    s.nparents = 1;
    CHECK_EQ(fv_env_build(&genv, &glen, gid, &s), FV_OK);
    if (genv && fv_env_parse(&g, genv, glen) == FV_OK) {
        CHECK(memcmp(g.author, t.author, 32) == 0 &&
              memcmp(g.record, t.record, 32) == 0 &&
              memcmp(g.parents[0], t.id, 32) == 0);
        CHECK(memcmp(g.commit, t.commit, 32) != 0);
        CHECK_EQ(fv_env_unseal(&g, k.bpk[5], k.bsk[5], got), FV_OK);
        CHECK(memcmp(got, k2, 32) == 0);
        CHECK_EQ(fv_env_decrypt(&t, got, &plain, &plen), FV_ECORRUPT);
        CHECK(plain == NULL && plen == 0);
        fv_env_clear(&g);
    } else {
        CHECK(!"a grant with another key parses");
    }
    free(genv);

    /* Hand-built: sealed another key, but claiming the target's
     * commitment. It parses; neither it nor the target opens with it. */
    {
        unsigned char nonce[24], ct[7 + FV_TAG_BYTES], seal[SEALED_BYTES];
        struct body b;
        struct prot pp = {-8, k.spk, 32, 0, 0, 0};
        struct outer o = outer_defaults(k.ssk);
        memset(&b, 0, sizeof b);
        fv_random(nonce, sizeof nonce);
        fv_aead_encrypt(ct, (const unsigned char *)"\xa1\x64time\x02", 7, NULL, 0,
                        nonce, k2);
        CHECK_EQ(fv_seal(seal, k2, 32, k.bpk[5]), FV_OK);
        b.version = 1;
        b.kind = FV_ENV_GRANT;
        b.has_record = 1;
        memcpy(b.record, t.record, 32);
        b.parents = (const unsigned char(*)[32])t.id;
        b.nparents = 1;
        b.rpk = (const unsigned char(*)[32])k.bpk[5];
        b.rseal = (const unsigned char(*)[SEALED_BYTES])seal;
        b.nrecip = 1;
        b.pk_len = 32;
        b.seal_len = SEALED_BYTES;
        b.recip_arity = 2;
        b.nonce = nonce;
        b.nonce_len = 24;
        b.ct = ct;
        b.ct_len = sizeof ct;
        b.hash_len = 32;
        b.commit = t.commit;
        b.commit_len = 32;
        CHECK_EQ(try_env(&b, &pp, &o, &g, &gb), FV_OK);
        if (gb) {
            CHECK(memcmp(g.commit, t.commit, 32) == 0);
            CHECK_EQ(fv_env_open(&g, k.bpk[5], k.bsk[5], &plain, &plen), FV_ECORRUPT);
            CHECK_EQ(fv_env_unseal(&g, k.bpk[5], k.bsk[5], got), FV_OK);
            CHECK_EQ(fv_env_decrypt(&t, got, &plain, &plen), FV_ECORRUPT);
            CHECK(plain == NULL);
            fv_env_clear(&g);
            free(gb);
        }
    }
    /* The control: the target's own key opens it. */
    CHECK_EQ(fv_env_decrypt(&t, tkey, &plain, &plen), FV_OK);
    CHECK(plen == sizeof payload - 1 && plain && memcmp(plain, payload, plen) == 0);
    fv_env_free_plain(plain, plen);
    fv_wipe(tkey, sizeof tkey);
    fv_wipe(k2, sizeof k2);
    fv_env_clear(&t);
    free(tenv);
}

/* fv_env_build refuses, with FV_EINVAL and before signing, every shape
 * fv_env_parse would reject (FORMAT.md 5.1, 5.5 step 8). */
static void test_build_shapes(void)
{
    static uint64_t counts[FV_MAX_ATTACHMENTS + 1];
    struct keys k;
    const unsigned char payload[] = "\xa1\x64time\x01";
    unsigned char parents[2][32], rec[32], chunk[1][32], id[32], *env;
    size_t len;
    fv_env_spec s, g, c;

    new_keys(&k);
    fv_random(parents, sizeof parents);
    qsort(parents, 2, 32, cmp32);
    fv_random(rec, sizeof rec);
    fv_random(chunk, sizeof chunk);
    g = spec_for(&k, payload, sizeof payload - 1, 2); /* a genesis revision */
    c = g;                                            /* a child, one parent */
    c.record = rec;
    c.parents = (const unsigned char(*)[32])parents;
    c.nparents = 1;

#define BUILD(spec, want)                                                   \
    do {                                                                    \
        int rc_;                                                            \
        env = (unsigned char *)&len; /* must be reset */                    \
        len = 1;                                                            \
        rc_ = fv_env_build(&env, &len, id, &(spec));                        \
        if (rc_ != (want))                                                  \
            fprintf(stderr, "  build line %d: rc %d, want %d\n", __LINE__,  \
                    rc_, want);                                             \
        CHECK_EQ(rc_, want);                                                \
        if (rc_ == FV_OK) {                                                 \
            CHECK_EQ(parse_rc(env, len), FV_OK);                            \
            free(env);                                                      \
        } else {                                                            \
            CHECK(env == NULL && len == 0);                                 \
        }                                                                   \
    } while (0)

    /* The controls. */
    BUILD(g, FV_OK);
    BUILD(c, FV_OK);
    s = c; s.kind = FV_ENV_TOMBSTONE; s.nparents = 2; BUILD(s, FV_OK);
    s = c; s.kind = FV_ENV_GRANT; s.content_key = k.bsk[0]; BUILD(s, FV_OK);

    /* Unknown kinds. */
    s = g; s.kind = 0; BUILD(s, FV_EINVAL);
    s = g; s.kind = 7; BUILD(s, FV_EINVAL);
    s = g; s.kind = -1; BUILD(s, FV_EINVAL);
    s = c; s.kind = 0; BUILD(s, FV_EINVAL);
    s = c; s.kind = 7; BUILD(s, FV_EINVAL);
    /* Notes, review states, retractions: one parent, the record itself. */
    for (int kd = FV_ENV_NOTE; kd <= FV_ENV_RETRACTION; kd++) {
        s = c; s.kind = kd; s.record = parents[0]; BUILD(s, FV_OK);
        s = c; s.kind = kd; BUILD(s, FV_EINVAL);          /* parent != record */
        s = g; s.kind = kd; BUILD(s, FV_EINVAL);          /* genesis */
        s = c; s.kind = kd; s.record = parents[0]; s.nparents = 2;
        BUILD(s, FV_EINVAL);                              /* two parents */
        counts[0] = 0;
        s = c; s.kind = kd; s.record = parents[0]; s.nattachments = 1;
        s.chunk_counts = counts; BUILD(s, FV_EINVAL);     /* chunk lists */
    }
    /* Only a revision can be a genesis. */
    s = g; s.kind = FV_ENV_TOMBSTONE; BUILD(s, FV_EINVAL);
    s = g; s.kind = FV_ENV_GRANT; BUILD(s, FV_EINVAL);
    /* A grant names exactly one parent. */
    s = c; s.kind = FV_ENV_GRANT; s.nparents = 2; BUILD(s, FV_EINVAL);
    /* Tombstones and grants carry no attachments, not even an empty one. */
    counts[0] = 1;
    s = c; s.kind = FV_ENV_TOMBSTONE; s.nattachments = 1; s.chunk_counts = counts;
    s.chunks = (const unsigned char(*)[32])chunk; BUILD(s, FV_EINVAL);
    counts[0] = 0;
    s.chunks = NULL; BUILD(s, FV_EINVAL);
    s.kind = FV_ENV_GRANT; BUILD(s, FV_EINVAL);
    /* At most FV_MAX_ATTACHMENTS chunk lists. */
    s = g; s.chunk_counts = counts; s.nattachments = FV_MAX_ATTACHMENTS;
    BUILD(s, FV_OK);
    s.nattachments = FV_MAX_ATTACHMENTS + 1; BUILD(s, FV_EINVAL);
    s = c; s.chunk_counts = counts; s.nattachments = FV_MAX_ATTACHMENTS + 1;
    BUILD(s, FV_EINVAL);
    /* Genesis <=> no parents, as before. */
    s = g; s.parents = (const unsigned char(*)[32])parents; s.nparents = 1;
    BUILD(s, FV_EINVAL);
    s = c; s.nparents = 0; BUILD(s, FV_EINVAL);
#undef BUILD
}

/* Envelope size limit (FORMAT.md 5.1): FV_ENV_MAX_BYTES, 1 MiB - 4096, for
 * writers and readers alike. Checked before anything is read, so a buffer
 * over it is refused whatever it holds; a validly signed envelope of
 * exactly the limit parses, and one byte more does not. */
static void test_size_limit(void)
{
    size_t n = (size_t)FV_ENV_MAX_BYTES + 1, over, plen = 0;
    unsigned char *big = calloc(1, n), *env = NULL, *plain = NULL, id[32];
    size_t len = 0;
    struct keys k;
    fv_env_spec s;
    fv_env p;

    CHECK_EQ(FV_ENV_MAX_BYTES, 1044480);
    if (!big)
        return;
    CHECK_EQ(parse_rc(big, n), FV_ECORRUPT);

    /* The envelope's bytes beyond the padded plaintext: every length head
     * is 5 bytes from 65536 on, so the size is the bucket + a constant. */
    new_keys(&k);
    s = spec_for(&k, big, 100000, 2);
    CHECK_EQ(fv_env_build(&env, &len, id, &s), FV_OK);
    free(env);
    over = len - (size_t)fv_env_padded_len(100000);
    /* The largest bucket that fits: its payload (one byte for the 0x80
     * marker) builds, parses and opens; one byte more needs the next
     * bucket, past the limit. */
    {
        size_t bucket = FV_ENV_MAX_BYTES - over;
        while (fv_padme(bucket) != bucket)
            bucket--;
        CHECK_EQ(bucket, 1032192); /* 63 * 16384: buckets of 2^14 here */
        s.payload_len = bucket - 1;
    }
    CHECK_EQ(fv_env_build(&env, &len, id, &s), FV_OK);
    CHECK(len <= FV_ENV_MAX_BYTES && len == s.payload_len + 1 + over);
    if (env && fv_env_parse(&p, env, len) == FV_OK) {
        CHECK_EQ(fv_env_open(&p, k.bpk[1], k.bsk[1], &plain, &plen), FV_OK);
        CHECK_EQ(plen, s.payload_len);
        fv_env_free_plain(plain, plen);
        fv_env_clear(&p);
    } else {
        CHECK(!"the largest padded envelope parses");
    }
    free(env);
    env = NULL;
    /* One byte more. A writer must not sign it (the vault refuses it with
     * FV_ELIMIT); if fv_env_build does, no reader takes it. */
    s.payload_len++;
    /* One byte over: the builder refuses to sign what no reader accepts. */
    CHECK_EQ(fv_env_build(&env, &len, id, &s), FV_ELIMIT);
    CHECK(env == NULL);
    /* A payload over the limit on its own is refused too. */
    s.payload_len = n;
    CHECK_EQ(fv_env_build(&env, &len, id, &s), FV_ELIMIT);
    CHECK(env == NULL);
    free(big);
}

/* ---- f. payload rules ------------------------------------------------------ */

/* Text as (bytes, length): payload text may be anything, to test rules. */
typedef struct txt {
    const char *p;
    size_t n;
} txt;

#define T(s) ((txt){(s), sizeof(s) - 1})

struct pl {
    const int *order; /* key indexes in written order; NULL: canonical */
    size_t nkeys;
    txt title, narrative;
    const txt *fkeys, *fvals;
    size_t nfields;
    const txt *tags;
    size_t ntags;
    size_t natt;
    const txt *names;
    size_t key_len;
    uint64_t size, chunk;
    int extra_key;
};

static const char *const pkeys[] = {"tags", "time", "title", "fields",
                                    "created", "narrative", "attachments"};

static void enc_payload(fv_enc *e, const struct pl *p)
{
    static const int canon[] = {0, 1, 2, 3, 4, 5, 6};
    static const unsigned char key[64];
    const int *order = p->order ? p->order : canon;
    size_t nkeys = p->order ? p->nkeys : 7;

    fv_enc_init(e);
    fv_enc_map(e, nkeys + (p->extra_key != 0));
    for (size_t k = 0; k < nkeys; k++) {
        fv_enc_cstr(e, pkeys[order[k]]);
        switch (order[k]) {
        case 0:
            fv_enc_array(e, p->ntags);
            for (size_t i = 0; i < p->ntags; i++)
                fv_enc_text(e, p->tags[i].p, p->tags[i].n);
            break;
        case 1: fv_enc_int(e, 1718000000); break;
        case 2: fv_enc_text(e, p->title.p, p->title.n); break;
        case 3:
            fv_enc_map(e, p->nfields);
            for (size_t i = 0; i < p->nfields; i++) {
                fv_enc_text(e, p->fkeys[i].p, p->fkeys[i].n);
                fv_enc_text(e, p->fvals[i].p, p->fvals[i].n);
            }
            break;
        case 4: fv_enc_int(e, -1); break;
        case 5: fv_enc_text(e, p->narrative.p, p->narrative.n); break;
        case 6:
            fv_enc_array(e, p->natt);
            for (size_t i = 0; i < p->natt; i++) {
                fv_enc_map(e, 4);
                fv_enc_cstr(e, "key");
                fv_enc_bytes(e, key, p->key_len);
                fv_enc_cstr(e, "name");
                fv_enc_text(e, p->names[i].p, p->names[i].n);
                fv_enc_cstr(e, "size");
                fv_enc_uint(e, p->size);
                fv_enc_cstr(e, "chunk");
                fv_enc_uint(e, p->chunk);
            }
            break;
        }
    }
    if (p->extra_key) {
        fv_enc_cstr(e, "zzzzzzzzzzzz"); /* sorts last: 12 bytes */
        fv_enc_uint(e, 0);
    }
}

static int pl_rc(const struct pl *p)
{
    fv_enc e;
    unsigned char *b = NULL;
    size_t n = 0;
    fv_rec *r = NULL;
    int rc;
    enc_payload(&e, p);
    if ((rc = finish(&e, &b, &n)))
        return rc;
    rc = fv_payload_decode(&r, b, n);
    fv_rec_free(r);
    fv_enc_free_buf(b, n);
    return rc;
}

static const txt good_fkeys[] = {{"a", 1}, {"zz", 2}, {"장소", 6}};
static const txt good_fvals[] = {{"x", 1}, {"line\nbreak\ttab", 14}, {"연길", 6}};
static const txt good_tags[] = {{"b", 1}, {"aa", 2}, {"탈북", 6}};
static const txt good_names[] = {{"a.wav", 5}, {"b.jpg", 5}};

static struct pl pl_defaults(void)
{
    struct pl p;
    memset(&p, 0, sizeof p);
    p.title = T("제목");
    p.narrative = T("narr\0ative");
    p.fkeys = good_fkeys;
    p.fvals = good_fvals;
    p.nfields = 3;
    p.tags = good_tags;
    p.ntags = 3;
    p.natt = 2;
    p.names = good_names;
    p.key_len = 32;
    p.size = 5;
    p.chunk = FV_CHUNK_BYTES;
    return p;
}

static void test_payload_rules(void)
{
    struct pl p;
    txt k2[2], v2[2];

    p = pl_defaults();
    CHECK_EQ(pl_rc(&p), FV_OK); /* the control */

    /* Map keys out of canonical order, missing, or extra. */
    {
        static const int swapped[] = {1, 0, 2, 3, 4, 5, 6}; /* time, tags */
        static const int title_first[] = {2, 0, 1, 3, 4, 5, 6};
        static const int alpha[] = {6, 4, 3, 5, 0, 1, 2};   /* plain a-z order */
        static const int missing[] = {0, 1, 2, 3, 4, 5};
        static const int dup[] = {0, 0, 1, 2, 3, 4, 5, 6};
        p = pl_defaults(); p.order = swapped; p.nkeys = 7; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        p.order = title_first; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        p.order = alpha; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        p.order = missing; p.nkeys = 6; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        p.order = dup; p.nkeys = 8; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        p = pl_defaults(); p.extra_key = 1; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    }
    /* Fields: duplicate keys, unsorted keys (bytewise but not length-first,
     * too), control characters in keys, NUL in a value, bad UTF-8. */
    p = pl_defaults();
    k2[0] = T("a"); k2[1] = T("a");
    v2[0] = T("1"); v2[1] = T("2");
    p.fkeys = k2; p.fvals = v2; p.nfields = 2;
    CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("b"); k2[1] = T("a");
    CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("aa"); k2[1] = T("b"); /* bytewise order, not canonical */
    CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("b"); k2[1] = T("aa"); /* canonical: shorter first */
    CHECK_EQ(pl_rc(&p), FV_OK);
    k2[0] = T("b\n"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T(""); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("b"); v2[0] = T("x\0y"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    v2[0] = T("\xc3\x28"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    v2[0] = T("\t\r\n"); CHECK_EQ(pl_rc(&p), FV_OK); /* values may hold controls */
    v2[0] = T(""); CHECK_EQ(pl_rc(&p), FV_OK);        /* and be empty */

    /* Title: control characters, DEL, empty, too long, invalid UTF-8. */
    p = pl_defaults();
    p.title = T("a\x01" "b"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T("a\nb"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T("a\tb"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T("a\x7f"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T("a\0b"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T(""); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T("\xff"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.title = T("\xc0\xaf"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);      /* overlong */
    p.title = T("\xed\xa0\x80"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);  /* surrogate */
    p.title = T("\xf4\x90\x80\x80"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT); /* > U+10FFFF */
    p.title = T("\xe2\x82"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);      /* cut short */
    p.title = T("\xc2\x85"); CHECK_EQ(pl_rc(&p), FV_OK); /* C1 (U+0085) is allowed */
    {
        char *big = xmalloc(FV_MAX_TITLE_BYTES + 1);
        memset(big, 'x', FV_MAX_TITLE_BYTES + 1);
        p.title = (txt){big, FV_MAX_TITLE_BYTES};
        CHECK_EQ(pl_rc(&p), FV_OK);
        p.title = (txt){big, FV_MAX_TITLE_BYTES + 1};
        CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        free(big);
    }
    /* Narrative: any valid UTF-8, NUL and controls included; not invalid. */
    p = pl_defaults();
    p.narrative = T("\0\x01\n"); CHECK_EQ(pl_rc(&p), FV_OK);
    p.narrative = T(""); CHECK_EQ(pl_rc(&p), FV_OK);
    p.narrative = T("ok \xe0\x80\x80"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    {
        /* At most FV_MAX_NARRATIVE_BYTES (768 KiB). */
        char *big = xmalloc(FV_MAX_NARRATIVE_BYTES + 1);
        CHECK_EQ(FV_MAX_NARRATIVE_BYTES, 786432);
        memset(big, 'n', FV_MAX_NARRATIVE_BYTES + 1);
        p.narrative = (txt){big, FV_MAX_NARRATIVE_BYTES};
        CHECK_EQ(pl_rc(&p), FV_OK);
        p.narrative = (txt){big, FV_MAX_NARRATIVE_BYTES + 1};
        CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
        free(big);
    }

    /* Tags: unsorted, duplicate, control, empty, invalid UTF-8. */
    p = pl_defaults();
    k2[0] = T("b"); k2[1] = T("a"); p.tags = k2; p.ntags = 2;
    CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("a"); k2[1] = T("a"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("a"); k2[1] = T("b\n"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T(""); k2[1] = T("b"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("a"); k2[1] = T("\x80"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("a"); k2[1] = T("b"); CHECK_EQ(pl_rc(&p), FV_OK);

    /* Attachments: chunk size 0 or above FV_MAX_CHUNK_BYTES (512 KiB), wrong
     * key size, duplicate or bad names. */
    p = pl_defaults();
    CHECK_EQ(FV_MAX_CHUNK_BYTES, 524288);
    p.chunk = 0; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.chunk = 1; CHECK_EQ(pl_rc(&p), FV_OK);
    p.chunk = FV_CHUNK_BYTES; CHECK_EQ(pl_rc(&p), FV_OK);
    p.chunk = FV_MAX_CHUNK_BYTES; CHECK_EQ(pl_rc(&p), FV_OK);
    p.chunk = FV_MAX_CHUNK_BYTES + 1; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.chunk = 64u * FV_CHUNK_BYTES; CHECK_EQ(pl_rc(&p), FV_ECORRUPT); /* the old limit */
    p.chunk = UINT64_MAX; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p = pl_defaults();
    p.key_len = 31; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p.key_len = 33; CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    p = pl_defaults();
    k2[0] = T("same"); k2[1] = T("same"); p.names = k2;
    CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("x\x1f"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T(""); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    /* A name is never a path: no '/', not "." nor "..". */
    k2[0] = T("ok.txt");
    k2[1] = T(".."); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("."); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("a/b"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("/"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("/etc"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("a/"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[1] = T("../x"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T(".."); k2[1] = T("ok.txt"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    /* Nor a Windows path: no '\\' either. */
    k2[0] = T("a\\b"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("\\"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    k2[0] = T("..\\x"); CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    /* ... but dots elsewhere, and other punctuation, are names. */
    k2[0] = T("..."); CHECK_EQ(pl_rc(&p), FV_OK);
    k2[0] = T(".x"); CHECK_EQ(pl_rc(&p), FV_OK);
    k2[0] = T("a..b"); CHECK_EQ(pl_rc(&p), FV_OK);
    k2[0] = T("a:b"); CHECK_EQ(pl_rc(&p), FV_OK);
    {
        static char names[FV_MAX_ATTACHMENTS + 1][8];
        static txt many[FV_MAX_ATTACHMENTS + 1];
        for (size_t i = 0; i <= FV_MAX_ATTACHMENTS; i++) {
            snprintf(names[i], sizeof names[i], "n%03zu", i);
            many[i] = (txt){names[i], 4};
        }
        p.names = many;
        p.natt = FV_MAX_ATTACHMENTS;
        CHECK_EQ(pl_rc(&p), FV_OK);
        p.natt = FV_MAX_ATTACHMENTS + 1;
        CHECK_EQ(pl_rc(&p), FV_ECORRUPT);
    }

    /* Hand-made bytes: an integer time in two bytes, a float time, trailing
     * bytes, every prefix of a valid payload. */
    {
        fv_enc e;
        unsigned char *b = NULL, *x;
        size_t n = 0, bad = 0;
        fv_rec *r = NULL;
        int64_t t;
        p = pl_defaults();
        enc_payload(&e, &p);
        if (finish(&e, &b, &n) == FV_OK) {
            x = xmalloc(n + 8);
            for (size_t k = 0; k < n; k++) {
                unsigned char *cut = xmalloc(k);
                memcpy(cut, b, k);
                if (fv_payload_decode(&r, cut, k) != FV_ECORRUPT)
                    bad++;
                fv_rec_free(r);
                r = NULL;
                free(cut);
            }
            CHECK_EQ(bad, 0);
            memcpy(x, b, n);
            x[n] = 0;
            CHECK_EQ(fv_payload_decode(&r, x, n + 1), FV_ECORRUPT);
            CHECK(r == NULL);
            free(x);
            fv_enc_free_buf(b, n);
        }
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64time\x05", 7), FV_OK);
        CHECK_EQ(t, 5);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64time\x20", 7), FV_OK);
        CHECK_EQ(t, -1);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64time\x38\x00", 8), FV_ECORRUPT);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64time\x18\x05", 8), FV_ECORRUPT);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64time\xf9\x00\x00", 9), FV_ECORRUPT);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64time\x05\x00", 8), FV_ECORRUPT);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa1\x64Time\x05", 7), FV_ECORRUPT);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xa2\x64time\x05\x61x\x00", 10), FV_ECORRUPT);
        CHECK_EQ(fv_tombstone_decode(&t, (const unsigned char *)"\xbf\x64time\x05\xff", 8), FV_ECORRUPT);
    }
}

/* ---- g. a vault written by the library, read back per FORMAT.md ---------- */

static const char VPASS[] = "pass phrase 비밀";

struct src {
    uint64_t left, pos;
};

static long long src_read(unsigned char *buf, size_t len, void *payload)
{
    struct src *s = payload;
    size_t n = len < s->left ? len : (size_t)s->left;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)((s->pos + i) * 13 + 1);
    s->pos += n;
    s->left -= n;
    return (long long)n;
}

static int db_blob(sqlite3 *db, const char *sql, const unsigned char *key,
                   size_t keylen, const char *tkey, unsigned char **out,
                   size_t *n)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (tkey)
        sqlite3_bind_text(st, 1, tkey, -1, SQLITE_STATIC);
    else
        sqlite3_bind_blob(st, 1, key, (int)keylen, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        rc = 0;
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *n = (size_t)sqlite3_column_bytes(st, 0);
            *out = xmalloc(*n);
            memcpy(*out, sqlite3_column_blob(st, 0), *n);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Reads envelope `id` from vault.db and parses it into *p (bytes in *keep). */
static int db_env(sqlite3 *db, const unsigned char id[32], fv_env *p,
                  unsigned char **keep)
{
    size_t n;
    if (db_blob(db, "SELECT bytes FROM envelope WHERE id = ?1", id, 32, NULL,
                keep, &n) || !*keep)
        return FV_ENOTFOUND;
    return fv_env_parse(p, *keep, n);
}

static void test_live_vault(void)
{
    char root[] = "/tmp/fv-test-envelope-XXXXXX", dir[300], path[400];
    fv_create_options opts = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_attachment_source as;
    struct src s = {FV_CHUNK_BYTES + 5, 0};
    unsigned char rid[32], rev[32], dev[32], *kf, vk[32], wk[32], sub[32];
    unsigned char spk[32], bpk[32], sec[96], ad[64], *blob = NULL, *b1 = NULL, *b2 = NULL;
    unsigned char akey[32];
    size_t n, bl;
    struct stat sb;
    sqlite3 *db = NULL;
    fv_env g, c, t;
    fv_rec *r = NULL;
    unsigned char *plain = NULL;
    size_t plen = 0;

    if (!mkdtemp(root)) {
        CHECK(!"mkdtemp");
        return;
    }
    snprintf(dir, sizeof dir, "%s/vault", root);
    opts.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, VPASS, strlen(VPASS), &opts), FV_OK);
    if (!v)
        return;
    memset(&as, 0, sizeof as);
    as.name = "audio.bin";
    as.read = src_read;
    as.read_payload = &s;
    in.title = "live";
    in.narrative = "이야기";
    in.narrative_len = strlen(in.narrative);
    in.attachments = &as;
    in.nattachments = 1;
    CHECK_EQ(fv_record_add(v, rid, &in), FV_OK);
    CHECK_EQ(fv_vault_get_device_id(v, dev), FV_OK);
    fv_vault_close(v);

    /* Layout and modes. */
    CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    snprintf(path, sizeof path, "%s/vault.key", dir);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600 && sb.st_size == 192);
    snprintf(path, sizeof path, "%s/vault.db", dir);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);

    /* The key file, unwrapped as documented. */
    kf = read_file(dir, "vault.key", &n);
    CHECK(kf && n == 192);
    if (!kf || n != 192)
        goto out;
    CHECK(memcmp(kf, "FieldVlt", 8) == 0 && get_le(kf + 8, 4) == 1 &&
          get_le(kf + 12, 4) == 1 && get_le(kf + 16, 8) == 1 &&
          get_le(kf + 24, 8) == 8192);
    CHECK_EQ(fv_pwhash(wk, 32, VPASS, strlen(VPASS), kf + 32, get_le(kf + 16, 8),
                       get_le(kf + 24, 8)), FV_OK);
    CHECK_EQ(fv_aead_decrypt(vk, kf + 72, 48, kf, 48, kf + 48, wk), FV_OK);
    /* Slot 2 (no duress passphrase set): random, opened by nothing. */
    {
        unsigned char other[32];
        CHECK_EQ(fv_aead_decrypt(other, kf + 144, 48, kf, 48, kf + 120, wk),
                 FV_ECORRUPT);
    }
    free(kf);

    /* Device keys from the meta table. */
    CHECK_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK(db_blob(db, "SELECT v FROM meta WHERE k = ?1", NULL, 0, "sign_pk", &b1, &n) == 0 &&
          n == 32 && memcmp(b1, dev, 32) == 0);
    if (b1 && n == 32)
        memcpy(spk, b1, 32);
    free(b1);
    CHECK(db_blob(db, "SELECT v FROM meta WHERE k = ?1", NULL, 0, "box_pk", &b1, &n) == 0 &&
          n == 32);
    if (b1 && n == 32)
        memcpy(bpk, b1, 32);
    free(b1);
    CHECK(db_blob(db, "SELECT v FROM meta WHERE k = ?1", NULL, 0, "device_keys", &blob, &bl) == 0 &&
          bl == 136);
    if (!blob || bl != 136)
        goto out;
    fv_kdf_derive(sub, 32, 1, "fvdevkey", vk);
    memcpy(ad, spk, 32);
    memcpy(ad + 32, bpk, 32);
    CHECK_EQ(fv_aead_decrypt(sec, blob + 24, 112, ad, 64, blob, sub), FV_OK);
    CHECK(memcmp(sec + 32, spk, 32) == 0);
    free(blob);

    /* The genesis envelope: record id = its own id, sealed to the device. */
    CHECK_EQ(db_env(db, rid, &g, &b1), FV_OK);
    CHECK(memcmp(g.id, rid, 32) == 0 && g.genesis && memcmp(g.record, rid, 32) == 0);
    CHECK(memcmp(g.author, spk, 32) == 0);
    CHECK(g.nrecipients >= 1);
    CHECK_EQ(fv_env_open(&g, bpk, sec + 64, &plain, &plen), FV_OK);
    CHECK_EQ(fv_payload_decode(&r, plain, plen), FV_OK);
    fv_env_free_plain(plain, plen);
    if (r && r->pub.nattachments == 1 && g.nattachments == 1) {
        const fv_attachment_info *a = &r->pub.attachments[0];
        uint64_t got = 0;
        CHECK(strcmp(r->pub.title, "live") == 0);
        CHECK_EQ(a->size, FV_CHUNK_BYTES + 5);
        CHECK_EQ(a->chunk_bytes, FV_CHUNK_BYTES);
        CHECK_EQ(g.chunk_counts[0], 2);
        memcpy(akey, r->keys[0], 32);
        /* Each chunk, by its hash, decrypts with the documented nonce. */
        for (uint64_t i = 0; i < g.chunk_counts[0]; i++) {
            unsigned char *ct = NULL, nonce[24], h[32], *pt;
            size_t cl = 0;
            CHECK(db_blob(db, "SELECT data FROM chunk WHERE hash = ?1", g.chunks[i],
                          32, NULL, &ct, &cl) == 0 && ct);
            if (!ct)
                break;
            fv_hash(h, ct, cl);
            CHECK(memcmp(h, g.chunks[i], 32) == 0);
            /* The last chunk's 5 bytes are padded to the floor bucket,
             * with zeros (FORMAT.md 8); the manifest says "padded". */
            CHECK_EQ(cl - FV_TAG_BYTES, i == 0 ? FV_CHUNK_BYTES : FV_PAD_FLOOR);
            CHECK(r->padded[0] == 1);
            chunk_nonce(nonce, i);
            pt = xmalloc(cl);
            CHECK_EQ(fv_aead_decrypt(pt, ct, cl, NULL, 0, nonce, akey), FV_OK);
            {
                size_t real = i == 0 ? FV_CHUNK_BYTES : 5;
                for (size_t j = 0; j < cl - FV_TAG_BYTES; j++)
                    if (pt[j] != (j < real ? (unsigned char)((got + j) * 13 + 1) : 0)) {
                        CHECK(!"attachment bytes");
                        break;
                    }
                got += real;
            }
            free(pt);
            free(ct);
        }
        CHECK_EQ(got, FV_CHUNK_BYTES + 5);
    } else {
        CHECK(!"one attachment");
    }
    fv_rec_free(r);
    r = NULL;
    sqlite3_close(db);
    db = NULL;

    /* An edit: a child naming the genesis, keeping the attachment as is. */
    CHECK_EQ(fv_vault_open(&v, dir, VPASS, strlen(VPASS)), FV_OK);
    if (!v)
        goto out_env;
    memset(&in, 0, sizeof in);
    in.version = FV_RECORD_INPUT_VERSION;
    in.title = "live, edited";
    CHECK_EQ(fv_record_edit(v, rev, rid, &in), FV_OK);
    fv_vault_close(v);
    v = NULL;
    CHECK_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK_EQ(db_env(db, rev, &c, &b2), FV_OK);
    CHECK(!c.genesis && memcmp(c.record, rid, 32) == 0);
    CHECK(c.nparents == 1 && memcmp(c.parents[0], rid, 32) == 0);
    CHECK(c.nattachments == 1 && c.nchunks == 2 && g.nchunks == 2 &&
          memcmp(c.chunks, g.chunks, 64) == 0);
    CHECK_EQ(fv_env_open(&c, bpk, sec + 64, &plain, &plen), FV_OK);
    CHECK_EQ(fv_payload_decode(&r, plain, plen), FV_OK);
    fv_env_free_plain(plain, plen);
    CHECK(r && r->pub.nattachments == 1 && memcmp(r->keys[0], akey, 32) == 0);
    fv_rec_free(r);
    sqlite3_close(db);
    db = NULL;

    /* A delete: a tombstone naming the head, {"time": t}, no attachments;
     * every other revision's bytes and every chunk destroyed. */
    CHECK_EQ(fv_vault_open(&v, dir, VPASS, strlen(VPASS)), FV_OK);
    if (v) {
        CHECK_EQ(fv_record_delete(v, rid), FV_OK);
        fv_vault_close(v);
        v = NULL;
    }
    CHECK_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    {
        sqlite3_stmt *st = NULL;
        int tomb = 0, purged = 0;
        CHECK(sqlite3_prepare_v2(db, "SELECT id, kind, bytes, record FROM envelope",
                                 -1, &st, NULL) == SQLITE_OK);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
            CHECK(sqlite3_column_bytes(st, 3) == 32 &&
                  memcmp(sqlite3_column_blob(st, 3), rid, 32) == 0);
            if (sqlite3_column_int(st, 1) == FV_ENV_TOMBSTONE) {
                const unsigned char *tb = sqlite3_column_blob(st, 2);
                size_t tl = (size_t)sqlite3_column_bytes(st, 2);
                unsigned char *copy = xmalloc(tl);
                int64_t when = 0;
                tomb++;
                memcpy(copy, tb, tl);
                CHECK_EQ(fv_env_parse(&t, copy, tl), FV_OK);
                CHECK(t.kind == FV_ENV_TOMBSTONE && memcmp(t.record, rid, 32) == 0);
                CHECK(t.nparents == 1 && memcmp(t.parents[0], rev, 32) == 0);
                CHECK_EQ(t.nattachments, 0);
                CHECK(sqlite3_column_bytes(st, 0) == 32 &&
                      memcmp(sqlite3_column_blob(st, 0), t.id, 32) == 0);
                CHECK_EQ(fv_env_open(&t, bpk, sec + 64, &plain, &plen), FV_OK);
                CHECK_EQ(fv_tombstone_decode(&when, plain, plen), FV_OK);
                CHECK(when > 1700000000);
                fv_env_free_plain(plain, plen);
                fv_env_clear(&t);
                free(copy);
            } else if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
                purged++;
            }
        }
        sqlite3_finalize(st);
        CHECK_EQ(tomb, 1);
        CHECK_EQ(purged, 2);
        CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM chunk", -1, &st, NULL) ==
              SQLITE_OK);
        CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    db = NULL;
    fv_env_clear(&c);
out_env:
    fv_env_clear(&g);
    free(b1);
    free(b2);
out:
    if (db)
        sqlite3_close(db);
    fv_wipe(vk, sizeof vk);
    fv_wipe(sec, sizeof sec);
    fv_vault_panic(dir);
    rmdir(root);
}

/* ---- main ------------------------------------------------------------------ */

/* ---- padding (FORMAT.md 5.8, 8) ------------------------------------------ */

/* Padme by its definition, with no shortcut: the smallest m >= n whose low
 * floor(log2 n) - (floor(log2 floor(log2 n)) + 1) bits are zero. */
static uint64_t padme_ref(uint64_t n)
{
    int e = 0, s = 0, z;
    uint64_t m;
    if (n < 2)
        return n;
    while (((uint64_t)1 << (e + 1)) <= n)
        e++;
    while ((1 << (s + 1)) <= e)
        s++;
    z = e - (s + 1);
    for (m = n; z > 0 && m % ((uint64_t)1 << z) != 0; m++)
        ;
    return m;
}

/* A version 2 body over the fixture's key whose plaintext is `pt` (n
 * bytes, padding included as given): the parse result, and on FV_OK the
 * open result, with the plaintext it gave in *plain. */
static int forge_v2(const struct fixture *f, const unsigned char *pt, size_t n,
                    int *open_rc, unsigned char **plain, size_t *plen)
{
    struct body b = body_defaults(f);
    struct prot pp = {-8, f->k.spk, 32, 0, 0, 0};
    struct outer o = outer_defaults(f->k.ssk);
    unsigned char *ct = xmalloc(n + FV_TAG_BYTES), *bytes = NULL;
    fv_env q;
    int rc;

    *open_rc = -1000;
    *plain = NULL;
    *plen = 0;
    fv_aead_encrypt(ct, pt, n, NULL, 0, f->nonce, f->key);
    b.version = 2;
    b.ct = ct;
    b.ct_len = n + FV_TAG_BYTES;
    rc = try_env(&b, &pp, &o, &q, &bytes);
    if (rc == FV_OK) {
        CHECK_EQ(q.version, 2);
        *open_rc = fv_env_open(&q, f->rpk[0], fixture_sk(f, f->rpk[0]), plain,
                               plen);
        fv_env_clear(&q);
    }
    free(bytes);
    free(ct);
    return rc;
}

static void test_padding(void)
{
    static struct fixture f;
    static const struct { uint64_t n, want; } padme_table[] = {
        {0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}, {7, 7}, {8, 8},
        {9, 10}, {255, 256}, {256, 256}, {257, 272}, {271, 272}, {272, 272},
        {273, 288}, {511, 512}, {512, 512}, {513, 544}, {1000, 1024},
        {1010, 1024}, {1025, 1088}, {1500, 1536}, {65536, 65536},
        {65537, 67584}, {100001, 100352}, {262143, 262144}, {262144, 262144},
        {262145, 270336}, {1032191, 1032192}, {1032193, 1048576},
    };
    /* Payload length -> padded plaintext length (payload, 0x80, zeros). */
    static const struct { size_t len, padded; } env_table[] = {
        {0, 256}, {1, 256}, {FV_PAD_FLOOR - 2, 256},
        {FV_PAD_FLOOR - 1, 256}, /* the marker fills the floor */
        {FV_PAD_FLOOR, 272},     /* one more byte: the next bucket */
        {FV_PAD_FLOOR + 1, 272}, {271, 272}, {272, 288}, {511, 512},
        {512, 544}, {1023, 1024}, {1024, 1088}, {100000, 100352},
        {700000, 704512},
    };
    unsigned char *pt, *plain = NULL, *big, *env = NULL, id[32];
    size_t plen = 0, len = 0;
    struct keys k;
    fv_env_spec s;
    fv_env p;
    int orc;

    for (size_t i = 0; i < sizeof padme_table / sizeof padme_table[0]; i++) {
        CHECK_EQ(fv_padme(padme_table[i].n), padme_table[i].want);
        CHECK_EQ(padme_ref(padme_table[i].n), padme_table[i].want);
    }
    /* Against the definition, everywhere up to a chunk and then some: never
     * smaller, a fixed point, monotone, and at most 1/8 more from 256 on
     * (Padme's overhead bound falls as lengths grow). */
    for (uint64_t n = 1, prev = 0; n <= 300000; n++) {
        uint64_t m = fv_padme(n);
        if (m != padme_ref(n) || m < n || fv_padme(m) != m || m < prev ||
            (n >= 256 && (m - n) * 8 > n)) {
            fprintf(stderr, "  padme(%llu) = %llu\n", (unsigned long long)n,
                    (unsigned long long)m);
            CHECK(!"Padme");
            break;
        }
        prev = m;
    }
    for (size_t i = 0; i < sizeof env_table / sizeof env_table[0]; i++)
        CHECK_EQ(fv_env_padded_len(env_table[i].len), env_table[i].padded);
    /* The last chunk of an attachment: to its bucket, at least the floor,
     * never past the chunk size. */
    CHECK_EQ(fv_chunk_padded_len(1, FV_CHUNK_BYTES), FV_PAD_FLOOR);
    CHECK_EQ(fv_chunk_padded_len(FV_PAD_FLOOR - 1, FV_CHUNK_BYTES), FV_PAD_FLOOR);
    CHECK_EQ(fv_chunk_padded_len(FV_PAD_FLOOR, FV_CHUNK_BYTES), FV_PAD_FLOOR);
    CHECK_EQ(fv_chunk_padded_len(FV_PAD_FLOOR + 1, FV_CHUNK_BYTES), 272);
    CHECK_EQ(fv_chunk_padded_len(1000, FV_CHUNK_BYTES), 1024);
    CHECK_EQ(fv_chunk_padded_len(FV_CHUNK_BYTES - 1, FV_CHUNK_BYTES), FV_CHUNK_BYTES);
    CHECK_EQ(fv_chunk_padded_len(FV_CHUNK_BYTES, FV_CHUNK_BYTES), FV_CHUNK_BYTES);
    CHECK_EQ(fv_chunk_padded_len(400000, FV_MAX_CHUNK_BYTES), 401408);
    CHECK_EQ(fv_chunk_padded_len(300000, 300001), 300001); /* capped */
    CHECK_EQ(fv_chunk_padded_len(10, 100), 100);
    {
        fv_attachment_info a = {"a", FV_CHUNK_BYTES + 5, FV_CHUNK_BYTES, 2, 0};
        CHECK_EQ(fv_chunk_ct_bytes(&a, 1, 0), FV_CHUNK_BYTES + FV_TAG_BYTES);
        CHECK_EQ(fv_chunk_ct_bytes(&a, 1, 1), FV_PAD_FLOOR + FV_TAG_BYTES);
        CHECK_EQ(fv_chunk_ct_bytes(&a, 0, 1), 5 + FV_TAG_BYTES);
        CHECK_EQ(fv_chunk_plain_bytes(&a, 1), 5);
    }

    /* Built envelopes: the ciphertext is the bucket plus the tag, and the
     * opened payload is exactly the bytes given. */
    new_keys(&k);
    big = xmalloc(700001);
    for (size_t i = 0; i < 700001; i++)
        big[i] = (unsigned char)(i * 31 + 7);
    for (size_t i = 0; i < sizeof env_table / sizeof env_table[0]; i++) {
        s = spec_for(&k, env_table[i].len ? big : NULL, env_table[i].len, 1);
        CHECK_EQ(fv_env_build(&env, &len, id, &s), FV_OK);
        if (!env)
            continue;
        CHECK_EQ(fv_env_parse(&p, env, len), FV_OK);
        CHECK_EQ(p.version, 2);
        CHECK_EQ(p.ctlen, env_table[i].padded + FV_TAG_BYTES);
        CHECK_EQ(fv_env_open(&p, k.bpk[0], k.bsk[0], &plain, &plen), FV_OK);
        CHECK(plen == env_table[i].len &&
              (plen == 0 || memcmp(plain, big, plen) == 0));
        fv_env_free_plain(plain, plen);
        fv_env_clear(&p);
        free(env);
        env = NULL;
    }
    /* Two payloads of different lengths in one bucket: envelopes of one
     * length. */
    {
        size_t l1, l2;
        s = spec_for(&k, big, 1000, 1);
        CHECK_EQ(fv_env_build(&env, &l1, id, &s), FV_OK);
        free(env);
        s = spec_for(&k, big, 1020, 1);
        CHECK_EQ(fv_env_build(&env, &l2, id, &s), FV_OK);
        free(env);
        CHECK_EQ(l1, l2);
        s = spec_for(&k, big, 1023, 1); /* 1023 + 1 = 1024 still */
        CHECK_EQ(fv_env_build(&env, &l2, id, &s), FV_OK);
        free(env);
        CHECK_EQ(l1, l2);
        s = spec_for(&k, big, 1024, 1); /* the next bucket */
        CHECK_EQ(fv_env_build(&env, &l2, id, &s), FV_OK);
        free(env);
        CHECK_EQ(l2, l1 + 64);
        env = NULL;
    }
    free(big);

    /* Forged version 2 bodies: only payload || 0x80 || zeros, to exactly
     * the payload's bucket, opens. */
    fixture_init(&f);
    pt = xmalloc(2048);
    memset(pt, 0, 2048);
    memcpy(pt, f.payload, 7);
    pt[7] = 0x80;
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_OK);
    CHECK(plen == 7 && plain && memcmp(plain, f.payload, 7) == 0);
    fv_env_free_plain(plain, plen);
    /* A bucket too large for the payload: not the one encoding. */
    CHECK_EQ(forge_v2(&f, pt, 272, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_ECORRUPT);
    CHECK(plain == NULL);
    /* Lengths that are no bucket, or under the floor: refused by the
     * parser, before any key. */
    CHECK_EQ(forge_v2(&f, pt, 257, &orc, &plain, &plen), FV_ECORRUPT);
    CHECK_EQ(forge_v2(&f, pt, 300, &orc, &plain, &plen), FV_ECORRUPT);
    CHECK_EQ(forge_v2(&f, pt, 128, &orc, &plain, &plen), FV_ECORRUPT);
    CHECK_EQ(forge_v2(&f, pt, 8, &orc, &plain, &plen), FV_ECORRUPT);
    CHECK_EQ(forge_v2(&f, pt, 0, &orc, &plain, &plen), FV_ECORRUPT);
    /* Another marker byte. */
    pt[7] = 0x01;
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_ECORRUPT);
    pt[7] = 0xff;
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_ECORRUPT);
    /* No marker at all: zeros after the payload. Its last byte 0x00 reads
     * as padding, and what is left does not end in 0x80. */
    pt[7] = 0;
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_ECORRUPT);
    /* All zeros. */
    memset(pt, 0, 2048);
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_ECORRUPT);
    /* A non-zero byte anywhere in the padding, marker first. */
    memcpy(pt, f.payload, 7);
    pt[7] = 0x80;
    for (size_t at = 8; at < 256; at += 31) {
        pt[at] = 0x01;
        CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
        CHECK_EQ(orc, FV_ECORRUPT);
        pt[at] = 0;
    }
    pt[255] = 0x80; /* a second marker, last: reads as a 255-byte payload
                       whose bucket is 256 but whose payload is not CBOR:
                       the padding is fine, the payload check refuses it */
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_OK);
    CHECK_EQ(plen, 255);
    fv_env_free_plain(plain, plen);
    pt[255] = 0;
    /* A payload filling the floor (255 bytes and the marker). */
    memset(pt, 0xa0, 255);
    pt[255] = 0x80;
    CHECK_EQ(forge_v2(&f, pt, 256, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_OK);
    CHECK_EQ(plen, 255);
    fv_env_free_plain(plain, plen);
    /* 256 bytes of payload need the next bucket, 272. */
    memset(pt, 0xa0, 256);
    pt[256] = 0x80;
    CHECK_EQ(forge_v2(&f, pt, 272, &orc, &plain, &plen), FV_OK);
    CHECK_EQ(orc, FV_OK);
    CHECK_EQ(plen, 256);
    fv_env_free_plain(plain, plen);
    free(pt);

    /* Version 1 still opens, unpadded: the fixture's 7-byte ciphertext. */
    {
        struct body b = body_defaults(&f);
        struct prot pp = {-8, f.k.spk, 32, 0, 0, 0};
        struct outer o = outer_defaults(f.k.ssk);
        unsigned char *bytes = NULL;
        fv_env q;
        CHECK_EQ(try_env(&b, &pp, &o, &q, &bytes), FV_OK);
        if (bytes) {
            CHECK_EQ(q.version, 1);
            CHECK_EQ(fv_env_open(&q, f.rpk[0], fixture_sk(&f, f.rpk[0]), &plain,
                                 &plen), FV_OK);
            CHECK(plen == 7 && memcmp(plain, f.payload, 7) == 0);
            fv_env_free_plain(plain, plen);
            /* and a version 1 payload is never stripped: 0x80 at its end
             * stays (it is then not CBOR, which the payload check says) */
            fv_env_clear(&q);
            free(bytes);
        }
    }
}

static unsigned char *find_bytes(unsigned char *p, size_t n, const char *w,
                                 size_t wn)
{
    for (size_t i = 0; i + wn <= n; i++)
        if (memcmp(p + i, w, wn) == 0)
            return p + i;
    return NULL;
}

/* The manifest's "padded" key (FORMAT.md 6, 8): 1 or absent; only in a
 * version 2 envelope. */
static void test_padded_manifest(void)
{
    fv_record r;
    fv_attachment_info info[2] = {{"a.bin", 1000, FV_CHUNK_BYTES, 1, 0},
                                  {"b.bin", 5, FV_CHUNK_BYTES, 1, 0}};
    unsigned char keys[2][32], padded[2] = {1, 0}, *out = NULL, *x;
    size_t olen = 0;
    fv_rec *d = NULL;
    fv_env e;

    memset(&r, 0, sizeof r);
    r.title = "t";
    r.narrative = "";
    r.attachments = info;
    r.nattachments = 2;
    fv_random(keys, sizeof keys);
    CHECK_EQ(fv_payload_encode_ex(&out, &olen, &r,
                                  (const unsigned char(*)[32])keys, padded),
             FV_OK);
    if (!out)
        return;
    CHECK(find_bytes(out, olen, "\x66padded\x01", 8) != NULL);
    CHECK_EQ(fv_payload_decode(&d, out, olen), FV_OK);
    if (d) {
        CHECK(d->padded[0] == 1 && d->padded[1] == 0);
        memset(&e, 0, sizeof e);
        e.kind = FV_ENV_REVISION;
        e.nattachments = 2;
        {
            uint64_t counts[2] = {1, 1};
            e.chunk_counts = counts;
            e.version = 2;
            CHECK_EQ(fv_payload_check_rec(&e, d), FV_OK);
            e.version = 1; /* version 1 has no padded attachment */
            CHECK_EQ(fv_payload_check_rec(&e, d), FV_ECORRUPT);
            e.chunk_counts = NULL;
        }
        fv_rec_free(d);
        d = NULL;
    }
    /* "padded": 0 or 2 is not the one encoding. */
    x = find_bytes(out, olen, "\x66padded\x01", 8);
    if (x) {
        x[7] = 0x00;
        CHECK_EQ(fv_payload_decode(&d, out, olen), FV_ECORRUPT);
        x[7] = 0x02;
        CHECK_EQ(fv_payload_decode(&d, out, olen), FV_ECORRUPT);
        x[1] = 'P'; /* another key */
        x[7] = 0x01;
        CHECK_EQ(fv_payload_decode(&d, out, olen), FV_ECORRUPT);
    }
    fv_enc_free_buf(out, olen);
}

int main(void)
{
    struct vec V;
    unsigned char vault_key[32];

    if (fv_crypto_init() != FV_OK) {
        fprintf(stderr, "test_envelope: libsodium failed to start\n");
        return 1;
    }
    memset(&V, 0, sizeof V);
    if (load_vectors(&V)) {
        test_keyfile_vector(&V, vault_key);
        test_device_vector(&V, vault_key);
        test_envelope_vectors(&V);
        test_grant_vector(&V);
        test_attachment_vectors(&V);
        for (size_t i = 0; i < sizeof vector_names / sizeof vector_names[0]; i++) {
            char name[64];
            size_t len, fn;
            char *file;
            unsigned char *env;
#ifndef FV_ENV_GRANT
            if (strcmp(vector_names[i], "grant") == 0)
                continue;
#endif
            snprintf(name, sizeof name, "envelopes.%s.file", vector_names[i]);
            file = j_str(j_get(V.root, name), &fn);
            env = read_file(V.dir, file, &len);
            CHECK(env != NULL);
            if (env) {
                unsigned char opk[32], osk[32];
                tamper_all(env, len, file);
                prefixes(env, len, file);
                if (strcmp(vector_names[i], "revision") == 0 &&
                    j_hex(j_get(V.root, "organisation.box_pk"), opk, 32) &&
                    j_hex(j_get(V.root, "organisation.box_sk"), osk, 32))
                    test_resigned(env, len, opk, osk);
            }
            free(env);
            free(file);
        }
        fv_wipe(vault_key, sizeof vault_key);
    }
    free(V.json);
    /* Format 2's vectors (FORMAT.md 13): the same checks, padding included. */
    {
        const char *d1 = getenv("FV_TEST_VECTORS");
        char d2[1024];
        snprintf(d2, sizeof d2, "%s/v2", d1 && *d1 ? d1 : "tests/vectors");
        memset(&V, 0, sizeof V);
        if (load_vectors_in(&V, d2)) {
            test_keyfile_vector(&V, vault_key);
            test_device_vector(&V, vault_key);
            test_envelope_vectors(&V);
            test_grant_vector(&V);
            test_attachment_vectors(&V);
            fv_wipe(vault_key, sizeof vault_key);
        }
        free(V.json);
    }
    test_round_trips();
    test_structure();
    test_raw_bodies();
    test_commitment();
    test_grant_commitment();
    test_build_shapes();
    test_size_limit();
    test_padding();
    test_padded_manifest();
    test_payload_rules();
    test_live_vault();
    return check_summary("test_envelope");
}
