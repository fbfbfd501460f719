#!/usr/bin/env bash
# Starts a real PostgreSQL server (Debian package, installed if missing) on loopback for tests: a
# throwaway cluster (fsync off) with role mailpipe (password mailpipe, CREATEDB: each test creates
# its own database) and database mailpipe_test. Idempotent. Prints the DSN.
#   PG_PORT (default 15432)   PG_FRESH=1 wipes the cluster first
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
port=${PG_PORT:-15432}
run="$MAILPIPE_RUN/postgres-$port"
dsn="postgres://mailpipe:mailpipe@127.0.0.1:$port/mailpipe_test?sslmode=disable"
if port_open 127.0.0.1 "$port"; then echo "$dsn"; exit 0; fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
mkdir -p "$run"

# PostgreSQL refuses to run as root. As root, the cluster belongs to the postgres user (created
# the way the package does when /etc/passwd lacks it) and lives where that user can reach: the
# run directory when its parents are traversable, else /var/tmp (a root home is mode 700); the
# run directory then links to it.
as=()
base="$run"
if [ "$(id -u)" -eq 0 ]; then
  if ! getent passwd postgres >/dev/null; then
    getent group postgres >/dev/null || groupadd --system postgres
    useradd --system --gid postgres --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin postgres
  fi
  as=(runuser -u postgres --)
  if ! "${as[@]}" test -x "$MAILPIPE_RUN"; then
    base="/var/tmp/mailpipe-postgres-$port"
    ln -sfn "$base" "$run/cluster"
  fi
fi
if [ "${PG_FRESH:-}" = 1 ]; then rm -rf "$base/data"; fi
mkdir -p "$base"
[ ${#as[@]} -eq 0 ] || chown postgres:postgres "$base"
chmod 700 "$base"
ln -sfn "$base/postgres.log" "$run/postgres.log" 2>/dev/null || true

if [ ! -f "$base/data/PG_VERSION" ]; then
  pw="$base/pwfile"
  echo postgres >"$pw"
  [ ${#as[@]} -eq 0 ] || chown postgres:postgres "$pw"
  "${as[@]}" "$bin/initdb" -D "$base/data" -U postgres --pwfile="$pw" -E UTF8 --no-locale \
    --auth-host=scram-sha-256 --auth-local=trust >"$base/initdb.log" 2>&1 ||
    { echo "initdb failed" >&2; tail -n 20 "$base/initdb.log" >&2; exit 1; }
  rm -f "$pw"
fi
# Loopback TCP only (no Unix socket, whose default directory may not exist); durability off,
# the cluster is thrown away.
if ! "${as[@]}" "$bin/pg_ctl" -D "$base/data" -l "$base/postgres.log" -w -t 60 -o \
  "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='' -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null; then
  echo "postgres did not start" >&2; tail -n 20 "$base/postgres.log" >&2; exit 1
fi
if ! wait_port 127.0.0.1 "$port" 30; then
  echo "postgres is not listening on $port" >&2; tail -n 20 "$base/postgres.log" >&2; exit 1
fi
sql() { PGPASSWORD=postgres "$bin/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "$1"; }
[ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = 'mailpipe'")" = 1 ] ||
  sql "CREATE ROLE mailpipe LOGIN CREATEDB PASSWORD 'mailpipe'"
[ "$(sql "SELECT 1 FROM pg_database WHERE datname = 'mailpipe_test'")" = 1 ] ||
  sql "CREATE DATABASE mailpipe_test OWNER mailpipe"
echo "$dsn"
