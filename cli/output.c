/*
 * output.c - what the command prints: diagnostics, escaped text, JSON
 * values, times and sizes, and the progress bar.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "civil.h"
#include "codec.h"
#include "cli.h"
#include "fieldvault_sync.h"

static void put_hex_escape(FILE *f, const char *prefix, unsigned v, int digits)
{
    fprintf(f, "%s%0*x", prefix, digits, v);
}

void text_put(FILE *f, const char *s, size_t len, int multiline)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n = fv_utf8_seq(p + i, len - i, &cp);
        if (n == 0) {
            put_hex_escape(f, "\\x", p[i], 2);
            i++;
            continue;
        }
        if (cp < 0x20 || cp == 0x7f) {
            if (multiline && (cp == '\n' || cp == '\t'))
                fputc((int)cp, f);
            else if (cp == '\n')
                fputs("\\n", f);
            else if (cp == '\t')
                fputs("\\t", f);
            else if (cp == '\r')
                fputs("\\r", f);
            else
                put_hex_escape(f, "\\x", cp, 2);
        } else if (cp >= 0x80 && cp <= 0x9f) {
            put_hex_escape(f, "\\u", cp, 4);
        } else {
            fwrite(p + i, 1, n, f);
        }
        i += n;
    }
}

void text_puts(FILE *f, const char *s)
{
    text_put(f, s ? s : "", s ? strlen(s) : 0, 0);
}

void json_str(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    fputc('"', f);
    while (i < len) {
        uint32_t cp;
        size_t n = fv_utf8_seq(p + i, len - i, &cp);
        if (n == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        switch (cp) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
                put_hex_escape(f, "\\u", cp, 4);
            else
                fwrite(p + i, 1, n, f);
        }
        i += n;
    }
    fputc('"', f);
}

void json_strz(FILE *f, const char *s)
{
    if (s == NULL)
        fputs("null", f);
    else
        json_str(f, s, strlen(s));
}

void json_key(FILE *f, const char *key)
{
    json_strz(f, key);
    fputs(": ", f);
}

void json_id(FILE *f, const unsigned char id[FV_ID_BYTES])
{
    char hex[FV_ID_HEX_BYTES];
    fv_id_to_hex(hex, id);
    fputc('"', f);
    fputs(hex, f);
    fputc('"', f);
}

void time_format(char *out, size_t outlen, int64_t t, int style)
{
    fv_civil c;
    int y;
    if (outlen == 0)
        return;
    /* The project's 64-bit date routine, not gmtime_r: armhf's time_t is
     * 32 bits and ends in 2038. Years 0..9999 only. */
    fv_civil_from_unix(&c, t);
    if (c.year < 0 || c.year > 9999) {
        snprintf(out, outlen, "?");
        return;
    }
    y = (int)c.year;
    switch (style) {
    case TIME_ISO:
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02dZ", y,
                 c.month, c.day, c.hour, c.min, c.sec);
        break;
    case TIME_MINUTES:
        snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d", y, c.month,
                 c.day, c.hour, c.min);
        break;
    default:
        snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d", y,
                 c.month, c.day, c.hour, c.min, c.sec);
        break;
    }
}

void json_list_item(FILE *f, size_t i)
{
    fputs(i ? ",\n  {" : "\n  {", f);
}

void json_list_end(FILE *f, size_t n)
{
    fputs(n ? "\n]\n" : "]\n", f);
}

void json_time(FILE *f, int64_t t)
{
    char buf[32];
    time_format(buf, sizeof buf, t, TIME_ISO);
    if (strcmp(buf, "?") == 0) {
        fputs("null", f);
    } else {
        fputc('"', f);
        fputs(buf, f);
        fputc('"', f);
    }
}

void size_format(char *out, size_t outlen, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, outlen, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, outlen, "%.1f %s", v, units[u]);
}

void duration_format(char *out, size_t outlen, double seconds)
{
    unsigned long long t = seconds < 0 ? 0 : (unsigned long long)(seconds + 0.5);
    if (seconds >= 100.0 * 3600)
        snprintf(out, outlen, "more than 99 hours");
    else if (t >= 3600)
        snprintf(out, outlen, "%llu:%02llu:%02llu", t / 3600, t / 60 % 60,
                 t % 60);
    else
        snprintf(out, outlen, "%llu:%02llu", t / 60, t % 60);
}

void cli_error(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(buf, sizeof buf, "error");
    fflush(stdout);
    fputs("fieldvault: ", stderr);
    text_put(stderr, buf, strlen(buf), 0);
    fputc('\n', stderr);
    fflush(stderr);
}

/* The exit code table is in main.c's comment and the README. */
int cli_exit_code(int fv_result)
{
    static const struct {
        int fv;
        int code;
    } map[] = {
        {FV_OK, CLI_OK},
        {FV_EINVAL, CLI_USAGE},
        {FV_ENOMEM, CLI_FAIL},
        {FV_EIO, CLI_IO},
        {FV_ENOVAULT, CLI_NOVAULT},
        {FV_EEXIST, CLI_EXISTS},
        {FV_EPASSPHRASE, CLI_PASSPHRASE},
        {FV_EVERSION, CLI_VERSION},
        {FV_ECORRUPT, CLI_CORRUPT},
        {FV_ENOTFOUND, CLI_NOTFOUND},
        {FV_ENOSPC, CLI_NOSPACE},
        {FV_ECANCELED, CLI_CANCELED},
        {FV_ELIMIT, CLI_USAGE},
        {FV_EBUSY, CLI_BUSY},
        {FV_ECRYPTO, CLI_FAIL},
        {FV_EAMBIGUOUS, CLI_NOTFOUND},
        {FV_ENET, CLI_NETWORK},
        {FV_EPIN, CLI_PIN},
        {FV_ETLS, CLI_NETWORK},
        {FV_EEOF, CLI_NETWORK},
        {FV_EPROTO, CLI_CORRUPT},
        {FV_EDENIED, CLI_DENIED},
        {FV_EINVITE, CLI_INVITE},
        {FV_EINCOMPLETE, CLI_INCOMPLETE},
        {FV_ESERVER, CLI_SERVER},
        {FV_EPROXY, CLI_PROXY},
        {FV_EDATABASE, CLI_DATABASE},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (map[i].fv == fv_result)
            return map[i].code;
    }
    return CLI_FAIL;
}

int cli_fail(const fv_vault *v, int rc, const char *context)
{
    /* The handle's message is the last call's: "no error" when the
     * failure is the CLI's own, after calls that succeeded. */
    const char *msg = v ? fv_vault_errmsg(v) : fv_strerror(rc);
    if (msg == NULL || *msg == '\0' || strcmp(msg, "no error") == 0)
        msg = fv_strerror(rc);
    if (context != NULL)
        cli_error("%s: %s", context, msg);
    else
        cli_error("%s", msg);
    return cli_exit_code(rc);
}

int cli_flush_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        cli_error("cannot write to standard output: %s", strerror(e));
        return e == ENOSPC ? CLI_NOSPACE : CLI_IO;
    }
    return CLI_OK;
}

/* ---- cancel on SIGINT and SIGTERM ----------------------------------------- */

static volatile sig_atomic_t interrupted;
/* The sync session the handler cancels at once; it stores to it, so it must
 * be lock-free to be async-signal-safe. */
static fv_sync_session *_Atomic cancel_session;
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "pointers must be lock-free");
static struct sigaction saved_int, saved_term;
static int armed_int, armed_term;

static void on_cancel_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    /* Async-signal-safe, and it keeps errno. */
    fv_sync_session_cancel(atomic_load(&cancel_session));
}

void cli_cancel_arm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_cancel_signal;
    sigemptyset(&sa.sa_mask);
    /* A second signal ends the process; system calls are restarted so that
     * the library sees the cancel at its next progress call (or through the
     * session's wake pipe), not an EINTR. */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    armed_int = sigaction(SIGINT, &sa, &saved_int) == 0;
    armed_term = sigaction(SIGTERM, &sa, &saved_term) == 0;
}

void cli_cancel_disarm(void)
{
    if (armed_int)
        sigaction(SIGINT, &saved_int, NULL);
    if (armed_term)
        sigaction(SIGTERM, &saved_term, NULL);
    armed_int = armed_term = 0;
}

void cli_cancel_session(fv_sync_session *s)
{
    atomic_store(&cancel_session, s);
    /* A signal that came before the session was set is not lost. */
    if (s && interrupted)
        fv_sync_session_cancel(s);
}

int cli_canceled(void)
{
    return interrupted != 0;
}

/* ---- progress bar ---------------------------------------------------------- */

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) +
           (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void cli_progress_start(cli_progress *p, const char *label)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->enabled = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &p->start);
}

int cli_progress_fn(uint64_t done, uint64_t total, void *payload)
{
    cli_progress *p = payload;
    struct timespec now;
    double elapsed;

    if (cli_canceled())
        return 1;
    if (p == NULL || !p->enabled)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    elapsed = seconds_between(&p->start, &now);
    if (elapsed < 1.0)
        return 0;
    if (p->drawn && done < total && seconds_between(&p->last, &now) < 0.1)
        return 0;
    p->last = now;

    char sdone[32], stotal[32], srate[32];
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    size_t fill = total ? (size_t)((double)done / (double)total * WIDTH) : WIDTH;
    if (fill > WIDTH)
        fill = WIDTH;
    memset(bar, '#', fill);
    memset(bar + fill, '.', WIDTH - fill);
    bar[WIDTH] = '\0';
    size_format(sdone, sizeof sdone, done);
    size_format(stotal, sizeof stotal, total);
    double rate = (double)done / elapsed; /* the average: a steady figure */
    size_format(srate, sizeof srate, (uint64_t)rate);
    fprintf(stderr, "\r%s [%s] %s / %s  %s/s", p->label, bar, sdone, stotal,
            srate);
    if (total > done && rate >= 1.0) {
        char sleft[32];
        duration_format(sleft, sizeof sleft, (double)(total - done) / rate);
        fprintf(stderr, "  %s left", sleft);
    }
    fputs("\033[K", stderr);
    fflush(stderr);
    p->drawn = 1;
    return 0;
}

void cli_progress_end(cli_progress *p)
{
    if (p->drawn) {
        fputc('\n', stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}
