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
    "  config              vault settings: retention\n"
    "  export              records as JSON, CSV, an HTML report or evidence\n"
    "  verify              re-check every signature, hash and receipt\n"
    "  panic               destroy the vault at once, without a passphrase\n"
    "  version             print the version\n"
    "  help [COMMAND]      this text, or a command's\n"
    "\n"
    "syncing with the organisation's server:\n"
    "  enroll INVITE       join the organisation with a one-time invite\n"
    "  sync                push new records, pull what is addressed to you\n"
    "  org                 coordinators: init, invite, devices, revoke, key\n"
    "  bundle              export or import envelopes on a USB stick\n"
    "  server              create a server (init) or a new invite (invite)\n"
    "  serve               run the server\n"
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
    "   6 network failure       13 vault busy\n"
    "                           14 server key does not match the pin\n"
    "                           15 refused by the server (not enrolled,\n"
    "                              revoked, not allowed)\n"
    "                           16 invite damaged, used or expired\n"
    "                           17 attachment not fully arrived yet\n"
    "A server that breaks the sync protocol counts as corrupt data (5).\n";

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
     "Lists the records, oldest first: ID  CREATED  TITLE, then [conflict]\n"
     "when concurrent edits left several heads, and [incomplete] when some\n"
     "attachment chunks have not arrived yet. With --json: an array of\n"
     "{id, title, created, modified, tags, attachments, conflict, complete}.\n"
     "Records that fail verification are skipped and reported (exit 5).\n"},
    {"show",
     "usage: fieldvault show ID [--json]\n"
     "\n"
     "Shows a record: fields, tags, attachments, narrative and the revision\n"
     "history. ID is a full id or a unique prefix of at least 4 hex digits.\n"
     "An attachment still arriving from the server shows 'incomplete: N of\n"
     "M chunks'. 'delivered' says whether the server acknowledged every\n"
     "envelope and chunk of the record that this device wrote (yes for a\n"
     "record with nothing of this device's waiting).\n"
     "With --json: {id, title, narrative, created, modified, author, fields,\n"
     "tags, attachments: [{name, size, chunks, chunks_present}], revisions,\n"
     "heads, delivered}.\n"},
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
     "standard output (never to a terminal).\n"
     "Exit 17, with nothing written, if the attachment has not fully arrived\n"
     "from the server yet ('show' says how much has): sync again later.\n"},
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
    {"config",
     "usage: fieldvault config set retention keep|drop-after-receipt\n"
     "       fieldvault config get retention\n"
     "\n"
     "Vault settings (stored in the vault; the passphrase is needed).\n"
     "  retention   keep (the default) keeps every record. drop-after-receipt\n"
     "              destroys this device's copy of each record it wrote once\n"
     "              the server's signed receipts cover the record and every\n"
     "              chunk of its attachments, at the end of each sync: a\n"
     "              seized device then holds nothing already delivered. A\n"
     "              record with anything unacknowledged is kept.\n"
     "get prints the value; set prints 'retention: VALUE'. With --json both\n"
     "print {\"retention\": VALUE}.\n"},
    {"version",
     "usage: fieldvault version [--json]\n"
     "\n"
     "Prints the version of fieldvault and of its vault format.\n"},
    {"server",
     "usage: fieldvault server init --data SDIR --listen HOST:PORT [--json]\n"
     "       fieldvault server invite --data SDIR --name N\n"
     "                                [--role field|coordinator] [--ttl HOURS]\n"
     "                                [--json]\n"
     "       fieldvault server import --data SDIR FILE [--json]\n"
     "\n"
     "server init creates a server in directory SDIR (no vault, no\n"
     "passphrase): its TLS key, its receipt key and its database. HOST:PORT\n"
     "is the address devices will be sent to (it goes into invites; 'serve\n"
     "--listen' may bind elsewhere). Prints the pin of the server's key and a\n"
     "one-time admin invite (coordinator role, valid 30 days); with --json\n"
     "{\"pin\": HEX, \"admin_invite\": INVITE}. Exit 11 if SDIR already holds a\n"
     "server.\n"
     "\n"
     "server invite makes another invite from the server's own directory,\n"
     "for instance when the admin invite was lost; it may run while the\n"
     "server runs. --role defaults to coordinator, --ttl to 168 hours (at\n"
     "most 720). With --json prints {\"invite\": INVITE}.\n"
     "\n"
     "server import stores a courier bundle (from 'bundle export') as if its\n"
     "envelopes had been pushed over the network: each is verified, and its\n"
     "author must be an enrolled, unrevoked device. Importing twice changes\n"
     "nothing; a damaged bundle exits 5 with nothing of the damaged batch\n"
     "stored. With --json prints {\"file\", \"envelopes\", \"added\"}.\n"
     "Nothing in SDIR opens a testimony; keep it private all the same.\n"},
    {"serve",
     "usage: fieldvault serve --data SDIR [--listen HOST:PORT]\n"
     "\n"
     "Runs the server in SDIR until SIGTERM or Ctrl-C, then closes every\n"
     "connection and exits 0. Listens on the address given at 'server init'\n"
     "unless --listen says otherwise (port 0 picks a free port). Once it\n"
     "accepts connections it prints 'listening on ADDR:PORT' on standard\n"
     "error; it logs there (connections, enrollments, counts; never content\n"
     "or client addresses).\n"},
    {"enroll",
     "usage: fieldvault enroll INVITE [--server HOST:PORT] [--timeout SECONDS]\n"
     "\n"
     "Redeems a one-time invite: this vault joins the organisation with the\n"
     "role the invite gives, and remembers the server and its key. The\n"
     "server's key must match the pin in the invite. Records added before\n"
     "enrolling reach the organisation at the next sync.\n"
     "\n"
     "  --server HOST:PORT   reach the server at this address instead of the\n"
     "                       invite's (remembered for later syncs)\n"
     "  --timeout SECONDS    give up after this long without progress (30)\n"
     "Prints the role and this device's id; with --json\n"
     "{\"role\": \"field\"|\"coordinator\", \"device\": ID}.\n"
     "Exit 16 if the invite is damaged, used or expired, 11 if this vault is\n"
     "already enrolled, 14 if the server's key does not match the pin.\n"},
    {"org",
     "usage: fieldvault org init [--timeout SECONDS]\n"
     "       fieldvault org invite --name N [--role field|coordinator]\n"
     "                             [--ttl HOURS] [--json]\n"
     "       fieldvault org devices [--json]\n"
     "       fieldvault org revoke DEVICE_ID\n"
     "       fieldvault org key export --output FILE\n"
     "                             [--recovery-passphrase-file F] [--json]\n"
     "       fieldvault org key import FILE [--recovery-passphrase-file F]\n"
     "\n"
     "Coordinators only; init, invite, devices and revoke are each one\n"
     "request to the server.\n"
     "  init      create the organisation key in this vault and publish its\n"
     "            public half; every device learns it at its next connection\n"
     "            and seals its records to it from then on\n"
     "  invite    a one-time invite for a new device called N; --role\n"
     "            defaults to field, --ttl to 168 hours (at most 720). With\n"
     "            --json prints {\"invite\": INVITE, \"name\": N, \"role\": R}\n"
     "  devices   the organisation's devices: ID  ROLE  ENROLLED  NAME; with\n"
     "            --json an array of {id, name, role, revoked, enrolled}\n"
     "  revoke    refuse device DEVICE_ID (64 hex digits) from its next\n"
     "            connection on\n"
     "  key export  write the organisation's secret key to a new file FILE\n"
     "            (0600), encrypted under a separate recovery passphrase\n"
     "            (asked twice, or read from F); keep it apart from this\n"
     "            laptop. Exit 11 if FILE exists, 15 if this vault holds no\n"
     "            organisation key\n"
     "  key import  take the organisation key from FILE into this vault: with\n"
     "            a coordinator invite (org invite --role coordinator) it is\n"
     "            then a second coordinator. Exit 3 for a wrong recovery\n"
     "            passphrase, 5 for a damaged file, 11 if this vault holds a\n"
     "            different organisation key\n"
     "The server requests take --timeout SECONDS (default 30). Exit 15 if the\n"
     "server refuses (this device is not a coordinator, or is revoked).\n"},
    {"sync",
     "usage: fieldvault sync [--server HOST:PORT] [--timeout SECONDS] [--json]\n"
     "\n"
     "Pushes every envelope the server has not acknowledged and pulls what\n"
     "is new for this device: a field device receives its own records and\n"
     "what the organisation addresses to it; a coordinator receives\n"
     "everything. Attachments move chunk by chunk in both directions; after\n"
     "a cut, the next sync sends only the chunks the server lacks. Prints\n"
     "one summary line; with --json {\"pushed\", \"pulled\", \"added\",\n"
     "\"conflicts\", \"bytes_sent\", \"bytes_received\", \"roundtrips\",\n"
     "\"chunks_sent\", \"chunks_received\", \"chunks_unavailable\" (listed,\n"
     "not yet uploaded by their author), \"chunks_rejected\" (failed\n"
     "verification, not stored), \"dropped\" (records dropped after delivery,\n"
     "see 'config')}. A sync that runs more than two seconds shows progress\n"
     "on a terminal (bytes, rate, time left when known); Ctrl-C cancels it\n"
     "(exit 12) and keeps what was already committed. A cut connection loses\n"
     "nothing: run sync again.\n"
     "\n"
     "  --server HOST:PORT   reach the server at another address (it moved,\n"
     "                       or a relay); its key must still match the pin\n"
     "  --timeout SECONDS    give up after this long without progress (30)\n"
     "Exit 8 if the vault is not enrolled, 6 on a network failure, 14 if\n"
     "the server's key does not match the pin, 15 if the server refuses\n"
     "this device (revoked), 5 if the server sent something invalid, or if\n"
     "attachment chunks failed verification (the summary is printed first;\n"
     "those chunks are asked for again at the next sync).\n"},
    {"bundle",
     "usage: fieldvault bundle export FILE\n"
     "       fieldvault bundle import FILE\n"
     "\n"
     "Courier bundles carry envelopes on a USB stick or SD card where there\n"
     "is no network.\n"
     "  export    writes every envelope the server has not acknowledged into\n"
     "            FILE (which must not exist) and prints how many; the\n"
     "            outbox is unchanged (only a server's receipt empties it)\n"
     "  import    verifies every envelope in FILE exactly as a sync would and\n"
     "            stores them; prints how many, and how many were new.\n"
     "            Importing twice changes nothing. Exit 5 if the file is\n"
     "            damaged: nothing of the damaged batch is stored\n"
     "With --json prints {\"file\", \"envelopes\"} (and \"added\" on import).\n"},
    {"export",
     "usage: fieldvault export --format json|csv|html|evidence --output PATH\n"
     "                         [--state S] [--tag T] [--device DEVICE_ID]\n"
     "                         [--since DATE] [--until DATE] [--record ID]...\n"
     "\n"
     "Writes the selected records (all by default) to PATH, which must not\n"
     "exist; it appears only once complete. The output is DECRYPTED (but for\n"
     "evidence): keep it as safe as the vault.\n"
     "  json       one document: every field, tag, narrative, review state,\n"
     "             origin, revision history, notes and attachment manifest\n"
     "  csv        one row per record for spreadsheets (UTF-8, RFC 4180)\n"
     "  html       a directory: index.html with charts, one page per\n"
     "             testimony, its attachments; no network resource, no script\n"
     "  evidence   a directory: the original signed envelopes and chunks, a\n"
     "             manifest and README.txt on verifying them independently\n"
     "  --state S        new, reviewed, needs-follow-up or archived\n"
     "  --tag T          records with tag T\n"
     "  --device ID      records created by device ID (64 hex digits)\n"
     "  --since DATE     created at or after DATE (YYYY-MM-DD or\n"
     "                   YYYY-MM-DDTHH:MM:SSZ, UTC)\n"
     "  --until DATE     created at or before DATE (a bare date: its end)\n"
     "  --record ID      only this record (repeatable; a unique prefix will do)\n"
     "Exit 11 if PATH exists, 5 if a record fails verification (nothing is\n"
     "written: run 'fieldvault verify'). With --json prints\n"
     "{\"output\", \"format\", \"records\"}. See docs/EXPORT.md.\n"},
    {"verify",
     "usage: fieldvault verify [--json]\n"
     "\n"
     "Re-checks the chain of custody of everything in the vault: each\n"
     "envelope's structure, signature and content address, its key\n"
     "commitment and decryption where this vault can open it, the revision\n"
     "links, every stored attachment chunk against its signed hash, and the\n"
     "server's signed receipts. Prints one line per problem, then a summary.\n"
     "With --json: {\"problems\": [{record, envelope, problem}], \"ok\",\n"
     "\"envelopes\", \"chunks\", \"receipts\", \"failures\"}.\n"
     "Exit 0 if everything holds, 5 if anything failed.\n"},
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
