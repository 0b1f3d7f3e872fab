#!/usr/bin/env bash
# The setup page's budgets (BENCHMARKS.md): page weight gzipped, navigation to interactive, and
# identifier parse-to-render while typing, in Debian's headless Chromium against a release
# `byok serve` on loopback (a managed-key org: the page's parsing runs in the browser, so no KMS
# is involved).
#
#   ./scripts/bench-setup-page.sh
#   BYOK_BENCH_LOADS=100 ./scripts/bench-setup-page.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}

. scripts/lib/toolchain.sh
ensure_toolchain
. scripts/lib/chromium.sh
ensure_chromium
scripts/build-wasm.sh >/dev/null
npm ci --prefix host-wasm/tests/browser --no-audit --no-fund >/dev/null
cargo build --release -p byok-server --bin byok --locked -q
BYOK="$CARGO_TARGET_DIR/release/byok"

WORK=$(mktemp -d)
cleanup() { kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
BYOK_LOG=warn "$BYOK" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q 'byok_' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)
OPERATOR=$(grep -o 'byok_[A-Za-z0-9_-]*' "$WORK/serve.out" | head -1)
ADMIN=$(curl -sf -X POST -H "authorization: Bearer $OPERATOR" -H 'content-type: application/json' \
  -d '{"name":"bench"}' "$URL/v1/orgs" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).admin_token))')
echo "byok $(git rev-parse --short HEAD), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
node host-wasm/tests/browser/bench_setup_page.mjs "$URL" "$ADMIN"
