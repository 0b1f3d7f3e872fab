#!/usr/bin/env bash
# Replicas over one PostgreSQL (issue 18): encrypt load with wrk on one replica and on three
# (same total connections), and how long a pause made through one replica takes to be refused
# by the other two (200 rounds, p50/p99; tests/tests/replicas.rs with BYOK_REPLICA_ROUNDS).
#
#   ./scripts/bench-replicas.sh                       # 20 s per load cell
#   BYOK_BENCH_SECONDS=10 ./scripts/bench-replicas.sh
#
# Starts a throwaway PostgreSQL cluster (Debian's packages, installed if missing) and three
# `byok serve` on loopback with a managed key (no KMS on this path); wrk from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
SECONDS_PER_RUN=${BYOK_BENCH_SECONDS:-20}
ROUNDS=${BYOK_REPLICA_ROUNDS:-200}

. scripts/lib/toolchain.sh
ensure_toolchain
. scripts/lib/postgres.sh
start_postgres
if ! command -v wrk >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release -p byok-server --bin byok --locked -q
BYOK="$CARGO_TARGET_DIR/release/byok"

WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; stop_postgres; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
j() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

"$PG_BIN/psql" -q "$BYOK_TEST_POSTGRES_URL" -c "CREATE DATABASE bench"
DB="${BYOK_TEST_POSTGRES_URL%/*}/bench"
KEY=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
URLS=()
for r in a b c; do
  port=$(free_port)
  BYOK_DATABASE_URL=$DB BYOK_MANAGED_KEY=$KEY BYOK_LOG=warn BYOK_ORG_RATE_LIMIT=0 BYOK_TOKEN_RATE_LIMIT=0 \
    "$BYOK" serve --listen "127.0.0.1:$port" --data-dir "$WORK/$r" >"$WORK/$r.out" 2>"$WORK/$r.log" &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q "listening\|http://" "$WORK/$r.out" 2>/dev/null && break; sleep 0.1; done
  URLS+=("http://127.0.0.1:$port")
done
export BYOK_SERVER=${URLS[0]}
export BYOK_TOKEN; BYOK_TOKEN=$(grep -o 'byok_[A-Za-z0-9_-]*' "$WORK/a.out")
ORG_JSON=$("$BYOK" org create bench --json)
ORG=$(echo "$ORG_JSON" | j '["id"]')
BYOK_TOKEN=$(echo "$ORG_JSON" | j '["admin_token"]')
SCOPE=$("$BYOK" scope create --org "$ORG" --parent "$ORG" --name team --json | j '["id"]')
SERVICE=$("$BYOK" token create --org "$ORG" --role service --name bench --json | j '["token"]')
python3 -c 'import base64,json,os; print(json.dumps({"plaintext": base64.b64encode(os.urandom(1024)).decode()}))' >"$WORK/encrypt.json"
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local f = io.open(os.getenv("BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
P="/v1/orgs/$ORG/scopes/$SCOPE/encrypt"
cell() { BENCH_TOKEN=$SERVICE BENCH_BODY="$WORK/encrypt.json" wrk -t"$2" -c"$3" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/post.lua" "$1$P" | grep '^RESULT'; }

echo "byok $("$BYOK" --version | cut -d' ' -f2), $(nproc) cores, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), 1 KiB encrypt, managed key, ${SECONDS_PER_RUN}s cells"
echo "| replicas | wrk | req/s (sum) | p50 ms | p99 ms | non-2xx |"
echo "|---|---|---|---|---|---|"
line=$(cell "${URLS[0]}" 2 64)
echo "| 1 | -t2 -c64 | $(echo "$line" | grep -o 'rps=[0-9]*' | cut -d= -f2) | $(echo "$line" | grep -o 'p50_ms=[0-9.]*' | cut -d= -f2) | $(echo "$line" | grep -o 'p99_ms=[0-9.]*' | cut -d= -f2) | $(echo "$line" | grep -o 'non2xx=[0-9]*' | cut -d= -f2) |"
WRKS=()
for i in 0 1 2; do cell "${URLS[$i]}" 1 21 >"$WORK/cell$i" & WRKS+=($!); done
wait "${WRKS[@]}"
sum=$(cat "$WORK"/cell* | grep -o 'rps=[0-9]*' | cut -d= -f2 | awk '{s+=$1} END {print s}')
p50=$(cat "$WORK"/cell* | grep -o 'p50_ms=[0-9.]*' | cut -d= -f2 | paste -sd' ')
p99=$(cat "$WORK"/cell* | grep -o 'p99_ms=[0-9.]*' | cut -d= -f2 | paste -sd' ')
bad=$(cat "$WORK"/cell* | grep -o 'non2xx=[0-9]*' | cut -d= -f2 | awk '{s+=$1} END {print s}')
echo "| 3 | -t1 -c21 each | $sum | $p50 | $p99 | $bad |"

echo
# The test suite's own build (debug; a release build of the test crate takes many minutes
# here): three fresh replicas, the poll an hour away, so only NOTIFY can be measured.
echo "pause through one replica until the other two refuse ($ROUNDS rounds, NOTIFY; debug build):"
BYOK_REPLICA_ROUNDS=$ROUNDS cargo test -q -p byok-tests --test replicas --locked \
  a_pause_on_one_replica_stops_the_others_by_notification -- --nocapture 2>&1 | grep 'pause on A'
