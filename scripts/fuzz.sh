#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 20) with cargo-fuzz, seeded from vectors/.
#   ./scripts/fuzz.sh [seconds] [target...]
# cargo-fuzz needs nightly flags (-Zsanitizer); on the pinned stable toolchain RUSTC_BOOTSTRAP=1
# enables them. cargo-fuzz itself is installed once under ~/.cache/byok/tools.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
SECONDS_PER_TARGET=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(header armor frames envelope aws_arn gcp_name azure_url azure_challenge audit_log lease)
export PATH="$CACHE/tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}-fuzz
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$CACHE/tools"
fi

# Seed corpora from the vectors: each ciphertext (binary), each armor (text), each body.
python3 tools/fuzz_seeds.py vectors "$CACHE/fuzz-corpus"

cd fuzz
# Build first, so a compile error fails the script instead of vanishing in the filtered output.
for t in "${TARGETS[@]}"; do cargo fuzz build --release --debug-assertions "$t"; done
for t in "${TARGETS[@]}"; do
  echo "-- fuzz $t (${SECONDS_PER_TARGET}s)"
  mkdir -p "$CACHE/fuzz-corpus/$t"
  log="$CACHE/fuzz-$t.log"
  set +e
  cargo fuzz run --release --debug-assertions "$t" "$CACHE/fuzz-corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -E 'panicked|SUMMARY|ERROR|Error|artifact' "$log" | head -20 >&2
    echo "fuzz $t: failed (exit $status); the input is in fuzz/artifacts/$t, full log $log" >&2
    exit 1
  fi
done
echo "fuzz: ${#TARGETS[@]} targets ran ${SECONDS_PER_TARGET}s each, no failures"
