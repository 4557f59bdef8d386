package org.fieldvault;

import java.util.ArrayList;
import java.util.List;

/** Which records a listing or an export visits (fv_filter); every condition set must hold. */
public final class Query {
    ReviewState state;
    byte[] tag, origin, text;
    long since = Long.MIN_VALUE, until = Long.MAX_VALUE;
    final List<byte[]> ids = new ArrayList<>();

    public static Query all() { return new Query(); }

    public Query state(ReviewState s) { state = s; return this; }
    public Query tag(String t) { tag = Utf8.of(t); return this; }
    /** Records created by this device (its 32-byte key). */
    public Query origin(byte[] device) { origin = device; return this; }
    /** Created at or after, Unix seconds. */
    public Query since(long t) { since = t; return this; }
    /** Created at or before, Unix seconds. */
    public Query until(long t) { until = t; return this; }
    /** Records containing this text (as fv_vault_search). */
    public Query text(byte[] utf8) { text = utf8; return this; }
    public Query text(char[] t) { text = Utf8.encode(t); return this; }
    public Query text(String t) { text = Utf8.of(t); return this; }
    public Query id(byte[] id) { ids.add(id); return this; }

    int stateCode() { return state == null ? -1 : state.code; }
    byte[][] idArray() { return ids.toArray(new byte[0][]); }
}
