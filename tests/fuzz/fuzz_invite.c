/*
 * fuzz_invite.c - invite strings ("fv1-...", docs/PROTOCOL.md) into
 * fv_invite_decode. An invite it takes must encode back to the same text
 * and decode to the same fields. No state.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *again = NULL;
    fv_invite a, b;
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (fv_invite_decode(&a, text) == FV_OK) {
        if (fv_invite_encode(&again, &a) != FV_OK ||
            fv_invite_decode(&b, again) != FV_OK ||
            strcmp(a.address, b.address) || memcmp(a.pin, b.pin, 32) ||
            memcmp(a.token, b.token, sizeof a.token) || a.has_org != b.has_org ||
            (a.has_org && memcmp(a.org, b.org, 32)))
            abort(); /* an invite decoded does not survive its encoding */
        free(again);
    }
    free(text);
    return 0;
}
