package org.fieldvault;

/** Key-derivation cost of a new vault (enum fv_kdf_profile). */
public enum KdfProfile {
    /** About half a second on a laptop, 256 MiB. */
    DESKTOP(0),
    /** 64 MiB: what a low-end phone can give. What an app should use. */
    PHONE(1),
    /** The libsodium minimum: tests only, never real use. */
    TEST(2);

    final int code;

    KdfProfile(int code) {
        this.code = code;
    }
}
