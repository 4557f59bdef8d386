/*
 * passphrase.c - where the passphrase comes from: a file, a file descriptor
 * or the terminal with echo off. Passphrases live only in fv_secure_alloc
 * memory and are read with read(2), never through stdio buffers. There is
 * deliberately no plain passphrase environment variable.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* Room for the limit, one byte more to detect an overlong input, and NUL. */
#define SECRET_CAP (CLI_PASSPHRASE_MAX + 2)

static int secret_alloc(cli_secret *s)
{
    s->len = 0;
    s->buf = fv_secure_alloc(SECRET_CAP);
    if (s->buf == NULL) {
        cli_error("out of memory for the passphrase");
        return CLI_FAIL;
    }
    memset(s->buf, 0, SECRET_CAP);
    return 0;
}

void cli_secret_free(cli_secret *s)
{
    if (s->buf != NULL) {
        fv_wipe(s->buf, SECRET_CAP);
        fv_secure_free(s->buf);
    }
    s->buf = NULL;
    s->len = 0;
}

/* Strips one trailing "\n" or "\r\n", refuses an empty result. */
static int secret_finish(cli_secret *s, const char *what)
{
    if (s->len > 0 && s->buf[s->len - 1] == '\n') {
        s->len--;
        if (s->len > 0 && s->buf[s->len - 1] == '\r')
            s->len--;
    }
    s->buf[s->len] = '\0';
    if (s->len == 0) {
        cli_error("empty passphrase from %s refused", what);
        return CLI_USAGE;
    }
    return 0;
}

/* Reads everything from fd into s, at most CLI_PASSPHRASE_MAX bytes. */
static int secret_read_fd(cli_secret *s, int fd, const char *what)
{
    for (;;) {
        ssize_t n = read(fd, s->buf + s->len, SECRET_CAP - 1 - s->len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cli_error("cannot read the passphrase from %s: %s", what,
                      strerror(errno));
            return CLI_IO;
        }
        if (n == 0)
            break;
        s->len += (size_t)n;
        if (s->len > CLI_PASSPHRASE_MAX) {
            cli_error("passphrase from %s is longer than %d bytes", what,
                      CLI_PASSPHRASE_MAX);
            return CLI_USAGE;
        }
    }
    return secret_finish(s, what);
}

int cli_passphrase_from_file(cli_secret *out, const char *path)
{
    int rc = secret_alloc(out);
    int fd = -1;

    if (rc != 0)
        goto cleanup;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        cli_error("cannot open passphrase file %s: %s", path, strerror(errno));
        rc = CLI_IO;
        goto cleanup;
    }
    rc = secret_read_fd(out, fd, path);
cleanup:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        cli_secret_free(out);
    return rc;
}

static int passphrase_from_fd(cli_secret *out, int fd)
{
    char what[48];
    int rc = secret_alloc(out);
    if (rc != 0)
        return rc;
    snprintf(what, sizeof what, "file descriptor %d", fd);
    rc = secret_read_fd(out, fd, what);
    if (rc != 0)
        cli_secret_free(out);
    return rc;
}

/* ---- the terminal ---------------------------------------------------------- */

/* What a signal handler needs to give the terminal its echo back. */
static volatile sig_atomic_t tty_raw;
static int tty_fd = -1;
static struct termios tty_saved;

/* Stop signals are left alone: a handler could only restore echo for the rest
 * of the prompt too; the shell resets the terminal when it takes it back. */
static const int tty_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE,
                                  SIGALRM};
#define NSIGNALS (sizeof tty_signals / sizeof tty_signals[0])
static struct sigaction tty_saved_actions[NSIGNALS];

static void on_tty_signal(int sig)
{
    int saved_errno = errno;
    if (tty_raw) {
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
        (void)!write(tty_fd, "\n", 1);
        tty_raw = 0;
    }
    /* SA_RESETHAND restored the default action: deliver it again. */
    raise(sig);
    errno = saved_errno;
}

static void tty_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tty_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(tty_signals[i], &sa, &tty_saved_actions[i]);
}

static void tty_signals_restore(void)
{
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(tty_signals[i], &tty_saved_actions[i], NULL);
}

static void tty_write(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(tty_fd, s, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += n;
        len -= (size_t)n;
    }
}

/* Reads one line with echo off into s. The terminal is open as tty_fd. */
static int tty_read_line(cli_secret *s, const char *prompt)
{
    struct termios noecho;
    int rc = 0;
    int too_long = 0;

    if (tcgetattr(tty_fd, &tty_saved) != 0) {
        cli_error("cannot read the passphrase: the terminal refuses settings");
        return CLI_USAGE;
    }
    noecho = tty_saved;
    noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
    noecho.c_lflag |= ECHONL | ICANON;

    /* Echo goes off before the prompt appears, so nothing typed after the
     * prompt is ever shown. */
    tty_signals_install();
    tty_raw = 1;
    if (tcsetattr(tty_fd, TCSAFLUSH, &noecho) != 0) {
        tty_raw = 0;
        tty_signals_restore();
        cli_error("cannot turn off the terminal's echo");
        return CLI_FAIL;
    }
    tty_write(prompt);
    s->len = 0;
    for (;;) {
        char ch;
        ssize_t n = read(tty_fd, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_error("cannot read the passphrase from the terminal: %s",
                      strerror(errno));
            rc = CLI_IO;
            break;
        }
        if (n == 0 || ch == '\n' || ch == '\r')
            break;
        if (s->len < CLI_PASSPHRASE_MAX)
            s->buf[s->len++] = ch;
        else
            too_long = 1;
        ch = 0;
    }
    tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    tty_raw = 0;
    tty_signals_restore();
    s->buf[s->len] = '\0';
    if (rc == 0 && too_long) {
        cli_error("passphrase longer than %d bytes", CLI_PASSPHRASE_MAX);
        rc = CLI_USAGE;
    }
    if (rc == 0 && s->len == 0) {
        cli_error("empty passphrase refused");
        rc = CLI_USAGE;
    }
    return rc;
}

int cli_passphrase_prompt(cli_secret *out, const char *prompt, int confirm)
{
    cli_secret again = {NULL, 0};
    int rc;

    memset(out, 0, sizeof *out);
    tty_fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty_fd < 0) {
        cli_error("no passphrase given and no terminal to ask on: use "
                  "--passphrase-file, FIELDVAULT_PASSPHRASE_FILE or "
                  "--passphrase-fd");
        return CLI_USAGE;
    }
    rc = secret_alloc(out);
    if (rc != 0)
        goto cleanup;
    rc = tty_read_line(out, prompt);
    if (rc != 0 || !confirm)
        goto cleanup;
    rc = secret_alloc(&again);
    if (rc != 0)
        goto cleanup;
    rc = tty_read_line(&again, "Repeat the passphrase: ");
    if (rc != 0)
        goto cleanup;
    unsigned char diff = (unsigned char)(out->len != again.len);
    for (size_t i = 0; i < out->len && i < again.len; i++)
        diff |= (unsigned char)(out->buf[i] ^ again.buf[i]);
    if (diff != 0) {
        cli_error("the passphrases do not match");
        rc = CLI_USAGE;
    }
cleanup:
    cli_secret_free(&again);
    if (rc != 0)
        cli_secret_free(out);
    close(tty_fd);
    tty_fd = -1;
    return rc;
}

/* ---- choosing the source ----------------------------------------------------- */

static const char *env_file(void)
{
    const char *e = getenv("FIELDVAULT_PASSPHRASE_FILE");
    return (e != NULL && *e != '\0') ? e : NULL;
}

int cli_passphrase_uses_stdin(const cli *c)
{
    int fd;
    if (c->passphrase_file != NULL || env_file() != NULL)
        return 0;
    return c->passphrase_fd != NULL && cli_parse_int(c->passphrase_fd, &fd) == 0 &&
           fd == 0;
}

int cli_passphrase_get(cli_secret *out, const cli *c, const char *prompt,
                       int confirm)
{
    int fd;

    memset(out, 0, sizeof *out);
    if (c->passphrase_file != NULL)
        return cli_passphrase_from_file(out, c->passphrase_file);
    if (env_file() != NULL)
        return cli_passphrase_from_file(out, env_file());
    if (c->passphrase_fd != NULL) {
        if (cli_parse_int(c->passphrase_fd, &fd) != 0) {
            cli_error("--passphrase-fd: not a file descriptor number: %s",
                      c->passphrase_fd);
            return CLI_USAGE;
        }
        return passphrase_from_fd(out, fd);
    }
    return cli_passphrase_prompt(out, prompt, confirm);
}
