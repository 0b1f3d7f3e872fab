#!/usr/bin/env bash
# Requests per second of the example Worker in workerd encrypting 1 KiB with a lease, beside
# `byok serve` encrypting the same 1 KiB through its API, on this machine, cells interleaved in
# one run (wrk, loopback). The Worker makes no request to byok per message: it renews its lease
# once per half TTL. Managed key (no KMS in the path of either).
#
#   ./scripts/bench-edge.sh                      # 20 s per cell, 2 rounds
#   BYOK_BENCH_SECONDS=5 BYOK_BENCH_ROUNDS=1 ./scripts/bench-edge.sh
#
# Needs host-wasm/pkg (scripts/build-wasm.sh) and workerd (npm ci --prefix
# host-wasm/examples/worker); installs wrk (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
SECONDS_PER_RUN=${BYOK_BENCH_SECONDS:-20}
CONNECTIONS=${BYOK_BENCH_CONNECTIONS:-64}
ROUNDS=${BYOK_BENCH_ROUNDS:-2}

. scripts/lib/toolchain.sh
ensure_toolchain
command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
[ -f host-wasm/pkg/byok_wasm_bg.wasm ] || scripts/build-wasm.sh
[ -x host-wasm/examples/worker/node_modules/.bin/workerd ] || npm ci --prefix host-wasm/examples/worker --no-audit --no-fund
cargo build --release -p byok-server --bin byok --locked -q
BYOK="$CARGO_TARGET_DIR/release/byok"

WORK=$(mktemp -d)
cleanup() { kill "${SERVER_PID:-}" "${WORKERD_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

PORT=$(free_port)
BYOK_LOG=warn BYOK_ORG_RATE_LIMIT=0 BYOK_TOKEN_RATE_LIMIT=0 \
  "$BYOK" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "operator token" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
export BYOK_SERVER="http://127.0.0.1:$PORT"
export BYOK_TOKEN; BYOK_TOKEN=$(grep -o 'byok_[A-Za-z0-9_-]*' "$WORK/serve.out")
"$BYOK" org create bench --json >"$WORK/org.json"
ORG=$(field id <"$WORK/org.json")
BYOK_TOKEN=$(field admin_token <"$WORK/org.json")
SCOPE=$("$BYOK" scope create --org "$ORG" --parent "$ORG" --name team --json | field id)
SERVICE=$("$BYOK" token create --org "$ORG" --role service --name bench --json | field token)

# The Worker, staged with its package and a config pointing at this server; its callers (wrk)
# send the caller token.
WORKER_PORT=$(free_port)
CALLER=$(head -c 32 /dev/urandom | base64)
mkdir -p "$WORK/worker/pkg"
cp host-wasm/examples/worker/worker.js "$WORK/worker/"
cp host-wasm/pkg/byok_wasm.js host-wasm/pkg/lease_client.js host-wasm/pkg/byok_wasm_bg.wasm "$WORK/worker/pkg/"
sed -e "s|@LISTEN@|127.0.0.1:$WORKER_PORT|" -e "s|@BYOK_SERVER@|$BYOK_SERVER|" -e "s|@BYOK_ORG@|$ORG|" \
  -e "s|@BYOK_SCOPE@|$SCOPE|" -e "s|@BYOK_TOKEN@|$SERVICE|" -e "s|@BYOK_AUDIENCE@|bench|" \
  -e "s|@BYOK_EDGE_CALLER_TOKEN@|$CALLER|" -e "s|@BYOK_EDGE_CALLER_TOKEN_NEXT@||" \
  host-wasm/examples/worker/config.capnp >"$WORK/worker/config.capnp"
(cd "$WORK/worker" && exec "$ROOT/host-wasm/examples/worker/node_modules/.bin/workerd" serve config.capnp) \
  >"$WORK/workerd.log" 2>&1 &
WORKERD_PID=$!
WORKER="http://127.0.0.1:$WORKER_PORT"
for _ in $(seq 200); do curl -sf -X POST -H "Authorization: Bearer $CALLER" --data x "$WORKER/encrypt" -o /dev/null && break; sleep 0.1; done

head -c 1024 /dev/urandom >"$WORK/plain.bin"
python3 -c 'import base64,json,sys; print(json.dumps({"plaintext": base64.b64encode(open(sys.argv[1],"rb").read()).decode(), "context": {"tenant": "acme"}}))' \
  "$WORK/plain.bin" >"$WORK/encrypt.json"
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
local token = os.getenv("BENCH_TOKEN")
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
cell() { BENCH_TOKEN=$2 BENCH_BODY=$3 wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/post.lua" "$1" | grep '^RESULT'; }
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k{print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)
# One JSON line per lease_issued row.
leases() { "$BYOK" audit read --org "$ORG" --kind lease_issued --json | grep -c '"lease_issued"'; }

echo "byok $("$BYOK" --version | cut -d' ' -f2), workerd $("$ROOT/host-wasm/examples/worker/node_modules/.bin/workerd" --version 2>/dev/null | awk '{print $2}'), $(nproc) cores, wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, 1 KiB plaintext, managed key, $ROUNDS rounds"
echo "| round | server | req/s | p50 ms | p99 ms | server CPU µs/req | errors | non-2xx |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for server in workerd byok; do
    if [ "$server" = workerd ]; then
      URL="$WORKER/encrypt?tenant=acme"; TOKEN=$CALLER; BODY="$WORK/plain.bin"; PID=$(pgrep -P "$WORKERD_PID" workerd || echo "$WORKERD_PID")
    else
      URL="$BYOK_SERVER/v1/orgs/$ORG/scopes/$SCOPE/encrypt"; TOKEN=$SERVICE; BODY="$WORK/encrypt.json"; PID=$SERVER_PID
    fi
    t0=$(cpu_ticks "$PID")
    line=$(cell "$URL" "$TOKEN" "$BODY")
    t1=$(cpu_ticks "$PID")
    per=$(awk -v t="$((t1 - t0))" -v hz="$TICKS" -v n="$(get "$line" requests)" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    echo "| $round | $server | $(get "$line" rps) | $(get "$line" p50_ms) | $(get "$line" p99_ms) | $per | $(get "$line" errors) | $(get "$line" non2xx) |"
  done
done
echo "leases granted to the Worker during the run: $(leases)"
