#!/usr/bin/python3
"""End-to-end tests of `fieldvault export` and `fieldvault verify`.

Runs the real binary against a vault (`init --kdf test`) holding hostile
records: markup, quotes, commas, line breaks, spreadsheet formulas, Korean
text, an attachment whose name is a path trick. Checks each format by reading
it back with an independent reader: JSON with json.load, CSV with the csv
module, HTML by scanning every file for anything that could reach a network
(and, where /usr/bin/chromium exists, by rendering it headless), evidence
with tests/verify_evidence.py. Then tampers with the vault's SQLite file and
expects `verify` to say so (exit 5).

    python3 tests/test_export.py build/bin/fieldvault [unittest options]

Standard library only (plus python3-cryptography and python3-nacl for the
evidence check), under Debian 12's /usr/bin/python3.
"""

import base64
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

BIN = None
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_sync  # noqa: E402  (servers, organisations, devices)
VERIFY_EVIDENCE = os.path.join(HERE, "verify_evidence.py")
CHROMIUM = "/usr/bin/chromium"

OK, USAGE, CORRUPT, EXISTS, CANCELED = 0, 2, 5, 11, 12

# A 1x1 PNG, shown inline in the record's page.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")

TITLE = '=HYPERLINK("x") 증언 <b>bold</b> & "quoted", comma'
NARRATIVE = ('He said "<script>alert(1)</script>", then left.\n'
             'Second line, with a comma; 탈북 이후의 증언.\n'
             '</div><img src=x onerror=alert(2)>')
FIELDS = {"place": 'Seoul, "north"', "formula": "=1+1", "minus": "-2",
          "multi": "line one\nline two\\end", "사건": "+82 증언"}
TAGS = ["탈북", "@risk", "+plus", "a,b"]
# Not a path anywhere FieldVault writes it, yet hostile to file systems
# (':' on Windows) and to HTML. A name holding '/' or '\\' is refused (below).
ATT_NAME = '..:..:evil<x>".png'
NETWORK = re.compile(r"https?:|//|url\(|@import|<script|javascript:|<iframe|<object|<embed"
                     r"|<link[^>]*href=\"(?!style\.css|\.\./style\.css)",
                     re.IGNORECASE)


def read(path, binary=False):
    with open(path, "rb") if binary else open(path, encoding="utf-8") as f:
        return f.read()


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("FIELDVAULT_")}
    e["LC_ALL"] = "C.UTF-8"
    return e


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fv-export-")
        cls.vault = os.path.join(cls.tmp, "vault")
        cls.pw = os.path.join(cls.tmp, "pass")
        with open(cls.pw, "w") as f:
            f.write("export test passphrase")
        cls.fv(["init", "--kdf", "test"])
        att_dir = os.path.join(cls.tmp, "att")
        os.mkdir(att_dir)
        cls.att = os.path.join(att_dir, ATT_NAME)
        with open(cls.att, "wb") as f:
            f.write(PNG)
        narr = os.path.join(cls.tmp, "narrative")
        with open(narr, "w", encoding="utf-8") as f:
            f.write(NARRATIVE)
        args = ["add", "--title", TITLE, "--narrative-file", narr, "--attach", cls.att]
        for k, v in FIELDS.items():
            args += ["--field", "%s=%s" % (k, v)]
        for t in TAGS:
            args += ["--tag", t]
        cls.hostile = cls.fv(args + ["--json"], json_out=True)["id"]
        # A name that is a Windows path is never stored (docs/FORMAT.md 6).
        cls.backslash = os.path.join(att_dir, '..\\..\\evil.png')
        with open(cls.backslash, "wb") as f:
            f.write(PNG)
        cls.plain = cls.fv(["add", "--title", "plain record", "--tag", "other", "--json"],
                           json_out=True)["id"]
        cls.fv(["edit", cls.plain, "--field", "status=second revision"])
        gone = cls.fv(["add", "--title", "deleted record", "--json"], json_out=True)["id"]
        cls.fv(["delete", gone])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def run_fv(cls, args, vault=None):
        return subprocess.run([BIN, "--vault", vault or cls.vault, "--passphrase-file", cls.pw] + args,
                              capture_output=True, env=env(), timeout=120)

    @classmethod
    def fv(cls, args, json_out=False, vault=None):
        p = cls.run_fv(args, vault)
        if p.returncode != 0:
            raise AssertionError("fieldvault %s: exit %d: %s" % (
                " ".join(args), p.returncode, p.stderr.decode(errors="replace")))
        return json.loads(p.stdout) if json_out else p.stdout

    def out(self, name):
        d = tempfile.mkdtemp(dir=self.tmp)
        return os.path.join(d, name)

    def test_path_names_refused(self):
        """An attachment name holding a path separator is refused at add
        (exit 2), so no export or reader ever meets one."""
        p = self.run_fv(["add", "--title", "named as a path", "--attach",
                         self.backslash])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(p.stderr, b"fieldvault: attachment 1 has no valid name\n")
        self.assertEqual(p.stdout, b"")

    # ---- JSON ----

    def test_json_parsed_back_equals_show(self):
        path = self.out("all.json")
        r = self.fv(["export", "--format", "json", "--output", path, "--json"], json_out=True)
        self.assertEqual(r["records"], 2)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.assertEqual(doc["fieldvault_export"], 2)
        self.assertEqual(doc["record_count"], 2)
        self.assertRegex(doc["exported_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertRegex(doc["vault_device"], r"^[0-9a-f]{64}$")
        by_id = {r["id"]: r for r in doc["records"]}
        self.assertEqual(set(by_id), {self.hostile, self.plain})
        for rid, rec in by_id.items():
            show = self.fv(["show", rid, "--json"], json_out=True)
            # one writer (cli/json_record.c): every member of a record
            # reads exactly as `show --json` prints it
            self.assertEqual(set(rec), {"id", "title", "narrative", "created", "modified",
                                        "author", "signer", "revision", "state", "fields",
                                        "tags", "attachments", "revisions", "heads", "notes"})
            for k in rec:
                self.assertEqual(rec[k], show[k], k)
            self.assertEqual(rec["author"], doc["vault_device"])
            self.assertEqual(rec["state"], "new")
            self.assertEqual(rec["notes"], [])
        h = by_id[self.hostile]
        self.assertEqual(h["title"], TITLE)
        self.assertEqual(h["narrative"], NARRATIVE)
        self.assertEqual(h["fields"], FIELDS)
        self.assertEqual(sorted(h["tags"]), sorted(TAGS))
        self.assertEqual(h["attachments"][0]["name"], ATT_NAME)
        self.assertEqual(h["attachments"][0]["size"], len(PNG))
        self.assertEqual(h["attachments"][0]["chunks_present"], h["attachments"][0]["chunks"])
        p = by_id[self.plain]
        self.assertEqual(len(p["revisions"]), 2)
        self.assertEqual(p["revisions"][1]["parents"], [p["revisions"][0]["id"]])
        self.assertEqual(p["fields"], {"status": "second revision"})

    def test_filters(self):
        def ids(*args):
            path = self.out("f.json")
            self.fv(["export", "--format", "json", "--output", path] + list(args))
            with open(path, encoding="utf-8") as f:
                return [r["id"] for r in json.load(f)["records"]]
        self.assertEqual(ids("--tag", "탈북"), [self.hostile])
        self.assertEqual(ids("--tag", "other"), [self.plain])
        self.assertEqual(ids("--record", self.plain[:8]), [self.plain])
        self.assertEqual(ids("--since", "2999-01-01"), [])
        self.assertEqual(ids("--until", "1999-12-31"), [])
        self.assertEqual(sorted(ids("--state", "new")), sorted([self.hostile, self.plain]))
        self.assertEqual(ids("--state", "archived"), [])

    def test_usage_and_existing_output(self):
        path = self.out("x.json")
        open(path, "w").close()
        p = self.run_fv(["export", "--format", "json", "--output", path])
        self.assertEqual(p.returncode, EXISTS, p.stderr)
        self.assertEqual(os.path.getsize(path), 0)
        for args in (["export", "--output", self.out("a")],
                     ["export", "--format", "pdf", "--output", self.out("b")],
                     ["export", "--format", "json"],
                     ["export", "--format", "json", "--output", self.out("c"), "--state", "done"],
                     ["export", "--format", "json", "--output", self.out("d"), "--since", "yesterday"]):
            p = self.run_fv(args)
            self.assertEqual(p.returncode, USAGE, args)
            self.assertTrue(p.stderr.startswith(b"fieldvault: "), p.stderr)

    # ---- CSV ----

    def test_csv_rows_quoting_and_formulas(self):
        path = self.out("all.csv")
        self.fv(["export", "--format", "csv", "--output", path])
        raw = read(path, True)
        self.assertTrue(raw.startswith(b"\xef\xbb\xbf"))
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["id", "created", "modified", "author", "signer", "state",
                                   "title", "tags", "fields", "narrative", "attachments",
                                   "notes", "heads"])
        self.assertEqual(len(rows), 3)
        by_id = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
        h = by_id[self.hostile]
        # A cell starting with = + - @ would run as a formula: prefixed with '.
        self.assertEqual(h["title"], "'" + TITLE)
        self.assertEqual(h["narrative"], NARRATIVE)
        self.assertEqual(h["state"], "new")
        tags = h["tags"][1:] if h["tags"][0] == "'" else h["tags"]
        self.assertEqual(sorted(tags.split("\n")), sorted(TAGS))
        fields = h["fields"]
        self.assertFalse(fields[0] in "=+-@")
        parsed = {}
        for line in fields.split("\n"):
            k, v = line.split("=", 1)
            parsed[k] = v.replace("\\n", "\n").replace("\\\\", "\\")
        self.assertEqual(parsed, FIELDS)
        self.assertEqual(h["attachments"], ATT_NAME)
        self.assertEqual(by_id[self.plain]["title"], "plain record")
        for r in rows[1:]:
            for cell in r:
                self.assertFalse(cell[:1] in ("=", "+", "-", "@"), cell)

    # ---- HTML ----

    def test_html_self_contained_and_escaped(self):
        path = self.out("report")
        self.fv(["export", "--format", "html", "--output", path])
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o700)
        pages = []
        for dirpath, dirnames, filenames in os.walk(path):
            for n in filenames:
                p = os.path.join(dirpath, n)
                self.assertFalse(os.path.islink(p))
                self.assertTrue(os.path.realpath(p).startswith(os.path.realpath(path) + os.sep))
                if n.endswith((".html", ".css")):
                    text = read(p)
                    m = NETWORK.search(text)
                    self.assertIsNone(m, "%s: %r" % (p, m and text[max(0, m.start() - 40):m.end() + 40]))
                    pages.append((p, text))
        self.assertEqual(sorted(os.listdir(path)), ["files", "index.html", "records", "style.css"])
        index = read(os.path.join(path, "index.html"))
        self.assertIn("<svg", index)
        self.assertIn("탈북", index)
        self.assertNotIn("<b>bold</b>", index)
        self.assertIn("&lt;b&gt;bold&lt;/b&gt;", index)
        for rid in (self.hostile, self.plain):
            self.assertIn('href="records/%s.html"' % rid, index)
        page = read(os.path.join(path, "records", self.hostile + ".html"))
        self.assertNotIn("<script", page)
        self.assertNotIn("<img src=x", page)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page)
        # A vault that cannot ask the server for names shows devices by
        # their short id, the full id in a tooltip.
        dev = self.fv(["show", self.hostile, "--json"], json_out=True)["author"]
        self.assertIn('<span class="id" title="%s">%s</span>' % (dev, dev[:12]), page)
        self.assertIn('<span class="id" title="%s">%s</span>' % (dev, dev[:12]), index)
        # The attachment: copied under a sanitized name, exact bytes, shown inline.
        files = os.listdir(os.path.join(path, "files", self.hostile))
        self.assertEqual(len(files), 1)
        self.assertRegex(files[0], r"^[A-Za-z0-9._-]+$")
        self.assertFalse(files[0].startswith("."))
        with open(os.path.join(path, "files", self.hostile, files[0]), "rb") as f:
            self.assertEqual(f.read(), PNG)
        self.assertIn('<img src="../files/%s/%s"' % (self.hostile, files[0]), page)
        for src in re.findall(r'<img src="([^"]*)"', "".join(t for _, t in pages)):
            self.assertTrue(src.startswith("../files/"), src)
        if os.path.exists(CHROMIUM):
            self.render(os.path.join(path, "index.html"), "&lt;b&gt;bold&lt;/b&gt;")
            self.render(os.path.join(path, "records", self.hostile + ".html"),
                        "alert(1)&lt;/script&gt;")
        else:
            print("test_export: %s not found: HTML not rendered" % CHROMIUM, file=sys.stderr)

    def render(self, page, expect):
        prof = tempfile.mkdtemp(dir=self.tmp)
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--no-first-run", "--user-data-dir=" + prof,
                            "--dump-dom", "file://" + page],
                           capture_output=True, timeout=120)
        dom = p.stdout.decode("utf-8", errors="replace")
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        self.assertIn("증언 " + expect if "bold" in expect else expect, dom)
        self.assertNotIn("<script", dom)

    # ---- evidence ----

    def test_evidence_verifies_independently(self):
        path = self.out("evidence")
        self.fv(["export", "--format", "evidence", "--output", path])
        self.assertEqual(sorted(os.listdir(path)),
                         ["README.txt", "chunks", "envelopes", "manifest.json"])
        with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
            m = json.load(f)
        self.assertEqual(m["record_count"], 2)
        envs = [e for r in m["records"] for e in r["envelopes"]]
        self.assertEqual(len(envs), 3)  # one revision, and two of the edited record
        for e in envs:
            data = read(os.path.join(path, e["file"]), True)
            self.assertEqual(hashlib.blake2b(data, digest_size=32).hexdigest(), e["id"])
        # Nothing decrypted in the evidence: no content of the records.
        for dirpath, _, filenames in os.walk(path):
            for n in filenames:
                blob = read(os.path.join(dirpath, n), True)
                for secret in ("HYPERLINK", "plain record", "second revision", "탈북"):
                    self.assertNotIn(secret.encode(), blob, n)
                self.assertNotIn(PNG[8:], blob, n)
        self.check_evidence(path, 0)
        # One flipped byte in an envelope, then in a chunk: caught.
        for victim in (os.path.join(path, envs[0]["file"]),
                       os.path.join(path, "chunks", os.listdir(os.path.join(path, "chunks"))[0])):
            data = bytearray(read(victim, True))
            data[len(data) // 2] ^= 0x01
            with open(victim, "wb") as f:
                f.write(data)
            self.check_evidence(path, 1)
            data[len(data) // 2] ^= 0x01
            with open(victim, "wb") as f:
                f.write(data)
            self.check_evidence(path, 0)

    def test_evidence_checker_refuses_each_tampering(self):
        """verify_evidence.py refuses an export changed in any way the
        manifest or the directory could be: a stray file or directory, a
        symbolic link for a chunk, a record whose revision is not a head, a
        changed origin, a wrong size."""
        path = self.out("evidence")
        self.fv(["export", "--format", "evidence", "--output", path])
        self.check_evidence(path, 0)
        mpath = os.path.join(path, "manifest.json")
        with open(mpath, encoding="utf-8") as f:
            manifest = f.read()
        m = json.loads(manifest)
        edited = [r for r in m["records"] if len(r["envelopes"]) == 2][0]
        first = edited["envelopes"][0]["id"]

        def tampered(change):
            t = json.loads(manifest)
            change(t)
            return t

        def set_rec(field, value):
            return lambda t: [r.__setitem__(field, value) for r in t["records"]
                              if r["id"] == edited["id"]]

        def set_bytes(t):
            t["records"][0]["envelopes"][0]["bytes"] += 1

        for what, change in (
                ("revision not a head", set_rec("revision", first)),
                ("revision of no envelope", set_rec("revision", "ab" * 32)),
                ("origin changed", set_rec("origin", "cd" * 32)),
                ("origin zeroed", set_rec("origin", "00" * 32)),
                ("bytes wrong", set_bytes)):
            with self.subTest(what):
                with open(mpath, "w", encoding="utf-8") as f:
                    json.dump(tampered(change), f)
                self.check_evidence(path, 1)
        with open(mpath, "w", encoding="utf-8") as f:
            f.write(manifest)
        self.check_evidence(path, 0)

        chunk = os.listdir(os.path.join(path, "chunks"))[0]
        cpath = os.path.join(path, "chunks", chunk)
        for what, make, undo in (
                ("stray file", lambda: open(os.path.join(path, "notes.txt"), "w").close(),
                 lambda: os.unlink(os.path.join(path, "notes.txt"))),
                ("stray directory", lambda: os.mkdir(os.path.join(path, "extra")),
                 lambda: os.rmdir(os.path.join(path, "extra"))),
                ("stray envelope file",
                 lambda: open(os.path.join(path, "envelopes", "ef" * 32 + ".cose"), "w").close(),
                 lambda: os.unlink(os.path.join(path, "envelopes", "ef" * 32 + ".cose"))),
                ("chunk as a symbolic link",
                 lambda: (os.rename(cpath, os.path.join(path, "..", "moved")),
                          os.symlink(os.path.abspath(os.path.join(path, "..", "moved")), cpath)),
                 lambda: (os.unlink(cpath), os.rename(os.path.join(path, "..", "moved"), cpath)))):
            with self.subTest(what):
                make()
                self.check_evidence(path, 1)
                undo()
                self.check_evidence(path, 0)

    def check_evidence(self, path, want):
        p = subprocess.run([sys.executable, VERIFY_EVIDENCE, path], capture_output=True,
                           timeout=120)
        self.assertEqual(p.returncode, want, p.stdout + p.stderr)

    # ---- verify ----

    def test_verify_catches_a_flipped_byte(self):
        vault = os.path.join(self.tmp, "tampered")
        shutil.copytree(self.vault, vault)
        r = self.fv(["verify", "--json"], json_out=True, vault=vault)
        self.assertTrue(r["ok"])
        self.assertEqual(r["problems"], [])
        self.assertGreaterEqual(r["envelopes"], 4)
        self.assertEqual(r["chunks"], 1)
        self.assertEqual(self.run_fv(["verify"], vault).returncode, OK)
        db = os.path.join(vault, "vault.db")
        con = sqlite3.connect(db)
        (blob,) = con.execute("SELECT bytes FROM envelope WHERE id = ?",
                              (bytes.fromhex(self.hostile),)).fetchone()
        b = bytearray(blob)
        b[len(b) // 2] ^= 0x40
        con.execute("UPDATE envelope SET bytes = ? WHERE id = ?", (bytes(b), bytes.fromhex(self.hostile)))
        (h, data) = con.execute("SELECT hash, data FROM chunk").fetchone()
        d = bytearray(data)
        d[0] ^= 0x01
        con.execute("UPDATE chunk SET data = ? WHERE hash = ?", (bytes(d), h))
        con.commit()
        con.close()
        p = self.run_fv(["verify", "--json"], vault)
        self.assertEqual(p.returncode, CORRUPT, p.stderr)
        r = json.loads(p.stdout)
        self.assertFalse(r["ok"])
        self.assertEqual(r["failures"], 2)
        self.assertEqual(len(r["problems"]), 2)
        self.assertIn(self.hostile, [x["envelope"] for x in r["problems"]])
        p = self.run_fv(["verify"], vault)
        self.assertEqual(p.returncode, CORRUPT)
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len([l for l in lines if l.startswith("FAIL record")]), 2)
        self.assertIn(self.hostile, p.stdout.decode())
        # An export refuses to vouch for a tampered vault: nothing written.
        out = self.out("t.json")
        p = self.run_fv(["export", "--format", "json", "--output", out], vault)
        self.assertEqual(p.returncode, CORRUPT, p.stderr)
        self.assertEqual(os.listdir(os.path.dirname(out)), [])

    # ---- cancel ----

    def big_vault(self):
        """A vault whose one record has a 48 MiB attachment: exporting or
        verifying it takes a while."""
        vault = os.path.join(self.tmp, "big-vault")
        if not os.path.exists(vault):
            self.fv(["init", "--kdf", "test"], vault=vault)
            big = os.path.join(self.tmp, "big.bin")
            with open(big, "wb") as f:
                f.write(os.urandom(48 << 20))
            self.fv(["add", "--title", "long recording", "--attach", big], vault=vault)
            os.unlink(big)
        return vault

    def test_sigterm_stops_an_export_without_a_terminal(self):
        """stderr is a pipe here (no progress line): SIGTERM must still stop
        the export (exit 12) and leave nothing of it, not let it finish."""
        vault = self.big_vault()
        d = tempfile.mkdtemp(dir=self.tmp)
        path = os.path.join(d, "report")
        p = subprocess.Popen([BIN, "--vault", vault, "--passphrase-file", self.pw,
                              "export", "--format", "html", "--output", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        # The temporary directory appears once the export runs (the signals
        # are caught by then); the attachment takes a while to decrypt.
        deadline = time.monotonic() + 60
        while not os.listdir(d) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, CANCELED, err)
        self.assertEqual(os.listdir(d), [], "the export left files behind")

    def test_sigterm_stops_verify(self):
        """verify writes nothing: SIGTERM ends it at once, it is not caught
        and ignored until every chunk is checked."""
        vault = self.big_vault()
        db = os.path.realpath(os.path.join(vault, "vault.db"))
        p = subprocess.Popen([BIN, "--vault", vault, "--passphrase-file", self.pw, "verify"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())

        def opened():
            try:
                fds = os.listdir("/proc/%d/fd" % p.pid)
                return any(os.readlink("/proc/%d/fd/%s" % (p.pid, n)) == db for n in fds)
            except OSError:
                return False
        deadline = time.monotonic() + 60
        while not opened() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)  # the vault is open: verify is under way
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, -signal.SIGTERM, (out, err))


class ReceiptTest(test_sync.SyncTest):
    """The server's signed receipts: checked by verify, carried into the
    evidence and checked there without FieldVault's code."""

    def test_receipts_in_verify_and_evidence(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "F")
        photo = self.write("photo.png", PNG)
        rid = self.add(f, "delivered testimony", "--attach", photo)
        self.settle(f)
        j = self.jv(f, "verify")
        self.assertTrue(j["ok"], j)
        self.assertGreaterEqual(j["receipts"], 1)
        self.assertEqual(j["chunks"], 1)
        out = self.path("evidence")
        self.v(f, "export", "--format", "evidence", "--output", out)
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as fh:
            m = json.load(fh)
        self.assertGreaterEqual(len(m["receipts"]), 1)
        self.assertRegex(m["server_receipt_key"], r"^[0-9a-f]{64}$")
        self.assertEqual([r["id"] for r in m["records"]], [rid])
        p = subprocess.run([sys.executable, VERIFY_EVIDENCE, out], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(b"receipts verified", p.stdout)
        # A forged receipt in the evidence: caught.
        m["receipts"][0]["sig"] = ("00" if m["receipts"][0]["sig"][:2] != "00" else "11") + \
            m["receipts"][0]["sig"][2:]
        with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(m, fh)
        p = subprocess.run([sys.executable, VERIFY_EVIDENCE, out], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        # The coordinator pulled everything: its copy verifies too.
        self.settle(c)
        j = self.jv(c, "verify")
        self.assertTrue(j["ok"], j)
        self.assertGreaterEqual(j["envelopes"], 1)
        # Receipts are sealed at rest: no receipt body (its server time,
        # the organisation's log positions) anywhere in the vault's files.
        for name in os.listdir(f):
            with open(os.path.join(f, name), "rb") as fh:
                self.assertNotIn(b"FieldVault receipt v1", fh.read(), name)
        # A flipped byte in a stored receipt: verify exits 5.
        db = sqlite3.connect(os.path.join(f, "vault.db"))
        seq, sealed = db.execute("SELECT seq, sealed FROM receipt ORDER BY seq LIMIT 1").fetchone()
        sealed = bytearray(sealed)
        sealed[len(sealed) - 70] ^= 0x01
        db.execute("UPDATE receipt SET sealed = ? WHERE seq = ?", (bytes(sealed), seq))
        db.commit()
        db.close()
        r = test_sync.run(["--vault", f, "--passphrase-file", self.passfile, "--json", "verify"])
        self.assertEqual(r.returncode, CORRUPT, r.stderr)
        self.assertTrue(r.stderr.startswith(b"fieldvault: verify: 1 check failed"), r.stderr)
        j = json.loads(r.stdout)
        self.assertFalse(j["ok"])
        self.assertEqual(j["failures"], 1)
        self.assertIn("receipt", j["problems"][0]["problem"])


def main():
    global BIN
    if len(sys.argv) < 2:
        raise SystemExit("usage: test_export.py FIELDVAULT_BINARY [unittest options]")
    BIN = os.path.abspath(sys.argv.pop(1))
    test_sync.BIN = BIN
    unittest.main()


if __name__ == "__main__":
    main()
