/*
 * main.c - the `fieldvault` command: global options and dispatch.
 *
 * Exit codes (stable; the README copies this table):
 *
 *   code  meaning
 *   ----  -------------------------------------------------------------
 *     0   success
 *     1   other failure (internal error, out of memory)
 *     2   usage: bad arguments, unknown option, empty passphrase
 *     3   wrong passphrase
 *     4   no vault at the directory
 *     5   corrupt or tampered data (nothing of it is shown)
 *     6   network failure: cannot connect, connection cut or stalled, TLS
 *         failure
 *     7   vault or data of a newer format
 *     8   not found (record, attachment) or ambiguous id prefix
 *     9   I/O error (file missing or unreadable, permission, output)
 *    10   disk full
 *    11   already exists (init on an existing vault, output file exists)
 *    12   canceled
 *    13   vault busy (another process holds it)
 *    14   the server's key does not match the pinned key (nothing was sent)
 *    15   refused by the server: not enrolled, revoked, or not allowed
 *    16   the invite is damaged, used or expired
 *    17   the attachment has not fully arrived yet (some of its chunks are
 *         still on their way; sync again later)
 *    18   the server failed on its side (its disk full, an internal error):
 *         nothing here is damaged or lost; sync again later
 *    19   export written without the records this vault cannot open (each
 *         named on stderr)
 *    20   the proxy cannot be reached, refused the credentials or the
 *         connection, or broke its protocol
 *    21   the server's PostgreSQL database cannot be reached or refused the
 *         connection
 *
 * A server that breaks the sync protocol is treated as corrupt data (5).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef FV_HAVE_DESK
/* Built with FV_DESK=OFF (no libmicrohttpd): the command says so. */
int cmd_desk(cli *c)
{
    (void)c;
    cli_error("desk: this fieldvault was built without the desk (FV_DESK=OFF)");
    return CLI_FAIL;
}
#endif

static const struct {
    const char *name;
    int (*run)(cli *c);
} commands[] = {
    {"init", cmd_init},       {"add", cmd_add},
    {"list", cmd_list},       {"show", cmd_show},
    {"edit", cmd_edit},       {"delete", cmd_delete},
    {"search", cmd_search},   {"attachment", cmd_attachment},
    {"passwd", cmd_passwd},   {"panic", cmd_panic},
    {"version", cmd_version}, {"server", cmd_server},
    {"serve", cmd_serve},     {"enroll", cmd_enroll},
    {"org", cmd_org},         {"sync", cmd_sync},
    {"bundle", cmd_bundle},   {"config", cmd_config},
    {"export", cmd_export},   {"verify", cmd_verify},
    {"merge", cmd_merge},     {"review", cmd_review},
    {"note", cmd_note},       {"notes", cmd_notes},
    {"retract", cmd_retract}, {"retractions", cmd_retractions},
    {"quarantine", cmd_quarantine},
    {"duress", cmd_duress},
    {"desk", cmd_desk},
};

static int run_help_command(cli *c)
{
    /* `fieldvault help [COMMAND]` */
    int rc = cli_parse(c, NULL);
    if (rc != 0)
        return rc;
    if (c->npos > 1) {
        cli_error("help: too many arguments");
        return CLI_USAGE;
    }
    if (cli_help(stdout, c->npos ? c->pos[0] : NULL) != 0) {
        cli_error("no such command: %s", c->pos[0]);
        return CLI_USAGE;
    }
    return cli_flush_stdout();
}

int main(int argc, char **argv)
{
    cli c;
    int rc = CLI_USAGE;
    int i = 1;

    memset(&c, 0, sizeof c);
    while (i < argc) {
        const char *a = argv[i];
        if (strcmp(a, "--version") == 0) {
            c.cmd = "version";
            i++;
            break;
        }
        int g = cli_parse_global(&c, argc, argv, &i);
        if (g < 0)
            goto done;
        if (g > 0)
            continue;
        if (strcmp(a, "--") == 0) {
            i++;
            if (i < argc)
                c.cmd = argv[i++];
            break;
        }
        if (a[0] == '-' && a[1] != '\0') {
            cli_error("unknown option '%s' (try 'fieldvault --help')", a);
            goto done;
        }
        c.cmd = argv[i++];
        break;
    }
    c.argc = argc - i;
    c.argv = argv + i;

    if (c.cmd == NULL) {
        if (c.help) {
            cli_help(stdout, NULL);
            rc = cli_flush_stdout();
        } else {
            cli_error("no command given (try 'fieldvault --help')");
            rc = CLI_USAGE;
        }
        goto done;
    }
    if (strcmp(c.cmd, "help") == 0) {
        rc = run_help_command(&c);
        goto done;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(c.cmd, commands[k].name) == 0) {
            rc = commands[k].run(&c);
            goto done;
        }
    }
    cli_error("unknown command '%s' (try 'fieldvault --help')", c.cmd);
    rc = CLI_USAGE;

done:
    cli_free(&c);
    return rc;
}
