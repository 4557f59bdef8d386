/*
 * fuzz_bundle.c - courier bundle files: FUZZ_SERVER builds
 * fuzz_bundle_server (fv_server_import into a copy of the fixture's server
 * directory, where the field device is enrolled), else fuzz_bundle_vault
 * (fv_bundle_import into a copy of the coordinator's vault, which can read
 * everything the field device writes). The input is written to a file as
 * a courier would carry it. Per input: a fresh copy, removed after.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "fieldvault_sync.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char file[FZ_PATH_MAX], dir[FZ_PATH_MAX];
    uint64_t count = 0, added = 0;

    fz_scratch(file, "bundle", 0);
    if (fz_write_file(file, data, size))
        abort();
#ifdef FUZZ_SERVER
    {
        char src[FZ_PATH_MAX];
        fz_fixture(src, "server");
        fz_scratch(dir, "server", 0);
        if (fz_copy_tree(src, dir))
            abort();
        (void)fv_server_import(dir, file, &count, &added);
    }
#else
    {
        fv_vault *v = fz_vault_copy_open("coord", "vault");
        (void)fv_bundle_import(v, NULL, file);
        fv_vault_close(v);
        fz_scratch(dir, "vault", 0);
    }
#endif
    fz_scratch(dir, "server", 0);
    fz_scratch(file, "bundle", 0);
    return 0;
}
