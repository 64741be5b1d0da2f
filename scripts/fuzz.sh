#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 60). Needs a nightly toolchain (cargo-fuzz
# builds with sanitizers); installs cargo-fuzz from crates.io if it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "fuzzing needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in $(cargo +nightly fuzz list); do
  echo "fuzzing $target for ${seconds}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -max_len=4096
done
