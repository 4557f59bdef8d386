#!/usr/bin/python3
"""verify_evidence.py - checks a FieldVault evidence directory
(`fieldvault export --format evidence --output DIR`) without FieldVault's C
code.

    python3 tests/verify_evidence.py DIR

Reads envelopes with tests/vectors/check_vectors.py, the independent reader of
docs/FORMAT.md (its own strict CBOR decoder, the COSE_Sign1 Sig_structure,
Ed25519 through python3-cryptography). For every envelope in manifest.json:
the file's BLAKE2b-256 is its id and its name; its Ed25519 signature by its
author verifies; its record, kind, author, parents and chunk lists are what
the manifest says. Every chunk file hashes to its name and is listed by a
signed envelope; its `bytes` is the file's size. Each record's `revision`
is a revision (kind 1) of that record that no revision or tombstone of it
names as a parent (a head), and its `origin` is the author of its genesis
envelope (the record id), or this vault's device or zeros where the genesis
is not here to say (docs/EXPORT.md). Every receipt's signature verifies
under the manifest's server_receipt_key and names this vault's device.
Nothing in the directory is left unaccounted for: no file or directory but
manifest.json, README.txt, envelopes/ and chunks/, and in those only the
regular files the manifest lists (no symbolic link, no file named after a
destroyed envelope).

Exit 0 and "verify_evidence: ok ..." if everything holds; 1 and one line per
problem otherwise. Runs with Debian 12's /usr/bin/python3 and its packages
(apt-get install python3-cryptography python3-nacl).
"""
import hashlib
import json
import os
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors"))
from check_vectors import Corrupt, Dec, parse_envelope  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402


def b2b256(data):
    return hashlib.blake2b(data, digest_size=32).digest()


def receipt_ids(body):
    """receipt-body = ["FieldVault receipt v1", epoch, device, time,
    [1* [id, seq]]] (docs/PROTOCOL.md)."""
    d = Dec(body)
    if d.array() != 5 or d.text() != "FieldVault receipt v1":
        raise Corrupt("not a receipt body")
    epoch, device, _time = d.bytes(), d.bytes(), d.int()
    ids = []
    for _ in range(d.array()):
        if d.array() != 2:
            raise Corrupt("receipt entry")
        ids.append(d.bytes())
        d.uint()
    d.end()
    if len(epoch) != 16 or len(device) != 32 or any(len(i) != 32 for i in ids):
        raise Corrupt("receipt sizes")
    return device, ids


TOP_LEVEL = {"manifest.json": stat.S_ISREG, "README.txt": stat.S_ISREG,
             "envelopes": stat.S_ISDIR, "chunks": stat.S_ISDIR}
ZERO_ID = "00" * 32


def check_record(rid, rec, envs, device, fail):
    """`revision` is a head of the record's revision graph (kinds 1 and 2;
    grants, notes, review states and retractions stand beside it) and a
    revision; `origin` is its genesis author. `envs` maps the ids of this
    record's envelopes with a file to their parsed form."""
    rev = rec.get("revision")
    named = {p.hex() for e in envs.values() if e["kind"] in (1, 2) for p in e["parents"]}
    if rev not in envs or envs[rev]["kind"] != 1:
        fail("record %s: revision %r is not a revision of the record here" % (rid, rev))
    elif rev in named:
        fail("record %s: revision %s is not a head (a later revision names it)" % (rid, rev))
    origin = rec.get("origin")
    listed = {e.get("id"): e for e in rec.get("envelopes", [])}
    if rid in envs:
        if origin != envs[rid]["author"].hex():
            fail("record %s: origin is not the author of its genesis" % rid)
    elif rid in listed:  # destroyed here: only this device or unknown
        if origin not in (device, ZERO_ID):
            fail("record %s: origin cannot be vouched for" % rid)
    elif origin != ZERO_ID:
        fail("record %s: origin given without its genesis" % rid)


def verify(root):
    problems = []
    checked = {"envelopes": 0, "chunks": 0, "receipts": 0}

    def fail(what):
        problems.append(what)

    try:
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        return ["manifest.json: cannot read: %s" % e], checked
    if m.get("fieldvault_evidence") != 1:
        return ["manifest.json: not a FieldVault evidence manifest"], checked

    # The top level: the four names EXPORT.md lists, of the right type.
    try:
        top = os.listdir(root)
    except OSError as err:
        return ["%s: %s" % (root, err)], checked
    for n in sorted(top):
        st = os.lstat(os.path.join(root, n))
        if n not in TOP_LEVEL or not TOP_LEVEL[n](st.st_mode):
            fail("%s: not part of an evidence export" % n)

    listed_envs, listed_chunks, signed_chunks = set(), set(), set()
    for rec in m.get("records", []):
        rid = rec.get("id", "")
        parsed = {}
        for e in rec.get("envelopes", []):
            eid = e.get("id", "")
            if e.get("purged"):
                continue  # destroyed: no file may carry its name
            listed_envs.add(eid)
            name = "envelopes/%s.cose" % eid
            if e.get("file") != name:
                fail("%s: manifest names file %r" % (eid, e.get("file")))
                continue
            try:
                buf = open(os.path.join(root, name), "rb").read()
            except OSError as err:
                fail("%s: %s" % (name, err))
                continue
            checked["envelopes"] += 1
            if b2b256(buf).hex() != eid or e.get("blake2b_256") != eid:
                fail("%s: BLAKE2b-256 of the file is not its id" % name)
                continue
            if e.get("bytes") != len(buf) or type(e.get("bytes")) is not int:
                fail("%s: the manifest's bytes is not the file's size" % name)
            try:
                env = parse_envelope(buf)
            except (Corrupt, ValueError) as err:
                fail("%s: does not verify (%s)" % (name, err))
                continue
            if env["record"].hex() != rid:
                fail("%s: belongs to another record" % name)
            if env["kind"] != e.get("kind"):
                fail("%s: kind differs from the manifest" % name)
            if env["author"].hex() != e.get("author"):
                fail("%s: signed by another author than the manifest says" % name)
            if [p.hex() for p in env["parents"]] != e.get("parents"):
                fail("%s: parents differ from the manifest" % name)
            hashes = [h.hex() for c in env["chunks"] for h in c]
            if hashes != [c.get("hash") for c in e.get("chunks", [])]:
                fail("%s: chunk list differs from the manifest" % name)
            signed_chunks.update(hashes)
            for c in e.get("chunks", []):
                if c.get("file"):
                    listed_chunks.add(c["hash"])
            if env["record"].hex() == rid:
                parsed[eid] = env
        check_record(rid, rec, parsed, m.get("vault_device"), fail)

    for h in sorted(listed_chunks):
        path = os.path.join(root, "chunks", h)
        try:
            data = open(path, "rb").read()
        except OSError as err:
            fail("chunks/%s: %s" % (h, err))
            continue
        checked["chunks"] += 1
        if b2b256(data).hex() != h:
            fail("chunks/%s: does not hash to its name" % h)
        if h not in signed_chunks:
            fail("chunks/%s: listed by no signed envelope" % h)

    # Nothing in the directories that the manifest does not account for.
    for sub, listed, suffix in (("envelopes", listed_envs, ".cose"), ("chunks", listed_chunks, "")):
        try:
            names = os.listdir(os.path.join(root, sub))
        except OSError as err:
            fail("%s/: %s" % (sub, err))
            continue
        for n in names:
            if not n.endswith(suffix) or n[:len(n) - len(suffix)] not in listed:
                fail("%s/%s: not in the manifest" % (sub, n))
            elif not stat.S_ISREG(os.lstat(os.path.join(root, sub, n)).st_mode):
                fail("%s/%s: not a regular file" % (sub, n))

    key = m.get("server_receipt_key")
    for r in m.get("receipts", []):
        checked["receipts"] += 1
        try:
            body, sig = bytes.fromhex(r["body"]), bytes.fromhex(r["sig"])
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(sig, body)
            device, ids = receipt_ids(body)
        except (KeyError, ValueError, TypeError, Corrupt, InvalidSignature) as err:
            fail("receipt %s: does not verify (%s)" % (r.get("seq"), type(err).__name__))
            continue
        if device.hex() != m.get("vault_device"):
            fail("receipt %s: names another device" % r.get("seq"))
        if not any(i.hex() in listed_envs for i in ids):
            fail("receipt %s: covers no envelope of this evidence" % r.get("seq"))
    if m.get("record_count") != len(m.get("records", [])):
        fail("manifest.json: record_count does not match its records")
    return problems, checked


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: verify_evidence.py DIR")
    problems, checked = verify(sys.argv[1])
    for p in problems:
        print("verify_evidence: FAILED: " + p)
    if problems:
        sys.exit(1)
    print("verify_evidence: ok: %(envelopes)d envelopes, %(chunks)d chunks, "
          "%(receipts)d receipts verified" % checked)


if __name__ == "__main__":
    main()
