# Routine commands. `just --list` shows them. Each is a thin alias: the scripts are the truth.

# run byok serve with the embedded defaults
run:
    cargo run --release -p byok-server -- serve

# every test, as CI runs it
test:
    ./scripts/test.sh

# criterion benchmarks of core (both backends)
bench:
    cargo bench -p byok-core --bench envelope

# load test of byok serve (wrk on loopback, KMS calls counted)
bench-server seconds="60":
    BYOK_BENCH_SECONDS={{seconds}} ./scripts/bench-server.sh

# schemathesis against a live server (fails on any 5xx)
api-fuzz:
    ./scripts/schemathesis.sh

# regenerate docs/openapi.json from the code (a test compares them)
openapi:
    cargo run -q -p byok-server -- openapi > docs/openapi.json

# regenerate the error-code table in docs/server.md from ApiCode (a test compares them)
error-codes:
    cargo run -q -p byok-server -- error-codes | awk 'FNR==NR { t = t $0 "\n"; next } /<!-- error-codes:end -->/ { printf "%s", t; skip = 0 } !skip { print } /<!-- error-codes:begin -->/ { skip = 1 }' - docs/server.md > docs/server.md.new && mv docs/server.md.new docs/server.md

# fuzz every target for N seconds
fuzz seconds="60":
    ./scripts/fuzz.sh {{seconds}}

# regenerate the vectors (only when the format changes on purpose)
vectors:
    cargo run -p byok-core --features dev --example gen_vectors -- vectors

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# fast gate before a commit: fmt, clippy, unit tests and core's integration tests (no moto,
# no wasm, no Python). Warm, 2 cores: about 9 s with nothing changed, 40 s after editing core
# (core's integration tests are 5 s of the 9).
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo test --workspace --lib --locked
    cargo test -p byok-core --features dev,kms --locked --tests

# core for the three wasm targets, as scripts/test.sh builds it (no_std, browser, WASI)
wasm:
    cargo build -p byok-core --no-default-features --target wasm32v1-none --locked
    cargo build -p byok-core --features kms --target wasm32-unknown-unknown --locked
    cargo build -p byok-core --features kms --target wasm32-wasip1 --locked
