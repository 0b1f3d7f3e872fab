#!/usr/bin/env bash
# Load benchmark of `byok serve` beside its HTTP floor (the same stack without tokens, crypto or
# audit; host-native/examples/http_floor.rs), cells interleaved in one run: encrypt and decrypt
# of 1 KiB over HTTP on loopback with wrk,
# with the org's root key in a customer key (moto's KMS, signatures checked) and cached for the
# unwrap TTL. Counts the KMS calls made during each run: they must follow the TTL, not traffic.
#
#   ./scripts/bench-server.sh                 # 60 s per run
#   BYOK_BENCH_SECONDS=10 ./scripts/bench-server.sh
#   BYOK_BENCH_ROUNDS=3 ./scripts/bench-server.sh     # rounds of interleaved floor/byok cells
#   BYOK_BENCH_PIN=1 ./scripts/bench-server.sh        # servers on CPU 0, wrk on CPU 1 (less noise)
#   BYOK_BENCH_PROFILE=DIR ./scripts/bench-server.sh  # perf record each server's first cells
#   BYOK_BENCH_STAT=DIR ./scripts/bench-server.sh     # perf stat per thread, every cell: CPU,
#       # context switches, migrations, page faults, syscalls and the tasks it woke, of each of
#       # the server's threads
#   BYOK_BENCH_SERVERS="floor frame byok" ./scripts/bench-server.sh
#       # adds the floor inside byok's frame and listener (examples/floor_frame.rs): splits
#       # byok's cost into the frame's and the service's
#   BYOK_BENCH_HALT_POLL_NS=200000 ./scripts/bench-server.sh
#       # for this run, an idle vCPU polls up to 200 µs before it halts (the kernel's default;
#       # these VMs boot with 0), restored on exit. Needs root and the haltpoll cpuidle governor.
#
# This machine's speed drifts by 10-25 % over tens of seconds (the floor alone has measured from
# 46 to 62 k req/s in one run), more than the gap being measured. So the cells of a round run
# back to back in ABBA order (floor first in odd rounds, byok first in even ones), each pair's
# ratio is taken within its round, and the summary gives the median over rounds: short cells and
# many rounds (BYOK_BENCH_SECONDS=5 BYOK_BENCH_ROUNDS=8) measure the gap better than long cells.
#
# Installs wrk (Debian) if missing; uses the test command's venv for moto. Traffic goes only to
# 127.0.0.1, for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
SECONDS_PER_RUN=${BYOK_BENCH_SECONDS:-60}
CONNECTIONS=${BYOK_BENCH_CONNECTIONS:-64}
TTL_MS=${BYOK_BENCH_TTL_MS:-10000}
ROUNDS=${BYOK_BENCH_ROUNDS:-2}
# With PIN, each server runs on CPU 0 alone (tokio sizes its pool from the affinity: one worker)
# and wrk on CPU 1, so req/s measures the server's own cost per request instead of how the
# scheduler splits two cores between wrk and the server.
PIN=${BYOK_BENCH_PIN:-0}
PROFILE=${BYOK_BENCH_PROFILE:-}
# perf record's options for PROFILE: call graphs by default; a flat profile at a higher rate
# (BYOK_BENCH_PROFILE_ARGS="-F 15000") resolves self time per symbol more finely.
read -r -a PROFILE_ARGS <<<"${BYOK_BENCH_PROFILE_ARGS:--F 999 -g}"
STAT=${BYOK_BENCH_STAT:-}
HALT_POLL_NS=${BYOK_BENCH_HALT_POLL_NS:-}
# On a VM with the haltpoll governor, an idle vCPU halts after polling this long; a halted vCPU is
# woken by an interrupt through the host. With 0 (how these machines boot), a vCPU that goes idle
# between two answers halts at once. Measured both ways in BENCHMARKS.md: a few points at most.
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
SERVERS=${BYOK_BENCH_SERVERS:-floor byok}
if [ "$PIN" = 1 ]; then SERVER_CPU=(taskset -c 0); WRK_CPU=(taskset -c 1); else SERVER_CPU=(); WRK_CPU=(); fi

. scripts/lib/toolchain.sh
ensure_toolchain
. scripts/lib/venv.sh
ensure_venv
if ! command -v wrk >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
# byok on its own: built with the examples, cargo would unify the dev-dependencies' features
# into it (tokio's test-util), and the binary measured would not be the one users build.
cargo build --release -p byok-server --bin byok --locked -q
cargo build --release -p byok-server --example http_floor --example floor_frame --locked -q
BYOK="$CARGO_TARGET_DIR/release/byok"

WORK=$(mktemp -d)
cleanup() {
  kill "${SERVER_PID:-}" "${MOTO_PID:-}" "${FLOOR_PID:-}" "${FRAME_PID:-}" 2>/dev/null || true
  if [ -n "${HALT_POLL_WAS:-}" ]; then echo "$HALT_POLL_WAS" >"$HALT_POLL"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -n "$HALT_POLL_NS" ]; then
  if [ ! -w "$HALT_POLL" ]; then
    echo "BYOK_BENCH_HALT_POLL_NS: $HALT_POLL is missing or not writable (needs root and the haltpoll governor)" >&2
    exit 2
  fi
  HALT_POLL_WAS=$(cat "$HALT_POLL")
  echo "$HALT_POLL_NS" >"$HALT_POLL"
fi
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_PORT=$(free_port)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null && break; sleep 0.1; done
"$VENV/bin/python" tools/moto_setup.py "http://127.0.0.1:$MOTO_PORT" >"$WORK/moto.json"
j() { "$VENV/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

PORT=$(free_port)
BYOK_DANGER_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT" \
BYOK_AWS_ACCESS_KEY_ID=$(j "$WORK/moto.json" 'd["users"]["byok"]["access_key_id"]') \
BYOK_AWS_SECRET_ACCESS_KEY=$(j "$WORK/moto.json" 'd["users"]["byok"]["secret_access_key"]') \
BYOK_AWS_PRINCIPAL_ARN=arn:aws:iam::123456789012:user/byok \
BYOK_LOG=warn BYOK_ORG_RATE_LIMIT=0 BYOK_TOKEN_RATE_LIMIT=0 \
  "${SERVER_CPU[@]}" "$BYOK" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "operator token" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
export BYOK_SERVER="http://127.0.0.1:$PORT"
export BYOK_TOKEN; BYOK_TOKEN=$(grep -o 'byok_[A-Za-z0-9_-]*' "$WORK/serve.out")
OPERATOR=$BYOK_TOKEN

"$BYOK" org create bench --unwrap-cache-ttl-ms "$TTL_MS" --json >"$WORK/org.json"
ORG=$(j "$WORK/org.json" 'd["id"]')
export BYOK_TOKEN; BYOK_TOKEN=$(j "$WORK/org.json" 'd["admin_token"]')
"$BYOK" key add --org "$ORG" --name bench --key-arn "$(j "$WORK/moto.json" 'd["key_arn"]')" --json >/dev/null
"$BYOK" key default --org "$ORG" cmk:1 --json >/dev/null
SCOPE=$("$BYOK" scope create --org "$ORG" --parent "$ORG" --name team --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
SERVICE=$("$BYOK" token create --org "$ORG" --role service --name bench --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')

"$VENV/bin/python" - "$WORK" <<'EOF'
import base64, json, os, sys
work = sys.argv[1]
pt = base64.b64encode(os.urandom(1024)).decode()
open(f"{work}/encrypt.json", "w").write(json.dumps({"plaintext": pt}))
EOF
curl -s -X POST -H "Authorization: Bearer $SERVICE" -H 'Content-Type: application/json' \
  --data @"$WORK/encrypt.json" "$BYOK_SERVER/v1/orgs/$ORG/scopes/$SCOPE/encrypt" \
  | "$VENV/bin/python" -c 'import json,sys; print(json.dumps({"ciphertext": json.load(sys.stdin)["ciphertext"]}))' >"$WORK/decrypt.json"

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local f = io.open(os.getenv("BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF
kms_calls() { curl -s -H "Authorization: Bearer $OPERATOR" "$BYOK_SERVER/metrics" | awk '/^byok_kms_calls_total /{print $2}'; }

FLOOR_PORT=$(free_port)
"${SERVER_CPU[@]}" "$CARGO_TARGET_DIR/release/examples/http_floor" "127.0.0.1:$FLOOR_PORT" >"$WORK/floor.out" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 100); do grep -q "listening" "$WORK/floor.out" 2>/dev/null && break; sleep 0.1; done
FLOOR="http://127.0.0.1:$FLOOR_PORT"
case " $SERVERS " in *" frame "*)
  FRAME_PORT=$(free_port)
  "${SERVER_CPU[@]}" "$CARGO_TARGET_DIR/release/examples/floor_frame" "127.0.0.1:$FRAME_PORT" >"$WORK/frame.out" 2>&1 &
  FRAME_PID=$!
  for _ in $(seq 100); do grep -q "listening" "$WORK/frame.out" 2>/dev/null && break; sleep 0.1; done
  FRAME="http://127.0.0.1:$FRAME_PORT"
esac

# One cell: wrk against URL with BODY; prints the RESULT line.
cell() { BENCH_TOKEN=$SERVICE BENCH_BODY="$WORK/$2.json" "${WRK_CPU[@]}" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/post.lua" "$1" | grep '^RESULT'; }
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k{print $2}'; }
# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Of which in user space: byok's own work. The kernel's share (the same two syscalls per request
# for every server here) is where this machine's noise shows most.
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)
# Clock ticks spent over N requests, in µs per request.
per_request() { awk -v t="$1" -v hz="$TICKS" -v n="$2" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'; }

echo "byok $("$BYOK" --version | cut -d' ' -f2), $(nproc) cores, wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, unwrap TTL ${TTL_MS} ms, 1 KiB plaintext, $ROUNDS rounds, pinned: $PIN, guest halt poll: $(cat "$HALT_POLL" 2>/dev/null || echo none) ns"
echo "floor: the same axum/tokio/serde stack doing the same JSON and base64 work, no token, crypto or audit (host-native/examples/http_floor.rs); cells interleaved"
echo "| round | op | server | req/s | p50 ms | p99 ms | server CPU µs/req | of which user | errors | non-2xx | KMS calls in run |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
ROWS="$WORK/rows.tsv"
: >"$ROWS"
for round in $(seq "$ROUNDS"); do
  for op in encrypt decrypt; do
    if [ "$op" = encrypt ]; then P="/v1/orgs/$ORG/scopes/$SCOPE/encrypt"; else P="/v1/orgs/$ORG/decrypt"; fi
    if [ $((round % 2)) = 1 ]; then ORDER=$SERVERS; else ORDER=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for server in $ORDER; do
      case $server in
        floor) BASE=$FLOOR; PID=$FLOOR_PID ;;
        frame) BASE=$FRAME; PID=$FRAME_PID ;;
        *) BASE=$BYOK_SERVER; PID=$SERVER_PID ;;
      esac
      before=$(kms_calls)
      t0=$(cpu_ticks "$PID"); u0=$(user_ticks "$PID")
      PERF_PID=
      if [ -n "$PROFILE" ] && [ "$round" = 1 ]; then
        mkdir -p "$PROFILE"
        perf record -q "${PROFILE_ARGS[@]}" -p "$PID" -o "$PROFILE/$op-$server.data" -- sleep "$((SECONDS_PER_RUN / 2))" 2>/dev/null &
        PERF_PID=$!
      fi
      STAT_PID=
      if [ -n "$STAT" ]; then
        mkdir -p "$STAT"
        perf stat --per-thread -e task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter,sched:sched_wakeup -p "$PID" \
          -o "$STAT/$round-$op-$server.txt" -- sleep "$SECONDS_PER_RUN" 2>/dev/null &
        STAT_PID=$!
      fi
      line=$(cell "$BASE$P" "$op")
      if [ -n "$PERF_PID" ]; then wait "$PERF_PID"; fi
      if [ -n "$STAT_PID" ]; then wait "$STAT_PID"; fi
      t1=$(cpu_ticks "$PID"); u1=$(user_ticks "$PID")
      after=$(kms_calls)
      per=$(per_request "$((t1 - t0))" "$(get "$line" requests)")
      user=$(per_request "$((u1 - u0))" "$(get "$line" requests)")
      echo "| $round | $op | $server | $(get "$line" rps) | $(get "$line" p50_ms) | $(get "$line" p99_ms) | $per | $user | $(get "$line" errors) | $(get "$line" non2xx) | $((after - before)) |"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$op" "$server" "$(get "$line" rps)" "$(get "$line" p99_ms)" "$per" "$user" >>"$ROWS"
    done
  done
done

# byok (and the frame) against the floor of the same round, then the median (and range) over
# rounds.
"$VENV/bin/python" - "$ROWS" <<'EOF'
import statistics, sys
cells = {}
for line in open(sys.argv[1]):
    rnd, op, server, rps, p99, cpu, user = line.split("\t")
    cells[(rnd, op, server)] = (float(rps), float(p99), float(cpu), float(user))
print()
print("| op | server | rounds | req/s as % of floor: median (min-max) | p99 / floor p99: median (min-max) | floor CPU / its CPU per request: median | user CPU µs/req over the floor's: median (min-max) |")
print("|---|---|---|---|---|---|---|")
for op in ("encrypt", "decrypt"):
    for server in ("frame", "byok"):
        rounds = sorted({r for (r, o, s) in cells if o == op and s == server})
        if not rounds:
            continue
        rps = [cells[(r, op, server)][0] / cells[(r, op, "floor")][0] * 100 for r in rounds]
        p99 = [cells[(r, op, server)][1] / cells[(r, op, "floor")][1] for r in rounds]
        cpu = [cells[(r, op, "floor")][2] / cells[(r, op, server)][2] * 100 for r in rounds]
        user = [cells[(r, op, server)][3] - cells[(r, op, "floor")][3] for r in rounds]
        print(f"| {op} | {server} | {len(rounds)} | {statistics.median(rps):.0f} % ({min(rps):.0f}-{max(rps):.0f}) "
              f"| {statistics.median(p99):.2f}x ({min(p99):.2f}-{max(p99):.2f}) | {statistics.median(cpu):.0f} % "
              f"| {statistics.median(user):+.1f} ({min(user):+.1f} to {max(user):+.1f}) |")
EOF
