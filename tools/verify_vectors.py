#!/usr/bin/env python3
"""Checks vectors/*.json against an independent implementation of docs/format.md.

Written from the spec with Python's `cryptography` (HKDF-SHA256, AES-256-GCM), sharing no code
with the Rust crate: if the two disagree on one byte, the spec or the code is wrong.

For every `ok` vector: decrypt and compare with the plaintext, then re-encrypt with the recorded
random bytes and compare with the ciphertext. For every failing vector: it must fail here too.

    python tools/verify_vectors.py vectors
"""

import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER_LEN = 92
INFO = slice(6, 60)
TAG = 16
EXTRACT_SALT = b"byok/v1/suite1/scope-key"
MODES = {"decrypt": 1, "stream_decrypt": 2, "unwrap_data_key": 3}


class Reject(Exception):
    """The input is refused (any class)."""


def context_encoding(ctx: dict) -> bytes:
    out = struct.pack(">I", len(ctx))
    for k in sorted(ctx, key=lambda s: s.encode()):
        kb, vb = k.encode(), ctx[k].encode()
        out += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    return out


def nonce(index: int, last: bool) -> bytes:
    return b"\0\0\0" + struct.pack(">Q", index) + (b"\x01" if last else b"\x00")


def derive(key: bytes, info: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 64, EXTRACT_SALT, info).derive(key)
    return okm[:32], okm[32:]


def open_message(v: dict, data: bytes) -> bytes:
    if len(data) < HEADER_LEN or data[:4] != b"BYOK" or data[4] != 1 or data[5] != 1:
        raise Reject("header")
    mode, frame_log2 = data[6], data[7]
    if mode != MODES[v["operation"]]:
        raise Reject("mode")
    if (mode == 2 and not 8 <= frame_log2 <= 24) or (mode != 2 and frame_log2 != 0):
        raise Reject("frame_log2")
    if data[8:24] != bytes.fromhex(v["scope_id"]) or struct.unpack(">I", data[24:28])[0] != v["key_version"]:
        raise Reject("wrong key")
    header, body = data[:HEADER_LEN], data[HEADER_LEN:]
    key, commitment = derive(bytes.fromhex(v["key"]), header[INFO])
    if not _ct_eq(commitment, header[60:]):
        raise Reject("commitment")
    aad = header + context_encoding(v.get("context", {}))
    aes = AESGCM(key)
    try:
        if mode in (1, 3):
            if len(body) < TAG:
                raise Reject("tag")
            out = aes.decrypt(nonce(0, True), body, aad)
            if mode == 3 and len(out) != 32:
                raise Reject("wrapped length")
            return out
        unit = (1 << frame_log2) + TAG
        out, i, pos = b"", 0, 0
        while len(body) - pos > unit:
            out += aes.decrypt(nonce(i, False), body[pos : pos + unit], aad)
            pos, i = pos + unit, i + 1
        last = body[pos:]
        if len(last) < TAG or (len(last) == TAG and i > 0):
            raise Reject("final frame")
        return out + aes.decrypt(nonce(i, True), last, aad)
    except InvalidTag as e:
        raise Reject("tag") from e


def _ct_eq(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def seal(v: dict, plaintext: bytes) -> bytes:
    """Re-encrypts with the recorded random bytes (salt, or data key then salt)."""
    rng = bytes.fromhex(v["rng"])
    mode = MODES[v["operation"]]
    if mode == 3:
        plaintext, salt = rng[:32], rng[32:64]
    else:
        salt = rng[:32]
    frame_log2 = v.get("frame_log2", 0) if mode == 2 else 0
    info = (
        bytes([mode, frame_log2])
        + bytes.fromhex(v["scope_id"])
        + struct.pack(">I", v["key_version"])
        + salt
    )
    key, commitment = derive(bytes.fromhex(v["key"]), info)
    header = b"BYOK\x01\x01" + info + commitment
    aad = header + context_encoding(v.get("context", {}))
    aes = AESGCM(key)
    if mode != 2:
        return header + aes.encrypt(nonce(0, True), plaintext, aad)
    f = 1 << frame_log2
    chunks = [plaintext[i : i + f] for i in range(0, len(plaintext), f)] or [b""]
    out = header
    for i, c in enumerate(chunks):
        out += aes.encrypt(nonce(i, i == len(chunks) - 1), c, aad)
    return out


def expected_plaintext(v: dict) -> bytes:
    if "plaintext" in v:
        return bytes.fromhex(v["plaintext"])
    return bytes(i % 251 for i in range(v["plaintext_len"]))


def main(directory: str) -> int:
    ok = bad = 0
    failures = []
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        print(f"no vector files in {directory}")
        return 1
    for path in files:
        for v in json.loads(path.read_text())["vectors"]:
            name = f"{path.stem}/{v['name']}"
            if "armor" in v:
                continue  # armor strictness is covered by the Rust tests
            data = bytes.fromhex(v["ciphertext"])
            try:
                got = open_message(v, data)
            except Reject as e:
                if v["expect"] == "ok":
                    failures.append(f"{name}: refused ({e}) but expected ok")
                else:
                    bad += 1
                continue
            if v["expect"] != "ok":
                failures.append(f"{name}: decrypted but expected {v['expect']}")
                continue
            want = expected_plaintext(v) if v["operation"] != "unwrap_data_key" else None
            if want is not None and got != want:
                failures.append(f"{name}: plaintext differs")
                continue
            if hashlib.sha256(got).hexdigest() != v["plaintext_sha256"]:
                failures.append(f"{name}: plaintext_sha256 differs")
                continue
            if seal(v, got) != data:
                failures.append(f"{name}: re-encryption differs")
                continue
            ok += 1
    for f in failures:
        print("FAIL", f)
    print(f"verify_vectors: {ok + bad} passed, {len(failures)} failed ({ok} decrypted and re-encrypted, {bad} refused)")
    return 1 if failures or ok == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "vectors"))
