#!/usr/bin/env python3
"""Independent verifier for byok's audit log: checkpoints, proofs, receipts.

Written from the public specifications only, independently of byok's Rust code:

* RFC 6962 §2.1 / RFC 9162 §2.1 - Merkle tree hashing (leaf = SHA-256(0x00||d),
  node = SHA-256(0x01||l||r), empty root = SHA-256("")), inclusion proof
  verification (RFC 9162 §2.1.3.2) and consistency proof verification
  (RFC 9162 §2.1.4.2). The self-test generates proofs with the recursive
  PATH / PROOF definitions of RFC 6962 §2.1.1 and §2.1.2.
* C2SP signed-note (https://c2sp.org/signed-note) - note text, em-dash
  signature lines, Ed25519 key IDs, verifier key strings.
* C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) - origin, tree size,
  root hash, extension lines.
* C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature) - a witness's
  Ed25519 cosignature (type 0x04) over "cosignature/v1\ntime <T>\n" and the
  checkpoint text (`checkpoint --witness-key`).

byok specifics: the origin is `<key name>/audit/<32 lowercase hex org id>`,
and the leaf for audit row `seq` (leaf index seq-1) is the UTF-8 of
json.dumps({"at", "event", "seq"}, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).

Usage: audit_verify.py {checkpoint,inclusion,consistency,log,receipt,self-test}
Prints one JSON object on success (exit 0); a one-line reason on stderr on
failure (exit 1). `log` failures also print {"ok":false,...} on stdout.
Requires Python 3.11 and the `cryptography` package.
"""
import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey, Ed25519PublicKey)

RECEIPT_FORMAT = "byok-receipt/v1"
MAX_SIGNATURES = 100  # signed-note: verifiers must accept at least 16


class VerifyError(Exception):
    def __init__(self, reason, first_bad_seq=None):
        super().__init__(reason)
        self.first_bad_seq = first_bad_seq


def fail(reason, first_bad_seq=None):
    raise VerifyError(reason, first_bad_seq)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def b64decode(s, what):
    if not isinstance(s, str):
        fail(f"{what}: expected a base64 string")
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        fail(f"{what}: invalid base64")


def b64(b):
    return base64.b64encode(b).decode("ascii")


# ---------------------------------------------------------------- RFC 6962 tree

def sha256(data):
    return hashlib.sha256(data).digest()


EMPTY_ROOT = sha256(b"")


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def split_point(n):
    """Largest power of two strictly less than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(hashes, lo=0, hi=None):
    """RFC 6962 MTH over the leaf hashes hashes[lo:hi]."""
    hi = len(hashes) if hi is None else hi
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[lo]
    k = split_point(n)
    return node_hash(mth(hashes, lo, lo + k), mth(hashes, lo + k, hi))


def rfc6962_path(m, hashes):
    """PATH(m, D[n]) of RFC 6962 §2.1.1 (audit path, leaf to root)."""
    n = len(hashes)
    if n <= 1:
        return []
    k = split_point(n)
    if m < k:
        return rfc6962_path(m, hashes[:k]) + [mth(hashes[k:])]
    return rfc6962_path(m - k, hashes[k:]) + [mth(hashes[:k])]


def rfc6962_proof(m, hashes, b=True):
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 6962 §2.1.2."""
    n = len(hashes)
    if m == n:
        return [] if b else [mth(hashes)]
    k = split_point(n)
    if m <= k:
        return rfc6962_proof(m, hashes[:k], b) + [mth(hashes[k:])]
    return rfc6962_proof(m - k, hashes[k:], False) + [mth(hashes[:k])]


def _shift_until_odd_or_zero(fn, sn):
    while fn != 0 and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 §2.1.4.2, plus the trivial cases first == 0 / first == second."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


# --------------------------------------------------- signed notes / checkpoints

def ed25519_key_id(name, pub):
    return int.from_bytes(sha256(name.encode() + b"\n\x01" + pub)[:4], "big")


def valid_key_name(name):
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


class VerifierKey:
    def __init__(self, text):
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            fail("verifier key: expected <name>+<hex key id>+<base64 key>")
        self.name, hex_id, key_b64 = parts
        if not valid_key_name(self.name):
            fail("verifier key: invalid key name")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
            fail("verifier key: key id must be 8 hex digits")
        raw = b64decode(key_b64, "verifier key")
        if len(raw) != 33 or raw[0] != 0x01:
            fail("verifier key: not an Ed25519 (type 0x01) key")
        self.key_id = int(hex_id, 16)
        if ed25519_key_id(self.name, raw[1:]) != self.key_id:
            fail("verifier key: key id does not match the name and public key")
        self.pub = Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(data, key):
    """Verify a signed note; return (text, other signers, their raw signatures)."""
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        fail("note is not valid UTF-8")
    if any(c < " " and c != "\n" for c in note):
        fail("note contains ASCII control characters")
    split = note.rfind("\n\n")
    if split < 0:
        fail("note has no blank line before the signatures")
    text, block = note[:split + 1], note[split + 2:]
    if not block.endswith("\n"):
        fail("note signature block does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        fail("note has too many signatures")
    verified, others, raw = False, [], []
    for line in lines:
        fields = line[2:].split(" ") if line.startswith("\u2014 ") else []
        if len(fields) != 2 or not valid_key_name(fields[0]):
            fail(f"malformed note signature line {line!r}")
        name, sig = fields[0], b64decode(fields[1], "note signature")
        if len(sig) < 5:
            fail("note signature too short")
        kid = int.from_bytes(sig[:4], "big")
        if name != key.name or kid != key.key_id:
            others.append({"name": name, "key_id": f"{kid:08x}"})
            raw.append((name, kid, sig))
            continue
        try:
            if len(sig) != 68:
                raise InvalidSignature
            key.pub.verify(sig[4:], text.encode("utf-8"))
        except InvalidSignature:
            fail(f"note signature by {name} does not verify")
        verified = True
    if not verified:
        fail(f"note has no signature by verifier key {key.name}")
    return text, others, raw


class WitnessKey:
    """A witness's cosignature key: <name>+<hex id>+base64(0x04 || Ed25519 public key)."""

    def __init__(self, text):
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            fail("witness key: expected <name>+<hex key id>+<base64 key>")
        self.name, hex_id, key_b64 = parts
        if not valid_key_name(self.name):
            fail("witness key: invalid key name")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
            fail("witness key: key id must be 8 hex digits")
        raw = b64decode(key_b64, "witness key")
        if len(raw) != 33 or raw[0] != 0x04:
            fail("witness key: not a cosignature/v1 (type 0x04) Ed25519 key")
        self.key_id = int(hex_id, 16)
        if int.from_bytes(sha256(self.name.encode() + b"\n" + raw)[:4], "big") != self.key_id:
            fail("witness key: key id does not match the name and public key")
        self.pub = Ed25519PublicKey.from_public_bytes(raw[1:])

    def cosigned(self, text, sigs):
        """The time of this witness's cosignature among `sigs`, or None if it has none. A line
        of its name and key id that does not verify fails: it was forged or altered."""
        for name, kid, sig in sigs:
            if name != self.name or kid != self.key_id:
                continue
            if len(sig) != 4 + 8 + 64:
                fail(f"cosignature by {name}: not a time and an Ed25519 signature")
            t = int.from_bytes(sig[4:12], "big")
            try:
                self.pub.verify(sig[12:], f"cosignature/v1\ntime {t}\n{text}".encode("utf-8"))
            except InvalidSignature:
                fail(f"cosignature by {name} does not verify")
            return t
        return None


def parse_checkpoint(data, key):
    text, others, raw = open_note(data, key)
    lines = text[:-1].split("\n")
    if len(lines) < 3 or "" in lines:
        fail("checkpoint text must be at least three non-empty lines")
    origin, size_s, root_s = lines[:3]
    m = re.fullmatch(re.escape(key.name) + r"/audit/([0-9a-f]{32})", origin)
    if not m:
        fail(f"checkpoint origin {origin!r} is not {key.name}/audit/<32 hex>")
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_s) or int(size_s) >= 2**64:
        fail(f"checkpoint tree size {size_s[:40]!r} is not a canonical decimal below 2^64")
    root = b64decode(root_s, "checkpoint root hash")
    if len(root) != 32:
        fail("checkpoint root hash is not 32 bytes")
    size = int(size_s)
    if size == 0 and root != EMPTY_ROOT:
        fail("empty checkpoint does not carry the empty-tree root")
    return {"org": m.group(1), "size": size, "root": root, "others": others,
            "text": text, "sigs": raw}


# ------------------------------------------------------------ JSON inputs

def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")


def _no_dup_keys(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            fail(f"duplicate JSON key {k!r}")
        obj[k] = v
    return obj


def _bad_constant(c):
    fail(f"non-standard JSON constant {c}")


def load_json(path):
    try:
        return json.loads(read_bytes(path).decode("utf-8"),
                          object_pairs_hook=_no_dup_keys, parse_constant=_bad_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{path}: invalid JSON: {e}")
    except ValueError as e:
        # Python refuses integers of over 4300 digits when it parses them.
        fail(f"{path}: a number too large to be one byok writes: {str(e)[:80]}")
    except RecursionError:
        fail(f"{path}: nested deeper than any byok document")


def row_leaf(row):
    """Leaf bytes of an audit row (validates seq / at / event)."""
    if not isinstance(row, dict):
        fail("row is not a JSON object")
    seq, at, event = row.get("seq"), row.get("at"), row.get("event")
    if not is_int(seq) or seq < 1:
        fail("row seq must be an integer >= 1")
    if not is_int(at):
        fail(f"row {seq}: at must be an integer")
    if not isinstance(event, dict):
        fail(f"row {seq}: event must be an object")
    text = json.dumps({"at": at, "event": event, "seq": seq}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        fail(f"row {seq}: contains an unpaired surrogate")


def parse_hashes(obj, what):
    hashes = obj.get("hashes")
    if not isinstance(hashes, list):
        fail(f"{what}: hashes must be a list")
    out = [b64decode(h, f"{what} hash") for h in hashes]
    if any(len(h) != 32 for h in out):
        fail(f"{what}: every hash must be 32 bytes")
    return out


def parse_inclusion(obj):
    if not isinstance(obj, dict) or not is_int(obj.get("index")) or not is_int(obj.get("size")):
        fail("inclusion proof: needs integer index and size")
    return obj["index"], obj["size"], parse_hashes(obj, "inclusion proof")


def check_inclusion(cp, proof, row):
    index, size, hashes = proof
    leaf = leaf_hash(row_leaf(row))
    if index != row["seq"] - 1:
        fail(f"inclusion proof index {index} does not match entry seq {row['seq']}")
    if size != cp["size"]:
        fail(f"inclusion proof size {size} != checkpoint size {cp['size']}")
    if not verify_inclusion(index, size, leaf, hashes, cp["root"]):
        fail("inclusion proof does not verify against the checkpoint root")
    return index


def check_log(cp, rows):
    if not isinstance(rows, list):
        fail("rows file must hold a JSON array")
    hashes = []
    for i, row in enumerate(rows):
        seq = row.get("seq") if isinstance(row, dict) else None
        if not is_int(seq) or seq != i + 1:
            fail(f"gap or disorder at seq {i + 1}: found seq {seq!r}", i + 1)
        try:
            hashes.append(leaf_hash(row_leaf(row)))
        except VerifyError as e:
            fail(f"bad row at seq {seq}: {e}", seq)
    size = cp["size"]
    if len(rows) < size:
        fail(f"log is shorter than the checkpoint: first missing seq {len(rows) + 1}",
             len(rows) + 1)
    if mth(hashes, 0, size) == cp["root"]:
        return
    for i in range(size):
        if "leaf_hash" in rows[i]:
            stored = rows[i]["leaf_hash"]
            try:
                same = b64decode(stored, "leaf_hash") == hashes[i]
            except VerifyError:
                same = False
            if not same:
                fail(f"root mismatch: seq {i + 1} does not hash to its stored leaf_hash", i + 1)
    fail("root mismatch")


def check_receipt(obj, key, org=None):
    """A receipt signed by `key`; of org `org` (32 hex digits) when given: one log key signs
    every org's receipts, so a valid receipt of another org says nothing about yours."""
    if not isinstance(obj, dict) or obj.get("format") != RECEIPT_FORMAT:
        fail(f"receipt format is not {RECEIPT_FORMAT}")
    if not isinstance(obj.get("checkpoint"), str):
        fail("receipt checkpoint must be a string")
    cp = parse_checkpoint(obj["checkpoint"].encode("utf-8"), key)
    if org is not None and cp["org"] != org.lower():
        fail(f"the receipt is for org {cp['org']}, not {org}")
    entry = obj.get("entry")
    check_inclusion(cp, parse_inclusion(obj.get("inclusion")), entry)
    event = entry["event"]
    if event.get("type") != "withdrawal_receipt":
        fail("receipt event type is not withdrawal_receipt")
    if not isinstance(event.get("action"), str):
        fail("receipt event has no string action")
    if not is_int(event.get("access_ends_at")):
        fail("receipt event has no integer access_ends_at")
    return {"ok": True, "org": cp["org"], "seq": entry["seq"], "action": event["action"],
            "access_ends_at": event["access_ends_at"], "checkpoint_size": cp["size"]}


# ------------------------------------------------------------ subcommands

def load_key(arg):
    if arg.startswith("@"):
        return VerifierKey(read_bytes(arg[1:]).decode("utf-8", "replace"))
    return VerifierKey(arg)


def load_witness(arg):
    if arg.startswith("@"):
        return WitnessKey(read_bytes(arg[1:]).decode("utf-8", "replace"))
    return WitnessKey(arg)


def check_cosignatures(cp, witnesses, minimum):
    """[{name, key_id, time}] for each witness that cosigned `cp`; fails below `minimum`."""
    names = [w.name for w in witnesses]
    if len(set(names)) != len(names):
        fail("a witness is named twice: one key per witness")
    if minimum is None:
        minimum = len(witnesses)
    if not 1 <= minimum <= len(witnesses):
        fail(f"--min-cosignatures {minimum} is not between 1 and the {len(witnesses)} witness key(s)")
    found = []
    for w in witnesses:
        t = w.cosigned(cp["text"], cp["sigs"])
        if t is not None:
            found.append({"name": w.name, "key_id": f"{w.key_id:08x}", "time": t})
    if len(found) < minimum:
        fail(f"{len(found)} of the {minimum} witness(es) required cosigned this checkpoint")
    return found


def cmd_checkpoint(a):
    cp = parse_checkpoint(read_bytes(a.note), load_key(a.verifier_key))
    out = {"org": cp["org"], "size": cp["size"], "root": b64(cp["root"]),
           "other_signatures": cp["others"]}
    if a.witness_key:
        out["cosigned_by"] = check_cosignatures(
            cp, [load_witness(k) for k in a.witness_key], a.min_cosignatures)
    elif a.min_cosignatures is not None:
        fail("--min-cosignatures needs --witness-key")
    return out


def cmd_inclusion(a):
    cp = parse_checkpoint(read_bytes(a.checkpoint), load_key(a.verifier_key))
    index = check_inclusion(cp, parse_inclusion(load_json(a.proof)), load_json(a.entry))
    return {"ok": True, "index": index}


def cmd_consistency(a):
    key = load_key(a.verifier_key)
    old = parse_checkpoint(read_bytes(a.old), key)
    new = parse_checkpoint(read_bytes(a.new), key)
    proof = load_json(a.proof)
    if not isinstance(proof, dict) or not is_int(proof.get("from")) or not is_int(proof.get("to")):
        fail("consistency proof: needs integer from and to")
    if (proof["from"], proof["to"]) != (old["size"], new["size"]):
        fail(f"consistency proof is {proof['from']}->{proof['to']}, "
             f"checkpoints are {old['size']}->{new['size']}")
    if old["org"] != new["org"]:
        fail("checkpoints are for different orgs")
    hashes = parse_hashes(proof, "consistency proof")
    if not verify_consistency(old["size"], new["size"], old["root"], new["root"], hashes):
        fail("consistency proof does not verify")
    return {"ok": True}


def cmd_log(a):
    cp = parse_checkpoint(read_bytes(a.checkpoint), load_key(a.verifier_key))
    rows = load_json(a.rows)
    check_log(cp, rows)
    return {"ok": True, "size": cp["size"], "rows": len(rows)}


def cmd_receipt(a):
    return check_receipt(load_json(a.file), load_key(a.verifier_key), a.org)


# ------------------------------------------------------------ self-test

def sign_note(text, name, priv, pub):
    sig = ed25519_key_id(name, pub).to_bytes(4, "big") + priv.sign(text.encode())
    return f"{text}\n\u2014 {name} {b64(sig)}\n"


def expect_fail(fn, *args):
    try:
        fn(*args)
    except VerifyError:
        return
    raise AssertionError(f"{fn.__name__} accepted bad input")


def cmd_self_test(_a):
    assert b64(leaf_hash(b"")) == "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="
    assert b64(EMPTY_ROOT) == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    # Key-id known answer: the Go checksum database's published verifier key.
    VerifierKey("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
    flip = lambda h: bytes([h[0] ^ 1]) + h[1:]
    n_inc = n_con = 0
    for n in range(1, 41):
        leaves = [leaf_hash(b"leaf %d" % i) for i in range(n)]
        root = mth(leaves)
        for i in range(n):
            p = rfc6962_path(i, leaves)
            assert verify_inclusion(i, n, leaves[i], p, root), (n, i)
            assert not verify_inclusion(i, n, leaves[i], p, flip(root))
            assert not verify_inclusion(i, n, flip(leaves[i]), p, root)
            assert not verify_inclusion(i, n, leaves[i], p + [root], root)
            assert not p or not verify_inclusion(i, n, leaves[i], p[:-1], root)
            for j in range(len(p)):
                assert not verify_inclusion(i, n, leaves[i], p[:j] + [flip(p[j])] + p[j + 1:], root)
            n_inc += 1
        for m in range(0, n + 1):
            old = mth(leaves[:m])
            p = rfc6962_proof(m, leaves) if 0 < m < n else []
            assert verify_consistency(m, n, old, root, p), (m, n)
            assert not verify_consistency(m, n, flip(old), root, p)
            assert m == 0 or not verify_consistency(m, n, old, flip(root), p)
            assert not verify_consistency(m, n, old, root, p + [root])
            assert not p or not verify_consistency(m, n, old, root, p[:-1])
            for j in range(len(p)):
                assert not verify_consistency(m, n, old, root, p[:j] + [flip(p[j])] + p[j + 1:])
            n_con += 1

    # Signed note + checkpoint round trip with fresh keys, and a receipt.
    name, org = "byok.example/log", "0123456789abcdef0123456789abcdef"
    priv = Ed25519PrivateKey.generate()
    pub = priv.public_key().public_bytes_raw()
    key_b64 = b64(b"\x01" + pub)
    key = VerifierKey(f"{name}+{ed25519_key_id(name, pub):08x}+{key_b64}")
    witness = Ed25519PrivateKey.generate()
    wpub = witness.public_key().public_bytes_raw()
    rows = [{"seq": s, "at": 1700000000000 + s, "event": {"type": "t", "n": s, "ü": "✓"}}
            for s in range(1, 8)]
    rows[4]["event"] = {"type": "withdrawal_receipt", "action": "revoke", "access_ends_at": 5}
    leaves = [leaf_hash(row_leaf(r)) for r in rows]
    text = f"{name}/audit/{org}\n{len(rows)}\n{b64(mth(leaves))}\n"
    note = sign_note(text, name, priv, pub)
    note += sign_note(text, "witness.example", witness, wpub).split("\n\n")[1]
    cp = parse_checkpoint(note.encode(), key)
    assert cp["org"] == org and cp["size"] == 7 and cp["others"][0]["name"] == "witness.example"
    # A witness's cosignature (C2SP tlog-cosignature): found, checked, counted.
    wname = "witness.example/w2"
    wraw = b"\x04" + wpub
    wkid = int.from_bytes(sha256(wname.encode() + b"\n" + wraw)[:4], "big")
    wkey = WitnessKey(f"{wname}+{wkid:08x}+{b64(wraw)}")
    t = 1764500000
    csig = witness.sign(f"cosignature/v1\ntime {t}\n{text}".encode())
    cosigned = note + f"\u2014 {wname} {b64(wkid.to_bytes(4, 'big') + t.to_bytes(8, 'big') + csig)}\n"
    ccp = parse_checkpoint(cosigned.encode(), key)
    assert check_cosignatures(ccp, [wkey], None) == [{"name": wname, "key_id": f"{wkid:08x}", "time": t}]
    expect_fail(check_cosignatures, cp, [wkey], None)  # no line of it
    oraw = b"\x04" + Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    okid = int.from_bytes(sha256(b"w3\n" + oraw)[:4], "big")
    okey = WitnessKey(f"w3+{okid:08x}+{b64(oraw)}")
    assert check_cosignatures(ccp, [wkey, okey], 1)[0]["name"] == wname
    expect_fail(check_cosignatures, ccp, [wkey, okey], None)
    retimed = cosigned[:cosigned.rindex(" ") + 1] + b64(
        wkid.to_bytes(4, "big") + (t + 1).to_bytes(8, "big") + csig) + "\n"
    expect_fail(check_cosignatures, parse_checkpoint(retimed.encode(), key), [wkey], None)
    expect_fail(WitnessKey, f"{name}+{ed25519_key_id(name, pub):08x}+{key_b64}")
    expect_fail(parse_checkpoint, note.replace("\n7\n", "\n8\n").encode(), key)
    expect_fail(parse_checkpoint, note.split("\u2014 " + name)[0].encode(), key)
    expect_fail(parse_checkpoint, sign_note(text, name, witness, pub).encode(), key)
    expect_fail(VerifierKey, f"{name}+00000000+{key_b64}")
    # Hostile inputs are refused, not crashed on: a 5000-digit size, a huge number and deep
    # nesting in a JSON file.
    huge = text.replace("\n7\n", "\n" + "9" * 5000 + "\n")
    expect_fail(parse_checkpoint, sign_note(huge, name, priv, pub).encode(), key)
    import tempfile
    for hostile in ('{"seq": ' + "9" * 5000 + "}", "[" * 100000 + "]" * 100000):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(hostile)
        try:
            expect_fail(load_json, f.name)
        finally:
            os.unlink(f.name)
    check_log(cp, rows + [{"seq": 8, "at": 1, "event": {}}])
    bad = [dict(r) for r in rows]
    bad[2]["event"] = {"type": "tampered"}
    for r, h in zip(bad, leaves):
        r["leaf_hash"] = b64(h)
    for rs, want in ((rows[:5], 6), (rows[:2] + rows[3:], 3), (bad, 3)):
        try:
            check_log(cp, rs)
            raise AssertionError("check_log accepted a bad log")
        except VerifyError as e:
            assert e.first_bad_seq == want, (str(e), want)
    receipt = {"format": RECEIPT_FORMAT, "entry": rows[4], "checkpoint": note,
               "inclusion": {"index": 4, "size": 7,
                             "hashes": [b64(h) for h in rfc6962_path(4, leaves)]}}
    assert check_receipt(receipt, key)["action"] == "revoke"
    assert check_receipt(receipt, key, org=org.upper())["ok"]
    expect_fail(check_receipt, receipt, key, "f" * 32)
    expect_fail(check_receipt, dict(receipt, entry=dict(rows[4], at=0)), key)
    path3 = [b64(h) for h in rfc6962_path(3, leaves)]
    expect_fail(check_receipt, dict(receipt, entry=rows[3], inclusion=dict(
        receipt["inclusion"], index=3, hashes=path3)), key)
    return {"ok": True, "trees": 40, "inclusion_proofs": n_inc, "consistency_proofs": n_con}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def command(name, func, *opts):
        p = sub.add_parser(name)
        if name not in ("self-test",):
            p.add_argument("--verifier-key", required=True,
                           help="<name>+<hex id>+<base64 key>, or @FILE")
        for opt in opts:
            if opt.startswith("--"):
                p.add_argument(opt, required=True, metavar="FILE")
            else:
                p.add_argument(opt, metavar="FILE")
        p.set_defaults(func=func)
        return p

    checkpoint = command("checkpoint", cmd_checkpoint, "--note")
    checkpoint.add_argument("--witness-key", action="append", metavar="KEY",
                            help="a witness's cosignature key (<name>+<hex id>+<base64>, or "
                                 "@FILE) whose cosignature the note must carry; repeatable")
    checkpoint.add_argument("--min-cosignatures", type=int, metavar="N",
                            help="how many of the witnesses must have cosigned (default: all)")
    command("inclusion", cmd_inclusion, "--checkpoint", "--proof", "--entry")
    command("consistency", cmd_consistency, "--old", "--new", "--proof")
    command("log", cmd_log, "--checkpoint", "--rows")
    receipt = command("receipt", cmd_receipt, "file")
    receipt.add_argument("--org", metavar="ORG",
                         help="the org the receipt must be for (32 hex digits): a receipt of "
                              "another org verifies too, and says nothing about yours")
    command("self-test", cmd_self_test)
    args = ap.parse_args(argv)
    try:
        out = args.func(args)
    except VerifyError as e:
        reason = " ".join(str(e).split())
        if args.cmd == "log":
            print(json.dumps({"ok": False, "first_bad_seq": e.first_bad_seq, "reason": reason},
                             ensure_ascii=False))
        print(f"{args.cmd}: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
