#!/usr/bin/env bash
# Starts a real rspamd (Debian package, installed if missing) on loopback for the classifier's
# spam integration test: one normal worker serving /checkv2 on RSPAMD_PORT (default 21333), with
# the stock rules. This machine has no outside network, so DNS points at a closed port (lookups
# fail at once instead of timing out) and the modules that only query remote lists are off.
# Idempotent. Prints the base URL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
port=${RSPAMD_PORT:-21333}
run="$MAILPIPE_RUN/rspamd-$port"
url="http://127.0.0.1:$port"
if port_open 127.0.0.1 "$port"; then echo "$url"; exit 0; fi
command -v rspamd >/dev/null || apt_install rspamd
mkdir -p "$run/local/local.d" "$run/db"
cat >"$run/rspamd.conf" <<CONF
.include "\$CONFDIR/common.conf"
options {
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }
}
logging {
    type = "file";
    filename = "\$LOGDIR/rspamd.log";
    level = "warning";
}
worker "normal" {
    bind_socket = "127.0.0.1:$port";
    count = 1;
    .include "\$CONFDIR/worker-normal.inc"
}
CONF
for m in rbl surbl fuzzy_check phishing asn dcc spamassassin neural ratelimit replies greylist \
  history_redis reputation url_reputation; do
  echo "enabled = false;" >"$run/local/local.d/$m.conf"
done
user=$(id -un); group=$(id -gn)
nohup rspamd -f -u "$user" -g "$group" -c "$run/rspamd.conf" --var=LOCAL_CONFDIR="$run/local" \
  --var=DBDIR="$run/db" --var=RUNDIR="$run" --var=LOGDIR="$run" >"$run/out.log" 2>&1 &
echo $! >"$run/pid"
# The first start compiles the stock rules' regular expressions, which takes a while on 2 cores.
if ! wait_port 127.0.0.1 "$port" 120; then
  echo "rspamd did not start; last lines of $run/rspamd.log:" >&2
  tail -n 30 "$run/rspamd.log" "$run/out.log" >&2 || true
  kill "$(cat "$run/pid")" 2>/dev/null || true
  exit 1
fi
echo "$url"
