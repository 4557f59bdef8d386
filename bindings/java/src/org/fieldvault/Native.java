package org.fieldvault;

/**
 * The JNI entry points (libfieldvault_jni). Handles are native pointers held
 * as longs by the public classes, never by the app. Strings cross as UTF-8
 * byte arrays (never as modified UTF-8), passphrases as char[] or byte[].
 */
final class Native {
    private Native() {}

    static {
        String path = System.getProperty("fieldvault.jni.path");
        if (path != null && !path.isEmpty())
            System.load(path);
        else
            System.loadLibrary("fieldvault_jni");
    }

    /** Callbacks from the library; each returns true to go on, false to stop. */
    abstract static class Sink {
        /** A record packed as on_record (jni/fieldvault_jni.c) says; see Record's constructor. */
        boolean record(byte[] bytes, int[] ints, long[] longs) {
            return true;
        }

        boolean note(byte[] id, byte[] record, byte[] author, long time, byte[] text) {
            return true;
        }

        boolean issue(byte[] record, byte[] envelope, String problem) {
            return true;
        }

        boolean progress(long done, long total) {
            return true;
        }

        /** Attachment bytes: buf[0..len); the buffer is reused and wiped afterwards. */
        boolean write(byte[] buf, int len) {
            return true;
        }
    }

    static native String version();
    static native String errorLast();
    static native long open(byte[] dir, char[] passChars, byte[] passBytes) throws FieldVaultException;
    static native long create(byte[] dir, char[] passChars, byte[] passBytes, int profile)
            throws FieldVaultException;
    static native void close(long v);
    static native void panic(byte[] dir) throws FieldVaultException;
    static native void passwd(long v, char[] passChars, byte[] passBytes) throws FieldVaultException;
    static native byte[] deviceId(long v);

    /** mode 0: add; 1: edit of id; 2: merge of id. Returns the record id (add) or revision. */
    static native byte[] write(long v, int mode, byte[] id, byte[] title, byte[] narrative,
                               byte[][] fieldKeys, byte[][] fieldValues, byte[][] tags,
                               byte[][] removeTags, byte[][] attachmentNames, Object[] sources,
                               byte[][] removeAttachments, Sink progress) throws FieldVaultException;
    static native void delete(long v, byte[] id) throws FieldVaultException;
    static native byte[] resolve(long v, byte[] hex) throws FieldVaultException;
    static native void get(long v, byte[] id, Sink sink) throws FieldVaultException;
    static native void query(long v, int state, byte[] tag, byte[] origin, long since, long until,
                             byte[] text, byte[][] ids, Sink sink) throws FieldVaultException;
    static native byte[] noteAdd(long v, byte[] id, byte[] text) throws FieldVaultException;
    static native void notes(long v, byte[] id, Sink sink) throws FieldVaultException;
    static native void setState(long v, byte[] id, int state) throws FieldVaultException;
    static native void retract(long v, byte[] id) throws FieldVaultException;
    static native long export(long v, byte[] path, int state, byte[] tag, byte[] origin,
                              long since, long until, byte[] text, byte[][] ids)
            throws FieldVaultException;
    /** {envelopes, chunks, receipts, failures}; issues go to sink. */
    static native long[] verify(long v, Sink sink) throws FieldVaultException;
    static native void attachmentRead(long v, byte[] id, byte[] name, Sink sink)
            throws FieldVaultException;
    static native void attachmentSave(long v, byte[] id, byte[] name, byte[] path)
            throws FieldVaultException;
    static native void setWipeAfter(long v, int failures) throws FieldVaultException;
    static native int getWipeAfter(long v) throws FieldVaultException;
    static native void setDuress(long v, char[] passChars, byte[] passBytes, long decoyFrom)
            throws FieldVaultException;
    static native void clearDuress(long v) throws FieldVaultException;

    static native int enroll(long v, byte[] invite, byte[] server, int timeoutMs, byte[] proxy)
            throws FieldVaultException;
    static native long syncNew(long v, byte[] server, int timeoutMs, byte[] proxy, Sink progress)
            throws FieldVaultException;
    /** The fields of fv_sync_result, in order. */
    static native long[] syncRun(long s, long v) throws FieldVaultException;
    static native void syncCancel(long s);
    static native void syncFree(long s);
    /** The fields of fv_bundle_stats, in order. */
    static native long[] bundleExport(long v, byte[] path, boolean noAttachments, long maxSize)
            throws FieldVaultException;
    static native long[] bundleImport(long v, byte[] path) throws FieldVaultException;
}
