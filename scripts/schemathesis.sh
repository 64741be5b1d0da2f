#!/usr/bin/env bash
# Drives the control API with schemathesis (PyPI), from its own OpenAPI document, against a
# live server on a private database: no 5xx, and no status code, content type, header or body
# that contradicts the document. Part of `make test` (scripts/run-tests.sh).
#
# Needs the local services (make services). Settings (environment): SCHEMATHESIS_MAX_EXAMPLES
# (per operation, default 30), SCHEMATHESIS_SEED, TOLLGATE_SCHEMATHESIS_PORT (default 58183).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE_DIR=${TOLLGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SCHEMATHESIS_VERSION=4.32.5
VENV="$CACHE_DIR/schemathesis-$SCHEMATHESIS_VERSION"
PORT=${TOLLGATE_SCHEMATHESIS_PORT:-58183}
WORK="$TARGET_DIR/schemathesis"

log() { printf '[schemathesis] %s\n' "$*" >&2; }
die() { printf '[schemathesis] error: %s\n' "$*" >&2; exit 1; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

[ -f "$ROOT/.tollgate/stack.env" ] || die "no .tollgate/stack.env: run 'make services' first"
# shellcheck disable=SC1091
. "$ROOT/.tollgate/stack.env"

# Installed once into the cache; the stamp marks a complete install.
if [ ! -f "$VENV/.installed" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$VENV/.installed"
fi

bin="$TARGET_DIR/debug/tollgate-control-api"
[ -x "$bin" ] || (cd "$ROOT" && cargo build --locked -p tollgate-control-api)

# A database of its own, recreated on every run.
db_name=tollgate_schemathesis
db_url="${DATABASE_URL%/*}/$db_name"
/usr/lib/postgresql/15/bin/psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" -c "CREATE DATABASE $db_name"
TOLLGATE_DATABASE_URL=$db_url "$bin" migrate >/dev/null
pepper=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KEY_PEPPER=$pepper TOLLGATE_DEMO_UPSTREAM=127.0.0.1:9 \
  "$bin" seed-demo >/dev/null
email=schemathesis@tollgate.local
password=$(TOLLGATE_DATABASE_URL=$db_url TOLLGATE_ADMIN_EMAIL=$email "$bin" create-admin)

mkdir -p "$WORK"
# Path identifiers pinned to the seeded tenant and plan, so operations reach their logic
# instead of answering 404 to random ids.
# Quiet: only the rows, no command tag (a pipe to `head` could kill psql with SIGPIPE).
psql_db() { /usr/lib/postgresql/15/bin/psql "$db_url" -qtAc "$1"; }
tenant_id=$(psql_db "SELECT id FROM tenants ORDER BY created_at LIMIT 1")
# A finalized invoice with a line, for the invoice and document endpoints.
# Written as a draft with its line, then finalized with a number (finalized lines are frozen).
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
cat >"$WORK/schemathesis.toml" <<EOF
[parameters]
"path.tenant_id" = "$tenant_id"
"path.plan_id" = "$(psql_db "SELECT id FROM plans ORDER BY created_at LIMIT 1")"
"path.key_id" = "$(psql_db "SELECT id FROM api_keys ORDER BY created_at LIMIT 1")"
"path.route_id" = "$(psql_db "SELECT id FROM routes ORDER BY created_at LIMIT 1")"
"path.invoice_id" = "$invoice_id"
# A plan that exists, so switching a subscription reaches its logic instead of 422 no_such_plan.
"body.plan_id" = "$(psql_db "SELECT id FROM plans ORDER BY created_at LIMIT 1")"
EOF
TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KEY_PEPPER=$pepper \
  TOLLGATE_CONTROL_API_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
  TOLLGATE_CONTROL_API_LISTEN=127.0.0.1:$PORT TOLLGATE_CONTROL_API_ADMIN_LISTEN=127.0.0.1:0 \
  TOLLGATE_CONTROL_API_WORKERS=2 TOLLGATE_UPSTREAM_ALLOW_NETWORKS=127.0.0.1/32 \
  TOLLGATE_STRIPE_WEBHOOK_SECRET=whsec_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n') \
  "$bin" serve >"$WORK/control-api.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
base="http://127.0.0.1:$PORT"
for _ in $(seq 100); do
  curl -sf "$base/ready" >/dev/null && break
  kill -0 $server 2>/dev/null || die "the control API exited; see $WORK/control-api.log"
  sleep 0.1
done
curl -sf "$base/ready" >/dev/null || die "the control API did not become ready"

token=$(curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
  --data "{\"email\":\"$email\",\"password\":\"$password\"}" |
  "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

log "running against $base (max ${SCHEMATHESIS_MAX_EXAMPLES:-30} examples per operation)"
# The login and refresh endpoints are driven too, with the admin's token still attached;
# their throttling answers 429 as documented. Logout is left out: it would end the session of
# the one token every other operation uses (the Rust tests cover it).
status=0
# From the work directory: schemathesis keeps its example database in the current one.
cd "$WORK"
"$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --exclude-path /api/v1/auth/logout \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
  ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
  --request-timeout 10 --workers 2 --no-color \
  --report junit --report-dir "$WORK" || status=$?
[ "$status" -eq 0 ] || log "failed; server log: $WORK/control-api.log, report: $WORK"
exit "$status"
