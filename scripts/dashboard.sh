#!/usr/bin/env bash
# The dashboard's build (`make dashboard`) and its reproducibility check (part of `make test`).
#
#   scripts/dashboard.sh build   regenerates dashboard/openapi.json from the control API, the
#                                API types, dashboard/dist and control-api/src/dashboard/assets.rs
#   scripts/dashboard.sh check   rebuilds from the committed openapi.json and fails if the result
#                                differs from the committed files; skipped without Node.js >= 20.19
#
# npm installs exactly package-lock.json (`npm ci`) into dashboard/node_modules (ignored by git);
# npm's own cache keeps later installs offline-fast.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DASHBOARD="$ROOT/dashboard"
GENERATED=(dashboard/dist dashboard/src/api/schema.d.ts control-api/src/dashboard/assets.rs)

log() { printf '[dashboard] %s\n' "$*" >&2; }
die() { printf '[dashboard] error: %s\n' "$*" >&2; exit 1; }

node_ok() {
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
}

install() {
  # Reinstall only when the lockfile changed since the last install.
  local stamp="$DASHBOARD/node_modules/.lock-stamp"
  if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$DASHBOARD/package-lock.json"; then
    log "npm ci"
    (cd "$DASHBOARD" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$DASHBOARD/package-lock.json" "$stamp"
  fi
}

build_assets() {
  install
  (cd "$DASHBOARD" && npm run --silent build)
}

case "${1:-}" in
  build)
    node_ok || die "needs Node.js >= 20.19 and npm"
    log "writing dashboard/openapi.json from the control API's document"
    (cd "$ROOT" && TOLLGATE_WRITE_OPENAPI=1 cargo test --locked -q -p tollgate-control-api \
      --test openapi_document the_dashboards_copy_of_the_document_is_current >/dev/null)
    build_assets
    log "built; commit dashboard/openapi.json and ${GENERATED[*]}"
    ;;
  check)
    if ! node_ok; then
      log "skipped: no Node.js >= 20.19 (the committed assets are used as they are)"
      exit 0
    fi
    build_assets >/dev/null
    cd "$ROOT"
    changed=$(git status --porcelain -- "${GENERATED[@]}")
    if [ -n "$changed" ]; then
      printf '%s\n' "$changed" >&2
      die "the rebuilt dashboard differs from the committed one: run 'make dashboard' and commit"
    fi
    log "the rebuilt dashboard is identical to the committed one"
    ;;
  *)
    die "usage: $0 build|check"
    ;;
esac
