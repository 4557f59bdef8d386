package org.fieldvault;

import java.util.Arrays;

/**
 * UTF-8 to and from char[] without a String in between, so that an app can
 * keep plaintext and passphrases in arrays it wipes.
 */
public final class Utf8 {
    private Utf8() {}

    /** UTF-8 of {@code s} (an unpaired surrogate becomes U+FFFD). */
    public static byte[] encode(char[] s) {
        byte[] out = new byte[s.length * 3];
        int n = 0;
        for (int i = 0; i < s.length; i++) {
            int c = s[i];
            if (Character.isHighSurrogate(s[i]) && i + 1 < s.length
                    && Character.isLowSurrogate(s[i + 1])) {
                c = Character.toCodePoint(s[i], s[i + 1]);
                i++;
            } else if (Character.isSurrogate(s[i])) {
                c = 0xFFFD;
            }
            if (c < 0x80) {
                out[n++] = (byte) c;
            } else if (c < 0x800) {
                out[n++] = (byte) (0xC0 | c >> 6);
                out[n++] = (byte) (0x80 | c & 63);
            } else if (c < 0x10000) {
                out[n++] = (byte) (0xE0 | c >> 12);
                out[n++] = (byte) (0x80 | c >> 6 & 63);
                out[n++] = (byte) (0x80 | c & 63);
            } else {
                out[n++] = (byte) (0xF0 | c >> 18);
                out[n++] = (byte) (0x80 | c >> 12 & 63);
                out[n++] = (byte) (0x80 | c >> 6 & 63);
                out[n++] = (byte) (0x80 | c & 63);
            }
        }
        byte[] exact = Arrays.copyOf(out, n);
        Arrays.fill(out, (byte) 0);
        return exact;
    }

    /** The characters of UTF-8 {@code b} (a malformed sequence becomes U+FFFD). */
    public static char[] decode(byte[] b) {
        if (b == null)
            return null;
        char[] out = new char[b.length];
        int n = 0;
        for (int i = 0; i < b.length;) {
            int c = b[i] & 0xFF, need, min;
            if (c < 0x80) { need = 0; min = 0; }
            else if (c >= 0xC2 && c < 0xE0) { need = 1; c &= 31; min = 0x80; }
            else if (c >= 0xE0 && c < 0xF0) { need = 2; c &= 15; min = 0x800; }
            else if (c >= 0xF0 && c < 0xF5) { need = 3; c &= 7; min = 0x10000; }
            else { out[n++] = '\uFFFD'; i++; continue; }
            int j = 1;
            for (; j <= need && i + j < b.length && (b[i + j] & 0xC0) == 0x80; j++)
                c = c << 6 | b[i + j] & 63;
            if (j <= need || c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) {
                out[n++] = '\uFFFD';
                i++;
                continue;
            }
            i += need + 1;
            if (c >= 0x10000) {
                out[n++] = Character.highSurrogate(c);
                out[n++] = Character.lowSurrogate(c);
            } else {
                out[n++] = (char) c;
            }
        }
        char[] exact = Arrays.copyOf(out, n);
        Arrays.fill(out, '\0');
        return exact;
    }

    static byte[] of(String s) {
        return s == null ? null : s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    static byte[] path(java.io.File f) {
        return f == null ? null : of(f.getPath());
    }

    /** Lowercase hex of an id. */
    public static String hex(byte[] id) {
        StringBuilder sb = new StringBuilder(id.length * 2);
        for (byte x : id)
            sb.append(Character.forDigit(x >> 4 & 15, 16)).append(Character.forDigit(x & 15, 16));
        return sb.toString();
    }

    static void wipe(byte[] b) {
        if (b != null)
            Arrays.fill(b, (byte) 0);
    }

    static void wipe(char[] c) {
        if (c != null)
            Arrays.fill(c, '\0');
    }

    static void wipe(byte[][] bs) {
        if (bs != null)
            for (byte[] b : bs)
                wipe(b);
    }
}
