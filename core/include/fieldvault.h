/*
 * fieldvault.h - the FieldVault core: an encrypted, offline store of testimony
 * records and their attachments.
 *
 * Conventions (see docs/API.md):
 * - Every function that can fail returns FV_OK (0) or a negative FV_E... code.
 *   Codes are appended, never renumbered. fv_strerror() names a code.
 * - Arguments: the handle first, then out-parameters, then inputs (options
 *   last among them), then a callback with its payload last.
 * - Names: fv_<object>_<verb>; listings fv_<object>_list; a handle's
 *   property fv_<object>_get_<name> / fv_<object>_set_<name>.
 * - Output structs the caller allocates start with their size: declare
 *   them with their _INIT macro. Plain heap memory the library returns is
 *   released with fv_free.
 * - Arguments are borrowed: the library copies what it keeps. Ownership of a
 *   returned object passes to the caller only on success.
 * - A vault handle may be used by one thread at a time; different handles
 *   (even on the same directory) may be used from different threads at once.
 *   There is no global mutable state beyond libsodium's one-time init.
 * - No error message ever contains record content or key material.
 */
#ifndef FIELDVAULT_H
#define FIELDVAULT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FV_BUILDING_LIBRARY) && defined(__GNUC__)
#define FV_API __attribute__((visibility("default")))
#else
#define FV_API
#endif

/* ---- versions and result codes ---------------------------------------- */

#define FV_VERSION_STRING "1.0.0" /* the one place: CMake reads it */
#define FV_FORMAT_VERSION 1 /* vault and key file format (envelope bodies
                               carry their own version: docs/FORMAT.md 11) */

enum fv_result {
    FV_OK = 0,
    FV_EINVAL = -1,      /* bad argument or malformed caller input */
    FV_ENOMEM = -2,      /* out of memory */
    FV_EIO = -3,         /* file system error: missing file, permission... */
    FV_ENOVAULT = -4,    /* no vault at that directory */
    FV_EEXIST = -5,      /* a vault (or output file) already exists */
    FV_EPASSPHRASE = -6, /* wrong passphrase */
    FV_EVERSION = -7,    /* vault or data of a newer, unknown format */
    FV_ECORRUPT = -8,    /* tampered or corrupt data; nothing of it is shown */
    FV_ENOTFOUND = -9,   /* no such record, revision or attachment */
    FV_ENOSPC = -10,     /* disk full */
    FV_ECANCELED = -11,  /* a callback asked to stop */
    FV_ELIMIT = -12,     /* input beyond a documented hard limit */
    FV_EBUSY = -13,      /* another process holds the vault too long */
    FV_ECRYPTO = -14,    /* the crypto library could not start */
    FV_EAMBIGUOUS = -15, /* an id prefix matches more than one record */
    FV_ENET = -16,       /* network failure: cannot connect, cut, timeout */
    FV_EPIN = -17,       /* the server's key does not match the pinned key */
    FV_ETLS = -18,       /* TLS handshake or record failure */
    FV_EEOF = -19,       /* the peer closed the connection */
    FV_EPROTO = -20,     /* the peer broke the sync protocol */
    FV_EDENIED = -21,    /* refused: not enrolled, revoked, not allowed */
    FV_EINVITE = -22,    /* the invite is damaged, used or expired */
    FV_EINCOMPLETE = -23, /* an attachment has not fully arrived yet */
    FV_ESERVER = -24,     /* the server failed on its side (its disk full...); retry later */
    FV_EPROXY = -25,      /* the proxy cannot be reached, refused or failed */
    FV_EDATABASE = -26    /* the server's database (PostgreSQL) cannot be reached or refused */
};

/* The library's version string, FV_VERSION_STRING ("1.0.0"). Static
 * storage; any thread. */
FV_API const char *fv_version(void);

/* FV_FORMAT_VERSION of this library: the vault and key file format it
 * writes and the newest it reads (envelope bodies are at version 2, with
 * version 1 still read: docs/FORMAT.md 11). Any thread. */
FV_API int fv_format_version(void);

/* A short English description of a result code. Static storage; any thread. */
FV_API const char *fv_strerror(int code);

/* ---- sizes and limits -------------------------------------------------- */

#define FV_ID_BYTES 32          /* record ids and revision ids (BLAKE2b-256) */
#define FV_ID_HEX_BYTES 65      /* lowercase hex plus NUL */
#define FV_MAX_TITLE_BYTES 4096
#define FV_MAX_NARRATIVE_BYTES (768u * 1024) /* a revision fits one sync frame */
#define FV_MAX_FIELDS 256
#define FV_MAX_FIELD_KEY_BYTES 256
#define FV_MAX_FIELD_VALUE_BYTES 65536
#define FV_MAX_TAGS 256
#define FV_MAX_TAG_BYTES 256
#define FV_MAX_ATTACHMENTS 256
#define FV_MAX_ATTACHMENT_NAME_BYTES 255
#define FV_CHUNK_BYTES (256u * 1024) /* plaintext bytes per attachment chunk */
/* The most a reader accepts, and what files over 4 GiB are cut into. A
 * chunk travels in one sync frame. The signed envelope lists every chunk,
 * which bounds one record's attachments to about 30,000 chunks: 7.5 GiB at
 * 256 KiB, 15 GiB for files over 4 GiB (FV_ELIMIT beyond). */
#define FV_MAX_CHUNK_BYTES (512u * 1024)

/* ---- opening and creating a vault -------------------------------------- */

typedef struct fv_vault fv_vault;

/* Key-derivation cost profiles for fv_vault_create. The chosen parameters are
 * stored in the vault, so opening never depends on the profile table. */
enum fv_kdf_profile {
    FV_KDF_DESKTOP = 0, /* default: about half a second on a laptop, 256 MiB */
    FV_KDF_PHONE = 1,   /* 64 MiB: what a low-end phone can give */
    FV_KDF_TEST = 2     /* the libsodium minimum: for tests only, never real use */
};

typedef struct fv_create_options {
    unsigned int version; /* FV_CREATE_OPTIONS_VERSION */
    int kdf_profile;      /* enum fv_kdf_profile */
} fv_create_options;

#define FV_CREATE_OPTIONS_VERSION 1
#define FV_CREATE_OPTIONS_INIT {FV_CREATE_OPTIONS_VERSION, FV_KDF_DESKTOP}

/* Creates a new vault in directory `dir` (created 0700 if missing; must not
 * already hold a vault) and opens it. The passphrase may hold any bytes but
 * must not be empty. `opts` may be NULL for the defaults.
 * Returns FV_OK and *out, or FV_EEXIST, FV_EINVAL, FV_EIO, FV_ENOSPC,
 * FV_ENOMEM, FV_ECRYPTO. Close the handle with fv_vault_close. */
FV_API int fv_vault_create(fv_vault **out, const char *dir,
                           const char *passphrase, size_t passphrase_len,
                           const fv_create_options *opts);

/* Opens the vault in `dir`. Returns FV_OK and *out, or FV_ENOVAULT,
 * FV_EPASSPHRASE, FV_EVERSION, FV_ECORRUPT, FV_EIO, FV_EBUSY, FV_ENOMEM. */
FV_API int fv_vault_open(fv_vault **out, const char *dir,
                         const char *passphrase, size_t passphrase_len);

/* The message of the calling thread's last failure (no content, no key
 * material), for a call that leaves no handle to ask: after a failed
 * fv_vault_open, fv_vault_create or fv_vault_panic it says why ("wrong
 * passphrase", "no vault at DIR", "cannot read the key file: ..."). The
 * calls with no handle (those three and fv_state_parse) reset it to "no
 * error" when they succeed, so after one of them it always describes that
 * call. Every message a handle records (fv_vault_errmsg) is copied here
 * too; other calls leave it as it was when they succeed, so read it after
 * a call that failed. Per thread; "no error" before any failure. Valid
 * until the thread's next call into the library. Never NULL. */
FV_API const char *fv_error_last(void);

/* Wipes the handle's keys and closes it. NULL is harmless. */
FV_API void fv_vault_close(fv_vault *v);

/* The message of the last call on the handle (no content, no key
 * material): right after a call that failed, that call's own (what it
 * recorded, or its name and fv_strerror of its code); right after a call
 * that succeeded, and on a handle fv_vault_open or fv_vault_create just
 * returned, "no error". Read it right after the call that failed. Valid
 * until the next call on the handle. Never NULL. */
FV_API const char *fv_vault_errmsg(const fv_vault *v);

/* Rewraps the vault key under a new passphrase; records are not re-encrypted.
 * The old key file is replaced atomically. */
FV_API int fv_vault_passwd(fv_vault *v, const char *new_passphrase,
                           size_t new_passphrase_len);

/* Destroys the vault in `dir` without a passphrase: the key file is overwritten
 * and removed first (after which nothing in the vault can be decrypted), then
 * every vault file is removed. Returns FV_OK, FV_ENOVAULT or FV_EIO. */
FV_API int fv_vault_panic(const char *dir);

/* This device's Ed25519 public key, which signs everything it writes. */
FV_API int fv_vault_get_device_id(const fv_vault *v,
                                  unsigned char out[FV_ID_BYTES]);

/* ---- records ----------------------------------------------------------- */

typedef struct fv_field {
    const char *key;   /* UTF-8, NUL-terminated, 1..FV_MAX_FIELD_KEY_BYTES */
    const char *value; /* UTF-8, NUL-terminated */
} fv_field;

/* Reads up to `len` bytes into `buf`. Returns the count read, 0 at the end,
 * or a negative value on error (the operation then fails with FV_EIO). */
typedef long long (*fv_read_fn)(unsigned char *buf, size_t len, void *payload);

/* Writes `len` bytes. Returns 0, or non-zero to fail with FV_EIO. */
typedef int (*fv_write_fn)(const unsigned char *buf, size_t len, void *payload);

/* Called while attachment bytes move. Return non-zero to cancel (the
 * operation then fails with FV_ECANCELED and changes nothing). */
typedef int (*fv_progress_fn)(uint64_t done, uint64_t total, void *payload);

typedef struct fv_attachment_source {
    const char *name; /* shown name, UTF-8, no '/'; NULL = basename of path */
    const char *path; /* read from this file, or ... */
    fv_read_fn read;  /* ... from this callback when path is NULL */
    void *read_payload;
} fv_attachment_source;

/* The content of a new record, or the changes of an edit. */
typedef struct fv_record_input {
    unsigned int version;  /* FV_RECORD_INPUT_VERSION */
    const char *title;     /* add: required; edit: NULL keeps */
    const char *narrative; /* NULL: none (add) or keep (edit) */
    size_t narrative_len;
    const fv_field *fields; /* add: the fields; edit: set these (value ""
                               removes the field) */
    size_t nfields;
    const char *const *tags; /* add: the tags; edit: added */
    size_t ntags;
    const char *const *remove_tags; /* edit only */
    size_t nremove_tags;
    const fv_attachment_source *attachments; /* added */
    size_t nattachments;
    const char *const *remove_attachments; /* edit only: names */
    size_t nremove_attachments;
    fv_progress_fn progress; /* optional, over all attachment bytes */
    void *progress_payload;
} fv_record_input;

#define FV_RECORD_INPUT_VERSION 1
#define FV_RECORD_INPUT_INIT {FV_RECORD_INPUT_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

/* Adds a record. Durable when it returns FV_OK: a crash after that keeps it.
 * On success `out_id` (may be NULL) receives the new record's id. */
FV_API int fv_record_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                         const fv_record_input *in);

/* Writes a new revision of record `id` on top of its newest head, with the
 * changes in `in`. `out_rev` (may be NULL) receives the revision id.
 * FV_ENOTFOUND if there is no such (undeleted) record. */
FV_API int fv_record_edit(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                          const unsigned char id[FV_ID_BYTES],
                          const fv_record_input *in);

/* Deletes record `id`: writes a signed tombstone, then destroys the local
 * ciphertext of every revision and attachment of the record. */
FV_API int fv_record_delete(fv_vault *v, const unsigned char id[FV_ID_BYTES]);

/* Resolves a hex id or unique hex prefix (at least 4 digits) of a record id.
 * FV_ENOTFOUND, FV_EAMBIGUOUS or FV_EINVAL. */
FV_API int fv_record_resolve(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                             const char *hex);

typedef struct fv_attachment_info {
    const char *name;
    uint64_t size;        /* plaintext bytes */
    uint32_t chunk_bytes; /* plaintext bytes per chunk */
    uint64_t chunks;
    uint64_t chunks_present; /* held by this vault: < chunks while arriving */
} fv_attachment_info;

/* One decrypted, verified revision of a record. Every pointer in it stays
 * valid until fv_record_free (or, in a callback, until the callback returns).
 * Strings are NUL-terminated UTF-8; narrative may also hold NUL bytes. */
typedef struct fv_record {
    unsigned char id[FV_ID_BYTES];       /* the record */
    unsigned char revision[FV_ID_BYTES]; /* this revision */
    unsigned char author[FV_ID_BYTES];   /* Ed25519 key that signed it */
    int64_t created;                     /* record created, Unix seconds */
    int64_t modified;                    /* this revision written */
    const char *title;
    const char *narrative;
    size_t narrative_len;
    const fv_field *fields; /* sorted by key */
    size_t nfields;
    const char *const *tags; /* sorted */
    size_t ntags;
    const fv_attachment_info *attachments;
    size_t nattachments;
    size_t nheads; /* heads of the record; more than 1 is a conflict */
    /* Appended in 0.2 (fields are only ever appended; the library allocates
     * fv_record, so older callers are unaffected). */
    unsigned char origin[FV_ID_BYTES]; /* the device that created the record
                                          (its genesis revision's author) */
    int state;    /* enum fv_review_state, FV_STATE_NEW until one is set */
    size_t nnotes; /* notes about the record that this vault can read */
} fv_record;

/* Reads the newest head of record `id`. *out is the caller's: free it with
 * fv_record_free. FV_ENOTFOUND (also for a deleted record), FV_ECORRUPT. */
FV_API int fv_record_get(fv_vault *v, fv_record **out,
                         const unsigned char id[FV_ID_BYTES]);

/* Reads revision `rev` of record `id` (any revision fv_record_history
 * lists; each head of a conflict, say), with nheads, origin, state and
 * nnotes as fv_record_get gives them. *out is the caller's: free it with
 * fv_record_free. FV_ENOTFOUND if `rev` is not a revision of record `id`
 * (a tombstone is not), or its ciphertext was destroyed (a delete,
 * retention, a retraction) or is not readable by this vault; FV_ECORRUPT. */
FV_API int fv_record_get_revision(fv_vault *v, fv_record **out,
                                  const unsigned char id[FV_ID_BYTES],
                                  const unsigned char rev[FV_ID_BYTES]);

/* Wipes and frees a record. NULL is harmless. */
FV_API void fv_record_free(fv_record *r);

/* Called once per record; `r` is borrowed for the call. Return non-zero to
 * stop (the iteration then returns FV_ECANCELED). */
typedef int (*fv_record_fn)(const fv_record *r, void *payload);

/* Calls `fn` for the newest head of every undeleted record, oldest record
 * first. Records that fail verification are skipped and counted: the call
 * then returns FV_ECORRUPT after visiting every good record. Records this
 * vault cannot open are skipped and counted too: FV_ENOTFOUND after every
 * other record (fv_vault_query_ex names them). */
FV_API int fv_vault_list(fv_vault *v, fv_record_fn fn, void *payload);

/* Like fv_vault_list, for records whose title, narrative, field keys or
 * values, tags or attachment names contain `text` (ASCII letters match
 * regardless of case; other text matches exactly). */
FV_API int fv_vault_search(fv_vault *v, const char *text, fv_record_fn fn,
                           void *payload);

enum fv_revision_kind { FV_REVISION = 1, FV_TOMBSTONE = 2 };

typedef struct fv_revision {
    unsigned char id[FV_ID_BYTES];
    unsigned char author[FV_ID_BYTES];
    int kind;         /* enum fv_revision_kind */
    int64_t time;     /* when it was written, Unix seconds; 0 for a
                         revision this vault cannot open */
    size_t nparents;
    const unsigned char (*parents)[FV_ID_BYTES];
    int head;         /* non-zero if no other revision supersedes it */
    int purged;       /* its ciphertext was destroyed by a delete */
} fv_revision;

typedef int (*fv_revision_fn)(const fv_revision *rev, void *payload);

/* Calls `fn` for every revision of record `id`, oldest first (parents before
 * children). `rev` is borrowed for the call. A record whose first revision
 * has not reached this vault yet lists the revisions it holds. FV_ENOTFOUND
 * for an id that names no record here (or a retracted one). */
FV_API int fv_record_history(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                             fv_revision_fn fn, void *payload);

/* Writes a revision whose parents are every head of record `id`: the newest
 * head's content with the changes in `in`. It supersedes the concurrent
 * edits (the conflict ends) and every revision stays in the history. With a
 * single head it is the same as fv_record_edit. FV_ENOTFOUND. */
FV_API int fv_record_merge(fv_vault *v, unsigned char out_rev[FV_ID_BYTES],
                           const unsigned char id[FV_ID_BYTES],
                           const fv_record_input *in);

/* ---- the coordinator's desk: review, filters, notes, retraction --------- */

enum fv_review_state {
    FV_STATE_NEW = 0,
    FV_STATE_REVIEWED = 1,
    FV_STATE_NEEDS_FOLLOW_UP = 2,
    FV_STATE_ARCHIVED = 3
};

/* "new", "reviewed", "needs-follow-up", "archived"; NULL for another value. */
FV_API const char *fv_state_name(int state);
/* The inverse of fv_state_name: FV_OK and *state, or FV_EINVAL. */
FV_API int fv_state_parse(int *state, const char *name);

/* Coordinator: sets record `id`'s review state. Written as a signed envelope
 * that only coordinators can read, synced to the other coordinators; the
 * newest setting (by time, then by envelope id) wins everywhere.
 * FV_EDENIED if this vault holds no organisation key; FV_ENOTFOUND;
 * FV_ELIMIT if the current setting is dated INT64_MAX (cannot be passed). */
FV_API int fv_record_set_state(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                               int state);

/* Which records a listing or an export visits. Every condition set must hold. */
typedef struct fv_filter {
    unsigned int version;          /* FV_FILTER_VERSION */
    int state;                     /* enum fv_review_state; -1: any */
    const char *tag;               /* NULL: any; else this exact tag */
    const unsigned char *origin;   /* NULL: any; else FV_ID_BYTES: created by
                                      this device */
    int64_t since;                 /* created at or after (Unix s);
                                      INT64_MIN: no bound */
    int64_t until;                 /* created at or before (Unix s);
                                      INT64_MAX: no bound */
    const char *text;              /* NULL: any; else as fv_vault_search */
    const unsigned char (*ids)[FV_ID_BYTES]; /* nids > 0: only these records */
    size_t nids;
} fv_filter;

#define FV_FILTER_VERSION 1
#define FV_FILTER_INIT {FV_FILTER_VERSION, -1, 0, 0, INT64_MIN, INT64_MAX, 0, 0, 0}

/* Like fv_vault_list, for the records that pass `filter` (NULL: all). */
FV_API int fv_vault_query(fv_vault *v, const fv_filter *filter,
                          fv_record_fn fn, void *payload);

/* Why this vault cannot open a record (fv_unreadable.reason). Appended,
 * never renumbered. */
enum fv_unreadable_reason {
    FV_UNREADABLE_NO_KEY = 1,     /* sealed to no key this vault holds, and
                                     no key grant that opens it has arrived
                                     (its author may not have been enrolled
                                     when it was written: a later sync may
                                     bring the grant) */
    FV_UNREADABLE_NO_ORG_KEY = 2, /* sealed to the organisation's key, which
                                     this vault does not hold: import it
                                     (fv_org_key_import) */
    FV_UNREADABLE_MALFORMED = 3,  /* validly signed, but its content does not
                                     decrypt under its committed key, is not
                                     a valid record, or does not match its
                                     signed attachment lists */
    FV_UNREADABLE_NO_GENESIS = 4  /* no revision held here opens, and the
                                     record's first revision has not arrived
                                     (an edit came without it) */
};

/* A record this vault holds but cannot open: named, never read. Pointers
 * are borrowed for the callback. */
typedef struct fv_unreadable {
    unsigned char id[FV_ID_BYTES];       /* the record */
    unsigned char revision[FV_ID_BYTES]; /* the head that could not be opened */
    unsigned char author[FV_ID_BYTES];   /* who signed that head */
    size_t nheads;                       /* heads of the record */
    int reason;                          /* enum fv_unreadable_reason */
    const char *why;                     /* short English; never content */
} fv_unreadable;

/* Called once per record that cannot be opened. Non-zero stops
 * (FV_ECANCELED). */
typedef int (*fv_unreadable_fn)(const fv_unreadable *u, void *payload);

/* "sealed to no key this vault holds ...": fv_unreadable.why for a reason;
 * NULL for another value. Static storage; any thread. */
FV_API const char *fv_unreadable_why(int reason);

/* Like fv_vault_query, and a record this vault cannot open (no head of it
 * opens: enum fv_unreadable_reason) goes to `unreadable` (with `payload`)
 * in its place in the order, once, and the walk goes on. Such a record
 * passes a filter only on what is known without opening it: it is left out
 * when the filter names a text, a tag, a time or a creating device, or a
 * review state it does not have. A record one of whose heads opens is
 * given to `fn` as usual (nheads counts them all). With `unreadable` NULL
 * (fv_vault_query, fv_vault_list, fv_vault_search), such records are
 * skipped and counted: the call visits every other record, then returns
 * FV_ENOTFOUND, fv_vault_errmsg saying how many and why. Records that fail
 * verification (tampered) are skipped and counted: FV_ECORRUPT (first)
 * after every other record. */
FV_API int fv_vault_query_ex(fv_vault *v, const fv_filter *filter,
                             fv_record_fn fn, fv_unreadable_fn unreadable,
                             void *payload);

#define FV_MAX_NOTE_BYTES 65536

/* A note about a record, between coordinators and the record's author. */
typedef struct fv_note {
    unsigned char id[FV_ID_BYTES];     /* the note's envelope id */
    unsigned char record[FV_ID_BYTES];
    unsigned char author[FV_ID_BYTES]; /* the device that wrote it */
    int64_t time;                      /* Unix seconds */
    const char *text;                  /* UTF-8, NUL-terminated */
} fv_note;

/* `n` is borrowed for the call; non-zero stops (FV_ECANCELED). */
typedef int (*fv_note_fn)(const fv_note *n, void *payload);

/* Writes a note about record `id`, encrypted so that only the record's
 * creating device, the organisation's coordinators and this device can read
 * it; it travels at the next sync. `text`: 1..FV_MAX_NOTE_BYTES of UTF-8.
 * `out_id` may be NULL. FV_ENOTFOUND, FV_EINVAL. */
FV_API int fv_note_add(fv_vault *v, unsigned char out_id[FV_ID_BYTES],
                       const unsigned char id[FV_ID_BYTES], const char *text);

/* Calls `fn` for every note about record `id` (NULL: about every record)
 * that this vault can read, oldest first. */
FV_API int fv_note_list(fv_vault *v, const unsigned char *id, fv_note_fn fn,
                        void *payload);

/* The record's creating device or a coordinator: writes a signed retraction
 * of record `id` (the witness withdrew consent) and destroys this vault's
 * copy of the record: every revision, attachment, note and content key. At
 * the next sync the server deletes the record's envelopes and chunks and
 * passes the retraction to every device that held the record, which destroys
 * its copy too. The retraction itself (record id, who, when) remains, as an
 * auditable fact. FV_EDENIED: this device is neither. FV_ENOTFOUND. */
FV_API int fv_record_retract(fv_vault *v, const unsigned char id[FV_ID_BYTES]);

typedef struct fv_retraction {
    unsigned char id[FV_ID_BYTES];     /* the retraction's envelope id */
    unsigned char record[FV_ID_BYTES];
    unsigned char author[FV_ID_BYTES]; /* who retracted */
    int64_t time;                      /* when, Unix seconds (signed) */
} fv_retraction;

typedef int (*fv_retraction_fn)(const fv_retraction *r, void *payload);

/* Every retraction this vault holds, oldest first. */
FV_API int fv_retraction_list(fv_vault *v, fv_retraction_fn fn, void *payload);

/* ---- who may speak: the quarantine -------------------------------------- */

/* Why an envelope is kept apart (docs/PROTOCOL.md, "Who may speak"). */
enum fv_quarantine_why {
    FV_QUARANTINE_UNKNOWN = 1, /* its author holds no certificate here */
    FV_QUARANTINE_REVOKED = 2  /* its author was revoked before it was
                                  dated, or it cannot be dated here */
};

typedef struct fv_quarantined {
    unsigned char id[FV_ID_BYTES];     /* the envelope's id */
    unsigned char author[FV_ID_BYTES]; /* its signing device */
    int kind;                          /* envelope kind (docs/FORMAT.md 5.1) */
    int has_time;                      /* the payload could be opened here */
    int64_t time;                      /* its signed time, if has_time */
    int why;                           /* enum fv_quarantine_why */
} fv_quarantined;

typedef int (*fv_quarantine_fn)(const fv_quarantined *q, void *payload);

/* Every envelope kept apart, in the order they arrived. They are in no
 * listing, query, export or verify until their author's certificate
 * arrives, which releases them. */
FV_API int fv_quarantine_list(fv_vault *v, fv_quarantine_fn fn, void *payload);

/* ---- chain of custody ---------------------------------------------------- */

/* One failed check. Pointers are borrowed for the callback. */
typedef struct fv_verify_issue {
    const unsigned char *record;   /* FV_ID_BYTES, or NULL */
    const unsigned char *envelope; /* FV_ID_BYTES, or NULL */
    const char *problem;           /* short English; never content */
} fv_verify_issue;

typedef int (*fv_verify_fn)(const fv_verify_issue *issue, void *payload);

/* Caller-allocated: start from FV_VERIFY_REPORT_INIT, which sets size (the
 * library fills only what size covers, so the struct can grow). */
typedef struct fv_verify_report {
    size_t size;        /* sizeof(fv_verify_report) */
    uint64_t envelopes; /* envelopes checked */
    uint64_t chunks;    /* attachment chunks checked */
    uint64_t receipts;  /* server receipts checked */
    uint64_t failures;  /* checks that failed (each reported to fn) */
} fv_verify_report;

#define FV_VERIFY_REPORT_INIT {sizeof(fv_verify_report), 0, 0, 0, 0}

/* Re-checks everything the vault holds: every envelope's structure,
 * signature and content address, its key commitment and decryption where
 * this vault can open it, the revision links (every parent known, of the
 * same record), every stored chunk against its signed hash, and every
 * server receipt's signature against the envelopes it covers. `fn` (may be
 * NULL) hears of each failure; `report` (may be NULL; FV_EINVAL if its
 * size is not set) receives the counts. FV_OK if nothing failed,
 * FV_ECORRUPT if something did. */
FV_API int fv_vault_verify(fv_vault *v, fv_verify_report *report,
                           fv_verify_fn fn, void *payload);

/* ---- the evidence export ------------------------------------------------ */

/* The plaintext reports (JSON, CSV, HTML) are not in the library: they are
 * written over the public API (fv_vault_query_ex, fv_record_history,
 * fv_note_list, fv_attachment_read) by the `fieldvault` command's report
 * module (docs/API.md, "Changes for 1.0"). The evidence export stays here:
 * it copies the signed envelopes as stored, which only the vault reads. */

typedef struct fv_export_options {
    unsigned int version;     /* FV_EXPORT_OPTIONS_VERSION */
    const char *path;         /* a new directory: FV_EEXIST if it exists */
    const fv_filter *filter;  /* NULL: every record */
    fv_progress_fn progress;  /* records done, records in all */
    void *progress_payload;
    /* Each record this vault cannot open (fv_vault_query_ex) goes here, and
     * the export is written without it. NULL: such a record fails the
     * export (FV_ENOTFOUND, nothing written). */
    fv_unreadable_fn unreadable;
    void *unreadable_payload;
} fv_export_options;

/* 3: versions 1 and 2 (with a format and a write callback) are refused. */
#define FV_EXPORT_OPTIONS_VERSION 3
#define FV_EXPORT_OPTIONS_INIT {FV_EXPORT_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0}

/* Writes the evidence export of the records that pass the filter into a
 * new directory (docs/EXPORT.md, "Evidence"): every envelope of each
 * record exactly as stored, the attachment chunks they list, the server
 * receipts that cover them and a manifest. Nothing in it is decrypted.
 * Streaming: memory does not grow with the number of records. The
 * directory appears under `path` only when complete. *count (may be NULL)
 * receives the number of records written (not those given to
 * `unreadable`). FV_EEXIST, FV_EINVAL (no path, another options version),
 * FV_ECORRUPT (a record, envelope or chunk failed verification: nothing
 * written), FV_ENOTFOUND (a record this vault cannot open, `unreadable`
 * NULL), FV_ECANCELED, FV_EIO, FV_ENOSPC, FV_ENOMEM. */
FV_API int fv_export(fv_vault *v, uint64_t *count,
                     const fv_export_options *options);

/* ---- organisation key custody ------------------------------------------- */

/* Coordinator: writes the organisation's secret key to a new file `path`
 * (0600; FV_EEXIST if it exists), encrypted under a separate recovery
 * passphrase (Argon2id with this vault's cost). FV_EDENIED if this vault
 * holds no organisation key. */
FV_API int fv_org_key_export(fv_vault *v, const char *path,
                             const char *recovery, size_t recovery_len);

/* Imports an organisation key file written by fv_org_key_export: this vault
 * can then read and write what coordinators do. FV_EPASSPHRASE,
 * FV_ECORRUPT, FV_EEXIST (a different organisation key is already held). */
FV_API int fv_org_key_import(fv_vault *v, const char *path,
                             const char *recovery, size_t recovery_len);

/* ---- attachments ------------------------------------------------------- */

/* Decrypts attachment `name` of the newest head of record `id` and passes its
 * bytes, in order, to `fn`. Every chunk is verified before any of its bytes
 * are passed on; on FV_ECORRUPT the bytes already passed must be discarded. */
FV_API int fv_attachment_read(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                              const char *name, fv_write_fn fn, void *payload,
                              fv_progress_fn progress, void *progress_payload);

/* Like fv_attachment_read, for bytes [offset, offset + length) of the
 * attachment only (cut at its end): only the chunks the range touches are
 * read, each verified whole before any of its bytes are passed to `fn`, so a
 * player can seek without the rest being decrypted. *size (may be NULL)
 * receives the attachment's size. FV_EINVAL if `offset` is past the end
 * (an offset equal to the size passes nothing); FV_ENOTFOUND,
 * FV_EINCOMPLETE (a chunk of the range has not arrived), FV_ECORRUPT. */
FV_API int fv_attachment_read_range(fv_vault *v, uint64_t *size,
                                    const unsigned char id[FV_ID_BYTES],
                                    const char *name, uint64_t offset,
                                    uint64_t length, fv_write_fn fn,
                                    void *payload);

/* Writes attachment `name` to file `path`, created 0600. The file appears
 * under `path` only once every byte has been verified. FV_EEXIST if `path`
 * exists. */
FV_API int fv_attachment_save(fv_vault *v, const unsigned char id[FV_ID_BYTES],
                              const char *name, const char *path,
                              fv_progress_fn progress, void *progress_payload);

/* ---- retention ---------------------------------------------------------- */

enum fv_retention {
    FV_RETENTION_KEEP = 0,              /* keep every record (default) */
    FV_RETENTION_DROP_AFTER_RECEIPT = 1 /* once the server's receipts cover
                                           a record this device wrote and
                                           all its chunks, destroy the local
                                           copy: a seized phone then holds
                                           nothing already delivered */
};

/* Sets or reads the vault's retention policy (stored in the vault). The
 * policy is applied at the end of each successful sync. */
FV_API int fv_vault_set_retention(fv_vault *v, int policy);
FV_API int fv_vault_get_retention(fv_vault *v, int *policy);

/* *delivered = 1 if every envelope of record `id` that this device wrote
 * has a committed server receipt and every chunk of its attachments was
 * acknowledged; 0 otherwise. */
FV_API int fv_record_delivered(fv_vault *v, int *delivered,
                               const unsigned char id[FV_ID_BYTES]);

/* ---- roles -------------------------------------------------------------- */

/* A device's role in its organisation (sync, fieldvault_sync.h). */
enum fv_role { FV_ROLE_FIELD = 1, FV_ROLE_COORDINATOR = 2 };

/* ---- coercion defences ------------------------------------------------- */

/* Failed-unlock wipe. After `failures` wrong passphrases in a row
 * fv_vault_open destroys the vault as fv_vault_panic does; 0 turns it off
 * (the default). Each open counts the try durably before the KDF runs and
 * a successful open resets the count, so killing an open during the KDF
 * still counts it. The limit and count are kept beside the key file, in
 * clear, as they must be read before the passphrase is known
 * (docs/FORMAT.md 3.1, SECURITY.md). The open that makes the count reach
 * the limit returns FV_EPASSPHRASE, the next FV_ENOVAULT. At most 1000000. */
FV_API int fv_vault_set_wipe_after(fv_vault *v, unsigned int failures);
FV_API int fv_vault_get_wipe_after(fv_vault *v, unsigned int *failures);

typedef struct fv_duress_options {
    unsigned int version;   /* FV_DURESS_OPTIONS_VERSION */
    fv_vault *decoy_from;   /* NULL: the decoy holds a few harmless records;
                               else a copy of this open vault's records (text,
                               fields and tags; not attachments) */
} fv_duress_options;

#define FV_DURESS_OPTIONS_VERSION 1
#define FV_DURESS_OPTIONS_INIT {FV_DURESS_OPTIONS_VERSION, NULL}

/* Sets (or replaces) the duress passphrase, which must differ from the
 * vault's. fv_vault_open with it destroys this vault as fv_vault_panic does
 * and returns an ordinary handle on a decoy vault built now, which then
 * stands in the directory under the same file names, opened by the duress
 * passphrase; the unlock runs the same single Argon2 derivation as a normal
 * one. See SECURITY.md for what it does not hide. `opts` may be NULL. */
FV_API int fv_vault_set_duress(fv_vault *v, const char *duress_passphrase,
                               size_t duress_passphrase_len,
                               const fv_duress_options *opts);
/* Removes the duress passphrase (its key slot becomes random bytes). */
FV_API int fv_vault_clear_duress(fv_vault *v);

/* ---- helpers ----------------------------------------------------------- */

/* Memory for secrets (passphrases): locked, guarded, wiped on free. Returns
 * NULL when out of memory. fv_secure_free(NULL) is harmless. Any thread. */
FV_API void *fv_secure_alloc(size_t len);
FV_API void fv_secure_free(void *p);

/* Frees what the library hands out as plain heap memory: fv_org_invite's
 * *invite, fv_vault_get_proxy's *url. Wipe a secret (an invite) with
 * fv_wipe first. Not for handles or records (each has its own release
 * function) nor for fv_secure_alloc memory. NULL is harmless. Any thread. */
FV_API void fv_free(void *p);

/* Overwrites `len` bytes at `p` with zeros in a way the compiler keeps. */
FV_API void fv_wipe(void *p, size_t len);

/* Lowercase hex of an id into `out` (FV_ID_HEX_BYTES). */
FV_API void fv_id_to_hex(char out[FV_ID_HEX_BYTES],
                         const unsigned char id[FV_ID_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* FIELDVAULT_H */
