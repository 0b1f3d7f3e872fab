#!/usr/bin/env bash
# Noisy neighbour: does one org flooding `byok serve` hurt another org's latency? Measures org
# B's encrypt latency alone, then while org A floods with many connections, with the default
# rate limits (5000 req/s per org, 2500 per token) and, for comparison, with none.
#
#   ./scripts/bench-neighbours.sh                 # 15 s per cell
#   BYOK_BENCH_SECONDS=30 ./scripts/bench-neighbours.sh
#   BYOK_BENCH_WORK=datakeys BYOK_BENCH_DB=postgres ./scripts/bench-neighbours.sh
#
# BYOK_BENCH_WORK=datakeys measures the database writer instead of the CPU: B creates one stored
# data key per request, A a thousand (the most a call may ask for), both through the one writer.
# BYOK_BENCH_DB=postgres runs the server on a throwaway PostgreSQL cluster instead of SQLite.
# Managed keys (no KMS needed); wrk from Debian if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
SECONDS_PER_RUN=${BYOK_BENCH_SECONDS:-15}
WORK_KIND=${BYOK_BENCH_WORK:-encrypt}
DB_KIND=${BYOK_BENCH_DB:-sqlite}
. scripts/lib/toolchain.sh
ensure_toolchain
if [ "$DB_KIND" = postgres ]; then
  . scripts/lib/postgres.sh
  start_postgres
fi
if ! command -v wrk >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release -p byok-server --bin byok --locked -q
BYOK="$CARGO_TARGET_DIR/release/byok"
WORK=$(mktemp -d)
cleanup() {
  kill "${SERVER_PID:-}" 2>/dev/null || true
  rm -rf "$WORK"
  [ "$DB_KIND" != postgres ] || stop_postgres
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
j() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

start() { # $1 org limit, $2 token limit
  kill "${SERVER_PID:-}" 2>/dev/null || true
  rm -rf "$WORK/data"
  PORT=$(free_port)
  local db=()
  if [ "$DB_KIND" = postgres ]; then
    # A fresh database for each server, so each starts with the first-run operator token.
    RUN=$((${RUN:-0} + 1))
    "$PG_BIN/psql" -q "$BYOK_TEST_POSTGRES_URL" -c "CREATE DATABASE bench$RUN"
    db=(env "BYOK_DATABASE_URL=${BYOK_TEST_POSTGRES_URL%/*}/bench$RUN" "BYOK_MANAGED_KEY=$MANAGED_KEY")
  fi
  "${db[@]}" env BYOK_LOG=warn BYOK_ORG_RATE_LIMIT=$1 BYOK_TOKEN_RATE_LIMIT=$2 \
    "$BYOK" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "operator token" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
  export BYOK_SERVER="http://127.0.0.1:$PORT"
  OPERATOR=$(grep -o 'byok_[A-Za-z0-9_-]*' "$WORK/serve.out")
  for o in a b; do
    BYOK_TOKEN=$OPERATOR "$BYOK" org create "$o" --json >"$WORK/$o.json"
    local id admin scope svc
    id=$(j '["id"]' <"$WORK/$o.json"); admin=$(j '["admin_token"]' <"$WORK/$o.json")
    scope=$(BYOK_TOKEN=$admin "$BYOK" scope create --org "$id" --parent "$id" --name team --json | j '["id"]')
    svc=$(BYOK_TOKEN=$admin "$BYOK" token create --org "$id" --role service --name bench --json | j '["token"]')
    echo "$BYOK_SERVER/v1/orgs/$id/scopes/$scope/$WORK_KIND" >"$WORK/$o.url"
    echo "$svc" >"$WORK/$o.token"
  done
}

MANAGED_KEY=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
if [ "$WORK_KIND" = datakeys ]; then
  echo '{"count": 1}' >"$WORK/b.body"
  echo '{"count": 1000}' >"$WORK/a.body"
else
  python3 -c 'import base64,json,os; print(json.dumps({"plaintext": base64.b64encode(os.urandom(1024)).decode()}))' >"$WORK/b.body"
  cp "$WORK/b.body" "$WORK/a.body"
fi
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local f = io.open(os.getenv("BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d timeouts=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.errors.timeout, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
# Org B is well behaved: each of its connections waits 1 ms between requests (wrk's `delay`),
# so it stays under its limits and its latency is what is compared.
{ cat "$WORK/post.lua"; echo 'function delay() return 1 end'; } >"$WORK/paced.lua"
run() { # $1 org, $2 connections, $3 script
  BENCH_TOKEN=$(cat "$WORK/$1.token") BENCH_BODY="$WORK/$1.body" \
    wrk -t1 -c"$2" -d"${SECONDS_PER_RUN}s" --timeout 60s --latency -s "$WORK/$3" "$(cat "$WORK/$1.url")" | grep '^RESULT'
}
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k{print $2}'; }

echo "byok $("$BYOK" --version | cut -d' ' -f2), $(nproc) cores, ${SECONDS_PER_RUN}s cells, $WORK_KIND on $DB_KIND; org B: wrk -t1 -c2 paced 1 ms per connection; org A flooding: wrk -t1 -c64"
echo "| limits (org / token req/s) | cell | B req/s | B non-2xx | B p50 ms | B p99 ms | A req/s | A non-2xx |"
echo "|---|---|---|---|---|---|---|---|"
for limits in "5000 2500" "0 0"; do
  # shellcheck disable=SC2086
  start $limits
  solo=$(run b 2 paced.lua)
  echo "| ${limits/ / \/ } | B alone | $(get "$solo" rps) | $(get "$solo" non2xx) | $(get "$solo" p50_ms) | $(get "$solo" p99_ms) | - | - |"
  run a 64 post.lua >"$WORK/a.out" &
  flood=$!
  sleep 1
  both=$(run b 2 paced.lua)
  wait "$flood"
  a=$(cat "$WORK/a.out")
  echo "| ${limits/ / \/ } | B while A floods | $(get "$both" rps) | $(get "$both" non2xx) | $(get "$both" p50_ms) | $(get "$both" p99_ms) | $(get "$a" rps) | $(get "$a" non2xx) |"
done
