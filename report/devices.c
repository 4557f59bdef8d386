/* devices.c - the device names and attachment types that the desk and the
 * HTML report share (report.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fieldvault_sync.h"
#include "report.h"

static int collect_device(const fv_device_info *di, void *payload)
{
    report_devices *t = payload;
    report_device *nd = realloc(t->d, (t->n + 1) * sizeof *nd);
    if (nd == NULL) {
        t->rc = FV_ENOMEM;
        return 1;
    }
    t->d = nd;
    nd = &t->d[t->n];
    memcpy(nd->id, di->id, FV_ID_BYTES);
    nd->role = di->role;
    nd->revoked = di->revoked;
    nd->enrolled = di->enrolled;
    if ((nd->name = strdup(di->name ? di->name : "")) == NULL) {
        t->rc = FV_ENOMEM;
        return 1;
    }
    t->n++;
    return 0;
}

report_devices *report_devices_fetch(fv_vault *v, const fv_sync_options *so)
{
    report_devices *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    int rc = v ? fv_org_devices(v, collect_device, t, so) : FV_EINVAL;
    if (t->rc == FV_ENOMEM) { /* set by collect_device */
        report_devices_free(t);
        return NULL;
    }
    t->rc = rc;
    if (t->rc == FV_OK) {
        t->fetched = 1;
    } else {
        snprintf(t->why, sizeof t->why, "%s",
                 v ? fv_vault_errmsg(v) : fv_strerror(t->rc));
        /* A list cut halfway is not a list: nothing of it is kept. */
        for (size_t i = 0; i < t->n; i++)
            free(t->d[i].name);
        free(t->d);
        t->d = NULL;
        t->n = 0;
    }
    return t;
}

const char *report_device_name(const report_devices *t,
                               const unsigned char id[FV_ID_BYTES])
{
    for (size_t i = 0; t && i < t->n; i++)
        if (memcmp(t->d[i].id, id, FV_ID_BYTES) == 0)
            return t->d[i].name;
    return NULL;
}

void report_devices_free(report_devices *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->d[i].name);
    free(t->d);
    free(t);
}

const char *report_media_type(const char *name, int *media)
{
    static const struct {
        const char *ext, *type;
        int media;
    } types[] = {
        {".mp3", "audio/mpeg", REPORT_AUDIO},  {".m4a", "audio/mp4", REPORT_AUDIO},
        {".aac", "audio/aac", REPORT_AUDIO},   {".ogg", "audio/ogg", REPORT_AUDIO},
        {".oga", "audio/ogg", REPORT_AUDIO},   {".opus", "audio/ogg", REPORT_AUDIO},
        {".wav", "audio/wav", REPORT_AUDIO},   {".flac", "audio/flac", REPORT_AUDIO},
        {".weba", "audio/webm", REPORT_AUDIO}, {".mp4", "video/mp4", REPORT_VIDEO},
        {".m4v", "video/mp4", REPORT_VIDEO},   {".webm", "video/webm", REPORT_VIDEO},
        {".ogv", "video/ogg", REPORT_VIDEO},   {".mov", "video/quicktime", REPORT_VIDEO},
        {".jpg", "image/jpeg", REPORT_IMAGE},  {".jpeg", "image/jpeg", REPORT_IMAGE},
        {".png", "image/png", REPORT_IMAGE},   {".gif", "image/gif", REPORT_IMAGE},
        {".webp", "image/webp", REPORT_IMAGE},
    };
    const char *dot = strrchr(name, '.');
    *media = REPORT_OTHER;
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot, types[i].ext) == 0) {
            *media = types[i].media;
            return types[i].type;
        }
    /* Never text/html, image/svg+xml or anything a browser would run. */
    return "application/octet-stream";
}
