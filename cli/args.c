/*
 * args.c - a small command-line parser: long options ("--name VALUE" or
 * "--name=VALUE"), global options anywhere, "--" to end options.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "civil.h"
#include "cli.h"
#include "textparse.h"

/* Sets a single-valued global option, refusing a repeat. */
static int set_once(const char **slot, const char *value, const char *name)
{
    if (*slot != NULL) {
        cli_error("option --%s given more than once", name);
        return -1;
    }
    *slot = value;
    return 0;
}

/* Splits "--name[=value]": returns the name length, sets *eq to the value
 * after '=' or NULL. */
static size_t split_long(const char *arg, const char **eq)
{
    const char *name = arg + 2;
    const char *e = strchr(name, '=');
    *eq = e ? e + 1 : NULL;
    return e ? (size_t)(e - name) : strlen(name);
}

static int name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* Takes the value of option `name` from "=value" or the next argument. */
static int take_value(const char *eq, int argc, char **argv, int *i,
                      const char *name, size_t namelen, const char **out)
{
    if (eq != NULL) {
        *out = eq;
        return 0;
    }
    if (*i + 1 >= argc) {
        cli_error("option --%.*s needs a value", (int)namelen, name);
        return -1;
    }
    *i += 1;
    *out = argv[*i];
    return 0;
}

int cli_parse_global(cli *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *eq;
    const char *value;
    size_t n;

    if (strcmp(a, "-h") == 0) {
        c->help = 1;
        *i += 1;
        return 1;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
        return 0;
    n = split_long(a, &eq);
    const char *name = a + 2;
    if (name_is(name, n, "help") || name_is(name, n, "json")) {
        if (eq != NULL) {
            cli_error("option --%.*s takes no value", (int)n, name);
            return -1;
        }
        if (name_is(name, n, "help"))
            c->help = 1;
        else
            c->json = 1;
        *i += 1;
        return 1;
    }
    const char **slot = NULL;
    const char *canon = NULL;
    if (name_is(name, n, "vault")) {
        slot = &c->vault_opt;
        canon = "vault";
    } else if (name_is(name, n, "passphrase-file")) {
        slot = &c->passphrase_file;
        canon = "passphrase-file";
    } else if (name_is(name, n, "passphrase-fd")) {
        slot = &c->passphrase_fd;
        canon = "passphrase-fd";
    } else {
        return 0;
    }
    if (take_value(eq, argc, argv, i, name, n, &value) != 0)
        return -1;
    if (set_once(slot, value, canon) != 0)
        return -1;
    int fd;
    if (slot == &c->passphrase_fd && cli_parse_int(value, &fd) != 0) {
        cli_error("--passphrase-fd: not a file descriptor number: %s", value);
        return -1;
    }
    *i += 1;
    return 1;
}

cli_opt *cli_opt_get(cli_opt *opts, const char *name)
{
    for (cli_opt *o = opts; o && o->name; o++) {
        if (strcmp(o->name, name) == 0)
            return o;
    }
    return NULL;
}

static int add_value(cli_opt *o, const char *value, size_t cap)
{
    if (o->kind == OPT_ONE && o->count > 0) {
        cli_error("option --%s given more than once", o->name);
        return -1;
    }
    if (o->values == NULL) {
        o->values = calloc(cap, sizeof *o->values);
        if (o->values == NULL) {
            cli_error("out of memory");
            return -1;
        }
    }
    o->values[o->count++] = value;
    return 0;
}

int cli_parse(cli *c, cli_opt *opts)
{
    int argc = c->argc;
    char **argv = c->argv;
    size_t cap = (size_t)argc + 1;
    int only_pos = 0;

    free(c->pos);
    c->npos = 0;
    c->pos = calloc(cap, sizeof *c->pos);
    if (c->pos == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            c->pos[c->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        int g = cli_parse_global(c, argc, argv, &i);
        if (g < 0)
            return CLI_USAGE;
        if (g > 0) {
            i--; /* the loop advances */
            if (c->help)
                return 0;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            cli_error("unknown option '%s'", a);
            return CLI_USAGE;
        }
        const char *eq;
        size_t n = split_long(a, &eq);
        cli_opt *o = NULL;
        for (cli_opt *p = opts; p && p->name; p++) {
            if (name_is(a + 2, n, p->name)) {
                o = p;
                break;
            }
        }
        if (o == NULL) {
            cli_error("unknown option '%.*s'%s%s", (int)n + 2, a,
                      c->cmd ? " for " : "", c->cmd ? c->cmd : "");
            return CLI_USAGE;
        }
        if (o->kind == OPT_FLAG) {
            if (eq != NULL) {
                cli_error("option --%s takes no value", o->name);
                return CLI_USAGE;
            }
            o->count++;
            continue;
        }
        const char *value;
        if (take_value(eq, argc, argv, &i, o->name, strlen(o->name), &value) != 0)
            return CLI_USAGE;
        if (add_value(o, value, cap) != 0)
            return CLI_USAGE;
    }
    return 0;
}

void cli_opts_free(cli_opt *opts)
{
    for (cli_opt *o = opts; o && o->name; o++) {
        free(o->values);
        o->values = NULL;
        o->count = 0;
    }
}

void cli_free(cli *c)
{
    free(c->pos);
    c->pos = NULL;
    c->npos = 0;
}

int cli_parse_int(const char *s, int *out)
{
    char *end = NULL;
    long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

/* ---- record selection (list, export) -------------------------------------- */

int cli_parse_device_id(const char *hex, unsigned char id[FV_ID_BYTES])
{
    return fv_hex_decode(id, FV_ID_BYTES, hex, strlen(hex)) == FV_OK ? 0 : -1;
}

/* Reads exactly `n` decimal digits at *s, advancing it. */
static int take_digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*s)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

int cli_parse_time(const char *s, int end_of_day, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int y, mo, d, h = 0, mi = 0, sec = 0;

    if (take_digits(&s, 4, &y) || *s++ != '-' || take_digits(&s, 2, &mo) ||
        *s++ != '-' || take_digits(&s, 2, &d))
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return -1;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return -1;
    if (*s == '\0') {
        if (end_of_day) {
            h = 23;
            mi = 59;
            sec = 59;
        }
    } else {
        if (*s != 'T' && *s != 't' && *s != ' ')
            return -1;
        s++;
        if (take_digits(&s, 2, &h) || *s++ != ':' || take_digits(&s, 2, &mi))
            return -1;
        if (*s == ':') {
            s++;
            if (take_digits(&s, 2, &sec))
                return -1;
        } else if (end_of_day) {
            sec = 59; /* --until ...T10:30Z takes in all of 10:30 */
        }
        if (*s == 'Z' || *s == 'z')
            s++;
        if (*s != '\0' || h > 23 || mi > 59 || sec > 59)
            return -1;
    }
    *out = fv_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}

int cli_parse_filter(cli_filter *out, cli_opt *opts)
{
    static const fv_filter init = FV_FILTER_INIT;
    cli_opt *state = cli_opt_get(opts, "state");
    cli_opt *tag = cli_opt_get(opts, "tag");
    cli_opt *device = cli_opt_get(opts, "device");
    cli_opt *since = cli_opt_get(opts, "since");
    cli_opt *until = cli_opt_get(opts, "until");

    memset(out, 0, sizeof *out);
    out->f = init;
    if (state && state->count &&
        fv_state_parse(&out->f.state, state->values[0]) != FV_OK) {
        cli_error("--state: want new, reviewed, needs-follow-up or archived, "
                  "not '%s'", state->values[0]);
        return CLI_USAGE;
    }
    if (tag && tag->count) {
        if (tag->values[0][0] == '\0') {
            cli_error("--tag: empty tag");
            return CLI_USAGE;
        }
        out->f.tag = tag->values[0];
    }
    if (device && device->count) {
        static const unsigned char zero[FV_ID_BYTES];
        /* Zeros are no device's key; the vault reads a record whose first
         * revision has not arrived with its origin as zeros. */
        if (cli_parse_device_id(device->values[0], out->origin) != 0 ||
            memcmp(out->origin, zero, FV_ID_BYTES) == 0) {
            cli_error("--device: want a device id of 64 hex digits (see 'org "
                      "devices' or 'list --json'), not '%s'",
                      device->values[0]);
            return CLI_USAGE;
        }
        out->f.origin = out->origin;
    }
    const struct {
        cli_opt *o;
        int64_t *t;
    } times[] = {{since, &out->f.since}, {until, &out->f.until}};
    for (size_t i = 0; i < 2; i++) {
        if (times[i].o == NULL || times[i].o->count == 0)
            continue;
        if (cli_parse_time(times[i].o->values[0], i == 1, times[i].t) != 0) {
            cli_error("--%s: want a date YYYY-MM-DD or a UTC time "
                      "YYYY-MM-DDTHH:MM:SSZ (from 1970), not '%s'",
                      times[i].o->name, times[i].o->values[0]);
            return CLI_USAGE;
        }
    }
    if (out->f.since > out->f.until) {
        cli_error("--since %s is after --until %s", since->values[0],
                  until->values[0]);
        return CLI_USAGE;
    }
    return 0;
}
