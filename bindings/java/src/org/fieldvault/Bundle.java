package org.fieldvault;

import java.io.File;

/** Courier bundles: a vault's outbox carried on removable media (docs/PROTOCOL.md). */
public final class Bundle {
    private Bundle() {}

    /** fv_bundle_stats. */
    public static final class Stats {
        public final long envelopes, added, skipped, refused, chunks, chunkBytes, chunksAdded,
                chunksRefused, chunksUnlisted, parts;
        public final boolean truncated;

        Stats(long[] n) {
            envelopes = n[0];
            added = n[1];
            skipped = n[2];
            refused = n[3];
            chunks = n[4];
            chunkBytes = n[5];
            chunksAdded = n[6];
            chunksRefused = n[7];
            chunksUnlisted = n[8];
            parts = n[9];
            truncated = n[10] != 0;
        }
    }

    /**
     * Writes every envelope (and, unless {@code noAttachments}, chunk) the
     * server has not acknowledged to a new file; {@code maxSize} &gt; 0 splits
     * it into parts path.001, path.002...
     */
    public static Stats export(Vault vault, File path, boolean noAttachments, long maxSize)
            throws FieldVaultException {
        long v = vault.enter();
        try {
            return new Stats(Native.bundleExport(v, Utf8.path(path), noAttachments, maxSize));
        } finally {
            vault.leave();
        }
    }

    /** Verifies and stores a bundle's envelopes and chunks. */
    public static Stats importFrom(Vault vault, File path) throws FieldVaultException {
        long v = vault.enter();
        try {
            return new Stats(Native.bundleImport(v, Utf8.path(path)));
        } finally {
            vault.leave();
        }
    }
}
