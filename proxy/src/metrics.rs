//! The gateway's Prometheus metrics. Labels are bounded: a status class, an outcome, an error
//! code from a fixed set. No tenant, key or route label (those belong in usage events).
//!
//! The request counters are resolved once at start-up into a fixed table, so counting a
//! request is one atomic add, not a label lookup.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
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

/// Latency buckets from 100 µs to 10 s.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
}

/// Request-path metrics.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    /// `[status class][outcome]`, resolved at start-up.
    request_table: Vec<Vec<Counter>>,
    duration: Histogram,
    upstream_duration: Histogram,
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
            duration: latency_histogram(),
            upstream_duration: latency_histogram(),
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
    pub fn observe_duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Records an upstream's response time.
    pub fn observe_upstream(&self, seconds: f64) {
        self.upstream_duration.observe(seconds);
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
}
