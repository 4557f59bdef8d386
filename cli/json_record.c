/* json_record.c - the one JSON writer of records (json_record.h). */
#include <string.h>

#include "cli.h"
#include "json_record.h"

int json_record_complete(const fv_record *r)
{
    for (size_t i = 0; i < r->nattachments; i++)
        if (r->attachments[i].chunks_present < r->attachments[i].chunks)
            return 0;
    return 1;
}

static int id_known(const unsigned char id[FV_ID_BYTES])
{
    static const unsigned char zero[FV_ID_BYTES];
    return memcmp(id, zero, FV_ID_BYTES) != 0;
}

void json_summary_from_record(json_summary *s, const fv_record *r)
{
    memset(s, 0, sizeof *s);
    memcpy(s->id, r->id, FV_ID_BYTES);
    s->title = r->title;
    s->created = r->created;
    s->modified = r->modified;
    s->tags = r->tags;
    s->ntags = r->ntags;
    s->nattachments = r->nattachments;
    s->conflict = r->nheads > 1;
    s->complete = json_record_complete(r);
    s->state = r->state;
    s->origin_known = id_known(r->origin);
    memcpy(s->origin, r->origin, FV_ID_BYTES);
    s->nnotes = r->nnotes;
}

void json_summary_write(FILE *o, const json_summary *s)
{
    fputc('{', o);
    json_key(o, "id");
    json_id(o, s->id);
    fputs(", ", o);
    json_key(o, "title");
    json_strz(o, s->title);
    fputs(", ", o);
    json_key(o, "created");
    json_time(o, s->created);
    fputs(", ", o);
    json_key(o, "modified");
    json_time(o, s->modified);
    fputs(", ", o);
    json_key(o, "tags");
    fputs("[", o);
    for (size_t i = 0; i < s->ntags; i++) {
        if (i)
            fputs(", ", o);
        json_strz(o, s->tags[i]);
    }
    fputs("], ", o);
    json_key(o, "attachments");
    fprintf(o, "%zu, ", s->nattachments);
    json_key(o, "conflict");
    fputs(s->conflict ? "true, " : "false, ", o);
    json_key(o, "complete");
    fputs(s->complete ? "true, " : "false, ", o);
    json_key(o, "state");
    json_strz(o, fv_state_name(s->state));
    fputs(", ", o);
    json_key(o, "author");
    if (s->origin_known)
        json_id(o, s->origin);
    else
        fputs("null", o);
    fputs(", ", o);
    if (s->with_name) {
        json_key(o, "author_name");
        json_strz(o, s->author_name);
        fputs(", ", o);
    }
    json_key(o, "notes");
    fprintf(o, "%zu, ", s->nnotes);
    json_key(o, "readable");
    fputs("true}", o);
}

void json_unreadable_write(FILE *o, const fv_unreadable *u)
{
    fputc('{', o);
    json_key(o, "id");
    json_id(o, u->id);
    fputs(", ", o);
    json_key(o, "readable");
    fputs("false, ", o);
    json_key(o, "why");
    json_strz(o, u->why);
    fputs(", ", o);
    json_key(o, "revision");
    json_id(o, u->revision);
    fputs(", ", o);
    json_key(o, "signer");
    json_id(o, u->author);
    fputs(", ", o);
    json_key(o, "conflict");
    fputs(u->nheads > 1 ? "true}" : "false}", o);
}

void json_record_members(FILE *o, const fv_record *r, const char *ind,
                         int more)
{
    fputs(ind, o);
    json_key(o, "id");
    json_id(o, r->id);
    fprintf(o, ",\n%s", ind);
    json_key(o, "title");
    json_strz(o, r->title);
    fprintf(o, ",\n%s", ind);
    json_key(o, "narrative");
    if (r->narrative != NULL)
        json_str(o, r->narrative, r->narrative_len);
    else
        fputs("\"\"", o);
    fprintf(o, ",\n%s", ind);
    json_key(o, "created");
    json_time(o, r->created);
    fprintf(o, ",\n%s", ind);
    json_key(o, "modified");
    json_time(o, r->modified);
    fprintf(o, ",\n%s", ind);
    json_key(o, "author");
    if (id_known(r->origin))
        json_id(o, r->origin);
    else
        fputs("null", o);
    fprintf(o, ",\n%s", ind);
    json_key(o, "signer");
    json_id(o, r->author);
    fprintf(o, ",\n%s", ind);
    json_key(o, "revision");
    json_id(o, r->revision);
    fprintf(o, ",\n%s", ind);
    json_key(o, "state");
    json_strz(o, fv_state_name(r->state));
    fprintf(o, ",\n%s", ind);
    json_key(o, "fields");
    fputs("{", o);
    for (size_t i = 0; i < r->nfields; i++) {
        fputs(i ? ", " : "", o);
        json_key(o, r->fields[i].key);
        json_strz(o, r->fields[i].value);
    }
    fprintf(o, "},\n%s", ind);
    json_key(o, "tags");
    fputs("[", o);
    for (size_t i = 0; i < r->ntags; i++) {
        fputs(i ? ", " : "", o);
        json_strz(o, r->tags[i]);
    }
    fprintf(o, "],\n%s", ind);
    json_key(o, "attachments");
    fputs("[", o);
    for (size_t i = 0; i < r->nattachments; i++) {
        const fv_attachment_info *a = &r->attachments[i];
        fprintf(o, "%s\n%s  {", i ? "," : "", ind);
        json_key(o, "name");
        json_strz(o, a->name);
        fputs(", ", o);
        json_key(o, "size");
        fprintf(o, "%llu, ", (unsigned long long)a->size);
        json_key(o, "chunks");
        fprintf(o, "%llu, ", (unsigned long long)a->chunks);
        json_key(o, "chunks_present");
        fprintf(o, "%llu}", (unsigned long long)a->chunks_present);
    }
    if (r->nattachments)
        fprintf(o, "\n%s", ind);
    fputs(more ? "],\n" : "]\n", o);
}

const char *json_revision_kind(int kind)
{
    return kind == FV_TOMBSTONE ? "tombstone" : "revision";
}

void json_revision_write(FILE *o, const unsigned char id[FV_ID_BYTES],
                         int kind, int64_t time,
                         const unsigned char author[FV_ID_BYTES],
                         const unsigned char (*parents)[FV_ID_BYTES],
                         size_t nparents, int head)
{
    fputc('{', o);
    json_key(o, "id");
    json_id(o, id);
    fputs(", ", o);
    json_key(o, "kind");
    json_strz(o, json_revision_kind(kind));
    fputs(", ", o);
    json_key(o, "time");
    json_time(o, time);
    fputs(", ", o);
    json_key(o, "author");
    json_id(o, author);
    fputs(", ", o);
    json_key(o, "parents");
    fputs("[", o);
    for (size_t k = 0; k < nparents; k++) {
        fputs(k ? ", " : "", o);
        json_id(o, parents[k]);
    }
    fputs("], ", o);
    json_key(o, "head");
    fputs(head ? "true}" : "false}", o);
}

void json_note_write(FILE *o, const unsigned char id[FV_ID_BYTES],
                     const unsigned char record[FV_ID_BYTES],
                     const unsigned char author[FV_ID_BYTES], int64_t time,
                     const char *text, size_t len)
{
    fputc('{', o);
    json_key(o, "id");
    json_id(o, id);
    fputs(", ", o);
    json_key(o, "record");
    json_id(o, record);
    fputs(", ", o);
    json_key(o, "author");
    json_id(o, author);
    fputs(", ", o);
    json_key(o, "time");
    json_time(o, time);
    fputs(", ", o);
    json_key(o, "text");
    json_str(o, text, len);
    fputc('}', o);
}
