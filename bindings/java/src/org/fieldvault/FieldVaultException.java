package org.fieldvault;

/**
 * A failed FieldVault call: the library's result code ({@code FV_E...}) and
 * its message, which never holds record content or key material. Each code
 * has its own subclass, so an app catches what it handles
 * ({@link WrongPassphrase}, {@link NoVault}, {@link Network}...).
 */
public class FieldVaultException extends Exception {
    private static final long serialVersionUID = 1L;

    public static final int EINVAL = -1, ENOMEM = -2, EIO = -3, ENOVAULT = -4,
            EEXIST = -5, EPASSPHRASE = -6, EVERSION = -7, ECORRUPT = -8,
            ENOTFOUND = -9, ENOSPC = -10, ECANCELED = -11, ELIMIT = -12,
            EBUSY = -13, ECRYPTO = -14, EAMBIGUOUS = -15, ENET = -16, EPIN = -17,
            ETLS = -18, EEOF = -19, EPROTO = -20, EDENIED = -21, EINVITE = -22,
            EINCOMPLETE = -23, ESERVER = -24, EPROXY = -25, EDATABASE = -26;

    private final int code;

    public FieldVaultException(int code, String message) {
        super(message);
        this.code = code;
    }

    /** The library's result code, a negative {@code FV_E...} value. */
    public int code() {
        return code;
    }

    /** The exception of the class that stands for {@code code}. Called by the JNI layer. */
    static FieldVaultException of(int code, String message) {
        switch (code) {
        case EINVAL: return new InvalidArgument(code, message);
        case ENOMEM: return new OutOfMemory(code, message);
        case EIO: return new Io(code, message);
        case ENOVAULT: return new NoVault(code, message);
        case EEXIST: return new Exists(code, message);
        case EPASSPHRASE: return new WrongPassphrase(code, message);
        case EVERSION: return new NewerVersion(code, message);
        case ECORRUPT: return new Corrupt(code, message);
        case ENOTFOUND: return new NotFound(code, message);
        case ENOSPC: return new DiskFull(code, message);
        case ECANCELED: return new Canceled(code, message);
        case ELIMIT: return new Limit(code, message);
        case EBUSY: return new Busy(code, message);
        case ECRYPTO: return new CryptoUnavailable(code, message);
        case EAMBIGUOUS: return new Ambiguous(code, message);
        case ENET: case EEOF: case EPROXY: return new Network(code, message);
        case EPIN: return new PinMismatch(code, message);
        case ETLS: case EPROTO: return new Protocol(code, message);
        case EDENIED: return new Denied(code, message);
        case EINVITE: return new BadInvite(code, message);
        case EINCOMPLETE: return new Incomplete(code, message);
        case ESERVER: case EDATABASE: return new ServerFailed(code, message);
        default: return new FieldVaultException(code, message);
        }
    }

    /** FV_EINVAL: a bad argument or malformed input. */
    public static class InvalidArgument extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public InvalidArgument(int c, String m) { super(c, m); }
    }
    /** FV_ENOMEM. */
    public static class OutOfMemory extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public OutOfMemory(int c, String m) { super(c, m); }
    }
    /** FV_EIO: a file system error (and an InputStream or OutputStream that failed). */
    public static class Io extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Io(int c, String m) { super(c, m); }
    }
    /** FV_ENOVAULT: no vault at that directory (or it was wiped). */
    public static class NoVault extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public NoVault(int c, String m) { super(c, m); }
    }
    /** FV_EEXIST: a vault, output file or enrollment already exists. */
    public static class Exists extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Exists(int c, String m) { super(c, m); }
    }
    /** FV_EPASSPHRASE. */
    public static class WrongPassphrase extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public WrongPassphrase(int c, String m) { super(c, m); }
    }
    /** FV_EVERSION: data of a newer format. */
    public static class NewerVersion extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public NewerVersion(int c, String m) { super(c, m); }
    }
    /** FV_ECORRUPT: tampered or damaged data; nothing of it is shown. */
    public static class Corrupt extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Corrupt(int c, String m) { super(c, m); }
    }
    /** FV_ENOTFOUND. */
    public static class NotFound extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public NotFound(int c, String m) { super(c, m); }
    }
    /** FV_ENOSPC. */
    public static class DiskFull extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public DiskFull(int c, String m) { super(c, m); }
    }
    /** FV_ECANCELED: a progress listener or {@link SyncSession#cancel} asked to stop. */
    public static class Canceled extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Canceled(int c, String m) { super(c, m); }
    }
    /** FV_ELIMIT: input beyond a documented limit. */
    public static class Limit extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Limit(int c, String m) { super(c, m); }
    }
    /** FV_EBUSY: another process or sync holds the vault. */
    public static class Busy extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Busy(int c, String m) { super(c, m); }
    }
    /** FV_ECRYPTO: the crypto library could not start. */
    public static class CryptoUnavailable extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public CryptoUnavailable(int c, String m) { super(c, m); }
    }
    /** FV_EAMBIGUOUS: an id prefix matches more than one record. */
    public static class Ambiguous extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Ambiguous(int c, String m) { super(c, m); }
    }
    /** FV_ENET, FV_EEOF, FV_EPROXY: the network, the peer or the proxy failed; retry later. */
    public static class Network extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Network(int c, String m) { super(c, m); }
    }
    /** FV_EPIN: the server's key is not the pinned one. */
    public static class PinMismatch extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public PinMismatch(int c, String m) { super(c, m); }
    }
    /** FV_ETLS, FV_EPROTO: the peer broke TLS or the sync protocol. */
    public static class Protocol extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Protocol(int c, String m) { super(c, m); }
    }
    /** FV_EDENIED: not enrolled, revoked, or not allowed. */
    public static class Denied extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Denied(int c, String m) { super(c, m); }
    }
    /** FV_EINVITE: the invite is damaged, used or expired. */
    public static class BadInvite extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public BadInvite(int c, String m) { super(c, m); }
    }
    /** FV_EINCOMPLETE: an attachment has not fully arrived. */
    public static class Incomplete extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public Incomplete(int c, String m) { super(c, m); }
    }
    /** FV_ESERVER, FV_EDATABASE: the server failed on its side (or its database); retry later. */
    public static class ServerFailed extends FieldVaultException {
        private static final long serialVersionUID = 1L;
        public ServerFailed(int c, String m) { super(c, m); }
    }
}
