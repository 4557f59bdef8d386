package org.fieldvault;

/** enum fv_export_format. */
public enum ExportFormat {
    JSON(1), CSV(2), HTML(3), EVIDENCE(4);

    final int code;

    ExportFormat(int code) {
        this.code = code;
    }
}
