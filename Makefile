# Tollgate: `make up` runs the platform locally, `make test` runs the whole suite.
# Both start the local services themselves (scripts/stack.sh); nothing needs to run beforehand.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down status services test lint fmt bench bench-ingest bench-invoicing loadtest profile fuzz dashboard

## Start services, build, migrate, seed the demo tenant and start every service binary.
up:
	scripts/stack.sh up

## Stop everything `make up` or `make services` started.
down:
	scripts/stack.sh down

## Show what runs and whether each URL in .tollgate/stack.env answers.
status:
	scripts/stack.sh status

## Start PostgreSQL, Redis and the Kafka-protocol broker only.
services:
	scripts/stack.sh services

## Formatting, lints with warnings denied, and every test against the real services.
test: services
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	scripts/run-tests.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Build the dashboard: dashboard/openapi.json from the control API, its API types, dashboard/dist
## and the embedded-asset list; commit what it changes (make test checks they match).
dashboard:
	scripts/dashboard.sh build

## Criterion benches of the hot path.
bench:
	$(CARGO) bench -p tollgate-benches

## Sustained ingest into PostgreSQL (fsync on), in events/s.
bench-ingest: services
	$(CARGO) run --release --locked -p tollgate-metering --example ingest_bench

## `monthly` for 10,000 tenants with a month of hourly usage each (TOLLGATE_BENCH_TENANTS).
bench-invoicing: services
	$(CARGO) run --release --locked -p tollgate-invoicing --example monthly_bench

## Load tests: Tollgate against nginx baselines over several rounds (wrk, oha); results in
## loadtest/results/. LOADTEST_SECONDS, LOADTEST_ROUNDS, … (README, "Load tests").
loadtest:
	scripts/loadtest.sh

## Instructions (callgrind), syscalls and context switches (perf) per request for nginx, bare
## Pingora and Tollgate: counts that a busy machine does not change (PROFILE_*, see the script).
profile:
	scripts/profile.sh

## Fuzz the parsers of untrusted input (nightly; FUZZ_SECONDS per target, default 60).
fuzz:
	scripts/fuzz.sh
