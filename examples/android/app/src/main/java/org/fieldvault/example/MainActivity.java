/*
 * NOT BUILT HERE: the shape of a minimal Android activity using the
 * FieldVault Java binding (examples/android/README.md). Layout and
 * resources are left out; the views are made in code.
 */
package org.fieldvault.example;

import android.app.Activity;
import android.net.Uri;
import android.os.Bundle;
import android.text.Editable;
import android.widget.Button;
import android.widget.EditText;
import android.widget.LinearLayout;
import android.widget.TextView;

import java.io.File;
import java.io.InputStream;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.fieldvault.FieldVaultException;
import org.fieldvault.KdfProfile;
import org.fieldvault.RecordInput;
import org.fieldvault.SyncOptions;
import org.fieldvault.SyncResult;
import org.fieldvault.SyncSession;
import org.fieldvault.Vault;

public final class MainActivity extends Activity {
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private Vault vault;
    private volatile SyncSession sync;
    private TextView status;
    private EditText passphrase;

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        passphrase = new EditText(this);
        Button unlock = new Button(this), report = new Button(this), send = new Button(this),
               stop = new Button(this);
        unlock.setText("Unlock");
        report.setText("Add report");
        send.setText("Sync");
        stop.setText("Stop");
        status = new TextView(this);
        root.addView(passphrase);
        root.addView(unlock);
        root.addView(report);
        root.addView(send);
        root.addView(stop);
        root.addView(status);
        setContentView(root);

        unlock.setOnClickListener(v -> unlock());
        report.setOnClickListener(v -> addReport(null));
        send.setOnClickListener(v -> sync());
        // Cancel from the UI thread: the worker's run() returns promptly.
        stop.setOnClickListener(v -> {
            SyncSession s = sync;
            if (s != null)
                s.cancel();
        });
    }

    /** The passphrase as a char[], never a String; the EditText is cleared. */
    private char[] takePassphrase() {
        Editable e = passphrase.getText();
        char[] p = new char[e.length()];
        e.getChars(0, e.length(), p, 0);
        e.clear();
        return p;
    }

    private void unlock() {
        char[] p = takePassphrase();
        File dir = new File(getNoBackupFilesDir(), "vault");
        worker.execute(() -> { // the KDF takes most of a second: never on the UI thread
            try {
                vault = new File(dir, "vault.key").exists() ? Vault.open(dir, p)
                                                            : Vault.create(dir, p, KdfProfile.PHONE);
                show("unlocked: " + vault.list().size() + " records");
            } catch (FieldVaultException.WrongPassphrase e) {
                show("wrong passphrase");
            } catch (FieldVaultException e) {
                show(e.getMessage()); // the library's message: never content
            }
        });
    }

    /** A report with a photo streamed from the ContentResolver. */
    private void addReport(Uri photo) {
        worker.execute(() -> {
            try (RecordInput in = new RecordInput();
                 InputStream img = photo == null ? null : getContentResolver().openInputStream(photo)) {
                in.title("Report".toCharArray()).narrative("...".toCharArray()).tag("field");
                if (img != null)
                    in.attach("photo.jpg", img); // streamed as add() reads it, never held whole
                vault.add(in);
                show("saved");
            } catch (Exception e) {
                show(e.getMessage());
            }
        });
    }

    private void sync() {
        worker.execute(() -> {
            try (SyncSession s = vault.syncSession(SyncOptions.defaults()
                    .progress((done, total) -> {
                        show(done + " / " + total + " bytes");
                        return true;
                    }))) {
                sync = s;
                SyncResult r = s.run();
                show("sent " + r.pushed + ", received " + r.pulled);
            } catch (FieldVaultException.Canceled e) {
                show("stopped; the next sync resumes");
            } catch (FieldVaultException.Network e) {
                show("no connection: try later");
            } catch (FieldVaultException e) {
                show(e.getMessage());
            } finally {
                sync = null;
            }
        });
    }

    private void show(String s) {
        runOnUiThread(() -> status.setText(s));
    }

    @Override
    protected void onDestroy() {
        SyncSession s = sync;
        if (s != null)
            s.cancel();
        worker.shutdown();
        if (vault != null)
            vault.close(); // wipes the keys now rather than at GC
        super.onDestroy();
    }
}
