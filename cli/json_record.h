/*
 * json_record.h - the one JSON writer of records, revisions and notes:
 * `list --json`, `search --json`, `show --json` and the desk's API
 * (web/) all print records through it, so a record reads the same
 * everywhere. Every string goes through json_str (cli.h): valid UTF-8 as
 * it is, quotes, backslashes and control characters escaped, invalid
 * bytes as U+FFFD. Pointers are borrowed for the call; any thread (each
 * call writes only to its own FILE).
 */
#ifndef FV_JSON_RECORD_H
#define FV_JSON_RECORD_H

#include <stdio.h>

#include "fieldvault.h"

/* What a listing says of one record: filled from a record by
 * json_summary_from_record, or kept by the desk's index. */
typedef struct json_summary {
    unsigned char id[FV_ID_BYTES];
    const char *title;
    int64_t created;
    int64_t modified;
    const char *const *tags;
    size_t ntags;
    size_t nattachments;
    int conflict;        /* more than one head */
    int complete;        /* every attachment chunk held here */
    int state;           /* enum fv_review_state */
    int origin_known;    /* the creating device is known */
    unsigned char origin[FV_ID_BYTES];
    size_t nnotes;
    const char *author_name; /* the creating device's name; NULL: not
                                printed (the CLI), null when unknown */
    int with_name;           /* print "author_name" at all */
} json_summary;

/* Non-zero if every chunk of every attachment of `r` is in this vault. */
int json_record_complete(const fv_record *r);

/* Fills `s` from `r` (pointers into `r`: valid as long as it is). */
void json_summary_from_record(json_summary *s, const fv_record *r);

/* One listing entry as a JSON object on one line: {"id", "title",
 * "created", "modified", "tags", "attachments", "conflict", "complete",
 * "state", "author", ["author_name",] "notes", "readable": true}. */
void json_summary_write(FILE *o, const json_summary *s);

/* A record this vault cannot open: {"id", "readable": false, "why",
 * "revision", "signer", "conflict"}. */
void json_unreadable_write(FILE *o, const fv_unreadable *u);

/* One revision's content as the members of a JSON object, each on a line
 * of its own after `ind`: "id", "title", "narrative", "created",
 * "modified", "author", "signer", "revision", "state", "fields", "tags",
 * "attachments". Ends with ",\n" when `more` members follow, else "\n". */
void json_record_members(FILE *o, const fv_record *r, const char *ind,
                         int more);

/* One revision of a history as an object: {"id", "kind" ("revision" or
 * "tombstone"), "time", "author", "parents", "head"}. */
void json_revision_write(FILE *o, const unsigned char id[FV_ID_BYTES],
                         int kind, int64_t time,
                         const unsigned char author[FV_ID_BYTES],
                         const unsigned char (*parents)[FV_ID_BYTES],
                         size_t nparents, int head);

/* "revision" or "tombstone". */
const char *json_revision_kind(int kind);

/* One note as an object: {"id", "record", "author", "time", "text"}. */
void json_note_write(FILE *o, const unsigned char id[FV_ID_BYTES],
                     const unsigned char record[FV_ID_BYTES],
                     const unsigned char author[FV_ID_BYTES], int64_t time,
                     const char *text, size_t len);

#endif /* FV_JSON_RECORD_H */
