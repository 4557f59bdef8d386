/*
 * args.c - a small command-line parser: long options ("--name VALUE" or
 * "--name=VALUE"), global options anywhere, "--" to end options.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
