/*
 * cli.h - the pieces of the `fieldvault` command shared between its files:
 * argument parsing, passphrase input, output (text, JSON, progress) and the
 * exit codes. The CLI is a thin layer over fieldvault.h; nothing here is
 * needed by an app that embeds the library.
 */
#ifndef FV_CLI_H
#define FV_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "fieldvault.h"

/* Exit codes; the table with their meaning is at the top of main.c. */
enum cli_exit {
    CLI_OK = 0,
    CLI_FAIL = 1,
    CLI_USAGE = 2,
    CLI_PASSPHRASE = 3,
    CLI_NOVAULT = 4,
    CLI_CORRUPT = 5,
    CLI_NETWORK = 6,
    CLI_VERSION = 7,
    CLI_NOTFOUND = 8,
    CLI_IO = 9,
    CLI_NOSPACE = 10,
    CLI_EXISTS = 11,
    CLI_CANCELED = 12,
    CLI_BUSY = 13,
    CLI_PIN = 14,     /* the server's key does not match the pinned key */
    CLI_DENIED = 15,  /* refused by the server: not enrolled, revoked... */
    CLI_INVITE = 16,  /* the invite is damaged, used or expired */
    CLI_INCOMPLETE = 17, /* the attachment has not fully arrived yet */
    CLI_SERVER = 18,     /* the server failed on its side (its disk full...) */
    CLI_PARTIAL = 19,    /* export: written without the records this vault
                            cannot open (each named on stderr) */
    CLI_PROXY = 20,      /* the proxy cannot be reached, refused or failed */
    CLI_DATABASE = 21,   /* the server's PostgreSQL database cannot be
                            reached or refused the connection */
    CLI_ROLLBACK = 22    /* sync: the server's log went back or differed;
                            the device started over with it */
};

/* The exit code for a library result code (main.c). */
int cli_exit_code(int fv_result);

/* ---- the command line ---------------------------------------------------- */

/* How an option takes its value. */
enum cli_opt_kind {
    OPT_FLAG = 0, /* no value */
    OPT_ONE = 1,  /* one value, at most once */
    OPT_MANY = 2  /* one value, any number of times */
};

/* One option of a command. The parser fills `values`/`count` (`set` for
 * flags); free them with cli_opts_free. A table ends with a NULL name. */
typedef struct cli_opt {
    const char *name; /* without the leading "--" */
    int kind;         /* enum cli_opt_kind */
    const char **values;
    size_t count;
} cli_opt;

/* The parsed invocation: global options and what follows the command. */
typedef struct cli {
    const char *cmd;  /* the command word, NULL if none */
    int argc;         /* arguments after the command word */
    char **argv;
    const char *vault_opt;       /* --vault */
    const char *passphrase_file; /* --passphrase-file */
    const char *passphrase_fd;   /* --passphrase-fd, unparsed */
    int json;                    /* --json */
    int help;                    /* --help / -h */
    const char **pos;            /* positional arguments of the command */
    size_t npos;
} cli;

/* Parses c->argv with the command's option table `opts` (may be NULL) and
 * the global options. Positional arguments go to c->pos. Stops at --help.
 * Returns 0 or CLI_USAGE (after printing why). */
int cli_parse(cli *c, cli_opt *opts);

/* Parses one global option at argv[*i] (before the command word). Returns 1
 * if it was one (and advances *i past its value), 0 if argv[*i] is not a
 * global option, or -1 after printing a usage error. */
int cli_parse_global(cli *c, int argc, char **argv, int *i);

/* The option named `name` in `opts` (never NULL for names in the table). */
cli_opt *cli_opt_get(cli_opt *opts, const char *name);

void cli_opts_free(cli_opt *opts);
void cli_free(cli *c);

/* Parses a non-negative decimal int with full checks. Returns 0 or -1. */
int cli_parse_int(const char *s, int *out);

/* ---- record selection (list, export) ------------------------------------ */

/* The options that select records, for a command's option table:
 *   cli_opt opts[] = {CLI_FILTER_OPTS, {"other", ...}, {NULL, 0, NULL, 0}};
 * --state S, --tag T, --device DEVICE_ID, --since DATE, --until DATE. */
#define CLI_FILTER_OPTS                                                      \
    {"state", OPT_ONE, NULL, 0}, {"tag", OPT_ONE, NULL, 0},                  \
        {"device", OPT_ONE, NULL, 0}, {"since", OPT_ONE, NULL, 0},           \
        {"until", OPT_ONE, NULL, 0}

/* A parsed selection: `f` may point into `origin` (do not copy the struct)
 * and into the option values (keep the table until the filter is used). */
typedef struct cli_filter {
    fv_filter f;
    unsigned char origin[FV_ID_BYTES];
} cli_filter;

/* Fills `out` from the CLI_FILTER_OPTS in `opts` (options absent from the
 * table, or not given, select everything). DATE is YYYY-MM-DD or a UTC time
 * YYYY-MM-DDTHH:MM[:SS][Z]; a bare date in --until means the end of that
 * day; both bounds are inclusive. Returns 0 or CLI_USAGE after printing
 * why. `out->f.ids`/`nids` are left empty for the caller. */
int cli_parse_filter(cli_filter *out, cli_opt *opts);

/* Parses a DATE as above (end_of_day: a bare date means 23:59:59) into Unix
 * seconds. Returns 0 or -1. */
int cli_parse_time(const char *s, int end_of_day, int64_t *out);

/* Decodes 64 hex digits (either case) into a device id. Returns 0 or -1. */
int cli_parse_device_id(const char *hex, unsigned char id[FV_ID_BYTES]);

/* ---- passphrases --------------------------------------------------------- */

#define CLI_PASSPHRASE_MAX 4096 /* bytes read from a file, fd or prompt */

/* A passphrase in locked, guarded memory (fv_secure_alloc). */
typedef struct cli_secret {
    char *buf; /* NUL-terminated for convenience; may hold other NULs */
    size_t len;
} cli_secret;

/* Obtains the passphrase from the first source that is set: --passphrase-file,
 * FIELDVAULT_PASSPHRASE_FILE, --passphrase-fd, else a prompt on the terminal
 * (asked twice when `confirm`). Returns 0 or an exit code (message printed). */
int cli_passphrase_get(cli_secret *out, const cli *c, const char *prompt,
                       int confirm);

/* Reads a passphrase from the file at `path`. Returns 0 or an exit code. */
int cli_passphrase_from_file(cli_secret *out, const char *path);

/* Prompts on the terminal (twice when `confirm`). Returns 0 or an exit code. */
int cli_passphrase_prompt(cli_secret *out, const char *prompt, int confirm);

/* Wipes and frees. Harmless on a zeroed secret. */
void cli_secret_free(cli_secret *s);

/* Non-zero if the passphrase source of `c` is standard input (fd 0). */
int cli_passphrase_uses_stdin(const cli *c);

/* ---- output -------------------------------------------------------------- */

/* "fieldvault: MESSAGE\n" on stderr, control characters escaped. */
void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* After reading records: on stderr, how many could not be opened by this
 * vault and what became of them (`what`: "marked [unreadable]", say), and
 * the organisation key to import when one of them needs it. Nothing for 0. */
void cli_unreadable_summary(size_t n, int org_key, const char *what);

/* Prints the failure of a library call (errmsg of `v` when there is a handle,
 * else fv_strerror) with an optional context, and returns its exit code. */
int cli_fail(const fv_vault *v, int rc, const char *context);

/* Text for a human: valid UTF-8 passes through; control characters (C0, DEL,
 * C1) and invalid bytes are escaped so that content cannot drive a terminal.
 * `multiline` keeps newlines and tabs as they are. */
void text_put(FILE *f, const char *s, size_t len, int multiline);
void text_puts(FILE *f, const char *s);

/* A JSON string literal, quotes included. Valid UTF-8 passes through
 * unchanged; '"', '\\', control characters (incl. NUL, DEL and C1) are
 * escaped; an invalid byte becomes U+FFFD. */
void json_str(FILE *f, const char *s, size_t len);
void json_strz(FILE *f, const char *s);
/* "key": */
void json_key(FILE *f, const char *key);
/* An id as a JSON string of lowercase hex. */
void json_id(FILE *f, const unsigned char id[FV_ID_BYTES]);
/* A top-level array of objects, one a line: after "[", json_list_item
 * opens the i-th object (counting from 0); json_list_end closes an array of
 * n objects. */
void json_list_item(FILE *f, size_t i);
void json_list_end(FILE *f, size_t n);
/* A time as "YYYY-MM-DDTHH:MM:SSZ" (UTC), or null if out of range. */
void json_time(FILE *f, int64_t t);

/* Formats `t` (Unix seconds) in UTC into out; "?" if out of range. */
enum time_style {
    TIME_ISO,     /* 2026-11-27T22:34:51Z */
    TIME_MINUTES, /* 2026-11-27 22:34 */
    TIME_SECONDS  /* 2026-11-27 22:34:51 */
};
void time_format(char *out, size_t outlen, int64_t t, int style);

/* "12.3 MiB" */
void size_format(char *out, size_t outlen, uint64_t bytes);

/* A duration for a human: "1:05", "2:03:09", or "more than 99 hours". */
void duration_format(char *out, size_t outlen, double seconds);

/* Progress bar on stderr for long transfers: drawn only when stderr is a
 * terminal and the transfer has run for about a second. Pass cli_progress_fn
 * and the struct as the library's progress callback and payload. */
typedef struct cli_progress {
    const char *label;
    int enabled;
    int drawn;
    struct timespec start;
    struct timespec last;
} cli_progress;

void cli_progress_start(cli_progress *p, const char *label);
int cli_progress_fn(uint64_t done, uint64_t total, void *payload);
void cli_progress_end(cli_progress *p);

/* While armed, the first SIGINT or SIGTERM sets a flag that cli_progress_fn
 * and cli_canceled report, so a transfer stops cleanly (FV_ECANCELED); a
 * second one ends the process as usual. */
void cli_cancel_arm(void);
void cli_cancel_disarm(void);
int cli_canceled(void);
/* While armed, a signal also cancels sync session `s` at once (a hanging
 * connect or handshake included); NULL before the session is freed. */
struct fv_sync_session;
void cli_cancel_session(struct fv_sync_session *s);

/* Flushes stdout; returns 0 or CLI_IO after printing why. */
int cli_flush_stdout(void);

/* ---- commands (commands.c) and help (help.c) ------------------------------ */

int cmd_init(cli *c);
int cmd_add(cli *c);
int cmd_list(cli *c);
int cmd_show(cli *c);
int cmd_edit(cli *c);
int cmd_delete(cli *c);
int cmd_search(cli *c);
int cmd_attachment(cli *c);
int cmd_passwd(cli *c);
int cmd_panic(cli *c);
int cmd_version(cli *c);
int cmd_config(cli *c);
int cmd_duress(cli *c);
int cmd_merge(cli *c);
int cmd_review(cli *c);
int cmd_note(cli *c);
int cmd_notes(cli *c);
int cmd_retract(cli *c);
int cmd_retractions(cli *c);
int cmd_quarantine(cli *c);
/* web/desk.c: the desk in a browser (FV_DESK). */
int cmd_desk(cli *c);

/* Helpers of commands.c that the sync commands share. */
/* Prints the command's help when --help was given. Returns 1 if it did. */
int cli_help_requested(cli *c, int *rc);
/* Checks the number of positional arguments; CLI_USAGE after printing why. */
int cli_want_positionals(const cli *c, size_t min, size_t max,
                         const char *what);
/* The start of most commands: cli_parse with `opts`, --help, then
 * cli_want_positionals. Returns 1 when the command ends there (--help was
 * answered, or a usage error was printed) with its exit code in *rc, else 0
 * with *rc 0. */
int cli_begin(cli *c, cli_opt *opts, size_t min, size_t max, const char *what,
              int *rc);
/* Finds the vault directory (*dir, malloc'd, the caller frees it even on
 * failure), obtains the passphrase and opens the vault. Returns 0 or an
 * exit code (message printed). */
int cli_open_vault(const cli *c, fv_vault **v, char **dir);
/* Makes room for element n of a growing array `arr` of *cap elements of
 * `size` bytes, doubling it (from `first`) when full. Returns the array,
 * perhaps moved, or NULL when out of memory (`arr` is then unchanged). */
void *cli_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first);

/* ---- export and verify (desk_cmds.c) -------------------------------------- */

int cmd_export(cli *c);
int cmd_verify(cli *c);

/* ---- sync commands (sync_cmds.c) ------------------------------------------ */

int cmd_server(cli *c);
int cmd_serve(cli *c);
int cmd_enroll(cli *c);
int cmd_org(cli *c);
int cmd_sync(cli *c);
int cmd_bundle(cli *c);

/* Prints the help of `cmd` (NULL: the overview) on `f`. Returns 0 if the
 * command is known. */
int cli_help(FILE *f, const char *cmd);

#endif /* FV_CLI_H */
