#!/usr/bin/env bash
# Tollgate's local stack: private PostgreSQL 15, Redis 7, a Kafka-protocol broker (tansu), an
# SMTP server (aiosmtpd) and an S3-compatible object store (moto) on project ports on
# 127.0.0.1, with data in a directory of this checkout's own.
#
#   scripts/stack.sh services   install what is missing, start the services, write .tollgate/stack.env
#   scripts/stack.sh up         services + release build + migrate + demo tenant + every service binary
#   scripts/stack.sh status     what runs, and whether every URL in stack.env answers
#   scripts/stack.sh down       stop everything this checkout started
#
# Idempotent: a second `services` or `up` finds everything running and returns quickly.
# Settings (environment): TOLLGATE_STATE_DIR, TOLLGATE_CACHE_DIR, TOLLGATE_PG_PORT,
# TOLLGATE_REDIS_PORT, TOLLGATE_KAFKA_PORT, TOLLGATE_SMTP_PORT, TOLLGATE_S3_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CHECKOUT_ID=$(printf '%s' "$ROOT" | sha256sum | cut -c1-10)
# Outside the checkout: the postgres user must be able to enter it, and root's home may not allow that.
STATE_DIR=${TOLLGATE_STATE_DIR:-/var/tmp/tollgate-$CHECKOUT_ID}
CACHE_DIR=${TOLLGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}
ENV_DIR="$ROOT/.tollgate"
STACK_ENV="$ENV_DIR/stack.env"
SECRETS_ENV="$ENV_DIR/secrets.env"

PG_PORT=${TOLLGATE_PG_PORT:-55432}
REDIS_PORT=${TOLLGATE_REDIS_PORT:-56379}
KAFKA_PORT=${TOLLGATE_KAFKA_PORT:-59092}
METERING_ADMIN_PORT=${TOLLGATE_METERING_ADMIN_PORT:-58082}
GATEWAY_PORT=${TOLLGATE_GATEWAY_PORT:-58080}
GATEWAY_ADMIN_PORT=${TOLLGATE_GATEWAY_ADMIN_PORT:-58081}
DEMO_UPSTREAM_PORT=${TOLLGATE_DEMO_UPSTREAM_PORT:-58090}
CONTROL_API_PORT=${TOLLGATE_CONTROL_API_PORT:-58083}
CONTROL_API_ADMIN_PORT=${TOLLGATE_CONTROL_API_ADMIN_PORT:-58084}
SMTP_PORT=${TOLLGATE_SMTP_PORT:-52525}
S3_PORT=${TOLLGATE_S3_PORT:-59000}
S3_BUCKET=tollgate-invoices
# Python servers that speak the real protocols, in venvs cached outside the checkout.
AIOSMTPD_VERSION=1.4.6
MOTO_VERSION=5.2.5
SMTP_VENV="$CACHE_DIR/aiosmtpd-$AIOSMTPD_VERSION"
S3_VENV="$CACHE_DIR/moto-$MOTO_VERSION"
PG_BIN=/usr/lib/postgresql/15/bin
TANSU_VERSION=0.6.0
# The broker is tansu with our patches (scripts/tansu/*.patch, each explained in its header).
# Their hash names the cached build, so a changed or added patch builds a new broker.
TANSU_PATCHES=("$ROOT"/scripts/tansu/*.patch)
TANSU_BUILD_ID="$TANSU_VERSION-tollgate-$(cat "${TANSU_PATCHES[@]}" | sha256sum | cut -c1-10)"
TANSU_BIN="$CACHE_DIR/tansu-$TANSU_BUILD_ID/bin/tansu"

# poppler-utils: pdftotext, which the invoicing tests read PDFs with.
APT_PACKAGES=(postgresql-15 redis-server cmake g++ make perl pkg-config zlib1g-dev libcurl4-openssl-dev curl patch
  python3-venv poppler-utils)

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

random_secret() { head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "${1:-32}"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }

# Waits up to $2 seconds for the command in $3... to succeed.
wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s"
    sleep 0.1
  done
}

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [ -x "$TANSU_BIN" ] || build_tansu
}

# Builds tansu $TANSU_VERSION with scripts/tansu/*.patch applied to its tansu-broker crate,
# into $TANSU_BIN: cargo fetches the published tansu-broker (a throwaway package depending on
# it), the patches go onto a copy, and `cargo install --locked` builds the broker with that
# copy in place of the published crate (a `patch.crates-io` entry given with --config; the
# versions of everything else stay those of tansu's Cargo.lock). This is the only broker build.
build_tansu() {
  log "building tansu $TANSU_VERSION with ${TANSU_PATCHES[*]##*/} into $CACHE_DIR (once; about 12 minutes on 2 cores)"
  local work="$CACHE_DIR/tansu-build"
  [ -n "$CACHE_DIR" ] || die "no cache directory for the broker build"
  mkdir -p "$work/fetch/src"
  printf '%s\n' '[package]' 'name = "tollgate-tansu-fetch"' 'version = "0.0.0"' 'edition = "2021"' \
    'publish = false' '' '[dependencies]' \
    "tansu-broker = { version = \"=$TANSU_VERSION\", default-features = false }" >"$work/fetch/Cargo.toml"
  : >"$work/fetch/src/lib.rs"
  local broker_src patch
  # Outside the checkout, so rust-toolchain.toml and CARGO_TARGET_DIR do not apply.
  broker_src=$(cd "$work/fetch" && env -u CARGO_TARGET_DIR cargo metadata --format-version 1 --quiet |
    python3 -c 'import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "tansu-broker" and p["version"] == sys.argv[1]:
        print(os.path.dirname(p["manifest_path"]))' "$TANSU_VERSION")
  [ -n "$broker_src" ] && [ -f "$broker_src/Cargo.toml" ] ||
    die "cargo did not fetch tansu-broker $TANSU_VERSION"
  rm -rf "$work/tansu-broker"
  cp -r "$broker_src" "$work/tansu-broker"
  chmod -R u+w "$work/tansu-broker"
  for patch in "${TANSU_PATCHES[@]}"; do
    patch -p1 --forward --silent -d "$work/tansu-broker" <"$patch" ||
      die "$patch does not apply to tansu-broker $TANSU_VERSION"
  done
  (cd "$work" && env -u CARGO_TARGET_DIR cargo install tansu --version "$TANSU_VERSION" --locked \
    --features dynostore --root "$CACHE_DIR/tansu-$TANSU_BUILD_ID" --target-dir "$work/target" --quiet \
    --config "patch.crates-io.tansu-broker.path='$work/tansu-broker'")
  [ -x "$TANSU_BIN" ] || die "the broker build left no $TANSU_BIN"
}

# python_venv DIR PACKAGE...: a venv with exactly these packages, installed once (the stamp
# marks a complete install).
python_venv() {
  local venv=$1; shift
  [ -f "$venv/.installed" ] && return
  log "installing $* into $venv (pip, once)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$@"
  touch "$venv/.installed"
}

ensure_port_free_or_ours() {
  local port=$1 name=$2 pidfile=$3
  if port_open "$port" && ! pid_alive "$pidfile"; then
    die "port $port ($name) is taken by a process this checkout did not start; stop it or set TOLLGATE_${name^^}_PORT"
  fi
}

start_postgres() {
  local data="$STATE_DIR/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data"
    rm -rf "$data"
    mkdir -p "$data"
    chown postgres:postgres "$data"
    chmod 700 "$data"
    local pwfile="$STATE_DIR/pg.pw.tmp"
    random_secret 32 >"$STATE_DIR/pg-password"
    chmod 600 "$STATE_DIR/pg-password"
    cp "$STATE_DIR/pg-password" "$pwfile"
    chown postgres "$pwfile"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U tollgate --pwfile="$pwfile" \
      --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    # Local runs and tests trade durability for speed; ingest benchmarks turn fsync back on.
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return
  fi
  ensure_port_free_or_ours "$PG_PORT" pg "$data/postmaster.pid"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  # The port on the command line: it wins over the one initdb time wrote into the config, so a
  # changed TOLLGATE_PG_PORT takes effect.
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-p $PG_PORT" start >/dev/null
  PGPASSWORD=$(cat "$STATE_DIR/pg-password") "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U tollgate \
    -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'tollgate'" | grep -q 1 ||
    PGPASSWORD=$(cat "$STATE_DIR/pg-password") "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tollgate tollgate
}

start_redis() {
  local pidfile="$STATE_DIR/redis.pid"
  [ -f "$STATE_DIR/redis-password" ] || { random_secret 32 >"$STATE_DIR/redis-password"; chmod 600 "$STATE_DIR/redis-password"; }
  if pid_alive "$pidfile"; then return; fi
  ensure_port_free_or_ours "$REDIS_PORT" redis "$pidfile"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  mkdir -p "$STATE_DIR/redis"
  # The password goes in a config file, not on the command line where ps would show it.
  cat >"$STATE_DIR/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
requirepass $(cat "$STATE_DIR/redis-password")
save ""
appendonly no
daemonize yes
pidfile $pidfile
logfile $STATE_DIR/redis.log
dir $STATE_DIR/redis
EOF
  chmod 600 "$STATE_DIR/redis.conf"
  redis-server "$STATE_DIR/redis.conf"
  wait_for Redis 10 redis_ping
}

redis_ping() {
  REDISCLI_AUTH=$(cat "$STATE_DIR/redis-password") redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG
}

start_kafka() {
  local pidfile="$STATE_DIR/tansu.pid"
  if pid_alive "$pidfile"; then return; fi
  ensure_port_free_or_ours "$KAFKA_PORT" kafka "$pidfile"
  log "starting tansu (Kafka protocol) on 127.0.0.1:$KAFKA_PORT"
  # memory:// storage: topics and offsets vanish on restart, which suits tests and local runs.
  setsid "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ \
    >>"$STATE_DIR/tansu.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for tansu 20 port_open "$KAFKA_PORT"
}

start_smtp() {
  local pidfile="$STATE_DIR/smtp.pid"
  python_venv "$SMTP_VENV" "aiosmtpd==$AIOSMTPD_VERSION"
  if pid_alive "$pidfile"; then return; fi
  ensure_port_free_or_ours "$SMTP_PORT" smtp "$pidfile"
  log "starting aiosmtpd (SMTP) on 127.0.0.1:$SMTP_PORT"
  # Each message lands as one file in maildir/new before the server answers 250. aiosmtpd
  # creates the maildir itself (an existing empty directory makes every DATA fail).
  setsid "$SMTP_VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
    -c aiosmtpd.handlers.Mailbox "$STATE_DIR/maildir" >>"$STATE_DIR/smtp.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for aiosmtpd 20 port_open "$SMTP_PORT"
}

start_s3() {
  local pidfile="$STATE_DIR/s3.pid"
  python_venv "$S3_VENV" "moto[s3]==$MOTO_VERSION" flask flask-cors
  if ! pid_alive "$pidfile"; then
    ensure_port_free_or_ours "$S3_PORT" s3 "$pidfile"
    log "starting moto (S3) on 127.0.0.1:$S3_PORT"
    # In memory: objects vanish on restart, which suits tests and local runs.
    setsid "$S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >>"$STATE_DIR/s3.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_for moto 30 port_open "$S3_PORT"
  fi
  # The local bucket; moto checks no signatures. A second PUT of an owned bucket is harmless.
  curl -fsS -m 5 -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" ||
    die "could not create the S3 bucket $S3_BUCKET"
}

write_stack_env() {
  mkdir -p "$ENV_DIR"
  chmod 700 "$ENV_DIR"
  if [ ! -f "$SECRETS_ENV" ]; then
    umask 077
    printf 'TOLLGATE_KEY_PEPPER=%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$SECRETS_ENV"
  fi
  local pg_pw redis_pw
  pg_pw=$(cat "$STATE_DIR/pg-password")
  redis_pw=$(cat "$STATE_DIR/redis-password")
  # Keep what `up` added (demo key, service URLs); replace the connection details.
  local kept=""
  [ -f "$STACK_ENV" ] && kept=$(grep -vE '^(DATABASE_URL|REDIS_URL|KAFKA_BROKERS|STATE_DIR|TANSU_BIN|SMTP_[A-Z]+|S3_[A-Z]+)=' "$STACK_ENV" || true)
  umask 077
  {
    echo "DATABASE_URL=postgres://tollgate:$pg_pw@127.0.0.1:$PG_PORT/tollgate"
    echo "REDIS_URL=redis://default:$redis_pw@127.0.0.1:$REDIS_PORT/0"
    echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
    echo "STATE_DIR=$STATE_DIR"
    echo "TANSU_BIN=$TANSU_BIN"
    echo "SMTP_HOST=127.0.0.1"
    echo "SMTP_PORT=$SMTP_PORT"
    echo "SMTP_MAILDIR=$STATE_DIR/maildir"
    echo "S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    echo "S3_BUCKET=$S3_BUCKET"
    [ -n "$kept" ] && echo "$kept"
  } >"$STACK_ENV.tmp"
  mv "$STACK_ENV.tmp" "$STACK_ENV"
}

set_stack_value() {
  local key=$1 value=$2
  grep -vE "^$key=" "$STACK_ENV" >"$STACK_ENV.tmp" || true
  echo "$key=$value" >>"$STACK_ENV.tmp"
  mv "$STACK_ENV.tmp" "$STACK_ENV"
}

stack_value() { grep -E "^$1=" "$STACK_ENV" 2>/dev/null | head -1 | cut -d= -f2- || true; }

cmd_services() {
  install_packages
  mkdir -p "$STATE_DIR"
  chmod 755 "$STATE_DIR"
  start_postgres
  start_redis
  start_kafka
  start_smtp
  start_s3
  write_stack_env
  log "services up; connection details in ${STACK_ENV#"$ROOT"/}"
}

cmd_up() {
  cmd_services
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --workspace --bins --quiet)
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
  local db_url pepper
  db_url=$(stack_value DATABASE_URL)
  pepper=$(grep -E '^TOLLGATE_KEY_PEPPER=' "$SECRETS_ENV" | cut -d= -f2-)
  TOLLGATE_DATABASE_URL=$db_url "$bin/tollgate-control-api" migrate
  local key
  local upstream="127.0.0.1:$DEMO_UPSTREAM_PORT"
  key=$(TOLLGATE_DATABASE_URL=$db_url TOLLGATE_KEY_PEPPER=$pepper TOLLGATE_DEMO_UPSTREAM=$upstream \
    TOLLGATE_DEMO_API_KEY=$(stack_value DEMO_API_KEY) "$bin/tollgate-control-api" seed-demo)
  set_stack_value DEMO_API_KEY "$key"
  # Invoicing runs as CronJobs in production; here `hourly` runs once (README, "Invoicing by hand").
  mkdir -p "$STATE_DIR/run"
  TOLLGATE_DATABASE_URL=$db_url "$bin/tollgate-invoicing" hourly 2>>"$STATE_DIR/run/invoicing.log" ||
    log "tollgate-invoicing hourly failed; see $STATE_DIR/run/invoicing.log"

  # Service binaries, restarted so a rebuilt binary takes over. More join as their issues land.
  local metering_admin="127.0.0.1:$METERING_ADMIN_PORT"
  start_service metering "http://$metering_admin/ready" env \
    TOLLGATE_DATABASE_URL="$db_url" TOLLGATE_KAFKA_BROKERS="$(stack_value KAFKA_BROKERS)" \
    TOLLGATE_METERING_ADMIN_LISTEN="$metering_admin" "$bin/tollgate-metering"
  set_stack_value METERING_ADMIN_URL "http://$metering_admin"

  start_service demo-upstream "http://$upstream/health" env \
    TOLLGATE_DEMO_UPSTREAM_LISTEN="$upstream" "$bin/tollgate-demo-upstream"
  set_stack_value DEMO_UPSTREAM_URL "http://$upstream"

  local gateway="127.0.0.1:$GATEWAY_PORT" gateway_admin="127.0.0.1:$GATEWAY_ADMIN_PORT"
  # Upstreams on loopback are refused by default (SSRF); the demo upstream is allowed by name.
  local allow_networks="127.0.0.1/32"
  start_service proxy "http://$gateway_admin/ready" env \
    TOLLGATE_DATABASE_URL="$db_url" TOLLGATE_KEY_PEPPER="$pepper" \
    TOLLGATE_REDIS_URL="$(stack_value REDIS_URL)" TOLLGATE_KAFKA_BROKERS="$(stack_value KAFKA_BROKERS)" \
    TOLLGATE_USAGE_SPOOL_DIR="$STATE_DIR/usage-spool" TOLLGATE_PROXY_GRACE_SECONDS=2 \
    TOLLGATE_UPSTREAM_ALLOW_NETWORKS="$allow_networks" \
    TOLLGATE_PROXY_LISTEN="$gateway" TOLLGATE_PROXY_ADMIN_LISTEN="$gateway_admin" "$bin/tollgate-proxy"
  set_stack_value GATEWAY_URL "http://$gateway"
  set_stack_value GATEWAY_ADMIN_URL "http://$gateway_admin"

  # Control API: the JWT secret is generated once and kept in secrets.env; the platform admin
  # gets a generated password, kept across runs while it still works.
  grep -qE '^TOLLGATE_CONTROL_API_JWT_SECRET=' "$SECRETS_ENV" ||
    (umask 077; printf 'TOLLGATE_CONTROL_API_JWT_SECRET=%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>"$SECRETS_ENV")
  # The Stripe webhook signing secret of the local stack (a real deployment takes Stripe's).
  grep -qE '^TOLLGATE_STRIPE_WEBHOOK_SECRET=' "$SECRETS_ENV" ||
    (umask 077; printf 'TOLLGATE_STRIPE_WEBHOOK_SECRET=whsec_%s\n' "$(random_secret 32)" >>"$SECRETS_ENV")
  local jwt_secret webhook_secret admin_email admin_password control_api="127.0.0.1:$CONTROL_API_PORT"
  local control_api_admin="127.0.0.1:$CONTROL_API_ADMIN_PORT"
  jwt_secret=$(grep -E '^TOLLGATE_CONTROL_API_JWT_SECRET=' "$SECRETS_ENV" | cut -d= -f2-)
  webhook_secret=$(grep -E '^TOLLGATE_STRIPE_WEBHOOK_SECRET=' "$SECRETS_ENV" | cut -d= -f2-)
  admin_email=$(stack_value ADMIN_EMAIL); admin_email=${admin_email:-admin@tollgate.local}
  admin_password=$(TOLLGATE_DATABASE_URL=$db_url TOLLGATE_ADMIN_EMAIL=$admin_email \
    TOLLGATE_ADMIN_PASSWORD=$(stack_value ADMIN_PASSWORD) "$bin/tollgate-control-api" create-admin)
  set_stack_value ADMIN_EMAIL "$admin_email"
  set_stack_value ADMIN_PASSWORD "$admin_password"
  start_service control-api "http://$control_api/ready" env \
    TOLLGATE_DATABASE_URL="$db_url" TOLLGATE_KEY_PEPPER="$pepper" \
    TOLLGATE_CONTROL_API_JWT_SECRET="$jwt_secret" TOLLGATE_CONTROL_API_KEY_ENV=test \
    TOLLGATE_UPSTREAM_ALLOW_NETWORKS="$allow_networks" TOLLGATE_STRIPE_WEBHOOK_SECRET="$webhook_secret" \
    TOLLGATE_CONTROL_API_LISTEN="$control_api" TOLLGATE_CONTROL_API_ADMIN_LISTEN="$control_api_admin" \
    "$bin/tollgate-control-api" serve
  set_stack_value CONTROL_API_URL "http://$control_api"
  set_stack_value CONTROL_API_ADMIN_URL "http://$control_api_admin"
  cat >&2 <<EOF

Tollgate's local stack is up. Connection details: .tollgate/stack.env

  PostgreSQL  $(stack_value DATABASE_URL | sed -E 's#//([^:]+):[^@]+@#//\1:***@#')
  Redis       127.0.0.1:$REDIS_PORT
  Kafka       $(stack_value KAFKA_BROKERS)
  Demo key    $(printf '%s' "$key" | cut -c1-24)… (DEMO_API_KEY in stack.env)
  Gateway     http://$gateway   (admin http://$gateway_admin/ready, /metrics)
  Metering    http://$metering_admin/metrics
  Dashboard   http://$control_api/   (sign in as the admin below)
  Control API http://$control_api/api/v1   (OpenAPI at /api/v1/openapi.json; admin $admin_email,
              password ADMIN_PASSWORD in stack.env; /metrics at http://$control_api_admin/metrics)
  SMTP        127.0.0.1:$SMTP_PORT   (messages in $STATE_DIR/maildir/new)
  S3          http://127.0.0.1:$S3_PORT/$S3_BUCKET
  Logs        $STATE_DIR/run/*.log

Next:
  set -a; . .tollgate/stack.env; set +a
  curl -i -H "Authorization: Bearer \$DEMO_API_KEY" "\$GATEWAY_URL/hello"
  curl -i "\$GATEWAY_URL/hello"     # 401 with a JSON error
  make test      # the whole suite
  make down      # stop everything
EOF
}

# start_service NAME READY_URL COMMAND...: (re)starts a binary in the background, logging to
# $STATE_DIR/run/NAME.log, and waits until READY_URL answers 200.
start_service() {
  local name=$1 ready=$2; shift 2
  local run="$STATE_DIR/run" pidfile="$STATE_DIR/run/$name.pid"
  mkdir -p "$run"
  stop_pidfile "$pidfile"
  log "starting $name"
  setsid "$@" >>"$run/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for "$name" 60 service_ready "$pidfile" "$ready" "$run/$name.log"
}

service_ready() {
  pid_alive "$1" || die "$(basename "$1" .pid) exited; see $3"
  curl -fsS -m 2 -o /dev/null "$2" 2>/dev/null
}

stop_pidfile() {
  local pidfile=$1 pid
  if pid_alive "$pidfile"; then
    pid=$(head -n1 "$pidfile")
    log "stopping $(basename "$pidfile" .pid) (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_status() {
  local ok=0
  if [ -f "$STACK_ENV" ]; then
    local db redis kafka
    db=$(stack_value DATABASE_URL); redis=$(stack_value REDIS_URL); kafka=$(stack_value KAFKA_BROKERS)
    if [ -n "$db" ] && "$PG_BIN/psql" "$db" -tAc 'SELECT 1' >/dev/null 2>&1; then echo "postgres  up    ${db%%@*}@…" | sed -E 's#:[^:@/]+@#:***@#'; else echo "postgres  DOWN"; ok=1; fi
    if [ -n "$redis" ] && redis-cli -u "$redis" --no-auth-warning ping 2>/dev/null | grep -q PONG; then echo "redis     up"; else echo "redis     DOWN"; ok=1; fi
    if [ -n "$kafka" ] && port_open "${kafka##*:}"; then echo "kafka     up    $kafka"; else echo "kafka     DOWN"; ok=1; fi
    local smtp_port s3_url
    smtp_port=$(stack_value SMTP_PORT); s3_url=$(stack_value S3_ENDPOINT)
    if [ -n "$smtp_port" ] && port_open "$smtp_port"; then echo "smtp      up    127.0.0.1:$smtp_port"; else echo "smtp      DOWN"; ok=1; fi
    if [ -n "$s3_url" ] && curl -fsS -m 5 -o /dev/null "$s3_url/$(stack_value S3_BUCKET)"; then echo "s3        up    $s3_url"; else echo "s3        DOWN"; ok=1; fi
    # Every HTTP URL the stack file names (services add theirs as they land) must answer.
    while IFS='=' read -r key value; do
      case $key in *_URL) ;; *) continue ;; esac
      case $value in http://*|https://*) ;; *) continue ;; esac
      # Admin endpoints must be healthy; a service URL must answer at all (the gateway
      # rightly answers 401 to a request without a key).
      local code
      code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$value/health" || true)
      local healthy=yes
      [ "$code" = 000 ] && healthy=no
      case $key in *ADMIN_URL) [ "$code" = 200 ] || healthy=no ;; esac
      if [ $healthy = yes ]; then echo "$key up    $value (HTTP $code)"; else echo "$key DOWN  $value (HTTP $code)"; ok=1; fi
    done <"$STACK_ENV"
  else
    echo "no $STACK_ENV: the stack was never started here"; ok=1
  fi
  return $ok
}

cmd_down() {
  for pidfile in "$STATE_DIR"/run/*.pid "$STATE_DIR/tansu.pid" "$STATE_DIR/smtp.pid" "$STATE_DIR/s3.pid"; do
    [ -f "$pidfile" ] && stop_pidfile "$pidfile"
  done
  if pid_alive "$STATE_DIR/redis.pid"; then
    log "stopping Redis"
    REDISCLI_AUTH=$(cat "$STATE_DIR/redis-password") redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 100); do pid_alive "$STATE_DIR/redis.pid" || break; sleep 0.1; done
  fi
  if [ -f "$STATE_DIR/pg/PG_VERSION" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STATE_DIR/pg" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STATE_DIR/pg" -m fast -w stop >/dev/null
  fi
  log "down"
}

case ${1:-} in
  services) cmd_services ;;
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) echo "usage: $0 services|up|status|down" >&2; exit 2 ;;
esac
