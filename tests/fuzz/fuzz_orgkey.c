/*
 * fuzz_orgkey.c - organisation key files into fv_org_key_import, with the
 * recovery passphrase the fixture's file was written with (so the seed
 * decrypts and imports), into a fresh copy of the field device's vault
 * (which holds no organisation key) per input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

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
    fv_vault *v;
    fz_scratch(file, "org.key", 0);
    if (fz_write_file(file, data, size))
        abort();
    v = fz_vault_copy_open("field", "vault");
    (void)fv_org_key_import(v, file, FZ_RECOVERY, strlen(FZ_RECOVERY));
    fv_vault_close(v);
    fz_scratch(dir, "vault", 0);
    fz_scratch(file, "org.key", 0);
    return 0;
}
