/*
 * fuzz_payload.c - decrypted payloads into their decoders: the first byte
 * is the envelope kind (FV_ENV_REVISION, _TOMBSTONE, _NOTE, _STATE,
 * _RETRACTION; anything else picks one by its value), the rest the
 * plaintext, as a validly signed envelope sealed to this device would
 * carry it. A decoded revision is encoded again and must come out byte for
 * byte the same (the decoder accepts canonical CBOR only). No state.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "common.h"
#include "envelope.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int kinds[] = {FV_ENV_REVISION, FV_ENV_TOMBSTONE, FV_ENV_NOTE,
                                FV_ENV_STATE, FV_ENV_RETRACTION};
    const unsigned char *p = data + 1;
    size_t n = size - 1;
    int kind, state;
    int64_t time;

    if (size < 1)
        return 0;
    kind = data[0];
    if (kind < FV_ENV_REVISION || kind > FV_ENV_RETRACTION || kind == FV_ENV_GRANT)
        kind = kinds[data[0] % 5];
    if (kind == FV_ENV_REVISION) {
        fv_rec *r = NULL;
        unsigned char *again = NULL;
        size_t alen = 0;
        if (fv_payload_decode(&r, p, n) != FV_OK)
            return 0;
        if (fv_payload_encode_ex(&again, &alen, &r->pub,
                                 (const unsigned char(*)[FV_KEY_BYTES])r->keys,
                                 r->padded) != FV_OK ||
            alen != n || memcmp(again, p, n) != 0)
            abort(); /* a payload the decoder took does not encode back */
        fv_enc_free_buf(again, alen);
        fv_rec_free(r);
    } else if (kind == FV_ENV_NOTE) {
        char *text = NULL;
        size_t len = 0;
        if (fv_note_decode(&text, &len, &time, p, n) == FV_OK) {
            if (!fv_note_text_ok(text, len))
                abort(); /* the decoder passed a note text it must refuse */
            fv_wipe(text, len);
            free(text);
        }
    } else if (kind == FV_ENV_STATE) {
        if (fv_state_decode(&time, &state, p, n) == FV_OK &&
            (state < FV_STATE_NEW || state > FV_STATE_ARCHIVED))
            abort();
    } else {
        (void)fv_tombstone_decode(&time, p, n);
    }
    return 0;
}
