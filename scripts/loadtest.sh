#!/usr/bin/env bash
# Tollgate's load-test suite (`make loadtest`): installs the load generators and nginx if missing,
# brings up (or reuses) PostgreSQL, Redis and the Kafka-protocol broker, builds the gateway, the
# orchestrator and the ingest benchmark in release mode, then runs `tollgate-loadtest`, which
# measures every configuration over several rounds and writes loadtest/results/<date>-<commit>.json
# and .md. Settings: LOADTEST_* (README, "Load tests"); e.g.
#
#   LOADTEST_SECONDS=10 LOADTEST_ROUNDS=2 make loadtest
#   LOADTEST_SCENARIOS=b,c LOADTEST_SKIP_INGEST=1 make loadtest
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE_DIR=${TOLLGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}
OHA_VERSION=1.16.0
OHA_BIN="$CACHE_DIR/oha-$OHA_VERSION/bin/oha"
export LOADTEST_DIR=${LOADTEST_DIR:-$ROOT/.tollgate/loadtest}
STACK_ENV="$ROOT/.tollgate/stack.env"

log() { printf '[loadtest] %s\n' "$*" >&2; }

install_tools() {
  local missing=()
  for p in nginx wrk; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  command -v taskset >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ ! -x "$OHA_BIN" ]; then
    log "building oha $OHA_VERSION from crates.io into $CACHE_DIR (once; a few minutes)"
    mkdir -p "$CACHE_DIR"
    # Outside the checkout, so rust-toolchain.toml and CARGO_TARGET_DIR do not apply. oha does
    # not build without a TLS backend, so its default (rustls) stays.
    (cd "$CACHE_DIR" && env -u CARGO_TARGET_DIR cargo install oha --version "$OHA_VERSION" --locked \
      --root "$CACHE_DIR/oha-$OHA_VERSION" --quiet)
  fi
}

stack_value() { grep -E "^$1=" "$STACK_ENV" 2>/dev/null | head -1 | cut -d= -f2- || true; }

# PostgreSQL, Redis and the broker named in stack.env all answer.
stack_answers() {
  local db redis kafka
  db=$(stack_value DATABASE_URL); redis=$(stack_value REDIS_URL); kafka=$(stack_value KAFKA_BROKERS)
  [ -n "$db" ] && [ -n "$redis" ] && [ -n "$kafka" ] || return 1
  /usr/lib/postgresql/15/bin/psql "$db" -tAc 'SELECT 1' >/dev/null 2>&1 || return 1
  redis-cli -u "$redis" --no-auth-warning ping 2>/dev/null | grep -q PONG || return 1
  (exec 3<>"/dev/tcp/${kafka%%:*}/${kafka##*:}") 2>/dev/null
}

# Reuse the running stack when stack.env names one that answers; otherwise start it (in the
# state directory stack.env names, which may belong to another checkout sharing .tollgate).
start_stack() {
  if stack_answers; then
    log "reusing the running services named in .tollgate/stack.env"
    return
  fi
  local state
  state=$(stack_value STATE_DIR)
  if [ -n "$state" ]; then
    TOLLGATE_STATE_DIR=$state "$ROOT/scripts/stack.sh" services
  else
    "$ROOT/scripts/stack.sh" services
  fi
}

# Stops whatever an interrupted run left behind (pid files of the processes it started).
stop_leftovers() {
  local f pid
  for f in "$LOADTEST_DIR"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping leftover $(basename "$f" .pid) (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

USAGE_TOPIC=tollgate-loadtest-usage

# The gateway's usage topic, created fresh (the broker does not create topics on produce; a
# missing topic would send every event to the disk spool instead of Kafka).
create_topic() {
  local kafka
  kafka=$(stack_value KAFKA_BROKERS)
  TANSU_BIN=$(stack_value TANSU_BIN)  # the broker build stack.sh made (patched, see scripts/tansu)
  [ -x "$TANSU_BIN" ] || { log "no tansu binary: create topic $USAGE_TOPIC yourself"; return; }
  "$TANSU_BIN" topic delete --broker "tcp://$kafka" "$USAGE_TOPIC" >/dev/null 2>&1 || true
  "$TANSU_BIN" topic create --broker "tcp://$kafka" --partitions 3 "$USAGE_TOPIC" >/dev/null
}

# Limiter keys and the usage topic of the run: nothing of it stays in the shared services.
clean_services() {
  local redis_url kafka
  redis_url=$(stack_value REDIS_URL)
  kafka=$(stack_value KAFKA_BROKERS)
  TANSU_BIN=$(stack_value TANSU_BIN)
  redis-cli -u "$redis_url" --no-auth-warning --scan --pattern 'tollgate-loadtest:*' |
    xargs -r -n 500 redis-cli -u "$redis_url" --no-auth-warning del >/dev/null || true
  if [ -x "$TANSU_BIN" ]; then
    "$TANSU_BIN" topic delete --broker "tcp://$kafka" "$USAGE_TOPIC" >/dev/null 2>&1 || true
  fi
  rm -rf "$LOADTEST_DIR"/spool-*
}

main() {
  install_tools
  start_stack
  mkdir -p "$LOADTEST_DIR"
  chmod 700 "$LOADTEST_DIR"
  stop_leftovers
  trap 'stop_leftovers; clean_services' EXIT
  create_topic

  log "building release binaries (tollgate-proxy, tollgate-bare-pingora, tollgate-loadtest, ingest_bench)"
  (cd "$ROOT" && cargo build --release --locked --quiet -p tollgate-proxy -p tollgate-loadtest \
    --bin tollgate-proxy --bin tollgate-bare-pingora --bin tollgate-loadtest)
  local target=${CARGO_TARGET_DIR:-$ROOT/target}
  if [ "${LOADTEST_SKIP_INGEST:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --locked --quiet -p tollgate-metering --example ingest_bench)
    export LOADTEST_INGEST_BENCH="$target/release/examples/ingest_bench"
  fi

  local commit
  commit=$(git -C "$ROOT" rev-parse --short=8 HEAD)
  git -C "$ROOT" diff --quiet HEAD -- . ':!loadtest/results' || commit="$commit-dirty"
  export LOADTEST_COMMIT=${LOADTEST_COMMIT:-$commit}
  export LOADTEST_ROOT=$ROOT LOADTEST_OHA=$OHA_BIN LOADTEST_BIN_DIR="$target/release"
  export LOADTEST_STACK_ENV=$STACK_ENV
  "$target/release/tollgate-loadtest"
}

main "$@"
