package org.fieldvault;

import java.util.Collections;
import java.util.List;

/** What {@link Vault#verify()} checked and what failed. */
public final class VerifyReport {
    /** One failed check: the record and envelope concerned (either may be null). */
    public static final class Issue {
        public final byte[] record, envelope;
        public final String problem;

        Issue(byte[] record, byte[] envelope, String problem) {
            this.record = record;
            this.envelope = envelope;
            this.problem = problem;
        }
    }

    public final long envelopes, chunks, receipts, failures;
    public final List<Issue> issues;

    VerifyReport(long[] n, List<Issue> issues) {
        envelopes = n[0];
        chunks = n[1];
        receipts = n[2];
        failures = n[3];
        this.issues = Collections.unmodifiableList(issues);
    }

    public boolean ok() {
        return failures == 0;
    }
}
