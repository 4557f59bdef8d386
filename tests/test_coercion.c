/* test_coercion.c - the coercion defences of fieldvault.h: the failed-unlock
 * wipe (its counter beside the key file) and the duress passphrase, on real
 * vault directories. Kills of a real process between the counter and the KDF
 * are in test_cli.py. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fieldvault.h"

static char root[256];
static int seq;

static const char PASS[] = "correct horse battery staple";
static const char DURESS[] = "they are watching me";

static const char *new_dir(void)
{
    static char dirs[64][320];
    char *dir = dirs[++seq % 64];
    snprintf(dir, sizeof dirs[0], "%s/v%d", root, seq);
    return dir;
}

static fv_vault *create(const char *dir)
{
    fv_create_options o = FV_CREATE_OPTIONS_INIT;
    fv_vault *v = NULL;
    o.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_create(&v, dir, PASS, strlen(PASS), &o), FV_OK);
    return v;
}

static int open_with(const char *dir, const char *pass, fv_vault **out)
{
    *out = NULL;
    return fv_vault_open(out, dir, pass, strlen(pass));
}

static int add(fv_vault *v, const char *title, const char *text)
{
    fv_record_input in = FV_RECORD_INPUT_INIT;
    in.title = title;
    in.narrative = text;
    in.narrative_len = strlen(text);
    return fv_record_add(v, NULL, &in);
}

/* Titles of the vault's records, joined by '|', in `out`. */
struct titles {
    char buf[2048];
    int n;
};
static int title_cb(const fv_record *r, void *p)
{
    struct titles *t = p;
    size_t len = strlen(t->buf);
    snprintf(t->buf + len, sizeof t->buf - len, "%s|", r->title);
    t->n++;
    return 0;
}
static int list_titles(fv_vault *v, struct titles *t)
{
    memset(t, 0, sizeof *t);
    return fv_vault_list(v, title_cb, t);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    *len = 0;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    fclose(f);
    return buf;
}

/* 1 if `after` still holds a non-zero 16-byte block of `before` at the same
 * offset, or its first such block anywhere (as test_vault's panic test). */
static int keeps_any(const unsigned char *before, size_t blen,
                     const unsigned char *after, size_t alen)
{
    static const unsigned char zero[16];
    const unsigned char *sample = NULL;
    for (size_t off = 0; off + 16 <= blen; off += 16) {
        if (memcmp(before + off, zero, 16) == 0)
            continue;
        if (!sample)
            sample = before + off;
        if (off + 16 <= alen && memcmp(before + off, after + off, 16) == 0)
            return 1;
    }
    for (size_t off = 0; sample && off + 16 <= alen; off++)
        if (memcmp(after + off, sample, 16) == 0)
            return 1;
    return 0;
}

/* Hard links, made now, to the vault's key file and database. */
struct links {
    char path[2][400];
    unsigned char *before[2];
    size_t blen[2];
};
static void links_make(struct links *l, const char *dir)
{
    static const char *const names[] = {"vault.key", "vault.db"};
    char src[400];
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", dir, names[i]);
        snprintf(l->path[i], sizeof l->path[i], "%s/link%d-%d", root, seq, i);
        CHECK(link(src, l->path[i]) == 0);
        l->before[i] = slurp(l->path[i], &l->blen[i]);
        CHECK(l->before[i] != NULL && l->blen[i] > 0);
    }
}
/* Every link now reads garbage over the file's whole former length. */
static void links_check_destroyed(struct links *l)
{
    for (int i = 0; i < 2; i++) {
        size_t alen;
        unsigned char *after = slurp(l->path[i], &alen);
        CHECK(after != NULL);
        CHECK_EQ(alen, l->blen[i]);
        if (after && l->before[i] && keeps_any(l->before[i], l->blen[i], after, alen)) {
            fprintf(stderr, "%s still readable after the wipe\n", l->path[i]);
            CHECK(0);
        }
        free(after);
        free(l->before[i]);
        unlink(l->path[i]);
    }
}

/* The counter file's limit and failures (LE32 at 8 and 12). */
static int guard_read(const char *dir, unsigned *limit, unsigned *fails)
{
    char path[400];
    size_t n;
    unsigned char *g;
    snprintf(path, sizeof path, "%s/vault.guard", dir);
    if (!(g = slurp(path, &n)))
        return -1;
    CHECK_EQ(n, 16);
    CHECK(memcmp(g, "FVguard1", 8) == 0);
    *limit = g[8] | g[9] << 8 | g[10] << 16 | (unsigned)g[11] << 24;
    *fails = g[12] | g[13] << 8 | g[14] << 16 | (unsigned)g[15] << 24;
    free(g);
    return 0;
}

static long file_size(const char *dir, const char *name)
{
    char path[400];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void test_wipe_after(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir), *w;
    unsigned limit = 9, fails = 9, n = 9;
    struct links l;

    /* Off by default: no counter file, wrong passphrases change nothing. */
    CHECK_EQ(fv_vault_get_wipe_after(v, &n), FV_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(guard_read(dir, &limit, &fails), -1);
    CHECK_EQ(add(v, "Testimony W-017", "the names of the guards"), FV_OK);
    fv_vault_close(v);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(open_with(dir, "wrong", &w), FV_EPASSPHRASE);
    CHECK_EQ(guard_read(dir, &limit, &fails), -1);

    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    CHECK_EQ(fv_vault_set_wipe_after(v, 1000001), FV_EINVAL);
    CHECK_EQ(fv_vault_set_wipe_after(v, 3), FV_OK);
    CHECK_EQ(fv_vault_get_wipe_after(v, &n), FV_OK);
    CHECK_EQ(n, 3);
    fv_vault_close(v);
    CHECK_EQ(guard_read(dir, &limit, &fails), 0);
    CHECK_EQ(limit, 3);
    CHECK_EQ(fails, 0);

    /* Two failures counted, a success resets them. */
    CHECK_EQ(open_with(dir, "wrong", &w), FV_EPASSPHRASE);
    CHECK_EQ(open_with(dir, "wrong", &w), FV_EPASSPHRASE);
    CHECK_EQ(guard_read(dir, &limit, &fails), 0);
    CHECK_EQ(fails, 2);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    fv_vault_close(v);
    CHECK_EQ(guard_read(dir, &limit, &fails), 0);
    CHECK_EQ(fails, 0);

    /* Three in a row: the third destroys the vault as panic does. */
    links_make(&l, dir);
    CHECK_EQ(open_with(dir, "wrong 1", &w), FV_EPASSPHRASE);
    CHECK_EQ(open_with(dir, "wrong 2", &w), FV_EPASSPHRASE);
    CHECK(access(dir, F_OK) == 0);
    CHECK_EQ(open_with(dir, "wrong 3", &w), FV_EPASSPHRASE);
    CHECK(w == NULL);
    CHECK(access(dir, F_OK) != 0);
    links_check_destroyed(&l);
    CHECK_EQ(open_with(dir, PASS, &w), FV_ENOVAULT);

    /* Off again: the counter file goes. */
    dir = new_dir();
    v = create(dir);
    CHECK_EQ(fv_vault_set_wipe_after(v, 2), FV_OK);
    CHECK_EQ(fv_vault_set_wipe_after(v, 0), FV_OK);
    CHECK_EQ(guard_read(dir, &limit, &fails), -1);
    fv_vault_close(v);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(open_with(dir, "wrong", &w), FV_EPASSPHRASE);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    fv_vault_close(v);
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
}

/* A count already at the limit is what an open killed during the KDF of
 * the last allowed try leaves: the next open destroys the vault before any
 * KDF, even with the right passphrase. A damaged counter file is refused
 * and destroys nothing. */
static void test_counter_at_limit(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir), *w;
    char path[400];
    unsigned char g[16];
    struct links l;
    int fd;

    CHECK_EQ(fv_vault_set_wipe_after(v, 2), FV_OK);
    fv_vault_close(v);
    snprintf(path, sizeof path, "%s/vault.guard", dir);
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pread(fd, g, 16, 0) == 16);

    /* Damaged: a wrong magic, then a wrong size. */
    g[0] ^= 1;
    CHECK(pwrite(fd, g, 16, 0) == 16);
    CHECK_EQ(open_with(dir, PASS, &w), FV_ECORRUPT);
    g[0] ^= 1;
    CHECK(pwrite(fd, g, 16, 0) == 16 && ftruncate(fd, 15) == 0);
    CHECK_EQ(open_with(dir, PASS, &w), FV_ECORRUPT);
    CHECK(ftruncate(fd, 16) == 0 && pwrite(fd, g, 16, 0) == 16);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    fv_vault_close(v);

    /* One failure recorded durably, then the last try "killed": 2 of 2. */
    CHECK_EQ(open_with(dir, "wrong", &w), FV_EPASSPHRASE);
    CHECK(pread(fd, g, 16, 0) == 16);
    CHECK_EQ(g[12], 1);
    g[12] = 2;
    CHECK(pwrite(fd, g, 16, 0) == 16);
    close(fd);
    links_make(&l, dir);
    CHECK_EQ(open_with(dir, PASS, &w), FV_ENOVAULT);
    CHECK(w == NULL);
    CHECK(access(dir, F_OK) != 0);
    links_check_destroyed(&l);
}

static void test_duress(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir), *w;
    struct titles t;
    struct links l;
    DIR *dh;
    struct dirent *de;
    int others = 0;

    CHECK_EQ(file_size(dir, "vault.key"), 192); /* always two slots */
    CHECK_EQ(add(v, "Testimony W-017", "the names of the guards"), FV_OK);
    CHECK_EQ(add(v, "Testimony W-018", "the camp's location"), FV_OK);
    CHECK_EQ(fv_vault_set_duress(v, PASS, strlen(PASS), NULL), FV_EINVAL);
    CHECK_EQ(fv_vault_set_duress(v, "", 0, NULL), FV_EINVAL);
    CHECK_EQ(fv_vault_set_duress(v, DURESS, strlen(DURESS), NULL), FV_OK);
    CHECK_EQ(file_size(dir, "vault.key"), 192);
    CHECK(access(dir, F_OK) == 0);
    CHECK_EQ(fv_vault_passwd(v, DURESS, strlen(DURESS)), FV_EINVAL);
    /* A new passphrase keeps the duress one working. */
    CHECK_EQ(fv_vault_passwd(v, "a new passphrase", 16), FV_OK);
    CHECK_EQ(fv_vault_passwd(v, PASS, strlen(PASS)), FV_OK);
    CHECK_EQ(fv_vault_set_wipe_after(v, 5), FV_OK);
    fv_vault_close(v);

    /* The real passphrase still opens the real vault. */
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    CHECK_EQ(list_titles(v, &t), FV_OK);
    CHECK_EQ(t.n, 2);
    fv_vault_close(v);
    CHECK_EQ(open_with(dir, "wrong", &w), FV_EPASSPHRASE);

    /* The duress passphrase: the real vault destroyed, the decoy open. */
    links_make(&l, dir);
    CHECK_EQ(open_with(dir, DURESS, &v), FV_OK);
    CHECK(v != NULL);
    links_check_destroyed(&l);
    CHECK_EQ(list_titles(v, &t), FV_OK);
    CHECK_EQ(t.n, 3);
    CHECK(strstr(t.buf, "Testimony") == NULL);
    CHECK(strstr(t.buf, "Shopping list") != NULL);
    /* An ordinary vault: records can be added. */
    CHECK_EQ(add(v, "Recipe", "lentil soup"), FV_OK);
    fv_vault_close(v);

    /* The directory holds what an ordinary vault holds. */
    CHECK((dh = opendir(dir)) != NULL);
    while (dh && (de = readdir(dh)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            strcmp(de->d_name, "vault.key") && strcmp(de->d_name, "vault.db") &&
            strcmp(de->d_name, "vault.guard")) {
            fprintf(stderr, "left after the duress unlock: %s\n", de->d_name);
            others++;
        }
    if (dh)
        closedir(dh);
    CHECK_EQ(others, 0);
    CHECK_EQ(file_size(dir, "vault.key"), 192);
    {
        unsigned n = 0;
        CHECK_EQ(open_with(dir, DURESS, &v), FV_OK);
        CHECK_EQ(fv_vault_get_wipe_after(v, &n), FV_OK);
        CHECK_EQ(n, 5); /* the wipe stays armed, its count reset */
        CHECK_EQ(list_titles(v, &t), FV_OK);
        CHECK_EQ(t.n, 4);
        fv_vault_close(v);
    }
    /* The real passphrase opens nothing any more. */
    CHECK_EQ(open_with(dir, PASS, &w), FV_EPASSPHRASE);
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
}

static void test_duress_decoy_from_and_clear(void)
{
    const char *dir = new_dir(), *src = new_dir();
    fv_vault *v = create(dir), *s = create(src), *w;
    fv_duress_options o = FV_DURESS_OPTIONS_INIT;
    struct titles t;

    CHECK_EQ(add(v, "Testimony W-019", "what happened at the checkpoint"), FV_OK);
    CHECK_EQ(add(s, "Football practice", "Thursdays at six"), FV_OK);
    CHECK_EQ(add(s, "Garden", "plant the beans in April"), FV_OK);
    o.decoy_from = v; /* never the vault itself */
    CHECK_EQ(fv_vault_set_duress(v, DURESS, strlen(DURESS), &o), FV_EINVAL);
    o.decoy_from = s;
    CHECK_EQ(fv_vault_set_duress(v, DURESS, strlen(DURESS), &o), FV_OK);
    /* A second set replaces the first. */
    CHECK_EQ(fv_vault_set_duress(v, "another duress", 14, &o), FV_OK);
    fv_vault_close(v);
    fv_vault_close(s);
    CHECK_EQ(open_with(dir, DURESS, &w), FV_EPASSPHRASE);

    /* Cleared: the duress passphrase is only a wrong one. */
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    CHECK_EQ(fv_vault_clear_duress(v), FV_OK);
    fv_vault_close(v);
    CHECK_EQ(open_with(dir, "another duress", &w), FV_EPASSPHRASE);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    fv_vault_close(v);

    /* Set again from the source, then used. */
    CHECK_EQ(open_with(src, PASS, &s), FV_OK);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    o.decoy_from = s;
    CHECK_EQ(fv_vault_set_duress(v, DURESS, strlen(DURESS), &o), FV_OK);
    fv_vault_close(v);
    fv_vault_close(s);
    CHECK_EQ(open_with(dir, DURESS, &v), FV_OK);
    CHECK_EQ(list_titles(v, &t), FV_OK);
    CHECK_EQ(t.n, 2);
    CHECK(strstr(t.buf, "Football practice") != NULL);
    CHECK(strstr(t.buf, "Testimony") == NULL);
    fv_vault_close(v);
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
    CHECK_EQ(fv_vault_panic(src), FV_OK);
}

/* A decoy directory left by a `duress set` that died goes with the next set
 * or panic; a symbolic link in its place is removed, never followed. */
static void test_decoy_leftovers(void)
{
    const char *dir = new_dir(), *other = new_dir();
    char tmp[400], okey[400];
    fv_vault *v = create(dir), *o = create(other), *d = NULL;
    fv_create_options co = FV_CREATE_OPTIONS_INIT;

    fv_vault_close(o);
    snprintf(tmp, sizeof tmp, "%s/.duress.tmp", dir);
    snprintf(okey, sizeof okey, "%s/vault.key", other);
    CHECK(symlink(other, tmp) == 0);
    CHECK_EQ(fv_vault_set_duress(v, DURESS, strlen(DURESS), NULL), FV_OK);
    CHECK(access(tmp, F_OK) != 0);
    CHECK_EQ(file_size(other, "vault.key"), 192); /* untouched */
    CHECK(symlink(other, tmp) == 0);
    fv_vault_close(v);
    co.kdf_profile = FV_KDF_TEST;
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
    CHECK(access(dir, F_OK) != 0);
    CHECK(access(okey, F_OK) == 0);

    /* A half-built decoy inside a vault: panic leaves no directory. */
    dir = new_dir();
    v = create(dir);
    fv_vault_close(v);
    snprintf(tmp, sizeof tmp, "%s/.duress.tmp", dir);
    CHECK_EQ(fv_vault_create(&d, tmp, "x", 1, &co), FV_OK);
    fv_vault_close(d);
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
    CHECK(access(dir, F_OK) != 0);
    CHECK_EQ(open_with(other, PASS, &o), FV_OK);
    fv_vault_close(o);
    CHECK_EQ(fv_vault_panic(other), FV_OK);
}

/* A key file of one slot (120 bytes, as vaults made before the duress slot
 * have) opens; the next write gives it its second slot. */
static void test_one_slot_key_file(void)
{
    const char *dir = new_dir();
    fv_vault *v = create(dir), *w;
    char path[400];
    struct titles t;

    CHECK_EQ(add(v, "Testimony W-020", "kept across the upgrade"), FV_OK);
    fv_vault_close(v);
    snprintf(path, sizeof path, "%s/vault.key", dir);
    CHECK(truncate(path, 120) == 0);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    CHECK_EQ(file_size(dir, "vault.key"), 120);
    CHECK_EQ(fv_vault_set_duress(v, DURESS, strlen(DURESS), NULL), FV_OK);
    CHECK_EQ(file_size(dir, "vault.key"), 192);
    fv_vault_close(v);
    CHECK_EQ(open_with(dir, PASS, &v), FV_OK);
    CHECK_EQ(list_titles(v, &t), FV_OK);
    CHECK_EQ(t.n, 1);
    fv_vault_close(v);
    CHECK(truncate(path, 121) == 0); /* neither size */
    CHECK_EQ(open_with(dir, PASS, &w), FV_ECORRUPT);
    CHECK_EQ(fv_vault_panic(dir), FV_OK);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/fv-coercion-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_wipe_after();
    test_counter_at_limit();
    test_duress();
    test_duress_decoy_from_and_clear();
    test_decoy_leftovers();
    test_one_slot_key_file();
    rmdir(root);
    return check_summary("test_coercion");
}
