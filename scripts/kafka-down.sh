#!/usr/bin/env bash
# Stops the broker started by kafka-up.sh (SIGTERM, then SIGKILL after 30 s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run="$MAILPIPE_RUN/kafka-${KAFKA_PORT:-19092}"
[ -f "$run/pid" ] || exit 0
pid=$(cat "$run/pid")
kill "$pid" 2>/dev/null || true
for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
rm -f "$run/pid"
