#!/usr/bin/env bash
# Runs every test of byok on a fresh machine that has only the Rust toolchain, Python 3 and Node:
# it installs what it needs (wasm targets, a Python venv, cargo-fuzz, PostgreSQL and Chromium from
# Debian) idempotently, so a second run skips the installs.
#
#   ./scripts/test.sh            everything (what CI runs)
#   BYOK_FUZZ_SECONDS=60 ./scripts/test.sh    longer fuzzing
#
# Build products go to $CARGO_TARGET_DIR (default: ~/.cache/byok/target, outside the clone, so
# repeat runs are fast); installs go to ~/.cache/byok. Neither is required to exist.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
FUZZ_SECONDS=${BYOK_FUZZ_SECONDS:-20}
mkdir -p "$CACHE"

step() { printf '\n== %s\n' "$*"; }
passed=0
failed=0
check() { # check NAME CMD... : runs a gate, counts it, stops at the first failure
  local name=$1; shift
  step "$name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; summary; exit 1; fi
}
summary() { echo; echo "gates: $passed passed, $failed failed"; }

step "toolchain"
. scripts/lib/toolchain.sh
ensure_toolchain

check "rustfmt" cargo fmt --all -- --check
check "clippy (workspace, all targets, -D warnings)" cargo clippy --workspace --all-targets --locked -- -D warnings
check "clippy (core without default features)" cargo clippy -p byok-core --no-default-features --locked -- -D warnings
check "no_std: core for wasm32v1-none" cargo build -p byok-core --no-default-features --target wasm32v1-none --locked
check "core for wasm32-unknown-unknown (kms, audit-log)" cargo build -p byok-core --features kms,audit-log --target wasm32-unknown-unknown --locked
check "core for wasm32-wasip1 (kms)" cargo build -p byok-core --features kms --target wasm32-wasip1 --locked
check "docs (missing_docs denied in core and server)" env RUSTDOCFLAGS="-D warnings -D missing_docs" cargo doc -p byok-core -p byok-server --no-deps --features byok-core/dev,byok-core/aws-lc,byok-core/kms --locked
step "python venv (moto, botocore, cryptography)"
. scripts/lib/venv.sh
ensure_venv
export BYOK_VENV="$VENV"
check "independent audit-log verifier: self-test (RFC 6962, C2SP notes)" "$VENV/bin/python" tools/audit_verify.py self-test

check "host-wasm: clippy for wasm32-unknown-unknown (the JS bindings)" \
  cargo clippy -p byok-wasm --target wasm32-unknown-unknown --locked -- -D warnings
check "host-wasm: JS package (wasm-bindgen) and the vectors through it in Node (before cargo test: tests/tests/edge_node.rs runs it live)" \
  bash -c 'scripts/build-wasm.sh && node --test host-wasm/tests/node/'
check "host-wasm in headless Chromium: the vectors through both AES paths (Debian chromium, playwright-core pinned)" \
  bash -c '. scripts/lib/chromium.sh && ensure_chromium && npm ci --prefix host-wasm/tests/browser --no-audit --no-fund && node --test host-wasm/tests/browser/'
check "host-wasm: clippy for wasm32-wasip2 (the wasi:http component)" \
  cargo clippy -p byok-wasm --target wasm32-wasip2 --locked -- -D warnings
check "host-wasm: the wasi:http component (before cargo test: tests/tests/edge_wasi.rs runs it under wasmtime)" \
  cargo build --release -p byok-wasm --target wasm32-wasip2 --locked
check "workerd for the example Worker (npm ci, pinned in its package-lock.json)" \
  npm ci --prefix host-wasm/examples/worker --no-audit --no-fund

step "PostgreSQL (Debian's packages; a throwaway cluster on 127.0.0.1)"
. scripts/lib/postgres.sh
start_postgres
echo "cluster at $BYOK_TEST_POSTGRES_URL"

check "cargo test (workspace; AWS tests against moto; store tests on SQLite and PostgreSQL)" cargo test --workspace --locked
check "the API suites again, with byok serve on PostgreSQL" env BYOK_TEST_BACKEND=postgres \
  cargo test -p byok-tests --test server_api --test withdrawal --locked
check "schemathesis against a live server: no 5xx" scripts/schemathesis.sh
check "1 GiB stream in constant memory" cargo run --release -p byok-core --features dev,aws-lc --example stream_rss --locked

check "vectors verified by Python cryptography" "$VENV/bin/python" tools/verify_vectors.py vectors
check "vectors catch broken readers (no commitment, unsorted context, no armor, ...)" \
  "$VENV/bin/python" tools/verify_vectors.py --mutants vectors
check "SigV4 known answers recomputed by botocore" "$VENV/bin/python" tools/sigv4_kat.py

check "vectors on wasm32-wasip1 under Node's WASI" env CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $ROOT/tools/wasi-run.mjs" \
  cargo test -p byok-wasm --target wasm32-wasip1 --locked
check "vectors on wasm32-wasip1 under the wasmtime crate (tests/src/bin/wasi-run.rs)" bash -c \
  'cargo build -q -p byok-tests --bin wasi-run --locked && CARGO_TARGET_WASM32_WASIP1_RUNNER="$CARGO_TARGET_DIR/debug/wasi-run" cargo test -p byok-wasm --target wasm32-wasip1 --locked'

check "fuzz (${FUZZ_SECONDS}s per target)" scripts/fuzz.sh "$FUZZ_SECONDS"

summary
