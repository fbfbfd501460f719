#!/usr/bin/env bash
# The README test command (make test): installs what the tests need, starts a real Kafka broker
# and redis-server, runs static checks and every module's tests with -race against them (unit,
# integration and e2e), then stops the services. A missing service fails the run; nothing skips.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAILPIPE_CACHE=${MAILPIPE_CACHE:-$HOME/.cache/mailpipe}
. scripts/lib.sh
# Ports: KAFKA_PORT / REDIS_PORT when given; otherwise the first free ones from the defaults up,
# so a broker or redis already running on this machine (a dev session, another checkout) is
# never mistaken for ours and never blocks the run.
fixed_kafka=${KAFKA_PORT:+1}
: "${KAFKA_PORT:=$(free_ports 19092 2)}" "${REDIS_PORT:=$(free_ports 16379 1)}"
: "${RSPAMD_PORT:=$(free_ports 21333 1)}" "${PG_PORT:=$(free_ports 15432 1)}"
export KAFKA_PORT REDIS_PORT RSPAMD_PORT PG_PORT
export MAILPIPE_TEST_REQUIRE_SERVICES=1

start=$(date +%s)
section() { printf '\n=== %s (%ss)\n' "$*" "$(($(date +%s) - start))"; }

section "installing test dependencies"
scripts/deps.sh

cleanup() {
  rc=$?
  if [ $rc -ne 0 ]; then
    for f in "$MAILPIPE_CACHE"/run/kafka-"$KAFKA_PORT"/kafka.log "$MAILPIPE_CACHE"/run/redis-"$REDIS_PORT"/redis.log \
      "$MAILPIPE_CACHE"/run/rspamd-"$RSPAMD_PORT"/rspamd.log "$MAILPIPE_CACHE"/run/postgres-"$PG_PORT"/postgres.log; do
      [ -f "$f" ] && { echo "--- last lines of $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  scripts/kafka-down.sh >/dev/null 2>&1 || true
  scripts/redis-down.sh >/dev/null 2>&1 || true
  scripts/rspamd-down.sh >/dev/null 2>&1 || true
  scripts/postgres-down.sh >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT

section "starting Kafka, Redis, rspamd and PostgreSQL"
for attempt in 1 2 3; do
  KAFKA_FRESH=1 scripts/kafka-up.sh && break
  [ -z "$fixed_kafka" ] && [ $attempt -lt 3 ] || exit 1
  KAFKA_PORT=$(free_ports $((KAFKA_PORT + 10)) 2)
  echo "retrying Kafka on port $KAFKA_PORT" >&2
done
scripts/redis-up.sh
scripts/rspamd-up.sh
scripts/postgres-up.sh
export MAILPIPE_TEST_POSTGRES_DSN="postgres://mailpipe:mailpipe@127.0.0.1:$PG_PORT/mailpipe_test?sslmode=disable"
export MAILPIPE_TEST_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export MAILPIPE_TEST_RSPAMD_URL="http://127.0.0.1:$RSPAMD_PORT"
export MAILPIPE_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

section "building the pinned Helm (chart checks in e2e/deploy; cached)"
make -s helm CACHE="$MAILPIPE_CACHE"
export MAILPIPE_HELM="$MAILPIPE_CACHE/bin/helm-$(make -s --no-print-directory print-helm-version).d/helm"

section "static checks: generated code, tidy modules, vet, lint"
make -s check-generated
make -s tidy-check
make -s vet
make -s lint

section "tests (unit + integration + e2e, -race, real Kafka and Redis)"
failed=0
for m in $(scripts/modules.sh); do
  (cd "$m" && go test -race -count=1 -timeout 25m ./...) || failed=1
done
echo "make test took $(($(date +%s) - start))s" >&2
exit $failed
