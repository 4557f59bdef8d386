package org.fieldvault;

/** A note about a record. {@link #close()} wipes its text. */
public final class Note implements AutoCloseable {
    public final byte[] id, record, author;
    /** Unix seconds. */
    public final long time;
    /** UTF-8. */
    public final byte[] text;

    Note(byte[] id, byte[] record, byte[] author, long time, byte[] text) {
        this.id = id;
        this.record = record;
        this.author = author;
        this.time = time;
        this.text = text;
    }

    @Override
    public void close() {
        Utf8.wipe(text);
    }
}
