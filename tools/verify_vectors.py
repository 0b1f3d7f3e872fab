#!/usr/bin/env python3
"""Checks vectors/*.json against an independent reader of docs/format.md.

Written from the spec with Python's `cryptography` (HKDF-SHA256, AES-256-GCM), sharing no code
with the Rust crate: if the two disagree on one byte, or on the class of one error, the spec or
the code is wrong.

For every `ok` vector: decrypt and compare with the plaintext and the intermediate values, then
re-encrypt with the recorded random bytes and compare with the input (armored again if the input
was armor). For every failing vector: it must be refused here too, with the class it names, by
following the order of checks of docs/format.md, section 8.

    python tools/verify_vectors.py vectors                    check the vectors
    python tools/verify_vectors.py --mutate sort vectors      run a deliberately broken reader
    python tools/verify_vectors.py --mutants vectors          prove every broken reader fails

The mutants are readers with one defect each (see MUTANTS). `--mutants` passes only if the
correct reader passes and every mutant fails some vector: the vectors must be able to tell a
reader that skips the commitment, the context sort or the armor from a correct one.
"""

import argparse
import base64
import hashlib
import hmac
import json
import re
import struct
import sys
import unicodedata
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

MAGIC = b"BYOK"
HEADER_LEN = 92
INFO = slice(6, 60)
TAG = 16
MAX_FRAMES = 1 << 32
EXTRACT_SALT = b"byok/v1/suite1/scope-key"
ARMOR_PREFIX = "byok:v1:"
MODES = {"decrypt": 1, "stream_decrypt": 2, "unwrap_data_key": 3}
CLASSES = {"format", "unsupported", "wrong_key", "decrypt", "misuse"}
FIELDS = {
    "name", "comment", "operation", "key", "scope_id", "key_version", "context",
    "context_pairs", "ciphertext", "armor", "rng", "frame_log2", "plaintext", "plaintext_len",
    "plaintext_sha256", "prk", "message_key", "context_encoding", "expect",
}

# One defect each. A correct vector set makes every one of them fail.
MUTANTS = {
    "commitment": "never compares the key commitment (trusts the GCM tag alone)",
    "sort": "encodes the context pairs in the order given, unsorted",
    "utf16": "sorts context keys by UTF-16 code units (JavaScript's default sort)",
    "nfc": "normalises context keys and values to NFC before encoding",
    "armor": "has no armor support: refuses every text input as format",
    "truncation": "calls any input shorter than a header truncated, whatever its first bytes say",
}


class Refused(Exception):
    """The input is refused, with the class a reader reports."""

    def __init__(self, cls: str, why: str):
        assert cls in CLASSES, cls
        super().__init__(f"{cls}: {why}")
        self.cls = cls


def prk_of(key: bytes) -> bytes:
    """HKDF-Extract (RFC 5869): HMAC-SHA256 keyed with the salt, over the scope key."""
    return hmac.new(EXTRACT_SALT, key, hashlib.sha256).digest()


def derive(key: bytes, info: bytes) -> tuple[bytes, bytes]:
    """(message key, commitment) = HKDF-Expand(PRK, info, 64) split in two."""
    okm = HKDFExpand(hashes.SHA256(), 64, info).derive(prk_of(key))
    return okm[:32], okm[32:]


def nonce(index: int, last: bool) -> bytes:
    return b"\0\0\0" + struct.pack(">Q", index) + (b"\x01" if last else b"\x00")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Reader:
    """A reader of docs/format.md, optionally with one defect (a key of MUTANTS)."""

    def __init__(self, mutant: str | None = None):
        assert mutant is None or mutant in MUTANTS, mutant
        self.mutant = mutant

    # -- section 5: the caller's context, checked before the input is looked at ------------
    def context_encoding(self, pairs: list[tuple[str, str]]) -> bytes:
        if self.mutant == "nfc":
            pairs = [(unicodedata.normalize("NFC", k), unicodedata.normalize("NFC", v)) for k, v in pairs]
        keys = [k.encode() for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Refused("misuse", "the context repeats a key")
        if self.mutant == "sort":
            ordered = pairs
        elif self.mutant == "utf16":
            ordered = sorted(pairs, key=lambda p: p[0].encode("utf-16-be"))
        else:
            ordered = sorted(pairs, key=lambda p: p[0].encode())
        if len(ordered) >= 1 << 32:
            raise Refused("misuse", "more than 2^32 - 1 pairs")
        out = struct.pack(">I", len(ordered))
        for k, v in ordered:
            for s in (k.encode(), v.encode()):
                if len(s) >= 1 << 32:
                    raise Refused("misuse", "a key or value of 2^32 bytes or more")
                out += struct.pack(">I", len(s)) + s
        return out

    # -- section 7: armor, undone before the binary reader runs -----------------------------
    def dearmor(self, text: str) -> bytes:
        if self.mutant == "armor":
            raise Refused("format", "this reader takes binary input only")
        if not text.startswith(ARMOR_PREFIX):
            raise Refused("format", "armor: no byok:v1: prefix")
        payload = text[len(ARMOR_PREFIX):]
        if not re.fullmatch(r"[A-Za-z0-9_-]*", payload) or len(payload) % 4 == 1:
            raise Refused("format", "armor: not unpadded base64url")
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        if b64url(data) != payload:
            raise Refused("format", "armor: unused bits of the last character are not zero")
        if len(data) > 4 and data[4] != 1:
            raise Refused("format", "armor: label v1, header version differs")
        return data

    # -- section 2: the header, field by field as soon as each is present -------------------
    def parse_header(self, data: bytes) -> tuple[int, int]:
        if self.mutant == "truncation" and len(data) < HEADER_LEN:
            raise Refused("format", "header truncated")
        if len(data) < 4:
            raise Refused("format", "truncated magic" if MAGIC.startswith(data) else "bad magic")
        if data[:4] != MAGIC:
            raise Refused("format", "bad magic")
        for offset, name in ((4, "version"), (5, "suite")):
            if len(data) <= offset:
                raise Refused("format", f"truncated before {name}")
            if data[offset] != 1:
                raise Refused("unsupported", f"{name} {data[offset]}")
        if len(data) <= 6:
            raise Refused("format", "truncated before mode")
        mode = data[6]
        if mode not in (1, 2, 3):
            raise Refused("unsupported", f"mode {mode}")
        if len(data) <= 7:
            raise Refused("format", "truncated before frame_log2")
        frame_log2 = data[7]
        if (mode == 2 and not 8 <= frame_log2 <= 24) or (mode != 2 and frame_log2 != 0):
            raise Refused("format", f"frame_log2 {frame_log2} in mode {mode}")
        if len(data) < HEADER_LEN:
            raise Refused("format", "header truncated")
        return mode, frame_log2

    # -- section 8: the whole reader, in order ----------------------------------------------
    def open(self, v: dict, encoding: bytes, data: bytes) -> bytes:
        mode, frame_log2 = self.parse_header(data)
        if mode != MODES[v["operation"]]:
            raise Refused("format", f"mode {mode} given to {v['operation']}")
        if data[8:24] != bytes.fromhex(v["scope_id"]) or struct.unpack(">I", data[24:28])[0] != v["key_version"]:
            raise Refused("wrong_key", "the header names another key")
        header, body = data[:HEADER_LEN], data[HEADER_LEN:]
        key, commitment = derive(bytes.fromhex(v["key"]), header[INFO])
        if self.mutant != "commitment" and not hmac.compare_digest(commitment, header[60:]):
            raise Refused("decrypt", "commitment")
        aes = AESGCM(key)
        aad = header + encoding

        def open_unit(index: int, last: bool, sealed: bytes) -> bytes:
            try:
                return aes.decrypt(nonce(index, last), sealed, aad)
            except InvalidTag:
                raise Refused("decrypt", f"tag of unit {index}") from None

        if mode == 1:
            if len(body) < TAG:
                raise Refused("format", "body shorter than a tag")
            return open_unit(0, True, body)
        if mode == 3:
            if len(body) != 32 + TAG:
                raise Refused("format", "a wrapped key is 140 bytes")
            return open_unit(0, True, body)
        # Framed (section 6): a frame is the last only when no bytes follow it.
        unit = (1 << frame_log2) + TAG
        out, i, pos = b"", 0, 0
        while len(body) - pos > unit:
            if i >= MAX_FRAMES:
                raise Refused("format", "more than 2^32 frames")
            out += open_unit(i, False, body[pos:pos + unit])
            pos, i = pos + unit, i + 1
        last = body[pos:]
        if len(last) < TAG:
            raise Refused("format", "final frame shorter than a tag")
        if i >= MAX_FRAMES:
            raise Refused("format", "more than 2^32 frames")
        if len(last) == TAG and i > 0:
            raise Refused("format", "empty final frame after full frames")
        return out + open_unit(i, True, last)

    def seal(self, v: dict, encoding: bytes, plaintext: bytes) -> bytes:
        """Re-encrypts with the recorded random bytes (salt, or data key then salt)."""
        rng = bytes.fromhex(v["rng"])
        mode = MODES[v["operation"]]
        if mode == 3:
            plaintext, salt, drawn = rng[:32], rng[32:64], 64
        else:
            salt, drawn = rng[:32], 32
        if len(rng) != drawn:
            raise ValueError(f"rng holds {len(rng)} bytes, the writer draws {drawn}")
        frame_log2 = v["frame_log2"] if mode == 2 else 0
        info = bytes([mode, frame_log2]) + bytes.fromhex(v["scope_id"]) + struct.pack(">I", v["key_version"]) + salt
        key, commitment = derive(bytes.fromhex(v["key"]), info)
        header = MAGIC + b"\x01\x01" + info + commitment
        aes = AESGCM(key)
        aad = header + encoding
        if mode != 2:
            return header + aes.encrypt(nonce(0, True), plaintext, aad)
        f = 1 << frame_log2
        chunks = [plaintext[i:i + f] for i in range(0, len(plaintext), f)] or [b""]
        return header + b"".join(aes.encrypt(nonce(i, i == len(chunks) - 1), c, aad) for i, c in enumerate(chunks))


def expected_plaintext(v: dict) -> bytes:
    if "plaintext" in v:
        return bytes.fromhex(v["plaintext"])
    return bytes(i % 251 for i in range(v["plaintext_len"]))


def check(reader: Reader, v: dict) -> str | None:
    """None if the vector holds for this reader, else why not."""
    unknown = set(v) - FIELDS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if ("ciphertext" in v) == ("armor" in v):
        return "needs exactly one of ciphertext, armor"
    if "context" in v and "context_pairs" in v:
        return "needs at most one of context, context_pairs"
    pairs = [tuple(p) for p in v["context_pairs"]] if "context_pairs" in v else list(v.get("context", {}).items())
    try:
        encoding = reader.context_encoding(pairs)
        data = reader.dearmor(v["armor"]) if "armor" in v else bytes.fromhex(v["ciphertext"])
        got = reader.open(v, encoding, data)
    except Refused as e:
        if e.cls == v["expect"]:
            return None
        return f"refused ({e}) but expected {v['expect']}"
    if v["expect"] != "ok":
        return f"decrypted but expected {v['expect']}"
    if v["operation"] != "unwrap_data_key" and got != expected_plaintext(v):
        return "plaintext differs"
    if hashlib.sha256(got).hexdigest() != v["plaintext_sha256"]:
        return "plaintext_sha256 differs"
    key = bytes.fromhex(v["key"])
    for field, computed in (
        ("prk", prk_of(key)),
        ("message_key", derive(key, data[INFO])[0]),
        ("context_encoding", encoding),
    ):
        if field not in v:
            return f"ok vector without {field}"
        if computed.hex() != v[field]:
            return f"{field} differs: computed {computed.hex()}"
    resealed = reader.seal(v, encoding, got)
    if ("armor" in v and ARMOR_PREFIX + b64url(resealed) != v["armor"]) or ("ciphertext" in v and resealed != data):
        return "re-encryption differs"
    return None


def run(directory: str, reader: Reader, quiet: bool = False) -> tuple[int, int, list[str]]:
    """(decrypted, refused, failures) over every vector file in `directory`."""
    ok = bad = 0
    failures = []
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        return 0, 0, [f"no vector files in {directory}"]
    for path in files:
        for v in json.loads(path.read_text())["vectors"]:
            name = f"{path.stem}/{v['name']}"
            if v.get("expect") not in CLASSES | {"ok"}:
                failures.append(f"{name}: unknown expect {v.get('expect')!r}")
                continue
            why = check(reader, v)
            if why:
                failures.append(f"{name}: {why}")
            elif v["expect"] == "ok":
                ok += 1
            else:
                bad += 1
    if not quiet:
        for f in failures:
            print("FAIL", f)
    return ok, bad, failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", nargs="?", default="vectors")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--mutate", choices=sorted(MUTANTS), help="run a reader with this one defect")
    group.add_argument("--mutants", action="store_true", help="require every mutant reader to fail")
    args = ap.parse_args()

    if args.mutants:
        ok, bad, failures = run(args.directory, Reader())
        print(f"correct reader: {ok + bad} passed, {len(failures)} failed")
        survived = []
        for name, what in MUTANTS.items():
            _, _, caught = run(args.directory, Reader(name), quiet=True)
            if caught:
                shown = ", ".join(c.split(":")[0] for c in caught[:4]) + (", ..." if len(caught) > 4 else "")
                print(f"mutant {name} ({what}): fails {len(caught)} vectors ({shown})")
            else:
                print(f"mutant {name} ({what}): SURVIVED, no vector tells it from a correct reader")
                survived.append(name)
        return 1 if failures or ok == 0 or survived else 0

    reader = Reader(args.mutate)
    ok, bad, failures = run(args.directory, reader)
    label = f" [mutant: {args.mutate}]" if args.mutate else ""
    print(f"verify_vectors{label}: {ok + bad} passed, {len(failures)} failed ({ok} decrypted and re-encrypted, {bad} refused with the expected class)")
    return 1 if failures or ok == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
