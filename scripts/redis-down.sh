#!/usr/bin/env bash
# Stops the redis-server started by redis-up.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run="$MAILPIPE_RUN/redis-${REDIS_PORT:-16379}"
[ -f "$run/pid" ] || exit 0
kill "$(cat "$run/pid")" 2>/dev/null || true
rm -f "$run/pid"
