#!/usr/bin/env python3
"""Prints a Markdown table from criterion's estimates of `cargo bench -p byok-core --bench envelope`.

    python3 tools/bench_table.py ~/.cache/byok/target/criterion

Ops/s for 64 B and 1 KiB, GiB/s for 64 KiB, 1 MiB and the 1 GiB stream, and the ratios the
targets ask for (byok vs raw AES-256-GCM of the same library, same run).
"""
import json
import sys
from pathlib import Path

SIZES = [64, 1024, 65536, 1048576]


def mean_ns(d: Path) -> float | None:
    f = d / "new" / "estimates.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["mean"]["point_estimate"]


def cell(ns: float | None, size: int) -> str:
    if ns is None:
        return "-"
    if size <= 1024:
        return f"{1e9 / ns / 1e6:.2f} M ops/s"
    return f"{size / ns:.2f} GB/s"


def main(root: str) -> None:
    root = Path(root)
    variants = ["byok-aws-lc", "raw-aws-lc", "byok-rustcrypto", "raw-rustcrypto"]
    print("| op | variant | 64 B | 1 KiB | 64 KiB | 1 MiB |")
    print("|---|---|---:|---:|---:|---:|")
    t = {}
    for op in ["encrypt", "decrypt"]:
        for v in variants:
            row = [mean_ns(root / op / v / str(s)) for s in SIZES]
            t[(op, v)] = row
            print(f"| {op} | {v} | " + " | ".join(cell(ns, s) for ns, s in zip(row, SIZES)) + " |")
    print()
    for op in ["encrypt", "decrypt"]:
        b, r = t[(op, "byok-aws-lc")], t[(op, "raw-aws-lc")]
        if b[1] and r[3] and b[3]:
            print(f"- {op}: byok (aws-lc) 1 KiB = {1e9 / b[1] / 1e6:.2f} M ops/s (target >= 1.5); "
                  f"1 MiB = {r[3] / b[3] * 100:.0f} % of raw aws-lc (target >= 80 %); "
                  f"per-message overhead at 64 B = {b[0] - r[0]:.0f} ns")
    s = root / "stream-1GiB"
    if s.exists():
        print()
        print("| 1 GiB stream, 64 KiB frames | GB/s |")
        print("|---|---:|")
        vals = {}
        for name in ["encrypt/byok-aws-lc", "encrypt/raw-aws-lc-64KiB-chunks",
                     "decrypt/byok-aws-lc", "decrypt/raw-aws-lc-64KiB-chunks"]:
            ns = mean_ns(s / name.replace("/", "_")) or mean_ns(s / name)
            vals[name] = ns
            print(f"| {name} | {(1 << 30) / ns:.2f} |" if ns else f"| {name} | - |")
        for op in ["encrypt", "decrypt"]:
            b, r = vals.get(f"{op}/byok-aws-lc"), vals.get(f"{op}/raw-aws-lc-64KiB-chunks")
            if b and r:
                print(f"- stream {op}: {r / b * 100:.0f} % of raw aws-lc (target >= 80 %)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path.home() / ".cache/byok/target/criterion"))
