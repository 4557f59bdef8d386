/* test_export.c - the exports on a real vault holding hostile records: the
 * reports of report/ (report_export: JSON, CSV, HTML) and the core's
 * evidence export (fv_export), every format written and read back (JSON
 * checked by a small strict syntax reader here), device names and players
 * in the HTML, output that appears only when complete (cancel, existing
 * path, an options struct of an earlier layout), streaming (output flows
 * before the last record is visited), and verify catching tampered
 * envelopes and chunks written straight into the SQLite file. */
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
#include "report.h"

static char root[256];
static const char PASS[] = "export test passphrase";
static const char TITLE[] = "=HYPERLINK(\"x\") <script>alert(1)</script> 증언, \"q\"";
static const char NARR[] = "line one, \"quoted\"\nline two <b>\t탈북\n=1+1";
static const char ATT[] = "..evil<x>\".png";
static const unsigned char PNG[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 1, 2, 3};

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

/* The reports through report_export, the evidence through fv_export. */
#define EVIDENCE 4

static int export_with(fv_vault *v, int format, const char *path,
                       const fv_filter *filter, uint64_t *count,
                       const report_devices *devs)
{
    if (format == EVIDENCE) {
        fv_export_options o = FV_EXPORT_OPTIONS_INIT;
        o.path = path;
        o.filter = filter;
        return fv_export(v, count, &o);
    }
    report_options ro;
    char msg[REPORT_MSG_BYTES];
    memset(&ro, 0, sizeof ro);
    ro.format = format;
    ro.path = path;
    ro.filter = filter;
    ro.devices = devs;
    int rc = report_export(v, count, msg, &ro);
    CHECK((rc == FV_OK) == (msg[0] == '\0'));
    return rc;
}

static int export_to(fv_vault *v, int format, const char *path,
                     const fv_filter *filter, uint64_t *count)
{
    return export_with(v, format, path, filter, count, NULL);
}

/* ---- tests -------------------------------------------------------------- */

static void test_json_and_csv(fv_vault *v, const unsigned char hostile[FV_ID_BYTES])
{
    uint64_t count = 0;
    char hex[FV_ID_HEX_BYTES], path[600];
    char *p;
    size_t n;

    snprintf(path, sizeof path, "%s/out/all.json", root);
    CHECK_EQ(export_to(v, REPORT_JSON, path, NULL, &count), FV_OK);
    CHECK_EQ(count, 2);
    p = slurp(path, NULL);
    CHECK(p && json_ok(p));
    CHECK(strstr(p, "\"fieldvault_export\": 2") != NULL);
    CHECK(strstr(p, "\"record_count\": 2") != NULL);
    CHECK(strstr(p, "\"title\": \"=HYPERLINK(\\\"x\\\") <script>alert(1)</script> 증언, \\\"q\\\"\"") != NULL);
    CHECK(strstr(p, "\"narrative\": \"line one, \\\"quoted\\\"\\nline two <b>\\t탈북\\n=1+1\"") != NULL);
    CHECK(strstr(p, "\"multi\": \"a\\nb\\\\c\"") != NULL);
    CHECK(strstr(p, "\"name\": \"..evil<x>\\\".png\"") != NULL);
    CHECK(strstr(p, "\"state\": \"new\"") != NULL);
    /* show --json's members: revisions (the edited record has two), heads,
     * notes. */
    CHECK(strstr(p, "\"revisions\": [") != NULL && strstr(p, "\"heads\": [\"") != NULL);
    CHECK(strstr(p, "\"kind\": \"revision\"") != NULL && strstr(p, "\"notes\": []") != NULL);
    fv_id_to_hex(hex, hostile);
    CHECK(strstr(p, hex) != NULL);
    free(p);
    CHECK_EQ(export_to(v, REPORT_JSON, path, NULL, &count), FV_EEXIST);
    /* Only the selected records. */
    fv_filter f = FV_FILTER_INIT;
    f.tag = "plain-no-such-tag";
    snprintf(path, sizeof path, "%s/out/none.json", root);
    CHECK_EQ(export_to(v, REPORT_JSON, path, &f, &count), FV_OK);
    CHECK_EQ(count, 0);
    p = slurp(path, NULL);
    CHECK(p && json_ok(p) && strstr(p, "\"records\": []") != NULL);
    free(p);
    f.tag = NULL;
    f.ids = (const unsigned char(*)[FV_ID_BYTES])hostile;
    f.nids = 1;
    snprintf(path, sizeof path, "%s/out/one.json", root);
    CHECK_EQ(export_to(v, REPORT_JSON, path, &f, &count), FV_OK);
    CHECK_EQ(count, 1);
    p = slurp(path, NULL);
    CHECK(p && json_ok(p) && strstr(p, "plain") == NULL);
    free(p);
    /* A directory that cannot be written: FV_EIO, nothing left. */
    snprintf(path, sizeof path, "%s/out/missing/x.json", root);
    CHECK_EQ(export_to(v, REPORT_JSON, path, NULL, &count), FV_EIO);

    /* CSV: header and two rows (CRLF outside quotes), formulas defused. */
    snprintf(path, sizeof path, "%s/out/all.csv", root);
    CHECK_EQ(export_to(v, REPORT_CSV, path, NULL, &count), FV_OK);
    CHECK_EQ(count, 2);
    p = slurp(path, &n);
    CHECK(p != NULL);
    int rows = 0, quoted = 0;
    for (size_t i = 0; p && i < n; i++) {
        if (p[i] == '"')
            quoted = !quoted;
        else if (!quoted && p[i] == '\r' && p[i + 1] == '\n')
            rows++;
    }
    CHECK_EQ(rows, 3);
    CHECK(!quoted);
    CHECK(p && memcmp(p, "\xef\xbb\xbf", 3) == 0);
    CHECK(p && strstr(p, ",\"'=HYPERLINK(\"\"x\"\") <script>") != NULL);
    /* Tags and fields in canonical order (shorter first), one a line. */
    CHECK(p && strstr(p, ",\"a,b\n@risk\n탈북\",") != NULL);
    CHECK(p && strstr(p, ",\"multi=a\\nb\\\\c\nplace=Seoul, \"\"north\"\"\nformula==1+1\",") != NULL);
    CHECK(p && strstr(p, ",\"=") == NULL && strstr(p, ",\"+") == NULL &&
          strstr(p, ",\"@") == NULL);
    free(p);
}

static void test_html(fv_vault *v, const unsigned char hostile[FV_ID_BYTES])
{
    char path[512], p[700], hex[FV_ID_HEX_BYTES];
    uint64_t count;
    char *page;
    size_t n;
    unsigned char me[FV_ID_BYTES];
    /* The vault's own device named as the server would name it, with
     * markup in the name: shown escaped in place of the id. */
    report_device dev;
    report_devices devs = {&dev, 1, 1, FV_OK, ""};
    fv_vault_device_id(v, me);
    memset(&dev, 0, sizeof dev);
    memcpy(dev.id, me, FV_ID_BYTES);
    dev.name = "Amina's <phone>";

    snprintf(path, sizeof path, "%s/out/report", root);
    CHECK_EQ(export_with(v, REPORT_HTML, path, NULL, &count, &devs), FV_OK);
    CHECK_EQ(count, 2);
    CHECK_EQ(export_to(v, REPORT_HTML, path, NULL, &count), FV_EEXIST);
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
        CHECK(strstr(page, "Amina&#39;s &lt;phone&gt;") != NULL);
        CHECK(strstr(page, "<phone>") == NULL);
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
    CHECK(page && strstr(page, "Amina&#39;s &lt;phone&gt;"));
    free(page);
    snprintf(p, sizeof p, "%s/records", path);
    CHECK_EQ(count_entries(p), 2);
    CHECK_EQ(count_entries(path), 4); /* index.html style.css records files */
}

/* Audio and video play in the page, as in the desk; without names the
 * device is its short id. */
static void test_html_media(void)
{
    char dir[512], path[600], p[700], hex[FV_ID_HEX_BYTES], dev[FV_ID_HEX_BYTES];
    unsigned char id[FV_ID_BYTES], me[FV_ID_BYTES];
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    struct src a = {PNG, sizeof PNG, 0}, b = {PNG, sizeof PNG, 0};
    fv_attachment_source att[] = {{"voice.ogg", NULL, src_read, &a},
                                  {"clip.webm", NULL, src_read, &b}};
    fv_vault *v = NULL;
    uint64_t count;
    char *page;

    snprintf(dir, sizeof dir, "%s/media", root);
    co.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, PASS, strlen(PASS), &co), FV_OK);
    in.title = "recorded";
    in.attachments = att;
    in.nattachments = 2;
    CHECK_EQ(fv_record_add(v, id, &in), FV_OK);
    snprintf(path, sizeof path, "%s/out/media", root);
    CHECK_EQ(export_to(v, REPORT_HTML, path, NULL, &count), FV_OK);
    fv_id_to_hex(hex, id);
    fv_vault_device_id(v, me);
    fv_id_to_hex(dev, me);
    snprintf(p, sizeof p, "%s/records/%s.html", path, hex);
    page = slurp(p, NULL);
    char want[400];
    snprintf(want, sizeof want, "<audio controls preload=\"metadata\" src=\"../files/%s/0-voice.ogg\"", hex);
    CHECK(page && strstr(page, want));
    snprintf(want, sizeof want, "<video controls preload=\"metadata\" src=\"../files/%s/1-clip.webm\"", hex);
    CHECK(page && strstr(page, want));
    snprintf(want, sizeof want, "<span class=\"id\" title=\"%s\">%.12s</span>", dev, dev);
    CHECK(page && strstr(page, want));
    CHECK(page && !strstr(page, "<script"));
    free(page);
    fv_vault_close(v);
}

static void test_evidence(fv_vault *v)
{
    char path[512], p[700];
    uint64_t count;
    char *m;

    snprintf(path, sizeof path, "%s/out/evidence", root);
    CHECK_EQ(export_to(v, EVIDENCE, path, NULL, &count), FV_OK);
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
    /* An options struct of an earlier layout is refused, nothing written. */
    fv_export_options o = FV_EXPORT_OPTIONS_INIT;
    snprintf(path, sizeof path, "%s/out/evidence-v2", root);
    o.version = 2;
    o.path = path;
    CHECK_EQ(fv_export(v, &count, &o), FV_EINVAL);
    CHECK(access(path, F_OK) != 0);
}

struct cancel {
    uint64_t at;
    const char *dir;     /* where the temporary is growing */
    long long bytes_at_half;
};

/* The size of the temporary output in c->dir. */
static long long temp_size(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    long long size = -1;
    char p[800];
    struct stat sb;
    while (d && (de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".fvtmp-")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            if (stat(p, &sb) == 0)
                size = (long long)sb.st_size;
        }
    if (d)
        closedir(d);
    return size;
}

static int cancel_cb(uint64_t done, uint64_t total, void *payload)
{
    struct cancel *c = payload;
    if (c->dir && done == total / 2)
        c->bytes_at_half = temp_size(c->dir);
    return c->at && done >= c->at;
}

/* A canceled export leaves nothing behind, in any format. */
static void test_atomic(fv_vault *v)
{
    static const int formats[] = {REPORT_JSON, REPORT_CSV, REPORT_HTML, EVIDENCE};
    char dir[512], path[600], msg[REPORT_MSG_BYTES];
    struct cancel c = {1, NULL, 0};

    snprintf(dir, sizeof dir, "%s/atomic", root);
    CHECK_EQ(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/out%zu", dir, i);
        if (formats[i] == EVIDENCE) {
            fv_export_options o = FV_EXPORT_OPTIONS_INIT;
            o.path = path;
            o.progress = cancel_cb;
            o.progress_payload = &c;
            CHECK_EQ(fv_export(v, NULL, &o), FV_ECANCELED);
        } else {
            report_options ro;
            memset(&ro, 0, sizeof ro);
            ro.format = formats[i];
            ro.path = path;
            ro.progress = cancel_cb;
            ro.progress_payload = &c;
            CHECK_EQ(report_export(v, NULL, msg, &ro), FV_ECANCELED);
            CHECK(strcmp(msg, "canceled") == 0);
        }
        CHECK_EQ(count_entries(dir), 0);
    }
    /* A file in the way: FV_EEXIST, and it is left alone. */
    snprintf(path, sizeof path, "%s/taken.json", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
    CHECK_EQ(export_to(v, REPORT_JSON, path, NULL, NULL), FV_EEXIST);
    CHECK_EQ(count_entries(dir), 1);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == 1);
}

/* Output flows while records are still being visited. */
static void test_streaming(void)
{
    char dir[512], out[512], path[600], msg[REPORT_MSG_BYTES];
    unsigned char a[FV_ID_BYTES], b2[FV_ID_BYTES];
    report_options ro;
    uint64_t count;
    struct stat sb;

    snprintf(dir, sizeof dir, "%s/bulk", root);
    snprintf(out, sizeof out, "%s/bulk-out", root);
    CHECK_EQ(mkdir(out, 0700), 0);
    struct cancel c = {0, out, 0};
    fv_vault *v = make_vault(dir, a, b2, 150);
    snprintf(path, sizeof path, "%s/bulk.json", out);
    memset(&ro, 0, sizeof ro);
    ro.format = REPORT_JSON;
    ro.path = path;
    ro.progress = cancel_cb;
    ro.progress_payload = &c;
    CHECK_EQ(report_export(v, &count, msg, &ro), FV_OK);
    CHECK_EQ(count, 152);
    CHECK(stat(path, &sb) == 0);
    CHECK(c.bytes_at_half > 0 && c.bytes_at_half < (long long)sb.st_size);
    char *p = slurp(path, NULL);
    CHECK(p && json_ok(p));
    free(p);
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
    fv_verify_report rep;
    struct issues s = {0, 0, hostile};

    snprintf(dir, sizeof dir, "%s/verify", root);
    fv_vault *v = make_vault(dir, hostile, plain, 0);
    CHECK_EQ(fv_vault_verify(v, issue_cb, &s, &rep), FV_OK);
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
    CHECK_EQ(fv_vault_verify(v, issue_cb, &s, &rep), FV_ECORRUPT);
    CHECK_EQ(rep.failures, 2);
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.env_hits, 1);
    CHECK(strstr(fv_vault_errmsg(v), "2 checks failed") != NULL);
    /* An export refuses a vault with a tampered record: nothing written. */
    char out[600];
    snprintf(out, sizeof out, "%s/tampered.json", root);
    CHECK_EQ(export_to(v, REPORT_JSON, out, NULL, NULL), FV_ECORRUPT);
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
    CHECK_EQ(fv_vault_verify(v, issue_cb, &s, &rep), FV_ECORRUPT);
    CHECK_EQ(rep.envelopes, 2);
    CHECK_EQ(rep.failures, 3);
    CHECK_EQ(s.n, 3);
    CHECK_EQ(export_to(v, REPORT_JSON, out, NULL, NULL), FV_ECORRUPT);
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
    CHECK_EQ(export_to(v, EVIDENCE, out, NULL, &count), FV_ECORRUPT);
    CHECK_EQ(count, 0);
    CHECK(access(out, F_OK) != 0);
    CHECK(strstr(fv_vault_errmsg(v), "verify") != NULL);
    /* The envelopes themselves are sound: a JSON export still works. */
    snprintf(out, sizeof out, "%s/badchunk.json", root);
    CHECK_EQ(export_to(v, REPORT_JSON, out, NULL, &count), FV_OK);
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
    test_html_media();
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
