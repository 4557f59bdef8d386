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
from test_sync import DENIED, OK, ROLLBACK, SyncTest, PgDB  # noqa: E402

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


def parse_backup(data):
    """A backup file's entries (docs/PROTOCOL.md, "Server backups"), its
    hash checked: [(name, bytes)]."""
    assert data[:12] == b"FVBACKUP\0\0\0\1"
    assert hashlib.blake2b(data[:-32], digest_size=32).digest() == \
        data[-32:]
    pos, out = 12, []
    while True:
        (nl,) = struct.unpack(">H", data[pos:pos + 2])
        pos += 2
        if nl == 0:
            return out
        name = data[pos:pos + nl].decode()
        (size,) = struct.unpack(">Q", data[pos + nl:pos + nl + 8])
        pos += nl + 8
        out.append((name, data[pos:pos + size]))
        pos += size


def build_backup(entries):
    blob = bytearray(b"FVBACKUP\0\0\0\1")
    for name, val in entries:
        blob += struct.pack(">H", len(name)) + name.encode()
        blob += struct.pack(">Q", len(val)) + val
    blob += b"\0\0"
    return bytes(blob) + hashlib.blake2b(bytes(blob),
                                         digest_size=32).digest()


class TestPgBackup(SyncTest):
    """server backup/restore --store (README, "Backups"): a PostgreSQL
    store backed up while serve runs and devices push, into the same file
    format as a server directory's; restored into an empty database (and a
    fresh chunk directory), into a server directory, and a directory's
    backup into PostgreSQL; devices sync on with the same pin; a restore
    from an older backup is noticed (exit 22) and healed by re-pushes;
    hostile files refused with nothing made."""

    def setUp(self):
        super().setUp()
        test_sync.PG_URL = os.environ["FV_PG_URL"]

    def backup(self, url, name, *args):
        out = self.path(name)
        j = self.jfv("server", "backup", "--store", url, "--output", out,
                     *args)
        self.assertEqual(set(j), {"files", "bytes"}, j)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        return out

    def restore(self, backup, *args):
        url = test_sync.new_pg_store()
        j = self.jfv("server", "restore", "--input", backup, "--store", url,
                     *args)
        self.assertEqual(set(j), {"files", "bytes"}, j)
        return url

    def check_log(self, url):
        """The log 1..n with its chain intact; every chunk indexed whole
        (in the database); returns (n, set of ids)."""
        db = PgDB(url)
        rows = db.execute("SELECT seq, encode(id, 'hex'), "
                          "encode(chain, 'hex') FROM log ORDER BY seq")\
            .fetchall()
        self.assertEqual([r[0] for r in rows], list(range(1, len(rows) + 1)))
        chain = bytes(32)
        for seq, idh, ch in rows:
            chain = hashlib.blake2b(chain + struct.pack(">Q", seq) +
                                    bytes.fromhex(idh),
                                    digest_size=32).digest()
            self.assertEqual(chain.hex(), ch, "chain broken at %d" % seq)
        return len(rows), set(r[1] for r in rows)

    def tables(self, url):
        return PgDB(url).execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = 'public' AND "
            "c.relkind IN ('r', 'S')").fetchone()[0]

    def test_backup_restore_and_rollback(self):
        chunks = self.path("chunks")
        # the store made with a shared chunk directory: its backup reads
        # the chunk files the snapshot indexes
        url = test_sync.new_pg_store()
        j = self.jfv("server", "init", "--store", url, "--listen",
                     "127.0.0.1:9", "--chunks", chunks)
        admin = j["admin_invite"]
        srv = self.start_server(url, args=["--chunks", chunks])
        c = self.make_vault("C")
        self.jv(c, "enroll", admin, "--server", srv.address)
        self.v(c, "org", "init")
        f = self.field(c, srv, "F")
        g = self.field(c, srv, "G")
        photo = os.urandom(600 * 1024)  # three chunks
        self.write("photo.bin", photo)
        first = [self.add(f, "before %d" % i) for i in range(2)]
        first.append(self.add(f, "photo", "--attach",
                              self.path("photo.bin")))
        self.settle(f)
        self.settle(c)

        # backups while G pushes records with attachments
        during = self.while_pushing(
            g, 30, 3, lambda k: self.backup(url, "during-%d.fvb" % k,
                                            "--chunks", chunks))
        # each is the store at one instant: restored, its log whole, every
        # chunk it indexes present and matching its hash
        heads = []
        for k, b in enumerate(during):
            u = self.restore(b)
            heads.append(self.check_log(u)[0])
            rows = PgDB(u).execute(
                "SELECT encode(c.hash, 'hex'), encode(d.data, 'hex') FROM "
                "chunk c JOIN chunkdata d ON d.id = c.data_id").fetchall()
            self.assertEqual(len(rows), PgDB(u).execute(
                "SELECT count(*) FROM chunk").fetchone()[0])
            self.assertGreaterEqual(len(rows), 3)
            for h, data in rows:
                self.assertEqual(hashlib.blake2b(
                    bytes.fromhex(data), digest_size=32).hexdigest(), h)
        self.assertEqual(heads, sorted(heads))
        self.assertGreater(heads[-1], heads[0], "the backups saw pushes")
        older = self.restore(during[0])
        older_head = self.check_log(older)[0]

        later = [self.add(f, "after the backups %d" % i) for i in range(2)]
        self.settle(f)
        self.settle(g)
        self.settle(c)
        full = self.backup(url, "full.fvb", "--chunks", chunks)
        srv.stop()

        # into an empty database and a fresh chunk directory: every device
        # syncs on, same pin and identities, nothing to pull
        chunks2 = self.path("chunks2")
        restored = self.restore(full, "--chunks", chunks2)
        n_full, ids_full = self.check_log(restored)
        self.assertGreater(n_full, older_head)
        self.assertEqual(PgDB(restored).execute(
            "SELECT count(*) FROM chunk").fetchone()[0],
            sum(len(files) for _, _, files in os.walk(chunks2)) - 1)
        srv2 = self.start_server(restored, args=["--chunks", chunks2])
        for v in (f, g, c):
            j = self.sync(v, "--server", srv2.address)
            self.assertEqual(j["pulled"], 0, j)
        # the log and the chunk numbering continue
        self.write("new.bin", os.urandom(300 * 1024))
        newer = self.add(f, "on the restored server", "--attach",
                         self.path("new.bin"))
        j = self.sync(f, "--server", srv2.address)
        self.assertGreaterEqual(j["pushed"], 1, j)
        j = self.sync(c, "--server", srv2.address)
        self.assertGreaterEqual(j["added"], 1, j)
        self.assertEqual(self.check_log(restored)[0], n_full + 1)
        self.v(c, "attachment", "get", first[2], "photo.bin", "--output",
               self.path("back.bin"))
        with open(self.path("back.bin"), "rb") as fh:
            self.assertEqual(fh.read(), photo)
        self.assertAlive(srv2)
        srv2.stop()

        # the same file into a server directory: one format for both
        sdir = self.path("as-dir")
        self.jfv("server", "restore", "--input", full, "--data", sdir)
        srv3 = self.start_server(sdir)
        j = self.sync(g, "--server", srv3.address)
        self.assertEqual(j["pulled"], 0, j)
        self.assertAlive(srv3)
        srv3.stop()

        # restored from the older backup: each device notices once (exit
        # 22), pushes again what the server lost, then syncs as usual
        srv4 = self.start_server(older)
        before = {v: self.jv(v, "list") for v in (f, g, c)}
        r = self.v(f, "sync", "--server", srv4.address, expect=ROLLBACK)
        self.assertIn(b"the server's log went back or lost what it "
                      b"receipted", r.stderr)
        j = self.sync(g, "--server", srv4.address, expect=ROLLBACK)
        self.assertEqual(j["rollback"], "behind", j)
        self.assertGreater(j["chunks_sent"], 0, j)
        j = self.sync(c, "--server", srv4.address, expect=ROLLBACK)
        self.assertEqual(j["added"], 0, j)
        for v in (f, g, c):
            for j in self.settle(v, "--server", srv4.address):
                self.assertIsNone(j["rollback"], j)
            self.assertEqual(j["pushed"], 0, j)
            self.assertEqual(self.jv(v, "list"), before[v])
        self.assertAlive(srv4)
        srv4.stop()
        # every envelope the newest server held is back, each once
        _, ids_older = self.check_log(older)
        self.assertLessEqual(ids_full, ids_older)
        mine = set(x["id"] for x in self.jv(c, "list"))
        self.assertTrue(set(first + later + [newer]) <= mine)

    def test_directory_backup_into_postgresql(self):
        """A server directory's backup restored into PostgreSQL (a second
        path for migrate): same keys, same pin."""
        test_sync.PG_URL = None
        sdir, pin, admin = self.server_init()
        srv = self.start_server(sdir)
        c = self.make_vault("C")
        self.jv(c, "enroll", admin, "--server", srv.address)
        self.v(c, "org", "init")
        f = self.field(c, srv, "F")
        self.write("p.bin", os.urandom(300 * 1024))
        rid = self.add(f, "from the directory", "--attach",
                       self.path("p.bin"))
        self.settle(f)
        srv.stop()
        b = self.path("dir.fvb")
        self.jfv("server", "backup", "--data", sdir, "--output", b)
        test_sync.PG_URL = os.environ["FV_PG_URL"]
        # Well-hashed, but its certificate file empty: found only at the
        # end of the migration, after the tables and the chunk files were
        # written; the transaction rolls back, the chunk directory goes.
        with open(b, "rb") as fh:
            entries = parse_backup(fh.read())
        self.assertEqual([n for n, _ in entries if n.startswith("chunks/")],
                         ["chunks/pack-000001"])
        bad = self.write("empty-crt.fvb", build_backup(
            [(n, b"" if n == "tls.crt" else v) for n, v in entries]))
        target = test_sync.new_pg_store()
        d = self.path("rolled-back-chunks")
        self.fv("server", "restore", "--input", bad, "--store", target,
                "--chunks", d, expect=test_sync.CORRUPT)
        self.assertEqual(PgDB(target).execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = 'public'")
            .fetchone(), (0,))
        self.assertFalse(os.path.exists(d))
        url = self.restore(b)
        for name, key in (("tls.crt", "tls_crt"), ("tls.key", "tls_key"),
                          ("receipt.key", "receipt_key")):
            with open(os.path.join(sdir, name), "rb") as fh:
                self.assertEqual(PgDB(url).execute(
                    "SELECT encode(v, 'hex') FROM meta WHERE k = ?",
                    (key,)).fetchone()[0], fh.read().hex(), name)
        pg = self.start_server(url)
        j = self.sync(c, "--server", pg.address)
        self.assertEqual((j["added"], j["chunks_received"]), (1, 2), j)
        self.assertIn(rid, set(x["id"] for x in self.jv(c, "list")))
        self.assertAlive(pg)
        # migrate into a chunk directory: the chunks land as files
        url2 = test_sync.new_pg_store()
        d = self.path("mchunks")
        j = self.jfv("server", "migrate", "--from", sdir, "--to", url2,
                     "--chunks", d)
        self.assertEqual(j["chunks"], 2, j)
        self.assertEqual(sum(len(n) for _, _, n in os.walk(d)), 3)
        self.assertEqual(PgDB(url2).execute(
            "SELECT count(*) FROM chunkdata").fetchone(), (0,))

    def test_hostile_backups_refused(self):
        url, _, _ = self.server_init()
        b = self.backup(url, "b.fvb")
        with open(b, "rb") as fh:
            data = fh.read()
        tmp = os.environ.get("TMPDIR", "/tmp")
        staged = lambda: [n for n in os.listdir(tmp)  # noqa: E731
                          if n.startswith("fieldvault-restore-")]
        self.assertEqual(staged(), [])
        target = test_sync.new_pg_store()

        def refused(blob, tag, code=test_sync.CORRUPT, why=None):
            p = self.write("bad-%s.fvb" % tag, blob)
            r = self.fv("server", "restore", "--input", p, "--store",
                        target, "--chunks", self.path("c-" + tag),
                        expect=code)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            if why:
                self.assertRegex(r.stderr, why)
            self.assertEqual(self.tables(target), 0, "half-made: " + tag)
            self.assertFalse(os.path.exists(self.path("c-" + tag)), tag)
            self.assertEqual(staged(), [], tag)
        cut = rb"damaged or cut short|is not a FieldVault server backup"
        for n in (0, 5, 12, 13, 40, len(data) // 2, len(data) - 33,
                  len(data) - 1):
            refused(data[:n], "cut%d" % n, why=cut)
        for pos in (5, 14, 20, len(data) // 2, len(data) - 1):
            d = bytearray(data)
            d[pos] ^= 0x40
            refused(bytes(d), "flip%d" % pos, why=cut)
        refused(data + b"\0", "long", why=cut)
        d = bytearray(data)
        d[11] = 2
        refused(bytes(d), "newer", code=VERSION, why=rb"newer")
        # wrong kinds: a vault's database, noise, a well-formed file whose
        # server.db is a vault's
        v = self.make_vault("V")
        vdb = [os.path.join(v, n) for n in os.listdir(v) if n.endswith(".db")]
        self.assertEqual(len(vdb), 1, os.listdir(v))
        with open(vdb[0], "rb") as fh:
            body = fh.read()
        refused(body, "vault", why=cut)
        refused(os.urandom(8192), "noise", why=cut)
        blob = build_backup([("server.db", body),
                             ("receipt.key", bytes(64)), ("tls.key", b"k"),
                             ("tls.crt", b"c")])
        refused(blob, "notdb", why=rb"not a whole server database")
        # and the good file still restores into that same database
        self.jfv("server", "restore", "--input", b, "--store", target)
        self.assertGreater(self.tables(target), 0)
        # a database that holds anything is refused, as is a second restore
        r = self.fv("server", "restore", "--input", b, "--store", target,
                    expect=test_sync.EXISTS)
        self.assertIn(b"not empty", r.stderr)
        other = test_sync.new_pg_store()
        PgDB(other).execute("CREATE TABLE mine(x int)")
        self.fv("server", "restore", "--input", b, "--store", other,
                expect=test_sync.EXISTS)
        self.assertEqual(self.tables(other), 1)
        # a chunk directory that holds anything: refused, nothing made
        os.mkdir(self.path("busy"))
        self.write("busy/x", b"x")
        empty = test_sync.new_pg_store()
        self.fv("server", "restore", "--input", b, "--store", empty,
                "--chunks", self.path("busy"), expect=test_sync.EXISTS)
        self.assertEqual(self.tables(empty), 0)
        self.assertEqual(os.listdir(self.path("busy")), ["x"])
        # no backup over a file; no server; an unreachable database
        self.fv("server", "backup", "--store", url, "--output", b,
                expect=test_sync.EXISTS)
        self.fv("server", "backup", "--store", empty, "--output",
                self.path("none.fvb"), expect=test_sync.NOTFOUND)
        self.assertFalse(os.path.exists(self.path("none.fvb")))
        bad = "postgresql://someone:s3cr3t-pw@127.0.0.1:9/nodb"
        for args in (["backup", "--store", bad, "--output",
                      self.path("x.fvb")],
                     ["restore", "--input", b, "--store", bad]):
            r = self.fv("server", *args, expect=DATABASE)
            self.assertNotIn(b"s3cr3t", r.stderr)
            self.assertIn(b"cannot be reached", r.stderr)
        self.assertEqual([n for n in os.listdir(self.tmp)
                          if ".stage-" in n], [])
        self.assertEqual(staged(), [])
        # --chunks for a store that keeps its chunks in the database
        self.fv("server", "backup", "--store", url, "--chunks",
                self.path("nochunks"), "--output", self.path("y.fvb"),
                expect=test_sync.USAGE)


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
