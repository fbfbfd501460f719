#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, idempotently: Java 17 and Maven (the
# Kafka broker is fetched by scripts/kafka-up.sh), redis-server, rspamd (spam integration test), PostgreSQL (the Postgres CRM sink),
# swaks and kcat (interop clients),
# postfix for its smtp-source load client (make bench), and the Python libraries the lake-topic
# interop test and the analysts' DuckDB check use (confluent-kafka, fastavro, duckdb), and Node.js with the peer MIME parsers
# (mailparser, postal-mime; scripts/node) that the parser cross-check and benchmark run, and
# Chromium with playwright-core (scripts/node) for the ops console's browser test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
pkgs=(redis-server swaks kcat rspamd postgresql chromium)
command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || pkgs+=(maven)
command -v python3 >/dev/null || pkgs+=(python3 python3-pip)
command -v npm >/dev/null || pkgs+=(nodejs npm)
# Only smtp-source is wanted from postfix. "No configuration" makes the package write no main.cf,
# so it starts no MTA on port 25; a daemon started anyway (an older configured install) is stopped.
if ! dpkg -s postfix >/dev/null 2>&1; then
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  pkgs+=(postfix)
fi
# dpkg refuses every install while a stat override names a user or group that no longer exists
# (seen on a machine whose /etc/passwd was reset after redis-server was installed); dropping the
# override is dpkg's own advice, and the package's next configure sets it again if it needs it.
while read -r user group _ path; do
  getent passwd "$user" >/dev/null && getent group "$group" >/dev/null && continue
  echo "removing the stale dpkg stat override of $path ($user:$group is gone)" >&2
  $sudo dpkg-statoverride --remove "$path" || true
done < <(dpkg-statoverride --list 2>/dev/null || true)
apt_install "${pkgs[@]}"
if [ -x /usr/sbin/postfix ] && /usr/sbin/postfix status >/dev/null 2>&1; then
  echo "stopping the postfix daemon the package started (only smtp-source is used)" >&2
  $sudo /usr/sbin/postfix stop >/dev/null 2>&1 || true
fi
if ! python3 -c 'import confluent_kafka, fastavro, duckdb' 2>/dev/null; then
  echo "installing confluent-kafka fastavro duckdb (pip)" >&2
  python3 -m pip install -q --disable-pip-version-check confluent-kafka fastavro duckdb >&2 ||
    python3 -m pip install -q --break-system-packages confluent-kafka fastavro duckdb >&2
fi
# The peer parsers, pinned by scripts/node/package-lock.json; reinstalled when the lock changes.
if ! cmp -s "$here/node/package-lock.json" "$here/node/node_modules/.package-lock.json.installed" 2>/dev/null; then
  echo "installing the peer MIME parsers and playwright-core (npm ci in scripts/node)" >&2
  (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$here/node/package-lock.json" "$here/node/node_modules/.package-lock.json.installed"
fi
