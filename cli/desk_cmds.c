/*
 * desk_cmds.c - the coordinator's desk commands that read the whole vault:
 * `export` (JSON, CSV, HTML report, evidence directory) and `verify` (the
 * chain of custody). Thin over fv_export and fv_vault_verify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"

/* ---- export ------------------------------------------------------------------ */

typedef struct record_progress {
    int enabled; /* stderr is a terminal */
    int drawn;
    struct timespec start;
} record_progress;

/* "exporting: 120 of 4000 records" on a terminal after a second; Ctrl-C
 * (cli_cancel_arm) stops the export cleanly. */
static int export_progress(uint64_t done, uint64_t total, void *payload)
{
    record_progress *p = payload;
    struct timespec now;

    if (cli_canceled())
        return 1;
    if (!p->enabled)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - p->start.tv_sec) +
            (double)(now.tv_nsec - p->start.tv_nsec) / 1e9 < 1.0)
        return 0;
    fprintf(stderr, "\rexporting: %llu of %llu records", (unsigned long long)done,
            (unsigned long long)total);
    p->drawn = 1;
    return 0;
}

#define FORMAT_EVIDENCE 4 /* fv_export; the others are report_export's */

static int parse_format(const char *s, int *format)
{
    static const struct {
        const char *name;
        int format;
    } formats[] = {{"json", REPORT_JSON},
                   {"csv", REPORT_CSV},
                   {"html", REPORT_HTML},
                   {"evidence", FORMAT_EVIDENCE}};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(s, formats[i].name) == 0) {
            *format = formats[i].format;
            return 0;
        }
    return -1;
}

typedef struct left_out {
    size_t n;
    int org_key; /* one needs the organisation key */
} left_out;

/* A record the export leaves out because this vault cannot open it: named
 * on stderr (its id and why, nothing from inside it). */
static int export_unreadable(const fv_unreadable *u, void *payload)
{
    left_out *l = payload;
    char hex[FV_ID_HEX_BYTES];
    fv_id_to_hex(hex, u->id);
    cli_error("export: record %s left out: %s", hex, u->why);
    l->n++;
    if (u->reason == FV_UNREADABLE_NO_ORG_KEY)
        l->org_key = 1;
    return 0;
}

int cmd_export(cli *c)
{
    cli_opt opts[] = {CLI_FILTER_OPTS,
                      {"format", OPT_ONE, NULL, 0},
                      {"output", OPT_ONE, NULL, 0},
                      {"record", OPT_MANY, NULL, 0},
                      {NULL, 0, NULL, 0}};
    cli_opt *format = cli_opt_get(opts, "format");
    cli_opt *output = cli_opt_get(opts, "output");
    cli_opt *record = cli_opt_get(opts, "record");
    fv_export_options eo = FV_EXPORT_OPTIONS_INIT;
    report_options ro;
    report_devices *devs = NULL;
    char msg[REPORT_MSG_BYTES];
    int fmt = 0;
    cli_filter sel;
    record_progress prog;
    unsigned char (*ids)[FV_ID_BYTES] = NULL;
    fv_vault *v = NULL;
    char *dir = NULL;
    uint64_t count = 0;
    left_out lo = {0, 0};
    int rc, r;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    if (format->count == 0 || parse_format(format->values[0], &fmt) != 0) {
        cli_error("export: --format json, csv, html or evidence is required");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (output->count == 0 || output->values[0][0] == '\0') {
        cli_error("export: --output PATH is required (a new %s)",
                  fmt == REPORT_HTML || fmt == FORMAT_EVIDENCE ? "directory" : "file");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_parse_filter(&sel, opts)) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (record->count) {
        ids = calloc(record->count, sizeof *ids);
        if (ids == NULL) {
            cli_error("out of memory");
            rc = CLI_FAIL;
            goto cleanup;
        }
        for (size_t i = 0; i < record->count; i++) {
            r = fv_record_resolve(v, ids[i], record->values[i]);
            if (r != FV_OK) {
                rc = cli_fail(v, r, "--record");
                goto cleanup;
            }
        }
        sel.f.ids = (const unsigned char(*)[FV_ID_BYTES])ids;
        sel.f.nids = record->count;
    }
    eo.path = output->values[0];
    eo.filter = &sel.f;
    memset(&prog, 0, sizeof prog);
    prog.enabled = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &prog.start);
    /* Always: the callback is also where Ctrl-C or SIGTERM stops the export
     * (cli_cancel_arm catches them), terminal or not. It costs a counting
     * pass. */
    eo.progress = export_progress;
    eo.progress_payload = &prog;
    /* What this vault cannot open is left out and named, not a reason to
     * withhold everything else (exit 19 says the export is partial). */
    eo.unreadable = export_unreadable;
    eo.unreadable_payload = &lo;
    cli_cancel_arm();
    if (fmt == FORMAT_EVIDENCE) {
        r = fv_export(v, &count, &eo);
    } else {
        memset(&ro, 0, sizeof ro);
        ro.format = fmt;
        ro.path = eo.path;
        ro.filter = eo.filter;
        ro.progress = eo.progress;
        ro.progress_payload = eo.progress_payload;
        ro.unreadable = eo.unreadable;
        ro.unreadable_payload = eo.unreadable_payload;
        if (fmt == REPORT_HTML) {
            /* The HTML names devices as `org devices` does; a vault that
             * cannot ask the server shows short ids. */
            fv_sync_options so = FV_SYNC_OPTIONS_INIT;
            so.timeout_ms = 5000;
            if ((devs = report_devices_fetch(v, &so)) == NULL) {
                cli_error("out of memory");
                rc = CLI_FAIL;
                goto cleanup;
            }
            if (!devs->fetched)
                cli_error("export: device names unknown (%s): ids shown", devs->why);
            ro.devices = devs;
        }
        r = report_export(v, &count, msg, &ro);
    }
    cli_cancel_disarm();
    if (prog.drawn)
        fputs("\n", stderr);
    if (r != FV_OK) {
        if (fmt == FORMAT_EVIDENCE)
            rc = cli_fail(v, r, "export");
        else {
            cli_error("export: %s", msg);
            rc = cli_exit_code(r);
        }
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "output");
        json_strz(stdout, eo.path);
        fputs(", ", stdout);
        json_key(stdout, "format");
        json_strz(stdout, format->values[0]);
        fputs(", ", stdout);
        json_key(stdout, "records");
        fprintf(stdout, "%llu, ", (unsigned long long)count);
        json_key(stdout, "unreadable");
        fprintf(stdout, "%zu}\n", lo.n);
    } else {
        printf("%llu record%s exported to ", (unsigned long long)count,
               count == 1 ? "" : "s");
        text_puts(stdout, eo.path);
        fputs("\n", stdout);
    }
    rc = cli_flush_stdout();
    cli_unreadable_summary(lo.n, lo.org_key, "left out of the export");
    if (rc == 0 && lo.n)
        rc = CLI_PARTIAL;
cleanup:
    report_devices_free(devs);
    fv_vault_close(v);
    free(dir);
    free(ids);
    cli_opts_free(opts);
    return rc;
}

/* ---- verify ------------------------------------------------------------------ */

typedef struct problems {
    int json;
    uint64_t n;
} problems;

static int print_problem(const fv_verify_issue *is, void *payload)
{
    problems *p = payload;
    if (p->json) {
        fputs(p->n ? ",\n    {" : "\n    {", stdout);
        json_key(stdout, "record");
        if (is->record)
            json_id(stdout, is->record);
        else
            fputs("null", stdout);
        fputs(", ", stdout);
        json_key(stdout, "envelope");
        if (is->envelope)
            json_id(stdout, is->envelope);
        else
            fputs("null", stdout);
        fputs(", ", stdout);
        json_key(stdout, "problem");
        json_strz(stdout, is->problem);
        fputs("}", stdout);
    } else {
        char rec[FV_ID_HEX_BYTES], env[FV_ID_HEX_BYTES];
        if (is->record)
            fv_id_to_hex(rec, is->record);
        if (is->envelope)
            fv_id_to_hex(env, is->envelope);
        printf("FAIL record %s envelope %s: %s\n", is->record ? rec : "-",
               is->envelope ? env : "-", is->problem);
    }
    p->n++;
    return 0;
}

int cmd_verify(cli *c)
{
    cli_opt opts[] = {{NULL, 0, NULL, 0}};
    problems p = {c->json, 0};
    fv_verify_report rep;
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc, r;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    p.json = c->json;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (p.json)
        fputs("{\n  \"problems\": [", stdout);
    /* No cancel armed: verify has no progress call to see it at, and it
     * writes nothing, so Ctrl-C or SIGTERM simply end the process. */
    r = fv_vault_verify(v, print_problem, &p, &rep);
    if (r != FV_OK && r != FV_ECORRUPT) {
        if (p.json)
            fputs("]}\n", stdout);
        fflush(stdout);
        rc = cli_fail(v, r, "verify");
        goto cleanup;
    }
    if (p.json) {
        printf("%s],\n  \"ok\": %s,\n  \"envelopes\": %llu,\n  \"chunks\": %llu,\n"
               "  \"receipts\": %llu,\n  \"failures\": %llu\n}\n",
               p.n ? "\n  " : "", r == FV_OK ? "true" : "false",
               (unsigned long long)rep.envelopes, (unsigned long long)rep.chunks,
               (unsigned long long)rep.receipts, (unsigned long long)rep.failures);
    } else {
        printf("%s: %llu envelopes, %llu chunks, %llu receipts checked; "
               "%llu failed\n", r == FV_OK ? "ok" : "FAILED",
               (unsigned long long)rep.envelopes, (unsigned long long)rep.chunks,
               (unsigned long long)rep.receipts, (unsigned long long)rep.failures);
    }
    rc = cli_flush_stdout();
    if (rc == 0 && r != FV_OK) {
        cli_error("verify: %s", fv_vault_errmsg(v));
        rc = CLI_CORRUPT;
    }
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}
