#!/usr/bin/env bash
# Starts a real single-node Apache Kafka 4.x broker in KRaft mode on loopback, for integration and
# e2e tests. The broker jars come from Maven Central (scripts/kafka/pom.xml) and are cached; the
# broker runs on the machine's Java 17 with transactions enabled at replication factor 1.
# Idempotent: a broker already listening is left as it is. Prints the bootstrap address.
#   KAFKA_PORT (default 19092; the controller takes KAFKA_PORT+1)  KAFKA_FRESH=1 wipes the data
#   directory first. Defaults sit below Linux's ephemeral range (32768+), where an outgoing
#   connection can hold the port and make the broker's bind fail. KAFKA_EXTRA_PROPERTIES, lines of
#   key=value, are appended to server.properties (make bench-pipeline bounds its disk use with them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
port=${KAFKA_PORT:-19092}
cport=$((port + 1))
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
libs="$MAILPIPE_CACHE/kafka-$version/libs"
run="$MAILPIPE_RUN/kafka-$port"

if port_open 127.0.0.1 "$port"; then echo "127.0.0.1:$port"; exit 0; fi

command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven
if [ ! -f "$libs/kafka_2.13-$version.jar" ]; then
  echo "fetching Kafka $version from Maven Central" >&2
  rm -rf "$libs.tmp"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs.tmp" -DincludeScope=runtime >&2
  rm -rf "$libs" && mv "$libs.tmp" "$libs"
fi

[ "${KAFKA_FRESH:-0}" = 1 ] && rm -rf "$run"
mkdir -p "$run/data"
cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/data
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=1
PROPS
if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then printf '%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$run/server.properties"; fi
cp=("$libs/*")
jopts=(-Xms256m -Xmx768m -XX:+UseG1GC -Dlog4j2.configurationFile="$here/kafka/log4j2.properties")
if [ ! -f "$run/data/meta.properties" ]; then
  cluster=$(java "${jopts[@]}" -cp "${cp[*]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
  java "${jopts[@]}" -cp "${cp[*]}" kafka.tools.StorageTool format -t "$cluster" \
    -c "$run/server.properties" >"$run/format.log" 2>&1
fi
nohup java "${jopts[@]}" -cp "${cp[*]}" kafka.Kafka "$run/server.properties" >"$run/kafka.log" 2>&1 &
echo $! >"$run/pid"
if ! wait_port 127.0.0.1 "$port" 90; then
  echo "kafka did not start; last lines of $run/kafka.log:" >&2
  grep -m1 -B2 'BindException' "$run/kafka.log" >&2 || tail -n 40 "$run/kafka.log" >&2
  kill "$(cat "$run/pid")" 2>/dev/null || true
  rm -f "$run/pid"
  exit 1
fi
echo "127.0.0.1:$port"
