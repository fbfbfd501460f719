#!/usr/bin/env bash
# Starts a real redis-server (Debian package, installed if missing) on loopback for tests.
# Idempotent. Prints the redis:// URL.   REDIS_PORT (default 16379)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
port=${REDIS_PORT:-16379}
run="$MAILPIPE_RUN/redis-$port"
if port_open 127.0.0.1 "$port"; then echo "redis://127.0.0.1:$port/0"; exit 0; fi
command -v redis-server >/dev/null || apt_install redis-server
mkdir -p "$run"
redis-server --bind 127.0.0.1 --port "$port" --dir "$run" --save "" --appendonly no \
  --daemonize yes --pidfile "$run/pid" --logfile "$run/redis.log"
if ! wait_port 127.0.0.1 "$port" 20; then
  echo "redis did not start" >&2; tail -n 20 "$run/redis.log" >&2; exit 1
fi
echo "redis://127.0.0.1:$port/0"
