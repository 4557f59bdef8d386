/*
 * make_vectors.c - writes the committed test vectors in tests/vectors/ (see
 * docs/FORMAT.md, "Test vectors"). Run it once by hand:
 *
 *     make_vectors tests/vectors/v2          (refuses to overwrite)
 *     make_vectors --force tests/vectors/v2  (replaces every vector)
 *
 * It writes the current format, 2 (padded payloads and last chunks,
 * FORMAT.md 5.8 and 8). The format 1 vectors in tests/vectors/ were made
 * by this program before format 2 and are kept as they are: readers still
 * read format 1.
 *
 * Envelopes hold fresh random keys and nonces, so each run writes different
 * bytes: the committed files are the vectors, and this program only records
 * how they were made. Everything is produced by the library's own code:
 *
 *   - a real vault (fv_vault_create, test-cost Argon2id) gives the key file
 *     and the device keys; they are unwrapped here the way FORMAT.md says, so
 *     the vectors also pin the device-key storage;
 *   - payloads are fv_payload_encode / fv_tombstone_encode output;
 *   - envelopes are fv_env_build output, signed with the vault's device key
 *     and sealed to the device and to a test organisation key (a record
 *     written before enrollment to the device alone; its key grant to the
 *     organisation alone, as vault_sync.c writes grants); each one's key
 *     commitment (body key 9) is recomputed here with libsodium directly,
 *     as FORMAT.md words it, and must be the one the library wrote;
 *   - attachment chunks are encrypted as attachments.c's fv_v_attach_add
 *     does (FV_CHUNK_BYTES plaintext per chunk, nonce LE64(index) || 0^16,
 *     the last chunk zero-padded to its bucket), except one attachment
 *     left unpadded, as a format 1 revision wrote it and a format 2
 *     revision keeps it.
 *
 * Every key here is a test key, published in vectors.json. Never use them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"

#define PASSPHRASE "correct horse 배터리 staple"
/* FORMAT.md 5.2: the key commitment's message, 28 ASCII bytes, no NUL. */
#define COMMIT_LABEL "FieldVault key commitment v1"
#define KF_BYTES 192 /* docs/FORMAT.md 3: header, slot 1, slot 2 */
#define DEVKEY_BLOB_BYTES (FV_NONCE_BYTES + FV_SIGN_SK_BYTES + FV_BOX_SK_BYTES + FV_TAG_BYTES)

static const char *outdir;

static void die(const char *what)
{
    fprintf(stderr, "make_vectors: %s\n", what);
    exit(1);
}

static void must(int rc, const char *what)
{
    if (rc != FV_OK) {
        fprintf(stderr, "make_vectors: %s: %s\n", what, fv_strerror(rc));
        exit(1);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void write_out(const char *name, const void *p, size_t n)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    if (!(f = fopen(path, "wb")) || (n && fwrite(p, 1, n, f) != n) ||
        fclose(f) != 0)
        die("cannot write a vector file");
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = xmalloc(1 << 16);
    if (!f)
        die("cannot read a vault file");
    *n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- JSON output ---------------------------------------------------- */

static FILE *js;

static void j_hex(const unsigned char *p, size_t n)
{
    fputc('"', js);
    for (size_t i = 0; i < n; i++)
        fprintf(js, "%02x", p[i]);
    fputc('"', js);
}

static void j_str(const char *s, size_t n)
{
    fputc('"', js);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(js, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", js);
        else if (c < 0x20 || c == 0x7f)
            fprintf(js, "\\u%04x", c);
        else
            fputc(c, js); /* UTF-8 passes through as is */
    }
    fputc('"', js);
}

static void j_cstr(const char *s) { j_str(s, strlen(s)); }

static void j_key(int indent, const char *k)
{
    fprintf(js, "%*s", indent, "");
    j_cstr(k);
    fputs(": ", js);
}

/* ---- the vault: key file and device keys ---------------------------- */

struct device {
    unsigned char kf[KF_BYTES];
    unsigned char wrapping_key[FV_KEY_BYTES];
    unsigned char vault_key[FV_KEY_BYTES];
    unsigned char devkey_subkey[FV_KEY_BYTES];
    unsigned char blob[DEVKEY_BLOB_BYTES];
    unsigned char sign_pk[FV_SIGN_PK_BYTES], sign_sk[FV_SIGN_SK_BYTES];
    unsigned char box_pk[FV_BOX_PK_BYTES], box_sk[FV_BOX_SK_BYTES];
};

static void meta(sqlite3 *db, const char *k, unsigned char *out, size_t n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        die("cannot query vault.db");
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW ||
        (size_t)sqlite3_column_bytes(st, 0) != n)
        die("a meta row is missing or of the wrong size");
    memcpy(out, sqlite3_column_blob(st, 0), n);
    sqlite3_finalize(st);
}

/* Makes a vault and unwraps its secrets the way docs/FORMAT.md says. */
static void make_device(struct device *d)
{
    char dir[] = "/tmp/fv-vectors-XXXXXX", path[256];
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    unsigned char ad[64], secrets[FV_SIGN_SK_BYTES + FV_BOX_SK_BYTES], id[32];
    unsigned char *kf;
    size_t n;
    sqlite3 *db;

    if (!mkdtemp(dir))
        die("mkdtemp");
    snprintf(path, sizeof path, "%s/vault", dir);
    o.kdf_profile = FV_KDF_TEST;
    must(fv_vault_create(&v, path, PASSPHRASE, strlen(PASSPHRASE), &o),
         "fv_vault_create");
    must(fv_vault_get_device_id(v, id), "fv_vault_get_device_id");
    fv_vault_close(v);

    snprintf(path, sizeof path, "%s/vault/vault.key", dir);
    kf = read_all(path, &n);
    if (n != KF_BYTES || memcmp(kf, "FieldVlt", 8) != 0 || get_le(kf + 8, 4) != 1 ||
        get_le(kf + 12, 4) != 1 || get_le(kf + 16, 8) != 1 ||
        get_le(kf + 24, 8) != 8192)
        die("the key file is not laid out as FORMAT.md says");
    memcpy(d->kf, kf, KF_BYTES);
    free(kf);
    must(fv_pwhash(d->wrapping_key, FV_KEY_BYTES, PASSPHRASE, strlen(PASSPHRASE),
                   d->kf + 32, get_le(d->kf + 16, 8), get_le(d->kf + 24, 8)),
         "fv_pwhash");
    must(fv_aead_decrypt(d->vault_key, d->kf + 72, FV_KEY_BYTES + FV_TAG_BYTES,
                         d->kf, 48, d->kf + 48, d->wrapping_key),
         "unwrapping the vault key");

    snprintf(path, sizeof path, "%s/vault/vault.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die("cannot open vault.db");
    meta(db, "sign_pk", d->sign_pk, sizeof d->sign_pk);
    meta(db, "box_pk", d->box_pk, sizeof d->box_pk);
    meta(db, "device_keys", d->blob, sizeof d->blob);
    sqlite3_close(db);
    if (memcmp(id, d->sign_pk, 32) != 0)
        die("meta sign_pk is not the device id");

    fv_kdf_derive(d->devkey_subkey, FV_KEY_BYTES, 1, "fvdevkey", d->vault_key);
    memcpy(ad, d->sign_pk, 32);
    memcpy(ad + 32, d->box_pk, 32);
    must(fv_aead_decrypt(secrets, d->blob + FV_NONCE_BYTES,
                         sizeof d->blob - FV_NONCE_BYTES, ad, sizeof ad, d->blob,
                         d->devkey_subkey),
         "decrypting the device keys");
    memcpy(d->sign_sk, secrets, FV_SIGN_SK_BYTES);
    memcpy(d->box_sk, secrets + FV_SIGN_SK_BYTES, FV_BOX_SK_BYTES);
    if (memcmp(d->sign_sk + 32, d->sign_pk, 32) != 0)
        die("the signing secret key does not hold its public key");

    snprintf(path, sizeof path, "%s/vault", dir);
    must(fv_vault_panic(path), "removing the temporary vault");
    rmdir(dir);
}

/* ---- attachments ---------------------------------------------------- */

struct att {
    const char *name;
    unsigned char *plain;
    size_t size;
    unsigned char key[FV_KEY_BYTES];
    size_t nchunks;
    unsigned char (*hash)[FV_HASH_BYTES];
    unsigned char **ct;
    size_t *ctlen;
    const char *rule; /* how plain was made, when it is too long for hex */
    int padded;       /* last chunk padded to its bucket (FORMAT.md 8) */
};

/* Encrypts an attachment as vault.c's add_attachment does. */
static void encrypt_att(struct att *a)
{
    size_t n = (a->size + FV_CHUNK_BYTES - 1) / FV_CHUNK_BYTES;
    fv_random(a->key, sizeof a->key);
    a->nchunks = n;
    a->hash = xmalloc(n * FV_HASH_BYTES);
    a->ct = xmalloc(n * sizeof *a->ct);
    a->ctlen = xmalloc(n * sizeof *a->ctlen);
    for (size_t i = 0; i < n; i++) {
        unsigned char nonce[FV_NONCE_BYTES] = {0};
        size_t off = i * FV_CHUNK_BYTES;
        size_t len = a->size - off < FV_CHUNK_BYTES ? a->size - off : FV_CHUNK_BYTES;
        size_t stored = a->padded && i + 1 == n
                            ? (size_t)fv_chunk_padded_len(len, FV_CHUNK_BYTES)
                            : len;
        unsigned char *pt = xmalloc(stored);
        memcpy(pt, a->plain + off, len);
        memset(pt + len, 0, stored - len);
        put_le(nonce, i, 8);
        a->ctlen[i] = stored + FV_TAG_BYTES;
        a->ct[i] = xmalloc(a->ctlen[i]);
        fv_aead_encrypt(a->ct[i], pt, stored, NULL, 0, nonce, a->key);
        free(pt);
        fv_hash(a->hash[i], a->ct[i], a->ctlen[i]);
    }
}

static void free_att(struct att *a)
{
    for (size_t i = 0; i < a->nchunks; i++)
        free(a->ct[i]);
    free(a->ct);
    free(a->ctlen);
    free(a->hash);
}

/* ---- envelopes ------------------------------------------------------ */

struct env {
    const char *name; /* envelope-NAME.cbor */
    unsigned char *bytes;
    size_t len;
    unsigned char id[FV_ID_BYTES];
    unsigned char *payload;
    size_t payload_len;
    struct att **atts;
    size_t natts;
    int kind;
    int device_only; /* sealed to the device alone (written before enrollment) */
    int org_only;    /* sealed to the organisation alone (a key grant) */
    const unsigned char *content_key; /* a key grant: its target's key */
};

static void free_env(struct env *e)
{
    free(e->bytes);
    fv_enc_free_buf(e->payload, e->payload_len);
}

static void build(struct env *out, const struct device *d,
                  const unsigned char org_pk[32], int kind,
                  const unsigned char *record,
                  const unsigned char (*parents)[32], size_t nparents)
{
    unsigned char recips[2][32];
    size_t nrecips = 2;
    uint64_t counts[8];
    unsigned char (*chunks)[32];
    size_t total = 0, c = 0;
    fv_env_spec sp;

    for (size_t i = 0; i < out->natts; i++)
        total += out->atts[i]->nchunks;
    chunks = xmalloc(total * 32);
    for (size_t i = 0; i < out->natts; i++) {
        counts[i] = out->atts[i]->nchunks;
        for (size_t k = 0; k < out->atts[i]->nchunks; k++)
            memcpy(chunks[c++], out->atts[i]->hash[k], 32);
    }
    /* Given in the "wrong" order on purpose: the envelope sorts them. */
    memcpy(recips[0], d->box_pk, 32);
    memcpy(recips[1], org_pk, 32);
    if (out->device_only)
        nrecips = 1;
    if (out->org_only) {
        memcpy(recips[0], org_pk, 32);
        nrecips = 1;
    }
    memset(&sp, 0, sizeof sp);
    sp.kind = kind;
    sp.record = record;
    sp.parents = parents;
    sp.nparents = nparents;
    sp.payload = out->payload;
    sp.payload_len = out->payload_len;
    sp.recipients = (const unsigned char(*)[32])recips;
    sp.nrecipients = nrecips;
#ifdef FV_ENV_GRANT
    sp.content_key = out->content_key;
#else
    if (out->content_key)
        die("this library has no key grants");
#endif
    sp.chunk_counts = counts;
    sp.nattachments = out->natts;
    sp.chunks = (const unsigned char(*)[32])chunks;
    sp.sign_pk = d->sign_pk;
    sp.sign_sk = d->sign_sk;
    out->kind = kind;
    must(fv_env_build(&out->bytes, &out->len, out->id, &sp), "fv_env_build");
    free(chunks);
}

static unsigned char *revision_payload(size_t *len, const char *title,
                                       const char *narrative, fv_field *f,
                                       size_t nf, const char **tags, size_t nt,
                                       int64_t created, int64_t modified,
                                       struct att **atts, size_t natts)
{
    fv_record r;
    fv_attachment_info info[8];
    unsigned char keys[8][FV_KEY_BYTES], padded[8];
    unsigned char *out;

    memset(&r, 0, sizeof r);
    if (fv_sort_fields(f, nf) != FV_OK)
        die("duplicate field");
    fv_sort_tags(tags, &nt);
    for (size_t i = 0; i < natts; i++) {
        info[i].name = atts[i]->name;
        info[i].size = atts[i]->size;
        info[i].chunk_bytes = FV_CHUNK_BYTES;
        info[i].chunks = atts[i]->nchunks;
        padded[i] = (unsigned char)atts[i]->padded;
        memcpy(keys[i], atts[i]->key, FV_KEY_BYTES);
    }
    r.title = title;
    r.narrative = narrative;
    r.narrative_len = strlen(narrative);
    r.fields = f;
    r.nfields = nf;
    r.tags = tags;
    r.ntags = nt;
    r.created = created;
    r.modified = modified;
    r.attachments = info;
    r.nattachments = natts;
    must(fv_payload_encode_ex(&out, len, &r,
                              (const unsigned char(*)[FV_KEY_BYTES])keys, padded),
         "fv_payload_encode_ex");
    return out;
}

/* ---- vectors.json --------------------------------------------------- */

static void j_payload(const struct env *e)
{
    fv_rec *r;
    int64_t t;
    size_t i;

    j_key(6, "payload");
    if (e->kind != FV_ENV_REVISION) { /* tombstone, key grant: {"time": t} */
        must(fv_tombstone_decode(&t, e->payload, e->payload_len), "tombstone");
        fprintf(js, "{\"time\": %lld}", (long long)t);
        return;
    }
    must(fv_payload_decode(&r, e->payload, e->payload_len), "fv_payload_decode");
    fputs("{\n", js);
    j_key(8, "tags");
    fputc('[', js);
    for (i = 0; i < r->pub.ntags; i++) {
        if (i)
            fputs(", ", js);
        j_cstr(r->pub.tags[i]);
    }
    fputs("],\n", js);
    j_key(8, "time");
    fprintf(js, "%lld,\n", (long long)r->pub.modified);
    j_key(8, "title");
    j_cstr(r->pub.title);
    fputs(",\n", js);
    j_key(8, "fields");
    fputs("{", js);
    for (i = 0; i < r->pub.nfields; i++) {
        fputs(i ? ", " : "", js);
        j_cstr(r->pub.fields[i].key);
        fputs(": ", js);
        j_cstr(r->pub.fields[i].value);
    }
    fputs("},\n", js);
    j_key(8, "created");
    fprintf(js, "%lld,\n", (long long)r->pub.created);
    j_key(8, "narrative");
    j_str(r->pub.narrative, r->pub.narrative_len);
    fputs(",\n", js);
    j_key(8, "attachments");
    fputs("[", js);
    for (i = 0; i < r->pub.nattachments; i++) {
        const fv_attachment_info *a = &r->pub.attachments[i];
        fputs(i ? ",\n          {" : "\n          {", js);
        j_key(0, "key");
        j_hex(r->keys[i], FV_KEY_BYTES);
        fputs(", ", js);
        j_key(0, "name");
        j_cstr(a->name);
        fprintf(js, ", \"size\": %llu, \"chunk\": %u%s}", (unsigned long long)a->size,
                (unsigned)a->chunk_bytes, r->padded[i] ? ", \"padded\": 1" : "");
    }
    fputs(r->pub.nattachments ? "]\n      }" : "]\n      }", js);
    fv_rec_free(r);
}

static void j_envelope(const struct env *e, const struct device *d,
                       const unsigned char org_pk[32],
                       const unsigned char org_sk[32], int last)
{
    fv_env p;
    unsigned char key[FV_KEY_BYTES], commit[FV_HASH_BYTES];
    char file[128];
    size_t i, c = 0;

    must(fv_env_parse(&p, e->bytes, e->len), "fv_env_parse");
    for (i = 0; i < p.nrecipients; i++) {
        int dev = memcmp(p.recipient_pk[i], d->box_pk, 32) == 0;
        must(fv_seal_open(key, p.recipient_seal[i], FV_KEY_BYTES + FV_SEAL_BYTES,
                          dev ? d->box_pk : org_pk, dev ? d->box_sk : org_sk),
             "fv_seal_open");
        /* Every sealed key is the committed one, as FORMAT.md 5.2 says:
         * BLAKE2b-256 keyed with the content key over the label. */
        if (strlen(COMMIT_LABEL) != 28 ||
            crypto_generichash(commit, sizeof commit,
                               (const unsigned char *)COMMIT_LABEL,
                               strlen(COMMIT_LABEL), key, sizeof key) != 0 ||
            memcmp(commit, p.commit, sizeof commit) != 0)
            die("the body's key commitment is not FORMAT.md's");
    }
    snprintf(file, sizeof file, "envelope-%s.cbor", e->name);
    fprintf(js, "    ");
    j_cstr(e->name);
    fputs(": {\n", js);
    j_key(6, "file");
    j_cstr(file);
    fprintf(js, ",\n      \"bytes\": %zu,\n", e->len);
    j_key(6, "id");
    j_hex(e->id, 32);
    fputs(",\n", js);
    j_key(6, "record");
    j_hex(p.record, 32);
    fprintf(js, ",\n      \"genesis\": %s,\n      \"kind\": %d,\n",
            p.genesis ? "true" : "false", p.kind);
    j_key(6, "author");
    j_hex(p.author, 32);
    fputs(",\n", js);
    j_key(6, "parents");
    fputc('[', js);
    for (i = 0; i < p.nparents; i++) {
        fputs(i ? ", " : "", js);
        j_hex(p.parents[i], 32);
    }
    fputs("],\n", js);
    j_key(6, "recipients");
    fputc('[', js);
    for (i = 0; i < p.nrecipients; i++) {
        fputs(i ? ", " : "", js);
        j_hex(p.recipient_pk[i], 32);
    }
    fputs("],\n", js);
    j_key(6, "content_key");
    j_hex(key, sizeof key);
    fputs(",\n", js);
    j_key(6, "nonce");
    j_hex(p.nonce, FV_NONCE_BYTES);
    fputs(",\n", js);
    j_key(6, "commit");
    j_hex(p.commit, FV_HASH_BYTES);
    fputs(",\n", js);
    j_key(6, "chunks");
    fputc('[', js);
    for (i = 0; i < p.nattachments; i++) {
        fputs(i ? ", [" : "[", js);
        for (uint64_t k = 0; k < p.chunk_counts[i]; k++, c++) {
            fputs(k ? ", " : "", js);
            j_hex(p.chunks[c], 32);
        }
        fputc(']', js);
    }
    fputs("],\n", js);
    j_key(6, "payload_hex");
    j_hex(e->payload, e->payload_len);
    fputs(",\n", js);
    /* Format 2: what decryption gives, padding included (FORMAT.md 5.8). */
    {
        unsigned char *pt = xmalloc(p.ctlen - FV_TAG_BYTES);
        if (fv_aead_decrypt(pt, p.ct, p.ctlen, NULL, 0, p.nonce, key) != FV_OK ||
            p.ctlen - FV_TAG_BYTES != fv_env_padded_len(e->payload_len) ||
            memcmp(pt, e->payload, e->payload_len) != 0 ||
            pt[e->payload_len] != 0x80)
            die("the envelope's plaintext is not FORMAT.md's padding");
        fprintf(js, "      \"version\": %d,\n", p.version);
        j_key(6, "plaintext_hex");
        j_hex(pt, p.ctlen - FV_TAG_BYTES);
        fputs(",\n", js);
        free(pt);
    }
    j_payload(e);
    fputs(last ? "\n    }\n" : "\n    },\n", js);
    fv_wipe(key, sizeof key);
    fv_env_clear(&p);
}

static void j_attachment(const struct att *a, int last)
{
    unsigned char h[FV_HASH_BYTES];
    char file[128];

    fputs("    {\n", js);
    j_key(6, "name");
    j_cstr(a->name);
    fputs(",\n", js);
    j_key(6, "key");
    j_hex(a->key, FV_KEY_BYTES);
    fprintf(js, ",\n      \"size\": %zu,\n      \"chunk\": %u,\n      \"padded\": %d,\n",
            a->size, (unsigned)FV_CHUNK_BYTES, a->padded);
    if (a->rule) {
        j_key(6, "plaintext_rule");
        j_cstr(a->rule);
        fputs(",\n", js);
    } else {
        j_key(6, "plaintext_hex");
        j_hex(a->plain, a->size);
        fputs(",\n", js);
    }
    fv_hash(h, a->plain, a->size);
    j_key(6, "plaintext_blake2b256");
    j_hex(h, sizeof h);
    fputs(",\n", js);
    j_key(6, "chunks");
    fputc('[', js);
    for (size_t i = 0; i < a->nchunks; i++) {
        unsigned char nonce[FV_NONCE_BYTES] = {0};
        put_le(nonce, i, 8);
        snprintf(file, sizeof file, "chunk-%.*s-%zu.bin",
                 (int)strcspn(a->name, "."), a->name, i);
        write_out(file, a->ct[i], a->ctlen[i]);
        fputs(i ? ",\n        {" : "\n        {", js);
        j_key(0, "file");
        j_cstr(file);
        fprintf(js, ", \"index\": %zu, \"bytes\": %zu, ", i, a->ctlen[i]);
        j_key(0, "nonce");
        j_hex(nonce, sizeof nonce);
        fputs(", ", js);
        j_key(0, "hash");
        j_hex(a->hash[i], 32);
        fputc('}', js);
    }
    fputs(a->nchunks ? "\n      ]\n" : "]\n", js);
    fputs(last ? "    }\n" : "    },\n", js);
}

int main(int argc, char **argv)
{
    static const char statement[] =
        "진술서: 2019년 3월 두만강을 건너 연길로 갔습니다. "
        "(Statement: I crossed the Tumen River to Yanji in March 2019.)\n";
    static const char narrative1[] =
        "2019년 3월, 새벽 두 시에 두만강을 건넜습니다. 물은 허리까지 찼고 "
        "매우 차가웠습니다.\n"
        "안내인은 연길의 한 아파트로 우리를 데려갔습니다.\n"
        "(Interview recorded with consent; names withheld.)";
    static const char narrative2[] =
        "2019년 3월, 새벽 두 시에 두만강을 건넜습니다. 물은 허리까지 찼고 "
        "매우 차가웠습니다.\n"
        "안내인은 연길의 한 아파트로 우리를 데려갔습니다. 그곳에서 닷새를 "
        "기다렸습니다.\n"
        "(Interview recorded with consent; names withheld.)";
    struct device d;
    unsigned char org_pk[32], org_sk[32];
    struct att a_statement, a_interview, a_empty, a_legacy;
    struct att *g_atts[1], *r_atts[4], *c_atts[1];
    struct env g, r, c, t, early, grant;
    struct stat sb;
    unsigned char parents[2][32];
    const int64_t created = 1718000000; /* 2024-06-10T06:13:20Z */
    int force = 0;

    if (argc == 3 && strcmp(argv[1], "--force") == 0) {
        force = 1;
        outdir = argv[2];
    } else if (argc == 2) {
        outdir = argv[1];
    } else {
        fprintf(stderr, "usage: make_vectors [--force] DIR\n");
        return 2;
    }
    {
        char path[1024];
        snprintf(path, sizeof path, "%s/vectors.json", outdir);
        if (!force && stat(path, &sb) == 0)
            die("vectors exist: the committed files are the vectors; "
                "use --force only to replace all of them");
    }
    must(fv_crypto_init(), "fv_crypto_init");
    memset(&g, 0, sizeof g);
    memset(&r, 0, sizeof r);
    memset(&c, 0, sizeof c);
    memset(&t, 0, sizeof t);
    memset(&early, 0, sizeof early);
    memset(&grant, 0, sizeof grant);

    make_device(&d);
    fv_box_keypair(org_pk, org_sk);

    memset(&a_statement, 0, sizeof a_statement);
    a_statement.name = "statement.txt";
    a_statement.plain = (unsigned char *)statement;
    a_statement.size = strlen(statement);
    a_statement.padded = 1;
    encrypt_att(&a_statement);
    memset(&a_interview, 0, sizeof a_interview);
    a_interview.name = "interview.bin";
    a_interview.size = FV_CHUNK_BYTES + 1000;
    a_interview.plain = xmalloc(a_interview.size);
    for (size_t i = 0; i < a_interview.size; i++)
        a_interview.plain[i] = (unsigned char)(7 * i + 3);
    a_interview.rule = "byte i is (7 * i + 3) mod 256, for i in 0 .. size-1";
    a_interview.padded = 1;
    encrypt_att(&a_interview);
    memset(&a_empty, 0, sizeof a_empty);
    a_empty.name = "empty.txt";
    a_empty.plain = (unsigned char *)"";
    a_empty.size = 0;
    a_empty.padded = 1; /* as the library writes it: no chunk to pad */
    encrypt_att(&a_empty);
    /* An attachment written by format 1 (unpadded), kept by a format 2
     * revision: no "padded" key, its last chunk exactly its bytes. */
    memset(&a_legacy, 0, sizeof a_legacy);
    a_legacy.name = "legacy.txt";
    a_legacy.plain = (unsigned char *)"format 1 attachment, kept unpadded\n";
    a_legacy.size = strlen((const char *)a_legacy.plain);
    encrypt_att(&a_legacy);

    /* Genesis: a new testimony with one small attachment. */
    {
        fv_field f[] = {
            {"place", "연길 (Yanji), 中国"},
            {"language", "ko"},
            {"interviewee", "K-17"},
            {"consent", "legal-use-only"},
            {"면담자", "W-03"},
        };
        const char *tags[] = {"border", "탈북", "2019", "detention", "border"};
        g.name = "genesis";
        g_atts[0] = &a_statement;
        g.atts = g_atts;
        g.natts = 1;
        g.payload = revision_payload(&g.payload_len, "증언 K-17: 두만강 도하",
                                     narrative1, f, 5, tags, 5, created, created,
                                     g.atts, g.natts);
        build(&g, &d, org_pk, FV_ENV_REVISION, NULL, NULL, 0);
    }
    /* A revision: narrative edited, a field added, two attachments added
     * (one of two chunks, one empty); the first attachment is kept with its
     * key and chunk, and so is an unpadded one of format 1. */
    {
        fv_field f[] = {
            {"place", "연길 (Yanji), 中国"},
            {"language", "ko"},
            {"interviewee", "K-17"},
            {"consent", "legal-use-only"},
            {"면담자", "W-03"},
            {"reviewed", "no"},
        };
        const char *tags[] = {"2019", "border", "detention", "탈북"};
        r.name = "revision";
        r_atts[0] = &a_statement;
        r_atts[1] = &a_interview;
        r_atts[2] = &a_empty;
        r_atts[3] = &a_legacy;
        r.atts = r_atts;
        r.natts = 4;
        r.payload = revision_payload(&r.payload_len, "증언 K-17: 두만강 도하",
                                     narrative2, f, 6, tags, 4, created,
                                     created + 3600, r.atts, r.natts);
        memcpy(parents[0], g.id, 32);
        build(&r, &d, org_pk, FV_ENV_REVISION, g.id,
              (const unsigned char(*)[32])parents, 1);
    }
    /* A concurrent revision of the genesis: the record now has two heads. */
    {
        fv_field f[] = {
            {"place", "연길 (Yanji), 中国"},
            {"language", "ko"},
            {"interviewee", "K-17"},
            {"consent", "legal-use-only"},
            {"면담자", "W-03"},
        };
        const char *tags[] = {"2019", "border", "detention", "탈북", "urgent"};
        c.name = "concurrent";
        c_atts[0] = &a_statement;
        c.atts = c_atts;
        c.natts = 1;
        c.payload = revision_payload(&c.payload_len,
                                     "증언 K-17: 두만강 도하 (검토 필요)",
                                     narrative1, f, 5, tags, 5, created,
                                     created + 7200, c.atts, c.natts);
        memcpy(parents[0], g.id, 32);
        build(&c, &d, org_pk, FV_ENV_REVISION, g.id,
              (const unsigned char(*)[32])parents, 1);
    }
    /* The tombstone names both heads (given unsorted; stored sorted). */
    {
        t.name = "tombstone";
        must(fv_tombstone_encode(&t.payload, &t.payload_len, created + 10800),
             "fv_tombstone_encode");
        if (memcmp(r.id, c.id, 32) > 0) {
            memcpy(parents[0], r.id, 32);
            memcpy(parents[1], c.id, 32);
        } else {
            memcpy(parents[0], c.id, 32);
            memcpy(parents[1], r.id, 32);
        }
        build(&t, &d, org_pk, FV_ENV_TOMBSTONE, g.id,
              (const unsigned char(*)[32])parents, 2);
    }

    /* A record written before the device knew the organisation's key
     * (sealed to the device alone), and the key grant written when it
     * learnt it: the grant carries the record's content key to the
     * organisation, without touching the record's bytes. */
    {
        fv_field f[] = {{"language", "ko"}, {"interviewee", "K-18"}};
        const char *tags[] = {"pre-enrollment"};
        unsigned char key[FV_KEY_BYTES];
        fv_env p;
        early.name = "early";
        early.device_only = 1;
        early.payload = revision_payload(&early.payload_len, "등록 전 기록",
                                         "오프라인으로 기록함.", f, 2, tags, 1,
                                         created - 86400, created - 86400, NULL, 0);
        build(&early, &d, org_pk, FV_ENV_REVISION, NULL, NULL, 0);
        must(fv_env_parse(&p, early.bytes, early.len), "fv_env_parse");
        must(fv_seal_open(key, p.recipient_seal[0], FV_KEY_BYTES + FV_SEAL_BYTES,
                          d.box_pk, d.box_sk), "fv_seal_open");
        fv_env_clear(&p);
        grant.name = "grant";
        grant.org_only = 1;
        grant.content_key = key;
        /* The grant's payload: {"time": when it was written}. */
        must(fv_tombstone_encode(&grant.payload, &grant.payload_len, created + 60),
             "fv_tombstone_encode");
        memcpy(parents[0], early.id, 32);
#ifdef FV_ENV_GRANT
        build(&grant, &d, org_pk, FV_ENV_GRANT, early.id,
              (const unsigned char(*)[32])parents, 1);
#endif
        fv_wipe(key, sizeof key);
        grant.content_key = NULL;
    }

    write_out("envelope-genesis.cbor", g.bytes, g.len);
    write_out("envelope-revision.cbor", r.bytes, r.len);
    write_out("envelope-concurrent.cbor", c.bytes, c.len);
    write_out("envelope-tombstone.cbor", t.bytes, t.len);
    write_out("envelope-early.cbor", early.bytes, early.len);
    if (grant.bytes)
        write_out("envelope-grant.cbor", grant.bytes, grant.len);
    write_out("vault.key", d.kf, sizeof d.kf);

    {
        char path[1024];
        snprintf(path, sizeof path, "%s/vectors.json", outdir);
        if (!(js = fopen(path, "w")))
            die("cannot write vectors.json");
    }
    fputs("{\n", js);
    j_key(2, "about");
    j_cstr("FieldVault format 2 test vectors (docs/FORMAT.md). Made once by "
           "tests/make_vectors.c with the library's own code; the files are "
           "the vectors. Every key here is a published TEST key: never use "
           "one for real data. Hex is lowercase; *.cbor and *.bin files are "
           "raw bytes.");
    fputs(",\n", js);

    j_key(2, "key_commitment");
    fputs("{\n", js);
    j_key(4, "label");
    j_cstr(COMMIT_LABEL);
    fputs(",\n", js);
    j_key(4, "label_hex");
    j_hex((const unsigned char *)COMMIT_LABEL, strlen(COMMIT_LABEL));
    fputs(",\n", js);
    j_key(4, "rule");
    j_cstr("commit = BLAKE2b-256 (crypto_generichash, 32-byte output) keyed "
           "with the 32-byte content key, over the 28 label bytes");
    fputs("\n  },\n", js);

    j_key(2, "keyfile");
    fputs("{\n", js);
    j_key(4, "file");
    j_cstr("vault.key");
    fputs(",\n", js);
    j_key(4, "passphrase");
    j_cstr(PASSPHRASE);
    fputs(",\n", js);
    j_key(4, "passphrase_hex");
    j_hex((const unsigned char *)PASSPHRASE, strlen(PASSPHRASE));
    fputs(",\n", js);
    j_key(4, "hex");
    j_hex(d.kf, sizeof d.kf);
    fprintf(js, ",\n    \"format_version\": %u,\n    \"alg\": %u,\n"
                "    \"opslimit\": %llu,\n    \"memlimit\": %llu,\n",
            (unsigned)get_le(d.kf + 8, 4), (unsigned)get_le(d.kf + 12, 4),
            (unsigned long long)get_le(d.kf + 16, 8),
            (unsigned long long)get_le(d.kf + 24, 8));
    j_key(4, "salt");
    j_hex(d.kf + 32, 16);
    fputs(",\n", js);
    j_key(4, "nonce");
    j_hex(d.kf + 48, 24);
    fputs(",\n", js);
    j_key(4, "wrapping_key");
    j_hex(d.wrapping_key, 32);
    fputs(",\n", js);
    j_key(4, "vault_key");
    j_hex(d.vault_key, 32);
    fputs("\n  },\n", js);

    j_key(2, "device");
    fputs("{\n", js);
    j_key(4, "sign_pk");
    j_hex(d.sign_pk, 32);
    fputs(",\n", js);
    j_key(4, "sign_sk");
    j_hex(d.sign_sk, 64);
    fputs(",\n", js);
    j_key(4, "box_pk");
    j_hex(d.box_pk, 32);
    fputs(",\n", js);
    j_key(4, "box_sk");
    j_hex(d.box_sk, 32);
    fputs(",\n", js);
    j_key(4, "devkey_subkey");
    j_hex(d.devkey_subkey, 32);
    fputs(",\n", js);
    j_key(4, "device_keys");
    j_hex(d.blob, sizeof d.blob);
    fputs("\n  },\n", js);

    j_key(2, "organisation");
    fputs("{\n", js);
    j_key(4, "box_pk");
    j_hex(org_pk, 32);
    fputs(",\n", js);
    j_key(4, "box_sk");
    j_hex(org_sk, 32);
    fputs("\n  },\n", js);

    j_key(2, "envelopes");
    fputs("{\n", js);
    j_envelope(&g, &d, org_pk, org_sk, 0);
    j_envelope(&r, &d, org_pk, org_sk, 0);
    j_envelope(&c, &d, org_pk, org_sk, 0);
    j_envelope(&t, &d, org_pk, org_sk, 0);
    j_envelope(&early, &d, org_pk, org_sk, grant.bytes == NULL);
    if (grant.bytes)
        j_envelope(&grant, &d, org_pk, org_sk, 1);
    fputs("  },\n", js);

    j_key(2, "attachments");
    fputs("[\n", js);
    j_attachment(&a_statement, 0);
    j_attachment(&a_interview, 0);
    j_attachment(&a_empty, 0);
    j_attachment(&a_legacy, 1);
    fputs("  ]\n}\n", js);
    if (fclose(js) != 0)
        die("cannot write vectors.json");
    fprintf(stderr, "make_vectors: wrote %s\n", outdir);

    free_att(&a_statement);
    free_att(&a_interview);
    free_att(&a_empty);
    free_att(&a_legacy);
    free(a_interview.plain);
    free_env(&g);
    free_env(&r);
    free_env(&c);
    free_env(&t);
    free_env(&early);
    free_env(&grant);
    fv_wipe(&d, sizeof d);
    fv_wipe(org_sk, sizeof org_sk);
    return 0;
}
