#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, idempotently: Java 17 and Maven (the
# Kafka broker is fetched by scripts/kafka-up.sh), redis-server, swaks and kcat (interop clients),
# and the Python libraries the lake-topic interop test uses (confluent-kafka, fastavro).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
pkgs=(redis-server swaks kcat)
command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || pkgs+=(maven)
command -v python3 >/dev/null || pkgs+=(python3 python3-pip)
apt_install "${pkgs[@]}"
if ! python3 -c 'import confluent_kafka, fastavro' 2>/dev/null; then
  echo "installing confluent-kafka fastavro (pip)" >&2
  python3 -m pip install -q --disable-pip-version-check confluent-kafka fastavro >&2 ||
    python3 -m pip install -q --break-system-packages confluent-kafka fastavro >&2
fi
