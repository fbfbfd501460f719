#!/usr/bin/env bash
# Stops the rspamd started by rspamd-up.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run="$MAILPIPE_RUN/rspamd-${RSPAMD_PORT:-21333}"
[ -f "$run/pid" ] || exit 0
pid=$(cat "$run/pid")
kill "$pid" 2>/dev/null || true
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
pkill -9 -f "rspamd.*$run/rspamd.conf" 2>/dev/null || true
rm -f "$run/pid"
