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
signed envelope. Every receipt's signature verifies under the manifest's
server_receipt_key and names this vault's device. No file in envelopes/ or
chunks/ is left unaccounted for.

Exit 0 and "verify_evidence: ok ..." if everything holds; 1 and one line per
problem otherwise. Needs python3-cryptography (Debian: apt-get install
python3-cryptography).
"""
import hashlib
import json
import os
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

    listed_envs, listed_chunks, signed_chunks = set(), set(), set()
    for rec in m.get("records", []):
        rid = rec.get("id", "")
        for e in rec.get("envelopes", []):
            eid = e.get("id", "")
            listed_envs.add(eid)
            if e.get("purged"):
                continue
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
