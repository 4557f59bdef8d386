/*
 * fuzz_vault_open.c - a vault directory whose vault.key and vault.db are
 * arbitrary bytes: the input is the key file's length (2 bytes, little
 * endian), the key file, then the database. The vault is opened with the
 * fixture's passphrase (the seeds are real vaults, which open); one that
 * opens is listed and verified, which reads every stored envelope. Per
 * input: a fresh directory, removed after.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

static int each_record(const fv_record *r, void *payload)
{
    (void)r;
    (*(size_t *)payload)++;
    return 0;
}

static int each_problem(const fv_verify_issue *item, void *payload)
{
    (void)item;
    (*(size_t *)payload)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[FZ_PATH_MAX], path[FZ_PATH_MAX];
    size_t klen, count = 0;
    fv_vault *v = NULL;

    if (size < 2)
        return 0;
    klen = (size_t)data[0] | (size_t)data[1] << 8;
    if (klen > size - 2)
        klen = size - 2;
    fz_scratch(dir, "vault", 1);
    snprintf(path, sizeof path, "%s/vault.key", dir);
    if (fz_write_file(path, data + 2, klen))
        abort();
    snprintf(path, sizeof path, "%s/vault.db", dir);
    if (fz_write_file(path, data + 2 + klen, size - 2 - klen))
        abort();
    if (fv_vault_open(&v, dir, FZ_PASS, strlen(FZ_PASS)) == FV_OK) {
        (void)fv_vault_list(v, each_record, &count);
        (void)fv_vault_verify(v, NULL, each_problem, &count);
        fv_vault_close(v);
    }
    fz_scratch(dir, "vault", 0);
    return 0;
}
