#!/usr/bin/env bash
# Instructions per request on the data path, byok beside its HTTP floor, counted by callgrind:
# host-native/benches/data_path_ir.rs sends N encrypt or decrypt requests through one router in
# process, and only those are counted. Unlike time on this machine (which moves 10-25 % within
# seconds), the count does not move between runs, so a change of a few hundred instructions per
# request shows, with the functions it came from.
#
#   ./scripts/bench-instructions.sh              # the table
#   BYOK_IR_TOP=40 ./scripts/bench-instructions.sh   # and byok's top functions over the floor's
#
# Caveat: valgrind has no SHA-NI or AVX-512, so sha2 and aws-lc take their portable paths under
# it, and the crypto's count is several times what runs natively. The table splits it out
# ("crypto": sha2 and digest, aws-lc, hkdf, hmac); the rest runs the same code as natively. Installs
# valgrind (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
N=${BYOK_IR_REQUESTS:-1000}
# Runs per cell: malloc's paths (and so a few hundred instructions per request) differ between
# processes with the random ids, keys and hash seeds each one draws; the median of three is steady.
RUNS=${BYOK_IR_RUNS:-3}
TOP=${BYOK_IR_TOP:-0}
. scripts/lib/toolchain.sh
ensure_toolchain >/dev/null
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq valgrind) >/dev/null
fi
BIN=$(cargo bench -p byok-server --bench data_path_ir --locked --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "data_path_ir" and m.get("executable"):
        print(m["executable"])')
if [ -z "$BIN" ]; then
  echo "the data_path_ir bench did not build; run: cargo bench -p byok-server --bench data_path_ir --no-run" >&2
  exit 1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for op in encrypt decrypt; do
  for server in floor byok; do
    for run in $(seq "$RUNS"); do
      valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*byok_counted_requests*' \
        --callgrind-out-file="$WORK/$op-$server-$run.out" "$BIN" "$op" "$server" "$N" >/dev/null 2>&1
      callgrind_annotate --inclusive=no --auto=no --threshold=100 "$WORK/$op-$server-$run.out" >"$WORK/$op-$server-$run.txt"
    done
  done
done
python3 - "$WORK" "$N" "$TOP" "$RUNS" <<'PY'
import re, statistics, sys
work, n, top, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
CRYPTO = ("sha2::", "digest::", "aws_lc", "_aesni", "aead_aes_gcm", "hkdf::", "hmac::")
def load_one(path):
    per = {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*?):(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[/.*\]$", "", m.group(3).strip())
            per[name] = per.get(name, 0) + int(m.group(1).replace(",", "")) / n
    return per
def load(cell):
    """Each function's median over the runs (the totals are the sums of these)."""
    all_runs = [load_one(f"{work}/{cell}-{r}.txt") for r in range(1, runs + 1)]
    names = set().union(*all_runs)
    return {k: statistics.median(r.get(k, 0) for r in all_runs) for k in names}
def crypto(name):
    return any(c in name for c in CRYPTO)
print(f"{n} requests of 1 KiB, instructions per request (callgrind; each function's median over {runs} runs)")
print()
print("| op | floor | byok | byok over floor | of which crypto | of which the rest | floor / byok, the rest only |")
print("|---|---:|---:|---:|---:|---:|---:|")
diffs = {}
for op in ("encrypt", "decrypt"):
    f, b = load(f"{op}-floor"), load(f"{op}-byok")
    ft, bt = sum(f.values()), sum(b.values())
    fc, bc = sum(v for k, v in f.items() if crypto(k)), sum(v for k, v in b.items() if crypto(k))
    rest = (bt - bc) - (ft - fc)
    print(f"| {op} | {ft:,.0f} | {bt:,.0f} | {bt - ft:+,.0f} | {bc - fc:+,.0f} | {rest:+,.0f} | {(ft - fc) / (bt - bc) * 100:.1f} % |")
    diffs[op] = {k: b.get(k, 0) - f.get(k, 0) for k in set(f) | set(b)}
for op, d in diffs.items():
    if top:
        print(f"\n{op}: byok's functions over the floor's (instructions per request; crypto marked C)")
        for k in sorted(d, key=lambda k: -abs(d[k]))[:top]:
            print(f"{d[k]:+8.0f} {'C' if crypto(k) else ' '} {k[:140]}")
PY
