#!/usr/bin/python3
"""End-to-end test of the coordinator's desk (issue 5) with real processes:
a real server on 127.0.0.1, two field devices and two coordinators (the
second enrolled by a coordinator invite and given the organisation key by
`org key export` / `org key import`). Notes to the field, review states,
a conflict and its merge, a retraction that reaches every side (and leaves
no ciphertext at the server), exports in every format, and `verify`
catching a flipped byte. Standard library only; the helpers (servers,
vaults, sync) are test_sync.py's.

    python3 tests/test_desk.py build/bin/fieldvault [unittest options]
"""

import base64
import csv
import hashlib
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli  # noqa: E402
import test_sync  # noqa: E402
from test_sync import (CORRUPT, DENIED, EXISTS, HEX64, OK,  # noqa: E402
                       PASSPHRASE, NOTFOUND, SyncTest)

STATES = ("new", "reviewed", "needs-follow-up", "archived")


def tree_bytes(top):
    """Every file under `top`, path -> bytes."""
    out = {}
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[p] = fh.read()
    return out


def holders(top, needle):
    return sorted(p for p, b in tree_bytes(top).items() if needle in b)


class DeskTest(SyncTest):
    def setUp(self):
        super().setUp()
        self.recovery = self.write("recovery.txt", b"a separate recovery phrase\n")

    def enroll(self, vault, invite, srv, role):
        j = self.jv(vault, "enroll", invite, "--server", srv.address)
        self.assertEqual(j["role"], role, j)
        self.assertRegex(j["device"], HEX64)
        return j["device"]

    def desk(self):
        """Server, C1 (admin, org init), C2 (coordinator invite + the org key
        from C1's export), field devices F1 and F2. Returns a dict."""
        sdir, srv, c1 = self.organisation()
        o = {"sdir": sdir, "srv": srv, "C1": c1}
        for name in ("F1", "F2"):
            o[name] = self.make_vault(name)
            o[name + "_id"] = self.enroll(o[name], self.invite(c1, name), srv,
                                          "field")
        c2 = o["C2"] = self.make_vault("C2")
        o["C2_id"] = self.enroll(c2, self.invite(c1, "second", "coordinator"),
                                 srv, "coordinator")
        coords = [d["id"] for d in self.devices(c1).values()
                  if d["role"] == "coordinator" and d["id"] != o["C2_id"]]
        self.assertEqual(len(coords), 1, coords)
        o["C1_id"] = coords[0]
        key = self.path("org.key")
        j = self.jv(c1, "org", "key", "export", "--output", key,
                    "--recovery-passphrase-file", self.recovery)
        self.assertEqual(j, {"output": key, "exported": True})
        st = os.stat(key)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_size, 184)
        # never over an existing file; a wrong recovery passphrase is refused
        self.v(c1, "org", "key", "export", "--output", key,
               "--recovery-passphrase-file", self.recovery, expect=EXISTS)
        self.v(c2, "org", "key", "import", key,
               "--recovery-passphrase-file", self.passfile, expect=PASSPHRASE)
        self.assertEqual(self.jv(c2, "org", "key", "import", key,
                                 "--recovery-passphrase-file", self.recovery),
                         {"imported": True})
        # the same key again is fine
        self.v(c2, "org", "key", "import", key,
               "--recovery-passphrase-file", self.recovery)
        # a field device has no key to export
        self.v(o["F1"], "org", "key", "export", "--output", self.path("f.key"),
               "--recovery-passphrase-file", self.recovery, expect=DENIED)
        self.assertFalse(os.path.exists(self.path("f.key")))
        return o

    def listing(self, vault, *args):
        j = self.jv(vault, "list", *args)
        self.assertIsInstance(j, list)
        return {x["id"]: x for x in j}

    def heads(self, vault, rid):
        return sorted(self.jv(vault, "show", rid)["heads"])

    def notes(self, vault):
        j = self.jv(vault, "notes")
        self.assertIsInstance(j, list)
        return [(n["record"], n["text"]) for n in j]

    def everyone_syncs(self, o, *names):
        for n in names or ("F1", "F2", "C1", "C2"):
            self.sync(o[n])


class TestKeyCustody(DeskTest):
    def pty(self, *args):
        p = test_cli.PtyRun(args)
        self.addCleanup(p.close)
        return p

    def test_damaged_file_and_other_organisation(self):
        o = self.desk()
        key = self.path("org.key")
        with open(key, "rb") as f:
            good = f.read()
        bad = bytearray(good)
        bad[100] ^= 0x40
        damaged = self.write("damaged.key", bytes(bad))
        c3 = self.make_vault("C3")
        self.v(c3, "org", "key", "import", damaged,
               "--recovery-passphrase-file", self.recovery, expect=CORRUPT)
        self.v(c3, "org", "key", "import", self.write("short.key", good[:150]),
               "--recovery-passphrase-file", self.recovery, expect=CORRUPT)
        # a vault of another organisation holds another key
        sdir2, _, admin2 = self.server_init("server2")
        other = self.make_vault("other")
        srv2 = self.start_server(sdir2)
        self.enroll(other, admin2, srv2, "coordinator")
        self.v(other, "org", "init")
        self.v(other, "org", "key", "import", key,
               "--recovery-passphrase-file", self.recovery, expect=EXISTS)
        # the recovery passphrase typed at a prompt: no echo, asked twice on
        # export, once on import
        k2 = self.path("typed.key")
        p = self.pty("--vault", o["C1"], "--passphrase-file", self.passfile,
                     "org", "key", "export", "--output", k2)
        p.read_until(b"Recovery passphrase: ")
        self.assertFalse(p.echo_on(), "echo is on at the prompt")
        p.type(b"typed recovery\n")
        p.read_until(b"Repeat")
        p.type(b"typed recovery\n")
        self.assertEqual(p.wait(), OK, p.out)
        self.assertNotIn(b"typed recovery", p.out)
        c4 = self.make_vault("C4")
        p = self.pty("--vault", c4, "--passphrase-file", self.passfile,
                     "org", "key", "import", k2)
        p.read_until(b"Recovery passphrase: ")
        p.type(b"mistyped\n")
        self.assertEqual(p.wait(), PASSPHRASE, p.out)
        p = self.pty("--vault", c4, "--passphrase-file", self.passfile,
                     "org", "key", "import", k2)
        p.read_until(b"Recovery passphrase: ")
        p.type(b"typed recovery\n")
        self.assertEqual(p.wait(), OK, p.out)
        # the second coordinator can act as one: invite and list devices
        inv = self.invite(o["C2"], "third worker")
        f3 = self.make_vault("F3")
        self.enroll(f3, inv, o["srv"], "field")
        self.assertIn("third worker", self.devices(o["C1"]))


class TestDesk(DeskTest):
    def test_two_coordinators_two_field_devices(self):
        o = self.desk()
        f1, f2, c1, c2 = o["F1"], o["F2"], o["C1"], o["C2"]
        sdir = o["sdir"]

        # ---- records from the field reach both coordinators
        r1 = self.add(f1, "crossing at Hyesan", "--tag", "border",
                      "--field", "place=Hyesan", "--narrative-file",
                      self.write("n1.txt", b"We crossed the river at night."))
        r2 = self.add(f1, "detention in Onsong", "--tag", "detention")
        att = self.write("photo.jpg", os.urandom(300 * 1024))
        r3 = self.add(f2, "witness W-17", "--tag", "detention", "--attach", att)
        self.settle(f1)
        self.settle(f2)
        self.settle(c1)
        self.settle(c2)
        for c in (c1, c2):
            lst = self.listing(c)
            self.assertEqual(set(lst), {r1, r2, r3})
            self.assertEqual(lst[r1]["author"], o["F1_id"])
            self.assertEqual(lst[r3]["author"], o["F2_id"])
            self.assertTrue(all(x["state"] == "new" for x in lst.values()))
        self.assertEqual(set(self.listing(f1)), {r1, r2})
        self.assertEqual(set(self.listing(f2)), {r3})

        # ---- review states: set by one coordinator, seen by the other
        self.v(c1, "review", r1, "--state", "reviewed")
        self.v(c1, "review", r3, "--state", "needs-follow-up")
        self.v(f1, "review", r1, "--state", "archived", expect=DENIED)
        self.sync(c1)
        self.sync(c2)
        lst = self.listing(c2)
        self.assertEqual(lst[r1]["state"], "reviewed")
        self.assertEqual(lst[r2]["state"], "new")
        self.assertEqual(lst[r3]["state"], "needs-follow-up")
        self.assertEqual(set(self.listing(c2, "--state", "reviewed")), {r1})
        self.assertEqual(set(self.listing(c2, "--state", "new")), {r2})
        self.assertEqual(set(self.listing(c2, "--tag", "detention")), {r2, r3})
        self.assertEqual(set(self.listing(c2, "--device", o["F2_id"])), {r3})
        self.assertEqual(set(self.listing(c2, "--since", "2000-01-01",
                                          "--until", "2999-12-31")),
                         {r1, r2, r3})
        self.assertEqual(set(self.listing(c2, "--until", "2000-01-01")), set())
        # the newest setting wins everywhere
        time.sleep(1.1)
        self.v(c2, "review", r1, "--state", "archived")
        self.sync(c2)
        self.sync(c1)
        self.assertEqual(self.listing(c1)[r1]["state"], "archived")

        # ---- notes to the field: the author device only, after its sync
        self.v(c1, "note", r1, "--text", "Please ask W-09 about the date.")
        self.assertEqual(self.notes(f1), [])
        self.sync(c1)
        self.assertEqual(self.notes(f1), [])  # not before its next sync
        self.everyone_syncs(o)
        self.assertEqual(self.notes(f1),
                         [(r1, "Please ask W-09 about the date.")])
        self.assertEqual(self.notes(f2), [])
        self.assertEqual(self.notes(c2),
                         [(r1, "Please ask W-09 about the date.")])
        shown = self.jv(c2, "show", r1)
        self.assertEqual([n["text"] for n in shown["notes"]],
                         ["Please ask W-09 about the date."])
        # the field worker answers on the record
        self.v(f1, "note", r1, "--text", "Done: it was in March.")
        self.everyone_syncs(o, "F1", "C1")
        self.assertIn((r1, "Done: it was in March."), self.notes(c1))

        # ---- a conflict between the coordinators, then a merge
        self.v(c1, "edit", r2, "--title", "detention in Onsong (C1)")
        self.v(c2, "edit", r2, "--title", "detention in Onsong (C2)")
        self.sync(c1)
        self.sync(c2)
        self.sync(c1)
        h1, h2 = self.heads(c1, r2), self.heads(c2, r2)
        self.assertEqual(len(h1), 2, h1)
        self.assertEqual(h1, h2)
        self.assertTrue(self.listing(c1)[r2].get("conflict"))
        j = self.jv(c2, "merge", r2, "--field", "merged=yes")
        self.everyone_syncs(o, "C2", "C1", "F1")
        for v in (c1, c2, f1):
            hs = self.heads(v, r2)
            self.assertEqual(len(hs), 1, (v, hs))
            self.assertEqual(hs, self.heads(c2, r2))
            s = self.jv(v, "show", r2)
            revs = {x["id"] for x in s["revisions"]}
            self.assertTrue(set(h1) <= revs, "history kept")
        if isinstance(j, dict) and "revision" in j:
            self.assertEqual(self.heads(c1, r2), [j["revision"]])

        # ---- exports in every format, from the second coordinator
        self.export_all(c2, {r1, r2, r3})

        # ---- chain of custody: verify, then a flipped byte in vault.db
        j = self.jv(c1, "verify")
        self.assertEqual(j["failures"], 0, j)
        self.assertGreater(j["envelopes"], 0, j)
        self.v(c1, "verify")

        # ---- a retraction reaches every side; no ciphertext stays behind
        env_slices = self.ciphertext_slices(c1, r3)
        chunk_slices = self.chunk_slices(c1)
        self.assertTrue(env_slices and chunk_slices)
        for s in env_slices:
            self.assertTrue(holders(sdir, s), "the server holds r3 before")
        for s in chunk_slices:
            self.assertTrue(holders(sdir, s), "the server holds r3's chunk")
        self.v(c1, "retract", r3, "--yes")
        self.assertNotIn(r3, self.listing(c1))
        self.sync(c1)
        self.everyone_syncs(o, "F2", "C2")
        for v in (c1, c2, f2):
            self.assertNotIn(r3, self.listing(v))
            self.v(v, "show", r3, expect=NOTFOUND)
            for s in env_slices + chunk_slices:
                self.assertEqual(holders(v, s), [], "retracted copy left")
        self.assertEqual(set(self.listing(c2)), {r1, r2})
        for s in env_slices + chunk_slices:
            self.assertEqual(holders(sdir, s), [],
                             "the server still holds r3's ciphertext")
        o["srv"].stop()
        for s in env_slices + chunk_slices:
            self.assertEqual(holders(sdir, s), [],
                             "the server still holds r3's ciphertext")
        # the retraction itself remains, as an auditable fact
        db = sqlite3.connect(os.path.join(sdir, "server.db"))
        rows = db.execute("SELECT count(*) FROM retracted WHERE record = ?",
                          (bytes.fromhex(r3),)).fetchone()[0]
        db.close()
        self.assertEqual(rows, 1)
        for v in (c1, c2, f2):
            self.retraction_listed(v, r3, o["C1_id"])

        # verify after a flipped byte in one stored envelope
        self.assertEqual(self.jv(c1, "verify")["failures"], 0)
        self.flip_envelope(c1, r1)
        args = ["--vault", c1, "--passphrase-file", self.passfile]
        r = test_sync.run(args + ["verify"])
        self.assertEqual(r.returncode, CORRUPT, r.stderr)
        r = test_sync.run(args + ["--json", "verify"])
        self.assertEqual(r.returncode, CORRUPT, r.stderr)
        j = json.loads(r.stdout)
        self.assertGreaterEqual(j["failures"], 1, j)
        self.assertIn(r1, json.dumps(j["problems"]))

    # -- helpers of the flow

    def retraction_listed(self, vault, rid, who):
        """The retraction stays, as an auditable fact: its signed envelope
        (kind 6) is kept in the vault, `retractions` lists it (who, when),
        and the JSON export does not show the record."""
        db = sqlite3.connect(os.path.join(vault, "vault.db"))
        kinds = [k for (k,) in db.execute(
            "SELECT kind FROM envelope WHERE record = ? AND bytes IS NOT NULL",
            (bytes.fromhex(rid),))]
        db.close()
        self.assertEqual(kinds, [6], "the retraction alone stays")
        rs = [r for r in self.jv(vault, "retractions") if r["record"] == rid]
        self.assertEqual(len(rs), 1, rs)
        self.assertEqual(rs[0]["author"], who)
        self.assertRegex(rs[0]["time"], test_sync.ISO_UTC)
        out = self.path("after-retraction-%d.json" % len(os.listdir(self.tmp)))
        self.v(vault, "export", "--format", "json", "--output", out)
        with open(out, "rb") as f:
            doc = json.loads(f.read())
        if "retractions" in doc:
            self.assertIn(rid, json.dumps(doc["retractions"]))
        self.assertNotIn(rid, json.dumps(doc["records"]))

    def ciphertext_slices(self, vault, rid):
        """32-byte slices from the middle of every stored envelope of a
        record (in the vault.db of `vault`)."""
        db = sqlite3.connect(os.path.join(vault, "vault.db"))
        rows = db.execute("SELECT bytes FROM envelope WHERE record = ? "
                          "AND bytes IS NOT NULL",
                          (bytes.fromhex(rid),)).fetchall()
        db.close()
        return [b[0][len(b[0]) // 2:len(b[0]) // 2 + 32] for b in rows]

    def chunk_slices(self, vault):
        db = sqlite3.connect(os.path.join(vault, "vault.db"))
        rows = db.execute("SELECT data FROM chunk").fetchall()
        db.close()
        return [b[0][len(b[0]) // 2:len(b[0]) // 2 + 32] for b in rows]

    def flip_envelope(self, vault, rid):
        db = sqlite3.connect(os.path.join(vault, "vault.db"))
        seq, b = db.execute("SELECT seq, bytes FROM envelope WHERE record = ? "
                            "AND kind = 1 AND bytes IS NOT NULL ORDER BY seq "
                            "LIMIT 1", (bytes.fromhex(rid),)).fetchone()
        b = bytearray(b)
        b[len(b) // 2] ^= 0x01
        db.execute("UPDATE envelope SET bytes = ? WHERE seq = ?",
                   (bytes(b), seq))
        db.commit()
        db.close()

    def export_all(self, c, ids):
        listed = self.listing(c)
        # JSON: parsed back and compared with list --json and show --json
        out = self.path("export.json")
        j = self.jv(c, "export", "--format", "json", "--output", out)
        self.assertEqual(j["records"], len(ids), j)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode) & 0o077, 0)
        with open(out, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        recs = doc["records"] if isinstance(doc, dict) else doc
        by_id = {r["id"]: r for r in recs}
        self.assertEqual(set(by_id), ids)
        for rid in ids:
            e, l = by_id[rid], listed[rid]
            s = self.jv(c, "show", rid)
            for k in ("title", "narrative", "fields", "tags", "state",
                      "created", "modified", "revision"):
                self.assertEqual(e[k], s[k], (rid, k))
            self.assertEqual(e["state"], l["state"])
            # the creating device (list's and show's "author") and the
            # revision's signer (show's "signer")
            self.assertEqual(e["author"], l["author"])
            self.assertEqual(e["author"], s["author"])
            self.assertEqual(e["signer"], s["signer"])
            heads = e["heads"]
            if isinstance(heads, list):
                self.assertEqual(sorted(heads), sorted(s["heads"]))
            else:
                self.assertEqual(heads, len(s["heads"]))
            hist = e.get("history", e.get("revisions"))
            self.assertEqual([x["id"] for x in hist],
                             [x["id"] for x in s["revisions"]])
            self.assertEqual([n["text"] for n in e["notes"]],
                             [n["text"] for n in s["notes"]])
            self.assertEqual([a["name"] for a in e["attachments"]],
                             [a["name"] for a in s["attachments"]])
        self.v(c, "export", "--format", "json", "--output", out,
               expect=EXISTS)
        # a filter
        out = self.path("reviewed.json")
        self.v(c, "export", "--format", "json", "--output", out,
               "--state", "archived")
        with open(out, "rb") as f:
            doc = json.loads(f.read())
        recs = doc["records"] if isinstance(doc, dict) else doc
        self.assertEqual({r["id"] for r in recs},
                         {i for i in ids if listed[i]["state"] == "archived"})
        # CSV: one row per record
        out = self.path("export.csv")
        self.v(c, "export", "--format", "csv", "--output", out)
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(io.StringIO(f.read().lstrip("\ufeff"))))
        self.assertEqual({r["id"] for r in rows}, ids)
        for r in rows:
            self.assertEqual(r["title"], listed[r["id"]]["title"])
        # HTML: a directory, self-contained
        out = self.path("report")
        self.v(c, "export", "--format", "html", "--output", out)
        files = tree_bytes(out)
        self.assertIn(os.path.join(out, "index.html"), files)
        index = files[os.path.join(out, "index.html")].decode("utf-8")
        for rid in ids:
            self.assertIn(listed[rid]["title"], " ".join(
                b.decode("utf-8", "replace") for b in files.values()))
        for p, b in files.items():
            if p.endswith((".html", ".css", ".svg")):
                t = b.decode("utf-8", "replace")
                self.assertIsNone(
                    re.search(r"(?i)(src|href)\s*=\s*[\"']?\s*(https?:|//)|"
                              r"url\(\s*[\"']?\s*(https?:|//)|@import", t),
                    "a network reference in %s" % p)
        self.assertIn("<html", index.lower())
        # evidence: the original envelopes, a manifest, how to verify
        out = self.path("evidence")
        self.v(c, "export", "--format", "evidence", "--output", out,
               "--record", sorted(ids)[0])
        files = {os.path.relpath(p, out): b for p, b in tree_bytes(out).items()}
        self.assertIn("README.txt", files)
        json.loads(files["manifest.json"])
        envs = {n: b for n, b in files.items() if n.startswith("envelopes/")}
        # the record's genesis envelope (its id is the record id) is there,
        # and every envelope and chunk file is named by its BLAKE2b-256
        first = sorted(ids)[0]
        self.assertTrue(any(first in n for n in envs), sorted(files))
        for n, b in files.items():
            if n.startswith(("envelopes/", "chunks/")):
                name = os.path.splitext(os.path.basename(n))[0]
                self.assertEqual(hashlib.blake2b(b, digest_size=32).hexdigest(),
                                 name, n)
        self.assertTrue(any(n.startswith("chunks/") for n in files) ==
                        bool(listed[first]["attachments"]), sorted(files))


class TestUnknownOrigin(DeskTest):
    def test_edit_without_its_genesis(self):
        """A coordinator's edit carried by courier to a vault that never got
        the record's first revision: its creator is unknown, and list says
        so (null) instead of naming an all-zero device."""
        o = self.desk()
        f1, c2 = o["F1"], o["C2"]
        rid = self.add(f1, "crossing at Hyesan")
        self.settle(f1)
        self.settle(c2)
        self.v(c2, "edit", rid, "--field", "status=checked")
        bundle = self.path("c2.bundle")
        self.v(c2, "bundle", "export", bundle)
        w = self.make_vault("W")
        self.v(w, "org", "key", "import", self.path("org.key"),
               "--recovery-passphrase-file", self.recovery)
        self.v(w, "bundle", "import", bundle)
        lst = self.listing(w)
        self.assertIn(rid, lst)
        self.assertIsNone(lst[rid]["author"], lst[rid])
        self.assertNotIn("0" * 64, self.v(w, "list").stdout.decode())
        # show gives the history the vault holds: c2's edit, no genesis
        s = self.jv(w, "show", rid)
        self.assertIsNone(s["author"], s)
        self.assertTrue(s["revisions"], s)
        self.assertNotIn(rid, [r["id"] for r in s["revisions"]])
        self.assertEqual({r["author"] for r in s["revisions"]}, {o["C2_id"]})
        self.assertRegex(self.v(w, "show", rid).stdout, rb"author: +unknown")
        # zeros are no device's id: not a way to select such records
        r = self.v(w, "list", "--device", "0" * 64, expect=test_sync.USAGE)
        self.assertIn(b"--device", r.stderr)
        self.assertEqual(set(self.listing(c2, "--device", o["F1_id"])), {rid})


class TestCourierStates(DeskTest):
    def test_review_state_not_by_courier(self):
        """A bundle cannot set review states (a vault cannot tell a
        coordinator's key from a field device's): another coordinator leaves
        them out and says so, and gets them from the server; the writer's own
        come back without a word."""
        o = self.desk()
        f1, c1, c2 = o["F1"], o["C1"], o["C2"]
        rid = self.add(f1, "crossing at Hyesan")
        self.settle(f1)
        self.settle(c1)
        self.settle(c2)
        self.v(c2, "review", rid, "--state", "archived")
        bundle = self.path("c2-states.bundle")
        self.v(c2, "bundle", "export", bundle)
        r = self.v(c1, "bundle", "import", bundle)
        self.assertIn(b"1 review state skipped: they travel only through "
                      b"the server", r.stdout)
        self.assertEqual(self.jv(c1, "bundle", "import", bundle)
                         ["states_skipped"], 1)
        self.assertEqual(self.listing(c1)[rid]["state"], "new")
        j = self.jv(c2, "bundle", "import", bundle)
        self.assertEqual(j["states_skipped"], 0)
        self.assertEqual(self.listing(c2)[rid]["state"], "archived")
        self.sync(c2)
        self.sync(c1)
        self.assertEqual(self.listing(c1)[rid]["state"], "archived")

NEWER = 7  # exit code: made by a newer FieldVault


class TestPayloadValidation(DeskTest):
    """Issue 10: nothing acts on a payload it has not validated. Hostile
    envelopes are made by tests/forge_bundle (built with the tests): signed
    by a real device key, sealed to the receiving vault, with payloads that
    break docs/FORMAT.md."""

    def forge(self, *args):
        tool = os.environ.get("FV_FORGE_BUNDLE") or os.path.join(
            os.path.dirname(test_sync.BIN), "forge_bundle")
        if not os.access(tool, os.X_OK):
            self.skipTest("no forge_bundle tool at %s" % tool)
        r = subprocess.run([tool] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for line in r.stdout.decode().splitlines():
            what, eid = line.split()
            self.assertRegex(eid, HEX64)
            out[what] = eid
        return out

    def held(self, vault, eid):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(vault, "vault.db"),
                             uri=True, timeout=10)
        try:
            return db.execute("SELECT count(*) FROM envelope WHERE id = ?",
                              (bytes.fromhex(eid),)).fetchone()[0]
        finally:
            db.close()

    def meta_keys(self, vault):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(vault, "vault.db"),
                             uri=True, timeout=10)
        try:
            return sorted(k for (k,) in db.execute("SELECT k FROM meta"))
        finally:
            db.close()

    def test_forged_payloads_refused_rest_imported(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "F")
        self.sync(c)  # certifies F: its bundle is not kept apart
        kept = self.add(f, "kept", "--field", "said=a forged retraction names it")
        self.add(f, "second")
        forged = self.forge(f, c, self.passfile, kept)
        self.assertEqual(len(forged), 10, forged)
        bundle = self.path("forged.fvb")
        self.v(f, "bundle", "export", bundle)
        want = (b"fieldvault: 10 envelopes in the bundle were refused: their "
                b"content breaks the format (the other 2 imported)\n")
        for _ in range(2):  # the same again: refused again, nothing more
            r = self.v(c, "bundle", "import", bundle, expect=CORRUPT)
            self.assertEqual(r.stderr, want)
            self.assertEqual(self.titles(c), ["kept", "second"])
            for what, eid in forged.items():
                self.assertEqual(self.held(c, eid), 0, what)
        self.assertEqual(self.jv(c, "show", kept)["fields"],
                         {"said": "a forged retraction names it"})
        self.assertEqual(self.jv(c, "verify")["failures"], 0)

        # The same envelopes through the server: refused at the pull, the
        # sync says how many after its summary and exits 5; the next sync
        # has nothing more to refuse. (The server reads no payload: it took
        # the first retraction, signed by the record's creator, erased the
        # record there and dropped the second retraction and the grant,
        # which came after it. So 8 reach the coordinator.)
        self.sync(f)
        r = self.sync_raw(c)
        self.assertEqual(r.returncode, CORRUPT, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["refused"], 8, j)
        self.assertEqual(r.stderr, b"fieldvault: 8 envelopes from the server "
                         b"were refused: their content breaks the format and "
                         b"were not stored\n")
        self.assertEqual(self.sync(c)["refused"], 0)
        self.assertEqual(self.titles(c), ["kept", "second"])
        for what, eid in forged.items():
            self.assertEqual(self.held(c, eid), 0, what)
        self.assertEqual(self.jv(c, "verify")["failures"], 0)

    def sync_raw(self, vault):
        return test_sync.run(["--vault", vault, "--passphrase-file",
                              self.passfile, "--json", "sync"])

    def test_tombstone_before_first_sync(self):
        """A record added and deleted before the device's first sync: only
        its tombstone travels, and every coordinator's verify still
        passes."""
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "F")
        slip = self.add(f, "a slip")
        self.v(f, "delete", slip)
        self.add(f, "kept")
        self.sync(f)
        self.sync(c)
        self.assertEqual(self.titles(c), ["kept"])
        for vault in (c, f):
            j = self.jv(vault, "verify")
            self.assertEqual(j["failures"], 0, j)
            self.assertTrue(j["ok"], j)
        self.v(c, "verify")

    def test_newer_envelope_in_bundle(self):
        a = self.make_vault("A")
        b = self.make_vault("B")
        self.add(a, "from A")
        self.forge("--newer", a, self.passfile)
        bundle = self.path("newer.fvb")
        self.v(a, "bundle", "export", bundle)
        r = self.v(b, "bundle", "import", bundle, expect=NEWER)
        self.assertEqual(r.stderr, b"fieldvault: the bundle holds an envelope "
                         b"made by a newer FieldVault: update this program to "
                         b"read it\n")
        self.assertNotIn(b"server", r.stderr)

    def test_org_init_not_enrolled_leaves_nothing(self):
        v = self.make_vault("V")
        self.add(v, "written before any organisation")
        before = self.meta_keys(v)
        r = self.v(v, "org", "init", expect=NOTFOUND)
        self.assertIn(b"not enrolled", r.stderr)
        self.assertEqual(self.meta_keys(v), before)
        self.assertNotIn("org_sk", before)
        # no organisation key to export, no grant waiting in the outbox
        self.v(v, "org", "key", "export", "--output", self.path("o.key"),
               "--recovery-passphrase-file", self.recovery, expect=DENIED)
        self.assertFalse(os.path.exists(self.path("o.key")))


def invite_parts(invite):
    """An invite's CBOR [address, pin, token, org] (docs/PROTOCOL.md), read
    with the standard library: base32 body, 4-byte BLAKE2b checksum."""
    body = invite[4:].replace("-", "").replace(" ", "").upper()
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    cb, check = raw[:-4], raw[-4:]
    assert hashlib.blake2b(cb, digest_size=32).digest()[:4] == check
    assert cb[0] == 0x84, cb[:1]
    pos = 1
    out = []
    for _ in range(4):
        b = cb[pos]
        major, info = b >> 5, b & 31
        pos += 1
        if b == 0xf6:
            out.append(None)
            continue
        if info < 24:
            n = info
        elif info == 24:
            n = cb[pos]
            pos += 1
        else:
            n = int.from_bytes(cb[pos:pos + 2], "big")
            pos += 2
        out.append(cb[pos:pos + n].decode() if major == 3 else cb[pos:pos + n])
        pos += n
    assert pos == len(cb)
    return out


def invite_with_org(invite, org):
    """The same invite naming organisation key `org` instead: what anyone
    who has seen one invite can make (the checksum authenticates nothing)."""
    addr, pin, token, _ = invite_parts(invite)
    a = addr.encode()
    cb = bytes([0x84]) + (bytes([0x60 + len(a)]) if len(a) < 24 else
                          bytes([0x78, len(a)])) + a
    cb += b"\x58\x20" + pin + b"\x50" + token + b"\x58\x20" + org
    raw = cb + hashlib.blake2b(cb, digest_size=32).digest()[:4]
    return "fv1-" + base64.b32encode(raw).decode().rstrip("=").lower()


class TestWhoMaySpeak(DeskTest):
    """Issue 10: who may speak. A coordinator's vault takes envelopes only
    from devices the organisation certified (and not from a revoked device
    after its revocation); the rest is kept apart, listed by `quarantine`,
    and released when the author's certificate arrives."""

    def quarantine(self, vault):
        j = self.jv(vault, "quarantine")
        self.assertIsInstance(j, list)
        for q in j:
            self.assertEqual(set(q), {"id", "author", "kind", "time", "why"}, q)
            self.assertRegex(q["id"], HEX64)
            self.assertRegex(q["author"], HEX64)
        return j

    def nowhere(self, c, title, ids):
        """`title` and the envelopes `ids` are in no listing, search,
        export or verify of coordinator vault `c`."""
        self.assertNotIn(title, self.titles(c))
        self.assertEqual(self.jv(c, "search", title), [])
        exp = self.path("exp-%d.json" % len(os.listdir(self.tmp)))
        self.v(c, "export", "--format", "json", "--output", exp)
        with open(exp, "rb") as f:
            data = f.read()
        self.assertNotIn(title.encode(), data)
        for i in ids:
            self.assertNotIn(i.encode(), data)
        j = self.jv(c, "verify")
        self.assertTrue(j["ok"], j)

    def test_forged_bundle_from_a_vault_never_enrolled(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "worker")
        self.add(f, "honest testimony")
        self.sync(f)
        self.sync(c)
        self.assertIn("honest testimony", self.titles(c))
        # The forger saw one invite: it holds the organisation's public key.
        org = invite_parts(self.invite(c, "seen by the forger"))[3]
        self.assertEqual(len(org), 32)
        # It enrolls with a server of its own, through an invite of that
        # server rewritten to name the organisation's key, and seals a
        # record to it. It never speaks to the organisation's server.
        fsdir, _, fadmin = self.server_init("forger-server")
        fsrv = self.start_server(fsdir)
        x = self.make_vault("X")
        j = self.jv(x, "enroll", invite_with_org(fadmin, org),
                    "--server", fsrv.address)
        x_id = j["device"]
        self.assertNotIn(x_id, [d["id"] for d in self.devices(c).values()])
        fid = self.add(x, "forged testimony")
        bundle = self.path("forged.bundle")
        self.v(x, "bundle", "export", bundle)
        r = self.v(c, "bundle", "import", bundle)
        self.assertIn(b"1 envelope kept apart", r.stdout)
        q = self.quarantine(c)
        self.assertEqual([(e["id"], e["author"], e["kind"], e["why"])
                          for e in q], [(fid, x_id, "revision",
                                         "unknown-author")])
        self.assertRegex(q[0]["time"], r"^\d{4}-\d\d-\d\dT")
        text = self.v(c, "quarantine").stdout.decode()
        self.assertIn(fid, text)
        self.assertIn("unknown-author", text)
        self.nowhere(c, "forged testimony", [fid])
        self.v(c, "show", fid, expect=NOTFOUND)
        # Importing it again changes nothing; a sync does not release it.
        j = self.jv(c, "bundle", "import", bundle)
        self.assertEqual((j["added"], j["quarantined"]), (0, 0), j)
        self.sync(c)
        self.assertEqual(len(self.quarantine(c)), 1)
        self.nowhere(c, "forged testimony", [fid])
        # The organisation's own devices still come through a bundle.
        self.add(f, "second honest testimony")
        fb = self.path("worker.bundle")
        self.v(f, "bundle", "export", fb)
        j = self.jv(c, "bundle", "import", fb)
        self.assertEqual(j["quarantined"], 0, j)
        self.assertIn("second honest testimony", self.titles(c))

    def test_bundle_before_the_certificate_is_released_by_it(self):
        """A device enrolled after the coordinator's last sync: its bundle
        is kept apart, and the coordinator's next sync (which certifies the
        device) releases it. A field device reached by the coordinator's
        bundle takes its note: the bundle carries its certificate."""
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "late worker")
        rid = self.add(f, "late testimony")
        fb = self.path("late.bundle")
        self.v(f, "bundle", "export", fb)
        j = self.jv(c, "bundle", "import", fb)
        self.assertEqual((j["added"], j["quarantined"]), (0, 1), j)
        self.assertNotIn("late testimony", self.titles(c))
        j = self.sync(c)
        self.assertEqual(self.quarantine(c), [])
        self.assertIn("late testimony", self.titles(c))
        self.assertTrue(self.jv(c, "verify")["ok"])
        self.v(c, "note", rid, "--text", "please call the office")
        cb = self.path("coord.bundle")
        self.v(c, "bundle", "export", cb)
        j = self.jv(f, "bundle", "import", cb)
        self.assertEqual(j["quarantined"], 0, j)
        self.assertIn((rid, "please call the office"), self.notes(f))

    def test_revoked_device_bundle_after_revocation(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "lost phone")
        self.sync(c)  # certifies it
        before = self.add(f, "written before revocation")
        time.sleep(1.1)
        victim = self.devices(c)["lost phone"]["id"]
        self.v(c, "org", "revoke", victim)
        time.sleep(1.1)
        after = self.add(f, "written after revocation")
        bundle = self.path("lost.bundle")
        self.v(f, "bundle", "export", bundle)
        j = self.jv(c, "bundle", "import", bundle)
        self.assertEqual((j["added"], j["quarantined"]), (1, 1), j)
        titles = self.titles(c)
        self.assertIn("written before revocation", titles)
        q = self.quarantine(c)
        self.assertEqual([(e["id"], e["author"], e["why"]) for e in q],
                         [(after, victim, "revoked")])
        self.nowhere(c, "written after revocation", [after])
        self.assertIn(before, self.listing(c))
        # The server refuses the device as before.
        self.sync(f, expect=DENIED)
        # A second coordinator that syncs later learns the revocation too
        # and holds to it.
        c2 = self.make_vault("C2")
        self.enroll(c2, self.invite(c, "second", "coordinator"), srv,
                    "coordinator")
        key = self.path("org.key")
        self.v(c, "org", "key", "export", "--output", key,
               "--recovery-passphrase-file", self.recovery)
        self.v(c2, "org", "key", "import", key,
               "--recovery-passphrase-file", self.recovery)
        self.sync(c2)
        j = self.jv(c2, "bundle", "import", bundle)
        self.assertEqual(j["quarantined"], 1, j)
        self.assertEqual([e["id"] for e in self.quarantine(c2)], [after])
        self.assertIn("written before revocation", self.titles(c2))


def main():
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        test_sync.BIN = os.path.abspath(argv.pop(1))
    else:
        test_sync.BIN = os.environ.get("FIELDVAULT_BIN") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin",
            "fieldvault")
    test_cli.BIN = test_sync.BIN
    if not os.access(test_sync.BIN, os.X_OK):
        print("test_desk.py: no fieldvault binary at %s" % test_sync.BIN,
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    r = prog.result
    print("test_desk: %d run, %d failures, %d errors, %d skipped in %.0f s" % (
        r.testsRun, len(r.failures), len(r.errors), len(r.skipped),
        time.monotonic() - t0))
    return 0 if r.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
