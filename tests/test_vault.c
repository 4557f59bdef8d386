/* test_vault.c - the public vault API: lifecycle, records, revisions,
 * attachments, tampering, limits, crypto-shredding. Runs on real SQLite files
 * in a temporary directory. */
#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fieldvault.h"
#include "fieldvault_sync.h"
#include "store_db.h"

static char root[256];
static int seq;

static const char PASS[] = "correct horse battery staple";

/* A fresh, not yet existing vault directory (names live until exit). */
static const char *new_dir(void)
{
    static char dirs[64][320];
    char *dir = dirs[++seq % 64];
    snprintf(dir, sizeof dirs[0], "%s/v%d", root, seq);
    return dir;
}

static fv_vault *create(const char *dir)
{
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, PASS, strlen(PASS), &o), FV_OK);
    return v;
}

static fv_vault *reopen(fv_vault *v, const char *dir)
{
    fv_vault_close(v);
    v = NULL;
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    return v;
}

static int add_simple(fv_vault *v, unsigned char id[FV_ID_BYTES],
                      const char *title, const char *narrative)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field f[2] = {{"place", "Yanji"}, {"interviewee", "W-017"}};
    const char *tags[] = {"detention", "border", "detention"};
    in.title = title;
    in.narrative = narrative;
    in.narrative_len = strlen(narrative);
    in.fields = f;
    in.nfields = 2;
    in.tags = tags;
    in.ntags = 3;
    return fv_record_add(v, id, &in);
}

static int count_cb(const fv_record *r, void *payload)
{
    (void)r;
    (*(int *)payload)++;
    return 0;
}

static int count_records(fv_vault *v, int *rc)
{
    int n = 0;
    *rc = fv_vault_list(v, count_cb, &n);
    return n;
}

/* Runs one SQL statement on a vault's database from outside the library. */
static int db_exec(const char *dir, const char *sql)
{
    char path[400];
    sqlite3 *db;
    int rc;
    snprintf(path, sizeof path, "%s/vault.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static long long db_count(const char *dir, const char *sql)
{
    char path[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;
    snprintf(path, sizeof path, "%s/vault.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void test_lifecycle(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir), *w = NULL;
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    unsigned char dev[FV_ID_BYTES], dev2[FV_ID_BYTES];

    o.kdf_profile = FV_KDF_TEST;
    CHECK(v != NULL);
    CHECK_EQ(fv_vault_get_device_id(v, dev), FV_OK);
    CHECK_EQ(fv_vault_create(&w, dir, PASS, strlen(PASS), &o), FV_EEXIST);
    CHECK(w == NULL);
    CHECK_EQ(fv_vault_create(&w, new_dir(), "", 0, &o), FV_EINVAL);
    v = reopen(v, dir);
    CHECK_EQ(fv_vault_get_device_id(v, dev2), FV_OK);
    CHECK(memcmp(dev, dev2, FV_ID_BYTES) == 0);
    CHECK_EQ(fv_vault_open(&w, dir, "wrong", 5), FV_EPASSPHRASE);
    CHECK(strcmp(fv_error_last(), "wrong passphrase") == 0);
    const char *none = new_dir();
    CHECK_EQ(fv_vault_open(&w, none, PASS, strlen(PASS)), FV_ENOVAULT);
    CHECK(strstr(fv_error_last(), "no vault at") && strstr(fv_error_last(), none));
    /* A success leaves the last failure's message in place. */
    CHECK_EQ(fv_vault_get_device_id(v, dev2), FV_OK);
    CHECK(strstr(fv_error_last(), "no vault at") != NULL);
    CHECK_EQ(fv_vault_create(&w, new_dir(), "", 0, &o), FV_EINVAL);
    CHECK(strstr(fv_error_last(), "passphrase is empty") != NULL);
    CHECK_EQ(fv_vault_panic(none), FV_ENOVAULT);
    CHECK(strstr(fv_error_last(), none) != NULL);
    CHECK_EQ(fv_state_parse(NULL, "bogus"), FV_EINVAL);
    CHECK(strcmp(fv_error_last(), "unknown review state") == 0);
    /* A call with no handle that succeeds leaves "no error", whatever
     * failed before it on the thread: no stale message. */
    int st = -1;
    CHECK_EQ(fv_state_parse(&st, "reviewed"), FV_OK);
    CHECK(strcmp(fv_error_last(), "no error") == 0);
    CHECK_EQ(fv_vault_open(&w, dir, "wrong", 5), FV_EPASSPHRASE);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_OK);
    CHECK(strcmp(fv_error_last(), "no error") == 0);
    CHECK(strcmp(fv_vault_errmsg(w), "no error") == 0);
    fv_vault_close(w);
    w = NULL;
    CHECK_EQ(fv_vault_panic(none), FV_ENOVAULT);
    const char *gone = new_dir();
    CHECK_EQ(fv_vault_create(&w, gone, PASS, strlen(PASS), &o), FV_OK);
    CHECK(strcmp(fv_error_last(), "no error") == 0);
    fv_vault_close(w);
    w = NULL;
    CHECK_EQ(fv_state_parse(NULL, "bogus"), FV_EINVAL);
    CHECK_EQ(fv_vault_panic(gone), FV_OK);
    CHECK(strcmp(fv_error_last(), "no error") == 0);
    /* A handle's message is copied. */
    unsigned char zero[FV_ID_BYTES] = {0};
    fv_record *nr = NULL;
    CHECK(fv_record_get(v, &nr, zero) != FV_OK);
    CHECK(strcmp(fv_error_last(), fv_vault_errmsg(v)) == 0);

    /* passwd rewraps: the old passphrase stops working, records stay. */
    unsigned char id[FV_ID_BYTES];
    CHECK_EQ(add_simple(v, id, "before passwd", "text"), FV_OK);
    CHECK_EQ(fv_vault_passwd(v, "new pass", 8), FV_OK);
    fv_vault_close(v);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_EPASSPHRASE);
    CHECK_EQ(fv_vault_open(&v, dir, "new pass", 8), FV_OK);
    fv_record *r = NULL;
    CHECK_EQ(fv_record_get(v, &r, id), FV_OK);
    CHECK(r && strcmp(r->title, "before passwd") == 0);
    fv_record_free(r);
    fv_vault_close(v);
    fv_vault_close(NULL);
    fv_free(NULL);
}

/* Walks a record's history: the genesis, then one child of it. */
struct hist {
    int n;
    unsigned char first[FV_ID_BYTES];
    int parent_ok;
};

static int hist_cb(const fv_revision *rv, void *p)
{
    struct hist *h = p;
    if (h->n == 0) {
        memcpy(h->first, rv->id, FV_ID_BYTES);
        CHECK_EQ(rv->nparents, 0);
        CHECK(!rv->head);
    } else {
        h->parent_ok = rv->nparents == 1 &&
                       memcmp(rv->parents[0], h->first, FV_ID_BYTES) == 0 &&
                       rv->head;
    }
    CHECK_EQ(rv->kind, FV_REVISION);
    h->n++;
    return 0;
}

/* A caller-allocated result struct carries its size: one not set up with
 * its _INIT macro is refused, and one larger than this library's (a newer
 * header's) gets the fields this library knows, its tail left alone. */
static void test_result_size(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    fv_verify_report zero;
    struct {
        fv_verify_report r;
        uint64_t later;
    } big;
    unsigned char id[FV_ID_BYTES];

    CHECK(v != NULL);
    CHECK_EQ(add_simple(v, id, "counted", "text"), FV_OK);
    memset(&zero, 0, sizeof zero);
    CHECK_EQ(fv_vault_verify(v, &zero, NULL, NULL), FV_EINVAL);
    CHECK(strstr(fv_vault_errmsg(v), "FV_VERIFY_REPORT_INIT") != NULL);
    CHECK_EQ(zero.size, 0);
    CHECK_EQ(zero.envelopes, 0);
    memset(&big, 0, sizeof big);
    big.r.size = sizeof big;
    big.later = 77;
    CHECK_EQ(fv_vault_verify(v, &big.r, NULL, NULL), FV_OK);
    CHECK_EQ(big.r.size, sizeof big);
    CHECK(big.r.envelopes >= 1);
    CHECK_EQ(big.later, 77);
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    CHECK_EQ(fv_vault_verify(v, &rep, NULL, NULL), FV_OK);
    CHECK_EQ(rep.size, sizeof rep);
    CHECK_EQ(rep.envelopes, big.r.envelopes);
    fv_vault_close(v);
}

static void test_records(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    unsigned char id[FV_ID_BYTES], id2[FV_ID_BYTES], rev[FV_ID_BYTES];
    char hex[FV_ID_HEX_BYTES];
    const char *korean = "탈북자 증언: 1998년 겨울, 国境 근처에서";
    fv_record *r = NULL;
    int rc, n;

    CHECK_EQ(add_simple(v, id, "first", korean), FV_OK);
    CHECK_EQ(add_simple(v, id2, "second", "plain"), FV_OK);
    v = reopen(v, dir);
    CHECK_EQ(fv_record_get(v, &r, id), FV_OK);
    if (r) {
        CHECK(memcmp(r->id, id, FV_ID_BYTES) == 0);
        CHECK(memcmp(r->revision, id, FV_ID_BYTES) == 0); /* genesis */
        CHECK(strcmp(r->title, "first") == 0);
        CHECK(r->narrative_len == strlen(korean) &&
              memcmp(r->narrative, korean, r->narrative_len) == 0);
        CHECK_EQ(r->nfields, 2);
        CHECK_EQ(r->ntags, 2); /* the duplicate tag is dropped */
        CHECK_EQ(r->nheads, 1);
        CHECK(r->created > 1700000000);
    }
    fv_record_free(r);
    CHECK_EQ(count_records(v, &rc), 2);
    CHECK_EQ(rc, FV_OK);

    /* Resolve by prefix. */
    unsigned char got[FV_ID_BYTES];
    fv_id_to_hex(hex, id);
    hex[10] = '\0';
    CHECK_EQ(fv_record_resolve(v, got, hex), FV_OK);
    CHECK(memcmp(got, id, FV_ID_BYTES) == 0);
    CHECK_EQ(fv_record_resolve(v, got, "xyz1"), FV_EINVAL);
    CHECK_EQ(fv_record_resolve(v, got, "ab"), FV_EINVAL);

    /* Edit: a new revision whose parent is the old head. */
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_field set[] = {{"age_range", "30-39"}, {"place", ""}};
    const char *addtag[] = {"follow-up"}, *rmtag[] = {"border"};
    in.fields = set;
    in.nfields = 2;
    in.tags = addtag;
    in.ntags = 1;
    in.remove_tags = rmtag;
    in.nremove_tags = 1;
    CHECK_EQ(fv_record_edit(v, rev, id, &in), FV_OK);
    CHECK_EQ(fv_record_get(v, &r, id), FV_OK);
    if (r) {
        CHECK(memcmp(r->revision, rev, FV_ID_BYTES) == 0);
        CHECK(strcmp(r->title, "first") == 0);
        CHECK_EQ(r->nfields, 2); /* interviewee, age_range; place removed */
        for (size_t i = 0; i < r->nfields; i++)
            CHECK(strcmp(r->fields[i].key, "place") != 0);
        CHECK_EQ(r->ntags, 2);
        CHECK(r->narrative_len == strlen(korean));
    }
    fv_record_free(r);

    /* History: genesis then the edit, with the parent link. */
    struct hist h = {0, {0}, 0};
    CHECK_EQ(fv_record_history(v, id, hist_cb, &h), FV_OK);
    CHECK_EQ(h.n, 2);
    CHECK(h.parent_ok);
    CHECK_EQ(fv_record_history(v, rev, hist_cb, &h), FV_ENOTFOUND);

    /* Search: case-insensitive ASCII, exact Korean, fields and tags. */
    n = 0;
    CHECK_EQ(fv_vault_search(v, "FIRST", count_cb, &n), FV_OK);
    CHECK_EQ(n, 1);
    n = 0;
    CHECK_EQ(fv_vault_search(v, "国境", count_cb, &n), FV_OK);
    CHECK_EQ(n, 1);
    n = 0;
    CHECK_EQ(fv_vault_search(v, "w-017", count_cb, &n), FV_OK);
    CHECK_EQ(n, 2);
    n = 0;
    CHECK_EQ(fv_vault_search(v, "follow-up", count_cb, &n), FV_OK);
    CHECK_EQ(n, 1);
    n = 0;
    CHECK_EQ(fv_vault_search(v, "nowhere", count_cb, &n), FV_OK);
    CHECK_EQ(n, 0);

    /* Delete: gone from list and get; a second delete is not found. */
    CHECK_EQ(fv_record_delete(v, id2), FV_OK);
    CHECK_EQ(count_records(v, &rc), 1);
    CHECK_EQ(fv_record_get(v, &r, id2), FV_ENOTFOUND);
    CHECK_EQ(fv_record_delete(v, id2), FV_ENOTFOUND);
    CHECK_EQ(fv_record_edit(v, rev, id2, &in), FV_ENOTFOUND);
    fv_vault_close(v);
}

static void test_bad_input(void)
{
    fv_vault *v = create(new_dir());
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char id[FV_ID_BYTES];
    fv_field dup[] = {{"a", "1"}, {"a", "2"}};
    const char *badtag[] = {"line\nbreak"};
    fv_attachment_source missing = {NULL, "/nonexistent/file", NULL, NULL};
    int rc;

    CHECK_EQ(fv_record_add(v, id, &in), FV_EINVAL); /* no title */
    in.title = "bad \xff utf8";
    CHECK_EQ(fv_record_add(v, id, &in), FV_EINVAL);
    in.title = "ok";
    in.fields = dup;
    in.nfields = 2;
    CHECK_EQ(fv_record_add(v, id, &in), FV_EINVAL);
    in.nfields = 0;
    in.tags = badtag;
    in.ntags = 1;
    CHECK_EQ(fv_record_add(v, id, &in), FV_EINVAL);
    in.ntags = 0;
    in.attachments = &missing;
    in.nattachments = 1;
    CHECK_EQ(fv_record_add(v, id, &in), FV_EIO);
    CHECK(strlen(fv_vault_errmsg(v)) > 0);
    in.nattachments = 0;
    in.version = 99;
    CHECK_EQ(fv_record_add(v, id, &in), FV_EINVAL);
    CHECK_EQ(count_records(v, &rc), 0);
    fv_vault_close(v);
}

/* An attachment source that produces `left` pseudo-random bytes. */
struct gen {
    uint64_t left, state, sum;
    int fail_at_end;
};

static long long gen_read(unsigned char *buf, size_t len, void *payload)
{
    struct gen *g = payload;
    size_t n = len < g->left ? len : (size_t)g->left;
    if (n == 0 && g->fail_at_end)
        return -1;
    for (size_t i = 0; i < n; i++) {
        g->state = g->state * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(g->state >> 56);
        g->sum = g->sum * 31 + buf[i];
    }
    g->left -= n;
    return (long long)n;
}

static int sum_write(const unsigned char *buf, size_t len, void *payload)
{
    struct gen *g = payload;
    for (size_t i = 0; i < len; i++)
        g->sum = g->sum * 31 + buf[i];
    g->left += len;
    return 0;
}

static int cancel_at_half(uint64_t done, uint64_t total, void *payload)
{
    (void)total;
    return done >= *(uint64_t *)payload;
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_attachments(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    unsigned char id[FV_ID_BYTES], rev[FV_ID_BYTES];
    const uint64_t big = 96ull << 20; /* well above any buffer we keep */
    struct gen src = {big, 42, 0, 0}, out = {0, 0, 0, 0};
    struct gen small = {FV_CHUNK_BYTES * 2 + 1, 7, 0, 0}, empty = {0, 1, 0, 0};
    fv_attachment_source s[3] = {{"video.mp4", NULL, gen_read, &src},
                                 {"note.txt", NULL, gen_read, &small},
                                 {"empty", NULL, gen_read, &empty}};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_record *r = NULL;
    long rss0;
    int rc;

    in.title = "with media";
    in.attachments = s;
    in.nattachments = 3;
    rss0 = max_rss_kib();
    CHECK_EQ(fv_record_add(v, id, &in), FV_OK);
    /* Streaming: memory does not grow with the attachment's size. (Under
     * AddressSanitizer freed memory sits in quarantine, so RSS says nothing
     * there.) */
#ifndef __SANITIZE_ADDRESS__
    CHECK(max_rss_kib() - rss0 < 48 * 1024);
#else
    (void)rss0;
#endif
    CHECK_EQ(fv_record_get(v, &r, id), FV_OK);
    if (r) {
        CHECK_EQ(r->nattachments, 3);
        CHECK_EQ(r->attachments[0].size, big);
        CHECK_EQ(r->attachments[0].chunks, big / FV_CHUNK_BYTES);
        CHECK_EQ(r->attachments[1].chunks, 3);
        CHECK_EQ(r->attachments[2].size, 0);
    }
    fv_record_free(r);
    CHECK_EQ(fv_attachment_read(v, id, "video.mp4", sum_write, &out, NULL, NULL), FV_OK);
    CHECK_EQ(out.left, big);
    CHECK(out.sum == src.sum);
    out.left = out.sum = 0;
    CHECK_EQ(fv_attachment_read(v, id, "empty", sum_write, &out, NULL, NULL), FV_OK);
    CHECK_EQ(out.left, 0);
    CHECK_EQ(fv_attachment_read(v, id, "nope", sum_write, &out, NULL, NULL), FV_ENOTFOUND);

    /* Save to a file: exact bytes; refuses to overwrite. */
    char path[400];
    snprintf(path, sizeof path, "%s/out.txt", root);
    unlink(path);
    CHECK_EQ(fv_attachment_save(v, id, "note.txt", path, NULL, NULL), FV_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (uint64_t)sb.st_size == FV_CHUNK_BYTES * 2 + 1);
    CHECK((sb.st_mode & 0777) == 0600);
    CHECK_EQ(fv_attachment_save(v, id, "note.txt", path, NULL, NULL), FV_EEXIST);

    /* An edit keeps attachments without re-encrypting; removal works. */
    const char *rm[] = {"note.txt"};
    fv_record_input ed = FV_RECORD_INPUT_INIT;
    long long chunks_before = db_count(dir, "SELECT count(*) FROM chunk");
    ed.remove_attachments = rm;
    ed.nremove_attachments = 1;
    CHECK_EQ(fv_record_edit(v, rev, id, &ed), FV_OK);
    CHECK_EQ(db_count(dir, "SELECT count(*) FROM chunk"), chunks_before);
    out.left = out.sum = 0;
    CHECK_EQ(fv_attachment_read(v, id, "video.mp4", sum_write, &out, NULL, NULL), FV_OK);
    CHECK(out.sum == src.sum);
    CHECK_EQ(fv_attachment_read(v, id, "note.txt", sum_write, &out, NULL, NULL), FV_ENOTFOUND);

    /* A canceled or failing add leaves nothing behind. */
    uint64_t half = 4 * FV_CHUNK_BYTES;
    struct gen c = {16 * FV_CHUNK_BYTES, 3, 0, 0}, f = {FV_CHUNK_BYTES, 5, 0, 1};
    fv_attachment_source cs = {"c", NULL, gen_read, &c}, fs = {"f", NULL, gen_read, &f};
    fv_record_input ci = FV_RECORD_INPUT_INIT;
    ci.title = "canceled";
    ci.attachments = &cs;
    ci.nattachments = 1;
    ci.progress = cancel_at_half;
    ci.progress_payload = &half;
    CHECK_EQ(fv_record_add(v, NULL, &ci), FV_ECANCELED);
    ci.attachments = &fs;
    ci.progress = NULL;
    CHECK_EQ(fv_record_add(v, NULL, &ci), FV_EIO);
    CHECK_EQ(count_records(v, &rc), 1);
    CHECK_EQ(db_count(dir, "SELECT count(*) FROM chunk"), chunks_before);

    /* Tampering with a stored chunk is caught before its bytes are given. */
    fv_vault_close(v);
    CHECK_EQ(db_exec(dir, "UPDATE chunk SET data = substr(data, 1, 100) || "
                          "x'00' || substr(data, 102) WHERE rowid = "
                          "(SELECT min(rowid) FROM chunk)"), SQLITE_OK);
    v = reopen(NULL, dir);
    out.left = out.sum = 0;
    CHECK_EQ(fv_attachment_read(v, id, "video.mp4", sum_write, &out, NULL, NULL), FV_ECORRUPT);

    /* Delete destroys every chunk. */
    CHECK_EQ(fv_record_delete(v, id), FV_OK);
    CHECK_EQ(db_count(dir, "SELECT count(*) FROM chunk"), 0);
    CHECK_EQ(db_count(dir, "SELECT count(*) FROM envelope WHERE bytes IS NOT NULL"), 1);
    fv_vault_close(v);
}

static void test_tampering(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    unsigned char a[FV_ID_BYTES], b[FV_ID_BYTES];
    fv_record *r = NULL;
    int rc;

    CHECK_EQ(add_simple(v, a, "alpha", "one"), FV_OK);
    CHECK_EQ(add_simple(v, b, "beta", "two"), FV_OK);
    long long len = db_count(dir, "SELECT length(bytes) FROM envelope WHERE seq = 1");
    fv_vault_close(v);

    /* Flip byte positions of the first envelope, one at a time, through a
     * blob handle: the record is never shown, the other one still is. */
    char path[400];
    snprintf(path, sizeof path, "%s/vault.db", dir);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    int shown_bad = 0, missed = 0;
    for (int pos = 0; pos < len; pos += 3) {
        sqlite3_blob *blob;
        unsigned char byte;
        CHECK(sqlite3_blob_open(db, "main", "envelope", "bytes", 1, 1, &blob) == SQLITE_OK);
        sqlite3_blob_read(blob, &byte, 1, pos);
        byte ^= 0x01;
        sqlite3_blob_write(blob, &byte, 1, pos);
        sqlite3_blob_close(blob);

        CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
        rc = fv_record_get(v, &r, a);
        if (rc == FV_OK)
            shown_bad++;
        fv_record_free(r);
        r = NULL;
        int n = count_records(v, &rc);
        if (n != 1 || rc != FV_ECORRUPT)
            missed++;
        fv_vault_close(v);

        CHECK(sqlite3_blob_open(db, "main", "envelope", "bytes", 1, 1, &blob) == SQLITE_OK);
        byte ^= 0x01;
        sqlite3_blob_write(blob, &byte, 1, pos);
        sqlite3_blob_close(blob);
    }
    sqlite3_close(db);
    CHECK_EQ(shown_bad, 0);
    CHECK_EQ(missed, 0);

    /* Untouched again: both records back. */
    v = reopen(NULL, dir);
    CHECK_EQ(count_records(v, &rc), 2);
    CHECK_EQ(rc, FV_OK);

    /* Swapping an envelope under another id is caught by the content address. */
    fv_vault_close(v);
    CHECK_EQ(db_exec(dir, "UPDATE envelope SET bytes = (SELECT bytes FROM envelope "
                          "WHERE seq = 2) WHERE seq = 1"), SQLITE_OK);
    v = reopen(NULL, dir);
    CHECK_EQ(fv_record_get(v, &r, a), FV_ECORRUPT);
    CHECK_EQ(count_records(v, &rc), 1);
    CHECK_EQ(rc, FV_ECORRUPT);
    fv_vault_close(v);
}

static void test_files(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir), *w = NULL;
    char path[400];
    unsigned char kf[120];
    int fd;

    fv_vault_close(v);
    snprintf(path, sizeof path, "%s/vault.key", dir);
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && read(fd, kf, sizeof kf) == (ssize_t)sizeof kf);
    kf[8] = 99; /* format version */
    CHECK(pwrite(fd, kf, sizeof kf, 0) == (ssize_t)sizeof kf);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_EVERSION);
    kf[8] = 1;
    kf[40] ^= 1; /* the salt: a different key, indistinguishable from a wrong passphrase */
    CHECK(pwrite(fd, kf, sizeof kf, 0) == (ssize_t)sizeof kf);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_EPASSPHRASE);
    kf[40] ^= 1;
    /* A damaged cost past the ceiling (17 passes; 2 GiB, bit 31 of the
     * memlimit) is refused at once, not run for hours. */
    kf[16] = 17;
    CHECK(pwrite(fd, kf, sizeof kf, 0) == (ssize_t)sizeof kf);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_ECORRUPT);
    kf[16] = 1;
    kf[27] ^= 0x80;
    CHECK(pwrite(fd, kf, sizeof kf, 0) == (ssize_t)sizeof kf);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_ECORRUPT);
    kf[27] ^= 0x80;
    CHECK(pwrite(fd, kf, 60, 0) == 60 && ftruncate(fd, 60) == 0);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_ECORRUPT);
    CHECK(pwrite(fd, kf, sizeof kf, 0) == (ssize_t)sizeof kf);
    close(fd);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_OK);
    fv_vault_close(w);
    w = NULL;

    /* A truncated database. */
    snprintf(path, sizeof path, "%s/vault.db", dir);
    CHECK(truncate(path, 3000) == 0);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_ECORRUPT);
    CHECK(w == NULL);
    /* Garbage in place of the database. */
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, "not a database at all, just words.........", 42) == 42);
    close(fd);
    CHECK_EQ(fv_vault_open(&w, dir, PASS, strlen(PASS)), FV_ECORRUPT);

    /* Panic: the key file first, then everything; a second panic finds nothing. */
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
    CHECK(access(dir, F_OK) != 0);
    CHECK_EQ(fv_vault_panic(dir), FV_ENOVAULT);
}

/* ---- panic reaches every copy ------------------------------------------ */

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    *len = 0;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    fclose(f);
    return buf;
}

static void put_file(const char *path, const unsigned char *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, p, n) == (ssize_t)n);
    if (fd >= 0)
        close(fd);
}

/* 1 if `after` (what a hard link reads once its file was destroyed) still
 * holds anything of `before`: a 16-byte block of it that is not all zeros
 * at the same offset, or its first such block anywhere. */
static int keeps_any(const unsigned char *before, size_t blen,
                     const unsigned char *after, size_t alen)
{
    static const unsigned char zero[16];
    const unsigned char *sample = NULL;
    for (size_t off = 0; off + 16 <= blen; off += 16) {
        if (memcmp(before + off, zero, 16) == 0)
            continue;
        if (!sample)
            sample = before + off;
        if (off + 16 <= alen && memcmp(before + off, after + off, 16) == 0)
            return 1;
    }
    for (size_t off = 0; sample && off + 16 <= alen; off++)
        if (memcmp(after + off, sample, 16) == 0)
            return 1;
    return 0;
}

/* Hard links made before a panic to the key file, a temp key file left by
 * a killed passwd, the database and its WAL all read as garbage after it:
 * the files were overwritten in place, not only unlinked. */
static void test_panic_every_copy(void)
{
    static const char *const names[] = {"vault.key", ".vault.key.tmp", "vault.db",
                                        "vault.db-wal"};
    enum { N = sizeof names / sizeof names[0] };
    const char *dir = new_dir();
    char path[400], keep[440], links[400];
    unsigned char *before[N] = {NULL}, *after;
    size_t blen[N], alen;
    fv_vault *v = create(dir);

    for (int i = 0; i < 40; i++)
        CHECK_EQ(add_simple(v, NULL, "a testimony to be destroyed", "x"), FV_OK);
    CHECK_EQ(fv_vault_passwd(v, "second passphrase", 17), FV_OK);
    snprintf(links, sizeof links, "%s/links%d", root, seq);
    CHECK(mkdir(links, 0700) == 0);
    /* The temp key file as a passwd killed before its rename leaves it. */
    snprintf(path, sizeof path, "%s/vault.key", dir);
    after = slurp(path, &alen);
    CHECK(after != NULL);
    snprintf(path, sizeof path, "%s/.vault.key.tmp", dir);
    put_file(path, after, alen);
    free(after);
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(keep, sizeof keep, "%s/%d", links, i);
        CHECK(link(path, keep) == 0);
        before[i] = slurp(keep, &blen[i]);
        CHECK(before[i] != NULL && blen[i] > 0); /* the WAL too: v is open */
    }
    /* With the vault still open, as when the device is seized mid-use. */
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
    CHECK(access(dir, F_OK) != 0);
    for (int i = 0; i < N; i++) {
        snprintf(keep, sizeof keep, "%s/%d", links, i);
        after = slurp(keep, &alen);
        CHECK(after != NULL);
        CHECK_EQ(alen, blen[i]); /* overwritten over its full length, not cut */
        if (after && before[i] && keeps_any(before[i], blen[i], after, alen)) {
            fprintf(stderr, "panic left bytes of %s readable\n", names[i]);
            CHECK(0);
        }
        free(after);
        free(before[i]);
        unlink(keep);
    }
    rmdir(links);
    fv_vault_close(v);
    CHECK_EQ(fv_vault_panic(dir), FV_ENOVAULT);
}

/* A temp key file left by a killed passwd is destroyed at the next open,
 * before anything else: a hard link to it reads garbage. One that a writer
 * holds locked, or that is also vault.key (an init killed between its link
 * and unlink), is left whole. */
static void test_stale_temp_key(void)
{
    const char *dir = new_dir();
    char key[400], tmp[400], keep[400];
    unsigned char *orig, *after;
    size_t olen, alen;
    int fd;
    fv_vault *v = create(dir);

    fv_vault_close(v);
    v = NULL;
    snprintf(key, sizeof key, "%s/vault.key", dir);
    snprintf(tmp, sizeof tmp, "%s/.vault.key.tmp", dir);
    snprintf(keep, sizeof keep, "%s/tmp-link", root);
    orig = slurp(key, &olen);
    CHECK(orig != NULL);

    /* Held locked by a writer at work: left alone. */
    put_file(tmp, orig, olen);
    fd = open(tmp, O_RDONLY);
    CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    fv_vault_close(v);
    v = NULL;
    CHECK(access(tmp, F_OK) == 0);
    close(fd);

    /* Left by a killed writer: destroyed in place. */
    CHECK(link(tmp, keep) == 0);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    fv_vault_close(v);
    v = NULL;
    CHECK(access(tmp, F_OK) != 0);
    after = slurp(keep, &alen);
    CHECK(after != NULL && alen == olen);
    CHECK(after && !keeps_any(orig, olen, after, alen));
    free(after);
    unlink(keep);
    /* The same destruction whatever the open's outcome. */
    put_file(tmp, orig, olen);
    CHECK_EQ(fv_vault_open(&v, dir, "wrong", 5), FV_EPASSPHRASE);
    CHECK(access(tmp, F_OK) != 0);

    /* An init killed between link() and unlink(): the temp is vault.key. */
    CHECK(link(key, tmp) == 0);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    fv_vault_close(v);
    v = NULL;
    CHECK(access(tmp, F_OK) != 0);
    after = slurp(key, &alen);
    CHECK(after && alen == olen && memcmp(after, orig, olen) == 0);
    free(after);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    fv_vault_close(v);

    /* A symbolic link in its place is removed, never written through. */
    CHECK(symlink(keep, tmp) == 0);
    put_file(keep, (const unsigned char *)"user data", 9);
    CHECK_EQ(fv_vault_open(&v, dir, PASS, strlen(PASS)), FV_OK);
    fv_vault_close(v);
    after = slurp(keep, &alen);
    CHECK(after && alen == 9 && memcmp(after, "user data", 9) == 0);
    free(after);
    unlink(keep);
    free(orig);
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
}

/* Nothing a record says appears in any file of the vault directory. */
static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    size_t n = strlen(needle), len = 0, cap = 0;
    unsigned char *buf = NULL;
    int found = 0, c;
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            buf = realloc(buf, cap);
        }
        buf[len++] = (unsigned char)c;
    }
    fclose(f);
    for (size_t i = 0; i + n <= len && !found; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

static void test_no_plaintext(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    static const char *markers[] = {"MARKTITLE7", "MARKNARR7", "MARKKEY7",
                                    "MARKVAL7", "MARKTAG7", "MARKNAME7",
                                    "MARKBYTES7"};
    char bytes[64 * 1024];
    for (size_t i = 0; i + 10 <= sizeof bytes; i += 10)
        memcpy(bytes + i, "MARKBYTES7", 10);
    char path[400];
    snprintf(path, sizeof path, "%s/../att-%d.bin", dir, seq);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes);
    fclose(f);

    fv_field fl[] = {{"MARKKEY7", "MARKVAL7"}};
    const char *tags[] = {"MARKTAG7"};
    fv_attachment_source s = {"MARKNAME7", path, NULL, NULL};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char id[FV_ID_BYTES], id2[FV_ID_BYTES];
    in.title = "MARKTITLE7";
    in.narrative = "MARKNARR7";
    in.narrative_len = 9;
    in.fields = fl;
    in.nfields = 1;
    in.tags = tags;
    in.ntags = 1;
    in.attachments = &s;
    in.nattachments = 1;
    CHECK_EQ(fv_record_add(v, id, &in), FV_OK);
    CHECK_EQ(fv_record_add(v, id2, &in), FV_OK);
    CHECK_EQ(fv_record_delete(v, id2), FV_OK);

    /* While open (WAL present) and after close. */
    for (int round = 0; round < 2; round++) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int files = 0;
        while (d && (de = readdir(d))) {
            char p[700];
            if (de->d_name[0] == '.' && (!de->d_name[1] || de->d_name[1] == '.'))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            files++;
            for (size_t m = 0; m < sizeof markers / sizeof markers[0]; m++)
                if (file_contains(p, markers[m])) {
                    fprintf(stderr, "marker %s found in %s\n", markers[m], p);
                    CHECK(0);
                }
        }
        if (d)
            closedir(d);
        CHECK(files >= 2);
        if (round == 0) {
            fv_vault_close(v);
            v = NULL;
        }
    }
    unlink(path);
}

struct buf_out {
    unsigned char *p;
    size_t len, cap;
};

static int buf_write(const unsigned char *b, size_t n, void *payload)
{
    struct buf_out *o = payload;
    if (o->len + n > o->cap)
        return 1;
    memcpy(o->p + o->len, b, n);
    o->len += n;
    return 0;
}

/* fv_attachment_read_range: every offset and length around each chunk edge
 * gives exactly the bytes of the whole read; a tampered chunk fails only
 * the ranges that touch it. */
static void test_attachment_ranges(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    unsigned char id[FV_ID_BYTES];
    const uint64_t size = 3ull * FV_CHUNK_BYTES + 17;
    struct gen src = {size, 9, 0, 0};
    fv_attachment_source s = {"talk.opus", NULL, gen_read, &src};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    struct buf_out whole = {malloc(size), 0, size};
    struct buf_out part = {malloc(size), 0, size};
    uint64_t got_size = 0;

    in.title = "ranges";
    in.attachments = &s;
    in.nattachments = 1;
    CHECK_EQ(fv_record_add(v, id, &in), FV_OK);
    CHECK(whole.p && part.p);
    if (!whole.p || !part.p)
        goto done;
    CHECK_EQ(fv_attachment_read(v, id, "talk.opus", buf_write, &whole, NULL, NULL), FV_OK);
    CHECK_EQ(whole.len, size);
    const uint64_t C = FV_CHUNK_BYTES;
    const uint64_t offs[] = {0, 1, C - 1, C, C + 1, 2 * C - 1, 2 * C, 3 * C - 1,
                             3 * C, 3 * C + 1, size - 1, size};
    const uint64_t lens[] = {0, 1, 2, 16, C - 1, C, C + 1, 2 * C + 3, UINT64_MAX};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            uint64_t want = lens[k] > size - offs[i] ? size - offs[i] : lens[k];
            part.len = 0;
            got_size = 0;
            CHECK_EQ(fv_attachment_read_range(v, &got_size, id, "talk.opus", offs[i],
                                              lens[k], buf_write, &part), FV_OK);
            CHECK_EQ(got_size, size);
            CHECK_EQ(part.len, want);
            CHECK(memcmp(part.p, whole.p + offs[i], (size_t)want) == 0);
        }
    CHECK_EQ(fv_attachment_read_range(v, NULL, id, "talk.opus", size + 1, 1,
                                      buf_write, &part), FV_EINVAL);
    CHECK_EQ(fv_attachment_read_range(v, NULL, id, "other", 0, 1, buf_write,
                                      &part), FV_ENOTFOUND);
    CHECK_EQ(fv_attachment_read_range(v, NULL, id, "talk.opus", 0, 1, NULL,
                                      &part), FV_EINVAL);

    /* One chunk tampered (other bytes of the same length): the ranges in
     * the others still read, and a range that touches it fails before any
     * of its bytes are given. */
    fv_vault_close(v);
    CHECK_EQ(db_exec(dir, "UPDATE chunk SET data = randomblob(length(data)) "
                          "WHERE rowid = (SELECT min(rowid) FROM chunk)"), SQLITE_OK);
    v = reopen(NULL, dir);
    int bad = -1, nbad = 0;
    for (int c = 0; c < 4; c++) {
        part.len = 0;
        int rc = fv_attachment_read_range(v, NULL, id, "talk.opus", c * C + 3,
                                          10, buf_write, &part);
        if (rc == FV_ECORRUPT) {
            bad = c;
            nbad++;
            CHECK_EQ(part.len, 0);
        } else {
            CHECK_EQ(rc, FV_OK);
            CHECK(part.len == 10 && memcmp(part.p, whole.p + c * C + 3, 10) == 0);
        }
    }
    CHECK_EQ(nbad, 1);
    if (bad > 0) {
        part.len = 0;
        CHECK_EQ(fv_attachment_read_range(v, NULL, id, "talk.opus", bad * C - 5,
                                          10, buf_write, &part), FV_ECORRUPT);
        CHECK_EQ(part.len, 5); /* the verified chunk before it, then stop */
    } else if (bad == 0) {
        part.len = 0;
        CHECK_EQ(fv_attachment_read_range(v, NULL, id, "talk.opus", C - 5,
                                          10, buf_write, &part), FV_ECORRUPT);
        CHECK_EQ(part.len, 0);
    }
done:
    free(whole.p);
    free(part.p);
    fv_vault_close(v);
}

/* Schema upgrades (store_db.c): an older file is upgraded at open in one
 * transaction; a failing step leaves it wholly at its old version; a newer
 * file is FV_EVERSION; an older one without a path is refused. */
static int has_column(fv_db *d, const char *sql)
{
    int n = -1;
    return fv_db_pragma_int(d, sql, &n) == FV_OK ? n : -1;
}

static void test_schema_migrations(void)
{
    static const char create_v1[] =
        "CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB NOT NULL);"
        "CREATE TABLE t(a INTEGER);"
        "INSERT INTO t(a) VALUES (7);";
    static const char *const steps[] = {
        "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 1;",
        "CREATE TABLE u(x); INSERT INTO u(x) SELECT a + b FROM t;",
    };
    static const char *const broken[] = {
        "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 1;",
        "CREATE TABLE u(x); INSERT INTO nowhere VALUES (1);",
    };
    static const char *const gap[] = {NULL, "CREATE TABLE u(x);"};
    fv_db_schema v1 = {.label = "test database", .create_sql = create_v1,
                       .user_version = 1, .application_id = 0x46565458,
                       .missing_rc = FV_ENOVAULT,
                       .constraint_rc = FV_ECORRUPT};
    fv_db_schema v3 = v1;
    fv_db d;
    char path[600];
    int version = 0;

    v3.user_version = 3;
    snprintf(path, sizeof path, "%s/schema.db", root);
    CHECK_EQ(fv_db_open(&d, path, 1, &v1), FV_OK);
    fv_db_close(&d);

    /* No path from version 1: refused, as before migrations existed. */
    CHECK_EQ(fv_db_open(&d, path, 0, &v3), FV_ECORRUPT);
    /* A step that fails: nothing of the upgrade stays. */
    v3.migrations = broken;
    CHECK_EQ(fv_db_open(&d, path, 0, &v3), FV_ECORRUPT);
    v3.migrations = gap;
    CHECK_EQ(fv_db_open(&d, path, 0, &v3), FV_ECORRUPT);
    CHECK_EQ(fv_db_open(&d, path, 0, &v1), FV_OK);
    CHECK_EQ(has_column(&d, "SELECT count(*) FROM pragma_table_info('t') WHERE name = 'b'"), 0);
    CHECK_EQ(has_column(&d, "SELECT count(*) FROM sqlite_schema WHERE name = 'u'"), 0);
    fv_db_close(&d);

    /* The whole path: 1 -> 2 -> 3, the data carried along. */
    v3.migrations = steps;
    CHECK_EQ(fv_db_open(&d, path, 0, &v3), FV_OK);
    CHECK_EQ(fv_db_pragma_int(&d, "PRAGMA user_version", &version), FV_OK);
    CHECK_EQ(version, 3);
    CHECK_EQ(has_column(&d, "SELECT x FROM u"), 8);
    fv_db_close(&d);
    /* Opened again: nothing left to do. */
    CHECK_EQ(fv_db_open(&d, path, 0, &v3), FV_OK);
    CHECK_EQ(has_column(&d, "SELECT count(*) FROM u"), 1);
    fv_db_close(&d);
    /* Version 1 code meets the upgraded file: newer. */
    CHECK_EQ(fv_db_open(&d, path, 0, &v1), FV_EVERSION);
}

/* ---- each failing call leaves its own message --------------------------- */

static int any_record(const fv_record *r, void *p) { (void)r; (void)p; return 0; }
static int any_revision(const fv_revision *r, void *p) { (void)r; (void)p; return 0; }
static int any_bytes(const unsigned char *b, size_t n, void *p) { (void)b; (void)n; (void)p; return 0; }
static const unsigned char nobody[FV_ID_BYTES] = {0};
static char own_dir[320];

/* One failing call each, on a vault that is not enrolled and holds no
 * organisation key. */
static int f_passwd(fv_vault *v) { return fv_vault_passwd(v, "", 0); }
static int f_get_wipe(fv_vault *v) { return fv_vault_get_wipe_after(v, NULL); }
static int f_set_duress(fv_vault *v) { return fv_vault_set_duress(v, PASS, strlen(PASS), NULL); }
static int f_add(fv_vault *v) { return fv_record_add(v, NULL, NULL); }
static int f_edit(fv_vault *v)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    return fv_record_edit(v, NULL, nobody, &in);
}
static int f_delete(fv_vault *v) { return fv_record_delete(v, nobody); }
static int f_resolve(fv_vault *v)
{
    unsigned char id[FV_ID_BYTES];
    return fv_record_resolve(v, id, NULL);
}
static int f_get(fv_vault *v)
{
    fv_record *r = NULL;
    return fv_record_get(v, &r, nobody);
}
static int f_get_revision(fv_vault *v)
{
    fv_record *r = NULL;
    return fv_record_get_revision(v, &r, nobody, nobody);
}
static int f_list(fv_vault *v) { return fv_vault_list(v, NULL, NULL); }
static int f_search(fv_vault *v) { return fv_vault_search(v, NULL, any_record, NULL); }
static int f_history(fv_vault *v) { return fv_record_history(v, nobody, any_revision, NULL); }
static int f_merge(fv_vault *v)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    return fv_record_merge(v, NULL, nobody, &in);
}
static int f_set_state(fv_vault *v) { return fv_record_set_state(v, nobody, 99); }
static int f_query(fv_vault *v) { return fv_vault_query(v, NULL, NULL, NULL); }
static int f_query_ex(fv_vault *v) { return fv_vault_query_ex(v, NULL, NULL, NULL, NULL); }
static int f_note_add(fv_vault *v)
{
    unsigned char id[FV_ID_BYTES];
    return fv_note_add(v, id, nobody, "a note");
}
static int f_note_list(fv_vault *v) { return fv_note_list(v, NULL, NULL, NULL); }
static int f_retract(fv_vault *v) { return fv_record_retract(v, nobody); }
static int f_retractions(fv_vault *v) { return fv_retraction_list(v, NULL, NULL); }
static int f_quarantine(fv_vault *v) { return fv_quarantine_list(v, NULL, NULL); }
static int f_verify(fv_vault *v)
{
    fv_verify_report zero;
    memset(&zero, 0, sizeof zero); /* not from FV_VERIFY_REPORT_INIT */
    return fv_vault_verify(v, &zero, NULL, NULL);
}
static int f_export(fv_vault *v)
{
    uint64_t n;
    return fv_export(v, &n, NULL);
}
static int f_org_key_export(fv_vault *v)
{
    char path[400];
    snprintf(path, sizeof path, "%s/org.key", own_dir);
    return fv_org_key_export(v, path, "recovery", 8);
}
static int f_org_key_import(fv_vault *v)
{
    char path[400];
    snprintf(path, sizeof path, "%s/missing.key", own_dir);
    return fv_org_key_import(v, path, "recovery", 8);
}
static int f_att_read(fv_vault *v) { return fv_attachment_read(v, nobody, "a", any_bytes, NULL, NULL, NULL); }
static int f_att_range(fv_vault *v)
{
    return fv_attachment_read_range(v, NULL, nobody, "a", 0, 1, any_bytes, NULL);
}
static int f_att_save(fv_vault *v)
{
    char path[400];
    snprintf(path, sizeof path, "%s/saved.bin", own_dir);
    return fv_attachment_save(v, nobody, "a", path, NULL, NULL);
}
static int f_set_retention(fv_vault *v) { return fv_vault_set_retention(v, 99); }
static int f_get_retention(fv_vault *v) { return fv_vault_get_retention(v, NULL); }
static int f_delivered(fv_vault *v) { return fv_record_delivered(v, NULL, nobody); }
static int f_set_proxy(fv_vault *v) { return fv_vault_set_proxy(v, "gopher://nowhere"); }
static int f_get_proxy(fv_vault *v) { return fv_vault_get_proxy(v, NULL, NULL); }
static int f_sync(fv_vault *v)
{
    fv_sync_result r = FV_SYNC_RESULT_INIT;
    return fv_sync(v, &r, NULL);
}
static int f_session_new(fv_vault *v) { return fv_sync_session_new(NULL, v, NULL); }
static int f_session_run(fv_vault *v)
{
    fv_sync_session *s = NULL;
    fv_sync_result r = FV_SYNC_RESULT_INIT;
    int rc = fv_sync_session_new(&s, v, NULL);
    CHECK_EQ(rc, FV_OK);
    if (rc == FV_OK)
        rc = fv_sync_session_run(s, &r);
    fv_sync_session_free(s);
    return rc;
}
static int f_enroll(fv_vault *v) { return fv_enroll(v, NULL, NULL, NULL); }
static int f_org_init(fv_vault *v) { return fv_org_init(v, NULL); }
static int f_org_invite(fv_vault *v)
{
    char *inv = NULL;
    return fv_org_invite(v, &inv, NULL, FV_ROLE_FIELD, 60, NULL);
}
static int f_org_devices(fv_vault *v) { return fv_org_device_list(v, NULL, NULL, NULL); }
static int f_org_revoke(fv_vault *v) { return fv_org_revoke(v, NULL, NULL); }
static int f_bundle_export(fv_vault *v) { return fv_bundle_export(v, NULL, NULL, NULL); }
static int f_bundle_import(fv_vault *v)
{
    char path[400];
    snprintf(path, sizeof path, "%s/missing.bundle", own_dir);
    return fv_bundle_import(v, NULL, path);
}

static const struct own_case {
    const char *name;
    int (*call)(fv_vault *v);
} own_cases[] = {
    {"fv_vault_passwd", f_passwd}, {"fv_vault_get_wipe_after", f_get_wipe},
    {"fv_vault_set_duress", f_set_duress}, {"fv_record_add", f_add},
    {"fv_record_edit", f_edit}, {"fv_record_delete", f_delete},
    {"fv_record_resolve", f_resolve}, {"fv_record_get", f_get},
    {"fv_record_get_revision", f_get_revision}, {"fv_vault_list", f_list},
    {"fv_vault_search", f_search}, {"fv_record_history", f_history},
    {"fv_record_merge", f_merge}, {"fv_record_set_state", f_set_state},
    {"fv_vault_query", f_query}, {"fv_vault_query_ex", f_query_ex},
    {"fv_note_add", f_note_add}, {"fv_note_list", f_note_list},
    {"fv_record_retract", f_retract}, {"fv_retraction_list", f_retractions},
    {"fv_quarantine_list", f_quarantine}, {"fv_vault_verify", f_verify},
    {"fv_export", f_export}, {"fv_org_key_export", f_org_key_export},
    {"fv_org_key_import", f_org_key_import}, {"fv_attachment_read", f_att_read},
    {"fv_attachment_read_range", f_att_range}, {"fv_attachment_save", f_att_save},
    {"fv_vault_set_retention", f_set_retention}, {"fv_vault_get_retention", f_get_retention},
    {"fv_record_delivered", f_delivered}, {"fv_vault_set_proxy", f_set_proxy},
    {"fv_vault_get_proxy", f_get_proxy}, {"fv_sync", f_sync},
    {"fv_sync_session_new", f_session_new}, {"fv_sync_session_run", f_session_run},
    {"fv_enroll", f_enroll}, {"fv_org_init", f_org_init},
    {"fv_org_invite", f_org_invite}, {"fv_org_device_list", f_org_devices},
    {"fv_org_revoke", f_org_revoke}, {"fv_bundle_export", f_bundle_export},
    {"fv_bundle_import", f_bundle_import},
};

/* Every public call on a handle that can fail, made to fail right after an
 * earlier call failed with a distinctive message: its message is its own
 * (not the earlier one, not "no error"), fv_error_last() holds it too, and
 * the next call that succeeds leaves "no error". Then with no handle: the
 * message names the call. */
static void test_own_messages(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir);
    unsigned char id[FV_ID_BYTES];
    char stale[256];
    int policy;

    snprintf(own_dir, sizeof own_dir, "%s", dir);
    CHECK_EQ(add_simple(v, id, "present", "text"), FV_OK);
    for (size_t i = 0; i < sizeof own_cases / sizeof own_cases[0]; i++) {
        const struct own_case *c = &own_cases[i];
        /* The earlier failure: resolve's own message, or set_proxy's for
         * resolve itself. */
        if (c->call == f_resolve)
            CHECK_EQ(fv_vault_set_proxy(v, "ftp://stale"), FV_EINVAL);
        else
            CHECK_EQ(fv_record_resolve(v, id, "not hex, stale"), FV_EINVAL);
        snprintf(stale, sizeof stale, "%s", fv_vault_errmsg(v));
        CHECK(strcmp(stale, "no error") != 0);
        int rc = c->call(v);
        const char *m = fv_vault_errmsg(v);
        if (rc == FV_OK || strcmp(m, stale) == 0 || strcmp(m, "no error") == 0 ||
            strcmp(fv_error_last(), m) != 0) {
            fprintf(stderr, "%s: returned %d with the message \"%s\" (before: \"%s\")\n",
                    c->name, rc, m, stale);
            CHECK(0);
        }
        CHECK_EQ(fv_vault_get_retention(v, &policy), FV_OK);
        CHECK(strcmp(fv_vault_errmsg(v), "no error") == 0);
    }
    /* A failure that has nothing more to say names the call and its code. */
    CHECK_EQ(fv_vault_list(v, NULL, NULL), FV_EINVAL);
    CHECK(strcmp(fv_vault_errmsg(v), "fv_vault_list: invalid argument") == 0);
    /* One that has keeps its own words. */
    fv_record *none = NULL;
    CHECK_EQ(fv_record_get(v, &none, nobody), FV_ENOTFOUND);
    CHECK(strcmp(fv_vault_errmsg(v), "no such record") == 0);
    /* A call with no handle names itself in fv_error_last(). */
    CHECK_EQ(fv_record_resolve(v, id, "not hex, stale"), FV_EINVAL);
    CHECK_EQ(fv_record_add(NULL, NULL, NULL), FV_EINVAL);
    CHECK(strstr(fv_error_last(), "fv_record_add") != NULL);
    CHECK(strstr(fv_error_last(), fv_strerror(FV_EINVAL)) != NULL);
    fv_vault_close(v);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/fv-test-vault-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_lifecycle();
    test_records();
    test_result_size();
    test_bad_input();
    test_attachments();
    test_attachment_ranges();
    test_tampering();
    test_files();
    test_panic_every_copy();
    test_stale_temp_key();
    test_no_plaintext();
    test_schema_migrations();
    test_own_messages();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_summary("test_vault");
}
