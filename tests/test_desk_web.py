#!/usr/bin/python3
"""The coordinator's desk in a browser (`fieldvault desk`), over HTTP with
real processes: the real binary serving a real vault on 127.0.0.1 (and, for
the coordinator's actions, a real server and a field device). Security:
no token, a wrong or reused token, a wrong Host (DNS rebinding), a foreign
Origin, a missing or wrong CSRF token, a non-loopback --listen, the idle
lock; record text carrying HTML and script comes back as JSON text only
and the page never parses data as HTML. Function: list, filters, search,
sorting, paging, a record, attachments by HTTP range, review state, notes
that a field device receives by sync, a conflict merged, retraction,
verify, export. Standard library only (http.client); the helpers are
test_sync.py's.

    python3 tests/test_desk_web.py build/bin/fieldvault [unittest options]
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sync  # noqa: E402
from test_sync import HEX64, OK, SyncTest  # noqa: E402

USAGE, PASSPHRASE = 2, 3
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "web", "page")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Desk:
    """A running `fieldvault desk --json --no-open` and an HTTP client."""

    def __init__(self, test, vault, *extra, port=None):
        self.test = test
        self.port = port or free_port()
        args = [test_sync.BIN, "--vault", vault, "--passphrase-file",
                test.passfile, "--json", "desk", "--no-open", "--listen",
                "127.0.0.1:%d" % self.port] + list(extra)
        self.errpath = os.path.join(test.tmp, "desk-%d.err" % self.port)
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE,
                                  stderr=self.err, env=test_sync.clean_env())
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            test.fail("desk did not start: %r" % self.stderr())
        j = json.loads(line)
        self.url = j["url"]
        test.assertEqual(j["port"], self.port)
        u = urllib.parse.urlsplit(self.url)
        test.assertEqual(u.hostname, "127.0.0.1")
        self.token = urllib.parse.parse_qs(u.query)["token"][0]
        test.assertRegex(self.token, HEX64)
        self.host = "127.0.0.1:%d" % self.port
        self.origin = "http://" + self.host
        self.cookie = None
        self.csrf = None
        test.addCleanup(self.kill)

    def request(self, method, path, body=None, headers=None, cookie=True,
                host=None, origin=None, csrf=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Host": host or self.host}
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        if method == "POST":
            h["Content-Type"] = "application/x-www-form-urlencoded"
            if origin is not False:
                h["Origin"] = origin or self.origin
            if csrf is True and self.csrf:
                h["X-CSRF-Token"] = self.csrf
            elif isinstance(csrf, str):
                h["X-CSRF-Token"] = csrf
        elif origin:
            h["Origin"] = origin
        h.update(headers or {})
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        # every answer, refused or not, is kept out of every cache
        self.test.assertEqual(r.getheader("Cache-Control"), "no-store",
                              (method, path, r.status))
        return r, data

    def login(self):
        r, _ = self.request("GET", "/?token=" + self.token, cookie=False)
        self.test.assertEqual(r.status, 303)
        self.test.assertEqual(r.getheader("Location"), "/")
        sc = r.getheader("Set-Cookie")
        self.test.assertIn("HttpOnly", sc)
        self.test.assertIn("SameSite=Strict", sc)
        self.cookie = sc.split(";")[0]
        self.test.assertNotIn(self.token, self.cookie)
        self.csrf = self.get("/api/session")["csrf"]
        self.test.assertRegex(self.csrf, HEX64)

    def get(self, path, status=200, **kw):
        r, data = self.request("GET", path, **kw)
        self.test.assertEqual(r.status, status, (path, data[:500]))
        self.test.assertTrue(r.getheader("Content-Type").startswith("application/json"))
        return json.loads(data.decode("utf-8"))

    def post(self, path, fields, status=200, **kw):
        r, data = self.request("POST", path, fields, **kw)
        self.test.assertEqual(r.status, status, (path, data[:500]))
        return json.loads(data.decode("utf-8"))

    def records(self, **q):
        q.setdefault("limit", "500")
        return self.get("/api/records?" + urllib.parse.urlencode(q))

    def stderr(self):
        self.err.flush()
        with open(self.errpath, "rb") as f:
            return f.read()

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=30)
        self.test.assertEqual(rc, OK, self.stderr())

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        elif self.p.returncode != OK:
            # a desk that died: say how (a sanitizer's report, say)
            sys.stderr.write("desk exited %d:\n%s\n" % (
                self.p.returncode, self.stderr().decode("utf-8", "replace")[-6000:]))
        self.p.stdout.close()
        self.err.close()


class DeskWebTest(SyncTest):
    def desk(self, vault, *extra):
        d = Desk(self, vault, *extra)
        d.login()
        return d


class TestSecurity(DeskWebTest):
    def test_refusals(self):
        v = self.make_vault("V")
        rid = self.add(v, "a testimony")
        d = Desk(self, v)
        # no token, no cookie: nothing
        for path in ("/", "/api/records", "/api/session", "/desk.js",
                     "/api/record?id=" + rid):
            r, data = d.request("GET", path)
            self.assertEqual(r.status, 401, path)
            self.assertNotIn(b"testimony", data)
        # a wrong token
        r, _ = d.request("GET", "/?token=" + "0" * 64)
        self.assertEqual(r.status, 401)
        r, _ = d.request("GET", "/?token=" + d.token[:-1])
        self.assertEqual(r.status, 401)
        # a forged cookie
        r, _ = d.request("GET", "/api/records",
                         headers={"Cookie": "fv_desk=" + "1" * 64})
        self.assertEqual(r.status, 401)
        # the right token, then never again (the link works once)
        d.login()
        r, _ = d.request("GET", "/?token=" + d.token, cookie=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(d.records()["total"], 1)
        # DNS rebinding: the right cookie under another Host
        for host in ("evil.example:%d" % d.port, "evil.example",
                     "127.0.0.1:%d" % (d.port + 1), "127.0.0.2:%d" % d.port,
                     "localhost.evil.example:%d" % d.port):
            r, data = d.request("GET", "/api/records", host=host)
            self.assertEqual(r.status, 421, host)
            self.assertNotIn(b"testimony", data)
        r, _ = d.request("GET", "/api/records", host="localhost:%d" % d.port)
        self.assertEqual(r.status, 200)
        # a foreign Origin, on a read and on a write
        r, data = d.request("GET", "/api/records", origin="http://evil.example")
        self.assertEqual(r.status, 403)
        self.assertNotIn(b"testimony", data)
        r, _ = d.request("POST", "/api/note", {"id": rid, "text": "x"},
                         origin="http://127.0.0.1:%d" % (d.port + 1))
        self.assertEqual(r.status, 403)
        # CSRF: missing, wrong, or no Origin
        r, _ = d.request("POST", "/api/note", {"id": rid, "text": "x"},
                         csrf=False)
        self.assertEqual(r.status, 403)
        r, _ = d.request("POST", "/api/note", {"id": rid, "text": "x"},
                         csrf="0" * 64)
        self.assertEqual(r.status, 403)
        r, _ = d.request("POST", "/api/note", {"id": rid, "text": "x"},
                         origin=False)
        self.assertEqual(r.status, 403)
        self.assertEqual(self.jv(v, "notes"), [])
        # only GET, HEAD and POST
        r, _ = d.request("DELETE", "/api/records")
        self.assertEqual(r.status, 405)
        # with all of them, it goes through
        d.post("/api/note", {"id": rid, "text": "all checks passed"})
        d.stop()
        self.assertEqual([n["text"] for n in self.jv(v, "notes")],
                         ["all checks passed"])

    def test_headers_and_page(self):
        v = self.make_vault("V")
        d = self.desk(v)
        for path in ("/", "/desk.js", "/desk.css", "/api/records"):
            r, data = d.request("GET", path)
            self.assertEqual(r.status, 200, path)
            csp = r.getheader("Content-Security-Policy")
            self.assertIn("default-src 'self'", csp)
            self.assertIn("script-src 'self'", csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertNotIn("unsafe-eval", csp)
            self.assertEqual(r.getheader("X-Content-Type-Options"), "nosniff")
            self.assertEqual(r.getheader("X-Frame-Options"), "DENY")
        r, page = d.request("GET", "/")
        self.assertTrue(r.getheader("Content-Type").startswith("text/html"))
        # no inline script, no handler attribute, nothing from a network
        self.assertIsNone(re.search(rb"<script(?![^>]*\bsrc=)", page))
        self.assertIsNone(re.search(rb"\son[a-z]+=", page))
        for name in ("index.html", "desk.js", "desk.css"):
            r, served = d.request("GET", "/" + name)
            with open(os.path.join(PAGE, name), "rb") as f:
                self.assertEqual(served, f.read(), "the page embedded as built")
            self.assertIsNone(re.search(rb"https?://(?!127\.0\.0\.1)", served), name)
        # the page puts data in as text only
        r, js = d.request("GET", "/desk.js")
        for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML",
                     b"document.write", b"eval(", b"new Function"):
            self.assertNotIn(sink, js)
        r, _ = d.request("GET", "/nothing-here")
        self.assertEqual(r.status, 404)
        d.stop()

    def test_listen_idle_passphrase(self):
        v = self.make_vault("V")
        for addr in ("0.0.0.0:%d" % free_port(), "192.0.2.1:80",
                     "example.org:80", "127.0.0.2:80", "[::]:80", "127.0.0.1:99999",
                     "127.0.0.1:x"):
            self.v(v, "desk", "--no-open", "--listen", addr, expect=USAGE)
        bad = self.write("bad.txt", b"wrong\n")
        r = test_sync.run(["--vault", v, "--passphrase-file", bad, "desk",
                           "--no-open"])
        self.assertEqual(r.returncode, PASSPHRASE, r.stderr)
        # a taken port
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        self.v(v, "desk", "--no-open", "--listen",
               "127.0.0.1:%d" % s.getsockname()[1], expect=6)
        # the idle lock, and the page's passphrase form opening it again
        self.v(v, "config", "set", "wipe-after", "3")
        d = self.desk(v, "--idle", "2")
        self.assertEqual(d.records()["total"], 0)
        time.sleep(3.5)
        j = d.get("/api/records", status=423)
        self.assertIn("locked", j["error"])
        # locked: the page and the CSRF token are served, nothing else
        s = d.get("/api/session")
        self.assertEqual(s, {"locked": True, "csrf": d.csrf})
        r, _ = d.request("GET", "/")
        self.assertEqual(r.status, 200)
        d.post("/api/state", {"id": "00" * 32, "state": "reviewed"}, status=423)
        # the unlock is a POST like any other: cookie, CSRF token, Origin
        pw = open(self.passfile, "rb").read().rstrip(b"\n").decode()
        for kw, want in (({"csrf": "0" * 64}, 403), ({"origin": "http://evil.example"}, 403),
                         ({"cookie": False}, 401), ({"origin": False}, 403)):
            r, _ = d.request("POST", "/api/unlock", {"passphrase": pw}, **kw)
            self.assertEqual(r.status, want, kw)
        d.post("/api/unlock", {}, status=400)
        # a wrong passphrase is refused and counted as any unlock is
        j = d.post("/api/unlock", {"passphrase": "wrong"}, status=403)
        self.assertIn("wrong passphrase", j["error"])
        self.assertEqual(d.post("/api/unlock", {"passphrase": pw}), {"unlocked": True})
        self.assertEqual(d.records()["total"], 0)
        d.post("/api/unlock", {"passphrase": pw}, status=409)
        self.assertIn(b"unlocked again", d.stderr())
        self.assertNotIn(pw.encode(), d.stderr())
        # locked again; wipe-after counts the desk's wrong tries: the third
        # destroys the vault, after which nothing opens it
        time.sleep(3.5)
        d.get("/api/records", status=423)
        for _ in range(2):
            d.post("/api/unlock", {"passphrase": "wrong"}, status=403)
        d.post("/api/unlock", {"passphrase": "wrong"}, status=403)
        d.post("/api/unlock", {"passphrase": pw}, status=410)
        self.assertFalse(os.path.exists(os.path.join(v, "vault.key")))
        d.stop()

    def test_hostile_requests(self):
        v = self.make_vault("V")
        self.write("a.mp3", os.urandom(1000))
        rid = self.add(v, "one", "--attach", self.path("a.mp3"))
        d = self.desk(v)
        src = "/api/attachment?id=%s&name=a.mp3" % rid
        for rng in ("bytes=abc", "bytes=-", "bytes=--1", "bytes=1-a",
                    "bytes=99999999999999999999999-", "bytes=-0", "bytes=1000-",
                    "bytes=" + "9" * 5000 + "-"):
            r, _ = d.request("GET", src, headers={"Range": rng})
            self.assertEqual(r.status, 416, rng)
        r, body = d.request("GET", src, headers={"Range": "bytes=990-18446744073709551615"})
        self.assertEqual(r.status, 206)
        self.assertEqual(len(body), 10)
        for q in ("id=" + "a" * 5000, "id=%ff%fe&name=a.mp3", "id=%s&name=../a.mp3" % rid,
                  "id=%s&name=%%00" % rid, "id=%s" % rid, "", "id=" + rid[:3]):
            r, _ = d.request("GET", "/api/attachment?" + q)
            self.assertIn(r.status, (400, 404), q)
        for q in ("q=%ff%fe", "q=" + "x" * 4000, "limit=0", "limit=-1", "offset=-5",
                  "limit=99999999999999999999", "sort=bogus&order=sideways",
                  "device=zz", "since=2026-13-45", "tag=%00"):
            r, _ = d.request("GET", "/api/records?" + q)
            self.assertIn(r.status, (200, 400), q)
        self.assertEqual(d.records(limit="100000")["limit"], 500)
        self.assertEqual(d.records(sort="bogus")["total"], 1)
        # a body past the 2 MiB a merge needs
        r, _ = d.request("POST", "/api/note", "id=%s&text=%s" % (rid, "x" * (3 << 20)))
        self.assertEqual(r.status, 413)
        # forms that are not what they say
        for body in ("", "&&&", "id", "id=&text=", "text=x", "id=%s&text" % rid,
                     "id=%s&text=%%" % rid, "=x&id=%s" % rid):
            r, _ = d.request("POST", "/api/note", body)
            self.assertIn(r.status, (400, 404), body)
        r, _ = d.request("POST", "/api/records", {})
        self.assertEqual(r.status, 405)
        r, _ = d.request("GET", "/api/note")
        self.assertEqual(r.status, 405)
        r, _ = d.request("GET", "/api/nothing")
        self.assertEqual(r.status, 404)
        r, _ = d.request("HEAD", "/")
        self.assertEqual(r.status, 200)
        # requests that are not HTTP, or too large for the server: answered
        # or closed, and the desk goes on
        for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
                    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: " + d.host.encode() + b"\r\n\r\n",
                    b"\x00\xff" * 100, b"GET / HTTP/1.1\r\nHost: " + d.host.encode()):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            try:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                got = s.recv(65536)
                self.assertNotIn(b"one", got.split(b"\r\n\r\n", 1)[-1] if got else b"")
            except OSError:
                pass
            finally:
                s.close()
        self.assertEqual(d.records()["total"], 1)
        d.stop()


class TestRecords(DeskWebTest):
    def test_escaping_list_search_range(self):
        v = self.make_vault("V")
        evil = '<script>alert("t")</script><img src=x onerror=alert(1)>'
        audio = os.urandom(700 * 1024 + 123)  # three chunks, the last short
        self.write("rec.mp3", audio)
        r_evil = self.add(v, evil, "--field", "place=" + evil,
                          "--field", "<b>key</b>=&amp;", "--tag", "<i>tag</i>",
                          "--narrative-file", self.write("n.txt", evil.encode()),
                          "--attach", self.path("rec.mp3"))
        self.write("page.html", b"<script>alert(2)</script>")
        time.sleep(1.1)
        r_ko = self.add(v, "혜산 국경 증언", "--tag", "border", "--field",
                        "장소=혜산")
        time.sleep(1.1)
        r_zh = self.add(v, "第二份证词", "--tag", "border", "--attach",
                        self.path("page.html"))
        me = self.jv(v, "list")[0]["author"]
        d = self.desk(v)

        # the shared writer: the desk's summaries are `list --json`'s
        cli = {x["id"]: x for x in self.jv(v, "list")}
        j = d.records()
        self.assertEqual(j["total"], 3)
        for x in j["records"]:
            self.assertIsNone(x.pop("author_name"))
            self.assertEqual(x, cli[x["id"]])
        # newest first by default; sorting and paging
        self.assertEqual([x["id"] for x in j["records"]], [r_zh, r_ko, r_evil])
        j = d.records(order="asc")
        self.assertEqual([x["id"] for x in j["records"]], [r_evil, r_ko, r_zh])
        j = d.records(sort="title", order="asc", limit="2")
        self.assertEqual([x["title"] for x in j["records"]],
                         sorted([evil, "혜산 국경 증언", "第二份证词"])[:2])
        j2 = d.records(sort="title", order="asc", limit="2", offset="2")
        self.assertEqual(j2["total"], 3)
        self.assertEqual(len(j2["records"]), 1)

        # record text with HTML and script is JSON text, byte for byte
        r, raw = d.request("GET", "/api/record?id=" + r_evil)
        self.assertTrue(r.getheader("Content-Type").startswith("application/json"))
        self.assertEqual(r.getheader("X-Content-Type-Options"), "nosniff")
        rec = json.loads(raw)
        self.assertEqual(rec["title"], evil)
        self.assertEqual(rec["narrative"], evil)
        self.assertEqual(rec["fields"], {"place": evil, "<b>key</b>": "&amp;"})
        self.assertEqual(rec["tags"], ["<i>tag</i>"])
        self.assertEqual(rec["author"], me)
        self.assertEqual(rec["heads"], [rec["revision"]])
        self.assertEqual(len(rec["revisions"]), 1)
        shown = self.jv(v, "show", r_evil)
        for k in ("id", "title", "narrative", "fields", "tags", "attachments",
                  "revisions", "heads", "created", "modified", "state"):
            self.assertEqual(rec[k], shown[k], k)
        # a prefix will do; nothing else
        self.assertEqual(d.get("/api/record?id=" + r_ko[:8])["title"], "혜산 국경 증언")
        d.get("/api/record?id=" + "f" * 64, status=404)
        d.get("/api/record?id=zz", status=400)

        # filters
        def ids(**q):
            return {x["id"] for x in d.records(**q)["records"]}
        self.assertEqual(ids(tag="border"), {r_ko, r_zh})
        self.assertEqual(ids(tag="<i>tag</i>"), {r_evil})
        self.assertEqual(ids(device=me), {r_evil, r_ko, r_zh})
        self.assertEqual(ids(device="ab" * 32), set())
        self.assertEqual(ids(state="new"), {r_evil, r_ko, r_zh})
        self.assertEqual(ids(state="reviewed"), set())
        self.assertEqual(ids(since="2000-01-01", until="2999-12-31"), {r_evil, r_ko, r_zh})
        self.assertEqual(ids(until="2000-01-01"), set())
        d.get("/api/records?state=bogus", status=400)
        d.get("/api/records?since=yesterday", status=400)
        # full-text search: narrative, field values, any script
        self.assertEqual(ids(q="alert"), {r_evil})
        self.assertEqual(ids(q="혜산"), {r_ko})
        self.assertEqual(ids(q="证词"), {r_zh})
        self.assertEqual(ids(q="혜산", tag="border"), {r_ko})
        self.assertEqual(ids(q="nothing like it"), set())
        f = d.get("/api/facets")
        self.assertEqual(f["tags"], sorted(["<i>tag</i>", "border"]))
        self.assertEqual([a["id"] for a in f["authors"]], [me])

        # the attachment: whole, and by range as a player seeks
        src = "/api/attachment?" + urllib.parse.urlencode({"id": r_evil, "name": "rec.mp3"})
        r, body = d.request("GET", src)
        self.assertEqual(r.status, 200)
        self.assertEqual(body, audio)
        self.assertEqual(r.getheader("Content-Type"), "audio/mpeg")
        self.assertEqual(r.getheader("Accept-Ranges"), "bytes")
        self.assertIn("sandbox", r.getheader("Content-Security-Policy"))
        size = len(audio)
        for rng, a, b in (("bytes=0-99", 0, 99),
                          ("bytes=262140-262150", 262140, 262150),  # a chunk edge
                          ("bytes=524200-", 524200, size - 1),
                          ("bytes=-10", size - 10, size - 1),
                          ("bytes=%d-%d" % (size - 1, size + 100), size - 1, size - 1),
                          ("bytes=300000-300000", 300000, 300000)):
            r, body = d.request("GET", src, headers={"Range": rng})
            self.assertEqual(r.status, 206, rng)
            self.assertEqual(r.getheader("Content-Range"),
                             "bytes %d-%d/%d" % (a, b, size), rng)
            self.assertEqual(body, audio[a:b + 1], rng)
        for rng in ("bytes=%d-" % size, "bytes=5-2", "bytes=0-1,5-6", "lines=1-2"):
            r, _ = d.request("GET", src, headers={"Range": rng})
            self.assertEqual(r.status, 416, rng)
            self.assertEqual(r.getheader("Content-Range"), "bytes */%d" % size)
        # a file a browser would render is a download, never a document
        r, body = d.request("GET", "/api/attachment?" + urllib.parse.urlencode(
            {"id": r_zh, "name": "page.html"}))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Type"), "application/octet-stream")
        self.assertEqual(r.getheader("Content-Disposition"), "attachment")
        d.get("/api/attachment?" + urllib.parse.urlencode(
            {"id": r_zh, "name": "none.mp3"}), status=404)

        # notes (any script), retraction with its confirmation, verify, export
        d.post("/api/note", {"id": r_ko, "text": "후속 질문: 날짜 <b>?</b>"})
        self.assertEqual([n["text"] for n in d.get("/api/record?id=" + r_ko)["notes"]],
                         ["후속 질문: 날짜 <b>?</b>"])
        self.assertEqual(d.records()["records"][1]["notes"], 1)
        d.post("/api/note", {"id": r_ko, "text": ""}, status=400)
        # not UTF-8, or a NUL: refused, never stored
        for bad in ("%ff", "a%00b", "%e2%82", "%ed%a0%80", "%zz", "%4"):
            d.post("/api/note", "id=%s&text=%s" % (r_ko, bad), status=400)
        d.post("/api/retract", {"id": r_zh}, status=400)
        d.post("/api/retract", {"id": r_zh, "confirm": r_ko}, status=400)
        d.post("/api/retract", {"id": r_zh, "confirm": r_zh})
        self.assertEqual(ids(), {r_evil, r_ko})
        d.get("/api/record?id=" + r_zh, status=404)
        vr = d.post("/api/verify", {})
        self.assertTrue(vr["ok"], vr)
        self.assertGreater(vr["envelopes"], 0)
        vr = d.post("/api/verify", {"id": r_evil})
        self.assertTrue(vr["record_ok"] and vr["ok"], vr)
        self.assertEqual(vr["issues"], [])
        d.post("/api/verify", {"id": "ab" * 32}, status=404)
        out = self.path("export.json")
        self.assertEqual(d.post("/api/export", {"format": "json", "path": out})["exported"], 2)
        self.assertTrue(os.path.exists(out))
        d.post("/api/export", {"format": "json", "path": out}, status=409)
        d.post("/api/export", {"format": "json", "path": "relative.json"}, status=400)
        # a coordinator's act, from a vault without the organisation key
        d.post("/api/state", {"id": r_ko, "state": "reviewed"}, status=403)
        d.stop()
        self.assertEqual(self.jv(v, "retractions")[0]["record"], r_zh)


class TestCoordinator(DeskWebTest):
    def test_names_state_note_merge_sync(self):
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "ヨンヒ field phone")
        rid = self.add(f, "crossing at night", "--tag", "border")
        self.sync(f)
        self.sync(c)
        # a conflict: the field device and the coordinator edit at once
        self.v(f, "edit", rid, "--title", "crossing at night (field)")
        self.v(c, "edit", rid, "--title", "crossing at night (coordinator)")
        self.sync(f)
        self.sync(c)
        fid = self.jv(f, "list")[0]["author"]

        d = self.desk(c)
        j = d.records()
        self.assertEqual(j["total"], 1)
        x = j["records"][0]
        # the author by the name the organisation gave the device
        self.assertEqual(x["author"], fid)
        self.assertEqual(x["author_name"], "ヨンヒ field phone")
        self.assertTrue(x["conflict"])
        devs = d.get("/api/devices")
        self.assertTrue(devs["known"], devs)
        self.assertIn("ヨンヒ field phone", {x["name"] for x in devs["devices"]})
        rec = d.get("/api/record?id=" + rid)
        self.assertEqual(len(rec["heads"]), 2)
        self.assertEqual(sorted(h["title"] for h in rec["head_records"]),
                         ["crossing at night (coordinator)",
                          "crossing at night (field)"])
        self.assertEqual(rec["names"][fid], "ヨンヒ field phone")
        # the static HTML export names the author as the desk does
        html = self.path("report")
        self.assertEqual(d.post("/api/export", {"format": "html", "path": html})["exported"], 1)
        with open(os.path.join(html, "records", rid + ".html"), encoding="utf-8") as fh:
            page = fh.read()
        self.assertIn('<span title="%s">ヨンヒ field phone</span>' % fid, page)
        with open(os.path.join(html, "index.html"), encoding="utf-8") as fh:
            self.assertIn("ヨンヒ field phone", fh.read())
        # and so does the command, which asks the server itself
        html2 = self.path("report2")
        self.v(c, "export", "--format", "html", "--output", html2)
        with open(os.path.join(html2, "records", rid + ".html"), encoding="utf-8") as fh:
            self.assertIn("ヨンヒ field phone", fh.read())
        # merge from the desk
        d.post("/api/merge", {"id": rid, "title": "crossing at night (merged)",
                              "narrative": "both accounts agree"})
        rec = d.get("/api/record?id=" + rid)
        self.assertEqual(len(rec["heads"]), 1)
        self.assertEqual(rec["title"], "crossing at night (merged)")
        self.assertEqual(len(rec["revisions"]), 4)
        self.assertFalse(d.records()["records"][0]["conflict"])
        # review state
        d.post("/api/state", {"id": rid, "state": "needs-follow-up"})
        d.post("/api/state", {"id": rid, "state": "nonsense"}, status=400)
        self.assertEqual(d.records(state="needs-follow-up")["total"], 1)
        self.assertEqual(d.records(state="new")["total"], 0)
        # a note, carried by the desk's sync to the field device
        d.post("/api/note", {"id": rid, "text": "확인 부탁드립니다 / 请确认"})
        d.post("/api/sync", {}, status=202)
        for _ in range(300):
            s = d.get("/api/sync")
            if not s["running"] and s["result"]:
                break
            time.sleep(0.1)
        self.assertTrue(s["result"]["ok"], s)
        # an invite from the desk
        inv = d.post("/api/invite", {"name": "second phone", "role": "field"})
        self.assertTrue(inv["invite"].startswith("fv1-"))
        d.stop()
        self.sync(f)
        notes = self.jv(f, "notes")
        self.assertEqual([n["text"] for n in notes], ["확인 부탁드립니다 / 请确认"])
        self.assertEqual(self.jv(c, "show", rid)["state"], "needs-follow-up")
        self.assertEqual(self.jv(f, "show", rid)["title"], "crossing at night (merged)")
        # revocation from the desk: the device is refused from then on
        d = self.desk(c)
        d.post("/api/revoke", {"device": "zz"}, status=400)
        j = d.post("/api/revoke", {"device": fid})
        self.assertTrue([x for x in j["devices"] if x["id"] == fid][0]["revoked"], j)
        d.stop()
        self.sync(f, expect=test_sync.DENIED)
        srv.stop()


if __name__ == "__main__":
    sys.exit(test_sync.main())
