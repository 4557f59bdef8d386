#!/usr/bin/env python3
"""End-to-end tests of syncing through proxies: the real `fieldvault`
binary, a real server, and real proxies from Debian started here on
loopback ports: microsocks (SOCKS5, with and without user/password) and
tinyproxy (HTTP CONNECT, Basic auth). Enroll, sync and attachments through
each; wrong credentials, a proxy that is down, one that hangs (SIGTERM
cancels at once, --timeout gives up); socks5h under strace: the device
connects to the proxy only, never to the server, and sends no DNS query.
The helpers (servers, vaults, organisations) are test_sync.py's.

Usage: test_proxy.py [PATH_TO_FIELDVAULT] [unittest args]"""

import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sync  # noqa: E402
from test_sync import OK, USAGE, NETWORK, CANCELED  # noqa: E402

PROXY = 20  # exit code: the proxy cannot be reached, refused or failed
MICROSOCKS = shutil.which("microsocks") or "/usr/bin/microsocks"
TINYPROXY = shutil.which("tinyproxy") or "/usr/sbin/tinyproxy"
STRACE = shutil.which("strace") or "/usr/bin/strace"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("the proxy exited (%s)" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the proxy does not listen on %d" % port)


class Silent:
    """Accepts connections and never answers: a proxy that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stop = True
        self.t.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


class ProxyTest(test_sync.AttachmentTest):
    # Only this file's tests run from this class (not the inherited ones).

    def microsocks(self, user=None, password=None):
        port = free_port()
        args = [MICROSOCKS, "-i", "127.0.0.1", "-p", str(port)]
        if user:
            args += ["-u", user, "-P", password]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(self.end, p)
        wait_listening(port, p)
        return port

    def tinyproxy(self, server_port, user=None, password=None):
        port = free_port()
        conf = self.path("tinyproxy-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("Port %d\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\n"
                    "Allow 127.0.0.1\nConnectPort %d\nLogLevel Critical\n"
                    % (port, server_port))
            if user:
                f.write("BasicAuth %s %s\n" % (user, password))
        p = subprocess.Popen([TINYPROXY, "-d", "-c", conf],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(self.end, p)
        wait_listening(port, p)
        return port

    @staticmethod
    def end(p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def env_run(self, vault, args, env=None, expect=OK):
        """fieldvault with extra environment variables (test_sync.run drops
        every FIELDVAULT_*)."""
        r = subprocess.run(
            [test_sync.BIN, "--vault", vault, "--passphrase-file",
             self.passfile] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=test_sync.clean_env(env),
            timeout=120, start_new_session=True)
        self.assertEqual(r.returncode, expect, (args, r.stdout, r.stderr))
        return r

    def org_through(self, proxy_url, server_host="127.0.0.1"):
        """A server, and a coordinator that enrolls and publishes the org
        key through the proxy (its invites name port 9, unused)."""
        sdir, pin, admin = self.server_init()
        srv = self.start_server(sdir)
        c = self.make_vault("C")
        addr = "%s:%d" % (server_host, srv.port)
        j = self.jv(c, "enroll", admin, "--server", addr, "--proxy", proxy_url)
        self.assertEqual(j["role"], "coordinator", j)
        self.v(c, "org", "init", "--proxy", proxy_url)
        return sdir, srv, c, addr

    def field_through(self, c, addr, proxy_url, name="worker"):
        f = self.make_vault(name)
        inv = self.jv(c, "org", "invite", "--name", name,
                      "--proxy", proxy_url)["invite"]
        j = self.jv(f, "enroll", inv, "--server", addr, "--proxy", proxy_url)
        self.assertEqual(j["role"], "field", j)
        return f

    def round_trip(self, c, f, proxy_url):
        """A record with an attachment goes from f to c, both through the
        proxy, and comes out whole."""
        src = self.random_file("photo.bin", 3 * test_sync.CHUNK + 777)
        rid = self.add(f, "through the proxy", "--attach", src)
        n = self.atts(f, rid)["photo.bin"]["chunks"]
        j = self.sync(f, "--proxy", proxy_url)
        self.assertEqual((j["pushed"], j["chunks_sent"]), (1, n), j)
        j = self.sync(c, "--proxy", proxy_url)
        self.assertEqual(j["chunks_received"], n, j)
        self.assertIn("through the proxy", self.titles(c))
        self.assertEqual(self.get(c, rid, "photo.bin"),
                         test_sync.sha256_file(src))
        return rid

    def assertProxyError(self, r, url_shown, secret=None):
        err = r.stderr.decode()
        self.assertIn("proxy " + url_shown, err)
        self.assertNotIn("cannot reach the server", err)
        if secret:
            self.assertNotIn(secret, err)
            self.assertNotIn(secret, r.stdout.decode())

    # ---- SOCKS5 -------------------------------------------------------------

    def test_socks5h_with_credentials_and_only_the_proxy_is_contacted(self):
        pw = "pw-" + secrets.token_hex(6)
        port = self.microsocks("dev1", pw)
        url = "socks5h://dev1:%s@127.0.0.1:%d" % (pw, port)
        # "localhost": a name the device would have to resolve; with
        # socks5h it goes to the proxy (microsocks resolves it).
        sdir, srv, c, addr = self.org_through(url, "localhost")
        f = self.field_through(c, addr, url)
        self.round_trip(c, f, url)

        # Under strace: every connect goes to the proxy's port, none to the
        # server's, and nothing reaches port 53 (no DNS query).
        self.add(f, "traced")
        trace = self.path("strace.txt")
        # LeakSanitizer cannot run under ptrace (a sanitizer build); the
        # leak check is left to the other runs.
        asan = os.environ.get("ASAN_OPTIONS", "")
        untraced = {"ASAN_OPTIONS": (asan + ":" if asan else "") +
                    "detect_leaks=0"}
        r = subprocess.run(
            [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg",
             "-o", trace, test_sync.BIN, "--vault", f, "--passphrase-file",
             self.passfile, "--json", "sync", "--proxy", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=test_sync.clean_env(untraced), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(trace) as fh:
            lines = fh.read().splitlines()
        connects = [x for x in lines if re.search(r"\bconnect\(", x)]
        self.assertTrue(connects, lines[:20])
        for x in connects:
            self.assertIn("sin_port=htons(%d)" % port, x)
            self.assertIn('inet_addr("127.0.0.1")', x)
        text = "\n".join(lines)
        self.assertNotIn("htons(%d)" % srv.port, text)
        self.assertNotIn("htons(53)", text)
        self.assertNotIn(b"pushed", r.stderr)

    def test_socks5_without_credentials_and_local_resolution(self):
        port = self.microsocks()
        url = "socks5://127.0.0.1:%d" % port
        # The device resolves "localhost" itself and sends the proxy an
        # address (microsocks would resolve a name as well).
        sdir, srv, c, addr = self.org_through(url, "localhost")
        f = self.field_through(c, addr, url)
        self.round_trip(c, f, url)

    def test_socks5_wrong_password_and_missing_credentials(self):
        port = self.microsocks("dev1", "right-pw")
        sdir, pin, admin = self.server_init()
        srv = self.start_server(sdir)
        c = self.make_vault("C")
        shown = "socks5h://127.0.0.1:%d" % port
        r = self.v(c, "enroll", admin, "--server", srv.address, "--proxy",
                   "socks5h://dev1:wrong-pw-x@127.0.0.1:%d" % port,
                   expect=PROXY)
        self.assertProxyError(r, shown, "wrong-pw-x")
        self.assertIn("refused the user name or password", r.stderr.decode())
        r = self.v(c, "enroll", admin, "--server", srv.address, "--proxy",
                   shown, expect=PROXY)
        self.assertIn("wants a user name and password", r.stderr.decode())
        # Nothing was spent: the invite still enrolls, through the proxy.
        j = self.jv(c, "enroll", admin, "--server", srv.address, "--proxy",
                    "socks5h://dev1:right-pw@127.0.0.1:%d" % port)
        self.assertEqual(j["role"], "coordinator")

    def test_proxy_down_and_server_down_behind_the_proxy(self):
        down = free_port()
        sdir, srv, c = self.organisation()
        self.add(c, "kept")
        r = self.v(c, "sync", "--proxy", "socks5h://u:topsecret@127.0.0.1:%d"
                   % down, expect=PROXY)
        self.assertProxyError(r, "socks5h://127.0.0.1:%d" % down, "topsecret")
        self.assertIn("cannot reach the proxy", r.stderr.decode())
        # The proxy works but the server behind it is gone: a network
        # failure (6), said to come from the proxy.
        port = self.microsocks()
        r = self.v(c, "sync", "--server", "127.0.0.1:%d" % free_port(),
                   "--proxy", "socks5h://127.0.0.1:%d" % port, expect=NETWORK)
        self.assertIn("the proxy could not reach the server", r.stderr.decode())
        # Nothing lost: a direct sync then delivers the record.
        self.assertEqual(self.sync(c)["pushed"], 1)

    def test_hanging_proxy_is_cancelled_at_once_and_times_out(self):
        sdir, srv, c = self.organisation()
        hang = Silent()
        self.addCleanup(hang.close)
        url = "socks5h://127.0.0.1:%d" % hang.port
        p = subprocess.Popen(
            [test_sync.BIN, "--vault", c, "--passphrase-file", self.passfile,
             "sync", "--proxy", url, "--timeout", "60"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=test_sync.clean_env(),
            start_new_session=True)
        deadline = time.monotonic() + 20
        while not hang.conns and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(hang.conns, "the device never reached the proxy")
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(p.returncode, CANCELED, err)
        # --timeout gives up on it with the proxy's own error.
        t0 = time.monotonic()
        r = self.v(c, "sync", "--proxy", "http://127.0.0.1:%d" % hang.port,
                   "--timeout", "1", expect=PROXY)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("did not answer in time", r.stderr.decode())

    # ---- HTTP CONNECT ---------------------------------------------------------

    def test_http_connect_with_basic_auth(self):
        sdir, pin, admin = self.server_init()
        srv = self.start_server(sdir)
        port = self.tinyproxy(srv.port, "bob", "s3cret-http")
        url = "http://bob:s3cret-http@127.0.0.1:%d" % port
        c = self.make_vault("C")
        j = self.jv(c, "enroll", admin, "--server", srv.address, "--proxy", url)
        self.assertEqual(j["role"], "coordinator")
        self.v(c, "org", "init", "--proxy", url)
        f = self.field_through(c, srv.address, url)
        self.round_trip(c, f, url)
        shown = "http://127.0.0.1:%d" % port
        r = self.v(f, "sync", "--proxy", "http://bob:nope-pw@127.0.0.1:%d"
                   % port, expect=PROXY)
        self.assertProxyError(r, shown, "nope-pw")
        self.assertIn("refused the user name or password", r.stderr.decode())
        r = self.v(f, "sync", "--proxy", shown, expect=PROXY)
        self.assertProxyError(r, shown)
        # A port the proxy's rules do not allow (ConnectPort): refused.
        r = self.v(f, "sync", "--proxy", url, "--server",
                   "127.0.0.1:%d" % free_port(), expect=PROXY)
        self.assertIn("does not allow", r.stderr.decode())

    def test_onion_address_needs_a_resolving_proxy(self):
        """An invite naming a .onion server (server init --listen X.onion)
        is refused without a proxy, and with socks5:// (which would have
        the device resolve it), before anything is looked up or sent; with
        socks5h:// the name goes to the proxy."""
        onion = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion"
        sdir = self.path("onion-server")
        j = self.jfv("server", "init", "--data", sdir, "--listen",
                     onion + ":443")
        d = self.make_vault("D")
        for extra in ([], ["--proxy", "socks5://127.0.0.1:9"]):
            r = self.v(d, "enroll", j["admin_invite"], *extra, expect=USAGE)
            self.assertIn(".onion address", r.stderr.decode())
        hang = Silent()
        self.addCleanup(hang.close)
        r = self.v(d, "enroll", j["admin_invite"], "--timeout", "1", "--proxy",
                   "socks5h://127.0.0.1:%d" % hang.port, expect=PROXY)
        self.assertTrue(hang.conns)  # the device went to the proxy
        self.assertIn("did not answer in time", r.stderr.decode())

    # ---- where the proxy comes from --------------------------------------------

    def test_config_env_and_option_precedence(self):
        pw = "cfg-" + secrets.token_hex(8)
        port = self.microsocks("dev1", pw)
        sdir, srv, c = self.organisation()
        good = "socks5h://dev1:%s@127.0.0.1:%d" % (pw, port)
        down = "socks5h://127.0.0.1:%d" % free_port()

        r = self.v(c, "config", "set", "proxy", good)
        self.assertEqual(r.stdout.decode(),
                         "proxy: socks5h://127.0.0.1:%d (with a user name and "
                         "password)\n" % port)
        j = self.jv(c, "config", "get", "proxy")
        self.assertEqual(j, {"proxy": "socks5h://127.0.0.1:%d" % port,
                             "proxy_credentials": True})
        # Stored sealed: the password is in no file of the vault.
        for root, _, files in os.walk(c):
            for name in files:
                with open(os.path.join(root, name), "rb") as fh:
                    self.assertNotIn(pw.encode(), fh.read(), name)
        self.add(c, "via config")
        self.assertEqual(self.sync(c)["pushed"], 1)  # the remembered proxy
        # The environment overrides the config, the option overrides both.
        self.add(c, "via env")
        r = self.env_run(c, ["sync"], {"FIELDVAULT_PROXY": down}, PROXY)
        self.assertIn("cannot reach the proxy", r.stderr.decode())
        self.env_run(c, ["sync", "--proxy", good], {"FIELDVAULT_PROXY": down})
        self.add(c, "direct")
        self.env_run(c, ["sync", "--proxy", "none"],
                     {"FIELDVAULT_PROXY": down})
        # A malformed URL is a usage error that does not echo it.
        r = self.v(c, "sync", "--proxy", "socks5h://u:leak-me@host", expect=USAGE)
        self.assertNotIn("leak-me", r.stderr.decode())
        r = self.v(c, "config", "set", "proxy", "ftp://x:1", expect=USAGE)
        self.assertEqual(self.jv(c, "config", "get", "proxy")["proxy"],
                         "socks5h://127.0.0.1:%d" % port)  # unchanged
        self.v(c, "config", "set", "proxy", "none")
        self.assertEqual(self.jv(c, "config", "get", "proxy"),
                         {"proxy": None, "proxy_credentials": False})
        self.assertEqual(self.v(c, "config", "get", "proxy").stdout, b"none\n")
        # A damaged setting fails closed: no direct connection instead.
        self.v(c, "config", "set", "proxy", good)
        db = sqlite3.connect(os.path.join(c, "vault.db"))
        with db:
            n = db.execute("UPDATE meta SET v = zeroblob(length(v)) "
                           "WHERE k = 'proxy'").rowcount
        db.close()
        self.assertEqual(n, 1)
        mark = srv.mark()
        r = self.v(c, "sync", expect=test_sync.CORRUPT)
        self.assertIn("proxy setting", r.stderr.decode())
        time.sleep(0.3)
        self.assertNotIn(": opened", srv.log(mark))  # nothing reached it
        self.v(c, "config", "set", "proxy", "none")  # overwritten, usable
        self.sync(c)


def load_tests(loader, tests, pattern):
    # Only ProxyTest's own tests, not those it inherits from test_sync.
    names = [n for n, v in vars(ProxyTest).items()
             if n.startswith("test_") and callable(v)]
    return unittest.TestSuite(ProxyTest(n) for n in sorted(names))


def main():
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        test_sync.BIN = os.path.abspath(argv.pop(1))
    else:
        test_sync.BIN = os.environ.get("FIELDVAULT_BIN") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin",
            "fieldvault")
    for tool in (MICROSOCKS, TINYPROXY, STRACE):
        if not os.access(tool, os.X_OK):
            print("test_proxy.py: %s is missing (scripts/deps installs it)"
                  % tool, file=sys.stderr)
            return 2
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
