/*
 * help.c - the text of `fieldvault --help` and `fieldvault COMMAND --help`.
 */
#include <string.h>

#include "cli.h"

static const char overview[] =
    "usage: fieldvault [--vault DIR] [--passphrase-file F | --passphrase-fd N]\n"
    "                  [--json] COMMAND [ARGS...]\n"
    "\n"
    "An encrypted, offline store of testimonies.\n"
    "\n"
    "commands:\n"
    "  init                create a vault\n"
    "  add                 add a record; prints its id\n"
    "  list                list records\n"
    "  show ID             show a record with its history\n"
    "  edit ID             write a new revision of a record\n"
    "  delete ID           delete a record\n"
    "  search TEXT         find records containing TEXT\n"
    "  attachment get      write an attachment to a file\n"
    "  passwd              change the passphrase\n"
    "  panic               destroy the vault at once, without a passphrase\n"
    "  version             print the version\n"
    "  help [COMMAND]      this text, or a command's\n"
    "\n"
    "global options (before or after the command):\n"
    "  --vault DIR             the vault directory; default $FIELDVAULT_DIR,\n"
    "                          else $XDG_DATA_HOME/fieldvault,\n"
    "                          else ~/.local/share/fieldvault\n"
    "  --passphrase-file F     read the passphrase from file F (also\n"
    "                          $FIELDVAULT_PASSPHRASE_FILE); one trailing\n"
    "                          newline is removed\n"
    "  --passphrase-fd N       read the passphrase from file descriptor N\n"
    "  --json                  print one JSON document on standard output\n"
    "  -h, --help              help; 'fieldvault COMMAND --help' for a command\n"
    "  --version               the version\n"
    "Without a passphrase source the passphrase is asked on the terminal.\n"
    "\n"
    "exit codes:\n"
    "   0 ok                     7 vault of a newer format\n"
    "   1 other failure          8 not found, or ambiguous id prefix\n"
    "   2 usage error            9 I/O error\n"
    "   3 wrong passphrase      10 disk full\n"
    "   4 no vault              11 already exists\n"
    "   5 corrupt or tampered   12 canceled\n"
    "   6 network failure       13 vault busy\n";

static const struct {
    const char *name;
    const char *text;
} helps[] = {
    {"init",
     "usage: fieldvault [--vault DIR] init [--kdf desktop|phone|test]\n"
     "\n"
     "Creates a vault in DIR. The passphrase is asked twice on the terminal,\n"
     "or read once from --passphrase-file / --passphrase-fd.\n"
     "\n"
     "  --kdf PROFILE   key-derivation cost: desktop (default, about half a\n"
     "                  second and 256 MiB), phone (64 MiB), or test (the\n"
     "                  minimum: for tests only, never for real testimony)\n"
     "With --json prints {\"vault\": DIR, \"device\": ID}.\n"},
    {"add",
     "usage: fieldvault add --title T [--narrative-file F|-] [--field K=V]...\n"
     "                      [--tag T]... [--attach PATH]...\n"
     "\n"
     "Adds a record and prints its id once it is safely stored.\n"
     "\n"
     "  --title T            the title (required)\n"
     "  --narrative-file F   the narrative, read from file F ('-': standard\n"
     "                       input), at most 16 MiB\n"
     "  --field K=V          a field; split at the first '='\n"
     "  --tag T              a tag\n"
     "  --attach PATH        attach a file, named by its base name\n"
     "With --json prints {\"id\": ID}.\n"},
    {"list",
     "usage: fieldvault list [--json]\n"
     "\n"
     "Lists the records, oldest first: ID  CREATED  TITLE, and [conflict]\n"
     "when concurrent edits left several heads. With --json: an array of\n"
     "{id, title, created, modified, tags, attachments, conflict}.\n"
     "Records that fail verification are skipped and reported (exit 5).\n"},
    {"show",
     "usage: fieldvault show ID [--json]\n"
     "\n"
     "Shows a record: fields, tags, attachments, narrative and the revision\n"
     "history. ID is a full id or a unique prefix of at least 4 hex digits.\n"},
    {"edit",
     "usage: fieldvault edit ID [--title T] [--narrative-file F|-]\n"
     "                          [--field K=V]... [--remove-field K]...\n"
     "                          [--tag T]... [--remove-tag T]...\n"
     "                          [--attach PATH]... [--remove-attachment NAME]...\n"
     "\n"
     "Writes a new revision of the record and prints its revision id; the\n"
     "old revision stays in the history. With --json prints\n"
     "{\"id\": ID, \"revision\": REV}.\n"},
    {"delete",
     "usage: fieldvault delete ID [--json]\n"
     "\n"
     "Deletes a record: writes a signed tombstone and destroys the local\n"
     "ciphertext of all its revisions and attachments.\n"},
    {"search",
     "usage: fieldvault search TEXT [--json]\n"
     "\n"
     "Lists the records whose title, narrative, fields, tags or attachment\n"
     "names contain TEXT (ASCII letters match regardless of case).\n"},
    {"attachment",
     "usage: fieldvault attachment get ID NAME --output FILE\n"
     "\n"
     "Decrypts attachment NAME of record ID into FILE, which must not exist\n"
     "(it appears only once every byte is verified). FILE '-' writes to\n"
     "standard output (never to a terminal).\n"},
    {"passwd",
     "usage: fieldvault passwd [--new-passphrase-file F]\n"
     "\n"
     "Changes the passphrase (records are not re-encrypted). The current one\n"
     "comes from the usual sources; the new one from --new-passphrase-file,\n"
     "else it is asked twice on the terminal.\n"},
    {"panic",
     "usage: fieldvault [--vault DIR] panic\n"
     "\n"
     "Destroys the vault at once, with no prompt and no passphrase: the keys\n"
     "are destroyed first, so nothing in it can be decrypted afterwards.\n"},
    {"version",
     "usage: fieldvault version [--json]\n"
     "\n"
     "Prints the version of fieldvault and of its vault format.\n"},
    {"help",
     "usage: fieldvault help [COMMAND]\n"
     "\n"
     "Prints the overview, or the help of COMMAND.\n"},
};

int cli_help(FILE *f, const char *cmd)
{
    if (cmd == NULL) {
        fputs(overview, f);
        return 0;
    }
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        if (strcmp(helps[i].name, cmd) == 0) {
            fputs(helps[i].text, f);
            return 0;
        }
    }
    return -1;
}
