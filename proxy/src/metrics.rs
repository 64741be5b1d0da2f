//! The gateway's Prometheus metrics. Labels are bounded: a status class, an outcome, an error
//! code from a fixed set. No tenant, key or route label (those belong in usage events).
//!
//! The request counters are resolved once at start-up into a fixed table, so counting a
//! request is one atomic add, not a label lookup. The latency histograms are atomic too
//! ([`LatencyHistogram`]): `prometheus-client`'s `Histogram` takes a mutex per observation,
//! which every worker thread would contend for twice per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tollgate_core::Outcome;

/// Every outcome, in the order of the counter table.
const OUTCOMES: [Outcome; 7] = [
    Outcome::Proxied,
    Outcome::Unauthorized,
    Outcome::Forbidden,
    Outcome::RateLimited,
    Outcome::QuotaExceeded,
    Outcome::Rejected,
    Outcome::UpstreamError,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    status_class: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// Latency bucket bounds from 100 µs to 10 s, in nanoseconds (and seconds for the exposition).
const LATENCY_BOUNDS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
const LATENCY_BOUNDS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram of fixed buckets kept in atomics: an observation is two relaxed adds
/// and no lock. The exposition reads the buckets one by one, so a scrape during traffic may
/// see a count one or two observations ahead of a bucket; Prometheus tolerates that.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<LatencyBuckets>);

#[derive(Debug, Default)]
struct LatencyBuckets {
    /// Per bucket (the last one is `+Inf`), not cumulative.
    counts: [AtomicU64; LATENCY_BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        if let Some(count) = self.0.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    #[allow(clippy::cast_precision_loss, clippy::float_arithmetic)]
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(f64::INFINITY, 0u64); LATENCY_BOUNDS_NANOS.len() + 1];
        let mut count = 0;
        for (i, (bucket, observed)) in buckets.iter_mut().zip(&self.0.counts).enumerate() {
            bucket.1 = observed.load(Ordering::Relaxed);
            if let Some(&bound) = LATENCY_BOUNDS_SECONDS.get(i) {
                bucket.0 = bound;
            }
            count += bucket.1;
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Request-path metrics.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    /// `[status class][outcome]`, resolved at start-up.
    request_table: Vec<Vec<Counter>>,
    duration: LatencyHistogram,
    upstream_duration: LatencyHistogram,
    concurrent: Gauge,
    auth_failures: Family<CodeLabels, Counter>,
    flood_refusals: Counter,
    snapshot_age: Gauge,
    snapshot_generation: Gauge,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_table = STATUS_CLASSES
            .iter()
            .map(|&status_class| {
                OUTCOMES
                    .iter()
                    .map(|outcome| {
                        // One lookup per statement: the family's guard must not be held.
                        let labels = RequestLabels {
                            status_class,
                            outcome: outcome.as_str(),
                        };
                        requests.get_or_create(&labels).clone()
                    })
                    .collect()
            })
            .collect();
        Self {
            requests,
            request_table,
            duration: LatencyHistogram::default(),
            upstream_duration: LatencyHistogram::default(),
            concurrent: Gauge::default(),
            auth_failures: Family::default(),
            flood_refusals: Counter::default(),
            snapshot_age: Gauge::default(),
            snapshot_generation: Gauge::default(),
        }
    }
}

impl GatewayMetrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_requests",
            "Requests answered, by status class and outcome",
            self.requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Time from the request to the end of the response",
            self.duration.clone(),
        );
        registry.register(
            "gateway_upstream_duration_seconds",
            "Time from choosing an upstream to its response header",
            self.upstream_duration.clone(),
        );
        registry.register(
            "gateway_concurrent_requests",
            "Requests in flight",
            self.concurrent.clone(),
        );
        registry.register(
            "gateway_auth_failures",
            "Refused credentials by error code",
            self.auth_failures.clone(),
        );
        registry.register(
            "gateway_flood_guard_refusals",
            "Requests refused before auth because their client address failed auth too often",
            self.flood_refusals.clone(),
        );
        registry.register(
            "gateway_config_snapshot_age_seconds",
            "Seconds since the config snapshot in use was loaded",
            self.snapshot_age.clone(),
        );
        registry.register(
            "gateway_config_snapshot_generation",
            "Snapshots loaded since start",
            self.snapshot_generation.clone(),
        );
    }

    /// Counts one answered request.
    pub fn count_request(&self, status: u16, outcome: Outcome) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        if let Some(counter) = self.request_table.get(class).and_then(|row| row.get(index)) {
            counter.inc();
        }
    }

    /// Records a finished request's total time.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.duration.observe(elapsed);
    }

    /// Records an upstream's response time.
    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed);
    }

    /// A request started (`+1`) or ended (`-1`).
    pub fn in_flight(&self, delta: i64) {
        self.concurrent.inc_by(delta);
    }

    /// A credential was refused with `code`.
    pub fn auth_failure(&self, code: &'static str) {
        self.auth_failures.get_or_create(&CodeLabels { code }).inc();
    }

    /// The flood guard refused a request.
    pub fn flood_refusal(&self) {
        self.flood_refusals.inc();
    }

    /// Updates the snapshot gauges (at scrape time).
    pub fn snapshot(&self, age_seconds: u64, generation: u64) {
        self.snapshot_age
            .set(i64::try_from(age_seconds).unwrap_or(i64::MAX));
        self.snapshot_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn requests_are_counted_under_their_class_and_outcome() {
        let metrics = GatewayMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.count_request(429, Outcome::RateLimited);
        metrics.count_request(429, Outcome::RateLimited);
        metrics.count_request(200, Outcome::Proxied);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"gateway_requests_total{status_class="4xx",outcome="rate_limited"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"gateway_requests_total{status_class="2xx",outcome="proxied"} 1"#));
    }

    #[test]
    fn latencies_land_in_cumulative_buckets_with_their_sum() {
        let metrics = GatewayMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.observe_duration(Duration::from_micros(100));
        metrics.observe_duration(Duration::from_millis(3));
        metrics.observe_duration(Duration::from_secs(60));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let line = |le: &str| format!("gateway_request_duration_seconds_bucket{{le=\"{le}\"}} ");
        assert!(text.contains(&(line("0.0001") + "1")), "{text}");
        assert!(text.contains(&(line("0.0025") + "1")), "{text}");
        assert!(text.contains(&(line("0.005") + "2")), "{text}");
        assert!(text.contains(&(line("10.0") + "2")), "{text}");
        assert!(text.contains(&(line("+Inf") + "3")), "{text}");
        assert!(
            text.contains("gateway_request_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("gateway_request_duration_seconds_sum 60.0031"),
            "{text}"
        );
    }
}
