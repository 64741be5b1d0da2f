#!/usr/bin/env bash
# Prints every metric name the service binaries export, one per line: starts tollgate-proxy,
# tollgate-metering and tollgate-control-api (debug builds) against the local services on a
# private database, topic and ports, scrapes each /metrics, and stops them. Used by
# scripts/chart-checks.sh to hold the dashboards, alerts and adapter rules to real names.
#
# Needs the local services (make services). Settings: TOLLGATE_METRICS_CHECK_PORT (first of
# five consecutive ports, default 58190).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BASE=${TOLLGATE_METRICS_CHECK_PORT:-58190}
WORK="$TARGET_DIR/metric-names"
log() { printf '[metric-names] %s\n' "$*" >&2; }
die() { printf '[metric-names] error: %s\n' "$*" >&2; exit 1; }

[ -f "$ROOT/.tollgate/stack.env" ] || die "no .tollgate/stack.env: run 'make services' first"
# shellcheck disable=SC1091
. "$ROOT/.tollgate/stack.env"

bins=(tollgate-proxy tollgate-metering tollgate-control-api)
missing=()
for b in "${bins[@]}"; do [ -x "$TARGET_DIR/debug/$b" ] || missing+=(-p "$b"); done
[ ${#missing[@]} -eq 0 ] || (cd "$ROOT" && cargo build --locked --quiet "${missing[@]}" >&2)

rm -rf "$WORK" && mkdir -p "$WORK/spool"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

db_name=tollgate_metric_names
db_url="${DATABASE_URL%/*}/$db_name"
/usr/lib/postgresql/15/bin/psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" \
  -c "CREATE DATABASE $db_name" >&2
TOLLGATE_DATABASE_URL=$db_url "$TARGET_DIR/debug/tollgate-control-api" migrate >/dev/null
pepper=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
topic="metric-names-$$"

proxy_admin=127.0.0.1:$((BASE + 1)) metering_admin=127.0.0.1:$((BASE + 2))
api=127.0.0.1:$((BASE + 3)) api_admin=127.0.0.1:$((BASE + 4))
TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KEY_PEPPER=$pepper TOLLGATE_REDIS_URL=$REDIS_URL \
  TOLLGATE_REDIS_KEY_PREFIX="metric-names-$$:" TOLLGATE_KAFKA_BROKERS=$KAFKA_BROKERS \
  TOLLGATE_USAGE_TOPIC=$topic TOLLGATE_USAGE_SPOOL_DIR="$WORK/spool" TOLLGATE_PROXY_GRACE_SECONDS=1 \
  TOLLGATE_PROXY_LISTEN=127.0.0.1:$BASE TOLLGATE_PROXY_ADMIN_LISTEN=$proxy_admin \
  "$TARGET_DIR/debug/tollgate-proxy" >"$WORK/proxy.log" 2>&1 &
pids+=($!)
TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KAFKA_BROKERS=$KAFKA_BROKERS TOLLGATE_METERING_TOPIC=$topic \
  TOLLGATE_METERING_DLQ_TOPIC="$topic-dlq" TOLLGATE_METERING_GROUP_ID="metric-names-$$" \
  TOLLGATE_METERING_ADMIN_LISTEN=$metering_admin \
  "$TARGET_DIR/debug/tollgate-metering" >"$WORK/metering.log" 2>&1 &
pids+=($!)
TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KEY_PEPPER=$pepper \
  TOLLGATE_CONTROL_API_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
  TOLLGATE_CONTROL_API_LISTEN=$api TOLLGATE_CONTROL_API_ADMIN_LISTEN=$api_admin \
  "$TARGET_DIR/debug/tollgate-control-api" serve >"$WORK/control-api.log" 2>&1 &
pids+=($!)

wait_ok() {
  local deadline=$((SECONDS + 60))
  until curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$1 did not answer 200 within 60 s; see $WORK/*.log"
    sleep 0.2
  done
}
# A labelled family shows in the exposition only once it has a child: give the common ones
# one (a refused key, a served request) before scraping.
wait_ok "http://$proxy_admin/ready"
curl -s -m 5 -o /dev/null -H 'Authorization: Bearer tg_test_notakey_notasecret' "http://127.0.0.1:$BASE/" || true
wait_ok "http://$metering_admin/health"
wait_ok "http://$api/health"

# The exposition of the first URL that answers 200 (a family without children is absent).
scrape() {
  local name=$1 url; shift
  for url in "$@"; do
    if curl -fsS -m 5 "$url" -o "$WORK/$name.metrics" 2>/dev/null; then
      log "$name: $(grep -c '^# TYPE' "$WORK/$name.metrics" || true) metric families from $url"
      return
    fi
  done
  die "$name served no /metrics at $*; see $WORK/$name.log"
}
scrape proxy "http://$proxy_admin/metrics"
scrape metering "http://$metering_admin/metrics"
# Consumer lag comes from librdkafka's statistics (every 5 s) once the group gave the
# aggregator its partitions (the refused request above put an event on the topic): up to 20 s.
deadline=$((SECONDS + 20))
until grep -q '^metering_consumer_lag' "$WORK/metering.metrics" || [ $SECONDS -ge $deadline ]; do
  sleep 1
  scrape metering "http://$metering_admin/metrics" 2>/dev/null
done
# The control API serves /metrics on its admin listener only.
scrape control-api "http://$api_admin/metrics"

# Family names from the TYPE lines (a labelled family without samples has only those), with
# the suffixes its samples carry, and every sample name seen.
awk '
  /^# TYPE / { n = $3; t = $4
    if (t == "counter") { sub(/_total$/, "", n); print n "_total"; print n }
    else if (t == "histogram" || t == "gaugehistogram") { print n; print n "_bucket"; print n "_sum"; print n "_count" }
    else if (t == "summary") { print n; print n "_sum"; print n "_count" }
    else if (t == "info") { print n "_info" }
    else { print n }
    next }
  /^#/ { next }
  NF { s = $1; sub(/\{.*/, "", s); print s }
' "$WORK"/*.metrics | sort -u
/usr/lib/postgresql/15/bin/psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >&2 || true
