package org.fieldvault;

/** A device's role in its organisation (enum fv_role). */
public enum Role {
    FIELD, COORDINATOR;

    static Role of(int code) {
        return code == 2 ? COORDINATOR : FIELD;
    }
}
