package org.fieldvault;

import java.util.ArrayList;
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

    Record(byte[] id, byte[] revision, byte[] author, byte[] origin, long created, long modified,
           byte[] title, byte[] narrative, byte[][] fieldKeys, byte[][] fieldValues,
           byte[][] tags, byte[][] attNames, long[] attNums, int nheads, int state, int nnotes) {
        this.id = id;
        this.revision = revision;
        this.author = author;
        this.origin = origin;
        this.created = created;
        this.modified = modified;
        this.title = title;
        this.narrative = narrative;
        List<Field> f = new ArrayList<>(fieldKeys.length);
        for (int i = 0; i < fieldKeys.length; i++)
            f.add(new Field(fieldKeys[i], fieldValues[i]));
        this.fields = Collections.unmodifiableList(f);
        List<byte[]> t = new ArrayList<>(tags.length);
        Collections.addAll(t, tags);
        this.tags = Collections.unmodifiableList(t);
        List<Attachment> a = new ArrayList<>(attNames.length);
        for (int i = 0; i < attNames.length; i++)
            a.add(new Attachment(attNames[i], attNums[4 * i], attNums[4 * i + 1], attNums[4 * i + 2],
                                 attNums[4 * i + 3]));
        this.attachments = Collections.unmodifiableList(a);
        this.nheads = nheads;
        this.state = ReviewState.of(state);
        this.nnotes = nnotes;
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
