# Sourced by scripts: Debian's Chromium for the browser tests (DESIGN.md: playwright-core drives
# /usr/bin/chromium; no browser download). Installed with apt once; a no-op when present.
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then
    return 0
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  /usr/bin/chromium --version
}
