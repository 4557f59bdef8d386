package org.fieldvault;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.lang.ref.Cleaner;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Predicate;

/**
 * An open vault (fv_vault). Calls on one Vault are serialised: it may be
 * shared between threads, and each call waits for the one before. Close it
 * (try-with-resources) to wipe its keys at once; a Vault that becomes
 * unreachable unclosed is closed by a {@link Cleaner}, never a finalizer.
 *
 * <p>Passphrase arrays given to {@link #open}, {@link #create},
 * {@link #changePassphrase} and {@link #setDuress} are wiped (filled with
 * zeros) before the call returns, as is the native copy.
 */
public final class Vault implements AutoCloseable {
    static final Cleaner CLEANER = Cleaner.create();

    /** The native handle, closed by close() or by the Cleaner. */
    private static final class Handle implements Runnable {
        volatile long ptr;

        Handle(long ptr) {
            this.ptr = ptr;
        }

        @Override
        public void run() {
            long p = ptr;
            ptr = 0;
            if (p != 0)
                Native.close(p);
        }
    }

    private final Handle handle;
    private final Cleaner.Cleanable cleanable;
    final ReentrantLock lock = new ReentrantLock();
    private volatile Thread streamReader; // the thread that holds an open attachment stream

    private Vault(long ptr) {
        handle = new Handle(ptr);
        cleanable = CLEANER.register(this, handle);
    }

    /** The C library's version string. */
    public static String version() {
        return Native.version();
    }

    /** Creates a vault in {@code dir} (made 0700 if missing) and opens it. */
    public static Vault create(File dir, char[] passphrase, KdfProfile profile)
            throws FieldVaultException {
        try {
            return new Vault(Native.create(Utf8.path(dir), passphrase, null, profile.code));
        } finally {
            Utf8.wipe(passphrase);
        }
    }

    public static Vault create(File dir, byte[] passphrase, KdfProfile profile)
            throws FieldVaultException {
        try {
            return new Vault(Native.create(Utf8.path(dir), null, passphrase, profile.code));
        } finally {
            Utf8.wipe(passphrase);
        }
    }

    /**
     * Opens the vault in {@code dir}. A wrong passphrase throws
     * {@link FieldVaultException.WrongPassphrase} (and counts toward the
     * wipe-after limit); the duress passphrase opens the decoy.
     */
    public static Vault open(File dir, char[] passphrase) throws FieldVaultException {
        try {
            return new Vault(Native.open(Utf8.path(dir), passphrase, null));
        } finally {
            Utf8.wipe(passphrase);
        }
    }

    public static Vault open(File dir, byte[] passphrase) throws FieldVaultException {
        try {
            return new Vault(Native.open(Utf8.path(dir), null, passphrase));
        } finally {
            Utf8.wipe(passphrase);
        }
    }

    /** Destroys the vault in {@code dir} without a passphrase (fv_vault_panic). */
    public static void panic(File dir) throws FieldVaultException {
        Native.panic(Utf8.path(dir));
    }

    /** Takes the lock and returns the live handle. */
    long enter() {
        if (streamReader == Thread.currentThread())
            throw new IllegalStateException("an attachment stream of this vault is open on this thread");
        lock.lock();
        long p = handle.ptr;
        if (p == 0) {
            lock.unlock();
            throw new IllegalStateException("vault closed");
        }
        return p;
    }

    void leave() {
        lock.unlock();
    }

    /** Wipes the keys and closes the handle. Harmless twice. */
    @Override
    public void close() {
        lock.lock();
        try {
            cleanable.clean();
        } finally {
            lock.unlock();
        }
    }

    public boolean isOpen() {
        return handle.ptr != 0;
    }

    /** This device's Ed25519 public key (32 bytes). */
    public byte[] deviceId() {
        long v = enter();
        try {
            return Native.deviceId(v);
        } finally {
            leave();
        }
    }

    public void changePassphrase(char[] passphrase) throws FieldVaultException {
        long v = enter();
        try {
            Native.passwd(v, passphrase, null);
        } finally {
            leave();
            Utf8.wipe(passphrase);
        }
    }

    private static final class ProgressSink extends Native.Sink {
        final ProgressListener l;

        ProgressSink(ProgressListener l) {
            this.l = l;
        }

        @Override
        boolean progress(long done, long total) {
            return l.onProgress(done, total);
        }
    }

    private byte[] write(int mode, byte[] id, RecordInput in) throws FieldVaultException {
        long v = enter();
        try {
            return Native.write(v, mode, id, in.title, in.narrative, RecordInput.arr(in.fieldKeys),
                                RecordInput.arr(in.fieldValues), RecordInput.arr(in.tags),
                                RecordInput.arr(in.removeTags), RecordInput.arr(in.attachmentNames),
                                in.sources.toArray(), RecordInput.arr(in.removeAttachments),
                                in.progress == null ? null : new ProgressSink(in.progress));
        } catch (FieldVaultException | RuntimeException | Error e) {
            throw e;
        } catch (Exception e) { // an attachment InputStream failed: nothing was written
            FieldVaultException f = new FieldVaultException.Io(FieldVaultException.EIO,
                    "an attachment stream failed: " + e.getClass().getSimpleName());
            f.initCause(e);
            throw f;
        } finally {
            leave();
        }
    }

    /** Adds a record (durable on return) and returns its id. */
    public byte[] add(RecordInput in) throws FieldVaultException {
        return write(0, null, in);
    }

    /** Writes a new revision of record {@code id}; returns the revision id. */
    public byte[] edit(byte[] id, RecordInput changes) throws FieldVaultException {
        return write(1, id, changes);
    }

    /** Ends a conflict: a revision over every head of {@code id}. */
    public byte[] merge(byte[] id, RecordInput changes) throws FieldVaultException {
        return write(2, id, changes);
    }

    public void delete(byte[] id) throws FieldVaultException {
        long v = enter();
        try {
            Native.delete(v, id);
        } finally {
            leave();
        }
    }

    /** A record id from its hex or a unique hex prefix (4 digits at least). */
    public byte[] resolve(String hex) throws FieldVaultException {
        long v = enter();
        try {
            return Native.resolve(v, Utf8.of(hex));
        } finally {
            leave();
        }
    }

    private static final class RecordSink extends Native.Sink {
        final Predicate<Record> visitor;

        RecordSink(Predicate<Record> visitor) {
            this.visitor = visitor;
        }

        @Override
        boolean record(byte[] bytes, int[] ints, long[] longs) {
            return visitor.test(new Record(bytes, ints, longs));
        }
    }

    /** The newest head of record {@code id}. Close the Record to wipe it. */
    public Record get(byte[] id) throws FieldVaultException {
        Record[] out = new Record[1];
        long v = enter();
        try {
            Native.get(v, id, new RecordSink(r -> {
                out[0] = r;
                return true;
            }));
        } finally {
            leave();
        }
        return out[0];
    }

    /**
     * Calls {@code visitor} for each record that passes {@code q} (null: all),
     * oldest first; it returns false to stop (no exception then). Records
     * that fail verification or that this vault cannot open are skipped: the
     * call then throws Corrupt or NotFound after visiting every other one.
     */
    public void forEach(Query q, Predicate<Record> visitor) throws FieldVaultException {
        if (q == null)
            q = Query.all();
        boolean[] stopped = new boolean[1];
        long v = enter();
        try {
            Native.query(v, q.stateCode(), q.tag, q.origin, q.since, q.until, q.text, q.idArray(),
                         new RecordSink(r -> {
                             if (visitor.test(r))
                                 return true;
                             stopped[0] = true;
                             return false;
                         }));
        } catch (FieldVaultException.Canceled e) {
            if (!stopped[0])
                throw e;
        } finally {
            leave();
        }
    }

    /** Every record that passes {@code q}, in a list. */
    public List<Record> query(Query q) throws FieldVaultException {
        List<Record> out = new ArrayList<>();
        forEach(q, out::add);
        return out;
    }

    public List<Record> list() throws FieldVaultException {
        return query(null);
    }

    /** Writes a note (UTF-8) about record {@code id}; returns the note's id. */
    public byte[] addNote(byte[] id, byte[] text) throws FieldVaultException {
        long v = enter();
        try {
            return Native.noteAdd(v, id, text);
        } finally {
            leave();
        }
    }

    public byte[] addNote(byte[] id, char[] text) throws FieldVaultException {
        byte[] t = Utf8.encode(text);
        try {
            return addNote(id, t);
        } finally {
            Utf8.wipe(t);
        }
    }

    /** The notes about record {@code id} (null: every record) this vault can read. */
    public List<Note> notes(byte[] id) throws FieldVaultException {
        List<Note> out = new ArrayList<>();
        long v = enter();
        try {
            Native.notes(v, id, new Native.Sink() {
                @Override
                boolean note(byte[] nid, byte[] rec, byte[] author, long time, byte[] text) {
                    out.add(new Note(nid, rec, author, time, text));
                    return true;
                }
            });
        } finally {
            leave();
        }
        return out;
    }

    /** Coordinator: sets the review state of record {@code id}. */
    public void setState(byte[] id, ReviewState state) throws FieldVaultException {
        long v = enter();
        try {
            Native.setState(v, id, state.code);
        } finally {
            leave();
        }
    }

    /** The record's author or a coordinator: retracts record {@code id} everywhere. */
    public void retract(byte[] id) throws FieldVaultException {
        long v = enter();
        try {
            Native.retract(v, id);
        } finally {
            leave();
        }
    }

    /**
     * Writes the evidence export (the signed envelopes and encrypted chunks, a manifest) of the
     * records passing {@code q} (null: all) into a new directory {@code path}; returns how many.
     * The plaintext reports (JSON, CSV, HTML) are not in the library: an app builds its own from
     * {@link #forEach}.
     */
    public long exportEvidence(File path, Query q) throws FieldVaultException {
        if (q == null)
            q = Query.all();
        long v = enter();
        try {
            return Native.export(v, Utf8.path(path), q.stateCode(), q.tag, q.origin,
                                 q.since, q.until, q.text, q.idArray());
        } finally {
            leave();
        }
    }

    /** Re-checks every signature, hash and link the vault holds. */
    public VerifyReport verify() throws FieldVaultException {
        List<VerifyReport.Issue> issues = new ArrayList<>();
        long[] n;
        long v = enter();
        try {
            n = Native.verify(v, new Native.Sink() {
                @Override
                boolean issue(byte[] record, byte[] envelope, String problem) {
                    issues.add(new VerifyReport.Issue(record, envelope, problem));
                    return true;
                }
            });
        } finally {
            leave();
        }
        return new VerifyReport(n, issues);
    }

    /**
     * Writes attachment {@code name} of record {@code id} to {@code out}, in
     * order; every chunk is verified before any of its bytes are written (on
     * Corrupt, discard what was written).
     */
    public void readAttachment(byte[] id, byte[] name, OutputStream out) throws FieldVaultException {
        IOException[] failed = new IOException[1];
        long v = enter();
        try {
            Native.attachmentRead(v, id, name, new Native.Sink() {
                @Override
                boolean write(byte[] buf, int len) {
                    try {
                        out.write(buf, 0, len);
                        return true;
                    } catch (IOException e) {
                        failed[0] = e;
                        return false;
                    }
                }
            });
        } catch (FieldVaultException e) {
            if (failed[0] != null)
                e.initCause(failed[0]);
            throw e;
        } finally {
            leave();
        }
    }

    public void readAttachment(byte[] id, String name, OutputStream out) throws FieldVaultException {
        readAttachment(id, Utf8.of(name), out);
    }

    /** Saves attachment {@code name} to a new file (0600), complete or not at all. */
    public void saveAttachment(byte[] id, String name, File path) throws FieldVaultException {
        long v = enter();
        try {
            Native.attachmentSave(v, id, Utf8.of(name), Utf8.path(path));
        } finally {
            leave();
        }
    }

    public InputStream openAttachment(byte[] id, String name) {
        return openAttachment(id, Utf8.of(name));
    }

    /**
     * Attachment {@code name} of record {@code id} as an InputStream. A
     * reader thread decrypts and verifies it chunk by chunk, a few pieces
     * ahead of the caller; the vault's other calls wait until the stream is
     * read to its end or closed (on the thread that opened it they throw
     * IllegalStateException). A failure (Corrupt, NotFound...) surfaces as an
     * IOException whose cause is the FieldVaultException. Pieces are wiped
     * once read.
     */
    public InputStream openAttachment(byte[] id, byte[] name) {
        return new AttachmentInputStream(this, id, name);
    }

    private static final class AttachmentInputStream extends InputStream {
        private static final byte[] END = new byte[0];
        private final BlockingQueue<byte[]> queue = new ArrayBlockingQueue<>(4);
        private final Thread reader;
        private volatile boolean closed;
        private volatile Throwable failure;
        private byte[] piece;
        private int pos;

        AttachmentInputStream(Vault vault, byte[] id, byte[] name) {
            if (!vault.isOpen())
                throw new IllegalStateException("vault closed");
            vault.streamReader = Thread.currentThread();
            reader = new Thread(() -> {
                vault.lock.lock();
                try {
                    long v = vault.handle.ptr;
                    if (v == 0)
                        throw new IllegalStateException("vault closed");
                    Native.attachmentRead(v, id, name, new Native.Sink() {
                        @Override
                        boolean write(byte[] buf, int len) {
                            byte[] copy = Arrays.copyOf(buf, len);
                            try {
                                while (!closed)
                                    if (queue.offer(copy, 100, TimeUnit.MILLISECONDS))
                                        return true;
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                            }
                            Utf8.wipe(copy);
                            return false;
                        }
                    });
                } catch (Throwable t) {
                    failure = t;
                } finally {
                    vault.streamReader = null;
                    vault.lock.unlock();
                    try {
                        while (!closed && !queue.offer(END, 100, TimeUnit.MILLISECONDS)) {
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            }, "fieldvault-attachment");
            reader.setDaemon(true);
            reader.start();
        }

        private boolean fill() throws IOException {
            if (piece != null && pos < piece.length)
                return true;
            if (piece != null)
                Utf8.wipe(piece);
            piece = null;
            if (closed)
                throw new IOException("stream closed");
            byte[] next;
            try {
                next = queue.take();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException();
            }
            if (next == END) {
                queue.offer(END);
                if (failure != null)
                    throw new IOException(failure.getMessage(), failure);
                return false;
            }
            piece = next;
            pos = 0;
            return true;
        }

        @Override
        public int read() throws IOException {
            if (!fill())
                return -1;
            return piece[pos++] & 0xFF;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0)
                return 0;
            if (!fill())
                return -1;
            int n = Math.min(len, piece.length - pos);
            System.arraycopy(piece, pos, b, off, n);
            pos += n;
            return n;
        }

        @Override
        public void close() {
            if (closed)
                return;
            closed = true;
            if (piece != null)
                Utf8.wipe(piece);
            byte[] b;
            while ((b = queue.poll()) != null)
                Utf8.wipe(b);
            try {
                reader.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            while ((b = queue.poll()) != null)
                Utf8.wipe(b);
        }
    }

    /** Failed-unlock wipe: after {@code failures} wrong passphrases in a row the vault is destroyed; 0 turns it off. */
    public void setWipeAfter(int failures) throws FieldVaultException {
        long v = enter();
        try {
            Native.setWipeAfter(v, failures);
        } finally {
            leave();
        }
    }

    public int wipeAfter() throws FieldVaultException {
        long v = enter();
        try {
            return Native.getWipeAfter(v);
        } finally {
            leave();
        }
    }

    /**
     * Sets the duress passphrase (it must differ from the vault's): opening
     * with it destroys this vault and opens a decoy built now, from
     * {@code decoyFrom}'s records (null: a few harmless ones). See SECURITY.md.
     */
    public void setDuress(char[] passphrase, Vault decoyFrom) throws FieldVaultException {
        if (decoyFrom == this)
            throw new IllegalArgumentException("the decoy source must be another vault");
        long d = 0;
        if (decoyFrom != null)
            d = decoyFrom.enter();
        try {
            long v = enter();
            try {
                Native.setDuress(v, passphrase, null, d);
            } finally {
                leave();
            }
        } finally {
            if (decoyFrom != null)
                decoyFrom.leave();
            Utf8.wipe(passphrase);
        }
    }

    public void clearDuress() throws FieldVaultException {
        long v = enter();
        try {
            Native.clearDuress(v);
        } finally {
            leave();
        }
    }

    /** Redeems an invite: enrolls with the server it names (or options' server). */
    public Role enroll(String invite, SyncOptions o) throws FieldVaultException {
        if (o == null)
            o = SyncOptions.defaults();
        long v = enter();
        try {
            return Role.of(Native.enroll(v, Utf8.of(invite), Utf8.of(o.server), o.timeoutMs,
                                         Utf8.of(o.proxy)));
        } finally {
            leave();
        }
    }

    /** A sync to run on a worker thread and cancel from another; see {@link SyncSession}. */
    public SyncSession syncSession(SyncOptions o) throws FieldVaultException {
        return new SyncSession(this, o == null ? SyncOptions.defaults() : o);
    }

    /** A whole sync on this thread. */
    public SyncResult sync(SyncOptions o) throws FieldVaultException {
        try (SyncSession s = syncSession(o)) {
            return s.run();
        }
    }
}
