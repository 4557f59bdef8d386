package org.fieldvault;

/**
 * Progress of an operation that moves bytes (attachments, a sync). Called on
 * the thread that runs the operation. Return false to cancel it (it then
 * fails with {@link FieldVaultException.Canceled}).
 */
@FunctionalInterface
public interface ProgressListener {
    boolean onProgress(long done, long total);
}
