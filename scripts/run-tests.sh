#!/usr/bin/env bash
# Runs every test target of the workspace, then schemathesis against the live control API
# (scripts/schemathesis.sh), the Helm chart's checks (scripts/chart-checks.sh), the dashboard's
# reproducible-build check and its browser tests (scripts/dashboard.sh check,
# scripts/dashboard-e2e.sh), and ends with one summary line over all of them (cargo prints one
# "test result" per test binary, the last of which may be an empty one).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/test-output.log
status=0
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# The control API against its own OpenAPI document (one test in the summary).
api_passed=0 api_failed=0
if scripts/schemathesis.sh 2>&1 | tee -a "$log"; then api_passed=1; else api_failed=1; status=1; fi
# The dashboard: rebuilt assets identical to the committed ones, then end to end in headless
# Chromium against the real stack (one test each in the summary).
for suite in "scripts/dashboard.sh check" scripts/dashboard-e2e.sh; do
  if $suite 2>&1 | tee -a "$log"; then api_passed=$((api_passed + 1)); else api_failed=$((api_failed + 1)); status=1; fi
done
# The Helm chart, its manifests and monitoring: prints its own "test result" line; a run that
# ends without one counts as one failure.
chart_failed=0
if ! scripts/chart-checks.sh 2>&1 | tee "$log.chart"; then status=1; grep -q '^test result:' "$log.chart" || chart_failed=1; fi
cat "$log.chart" >>"$log" && rm -f "$log.chart"
api_failed=$((api_failed + chart_failed))
awk -v p="$api_passed" -v f="$api_failed" \
    '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
