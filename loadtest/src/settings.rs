//! The run's settings: `LOADTEST_*` environment variables with defaults, checked up front so a
//! bad value fails before anything starts.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::scenario::Scenario;

/// Ports of the processes the harness starts (all on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// nginx acting as the upstream (fixed small body).
    pub upstream: u16,
    /// nginx as a plain reverse proxy: baseline (b).
    pub nginx_proxy: u16,
    /// The gateway's traffic port.
    pub gateway: u16,
    /// The gateway's `/ready` and `/metrics`.
    pub gateway_admin: u16,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Measured seconds per load-generator run.
    pub seconds: u32,
    /// Unmeasured wrk seconds before each measurement.
    pub warmup_seconds: u32,
    /// Rounds; each runs every scenario once, in a rotated order.
    pub rounds: u32,
    /// Connections held by wrk and oha.
    pub connections: u32,
    /// Fixed rate for oha; `None` measures the full stack (c) first and takes half its maximum.
    pub rate: Option<u32>,
    /// Scenarios to run, in their base order.
    pub scenarios: Vec<Scenario>,
    /// Tenants (one key each) of scenario (f).
    pub tenants: u32,
    /// CPU list (`taskset -c`) of the system under test.
    pub sut_cpus: String,
    /// CPU list of the load generator (and of the upstream, unless it is the system under test).
    pub client_cpus: String,
    /// Every CPU: configurations (h), (i) and (j) run everything on them.
    pub all_cpus: String,
    /// Worker threads of the gateway and worker processes of each nginx.
    pub workers: u32,
    /// Private configs, pid files, logs and raw tool outputs.
    pub work_dir: PathBuf,
    /// Where the results JSON and markdown go.
    pub results_dir: PathBuf,
    /// Directory of the release binaries (`tollgate-proxy`).
    pub bin_dir: PathBuf,
    /// The oha binary.
    pub oha: PathBuf,
    /// The metering ingest benchmark's binary; `None` skips it.
    pub ingest_bench: Option<PathBuf>,
    /// Redis for cluster limits (from the stack's `stack.env`).
    pub redis_url: String,
    /// Kafka bootstrap servers (from `stack.env`).
    pub kafka_brokers: String,
    /// The stack's state directory (pid files of Redis and the broker).
    pub stack_state_dir: PathBuf,
    /// The broker binary, for deleting the load test's usage topic afterwards.
    pub tansu: Option<PathBuf>,
    /// Ports.
    pub ports: Ports,
    /// The commit measured (short hash, `+dirty` if the tree has changes).
    pub commit: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v} is not a valid number")),
    }
}

/// Reads `KEY=value` lines (the stack's `stack.env`).
pub fn read_env_file(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (run scripts/stack.sh services)", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

impl Settings {
    /// Settings from the environment; `root` is the checkout.
    pub fn from_env(root: &std::path::Path) -> anyhow::Result<Self> {
        let seconds = number("LOADTEST_SECONDS", 30)?;
        let rounds = number("LOADTEST_ROUNDS", 3)?;
        if seconds < 2 || rounds < 1 {
            bail!("LOADTEST_SECONDS must be at least 2 and LOADTEST_ROUNDS at least 1");
        }
        let scenarios = match var("LOADTEST_SCENARIOS") {
            None => Scenario::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|s| Scenario::from_letter(s.trim()))
                .collect::<anyhow::Result<_>>()?,
        };
        let stack_env_path = var("LOADTEST_STACK_ENV")
            .map_or_else(|| root.join(".tollgate/stack.env"), PathBuf::from);
        let stack = read_env_file(&stack_env_path)?;
        let stack_value = |k: &str| {
            stack
                .get(k)
                .cloned()
                .with_context(|| format!("{k} missing from {}", stack_env_path.display()))
        };
        let bin_dir = var("LOADTEST_BIN_DIR").map_or_else(
            || {
                std::env::var("CARGO_TARGET_DIR")
                    .map_or_else(|_| root.join("target"), PathBuf::from)
                    .join("release")
            },
            PathBuf::from,
        );
        Ok(Self {
            seconds,
            warmup_seconds: number("LOADTEST_WARMUP_SECONDS", 3)?,
            rounds,
            connections: number("LOADTEST_CONNECTIONS", 32)?,
            rate: var("LOADTEST_RATE")
                .map(|v| v.parse().context("LOADTEST_RATE"))
                .transpose()?,
            scenarios,
            tenants: number("LOADTEST_TENANTS", 10_000)?,
            sut_cpus: var("LOADTEST_SUT_CPUS").unwrap_or_else(|| "0".into()),
            client_cpus: var("LOADTEST_CLIENT_CPUS").unwrap_or_else(|| "1".into()),
            all_cpus: var("LOADTEST_ALL_CPUS").unwrap_or_else(|| "0,1".into()),
            workers: number("LOADTEST_WORKERS", 1)?,
            work_dir: var("LOADTEST_DIR")
                .map_or_else(|| root.join(".tollgate/loadtest"), PathBuf::from),
            results_dir: var("LOADTEST_RESULTS_DIR")
                .map_or_else(|| root.join("loadtest/results"), PathBuf::from),
            bin_dir,
            oha: var("LOADTEST_OHA").map_or_else(|| "oha".into(), PathBuf::from),
            ingest_bench: if var("LOADTEST_SKIP_INGEST").as_deref() == Some("1") {
                None
            } else {
                var("LOADTEST_INGEST_BENCH").map(PathBuf::from)
            },
            redis_url: stack_value("REDIS_URL")?,
            kafka_brokers: stack_value("KAFKA_BROKERS")?,
            stack_state_dir: PathBuf::from(stack_value("STATE_DIR")?),
            tansu: var("LOADTEST_TANSU").map(PathBuf::from),
            ports: Ports {
                upstream: number("LOADTEST_UPSTREAM_PORT", 58100)?,
                nginx_proxy: number("LOADTEST_NGINX_PORT", 58101)?,
                gateway: number("LOADTEST_GATEWAY_PORT", 58080)?,
                gateway_admin: number("LOADTEST_GATEWAY_ADMIN_PORT", 58081)?,
            },
            commit: var("LOADTEST_COMMIT").unwrap_or_else(|| "unknown".into()),
        })
    }
}
