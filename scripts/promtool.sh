#!/usr/bin/env bash
# Runs Debian's promtool (from the `prometheus` package, unpacked into the cache, never installed
# or started): `scripts/promtool.sh check rules FILE`, `… test rules FILE`, `… check metrics`.
set -euo pipefail
CACHE_DIR=${TOLLGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}
DIR="$CACHE_DIR/promtool"
BIN="$DIR/usr/bin/promtool"
if [ ! -x "$BIN" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get download -qq prometheus >/dev/null; })
  rm -rf "$DIR.tmp" && mkdir -p "$DIR.tmp"
  dpkg -x "$work"/prometheus_*.deb "$DIR.tmp"
  rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
fi
exec "$BIN" "$@"
