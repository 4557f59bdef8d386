#!/usr/bin/python3
"""End-to-end tests of the `fieldvault` command.

Runs the real binary as subprocesses against vaults made with `init --kdf test`
in temporary directories. Standard library only.

    python3 tests/test_cli.py build/bin/fieldvault [unittest options]

The binary may also be given as FIELDVAULT_BIN. The full-disk test mounts a
1 MiB tmpfs and is skipped (with the reason) where mounting is not allowed;
nothing else is ever skipped.
"""

import calendar
import hashlib
import json
import os
import pty
import random
import re
import secrets
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

import test_sync  # servers and organisations, for TestDeskCoordinator

BIN = None  # set in main()

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LIST_LINE = re.compile(
    rb"^([0-9a-f]{64})  (\d{4}-\d\d-\d\d \d\d:\d\d)  (.*?)( \[conflict\])?$")
CHUNK = 256 * 1024

# Exit codes (the table at the top of cli/main.c).
OK, FAIL, USAGE, PASSPHRASE, NOVAULT, CORRUPT = 0, 1, 2, 3, 4, 5
VERSION, NOTFOUND, IO, NOSPACE, EXISTS, CANCELED = 7, 8, 9, 10, 11, 12
DENIED = 15

LIST_KEYS = {"id", "title", "created", "modified", "tags", "attachments",
             "conflict", "complete", "state", "author", "notes", "readable"}
SHOW_KEYS = {"id", "title", "narrative", "created", "modified", "author",
             "signer", "revision", "state", "fields", "tags", "attachments",
             "revisions", "heads", "head_records", "notes", "delivered"}
# One revision's content: show's top level, and each of its head_records.
RECORD_KEYS = SHOW_KEYS - {"revisions", "heads", "head_records", "notes",
                           "delivered"}
NOTE_KEYS = {"id", "record", "author", "time", "text"}
REV_KEYS = {"id", "kind", "time", "author", "parents", "head"}
ATT_KEYS = {"name", "size", "chunks", "chunks_present"}
COMMANDS = ["init", "add", "list", "show", "edit", "delete", "search",
            "attachment", "passwd", "panic", "version", "config", "review",
            "note", "notes", "merge", "retract", "retractions", "quarantine", "duress"]


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FIELDVAULT_")}
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def run(args, stdin=None, env=None, timeout=300, pass_fds=()):
    """Runs the binary in a new session (no controlling terminal, so a
    missing passphrase source fails instead of prompting)."""
    return subprocess.run(
        [BIN] + list(args),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env if env is not None else clean_env(),
        timeout=timeout, start_new_session=True, pass_fds=pass_fds)


class CliTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fvtest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.passfile = self.write("pass.txt", b"correct horse battery\n")

    # ---- helpers --------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, data):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def fv(self, *args, expect=OK, stdin=None, env=None, pass_fds=()):
        """Runs fieldvault and checks its exit code. On failure codes, also
        checks the one-line `fieldvault: ...` diagnostic."""
        r = run(args, stdin=stdin, env=env, pass_fds=pass_fds)
        self.assertEqual(
            r.returncode, expect,
            "fieldvault %s: exit %d, want %d\nstdout: %r\nstderr: %r" % (
                " ".join(map(str, args)), r.returncode, expect,
                r.stdout[:2000], r.stderr[:2000]))
        if expect != OK:
            self.assertTrue(r.stderr.startswith(b"fieldvault: "), r.stderr)
            self.assertEqual(r.stderr.count(b"\n"), 1,
                             "want one line on stderr: %r" % r.stderr)
        return r

    def v(self, vault, *args, passfile=None, **kw):
        """fieldvault --vault VAULT --passphrase-file PASS ARGS..."""
        return self.fv("--vault", vault, "--passphrase-file",
                       passfile or self.passfile, *args, **kw)

    def jv(self, vault, *args, **kw):
        r = self.v(vault, "--json", *args, **kw)
        try:
            return json.loads(r.stdout.decode("utf-8"))
        except ValueError as e:
            self.fail("not one JSON document (%s): %r" % (e, r.stdout[:2000]))

    def make_vault(self, name="vault"):
        d = self.path(name)
        r = self.v(d, "init", "--kdf", "test")
        self.assertTrue(r.stdout, "init printed nothing")
        self.assertTrue(os.path.exists(os.path.join(d, "vault.key")))
        return d

    def add(self, vault, title, *args):
        r = self.v(vault, "add", "--title", title, *args)
        out = r.stdout.decode().strip()
        self.assertRegex(out, HEX64)
        return out

    def list_ids(self, vault, expect=OK):
        r = self.v(vault, "--json", "list", expect=expect)
        return [x["id"] for x in json.loads(r.stdout)]

    def show(self, vault, rid):
        return self.jv(vault, "show", rid)


# ---- help, version, argument parsing ---------------------------------------

class TestHelpAndUsage(CliTest):
    def test_help_for_every_command(self):
        r = self.fv("--help")
        self.assertIn(b"usage: fieldvault", r.stdout)
        self.assertEqual(r.stderr, b"")
        for cmd in COMMANDS:
            with self.subTest(cmd=cmd):
                r = self.fv(cmd, "--help")
                self.assertIn(b"usage: fieldvault", r.stdout)
                self.assertIn(cmd.encode(), r.stdout)
                r2 = self.fv("help", cmd)
                self.assertEqual(r.stdout, r2.stdout)
                r3 = self.fv(cmd, "-h")
                self.assertEqual(r.stdout, r3.stdout)
        self.fv("attachment", "get", "--help")
        # help needs no vault and no passphrase
        self.fv("--vault", self.path("none"), "show", "--help")

    def test_quarantine_of_a_lone_vault(self):
        """A vault on its own keeps nothing apart: its own envelopes are
        always its own (a twin's bundle is the same device)."""
        d = self.make_vault()
        self.add(d, "one")
        self.assertEqual(self.jv(d, "quarantine"), [])
        self.assertEqual(self.v(d, "quarantine").stdout, b"")
        self.v(d, "quarantine", "extra", expect=USAGE)
        self.v(d, "quarantine", "--bogus", expect=USAGE)

    def test_version(self):
        a = self.fv("version").stdout
        b = self.fv("--version").stdout
        self.assertEqual(a, b)
        self.assertRegex(a.decode(), r"^fieldvault \d+\.\d+\.\d+")
        j = json.loads(self.fv("--json", "version").stdout)
        self.assertRegex(j["version"], r"^\d+\.\d+\.\d+$")

    def test_usage_errors(self):
        d = self.make_vault()
        rid = self.add(d, "one")
        bad = [
            ("--bogus", "list"),
            ("list", "--bogus"),
            ("frobnicate",),
            (),
            ("add",),                               # no --title
            ("add", "--title"),                     # missing value
            ("add", "--title", "a", "--title", "b"),
            ("add", "--title", "a", "--field", "novalue"),
            ("add", "--title", "a", "--field", "=v"),
            ("add", "--title", "a", "extra"),
            ("init", "--kdf", "fast"),
            ("show",),
            ("show", rid, rid),
            ("show", "abc"),                        # prefix too short
            ("show", "zzzz"),                       # not hex
            ("edit", rid),                          # nothing to change
            ("attachment", "get", rid),
            ("attachment", "put", rid, "x", "--output", "y"),
            ("attachment", "get", rid, "x"),        # no --output
            ("--json", "list", "--json=yes"),
            ("list", "--passphrase-fd", "x"),
        ]
        for args in bad:
            with self.subTest(args=args):
                r = self.fv("--vault", d, "--passphrase-file", self.passfile,
                            *args, expect=USAGE)
                self.assertEqual(r.stdout, b"")
        self.assertEqual(self.list_ids(d), [rid])
        r = self.fv("--vault", d, "--passphrase-fd", "-1", "list",
                    expect=USAGE)

    def test_global_options_after_command(self):
        d = self.make_vault()
        rid = self.add(d, "after")
        r = self.fv("list", "--vault", d, "--passphrase-file", self.passfile,
                    "--json")
        self.assertEqual([x["id"] for x in json.loads(r.stdout)], [rid])
        r = self.fv("show", rid, "--json", "--vault=" + d,
                    "--passphrase-file=" + self.passfile)
        self.assertEqual(json.loads(r.stdout)["id"], rid)
        # "--" ends the options: a search for text that starts with '-'
        self.add(d, "-dash title")
        r = self.fv("--vault", d, "--passphrase-file", self.passfile,
                    "--json", "search", "--", "-dash")
        self.assertEqual(len(json.loads(r.stdout)), 1)


# ---- passphrase sources and vault location ---------------------------------

class TestPassphraseAndLocation(CliTest):
    def test_passphrase_sources(self):
        d = self.make_vault()
        rid = self.add(d, "p")
        # FIELDVAULT_PASSPHRASE_FILE
        env = clean_env({"FIELDVAULT_PASSPHRASE_FILE": self.passfile})
        r = self.fv("--vault", d, "--json", "list", env=env)
        self.assertEqual(json.loads(r.stdout)[0]["id"], rid)
        # --passphrase-file wins over the environment
        wrong = self.write("wrong.txt", b"wrong\n")
        env = clean_env({"FIELDVAULT_PASSPHRASE_FILE": wrong})
        self.fv("--vault", d, "--passphrase-file", self.passfile, "list",
                env=env)
        self.fv("--vault", d, "list", env=env, expect=PASSPHRASE)
        # --passphrase-fd 0 and another descriptor
        self.fv("--vault", d, "--passphrase-fd", "0", "list",
                stdin=b"correct horse battery\n")
        rfd, wfd = os.pipe()
        os.write(wfd, b"correct horse battery\r\n")
        os.close(wfd)
        try:
            self.fv("--vault", d, "--passphrase-fd", str(rfd), "list",
                    pass_fds=(rfd,))
        finally:
            os.close(rfd)
        # one trailing newline is stripped, not two
        two = self.write("two.txt", b"correct horse battery\n\n")
        self.fv("--vault", d, "--passphrase-file", two, "list",
                expect=PASSPHRASE)
        crlf = self.write("crlf.txt", b"correct horse battery\r\n")
        self.fv("--vault", d, "--passphrase-file", crlf, "list")
        bare = self.write("bare.txt", b"correct horse battery")
        self.fv("--vault", d, "--passphrase-file", bare, "list")

    def test_no_source_and_no_terminal(self):
        d = self.make_vault()
        r = self.fv("--vault", d, "list", expect=USAGE)
        self.assertIn(b"passphrase", r.stderr)
        r = self.fv("--vault", self.path("v2"), "init", "--kdf", "test",
                    expect=USAGE)
        self.assertFalse(os.path.exists(self.path("v2", "vault.key")))

    def test_bad_passphrase_files(self):
        empty = self.write("empty.txt", b"")
        nl = self.write("nl.txt", b"\n")
        big = self.write("big.txt", b"x" * 5000)
        for pf in (empty, nl, big):
            with self.subTest(pf=pf):
                self.fv("--vault", self.path("v"), "--passphrase-file", pf,
                        "init", "--kdf", "test", expect=USAGE)
                self.assertFalse(os.path.exists(self.path("v", "vault.key")))
        self.fv("--vault", self.path("v"), "--passphrase-file",
                self.path("missing.txt"), "init", "--kdf", "test", expect=IO)
        d = self.make_vault()
        self.fv("--vault", d, "--passphrase-file", empty, "list",
                expect=USAGE)

    def test_vault_location(self):
        # FIELDVAULT_DIR
        d = self.path("envdir")
        env = clean_env({"FIELDVAULT_DIR": d})
        self.fv("--passphrase-file", self.passfile, "init", "--kdf", "test",
                env=env)
        self.assertTrue(os.path.exists(os.path.join(d, "vault.key")))
        # --vault wins over FIELDVAULT_DIR
        other = self.path("other")
        self.fv("--vault", other, "--passphrase-file", self.passfile, "init",
                "--kdf", "test", env=env)
        self.assertTrue(os.path.exists(os.path.join(other, "vault.key")))
        # XDG_DATA_HOME
        xdg = self.path("xdg")
        os.makedirs(xdg)
        env = clean_env({"XDG_DATA_HOME": xdg, "HOME": self.path("home")})
        j = json.loads(self.fv("--passphrase-file", self.passfile, "--json",
                               "init", "--kdf", "test", env=env).stdout)
        self.assertEqual(j["vault"], os.path.join(xdg, "fieldvault"))
        self.assertTrue(os.path.exists(os.path.join(xdg, "fieldvault",
                                                    "vault.key")))
        # HOME/.local/share (parents created)
        env = clean_env({"HOME": self.path("home")})
        env.pop("XDG_DATA_HOME", None)
        self.fv("--passphrase-file", self.passfile, "init", "--kdf", "test",
                env=env)
        self.assertTrue(os.path.exists(self.path(
            "home", ".local", "share", "fieldvault", "vault.key")))


# ---- the main job ---------------------------------------------------------------

class TestHappyPath(CliTest):
    def test_init_json(self):
        d = self.path("v")
        j = self.jv(d, "init", "--kdf", "test")
        self.assertEqual(set(j), {"vault", "device"})
        self.assertEqual(j["vault"], d)
        self.assertRegex(j["device"], HEX64)
        self.assertEqual(os.stat(d).st_mode & 0o777, 0o700)
        self.fv("--vault", d, "--passphrase-file", self.passfile, "init",
                "--kdf", "test", expect=EXISTS)

    def test_add_list_show_edit_delete(self):
        d = self.path("v")
        device = self.jv(d, "init", "--kdf", "test")["device"]
        narrative = b"First paragraph.\nSecond paragraph.\n"
        nf = self.write("n.txt", narrative)
        att = self.write("files/photo.jpg", os.urandom(1000))
        j = self.jv(d, "add", "--title", "Crossing at night",
                    "--narrative-file", nf, "--field", "place=Yanji",
                    "--field", "interviewee=W-017", "--field", "eq=a=b",
                    "--tag", "detention", "--tag", "border",
                    "--attach", att)
        self.assertEqual(set(j), {"id"})
        rid = j["id"]
        self.assertRegex(rid, HEX64)
        rid2 = self.add(d, "Second record")

        # list --json
        lst = self.jv(d, "list")
        self.assertIsInstance(lst, list)
        self.assertEqual([x["id"] for x in lst], [rid, rid2])
        for x in lst:
            self.assertEqual(set(x), LIST_KEYS)
            self.assertRegex(x["created"], ISO_UTC)
            self.assertRegex(x["modified"], ISO_UTC)
            self.assertIs(x["conflict"], False)
            self.assertIs(x["complete"], True)  # written here: all present
        self.assertEqual(lst[0]["title"], "Crossing at night")
        self.assertEqual(sorted(lst[0]["tags"]), ["border", "detention"])
        self.assertEqual(lst[0]["attachments"], 1)
        self.assertEqual(lst[1]["tags"], [])
        self.assertEqual(lst[1]["attachments"], 0)

        # list, text
        lines = self.v(d, "list").stdout.splitlines()
        self.assertEqual(len(lines), 2)
        m = LIST_LINE.match(lines[0])
        self.assertTrue(m, lines[0])
        self.assertEqual(m.group(1).decode(), rid)
        self.assertEqual(m.group(3), b"Crossing at night")
        self.assertEqual(m.group(2).decode(),
                         lst[0]["created"][:16].replace("T", " "))

        # show --json
        s = self.show(d, rid)
        self.assertEqual(set(s), SHOW_KEYS)
        # one head: head_records holds the shown content once
        self.assertEqual(s["head_records"],
                         [{k: s[k] for k in RECORD_KEYS}])
        self.assertEqual(s["id"], rid)
        self.assertEqual(s["title"], "Crossing at night")
        self.assertEqual(s["narrative"], narrative.decode())
        self.assertEqual(s["fields"], {"place": "Yanji",
                                       "interviewee": "W-017", "eq": "a=b"})
        self.assertEqual(sorted(s["tags"]), ["border", "detention"])
        self.assertEqual(s["author"], device)
        self.assertRegex(s["created"], ISO_UTC)
        self.assertEqual(len(s["attachments"]), 1)
        self.assertEqual(set(s["attachments"][0]), ATT_KEYS)
        self.assertEqual(s["attachments"][0]["name"], "photo.jpg")
        self.assertEqual(s["attachments"][0]["size"], 1000)
        self.assertEqual(s["attachments"][0]["chunks"], 1)
        self.assertEqual(s["attachments"][0]["chunks_present"], 1)
        self.assertIs(s["delivered"], False)  # never synced
        self.assertEqual(len(s["revisions"]), 1)
        rev0 = s["revisions"][0]
        self.assertEqual(set(rev0), REV_KEYS)
        self.assertEqual(rev0["kind"], "revision")
        self.assertEqual(rev0["parents"], [])
        self.assertIs(rev0["head"], True)
        self.assertEqual(rev0["author"], device)
        self.assertRegex(rev0["time"], ISO_UTC)
        self.assertEqual(s["heads"], [rev0["id"]])

        # show, text
        t = self.v(d, "show", rid).stdout
        for want in (rid.encode(), b"Crossing at night", b"place", b"Yanji",
                     b"detention", b"photo.jpg", b"1000", narrative,
                     rev0["id"].encode()):
            self.assertIn(want, t)

        # a prefix resolves
        self.assertEqual(self.show(d, rid[:10])["id"], rid)
        self.assertEqual(self.show(d, rid.upper()[:12])["id"], rid)

        # edit, with the narrative from standard input
        att2 = self.write("files/audio.m4a", os.urandom(5000))
        e = self.jv(d, "edit", rid[:8], "--title", "Crossing at dawn",
                    "--narrative-file", "-", "--field", "place=Tumen",
                    "--remove-field", "eq", "--field", "age_range=30-39",
                    "--tag", "river", "--remove-tag", "border",
                    "--attach", att2, "--remove-attachment", "photo.jpg",
                    stdin=b"A new narrative.\n")
        self.assertEqual(set(e), {"id", "revision"})
        self.assertEqual(e["id"], rid)
        self.assertRegex(e["revision"], HEX64)
        self.assertNotEqual(e["revision"], rid)
        s2 = self.show(d, rid)
        self.assertEqual(s2["id"], rid)
        self.assertEqual(s2["title"], "Crossing at dawn")
        self.assertEqual(s2["narrative"], "A new narrative.\n")
        self.assertEqual(s2["fields"], {"place": "Tumen",
                                        "interviewee": "W-017",
                                        "age_range": "30-39"})
        self.assertEqual(sorted(s2["tags"]), ["detention", "river"])
        self.assertEqual([a["name"] for a in s2["attachments"]],
                         ["audio.m4a"])
        self.assertEqual(s2["created"], s["created"])
        self.assertGreaterEqual(s2["modified"], s["modified"])
        self.assertEqual(len(s2["revisions"]), 2)
        self.assertEqual(s2["revisions"][0]["id"], rev0["id"])
        self.assertIs(s2["revisions"][0]["head"], False)
        self.assertEqual(s2["revisions"][1]["id"], e["revision"])
        self.assertEqual(s2["revisions"][1]["parents"], [rev0["id"]])
        self.assertIs(s2["revisions"][1]["head"], True)
        self.assertEqual(s2["heads"], [e["revision"]])
        # text edit prints the revision id
        rev2 = self.v(d, "edit", rid, "--tag", "more").stdout.decode().strip()
        self.assertRegex(rev2, HEX64)
        self.assertEqual(self.show(d, rid)["heads"], [rev2])
        # the narrative is kept when not given
        self.assertEqual(self.show(d, rid)["narrative"], "A new narrative.\n")

        # delete
        dj = self.jv(d, "delete", rid)
        self.assertEqual(dj, {"id": rid, "deleted": True})
        self.v(d, "show", rid, expect=NOTFOUND)
        self.v(d, "delete", rid, expect=NOTFOUND)
        self.v(d, "edit", rid, "--title", "x", expect=NOTFOUND)
        self.assertEqual(self.list_ids(d), [rid2])
        self.v(d, "delete", rid2)
        self.assertEqual(self.list_ids(d), [])
        self.assertEqual(self.v(d, "list").stdout, b"")

    def test_search(self):
        d = self.make_vault()
        a = self.add(d, "Interview in Yanji", "--field", "place=Hunchun")
        b = self.add(d, "Second interview", "--tag", "Detention")
        nf = self.write("n.txt", b"She crossed the river at night.")
        c = self.add(d, "Third", "--narrative-file", nf)
        self.assertEqual([x["id"] for x in self.jv(d, "search", "YANJI")],
                         [a])
        self.assertEqual([x["id"] for x in self.jv(d, "search", "interview")],
                         [a, b])
        self.assertEqual([x["id"] for x in self.jv(d, "search", "hunchun")],
                         [a])
        self.assertEqual([x["id"] for x in self.jv(d, "search", "detention")],
                         [b])
        self.assertEqual([x["id"] for x in self.jv(d, "search", "river")], [c])
        r = self.jv(d, "search", "nothing-matches-this")
        self.assertEqual(r, [])
        for x in self.jv(d, "search", "i"):
            self.assertEqual(set(x), LIST_KEYS)
        lines = self.v(d, "search", "interview").stdout.splitlines()
        self.assertEqual([LIST_LINE.match(l).group(1).decode()
                          for l in lines], [a, b])

    def test_attachment_get_and_errors(self):
        d = self.make_vault()
        data = os.urandom(4321)
        src = self.write("files/doc.pdf", data)
        rid = self.add(d, "with file", "--attach", src)
        out = self.path("out.pdf")
        self.v(d, "attachment", "get", rid, "doc.pdf", "--output", out)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
        # an existing output file is never overwritten
        self.write("exists.bin", b"keep me")
        self.v(d, "attachment", "get", rid, "doc.pdf", "--output",
               self.path("exists.bin"), expect=EXISTS)
        with open(self.path("exists.bin"), "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        # unknown name, unknown record
        self.v(d, "attachment", "get", rid, "nope.pdf", "--output",
               self.path("o2"), expect=NOTFOUND)
        self.assertFalse(os.path.exists(self.path("o2")))
        self.v(d, "attachment", "get", secrets.token_hex(32), "doc.pdf",
               "--output", self.path("o3"), expect=NOTFOUND)
        j = self.jv(d, "attachment", "get", rid, "doc.pdf", "--output",
                    self.path("o4"))
        self.assertEqual(j["id"], rid)
        self.v(d, "--json", "attachment", "get", rid, "doc.pdf", "--output",
               "-", expect=USAGE)

    def test_passwd(self):
        d = self.make_vault()
        rid = self.add(d, "before passwd")
        newpf = self.write("new.txt", b"a much better passphrase\n")
        r = self.v(d, "passwd", "--new-passphrase-file", newpf)
        self.assertEqual(r.stdout, b"passphrase changed\n")
        self.v(d, "list", expect=PASSPHRASE)
        r = self.v(d, "--json", "list", passfile=newpf)
        self.assertEqual([x["id"] for x in json.loads(r.stdout)], [rid])
        s = json.loads(self.v(d, "--json", "show", rid,
                              passfile=newpf).stdout)
        self.assertEqual(s["title"], "before passwd")
        # an empty new passphrase is refused and changes nothing
        empty = self.write("empty.txt", b"")
        self.v(d, "passwd", "--new-passphrase-file", empty, passfile=newpf,
               expect=USAGE)
        self.v(d, "list", passfile=newpf)
        # no new passphrase source and no terminal
        self.v(d, "passwd", passfile=newpf, expect=USAGE)
        self.v(d, "list", passfile=newpf)
        # wrong current passphrase
        self.v(d, "passwd", "--new-passphrase-file", self.passfile,
               expect=PASSPHRASE)

    def test_panic(self):
        d = self.make_vault()
        for i in range(5):
            self.add(d, "record %d" % i)
        t0 = time.monotonic()
        r = self.fv("--vault", d, "panic")  # no passphrase, no terminal
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0, "panic took %.2f s" % elapsed)
        self.assertEqual(r.stdout, b"")
        self.v(d, "list", expect=NOVAULT)
        left = os.listdir(d) if os.path.isdir(d) else []
        self.assertEqual(left, [], "files left after panic: %r" % left)
        self.fv("--vault", d, "panic", expect=NOVAULT)
        d2 = self.make_vault("v2")
        j = json.loads(self.fv("--vault", d2, "--json", "panic").stdout)
        self.assertEqual(j, {"vault": d2, "destroyed": True})

    def kill_passwd_until_temp(self, d):
        """Kills `passwd` at random moments of its run until one kill lands
        between writing .vault.key.tmp and renaming it (the issue saw 21 of
        123 kills land). The new passphrase is the old one, so the vault
        opens whichever key file survived. Asserts that a kill landed."""
        tmp = os.path.join(d, ".vault.key.tmp")
        args = [BIN, "--vault", d, "--passphrase-file", self.passfile,
                "passwd", "--new-passphrase-file", self.passfile]
        t0 = time.monotonic()
        self.v(d, "passwd", "--new-passphrase-file", self.passfile)
        span = time.monotonic() - t0
        for _ in range(600):
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=clean_env(),
                                 start_new_session=True)
            time.sleep(random.uniform(0, span))
            p.kill()
            p.wait()
            # A kill between creating the temp and writing it leaves it
            # empty (the next open destroys that too): wait for one that
            # holds the whole key file.
            try:
                with open(tmp, "rb") as f:
                    held = f.read()
            except FileNotFoundError:
                continue
            if held.startswith(b"FieldVlt") and len(held) == os.path.getsize(
                    os.path.join(d, "vault.key")):
                return tmp
        self.fail("no kill landed between the temp key file and its rename")

    def assert_garbage(self, before, link):
        """What a hard link reads after its file was destroyed: the same
        length, and no 16-byte block of the old content (not all zeros) at
        its offset or, for the first such block, anywhere."""
        with open(link, "rb") as f:
            after = f.read()
        self.assertEqual(len(after), len(before), link)
        blocks = [i for i in range(0, len(before) - 15, 16)
                  if before[i:i + 16] != bytes(16)]
        self.assertTrue(blocks)
        for i in blocks:
            self.assertNotEqual(after[i:i + 16], before[i:i + 16],
                                "%s keeps bytes at %d" % (link, i))
        self.assertNotIn(before[blocks[0]:blocks[0] + 16], after, link)

    def test_killed_passwd_temp_key_destroyed(self):
        # Issue 10.4: a passwd killed before its rename leaves the vault key
        # under the new passphrase in .vault.key.tmp. The next open
        # overwrites it in place (a hard link reads garbage) and removes it.
        d = self.make_vault()
        rid = self.add(d, "kept through the kill")
        tmp = self.kill_passwd_until_temp(d)
        keep = self.path("tmp-link")
        os.link(tmp, keep)
        with open(keep, "rb") as f:
            before = f.read()
        self.assertTrue(before.startswith(b"FieldVlt"), before[:8])
        r = self.v(d, "--json", "list")
        self.assertEqual([x["id"] for x in json.loads(r.stdout)], [rid])
        self.assertFalse(os.path.exists(tmp))
        self.assert_garbage(before, keep)

    def test_panic_destroys_every_copy(self):
        # Issue 10.4: panic overwrites in place every file that held the
        # key or the data (hard links made before read garbage after),
        # including a temp key file left by a killed passwd.
        d = self.make_vault()
        for i in range(20):
            self.add(d, "testimony %d" % i, "--field", "place=border %d" % i)
        self.kill_passwd_until_temp(d)
        names = [n for n in sorted(os.listdir(d)) if n != "sync.lock"]
        self.assertIn(".vault.key.tmp", names)
        self.assertIn("vault.key", names)
        self.assertIn("vault.db", names)
        saved = {}
        for n in names:
            link = self.path("link-" + n)
            os.link(os.path.join(d, n), link)
            with open(link, "rb") as f:
                saved[link] = f.read()
        self.fv("--vault", d, "panic")
        self.assertFalse(os.path.exists(d))
        for link, before in saved.items():
            if before:
                self.assert_garbage(before, link)


# ---- UTF-8 and hostile text ------------------------------------------------------

class TestText(CliTest):
    def test_korean_and_chinese_round_trip(self):
        d = self.make_vault()
        title = "탈북자 증언: 두만강을 건너다 / 脱北者证词"
        narrative = ("우리는 밤에 두만강을 건넜습니다.\n"
                     "我们在延吉的一个安全屋里进行了采访。\n"
                     "第二段：她说她害怕被遣返。\n")
        fkey, fval = "장소", "延吉市 (옌지)"
        tag = "구금"
        nf = self.write("n.txt", narrative.encode())
        att = self.write("files/녹음-录音.m4a", b"audio")
        rid = self.add(d, title, "--narrative-file", nf,
                       "--field", fkey + "=" + fval, "--tag", tag,
                       "--attach", att)
        s = self.show(d, rid)
        self.assertEqual(s["title"], title)
        self.assertEqual(s["narrative"], narrative)
        self.assertEqual(s["fields"], {fkey: fval})
        self.assertEqual(s["tags"], [tag])
        self.assertEqual(s["attachments"][0]["name"], "녹음-录音.m4a")
        # the raw JSON bytes hold the UTF-8 unescaped
        raw = self.v(d, "--json", "show", rid).stdout
        for text in (title, fkey, fval, tag):
            self.assertIn(text.encode(), raw)
        # text output, byte for byte
        t = self.v(d, "show", rid).stdout
        for text in (title, narrative, fkey, fval, tag, "녹음-录音.m4a"):
            self.assertIn(text.encode(), t)
        line = self.v(d, "list").stdout.splitlines()[0]
        self.assertTrue(line.endswith(b"  " + title.encode()), line)
        # search finds Korean and Chinese text
        other = self.add(d, "unrelated")
        for q in ("두만강", "증언", "安全屋", "구금", "옌지"):
            with self.subTest(q=q):
                self.assertEqual([x["id"] for x in self.jv(d, "search", q)],
                                 [rid])
        self.assertEqual([x["id"] for x in self.jv(d, "search", "unrel")],
                         [other])
        lines = self.v(d, "search", "두만강").stdout.splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].endswith(title.encode()))

    def test_nul_and_escapes(self):
        d = self.make_vault()
        nf = self.write("n.bin", b"before\x00after \"quoted\" \\ back\n")
        title = 'quote " backslash \\ end'
        rid = self.add(d, title, "--narrative-file", nf,
                       "--field", "tabbed=a\tb\nc")
        s = self.show(d, rid)
        self.assertEqual(s["narrative"],
                         "before\x00after \"quoted\" \\ back\n")
        self.assertEqual(s["title"], title)
        self.assertEqual(s["fields"], {"tabbed": "a\tb\nc"})
        raw = self.v(d, "--json", "show", rid).stdout
        self.assertIn(b"before\\u0000after", raw)
        self.assertIn(b'"a\\tb\\nc"', raw)
        # text output: the title as it is, the value's newline escaped
        t = self.v(d, "show", rid).stdout
        self.assertIn(title.encode(), t)
        self.assertIn(b"a\\tb\\nc", t)
        self.assertIn(b"before\\x00after", t)

    def test_control_characters_cannot_drive_the_terminal(self):
        d = self.make_vault()
        hostile = "\x1b]0;owned\x07\x1b[2J\u009b31m\r\x7f"
        nf = self.write("n.txt", ("line1\n" + hostile + "\nline2\n").encode())
        rid = self.add(d, "evil record", "--narrative-file", nf,
                       "--field", "k=v" + hostile)
        bad_bytes = (b"\x1b", b"\x07", b"\r", b"\xc2\x9b", b"\x7f")
        for args in (("list",), ("show", rid), ("search", "evil"),
                     ("--json", "show", rid), ("--json", "list")):
            with self.subTest(args=args):
                out = self.v(d, *args).stdout
                for bad in bad_bytes:
                    self.assertNotIn(bad, out)
                self.assertIn(b"evil", out)
        # JSON keeps the exact text, escaped
        s = self.show(d, rid)
        self.assertEqual(s["fields"], {"k": "v" + hostile})
        self.assertEqual(s["narrative"], "line1\n" + hostile + "\nline2\n")
        # the library may refuse control characters in a title; if it takes
        # them, they must come out escaped
        title = "t\x1b[2Jx"
        r = run(["--vault", d, "--passphrase-file", self.passfile, "add",
                 "--title", title])
        self.assertIn(r.returncode, (OK, USAGE), r.stderr)
        if r.returncode == OK:
            out = self.v(d, "list").stdout
            self.assertNotIn(b"\x1b", out)
            self.assertEqual(self.show(d, r.stdout.decode().strip())["title"],
                             title)


# ---- attachments ---------------------------------------------------------------

class TestAttachments(CliTest):
    def test_large_and_empty_round_trip(self):
        d = self.make_vault()
        size = 3 * 1024 * 1024 + 12345  # not a multiple of 256 KiB
        big = os.urandom(size)
        bigp = self.write("files/video.bin", big)
        emptyp = self.write("files/empty.txt", b"")
        rid = self.add(d, "files", "--attach", bigp, "--attach", emptyp)
        s = self.show(d, rid)
        atts = {a["name"]: a for a in s["attachments"]}
        self.assertEqual(set(atts), {"video.bin", "empty.txt"})
        self.assertEqual(atts["video.bin"]["size"], size)
        self.assertEqual(atts["video.bin"]["chunks"], -(-size // CHUNK))
        self.assertEqual(atts["empty.txt"]["size"], 0)
        for name, want in (("video.bin", big), ("empty.txt", b"")):
            with self.subTest(name=name):
                out = self.path("out-" + name)
                self.v(d, "attachment", "get", rid, name, "--output", out)
                with open(out, "rb") as f:
                    got = f.read()
                self.assertEqual(len(got), len(want))
                self.assertTrue(got == want, "bytes differ")
                r = self.v(d, "attachment", "get", rid[:6], name,
                           "--output", "-")
                self.assertEqual(len(r.stdout), len(want))
                self.assertTrue(r.stdout == want, "stdout bytes differ")

    def test_missing_attachment_file_adds_nothing(self):
        d = self.make_vault()
        self.add(d, "first")
        before = self.list_ids(d)
        ok = self.write("files/ok.bin", b"fine")
        r = self.v(d, "add", "--title", "second", "--attach", ok, "--attach",
                   self.path("files", "missing.bin"), expect=IO)
        # The message names the file that is missing, and why.
        self.assertIn(self.path("files", "missing.bin").encode(), r.stderr)
        self.assertIn(b"No such file or directory", r.stderr)
        self.assertEqual(self.list_ids(d), before)
        rid = before[0]
        self.v(d, "edit", rid, "--attach", self.path("nope"), expect=IO)
        self.assertEqual(len(self.show(d, rid)["revisions"]), 1)
        # a missing narrative file, too
        self.v(d, "add", "--title", "third", "--narrative-file",
               self.path("nope.txt"), expect=IO)
        self.assertEqual(self.list_ids(d), before)


# ---- nothing readable in the vault directory --------------------------------------

class TestMarkers(CliTest):
    def scan(self, vault, markers):
        """Returns (files scanned, {marker: [files holding it]})."""
        found = {}
        files = []
        for root, _dirs, names in os.walk(vault):
            for n in names:
                p = os.path.join(root, n)
                files.append(n)
                with open(p, "rb") as f:
                    data = f.read()
                for m in markers:
                    if m in data:
                        found.setdefault(m, []).append(n)
        return files, found

    def test_no_plaintext_in_vault_files(self):
        d = self.make_vault()

        def mk(kind):
            return ("FVMARK%s%s" % (kind, secrets.token_hex(6))).encode()

        markers = []
        for rec in ("keep", "gone"):
            m = {k: mk(k + rec) for k in ("title", "narr", "fkey", "fval",
                                          "tag", "aname", "abytes", "edit")}
            markers.extend(m.values())
            nf = self.write(rec + "/n.txt", b"narrative " + m["narr"] + b"\n")
            content = os.urandom(CHUNK - 7) + (m["abytes"] * 40000)
            att = self.write(rec + "/" + m["aname"].decode() + ".bin",
                             content)
            rid = self.add(d, m["title"].decode(), "--narrative-file", nf,
                           "--field", "%s=%s" % (m["fkey"].decode(),
                                                 m["fval"].decode()),
                           "--tag", m["tag"].decode(), "--attach", att)
            self.v(d, "edit", rid, "--field", "note=" + m["edit"].decode())
            # the markers really went in
            s = self.show(d, rid)
            self.assertEqual(s["title"], m["title"].decode())
            self.assertIn(m["edit"].decode(), s["fields"]["note"])
            hits = self.jv(d, "search", m["tag"].decode())
            self.assertEqual([x["id"] for x in hits], [rid])
            if rec == "gone":
                self.v(d, "delete", rid)
        files, found = self.scan(d, markers)
        self.assertIn("vault.db", files)
        self.assertIn("vault.key", files)
        self.assertEqual(found, {}, "plaintext found in vault files")
        # the scanner itself finds a planted marker
        self.write("probe/x", b"..." + markers[0] + b"...")
        self.assertEqual(self.scan(self.path("probe"), markers)[1],
                         {markers[0]: ["x"]})


# ---- errors and exit codes ---------------------------------------------------------

class TestErrors(CliTest):
    def test_open_errors(self):
        d = self.make_vault()
        rid = self.add(d, "secret title")
        wrong = self.write("wrong.txt", b"not the passphrase\n")
        r = self.v(d, "list", passfile=wrong, expect=PASSPHRASE)
        self.assertEqual(r.stdout, b"")
        self.v(d, "--json", "show", rid, passfile=wrong, expect=PASSPHRASE)
        self.v(self.path("nothing-here"), "list", expect=NOVAULT)
        os.makedirs(self.path("emptydir"))
        self.v(self.path("emptydir"), "list", expect=NOVAULT)
        self.v(d, "init", "--kdf", "test", expect=EXISTS)
        self.assertEqual(self.list_ids(d), [rid])

    def test_vault_path_errors_name_the_cause(self):
        """A vault path that cannot be a vault: the message names the real
        cause and the path at fault (never a bare "input/output error"),
        with exit 9."""
        self.write("afile", b"a regular file\n")
        under_file = self.path("afile", "vault")
        for args in (("init", "--kdf", "test"), ("list",), ("add", "--title", "x")):
            r = self.v(under_file, *args, expect=IO)
            self.assertIn(b"afile is not a directory", r.stderr)
            self.assertNotIn(b"input/output error", r.stderr)
        r = self.v(self.path("afile"), "list", expect=IO)
        self.assertIn(b"afile is not a directory", r.stderr)
        # A parent that does not exist (init makes one directory, not a path).
        r = self.v(self.path("no", "such", "vault"), "init", "--kdf", "test", expect=IO)
        self.assertIn(self.path("no").encode() + b" does not exist", r.stderr)
        self.assertFalse(os.path.exists(self.path("no")))
        # ... but opening where nothing is stays "no vault" (exit 4).
        self.v(self.path("no", "such", "vault"), "list", expect=NOVAULT)
        # /proc and /sys: pseudo file systems.
        for d in ("/proc/fieldvault-test", "/proc/self"):
            if os.path.isdir("/proc/self"):
                r = self.v(d, "init", "--kdf", "test", expect=IO) if d != "/proc/self" \
                    else self.v(d, "list", expect=IO)
                self.assertIn(b"proc pseudo file system", r.stderr)
                self.assertIn(d.encode(), r.stderr)
        # A directory this user may not enter. Root may enter any: as root,
        # the binary runs as nobody (setpriv), the passphrase on stdin.
        locked = self.path("locked")
        os.makedirs(os.path.join(locked, "vault"))
        os.chmod(locked, 0)
        self.addCleanup(os.chmod, locked, 0o700)
        args = ["--vault", os.path.join(locked, "vault"), "--passphrase-fd", "0", "list"]
        if os.geteuid() != 0:
            r = run(args, stdin=b"correct horse battery\n")
        elif shutil.which("setpriv"):
            os.chmod(self.tmp, 0o711)  # nobody may pass through, not list
            r = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN] + args,
                input=b"correct horse battery\n", capture_output=True, env=clean_env(),
                timeout=120, start_new_session=True)
        else:
            self.skipTest("running as root without setpriv")
        self.assertEqual(r.returncode, IO, r.stderr)
        self.assertIn(b"Permission denied", r.stderr)
        self.assertIn(locked.encode(), r.stderr)

    def test_not_found(self):
        d = self.make_vault()
        rid = self.add(d, "exists")
        other = secrets.token_hex(32)
        while other.startswith(rid[:4]):
            other = secrets.token_hex(32)
        for args in (("show", other), ("show", other[:6]),
                     ("edit", other, "--title", "x"), ("delete", other),
                     ("attachment", "get", other, "a", "--output",
                      self.path("o"))):
            with self.subTest(args=args):
                r = self.v(d, *args, expect=NOTFOUND)
                self.assertEqual(r.stdout, b"")
        self.assertEqual(self.list_ids(d), [rid])

    def test_ambiguous_prefix(self):
        # add records until two ids share their first 4 hex digits (about
        # 320 adds on average; 1500 miss one with probability e^-17)
        d = self.make_vault()
        seen = {}
        pair = None
        for i in range(1500):
            rid = self.add(d, "r%d" % i)
            if rid[:4] in seen:
                pair = (seen[rid[:4]], rid)
                break
            seen[rid[:4]] = rid
        self.assertIsNotNone(pair, "no 4-digit prefix collision")
        r = self.v(d, "show", pair[0][:4], expect=NOTFOUND)
        self.assertEqual(r.stdout, b"")
        self.v(d, "delete", pair[0][:4], expect=NOTFOUND)
        # a longer prefix that tells them apart works
        k = 5
        while pair[0][:k] == pair[1][:k]:
            k += 1
        self.assertEqual(self.show(d, pair[0][:k])["id"], pair[0])
        self.assertEqual(len(self.list_ids(d)), len(seen) + 1)

    def test_newer_format(self):
        d = self.make_vault()
        self.add(d, "x")
        kp = os.path.join(d, "vault.key")
        with open(kp, "rb") as f:
            key = bytearray(f.read())
        self.assertEqual(struct.unpack("<I", bytes(key[8:12]))[0], 1,
                         "key file format version is not at bytes 8..11")
        key[8:12] = struct.pack("<I", 99)
        with open(kp, "wb") as f:
            f.write(key)
        self.v(d, "list", expect=VERSION)
        self.v(d, "passwd", "--new-passphrase-file", self.passfile,
               expect=VERSION)

    def find_envelope_rows(self, db, ids):
        con = sqlite3.connect(db)
        try:
            rows = con.execute("SELECT rowid, bytes FROM envelope").fetchall()
        finally:
            con.close()
        byid = {}
        for rowid, blob in rows:
            h = hashlib.blake2b(bytes(blob), digest_size=32).hexdigest()
            byid[h] = (rowid, bytes(blob))
        return rows, {i: byid.get(i) for i in ids}

    def test_tampered_envelope(self):
        d = self.make_vault()
        titles = ["TAMPER-A-" + secrets.token_hex(4),
                  "TAMPER-B-" + secrets.token_hex(4),
                  "TAMPER-C-" + secrets.token_hex(4)]
        ids = [self.add(d, t, "--field", "k=" + t) for t in titles]
        db = os.path.join(d, "vault.db")
        rows, match = self.find_envelope_rows(db, ids)
        if match[ids[1]] is not None:
            rowid, blob = match[ids[1]]
        else:
            # ids are not plain hashes of the stored rows: with one envelope
            # per record, the middle row belongs to the middle record
            self.assertEqual(len(rows), 3, "cannot tell which row is which")
            rowid, blob = rows[1][0], bytes(rows[1][1])
        flipped = bytearray(blob)
        flipped[len(flipped) // 2] ^= 0x01
        con = sqlite3.connect(db)
        con.execute("UPDATE envelope SET bytes = ? WHERE rowid = ?",
                    (bytes(flipped), rowid))
        con.commit()
        con.close()

        results = {}
        for rid, title in zip(ids, titles):
            r = run(["--vault", d, "--passphrase-file", self.passfile,
                     "--json", "show", rid])
            results[rid] = r
        bad = [rid for rid in ids if results[rid].returncode != 0]
        self.assertEqual(len(bad), 1, {k: (v.returncode, v.stderr)
                                       for k, v in results.items()})
        victim = bad[0]
        if match[ids[1]] is not None:
            self.assertEqual(victim, ids[1])
        vt = titles[ids.index(victim)]
        for args in (("show", victim), ("--json", "show", victim)):
            r = self.v(d, *args, expect=CORRUPT)
            self.assertEqual(r.stdout, b"")
            self.assertNotIn(vt.encode(), r.stderr)
        # list shows the others, then reports the corruption
        r = self.v(d, "--json", "list", expect=CORRUPT)
        got = json.loads(r.stdout)
        self.assertEqual([x["id"] for x in got],
                         [i for i in ids if i != victim])
        self.assertNotIn(vt.encode(), r.stdout)
        r = self.v(d, "list", expect=CORRUPT)
        self.assertEqual(len(r.stdout.splitlines()), 2)
        self.assertNotIn(vt.encode(), r.stdout)
        for rid in ids:
            if rid != victim:
                self.assertEqual(self.show(d, rid)["id"], rid)

    def test_tampered_attachment_chunk(self):
        d = self.make_vault()
        data = os.urandom(3 * CHUNK + 100)
        src = self.write("files/a.bin", data)
        rid = self.add(d, "chunks", "--attach", src)
        con = sqlite3.connect(os.path.join(d, "vault.db"))
        rows = con.execute("SELECT rowid, data FROM chunk").fetchall()
        self.assertEqual(len(rows), 4)
        rowid, blob = rows[2]
        flipped = bytearray(blob)
        flipped[len(flipped) // 3] ^= 0x80
        con.execute("UPDATE chunk SET data = ? WHERE rowid = ?",
                    (bytes(flipped), rowid))
        con.commit()
        con.close()
        out = self.path("out.bin")
        self.v(d, "attachment", "get", rid, "a.bin", "--output", out,
               expect=CORRUPT)
        self.assertFalse(os.path.exists(out), "unverified bytes saved")
        r = self.v(d, "attachment", "get", rid, "a.bin", "--output", "-",
                   expect=CORRUPT)
        self.assertLess(len(r.stdout), len(data))
        self.assertTrue(data.startswith(r.stdout))
        # the record itself still reads
        self.assertEqual(self.show(d, rid)["attachments"][0]["size"],
                         len(data))

    def test_truncated_database(self):
        d = self.make_vault()
        nf = self.write("n.txt", os.urandom(3000).hex().encode())
        for i in range(30):
            self.add(d, "record %d" % i, "--narrative-file", nf)
        db = os.path.join(d, "vault.db")
        for extra in ("vault.db-wal", "vault.db-journal"):
            p = os.path.join(d, extra)
            self.assertFalse(os.path.exists(p) and os.path.getsize(p) > 0,
                             "%s left after a clean exit" % extra)
        size = os.path.getsize(db)
        self.assertGreater(size, 100000)
        os.truncate(db, size // 2)
        r = self.v(d, "--json", "list", expect=CORRUPT)
        if r.stdout:
            json.loads(r.stdout)
        self.v(d, "add", "--title", "after", expect=CORRUPT)

    def test_full_disk(self):
        mnt = self.path("mnt")
        os.makedirs(mnt)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                            mnt], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if m.returncode != 0:
            self.skipTest("cannot mount a 1 MiB tmpfs here: %s" %
                          m.stdout.decode(errors="replace").strip())
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        d = os.path.join(mnt, "vault")
        self.v(d, "init", "--kdf", "test")
        kept = [self.add(d, "kept %d" % i, "--field", "k=v") for i in range(3)]
        big = self.write("files/big.bin", os.urandom(2 * 1024 * 1024))
        r = self.v(d, "add", "--title", "too big", "--attach", big,
                   expect=NOSPACE)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(self.list_ids(d), kept)
        for rid in kept:
            self.assertEqual(self.show(d, rid)["title"],
                             "kept %d" % kept.index(rid))


# ---- the terminal prompt ----------------------------------------------------------

class PtyRun:
    """Runs the binary with a new pseudo-terminal as its controlling
    terminal (and stdin/stdout/stderr)."""

    def __init__(self, args, env=None):
        env = env if env is not None else clean_env()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            try:
                os.execve(BIN, [BIN] + list(args), env)
            finally:
                os._exit(127)
        self.out = b""
        self.status = None

    def read_until(self, token, timeout=20):
        deadline = time.monotonic() + timeout
        while token not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r in terminal output %r" %
                                     (token, self.out))
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                raise AssertionError("terminal closed before %r: %r" %
                                     (token, self.out))
            self.out += data

    def echo_on(self):
        return bool(termios.tcgetattr(self.fd)[3] & termios.ECHO)

    def type(self, data):
        os.write(self.fd, data)

    def wait(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                self.out += data
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError("fieldvault hung: %r" % self.out)
        # drain what is left
        while True:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                break
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                break
            if not data:
                break
            self.out += data
        return os.waitstatus_to_exitcode(self.status)

    def close(self):
        os.close(self.fd)


class TestTerminal(CliTest):
    def pty(self, *args):
        p = PtyRun(args)
        self.addCleanup(p.close)
        return p

    def test_init_and_open_with_prompt(self):
        d = self.path("v")
        p = self.pty("--vault", d, "init", "--kdf", "test")
        p.read_until(b"passphrase: ")
        self.assertFalse(p.echo_on(), "echo is on at the prompt")
        p.type(b"typed secret\n")
        p.read_until(b"Repeat")
        self.assertFalse(p.echo_on())
        p.type(b"typed secret\n")
        self.assertEqual(p.wait(), 0, p.out)
        self.assertNotIn(b"typed secret", p.out)
        self.assertTrue(p.echo_on(), "echo not restored")
        pf = self.write("typed.txt", b"typed secret")
        r = self.fv("--vault", d, "--passphrase-file", pf, "add", "--title",
                    "via prompt")
        rid = r.stdout.decode().strip()
        # a command that opens the vault asks once
        p = self.pty("--vault", d, "list")
        p.read_until(b"passphrase: ")
        p.type(b"typed secret\n")
        self.assertEqual(p.wait(), 0, p.out)
        self.assertIn(rid.encode(), p.out)
        self.assertNotIn(b"typed secret", p.out)
        # wrong passphrase at the prompt
        p = self.pty("--vault", d, "list")
        p.read_until(b"passphrase: ")
        p.type(b"not it\n")
        self.assertEqual(p.wait(), PASSPHRASE, p.out)

    def test_prompt_mismatch_and_empty(self):
        d = self.path("v")
        p = self.pty("--vault", d, "init", "--kdf", "test")
        p.read_until(b"passphrase: ")
        p.type(b"one\n")
        p.read_until(b"Repeat")
        p.type(b"two\n")
        self.assertEqual(p.wait(), USAGE, p.out)
        self.assertIn(b"do not match", p.out)
        self.assertFalse(os.path.exists(os.path.join(d, "vault.key")))
        p = self.pty("--vault", d, "init", "--kdf", "test")
        p.read_until(b"passphrase: ")
        p.type(b"\n")
        self.assertEqual(p.wait(), USAGE, p.out)
        self.assertTrue(p.echo_on())

    def test_signal_at_prompt_restores_echo(self):
        d = self.make_vault()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(sig=sig):
                p = self.pty("--vault", d, "list")
                p.read_until(b"passphrase: ")
                self.assertFalse(p.echo_on())
                os.kill(p.pid, sig)
                self.assertEqual(p.wait(), -sig)
                self.assertTrue(p.echo_on(), "echo left off after a signal")

    def test_passwd_prompts_twice(self):
        d = self.make_vault()
        p = self.pty("--vault", d, "--passphrase-file", self.passfile,
                     "passwd")
        p.read_until(b"New passphrase: ")
        p.type(b"brand new one\n")
        p.read_until(b"Repeat")
        p.type(b"brand new one\n")
        self.assertEqual(p.wait(), 0, p.out)
        self.v(d, "list", expect=PASSPHRASE)
        self.v(d, "list", passfile=self.write("n.txt", b"brand new one\n"))

    def test_duress_prompts_twice(self):
        d = self.make_vault()
        rid = self.add(d, "a testimony")
        p = self.pty("--vault", d, "--passphrase-file", self.passfile,
                     "duress", "set")
        p.read_until(b"Duress passphrase: ")
        self.assertFalse(p.echo_on())
        p.type(b"under duress\n")
        p.read_until(b"Repeat")
        p.type(b"under duress, not\n")
        self.assertEqual(p.wait(), USAGE, p.out)
        self.assertIn(b"do not match", p.out)
        p = self.pty("--vault", d, "--passphrase-file", self.passfile,
                     "duress", "set")
        p.read_until(b"Duress passphrase: ")
        p.type(b"under duress\n")
        p.read_until(b"Repeat")
        p.type(b"under duress\n")
        self.assertEqual(p.wait(), 0, p.out)
        self.assertNotIn(b"under duress", p.out)
        self.assertEqual(self.list_ids(d), [rid])
        # The duress passphrase typed at an ordinary prompt opens the decoy.
        p = self.pty("--vault", d, "list")
        p.read_until(b"passphrase: ")
        p.type(b"under duress\n")
        self.assertEqual(p.wait(), 0, p.out)
        self.assertIn(b"Shopping list", p.out)
        self.assertNotIn(rid.encode(), p.out)
        self.v(d, "list", expect=PASSPHRASE)


# ---- cancel ------------------------------------------------------------------------

class TestCancel(CliTest):
    def test_ctrl_c_cancels_an_attachment_add(self):
        d = self.make_vault()
        before = [self.add(d, "before")]
        fifo = self.path("stream.bin")
        os.mkfifo(fifo)
        p = subprocess.Popen(
            [BIN, "--vault", d, "--passphrase-file", self.passfile, "add",
             "--title", "canceled", "--attach", fifo],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=clean_env(), start_new_session=True)
        try:
            with open(fifo, "wb") as w:
                w.write(os.urandom(4 * CHUNK))  # returns once mostly read
                w.flush()
                time.sleep(0.2)
                p.send_signal(signal.SIGINT)
                time.sleep(0.2)
                try:
                    for _ in range(8):
                        w.write(os.urandom(CHUNK))
                        w.flush()
                except BrokenPipeError:
                    pass
        except BrokenPipeError:
            pass
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 12, err)
        self.assertEqual(out, b"")
        self.assertTrue(err.startswith(b"fieldvault: "), err)
        self.assertEqual(self.list_ids(d), before)


# ---- crashes ---------------------------------------------------------------------------

def proc_write_calls(pid):
    """The write system calls process `pid` has made so far (syscw in
    /proc/PID/io), or 0 when it cannot be read (the process is gone)."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("syscw:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TestCrash(CliTest):
    def test_kill_during_add(self):
        d = self.make_vault()
        nf = self.write("n.txt", ("narrative " * 300).encode())
        att = self.write("files/a.bin", os.urandom(600 * 1024))
        t0 = time.monotonic()
        printed = [self.add(d, "complete %d" % i, "--narrative-file", nf,
                            "--attach", att) for i in range(3)]
        # kill within 0-50 ms, or within a whole add where one takes longer
        # (sanitizer builds), so that kills land in every phase of an add
        window = max(0.05, 1.2 * (time.monotonic() - t0) / 3)
        rng = random.Random()
        killed = completed = mid = 0
        deadline = time.monotonic() + 60
        for i in range(30):
            if time.monotonic() > deadline:
                break
            args = [BIN, "--vault", d, "--passphrase-file", self.passfile,
                    "add", "--title", "crash %d" % i, "--narrative-file", nf,
                    "--field", "i=%d" % i]
            if i % 2:
                args += ["--attach", att]
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=clean_env(),
                                 start_new_session=True)
            time.sleep(rng.uniform(0, window))
            # What the add had written when the kill came (the counter is
            # read just before it: a lower bound).
            writes = proc_write_calls(p.pid)
            p.send_signal(signal.SIGKILL)
            out, err = p.communicate(timeout=60)
            if p.returncode == -signal.SIGKILL:
                killed += 1
                # Mid-operation: it had begun writing, and had not yet
                # acknowledged (printed) its record.
                if writes > 0 and not any(
                        HEX64.match(x) for x in out.decode().splitlines()):
                    mid += 1
            else:
                self.assertEqual(p.returncode, 0, err)
                completed += 1
            for line in out.decode().splitlines():
                if HEX64.match(line):
                    printed.append(line)
            if i % 5 == 4:
                # the vault opens after every few crashes
                self.list_ids(d)
            if i % 3 == 0:
                printed.append(self.add(d, "between %d" % i))
        print("\ncrash test: %d killed (%d mid-operation: after its first "
              "write, before its id), %d completed before the kill, "
              "%d ids printed (kill window %.0f ms)" % (
                  killed, mid, completed, len(printed), window * 1000),
              file=sys.stderr)
        self.assertGreater(mid, 0, "no kill landed mid-operation")
        listed = self.list_ids(d)
        missing = [x for x in printed if x not in listed]
        self.assertEqual(missing, [], "printed ids lost after kill -9")
        for rid in listed:
            self.assertEqual(self.show(d, rid)["id"], rid)
        # the vault still takes new records
        self.add(d, "after the crashes")


# ---- the coordinator's desk: filters, notes, conflicts and merge, retraction ------

def iso_to_unix(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def unix_to_iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class TestDesk(CliTest):
    def ids(self, vault, *args):
        j = self.jv(vault, "list", *args)
        self.assertIsInstance(j, list)
        return [x["id"] for x in j]

    def test_list_filters_and_json(self):
        d = self.path("v")
        device = self.jv(d, "init", "--kdf", "test")["device"]
        a = self.add(d, "at the river", "--tag", "border", "--tag", "night")
        b = self.add(d, "in the market", "--tag", "market")
        lst = self.jv(d, "list")
        self.assertEqual([x["id"] for x in lst], [a, b])
        for x in lst:
            self.assertEqual(set(x), LIST_KEYS, x)
            self.assertEqual(x["state"], "new")
            self.assertEqual(x["author"], device)
            self.assertEqual(x["notes"], 0)
        created = iso_to_unix(lst[0]["created"])
        day = unix_to_iso(created)[:10]
        cases = [
            ((), [a, b]),
            (("--tag", "border"), [a]),
            (("--tag", "night"), [a]),
            (("--tag", "bord"), []),           # exact tags only
            (("--device", device), [a, b]),
            (("--device", device.upper()), [a, b]),
            (("--device", "0" * 63 + "1"), []),
            (("--state", "new"), [a, b]),
            (("--state", "reviewed"), []),
            (("--state", "archived"), []),
            (("--since", day), [a, b]),
            (("--until", day), [a, b]),        # a bare date: the whole day
            (("--since", day, "--until", day), [a, b]),
            (("--since", unix_to_iso(created - 86400)[:10]), [a, b]),
            (("--until", unix_to_iso(created - 86400)[:10]), []),
            (("--since", unix_to_iso(created + 86400)[:10]), []),
            (("--since", unix_to_iso(created)), [a, b]),   # inclusive
            (("--until", unix_to_iso(created + 3600)), [a, b]),
            (("--until", unix_to_iso(created - 1)), []),
            (("--since", unix_to_iso(created - 120)[:16] + "Z"), [a, b]),
            (("--tag", "border", "--state", "new", "--device", device,
              "--since", day), [a]),
            (("--tag", "market", "--device", "f" * 64), []),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                got = [x for x in self.ids(d, *args) if x in (a, b)]
                self.assertEqual(got, want)
        # the text listing marks nothing for new records, and filters too
        out = self.v(d, "list", "--tag", "market").stdout.decode()
        self.assertEqual(out.splitlines()[0].split("  ")[0], b)
        self.assertEqual(len(out.splitlines()), 1)
        self.assertNotIn("[new]", out)
        # search takes the same filters
        hits = self.jv(d, "search", "the", "--tag", "market")
        self.assertEqual([x["id"] for x in hits], [b])
        self.assertEqual(set(hits[0]), LIST_KEYS)
        self.assertEqual([x["id"] for x in self.jv(d, "search", "THE")],
                         [a, b])

    def test_bad_filters(self):
        d = self.make_vault()
        self.add(d, "one")
        bad = [
            ("--state", "done"),
            ("--state", ""),
            ("--state", "Reviewed"),
            ("--device", "abc"),
            ("--device", "0" * 63),
            ("--device", "0" * 65),
            ("--device", "g" * 64),
            ("--device", ""),
            ("--tag", ""),
            ("--since", "2026-02-30"),
            ("--since", "2025-02-29"),
            ("--since", "2026-1-01"),
            ("--since", "26-01-01"),
            ("--since", "2026-13-01"),
            ("--since", "2026-00-10"),
            ("--since", "1969-12-31"),
            ("--since", "2026-01-01T25:00:00Z"),
            ("--since", "2026-01-01T10:60Z"),
            ("--since", "2026-01-01T10:00:00+02:00"),
            ("--since", "2026-01-01T10"),
            ("--since", "2026-01-01 "),
            ("--since", "yesterday"),
            ("--since", ""),
            ("--until", "2026-01-01Z"),
            ("--since", "2026-01-02", "--until", "2026-01-01"),
            ("--since", "2026-01-01", "--since", "2026-01-02"),
            ("--tag", "a", "--tag", "b"),
            ("--state",),
        ]
        for args in bad:
            with self.subTest(args=args):
                self.v(d, "list", *args, expect=USAGE)
                self.v(d, "search", "x", *args, expect=USAGE)
        # the leap day of a leap year is a date
        self.v(d, "list", "--since", "2024-02-29")
        # the first second of 1970 is Unix time 0, a bound like any other
        # (the filter's "no bound" is INT64_MIN / INT64_MAX): nothing was
        # created by then; --until 1970-01-01 is its whole day, ...T00:00
        # its minute
        for t in ("1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z",
                  "1970-01-01", "1970-01-01T00:00"):
            self.assertEqual(self.jv(d, "list", "--until", t), [])
            self.assertEqual(self.jv(d, "search", "one", "--until", t), [])
        for t in ("1970-01-01T00:00:00Z", "1970-01-01"):
            self.assertEqual(len(self.jv(d, "list", "--since", t)), 1)
        self.assertEqual(len(self.jv(d, "list", "--since",
                                     "1970-01-01T00:00:01Z")), 1)

    def test_review_needs_the_organisation_key(self):
        d = self.make_vault()
        rid = self.add(d, "one")
        r = self.v(d, "review", rid, "--state", "reviewed", expect=DENIED)
        self.assertIn(b"coordinator", r.stderr)
        self.v(d, "review", rid, expect=USAGE)
        self.v(d, "review", rid, "--state", "done", expect=USAGE)
        self.v(d, "review", "--state", "new", expect=USAGE)
        self.v(d, "review", "0000" + rid[4:], "--state", "new",
               expect=NOTFOUND)
        self.assertEqual(self.show(d, rid)["state"], "new")

    def test_notes_on_own_record(self):
        d = self.path("v")
        device = self.jv(d, "init", "--kdf", "test")["device"]
        rid = self.add(d, "one")
        other = self.add(d, "two")
        text1 = "Please call W-09 again: 날짜를 확인해 주세요."
        j = self.jv(d, "note", rid, "--text", text1)
        self.assertEqual(set(j), {"id", "record"})
        self.assertEqual(j["record"], rid)
        self.assertRegex(j["id"], HEX64)
        n1 = j["id"]
        text2 = "line one\nline two\n\ttabbed \x1b[31m"
        nf = self.write("note.txt", text2.encode())
        out = self.v(d, "note", rid[:8], "--text-file", nf).stdout.decode()
        self.assertRegex(out.strip(), HEX64)
        text3 = "from standard input"
        self.v(d, "note", other, "--text-file", "-", stdin=text3.encode())

        notes = self.jv(d, "notes")
        self.assertEqual([(n["record"], n["text"]) for n in notes],
                         [(rid, text1), (rid, text2), (other, text3)])
        for n in notes:
            self.assertEqual(set(n), NOTE_KEYS)
            self.assertEqual(n["author"], device)
            self.assertRegex(n["time"], ISO_UTC)
        self.assertEqual(notes[0]["id"], n1)
        self.assertEqual(len({n["id"] for n in notes}), 3)
        # about one record only
        self.assertEqual([n["text"] for n in self.jv(d, "notes", other)],
                         [text3])
        # show and list carry them
        s = self.show(d, rid)
        self.assertEqual(set(s), SHOW_KEYS)
        self.assertEqual([(n["id"], n["text"]) for n in s["notes"]],
                         [(n["id"], n["text"]) for n in notes[:2]])
        self.assertEqual({x["id"]: x["notes"] for x in self.jv(d, "list")},
                         {rid: 2, other: 1})
        # the text listing escapes what could drive a terminal
        out = self.v(d, "notes").stdout
        self.assertIn(text1.encode(), out)
        self.assertIn(b"  line two\n", out)
        self.assertNotIn(b"\x1b", out)
        self.assertIn(b"\\x1b[31m", out)
        self.assertIn(rid.encode(), out)
        out = self.v(d, "show", rid).stdout
        self.assertIn(b"notes (oldest first):", out)
        self.assertNotIn(b"\x1b", out)

        # errors
        big = self.write("big.txt", b"x" * (64 * 1024 + 1))
        nul = self.write("nul.txt", b"a\0b")
        empty = self.write("empty.txt", b"")
        for args, code in [
                ((rid,), USAGE),                          # no text
                ((rid, "--text", ""), USAGE),
                ((rid, "--text", "a", "--text-file", nf), USAGE),
                ((rid, "--text", "a", "--text", "b"), USAGE),
                ((rid, "--text", "x" * (64 * 1024 + 1)), USAGE),
                ((rid, "--text-file", big), USAGE),
                ((rid, "--text-file", nul), USAGE),
                ((rid, "--text-file", empty), USAGE),
                ((rid, "--text-file", self.path("missing.txt")), IO),
                (("--text", "a"), USAGE),                 # no record
                (("0000" + rid[4:], "--text", "a"), NOTFOUND)]:
            with self.subTest(args=args):
                self.v(d, "note", *args, expect=code)
        self.v(d, "notes", rid, other, expect=USAGE)
        self.v(d, "notes", "0000" + rid[4:], expect=NOTFOUND)
        self.assertEqual(len(self.jv(d, "notes")), 3)
        # the largest note goes in
        self.v(d, "note", other, "--text", "y" * (64 * 1024))
        # no note text in the vault's files
        marker = ("FVNOTE%s" % secrets.token_hex(6))
        self.v(d, "note", other, "--text", "see " + marker)
        self.assertIn(marker, self.jv(d, "notes")[-1]["text"])
        for root, _dirs, names in os.walk(d):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    self.assertNotIn(marker.encode(), f.read(), n)

    def make_conflict(self, d, rid):
        """Two heads for `rid`: a copy of the vault (the same device) edits
        it too, and its envelopes come back in a courier bundle."""
        twin = self.path("twin")
        shutil.copytree(d, twin)
        photo = self.write("photo-%s.jpg" % rid[:8], b"a photo of the river")
        h1 = self.v(d, "edit", rid, "--title", "here", "--tag", "a",
                    "--attach", photo).stdout.decode().strip()
        h2 = self.v(twin, "edit", rid, "--field", "place=there",
                    "--tag", "b", "--narrative-file", "-",
                    stdin=b"the twin's account\nof the night\n"
                    ).stdout.decode().strip()
        b = self.path("twin.fvb")
        self.v(twin, "bundle", "export", b)
        self.v(d, "bundle", "import", b)
        return sorted([h1, h2])

    def test_conflict_show_and_merge(self):
        d = self.make_vault()
        rid = self.add(d, "first", "--tag", "old")
        self.v(d, "merge", rid, expect=USAGE)    # no conflict, no change
        heads = self.make_conflict(d, rid)
        s = self.show(d, rid)
        self.assertEqual(sorted(s["heads"]), heads)
        self.assertIn(s["revision"], heads)
        self.assertTrue(self.jv(d, "list")[0]["conflict"])
        out = self.v(d, "show", rid).stdout.decode()
        self.assertIn("conflict:    2 heads", out)
        shown = [ln for ln in out.splitlines() if ln.startswith("  head ")]
        self.assertEqual(sorted(ln.split()[1] for ln in shown), heads)
        self.assertEqual(sum("[shown]" in ln for ln in shown), 1)

        # every head's content: head_records in the order of heads, each
        # shaped as the top level; the shown one is the top level's
        hrs = s["head_records"]
        self.assertEqual([h["revision"] for h in hrs], s["heads"])
        for h in hrs:
            self.assertEqual(set(h), RECORD_KEYS)
            self.assertEqual(h["id"], rid)
        top = {k: s[k] for k in RECORD_KEYS}
        self.assertIn(top, hrs)
        here = [h for h in hrs if h["title"] == "here"]
        there = [h for h in hrs if h["title"] == "first"]
        self.assertEqual((len(here), len(there)), (1, 1))
        here, there = here[0], there[0]
        self.assertEqual((here["fields"], here["tags"]), ({}, ["a", "old"]))
        self.assertEqual([a["name"] for a in here["attachments"]],
                         ["photo-%s.jpg" % rid[:8]])
        self.assertEqual(here["narrative"], "")
        self.assertEqual((there["fields"], there["tags"]),
                         ({"place": "there"}, ["b", "old"]))
        self.assertEqual(there["attachments"], [])
        self.assertEqual(there["narrative"],
                         "the twin's account\nof the night\n")

        # and in text: each head line followed by its content, indented
        lines = out.splitlines()
        self.assertIn("heads (each concurrent edit in full):", lines)
        blocks = {}
        for i, ln in enumerate(lines):
            if ln.startswith("  head "):
                body = []
                for nxt in lines[i + 1:]:
                    if not nxt.startswith("    "):
                        break
                    body.append(nxt)
                blocks[ln.split()[1]] = body
        self.assertEqual(sorted(blocks), heads)
        self.assertEqual(blocks[here["revision"]][0], "    title:       here")
        self.assertIn("    tags:        a, old", blocks[here["revision"]])
        self.assertTrue(any(b.startswith("      photo-%s.jpg  " % rid[:8])
                            for b in blocks[here["revision"]]))
        self.assertNotIn("    narrative:", blocks[here["revision"]])
        self.assertEqual(blocks[there["revision"]],
                         ["    title:       first",
                          "    fields:",
                          "      place: there",
                          "    tags:        b, old",
                          "    narrative:",
                          "      the twin's account",
                          "      of the night"])

        # merge takes edit's options
        j = self.jv(d, "merge", rid, "--field", "merged=yes",
                    "--remove-tag", "old", "--title", "merged")
        self.assertEqual(set(j), {"id", "revision"})
        self.assertEqual(j["id"], rid)
        s = self.show(d, rid)
        self.assertEqual(s["heads"], [j["revision"]])
        self.assertEqual(s["revision"], j["revision"])
        self.assertEqual(s["head_records"], [{k: s[k] for k in RECORD_KEYS}])
        self.assertEqual(s["title"], "merged")
        self.assertEqual(s["fields"].get("merged"), "yes")
        self.assertNotIn("old", s["tags"])
        merge_rev = [r for r in s["revisions"] if r["id"] == j["revision"]][0]
        self.assertEqual(sorted(merge_rev["parents"]), heads)
        self.assertTrue(set(heads) <= {r["id"] for r in s["revisions"]})
        self.assertFalse(self.jv(d, "list")[0]["conflict"])
        self.assertNotIn("conflict:", self.v(d, "show", rid).stdout.decode())
        # no conflict now: merge without a change is refused, with one it
        # is an edit
        self.v(d, "merge", rid, expect=USAGE)
        out = self.v(d, "merge", rid, "--tag", "done").stdout.decode().strip()
        self.assertEqual(self.show(d, rid)["heads"], [out])
        # a conflict merged without changes keeps the newest head's content
        rid2 = self.add(d, "second")
        self.make_conflict_again(d, rid2)
        before = self.show(d, rid2)
        rev = self.v(d, "merge", rid2).stdout.decode().strip()
        after = self.show(d, rid2)
        self.assertEqual(after["heads"], [rev])
        for k in ("title", "fields", "tags", "narrative"):
            self.assertEqual(after[k], before[k], k)
        self.v(d, "merge", "0000" + rid[4:], expect=NOTFOUND)
        self.v(d, "merge", rid, "--field", "novalue", expect=USAGE)

    def make_conflict_again(self, d, rid):
        shutil.rmtree(self.path("twin"))
        os.unlink(self.path("twin.fvb"))
        return self.make_conflict(d, rid)

    def test_retract(self):
        d = self.path("v")
        device = self.jv(d, "init", "--kdf", "test")["device"]
        self.assertEqual(self.jv(d, "retractions"), [])
        self.assertEqual(self.v(d, "retractions").stdout, b"")
        keep = self.add(d, "keep")
        gone = self.add(d, "withdrawn", "--field", "name=W-3")
        self.v(d, "note", gone, "--text", "about the withdrawn one")
        out = self.v(d, "retract", gone[:10]).stdout.decode()
        self.assertEqual(out, "retracted %s\n" % gone)
        self.assertEqual(self.ids(d), [keep])
        self.v(d, "show", gone, expect=NOTFOUND)
        self.v(d, "retract", gone, expect=NOTFOUND)
        self.v(d, "note", gone, "--text", "late", expect=NOTFOUND)
        self.assertEqual(self.jv(d, "notes"), [])
        j = self.jv(d, "retract", keep, "--yes")
        self.assertEqual(j, {"id": keep, "retracted": True})
        self.assertEqual(self.ids(d), [])
        # the retractions remain, as facts: what, who, when
        rs = self.jv(d, "retractions")
        self.assertEqual([r["record"] for r in rs], [gone, keep])
        for r in rs:
            self.assertEqual(set(r), {"id", "record", "author", "time"})
            self.assertEqual(r["author"], device)
            self.assertRegex(r["id"], HEX64)
            self.assertRegex(r["time"], ISO_UTC)
        out = self.v(d, "retractions").stdout.decode().splitlines()
        self.assertEqual([ln.split()[0] for ln in out], [gone, keep])
        self.assertTrue(all(ln.endswith("by " + device) for ln in out))
        self.v(d, "retractions", keep, expect=USAGE)
        self.v(d, "retract", expect=USAGE)
        self.v(d, "retract", keep, "--yes=1", expect=USAGE)

    def test_retract_asks_on_a_terminal(self):
        d = self.make_vault()
        rid = self.add(d, "maybe")
        args = ["--vault", d, "--passphrase-file", self.passfile, "retract",
                rid]
        for answer, code in ((b"no\n", CANCELED), (b"y\n", CANCELED),
                             (b"yes\n", OK)):
            with self.subTest(answer=answer):
                p = PtyRun(args)
                self.addCleanup(p.close)
                p.read_until(b"Type 'yes'")
                p.type(answer)
                self.assertEqual(p.wait(), code, p.out)
                self.assertEqual(self.ids(d), [] if code == OK else [rid])
        # --yes does not ask
        rid = self.add(d, "sure")
        p = PtyRun(args[:-1] + [rid, "--yes"])
        self.addCleanup(p.close)
        self.assertEqual(p.wait(), OK, p.out)
        self.assertNotIn(b"Type 'yes'", p.out)
        self.assertEqual(self.ids(d), [])


class TestCoercion(CliTest):
    """Issue 15: the failed-unlock wipe and the duress passphrase."""

    def guard(self, d):
        """(limit, failures) of DIR/vault.guard, or None without one."""
        try:
            with open(os.path.join(d, "vault.guard"), "rb") as f:
                g = f.read()
        except FileNotFoundError:
            return None
        self.assertEqual(len(g), 16)
        self.assertEqual(g[:8], b"FVguard1")
        return struct.unpack("<II", g[8:])

    def links(self, d, names=("vault.key", "vault.db")):
        saved = {}
        for n in names:
            link = self.path("link-" + n)
            os.link(os.path.join(d, n), link)
            with open(link, "rb") as f:
                saved[link] = f.read()
        return saved

    def test_wipe_after_three_wrong(self):
        d = self.make_vault()
        self.add(d, "testimony of the night raid")
        self.assertEqual(self.jv(d, "config", "get", "wipe-after"),
                         {"wipe_after": None})
        self.assertEqual(self.v(d, "config", "get", "wipe-after").stdout,
                         b"off\n")
        for bad in ("0", "-1", "x", "1000001"):
            self.v(d, "config", "set", "wipe-after", bad, expect=USAGE)
        self.assertEqual(self.v(d, "config", "set", "wipe-after", "3").stdout,
                         b"wipe-after: 3\n")
        self.assertEqual(self.jv(d, "config", "get", "wipe-after"),
                         {"wipe_after": 3})
        self.assertEqual(self.guard(d), (3, 0))
        wrong = self.write("wrong.txt", b"not it\n")
        self.v(d, "list", passfile=wrong, expect=PASSPHRASE)
        self.assertEqual(self.guard(d), (3, 1))
        self.list_ids(d)  # a right passphrase resets the count
        self.assertEqual(self.guard(d), (3, 0))
        saved = self.links(d)
        for i in range(3):
            self.assertTrue(os.path.isdir(d))
            r = self.v(d, "list", passfile=wrong, expect=PASSPHRASE)
            self.assertIn(b"wrong passphrase", r.stderr)
        self.assertFalse(os.path.exists(d))
        for link, before in saved.items():
            TestHappyPath.assert_garbage(self, before, link)
        r = self.v(d, "list", expect=NOVAULT)
        self.assertIn(b"no vault", r.stderr)
        # off again removes the counter: wrong passphrases destroy nothing.
        d = self.make_vault("v2")
        self.v(d, "config", "set", "wipe-after", "1")
        self.v(d, "config", "set", "wipe-after", "off")
        self.assertIsNone(self.guard(d))
        for i in range(3):
            self.v(d, "list", passfile=wrong, expect=PASSPHRASE)
        self.list_ids(d)

    def test_kill_between_counter_and_kdf(self):
        # The count is on disk before the KDF runs: an unlock killed during
        # the KDF (the desktop profile: 256 MiB, long enough to hit) has
        # counted, even with the right passphrase, and a count that reached
        # the limit that way destroys the vault at the next open, before any
        # KDF: pulling the battery mid-guess gains an attacker nothing.
        d = self.path("vault")
        self.v(d, "init", "--kdf", "desktop")
        self.add(d, "testimony kept through the kills")
        self.v(d, "config", "set", "wipe-after", "3")
        args = [BIN, "--vault", d, "--passphrase-file", self.passfile, "list"]
        killed = 0
        for attempt in range(40):
            if killed == 3:
                break
            before = self.guard(d)[1]
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=clean_env(),
                                 start_new_session=True)
            deadline = time.monotonic() + 60
            while (self.guard(d)[1] == before and p.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.0005)
            p.kill()
            p.wait()
            if p.returncode == -signal.SIGKILL:
                # Killed after the count was seen on disk: it stays.
                self.assertEqual(self.guard(d), (3, before + 1))
                killed += 1
            else:
                # Finished first (a slow poll): a success resets the count.
                self.assertEqual(p.returncode, 0)
                self.assertEqual(self.guard(d), (3, 0))
                killed = 0
        self.assertEqual(killed, 3, "no three kills landed during the KDF")
        saved = self.links(d)
        r = self.v(d, "list", expect=NOVAULT)
        self.assertIn(b"no vault", r.stderr)
        self.assertFalse(os.path.exists(d))
        for link, before in saved.items():
            TestHappyPath.assert_garbage(self, before, link)

    def test_duress(self):
        d = self.make_vault()
        real = [self.add(d, "testimony %d from the border" % i,
                         "--field", "place=checkpoint %d" % i)
                for i in range(3)]
        dpass = self.write("duress.txt", b"they have my sister\n")
        self.v(d, "duress", "set", "--duress-passphrase-file", self.passfile,
               expect=USAGE)
        self.v(d, "duress", "bogus", expect=USAGE)
        self.v(d, "duress", "clear", "--decoy-from", d, expect=USAGE)
        r = self.v(d, "duress", "set", "--duress-passphrase-file", dpass,
                   "--decoy-from", d, "--decoy-passphrase-file", self.passfile,
                   expect=USAGE)
        self.assertIn(b"copy of this vault", r.stderr)
        # The decoy's records from another vault.
        src = self.make_vault("source")
        self.add(src, "choir rehearsal", "--tag", "music")
        self.add(src, "market prices")
        self.assertEqual(self.jv(d, "duress", "set", "--duress-passphrase-file",
                                 dpass, "--decoy-from", src,
                                 "--decoy-passphrase-file", self.passfile),
                         {"duress": True})
        self.assertEqual(os.path.getsize(os.path.join(d, "vault.key")), 192)
        self.assertEqual(sorted(self.list_ids(d)), sorted(real))
        self.v(d, "passwd", "--new-passphrase-file", dpass, expect=USAGE)
        saved = self.links(d)
        listing = self.jv(d, "list", passfile=dpass)
        self.assertEqual(sorted(x["title"] for x in listing),
                         ["choir rehearsal", "market prices"])
        self.assertEqual(sorted(os.listdir(d)), ["vault.db", "vault.key"])
        for link, before in saved.items():
            TestHappyPath.assert_garbage(self, before, link)
        # The real passphrase opens nothing now; the decoy is an ordinary
        # vault under the duress passphrase.
        self.v(d, "list", expect=PASSPHRASE)
        self.v(d, "add", "--title", "bread", passfile=dpass)
        self.assertEqual(len(self.jv(d, "list", passfile=dpass)), 3)
        with open(os.path.join(d, "vault.db"), "rb") as f:
            db = f.read()
        self.assertNotIn(b"border", db)
        self.assertNotIn(b"checkpoint", db)

    def test_duress_default_decoy_and_clear(self):
        d = self.make_vault()
        self.add(d, "testimony from the camp")
        dpass = self.write("duress.txt", b"they have my sister\n")
        self.v(d, "duress", "set", "--duress-passphrase-file", dpass)
        self.assertEqual(self.v(d, "duress", "clear").stdout,
                         b"duress passphrase removed\n")
        self.v(d, "list", passfile=dpass, expect=PASSPHRASE)
        self.assertEqual(len(self.list_ids(d)), 1)
        self.v(d, "duress", "set", "--duress-passphrase-file", dpass)
        self.v(d, "config", "set", "wipe-after", "5")
        titles = [x["title"] for x in self.jv(d, "list", passfile=dpass)]
        self.assertEqual(len(titles), 3)
        self.assertNotIn("testimony from the camp", titles)
        # The wipe stays armed on the decoy, its count reset.
        self.assertEqual(self.guard(d), (5, 0))
        self.assertEqual(sorted(os.listdir(d)),
                         ["vault.db", "vault.guard", "vault.key"])


class TestDeskCoordinator(test_sync.SyncTest):
    """The parts that need the organisation key: a real server, a
    coordinator and a field device."""

    def test_review_states_and_search_across_devices(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "F")
        r_field = self.add(f, "from the field: harbour", "--tag", "t1")
        self.sync(f)
        r_own = self.add(c, "coordinator's own harbour note")
        self.sync(c)
        lst = {x["id"]: x for x in self.jv(c, "list")}
        self.assertEqual(set(lst), {r_field, r_own})
        fdev = lst[r_field]["author"]
        self.assertNotEqual(fdev, lst[r_own]["author"])
        # search covers every device's records
        hits = [x["id"] for x in self.jv(c, "search", "HARBOUR")]
        self.assertEqual(sorted(hits), sorted([r_field, r_own]))
        self.assertEqual([x["id"] for x in self.jv(c, "search", "harbour",
                                                   "--device", fdev)],
                         [r_field])
        # review states
        for state in ("reviewed", "needs-follow-up", "archived", "new",
                      "reviewed"):
            j = self.jv(c, "review", r_field, "--state", state)
            self.assertEqual(j, {"id": r_field, "state": state})
            self.assertEqual(self.jv(c, "show", r_field)["state"], state)
        out = self.v(c, "review", r_own[:8], "--state",
                     "needs-follow-up").stdout.decode()
        self.assertEqual(out, "%s  needs-follow-up\n" % r_own)
        for state, want in (("reviewed", [r_field]),
                            ("needs-follow-up", [r_own]),
                            ("new", []), ("archived", [])):
            got = [x["id"] for x in self.jv(c, "list", "--state", state)]
            self.assertEqual(got, want, state)
            for x in self.jv(c, "list", "--state", state):
                self.assertEqual(x["state"], state)
        text = self.v(c, "list").stdout.decode()
        self.assertIn("[reviewed]", text)
        self.assertIn("[needs-follow-up]", text)
        self.assertEqual(
            [x["id"] for x in self.jv(c, "list", "--state", "reviewed",
                                      "--device", fdev, "--tag", "t1")],
            [r_field])
        # the field device cannot review, and does not see the states
        self.v(f, "review", r_field, "--state", "archived", expect=DENIED)
        self.sync(f)
        self.assertEqual(self.jv(f, "show", r_field)["state"], "new")
        # a note from the coordinator reaches the field device
        self.v(c, "note", r_field, "--text", "which harbour?")
        self.sync(c)
        self.sync(f)
        self.assertEqual([(n["record"], n["text"]) for n in
                          self.jv(f, "notes")], [(r_field, "which harbour?")])

    def test_server_import_refusals(self):
        """`server import` refuses (exit 15) a bundle from a device that is
        not enrolled. A field device's retraction of a record it never
        synced is acknowledged and stored nowhere (docs/PROTOCOL.md, PUSH):
        refused, it would have blocked that device's every later push."""
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "F")
        why = (b"fieldvault: cannot import the bundle: an envelope's author "
               b"is not an enrolled device, or may not write that envelope")
        stranger = self.make_vault("stranger")
        self.add(stranger, "not enrolled")
        sb = self.path("stranger.fvb")
        self.v(stranger, "bundle", "export", sb)
        r = self.fv("server", "import", "--data", sdir, sb, expect=DENIED)
        self.assertTrue(r.stderr.startswith(why), r.stderr)
        rid = self.add(f, "never synced")
        self.v(f, "retract", rid, "--yes")
        fb = self.path("field.fvb")
        self.assertEqual(self.jv(f, "bundle", "export", fb)["envelopes"], 1)
        r = self.fv("server", "import", "--data", sdir, fb)
        self.assertEqual(r.stdout, b"imported 1 envelope (0 new)\n")
        self.assertEqual(self.sync(c)["pulled"], 0)
        self.assertEqual(self.sync(f)["pulled"], 0)


# ---- format 1 vaults under format 2 (docs/FORMAT.md 5.8, 8, 11) -------------

class TestFormatOneVault(CliTest):
    TESTS = os.path.dirname(os.path.abspath(__file__))

    def versions(self, vault):
        """id (hex) -> body version of every envelope stored in the vault,
        read by check_vectors.py (FieldVault's independent reader)."""
        sys.path.insert(0, os.path.join(self.TESTS, "vectors"))
        from check_vectors import parse_envelope
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(vault, "vault.db"),
                              uri=True)
        try:
            rows = con.execute("SELECT bytes FROM envelope WHERE bytes IS NOT NULL"
                               ).fetchall()
        finally:
            con.close()
        out = {}
        for (b,) in rows:
            e = parse_envelope(bytes(b))
            out[e["id"].hex()] = e["version"]
        return out

    def get(self, vault, rid, name):
        out = self.path("got-" + secrets.token_hex(6))
        self.v(vault, "attachment", "get", rid, name, "--output", out)
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data

    def test_format_one_vault_reads_and_grows_in_format_two(self):
        """A vault written entirely by format 1 (the fuzz fixture's field
        device) opens, reads and verifies; an edit that keeps its unpadded
        attachment writes a format 2 envelope and the attachment still
        reads to the byte; a new attachment is padded on disk and reads to
        the byte; the evidence export of the mixed vault verifies."""
        d = self.path("old")
        shutil.copytree(os.path.join(self.TESTS, "fuzz", "fixture", "field"), d)
        self.passfile = self.write("fuzz.txt", b"fuzz\n")
        before = self.versions(d)
        self.assertTrue(before)
        self.assertEqual(set(before.values()), {1}, "the fixture is format 1")
        self.assertEqual(self.jv(d, "verify")["failures"], 0)
        old = {}
        for r in self.jv(d, "list"):
            for a in self.show(d, r["id"])["attachments"]:
                data = self.get(d, r["id"], a["name"])
                self.assertEqual(len(data), a["size"])
                old[(r["id"], a["name"])] = data
        self.assertTrue(old, "the fixture has attachments")
        (rid, name), data = sorted(old.items())[0]
        # an edit keeping the format 1 attachment: a format 2 envelope
        self.v(d, "edit", rid, "--field", "checked=format 2")
        new = {i: v for i, v in self.versions(d).items() if i not in before}
        self.assertEqual(list(new.values()), [2], new)
        self.assertEqual(self.get(d, rid, name), data)
        # a new attachment of 1000 bytes: its one chunk is stored padded
        # to 1024 (+ the 16-byte tag), and reads back as the 1000
        fresh = os.urandom(1000)
        src = self.write("files/fresh.bin", fresh)
        rid2 = self.add(d, "format 2", "--attach", src)
        self.assertEqual(self.get(d, rid2, "fresh.bin"), fresh)
        con = sqlite3.connect(os.path.join(d, "vault.db"))
        try:
            lens = sorted(n for (n,) in con.execute(
                "SELECT length(data) FROM chunk"))
        finally:
            con.close()
        self.assertIn(1024 + 16, lens)
        self.assertNotIn(1000 + 16, lens)
        j = self.jv(d, "verify")
        self.assertEqual(j["failures"], 0, j)
        self.assertTrue(j["ok"], j)
        # every record reads as before, the edited one with its field
        self.assertEqual(self.show(d, rid)["fields"].get("checked"), "format 2")
        for (r, n), b in old.items():
            self.assertEqual(self.get(d, r, n), b)
        # the evidence export of the mixed vault passes the independent
        # verifier
        out = self.path("evidence")
        self.v(d, "export", "--format", "evidence", "--output", out)
        p = subprocess.run([sys.executable, os.path.join(self.TESTS,
                                                         "verify_evidence.py"),
                            out], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


def main():
    global BIN
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        BIN = os.path.abspath(argv.pop(1))
    else:
        BIN = os.environ.get("FIELDVAULT_BIN") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin",
            "fieldvault")
    if not os.access(BIN, os.X_OK):
        print("test_cli.py: no fieldvault binary at %s" % BIN, file=sys.stderr)
        return 2
    test_sync.BIN = BIN
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    r = prog.result
    print("test_cli: %d run, %d failures, %d errors, %d skipped" % (
        r.testsRun, len(r.failures), len(r.errors), len(r.skipped)))
    return 0 if r.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
