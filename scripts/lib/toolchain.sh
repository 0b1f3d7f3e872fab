# Sourced by scripts: makes sure the pinned toolchain (rust-toolchain.toml) and its targets exist.
# rustc cannot be downloaded here; the machine's stable toolchain is 1.95.0. If rustup does not
# know it by its version name, link it under that name (offline, idempotent).
ensure_toolchain() {
  local want=1.95.0
  if ! rustup run "$want" rustc --version >/dev/null 2>&1; then
    local stable
    stable=$(rustup run stable rustc --version 2>/dev/null | awk '{print $2}')
    if [ "$stable" = "$want" ]; then
      rustup toolchain link "$want" "$(rustup run stable rustc --print sysroot)"
    else
      echo "need rustc $want (rust-toolchain.toml); stable is '$stable'" >&2
      return 1
    fi
  fi
  local installed
  installed=$(rustup target list --installed --toolchain "$want")
  for t in wasm32-unknown-unknown wasm32-wasip1 wasm32-wasip2 wasm32v1-none; do
    grep -qx "$t" <<<"$installed" || rustup target add --toolchain "$want" "$t"
  done
  rustc --version
}
