package org.fieldvault;

import java.lang.ref.Cleaner;

/**
 * A sync of a vault (fv_sync_session), run on a worker thread with
 * {@link #run()} and stopped from any other thread with {@link #cancel()}:
 * run then throws {@link FieldVaultException.Canceled} promptly, even while
 * waiting on the network, and what was committed stays committed. Run it
 * again to resume. The vault's other calls wait while it runs.
 */
public final class SyncSession implements AutoCloseable {
    private static final class Handle implements Runnable {
        volatile long ptr;

        Handle(long ptr) {
            this.ptr = ptr;
        }

        @Override
        public synchronized void run() {
            long p = ptr;
            ptr = 0;
            if (p != 0)
                Native.syncFree(p);
        }
    }

    private final Vault vault; // kept reachable while the session lives
    private final Handle handle;
    private final Cleaner.Cleanable cleanable;
    private final Object runLock = new Object();

    SyncSession(Vault vault, SyncOptions o) throws FieldVaultException {
        this.vault = vault;
        Native.Sink progress = null;
        if (o.progress != null) {
            ProgressListener l = o.progress;
            progress = new Native.Sink() {
                @Override
                boolean progress(long done, long total) {
                    return l.onProgress(done, total);
                }
            };
        }
        long v = vault.enter();
        try {
            handle = new Handle(Native.syncNew(v, Utf8.of(o.server), o.timeoutMs, Utf8.of(o.proxy),
                                               progress));
        } finally {
            vault.leave();
        }
        cleanable = Vault.CLEANER.register(this, handle);
    }

    /** Runs the sync to its end on this thread. */
    public SyncResult run() throws FieldVaultException {
        synchronized (runLock) {
            long v = vault.enter();
            try {
                long s = handle.ptr;
                if (s == 0)
                    throw new IllegalStateException("sync session closed");
                return new SyncResult(Native.syncRun(s, v));
            } finally {
                vault.leave();
            }
        }
    }

    /** Stops a running (or the next) run. Any thread, any time; harmless after close. */
    public void cancel() {
        synchronized (handle) {
            if (handle.ptr != 0)
                Native.syncCancel(handle.ptr);
        }
    }

    /** Cancels a running sync, waits for it to return, and frees the session. */
    @Override
    public void close() {
        cancel();
        synchronized (runLock) {
            cleanable.clean();
        }
    }
}
