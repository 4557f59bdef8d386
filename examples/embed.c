/*
 * embed.c - FieldVault inside an application, the way a phone app uses it:
 * open (or create) a vault, enroll with the organisation's invite, add a
 * record whose attachment is streamed from a callback (a recorder's output,
 * not a file), sync with a progress callback that cancels the first run
 * part-way (the user pressed "Stop"), run it again to the end, close.
 *
 *   embed [--kdf desktop|phone|test] [--server HOST:PORT] DIR INVITE
 *   embed --version
 *
 * The passphrase is the first line of standard input. Built against the
 * installed package, as any outside project would (examples/run does it):
 *
 *   cc embed.c $(pkg-config --cflags --libs fieldvault) -o embed
 *
 * Exit status: 0 when everything above happened, 1 if something did not,
 * 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fieldvault_sync.h>

/* A few MB (more than the sync keeps in flight, so the cancel falls
 * mid-transfer), not a whole number of chunks. */
#define ATTACHMENT_BYTES (10u * 1024 * 1024 + 4321)
#define ATTACHMENT_NAME "interview.raw"

/* The attachment's content: a generated stream, as a recorder would hand
 * it over. Byte i is the top byte of i * 2654435761 (mod 2^32), so the
 * coordinator's copy can be checked without this program. */
struct stream {
    uint64_t pos, size;
};

static long long read_stream(unsigned char *buf, size_t len, void *payload)
{
    struct stream *s = payload;
    size_t i, n = len;
    if (s->size - s->pos < n)
        n = (size_t)(s->size - s->pos);
    for (i = 0; i < n; i++)
        buf[i] = (unsigned char)(((uint32_t)(s->pos + i) * 2654435761u) >> 24);
    s->pos += n;
    return (long long)n;
}

/* What the app's progress bar would see. The first sync is stopped once a
 * third of the known work is done: returning non-zero cancels. */
struct progress {
    int cancel;       /* cancel at the next call past a third */
    unsigned calls;
    uint64_t done, total;
};

static int on_progress(uint64_t done, uint64_t total, void *payload)
{
    struct progress *p = payload;
    p->calls++;
    p->done = done;
    p->total = total;
    if (p->cancel && total > 0 && done >= total / 3 && done < total) {
        p->cancel = 0;
        return 1;
    }
    return 0;
}

static int fail(fv_vault *v, int rc, const char *what)
{
    fprintf(stderr, "embed: %s: %s (%s)\n", what, fv_strerror(rc),
            v ? fv_vault_errmsg(v) : "no vault");
    return 1;
}

/* Reads the passphrase (first line of stdin) into locked memory. */
static char *read_passphrase(size_t *len)
{
    char *p = fv_secure_alloc(1024);
    if (!p)
        return NULL;
    if (!fgets(p, 1024, stdin)) {
        fv_secure_free(p);
        return NULL;
    }
    *len = strcspn(p, "\r\n");
    p[*len] = '\0';
    if (*len == 0) {
        fv_secure_free(p);
        return NULL;
    }
    return p;
}

static int open_vault(fv_vault **v, const char *dir, int kdf)
{
    fv_create_options co = FV_CREATE_OPTIONS_INIT;
    size_t plen;
    char *pass = read_passphrase(&plen);
    int rc;

    if (!pass) {
        fprintf(stderr, "embed: no passphrase on standard input\n");
        return FV_EINVAL;
    }
    rc = fv_vault_open(v, dir, pass, plen);
    if (rc == FV_ENOVAULT) {
        co.kdf_profile = kdf;
        rc = fv_vault_create(v, dir, pass, plen, &co);
        if (rc == FV_OK)
            printf("vault: created %s\n", dir);
    } else if (rc == FV_OK) {
        printf("vault: opened %s\n", dir);
    }
    fv_secure_free(pass); /* wiped */
    if (rc != FV_OK)
        fprintf(stderr, "embed: cannot open the vault: %s\n", fv_strerror(rc));
    return rc;
}

/* The vault's key-derivation cost, chosen once at creation: "phone" is
 * what a low-end phone can give; "test" only for tests. */
static int kdf_profile(const char *name)
{
    if (strcmp(name, "phone") == 0)
        return FV_KDF_PHONE;
    if (strcmp(name, "desktop") == 0)
        return FV_KDF_DESKTOP;
    if (strcmp(name, "test") == 0)
        return FV_KDF_TEST;
    return -1;
}

int main(int argc, char **argv)
{
    fv_sync_options so = FV_SYNC_OPTIONS_INIT;
    fv_record_input in = FV_RECORD_INPUT_INIT;
    fv_attachment_source att = {ATTACHMENT_NAME, NULL, read_stream, NULL};
    const fv_field fields[] = {{"place", "north district"},
                               {"language", "ar"}};
    struct stream stream = {0, ATTACHMENT_BYTES};
    struct progress prog = {1, 0, 0, 0};
    fv_sync_session *session = NULL;
    fv_sync_result res = FV_SYNC_RESULT_INIT;
    fv_vault *v = NULL;
    unsigned char id[FV_ID_BYTES];
    char hex[FV_ID_HEX_BYTES];
    const char *dir, *invite;
    int kdf = FV_KDF_PHONE, role = 0, delivered = 0, rc, i, status = 1;

    for (i = 1; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--kdf") == 0)
            kdf = kdf_profile(argv[i + 1]);
        else if (strcmp(argv[i], "--server") == 0)
            so.server = argv[i + 1];
        else
            break;
    }
    printf("FieldVault %s (format %d, protocol %d)\n", fv_version(),
           fv_format_version(), fv_protocol_version());
    if (argc == 2 && strcmp(argv[1], "--version") == 0)
        return 0;
    if (argc - i != 2 || kdf < 0) {
        fprintf(stderr, "usage: embed [--kdf desktop|phone|test] "
                        "[--server HOST:PORT] DIR INVITE\n");
        return 2;
    }
    dir = argv[i];
    invite = argv[i + 1];

    if (open_vault(&v, dir, kdf) != FV_OK)
        return 1;

    /* Enrolling remembers the server: later syncs need no address. */
    rc = fv_enroll(v, &role, invite, &so);
    if (rc == FV_OK)
        printf("enrolled: %s\n", role == FV_ROLE_COORDINATOR ? "coordinator"
                                                             : "field");
    else if (rc == FV_EEXIST)
        printf("enrolled: already\n");
    else {
        fail(v, rc, "enroll");
        goto cleanup;
    }

    /* A record; its attachment is read from the stream while it is
     * encrypted, never held whole in memory. */
    att.read_payload = &stream;
    in.title = "Testimony recorded on the phone";
    in.narrative = "Recorded in the field; audio attached.";
    in.narrative_len = strlen(in.narrative);
    in.fields = fields;
    in.nfields = sizeof fields / sizeof fields[0];
    in.attachments = &att;
    in.nattachments = 1;
    rc = fv_record_add(v, id, &in);
    if (rc != FV_OK) {
        fail(v, rc, "add");
        goto cleanup;
    }
    fv_id_to_hex(hex, id);
    printf("record: %s with %s (%llu bytes)\n", hex, ATTACHMENT_NAME,
           (unsigned long long)stream.pos);

    /* The sync, as a session an app runs on a worker thread (another thread
     * could call fv_sync_session_cancel). Here the progress callback stops
     * the first run; the second resumes from what was committed. */
    so.progress = on_progress;
    so.progress_payload = &prog;
    rc = fv_sync_session_new(&session, v, &so);
    if (rc != FV_OK) {
        fail(v, rc, "sync session");
        goto cleanup;
    }
    rc = fv_sync_session_run(session, &res);
    if (rc != FV_ECANCELED) {
        fprintf(stderr, "embed: the first sync returned %s, not canceled\n",
                fv_strerror(rc));
        goto cleanup;
    }
    printf("sync 1: canceled at %llu of %llu bytes\n",
           (unsigned long long)prog.done, (unsigned long long)prog.total);

    rc = fv_sync_session_run(session, &res);
    if (rc != FV_OK) {
        fail(v, rc, "sync");
        goto cleanup;
    }
    printf("sync 2: done: %llu envelopes pushed, %llu chunks sent, "
           "%llu bytes sent, %u progress calls in both\n",
           (unsigned long long)res.pushed, (unsigned long long)res.chunks_sent,
           (unsigned long long)res.bytes_sent, prog.calls);

    rc = fv_record_delivered(v, &delivered, id);
    if (rc != FV_OK) {
        fail(v, rc, "delivered");
        goto cleanup;
    }
    printf("delivered: %s\n", delivered ? "yes" : "no");
    status = delivered ? 0 : 1;

cleanup:
    fv_sync_session_free(session);
    fv_vault_close(v);
    return status;
}
