//! The results file (`loadtest/results/<date>-<commit>.json`), its markdown table, and the
//! difference against the newest earlier results file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::scenario::{RunResult, Scenario};
use crate::stats::Spread;

/// Format version of the results file.
pub const SCHEMA: u32 = 1;

/// Everything one `make loadtest` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: u32,
    /// UTC date (`YYYY-MM-DD`).
    pub date: String,
    /// Commit measured.
    pub commit: String,
    /// When the run ended (Unix seconds): orders results files.
    pub finished_at_unix: u64,
    /// The machine.
    pub host: Host,
    /// How it was run.
    pub settings: RunSettings,
    /// Per scenario: every round and the spread over rounds.
    pub scenarios: Vec<ScenarioResults>,
    /// The ratios the issue asks for (medians over rounds).
    pub ratios: BTreeMap<String, Option<f64>>,
    /// The metering ingest benchmark.
    pub ingest: Option<IngestResult>,
}

/// The machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    /// Online CPUs.
    pub cpus: usize,
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
}

/// Settings recorded with the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    /// Seconds per measured run.
    pub seconds: u32,
    /// Warm-up seconds.
    pub warmup_seconds: u32,
    /// Rounds.
    pub rounds: u32,
    /// Connections of wrk and oha.
    pub connections: u32,
    /// oha's fixed rate.
    pub fixed_rate: u32,
    /// Where the rate came from.
    pub rate_source: String,
    /// CPUs of the system under test.
    pub sut_cpus: String,
    /// CPUs of the load generator and the upstream.
    pub client_cpus: String,
    /// Gateway threads = nginx worker processes.
    pub workers: u32,
    /// Tenants of (f).
    pub tenants: u32,
}

/// One scenario over every round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResults {
    /// `a`…`f`.
    pub letter: String,
    /// Short name.
    pub name: String,
    /// What runs.
    pub description: String,
    /// Each round.
    pub runs: Vec<RunResult>,
    /// Median and range per metric.
    pub summary: BTreeMap<String, Spread>,
}

/// `make bench-ingest`'s two numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestResult {
    /// Events/s through the metering store alone (fsync on).
    pub direct_events_per_second: Option<f64>,
    /// Events/s from Kafka to PostgreSQL through the aggregator.
    pub kafka_events_per_second: Option<f64>,
}

impl IngestResult {
    /// Reads the benchmark's output lines (`… = 123456 events/s …`).
    pub fn parse(output: &str) -> Self {
        let rate = |prefix: &str| {
            output
                .lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| {
                    let (_, tail) = l.split_once(" = ")?;
                    tail.split_whitespace().next()?.parse().ok()
                })
        };
        Self {
            direct_events_per_second: rate("direct store:"),
            kafka_events_per_second: rate("kafka → postgres:"),
        }
    }
}

/// How a metric is read from one run.
type ReadMetric = fn(&RunResult) -> f64;

/// Metric names of [`ScenarioResults::summary`] with how to read them from a run.
const METRICS: &[(&str, ReadMetric)] = &[
    ("requests_per_second", |r| r.wrk.requests_per_second),
    ("p50_ms", |r| r.oha.p50_ms),
    ("p99_ms", |r| r.oha.p99_ms),
    ("p99_9_ms", |r| r.oha.p99_9_ms),
    ("fixed_rate_achieved_rps", |r| r.oha.requests_per_second),
    ("cpu_s_per_10k_max_rate", |r| r.cpu_s_per_10k_max_rate),
    ("cpu_s_per_10k_fixed_rate", |r| r.cpu_s_per_10k_fixed_rate),
    ("cpu_busy_max_rate", |r| r.cpu_busy_max_rate),
    ("backing_cpu_s_per_10k_fixed_rate", |r| {
        r.backing_cpu_s_per_10k_fixed_rate.unwrap_or(f64::NAN)
    }),
    ("peak_rss_mib", |r| to_f64(r.peak_rss_kib) / 1024.0),
    ("wrk_non_2xx_share", |r| {
        to_f64(r.wrk.non_2xx) / to_f64(r.wrk.requests.max(1))
    }),
    ("wrk_non_2xx", |r| to_f64(r.wrk.non_2xx)),
    ("wrk_socket_errors", |r| to_f64(r.wrk.socket_errors)),
    ("oha_429", |r| to_f64(r.oha.status_429)),
    ("oha_429_share", |r| {
        to_f64(r.oha.status_429) / to_f64(r.oha.requests.max(1))
    }),
    ("oha_other_non_2xx", |r| to_f64(r.oha.status_other)),
    ("oha_errors", |r| to_f64(r.oha.errors)),
    ("redis_fallbacks", |r| to_f64(r.redis_fallbacks)),
    ("usage_events_produced", |r| {
        r.usage_events.map_or(f64::NAN, |u| to_f64(u.produced))
    }),
    ("usage_events_spooled", |r| {
        r.usage_events.map_or(f64::NAN, |u| to_f64(u.spooled))
    }),
    ("usage_events_dropped", |r| {
        r.usage_events.map_or(f64::NAN, |u| to_f64(u.dropped))
    }),
];

#[allow(clippy::cast_precision_loss)]
fn to_f64(n: u64) -> f64 {
    n as f64
}

impl ScenarioResults {
    /// Summarises `runs` of `scenario`.
    pub fn new(scenario: Scenario, runs: Vec<RunResult>) -> Self {
        let summary = METRICS
            .iter()
            .filter_map(|(name, read)| {
                Spread::of(runs.iter().map(read)).map(|s| ((*name).to_owned(), s))
            })
            .collect();
        Self {
            letter: scenario.letter().to_owned(),
            name: scenario.name().to_owned(),
            description: scenario.description().to_owned(),
            runs,
            summary,
        }
    }

    fn median(&self, metric: &str) -> Option<f64> {
        self.summary.get(metric).map(|s| s.median)
    }
}

impl Results {
    fn scenario(&self, letter: &str) -> Option<&ScenarioResults> {
        self.scenarios.iter().find(|s| s.letter == letter)
    }

    /// Fills [`Results::ratios`] from the medians.
    pub fn compute_ratios(&mut self) {
        let m = |letter: &str, metric: &str| self.scenario(letter)?.median(metric);
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let rps = "requests_per_second";
        let fixed = "cpu_s_per_10k_fixed_rate";
        let max = "cpu_s_per_10k_max_rate";
        self.ratios = [
            ("throughput_c_over_b", ratio(m("c", rps), m("b", rps))),
            ("throughput_c_over_a", ratio(m("c", rps), m("a", rps))),
            ("throughput_d_over_b", ratio(m("d", rps), m("b", rps))),
            (
                "cpu_per_request_c_over_b_max_rate",
                ratio(m("c", max), m("b", max)),
            ),
            (
                "cpu_per_request_c_over_b_fixed_rate",
                ratio(m("c", fixed), m("b", fixed)),
            ),
            (
                "cpu_per_request_e_over_c_fixed_rate",
                ratio(m("e", fixed), m("c", fixed)),
            ),
            (
                "cpu_per_request_e_over_c_max_rate",
                ratio(m("e", max), m("c", max)),
            ),
            (
                "cpu_per_request_f_over_c_max_rate",
                ratio(m("f", max), m("c", max)),
            ),
            (
                "cpu_per_request_g_over_b_max_rate",
                ratio(m("g", max), m("b", max)),
            ),
            (
                "cpu_per_request_c_over_g_max_rate",
                ratio(m("c", max), m("g", max)),
            ),
            ("throughput_i_over_h", ratio(m("i", rps), m("h", rps))),
            ("throughput_i_over_c", ratio(m("i", rps), m("c", rps))),
            ("throughput_h_over_b", ratio(m("h", rps), m("b", rps))),
            (
                "cpu_per_request_i_over_h_max_rate",
                ratio(m("i", max), m("h", max)),
            ),
            ("throughput_j_over_i", ratio(m("j", rps), m("i", rps))),
            (
                "cpu_per_request_j_over_i_max_rate",
                ratio(m("j", max), m("i", max)),
            ),
            (
                "p99_ms_c_minus_a_fixed_rate",
                diff(m("c", "p99_ms"), m("a", "p99_ms")),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    }

    /// The markdown table and notes.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut out = format!(
            "# Load test {} ({})\n\n{} CPUs ({}), kernel {}. {} round(s) of {} s per tool \
             (+{} s warm-up), {} connections; oha at a fixed {} req/s ({}); system under test \
             on CPUs {}, load generator and upstream on CPUs {}; {} gateway thread(s) = nginx \
             worker(s). Cells: median [min–max] over rounds.\n\n",
            self.date,
            self.commit,
            self.host.cpus,
            self.host.cpu_model,
            self.host.kernel,
            s.rounds,
            s.seconds,
            s.warmup_seconds,
            s.connections,
            s.fixed_rate,
            s.rate_source,
            s.sut_cpus,
            s.client_cpus,
            s.workers,
        );
        let columns: &[(&str, &str, usize)] = &[
            ("req/s (wrk)", "requests_per_second", 0),
            ("p50 ms", "p50_ms", 3),
            ("p99 ms", "p99_ms", 3),
            ("p99.9 ms", "p99_9_ms", 3),
            ("CPU s/10k req (max rate)", "cpu_s_per_10k_max_rate", 3),
            ("CPU s/10k req (fixed rate)", "cpu_s_per_10k_fixed_rate", 3),
            ("cores busy (max rate)", "cpu_busy_max_rate", 2),
            ("peak RSS MiB", "peak_rss_mib", 1),
            ("non-2xx (wrk)", "wrk_non_2xx_share", 3),
            ("429 (oha)", "oha_429_share", 3),
        ];
        out.push_str("| configuration |");
        for (title, _, _) in columns {
            let _ = write!(out, " {title} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(columns.len()));
        out.push('\n');
        for sc in &self.scenarios {
            let _ = write!(out, "| ({}) {} |", sc.letter, sc.name);
            for (_, metric, digits) in columns {
                let cell = sc.summary.get(*metric).map_or_else(
                    || "–".to_owned(),
                    |v| {
                        if metric.ends_with("_share") {
                            format!("{:.1} %", v.median * 100.0)
                        } else {
                            format!(
                                "{:.d$} [{:.d$}–{:.d$}]",
                                v.median,
                                v.min,
                                v.max,
                                d = *digits
                            )
                        }
                    },
                );
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out.push_str(
            "\nnon-2xx and 429 columns are shares of all responses (medians); raw counts are in \
             the JSON. Cores busy: CPU seconds of the system under test ÷ wall seconds during \
             the wrk run; near 1.00 (one worker) means it was the bottleneck, well below means \
             the load generator's CPU or other load on the machine was, and the CPU per request \
             columns are the fairer comparison.\n\n## Ratios (medians)\n\n",
        );
        for (name, value) in &self.ratios {
            let shown = value.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(out, "- `{name}`: {shown}");
        }
        let metered: Vec<&ScenarioResults> = self
            .scenarios
            .iter()
            .filter(|s| s.summary.contains_key("usage_events_produced"))
            .collect();
        if !metered.is_empty() {
            out.push_str(
                "\n## Usage events and Redis fallbacks per run (medians; read from `/metrics` before the gateway \
                 stops, so events the broker has not taken yet are in neither column)\n\n\
                 | configuration | produced to Kafka | spooled to disk | dropped | Redis fallbacks |\n\
                 |---|---|---|---|---|\n",
            );
            for sc in metered {
                let m = |k: &str| {
                    sc.median(k)
                        .map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
                };
                let _ = writeln!(
                    out,
                    "| ({}) {} | {} | {} | {} | {} |",
                    sc.letter,
                    sc.name,
                    m("usage_events_produced"),
                    m("usage_events_spooled"),
                    m("usage_events_dropped"),
                    m("redis_fallbacks")
                );
            }
        }
        out.push_str("\n## Configurations\n\n");
        for sc in &self.scenarios {
            let _ = writeln!(out, "- ({}) {}: {}", sc.letter, sc.name, sc.description);
        }
        if let Some(ingest) = &self.ingest {
            let show = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"));
            let _ = write!(
                out,
                "\n## Metering ingest (`make bench-ingest`)\n\n- into PostgreSQL (fsync on): {} \
                 events/s\n- Kafka → PostgreSQL: {} events/s\n",
                show(ingest.direct_events_per_second),
                show(ingest.kafka_events_per_second)
            );
        }
        out
    }

    /// Markdown of the change from `previous` to `self` (medians).
    pub fn diff(&self, previous: &Self, previous_name: &str) -> String {
        let mut out = format!(
            "## Difference against {previous_name} ({} → {}; fixed rate {} → {} req/s)\n\n\
             | configuration | metric | before | now | change |\n|---|---|---|---|---|\n",
            previous.commit, self.commit, previous.settings.fixed_rate, self.settings.fixed_rate
        );
        let metrics = [
            "requests_per_second",
            "p50_ms",
            "p99_ms",
            "p99_9_ms",
            "cpu_s_per_10k_max_rate",
            "cpu_s_per_10k_fixed_rate",
            "cpu_busy_max_rate",
            "peak_rss_mib",
        ];
        for sc in &self.scenarios {
            let Some(before) = previous.scenario(&sc.letter) else {
                continue;
            };
            for metric in metrics {
                if let (Some(b), Some(a)) = (before.median(metric), sc.median(metric)) {
                    let _ = writeln!(
                        out,
                        "| ({}) {} | {metric} | {b:.3} | {a:.3} | {:+.1} % |",
                        sc.letter,
                        sc.name,
                        (a / b - 1.0) * 100.0
                    );
                }
            }
        }
        for (name, value) in &self.ratios {
            if let (Some(a), Some(Some(b))) = (value, previous.ratios.get(name)) {
                let _ = writeln!(
                    out,
                    "| ratio | {name} | {b:.3} | {a:.3} | {:+.1} % |",
                    (a / b - 1.0) * 100.0
                );
            }
        }
        if let (Some(a), Some(b)) = (&self.ingest, &previous.ingest) {
            for (name, now, before) in [
                (
                    "ingest direct events/s",
                    a.direct_events_per_second,
                    b.direct_events_per_second,
                ),
                (
                    "ingest kafka events/s",
                    a.kafka_events_per_second,
                    b.kafka_events_per_second,
                ),
            ] {
                if let (Some(a), Some(b)) = (now, before) {
                    let _ = writeln!(
                        out,
                        "| ingest | {name} | {b:.0} | {a:.0} | {:+.1} % |",
                        (a / b - 1.0) * 100.0
                    );
                }
            }
        }
        out
    }
}

/// The newest results file in `dir` (by `finished_at_unix`) other than `except`.
pub fn newest_previous(dir: &Path, except: &Path) -> Option<(PathBuf, Results)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p != except)
        .filter_map(|p| {
            let results: Results = serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
            Some((p, results))
        })
        .max_by_key(|(_, r)| r.finished_at_unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_output_is_parsed() {
        let out = "PostgreSQL fsync=on synchronous_commit=on; batches of 1000\n\
                   direct store: 300000 events in 2.80 s = 107142 events/s\n\
                   produced 20000 events in 1.20 s\n\
                   kafka → postgres: 19000 events in 0.70 s = 27142 events/s (19 batches)\n";
        let r = IngestResult::parse(out);
        assert_eq!(r.direct_events_per_second, Some(107_142.0));
        assert_eq!(r.kafka_events_per_second, Some(27_142.0));
    }
}
