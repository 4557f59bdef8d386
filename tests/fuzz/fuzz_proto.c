/*
 * fuzz_proto.c - one protocol frame body into the message decoder
 * (fv_msg_decode), then what a message carries that has its own decoder:
 * a DEVLIST's entries (fv_devlist_next), a RECEIPT's body
 * (fv_receipt_decode). The same bytes also go through the framer as a
 * stream. No state: nothing survives an input.
 */
#include <stddef.h>
#include <stdint.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_msg m;
    fv_framer f;
    size_t off = 0;

    if (fv_msg_decode(&m, data, size) == FV_OK) {
        if (m.type == FV_MSG_DEVLIST) {
            fv_devinfo d;
            for (size_t i = 0; i < m.u.devlist.n; i++)
                if (fv_devlist_next(&m, &d) != FV_OK)
                    break;
        } else if (m.type == FV_MSG_RECEIPT) {
            fv_receipt r;
            (void)fv_receipt_decode(&r, m.u.receipt.body, m.u.receipt.body_len);
        }
    }
    fv_framer_init(&f);
    while (off < size) {
        const unsigned char *frame = NULL;
        size_t flen = 0, k;
        int err = 0;
        k = fv_framer_feed(&f, data + off, size - off, &frame, &flen, &err);
        if (err || k == 0)
            break;
        off += k;
        if (frame)
            (void)fv_msg_decode(&m, frame, flen);
    }
    fv_framer_free(&f);
    return 0;
}
