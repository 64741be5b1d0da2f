//! The configurations measured, and how one of them is run: start the upstream and the system
//! under test on their CPUs, warm up, measure the highest throughput with wrk, then latency at
//! a fixed rate with oha, sampling the system under test's CPU time around each, then its peak
//! memory; stop everything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tollgate_core::{KeyPepper, hex};

use crate::fixtures::{self, PlanSpec, TenantSpec, UNLIMITED};
use crate::generators::{self, Credentials, OhaResult, WrkResult};
use crate::process::{self, Managed};
use crate::settings::Settings;

/// A configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scenario {
    /// (a) Straight to the upstream.
    Direct,
    /// (b) nginx `proxy_pass` with upstream keep-alive.
    Nginx,
    /// (c) Tollgate: API key, cluster limits through Redis (never rejecting), Kafka metering.
    Full,
    /// (d) Tollgate: API key only; no Redis, no usage events.
    AuthOnly,
    /// (e) The full stack where 90 % of requests are answered 429.
    Storm,
    /// (f) The full stack with many tenants, one key each, rotated per request.
    ManyTenants,
    /// (g) Bare Pingora: forwarding with the gateway's runtime settings and nothing else.
    BarePingora,
    /// (h) nginx `proxy_pass` with two workers on both CPUs.
    NginxTwo,
    /// (i) The full stack with two worker threads on both CPUs.
    FullTwo,
    /// (j) The full stack as `make up` and the chart run it: default threads (the cores), not
    /// pinned.
    Default,
}

impl Scenario {
    /// Every scenario, in base order.
    pub const ALL: [Self; 10] = [
        Self::Direct,
        Self::Nginx,
        Self::Full,
        Self::AuthOnly,
        Self::Storm,
        Self::ManyTenants,
        Self::BarePingora,
        Self::NginxTwo,
        Self::FullTwo,
        Self::Default,
    ];

    /// The letter of the issue (`a`…`f`).
    pub const fn letter(self) -> &'static str {
        match self {
            Self::Direct => "a",
            Self::Nginx => "b",
            Self::Full => "c",
            Self::AuthOnly => "d",
            Self::Storm => "e",
            Self::ManyTenants => "f",
            Self::BarePingora => "g",
            Self::NginxTwo => "h",
            Self::FullTwo => "i",
            Self::Default => "j",
        }
    }

    /// From its letter.
    pub fn from_letter(letter: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.letter() == letter)
            .with_context(|| format!("LOADTEST_SCENARIOS: unknown scenario {letter:?} (a–j)"))
    }

    /// Short name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct to upstream",
            Self::Nginx => "nginx proxy_pass",
            Self::Full => "Tollgate full stack",
            Self::AuthOnly => "Tollgate auth only",
            Self::Storm => "Tollgate 90 % 429",
            Self::ManyTenants => "Tollgate 10k tenants",
            Self::BarePingora => "bare Pingora",
            Self::NginxTwo => "nginx, 2 workers",
            Self::FullTwo => "Tollgate full, 2 threads",
            Self::Default => "Tollgate full, defaults",
        }
    }

    /// What exactly runs.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Direct => "nginx upstream (fixed small body) is the system under test",
            Self::Nginx => "nginx: proxy_pass to the upstream, keepalive 64, HTTP/1.1",
            Self::Full => {
                "API key (Bearer), plan limits through Redis delayed sync (10M rps, 10^12 hard \
                 quota: never reject), usage events to Kafka (lz4)"
            }
            Self::AuthOnly => {
                "API key (Bearer), local GCRA of the plan only (no Redis), \
                 TOLLGATE_USAGE_DISABLED=true"
            }
            Self::Storm => {
                "as (c); wrk alternates 9 requests of a tenant limited to 1 rps with 1 of an \
                 unlimited one; oha sends one tenant limited to 10 % of the fixed rate"
            }
            Self::ManyTenants => {
                "as (c) with N tenants of one key each; wrk rotates the keys per request \
                 (Lua); oha cannot rotate headers and sends one of them"
            }
            Self::BarePingora => {
                "tollgate-bare-pingora: Pingora forwarding to the upstream with the gateway's \
                 runtime and upstream settings, no policy: the floor of (c)"
            }
            Self::NginxTwo => {
                "as (b) with 2 worker processes; it, the upstream and the load generator share \
                 both CPUs"
            }
            Self::FullTwo => {
                "as (c) with 2 worker threads; it, the upstream and the load generator share \
                 both CPUs (compare with (h))"
            }
            Self::Default => {
                "as (c) with the defaults of `make up` and the chart: TOLLGATE_PROXY_THREADS \
                 unset (one per core) and no CPU pinning"
            }
        }
    }

    fn is_gateway(self) -> bool {
        !matches!(
            self,
            Self::Direct | Self::Nginx | Self::NginxTwo | Self::BarePingora
        )
    }

    /// Runs on both CPUs rather than the system under test's alone.
    fn spans_cpus(self) -> bool {
        matches!(self, Self::NginxTwo | Self::FullTwo | Self::Default)
    }
}

/// One scenario in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Round (1-based).
    pub round: u32,
    /// The highest throughput.
    pub wrk: WrkResult,
    /// The fixed-rate run.
    pub oha: OhaResult,
    /// CPU seconds of the system under test per 10k requests during the wrk run.
    pub cpu_s_per_10k_max_rate: f64,
    /// The same during the fixed-rate run.
    pub cpu_s_per_10k_fixed_rate: f64,
    /// Cores the system under test kept busy during the wrk run (CPU seconds ÷ wall
    /// seconds): well below 1 with one worker means something else (the load generator's
    /// CPU, other load on the machine) limited the throughput, not the system under test.
    #[serde(default)]
    pub cpu_busy_max_rate: f64,
    /// CPU seconds of Redis + the broker per 10k requests during the fixed-rate run (shared
    /// services: other users' load shows up here too).
    pub backing_cpu_s_per_10k_fixed_rate: Option<f64>,
    /// Peak RSS (`VmHWM`) of the system under test, KiB (nginx: its worker).
    pub peak_rss_kib: u64,
    /// The gateway's usage-event counters at the end of the run (metering on).
    pub usage_events: Option<UsageCounts>,
    /// Times the gateway logged Redis as unreachable (a limiter flush over its 250 ms
    /// deadline) and fell back to local limits for a while.
    #[serde(default)]
    pub redis_fallbacks: u64,
}

/// Usage-event counters from the gateway's `/metrics`, read before it stops: events the
/// broker had not taken yet are still queued (and spooled at shutdown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    /// Acknowledged by Kafka.
    pub produced: u64,
    /// Written to the disk spool (producer queue full or broker unreachable).
    pub spooled: u64,
    /// Lost (both queues full).
    pub dropped: u64,
}

impl UsageCounts {
    /// From Prometheus text: `usage_events_{produced,spooled,dropped}_total`, summed over labels.
    pub fn from_metrics(text: &str) -> Option<Self> {
        let sum = |name: &str| -> u64 {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        text.contains("usage_events_produced_total").then(|| Self {
            produced: sum("usage_events_produced_total"),
            spooled: sum("usage_events_spooled_total"),
            dropped: sum("usage_events_dropped_total"),
        })
    }
}

/// The prepared fixtures of a run: configs, keys and scripts in the work directory.
#[derive(Debug)]
pub struct Lab {
    settings: Settings,
    pepper_hex: String,
    /// Key of the one tenant of (c) and (d).
    single_key: String,
    /// Unlimited key of (e), also its smoke check.
    storm_good_key: String,
    /// Key of the tenant limited to 10 % of the fixed rate.
    storm_throttled_key: String,
    many_first_key: String,
    ticks: u64,
    rate: u32,
}

impl Lab {
    /// Writes every fixture under the work directory. `rate` is oha's fixed rate.
    pub fn prepare(settings: &Settings, rate: u32) -> anyhow::Result<Self> {
        let dir = &settings.work_dir;
        std::fs::create_dir_all(dir)?;
        // A pepper of the run's own: keys of one run are worthless anywhere else.
        let mut pepper_bytes = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut pepper_bytes)
            .context("reading /dev/urandom")?;
        let pepper_hex = hex::encode(&pepper_bytes);
        let pepper = KeyPepper::from_hex(&pepper_hex).context("the generated pepper")?;
        let upstream = settings.ports.upstream;
        std::fs::write(
            dir.join("upstream.conf"),
            fixtures::upstream_nginx_conf(dir, upstream, settings.workers),
        )?;
        std::fs::write(
            dir.join("nginx-proxy.conf"),
            fixtures::proxy_nginx_conf(dir, settings.ports.nginx_proxy, upstream, settings.workers),
        )?;
        std::fs::write(
            dir.join("nginx-proxy-2.conf"),
            fixtures::proxy_nginx_conf(dir, settings.ports.nginx_proxy, upstream, 2),
        )?;
        for name in ["upstream", "nginx-proxy"] {
            std::fs::create_dir_all(dir.join(format!("{name}-temp")))?;
        }

        let single = fixtures::tenants("loadtest", 1, UNLIMITED.name)?;
        std::fs::write(
            dir.join("single.yaml"),
            fixtures::gateway_yaml(&[UNLIMITED], &[&single[0]], &pepper, upstream),
        )?;

        let storm_plan = PlanSpec {
            name: "storm",
            rate: 1,
            burst: 1,
            quota: fixtures::UNREACHABLE_QUOTA,
        };
        let throttled_plan = PlanSpec {
            name: "throttled",
            rate: (rate / 10).max(1),
            burst: (rate / 100).max(1),
            quota: fixtures::UNREACHABLE_QUOTA,
        };
        let good = fixtures::tenants("good", 1, UNLIMITED.name)?;
        let storm = fixtures::tenants("storm", 1, storm_plan.name)?;
        let throttled = fixtures::tenants("throttled", 1, throttled_plan.name)?;
        let tenants: Vec<&TenantSpec> = [&good[0], &storm[0], &throttled[0]].into();
        std::fs::write(
            dir.join("storm.yaml"),
            fixtures::gateway_yaml(
                &[UNLIMITED, storm_plan, throttled_plan],
                &tenants,
                &pepper,
                upstream,
            ),
        )?;
        let storm_keys: Vec<&str> = std::iter::repeat_n(storm[0].key.expose(), 9)
            .chain([good[0].key.expose()])
            .collect();
        write_keys_and_lua(dir, "storm", &storm_keys)?;

        let many = fixtures::tenants("t", settings.tenants.max(1), UNLIMITED.name)?;
        let refs: Vec<&TenantSpec> = many.iter().collect();
        std::fs::write(
            dir.join("tenants.yaml"),
            fixtures::gateway_yaml(&[UNLIMITED], &refs, &pepper, upstream),
        )?;
        let keys: Vec<&str> = many.iter().map(|t| t.key.expose()).collect();
        write_keys_and_lua(dir, "tenants", &keys)?;

        Ok(Self {
            settings: settings.clone(),
            pepper_hex,
            single_key: single[0].key.expose().to_owned(),
            storm_good_key: good[0].key.expose().to_owned(),
            storm_throttled_key: throttled[0].key.expose().to_owned(),
            many_first_key: many[0].key.expose().to_owned(),
            ticks: process::clock_ticks(),
            rate,
        })
    }

    /// oha's fixed rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn credentials(&self, scenario: Scenario) -> Credentials {
        let dir = &self.settings.work_dir;
        match scenario {
            Scenario::Direct | Scenario::Nginx | Scenario::NginxTwo | Scenario::BarePingora => {
                Credentials::None
            }
            Scenario::Full | Scenario::AuthOnly | Scenario::FullTwo | Scenario::Default => {
                Credentials::Key(self.single_key.clone())
            }
            Scenario::Storm => Credentials::Rotated {
                lua: dir.join("storm.lua"),
                oha_key: self.storm_throttled_key.clone(),
            },
            Scenario::ManyTenants => Credentials::Rotated {
                lua: dir.join("tenants.lua"),
                oha_key: self.many_first_key.clone(),
            },
        }
    }

    fn smoke_key(&self, scenario: Scenario) -> Option<&str> {
        match scenario {
            Scenario::Direct | Scenario::Nginx | Scenario::NginxTwo | Scenario::BarePingora => None,
            Scenario::Full | Scenario::AuthOnly | Scenario::FullTwo | Scenario::Default => {
                Some(&self.single_key)
            }
            Scenario::Storm => Some(&self.storm_good_key),
            Scenario::ManyTenants => Some(&self.many_first_key),
        }
    }

    fn start_nginx(&self, name: &str, cpus: &str, port: u16) -> anyhow::Result<Managed> {
        let dir = &self.settings.work_dir;
        process::ensure_free(port)?;
        let mut nginx = Managed::start(
            name,
            cpus,
            Path::new("/usr/sbin/nginx"),
            &[
                "-p".into(),
                dir.display().to_string(),
                "-e".into(),
                dir.join(format!("{name}.error.log")).display().to_string(),
                "-c".into(),
                dir.join(format!("{name}.conf")).display().to_string(),
            ],
            &[],
            dir,
        )?;
        process::wait_until(name, Duration::from_secs(10), || {
            nginx.check_alive().is_ok() && process::http_status(port, "/", &[]) == Some(200)
        })?;
        nginx.check_alive()?;
        Ok(nginx)
    }

    fn start_gateway(&self, scenario: Scenario, tag: &str) -> anyhow::Result<Managed> {
        let s = &self.settings;
        let dir = &s.work_dir;
        let file = match scenario {
            Scenario::Storm => "storm.yaml",
            Scenario::ManyTenants => "tenants.yaml",
            _ => "single.yaml",
        };
        let mut env: Vec<(String, String)> = [
            (
                "TOLLGATE_PROXY_CONFIG_FILE",
                dir.join(file).display().to_string(),
            ),
            ("TOLLGATE_KEY_PEPPER", self.pepper_hex.clone()),
            (
                "TOLLGATE_PROXY_LISTEN",
                format!("127.0.0.1:{}", s.ports.gateway),
            ),
            (
                "TOLLGATE_PROXY_ADMIN_LISTEN",
                format!("127.0.0.1:{}", s.ports.gateway_admin),
            ),
            ("TOLLGATE_PROXY_GRACE_SECONDS", "0".into()),
            ("TOLLGATE_PROXY_INSTANCE", "loadtest".into()),
            // The upstreams of the load test listen on loopback, refused unless allowed.
            ("TOLLGATE_UPSTREAM_ALLOW_NETWORKS", "127.0.0.1/32".into()),
            // Every load-generator connection comes from one address.
            ("TOLLGATE_PROXY_MAX_CONNECTIONS_PER_ADDRESS", "0".into()),
            ("TOLLGATE_LOG", "warn".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        match scenario {
            // The defaults: one thread per core.
            Scenario::Default => {}
            Scenario::FullTwo => env.push(("TOLLGATE_PROXY_THREADS".into(), "2".into())),
            _ => env.push(("TOLLGATE_PROXY_THREADS".into(), s.workers.to_string())),
        }
        if scenario == Scenario::AuthOnly {
            env.push(("TOLLGATE_USAGE_DISABLED".into(), "true".into()));
        } else {
            let spool: PathBuf = dir.join(format!("spool-{tag}"));
            env.extend(
                [
                    ("TOLLGATE_REDIS_URL", s.redis_url.clone()),
                    (
                        "TOLLGATE_REDIS_KEY_PREFIX",
                        format!("tollgate-loadtest:{tag}:"),
                    ),
                    ("TOLLGATE_KAFKA_BROKERS", s.kafka_brokers.clone()),
                    ("TOLLGATE_USAGE_TOPIC", "tollgate-loadtest-usage".into()),
                    ("TOLLGATE_USAGE_SPOOL_DIR", spool.display().to_string()),
                    ("TOLLGATE_USAGE_FLUSH_SECONDS", "2".into()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
        }
        process::ensure_free(s.ports.gateway)?;
        process::ensure_free(s.ports.gateway_admin)?;
        let mut proxy = Managed::start(
            &format!("tollgate-proxy-{tag}"),
            self.sut_cpus(scenario),
            &s.bin_dir.join("tollgate-proxy"),
            &[],
            &env,
            dir,
        )?;
        let admin = s.ports.gateway_admin;
        process::wait_until("tollgate-proxy", Duration::from_secs(60), || {
            proxy.check_alive().is_ok() && process::http_status(admin, "/ready", &[]) == Some(200)
        })?;
        proxy.check_alive()?;
        Ok(proxy)
    }

    /// CPUs of the system under test in `scenario`.
    fn sut_cpus(&self, scenario: Scenario) -> &str {
        if scenario.spans_cpus() {
            &self.settings.all_cpus
        } else {
            &self.settings.sut_cpus
        }
    }

    /// CPUs of the load generator (and the upstream) in `scenario`.
    fn client_cpus(&self, scenario: Scenario) -> &str {
        if scenario.spans_cpus() {
            &self.settings.all_cpus
        } else {
            &self.settings.client_cpus
        }
    }

    fn start_bare_pingora(&self) -> anyhow::Result<Managed> {
        let s = &self.settings;
        process::ensure_free(s.ports.gateway)?;
        let env: Vec<(String, String)> = [
            (
                "TOLLGATE_PROXY_LISTEN",
                format!("127.0.0.1:{}", s.ports.gateway),
            ),
            ("TOLLGATE_PROXY_THREADS", s.workers.to_string()),
            (
                "BARE_PINGORA_UPSTREAM",
                format!("127.0.0.1:{}", s.ports.upstream),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        let mut bare = Managed::start(
            "bare-pingora",
            &s.sut_cpus,
            &s.bin_dir.join("tollgate-bare-pingora"),
            &[],
            &env,
            &s.work_dir,
        )?;
        let port = s.ports.gateway;
        process::wait_until("tollgate-bare-pingora", Duration::from_secs(30), || {
            bare.check_alive().is_ok() && process::http_status(port, "/", &[]) == Some(200)
        })?;
        bare.check_alive()?;
        Ok(bare)
    }

    /// Runs `scenario` once (round `round`).
    pub fn run(&self, scenario: Scenario, round: u32) -> anyhow::Result<RunResult> {
        let s = &self.settings;
        let dir = &s.work_dir;
        let tag = format!("{}{round}", scenario.letter());
        // The upstream shares the load generator's CPUs, except when it is what is measured.
        let upstream_cpus = if scenario == Scenario::Direct {
            &s.sut_cpus
        } else {
            self.client_cpus(scenario)
        };
        let client_cpus = self.client_cpus(scenario);
        let upstream = self.start_nginx("upstream", upstream_cpus, s.ports.upstream)?;
        let (sut, port) = match scenario {
            Scenario::Direct => (None, s.ports.upstream),
            Scenario::Nginx => (
                Some(self.start_nginx("nginx-proxy", &s.sut_cpus, s.ports.nginx_proxy)?),
                s.ports.nginx_proxy,
            ),
            Scenario::NginxTwo => (
                Some(self.start_nginx("nginx-proxy-2", &s.all_cpus, s.ports.nginx_proxy)?),
                s.ports.nginx_proxy,
            ),
            Scenario::BarePingora => (Some(self.start_bare_pingora()?), s.ports.gateway),
            _ => (Some(self.start_gateway(scenario, &tag)?), s.ports.gateway),
        };
        let measured: Vec<u32> = match (&sut, scenario.is_gateway()) {
            (Some(proxy), true) => vec![proxy.pid()],
            (Some(bare), false) if scenario == Scenario::BarePingora => vec![bare.pid()],
            (Some(nginx), false) => process::children(nginx.pid()),
            (None, _) => process::children(upstream.pid()),
        };
        if measured.is_empty() {
            bail!("no process to measure for ({})", scenario.letter());
        }
        if let Some(key) = self.smoke_key(scenario) {
            let status =
                process::http_status(port, "/", &[("authorization", &format!("Bearer {key}"))]);
            if status != Some(200) {
                bail!(
                    "({}): a request with its key got {status:?}, not 200",
                    scenario.letter()
                );
            }
        }
        let url = format!("http://127.0.0.1:{port}/");
        let credentials = self.credentials(scenario);
        let raw = |what: &str| dir.join(format!("{tag}-{what}"));
        generators::run_wrk(
            client_cpus,
            &url,
            s.connections,
            s.warmup_seconds.max(1),
            &credentials,
            &raw("warmup.txt"),
        )?;
        let cpu =
            || -> anyhow::Result<u64> { measured.iter().map(|&pid| process::cpu_ticks(pid)).sum() };
        let before = cpu()?;
        let wrk_started = std::time::Instant::now();
        let wrk = generators::run_wrk(
            client_cpus,
            &url,
            s.connections,
            s.seconds,
            &credentials,
            &raw("wrk.txt"),
        )?;
        let after_wrk = cpu()?;
        let wrk_seconds = wrk_started.elapsed().as_secs_f64();
        let backing_before = self.backing_ticks();
        let oha = generators::run_oha(
            &s.oha,
            client_cpus,
            &url,
            s.connections,
            s.seconds,
            self.rate,
            &credentials,
            &raw("oha.json"),
        )?;
        let after_oha = cpu()?;
        let backing = match (backing_before, self.backing_ticks()) {
            (Some(b), Some(a)) if scenario.is_gateway() && scenario != Scenario::AuthOnly => {
                Some(self.per_10k(a.saturating_sub(b), oha.requests))
            }
            _ => None,
        };
        let usage_events = process::http_get_body(s.ports.gateway_admin, "/metrics")
            .filter(|_| scenario.is_gateway())
            .and_then(|text| UsageCounts::from_metrics(&text));
        let peak_rss_kib = measured
            .iter()
            .map(|&pid| process::peak_rss_kib(pid))
            .sum::<anyhow::Result<u64>>()?;
        drop(sut);
        drop(upstream);
        let redis_fallbacks = if scenario.is_gateway() {
            let log = std::fs::read_to_string(dir.join(format!("tollgate-proxy-{tag}.log")))
                .unwrap_or_default();
            log.matches("Redis unreachable").count() as u64
        } else {
            0
        };
        Ok(RunResult {
            round,
            cpu_s_per_10k_max_rate: self.per_10k(after_wrk - before, wrk.requests),
            cpu_s_per_10k_fixed_rate: self.per_10k(after_oha - after_wrk, oha.requests),
            cpu_busy_max_rate: self.seconds(after_wrk - before) / wrk_seconds,
            backing_cpu_s_per_10k_fixed_rate: backing,
            wrk,
            oha,
            peak_rss_kib,
            usage_events,
            redis_fallbacks,
        })
    }

    /// Measures the highest throughput of (c), the full stack, once: the fixed rate is half
    /// of it, a rate every configuration sustains, so the fixed-rate latencies compare what
    /// each adds rather than queueing.
    pub fn calibrate(settings: &Settings) -> anyhow::Result<f64> {
        let lab = Self::prepare(settings, 1000)?;
        let s = &lab.settings;
        let _upstream = lab.start_nginx("upstream", &s.client_cpus, s.ports.upstream)?;
        let _gateway = lab.start_gateway(Scenario::Full, "calibration")?;
        let url = format!("http://127.0.0.1:{}/", s.ports.gateway);
        let dir = &s.work_dir;
        let credentials = lab.credentials(Scenario::Full);
        generators::run_wrk(
            &s.client_cpus,
            &url,
            s.connections,
            s.warmup_seconds.max(1),
            &credentials,
            &dir.join("calibration-warmup.txt"),
        )?;
        let wrk = generators::run_wrk(
            &s.client_cpus,
            &url,
            s.connections,
            s.seconds,
            &credentials,
            &dir.join("calibration-wrk.txt"),
        )?;
        Ok(wrk.requests_per_second)
    }

    fn backing_ticks(&self) -> Option<u64> {
        let state = &self.settings.stack_state_dir;
        let redis = process::pid_from_file(&state.join("redis.pid"))?;
        let tansu = process::pid_from_file(&state.join("tansu.pid"))?;
        Some(process::cpu_ticks(redis).ok()? + process::cpu_ticks(tansu).ok()?)
    }

    #[allow(clippy::cast_precision_loss)]
    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks as f64
    }

    #[allow(clippy::cast_precision_loss)]
    fn per_10k(&self, ticks: u64, requests: u64) -> f64 {
        if requests == 0 {
            return f64::NAN;
        }
        ticks as f64 / self.ticks as f64 / requests as f64 * 10_000.0
    }
}

fn write_keys_and_lua(dir: &Path, name: &str, keys: &[&str]) -> anyhow::Result<()> {
    let keys_file = dir.join(format!("{name}.keys"));
    std::fs::write(&keys_file, keys.join("\n") + "\n")?;
    std::fs::write(
        dir.join(format!("{name}.lua")),
        fixtures::rotate_keys_lua(&keys_file),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_sum_labelled_series() {
        let text = "# TYPE usage_events_produced counter\nusage_events_produced_total 120\n\
                    usage_events_spooled_total 30\n\
                    usage_events_dropped_total{reason=\"queue_full\"} 2\n\
                    usage_events_dropped_total{reason=\"spool_full\"} 3\n";
        assert_eq!(
            UsageCounts::from_metrics(text),
            Some(UsageCounts {
                produced: 120,
                spooled: 30,
                dropped: 5
            })
        );
        assert_eq!(
            UsageCounts::from_metrics("gateway_requests_total 1\n"),
            None
        );
    }
}
