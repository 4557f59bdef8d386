#!/usr/bin/env python3
"""Two `fieldvault serve` processes on one PostgreSQL database.

Run by tests/with_pg.sh (a temporary cluster; FV_PG_URL, FV_PG_DIR,
FV_PG_BIN): several devices push through both servers at once, then the
organisation's log is read from the database and checked: totally ordered
(positions 1..n, no gaps, no duplicates), its hash chain intact
(docs/PROTOCOL.md: chain_seq = BLAKE2b-256(chain_prev || uint64_be(seq) ||
id)), every record present; an invite made through one server is redeemed
through the other, and a device revoked through one is refused by the other.
Also: an unreachable database is a one-line error with exit code 21, which
never shows the connection's password.
Helpers from test_sync.py."""

import hashlib
import os
import re
import stat
import struct
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sync  # noqa: E402
from test_sync import DENIED, OK, SyncTest, PgDB  # noqa: E402

DATABASE = 21  # exit code: the server's database cannot be reached
VERSION = 7    # exit code: data of a newer format

DEVICES = 6      # field devices, half enrolled through each server
RECORDS = 12     # records each device adds per round
ROUNDS = 2


class TestTwoServers(SyncTest):
    def setUp(self):
        super().setUp()
        test_sync.PG_URL = os.environ["FV_PG_URL"]

    def test_concurrent_pushes_one_log(self):
        url, pin, admin = self.server_init()
        self.assertTrue(url.startswith("postgresql://"), url)
        a = self.start_server(url)
        b = self.start_server(url)
        self.assertNotEqual(a.port, b.port)
        servers = [a, b]

        # The coordinator's server is A (its org commands go there); it
        # pulls through B too.
        c = self.make_vault("C")
        self.assertEqual(self.jv(c, "enroll", admin, "--server",
                                 a.address)["role"], "coordinator")
        self.v(c, "org", "init")
        # Invites made through A, redeemed through B and A in turn: an
        # invite takes effect across processes.
        fields = []
        for i in range(DEVICES):
            inv = self.invite(c, "worker %d" % i)
            f = self.make_vault("F%d" % i)
            srv = servers[(i + 1) % 2]
            j = self.jv(f, "enroll", inv, "--server", srv.address)
            self.assertEqual(j["role"], "field", j)
            fields.append((f, srv, j["device"]))

        want = set()
        for rnd in range(ROUNDS):
            for i, (f, _, _) in enumerate(fields):
                for k in range(RECORDS):
                    t = "round %d device %d record %d" % (rnd, i, k)
                    self.add(f, t)
                    want.add(t)
            # Every device pushes at once, each through its own server,
            # while the coordinator pulls through the other ones.
            errors = []

            def push(vault, srv):
                r = test_sync.run(["--vault", vault, "--passphrase-file",
                                   self.passfile, "--json", "sync",
                                   "--server", srv.address], timeout=300)
                if r.returncode != OK:
                    errors.append((vault, r.returncode, r.stderr))
            threads = [threading.Thread(target=push, args=(f, srv))
                       for f, srv, _ in fields]
            threads.append(threading.Thread(target=push, args=(c, b)))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            for srv in servers:
                self.assertAlive(srv)

        # The coordinator gets everything, through either server.
        self.settle(c, "--server", a.address)
        self.assertEqual(set(self.titles(c)) & want, want)
        self.assertEqual(self.sync(c, "--server", b.address)["pulled"], 0)

        # The log in the database: 1..n, unique ids, the chain intact.
        rows = PgDB(url).execute(
            "SELECT seq, encode(id, 'hex'), encode(chain, 'hex'), "
            "encode(author, 'hex') FROM log ORDER BY seq").fetchall()
        seqs = [r[0] for r in rows]
        self.assertEqual(seqs, list(range(1, len(rows) + 1)))
        ids = [r[1] for r in rows]
        self.assertEqual(len(set(ids)), len(ids))
        chain = bytes(32)
        for seq, idh, ch, _ in rows:
            chain = hashlib.blake2b(chain + struct.pack(">Q", seq) +
                                    bytes.fromhex(idh), digest_size=32).digest()
            self.assertEqual(chain.hex(), ch, "chain broken at %d" % seq)
        # every device's envelopes are in it: at least one per record
        per_author = {}
        for r in rows:
            per_author[r[3]] = per_author.get(r[3], 0) + 1
        for _, _, dev in fields:
            self.assertGreaterEqual(per_author.get(dev, 0), RECORDS * ROUNDS)
        # both servers answered pushes
        for srv in servers:
            self.assertRegex(srv.log(), r"push|stored|envelope")
        # each field feed is chained too
        feeds = PgDB(url).execute(
            "SELECT encode(f.device, 'hex'), f.fseq, encode(l.id, 'hex'), "
            "encode(f.chain, 'hex') FROM feed f JOIN log l ON l.seq = f.seq "
            "ORDER BY f.device, f.fseq").fetchall()
        last = {}
        for dev, fseq, idh, ch in feeds:
            prev, pseq = last.get(dev, (bytes(32), 0))
            self.assertEqual(fseq, pseq + 1, "feed gap")
            nxt = hashlib.blake2b(prev + struct.pack(">Q", fseq) +
                                  bytes.fromhex(idh), digest_size=32).digest()
            self.assertEqual(nxt.hex(), ch)
            last[dev] = (nxt, fseq)

        # Revoked through A (the coordinator syncs with A): refused by B.
        victim_vault, victim_srv, victim = fields[0]
        self.assertIs(victim_srv, b)
        self.v(c, "org", "revoke", victim)
        self.add(victim_vault, "after revocation")
        r = self.v(victim_vault, "sync", "--server", b.address,
                   expect=DENIED)
        self.assertIn(b"refused", r.stderr)
        self.v(victim_vault, "sync", "--server", a.address, expect=DENIED)
        # the other devices go on through B
        self.add(fields[1][0], "still here")
        self.sync(fields[1][0], "--server", b.address)
        self.settle(c, "--server", b.address)
        titles = self.titles(c)
        self.assertIn("still here", titles)
        self.assertNotIn("after revocation", titles)

    def test_retraction_across_servers(self):
        """A record retracted through B is erased in the shared store (its
        envelopes' bytes and its chunks) and leaves the coordinator, which
        syncs through A."""
        url, _, admin = self.server_init()
        a = self.start_server(url)
        b = self.start_server(url)
        c = self.make_vault("C")
        self.jv(c, "enroll", admin, "--server", a.address)
        self.v(c, "org", "init")
        f = self.field(c, b, "worker")
        self.write("photo.jpg", os.urandom(600 * 1024))
        gone = self.add(f, "withdrawn", "--attach", self.path("photo.jpg"))
        self.add(f, "kept")
        self.settle(f)
        self.settle(c)
        self.assertEqual(self.titles(c), ["kept", "withdrawn"])
        db = PgDB(url)
        self.assertEqual(db.execute("SELECT count(*) FROM chunk").fetchone(),
                         (3,))
        self.v(f, "retract", gone, "--yes")
        self.settle(f)  # through B
        self.settle(c)  # through A
        self.assertEqual(self.titles(c), ["kept"])
        self.assertEqual(db.execute(
            "SELECT count(*) FROM chunk").fetchone(), (0,))
        self.assertEqual(db.execute(
            "SELECT count(*) FROM chunkdata").fetchone(), (0,))
        self.assertEqual(db.execute(
            "SELECT count(*) FROM retracted").fetchone(), (1,))
        # only the retraction itself and the kept record keep their bytes
        self.assertEqual(db.execute(
            "SELECT count(*) FROM log WHERE length(bytes) > 0").fetchone(),
            (2,))

    def test_shared_chunk_directory(self):
        """server init --chunks DIR: two serve processes on one database
        and one chunk directory (one given --chunks, the other finding it
        where init recorded it); attachments pushed through both at once
        are files in DIR, none in the database, read back exactly through
        either; a retraction destroys its files; wrong directories and
        misuse refused."""
        url = test_sync.new_pg_store()
        chunks = self.path("chunks")
        j = self.jfv("server", "init", "--store", url, "--listen",
                     "127.0.0.1:9", "--chunks", chunks)
        admin = j["admin_invite"]
        self.assertEqual(stat.S_IMODE(os.stat(chunks).st_mode), 0o700)
        a = self.start_server(url, args=["--chunks", chunks])
        b = self.start_server(url)
        c = self.make_vault("C")
        self.jv(c, "enroll", admin, "--server", a.address)
        self.v(c, "org", "init")
        f = [self.field(c, srv, "worker %d" % i)
             for i, srv in enumerate((a, b))]
        photos, rids = [], []
        for i, v in enumerate(f):
            photos.append(os.urandom(600 * 1024 + i))  # three chunks each
            self.write("p%d.bin" % i, photos[i])
            rids.append(self.add(v, "photo %d" % i, "--attach",
                                 self.path("p%d.bin" % i)))
        errors = []

        def push(vault, srv):
            r = test_sync.run(["--vault", vault, "--passphrase-file",
                               self.passfile, "--json", "sync", "--server",
                               srv.address], timeout=300)
            if r.returncode != OK:
                errors.append((r.returncode, r.stderr))
        ts = [threading.Thread(target=push, args=(v, srv))
              for v, srv in zip(f, (a, b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        self.settle(c, "--server", b.address)
        for i, rid in enumerate(rids):
            out = self.path("out%d" % i)
            self.v(c, "attachment", "get", rid, "p%d.bin" % i, "--output",
                   out)
            with open(out, "rb") as fh:
                self.assertEqual(fh.read(), photos[i])

        db = PgDB(url)
        self.assertEqual(db.execute(
            "SELECT version FROM schema_version").fetchall(), [(2,)])
        self.assertEqual(db.execute(
            "SELECT count(*) FROM chunkdata").fetchone(), (0,))
        hashes = {bytes.fromhex(r[0]) for r in db.execute(
            "SELECT encode(hash, 'hex') FROM chunk").fetchall()}
        self.assertEqual(len(hashes), 6)
        self.assertEqual(self.chunk_files(chunks), hashes)

        # retracted through B: its three files destroyed, in the index too
        self.v(f[1], "retract", rids[1], "--yes")
        self.settle(f[1], "--server", b.address)
        self.settle(c, "--server", a.address)
        left = {bytes.fromhex(r[0]) for r in db.execute(
            "SELECT encode(hash, 'hex') FROM chunk").fetchall()}
        self.assertEqual(len(left), 3)
        self.assertEqual(self.chunk_files(chunks), left)
        for srv in (a, b):
            self.assertAlive(srv)

        # the wrong directory: empty (not mounted), another store's
        empty = self.path("empty")
        os.mkdir(empty)
        r = self.fv("serve", "--store", url, "--chunks", empty,
                    expect=test_sync.NOTFOUND)
        self.assertIn(b"chunk directory is missing", r.stderr)
        url2 = test_sync.new_pg_store()
        other = self.path("other")
        self.jfv("server", "init", "--store", url2, "--listen",
                 "127.0.0.1:9", "--chunks", other)
        r = self.fv("serve", "--store", url, "--chunks", other,
                    expect=DENIED)
        self.assertIn(b"belongs to another server", r.stderr)
        # --chunks for a store that keeps its chunks in the database, for a
        # directory server, and a directory that is not empty
        url3 = test_sync.new_pg_store()
        self.jfv("server", "init", "--store", url3, "--listen",
                 "127.0.0.1:9")
        self.fv("serve", "--store", url3, "--chunks", chunks,
                expect=test_sync.USAGE)
        self.fv("server", "init", "--data", self.path("d"), "--listen",
                "127.0.0.1:9", "--chunks", self.path("c2"),
                expect=test_sync.USAGE)
        r = self.fv("server", "init", "--store", test_sync.new_pg_store(),
                    "--listen", "127.0.0.1:9", "--chunks", chunks,
                    expect=test_sync.EXISTS)
        self.assertIn(b"not empty", r.stderr)

    def chunk_files(self, chunks):
        """The BLAKE2b-256 of every chunk file in DIR (each in its DIR/xx
        named by its number), checking each file's mode."""
        found = set()
        for sub in sorted(os.listdir(chunks)):
            if sub == "FIELDVAULT-CHUNKS":
                continue
            self.assertRegex(sub, r"^[0-9a-f]{2}$")
            for name in os.listdir(os.path.join(chunks, sub)):
                self.assertRegex(name, r"^[0-9a-f]{16}$")
                self.assertEqual(int(name, 16) & 0xff, int(sub, 16))
                p = os.path.join(chunks, sub, name)
                self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
                with open(p, "rb") as fh:
                    found.add(hashlib.blake2b(fh.read(),
                                              digest_size=32).digest())
        return found

    def test_connection_lost_and_back(self):
        """The database drops the server's connection (a restart, a
        failover): the sync that meets it fails as the server's failure
        (18), the server stays up and reconnects, the next sync works."""
        url, _, admin = self.server_init()
        srv = self.start_server(url)
        c = self.make_vault("C")
        self.jv(c, "enroll", admin, "--server", srv.address)
        self.v(c, "org", "init")
        f = self.field(c, srv, "worker")
        self.add(f, "before")
        self.sync(f)
        killed = PgDB(url).execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND "
            "pid <> pg_backend_pid()").fetchone()[0]
        self.assertGreaterEqual(killed, 1)
        self.add(f, "after")
        r = test_sync.run(["--vault", f, "--passphrase-file", self.passfile,
                           "--json", "sync"])
        self.assertIn(r.returncode, (OK, test_sync.SERVER), r.stderr)
        self.assertAlive(srv)
        self.settle(f)
        self.settle(c)
        self.assertEqual(self.titles(c), ["after", "before"])

    def test_unreachable_database(self):
        # A port where nothing listens; a password that must not be shown.
        url = "postgresql://someone:s3cr3t-pw@127.0.0.1:9/nodb"
        for args in (["serve", "--store", url],
                     ["server", "invite", "--store", url, "--name", "x"],
                     ["server", "init", "--store", url, "--listen",
                      "127.0.0.1:9"]):
            r = self.fv(*args, expect=DATABASE)
            self.assertNotIn(b"s3cr3t", r.stderr)
            self.assertIn(b"database cannot be reached", r.stderr)
        # --store is for URLs, --data for directories
        self.fv("serve", "--store", self.path("dir"), expect=test_sync.USAGE)
        self.fv("serve", "--store", url, "--data", self.path("dir"),
                expect=test_sync.USAGE)

    def test_schema_versioned(self):
        url, _, _ = self.server_init()
        db = PgDB(url)
        self.assertEqual(db.execute(
            "SELECT version FROM schema_version").fetchall(), [(1,)])
        # a newer schema is refused, not misread
        db.execute("UPDATE schema_version SET version = 99")
        self.fv("serve", "--store", url, expect=VERSION)
        db.execute("UPDATE schema_version SET version = 1")
        # init again on the same database: it exists
        self.fv("server", "init", "--store", url, "--listen", "127.0.0.1:9",
                expect=test_sync.EXISTS)
        # no plaintext and no secret beside ciphertext: the server's keys
        # are the only secrets (SECURITY.md), the envelopes are opaque
        keys = {r[0] for r in db.execute("SELECT k FROM meta").fetchall()}
        self.assertTrue({"tls_key", "tls_crt", "receipt_key"} <= keys, keys)
        # a certificate request for the shared key, and a chain that does
        # not parse refused with the stored certificate unchanged
        crt = db.execute("SELECT encode(v, 'hex') FROM meta "
                         "WHERE k = 'tls_crt'").fetchone()
        pem = self.fv("server", "csr", "--store", url, "--hostname",
                      "vault.example.org").stdout
        self.assertIn(b"BEGIN CERTIFICATE REQUEST", pem)
        self.fv("server", "cert", "--store", url,
                self.write("junk.pem", b"not a certificate\n"),
                expect=test_sync.CORRUPT)
        self.assertEqual(db.execute("SELECT encode(v, 'hex') FROM meta "
                                    "WHERE k = 'tls_crt'").fetchone(), crt)


class TestSharedCertificate(SyncTest):
    """The server's files in a shared store: a running serve keeps no copy
    of its key in files, and a CA's certificate installed with --store is
    presented by every running serve process within seconds."""

    handshake = test_sync.TestOrdinaryService.handshake
    make_ca = test_sync.TestOrdinaryService.make_ca
    ca_sign = test_sync.TestOrdinaryService.ca_sign

    def setUp(self):
        super().setUp()
        test_sync.PG_URL = os.environ["FV_PG_URL"]

    def staged(self, tmp):
        return [n for n in os.listdir(tmp)
                if n.startswith("fieldvault-server-")]

    def test_ca_certificate_reaches_running_servers(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        tmp = self.path("tmp")
        os.mkdir(tmp, 0o700)
        old = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = tmp
        self.addCleanup(lambda: os.environ.__setitem__("TMPDIR", old)
                        if old is not None else os.environ.pop("TMPDIR"))
        url, pin, admin = self.server_init()
        a = self.start_server(url)
        b = self.start_server(url)
        c = self.make_vault("C")
        self.jv(c, "enroll", admin, "--server", a.address)
        # Serving, neither process holds its key in a file.
        self.assertEqual(self.staged(tmp), [])
        csr = x509.load_pem_x509_csr(self.fv(
            "server", "csr", "--store", url, "--hostname",
            "vault.example.org").stdout)
        ca = self.make_ca()
        self.write("ca.pem", ca[1].public_bytes(
            serialization.Encoding.PEM))
        self.write("chain.pem", self.ca_sign(ca, csr.public_key(),
                                             "vault.example.org"))
        marks = [srv.mark() for srv in (a, b)]
        self.fv("server", "cert", "--store", url, self.path("chain.pem"))
        for srv, mark in zip((a, b), marks):
            self.assertIsNotNone(srv.wait_for(
                re.compile("certificate loaded"), timeout=20, start=mark))
            s = self.handshake(srv.port, cafile=self.path("ca.pem"))
            self.assertEqual(s.getpeercert()["subject"],
                             ((("commonName", "vault.example.org"),),))
            s.close()
        # Devices, which check only the pin, sync on through both.
        self.add(c, "through a CA's certificate")
        self.settle(c)
        self.settle(c, "--server", b.address)
        self.assertEqual(self.staged(tmp), [])
        for srv in (a, b):
            self.assertAlive(srv)


class TestMigrate(SyncTest):
    def test_directory_to_postgresql(self):
        """server migrate: the devices of a directory server sync on with
        the PostgreSQL one, same pin and identities, nothing lost."""
        test_sync.PG_URL = None  # a directory server first
        sdir, pin, _ = self.server_init()
        srv = self.start_server(sdir)
        c = self.make_vault("C")
        admin = self.jfv("server", "invite", "--data", sdir, "--name",
                         "boss")["invite"]
        self.jv(c, "enroll", admin, "--server", srv.address)
        self.v(c, "org", "init")
        f = self.field(c, srv, "worker")
        gone = self.field(c, srv, "gone")
        photo = os.urandom(700 * 1024)
        self.write("photo.jpg", photo)
        self.add(f, "before", "--attach", self.path("photo.jpg"))
        self.add(f, "also before")
        self.settle(f)  # the coordinator pulls them after the move
        self.v(c, "org", "revoke", self.devices(c)["gone"]["id"])
        spare = self.jfv("server", "invite", "--data", sdir, "--name",
                         "spare", "--role", "field")["invite"]
        srv.stop()

        test_sync.PG_URL = os.environ["FV_PG_URL"]
        url = test_sync.new_pg_store()
        j = self.jfv("server", "migrate", "--from", sdir, "--to", url)
        self.assertEqual(j["envelopes"], 2, j)  # the two records
        self.assertEqual(j["devices"], 3, j)
        self.assertEqual(j["chunks"], 3, j)  # 700 KiB: 3 chunks
        # twice: the database holds a server now
        self.fv("server", "migrate", "--from", sdir, "--to", url,
                expect=test_sync.EXISTS)
        self.fv("server", "migrate", "--from", self.path("none"), "--to",
                test_sync.new_pg_store(), expect=test_sync.NOTFOUND)
        # the same pin: an invite made now carries it
        inv = self.jfv("server", "invite", "--store", url, "--name",
                       "new")["invite"]
        self.assertTrue(inv.startswith("fv1-"))
        # the directory is left as it was
        self.assertTrue(os.path.exists(os.path.join(sdir, "server.db")))

        pg = self.start_server(url, srv.address)
        # the same devices sync on: pinned key, identities, feeds, epoch
        self.add(f, "after")
        self.assertEqual(self.sync(f)["pushed"], 1)
        j = self.sync(c)
        self.assertEqual((j["added"], j["chunks_received"]), (3, 3), j)
        self.assertEqual(self.titles(c), ["after", "also before", "before"])
        rid = [x for x in self.jv(c, "list") if x["title"] == "before"][0]
        self.v(c, "attachment", "get", rid["id"], "photo.jpg", "--output",
               self.path("back.jpg"))
        with open(self.path("back.jpg"), "rb") as fh:
            self.assertEqual(fh.read(), photo)
        # revoked stays revoked; an invite made before works after
        g2 = self.make_vault("G2")
        self.v(gone, "sync", expect=DENIED)
        self.jv(g2, "enroll", spare, "--server", pg.address)
        self.assertAlive(pg)


def main():
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        test_sync.BIN = os.path.abspath(argv.pop(1))
    else:
        test_sync.BIN = os.environ.get("FIELDVAULT_BIN") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin",
            "fieldvault")
    if not os.environ.get("FV_PG_URL"):
        print("test_server_pg.py: run it with tests/with_pg.sh",
              file=sys.stderr)
        return 2
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
