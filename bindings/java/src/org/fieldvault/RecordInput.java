package org.fieldvault;

import java.io.File;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;

/**
 * The content of a new record ({@link Vault#add}) or the changes of an edit
 * ({@link Vault#edit}). Text given as char[] or String is kept as UTF-8
 * byte arrays, which {@link #close()} wipes (the Vault call does not keep
 * them). Attachments are streamed from an InputStream (read on the calling
 * thread, in pieces, never held whole) or read from a file.
 */
public final class RecordInput implements AutoCloseable {
    byte[] title, narrative;
    final List<byte[]> fieldKeys = new ArrayList<>(), fieldValues = new ArrayList<>();
    final List<byte[]> tags = new ArrayList<>(), removeTags = new ArrayList<>();
    final List<byte[]> attachmentNames = new ArrayList<>();
    final List<Object> sources = new ArrayList<>();
    final List<byte[]> removeAttachments = new ArrayList<>();
    ProgressListener progress;

    public RecordInput title(byte[] utf8) { title = utf8; return this; }
    public RecordInput title(char[] text) { title = Utf8.encode(text); return this; }
    public RecordInput title(String text) { title = Utf8.of(text); return this; }

    public RecordInput narrative(byte[] utf8) { narrative = utf8; return this; }
    public RecordInput narrative(char[] text) { narrative = Utf8.encode(text); return this; }
    public RecordInput narrative(String text) { narrative = Utf8.of(text); return this; }

    /** Sets a field; in an edit, an empty value removes it. */
    public RecordInput field(byte[] key, byte[] value) {
        fieldKeys.add(key);
        fieldValues.add(value);
        return this;
    }

    public RecordInput field(String key, String value) { return field(Utf8.of(key), Utf8.of(value)); }
    public RecordInput field(String key, char[] value) { return field(Utf8.of(key), Utf8.encode(value)); }

    public RecordInput tag(String tag) { tags.add(Utf8.of(tag)); return this; }
    public RecordInput tag(byte[] utf8) { tags.add(utf8); return this; }
    /** Edit only. */
    public RecordInput removeTag(String tag) { removeTags.add(Utf8.of(tag)); return this; }

    /** An attachment called {@code name} whose bytes are read from {@code in} (not closed here). */
    public RecordInput attach(String name, InputStream in) {
        if (name == null || in == null)
            throw new NullPointerException();
        attachmentNames.add(Utf8.of(name));
        sources.add(in);
        return this;
    }

    /** An attachment read from a file; {@code name} null: the file's name. */
    public RecordInput attach(String name, File file) {
        attachmentNames.add(Utf8.of(name));
        sources.add(Utf8.path(file));
        return this;
    }

    /** Edit only: removes the attachment {@code name}. */
    public RecordInput removeAttachment(String name) { removeAttachments.add(Utf8.of(name)); return this; }

    /** Progress over all attachment bytes; returning false cancels (nothing is written). */
    public RecordInput progress(ProgressListener l) { progress = l; return this; }

    static byte[][] arr(List<byte[]> l) {
        return l.toArray(new byte[0][]);
    }

    @Override
    public void close() {
        Utf8.wipe(title);
        Utf8.wipe(narrative);
        for (List<byte[]> l : List.of(fieldKeys, fieldValues, tags, removeTags, attachmentNames,
                                      removeAttachments))
            for (byte[] b : l)
                Utf8.wipe(b);
    }
}
