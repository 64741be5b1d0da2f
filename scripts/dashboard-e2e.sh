#!/usr/bin/env bash
# The dashboard end to end in headless Chromium (dashboard/e2e/run.mjs) against the real stack:
# the control API (serving the embedded dashboard), the proxy, metering and the demo upstream,
# started here on private ports over a database and a topic of their own, with the local
# PostgreSQL, Redis and broker (make services). Screenshots of every page at laptop and phone
# width go to target/dashboard-screenshots/. Part of `make test` (scripts/run-tests.sh).
#
# Installs Debian's chromium with apt when /usr/bin/chromium is missing (playwright-core drives
# it; no browser is downloaded). Skipped without Node.js >= 20.19.
# Ports (defaults; each TOLLGATE_E2E_*_PORT overrides): control API 58184, gateway 58185,
# gateway admin 58186, metering admin 58187, demo upstream 58188.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE_DIR=${TOLLGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK="$TARGET_DIR/dashboard-e2e"
SHOTS="$TARGET_DIR/dashboard-screenshots"
API_PORT=${TOLLGATE_E2E_CONTROL_API_PORT:-58184}
GATEWAY_PORT=${TOLLGATE_E2E_GATEWAY_PORT:-58185}
GATEWAY_ADMIN_PORT=${TOLLGATE_E2E_GATEWAY_ADMIN_PORT:-58186}
METERING_ADMIN_PORT=${TOLLGATE_E2E_METERING_ADMIN_PORT:-58187}
UPSTREAM_PORT=${TOLLGATE_E2E_UPSTREAM_PORT:-58188}

log() { printf '[dashboard-e2e] %s\n' "$*" >&2; }
die() { printf '[dashboard-e2e] error: %s\n' "$*" >&2; exit 1; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

if ! command -v node >/dev/null || ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  log "skipped: no Node.js >= 20.19"
  exit 0
fi
[ -f "$ROOT/.tollgate/stack.env" ] || die "no .tollgate/stack.env: run 'make services' first"
# shellcheck disable=SC1091
. "$ROOT/.tollgate/stack.env"

if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium (apt)"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
stamp="$ROOT/dashboard/node_modules/.lock-stamp"
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$ROOT/dashboard/package-lock.json"; then
  (cd "$ROOT/dashboard" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$ROOT/dashboard/package-lock.json" "$stamp"
fi

bin="$TARGET_DIR/debug"
(cd "$ROOT" && cargo build --locked -q -p tollgate-control-api -p tollgate-proxy -p tollgate-metering \
  -p tollgate-loadtest --bin tollgate-control-api --bin tollgate-proxy --bin tollgate-metering \
  --bin tollgate-demo-upstream)

rm -rf "$WORK" "$SHOTS"
mkdir -p "$WORK" "$SHOTS"
run_id="e2e$$"
topic="usage-dashboard-$run_id"
db_name=tollgate_dashboard_e2e
db_url="${DATABASE_URL%/*}/$db_name"
psql=/usr/lib/postgresql/15/bin/psql
"$psql" -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" -c "CREATE DATABASE $db_name"
TOLLGATE_DATABASE_URL=$db_url "$bin/tollgate-control-api" migrate >/dev/null 2>&1
pepper=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
upstream="127.0.0.1:$UPSTREAM_PORT"
TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KEY_PEPPER=$pepper TOLLGATE_DEMO_UPSTREAM=$upstream \
  "$bin/tollgate-control-api" seed-demo >/dev/null
admin_email=admin@dashboard-e2e.local
admin_password=$(TOLLGATE_DATABASE_URL=$db_url TOLLGATE_ADMIN_EMAIL=$admin_email "$bin/tollgate-control-api" create-admin)
psql_db() { "$psql" "$db_url" -qtAc "$1"; }
tenant_id=$(psql_db "SELECT id FROM tenants WHERE slug = 'demo'")
# A finalized invoice with a line, as the invoicing job leaves it: written as a draft with its
# line, then finalized with a number (finalized lines are frozen).
invoice_id=$(psql_db "WITH i AS (INSERT INTO invoices (id, tenant_id, period_start, period_end,
    currency, status, subtotal_minor, total_minor)
  VALUES (gen_random_uuid(), '$tenant_id', '2026-01-01', '2026-02-01', 'USD', 'draft',
    1234, 1234) RETURNING id)
  INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, unit_price,
    amount_minor) SELECT gen_random_uuid(), id, 0, 'base_fee', 'Base fee', 1, 12.34, 1234 FROM i
  RETURNING invoice_id")
psql_db "WITH n AS (INSERT INTO invoice_number_counters AS c (year, last_seq) VALUES (2026, 1)
    ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + 1 RETURNING last_seq)
  UPDATE invoices SET status = 'finalized', finalized_at = now(),
    number = format('TG-2026-%s', lpad(n.last_seq::text, 6, '0')) FROM n WHERE id = '$invoice_id'" >/dev/null

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -x "$TANSU_BIN" ] && "$TANSU_BIN" topic delete --broker "tcp://$KAFKA_BROKERS" "$topic" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The broker does not create topics on produce.
[ -x "$TANSU_BIN" ] || die "no tansu binary at ${TANSU_BIN:-?} (TANSU_BIN in stack.env; make services builds it)"
"$TANSU_BIN" topic create --broker "tcp://$KAFKA_BROKERS" --partitions 1 "$topic" >/dev/null

start() {
  local name=$1 ready=$2; shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 300); do
    curl -sf "$ready" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || die "$name exited; see $WORK/$name.log"
    sleep 0.1
  done
  die "$name did not become ready ($ready); see $WORK/$name.log"
}

export TOLLGATE_UPSTREAM_ALLOW_NETWORKS=127.0.0.0/8
start demo-upstream "http://$upstream/health" env TOLLGATE_DEMO_UPSTREAM_LISTEN="$upstream" "$bin/tollgate-demo-upstream"
start metering "http://127.0.0.1:$METERING_ADMIN_PORT/ready" env TOLLGATE_DATABASE_URL="$db_url" \
  TOLLGATE_KAFKA_BROKERS="$KAFKA_BROKERS" TOLLGATE_METERING_TOPIC="$topic" \
  TOLLGATE_METERING_GROUP_ID="metering-$run_id" TOLLGATE_METERING_BATCH_MAX_WAIT_MS=100 \
  TOLLGATE_METERING_ADMIN_LISTEN="127.0.0.1:$METERING_ADMIN_PORT" "$bin/tollgate-metering"
start proxy "http://127.0.0.1:$GATEWAY_ADMIN_PORT/ready" env TOLLGATE_DATABASE_URL="$db_url" \
  TOLLGATE_KEY_PEPPER="$pepper" TOLLGATE_REDIS_URL="$REDIS_URL" TOLLGATE_REDIS_KEY_PREFIX="$run_id:" \
  TOLLGATE_KAFKA_BROKERS="$KAFKA_BROKERS" TOLLGATE_USAGE_TOPIC="$topic" \
  TOLLGATE_USAGE_SPOOL_DIR="$WORK/spool" TOLLGATE_PROXY_GRACE_SECONDS=1 \
  TOLLGATE_PROXY_LISTEN="127.0.0.1:$GATEWAY_PORT" TOLLGATE_PROXY_ADMIN_LISTEN="127.0.0.1:$GATEWAY_ADMIN_PORT" \
  "$bin/tollgate-proxy"
start control-api "http://127.0.0.1:$API_PORT/ready" env TOLLGATE_DATABASE_URL="$db_url" \
  TOLLGATE_KEY_PEPPER="$pepper" TOLLGATE_CONTROL_API_KEY_ENV=test \
  TOLLGATE_CONTROL_API_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  TOLLGATE_CONTROL_API_LISTEN="127.0.0.1:$API_PORT" TOLLGATE_CONTROL_API_WORKERS=2 \
  "$bin/tollgate-control-api" serve

log "running the browser scenario against http://127.0.0.1:$API_PORT"
E2E_BASE_URL="http://127.0.0.1:$API_PORT" E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" \
  E2E_ADMIN_EMAIL="$admin_email" E2E_ADMIN_PASSWORD="$admin_password" E2E_TENANT_ID="$tenant_id" \
  E2E_INVOICE_ID="$invoice_id" E2E_SCREENSHOT_DIR="$SHOTS" \
  node "$ROOT/dashboard/e2e/run.mjs" || { log "failed; logs in $WORK"; exit 1; }
