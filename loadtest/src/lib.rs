//! Load-test harness: brings up the system under test and its baselines, drives them with
//! existing load generators (wrk for the highest throughput, oha at a fixed rate with latency
//! correction for percentiles), samples CPU time and peak memory from `/proc`, and writes the
//! results under `loadtest/results/`. `make loadtest` runs it through `scripts/loadtest.sh`,
//! which installs the tools and builds the binaries first.
//!
//! The statistics are floating-point throughout; they never decide anything on a request path.
#![allow(clippy::float_arithmetic)]

pub mod fixtures;
pub mod generators;
pub mod process;
pub mod report;
pub mod scenario;
pub mod settings;
pub mod stats;
