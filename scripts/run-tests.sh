#!/usr/bin/env bash
# Runs every test target of the workspace and ends with one summary line over all of them
# (cargo prints one "test result" per test binary, the last of which may be an empty one).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/test-output.log
status=0
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
