package org.fieldvault;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * One decrypted, verified revision of a record. Its content (title,
 * narrative, fields, tags, attachment names) is kept in UTF-8 byte arrays,
 * never in Strings, and {@link #close()} wipes them: use try-with-resources
 * or call close when done. The accessors return the record's own arrays.
 */
public final class Record implements AutoCloseable {
    /** One field of a record: UTF-8 key and value. */
    public static final class Field {
        public final byte[] key, value;

        Field(byte[] key, byte[] value) {
            this.key = key;
            this.value = value;
        }
    }

    /** An attachment's description; its bytes come from {@link Vault#openAttachment}. */
    public static final class Attachment {
        public final byte[] name;
        public final long size, chunkBytes, chunks, chunksPresent;

        Attachment(byte[] name, long size, long chunkBytes, long chunks, long chunksPresent) {
            this.name = name;
            this.size = size;
            this.chunkBytes = chunkBytes;
            this.chunks = chunks;
            this.chunksPresent = chunksPresent;
        }

        /** True while chunks of it have not arrived yet. */
        public boolean incomplete() {
            return chunksPresent < chunks;
        }
    }

    private final byte[] id, revision, author, origin;
    private final long created, modified;
    private final byte[] title, narrative;
    private final List<Field> fields;
    private final List<byte[]> tags;
    private final List<Attachment> attachments;
    private final int nheads, nnotes;
    private final ReviewState state;

    /** From the JNI layer's packed form (on_record in jni/fieldvault_jni.c); wipes `b`. */
    Record(byte[] b, int[] n, long[] l) {
        int nfields = n[0], ntags = n[1], natt = n[2], k = 6, off = 4 * 32;
        id = Arrays.copyOfRange(b, 0, 32);
        revision = Arrays.copyOfRange(b, 32, 64);
        author = Arrays.copyOfRange(b, 64, 96);
        origin = Arrays.copyOfRange(b, 96, 128);
        title = Arrays.copyOfRange(b, off, off += n[k++]);
        narrative = Arrays.copyOfRange(b, off, off += n[k++]);
        List<Field> f = new ArrayList<>(nfields);
        for (int i = 0; i < nfields; i++) {
            byte[] key = Arrays.copyOfRange(b, off, off += n[k++]);
            f.add(new Field(key, Arrays.copyOfRange(b, off, off += n[k++])));
        }
        fields = Collections.unmodifiableList(f);
        List<byte[]> t = new ArrayList<>(ntags);
        for (int i = 0; i < ntags; i++)
            t.add(Arrays.copyOfRange(b, off, off += n[k++]));
        tags = Collections.unmodifiableList(t);
        List<Attachment> a = new ArrayList<>(natt);
        for (int i = 0; i < natt; i++)
            a.add(new Attachment(Arrays.copyOfRange(b, off, off += n[k++]), l[2 + 4 * i],
                                 l[3 + 4 * i], l[4 + 4 * i], l[5 + 4 * i]));
        attachments = Collections.unmodifiableList(a);
        created = l[0];
        modified = l[1];
        nheads = n[3];
        state = ReviewState.of(n[4]);
        nnotes = n[5];
        Arrays.fill(b, (byte) 0);
    }

    public byte[] id() { return id; }
    public String idHex() { return Utf8.hex(id); }
    public byte[] revision() { return revision; }
    /** The device key that signed this revision. */
    public byte[] author() { return author; }
    /** The device that created the record. */
    public byte[] origin() { return origin; }
    /** Unix seconds. */
    public long created() { return created; }
    public long modified() { return modified; }
    /** UTF-8. */
    public byte[] title() { return title; }
    /** A fresh char[] of the title: the caller wipes it. */
    public char[] titleChars() { return Utf8.decode(title); }
    /** UTF-8; may hold NUL bytes; empty when the record has none. */
    public byte[] narrative() { return narrative; }
    public List<Field> fields() { return fields; }
    public List<byte[]> tags() { return tags; }
    public List<Attachment> attachments() { return attachments; }
    /** More than 1: concurrent edits (a conflict). */
    public int heads() { return nheads; }
    public ReviewState state() { return state; }
    public int notes() { return nnotes; }

    /** Wipes the content arrays. */
    @Override
    public void close() {
        Utf8.wipe(title);
        Utf8.wipe(narrative);
        for (Field f : fields) {
            Utf8.wipe(f.key);
            Utf8.wipe(f.value);
        }
        for (byte[] t : tags)
            Utf8.wipe(t);
        for (Attachment a : attachments)
            Utf8.wipe(a.name);
    }
}
