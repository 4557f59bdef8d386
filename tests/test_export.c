/* test_export.c - fv_export and fv_vault_verify on a real vault holding
 * hostile records: every format written and read back (JSON checked by a
 * small strict syntax reader here), output that appears only when complete
 * (cancel, failing writer, existing path), streaming (output flows before
 * the last record is visited), and verify catching tampered envelopes and
 * chunks written straight into the SQLite file. */
#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fieldvault.h"

static char root[256];
static const char PASS[] = "export test passphrase";
static const char TITLE[] = "=HYPERLINK(\"x\") <script>alert(1)</script> 증언, \"q\"";
static const char NARR[] = "line one, \"quoted\"\nline two <b>\t탈북\n=1+1";
static const char ATT[] = "..evil<x>\".png";
static const unsigned char PNG[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 1, 2, 3};

/* ---- a growing buffer, the write callback's target ---------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    int fail; /* make the writer fail */
} buf;

static int buf_write(const unsigned char *p, size_t n, void *payload)
{
    buf *b = payload;
    if (b->fail)
        return 1;
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

/* ---- a strict JSON syntax check ----------------------------------------- */

static const char *js_value(const char *s, int depth);

static const char *js_ws(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    return s;
}

static const char *js_string(const char *s)
{
    if (*s++ != '"')
        return NULL;
    while (*s != '"') {
        if ((unsigned char)*s < 0x20)
            return NULL; /* raw control characters are not JSON */
        if (*s == '\\') {
            s++;
            if (*s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
                        return NULL;
                s += 4;
            } else if (!*s || !strchr("\"\\/bfnrt", *s)) {
                return NULL;
            }
        }
        s++;
    }
    return s + 1;
}

static const char *js_value(const char *s, int depth)
{
    s = js_ws(s);
    if (depth > 32)
        return NULL;
    if (*s == '"')
        return js_string(s);
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        int obj = *s == '{';
        s = js_ws(s + 1);
        if (*s == close)
            return s + 1;
        for (;;) {
            if (obj) {
                if (!(s = js_string(js_ws(s))))
                    return NULL;
                s = js_ws(s);
                if (*s++ != ':')
                    return NULL;
            }
            if (!(s = js_value(s, depth + 1)))
                return NULL;
            s = js_ws(s);
            if (*s == close)
                return s + 1;
            if (*s++ != ',')
                return NULL;
        }
    }
    if (strncmp(s, "true", 4) == 0 || strncmp(s, "null", 4) == 0)
        return s + 4;
    if (strncmp(s, "false", 5) == 0)
        return s + 5;
    if (*s == '-' || (*s >= '0' && *s <= '9')) {
        s += *s == '-';
        while (*s >= '0' && *s <= '9')
            s++;
        return s;
    }
    return NULL;
}

static int json_ok(const char *s)
{
    s = js_value(s, 0);
    return s && *js_ws(s) == '\0';
}

/* ---- the vault ---------------------------------------------------------- */

struct src {
    const unsigned char *p;
    size_t n, off;
};

static long long src_read(unsigned char *b, size_t len, void *payload)
{
    struct src *s = payload;
    size_t k = s->n - s->off < len ? s->n - s->off : len;
    memcpy(b, s->p + s->off, k);
    s->off += k;
    return (long long)k;
}

static fv_vault *make_vault(const char *dir, unsigned char hostile[FV_ID_BYTES],
                            unsigned char plain[FV_ID_BYTES], int extra)
{
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field fields[] = {{"place", "Seoul, \"north\""}, {"formula", "=1+1"},
                         {"multi", "a\nb\\c"}};
    const char *tags[] = {"탈북", "@risk", "a,b"};
    struct src s = {PNG, sizeof PNG, 0};
    fv_attachment_source att = {ATT, NULL, src_read, &s};
    fv_vault *v = NULL;
    char title[64];

    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, PASS, strlen(PASS), &o), FV_OK);
    in.title = TITLE;
    in.narrative = NARR;
    in.narrative_len = strlen(NARR);
    in.fields = fields;
    in.nfields = 3;
    in.tags = tags;
    in.ntags = 3;
    in.attachments = &att;
    in.nattachments = 1;
    CHECK_EQ(fv_record_add(v, hostile, &in), FV_OK);
    fv_record_input p = FV_RECORD_INPUT_INIT;
    p.title = "plain";
    CHECK_EQ(fv_record_add(v, plain, &p), FV_OK);
    fv_record_input e = FV_RECORD_INPUT_INIT;
    fv_field f = {"status", "edited"};
    e.fields = &f;
    e.nfields = 1;
    CHECK_EQ(fv_record_edit(v, NULL, plain, &e), FV_OK);
    for (int i = 0; i < extra; i++) {
        fv_record_input x = FV_RECORD_INPUT_INIT;
        static char narr[2000];
        memset(narr, 'n', sizeof narr - 1);
        snprintf(title, sizeof title, "bulk %d", i);
        x.title = title;
        x.narrative = narr;
        x.narrative_len = sizeof narr - 1;
        CHECK_EQ(fv_record_add(v, NULL, &x), FV_OK);
    }
    return v;
}

/* Entries of a directory (but . and ..). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        return -1;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    p[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return p;
}

static int export_to(fv_vault *v, int format, const char *path,
                     const fv_filter *filter, uint64_t *count)
{
    fv_export_options o = FV_EXPORT_OPTIONS_INIT;
    o.format = format;
    o.path = path;
    o.filter = filter;
    return fv_export(v, &o, count);
}

/* ---- tests -------------------------------------------------------------- */

static void test_json_and_csv(fv_vault *v, const unsigned char hostile[FV_ID_BYTES])
{
    fv_export_options o = FV_EXPORT_OPTIONS_INIT;
    buf b = {0};
    uint64_t count = 0;
    char hex[FV_ID_HEX_BYTES];

    o.format = FV_EXPORT_JSON;
    o.write = buf_write;
    o.write_payload = &b;
    CHECK_EQ(fv_export(v, &o, &count), FV_OK);
    CHECK_EQ(count, 2);
    CHECK(b.p && json_ok(b.p));
    CHECK(strstr(b.p, "\"record_count\": 2") != NULL);
    CHECK(strstr(b.p, "\"title\": \"=HYPERLINK(\\\"x\\\") <script>alert(1)</script> 증언, \\\"q\\\"\"") != NULL);
    CHECK(strstr(b.p, "\"narrative\": \"line one, \\\"quoted\\\"\\nline two <b>\\t탈북\\n=1+1\"") != NULL);
    CHECK(strstr(b.p, "\"multi\": \"a\\nb\\\\c\"") != NULL);
    CHECK(strstr(b.p, "\"name\": \"..evil<x>\\\".png\"") != NULL);
    CHECK(strstr(b.p, "\"state\": \"new\"") != NULL);
    fv_id_to_hex(hex, hostile);
    CHECK(strstr(b.p, hex) != NULL);
    /* Only the selected records. */
    fv_filter f = FV_FILTER_INIT;
    f.tag = "plain-no-such-tag";
    b.n = 0;
    CHECK_EQ(fv_export(v, (o.filter = &f, &o), &count), FV_OK);
    CHECK_EQ(count, 0);
    CHECK(json_ok(b.p) && strstr(b.p, "\"records\": []") != NULL);
    f.tag = NULL;
    f.ids = (const unsigned char(*)[FV_ID_BYTES])hostile;
    f.nids = 1;
    b.n = 0;
    CHECK_EQ(fv_export(v, &o, &count), FV_OK);
    CHECK_EQ(count, 1);
    CHECK(json_ok(b.p) && strstr(b.p, "plain") == NULL);
    /* A writer that fails: FV_EIO. */
    b.fail = 1;
    CHECK_EQ(fv_export(v, &o, &count), FV_EIO);
    b.fail = 0;

    /* CSV: header and two rows (CRLF outside quotes), formulas defused. */
    o.format = FV_EXPORT_CSV;
    o.filter = NULL;
    b.n = 0;
    CHECK_EQ(fv_export(v, &o, &count), FV_OK);
    CHECK_EQ(count, 2);
    int rows = 0, quoted = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.p[i] == '"')
            quoted = !quoted;
        else if (!quoted && b.p[i] == '\r' && b.p[i + 1] == '\n')
            rows++;
    }
    CHECK_EQ(rows, 3);
    CHECK(!quoted);
    CHECK(strstr(b.p, ",\"'=HYPERLINK(\"\"x\"\") <script>") != NULL);
    /* Tags and fields in canonical order (shorter first), one a line. */
    CHECK(strstr(b.p, ",\"a,b\n@risk\n탈북\",") != NULL);
    CHECK(strstr(b.p, ",\"multi=a\\nb\\\\c\nplace=Seoul, \"\"north\"\"\nformula==1+1\",") != NULL);
    CHECK(strstr(b.p, ",\"=") == NULL && strstr(b.p, ",\"+") == NULL &&
          strstr(b.p, ",\"@") == NULL);
    free(b.p);
}

static void test_html(fv_vault *v, const unsigned char hostile[FV_ID_BYTES])
{
    char path[512], p[700], hex[FV_ID_HEX_BYTES];
    uint64_t count;
    char *page;
    size_t n;

    snprintf(path, sizeof path, "%s/out/report", root);
    CHECK_EQ(export_to(v, FV_EXPORT_HTML, path, NULL, &count), FV_OK);
    CHECK_EQ(count, 2);
    CHECK_EQ(export_to(v, FV_EXPORT_HTML, path, NULL, &count), FV_EEXIST);
    fv_id_to_hex(hex, hostile);
    snprintf(p, sizeof p, "%s/records/%s.html", path, hex);
    page = slurp(p, NULL);
    CHECK(page != NULL);
    if (page) {
        CHECK(strstr(page, "<script") == NULL);
        CHECK(strstr(page, "&lt;script&gt;alert(1)&lt;/script&gt;") != NULL);
        CHECK(strstr(page, "http") == NULL || strstr(page, "http-equiv") != NULL);
        CHECK(strstr(page, "//") == NULL);
        CHECK(strstr(page, "..evil&lt;x&gt;&quot;.png") != NULL);
        CHECK(strstr(page, "<img src=\"../files/") != NULL);
    }
    free(page);
    /* The attachment under a sanitized name: exact bytes. */
    snprintf(p, sizeof p, "%s/files/%s/0-..evil_x__.png", path, hex);
    page = slurp(p, &n);
    CHECK(page && n == sizeof PNG && memcmp(page, PNG, n) == 0);
    free(page);
    snprintf(p, sizeof p, "%s/index.html", path);
    page = slurp(p, NULL);
    CHECK(page && strstr(page, "<svg") && strstr(page, "탈북") &&
          !strstr(page, "<script") && !strstr(page, "url("));
    free(page);
    snprintf(p, sizeof p, "%s/records", path);
    CHECK_EQ(count_entries(p), 2);
    CHECK_EQ(count_entries(path), 4); /* index.html style.css records files */
}

static void test_evidence(fv_vault *v)
{
    char path[512], p[700];
    uint64_t count;
    char *m;

    snprintf(path, sizeof path, "%s/out/evidence", root);
    CHECK_EQ(export_to(v, FV_EXPORT_EVIDENCE, path, NULL, &count), FV_OK);
    CHECK_EQ(count, 2);
    snprintf(p, sizeof p, "%s/envelopes", path);
    CHECK_EQ(count_entries(p), 3);
    snprintf(p, sizeof p, "%s/chunks", path);
    CHECK_EQ(count_entries(p), 1);
    snprintf(p, sizeof p, "%s/manifest.json", path);
    m = slurp(p, NULL);
    CHECK(m && json_ok(m) && strstr(m, "\"record_count\": 2"));
    /* Ciphertext only: nothing of the records in clear. */
    CHECK(m && !strstr(m, "HYPERLINK") && !strstr(m, "plain"));
    free(m);
    snprintf(p, sizeof p, "%s/README.txt", path);
    m = slurp(p, NULL);
    CHECK(m && strstr(m, "BLAKE2b-256") && strstr(m, "verify_evidence.py"));
    free(m);
}

struct cancel {
    uint64_t at;
    buf *b;
    size_t bytes_at_half;
};

static int cancel_cb(uint64_t done, uint64_t total, void *payload)
{
    struct cancel *c = payload;
    if (c->b && done == total / 2)
        c->bytes_at_half = c->b->n;
    return c->at && done >= c->at;
}

/* A canceled export leaves nothing behind, in any format. */
static void test_atomic(fv_vault *v)
{
    static const int formats[] = {FV_EXPORT_JSON, FV_EXPORT_CSV, FV_EXPORT_HTML,
                                  FV_EXPORT_EVIDENCE};
    char dir[512], path[600];
    struct cancel c = {1, NULL, 0};

    snprintf(dir, sizeof dir, "%s/atomic", root);
    CHECK_EQ(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < 4; i++) {
        fv_export_options o = FV_EXPORT_OPTIONS_INIT;
        snprintf(path, sizeof path, "%s/out%zu", dir, i);
        o.format = formats[i];
        o.path = path;
        o.progress = cancel_cb;
        o.progress_payload = &c;
        CHECK_EQ(fv_export(v, &o, NULL), FV_ECANCELED);
        CHECK_EQ(count_entries(dir), 0);
    }
    /* A file in the way: FV_EEXIST, and it is left alone. */
    snprintf(path, sizeof path, "%s/taken.json", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
    CHECK_EQ(export_to(v, FV_EXPORT_JSON, path, NULL, NULL), FV_EEXIST);
    CHECK_EQ(count_entries(dir), 1);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == 1);
}

/* Output flows while records are still being visited. */
static void test_streaming(void)
{
    char dir[512];
    unsigned char a[FV_ID_BYTES], b2[FV_ID_BYTES];
    buf b = {0};
    struct cancel c = {0, &b, 0};
    fv_export_options o = FV_EXPORT_OPTIONS_INIT;
    uint64_t count;

    snprintf(dir, sizeof dir, "%s/bulk", root);
    fv_vault *v = make_vault(dir, a, b2, 150);
    o.format = FV_EXPORT_JSON;
    o.write = buf_write;
    o.write_payload = &b;
    o.progress = cancel_cb;
    o.progress_payload = &c;
    CHECK_EQ(fv_export(v, &o, &count), FV_OK);
    CHECK_EQ(count, 152);
    CHECK(c.bytes_at_half > 0 && c.bytes_at_half < b.n);
    CHECK(json_ok(b.p));
    free(b.p);
    fv_vault_close(v);
}

struct issues {
    int n;
    int env_hits;
    const unsigned char *want;
};

static int issue_cb(const fv_verify_issue *is, void *payload)
{
    struct issues *s = payload;
    s->n++;
    if (is->envelope && memcmp(is->envelope, s->want, FV_ID_BYTES) == 0)
        s->env_hits++;
    CHECK(is->problem && *is->problem);
    return 0;
}

static void flip_blob(const char *db, const char *sql_get, const char *sql_put,
                      const unsigned char *key, int keylen)
{
    sqlite3 *d;
    sqlite3_stmt *st;
    unsigned char *copy = NULL;
    int n = 0;
    CHECK_EQ(sqlite3_open(db, &d), SQLITE_OK);
    CHECK_EQ(sqlite3_prepare_v2(d, sql_get, -1, &st, NULL), SQLITE_OK);
    if (key)
        sqlite3_bind_blob(st, 1, key, keylen, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_bytes(st, 1);
        copy = malloc((size_t)n + 32);
        memcpy(copy, sqlite3_column_blob(st, 1), (size_t)n);
        memcpy(copy + n, sqlite3_column_blob(st, 0), 32);
    }
    sqlite3_finalize(st);
    CHECK(copy != NULL);
    if (copy) {
        copy[n / 2] ^= 0x10;
        CHECK_EQ(sqlite3_prepare_v2(d, sql_put, -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_blob(st, 1, copy, n, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, copy + n, 32, SQLITE_STATIC);
        CHECK_EQ(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
    free(copy);
    sqlite3_close(d);
}

static void test_verify(void)
{
    char dir[512], db[600];
    unsigned char hostile[FV_ID_BYTES], plain[FV_ID_BYTES];
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    struct issues s = {0, 0, hostile};

    snprintf(dir, sizeof dir, "%s/verify", root);
    fv_vault *v = make_vault(dir, hostile, plain, 0);
    CHECK_EQ(fv_vault_verify(v, &rep, issue_cb, &s), FV_OK);
    CHECK_EQ(rep.envelopes, 3);
    CHECK_EQ(rep.chunks, 1);
    CHECK_EQ(rep.failures, 0);
    CHECK_EQ(s.n, 0);
    fv_vault_close(v);

    snprintf(db, sizeof db, "%s/vault.db", dir);
    flip_blob(db, "SELECT id, bytes FROM envelope WHERE id = ?1",
              "UPDATE envelope SET bytes = ?1 WHERE id = ?2", hostile, FV_ID_BYTES);
    flip_blob(db, "SELECT hash, data FROM chunk", "UPDATE chunk SET data = ?1 WHERE hash = ?2",
              NULL, 0);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_vault_verify(v, &rep, issue_cb, &s), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 2);
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.env_hits, 1);
    CHECK(strstr(fv_vault_errmsg(v), "2 checks failed") != NULL);
    /* An export refuses a vault with a tampered record: nothing written. */
    char out[600];
    snprintf(out, sizeof out, "%s/tampered.json", root);
    CHECK_EQ(export_to(v, FV_EXPORT_JSON, out, NULL, NULL), FV_ECORRUPT);
    CHECK(access(out, F_OK) != 0);
    fv_vault_close(v);

    /* A revision whose parent is gone: the link is reported. */
    sqlite3 *d;
    sqlite3_stmt *st;
    CHECK_EQ(sqlite3_open(db, &d), SQLITE_OK);
    CHECK_EQ(sqlite3_prepare_v2(d, "DELETE FROM envelope WHERE id = ?1", -1, &st, NULL),
             SQLITE_OK);
    sqlite3_bind_blob(st, 1, plain, FV_ID_BYTES, SQLITE_STATIC);
    CHECK_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(d);
    memset(&s, 0, sizeof s);
    s.want = hostile;
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_vault_verify(v, &rep, issue_cb, &s), FV_ECORRUPT);
    CHECK_EQ(rep.envelopes, 2);
    CHECK_EQ(rep.failures, 3);
    CHECK_EQ(s.n, 3);
    CHECK_EQ(export_to(v, FV_EXPORT_JSON, out, NULL, NULL), FV_ECORRUPT);
    CHECK(access(out, F_OK) != 0);
    fv_vault_close(v);
}

/* Evidence never lists a chunk that does not hash to its name: a vault
 * whose only damage is one attachment chunk exports no evidence. */
static void test_evidence_bad_chunk(void)
{
    char dir[512], db[600], out[600];
    unsigned char hostile[FV_ID_BYTES], plain[FV_ID_BYTES];
    uint64_t count = 7;

    snprintf(dir, sizeof dir, "%s/badchunk", root);
    fv_vault *v = make_vault(dir, hostile, plain, 0);
    fv_vault_close(v);
    snprintf(db, sizeof db, "%s/vault.db", dir);
    flip_blob(db, "SELECT hash, data FROM chunk", "UPDATE chunk SET data = ?1 WHERE hash = ?2",
              NULL, 0);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    snprintf(out, sizeof out, "%s/badchunk-evidence", root);
    CHECK_EQ(export_to(v, FV_EXPORT_EVIDENCE, out, NULL, &count), FV_ECORRUPT);
    CHECK_EQ(count, 0);
    CHECK(access(out, F_OK) != 0);
    CHECK(strstr(fv_vault_errmsg(v), "verify") != NULL);
    /* The envelopes themselves are sound: a JSON export still works. */
    snprintf(out, sizeof out, "%s/badchunk.json", root);
    CHECK_EQ(export_to(v, FV_EXPORT_JSON, out, NULL, &count), FV_OK);
    CHECK_EQ(count, 2);
    fv_vault_close(v);
}

int main(void)
{
    char dir[512], out[600];
    unsigned char hostile[FV_ID_BYTES], plain[FV_ID_BYTES];

    snprintf(root, sizeof root, "/tmp/fv-test-export-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    snprintf(dir, sizeof dir, "%s/vault", root);
    snprintf(out, sizeof out, "%s/out", root);
    mkdir(out, 0700);
    fv_vault *v = make_vault(dir, hostile, plain, 0);
    test_json_and_csv(v, hostile);
    test_html(v, hostile);
    test_evidence(v);
    test_atomic(v);
    fv_vault_close(v);
    test_streaming();
    test_verify();
    test_evidence_bad_chunk();
    if (check_failures == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", root);
    }
    return check_summary("test_export");
}
