# Sourced by scripts: a throwaway PostgreSQL cluster on 127.0.0.1 for the tests (DESIGN.md:
# Debian's packages, initdb + pg_ctl, fsync off). Installs the packages once (a no-op when
# present); every call starts a new cluster in a temporary directory, exports
# BYOK_TEST_POSTGRES_URL (an admin URL; tests make a fresh database each) and stops the cluster
# when the calling shell exits.
ensure_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  PG_BIN=$bin
}

start_postgres() {
  ensure_postgres
  PG_DIR=$(mktemp -d /tmp/byok-pg.XXXXXX)
  # initdb refuses to run as root: as root, the cluster belongs to the `postgres` user that
  # Debian's package makes.
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U byok --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log"; return 1; }
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Throwaway: no fsync, loopback only, the socket in the cluster's own directory. Enough
  # connections for the replica tests (each replica pools 8, and the tests run in parallel).
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -s \
    -o "-F -p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400" start \
    || { cat "$PG_DIR/server.log"; return 1; }
  export BYOK_TEST_POSTGRES_URL="postgres://byok@127.0.0.1:$PG_PORT/postgres"
  export BYOK_TEST_REQUIRE_POSTGRES=1
  PG_STOP=("${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -s stop)
  trap 'stop_postgres' EXIT
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=
  fi
}
