/*
 * quarantine_cmds.c - `fieldvault quarantine`: the envelopes this vault
 * keeps apart because the organisation has not certified their author here
 * (docs/PROTOCOL.md, "Who may speak"). Thin over fv_quarantine_list.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

typedef struct qlisting {
    int json;
    size_t count;
} qlisting;

static const char *env_kind_name(int kind)
{
    static const char *const names[] = {"?",    "revision", "tombstone", "grant",
                                        "note", "state",    "retraction"};
    return kind >= 1 && kind <= 6 ? names[kind] : "?";
}

static const char *why_name(int why)
{
    return why == FV_QUARANTINE_REVOKED ? "revoked" : "unknown-author";
}

static int print_quarantined(const fv_quarantined *q, void *payload)
{
    qlisting *l = payload;
    if (l->json) {
        json_list_item(stdout, l->count);
        json_key(stdout, "id");
        json_id(stdout, q->id);
        fputs(", ", stdout);
        json_key(stdout, "author");
        json_id(stdout, q->author);
        fputs(", ", stdout);
        json_key(stdout, "kind");
        json_strz(stdout, env_kind_name(q->kind));
        fputs(", ", stdout);
        json_key(stdout, "time");
        if (q->has_time)
            json_time(stdout, q->time);
        else
            fputs("null", stdout);
        fputs(", ", stdout);
        json_key(stdout, "why");
        json_strz(stdout, why_name(q->why));
        fputc('}', stdout);
    } else {
        char id[FV_ID_HEX_BYTES], author[FV_ID_HEX_BYTES], when[40];
        fv_id_to_hex(id, q->id);
        fv_id_to_hex(author, q->author);
        if (q->has_time)
            time_format(when, sizeof when, q->time, TIME_MINUTES);
        else
            snprintf(when, sizeof when, "%-16s", "(no date)");
        fprintf(stdout, "%s  %-10s  %s  %-14s  by %s\n", id,
                env_kind_name(q->kind), when, why_name(q->why), author);
    }
    l->count++;
    return 0;
}

int cmd_quarantine(cli *c)
{
    fv_vault *v = NULL;
    char *dir = NULL;
    qlisting l = {0, 0};
    int rc;

    if (cli_begin(c, NULL, 0, 0, "", &rc))
        goto cleanup;
    l.json = c->json;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (l.json)
        fputs("[", stdout);
    int r = fv_quarantine_list(v, print_quarantined, &l);
    if (l.json)
        json_list_end(stdout, l.count);
    rc = cli_flush_stdout();
    if (r != FV_OK)
        rc = cli_fail(v, r, NULL);
cleanup:
    fv_vault_close(v);
    free(dir);
    return rc;
}
