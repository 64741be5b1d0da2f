#!/usr/bin/env bash
# The Helm chart's checks, part of `make test` (scripts/run-tests.sh): installs the chart
# tools (scripts/chart-tools.sh, cached), scrapes the metric names the binaries export
# (scripts/metric-names.sh), then runs scripts/chart_checks.py, which prints one cargo-style
# "test result" line that run-tests.sh counts.
#
#   scripts/chart-checks.sh              every check
#   scripts/chart-checks.sh --update     rewrite the golden renders and deploy/k8s from the chart
#   scripts/chart-checks.sh --only NAME  the checks whose name contains NAME
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
tools=$("$ROOT/scripts/chart-tools.sh")
mkdir -p "$TARGET_DIR"
exported="$TARGET_DIR/metric-names.txt"
rm -f "$exported"
case " $* " in
  *" --update "*) ;;
  *) "$ROOT/scripts/metric-names.sh" >"$exported.tmp" && mv "$exported.tmp" "$exported" ||
       echo "[chart-checks] scraping the binaries failed: the metric-name check fails" >&2 ;;
esac
CHART_TOOLS_BIN=$tools exec "$tools/../venv/bin/python" "$ROOT/scripts/chart_checks.py" --exported "$exported" "$@"
