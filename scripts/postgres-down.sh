#!/usr/bin/env bash
# Stops the PostgreSQL server started by postgres-up.sh; the cluster stays for the next start
# (postgres-up.sh PG_FRESH=1 wipes it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
port=${PG_PORT:-15432}
run="$MAILPIPE_RUN/postgres-$port"
base="$run"
[ -L "$run/cluster" ] && base=$(readlink -f "$run/cluster")
[ -f "$base/data/postmaster.pid" ] || exit 0
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as=()
[ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
"${as[@]}" "$bin/pg_ctl" -D "$base/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
