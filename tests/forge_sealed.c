/* forge_sealed.c - a test helper for the end-to-end tests: writes into a
 * real vault a record revision that its readers cannot open, signed by the
 * vault's own device key as everything it writes, and queued in its outbox
 * like any other, so that a sync pushes it. What an enrolled device that is
 * buggy or hostile could send; the server cannot tell it apart.
 *
 *   forge_sealed VAULT PASSFILE random
 *     a well-formed record sealed to a random key nobody holds
 *
 * Prints the new record's id. Not installed; tests only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crypto.h"
#include "envelope.h"
#include "fieldvault.h"
#include "record.h"
#include "store.h"
#include "vault_internal.h"

static int read_pass(const char *path, char *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f)
        return -1;
    n = fread(buf, 1, cap, f);
    fclose(f);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    *len = n;
    return n > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    char pass[1024], hex[FV_ID_HEX_BYTES];
    unsigned char pk[FV_BOX_PK_BYTES], sk[FV_BOX_SK_BYTES], id[FV_ID_BYTES];
    unsigned char *payload = NULL;
    size_t plen = 0, payload_len = 0;
    fv_vault *v = NULL;
    fv_record r;
    int rc;

    if (argc != 4 || strcmp(argv[3], "random") != 0) {
        fprintf(stderr, "usage: forge_sealed VAULT PASSFILE random\n");
        return 2;
    }
    if (read_pass(argv[2], pass, sizeof pass, &plen) != 0) {
        fprintf(stderr, "forge_sealed: cannot read %s\n", argv[2]);
        return 2;
    }
    rc = fv_vault_open(&v, argv[1], pass, plen);
    fv_wipe(pass, sizeof pass);
    if (rc) {
        fprintf(stderr, "forge_sealed: open: %s\n", fv_strerror(rc));
        return 1;
    }
    memset(&r, 0, sizeof r);
    r.title = "sealed to a key nobody holds";
    r.narrative = "";
    r.created = r.modified = fv_v_now();
    rc = fv_payload_encode(&payload, &payload_len, &r, NULL);
    fv_box_keypair(pk, sk);
    fv_wipe(sk, sizeof sk);
    if (rc == FV_OK) {
        fv_v_write w = {
            .kind = FV_ENV_REVISION,
            .payload = payload,
            .payload_len = payload_len,
            .recipients = (const unsigned char(*)[FV_BOX_PK_BYTES])pk,
            .nrecipients = 1,
        };
        rc = fv_store_begin(v->store);
        if (rc == FV_OK)
            rc = fv_v_write_envelope(v, id, &w);
        if (rc == FV_OK)
            rc = fv_store_commit(v->store);
        else
            fv_store_rollback(v->store);
    }
    fv_enc_free_buf(payload, payload_len);
    if (rc) {
        fprintf(stderr, "forge_sealed: %s\n", fv_vault_errmsg(v));
        fv_vault_close(v);
        return 1;
    }
    fv_id_to_hex(hex, id);
    printf("%s\n", hex);
    fv_vault_close(v);
    return 0;
}
