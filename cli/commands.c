/*
 * commands.c - the subcommands: parse their arguments, obtain the
 * passphrase, call the library, print. Every copy of record content made
 * here (narrative, field keys) is wiped before it is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/vfs.h>
#endif

#include "cli.h"
#include "json_record.h"
#include "fieldvault_sync.h"

/* ---- shared helpers (the cli_* ones are shared with sync_cmds.c) -------- */

int cli_help_requested(cli *c, int *rc)
{
    if (!c->help)
        return 0;
    cli_help(stdout, c->cmd);
    *rc = cli_flush_stdout();
    return 1;
}

int cli_want_positionals(const cli *c, size_t min, size_t max,
                         const char *what)
{
    if (c->npos < min) {
        cli_error("%s: missing %s (see 'fieldvault %s --help')", c->cmd, what,
                  c->cmd);
        return CLI_USAGE;
    }
    if (c->npos > max) {
        cli_error("%s: unexpected argument '%s'", c->cmd, c->pos[max]);
        return CLI_USAGE;
    }
    return 0;
}

int cli_begin(cli *c, cli_opt *opts, size_t min, size_t max, const char *what,
              int *rc)
{
    *rc = cli_parse(c, opts);
    if (*rc != 0 || cli_help_requested(c, rc))
        return 1;
    *rc = cli_want_positionals(c, min, max, what);
    return *rc != 0;
}

void *cli_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return arr;
    size_t want = *cap ? *cap * 2 : first;
    void *p = realloc(arr, want * size);
    if (p != NULL)
        *cap = want;
    return p;
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + 1 + strlen(b) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* The vault directory: --vault, FIELDVAULT_DIR, $XDG_DATA_HOME/fieldvault,
 * $HOME/.local/share/fieldvault. *is_default tells the last two apart. */
static int vault_dir(const cli *c, char **out, int *is_default)
{
    const char *e;

    *is_default = 0;
    *out = NULL;
    if (c->vault_opt != NULL) {
        if (*c->vault_opt == '\0') {
            cli_error("--vault: empty directory name");
            return CLI_USAGE;
        }
        *out = strdup(c->vault_opt);
    } else if ((e = getenv("FIELDVAULT_DIR")) != NULL && *e != '\0') {
        *out = strdup(e);
    } else {
        *is_default = 1;
        if ((e = getenv("XDG_DATA_HOME")) != NULL && e[0] == '/') {
            *out = path_join(e, "fieldvault");
        } else if ((e = getenv("HOME")) != NULL && *e != '\0') {
            *out = path_join(e, ".local/share/fieldvault");
        } else {
            cli_error("no vault directory: use --vault DIR or set "
                      "FIELDVAULT_DIR (HOME is not set)");
            return CLI_USAGE;
        }
    }
    if (*out == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    return 0;
}

/* Creates the missing parents of `path` (mode 0700), for the default
 * per-user location only. */
static int make_parents(const char *path)
{
    char *p = strdup(path);
    int rc = 0;
    if (p == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            cli_error("cannot create %s: %s", p, strerror(errno));
            rc = CLI_IO;
            break;
        }
        *s = '/';
    }
    free(p);
    return rc;
}

/* Prints "WHAT DIR: reason" for a failure without a handle. */
/* Why `dir` cannot hold a vault, when the library's code alone (an I/O
 * error, no vault) would hide it: a path on a pseudo file system such as
 * /proc, a regular file where a directory of the path should be, a
 * directory this user may not use, and (`missing_parent`, for init) a
 * parent directory that does not exist. Writes the cause, naming the path
 * at fault, into `out` and returns 1, or 0 if none of these is it. Only
 * stat(), statfs() and access() on the path: nothing is opened or made. */
static int dir_problem(const char *dir, int missing_parent, char *out, size_t outlen)
{
    char path[4096];
    struct stat sb;
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof path)
        return 0;
    memcpy(path, dir, n + 1);
#ifdef __linux__
    {
        /* The deepest existing directory of the path. */
        struct statfs fs;
        char *slash;
        while (stat(path, &sb) != 0 && (slash = strrchr(path, '/')) != NULL)
            *(slash == path ? slash + 1 : slash) = '\0';
        if (statfs(stat(path, &sb) == 0 ? path : ".", &fs) == 0 &&
            (fs.f_type == 0x9fa0 /* proc */ || fs.f_type == 0x62656572 /* sysfs */ ||
             fs.f_type == 0x1cd1 /* devpts */)) {
            snprintf(out, outlen, "%s is on a %s pseudo file system, which cannot hold a vault",
                     dir, fs.f_type == 0x9fa0 ? "proc" : fs.f_type == 0x1cd1 ? "devpts" : "sysfs");
            return 1;
        }
        memcpy(path, dir, n + 1);
    }
#endif
    /* Each leading part of the path, shortest first. */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && path[i] != '/')
            continue;
        path[i] = '\0';
        if (stat(path, &sb) != 0) {
            int e = errno;
            if (e != ENOENT)
                snprintf(out, outlen, "%s: %s", path, strerror(e));
            else if (missing_parent && i < n)
                snprintf(out, outlen, "%s does not exist (make the parent directories first)", path);
            else
                return 0;
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            snprintf(out, outlen, "%s is not a directory", path);
            return 1;
        }
        if (access(path, X_OK) != 0 || (i == n && access(path, R_OK | W_OK) != 0)) {
            snprintf(out, outlen, "%s: %s", path, strerror(errno));
            return 1;
        }
        path[i] = i < n ? '/' : '\0';
    }
    return 0;
}

static int cli_fail_dir(int rc, const char *what, const char *dir)
{
    char why[4200];
    /* The library says which kind of failure; the path says why. */
    if ((rc == FV_EIO || rc == FV_ENOVAULT) && dir_problem(dir, rc == FV_EIO, why, sizeof why)) {
        cli_error("%s %s: %s", what, dir, why);
        return cli_exit_code(FV_EIO);
    }
    /* The library's own message, which no handle outlived to keep. */
    cli_error("%s %s: %s", what, dir, fv_error_last());
    return cli_exit_code(rc);
}

int cli_open_vault(const cli *c, fv_vault **v, char **dir)
{
    cli_secret pass;
    int is_default;
    int rc = vault_dir(c, dir, &is_default);
    *v = NULL;
    if (rc != 0)
        return rc;
    if ((rc = cli_passphrase_get(&pass, c, "Vault passphrase: ", 0)) != 0)
        return rc;
    rc = fv_vault_open(v, *dir, pass.buf, pass.len);
    cli_secret_free(&pass);
    if (rc != FV_OK) {
        *v = NULL;
        return cli_fail_dir(rc, "cannot open vault", *dir);
    }
    return 0;
}

/* Resolves a full id or unique prefix. */
static int resolve(fv_vault *v, const char *hex, unsigned char id[FV_ID_BYTES])
{
    int rc = fv_record_resolve(v, id, hex);
    return rc == FV_OK ? 0 : cli_fail(v, rc, NULL);
}

/* A buffer of plaintext, wiped when it grows and when it is freed. */
typedef struct plainbuf {
    char *p;
    size_t len;
    size_t cap;
} plainbuf;

static void plainbuf_free(plainbuf *b)
{
    if (b->p != NULL) {
        fv_wipe(b->p, b->cap);
        free(b->p);
    }
    memset(b, 0, sizeof *b);
}

static int plainbuf_reserve(plainbuf *b, size_t want)
{
    if (want <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < want)
        cap *= 2;
    char *p = malloc(cap);
    if (p == NULL)
        return -1;
    if (b->p != NULL) {
        memcpy(p, b->p, b->len);
        fv_wipe(b->p, b->cap);
        free(b->p);
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Reads the `kind` of text ("narrative", "note") from `path` ("-" =
 * standard input), at most `max` bytes. */
static int read_text(const char *path, size_t max, const char *kind,
                     plainbuf *b)
{
    int fd = 0;
    int rc = 0;
    const char *what = strcmp(path, "-") == 0 ? "standard input" : path;

    if (strcmp(path, "-") != 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            cli_error("cannot open %s file %s: %s", kind, path,
                      strerror(errno));
            return CLI_IO;
        }
    }
    for (;;) {
        if (plainbuf_reserve(b, b->len + 65536 + 1) != 0) {
            cli_error("out of memory");
            rc = CLI_FAIL;
            break;
        }
        ssize_t n = read(fd, b->p + b->len, 65536);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cli_error("cannot read %s from %s: %s", kind, what,
                      strerror(errno));
            rc = CLI_IO;
            break;
        }
        if (n == 0)
            break;
        b->len += (size_t)n;
        if (b->len > max) {
            cli_error("%s from %s is longer than %zu bytes", kind, what, max);
            rc = CLI_USAGE;
            break;
        }
    }
    if (fd != 0)
        close(fd);
    return rc;
}

/* Fields from "K=V" arguments (split at the first '=') plus, for edit,
 * removals as K with the value "". Keys are copied; values point into argv. */
typedef struct fieldlist {
    fv_field *f;
    size_t n;
} fieldlist;

static void fieldlist_free(fieldlist *fl)
{
    for (size_t i = 0; i < fl->n; i++) {
        char *k = (char *)fl->f[i].key;
        fv_wipe(k, strlen(k));
        free(k);
    }
    free(fl->f);
    memset(fl, 0, sizeof *fl);
}

static int fieldlist_build(fieldlist *fl, const cli_opt *set,
                           const cli_opt *remove)
{
    size_t total = set->count + (remove ? remove->count : 0);
    memset(fl, 0, sizeof *fl);
    if (total == 0)
        return 0;
    fl->f = calloc(total, sizeof *fl->f);
    if (fl->f == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    for (size_t i = 0; i < set->count; i++) {
        const char *kv = set->values[i];
        const char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv) {
            cli_error("--field wants KEY=VALUE with a non-empty KEY");
            return CLI_USAGE;
        }
        char *k = strndup(kv, (size_t)(eq - kv));
        if (k == NULL) {
            cli_error("out of memory");
            return CLI_FAIL;
        }
        fl->f[fl->n].key = k;
        fl->f[fl->n].value = eq + 1;
        fl->n++;
    }
    for (size_t i = 0; remove && i < remove->count; i++) {
        if (remove->values[i][0] == '\0') {
            cli_error("--remove-field wants a non-empty KEY");
            return CLI_USAGE;
        }
        char *k = strdup(remove->values[i]);
        if (k == NULL) {
            cli_error("out of memory");
            return CLI_FAIL;
        }
        fl->f[fl->n].key = k;
        fl->f[fl->n].value = "";
        fl->n++;
    }
    return 0;
}

static fv_attachment_source *attachments_build(const cli_opt *attach)
{
    fv_attachment_source *a = calloc(attach->count ? attach->count : 1,
                                     sizeof *a);
    if (a == NULL)
        return NULL;
    for (size_t i = 0; i < attach->count; i++) {
        a[i].name = NULL; /* the library takes the basename */
        a[i].path = attach->values[i];
    }
    return a;
}

static void print_id_line(const unsigned char id[FV_ID_BYTES])
{
    char hex[FV_ID_HEX_BYTES];
    fv_id_to_hex(hex, id);
    fputs(hex, stdout);
    fputc('\n', stdout);
}

/* ---- init ------------------------------------------------------------------ */

int cmd_init(cli *c)
{
    cli_opt opts[] = {{"kdf", OPT_ONE, NULL, 0}, {NULL, 0, NULL, 0}};
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    cli_secret pass = {NULL, 0};
    fv_vault *v = NULL;
    char *dir = NULL;
    int is_default;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    if (opts[0].count) {
        const char *k = opts[0].values[0];
        if (strcmp(k, "desktop") == 0)
            co.kdf_profile = FV_KDF_DESKTOP;
        else if (strcmp(k, "phone") == 0)
            co.kdf_profile = FV_KDF_PHONE;
        else if (strcmp(k, "test") == 0)
            co.kdf_profile = FV_KDF_TEST;
        else {
            cli_error("--kdf: want desktop, phone or test, not '%s'", k);
            rc = CLI_USAGE;
            goto cleanup;
        }
    }
    if ((rc = vault_dir(c, &dir, &is_default)) != 0)
        goto cleanup;
    if (is_default && (rc = make_parents(dir)) != 0)
        goto cleanup;
    if ((rc = cli_passphrase_get(&pass, c, "New vault passphrase: ", 1)) != 0)
        goto cleanup;
    int r = fv_vault_create(&v, dir, pass.buf, pass.len, &co);
    cli_secret_free(&pass);
    if (r != FV_OK) {
        v = NULL;
        rc = cli_fail_dir(r, "cannot create a vault in", dir);
        goto cleanup;
    }
    unsigned char dev[FV_ID_BYTES];
    if ((r = fv_vault_get_device_id(v, dev)) != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "vault");
        json_strz(stdout, dir);
        fputs(", ", stdout);
        json_key(stdout, "device");
        json_id(stdout, dev);
        fputs("}\n", stdout);
    } else {
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, dev);
        fputs("created vault ", stdout);
        text_puts(stdout, dir);
        fputs("\ndevice ", stdout);
        fputs(hex, stdout);
        fputc('\n', stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_secret_free(&pass);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

/* ---- add and edit -------------------------------------------------------------- */

static int check_stdin_use(const cli *c, const cli_opt *narrative)
{
    if (narrative->count && strcmp(narrative->values[0], "-") == 0 &&
        cli_passphrase_uses_stdin(c)) {
        cli_error("--narrative-file - and --passphrase-fd 0 both want "
                  "standard input");
        return CLI_USAGE;
    }
    return 0;
}

/* What the record options of add and edit hold, for a fv_record_input. */
typedef struct record_args {
    fieldlist fields;
    fv_attachment_source *att;
    plainbuf narrative;
} record_args;

static void record_args_free(record_args *a)
{
    free(a->att);
    fieldlist_free(&a->fields);
    plainbuf_free(&a->narrative);
}

/* Checks and reads --title, --narrative-file, --field, --tag, --attach and
 * (edit only, absent from add's table) --remove-field, --remove-tag,
 * --remove-attachment into `in`, which then points into `a` and `opts`. */
static int record_args_build(record_args *a, const cli *c, cli_opt *opts,
                             fv_record_input *in)
{
    cli_opt *title = cli_opt_get(opts, "title");
    cli_opt *nfile = cli_opt_get(opts, "narrative-file");
    cli_opt *tags = cli_opt_get(opts, "tag");
    cli_opt *rtags = cli_opt_get(opts, "remove-tag");
    cli_opt *attach = cli_opt_get(opts, "attach");
    cli_opt *ratt = cli_opt_get(opts, "remove-attachment");
    int rc;

    if ((rc = check_stdin_use(c, nfile)) != 0)
        return rc;
    if ((rc = fieldlist_build(&a->fields, cli_opt_get(opts, "field"),
                              cli_opt_get(opts, "remove-field"))) != 0)
        return rc;
    if ((a->att = attachments_build(attach)) == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    if (nfile->count &&
        (rc = read_text(nfile->values[0], FV_MAX_NARRATIVE_BYTES, "narrative",
                        &a->narrative)) != 0)
        return rc;

    in->title = title->count ? title->values[0] : NULL;
    if (nfile->count) {
        in->narrative = a->narrative.p ? a->narrative.p : "";
        in->narrative_len = a->narrative.len;
    }
    in->fields = a->fields.f;
    in->nfields = a->fields.n;
    in->tags = tags->values;
    in->ntags = tags->count;
    in->attachments = a->att;
    in->nattachments = attach->count;
    if (rtags != NULL) {
        in->remove_tags = rtags->values;
        in->nremove_tags = rtags->count;
    }
    if (ratt != NULL) {
        in->remove_attachments = ratt->values;
        in->nremove_attachments = ratt->count;
    }
    return 0;
}

/* Runs fv_record_add (edit_id NULL), fv_record_edit or (merge)
 * fv_record_merge with a progress bar and Ctrl-C cancel while attachments
 * move. Returns 0 or an exit code (message printed). */
static int write_record(fv_vault *v, unsigned char out[FV_ID_BYTES],
                        const unsigned char *edit_id, int merge,
                        fv_record_input *in)
{
    cli_progress prog;
    int r;

    if (in->nattachments > 0) {
        cli_progress_start(&prog, "encrypting");
        in->progress = cli_progress_fn;
        in->progress_payload = &prog;
        cli_cancel_arm();
    }
    if (edit_id == NULL)
        r = fv_record_add(v, out, in);
    else if (merge)
        r = fv_record_merge(v, out, edit_id, in);
    else
        r = fv_record_edit(v, out, edit_id, in);
    if (in->nattachments > 0) {
        cli_cancel_disarm();
        cli_progress_end(&prog);
    }
    return r == FV_OK ? 0 : cli_fail(v, r, NULL);
}

int cmd_add(cli *c)
{
    cli_opt opts[] = {{"title", OPT_ONE, NULL, 0},
                      {"narrative-file", OPT_ONE, NULL, 0},
                      {"field", OPT_MANY, NULL, 0},
                      {"tag", OPT_MANY, NULL, 0},
                      {"attach", OPT_MANY, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    record_args args = {{NULL, 0}, NULL, {NULL, 0, 0}};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    if (cli_opt_get(opts, "title")->count == 0) {
        cli_error("add: --title is required");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = record_args_build(&args, c, opts, &in)) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = write_record(v, id, NULL, 0, &in)) != 0)
        goto cleanup;
    /* The record is durable now: print its id at once. */
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, id);
        fputs("}\n", stdout);
    } else {
        print_id_line(id);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    record_args_free(&args);
    cli_opts_free(opts);
    return rc;
}

/* Puts the number of heads of record `id` in *nheads. */
static int count_heads(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                       size_t *nheads)
{
    fv_record *rec = NULL;
    int r = fv_record_get(v, &rec, id);
    if (r != FV_OK)
        return cli_fail(v, r, NULL);
    *nheads = rec->nheads;
    fv_record_free(rec);
    return 0;
}

/* edit, and merge: the same changes, written on the newest head (edit) or
 * on every head (merge). */
static int edit_or_merge(cli *c, int merge)
{
    cli_opt opts[] = {{"title", OPT_ONE, NULL, 0},
                      {"narrative-file", OPT_ONE, NULL, 0},
                      {"field", OPT_MANY, NULL, 0},
                      {"remove-field", OPT_MANY, NULL, 0},
                      {"tag", OPT_MANY, NULL, 0},
                      {"remove-tag", OPT_MANY, NULL, 0},
                      {"attach", OPT_MANY, NULL, 0},
                      {"remove-attachment", OPT_MANY, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_record_input in = FV_RECORD_INPUT_INIT;
    record_args args = {{NULL, 0}, NULL, {NULL, 0, 0}};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    unsigned char rev[FV_ID_BYTES];
    int rc;

    if (cli_begin(c, opts, 1, 1, "record ID", &rc))
        goto cleanup;
    size_t changes = 0;
    for (cli_opt *o = opts; o->name; o++)
        changes += o->count;
    /* A merge without changes keeps the newest head's content. */
    if (changes == 0 && !merge) {
        cli_error("edit: nothing to change (see 'fieldvault edit --help')");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = record_args_build(&args, c, opts, &in)) != 0)
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    size_t nheads = 0;
    if (merge && changes == 0 && (rc = count_heads(v, id, &nheads)) != 0)
        goto cleanup;
    if (merge && changes == 0 && nheads < 2) {
        cli_error("merge: the record has no conflict and nothing to change");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = write_record(v, rev, id, merge, &in)) != 0)
        goto cleanup;
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, id);
        fputs(", ", stdout);
        json_key(stdout, "revision");
        json_id(stdout, rev);
        fputs("}\n", stdout);
    } else {
        print_id_line(rev);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    record_args_free(&args);
    cli_opts_free(opts);
    return rc;
}

int cmd_edit(cli *c)
{
    return edit_or_merge(c, 0);
}

int cmd_merge(cli *c)
{
    return edit_or_merge(c, 1);
}

/* ---- list and search ----------------------------------------------------------- */

/* A record's creating device, unknown (zeros) when its first revision has
 * not reached this vault (another device's edit, by courier). */
static int origin_known(const fv_record *r)
{
    static const unsigned char zero[FV_ID_BYTES];
    return memcmp(r->origin, zero, FV_ID_BYTES) != 0;
}

typedef struct listing {
    int json;
    size_t count;
    size_t unreadable; /* records shown as not readable here */
    int org_key;       /* one of them needs the organisation key */
} listing;

static int print_summary(const fv_record *r, void *payload)
{
    listing *l = payload;
    int complete = json_record_complete(r);

    if (l->json) {
        json_summary js;
        json_summary_from_record(&js, r);
        fputs(l->count ? ",\n  " : "\n  ", stdout);
        json_summary_write(stdout, &js);
    } else {
        char hex[FV_ID_HEX_BYTES];
        char when[32];
        fv_id_to_hex(hex, r->id);
        time_format(when, sizeof when, r->created, TIME_MINUTES);
        fputs(hex, stdout);
        fputs("  ", stdout);
        fputs(when, stdout);
        fputs("  ", stdout);
        text_puts(stdout, r->title);
        if (r->nheads > 1)
            fputs(" [conflict]", stdout);
        if (!complete)
            fputs(" [incomplete]", stdout);
        if (r->state != FV_STATE_NEW && fv_state_name(r->state) != NULL)
            fprintf(stdout, " [%s]", fv_state_name(r->state));
        fputc('\n', stdout);
    }
    l->count++;
    return 0;
}

/* A record this vault holds but cannot open: listed once, marked, with
 * why (never anything from inside it: nothing of it is readable here). */
static int print_unreadable(const fv_unreadable *u, void *payload)
{
    listing *l = payload;

    if (l->json) {
        fputs(l->count ? ",\n  " : "\n  ", stdout);
        json_unreadable_write(stdout, u);
    } else {
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, u->id);
        fputs(hex, stdout);
        fputs("  [unreadable] ", stdout);
        fputs(u->why, stdout);
        fputc('\n', stdout);
    }
    l->count++;
    l->unreadable++;
    if (u->reason == FV_UNREADABLE_NO_ORG_KEY)
        l->org_key = 1;
    return 0;
}

/* After a listing: how many records were shown as unreadable, on stderr,
 * and what a coordinator without the organisation key should do. */
void cli_unreadable_summary(size_t n, int org_key, const char *what)
{
    if (n == 0)
        return;
    cli_error("%zu record%s cannot be opened by this vault and %s %s%s",
              n, n == 1 ? "" : "s", n == 1 ? "was" : "were", what,
              org_key ? " (this vault lacks the organisation key: import it "
                        "with 'fieldvault org key import FILE')"
                      : "");
}

/* list, and search: every record, or those containing TEXT, that pass the
 * selection options. */
static int list_or_search(cli *c, int search)
{
    cli_opt opts[] = {CLI_FILTER_OPTS, {NULL, 0, NULL, 0}};
    cli_filter sel;
    fv_vault *v = NULL;
    char *dir = NULL;
    listing l = {0, 0, 0, 0};
    int rc;

    if (cli_begin(c, opts, search, search, "search TEXT", &rc))
        goto cleanup;
    if ((rc = cli_parse_filter(&sel, opts)) != 0)
        goto cleanup;
    if (search)
        sel.f.text = c->pos[0];
    l.json = c->json;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (l.json)
        fputs("[", stdout);
    int r = fv_vault_query_ex(v, &sel.f, print_summary, print_unreadable, &l);
    /* A document is always completed: on FV_ECORRUPT it holds every record
     * that verified. */
    if (l.json)
        json_list_end(stdout, l.count);
    rc = cli_flush_stdout();
    /* Shown, marked: the listing itself succeeded (exit 0). */
    cli_unreadable_summary(l.unreadable, l.org_key, "marked [unreadable]");
    if (r != FV_OK)
        rc = cli_fail(v, r, NULL);
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

int cmd_list(cli *c)
{
    return list_or_search(c, 0);
}

int cmd_search(cli *c)
{
    return list_or_search(c, 1);
}

/* ---- show ------------------------------------------------------------------------ */

typedef struct revcopy {
    unsigned char id[FV_ID_BYTES];
    unsigned char author[FV_ID_BYTES];
    int kind;
    int64_t time;
    int head;
    int purged;
    size_t nparents;
    unsigned char (*parents)[FV_ID_BYTES];
} revcopy;

typedef struct history {
    revcopy *r;
    size_t n;
    size_t cap;
    int oom;
} history;

static int collect_revision(const fv_revision *rev, void *payload)
{
    history *h = payload;
    revcopy *r = cli_grow(h->r, &h->cap, h->n, sizeof *r, 8);
    if (r == NULL) {
        h->oom = 1;
        return 1;
    }
    h->r = r;
    revcopy *rc = &h->r[h->n];
    memset(rc, 0, sizeof *rc);
    memcpy(rc->id, rev->id, FV_ID_BYTES);
    memcpy(rc->author, rev->author, FV_ID_BYTES);
    rc->kind = rev->kind;
    rc->time = rev->time;
    rc->head = rev->head;
    rc->purged = rev->purged;
    if (rev->nparents > 0) {
        rc->parents = malloc(rev->nparents * sizeof *rc->parents);
        if (rc->parents == NULL) {
            h->oom = 1;
            return 1;
        }
        memcpy(rc->parents, rev->parents, rev->nparents * sizeof *rc->parents);
        rc->nparents = rev->nparents;
    }
    h->n++;
    return 0;
}

static void history_free(history *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->r[i].parents);
    free(h->r);
    memset(h, 0, sizeof *h);
}

/* Notes copied out of fv_note_list; their text is wiped when freed. */
typedef struct notecopy {
    unsigned char id[FV_ID_BYTES];
    unsigned char record[FV_ID_BYTES];
    unsigned char author[FV_ID_BYTES];
    int64_t time;
    char *text;
    size_t len;
} notecopy;

typedef struct notelist {
    notecopy *n;
    size_t count;
    size_t cap;
    int oom;
} notelist;

static int collect_note(const fv_note *note, void *payload)
{
    notelist *l = payload;
    notecopy *n = cli_grow(l->n, &l->cap, l->count, sizeof *n, 8);
    if (n == NULL) {
        l->oom = 1;
        return 1;
    }
    l->n = n;
    n = &l->n[l->count];
    memset(n, 0, sizeof *n);
    n->len = strlen(note->text);
    n->text = malloc(n->len + 1);
    if (n->text == NULL) {
        l->oom = 1;
        return 1;
    }
    memcpy(n->text, note->text, n->len + 1);
    memcpy(n->id, note->id, FV_ID_BYTES);
    memcpy(n->record, note->record, FV_ID_BYTES);
    memcpy(n->author, note->author, FV_ID_BYTES);
    n->time = note->time;
    l->count++;
    return 0;
}

static void notelist_free(notelist *l)
{
    for (size_t i = 0; i < l->count; i++) {
        fv_wipe(l->n[i].text, l->n[i].len);
        free(l->n[i].text);
    }
    free(l->n);
    memset(l, 0, sizeof *l);
}

/* The notes about record `id` (NULL: every record) into `l`. Returns 0 or
 * an exit code (message printed). */
static int notes_load(fv_vault *v, const unsigned char *id, notelist *l)
{
    int r = fv_note_list(v, id, collect_note, l);
    if (l->oom) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    return r == FV_OK ? 0 : cli_fail(v, r, NULL);
}

/* One note as a JSON object: {id, record, author, time, text}. */
static void note_json(FILE *o, const notecopy *n)
{
    json_note_write(o, n->id, n->record, n->author, n->time, n->text, n->len);
}

/* Text of several lines, each after `indent`, escaped for the terminal. */
static void put_indented(FILE *o, const char *s, size_t len,
                         const char *indent)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : len - i;
        fputs(indent, o);
        text_put(o, s + i, n, 1);
        fputc('\n', o);
        i += n + 1;
    }
}

/* A note for a human: WHEN  from AUTHOR, then its text indented. */
static void note_text(FILE *o, const notecopy *n, const char *indent)
{
    char when[40], author[FV_ID_HEX_BYTES];
    time_format(when, sizeof when, n->time, TIME_MINUTES);
    fv_id_to_hex(author, n->author);
    fprintf(o, "%s%s UTC  from %s\n", indent, when, author);
    char deeper[16];
    snprintf(deeper, sizeof deeper, "%s  ", indent);
    put_indented(o, n->text, n->len, deeper);
}


/* show --json: the shown (newest) head's content, then the record's
 * revisions, heads, each readable head's content (head_records, in the
 * order of heads; `hr` runs parallel to h->r), notes and delivery. */
static void show_json(const fv_record *r, const history *h,
                      fv_record *const *hr, const notelist *notes,
                      int delivered)
{
    FILE *o = stdout;
    fputs("{\n", o);
    json_record_members(o, r, "  ", 1);
    fputs("  ", o);
    json_key(o, "revisions");
    fputs("[", o);
    for (size_t i = 0; i < h->n; i++) {
        const revcopy *rv = &h->r[i];
        fputs(i ? ",\n    " : "\n    ", o);
        json_revision_write(o, rv->id, rv->kind, rv->time, rv->author,
                            (const unsigned char(*)[FV_ID_BYTES])rv->parents,
                            rv->nparents, rv->head);
    }
    fputs(h->n ? "\n  ],\n  " : "],\n  ", o);
    json_key(o, "heads");
    fputs("[", o);
    size_t nh = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (!h->r[i].head)
            continue;
        fputs(nh++ ? ", " : "", o);
        json_id(o, h->r[i].id);
    }
    fputs("],\n  ", o);
    json_key(o, "head_records");
    fputs("[", o);
    nh = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (hr[i] == NULL)
            continue;
        fputs(nh++ ? ",\n    {\n" : "\n    {\n", o);
        json_record_members(o, hr[i], "      ", 0);
        fputs("    }", o);
    }
    fputs(nh ? "\n  ],\n  " : "],\n  ", o);
    json_key(o, "notes");
    fputs("[", o);
    for (size_t i = 0; i < notes->count; i++) {
        fputs(i ? ",\n    " : "\n    ", o);
        note_json(o, &notes->n[i]);
    }
    fputs(notes->count ? "\n  ],\n  " : "],\n  ", o);
    json_key(o, "delivered");
    fputs(delivered ? "true\n}\n" : "false\n}\n", o);
}

/* One revision's fields, tags, attachments and narrative for a human, each
 * heading after `ind`, the narrative's lines after `text_ind`: show's
 * shown head, and each head of a conflict. */
static void record_body_text(FILE *o, const fv_record *r, const char *ind,
                             const char *text_ind)
{
    if (r->nfields > 0) {
        fprintf(o, "%sfields:\n", ind);
        for (size_t i = 0; i < r->nfields; i++) {
            fprintf(o, "%s  ", ind);
            text_puts(o, r->fields[i].key);
            fputs(": ", o);
            text_puts(o, r->fields[i].value);
            fputc('\n', o);
        }
    }
    if (r->ntags > 0) {
        fprintf(o, "%stags:        ", ind);
        for (size_t i = 0; i < r->ntags; i++) {
            fputs(i ? ", " : "", o);
            text_puts(o, r->tags[i]);
        }
        fputc('\n', o);
    }
    if (r->nattachments > 0) {
        fprintf(o, "%sattachments:\n", ind);
        for (size_t i = 0; i < r->nattachments; i++) {
            const fv_attachment_info *a = &r->attachments[i];
            char sz[32];
            size_format(sz, sizeof sz, a->size);
            fprintf(o, "%s  ", ind);
            text_puts(o, a->name);
            fprintf(o, "  %s (%llu bytes, %llu chunks)", sz,
                    (unsigned long long)a->size,
                    (unsigned long long)a->chunks);
            if (a->chunks_present < a->chunks)
                fprintf(o, "  incomplete: %llu of %llu chunks",
                        (unsigned long long)a->chunks_present,
                        (unsigned long long)a->chunks);
            fputc('\n', o);
        }
    }
    if (r->narrative != NULL && r->narrative_len > 0) {
        fprintf(o, "%snarrative:\n", ind);
        put_indented(o, r->narrative, r->narrative_len, text_ind);
    }
}

/* Each head of a conflict in full, in history order: what a coordinator
 * compares before a merge. */
static void heads_text(FILE *o, const fv_record *r, const history *h,
                       fv_record *const *hr)
{
    char hex[FV_ID_HEX_BYTES], author[FV_ID_HEX_BYTES], when[40];

    fputs("heads (each concurrent edit in full):\n", o);
    for (size_t i = 0; i < h->n; i++) {
        const revcopy *rv = &h->r[i];
        if (!rv->head)
            continue;
        time_format(when, sizeof when, rv->time, TIME_SECONDS);
        fv_id_to_hex(hex, rv->id);
        fv_id_to_hex(author, rv->author);
        fprintf(o, "  head %s  %s  by %.16s%s\n", hex, when, author,
                memcmp(rv->id, r->revision, FV_ID_BYTES) == 0 ? "  [shown]"
                                                              : "");
        if (hr[i] == NULL) {
            fputs(rv->kind == FV_TOMBSTONE
                      ? "    (a deletion: no content)\n"
                      : "    (its content is not held on this device)\n", o);
            continue;
        }
        fputs("    title:       ", o);
        text_puts(o, hr[i]->title);
        fputc('\n', o);
        record_body_text(o, hr[i], "    ", "      ");
    }
}

static void show_text(const fv_record *r, const history *h,
                      fv_record *const *hr, const notelist *notes,
                      int delivered)
{
    FILE *o = stdout;
    char hex[FV_ID_HEX_BYTES];
    char when[40];

    fv_id_to_hex(hex, r->id);
    fprintf(o, "id:          %s\n", hex);
    fputs("title:       ", o);
    text_puts(o, r->title);
    fputc('\n', o);
    time_format(when, sizeof when, r->created, TIME_SECONDS);
    fprintf(o, "created:     %s UTC\n", when);
    time_format(when, sizeof when, r->modified, TIME_SECONDS);
    fprintf(o, "modified:    %s UTC\n", when);
    if (origin_known(r)) {
        fv_id_to_hex(hex, r->origin);
        fprintf(o, "author:      %s\n", hex);
    } else {
        fputs("author:      unknown (the record's first revision has not "
              "reached this vault)\n", o);
    }
    if (memcmp(r->author, r->origin, FV_ID_BYTES) != 0) {
        fv_id_to_hex(hex, r->author);
        fprintf(o, "signed by:   %s (this revision)\n", hex);
    }
    fv_id_to_hex(hex, r->revision);
    fprintf(o, "revision:    %s\n", hex);
    if (fv_state_name(r->state) != NULL)
        fprintf(o, "state:       %s\n", fv_state_name(r->state));
    if (r->nheads > 1)
        fprintf(o, "conflict:    %zu heads (concurrent edits; the newest is "
                   "shown, every head in full below; 'merge' ends it)\n",
                r->nheads);
    /* Of what this device wrote: a record pulled from others is "yes". */
    fputs(delivered ? "delivered:   yes (the server acknowledged all this "
                      "device wrote of it)\n"
                    : "delivered:   no (the server has not acknowledged all "
                      "this device wrote of it yet)\n", o);
    record_body_text(o, r, "", "");
    if (r->nheads > 1)
        heads_text(o, r, h, hr);
    fputs("history (oldest first):\n", o);
    for (size_t i = 0; i < h->n; i++) {
        const revcopy *rv = &h->r[i];
        char author[FV_ID_HEX_BYTES];
        time_format(when, sizeof when, rv->time, TIME_SECONDS);
        fv_id_to_hex(hex, rv->id);
        fv_id_to_hex(author, rv->author);
        fprintf(o, "  %s  %s  %-9s  by %.16s", hex, when, json_revision_kind(rv->kind),
                author);
        if (rv->head)
            fputs("  [head]", o);
        if (rv->purged)
            fputs("  [purged]", o);
        fputc('\n', o);
        for (size_t k = 0; k < rv->nparents; k++) {
            fv_id_to_hex(hex, rv->parents[k]);
            fprintf(o, "      parent %s\n", hex);
        }
    }
    if (notes->count > 0) {
        fputs("notes (oldest first):\n", o);
        for (size_t i = 0; i < notes->count; i++)
            note_text(o, &notes->n[i], "  ");
    }
}

/* The content of each head in h (a revision still held and readable),
 * into *out, parallel to h->r: NULL for the rest. Returns 0 or an exit
 * code (message printed). */
static int heads_load(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                      const history *h, fv_record ***out)
{
    fv_record **hr = calloc(h->n ? h->n : 1, sizeof *hr);
    if (hr == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    *out = hr;
    for (size_t i = 0; i < h->n; i++) {
        if (!h->r[i].head || h->r[i].kind != FV_REVISION || h->r[i].purged)
            continue;
        int r = fv_record_get_revision(v, &hr[i], id, h->r[i].id);
        if (r == FV_ENOTFOUND)
            hr[i] = NULL; /* not readable here */
        else if (r != FV_OK)
            return cli_fail(v, r, NULL);
    }
    return 0;
}

int cmd_show(cli *c)
{
    fv_vault *v = NULL;
    fv_record *rec = NULL, **hr = NULL;
    history h = {NULL, 0, 0, 0};
    notelist notes = {NULL, 0, 0, 0};
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    int rc;

    if (cli_begin(c, NULL, 1, 1, "record ID", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    int r = fv_record_get(v, &rec, id);
    if (r != FV_OK) {
        rec = NULL;
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    r = fv_record_history(v, id, collect_revision, &h);
    if (h.oom) {
        cli_error("out of memory");
        rc = CLI_FAIL;
        goto cleanup;
    }
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if ((rc = heads_load(v, id, &h, &hr)) != 0)
        goto cleanup;
    int delivered = 0;
    if ((r = fv_record_delivered(v, &delivered, id)) != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if ((rc = notes_load(v, id, &notes)) != 0)
        goto cleanup;
    if (c->json)
        show_json(rec, &h, hr, &notes, delivered);
    else
        show_text(rec, &h, hr, &notes, delivered);
    rc = cli_flush_stdout();
cleanup:
    for (size_t i = 0; hr && i < h.n; i++)
        fv_record_free(hr[i]);
    free(hr);
    notelist_free(&notes);
    history_free(&h);
    fv_record_free(rec);
    fv_vault_close(v);
    free(dir);
    return rc;
}

/* ---- delete ----------------------------------------------------------------------- */

int cmd_delete(cli *c)
{
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    int rc;

    if (cli_begin(c, NULL, 1, 1, "record ID", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    int r = fv_record_delete(v, id);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, id);
        fputs(", ", stdout);
        json_key(stdout, "deleted");
        fputs("true}\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    return rc;
}

/* ---- the coordinator's desk: review, note, notes, retract ------------------------ */

int cmd_review(cli *c)
{
    cli_opt opts[] = {{"state", OPT_ONE, NULL, 0}, {NULL, 0, NULL, 0}};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    int state;
    int rc;

    if (cli_begin(c, opts, 1, 1, "record ID", &rc))
        goto cleanup;
    if (opts[0].count == 0) {
        cli_error("review: --state is required (new, reviewed, "
                  "needs-follow-up or archived)");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (fv_state_parse(&state, opts[0].values[0]) != FV_OK) {
        cli_error("--state: want new, reviewed, needs-follow-up or archived, "
                  "not '%s'", opts[0].values[0]);
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    int r = fv_record_set_state(v, id, state);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, id);
        fputs(", ", stdout);
        json_key(stdout, "state");
        json_strz(stdout, fv_state_name(state));
        fputs("}\n", stdout);
    } else {
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, id);
        fprintf(stdout, "%s  %s\n", hex, fv_state_name(state));
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

int cmd_note(cli *c)
{
    cli_opt opts[] = {{"text", OPT_ONE, NULL, 0},
                      {"text-file", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    plainbuf buf = {NULL, 0, 0};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    unsigned char note[FV_ID_BYTES];
    const char *text;
    int rc;

    if (cli_begin(c, opts, 1, 1, "record ID", &rc))
        goto cleanup;
    if (opts[0].count + opts[1].count != 1) {
        cli_error("note: give the text with --text T or --text-file F "
                  "('-': standard input), once");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (opts[1].count) {
        const char *f = opts[1].values[0];
        if (strcmp(f, "-") == 0 && cli_passphrase_uses_stdin(c)) {
            cli_error("--text-file - and --passphrase-fd 0 both want "
                      "standard input");
            rc = CLI_USAGE;
            goto cleanup;
        }
        if ((rc = read_text(f, FV_MAX_NOTE_BYTES, "note", &buf)) != 0)
            goto cleanup;
        if (memchr(buf.p, '\0', buf.len) != NULL) {
            cli_error("note: the text holds a NUL byte");
            rc = CLI_USAGE;
            goto cleanup;
        }
        buf.p[buf.len] = '\0'; /* read_text leaves room for it */
        text = buf.p;
    } else {
        text = opts[0].values[0];
    }
    if (text[0] == '\0') {
        cli_error("note: the text is empty");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (strlen(text) > FV_MAX_NOTE_BYTES) {
        cli_error("note: the text is longer than %u bytes",
                  (unsigned)FV_MAX_NOTE_BYTES);
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    int r = fv_note_add(v, note, id, text);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, note);
        fputs(", ", stdout);
        json_key(stdout, "record");
        json_id(stdout, id);
        fputs("}\n", stdout);
    } else {
        print_id_line(note);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    plainbuf_free(&buf);
    cli_opts_free(opts);
    return rc;
}

int cmd_notes(cli *c)
{
    notelist notes = {NULL, 0, 0, 0};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    int rc;

    if (cli_begin(c, NULL, 0, 1, "record ID", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (c->npos && (rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    if ((rc = notes_load(v, c->npos ? id : NULL, &notes)) != 0)
        goto cleanup;
    if (c->json)
        fputs("[", stdout);
    for (size_t i = 0; i < notes.count; i++) {
        const notecopy *n = &notes.n[i];
        if (c->json) {
            fputs(i ? ",\n  " : "\n  ", stdout);
            note_json(stdout, n);
            continue;
        }
        char hex[FV_ID_HEX_BYTES];
        fv_id_to_hex(hex, n->record);
        fprintf(stdout, "%srecord %s\n", i ? "\n" : "", hex);
        note_text(stdout, n, "");
    }
    if (c->json)
        json_list_end(stdout, notes.count);
    rc = cli_flush_stdout();
cleanup:
    notelist_free(&notes);
    fv_vault_close(v);
    free(dir);
    return rc;
}

/* Asks `question` on the terminal; only "yes" goes on. No terminal means
 * no question. Returns 0 to go on, or CLI_CANCELED after printing why. */
static int confirm_on_terminal(const cli *c, const char *question)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    char answer[8];
    size_t n = 0;

    if (fd < 0)
        return 0;
    (void)!write(fd, question, strlen(question));
    for (;;) {
        char ch;
        ssize_t k = read(fd, &ch, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0 || ch == '\n' || ch == '\r')
            break;
        if (n < sizeof answer)
            answer[n++] = ch;
    }
    close(fd);
    if (n == 3 && memcmp(answer, "yes", 3) == 0)
        return 0;
    cli_error("%s: canceled", c->cmd);
    return CLI_CANCELED;
}

int cmd_retract(cli *c)
{
    cli_opt opts[] = {{"yes", OPT_FLAG, NULL, 0}, {NULL, 0, NULL, 0}};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    char hex[FV_ID_HEX_BYTES];
    int rc;

    if (cli_begin(c, opts, 1, 1, "record ID", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[0], id)) != 0)
        goto cleanup;
    fv_id_to_hex(hex, id);
    if (opts[0].count == 0) {
        char q[200];
        snprintf(q, sizeof q, "Retract record %.16s...? Its copy is destroyed "
                 "here now and on every device after their next sync.\n"
                 "Type 'yes' to retract: ", hex);
        if ((rc = confirm_on_terminal(c, q)) != 0)
            goto cleanup;
    }
    int r = fv_record_retract(v, id);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, id);
        fputs(", ", stdout);
        json_key(stdout, "retracted");
        fputs("true}\n", stdout);
    } else {
        fprintf(stdout, "retracted %s\n", hex);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

static int print_retraction(const fv_retraction *r, void *payload)
{
    listing *l = payload;
    if (l->json) {
        json_list_item(stdout, l->count);
        json_key(stdout, "id");
        json_id(stdout, r->id);
        fputs(", ", stdout);
        json_key(stdout, "record");
        json_id(stdout, r->record);
        fputs(", ", stdout);
        json_key(stdout, "author");
        json_id(stdout, r->author);
        fputs(", ", stdout);
        json_key(stdout, "time");
        json_time(stdout, r->time);
        fputc('}', stdout);
    } else {
        char rec[FV_ID_HEX_BYTES], author[FV_ID_HEX_BYTES], when[40];
        fv_id_to_hex(rec, r->record);
        fv_id_to_hex(author, r->author);
        time_format(when, sizeof when, r->time, TIME_MINUTES);
        fprintf(stdout, "%s  %s  by %s\n", rec, when, author);
    }
    l->count++;
    return 0;
}

int cmd_retractions(cli *c)
{
    fv_vault *v = NULL;
    char *dir = NULL;
    listing l = {0, 0, 0, 0};
    int rc;

    if (cli_begin(c, NULL, 0, 0, "", &rc))
        goto cleanup;
    l.json = c->json;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (l.json)
        fputs("[", stdout);
    int r = fv_retraction_list(v, print_retraction, &l);
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

/* ---- attachment get ------------------------------------------------------------------ */

static int write_stdout(const unsigned char *buf, size_t len, void *payload)
{
    (void)payload;
    if (cli_canceled())
        return 1;
    return fwrite(buf, 1, len, stdout) == len ? 0 : 1;
}

/* Refuses, before a byte is written anywhere, an attachment whose chunks
 * have not all arrived (the library would fail at the first missing chunk,
 * after the bytes before it went to standard output). Exit 17. */
static int check_arrived(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                         const char *name)
{
    fv_record *rec = NULL;
    int rc = 0;
    int r = fv_record_get(v, &rec, id);
    if (r != FV_OK)
        return cli_fail(v, r, NULL);
    for (size_t i = 0; i < rec->nattachments; i++) {
        const fv_attachment_info *a = &rec->attachments[i];
        if (strcmp(a->name, name) != 0)
            continue;
        if (a->chunks_present < a->chunks) {
            cli_error("attachment get: the attachment has not fully arrived "
                      "yet: %llu of %llu chunks so far (sync again later)",
                      (unsigned long long)a->chunks_present,
                      (unsigned long long)a->chunks);
            rc = CLI_INCOMPLETE;
        }
        break;
    }
    fv_record_free(rec);
    return rc;
}

int cmd_attachment(cli *c)
{
    cli_opt opts[] = {{"output", OPT_ONE, NULL, 0}, {NULL, 0, NULL, 0}};
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned char id[FV_ID_BYTES];
    cli_progress prog;
    int rc = cli_parse(c, opts);

    if (rc != 0 || cli_help_requested(c, &rc))
        goto cleanup;
    if (c->npos == 0 || strcmp(c->pos[0], "get") != 0) {
        cli_error("attachment: want 'attachment get ID NAME --output FILE'");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_want_positionals(c, 3, 3, "ID and NAME")) != 0)
        goto cleanup;
    if (opts[0].count == 0) {
        cli_error("attachment get: --output FILE is required ('-' for "
                  "standard output)");
        rc = CLI_USAGE;
        goto cleanup;
    }
    const char *out = opts[0].values[0];
    int to_stdout = strcmp(out, "-") == 0;
    if (to_stdout && c->json) {
        cli_error("attachment get: --json and --output - both want standard "
                  "output");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (to_stdout && isatty(STDOUT_FILENO)) {
        cli_error("attachment get: refusing to write attachment bytes to a "
                  "terminal");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if ((rc = resolve(v, c->pos[1], id)) != 0)
        goto cleanup;
    if ((rc = check_arrived(v, id, c->pos[2])) != 0)
        goto cleanup;

    cli_progress_start(&prog, "decrypting");
    cli_cancel_arm();
    int r;
    if (to_stdout)
        r = fv_attachment_read(v, id, c->pos[2], write_stdout, NULL,
                               cli_progress_fn, &prog);
    else
        r = fv_attachment_save(v, id, c->pos[2], out, cli_progress_fn, &prog);
    cli_cancel_disarm();
    cli_progress_end(&prog);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "id");
        json_id(stdout, id);
        fputs(", ", stdout);
        json_key(stdout, "name");
        json_strz(stdout, c->pos[2]);
        fputs(", ", stdout);
        json_key(stdout, "output");
        json_strz(stdout, out);
        fputs("}\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

/* ---- passwd, panic, version ---------------------------------------------------------- */

int cmd_passwd(cli *c)
{
    cli_opt opts[] = {{"new-passphrase-file", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    cli_secret pass = {NULL, 0};
    fv_vault *v = NULL;
    char *dir = NULL;
    int rc;

    if (cli_begin(c, opts, 0, 0, "", &rc))
        goto cleanup;
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (opts[0].count)
        rc = cli_passphrase_from_file(&pass, opts[0].values[0]);
    else
        rc = cli_passphrase_prompt(&pass, "New passphrase: ", 1);
    if (rc != 0)
        goto cleanup;
    int r = fv_vault_passwd(v, pass.buf, pass.len);
    cli_secret_free(&pass);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "vault");
        json_strz(stdout, dir);
        fputs(", ", stdout);
        json_key(stdout, "passphrase_changed");
        fputs("true}\n", stdout);
    } else {
        fputs("passphrase changed\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_secret_free(&pass);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}

int cmd_panic(cli *c)
{
    char *dir = NULL;
    int is_default;
    int rc;

    if (cli_begin(c, NULL, 0, 0, "", &rc))
        goto cleanup;
    if ((rc = vault_dir(c, &dir, &is_default)) != 0)
        goto cleanup;
    int r = fv_vault_panic(dir);
    if (r != FV_OK) {
        rc = cli_fail_dir(r, "cannot destroy vault", dir);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "vault");
        json_strz(stdout, dir);
        fputs(", ", stdout);
        json_key(stdout, "destroyed");
        fputs("true}\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    free(dir);
    return rc;
}

int cmd_version(cli *c)
{
    int rc;
    if (cli_begin(c, NULL, 0, 0, "", &rc))
        return rc;
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "version");
        json_strz(stdout, fv_version());
        fputs(", ", stdout);
        json_key(stdout, "format");
        fprintf(stdout, "%d}\n", FV_FORMAT_VERSION);
    } else {
        fprintf(stdout, "fieldvault %s (vault format %d)\n", fv_version(),
                FV_FORMAT_VERSION);
    }
    return cli_flush_stdout();
}

/* ---- config ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int policy;
} retention_names[] = {
    {"keep", FV_RETENTION_KEEP},
    {"drop-after-receipt", FV_RETENTION_DROP_AFTER_RECEIPT},
};

static const char *retention_name(int policy)
{
    for (size_t i = 0; i < sizeof retention_names / sizeof retention_names[0];
         i++)
        if (retention_names[i].policy == policy)
            return retention_names[i].name;
    return "unknown";
}

/* config set|get proxy: the URL goes to the library, which checks it and
 * stores it sealed; what is shown back never holds its credentials. */
static int config_proxy(cli *c, int set)
{
    fv_vault *v = NULL;
    char *dir = NULL, *shown = NULL;
    int creds = 0, rc;

    if (set && c->pos[2][0] == '\0') {
        cli_error("config: proxy: want socks5h://[USER:PASS@]HOST:PORT, "
                  "socks5://..., http://... or none");
        return CLI_USAGE;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    int r = set ? fv_vault_set_proxy(v, c->pos[2]) : FV_OK;
    if (r == FV_OK)
        r = fv_vault_get_proxy(v, &shown, &creds);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "proxy");
        if (shown)
            json_strz(stdout, shown);
        else
            fputs("null", stdout);
        fputs(", ", stdout);
        json_key(stdout, "proxy_credentials");
        fputs(creds ? "true}\n" : "false}\n", stdout);
    } else {
        fprintf(stdout, "%s%s%s\n", set ? "proxy: " : "",
                shown ? shown : "none",
                creds ? " (with a user name and password)" : "");
    }
    rc = cli_flush_stdout();
cleanup:
    fv_free(shown);
    fv_vault_close(v);
    free(dir);
    return rc;
}

/* `config set wipe-after N|off`, `config get wipe-after`. */
static int config_wipe_after(cli *c, int set)
{
    fv_vault *v = NULL;
    char *dir = NULL;
    unsigned int n = 0;
    int rc, r;

    if (set && strcmp(c->pos[2], "off") != 0) {
        int k;
        if (cli_parse_int(c->pos[2], &k) != 0 || k < 1 || k > 1000000) {
            cli_error("config: wipe-after: want a number of failed unlocks "
                      "from 1 to 1000000, or off, not '%s'", c->pos[2]);
            return CLI_USAGE;
        }
        n = (unsigned int)k;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    r = set ? fv_vault_set_wipe_after(v, n) : fv_vault_get_wipe_after(v, &n);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "wipe_after");
        if (n)
            fprintf(stdout, "%u}\n", n);
        else
            fputs("null}\n", stdout);
    } else if (n) {
        fprintf(stdout, set ? "wipe-after: %u\n" : "%u\n", n);
    } else {
        fputs(set ? "wipe-after: off\n" : "off\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    return rc;
}

int cmd_config(cli *c)
{
    fv_vault *v = NULL;
    char *dir = NULL;
    int set, policy = FV_RETENTION_KEEP;
    int rc = cli_parse(c, NULL);

    if (rc != 0 || cli_help_requested(c, &rc))
        goto cleanup;
    if (c->npos == 0 || (strcmp(c->pos[0], "set") != 0 &&
                         strcmp(c->pos[0], "get") != 0)) {
        if (c->npos == 0)
            cli_error("config: missing subcommand (want set or get)");
        else
            cli_error("config: unknown subcommand '%s' (want set or get)",
                      c->pos[0]);
        rc = CLI_USAGE;
        goto cleanup;
    }
    set = strcmp(c->pos[0], "set") == 0;
    if ((rc = cli_want_positionals(c, set ? 3 : 2, set ? 3 : 2,
                               set ? "SETTING and VALUE" : "SETTING")) != 0)
        goto cleanup;
    if (strcmp(c->pos[1], "proxy") == 0) {
        rc = config_proxy(c, set);
        goto cleanup;
    }
    if (strcmp(c->pos[1], "wipe-after") == 0) {
        rc = config_wipe_after(c, set);
        goto cleanup;
    }
    if (strcmp(c->pos[1], "retention") != 0) {
        cli_error("config: unknown setting '%s' (want retention, proxy or wipe-after)",
                  c->pos[1]);
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (set) {
        size_t i, n = sizeof retention_names / sizeof retention_names[0];
        for (i = 0; i < n; i++)
            if (strcmp(c->pos[2], retention_names[i].name) == 0)
                break;
        if (i == n) {
            cli_error("config: retention: want keep or drop-after-receipt, "
                      "not '%s'", c->pos[2]);
            rc = CLI_USAGE;
            goto cleanup;
        }
        policy = retention_names[i].policy;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    int r = set ? fv_vault_set_retention(v, policy)
                : fv_vault_get_retention(v, &policy);
    if (r != FV_OK) {
        rc = cli_fail(v, r, NULL);
        goto cleanup;
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "retention");
        json_strz(stdout, retention_name(policy));
        fputs("}\n", stdout);
    } else if (set) {
        fprintf(stdout, "retention: %s\n", retention_name(policy));
    } else {
        fprintf(stdout, "%s\n", retention_name(policy));
    }
    rc = cli_flush_stdout();
cleanup:
    fv_vault_close(v);
    free(dir);
    return rc;
}

/* ---- duress ------------------------------------------------------------------------- */

/* `duress set [--duress-passphrase-file F] [--decoy-from DIR
 * [--decoy-passphrase-file F]]`, `duress clear`. */
int cmd_duress(cli *c)
{
    cli_opt opts[] = {{"duress-passphrase-file", OPT_ONE, NULL, 0},
                      {"decoy-from", OPT_ONE, NULL, 0},
                      {"decoy-passphrase-file", OPT_ONE, NULL, 0},
                      {NULL, 0, NULL, 0}};
    fv_duress_options dopts = FV_DURESS_OPTIONS_INIT;
    cli_secret pass = {NULL, 0}, spass = {NULL, 0};
    fv_vault *v = NULL, *src = NULL;
    char *dir = NULL;
    int rc, r, set;

    if (cli_begin(c, opts, 1, 1, "set or clear", &rc))
        goto cleanup;
    set = strcmp(c->pos[0], "set") == 0;
    if (!set && strcmp(c->pos[0], "clear") != 0) {
        cli_error("duress: unknown subcommand '%s' (want set or clear)", c->pos[0]);
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (!set && (opts[0].count || opts[1].count || opts[2].count)) {
        cli_error("duress clear: takes no options");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if (opts[2].count && !opts[1].count) {
        cli_error("duress: --decoy-passphrase-file needs --decoy-from");
        rc = CLI_USAGE;
        goto cleanup;
    }
    if ((rc = cli_open_vault(c, &v, &dir)) != 0)
        goto cleanup;
    if (!set) {
        if ((r = fv_vault_clear_duress(v)) != FV_OK) {
            rc = cli_fail(v, r, NULL);
            goto cleanup;
        }
    } else {
        if (opts[1].count) {
            rc = opts[2].count ? cli_passphrase_from_file(&spass, opts[2].values[0])
                               : cli_passphrase_prompt(&spass, "Decoy source passphrase: ", 0);
            if (rc != 0)
                goto cleanup;
            r = fv_vault_open(&src, opts[1].values[0], spass.buf, spass.len);
            cli_secret_free(&spass);
            if (r != FV_OK) {
                src = NULL;
                rc = cli_fail_dir(r, "cannot open the decoy source", opts[1].values[0]);
                goto cleanup;
            }
            dopts.decoy_from = src;
        }
        rc = opts[0].count ? cli_passphrase_from_file(&pass, opts[0].values[0])
                           : cli_passphrase_prompt(&pass, "Duress passphrase: ", 1);
        if (rc != 0)
            goto cleanup;
        r = fv_vault_set_duress(v, pass.buf, pass.len, &dopts);
        cli_secret_free(&pass);
        if (r != FV_OK) {
            rc = cli_fail(v, r, NULL);
            goto cleanup;
        }
    }
    if (c->json) {
        fputs("{", stdout);
        json_key(stdout, "duress");
        fputs(set ? "true}\n" : "false}\n", stdout);
    } else {
        fputs(set ? "duress passphrase set\n" : "duress passphrase removed\n", stdout);
    }
    rc = cli_flush_stdout();
cleanup:
    cli_secret_free(&pass);
    cli_secret_free(&spass);
    fv_vault_close(src);
    fv_vault_close(v);
    free(dir);
    cli_opts_free(opts);
    return rc;
}
