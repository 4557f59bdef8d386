/*
 * fuzz_server.c - protocol bytes into the server engine after a valid
 * HELLO: FUZZ_ROLE_COORDINATOR builds fuzz_server_coord (the fixture's
 * coordinator, who may invite, list and revoke devices and publish the
 * organisation key), else fuzz_server_field (the field device). The input
 * is what the device sends after its HELLO: frames of any type, cut
 * anywhere. Per input: a fresh copy of the fixture's server directory, the
 * engine loaded from it as fv_server_run loads it, one connection; all of
 * it freed (and the copy removed) before the next input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#ifdef FUZZ_ROLE_COORDINATOR
#define DEVICE "coord"
#else
#define DEVICE "field"
#endif

static fz_keys dev;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    fz_vault_keys(DEVICE, &dev);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char src[FZ_PATH_MAX], dir[FZ_PATH_MAX];
    fz_server s;
    fv_srv_conn *c = NULL;
    fv_out hello;
    const unsigned char *p;
    size_t n;
    int rc;

    fz_fixture(src, "server");
    fz_scratch(dir, "server", 0);
    if ((rc = fz_copy_tree(src, dir)) || (rc = fz_server_open(&s, dir))) {
        fprintf(stderr, "fuzz: the fixture server does not open: %s\n",
                fv_strerror(rc));
        abort();
    }
    fv_out_init(&hello);
    if (fz_hello(&hello, s.pin, dev.sign_pk, dev.sign_sk) ||
        fv_srv_conn_new(&c, s.srv, fz_binding, 1))
        abort();
    p = fv_out_pending(&hello, &n);
    fz_srv_drive(c, p, n, NULL);
    if (!fv_srv_conn_authenticated(c))
        abort(); /* the fixture's device must pass HELLO */
    fz_srv_drive(c, data, size, NULL);
    if (getenv("FV_FUZZ_DEBUG")) /* what a seed reaches, when checking one */
        fprintf(stderr, "server: state %d, error %d\n", fv_srv_conn_state(c),
                fv_srv_conn_error(c));
    fv_srv_conn_free(c);
    fv_out_free(&hello);
    fz_server_close(&s);
    fz_rm_tree(dir);
    return 0;
}
