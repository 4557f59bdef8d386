#!/usr/bin/env python3
"""End-to-end tests of server backups (README, "Backups"): the real
`fieldvault` binary as server and devices on 127.0.0.1. `server backup`
while `serve` runs and devices push; `server restore` into a new directory
served again (same pin: devices sync on, every chunk the database lists is
in its pack and matches its hash); a restore from an older backup after
more pushes (every device that was receipted or pulled past it notices,
exit 22, pushes again what the server lost and reads its feed anew, until
the server holds every envelope and chunk again); damaged, cut and
lengthened backup files refused with nothing made. The helpers (servers,
vaults, organisations) are test_sync.py's.

Usage: test_backup.py [PATH_TO_FIELDVAULT] [unittest args]"""

import hashlib
import os
import sqlite3
import stat
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sync  # noqa: E402
from test_sync import OK, USAGE, CORRUPT, EXISTS, ROLLBACK  # noqa: E402


class BackupTest(test_sync.SyncTest):
    def backup(self, sdir, name):
        out = self.path(name)
        j = self.jfv("server", "backup", "--data", sdir, "--output", out)
        self.assertEqual(set(j), {"files", "bytes"}, j)
        self.assertGreaterEqual(j["files"], 4, j)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600,
                         "the backup holds the server's private keys")
        return out

    def restore(self, backup, name):
        sdir = self.path(name)
        j = self.jfv("server", "restore", "--input", backup, "--data", sdir)
        self.assertEqual(set(j), {"files", "bytes"}, j)
        return sdir

    def check_restored(self, orig, sdir):
        """Keys as they were; the database whole; every chunk it lists in
        its pack, matching its hash."""
        for name in ("receipt.key", "tls.key", "tls.crt"):
            with open(os.path.join(orig, name), "rb") as a, \
                    open(os.path.join(sdir, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)
            self.assertEqual(
                stat.S_IMODE(os.stat(os.path.join(sdir, name)).st_mode),
                0o600, name)
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(sdir,
                                                              "server.db"),
                             uri=True)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone(),
                             ("ok",))
            rows = db.execute("SELECT hash, pack, off, len FROM chunk")\
                .fetchall()
        finally:
            db.close()
        for h, pack, off, ln in rows:
            with open(os.path.join(sdir, "chunks", "pack-%06d" % pack),
                      "rb") as f:
                f.seek(off)
                data = f.read(ln)
            self.assertEqual(len(data), ln)
            self.assertEqual(hashlib.blake2b(data, digest_size=32).digest(),
                             bytes(h), "chunk %s" % bytes(h).hex())
        return len(rows)

    def log_head(self, sdir):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(sdir,
                                                              "server.db"),
                             uri=True)
        try:
            return db.execute("SELECT COUNT(*) FROM log").fetchone()[0]
        finally:
            db.close()

    def log_ids(self, sdir):
        return self.db_set(sdir, "SELECT id FROM log")

    def chunk_hashes(self, sdir):
        return self.db_set(sdir, "SELECT hash FROM chunk")

    def db_set(self, sdir, sql):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(sdir,
                                                              "server.db"),
                             uri=True)
        try:
            rows = [bytes(r[0]) for r in db.execute(sql)]
        finally:
            db.close()
        self.assertEqual(len(rows), len(set(rows)), "each once")
        return set(rows)

    def test_backup_while_pushing_restore_and_rollback(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "F")
        g = self.field(c, srv, "G")
        photo = os.urandom(600 * 1024)  # three chunks
        self.write("photo.bin", photo)
        first = [self.add(f, "before %d" % i) for i in range(3)]
        first.append(self.add(f, "photo", "--attach",
                              self.path("photo.bin")))
        self.settle(f)
        self.settle(c)

        # backups while G pushes records and an attachment, over and over
        heads = []
        old = self.while_pushing(
            g, 40, 4, lambda k: self.backup(sdir, "during-%d.fvb" % k))
        for k, b in enumerate(old):
            r = self.restore(b, "check-%d" % k)
            self.check_restored(sdir, r)
            heads.append(self.log_head(r))
        self.assertEqual(heads, sorted(heads))
        self.assertGreater(heads[-1], heads[0], "the backups saw pushes")
        older = self.restore(old[0], "older")
        older_head = self.log_head(older)

        # more pushes; then a backup at rest
        later = [self.add(f, "after the backups %d" % i) for i in range(3)]
        self.settle(f)
        self.settle(g)
        self.settle(c)
        full = self.backup(sdir, "full.fvb")
        self.assertGreater(self.log_head(sdir), older_head)
        mine = set(x["id"] for x in self.jv(c, "list"))
        self.assertTrue(set(first + later) <= mine)
        srv.stop()

        # the restored server serves every device as before: same pin
        restored = self.restore(full, "restored")
        self.assertGreaterEqual(self.check_restored(sdir, restored), 3)
        srv2 = self.start_server(restored)
        for v in (f, g, c):
            j = self.sync(v, "--server", srv2.address)
            self.assertEqual(j["pulled"], 0, j)
        newer = self.add(f, "on the restored server")
        j = self.sync(f, "--server", srv2.address)
        self.assertGreaterEqual(j["pushed"], 1, j)
        j = self.sync(c, "--server", srv2.address)
        self.assertGreaterEqual(j["added"], 1, j)
        self.assertIn(newer, set(x["id"] for x in self.jv(c, "list")))
        s = self.jv(c, "show", first[3])
        self.assertEqual([a["size"] for a in s["attachments"]], [len(photo)])
        self.assertAlive(srv2)
        srv2.stop()

        # Restored from the older backup, after every device was receipted
        # (or pulled) past it. Each device notices on its first sync (exit
        # 22, one line), puts everything it wrote back in its outbox, reads
        # its feed again from the start, and pushes what the server lost;
        # nothing on any device is lost or doubled.
        srv3 = self.start_server(older)
        self.assertLess(older_head, self.log_head(sdir))
        before = {v: self.jv(v, "list") for v in (f, g, c)}
        # F's feed never passed the older log's head (nothing was addressed
        # to it): its receipt mark is what tells.
        r = self.v(f, "sync", "--server", srv3.address, expect=ROLLBACK)
        self.assertIn(b"the server's log went back or lost what it "
                      b"receipted", r.stderr)
        self.assertIn(b"pushed again everything it wrote", r.stderr)
        # the server lost G's attachments too: their chunks go up again
        j = self.sync(g, "--server", srv3.address, expect=ROLLBACK)
        self.assertEqual(j["rollback"], "behind", j)
        self.assertGreater(j["chunks_sent"], 0, j)
        # C's cursor is past the log, or the re-pushed envelopes now sit
        # at its position in another order: behind or diverged, as may be
        j = self.sync(c, "--server", srv3.address, expect=ROLLBACK)
        self.assertEqual(j["added"], 0, "C held everything already: %r" % j)
        # then every device syncs as usual again, with nothing left to push
        for v in (f, g, c):
            for j in self.settle(v, "--server", srv3.address):
                self.assertIsNone(j["rollback"], j)
            self.assertEqual(j["pushed"], 0, j)
            self.assertEqual(self.jv(v, "list"), before[v])
        self.assertAlive(srv3)
        srv3.stop()
        # the restored server holds again every envelope and chunk the
        # newest server (restored from the full backup) held, each once
        self.assertEqual(self.log_ids(older), self.log_ids(restored))
        self.assertEqual(self.chunk_hashes(older),
                         self.chunk_hashes(restored))
        self.check_restored(sdir, older)
        # and the coordinator has every record, with the photo whole
        mine = set(x["id"] for x in self.jv(c, "list"))
        self.assertTrue(set(first + later + [newer]) <= mine)
        s = self.jv(c, "show", first[3])
        self.assertEqual([a["size"] for a in s["attachments"]], [len(photo)])

    def test_damaged_backups_refused(self):
        sdir, pin, admin = self.server_init()
        b = self.backup(sdir, "b.fvb")
        with open(b, "rb") as fh:
            data = fh.read()
        # exists already
        self.fv("server", "backup", "--data", sdir, "--output", b,
                expect=EXISTS)
        self.fv("server", "backup", "--data", sdir, expect=USAGE)
        # --data or --store (PostgreSQL: test_server_pg), not both
        self.fv("server", "backup", "--store", "postgresql://u@h/d",
                "--data", sdir, "--output", self.path("pg.fvb"),
                expect=USAGE)
        self.fv("server", "restore", "--input", b, "--store",
                "postgresql://u@h/d", "--data", self.path("pg"),
                expect=USAGE)
        self.fv("server", "backup", "--data", sdir, "--chunks",
                self.path("c"), "--output", self.path("pg.fvb"),
                expect=USAGE)
        self.assertFalse(os.path.exists(self.path("pg.fvb")))
        self.fv("server", "restore", "--data", self.path("x"), expect=USAGE)
        self.fv("server", "backup", "--data", self.path("none"),
                "--output", self.path("n.fvb"), expect=8)
        self.assertFalse(os.path.exists(self.path("n.fvb")))

        def refused(blob, tag):
            p = self.write("bad-%s.fvb" % tag, blob)
            target = self.path("r-%s" % tag)
            r = self.fv("server", "restore", "--input", p, "--data", target,
                        expect=CORRUPT)
            self.assertRegex(r.stderr, rb"damaged or cut short|is not a "
                                       rb"FieldVault server backup")
            self.assertFalse(os.path.exists(target), tag)
            left = [n for n in os.listdir(self.tmp)
                    if n.startswith("r-%s" % tag)]
            self.assertEqual(left, [], "half-made: %r" % left)
        # cut at many points, every tail of the trailer included
        cuts = sorted(set(list(range(0, 64)) +
                          list(range(len(data) - 40, len(data))) +
                          [len(data) // k for k in range(2, 9)]))
        for n in cuts:
            refused(data[:n], "cut%d" % n)
        # a byte flipped here and there
        for pos in (5, 12, 14, 30, len(data) // 2, len(data) - 33,
                    len(data) - 1):
            d = bytearray(data)
            d[pos] ^= 0x40
            refused(bytes(d), "flip%d" % pos)
        refused(data + b"\0", "long")
        refused(b"", "empty")
        refused(os.urandom(4096), "noise")
        # a newer format: named as such
        d = bytearray(data)
        d[11] = 2
        p = self.write("newer.fvb", bytes(d))
        r = self.fv("server", "restore", "--input", p, "--data",
                    self.path("r-newer"), expect=7)
        self.assertFalse(os.path.exists(self.path("r-newer")))
        # a well-formed file whose server.db is not a server's database
        blob = bytearray(b"FVBACKUP\0\0\0\1")
        for name, body in ((b"server.db", b"SQLite format 3\0" + bytes(500)),
                           (b"receipt.key", bytes(64)),
                           (b"tls.key", b"k"), (b"tls.crt", b"c")):
            blob += struct.pack(">H", len(name)) + name
            blob += struct.pack(">Q", len(body)) + body
        blob += b"\0\0"
        blob += hashlib.blake2b(bytes(blob), digest_size=32).digest()
        p = self.write("notdb.fvb", bytes(blob))
        r = self.fv("server", "restore", "--input", p, "--data",
                    self.path("r-notdb"), expect=CORRUPT)
        self.assertIn(b"not a whole server database", r.stderr)
        self.assertEqual([n for n in os.listdir(self.tmp)
                          if n.startswith("r-notdb")], [])
        # the same layout, a name with a path in it: refused
        bad = bytes(blob[:-32]).replace(b"tls.crt", b"../x.t")
        bad = bad.replace(struct.pack(">H", 7) + b"../x.t",
                          struct.pack(">H", 6) + b"../x.t")
        bad += hashlib.blake2b(bad, digest_size=32).digest()
        refused(bad, "dotdot")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "..", "x.t")))
        # restore refuses a directory that holds anything
        os.mkdir(self.path("busy"))
        self.write("busy/x", b"x")
        self.fv("server", "restore", "--input", b, "--data",
                self.path("busy"), expect=EXISTS)
        self.assertEqual(os.listdir(self.path("busy")), ["x"])
        # into an empty directory: fine
        os.mkdir(self.path("empty"))
        self.restore(b, "empty/")
        self.check_restored(sdir, self.path("empty"))


def load_tests(loader, tests, pattern):
    names = [n for n, v in vars(BackupTest).items()
             if n.startswith("test_") and callable(v)]
    return unittest.TestSuite(BackupTest(n) for n in sorted(names))


def main():
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        test_sync.BIN = os.path.abspath(argv.pop(1))
    else:
        test_sync.BIN = os.environ.get("FIELDVAULT_BIN") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin",
            "fieldvault")
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
