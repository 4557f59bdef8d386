/* export.c - fv_export (fieldvault.h): the records that pass a filter as one
 * JSON document, a CSV table, a static HTML report or an evidence directory
 * (docs/EXPORT.md).
 *
 * Streaming: each record is written as the query visits it, so memory does
 * not grow with the record count (the HTML chart keeps one counter per month
 * and per tag, not per record). Output is built under a temporary name in
 * the same directory and appears under its own name only when complete:
 * files through link() (never replacing one), directories through rename().
 * Everything written is created 0600 / 0700: an export is plaintext. Every
 * string from a record is hostile: escaped for its format, never used as a
 * path. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
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

#define EXPORT_VERSION 1 /* of the JSON, CSV, HTML and manifest layouts */
#define OUT_BUF 65536
#define MAX_TAG_STATS 4096 /* distinct tags counted for the chart */
#define SAFE_NAME_BYTES 96

/* ---- a buffered writer with a sticky error ------------------------------- */

struct out {
    int fd;             /* or, when -1: */
    fv_write_fn write;
    void *payload;
    unsigned char *buf; /* may hold plaintext: wiped on close */
    size_t n;
    int err;
};

static int out_open(struct out *o, int fd, fv_write_fn write, void *payload)
{
    memset(o, 0, sizeof *o);
    o->fd = fd;
    o->write = write;
    o->payload = payload;
    o->buf = malloc(OUT_BUF);
    return o->buf ? FV_OK : FV_ENOMEM;
}

static void out_flush(struct out *o)
{
    if (!o->err && o->n) {
        if (o->fd >= 0)
            o->err = fv_write_all(o->fd, o->buf, o->n);
        else if (o->write(o->buf, o->n, o->payload))
            o->err = FV_EIO;
    }
    if (o->buf)
        fv_wipe(o->buf, o->n);
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
    int rc;
    out_flush(o);
    if (o->fd >= 0) {
        if (!o->err && fsync(o->fd) != 0)
            o->err = fv_errno_rc(errno);
        close(o->fd);
        o->fd = -1;
    }
    free(o->buf);
    o->buf = NULL;
    rc = o->err;
    return rc;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    return fv_utf8_seq(s, n, NULL);
}

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD for a byte that is not UTF-8 */

/* A JSON string literal: '"', '\\' and every control character escaped. */
static void out_json(struct out *o, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    out_raw(o, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t k, run = i;
        /* Printable ASCII but '"' and '\\' goes out as it is, a run at a
         * time (most text is that). */
        while (run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' &&
               s[run] != '\\')
            run++;
        if (run > i) {
            out_raw(o, s + i, run - i);
            i = run;
            continue;
        }
        k = utf8_len(s + i, n - i);
        if (k == 0) {
            out_s(o, REPLACEMENT);
            i++;
        } else if (s[i] == '"' || s[i] == '\\') {
            out_raw(o, "\\", 1);
            out_raw(o, s + i, 1);
            i++;
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            const char *e = s[i] == '\n' ? "\\n" : s[i] == '\t' ? "\\t"
                          : s[i] == '\r' ? "\\r" : NULL;
            if (e)
                out_s(o, e);
            else
                out_fmt(o, "\\u%04x", s[i]);
            i++;
        } else if (k == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0) {
            out_fmt(o, "\\u%04x", s[i + 1]); /* C1 controls */
            i += 2;
        } else {
            out_raw(o, s + i, k);
            i += k;
        }
    }
    out_raw(o, "\"", 1);
}

static void out_jsonz(struct out *o, const char *s) { out_json(o, s, strlen(s)); }

/* HTML text or attribute value: & < > " ' escaped; NUL and other control
 * characters but newline and tab dropped. */
static void out_html(struct out *o, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(s + i, n - i);
        const char *e = NULL;
        if (k == 0) {
            out_s(o, REPLACEMENT);
            i++;
            continue;
        }
        switch (s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        case '\'': e = "&#39;"; break;
        case '\n': e = "\n"; break;
        case '\t': e = "\t"; break;
        default:
            if (s[i] < 0x20 || s[i] == 0x7f || (k == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0))
                e = "";
        }
        if (e)
            out_s(o, e);
        else
            out_raw(o, s + i, k);
        i += k;
    }
}

static void out_htmlz(struct out *o, const char *s) { out_html(o, s, strlen(s)); }

/* One CSV cell (RFC 4180): always quoted, quotes doubled. A cell that a
 * spreadsheet would read as a formula (= + - @, or a leading tab or CR)
 * gets a leading apostrophe. */
static void out_csv_begin(struct out *o, const char *first)
{
    out_raw(o, "\"", 1);
    if (first && strchr("=+-@\t\r", first[0]) && first[0])
        out_raw(o, "'", 1);
}

static void out_csv_part(struct out *o, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\0') {
            out_raw(o, s + start, i - start);
            if (s[i] == '"')
                out_raw(o, "\"\"", 2);
            start = i + 1;
        }
    }
    out_raw(o, s + start, n - start);
}

static void out_csv_end(struct out *o, int last)
{
    out_raw(o, last ? "\"\r\n" : "\",", last ? 3 : 2);
}

static void out_csv_cell(struct out *o, const char *s, size_t n, int last)
{
    char first[2] = {n ? s[0] : 0, 0};
    out_csv_begin(o, first);
    out_csv_part(o, s, n);
    out_csv_end(o, last);
}

/* ---- small helpers -------------------------------------------------------- */

/* Through the project's 64-bit date routine: gmtime_r with armhf's 32-bit
 * time_t gets every date past 2038 wrong. */
static void iso_time(char out[32], int64_t t)
{
    fv_time_iso(out, t);
}

static void out_time_json(struct out *o, int64_t t)
{
    char b[32];
    iso_time(b, t);
    if (b[0] == '?')
        out_s(o, "null");
    else
        out_jsonz(o, b);
}

static void out_id_json(struct out *o, const unsigned char id[FV_ID_BYTES])
{
    char hex[FV_ID_HEX_BYTES];
    fv_id_to_hex(hex, id);
    out_jsonz(o, hex);
}

static void out_hex(struct out *o, const unsigned char *p, size_t n)
{
    char b[3];
    for (size_t i = 0; i < n; i++) {
        fv_hex_encode(b, sizeof b, p + i, 1);
        out_raw(o, b, 2);
    }
}

static const char *state_name(int state)
{
    const char *s = fv_state_name(state);
    return s ? s : "new";
}

/* A file name made only of [A-Za-z0-9._-], prefixed with its index so that
 * it is unique within its record and never starts with '.'. */
static void safe_name(char out[SAFE_NAME_BYTES + 16], size_t index,
                      const char *name)
{
    size_t n = (size_t)snprintf(out, 16, "%zu-", index);
    size_t len = strlen(name), start = 0;
    /* Keep the end of a long name: that is where its extension is. */
    if (len > SAFE_NAME_BYTES)
        start = len - SAFE_NAME_BYTES;
    for (size_t i = start; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
}

static int is_image(const char *name)
{
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".gif", ".webp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t k = strlen(ext[i]);
        if (n > k && strcasecmp(name + n - k, ext[i]) == 0)
            return 1;
    }
    return 0;
}

/* A new file `name` in directory fd `dir`, 0600. */
static int create_at(int dir, const char *name, int *fd)
{
    *fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                 0600);
    return *fd < 0 ? (errno == EEXIST ? FV_EEXIST : fv_errno_rc(errno)) : FV_OK;
}

/* Removes a directory tree that this file created (no symlinks followed). */
static void remove_tree_at(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d;
    struct dirent *de;

    if (fd < 0) {
        unlinkat(parent, name, 0);
        return;
    }
    if (!(d = fdopendir(fd))) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(fd, de->d_name, 0) != 0)
            remove_tree_at(fd, de->d_name);
    }
    closedir(d);
    unlinkat(parent, name, AT_REMOVEDIR);
}

static void remove_tree(const char *path)
{
    remove_tree_at(AT_FDCWD, path);
}

/* ---- the export ------------------------------------------------------------ */

struct month_count {
    int month; /* year * 12 + month (0..11) */
    uint64_t n;
};

struct tag_count {
    char *tag; /* plaintext: wiped on free */
    uint64_t n;
};

struct exp {
    fv_vault *v;
    const fv_export_options *opt;
    struct out o;    /* the file; HTML: index rows; evidence: manifest */
    int dir;         /* HTML, evidence: the temporary directory */
    int sub[3];      /* HTML: records/, files/; evidence: envelopes/, chunks/ */
    uint64_t done, total;
    int rc;          /* the first failure inside a callback */
    unsigned char *chunk; /* evidence: a chunk buffer */
    unsigned char device[FV_ID_BYTES];
    /* HTML chart */
    struct month_count *months;
    size_t nmonths, cap_months;
    struct tag_count *tags;
    size_t ntags, cap_tags;
    uint64_t other_tags;
    /* per-record sections (JSON) */
    size_t nitems;
    unsigned char heads[64][FV_ID_BYTES]; /* the record's heads, as listed */
    size_t nheads;
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

static int progress(struct exp *x)
{
    x->done++;
    if (x->opt->progress && x->opt->progress(x->done, x->total,
                                             x->opt->progress_payload))
        return FV_ECANCELED;
    return FV_OK;
}

/* The history of a record whose only revision is its genesis, which is
 * its one head: that revision is `r` itself, so it need not be read and
 * decrypted again (most records are never edited). Otherwise the vault's
 * history. */
static int record_history(struct exp *x, const fv_record *r, fv_revision_fn fn,
                          void *payload)
{
    fv_revision rev;
    int rc;
    if (r->nheads != 1 || memcmp(r->id, r->revision, FV_ID_BYTES) != 0) {
        rc = fv_record_history(x->v, r->id, fn, payload);
        /* The record was just read: a history that cannot be found is a
         * damaged vault, not a missing record. */
        return rc == FV_ENOTFOUND
                   ? fv_v_err(x->v, FV_ECORRUPT, "a record's history is incomplete "
                                                 "(run 'fieldvault verify')")
                   : rc;
    }
    memset(&rev, 0, sizeof rev);
    memcpy(rev.id, r->revision, FV_ID_BYTES);
    memcpy(rev.author, r->author, FV_ID_BYTES);
    rev.kind = FV_REVISION;
    rev.time = r->modified;
    rev.head = 1;
    return fn(&rev, payload) ? FV_ECANCELED : FV_OK;
}

/* ---- JSON ---- */

static int json_history_cb(const fv_revision *rev, void *payload)
{
    struct exp *x = payload;
    struct out *o = &x->o;
    out_s(o, x->nitems++ ? ",\n      {" : "\n      {");
    out_s(o, "\"id\": ");
    out_id_json(o, rev->id);
    out_s(o, ", \"kind\": ");
    out_s(o, rev->kind == FV_TOMBSTONE ? "\"tombstone\"" : "\"revision\"");
    out_s(o, ", \"author\": ");
    if (rev->purged)
        out_s(o, "null");
    else
        out_id_json(o, rev->author);
    out_s(o, ", \"time\": ");
    if (rev->purged)
        out_s(o, "null");
    else
        out_time_json(o, rev->time);
    out_s(o, ", \"parents\": [");
    for (size_t i = 0; i < rev->nparents; i++) {
        if (i)
            out_s(o, ", ");
        out_id_json(o, rev->parents[i]);
    }
    out_fmt(o, "], \"head\": %s, \"purged\": %s}", rev->head ? "true" : "false",
            rev->purged ? "true" : "false");
    if (rev->head && x->nheads < sizeof x->heads / sizeof x->heads[0])
        memcpy(x->heads[x->nheads++], rev->id, FV_ID_BYTES);
    return o->err;
}

static int json_note_cb(const fv_note *n, void *payload)
{
    struct exp *x = payload;
    struct out *o = &x->o;
    out_s(o, x->nitems++ ? ",\n      {" : "\n      {");
    out_s(o, "\"id\": ");
    out_id_json(o, n->id);
    out_s(o, ", \"author\": ");
    out_id_json(o, n->author);
    out_s(o, ", \"time\": ");
    out_time_json(o, n->time);
    out_s(o, ", \"text\": ");
    out_jsonz(o, n->text);
    out_s(o, "}");
    return o->err;
}

static int json_record(struct exp *x, const fv_record *r)
{
    struct out *o = &x->o;
    int rc;

    out_s(o, x->done ? ",\n    {" : "\n    {");
    out_s(o, "\n    \"id\": ");
    out_id_json(o, r->id);
    out_s(o, ",\n    \"revision\": ");
    out_id_json(o, r->revision);
    out_s(o, ",\n    \"author\": ");
    out_id_json(o, r->origin);
    out_s(o, ",\n    \"signer\": ");
    out_id_json(o, r->author);
    out_s(o, ",\n    \"state\": ");
    out_jsonz(o, state_name(r->state));
    out_s(o, ",\n    \"created\": ");
    out_time_json(o, r->created);
    out_s(o, ",\n    \"modified\": ");
    out_time_json(o, r->modified);
    out_s(o, ",\n    \"title\": ");
    out_jsonz(o, r->title);
    out_s(o, ",\n    \"narrative\": ");
    out_json(o, r->narrative, r->narrative_len);
    out_s(o, ",\n    \"fields\": {");
    for (size_t i = 0; i < r->nfields; i++) {
        out_s(o, i ? ", " : "");
        out_jsonz(o, r->fields[i].key);
        out_s(o, ": ");
        out_jsonz(o, r->fields[i].value);
    }
    out_s(o, "},\n    \"tags\": [");
    for (size_t i = 0; i < r->ntags; i++) {
        out_s(o, i ? ", " : "");
        out_jsonz(o, r->tags[i]);
    }
    out_s(o, "],\n    \"attachments\": [");
    for (size_t i = 0; i < r->nattachments; i++) {
        const fv_attachment_info *a = &r->attachments[i];
        out_s(o, i ? ",\n      {" : "\n      {");
        out_s(o, "\"name\": ");
        out_jsonz(o, a->name);
        out_fmt(o, ", \"size\": %llu, \"chunk_bytes\": %lu, \"chunks\": %llu, "
                   "\"chunks_present\": %llu, \"present\": %s}",
                (unsigned long long)a->size, (unsigned long)a->chunk_bytes,
                (unsigned long long)a->chunks,
                (unsigned long long)a->chunks_present,
                a->chunks_present == a->chunks ? "true" : "false");
    }
    out_s(o, r->nattachments ? "\n    ],\n    \"history\": [" : "],\n    \"history\": [");
    x->nitems = 0;
    x->nheads = 0;
    rc = record_history(x, r, json_history_cb, x);
    if (rc)
        return rc == FV_ECANCELED && o->err ? o->err : rc;
    /* Its heads (more than one: concurrent edits, a conflict). */
    out_s(o, x->nitems ? "\n    ],\n    \"heads\": [" : "],\n    \"heads\": [");
    for (size_t i = 0; i < x->nheads; i++) {
        out_s(o, i ? ", " : "");
        out_id_json(o, x->heads[i]);
    }
    out_s(o, "],\n    \"notes\": [");
    x->nitems = 0;
    rc = fv_note_list(x->v, r->id, json_note_cb, x);
    if (rc)
        return rc == FV_ECANCELED && o->err ? o->err : rc;
    out_s(o, x->nitems ? "\n    ]\n    }" : "]\n    }");
    return o->err;
}

/* ---- CSV ---- */

static const char csv_header[] =
    "\"id\",\"created\",\"modified\",\"author\",\"signer\",\"state\",\"title\","
    "\"tags\",\"fields\",\"narrative\",\"attachments\",\"notes\",\"heads\"\r\n";

/* A field as key=value with the value's backslashes and line breaks escaped
 * (\\, \n, \r), so that each field is exactly one line of the cell. */
static void csv_field(struct out *o, const fv_field *f)
{
    const char *v = f->value;
    out_csv_part(o, f->key, strlen(f->key));
    out_raw(o, "=", 1);
    for (size_t i = 0, start = 0;; i++) {
        const char *e = v[i] == '\\' ? "\\\\" : v[i] == '\n' ? "\\n"
                      : v[i] == '\r' ? "\\r" : NULL;
        if (e || v[i] == '\0') {
            out_csv_part(o, v + start, i - start);
            if (!e)
                break;
            out_s(o, e);
            start = i + 1;
        }
    }
}

static int csv_record(struct exp *x, const fv_record *r)
{
    struct out *o = &x->o;
    char hex[FV_ID_HEX_BYTES], t[32];

    fv_id_to_hex(hex, r->id);
    out_csv_cell(o, hex, strlen(hex), 0);
    iso_time(t, r->created);
    out_csv_cell(o, t, strlen(t), 0);
    iso_time(t, r->modified);
    out_csv_cell(o, t, strlen(t), 0);
    fv_id_to_hex(hex, r->origin);
    out_csv_cell(o, hex, strlen(hex), 0);
    fv_id_to_hex(hex, r->author);
    out_csv_cell(o, hex, strlen(hex), 0);
    out_csv_cell(o, state_name(r->state), strlen(state_name(r->state)), 0);
    out_csv_cell(o, r->title, strlen(r->title), 0);
    /* Tags, fields and attachment names: one a line within the cell. */
    out_csv_begin(o, r->ntags ? r->tags[0] : NULL);
    for (size_t i = 0; i < r->ntags; i++) {
        if (i)
            out_raw(o, "\n", 1);
        out_csv_part(o, r->tags[i], strlen(r->tags[i]));
    }
    out_csv_end(o, 0);
    out_csv_begin(o, r->nfields ? r->fields[0].key : NULL);
    for (size_t i = 0; i < r->nfields; i++) {
        if (i)
            out_raw(o, "\n", 1);
        csv_field(o, &r->fields[i]);
    }
    out_csv_end(o, 0);
    out_csv_cell(o, r->narrative, r->narrative_len, 0);
    out_csv_begin(o, r->nattachments ? r->attachments[0].name : NULL);
    for (size_t i = 0; i < r->nattachments; i++) {
        if (i)
            out_raw(o, "\n", 1);
        out_csv_part(o, r->attachments[i].name, strlen(r->attachments[i].name));
    }
    out_csv_end(o, 0);
    out_fmt(o, "\"%zu\",\"%zu\"\r\n", r->nnotes, r->nheads);
    return o->err;
}

/* ---- HTML ---- */

static const char css[] =
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:70em}\n"
    "table{border-collapse:collapse;margin:1em 0}\n"
    "th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;"
    "vertical-align:top}\n"
    "th{background:#eee}\n"
    ".id{font-family:monospace;font-size:.85em}\n"
    ".narrative{white-space:pre-wrap;border-left:3px solid #999;"
    "padding-left:1em}\n"
    ".note{white-space:pre-wrap}\n"
    "img{max-width:40em;max-height:30em;display:block;margin:.5em 0}\n"
    "svg{display:block;margin:1em 0}\n"
    ".state{font-weight:bold}\n";

static void html_head(struct out *o, const char *title, const char *css_path)
{
    out_s(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<meta name=\"referrer\" content=\"no-referrer\">\n"
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "img-src 'self'; style-src 'self'; media-src 'self'\">\n<title>");
    out_htmlz(o, title);
    out_s(o, "</title>\n<link rel=\"stylesheet\" href=\"");
    out_s(o, css_path);
    out_s(o, "\">\n</head>\n<body>\n");
}

static int count_month(struct exp *x, int64_t t)
{
    fv_civil c;
    int m;
    size_t i;
    fv_civil_from_unix(&c, t);
    if (c.year > 9999 || c.year < 0)
        return FV_OK;
    m = (int)c.year * 12 + c.month - 1;
    for (i = 0; i < x->nmonths && x->months[i].month < m; i++)
        ;
    if (i < x->nmonths && x->months[i].month == m) {
        x->months[i].n++;
        return FV_OK;
    }
    if (x->nmonths == x->cap_months) {
        size_t cap = x->cap_months ? 2 * x->cap_months : 64;
        void *p = realloc(x->months, cap * sizeof *x->months);
        if (!p)
            return FV_ENOMEM;
        x->months = p;
        x->cap_months = cap;
    }
    memmove(&x->months[i + 1], &x->months[i], (x->nmonths - i) * sizeof *x->months);
    x->months[i].month = m;
    x->months[i].n = 1;
    x->nmonths++;
    return FV_OK;
}

static int count_tag(struct exp *x, const char *tag)
{
    for (size_t i = 0; i < x->ntags; i++)
        if (strcmp(x->tags[i].tag, tag) == 0) {
            x->tags[i].n++;
            return FV_OK;
        }
    if (x->ntags == MAX_TAG_STATS) {
        x->other_tags++;
        return FV_OK;
    }
    if (x->ntags == x->cap_tags) {
        size_t cap = x->cap_tags ? 2 * x->cap_tags : 32;
        void *p = realloc(x->tags, cap * sizeof *x->tags);
        if (!p)
            return FV_ENOMEM;
        x->tags = p;
        x->cap_tags = cap;
    }
    if (!(x->tags[x->ntags].tag = strdup(tag)))
        return FV_ENOMEM;
    x->tags[x->ntags++].n = 1;
    return FV_OK;
}

struct html_rec {
    struct exp *x;
    struct out *o;
    size_t n;
};

static int html_history_cb(const fv_revision *rev, void *payload)
{
    struct html_rec *h = payload;
    struct out *o = h->o;
    char t[32], hex[FV_ID_HEX_BYTES];
    if (h->n++ == 0)
        out_s(o, "<h2>History</h2>\n<table>\n<tr><th>revision</th><th>kind</th>"
                 "<th>author</th><th>time</th><th>parents</th></tr>\n");
    fv_id_to_hex(hex, rev->id);
    out_fmt(o, "<tr><td class=\"id\">%s</td><td>%s%s%s</td>", hex,
            rev->kind == FV_TOMBSTONE ? "tombstone" : "revision",
            rev->head ? " (head)" : "", rev->purged ? " (destroyed)" : "");
    fv_id_to_hex(hex, rev->author);
    iso_time(t, rev->time);
    out_fmt(o, "<td class=\"id\">%s</td><td>%s</td><td class=\"id\">",
            rev->purged ? "" : hex, rev->purged ? "" : t);
    for (size_t i = 0; i < rev->nparents; i++) {
        fv_id_to_hex(hex, rev->parents[i]);
        out_fmt(o, "%s%.16s", i ? "<br>" : "", hex);
    }
    out_s(o, "</td></tr>\n");
    return o->err;
}

static int html_note_cb(const fv_note *n, void *payload)
{
    struct html_rec *h = payload;
    struct out *o = h->o;
    char t[32], hex[FV_ID_HEX_BYTES];
    if (h->n++ == 0)
        out_s(o, "<h2>Notes</h2>\n");
    iso_time(t, n->time);
    fv_id_to_hex(hex, n->author);
    out_fmt(o, "<p><b>%s</b> from <span class=\"id\">%.16s</span></p>\n"
               "<div class=\"note\">", t, hex);
    out_htmlz(o, n->text);
    out_s(o, "</div>\n");
    return o->err;
}

/* Copies attachment `a` of record `r` into files/<id>/<safe name>. Sets
 * *copied when the file is complete. */
static int html_attachment(struct exp *x, const fv_record *r, int recdir,
                           size_t idx, const char *safe, int *copied)
{
    const fv_attachment_info *a = &r->attachments[idx];
    int fd, rc;

    *copied = 0;
    if (a->chunks_present < a->chunks)
        return FV_OK; /* still arriving: listed, not copied */
    if ((rc = create_at(recdir, safe, &fd)))
        return exp_fail(x, rc, "an attachment file");
    rc = fv_attachment_read(x->v, r->id, a->name, fv_write_fd_cb, &fd, NULL, NULL);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = exp_fail(x, fv_errno_rc(errno), "an attachment file");
    close(fd);
    if (rc == FV_EINCOMPLETE) {
        unlinkat(recdir, safe, 0);
        return FV_OK;
    }
    *copied = rc == FV_OK;
    return rc;
}

static int html_record(struct exp *x, const fv_record *r)
{
    char hex[FV_ID_HEX_BYTES], dev[FV_ID_HEX_BYTES], t[32];
    char name[SAFE_NAME_BYTES + 16];
    struct out page, *ix = &x->o;
    struct html_rec h = {x, &page, 0};
    int fd = -1, recdir = -1, rc;

    fv_id_to_hex(hex, r->id);
    /* The index row. */
    iso_time(t, r->created);
    out_fmt(ix, "<tr><td class=\"id\"><a href=\"records/%s.html\">%.12s</a></td>"
                "<td>%s</td><td class=\"state\">%s</td><td>",
            hex, hex, t, state_name(r->state));
    out_htmlz(ix, r->title);
    out_s(ix, "</td><td>");
    for (size_t i = 0; i < r->ntags; i++) {
        out_s(ix, i ? ", " : "");
        out_htmlz(ix, r->tags[i]);
    }
    fv_id_to_hex(dev, r->origin);
    out_fmt(ix, "</td><td class=\"id\">%.12s</td><td>%zu</td></tr>\n", dev,
            r->nattachments);
    if ((rc = count_month(x, r->created)))
        return rc;
    for (size_t i = 0; i < r->ntags; i++)
        if ((rc = count_tag(x, r->tags[i])))
            return rc;

    /* The record's page. */
    snprintf(name, sizeof name, "%s.html", hex);
    if ((rc = create_at(x->sub[0], name, &fd)))
        return exp_fail(x, rc, "a record page");
    if ((rc = out_open(&page, fd, NULL, NULL))) {
        close(fd);
        return rc;
    }
    html_head(&page, r->title, "../style.css");
    out_s(&page, "<p><a href=\"../index.html\">All testimonies</a></p>\n<h1>");
    out_htmlz(&page, r->title);
    out_fmt(&page, "</h1>\n<table>\n<tr><th>record</th><td class=\"id\">%s</td></tr>\n",
            hex);
    fv_id_to_hex(hex, r->revision);
    out_fmt(&page, "<tr><th>revision</th><td class=\"id\">%s</td></tr>\n", hex);
    fv_id_to_hex(hex, r->origin);
    out_fmt(&page, "<tr><th>created by device</th><td class=\"id\">%s</td></tr>\n", hex);
    fv_id_to_hex(hex, r->author);
    out_fmt(&page, "<tr><th>revision by device</th><td class=\"id\">%s</td></tr>\n", hex);
    iso_time(t, r->created);
    out_fmt(&page, "<tr><th>created</th><td>%s</td></tr>\n", t);
    iso_time(t, r->modified);
    out_fmt(&page, "<tr><th>modified</th><td>%s</td></tr>\n", t);
    out_fmt(&page, "<tr><th>review state</th><td class=\"state\">%s</td></tr>\n",
            state_name(r->state));
    if (r->nheads > 1)
        out_fmt(&page, "<tr><th>conflict</th><td>%zu concurrent heads</td></tr>\n",
                r->nheads);
    out_s(&page, "<tr><th>tags</th><td>");
    for (size_t i = 0; i < r->ntags; i++) {
        out_s(&page, i ? ", " : "");
        out_htmlz(&page, r->tags[i]);
    }
    out_s(&page, "</td></tr>\n</table>\n");
    if (r->nfields) {
        out_s(&page, "<h2>Fields</h2>\n<table>\n");
        for (size_t i = 0; i < r->nfields; i++) {
            out_s(&page, "<tr><th>");
            out_htmlz(&page, r->fields[i].key);
            out_s(&page, "</th><td class=\"note\">");
            out_htmlz(&page, r->fields[i].value);
            out_s(&page, "</td></tr>\n");
        }
        out_s(&page, "</table>\n");
    }
    out_s(&page, "<h2>Narrative</h2>\n<div class=\"narrative\">");
    out_html(&page, r->narrative, r->narrative_len);
    out_s(&page, "</div>\n");
    if (r->nattachments) {
        fv_id_to_hex(hex, r->id);
        if (mkdirat(x->sub[1], hex, 0700) != 0 ||
            (recdir = openat(x->sub[1], hex, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            rc = exp_fail(x, fv_errno_rc(errno), "an attachment directory");
            goto done;
        }
        out_s(&page, "<h2>Attachments</h2>\n<ul>\n");
        for (size_t i = 0; i < r->nattachments; i++) {
            const fv_attachment_info *a = &r->attachments[i];
            int copied;
            safe_name(name, i, a->name);
            if ((rc = html_attachment(x, r, recdir, i, name, &copied)))
                goto done;
            out_s(&page, "<li>");
            if (copied)
                out_fmt(&page, "<a href=\"../files/%s/%s\">", hex, name);
            out_htmlz(&page, a->name);
            out_s(&page, copied ? "</a>" : "");
            out_fmt(&page, " (%llu bytes)", (unsigned long long)a->size);
            if (!copied)
                out_fmt(&page, " &mdash; not fully arrived (%llu of %llu chunks)",
                        (unsigned long long)a->chunks_present,
                        (unsigned long long)a->chunks);
            else if (is_image(name)) {
                out_fmt(&page, "<img src=\"../files/%s/%s\" alt=\"", hex, name);
                out_htmlz(&page, a->name);
                out_s(&page, "\">");
            }
            out_s(&page, "</li>\n");
        }
        out_s(&page, "</ul>\n");
    }
    if ((rc = record_history(x, r, html_history_cb, &h)))
        goto done;
    if (h.n)
        out_s(&page, "</table>\n");
    h.n = 0;
    if ((rc = fv_note_list(x->v, r->id, html_note_cb, &h)))
        goto done;
    out_s(&page, "</body>\n</html>\n");
done:
    if (recdir >= 0) {
        if (rc == FV_OK && fsync(recdir) != 0)
            rc = exp_fail(x, fv_errno_rc(errno), "an attachment directory");
        close(recdir);
    }
    {
        int crc = out_close(&page);
        if (rc == FV_ECANCELED && crc)
            rc = crc; /* a write failed inside a callback */
        if (rc == FV_OK && crc)
            rc = exp_fail(x, crc, "a record page");
    }
    return rc;
}

/* Bars of testimonies per month (per year over a long span), and the most
 * frequent tags, as inline SVG: no script, no external resource. */
static void html_chart(struct exp *x, struct out *o)
{
    int first, last, by_year;
    uint64_t max = 1;
    size_t nb, i;

    if (x->nmonths == 0)
        return;
    first = x->months[0].month;
    last = x->months[x->nmonths - 1].month;
    by_year = last - first >= 60;
    if (by_year) {
        first /= 12;
        last /= 12;
    }
    if (last - first >= 400)
        first = last - 399; /* older counts are left out of the picture */
    nb = (size_t)(last - first + 1);
    uint64_t *bars = calloc(nb, sizeof *bars);
    if (!bars)
        return;
    for (i = 0; i < x->nmonths; i++) {
        int k = by_year ? x->months[i].month / 12 : x->months[i].month;
        if (k >= first)
            bars[k - first] += x->months[i].n;
    }
    for (i = 0; i < nb; i++)
        if (bars[i] > max)
            max = bars[i];
    /* Room on the right and below for the last label, turned 45 degrees. */
    size_t bw = nb > 60 ? 6 : 16, w = nb * (bw + 2) + 120, hgt = 160;
    out_fmt(o, "<h2>Testimonies over time (by %s)</h2>\n", by_year ? "year" : "month");
    out_fmt(o, "<svg width=\"%zu\" height=\"%zu\" viewBox=\"0 0 %zu %zu\" role=\"img\" "
               "aria-label=\"testimonies per %s\">\n",
            w, hgt + 70, w, hgt + 70, by_year ? "year" : "month");
    out_fmt(o, "<text x=\"0\" y=\"12\" font-size=\"11\">%llu</text>\n",
            (unsigned long long)max);
    for (i = 0; i < nb; i++) {
        size_t bh = (size_t)(bars[i] * hgt / max);
        int k = first + (int)i;
        char label[16];
        if (by_year)
            snprintf(label, sizeof label, "%d", k);
        else
            snprintf(label, sizeof label, "%d-%02d", k / 12, k % 12 + 1);
        out_fmt(o, "<rect x=\"%zu\" y=\"%zu\" width=\"%zu\" height=\"%zu\" "
                   "fill=\"#4a7ab5\"><title>%s: %llu</title></rect>\n",
                40 + i * (bw + 2), 20 + hgt - bh, bw, bh, label,
                (unsigned long long)bars[i]);
        if (i == 0 || i + 1 == nb || nb <= 24)
            out_fmt(o, "<text x=\"%zu\" y=\"%zu\" font-size=\"9\" "
                       "transform=\"rotate(45 %zu %zu)\">%s</text>\n",
                    40 + i * (bw + 2), hgt + 30, 40 + i * (bw + 2), hgt + 30, label);
    }
    out_s(o, "</svg>\n");
    free(bars);

    /* The twenty most frequent tags. */
    if (x->ntags == 0)
        return;
    size_t shown = x->ntags < 20 ? x->ntags : 20;
    for (i = 0; i < shown; i++) { /* partial selection sort, by count */
        size_t best = i;
        for (size_t j = i + 1; j < x->ntags; j++)
            if (x->tags[j].n > x->tags[best].n)
                best = j;
        struct tag_count tmp = x->tags[i];
        x->tags[i] = x->tags[best];
        x->tags[best] = tmp;
    }
    max = x->tags[0].n;
    out_fmt(o, "<h2>Testimonies by tag%s</h2>\n", x->ntags > shown ? " (the 20 most used)" : "");
    out_fmt(o, "<svg width=\"640\" height=\"%zu\" viewBox=\"0 0 640 %zu\" role=\"img\" "
               "aria-label=\"testimonies per tag\">\n", shown * 22 + 10, shown * 22 + 10);
    for (i = 0; i < shown; i++) {
        size_t bl = (size_t)(x->tags[i].n * 380 / max);
        out_fmt(o, "<text x=\"0\" y=\"%zu\" font-size=\"12\">", i * 22 + 18);
        /* Long tags are cut at a character boundary for the label. */
        size_t n = strlen(x->tags[i].tag);
        if (n > 30) {
            n = 30;
            while (n > 0 && ((unsigned char)x->tags[i].tag[n] & 0xc0) == 0x80)
                n--;
        }
        out_html(o, x->tags[i].tag, n);
        out_fmt(o, "</text>\n<rect x=\"200\" y=\"%zu\" width=\"%zu\" height=\"16\" "
                   "fill=\"#7aa35a\"></rect>\n<text x=\"%zu\" y=\"%zu\" "
                   "font-size=\"12\">%llu</text>\n",
                i * 22 + 5, bl, 206 + bl, i * 22 + 18,
                (unsigned long long)x->tags[i].n);
    }
    out_s(o, "</svg>\n");
    if (x->other_tags)
        out_fmt(o, "<p>%llu uses of further tags are not counted.</p>\n",
                (unsigned long long)x->other_tags);
}

/* index.html: the head and chart, then the rows gathered in index.rows. */
static int html_finish(struct exp *x)
{
    char t[32];
    struct out o;
    unsigned char buf[16384];
    int fd, rows, rc;
    ssize_t n;

    if ((rc = create_at(x->dir, "index.html", &fd)))
        return exp_fail(x, rc, "index.html");
    if ((rc = out_open(&o, fd, NULL, NULL))) {
        close(fd);
        return rc;
    }
    html_head(&o, "FieldVault testimonies", "style.css");
    iso_time(t, fv_v_now());
    out_fmt(&o, "<h1>Testimonies</h1>\n<p>%llu testimon%s, exported %s.</p>\n",
            (unsigned long long)x->done, x->done == 1 ? "y" : "ies", t);
    html_chart(x, &o);
    out_s(&o, "<h2>All testimonies</h2>\n<table>\n<tr><th>record</th><th>created</th>"
              "<th>state</th><th>title</th><th>tags</th><th>device</th>"
              "<th>attachments</th></tr>\n");
    rows = openat(x->dir, "index.rows", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (rows < 0)
        o.err = fv_errno_rc(errno);
    while (rows >= 0 && !o.err && (n = read(rows, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            o.err = FV_EIO;
            break;
        }
        out_raw(&o, buf, (size_t)n);
    }
    fv_wipe(buf, sizeof buf);
    if (rows >= 0)
        close(rows);
    unlinkat(x->dir, "index.rows", 0);
    out_s(&o, "</table>\n</body>\n</html>\n");
    if ((rc = out_close(&o)))
        return exp_fail(x, rc, "index.html");
    if ((rc = create_at(x->dir, "style.css", &fd)))
        return exp_fail(x, rc, "style.css");
    rc = fv_write_all(fd, css, sizeof css - 1);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    return exp_fail(x, rc, "style.css");
}

/* ---- evidence ---- */

static int write_file_at(int dir, const char *name, const void *p, size_t n)
{
    int fd, rc = create_at(dir, name, &fd);
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

static int record_cb(const fv_record *r, void *payload)
{
    struct exp *x = payload;
    int rc;
    switch (x->opt->format) {
    case FV_EXPORT_JSON: rc = json_record(x, r); break;
    case FV_EXPORT_CSV: rc = csv_record(x, r); break;
    case FV_EXPORT_HTML: rc = html_record(x, r); break;
    default: rc = evidence_record(x, r); break;
    }
    if (rc == FV_OK && x->o.err)
        rc = x->o.err;
    if (rc == FV_OK)
        rc = progress(x);
    if (rc && x->rc == FV_OK)
        x->rc = rc;
    return rc != FV_OK;
}

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

static void out_header_json(struct exp *x, const char *kind)
{
    char t[32];
    iso_time(t, fv_v_now());
    out_fmt(&x->o, "{\n  \"%s\": %d,\n  \"format_version\": %d,\n  \"exported_at\": \"%s\",\n"
                   "  \"vault_device\": ", kind, EXPORT_VERSION, FV_FORMAT_VERSION, t);
    out_id_json(&x->o, x->device);
    out_s(&x->o, ",\n  \"records\": [");
}

/* Makes the temporary directory `tmp` (from its template) with the
 * subdirectories `subs` opened into x->sub. */
static int make_dirs(struct exp *x, char *tmp, const char *const *subs, size_t n)
{
    if (!mkdtemp(tmp))
        return fv_errno_rc(errno);
    chmod(tmp, 0700);
    x->dir = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x->dir < 0)
        return fv_errno_rc(errno);
    for (size_t i = 0; i < n; i++) {
        if (mkdirat(x->dir, subs[i], 0700) != 0)
            return fv_errno_rc(errno);
        x->sub[i] = openat(x->dir, subs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (x->sub[i] < 0)
            return fv_errno_rc(errno);
    }
    return FV_OK;
}

int fv_export(fv_vault *v, const fv_export_options *opt, uint64_t *count)
{
    static const char *const html_subs[] = {"records", "files"};
    static const char *const ev_subs[] = {"envelopes", "chunks"};
    struct exp x;
    char *tmp = NULL, *parent = NULL;
    int is_dir, fd = -1, rc, made = 0, told = 0;
    struct stat sb;

    if (count)
        *count = 0;
    if (!v)
        return FV_EINVAL;
    if (!opt || opt->version < 1 || opt->version > FV_EXPORT_OPTIONS_VERSION ||
        opt->format < FV_EXPORT_JSON || opt->format > FV_EXPORT_EVIDENCE)
        return fv_v_err(v, FV_EINVAL, "unsupported export options or format");
    /* A version 1 caller's options end before `unreadable`. */
    if (opt->version >= 2 && opt->unreadable)
        told = 1;
    is_dir = opt->format == FV_EXPORT_HTML || opt->format == FV_EXPORT_EVIDENCE;
    if ((is_dir || !opt->write) && (!opt->path || !*opt->path))
        return fv_v_err(v, FV_EINVAL, "the export needs an output path");
    if (opt->path && *opt->path && lstat(opt->path, &sb) == 0)
        return fv_v_err(v, FV_EEXIST, "the output %s already exists",
                        is_dir ? "directory" : "file");
    memset(&x, 0, sizeof x);
    x.v = v;
    x.opt = opt;
    x.dir = x.sub[0] = x.sub[1] = x.sub[2] = -1;
    x.o.fd = -1;
    fv_vault_get_device_id(v, x.device);

    if (opt->progress) {
        /* The total, for the progress callback: a first, counting pass. */
        rc = fv_vault_query_ex(v, opt->filter, count_cb,
                               told ? count_unreadable_cb : NULL, &x);
        if (rc)
            goto done;
    }
    if (opt->path && *opt->path) {
        size_t n = strlen(opt->path) + 16;
        if (!(tmp = malloc(n)) || !(parent = fv_path_dir(opt->path))) {
            rc = fv_v_err(v, FV_ENOMEM, "out of memory");
            goto done;
        }
        snprintf(tmp, n, "%s.fvtmp-XXXXXX", opt->path);
        if (is_dir) {
            rc = make_dirs(&x, tmp, opt->format == FV_EXPORT_HTML ? html_subs : ev_subs, 2);
            made = x.dir >= 0;
            if (rc) {
                exp_fail(&x, rc, "the output directory");
                goto done;
            }
            if (opt->format == FV_EXPORT_HTML)
                rc = create_at(x.dir, "index.rows", &fd);
            else
                rc = create_at(x.dir, "manifest.json", &fd);
        } else {
            fd = mkstemp(tmp);
            rc = fd < 0 ? fv_errno_rc(errno) : FV_OK;
            made = fd >= 0;
            if (fd >= 0)
                fchmod(fd, 0600);
        }
        if (rc) {
            exp_fail(&x, rc, "the output file");
            goto done;
        }
    }
    if ((rc = out_open(&x.o, fd, opt->write, opt->write_payload))) {
        rc = fv_v_err(v, rc, "out of memory");
        goto done;
    }
    fd = -1; /* the writer owns it */
    if (opt->format == FV_EXPORT_EVIDENCE &&
        !(x.chunk = malloc(FV_MAX_CHUNK_BYTES + FV_TAG_BYTES))) {
        rc = fv_v_err(v, FV_ENOMEM, "out of memory");
        goto done;
    }
    if (opt->format == FV_EXPORT_JSON)
        out_header_json(&x, "fieldvault_export");
    else if (opt->format == FV_EXPORT_EVIDENCE)
        out_header_json(&x, "fieldvault_evidence");
    else if (opt->format == FV_EXPORT_CSV)
        out_s(&x.o, "\xef\xbb\xbf" /* BOM: spreadsheets then read UTF-8 */), out_s(&x.o, csv_header);

    rc = fv_vault_query_ex(v, opt->filter, record_cb,
                           told ? unreadable_cb : NULL, &x);
    if (x.rc)
        rc = x.rc;
    if (rc == FV_ECORRUPT)
        rc = fv_v_err(v, rc, "some records failed verification and the export "
                             "was not written (run 'fieldvault verify')");
    if (rc)
        goto done;
    if (opt->format == FV_EXPORT_JSON)
        out_fmt(&x.o, "%s],\n  \"record_count\": %llu\n}\n", x.done ? "\n  " : "",
                (unsigned long long)x.done);
    else if (opt->format == FV_EXPORT_EVIDENCE) {
        if ((rc = evidence_finish(&x)))
            goto done;
        out_fmt(&x.o, ",\n  \"record_count\": %llu\n}\n", (unsigned long long)x.done);
    }
    if ((rc = out_close(&x.o))) {
        exp_fail(&x, rc, "the output");
        goto done;
    }
    if (opt->format == FV_EXPORT_HTML && (rc = html_finish(&x)))
        goto done;
    if (!tmp)
        goto done;
    /* Complete: make it appear under its name, durably. */
    if (is_dir) {
        for (int i = 0; rc == FV_OK && i < 3; i++)
            if (x.sub[i] >= 0 && fsync(x.sub[i]) != 0)
                rc = exp_fail(&x, fv_errno_rc(errno), "the output directory");
        if (rc)
            goto done;
        if (fsync(x.dir) != 0) {
            rc = exp_fail(&x, fv_errno_rc(errno), "the output directory");
            goto done;
        }
        /* rename() would replace an empty directory made meanwhile:
         * look first (the remaining race is harmless, nothing is lost). */
        if (lstat(opt->path, &sb) == 0) {
            rc = fv_v_err(v, FV_EEXIST, "the output directory already exists");
            goto done;
        }
        if (rename(tmp, opt->path) != 0) {
            rc = errno == EEXIST || errno == ENOTEMPTY
                     ? fv_v_err(v, FV_EEXIST, "the output directory already exists")
                     : exp_fail(&x, fv_errno_rc(errno), "the output directory");
            goto done;
        }
    } else {
        if (link(tmp, opt->path) != 0) {
            rc = errno == EEXIST ? fv_v_err(v, FV_EEXIST, "the output file already exists")
                                 : exp_fail(&x, fv_errno_rc(errno), "the output file");
            goto done;
        }
        unlink(tmp);
    }
    made = 0;
    if ((rc = fv_fsync_dir(parent))) {
        /* The name may not survive a crash: a file export is taken back
         * rather than reported done (a directory one stays, complete). */
        if (!is_dir)
            unlink(opt->path);
        rc = exp_fail(&x, rc, "the output's directory");
    }
done:
    if (x.o.buf) {
        x.o.err = x.o.err ? x.o.err : FV_ECANCELED; /* nothing more is written */
        out_close(&x.o);
    }
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 3; i++)
        if (x.sub[i] >= 0)
            close(x.sub[i]);
    if (x.dir >= 0)
        close(x.dir);
    if (made) {
        if (is_dir)
            remove_tree(tmp);
        else
            unlink(tmp);
    }
    for (size_t i = 0; i < x.ntags; i++) {
        fv_wipe(x.tags[i].tag, strlen(x.tags[i].tag));
        free(x.tags[i].tag);
    }
    free(x.tags);
    free(x.months);
    free(x.chunk);
    free(tmp);
    free(parent);
    if (rc == FV_OK && count)
        *count = x.done;
    return rc;
}
