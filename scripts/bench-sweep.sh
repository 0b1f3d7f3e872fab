#!/usr/bin/env bash
# What a revoke of a scope with many stored data keys costs the database, both ways, on SQLite
# (the server's pragmas) and on PostgreSQL (a throwaway cluster, as the test command starts):
# the old way, one DELETE of the scope's rows in the revoke's transaction, against the sweep,
# batches of 2000 rows a transaction (host-native/src/store/sweep.rs, the same statements).
# The figure that matters is how long one transaction holds the writer (SQLite) or the org's
# row (PostgreSQL), and whether it fits PostgreSQL's 10 s statement timeout.
#
#   ./scripts/bench-sweep.sh              # 1 000 000 keys
#   BYOK_SWEEP_KEYS=3000000 ./scripts/bench-sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BYOK_SWEEP_KEYS:-1000000}
BATCH=2000
python3 tools/bench_sweep.py sqlite "$N" "$BATCH"
. scripts/lib/postgres.sh
start_postgres >/dev/null
U="${BYOK_TEST_POSTGRES_URL%/*}"
P="$PG_BIN/psql"
"$P" "$U/postgres" -qc "DROP DATABASE IF EXISTS byok_sweep" -c "CREATE DATABASE byok_sweep" 2>/dev/null
for m in host-native/migrations-postgres/*.sql; do
  "$P" "$U/byok_sweep" -q -v ON_ERROR_STOP=1 -f "$m" >/dev/null
done
python3 tools/bench_sweep.py postgres "$N" "$BATCH" "$P" "$U/byok_sweep"
