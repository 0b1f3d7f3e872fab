#!/usr/bin/env python3
"""Writes fuzz seed corpora from vectors/*.json: one file per ciphertext or armor string.

    python tools/fuzz_seeds.py vectors ~/.cache/byok/fuzz-corpus
"""
import base64
import hashlib
import json
import sys
from pathlib import Path


def main(vectors: str, out: str) -> None:
    targets = ("header", "armor", "frames", "envelope", "aws_arn", "azure_url", "azure_challenge",
               "lease")
    dirs = {t: Path(out) / t for t in targets}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    def put(target: str, data: bytes) -> None:
        (dirs[target] / hashlib.sha1(data).hexdigest()).write_bytes(data)

    n = 0
    for path in sorted(Path(vectors).glob("*.json")):
        for v in json.loads(path.read_text())["vectors"]:
            ct = None
            if "ciphertext" in v:
                ct = bytes.fromhex(v["ciphertext"])
            if "armor" in v:
                put("armor", v["armor"].encode())
                payload = v["armor"].removeprefix("byok:v1:")
                try:
                    ct = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
                except ValueError:
                    pass
            if ct is not None:
                ct = ct[:4096]
                put("header", ct)
                put("envelope", ct)
                put("armor", b"byok:v1:" + base64.urlsafe_b64encode(ct).rstrip(b"="))
                put("frames", bytes([v.get("frame_log2", 8) - 8, 37]) + ct[92:])
                n += 1
    uuid = "1234abcd-12ab-34cd-56ef-1234567890ab"
    for seed in (
        f"arn:aws:kms:us-east-1:111122223333:key/{uuid}",
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws-cn:kms:cn-north-1:111122223333:alias/team/root",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/k",
        uuid,
        "alias/x",
    ):
        put("aws_arn", seed.encode())
    version = "0123456789abcdef0123456789abcdef"
    for seed in (
        "https://acme.vault.azure.net/keys/root",
        f"https://acme.managedhsm.usgovcloudapi.net/keys/root/{version}",
        "https://acme.vault.azure.cn/keys/root/",
    ):
        put("azure_url", seed.encode())
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    for seed in (
        f'Bearer authorization="https://login.microsoftonline.com/{tenant}", resource="https://vault.azure.net"',
        f'Bearer authorization_uri="https://login.microsoftonline.us/{tenant}/", scope="https://managedhsm.usgovcloudapi.net/.default"',
        'Bearer authorization="https://login.microsoftonline.com/contoso.onmicrosoft.com", resource="https://vault.azure.net"',
    ):
        put("azure_challenge", seed.encode())
    key = base64.b64encode(bytes(range(32))).decode()
    for keys, current in (([1], 1), ([1, 2, 7], 7)):
        doc = {"scope": version, "current_version": current,
               "keys": [{"version": k, "key": key} for k in keys],
               "expires_at": 1767225600000, "ttl_ms": 60000}
        # Arrival time, then how far the lease clock is ahead of the wall (none, ten minutes).
        for ahead in (0, 600000):
            put("lease", (1767225540000).to_bytes(8, "little") + ahead.to_bytes(8, "little")
                + json.dumps(doc).encode())
    print(f"fuzz seeds: {n} vectors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
