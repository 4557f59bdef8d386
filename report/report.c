/* report.c - the JSON, CSV and HTML reports (report.h, docs/EXPORT.md),
 * over the public API.
 *
 * Streaming: each record is written as the query visits it (the HTML chart
 * keeps one counter per month and per tag, not per record). Output is built
 * under a temporary name and appears under its own only when complete
 * (fv_staged). Everything is created 0600 / 0700: a report is plaintext,
 * and the stdio buffers that hold it are the report's own, wiped when
 * closed. Every string from a record is hostile: escaped for its format,
 * never used as a path. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "civil.h"
#include "cli.h"
#include "codec.h"
#include "fileio.h"
#include "json_record.h"
#include "report.h"

#define REPORT_VERSION 2 /* of the JSON layout: 2 = show --json's members */
#define FILE_BUF 65536
#define MAX_TAG_STATS 4096 /* distinct tags counted for the chart */
#define SAFE_NAME_BYTES 96
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD for a byte that is not UTF-8 */

/* ---- files whose buffers are wiped ---------------------------------------- */

typedef struct rfile {
    FILE *f;
    char *buf;
} rfile;

/* Takes `fd` (closed on failure too). */
static int rfile_open(rfile *r, int fd)
{
    r->buf = malloc(FILE_BUF);
    r->f = r->buf ? fdopen(fd, "w") : NULL;
    if (r->f == NULL) {
        close(fd);
        free(r->buf);
        r->buf = NULL;
        return FV_ENOMEM;
    }
    setvbuf(r->f, r->buf, _IOFBF, FILE_BUF);
    return FV_OK;
}

/* Flushes, fsyncs (when `sync`), closes, wipes. FV_OK or the write error. */
static int rfile_close(rfile *r, int sync)
{
    int rc = FV_OK;
    if (r->f == NULL)
        return FV_OK;
    if (fflush(r->f) != 0 || ferror(r->f))
        rc = fv_errno_rc(errno);
    else if (sync && fsync(fileno(r->f)) != 0)
        rc = fv_errno_rc(errno);
    if (fclose(r->f) != 0 && rc == FV_OK)
        rc = fv_errno_rc(errno);
    r->f = NULL;
    fv_wipe(r->buf, FILE_BUF);
    free(r->buf);
    r->buf = NULL;
    return rc;
}

/* ---- escaping -------------------------------------------------------------- */

/* HTML text or attribute value: & < > " ' escaped; NUL and other control
 * characters but newline and tab dropped. */
static void html_put(FILE *o, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        size_t k = fv_utf8_seq(s + i, n - i, NULL);
        const char *e = NULL;
        if (k == 0) {
            fputs(REPLACEMENT, o);
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
            fputs(e, o);
        else
            fwrite(s + i, 1, k, o);
        i += k;
    }
}

static void html_puts(FILE *o, const char *s) { html_put(o, s, strlen(s)); }

/* One CSV cell (RFC 4180): always quoted, quotes doubled. A cell that a
 * spreadsheet would read as a formula (= + - @, or a leading tab or CR)
 * gets a leading apostrophe. */
static void csv_begin(FILE *o, const char *first)
{
    fputc('"', o);
    if (first && first[0] && strchr("=+-@\t\r", first[0]))
        fputc('\'', o);
}

static void csv_part(FILE *o, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\0') {
            fwrite(s + start, 1, i - start, o);
            if (s[i] == '"')
                fputs("\"\"", o);
            start = i + 1;
        }
    }
    fwrite(s + start, 1, n - start, o);
}

static void csv_end(FILE *o, int last) { fputs(last ? "\"\r\n" : "\",", o); }

static void csv_cell(FILE *o, const char *s, size_t n, int last)
{
    char first[2] = {n ? s[0] : 0, 0};
    csv_begin(o, first);
    csv_part(o, s, n);
    csv_end(o, last);
}

/* ---- the report ------------------------------------------------------------ */

struct month_count {
    int month; /* year * 12 + month (0..11) */
    uint64_t n;
};

struct tag_count {
    char *tag; /* plaintext: wiped on free */
    uint64_t n;
};

struct rep {
    fv_vault *v;
    const report_options *opt;
    char *msg;
    rfile o;         /* the file; HTML: the index rows */
    int dir;         /* HTML: the temporary directory */
    int sub[2];      /* HTML: records/, files/ */
    uint64_t done, total;
    int rc;          /* the first failure inside a callback */
    int canceled;    /* the caller's callback asked to stop */
    /* HTML chart */
    struct month_count *months;
    size_t nmonths, cap_months;
    struct tag_count *tags;
    size_t ntags, cap_tags;
    uint64_t other_tags;
    /* per-record lists */
    size_t nitems;
    unsigned char heads[64][FV_ID_BYTES];
    size_t nheads;
};

static int rep_fail(struct rep *x, int rc, const char *what)
{
    if (x->rc == FV_OK && rc != FV_OK) {
        x->rc = rc;
        snprintf(x->msg, REPORT_MSG_BYTES, "cannot write the export (%s): %s", what,
                 rc == FV_ENOSPC ? "disk full" : fv_strerror(rc));
    }
    return rc;
}

static void iso_time(char out[32], int64_t t) { fv_time_iso(out, t); }

static const char *state_name(int state)
{
    const char *s = fv_state_name(state);
    return s ? s : "new";
}

/* The history of a record whose only revision is its genesis, which is its
 * one head: that revision is `r` itself, so it need not be read and
 * decrypted again (most records are never edited). Otherwise the vault's. */
static int record_history(struct rep *x, const fv_record *r, fv_revision_fn fn,
                          void *payload)
{
    fv_revision rev;
    if (r->nheads != 1 || memcmp(r->id, r->revision, FV_ID_BYTES) != 0) {
        int rc = fv_record_history(x->v, r->id, fn, payload);
        /* The record was just read: a history that cannot be found is a
         * damaged vault, not a missing record. */
        if (rc == FV_ENOTFOUND) {
            snprintf(x->msg, REPORT_MSG_BYTES, "a record's history is incomplete "
                                              "(run 'fieldvault verify')");
            return FV_ECORRUPT;
        }
        return rc;
    }
    memset(&rev, 0, sizeof rev);
    memcpy(rev.id, r->revision, FV_ID_BYTES);
    memcpy(rev.author, r->author, FV_ID_BYTES);
    rev.kind = FV_REVISION;
    rev.time = r->modified;
    rev.head = 1;
    return fn(&rev, payload) ? FV_ECANCELED : FV_OK;
}

/* ---- JSON: the members of show --json (cli/json_record.h) ---- */

static int json_history_cb(const fv_revision *rev, void *payload)
{
    struct rep *x = payload;
    FILE *o = x->o.f;
    fputs(x->nitems++ ? ",\n      " : "\n      ", o);
    json_revision_write(o, rev->id, rev->kind, rev->time, rev->author,
                        rev->parents, rev->nparents, rev->head);
    if (rev->head && x->nheads < sizeof x->heads / sizeof x->heads[0])
        memcpy(x->heads[x->nheads++], rev->id, FV_ID_BYTES);
    return ferror(o);
}

static int json_note_cb(const fv_note *n, void *payload)
{
    struct rep *x = payload;
    FILE *o = x->o.f;
    fputs(x->nitems++ ? ",\n      " : "\n      ", o);
    json_note_write(o, n->id, n->record, n->author, n->time, n->text,
                    strlen(n->text));
    return ferror(o);
}

static int json_record(struct rep *x, const fv_record *r)
{
    FILE *o = x->o.f;
    int rc;

    fputs(x->done ? ",\n    {\n" : "\n    {\n", o);
    json_record_members(o, r, "    ", 1);
    fputs("    ", o);
    json_key(o, "revisions");
    fputc('[', o);
    x->nitems = 0;
    x->nheads = 0;
    if ((rc = record_history(x, r, json_history_cb, x)))
        return rc;
    fputs(x->nitems ? "\n    ],\n    " : "],\n    ", o);
    /* Its heads (more than one: concurrent edits, a conflict). */
    json_key(o, "heads");
    fputc('[', o);
    for (size_t i = 0; i < x->nheads; i++) {
        fputs(i ? ", " : "", o);
        json_id(o, x->heads[i]);
    }
    fputs("],\n    ", o);
    json_key(o, "notes");
    fputc('[', o);
    x->nitems = 0;
    if ((rc = fv_note_list(x->v, r->id, json_note_cb, x)))
        return rc;
    fputs(x->nitems ? "\n    ]\n    }" : "]\n    }", o);
    return FV_OK;
}

/* ---- CSV ---- */

static const char csv_header[] =
    "\"id\",\"created\",\"modified\",\"author\",\"signer\",\"state\",\"title\","
    "\"tags\",\"fields\",\"narrative\",\"attachments\",\"notes\",\"heads\"\r\n";

/* A field as key=value with the value's backslashes and line breaks escaped
 * (\\, \n, \r), so that each field is exactly one line of the cell. */
static void csv_field(FILE *o, const fv_field *f)
{
    const char *v = f->value;
    csv_part(o, f->key, strlen(f->key));
    fputc('=', o);
    for (size_t i = 0, start = 0;; i++) {
        const char *e = v[i] == '\\' ? "\\\\" : v[i] == '\n' ? "\\n"
                      : v[i] == '\r' ? "\\r" : NULL;
        if (e || v[i] == '\0') {
            csv_part(o, v + start, i - start);
            if (!e)
                break;
            fputs(e, o);
            start = i + 1;
        }
    }
}

static int csv_record(struct rep *x, const fv_record *r)
{
    FILE *o = x->o.f;
    char hex[FV_ID_HEX_BYTES], t[32];

    fv_id_to_hex(hex, r->id);
    csv_cell(o, hex, strlen(hex), 0);
    iso_time(t, r->created);
    csv_cell(o, t, strlen(t), 0);
    iso_time(t, r->modified);
    csv_cell(o, t, strlen(t), 0);
    fv_id_to_hex(hex, r->origin);
    csv_cell(o, hex, strlen(hex), 0);
    fv_id_to_hex(hex, r->author);
    csv_cell(o, hex, strlen(hex), 0);
    csv_cell(o, state_name(r->state), strlen(state_name(r->state)), 0);
    csv_cell(o, r->title, strlen(r->title), 0);
    /* Tags, fields and attachment names: one a line within the cell. */
    csv_begin(o, r->ntags ? r->tags[0] : NULL);
    for (size_t i = 0; i < r->ntags; i++) {
        if (i)
            fputc('\n', o);
        csv_part(o, r->tags[i], strlen(r->tags[i]));
    }
    csv_end(o, 0);
    csv_begin(o, r->nfields ? r->fields[0].key : NULL);
    for (size_t i = 0; i < r->nfields; i++) {
        if (i)
            fputc('\n', o);
        csv_field(o, &r->fields[i]);
    }
    csv_end(o, 0);
    csv_cell(o, r->narrative, r->narrative_len, 0);
    csv_begin(o, r->nattachments ? r->attachments[0].name : NULL);
    for (size_t i = 0; i < r->nattachments; i++) {
        if (i)
            fputc('\n', o);
        csv_part(o, r->attachments[i].name, strlen(r->attachments[i].name));
    }
    csv_end(o, 0);
    fprintf(o, "\"%zu\",\"%zu\"\r\n", r->nnotes, r->nheads);
    return FV_OK;
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
    "img,video{max-width:40em;max-height:30em;display:block;margin:.5em 0}\n"
    "audio{display:block;margin:.5em 0}\n"
    "svg{display:block;margin:1em 0}\n"
    ".state{font-weight:bold}\n"
    "@media print{audio,video{display:none}}\n";

static void html_head(FILE *o, const char *title, const char *css_path)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"referrer\" content=\"no-referrer\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "img-src 'self'; style-src 'self'; media-src 'self'\">\n<title>", o);
    html_puts(o, title);
    fprintf(o, "</title>\n<link rel=\"stylesheet\" href=\"%s\">\n</head>\n<body>\n",
            css_path);
}

/* A device as the desk shows it: its name from `org devices`, else the
 * first 12 hex digits of its id; the full id in a tooltip. */
static void html_device(struct rep *x, FILE *o, const unsigned char id[FV_ID_BYTES])
{
    char hex[FV_ID_HEX_BYTES];
    const char *name = report_device_name(x->opt->devices, id);
    fv_id_to_hex(hex, id);
    if (name && *name) {
        fprintf(o, "<span title=\"%s\">", hex);
        html_puts(o, name);
        fputs("</span>", o);
    } else {
        fprintf(o, "<span class=\"id\" title=\"%s\">%.12s</span>", hex, hex);
    }
}

static int count_month(struct rep *x, int64_t t)
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

static int count_tag(struct rep *x, const char *tag)
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
    struct rep *x;
    FILE *o;
    size_t n;
};

static int html_history_cb(const fv_revision *rev, void *payload)
{
    struct html_rec *h = payload;
    FILE *o = h->o;
    char t[32], hex[FV_ID_HEX_BYTES];
    if (h->n++ == 0)
        fputs("<h2>History</h2>\n<table>\n<tr><th>revision</th><th>kind</th>"
              "<th>author</th><th>time</th><th>parents</th></tr>\n", o);
    fv_id_to_hex(hex, rev->id);
    fprintf(o, "<tr><td class=\"id\">%s</td><td>%s%s%s</td><td>", hex,
            rev->kind == FV_TOMBSTONE ? "tombstone" : "revision",
            rev->head ? " (head)" : "", rev->purged ? " (destroyed)" : "");
    if (!rev->purged)
        html_device(h->x, o, rev->author);
    iso_time(t, rev->time);
    fprintf(o, "</td><td>%s</td><td class=\"id\">", rev->purged ? "" : t);
    for (size_t i = 0; i < rev->nparents; i++) {
        fv_id_to_hex(hex, rev->parents[i]);
        fprintf(o, "%s%.16s", i ? "<br>" : "", hex);
    }
    fputs("</td></tr>\n", o);
    return ferror(o);
}

static int html_note_cb(const fv_note *n, void *payload)
{
    struct html_rec *h = payload;
    FILE *o = h->o;
    char t[32];
    if (h->n++ == 0)
        fputs("<h2>Notes</h2>\n", o);
    iso_time(t, n->time);
    fprintf(o, "<p><b>%s</b> from ", t);
    html_device(h->x, o, n->author);
    fputs("</p>\n<div class=\"note\">", o);
    html_puts(o, n->text);
    fputs("</div>\n", o);
    return ferror(o);
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

/* Decrypts attachment `idx` of `r` into files/<id>/<safe name>, beside the
 * pages: the user asked for this export. Sets *copied when complete. */
static int html_attachment(struct rep *x, const fv_record *r, int recdir,
                           size_t idx, const char *safe, int *copied)
{
    const fv_attachment_info *a = &r->attachments[idx];
    int fd, rc;

    *copied = 0;
    if (a->chunks_present < a->chunks)
        return FV_OK; /* still arriving: listed, not copied */
    if ((rc = fv_create_at(recdir, safe, &fd)))
        return rep_fail(x, rc, "an attachment file");
    rc = fv_attachment_read(x->v, r->id, a->name, fv_write_fd_cb, &fd, NULL, NULL);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = rep_fail(x, fv_errno_rc(errno), "an attachment file");
    close(fd);
    if (rc == FV_EINCOMPLETE) {
        unlinkat(recdir, safe, 0);
        return FV_OK;
    }
    *copied = rc == FV_OK;
    return rc;
}

/* An attachment on the record's page: a player or the picture, as the desk
 * shows it, with a link to the file. */
static void html_attachment_item(FILE *o, const char *hex, const char *file,
                                 const fv_attachment_info *a, int copied)
{
    int media;
    report_media_type(a->name, &media);
    fputs("<li>", o);
    if (copied)
        fprintf(o, "<a href=\"../files/%s/%s\">", hex, file);
    html_puts(o, a->name);
    fputs(copied ? "</a>" : "", o);
    fprintf(o, " (%llu bytes)", (unsigned long long)a->size);
    if (!copied) {
        fprintf(o, " &mdash; not fully arrived (%llu of %llu chunks)",
                (unsigned long long)a->chunks_present, (unsigned long long)a->chunks);
    } else if (media == REPORT_IMAGE) {
        fprintf(o, "<img src=\"../files/%s/%s\" alt=\"", hex, file);
        html_puts(o, a->name);
        fputs("\">", o);
    } else if (media == REPORT_AUDIO || media == REPORT_VIDEO) {
        const char *el = media == REPORT_AUDIO ? "audio" : "video";
        fprintf(o, "<%s controls preload=\"metadata\" src=\"../files/%s/%s\" "
                   "title=\"", el, hex, file);
        html_puts(o, a->name);
        fprintf(o, "\"></%s>", el);
    }
    fputs("</li>\n", o);
}

static int html_record(struct rep *x, const fv_record *r)
{
    char hex[FV_ID_HEX_BYTES], t[32];
    char name[SAFE_NAME_BYTES + 16];
    FILE *ix = x->o.f;
    rfile page = {NULL, NULL};
    struct html_rec h = {x, NULL, 0};
    int fd = -1, recdir = -1, rc;

    fv_id_to_hex(hex, r->id);
    /* The index row. */
    iso_time(t, r->created);
    fprintf(ix, "<tr><td class=\"id\"><a href=\"records/%s.html\">%.12s</a></td>"
                "<td>%s</td><td class=\"state\">%s</td><td>",
            hex, hex, t, state_name(r->state));
    html_puts(ix, r->title);
    fputs("</td><td>", ix);
    for (size_t i = 0; i < r->ntags; i++) {
        fputs(i ? ", " : "", ix);
        html_puts(ix, r->tags[i]);
    }
    fputs("</td><td>", ix);
    html_device(x, ix, r->origin);
    fprintf(ix, "</td><td>%zu</td></tr>\n", r->nattachments);
    if ((rc = count_month(x, r->created)))
        return rc;
    for (size_t i = 0; i < r->ntags; i++)
        if ((rc = count_tag(x, r->tags[i])))
            return rc;

    /* The record's page. */
    snprintf(name, sizeof name, "%s.html", hex);
    if ((rc = fv_create_at(x->sub[0], name, &fd)))
        return rep_fail(x, rc, "a record page");
    if ((rc = rfile_open(&page, fd)))
        return rc;
    FILE *o = h.o = page.f;
    html_head(o, r->title, "../style.css");
    fputs("<p><a href=\"../index.html\">All testimonies</a></p>\n<h1>", o);
    html_puts(o, r->title);
    fprintf(o, "</h1>\n<table>\n<tr><th>record</th><td class=\"id\">%s</td></tr>\n", hex);
    fv_id_to_hex(hex, r->revision);
    fprintf(o, "<tr><th>revision</th><td class=\"id\">%s</td></tr>\n", hex);
    fputs("<tr><th>created by device</th><td>", o);
    html_device(x, o, r->origin);
    fputs("</td></tr>\n<tr><th>revision by device</th><td>", o);
    html_device(x, o, r->author);
    iso_time(t, r->created);
    fprintf(o, "</td></tr>\n<tr><th>created</th><td>%s</td></tr>\n", t);
    iso_time(t, r->modified);
    fprintf(o, "<tr><th>modified</th><td>%s</td></tr>\n", t);
    fprintf(o, "<tr><th>review state</th><td class=\"state\">%s</td></tr>\n",
            state_name(r->state));
    if (r->nheads > 1)
        fprintf(o, "<tr><th>conflict</th><td>%zu concurrent heads</td></tr>\n", r->nheads);
    fputs("<tr><th>tags</th><td>", o);
    for (size_t i = 0; i < r->ntags; i++) {
        fputs(i ? ", " : "", o);
        html_puts(o, r->tags[i]);
    }
    fputs("</td></tr>\n</table>\n", o);
    if (r->nfields) {
        fputs("<h2>Fields</h2>\n<table>\n", o);
        for (size_t i = 0; i < r->nfields; i++) {
            fputs("<tr><th>", o);
            html_puts(o, r->fields[i].key);
            fputs("</th><td class=\"note\">", o);
            html_puts(o, r->fields[i].value);
            fputs("</td></tr>\n", o);
        }
        fputs("</table>\n", o);
    }
    fputs("<h2>Narrative</h2>\n<div class=\"narrative\">", o);
    html_put(o, r->narrative, r->narrative_len);
    fputs("</div>\n", o);
    if (r->nattachments) {
        fv_id_to_hex(hex, r->id);
        if (mkdirat(x->sub[1], hex, 0700) != 0 ||
            (recdir = openat(x->sub[1], hex, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            rc = rep_fail(x, fv_errno_rc(errno), "an attachment directory");
            goto done;
        }
        fputs("<h2>Attachments</h2>\n<ul>\n", o);
        for (size_t i = 0; i < r->nattachments; i++) {
            int copied;
            safe_name(name, i, r->attachments[i].name);
            if ((rc = html_attachment(x, r, recdir, i, name, &copied)))
                goto done;
            html_attachment_item(o, hex, name, &r->attachments[i], copied);
        }
        fputs("</ul>\n", o);
    }
    if ((rc = record_history(x, r, html_history_cb, &h)))
        goto done;
    if (h.n)
        fputs("</table>\n", o);
    h.n = 0;
    if ((rc = fv_note_list(x->v, r->id, html_note_cb, &h)))
        goto done;
    fputs("</body>\n</html>\n", o);
done:
    if (recdir >= 0) {
        if (rc == FV_OK && fsync(recdir) != 0)
            rc = rep_fail(x, fv_errno_rc(errno), "an attachment directory");
        close(recdir);
    }
    int crc = rfile_close(&page, rc == FV_OK);
    if (rc == FV_ECANCELED && crc)
        rc = crc; /* a write failed inside a callback */
    if (rc == FV_OK && crc)
        rc = rep_fail(x, crc, "a record page");
    return rc;
}

/* Bars of testimonies per month (per year over a long span), and the most
 * frequent tags, as inline SVG: no script, no external resource. */
static void html_chart(struct rep *x, FILE *o)
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
    fprintf(o, "<h2>Testimonies over time (by %s)</h2>\n", by_year ? "year" : "month");
    fprintf(o, "<svg width=\"%zu\" height=\"%zu\" viewBox=\"0 0 %zu %zu\" role=\"img\" "
               "aria-label=\"testimonies per %s\">\n",
            w, hgt + 70, w, hgt + 70, by_year ? "year" : "month");
    fprintf(o, "<text x=\"0\" y=\"12\" font-size=\"11\">%llu</text>\n",
            (unsigned long long)max);
    for (i = 0; i < nb; i++) {
        size_t bh = (size_t)(bars[i] * hgt / max);
        int k = first + (int)i;
        char label[16];
        if (by_year)
            snprintf(label, sizeof label, "%d", k);
        else
            snprintf(label, sizeof label, "%d-%02d", k / 12, k % 12 + 1);
        fprintf(o, "<rect x=\"%zu\" y=\"%zu\" width=\"%zu\" height=\"%zu\" "
                   "fill=\"#4a7ab5\"><title>%s: %llu</title></rect>\n",
                40 + i * (bw + 2), 20 + hgt - bh, bw, bh, label,
                (unsigned long long)bars[i]);
        if (i == 0 || i + 1 == nb || nb <= 24)
            fprintf(o, "<text x=\"%zu\" y=\"%zu\" font-size=\"9\" "
                       "transform=\"rotate(45 %zu %zu)\">%s</text>\n",
                    40 + i * (bw + 2), hgt + 30, 40 + i * (bw + 2), hgt + 30, label);
    }
    fputs("</svg>\n", o);
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
    fprintf(o, "<h2>Testimonies by tag%s</h2>\n", x->ntags > shown ? " (the 20 most used)" : "");
    fprintf(o, "<svg width=\"640\" height=\"%zu\" viewBox=\"0 0 640 %zu\" role=\"img\" "
               "aria-label=\"testimonies per tag\">\n", shown * 22 + 10, shown * 22 + 10);
    for (i = 0; i < shown; i++) {
        size_t bl = (size_t)(x->tags[i].n * 380 / max);
        fprintf(o, "<text x=\"0\" y=\"%zu\" font-size=\"12\">", i * 22 + 18);
        /* Long tags are cut at a character boundary for the label. */
        size_t n = strlen(x->tags[i].tag);
        if (n > 30) {
            n = 30;
            while (n > 0 && ((unsigned char)x->tags[i].tag[n] & 0xc0) == 0x80)
                n--;
        }
        html_put(o, x->tags[i].tag, n);
        fprintf(o, "</text>\n<rect x=\"200\" y=\"%zu\" width=\"%zu\" height=\"16\" "
                   "fill=\"#7aa35a\"></rect>\n<text x=\"%zu\" y=\"%zu\" "
                   "font-size=\"12\">%llu</text>\n",
                i * 22 + 5, bl, 206 + bl, i * 22 + 18, (unsigned long long)x->tags[i].n);
    }
    fputs("</svg>\n", o);
    if (x->other_tags)
        fprintf(o, "<p>%llu uses of further tags are not counted.</p>\n",
                (unsigned long long)x->other_tags);
}

/* index.html: the head and chart, then the rows gathered in index.rows;
 * style.css. */
static int html_finish(struct rep *x)
{
    char t[32];
    rfile ix = {NULL, NULL};
    unsigned char buf[16384];
    int fd, rows, rc;
    ssize_t n;

    if ((rc = fv_create_at(x->dir, "index.html", &fd)))
        return rep_fail(x, rc, "index.html");
    if ((rc = rfile_open(&ix, fd)))
        return rc;
    FILE *o = ix.f;
    html_head(o, "FieldVault testimonies", "style.css");
    iso_time(t, time(NULL));
    fprintf(o, "<h1>Testimonies</h1>\n<p>%llu testimon%s, exported %s.</p>\n",
            (unsigned long long)x->done, x->done == 1 ? "y" : "ies", t);
    html_chart(x, o);
    fputs("<h2>All testimonies</h2>\n<table>\n<tr><th>record</th><th>created</th>"
          "<th>state</th><th>title</th><th>tags</th><th>device</th>"
          "<th>attachments</th></tr>\n", o);
    rc = FV_OK;
    rows = openat(x->dir, "index.rows", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (rows < 0)
        rc = fv_errno_rc(errno);
    while (rows >= 0 && rc == FV_OK && (n = read(rows, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = FV_EIO;
        else
            fwrite(buf, 1, (size_t)n, o);
    }
    fv_wipe(buf, sizeof buf);
    if (rows >= 0)
        close(rows);
    unlinkat(x->dir, "index.rows", 0);
    fputs("</table>\n</body>\n</html>\n", o);
    int crc = rfile_close(&ix, 1);
    if ((rc = rc ? rc : crc))
        return rep_fail(x, rc, "index.html");
    if ((rc = fv_create_at(x->dir, "style.css", &fd)))
        return rep_fail(x, rc, "style.css");
    rc = fv_write_all(fd, css, sizeof css - 1);
    if (rc == FV_OK && fsync(fd) != 0)
        rc = fv_errno_rc(errno);
    close(fd);
    return rep_fail(x, rc, "style.css");
}

/* ---- driving it ---- */

static int record_cb(const fv_record *r, void *payload)
{
    struct rep *x = payload;
    int rc;
    switch (x->opt->format) {
    case REPORT_JSON: rc = json_record(x, r); break;
    case REPORT_CSV: rc = csv_record(x, r); break;
    default: rc = html_record(x, r); break;
    }
    if (rc == FV_OK && ferror(x->o.f))
        rc = rep_fail(x, fv_errno_rc(errno), "the output");
    if (rc == FV_OK) {
        x->done++;
        if (x->opt->progress &&
            x->opt->progress(x->done, x->total, x->opt->progress_payload)) {
            x->canceled = 1;
            rc = FV_ECANCELED;
        }
    }
    if (rc && x->rc == FV_OK)
        x->rc = rc;
    return rc != FV_OK;
}

static int count_cb(const fv_record *r, void *payload)
{
    (void)r;
    ((struct rep *)payload)->total++;
    return 0;
}

/* The counting pass: unreadable records are told of in the writing pass. */
static int count_unreadable_cb(const fv_unreadable *u, void *payload)
{
    (void)u;
    (void)payload;
    return 0;
}

static int unreadable_cb(const fv_unreadable *u, void *payload)
{
    struct rep *x = payload;
    if (x->opt->unreadable(u, x->opt->unreadable_payload)) {
        if (x->rc == FV_OK) {
            x->rc = FV_ECANCELED;
            snprintf(x->msg, REPORT_MSG_BYTES, "stopped by the caller");
        }
        return 1;
    }
    return 0;
}

int report_export(fv_vault *v, uint64_t *count, char msg[REPORT_MSG_BYTES],
                  const report_options *opt)
{
    static const char *const subs[] = {"records", "files"};
    struct rep x;
    fv_staged st;
    int is_dir, fd = -1, rc;

    msg[0] = '\0';
    if (count)
        *count = 0;
    memset(&st, 0, sizeof st);
    st.fd = -1;
    memset(&x, 0, sizeof x);
    x.v = v;
    x.opt = opt;
    x.msg = msg;
    x.dir = x.sub[0] = x.sub[1] = -1;
    if (!v || !opt || opt->format < REPORT_JSON || opt->format > REPORT_HTML ||
        !opt->path || !*opt->path) {
        snprintf(msg, REPORT_MSG_BYTES, "unsupported export format or no output path");
        return FV_EINVAL;
    }
    is_dir = opt->format == REPORT_HTML;
    rc = fv_staged_begin(&st, opt->path, is_dir);
    if (rc == FV_EEXIST) {
        snprintf(msg, REPORT_MSG_BYTES, "the output %s already exists",
                 is_dir ? "directory" : "file");
        goto done;
    }
    if (rc) {
        rep_fail(&x, rc, is_dir ? "the output directory" : "the output file");
        goto done;
    }
    if (opt->progress) {
        /* The total, for the progress callback: a first, counting pass. */
        rc = fv_vault_query_ex(v, opt->filter, count_cb,
                               opt->unreadable ? count_unreadable_cb : NULL, &x);
        if (rc)
            goto done;
    }
    if (is_dir) {
        x.dir = st.fd;
        for (size_t i = 0; i < 2; i++)
            if (mkdirat(x.dir, subs[i], 0700) != 0 ||
                (x.sub[i] = openat(x.dir, subs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                rc = rep_fail(&x, fv_errno_rc(errno), "the output directory");
                goto done;
            }
        if ((rc = fv_create_at(x.dir, "index.rows", &fd))) {
            rep_fail(&x, rc, "index.html");
            goto done;
        }
    } else {
        fd = dup(st.fd); /* the staged file keeps its own, for the commit */
        if (fd < 0) {
            rc = rep_fail(&x, fv_errno_rc(errno), "the output file");
            goto done;
        }
    }
    if ((rc = rfile_open(&x.o, fd))) {
        snprintf(msg, REPORT_MSG_BYTES, "out of memory");
        goto done;
    }
    if (opt->format == REPORT_JSON) {
        unsigned char dev[FV_ID_BYTES];
        char t[32];
        fv_vault_get_device_id(v, dev);
        iso_time(t, time(NULL));
        fprintf(x.o.f, "{\n  \"fieldvault_export\": %d,\n  \"format_version\": %d,\n"
                       "  \"exported_at\": \"%s\",\n  \"vault_device\": ",
                REPORT_VERSION, FV_FORMAT_VERSION, t);
        json_id(x.o.f, dev);
        fputs(",\n  \"records\": [", x.o.f);
    } else if (opt->format == REPORT_CSV) {
        fputs("\xef\xbb\xbf", x.o.f); /* BOM: spreadsheets then read UTF-8 */
        fputs(csv_header, x.o.f);
    }
    rc = fv_vault_query_ex(v, opt->filter, record_cb,
                           opt->unreadable ? unreadable_cb : NULL, &x);
    if (x.rc)
        rc = x.rc;
    if (rc == FV_ECORRUPT && !msg[0])
        snprintf(msg, REPORT_MSG_BYTES, "some records failed verification and the "
                                        "export was not written (run 'fieldvault verify')");
    if (rc)
        goto done;
    if (opt->format == REPORT_JSON)
        fprintf(x.o.f, "%s],\n  \"record_count\": %llu\n}\n", x.done ? "\n  " : "",
                (unsigned long long)x.done);
    if ((rc = rfile_close(&x.o, 1))) {
        rep_fail(&x, rc, "the output");
        goto done;
    }
    if (is_dir) {
        if ((rc = html_finish(&x)))
            goto done;
        for (int i = 0; rc == FV_OK && i < 2; i++)
            if (fsync(x.sub[i]) != 0)
                rc = rep_fail(&x, fv_errno_rc(errno), "the output directory");
        if (rc)
            goto done;
    }
    rc = fv_staged_commit(&st);
    if (rc == FV_EEXIST)
        snprintf(msg, REPORT_MSG_BYTES, "the output %s already exists",
                 is_dir ? "directory" : "file");
    else if (rc)
        rep_fail(&x, rc, is_dir ? "the output directory" : "the output file");
done:
    rfile_close(&x.o, 0);
    for (int i = 0; i < 2; i++)
        if (x.sub[i] >= 0)
            close(x.sub[i]);
    fv_staged_abort(&st);
    for (size_t i = 0; i < x.ntags; i++) {
        fv_wipe(x.tags[i].tag, strlen(x.tags[i].tag));
        free(x.tags[i].tag);
    }
    free(x.tags);
    free(x.months);
    if (rc != FV_OK && !msg[0]) {
        /* The library's message when a call of its failed last; after a
         * success it says "no error" (docs/API.md), and the code speaks. */
        const char *lib = fv_vault_errmsg(v);
        snprintf(msg, REPORT_MSG_BYTES, "%s",
                 x.canceled                      ? "canceled"
                 : strcmp(lib, "no error") != 0 ? lib
                                                 : fv_strerror(rc));
    }
    if (rc == FV_OK && count)
        *count = x.done;
    return rc;
}
