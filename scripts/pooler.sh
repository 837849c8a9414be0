#!/usr/bin/env bash
# A PgBouncer in transaction mode in front of $DATABASE_URL's server, as managed
# PostgreSQL users often run (PgBouncer, Supabase's pooler, Neon): each
# transaction may land on a different server session, so nothing vidx does may
# rely on session state (leases, not session advisory locks; no prepared statements).
#
# Usage (CI's external pass; needs the `pgbouncer` Debian package):
#   eval "$(scripts/pooler.sh start)"   # prints `export DATABASE_URL=...` (through the pooler)
#   scripts/pooler.sh stop
# Knobs: VIDX_POOLER_DIR (state dir, default .vidx/pooler in this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

PATH="$PATH:/usr/sbin"  # where Debian puts pgbouncer
STATE=${VIDX_POOLER_DIR:-$PWD/.vidx/pooler}  # the repo's ignored state dir: never a predictable /tmp path
PY=${VIDX_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
log() { echo "[pooler] $*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  start)
    command -v pgbouncer >/dev/null || die "pgbouncer is not installed (apt-get install pgbouncer)"
    [ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL must name the server to pool"
    read -r host port user < <("$PY" -c '
import os, sys
from urllib.parse import urlsplit
u = urlsplit(os.environ["DATABASE_URL"])
print(u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres")')
    [ -f "$STATE/pgbouncer.pid" ] && kill "$(cat "$STATE/pgbouncer.pid")" 2>/dev/null && sleep 0.5
    listen=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    [ -L "$STATE" ] && die "$STATE is a symbolic link: refusing it"
    rm -rf "$STATE"   # a fresh private directory each start: nothing in it predates this run
    mkdir -p "$(dirname "$STATE")" && mkdir -m 0700 "$STATE"
    # Run as a non-root user: pgbouncer refuses to run as root.
    owner=$(id -un); [ "$(id -u)" = "0" ] && owner=nobody
    chown "$owner" "$STATE" 2>/dev/null || true
    cat > "$STATE/pgbouncer.ini" <<EOF
[databases]
* = host=$host port=$port user=$user
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $listen
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_idle_timeout = 1
ignore_startup_parameters = extra_float_digits,options
logfile = $STATE/pgbouncer.log
pidfile = $STATE/pgbouncer.pid
EOF
    chown "$owner" "$STATE/pgbouncer.ini" 2>/dev/null || true
    if [ "$(id -u)" = "0" ]; then
      runuser -u "$owner" -- pgbouncer -d "$STATE/pgbouncer.ini"
    else
      pgbouncer -d "$STATE/pgbouncer.ini"
    fi
    url=$("$PY" -c '
import os, sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(os.environ["DATABASE_URL"])
netloc = (u.username + "@" if u.username else "") + "127.0.0.1:" + sys.argv[1]
print(urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)))' "$listen")
    for _ in $(seq 50); do
      "$PY" -c 'import psycopg, sys; psycopg.connect(sys.argv[1], connect_timeout=1).close()' "$url" 2>/dev/null \
        && { echo "export DATABASE_URL=$url"; log "pgbouncer (transaction mode) on 127.0.0.1:$listen -> $host:$port"; exit 0; }
      sleep 0.2
    done
    die "pgbouncer did not answer; see $STATE/pgbouncer.log"
    ;;
  stop)
    if [ -f "$STATE/pgbouncer.pid" ]; then
      kill "$(cat "$STATE/pgbouncer.pid")" 2>/dev/null || true
    fi
    rm -rf "$STATE"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
