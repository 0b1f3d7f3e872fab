#!/usr/bin/env bash
# Builds the JS package of host-wasm: the wasm32-unknown-unknown module, then wasm-bindgen
# (`--target web`: an ES module for browsers, Workers, Deno and Node) into host-wasm/pkg.
# Installs the wasm-bindgen CLI of the exact version host-wasm pins, once, under the cache.
#
#   ./scripts/build-wasm.sh            # release build into host-wasm/pkg
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BYOK_CACHE:-$HOME/.cache/byok}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
. scripts/lib/toolchain.sh
ensure_toolchain
VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' host-wasm/Cargo.toml)
BINDGEN="$CACHE/tools/bin/wasm-bindgen"
if ! "$BINDGEN" --version 2>/dev/null | grep -qx "wasm-bindgen $VERSION"; then
  # Not --locked: one of its locked dependencies is missing from the registry (DESIGN.md).
  cargo install wasm-bindgen-cli --version "$VERSION" --root "$CACHE/tools" --force
fi
cargo build --release -p byok-wasm --target wasm32-unknown-unknown --locked
rm -rf host-wasm/pkg
"$BINDGEN" --target web --out-dir host-wasm/pkg \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/byok_wasm.wasm"
# The lease client every edge shares, beside the module it drives.
cp host-wasm/js/lease_client.js host-wasm/js/lease_client.d.ts host-wasm/pkg/
gz=$(gzip -9 -c host-wasm/pkg/byok_wasm_bg.wasm | wc -c)
js=$(gzip -9 -c host-wasm/pkg/byok_wasm.js | wc -c)
echo "host-wasm/pkg: wasm $gz B + js $js B gzipped"
