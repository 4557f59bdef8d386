#!/usr/bin/env python3
"""End-to-end test of issue 10, section 1: one record a vault cannot open
never hides the others. Real processes: a server on 127.0.0.1, field
devices and coordinators, courier bundles, a proxy that cuts the first sync.

- a courier bundle from a vault that was never enrolled;
- an enrolled device pushing one validly signed envelope sealed to a random
  key (written by tests/forge_sealed, FV_FORGE_SEALED): the server takes it;
- a coordinator without the organisation key (told to import it);
- a first sync of 300 records recorded offline, cut part way: the key
  grants travel first, so the desk never shows a record it cannot open.

`list`/`search` show such a record once, marked, and exit 0; `export`
writes the rest and exits 19; `verify` reports each one.

    python3 tests/test_unreadable.py build/bin/fieldvault [unittest options]
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sync  # noqa: E402
from test_sync import (CORRUPT, HEX64, NETWORK, NOTFOUND, OK,  # noqa: E402
                       Proxy, SyncTest, run)

PARTIAL = 19  # export written without the records this vault cannot open
FORGE = None  # set in main()


class UnreadableTest(SyncTest):
    def setUp(self):
        super().setUp()
        self.recovery = self.write("recovery.txt", b"a separate recovery phrase\n")

    def forge(self, vault):
        """A validly signed record sealed to a random key, in the outbox."""
        r = subprocess.run([FORGE, vault, self.passfile, "random"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rid = r.stdout.decode().strip()
        self.assertRegex(rid, HEX64)
        return rid

    def raw(self, vault, *args, expect=OK):
        """Runs fieldvault on `vault` where stdout and several stderr lines
        both matter (a partial export, verify's report)."""
        r = run(["--vault", vault, "--passphrase-file", self.passfile]
                + list(args))
        self.assertEqual(r.returncode, expect, (args, r.stdout[:2000],
                                                r.stderr[:2000]))
        for ln in r.stderr.decode().splitlines():
            self.assertTrue(ln.startswith("fieldvault: "), ln)
        return r

    def listing(self, vault, *args):
        """`list --json` (exit 0): (readable titles by id, unreadable whys
        by id), each record once."""
        r = self.v(vault, "--json", "list", *args)
        items = json.loads(r.stdout.decode())
        ids = [x["id"] for x in items]
        self.assertEqual(len(ids), len(set(ids)), "a record listed twice")
        ok, bad = {}, {}
        for x in items:
            self.assertIsInstance(x["readable"], bool, x)
            if x["readable"]:
                ok[x["id"]] = x["title"]
            else:
                self.assertEqual(set(x), {"id", "readable", "why", "revision",
                                          "signer", "conflict"}, x)
                bad[x["id"]] = x["why"]
        return ok, bad, r.stderr.decode()

    def enroll_coordinator(self, c, srv, name):
        c2 = self.make_vault(name)
        j = self.jv(c2, "enroll", self.invite(c, name, "coordinator"),
                    "--server", srv.address)
        self.assertEqual(j["role"], "coordinator", j)
        return c2


class TestUnreadable(UnreadableTest):
    def test_bundle_random_key_and_missing_org_key(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "worker")
        first = self.add(f, "readable first", "--tag", "t")
        self.sync(f)
        # A vault that was never enrolled sends two records by courier: its
        # author has no certificate, so they are kept apart (test_desk.py
        # TestWhoMaySpeak), in no listing, until it enrolls (below).
        n = self.make_vault("never")
        never = [self.add(n, "never enrolled %d" % i, "--tag", "t")
                 for i in range(2)]
        b = self.path("stick.fvb")
        self.v(n, "bundle", "export", b)
        j = self.jv(c, "bundle", "import", b)
        self.assertEqual((j["added"], j["quarantined"]), (0, 2), j)
        self.assertEqual(sorted(q["id"] for q in self.jv(c, "quarantine")),
                         sorted(never))
        # The enrolled device pushes one sealed to a random key; the server
        # acknowledges it like any other.
        rnd = self.forge(f)
        last = self.add(f, "readable last", "--tag", "t")
        self.assertEqual(self.sync(f)["pushed"], 2)
        self.sync(c)

        ok, bad, err = self.listing(c)
        self.assertEqual(ok, {first: "readable first", last: "readable last"})
        self.assertEqual(set(bad), {rnd})
        for why in bad.values():
            self.assertIn("no key this vault holds", why)
        self.assertEqual(err, "fieldvault: 1 record cannot be opened by this "
                              "vault and was marked [unreadable]\n")
        # text: each once, marked, in its place; exit 0
        out = self.v(c, "list").stdout.decode().splitlines()
        self.assertEqual(len(out), 3, out)
        marked = [ln for ln in out if "[unreadable]" in ln]
        self.assertEqual(sorted(ln.split()[0] for ln in marked), [rnd])
        order = [ln.split()[0] for ln in out]
        self.assertLess(order.index(first), order.index(rnd), out)
        self.assertLess(order.index(rnd), order.index(last), out)
        # search matches content, so it names none of them
        j = self.jv(c, "search", "readable")
        self.assertEqual(sorted(x["id"] for x in j), sorted([first, last]))
        j = self.jv(c, "list", "--tag", "t")
        self.assertEqual(sorted(x["id"] for x in j), sorted([first, last]))
        # show says why
        r = self.v(c, "show", rnd, expect=NOTFOUND)
        self.assertIn(b"not readable by this vault", r.stderr)

        # export writes the readable ones and names the others: exit 19
        out_json = self.path("out.json")
        r = self.raw(c, "export", "--format", "json", "--output", out_json,
                     expect=PARTIAL)
        self.assertEqual(r.stdout.decode(), "2 records exported to %s\n" % out_json)
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 2, lines)
        for rid in [rnd]:
            self.assertTrue(any(("record %s left out" % rid) in ln
                                for ln in lines), (rid, lines))
        self.assertIn("1 record cannot be opened by this vault and was left "
                      "out of the export", lines[-1])
        with open(out_json, encoding="utf-8") as fh:
            doc = json.load(fh)
        self.assertEqual(doc["record_count"], 2)
        self.assertEqual(sorted(x["id"] for x in doc["records"]),
                         sorted([first, last]))
        r = self.raw(c, "--json", "export", "--format", "csv", "--output",
                     self.path("out.csv"), expect=PARTIAL)
        j = json.loads(r.stdout.decode())
        self.assertEqual((j["records"], j["unreadable"]), (2, 1), j)
        # export of one readable record by id: nothing left out, exit 0
        self.v(c, "export", "--format", "json", "--record", first,
               "--output", self.path("one.json"))

        # verify reports every record it cannot open
        r = self.raw(c, "verify", expect=CORRUPT)
        fails = [ln for ln in r.stdout.decode().splitlines()
                 if ln.startswith("FAIL record")]
        self.assertEqual(len(fails), 1, fails)
        for rid in [rnd]:
            self.assertTrue(any(("record %s" % rid) in ln and
                                "cannot open" in ln for ln in fails), fails)

        # a second coordinator, not yet given the organisation key, is told
        # to import it; after the import it reads what the first one does
        c2 = self.enroll_coordinator(c, srv, "second")
        self.sync(c2)
        ok2, bad2, err2 = self.listing(c2)
        self.assertEqual(ok2, {})
        self.assertIn(first, bad2)
        self.assertIn("org key import", bad2[first])
        self.assertIn("import it with 'fieldvault org key import FILE'", err2)
        key = self.path("org.key")
        self.v(c, "org", "key", "export", "--output", key,
               "--recovery-passphrase-file", self.recovery)
        self.v(c2, "org", "key", "import", key,
               "--recovery-passphrase-file", self.recovery)
        ok2, bad2, err2 = self.listing(c2)
        self.assertEqual(ok2, {first: "readable first", last: "readable last"})
        self.assertEqual(set(bad2), {rnd})
        self.assertNotIn("org key import", err2)

        # the never-enrolled vault enrolls and syncs: the coordinator's sync
        # certifies it (releasing its two records), its key grants reach the
        # desk, and the records open there
        self.field(c, srv, "late", vault=n)
        self.settle(n)
        self.sync(c)
        self.assertEqual(self.jv(c, "quarantine"), [])
        ok, bad, err = self.listing(c)
        self.assertEqual(set(ok), set([first, last] + never))
        self.assertEqual(set(bad), {rnd})
        self.assertEqual(err, "fieldvault: 1 record cannot be opened by this "
                              "vault and was marked [unreadable]\n")


class TestCutFirstSync(UnreadableTest):
    def test_grants_travel_first(self):
        sdir, srv, c = self.organisation()
        f = self.make_vault("offline")
        titles = set()
        for i in range(300):
            t = "offline %03d" % i
            self.add(f, t)
            titles.add(t)
        self.field(c, srv, "offline", vault=f)
        outcomes = []
        for cut in (30000, 90000, 160000, 230000, 300000):
            p = Proxy(srv.port, cut_after=cut)
            try:
                r = run(["--vault", f, "--passphrase-file", self.passfile,
                         "sync", "--server", p.address, "--timeout", "5"],
                        timeout=120)
            finally:
                p.close()
            outcomes.append((cut, r.returncode, p.total))
            self.assertIn(r.returncode, (OK, NETWORK), r.stderr)
            # whatever the server took so far, the desk can open all of it
            self.sync(c)
            ok, bad, err = self.listing(c)
            self.assertEqual(bad, {}, outcomes)
            self.assertEqual(err, "")
            self.assertTrue(set(ok.values()) <= titles)
        self.assertTrue(any(o[1] == NETWORK for o in outcomes), outcomes)
        self.settle(f)
        self.sync(c)
        ok, bad, _ = self.listing(c)
        self.assertEqual(bad, {})
        self.assertEqual(set(ok.values()), titles)


def main():
    global FORGE
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        test_sync.BIN = os.path.abspath(argv.pop(1))
    else:
        test_sync.BIN = os.environ.get("FIELDVAULT_BIN") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin",
            "fieldvault")
    FORGE = os.environ.get("FV_FORGE_SEALED") or os.path.join(
        os.path.dirname(test_sync.BIN), "forge_sealed")
    for what, path in (("fieldvault", test_sync.BIN), ("forge_sealed", FORGE)):
        if not os.access(path, os.X_OK):
            print("test_unreadable.py: no %s binary at %s" % (what, path),
                  file=sys.stderr)
            return 2
    t0 = time.monotonic()
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    r = prog.result
    print("test_unreadable: %d run, %d failures, %d errors, %d skipped in "
          "%.0f s" % (r.testsRun, len(r.failures), len(r.errors),
                      len(r.skipped), time.monotonic() - t0))
    return 0 if r.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
