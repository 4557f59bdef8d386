/*
 * fuzz_client.c - hostile server bytes into the device engine: the input
 * is everything "the server" answers, fed after fv_client_start.
 * FUZZ_OP_ENROLL builds fuzz_client_enroll (a vault not enrolled yet,
 * redeeming the fixture's invite), FUZZ_OP_DEVICES fuzz_client_devices
 * (the coordinator listing devices), else fuzz_client_sync (the field
 * device's sync: receipts, ENTRIES, chunks). Per input: a fresh copy of
 * the fixture vault, opened; the engine; the input fed in two pieces (so
 * that a frame split between two reads is exercised too); everything
 * freed and the copy removed before the next input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "client.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#if defined(FUZZ_OP_ENROLL)
#define VAULT "fresh"
#define OP FV_CLIENT_ENROLL
#elif defined(FUZZ_OP_DEVICES)
#define VAULT "coord"
#define OP FV_CLIENT_DEVICES
#else
#define VAULT "field"
#define OP FV_CLIENT_SYNC
#endif

static unsigned char pin[32];
static fv_invite invite;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[FZ_PATH_MAX];
    (void)argc;
    (void)argv;
    fz_init();
    fz_fixture(path, "server");
    if (fz_server_pin(path, pin))
        abort();
#ifdef FUZZ_OP_ENROLL
    {
        size_t n = 0;
        unsigned char *text;
        fz_fixture(path, "invite.txt");
        if (!(text = fz_read_file(path, &n)) ||
            fv_invite_decode(&invite, (const char *)text))
            abort();
        free(text);
    }
#endif
    return 0;
}

static int count_device(const fv_devinfo *d, void *payload)
{
    (void)d;
    (*(size_t *)payload)++;
    return 0;
}

static void take_output(fv_client *c)
{
    size_t n;
    while (fv_client_pending(c, &n) && n > 0)
        fv_client_ack(c, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t devices = 0, half = size / 2;
    fv_client_request req = {.op = OP, .invite = &invite,
                             .device_fn = count_device,
                             .device_payload = &devices};
    fv_vault *v = fz_vault_copy_open(VAULT, "vault");
    fv_client *c = NULL;
    char dir[FZ_PATH_MAX];

    if (fv_client_new(&c, v, &req) || fv_client_start(c, pin, fz_binding))
        abort(); /* the fixture vault must start a session */
    take_output(c);
    if (fv_client_recv(c, data, half) == FV_OK) {
        take_output(c);
        if (fv_client_recv(c, data + half, size - half) == FV_OK)
            take_output(c);
    }
    if (getenv("FV_FUZZ_DEBUG")) /* what a seed reaches, when checking one */
        fprintf(stderr, "client: done %d, %s\n", fv_client_done(c),
                fv_client_errmsg(c));
    fv_client_free(c);
    fv_vault_close(v);
    fz_scratch(dir, "vault", 0);
    return 0;
}
