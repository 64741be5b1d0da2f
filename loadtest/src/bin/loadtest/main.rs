//! `tollgate-loadtest`: runs every configuration over several rounds, then the metering ingest
//! benchmark, and writes `loadtest/results/<date>-<commit>.json` and `.md`, with the difference
//! against the newest earlier results. `scripts/loadtest.sh` (`make loadtest`) installs the
//! tools, starts the stack and builds the binaries before calling it; settings are `LOADTEST_*`
//! environment variables (see README, "Load tests").
#![allow(
    clippy::print_stdout,
    clippy::float_arithmetic,
    reason = "a command-line report computing statistics"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tollgate_loadtest::report::{
    Host, IngestResult, Results, RunSettings, SCHEMA, ScenarioResults, newest_previous,
};
use tollgate_loadtest::scenario::{Lab, RunResult};
use tollgate_loadtest::settings::Settings;

fn main() -> anyhow::Result<()> {
    let root = std::env::var("LOADTEST_ROOT")
        .map_or_else(|_| std::env::current_dir(), |r| Ok(PathBuf::from(r)))?;
    let settings = Settings::from_env(&root)?;
    std::fs::create_dir_all(&settings.work_dir)?;
    std::fs::create_dir_all(&settings.results_dir)?;

    let (rate, rate_source) = match settings.rate {
        Some(rate) => (rate, "LOADTEST_RATE".to_owned()),
        None => {
            println!("calibrating: highest throughput of (c) Tollgate full stack …");
            let max = Lab::calibrate(&settings)?;
            let rate = rate_from(max);
            println!("  (c) {max:.0} req/s → oha fixed rate {rate} req/s");
            (
                rate,
                format!("50 % of (c)'s calibration run, {max:.0} req/s"),
            )
        }
    };
    let lab = Lab::prepare(&settings, rate)?;
    let scenarios = &settings.scenarios;
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); scenarios.len()];
    for round in 1..=settings.rounds {
        // Rotated order: no configuration always runs first (cold caches) or last.
        let offset = usize::try_from(round - 1).unwrap_or(0) % scenarios.len();
        for i in (0..scenarios.len()).map(|i| (i + offset) % scenarios.len()) {
            let scenario = scenarios[i];
            let run = lab
                .run(scenario, round)
                .with_context(|| format!("round {round}, ({})", scenario.letter()))?;
            println!(
                "round {round} ({}) {:<22} {:>8.0} req/s  p50 {:.3} p99 {:.3} p99.9 {:.3} ms  \
                 CPU {:.3}/{:.3} s per 10k  RSS {} KiB  non-2xx {}  429 {}",
                scenario.letter(),
                scenario.name(),
                run.wrk.requests_per_second,
                run.oha.p50_ms,
                run.oha.p99_ms,
                run.oha.p99_9_ms,
                run.cpu_s_per_10k_max_rate,
                run.cpu_s_per_10k_fixed_rate,
                run.peak_rss_kib,
                run.wrk.non_2xx,
                run.oha.status_429
            );
            runs[i].push(run);
        }
    }

    let ingest = match &settings.ingest_bench {
        Some(bench) => Some(run_ingest(bench, &settings.work_dir)?),
        None => None,
    };

    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let mut results = Results {
        schema: SCHEMA,
        date: date.clone(),
        commit: settings.commit.clone(),
        finished_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host: host(),
        settings: RunSettings {
            seconds: settings.seconds,
            warmup_seconds: settings.warmup_seconds,
            rounds: settings.rounds,
            connections: settings.connections,
            fixed_rate: lab.rate(),
            rate_source,
            sut_cpus: settings.sut_cpus.clone(),
            client_cpus: settings.client_cpus.clone(),
            workers: settings.workers,
            tenants: settings.tenants,
        },
        scenarios: scenarios
            .iter()
            .zip(runs)
            .map(|(&s, r)| ScenarioResults::new(s, r))
            .collect(),
        ratios: Default::default(),
        ingest,
    };
    results.compute_ratios();

    let json_path = free_name(
        &settings.results_dir,
        &format!("{date}-{}", settings.commit),
    );
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    let mut markdown = results.markdown();
    if let Some((path, previous)) = newest_previous(&settings.results_dir, &json_path) {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        let diff = results.diff(&previous, &name);
        println!("\n{diff}");
        markdown.push('\n');
        markdown.push_str(&diff);
    }
    std::fs::write(json_path.with_extension("md"), &markdown)?;
    println!("\n{}", results.markdown());
    println!("results: {}", json_path.display());
    Ok(())
}

/// Half of the highest rate, rounded down to a multiple of 100.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn rate_from(max_rps: f64) -> u32 {
    let half = (max_rps / 2.0 / 100.0).floor() * 100.0;
    half.clamp(100.0, 10_000_000.0) as u32
}

/// `<stem>.json` in `dir`, or `<stem>-2.json`, … if taken (a re-run on the same commit).
fn free_name(dir: &Path, stem: &str) -> PathBuf {
    let mut path = dir.join(format!("{stem}.json"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.json"));
        n += 1;
    }
    path
}

fn run_ingest(bench: &Path, work_dir: &Path) -> anyhow::Result<IngestResult> {
    println!("metering ingest benchmark ({}) …", bench.display());
    let out = Command::new(bench)
        .output()
        .with_context(|| format!("running {}", bench.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(
        work_dir.join("ingest-bench.txt"),
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )?;
    anyhow::ensure!(out.status.success(), "the ingest benchmark failed: {text}");
    print!("{text}");
    Ok(IngestResult::parse(&text))
}

fn host() -> Host {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    Host {
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        cpu_model,
        kernel,
    }
}
