/*
 * report.h - the plaintext reports (`fieldvault export --format json, csv
 * or html`, and the desk's exports) and what the desk and the HTML report
 * share: the organisation's device names and the attachment types a
 * browser may play or show. Written over the public API only
 * (fv_vault_query_ex, fv_record_history, fv_notes_list, fv_attachment_read,
 * fv_org_devices): nothing here reads an envelope, a key or the store, so
 * it is outside the library (docs/API.md, "Changes for 1.0"). The evidence
 * export, which copies signed envelopes, is fv_export in the core.
 *
 * Linked into the `fieldvault` command (and the desk in it); the JSON of a
 * record is the CLI's one writer (cli/json_record.h). A vault handle is
 * used by one thread at a time, as everywhere.
 */
#ifndef FV_REPORT_H
#define FV_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "fieldvault.h"
#include "fieldvault_sync.h"

/* ---- device names ------------------------------------------------------- */

typedef struct report_device {
    unsigned char id[FV_ID_BYTES];
    char *name;
    int role; /* enum fv_role */
    int revoked;
    int64_t enrolled;
} report_device;

/* The organisation's devices as the server lists them (`org devices`). */
typedef struct report_devices {
    report_device *d;
    size_t n;
    int fetched;   /* the server answered */
    int rc;        /* FV_OK, or why not (fv_org_devices) */
    char why[160]; /* why not, when not (no content) */
} report_devices;

/* Asks the server for the device list (fv_org_devices with `so`, which
 * may be NULL for the defaults), collected whole before anything is used.
 * A vault that cannot ask (not a coordinator, offline, never enrolled) gets
 * an empty table with `fetched` 0, `rc` the library's result and `why` its
 * message. NULL only when out of memory. Free with report_devices_free.
 * The one code path for `org devices`, the desk and the HTML report. */
report_devices *report_devices_fetch(fv_vault *v, const fv_sync_options *so);

/* The name of device `id`, or NULL when the table does not know it. The
 * pointer lives as long as the table. `t` may be NULL. */
const char *report_device_name(const report_devices *t,
                               const unsigned char id[FV_ID_BYTES]);

void report_devices_free(report_devices *t);

/* ---- attachment types ----------------------------------------------------- */

enum report_media { REPORT_OTHER = 0, REPORT_AUDIO, REPORT_VIDEO, REPORT_IMAGE };

/* The type of an attachment by its name's extension: the audio, video and
 * raster image types a browser plays or shows (*media set), else
 * "application/octet-stream" (REPORT_OTHER): never HTML, SVG or anything a
 * browser would run. Static storage. */
const char *report_media_type(const char *name, int *media);

/* ---- the reports ------------------------------------------------------------ */

enum report_format { REPORT_JSON = 1, REPORT_CSV = 2, REPORT_HTML = 3 };

typedef struct report_options {
    int format;               /* enum report_format */
    const char *path;         /* a new file (JSON, CSV) or directory (HTML) */
    const fv_filter *filter;  /* NULL: every record */
    const report_devices *devices; /* names shown in the HTML; NULL: ids */
    fv_progress_fn progress;  /* records done, records in all; non-zero
                                 cancels (FV_ECANCELED) */
    void *progress_payload;
    fv_unreadable_fn unreadable; /* as fv_export_options.unreadable */
    void *unreadable_payload;
} report_options;

#define REPORT_MSG_BYTES 256

/* Writes the records that pass the filter as `o->format` to a new
 * `o->path`, which appears only when complete (docs/EXPORT.md). *count
 * (may be NULL) receives the records written. On failure `msg` says why
 * (no content) and nothing is left at the path. FV_OK, FV_EINVAL,
 * FV_EEXIST, FV_ECORRUPT, FV_ENOTFOUND, FV_ECANCELED, FV_EIO, FV_ENOSPC,
 * FV_ENOMEM, or a failure of the vault's calls. */
int report_export(fv_vault *v, uint64_t *count, char msg[REPORT_MSG_BYTES],
                  const report_options *o);

#endif /* FV_REPORT_H */
