# Sourced by scripts: a Python venv with the pinned packages of tools/requirements.txt, outside
# the clone, reinstalled only when the requirements change.
ensure_venv() {
  VENV=${BYOK_VENV:-$CACHE/venv}
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(sha256sum tools/requirements.txt | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt
    echo "$want" >"$stamp"
  fi
}
