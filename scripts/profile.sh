#!/usr/bin/env bash
# Cost per request of nginx, bare Pingora and Tollgate, in counts that do not depend on how busy
# the machine is (`make profile`):
#
#   instructions  valgrind --tool=callgrind on the proxy: counters zeroed after a warm-up, then
#                 PROFILE_REQUESTS sequential keep-alive requests (curl), then dumped; Ir ÷ N.
#                 Every thread of the process counts (usage producer, limiter sync, librdkafka).
#   syscalls      perf stat on the tracepoints syscalls:sys_enter_* plus context switches and
#                 CPU migrations, attached to the system under test during a wrk run
#                 (PROFILE_CONNECTIONS connections, PROFILE_SECONDS); counts ÷ wrk's requests.
#
# Configurations: nginx (b), bare Pingora (g, Pingora's defaults: g0), Tollgate auth only (d),
# Tollgate full stack (c, needs the local services: scripts/stack.sh services), Tollgate with
# every request answered 429 (e429). PROFILE_ONLY=b,g,d picks some; PROFILE_SKIP_CALLGRIND=1 /
# PROFILE_SKIP_SYSCALLS=1 skip a kind; PROFILE_RECORD=1 also samples the system under test during
# the wrk run (perf record -g on the cpu-clock, kernel included: where the time goes, which
# instruction counts cannot say; read $PROFILE_DIR/perf-<configuration>.data with perf report). The system under test runs on CPU PROFILE_SUT_CPUS (0),
# upstream and load generator on PROFILE_CLIENT_CPUS (1). Results: a markdown table on stdout
# and in $PROFILE_DIR/profile.md, callgrind files (measured.callgrind.<configuration>; read them with
# callgrind_annotate) in $PROFILE_DIR. Ports: PROFILE_PORT_BASE (default 58200) and the next four.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
PROXY_BIN=${PROFILE_PROXY_BIN:-$BIN/tollgate-proxy}  # e.g. a saved build of an earlier commit
DIR=${PROFILE_DIR:-$ROOT/.tollgate/profile}
REQUESTS=${PROFILE_REQUESTS:-5000}
WARMUP=${PROFILE_WARMUP:-500}
SECONDS_RUN=${PROFILE_SECONDS:-5}
CONNECTIONS=${PROFILE_CONNECTIONS:-32}
SUT_CPUS=${PROFILE_SUT_CPUS:-0}
CLIENT_CPUS=${PROFILE_CLIENT_CPUS:-1}
THREADS=${PROFILE_THREADS:-1}
ONLY=${PROFILE_ONLY:-b,g0,g,d,c,e429}
BASE=${PROFILE_PORT_BASE:-58200}
UPSTREAM_PORT=$BASE NGINX_PORT=$((BASE + 1)) PROXY_PORT=$((BASE + 2)) ADMIN_PORT=$((BASE + 3))
STACK_ENV=${PROFILE_STACK_ENV:-$ROOT/.tollgate/stack.env}

log() { printf '[profile] %s\n' "$*" >&2; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'cleanup; rm -rf "$DIR/spool"' EXIT

for tool in valgrind callgrind_control perf wrk curl nginx:/usr/sbin/nginx; do
  path=${tool#*:}
  command -v "$path" >/dev/null || { log "missing ${tool%%:*} (apt-get install valgrind linux-perf wrk curl nginx)"; exit 1; }
done

if [ "${PROFILE_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (tollgate-proxy, tollgate-bare-pingora)"
  (cd "$ROOT" && cargo build --release --locked --quiet -p tollgate-proxy -p tollgate-loadtest \
    --bin tollgate-proxy --bin tollgate-bare-pingora --bin tollgate-loadtest)
fi

mkdir -p "$DIR/temp"
chmod 700 "$DIR"
rm -f "$DIR"/callgrind.out.* "$DIR"/measured.callgrind.*

random_base62() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1" || true; }
PEPPER=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
KEY="tg_test_$(random_base62 16)_$(random_base62 32)"
LIMITED_KEY="tg_test_$(random_base62 16)_$(random_base62 32)"
hash_of() { printf '%s\n' "$1" | TOLLGATE_KEY_PEPPER=$PEPPER "$PROXY_BIN" --hash-key; }
key_yaml() {
  local out id hash
  out=$(hash_of "$1"); id=$(sed -n 's/^id: //p' <<<"$out"); hash=$(sed -n 's/^hash: //p' <<<"$out")
  printf '      - id: %s\n        hash: %s\n' "$id" "$hash"
}
cat >"$DIR/gateway.yaml" <<EOF
plans:
  - name: unlimited
    rate: { requests_per_second: 10000000, burst: 10000000 }
    quota: { included_requests: 1000000000000, cap: hard }
    pricing: { currency: USD, base_fee_minor: 0, model: flat }
  - name: limited
    rate: { requests_per_second: 1, burst: 1 }
    quota: { included_requests: 1000000000000, cap: hard }
    pricing: { currency: USD, base_fee_minor: 0, model: flat }
tenants:
  - id: 0192e4c2-7f4e-7cc0-8000-000000000001
    slug: profile
    plan: unlimited
    keys:
$(key_yaml "$KEY")
    routes:
      - path_prefix: /
        upstreams: ["127.0.0.1:$UPSTREAM_PORT"]
  - id: 0192e4c2-7f4e-7cc0-8000-000000000002
    slug: limited
    plan: limited
    keys:
$(key_yaml "$LIMITED_KEY")
    routes:
      - path_prefix: /
        upstreams: ["127.0.0.1:$UPSTREAM_PORT"]
EOF

nginx_conf() { # name port body-of-location workers
  cat <<EOF
daemon off;
master_process on;
worker_processes $4;
pid $DIR/$1.pid;
error_log $DIR/$1.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/temp/$1-body; proxy_temp_path $DIR/temp/$1-proxy;
    fastcgi_temp_path $DIR/temp/$1-fcgi; uwsgi_temp_path $DIR/temp/$1-uwsgi; scgi_temp_path $DIR/temp/$1-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$2 reuseport;
        location / { $3 }
    }
}
EOF
}
nginx_conf upstream "$UPSTREAM_PORT" 'default_type text/plain; return 200 "hello from the upstream\n";' 1 >"$DIR/upstream.conf"
nginx_conf nginx-proxy "$NGINX_PORT" 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";' "$THREADS" >"$DIR/nginx-proxy.conf"
# Under valgrind: one process, the worker's loop in the master (what callgrind can follow).
sed 's/^master_process on;/master_process off;/' "$DIR/nginx-proxy.conf" >"$DIR/nginx-proxy-single.conf"

wait_for() { # port path [header]
  local i
  for i in $(seq 600); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1$2" ${3:+-H "$3"} && return 0
    sleep 0.1
  done
  log "nothing answers on port $1"; return 1
}
start() { # cpus command… ; sets STARTED
  taskset -c "$1" "${@:2}" >>"$DIR/processes.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

start "$CLIENT_CPUS" /usr/sbin/nginx -p "$DIR" -e "$DIR/upstream.error.log" -c "$DIR/upstream.conf"
wait_for "$UPSTREAM_PORT" /

stack_value() { grep -E "^$1=" "$STACK_ENV" 2>/dev/null | head -1 | cut -d= -f2- || true; }

# Environment of the gateway for configuration $1.
gateway_env() {
  local env=(TOLLGATE_PROXY_CONFIG_FILE="$DIR/gateway.yaml" TOLLGATE_KEY_PEPPER="$PEPPER"
    TOLLGATE_PROXY_LISTEN="127.0.0.1:$PROXY_PORT" TOLLGATE_PROXY_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT"
    TOLLGATE_PROXY_THREADS="$THREADS" TOLLGATE_PROXY_GRACE_SECONDS=0 TOLLGATE_PROXY_INSTANCE=profile
    TOLLGATE_UPSTREAM_ALLOW_NETWORKS=127.0.0.1/32 TOLLGATE_PROXY_MAX_CONNECTIONS_PER_ADDRESS=0
    TOLLGATE_LOG=warn)
  if [ "$1" = c ]; then
    # Slow under valgrind: a generous Redis deadline keeps the limiter out of its fallback.
    env+=(TOLLGATE_REDIS_URL="$(stack_value REDIS_URL)" TOLLGATE_REDIS_KEY_PREFIX="tollgate-profile:$$:"
      TOLLGATE_REDIS_TIMEOUT_MS=5000 TOLLGATE_KAFKA_BROKERS="$(stack_value KAFKA_BROKERS)"
      TOLLGATE_USAGE_TOPIC=tollgate-profile-usage TOLLGATE_USAGE_SPOOL_DIR="$DIR/spool"
      TOLLGATE_USAGE_FLUSH_SECONDS=1)
  else
    env+=(TOLLGATE_USAGE_DISABLED=true)
  fi
  printf '%s\n' "${env[@]}"
}

# Starts the system under test of configuration $1, optionally under a wrapper ($2…); sets SUT
# (the pid to measure: nginx's worker) and PORT.
start_sut() {
  local config=$1; shift
  case $config in
    b)
      local conf=nginx-proxy; [ $# -gt 0 ] && conf=nginx-proxy-single
      start "$SUT_CPUS" "$@" /usr/sbin/nginx -p "$DIR" -e "$DIR/nginx-proxy.error.log" -c "$DIR/$conf.conf"
      PORT=$NGINX_PORT; wait_for "$PORT" /
      if [ $# -gt 0 ]; then SUT=$STARTED; else SUT=$(pgrep -P "$STARTED" | tr '\n' ',' | sed 's/,$//'); fi ;;
    g | g0)
      local defaults=0; [ "$config" = g0 ] && defaults=1
      start "$SUT_CPUS" env TOLLGATE_PROXY_LISTEN="127.0.0.1:$PROXY_PORT" TOLLGATE_PROXY_THREADS="$THREADS" \
        BARE_PINGORA_UPSTREAM="127.0.0.1:$UPSTREAM_PORT" BARE_PINGORA_DEFAULTS=$defaults "$@" "$BIN/tollgate-bare-pingora"
      PORT=$PROXY_PORT; wait_for "$PORT" /; SUT=$STARTED ;;
    *)
      local env; mapfile -t env < <(gateway_env "$config")
      start "$SUT_CPUS" env "${env[@]}" "$@" "$PROXY_BIN"
      PORT=$PROXY_PORT; wait_for "$ADMIN_PORT" /ready; SUT=$STARTED ;;
  esac
}

key_of() { case $1 in c | d) echo "$KEY" ;; e429) echo "$LIMITED_KEY" ;; *) echo "" ;; esac; }

stop_sut() {
  local last=${PIDS[-1]}
  kill -TERM "$last" 2>/dev/null || true
  wait "$last" 2>/dev/null || true
  unset 'PIDS[-1]'
}

# Sequential keep-alive requests on one connection (curl reuses it across the URL range).
requests() { # port count key
  local header=()
  [ -n "$3" ] && header=(-H "Authorization: Bearer $3")
  taskset -c "$CLIENT_CPUS" curl -s -o /dev/null "${header[@]}" "http://127.0.0.1:$1/p[1-$2]"
}

declare -A INSTR SYSCALLS CSW MIGRATIONS DETAIL RPS
measure_callgrind() {
  local config=$1 out="$DIR/callgrind.out.$1"
  log "($config) callgrind: $WARMUP warm-up + $REQUESTS measured requests"
  start_sut "$config" valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
    --collect-systime=no
  requests "$PORT" "$WARMUP" "$(key_of "$config")"
  callgrind_control -z "$SUT" >/dev/null 2>&1
  requests "$PORT" "$REQUESTS" "$(key_of "$config")"
  callgrind_control -d "$SUT" >/dev/null 2>&1
  # The dump on request is "$out.1"; the one at exit ("$out") holds only the shutdown.
  local i; for i in $(seq 100); do [ -s "$out.1" ] && break; sleep 0.1; done
  stop_sut
  local total; total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out.1")
  INSTR[$config]=$((total / REQUESTS))
  mv "$out.1" "$DIR/measured.callgrind.$config"
  rm -f "$out" "$out".*
}

measure_syscalls() {
  local config=$1 key header=() raw="$DIR/perf-$1.txt"
  key=$(key_of "$config"); [ -n "$key" ] && header=(-H "Authorization: Bearer $key")
  log "($config) syscalls: wrk -c$CONNECTIONS for ${SECONDS_RUN}s under perf stat"
  start_sut "$config"
  taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNECTIONS" -d1s "${header[@]}" "http://127.0.0.1:$PORT/" >/dev/null
  perf stat -x, -o "$raw" -e 'syscalls:sys_enter_*' -e context-switches -e cpu-migrations -p "$SUT" &
  local perf_pid=$! record_pid=
  if [ "${PROFILE_RECORD:-0}" = 1 ]; then
    perf record -q -e cpu-clock -F 2999 -g -p "$SUT" -o "$DIR/perf-$config.data" 2>/dev/null &
    record_pid=$!
  fi
  sleep 0.2
  local text; text=$(taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" "${header[@]}" "http://127.0.0.1:$PORT/")
  kill -INT "$perf_pid" $record_pid; wait "$perf_pid" $record_pid 2>/dev/null || true
  stop_sut
  local n; n=$(awk '/requests in/ {print $1; exit}' <<<"$text")
  RPS[$config]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$text")
  SYSCALLS[$config]=$(awk -F, -v n="$n" '$3 ~ /^syscalls:/ && $1 ~ /^[0-9]+$/ {s += $1} END {printf "%.2f", s / n}' "$raw")
  CSW[$config]=$(awk -F, -v n="$n" '$3 == "context-switches" {printf "%.3f", $1 / n}' "$raw")
  MIGRATIONS[$config]=$(awk -F, -v n="$n" '$3 == "cpu-migrations" {printf "%.4f", $1 / n}' "$raw")
  DETAIL[$config]=$(awk -F, -v n="$n" '$3 ~ /^syscalls:/ && $1 ~ /^[0-9]+$/ && $1 / n >= 0.01 {
      sub("syscalls:sys_enter_", "", $3); printf "%s %.2f\n", $3, $1 / n }' "$raw" |
    sort -k2 -nr | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
}

declare -A NAMES
NAMES=([b]="nginx proxy_pass" [g0]="bare Pingora, Pingora defaults" [g]="bare Pingora, gateway settings"
  [d]="Tollgate auth only" [c]="Tollgate full stack" [e429]="Tollgate, every request 429")
ORDER=(b g0 g d c e429)
if want c && ! grep -q '^REDIS_URL=' "$STACK_ENV" 2>/dev/null; then
  log "no $STACK_ENV: skipping (c) (start the services with scripts/stack.sh services)"
  ONLY=${ONLY//c/}
fi
if want c; then
  # The usage topic, created fresh (the broker does not create topics on produce: events would
  # go to the disk spool instead of Kafka).
  TANSU_BIN=$(stack_value TANSU_BIN); KAFKA=$(stack_value KAFKA_BROKERS)
  if [ -x "$TANSU_BIN" ]; then
    "$TANSU_BIN" topic delete --broker "tcp://$KAFKA" tollgate-profile-usage >/dev/null 2>&1 || true
    "$TANSU_BIN" topic create --broker "tcp://$KAFKA" --partitions 3 tollgate-profile-usage >/dev/null
  else
    log "no tansu binary in $STACK_ENV: (c) spools its usage events"
  fi
fi
for config in "${ORDER[@]}"; do
  want "$config" || continue
  [ "${PROFILE_SKIP_SYSCALLS:-0}" = 1 ] || measure_syscalls "$config"
  [ "${PROFILE_SKIP_CALLGRIND:-0}" = 1 ] || measure_callgrind "$config"
done

{
  echo "| configuration | instructions/request | syscalls/request | context switches/request | CPU migrations/request | req/s (wrk, busy machine) | syscalls ≥ 0.01/request |"
  echo "|---|---|---|---|---|---|---|"
  for config in "${ORDER[@]}"; do
    want "$config" || continue
    echo "| ($config) ${NAMES[$config]} | ${INSTR[$config]:--} | ${SYSCALLS[$config]:--} | ${CSW[$config]:--} | ${MIGRATIONS[$config]:--} | ${RPS[$config]:--} | ${DETAIL[$config]:--} |"
  done
  echo
  echo "$THREADS thread(s)/worker(s); callgrind: $REQUESTS sequential keep-alive requests after $WARMUP; syscalls: wrk -t1 -c$CONNECTIONS ${SECONDS_RUN}s; commit $(git -C "$ROOT" rev-parse --short=8 HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . || echo -dirty)."
} | tee "$DIR/profile.md"
