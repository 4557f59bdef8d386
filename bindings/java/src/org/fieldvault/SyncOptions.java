package org.fieldvault;

/** fv_sync_options: where and how a sync or an enrollment connects. */
public final class SyncOptions {
    String server, proxy;
    int timeoutMs;
    ProgressListener progress;

    public static SyncOptions defaults() { return new SyncOptions(); }
    /** "host:port" instead of the enrolled (or invited) address. */
    public SyncOptions server(String hostPort) { server = hostPort; return this; }
    /** "socks5h://HOST:PORT" (Tor), "socks5://...", "http://...", or "none". */
    public SyncOptions proxy(String url) { proxy = url; return this; }
    /** Connect deadline and the longest stretch without progress; 0: 30 s. */
    public SyncOptions timeoutMs(int ms) { timeoutMs = ms; return this; }
    /** Bytes done and the total known so far; false cancels. */
    public SyncOptions progress(ProgressListener l) { progress = l; return this; }
}
