//! Load-test harness: brings up the stack and baselines, drives them with existing load
//! generators (wrk, oha) and writes results under `loadtest/results/`.
//!
//! A skeleton for now; the performance-suite issue fills it in.
