#!/usr/bin/env python3
"""Envelope encryption in Python, measured the way bench/compare measures byok.

Two tools, each encrypt and decrypt per size (default 64 B, 1 KiB, 64 KiB, 1 MiB):

* the AWS Encryption SDK for Python (``aws-encryption-sdk``), raw AES-256 master key (AES-GCM key
  wrapping), committing suite without signature ``AES_256_GCM_HKDF_SHA512_COMMIT_KEY``, commitment
  policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT, no caching;
* Tink (``tink``), ``aead.KmsEnvelopeAead`` with an AES256_GCM DEK template; a local AES-256-GCM
  primitive stands in for the remote KEK (so no network round trip is counted).

Timing, as in bench/compare: the cells of one size form a group; each cell warms up (>= BENCH_WARMUP
s, default 0.3) and sizes a batch to about 10 ms; then BENCH_ROUNDS rounds (default 5) give every
cell in turn BENCH_SECONDS / rounds of wall time (default 2 s in all per cell); a round's rate is
ops / time in batches, and ops_per_s is the median over rounds. Every decryption is checked
against the plaintext once before its cells run.

Prints one JSON object per line:
{"tool":..,"variant":..,"op":"encrypt|decrypt","size":..,"ops_per_s":..,"mb_per_s":..,
 "min_ops_per_s":..,"max_ops_per_s":..,"rounds":..}

Usage: bench_python.py [--seconds S] [--rounds R] [--sizes 64,1024,...] [--only SUBSTRING]
"""

import argparse
import json
import os
import statistics
import time
from importlib.metadata import version

DEFAULT_SIZES = [64, 1024, 64 * 1024, 1024 * 1024]
CONTEXT = {"tenant": "acme"}


def calibrate(run, warmup):
    """Warms run(n) up and returns a batch size n that takes about 10 ms."""
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
            return n


def run_group(cells, args):
    """cells: [(tool, variant, op, size, run)]. Interleaved rounds, then one line per cell."""
    batches = [calibrate(c[4], args.warmup) for c in cells]
    rounds = max(1, args.rounds)
    slice_ = args.seconds / rounds
    rates = [[] for _ in cells]
    for _ in range(rounds):
        for (tool, variant, op, size, run), n, r in zip(cells, batches, rates):
            run(n)  # settle after the previous cell; not counted
            ops, timed = 0, 0.0
            start = time.perf_counter()
            while time.perf_counter() - start < slice_ or ops == 0:
                t = time.perf_counter()
                run(n)
                timed += time.perf_counter() - t
                ops += n
            r.append(ops / timed)
    for (tool, variant, op, size, _), r in zip(cells, rates):
        emit(tool, variant, op, size, r)


def emit(tool, variant, op, size, rates):
    rates = sorted(rates)
    ops_per_s = statistics.median(rates)
    print(
        json.dumps(
            {
                "tool": tool,
                "variant": variant,
                "op": op,
                "size": size,
                "ops_per_s": round(ops_per_s, 1),
                "mb_per_s": round(ops_per_s * size / 1e6, 2),
                "min_ops_per_s": round(rates[0], 1),
                "max_ops_per_s": round(rates[-1], 1),
                "rounds": len(rates),
            }
        ),
        flush=True,
    )


def plaintext(size):
    return bytes((i * 31 + 7) & 0xFF for i in range(size))


def aws_esdk_cells(args):
    """Returns cells(size) -> [(tool, variant, op, size, run)], or None when filtered out."""
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
        return None
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

    def cells(size):
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

        return [(tool, variant, "encrypt", size, run_enc), (tool, variant, "decrypt", size, run_dec)]

    return cells


def tink_cells(args):
    """Returns cells(size) -> [(tool, variant, op, size, run)], or None when filtered out."""
    import tink
    from tink import aead

    tool = "tink (Python)"
    variant = f"{version('tink')} KmsEnvelopeAead AES256_GCM DEK, local KEK"
    if args.only and args.only not in f"{tool} {variant}":
        return None
    aead.register()
    kek = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(aead.Aead)
    env = aead.KmsEnvelopeAead(aead.aead_key_templates.AES256_GCM, kek)
    ad = b"tenant=acme"
    def cells(size):
        pt = plaintext(size)
        ct = env.encrypt(pt, ad)
        assert env.decrypt(ct, ad) == pt, "tink round trip"

        def run_enc(n, pt=pt):
            for _ in range(n):
                env.encrypt(pt, ad)

        def run_dec(n, ct=ct):
            for _ in range(n):
                env.decrypt(ct, ad)

        return [(tool, variant, "encrypt", size, run_enc), (tool, variant, "decrypt", size, run_dec)]

    return cells


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 2)))
    p.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP", 0.3)))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 5)))
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=DEFAULT_SIZES,
    )
    p.add_argument("--only", default=None, help="run only tools whose 'tool variant' contains this")
    args = p.parse_args()
    tools = [t for t in (aws_esdk_cells(args), tink_cells(args)) if t is not None]
    for size in args.sizes:
        cells = [c for t in tools for c in t(size)]
        if cells:
            run_group(cells, args)


if __name__ == "__main__":
    main()
