/*
 * fieldvault_jni.c - the JNI layer of the Java binding (org.fieldvault.Native)
 * over the public C API, fieldvault.h and fieldvault_sync.h, and nothing
 * else: the same file builds for Android with the NDK (bindings/java/README.md).
 *
 * - Strings cross as UTF-8 byte arrays, never as modified UTF-8 Strings;
 *   content is copied into native memory that is wiped before it is freed,
 *   and the Java arrays the layer fills for attachment bytes are zeroed
 *   once the Java side has taken them.
 * - Passphrases cross as char[] (converted to UTF-8 here) or byte[], into
 *   fv_secure_alloc memory, wiped and freed before the call returns.
 * - A failure throws the FieldVaultException subclass of its code, with the
 *   handle's message (or fv_error_last() for a call without a handle). A
 *   Java exception raised by a callback (an InputStream that fails) stops
 *   the operation and is the one that propagates.
 * - Every callback runs in a local reference frame: no reference outlives
 *   the record, note or piece it was made for. A record crosses packed in
 *   three arrays (on_record), a few JNI calls rather than one per string.
 */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fieldvault.h"
#include "fieldvault_sync.h"

#define READ_BYTES (64 * 1024) /* one InputStream.read() at most */

static jclass c_exception, c_bytes, c_input_stream;
static jmethodID m_exception_of, m_read;
static jmethodID m_record, m_note, m_issue, m_progress, m_write;

static jclass global_class(JNIEnv *env, const char *name)
{
    jclass local = (*env)->FindClass(env, name);
    jclass g = local ? (*env)->NewGlobalRef(env, local) : NULL;
    if (local)
        (*env)->DeleteLocalRef(env, local);
    return g;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved)
{
    JNIEnv *env;
    jclass sink;
    (void)reserved;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK)
        return JNI_ERR;
    c_exception = global_class(env, "org/fieldvault/FieldVaultException");
    c_bytes = global_class(env, "[B");
    c_input_stream = global_class(env, "java/io/InputStream");
    sink = (*env)->FindClass(env, "org/fieldvault/Native$Sink");
    if (!c_exception || !c_bytes || !c_input_stream || !sink)
        return JNI_ERR;
    m_exception_of = (*env)->GetStaticMethodID(env, c_exception, "of",
                                               "(ILjava/lang/String;)Lorg/fieldvault/FieldVaultException;");
    m_read = (*env)->GetMethodID(env, c_input_stream, "read", "([BII)I");
    m_record = (*env)->GetMethodID(env, sink, "record", "([B[I[J)Z");
    m_note = (*env)->GetMethodID(env, sink, "note", "([B[B[BJ[B)Z");
    m_issue = (*env)->GetMethodID(env, sink, "issue", "([B[BLjava/lang/String;)Z");
    m_progress = (*env)->GetMethodID(env, sink, "progress", "(JJ)Z");
    m_write = (*env)->GetMethodID(env, sink, "write", "([BI)Z");
    (*env)->DeleteLocalRef(env, sink);
    if (!m_exception_of || !m_read || !m_record || !m_note || !m_issue || !m_progress || !m_write)
        return JNI_ERR;
    return JNI_VERSION_1_6;
}

/* ---- errors ---------------------------------------------------------- */

/* NewStringUTF takes modified UTF-8: a message (which may name a path) keeps
 * its ASCII and its 2- and 3-byte sequences; anything else becomes '?'. */
static void modified_utf8(char *out, size_t cap, const char *in)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    while (*s && o + 4 < cap) {
        if (*s < 0x80) {
            out[o++] = (char)*s++;
        } else if (*s >= 0xC2 && *s < 0xE0 && (s[1] & 0xC0) == 0x80) {
            out[o++] = (char)*s++;
            out[o++] = (char)*s++;
        } else if (*s >= 0xE0 && *s < 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
                   !(*s == 0xE0 && s[1] < 0xA0) && !(*s == 0xED && s[1] >= 0xA0)) {
            out[o++] = (char)*s++;
            out[o++] = (char)*s++;
            out[o++] = (char)*s++;
        } else {
            out[o++] = '?';
            s++;
        }
    }
    out[o] = '\0';
}

static void throw_code(JNIEnv *env, int rc, const char *msg)
{
    char safe[600];
    jstring s;
    jobject e;
    if ((*env)->ExceptionCheck(env))
        return; /* a callback's exception is the one to see */
    modified_utf8(safe, sizeof safe, msg && *msg ? msg : fv_strerror(rc));
    if (!(s = (*env)->NewStringUTF(env, safe)))
        return;
    e = (*env)->CallStaticObjectMethod(env, c_exception, m_exception_of, (jint)rc, s);
    if (e && !(*env)->ExceptionCheck(env))
        (*env)->Throw(env, (jthrowable)e);
}

/* Throws for rc (if it is a failure) and returns it. The handle's message
 * is the failed call's own (docs/API.md, "Result codes and messages"). */
static int check(JNIEnv *env, const fv_vault *v, int rc)
{
    if (rc != FV_OK)
        throw_code(env, rc, fv_vault_errmsg(v));
    return rc;
}

static void throw_inval(JNIEnv *env, const char *why)
{
    throw_code(env, FV_EINVAL, why);
}

/* ---- arrays in and out ----------------------------------------------- */

static void wipe_free(void *p, size_t len)
{
    if (p) {
        fv_wipe(p, len);
        free(p);
    }
}

/* A NUL-terminated native copy of byte[] `a` (NULL stays NULL). With
 * `text`, an embedded NUL is refused. 0, or -1 with an exception thrown. */
static int bytes_in(JNIEnv *env, jbyteArray a, char **out, size_t *len, int text)
{
    jsize n;
    *out = NULL;
    if (len)
        *len = 0;
    if (!a)
        return 0;
    n = (*env)->GetArrayLength(env, a);
    if (!(*out = malloc((size_t)n + 1))) {
        throw_code(env, FV_ENOMEM, "out of memory");
        return -1;
    }
    (*env)->GetByteArrayRegion(env, a, 0, n, (jbyte *)*out);
    (*out)[n] = '\0';
    if (len)
        *len = (size_t)n;
    if (text && memchr(*out, 0, (size_t)n)) {
        wipe_free(*out, (size_t)n);
        *out = NULL;
        throw_inval(env, "text holds a NUL byte");
        return -1;
    }
    return 0;
}

static int id_in(JNIEnv *env, jbyteArray a, unsigned char id[FV_ID_BYTES])
{
    if (!a || (*env)->GetArrayLength(env, a) != FV_ID_BYTES) {
        throw_inval(env, "an id is 32 bytes");
        return -1;
    }
    (*env)->GetByteArrayRegion(env, a, 0, FV_ID_BYTES, (jbyte *)id);
    return 0;
}

static jbyteArray bytes_out(JNIEnv *env, const void *p, size_t len)
{
    jbyteArray a = (*env)->NewByteArray(env, (jsize)len);
    if (a && len)
        (*env)->SetByteArrayRegion(env, a, 0, (jsize)len, (const jbyte *)p);
    return a;
}

static jbyteArray str_out(JNIEnv *env, const char *s)
{
    return bytes_out(env, s ? s : "", s ? strlen(s) : 0);
}

/* Zeroes the first `n` bytes of Java array `a`, also with an exception
 * pending (which is kept). */
static void zero_array(JNIEnv *env, jbyteArray a, size_t n)
{
    static const jbyte zeros[4096];
    jthrowable pending;
    if (!a || !n)
        return;
    pending = (*env)->ExceptionOccurred(env);
    if (pending)
        (*env)->ExceptionClear(env);
    for (size_t off = 0; off < n; off += sizeof zeros) {
        size_t k = n - off < sizeof zeros ? n - off : sizeof zeros;
        (*env)->SetByteArrayRegion(env, a, (jsize)off, (jsize)k, zeros);
    }
    if (pending) {
        (*env)->Throw(env, pending);
        (*env)->DeleteLocalRef(env, pending);
    }
}

/* byte[][] as NUL-terminated native strings. */
typedef struct strv {
    char **s;
    size_t *len;
    size_t n;
} strv;

static void strv_free(strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->s)
            wipe_free(v->s[i], v->len[i]);
    free(v->s);
    free(v->len);
    memset(v, 0, sizeof *v);
}

/* With `nulls`, a null element stays a NULL string. */
static int strv_in(JNIEnv *env, jobjectArray a, strv *v, int nulls)
{
    memset(v, 0, sizeof *v);
    if (!a)
        return 0;
    jsize n = (*env)->GetArrayLength(env, a);
    if (n == 0)
        return 0;
    v->s = calloc((size_t)n, sizeof *v->s);
    v->len = calloc((size_t)n, sizeof *v->len);
    if (!v->s || !v->len) {
        strv_free(v);
        throw_code(env, FV_ENOMEM, "out of memory");
        return -1;
    }
    v->n = (size_t)n;
    for (jsize i = 0; i < n; i++) {
        jbyteArray e = (*env)->GetObjectArrayElement(env, a, i);
        int rc = e ? bytes_in(env, e, &v->s[i], &v->len[i], 1) : nulls ? 0 : -1;
        if (!e && !nulls)
            throw_inval(env, "a null string in a list");
        if (e)
            (*env)->DeleteLocalRef(env, e);
        if (rc) {
            strv_free(v);
            return -1;
        }
    }
    return 0;
}

/* A passphrase from char[] (as UTF-8) or byte[] into secure memory. */
static int pass_in(JNIEnv *env, jcharArray pc, jbyteArray pb, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (pb) {
        jsize n = (*env)->GetArrayLength(env, pb);
        if (!(*out = fv_secure_alloc((size_t)n + 1)))
            goto nomem;
        (*env)->GetByteArrayRegion(env, pb, 0, n, (jbyte *)*out);
        *len = (size_t)n;
        return 0;
    }
    if (!pc) {
        throw_inval(env, "no passphrase");
        return -1;
    }
    jsize n = (*env)->GetArrayLength(env, pc);
    jchar *u = fv_secure_alloc(((size_t)n + 1) * sizeof(jchar));
    unsigned char *p = fv_secure_alloc((size_t)n * 3 + 1);
    size_t o = 0;
    if (!u || !p) {
        fv_secure_free(u);
        fv_secure_free(p);
        goto nomem;
    }
    (*env)->GetCharArrayRegion(env, pc, 0, n, u);
    for (jsize i = 0; i < n; i++) {
        uint32_t c = u[i];
        if (c >= 0xD800 && c < 0xDC00 && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] < 0xE000) {
            c = 0x10000 + ((c - 0xD800) << 10) + (u[i + 1] - 0xDC00u);
            i++;
        } else if (c >= 0xD800 && c < 0xE000) {
            c = 0xFFFD; /* as String.getBytes(UTF_8) would */
        }
        if (c < 0x80) {
            p[o++] = (unsigned char)c;
        } else if (c < 0x800) {
            p[o++] = (unsigned char)(0xC0 | c >> 6);
            p[o++] = (unsigned char)(0x80 | (c & 63));
        } else if (c < 0x10000) {
            p[o++] = (unsigned char)(0xE0 | c >> 12);
            p[o++] = (unsigned char)(0x80 | ((c >> 6) & 63));
            p[o++] = (unsigned char)(0x80 | (c & 63));
        } else {
            p[o++] = (unsigned char)(0xF0 | c >> 18);
            p[o++] = (unsigned char)(0x80 | ((c >> 12) & 63));
            p[o++] = (unsigned char)(0x80 | ((c >> 6) & 63));
            p[o++] = (unsigned char)(0x80 | (c & 63));
        }
    }
    fv_secure_free(u); /* wiped on free */
    *out = (char *)p;
    *len = o;
    return 0;
nomem:
    throw_code(env, FV_ENOMEM, "out of memory");
    return -1;
}

/* ---- callbacks --------------------------------------------------------- */

typedef struct jcb {
    JNIEnv *env;
    jobject sink;
    jbyteArray buf; /* attachment bytes handed to Sink.write, reused */
    size_t cap, used;
} jcb;

static int on_progress(uint64_t done, uint64_t total, void *payload)
{
    jcb *c = payload;
    JNIEnv *env = c->env;
    if ((*env)->ExceptionCheck(env))
        return 1;
    jboolean go = (*env)->CallBooleanMethod(env, c->sink, m_progress, (jlong)done, (jlong)total);
    return (*env)->ExceptionCheck(env) || !go;
}

/* A record crosses in three arrays, so that it costs a handful of JNI calls
 * (Record's constructor slices them, then wipes `bytes`):
 *   ints:  nfields, ntags, nattachments, nheads, state, nnotes, then the
 *          lengths: title, narrative, each field's key and value, each
 *          tag, each attachment's name
 *   longs: created, modified, then each attachment's size, chunk bytes,
 *          chunks, chunks present
 *   bytes: id, revision, author, origin (32 each), then the strings in the
 *          order of their lengths. */
static int on_record(const fv_record *r, void *payload)
{
    jcb *c = payload;
    JNIEnv *env = c->env;
    size_t ni = 8 + 2 * r->nfields + r->ntags + r->nattachments, nl = 2 + 4 * r->nattachments;
    size_t total = 4 * FV_ID_BYTES, off, k = 0;
    size_t narrative_len = r->narrative ? r->narrative_len : 0;
    jint *ints = NULL;
    jlong *longs = NULL;
    unsigned char *buf = NULL;
    jboolean go = JNI_FALSE;
    int failed = 1;

    if ((*env)->ExceptionCheck(env))
        return 1;
    total += strlen(r->title) + narrative_len;
    for (size_t i = 0; i < r->nfields; i++)
        total += strlen(r->fields[i].key) + strlen(r->fields[i].value);
    for (size_t i = 0; i < r->ntags; i++)
        total += strlen(r->tags[i]);
    for (size_t i = 0; i < r->nattachments; i++)
        total += strlen(r->attachments[i].name);
    if (total > INT32_MAX || !(ints = malloc(ni * sizeof *ints)) ||
        !(longs = malloc(nl * sizeof *longs)) || !(buf = malloc(total))) {
        throw_code(env, FV_ENOMEM, "out of memory");
        goto done;
    }
    ints[k++] = (jint)r->nfields;
    ints[k++] = (jint)r->ntags;
    ints[k++] = (jint)r->nattachments;
    ints[k++] = (jint)r->nheads;
    ints[k++] = (jint)r->state;
    ints[k++] = (jint)r->nnotes;
    memcpy(buf, r->id, FV_ID_BYTES);
    memcpy(buf + FV_ID_BYTES, r->revision, FV_ID_BYTES);
    memcpy(buf + 2 * FV_ID_BYTES, r->author, FV_ID_BYTES);
    memcpy(buf + 3 * FV_ID_BYTES, r->origin, FV_ID_BYTES);
    off = 4 * FV_ID_BYTES;
#define PUT(p, n)                                                                                  \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (n_)                                                                                    \
            memcpy(buf + off, (p), n_);                                                            \
        off += n_;                                                                                 \
        ints[k++] = (jint)n_;                                                                      \
    } while (0)
    PUT(r->title, strlen(r->title));
    PUT(r->narrative, narrative_len);
    for (size_t i = 0; i < r->nfields; i++) {
        PUT(r->fields[i].key, strlen(r->fields[i].key));
        PUT(r->fields[i].value, strlen(r->fields[i].value));
    }
    for (size_t i = 0; i < r->ntags; i++)
        PUT(r->tags[i], strlen(r->tags[i]));
    for (size_t i = 0; i < r->nattachments; i++)
        PUT(r->attachments[i].name, strlen(r->attachments[i].name));
#undef PUT
    longs[0] = (jlong)r->created;
    longs[1] = (jlong)r->modified;
    for (size_t i = 0; i < r->nattachments; i++) {
        const fv_attachment_info *a = &r->attachments[i];
        longs[2 + 4 * i] = (jlong)a->size;
        longs[3 + 4 * i] = (jlong)a->chunk_bytes;
        longs[4 + 4 * i] = (jlong)a->chunks;
        longs[5 + 4 * i] = (jlong)a->chunks_present;
    }
    if ((*env)->PushLocalFrame(env, 4) != 0)
        goto done;
    jbyteArray jb = (*env)->NewByteArray(env, (jsize)total);
    jintArray ji = (*env)->NewIntArray(env, (jsize)k);
    jlongArray jl = (*env)->NewLongArray(env, (jsize)nl);
    if (jb && ji && jl) {
        (*env)->SetByteArrayRegion(env, jb, 0, (jsize)total, (const jbyte *)buf);
        (*env)->SetIntArrayRegion(env, ji, 0, (jsize)k, ints);
        (*env)->SetLongArrayRegion(env, jl, 0, (jsize)nl, longs);
        go = (*env)->CallBooleanMethod(env, c->sink, m_record, jb, ji, jl);
        failed = 0;
    }
    (*env)->PopLocalFrame(env, NULL);
done:
    if (buf)
        wipe_free(buf, total);
    free(ints);
    free(longs);
    return failed || (*env)->ExceptionCheck(env) || !go;
}

static int on_note(const fv_note *n, void *payload)
{
    jcb *c = payload;
    JNIEnv *env = c->env;
    jboolean go = JNI_FALSE;
    if ((*env)->ExceptionCheck(env) || (*env)->PushLocalFrame(env, 8) != 0)
        return 1;
    jbyteArray id = bytes_out(env, n->id, FV_ID_BYTES), rec = bytes_out(env, n->record, FV_ID_BYTES),
               au = bytes_out(env, n->author, FV_ID_BYTES), text = str_out(env, n->text);
    if (id && rec && au && text)
        go = (*env)->CallBooleanMethod(env, c->sink, m_note, id, rec, au, (jlong)n->time, text);
    (*env)->PopLocalFrame(env, NULL);
    return (*env)->ExceptionCheck(env) || !go;
}

static int on_issue(const fv_verify_issue *is, void *payload)
{
    jcb *c = payload;
    JNIEnv *env = c->env;
    char safe[600];
    jboolean go = JNI_FALSE;
    if ((*env)->ExceptionCheck(env) || (*env)->PushLocalFrame(env, 8) != 0)
        return 1;
    modified_utf8(safe, sizeof safe, is->problem ? is->problem : "");
    jbyteArray rec = is->record ? bytes_out(env, is->record, FV_ID_BYTES) : NULL;
    jbyteArray env_id = is->envelope ? bytes_out(env, is->envelope, FV_ID_BYTES) : NULL;
    jstring problem = (*env)->NewStringUTF(env, safe);
    if (problem && !(*env)->ExceptionCheck(env))
        go = (*env)->CallBooleanMethod(env, c->sink, m_issue, rec, env_id, problem);
    (*env)->PopLocalFrame(env, NULL);
    return (*env)->ExceptionCheck(env) || !go;
}

/* Attachment bytes to Sink.write, through one reused Java array. */
static int on_write(const unsigned char *buf, size_t len, void *payload)
{
    jcb *c = payload;
    JNIEnv *env = c->env;
    if ((*env)->ExceptionCheck(env))
        return 1;
    if (len > c->cap) {
        zero_array(env, c->buf, c->used);
        if (c->buf)
            (*env)->DeleteLocalRef(env, c->buf);
        c->used = 0;
        c->cap = len > READ_BYTES ? len : READ_BYTES;
        if (!(c->buf = (*env)->NewByteArray(env, (jsize)c->cap)))
            return 1;
    }
    (*env)->SetByteArrayRegion(env, c->buf, 0, (jsize)len, (const jbyte *)buf);
    if (len > c->used)
        c->used = len;
    jboolean go = (*env)->CallBooleanMethod(env, c->sink, m_write, c->buf, (jint)len);
    return (*env)->ExceptionCheck(env) || !go;
}

static void jcb_done(jcb *c)
{
    zero_array(c->env, c->buf, c->used);
    if (c->buf)
        (*c->env)->DeleteLocalRef(c->env, c->buf);
    c->buf = NULL;
}

/* An attachment read from a java.io.InputStream. */
typedef struct jreader {
    JNIEnv *env;
    jobject stream;
    jbyteArray buf;
    size_t used;
} jreader;

static long long on_read(unsigned char *buf, size_t len, void *payload)
{
    jreader *r = payload;
    JNIEnv *env = r->env;
    jint want = len < READ_BYTES ? (jint)len : READ_BYTES, n;
    if ((*env)->ExceptionCheck(env))
        return -1;
    if (!r->buf && !(r->buf = (*env)->NewByteArray(env, READ_BYTES)))
        return -1;
    do /* read(b, off, len > 0) blocks for at least one byte, or says -1 */
        n = (*env)->CallIntMethod(env, r->stream, m_read, r->buf, 0, want);
    while (n == 0 && !(*env)->ExceptionCheck(env));
    if ((*env)->ExceptionCheck(env) || n > want)
        return -1;
    if (n < 0)
        return 0;
    (*env)->GetByteArrayRegion(env, r->buf, 0, n, (jbyte *)buf);
    if ((size_t)n > r->used)
        r->used = (size_t)n;
    return n;
}

/* ---- the vault ------------------------------------------------------- */

#define VAULT(h) ((fv_vault *)(intptr_t)(h))

JNIEXPORT jstring JNICALL Java_org_fieldvault_Native_version(JNIEnv *env, jclass cls)
{
    (void)cls;
    return (*env)->NewStringUTF(env, fv_version());
}

JNIEXPORT jstring JNICALL Java_org_fieldvault_Native_errorLast(JNIEnv *env, jclass cls)
{
    char safe[600];
    (void)cls;
    modified_utf8(safe, sizeof safe, fv_error_last());
    return (*env)->NewStringUTF(env, safe);
}

static jlong open_or_create(JNIEnv *env, jbyteArray jdir, jcharArray pc, jbyteArray pb,
                            int create, jint profile)
{
    char *dir = NULL, *pass = NULL;
    size_t passlen = 0;
    fv_vault *v = NULL;
    int rc;

    if (bytes_in(env, jdir, &dir, NULL, 1) || pass_in(env, pc, pb, &pass, &passlen))
        goto done;
    if (!dir) {
        throw_inval(env, "no vault directory");
        goto done;
    }
    if (create) {
        fv_create_options o = FV_CREATE_OPTIONS_INIT;
        o.kdf_profile = profile;
        rc = fv_vault_create(&v, dir, pass, passlen, &o);
    } else {
        rc = fv_vault_open(&v, dir, pass, passlen);
    }
    if (rc != FV_OK)
        throw_code(env, rc, fv_error_last()); /* no handle kept the message */
done:
    fv_secure_free(pass);
    free(dir);
    return (jlong)(intptr_t)v;
}

JNIEXPORT jlong JNICALL Java_org_fieldvault_Native_open(JNIEnv *env, jclass cls, jbyteArray dir,
                                                        jcharArray pc, jbyteArray pb)
{
    (void)cls;
    return open_or_create(env, dir, pc, pb, 0, 0);
}

JNIEXPORT jlong JNICALL Java_org_fieldvault_Native_create(JNIEnv *env, jclass cls, jbyteArray dir,
                                                          jcharArray pc, jbyteArray pb,
                                                          jint profile)
{
    (void)cls;
    return open_or_create(env, dir, pc, pb, 1, profile);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_close(JNIEnv *env, jclass cls, jlong v)
{
    (void)env;
    (void)cls;
    fv_vault_close(VAULT(v));
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_panic(JNIEnv *env, jclass cls, jbyteArray jdir)
{
    char *dir = NULL;
    int rc;
    (void)cls;
    if (bytes_in(env, jdir, &dir, NULL, 1))
        return;
    if ((rc = fv_vault_panic(dir ? dir : "")) != FV_OK)
        throw_code(env, rc, fv_error_last());
    free(dir);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_passwd(JNIEnv *env, jclass cls, jlong h,
                                                         jcharArray pc, jbyteArray pb)
{
    char *pass;
    size_t len;
    (void)cls;
    if (pass_in(env, pc, pb, &pass, &len))
        return;
    check(env, VAULT(h), fv_vault_passwd(VAULT(h), pass, len));
    fv_secure_free(pass);
}

JNIEXPORT jbyteArray JNICALL Java_org_fieldvault_Native_deviceId(JNIEnv *env, jclass cls, jlong h)
{
    unsigned char id[FV_ID_BYTES];
    (void)cls;
    fv_vault_get_device_id(VAULT(h), id);
    return bytes_out(env, id, FV_ID_BYTES);
}

JNIEXPORT jbyteArray JNICALL Java_org_fieldvault_Native_write(
    JNIEnv *env, jclass cls, jlong h, jint mode, jbyteArray jid, jbyteArray jtitle,
    jbyteArray jnarrative, jobjectArray jfk, jobjectArray jfv, jobjectArray jtags,
    jobjectArray jrmtags, jobjectArray jan, jobjectArray jsources, jobjectArray jrmatt,
    jobject progress)
{
    fv_vault *v = VAULT(h);
    fv_record_input in = FV_RECORD_INPUT_INIT;
    unsigned char id[FV_ID_BYTES], out[FV_ID_BYTES];
    char *title = NULL, *narrative = NULL;
    size_t title_len = 0, narrative_len = 0, na = 0;
    strv fk = {0}, fvals = {0}, tags = {0}, rmtags = {0}, an = {0}, rmatt = {0};
    fv_field *fields = NULL;
    fv_attachment_source *att = NULL;
    jreader *readers = NULL;
    char **paths = NULL;
    size_t *path_lens = NULL;
    jcb pcb = {env, progress, NULL, 0, 0};
    jbyteArray result = NULL;
    int rc;
    (void)cls;

    if (mode != 0 && id_in(env, jid, id))
        return NULL;
    if (bytes_in(env, jtitle, &title, &title_len, 1) ||
        bytes_in(env, jnarrative, &narrative, &narrative_len, 0) || strv_in(env, jfk, &fk, 0) ||
        strv_in(env, jfv, &fvals, 0) || strv_in(env, jtags, &tags, 0) || strv_in(env, jrmtags, &rmtags, 0) ||
        strv_in(env, jan, &an, 1) || strv_in(env, jrmatt, &rmatt, 0))
        goto done;
    if (fk.n != fvals.n) {
        throw_inval(env, "as many field values as keys");
        goto done;
    }
    na = jsources ? (size_t)(*env)->GetArrayLength(env, jsources) : 0;
    if (na != an.n) {
        throw_inval(env, "one name per attachment source");
        goto done;
    }
    if ((fk.n && !(fields = calloc(fk.n, sizeof *fields))) ||
        (na && (!(att = calloc(na, sizeof *att)) || !(readers = calloc(na, sizeof *readers)) ||
                !(paths = calloc(na, sizeof *paths)) ||
                !(path_lens = calloc(na, sizeof *path_lens))))) {
        throw_code(env, FV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < fk.n; i++) {
        fields[i].key = fk.s[i];
        fields[i].value = fvals.s[i];
    }
    /* Each stream and its buffer stay referenced for the call. */
    if (na && (*env)->EnsureLocalCapacity(env, (jint)(2 * na + 16)) != 0)
        goto done;
    for (size_t i = 0; i < na; i++) {
        jobject src = (*env)->GetObjectArrayElement(env, jsources, (jsize)i);
        if (!src) {
            throw_inval(env, "a null attachment source");
            goto done;
        }
        att[i].name = i < an.n ? an.s[i] : NULL;
        if ((*env)->IsInstanceOf(env, src, c_bytes)) {
            int r = bytes_in(env, (jbyteArray)src, &paths[i], &path_lens[i], 1);
            (*env)->DeleteLocalRef(env, src);
            if (r)
                goto done;
            att[i].path = paths[i];
        } else if ((*env)->IsInstanceOf(env, src, c_input_stream)) {
            readers[i].env = env;
            readers[i].stream = src; /* a local ref, freed at the end */
            att[i].read = on_read;
            att[i].read_payload = &readers[i];
        } else {
            (*env)->DeleteLocalRef(env, src);
            throw_inval(env, "an attachment source is an InputStream or a path");
            goto done;
        }
    }
    in.title = title;
    in.narrative = narrative;
    in.narrative_len = narrative_len;
    in.fields = fields;
    in.nfields = fk.n;
    in.tags = (const char *const *)tags.s;
    in.ntags = tags.n;
    in.remove_tags = (const char *const *)rmtags.s;
    in.nremove_tags = rmtags.n;
    in.attachments = att;
    in.nattachments = na;
    in.remove_attachments = (const char *const *)rmatt.s;
    in.nremove_attachments = rmatt.n;
    if (progress) {
        in.progress = on_progress;
        in.progress_payload = &pcb;
    }
    if (mode == 0)
        rc = fv_record_add(v, out, &in);
    else if (mode == 1)
        rc = fv_record_edit(v, out, id, &in);
    else
        rc = fv_record_merge(v, out, id, &in);
    if ((*env)->ExceptionCheck(env))
        goto done;
    if (check(env, v, rc) == FV_OK)
        result = bytes_out(env, out, FV_ID_BYTES);
done:
    for (size_t i = 0; i < na; i++) {
        if (readers && readers[i].buf) {
            zero_array(env, readers[i].buf, readers[i].used);
            (*env)->DeleteLocalRef(env, readers[i].buf);
        }
        if (readers && readers[i].stream)
            (*env)->DeleteLocalRef(env, readers[i].stream);
        if (paths)
            free(paths[i]);
    }
    free(readers);
    free(paths);
    free(path_lens);
    free(att);
    free(fields);
    wipe_free(title, title_len);
    wipe_free(narrative, narrative_len);
    strv_free(&fk);
    strv_free(&fvals);
    strv_free(&tags);
    strv_free(&rmtags);
    strv_free(&an);
    strv_free(&rmatt);
    return result;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_delete(JNIEnv *env, jclass cls, jlong h,
                                                         jbyteArray jid)
{
    unsigned char id[FV_ID_BYTES];
    (void)cls;
    if (id_in(env, jid, id))
        return;
    check(env, VAULT(h), fv_record_delete(VAULT(h), id));
}

JNIEXPORT jbyteArray JNICALL Java_org_fieldvault_Native_resolve(JNIEnv *env, jclass cls, jlong h,
                                                                jbyteArray jhex)
{
    unsigned char id[FV_ID_BYTES];
    char *hex = NULL;
    jbyteArray out = NULL;
    (void)cls;
    if (bytes_in(env, jhex, &hex, NULL, 1))
        return NULL;
    if (check(env, VAULT(h), fv_record_resolve(VAULT(h), id, hex ? hex : "")) == FV_OK)
        out = bytes_out(env, id, FV_ID_BYTES);
    free(hex);
    return out;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_get(JNIEnv *env, jclass cls, jlong h,
                                                      jbyteArray jid, jobject sink)
{
    unsigned char id[FV_ID_BYTES];
    fv_record *r = NULL;
    jcb c = {env, sink, NULL, 0, 0};
    (void)cls;
    if (id_in(env, jid, id))
        return;
    if (check(env, VAULT(h), fv_record_get(VAULT(h), &r, id)) == FV_OK)
        on_record(r, &c);
    fv_record_free(r);
}

/* An fv_filter from the Query's parts; *ids is the caller's to free. */
static int filter_in(JNIEnv *env, fv_filter *f, jint state, jbyteArray jtag, jbyteArray jorigin,
                     jlong since, jlong until, jbyteArray jtext, jobjectArray jids, char **tag,
                     char **text, size_t *text_len, unsigned char *origin,
                     unsigned char (**ids)[FV_ID_BYTES])
{
    fv_filter init = FV_FILTER_INIT;
    *f = init;
    *tag = *text = NULL;
    *ids = NULL;
    f->state = state;
    f->since = since;
    f->until = until;
    if (bytes_in(env, jtag, tag, NULL, 1) || bytes_in(env, jtext, text, text_len, 1))
        return -1;
    f->tag = *tag;
    f->text = *text;
    if (jorigin) {
        if (id_in(env, jorigin, origin))
            return -1;
        f->origin = origin;
    }
    jsize n = jids ? (*env)->GetArrayLength(env, jids) : 0;
    if (n > 0) {
        if (!(*ids = calloc((size_t)n, FV_ID_BYTES))) {
            throw_code(env, FV_ENOMEM, "out of memory");
            return -1;
        }
        for (jsize i = 0; i < n; i++) {
            jbyteArray e = (*env)->GetObjectArrayElement(env, jids, i);
            int r = id_in(env, e, (*ids)[i]);
            if (e)
                (*env)->DeleteLocalRef(env, e);
            if (r)
                return -1;
        }
        f->ids = (const unsigned char(*)[FV_ID_BYTES]) * ids;
        f->nids = (size_t)n;
    }
    return 0;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_query(JNIEnv *env, jclass cls, jlong h,
                                                        jint state, jbyteArray jtag,
                                                        jbyteArray jorigin, jlong since,
                                                        jlong until, jbyteArray jtext,
                                                        jobjectArray jids, jobject sink)
{
    fv_filter f;
    char *tag, *text;
    size_t text_len = 0;
    unsigned char origin[FV_ID_BYTES], (*ids)[FV_ID_BYTES];
    jcb c = {env, sink, NULL, 0, 0};
    (void)cls;
    if (filter_in(env, &f, state, jtag, jorigin, since, until, jtext, jids, &tag, &text,
                  &text_len, origin, &ids) == 0) {
        int rc = fv_vault_query(VAULT(h), &f, on_record, &c);
        if (!(*env)->ExceptionCheck(env))
            check(env, VAULT(h), rc);
    }
    free(tag);
    wipe_free(text, text_len);
    free(ids);
}

JNIEXPORT jbyteArray JNICALL Java_org_fieldvault_Native_noteAdd(JNIEnv *env, jclass cls, jlong h,
                                                                jbyteArray jid, jbyteArray jtext)
{
    unsigned char id[FV_ID_BYTES], out[FV_ID_BYTES];
    char *text = NULL;
    size_t len = 0;
    jbyteArray r = NULL;
    (void)cls;
    if (id_in(env, jid, id) || bytes_in(env, jtext, &text, &len, 1))
        return NULL;
    if (check(env, VAULT(h), fv_note_add(VAULT(h), out, id, text ? text : "")) == FV_OK)
        r = bytes_out(env, out, FV_ID_BYTES);
    wipe_free(text, len);
    return r;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_notes(JNIEnv *env, jclass cls, jlong h,
                                                        jbyteArray jid, jobject sink)
{
    unsigned char id[FV_ID_BYTES];
    jcb c = {env, sink, NULL, 0, 0};
    (void)cls;
    if (jid && id_in(env, jid, id))
        return;
    int rc = fv_note_list(VAULT(h), jid ? id : NULL, on_note, &c);
    if (!(*env)->ExceptionCheck(env))
        check(env, VAULT(h), rc);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_setState(JNIEnv *env, jclass cls, jlong h,
                                                           jbyteArray jid, jint state)
{
    unsigned char id[FV_ID_BYTES];
    (void)cls;
    if (id_in(env, jid, id))
        return;
    check(env, VAULT(h), fv_record_set_state(VAULT(h), id, state));
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_retract(JNIEnv *env, jclass cls, jlong h,
                                                          jbyteArray jid)
{
    unsigned char id[FV_ID_BYTES];
    (void)cls;
    if (id_in(env, jid, id))
        return;
    check(env, VAULT(h), fv_record_retract(VAULT(h), id));
}

JNIEXPORT jlong JNICALL Java_org_fieldvault_Native_export(JNIEnv *env, jclass cls, jlong h,
                                                          jbyteArray jpath,
                                                          jint state, jbyteArray jtag,
                                                          jbyteArray jorigin, jlong since,
                                                          jlong until, jbyteArray jtext,
                                                          jobjectArray jids)
{
    fv_filter f;
    fv_export_options o = FV_EXPORT_OPTIONS_INIT;
    char *tag = NULL, *text = NULL, *path = NULL;
    size_t text_len = 0;
    unsigned char origin[FV_ID_BYTES], (*ids)[FV_ID_BYTES] = NULL;
    uint64_t count = 0;
    (void)cls;
    if (filter_in(env, &f, state, jtag, jorigin, since, until, jtext, jids, &tag, &text,
                  &text_len, origin, &ids) == 0 &&
        bytes_in(env, jpath, &path, NULL, 1) == 0) {
        if (!path) {
            throw_inval(env, "no export path");
        } else {
            o.path = path;
            o.filter = &f;
            check(env, VAULT(h), fv_export(VAULT(h), &count, &o));
        }
    }
    free(path);
    free(tag);
    wipe_free(text, text_len);
    free(ids);
    return (jlong)count;
}

JNIEXPORT jlongArray JNICALL Java_org_fieldvault_Native_verify(JNIEnv *env, jclass cls, jlong h,
                                                               jobject sink)
{
    fv_verify_report rep = FV_VERIFY_REPORT_INIT;
    jcb c = {env, sink, NULL, 0, 0};
    jlongArray out;
    (void)cls;
    int rc = fv_vault_verify(VAULT(h), &rep, on_issue, &c);
    if ((*env)->ExceptionCheck(env))
        return NULL;
    if (rc != FV_ECORRUPT && check(env, VAULT(h), rc) != FV_OK)
        return NULL; /* a failed check is a report, not an exception */
    jlong n[4] = {(jlong)rep.envelopes, (jlong)rep.chunks, (jlong)rep.receipts,
                  (jlong)rep.failures};
    if ((out = (*env)->NewLongArray(env, 4)))
        (*env)->SetLongArrayRegion(env, out, 0, 4, n);
    return out;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_attachmentRead(JNIEnv *env, jclass cls,
                                                                 jlong h, jbyteArray jid,
                                                                 jbyteArray jname, jobject sink)
{
    unsigned char id[FV_ID_BYTES];
    char *name = NULL;
    size_t name_len = 0;
    jcb c = {env, sink, NULL, 0, 0};
    (void)cls;
    if (id_in(env, jid, id) || bytes_in(env, jname, &name, &name_len, 1))
        return;
    int rc = fv_attachment_read(VAULT(h), id, name ? name : "", on_write, &c, NULL, NULL);
    jcb_done(&c);
    if (!(*env)->ExceptionCheck(env))
        check(env, VAULT(h), rc);
    wipe_free(name, name_len);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_attachmentSave(JNIEnv *env, jclass cls,
                                                                 jlong h, jbyteArray jid,
                                                                 jbyteArray jname, jbyteArray jpath)
{
    unsigned char id[FV_ID_BYTES];
    char *name = NULL, *path = NULL;
    size_t name_len = 0;
    (void)cls;
    if (id_in(env, jid, id) || bytes_in(env, jname, &name, &name_len, 1) ||
        bytes_in(env, jpath, &path, NULL, 1))
        goto done;
    check(env, VAULT(h),
          fv_attachment_save(VAULT(h), id, name ? name : "", path ? path : "", NULL, NULL));
done:
    wipe_free(name, name_len);
    free(path);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_setWipeAfter(JNIEnv *env, jclass cls, jlong h,
                                                               jint n)
{
    (void)cls;
    if (n < 0) {
        throw_inval(env, "wipe-after: a count of failures, 0 for off");
        return;
    }
    check(env, VAULT(h), fv_vault_set_wipe_after(VAULT(h), (unsigned)n));
}

JNIEXPORT jint JNICALL Java_org_fieldvault_Native_getWipeAfter(JNIEnv *env, jclass cls, jlong h)
{
    unsigned n = 0;
    (void)cls;
    check(env, VAULT(h), fv_vault_get_wipe_after(VAULT(h), &n));
    return (jint)n;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_setDuress(JNIEnv *env, jclass cls, jlong h,
                                                            jcharArray pc, jbyteArray pb,
                                                            jlong decoy)
{
    fv_duress_options o = FV_DURESS_OPTIONS_INIT;
    char *pass;
    size_t len;
    (void)cls;
    if (pass_in(env, pc, pb, &pass, &len))
        return;
    o.decoy_from = VAULT(decoy);
    check(env, VAULT(h), fv_vault_set_duress(VAULT(h), pass, len, &o));
    fv_secure_free(pass);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_clearDuress(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    check(env, VAULT(h), fv_vault_clear_duress(VAULT(h)));
}

/* ---- sync ------------------------------------------------------------ */

/* A session and what its progress callback needs; the Java handle. The
 * sink is a global reference: the session outlives the call that made it. */
typedef struct jsync {
    fv_sync_session *s;
    jobject sink;
    jcb cb; /* env set by each run, on the running thread */
} jsync;

static int options_in(JNIEnv *env, fv_sync_options *o, jbyteArray jserver, jint timeout,
                      jbyteArray jproxy, char **server, char **proxy, size_t *proxy_len)
{
    fv_sync_options init = FV_SYNC_OPTIONS_INIT;
    *o = init;
    *server = *proxy = NULL;
    if (bytes_in(env, jserver, server, NULL, 1) || bytes_in(env, jproxy, proxy, proxy_len, 1))
        return -1;
    o->server = *server;
    o->proxy = *proxy;
    o->timeout_ms = timeout;
    return 0;
}

JNIEXPORT jint JNICALL Java_org_fieldvault_Native_enroll(JNIEnv *env, jclass cls, jlong h,
                                                         jbyteArray jinvite, jbyteArray jserver,
                                                         jint timeout, jbyteArray jproxy)
{
    fv_sync_options o;
    char *invite = NULL, *server, *proxy;
    size_t invite_len = 0, proxy_len = 0;
    int role = 0;
    (void)cls;
    if (options_in(env, &o, jserver, timeout, jproxy, &server, &proxy, &proxy_len) == 0 &&
        bytes_in(env, jinvite, &invite, &invite_len, 1) == 0) {
        check(env, VAULT(h), fv_enroll(VAULT(h), &role, invite ? invite : "", &o));
    }
    wipe_free(invite, invite_len); /* single-use, but a secret until used */
    free(server);
    wipe_free(proxy, proxy_len); /* may hold USER:PASS */
    return role;
}

JNIEXPORT jlong JNICALL Java_org_fieldvault_Native_syncNew(JNIEnv *env, jclass cls, jlong h,
                                                           jbyteArray jserver, jint timeout,
                                                           jbyteArray jproxy, jobject sink)
{
    fv_sync_options o;
    char *server, *proxy;
    size_t proxy_len = 0;
    jsync *js = NULL;
    (void)cls;
    if (options_in(env, &o, jserver, timeout, jproxy, &server, &proxy, &proxy_len))
        goto done;
    if (!(js = calloc(1, sizeof *js))) {
        throw_code(env, FV_ENOMEM, "out of memory");
        goto done;
    }
    if (sink) {
        if (!(js->sink = (*env)->NewGlobalRef(env, sink))) {
            free(js);
            js = NULL;
            throw_code(env, FV_ENOMEM, "out of memory");
            goto done;
        }
        js->cb.sink = js->sink;
        o.progress = on_progress;
        o.progress_payload = &js->cb;
    }
    if (check(env, VAULT(h), fv_sync_session_new(&js->s, VAULT(h), &o)) != FV_OK) {
        if (js->sink)
            (*env)->DeleteGlobalRef(env, js->sink);
        free(js);
        js = NULL;
    }
done:
    free(server);
    wipe_free(proxy, proxy_len);
    return (jlong)(intptr_t)js;
}

JNIEXPORT jlongArray JNICALL Java_org_fieldvault_Native_syncRun(JNIEnv *env, jclass cls, jlong s,
                                                                jlong h)
{
    jsync *js = (jsync *)(intptr_t)s;
    fv_sync_result r = FV_SYNC_RESULT_INIT;
    jlongArray out = NULL;
    (void)cls;
    js->cb.env = env;
    int rc = fv_sync_session_run(js->s, &r);
    js->cb.env = NULL;
    if ((*env)->ExceptionCheck(env) || check(env, VAULT(h), rc) != FV_OK)
        return NULL;
    jlong n[16] = {(jlong)r.pushed, (jlong)r.pulled, (jlong)r.added, (jlong)r.conflicts,
                   (jlong)r.role, (jlong)r.bytes_sent, (jlong)r.bytes_received,
                   (jlong)r.roundtrips, (jlong)r.chunks_sent, (jlong)r.chunks_received,
                   (jlong)r.chunks_unavailable, (jlong)r.chunks_rejected, (jlong)r.dropped,
                   (jlong)r.refused, (jlong)r.rejected, (jlong)r.rollback};
    if ((out = (*env)->NewLongArray(env, 16)))
        (*env)->SetLongArrayRegion(env, out, 0, 16, n);
    return out;
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_syncCancel(JNIEnv *env, jclass cls, jlong s)
{
    (void)env;
    (void)cls;
    fv_sync_session_cancel(((jsync *)(intptr_t)s)->s);
}

JNIEXPORT void JNICALL Java_org_fieldvault_Native_syncFree(JNIEnv *env, jclass cls, jlong s)
{
    jsync *js = (jsync *)(intptr_t)s;
    (void)cls;
    if (!js)
        return;
    fv_sync_session_free(js->s);
    if (js->sink)
        (*env)->DeleteGlobalRef(env, js->sink);
    free(js);
}

static jlongArray stats_out(JNIEnv *env, const fv_bundle_stats *st)
{
    jlong n[11] = {(jlong)st->envelopes, (jlong)st->added, (jlong)st->skipped,
                   (jlong)st->refused, (jlong)st->chunks, (jlong)st->chunk_bytes,
                   (jlong)st->chunks_added, (jlong)st->chunks_refused,
                   (jlong)st->chunks_unlisted, (jlong)st->parts, (jlong)st->truncated};
    jlongArray out = (*env)->NewLongArray(env, 11);
    if (out)
        (*env)->SetLongArrayRegion(env, out, 0, 11, n);
    return out;
}

JNIEXPORT jlongArray JNICALL Java_org_fieldvault_Native_bundleExport(JNIEnv *env, jclass cls,
                                                                     jlong h, jbyteArray jpath,
                                                                     jboolean no_att,
                                                                     jlong max_size)
{
    fv_bundle_options o = FV_BUNDLE_OPTIONS_INIT;
    fv_bundle_stats st = FV_BUNDLE_STATS_INIT;
    char *path = NULL;
    jlongArray out = NULL;
    (void)cls;
    if (bytes_in(env, jpath, &path, NULL, 1))
        return NULL;
    if (max_size < 0) {
        throw_inval(env, "a bundle's largest part is a size in bytes, 0 for one file");
        free(path);
        return NULL;
    }
    o.no_attachments = no_att ? 1 : 0;
    o.max_size = (uint64_t)max_size;
    if (check(env, VAULT(h), fv_bundle_export(VAULT(h), &st, path ? path : "", &o)) ==
        FV_OK)
        out = stats_out(env, &st);
    free(path);
    return out;
}

JNIEXPORT jlongArray JNICALL Java_org_fieldvault_Native_bundleImport(JNIEnv *env, jclass cls,
                                                                     jlong h, jbyteArray jpath)
{
    fv_bundle_stats st = FV_BUNDLE_STATS_INIT;
    char *path = NULL;
    jlongArray out = NULL;
    (void)cls;
    if (bytes_in(env, jpath, &path, NULL, 1))
        return NULL;
    if (check(env, VAULT(h), fv_bundle_import(VAULT(h), &st, path ? path : "")) == FV_OK)
        out = stats_out(env, &st);
    free(path);
    return out;
}
