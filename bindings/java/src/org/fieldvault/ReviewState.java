package org.fieldvault;

/** A record's review state (enum fv_review_state). */
public enum ReviewState {
    NEW(0), REVIEWED(1), NEEDS_FOLLOW_UP(2), ARCHIVED(3);

    final int code;

    ReviewState(int code) {
        this.code = code;
    }

    static ReviewState of(int code) {
        for (ReviewState s : values())
            if (s.code == code)
                return s;
        return NEW;
    }
}
