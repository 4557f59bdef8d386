#!/usr/bin/python3
"""check_vectors.py - a second, independent reader of docs/FORMAT.md.

Checks every vector in this directory without FieldVault's C code: its own
strict CBOR decoder, COSE_Sign1 Sig_structure, BLAKE2b and keyed BLAKE2b (the
key commitment; hashlib), Argon2id (python3-nacl), Ed25519, X25519 and
Poly1305 (python3-cryptography), and HChaCha20, Salsa20, XChaCha20-Poly1305 and
crypto_box_seal written out here from their specs.

    /usr/bin/python3 tests/vectors/check_vectors.py [DIR ...]

With no DIR, checks tests/vectors (format 1) and tests/vectors/v2 (format 2:
padded payloads and last chunks, FORMAT.md 5.8 and 8, with Padme computed
here from its definition).

Runs with Debian 12's own packages (apt-get install python3-cryptography
python3-nacl): python3-cryptography 38 has no Argon2, python3-nacl 1.5 has
Argon2id (libsodium's). ctest runs it as test_vectors_py: the proof that the
document is enough to write a reader in another language.
"""
import hashlib
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey, X25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.pwhash import argon2id


PAD_FLOOR = 256  # FORMAT.md 5.8


def padme(n):
    """Padme (FORMAT.md 5.8): keep the top floor(log2(E)) + 1 bits of n,
    E = floor(log2 n), rounding up."""
    if n < 2:
        return n
    e = n.bit_length() - 1
    zeros = e - (e.bit_length() - 1) - 1
    if zeros <= 0:
        return n
    m = (1 << zeros) - 1
    return (n + m) & ~m


def env_padded_len(payload_len):
    return padme(max(payload_len + 1, PAD_FLOOR))


def chunk_padded_len(last_len, chunk):
    return min(chunk, padme(max(last_len, PAD_FLOOR)))


def unpad(plain):
    """payload || 0x80 || zeros, to exactly env_padded_len(payload): else
    the envelope is damaged (FORMAT.md 5.8)."""
    n = len(plain.rstrip(b"\0"))
    if n == 0 or plain[n - 1] != 0x80 or env_padded_len(n - 1) != len(plain):
        raise Corrupt("padding")
    return plain[:n - 1]


def b2b256(data):
    return hashlib.blake2b(data, digest_size=32).digest()


# FORMAT.md 5.2: the key commitment's message, 28 ASCII bytes.
COMMIT_LABEL = b"FieldVault key commitment v1"
ENV_MAX_BYTES = 1024 * 1024 - 4096          # FORMAT.md 5.1, "Sizes"
MAX_NARRATIVE_BYTES = 768 * 1024            # FORMAT.md 6
MAX_CHUNK_BYTES = 4 * 1024 * 1024           # FORMAT.md 6


def key_commit(key):
    """BLAKE2b-256 keyed with the 32-byte content key over the label."""
    return hashlib.blake2b(COMMIT_LABEL, digest_size=32, key=key).digest()


# ---- strict canonical CBOR (FORMAT.md, "Canonical CBOR") ------------------

class Corrupt(Exception):
    pass


class Dec:
    def __init__(self, b):
        self.b, self.i = b, 0

    def head(self, want=None):
        if self.i >= len(self.b):
            raise Corrupt("truncated")
        ib = self.b[self.i]
        major, ai = ib >> 5, ib & 31
        if want is not None and major != want:
            raise Corrupt("type %d, want %d" % (major, want))
        if ai >= 28:
            raise Corrupt("reserved or indefinite")
        if ai == 27 and 2 <= major <= 5:
            raise Corrupt("8-byte length")
        size = 0 if ai < 24 else 1 << (ai - 24)
        if self.i + 1 + size > len(self.b):
            raise Corrupt("truncated head")
        v = ai if ai < 24 else int.from_bytes(self.b[self.i + 1:self.i + 1 + size], "big")
        if (ai == 24 and v < 24) or (ai == 25 and v < 0x100) or \
           (ai == 26 and v < 0x10000) or (ai == 27 and v < 0x100000000):
            raise Corrupt("not shortest form")
        if major == 7 and ib not in (0xf4, 0xf5):
            raise Corrupt("float or simple value")
        self.i += 1 + size
        return major, v

    def uint(self):
        return self.head(0)[1]

    def int(self):
        if self.i < len(self.b) and self.b[self.i] >> 5 == 1:
            return -1 - self.head(1)[1]
        return self.head(0)[1]

    def bytes(self, major=2):
        n = self.head(major)[1]
        if self.i + n > len(self.b):
            raise Corrupt("string past the end")
        s = self.b[self.i:self.i + n]
        self.i += n
        return s

    def text(self):
        try:
            return self.bytes(3).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise Corrupt("invalid UTF-8")

    def array(self):
        return self.head(4)[1]

    def map(self):
        return self.head(5)[1]

    def key(self, k):
        if (self.text() if isinstance(k, str) else self.uint()) != k:
            raise Corrupt("map key %r out of place" % (k,))

    def end(self):
        if self.i != len(self.b):
            raise Corrupt("trailing bytes")


def enc_head(major, v):
    if v < 24:
        return bytes([major << 5 | v])
    for ai, n in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if v < 1 << (8 * n):
            return bytes([major << 5 | ai]) + v.to_bytes(n, "big")


def enc_bstr(b):
    return enc_head(2, len(b)) + b


# ---- ciphers written out from their specifications ------------------------

M32 = 0xffffffff


def rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & M32


def chacha_rounds(s):
    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & M32; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & M32; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & M32; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & M32; s[b] = rotl(s[b] ^ s[c], 7)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)


def hchacha20(key, n16):
    s = list(struct.unpack("<4I", b"expand 32-byte k")) + \
        list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", n16))
    chacha_rounds(s)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_open(key, nonce, ct, aad=b""):
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\0\0\0\0" + nonce[16:], ct, aad)


def salsa_rounds(s):
    def qr(a, b, c, d):
        s[b] ^= rotl((s[a] + s[d]) & M32, 7)
        s[c] ^= rotl((s[b] + s[a]) & M32, 9)
        s[d] ^= rotl((s[c] + s[b]) & M32, 13)
        s[a] ^= rotl((s[d] + s[c]) & M32, 18)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)
        qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)


def salsa_state(key, n16):
    c = struct.unpack("<4I", b"expand 32-byte k")
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", n16)
    return [c[0], k[0], k[1], k[2], k[3], c[1], n[0], n[1],
            n[2], n[3], c[2], k[4], k[5], k[6], k[7], c[3]]


def hsalsa20(key, n16):
    s = salsa_state(key, n16)
    salsa_rounds(s)
    return struct.pack("<8I", *[s[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)])


def salsa20_stream(key, n8, length):
    out = b""
    block = 0
    while len(out) < length:
        s0 = salsa_state(key, n8 + struct.pack("<Q", block))
        s = list(s0)
        salsa_rounds(s)
        out += struct.pack("<16I", *[(a + b) & M32 for a, b in zip(s, s0)])
        block += 1
    return out[:length]


def box_seal_open(c, pk, sk):
    """libsodium crypto_box_seal_open: epk || MAC || XSalsa20(box key)."""
    epk, mac, enc = c[:32], c[32:48], c[48:]
    nonce = hashlib.blake2b(epk + pk, digest_size=24).digest()
    shared = X25519PrivateKey.from_private_bytes(sk).exchange(
        X25519PublicKey.from_public_bytes(epk))
    k = hsalsa20(shared, b"\0" * 16)
    sub = hsalsa20(k, nonce[:16])
    stream = salsa20_stream(sub, nonce[16:], 32 + len(enc))
    Poly1305.verify_tag(stream[:32], enc, mac)
    return bytes(a ^ b for a, b in zip(enc, stream[32:]))


# ---- the formats ------------------------------------------------------------

def kdf(key, subkey_id, ctx):
    return hashlib.blake2b(b"", digest_size=32, key=key,
                           salt=struct.pack("<Q", subkey_id) + b"\0" * 8,
                           person=ctx + b"\0" * 8).digest()


def parse_envelope(buf):
    """FORMAT.md "Verifying an envelope", steps 1 to 8."""
    if len(buf) > ENV_MAX_BYTES:
        raise Corrupt("too large")
    d = Dec(buf)
    if d.head(6)[1] != 18 or d.array() != 4:
        raise Corrupt("not a tagged COSE_Sign1")
    prot = d.bytes()
    if d.map() != 0:
        raise Corrupt("unprotected header not empty")
    body = d.bytes()
    sig = d.bytes()
    d.end()
    if len(sig) != 64:
        raise Corrupt("signature size")
    p = Dec(prot)
    if p.map() != 2:
        raise Corrupt("protected header")
    p.key(1)
    if p.int() != -8:
        raise Corrupt("alg")
    p.key(4)
    kid = p.bytes()
    p.end()
    if len(kid) != 32:
        raise Corrupt("kid")
    tbs = enc_head(4, 4) + enc_head(3, 10) + b"Signature1" + enc_bstr(prot) + \
        enc_bstr(b"") + enc_bstr(body)
    try:
        Ed25519PublicKey.from_public_bytes(kid).verify(sig, tbs)
    except InvalidSignature:
        raise Corrupt("signature")
    env = {"id": b2b256(buf), "author": kid}
    b = Dec(body)
    m = b.map()
    b.key(1)
    version = b.uint()
    if version > 2:
        raise Corrupt("FV_EVERSION")
    if version not in (1, 2) or m not in (8, 9):
        raise Corrupt("version or map size")
    env["version"] = version
    b.key(2)
    env["kind"] = kind = b.uint()
    if kind not in (1, 2, 3, 4, 5, 6):
        raise Corrupt("kind")
    env["genesis"] = m == 8
    if m == 9:
        b.key(3)
        env["record"] = b.bytes()
        if len(env["record"]) != 32:
            raise Corrupt("record")
    else:
        env["record"] = env["id"]
    b.key(4)
    parents = [b.bytes() for _ in range(b.array())]
    if len(parents) > 64 or any(len(x) != 32 for x in parents) or \
       any(parents[i] >= parents[i + 1] for i in range(len(parents) - 1)):
        raise Corrupt("parents")
    b.key(5)
    recips = []
    for _ in range(b.array()):
        if b.array() != 2:
            raise Corrupt("recipient")
        recips.append((b.bytes(), b.bytes()))
    if not 1 <= len(recips) <= 16 or \
       any(len(pk) != 32 or len(s) != 80 for pk, s in recips) or \
       any(recips[i][0] >= recips[i + 1][0] for i in range(len(recips) - 1)):
        raise Corrupt("recipients")
    b.key(6)
    nonce = b.bytes()
    b.key(7)
    ct = b.bytes()
    if len(nonce) != 24 or len(ct) < 16:
        raise Corrupt("nonce or ciphertext")
    if version == 2 and (len(ct) - 16 < PAD_FLOOR or padme(len(ct) - 16) != len(ct) - 16):
        raise Corrupt("format 2 plaintext is not a bucket")
    b.key(8)
    natt = b.array()
    if natt > 256:
        raise Corrupt("attachments")
    chunks = [[b.bytes() for _ in range(b.array())] for _ in range(natt)]
    if any(len(h) != 32 for c in chunks for h in c):
        raise Corrupt("chunk hash")
    b.key(9)
    commit = b.bytes()
    if len(commit) != 32:
        raise Corrupt("key commitment")
    b.end()
    if env["genesis"] != (len(parents) == 0) or \
       (kind != 1 and (env["genesis"] or natt)) or (kind >= 3 and len(parents) != 1) or \
       (kind >= 4 and parents[0] != env["record"]):
        raise Corrupt("graph rules")
    env.update(parents=parents, recipients=recips, nonce=nonce, ct=ct,
               chunks=chunks, commit=commit)
    return env


def open_raw(env, key):
    """FORMAT.md 5.5, "To open": the key must be the committed one (checked
    before any decryption), then XChaCha20-Poly1305 with empty AAD."""
    if key_commit(key) != env["commit"]:
        raise Corrupt("not the committed key")
    try:
        return xchacha_open(key, env["nonce"], env["ct"])
    except InvalidTag:
        raise Corrupt("ciphertext")


def open_with_key(env, key):
    """The payload: format 2's padding stripped and checked."""
    plain = open_raw(env, key)
    return unpad(plain) if env["version"] == 2 else plain


def label(s, maxlen):
    raw = s.encode()
    if not 1 <= len(raw) <= maxlen or any(c < 0x20 or c == 0x7f for c in raw):
        raise Corrupt("label")
    return s


def canon_key(s):
    raw = s.encode()
    return (len(raw), raw)


def decode_payload(p, version=1):
    d = Dec(p)
    if d.map() != 7:
        raise Corrupt("payload map")
    d.key("tags")
    tags = [label(d.text(), 256) for _ in range(d.array())]
    d.key("time")
    time = d.int()
    d.key("title")
    title = label(d.text(), 4096)
    d.key("fields")
    fields = []
    for _ in range(d.map()):
        k = label(d.text(), 256)
        v = d.text()
        if "\0" in v or len(v.encode()) > 65536:
            raise Corrupt("field value")
        fields.append((k, v))
    d.key("created")
    created = d.int()
    d.key("narrative")
    narrative = d.text()
    if len(narrative.encode()) > MAX_NARRATIVE_BYTES:
        raise Corrupt("narrative")
    d.key("attachments")
    atts = []
    for _ in range(d.array()):
        n = d.map()
        # format 2 adds "padded": 1 (FORMAT.md 8); format 1 has 4 keys
        if n != 4 and not (version == 2 and n == 5):
            raise Corrupt("attachment")
        d.key("key"); key = d.bytes()
        d.key("name"); name = label(d.text(), 255)
        d.key("size"); size = d.uint()
        d.key("chunk"); chunk = d.uint()
        if len(key) != 32 or not 1 <= chunk <= MAX_CHUNK_BYTES:
            raise Corrupt("attachment fields")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise Corrupt("attachment name is a path")
        att = {"key": key.hex(), "name": name, "size": size, "chunk": chunk}
        if n == 5:
            d.key("padded")
            if d.uint() != 1:
                raise Corrupt("padded is 1")
            att["padded"] = 1
        atts.append(att)
    d.end()
    for seq in ([t for t in tags], [k for k, _ in fields]):
        if any(canon_key(seq[i]) >= canon_key(seq[i + 1]) for i in range(len(seq) - 1)):
            raise Corrupt("order")
    if len({a["name"] for a in atts}) != len(atts) or len(tags) > 256 or \
       len(fields) > 256 or len(atts) > 256:
        raise Corrupt("limits")
    return {"tags": tags, "time": time, "title": title, "fields": dict(fields),
            "created": created, "narrative": narrative, "attachments": atts}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = sys.argv[1:] or [here, os.path.join(here, "v2")]
    total = 0
    for vdir in dirs:
        total += check_dir(vdir)
    print("check_vectors: %d checks passed in %d directories" % (total, len(dirs)))


def check_dir(vdir):
    V = json.load(open(os.path.join(vdir, "vectors.json"), encoding="utf-8"))
    read = lambda name: open(os.path.join(vdir, name), "rb").read()
    H = bytes.fromhex
    checks = 0

    def check(cond, what):
        nonlocal checks
        checks += 1
        if not cond:
            raise SystemExit("check_vectors: FAILED: " + what)

    # The key commitment's label.
    cj = V["key_commitment"]
    check(cj["label"].encode() == COMMIT_LABEL == H(cj["label_hex"]) and
          len(COMMIT_LABEL) == 28, "key commitment label")

    # Key file.
    kj = V["keyfile"]
    kf = read(kj["file"])
    # 192 bytes (two key slots), or 120 (slot 1 only) for vectors made
    # before the duress slot: slot 1 is at the same offsets in both.
    check(len(kf) in (120, 192) and kf.hex() == kj["hex"], "key file bytes")
    magic, ver, alg, ops, mem = struct.unpack_from("<8sIIQQ", kf)
    check(magic == b"FieldVlt" and ver == 1 and alg == 1, "key file header")
    salt, nonce, wrapped = kf[32:48], kf[48:72], kf[72:120]
    # Argon2id v1.3, one lane; the key file stores memory in bytes, as
    # libsodium's crypto_pwhash (and python3-nacl's kdf) take it.
    wk = argon2id.kdf(32, kj["passphrase"].encode(), salt,
                      opslimit=ops, memlimit=mem)
    check(wk.hex() == kj["wrapping_key"], "Argon2id wrapping key")
    vk = xchacha_open(wk, nonce, wrapped, kf[:48])
    check(vk.hex() == kj["vault_key"], "vault key")
    try:
        xchacha_open(wk, nonce, wrapped, kf[:47] + b"\0")
        check(False, "the header is authenticated")
    except InvalidTag:
        pass

    # Device keys.
    dj = V["device"]
    sub = kdf(vk, 1, b"fvdevkey")
    check(sub.hex() == dj["devkey_subkey"], "crypto_kdf subkey 1")
    blob = H(dj["device_keys"])
    sec = xchacha_open(sub, blob[:24], blob[24:], H(dj["sign_pk"]) + H(dj["box_pk"]))
    check(sec[:64].hex() == dj["sign_sk"] and sec[64:].hex() == dj["box_sk"], "device keys")
    # public_bytes(Raw, Raw): python3-cryptography 38 has no public_bytes_raw.
    check(X25519PrivateKey.from_private_bytes(sec[64:]).public_key().public_bytes(
          Encoding.Raw, PublicFormat.Raw) == H(dj["box_pk"]), "box key pair")

    keys = {H(dj["box_pk"]): H(dj["box_sk"]),
            H(V["organisation"]["box_pk"]): H(V["organisation"]["box_sk"])}

    # Envelopes.
    for name, ej in V["envelopes"].items():
        buf = read(ej["file"])
        env = parse_envelope(buf)
        check(env["id"].hex() == ej["id"], name + " id")
        check(env["record"].hex() == ej["record"], name + " record")
        check(env["author"].hex() == ej["author"] == dj["sign_pk"], name + " author")
        check(env["kind"] == ej["kind"] and env["genesis"] == ej["genesis"], name + " kind")
        check([p.hex() for p in env["parents"]] == ej["parents"], name + " parents")
        check([pk.hex() for pk, _ in env["recipients"]] == ej["recipients"], name + " recipients")
        check([[h.hex() for h in c] for c in env["chunks"]] == ej["chunks"], name + " chunks")
        check(env["commit"].hex() == ej["commit"], name + " commit")
        check(key_commit(H(ej["content_key"])) == env["commit"], name + " key commitment")
        for pk, sealed in env["recipients"]:
            ck = box_seal_open(sealed, pk, keys[pk])
            check(ck.hex() == ej["content_key"], name + " sealed key")
            check(key_commit(ck) == env["commit"], name + " sealed key is committed")
        check(env["version"] == ej.get("version", 1), name + " format version")
        plain = open_with_key(env, H(ej["content_key"]))
        check(plain.hex() == ej["payload_hex"], name + " payload bytes")
        if env["version"] == 2:
            raw = open_raw(env, H(ej["content_key"]))
            check(raw.hex() == ej["plaintext_hex"], name + " padded plaintext")
            # payload || 0x80 || zeros, to the payload's bucket
            check(len(raw) == env_padded_len(len(plain)) and
                  raw == plain + b"\x80" + b"\0" * (len(raw) - len(plain) - 1),
                  name + " padding rule")
            # and no other plaintext unpads to this payload: another
            # marker, a stray byte, a larger bucket, no marker. (The last
            # can be a valid padding of a shorter payload when the payload
            # ends in 0x80, as "attachments": [] does; never of this one.)
            for bad in (plain + b"\x01" + raw[len(plain) + 1:],
                        raw[:-1] + b"\x01",
                        raw + b"\0" * (padme(len(raw) + 1) - len(raw)),
                        plain + b"\0" * (len(raw) - len(plain))):
                try:
                    check(unpad(bad) != plain, name + ": bad padding accepted")
                except Corrupt:
                    checks += 1
        # Another key is refused by the commitment, before any decryption.
        try:
            open_with_key(env, b2b256(H(ej["content_key"])))
            check(False, name + ": another key opens")
        except Corrupt:
            checks += 1
        if env["kind"] in (2, 3):  # tombstone, key grant: {"time": t}
            d = Dec(plain)
            check(d.map() == 1, "tombstone map")
            d.key("time")
            t = d.int()
            d.end()
            check({"time": t} == ej["payload"], name + " tombstone")
        else:
            check(decode_payload(plain, env["version"]) == ej["payload"], name + " payload")
            check([len(c) for c in env["chunks"]] ==
                  [-(-a["size"] // a["chunk"]) for a in ej["payload"]["attachments"]],
                  name + " manifest")
        # Any one flipped bit is rejected.
        for i in range(0, len(buf), 7):
            bad = bytearray(buf)
            bad[i] ^= 1 << (i % 8)
            try:
                parse_envelope(bytes(bad))
                check(False, "%s: flip at %d parses" % (name, i))
            except Corrupt:
                checks += 1

    # The key grant opens the early record for the organisation (5.6).
    g, e = V["envelopes"]["grant"], V["envelopes"]["early"]
    genv, eenv = parse_envelope(read(g["file"])), parse_envelope(read(e["file"]))
    check(genv["parents"] == [eenv["id"]] and genv["record"] == eenv["record"] and
          genv["author"] == eenv["author"], "grant names its target")
    check(genv["commit"] == eenv["commit"], "the grant commits to its target's key")
    org_pk = H(V["organisation"]["box_pk"])
    check(org_pk not in [pk for pk, _ in eenv["recipients"]], "early is not for the org")
    k = box_seal_open(genv["recipients"][0][1], org_pk, keys[org_pk])
    check(open_with_key(eenv, k).hex() == e["payload_hex"],
          "the grant's key opens its target")

    # Attachment chunks. A padded attachment's last chunk holds its bytes
    # then zeros, to its bucket (FORMAT.md 8); "size" says where they end.
    for a in V["attachments"]:
        data = b""
        n = len(a["chunks"])
        for c in a["chunks"]:
            ct = read(c["file"])
            check(b2b256(ct).hex() == c["hash"], a["name"] + " chunk hash")
            nonce = struct.pack("<Q", c["index"]) + b"\0" * 16
            check(nonce.hex() == c["nonce"], "chunk nonce")
            pt = xchacha_open(H(a["key"]), nonce, ct)
            if c["index"] + 1 == n:
                last = a["size"] - (n - 1) * a["chunk"]
                want = chunk_padded_len(last, a["chunk"]) if a.get("padded") else last
                check(len(pt) == want, a["name"] + " last chunk's length")
                check(pt[last:] == b"\0" * (len(pt) - last), a["name"] + " zero padding")
                pt = pt[:last]
            else:
                check(len(pt) == a["chunk"], a["name"] + " full chunk")
            data += pt
        check(len(data) == a["size"], a["name"] + " size")
        check(b2b256(data).hex() == a["plaintext_blake2b256"], a["name"] + " plaintext")
        if "plaintext_hex" in a:
            check(data.hex() == a["plaintext_hex"], a["name"] + " plaintext hex")
    print("check_vectors: %s: %d checks passed" % (vdir, checks))
    return checks


if __name__ == "__main__":
    main()
