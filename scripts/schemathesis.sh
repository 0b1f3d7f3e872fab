#!/usr/bin/env bash
# Schemathesis against a live `byok serve`: generates requests from /openapi.json (valid and
# invalid) with the operator, admin and service tokens of a real org, and fails on any 5xx.
#
#   ./scripts/schemathesis.sh               # BYOK_ST_EXAMPLES=30 per operation and phase
#
# Uses its own venv (tools/requirements-schemathesis.txt). Traffic goes only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
EXAMPLES=${BYOK_ST_EXAMPLES:-30}

VENV_ST=${BYOK_VENV_ST:-$CACHE/venv-st}
want=$(sha256sum tools/requirements-schemathesis.txt | cut -d' ' -f1)
if [ ! -x "$VENV_ST/bin/python" ]; then python3 -m venv "$VENV_ST"; fi
if [ "$(cat "$VENV_ST/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  "$VENV_ST/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-schemathesis.txt
  echo "$want" >"$VENV_ST/.requirements.sha256"
fi

cargo build -p byok-server --bin byok --locked -q
BYOK="$CARGO_TARGET_DIR/debug/byok"
WORK=$(mktemp -d)
cleanup() { kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# A configured server: with no vendor principal, key validate and policy answer 501
# not_configured by design (tests/tests/server_edges.rs pins that), which is not a bug to fuzz.
# Rate limits off: the fuzzer is one client sending as fast as it can.
BYOK_LOG=warn BYOK_AWS_PRINCIPAL_ARN=arn:aws:iam::123456789012:user/byok BYOK_ORG_RATE_LIMIT=0 BYOK_TOKEN_RATE_LIMIT=0 \
  "$BYOK" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "operator token" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
BYOK_SERVER=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out")
export BYOK_SERVER
OPERATOR=$(grep -o 'byok_[A-Za-z0-9_-]*' "$WORK/serve.out")
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
ORG_JSON=$(BYOK_TOKEN=$OPERATOR "$BYOK" org create fuzzed --json)
ORG=$(echo "$ORG_JSON" | field '["id"]')
ADMIN=$(echo "$ORG_JSON" | field '["admin_token"]')
SCOPE=$(BYOK_TOKEN=$ADMIN "$BYOK" scope create --org "$ORG" --parent "$ORG" --name team --json | field '["id"]')
SERVICE=$(BYOK_TOKEN=$ADMIN "$BYOK" token create --org "$ORG" --role service --name fuzz --json | field '["token"]')

# Real ids for the path parameters, so that requests reach the handlers' logic, not only the
# id check.
cat >"$WORK/schemathesis.toml" <<EOF
[parameters]
"path.org" = "$ORG"
"path.scope" = "$SCOPE"
EOF

# `filter_too_much` is Hypothesis saying it threw away many generated inputs for one operation
# (a path pattern it rarely meets): a fact about the generator, not the server, and it came and
# went between runs of the same code. The check that matters, no 5xx, still runs everywhere.
# `--generation-deterministic`: Hypothesis's engine crashed inside itself (IndexError in its
# shrinker's Pareto pass, which replays cases that schemathesis steers by each operation's
# success rate, a value that moves with the server's state) in three runs in a row, with every
# case passed and no 5xx; `--no-shrink` did not avoid it. The same cases each run keeps the gate
# about byok; `BYOK_FUZZ_SECONDS`-style variety belongs to the fuzz targets.
# The claim (`POST .../tokens/claim`) revokes every admin token but the one it makes, the
# caller's included: run by the fuzzer it would leave the admin phase with a revoked token and
# test nothing after it (tests/tests/server_api.rs covers it).
status=0
for who in operator admin service; do
  case $who in operator) T=$OPERATOR ;; admin) T=$ADMIN ;; service) T=$SERVICE ;; esac
  echo "== schemathesis as $who"
  if ! (cd "$WORK" && "$VENV_ST/bin/st" --config-file "$WORK/schemathesis.toml" run "$BYOK_SERVER/openapi.json" \
      -H "Authorization: Bearer $T" --checks not_a_server_error --max-examples "$EXAMPLES" \
      --exclude-path '/v1/orgs/{org}/tokens/claim' \
      --suppress-health-check=filter_too_much --generation-deterministic --workers 1 --no-color); then
    status=1
  fi
done
if grep -q "panicked" "$WORK/serve.log"; then
  echo "the server panicked:"; grep -A5 panicked "$WORK/serve.log"; status=1
fi
exit $status
