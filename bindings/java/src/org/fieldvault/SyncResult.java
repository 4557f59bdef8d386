package org.fieldvault;

/** What a sync did (fv_sync_result). */
public final class SyncResult {
    public final long pushed, pulled, added, conflicts;
    public final Role role;
    public final long bytesSent, bytesReceived, roundtrips, chunksSent, chunksReceived,
            chunksUnavailable, chunksRejected, dropped, refused;

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
    }

    @Override
    public String toString() {
        return "pushed " + pushed + ", pulled " + pulled + ", added " + added + ", chunks sent "
                + chunksSent + ", chunks received " + chunksReceived;
    }
}
