#!/usr/bin/python3
"""The desk in a real browser: Debian's chromium, headless, driven over the
DevTools protocol (python3-websocket), against the real `fieldvault desk`
of a coordinator enrolled with a real server, and a field device. Opens the
desk by its one-time link, lists, filters, searches, plays an audio
attachment (the element reports its duration and seeks), sets a review
state, sends a note that the field device then receives by sync, merges a
conflict, retracts a record, and checks that a title carrying markup is
shown as text and never runs. Screenshots of the list and of a record page
go to build/artefacts/desk/ (or $FV_ARTEFACTS). Exits 77 (skipped) when
chromium or python3-websocket is missing.

    python3 tests/test_desk_browser.py build/bin/fieldvault [unittest options]
"""

import base64
import http.client
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sync  # noqa: E402
from test_sync import SyncTest  # noqa: E402
from test_desk_web import Desk  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SKIP = 77
try:
    import websocket  # python3-websocket
except ImportError:
    websocket = None

EVIL = '<img src=x onerror="window.__pwned=1">증언 <script>window.__pwned=2</script>'


def write_wav(path, seconds=5.0, rate=8000):
    """A mono 16-bit sine tone: a file chromium decodes with no codec."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(n)))


class Browser:
    """chromium --headless with one page, spoken to over its DevTools
    WebSocket."""

    def __init__(self, test, tmp):
        self.test = test
        self.prof = tempfile.mkdtemp(dir=tmp)
        self.p = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--no-default-browser-check",
             "--autoplay-policy=no-user-gesture-required",
             "--window-size=1280,900", "--remote-debugging-port=0",
             "--user-data-dir=" + self.prof, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        test.addCleanup(self.close)
        port = None
        deadline = time.monotonic() + 90
        buf = b""
        while time.monotonic() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            buf += line
            m = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        test.assertIsNotNone(port, "chromium did not start: %r" % buf[-2000:])
        targets = []
        for _ in range(100):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/json/list")
            targets = [t for t in json.loads(c.getresponse().read())
                       if t.get("type") == "page"]
            c.close()
            if targets:
                break
            time.sleep(0.1)
        test.assertTrue(targets, "no page target")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"],
                                              timeout=120, suppress_origin=True)
        self.next_id = 0
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    self.test.fail("%s: %r" % (method, msg["error"]))
                return msg.get("result", {})

    def js(self, expr):
        """The value of a JavaScript expression (awaited if a promise)."""
        r = self.send("Runtime.evaluate", expression=expr, awaitPromise=True,
                      returnByValue=True)
        if "exceptionDetails" in r:
            self.test.fail("%s: %r" % (expr[:200], r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expr, timeout=60, what=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        self.test.fail("timed out waiting for %s (status: %r)" % (
            what or expr, self.js("document.getElementById('status') && "
                                  "document.getElementById('status').textContent")))

    def go(self, url):
        self.send("Page.navigate", url=url)

    def screenshot(self, path):
        r = self.send("Page.captureScreenshot", format="png",
                      captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.p.stderr.close()


class TestDeskInBrowser(SyncTest):
    def rows(self):
        return "document.querySelectorAll('#records tbody tr').length"

    def test_coordinator_day(self):
        art = os.environ.get("FV_ARTEFACTS") or os.path.join(
            os.path.dirname(test_sync.BIN), "..", "artefacts", "desk")
        os.makedirs(art, exist_ok=True)
        sdir, srv, c = self.organisation()
        f = self.field(c, srv, "김 field phone")
        wav = self.path("interview.wav")
        write_wav(wav)
        r_audio = self.add(f, "혜산 국경 인터뷰", "--tag", "border", "--attach", wav,
                           "--narrative-file", self.write("n.txt", "강을 건넜다. 我们过了河。".encode()))
        r_evil = self.add(f, EVIL, "--tag", "detention", "--field", "place=" + EVIL)
        r_gone = self.add(f, "to be retracted", "--tag", "detention")
        r_conf = self.add(f, "conflicting account", "--tag", "border")
        self.sync(f)
        self.sync(c)
        self.v(f, "edit", r_conf, "--title", "conflicting account (field)")
        self.v(c, "edit", r_conf, "--title", "conflicting account (coordinator)")
        self.sync(f)
        self.sync(c)

        desk = Desk(self, c)
        b = Browser(self, self.tmp)
        # the one-time link, then the page at / with the list
        b.go(desk.url)
        b.wait(self.rows() + " === 4", what="the list")
        self.assertEqual(b.js("location.pathname + location.search"), "/")
        self.assertEqual(b.js("document.cookie"), "", "the cookie is HttpOnly")
        # the hostile title is text, and nothing of it ran
        self.assertTrue(b.js("[...document.querySelectorAll('#records a')]"
                             ".some(a => a.textContent === %s)" % json.dumps(EVIL)))
        self.assertIsNone(b.js("window.__pwned === undefined ? null : window.__pwned"))
        self.assertEqual(b.js("document.querySelectorAll('#records img, #records script').length"), 0)
        # the author by its device name
        self.assertTrue(b.js("document.querySelector('#records tbody').textContent"
                             ".includes('김 field phone')"))
        self.assertTrue(b.js("document.querySelector('#records .mark.conflict') !== null"))
        b.screenshot(os.path.join(art, "list.png"))

        # filter by tag, then full-text search
        b.js("document.querySelector('select[name=tag]').value = 'detention';"
             "document.querySelector('form.filters').requestSubmit(); true")
        b.wait(self.rows() + " === 2 && location.hash.includes('tag=detention')", what="tag filter")
        b.js("location.hash = '#/'; true")
        b.wait(self.rows() + " === 4")
        b.js("document.getElementById('q').value = '我们过了河';"
             "document.querySelector('form.filters').requestSubmit(); true")
        b.wait(self.rows() + " === 1 && location.hash.includes('q=')", what="search")
        self.assertIn("혜산", b.js("document.querySelector('#records tbody a').textContent"))

        # the record: the audio plays in the page and seeks
        b.js("document.querySelector('#records tbody a').click(); true")
        b.wait("document.querySelector('audio') !== null", what="the audio element")
        dur = b.wait("new Promise(res => { const a = document.querySelector('audio');"
                     " if (a.readyState >= 1) res(a.duration); else {"
                     " a.addEventListener('loadedmetadata', () => res(a.duration));"
                     " a.addEventListener('error', () => res(-1)); a.load(); } })",
                     what="the audio's duration")
        self.assertAlmostEqual(dur, 5.0, delta=0.1)
        pos = b.js("new Promise(res => { const a = document.querySelector('audio');"
                   " a.addEventListener('seeked', () => res(a.currentTime), {once: true});"
                   " a.currentTime = 3.5; })")
        self.assertAlmostEqual(pos, 3.5, delta=0.05)
        played = b.js("new Promise(res => { const a = document.querySelector('audio');"
                      " a.muted = true; a.play().then(() => setTimeout(() => { a.pause();"
                      " res(a.currentTime); }, 600)).catch(e => res(String(e))); })")
        self.assertIsInstance(played, (int, float), played)
        self.assertGreater(played, 3.5)
        # the review state and a note to the field
        b.js("document.getElementById('state').value = 'reviewed';"
             "[...document.querySelectorAll('button')].find(x => x.textContent === 'Set state').click(); true")
        b.wait("document.querySelector('.state') && document.querySelector('.state').textContent === 'reviewed'",
               what="the state set")
        b.js("document.getElementById('note-text').value = '날짜를 확인해 주세요 / 请确认日期';"
             "document.getElementById('send-note').click(); true")
        b.wait("[...document.querySelectorAll('.note .text')].some(n => n.textContent === "
               "'날짜를 확인해 주세요 / 请确认日期')", what="the note")
        # its custody, checked now
        b.js("document.getElementById('verify-record').click(); true")
        b.wait("document.getElementById('custody-out').className === 'ok'", what="the record verified")
        b.screenshot(os.path.join(art, "record.png"))

        # the hostile record's page: its fields are text too
        b.js("location.hash = '#/r/%s'; true" % r_evil)
        b.wait("document.querySelector('article h2') && document.querySelector('article h2').textContent === %s"
               % json.dumps(EVIL), what="the hostile record")
        self.assertIsNone(b.js("window.__pwned === undefined ? null : window.__pwned"))
        self.assertEqual(b.js("document.querySelectorAll('article img, article script').length"), 0)

        # the conflict: both heads side by side, merged from the form
        b.js("location.hash = '#/r/%s'; true" % r_conf)
        b.wait("document.querySelectorAll('.heads .head').length === 2", what="two heads")
        heads = b.js("[...document.querySelectorAll('.heads .head h4')].map(h => h.textContent).sort()")
        self.assertEqual(heads, ["conflicting account (coordinator)", "conflicting account (field)"])
        b.screenshot(os.path.join(art, "conflict.png"))
        b.js("document.querySelector('input[name=title]').value = 'conflicting account (merged)';"
             "document.getElementById('merge').click(); true")
        b.wait("document.querySelector('article h2').textContent === 'conflicting account (merged)'"
               " && document.querySelectorAll('.heads').length === 0", what="the merge")

        # retraction, behind its confirmation
        b.js("location.hash = '#/r/%s'; true" % r_gone)
        b.wait("document.getElementById('retract') !== null")
        b.js("window.confirm = () => false; document.getElementById('retract').click(); true")
        time.sleep(0.5)
        self.assertIn(r_gone, b.js("location.hash"))
        b.js("window.confirm = () => true; document.getElementById('retract').click(); true")
        b.wait("location.hash === '#/'", what="back to the list")
        b.wait(self.rows() + " === 3", what="the list without the retracted record")

        # Sync now, with its progress and result
        b.js("location.hash = '#/tools'; true")
        b.wait("document.getElementById('sync') !== null")
        b.js("document.getElementById('sync').click(); true")
        msg = b.wait("(document.getElementById('sync-msg').className === 'ok') &&"
                     " document.getElementById('sync-msg').textContent", timeout=120, what="the sync")
        self.assertIn("pushed", msg)
        b.close()
        desk.stop()

        # what the desk did reached the vault and, by sync, the field
        self.sync(f)
        self.assertEqual([n["text"] for n in self.jv(f, "notes")],
                         ["날짜를 확인해 주세요 / 请确认日期"])
        self.assertEqual(self.jv(c, "show", r_audio)["state"], "reviewed")
        self.assertEqual(self.jv(f, "show", r_conf)["title"], "conflicting account (merged)")
        self.assertNotIn(r_gone, {x["id"] for x in self.jv(f, "list")})
        for name in ("list.png", "record.png"):
            with open(os.path.join(art, name), "rb") as fh:
                self.assertEqual(fh.read(8), b"\x89PNG\r\n\x1a\n")
        srv.stop()

    def test_unlock_after_idle(self):
        v = self.make_vault("V")
        self.add(v, "still here after the lock")
        desk = Desk(self, v, "--idle", "2")
        b = Browser(self, self.tmp)
        b.go(desk.url)
        b.wait(self.rows() + " === 1", what="the list")
        time.sleep(3.5)
        # the next request finds the vault locked: the page asks for the
        # passphrase, and nothing else replaces the form meanwhile
        b.js("location.hash = '#/?limit=50&sort=title'; true")
        b.wait("document.getElementById('unlock-pass') !== null", what="the unlock form")
        b.js("document.getElementById('unlock-pass').value = 'wrong';"
             "document.querySelector('#unlock button').click(); true")
        b.wait("document.querySelector('[role=alert]').textContent.includes('wrong passphrase')",
               what="a wrong passphrase refused")
        self.assertEqual(b.js("document.getElementById('unlock-pass').value"), "")
        with open(self.passfile, "rb") as fh:
            pw = fh.read().rstrip(b"\n").decode()
        b.js("document.getElementById('unlock-pass').value = %s;"
             "document.querySelector('#unlock button').click(); true" % json.dumps(pw))
        b.wait(self.rows() + " === 1", what="the list again")
        self.assertEqual(b.js("document.getElementById('unlock-pass')"), None)
        b.close()
        desk.stop()


if __name__ == "__main__":
    if not os.path.exists(CHROMIUM) or websocket is None:
        print("test_desk_browser: skipped: %s" % (
            "no " + CHROMIUM if not os.path.exists(CHROMIUM) else "no python3-websocket"),
            file=sys.stderr)
        sys.exit(SKIP)
    sys.exit(test_sync.main())
