#!/usr/bin/env python3
"""Envelope encryption in Python, measured the way bench/compare measures byok.

Two tools, each encrypt and decrypt per size (default 64 B, 1 KiB, 64 KiB, 1 MiB):

* the AWS Encryption SDK for Python (``aws-encryption-sdk``), raw AES-256 master key (AES-GCM key
  wrapping), committing suite without signature ``AES_256_GCM_HKDF_SHA512_COMMIT_KEY``, commitment
  policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT, no caching;
* Tink (``tink``), ``aead.KmsEnvelopeAead`` with an AES256_GCM DEK template; a local AES-256-GCM
  primitive stands in for the remote KEK (so no network round trip is counted).

Timing: each cell warms up (>= BENCH_WARMUP s, default 0.3), sizes a batch to about 10 ms, then
runs batches until BENCH_SECONDS (default 2) of wall time have passed; rate = ops / time in
batches. Every decryption is checked against the plaintext once before its cells run.

Prints one JSON object per line:
{"tool":..,"variant":..,"op":"encrypt|decrypt","size":..,"ops_per_s":..,"mb_per_s":..}

Usage: bench_python.py [--seconds S] [--sizes 64,1024,...] [--only SUBSTRING]
"""

import argparse
import json
import os
import time
from importlib.metadata import version

DEFAULT_SIZES = [64, 1024, 64 * 1024, 1024 * 1024]
CONTEXT = {"tenant": "acme"}


def measure(run, seconds, warmup):
    """run(n) performs n ops; returns ops per second over the timed batches."""
    target = 0.010
    n = 1
    warm_start = time.perf_counter()
    while True:
        t = time.perf_counter()
        run(n)
        d = time.perf_counter() - t
        if d < target:
            n *= 2
        elif time.perf_counter() - warm_start >= warmup:
            break
    ops, timed = 0, 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        run(n)
        timed += time.perf_counter() - t
        ops += n
    return ops / timed


def emit(tool, variant, op, size, ops_per_s):
    print(
        json.dumps(
            {
                "tool": tool,
                "variant": variant,
                "op": op,
                "size": size,
                "ops_per_s": round(ops_per_s, 1),
                "mb_per_s": round(ops_per_s * size / 1e6, 2),
            }
        ),
        flush=True,
    )


def plaintext(size):
    return bytes((i * 31 + 7) & 0xFF for i in range(size))


def bench_aws_esdk(args):
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey

    tool = "aws-encryption-sdk (Python)"
    variant = f"{version('aws-encryption-sdk')} raw AES master key, commit-key no-sig"
    if args.only and args.only not in f"{tool} {variant}":
        return
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    master_key = RawMasterKey(
        provider_id="byok-compare",
        key_id=b"bench-key",
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=os.urandom(32),
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )
    suite = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY

    def encrypt(pt):
        ct, _ = client.encrypt(
            source=pt, key_provider=master_key, encryption_context=CONTEXT, algorithm=suite
        )
        return ct

    def decrypt(ct):
        pt, header = client.decrypt(source=ct, key_provider=master_key)
        return pt, header

    for size in args.sizes:
        pt = plaintext(size)
        ct = encrypt(pt)
        back, header = decrypt(ct)
        assert back == pt, "aws-encryption-sdk round trip"
        assert header.algorithm == suite, header.algorithm
        assert header.encryption_context.get("tenant") == "acme"

        def run_enc(n, pt=pt):
            for _ in range(n):
                encrypt(pt)

        def run_dec(n, ct=ct):
            for _ in range(n):
                decrypt(ct)

        emit(tool, variant, "encrypt", size, measure(run_enc, args.seconds, args.warmup))
        emit(tool, variant, "decrypt", size, measure(run_dec, args.seconds, args.warmup))


def bench_tink(args):
    import tink
    from tink import aead

    tool = "tink (Python)"
    variant = f"{version('tink')} KmsEnvelopeAead AES256_GCM DEK, local KEK"
    if args.only and args.only not in f"{tool} {variant}":
        return
    aead.register()
    kek = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(aead.Aead)
    env = aead.KmsEnvelopeAead(aead.aead_key_templates.AES256_GCM, kek)
    ad = b"tenant=acme"
    for size in args.sizes:
        pt = plaintext(size)
        ct = env.encrypt(pt, ad)
        assert env.decrypt(ct, ad) == pt, "tink round trip"

        def run_enc(n, pt=pt):
            for _ in range(n):
                env.encrypt(pt, ad)

        def run_dec(n, ct=ct):
            for _ in range(n):
                env.decrypt(ct, ad)

        emit(tool, variant, "encrypt", size, measure(run_enc, args.seconds, args.warmup))
        emit(tool, variant, "decrypt", size, measure(run_dec, args.seconds, args.warmup))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 2)))
    p.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP", 0.3)))
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=DEFAULT_SIZES,
    )
    p.add_argument("--only", default=None, help="run only tools whose 'tool variant' contains this")
    args = p.parse_args()
    bench_aws_esdk(args)
    bench_tink(args)


if __name__ == "__main__":
    main()
