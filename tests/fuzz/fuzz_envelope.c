/*
 * fuzz_envelope.c - envelope bytes into fv_env_parse (the fuzz build lets
 * every signature pass, so mutations reach the structure behind it), then,
 * for a parsed envelope, fv_env_open with every key of the fixture's
 * vaults (the coordinator's, the organisation's, the field device's), and
 * the payload a key opens into its kind's decoder. Seeds are real
 * envelopes, which open; mutated ones mostly stop at the AEAD (fuzz_payload
 * mutates the plaintexts). The keys are read once; nothing else survives
 * an input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"
#include "envelope.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static fz_keys keys[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    fz_vault_keys("coord", &keys[0]);
    fz_vault_keys("field", &keys[1]);
    return 0;
}

static void decode_payload(int kind, const unsigned char *p, size_t n)
{
    int64_t time;
    int state;
    char *text = NULL;
    size_t len = 0;
    fv_rec *r = NULL;
    switch (kind) {
    case FV_ENV_REVISION:
        if (fv_payload_decode(&r, p, n) == FV_OK)
            fv_rec_free(r);
        break;
    case FV_ENV_TOMBSTONE:
    case FV_ENV_RETRACTION:
        (void)fv_tombstone_decode(&time, p, n);
        break;
    case FV_ENV_NOTE:
        if (fv_note_decode(&text, &len, &time, p, n) == FV_OK) {
            fv_wipe(text, len);
            free(text);
        }
        break;
    case FV_ENV_STATE:
        (void)fv_state_decode(&time, &state, p, n);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_env e;
    if (fv_env_parse(&e, data, size) != FV_OK)
        return 0;
    for (int i = 0; i < 2; i++) {
        const unsigned char *pk[2] = {keys[i].box_pk, keys[i].org_pk};
        const unsigned char *sk[2] = {keys[i].box_sk, keys[i].org_sk};
        for (int j = 0; j < (keys[i].has_org ? 2 : 1); j++) {
            unsigned char *plain = NULL;
            size_t plen = 0;
            if (fv_env_open(&e, pk[j], sk[j], &plain, &plen) != FV_OK)
                continue;
            decode_payload(e.kind, plain, plen);
            fv_env_free_plain(plain, plen);
        }
    }
    fv_env_clear(&e);
    return 0;
}
