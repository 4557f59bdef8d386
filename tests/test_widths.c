/* test_widths.c - the places where 32-bit targets (armhf: 32-bit size_t,
 * long and, in Debian 12, time_t) differ from 64-bit ones: CBOR lengths that
 * do not fit a size_t, files and pack files past 2 and 4 GiB (off_t),
 * attachment sizes and chunk counts in uint64_t. Runs everywhere; it matters
 * most under scripts/cross-test armhf. Files past 4 GiB are sparse: the test
 * writes a few MiB. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "civil.h"
#include "codec.h"
#include "fieldvault.h"
#include "store_server.h"

#define GIB (1024ull * 1024 * 1024)

static char root[256];
static const char PASS[] = "correct horse battery staple";

/* A sparse file of `size` bytes (zeros); 0 if the file system refuses. */
static int sparse_file(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ok;
    if (fd < 0)
        return 0;
    ok = ftruncate(fd, (off_t)size) == 0;
    close(fd);
    return ok;
}

/* Dates through the project's one 64-bit routine (civil.h): past 2038,
 * where armhf's 32-bit time_t ends, up to 9999-12-31, and before 1970. */
static void test_dates(void)
{
    static const struct {
        int64_t t;
        const char *iso;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {-1, "1969-12-31T23:59:59Z"},
        {-86400, "1969-12-31T00:00:00Z"},
        {INT32_MAX, "2038-01-19T03:14:07Z"},
        {(int64_t)INT32_MAX + 1, "2038-01-19T03:14:08Z"},
        {(int64_t)UINT32_MAX + 1, "2106-02-07T06:28:16Z"},
        {2213481600LL, "2040-02-22T00:00:00Z"},
        {2214172799LL, "2040-02-29T23:59:59Z"}, /* a leap day */
        {2214172800LL, "2040-03-01T00:00:00Z"},
        {4107456000LL, "2100-02-28T00:00:00Z"},
        {4107542400LL, "2100-03-01T00:00:00Z"}, /* 2100 is no leap year */
        {951782400LL, "2000-02-29T00:00:00Z"},  /* 2000 is one */
        {253402300799LL, "9999-12-31T23:59:59Z"},
        {-62167219200LL, "0000-01-01T00:00:00Z"},
    };
    char iso[FV_TIME_ISO_BYTES];
    fv_civil c;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ(fv_time_iso(iso, cases[i].t), 0);
        if (strcmp(iso, cases[i].iso) != 0)
            fprintf(stderr, "date %lld: %s, want %s\n", (long long)cases[i].t, iso,
                    cases[i].iso);
        CHECK(strcmp(iso, cases[i].iso) == 0);
    }
    /* Past 9999 or before year 0: no four-digit year, "?". */
    CHECK_EQ(fv_time_iso(iso, 253402300800LL), -1);
    CHECK(strcmp(iso, "?") == 0);
    CHECK_EQ(fv_time_iso(iso, -62167219201LL), -1);
    CHECK_EQ(fv_time_iso(iso, INT64_MAX), -1);
    CHECK_EQ(fv_time_iso(iso, INT64_MIN), -1);
    /* Every day from 1900 to 2500 and back: one day apart, and the inverse
     * of fv_days_from_civil. */
    int64_t prev = fv_days_from_civil(1899, 12, 31);
    int bad = 0;
    for (int64_t day = prev + 1; day <= fv_days_from_civil(2500, 12, 31); day++) {
        fv_civil_from_unix(&c, day * 86400 + 86399);
        if (fv_days_from_civil(c.year, c.month, c.day) != day || c.hour != 23 ||
            c.min != 59 || c.sec != 59 || day != prev + 1)
            bad++;
        prev = day;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(fv_days_from_civil(1970, 1, 1), 0);
    CHECK_EQ(fv_days_from_civil(2040, 1, 1) * 86400, 2208988800LL);
    CHECK_EQ(fv_days_from_civil(9999, 12, 31), 2932896);
    /* Unchecked dates run on (civil.h): 2041-02-29 is 2041-03-01. */
    CHECK_EQ(fv_days_from_civil(2041, 2, 29), fv_days_from_civil(2041, 3, 1));
}

static void test_types(void)
{
    /* The build must give every file a 64-bit off_t (_FILE_OFFSET_BITS=64
     * in CMakeLists.txt): without it, on armhf, open() and stat() fail on
     * files past 2 GiB and offsets wrap. */
    CHECK_EQ(sizeof(off_t), 8);
    printf("size_t %zu, long %zu, off_t %zu, time_t %zu bytes\n",
           sizeof(size_t), sizeof(long), sizeof(off_t), sizeof(time_t));
}

/* Reads `hex` and skips one item: the result of the whole input. */
static int decode_hex(const char *hex)
{
    unsigned char in[64];
    size_t n = strlen(hex) / 2;
    fv_dec d;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        in[i] = (unsigned char)v;
    }
    fv_dec_init(&d, in, n);
    fv_dec_skip(&d, 8);
    return fv_dec_finish(&d);
}

static void test_cbor_lengths(void)
{
    /* Lengths and counts of 2^32 + 1 followed by one byte: a reader that
     * cast them to a 32-bit size_t would see 1 and accept the item. */
    static const char *wrap[] = {
        "5b000000010000000161",   /* bytes */
        "7b000000010000000161",   /* text */
        "9b000000010000000100",   /* array */
        "bb00000001000000010000", /* map */
        "5b800000000000000161",   /* 2^63 + 1 */
        "9bffffffffffffffff00",   /* 2^64 - 1 */
    };
    const unsigned char *p;
    unsigned char in[16], *buf = NULL;
    size_t n, len = 0;
    uint64_t v;
    int64_t s;
    fv_dec d;
    fv_enc e;

    for (size_t i = 0; i < sizeof wrap / sizeof wrap[0]; i++) {
        if (decode_hex(wrap[i]) == FV_OK)
            fprintf(stderr, "  accepted %s\n", wrap[i]);
        CHECK(decode_hex(wrap[i]) != FV_OK);
    }
    /* the typed readers too */
    memcpy(in, "\x5b\x00\x00\x00\x01\x00\x00\x00\x01\x61", 10);
    fv_dec_init(&d, in, 10);
    CHECK_EQ(fv_dec_bytes(&d, &p, &n), FV_ECORRUPT);
    memcpy(in, "\x9b\x00\x00\x00\x01\x00\x00\x00\x01\x00", 10);
    fv_dec_init(&d, in, 10);
    CHECK_EQ(fv_dec_array(&d, &n), FV_ECORRUPT);
    /* a 4-byte length just under 2^32 with little behind it */
    memcpy(in, "\x5a\xff\xff\xff\xfe\x61", 6);
    fv_dec_init(&d, in, 6);
    CHECK_EQ(fv_dec_bytes(&d, &p, &n), FV_ECORRUPT);

    /* Integers past 32 bits round-trip (sizes, offsets, times). */
    fv_enc_init(&e);
    fv_enc_uint(&e, 5 * GIB + 7);
    fv_enc_uint(&e, UINT64_MAX);
    fv_enc_int(&e, INT64_MIN);
    fv_enc_int(&e, (int64_t)4102444800); /* 2100-01-01: past a 32-bit time_t */
    CHECK_EQ(fv_enc_finish(&e, &buf, &len), FV_OK);
    fv_dec_init(&d, buf, len);
    CHECK(fv_dec_uint(&d, &v) == FV_OK && v == 5 * GIB + 7);
    CHECK(fv_dec_uint(&d, &v) == FV_OK && v == UINT64_MAX);
    CHECK(fv_dec_int(&d, &s) == FV_OK && s == INT64_MIN);
    CHECK(fv_dec_int(&d, &s) == FV_OK && s == 4102444800);
    CHECK_EQ(fv_dec_finish(&d), FV_OK);
    fv_enc_free_buf(buf, len);
}

struct first_progress {
    int calls;
    uint64_t done, total;
};

static int cancel_at_first(uint64_t done, uint64_t total, void *payload)
{
    struct first_progress *fp = payload;
    if (fp->calls++ == 0) {
        fp->done = done;
        fp->total = total;
    }
    return 1;
}

static int count_cb(const fv_record *r, void *payload)
{
    (void)r;
    (*(int *)payload)++;
    return 0;
}

/* An attachment file past 4 GiB: it opens, its size is read whole, and it
 * gets the large chunks (FV_MAX_CHUNK_BYTES); the add is canceled after its
 * first chunk, so the test encrypts 512 KiB, not 4 GiB. */
static void test_attachment_past_4gib(void)
{
    char dir[320], path[320];
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_attachment_source src = {0};
    struct first_progress fp = {0, 0, 0};
    unsigned char id[FV_ID_BYTES];
    fv_vault *v = NULL;
    uint64_t size = 4 * GIB + 1;
    int n = 0;

    snprintf(path, sizeof path, "%s/video.mp4", root);
    snprintf(dir, sizeof dir, "%s/vault", root);
    if (!sparse_file(path, size)) {
        printf("SKIP attachment past 4 GiB: no sparse file here (%s)\n",
               strerror(errno));
        return;
    }
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, PASS, strlen(PASS), &o), FV_OK);
    if (!v)
        return;
    src.path = path;
    in.title = "a long video";
    in.attachments = &src;
    in.nattachments = 1;
    in.progress = cancel_at_first;
    in.progress_payload = &fp;
    CHECK_EQ(fv_record_add(v, id, &in), FV_ECANCELED);
    CHECK_EQ(fp.calls, 1);
    CHECK_EQ(fp.total, size);
    CHECK_EQ(fp.done, FV_MAX_CHUNK_BYTES);
    /* nothing half-stored */
    CHECK_EQ(fv_vault_list(v, count_cb, &n), FV_OK);
    CHECK_EQ(n, 0);
    fv_vault_close(v);
    unlink(path);
}

/* The server's pack files past 4 GiB: a chunk appended at an offset that
 * does not fit 32 bits is indexed, found and read back at that offset, by
 * this handle and by a new one, which also appends after it. */
static void test_pack_past_4gib(void)
{
    char sdir[320], db[340], chunks[340], pack[360];
    unsigned char data[3000], back[3000], hash[32];
    fv_sstore *st = NULL, *st2 = NULL;
    fv_sstore_chunkloc loc = {0, 0, 0}, found = {0, 0, 0};
    uint64_t start = 4 * GIB + 5;

    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7 + 1);
    memset(hash, 0xab, sizeof hash);
    snprintf(sdir, sizeof sdir, "%s/server", root);
    snprintf(db, sizeof db, "%s/server.db", sdir);
    snprintf(chunks, sizeof chunks, "%s/chunks", sdir);
    snprintf(pack, sizeof pack, "%s/pack-000001", chunks);
    CHECK(mkdir(sdir, 0700) == 0 && mkdir(chunks, 0700) == 0);
    if (!sparse_file(pack, start)) {
        printf("SKIP pack past 4 GiB: no sparse file here (%s)\n",
               strerror(errno));
        return;
    }
    CHECK_EQ(fv_sstore_open(&st, db, 1), FV_OK);
    if (!st)
        return;
    fv_sstore_chunk_set_pack_max(st, 8 * GIB);
    CHECK_EQ(fv_sstore_chunk_append(st, data, sizeof data, &loc), FV_OK);
    CHECK_EQ(loc.pack, 1);
    CHECK(loc.off == start);
    CHECK_EQ(fv_sstore_chunk_sync(st), FV_OK);
    CHECK_EQ(fv_sstore_begin(st), FV_OK);
    CHECK_EQ(fv_sstore_chunk_add(st, hash, &loc), FV_OK);
    CHECK_EQ(fv_sstore_commit(st), FV_OK);
    CHECK_EQ(fv_sstore_chunk_find(st, hash, NULL, &found), FV_OK);
    CHECK(found.pack == 1 && found.off == start && found.len == sizeof data);
    memset(back, 0, sizeof back);
    CHECK_EQ(fv_sstore_chunk_read(st, &found, back), FV_OK);
    CHECK(memcmp(back, data, sizeof data) == 0);
    fv_sstore_close(st);

    /* A new handle: reads the pack through its own descriptor, and measures
     * the pack (st_size past 4 GiB) to append after the chunk. */
    CHECK_EQ(fv_sstore_open(&st2, db, 0), FV_OK);
    if (!st2)
        return;
    fv_sstore_chunk_set_pack_max(st2, 8 * GIB);
    CHECK_EQ(fv_sstore_chunk_find(st2, hash, NULL, &found), FV_OK);
    CHECK(found.off == start);
    memset(back, 0, sizeof back);
    CHECK_EQ(fv_sstore_chunk_read(st2, &found, back), FV_OK);
    CHECK(memcmp(back, data, sizeof data) == 0);
    CHECK_EQ(fv_sstore_chunk_append(st2, data, 100, &loc), FV_OK);
    CHECK(loc.pack == 1 && loc.off == start + sizeof data);
    CHECK_EQ(fv_sstore_chunk_sync(st2), FV_OK);
    memset(back, 0, sizeof back);
    CHECK_EQ(fv_sstore_chunk_read(st2, &loc, back), FV_OK);
    CHECK(memcmp(back, data, 100) == 0);
    fv_sstore_close(st2);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char cmd[300];
    snprintf(root, sizeof root, "%s/fv-test-widths-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_types();
    test_dates();
    test_cbor_lengths();
    test_attachment_past_4gib();
    test_pack_past_4gib();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_summary("test_widths");
}
