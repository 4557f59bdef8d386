package org.fieldvault;

/** What a sync did (fv_sync_result). */
public final class SyncResult {
    public final long pushed, pulled, added, conflicts;
    public final Role role;
    public final long bytesSent, bytesReceived, roundtrips, chunksSent, chunksReceived,
            chunksUnavailable, chunksRejected, dropped, refused;
    /** Envelopes of this vault the server refused (its receipt names each with a reason): kept
     *  in the vault, not sent again. */
    public final long rejected;
    /** {@link #ROLLBACK_BEHIND} or {@link #ROLLBACK_DIVERGED} when the server's log went back
     *  or differed (a server restored from an older backup) and the vault started over with
     *  it during this sync; 0 otherwise. */
    public final int rollback;

    public static final int ROLLBACK_BEHIND = 1, ROLLBACK_DIVERGED = 2;

    SyncResult(long[] n) {
        pushed = n[0];
        pulled = n[1];
        added = n[2];
        conflicts = n[3];
        role = Role.of((int) n[4]);
        bytesSent = n[5];
        bytesReceived = n[6];
        roundtrips = n[7];
        chunksSent = n[8];
        chunksReceived = n[9];
        chunksUnavailable = n[10];
        chunksRejected = n[11];
        dropped = n[12];
        refused = n[13];
        rejected = n[14];
        rollback = (int) n[15];
    }

    @Override
    public String toString() {
        return "pushed " + pushed + ", pulled " + pulled + ", added " + added + ", chunks sent "
                + chunksSent + ", chunks received " + chunksReceived;
    }
}
